"""The anomaly detector: its contract, what it finds, what it leaves alone, and the pieces it is made of."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from analytics.anomaly import (
    OnlineDetector,
    anomaly_events,
    correlate,
    detect_anomalies,
    detect_multivariate,
    false_positive_rate,
    score_samples,
)
from analytics.anomaly.changepoint import ChangeStatistics, Cusum
from analytics.anomaly.combine import TailModel, fuse, score_from_p
from analytics.anomaly.extremes import _FLOOR, REFIT, WINDOW, Extremes
from analytics.anomaly.kmeans import fit
from analytics.anomaly.missing import Continuity
from analytics.anomaly.online import MIN_POINTS
from analytics.evaluation import synthetic, traces
from analytics.evaluation.detection import Rule, detector_input, match

START = datetime(2024, 1, 1, tzinfo=UTC)


def frame(values: np.ndarray, *, step_s: float = 60, name: str = "x_ratio", **labels: str) -> pl.DataFrame:
    """One series as a store frame: ``name``, ``ts``, ``value`` and the given labels."""
    micros = int(START.timestamp() * 1e6) + (np.arange(len(values)) * step_s * 1e6).astype(np.int64)
    return pl.DataFrame(
        {
            "name": name,
            "ts": pl.Series(micros).cast(pl.Datetime("us", "UTC")),
            "value": np.asarray(values, dtype=float),
            **labels,
        }
    )


def noise(size: int, seed: int = 0) -> np.ndarray:
    return 10 + np.random.default_rng(seed).normal(size=size)


def flagged(scored: pl.DataFrame) -> list[int]:
    return np.flatnonzero(scored["is_anomaly"].to_numpy()).tolist()


def episodes(scored: pl.DataFrame) -> list[int]:
    """Where runs of flags start (a spike stays in the k-means feature window for a few points more)."""
    flags = scored["is_anomaly"].to_numpy()
    return np.flatnonzero(flags & ~np.r_[False, flags[:-1]]).tolist()


# ---- the contract --------------------------------------------------------------------------------------
def test_output_is_the_input_plus_score_and_flag_in_the_same_order() -> None:
    given = pl.concat([frame(noise(300, 1), host="a"), frame(noise(300, 2), host="b")]).sample(
        fraction=1.0, shuffle=True, seed=3
    )
    scored = detect_anomalies(given)
    assert scored.columns == [*given.columns, "anomaly_score", "is_anomaly"]
    assert scored.drop("anomaly_score", "is_anomaly").equals(given)
    assert scored.schema["anomaly_score"] == pl.Float64 and scored.schema["is_anomaly"] == pl.Boolean
    scores = scored["anomaly_score"].drop_nulls()
    assert len(scores) == 600 and scores.min() >= 0 and scores.max() <= 1


def test_a_frame_of_ts_and_value_alone_is_one_series() -> None:
    values = noise(400)
    values[300] += 12
    scored = detect_anomalies(frame(values).select("ts", "value"))
    assert episodes(scored) == [300] and max(flagged(scored)) <= 307


def test_each_label_combination_is_its_own_series() -> None:
    quiet, loud = noise(400, 1), noise(400, 2) * 50
    both = pl.concat([frame(quiet, host="a"), frame(loud, host="b")])
    alone = detect_anomalies(frame(quiet, host="a"))
    together = detect_anomalies(both).filter(pl.col("host") == "a")
    assert together["anomaly_score"].to_list() == alone["anomaly_score"].to_list()


def test_missing_values_and_repeated_times_are_not_scored() -> None:
    given = frame(noise(200))
    given = pl.concat([given, given.tail(1)]).with_columns(
        value=pl.when(pl.int_range(pl.len()) == 100).then(None).otherwise(pl.col("value"))
    )
    scored = detect_anomalies(given)
    assert scored["anomaly_score"][100] is None and scored["anomaly_score"][200] is None
    assert scored["anomaly_score"].null_count() == 2
    assert not scored["is_anomaly"][100]


def test_short_empty_and_constant_series() -> None:
    assert detect_anomalies(frame(np.array([1.0, 2.0, 3.0])))["anomaly_score"].to_list() == [0.0, 0.0, 0.0]
    empty = detect_anomalies(frame(np.array([])))
    assert empty.height == 0 and "anomaly_score" in empty.columns
    constant = np.full(300, 5.0)
    constant[250] = 6.0
    assert episodes(detect_anomalies(frame(constant)))[0] == 250


def test_counters_are_scored_on_their_rate_and_resets_are_normal() -> None:
    rate = 5 + np.random.default_rng(4).normal(size=600) * 0.5
    rate[450:460] = 40  # a burst of requests
    total = np.cumsum(rate * 10)
    total[300:] -= total[299]  # the process restarted: the counter starts again from 0
    scored = detect_anomalies(frame(total, step_s=10, name="http_requests_total"))
    assert scored["anomaly_score"][0] is None
    hits = flagged(scored)
    assert hits and hits[0] == 450 and 300 not in hits


def test_sensitivity_names_a_false_positive_rate() -> None:
    assert false_positive_rate("low") == pytest.approx(1e-5)
    assert false_positive_rate() == pytest.approx(1e-4)
    assert false_positive_rate("high") == pytest.approx(1e-3)
    assert false_positive_rate(1.0) == pytest.approx(1e-2)
    for wrong in (0.0, 1.5, "extreme"):
        with pytest.raises(ValueError, match="sensitivity"):
            false_positive_rate(wrong)  # type: ignore[arg-type]


def test_higher_sensitivity_flags_a_superset_and_scores_do_not_change() -> None:
    values = noise(1500, 5)
    values[700] += 5
    values[1000:] += 1.5
    runs = {level: detect_anomalies(frame(values), sensitivity=level) for level in ("low", "medium", "high")}
    low, medium, high = (set(flagged(runs[level])) for level in ("low", "medium", "high"))
    assert low <= medium <= high and len(high) > len(low)
    assert runs["low"]["anomaly_score"].equals(runs["high"]["anomaly_score"])


# ---- what it finds -------------------------------------------------------------------------------------
def test_noise_alone_raises_few_false_alarms() -> None:
    rng = np.random.default_rng(6)
    series = [
        frame(rng.normal(size=2000), host="gaussian"),
        frame(rng.standard_t(4, size=2000), host="heavy"),
        frame(rng.gamma(2.0, size=2000), host="skewed"),
        frame(np.round(rng.normal(size=2000) * 2), host="integer"),
        frame(np.cumsum(rng.normal(size=2000)), host="walk"),
    ]
    scored = detect_anomalies(pl.concat(series))
    alarms = sum(len(episodes(part)) for part in scored.partition_by("host"))
    assert alarms <= 3  # 10,000 points at 1e-4 expect about one


@pytest.mark.parametrize(
    ("kind", "within"),
    [("spike", 1), ("level_shift", 10), ("variance", 25), ("trend", 60), ("stuck", 10)],
)
def test_finds_each_kind_of_anomaly_soon_after_it_starts(kind: str, within: int) -> None:
    values = noise(1200, 7)
    rng = np.random.default_rng(8)
    match kind:
        case "spike":
            values[900] -= 8
        case "level_shift":
            values[900:] += 5
        case "variance":
            values[900:] += rng.normal(size=300) * 4
        case "trend":
            values[900:] += np.arange(300) * 0.1
        case "stuck":
            values[900:1000] = values[899]
    hits = flagged(detect_anomalies(frame(values)))
    assert hits and 900 <= hits[0] < 900 + within, hits[:5]
    assert not [hit for hit in hits if hit < 900]


def test_a_long_stop_is_flagged_where_the_data_returns_but_short_gaps_are_not() -> None:
    given = frame(noise(1500, 9)).with_row_index("i")
    kept = given.filter(~pl.col("i").is_in([300, 301, 600, 900, 901, 902]) & ~pl.col("i").is_between(1100, 1160))
    scored = detect_anomalies(kept.drop("i"))
    times = scored.filter(pl.col("is_anomaly"))["ts"].to_list()
    assert times == [START + timedelta(minutes=1161)]


def test_a_broken_daily_cycle_is_flagged_and_the_cycle_is_not() -> None:
    step = 900  # 15 minutes: 96 points a day, six days
    hours = np.arange(6 * 96) * step / 3600
    values = 50 + 10 * np.sin(2 * np.pi * hours / 24) + np.random.default_rng(10).normal(size=len(hours))
    values[5 * 96 + 20 : 5 * 96 + 50] = 50  # on the sixth day the cycle stops for 7.5 hours
    hits = flagged(detect_anomalies(frame(values, step_s=step)))
    assert hits and 5 * 96 + 20 <= hits[0] < 5 * 96 + 30
    assert not [hit for hit in hits if hit < 5 * 96 + 20]


def test_a_bursty_series_is_flagged_beyond_its_range_and_not_for_its_bursts() -> None:
    # A CPU ratio idling near 0 with bursts to ~0.9: its bursts are normal, twice their height is not.
    rng = np.random.default_rng(4)
    values = np.abs(rng.normal(0, 0.01, 1500))
    for start in range(40, 1500, 60):
        values[start : start + 12] = rng.uniform(0.7, 0.95) + rng.normal(0, 0.02, 12)
    spiked = values.copy()
    spiked[1210] = 1.9  # inside no burst
    later = [i for i in episodes(detect_anomalies(frame(values))) if i >= 700]
    assert len(later) <= 3, later  # of 13 bursts: recurring bursts are learnt as normal
    assert 1210 in flagged(detect_anomalies(frame(spiked)))


def test_a_mostly_idle_series_is_not_flagged_for_every_blip_after_a_quiet_run() -> None:
    # Network traffic on a quiet host: mostly 0 B/s, small blips, now and then a burst of up to 10 MB/s.
    # After a run of zeros the residual scale shrinks towards 0, so it is floored by the values' spread.
    rng = np.random.default_rng(0)
    values = np.zeros(1500)
    blips = rng.random(1500) < 0.08
    values[blips] = rng.uniform(100, 1500, blips.sum())
    bursts = rng.random(1500) < 0.01
    values[bursts] = 10 ** rng.uniform(4, 7, bursts.sum())
    later = [i for i in episodes(detect_anomalies(frame(values, name="x_bytes_per_second"))) if i >= 500]
    assert len(later) <= 10, later  # without the floor: 82
    values[1210] = 1e9
    assert 1210 in flagged(detect_anomalies(frame(values, name="x_bytes_per_second")))


def sparse_bursts(seed: int, size: int = 1500) -> np.ndarray:
    """Disk writes on a quiet host: nothing, then every 5 minutes (60 points of 5 s) a flush of 8 points at a
    few discrete rates."""
    rng = np.random.default_rng(seed)
    values = np.zeros(size)
    for start in range(30, size, 60):
        values[start : start + 8] = rng.choice([3.4e6, 5.0e6, 6.7e6, 8.4e6], 8)
    return values


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_sparse_burst_that_recurs_stops_alarming_but_ten_times_its_height_does_not(seed: int) -> None:
    # The residual scale is the quiet phase's, so each flush is a residual of thousands of scales: without
    # the observed rates and the cycle profile that learns the flush, 1-9 of the last 17 flushes alarmed.
    values = sparse_bursts(seed)
    later = [i for i in episodes(detect_anomalies(frame(values, step_s=5, name="x_bytes_per_second"))) if i >= 500]
    assert len(later) <= 1, later
    values[1210] = 1e8  # between two flushes
    assert 1210 in flagged(detect_anomalies(frame(values, step_s=5, name="x_bytes_per_second")))


def recorded(path: Path, name: str, **labels: str | None) -> np.ndarray:
    """One recorded series at the collector's default interval (counters as rates); a label given as None
    must be absent."""
    rates = traces.as_rates(traces.resample(traces.load(path), traces.EVERY))
    chosen = [pl.col(key).is_null() if value is None else pl.col(key) == value for key, value in labels.items()]
    return rates.filter(pl.col("name") == name, *chosen).sort("ts")["value"].to_numpy().copy()


def recorded_disk_writes() -> np.ndarray:
    """The quiet host's recorded disk writes: idle, with flushes of a few megabytes now and then."""
    return recorded(traces.QUIET_TRACE, "host_disk_written_bytes_per_second")


