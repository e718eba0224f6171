"""The Compose subset app templates use: parse, validate, substitute ``${PARAM}``, translate to Engine API calls.

Supported keys (anything else is an error naming the file and the key, so a template never silently loses a
setting): top-level ``name``, ``services``, ``volumes``, ``networks`` (``version`` is accepted and ignored, as
Compose does); per service ``image``, ``command``, ``entrypoint``, ``environment``, ``ports``, ``volumes``,
``networks``, ``healthcheck``, ``depends_on`` (with ``condition``), ``restart``, ``stop_grace_period``,
``labels`` and ``deploy.replicas``.

Substitution runs on the parsed values, never on the YAML text, so a parameter value cannot inject YAML:
``${NAME}``, ``${NAME:-default}`` / ``${NAME-default}``, ``${NAME:?message}``, ``$NAME`` and ``$$`` for a
literal dollar. An unknown name without a default is an error.

:func:`project` returns a :class:`Project`; :func:`container_specs` turns it into :class:`ContainerSpec`\\ s,
each labelled like Compose labels its containers (``com.docker.compose.project/service/container-number``)
plus ``qwq.app``, so the containers collector and restarts see them as Compose apps.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from qwq_core.errors import ConfigError, ConfigIssue

PROJECT_LABEL = "com.docker.compose.project"
SERVICE_LABEL = "com.docker.compose.service"
NUMBER_LABEL = "com.docker.compose.container-number"
APP_LABEL = "qwq.app"
VERSION_LABEL = "qwq.app.version"
HASH_LABEL = "qwq.config-hash"
ROLE_LABEL = "qwq.role"
"""Set to ``green`` on the containers a blue/green rollout starts beside the live ones."""

_VARIABLE = re.compile(r"\$(?:(\$)|\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}|([A-Za-z_][A-Za-z0-9_]*))")
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(us|ms|s|m|h)")
_UNITS_NS = {"us": 1_000, "ms": 1_000_000, "s": 1_000_000_000, "m": 60_000_000_000, "h": 3_600_000_000_000}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


def parse_duration_ns(text: str | int) -> int:
    """A Compose duration (``30s``, ``1m30s``, ``500ms``) in nanoseconds, as the Engine API wants it."""
    if isinstance(text, int):
        return text * 1_000_000_000
    spans = _DURATION.findall(text)
    if not text or "".join(number + unit for number, unit in spans) != text:
        raise ValueError(f"invalid duration {text!r} (use e.g. 30s, 1m30s, 500ms)")
    return int(sum(float(number) * _UNITS_NS[unit] for number, unit in spans))


class HealthcheckModel(_Strict):
    test: list[str] | str
    interval: str = "30s"
    timeout: str = "30s"
    retries: int = Field(3, ge=1)
    start_period: str = "0s"
    disable: bool = False

    @field_validator("interval", "timeout", "start_period")
    @classmethod
    def _duration(cls, value: str) -> str:
        parse_duration_ns(value)
        return value


class DependsOnModel(_Strict):
    condition: Literal["service_started", "service_healthy", "service_completed_successfully"] = "service_started"


class DeployModel(_Strict):
    replicas: int = Field(1, ge=0, le=100)


class PortModel(_Strict):
    target: int = Field(ge=1, le=65535)
    published: int | str | None = None
    host_ip: str = ""
    protocol: Literal["tcp", "udp"] = "tcp"


class VolumeMountModel(_Strict):
    type: Literal["volume", "bind"] = "volume"
    source: str
    target: str
    read_only: bool = False


class NetworkAttachModel(_Strict):
    aliases: list[str] = Field(default_factory=list)


class ServiceModel(_Strict):
    image: str = Field(min_length=1)
    command: list[str] | str | None = None
    entrypoint: list[str] | str | None = None
    environment: dict[str, str | int | float | bool | None] | list[str] = Field(default_factory=dict)
    ports: list[PortModel | str | int] = Field(default_factory=list)
    volumes: list[VolumeMountModel | str] = Field(default_factory=list)
    networks: list[str] | dict[str, NetworkAttachModel | None] = Field(default_factory=list)
    healthcheck: HealthcheckModel | None = None
    depends_on: list[str] | dict[str, DependsOnModel] = Field(default_factory=list)
    restart: Literal["no", "always", "on-failure", "unless-stopped"] = "no"
    stop_grace_period: str = "10s"
    labels: dict[str, str] | list[str] = Field(default_factory=dict)
    deploy: DeployModel = Field(default_factory=lambda: DeployModel(replicas=1))


class VolumeModel(_Strict):
    labels: dict[str, str] = Field(default_factory=dict)


class NetworkModel(_Strict):
    labels: dict[str, str] = Field(default_factory=dict)
    internal: bool = False


class ComposeModel(_Strict):
    version: str | None = None
    name: str | None = None
    services: dict[str, ServiceModel] = Field(min_length=1)
    volumes: dict[str, VolumeModel | None] = Field(default_factory=dict)
    networks: dict[str, NetworkModel | None] = Field(default_factory=dict)


_UNION_TAGS = frozenset({"str", "int", "float", "bool", "none"}) | {
    cls.__name__
    for cls in (HealthcheckModel, DependsOnModel, DeployModel, PortModel, VolumeMountModel, NetworkAttachModel)
    + (ServiceModel, VolumeModel, NetworkModel)
}


# ---- the normalised model ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Port:
    """One published port: ``host_port`` on ``host_ip`` (all addresses when empty) → ``container_port``."""

    container_port: int
    host_port: int | None
    protocol: str = "tcp"
    host_ip: str = ""


@dataclass(frozen=True)
class Mount:
    """A named volume (``source`` is the Compose name, unprefixed) or a bind mount (an absolute host path)."""

    kind: Literal["volume", "bind"]
    source: str
    target: str
    read_only: bool = False


@dataclass(frozen=True)
class Health:
    """A health check in Engine API terms (durations in nanoseconds)."""

    test: tuple[str, ...]
    interval: int
    timeout: int
    retries: int
    start_period: int

    def as_api(self) -> dict[str, Any]:
        return {
            "test": list(self.test),
            "interval": self.interval,
            "timeout": self.timeout,
            "retries": self.retries,
            "start_period": self.start_period,
        }


@dataclass(frozen=True)
class Service:
    """One service after validation and substitution."""

    name: str
    image: str
    command: tuple[str, ...] | None
    entrypoint: tuple[str, ...] | None
    environment: Mapping[str, str]
    ports: tuple[Port, ...]
    mounts: tuple[Mount, ...]
    networks: tuple[str, ...]
    health: Health | None
    depends_on: Mapping[str, str]
    restart: str
    labels: Mapping[str, str]
    replicas: int
    stop_timeout: int = 10


@dataclass(frozen=True)
class Project:
    """A validated Compose file: services in dependency order, declared volumes and networks."""

    name: str
    services: tuple[Service, ...]
    volumes: tuple[str, ...]
    networks: tuple[str, ...]
    source: str = "compose.yaml"

    def service(self, name: str) -> Service:
        for service in self.services:
            if service.name == name:
                return service
        raise KeyError(name)

    def network_name(self, network: str) -> str:
        return f"{self.name}_{network}"

    def volume_name(self, volume: str) -> str:
        return f"{self.name}_{volume}"


@dataclass(frozen=True)
class ContainerSpec:
    """Everything needed to create one container through the Engine API, and a hash of it."""

    name: str
    service: str
    number: int
    image: str
    command: list[str] | None
    entrypoint: list[str] | None
    environment: dict[str, str]
    labels: dict[str, str]
    ports: list[Port]
    mounts: list[Mount]
    networks: list[str]
    aliases: list[str]
    health: Health | None
    restart: str
    stop_timeout: int = 10
    depends_on: dict[str, str] = field(default_factory=dict)


# ---- parsing -----------------------------------------------------------------------------------------
def load_yaml(text: str, source: str) -> Any:
    """Parse YAML text; a syntax error becomes a ConfigError with the line."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError([ConfigIssue(source, where, f"invalid YAML: {problem}")]) from None


