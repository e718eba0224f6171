"""Forecasts, threshold crossings ("disk full in 3.2 days") and backtests for every series of a frame.

Input frames are what :meth:`Store.query` returns (``ts``, ``value``, ``name``, one string column per label)
or just ``ts`` and ``value``; each distinct combination of the other columns is one series, and every output
row carries that series' columns. Each series is prepared the same way before a model sees it:

1. counters (``*_total`` names, or all series with ``counter=True``) have their resets undone;
2. at most :data:`MAX_HISTORY` of the latest history is kept, on a regular grid: the sampling step when that
   gives at most :data:`MAX_POINTS` points of history and of horizon, else the finest coarser step of
   :data:`STEPS` that does (ten-second samples over a week are forecast at 10-minute steps);
3. gaps of up to :data:`MAX_GAP` (or three steps, if more) are interpolated; history before a longer gap is
   dropped, as an outage that long usually means something changed (a rebuilt host, a replaced disk);
4. counters become per-second rates — the quantity that has a daily shape and that dashboards plot; the
   forecast of a counter is a forecast of its rate, never negative;
5. the seasonal period is detected (daily, weekly) or taken from ``seasonality``.

Models are in :mod:`analytics.forecast_models`; the default, ``"auto"``, chooses by the data. Everything is
pure: no clock (times come from the data), no I/O, deterministic. ``workers > 1`` fits series in that many
worker processes, which is worth it from a few hundred series on.
"""

from __future__ import annotations

import math
import multiprocessing
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from typing import Literal

import numpy as np
import polars as pl
from threadpoolctl import threadpool_limits

from analytics.forecast_models import MIN_TREND_POINTS, MODELS, ModelFn, Prediction, seasonal_naive
from analytics.seasonality import DAY, WEEK, detect_period, period_steps
from analytics.series import (
    US,
    BoolArray,
    FloatArray,
    Regular,
    Series,
    fill_seasonally,
    infer_step,
    is_counter,
    key_columns,
    rate,
    regularize,
    reset_corrected,
    split,
)
from qwq_core.errors import QueryError
from qwq_core.model import series_key
from qwq_core.timeutil import DurationLike, parse_duration

__all__ = [
    "MAX_GAP",
    "MAX_HISTORY",
    "MAX_POINTS",
    "STEPS",
    "backtest",
    "forecast",
    "forecast_and_crossings",
    "mase",
    "smape",
    "time_to_threshold",
]

MAX_POINTS = 1200
"""Most points of history (and of horizon) one fit sees; coarser steps are used beyond it."""
MAX_HISTORY = timedelta(days=28)
"""Most history kept: four weekly cycles."""
MAX_GAP = timedelta(days=1)
"""Longest gap interpolated (but at least three steps); a longer gap drops the history before it."""
STEPS = tuple(
    seconds * US for seconds in (1, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400)
)
"""The coarser grids a long or finely sampled series is forecast on; each divides a day."""

Seasonality = DurationLike | Literal["auto"] | None
Model = str | ModelFn
Direction = Literal["auto", "rising", "falling"]
_UTC = pl.Datetime("us", "UTC")


@dataclass(frozen=True)
class _Prepared:
    """One series made ready for a model: which series, its regular history, its period, the steps to forecast."""

    index: int
    history: Regular
    period: int | None
    steps: int
    counter: bool


# ---- public API -------------------------------------------------------------------------------------------
def forecast(
    frame: pl.DataFrame,
    horizon: DurationLike,
    *,
    seasonality: Seasonality = "auto",
    level: float = 0.95,
    counter: bool | None = None,
    model: Model = "auto",
    workers: int = 1,
) -> pl.DataFrame:
    """Forecast every series of ``frame`` over ``horizon`` (``"24h"``, a timedelta, or seconds).

    Returns ``ts, yhat, yhat_lower, yhat_upper`` and the series' columns: one row per step after the series'
    last observation until the horizon is covered (``ceil(horizon / step)`` rows), ``yhat_lower <= yhat <=
    yhat_upper`` bounding a ``level`` prediction interval. ``seasonality`` is ``"auto"`` (detect a daily or
    weekly cycle), ``None`` or ``"none"``, or a period such as ``"1d"`` (ignored unless the history holds two
    cycles of it). ``counter`` forces (True) or forbids (False)
    counter handling instead of deciding by the ``_total`` suffix. ``model`` names one of
    :data:`~analytics.forecast_models.MODELS` or is a :data:`~analytics.forecast_models.ModelFn`.
    Series with fewer than two sample times are left out.
    """
    keys, prepared = _prepare_all(frame, horizon, seasonality, counter)
    predictions = _predict_all(prepared, _model_fn(model), _check_level(level), workers)
    return _forecast_frame(keys, prepared, predictions)


