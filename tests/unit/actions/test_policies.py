"""Restart-policy and remediation decisions: pure functions, checked by example and by property."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from actions.policies import (
    Budget,
    Observation,
    Remediation,
    RestartPolicy,
    backoff_delay,
    condition,
    decide,
    fill,
    matches,
    remediate,
)
from analytics.alerting.model import Alert

T0 = datetime(2025, 1, 1, tzinfo=UTC)
POLICY = RestartPolicy(
    name="p",
    backoff=timedelta(seconds=10),
    max_backoff=timedelta(seconds=60),
    max_attempts=4,
    window=timedelta(hours=1),
)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_conditions() -> None:
    assert condition(Observation("1", "a", {}, "exited", exit_code=1)) == "exited"
    assert condition(Observation("1", "a", {}, "exited", oom_killed=True)) == "oom"
    assert condition(Observation("1", "a", {}, "running", health="unhealthy")) == "unhealthy"
    assert condition(Observation("1", "a", {}, "running", health="healthy")) is None
    assert condition(Observation("1", "a", {}, "running", health="starting")) is None


def test_matching_by_name_and_labels() -> None:
    policy = RestartPolicy(name="p", match=["web-*"], labels={"tier": "front*"})
    assert matches(policy, Observation("1", "web-1", {"tier": "frontend"}, "running"))
    assert not matches(policy, Observation("1", "web-1", {}, "running"))
    assert not matches(policy, Observation("1", "db-1", {"tier": "frontend"}, "running"))


def test_backoff_doubles_and_caps() -> None:
    assert [backoff_delay(POLICY, n).total_seconds() for n in range(6)] == [0, 10, 20, 40, 60, 60]


def test_conditions_not_listed_are_ignored() -> None:
    only_oom = RestartPolicy(name="p", on=["oom"])
    assert decide(only_oom, Budget(), "exited", T0).kind == "idle"
    assert decide(only_oom, Budget(), "oom", T0).kind == "restart"


def test_exhaustion_then_recovery() -> None:
    budget = Budget(tuple(at(s) for s in (0, 10, 30, 70)))
    spent = decide(POLICY, budget, "exited", at(200))
    assert (spent.kind, spent.budget.exhausted) == ("exhausted", True)
    assert decide(POLICY, spent.budget, "exited", at(300)).kind == "idle"
    assert decide(POLICY, spent.budget, None, at(300)).kind == "recovered"
    assert decide(POLICY, spent.budget, "exited", at(3700)).kind == "restart"  # the window slid past them


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(min_value=0.5, max_value=900), min_size=1, max_size=80))
def test_budget_and_backoff_hold_for_any_tick_pattern(gaps: list[float]) -> None:
    budget, now, restarts = Budget(), T0, []
    for gap in gaps:
        now += timedelta(seconds=gap)
        decision = decide(POLICY, budget, "exited", now)
        budget = decision.budget
        if decision.kind == "restart":
            restarts.append(now)
    for i, when in enumerate(restarts):
        in_window = [t for t in restarts[: i + 1] if when - t < POLICY.window]
        assert len(in_window) <= POLICY.max_attempts
        earlier = [t for t in restarts[:i] if when - t < POLICY.window]
        if earlier:
            assert when - earlier[-1] >= backoff_delay(POLICY, len(earlier))


REMEDIATION = Remediation(
    name="fix",
    alert="High*",
    matchers={"env": "prod"},
    action="containers.restart",
    params={"container": "{container}", "note": "{missing}"},
    max_runs=2,
    interval=timedelta(minutes=5),
)


def firing(**labels: str) -> Alert:
    return Alert({"alertname": "HighLatency", "env": "prod", **labels}, T0)


def test_fill_replaces_known_labels_only() -> None:
    assert fill({"a": "{container}-x", "b": ["{nope}"], "c": 3}, {"container": "web"}) == {
        "a": "web-x",
        "b": ["{nope}"],
        "c": 3,
    }


def test_remediation_runs_within_budget_then_escalates_once_then_resolves() -> None:
    alert = firing(container="web")
    kinds = []
    states: dict = {}
    for minute in (0, 1, 5, 9, 10, 15, 20):
        plan = remediate([REMEDIATION], [alert], states, T0 + timedelta(minutes=minute))
        states = dict(plan.states)
        kinds.append(([s.params["container"] for s in plan.steps], [a.labels["alertname"] for a in plan.alerts]))
    assert kinds == [
        (["web"], []),
        ([], []),
        (["web"], []),
        ([], []),
        ([], ["RemediationEscalated"]),
        ([], []),
        ([], []),
    ]
    done = remediate([REMEDIATION], [], states, T0 + timedelta(minutes=30))
    assert [(a.labels["alertname"], a.status) for a in done.alerts] == [("RemediationEscalated", "resolved")]
    assert done.states == {}


def test_remediation_ignores_non_matching_and_resolved_alerts() -> None:
    staging = Alert({"alertname": "HighLatency", "env": "staging"}, T0)
    other = Alert({"alertname": "DiskFull", "env": "prod"}, T0)
    gone = Alert({"alertname": "HighLatency", "env": "prod"}, T0, status="resolved")
    assert remediate([REMEDIATION], [staging, other, gone], {}, T0).steps == ()
