"""The noise-reduction pipeline: alerts in; notifications, incidents and events out.

Alerts from rules and from external senders go through the same stages::

    ingest(alerts, now) → dedup (registry) → flap filter → routing → aggregation groups   + incidents
    tick(now)           → resolve timeouts, flapping that stopped → flush due groups, leaving out alerts
                          silenced (silences, maintenance windows) or inhibited at that moment → Notifications

Like Alertmanager, silences and inhibition are applied when a group is flushed, not when an alert arrives,
so a silence that ends or a source alert that resolves lets the muted alerts through at the next flush.

The pipeline is pure: it reads no clock (``now`` is passed in) and does no I/O. Every call that changes
something appends :class:`~qwq_core.model.Event` objects to an outbox; the caller records them
(``store.record(pipeline.drain_events())``) and delivers what :meth:`Pipeline.tick` returns. The events
are enough to rebuild the state after a restart (:meth:`Pipeline.restore`):

==========================  =========================================================================
event                       when
==========================  =========================================================================
``alert.received``          a new alert, or an alert's status changed (attrs: the alert and its counts)
``alert.flapping``          an alert started flapping and is held back; ``alert.flapping_stopped``
``silence.created``         a silence or maintenance window was added; ``silence.expired``
``incident.*``              ``opened``, ``alert_added``, ``alert_changed``, ``merged``, ``acknowledged``,
                            ``resolved``, ``reopened``
``notification.queued``     a group's notification was decided (attrs: receiver, group, fingerprints)
``notification.skipped``    a group's alerts all resolved but no resolve is to be sent
==========================  =========================================================================
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import polars as pl
from pydantic import BaseModel, ConfigDict, Field, model_validator

from analytics.alerting.dedup import AlertRecord, Observation, Registry, alert_to_dict, record_from_dict, record_to_dict
from analytics.alerting.flapping import FlapDetector, FlapSpec
from analytics.alerting.grouping import Flush, Groups
from analytics.alerting.incidents import Incident, Incidents, IncidentSpec, IncidentStatus, Topology
from analytics.alerting.inhibit import DEFAULT_INHIBIT_RULES, InhibitIndex, Inhibitor, InhibitRuleSpec
from analytics.alerting.model import Alert, AlertStatus, Notification
from analytics.alerting.routing import Route, RouteSpec, validate_root
from analytics.alerting.silences import MaintenanceWindowSpec, Silence, Silences, SilenceState, make_silence
from qwq_core.errors import QueryError
from qwq_core.model import Event, Severity, series_key
from qwq_core.settings import Duration
from qwq_core.timeutil import as_utc

SOURCE = "alerting"
RESTORE_KINDS = (
    "alert.received",
    "alert.flapping",
    "alert.flapping_stopped",
    "silence.created",
    "silence.expired",
    "incident.opened",
    "incident.alert_added",
    "incident.alert_changed",
    "incident.merged",
    "incident.acknowledged",
    "incident.resolved",
    "incident.reopened",
    "notification.queued",
    "notification.skipped",
)
"""The event kinds :meth:`Pipeline.restore` reads."""
RESTORE_SQL = (
    "SELECT id, ts, kind, source, severity, message, attrs FROM events WHERE kind IN ("
    + ", ".join(f"'{kind}'" for kind in RESTORE_KINDS)  # constants, not user input
    + ") ORDER BY id"
)
"""A query for ``Store.sql`` that reads those events; :func:`events_from_frame` turns its answer into events."""
AlertFilter = Literal["firing", "resolved", "active", "suppressed", "flapping"]
_COLLECT_EVERY = timedelta(minutes=1)


class PipelineSpec(BaseModel):
    """The pipeline's configuration (the integrator places it under ``[alerting]``)."""

    model_config = ConfigDict(extra="forbid")

    route: RouteSpec = Field(default_factory=lambda: RouteSpec(receiver="default"), description="routing tree")
    inhibit_rules: list[InhibitRuleSpec] = Field(
        default_factory=lambda: list(DEFAULT_INHIBIT_RULES), description="inhibition rules"
    )
    maintenance_windows: list[MaintenanceWindowSpec] = Field(default_factory=list, description="recurring silences")
    flapping: FlapSpec = Field(default_factory=FlapSpec)
    incidents: IncidentSpec = Field(default_factory=IncidentSpec)
    resolve_timeout: Duration = Field(
        default=timedelta(minutes=5), description="external alerts not re-sent for this long resolve"
    )
    retention: Duration = Field(
        default=timedelta(hours=24),
        description="how long resolved alerts and incidents, expired silences and old notification logs are kept",
    )

    @model_validator(mode="after")
    def _consistent(self) -> PipelineSpec:
        try:
            validate_root(self.route)
        except QueryError as exc:
            raise ValueError(str(exc)) from None
        names = [w.name for w in self.maintenance_windows]
        if len(names) != len(set(names)):
            raise ValueError("maintenance window names must be unique")
        return self


