"""Calibrate each method's raw statistic into a tail probability, fuse them, and map the result to [0, 1].

Every method yields, per point, a non-negative statistic whose distribution depends on the series: a
residual z of Gaussian noise has light tails, one of Student-t noise heavy ones, a CUSUM or a variance ratio
something else again. A fixed threshold would flood heavy-tailed series with false alarms and miss anomalies
in quiet ones, so each statistic of each series gets its own peaks-over-threshold model (as in SPOT, Siffer
et al., KDD 2017): an online estimate of its 90th percentile ``u`` and a generalised Pareto tail fitted to
the excesses over ``u`` by a moment estimator, with exponentially weighted memory so it follows slow
drift. ``P(stat > x) = 0.1 * (1 + shape * (x - u) / scale) ** (-1 / shape)``.

The p-values of the methods are fused by a weighted Bonferroni (``min p_i / w_i``, weights summing to 1), so
the false-alarm rate per point stays at most the target whatever the methods' dependence. The target rate
is what ``sensitivity`` sets; ``anomaly_score`` does not depend on it: it is ``L / (L + 4)`` with
``L = -log10(p)``, so a score of 0.5 is a p-value of 1e-4, the default threshold.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

import numpy as np

from analytics.anomaly.state import Arrays, FloatArray, Index

SensitivityLevel = Literal["low", "medium", "high"]
Sensitivity = float | SensitivityLevel
LEVELS: Mapping[str, float] = {"low": 0.25, "medium": 0.5, "high": 0.75}
"""Named sensitivities; ``medium`` is the default."""
DEFAULT_SENSITIVITY: SensitivityLevel = "medium"

_TAIL = 0.1  # the tail modelled: excesses over the 90th percentile
_MEMORY = 1 / 2000  # EW weight of one observation once warmed up: ~2000 points, ~200 excesses
_DOUBT = 1e-4  # points rarer than this may be anomalies: they teach the tail in proportion to p (cf. SPOT)
_MIN_TRUST = 0.05  # what recurs is learnt in the end: bursts that come back are normal
_MAX_SHAPE = 0.95
_QUANTILE_STEP = 0.2
_SCORE_HALF = 4.0  # -log10(p) that maps to a score of 0.5


def false_positive_rate(sensitivity: Sensitivity = DEFAULT_SENSITIVITY) -> float:
    """The per-point false-alarm rate a sensitivity stands for: ``10 ** (4 * s - 6)``.

    ``s`` is in (0, 1] or a named level: low = 1e-5, medium = 1e-4, high = 1e-3, 1.0 = 1e-2.
    """
    level = LEVELS.get(sensitivity, None) if isinstance(sensitivity, str) else float(sensitivity)
    if level is None or not 0.0 < level <= 1.0:
        raise ValueError(f"sensitivity must be in (0, 1] or one of {', '.join(LEVELS)}; got {sensitivity!r}")
    return float(10.0 ** (4.0 * level - 6.0))


def score_from_p(p: FloatArray) -> FloatArray:
    """Map p-values to ``anomaly_score`` in [0, 1]: 0 for p = 1, 0.5 at p = 1e-4, towards 1 as p -> 0."""
    surprise = -np.log10(np.clip(p, 1e-300, 1.0))
    return surprise / (surprise + _SCORE_HALF)


def fuse(pvalues: Sequence[FloatArray], weights: Sequence[float]) -> FloatArray:
    """Weighted Bonferroni: ``min(p_i / w_i)``, capped at 1; with weights summing to 1 the false-alarm rate
    is at most the sum of the methods' own."""
    return np.minimum(1.0, np.minimum.reduce([p / w for p, w in zip(pvalues, weights, strict=True)]))


