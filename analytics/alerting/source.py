"""The rules' only contact with the store: run their queries, record their transitions, reload their state.

Everything else in rule evaluation is pure; this module is the thin I/O layer the scheduled job calls::

    states = load_states(store)                      # once, at start-up
    ...
    update = run_rules(store, rules, states, now)    # every evaluation interval
    pipeline.ingest(update.alerts)

Queries read raw samples (so a window longer than the raw retention sees only what is kept), one query per
metric however many rules read it (:func:`~analytics.alerting.evaluate.plan_queries`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from datetime import datetime

import polars as pl

from analytics.alerting.evaluate import Evaluation, evaluate, plan_queries
from analytics.alerting.rules import RuleSpec
from analytics.alerting.state import ALERT_EVENT_KINDS, AlertStates, Update, restore
from qwq_core.model import Event
from qwq_core.store import Store
from qwq_core.timeutil import as_utc

__all__ = ["fetch", "load_states", "run_rules"]

log = logging.getLogger(__name__)

_LAST_EVENT_PER_ALERT = """
SELECT ts, kind, source, severity, message, attrs FROM events
WHERE kind IN ({kinds})
QUALIFY row_number() OVER (
    PARTITION BY json_extract_string(attrs, '$.rule'), json_extract_string(attrs, '$.key')
    ORDER BY ts DESC, id DESC
) = 1
"""


def fetch(store: Store, rules: Sequence[RuleSpec], now: datetime) -> dict[str, pl.DataFrame]:
    """The raw samples ``rules`` need at ``now``: selector text → frame (one query per distinct metric)."""
    now = as_utc(now)
    return {
        selector: store.query(selector, since=now - window, until=now)
        for selector, window in plan_queries(rules).items()
    }


def run_rules(store: Store, rules: Sequence[RuleSpec], states: AlertStates, now: datetime) -> Update:
    """Evaluate ``rules`` at ``now``, advance ``states`` and record the transition events in ``store``.

    Rules that could not be evaluated (a forecast that failed) are logged and leave their alerts as they were.
    """
    evaluation: Evaluation = evaluate(rules, fetch(store, rules, now), now)
    for name, reason in evaluation.errors.items():
        log.warning("rule %s was not evaluated: %s", name, reason)
    update = states.update(evaluation)
    if update.events:
        store.record(update.events)
    return update


def load_states(store: Store) -> AlertStates:
    """The alert states recorded in ``store``: the last ``alert.*`` event of each (rule, group), replayed."""
    kinds = ", ".join(f"'{kind}'" for kind in ALERT_EVENT_KINDS)  # constants, not user input
    frame = store.sql(_LAST_EVENT_PER_ALERT.format(kinds=kinds))
    return restore(
        Event(
            kind=row["kind"],
            message=row["message"],
            source=row["source"],
            severity=row["severity"],
            attrs=json.loads(row["attrs"]),
            ts=row["ts"],
        )
        for row in frame.iter_rows(named=True)
    )
