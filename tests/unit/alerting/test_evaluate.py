"""Rule evaluation over sample frames: every aggregation, grouping, matcher and condition kind."""

from __future__ import annotations

import importlib.util
from datetime import UTC, datetime, timedelta
from typing import Any

import polars as pl
import pytest

from analytics.alerting.evaluate import Evaluation, evaluate, plan_queries
from analytics.alerting.rules import RuleSpec

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def samples(
    name: str, values: list[float | None], step: float = 10.0, end: datetime = NOW, **labels: str
) -> pl.DataFrame:
    """One series: ``values`` oldest first, the last one at ``end``, ``step`` seconds apart."""
    count = len(values)
    times = [end - timedelta(seconds=step * (count - 1 - i)) for i in range(count)]
    return pl.DataFrame(
        {"ts": times, "value": values, "name": [name] * count, **{k: [v] * count for k, v in labels.items()}},
        schema_overrides={"ts": pl.Datetime("us", "UTC"), "value": pl.Float64},
    )


def frame(*parts: pl.DataFrame) -> pl.DataFrame:
    return pl.concat(parts, how="diagonal_relaxed")


def rule(metric: str, condition: dict[str, Any], name: str = "r", **query: Any) -> RuleSpec:
    return RuleSpec.model_validate({"name": name, "query": {"metric": metric, **query}, "condition": condition})


def run(rules: list[RuleSpec], data: pl.DataFrame, now: datetime = NOW) -> Evaluation:
    """Evaluate with every planned query answered from ``data``, as the store would (selector applied)."""
    from qwq_core.selectors import Selector

    frames = {text: Selector.parse(text).filter(data) for text in plan_queries(rules)}
    return evaluate(rules, frames, now)


def values(evaluation: Evaluation) -> dict[tuple[str, tuple[tuple[str, str], ...]], tuple[float | None, bool]]:
    """(rule name, sorted labels) → (value, holds) for every row."""
    return {(r.rule.name, tuple(sorted(r.labels.items()))): (r.value, r.holds) for r in evaluation.results(holds=None)}


ABOVE_ZERO = {"kind": "above", "threshold": 0}


@pytest.mark.parametrize(
    ("agg", "expected"),
    [
        ("avg", 2.5),
        ("min", 1.0),
        ("max", 4.0),
        ("sum", 10.0),
        ("count", 4.0),
        ("last", 4.0),
        ("delta", 3.0),
        ("deriv", 0.1),  # 3 over 30 s
        ("increase", 3.0),
        ("rate", 0.1),
    ],
)
def test_each_aggregation_reduces_the_window(agg: str, expected: float) -> None:
    data = samples("m", [1, 2, 3, 4], host="a")
    (result,) = run([rule("m", ABOVE_ZERO, agg=agg)], data).results(holds=None)
    assert result.value == pytest.approx(expected)
    assert result.labels == {"host": "a"}


def test_counter_resets_count_as_increase() -> None:
    data = samples("c_total", [100, 110, 5, 15], host="a")  # reset after 110: +10, +5, +10
    evaluation = run([rule("c_total", ABOVE_ZERO, name="inc", agg="increase")], data)
    assert evaluation.results()[0].value == pytest.approx(25.0)
    evaluation = run([rule("c_total", ABOVE_ZERO, name="rate", agg="rate")], data)
    assert evaluation.results()[0].value == pytest.approx(25.0 / 30)


def test_the_window_ends_at_now_and_excludes_its_start() -> None:
    # samples every 60 s up to 5 min after now; the window (now-5m, now] holds the 5 before and at now
    data = samples("m", [float(i) for i in range(11)], step=60, end=NOW + timedelta(minutes=5), host="a")
    (result,) = run([rule("m", ABOVE_ZERO, agg="count")], data).results()
    assert result.value == 5.0
    (result,) = run([rule("m", ABOVE_ZERO, agg="min")], data).results()
    assert result.value == 1.0  # the sample at now-5m is out; now-4m (value 1) is the oldest in


def test_one_sample_has_no_rate_and_nan_or_null_samples_are_skipped() -> None:
    data = frame(samples("m", [5], host="a"), samples("m", [None, float("nan"), 2.0, 4.0], host="b"))
    result = values(run([rule("m", {"kind": "above", "threshold": -1}, agg="rate")], data))
    assert result[("r", (("host", "a"),))] == (None, False)
    assert result[("r", (("host", "b"),))] == (pytest.approx(0.2), True)


