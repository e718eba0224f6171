"""What the benchmarks share: synthetic series, timing, a work directory, and reporting.

Every benchmark prints a table of figures, PASS/FAIL per target and, last, one line of JSON holding the same
figures. Targets are set for ``--scale 1.0``; at other scales they are printed but not enforced.
"""

from __future__ import annotations

import argparse
import json
import math
import socket
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import polars as pl

T = TypeVar("T")

GAUGE = "bench_usage_ratio"
COUNTER = "bench_requests_total"
INTERVAL = timedelta(seconds=10)
_DEVICES = 20
_EPOCH = datetime(2020, 1, 1)


def parser(description: str) -> argparse.ArgumentParser:
    """The options every benchmark takes: ``--scale`` and ``--dir``."""
    cli = argparse.ArgumentParser(description=description)
    cli.add_argument("--scale", type=float, default=1.0, help="fraction of the full run (CI smoke: 0.01)")
    cli.add_argument("--dir", type=Path, help="work directory (default: a temporary one, removed afterwards)")
    return cli


# ---- data ----------------------------------------------------------------------------------------------
def series_labels(count: int) -> pl.DataFrame:
    """``count`` distinct series (``name, host, device, job``); every fourth device is a counter."""
    index = range(count)
    return pl.DataFrame(
        {
            "name": [COUNTER if i % 4 == 3 else GAUGE for i in index],
            "host": [f"host-{i // _DEVICES:03d}" for i in index],
            "device": [f"dev{i % _DEVICES}" for i in index],
            "job": ["bench"] * count,
        }
    )


def counter_rate(series_index: int | pl.Series) -> int | pl.Series:
    """The constant per-second increase of the counter at row ``series_index`` of :func:`series_labels`."""
    return 1 + series_index % 50


def samples(labels: pl.DataFrame, start: datetime, points: int, seed: int) -> pl.DataFrame:
    """``points`` samples per series every 10 s from ``start`` (naive UTC), time-major as collectors write.

    Columns ``name, ts, value, host, device, job``. Gauges are a daily wave plus noise (two decimals);
    counters grow by exactly :func:`counter_rate` per second, so their rate is known.
    """
    count = labels.height
    row = pl.int_range(0, count * points, eager=True)
    series, step = row % count, row // count
    micros = _micros(start - _EPOCH) + step * _micros(INTERVAL)
    seconds = micros / 1e6
    noise = (row.hash(seed) % 10_000) / 100_000 - 0.05
    gauge = (0.5 + 0.3 * (2 * math.pi * seconds / 86_400 + series).sin() + noise).clip(0.0, 1.0).round(2)
    counter = counter_rate(series) * seconds
    is_counter = labels["name"].gather(series) == COUNTER
    return labels.select(pl.all().gather(series)).select(
        "name",
        (micros + _micros(_EPOCH - datetime(1970, 1, 1))).cast(pl.Datetime("us")).alias("ts"),
        counter.zip_with(is_counter, gauge).alias("value"),
        pl.exclude("name"),
    )


def _micros(delta: timedelta) -> int:
    return delta // timedelta(microseconds=1)


# ---- timing --------------------------------------------------------------------------------------------
def timed(work: Callable[[], T]) -> tuple[float, T]:
    """Seconds ``work()`` took, and its result."""
    start = time.perf_counter()
    result = work()
    return time.perf_counter() - start, result


def median(times: list[float]) -> float:
    return statistics.median(times)


def p95(times: list[float]) -> float:
    """The nearest-rank 95th percentile."""
    ordered = sorted(times)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


# ---- files ---------------------------------------------------------------------------------------------
@contextmanager
def workdir(path: Path | None) -> Iterator[Path]:
    """``path`` (created if needed, left in place), or a temporary directory removed afterwards."""
    if path is not None:
        path.mkdir(parents=True, exist_ok=True)
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="qwq-bench-") as tmp:
        yield Path(tmp)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def fresh(path: Path) -> Path:
    """``path`` with no database (or write-ahead log) left at it from an earlier run."""
    for leftover in (path, path.with_name(path.name + ".wal")):
        leftover.unlink(missing_ok=True)
    return path


# ---- reporting -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Target:
    """A figure that must be at most (or at least) ``limit`` at scale 1.0."""

    name: str
    value: float
    limit: float
    at_least: bool = False

    @property
    def passed(self) -> bool:
        return self.value >= self.limit if self.at_least else self.value <= self.limit


def table(title: str, rows: list[tuple[str, Any]]) -> None:
    """Print ``rows`` of (label, value) under ``title``, aligned."""
    width = max(len(label) for label, _ in rows)
    print(f"\n{title}")
    for label, value in rows:
        print(f"  {label:<{width}}  {_format(value)}")


def _format(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.4g}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def finish(
    bench: str,
    scale: float,
    figures: dict[str, Any],
    targets: list[Target],
    errors: list[str],
) -> int:
    """Print PASS/FAIL per target and correctness errors, and the JSON line; return the exit code.

    Correctness errors fail at every scale; missed targets only at scale 1.0.
    """
    enforced = scale == 1.0
    print()
    for target in targets:
        sign = ">=" if target.at_least else "<="
        verdict = "PASS" if target.passed else "FAIL"
        print(f"{verdict} {target.name}: {target.value:.4g} (target {sign} {target.limit:g})")
    if not enforced:
        print(f"(targets are enforced at --scale 1.0 only; this run: --scale {scale:g})")
    for error in errors:
        print(f"ERROR {error}")
    result = {
        "bench": bench,
        "scale": scale,
        **figures,
        "targets": {t.name: t.passed for t in targets},
        "errors": errors,
    }
    print(json.dumps(result, default=str))
    missed = enforced and not all(t.passed for t in targets)
    return 1 if errors or missed else 0
