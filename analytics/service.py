"""Analytics inside ``qwq up``: capacity forecasts and online anomaly scoring, as a ``qwq.services`` service.

Jobs (thin wrappers: read the store, call the pure functions, write series and events):

- ``analytics.capacity`` (hourly): :func:`analytics.capacity.outlook` over the last ``history`` of disk,
  inode and memory usage → ``forecast_threshold_seconds{metric, bound}`` and
  ``forecast_used_ratio{metric, bound, ahead}`` series (see :func:`path_samples`) and a
  ``capacity.forecast`` event when a resource is expected to cross the threshold within ``warn_within``;
- ``analytics.multivariate`` (every 5 minutes): each host's metric vector over the last ``history``,
  scored by :func:`analytics.host_anomalies.score_hosts` in a short-lived process → ``host_anomaly_score{host}``
  series and an ``anomaly.multivariate`` event at each onset naming the metrics behind it;
- ``analytics.anomaly`` (every minute): the last minute of every series, averaged per minute, through one
  :class:`~analytics.anomaly.OnlineDetector` → ``anomaly_score{metric, <labels>}`` series and an
  ``anomaly.detected`` event at each onset. The detector's state is saved next to the store on close and
  loaded at start, so a restart does not relearn every series.
"""

from __future__ import annotations

import logging
import multiprocessing
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict, Field

from analytics.anomaly.combine import Sensitivity, false_positive_rate
from analytics.anomaly.online import OnlineDetector
from analytics.anomaly.output import anomaly_events, score_samples
from analytics.capacity import SOURCES, outlook
from analytics.host_anomalies import METRICS as HOST_METRICS
from analytics.host_anomalies import MIN_ROWS, host_events, host_samples, score_hosts
from qwq_core.collector import samples
from qwq_core.model import Event, MetricInfo, is_valid_label_name
from qwq_core.scheduler import Job
from qwq_core.selectors import name_glob
from qwq_core.services import ServiceContext
from qwq_core.settings import Duration
from qwq_core.timeutil import floor_time

log = logging.getLogger(__name__)

FORECAST_METRICS = (
    MetricInfo(
        "forecast_threshold_seconds",
        "gauge",
        "seconds",
        "Seconds until the forecast of `metric` reaches the capacity threshold (bound: expected, earliest, latest).",
    ),
    MetricInfo(
        "forecast_used_ratio",
        "gauge",
        "ratio",
        "Forecast of the usage ratio `metric` at `ahead` after the sample's time (bound: expected, lower, upper).",
    ),
)
ANOMALY_METRICS = (
    MetricInfo(
        "anomaly_score",
        "gauge",
        "ratio",
        "How unusual the last minute of `metric` was, 0-1 (online detector: each point scored from its past).",
    ),
)
_BOUNDS = {"crossing_s": "expected", "earliest_s": "earliest", "latest_s": "latest"}
_PATH_BOUNDS = {"yhat": "expected", "yhat_lower": "lower", "yhat_upper": "upper"}


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


class AnomalyOptions(BaseModel):
    """``[analytics.anomaly]``: always-on anomaly scoring of every series."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    interval: Duration = Field(default=timedelta(minutes=1), description="scoring step: one point per series")
    sensitivity: Literal["low", "medium", "high"] = Field(
        default="medium", description="expected false alarms per point: 1e-5, 1e-4, 1e-3"
    )
    exclude: list[str] = Field(
        default_factory=lambda: ["*anomaly_score", "forecast_*", "ALERTS", "qwq_*", "*_info", "*_up"],
        description="name globs not scored (derived series, self-metrics, up/down states)",
    )


class MultivariateOptions(BaseModel):
    """``[analytics.multivariate]``: each host's metrics scored together (IsolationForest)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    interval: Duration = Field(default=timedelta(minutes=5), description="how often the newest rows are scored")
    history: Duration = Field(default=timedelta(days=1), description="the rows the model learns from")
    step: Duration = Field(default=timedelta(minutes=1), description="one row per host per step")
    sensitivity: Literal["low", "medium", "high"] = Field(
        default="low", description="expected false alarms per row: 1e-5, 1e-4, 1e-3"
    )
    metrics: list[str] = Field(default_factory=lambda: ["host_*"], description="name globs making the vector")
    exclude: list[str] = Field(
        default_factory=lambda: ["host_anomaly_score", "*_info", "*_up"], description="name globs left out"
    )


