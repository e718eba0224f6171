"""Analytics inside ``qwq up``: capacity forecasts and online anomaly scoring, as a ``qwq.services`` service.

Jobs (thin wrappers: read the store, call the pure functions, write series and events):

- ``analytics.capacity`` (hourly): :func:`analytics.capacity.runs_out` over the last ``history`` of disk,
  inode and memory usage → ``forecast_threshold_seconds{metric, bound}`` series and a
  ``capacity.forecast`` event when a resource is expected to cross the threshold within ``warn_within``;
- ``analytics.anomaly`` (every minute): see :mod:`analytics.anomaly_job`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, ClassVar

import polars as pl
from pydantic import BaseModel, ConfigDict, Field

from analytics.capacity import SOURCES, runs_out
from qwq_core.collector import samples
from qwq_core.model import Event, MetricInfo, is_valid_label_name
from qwq_core.scheduler import Job
from qwq_core.services import ServiceContext
from qwq_core.settings import Duration

log = logging.getLogger(__name__)

FORECAST_METRICS = (
    MetricInfo(
        "forecast_threshold_seconds",
        "gauge",
        "seconds",
        "Seconds until the forecast of `metric` reaches the capacity threshold (bound: expected, earliest, latest).",
    ),
)
_BOUNDS = {"crossing_s": "expected", "earliest_s": "earliest", "latest_s": "latest"}


class CapacityOptions(BaseModel):
    """``[analytics.capacity]``: what runs out first."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    interval: Duration = Field(default=timedelta(hours=1), description="how often forecasts are refreshed")
    history: Duration = Field(default=timedelta(days=28), description="how much history they learn from")
    step: Duration = Field(default=timedelta(minutes=10), description="resolution of that history")
    threshold: float = Field(default=0.9, gt=0, le=1, description="usage ratio that counts as running out")
    horizon: Duration = Field(default=timedelta(days=30), description="how far ahead to look")
    warn_within: Duration = Field(
        default=timedelta(days=7), description="a capacity.forecast event when expected sooner than this"
    )


class AnalyticsOptions(BaseModel):
    """The ``[analytics]`` table."""

    model_config = ConfigDict(extra="forbid")

    capacity: CapacityOptions = Field(default_factory=CapacityOptions)


class AnalyticsService:
    """Scheduled analytics of one ``qwq up``."""

    name: ClassVar[str] = "analytics"
    Options: ClassVar[type[AnalyticsOptions]] = AnalyticsOptions

    def __init__(self, options: AnalyticsOptions, context: ServiceContext) -> None:
        self.options = options
        self.context = context
        self._warned: set[str] = set()
        context.writer.add_metrics(FORECAST_METRICS)

    def jobs(self) -> Sequence[Job]:
        """The enabled jobs."""
        capacity = self.options.capacity
        if not capacity.enabled:
            return []
        return [Job("analytics.capacity", capacity.interval, self.capacity, timeout=timedelta(minutes=10))]

    def capacity(self, now: datetime) -> int:
        """Refresh the capacity forecasts; returns how many resources cross the threshold within the horizon."""
        options = self.options.capacity
        history = pl.concat(
            [
                self.context.store.query(name, since=now - options.history, until=now, step=options.step)
                for name in SOURCES
            ],
            how="diagonal_relaxed",
        )
        found = runs_out(history, threshold=options.threshold, horizon=options.horizon)
        if found.is_empty():
            return 0
        self.context.writer.add(forecast_samples(found, now))
        for event in self._warnings(found, now):
            self.context.writer.emit(event)
        return found.filter(pl.col("crossing_s").is_not_null()).height

    def _warnings(self, found: pl.DataFrame, now: datetime) -> list[Event]:
        """One event per resource newly expected to run out within ``warn_within`` (not every hour)."""
        soon = self.options.capacity.warn_within.total_seconds()
        events = []
        for row in found.iter_rows(named=True):
            crossing = row["crossing_s"]
            if crossing is not None and crossing <= soon and row["message"] not in self._warned:
                self._warned.add(row["message"])
                attrs = {k: v for k, v in row.items() if not isinstance(v, datetime)}
                events.append(Event("capacity.forecast", row["message"], "analytics", "warning", attrs, ts=now))
        return events

    def close(self) -> None:
        """Nothing held between runs."""


def forecast_samples(found: pl.DataFrame, now: datetime) -> pl.DataFrame:
    """``forecast_threshold_seconds{metric=<ratio>, bound, <labels>}`` rows for every crossing found."""
    labels = [
        c
        for c in found.columns
        if found.schema[c] == pl.String and is_valid_label_name(c) and c not in ("message", "direction")
    ]
    rows: list[tuple[str, dict[str, str], float]] = []
    for row in found.iter_rows(named=True):
        base: dict[str, Any] = {c: row[c] for c in labels if row[c] and c != "name"}
        for column, bound in _BOUNDS.items():
            if row[column] is not None:
                rows.append(
                    ("forecast_threshold_seconds", {**base, "metric": row["name"], "bound": bound}, row[column])
                )
    return samples(now, rows)


__all__ = ["AnalyticsOptions", "AnalyticsService", "CapacityOptions", "forecast_samples"]
