"""Flap detection, Nagios-style: percent state change with hysteresis; a flapping alert is held back.

Each alert's status changes (firing ↔ resolved; its first report counts as one) are counted in the last
``history - 1`` slots of ``resolution`` each — a slot plays the part of one Nagios check. As in Nagios the
count is weighted, oldest slot 0.75 to newest 1.25, so recent changes count more::

    percent = 100 × Σ weight(slot) × changes(slot) / (history - 1)      (at most 100)

An alert starts flapping when its percent rises above ``high_threshold`` and stops only when it falls below
``low_threshold`` (hysteresis, so it does not flap in and out of flapping). While it flaps, its reports are
held back from notification; when it stops, its final state goes on. Start and stop are ``alert.flapping``
and ``alert.flapping_stopped`` events. As Nagios sends FLAPPINGSTART, the pipeline lets the receiver know
once that the alert flaps: its groups hold it as firing, annotated ``flapping``, until it stops.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from analytics.alerting.model import Alert
from qwq_core.model import Event
from qwq_core.settings import Duration
from qwq_core.timeutil import as_utc

_LOW_WEIGHT, _HIGH_WEIGHT = 0.75, 1.25  # Nagios' curve from the oldest to the newest state change


class FlapSpec(BaseModel):
    """Flap detection settings."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(default=True, description="hold back flapping alerts")
    history: int = Field(default=21, ge=3, le=1000, description="state slots considered (Nagios: 21)")
    resolution: Duration = Field(default=timedelta(seconds=30), description="length of one slot")
    high_threshold: float = Field(default=30.0, gt=0, le=100, description="percent change that starts flapping")
    low_threshold: float = Field(default=15.0, ge=0, lt=100, description="percent change that ends flapping")

    @model_validator(mode="after")
    def _hysteresis(self) -> FlapSpec:
        if self.low_threshold >= self.high_threshold:
            raise ValueError("low_threshold must be below high_threshold")
        if self.resolution <= timedelta(0):
            raise ValueError("resolution must be positive")
        return self


def percent_state_change(changes: Sequence[datetime], now: datetime, history: int, resolution: timedelta) -> float:
    """Weighted percent of state change at ``now`` over ``history - 1`` slots of ``resolution``."""
    slots = history - 1
    total = 0.0
    for moment in changes:
        age = now - moment
        newest_first = int(age // resolution) if age >= timedelta(0) else 0
        if newest_first < slots:
            position = slots - 1 - newest_first  # 0 = oldest slot
            total += _LOW_WEIGHT + position * (_HIGH_WEIGHT - _LOW_WEIGHT) / max(slots - 1, 1)
    return min(100.0, 100.0 * total / slots)


@dataclass
class _History:
    changes: deque[datetime] = field(default_factory=deque)
    flapping: bool = False
    labels: Mapping[str, str] = field(default_factory=dict)


class FlapDetector:
    """Change history and flapping state of each alert."""

    def __init__(self, spec: FlapSpec | None = None) -> None:
        self.spec = spec or FlapSpec()
        self._alerts: dict[str, _History] = {}
        self._last_forget: datetime | None = None

    @property
    def window(self) -> timedelta:
        """How far back changes count."""
        return self.spec.resolution * (self.spec.history - 1)

    def observe(self, alert: Alert, changed: bool, now: datetime) -> tuple[bool, Event | None]:
        """Take one report of ``alert`` (``changed``: its status differs from the last one).

        Returns whether to hold it back (it flaps) and the ``alert.flapping`` event if it just started.
        """
        if not self.spec.enabled:
            return False, None
        history = self._alerts.setdefault(alert.fingerprint, _History())
        history.labels = alert.labels
        if changed:
            self.record(alert.fingerprint, now)
        if history.flapping:
            return True, None
        percent = self.percent(alert.fingerprint, now)
        if percent <= self.spec.high_threshold:
            return False, None
        history.flapping = True
        return True, self._event("alert.flapping", alert.fingerprint, history, percent, now)

    def record(self, fingerprint: str, when: datetime) -> None:
        """Count one state change of ``fingerprint`` at ``when`` (also used to rebuild the history)."""
        history = self._alerts.setdefault(fingerprint, _History())
        history.changes.append(as_utc(when))
        while history.changes and history.changes[0] < when - self.window:
            history.changes.popleft()

    def percent(self, fingerprint: str, now: datetime) -> float:
        """The alert's percent state change at ``now``."""
        history = self._alerts.get(fingerprint)
        if history is None:
            return 0.0
        return percent_state_change(history.changes, now, self.spec.history, self.spec.resolution)

    def flapping(self) -> list[str]:
        """Fingerprints of the alerts flapping now."""
        return [fp for fp, history in self._alerts.items() if history.flapping]

    def tick(self, now: datetime) -> list[tuple[str, Event]]:
        """Alerts that stopped flapping by ``now`` (their final state may go on), with their events."""
        stopped = []
        for fp in self.flapping():
            history = self._alerts[fp]
            percent = self.percent(fp, now)
            if percent < self.spec.low_threshold:
                history.flapping = False
                stopped.append((fp, self._event("alert.flapping_stopped", fp, history, percent, now)))
        self._forget(now)
        return stopped

    def _forget(self, now: datetime) -> None:
        """Drop calm histories, once per ``resolution`` (a scan of every alert is not worth doing each tick)."""
        if self._last_forget is not None and now - self._last_forget < self.spec.resolution:
            return
        self._last_forget = now
        horizon = now - self.window
        calm = [fp for fp, h in self._alerts.items() if not h.flapping and (not h.changes or h.changes[-1] < horizon)]
        for fp in calm:
            del self._alerts[fp]

    def _event(self, kind: str, fp: str, history: _History, percent: float, now: datetime) -> Event:
        name = history.labels.get("alertname", fp)
        started = kind == "alert.flapping"
        return Event(
            kind=kind,
            message=f"{name} {'is flapping' if started else 'stopped flapping'} ({percent:.0f}% state change)",
            source="alerting",
            severity="warning" if started else "info",
            attrs={"fingerprint": fp, "labels": dict(history.labels), "percent": round(percent, 2)},
            ts=now,
        )

    def apply(self, event: Event) -> None:
        """Replay an ``alert.flapping``/``alert.flapping_stopped`` event (after :meth:`record`-ing changes)."""
        history = self._alerts.setdefault(event.attrs["fingerprint"], _History())
        history.labels = dict(event.attrs.get("labels", {}))
        history.flapping = event.kind == "alert.flapping"

    def snapshot(self) -> dict[str, Any]:
        """Histories as JSON-serialisable data."""
        return {
            fp: {"changes": [t.isoformat() for t in h.changes], "flapping": h.flapping, "labels": dict(h.labels)}
            for fp, h in self._alerts.items()
        }

    @classmethod
    def from_snapshot(cls, data: Mapping[str, Any], spec: FlapSpec | None = None) -> FlapDetector:
        """A detector equal to the one :meth:`snapshot` was taken of."""
        detector = cls(spec)
        for fp, item in data.items():
            changes = deque(as_utc(datetime.fromisoformat(t)) for t in item["changes"])
            detector._alerts[fp] = _History(changes, item["flapping"], dict(item["labels"]))
        return detector


__all__: Sequence[str] = ["FlapDetector", "FlapSpec", "percent_state_change"]