class AnalyticsOptions(BaseModel):
    """The ``[analytics]`` table."""

    model_config = ConfigDict(extra="forbid")

    capacity: CapacityOptions = Field(default_factory=CapacityOptions)
    anomaly: AnomalyOptions = Field(default_factory=AnomalyOptions)
    multivariate: MultivariateOptions = Field(default_factory=MultivariateOptions)


class AnalyticsService:
    """Scheduled analytics of one ``qwq up``."""

    name: ClassVar[str] = "analytics"
    Options: ClassVar[type[AnalyticsOptions]] = AnalyticsOptions

    def __init__(self, options: AnalyticsOptions, context: ServiceContext) -> None:
        self.options = options
        self.context = context
        self._warned: set[str] = set()
        self._alarmed: set[str] = set()  # hosts in a multivariate episode
        self.state_path = context.settings.store_path.with_name("qwq.anomaly-state.npz")
        self.detector = load_detector(self.state_path, options.anomaly.sensitivity)
        context.writer.add_metrics(FORECAST_METRICS + ANOMALY_METRICS + HOST_METRICS)

    def jobs(self) -> Sequence[Job]:
        """The enabled jobs."""
        jobs = []
        capacity, anomaly, multivariate = self.options.capacity, self.options.anomaly, self.options.multivariate
        if capacity.enabled:
            jobs.append(Job("analytics.capacity", capacity.interval, self.capacity, timeout=timedelta(minutes=10)))
        if anomaly.enabled:
            jobs.append(Job("analytics.anomaly", anomaly.interval, self.score, timeout=anomaly.interval))
        if multivariate.enabled:
            jobs.append(Job("analytics.multivariate", multivariate.interval, self.hosts, timeout=multivariate.interval))
        return jobs

    def score(self, now: datetime) -> int:
        """Score the last complete interval of every series; returns how many points were anomalous."""
        step = self.options.anomaly.interval
        end = floor_time(now, step)
        frame = self.context.store.query("*", since=end - step, until=end, step=step)
        frame = without(frame, self.options.anomaly.exclude)
        if frame.is_empty():
            return 0
        scored = self.detector.update(frame).filter(pl.col("anomaly_score").is_not_null())
        self.context.writer.add(score_samples(scored))
        self.context.writer.add_events(anomaly_events(scored, source="analytics"))
        return int(scored["is_anomaly"].sum())

    def hosts(self, now: datetime) -> int:
        """Score each host's metric vector over the last interval; returns how many rows were anomalous."""
        options = self.options.multivariate
        end = floor_time(now, options.step)
        frame = without(self._read(options.metrics, end - options.history, end, options.step), options.exclude)
        if "host" not in frame.columns:
            return 0
        frame = frame.filter(pl.col("host").is_not_null())
        if frame["ts"].n_unique() < MIN_ROWS:
            return 0
        scored = in_child(
            score_hosts, frame, now=end, interval=options.interval, step=options.step, sensitivity=options.sensitivity
        )
        if scored.is_empty():
            return 0
        self.context.writer.add(host_samples(scored))
        self.context.writer.add_events(host_events(scored, self._alarmed))
        return int(scored["is_anomaly"].sum())

    def capacity(self, now: datetime) -> int:
        """Refresh the capacity forecasts; returns how many resources cross the threshold within the horizon."""
        options = self.options.capacity
        history = self._read(SOURCES, now - options.history, now, options.step)
        if history.is_empty():  # nothing to forecast: no process to start
            return 0
        found = in_child(outlook, history, now, threshold=options.threshold, horizon=options.horizon)
        if found.crossings.is_empty():
            return 0
        self.context.writer.add(forecast_samples(found.crossings, now))
        self.context.writer.add(path_samples(found.path, now))
        for event in self._warnings(found.crossings, now):
            self.context.writer.emit(event)
        return found.crossings.filter(pl.col("crossing_s").is_not_null()).height

    def _read(self, selectors: Sequence[str], since: datetime, until: datetime, step: timedelta) -> pl.DataFrame:
        """The samples of every selector over ``[since, until)`` at ``step``, in one frame."""
        frames = [self.context.store.query(selector, since=since, until=until, step=step) for selector in selectors]
        return pl.concat(frames, how="diagonal_relaxed")

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
        """Save the anomaly detector's state for the next start."""
        if self.options.anomaly.enabled and len(self.detector):
            try:
                np.savez(self.state_path, **self.detector.state())  # type: ignore[arg-type]
            except OSError as exc:
                log.warning("cannot save the anomaly detector's state to %s: %s", self.state_path, exc)


