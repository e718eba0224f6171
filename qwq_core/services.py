"""The service contract: parts of ``qwq up`` beyond collectors (alerting, analytics jobs, actions).

A service *type* is registered in the ``qwq.services`` entry-point group, built-ins the same way a
third-party package would::

    class MyService:
        name = "alerting"                          # its table in qwq.toml: [alerting]
        class Options(pydantic.BaseModel): ...     # that table's keys

        def __init__(self, options: Options, context: ServiceContext) -> None: ...
        def jobs(self) -> Sequence[Job]: ...              # periodic work, run by the runtime's scheduler
        def router(self) -> fastapi.APIRouter | None: ... # REST routes, mounted under /api/v1
        def connect(self, services: Mapping[str, Service]) -> None: ...  # optional: meet the others by name
        def close(self) -> None: ...

A service writes samples and events through ``context.writer`` (the same buffered writer collectors'
results go through) and reads through ``context.store``. A job that raises or times out becomes a
``service.failed`` event and a log line; the other jobs and the collectors go on.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

from pydantic import BaseModel, ValidationError

from qwq_core.errors import ConfigError, ConfigIssue
from qwq_core.plugins import Registry
from qwq_core.scheduler import Job
from qwq_core.settings import Settings, issues_from
from qwq_core.store.base import Store
from qwq_core.writer import BufferedWriter

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "qwq.services"


@dataclass(frozen=True)
class ServiceContext:
    """What a service gets from ``qwq up``: the settings, the store, and the writer in front of it."""

    settings: Settings
    store: Store
    writer: BufferedWriter


class Service(Protocol):
    """A configured service instance."""

    def jobs(self) -> Sequence[Job]:
        """The periodic jobs to schedule."""
        ...

    def close(self) -> None:
        """Release what the service holds; may be called more than once."""
        ...


class ServiceType(Protocol):
    """What an entry point of the ``qwq.services`` group resolves to."""

    name: ClassVar[str]
    Options: ClassVar[type[BaseModel]]

    def __call__(self, options: Any, context: ServiceContext) -> Service: ...


def registry() -> Registry[ServiceType]:
    """The service types installed (built-in and third-party), via entry points."""
    return Registry(ENTRY_POINT_GROUP)


def service_options(settings: Settings) -> Mapping[str, Mapping[str, Any]]:
    """Each service's raw table from the config, by service name."""
    return {"alerting": settings.alerting, "analytics": settings.analytics, "actions": settings.actions}


def _configured(
    settings: Settings, types: Registry[ServiceType] | None, source: str
) -> list[tuple[ServiceType, BaseModel]]:
    """Every installed service type with its validated table; one ConfigError lists every invalid key."""
    tables = service_options(settings)
    found: list[tuple[ServiceType, BaseModel]] = []
    issues: list[ConfigIssue] = []
    for plugin in (types or registry()).plugins():
        if not plugin.enabled or plugin.loaded is None:
            continue
        kind = plugin.loaded
        try:
            found.append((kind, kind.Options.model_validate(tables.get(kind.name, {}))))
        except ValidationError as exc:
            issues += issues_from(exc, source, {}, prefix=(kind.name,))
    if issues:
        raise ConfigError(issues)
    return found


def validate_options(settings: Settings, *, types: Registry[ServiceType] | None = None, source: str = "config") -> None:
    """Check every installed service's table without starting anything; one ConfigError lists all problems."""
    _configured(settings, types, source)


def build_services(
    context: ServiceContext, *, types: Registry[ServiceType] | None = None, source: str = "config"
) -> list[Service]:
    """Instantiate every installed service with its table. Raises one ConfigError listing every invalid key."""
    built = [kind(options, context) for kind, options in _configured(context.settings, types, source)]
    by_name = {type(service).name: service for service in built}  # type: ignore[attr-defined]
    for service in built:
        connect = getattr(service, "connect", None)
        if callable(connect):
            connect(by_name)
    return built


def routers(services: Sequence[Service]) -> list[Any]:
    """The FastAPI routers the services contribute, in order."""
    found = []
    for service in services:
        make = getattr(service, "router", None)
        router = make() if callable(make) else None
        if router is not None:
            found.append(router)
    return found


__all__: Sequence[str] = [
    "Service",
    "ServiceContext",
    "ServiceType",
    "build_services",
    "registry",
    "routers",
    "service_options",
    "validate_options",
]
