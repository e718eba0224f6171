"""Cycles other than the day and the week: each series' period, found in the autocorrelation of its recent
values, for the residual's cycle model (:class:`~analytics.anomaly.residual.CycleProfile`).

A batch job every few minutes, a heartbeat, a rotating workload or data whose timestamps are only an index
repeat with a period no calendar knows. The period is the autocorrelation's highest peak between
:data:`MIN_PERIOD` points and a third of the history (or the first peak nearly as high: the period rather
than a multiple of it), refined between lags by a parabola; the peak must be
high (:data:`MIN_CORRELATION`) and stand out from the correlation at shorter lags (:data:`MIN_PROMINENCE`),
which the slowly decaying autocorrelation of a trend, a random walk or smooth noise never does. A period
found before is kept while its own correlation stays near the best and no more precise estimate (from a
fuller history) differs by much, so a strong harmonic or an anomaly in the history does not make the model
start again.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from analytics.anomaly.state import Arrays, FloatArray, Index

HISTORY = 1024  # values kept per series: periods up to a third of this are found, to a few per cent up to
# an eighth (longer ones have too few repeats in the history)
MIN_PERIOD = 4
MIN_CORRELATION = 0.5
MIN_PROMINENCE = 0.2
NEAR = 0.9  # the shortest peak this close to the highest is the period
KEEP = 0.8  # a known period stays while its correlation is at least this share of the best peak's …
DRIFT = 1 / 192  # … and no better estimate differs by more than this share (or two points over the multiple
# it was measured at): the profile's phase is the time modulo the period, and an error of a third of a bin
# per period is about what its memory of three periods can follow
_FIRST_ERROR = 0.05  # how far off the first peak of a noisy, broad cycle may be read
_HARMONIC_DRIFT = 4 * DRIFT  # a multiple read off a longer lag is less precise
FIRST = 64  # values before the first search
EARLY, LATE = 64, 256  # search every EARLY values while the history fills, then every LATE


def find_periods(history: npt.NDArray[np.floating], current: FloatArray) -> FloatArray:
    """The period in points (fractional; 0 for none) of each row of ``history`` (oldest value first).

    ``current`` holds each row's period found before (0 for none): it is kept while it still correlates
    nearly as well as the best peak.
    """
    rows, n = history.shape
    t = np.arange(n) - (n - 1) / 2.0
    x = history - history.mean(axis=1, keepdims=True)
    x = x - np.outer((x @ t) / (t @ t), t)  # a trend is not a cycle
    spectrum = np.fft.rfft(x, n=2 * n, axis=1)
    acf = np.fft.irfft(spectrum.real**2 + spectrum.imag**2, axis=1)[:, : n // 3 + 2]
    acf = acf / np.maximum(acf[:, :1], 1e-300) * (n / (n - np.arange(acf.shape[1])))  # unbiased: P, not below
    lags = acf.shape[1] - 1
    inner = acf[:, 1:lags]
    peak = (inner > acf[:, : lags - 1]) & (inner >= acf[:, 2:])
    trough = np.minimum.accumulate(inner, axis=1)
    lag = np.arange(1, lags)
    good = peak & (lag >= MIN_PERIOD) & (inner >= MIN_CORRELATION) & (inner - trough >= MIN_PROMINENCE)
    local = np.arange(rows)
    # Peaks compared by the parabola's top, not the value at the lag: a short period that falls between
    # lags (5.5 points) reads low at both, and its double, on a whole lag, would pass for the period.
    apex = inner + _lift(acf[:, : lags - 1], inner, acf[:, 2:])
    best = _fundamental(acf, apex, good, np.where(good, apex, -np.inf).max(axis=1))
    height = acf[local, best]
    found = good.any(axis=1)
    precise, multiple = _precise(acf, best, height)
    period = np.where(found, precise, 0.0)
    known = np.clip(np.round(current).astype(np.intp), 0, lags)
    still = (current >= MIN_PERIOD) & (current < lags)
    fits = acf[local, known] >= np.maximum(MIN_CORRELATION, KEEP * np.where(found, height, 0.0))
    close = np.abs(period - current) <= np.maximum(current * DRIFT, 2.0 / multiple)
    return np.where(still & fits & (close | _harmonic(period, current) | ~found), current, period)


def _harmonic(period: FloatArray, current: FloatArray) -> npt.NDArray[np.bool_]:
    """Whether a new period is a whole multiple (two or more) of the known one, or the known one of it.

    Bursts of uneven height make the period's double or triple correlate as well as the period itself,
    and the search then names one or another from one search to the next; while the known one still
    fits, either describes the cycle, and taking the other would start the profile afresh each time.
    """
    small, big = np.minimum(period, current), np.maximum(period, current)
    times = np.round(big / np.maximum(small, 1e-9))
    return (small >= MIN_PERIOD) & (times >= 2) & (np.abs(big - times * small) <= _HARMONIC_DRIFT * big)


def _precise(acf: FloatArray, best: npt.NDArray[np.intp], height: FloatArray) -> tuple[FloatArray, FloatArray]:
    """The period to a fraction of a point, and the multiple it was measured at: the peak at the longest
    multiple of ``best`` that still correlates nearly as well, located between lags by a parabola and
    divided by the multiple."""
    local, lags = np.arange(len(best)), acf.shape[1] - 1
    first = best + _vertex(acf, best)
    multiple = np.maximum(np.floor((lags - 3) / first), 1.0)
    # Searched within the first peak's own error times the multiple (a broad peak read a few per cent off
    # puts its multiple that many per cent times the multiple off), but short of the neighbouring multiples.
    reach = np.clip(np.ceil(_FIRST_ERROR * multiple * first), 2, np.maximum(2, np.floor(first / 2) - 1))
    reach = reach.astype(np.intp)
    offsets = np.arange(-int(reach.max()), int(reach.max()) + 1)
    around = np.clip(np.round(multiple * first).astype(np.intp)[:, None] + offsets[None, :], 1, lags - 1)
    values = np.where(np.abs(offsets)[None, :] <= reach[:, None], acf[local[:, None], around], -np.inf)
    top = around[local, np.argmax(values, axis=1)]
    fits = values.max(axis=1) >= NEAR * height
    return np.where(fits, (top + _vertex(acf, top)) / multiple, first), np.where(fits, multiple, 1.0)


def _vertex(acf: FloatArray, lag: npt.NDArray[np.intp]) -> FloatArray:
    """Where, within half a lag of ``lag``, the parabola through the correlations around it peaks."""
    local = np.arange(len(lag))
    return _shift(acf[local, lag - 1], acf[local, lag], acf[local, lag + 1])


def _shift(before: FloatArray, peak: FloatArray, after: FloatArray) -> FloatArray:
    """The offset (within half a lag) of the top of the parabola through three neighbouring values."""
    curvature = before - 2.0 * peak + after
    shift = np.where(curvature < 0, 0.5 * (before - after) / np.where(curvature < 0, curvature, -1.0), 0.0)
    return np.clip(shift, -0.5, 0.5)


def _lift(before: FloatArray, peak: FloatArray, after: FloatArray) -> FloatArray:
    """How far the top of that parabola lies above the middle value."""
    return 0.25 * (after - before) * _shift(before, peak, after)


def _fundamental(
    acf: FloatArray, apex: FloatArray, good: npt.NDArray[np.bool_], top: FloatArray
) -> npt.NDArray[np.intp]:
    """The period rather than a multiple of it: the first good peak whose ``apex`` (the height of its
    parabola, per inner lag) is nearly as high as the highest (:data:`NEAR`), moved to the highest lag
    within a tenth of it (noise makes small peaks on the flank)."""
    first = np.argmax(good & (apex >= NEAR * top[:, None]), axis=1) + 1
    reach = np.maximum(1, np.round(0.1 * first)).astype(np.intp)
    lags = acf.shape[1]
    offsets = np.arange(-1.0, 1.01, 0.05)  # ±reach in steps of a twentieth of it
    around = np.clip(first[:, None] + np.round(offsets[None, :] * reach[:, None]).astype(np.intp), 1, lags - 2)
    local = np.arange(len(first))[:, None]
    return np.asarray(around[local[:, 0], np.argmax(acf[local, around], axis=1)], dtype=np.intp)


class CycleFinder(Arrays):
    """Each series' last :data:`HISTORY` values (a ring) and the period found in them."""

    history: npt.NDArray[np.float32]  # (series, HISTORY)
    seen: FloatArray
    period: FloatArray  # in points; 0 for none
    offset: FloatArray  # staggers the searches across series, so no one step does them all

    def __init__(self) -> None:
        zero = np.zeros(0)
        super().__init__(history=np.zeros((0, HISTORY), dtype=np.float32), seen=zero, period=zero, offset=zero)

    def step(self, idx: Index, y: FloatArray) -> tuple[npt.NDArray[np.intp], FloatArray]:
        """Keep ``y``; search the series that are due. Returns the positions (in ``idx``) of the series whose
        period changed, and their new period in points (0: the cycle is gone)."""
        seen = self.seen[idx].copy()
        rows = self.rows(idx)
        self.history[rows, (seen % HISTORY).astype(np.intp)] = y
        seen += 1
        self.seen[idx] = seen
        filled = np.minimum(seen, HISTORY)
        due = (seen >= FIRST) & ((seen + self.offset[idx]) % np.where(seen < HISTORY, EARLY, LATE) == 0)
        positions, periods = [np.zeros(0, dtype=np.intp)], [np.zeros(0)]
        for length in np.unique(filled[due]).astype(np.intp):  # series with as much history search together
            at = np.flatnonzero(due & (filled == length))
            group = rows[at]
            start = (seen[at] % HISTORY).astype(np.intp) if length == HISTORY else np.zeros(len(at), np.intp)
            order = (start[:, None] + np.arange(length)[None, :]) % HISTORY  # oldest value first
            values = np.take_along_axis(self.history[group], order, axis=1).astype(np.float64)
            current = self.period[group]
            period = find_periods(values, current)
            self.period[group] = period
            moved = period != current
            positions.append(at[moved])
            periods.append(period[moved])
        return np.concatenate(positions), np.concatenate(periods)
