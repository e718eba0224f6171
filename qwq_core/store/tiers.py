"""Storage tiers and how queries and rollups use them — pure planning, no connection.

Like Netdata's tiers: raw samples, 1-minute and 1-hour rollups, each rollup row holding
``min, max, avg, count, last`` of its bucket. Each rollup tier has a *watermark*: every bucket before it
is complete and agrees with its source. A query with a step picks the coarsest tier whose bucket divides
the step, reads that tier before its watermark and the finer tiers after it (down to raw samples), so
answers are exact up to the last flush whatever the rollup job's lag.

Every tier is read through the same *partial aggregates* per (series, bucket): ``mn, mx, sm, cnt, lst,
lst_ts`` — which combine across tiers and buckets without loss for min/max/sum/count/avg/last. Rollups keep
the time of their last sample (``last_ts``), so counter rates stay exact where tiers meet.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from qwq_core.errors import QueryError
from qwq_core.timeutil import ceil_time, floor_time

Agg = Literal["avg", "min", "max", "sum", "count", "last", "rate"]
AGGS: tuple[Agg, ...] = ("avg", "min", "max", "sum", "count", "last", "rate")


@dataclass(frozen=True)
class Tier:
    """One storage tier: its table, bucket width (``None`` for raw) and the finer tier it rolls up."""

    name: str
    table: str
    bucket: timedelta | None
    source: str | None

    @property
    def is_raw(self) -> bool:
        """True for the raw samples table."""
        return self.bucket is None


RAW = Tier("raw", "samples", None, None)
MINUTE = Tier("minute", "samples_1m", timedelta(minutes=1), "raw")
HOUR = Tier("hour", "samples_1h", timedelta(hours=1), "minute")
TIERS: tuple[Tier, ...] = (RAW, MINUTE, HOUR)
ROLLUPS: tuple[Tier, ...] = (MINUTE, HOUR)
BY_NAME = {tier.name: tier for tier in TIERS}


def tier_for_step(step: timedelta | None) -> Tier:
    """The coarsest tier whose bucket divides ``step`` (raw when there is no step or none divides it)."""
    if step is None:
        return RAW
    if step <= timedelta(0):
        raise QueryError(f"step must be positive, got {step}")
    for tier in reversed(ROLLUPS):
        assert tier.bucket is not None
        if step >= tier.bucket and step % tier.bucket == timedelta(0):
            return tier
    return RAW


@dataclass(frozen=True)
class Segment:
    """A half-open time range ``[start, end)`` read from one tier."""

    tier: Tier
    start: datetime
    end: datetime


def plan_segments(since: datetime, until: datetime, top: Tier, watermarks: dict[str, datetime | None]) -> list[Segment]:
    """Cover ``[since, until)`` using ``top`` where it is complete and finer tiers elsewhere.

    A rollup tier serves only whole buckets inside the range and before its watermark; the edges and
    everything after the watermark fall through to the next finer tier, recursively down to raw.
    """

    def cover(start: datetime, end: datetime, tier: Tier) -> list[Segment]:
        if start >= end:
            return []
        if tier.is_raw:
            return [Segment(tier, start, end)]
        assert tier.bucket is not None and tier.source is not None
        finer = BY_NAME[tier.source]
        watermark = watermarks.get(tier.name)
        lo = ceil_time(start, tier.bucket)
        hi = floor_time(end, tier.bucket)
        if watermark is not None:
            hi = min(hi, floor_time(watermark, tier.bucket))
        if watermark is None or lo >= hi:
            return cover(start, end, finer)
        return cover(start, lo, finer) + [Segment(tier, lo, hi)] + cover(hi, end, finer)

    return cover(since, until, top)


def partials_sql(tier: Tier, step: timedelta | None, id_filter: str) -> str:
    """SELECT of partial aggregates per (series, step bucket) of one segment of ``tier``.

    ``step=None`` keeps the tier's own resolution (one bucket per stored row). Takes two parameters, the
    segment's start and end; ``id_filter`` is a SQL predicate on ``series_id`` (with its own parameters
    placed before them).
    """
    if step is None:
        bucket = "ts"
    else:
        bucket = f"time_bucket(INTERVAL {_micros(step)} MICROSECONDS, ts, TIMESTAMP '1970-01-01')"
    if tier.is_raw:
        aggregates = "min(value), max(value), sum(value), count(*), arg_max(value, ts), max(ts)"
    else:
        aggregates = "min(min), max(max), sum(avg * count), sum(count), arg_max(last, last_ts), max(last_ts)"
    return (
        f"SELECT series_id, {bucket} AS bucket, {aggregates} "
        f"FROM {tier.table} WHERE {id_filter} AND ts >= ? AND ts < ? GROUP BY ALL"
    )


_FINAL = {
    "avg": "sum(sm) / sum(cnt)",
    "min": "min(mn)",
    "max": "max(mx)",
    "sum": "sum(sm)",
    "count": "sum(cnt)::DOUBLE",
    "last": "arg_max(lst, lst_ts)",
    # A rate is derived in polars from consecutive buckets' last values; here it needs `lst`, `lst_ts`.
    "rate": "arg_max(lst, lst_ts)",
}


def combine_sql(parts: list[str], agg: Agg) -> str:
    """Merge the partial SELECTs of all segments into one value per (series, bucket)."""
    if agg not in _FINAL:
        raise QueryError(f"unknown aggregation {agg!r}; choose one of {', '.join(AGGS)}")
    union = " UNION ALL ".join(f"({part})" for part in parts)
    return (
        f"SELECT series_id, bucket AS ts, {_FINAL[agg]} AS value, max(lst_ts) AS lst_ts "
        f"FROM ({union}) AS p(series_id, bucket, mn, mx, sm, cnt, lst, lst_ts) "
        "GROUP BY series_id, bucket ORDER BY series_id, bucket"
    )


def rollup_sql(tier: Tier) -> str:
    """INSERT of ``tier``'s rows for ``[start, end)`` computed from its source tier (two parameters)."""
    assert tier.bucket is not None and tier.source is not None
    source = BY_NAME[tier.source]
    partials = partials_sql(source, tier.bucket, "true")
    # Sorted by series: rows of one series sit together, which compresses better and reads faster.
    return (
        f"INSERT INTO {tier.table} SELECT series_id, bucket, mn, mx, sm / cnt, cnt, lst, lst_ts "
        f"FROM ({partials}) AS p(series_id, bucket, mn, mx, sm, cnt, lst, lst_ts) ORDER BY series_id, bucket"
    )


def _micros(delta: timedelta) -> int:
    return delta // timedelta(microseconds=1)
