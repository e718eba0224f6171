"""The collector contract: what a built-in or third-party collector implements.

A collector *type* is a class (or factory) registered in the ``qwq.collectors`` entry-point group::

    class MyCollector:
        default_interval = timedelta(seconds=30)
        class Options(pydantic.BaseModel):        # its keys under [collectors.<name>] in qwq.toml
            url: str

        def __init__(self, options: Options, context: CollectorContext) -> None: ...
        def collect(self, now: datetime) -> pl.DataFrame: ...   # or `async def`
        def metrics(self) -> Sequence[MetricInfo]: ...           # optional: type, unit, help
        def close(self) -> None: ...                             # optional

``collect`` returns a sample frame (``name``, ``ts``, ``value``, string label columns) — build it with
:func:`samples` — and never writes to the store itself. Whatever it needs (a /proc root, a URL, a client)
comes from its options, so tests can point it at fixtures. A target that is down is data (``up=0`` and an
event through ``context.emit``), not an exception; an exception or a timeout is recorded by the scheduler
as an event and an error count, and the other collectors go on.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, ClassVar, Protocol, runtime_checkable

import polars as pl
from pydantic import BaseModel, ConfigDict, ValidationError

from qwq_core.errors import ConfigError, ConfigIssue, NotFoundError
from qwq_core.model import Event, MetricInfo
from qwq_core.plugins import Registry
from qwq_core.settings import CollectorSettings, Settings, issues_from

ENTRY_POINT_GROUP = "qwq.collectors"
MAX_DEFAULT_TIMEOUT = timedelta(seconds=30)


@dataclass(frozen=True)
class CollectorContext:
    """What the framework hands a collector: its configured name, the host label, an event sink."""

    name: str
    host: str
    emit: Callable[[Event], None]


@runtime_checkable
class Collector(Protocol):
    """A configured collector instance."""

    def collect(self, now: datetime) -> pl.DataFrame | Awaitable[pl.DataFrame]:
        """Take one set of samples, stamped ``now`` (the scheduled time)."""
        ...


class CollectorType(Protocol):
    """What an entry point of the ``qwq.collectors`` group resolves to (usually the collector class)."""

    default_interval: ClassVar[timedelta]
    Options: ClassVar[type[BaseModel]]

    def __call__(self, options: Any, context: CollectorContext) -> Collector: ...


class NoOptions(BaseModel):
    """Options model for collectors that take none."""

    model_config = ConfigDict(extra="forbid")


def samples(now: datetime, rows: Iterable[tuple[str, Mapping[str, str], float]]) -> pl.DataFrame:
    """A sample frame from ``(name, labels, value)`` rows, all stamped ``now``."""
    names: list[str] = []
    values: list[float] = []
    labels: dict[str, dict[int, str]] = {}  # label → {row index: value}, built column-wise
    for index, (name, row_labels, value) in enumerate(rows):
        names.append(name)
        values.append(float(value))
        for key, label in row_labels.items():
            labels.setdefault(key, {})[index] = label
    columns = {"name": pl.Series(names, dtype=pl.String), "value": pl.Series(values, dtype=pl.Float64)}
    for key, by_row in labels.items():
        columns[key] = pl.Series([by_row.get(i) for i in range(len(names))], dtype=pl.String)
    return pl.DataFrame(columns).with_columns(ts=pl.lit(now).cast(pl.Datetime("us", "UTC")))


def metric_infos(collector: Collector, names: Iterable[str]) -> list[MetricInfo]:
    """The collector's declared metadata, or inferred metadata for the names it produced."""
    declared = getattr(collector, "metrics", None)
    if callable(declared):
        return list(declared())
    return [MetricInfo.infer(name) for name in sorted(set(names))]


@dataclass
class ConfiguredCollector:
    """A collector instance with its schedule, as built from the configuration."""

    name: str
    type: str
    collector: Collector
    interval: timedelta
    timeout: timedelta
    jitter: timedelta

    def close(self) -> None:
        """Release what the collector holds (connections, clients), if it says how."""
        close = getattr(self.collector, "close", None)
        if callable(close):
            close()


def registry() -> Registry[CollectorType]:
    """The collector types installed: built-ins and third-party packages alike, via entry points."""
    return Registry(ENTRY_POINT_GROUP)


def configured(settings: Settings) -> dict[str, CollectorSettings]:
    """The collectors to run: the config's, plus the host collector unless configured otherwise."""
    return {"host": CollectorSettings(), **settings.collectors}


def build_collectors(
    settings: Settings,
    emit: Callable[[Event], None],
    *,
    types: Registry[CollectorType] | None = None,
    source: str = "config",
) -> list[ConfiguredCollector]:
    """Instantiate every enabled collector. Raises one :class:`ConfigError` listing every invalid entry."""
    types = types or registry()
    built: list[ConfiguredCollector] = []
    issues: list[ConfigIssue] = []
    for name, entry in configured(settings).items():
        if not entry.enabled:  # skipped whole: its package may not even be installed
            continue
        type_name = entry.type or name
        try:
            factory = types.get(type_name)
        except NotFoundError as exc:
            key = f"collectors.{name}.type" if entry.type else f"collectors.{name}"
            issues.append(ConfigIssue(source, key, str(exc)))
            continue
        try:
            options = factory.Options.model_validate(entry.options)
        except ValidationError as exc:
            issues += issues_from(exc, source, {}, prefix=("collectors", name))
            continue
        interval = entry.interval or factory.default_interval
        if interval <= timedelta(0):
            issues.append(ConfigIssue(source, f"collectors.{name}.interval", "must be positive"))
            continue
        context = CollectorContext(name=name, host=settings.host, emit=emit)
        built.append(
            ConfiguredCollector(
                name=name,
                type=type_name,
                collector=factory(options, context),
                interval=interval,
                timeout=entry.timeout or min(interval, MAX_DEFAULT_TIMEOUT),
                jitter=min(entry.jitter, interval),
            )
        )
    if issues:
        for collector in built:
            collector.close()
        raise ConfigError(issues)
    return built


__all__: Sequence[str] = [
    "Collector",
    "CollectorContext",
    "CollectorType",
    "ConfiguredCollector",
    "NoOptions",
    "build_collectors",
    "configured",
    "metric_infos",
    "registry",
    "samples",
]
