"""The evaluation harness: the window rule of the scorer, the windowed-Gaussian baseline, the generator's
anomalies and the host-trace set."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from analytics.evaluation import synthetic, traces
from analytics.evaluation.baselines import THRESHOLDS, WINDOWS, tune_windowed_gaussian, windowed_gaussian
from analytics.evaluation.detection import ALL, NONE, TRUTH_COLUMNS, Rule, detector_input, match, score
from analytics.evaluation.synthetic import Anomaly, Kind

T0 = datetime(2026, 1, 1, tzinfo=UTC)
MINUTE = timedelta(minutes=1)
RULE = Rule(tolerance=3 * MINUTE, probation=0.25)


def series(
    name: str,
    windows: list[tuple[int, int]] = (),  # type: ignore[assignment]
    *,
    kind: str = "spike",
    points: int = 40,
    missing: tuple[int, ...] = (),
    **labels: str | None,
) -> pl.DataFrame:
    """A labelled series of ``points`` minutes; ``windows`` as (first, last) minute, inclusive."""
    ts_us = np.array([int((T0 + i * MINUTE).timestamp() * 1e6) for i in range(points)])
    present = np.ones(points, dtype=bool)
    present[list(missing)] = False
    frame = synthetic.labelled_frame(
        ts_us, np.zeros(points), present, windows, {"name": name, **labels}, kind if windows else NONE
    )
    return frame


def flags(truth: pl.DataFrame, name: str, minutes: list[int]) -> pl.DataFrame:
    """The detector's output for ``truth``: points of series ``name`` at ``minutes`` flagged."""
    at = [T0 + m * MINUTE for m in minutes]
    flagged = (pl.col("name") == name) & pl.col("ts").is_in(at)
    return detector_input(truth).with_columns(anomaly_score=pl.lit(0.0), is_anomaly=flagged)


def overall(truth: pl.DataFrame, flagged: pl.DataFrame, rule: Rule = RULE) -> dict[str, float]:
    return score(truth, flagged, rule).filter(pl.col("kind") == ALL).row(0, named=True)


# ---- the window rule -----------------------------------------------------------------------------------
def test_a_flag_at_the_window_start_is_a_detection_without_delay() -> None:
    truth = series("a", [(20, 22)])
    row = overall(truth, flags(truth, "a", [20]))
    assert (row["windows"], row["detected"], row["false_positives"]) == (1, 1, 0)
    assert (row["precision"], row["recall"], row["f1"]) == (1.0, 1.0, 1.0)
    assert (row["mean_delay_points"], row["mean_delay_s"]) == (0.0, 0.0)


@pytest.mark.parametrize(("minute", "detected", "false_positives"), [(25, 1, 0), (26, 0, 1), (19, 0, 1)])
def test_the_tolerance_extends_a_window_only_after_its_end(minute: int, detected: int, false_positives: int) -> None:
    truth = series("a", [(20, 22)])  # counts up to 22 + 3 minutes, not a minute before 20
    row = overall(truth, flags(truth, "a", [minute]))
    assert (row["detected"], row["false_positives"]) == (detected, false_positives)


def test_the_delay_is_counted_from_the_window_start_to_the_first_flag() -> None:
    truth = series("a", [(20, 22)])
    matched = match(truth, flags(truth, "a", [24, 22, 23]), RULE).windows
    assert matched.select("detected", "delay_points", "delay_s").row(0) == (True, 2, 120.0)
    assert matched["detected_at"].item() == T0 + 22 * MINUTE


def test_a_run_of_false_flags_is_one_false_positive_and_a_broken_run_two() -> None:
    truth = series("a", [(30, 30)])
    assert overall(truth, flags(truth, "a", [12, 13, 14, 15]))["false_positives"] == 1
    assert overall(truth, flags(truth, "a", [12, 13, 15, 16]))["false_positives"] == 2


def test_a_run_reaching_into_a_window_detects_it_and_its_early_part_is_a_false_positive() -> None:
    truth = series("a", [(20, 22)])
    row = overall(truth, flags(truth, "a", [17, 18, 19, 20, 21]))
    assert (row["detected"], row["false_positives"], row["mean_delay_points"]) == (1, 1, 0.0)


