"""App templates and the catalogs they come from.

A template is a directory holding ``app.toml`` (metadata, see :class:`Template` and ``docs/apps.md``) and
``compose.yaml``. A catalog is a directory of templates — ``<app>/app.toml`` for one version, or
``<app>/<version>/app.toml`` for several — taken from qwq's built-in directory, a local directory, a git
repository (``git+URL`` or a URL ending in ``.git``: ``git clone --depth 1``) or a ``.tar.gz``/``.zip`` over
HTTP(S), the remote ones cached under the qwq home. Every template is validated (metadata schema, parameter
defaults, Compose syntax, every ``${VAR}`` declared); a broken one is skipped with its reason and never
breaks the rest of the catalog.
"""

from __future__ import annotations

import hashlib
import io
import re
import secrets as random
import shutil
import subprocess
import tarfile
import tomllib
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from actions.apps import compose
from actions.redact import SECRET_KEY
from qwq_core.errors import ConfigError, ConfigIssue, NotFoundError

BUILTIN = Path(__file__).with_name("templates")
NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,40}$")
PLACEHOLDER_SECRET = "qwq-placeholder-secret"
BUILTIN_VARIABLES = ("APP_NAME", "PROJECT")
"""Variables every template may use besides its parameters: the app's name and its Compose project."""

