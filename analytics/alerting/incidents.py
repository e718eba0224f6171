"""Incidents: related alerts correlated into one thing to look at, with a timeline, acknowledgement and resolution.

A firing alert that belongs to no open incident joins the oldest open incident it is related to, else opens
a new one. Related means, within ``window`` of the incident's last activity:

- it shares a correlation label value with an alert of the incident (``host``, ``compose_project``,
  ``service`` by default: two alerts on ``host="db1"`` belong together), or
- the :class:`Topology` graph links them: one's node (``host=db1``, ``container=pg``, ``site=shop``) is an
  ancestor of, or equal to, the other's — so a site alert joins its container's, which joins its host's.

The incident's severity is the highest of its alerts' ``severity`` labels. When every alert of an incident has
resolved, the incident resolves itself; it can also be acknowledged and resolved by hand. If one of its
alerts fires again within ``window`` of the resolution, the incident reopens (a flapping problem stays one
incident); later, a firing alert opens a new one.

An alert related to several open incidents shows that they are one: the oldest absorbs the others, which
resolve as ``merged into`` it — so the incidents found do not depend on the order the alerts came in.

Every change is an ``incident.*`` event (``opened``, ``alert_added``, ``alert_changed``, ``merged``,
``acknowledged``, ``resolved``, ``reopened``), applied through :meth:`Incidents.apply` both live and when
replaying stored events after a restart, so the rebuilt state is the state that was lost. An incident's
timeline is its events.
"""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cache
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from analytics.alerting.model import Alert, AlertStatus
from qwq_core.errors import NotFoundError, QueryError
from qwq_core.model import Event, Severity
from qwq_core.settings import Duration
from qwq_core.timeutil import as_utc

IncidentStatus = Literal["open", "resolved"]
SEVERITY_RANK = {"debug": 1, "info": 2, "warning": 3, "error": 4, "critical": 5}
_WHERE = ("host", "compose_project", "service", "container", "site", "instance", "job")


# ---- topology ------------------------------------------------------------------------------------------
def node(label: str, value: str) -> str:
    """The topology node of a label value: ``host=db1``."""
    return f"{label}={value}"


class Topology:
    """A small directed graph of what runs on what (``host=db1`` → ``container=pg`` → ``site=shop``)."""

    def __init__(self, edges: Iterable[tuple[str, str]] = ()) -> None:
        self._parents: dict[str, set[str]] = {}
        for parent, child in edges:
            self._parents.setdefault(child, set()).add(parent)
            self._parents.setdefault(parent, set())
        self.ancestors = cache(self._ancestors)

    def nodes(self, labels: Mapping[str, str]) -> frozenset[str]:
        """The graph's nodes named by ``labels``."""
        return frozenset(n for k, v in labels.items() if v and (n := node(k, v)) in self._parents)

    def _ancestors(self, start: str) -> frozenset[str]:
        seen: set[str] = set()
        todo = deque(self._parents.get(start, ()))
        while todo:
            current = todo.popleft()
            if current not in seen:
                seen.add(current)
                todo.extend(self._parents.get(current, ()))
        return frozenset(seen)

    def below(self, upper: Iterable[str], lower: Iterable[str]) -> bool:
        """Whether a node of ``lower`` lies (strictly) below a node of ``upper``."""
        tops = set(upper)
        return any(tops & self.ancestors(n) for n in lower)

    def related(self, a: frozenset[str], b: frozenset[str]) -> bool:
        """Whether the node sets share a node or one lies below the other."""
        return bool(a & b) or self.below(a, b) or self.below(b, a)


def _edge(value: Any) -> tuple[str, str]:
    parent, child = value
    for text in (parent, child):
        label, sep, val = str(text).partition("=")
        if not sep or not label or not val:
            raise ValueError(f"topology node {text!r} is not of the form label=value")
    return str(parent), str(child)