def variables(data: Any) -> set[str]:
    """Every ``${NAME}`` referenced in a parsed Compose document (to check templates declare them)."""
    found: set[str] = set()
    for text in _strings(data):
        for match in _VARIABLE.finditer(text):
            if match.group(1) is None:
                found.add(match.group(2) or match.group(5))
    return found


def _strings(data: Any) -> list[str]:
    if isinstance(data, str):
        return [data]
    if isinstance(data, Mapping):
        return [text for key, value in data.items() for text in _strings(key) + _strings(value)]
    if isinstance(data, list):
        return [text for item in data for text in _strings(item)]
    return []


def substitute(data: Any, values: Mapping[str, str], source: str, path: str = "") -> Any:
    """``data`` with every ``${NAME}`` replaced from ``values``; raises ConfigError naming the key."""
    if isinstance(data, str):
        return _substitute_text(data, values, source, path)
    if isinstance(data, Mapping):
        return {
            _substitute_text(str(k), values, source, path): substitute(v, values, source, _join(path, str(k)))
            for k, v in data.items()
        }
    if isinstance(data, list):
        return [substitute(item, values, source, f"{path}[{i}]") for i, item in enumerate(data)]
    return data


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _substitute_text(text: str, values: Mapping[str, str], source: str, path: str) -> str:
    def replace(match: re.Match[str]) -> str:
        if match.group(1):
            return "$"
        name = match.group(2) or match.group(5)
        operator, argument = match.group(3), match.group(4) or ""
        value = values.get(name)
        unset = value is None or (operator is not None and operator.startswith(":") and value == "")
        if operator in (":-", "-") and unset:
            return argument
        if unset:
            reason = argument if operator in (":?", "?") and argument else f"variable {name} is not set"
            raise ConfigError([ConfigIssue(source, path, reason)])
        return str(value)

    return _VARIABLE.sub(replace, text)


