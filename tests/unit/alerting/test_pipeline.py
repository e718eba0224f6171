"""The composed pipeline: alerts in, notifications and events out, rebuilt from the events after a restart."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from analytics.alerting.flapping import FlapSpec
from analytics.alerting.incidents import IncidentSpec
from analytics.alerting.inhibit import InhibitRuleSpec
from analytics.alerting.model import Alert, Notification
from analytics.alerting.pipeline import RESTORE_SQL, Pipeline, PipelineSpec, events_from_frame
from analytics.alerting.routing import RouteSpec
from analytics.alerting.silences import MaintenanceWindowSpec
from qwq_core.store import LocalStore

T0 = datetime(2026, 1, 1, tzinfo=UTC)
CONFIG = {
    "route": {
        "receiver": "ops",
        "group_by": ["host"],
        "group_wait": "30s",
        "group_interval": "5m",
        "repeat_interval": "4h",
        "routes": [
            {"matchers": ['severity="critical"'], "receiver": "pager", "continue": True},
            {"receiver": "ops"},  # no matchers: everything, critical alerts included
        ],
    },
    "flapping": {"resolution": "30s", "high_threshold": 30, "low_threshold": 15},
}
SPEC = PipelineSpec.model_validate(CONFIG)
CPU = Alert({"alertname": "HighCPU", "host": "db1", "severity": "warning"}, T0, value=0.9)
DOWN = Alert({"alertname": "HostDown", "host": "db1", "severity": "critical"}, T0)
PG = Alert({"alertname": "ContainerDown", "host": "db1", "container": "pg", "severity": "warning"}, T0)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def run(pipeline: Pipeline, start: float, end: float, step: float = 10) -> list[Notification]:
    notes = []
    t = start
    while t <= end:
        notes += pipeline.tick(at(t))
        t += step
    return notes


def summary(notes: list[Notification]) -> list[tuple[str, list[str], list[str]]]:
    return [(n.receiver, [a.name for a in n.firing], [a.name for a in n.resolved]) for n in notes]


def test_alerts_flow_through_dedup_routing_and_grouping_with_events() -> None:
    pipeline = Pipeline(SPEC)
    intake = pipeline.ingest([CPU, CPU, replace(CPU, value=0.95)], at(0))
    assert (intake.received, intake.new, intake.duplicates, intake.updated) == (3, 1, 1, 1)
    assert run(pipeline, 0, 20) == []
    assert summary(pipeline.tick(at(30))) == [("ops", ["HighCPU"], [])]
    assert pipeline.tick(at(40)) == []
    events = pipeline.drain_events()
    assert [e.kind for e in events] == ["alert.received", "incident.opened", "notification.queued"]
    assert events[0].attrs["received"] == 1 and events[2].attrs["firing"] == [CPU.fingerprint]
    assert pipeline.drain_events() == []
    (view,) = pipeline.alerts(at(40))
    assert (view.record.received, view.record.duplicates, view.record.updates) == (3, 1, 1)
    assert view.alert.value == 0.95 and view.is_("active") and view.incident is not None


def test_a_rule_re_sending_its_alert_every_evaluation_notifies_once_then_resolves_once() -> None:
    """What `qwq up` with one always-true rule does: one notification over many cycles, one resolve."""
    fast = PipelineSpec.model_validate(
        {"route": {"receiver": "hook", "group_wait": "1s", "group_interval": "2s", "repeat_interval": "1h"}}
    )
    pipeline = Pipeline(fast)
    notes = []
    for cycle in range(30):  # evaluated every second, the value moving
        pipeline.ingest([replace(CPU, value=0.9 + cycle / 1000)], at(cycle))
        notes += pipeline.tick(at(cycle))
    pipeline.ingest([replace(CPU, status="resolved", ends_at=at(30))], at(30))
    notes += run(pipeline, 30, 60, step=1)
    assert summary(notes) == [("hook", ["HighCPU"], []), ("hook", [], ["HighCPU"])]


def test_continue_sends_critical_alerts_to_both_receivers_and_resolves_follow() -> None:
    pipeline = Pipeline(SPEC, send_resolved={"pager": False})
    pipeline.ingest([DOWN], at(0))
    assert sorted(summary(pipeline.tick(at(30)))) == [("ops", ["HostDown"], []), ("pager", ["HostDown"], [])]
    pipeline.ingest([replace(DOWN, status="resolved", ends_at=at(60))], at(60))
    notes = run(pipeline, 40, 330)
    assert summary(notes) == [("ops", [], ["HostDown"])]  # pager does not want resolves
    kinds = [e.kind for e in pipeline.drain_events()]
    assert kinds.count("notification.skipped") == 1 and "incident.resolved" in kinds


def test_a_host_down_inhibits_its_containers_until_it_resolves() -> None:
    pipeline = Pipeline(SPEC)
    pipeline.ingest([DOWN, PG], at(0))
    first = pipeline.tick(at(30))
    assert {n.receiver: [a.name for a in n.firing] for n in first} == {"ops": ["HostDown"], "pager": ["HostDown"]}
    (pg,) = pipeline.alerts(at(30), state="suppressed")
    assert pg.inhibited_by == DOWN.fingerprint
    pipeline.ingest([replace(DOWN, status="resolved")], at(100))
    later = run(pipeline, 100, 330)
    assert ("ops", ["ContainerDown"], ["HostDown"]) in summary(later)


def test_a_silence_mutes_until_it_is_expired() -> None:
    pipeline = Pipeline(SPEC)
    silence = pipeline.silence('{host="db1"}', now=at(0), duration=timedelta(hours=1), created_by="ana", comment="x")
    pipeline.ingest([CPU], at(0))
    assert run(pipeline, 0, 300) == []
    (view,) = pipeline.alerts(at(300), state="suppressed")
    assert view.silenced_by == (silence.id,)
    pipeline.expire_silence(silence.id, at(310))
    assert summary(run(pipeline, 310, 330)) == [("ops", ["HighCPU"], [])]
    assert [s.id for s in pipeline.silences(at(400), "expired")] == [silence.id]
    kinds = [e.kind for e in pipeline.drain_events()]
    assert kinds[0] == "silence.created" and "silence.expired" in kinds


def test_maintenance_windows_from_the_configuration_mute_on_schedule() -> None:
    window = {"name": "nightly", "matchers": ['host="db1"'], "schedule": "0 0 * * *", "duration": "10m"}
    pipeline = Pipeline(PipelineSpec.model_validate({**CONFIG, "maintenance_windows": [window]}))
    pipeline.ingest([CPU], at(0))
    assert run(pipeline, 0, 590) == []  # 00:00-00:10 UTC is the window
    assert summary(run(pipeline, 600, 630)) == [("ops", ["HighCPU"], [])]


def test_a_flapping_alert_is_held_back_and_its_final_state_sent_once_it_calms_down() -> None:
    pipeline = Pipeline(SPEC)
    notes = []
    for i in range(40):  # flips every 5 s for 200 s, ending firing
        status = "firing" if i % 2 == 0 else "resolved"
        pipeline.ingest([replace(CPU, status=status)], at(5 * i))
        notes += pipeline.tick(at(5 * i))
    assert [v.is_("flapping") for v in pipeline.alerts(at(200))] == [True]
    pipeline.ingest([replace(CPU, status="firing")], at(205))
    notes += run(pipeline, 205, 3600)
    assert summary(notes) == [("ops", ["HighCPU"], [])]  # one message, not forty
    kinds = [e.kind for e in pipeline.drain_events()]
    assert kinds.count("alert.flapping") == 1 and kinds.count("alert.flapping_stopped") == 1


def test_external_alerts_resolve_by_timeout() -> None:
    pipeline = Pipeline(SPEC)
    external = replace(CPU, source="alertmanager")
    pipeline.ingest([external], at(0))
    assert len(pipeline.tick(at(30))) == 1
    notes = run(pipeline, 40, 330 + 300)
    assert summary(notes) == [("ops", [], ["HighCPU"])]


def test_acknowledge_and_resolve_incidents_through_the_pipeline() -> None:
    pipeline = Pipeline(SPEC)
    pipeline.ingest([CPU, DOWN], at(0))
    (incident,) = pipeline.incidents("open")
    assert incident.severity == "critical" and len(incident.alerts) == 2
    assert pipeline.acknowledge(incident.id, "ana", at(5)).acknowledged_by == "ana"
    assert pipeline.resolve_incident(incident.id, "ana", at(6)).status == "resolved"
    assert pipeline.incidents("open") == []


@pytest.mark.parametrize(
    "bad",
    [
        {"route": {"matchers": ["a=1"], "receiver": "r"}},
        {"route": {}},
        {"maintenance_windows": [{"name": "a", "matchers": ["h=1"], "schedule": "0 * * * *", "duration": "1m"}] * 2},
        {"resolve_timeout": "soon"},
        {"unknown": True},
    ],
)
def test_bad_configuration_is_refused(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        PipelineSpec.model_validate(bad)


def _history(pipeline: Pipeline) -> list[Notification]:
    """Fire CPU and DOWN, notify, silence db2, open incidents: a state worth restoring."""
    pipeline.ingest([CPU, DOWN, replace(CPU, labels={**CPU.labels, "host": "db2"})], at(0))
    notes = run(pipeline, 0, 40)
    pipeline.silence('host="db2"', now=at(50), duration=timedelta(hours=2), created_by="ana")
    return notes


def test_restore_from_a_real_store_does_not_notify_twice_but_still_resolves(tmp_path: Path) -> None:
    live = Pipeline(SPEC)
    assert len(_history(live)) == 3
    with LocalStore(tmp_path / "qwq.duckdb") as store:
        store.record(live.drain_events())
        events = events_from_frame(store.sql(RESTORE_SQL))
    restored = Pipeline.restore(events, at(100), SPEC)
    assert run(restored, 100, 400) == []  # the receivers already know
    assert [v.to_dict() for v in restored.alerts(at(400))] == [v.to_dict() for v in live.alerts(at(400))]
    assert restored.silences(at(400)) == live.silences(at(400))
    assert [i.to_dict() for i in restored.incidents()] == [i.to_dict() for i in live.incidents()]
    restored.ingest([replace(CPU, status="resolved")], at(410))
    notes = run(restored, 410, 800)
    assert summary(notes) == [("ops", ["HostDown"], ["HighCPU"])]


def test_snapshot_round_trips_through_json() -> None:
    live = Pipeline(SPEC)
    _history(live)
    copy = Pipeline.from_snapshot(json.loads(json.dumps(live.snapshot())), SPEC)
    assert copy.snapshot() == live.snapshot()
    live.ingest([replace(DOWN, status="resolved")], at(60))
    copy.ingest([replace(DOWN, status="resolved")], at(60))
    assert summary(run(copy, 60, 700)) == summary(run(live, 60, 700))


DOCS = (Path(__file__).resolve().parents[3] / "docs" / "alerting-pipeline.md").read_text()
SECTIONS = {
    "### `[alerting]`": PipelineSpec,
    "### `[alerting.route]`": RouteSpec,
    "### `[[alerting.inhibit_rules]]`": InhibitRuleSpec,
    "### `[[alerting.maintenance_windows]]`": MaintenanceWindowSpec,
    "### `[alerting.flapping]`": FlapSpec,
    "### `[alerting.incidents]`": IncidentSpec,
}


@pytest.mark.parametrize("heading", SECTIONS)
def test_every_setting_is_documented_under_its_table(heading: str) -> None:
    section = DOCS.split(heading, 1)[1].split("\n### ", 1)[0]
    keys = [field.alias or name for name, field in SECTIONS[heading].model_fields.items()]
    missing = [key for key in keys if f"| `{key}` |" not in section]
    assert not missing, f"docs/alerting-pipeline.md does not document {missing} under {heading}"
