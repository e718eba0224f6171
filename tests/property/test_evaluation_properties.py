"""Invariants of the evaluation harness: the scorer's extremes and monotonicity, the generator's labels and
reproducibility, and the baseline's use of the past only."""

from __future__ import annotations

import numpy as np
import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from analytics.evaluation import synthetic
from analytics.evaluation.baselines import windowed_gaussian
from analytics.evaluation.detection import ALL, Rule, detector_input, match, score
from analytics.evaluation.synthetic import Kind

RULE = Rule(tolerance=12 * synthetic.STEP)
seeds = st.integers(0, 2**16)
kinds = st.sampled_from(synthetic.KINDS)
FAST = settings(max_examples=15, deadline=None)


def labelled(seed: int, kind: Kind) -> pl.DataFrame:
    return synthetic.generate(seed, series_per_kind=2, points=864, kinds=[kind], controls=1)


def flagging(truth: pl.DataFrame, flags: pl.Series | pl.Expr) -> pl.DataFrame:
    return detector_input(truth).with_columns(anomaly_score=pl.lit(0.5), is_anomaly=flags)


def by_kind(scores: pl.DataFrame) -> dict[str, dict[str, float]]:
    return {row.pop("kind"): row for row in scores.to_dicts()}


@FAST
@given(seeds, kinds)
def test_flagging_exactly_the_labelled_points_is_perfect(seed: int, kind: Kind) -> None:
    truth = labelled(seed, kind)
    scores = by_kind(score(truth, flagging(truth, truth["label"]), RULE))
    assert scores[ALL]["windows"] >= 1
    for row in scores.values():
        assert (row["precision"], row["recall"], row["f1"]) == (1.0, 1.0, 1.0)
        assert row["median_delay_points"] == 0


@FAST
@given(seeds, kinds)
def test_flagging_nothing_detects_nothing(seed: int, kind: Kind) -> None:
    truth = labelled(seed, kind)
    row = by_kind(score(truth, flagging(truth, pl.lit(False)), RULE))[ALL]
    assert (row["detected"], row["false_positives"], row["recall"], row["f1"]) == (0, 0, 0.0, 0.0)


@FAST
@given(seeds, kinds)
def test_flagging_everything_detects_every_window_at_once(seed: int, kind: Kind) -> None:
    truth = labelled(seed, kind)
    matched = match(truth, flagging(truth, pl.lit(True)), RULE)
    assert matched.windows["detected"].all()
    assert (matched.windows["delay_points"] == 0).all()
    assert matched.false_positives.height >= 1  # the control series at least


@FAST
@given(seeds, kinds, st.integers(0, 2**16), st.floats(0.0, 0.05))
def test_more_flags_never_lower_recall_and_row_order_does_not_matter(
    seed: int, kind: Kind, flag_seed: int, rate: float
) -> None:
    truth = labelled(seed, kind)
    draws = np.random.default_rng(flag_seed).uniform(size=truth.height)
    fewer, more = flagging(truth, pl.Series(draws < rate)), flagging(truth, pl.Series(draws < 2 * rate))
    recall = {name: by_kind(score(truth, flags, RULE))[ALL]["recall"] for name, flags in [("f", fewer), ("m", more)]}
    assert recall["m"] >= recall["f"]
    shuffled = more.sample(fraction=1.0, shuffle=True, seed=flag_seed)
    assert score(truth, shuffled, RULE).equals(score(truth, more, RULE))


@FAST
@given(seeds)
def test_the_generator_is_reproducible(seed: int) -> None:
    first = synthetic.generate(seed, series_per_kind=1, points=576)
    assert first.equals(synthetic.generate(seed, series_per_kind=1, points=576))
    assert not first.equals(synthetic.generate(seed + 1, series_per_kind=1, points=576))


@FAST
@given(seeds, kinds)
def test_labels_are_the_points_inside_windows_after_the_warm_up(seed: int, kind: Kind) -> None:
    truth = labelled(seed, kind)
    inside = pl.col("ts").is_between(pl.col("window_start"), pl.col("window_end"))
    assert truth.select((pl.col("label") == inside.fill_null(False)).all()).item()
    assert set(truth.filter("label")["kind"]) == {kind}
    warm_up = synthetic.START + synthetic.WARMUP * 864 * synthetic.STEP
    assert truth.filter("label")["window_start"].min() >= warm_up


@settings(max_examples=60, deadline=None)
@given(seeds, kinds, st.integers(0, 100))
def test_an_injection_changes_the_series_only_where_it_is_labelled(seed: int, kind: Kind, offset: int) -> None:
    rng = np.random.default_rng(seed)
    period = 48
    clean = rng.normal(0, 1, 400) + 5 * np.sin(2 * np.pi * np.arange(400) / period)
    values, present = clean.copy(), np.ones(400, dtype=bool)
    anomaly = synthetic.draw(kind, rng, period=period)
    start = 100 + offset
    first, last = synthetic.inject(anomaly, values, present, start, rng, sigma=1.0, period=period)
    assert first == start and last >= first and present[last]
    changed = np.flatnonzero((values != clean) | ~present)
    assert changed.size > 0 and changed.min() >= first
    if kind in synthetic.PERMANENT:
        assert np.all(values[last + 1 :] != clean[last + 1 :])  # a new normal, after the window too
    else:
        assert changed.max() <= last
    if anomaly.variant == "stop":
        assert np.array_equal(np.flatnonzero(~present), np.arange(first, last))


@FAST
@given(seeds, st.integers(20, 150))
def test_the_baseline_scores_each_point_from_its_past_only(seed: int, cut: int) -> None:
    rng = np.random.default_rng(seed)
    values = rng.normal(0, 1, 200)
    later = values.copy()
    later[cut:] = rng.normal(50, 9, 200 - cut)
    ts = pl.datetime_range(synthetic.START, synthetic.START + 199 * synthetic.STEP, synthetic.STEP, eager=True)
    scored = [windowed_gaussian(pl.DataFrame({"name": "x", "ts": ts, "value": v}), window=30) for v in (values, later)]
    assert scored[0].head(cut).equals(scored[1].head(cut))
