"""The runtime around collectors: validation, self-metrics, failure events, buffered writing."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from qwq_core.collector import CollectorContext, ConfiguredCollector, NoOptions, build_collectors, samples
from qwq_core.errors import CollectorError, QueryError, StoreError
from qwq_core.model import Event, MetricInfo
from qwq_core.plugins import Registry
from qwq_core.runtime import Runtime, prepare
from qwq_core.scheduler import Job, Outcome
from qwq_core.settings import Settings
from qwq_core.store import LocalStore, Store
from qwq_core.writer import BufferedWriter

NOW = datetime(2026, 11, 24, 12, tzinfo=UTC)


class Scripted:
    """A collector whose runs follow a script: a number is a sample value, an exception is raised."""

    default_interval = timedelta(seconds=1)
    Options = NoOptions

    def __init__(self, options: NoOptions, context: CollectorContext) -> None:
        self.script: list[Any] = []

    def collect(self, now: datetime) -> pl.DataFrame:
        step = self.script.pop(0) if self.script else 1.0
        if isinstance(step, BaseException):
            raise step
        if isinstance(step, pl.DataFrame):
            return step
        return samples(now, [("scripted_value", {"kind": "test"}, step)])

    def metrics(self) -> list[MetricInfo]:
        return [MetricInfo("scripted_value", "gauge", "", "A scripted value.")]


def make_runtime(store: LocalStore, *script: Any) -> tuple[Runtime, Scripted]:
    settings = Settings(host="h1", collectors={"s": {"type": "scripted"}, "host": {"enabled": False}})
    writer = BufferedWriter(store)
    (configured,) = build_collectors(settings, writer.emit, types=Registry("none", extra={"scripted": Scripted}))
    collector = configured.collector
    assert isinstance(collector, Scripted)
    collector.script = list(script)
    return Runtime(settings, store, [configured], writer), collector


def run_once(runtime: Runtime, configured: ConfiguredCollector, at: datetime) -> None:
    job = next(job for job in runtime.scheduler.jobs if job.name == configured.name)
    try:
        result = job.run(at)
        outcome = Outcome(job, at, 0.01, result=result)
    except Exception as exc:
        outcome = Outcome(job, at, 0.01, error=exc)
    runtime._dispatch(outcome)


def test_prepare_adds_the_host_label_and_validates() -> None:
    frame = samples(NOW, [("a", {}, 1), ("b", {"host": "other"}, 2)])
    assert prepare(frame, "h1")["host"].to_list() == ["h1", "other"]
    with pytest.raises(CollectorError, match="expected a polars DataFrame"):
        prepare({"name": "a"}, "h1")
    with pytest.raises(CollectorError, match="invalid frame.*lacks column"):
        prepare(pl.DataFrame({"name": ["a"], "value": [1.0]}), "h1")


def test_failures_are_events_on_change_and_counted(store: LocalStore) -> None:
    boom = RuntimeError("disk on fire")
    runtime, _ = make_runtime(store, 1.0, boom, boom, ValueError("other"), 2.0)
    configured = runtime.collectors["s"]
    for second in range(5):
        run_once(runtime, configured, NOW + timedelta(seconds=second))
    runtime.writer.flush()
    events = store.events(since=NOW - timedelta(days=1), until=NOW + timedelta(days=1)).sort("id")
    assert events["kind"].to_list() == ["collector.failed", "collector.failed", "collector.recovered"]
    assert "disk on fire" in events["message"][0] and "other" in events["message"][1]
    errors = store.query("qwq_collector_errors_total", since=NOW, until=NOW + timedelta(seconds=5))
    assert errors["value"].to_list() == [0, 1, 2, 3, 3]
    up = store.query("qwq_collector_up", since=NOW, until=NOW + timedelta(seconds=5))
    assert up["value"].to_list() == [1, 0, 0, 0, 1]
    assert set(up["collector"]) == {"s"} and set(up["host"]) == {"h1"}
    values = store.query("scripted_value", since=NOW, until=NOW + timedelta(seconds=5))
    assert values["value"].to_list() == [1.0, 2.0]
    status = runtime.status["s"]
    assert (status.runs, status.errors, status.up, status.last_error) == (5, 3, True, None)


def test_an_invalid_frame_is_the_collectors_error_not_the_writers(store: LocalStore) -> None:
    runtime, _ = make_runtime(store, pl.DataFrame({"name": ["x"], "ts": [NOW], "value": ["not a number"]}))
    run_once(runtime, runtime.collectors["s"], NOW)
    assert runtime.status["s"].up is False
    assert "value must be numeric" in (runtime.status["s"].last_error or "")
    runtime.writer.flush()  # nothing bad reached the buffer
    assert store.events(since="1000d", kind="collector.failed").height == 1


def test_declared_metadata_is_stored(store: LocalStore) -> None:
    runtime, _ = make_runtime(store, 1.0)
    run_once(runtime, runtime.collectors["s"], NOW)
    runtime.writer.flush()
    described = store.metrics("scripted_value").row(0, named=True)
    assert described["help"] == "A scripted value."
    assert store.metrics("qwq_collector_duration_seconds")["unit"].to_list() == ["seconds"]


def test_run_collects_flushes_and_records_start_and_stop(tmp_path: Path) -> None:
    settings = Settings(
        host="h1",
        store={"flush_interval": "200ms"},
        collectors={"s": {"type": "scripted", "interval": "100ms"}, "host": {"enabled": False}},
    )
    with LocalStore(tmp_path / "qwq.duckdb") as store:
        writer = BufferedWriter(store)
        collectors = build_collectors(settings, writer.emit, types=Registry("none", extra={"scripted": Scripted}))
        runtime = Runtime(settings, store, collectors, writer)

        async def main() -> None:
            stop = asyncio.Event()
            asyncio.get_running_loop().call_later(1.0, stop.set)
            await runtime.run(stop)

        asyncio.run(main())
        values = store.query("scripted_value", since="1m")
        kinds = store.events(since="1m").sort("id")["kind"].to_list()
    assert values.height >= 5  # ~10 runs at 100 ms; the final flush keeps the last ones
    assert kinds[0] == "server.started" and kinds[-1] == "server.stopped"


class Flaky(Store):
    """A store that refuses writes while ``broken`` is set, else passes them to a real store."""

    def __init__(self, inner: LocalStore) -> None:
        self.inner = inner
        self.broken = True

    def write(self, frame: pl.DataFrame) -> int:
        if self.broken:
            raise StoreError("disk full")
        return self.inner.write(frame)

    def record(self, events: Iterable[Event]) -> None:
        self.inner.record(events)

    def describe(self, metrics: Iterable[MetricInfo]) -> None:
        self.inner.describe(metrics)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    run_query = latest = series = metrics = events = sql = stats = close = None  # type: ignore[assignment]


def test_a_refused_flush_keeps_everything_for_the_next(store: LocalStore) -> None:
    flaky = Flaky(store)
    writer = BufferedWriter(flaky)
    frame = prepare(samples(NOW, [("kept", {}, 1.0)]), "h1")
    writer.add(frame)
    writer.emit(Event("test.happened", "while the disk was full"))
    with pytest.raises(StoreError):
        writer.flush()
    assert writer.stats.flush_errors == 1 and writer.stats.buffered == 1
    flaky.broken = False
    assert writer.flush() == 1
    assert store.query("kept", since=NOW - timedelta(minutes=1), until=NOW).height == 1
    assert store.events(since="1000d", kind="test.*").height == 1


def test_a_full_buffer_drops_the_oldest_batches(store: LocalStore) -> None:
    writer = BufferedWriter(store, max_samples=3)
    for second in range(5):
        writer.add(prepare(samples(NOW + timedelta(seconds=second), [("m", {}, second)]), "h1"))
    assert writer.stats.samples_dropped == 2
    writer.flush()
    assert store.query("m", since=NOW, until=NOW + timedelta(minutes=1))["value"].to_list() == [2, 3, 4]


def test_upkeep_failures_become_events(store: LocalStore) -> None:
    runtime, _ = make_runtime(store)
    job = Job("store.rollup", timedelta(minutes=1), lambda now: None, timedelta(minutes=1))
    runtime._upkeep_done(Outcome(job, NOW, 0.1, error=StoreError("no space left")))
    runtime.writer.flush()
    event = store.events(since="1000d", kind="store.*").row(0, named=True)
    assert event["severity"] == "error" and "no space left" in event["message"]


def test_an_unexpected_flush_error_keeps_the_data_and_the_loop(store: LocalStore) -> None:
    class Buggy(Flaky):
        def write(self, frame: pl.DataFrame) -> int:
            if self.broken:
                raise RuntimeError("a bug, not a store refusal")
            return self.inner.write(frame)

    runtime, _ = make_runtime(store)
    buggy = Buggy(store)
    runtime.writer.store = buggy
    runtime.writer.add(prepare(samples(NOW, [("kept", {}, 1.0)]), "h1"))
    runtime._flush()  # logs, does not raise: the flush loop goes on
    assert runtime.writer.stats.flush_errors == 1 and runtime.writer.stats.buffered == 1
    buggy.broken = False
    runtime._flush()
    assert store.query("kept", since=NOW - timedelta(minutes=1), until=NOW).height == 1


def test_the_writer_normalises_frames_as_they_come_so_one_bad_frame_cannot_block_flushes(store: LocalStore) -> None:
    writer = BufferedWriter(store)
    writer.add(prepare(samples(NOW, [("a", {}, 1.0)]), "h"))  # normalised: naive UTC times
    writer.add(samples(NOW, [("b", {}, 2.0)]))  # a service's frame: time-zone-aware times
    with pytest.raises(QueryError):
        writer.add(samples(NOW, [("bad name", {}, 3.0)]))
    assert writer.flush() == 2
