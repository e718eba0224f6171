"""Robust one-step-ahead residuals from a small family of exponential-smoothing models.

Four models run side by side for every series, stacked on the second axis so one numpy operation serves
all of them:

* ``slow``: a level with a slow gain — the right model for noise around a level; its residuals keep level
  shifts and trend changes visible long enough to accumulate evidence;
* ``fast``: a level that follows quickly — the right model for random-walk-like and smooth series;
* ``daily`` and ``weekly``: a level plus a profile over the day (48 bins) or the week (168 bins), linearly
  interpolated by time and kept at zero mean, Holt-Winters style. The profile learns against a baseline
  too slow to follow the cycle (two periods), so it converges within a couple of cycles; the model becomes
  eligible once the series has covered a period and a quarter.

Each series is scored with the model whose mean absolute residual over a long memory (~500 points) is
smallest, decided before the new point is seen and too slowly to switch in the middle of an anomaly. A
seasonal model is preferred when its profile is strong (its range at least twice its residual scale) and it
predicts nearly as well as the plain ones: a smooth daily wave is also followed by the fast model, but only
the seasonal one knows what the wave should look like, which is what reveals a seasonality break. Updates
are Huber-clipped at three scales, so a spike barely moves a level, and every model keeps its own scale, the
EW mean absolute residual.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from analytics.anomaly.state import Arrays, FloatArray, Index

DAY_US = 86_400_000_000
WEEK_US = 7 * DAY_US
ALPHA = np.array([0.02, 0.5, 0.05, 0.05])  # level gains: slow, fast, daily, weekly (at most; see _SEASONAL_LEVEL)
_SCALE_GAIN = 0.02
_ERROR_GAIN = 0.002  # slow, so that a level shift or a burst does not switch models mid-anomaly
_CLIP = 3.0
_SEASONAL_LEVEL = 0.25  # a seasonal model's level remembers a quarter day, so it cannot follow the daily wave
_PROFILE_MEMORY = 3.0  # in periods
_TOLERANCE = 1.1  # a strong profile is chosen unless it predicts 10 % worse than the best plain model
_STRENGTH = 2.0  # profile range, in residual scales, that makes a profile strong
_REFRESH = 16
_WARMUP = 20  # updates before residuals are clipped (the scale is still unknown)

Bins = tuple[np.ndarray, np.ndarray, FloatArray]


class Profile(Arrays):
    """A seasonal profile over a period, its learning weights and the slow baseline it learns against."""

    season: FloatArray  # (series, bins)
    visits: FloatArray  # (series, bins): weight of the points each bin has learnt from, capped
    baseline: FloatArray
    strength: FloatArray  # the profile's range, refreshed every _REFRESH points

    def __init__(self, period_us: int, bins: int) -> None:
        self.period_us, self.bins = period_us, bins
        zero = np.zeros(0)
        super().__init__(season=np.zeros((0, bins)), visits=np.zeros((0, bins)), baseline=zero, strength=zero)

    def at(self, idx: Index, ts_us: FloatArray) -> tuple[FloatArray, Bins]:
        """The profile's value at each time, and the two bins (with the weight of the second) around it."""
        position = (ts_us % self.period_us) / (self.period_us / self.bins)
        lower = np.floor(position)
        bin0 = lower.astype(np.intp) % self.bins
        bin1, frac = (bin0 + 1) % self.bins, position - lower
        season = self.season[idx]
        local = np.arange(len(ts_us))
        return (1 - frac) * season[local, bin0] + frac * season[local, bin1], (bin0, bin1, frac)

    def learn(self, idx: Index, bins: Bins, y: FloatArray, fitted: FloatArray, width: FloatArray, **kw: Any) -> None:
        """Move the two bins around each point towards it, measured against the baseline: a running mean over
        the first visits, then EW with a memory of ``_PROFILE_MEMORY`` periods. ``fitted`` is the profile's
        value at the point, ``width`` the clip; keywords ``count`` and ``interval_us`` per series."""
        count, interval, trust = kw["count"], np.maximum(kw["interval_us"], 1.0), kw["trust"]
        bin0, bin1, frac = bins
        local = np.arange(len(y))
        baseline = np.where(count == 0, y, self.baseline[idx])
        gain = np.maximum(1.0 / (count + 1.0), interval / (2.0 * self.period_us))
        self.baseline[idx] = baseline + gain * np.clip(y - fitted - baseline, -width, width)
        season, visits = self.season[idx], self.visits[idx]
        cap = np.maximum(1.0, _PROFILE_MEMORY * self.period_us / self.bins / interval)
        for bin_, weight in ((bin0, 1 - frac), (bin1, frac)):
            seen = np.minimum(visits[local, bin_] + weight, cap)
            visits[local, bin_] = seen
            delta = trust * weight / np.maximum(seen, 1e-9) * np.clip(y - baseline - season[local, bin_], -width, width)
            season[local, bin_] += delta
        self.season[idx] = season
        self.visits[idx] = visits
        due = count % _REFRESH == 0
        if due.any():  # now and then: recentre (its mean belongs to the levels) and measure the range
            rows = self.rows(idx)[due]
            recentred = self.season[rows] - self.season[rows].mean(axis=1, keepdims=True)
            self.season[rows] = recentred
            self.strength[rows] = np.ptp(recentred, axis=1)


