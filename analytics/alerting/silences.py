"""Silences and maintenance windows: label matchers that mute alerts for a while.

A :class:`Silence` (Alertmanager's) has matchers, ``starts_at``/``ends_at``, an author and a comment; it is
*pending* before it starts, *active* until it ends, then *expired*. It mutes exactly the alerts whose labels
satisfy all its matchers while it is active. Expiring an active silence ends it now; expiring a pending
one ends it before it began.

A **maintenance window** is a recurring silence: a cron expression (``0 2 * * SUN``) read in a time zone,
and a duration — it mutes from each time the expression fires until ``duration`` later. Windows declared
in the configuration (:class:`MaintenanceWindowSpec`) have the id ``maintenance:<name>`` and live as long
as the configuration says; windows and silences added at run time are recorded as ``silence.created`` and
``silence.expired`` events, from which :meth:`Silences.apply` rebuilds them after a restart.

Cron expressions are evaluated with `croniter <https://pypi.org/project/croniter/>`_: five fields with
ranges, steps, names, ``L`` and ``#``, and correct local times across daylight-saving changes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from analytics.alerting.routing import format_matchers, labels_match, parse_matchers
from qwq_core.errors import NotFoundError, QueryError
from qwq_core.model import Event
from qwq_core.selectors import Matcher
from qwq_core.settings import Duration
from qwq_core.timeutil import as_utc

SilenceState = Literal["pending", "active", "expired"]
_CONFIGURED = "maintenance:"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def window_start(schedule: str, timezone: str, now: datetime) -> datetime:
    """The latest time at or before ``now`` at which cron ``schedule`` fires in ``timezone`` (UTC)."""
    local = as_utc(now).astimezone(ZoneInfo(timezone))
    minute = local.replace(second=0, microsecond=0)
    if croniter.match(schedule, minute):
        return as_utc(minute)
    previous: datetime = croniter(schedule, minute).get_prev(datetime)
    return as_utc(previous)


@dataclass(frozen=True)
class Silence:
    """Matchers that mute alerts from ``starts_at`` to ``ends_at`` — or, with a ``schedule``, in its windows."""

    id: str
    matchers: tuple[Matcher, ...]
    starts_at: datetime
    ends_at: datetime | None
    created_by: str
    comment: str
    schedule: str | None = None
    duration: timedelta | None = None
    timezone: str = "UTC"

    def state(self, now: datetime) -> SilenceState:
        """``pending``, ``active`` or ``expired`` at ``now``."""
        if now < self.starts_at:
            return "pending"
        if self.ends_at is not None and now >= self.ends_at:
            return "expired"
        return "active"

    def in_force(self, now: datetime) -> bool:
        """Whether the silence mutes at ``now``: active, and for a window, inside an occurrence."""
        if self.state(now) != "active":
            return False
        if self.schedule is None or self.duration is None:
            return True
        return now < window_start(self.schedule, self.timezone, now) + self.duration

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether ``labels`` satisfy every matcher (whatever the time)."""
        return labels_match(self.matchers, labels)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (the attrs of ``silence.created``)."""
        return {
            "id": self.id,
            "matchers": format_matchers(self.matchers),
            "starts_at": self.starts_at.isoformat(),
            "ends_at": self.ends_at.isoformat() if self.ends_at else None,
            "created_by": self.created_by,
            "comment": self.comment,
            "schedule": self.schedule,
            "duration_seconds": self.duration.total_seconds() if self.duration is not None else None,
            "timezone": self.timezone,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Silence:
        """The silence :meth:`to_dict` made ``data`` from."""
        seconds = data.get("duration_seconds")
        return cls(
            id=data["id"],
            matchers=parse_matchers(data["matchers"]),
            starts_at=as_utc(datetime.fromisoformat(data["starts_at"])),
            ends_at=as_utc(datetime.fromisoformat(data["ends_at"])) if data.get("ends_at") else None,
            created_by=data.get("created_by", ""),
            comment=data.get("comment", ""),
            schedule=data.get("schedule"),
            duration=timedelta(seconds=seconds) if seconds is not None else None,
            timezone=data.get("timezone", "UTC"),
        )


def make_silence(
    matchers: str | Sequence[str],
    starts_at: datetime,
    ends_at: datetime | None,
    created_by: str,
    comment: str,
    *,
    schedule: str | None = None,
    duration: timedelta | None = None,
    timezone: str = "UTC",
    id: str | None = None,
) -> Silence:
    """A validated silence (or, with ``schedule`` and ``duration``, maintenance window).

    Raises :class:`QueryError` for bad matchers, matchers that would mute every alert, an end not after the
    start, a window without its duration, a bad cron expression or an unknown time zone.
    """
    parsed = parse_matchers(matchers)
    if not parsed or labels_match(parsed, {}):
        raise QueryError('a silence needs a matcher that does not match every alert (e.g. host="db1")')
    start, end = as_utc(starts_at), as_utc(ends_at) if ends_at is not None else None
    if schedule is None and end is None:
        raise QueryError("a silence needs an end time (only maintenance windows may recur forever)")
    if end is not None and end <= start:
        raise QueryError("a silence must end after it starts")
    _check_schedule(schedule, duration, timezone)
    content = f"{format_matchers(parsed)}|{start}|{end}|{created_by}|{comment}|{schedule}|{duration}|{timezone}"
    ident = id or hashlib.sha256(content.encode()).hexdigest()[:16]
    return Silence(ident, parsed, start, end, created_by, comment, schedule, duration, timezone)


def _check_schedule(schedule: str | None, duration: timedelta | None, timezone: str) -> None:
    if (schedule is None) != (duration is None):
        raise QueryError("a maintenance window needs both a cron schedule and a duration")
    if schedule is not None and not croniter.is_valid(schedule):
        raise QueryError(f"invalid cron expression {schedule!r}")
    if duration is not None and duration <= timedelta(0):
        raise QueryError("a maintenance window's duration must be positive")
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise QueryError(f"unknown time zone {timezone!r}") from None


class MaintenanceWindowSpec(BaseModel):
    """A recurring maintenance window declared in the configuration."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="unique name; the window's silence id is maintenance:<name>")
    matchers: list[str] = Field(description='alerts it mutes, e.g. host="db1"')
    schedule: str = Field(description='cron expression for each start, e.g. "0 2 * * SUN"')
    duration: Duration = Field(description="how long each window lasts")
    timezone: str = Field(default="UTC", description="time zone the schedule is read in")
    comment: str = Field(default="", description="why")

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value

    @model_validator(mode="after")
    def _valid(self) -> MaintenanceWindowSpec:
        self.to_silence()
        return self

    def to_silence(self) -> Silence:
        """The window as a silence in force from the epoch on."""
        try:
            return make_silence(
                self.matchers,
                _EPOCH,
                None,
                "configuration",
                self.comment or f"maintenance window {self.name}",
                schedule=self.schedule,
                duration=self.duration,
                timezone=self.timezone,
                id=_CONFIGURED + self.name,
            )
        except QueryError as exc:
            raise ValueError(str(exc)) from None