def project(text: str, name: str, values: Mapping[str, str], *, source: str = "compose.yaml") -> Project:
    """Parse, substitute and validate a Compose file into a :class:`Project` called ``name``."""
    raw = load_yaml(text, source)
    if not isinstance(raw, Mapping):
        raise ConfigError([ConfigIssue(source, "", "a Compose file must be a mapping with a services key")])
    data = substitute(raw, values, source)
    try:
        model = ComposeModel.model_validate(data)
    except ValidationError as exc:
        raise ConfigError([_issue(source, error) for error in exc.errors()]) from None
    return _normalise(model, name, source)


def _issue(source: str, error: Mapping[str, Any]) -> ConfigIssue:
    # Unions report every branch; keep the key path the user wrote (names and indices), not pydantic's tags.
    parts = [str(p) for p in error["loc"] if isinstance(p, int) or not _is_union_tag(str(p))]
    key = ".".join(parts).replace(".[", "[")
    reason = "unknown key" if error["type"] == "extra_forbidden" else error["msg"]
    return ConfigIssue(source, key, reason)


def _is_union_tag(part: str) -> bool:
    """Pydantic names the union member in an error's location (``PortModel``, ``str``, ``list[str]``)."""
    return "[" in part or part in _UNION_TAGS


def _normalise(model: ComposeModel, name: str, source: str) -> Project:
    issues: list[ConfigIssue] = []
    services: dict[str, Service] = {}
    for service_name, definition in model.services.items():
        try:
            services[service_name] = _service(service_name, definition)
        except ValueError as exc:
            issues.append(ConfigIssue(source, f"services.{service_name}", str(exc)))
    volumes, networks = tuple(model.volumes), tuple(model.networks) or ("default",)
    for service in services.values():
        issues += _references(service, services, volumes, networks, source)
    if issues:
        raise ConfigError(issues)
    ordered = _dependency_order(services, source)
    return Project(name, ordered, volumes, networks, source)


def _references(
    service: Service, services: Mapping[str, Service], volumes: Sequence[str], networks: Sequence[str], source: str
) -> list[ConfigIssue]:
    key = f"services.{service.name}"
    issues = [
        ConfigIssue(source, f"{key}.depends_on", f"unknown service {other!r}")
        for other in service.depends_on
        if other not in services
    ]
    issues += [
        ConfigIssue(source, f"{key}.volumes", f"volume {m.source!r} is not declared under top-level volumes")
        for m in service.mounts
        if m.kind == "volume" and m.source not in volumes
    ]
    issues += [
        ConfigIssue(source, f"{key}.networks", f"network {n!r} is not declared under top-level networks")
        for n in service.networks
        if n not in networks
    ]
    if service.replicas > 1 and any(p.host_port for p in service.ports):
        issues.append(ConfigIssue(source, f"{key}.ports", "a service with replicas > 1 cannot publish a fixed port"))
    return issues