def test_a_run_that_outlasts_the_tolerance_costs_one_false_positive() -> None:
    truth = series("a", [(20, 22)])
    row = overall(truth, flags(truth, "a", list(range(20, 35))))
    assert (row["detected"], row["false_positives"]) == (1, 1)
    assert row["precision"] == 0.5


def test_flags_in_the_probation_are_ignored() -> None:
    truth = series("a", [(20, 22)])  # 40 points, probation 25 %: up to minute 9.75
    assert overall(truth, flags(truth, "a", [0, 1, 5, 9]))["false_positives"] == 0
    assert overall(truth, flags(truth, "a", [10]))["false_positives"] == 1


def test_a_flag_in_two_windows_reach_belongs_to_the_later_window() -> None:
    truth = series("a", [(20, 20), (22, 24)])  # the first reaches to 23, the second starts at 22
    matched = match(truth, flags(truth, "a", [22]), RULE).windows.sort("window_start")
    assert matched["detected"].to_list() == [False, True]


def test_a_gap_labelled_as_missing_data_is_detected_on_the_point_after_it() -> None:
    truth = series("a", [(20, 25)], kind="missing_data", missing=tuple(range(20, 25)))
    matched = match(truth, flags(truth, "a", [25]), RULE).windows
    assert matched.select("detected", "delay_points", "delay_s").row(0) == (True, 0, 300.0)


def test_precision_per_kind_counts_the_false_positives_of_that_kinds_series_only() -> None:
    truth = pl.concat([series("a", [(20, 20)], kind="spike"), series("b", [(20, 30)], kind="level_shift"), series("c")])
    flagged = pl.concat(
        [flags(truth.filter(pl.col("name") == n), n, m) for n, m in [("a", [20, 35]), ("b", [20]), ("c", [12, 30])]]
    )
    scores = {row["kind"]: row for row in score(truth, flagged, RULE).to_dicts()}
    assert set(scores) == {"spike", "level_shift", ALL}  # series without anomalies have no row of their own
    assert (scores["spike"]["false_positives"], scores["spike"]["precision"]) == (1, 0.5)
    assert (scores["level_shift"]["false_positives"], scores["level_shift"]["precision"]) == (0, 1.0)
    assert (scores[ALL]["windows"], scores[ALL]["detected"], scores[ALL]["false_positives"]) == (2, 2, 3)
    assert scores[ALL]["precision"] == pytest.approx(2 / 5)
    assert scores[ALL]["f1"] == pytest.approx(2 * 0.4 * 1.0 / 1.4)


def test_nothing_flagged_scores_zero_and_no_delay() -> None:
    truth = series("a", [(20, 22)])
    row = overall(truth, flags(truth, "a", []))
    assert (row["detected"], row["precision"], row["recall"], row["f1"]) == (0, 0.0, 0.0, 0.0)
    assert row["mean_delay_points"] is None


def test_a_set_without_windows_still_reports_its_false_positives() -> None:
    truth = series("c")
    row = overall(truth, flags(truth, "c", [30]))
    assert (row["windows"], row["false_positives"], row["recall"]) == (0, 1, 0.0)


def test_series_are_told_apart_by_all_labels_including_missing_ones() -> None:
    truth = pl.concat(
        [series("cpu", [(20, 20)], mode=None), series("cpu", [(30, 30)], mode="user")], how="diagonal_relaxed"
    )
    flagged = detector_input(truth).with_columns(
        anomaly_score=pl.lit(0.0), is_anomaly=pl.col("mode").is_null() & (pl.col("ts") == T0 + 20 * MINUTE)
    )
    matched = match(truth, flagged, RULE).windows.sort("window_start")
    assert matched.select("mode", "detected").rows() == [(None, True), ("user", False)]