def test_conditions_compare_each_series() -> None:
    data = frame(samples("m", [1, 1], host="a"), samples("m", [5, 5], host="b"), samples("m", [9, 9], host="c"))
    rules = [
        rule("m", {"kind": "above", "threshold": 5}, name="above"),
        rule("m", {"kind": "below", "threshold": 5}, name="below"),
    ]
    holding = {(r.rule.name, r.labels["host"]) for r in run(rules, data).results()}
    assert holding == {("above", "c"), ("below", "a")}  # strict comparisons: 5 is neither


@pytest.mark.parametrize(
    ("direction", "per", "threshold", "hosts"),
    [
        ("up", "second", 0.05, {"rising"}),
        ("down", "second", 0.05, {"falling"}),
        ("either", "second", 0.05, {"rising", "falling"}),
        ("up", "window", 2, {"rising"}),  # +3 over the window
        ("up", "window", 3, set()),
    ],
)
def test_rate_of_change_per_second_or_per_window(direction: str, per: str, threshold: float, hosts: set[str]) -> None:
    data = frame(
        samples("m", [1, 2, 3, 4], host="rising"),
        samples("m", [4, 3, 2, 1], host="falling"),
        samples("m", [2, 2, 2, 2], host="flat"),
    )
    condition = {"kind": "rate_of_change", "threshold": threshold, "direction": direction, "per": per}
    assert {r.labels["host"] for r in run([rule("m", condition)], data).results()} == hosts


def test_by_combines_series_into_groups() -> None:
    data = frame(
        samples("m", [1, 3], host="a", dev="x"),
        samples("m", [5, 7], host="a", dev="y"),
        samples("m", [10, 10], host="b", dev="x"),
    )
    rules = [
        rule("m", ABOVE_ZERO, name="avg", by=["host"]),
        rule("m", ABOVE_ZERO, name="sum", agg="last", by=["host"], combine="sum"),
        rule("m", ABOVE_ZERO, name="count", by=["host"], combine="count"),
        rule("m", ABOVE_ZERO, name="all", agg="max", by=[]),
    ]
    result = values(run(rules, data))
    assert result[("avg", (("host", "a"),))] == (4.0, True)  # mean of the two series' averages 2 and 6
    assert result[("sum", (("host", "a"),))] == (10.0, True)  # last 3 + last 7
    assert result[("count", (("host", "b"),))] == (1.0, True)
    assert result[("all", ())] == (10.0, True)
    assert len(result) == 7


def test_label_matchers_of_each_rule_pick_its_series() -> None:
    data = frame(
        samples("m", [1], host="a", dev="x"),
        samples("m", [2], host="a", dev="y"),
        samples("m", [3], host="b", dev="x"),
        samples("m", [4], host="b"),
    )
    rules = [
        rule('m{host="a"}', ABOVE_ZERO, name="eq"),
        rule('m{host="b",dev="x"}', ABOVE_ZERO, name="eq2"),
        rule('m{dev=~"x|z"}', ABOVE_ZERO, name="re"),
        rule('m{dev!="x"}', ABOVE_ZERO, name="ne"),
        rule('m{dev=""}', ABOVE_ZERO, name="nolabel"),
        rule('m{host="a",host="b"}', ABOVE_ZERO, name="contradiction"),
        rule('m{zone="eu"}', ABOVE_ZERO, name="unknown-label"),
    ]
    picked: dict[str, set[float]] = {r.name: set() for r in rules}
    for result in run(rules, data).results():
        assert result.value is not None
        picked[result.rule.name].add(result.value)
    assert picked == {
        "eq": {1, 2},
        "eq2": {3},
        "re": {1, 3},
        "ne": {2, 4},
        "nolabel": {4},
        "contradiction": set(),
        "unknown-label": set(),
    }


