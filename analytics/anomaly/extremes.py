"""How far a value lies outside the range the series has kept lately: peaks over threshold on the values.

The residual models judge a point against a prediction that follows the series; on a bursty series (a CPU
ratio jumping between idle and busy) their scale has to cover the bursts, and a value far beyond anything
the series has reached looks no stranger than a burst. So, as in SPOT (Siffer et al., KDD 2017), each value
is also judged against the distribution of the series' recent values: a generalised Pareto tail fitted, on
each side, to the excesses of the last :data:`WINDOW` values over their 90th (or under their 10th)
percentile, relative to their median.

The fit is redone from the window every :data:`REFIT` points (staggered across series, like the k-means
models), never from the point being judged, so a ramp cannot teach the tail, point by point, that ever
larger values are normal — the failure of tails learnt one point at a time. The caller decides which judged
values the window keeps (:meth:`Extremes.keep`): the online detector withholds those that follow an outlier,
so one burst does not teach the tail that the next is normal. A side the series never
strays to (a ratio that sits at 0) gets an exponential tail whose scale is a share of the window's mean
absolute deviation, so leaving the range there is rare, not impossible; a low side that the window keeps
within that distance below its median (a ratio idling just above 0) gets an exponential tail too.

With ``smoothing``, the values judged are the series' exponentially weighted mean instead (a gain of
``smoothing`` per point) and only every ``every``-th one is kept in the window, which then reaches back
``every`` times further. Averaging takes the bursts out of a bursty series, so a slow ramp or a moderate
shift that no single value betrays leaves the range the mean has kept — over days, so a weekly cycle is
part of that range.
"""

from __future__ import annotations

import numpy as np

from analytics.anomaly.combine import gpd_survival
from analytics.anomaly.state import Arrays, FloatArray, Index

WINDOW = 512
REFIT = 32
_MIN_FIT = 64  # values in the window before it judges
_TAIL = 0.1
_FLOOR = 0.25  # least tail scale, in mean absolute deviations from the median
_MAX_SHAPE = 0.45  # method-of-moments estimates are unreliable beyond this
_MAX_RATIO = 2.0  # mean^2 / variance of the excesses that still informs the scale: a shape of -0.5