def test_flags_in_any_order_with_rows_missing_score_the_same() -> None:
    truth = series("a", [(20, 22)])
    flagged = flags(truth, "a", [21, 30])
    expected = score(truth, flagged, RULE)
    shuffled = flagged.sample(fraction=1.0, shuffle=True, seed=3).filter(pl.col("ts") != T0 + 5 * MINUTE)
    assert score(truth, shuffled, RULE).equals(expected)


def test_scores_can_be_broken_down_by_another_series_column() -> None:
    truth = pl.concat([series("a", [(20, 20)], base="flat"), series("b", [(20, 20)], base="daily")])
    by_base = score(truth, flags(truth, "a", [20]), RULE, by="base")
    assert dict(by_base.select("base", "recall").rows()) == {"daily": 0.0, "flat": 1.0, ALL: 0.5}


# ---- the baseline --------------------------------------------------------------------------------------
def gauge(values: list[float]) -> pl.DataFrame:
    ts = [T0 + i * MINUTE for i in range(len(values))]
    return pl.DataFrame({"name": "g", "ts": ts, "value": values}, schema_overrides={"ts": pl.Datetime("us", "UTC")})


def test_the_windowed_gaussian_flags_a_spike_from_its_past_only() -> None:
    noise = np.random.default_rng(1).normal(10, 1, 200)
    noise[150] += 12
    out = windowed_gaussian(gauge(noise.tolist()), window=50, threshold=5)
    assert out.schema["anomaly_score"] == pl.Float64 and out.schema["is_anomaly"] == pl.Boolean
    assert out.filter("is_anomaly")["ts"].to_list() == [T0 + 150 * MINUTE]
    assert out["anomaly_score"].min() >= 0 and out["anomaly_score"].max() <= 1
    assert out["anomaly_score"][150] > 0.9999


def test_the_windowed_gaussian_on_a_constant_history() -> None:
    out = windowed_gaussian(gauge([5.0] * 30 + [5.0, 6.0]), window=10, threshold=4)
    assert out["is_anomaly"].to_list() == [False] * 31 + [True]
    assert out["anomaly_score"].to_list()[-2:] == [0.0, 1.0]


def test_the_windowed_gaussian_needs_a_quarter_window_of_history() -> None:
    out = windowed_gaussian(gauge([1.0, 100.0, 1.0, 1.0, 500.0]), window=16, threshold=3)
    assert out["anomaly_score"].to_list()[:4] == [0.0] * 4
    assert out["is_anomaly"].to_list()[-1] is True


def test_the_windowed_gaussian_scores_each_series_on_its_own_in_time_order() -> None:
    a = gauge([1.0, 1.1, 0.9, 1.0, 1.05, 0.95, 1.0, 9.0]).with_columns(host=pl.lit("a"))
    b = gauge([100.0] * 8).with_columns(host=pl.lit("b"))
    out = windowed_gaussian(pl.concat([b, a]).reverse(), window=6, threshold=4)
    flagged = out.filter("is_anomaly").select("host", "value").rows()
    assert flagged == [("a", 9.0)]


def test_tuning_picks_the_grid_point_with_the_best_overall_f1() -> None:
    truth = synthetic.generate(5, series_per_kind=1, points=864, kinds=[Kind.SPIKE, Kind.LEVEL_SHIFT])
    rule = Rule(tolerance=12 * synthetic.STEP)
    tuned = tune_windowed_gaussian(truth, rule, windows=WINDOWS[:2], thresholds=THRESHOLDS[::2])
    grid = {
        (w, t): overall(truth, windowed_gaussian(detector_input(truth), window=w, threshold=t), rule)["f1"]
        for w in WINDOWS[:2]
        for t in THRESHOLDS[::2]
    }
    assert tuned.f1 == max(grid.values()) == grid[(tuned.window, tuned.threshold)]


