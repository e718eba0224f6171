"""Calibrate each method's raw statistic into a tail probability, fuse them, and map the result to [0, 1].

Every method yields, per point, a non-negative statistic whose distribution depends on the series: a
residual z of Gaussian noise has light tails, one of Student-t noise heavy ones, a CUSUM or a variance ratio
something else again. A fixed threshold would flood heavy-tailed series with false alarms and miss anomalies
in quiet ones, so each statistic of each series gets its own peaks-over-threshold model (as in SPOT, Siffer
et al., KDD 2017): an online estimate of its 90th percentile ``u`` and a generalised Pareto tail fitted to
the excesses over ``u`` by a moment estimator, with exponentially weighted memory so it follows slow
drift. ``P(stat > x) = 0.1 * (1 + shape * (x - u) / scale) ** (-1 / shape)``. A fitted tail cannot claim
a point is rarer than the rate at which such points have lately come (:meth:`TailModel.observed`): what
recurs every few minutes is not a one-in-a-million event, whatever the fit says.

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
_LEVELS = 10.0 ** -np.arange(3.0, 13.0)  # the p-values whose observed rates each tail model keeps
_RATE_MEMORY = 2000  # points
_DECAY = 1.0 - 1.0 / _RATE_MEMORY
_FORGIVEN = 2  # runs at a level before its observed rate overrules the fitted tail
_NEAR = 10.0  # a point is measured against the runs that reached 10 times its p-value: a burst judged by a
# shrinking scale gets rarer each time it comes back, and would never be counted as recurring at its own level
_UNCOUNTED = 20  # a series' first points are not counted: their statistics measure a scale not known yet


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
    hits: FloatArray  # (series, levels): EW count of the runs of points with a p-value at most each level
    counted_at: FloatArray  # the point count ``n`` the run counts were last decayed to
    last: FloatArray  # the previous point's p-value (from the fitted tail): where runs begin

    def __init__(self, prior: tuple[float, float, float], prior_weight: float = 50.0) -> None:
        self.prior = (*prior, prior_weight)
        zero = np.zeros(0)
        super().__init__(n=zero, u=zero, l1=zero, l2=zero, hits=np.zeros((0, len(_LEVELS))), counted_at=zero, last=zero)

    def defaults(self) -> dict[str, float]:
        u, l1, l2, weight = self.prior
        return {"n": weight, "u": u, "l1": l1, "l2": l2, "last": 1.0}

    def pvalue(self, idx: Index, x: FloatArray) -> FloatArray:
        """``P(stat >= x)`` under each series' current tail model."""
        u = self.u[idx]
        shape, scale = _gpd(u, self.l1[idx], self.l2[idx])
        excess = np.maximum(x - u, 0.0) / scale
        tail = gpd_survival(excess, shape)
        below = (1 - _TAIL) * (1 - x / np.maximum(u, 1e-300))
        return np.where(x < u, np.minimum(1.0, _TAIL + below), _TAIL * tail)

    def observed(self, idx: Index, p: FloatArray) -> FloatArray:
        """``p`` from :meth:`pvalue`, or the rate at which the series has lately had points that rare, if higher.

        The fitted tail's shape is capped and what it learns from rare points is winsorised (so a ramp cannot
        teach it), so it cannot express a statistic that is all but 0 most of the time and huge now and then:
        a sparse series' bursts, measured by a residual scale that the quiet stretches shrink, stayed alarms
        every time they came back. So each series also counts, per level of p-value, the runs of points that
        reached it over the last :data:`_RATE_MEMORY` points: beyond :data:`_FORGIVEN` runs, a point no rarer
        than :data:`_NEAR` times such a level is no rarer than the rate of the extra runs. A spike that comes
        twice is still two alarms; a burst every five minutes stops being one after the third.
        """
        rare = p <= _LEVELS[0] / _NEAR
        if not rare.any():
            return p
        rows = self.rows(idx)[rare]
        level = np.searchsorted(-_LEVELS, -_NEAR * p[rare], side="right") - 1  # the least level >= _NEAR * p
        runs = np.take_along_axis(self._runs(rows), level[:, None], axis=1)[:, 0]
        observed = p.copy()
        observed[rare] = np.maximum(p[rare], np.maximum(runs - _FORGIVEN, 0.0) / _RATE_MEMORY)
        return observed

    def judge(self, idx: Index, x: FloatArray, learn: np.ndarray | None = None) -> FloatArray:
        """The p-value of ``x`` (:meth:`pvalue`, floored by :meth:`observed`), then learn from it: from every
        series, or only where ``learn`` is True."""
        fitted = self.pvalue(idx, x)
        p = self.observed(idx, fitted)
        if learn is None:
            self.update(idx, x, fitted)
        elif learn.any():
            self.update(self.rows(idx)[learn], x[learn], fitted[learn])
        return p

    def update(self, idx: Index, x: FloatArray, p: FloatArray) -> None:
        """Learn from ``x``, whose p-value under the fitted tail (:meth:`pvalue`) is ``p``; the rarer, the less
        (it may be an anomaly)."""
        last = self.last[idx]
        begins = (p < last) & (p <= _LEVELS[0])
        if begins.any():  # rare: the counts decay lazily, by the points since they were last touched
            rows = self.rows(idx)[begins]
            counted = self.n[rows] >= self.prior[3] + _UNCOUNTED
            began = (p[begins, None] <= _LEVELS) & (last[begins, None] > _LEVELS) & counted[:, None]
            self.hits[rows] = self._runs(rows) * _DECAY + began
            self.counted_at[rows] = self.n[rows] + 1.0
        self.last[idx] = p
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

    def _runs(self, rows: np.ndarray) -> FloatArray:
        """The run counts of ``rows`` as of now (the points they have seen)."""
        return self.hits[rows] * (_DECAY ** (self.n[rows] - self.counted_at[rows]))[:, None]


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