ParamType = Literal["string", "int", "port", "bool", "enum", "password"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ParamSpec(_Strict):
    """One template parameter: type, default and validation. ``password`` ones are generated when empty."""

    type: ParamType = "string"
    default: str | int | bool | None = None
    description: str = ""
    required: bool = False
    min: int | None = None
    max: int | None = None
    choices: tuple[str, ...] = ()
    pattern: str | None = None
    secret: bool = False

    @model_validator(mode="after")
    def _consistent(self) -> ParamSpec:
        if self.type == "enum" and not self.choices:
            raise ValueError("an enum parameter needs choices")
        if self.pattern is not None:
            re.compile(self.pattern)
        if self.default is not None and self.default != "":
            self.coerce(self.default)
        return self

    @property
    def is_secret(self) -> bool:
        return self.secret or self.type == "password"

    def coerce(self, value: Any) -> str | int | bool:
        """``value`` converted to the parameter's type and validated; raises ValueError saying why."""
        if self.type in ("int", "port"):
            return self._number(value)
        if self.type == "bool":
            return _boolean(value)
        text = str(value)
        if self.type == "enum" and text not in self.choices:
            raise ValueError(f"must be one of {', '.join(self.choices)}")
        if self.pattern is not None and not re.fullmatch(self.pattern, text):
            raise ValueError(f"must match {self.pattern}")
        return text

    def _number(self, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise ValueError("must be an integer")
        try:
            number = int(value)
        except ValueError:
            raise ValueError("must be an integer") from None
        low, high = (1, 65535) if self.type == "port" else (None, None)
        low = self.min if self.min is not None else low
        high = self.max if self.max is not None else high
        if (low is not None and number < low) or (high is not None and number > high):
            raise ValueError(
                f"must be between {low if low is not None else '-inf'} and {high if high is not None else 'inf'}"
            )
        return number


def _boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).lower()
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off"):
        return False
    raise ValueError("must be true or false")


class ExposedPort(_Strict):
    """A port the app publishes on the host: the parameter that holds the host port, and what it serves."""

    param: str
    container: int = Field(ge=1, le=65535)
    protocol: Literal["tcp", "udp"] = "tcp"
    description: str = ""


class VolumeInfo(_Strict):
    """A named volume of the app (declared in compose.yaml): where it is mounted and what it keeps."""

    name: str
    path: str
    description: str = ""


class HealthGate(_Strict):
    """How long install and upgrade wait for the app's health checks before rolling back."""

    timeout: str = "120s"
    services: tuple[str, ...] = ()
    """Services whose health gates the app; empty means every service with a health check."""


class Dependency(_Strict):
    """Another app this one needs; its values reach the template as ``${<ALIAS>_HOST}``, ``${<ALIAS>_<PARAM>}``."""

    app: str
    alias: str = Field(pattern=r"^[A-Z][A-Z0-9_]*$")
    service: str | None = None
    """The dependency's service to reach (its first service when unset)."""
    version: str | None = None
    """The version installed when the dependency is missing and ``install_dependencies`` asks for it."""


class Manifest(_Strict):
    """The schema of ``app.toml``; ``docs/apps.md`` has one row per key."""

    name: str = Field(pattern=NAME.pattern)
    version: str = Field(min_length=1, max_length=40)
    category: str
    description: str
    icon: str = ""
    homepage: str = ""
    params: dict[str, ParamSpec] = Field(default_factory=dict)
    ports: tuple[ExposedPort, ...] = ()
    volumes: tuple[VolumeInfo, ...] = ()
    health: HealthGate = Field(default_factory=HealthGate)
    dependencies: tuple[Dependency, ...] = ()


@dataclass(frozen=True)
class Template:
    """A validated template: its manifest, its Compose text and where it came from."""

    manifest: Manifest
    compose_text: str
    source: str
    path: Path

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def version(self) -> str:
        return self.manifest.version

    def resolve(
        self,
        given: Mapping[str, Any],
        previous: Mapping[str, str] | None = None,
        generate: Callable[[str], str] | None = None,
    ) -> dict[str, str]:
        """Every parameter's value as text: given, else previous (the installed app's), else the default;
        empty passwords come from ``generate(param)``. Raises ConfigError naming each bad parameter."""
        previous = previous or {}
        generate = generate or (lambda _: random.token_urlsafe(18))
        issues = [
            ConfigIssue(f"app {self.name}", key, "unknown parameter")
            for key in given
            if key not in self.manifest.params
        ]
        values: dict[str, str] = {}
        for key, spec in self.manifest.params.items():
            raw = given.get(key)
            if raw is None or raw == "":
                raw = previous.get(key, spec.default)
            if (raw is None or raw == "") and spec.type == "password":
                raw = generate(key)
            if raw is None or raw == "":
                if spec.required:
                    issues.append(ConfigIssue(f"app {self.name}", key, "is required"))
                values[key] = ""
                continue
            try:
                value = spec.coerce(raw)
            except ValueError as exc:
                issues.append(ConfigIssue(f"app {self.name}", key, str(exc)))
                continue
            values[key] = str(value).lower() if isinstance(value, bool) else str(value)
        if issues:
            raise ConfigError(issues)
        return values

    def secret_names(self) -> set[str]:
        return {key for key, spec in self.manifest.params.items() if spec.is_secret}

    def project(self, app: str, values: Mapping[str, str]) -> compose.Project:
        """The Compose project for installed app ``app`` with ``values`` substituted."""
        variables = {**values, "APP_NAME": app, "PROJECT": project_name(app)}
        return compose.project(self.compose_text, project_name(app), variables, source=str(self.path / "compose.yaml"))


def project_name(app: str) -> str:
    """The Compose project name of an installed app (prefixes every container, network and volume)."""
    return f"qwq-{app}"


def version_key(version: str) -> tuple[tuple[int, str], ...]:
    """Sort key for versions: numeric parts compare as numbers (``1.10`` > ``1.9``)."""
    return tuple((int(part), "") if part.isdigit() else (-1, part) for part in re.split(r"[.\-+_]", version))


# ---- loading one template ----------------------------------------------------------------------------
def load_template(path: Path, source: str = "builtin") -> Template:
    """Read and validate the template in directory ``path``; raises ConfigError naming file and key."""
    manifest_path, compose_path = path / "app.toml", path / "compose.yaml"
    if not compose_path.is_file():
        raise ConfigError([ConfigIssue(str(path), "", "compose.yaml is missing")])
    try:
        data = tomllib.loads(manifest_path.read_text())
        manifest = Manifest.model_validate(data)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([ConfigIssue(str(manifest_path), "", f"invalid TOML: {exc}")]) from None
    except ValidationError as exc:
        issues = [ConfigIssue(str(manifest_path), ".".join(map(str, e["loc"])), e["msg"]) for e in exc.errors()]
        raise ConfigError(issues) from None
    template = Template(manifest, compose_path.read_text(), source, path)
    _check(template)
    return template


def _check(template: Template) -> None:
    """Cross-check metadata and Compose: variables declared, ports/volumes/health services exist, syntax."""
    manifest, where = template.manifest, str(template.path / "app.toml")
    raw = compose.load_yaml(template.compose_text, str(template.path / "compose.yaml"))
    known = set(manifest.params) | set(BUILTIN_VARIABLES)
    issues = [
        ConfigIssue(str(template.path / "compose.yaml"), f"${{{name}}}", "not a declared parameter")
        for name in sorted(compose.variables(raw) - known)
        if not any(name.startswith(f"{dep.alias}_") for dep in manifest.dependencies)
    ]
    issues += [
        ConfigIssue(where, f"ports.{p.param}", "not a declared parameter")
        for p in manifest.ports
        if p.param not in manifest.params
    ]
    issues += [  # audit records mask values by key name: a secret must be named as one
        ConfigIssue(where, f"params.{key}", "a secret parameter's name must contain PASSWORD, SECRET or TOKEN")
        for key, spec in manifest.params.items()
        if spec.is_secret and not SECRET_KEY.search(key)
    ]
    if issues:
        raise ConfigError(issues)
    values = {k: PLACEHOLDER_SECRET if s.is_secret else _text(s.default) for k, s in manifest.params.items()}
    aliases = tuple(f"{d.alias}_" for d in manifest.dependencies)
    values |= {name: "placeholder" for name in compose.variables(raw) if aliases and name.startswith(aliases)}
    _check_references(template.project(manifest.name, values), manifest, where)


def _text(value: str | int | bool | None) -> str:
    return "" if value is None else str(value).lower() if isinstance(value, bool) else str(value)


def _check_references(project: compose.Project, manifest: Manifest, where: str) -> None:
    services = {s.name for s in project.services}
    issues = [
        ConfigIssue(where, "volumes", f"volume {v.name!r} not declared in compose.yaml")
        for v in manifest.volumes
        if v.name not in project.volumes
    ]
    issues += [
        ConfigIssue(where, "health.services", f"unknown service {s!r}")
        for s in manifest.health.services
        if s not in services
    ]
    try:
        compose.parse_duration_ns(manifest.health.timeout)
    except ValueError as exc:
        issues.append(ConfigIssue(where, "health.timeout", str(exc)))
    published = {(p.host_port, p.protocol) for s in project.services for p in s.ports}
    defaults = {k: s.default for k, s in manifest.params.items()}
    issues += [
        ConfigIssue(where, f"ports.{p.param}", "compose.yaml publishes no port from this parameter")
        for p in manifest.ports
        if defaults.get(p.param) is not None and (int(str(defaults[p.param])), p.protocol) not in published
    ]
    if issues:
        raise ConfigError(issues)


# ---- catalogs ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Skipped:
    """A template (or a whole source) left out of the catalog, and why."""

    source: str
    path: str
    reason: str


@dataclass
class Catalog:
    """Templates from every source, by name and version; :attr:`skipped` lists what was left out and why."""

    templates: dict[tuple[str, str], Template] = field(default_factory=dict)
    skipped: list[Skipped] = field(default_factory=list)

    @classmethod
    def load(cls, sources: Sequence[str] = ("builtin",), *, cache: Path | None = None) -> Catalog:
        """Load ``sources`` in order: ``builtin``, a directory, ``git+URL``/``*.git``, or a tarball/zip URL.

        A template whose name and version an earlier source already defined is skipped as a duplicate.
        """
        catalog = cls()
        for source in sources:
            try:
                root = materialise(source, cache or Path.home() / ".cache" / "qwq" / "catalogs")
            except (OSError, httpx.HTTPError, subprocess.SubprocessError, ValueError) as exc:
                catalog.skipped.append(Skipped(source, "", f"cannot fetch: {exc}"))
                continue
            catalog.add_directory(root, source)
        return catalog

    def add_directory(self, root: Path, source: str) -> None:
        for manifest in sorted([*root.glob("*/app.toml"), *root.glob("*/*/app.toml")]):
            try:
                template = load_template(manifest.parent, source)
            except ConfigError as exc:
                self.skipped.append(Skipped(source, str(manifest.parent), str(exc)))
                continue
            key = (template.name, template.version)
            if key in self.templates:
                self.skipped.append(Skipped(source, str(manifest.parent), f"duplicate of {key[0]} {key[1]}"))
                continue
            self.templates[key] = template

    def names(self) -> list[str]:
        return sorted({name for name, _ in self.templates})

    def versions(self, name: str) -> list[str]:
        """The versions of ``name``, oldest first."""
        return sorted((v for n, v in self.templates if n == name), key=version_key)

    def get(self, name: str, version: str | None = None) -> Template:
        """The template ``name`` at ``version`` (the newest when None); NotFoundError lists what exists."""
        versions = self.versions(name)
        if not versions:
            raise NotFoundError(f"no app {name!r} in the catalog (available: {', '.join(self.names()) or 'none'})")
        chosen = version or versions[-1]
        if (name, chosen) not in self.templates:
            raise NotFoundError(f"app {name!r} has no version {chosen!r} (available: {', '.join(versions)})")
        return self.templates[(name, chosen)]

    def latest(self) -> list[Template]:
        """The newest version of every app, sorted by name."""
        return [self.get(name) for name in self.names()]

    def search(self, text: str) -> list[Template]:
        """Newest versions whose name, category or description contains ``text`` (case-insensitive)."""
        needle = text.lower()
        return [
            t for t in self.latest() if needle in f"{t.name} {t.manifest.category} {t.manifest.description}".lower()
        ]


def materialise(source: str, cache: Path) -> Path:
    """The local directory holding ``source``'s templates, fetching a remote source into ``cache``."""
    if source == "builtin":
        return BUILTIN
    if source.startswith("git+") or source.endswith(".git"):
        return _git(source.removeprefix("git+"), cache)
    if source.startswith(("http://", "https://")):
        return _archive(source, cache)
    path = Path(source).expanduser()
    if not path.is_dir():
        raise ValueError(f"{source} is not a directory")
    return path


def _cache_dir(url: str, cache: Path) -> Path:
    return cache / hashlib.sha256(url.encode()).hexdigest()[:16]


def _git(url: str, cache: Path) -> Path:
    target = _cache_dir(url, cache)
    staging = _staging(target)
    command = ["git", "clone", "--quiet", "--depth", "1", url, str(staging)]
    subprocess.run(command, check=True, capture_output=True, timeout=120)
    return _install(staging, staging, target)


def _archive(url: str, cache: Path) -> Path:
    response = httpx.get(url, follow_redirects=True, timeout=60)
    response.raise_for_status()
    target = _cache_dir(url, cache)
    staging = _staging(target)
    data = response.content
    if url.endswith(".zip") or data[:2] == b"PK":
        _extract_zip(data, staging)
    else:
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            tar.extractall(staging, filter="data")  # refuses absolute paths, .. and device files
    return _install(staging, _single_child(staging), target)


def _staging(target: Path) -> Path:
    staging = target.with_name(target.name + ".new")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    return staging


def _extract_zip(data: bytes, into: Path) -> None:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        for member in archive.namelist():
            if not (into / member).resolve().is_relative_to(into.resolve()):
                raise ValueError(f"archive member {member!r} escapes the catalog directory")
        archive.extractall(into)


def _single_child(staging: Path) -> Path:
    """GitHub-style archives wrap everything in one top directory: the catalog is inside it."""
    children = list(staging.iterdir())
    if len(children) == 1 and children[0].is_dir() and not (children[0] / "app.toml").exists():
        return children[0]
    return staging


def _install(staging: Path, content: Path, target: Path) -> Path:
    """Replace the cached copy with the freshly fetched ``content`` (inside ``staging``)."""
    shutil.rmtree(target, ignore_errors=True)
    content.rename(target)
    shutil.rmtree(staging, ignore_errors=True)
    return target


def describe(template: Template) -> dict[str, Any]:
    """A template's metadata as JSON-able data (for ``qwq apps show`` and ``GET /apps/catalog/{name}``)."""
    data = template.manifest.model_dump(mode="json")
    data["source"] = template.source
    return data


__all__: Sequence[str] = [
    "BUILTIN",
    "Catalog",
    "Dependency",
    "ExposedPort",
    "HealthGate",
    "Manifest",
    "ParamSpec",
    "Skipped",
    "Template",
    "describe",
    "load_template",
    "materialise",
    "project_name",
    "version_key",
]
