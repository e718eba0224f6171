"""Query: step queries over a week of 1,000 series at 10 s resolution (60.48 M samples at scale 1.0).

    .venv/bin/python benchmarks/bench_query.py [--scale 1.0] [--dir DIR] [--runs 25]

Builds the store through ``LocalStore.write``, one hour of all series per write, ending at "now" (the
current minute), then ``rollup(now)``. Each query below runs ``--runs`` times on a different series each
run, after one warm-up; windows are given as absolute times ending at that "now", so the answer does not
drift while the benchmark runs. Targets (median): 24 h at step 1m <= 50 ms, 30 d at step 1h <= 50 ms.
Correctness is checked on the side: the 24 h / 1m answer against a per-minute average of the raw samples
computed directly in DuckDB, and counter rates against the rate they were generated with (an error fails
the run at any scale).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import polars as pl
from _common import (
    COUNTER,
    GAUGE,
    INTERVAL,
    Target,
    counter_rate,
    finish,
    fresh,
    median,
    p95,
    parser,
    samples,
    series_labels,
    table,
    timed,
    workdir,
)

from qwq_core.store import LocalStore
from qwq_core.timeutil import floor_time, utcnow

HOUR = timedelta(hours=1)
TARGET_S = 0.050


def shape(scale: float) -> tuple[int, int]:
    """(series, hours of data): 1,000 x 168 at scale 1.0; smaller scales keep at least two days."""
    hours = max(48, round(168 * scale))
    return max(10, round(1000 * scale * 168 / hours)), hours


def build(store: LocalStore, labels: pl.DataFrame, hours: int, end: datetime) -> dict[str, float]:
    """Write ``hours`` of samples ending at ``end``, an hour per write; then roll up, then checkpoint."""
    per_hour = HOUR // INTERVAL
    generate_s = write_s = 0.0
    for hour in range(hours):
        seconds, frame = timed(lambda h=hour: samples(labels, end - (hours - h) * HOUR, per_hour, seed=h))
        generate_s += seconds
        seconds, _ = timed(lambda f=frame: store.write(f))
        write_s += seconds
    rollup_s, _ = timed(lambda: store.rollup(end))
    checkpoint_s, _ = timed(store.checkpoint)
    return {"generate_s": generate_s, "write_s": write_s, "rollup_s": rollup_s, "checkpoint_s": checkpoint_s}


def bench(runs: int, query: Callable[[int], pl.DataFrame]) -> dict[str, float]:
    """Median and p95 seconds of ``query(run)`` over ``runs`` runs after one warm-up."""
    query(runs)
    times = [timed(lambda r=run: query(r))[0] for run in range(runs)]
    return {"median_s": median(times), "p95_s": p95(times), "rows": query(0).height}


def bench_queries(store: LocalStore, labels: pl.DataFrame, end: datetime, runs: int) -> dict[str, Any]:
    """Time each query shape on series picked by run number (a different series each run)."""
    gauges = labels.filter(pl.col("name") == GAUGE)
    counters = labels.filter(pl.col("name") == COUNTER)

    def query(series: pl.DataFrame, run: int, hours: int, **options: Any) -> pl.DataFrame:
        row = series.row(run * 7 % series.height, named=True)
        since = end - hours * HOUR
        return store.query(row["name"], labels=_labels(row), since=since, until=end, **options)

    shapes: dict[str, Callable[[int], pl.DataFrame]] = {
        "q24h_1m": lambda r: query(gauges, r, 24, step="1m"),
        "q30d_1h": lambda r: query(gauges, r, 720, step="1h"),
        "q1h_raw": lambda r: query(gauges, r, 1),
        "q1h_rate": lambda r: query(counters, r, 1, step="1m", agg="rate"),
    }
    return {name: bench(runs, shape) for name, shape in shapes.items()}


def check(store: LocalStore, labels: pl.DataFrame, end: datetime) -> list[str]:
    """Errors in a 24 h / 1m answer, compared with the per-minute average of the raw samples in DuckDB."""
    errors = []
    row = labels.filter(pl.col("name") == GAUGE).row(0, named=True)
    since = end - 24 * HOUR
    got = store.query(GAUGE, labels=_labels(row), since=since, until=end, step="1m")
    if abs(got.height - 1440) > 1:
        errors.append(f"24h at step 1m returned {got.height} rows, expected 1440")
    series_id = store.series(GAUGE).filter(host=row["host"], device=row["device"])["series_id"].item()
    direct = store.sql(
        "SELECT time_bucket(INTERVAL 1 MINUTE, ts) AS ts, avg(value) AS expected FROM samples "
        "WHERE series_id = ? AND ts >= ? AND ts <= ? GROUP BY 1",
        [series_id, since, end],
    ).with_columns(pl.col("ts").dt.replace_time_zone("UTC"))
    joined = got.join(direct, on="ts", how="full")
    worst = joined.select((pl.col("value") - pl.col("expected")).abs().max()).item()
    if joined.height != got.height or worst is None or worst > 1e-9:
        errors.append(f"24h/1m averages differ from raw samples ({joined.height} buckets, max diff {worst})")
    return errors


def check_rate(store: LocalStore, labels: pl.DataFrame, end: datetime) -> list[str]:
    """Errors if a counter's per-minute rates over the last hour are not the rate it was generated with."""
    index = labels["name"].to_list().index(COUNTER)
    row = labels.row(index, named=True)
    rates = store.query(COUNTER, labels=_labels(row), since=end - HOUR, until=end, step="1m", agg="rate")
    wrong = rates.filter((pl.col("value") - counter_rate(index)).abs() > 1e-9)
    if rates.height < 59 or not wrong.is_empty():
        return [
            f"rate of a counter growing {counter_rate(index)}/s: {rates.height} buckets, "
            f"{wrong.height} off: {wrong.select(pl.col('ts').dt.to_string(), 'value').rows()}"
        ]
    return []


