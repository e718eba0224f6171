"""Missing data: gaps in a series, and a series stuck at one value.

* **gap**: the number of points missing before this one (from the time since the last point and the
  series' typical interval). Gap lengths are taken to be exponentially distributed around the series' own
  mean gap (prior: 2 points), so the odd missing point or three is normal and a long stop is not; the
  point that ends the gap is the one flagged.
* **stuck**: the length of the current run of exactly repeated values. Repeats are a two-state Markov
  chain with the series' own probabilities (learnt, floored): ``q0`` of a first repeat, ``q1`` of one more
  once repeating, so ``P(run >= r) = q0 * q1 ** (r - 1)``. A few repeats in continuous noise are already
  rare, while a series that idles at a value now and then (a rate at 0 between bursts) learns that its
  runs go on. Only for continuous-valued series (repeats under 5 %): in an integer-valued series repeats
  cluster where the series is flat (at the top of a daily wave, say), so runs there say little; such a
  series' flatlines are left to the variance test.

Both learn only a little from what they find unlikely, so one long stop does not make the next one normal.
"""

from __future__ import annotations

import numpy as np

from analytics.anomaly.state import Arrays, FloatArray, Index

_GAP_PRIOR = 2.0
_GAP_GAIN = 0.1
_REPEAT_PRIOR = 0.02
_REPEAT_FLOOR = 0.005
_PERSIST_PRIOR = 0.2  # weakly informed: whether a series' runs go on is learnt from its runs
_REPEAT_GAIN = 1 / 500
_DISCRETE = 0.05  # a series repeating more often than this is discrete: its runs say little
_DOUBT = 1e-3


class Continuity(Arrays):
    """Per series: mean gap length, repeat probability, the current run of repeats, the last value."""

    gap: FloatArray
    repeat: FloatArray  # q0: a first repeat
    persist: FloatArray  # q1: one more repeat, once repeating
    run: FloatArray
    last: FloatArray
    count: FloatArray
    runs: FloatArray  # points seen while repeating: what q1 has learnt from

    def __init__(self) -> None:
        zero = np.zeros(0)
        super().__init__(gap=zero, repeat=zero, persist=zero, run=zero, last=zero, count=zero, runs=zero)

    def defaults(self) -> dict[str, float]:
        return {"gap": _GAP_PRIOR, "repeat": _REPEAT_PRIOR, "persist": _PERSIST_PRIOR, "last": np.nan}

    def step(self, idx: Index, y: FloatArray, missing: FloatArray) -> tuple[FloatArray, FloatArray]:
        """Update with a value and the number of points missing before it; p-values of the gap and the run."""
        gap, repeat, run = self.gap[idx], self.repeat[idx], self.run[idx]
        p_gap = np.where(missing >= 1, np.exp(-missing / gap), 1.0)
        self.gap[idx] = np.where(missing >= 1, gap + _GAP_GAIN * np.minimum(1.0, p_gap / _DOUBT) * (missing - gap), gap)
        same = y == self.last[idx]
        persist, runs = self.persist[idx], self.runs[idx]
        q0, q1 = np.maximum(repeat, _REPEAT_FLOOR), np.maximum(persist, _REPEAT_FLOOR)
        p_before = np.where(run > 0, q0 * q1 ** np.maximum(run - 1.0, 0.0), 1.0)
        grown = np.where(same, run + 1.0, 0.0)
        p_stuck = np.where((repeat < _DISCRETE) & same, q0 * q1 ** np.maximum(grown - 1.0, 0.0), 1.0)
        trust = np.minimum(1.0, p_before / _DOUBT)
        count = self.count[idx] + 1.0
        fresh = run == 0  # the point either starts a run or does not: what q0 learns
        gain = np.maximum(1.0 / (count + 10.0), _REPEAT_GAIN) * trust
        self.repeat[idx] = np.where(fresh, repeat + gain * (same - repeat), repeat)
        runs = runs + (~fresh)
        persist_gain = np.maximum(1.0 / (runs + 10.0), _REPEAT_GAIN) * trust
        self.persist[idx] = np.where(fresh, persist, persist + persist_gain * (same - persist))
        self.runs[idx] = runs
        self.run[idx], self.last[idx], self.count[idx] = grown, y, count
        return p_gap, p_stuck
