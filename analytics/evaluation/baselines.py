"""Baseline detectors for the evaluation harness, with the detector interface of ``analytics.anomaly``.

:func:`windowed_gaussian` is the classic baseline (NAB ships one too): the z-score of each point against
the mean and standard deviation of the ``window`` points before it, flagged beyond ``threshold``.
:func:`tune_windowed_gaussian` picks its window and threshold on a labelled tuning set, so that the
baseline the harness compares against is the best of its family, not a strawman.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl
from scipy.special import erf

from analytics.evaluation.detection import ALL, OUTPUT_COLUMNS, Rule, detector_input, score

WINDOWS = (12, 36, 144, 576)
THRESHOLDS = (3.0, 3.5, 4.0, 5.0, 6.0, 8.0)


def windowed_gaussian(frame: pl.DataFrame, *, window: int = 144, threshold: float = 4.0) -> pl.DataFrame:
    """``frame`` plus ``anomaly_score`` (Float64 in [0, 1]) and ``is_anomaly`` (Boolean) per point.

    Each series (all columns but ``ts`` and ``value``) is taken in time order; a point's z-score is its
    distance from the mean of the previous ``window`` values in their standard deviations. The score is
    the two-sided Gaussian probability of a smaller distance, ``erf(z / sqrt 2)``. Points with fewer than
    ``window // 4`` (at least 2) earlier values score 0; a constant history scores 0 when the point equals
    it and 1 otherwise.
    """
    scored = zscores(frame, window=window)
    return scored.with_columns(
        anomaly_score=pl.col("z").map_batches(_probability, return_dtype=pl.Float64),
        is_anomaly=pl.col("z") > threshold,
    ).drop("z")


def zscores(frame: pl.DataFrame, *, window: int) -> pl.DataFrame:
    """``frame`` (without detector output) plus ``z``, each point's distance from its past window, as above."""
    keys = [column for column in frame.columns if column not in ("ts", "value", *OUTPUT_COLUMNS)]
    past = pl.col("value").shift(1)
    least = max(2, window // 4)
    mean = past.rolling_mean(window, min_samples=least).over(keys, order_by="ts")
    std = past.rolling_std(window, min_samples=least).over(keys, order_by="ts")
    distance = (pl.col("value") - mean).abs()
    z = (
        pl.when(mean.is_null())
        .then(0.0)
        .when(std > 0)
        .then(distance / std)
        .when(distance > 0)
        .then(math.inf)
        .otherwise(0.0)
    )
    return frame.drop(OUTPUT_COLUMNS, strict=False).with_columns(z=z)


def _probability(z: pl.Series) -> pl.Series:
    return pl.Series(erf(np.asarray(z.to_numpy(), dtype=float) / math.sqrt(2)), dtype=pl.Float64)


@dataclass(frozen=True)
class Tuned:
    """The chosen parameters and the overall F1 they scored on the tuning set."""

    window: int
    threshold: float
    f1: float


def tune_windowed_gaussian(
    truth: pl.DataFrame,
    rule: Rule,
    *,
    windows: Sequence[int] = WINDOWS,
    thresholds: Sequence[float] = THRESHOLDS,
) -> Tuned:
    """The window and threshold with the best overall F1 on the labelled ``truth`` (ties: the first in order)."""
    given = detector_input(truth)
    best = Tuned(windows[0], thresholds[0], -1.0)
    for window in windows:
        scored = zscores(given, window=window)
        for threshold in thresholds:
            flags = scored.with_columns(is_anomaly=pl.col("z") > threshold)
            f1 = score(truth, flags, rule).filter(pl.col("kind") == ALL)["f1"].item()
            if f1 > best.f1:
                best = Tuned(window, threshold, f1)
    return best