def _dependency_order(services: Mapping[str, Service], source: str) -> tuple[Service, ...]:
    ordered: list[Service] = []
    visiting: set[str] = set()

    def visit(name: str) -> None:
        if any(s.name == name for s in ordered):
            return
        if name in visiting:
            raise ConfigError([ConfigIssue(source, f"services.{name}.depends_on", "dependency cycle")])
        visiting.add(name)
        for other in services[name].depends_on:
            visit(other)
        ordered.append(services[name])

    for name in services:
        visit(name)
    return tuple(ordered)


def _service(name: str, model: ServiceModel) -> Service:
    return Service(
        name=name,
        image=model.image,
        command=_argv(model.command),
        entrypoint=_argv(model.entrypoint),
        environment=_environment(model.environment),
        ports=tuple(_port(p) for p in model.ports),
        mounts=tuple(_mount(v) for v in model.volumes),
        networks=tuple(model.networks),
        health=_health(model.healthcheck),
        depends_on=_depends_on(model.depends_on),
        restart=model.restart,
        labels=_pairs(model.labels),
        replicas=model.deploy.replicas,
        stop_timeout=round(parse_duration_ns(model.stop_grace_period) / 1e9),
    )


def _argv(value: list[str] | str | None) -> tuple[str, ...] | None:
    if value is None:
        return None
    return tuple(value) if isinstance(value, list) else ("/bin/sh", "-c", value)


def _pairs(value: Mapping[str, Any] | list[str]) -> dict[str, str]:
    if isinstance(value, list):
        return {key: text for key, _, text in (item.partition("=") for item in value)}
    return {k: "" if v is None else str(v) for k, v in value.items()}


def _environment(value: Mapping[str, Any] | list[str]) -> dict[str, str]:
    if isinstance(value, list):
        return _pairs(value)
    return {k: "" if v is None else str(v).lower() if isinstance(v, bool) else str(v) for k, v in value.items()}


def _port(value: PortModel | str | int) -> Port:
    if isinstance(value, PortModel):
        published = int(value.published) if value.published not in (None, "") else None
        return Port(value.target, published, value.protocol, value.host_ip)
    text, protocol = (str(value).split("/", 1) + ["tcp"])[:2]
    if protocol not in ("tcp", "udp"):
        raise ValueError(f"port {value!r}: protocol must be tcp or udp")
    parts = text.rsplit(":", 2)
    try:
        numbers = [int(p) for p in parts[-2:]]
    except ValueError:
        raise ValueError(f"port {value!r} is not HOST:CONTAINER[/PROTOCOL] with numbers") from None
    if any(not 0 < n < 65536 for n in numbers):
        raise ValueError(f"port {value!r} is out of range 1-65535")
    host_ip = parts[0] if len(parts) == 3 else ""
    return Port(numbers[-1], numbers[0] if len(numbers) == 2 else None, protocol, host_ip)


def _mount(value: VolumeMountModel | str) -> Mount:
    if isinstance(value, VolumeMountModel):
        return Mount(value.type, value.source, value.target, value.read_only)
    parts = value.split(":")
    if len(parts) not in (2, 3) or not parts[1].startswith("/") or (len(parts) == 3 and parts[2] not in ("ro", "rw")):
        raise ValueError(f"volume {value!r} is not SOURCE:/PATH[:ro|rw]")
    kind: Literal["volume", "bind"] = "bind" if parts[0].startswith(("/", ".")) else "volume"
    return Mount(kind, parts[0], parts[1], len(parts) == 3 and parts[2] == "ro")


def _health(model: HealthcheckModel | None) -> Health | None:
    if model is None or model.disable:
        return None
    test = ("CMD-SHELL", model.test) if isinstance(model.test, str) else tuple(model.test)
    if test[0] not in ("CMD", "CMD-SHELL", "NONE"):
        raise ValueError("healthcheck.test must start with CMD or CMD-SHELL (or be a string)")
    if test[0] == "NONE":
        return None
    return Health(
        test,
        parse_duration_ns(model.interval),
        parse_duration_ns(model.timeout),
        model.retries,
        parse_duration_ns(model.start_period),
    )


def _depends_on(value: list[str] | Mapping[str, DependsOnModel]) -> dict[str, str]:
    if isinstance(value, list):
        return dict.fromkeys(value, "service_started")
    return {name: dep.condition for name, dep in value.items()}


