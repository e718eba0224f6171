"""Real host traces: recordings of qwq's host collector under a load we generate, and anomalies injected into them.

The shipped traces were recorded on a 2-core, 24 GB Debian 12 VM. The first two, one after the other,
while the machine was shared with other work (whose load — test suites, builds — is part of them); the
third, :data:`QUIET_TRACE`, on another day with nothing else running, so that the workload's cycle shows::

    .venv/bin/python -m analytics.evaluation.traces --minutes 90 --out analytics/evaluation/data/host-trace.parquet
    .venv/bin/python -m analytics.evaluation.traces --minutes 60 --seed 1 \
        --out analytics/evaluation/data/host-trace-tune.parquet
    .venv/bin/python -m analytics.evaluation.traces --minutes 90 --seed 2 \
        --out analytics/evaluation/data/host-trace-quiet.parquet

:func:`record` runs :class:`collectors.host.HostCollector` every second while a repeating five-minute
workload runs beside it — a CPU burn (one core, 50–100 % duty, 60 s), a disk write of 100–300 MB with an
fsync every 8 MB (40 s), a memory allocation of 0.5–1.5 GB ramped up, held and freed (60 s) — with the
intensities drawn per cycle from a seeded generator. It keeps the series in :data:`KEPT` as the collector
produced them (counters raw) and writes the workload's phases into the file's metadata (``phases``).

The recordings hold no labelled anomalies: the workload cycle and the machine's other work are their
normal behaviour. :func:`trace_dataset` takes them at the collector's default interval, turns counters
into per-second rates and injects labelled anomalies of each kind into copies of the series, with the
generator's injectors, as a second evaluation set. A seasonality break goes only into series that have a
season to break (:data:`SEASON_FOUND`), as the generator breaks only its seasonal bases. :data:`TRACE` is
scored; :data:`TUNE_TRACE`, recorded at another time, is for tuning baselines, so that they are not tuned
on the background they are scored on.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import tempfile
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from multiprocessing.process import BaseProcess
from pathlib import Path

import numpy as np
import polars as pl

from analytics.evaluation.detection import NONE
from analytics.evaluation.synthetic import KINDS, PERMANENT, WARMUP, Kind, draw, inject, labelled_frame, place

TRACE = Path(__file__).with_name("data") / "host-trace.parquet"
TUNE_TRACE = Path(__file__).with_name("data") / "host-trace-tune.parquet"
QUIET_TRACE = Path(__file__).with_name("data") / "host-trace-quiet.parquet"
CYCLE_S = 300
KEPT: tuple[tuple[str, dict[str, str | None]], ...] = (
    ("host_cpu_usage_ratio", {"cpu": "total", "mode": None}),
    ("host_cpu_usage_ratio", {"cpu": "total", "mode": "user"}),
    ("host_cpu_usage_ratio", {"cpu": "total", "mode": "system"}),
    ("host_cpu_usage_ratio", {"cpu": "total", "mode": "iowait"}),
    ("host_load1", {}),
    ("host_memory_used_bytes", {}),
    ("host_memory_available_bytes", {}),
    ("host_memory_cached_bytes", {}),
    ("host_disk_written_bytes_total", {"device": "vda"}),
    ("host_disk_writes_completed_total", {"device": "vda"}),
    ("host_disk_io_time_seconds_total", {"device": "vda"}),
    ("host_context_switches_total", {}),
    ("host_interrupts_total", {}),
    ("host_processes", {}),
    ("host_open_fds", {}),
    ("host_network_receive_bytes_total", {"device": "eth0"}),
    ("host_network_transmit_bytes_total", {"device": "eth0"}),
)
"""The recorded series: (metric, labels that must match; ``None`` = label absent). The devices are those of
the machine the shipped traces were recorded on; a recording elsewhere keeps the series it finds."""
AVERAGED = ("host_cpu_usage_ratio",)
"""Metrics measured over the collector's interval: a longer interval averages them."""
EVERY = 5
"""The labelled set takes the 1 s recording at 5 s, the host collector's default interval."""
SEASON_FOUND = 0.5
"""A series has a season to break when :func:`cycle_evidence`'s oracle finds at least this share of its
half-cycle shifts: in most cycles the shape is clearer than the cycle-to-cycle variation."""


