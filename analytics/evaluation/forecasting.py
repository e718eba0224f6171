"""How good the default forecaster is: a seeded seasonal synthetic set, and MASE/sMAPE against two baselines.

:func:`synthetic_set` draws series of several shapes, all with a daily cycle (the shape a host metric has):
a plain daily cycle, a weekly pattern on top, a trend under the cycle, heavy-tailed and skewed noise, samples
missing in short runs (one to eight steps), and a counter (with a reset) whose rate follows the cycle.
:func:`evaluate` backtests the default model and the naive one on it (rolling origin, via
:func:`analytics.forecast.backtest`) and summarises MASE and sMAPE per shape and overall, next to
seasonal-naive: a forecaster worth having must beat seasonal-naive, which already knows the cycle.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl

from analytics.forecast import backtest
from analytics.series import US
from qwq_core.timeutil import DurationLike

__all__ = ["SHAPES", "evaluate", "synthetic_set"]

SHAPES = ("daily", "weekly", "trend_daily", "heavy_tailed", "skewed", "gaps", "counter")
"""The shapes of :func:`synthetic_set`, one label value each."""
_START = datetime(2024, 1, 1, tzinfo=UTC)  # a Monday


def synthetic_set(
    *,
    seed: int = 0,
    per_shape: int = 8,
    days: int = 35,
    step: timedelta = timedelta(hours=1),
    shapes: tuple[str, ...] = SHAPES,
) -> pl.DataFrame:
    """``per_shape`` series of each of ``shapes`` over ``days`` at ``step``: a store-style frame ``ts, value,
    name, shape, series`` (``series`` numbers the series within its shape). Deterministic for a seed."""
    rng = np.random.default_rng(seed)
    points = int(timedelta(days=days) / step)
    hours = np.arange(points) * (step / timedelta(hours=1))
    ts = pl.Series(_START.timestamp() * US + np.arange(points, dtype=np.int64) * (step // timedelta(microseconds=1)))
    parts = []
    for shape in shapes:
        for index in range(per_shape):
            times, values = _draw(shape, hours, rng)
            parts.append(
                pl.DataFrame({"ts": ts.gather(times).cast(pl.Datetime("us", "UTC")), "value": values}).with_columns(
                    name=pl.lit("synthetic_requests_total" if shape == "counter" else "synthetic_usage"),
                    shape=pl.lit(shape),
                    series=pl.lit(str(index)),
                )
            )
    return pl.concat(parts)


def _draw(shape: str, hours: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the kept points and their values for one series of ``shape``."""
    level = rng.uniform(50, 200)
    phase = rng.uniform(0, 2 * np.pi)
    day = 2 * np.pi * hours / 24
    cycle = level * rng.uniform(0.1, 0.3) * (np.sin(day + phase) + 0.4 * np.sin(2 * day + 2 * phase))
    noise = rng.normal(0, level * 0.03, len(hours))
    everything = np.arange(len(hours))
    if shape == "weekly":
        weekend = (hours // 24) % 7 >= 5
        cycle = np.where(weekend, 0.5 * cycle - level * 0.15, cycle)
    elif shape == "trend_daily":
        cycle = cycle + level * rng.uniform(0.002, 0.01) * hours
    elif shape == "heavy_tailed":
        noise = rng.standard_t(3, len(hours)) * level * 0.03
    elif shape == "skewed":
        noise = rng.exponential(level * 0.04, len(hours))
    elif shape == "gaps":
        return _with_gaps(level + cycle + noise, rng)
    elif shape == "counter":
        rate = np.maximum(level + cycle + noise, 0) / 3600  # per second, like requests
        total = np.cumsum(rate * 3600 * (hours[1] - hours[0]))
        reset = int(rng.integers(len(hours) // 4, len(hours) // 2))
        total[reset:] -= total[reset - 1]  # the process restarted: the counter begins again from zero
        return everything, total
    elif shape != "daily":
        raise ValueError(f"unknown shape {shape!r}; known: {', '.join(SHAPES)}")
    return everything, level + cycle + noise


def _with_gaps(values: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``values`` with a run of 1–8 missing points in every 48, the runs at least 8 points apart."""
    keep = np.ones(len(values), dtype=bool)
    for block in range(0, len(values) - 48, 48):
        start = block + int(rng.integers(0, 32))
        keep[start : start + int(rng.integers(1, 9))] = False
    indices = np.flatnonzero(keep)
    return indices, values[indices]


def evaluate(frame: pl.DataFrame, *, horizon: DurationLike = "24h", folds: int = 3, workers: int = 1) -> pl.DataFrame:
    """Backtest the default model and naive on every series of ``frame`` (which needs a ``shape`` column) and
    summarise per shape and ``all``: mean MASE and sMAPE of ``auto``, ``seasonal_naive`` and ``naive``, and
    ``auto_wins``, the share of folds where the default beat seasonal-naive's MASE."""
    auto = backtest(frame, "auto", horizon=horizon, folds=folds, workers=workers)
    naive = backtest(frame, "naive", horizon=horizon, folds=folds, workers=workers)
    keys = [c for c in frame.columns if c not in ("ts", "value")] + ["fold"]
    scores = auto.join(naive.select(*keys, naive_mase="mase", naive_smape="smape"), on=keys, nulls_equal=True)
    summary = [
        pl.len().alias("folds"),
        pl.col("mase").mean().alias("auto_mase"),
        pl.col("seasonal_naive_mase").mean(),
        pl.col("naive_mase").mean(),
        pl.col("smape").mean().alias("auto_smape"),
        pl.col("seasonal_naive_smape").mean(),
        pl.col("naive_smape").mean(),
        (pl.col("mase") < pl.col("seasonal_naive_mase")).mean().alias("auto_wins"),
    ]
    per_shape = scores.group_by("shape").agg(summary).sort("shape")
    overall = scores.select(pl.lit("all").alias("shape"), *summary)
    return pl.concat([per_shape, overall])