class TailModel(Arrays):
    """Per-series peaks-over-threshold model of one non-negative statistic.

    The tail is a generalised Pareto distribution whose shape and scale come from the first two moments of
    ``log(x / u)`` over the excesses (the Dekkers-Einmahl-de Haan moment estimator), which stay finite for
    heavy tails where the moments of the excesses themselves do not. ``prior`` gives ``(u, l1, l2)`` of the
    statistic under a well-behaved null (Gaussian noise); it counts as ``prior_weight`` observations, so
    young series get sensible p-values.
    """

    n: FloatArray
    u: FloatArray
    l1: FloatArray
    l2: FloatArray

    def __init__(self, prior: tuple[float, float, float], prior_weight: float = 50.0) -> None:
        self.prior = (*prior, prior_weight)
        zero = np.zeros(0)
        super().__init__(n=zero, u=zero, l1=zero, l2=zero)

    def defaults(self) -> dict[str, float]:
        u, l1, l2, weight = self.prior
        return {"n": weight, "u": u, "l1": l1, "l2": l2}

    def pvalue(self, idx: Index, x: FloatArray) -> FloatArray:
        """``P(stat >= x)`` under each series' current tail model."""
        u = self.u[idx]
        shape, scale = _gpd(u, self.l1[idx], self.l2[idx])
        excess = np.maximum(x - u, 0.0) / scale
        tail = gpd_survival(excess, shape)
        below = (1 - _TAIL) * (1 - x / np.maximum(u, 1e-300))
        return np.where(x < u, np.minimum(1.0, _TAIL + below), _TAIL * tail)

    def update(self, idx: Index, x: FloatArray, p: FloatArray) -> None:
        """Learn from ``x``, whose p-value before the update is ``p``; the rarer, the less (it may be an anomaly)."""
        n, u, l1, l2 = self.n[idx] + 1.0, self.u[idx].copy(), self.l1[idx], self.l2[idx]  # u: used after its update
        shape, scale = _gpd(u, l1, l2)
        gain = np.maximum(1.0 / n, _MEMORY)
        above = x > u
        # Robbins-Monro step towards the 90th percentile, in units of the tail's own scale. It only sees
        # which side of u a point falls on, so it learns from every point: were rare points left out, u
        # would sink until every point looked rare.
        self.u[idx] = u + gain * _QUANTILE_STEP * scale * np.where(above, 1 - _TAIL, -_TAIL) / _TAIL
        # Winsorised at the value this tail deems a doubt: a ramp's growing points would otherwise teach the
        # tail, step by step, that ever larger values are normal.
        ratio = _TAIL / _DOUBT
        reach = np.where(
            shape > 1e-6, (ratio ** np.maximum(shape, 1e-6) - 1.0) / np.maximum(shape, 1e-6), np.log(ratio)
        )
        x = np.minimum(x, u + scale * reach)
        log_excess = np.log(np.maximum(x, 1e-300) / np.maximum(u, 1e-300))
        trust = np.clip(p / _DOUBT, _MIN_TRUST, 1.0)
        tail_gain = np.where(above, np.minimum(1.0, gain * trust / _TAIL), 0.0)
        self.l1[idx] = l1 + tail_gain * (log_excess - l1)
        self.l2[idx] = l2 + tail_gain * (log_excess * log_excess - l2)
        self.n[idx] = n


def gpd_survival(excess: FloatArray, shape: FloatArray) -> FloatArray:
    """``P(X > excess)`` for a generalised Pareto variable of unit scale and ``shape`` >= 0 (exponential at 0)."""
    safe = np.maximum(shape, 1e-6)
    return np.where(shape > 1e-6, (1.0 + shape * excess) ** (-1.0 / safe), np.exp(-excess))


def _gpd(u: FloatArray, l1: FloatArray, l2: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Generalised Pareto shape (clipped to [0, 0.95]) and scale from the log-moments of the excesses."""
    l1 = np.maximum(l1, 1e-12)
    negative = 1.0 - 0.5 / (1.0 - np.minimum(l1 * l1 / np.maximum(l2, 1e-24), 0.999))
    shape = np.clip(l1 + negative, 0.0, _MAX_SHAPE)
    scale = np.maximum(u, 1e-12) * l1 * (1.0 - np.minimum(negative, 0.0))
    return shape, np.maximum(scale, 1e-12)
