"""Rule configuration: what is accepted, what is refused and why, and the derived evaluation settings."""

from __future__ import annotations

import tomllib
from datetime import timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from analytics.alerting.rules import RuleSpec, RulesSettings
from qwq_core.selectors import Matcher


def rule(**overrides: Any) -> RuleSpec:
    spec: dict[str, Any] = {
        "name": "HighLoad",
        "query": {"metric": 'host_load1{host="db1"}'},
        "condition": {"kind": "above", "threshold": 4},
    }
    spec.update(overrides)
    return RuleSpec.model_validate(spec)


def test_a_rule_from_toml_with_prometheus_names() -> None:
    config = tomllib.loads(
        """
        evaluation_interval = "15s"
        [[rules]]
        name = "DiskFilling"
        for = "10m"
        keep_firing_for = "5m"
        severity = "critical"
        interval = "1m"
        query = { metric = 'host_filesystem_used_ratio{mountpoint="/"}', agg = "max", window = "15m", by = ["host"] }
        condition = { kind = "above", threshold = 0.9 }
        labels = { team = "ops" }
        annotations = { summary = "{{ $labels.host }} disk at {{ $value | humanize_percentage }}" }
        """
    )
    settings = RulesSettings.model_validate(config)
    (spec,) = settings.rules
    assert spec.for_ == timedelta(minutes=10) and spec.keep_firing_for == timedelta(minutes=5)
    assert spec.query.window == timedelta(minutes=15) and spec.query.by == ("host",)
    assert settings.due(spec) == timedelta(minutes=1)
    assert settings.due(rule()) == timedelta(seconds=15)
    assert spec.combine == "max"  # max by host: the default combine follows the aggregation
    dumped = spec.model_dump(by_alias=True)
    assert dumped["for"] == "10m" and RuleSpec.model_validate(dumped) == spec  # `qwq config show` round-trips


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"query": {"metric": "host_load1{host="}}, "invalid selector"),
        ({"query": {"metric": "up", "window": "0s"}}, "window must be positive"),
        ({"query": {"metric": "up", "agg": "median"}}, "Input should be"),
        ({"query": {"metric": "up", "by": ["not-a-label"]}}, "is not a label name"),
        ({"condition": {"kind": "above"}}, "needs a threshold"),
        ({"condition": {"kind": "absent", "threshold": 1}}, "takes no threshold"),
        ({"condition": {"kind": "forecast", "threshold": 1}}, "needs a positive horizon"),
        ({"condition": {"kind": "above", "threshold": 1, "after": "5m"}}, "after applies to absent"),
        ({"condition": {"kind": "absent", "after": "10m"}}, "at most query.window"),
        ({"condition": {"kind": "between", "threshold": 1}}, "Input should be"),
        ({"labels": {"alertname": "x"}}, "set by the rule's name"),
        ({"labels": {"severity": "x"}}, "set by the rule's severity"),
        ({"labels": {"team": "{{ labels.host "}}, "invalid template"),
        ({"annotations": {"summary": "{% if %}"}}, "invalid template"),
        ({"severity": "page"}, "Input should be"),
        ({"name": " "}, "printable characters"),
        ({"interval": "0s"}, "interval must be positive"),
        ({"unknown": 1}, "Extra inputs are not permitted"),
        (
            {"query": {"metric": "up", "agg": "max"}, "condition": {"kind": "absent"}},
            "leave query.agg unset",
        ),
        (
            {
                "query": {"metric": "up", "by": ["host"]},
                "condition": {"kind": "forecast", "threshold": 1, "horizon": "1h"},
            },
            "query.by is not supported",
        ),
        ({"query": {"metric": '{host="a"}'}, "condition": {"kind": "anomaly", "threshold": 3}}, "needs a metric name"),
    ],
)
def test_invalid_rules_are_refused_with_the_reason(overrides: dict[str, Any], reason: str) -> None:
    with pytest.raises(ValidationError, match=reason):
        rule(**overrides)


def test_rule_names_must_be_unique() -> None:
    spec = rule().model_dump(by_alias=True)
    with pytest.raises(ValidationError, match="repeated: HighLoad"):
        RulesSettings.model_validate({"rules": [spec, spec]})


@pytest.mark.parametrize(
    ("condition", "agg", "window_agg", "combine"),
    [
        ({"kind": "above", "threshold": 1}, "rate", "rate", "sum"),
        ({"kind": "below", "threshold": 1}, "avg", "avg", "avg"),
        ({"kind": "rate_of_change", "threshold": 1}, None, "deriv", "avg"),
        ({"kind": "rate_of_change", "threshold": 1, "per": "window"}, None, "delta", "avg"),
        ({"kind": "absent"}, None, "age", "min"),
    ],
)
def test_what_evaluation_computes_follows_the_condition(
    condition: dict[str, Any], agg: str | None, window_agg: str, combine: str
) -> None:
    query = {"metric": "up", **({"agg": agg} if agg else {})}
    spec = rule(query=query, condition=condition)
    assert (spec.window_agg, spec.combine) == (window_agg, combine)


def test_anomaly_rules_read_the_anomaly_score_of_their_metric() -> None:
    exact = rule(condition={"kind": "anomaly", "threshold": 3})
    assert exact.selector.name == "anomaly_score"
    assert set(exact.selector.matchers) == {Matcher("host", "=", "db1"), Matcher("metric", "=", "host_load1")}
    wildcard = rule(query={"metric": "host_load*"}, condition={"kind": "anomaly", "threshold": 3})
    assert wildcard.selector.matchers == (Matcher("metric", "=~", "host_load.*"),)
    assert rule().selector == rule().query.selector  # other rules read their own metric


def test_absent_after_defaults_to_the_window() -> None:
    assert rule(condition={"kind": "absent"}).absent_after == timedelta(minutes=5)
    spec = rule(query={"metric": "up", "window": "1h"}, condition={"kind": "absent", "after": "10m"})
    assert spec.absent_after == timedelta(minutes=10)
