"""Flap detection: Nagios' weighted percent state change, hysteresis, and holding back until it stops."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from analytics.alerting.flapping import FlapDetector, FlapSpec, percent_state_change
from analytics.alerting.model import Alert
from qwq_core.model import Event

T0 = datetime(2026, 1, 1, tzinfo=UTC)
SPEC = FlapSpec(history=21, resolution=timedelta(seconds=30), high_threshold=30, low_threshold=15)
ALERT = Alert({"alertname": "Flappy", "host": "db1"}, T0)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_percent_follows_nagios_weights() -> None:
    res = timedelta(seconds=30)
    assert percent_state_change([], at(0), 21, res) == 0
    assert percent_state_change([at(0)], at(0), 21, res) == pytest.approx(100 * 1.25 / 20)  # newest slot
    assert percent_state_change([at(0)], at(19 * 30), 21, res) == pytest.approx(100 * 0.75 / 20)  # oldest
    assert percent_state_change([at(0)], at(20 * 30), 21, res) == 0  # out of the window
    every_slot = [at(30 * i) for i in range(20)]
    assert percent_state_change(every_slot, at(19 * 30), 21, res) == pytest.approx(100)
    assert percent_state_change(every_slot * 3, at(19 * 30), 21, res) == 100  # capped


def feed(detector: FlapDetector, times: list[float]) -> list[tuple[float, bool, str | None]]:
    """Report a status change at each time; (time, held, event kind) for each."""
    out = []
    for t in times:
        held, event = detector.observe(ALERT, True, at(t))
        out.append((t, held, event.kind if event else None))
    return out


def test_an_alert_changing_often_starts_flapping_and_is_held_back() -> None:
    detector = FlapDetector(SPEC)
    results = feed(detector, [0, 5, 10, 15, 20])
    # 1.25 per change in the newest slot: 6.25 % each; the fifth change passes 30 %
    assert [held for _, held, _ in results] == [False, False, False, False, True]
    assert results[-1][2] == "alert.flapping"
    assert detector.flapping() == [ALERT.fingerprint]
    assert detector.observe(ALERT, False, at(25)) == (True, None)  # still held, no second event


def test_flapping_stops_only_below_the_low_threshold() -> None:
    detector = FlapDetector(SPEC)
    feed(detector, [0, 5, 10, 15, 20])
    # two minutes on, the burst weighs less than the high threshold but more than the low one: still flapping
    assert SPEC.low_threshold < detector.percent(ALERT.fingerprint, at(120)) < SPEC.high_threshold
    assert detector.tick(at(120)) == []
    stopped: list[tuple[str, Event]] = []
    percents = []
    t = 120
    while not stopped:
        t += 30
        percents.append(detector.percent(ALERT.fingerprint, at(t)))
        stopped = detector.tick(at(t))
    ((fp, event),) = stopped
    assert fp == ALERT.fingerprint and event.kind == "alert.flapping_stopped"
    assert percents[-1] < SPEC.low_threshold and all(p >= SPEC.low_threshold for p in percents[:-1])
    assert detector.flapping() == []


def test_an_occasional_change_never_flaps() -> None:
    detector = FlapDetector(SPEC)
    assert all(not held for _, held, _ in feed(detector, [0, 120, 240, 360, 480, 600]))


def test_a_disabled_detector_holds_nothing() -> None:
    detector = FlapDetector(FlapSpec(enabled=False))
    assert all(not held for _, held, _ in feed(detector, list(range(50))))


def test_state_is_rebuilt_from_changes_and_events_or_a_snapshot() -> None:
    detector = FlapDetector(SPEC)
    feed(detector, [0, 5, 10, 15])
    held, event = detector.observe(ALERT, True, at(20))
    assert held and event is not None and event.kind == "alert.flapping"
    rebuilt = FlapDetector(SPEC)  # as a restart does: the recorded changes, then the flapping event
    for t in [0, 5, 10, 15, 20]:
        rebuilt.record(ALERT.fingerprint, at(t))
    rebuilt.apply(event)
    copy = FlapDetector.from_snapshot(json.loads(json.dumps(detector.snapshot())), SPEC)
    for other in (rebuilt, copy):
        assert other.flapping() == detector.flapping() == [ALERT.fingerprint]
        assert other.percent(ALERT.fingerprint, at(30)) == detector.percent(ALERT.fingerprint, at(30))


def test_thresholds_must_leave_room_for_hysteresis() -> None:
    with pytest.raises(ValidationError, match="low_threshold"):
        FlapSpec(high_threshold=20, low_threshold=20)