# ---- translation to Engine API calls -----------------------------------------------------------------
def container_specs(
    project: Project, app: str, version: str, *, extra_networks: Sequence[str] = ()
) -> list[ContainerSpec]:
    """One :class:`ContainerSpec` per replica of every service, in dependency order.

    ``extra_networks`` are engine network names (another app's, for a linked dependency) every container
    also joins.
    """
    specs = []
    for service in project.services:
        for number in range(1, service.replicas + 1):
            specs.append(_container(project, service, number, app, version, extra_networks))
    return specs


def _container(
    project: Project, service: Service, number: int, app: str, version: str, extra_networks: Sequence[str]
) -> ContainerSpec:
    labels = {
        **service.labels,
        PROJECT_LABEL: project.name,
        SERVICE_LABEL: service.name,
        NUMBER_LABEL: str(number),
        APP_LABEL: app,
        VERSION_LABEL: version,
    }
    networks = [project.network_name(n) for n in service.networks or project.networks[:1]]
    return ContainerSpec(
        name=f"{project.name}-{service.name}-{number}",
        service=service.name,
        number=number,
        image=service.image,
        command=list(service.command) if service.command is not None else None,
        entrypoint=list(service.entrypoint) if service.entrypoint is not None else None,
        environment=dict(service.environment),
        labels=labels,
        ports=list(service.ports),
        mounts=[
            Mount(m.kind, project.volume_name(m.source), m.target, m.read_only) if m.kind == "volume" else m
            for m in service.mounts
        ],
        networks=networks + [n for n in extra_networks if n not in networks],
        aliases=[service.name],
        health=service.health,
        restart=service.restart,
        stop_timeout=service.stop_timeout,
        depends_on=dict(service.depends_on),
    )


def config_hash(spec: ContainerSpec) -> str:
    """A stable hash of everything that defines the container (secrets included, so never shown)."""
    data = {k: v for k, v in vars(spec).items() if k != "labels"}
    data["labels"] = {k: v for k, v in spec.labels.items() if k != HASH_LABEL}
    text = json.dumps(data, sort_keys=True, default=lambda o: vars(o) if hasattr(o, "__dict__") else str(o))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def create_kwargs(api: Any, spec: ContainerSpec, *, name: str | None = None, role: str | None = None) -> dict[str, Any]:
    """Keyword arguments for ``docker.APIClient.create_container`` (the first network attached at create)."""
    import docker.types

    labels = {**spec.labels, HASH_LABEL: config_hash(spec)}
    if role:
        labels[ROLE_LABEL] = role
    restart = None if spec.restart == "no" else {"Name": spec.restart, "MaximumRetryCount": 0}
    host_config = api.create_host_config(
        port_bindings={
            f"{p.container_port}/{p.protocol}": (p.host_ip, p.host_port) if p.host_ip else p.host_port
            for p in spec.ports
            if p.host_port is not None
        }
        or None,
        mounts=[docker.types.Mount(m.target, m.source, type=m.kind, read_only=m.read_only) for m in spec.mounts]
        or None,
        restart_policy=restart,
        network_mode=spec.networks[0] if spec.networks else None,
    )
    aliases = spec.aliases if role is None else []
    networking = (
        api.create_networking_config({spec.networks[0]: api.create_endpoint_config(aliases=aliases or None)})
        if spec.networks
        else None
    )
    return {
        "image": spec.image,
        "command": spec.command,
        "entrypoint": spec.entrypoint,
        "name": name or spec.name,
        "environment": spec.environment or None,
        "labels": labels,
        "ports": [(p.container_port, p.protocol) for p in spec.ports] or None,
        "healthcheck": spec.health.as_api() if spec.health else None,
        "stop_timeout": spec.stop_timeout,
        "host_config": host_config,
        "networking_config": networking,
    }


__all__: Sequence[str] = [
    "APP_LABEL",
    "HASH_LABEL",
    "NUMBER_LABEL",
    "PROJECT_LABEL",
    "ROLE_LABEL",
    "SERVICE_LABEL",
    "VERSION_LABEL",
    "ContainerSpec",
    "Health",
    "Mount",
    "Port",
    "Project",
    "Service",
    "config_hash",
    "container_specs",
    "create_kwargs",
    "load_yaml",
    "parse_duration_ns",
    "project",
    "substitute",
    "variables",
]
