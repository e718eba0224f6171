"""The registry drops full duplicates with a count, applies partial ones, and resolves timed-out alerts."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from analytics.alerting.dedup import Registry, alert_from_dict, alert_to_dict
from analytics.alerting.model import Alert

T0 = datetime(2026, 1, 1, tzinfo=UTC)
CPU = Alert({"alertname": "HighCPU", "host": "db1"}, T0, annotations={"summary": "cpu"}, value=0.91)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_full_duplicates_are_dropped_and_counted() -> None:
    registry = Registry()
    outcomes = [registry.observe(CPU, at(i)).outcome for i in range(5)]
    assert outcomes == ["new", "duplicate", "duplicate", "duplicate", "duplicate"]
    record = registry.get(CPU.fingerprint)
    assert record is not None
    assert (record.received, record.duplicates, record.updates) == (5, 4, 0)
    assert (record.first_seen, record.last_seen) == (at(0), at(4))
    assert vars(registry.totals) == {"received": 5, "duplicates": 4, "updates": 0}


def test_partial_duplicates_update_the_alert_and_say_what_changed() -> None:
    registry = Registry()
    registry.observe(CPU, at(0))
    hotter = replace(CPU, value=0.97, annotations={"summary": "cpu at 97%"})
    observation = registry.observe(hotter, at(1))
    assert observation.outcome == "updated"
    assert observation.changed == {"value", "annotations"}
    assert observation.previous == CPU
    resolved = registry.observe(replace(hotter, status="resolved", ends_at=at(2)), at(2))
    assert resolved.changed == {"status", "ends_at"}
    record = registry.get(CPU.fingerprint)
    assert record is not None and record.alert.status == "resolved" and record.updates == 2


def test_nan_values_and_naive_times_do_not_make_false_updates() -> None:
    registry = Registry()
    registry.observe(replace(CPU, value=float("nan")), at(0))
    assert registry.observe(replace(CPU, value=float("nan")), at(1)).outcome == "duplicate"
    naive = replace(CPU, value=float("nan"), starts_at=T0.replace(tzinfo=None))
    assert registry.observe(naive, at(2)).outcome == "duplicate"


def test_external_alerts_resolve_after_the_resolve_timeout_unless_re_sent() -> None:
    registry = Registry(resolve_timeout=timedelta(minutes=5))
    external = replace(CPU, source="alertmanager")
    ours = replace(CPU, labels={**CPU.labels, "rule": "ours"})
    registry.observe(external, at(0))
    registry.observe(ours, at(0))
    registry.observe(external, at(200))  # re-sent: the timeout starts again
    assert registry.expired(at(300)) == []
    (observation,) = registry.expired(at(500))
    assert observation.record.alert.status == "resolved" and observation.record.alert.ends_at == at(500)
    assert observation.changed == {"status", "ends_at"}
    assert registry.expired(at(10_000)) == []  # qwq's own alerts report their resolution themselves


def test_an_alert_with_ends_at_resolves_then() -> None:
    registry = Registry()
    registry.observe(replace(CPU, ends_at=at(60)), at(0))
    assert registry.expired(at(59)) == []
    assert [o.record.alert.status for o in registry.expired(at(60))] == ["resolved"]


def test_resolved_alerts_are_forgotten_after_the_retention() -> None:
    registry = Registry()
    registry.observe(CPU, at(0))
    other = Alert({"alertname": "DiskFull", "host": "db1"}, T0, status="resolved", ends_at=T0)
    registry.observe(other, at(0))
    assert registry.collect(at(3600), timedelta(minutes=30)) == [other.fingerprint]
    assert len(registry) == 1 and registry.get(CPU.fingerprint) is not None
    assert registry.observe(other, at(3601)).outcome == "new"


def test_snapshot_round_trips_through_json() -> None:
    registry = Registry()
    for i, alert in enumerate([CPU, CPU, replace(CPU, value=1.0)]):
        registry.observe(alert, at(i))
    data = json.loads(json.dumps(registry.snapshot()))
    copy = Registry.from_snapshot(data)
    assert [vars(r) for r in copy.records()] == [vars(r) for r in registry.records()]
    assert copy.totals == registry.totals
    assert alert_from_dict(json.loads(json.dumps(alert_to_dict(CPU)))) == CPU
