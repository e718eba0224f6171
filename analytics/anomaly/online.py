"""The online scorer: explicit, serialisable state for every series, advanced one point per series at a time.

Per point, each method turns the series' past into evidence of how unusual the point is — the robust
residual of the best smoothing model, above and below (spikes, seasonality breaks; :mod:`.residual`), and
the lesser of two residuals in a row on one side (a spike of a few points whose points alone are not rare
enough in heavy-tailed noise), the value and its smoothed mean against the tails of their recent history
(far outside the series' range, or a level a bursty series has not kept in days; :mod:`.extremes`), CUSUMs
of level and scale (level shifts, trend changes, variance changes, flatlines; :mod:`.changepoint`), k-means
consensus (unfamiliar shapes; :mod:`.kmeans`), the share of the seasonal swing lately missed or overshot (a
burst that does not come or comes late; :mod:`.swing`), gaps and stuck values (:mod:`.missing`). Each
becomes a p-value — through its own per-series tail model where the null distribution depends on the series
— and the p-values are fused (:mod:`.combine`). A point is scored before it is learnt from, so a score
depends on the series' past and the point only; after a point that looks anomalous, scales and profiles
learn less, so an anomaly does not become the norm it is measured against; for the same reason the value
windows skip the points that follow an outlier for a while (a quarantine), and move to a new level once the
smoothed mean, or the values with the mean doubtful, have kept it for :data:`SETTLE` points (the residual
models follow it sooner, so the CUSUM may never confirm it). On a sparse series (idle most of the time) with
no seasonal model, a burst within the range the series has kept is judged by its value, not by its residual:
when such a series bursts is not predictable. A run of repeats at a value the value window holds often (a
rate back at 0 between bursts) is idling, not a stuck reading. An episode, once flagged, lasts while the
p-value stays within :data:`HOLD` times the false-alarm rate, so a score hovering at the threshold is one
alarm.

Counters (``name`` ending in ``_total``) are scored on their per-second rate, resets tolerated; the first
point of a counter has no rate. A missing value (NaN or null) leaves the state untouched; the gap it leaves
is judged at the next point. Points without a value or rate, or not newer than the last point seen for
their series, get a null score; the first ``MIN_POINTS`` points of a series score 0.

:meth:`OnlineDetector.update` is the whole API: give it any frame of new points (one or many per series) and
get the frame back with ``anomaly_score``, ``is_anomaly`` and ``anomaly_onset`` (the first flagged point of
an episode, for events). :meth:`OnlineDetector.state` / :meth:`OnlineDetector.from_state` save and restore
everything as a ``dict`` of numpy arrays.
"""

from __future__ import annotations

import zlib
from typing import Any

import numpy as np
import polars as pl

from analytics.anomaly.changepoint import ChangeStatistics
from analytics.anomaly.combine import (
    DEFAULT_SENSITIVITY,
    Sensitivity,
    TailModel,
    false_positive_rate,
    fuse,
    score_from_p,
)
from analytics.anomaly.cycle import LATE
from analytics.anomaly.extremes import REFIT, Extremes
from analytics.anomaly.frames import Layout, attach, layout
from analytics.anomaly.kmeans import RETRAIN, KMeansConsensus
from analytics.anomaly.missing import Continuity
from analytics.anomaly.residual import SeasonalResidual
from analytics.anomaly.state import Arrays, FloatArray, Index
from analytics.anomaly.swing import PRIOR, SwingDeviation

