"""TargetHealth: events on transitions only."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

from qwq_core.collector import samples
from qwq_core.model import Event
from qwq_core.targets import TargetHealth, target_table

T0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)


def kinds(health: TargetHealth, outcomes: list[tuple[bool, str | None]]) -> list[str | None]:
    """The event kind (or None) each successive outcome of one target yields."""
    out = []
    for step, (ok, reason) in enumerate(outcomes):
        event = health.update("web", ok, reason, now=T0 + timedelta(seconds=15 * step))
        out.append(event.kind if event else None)
    return out


@pytest.mark.parametrize(
    ("outcomes", "expected"),
    [
        ([(True, None), (True, None)], [None, None]),
        ([(False, "refused")], ["target.down"]),
        ([(False, "refused"), (False, "refused"), (False, "refused")], ["target.down", None, None]),
        ([(False, "refused"), (False, "HTTP 500")], ["target.down", "target.down"]),
        (
            [(True, None), (False, "refused"), (True, None), (True, None)],
            [None, "target.down", "target.up", None],
        ),
        ([(False, "a"), (True, None), (False, "a")], ["target.down", "target.up", "target.down"]),
    ],
    ids=["up-stays-quiet", "first-seen-down", "repeat-same-reason", "reason-changes", "flap", "down-again"],
)
def test_events_on_transitions_only(outcomes: list[tuple[bool, str | None]], expected: list[str | None]) -> None:
    assert kinds(TargetHealth("probe"), outcomes) == expected


def test_down_event_carries_source_severity_reason_and_attrs() -> None:
    health = TargetHealth("node")
    event = health.update("http://db:9100/metrics", False, "connection refused", attrs={"job": "node"}, now=T0)
    assert event is not None
    assert (event.kind, event.source, event.severity, event.ts) == ("target.down", "node", "error", T0)
    assert "connection refused" in event.message and "http://db:9100/metrics" in event.message
    assert event.attrs == {"job": "node", "target": "http://db:9100/metrics", "reason": "connection refused"}


def test_recovery_reports_downtime_since_first_failure() -> None:
    health = TargetHealth("node")
    health.update("db", False, "refused", now=T0)
    health.update("db", False, "timed out", now=T0 + timedelta(seconds=30))  # still down since T0
    event = health.update("db", True, now=T0 + timedelta(seconds=90))
    assert event is not None
    assert (event.kind, event.severity, event.source) == ("target.up", "info", "node")
    assert event.attrs["target"] == "db"
    assert event.attrs["down_seconds"] == 90
    assert event.attrs["down_since"] == T0.isoformat()
    assert health.update("db", True) is None  # up and staying up is not news


def test_targets_are_independent() -> None:
    health = TargetHealth("node")
    assert health.update("a", False, "refused") is not None
    assert health.update("b", False, "refused") is not None  # b's first failure is news despite a's
    assert health.update("a", False, "refused") is None
    assert health.update("a", True) is not None and health.update("b", False, "refused") is None


def test_missing_reason_still_reports() -> None:
    event = TargetHealth("x").update("a", False, None)
    assert event is not None and event.attrs["reason"]


def test_target_table_lists_each_target_once_with_the_reason_of_its_newest_down_event() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    frame = pl.concat(
        [
            samples(now - timedelta(seconds=30), [("site_up", {"site": "blog"}, 1.0)]),
            samples(now, [("site_up", {"site": "blog"}, 0.0), ("db_up", {"db": "main"}, 1.0)]),
            samples(now, [("up", {"job": "node", "instance": "a:9100"}, 0.0), ("site_response_seconds", {}, 0.1)]),
        ],
        how="diagonal_relaxed",
    )
    events = [
        Event("target.down", "", attrs={"target": "blog", "reason": "old"}, ts=now - timedelta(minutes=5)).as_row(),
        Event("target.down", "", attrs={"target": "blog", "reason": "status 503"}, ts=now).as_row(),
        {"ts": now, "attrs": {"target": "http://a:9100/metrics", "job": "node", "reason": "refused"}},
    ]
    rows = {row["target"]: row for row in target_table(frame, events).to_dicts()}
    assert set(rows) == {"site=blog", "db=main", "instance=a:9100, job=node"}
    assert rows["site=blog"] == {"metric": "site_up", "target": "site=blog", "up": False, "reason": "status 503"}
    assert rows["db=main"]["up"] and rows["db=main"]["reason"] is None
    assert rows["instance=a:9100, job=node"]["reason"] == "refused"
