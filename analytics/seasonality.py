"""Which seasonal period, if any, a regular series repeats with: daily and weekly cycles measured against its step.

:func:`seasonal_strength` removes the trend with a moving average one period long (which cancels a cycle of
exactly that period and keeps everything slower), then correlates what is left with itself one period later:
close to 1 for a clean cycle, near 0 for noise, random walks and trends, whose detrended rests do not repeat
a period later. :func:`detect_period` keeps the shortest significant candidate unless a longer
one explains clearly more, so a daily cycle is not mistaken for a weekly one merely because it also repeats
every week.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from analytics.series import US

__all__ = ["DAY", "LONGER_MUST_EXPLAIN", "MIN_STRENGTH", "WEEK", "detect_period", "period_steps", "seasonal_strength"]

DAY = 86_400 * US
WEEK = 7 * DAY
MIN_STRENGTH = 0.25
"""Weakest cycle worth modelling: the detrended series' correlation with itself one period later."""
LONGER_MUST_EXPLAIN = 0.7
"""A longer period wins only if what it leaves unexplained is at most this share of what the shorter leaves."""


def period_steps(period: int, step: int, n: int) -> int | None:
    """``period`` (microseconds) in steps of ``step``, if it is a whole number of at least 2 steps and ``n``
    points cover the two full cycles (and the ten points) that seasonal initialisation needs; else ``None``."""
    if step <= 0 or period % step:
        return None
    m = period // step
    if m < 2 or n < max(2 * m, 10 + 2 * (m // 2)):
        return None
    return m


def seasonal_strength(values: npt.NDArray[np.float64], m: int) -> float:
    """The correlation of ``values`` minus their ``m``-point moving average with itself ``m`` steps later, in
    [-1, 1] (0 when undefined: too short or constant). Pearson's correlation over the overlapping pairs, not
    the textbook autocorrelation, whose normalisation shrinks long lags towards zero and so would favour
    short periods."""
    if m < 2 or len(values) < 2 * m + 2:
        return 0.0
    trend = np.convolve(values, np.ones(m) / m, mode="valid")
    half = (m - 1) // 2
    rest = values[half : half + len(trend)] - trend
    scale = float(np.abs(values).max()) or 1.0
    if float(np.ptp(rest)) <= 1e-9 * scale:  # constant up to rounding: nothing repeats
        return 0.0
    before, after = rest[:-m], rest[m:]
    if np.ptp(before) == 0 or np.ptp(after) == 0:
        return 0.0
    return float(np.clip(np.corrcoef(before, after)[0, 1], -1.0, 1.0))


def detect_period(
    values: npt.NDArray[np.float64],
    step: int,
    *,
    candidates: Sequence[int] = (DAY, WEEK),
    min_strength: float = MIN_STRENGTH,
) -> int | None:
    """The seasonal period of a regular series, in steps, among ``candidates`` (microseconds); ``None`` if no
    candidate fits the step and the history or none is strong enough.

    A candidate's strength must reach ``min_strength`` and be significant for the number of pairs it was
    measured on (2.5 standard errors of white noise's correlation). A longer period replaces a shorter one
    only if it leaves clearly less unexplained (``1 - strength`` at most :data:`LONGER_MUST_EXPLAIN` of the
    shorter's): a daily cycle also repeats every week, and the weekly model has seven times the states to fit.
    """
    n = len(values)
    chosen: tuple[int, float] | None = None
    for candidate in sorted(candidates):
        m = period_steps(candidate, step, n)
        if m is None or n - 2 * m + 1 < max(m // 2, 8):  # too few period-apart pairs to judge
            continue
        strength = seasonal_strength(values, m)
        if strength < max(min_strength, 2.5 / np.sqrt(n - 2 * m + 1)):
            continue
        if chosen is None or 1 - strength < LONGER_MUST_EXPLAIN * (1 - chosen[1]):
            chosen = (m, strength)
    return None if chosen is None else chosen[0]
