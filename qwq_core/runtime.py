"""What ``qwq up`` runs besides HTTP: collectors on their schedules, the buffered writer, store upkeep.

Collector output is validated in the collector's own job (so a malformed frame is that collector's error),
then buffered; the writer commits once per ``store.flush_interval``. Every run also yields self-metrics
(``qwq_collector_duration_seconds``, ``qwq_collector_samples``, ``qwq_collector_errors_total``,
``qwq_collector_missed_runs_total``, ``qwq_collector_up``, labelled ``collector``), stored like any series.
A failure becomes a ``collector.failed`` event when it starts or its reason changes (not on every repeat),
and ``collector.recovered`` when it ends.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

import polars as pl

from qwq_core import __version__
from qwq_core.collector import ConfiguredCollector, metric_infos, samples
from qwq_core.errors import CollectorError, QueryError, QwqError
from qwq_core.model import Event, MetricInfo
from qwq_core.scheduler import Job, Outcome, Scheduler
from qwq_core.services import Service
from qwq_core.settings import Settings
from qwq_core.store import ingest
from qwq_core.store.local import LocalStore
from qwq_core.timeutil import utcnow
from qwq_core.writer import BufferedWriter

log = logging.getLogger(__name__)

SELF_METRICS = (
    MetricInfo("qwq_collector_duration_seconds", "gauge", "seconds", "Duration of the collector's last run."),
    MetricInfo("qwq_collector_samples", "gauge", "", "Samples returned by the collector's last run."),
    MetricInfo("qwq_collector_errors_total", "counter", "", "Runs that raised or timed out."),
    MetricInfo("qwq_collector_missed_runs_total", "counter", "", "Scheduled runs skipped (overrun or hang)."),
    MetricInfo("qwq_collector_up", "gauge", "", "1 if the collector's last run succeeded, else 0."),
    MetricInfo("qwq_store_samples_written_total", "counter", "", "Samples committed to the store."),
    MetricInfo("qwq_store_flush_errors_total", "counter", "", "Flushes the store refused."),
    MetricInfo("qwq_store_samples_dropped_total", "counter", "", "Samples dropped from a full buffer."),
    MetricInfo("qwq_store_flush_duration_seconds", "gauge", "seconds", "Duration of the last flush."),
    MetricInfo("qwq_store_size_bytes", "gauge", "bytes", "Size of the store file and its WAL."),
    MetricInfo("qwq_store_series", "gauge", "", "Series known to the store."),
)
RETENTION_INTERVAL = timedelta(hours=1)
ROLLUP_INTERVAL = timedelta(minutes=1)


@dataclass
class CollectorStatus:
    """The running state of one collector, as ``qwq status`` and ``/api/v1/status`` show it."""

    name: str
    type: str
    interval_seconds: float
    runs: int = 0
    errors: int = 0
    missed: int = 0
    up: bool | None = None
    last_run: datetime | None = None
    last_duration_seconds: float | None = None
    last_samples: int | None = None
    last_error: str | None = None


def prepare(frame: Any, host: str) -> pl.DataFrame:
    """Check a collector's result and give rows without a ``host`` label this host's name."""
    if not isinstance(frame, pl.DataFrame):
        raise CollectorError(f"collect() returned {type(frame).__name__}, expected a polars DataFrame")
    host_label = pl.col("host").fill_null(host) if "host" in frame.columns else pl.lit(host)
    try:
        return ingest.normalise(frame.with_columns(host_label.alias("host")))
    except QueryError as exc:
        raise CollectorError(f"collect() returned an invalid frame: {exc}") from exc


def collector_job(configured: ConfiguredCollector, host: str) -> Job:
    """A scheduler job that runs ``configured``'s collect() and validates what it returns."""
    collect = configured.collector.collect
    run: Callable[[datetime], Any]
    if inspect.iscoroutinefunction(collect):

        async def run(now: datetime) -> pl.DataFrame:
            return await asyncio.to_thread(prepare, await collect(now), host)  # off the event loop

    else:

        def run(now: datetime) -> pl.DataFrame:
            return prepare(collect(now), host)

    return Job(configured.name, configured.interval, run, configured.timeout, configured.jitter)


def failure_reason(outcome: Outcome) -> str:
    """One line saying why a run failed."""
    if outcome.timed_out:
        return f"timed out after {outcome.job.timeout.total_seconds():g}s"
    return f"{type(outcome.error).__name__}: {outcome.error}"