class SeasonalResidual(Arrays):
    """The models' state and the robust residual of the best model for each series."""

    level: FloatArray  # (series, model)
    scale: FloatArray
    error: FloatArray  # long-memory mean absolute residual: what picks the model
    count: FloatArray
    first_us: FloatArray

    def __init__(self) -> None:
        models = len(ALPHA)
        super().__init__(
            level=np.zeros((0, models)),
            scale=np.zeros((0, models)),
            error=np.zeros((0, models)),
            count=np.zeros(0),
            first_us=np.zeros(0),
        )
        self.profiles = (Profile(DAY_US, 48), Profile(WEEK_US, 168))

    def grow(self, count: int) -> None:
        super().grow(count)
        for profile in self.profiles:
            profile.grow(count)

    def state(self, prefix: str) -> dict[str, np.ndarray[Any, Any]]:
        saved = super().state(prefix)
        for index, profile in enumerate(self.profiles):
            saved.update(profile.state(f"{prefix}.profile{index}"))
        return saved

    def load(self, prefix: str, state: dict[str, np.ndarray[Any, Any]]) -> None:
        super().load(prefix, state)
        for index, profile in enumerate(self.profiles):
            profile.load(f"{prefix}.profile{index}", state)

    def step(
        self, idx: Index, ts_us: FloatArray, y: FloatArray, interval_us: FloatArray, trust: FloatArray
    ) -> tuple[FloatArray, FloatArray]:
        """Score ``y`` and learn from it; returns the chosen model's residual and scale.

        ``interval_us`` is each series' typical sampling interval (it sets how fast the profiles learn);
        ``trust`` in [0, 1] scales what scales and profiles learn from the point: during an anomaly they
        must not learn that a flatline is quiet or that an outage is the daily shape.
        """
        count = self.count[idx]
        first = np.where(count == 0, ts_us, self.first_us[idx])
        level, scale, error = self.level[idx], self.scale[idx].copy(), self.error[idx]  # scale: returned as was
        level = np.where(count[:, None] == 0, y[:, None], level)
        fitted = [profile.at(idx, ts_us) for profile in self.profiles]
        seasonal = np.stack([np.zeros(len(y)), np.zeros(len(y)), *(value for value, _ in fitted)], axis=1)
        residual = y[:, None] - level - seasonal
        chosen = self._choose(idx, error, ts_us - first)

        # No clipping while the scale is unknown: during warm-up, and while a series has been constant.
        unknown = (count[:, None] < _WARMUP) | (scale <= 1e-12 * (1.0 + np.abs(y[:, None])))
        width = np.where(unknown, np.inf, _CLIP * scale)
        clipped = np.clip(residual, -width, width)
        alpha = np.repeat(ALPHA[None, :], len(y), axis=0)
        alpha[:, 2:] = np.minimum(
            alpha[:, 2:], 2.0 * np.maximum(interval_us, 1.0)[:, None] / (_SEASONAL_LEVEL * DAY_US)
        )
        self.level[idx] = level + alpha * clipped
        warm = 1.0 / (count[:, None] + 1.0)
        self.scale[idx] = scale + np.maximum(warm, _SCALE_GAIN) * trust[:, None] * (np.abs(clipped) - scale)
        self.error[idx] = error + np.maximum(warm, _ERROR_GAIN) * (np.abs(clipped) - error)
        for model, (profile, (value, bins)) in enumerate(zip(self.profiles, fitted, strict=True), start=2):
            profile.learn(idx, bins, y, value, width[:, model], count=count, interval_us=interval_us, trust=trust)
        self.count[idx] = count + 1
        self.first_us[idx] = first
        local = np.arange(len(y))
        return residual[local, chosen], scale[local, chosen]

    def _choose(self, idx: Index, error: FloatArray, age_us: FloatArray) -> np.ndarray:
        """Per series, the plain model with the smaller error, or the best seasonal one that is ready, strong
        and predicts nearly as well."""
        chosen = np.argmin(error[:, :2], axis=1)
        best = np.take_along_axis(error[:, :2], chosen[:, None], axis=1)[:, 0] * _TOLERANCE
        for model, profile in enumerate(self.profiles, start=2):
            ready = age_us >= profile.period_us * 5 // 4
            good = ready & (profile.strength[idx] >= _STRENGTH * error[:, model]) & (error[:, model] <= best)
            chosen = np.where(good, model, chosen)
            best = np.where(good, error[:, model], best)
        return chosen

    def relevel(self, idx: Index, shift: FloatArray) -> None:
        """Move every model's level and every baseline by ``shift`` (after a confirmed level shift)."""
        self.level[idx] = self.level[idx] + shift[:, None]
        for profile in self.profiles:
            profile.baseline[idx] = profile.baseline[idx] + shift