def test_an_idle_hosts_disk_flushes_do_not_alarm_but_one_ten_times_their_peak_does() -> None:
    # Judged by their residuals, the flushes alarmed five times in the second half of the recording: each
    # sank deeper than the last, so the tail's observed rates never forgave them.
    values = recorded_disk_writes()
    half = len(values) // 2
    assert [
        i for i in episodes(detect_anomalies(frame(values, step_s=5, name="w_bytes_per_second"))) if i >= half
    ] == []
    at = half + int(np.argmin(values[half : half + 60]))  # an idle moment
    values[at] = 10 * values.max()
    assert at in flagged(detect_anomalies(frame(values, step_s=5, name="w_bytes_per_second")))


@pytest.mark.parametrize("seed", [2, 4])
def test_a_burst_beyond_a_sparse_series_range_keeps_its_residual_evidence(seed: int) -> None:
    # Bursts at random times and heights: the value tail alone, fitted to heights of one size, put ten times
    # the highest at p ~ 1e-5, just short of an alarm; the residual, kept beyond the range, flags it.
    rng, values, start = np.random.default_rng(seed), np.zeros(1500), 20
    while start < len(values):
        values[start : start + rng.integers(1, 9)] = rng.choice([3.4e6, 5.0e6, 6.7e6, 8.4e6])
        start += int(rng.integers(20, 120))
    later = [i for i in episodes(detect_anomalies(frame(values, step_s=5, name="x_bytes_per_second"))) if i >= 500]
    assert later == []
    values[1210] = 8.4e7
    assert 1210 in flagged(detect_anomalies(frame(values, step_s=5, name="x_bytes_per_second")))