# ---- configuration -------------------------------------------------------------------------------------
class IncidentSpec(BaseModel):
    """How alerts are correlated into incidents."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(default=True, description="correlate alerts into incidents")
    window: Duration = Field(default=timedelta(minutes=10), description="how long an incident stays open to join")
    correlate_by: list[str] = Field(
        default_factory=lambda: ["host", "compose_project", "service"],
        description="labels whose equal values make alerts related",
    )
    topology: list[tuple[str, str]] = Field(
        default_factory=list, description='edges ["host=db1", "container=pg"]: parent runs child'
    )

    @field_validator("topology", mode="before")
    @classmethod
    def _edges(cls, value: Any) -> list[tuple[str, str]]:
        return [_edge(item) for item in value]


# ---- incidents -----------------------------------------------------------------------------------------
@dataclass
class Incident:
    """One incident: its alerts and their current status, who acknowledged and resolved it, its timeline."""

    id: str
    title: str
    opened_at: datetime
    severity: str = ""
    status: IncidentStatus = "open"
    alerts: dict[str, AlertStatus] = field(default_factory=dict)
    keys: set[str] = field(default_factory=set)
    nodes: set[str] = field(default_factory=set)
    last_activity: datetime | None = None
    acknowledged_by: str | None = None
    acknowledged_at: datetime | None = None
    resolved_by: str | None = None
    resolved_at: datetime | None = None
    merged_into: str | None = None
    timeline: list[Event] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable summary (for the API), timeline included."""
        times = ("opened_at", "last_activity", "acknowledged_at", "resolved_at")
        data = {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in vars(self).items() if k in times}
        return {
            "id": self.id,
            "title": self.title,
            "severity": self.severity,
            "status": self.status,
            "alerts": dict(self.alerts),
            "acknowledged_by": self.acknowledged_by,
            "resolved_by": self.resolved_by,
            "merged_into": self.merged_into,
            **data,
            "timeline": [
                {"ts": e.ts.isoformat(), "kind": e.kind, "message": e.message, "attrs": dict(e.attrs)}
                for e in self.timeline
            ],
        }


def title_of(alert: Alert) -> str:
    """A short title: the ``summary`` annotation, else ``alertname on <where>``."""
    if alert.annotations.get("summary"):
        return alert.annotations["summary"]
    where = next((f"{k} {alert.labels[k]}" for k in _WHERE if alert.labels.get(k)), "")
    name = alert.name or alert.fingerprint
    return f"{name} on {where}" if where else name


_EVENT_SEVERITY: dict[str, Severity] = {"critical": "critical", "error": "error", "warning": "warning"}


def _event_severity(severity: str) -> Severity:
    return _EVENT_SEVERITY.get(severity, "info")


def _alert_attrs(alert: Alert) -> dict[str, Any]:
    return {"fingerprint": alert.fingerprint, "labels": dict(alert.labels), "status": alert.status}


def _raise_severity(incident: Incident, severity: str) -> None:
    """Keep the highest severity seen (an unknown one only while there is none)."""
    if SEVERITY_RANK.get(severity, 0) > SEVERITY_RANK.get(incident.severity, 0) or not incident.severity:
        incident.severity = severity or incident.severity