def _labels(row: dict[str, Any]) -> dict[str, str]:
    return {k: v for k, v in row.items() if k != "name"}


def main() -> int:
    cli = parser(__doc__.splitlines()[0])
    cli.add_argument("--runs", type=int, default=25, help="timed runs per query (median, p95; >= 20)")
    args = cli.parse_args()
    count, hours = shape(args.scale)
    labels = series_labels(count)
    end = floor_time(utcnow(), timedelta(minutes=1)).replace(tzinfo=None)
    with workdir(args.dir) as work, LocalStore(fresh(work / "query.duckdb")) as store:
        figures: dict[str, Any] = {"series": count, "hours": hours, **build(store, labels, hours, end)}
        stats = store.stats()
        figures |= {"samples": stats["rows"]["raw"], "size_bytes": stats["size_bytes"], "rows": stats["rows"]}
        figures |= bench_queries(store, labels, end, args.runs)
        errors = check(store, labels, end) + check_rate(store, labels, end)
    report(figures, args.runs)
    targets = [
        Target("q24h_1m_median_s", figures["q24h_1m"]["median_s"], TARGET_S),
        Target("q30d_1h_median_s", figures["q30d_1h"]["median_s"], TARGET_S),
    ]
    return finish("query", args.scale, figures, targets, errors)


def report(figures: dict[str, Any], runs: int) -> None:
    samples_per_s = figures["samples"] / figures["write_s"]
    table(
        f"store: {figures['series']:,} series x {figures['hours']} h at 10 s",
        [
            ("samples", figures["samples"]),
            ("generate frames, s", figures["generate_s"]),
            ("LocalStore.write, s", f"{figures['write_s']:.1f}  ({samples_per_s:,.0f} samples/s)"),
            ("rollup, s", figures["rollup_s"]),
            ("checkpoint, s", figures["checkpoint_s"]),
            ("file size, MB", figures["size_bytes"] / 1e6),
            *((f"rows {tier}", n) for tier, n in figures["rows"].items()),
        ],
    )
    table(
        f"queries: ms over {runs} runs, one series each",
        [
            (name, f"median {f['median_s'] * 1e3:7.2f}   p95 {f['p95_s'] * 1e3:7.2f}   rows {f['rows']}")
            for name in ("q24h_1m", "q30d_1h", "q1h_raw", "q1h_rate")
            for f in [figures[name]]
        ],
    )


if __name__ == "__main__":
    sys.exit(main())
