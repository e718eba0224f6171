"""Ingest: ``LocalStore.write`` of 1,000,000 samples over 1,000 series versus a bare DuckDB insert.

    .venv/bin/python benchmarks/bench_ingest.py [--scale 1.0] [--dir DIR] [--repeat 7]

The frame (``name, ts, value, host, device, job``) is built once. Each repeat writes it into a fresh
store ("cold": the 1,000 series are new), then writes the next 1,000 points per series into the same store
("warm": the series are known), and inserts the same Arrow table into a fresh file with plain DuckDB
(``INSERT INTO t SELECT * FROM arrow_table``, same columns, same memory limit and threads as the store).
Times run from the call to its commit, after one untimed warm-up of each.
Target: bare time / qwq time >= 0.5 (aim 0.8), on medians.
"""

from __future__ import annotations

import math
import sys
from datetime import datetime
from pathlib import Path

import duckdb
import polars as pl
import pyarrow as pa
from _common import (
    INTERVAL,
    Target,
    finish,
    fresh,
    median,
    parser,
    samples,
    series_labels,
    table,
    timed,
    workdir,
)

from qwq_core.settings import StoreSettings
from qwq_core.store import LocalStore

TARGET, AIM = 0.5, 0.8


def frames(scale: float) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The cold and warm batches: the same series, consecutive time ranges."""
    count = max(10, round(1000 * math.sqrt(scale)))
    points = max(10, round(1_000_000 * scale / count))
    labels = series_labels(count)
    cold = samples(labels, datetime(2026, 1, 1), points, seed=1)
    warm = samples(labels, cold["ts"].max() + INTERVAL, points, seed=2)
    return cold, warm


def qwq_write(path: Path, cold: pl.DataFrame, warm: pl.DataFrame) -> tuple[float, float]:
    with LocalStore(fresh(path)) as store:
        cold_s, written = timed(lambda: store.write(cold))
        warm_s, _ = timed(lambda: store.write(warm))
    assert written == cold.height, (written, cold.height)
    return cold_s, warm_s


def bare_insert(path: Path, arrow_table: pa.Table) -> float:
    settings = StoreSettings()
    config = {"memory_limit": settings.memory_limit, "threads": settings.threads}
    with duckdb.connect(str(fresh(path)), config=config) as con:
        con.register("arrow_table", arrow_table)
        con.execute("CREATE TABLE t AS SELECT * FROM arrow_table LIMIT 0")  # the same columns, no rows
        con.unregister("arrow_table")

        def insert() -> None:
            con.register("arrow_table", arrow_table)
            con.execute("INSERT INTO t SELECT * FROM arrow_table")

        seconds, _ = timed(insert)
        assert con.execute("SELECT count(*) FROM t").fetchone() == (arrow_table.num_rows,)
    return seconds


def main() -> int:
    cli = parser(__doc__.splitlines()[0])
    cli.add_argument("--repeat", type=int, default=7, help="runs of each side (median reported; >= 5)")
    args = cli.parse_args()
    cold, warm = frames(args.scale)
    arrow_table = cold.to_arrow()
    qwq_cold, qwq_warm, bare = [], [], []
    with workdir(args.dir) as work:
        qwq_write(work / "warm-up.duckdb", cold, warm)  # first-call costs stay out of the figures
        bare_insert(work / "warm-up-bare.duckdb", arrow_table)
        for run in range(args.repeat):
            cold_s, warm_s = qwq_write(work / f"qwq-{run}.duckdb", cold, warm)
            qwq_cold.append(cold_s)
            qwq_warm.append(warm_s)
            bare.append(bare_insert(work / f"bare-{run}.duckdb", arrow_table))
    n = cold.height
    figures = {
        "samples": n,
        "series": cold.select("host", "device").n_unique(),
        "repeat": args.repeat,
        "bare_s": median(bare),
        "qwq_cold_s": median(qwq_cold),
        "qwq_warm_s": median(qwq_warm),
        "bare_samples_per_s": n / median(bare),
        "qwq_cold_samples_per_s": n / median(qwq_cold),
        "qwq_warm_samples_per_s": n / median(qwq_warm),
        "ratio_cold": median(bare) / median(qwq_cold),
        "ratio_warm": median(bare) / median(qwq_warm),
    }

    def speed(seconds: float) -> str:
        return f"{seconds:.3f} s  {n / seconds:>12,.0f} samples/s"

    table(
        f"ingest: {n:,} samples, {figures['series']:,} series, median of {args.repeat}",
        [
            ("bare DuckDB insert", speed(figures["bare_s"])),
            ("qwq write, new series", speed(figures["qwq_cold_s"])),
            ("qwq write, known series", speed(figures["qwq_warm_s"])),
            ("ratio bare/qwq, new series", f"{figures['ratio_cold']:.2f}  (aim {AIM})"),
            ("ratio bare/qwq, known series", f"{figures['ratio_warm']:.2f}  (aim {AIM})"),
            *(
                (f"all runs, {side}, s", " ".join(f"{t:.3f}" for t in times))
                for side, times in (("bare", bare), ("new", qwq_cold), ("known", qwq_warm))
            ),
        ],
    )
    targets = [
        Target("ratio_cold", figures["ratio_cold"], TARGET, at_least=True),
        Target("ratio_warm", figures["ratio_warm"], TARGET, at_least=True),
    ]
    return finish("ingest", args.scale, figures, targets, [])


if __name__ == "__main__":
    sys.exit(main())
