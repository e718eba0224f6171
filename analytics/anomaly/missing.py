"""Missing data: gaps in a series, and a series stuck at one value.

* **gap**: the number of points missing before this one (from the time since the last point and the
  series' typical interval). Gap lengths are taken to be exponentially distributed around the series' own
  mean gap (prior: 2 points), so the odd missing point or three is normal and a long stop is not; the
  point that ends the gap is the one flagged.
* **stuck**: the length of the current run of exactly repeated values. Repeats are taken to be independent
  with the series' own repeat probability (learnt, floored), so ``P(run >= r) = q ** r``: a few repeats
  in continuous noise are already rare. Only for continuous-valued series (repeats under 5 %): in an
  integer-valued series repeats cluster where the series is flat (at the top of a daily wave, say), so
  runs there say little; such a series' flatlines are left to the variance test.

Both learn only a little from what they find unlikely, so one long stop does not make the next one normal.
"""

from __future__ import annotations

import numpy as np

from analytics.anomaly.state import Arrays, FloatArray, Index

_GAP_PRIOR = 2.0
_GAP_GAIN = 0.1
_REPEAT_PRIOR = 0.02
_REPEAT_FLOOR = 0.005
_REPEAT_GAIN = 1 / 500
_DISCRETE = 0.05  # a series repeating more often than this is discrete: its runs say little
_DOUBT = 1e-3


class Continuity(Arrays):
    """Per series: mean gap length, repeat probability, the current run of repeats, the last value."""

    gap: FloatArray
    repeat: FloatArray
    run: FloatArray
    last: FloatArray
    count: FloatArray

    def __init__(self) -> None:
        zero = np.zeros(0)
        super().__init__(gap=zero, repeat=zero, run=zero, last=zero, count=zero)

    def defaults(self) -> dict[str, float]:
        return {"gap": _GAP_PRIOR, "repeat": _REPEAT_PRIOR, "last": np.nan}

    def step(self, idx: Index, y: FloatArray, missing: FloatArray) -> tuple[FloatArray, FloatArray]:
        """Update with a value and the number of points missing before it; p-values of the gap and the run."""
        gap, repeat, run = self.gap[idx], self.repeat[idx], self.run[idx]
        p_gap = np.where(missing >= 1, np.exp(-missing / gap), 1.0)
        self.gap[idx] = np.where(missing >= 1, gap + _GAP_GAIN * np.minimum(1.0, p_gap / _DOUBT) * (missing - gap), gap)
        same = y == self.last[idx]
        run = np.where(same, run + 1.0, 0.0)
        p_before = np.maximum(repeat, _REPEAT_FLOOR) ** np.maximum(run - 1.0, 0.0)
        p_stuck = np.where(repeat < _DISCRETE, np.maximum(repeat, _REPEAT_FLOOR) ** run, 1.0)
        count = self.count[idx] + 1.0
        gain = np.maximum(1.0 / (count + 10.0), _REPEAT_GAIN) * np.minimum(1.0, p_before / _DOUBT)
        self.repeat[idx] = repeat + gain * (same - repeat)
        self.run[idx], self.last[idx], self.count[idx] = run, y, count
        return p_gap, p_stuck
