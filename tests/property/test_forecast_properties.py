"""Invariants of forecasting: the requested horizon, ordered finite intervals, ordered crossings, sane helpers."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from analytics.forecast import forecast, mase, smape, time_to_threshold
from analytics.seasonality import detect_period
from analytics.series import US, infer_step, regularize, reset_corrected

START = datetime(2024, 1, 1, tzinfo=UTC)  # on the hour: every step below divides it
values = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)
FORECASTS = settings(max_examples=40, deadline=None)


@dataclass(frozen=True)
class Case:
    frame: pl.DataFrame
    step: int
    horizon: int
    counter: bool


@st.composite
def cases(draw: st.DrawFn) -> Case:
    """A series of up to 80 samples on a grid, some dropped, a gauge or a counter, and a horizon in seconds."""
    step = draw(st.sampled_from([10, 60, 300, 3600]))
    counter = draw(st.booleans())
    points = draw(st.lists(values.map(abs) if counter else values, min_size=1, max_size=80))
    keep = draw(st.lists(st.booleans(), min_size=len(points), max_size=len(points)))
    keep[0] = keep[-1] = True
    ts = [START + timedelta(seconds=i * step) for i, kept in enumerate(keep) if kept]
    kept = [value for value, k in zip(points, keep, strict=True) if k]
    frame = pl.DataFrame({"ts": ts, "value": kept, "name": "m_total" if counter else "m", "host": "a"})
    frame = frame.with_columns(pl.col("ts").cast(pl.Datetime("us", "UTC")))
    horizon = draw(st.integers(1, 400 * step))
    return Case(frame, step, horizon, counter)


def _step_of(case: Case) -> int | None:
    return infer_step(case.frame["ts"].dt.epoch("us").to_numpy())


@FORECASTS
@given(cases())
def test_forecasts_have_the_requested_horizon_and_ordered_finite_bounds(case: Case) -> None:
    result = forecast(case.frame, case.horizon)
    step = _step_of(case)
    if step is None or (case.counter and result.height == 0):
        return  # a single sample, or a counter with no interval left to take a rate over
    assert result.height == math.ceil(case.horizon * US / step)
    last = case.frame["ts"].dt.epoch("us").max()
    assert result["ts"].dt.epoch("us").to_list() == [(last // step + k) * step for k in range(1, result.height + 1)]
    bounds = result.select("yhat_lower", "yhat", "yhat_upper").to_numpy()
    assert np.isfinite(bounds).all()
    assert (bounds[:, 0] <= bounds[:, 1]).all() and (bounds[:, 1] <= bounds[:, 2]).all()
    if case.counter:
        assert (bounds[:, 0] >= 0).all()


@FORECASTS
@given(cases(), values)
def test_crossings_are_ordered_and_within_the_horizon(case: Case, threshold: float) -> None:
    result = time_to_threshold(case.frame, threshold, horizon=case.horizon)
    for row in result.iter_rows(named=True):
        crossing, earliest, latest = row["crossing_s"], row["earliest_s"], row["latest_s"]
        for seconds in (crossing, earliest, latest):
            assert seconds is None or 0 <= seconds <= case.horizon + case.step * 2
        if crossing is not None:
            assert earliest is not None and earliest <= crossing
            assert latest is None or crossing <= latest
            moment = row["last_ts"] + timedelta(seconds=crossing)
            assert abs((row["crossing_ts"] - moment).total_seconds()) < 1e-3
        if latest is not None:
            assert crossing is not None
        reached = row["last_value"] >= threshold if row["direction"] == "rising" else row["last_value"] <= threshold
        if reached:
            assert crossing == 0 and "already" in row["message"]
        else:
            assert "already" not in row["message"]


@given(st.lists(st.tuples(st.integers(0, 10_000), values), min_size=1, max_size=60), st.integers(1, 500))
def test_regularize_stays_on_the_grid_and_within_the_data(samples: list[tuple[int, float]], step: int) -> None:
    ts = np.array([t for t, _ in samples], dtype=np.int64)
    data = np.array([v for _, v in samples])
    regular = regularize(ts, data, step, max_gap=3)
    assert regular.start % step == 0 and regular.end == ts.max() // step * step
    assert len(regular.values) >= 1
    assert (regular.values >= data.min() - 1e-6 * abs(data.min())).all()
    assert (regular.values <= data.max() + 1e-6 * abs(data.max())).all()


@given(st.lists(st.floats(0, 1e9, allow_nan=False), min_size=1, max_size=50))
def test_reset_corrected_counters_never_decrease(samples: list[float]) -> None:
    corrected = reset_corrected(np.array(samples))
    assert (np.diff(corrected) >= 0).all()
    if (np.diff(samples) >= 0).all():
        assert corrected.tolist() == samples


@given(st.lists(st.tuples(values, values), min_size=1, max_size=30))
def test_error_measures_are_bounded(pairs: list[tuple[float, float]]) -> None:
    actual, predicted = np.array(pairs).T
    assert 0 <= smape(actual, predicted) <= 200
    score = mase(actual, predicted, np.concatenate([actual, predicted]), None)
    assert score is None or score >= 0


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**32 - 1), st.floats(0.01, 100), st.floats(-1e3, 1e3))
def test_detected_period_ignores_scale_and_offset(seed: int, scale: float, offset: float) -> None:
    rng = np.random.default_rng(seed)
    hours = np.arange(24 * 14)
    series = rng.uniform(0, 2) * np.sin(2 * np.pi * hours / 24) + rng.normal(0, rng.uniform(0.1, 3), len(hours))
    assert detect_period(series * scale + offset, 3600 * US) == detect_period(series, 3600 * US)
