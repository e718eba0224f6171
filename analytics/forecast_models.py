"""Forecasting models over one regular series (numpy in, numpy out), and the default choice among them.

Every model is a :data:`ModelFn`: ``(history, period, steps, level) -> Prediction`` — the history oldest
first, the seasonal period in steps (``None`` for none), the number of steps to forecast and the coverage of
the prediction interval. :func:`auto`, the default, picks by the data:

- constant history, or fewer than 3 points: :func:`naive` (the last value);
- fewer than 10 points: :func:`theil_sen`, a robust straight-line trend (a median of pairwise slopes, so one
  outlier cannot tilt it) with regression prediction intervals;
- otherwise :func:`ets`: additive-error exponential smoothing (statsmodels' ``ETSModel``) with no, linear or
  damped trend, seasonal when a period is given, chosen by AICc — Holt-Winters with a damped trend among the
  candidates, as in R's ``forecast::ets``;
- if ETS fails or returns something non-finite: :func:`seasonal_naive` (or :func:`naive`). ``auto`` never
  raises on a bad fit.

Fits are kept cheap: seasonal states are initialised heuristically (only the smoothing parameters are
optimised), the caller caps the history, and the series is standardised first so that byte counts in the
trillions and ratios near zero optimise alike.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import norm, theilslopes
from statsmodels.tools.eval_measures import aicc
from statsmodels.tsa.exponential_smoothing.ets import ETSModel

from analytics.series import FloatArray

__all__ = ["MODELS", "ModelFn", "Prediction", "auto", "ets", "naive", "seasonal_naive", "theil_sen"]

MIN_ETS_POINTS = 10
"""statsmodels' heuristic initialisation needs ten observations; below that a trend line is all we fit."""
MIN_TREND_POINTS = 3
_MAX_ITER = 200
"""Optimiser iterations per fit: converged fits here take far fewer; a fit that needs more is a poor one."""


@dataclass(frozen=True)
class Prediction:
    """A forecast of ``steps`` points: the mean and the prediction interval, and which model made it."""

    mean: FloatArray
    lower: FloatArray
    upper: FloatArray
    model: str

    def is_finite(self) -> bool:
        """True if every value is finite and the interval is ordered around the mean."""
        values = np.concatenate((self.mean, self.lower, self.upper))
        ordered = np.all(self.lower <= self.mean) and np.all(self.mean <= self.upper)
        return bool(np.all(np.isfinite(values)) and ordered)


ModelFn = Callable[[FloatArray, int | None, int, float], Prediction]
"""``(history, period, steps, level) -> Prediction``; a module-level function, so it can run in a worker process."""


def _z(level: float) -> float:
    return float(norm.ppf(0.5 + level / 2))


def _band(mean: FloatArray, half: FloatArray, model: str) -> Prediction:
    return Prediction(mean, mean - half, mean + half, model)


def naive(history: FloatArray, period: int | None, steps: int, level: float) -> Prediction:
    """The last value, with a random walk's interval (one-step changes' spread, widening as ``sqrt(h)``)."""
    mean = np.full(steps, history[-1])
    sigma = float(np.std(np.diff(history), ddof=1)) if len(history) > 2 else 0.0
    return _band(mean, _z(level) * sigma * np.sqrt(np.arange(1, steps + 1)), "naive")


