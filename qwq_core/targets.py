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

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from qwq_core.model import Event
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


__all__: Sequence[str] = ["Down", "TargetHealth"]
