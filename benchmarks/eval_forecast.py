"""Forecast quality: MASE and sMAPE of the default model against seasonal-naive and naive, per shape.

    .venv/bin/python benchmarks/eval_forecast.py [--scale 1.0] [--dir DIR] [--workers 2] [--seed 0]

The seasonal synthetic set of :mod:`analytics.evaluation.forecasting` (10 series per shape at scale 1.0, 35
days hourly) is backtested with three rolling 24-hour folds per series. Target at scale 1.0: the default
model's mean MASE below seasonal-naive's, overall and for every shape (ratio < 1).
"""

from __future__ import annotations

import sys

import polars as pl
from _common import Target, finish, parser, table, timed

from analytics.evaluation.forecasting import SHAPES, evaluate, synthetic_set

PER_SHAPE = 10


def main() -> int:
    cli = parser(__doc__.splitlines()[0])
    cli.add_argument("--workers", type=int, default=2, help="worker processes (default 2, one per core)")
    cli.add_argument("--seed", type=int, default=0, help="seed of the synthetic set")
    args = cli.parse_args()
    per_shape = max(1, round(PER_SHAPE * args.scale))
    frame = synthetic_set(seed=args.seed, per_shape=per_shape)
    seconds, summary = timed(lambda: evaluate(frame, workers=args.workers))
    summary = summary.with_columns(ratio=pl.col("auto_mase") / pl.col("seasonal_naive_mase"))
    rows = [
        (
            shape["shape"],
            f"MASE auto {shape['auto_mase']:.3f}  seasonal-naive {shape['seasonal_naive_mase']:.3f}  "
            f"naive {shape['naive_mase']:.3f}  (ratio {shape['ratio']:.2f})  |  sMAPE auto {shape['auto_smape']:.2f}  "
            f"seasonal-naive {shape['seasonal_naive_smape']:.2f}  naive {shape['naive_smape']:.2f}  |  "
            f"auto wins {shape['auto_wins']:.0%} of {shape['folds']} folds",
        )
        for shape in summary.iter_rows(named=True)
    ]
    table(f"forecast quality: {per_shape} series × {len(SHAPES)} shapes, 3 folds of 24 h ({seconds:.1f} s)", rows)
    figures = {
        "series": per_shape * len(SHAPES),
        "samples": frame.height,
        "seconds": seconds,
        "shapes": {
            row["shape"]: {k: v for k, v in row.items() if k != "shape"} for row in summary.iter_rows(named=True)
        },
    }
    # "strictly below": a ratio of 1.0 fails, hence the limit just under it
    targets = [Target(f"mase_ratio_{row['shape']}", row["ratio"], 0.999) for row in summary.iter_rows(named=True)]
    errors = [] if summary.height == len(SHAPES) + 1 else [f"shapes missing from the summary: {summary['shape']}"]
    return finish("eval_forecast", args.scale, figures, targets, errors)


if __name__ == "__main__":
    sys.exit(main())