MIN_POINTS = 20
CONFIRM_P = 1e-6  # a level change this certain (stricter than any flag) resets the CUSUM and moves the levels
_INTERVAL_GAIN = 0.05
_DOUBT = 1e-3  # after a point this unlikely, scales and profiles learn less (in proportion to p)
_MIN_TRUST = 0.05
_SPREAD_FLOOR = 0.05  # least residual scale, in the value window's mean absolute deviations
STATISTICS = ("above", "below", "shape", "pair")
SMOOTHING, EVERY = 0.125, 4  # the smoothed mean: ~8 points' memory, a window reaching 4 x 512 points back
QUARANTINE = 24  # points the value windows skip after an outlying residual or value
QUARANTINE_P = 1e-6  # what is outlying: a residual or value p-value this small (relative to its weight)
MAX_WITHHELD = 128  # then the windows learn this many points whatever comes: the odd may be the new normal
SETTLE = 12  # points beyond the range (the mean at CONFIRM_P, or the values) before that is the new level
SPARSE = 0.5  # a series is sparse while at least this share of its value window sits at the median (idle)
IDLE = 0.05  # a value that makes up this share of the value window is one the series idles at
HOLD = 10.0  # an episode goes on while p stays below HOLD x the false-alarm rate: one event, not a flicker
WEIGHTS = (0.125, 0.125, 0.15, 0.15, 0.05, 0.05, 0.03, 0.1, 0.1, 0.02, 0.02, 0.05, 0.03)
"""Bonferroni weights of the p-values: residual above and below, value high and low, smoothed mean high and
low, shape, level, variance, gap, stuck, seasonal swing, residual pair."""
_PRIORS = {  # (90th percentile, log-moments of the excesses) of each statistic for Gaussian noise
    "above": (2.7, 0.55, 0.47),
    "below": (2.7, 0.55, 0.47),
    "shape": (1.7, 0.33, 0.17),
    "pair": (0.903, 0.642, 0.634),
}


class SeriesState(Arrays):
    """Bookkeeping per series: points seen, last time and raw value, typical interval, alarm state."""

    count: FloatArray
    last_us: FloatArray
    last_raw: FloatArray
    interval_us: FloatArray
    counter: FloatArray
    alarm: FloatArray
    last_p: FloatArray
    quarantine: FloatArray  # points the value windows still skip
    outside: FloatArray  # points in a row the smoothed mean has been above (> 0) or below its range
    run_sum: FloatArray  # the sum of the values in that run
    withheld: FloatArray  # points skipped in a row; negative while the windows must learn again
    last_z: FloatArray  # the previous point's residual, in scales

    def __init__(self) -> None:
        zero = np.zeros(0)
        super().__init__(
            count=zero,
            last_us=zero,
            last_raw=zero,
            interval_us=zero,
            counter=zero,
            alarm=zero,
            last_p=zero,
            quarantine=zero,
            outside=zero,
            run_sum=zero,
            withheld=zero,
            last_z=zero,
        )

    def defaults(self) -> dict[str, float]:
        return {"last_us": -np.inf, "last_raw": np.nan, "last_p": 1.0}