def test_rules_on_one_metric_share_one_query_over_the_longest_window() -> None:
    rules = [
        rule('m{host="a",job="node"}', ABOVE_ZERO, name="1", window="5m"),
        rule('m{host="b",job="node"}', ABOVE_ZERO, name="2", window="1h"),
        rule("n", ABOVE_ZERO, name="3"),
        rule('{job="x"}', ABOVE_ZERO, name="4"),
    ]
    assert plan_queries(rules) == {
        'm{job="node"}': timedelta(hours=1),
        "n{}": timedelta(minutes=5),
        '{job="x"}': timedelta(minutes=5),
    }


def test_a_wildcard_metric_keeps_the_name_as_label_metric() -> None:
    data = frame(samples("disk_a", [1], host="h"), samples("disk_b", [2], host="h"))
    result = values(run([rule("disk_*", ABOVE_ZERO)], data))
    assert set(result) == {("r", (("host", "h"), ("metric", "disk_a"))), ("r", (("host", "h"), ("metric", "disk_b")))}


def test_absent_fires_per_silent_series_and_once_when_nothing_matches() -> None:
    data = frame(
        samples("up", [1] * 6, step=60, end=NOW, job="live"),
        samples("up", [1] * 3, step=60, end=NOW - timedelta(minutes=20), job="gone"),
    )
    rules = [
        rule("up", {"kind": "absent", "after": "10m"}, name="silent", window="1h"),
        rule('up{job="other"}', {"kind": "absent"}, name="never"),
        rule('up{job="live"}', {"kind": "absent"}, name="present"),
    ]
    result = values(run(rules, data))
    assert result[("silent", (("job", "gone"),))] == (pytest.approx(1200.0), True)
    assert result[("silent", (("job", "live"),))] == (0.0, False)
    assert result[("never", (("job", "other"),))] == (None, True)  # labelled with its equality matchers
    assert result[("present", (("job", "live"),))] == (0.0, False)


def test_anomaly_rules_read_anomaly_score_series() -> None:
    data = frame(
        samples("anomaly_score", [1.0, 6.0], metric="host_load1", host="a"),
        samples("anomaly_score", [1.0, 2.0], metric="host_load1", host="b"),
        samples("anomaly_score", [9.0, 9.0], metric="other", host="a"),
    )
    spec = rule("host_load1", {"kind": "anomaly", "threshold": 4}, agg="max")
    (result,) = run([spec], data).results()
    assert result.labels == {"host": "a", "metric": "host_load1"}
    assert result.value == 6.0


def test_every_row_has_a_stable_key_per_label_set() -> None:
    data = frame(samples("m", [1], host="a", dev="x"), samples("m", [1], host="a"))
    first = run([rule("m", ABOVE_ZERO)], data).frame
    again = run([rule("m", ABOVE_ZERO)], data.reverse()).frame
    assert first["key"].to_list() == again["key"].to_list()
    assert first["key"].n_unique() == 2


def test_rules_without_data_give_no_rows() -> None:
    evaluation = evaluate([rule("m", ABOVE_ZERO)], {}, NOW)
    assert evaluation.frame.is_empty() and evaluation.results() == []


@pytest.mark.skipif(importlib.util.find_spec("analytics.forecast") is None, reason="analytics.forecast not present")
def test_forecast_rules_fire_when_the_crossing_is_within_the_horizon() -> None:
    # disk usage rising by 0.01 per minute for two hours: 0.62 now, so 0.9 is reached in 28 minutes
    minutes = 120
    rising = [0.5 + 0.001 * i for i in range(minutes + 1)]
    data = frame(
        samples("disk_used_ratio", rising, step=60, host="filling"),
        samples("disk_used_ratio", [0.3] * (minutes + 1), step=60, host="steady"),
    )
    soon = rule("disk_used_ratio", {"kind": "forecast", "threshold": 0.7, "horizon": "2h"}, name="soon", window="3h")
    late = rule("disk_used_ratio", {"kind": "forecast", "threshold": 0.7, "horizon": "30m"}, name="late", window="3h")
    evaluation = run([soon, late], data)
    assert evaluation.errors == {}
    result = values(evaluation)
    value, holds = result[("soon", (("host", "filling"),))]
    assert holds and value == pytest.approx(80 * 60, rel=0.1)  # 0.62 → 0.7 at 0.001/min
    assert result[("late", (("host", "filling"),))][1] is False
    assert result[("soon", (("host", "steady"),))] == (None, False)
