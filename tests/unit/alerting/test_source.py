"""Rules against a real store: queries, recorded transitions, and the state reloaded after a restart."""

from __future__ import annotations

from datetime import datetime, timedelta

import polars as pl

from analytics.alerting.rules import RuleSpec
from analytics.alerting.source import fetch, load_states, run_rules
from analytics.alerting.state import AlertStates
from qwq_core.store import LocalStore
from qwq_core.timeutil import utcnow

RULES = [
    RuleSpec.model_validate(
        {
            "name": "LoadHigh",
            "query": {"metric": 'load{job="node"}', "agg": "last", "window": "2m"},
            "condition": {"kind": "above", "threshold": 4},
            "annotations": {"summary": "load {{ value }} on {{ labels.host }}"},
        }
    ),
    RuleSpec.model_validate(
        {
            "name": "LoadRising",
            "for": "1h",
            "query": {"metric": 'load{host="a"}', "window": "2m"},
            "condition": {"kind": "rate_of_change", "threshold": 0},
        }
    ),
]


def write(store: LocalStore, now: datetime, **hosts: list[float]) -> None:
    """Samples of ``load{job="node",host=...}`` every 10 s, the last at ``now``."""
    rows = [
        {
            "name": "load",
            "ts": now - timedelta(seconds=10 * (len(values) - 1 - i)),
            "value": v,
            "host": h,
            "job": "node",
        }
        for h, values in hosts.items()
        for i, v in enumerate(values)
    ]
    store.write(pl.DataFrame(rows))


def test_rules_run_against_the_store_record_events_and_reload(store: LocalStore) -> None:
    now = utcnow().replace(microsecond=0)
    write(store, now, a=[1, 2, 5], b=[1, 1, 1])
    frames = fetch(store, RULES, now)
    assert list(frames) == ["load{}"] and frames["load{}"].height == 6  # one query for both rules

    states = AlertStates()
    update = run_rules(store, RULES, states, now)
    assert [(a.name, a.labels["host"]) for a in update.firing] == [("LoadHigh", "a")]
    recorded = store.events(kind="alert.*")
    assert sorted(recorded["kind"].to_list()) == ["alert.firing", "alert.pending"]

    reloaded = load_states(store)
    assert [(a.rule, a.key, a.phase, a.active_since) for a in reloaded.active()] == [
        (a.rule, a.key, a.phase, a.active_since) for a in states.active()
    ]

    later = now + timedelta(seconds=10)
    write(store, later, a=[0.5], b=[1])  # below its start: neither high nor rising
    update = run_rules(store, RULES, reloaded, later)
    assert [a.labels["host"] for a in update.resolved] == ["a"]
    assert load_states(store).active() == []
    assert set(store.events(kind="alert.*", until=later)["kind"].to_list()) == {
        "alert.firing",
        "alert.pending",
        "alert.resolved",
        "alert.inactive",
    }


def test_a_store_without_alert_events_gives_empty_state(store: LocalStore) -> None:
    assert load_states(store).active() == []