# ---- the workload --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Phase:
    """One run of a workload: what, when (seconds into the recording), for how long, and how hard."""

    kind: str
    start_s: float
    seconds: float
    intensity: float


def schedule(minutes: float, seed: int, cycle_s: float = CYCLE_S) -> list[Phase]:
    """The phases of a recording of ``minutes``: a CPU, a disk and a memory phase in every cycle.

    At the default five-minute cycle: a CPU burn of 60 s at 50–100 % duty, 100–300 MB written over 40 s,
    0.5–1.5 GB held for 60 s. A shorter cycle shrinks durations and sizes in proportion.
    """
    rng = np.random.default_rng(seed)
    size = cycle_s / CYCLE_S
    phases = []
    for cycle in range(int(minutes * 60 // cycle_s)):
        at = cycle * cycle_s
        phases += [
            Phase("cpu", at, 60 * size, round(float(rng.uniform(0.5, 1.0)), 2)),  # duty
            Phase("disk", at + 90 * size, 40 * size, round(float(rng.uniform(100, 300)) * size, 1)),  # MB
            Phase("memory", at + 160 * size, 60 * size, round(float(rng.uniform(500, 1500)) * size, 1)),  # MB
        ]
    return phases


def _burn(seconds: float, duty: float) -> None:
    """Keep one core busy ``duty`` of the time, in 100 ms slices."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        slice_start = time.monotonic()
        while time.monotonic() - slice_start < 0.1 * duty:
            pass
        time.sleep(0.1 * (1 - duty))


def _write(seconds: float, megabytes: float) -> None:
    """Write ``megabytes`` to a temporary file at an even pace over ``seconds``, with an fsync every 8 MB."""
    chunks = max(1, round(megabytes / 8))
    block = b"\0" * (8 << 20)
    began = time.monotonic()
    with tempfile.TemporaryFile(prefix="qwq-trace-") as file:
        for chunk in range(chunks):
            file.write(block)
            file.flush()
            os.fsync(file.fileno())
            time.sleep(max(0.0, began + seconds * (chunk + 1) / chunks - time.monotonic()))


def _hold(seconds: float, megabytes: float) -> None:
    """Allocate ``megabytes`` over the first quarter of ``seconds`` (touching every page), hold, then free."""
    held: list[bytearray] = []
    steps = 16
    for _ in range(steps):
        block = bytearray(int(megabytes / steps * (1 << 20)))
        block[::4096] = b"\1" * len(range(0, len(block), 4096))
        held.append(block)
        time.sleep(seconds / 4 / steps)
    time.sleep(seconds * 3 / 4)


WORKLOADS: dict[str, Callable[[float, float], None]] = {"cpu": _burn, "disk": _write, "memory": _hold}


class _Workload:
    """Runs each phase of a schedule in a child process when its time comes."""

    def __init__(self, phases: Sequence[Phase]) -> None:
        self._pending = deque(phases)
        self._running: list[BaseProcess] = []
        self._context = multiprocessing.get_context("fork")

    def start_due(self, elapsed_s: float) -> None:
        """Start the phases due by ``elapsed_s`` seconds into the recording."""
        self._running = [process for process in self._running if process.is_alive()]
        while self._pending and self._pending[0].start_s <= elapsed_s:
            phase = self._pending.popleft()
            process = self._context.Process(target=WORKLOADS[phase.kind], args=(phase.seconds, phase.intensity))
            process.start()
            self._running.append(process)

    def stop(self) -> None:
        """End the phases still running."""
        for process in self._running:
            process.terminate()
            process.join()


# ---- the recorder --------------------------------------------------------------------------------------
def record(
    out: Path, *, minutes: float, interval: float = 1.0, seed: int = 0, cycle_s: float = CYCLE_S
) -> pl.DataFrame:
    """Record the host collector every ``interval`` seconds for ``minutes`` under :func:`schedule`'s load.

    Writes the kept series to ``out`` (parquet, the phases in its metadata) and returns them.
    """
    from collectors.host import HostCollector, HostOptions  # the recorder only: analytics never collects
    from qwq_core.collector import CollectorContext

    collector = HostCollector(HostOptions.model_validate({}), CollectorContext("host", "trace", lambda _event: None))
    phases = schedule(minutes, seed, cycle_s)
    workload = _Workload(phases)
    frames: list[pl.DataFrame] = []
    start = time.time() // interval * interval + interval
    try:
        for tick, at in _ticks(start, interval, minutes):
            workload.start_due(tick * interval)
            frames.append(keep(collector.collect(datetime.fromtimestamp(at, UTC))))
    finally:
        workload.stop()
    trace = pl.concat(frames, how="diagonal_relaxed")
    metadata = {
        "interval_s": str(interval),
        "cycle_s": str(cycle_s),
        "started": datetime.fromtimestamp(start, UTC).isoformat(),
        "phases": json.dumps([asdict(phase) for phase in phases]),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    trace.write_parquet(out, compression_level=19, metadata=metadata)
    return trace


def _ticks(start: float, interval: float, minutes: float) -> Iterator[tuple[int, float]]:
    """(tick number, wall-clock time) every ``interval`` s from ``start``, sleeping until each; late ones skipped."""
    count = int(minutes * 60 / interval)
    tick = 0
    while tick < count:
        at = start + tick * interval
        time.sleep(max(0.0, at - time.time()))
        yield tick, at
        tick = max(tick + 1, int((time.time() - start) / interval))


def keep(samples: pl.DataFrame) -> pl.DataFrame:
    """The rows of a collector frame that belong to a series in :data:`KEPT`, with only their label columns."""
    wanted = [
        pl.lit(True).and_(
            pl.col("name") == name, *(_label_is(samples, label, value) for label, value in labels.items())
        )
        for name, labels in KEPT
    ]
    columns = ["name", "ts", "value", *sorted({label for _, labels in KEPT for label in labels})]
    present = [column for column in columns if column in samples.columns]
    return samples.filter(pl.any_horizontal(wanted)).select(present)


def _label_is(samples: pl.DataFrame, label: str, value: str | None) -> pl.Expr:
    if label not in samples.columns:
        return pl.lit(value is None)
    return pl.col(label).is_null() if value is None else pl.col(label) == value


# ---- the labelled set ----------------------------------------------------------------------------------
def load(path: Path = TRACE) -> pl.DataFrame:
    """The recorded samples as the collector produced them (counters raw)."""
    return pl.read_parquet(path)


def interval(path: Path = TRACE) -> timedelta:
    """The interval the recording at ``path`` was taken at."""
    return timedelta(seconds=float(pl.read_parquet_metadata(path)["interval_s"]))


def cycle_points(path: Path = TRACE, every: int = 1) -> int:
    """Samples per workload cycle of the recording at ``path``, taking every ``every``-th interval."""
    metadata = pl.read_parquet_metadata(path)
    return round(float(metadata["cycle_s"]) / float(metadata["interval_s"]) / every)


def resample(trace: pl.DataFrame, every: int) -> pl.DataFrame:
    """The recording as the collector would have taken it at ``every`` times its interval.

    Each run of ``every`` samples becomes one, stamped with its last time: CPU ratios, measured over the
    interval, are averaged; everything else (counters, instant gauges) keeps its last value. An
    incomplete run at the end is dropped.
    """
    if every == 1:
        return trace
    keys = [column for column in trace.columns if column not in ("ts", "value")]
    averaged = pl.col("name").first().is_in(AVERAGED)
    return (
        trace.sort("ts")
        .with_columns(run=pl.int_range(pl.len()).over(keys) // every)
        .group_by(*keys, "run")
        .agg(
            pl.col("ts").last(),
            pl.when(averaged).then(pl.col("value").mean()).otherwise(pl.col("value").last()).alias("value"),
            pl.len().alias("samples"),
        )
        .filter(pl.col("samples") == every)
        .select(*keys, "ts", "value")
        .sort([*keys, "ts"], nulls_last=True)
    )


def as_rates(trace: pl.DataFrame) -> pl.DataFrame:
    """Counters (``*_total``) as per-second rates named ``*_per_second`` (a drop counts as a reset); gauges as they are.

    A counter's first sample has no rate and is dropped.
    """
    keys = [column for column in trace.columns if column not in ("ts", "value")]
    counter = pl.col("name").str.ends_with("_total")
    increase = pl.col("value").diff()
    seconds = pl.col("ts").diff().dt.total_microseconds() / 1e6
    rate = pl.when(increase >= 0).then(increase).otherwise(pl.col("value")) / seconds
    return (
        trace.sort("ts")
        .with_columns(
            value=pl.when(counter).then(rate.over(keys)).otherwise("value"),
            name=pl.when(counter).then(pl.col("name").str.replace(r"_total$", "_per_second")).otherwise("name"),
        )
        .filter(pl.col("value").is_not_null())
        .sort([*keys, "ts"], nulls_last=True)
    )


def trace_dataset(
    seed: int,
    *,
    copies_per_kind: int = 16,
    kinds: Sequence[Kind] = KINDS,
    controls: int | None = None,
    points: int | None = None,
    every: int = EVERY,
    path: Path = TRACE,
) -> pl.DataFrame:
    """Labelled copies of the recorded series: ``copies_per_kind`` per kind, each with 1–3 anomalies.

    The recording is first :func:`resample`-d to ``every`` times its interval (by default the host
    collector's default interval, 5 s) and its counters turned into rates. The series for each kind are
    drawn with ``seed``; the controls are the series themselves, untouched (all of them, or the first
    ``controls``). ``points`` keeps only the first so many samples of each series.

    Magnitudes are in units of each series' :func:`spread`, estimated from its percentiles as a Gaussian
    standard deviation would be: real host metrics burst far beyond their typical noise, and an anomaly
    must stand out from the workload's normal swings, not only from the noise. Values are not clipped: a
    CPU ratio may be pushed above 1, a rate below 0.
    """
    rng = np.random.default_rng(seed)
    period = cycle_points(path, every)
    series = _recorded_series(path, every, points)
    frames = [
        labelled_frame(ts, values, np.ones(ts.size, bool), [], labels | {"case": f"{NONE}-{index:02d}"}, NONE)
        for index, (labels, ts, values) in enumerate(series[:controls])
    ]
    seasonal = np.flatnonzero([oracle_found(values, period) >= SEASON_FOUND for _, _, values in series])
    for kind in kinds:
        pool = seasonal if kind is Kind.SEASONALITY_BREAK else np.arange(len(series))
        if pool.size == 0:  # nothing to break: the kind is left out of the set rather than scored on noise
            continue
        picks = rng.permutation(np.resize(pool, max(copies_per_kind, pool.size)))
        for index, pick in enumerate(picks[:copies_per_kind]):
            labels, ts, values = series[pick]
            frames.append(_inject_copy(kind, labels | {"case": f"{kind}-{index:02d}"}, ts, values, period, rng))
    return pl.concat(frames, how="diagonal_relaxed")


Labels = dict[str, str | None]


def _recorded_series(path: Path, every: int, points: int | None) -> list[tuple[Labels, np.ndarray, np.ndarray]]:
    """Each series of the recording at ``path``, taken at ``every`` times its interval with counters as rates,
    as (labels, epoch microseconds, values), in a stable order; the first ``points`` samples, if given."""
    trace = as_rates(resample(load(path), every))
    keys = [column for column in trace.columns if column not in ("ts", "value")]
    out = []
    for _, part in trace.sort([*keys, "ts"], nulls_last=True).group_by(keys, maintain_order=True):
        part = part.head(points) if points else part
        labels = {key: part[key][0] for key in keys}
        out.append((labels, part["ts"].dt.epoch("us").to_numpy(), part["value"].to_numpy().astype(float)))
    return out


def cycle_evidence(path: Path = TRACE, every: int = EVERY) -> pl.DataFrame:
    """How much of a season each recorded series has to break: one row per series.

    ``acf_period`` is the autocorrelation at the workload's period, over the recording from a quarter in
    (past the start-up; any trend left in). ``oracle_found`` is the share of half-cycle shifts an oracle would
    flag without a single false alarm: every cycle of the series and its copy shifted by half a cycle are
    scored by their mean absolute deviation from the median profile of all the *other* cycles (in units of
    that profile's median absolute deviation), and a shifted cycle counts as found when it scores above
    every unshifted one. The oracle knows the period and sees the whole recording, past and future; an
    online detector that keeps its false alarms rare cannot expect to find more.
    """
    period = cycle_points(path, every)
    rows = [
        {**labels, "acf_period": acf_at(values, period), "oracle_found": oracle_found(values, period)}
        for labels, _, values in _recorded_series(path, every, None)
    ]
    return pl.DataFrame(rows)


def acf_at(values: np.ndarray, period: int) -> float:
    """The autocorrelation of ``values`` at lag ``period``, from a quarter in (past a start-up)."""
    x = values[len(values) // 4 :]
    x = x - x.mean()
    n = x.size
    return float(x[:-period] @ x[period:] / max(float(x @ x), 1e-300) * n / (n - period))


def oracle_found(values: np.ndarray, period: int) -> float:
    """The share of half-cycle shifts of ``values`` scoring above every unshifted cycle (:func:`cycle_evidence`)."""
    cycles = values[: values.size // period * period].reshape(-1, period)
    if len(cycles) < 3:
        return 0.0
    clean, shifted = np.empty(len(cycles)), np.empty(len(cycles))
    for index, cycle in enumerate(cycles):
        others = np.delete(cycles, index, axis=0)
        profile = np.median(others, axis=0)
        deviation = np.abs(others - profile)
        scale = np.median(deviation, axis=0) + 0.25 * np.median(deviation) + 1e-12
        clean[index] = np.mean(np.abs(cycle - profile) / scale)
        shifted[index] = np.mean(np.abs(np.roll(cycle, period // 2) - profile) / scale)
    return float(np.mean(shifted > clean.max()))


def _inject_copy(
    kind: Kind, labels: Labels, ts: np.ndarray, values: np.ndarray, period: int, rng: np.random.Generator
) -> pl.DataFrame:
    values, present = values.copy(), np.ones(ts.size, dtype=bool)
    sigma = spread(values)
    count = 1 if kind in PERMANENT else int(rng.integers(1, 4 if kind is Kind.SPIKE else 3))
    anomalies = [draw(kind, rng, period=period) for _ in range(count)]
    starts = place([a.length for a in anomalies], int(ts.size * (WARMUP + 0.05)), ts.size - 24, rng)
    found = [
        inject(anomaly, values, present, at, rng, sigma=sigma, period=period)
        for anomaly, at in zip(anomalies, starts, strict=False)
    ]
    return labelled_frame(ts, values, present, found, labels, kind)


def spread(values: np.ndarray) -> float:
    """A series' scale, as the standard deviation of Gaussian noise would be estimated from its percentiles.

    The larger of ``(p95 - p5) / 3.29`` and ``(p99 - p1) / 4.65``, so that a bursty series' scale covers
    its bursts; for a series that hardly moves, its standard deviation, else 1 % of its level, else 1.
    """
    p1, p5, p95, p99 = np.percentile(values, [1, 5, 95, 99])
    robust = max((p95 - p5) / 3.29, (p99 - p1) / 4.65)
    for candidate in (robust, float(np.std(values)), 0.01 * abs(float(np.median(values)))):
        if candidate > 0:
            return float(candidate)
    return 1.0


def main() -> None:
    cli = argparse.ArgumentParser(description="Record the host collector under a generated load.")
    cli.add_argument("--minutes", type=float, default=90)
    cli.add_argument("--interval", type=float, default=1.0)
    cli.add_argument("--seed", type=int, default=0)
    cli.add_argument("--cycle", type=float, default=CYCLE_S, help="seconds per workload cycle")
    cli.add_argument("--out", type=Path, default=TRACE)
    args = cli.parse_args()
    trace = record(args.out, minutes=args.minutes, interval=args.interval, seed=args.seed, cycle_s=args.cycle)
    print(f"{trace.height} samples of {trace.select(pl.exclude('ts', 'value')).n_unique()} series -> {args.out}")


if __name__ == "__main__":
    main()
