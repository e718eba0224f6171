"""qwq's one settings model (pydantic): a TOML file, overridden by ``QWQ_*`` environment variables.

Precedence, highest first: command-line flags (applied with :func:`override`), environment variables
(``QWQ_HOME``, ``QWQ_SERVER__PORT``, ``QWQ_COLLECTORS__HOST__INTERVAL`` — nested keys joined by ``__``,
lower-cased; lists and tables as JSON),
the TOML file (``--config``, else ``$QWQ_CONFIG``, else ``$QWQ_HOME/qwq.toml`` when it exists), defaults.

Every validation problem becomes a :class:`~qwq_core.errors.ConfigIssue` naming the file (or environment
variable), the dotted key and the reason. Settings are built once, by the CLI or :func:`qwq_core.connect`,
and passed down; no other module reads the environment.
"""

from __future__ import annotations

import json
import os
import re
import socket
import tomllib
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    SecretStr,
    ValidationError,
)

from qwq_core.errors import ConfigError, ConfigIssue, QueryError
from qwq_core.timeutil import format_duration, parse_duration

_SECRETISH = re.compile(r"pass|secret|token|key|dsn|url|auth|header|credential", re.IGNORECASE)
"""Keys whose rejected values are not echoed in errors: they may hold a password (URLs carry them too)."""
ENV_PREFIX = "QWQ_"
ENV_DELIMITER = "__"


def _duration(value: Any) -> timedelta:
    try:
        return parse_duration(value)
    except QueryError as exc:
        raise ValueError(str(exc)) from None


Duration = Annotated[timedelta, BeforeValidator(_duration), PlainSerializer(format_duration, return_type=str)]
"""A duration written as ``30s``, ``5m``, ``1h30m``, ``7d`` or a number of seconds."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class RetentionSettings(_Section):
    """How long each storage tier keeps data (Netdata-style tiers)."""

    raw: Duration = Field(default=timedelta(days=7), description="raw samples, as collected")
    minute: Duration = Field(default=timedelta(days=90), description="1-minute rollups")
    hour: Duration = Field(default=timedelta(days=730), description="1-hour rollups")
    events: Duration = Field(default=timedelta(days=90), description="events")


class StoreSettings(_Section):
    """The embedded DuckDB store."""

    path: Path | None = Field(default=None, description="database file; default $QWQ_HOME/qwq.duckdb")
    flush_interval: Duration = Field(
        default=timedelta(seconds=2),
        description="how often collected samples are committed; a crash loses at most this much",
    )
    memory_limit: str = Field(default="256MB", description="DuckDB memory limit")
    threads: int = Field(default=2, ge=1, description="DuckDB worker threads")
    retention: RetentionSettings = Field(default_factory=RetentionSettings)


class ServerSettings(_Section):
    """The HTTP server of ``qwq up``: REST API, /metrics and the dashboard on one port."""

    host: str = Field(default="127.0.0.1", description="address to bind")
    port: int = Field(default=8765, ge=0, le=65535, description="port to bind (0 picks a free one)")
    token: SecretStr | None = Field(
        default=None,
        description="if set, everything but /api/v1/health and the API docs requires it (see docs/configuration.md)",
    )

    def token_value(self) -> str | None:
        """The token in clear, for the server and for clients of it."""
        return self.token.get_secret_value() if self.token is not None else None


class CollectorSettings(BaseModel):
    """One configured collector: scheduling plus the collector type's own options (extra keys)."""

    model_config = ConfigDict(extra="allow")

    type: str | None = Field(default=None, description="collector type; default the table name")
    enabled: bool = True
    interval: Duration | None = Field(default=None, description="default: the collector's own")
    timeout: Duration | None = Field(default=None, description="default: the interval, at most 30s")
    jitter: Duration = Field(
        default=timedelta(0), description="spread start times by up to this much (fixed per collector)"
    )

    @property
    def options(self) -> dict[str, Any]:
        """The collector type's own options: every key not defined above."""
        return dict(self.model_extra or {})


def default_home() -> Path:
    """``$XDG_DATA_HOME/qwq``, by default ``~/.local/share/qwq``."""
    data = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(data) / "qwq"