def time_to_threshold(
    frame: pl.DataFrame,
    threshold: float,
    *,
    horizon: DurationLike,
    direction: Direction = "auto",
    seasonality: Seasonality = "auto",
    level: float = 0.95,
    counter: bool | None = None,
    model: Model = "auto",
    workers: int = 1,
) -> pl.DataFrame:
    """When each series' forecast reaches ``threshold`` within ``horizon``: one row per series.

    ``direction`` is ``"rising"`` (reaching a maximum, e.g. disk usage), ``"falling"`` (a minimum, e.g. free
    bytes) or ``"auto"``: rising if the last value is below the threshold. Columns: ``last_ts``,
    ``last_value``, ``threshold``, ``direction``; ``crossing_ts`` (the forecast's crossing),
    ``earliest_ts`` and ``latest_ts`` (where the interval's bounds cross: the upper bound first when rising),
    each also as ``*_s``, seconds after ``last_ts``; null when not reached within the horizon (0 when already
    reached); and ``message``, e.g. ``host_filesystem_used_ratio{mountpoint="/"} reaches 0.9 in 3.2 days
    (2.1–5.0)``; then the series' columns. Times between forecast steps are linearly interpolated. Other
    arguments as in :func:`forecast`.
    """
    _, crossings = forecast_and_crossings(
        frame,
        threshold,
        horizon=horizon,
        direction=direction,
        seasonality=seasonality,
        level=level,
        counter=counter,
        model=model,
        workers=workers,
    )
    return crossings