@dataclass(frozen=True)
class Intake:
    """What one :meth:`Pipeline.ingest` did with the alerts it was given."""

    received: int = 0
    new: int = 0
    updated: int = 0
    duplicates: int = 0
    held: int = 0


@dataclass(frozen=True)
class AlertView:
    """An alert as the pipeline sees it now: newest report, counts, and why it is (not) notified."""

    record: AlertRecord
    flapping: bool
    silenced_by: tuple[str, ...]
    inhibited_by: str | None
    incident: str | None

    @property
    def alert(self) -> Alert:
        return self.record.alert

    @property
    def status(self) -> AlertStatus:
        return self.record.alert.status

    @property
    def suppressed(self) -> bool:
        """Firing but muted by a silence or an inhibiting alert."""
        return self.status == "firing" and bool(self.silenced_by or self.inhibited_by)

    def is_(self, state: AlertFilter) -> bool:
        """Whether the alert is in ``state``; ``active`` = firing, not suppressed and not flapping."""
        if state == "suppressed":
            return self.suppressed
        if state == "flapping":
            return self.flapping
        if state == "active":
            return self.status == "firing" and not self.suppressed and not self.flapping
        return self.status == state

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (for the API)."""
        record = self.record
        return {
            **alert_to_dict(record.alert),
            "first_seen": record.first_seen.isoformat(),
            "last_seen": record.last_seen.isoformat(),
            "received": record.received,
            "duplicates": record.duplicates,
            "updates": record.updates,
            "flapping": self.flapping,
            "silenced_by": list(self.silenced_by),
            "inhibited_by": self.inhibited_by,
            "incident": self.incident,
        }


class Pipeline:
    """Dedup, flap filter, routing, grouping, inhibition, silences and incidents, composed."""

    def __init__(
        self,
        spec: PipelineSpec | None = None,
        *,
        send_resolved: Mapping[str, bool] | None = None,
        topology: Topology | None = None,
    ) -> None:
        """``send_resolved`` per receiver name (default on); ``topology`` replaces the configured edges."""
        self.spec = spec or PipelineSpec()
        self.root = Route.build(self.spec.route)
        self.topology = topology or Topology(self.spec.incidents.topology)
        self.registry = Registry(self.spec.resolve_timeout)
        self.flaps = FlapDetector(self.spec.flapping)
        self.inhibitor = Inhibitor(self.spec.inhibit_rules, self.topology)
        self.silencer = Silences(window.to_silence() for window in self.spec.maintenance_windows)
        resolved = dict(send_resolved or {})
        self.groups = Groups(lambda receiver: resolved.get(receiver, True))
        self.correlator = Incidents(self.spec.incidents, self.topology)
        self._outbox: list[Event] = []
        self._last_collect: datetime | None = None

    # ---- the flow --------------------------------------------------------------------------------------
    def ingest(self, alerts: Iterable[Alert], now: datetime) -> Intake:
        """Take reports of alerts (from rules or external senders) received at ``now``."""
        now = as_utc(now)
        counts = Counter(self._take(self.registry.observe(alert, now), now) for alert in alerts)
        return Intake(sum(counts.values()), counts["new"], counts["updated"], counts["duplicate"], counts["held"])

    def _take(self, observation: Observation, now: datetime) -> str:
        if observation.outcome == "duplicate":
            return "duplicate"
        record = observation.record
        changed = observation.outcome == "new" or "status" in observation.changed
        if changed:
            self._emit(_received_event(record, now))
        held, event = self.flaps.observe(record.alert, changed, now)
        if event is not None:  # like Nagios' FLAPPINGSTART: the receiver hears once that it flaps
            self._emit(event)
            self._forward(flapping(record.alert), now)
        if held:
            return "held"
        self._forward(record.alert, now)
        return observation.outcome

    def _forward(self, alert: Alert, now: datetime) -> None:
        self.groups.insert(alert, self.root.match(alert.labels), now)
        if self.spec.incidents.enabled:
            self._outbox.extend(self.correlator.observe(alert, now))

    def tick(self, now: datetime) -> list[Notification]:
        """Advance to ``now``: resolve timed-out alerts, release alerts that stopped flapping, flush due groups.

        Returns the notifications to deliver now, ordered by group key.
        """
        now = as_utc(now)
        for observation in self.registry.expired(now):
            self._take(observation, now)
        for fp, event in self.flaps.tick(now):
            self._emit(event)
            record = self.registry.get(fp)
            if record is not None:
                self._forward(record.alert, now)
        notifications = []
        due = self.groups.next_due()
        if due is not None and due <= now:
            for flush in self.groups.flush_due(now, self._muter(now)):
                self._emit(_flush_event(flush, now))
                if flush.notification is not None:
                    notifications.append(flush.notification)
        self._collect(now)
        return notifications

    def _forwarded(self) -> list[Alert]:
        """The alerts as the groups hold them (a flapping one as its held, firing version)."""
        seen: dict[str, Alert] = {}
        for group in self.groups.groups.values():
            seen.update(group.alerts)
        return list(seen.values())

    def _muter(self, now: datetime) -> Callable[[Alert], bool]:
        silences = self.silencer.in_force(now)
        index = self.inhibitor.index(self._forwarded())
        verdicts: dict[str, bool] = {}

        def muted(alert: Alert) -> bool:
            fp = alert.fingerprint
            if fp not in verdicts:
                verdicts[fp] = bool(silences.matching(alert.labels)) or index.inhibited_by(alert) is not None
            return verdicts[fp]

        return muted

    def _collect(self, now: datetime) -> None:
        if self._last_collect is not None and now - self._last_collect < _COLLECT_EVERY:
            return
        self._last_collect = now
        self.registry.collect(now, self.spec.retention)
        self.correlator.collect(now, self.spec.retention)
        self.silencer.collect(now, self.spec.retention)
        self.groups.collect(now, self.spec.retention)

    def _emit(self, event: Event) -> None:
        self._outbox.append(event)

    def drain_events(self) -> list[Event]:
        """The events produced since the last call, in order, for the caller to record."""
        events, self._outbox = self._outbox, []
        return events

    def set_topology(self, topology: Topology) -> None:
        """Replace the topology graph (e.g. rebuilt from what the collectors found)."""
        self.topology = self.inhibitor.topology = self.correlator.topology = topology

    # ---- silences and incidents ------------------------------------------------------------------------
    def silence(
        self,
        matchers: str | Sequence[str],
        *,
        now: datetime,
        ends_at: datetime | None = None,
        starts_at: datetime | None = None,
        duration: timedelta | None = None,
        created_by: str = "",
        comment: str = "",
        schedule: str | None = None,
        timezone: str = "UTC",
    ) -> Silence:
        """Add a silence from ``starts_at`` (default ``now``) to ``ends_at`` or for ``duration``.

        With a cron ``schedule`` it is a maintenance window instead: muting for ``duration`` from each time
        the schedule fires (read in ``timezone``), from ``starts_at`` until ``ends_at`` (default forever).
        """
        now = as_utc(now)
        start = as_utc(starts_at) if starts_at is not None else now
        if schedule is None and ends_at is None and duration is not None:
            ends_at, duration = start + duration, None
        silence = make_silence(
            matchers, start, ends_at, created_by, comment, schedule=schedule, duration=duration, timezone=timezone
        )
        self._emit(self.silencer.add(silence, now))
        return silence

    def expire_silence(self, silence_id: str, now: datetime) -> Silence:
        """End a silence now (see :meth:`Silences.expire`)."""
        self._emit(self.silencer.expire(silence_id, as_utc(now)))
        return self.silencer.get(silence_id)

    def silences(self, now: datetime, state: SilenceState | None = None) -> list[Silence]:
        """Silences and maintenance windows, optionally only those ``pending``, ``active`` or ``expired``."""
        return self.silencer.find(as_utc(now), state)

    def acknowledge(self, incident_id: str, by: str, now: datetime) -> Incident:
        """Acknowledge an open incident."""
        self._emit(self.correlator.acknowledge(incident_id, by, as_utc(now)))
        return self.correlator.get(incident_id)

    def resolve_incident(self, incident_id: str, by: str, now: datetime) -> Incident:
        """Resolve an open incident by hand."""
        self._emit(self.correlator.resolve(incident_id, by, as_utc(now)))
        return self.correlator.get(incident_id)

    def incidents(self, status: IncidentStatus | None = None) -> list[Incident]:
        """Incidents, newest first, optionally only ``open`` or ``resolved`` ones."""
        return self.correlator.find(status)

    def alerts(self, now: datetime, state: AlertFilter | None = None) -> list[AlertView]:
        """Every alert known (firing, or resolved within ``retention``), optionally only those in ``state``."""
        now = as_utc(now)
        silences = self.silencer.in_force(now)
        index = self.inhibitor.index(self._forwarded())
        flapping = set(self.flaps.flapping())
        views = [self._view(record, silences, index, flapping) for record in self.registry.records()]
        return [view for view in views if state is None or view.is_(state)]

    def _view(self, record: AlertRecord, silences: Silences, index: InhibitIndex, flapping: set[str]) -> AlertView:
        alert = record.alert
        return AlertView(
            record=record,
            flapping=record.fingerprint in flapping,
            silenced_by=tuple(silences.matching(alert.labels)),
            inhibited_by=index.inhibited_by(alert),
            incident=self.correlator.incident_of(record.fingerprint),
        )

    # ---- persistence -----------------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """The whole state as JSON-serialisable data (:meth:`from_snapshot`); windows from the spec left out."""
        return {
            "registry": self.registry.snapshot(),
            "flapping": self.flaps.snapshot(),
            "silences": [s for s in self.silencer.snapshot() if s["created_by"] != "configuration"],
            "incidents": self.correlator.snapshot(),
            "groups": self.groups.snapshot(),
        }

    @classmethod
    def from_snapshot(
        cls,
        data: Mapping[str, Any],
        spec: PipelineSpec | None = None,
        *,
        send_resolved: Mapping[str, bool] | None = None,
        topology: Topology | None = None,
    ) -> Pipeline:
        """A pipeline in the state :meth:`snapshot` captured (with ``spec``'s routes and windows)."""
        pipeline = cls(spec, send_resolved=send_resolved, topology=topology)
        pipeline.registry = Registry.from_snapshot(data["registry"], pipeline.spec.resolve_timeout)
        pipeline.flaps = FlapDetector.from_snapshot(data["flapping"], pipeline.spec.flapping)
        for silence in Silences.from_snapshot(data["silences"]).find(datetime.min.replace(tzinfo=UTC)):
            pipeline.silencer.add(silence, silence.starts_at)
        pipeline.correlator.restore(data["incidents"])
        pipeline.groups = Groups.from_snapshot(data["groups"], pipeline.root, pipeline.groups.send_resolved)
        return pipeline

    @classmethod
    def restore(
        cls,
        events: Iterable[Event],
        now: datetime,
        spec: PipelineSpec | None = None,
        *,
        send_resolved: Mapping[str, bool] | None = None,
        topology: Topology | None = None,
    ) -> Pipeline:
        """Rebuild a pipeline at ``now`` from its recorded events (kinds :data:`RESTORE_KINDS`), oldest first.

        Alerts, flapping, silences, incidents and what each group was last told come back as recorded;
        groups are re-formed from the alerts and flush at the next tick, notifying only what their
        receivers were not told yet. Per-alert counts are as of the alert's last status change.
        """
        pipeline = cls(spec, send_resolved=send_resolved, topology=topology)
        statuses: dict[str, str] = {}
        for event in sorted(events, key=lambda e: as_utc(e.ts)):
            pipeline._replay(event, statuses)
        pipeline._resume(as_utc(now))
        return pipeline

    def _replay(self, event: Event, statuses: dict[str, str]) -> None:
        kind, attrs, ts = event.kind, event.attrs, as_utc(event.ts)
        if kind == "alert.received":
            record = record_from_dict(attrs)
            if statuses.get(record.fingerprint) != record.alert.status:
                self.flaps.record(record.fingerprint, ts)
                statuses[record.fingerprint] = record.alert.status
            self.registry.put(record)
        elif kind in ("alert.flapping", "alert.flapping_stopped"):
            self.flaps.apply(event)
        elif kind.startswith("silence."):
            self.silencer.apply(event)
        elif kind.startswith("incident."):
            self.correlator.apply(event)
        elif kind in ("notification.queued", "notification.skipped"):
            self.groups.remember(attrs["group_key"], frozenset(attrs["firing"]), frozenset(attrs["resolved"]), ts)

    def _resume(self, now: datetime) -> None:
        self.registry.collect(now, self.spec.retention)
        flapping_now = set(self.flaps.flapping())
        for record in self.registry.records():
            record.deadline = self.registry.deadline(record.alert, now)  # senders get a fresh resolve timeout
            self.registry.put(record)
            alert = flapping(record.alert) if record.fingerprint in flapping_now else record.alert
            self.groups.insert(alert, self.root.match(alert.labels), now)
        self.registry.totals.received = sum(r.received for r in self.registry.records())
        self.registry.totals.duplicates = sum(r.duplicates for r in self.registry.records())
        self.registry.totals.updates = sum(r.updates for r in self.registry.records())


def flapping(alert: Alert) -> Alert:
    """The version of a flapping alert the groups hold while it flaps: firing, annotated ``flapping``."""
    return replace(alert, status="firing", ends_at=None, annotations={**alert.annotations, "flapping": "true"})


# ---- events --------------------------------------------------------------------------------------------
_SEVERITY: dict[str, Severity] = {"critical": "critical", "error": "error", "warning": "warning"}


def _received_event(record: AlertRecord, now: datetime) -> Event:
    alert = record.alert
    severity = _SEVERITY.get(alert.labels.get("severity", ""), "info") if alert.status == "firing" else "info"
    return Event(
        kind="alert.received",
        message=f"{alert.name or record.fingerprint} {alert.status} {series_key('', alert.labels)}",
        source=SOURCE,
        severity=severity,
        attrs=record_to_dict(record),
        ts=now,
    )


def _flush_event(flush: Flush, now: datetime) -> Event:
    note = flush.notification
    firing = sorted(flush.entry.firing)
    resolved = sorted(a.fingerprint for a in note.resolved) if note else []
    where = series_key("", flush.group_labels)
    if note is None:
        message = f"nothing to send to {flush.receiver} for {where}: all resolved"
    else:
        message = f"{len(firing)} firing, {len(resolved)} resolved to {flush.receiver} for {where}"
    return Event(
        kind="notification.queued" if note else "notification.skipped",
        message=message,
        source=SOURCE,
        attrs={
            "receiver": flush.receiver,
            "group_key": flush.group_key,
            "group_labels": dict(flush.group_labels),
            "firing": firing,
            "resolved": resolved,
        },
        ts=now,
    )


def events_from_frame(frame: pl.DataFrame) -> list[Event]:
    """Events from a frame of the events table (``Store.events``/``Store.sql``), oldest first."""
    rows = frame.sort("id").to_dicts() if "id" in frame.columns else frame.to_dicts()
    return [
        Event(
            kind=row["kind"],
            message=row.get("message") or "",
            source=row.get("source") or "qwq",
            severity=row.get("severity") or "info",
            attrs=json.loads(row["attrs"]) if isinstance(row["attrs"], str) else dict(row["attrs"] or {}),
            ts=as_utc(row["ts"]),
        )
        for row in rows
    ]


__all__: Sequence[str] = [
    "RESTORE_KINDS",
    "RESTORE_SQL",
    "AlertFilter",
    "AlertView",
    "Intake",
    "Pipeline",
    "PipelineSpec",
    "events_from_frame",
]