class Settings(BaseModel):
    """Everything qwq can be configured with. See ``docs/configuration.md`` for the reference."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    home: Path = Field(default_factory=default_home, description="data directory (store, server file)")
    host: str = Field(default_factory=socket.gethostname, description="the `host` label on every series")
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    store: StoreSettings = Field(default_factory=StoreSettings)
    server: ServerSettings = Field(default_factory=ServerSettings)
    collectors: dict[str, CollectorSettings] = Field(default_factory=dict)
    alerting: dict[str, Any] = Field(
        default_factory=dict, description="rules, routes, receivers, inhibition (docs/alerting-rules.md)"
    )
    analytics: dict[str, Any] = Field(
        default_factory=dict, description="anomaly scoring and forecasting jobs (docs/analytics.md)"
    )
    actions: dict[str, Any] = Field(
        default_factory=dict, description="schedules, self-healing and remediation policies (docs/actions.md)"
    )
    apps: dict[str, Any] = Field(default_factory=dict, description="extra app catalogs (docs/apps.md)")

    @property
    def store_path(self) -> Path:
        """The DuckDB file: ``store.path`` or ``$QWQ_HOME/qwq.duckdb``."""
        return (self.store.path or self.home / "qwq.duckdb").expanduser()


def resolve_config_path(config: str | Path | None, env: Mapping[str, str]) -> Path | None:
    """The config file to read: explicit, else ``$QWQ_CONFIG``, else ``$QWQ_HOME/qwq.toml`` if present."""
    if config is not None:
        return Path(config).expanduser()
    if env.get("QWQ_CONFIG"):
        return Path(env["QWQ_CONFIG"]).expanduser()
    home = Path(env["QWQ_HOME"]).expanduser() if env.get("QWQ_HOME") else default_home()
    candidate = home / "qwq.toml"
    return candidate if candidate.is_file() else None


def read_toml(path: Path) -> dict[str, Any]:
    """Parse a TOML file; syntax errors become a ConfigError with the line and column."""
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError([ConfigIssue(str(path), "", "file not found")]) from None
    except OSError as exc:
        raise ConfigError([ConfigIssue(str(path), "", f"cannot read: {exc.strerror}")]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([_toml_issue(str(path), str(exc))]) from None


def _toml_issue(source: str, message: str) -> ConfigIssue:
    where = re.search(r"\(at line (\d+), column (\d+)\)", message)
    reason = re.sub(r"\s*\(at .*\)$", "", message)
    key = f"line {where.group(1)}, column {where.group(2)}" if where else ""
    return ConfigIssue(source, key, f"invalid TOML: {reason}")


def load_settings(
    config: str | Path | None = None, *, env: Mapping[str, str] | None = None
) -> tuple[Settings, Path | None]:
    """Build the settings from the config file and the environment (``os.environ`` unless given).

    Returns the settings and the file they were read from (``None`` when defaults only).
    Raises :class:`ConfigError` listing every invalid key as ``file: key: reason``.
    """
    environ = os.environ if env is None else env
    path = resolve_config_path(config, environ)
    data = merge(read_toml(path) if path else {}, environment_overrides(environ))
    try:
        settings = Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(issues_from(exc, str(path) if path else "defaults", environ)) from None
    return settings, path


def environment_overrides(env: Mapping[str, str]) -> dict[str, Any]:
    """``QWQ_SERVER__PORT=9000`` → ``{"server": {"port": "9000"}}``; JSON lists and tables are decoded."""
    nested: dict[str, Any] = {}
    for name, value in env.items():
        if not name.startswith(ENV_PREFIX) or name == "QWQ_CONFIG":
            continue
        *parents, leaf = name[len(ENV_PREFIX) :].lower().split(ENV_DELIMITER)
        target = nested
        for key in parents:
            target = target.setdefault(key, {})
        target[leaf] = _env_value(value)
    return nested


def _env_value(value: str) -> Any:
    if value.strip()[:1] in ("[", "{"):
        try:
            return json.loads(value)
        except ValueError:
            pass  # not JSON after all: let validation judge the text
    return value


def merge(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``overrides`` applied, tables merged key by key."""
    merged = dict(base)
    for key, value in overrides.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def issues_from(
    error: ValidationError, source: str, env: Mapping[str, str], prefix: tuple[str | int, ...] = ()
) -> list[ConfigIssue]:
    """Translate a pydantic error into issues naming the source (file or environment variable) and key."""
    issues = []
    for item in error.errors(include_url=False):
        loc = prefix + tuple(item["loc"])
        key = ".".join(str(part) for part in loc)
        env_name = ENV_PREFIX + ENV_DELIMITER.join(str(part) for part in loc).upper()
        where = f"environment variable {env_name}" if env_name in env else source
        reason = item["msg"].removeprefix("Value error, ")
        if item["type"] not in ("missing", "extra_forbidden") and "input" in item and not _SECRETISH.search(key):
            reason += f" (got {item['input']!r})"
        issues.append(ConfigIssue(where, key, reason))
    return issues


def override(settings: Settings, **changes: Any) -> Settings:
    """A copy of ``settings`` with dotted keys replaced (``override(s, **{"server.port": 0})``), validated."""
    data = settings.model_dump(mode="python")
    for dotted, value in changes.items():
        if value is None:
            continue
        *parents, leaf = dotted.split(".")
        target = data
        for key in parents:
            target = target[key]
        target[leaf] = value
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(issues_from(exc, "command line", {})) from None
