"""Robust one-step-ahead residuals from a small family of exponential-smoothing models.

Five models run side by side for every series, stacked on the second axis so one numpy operation serves
all of them:

* ``slow``: a level with a slow gain — the right model for noise around a level; its residuals keep level
  shifts and trend changes visible long enough to accumulate evidence;
* ``fast``: a level that follows quickly — the right model for random-walk-like and smooth series;
* ``daily`` and ``weekly``: a level plus a profile over the day (48 bins) or the week (168 bins), linearly
  interpolated by time and kept at zero mean, Holt-Winters style. The profile learns against a baseline
  too slow to follow the cycle (two periods), so it converges within a couple of cycles; the model becomes
  eligible once the series has covered a period and a quarter;
* ``cycle``: the same over the series' own period (64 bins), when :mod:`.cycle` finds one in its recent
  values — a batch job every few minutes, a heartbeat, data whose timestamps are only an index. A new
  period starts the profile afresh; the model is judged from its second period on.

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

from analytics.anomaly.cycle import CycleFinder
from analytics.anomaly.state import Arrays, FloatArray, Index

DAY_US = 86_400_000_000
WEEK_US = 7 * DAY_US
ALPHA = np.array([0.02, 0.5, 0.05, 0.05, 0.05])  # level gains: slow, fast, daily, weekly, cycle (at most; see
# _SEASONAL_LEVEL)
_SCALE_GAIN = 0.02
_ERROR_GAIN = 0.002  # slow, so that a level shift or a burst does not switch models mid-anomaly
_CLIP = 3.0
_SEASONAL_LEVEL = 0.25  # a seasonal model's level remembers a quarter period (at most a day): it cannot follow
# the wave
_PROFILE_MEMORY = 3.0  # in periods
_TOLERANCE = 1.1  # a strong profile is chosen unless it predicts 10 % worse than the best plain model
_STRENGTH = 2.0  # profile range, in residual scales, that makes a profile strong
_REFRESH = 16
_WARMUP = 20  # updates before residuals are clipped (the scale is still unknown)
_JUDGED = 16  # residuals a new cycle model is judged on before it may be chosen
CYCLE = 4  # the cycle model's column

Bins = tuple[np.ndarray, np.ndarray, FloatArray]


class Profile(Arrays):
    """A seasonal profile over a period, its learning weights and the slow baseline it learns against."""

    season: FloatArray  # (series, bins)
    visits: FloatArray  # (series, bins): weight of the points each bin has learnt from, capped
    baseline: FloatArray
    strength: FloatArray  # the profile's range, refreshed every _REFRESH points

    def __init__(self, period_us: int, bins: int, **extra: np.ndarray[Any, Any]) -> None:
        self.period_us, self.bins = period_us, bins
        zero = np.zeros(0)
        super().__init__(season=np.zeros((0, bins)), visits=np.zeros((0, bins)), baseline=zero, strength=zero, **extra)

    first_visit_as_is = False  # whether a bin's first visit learns the value unclipped and fully trusted

    def period(self, idx: Index) -> FloatArray | float:
        """Each series' period in microseconds."""
        return float(self.period_us)

    def ready(self, idx: Index, ts_us: FloatArray, first_us: FloatArray) -> np.ndarray:
        """Which series' model may be chosen: those that have covered a period and a quarter."""
        return np.asarray(ts_us - first_us >= self.period_us * 5 // 4)

    def at(self, idx: Index, ts_us: FloatArray) -> tuple[FloatArray, Bins]:
        """The profile's value at each time, and the two bins (with the weight of the second) around it."""
        period = self.period(idx)
        position = (ts_us % period) / (period / self.bins)
        lower = np.floor(position)
        bin0 = lower.astype(np.intp) % self.bins
        bin1, frac = (bin0 + 1) % self.bins, position - lower
        rows = self.rows(idx)
        return (1 - frac) * self.season[rows, bin0] + frac * self.season[rows, bin1], (bin0, bin1, frac)

    def learn(self, idx: Index, bins: Bins, y: FloatArray, fitted: FloatArray, width: FloatArray, **kw: Any) -> None:
        """Move the two bins around each point towards it, measured against the baseline: a running mean over
        the first visits, then EW with a memory of ``_PROFILE_MEMORY`` periods. ``fitted`` is the profile's
        value at the point, ``width`` the clip; keywords ``count`` and ``interval_us`` per series."""
        count, interval, trust = kw["count"], np.maximum(kw["interval_us"], 1.0), kw["trust"]
        period = self.period(idx)
        bin0, bin1, frac = bins
        baseline = np.where(count == 0, y, self.baseline[idx])
        gain = np.maximum(1.0 / (count + 1.0), interval / (2.0 * period))
        self.baseline[idx] = baseline + gain * np.clip(y - fitted - baseline, -width, width)
        rows = self.rows(idx)  # the bins are updated in place: copying whole profiles costs more than the step
        cap = _PROFILE_MEMORY * np.maximum(1.0, period / self.bins / interval)  # visits per bin in that memory
        for bin_, weight in ((bin0, 1 - frac), (bin1, frac)):
            before = self.visits[rows, bin_]
            seen = np.minimum(before + weight, cap)
            self.visits[rows, bin_] = seen
            step, clip = trust * weight / np.maximum(seen, 1e-9), width
            if self.first_visit_as_is:
                first = before < 1.0
                if first.any():
                    step = np.where(first, weight / np.maximum(seen, 1e-9), step)
                    clip = np.where(first, np.inf, width)
            self.season[rows, bin_] += step * np.clip(y - baseline - self.season[rows, bin_], -clip, clip)
        due = count % _REFRESH == 0
        if due.any():  # now and then: recentre (its mean belongs to the levels) and measure the range
            rows = rows[due]
            recentred = self.season[rows] - self.season[rows].mean(axis=1, keepdims=True)
            self.season[rows] = recentred
            self.strength[rows] = np.ptp(recentred, axis=1)


class CycleProfile(Profile):
    """A profile over each series' own period (0: none yet), started afresh when the period changes."""

    cycle_us: FloatArray
    started_us: FloatArray
    seen: FloatArray  # points learnt since the start
    judged: FloatArray  # residuals the model's error has been measured on (from its second period)

    # Its first period learns the shape as it is. Clipped at the residual scale and scaled by trust, the
    # profile of a sparse series would never learn the burst that gave it its period: the scale is the quiet
    # phase's, and the burst is flagged (so untrusted) until it is learnt.
    first_visit_as_is = True

    def __init__(self, bins: int) -> None:
        zero = np.zeros(0)
        super().__init__(DAY_US, bins, cycle_us=zero, started_us=zero, seen=zero, judged=zero)

    def period(self, idx: Index) -> FloatArray:
        cycle = self.cycle_us[idx]
        return np.where(cycle > 0, cycle, float(DAY_US))  # a series without a cycle keeps an idle profile

    def ready(self, idx: Index, ts_us: FloatArray, first_us: FloatArray) -> np.ndarray:
        cycle = self.cycle_us[idx]
        return (cycle > 0) & (ts_us - self.started_us[idx] >= 1.25 * cycle) & (self.judged[idx] >= _JUDGED)

    def judging(self, idx: Index, ts_us: FloatArray) -> np.ndarray:
        """Which series' residuals measure the model: those past its first period, when it knows the shape."""
        cycle = self.cycle_us[idx]
        return (cycle > 0) & (ts_us - self.started_us[idx] >= cycle)

    def learn(self, idx: Index, bins: Bins, y: FloatArray, fitted: FloatArray, width: FloatArray, **kw: Any) -> None:
        seen = self.seen[idx].copy()
        super().learn(idx, bins, y, fitted, width, **{**kw, "count": seen})
        self.seen[idx] = seen + 1

    def restart(self, rows: np.ndarray, cycle_us: FloatArray, ts_us: FloatArray) -> None:
        """Start ``rows`` afresh on new periods (0: the cycle is gone)."""
        for array in (self.season, self.visits):
            array[rows] = 0.0
        for name, value in (("baseline", 0.0), ("strength", 0.0), ("seen", 0.0), ("judged", 0.0)):
            getattr(self, name)[rows] = value
        self.cycle_us[rows] = cycle_us
        self.started_us[rows] = ts_us


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
        self.cycle = CycleProfile(64)
        self.profiles: tuple[Profile, ...] = (Profile(DAY_US, 48), Profile(WEEK_US, 168), self.cycle)
        self.finder = CycleFinder()

    def _parts(self) -> dict[str, Arrays]:
        parts: dict[str, Arrays] = {f"profile{index}": profile for index, profile in enumerate(self.profiles)}
        return {**parts, "finder": self.finder}

    def grow(self, count: int) -> None:
        super().grow(count)
        for part in self._parts().values():
            part.grow(count)

    def state(self, prefix: str) -> dict[str, np.ndarray[Any, Any]]:
        saved = super().state(prefix)
        for name, part in self._parts().items():
            saved.update(part.state(f"{prefix}.{name}"))
        return saved

    def load(self, prefix: str, state: dict[str, np.ndarray[Any, Any]]) -> None:
        super().load(prefix, state)
        for name, part in self._parts().items():
            part.load(f"{prefix}.{name}", state)

    def step(
        self, idx: Index, ts_us: FloatArray, y: FloatArray, interval_us: FloatArray, trust: FloatArray
    ) -> tuple[FloatArray, FloatArray, np.ndarray, FloatArray]:
        """Score ``y`` and learn from it; returns the chosen model's residual and scale, whether it is a
        seasonal one, and the size of the seasonal swing it expects at the point (0 for a plain model).

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
        chosen = self._choose(idx, error, ts_us, first)

        # No clipping while the scale is unknown: during warm-up, and while a series has been constant.
        unknown = (count[:, None] < _WARMUP) | (scale <= 1e-12 * (1.0 + np.abs(y[:, None])))
        width = np.where(unknown, np.inf, _CLIP * scale)
        clipped = np.clip(residual, -width, width)
        alpha = np.repeat(ALPHA[None, :], len(y), axis=0)
        interval = np.maximum(interval_us, 1.0)
        for model, profile in enumerate(self.profiles, start=2):
            memory = _SEASONAL_LEVEL * np.minimum(profile.period(idx), DAY_US)
            alpha[:, model] = np.minimum(alpha[:, model], 2.0 * interval / memory)
        self.level[idx] = level + alpha * clipped
        warm = 1.0 / (count[:, None] + 1.0)
        self.scale[idx] = scale + np.maximum(warm, _SCALE_GAIN) * trust[:, None] * (np.abs(clipped) - scale)
        judged, judging = self.cycle.judged[idx].copy(), self.cycle.judging(idx, ts_us)
        gain = np.repeat(np.maximum(warm, _ERROR_GAIN), len(ALPHA), axis=1)
        gain[:, CYCLE] = np.where(judging, np.maximum(1.0 / (judged + 1.0), _ERROR_GAIN), 0.0)
        self.error[idx] = error + gain * (np.abs(clipped) - error)
        self.cycle.judged[idx] = judged + judging
        for model, (profile, (value, bins)) in enumerate(zip(self.profiles, fitted, strict=True), start=2):
            profile.learn(idx, bins, y, value, width[:, model], count=count, interval_us=interval_us, trust=trust)
        self.count[idx] = count + 1
        self.first_us[idx] = first
        self._find_cycles(idx, ts_us, y, interval)
        local = np.arange(len(y))
        return residual[local, chosen], scale[local, chosen], chosen >= 2, np.abs(seasonal[local, chosen])

    def _find_cycles(self, idx: Index, ts_us: FloatArray, y: FloatArray, interval: FloatArray) -> None:
        """Keep ``y`` for the period search; restart the cycle model of series whose period changed, from
        the slow model's level and scale."""
        changed, periods = self.finder.step(idx, y)
        if not len(changed):
            return
        rows = self.rows(idx)[changed]
        self.cycle.restart(rows, periods * interval[changed], ts_us[changed])
        self.level[rows, CYCLE] = self.level[rows, 0]
        self.scale[rows, CYCLE] = self.scale[rows, 0]
        self.error[rows, CYCLE] = 0.0

    def _choose(self, idx: Index, error: FloatArray, ts_us: FloatArray, first_us: FloatArray) -> np.ndarray:
        """Per series, the plain model with the smaller error, or the best seasonal one that is ready, strong
        and predicts nearly as well."""
        chosen = np.argmin(error[:, :2], axis=1)
        best = np.take_along_axis(error[:, :2], chosen[:, None], axis=1)[:, 0] * _TOLERANCE
        for model, profile in enumerate(self.profiles, start=2):
            ready = profile.ready(idx, ts_us, first_us)
            good = ready & (profile.strength[idx] >= _STRENGTH * error[:, model]) & (error[:, model] <= best)
            chosen = np.where(good, model, chosen)
            best = np.where(good, error[:, model], best)
        return chosen

    def relevel(self, idx: Index, shift: FloatArray) -> None:
        """Move every model's level and every baseline by ``shift`` (after a confirmed level shift)."""
        self.level[idx] = self.level[idx] + shift[:, None]
        for profile in self.profiles:
            profile.baseline[idx] = profile.baseline[idx] + shift
