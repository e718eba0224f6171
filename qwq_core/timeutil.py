"""Durations and points in time as people write them: ``30s``, ``5m``, ``1h30m``, ``7d``, ``2y``, ISO 8601.

Durations use Prometheus' unit letters (``ms s m h d w y``, a year being 365 days) and may be compound.
Times are UTC everywhere inside qwq; a naive ``datetime`` is taken to be UTC.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta

from qwq_core.errors import QueryError

_UNITS: dict[str, timedelta] = {
    "y": timedelta(days=365),
    "w": timedelta(weeks=1),
    "d": timedelta(days=1),
    "h": timedelta(hours=1),
    "m": timedelta(minutes=1),
    "s": timedelta(seconds=1),
    "ms": timedelta(milliseconds=1),
}
_TERM = re.compile(r"(\d+(?:\.\d+)?)(ms|y|w|d|h|m|s)")
_DURATION = re.compile(rf"(?:{_TERM.pattern})+")

DurationLike = str | int | float | timedelta


def parse_duration(value: DurationLike) -> timedelta:
    """Parse ``value`` into a non-negative :class:`timedelta`.

    Accepts a timedelta, a number of seconds, or a string such as ``"90s"``, ``"1h30m"``, ``"2.5d"``.
    Raises :class:`QueryError` with the accepted forms when it cannot.
    """
    if isinstance(value, timedelta):
        duration = value
    elif isinstance(value, bool):
        raise QueryError(f"invalid duration {value!r}: expected e.g. 30s, 5m, 1h30m, 7d")
    elif isinstance(value, int | float):
        if not math.isfinite(value):
            raise QueryError(f"invalid duration {value!r}: not a finite number of seconds")
        duration = timedelta(seconds=value)
    else:
        text = value.strip()
        if re.fullmatch(r"\d+(?:\.\d+)?", text):
            duration = timedelta(seconds=float(text))
        elif _DURATION.fullmatch(text):
            duration = sum((float(n) * _UNITS[unit] for n, unit in _TERM.findall(text)), start=timedelta())
        else:
            raise QueryError(f"invalid duration {value!r}: expected e.g. 30s, 5m, 1h30m, 7d")
    if duration < timedelta():
        raise QueryError(f"invalid duration {value!r}: must not be negative")
    return duration


def format_duration(duration: timedelta) -> str:
    """The shortest compound form of ``duration`` (``1h30m``, ``500ms``); inverse of :func:`parse_duration`."""
    micros = round(duration / timedelta(microseconds=1))
    if micros == 0:
        return "0s"
    parts = []
    for unit in ("y", "w", "d", "h", "m", "s", "ms"):
        size = _UNITS[unit] // timedelta(microseconds=1)
        count, micros = divmod(micros, size)
        if count:
            parts.append(f"{count}{unit}")
    if micros:  # sub-millisecond rest: fold into fractional seconds
        return f"{duration.total_seconds():g}s"
    return "".join(parts)


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


def as_utc(moment: datetime) -> datetime:
    """``moment`` as an aware UTC datetime; naive input is taken to be UTC already."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


TimeLike = str | int | float | datetime | timedelta


def parse_time(value: TimeLike | None, *, now: datetime) -> datetime:
    """Resolve a point in time for ``since``/``until``.

    ``None`` is ``now``; a duration (``"1h"``, ``timedelta``) means that long before ``now``; a number is
    seconds since the Unix epoch; a string may also be ISO 8601 (``2026-11-24T10:00:00Z``).
    """
    if value is None:
        return as_utc(now)
    if isinstance(value, datetime):
        return as_utc(value)
    if isinstance(value, timedelta):
        return as_utc(now) - value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, UTC)
    if isinstance(value, str):
        text = value.strip()
        if _DURATION.fullmatch(text):
            return as_utc(now) - parse_duration(text)
        try:
            return as_utc(datetime.fromisoformat(text))
        except ValueError:
            pass
        try:
            return datetime.fromtimestamp(float(text), UTC)
        except ValueError:
            pass
    raise QueryError(f"invalid time {value!r}: expected a duration ago (1h), an ISO 8601 time or Unix seconds")


def floor_time(moment: datetime, step: timedelta) -> datetime:
    """Round ``moment`` down to a multiple of ``step`` since the Unix epoch."""
    epoch = datetime(1970, 1, 1, tzinfo=moment.tzinfo)
    return moment - (moment - epoch) % step


def ceil_time(moment: datetime, step: timedelta) -> datetime:
    """Round ``moment`` up to a multiple of ``step`` since the Unix epoch."""
    floored = floor_time(moment, step)
    return floored if floored == moment else floored + step
