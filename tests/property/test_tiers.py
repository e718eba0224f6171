"""Tiered storage answers exactly what raw samples say, whatever the rollup progress or late writes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qwq_core.store import LocalStore
from qwq_core.store.tiers import HOUR, MINUTE, RAW, plan_segments, tier_for_step
from qwq_core.timeutil import floor_time

BASE = datetime(2026, 11, 1, tzinfo=UTC)
times = st.integers(0, 4 * 3600 * 1000).map(lambda ms: BASE + timedelta(milliseconds=ms))


@given(
    times,
    times,
    st.sampled_from([RAW, MINUTE, HOUR]),
    st.one_of(st.none(), times),
    st.one_of(st.none(), times),
)
def test_segments_tile_the_range_and_respect_watermarks(a: datetime, b: datetime, top, minute_mark, hour_mark) -> None:
    since, until = min(a, b), max(a, b)
    marks = {"minute": minute_mark, "hour": hour_mark}
    segments = plan_segments(since, until, top, marks)
    if since == until:
        assert segments == []
        return
    assert segments[0].start == since and segments[-1].end == until
    for left, right in zip(segments, segments[1:], strict=False):
        assert left.end == right.start  # contiguous, no overlap, no gap
    for segment in segments:
        assert segment.start < segment.end
        if segment.tier.bucket is not None:
            mark = marks[segment.tier.name]
            assert mark is not None and segment.end <= mark
            epoch = datetime(1970, 1, 1, tzinfo=UTC)
            assert (segment.start - epoch) % segment.tier.bucket == timedelta(0)
            assert (segment.end - epoch) % segment.tier.bucket == timedelta(0)


@pytest.mark.parametrize(
    ("step", "tier"),
    [
        (None, RAW),
        (timedelta(seconds=30), RAW),
        (timedelta(seconds=90), RAW),
        (timedelta(minutes=1), MINUTE),
        (timedelta(minutes=5), MINUTE),
        (timedelta(minutes=90), MINUTE),
        (timedelta(hours=1), HOUR),
        (timedelta(days=1), HOUR),
    ],
)
def test_the_coarsest_tier_that_divides_the_step_serves_it(step: timedelta | None, tier) -> None:
    assert tier_for_step(step) == tier


def reference(raw: pl.DataFrame, step: timedelta, agg: str, since: datetime, until: datetime) -> pl.DataFrame:
    """The same aggregation computed directly from raw samples with polars."""
    window = raw.filter((pl.col("ts") >= since) & (pl.col("ts") <= until)).sort("ts")
    exprs = {
        "avg": pl.col("value").mean(),
        "min": pl.col("value").min(),
        "max": pl.col("value").max(),
        "sum": pl.col("value").sum(),
        "count": pl.len().cast(pl.Float64),
        "last": pl.col("value").last(),
    }
    return (
        window.group_by_dynamic("ts", every=step, group_by="name", start_by="window")
        .agg(exprs[agg].alias("value"))
        .sort("name", "ts")
    )


# Writes are append-only: two samples of one series at the same instant are both kept, and which is "last"
# is unspecified — so the generated samples have distinct (series, ts) pairs across both batches.
sample_rows = st.lists(
    st.tuples(st.integers(0, 3 * 3600), st.sampled_from(["a", "b"]), st.floats(-1e6, 1e6, allow_nan=False)),
    min_size=2,
    max_size=300,
    unique_by=lambda row: (row[0], row[1]),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    rows=sample_rows,
    split=st.integers(1, 299),
    rollup_at=st.integers(0, 4 * 3600),
    step=st.sampled_from(
        [
            timedelta(seconds=30),
            timedelta(minutes=1),
            timedelta(minutes=10),
            timedelta(hours=1),
            timedelta(hours=2),
        ]
    ),
    agg=st.sampled_from(["avg", "min", "max", "sum", "count", "last"]),
    window=st.tuples(st.integers(0, 4 * 3600), st.integers(0, 4 * 3600)),
)
def test_step_queries_over_tiers_equal_the_raw_computation(
    tmp_path_factory: pytest.TempPathFactory, rows, split, rollup_at, step, agg, window
) -> None:
    first, late = rows[: min(split, len(rows) - 1)], rows[min(split, len(rows) - 1) :]

    def frame(rows: list[tuple[int, str, float]]) -> pl.DataFrame:
        return pl.DataFrame(
            {
                "name": [f"m_{n}" for _, n, _ in rows],
                "ts": [BASE + timedelta(seconds=s) for s, _, _ in rows],
                "value": [v for _, _, v in rows],
            }
        )

    path: Path = tmp_path_factory.mktemp("tiers") / "qwq.duckdb"
    with LocalStore(path, clock=lambda: BASE + timedelta(hours=5)) as store:
        store.write(frame(first))
        store.rollup(BASE + timedelta(seconds=rollup_at))  # tiers complete up to some point
        store.write(frame(late))  # then samples land behind the watermark
        if rollup_at % 2:
            store.rollup(BASE + timedelta(seconds=rollup_at + 1800))  # and sometimes a rollup follows
        since = BASE + timedelta(seconds=min(window))
        until = BASE + timedelta(seconds=max(window))
        got = store.query("m_*", since=since, until=until, step=step, agg=agg).sort("name", "ts")
    raw = pl.concat([frame(first), frame(late)]).with_columns(pl.col("ts").dt.replace_time_zone("UTC"))
    expected = reference(raw, step, agg, since, until)
    assert got["name"].to_list() == expected["name"].to_list()
    assert got["ts"].to_list() == expected["ts"].to_list()
    assert got["value"].to_list() == pytest.approx(expected["value"].to_list(), rel=1e-9, abs=1e-6)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    offsets=st.lists(st.integers(0, 3 * 3600), min_size=3, max_size=400, unique=True),
    per_second=st.floats(0.001, 1e6),
    rollup_at=st.integers(0, 4 * 3600),
    step=st.sampled_from([timedelta(seconds=20), timedelta(minutes=1), timedelta(minutes=5), timedelta(hours=1)]),
)
def test_counter_rates_are_exact_across_tier_seams(
    tmp_path_factory: pytest.TempPathFactory, offsets, per_second, rollup_at, step
) -> None:
    offsets = sorted(offsets)
    counter = pl.DataFrame(
        {
            "name": "c_total",
            "ts": [BASE + timedelta(seconds=s) for s in offsets],
            "value": [1000 + per_second * s for s in offsets],
        }
    )
    with LocalStore(tmp_path_factory.mktemp("rate") / "qwq.duckdb") as store:
        store.write(counter)
        store.rollup(BASE + timedelta(seconds=rollup_at))
        rates = store.query("c_total", since=BASE, until=BASE + timedelta(hours=4), step=step, agg="rate")
    buckets = {floor_time(BASE + timedelta(seconds=s), step) for s in offsets}
    assert rates.height == len(buckets) - 1  # every bucket after the first has a predecessor
    assert rates["value"].to_list() == pytest.approx([per_second] * rates.height, rel=1e-6)


def test_a_counter_reset_counts_the_new_value_as_the_increase(store: LocalStore) -> None:
    values = [10.0, 20.0, 30.0, 5.0, 15.0]  # restarted between the third and fourth sample
    store.write(
        pl.DataFrame({"name": "r_total", "ts": [BASE + timedelta(seconds=10 * i) for i in range(5)], "value": values})
    )
    rates = store.query("r_total", since=BASE, until=BASE + timedelta(minutes=1), agg="rate")
    assert rates["value"].to_list() == pytest.approx([1.0, 1.0, 0.5, 1.0])
