"""LocalStore guarantees that are not about tier arithmetic: safety of SQL, writes, state and threads."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from qwq_core.errors import QueryError, StoreError
from qwq_core.store import LocalStore

BASE = datetime(2026, 11, 1, tzinfo=UTC)


def minutes(count: int, start: datetime = BASE, name: str = "m") -> pl.DataFrame:
    return pl.DataFrame(
        {"name": name, "ts": [start + timedelta(minutes=i) for i in range(count)], "value": [1.0] * count}
    )


@pytest.mark.parametrize(
    "statement",
    [
        "DELETE FROM samples",
        "EXPLAIN ANALYZE DELETE FROM tiers",  # EXPLAIN ANALYZE runs what it explains
        "SELECT 1; DELETE FROM samples",
        "CREATE TABLE x AS SELECT 1",
    ],
)
def test_sql_cannot_write_whatever_the_statement(store: LocalStore, statement: str) -> None:
    store.write(minutes(3))
    with pytest.raises(QueryError):
        store.sql(statement)
    assert store.sql("SELECT count(*) AS n FROM samples")["n"][0] == 3
    assert store.sql("SELECT count(*) AS n FROM tiers")["n"][0] == 3


def test_sql_cannot_reach_files(store: LocalStore, tmp_path: Path) -> None:
    (tmp_path / "secret.csv").write_text("a\n1\n")
    with pytest.raises(QueryError, match="disabled by configuration"):
        store.sql(f"SELECT * FROM read_csv('{tmp_path / 'secret.csv'}')")


def test_samples_older_than_the_raw_data_kept_are_refused_and_the_tiers_survive(tmp_path: Path) -> None:
    later = BASE + timedelta(days=10)
    with LocalStore(tmp_path / "qwq.duckdb", clock=lambda: later) as store:
        store.write(minutes(3 * 24 * 60))
        store.rollup(BASE + timedelta(days=3, hours=1))
        before = store.stats()["rows"]
        store.expire(later)  # raw data (7 d) older than day 3 is gone, its rollups stay
        with pytest.raises(QueryError, match="older than the raw data kept"):
            store.write(minutes(1, start=BASE + timedelta(hours=5)))
        store.rollup(later)
        after = store.stats()["rows"]
        daily = store.query("m", since=BASE, until=BASE + timedelta(days=3), step="1d", agg="count")
    assert after["minute"] == before["minute"] and after["hour"] == before["hour"]
    assert daily["value"].to_list() == [1440.0, 1440.0, 1440.0]


def test_series_id_is_not_a_label(store: LocalStore) -> None:
    with pytest.raises(QueryError, match="invalid label name"):
        store.write(minutes(1).with_columns(series_id=pl.lit("7")))


def test_a_failed_rollup_leaves_tier_state_and_answers_untouched(
    store: LocalStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.write(minutes(180))
    store.rollup(BASE + timedelta(hours=1, minutes=1))
    marks = store.stats()["watermarks"]
    expected = store.query("m", since=BASE, until=BASE + timedelta(hours=3), step="10m", agg="count")

    def broken(self: LocalStore, cursor: object, **kwargs: object) -> int:
        raise StoreError("disk full half way")

    monkeypatch.setattr(LocalStore, "_rollup_span", lambda self, cursor, **kw: broken(self, cursor, **kw))
    with pytest.raises(StoreError):
        store.rollup(BASE + timedelta(hours=3))
    assert store.stats()["watermarks"] == marks
    got = store.query("m", since=BASE, until=BASE + timedelta(hours=3), step="10m", agg="count")
    assert got.equals(expected)


def test_stats_and_checkpoint_are_safe_from_many_threads(store: LocalStore) -> None:
    store.write(minutes(60))
    failures: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(40):
                store.stats()
                store.checkpoint()
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=work) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []


def test_query_rows_come_sorted_by_series_then_time(store: LocalStore) -> None:
    frame = pl.concat([minutes(3, name="m").with_columns(d=pl.lit(d)) for d in ("b", "a", "c")]).sample(
        fraction=1.0, shuffle=True, seed=3
    )
    store.write(frame)
    got = store.query("m", since=BASE, until=BASE + timedelta(hours=1))
    assert got["d"].to_list() == ["a"] * 3 + ["b"] * 3 + ["c"] * 3
    assert got.filter(pl.col("d") == "a")["ts"].is_sorted()
