"""The :class:`Store` interface: what notebooks, the REST API and the dashboard read and write through.

Two implementations share it: :class:`~qwq_core.store.local.LocalStore` owns the DuckDB file, and
:class:`~qwq_core.store.remote.RemoteStore` talks to a running ``qwq up`` over HTTP (DuckDB allows one
writing process per file, so while the server runs every other process reads through it).
"""

from __future__ import annotations

import abc
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, Self

import polars as pl

from qwq_core.errors import QueryError
from qwq_core.model import Event, MetricInfo
from qwq_core.selectors import Selector
from qwq_core.store.tiers import AGGS, Agg
from qwq_core.timeutil import DurationLike, TimeLike, parse_duration, parse_time, utcnow

SQLParams = Sequence[Any] | Mapping[str, Any] | None


@dataclass(frozen=True)
class QuerySpec:
    """A resolved query: which series, which absolute time range, which step and aggregation."""

    selector: Selector
    since: datetime
    until: datetime
    step: timedelta | None
    agg: Agg

    @classmethod
    def build(
        cls,
        metric: str,
        *,
        labels: Mapping[str, str] | None = None,
        since: TimeLike = "1h",
        until: TimeLike | None = None,
        step: DurationLike | None = None,
        agg: str = "avg",
        now: datetime | None = None,
    ) -> QuerySpec:
        """Resolve relative times against ``now`` and validate everything; raises :class:`QueryError`."""
        now = now or utcnow()
        start, end = parse_time(since, now=now), parse_time(until, now=now)
        if start > end:
            raise QueryError(f"since ({start.isoformat()}) is after until ({end.isoformat()})")
        if agg not in AGGS:
            raise QueryError(f"unknown aggregation {agg!r}; choose one of {', '.join(AGGS)}")
        resolved_step = parse_duration(step) if step not in (None, "") else None
        if resolved_step is not None and resolved_step <= timedelta(0):
            raise QueryError("step must be positive")
        return cls(Selector.parse(metric, labels), start, end, resolved_step, agg)


class Store(abc.ABC):
    """Samples, series, metric metadata and events, read back as polars frames.

    Get one with :func:`qwq_core.connect`. Stores are context managers; :meth:`close` releases the file.
    """

    # ---- writing -------------------------------------------------------------------------------------
    @abc.abstractmethod
    def write(self, frame: pl.DataFrame) -> int:
        """Append samples: a frame with ``name``, ``ts``, ``value`` and string label columns.

        Null or empty label values mean the label is absent; rows with a null or NaN value are skipped.
        Returns the number of samples written. The batch is one transaction: all or nothing.
        """

    @abc.abstractmethod
    def record(self, events: Iterable[Event]) -> None:
        """Append events (collector failures, state changes, ...) to the events table."""

    @abc.abstractmethod
    def describe(self, metrics: Iterable[MetricInfo]) -> None:
        """Declare or update metric metadata (type, unit, help)."""

    # ---- reading -------------------------------------------------------------------------------------
    def query(
        self,
        metric: str,
        *,
        labels: Mapping[str, str] | None = None,
        since: TimeLike = "1h",
        until: TimeLike | None = None,
        step: DurationLike | None = None,
        agg: Agg = "avg",
    ) -> pl.DataFrame:
        """Samples of the series matching ``metric``, as a frame ``ts, value, name, <one column per label>``.

        ``metric`` is a name or a PromQL-style selector (``host_cpu_usage_ratio{cpu="total"}``, wildcards
        allowed in the name); ``labels`` adds equality matchers. ``since``/``until`` take durations ago
        (``"1h"``), datetimes, ISO strings or Unix seconds. Without ``step`` raw samples are returned; with
        one (``"1m"``, ``"1h"``) each series is bucketed and aggregated by ``agg`` (avg, min, max, sum,
        count, last) from the coarsest tier that serves the step. ``agg="rate"`` reads a counter as a
        per-second rate, tolerating counter resets.
        """
        spec = QuerySpec.build(metric, labels=labels, since=since, until=until, step=step, agg=agg)
        return self.run_query(spec)

    @abc.abstractmethod
    def run_query(self, spec: QuerySpec) -> pl.DataFrame:
        """Answer a resolved :class:`QuerySpec` (what :meth:`query` calls)."""

    @abc.abstractmethod
    def latest(
        self,
        metric: str | None = None,
        *,
        labels: Mapping[str, str] | None = None,
        max_age: DurationLike = "5m",
    ) -> pl.DataFrame:
        """The newest sample of each matching series seen within ``max_age``: ``ts, value, name, <labels>``."""

    @abc.abstractmethod
    def series(self, pattern: str | None = None) -> pl.DataFrame:
        """Known series (``series_id, name, <labels>``), optionally filtered by a selector or name glob."""

    @abc.abstractmethod
    def metrics(self, pattern: str | None = None) -> pl.DataFrame:
        """Metric metadata ``name, type, unit, help, series`` (series = how many series have that name)."""

    @abc.abstractmethod
    def events(
        self,
        *,
        since: TimeLike = "24h",
        until: TimeLike | None = None,
        kind: str | None = None,
        source: str | None = None,
        severity: str | None = None,
        limit: int = 1000,
    ) -> pl.DataFrame:
        """Events, newest first: ``id, ts, kind, source, severity, message, attrs`` (attrs as JSON text).

        ``kind`` and ``source`` accept shell wildcards (``collector.*``).
        """

    @abc.abstractmethod
    def sql(self, query: str, params: SQLParams = None) -> pl.DataFrame:
        """Run one read-only SQL statement (SELECT) against the store's tables and return the result.

        Tables: ``series``, ``samples``, ``samples_1m``, ``samples_1h``, ``metrics``, ``events`` and the
        view ``points`` (raw samples joined to names and labels). Writing statements are refused; times come
        back as UTC, intervals as seconds.
        """

    @abc.abstractmethod
    def stats(self) -> dict[str, Any]:
        """Facts about the store: path, size, schema version, series and row counts per tier, watermarks."""

    # ---- lifecycle -----------------------------------------------------------------------------------
    @abc.abstractmethod
    def close(self) -> None:
        """Release the store (the file lock, or the HTTP connection pool)."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