def forecast_and_crossings(
    frame: pl.DataFrame,
    threshold: float,
    *,
    horizon: DurationLike,
    direction: Direction = "auto",
    seasonality: Seasonality = "auto",
    level: float = 0.95,
    counter: bool | None = None,
    model: Model = "auto",
    workers: int = 1,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """``(forecast(...), time_to_threshold(...))`` of ``frame`` from one fit per series: the same two frames
    as calling both, at half the cost. Arguments as in :func:`time_to_threshold`."""
    _check_threshold(threshold)
    keys, prepared = _prepare_all(frame, horizon, seasonality, counter)
    predictions = _predict_all(prepared, _model_fn(model), _check_level(level), workers)
    crossings = _crossing_frame(keys, prepared, predictions, float(threshold), direction, parse_duration(horizon))
    return _forecast_frame(keys, prepared, predictions), crossings


def backtest(
    frame: pl.DataFrame,
    model: Model = "auto",
    *,
    horizon: DurationLike,
    folds: int = 3,
    seasonality: Seasonality = "auto",
    counter: bool | None = None,
    workers: int = 1,
) -> pl.DataFrame:
    """Rolling-origin evaluation of ``model`` on every series, against seasonal-naive.

    The last ``folds × horizon`` of each (prepared) series is cut into ``folds`` consecutive windows; each is
    forecast from the history before it (seasonality detected on that history alone) and scored. Returns the
    series' columns, ``fold`` (0 = oldest), ``origin`` (the last time the model saw), ``model`` (the model
    that produced the forecast, e.g. ``ets_AAdA``), ``mase``, ``smape`` and the same two for seasonal-naive
    (``seasonal_naive_mase``, ``seasonal_naive_smape``). MASE is scaled by the training history's mean
    absolute seasonal difference (null when that is zero); sMAPE is in percent, 0–200; both count observed
    points only, not ones filled into gaps. Folds that would leave fewer than
    :data:`~analytics.forecast_models.MIN_TREND_POINTS` points of history, or that hold no observed point,
    are skipped.
    """
    if folds < 1:
        raise QueryError(f"folds must be at least 1, got {folds}")
    keys, prepared = _prepare_all(frame, horizon, seasonality, counter)
    cuts = [cut for p in prepared for cut in _folds(p, folds, seasonality)]
    predictions = _predict_all([cut for cut, *_ in cuts], _model_fn(model), 0.95, workers)
    rows = [_score(*cut, prediction) for cut, prediction in zip(cuts, predictions, strict=True)]
    body = pl.DataFrame(rows, schema=_BACKTEST_SCHEMA, orient="row")
    return _with_keys(keys, [cut.index for cut, *_ in cuts], body)


def mase(actual: FloatArray, predicted: FloatArray, history: FloatArray, period: int | None) -> float | None:
    """Mean absolute scaled error: the forecast's mean absolute error over the history's mean absolute
    seasonal (lag ``period``, else 1) difference. ``None`` when the history is too short or never changes."""
    lag = period or 1
    if len(history) <= lag:
        return None
    scale = float(np.mean(np.abs(history[lag:] - history[:-lag])))
    return float(np.mean(np.abs(actual - predicted)) / scale) if scale > 0 else None


def smape(actual: FloatArray, predicted: FloatArray) -> float:
    """Symmetric mean absolute percentage error, 0–200; a point where both are zero counts as exact."""
    denominator = np.abs(actual) + np.abs(predicted)
    terms = np.divide(
        2 * np.abs(actual - predicted), denominator, out=np.zeros_like(denominator), where=denominator > 0
    )
    return float(100 * np.mean(terms))


# ---- preparation ------------------------------------------------------------------------------------------
def _prepare_all(
    frame: pl.DataFrame, horizon: DurationLike, seasonality: Seasonality, counter: bool | None
) -> tuple[pl.DataFrame, list[_Prepared]]:
    span = parse_duration(horizon)
    if span <= timedelta():
        raise QueryError(f"the horizon must be positive, got {horizon!r}")
    series = split(frame)
    keys = key_columns(frame)
    key_frame = pl.DataFrame([s.key for s in series], schema={k: frame.schema[k] for k in keys}, orient="row")
    horizon_us = span // timedelta(microseconds=1)
    prepared = [_prepare(i, s, horizon_us, seasonality, counter) for i, s in enumerate(series)]
    return key_frame, [p for p in prepared if p is not None]


def _prepare(
    index: int, series: Series, horizon: int, seasonality: Seasonality, counter: bool | None
) -> _Prepared | None:
    as_counter = counter if counter is not None else is_counter(series.key.get("name"))
    values = reset_corrected(series.values) if as_counter else series.values
    ts = series.ts
    native = infer_step(ts)
    if native is None:
        return None
    step = _model_step(native, min(int(ts[-1] - ts[0]), _us(MAX_HISTORY)), horizon)
    recent = ts >= ts[-1] - _us(MAX_HISTORY)
    history = regularize(ts[recent], values[recent], step, max_gap=max(3, _us(MAX_GAP) // step))
    if as_counter:
        history = rate(history)
    if len(history.values) == 0:
        return None
    period = _period(history, seasonality)
    return _Prepared(index, history, period, max(1, math.ceil(horizon / step)), as_counter)


def _model_step(native: int, span: int, horizon: int) -> int:
    for step in (native, *(s for s in STEPS if s > native)):
        if span / step <= MAX_POINTS and horizon / step <= MAX_POINTS:
            return step
    return max(native, STEPS[-1], math.ceil(max(span, horizon) / MAX_POINTS))


def _period(history: Regular, seasonality: Seasonality) -> int | None:
    if seasonality is None or seasonality == "none":
        return None
    if seasonality == "auto":
        return detect_period(history.values, history.step, candidates=(DAY, WEEK))
    period = _us(parse_duration(seasonality))
    return period_steps(period, history.step, len(history.values))


def _us(span: timedelta) -> int:
    return span // timedelta(microseconds=1)


def _model_fn(model: Model) -> ModelFn:
    if callable(model):
        return model
    if model not in MODELS:
        raise QueryError(f"unknown forecasting model {model!r}; known: {', '.join(sorted(MODELS))}")
    return MODELS[model]


def _check_threshold(threshold: float) -> None:
    if not math.isfinite(threshold):
        raise QueryError(f"the threshold must be a finite number, got {threshold!r}")


def _check_level(level: float) -> float:
    if not 0 < level < 1:
        raise QueryError(f"level must be between 0 and 1 (exclusive), got {level}")
    return level


# ---- running models ---------------------------------------------------------------------------------------
def _predict_all(prepared: Sequence[_Prepared], model: ModelFn, level: float, workers: int) -> list[Prediction]:
    jobs = [(_model_input(p), p.period, p.steps) for p in prepared]
    if workers <= 1 or len(jobs) < 4 * workers:
        predictions = _predict_chunk(model, level, jobs)
    else:
        size = math.ceil(len(jobs) / (4 * workers))  # several chunks per worker evens out slow series
        chunks = [jobs[i : i + size] for i in range(0, len(jobs), size)]
        # forkserver, not fork: the caller may be a threaded server, and forking a threaded process is unsafe
        context = multiprocessing.get_context("forkserver")
        with ProcessPoolExecutor(workers, mp_context=context) as pool:
            done = pool.map(_predict_chunk, [model] * len(chunks), [level] * len(chunks), chunks)
            predictions = [prediction for chunk in done for prediction in chunk]
    return [_non_negative(pred) if p.counter else pred for p, pred in zip(prepared, predictions, strict=True)]


def _model_input(prepared: _Prepared) -> FloatArray:
    """The history a model sees: with a season, gaps are refilled along the cycle rather than straight across."""
    history = prepared.history
    if prepared.period is None or not history.filled.any():
        return history.values
    return fill_seasonally(history, prepared.period).values


def _predict_chunk(
    model: ModelFn, level: float, jobs: Sequence[tuple[FloatArray, int | None, int]]
) -> list[Prediction]:
    # One BLAS thread: the optimiser's linear algebra is tiny, and OpenBLAS waking threads for it made weekly
    # fits six times slower here; parallelism comes from worker processes instead.
    with threadpool_limits(1):
        return [model(values, period, steps, level) for values, period, steps in jobs]


def _non_negative(prediction: Prediction) -> Prediction:
    """A rate cannot be negative: clip the forecast and its interval at zero (which keeps them ordered)."""
    mean, lower, upper = (np.maximum(part, 0.0) for part in (prediction.mean, prediction.lower, prediction.upper))
    return Prediction(mean, lower, upper, prediction.model)


# ---- output -----------------------------------------------------------------------------------------------
_THRESHOLD_SCHEMA: dict[str, pl.DataType] = {
    "last_ts": _UTC,
    "last_value": pl.Float64(),
    "threshold": pl.Float64(),
    "direction": pl.String(),
    "crossing_ts": _UTC,
    "earliest_ts": _UTC,
    "latest_ts": _UTC,
    "crossing_s": pl.Float64(),
    "earliest_s": pl.Float64(),
    "latest_s": pl.Float64(),
    "message": pl.String(),
}
_BACKTEST_SCHEMA: dict[str, pl.DataType] = {
    "fold": pl.Int64(),
    "origin": _UTC,
    "model": pl.String(),
    "mase": pl.Float64(),
    "smape": pl.Float64(),
    "seasonal_naive_mase": pl.Float64(),
    "seasonal_naive_smape": pl.Float64(),
}


def _with_keys(keys: pl.DataFrame, indices: Sequence[int], body: pl.DataFrame) -> pl.DataFrame:
    """``body`` with the identifying columns of the series at ``indices`` (one per row) appended."""
    clash = set(keys.columns) & set(body.columns)
    if clash:
        raise QueryError(f"label columns {sorted(clash)} clash with the output's own columns")
    if not keys.width:
        return body
    return pl.concat([body, keys[list(indices)]], how="horizontal")


def _forecast_frame(
    keys: pl.DataFrame, prepared: Sequence[_Prepared], predictions: Sequence[Prediction]
) -> pl.DataFrame:
    indices = [p.index for p in prepared for _ in range(p.steps)]
    ahead = [p.history.end + p.history.step * np.arange(1, p.steps + 1, dtype=np.int64) for p in prepared]
    body = pl.DataFrame(
        {
            "ts": pl.Series(_concat_int(ahead)).cast(_UTC),
            "yhat": _concat([pred.mean for pred in predictions]),
            "yhat_lower": _concat([pred.lower for pred in predictions]),
            "yhat_upper": _concat([pred.upper for pred in predictions]),
        }
    )
    return _with_keys(keys, indices, body)


def _crossing_frame(
    keys: pl.DataFrame,
    prepared: Sequence[_Prepared],
    predictions: Sequence[Prediction],
    threshold: float,
    direction: Direction,
    horizon: timedelta,
) -> pl.DataFrame:
    rows = [
        _threshold_row(_subject(keys, p.index), p, pred, threshold, direction, horizon)
        for p, pred in zip(prepared, predictions, strict=True)
    ]
    return _with_keys(keys, [p.index for p in prepared], pl.DataFrame(rows, schema=_THRESHOLD_SCHEMA, orient="row"))


def _concat(parts: Sequence[FloatArray]) -> FloatArray:
    return np.concatenate(parts) if parts else np.empty(0, dtype=np.float64)


def _concat_int(parts: Sequence[np.ndarray]) -> np.ndarray:
    return np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)


# ---- threshold crossings ----------------------------------------------------------------------------------
def _subject(keys: pl.DataFrame, index: int) -> str:
    if "name" not in keys.columns:
        return "the series"
    key = keys.row(index, named=True)
    labels = {k: None if v is None else str(v) for k, v in key.items() if k != "name"}
    return series_key(str(key["name"]), labels).removesuffix("{}")


def _threshold_row(
    subject: str,
    prepared: _Prepared,
    prediction: Prediction,
    threshold: float,
    direction: Direction,
    horizon: timedelta,
) -> tuple[object, ...]:
    history = prepared.history
    last = float(history.values[-1])
    rising = direction == "rising" or (direction == "auto" and last <= threshold)
    times = history.end + history.step * np.arange(prepared.steps + 1, dtype=np.float64)
    early_path, late_path = (prediction.upper, prediction.lower) if rising else (prediction.lower, prediction.upper)
    crossings = [
        _first_crossing(times, np.concatenate(([last], path)), threshold, rising)
        for path in (prediction.mean, early_path, late_path)
    ]
    seconds = [None if t is None else (t - history.end) / US for t in crossings]
    message = _sentence(subject, rising, last, threshold, seconds, horizon)
    return (history.end, last, threshold, "rising" if rising else "falling", *crossings, *seconds, message)


def _first_crossing(times: FloatArray, path: FloatArray, threshold: float, rising: bool) -> int | None:
    """When ``path`` (values at ``times``, linear in between) first reaches ``threshold``; ``None`` if never."""
    reached = path >= threshold if rising else path <= threshold
    if not reached.any():
        return None
    i = int(np.argmax(reached))
    if i == 0:
        return int(times[0])
    before, after = path[i - 1], path[i]
    fraction = (threshold - before) / (after - before)
    return int(round(times[i - 1] + fraction * (times[i] - times[i - 1])))


def _sentence(
    subject: str, rising: bool, last: float, threshold: float, seconds: Sequence[float | None], horizon: timedelta
) -> str:
    crossing, earliest, latest = seconds
    limit = f"{threshold:g}"
    if (last >= threshold) if rising else (last <= threshold):
        return f"{subject} is already {'at or above' if rising else 'at or below'} {limit}"
    verb = "reach" if rising else "fall to"
    within = _human(horizon.total_seconds())
    if crossing is None:
        maybe = "" if earliest is None else f", but may in {_human(earliest)}"
        return f"{subject} is not expected to {verb} {limit} within {within}{maybe}"
    unit, size = _unit(crossing)
    early = crossing if earliest is None else earliest  # never None: that bound crosses no later than the forecast
    late = f"{latest / size:.1f}" if latest is not None else f"beyond {within}"
    verb = "reaches" if rising else "falls to"
    return f"{subject} {verb} {limit} in {crossing / size:.1f} {unit} ({early / size:.1f}–{late})"


def _unit(seconds: float) -> tuple[str, float]:
    if seconds < 2 * 3600:
        return "minutes", 60.0
    if seconds < 2 * 86400:
        return "hours", 3600.0
    return "days", 86400.0


def _human(seconds: float) -> str:
    """``seconds`` in the unit a person would use, to one decimal at most: ``90 minutes``, ``3.2 days``."""
    unit, size = _unit(seconds)
    return f"{seconds / size:.1f}".removesuffix(".0") + f" {unit}"


# ---- backtests --------------------------------------------------------------------------------------------
def _folds(
    prepared: _Prepared, folds: int, seasonality: Seasonality
) -> list[tuple[_Prepared, int, FloatArray, BoolArray]]:
    """(training series, fold number, actual values, which of them were observed) for each fold that leaves
    enough history and has an observed value to score."""
    history, steps = prepared.history, prepared.steps
    cuts = []
    for fold in range(folds):
        origin = len(history.values) - (folds - fold) * steps
        window = slice(origin, origin + steps)
        if origin < MIN_TREND_POINTS or history.filled[window].all():
            continue
        train = Regular(history.start, history.step, history.values[:origin], history.filled[:origin])
        cut = _Prepared(prepared.index, train, _period(train, seasonality), steps, prepared.counter)
        cuts.append((cut, fold, history.values[window], ~history.filled[window]))
    return cuts


def _score(
    cut: _Prepared, fold: int, actual: FloatArray, observed: BoolArray, prediction: Prediction
) -> tuple[object, ...]:
    """One backtest row; only observed values are scored, filled-in ones being guesses themselves."""
    history, period = _model_input(cut), cut.period
    baseline = seasonal_naive(history, period, cut.steps, 0.95).mean[observed]
    actual, predicted = actual[observed], prediction.mean[observed]
    return (
        fold,
        cut.history.end,
        prediction.model,
        mase(actual, predicted, history, period),
        smape(actual, predicted),
        mase(actual, baseline, history, period),
        smape(actual, baseline),
    )