def without(frame: pl.DataFrame, globs: Sequence[str]) -> pl.DataFrame:
    """``frame`` less the series whose name matches any of the name ``globs``."""
    return frame.filter(~pl.any_horizontal(name_glob(glob) for glob in globs)) if globs else frame


T = TypeVar("T")


def in_child(function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``function(*args, **kwargs)`` in a short-lived process.

    statsmodels, scikit-learn, scipy and pandas add 150 MB or more to whichever process imports them; a job
    every few minutes or hours should not keep that in ``qwq up`` for good, so the forecasts and the
    multivariate model run where their memory is returned when they end.
    """
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        return pool.submit(function, *args, **kwargs).result()


def load_detector(path: Path, sensitivity: Sensitivity) -> OnlineDetector:
    """The detector saved at ``path``, or a new one when there is none (or it cannot be read)."""
    if path.is_file():
        try:
            with np.load(path) as saved:
                detector = OnlineDetector.from_state({key: saved[key] for key in saved.files})
            detector.sensitivity = sensitivity
            detector.false_positive_rate = false_positive_rate(sensitivity)
            return detector
        except (OSError, ValueError, KeyError) as exc:
            log.warning("anomaly detector state %s unreadable or from another version, starting afresh: %s", path, exc)
    return OnlineDetector(sensitivity)


def forecast_samples(found: pl.DataFrame, now: datetime) -> pl.DataFrame:
    """``forecast_threshold_seconds{metric=<ratio>, bound, <labels>}`` rows for every crossing found."""
    rows: list[tuple[str, dict[str, str], float]] = []
    for row in found.iter_rows(named=True):
        base = _labels(found, row)
        for column, bound in _BOUNDS.items():
            if row[column] is not None:
                rows.append(
                    ("forecast_threshold_seconds", {**base, "metric": row["name"], "bound": bound}, row[column])
                )
    return samples(now, rows)


def path_samples(path: pl.DataFrame, now: datetime) -> pl.DataFrame:
    """``forecast_used_ratio{metric=<ratio>, bound=expected|lower|upper, ahead, <labels>}`` rows, all at ``now``.

    The forecast at ``now + ahead`` (``path`` as :func:`analytics.capacity.ahead` returns it). Written at the
    time it was made, never at the time it is about: so each hourly refresh adds a point, and the history of
    e.g. ``forecast_used_ratio{ahead="1d"}`` is a record of what was predicted a day ahead, to set against
    what happened (a backtest of the live forecasts).
    """
    rows: list[tuple[str, dict[str, str], float]] = []
    for row in path.iter_rows(named=True):
        base = {**_labels(path, row), "metric": row["name"], "ahead": row["ahead"]}
        rows += [
            ("forecast_used_ratio", {**base, "bound": bound}, row[column]) for column, bound in _PATH_BOUNDS.items()
        ]
    return samples(now, rows)


def _labels(frame: pl.DataFrame, row: dict[str, Any]) -> dict[str, str]:
    """The row's non-empty label columns: string columns with valid label names, other than the outputs'."""
    return {
        c: row[c]
        for c in frame.columns
        if frame.schema[c] == pl.String
        and is_valid_label_name(c)
        and c not in ("name", "message", "direction", "ahead")
        and row[c]
    }


__all__ = [
    "AnalyticsOptions",
    "AnalyticsService",
    "AnomalyOptions",
    "CapacityOptions",
    "MultivariateOptions",
    "forecast_samples",
    "load_detector",
    "path_samples",
    "without",
]
