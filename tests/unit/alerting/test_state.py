"""The alert state machine: pending, firing, resolved, `for`, `keep_firing_for`, labels, events, restore."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import polars as pl

from analytics.alerting.evaluate import Evaluation, evaluate
from analytics.alerting.rules import RuleSpec
from analytics.alerting.state import ActiveAlert, AlertStates, Update, restore
from qwq_core.model import Event

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def rule(name: str = "Busy", **spec: Any) -> RuleSpec:
    base = {"name": name, "query": {"metric": "cpu", "agg": "last"}, "condition": {"kind": "above", "threshold": 0}}
    return RuleSpec.model_validate({**base, **spec})


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def step(states: AlertStates, rules: list[RuleSpec], now: datetime, **hosts: float) -> Update:
    """Evaluate ``rules`` at ``now`` with one sample per host (``cpu{host=...}``), then update ``states``."""
    data = pl.DataFrame(
        {"ts": [now] * len(hosts), "value": list(hosts.values()), "name": ["cpu"] * len(hosts), "host": list(hosts)},
        schema_overrides={"ts": pl.Datetime("us", "UTC"), "value": pl.Float64, "name": pl.String, "host": pl.String},
    )
    return states.update(evaluate(rules, {"cpu{}": data}, now))


def kinds(update: Update) -> list[str]:
    return [event.kind for event in update.events]


def test_pending_then_firing_after_for_then_resolved() -> None:
    states, rules = AlertStates(), [rule(**{"for": "30s"})]
    first = step(states, rules, at(0), a=1)
    assert kinds(first) == ["alert.pending"] and first.alerts == ()
    assert kinds(step(states, rules, at(10), a=1)) == [] and states.active()[0].phase == "pending"
    firing = step(states, rules, at(30), a=1)
    assert kinds(firing) == ["alert.firing"]
    (alert,) = firing.alerts
    assert (alert.status, alert.starts_at, alert.name) == ("firing", at(0), "Busy")
    again = step(states, rules, at(40), a=2)
    assert kinds(again) == [] and [a.value for a in again.firing] == [2.0]  # re-sent every evaluation
    resolved = step(states, rules, at(50), a=-1)
    assert kinds(resolved) == ["alert.resolved"]
    (alert,) = resolved.alerts
    assert (alert.status, alert.starts_at, alert.ends_at) == ("resolved", at(0), at(50))
    assert states.active() == []


def test_a_pending_alert_that_clears_goes_back_to_inactive_silently() -> None:
    states, rules = AlertStates(), [rule(**{"for": "1m"})]
    step(states, rules, at(0), a=1)
    cleared = step(states, rules, at(30), a=0)
    assert kinds(cleared) == ["alert.inactive"] and cleared.alerts == ()
    assert kinds(step(states, rules, at(40), a=1)) == ["alert.pending"]  # and starts over
    assert states.active()[0].active_since == at(40)


def test_for_zero_fires_at_once() -> None:
    states = AlertStates()
    update = step(states, [rule()], at(0), a=1)
    assert kinds(update) == ["alert.firing"] and len(update.firing) == 1


def test_keep_firing_for_holds_a_firing_alert_after_the_condition_clears() -> None:
    states, rules = AlertStates(), [rule(keep_firing_for="30s")]
    step(states, rules, at(0), a=1)
    for seconds in (10, 20, 29):
        update = step(states, rules, at(seconds), a=0)
        assert kinds(update) == [] and len(update.firing) == 1
    assert kinds(step(states, rules, at(30), a=0)) == ["alert.resolved"]


def test_keep_firing_for_restarts_when_the_condition_holds_again() -> None:
    states, rules = AlertStates(), [rule(keep_firing_for="30s")]
    step(states, rules, at(0), a=1)
    step(states, rules, at(20), a=0)
    step(states, rules, at(25), a=1)  # holds again: the 30 s count from here
    assert kinds(step(states, rules, at(50), a=0)) == []
    assert kinds(step(states, rules, at(55), a=0)) == ["alert.resolved"]


def test_labels_are_rendered_once_and_annotations_every_evaluation() -> None:
    spec = rule(
        severity="critical",
        labels={"team": "ops", "host": "renamed-{{ labels.host }}", "level": "{{ 'high' if value > 5 else 'low' }}"},
        annotations={"summary": "{{ $labels.host }} at {{ $value }}"},
    )
    states = AlertStates()
    (first,) = step(states, [spec], at(0), a=3).alerts
    assert dict(first.labels) == {
        "alertname": "Busy",
        "severity": "critical",
        "team": "ops",
        "host": "renamed-a",  # rule labels override the series'
        "level": "low",
    }
    assert first.annotations == {"summary": "a at 3.0"}
    (second,) = step(states, [spec], at(10), a=9).alerts
    assert second.fingerprint == first.fingerprint and second.labels["level"] == "low"  # identity is kept
    assert second.annotations == {"summary": "a at 9.0"}


def test_transition_events_carry_everything_about_the_alert() -> None:
    states, spec = AlertStates(), rule(severity="error", annotations={"summary": "cpu busy on {{ labels.host }}"})
    (event,) = step(states, [spec], at(0), a=7).events
    (alert,) = states.active()
    assert (event.kind, event.severity, event.source, event.ts) == ("alert.firing", "error", "rules", at(0))
    assert event.message == "Busy firing: cpu busy on a"
    assert event.attrs == {
        "rule": "Busy",
        "key": alert.key,
        "fingerprint": alert.alert().fingerprint,
        "labels": {"alertname": "Busy", "severity": "error", "host": "a"},
        "annotations": {"summary": "cpu busy on a"},
        "value": 7.0,
        "active_since": at(0).isoformat(),
        "fired_at": at(0).isoformat(),
    }


def test_a_series_that_disappears_resolves() -> None:
    states = AlertStates()
    step(states, [rule()], at(0), a=1, b=1)
    update = step(states, [rule()], at(10), b=1)
    assert [a.labels["host"] for a in update.resolved] == ["a"]
    assert [a.labels["host"] for a in update.firing] == ["b"]


def test_only_the_evaluated_rules_change() -> None:
    states, one, two = AlertStates(), rule("One"), rule("Two")
    step(states, [one, two], at(0), a=1)
    update = step(states, [two], at(10), a=0)  # rule One not due this time
    assert kinds(update) == ["alert.resolved"] and update.resolved[0].name == "Two"
    assert [a.rule for a in states.active()] == ["One"]


def test_retire_ends_the_alerts_of_removed_rules() -> None:
    states = AlertStates()
    step(states, [rule("Kept"), rule("Gone"), rule("Waiting", **{"for": "1h"})], at(0), a=1)
    update = states.retire({"Kept"}, at(5))
    assert sorted(kinds(update)) == ["alert.inactive", "alert.resolved"]
    assert [a.name for a in update.resolved] == ["Gone"]
    assert [a.rule for a in states.active()] == ["Kept"]


def comparable(alerts: list[ActiveAlert]) -> list[tuple[Any, ...]]:
    return [(a.rule, a.key, a.phase, dict(a.labels), a.active_since, a.fired_at) for a in alerts]


def test_restore_rebuilds_the_state_from_the_events() -> None:
    states, rules = AlertStates(), [rule("Fast"), rule("Slow", **{"for": "1m"})]
    events: list[Event] = []
    for seconds, hosts in [(0, {"a": 1, "b": 1}), (10, {"a": 1, "b": 0}), (20, {"a": 1, "c": 1})]:
        events += step(states, rules, at(seconds), **hosts).events
    restored = restore(reversed(events))  # the store returns newest first: order must not matter
    assert comparable(restored.active()) == comparable(states.active())
    # carrying on from the restored state: no second firing for what already fired, and a normal resolve
    update = step(restored, rules, at(30), c=1)
    assert sorted(kinds(update)) == ["alert.inactive", "alert.resolved"]
    assert [a.labels["host"] for a in update.firing] == ["c"]


def test_a_rule_that_could_not_be_evaluated_keeps_its_alerts() -> None:
    states, spec = AlertStates(), rule()
    step(states, [spec], at(0), a=1)
    empty = pl.DataFrame(schema={"rule": pl.UInt32, "key": pl.String, "value": pl.Float64, "holds": pl.Boolean})
    failed = Evaluation((spec,), at(10), empty, errors={"Busy": "forecast failed"})
    update = states.update(failed)
    assert update.events == () and [a.phase for a in states.active()] == ["firing"]
