"""Installed apps, recorded in the store as events and rebuilt from them; their secrets encrypted.

Every install, upgrade, uninstall and ignore-upgrade appends one event (``app.installed``,
``app.upgraded``, ``app.uninstalled``, ``app.ignore_upgrade``) whose attrs hold the app, its template
version and source, its parameters — secret ones encrypted with Fernet under a key kept in
``<home>/apps/secret.key`` (mode 0600), never in clear — and the ignore-upgrade flag. :func:`installed`
folds those events into the current state, so the store's append-only events table is the only record.

:class:`AppsEnv` is what every app action is configured with: the qwq home and the catalog sources.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet, InvalidToken

from actions.apps.catalog import Catalog, Template
from qwq_core.errors import ActionError
from qwq_core.model import Event
from qwq_core.store.base import Store

KINDS = ("app.installed", "app.upgraded", "app.uninstalled", "app.ignore_upgrade")
ENCRYPTED = "fernet:"


class SecretBox:
    """Fernet encryption with a key file created on first use; also derives stable generated passwords."""

    def __init__(self, key_file: Path) -> None:
        self.key_file = key_file
        self._fernet: Fernet | None = None
        self._key: bytes | None = None

    def _load(self) -> Fernet:
        if self._fernet is None:
            if not self.key_file.exists():
                self.key_file.parent.mkdir(parents=True, exist_ok=True)
                descriptor = os.open(self.key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(descriptor, "wb") as handle:
                    handle.write(Fernet.generate_key())
            self._key = self.key_file.read_bytes().strip()
            self._fernet = Fernet(self._key)
        return self._fernet

    def encrypt(self, text: str) -> str:
        return ENCRYPTED + self._load().encrypt(text.encode()).decode()

    def decrypt(self, token: str) -> str:
        try:
            return self._load().decrypt(token.removeprefix(ENCRYPTED).encode()).decode()
        except InvalidToken:
            raise ActionError(f"cannot decrypt an app secret with {self.key_file} (was the key replaced?)") from None

    def generate(self, app: str, param: str) -> str:
        """A password for ``param`` of ``app``: random to anyone without the key, the same on every plan."""
        self._load()
        assert self._key is not None
        digest = hmac.new(self._key, f"{app}\0{param}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest[:18]).decode()


@dataclass
class AppsEnv:
    """Where app actions keep things and which catalogs they read (one per process, passed down)."""

    home: Path
    sources: tuple[str, ...] = ("builtin",)
    poll: float = 0.5
    """Seconds between health polls while waiting for containers."""
    _catalog: Catalog | None = field(default=None, repr=False)
    _box: SecretBox | None = field(default=None, repr=False)

    @classmethod
    def from_settings(cls, settings: Any) -> AppsEnv:
        """From qwq's settings: ``home`` and the optional ``[apps] catalogs = [...]`` section."""
        section = getattr(settings, "apps", None) or {}
        extra = tuple(section.get("catalogs", ())) if isinstance(section, Mapping) else ()
        return cls(Path(settings.home), ("builtin", *extra))

    def catalog(self, *, refresh: bool = False) -> Catalog:
        if self._catalog is None or refresh:
            self._catalog = Catalog.load(self.sources, cache=self.home / "apps" / "catalogs")
        return self._catalog

    @property
    def secrets(self) -> SecretBox:
        if self._box is None:
            self._box = SecretBox(self.home / "apps" / "secret.key")
        return self._box


_default: AppsEnv | None = None


def configure(env: AppsEnv | None) -> None:
    """Set the environment app actions built without one use (the server and CLI call this once)."""
    global _default
    _default = env


def default_env() -> AppsEnv:
    """The configured :class:`AppsEnv`, else one from :func:`qwq_core.settings.load_settings`."""
    global _default
    if _default is None:
        from qwq_core.settings import load_settings

        _default = AppsEnv.from_settings(load_settings()[0])
    return _default


@dataclass(frozen=True)
class InstalledApp:
    """The current record of one installed app (secrets still encrypted)."""

    name: str
    template: str
    version: str
    source: str
    params: Mapping[str, str]
    secrets: Mapping[str, str]
    ignore_upgrade: bool = False
    dependencies: Mapping[str, str] = field(default_factory=dict)
    """alias → installed app name."""
    installed_at: str = ""

    def values(self, box: SecretBox) -> dict[str, str]:
        """Every parameter in clear, for the one call that needs them (creating containers)."""
        return {**self.params, **{k: box.decrypt(v) for k, v in self.secrets.items()}}

    def shown(self) -> dict[str, Any]:
        """JSON-able, secrets masked."""
        return {
            "name": self.name,
            "template": self.template,
            "version": self.version,
            "source": self.source,
            "params": {**self.params, **dict.fromkeys(self.secrets, "**********")},
            "ignore_upgrade": self.ignore_upgrade,
            "dependencies": dict(self.dependencies),
            "installed_at": self.installed_at,
        }


def record_event(
    kind: str, app: str, template: Template | None, values: Mapping[str, str], box: SecretBox, **extra: Any
) -> Event:
    """The event that records ``kind`` for ``app``; parameters named secret by the template are encrypted."""
    secret_names = template.secret_names() if template is not None else set()
    attrs: dict[str, Any] = {
        "app": app,
        "params": {k: v for k, v in values.items() if k not in secret_names},
        "secrets": {k: box.encrypt(v) for k, v in values.items() if k in secret_names},
        **extra,
    }
    if template is not None:
        attrs |= {"template": template.name, "version": template.version, "source": template.source}
    verb = kind.removeprefix("app.").replace("_", "-")
    version = f" {template.version}" if template is not None else ""
    return Event(kind, f"app {app}{version}: {verb}", source="apps", attrs=attrs)


def installed(store: Store) -> dict[str, InstalledApp]:
    """Every installed app by name, folded from the ``app.*`` events (oldest first)."""
    events = store.events(since=datetime(1970, 1, 1, tzinfo=UTC), kind="app.*", limit=1_000_000)
    apps: dict[str, InstalledApp] = {}
    for row in reversed(events.rows(named=True)):  # newest first from the store
        if row["kind"] not in KINDS:
            continue
        attrs = json.loads(row["attrs"] or "{}")
        _apply(apps, row["kind"], attrs, str(row["ts"]))
    return apps


def _apply(apps: dict[str, InstalledApp], kind: str, attrs: Mapping[str, Any], ts: str) -> None:
    name = attrs.get("app", "")
    if kind == "app.uninstalled":
        apps.pop(name, None)
    elif kind == "app.ignore_upgrade" and name in apps:
        apps[name] = replace(apps[name], ignore_upgrade=bool(attrs.get("ignore")))
    elif kind in ("app.installed", "app.upgraded"):
        previous = apps.get(name)
        apps[name] = InstalledApp(
            name=name,
            template=attrs.get("template", name),
            version=attrs.get("version", ""),
            source=attrs.get("source", ""),
            params=dict(attrs.get("params", {})),
            secrets=dict(attrs.get("secrets", {})),
            ignore_upgrade=previous.ignore_upgrade if previous else False,
            dependencies=dict(attrs.get("dependencies", {})),
            installed_at=previous.installed_at if previous else ts,
        )


__all__: Sequence[str] = [
    "AppsEnv",
    "InstalledApp",
    "SecretBox",
    "configure",
    "default_env",
    "installed",
    "record_event",
]