def seasonal_naive(history: FloatArray, period: int | None, steps: int, level: float) -> Prediction:
    """The value one period earlier (:func:`naive` without a period or a full cycle of history); the
    interval widens with each further cycle ahead."""
    if period is None or period < 2 or len(history) < period:
        return naive(history, period, steps, level)
    horizon = np.arange(steps)
    mean = history[len(history) - period + horizon % period]
    changes = history[period:] - history[:-period]
    sigma = float(np.std(changes, ddof=1)) if len(changes) > 1 else 0.0
    half = _z(level) * sigma * np.sqrt(horizon // period + 1)
    return _band(mean.astype(np.float64), half, "seasonal_naive")


def theil_sen(history: FloatArray, period: int | None, steps: int, level: float) -> Prediction:
    """A Theil–Sen line through the history, extrapolated, with the usual regression prediction interval
    (residual spread, widening with the distance from the history's centre)."""
    n = len(history)
    if n < MIN_TREND_POINTS:
        return naive(history, period, steps, level)
    x = np.arange(n, dtype=np.float64)
    slope = float(theilslopes(history, x).slope)
    intercept = float(np.median(history - slope * x))  # not scipy's median(y) - slope·median(x): an outlier moves that
    ahead = np.arange(n, n + steps, dtype=np.float64)
    mean = intercept + slope * ahead
    residuals = history - (intercept + slope * x)
    sigma = float(np.sqrt(np.sum(residuals**2) / (n - 2))) if n > 2 else 0.0
    spread = np.sqrt(1 + 1 / n + (ahead - x.mean()) ** 2 / np.sum((x - x.mean()) ** 2))
    return _band(mean, _z(level) * sigma * spread, "theil_sen")


def ets(history: FloatArray, period: int | None, steps: int, level: float) -> Prediction:
    """The best of additive ETS models with no, linear and damped trend (seasonal if ``period``), by AICc.

    Raises :class:`ValueError` when no candidate fits. Warnings from the fits are silenced on purpose: the
    optimiser routinely reports non-convergence or overflow on flat, short or step-shaped histories, every
    result here is checked (finite, ordered, best AICc) with a fallback behind it, and a job forecasting
    thousands of series would otherwise flood the log with warnings nobody can act on.
    """
    if len(history) < MIN_ETS_POINTS:
        raise ValueError(f"ETS needs at least {MIN_ETS_POINTS} points, got {len(history)}")
    centre, scale = float(np.mean(history)), float(np.std(history)) or 1.0
    endog = pd.Series((history - centre) / scale)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        candidates = sorted(
            (fitted for trend, damped in _TRENDS if (fitted := _fit(endog, trend, damped, period)) is not None),
            key=lambda fitted: fitted[0],
        )
        for _, model, params in candidates:
            prediction = _predict(model, params, steps, level)
            if prediction is not None:
                return Prediction(
                    prediction.mean * scale + centre,
                    prediction.lower * scale + centre,
                    prediction.upper * scale + centre,
                    prediction.model,
                )
    raise ValueError("no ETS model could be fitted")


_TRENDS: tuple[tuple[str | None, bool], ...] = ((None, False), ("add", False), ("add", True))


def _fit(endog: pd.Series, trend: str | None, damped: bool, period: int | None) -> tuple[float, ETSModel, Any] | None:
    """(AICc, model, parameters) of one candidate, or ``None`` if it cannot be fitted. Only the parameters are
    estimated here: building full results (with their Hessian) is left to the one candidate that wins."""
    try:
        model = ETSModel(
            endog,  # a pandas Series: statsmodels 0.15's prediction intervals fail on a bare ndarray
            error="add",
            trend=trend,
            damped_trend=damped,
            seasonal="add" if period else None,
            seasonal_periods=period,
            initialization_method="heuristic",
        )
        params = model.fit(disp=False, maxiter=_MAX_ITER, return_params=True)
        score = float(aicc(model.loglike(params), len(endog), model.k_params + 1))
    except Exception:  # noqa: BLE001 - numerical code fails in many ways; a failed candidate is skipped
        return None
    return (score, model, params) if np.isfinite(score) else None


def _predict(model: ETSModel, params: Any, steps: int, level: float) -> Prediction | None:
    try:
        n = model.nobs
        predicted = model.smooth(params).get_prediction(start=n, end=n + steps - 1)
        interval = predicted.pred_int(alpha=1 - level).to_numpy()
        mean = np.asarray(predicted.predicted_mean, dtype=np.float64)
    except Exception:  # noqa: BLE001 - as in _fit
        return None
    lower, upper = interval[:, 0].astype(np.float64), interval[:, 1].astype(np.float64)
    prediction = Prediction(mean, lower, upper, f"ets_{model.short_name}")
    return prediction if prediction.is_finite() else None


def auto(history: FloatArray, period: int | None, steps: int, level: float) -> Prediction:
    """The default model, chosen by the data (see the module docstring); never raises for a non-empty history."""
    n = len(history)
    if n < MIN_TREND_POINTS or np.ptp(history) == 0:
        return naive(history, period, steps, level)
    if n < MIN_ETS_POINTS:
        return theil_sen(history, period, steps, level)
    try:
        prediction = ets(history, period, steps, level)
    except ValueError:
        prediction = None
    if prediction is None or not prediction.is_finite():
        return seasonal_naive(history, period, steps, level)
    return prediction


MODELS: dict[str, ModelFn] = {
    "auto": auto,
    "ets": ets,
    "naive": naive,
    "seasonal_naive": seasonal_naive,
    "theil_sen": theil_sen,
}
"""The models by name, as ``forecast(model=...)`` and ``backtest(model=...)`` accept them."""
