"""Up/down state of the targets a collector checks, turned into events on transitions only.

A collector that watches several things (exporters, containers, websites, databases) reports each check's
outcome to one :class:`TargetHealth`; it answers with the event to emit, if the outcome changed anything::

    health = TargetHealth(context.name)
    ...
    event = health.update(url, ok=False, reason="connection refused", attrs={"job": "node"})
    if event is not None:
        context.emit(event)

Transitions and what they yield:

===================================  ==================================================
outcome                              event
===================================  ==================================================
first seen up, or still up           none
first seen down, or up → down        ``target.down`` (severity ``error``)
still down, same reason              none
still down, different reason         ``target.down`` again, with the new reason
down → up                            ``target.up`` (severity ``info``), with the downtime
===================================  ==================================================

Every event's ``attrs`` hold ``target`` plus the caller's ``attrs``; ``target.down`` adds ``reason`` and
``target.up`` adds ``down_since`` and ``down_seconds``. The tracker holds no clock: pass ``now`` (the
collector's scheduled time) to stamp events, or they are stamped with the current time.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import polars as pl

from qwq_core.model import SAMPLE_COLUMNS, Event
from qwq_core.timeutil import as_utc, utcnow


@dataclass(frozen=True)
class Down:
    """Why and since when a target is down."""

    reason: str
    since: datetime


class TargetHealth:
    """The last known state of each target of one collector (``source`` of the events it makes)."""

    def __init__(self, source: str) -> None:
        self.source = source
        self._down: dict[str, Down] = {}

    def update(
        self,
        target: str,
        ok: bool,
        reason: str | None = None,
        *,
        attrs: Mapping[str, Any] | None = None,
        now: datetime | None = None,
    ) -> Event | None:
        """Record one check of ``target``; returns the event the outcome calls for, or None."""
        moment = as_utc(now) if now is not None else utcnow()
        details = {**(attrs or {}), "target": target}
        if ok:
            was_down = self._down.pop(target, None)
            return self._recovered(target, was_down, details, moment) if was_down else None
        reason = reason or "unknown reason"
        previous = self._down.get(target)
        if previous is not None and previous.reason == reason:
            return None
        self._down[target] = Down(reason, previous.since if previous else moment)
        return Event(
            kind="target.down",
            message=f"{target} is down: {reason}",
            source=self.source,
            severity="error",
            attrs={**details, "reason": reason},
            ts=moment,
        )

    def _recovered(self, target: str, was_down: Down, details: dict[str, Any], moment: datetime) -> Event:
        seconds = max(0.0, (moment - was_down.since).total_seconds())
        return Event(
            kind="target.up",
            message=f"{target} is up again after {seconds:.0f}s down ({was_down.reason})",
            source=self.source,
            severity="info",
            attrs={**details, "down_since": was_down.since.isoformat(), "down_seconds": seconds},
            ts=moment,
        )


def is_up_metric(name: pl.Expr) -> pl.Expr:
    """Samples that say whether a target answers: Prometheus' ``up`` and every ``<kind>_up``."""
    return (name == "up") | name.str.ends_with("_up")


def target_table(samples: pl.DataFrame, down_events: Iterable[Mapping[str, Any]] = ()) -> pl.DataFrame:
    """One row per checked target in ``samples``: ``metric, target, up, reason``.

    ``target`` is the series' labels as ``key=value`` text (``host`` left out: it is the checker's, not the
    target's). ``reason`` comes from the newest of ``down_events`` (``target.down`` events, as rows or
    :meth:`Event.as_row` dicts) that names the series: its ``target`` attribute is one of the series' label
    values (collectors name a target by the label identifying it: site, db, container), or the labels it
    carries in its attributes agree with the series'.
    """
    schema = {"metric": pl.String, "target": pl.String, "up": pl.Boolean, "reason": pl.String}
    if samples.is_empty() or "name" not in samples.columns:
        return pl.DataFrame(schema=schema)
    identity = [c for c in samples.columns if c not in ("ts", "value")]
    ups = samples.filter(is_up_metric(pl.col("name"))).sort("ts", descending=True)
    ups = ups.unique(identity, keep="first", maintain_order=True)
    downs = _newest_first(down_events)
    labels = sorted(c for c in ups.columns if c not in SAMPLE_COLUMNS and c not in ("host", "series_id"))
    rows = []
    for row in ups.iter_rows(named=True):
        values = {key: row[key] for key in labels if row[key]}
        up = row["value"] >= 1
        reason = None if up else next((reason for attrs, reason in downs if _names(attrs, values)), None)
        target = ", ".join(f"{key}={value}" for key, value in values.items())
        rows.append({"metric": row["name"], "target": target, "up": up, "reason": reason})
    return pl.DataFrame(rows, schema=schema)


def _newest_first(events: Iterable[Mapping[str, Any]]) -> list[tuple[dict[str, Any], str]]:
    """``(attrs, reason)`` of each event with a reason, newest first."""
    found = []
    for event in events:
        attrs = event.get("attrs") or {}
        attrs = json.loads(attrs) if isinstance(attrs, str) else dict(attrs)
        if attrs.get("reason"):
            found.append((event.get("ts"), attrs))
    found.sort(key=lambda pair: str(pair[0] or ""), reverse=True)
    return [(attrs, str(attrs["reason"])) for _, attrs in found]


def _names(attrs: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """Whether an event's attributes point at the series with these labels."""
    if attrs.get("target") in labels.values():
        return True
    shared = [key for key in labels if key in attrs]
    return bool(shared) and all(str(attrs[key]) == labels[key] for key in shared)


__all__: Sequence[str] = ["Down", "TargetHealth", "is_up_metric", "target_table"]
