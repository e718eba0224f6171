"""Time ranges the dashboard offers and the query step each one reads at — pure functions, no clock.

A graph is most legible at a few hundred points: the step is the smallest "nice" duration that keeps a
range under :data:`TARGET_POINTS` buckets, and short ranges read raw samples for full detail.
"""

from __future__ import annotations

from datetime import timedelta

from qwq_core.timeutil import parse_duration

RANGES: dict[str, timedelta] = {key: parse_duration(key) for key in ("15m", "1h", "6h", "24h", "7d", "30d")}
"""The range picker's choices, shortest first."""

DEFAULT_RANGE = "1h"
TARGET_POINTS = 300
RAW_UP_TO = timedelta(minutes=15)
"""Ranges this short read raw samples (``step=None``)."""
LIVE_BELOW = timedelta(days=7)
"""Ranges this long or longer do not refresh by themselves: their graphs barely move."""

NICE_STEPS: tuple[timedelta, ...] = tuple(
    timedelta(seconds=s) for s in (5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 6 * 3600, 12 * 3600, 86400)
)


def pick_step(span: timedelta, target: int = TARGET_POINTS) -> timedelta | None:
    """The query step for a graph covering ``span``: ``None`` (raw samples) up to :data:`RAW_UP_TO`,
    else the smallest nice step giving at most ``target`` points (the largest nice step beyond that).
    """
    if span <= RAW_UP_TO:
        return None
    wanted = span / target
    return next((step for step in NICE_STEPS if step >= wanted), NICE_STEPS[-1])


def range_span(key: str | None) -> timedelta:
    """The duration of a range picker value, falling back to :data:`DEFAULT_RANGE` for unknown ones."""
    return RANGES.get(key or DEFAULT_RANGE, RANGES[DEFAULT_RANGE])


def is_live(span: timedelta) -> bool:
    """Whether a range this long refreshes on the dashboard's interval."""
    return span < LIVE_BELOW