# ---- the generator -------------------------------------------------------------------------------------
def test_every_kind_is_labelled_after_the_warm_up_in_series_of_that_kind() -> None:
    truth = synthetic.generate(2, series_per_kind=3, points=1152)
    windows = truth.filter("label").group_by("series").agg(pl.col("kind").unique(), pl.col("ts").min())
    assert set(truth.filter("label")["kind"]) == set(synthetic.KINDS)
    assert windows["kind"].list.len().max() == 1
    assert windows["ts"].min() >= synthetic.START + 0.55 * 1152 * synthetic.STEP - synthetic.STEP
    controls = truth.filter(pl.col("kind") == NONE)
    assert controls["series"].n_unique() == 3 and not controls["label"].any()
    assert list(truth.columns[-4:]) == list(TRUTH_COLUMNS)


def test_every_base_and_noise_shape_is_generated() -> None:
    truth = synthetic.generate(0, series_per_kind=8)
    assert set(truth["base"]) == set(synthetic.BASES)
    assert set(truth["noise"]) == set(synthetic.NOISES)
    assert truth["value"].is_finite().all()
    quantised = truth.filter(pl.col("noise") == "quantised")["value"]
    assert (quantised == quantised.round()).all()


def test_counters_never_decrease_and_are_named_as_counters() -> None:
    truth = synthetic.generate(4, series_per_kind=12)
    counters = truth.filter(pl.col("base") == "counter")
    assert set(counters["name"]) == {synthetic.COUNTER}
    assert counters.select((pl.col("value").diff().over("series", order_by="ts") >= 0).all()).item()
    assert set(counters["kind"]) <= {*synthetic.COUNTER_KINDS, NONE}


@pytest.mark.parametrize("variant", ["stop", "stuck", "zero"])
def test_missing_data_variants(variant: str) -> None:
    values, present = np.arange(100.0), np.ones(100, dtype=bool)
    first, last = synthetic.inject(
        Anomaly(Kind.MISSING_DATA, 10, variant=variant), values, present, 50, np.random.default_rng(0), sigma=1
    )
    if variant == "stop":
        assert (first, last) == (50, 60) and present.sum() == 90 and not present[50:60].any() and present[60]
    else:
        assert (first, last) == (50, 59) and present.all()
        assert (values[50:60] == (49.0 if variant == "stuck" else 0.0)).all() and values[60] == 60


def test_a_seasonality_break_without_the_seasonal_part_shifts_the_cycle_by_half() -> None:
    period = 24
    values = np.sin(2 * np.pi * np.arange(120) / period)
    broken = values.copy()
    synthetic.inject(
        Anomaly(Kind.SEASONALITY_BREAK, 12, variant="flatten"),
        broken,
        np.ones(120, bool),
        60,
        np.random.default_rng(0),
        sigma=1,
        period=period,
    )
    assert np.allclose(broken[60:72], -values[60:72]) and np.array_equal(broken[72:], values[72:])


def test_place_keeps_windows_apart_and_gives_up_when_there_is_no_room() -> None:
    rng = np.random.default_rng(0)
    starts = synthetic.place([10, 10, 10], 100, 400, rng, gap=20)
    assert len(starts) == 3 and all(b - a >= 30 for a, b in zip(starts, starts[1:], strict=False))
    assert synthetic.place([300], 100, 200, rng) == []


def test_generating_too_short_series_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 288"):
        synthetic.generate(0, points=100)


# ---- host traces ---------------------------------------------------------------------------------------
def test_counters_become_per_second_rates_across_a_reset() -> None:
    ts = [T0 + timedelta(seconds=s) for s in (0, 2, 4, 5)]
    trace = pl.DataFrame(
        {
            "name": ["x_total"] * 4 + ["g"] * 4,
            "ts": ts * 2,
            "value": [100.0, 120.0, 10.0, 13.0, 1.0, 2.0, 3.0, 4.0],
            "device": ["d"] * 4 + [None] * 4,
        },
        schema_overrides={"ts": pl.Datetime("us", "UTC")},
    )
    rates = traces.as_rates(trace)
    assert rates.filter(pl.col("name") == "x_per_second")["value"].to_list() == [10.0, 5.0, 3.0]
    assert rates.filter(pl.col("name") == "g")["value"].to_list() == [1.0, 2.0, 3.0, 4.0]


