"""The alert registry: one record per fingerprint, full duplicates dropped and counted, changes applied.

Every report of an alert is compared with the last one kept for its fingerprint (Keep's full vs partial
duplicates):

- **new** — first report of the fingerprint (or first since its record was collected);
- **duplicate** — same content (:data:`CONTENT_FIELDS`): dropped, only counted;
- **updated** — same labels, changed content (status, annotations, value, times): the record takes the
  new report, and :attr:`Observation.changed` names what changed.

Counts (``received``, ``duplicates``, ``updates``) are kept per alert and in total. Resolved alerts are
forgotten (:meth:`Registry.collect`) ``retention`` after their last report; a firing alert whose
``ends_at`` (or resolve timeout) has passed is returned by :meth:`Registry.expired`, resolved, so that the
caller can put the resolution through the pipeline like any other report.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Literal

from analytics.alerting.model import Alert
from qwq_core.timeutil import as_utc

Outcome = Literal["new", "updated", "duplicate"]
CONTENT_FIELDS = ("status", "starts_at", "ends_at", "annotations", "value", "generator_url", "source")
"""What makes two reports of one fingerprint different content (labels are the identity)."""


@dataclass
class AlertRecord:
    """The newest report of one alert and how often it was reported."""

    alert: Alert
    first_seen: datetime
    last_seen: datetime
    received: int = 1
    duplicates: int = 0
    updates: int = 0
    deadline: datetime | None = None  # when it resolves by itself unless reported again

    @property
    def fingerprint(self) -> str:
        return self.alert.fingerprint


@dataclass(frozen=True)
class Observation:
    """What one report did to the registry."""

    outcome: Outcome
    record: AlertRecord
    changed: frozenset[str] = frozenset()
    previous: Alert | None = None


@dataclass
class Totals:
    """Counts over every report the registry has seen, including forgotten alerts."""

    received: int = 0
    duplicates: int = 0
    updates: int = 0


def _content(alert: Alert) -> tuple[Any, ...]:
    value = alert.value
    nan_safe = "nan" if value is not None and math.isnan(value) else value
    return tuple(nan_safe if name == "value" else _canonical(getattr(alert, name)) for name in CONTENT_FIELDS)


def _canonical(value: Any) -> Any:
    if isinstance(value, datetime):
        return as_utc(value)
    if isinstance(value, Mapping):
        return tuple(sorted(value.items()))
    return value


class Registry:
    """Alerts by fingerprint; :meth:`observe` classifies and applies each report.

    ``resolve_timeout`` (Alertmanager's): a firing alert reported without ``ends_at`` by a sender outside
    ``exempt_sources`` resolves that long after its last report — such senders (Alertmanager webhooks,
    generic JSON) re-send while a problem lasts and may never send the resolve. qwq's own rules (source
    ``qwq``) always report their resolution, so they are exempt.
    """

    def __init__(self, resolve_timeout: timedelta | None = None, exempt_sources: frozenset[str] = frozenset({"qwq"})):
        self.resolve_timeout = resolve_timeout
        self.exempt_sources = exempt_sources
        self._records: dict[str, AlertRecord] = {}
        self._deadlines: list[tuple[datetime, str]] = []  # (deadline, fingerprint), stale ones skipped
        self.totals = Totals()

    def observe(self, alert: Alert, now: datetime) -> Observation:
        """Record one report of ``alert`` received at ``now``."""
        fp = alert.fingerprint
        self.totals.received += 1
        record = self._records.get(fp)
        if record is None:
            record = self._records[fp] = AlertRecord(alert, now, now)
            self._schedule(record, now)
            return Observation("new", record)
        record.received += 1
        record.last_seen = now
        old, new = _content(record.alert), _content(alert)
        if old == new:
            record.duplicates += 1
            self.totals.duplicates += 1
            self._schedule(record, now)  # a re-sent alert is still there: its resolve timeout starts again
            return Observation("duplicate", record)
        changed = frozenset(name for name, a, b in zip(CONTENT_FIELDS, old, new, strict=True) if a != b)
        previous, record.alert = record.alert, alert
        record.updates += 1
        self.totals.updates += 1
        self._schedule(record, now)
        return Observation("updated", record, changed, previous)

    def _schedule(self, record: AlertRecord, now: datetime) -> None:
        record.deadline = self.deadline(record.alert, now)
        self.put(record)

    def deadline(self, alert: Alert, now: datetime) -> datetime | None:
        """When a firing ``alert`` reported at ``now`` resolves unless reported again (None: never by itself)."""
        if alert.status != "firing":
            return None
        if alert.ends_at is not None:
            return as_utc(alert.ends_at)
        if self.resolve_timeout is None or alert.source in self.exempt_sources:
            return None
        return now + self.resolve_timeout

    def expired(self, now: datetime) -> list[Observation]:
        """Resolve the firing alerts whose deadline has passed; one ``updated`` observation for each."""
        due: list[Observation] = []
        while self._deadlines and self._deadlines[0][0] <= now:
            deadline, fp = heapq.heappop(self._deadlines)
            record = self._records.get(fp)
            if record and record.alert.status == "firing" and record.deadline == deadline:
                previous = record.alert
                record.alert, record.deadline = replace(previous, status="resolved", ends_at=deadline), None
                record.updates += 1
                due.append(Observation("updated", record, frozenset({"status", "ends_at"}), previous))
        return due

    def collect(self, now: datetime, retention: timedelta) -> list[str]:
        """Forget resolved alerts last reported before ``now - retention``; their fingerprints."""
        horizon = now - retention
        gone = [fp for fp, r in self._records.items() if r.alert.status == "resolved" and r.last_seen < horizon]
        for fp in gone:
            del self._records[fp]
        return gone

    def get(self, fingerprint: str) -> AlertRecord | None:
        """The record of ``fingerprint``, if known."""
        return self._records.get(fingerprint)

    def records(self) -> list[AlertRecord]:
        """Every record, in first-seen order."""
        return list(self._records.values())

    def __len__(self) -> int:
        return len(self._records)

    def put(self, record: AlertRecord) -> None:
        """Insert or replace a record as it is, deadline included (restoring state)."""
        self._records[record.fingerprint] = record
        if record.deadline is not None:
            heapq.heappush(self._deadlines, (record.deadline, record.fingerprint))

    # ---- persistence -----------------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """The registry as JSON-serialisable data (see :meth:`from_snapshot`)."""
        return {
            "totals": vars(self.totals).copy(),
            "records": [record_to_dict(r) for r in self._records.values()],
        }

    @classmethod
    def from_snapshot(cls, data: Mapping[str, Any], resolve_timeout: timedelta | None = None) -> Registry:
        """A registry equal to the one :meth:`snapshot` was taken of."""
        registry = cls(resolve_timeout)
        registry.totals = Totals(**data["totals"])
        for item in data["records"]:
            registry.put(record_from_dict(item))
        return registry


# ---- serialisation (snapshots and event attrs) --------------------------------------------------------
def _time(value: datetime | None) -> str | None:
    return None if value is None else as_utc(value).isoformat()


def _parse_time(value: str) -> datetime:
    return as_utc(datetime.fromisoformat(value))


def _parse_optional_time(value: str | None) -> datetime | None:
    return None if value is None else _parse_time(value)


def alert_to_dict(alert: Alert) -> dict[str, Any]:
    """``alert`` as JSON-serialisable data, times as ISO 8601 UTC."""
    return {
        "fingerprint": alert.fingerprint,
        "labels": dict(alert.labels),
        "annotations": dict(alert.annotations),
        "status": alert.status,
        "starts_at": _time(alert.starts_at),
        "ends_at": _time(alert.ends_at),
        "source": alert.source,
        "generator_url": alert.generator_url,
        "value": alert.value,
    }


def alert_from_dict(data: Mapping[str, Any]) -> Alert:
    """The :class:`Alert` that :func:`alert_to_dict` made ``data`` from."""
    return Alert(
        labels=dict(data["labels"]),
        starts_at=_parse_time(data["starts_at"]),
        status=data["status"],
        annotations=dict(data.get("annotations") or {}),
        ends_at=_parse_optional_time(data.get("ends_at")),
        source=data.get("source", "qwq"),
        generator_url=data.get("generator_url", ""),
        value=data.get("value"),
    )


def record_to_dict(record: AlertRecord) -> dict[str, Any]:
    """A record as flat JSON-serialisable data: the alert's fields plus its times and counts."""
    return {
        **alert_to_dict(record.alert),
        "first_seen": _time(record.first_seen),
        "last_seen": _time(record.last_seen),
        "received": record.received,
        "duplicates": record.duplicates,
        "updates": record.updates,
        "deadline": _time(record.deadline),
    }


def record_from_dict(data: Mapping[str, Any]) -> AlertRecord:
    """The record :func:`record_to_dict` made ``data`` from."""
    return AlertRecord(
        alert=alert_from_dict(data),
        first_seen=_parse_time(data["first_seen"]),
        last_seen=_parse_time(data["last_seen"]),
        received=data["received"],
        duplicates=data["duplicates"],
        updates=data["updates"],
        deadline=_parse_optional_time(data.get("deadline")),
    )


__all__: Sequence[str] = [
    "CONTENT_FIELDS",
    "AlertRecord",
    "Observation",
    "Outcome",
    "Registry",
    "Totals",
    "alert_from_dict",
    "alert_to_dict",
    "record_from_dict",
    "record_to_dict",
]
