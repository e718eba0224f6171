"""Anomaly detection speed: batch scoring of a day of history, and one online step for many series.

    .venv/bin/python benchmarks/bench_anomaly.py [--scale 1.0] [--dir DIR] [--repeat 64]

Batch: ``detect_anomalies`` over 1,000 series x 1 day at 1-minute resolution (1.44 M points; a quarter of
the series are counters, scored as rates). Online: an ``OnlineDetector`` holding 10,000 series (warmed up
with 150 points each) scores one new point per series; the median and the slowest of ``--repeat`` steps
are reported (64 steps cover every series' first period search and most periodic refits, which are
staggered across series), with the size of its saved state. ``--scale`` shrinks the series counts.
Targets (at scale 1.0): batch <= 10 s, the slowest online step <= 1 s. ``--dir`` is accepted for symmetry
with the other benchmarks; nothing is written.
"""

from __future__ import annotations

import math
import sys
from datetime import datetime, timedelta

import numpy as np
import polars as pl
from _common import COUNTER, Target, finish, median, parser, series_labels, table, timed

from analytics.anomaly import OnlineDetector, detect_anomalies

BATCH_SERIES, BATCH_POINTS = 1_000, 1_440
ONLINE_SERIES, ONLINE_HISTORY = 10_000, 150
STEP = timedelta(minutes=1)
START = datetime(2024, 1, 1)


def minutes(count: int, points: int, seed: int, start: datetime = START) -> pl.DataFrame:
    """``points`` one-minute samples of ``count`` series: daily waves plus noise; counters grow by them."""
    labels = series_labels(count)
    rng = np.random.default_rng(seed)
    t = np.arange(points)
    wave = 0.5 + 0.3 * np.sin(2 * math.pi * (t[None, :] / 1440 + rng.uniform(0, 1, (count, 1))))
    values = wave + 0.05 * rng.normal(size=(count, points))
    counter = (labels["name"] == COUNTER).to_numpy()
    values[counter] = np.cumsum(np.abs(values[counter]) * 60, axis=1)
    micros = int((start - datetime(1970, 1, 1)) / timedelta(microseconds=1))
    ts = micros + t * int(STEP / timedelta(microseconds=1))
    return labels.select(pl.all().gather(np.repeat(np.arange(count), points))).with_columns(
        ts=pl.Series(np.tile(ts, count)).cast(pl.Datetime("us", "UTC")),
        value=pl.Series(values.ravel()),
    )


def check(scored: pl.DataFrame, given: pl.DataFrame, what: str) -> list[str]:
    """Correctness errors: rows lost, or scores outside [0, 1]."""
    errors = []
    if scored.height != given.height:
        errors.append(f"{what}: {scored.height} rows scored of {given.height}")
    scores = scored["anomaly_score"].drop_nulls()
    if len(scores) and not scores.is_between(0.0, 1.0).all():
        errors.append(f"{what}: scores outside [0, 1]")
    return errors


def main() -> int:
    cli = parser(__doc__.splitlines()[0])
    cli.add_argument(
        "--repeat", type=int, default=64, help="online steps timed (median and slowest reported; default 64)"
    )
    args = cli.parse_args()
    batch_series = max(4, round(BATCH_SERIES * args.scale))
    online_series = max(4, round(ONLINE_SERIES * args.scale))

    history = minutes(batch_series, BATCH_POINTS, seed=1)
    batch_s, scored = timed(lambda: detect_anomalies(history))
    errors = check(scored, history, "batch")

    detector = OnlineDetector()
    warmup_s, _ = timed(lambda: detector.update(minutes(online_series, ONLINE_HISTORY, seed=2)))
    steps = []
    for index in range(args.repeat):
        at = START + STEP * (ONLINE_HISTORY + index)
        point = minutes(online_series, 1, seed=3 + index, start=at)
        elapsed, step = timed(lambda point=point: detector.update(point))  # type: ignore[misc]
        steps.append(elapsed)
        errors += check(step, point, "online")
    state_mb = sum(array.nbytes for array in detector.state().values()) / 1e6

    keys = [column for column in history.columns if column not in ("ts", "value")]
    flag = pl.col("is_anomaly").fill_null(False)
    episodes = int(scored.select((flag & ~flag.shift(1, fill_value=False).over(keys)).sum()).item())
    figures = {
        "samples": history.height,
        "batch_series": batch_series,
        "batch_points": BATCH_POINTS,
        "batch_s": batch_s,
        "batch_points_per_s": history.height / batch_s,
        "flagged_share": float(scored["is_anomaly"].mean() or 0.0),
        "flagged_episodes_per_series_day": episodes / batch_series,
        "online_series": online_series,
        "online_warmup_s": warmup_s,
        "online_step_s": median(steps),
        "online_slowest_step_s": max(steps),
        "state_mb": state_mb,
    }
    table(
        "anomaly detection",
        [
            (f"batch: {batch_series:,} series x {BATCH_POINTS:,} points", f"{batch_s:.2f} s"),
            ("batch throughput", f"{figures['batch_points_per_s']:,.0f} points/s"),
            ("flagged share (clean synthetic data)", f"{figures['flagged_share']:.2e}"),
            ("flagged episodes per series-day (clean)", f"{figures['flagged_episodes_per_series_day']:.3f}"),
            (f"online: warm-up {online_series:,} x {ONLINE_HISTORY}", f"{warmup_s:.2f} s"),
            (f"online: one point for {online_series:,} series (median of {args.repeat})", f"{median(steps):.3f} s"),
            ("online: slowest of those steps (periodic refits, period searches)", f"{max(steps):.3f} s"),
            ("online state", f"{state_mb:.1f} MB"),
        ],
    )
    targets = [Target("batch_s", batch_s, 10.0), Target("online_slowest_step_s", max(steps), 1.0)]
    return finish("anomaly", args.scale, figures, targets, errors)


if __name__ == "__main__":
    sys.exit(main())