def test_resampling_averages_cpu_ratios_and_keeps_the_last_of_the_rest() -> None:
    ts = [T0 + timedelta(seconds=s) for s in range(5)]
    trace = pl.DataFrame(
        {
            "name": ["host_cpu_usage_ratio"] * 5 + ["host_load1"] * 5,
            "ts": ts * 2,
            "value": [0.1, 0.3, 0.5, 0.7, 0.9, 1.0, 2.0, 3.0, 4.0, 5.0],
        },
        schema_overrides={"ts": pl.Datetime("us", "UTC")},
    )
    slower = traces.resample(trace, 2)  # the fifth sample starts a run that never completes
    assert slower.select("name", "ts", "value").rows() == [
        ("host_cpu_usage_ratio", ts[1], pytest.approx(0.2)),
        ("host_cpu_usage_ratio", ts[3], pytest.approx(0.6)),
        ("host_load1", ts[1], 2.0),
        ("host_load1", ts[3], 4.0),
    ]
    assert traces.resample(trace, 1).equals(trace)


def test_keep_selects_the_recorded_series_by_name_and_labels() -> None:
    now = T0
    frame = pl.DataFrame(
        {
            "name": ["host_cpu_usage_ratio"] * 3 + ["host_load1", "host_load5"],
            "value": [0.5, 0.2, 0.1, 1.0, 2.0],
            "cpu": ["total", "total", "0", None, None],
            "mode": [None, "user", None, None, None],
            "host": ["h"] * 5,
            "ts": [now] * 5,
        }
    )
    kept = traces.keep(frame)
    assert kept.select("name", "mode", "value").rows() == [
        ("host_cpu_usage_ratio", None, 0.5),
        ("host_cpu_usage_ratio", "user", 0.2),
        ("host_load1", None, 1.0),
    ]
    assert "host" not in kept.columns


def test_spread_covers_bursts_and_falls_back_for_flat_series() -> None:
    bursty = np.array(([0.0] * 9 + [10.0]) * 10)  # p95 - p5 = 10, p99 - p1 = 10
    assert traces.spread(bursty) == pytest.approx(10 / 3.29)
    rare = np.array([0.0] * 97 + [5.0] * 3)  # p95 - p5 = 0, p99 - p1 = 5
    assert traces.spread(rare) == pytest.approx(5 / 4.65)
    assert traces.spread(np.array([0.0] * 999 + [1.0])) == pytest.approx(np.std([0.0] * 999 + [1.0]))
    assert traces.spread(np.array([200.0] * 10)) == 2.0
    assert traces.spread(np.zeros(10)) == 1.0
    assert traces.spread(np.random.default_rng(0).normal(0, 2, 100_000)) == pytest.approx(2, rel=0.02)


def test_the_trace_set_injects_into_copies_and_keeps_the_real_series_as_controls() -> None:
    labelled = traces.trace_dataset(3, copies_per_kind=2)
    clean = traces.as_rates(traces.resample(traces.load(), traces.EVERY))
    controls = labelled.filter(pl.col("kind") == NONE)
    assert controls["case"].n_unique() == clean.select(pl.exclude("ts", "value")).n_unique()
    columns = ["name", "cpu", "mode", "device", "ts", "value"]
    assert (
        controls.select(columns)
        .sort(columns, nulls_last=True)
        .equals(clean.select(columns).sort(columns, nulls_last=True))
    )
    cases = labelled.filter(pl.col("kind") != NONE).group_by("case").agg(pl.col("kind").first(), pl.col("label").any())
    assert cases["label"].all() and labelled["value"].is_finite().all()
    assert cases.filter(pl.col("kind") != Kind.SEASONALITY_BREAK).height == 2 * (len(synthetic.KINDS) - 1)


