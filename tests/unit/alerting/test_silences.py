"""Silences mute what their matchers match while active; maintenance windows recur by cron in a time zone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from analytics.alerting.silences import MaintenanceWindowSpec, Silences, make_silence, window_start
from qwq_core.errors import NotFoundError, QueryError

T0 = datetime(2026, 1, 1, tzinfo=UTC)
DB1 = {"alertname": "HighCPU", "host": "db1", "severity": "warning"}
DB2 = {"alertname": "HighCPU", "host": "db2", "severity": "critical"}


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def test_a_silence_is_pending_then_active_then_expired_and_mutes_only_while_active() -> None:
    silence = make_silence('{host="db1"}', at(10), at(20), "ana", "disk swap")
    assert [silence.state(at(m)) for m in (0, 10, 19, 20)] == ["pending", "active", "active", "expired"]
    silences = Silences()
    event = silences.add(silence, at(0))
    assert event.kind == "silence.created" and event.attrs["created_by"] == "ana"
    assert event.attrs["matchers"] == '{host="db1"}'
    assert [silences.muting(DB1, at(m)) for m in (5, 15, 25)] == [[], [silence.id], []]
    assert silences.muting(DB2, at(15)) == []


def test_silences_match_with_every_matcher() -> None:
    silence = make_silence(['host=~"db.*"', 'severity!="critical"'], at(0), at(60), "ana", "")
    assert silence.matches(DB1) and not silence.matches(DB2)
    assert not silence.matches({"alertname": "X"})


def test_expiring_ends_an_active_silence_now_and_a_pending_one_before_it_began() -> None:
    silences = Silences()
    active = make_silence("host=db1", at(0), at(60), "ana", "")
    pending = make_silence("host=db2", at(30), at(60), "ana", "")
    silences.add(active, at(0))
    silences.add(pending, at(0))
    event = silences.expire(active.id, at(10))
    assert event.kind == "silence.expired" and silences.get(active.id).ends_at == at(10)
    silences.expire(pending.id, at(10))
    assert silences.get(pending.id).state(at(45)) == "expired"
    assert [s.id for s in silences.find(at(11), "expired")] == [active.id, pending.id]
    with pytest.raises(QueryError, match="already expired"):
        silences.expire(active.id, at(11))
    with pytest.raises(NotFoundError):
        silences.expire("nope", at(11))


@pytest.mark.parametrize(
    ("matchers", "end", "reason"),
    [
        ('host=~".*"', at(10), "every alert"),
        ([], at(10), "every alert"),
        ("host=db1", at(0), "end after"),
        ("host=db1", None, "end time"),
        ('host="db1', at(10), "closing"),
    ],
)
def test_bad_silences_are_refused(matchers: str | list[str], end: datetime | None, reason: str) -> None:
    with pytest.raises(QueryError, match=reason):
        make_silence(matchers, at(0), end, "ana", "")


def test_a_maintenance_window_mutes_in_each_occurrence_in_its_time_zone() -> None:
    # Sundays 02:00-04:00 in Berlin (UTC+1 in January): 01:00-03:00 UTC on 4 January 2026
    window = MaintenanceWindowSpec(
        name="db", matchers=['host="db1"'], schedule="0 2 * * SUN", duration="2h", timezone="Europe/Berlin"
    ).to_silence()
    assert window.id == "maintenance:db" and window.state(T0) == "active"
    sunday = datetime(2026, 1, 4, tzinfo=UTC)
    checks = {0.99: False, 1: True, 2.5: True, 2.99: True, 3: False, 24 * 7 + 1.5: True, 24 * 7 - 1: False}
    for hours, muted in checks.items():
        assert window.in_force(sunday + timedelta(hours=hours)) is muted, hours
    assert Silences([window]).muting(DB1, sunday + timedelta(hours=2)) == [window.id]


def test_window_start_follows_daylight_saving_time() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    summer = datetime(2026, 7, 5, 2, 30, tzinfo=berlin)  # UTC+2
    assert window_start("0 2 * * *", "Europe/Berlin", summer) == datetime(2026, 7, 5, 0, 0, tzinfo=UTC)
    winter = datetime(2026, 1, 5, 2, 30, tzinfo=berlin)  # UTC+1
    assert window_start("0 2 * * *", "Europe/Berlin", winter) == datetime(2026, 1, 5, 1, 0, tzinfo=UTC)
    exact = datetime(2026, 1, 5, 1, 0, tzinfo=UTC)
    assert window_start("0 2 * * *", "Europe/Berlin", exact) == exact


def test_configured_windows_cannot_be_expired_at_run_time() -> None:
    window = MaintenanceWindowSpec(name="w", matchers=["host=db1"], schedule="0 2 * * *", duration="1h")
    silences = Silences([window.to_silence()])
    with pytest.raises(QueryError, match="configuration"):
        silences.expire("maintenance:w", at(0))


@pytest.mark.parametrize(
    "spec",
    [
        {"schedule": "61 * * * *"},
        {"timezone": "Mars/Olympus"},
        {"duration": "0s"},
        {"matchers": ['host=~".*"']},
        {"extra": 1},
    ],
)
def test_bad_windows_are_refused(spec: dict[str, object]) -> None:
    base = {"name": "w", "matchers": ["host=db1"], "schedule": "0 2 * * *", "duration": "1h"}
    with pytest.raises(ValidationError):
        MaintenanceWindowSpec.model_validate({**base, **spec})


def test_silences_are_rebuilt_from_their_events() -> None:
    silences = Silences()
    events = [
        silences.add(make_silence("host=db1", at(0), at(60), "ana", "a"), at(0)),
        silences.add(
            make_silence("host=db2", at(0), None, "bo", "b", schedule="0 * * * *", duration=timedelta(minutes=5)),
            at(1),
        ),
    ]
    events.append(silences.expire(events[0].attrs["id"], at(5)))
    rebuilt = Silences()
    for event in events:
        rebuilt.apply(event)
    assert rebuilt.find(at(6)) == silences.find(at(6))
    assert Silences.from_snapshot(silences.snapshot()).find(at(6)) == silences.find(at(6))


def test_expired_silences_are_forgotten_after_the_retention_and_windows_never() -> None:
    window = MaintenanceWindowSpec(name="w", matchers=["host=db1"], schedule="0 2 * * *", duration="1h")
    silences = Silences([window.to_silence()])
    silences.add(make_silence("host=db1", at(0), at(10), "ana", ""), at(0))
    silences.collect(at(60 + 9), timedelta(hours=1))
    assert len(silences.find(at(70))) == 2
    silences.collect(at(60 + 11), timedelta(hours=1))
    assert [s.id for s in silences.find(at(71))] == ["maintenance:w"]
