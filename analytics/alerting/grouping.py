"""Aggregation groups and their timers, with Alertmanager's semantics.

An alert routed to a route joins the group of its :meth:`~analytics.alerting.routing.Route.group_key`
(route plus the values of the route's ``group_by`` labels). A new group is flushed first ``group_wait``
after it was created — at once if its alert started more than ``group_wait`` ago — and then every
``group_interval``. A flush leaves out muted (silenced or inhibited) alerts and asks :func:`needs_update`
whether the receiver must hear about the rest:

- never notified before: only if something fires;
- the firing set is not a subset of the last notified firing set (something new fires);
- nothing fires any more but something did at the last notification (the "all resolved" message);
- ``send_resolved`` is on and an alert of the last notified firing set has resolved;
- otherwise only once ``repeat_interval`` has passed since the last notification.

A notification's ``resolved`` part only ever holds alerts that an earlier notification of the group sent
as firing, and only for receivers with ``send_resolved``. Resolved alerts leave their group after every
flush, and a group with no alerts left is dropped; what was last notified (the notification log) is kept per
group key, so a group that comes back is not re-notified about what the receiver already knows.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from analytics.alerting.dedup import alert_from_dict, alert_to_dict
from analytics.alerting.model import Alert, Notification
from analytics.alerting.routing import Route
from qwq_core.timeutil import as_utc


@dataclass(frozen=True)
class LogEntry:
    """What a group's receiver was last told: fingerprints firing and resolved, and when."""

    firing: frozenset[str]
    resolved: frozenset[str]
    ts: datetime


def needs_update(
    entry: LogEntry | None,
    firing: frozenset[str],
    resolved: frozenset[str],
    now: datetime,
    repeat_interval: timedelta,
    send_resolved: bool,
) -> bool:
    """Whether a flush with these ``firing``/``resolved`` fingerprints must notify (Alertmanager's dedup)."""
    if entry is None:
        return bool(firing)
    if not firing <= entry.firing:
        return True
    if not firing:
        return bool(entry.firing)
    if send_resolved and resolved & entry.firing:
        return True
    return now - entry.ts >= repeat_interval


def alert_order(alert: Alert) -> tuple[tuple[str, str], ...]:
    """The order of alerts within a notification: by their sorted labels, so arrival order does not matter."""
    return tuple(sorted(alert.labels.items()))


@dataclass
class Group:
    """One aggregation group: its route, identifying labels, current alerts and the time of its next flush."""

    key: str
    route: Route
    labels: dict[str, str]
    next_flush: datetime
    alerts: dict[str, Alert] = field(default_factory=dict)
    flushed: bool = False


@dataclass(frozen=True)
class Flush:
    """One flush that changed the notification log: the new entry and the notification, if any was due."""

    group_key: str
    receiver: str
    group_labels: Mapping[str, str]
    entry: LogEntry
    notification: Notification | None


Muted = Callable[[Alert], bool]
"""Whether an alert is muted (silenced or inhibited) at the moment of a flush."""


