"""Forecast speed: 1,000 series of 7 days of hourly history, 24 hours ahead, with the default model.

    .venv/bin/python benchmarks/bench_forecast.py [--scale 1.0] [--dir DIR] [--workers 2] [--seed 0]

The series come from the forecasting evaluation's synthetic set (daily cycles with trends, weekly patterns,
heavy-tailed and skewed noise, gaps, counters with resets), so model selection does the work it does in
production. One call of ``analytics.forecast.forecast(frame, "24h", workers=...)`` is timed, from the frame
to the result, worker start-up included; a single-process run over a sample of the series gives the cost
per series. The result is checked: 24 rows per series, finite, ``yhat_lower <= yhat <= yhat_upper``.
Target: <= 30 s at scale 1.0 on 2 cores.
"""

from __future__ import annotations

import math
import sys
from datetime import timedelta

import polars as pl
from _common import Target, finish, parser, table, timed

from analytics.evaluation.forecasting import SHAPES, synthetic_set
from analytics.forecast import forecast

TARGET_S = 30.0
HORIZON = "24h"
SAMPLE = 50


def history(count: int, seed: int) -> pl.DataFrame:
    """``count`` series of 7 days at 1 h, drawn round the shapes of the synthetic set."""
    frame = synthetic_set(seed=seed, per_shape=math.ceil(count / len(SHAPES)), days=7, step=timedelta(hours=1))
    keys = frame.select("shape", "series").unique(maintain_order=True).head(count)
    return frame.join(keys, on=["shape", "series"])


def check(result: pl.DataFrame, count: int) -> list[str]:
    """What is wrong with ``result`` for ``count`` series forecast 24 steps ahead."""
    errors = []
    if result.height != 24 * count:
        errors.append(f"{result.height} rows, expected {24 * count}")
    rows = result.group_by("shape", "series").len()
    if rows.height != count or rows["len"].min() != 24:
        errors.append(f"not 24 rows for each of {count} series: {rows['len'].value_counts().rows()}")
    bounds = pl.col("yhat_lower", "yhat", "yhat_upper")
    if not result.select(bounds.is_finite().all()).row(0) == (True, True, True):
        errors.append("non-finite forecasts")
    ordered = (pl.col("yhat_lower") <= pl.col("yhat")) & (pl.col("yhat") <= pl.col("yhat_upper"))
    if result.filter(~ordered).height:
        errors.append(f"{result.filter(~ordered).height} rows with the forecast outside its interval")
    return errors


def main() -> int:
    cli = parser(__doc__.splitlines()[0])
    cli.add_argument("--workers", type=int, default=2, help="worker processes (default 2, one per core)")
    cli.add_argument("--seed", type=int, default=0, help="seed of the synthetic series")
    args = cli.parse_args()
    count = max(8, round(1000 * args.scale))
    frame = history(count, args.seed)
    seconds, result = timed(lambda: forecast(frame, HORIZON, workers=args.workers))
    sample = frame.join(
        frame.select("shape", "series").unique(maintain_order=True).head(SAMPLE), on=["shape", "series"]
    )
    serial_s, _ = timed(lambda: forecast(sample, HORIZON))
    per_series_ms = 1000 * serial_s / min(SAMPLE, count)
    figures = {
        "series": count,
        "samples": frame.height,
        "workers": args.workers,
        "forecast_s": seconds,
        "series_per_s": count / seconds,
        "serial_ms_per_series": per_series_ms,
        "rows": result.height,
    }
    table(
        f"forecast: {count:,} series × 7 d hourly ({frame.height:,} samples), {HORIZON} ahead",
        [
            (f"forecast, {args.workers} workers", f"{seconds:.2f} s  ({count / seconds:,.0f} series/s)"),
            ("one process, per series", f"{per_series_ms:.1f} ms  (sample of {min(SAMPLE, count)})"),
            ("rows returned", result.height),
        ],
    )
    targets = [Target("forecast_s", seconds, TARGET_S)]
    return finish("forecast", args.scale, figures, targets, check(result, count))


if __name__ == "__main__":
    sys.exit(main())
