"""Forecasting: series preparation, seasonality detection, the models, forecast, time_to_threshold, backtest."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest

from analytics.evaluation.forecasting import SHAPES, evaluate, synthetic_set
from analytics.forecast import (
    MAX_POINTS,
    backtest,
    forecast,
    forecast_and_crossings,
    mase,
    smape,
    time_to_threshold,
)
from analytics.forecast_models import auto, ets, naive, seasonal_naive, theil_sen
from analytics.seasonality import DAY, WEEK, detect_period, period_steps, seasonal_strength
from analytics.series import US, Regular, fill_seasonally, infer_step, rate, regularize, reset_corrected, split
from qwq_core.errors import QueryError

START = datetime(2024, 1, 1, tzinfo=UTC)
HOUR = 3600 * US


def frame_of(values: np.ndarray, *, step: timedelta = timedelta(hours=1), **labels: str | None) -> pl.DataFrame:
    """A store-style frame of one series sampled every ``step`` from START."""
    ts = [START + i * step for i in range(len(values))]
    frame = pl.DataFrame({"ts": ts, "value": np.asarray(values, dtype=np.float64)}).with_columns(
        pl.col("ts").cast(pl.Datetime("us", "UTC"))
    )
    return frame.with_columns(**{key: pl.lit(value, dtype=pl.String) for key, value in labels.items()})


def daily(days: int, *, noise: float = 1.0, trend: float = 0.0, seed: int = 0) -> np.ndarray:
    hours = np.arange(24 * days)
    rng = np.random.default_rng(seed)
    return 100 + trend * hours + 20 * np.sin(2 * np.pi * hours / 24) + rng.normal(0, noise, len(hours))


# ---- series ---------------------------------------------------------------------------------------------
def test_split_finds_each_series_in_order_and_drops_missing_values() -> None:
    frame = pl.concat(
        [
            frame_of(np.array([3.0, np.nan, 5.0]), name="m", host="b"),
            frame_of(np.array([1.0, 2.0]), name="m", host=None),
        ]
    ).with_columns(pl.when(pl.col("value") == 2.0).then(None).otherwise(pl.col("value")).alias("value"))
    series = split(frame.reverse())
    assert [s.key for s in series] == [{"name": "m", "host": None}, {"name": "m", "host": "b"}]
    assert series[1].values.tolist() == [3.0, 5.0]
    assert np.all(np.diff(series[1].ts) > 0)
    assert series[0].values.tolist() == [1.0]


def test_split_accepts_a_bare_ts_value_frame_and_rejects_others() -> None:
    (only,) = split(frame_of(np.arange(4.0)))
    assert only.key == {} and len(only.values) == 4
    with pytest.raises(QueryError, match="'ts'"):
        split(pl.DataFrame({"time": [1], "value": [1.0]}))
    with pytest.raises(QueryError, match="'value'"):
        split(frame_of(np.arange(2.0)).with_columns(pl.col("value").cast(pl.String)))


def test_infer_step_absorbs_jitter() -> None:
    ts = np.arange(20, dtype=np.int64) * 10 * US + np.tile([0, 3_000, -2_000, 1_000], 5)
    assert infer_step(ts) == 10 * US
    assert infer_step(np.array([5, 5], dtype=np.int64)) is None


def test_regularize_averages_cells_and_interpolates_short_gaps() -> None:
    ts = np.array([0, 1, 10, 30, 40], dtype=np.int64) * US  # cells 0, 0, 1, 3, 4 of 10 s
    regular = regularize(ts, np.array([1.0, 3.0, 4.0, 8.0, 10.0]), 10 * US, max_gap=1)
    assert regular.start == 0 and regular.step == 10 * US
    assert regular.values.tolist() == [2.0, 4.0, 6.0, 8.0, 10.0]
    assert regular.filled.tolist() == [False, False, True, False, False]
    assert regular.ts.tolist() == [0, 10 * US, 20 * US, 30 * US, 40 * US]


def test_fill_seasonally_follows_the_cycle_across_a_gap() -> None:
    cycle = np.array([0.0, 10.0, 0.0, -10.0])
    values = np.concatenate([cycle, cycle + 1, cycle + 2])  # the level rises by one a cycle
    ts = np.flatnonzero(~np.isin(np.arange(12), [5, 6, 7])).astype(np.int64)  # cells 5-7 missing
    linear = regularize(ts, values[ts], 1, max_gap=3)
    assert linear.values[5:8].tolist() == [1.25, 1.5, 1.75]  # straight across: the cycle is lost
    refilled = fill_seasonally(linear, 4)
    assert refilled.values.tolist() == pytest.approx(values.tolist())
    assert refilled.filled.tolist() == linear.filled.tolist()
    assert fill_seasonally(linear, 8).values.tolist() == linear.values.tolist()  # no cycle before the gap
    cut = Regular(0, 1, linear.values[:7], linear.filled[:7])  # a history ending inside the gap
    assert fill_seasonally(cut, 4).values[5:].tolist() == pytest.approx([11.0, 1.0])


def test_regularize_keeps_only_what_follows_a_long_gap() -> None:
    ts = np.array([0, 1, 2, 10, 11], dtype=np.int64) * HOUR
    regular = regularize(ts, np.array([1000.0, 1000, 1000, 5, 6]), HOUR, max_gap=3)
    assert regular.start == 10 * HOUR and regular.values.tolist() == [5.0, 6.0]


def test_reset_corrected_counter_and_its_rate() -> None:
    corrected = reset_corrected(np.array([1.0, 5.0, 9.0, 2.0, 4.0, 1.0]))
    assert corrected.tolist() == [1.0, 5.0, 9.0, 11.0, 13.0, 14.0]
    per_second = rate(Regular(0, 10 * US, corrected, np.array([False, False, False, True, False, False])))
    assert per_second.start == 10 * US and per_second.values.tolist() == pytest.approx([0.4, 0.4, 0.2, 0.2, 0.1])
    assert per_second.filled.tolist() == [False, False, True, True, False]


# ---- seasonality ----------------------------------------------------------------------------------------
def test_detects_a_daily_cycle_in_hourly_and_five_minute_data() -> None:
    assert detect_period(daily(7), HOUR) == 24
    minutes = np.arange(288 * 4)
    cycle = np.sin(2 * np.pi * minutes / 288) + np.random.default_rng(1).normal(0, 0.2, len(minutes))
    assert detect_period(cycle, 300 * US) == 288


def test_detects_a_weekly_pattern_over_a_daily_one() -> None:
    hours = np.arange(24 * 35)
    weekend = (hours // 24) % 7 >= 5
    values = np.where(weekend, 50.0, 100 + 30 * np.sin(2 * np.pi * hours / 24))
    values = values + np.random.default_rng(2).normal(0, 2, len(hours))
    assert detect_period(values, HOUR) == 168
    assert detect_period(values, HOUR, candidates=(DAY,)) == 24


@pytest.mark.parametrize(
    "values",
    [
        np.random.default_rng(3).normal(size=24 * 14),  # white noise
        np.cumsum(np.random.default_rng(4).normal(size=24 * 14)),  # random walk
        np.arange(24 * 14, dtype=np.float64),  # straight line
        np.full(24 * 14, 7.0),  # constant
        daily(1),  # a cycle, but not two of them
    ],
    ids=["noise", "random-walk", "trend", "constant", "too-short"],
)
def test_finds_no_season_where_there_is_none(values: np.ndarray) -> None:
    assert detect_period(values, HOUR) is None


def test_period_steps_needs_whole_steps_and_two_cycles() -> None:
    assert period_steps(DAY, HOUR, 48) == 24
    assert period_steps(DAY, 7 * US, 10**6) is None
    assert period_steps(DAY, HOUR, 47) is None
    assert period_steps(WEEK, DAY, 16) == 7  # two cycles and the ten points initialisation needs
    assert seasonal_strength(np.ones(10), 24) == 0.0


# ---- models ---------------------------------------------------------------------------------------------
def test_naive_and_seasonal_naive_repeat_the_past() -> None:
    history = np.array([1.0, 2.0, 3.0, 4.0, 1.0, 2.0, 3.0, 4.0])
    assert naive(history, None, 3, 0.95).mean.tolist() == [4.0, 4.0, 4.0]
    repeated = seasonal_naive(history, 4, 6, 0.95)
    assert repeated.mean.tolist() == [1.0, 2.0, 3.0, 4.0, 1.0, 2.0]
    assert repeated.upper.tolist() == repeated.mean.tolist()  # a perfect cycle: no uncertainty
    widening = naive(np.array([1.0, 3.0, 2.0, 5.0]), None, 4, 0.95)
    assert np.all(np.diff(widening.upper - widening.lower) > 0)


def test_theil_sen_ignores_an_outlier() -> None:
    history = np.array([0.0, 1.0, 2.0, 300.0, 4.0, 5.0, 6.0])
    prediction = theil_sen(history, None, 2, 0.95)
    assert prediction.mean.tolist() == pytest.approx([7.0, 8.0])
    assert prediction.model == "theil_sen"


def test_ets_follows_season_and_trend_with_widening_intervals() -> None:
    history = daily(7, trend=0.5)
    prediction = ets(history, 24, 48, 0.95)
    truth = daily(9, noise=0.0, trend=0.5)[-48:]
    assert prediction.model.startswith("ets_A") and prediction.model.endswith("A")
    assert np.mean(np.abs(prediction.mean - truth)) < 2.0
    width = prediction.upper - prediction.lower
    assert np.all(np.diff(width) >= -1e-9) and width[0] > 0


def test_auto_chooses_by_the_data_and_always_answers() -> None:
    assert auto(np.array([5.0]), None, 2, 0.95).model == "naive"
    assert auto(np.full(50, 3.0), 24, 2, 0.95).model == "naive"
    assert auto(np.arange(6.0), None, 2, 0.95).model == "theil_sen"
    assert auto(daily(7), 24, 24, 0.95).model.startswith("ets_")
    # ETS cannot initialise a 24-step season from 12 points: auto falls back instead of raising
    fallback = auto(np.random.default_rng(5).normal(size=12), 24, 5, 0.95)
    assert fallback.model == "naive" and fallback.is_finite()
    spiky = np.where(np.arange(200) % 50 == 0, 1e9, 1.0)
    assert auto(spiky, None, 10, 0.95).is_finite()


# ---- forecast -------------------------------------------------------------------------------------------
def test_forecast_shape_columns_and_time_axis() -> None:
    frame = pl.concat([frame_of(daily(7, seed=i), name="load", host=f"h{i}") for i in range(2)])
    result = forecast(frame, "24h")
    assert result.columns == ["ts", "yhat", "yhat_lower", "yhat_upper", "name", "host"]
    assert result.schema["ts"] == pl.Datetime("us", "UTC")
    assert result.height == 48
    first = result.filter(pl.col("host") == "h0")
    assert first["ts"][0] == START + timedelta(hours=168) and first["ts"][-1] == START + timedelta(hours=191)
    assert (first["ts"].diff().drop_nulls() == timedelta(hours=1)).all()


def test_forecast_intervals_cover_the_truth_at_about_their_level() -> None:
    seeds = range(12)
    frame = pl.concat([frame_of(daily(8, noise=3.0, seed=s)[:168], series=str(s)) for s in seeds])
    result = forecast(frame, "24h").sort("series", "ts")
    truth = np.concatenate([daily(8, noise=3.0, seed=s)[168:] for s in sorted(seeds, key=str)])
    inside = (result["yhat_lower"].to_numpy() <= truth) & (truth <= result["yhat_upper"].to_numpy())
    assert 0.85 <= inside.mean() <= 1.0
    assert np.mean(np.abs(result["yhat"].to_numpy() - truth)) < 4.0  # noise MAE alone is 2.4


def test_forecast_of_a_counter_is_its_rate_through_resets() -> None:
    total = np.cumsum(np.full(100, 5.0 * 3600))  # 5 per second
    total[60:] -= total[59]  # reset after the 60th hour
    frame = frame_of(total, name="requests_total")
    result = forecast(frame, "6h")
    assert result["yhat"].to_numpy() == pytest.approx(np.full(6, 5.0))
    assert (result["yhat_lower"] >= 0).all()
    as_gauge = forecast(frame, "6h", counter=False)
    assert as_gauge["yhat"][0] > 1000


def test_forecast_bridges_short_gaps_and_restarts_after_long_ones() -> None:
    values = daily(7)
    short = frame_of(values).filter(~pl.int_range(pl.len()).is_between(100, 119))  # 20 hours
    bridged = forecast(short, "24h", seasonality="1d")
    assert bridged.height == 24
    assert np.mean(np.abs(bridged["yhat"].to_numpy() - daily(8, noise=0.0)[168:])) < 2.0
    level_shift = np.concatenate([np.full(100, 1000.0), np.full(30, np.nan), np.full(50, 10.0)])
    long_gap = frame_of(level_shift)  # 30 hours without a value: longer than a day
    result = forecast(long_gap, "5h")
    assert result["yhat"].to_numpy() == pytest.approx(np.full(5, 10.0))


def test_forecast_coarsens_finely_sampled_history() -> None:
    values = np.sin(np.arange(2 * 8640) * 2 * np.pi / 8640) + 5  # two days at 10 s
    result = forecast(frame_of(values, step=timedelta(seconds=10)), "1h")
    spacing = result["ts"].diff().drop_nulls().unique().to_list()
    assert len(spacing) == 1 and spacing[0] >= timedelta(seconds=2 * 86400 / MAX_POINTS)
    assert result.height == math.ceil(3600 / spacing[0].total_seconds())


def test_forecast_leaves_out_series_it_cannot_forecast_and_handles_empty_frames() -> None:
    frame = pl.concat([frame_of(np.array([1.0]), name="m", host="one"), frame_of(np.arange(5.0), name="m", host="x")])
    assert forecast(frame, "2h")["host"].unique().to_list() == ["x"]
    empty = forecast(frame.clear(), "2h")
    assert empty.height == 0 and empty.columns == ["ts", "yhat", "yhat_lower", "yhat_upper", "name", "host"]
    bare = forecast(frame_of(np.arange(12.0)), "3h")
    assert bare.columns == ["ts", "yhat", "yhat_lower", "yhat_upper"] and bare.height == 3


def test_forecast_seasonality_can_be_forced_or_disabled() -> None:
    frame = frame_of(daily(3, noise=0.1))
    with_season = forecast(frame, "12h", seasonality="1d")
    without = forecast(frame, "12h", seasonality=None)
    truth = daily(4, noise=0.0)[72:84]
    assert np.mean(np.abs(with_season["yhat"].to_numpy() - truth)) < 1.0
    assert np.mean(np.abs(without["yhat"].to_numpy() - truth)) > 5.0


def test_forecast_rejects_bad_arguments() -> None:
    frame = frame_of(np.arange(12.0))
    with pytest.raises(QueryError, match="horizon"):
        forecast(frame, "0s")
    with pytest.raises(QueryError, match="duration"):
        forecast(frame, "soon")
    with pytest.raises(QueryError, match="level"):
        forecast(frame, "1h", level=1.5)
    with pytest.raises(QueryError, match="model"):
        forecast(frame, "1h", model="prophet")
    with pytest.raises(QueryError, match="threshold"):
        time_to_threshold(frame, float("nan"), horizon="1h")


@pytest.mark.slow
def test_forecast_in_worker_processes_matches_one_process() -> None:
    frame = pl.concat([frame_of(daily(7, seed=i), series=str(i)) for i in range(10)])
    assert forecast(frame, "6h", workers=2).equals(forecast(frame, "6h"))


# ---- time to threshold ----------------------------------------------------------------------------------
def test_time_to_threshold_of_a_filling_disk() -> None:
    usage = 0.3 + 0.01 * np.arange(48) + np.random.default_rng(6).normal(0, 0.001, 48)  # +1 %/h
    frame = frame_of(usage, name="disk_used_ratio", mountpoint="/")
    (row,) = time_to_threshold(frame, 0.9, horizon="7d").iter_rows(named=True)
    assert row["direction"] == "rising" and row["last_ts"] == START + timedelta(hours=47)
    assert row["crossing_s"] == pytest.approx(-(row["last_value"] - 0.9) / 0.01 * 3600, rel=0.05)
    assert row["earliest_s"] <= row["crossing_s"] <= row["latest_s"]
    assert row["crossing_ts"] == row["last_ts"] + timedelta(seconds=row["crossing_s"])
    assert row["message"].startswith('disk_used_ratio{mountpoint="/"} reaches 0.9 in ')
    assert " hours (" in row["message"] and row["mountpoint"] == "/"


def test_forecast_and_crossings_from_one_fit_equal_the_two_calls() -> None:
    frame = pl.concat(
        [
            frame_of(0.3 + 0.01 * np.arange(48), name="disk_used_ratio", mountpoint="/"),
            frame_of(daily(4, seed=2) / 100, name="disk_used_ratio", mountpoint="/var"),
        ]
    )
    path, crossings = forecast_and_crossings(frame, 0.9, horizon="2d")
    assert path.equals(forecast(frame, "2d"))
    assert crossings.equals(time_to_threshold(frame, 0.9, horizon="2d"))


def test_time_to_threshold_falling_unreached_and_already_reached() -> None:
    free = frame_of(1000.0 - 10 * np.arange(30), name="free_bytes")
    result = time_to_threshold(free, 500.0, horizon="3d", seasonality=None)
    assert result["direction"].to_list() == ["falling"]
    assert result["crossing_s"][0] == pytest.approx(21 * 3600, rel=0.05)
    assert "falls to 500 in" in result["message"][0]
    never = time_to_threshold(free, 500.0, horizon="2h", seasonality=None)
    assert never["crossing_ts"][0] is None and never["crossing_s"][0] is None
    assert "is not expected to fall to 500 within 2 hours" in never["message"][0]
    already = time_to_threshold(free, 700.0, horizon="2h", direction="rising")
    assert already["crossing_s"][0] == 0 and "already at or above 700" in already["message"][0]


# ---- backtest -------------------------------------------------------------------------------------------
def test_mase_and_smape() -> None:
    history = np.array([1.0, 2.0, 1.0, 2.0])
    assert mase(np.array([2.0, 3.0]), np.array([1.0, 1.0]), history, None) == pytest.approx(1.5)
    assert mase(np.array([1.0]), np.array([1.0]), np.ones(5), None) is None
    assert smape(np.array([0.0, 1.0]), np.array([0.0, 3.0])) == pytest.approx(50.0)


def test_backtest_scores_each_fold_against_seasonal_naive() -> None:
    frame = frame_of(daily(10, trend=0.3), name="load")
    scores = backtest(frame, horizon="24h", folds=3)
    assert scores["fold"].to_list() == [0, 1, 2]
    assert scores["origin"].to_list() == [START + timedelta(hours=h) for h in (167, 191, 215)]
    assert (scores["mase"] < scores["seasonal_naive_mase"]).all()
    baseline = backtest(frame, "seasonal_naive", horizon="24h", folds=3)
    assert baseline["mase"].to_list() == baseline["seasonal_naive_mase"].to_list()
    with pytest.raises(QueryError, match="folds"):
        backtest(frame, horizon="1h", folds=0)


def test_backtest_skips_folds_without_enough_history() -> None:
    assert backtest(frame_of(np.arange(10.0)), horizon="3h", folds=5)["fold"].to_list() == [3, 4]


def test_evaluation_set_and_summary() -> None:
    frame = synthetic_set(seed=1, per_shape=1, days=9, shapes=("daily", "gaps", "counter"))
    assert frame.select("shape").unique().height == 3 and frame["name"].str.ends_with("_total").sum() > 0
    assert frame.filter(pl.col("shape") == "gaps").height < frame.filter(pl.col("shape") == "daily").height
    summary = evaluate(frame, folds=2)
    assert summary["shape"].to_list() == ["counter", "daily", "gaps", "all"]
    assert (summary["auto_mase"] < summary["naive_mase"]).all()
    assert set(SHAPES) >= {"daily", "weekly", "counter"}