def _cycle_trace(path: Path, period: int = 40, cycles: int = 16) -> Path:
    """A recording (taken at 1 s) of a series with a clear cycle and one of noise: 'wave' and 'noise'."""
    rng = np.random.default_rng(3)
    t = np.arange(period * cycles)
    ts = [datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=int(i)) for i in t]
    wave = np.where(t % period < 8, 10.0, 0.0) + rng.normal(0, 0.1, t.size)  # a burst once per cycle
    noise = rng.normal(0, 1.0, t.size)
    frame = pl.DataFrame(
        {"name": ["wave"] * t.size + ["noise"] * t.size, "ts": ts + ts, "value": np.concatenate([wave, noise])}
    )
    frame.write_parquet(path, metadata={"interval_s": "1.0", "cycle_s": str(period)})
    return path


def test_seasonality_breaks_go_only_into_series_with_a_season(tmp_path: Path) -> None:
    path = _cycle_trace(tmp_path / "trace.parquet")
    labelled = traces.trace_dataset(0, copies_per_kind=6, every=1, path=path)
    kinds_by_name = labelled.filter(pl.col("kind") != NONE).group_by("name").agg(pl.col("kind").unique())
    kinds = {row["name"]: set(row["kind"]) for row in kinds_by_name.to_dicts()}
    assert Kind.SEASONALITY_BREAK in kinds["wave"] and Kind.SEASONALITY_BREAK not in kinds["noise"]
    assert Kind.SPIKE in kinds["noise"]  # the other kinds still draw from every series

    noise_only = tmp_path / "noise.parquet"
    metadata = {key: pl.read_parquet_metadata(path)[key] for key in ("interval_s", "cycle_s")}
    pl.read_parquet(path).filter(pl.col("name") == "noise").write_parquet(noise_only, metadata=metadata)
    without = set(traces.trace_dataset(0, copies_per_kind=6, every=1, path=noise_only)["kind"])
    assert Kind.SEASONALITY_BREAK not in without and Kind.SPIKE in without  # left out, not scored on noise


def test_the_shipped_traces_are_compact_separate_recordings_of_the_same_series() -> None:
    shipped = (traces.TRACE, traces.TUNE_TRACE, traces.QUIET_TRACE)
    assert sum(path.stat().st_size for path in shipped) <= 2_000_000
    scored, tuning, quiet = (traces.load(path) for path in shipped)
    for trace, minutes in ((scored, 89), (tuning, 59), (quiet, 89)):
        assert trace.select(pl.exclude("ts", "value")).n_unique() == len(traces.KEPT)
        assert trace["ts"].max() - trace["ts"].min() >= timedelta(minutes=minutes)
    assert tuning["ts"].min() > scored["ts"].max()  # the baseline is not tuned on the scored background
    assert quiet["ts"].min() > tuning["ts"].max()
    for path in shipped:
        assert traces.cycle_points(path) == 300 and traces.cycle_points(path, every=5) == 60
        assert {"interval_s", "cycle_s", "started", "phases"} <= pl.read_parquet_metadata(path).keys()


@pytest.mark.slow
def test_the_recorder_runs_the_host_collector_beside_the_workload(tmp_path: Path) -> None:
    out = tmp_path / "trace.parquet"
    trace = traces.record(out, minutes=0.06, interval=0.5, cycle_s=1.5)
    names = set(trace["name"])
    assert {"host_cpu_usage_ratio", "host_load1", "host_memory_used_bytes", "host_processes"} <= names
    assert names <= {name for name, _ in traces.KEPT}
    assert trace.group_by("name", "mode", "device", "cpu").len()["len"].max() >= 5
    phases = pl.read_parquet_metadata(out)["phases"]
    assert '"kind": "disk"' in phases and math.isclose(float(pl.read_parquet_metadata(out)["cycle_s"]), 1.5)


def test_cycle_evidence_tells_a_clear_cycle_from_noise(tmp_path: Path) -> None:
    path = _cycle_trace(tmp_path / "trace.parquet")

    evidence = {row["name"]: row for row in traces.cycle_evidence(path, every=1).to_dicts()}

    assert evidence["wave"]["acf_period"] > 0.9 and evidence["wave"]["oracle_found"] == 1.0
    assert abs(evidence["noise"]["acf_period"]) < 0.2 and evidence["noise"]["oracle_found"] < traces.SEASON_FOUND