class OnlineDetector:
    """Scores points as they arrive, keeping every series' state between calls.

    ``sensitivity`` (a float in (0, 1] or ``"low"``/``"medium"``/``"high"``) sets the false-alarm rate per
    point behind ``is_anomaly``: see :func:`analytics.anomaly.combine.false_positive_rate`.
    """

    def __init__(self, sensitivity: Sensitivity = DEFAULT_SENSITIVITY) -> None:
        self.sensitivity = sensitivity
        self.false_positive_rate = false_positive_rate(sensitivity)
        self.keys: list[str] = []
        self._rows: dict[str, int] = {}
        self.series = SeriesState()
        self.residual = SeasonalResidual()
        self.extremes = Extremes()
        self.smoothed = Extremes(SMOOTHING, EVERY)
        self.change = ChangeStatistics()
        self.kmeans = KMeansConsensus()
        self.continuity = Continuity()
        self.swing = SwingDeviation()
        self.tails = {name: TailModel(_PRIORS[name]) for name in STATISTICS}
        self.tails["swing"] = TailModel(PRIOR)

    def __len__(self) -> int:
        return len(self.keys)

    # ---- the API -------------------------------------------------------------------------------------
    def update(self, frame: pl.DataFrame) -> pl.DataFrame:
        """Score the points of ``frame`` in time order per series and learn from them.

        ``frame`` has ``ts``, ``value`` and the text columns that identify a series (``name`` and labels);
        returns it with ``anomaly_score`` (Float64 in [0, 1], null where not scored), ``is_anomaly`` and
        ``anomaly_onset`` (Booleans).
        """
        plan = layout(frame)
        rows = self._rows_for(plan)
        score = np.full(len(plan.rows), np.nan)
        flag = np.zeros(len(plan.rows), dtype=bool)
        onset = np.zeros(len(plan.rows), dtype=bool)
        contiguous = len(rows) > 0 and bool(np.all(np.diff(rows) == 1))
        for step in range(len(plan.offsets) - 1):
            lo, hi = int(plan.offsets[step]), int(plan.offsets[step + 1])
            idx: Index = slice(int(rows[0]), int(rows[0]) + hi - lo) if contiguous else rows[: hi - lo]
            score[lo:hi], flag[lo:hi], onset[lo:hi] = self._step(idx, plan.ts_us[lo:hi], plan.value[lo:hi])
        scored = attach(frame, plan, score, flag)
        onsets = np.zeros(frame.height, dtype=bool)
        onsets[plan.rows] = onset
        return scored.with_columns(pl.Series("anomaly_onset", onsets, dtype=pl.Boolean))

    def state(self) -> dict[str, np.ndarray[Any, Any]]:
        """Everything needed to resume: a ``dict`` of numpy arrays (``numpy.savez`` writes it as is)."""
        saved: dict[str, np.ndarray[Any, Any]] = {
            "keys": np.array(self.keys, dtype=str),
            "sensitivity": np.array(str(self.sensitivity)),
        }
        for prefix, arrays in self._arrays().items():
            saved.update(arrays.state(prefix))
        return saved

    @classmethod
    def from_state(cls, state: dict[str, np.ndarray[Any, Any]]) -> OnlineDetector:
        """A detector that carries on from :meth:`state`'s output."""
        text = str(state["sensitivity"])
        detector = cls(text if text in ("low", "medium", "high") else float(text))  # type: ignore[arg-type]
        detector.keys = [str(key) for key in state["keys"]]
        detector._rows = {key: row for row, key in enumerate(detector.keys)}
        for prefix, arrays in detector._arrays().items():
            arrays.load(prefix, state)
        return detector

    # ---- internals -----------------------------------------------------------------------------------
    def _arrays(self) -> dict[str, Arrays]:
        named: dict[str, Arrays] = {
            "series": self.series,
            "residual": self.residual,
            "extremes": self.extremes,
            "smoothed": self.smoothed,
            "change": self.change,
            "swing": self.swing,
            "kmeans": self.kmeans,
            "continuity": self.continuity,
        }
        named.update({f"tail.{name}": tail for name, tail in self.tails.items()})
        return named

    def _rows_for(self, plan: Layout) -> np.ndarray:
        """State rows of the plan's series by rank, adding rows for series never seen."""
        new = [key for key in plan.keys if key not in self._rows]
        if new:
            first = len(self.keys)
            for arrays in self._arrays().values():
                arrays.grow(len(new))
            self.keys.extend(new)
            self._rows.update({key: first + i for i, key in enumerate(new)})
            fresh = slice(first, first + len(new))
            counter = dict(zip(plan.keys, plan.counter, strict=True))
            self.series.counter[fresh] = [float(counter[key]) for key in new]
            hashes = np.array([zlib.crc32(key.encode()) for key in new])  # staggers periodic work across series
            self.kmeans.offset[fresh] = hashes % RETRAIN
            self.extremes.offset[fresh] = hashes % REFIT
            self.smoothed.offset[fresh] = (hashes + REFIT // 2) % REFIT
            self.residual.finder.offset[fresh] = hashes % LATE
        return np.array([self._rows[key] for key in plan.keys], dtype=np.intp)

    def _step(self, idx: Index, ts_us: FloatArray, raw: FloatArray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Score one point for each series in ``idx``: (score, is_anomaly, onset); NaN score = not scored."""
        series = self.series
        last_us, last_raw = series.last_us[idx], series.last_raw[idx]
        fresh = ts_us > last_us
        elapsed = ts_us - last_us
        counter = series.counter[idx] > 0
        increase = np.where(raw >= last_raw, raw - last_raw, raw)  # a drop is a reset: counting restarted at 0
        rate = np.where(np.isfinite(last_raw), increase, np.nan) / np.maximum(elapsed, 1.0) * 1e6
        value = np.where(counter, rate, raw)
        usable = fresh & np.isfinite(value)
        series.last_raw[idx] = np.where(fresh & np.isfinite(raw), raw, last_raw)
        series.last_us[idx] = np.where(fresh & np.isfinite(raw), ts_us, last_us)

        score = np.full(len(raw), np.nan)
        flag = np.zeros(len(raw), dtype=bool)
        onset = np.zeros(len(raw), dtype=bool)
        if not usable.any():
            return score, flag, onset
        rows = series.rows(idx)
        sub: Index = idx if usable.all() else rows[usable]
        p = self._pvalue(sub, ts_us[usable], value[usable], elapsed[usable])
        score[usable] = score_from_p(p)
        alarm = series.alarm[sub] > 0
        flag[usable] = (p < self.false_positive_rate) | (alarm & (p < HOLD * self.false_positive_rate))
        onset[usable] = flag[usable] & ~alarm
        series.alarm[sub] = flag[usable].astype(float)
        return score, flag, onset

    def _pvalue(self, idx: Index, ts_us: FloatArray, y: FloatArray, elapsed: FloatArray) -> FloatArray:
        """The fused p-value of each usable point, learning from it afterwards."""
        series = self.series
        count = series.count[idx].copy()  # a view when ``idx`` is a slice, and the count moves on below
        interval = self._interval(idx, count, elapsed)
        missing = np.where(count > 1, np.maximum(np.round(elapsed / np.maximum(interval, 1.0)) - 1.0, 0.0), 0.0)
        # The previous point's fused p-value; floored, so a series that stays odd is learnt in the end.
        trust = np.clip(series.last_p[idx] / _DOUBT, _MIN_TRUST, 1.0)
        residual, scale, seasonal, swing = self.residual.step(idx, ts_us, y, interval, trust)
        floor = np.maximum(_SPREAD_FLOOR * self.extremes.spread[idx], 1e-9 * np.abs(y) + 1e-12)
        floored = np.maximum(scale, floor)
        z = residual / floored
        level, variance = self.change.step(idx, z)
        gap, stuck = self.continuity.step(idx, y, missing)
        stuck = self._idling(idx, y, stuck)
        # Squared where the null is roughly Gaussian: the square has a near-exponential tail, which the
        # tail models fit best; heavier tails get a larger fitted shape.
        # Each side of the residual has its own tail: skewed noise is often quiet on one side.
        high, low, value = self.extremes.step(idx, y)
        mean_high, mean_low, mean = self.smoothed.step(idx, y)
        square = z**2
        stats = {"above": np.where(z > 0, square, 0.0), "below": np.where(z < 0, square, 0.0)}
        stats["shape"] = self.kmeans.step(idx, y) ** 2
        last_z = series.last_z[idx]
        stats["pair"] = np.where(z * last_z > 0, np.minimum(square, last_z**2), 0.0)
        series.last_z[idx] = z
        tail = {name: self.tails[name].judge(idx, stat) for name, stat in stats.items()}
        self._unpredictable(idx, y, seasonal, tail, (high, low))
        # Until the value window can tell whether bursts are the series' normal, two in a row say nothing.
        tail["pair"] = np.where(self.extremes.fitted(idx), tail["pair"], 1.0)
        # The swing's tail learns only from seasonal points, or the zeros of the other stretches (the
        # statistic is 0 there) would make every swing look rare.
        share = self.swing.step(idx, residual, swing, floored, seasonal)
        tail["swing"] = np.where(seasonal, self.tails["swing"].judge(idx, share, learn=seasonal), 1.0)
        outlying = np.stack([tail["above"], tail["below"], high, low]) / np.array(WEIGHTS[:4])[:, None]
        learn = self._quarantine(idx, outlying.min(axis=0))
        self._settle(idx, y, (mean_high, mean_low), (high, low), variance)
        self.extremes.keep(idx, value, learn)
        self.smoothed.keep(idx, mean, learn)
        self._adapt(idx, level, variance, scale)
        series.count[idx] = count + 1
        p = fuse(
            [
                tail["above"],
                tail["below"],
                high,
                low,
                mean_high,
                mean_low,
                tail["shape"],
                level,
                variance,
                gap,
                stuck,
                tail["swing"],
                tail["pair"],
            ],
            WEIGHTS,
        )
        series.last_p[idx] = p
        return np.where(count + 1 < MIN_POINTS, 1.0, p)

    def _unpredictable(
        self,
        idx: Index,
        y: FloatArray,
        seasonal: np.ndarray,
        tail: dict[str, FloatArray],
        p_value: tuple[FloatArray, FloatArray],
    ) -> None:
        """Judge a sparse series' burst by its value alone while it stays within the range its window has seen.

        A series that is idle most of the time (disk writes, I/O wait, traffic on a quiet link) and has no
        seasonal model that says when it is busy bursts when it does: its residual, measured by a scale the
        idle stretches shrink, makes every burst thousands of scales of surprise, and the rate floor of the
        tail models forgives only bursts that recur at a steady depth. So, there, the residual's p-value is
        at least the value's (``p_value``: high and low), and the residual pair's at least the rarer of the
        two. A burst beyond the window's range keeps the residual's evidence as well.
        """
        sparse = (self.extremes.idle[idx] >= SPARSE) & ~seasonal & self.extremes.inside(idx, y)
        if sparse.any():
            high, low = p_value
            tail["above"] = np.where(sparse, np.maximum(tail["above"], high), tail["above"])
            tail["below"] = np.where(sparse, np.maximum(tail["below"], low), tail["below"])
            tail["pair"] = np.where(sparse, np.maximum(tail["pair"], np.minimum(high, low)), tail["pair"])

    def _idling(self, idx: Index, y: FloatArray, stuck: FloatArray) -> FloatArray:
        """``stuck`` (the p-value of the run of repeats), or 1 where the value repeated is one the value window
        holds often (at least :data:`IDLE` of it): a rate back at 0 between bursts idles, it is not frozen."""
        doubtful = stuck < _DOUBT
        if not doubtful.any():
            return stuck
        rows = self.series.rows(idx)[doubtful]
        idling = self.extremes.share(rows, y[doubtful]) >= IDLE
        stuck = stuck.copy()
        stuck[np.flatnonzero(doubtful)[idling]] = 1.0
        return stuck

    def _quarantine(self, idx: Index, outlying: FloatArray) -> np.ndarray:
        """Which points the value windows may learn from, given how outlying each point's residual or
        value is (its smallest p-value over its weight).

        Not the :data:`QUARANTINE` points after an outlying one: a burst of noise taken into a window gives
        its fitted tail a heavy shape, and the next burst would then pass for normal — and so would the rest
        of a long burst, at the next refit. The outlying point itself is kept, or a series whose bursts are
        its normal (network traffic) would never learn them.
        """
        series = self.series
        quarantine, withheld = series.quarantine[idx], series.withheld[idx]
        skip = (quarantine > 0) & (withheld >= 0)
        withheld = np.where(skip, withheld + 1.0, np.minimum(withheld + 1.0, 0.0))
        series.withheld[idx] = np.where(withheld >= MAX_WITHHELD, -MAX_WITHHELD, withheld)
        series.quarantine[idx] = np.where(outlying < QUARANTINE_P, QUARANTINE, np.maximum(quarantine - 1.0, 0.0))
        return ~skip

    def _settle(
        self,
        idx: Index,
        y: FloatArray,
        p_mean: tuple[FloatArray, FloatArray],
        p_value: tuple[FloatArray, FloatArray],
        p_variance: FloatArray,
    ) -> None:
        """Move the value windows to a level the series has kept beyond one side of their range for
        :data:`SETTLE` points in a row: the smoothed mean beyond its own range (``p_mean``, high and low,
        below :data:`CONFIRM_P`), or the values beyond theirs (``p_value`` below :data:`CONFIRM_P`) with the
        mean doubtful (below :data:`_DOUBT`).

        The CUSUM confirms level shifts from the residuals, but on a bursty series the residual models
        follow a new level within a few points and the evidence stops; the value windows would then flag it
        until they have learnt it (:data:`MAX_WITHHELD` points and more): one change, alarming for minutes.
        The smoothed mean's tail, fitted to fewer and smoother points, can be heavier than the values': a
        count that steps well beyond the values' range takes the mean only to the edge of its own, so there
        the values' evidence counts with a doubtful mean. A point beyond the other side of the values' range
        (``p_value``), or a residual scale that has changed (``p_variance``), breaks the run: a burst of
        noise moves the mean too. The windows move by the mean of the run's values less the mean of the
        window, like for like: the smoothed mean lags (after a burst it is still high while the values are
        back) and a bursty series' median is not its mean.
        """
        series = self.series
        (mean_high, mean_low), (high, low) = p_mean, p_value
        calm = p_variance >= _DOUBT
        beyond_high = (mean_high < CONFIRM_P) | ((high < CONFIRM_P) & (mean_high < _DOUBT))
        beyond_low = (mean_low < CONFIRM_P) | ((low < CONFIRM_P) & (mean_low < _DOUBT))
        up = calm & beyond_high & (low >= _DOUBT)
        down = calm & beyond_low & (high >= _DOUBT)
        side = up.astype(float) - down.astype(float)
        before = series.outside[idx]
        going = side * before > 0  # the run goes on while it keeps its side
        outside = np.where(going, before + side, side)
        total = np.where(going, series.run_sum[idx], 0.0) + np.where(side != 0, y, 0.0)
        settled = np.abs(outside) >= SETTLE
        series.outside[idx] = np.where(settled, 0.0, outside)
        series.run_sum[idx] = np.where(settled, 0.0, total)
        if settled.any():
            rows = series.rows(idx)[settled]
            shift = total[settled] / np.abs(outside[settled]) - self.extremes.window_mean(rows)
            self.extremes.recentre(rows, shift)
            self.smoothed.recentre(rows, shift)

    def _interval(self, idx: Index, count: FloatArray, elapsed: FloatArray) -> FloatArray:
        """Each series' typical sampling interval, learnt robustly (a gap counts as at most two intervals)."""
        known = count >= 1  # the first point has no elapsed time
        elapsed = np.where(known, elapsed, 0.0)
        interval = self.series.interval_us[idx]
        interval = np.where(interval == 0, elapsed, interval)
        step = np.clip(elapsed, 0.5 * interval, 2.0 * interval) - interval
        interval = np.where(known, interval + _INTERVAL_GAIN * step, 0.0)
        self.series.interval_us[idx] = interval
        return interval

    def _adapt(self, idx: Index, level: FloatArray, variance: FloatArray, scale: FloatArray) -> None:
        """After a confirmed level change, make the new level the models' normal at once; after a confirmed
        variance change, restart its test."""
        rows = self.series.rows(idx)
        shifted = level < CONFIRM_P
        if shifted.any():
            shift = self.change.confirm_level(rows[shifted]) * scale[shifted]
            self.residual.relevel(rows[shifted], shift)
            self.extremes.relevel(rows[shifted], shift)
            self.smoothed.relevel(rows[shifted], shift)
        changed = variance < CONFIRM_P
        if changed.any():
            # The test restarts, but the scales learn at their own pace: a burst of noise is usually over
            # soon, and scales grown to it at once would hide the next one.
            self.change.confirm_scale(rows[changed])