def test_a_workload_cycle_shifted_half_a_period_is_flagged_in_its_window_and_only_there() -> None:
    # The quiet host's CPU under a 5-minute burst-and-idle workload whose bursts vary in height by a third:
    # point by point the shifted cycle is a few times the residuals every burst has (p ~ 1e-3); as a share of
    # the swing the cycle model expects, averaged over the burst, it is the whole swing. Not found before the
    # swing statistic.
    sets = traces.trace_dataset(1, copies_per_kind=40, path=traces.QUIET_TRACE)
    copy = sets.filter((pl.col("case") == "seasonality_break-35") & (pl.col("name") == "host_cpu_usage_ratio"))
    assert copy.select(pl.struct("mode", "cpu").n_unique()).item() == 1
    copy = copy.sort("ts")
    flags = detect_anomalies(copy.drop("label", "window_start", "window_end", "kind"))["is_anomaly"].to_numpy()
    label = copy["label"].to_numpy()
    assert flags[label].any()
    assert not flags[len(flags) // 2 :][~label[len(flags) // 2 :]].any()


def test_tail_model_takes_a_rarity_that_keeps_coming_back_at_its_rate_but_not_one_seen_twice() -> None:
    rows = slice(0, 1)

    def run(huge_at: set[int]) -> list[float]:
        model = TailModel((2.7, 0.55, 0.47))
        model.grow(1)
        rng, observed = np.random.default_rng(1), []
        for i in range(1500):
            x = np.array([4e4 if i in huge_at else rng.exponential() * 0.01])
            fitted = model.pvalue(rows, x)
            observed.append(float(model.observed(rows, fitted)[0]))
            model.update(rows, x, fitted)
        return observed

    recurring = run(set(range(0, 1500, 60)))
    assert max(recurring[i] for i in range(0, 180, 60)) < 1e-10  # the first three are as rare as fitted
    assert min(recurring[i] for i in range(300, 1500, 60)) > 1e-4  # the fit alone: below 1e-8 to the end
    twice = run({500, 900})
    assert twice[900] < 1e-10


def test_kmeans_yardstick_of_a_sparse_series_is_a_distance_it_travels() -> None:
    history = np.zeros((1, 128))
    history[0, 10:18], history[0, 70:78] = 5.0, 6.0
    vectors = np.diff(np.lib.stride_tricks.sliding_window_view(history, 7, axis=1), axis=2)
    _, yardstick = fit(vectors)
    distance = np.sqrt((vectors[0] ** 2).sum(axis=1))
    assert yardstick[0] >= 0.25 * distance.mean() > 0  # the median distance: 0.09, a tenth of the mean


def test_extremes_of_plateaus_pass_no_value_ten_times_their_height() -> None:
    extremes = Extremes()
    extremes.grow(1)
    for value in sparse_bursts(0, WINDOW + REFIT):
        judge(extremes, value)
    high, _ = judge(extremes, 1e8)
    assert high < 1e-6  # with the moment scale (6 x the mean excess): 3e-4


def test_a_ratio_idling_just_above_zero_finds_a_drop_far_below_its_idle_rare() -> None:
    # The quiet host's CPU ratio idles at 0.002-0.006 with bursts to 0.45: its low side lies within the
    # tail's floor, and the shape fitted to those few quanta of idle noise (0.18) made a drop to -0.5 pass
    # at p 7e-6 (to -1.0 at 2.5e-7); the low tail is exponential there.
    extremes = Extremes()
    extremes.grow(1)
    for value in recorded(traces.QUIET_TRACE, "host_cpu_usage_ratio", cpu="total", mode=None)[:600]:
        judge(extremes, value)
    assert extremes.extent[0, 0] < _FLOOR * extremes.spread[0]  # the case: a squeezed low side
    _, low = judge(extremes, -0.5)
    assert low < 1e-9
    high, _ = judge(extremes, 0.45)  # a burst as high as the recording's keeps the fitted high side
    assert high > 1e-3


def test_a_second_burst_of_noise_is_flagged_though_the_first_was_not_learnt_as_normal() -> None:
    # The windows the value tails are fitted on skip the points after an outlier; had they kept the first
    # burst, its fitted tail would be heavy enough to pass the second (0 flagged points for both seeds).
    for seed in (1, 2):
        rng = np.random.default_rng(seed)
        values = noise(1500, seed)
        values[900:960] += rng.normal(0, 15, 60)
        values[1150:1210] += rng.normal(0, 15, 60)
        second = [i for i in flagged(detect_anomalies(frame(values))) if 1150 <= i < 1230]
        assert len(second) >= 20, (seed, second)


@pytest.mark.parametrize("at", [649, 700])
def test_a_step_of_a_count_that_held_still_is_one_short_alarm(at: int) -> None:
    # The quiet host's process count moves between 64 and 66. Stepped up by 4, its smoothed mean found the
    # step only doubtful (p 2e-3 to 3e-4) and never settled it, while the values' window flagged every point
    # until it learnt the level: 144-157 points of alarm.
    values = recorded(traces.QUIET_TRACE, "host_processes")
    values[at:] += 4
    after = [i for i in flagged(detect_anomalies(frame(values, step_s=5, name="host_processes"))) if i >= at]
    assert after and after[0] == at
    assert after[-1] < at + 30, after


@pytest.mark.parametrize("seed", [2, 5])
def test_a_level_shift_of_a_bursty_series_is_one_short_alarm(seed: int) -> None:
    # Idle with busy stretches at random; the residual models follow the new level within a few points, so
    # the CUSUM never confirms it. The value windows must take the new level as normal once the smoothed
    # mean has kept it (without that, the alarm lasts 200-300 points: until the windows have learnt it).
    rng = np.random.default_rng(seed)
    size, at = 2000, 1500
    busy = np.repeat(rng.random(size // 12 + 1) < 0.25, 12)[:size]
    values = np.where(busy, 5 + rng.normal(0, 0.5, size), rng.normal(0, 0.05, size).clip(0))
    values[at:] += float(rng.choice([-1, 1])) * 8
    after = [i for i in flagged(detect_anomalies(frame(values))) if i >= at]
    assert after and after[0] < at + 3, after[:3]
    assert after[-1] < at + 30, after[-5:]


def test_one_spike_is_not_a_level_shift_however_quiet_the_series() -> None:
    # The level CUSUM's input is clipped, but a series of tiny residuals standardises the clipped spike
    # back to a huge step: the standardised step is clipped too.
    cusum, rows = Cusum(0.0, 1.5), np.arange(1)
    cusum.grow(1)
    for x in np.random.default_rng(3).normal(0, 0.1, 500):
        cusum.step(rows, np.array([x]))
    for _ in range(2):
        up, _ = cusum.step(rows, np.array([4.0]))
    assert up[0] > 1e-4  # unclipped: e^-79


def test_a_spike_among_the_points_of_a_level_shift_does_not_inflate_its_size() -> None:
    change, rows = ChangeStatistics(), np.arange(1)
    change.grow(1)
    for z in [*np.random.default_rng(4).normal(size=300), 60.0, 8.0, 8.5, 7.5, 8.0]:
        change.step(rows, np.array([z]))
    assert change.confirm_level(rows)[0] == pytest.approx(8.0)  # the EW mean of z it replaced: about 10


# ---- online == batch, state ----------------------------------------------------------------------------
def test_online_in_chunks_with_saved_state_equals_batch() -> None:
    values = noise(900, 11)
    values[500] += 9
    series = pl.concat([frame(values, host="a"), frame(np.cumsum(noise(900, 12)), name="y_total", host="b")])
    batch = detect_anomalies(series)
    detector = OnlineDetector()
    parts = []
    for lo, hi in ((0, 100), (100, 101), (101, 640), (640, 900)):
        chunk = series.filter(pl.int_range(pl.len()).over("host").is_between(lo, hi - 1))
        parts.append(detector.update(chunk))
        saved = io.BytesIO()
        np.savez(saved, **detector.state())
        saved.seek(0)
        detector = OnlineDetector.from_state(dict(np.load(saved)))
    assert len(detector) == 2
    online = pl.concat(parts).sort("host", "ts")
    expected = batch.sort("host", "ts")
    assert online["anomaly_score"].to_list() == expected["anomaly_score"].to_list()
    assert online["is_anomaly"].to_list() == expected["is_anomaly"].to_list()


def test_onset_marks_the_first_point_of_each_episode() -> None:
    values = noise(800, 13)
    values[400:403] += 15
    values[600] -= 15
    scored = OnlineDetector().update(frame(values))
    assert flagged(scored)[:3] == [400, 401, 402]
    assert np.flatnonzero(scored["anomaly_onset"].to_numpy()).tolist() == [400, 600]


# ---- what the running system records -------------------------------------------------------------------
def test_score_samples_and_events_for_the_running_system() -> None:
    values = noise(400, 14)
    values[300] += 12
    scored = OnlineDetector().update(frame(values, name="cpu_ratio", host="web1"))
    samples = score_samples(scored)
    assert samples.columns == ["name", "ts", "value", "metric", "host"]
    assert samples["name"].unique().to_list() == ["anomaly_score"]
    assert samples["metric"].unique().to_list() == ["cpu_ratio"] and samples.height == 400
    events = anomaly_events(scored)
    assert [(e.kind, e.attrs["series"], e.ts) for e in events] == [
        ("anomaly.detected", 'cpu_ratio{host="web1"}', START + timedelta(minutes=300))
    ]


# ---- multivariate and correlation ----------------------------------------------------------------------
def _host_frame(broken: bool) -> pl.DataFrame:
    rng = np.random.default_rng(15)
    load = rng.normal(size=600)
    cpu = 0.5 + 0.1 * load + 0.01 * rng.normal(size=600)
    memory = 2e9 + 1e8 * load + 1e7 * rng.normal(size=600)
    if broken:
        cpu[500] -= 0.25  # memory climbs while CPU falls: each value alone is plausible
        memory[500] += 3e8
    parts = [frame(cpu, step_s=10, name="cpu_ratio", host="a"), frame(memory, step_s=10, name="mem_bytes", host="a")]
    return pl.concat(parts)


def test_multivariate_flags_a_broken_relationship_and_names_the_metrics() -> None:
    scored = detect_multivariate(_host_frame(broken=True), seed=1)
    hits = scored.filter(pl.col("is_anomaly"))
    assert hits["ts"].to_list() == [START + timedelta(seconds=5000)]
    assert sorted(hits["top_metrics"][0].to_list()) == ["cpu_ratio{}", "mem_bytes{}"]
    assert scored["anomaly_score"].is_between(0, 1).all()
    assert detect_multivariate(_host_frame(broken=True), seed=1).equals(scored)
    assert not detect_multivariate(_host_frame(broken=False), seed=1)["is_anomaly"].any()


def test_correlate_ranks_the_series_that_moved_first() -> None:
    rng = np.random.default_rng(16)
    cause, effect, bystander = rng.normal(size=(3, 300))
    cause[250:] += 6
    effect[255:] += 8
    given = pl.concat([frame(cause, name="queue"), frame(effect, name="latency"), frame(bystander, name="temperature")])
    hints = correlate(given, START + timedelta(minutes=255), target={"name": "latency"})
    assert hints["name"].to_list() == ["queue", "temperature"]
    queue = hints.row(0, named=True)
    assert queue["direction"] == "up" and queue["lead_s"] == 300 and queue["corr"] > 0.5
    assert queue["score"] > 0.5 > hints["score"][1]


# ---- the pieces ----------------------------------------------------------------------------------------
def test_tail_model_p_values_match_an_exponential_tail() -> None:
    rng = np.random.default_rng(17)
    model = TailModel((1.0, 0.5, 0.4))
    model.grow(1)
    for x in rng.exponential(size=5000):
        model.update(slice(0, 1), np.array([x]), model.pvalue(slice(0, 1), np.array([x])))
    p = model.pvalue(slice(0, 1), np.array([np.log(100), np.log(1000)]))
    assert 1 / 300 < p[0] < 3 / 100 and 1 / 3000 < p[1] < 3 / 1000 and p[1] < p[0]


def judge(extremes: Extremes, value: float) -> tuple[float, float]:
    """The p-values of ``value`` being so high and so low for a one-series ``extremes``, which then keeps it."""
    rows = np.arange(1)
    high, low, judged = extremes.step(rows, np.array([value]))
    extremes.keep(rows, judged, np.ones(1, dtype=bool))
    return float(high[0]), float(low[0])


def test_extremes_judge_a_point_by_a_fit_it_did_not_teach() -> None:
    extremes = Extremes()
    extremes.grow(1)
    rng = np.random.default_rng(5)
    for value in rng.normal(size=WINDOW):
        judge(extremes, value)
    high, low = judge(extremes, 8.0)
    assert high < 1e-5 < low
    # A ramp's points go into the window, but until the next refit they are judged by the old fit.
    ramp = [judge(extremes, 8.0 + 0.01 * i)[0] for i in range(REFIT - 2)]
    assert max(ramp) < 1e-5
    _, low = judge(extremes, -8.0)
    assert low < 1e-6


def test_the_smoothed_mean_finds_a_busier_idle_that_no_single_value_betrays() -> None:
    # Idle near 0 with bursts to 0.75-0.95 at 5 % of points; then the idle rises to 0.5, below every burst.
    rng = np.random.default_rng(2)
    values = np.abs(rng.normal(0, 0.01, 4 * WINDOW + 60))
    bursts = rng.random(values.size) < 0.05
    values[bursts] = rng.uniform(0.75, 0.95, bursts.sum())
    values[4 * WINDOW :] += np.where(values[4 * WINDOW :] < 0.5, 0.5, 0.0)
    plain, smoothed = Extremes(), Extremes(0.125, 4)
    for extremes in (plain, smoothed):
        extremes.grow(1)
    p_plain, p_smoothed = [], []
    for value in values:
        p_plain.append(judge(plain, value)[0])
        p_smoothed.append(judge(smoothed, value)[0])
    before, after = slice(2 * WINDOW, 4 * WINDOW), slice(4 * WINDOW + 20, None)
    assert min(p_smoothed[before]) > 1e-4  # the bursts move the mean, and that is its normal range
    assert max(p_smoothed[after]) < 1e-4
    assert min(p_plain[after]) > 1e-2  # every value lies within the range the bursts span
    assert smoothed.count[0] == (values.size + 3) // 4  # every fourth mean is kept: the window reaches 4x back


def test_an_episode_holds_while_p_stays_near_the_threshold() -> None:
    detector = OnlineDetector("medium")  # flags p < 1e-4; an episode holds while p < HOLD x 1e-4
    detector.update(frame(noise(MIN_POINTS)))
    fed = iter([5e-5, 5e-4, 5e-5, 5e-3, 5e-4, 5e-5])
    detector._pvalue = lambda idx, ts, y, elapsed: np.array([next(fed)])  # type: ignore[method-assign]
    scored = detector.update(frame(noise(MIN_POINTS + 6))[MIN_POINTS:])
    assert scored["is_anomaly"].to_list() == [True, True, True, False, False, True]
    assert scored["anomaly_onset"].to_list() == [True, False, False, False, False, True]


def test_stuck_runs_are_rare_in_noise_but_learnt_where_a_series_idles() -> None:
    def smallest_stuck_p(values: np.ndarray) -> float:
        """The smallest p-value of a run over the last 200 points, after learning from the rest."""
        continuity, rows = Continuity(), np.arange(1)
        continuity.grow(1)
        p = [continuity.step(rows, np.array([value]), np.zeros(1))[1][0] for value in values]
        return min(p[-200:])

    rng = np.random.default_rng(6)
    idling = rng.normal(size=2000)
    for start in range(0, 2000, 50):
        idling[start : start + 8] = 0.0  # idle for 8 points every 50
    assert smallest_stuck_p(idling) > 1e-3
    stuck = rng.normal(size=2000)
    stuck[-100:-92] = stuck[-101]
    assert smallest_stuck_p(stuck) < 1e-5


def test_fuse_and_score_mapping() -> None:
    p = fuse([np.array([0.5, 1e-6]), np.array([1.0, 1e-3])], (0.5, 0.5))
    assert p.tolist() == pytest.approx([1.0, 2e-6])
    assert score_from_p(np.array([1.0, 1e-4, 1e-300])).tolist() == pytest.approx([0.0, 0.5, 300 / 304])


def test_kmeans_finds_two_clusters() -> None:
    rng = np.random.default_rng(18)
    vectors = np.concatenate([rng.normal(size=(60, 6)), rng.normal(size=(60, 6)) + 10])[None]
    centroids, median = fit(vectors)
    assert sorted(np.round(centroids[0].mean(axis=1)).tolist()) == [0.0, 10.0]
    assert 1.0 < median[0] < 4.0


def test_correlate_keeps_series_that_lack_a_label_the_target_has() -> None:
    from qwq_core.collector import samples as sample_frame

    end = START + timedelta(hours=50)
    rng = np.random.default_rng(3)
    rows = []
    for i in range(300):
        at = end - timedelta(minutes=10 * (300 - i))
        jump = 0.6 if 270 <= i < 280 else 0.0
        rows.append(
            sample_frame(
                at,
                [
                    ("cpu", {"host": "w"}, 0.3 + rng.normal(0, 0.02) + jump),  # no `app` label at all
                    ("latency", {"host": "w", "app": "shop"}, 0.1 + rng.normal(0, 0.005) + jump),
                ],
            )
        )
    hints = correlate(pl.concat(rows, how="diagonal_relaxed"), end - timedelta(minutes=300), target={"app": "shop"})
    assert hints["name"].to_list() == ["cpu"] and hints["corr"][0] > 0.9


def test_a_rate_idling_at_zero_for_minutes_is_not_stuck_but_a_frozen_reading_is() -> None:
    # The busy host's disk writes: at 0 a sixth of the time, once for 2.5 minutes. The run of repeats alarmed
    # as a stuck value for its last 2 minutes, until runs at a value the window holds often were let be.
    values = recorded(traces.TRACE, "host_disk_written_bytes_per_second")
    half = len(values) // 2
    idle = np.flatnonzero(values[half:] == 0) + half
    runs = np.split(idle, np.flatnonzero(np.diff(idle) > 1) + 1)
    longest = max(runs, key=len)
    assert len(longest) >= 24
    assert not set(flagged(detect_anomalies(frame(values, step_s=5, name="w_bytes_per_second")))) & set(longest)
    frozen = values.copy()
    busy = half + int(np.argmax(values[half : half + 100]))
    frozen[busy : busy + 30] = 0.5 * values[busy]
    found = flagged(detect_anomalies(frame(frozen, step_s=5, name="w_bytes_per_second")))
    assert set(found) & set(range(busy, busy + 30))


def test_spikes_of_two_or_three_points_are_found_by_their_pair_of_residuals() -> None:
    # 40 synthetic series with spikes of 6-10 sigma over several base shapes and noises: in heavy-tailed
    # noise neither point of a short spike is rare enough alone; two in a row on one side are. Before the
    # pair statistic 24 of the 45 spikes longer than a point were found.
    truth = synthetic.generate(6, series_per_kind=40, kinds=[synthetic.Kind.SPIKE], controls=0)
    windows = match(truth, detect_anomalies(detector_input(truth)), Rule(12 * synthetic.STEP)).windows
    longer = windows.filter(pl.col("window_end") > pl.col("window_start"))
    assert longer.height == 45
    assert longer["detected"].sum() >= 30