class Groups:
    """Every aggregation group plus the notification log; :meth:`tick` flushes the groups that are due."""

    def __init__(self, send_resolved: Callable[[str], bool] = lambda receiver: True) -> None:
        self.send_resolved = send_resolved
        self.groups: dict[str, Group] = {}
        self.log: dict[str, LogEntry] = {}

    def insert(self, alert: Alert, routes: Sequence[Route], now: datetime) -> None:
        """Put (the newest version of) ``alert`` into its group on each of ``routes``."""
        for route in routes:
            key = route.group_key(alert.labels)
            group = self.groups.get(key)
            if group is None:
                labels = route.group_labels(alert.labels)
                group = self.groups[key] = Group(key, route, labels, now + route.group_wait)
            group.alerts[alert.fingerprint] = alert
            if not group.flushed and as_utc(alert.starts_at) + route.group_wait <= now:
                group.next_flush = min(group.next_flush, now)  # an old alert need not wait for company

    def next_due(self) -> datetime | None:
        """When the next group is due to flush (None without groups)."""
        return min((g.next_flush for g in self.groups.values()), default=None)

    def tick(self, now: datetime, muted: Muted = lambda alert: False) -> list[Notification]:
        """Flush every group due at ``now``; the notifications to send, ordered by group key."""
        return [f.notification for f in self.flush_due(now, muted) if f.notification is not None]

    def flush_due(self, now: datetime, muted: Muted = lambda alert: False) -> list[Flush]:
        """Flush every group due at ``now``; the flushes that updated the log, ordered by group key.

        A log update without a notification happens when everything resolved but no resolve is to be sent
        (``send_resolved`` off, or the resolved alerts muted): it must still be recorded, or a restart would
        forget that the receiver's firing alerts are gone.
        """
        due = sorted(key for key, group in self.groups.items() if group.next_flush <= now)
        flushes = [self._flush(self.groups[key], now, muted) for key in due]
        return [flush for flush in flushes if flush is not None]

    def _flush(self, group: Group, now: datetime, muted: Muted) -> Flush | None:
        alerts = sorted(group.alerts.values(), key=alert_order)
        shown = [alert for alert in alerts if not muted(alert)]
        firing = [alert for alert in shown if alert.status == "firing"]
        resolved = [alert for alert in shown if alert.status == "resolved"]
        firing_fps = frozenset(alert.fingerprint for alert in firing)
        resolved_fps = frozenset(alert.fingerprint for alert in resolved)
        entry = self.log.get(group.key)
        receiver = group.route.receiver
        send_resolved = self.send_resolved(receiver)
        flush = None
        if needs_update(entry, firing_fps, resolved_fps, now, group.route.repeat_interval, send_resolved):
            told = entry.firing if entry and send_resolved else frozenset()
            resolves = tuple(alert for alert in resolved if alert.fingerprint in told)
            note = None
            if firing or resolves:
                note = Notification(receiver, group.key, group.labels, tuple(firing), resolves, now)
            self.log[group.key] = LogEntry(firing_fps, resolved_fps, now)
            flush = Flush(group.key, receiver, group.labels, self.log[group.key], note)
        for alert in alerts:
            if alert.status == "resolved":
                del group.alerts[alert.fingerprint]
        group.flushed = True
        group.next_flush = now + group.route.group_interval
        if not group.alerts:
            del self.groups[group.key]
        return flush

    def collect(self, now: datetime, retention: timedelta) -> None:
        """Forget log entries older than ``retention`` of groups that no longer exist.

        Such a group's alerts all resolved and were flushed, so its entry lists nothing firing: a group
        that comes back is notified with or without it.
        """
        stale = [k for k, e in self.log.items() if k not in self.groups and e.ts < now - retention]
        for key in stale:
            del self.log[key]

    # ---- persistence -----------------------------------------------------------------------------------
    def remember(self, group_key: str, firing: frozenset[str], resolved: frozenset[str], ts: datetime) -> None:
        """Restore one notification-log entry (from a recorded flush)."""
        self.log[group_key] = LogEntry(firing, resolved, ts)

    def snapshot(self) -> dict[str, Any]:
        """Groups and log as JSON-serialisable data (see :meth:`from_snapshot`)."""
        return {
            "groups": [
                {
                    "key": g.key,
                    "route": g.route.key,
                    "labels": g.labels,
                    "next_flush": g.next_flush.isoformat(),
                    "flushed": g.flushed,
                    "alerts": [alert_to_dict(a) for a in g.alerts.values()],
                }
                for g in self.groups.values()
            ],
            "log": {
                key: {"firing": sorted(e.firing), "resolved": sorted(e.resolved), "ts": e.ts.isoformat()}
                for key, e in self.log.items()
            },
        }

    @classmethod
    def from_snapshot(
        cls, data: Mapping[str, Any], root: Route, send_resolved: Callable[[str], bool] = lambda receiver: True
    ) -> Groups:
        """Groups as snapshotted; a group whose route no longer exists has its alerts routed afresh."""
        groups = cls(send_resolved)
        routes = {route.key: route for route in root.walk()}
        for item in data["groups"]:
            alerts = [alert_from_dict(a) for a in item["alerts"]]
            next_flush = as_utc(datetime.fromisoformat(item["next_flush"]))
            route = routes.get(item["route"])
            if route is None or route.group_key(alerts[0].labels) != item["key"]:
                for alert in alerts:
                    groups.insert(alert, root.match(alert.labels), next_flush)
                continue
            group = Group(item["key"], route, dict(item["labels"]), next_flush, flushed=item["flushed"])
            group.alerts = {a.fingerprint: a for a in alerts}
            groups.groups[group.key] = group
        for key, e in data["log"].items():
            ts = as_utc(datetime.fromisoformat(e["ts"]))
            groups.remember(key, frozenset(e["firing"]), frozenset(e["resolved"]), ts)
        return groups


__all__: Sequence[str] = ["Flush", "Group", "Groups", "LogEntry", "Muted", "alert_order", "needs_update"]
