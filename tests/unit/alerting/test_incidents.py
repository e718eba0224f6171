"""Incidents: correlation by shared labels within a window or by topology; ack, resolve, rebuild from events."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from analytics.alerting.incidents import Incidents, IncidentSpec, Topology
from analytics.alerting.model import Alert
from qwq_core.errors import NotFoundError, QueryError
from qwq_core.model import Event

T0 = datetime(2026, 1, 1, tzinfo=UTC)
SPEC = IncidentSpec(
    window=timedelta(minutes=10),
    topology=[("host=db1", "container=web"), ("container=web", "site=shop")],
)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def alert(name: str, severity: str = "warning", status: str = "firing", **labels: str) -> Alert:
    return Alert({"alertname": name, "severity": severity, **labels}, T0, status=status)  # type: ignore[arg-type]


def feed(incidents: Incidents, *items: tuple[float, Alert]) -> list[Event]:
    events = []
    for minute, a in items:
        events += incidents.observe(a, at(minute))
    return events


def test_alerts_on_one_host_within_the_window_form_one_incident() -> None:
    incidents = Incidents(SPEC)
    feed(
        incidents,
        (0, alert("HighCPU", host="db1")),
        (5, alert("DiskFull", "critical", host="db1", device="sda")),
        (8, alert("HighCPU", host="db2")),
    )
    db2, db1 = incidents.find()
    assert len(db1.alerts) == 2 and db1.severity == "critical" and db1.title == "HighCPU on host db1"
    assert db2.alerts == {alert("HighCPU", host="db2").fingerprint: "firing"}
    assert [e.kind for e in db1.timeline] == ["incident.opened", "incident.alert_added"]


def test_an_alert_after_the_window_opens_a_new_incident() -> None:
    incidents = Incidents(SPEC)
    feed(incidents, (0, alert("HighCPU", host="db1")), (11, alert("DiskFull", host="db1")))
    assert len(incidents.find("open")) == 2


def test_topology_links_a_site_to_its_container_and_host() -> None:
    incidents = Incidents(SPEC)
    feed(
        incidents,
        (0, alert("HostDown", "critical", host="db1")),
        (1, alert("SiteDown", "error", site="shop")),  # no label in common, but below db1
        (2, alert("SiteDown", "error", site="blog")),  # not in the graph
    )
    blog, host = incidents.find()
    assert len(host.alerts) == 2 and host.severity == "critical"
    assert len(blog.alerts) == 1


def test_an_incident_resolves_itself_when_all_its_alerts_resolved() -> None:
    incidents = Incidents(SPEC)
    cpu, disk = alert("HighCPU", host="db1"), alert("DiskFull", host="db1")
    feed(incidents, (0, cpu), (1, disk), (2, replace(cpu, status="resolved")))
    (incident,) = incidents.find()
    assert incident.status == "open" and incident.alerts[cpu.fingerprint] == "resolved"
    feed(incidents, (3, replace(cpu, status="firing")), (4, replace(cpu, status="resolved")))
    events = feed(incidents, (5, replace(disk, status="resolved")))
    assert [e.kind for e in events] == ["incident.alert_changed", "incident.resolved"]
    assert incident.status == "resolved" and incident.resolved_by == "qwq" and incident.resolved_at == at(5)
    assert incidents.incident_of(cpu.fingerprint) is None
    feed(incidents, (20, cpu))  # a new problem well after the incident closed is a new incident
    assert len(incidents.find("open")) == 1 and incidents.find("open")[0].id != incident.id


def test_acknowledge_and_manual_resolve() -> None:
    incidents = Incidents(SPEC)
    feed(incidents, (0, alert("HighCPU", host="db1")))
    (incident,) = incidents.find()
    ack = incidents.acknowledge(incident.id, "ana", at(1))
    assert ack.kind == "incident.acknowledged" and (incident.acknowledged_by, incident.acknowledged_at) == (
        "ana",
        at(1),
    )
    done = incidents.resolve(incident.id, "bo", at(2))
    assert done.attrs == {"incident": incident.id, "by": "bo", "auto": False}
    assert incident.status == "resolved"
    with pytest.raises(QueryError, match="already resolved"):
        incidents.acknowledge(incident.id, "ana", at(3))
    with pytest.raises(NotFoundError):
        incidents.resolve("inc-nope", "ana", at(3))
    assert incident.to_dict()["timeline"][-1]["kind"] == "incident.resolved"


def test_resolved_alerts_outside_incidents_are_ignored() -> None:
    incidents = Incidents(SPEC)
    assert feed(incidents, (0, alert("HighCPU", status="resolved", host="db1"))) == []
    assert incidents.find() == []


def test_replaying_the_events_rebuilds_the_same_incidents() -> None:
    incidents = Incidents(SPEC)
    cpu = alert("HighCPU", host="db1")
    events = feed(
        incidents,
        (0, cpu),
        (1, alert("SiteDown", "error", site="shop")),
        (2, alert("HighCPU", host="db2")),
        (3, replace(cpu, status="resolved")),
    )
    events.append(incidents.acknowledge(incidents.find()[0].id, "ana", at(4)))
    rebuilt = Incidents(SPEC)
    for event in events:
        rebuilt.apply(event)
    assert [i.to_dict() for i in rebuilt.find()] == [i.to_dict() for i in incidents.find()]
    assert rebuilt.incident_of(cpu.fingerprint) == incidents.incident_of(cpu.fingerprint)
    assert incidents.events() == events


def test_resolved_incidents_are_forgotten_after_the_retention() -> None:
    incidents = Incidents(SPEC)
    feed(incidents, (0, alert("HighCPU", host="db1")), (1, alert("HighCPU", host="db2")))
    incidents.resolve(incidents.find()[0].id, "ana", at(2))
    incidents.collect(at(61), timedelta(hours=1))
    assert len(incidents.find()) == 2
    incidents.collect(at(63), timedelta(hours=1))
    assert [i.status for i in incidents.find()] == ["open"]


def test_topology_edges_are_validated() -> None:
    with pytest.raises(ValidationError, match="label=value"):
        IncidentSpec.model_validate({"topology": [["db1", "container=web"]]})
    graph = Topology([("host=a", "container=b"), ("container=b", "host=a")])  # cycles do not hang
    assert graph.ancestors("host=a") == {"container=b", "host=a"}


def test_an_alert_related_to_two_incidents_merges_them_into_the_oldest() -> None:
    incidents = Incidents(SPEC)
    site = alert("SiteDown", "error", site="shop")
    app = alert("AppDown", "critical", compose_project="shop-app")  # unrelated to the site, so far
    web = alert("ContainerDown", container="web", compose_project="shop-app")  # below the site's container
    events = feed(incidents, (0, site), (1, app), (2, web))
    assert [e.kind for e in events] == ["incident.opened", "incident.opened", "incident.alert_added", "incident.merged"]
    (merged,) = [i for i in incidents.find() if i.merged_into is not None]
    (whole,) = incidents.find("open")
    assert merged.merged_into == whole.id and merged.status == "resolved"
    assert len(whole.alerts) == 3 and whole.severity == "critical" and whole.title == "SiteDown on site shop"
    assert incidents.incident_of(app.fingerprint) == whole.id
    rebuilt = Incidents(SPEC)
    for event in incidents.events():
        rebuilt.apply(event)
    assert [i.to_dict() for i in rebuilt.find()] == [i.to_dict() for i in incidents.find()]


def test_an_alert_firing_again_soon_after_reopens_its_incident() -> None:
    incidents = Incidents(SPEC)
    cpu = alert("HighCPU", host="db1")
    feed(incidents, (0, cpu), (1, replace(cpu, status="resolved")))
    events = feed(incidents, (5, cpu))
    assert [e.kind for e in events] == ["incident.reopened"]
    (incident,) = incidents.find()
    assert incident.status == "open" and incident.resolved_at is None and incident.alerts[cpu.fingerprint] == "firing"
    feed(incidents, (6, replace(cpu, status="resolved")), (30, cpu))  # after the window: a new incident
    assert len(incidents.find()) == 2
