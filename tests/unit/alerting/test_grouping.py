"""Aggregation groups flush on Alertmanager's timers and notify only when the receiver needs to hear."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from analytics.alerting.grouping import Groups, LogEntry, needs_update
from analytics.alerting.model import Alert
from analytics.alerting.routing import Route, RouteSpec

T0 = datetime(2026, 1, 1, tzinfo=UTC)
ROOT = Route.build(
    RouteSpec(
        receiver="ops",
        group_by=["host"],
        group_wait=timedelta(seconds=30),
        group_interval=timedelta(minutes=5),
        repeat_interval=timedelta(hours=4),
    )
)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def alert(name: str, host: str = "db1", start: float = 0, status: str = "firing") -> Alert:
    return Alert({"alertname": name, "host": host}, at(start), status=status)  # type: ignore[arg-type]


def resolved(a: Alert) -> Alert:
    return replace(a, status="resolved")


def add(groups: Groups, a: Alert, now: float) -> None:
    groups.insert(a, ROOT.match(a.labels), at(now))


def names(alerts: tuple[Alert, ...]) -> list[str]:
    return [a.name for a in alerts]


def test_first_flush_after_group_wait_collects_what_arrived_meanwhile() -> None:
    groups = Groups()
    add(groups, alert("A"), 0)
    add(groups, alert("B", start=20), 20)
    add(groups, alert("C", host="db2", start=25), 25)
    assert groups.tick(at(29)) == []
    notes = groups.tick(at(30))
    assert [(n.group_labels, names(n.firing)) for n in notes] == [({"host": "db1"}, ["A", "B"])]
    (other,) = groups.tick(at(55))  # db2's group waits its own group_wait
    assert other.group_labels == {"host": "db2"} and other.receiver == "ops"


def test_later_changes_wait_for_group_interval_and_unchanged_groups_for_repeat_interval() -> None:
    groups = Groups()
    add(groups, alert("A"), 0)
    assert len(groups.tick(at(30))) == 1
    add(groups, alert("B", start=40), 40)
    assert groups.tick(at(41)) == [] and groups.tick(at(329)) == []
    (update,) = groups.tick(at(330))
    assert names(update.firing) == ["A", "B"]
    for flush in range(630, 330 + 4 * 3600, 300):  # every group_interval: nothing new to say
        assert groups.tick(at(flush)) == []
    (repeat,) = groups.tick(at(330 + 4 * 3600))
    assert names(repeat.firing) == ["A", "B"]


def test_an_alert_that_started_long_ago_does_not_wait_for_group_wait() -> None:
    groups = Groups()
    add(groups, alert("Old", start=-3600), 0)
    assert len(groups.tick(at(0))) == 1


@pytest.mark.parametrize("send_resolved", [True, False])
def test_resolves_are_sent_only_for_alerts_notified_firing_and_only_with_send_resolved(send_resolved: bool) -> None:
    groups = Groups(lambda receiver: send_resolved)
    a, b, c = alert("A"), alert("B"), alert("C")
    add(groups, a, 0)
    add(groups, b, 0)
    groups.tick(at(30))
    add(groups, c, 40)  # fires and resolves between two flushes: the receiver never heard of it
    add(groups, resolved(c), 50)
    add(groups, resolved(a), 60)
    notes = groups.tick(at(330))
    if send_resolved:
        (note,) = notes
        assert names(note.firing) == ["B"] and names(note.resolved) == ["A"]
    else:
        assert notes == []  # B is still known to be firing; A's resolve is not wanted
    add(groups, resolved(b), 400)
    last = groups.tick(at(630))
    assert [names(n.resolved) for n in last] == ([["B"]] if send_resolved else [])
    assert groups.groups == {}  # empty groups are dropped ...
    assert groups.log[ROOT.group_key(a.labels)].firing == frozenset()  # ... the log remembers


def test_a_group_that_comes_back_is_notified_again() -> None:
    groups = Groups()
    a = alert("A")
    add(groups, a, 0)
    groups.tick(at(30))
    add(groups, resolved(a), 60)
    groups.tick(at(330))
    add(groups, replace(a, starts_at=at(400)), 400)
    (note,) = groups.tick(at(430))
    assert names(note.firing) == ["A"]


def test_muted_alerts_are_left_out_of_the_flush() -> None:
    groups = Groups()
    add(groups, alert("A"), 0)
    add(groups, alert("B"), 0)
    (note,) = groups.tick(at(30), muted=lambda x: x.name == "B")
    assert names(note.firing) == ["A"]
    (after,) = groups.tick(at(330))  # unmuted: B is new to the receiver
    assert names(after.firing) == ["A", "B"]
    assert groups.tick(at(630), muted=lambda x: True) == []  # everything muted: nothing to say


def test_needs_update_is_alertmanagers_rule() -> None:
    entry = LogEntry(frozenset({"a", "b"}), frozenset(), T0)
    hour = timedelta(hours=1)
    assert needs_update(None, frozenset({"a"}), frozenset(), T0, hour, True)
    assert not needs_update(None, frozenset(), frozenset({"a"}), T0, hour, True)
    assert needs_update(entry, frozenset({"a", "c"}), frozenset(), T0, hour, False)  # grew
    assert not needs_update(entry, frozenset({"a"}), frozenset(), T0, hour, True)  # shrank, nothing resolved
    assert needs_update(entry, frozenset({"a"}), frozenset({"b"}), T0, hour, True)
    assert not needs_update(entry, frozenset({"a"}), frozenset({"b"}), T0, hour, False)
    assert needs_update(entry, frozenset(), frozenset({"b"}), T0, hour, False)  # all resolved: clear the log
    assert needs_update(entry, frozenset({"a"}), frozenset(), T0 + hour, hour, True)  # repeat


def test_snapshot_round_trips_and_keeps_timers() -> None:
    groups = Groups()
    add(groups, alert("A"), 0)
    groups.tick(at(30))
    add(groups, alert("B", start=40), 40)
    copy = Groups.from_snapshot(json.loads(json.dumps(groups.snapshot())), ROOT)
    assert copy.snapshot() == groups.snapshot()
    assert copy.tick(at(329)) == []
    assert [names(n.firing) for n in copy.tick(at(330))] == [["A", "B"]]


def test_groups_whose_route_is_gone_are_routed_afresh() -> None:
    groups = Groups()
    add(groups, alert("A"), 0)
    other_root = Route.build(RouteSpec(receiver="ops", group_by=["alertname"]))
    copy = Groups.from_snapshot(groups.snapshot(), other_root)
    assert list(copy.groups) == ['{}:{alertname="A"}']


def test_the_log_of_vanished_groups_is_forgotten_after_the_retention() -> None:
    groups = Groups()
    a, b = alert("A"), alert("B", host="db2")
    add(groups, a, 0)
    add(groups, b, 0)
    groups.tick(at(30))
    add(groups, resolved(a), 40)
    groups.tick(at(330))  # db1's group is gone, db2's stays
    groups.collect(at(330 + 3599), timedelta(hours=1))
    assert len(groups.log) == 2
    groups.collect(at(330 + 3601), timedelta(hours=1))
    assert list(groups.log) == [ROOT.group_key(b.labels)]