class Runtime:
    """Collectors, writer and store upkeep, run together by :meth:`run` until stopped."""

    def __init__(
        self,
        settings: Settings,
        store: LocalStore,
        collectors: list[ConfiguredCollector],
        writer: BufferedWriter,
        services: Sequence[Service] = (),
    ) -> None:
        """``writer`` must write to ``store``; collectors were built with ``writer.emit`` as event sink."""
        self.settings = settings
        self.store = store
        self.collectors = {c.name: c for c in collectors}
        self.writer = writer
        self.status = {c.name: CollectorStatus(c.name, c.type, c.interval.total_seconds()) for c in collectors}
        handlers: dict[Job, Callable[[Outcome], None]] = {
            collector_job(c, settings.host): self._collected for c in collectors
        }
        handlers[Job("store.rollup", ROLLUP_INTERVAL, self._rollup, timedelta(minutes=10))] = self._upkeep_done
        handlers[Job("store.retention", RETENTION_INTERVAL, self._retention, timedelta(minutes=30))] = self._upkeep_done
        self.services = list(services)
        for service in self.services:
            for job in service.jobs():
                handlers[job] = self._upkeep_done
        self._handlers = handlers
        self.scheduler = Scheduler(list(handlers), self._dispatch)
        self.writer.add_metrics(SELF_METRICS)

    async def run(self, stop: asyncio.Event) -> None:
        """Collect, flush and maintain until ``stop`` is set; then flush what is left and close collectors."""
        self.writer.emit(
            Event("server.started", f"qwq {__version__} started", attrs={"collectors": list(self.collectors)})
        )
        flusher = asyncio.create_task(self._flush_loop(stop), name="flush")
        try:
            await self.scheduler.run(stop)
        finally:
            await flusher
            self.writer.emit(Event("server.stopped", f"qwq {__version__} stopped"))
            await asyncio.to_thread(self._flush)
            for configured in self.collectors.values():
                if not self.scheduler.running(configured.name):  # a hung run may still use it
                    configured.close()
            for service in self.services:
                service.close()

    async def _flush_loop(self, stop: asyncio.Event) -> None:
        period = self.settings.store.flush_interval.total_seconds()
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), timeout=period)
            except TimeoutError:
                pass
            await asyncio.to_thread(self._flush)

    def _flush(self) -> None:
        try:
            self.writer.flush()
        except QwqError as exc:
            log.error("flushing to the store failed (kept buffered, will retry): %s", exc)
        except Exception:  # a bug must not end the flush loop: log it, keep the data, go on
            log.exception("flushing to the store failed unexpectedly (kept buffered, will retry)")

    def _dispatch(self, outcome: Outcome) -> None:
        self._handlers[outcome.job](outcome)

    def _collected(self, outcome: Outcome) -> None:
        name = outcome.job.name
        status = self.status[name]
        reason = None if outcome.ok else failure_reason(outcome)
        was_up = status.up
        # Events are stamped when the run ended on its own clock, not the wall clock: a run replayed or
        # scheduled on a test clock keeps its events in its own time.
        ended = outcome.scheduled + timedelta(seconds=outcome.duration)
        status.runs += 1
        status.missed += outcome.missed
        status.last_run, status.last_duration_seconds = outcome.scheduled, outcome.duration
        if outcome.ok:
            frame: pl.DataFrame = outcome.result
            self.writer.add(frame)
            self.writer.add_metrics(metric_infos(self.collectors[name].collector, frame["name"].unique()))
            status.last_samples, status.up = frame.height, True
            if was_up is False:
                self.writer.emit(
                    Event(
                        "collector.recovered",
                        f"collector {name} recovered",
                        source=name,
                        attrs={"collector": name, "after": status.last_error},
                        ts=ended,
                    )
                )
            status.last_error = None
        else:
            status.errors += 1
            status.last_samples, status.up = 0, False
            if reason != status.last_error:
                log.warning("collector %s failed: %s", name, reason)
                self.writer.emit(
                    Event(
                        "collector.failed",
                        f"collector {name} failed: {reason}",
                        source=name,
                        severity="error",
                        attrs={"collector": name, "error": reason},
                        ts=ended,
                    )
                )
            status.last_error = reason
        self.writer.add(self._self_metrics(status, outcome.scheduled))

    def _self_metrics(self, status: CollectorStatus, now: datetime) -> pl.DataFrame:
        labels = {"collector": status.name}
        rows: list[tuple[str, dict[str, str], float]] = [
            ("qwq_collector_duration_seconds", labels, status.last_duration_seconds or 0.0),
            ("qwq_collector_samples", labels, status.last_samples or 0),
            ("qwq_collector_errors_total", labels, status.errors),
            ("qwq_collector_missed_runs_total", labels, status.missed),
            ("qwq_collector_up", labels, 1.0 if status.up else 0.0),
        ]
        return prepare(samples(now, rows), self.settings.host)

    def _rollup(self, now: datetime) -> dict[str, int]:
        done = self.store.rollup(now)
        stats = self.writer.stats
        rows: list[tuple[str, dict[str, str], float]] = [
            ("qwq_store_samples_written_total", {}, stats.samples_written),
            ("qwq_store_flush_errors_total", {}, stats.flush_errors),
            ("qwq_store_samples_dropped_total", {}, stats.samples_dropped),
            ("qwq_store_flush_duration_seconds", {}, stats.last_flush_seconds),
            ("qwq_store_size_bytes", {}, self.store.size_bytes),
            ("qwq_store_series", {}, self.store.series_count),
        ]
        self.writer.add(prepare(samples(now, rows), self.settings.host))
        return done

    def _retention(self, now: datetime) -> dict[str, int]:
        deleted = self.store.expire(now)
        if any(deleted.values()):
            self.store.checkpoint()
            log.info("retention deleted %s", deleted)
        return deleted

    def _upkeep_done(self, outcome: Outcome) -> None:
        if not outcome.ok:
            reason = failure_reason(outcome)
            log.error("%s failed: %s", outcome.job.name, reason)
            self.writer.emit(
                Event(
                    "store.upkeep_failed" if outcome.job.name.startswith("store.") else "service.failed",
                    f"{outcome.job.name} failed: {reason}",
                    source="qwq",
                    severity="error",
                    attrs={"job": outcome.job.name, "error": reason},
                )
            )

    def snapshot(self) -> dict[str, Any]:
        """Collector states and writer counters, JSON-ready."""
        return {
            "collectors": [asdict(s) for s in self.status.values()],
            "writer": asdict(self.writer.stats),
            "now": utcnow(),
        }