class Extremes(Arrays):
    """Per series: the window of recent values and the fitted tails (threshold, shape, scale per side)."""

    buffer: np.ndarray  # (series, WINDOW), float32: the largest part of the detector's state
    count: FloatArray  # values kept in the window so far
    seen: FloatArray  # values judged so far
    offset: FloatArray
    mean: FloatArray  # the EW mean judged instead of the value, with ``smoothing``
    median: FloatArray
    spread: FloatArray  # the window's mean absolute deviation from its median
    idle: FloatArray  # the share of the window's values equal to its median
    extent: FloatArray  # (series, 2): how far below and above its median the window reaches
    tail: FloatArray  # (series, 2 sides, 3): threshold excess over the median, GPD shape, GPD scale

    def __init__(self, smoothing: float = 0.0, every: int = 1) -> None:
        self.smoothing, self.every = smoothing, every
        zero = np.zeros(0)
        super().__init__(
            buffer=np.zeros((0, WINDOW), dtype=np.float32),
            count=zero,
            seen=zero,
            offset=zero,
            mean=zero,
            median=zero,
            spread=zero,
            idle=zero,
            extent=np.zeros((0, 2)),
            tail=np.zeros((0, 2, 3)),
        )

    def defaults(self) -> dict[str, float]:
        return {"mean": np.nan}

    def step(self, idx: Index, y: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray]:
        """p-values of ``y`` (or of the mean it moves) being so high and so low (1 until the window has
        :data:`_MIN_FIT` values), and the value judged, for :meth:`keep`."""
        if self.smoothing > 0:
            mean = self.mean[idx]
            y = np.where(np.isfinite(mean), mean + self.smoothing * (y - mean), y)
            self.mean[idx] = y
        tail = self.tail[idx]
        offset = y - self.median[idx]
        fitted = self.fitted(idx)
        p_high = np.where(fitted, _survival(offset, tail[:, 0]), 1.0)
        p_low = np.where(fitted, _survival(-offset, tail[:, 1]), 1.0)
        return p_high, p_low, y

    def fitted(self, idx: Index) -> np.ndarray:
        """Whether each series' window has been fitted (it has had :data:`_MIN_FIT` values)."""
        return np.asarray(self.tail[idx, 0, 2] > 0)

    def inside(self, idx: Index, y: FloatArray) -> np.ndarray:
        """Whether ``y`` lies within the range of the window at its last fit."""
        offset, extent = y - self.median[idx], self.extent[idx]
        return (offset >= -extent[:, 0]) & (offset <= extent[:, 1])

    def share(self, rows: np.ndarray, y: FloatArray) -> FloatArray:
        """The share of each row's window (of the values kept so far) equal to ``y``."""
        kept, filled = self._kept(rows)
        equal = kept & (self.buffer[rows] == y.astype(np.float32)[:, None])
        return equal.sum(axis=1) / np.maximum(filled, 1.0)

    def keep(self, idx: Index, judged: FloatArray, learn: np.ndarray) -> None:
        """Keep each value :meth:`step` judged in the window when its turn comes, unless ``learn`` is False."""
        seen = self.seen[idx].astype(np.int64)
        self.seen[idx] = seen + 1
        keep = (seen % self.every == 0) & learn
        if keep.all():
            self._keep(idx, judged)
        elif keep.any():
            self._keep(self.rows(idx)[keep], judged[keep])

    def relevel(self, idx: Index, shift: FloatArray) -> None:
        """Move the window, its fit and the mean by ``shift`` (after a confirmed level shift)."""
        self.recentre(idx, shift)
        self.mean[idx] = self.mean[idx] + shift

    def window_mean(self, rows: np.ndarray) -> FloatArray:
        """The mean of each row's window (of the values kept so far, if it is not full yet)."""
        kept, filled = self._kept(rows)
        return np.where(kept, self.buffer[rows], 0.0).sum(axis=1) / np.maximum(filled, 1.0)

    def _kept(self, rows: np.ndarray) -> tuple[np.ndarray, FloatArray]:
        """Which slots of each row's window hold a value, and how many do."""
        filled = np.minimum(self.count[rows], WINDOW)
        return np.arange(WINDOW)[None, :] < filled[:, None], filled

    def recentre(self, idx: Index, shift: FloatArray) -> None:
        """Move the window and its fit by ``shift``, not the mean (which is already at the new level)."""
        self.buffer[idx] = self.buffer[idx] + shift[:, None].astype(np.float32)
        self.median[idx] = self.median[idx] + shift

    def _keep(self, idx: Index, y: FloatArray) -> None:
        count = self.count[idx].astype(np.int64)
        self.buffer[self.rows(idx), count % WINDOW] = y
        self.count[idx] = count + 1
        self._refit(idx, count + 1)

    def _refit(self, idx: Index, count: np.ndarray) -> None:
        offset = self.offset[idx].astype(np.int64)
        due = (count >= _MIN_FIT) & (((count + offset) % REFIT == 0) | (count == _MIN_FIT))
        if not due.any():
            return
        rows = self.rows(idx)[due]
        filled = np.minimum(count[due], WINDOW)
        full = filled == WINDOW
        for part, size in ((rows[full], WINDOW), *((rows[filled == n], n) for n in np.unique(filled[~full]))):
            if len(part):
                self._fit_rows(part, np.sort(self.buffer[part, :size].astype(np.float64), axis=1))

    def _fit_rows(self, rows: np.ndarray, ordered: FloatArray) -> None:
        """Fit both sides of ``rows`` from their windows' values, sorted along each row."""
        size = ordered.shape[1]
        median = 0.5 * (ordered[:, (size - 1) // 2] + ordered[:, size // 2])
        deviation = ordered - median[:, None]
        spread = np.mean(np.abs(deviation), axis=1)
        floor = np.maximum(_FLOOR * spread, 1e-9 * np.abs(median) + 1e-12)
        self.median[rows] = median
        self.spread[rows] = spread
        self.idle[rows] = np.mean(deviation == 0, axis=1)
        self.extent[rows] = np.stack([-deviation[:, 0], deviation[:, -1]], axis=1)
        self.tail[rows, 0] = _fit(deviation, floor)
        self.tail[rows, 1] = _fit(-deviation[:, ::-1], floor)
        # A low side the whole window keeps within the floor of its median (a ratio idling just above 0) has
        # its shape fitted to noise a few quanta deep; with the floored scale that shape would stretch to
        # values many floors away, and a ratio far below its idle would pass. The high side keeps its
        # shape: there, a series quiet between rare bursts (disk writes) bursts beyond the floor as its
        # normal (an exponential tail on both sides: a quarter more false alarms on the busy host).
        squeezed = self.extent[rows, 0] < floor
        self.tail[rows[squeezed], 1, 1] = 0.0


def _fit(ordered: FloatArray, floor: FloatArray) -> FloatArray:
    """(threshold, shape, scale) of the upper tail of each row (sorted ascending), by the method of moments
    over the excesses above the row's 90th percentile; an exponential tail of scale ``floor`` at least."""
    size = ordered.shape[1]
    threshold = ordered[:, min(size - 1, int(np.ceil((1.0 - _TAIL) * size)) - 1)]
    excess = np.maximum(ordered - threshold[:, None], 0.0)
    seen = np.sum(excess > 0, axis=1)
    mean = excess.sum(axis=1) / np.maximum(seen, 1)
    var = np.where(seen > 1, (excess * excess).sum(axis=1) / np.maximum(seen, 1) - mean * mean, 0.0)
    ratio = np.divide(mean * mean, var, out=np.ones_like(mean), where=var > 1e-12 * mean * mean)
    # Not below 0: a short tail fitted to a few dozen excesses would claim an end point the series has
    # merely not reached yet (heavy-tailed noise then floods with alarms).
    shape = np.clip(0.5 * (1.0 - ratio), 0.0, _MAX_SHAPE)
    # The moment estimate's scale is mean * (1 - shape): for excesses of nearly one size (plateaus a series
    # keeps going back to) the shape is far below 0 and the scale many times the mean excess, an exponential
    # tail under which ten times the plateau is unremarkable. No shorter a tail than -0.5 sets the scale.
    scale = np.where(var > 0, 0.5 * mean * (1.0 + np.minimum(ratio, _MAX_RATIO)), mean)
    return np.stack([threshold, shape, np.maximum(scale, floor)], axis=1)


def _survival(x: FloatArray, tail: FloatArray) -> FloatArray:
    """``P(deviation >= x)`` under a fitted side: the tail beyond its threshold, linear below it."""
    threshold, shape, scale = tail[:, 0], tail[:, 1], tail[:, 2]
    excess = np.maximum(x - threshold, 0.0) / np.where(scale > 0, scale, 1.0)
    return np.where(x > threshold, _TAIL * gpd_survival(excess, shape), 1.0)