class Silences:
    """All silences and windows by id; :meth:`muting` says which mute an alert now."""

    def __init__(self, configured: Iterable[Silence] = ()) -> None:
        self._items: dict[str, Silence] = {silence.id: silence for silence in configured}

    def add(self, silence: Silence, now: datetime) -> Event:
        """Add ``silence``; the ``silence.created`` event to record."""
        if silence.id in self._items:
            raise QueryError(f"silence {silence.id} exists already")
        self._items[silence.id] = silence
        return Event(
            kind="silence.created",
            message=f"silence {silence.id} by {silence.created_by or 'unknown'}: "
            f"{format_matchers(silence.matchers)} — {silence.comment}",
            source="alerting",
            attrs=silence.to_dict(),
            ts=now,
        )

    def expire(self, silence_id: str, now: datetime) -> Event:
        """End silence ``silence_id`` at ``now`` (before it began, if pending); the ``silence.expired`` event."""
        silence = self.get(silence_id)
        if silence_id.startswith(_CONFIGURED) and silence.created_by == "configuration":
            raise QueryError(f"{silence_id} is defined in the configuration; remove it there")
        if silence.state(now) == "expired":
            raise QueryError(f"silence {silence_id} has already expired")
        start = min(silence.starts_at, now)
        self._items[silence_id] = replace(silence, starts_at=start, ends_at=now)
        return Event(
            kind="silence.expired",
            message=f"silence {silence_id} expired",
            source="alerting",
            attrs={"id": silence_id, "starts_at": start.isoformat(), "ends_at": now.isoformat()},
            ts=now,
        )

    def get(self, silence_id: str) -> Silence:
        """The silence with id ``silence_id``; :class:`NotFoundError` if there is none."""
        try:
            return self._items[silence_id]
        except KeyError:
            raise NotFoundError(f"no silence {silence_id!r}") from None

    def find(self, now: datetime, state: SilenceState | None = None) -> list[Silence]:
        """Silences (optionally only those in ``state`` at ``now``), ordered by start then id."""
        chosen = [s for s in self._items.values() if state is None or s.state(now) == state]
        return sorted(chosen, key=lambda s: (s.starts_at, s.id))

    def muting(self, labels: Mapping[str, str], now: datetime) -> list[str]:
        """Ids of the silences that mute an alert with ``labels`` at ``now``."""
        return self.in_force(now).matching(labels)

    def in_force(self, now: datetime) -> Silences:
        """Only the silences that mute at ``now``: the set to check a tick's alerts against."""
        return Silences(s for s in self._items.values() if s.in_force(now))

    def matching(self, labels: Mapping[str, str]) -> list[str]:
        """Ids of the silences whose matchers ``labels`` satisfy, whether in force or not."""
        return [s.id for s in self._items.values() if s.matches(labels)]

    def collect(self, now: datetime, retention: timedelta) -> None:
        """Forget silences that expired more than ``retention`` ago (their events stay in the store)."""
        old = [k for k, s in self._items.items() if s.ends_at is not None and s.ends_at < now - retention]
        for key in old:
            del self._items[key]

    def apply(self, event: Event) -> None:
        """Replay a ``silence.created`` or ``silence.expired`` event (restoring after a restart)."""
        attrs = event.attrs
        if event.kind == "silence.created":
            self._items[attrs["id"]] = Silence.from_dict(attrs)
        elif event.kind == "silence.expired" and attrs["id"] in self._items:
            self._items[attrs["id"]] = replace(
                self._items[attrs["id"]],
                starts_at=as_utc(datetime.fromisoformat(attrs["starts_at"])),
                ends_at=as_utc(datetime.fromisoformat(attrs["ends_at"])),
            )

    def snapshot(self) -> list[dict[str, Any]]:
        """Every silence as JSON-serialisable data."""
        return [s.to_dict() for s in self._items.values()]

    @classmethod
    def from_snapshot(cls, data: Iterable[Mapping[str, Any]]) -> Silences:
        """Silences equal to those :meth:`snapshot` was taken of."""
        return cls(Silence.from_dict(item) for item in data)


__all__: Sequence[str] = [
    "MaintenanceWindowSpec",
    "Silence",
    "SilenceState",
    "Silences",
    "make_silence",
    "window_start",
]