class Incidents:
    """Every incident by id, and which open incident each alert belongs to."""

    def __init__(self, spec: IncidentSpec | None = None, topology: Topology | None = None) -> None:
        self.spec = spec or IncidentSpec()
        self.topology = topology or Topology(self.spec.topology)
        self._items: dict[str, Incident] = {}
        self._open_of: dict[str, str] = {}  # fingerprint -> id of the open incident holding it
        self._last_of: dict[str, str] = {}  # fingerprint -> id of the latest incident it was part of

    # ---- decisions -------------------------------------------------------------------------------------
    def observe(self, alert: Alert, now: datetime) -> list[Event]:
        """Correlate one (new or changed) alert; the events it caused, already applied."""
        fp = alert.fingerprint
        held = self._open_of.get(fp)
        if held is not None:
            return self._change(self._items[held], alert, now)
        if alert.status != "firing":
            return []
        recent = self._recently_resolved(fp, now)
        if recent is not None:
            return self._reopen(recent, alert, now)
        related = self._related(alert, now)
        events = [self._added(related[0], alert, now) if related else self._opened(alert, now)]
        # an alert related to several incidents shows they are one: the oldest absorbs the others
        events += [self._merged(related[0], other, now) for other in related[1:]]
        for event in events:
            self.apply(event)
        return events

    def _opened(self, alert: Alert, now: datetime) -> Event:
        fp = alert.fingerprint
        ident = "inc-" + hashlib.sha256(f"{fp}|{as_utc(now).isoformat()}".encode()).hexdigest()[:10]
        title = title_of(alert)
        return Event(
            kind="incident.opened",
            message=f"incident {ident} opened: {title}",
            source="alerting",
            severity=_event_severity(alert.labels.get("severity", "")),
            attrs={"incident": ident, "title": title, **_alert_attrs(alert)},
            ts=now,
        )

    def _added(self, incident: Incident, alert: Alert, now: datetime) -> Event:
        return Event(
            kind="incident.alert_added",
            message=f"{title_of(alert)} joined incident {incident.id}",
            source="alerting",
            severity=_event_severity(alert.labels.get("severity", "")),
            attrs={"incident": incident.id, **_alert_attrs(alert)},
            ts=now,
        )

    def _merged(self, incident: Incident, other: Incident, now: datetime) -> Event:
        return Event(
            kind="incident.merged",
            message=f"incident {other.id} merged into {incident.id}",
            source="alerting",
            attrs={"incident": incident.id, "merged": other.id},
            ts=now,
        )

    def _change(self, incident: Incident, alert: Alert, now: datetime) -> list[Event]:
        fp = alert.fingerprint
        if incident.alerts[fp] == alert.status:
            return []
        events = [
            Event(
                kind="incident.alert_changed",
                message=f"{title_of(alert)} is {alert.status} (incident {incident.id})",
                source="alerting",
                attrs={"incident": incident.id, "fingerprint": fp, "status": alert.status},
                ts=now,
            )
        ]
        others = (s for f, s in incident.alerts.items() if f != fp)
        if alert.status == "resolved" and all(s == "resolved" for s in others):
            events.append(self._resolution(incident, "qwq", now, auto=True))
        for event in events:
            self.apply(event)
        return events

    def _recently_resolved(self, fp: str, now: datetime) -> Incident | None:
        incident = self._items.get(self._last_of.get(fp, ""))
        if incident is None or incident.resolved_at is None or now - incident.resolved_at > self.spec.window:
            return None
        return incident

    def _reopen(self, incident: Incident, alert: Alert, now: datetime) -> list[Event]:
        event = Event(
            kind="incident.reopened",
            message=f"incident {incident.id} reopened: {title_of(alert)} fires again",
            source="alerting",
            severity=_event_severity(alert.labels.get("severity", "")),
            attrs={"incident": incident.id, "fingerprint": alert.fingerprint, "status": alert.status},
            ts=now,
        )
        self.apply(event)
        return [event]

    def _related(self, alert: Alert, now: datetime) -> list[Incident]:
        """The open incidents active within the window that ``alert`` is related to, oldest first."""
        keys = self._keys(alert.labels)
        nodes = self.topology.nodes(alert.labels)
        related = [
            incident
            for incident in self._items.values()
            if incident.status == "open"
            and incident.last_activity is not None
            and now - incident.last_activity <= self.spec.window
            and (keys & incident.keys or self.topology.related(nodes, frozenset(incident.nodes)))
        ]
        return sorted(related, key=lambda i: (i.opened_at, i.id))

    def _keys(self, labels: Mapping[str, str]) -> set[str]:
        return {node(k, labels[k]) for k in self.spec.correlate_by if labels.get(k)}

    def acknowledge(self, incident_id: str, by: str, now: datetime) -> Event:
        """Acknowledge an open incident on behalf of ``by``; the ``incident.acknowledged`` event."""
        self._open(incident_id)
        event = Event(
            kind="incident.acknowledged",
            message=f"incident {incident_id} acknowledged by {by}",
            source="alerting",
            attrs={"incident": incident_id, "by": by},
            ts=now,
        )
        self.apply(event)
        return event

    def resolve(self, incident_id: str, by: str, now: datetime) -> Event:
        """Resolve an open incident by hand; the ``incident.resolved`` event."""
        event = self._resolution(self._open(incident_id), by, now, auto=False)
        self.apply(event)
        return event

    def _resolution(self, incident: Incident, by: str, now: datetime, *, auto: bool) -> Event:
        how = "all its alerts resolved" if auto else f"resolved by {by}"
        return Event(
            kind="incident.resolved",
            message=f"incident {incident.id} resolved: {how}",
            source="alerting",
            attrs={"incident": incident.id, "by": by, "auto": auto},
            ts=now,
        )

    def _open(self, incident_id: str) -> Incident:
        incident = self.get(incident_id)
        if incident.status != "open":
            raise QueryError(f"incident {incident_id} is already resolved")
        return incident

    # ---- state -----------------------------------------------------------------------------------------
    def apply(self, event: Event) -> None:
        """Apply one ``incident.*`` event: live, right after deciding it, or replaying stored ones."""
        attrs, ts = event.attrs, as_utc(event.ts)
        if event.kind == "incident.opened":
            self._items[attrs["incident"]] = Incident(attrs["incident"], attrs["title"], ts)
        incident = self._items.get(attrs.get("incident", ""))
        if incident is None:
            return
        incident.timeline.append(event)
        if event.kind in ("incident.opened", "incident.alert_added"):
            self._add(incident, attrs["fingerprint"], attrs["labels"], attrs["status"], ts)
        elif event.kind == "incident.alert_changed":
            incident.alerts[attrs["fingerprint"]] = attrs["status"]
            incident.last_activity = ts
        elif event.kind == "incident.acknowledged":
            incident.acknowledged_by, incident.acknowledged_at = attrs["by"], ts
        elif event.kind == "incident.resolved":
            incident.status, incident.resolved_by, incident.resolved_at = "resolved", attrs["by"], ts
            for fp in incident.alerts:
                self._open_of.pop(fp, None)
        elif event.kind == "incident.merged" and attrs["merged"] in self._items:
            self._merge(incident, self._items[attrs["merged"]], event)
        elif event.kind == "incident.reopened":
            incident.status, incident.resolved_by, incident.resolved_at = "open", None, None
            incident.alerts[attrs["fingerprint"]] = attrs["status"]
            incident.last_activity = ts
            self._open_of.update(dict.fromkeys(incident.alerts, incident.id))

    def _add(self, incident: Incident, fp: str, labels: Mapping[str, str], status: AlertStatus, ts: datetime) -> None:
        incident.alerts[fp] = status
        incident.keys |= self._keys(labels)
        incident.nodes |= self.topology.nodes(labels)
        incident.last_activity = ts
        _raise_severity(incident, labels.get("severity", ""))
        self._open_of[fp] = self._last_of[fp] = incident.id

    def _merge(self, incident: Incident, other: Incident, event: Event) -> None:
        ts = as_utc(event.ts)
        incident.alerts.update(other.alerts)
        incident.keys |= other.keys
        incident.nodes |= other.nodes
        incident.last_activity = ts
        _raise_severity(incident, other.severity)
        for fp in other.alerts:
            self._open_of[fp] = self._last_of[fp] = incident.id
        other.status, other.resolved_by, other.resolved_at = "resolved", f"merged into {incident.id}", ts
        other.merged_into = incident.id
        other.timeline.append(event)

    def get(self, incident_id: str) -> Incident:
        """The incident ``incident_id``; :class:`NotFoundError` if there is none."""
        try:
            return self._items[incident_id]
        except KeyError:
            raise NotFoundError(f"no incident {incident_id!r}") from None

    def find(self, status: IncidentStatus | None = None) -> list[Incident]:
        """Incidents (optionally only open or resolved ones), newest first."""
        chosen = [i for i in self._items.values() if status is None or i.status == status]
        return sorted(chosen, key=lambda i: (i.opened_at, i.id), reverse=True)

    def incident_of(self, fingerprint: str) -> str | None:
        """The id of the open incident holding alert ``fingerprint``, if any."""
        return self._open_of.get(fingerprint)

    def collect(self, now: datetime, retention: timedelta) -> None:
        """Forget incidents resolved before ``now - retention``."""
        old = [k for k, i in self._items.items() if i.resolved_at is not None and i.resolved_at < now - retention]
        for key in old:
            del self._items[key]

    def snapshot(self) -> list[dict[str, Any]]:
        """The incidents as JSON-serialisable data: their events (see :meth:`restore`)."""
        return [{**vars(e), "attrs": dict(e.attrs), "ts": as_utc(e.ts).isoformat()} for e in self.events()]

    def restore(self, data: Iterable[Mapping[str, Any]]) -> None:
        """Replay a :meth:`snapshot`."""
        for item in data:
            self.apply(Event(**{**item, "ts": as_utc(datetime.fromisoformat(item["ts"]))}))

    def events(self) -> list[Event]:
        """Every event of every incident kept, in order: replaying them with :meth:`apply` rebuilds the state."""
        unique = {id(e): e for i in self._items.values() for e in i.timeline}  # a merge is in two timelines
        return sorted(unique.values(), key=lambda e: as_utc(e.ts))


__all__: Sequence[str] = [
    "SEVERITY_RANK",
    "Incident",
    "IncidentSpec",
    "IncidentStatus",
    "Incidents",
    "Topology",
    "node",
    "title_of",
]
