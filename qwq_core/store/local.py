"""The DuckDB-backed store: the one module that opens DuckDB connections.

Writes are serialised by a lock and each is one transaction (a crash loses at most the batch being written;
DuckDB's write-ahead log replays committed ones). Every read and write uses a cursor of its own, so the REST
API, the dashboard and the writer work concurrently in one process. The file's lock allows one process at a time;
other processes read through the running server (see :mod:`qwq_core.connect`).
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from qwq_core.errors import QueryError, StoreError, StoreLockedError
from qwq_core.model import Event, MetricInfo
from qwq_core.selectors import Selector, name_glob
from qwq_core.settings import RetentionSettings, StoreSettings
from qwq_core.store import ingest, migrations
from qwq_core.store.base import QuerySpec, SQLParams, Store
from qwq_core.store.catalog import SeriesCatalog
from qwq_core.store.tiers import (
    BY_NAME,
    ROLLUPS,
    TIERS,
    Tier,
    combine_sql,
    partials_sql,
    plan_segments,
    rollup_sql,
    tier_for_step,
)
from qwq_core.timeutil import DurationLike, TimeLike, floor_time, parse_duration, parse_time, utcnow

log = logging.getLogger(__name__)

ROLLUP_LAG = timedelta(minutes=1)
"""How far behind now the minute tier is rolled up; later samples are recomputed via ``dirty_since``."""
ROLLUP_CHUNK = {"minute": timedelta(hours=1), "hour": timedelta(days=1)}
"""Longest span rolled up in one transaction (the writer waits for it)."""
_IDS = "series_id IN (SELECT unnest(?::INTEGER[]))"
_READ_ONLY = {duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN}


@dataclass(frozen=True)
class ArrowStream:
    """A polars frame seen by DuckDB through the Arrow C stream interface, read once.

    Registering the frame itself, or reading results with ``relation.pl()``, makes DuckDB import pyarrow
    (~60 MB of resident memory); polars and DuckDB speak the C interface without it.
    """

    frame: pl.DataFrame

    def __arrow_c_stream__(self, requested_schema: object | None = None) -> object:
        return self.frame.__arrow_c_stream__(requested_schema)


def as_frame(relation: duckdb.DuckDBPyRelation) -> pl.DataFrame:
    """A DuckDB result as a polars frame, INTERVAL columns as seconds (polars cannot import them)."""
    if any(str(kind).startswith("INTERVAL") for kind in relation.types):
        quoted = ['"' + name.replace('"', '""') + '"' for name in relation.columns]
        relation = relation.project(
            ", ".join(
                f"epoch({q}) AS {q}" if str(kind).startswith("INTERVAL") else q
                for q, kind in zip(quoted, relation.types, strict=True)
            )
        )
    return pl.DataFrame(relation)


@dataclass
class _TierState:
    watermark: datetime | None
    dirty_since: datetime | None
    expired_before: datetime | None


def _naive(moment: datetime) -> datetime:
    """UTC wall time without tzinfo: what DuckDB TIMESTAMP columns hold."""
    return parse_time(moment, now=moment).replace(tzinfo=None)


def _utc(frame: pl.DataFrame, column: str = "ts") -> pl.DataFrame:
    return frame.with_columns(pl.col(column).dt.replace_time_zone("UTC"))


class LocalStore(Store):
    """A store in a DuckDB file, opened by this process (the writer, or a reader when no server runs)."""

    def __init__(
        self,
        path: str | Path,
        *,
        settings: StoreSettings | None = None,
        read_only: bool = False,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.path = Path(path).expanduser()
        self.settings = settings or StoreSettings()
        self.read_only = read_only
        self._clock = clock
        self._lock = threading.RLock()
        self._db = self._connect()
        try:
            self._prepare()
        except BaseException:
            self._db.close()
            raise

    # ---- opening -------------------------------------------------------------------------------------
    def _connect(self) -> duckdb.DuckDBPyConnection:
        if self.read_only and not self.path.exists():
            raise StoreError(f"no store at {self.path}")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        config: dict[str, str | bool | int | float | list[str]] = {
            "memory_limit": self.settings.memory_limit,
            "threads": self.settings.threads,
            # Store.sql runs user SQL: no file or network access from inside the database.
            "enable_external_access": False,
        }
        try:
            return duckdb.connect(str(self.path), read_only=self.read_only, config=config)
        except duckdb.IOException as exc:
            holder = re.search(r"PID (\d+)", str(exc))
            if "lock" in str(exc).lower():
                pid = f" (PID {holder.group(1)})" if holder else ""
                raise StoreLockedError(
                    f"{self.path} is in use by another process{pid}; while `qwq up` runs, read through it: "
                    "qwq_core.connect() finds the server by itself"
                ) from exc
            raise StoreError(f"cannot open store {self.path}: {exc}") from exc
        except duckdb.Error as exc:
            raise StoreError(f"cannot open store {self.path}: {exc}") from exc

    def _prepare(self) -> None:
        if self.read_only:
            if migrations.applied(self._db) != [m.name for m in migrations.MIGRATIONS]:
                raise StoreError(f"{self.path} needs a schema migration; open it once read-write")
        else:
            for name in migrations.migrate(self._db, _naive(self._clock())):
                log.info("store %s: applied migration %s", self.path, name)
        rows = self._read(
            "SELECT id AS series_id, name, map_keys(labels) AS keys, map_values(labels) AS values, key "
            "FROM series ORDER BY id"
        )
        self._catalog = SeriesCatalog(rows)
        self._metric_names = set(self._read("SELECT name FROM metrics")["name"].to_list())
        self._tiers = self._load_tiers()

    def _load_tiers(self) -> dict[str, _TierState]:
        rows = self._read("SELECT name, watermark, dirty_since, expired_before FROM tiers")
        return {row.pop("name"): _TierState(**row) for row in rows.iter_rows(named=True)}

    def _read(self, query: str, params: SQLParams = None) -> pl.DataFrame:
        cursor = self._db.cursor()
        try:
            relation = cursor.sql(query, params=params)
            return as_frame(relation) if relation is not None else pl.DataFrame()
        except duckdb.Error as exc:
            raise StoreError(f"store read failed: {exc}") from exc
        finally:
            cursor.close()

    def _transaction(self, work: Callable[[duckdb.DuckDBPyConnection], Any]) -> Any:
        """Run ``work`` in one write transaction on its own cursor, under the writer lock."""
        if self.read_only:
            raise StoreError(f"{self.path} is open read-only")
        with self._lock:
            cursor = self._db.cursor()
            try:
                cursor.execute("BEGIN TRANSACTION")
                result = work(cursor)
                cursor.execute("COMMIT")
                return result
            except BaseException as exc:
                try:
                    cursor.execute("ROLLBACK")
                except duckdb.Error:
                    pass
                if isinstance(exc, duckdb.Error):
                    raise StoreError(f"store write failed: {exc}") from exc
                raise
            finally:
                cursor.close()

    # ---- writing -------------------------------------------------------------------------------------
    def write(self, frame: pl.DataFrame) -> int:
        batch = ingest.normalise(frame)
        if batch.is_empty():
            return 0
        key_columns = ["name", *ingest.label_columns(batch)]
        oldest: datetime = batch["ts"].min()  # type: ignore[assignment]
        with self._lock:
            self._refuse_expired(oldest)
            # Sorted, so a batch's new series get ids in label order: query results come back in that order.
            unique = batch.select(key_columns).unique().sort(key_columns, nulls_last=True)
            keys, new_series = self._catalog.resolve(unique, _naive(self._clock()))
            samples = batch.join(keys, on=key_columns, how="left", nulls_equal=True).select("series_id", "ts", "value")
            new_metrics = set(new_series["name"].unique().to_list()) - self._metric_names

            def work(cursor: duckdb.DuckDBPyConnection) -> None:
                if not new_series.is_empty():
                    cursor.register("new_series", ArrowStream(new_series))
                    cursor.execute(
                        "INSERT INTO series SELECT series_id, name, map(keys, values), key, created FROM new_series"
                    )
                    self._insert_metrics(cursor, [MetricInfo.infer(n) for n in sorted(new_metrics)], False)
                cursor.register("batch", ArrowStream(samples))
                cursor.execute("INSERT INTO samples SELECT series_id, ts, value FROM batch")
                self._mark_dirty(cursor, "minute", oldest)

            self._transaction(work)
            self._catalog.commit(new_series)
            self._metric_names |= new_metrics
        return samples.height

    def _refuse_expired(self, oldest: datetime) -> None:
        """Samples behind the raw tier's retention cutoff would be rolled up from incomplete raw data."""
        cutoff = self._tiers["raw"].expired_before
        if cutoff is not None and oldest < cutoff:
            raise QueryError(
                f"samples from {oldest.isoformat()} are older than the raw data kept ({cutoff.isoformat()} on); "
                "to import older history, raise store.retention.raw and write it before the next retention run"
            )

    def _mark_dirty(self, cursor: duckdb.DuckDBPyConnection, tier: str, since: datetime) -> None:
        """Note that ``tier`` must recompute from ``since`` (data arrived behind its watermark).

        The in-memory mark moves before the commit: until then readers merely read finer tiers than needed.
        """
        state = self._tiers[tier]
        if state.watermark is None or since >= state.watermark:
            return
        if state.dirty_since is None or since < state.dirty_since:
            cursor.execute("UPDATE tiers SET dirty_since = ? WHERE name = ?", [since, tier])
            state.dirty_since = since

    def record(self, events: Iterable[Event]) -> None:
        rows = [event.as_row() for event in events]
        if not rows:
            return
        frame = pl.DataFrame(rows, schema_overrides={"ts": pl.Datetime("us")})

        def work(cursor: duckdb.DuckDBPyConnection) -> None:
            cursor.register("new_events", ArrowStream(frame))
            cursor.execute(
                "INSERT INTO events (ts, kind, source, severity, message, attrs) "
                "SELECT ts, kind, source, severity, message, attrs FROM new_events"
            )

        self._transaction(work)

    def describe(self, metrics: Iterable[MetricInfo]) -> None:
        infos = list(metrics)
        if infos:
            with self._lock:
                self._transaction(lambda cursor: self._insert_metrics(cursor, infos, True))
                self._metric_names |= {info.name for info in infos}

    @staticmethod
    def _insert_metrics(cursor: duckdb.DuckDBPyConnection, infos: list[MetricInfo], replace: bool) -> None:
        if not infos:
            return
        on_conflict = (
            "DO UPDATE SET type = excluded.type, unit = excluded.unit, help = excluded.help"
            if replace
            else "DO NOTHING"
        )
        cursor.executemany(
            f"INSERT INTO metrics VALUES (?, ?, ?, ?) ON CONFLICT {on_conflict}",
            [[info.name, info.type, info.unit, info.help] for info in infos],
        )

    # ---- querying ------------------------------------------------------------------------------------
    def _select(self, selector: Selector | None) -> pl.DataFrame:
        frame = self._catalog.frame
        return frame if selector is None else selector.filter(frame)

    def _labelled(self, data: pl.DataFrame, selected: pl.DataFrame) -> pl.DataFrame:
        """Replace ``series_id`` by ``name`` and one column per label: the frame shape users get."""
        labels = self._catalog.label_columns(selected)
        out = data.join(
            selected.select("series_id", "name", *labels), on="series_id", how="left", maintain_order="left"
        )
        return _utc(out.select("ts", "value", "name", *labels))

    def run_query(self, spec: QuerySpec) -> pl.DataFrame:
        selected = self._select(spec.selector)
        if selected.is_empty():
            return _empty_samples()
        ids = selected["series_id"].to_list()
        since, until = _naive(spec.since), _naive(spec.until)
        if spec.agg == "rate":  # one bucket more before `since`, so the first rate has a predecessor
            since -= spec.step or timedelta(minutes=5)
        data = self._points(ids, since, until, spec)
        if spec.agg == "rate":
            data = _rate(data).filter(pl.col("ts") >= _naive(spec.since))
        return self._labelled(data.select("series_id", "ts", "value"), selected)

    def _points(self, ids: list[int], since: datetime, until: datetime, spec: QuerySpec) -> pl.DataFrame:
        if spec.step is None:
            return self._read(
                f"SELECT series_id, ts, value, ts AS lst_ts FROM samples WHERE {_IDS} "
                "AND ts >= ? AND ts <= ? ORDER BY series_id, ts",
                [ids, since, until],
            )
        top = tier_for_step(spec.step)
        watermarks = self._readable_until()
        # `until` is inclusive: the segment ends just after it.
        segments = plan_segments(since, until + timedelta(microseconds=1), top, watermarks)
        parts, params = [], []
        for segment in segments:
            parts.append(partials_sql(segment.tier, spec.step, _IDS))
            params += [ids, segment.start, segment.end]
        return self._read(combine_sql(parts, spec.agg), params)

    def _readable_until(self) -> dict[str, datetime | None]:
        """Per rollup tier, up to when its rows agree with raw data (a dirty range is not readable)."""
        readable: dict[str, datetime | None] = {}
        for tier in ROLLUPS:
            state = self._tiers[tier.name]
            bounds = [state.watermark, state.dirty_since, readable.get(tier.source or "")]
            known = [b for b in bounds if b is not None]
            readable[tier.name] = min(known) if state.watermark is not None else None
        return readable

    def latest(
        self,
        metric: str | None = None,
        *,
        labels: Mapping[str, str] | None = None,
        max_age: DurationLike = "5m",
    ) -> pl.DataFrame:
        selected = self._select(Selector.build(metric, labels))
        if selected.is_empty():
            return _empty_samples()
        since = _naive(self._clock()) - parse_duration(max_age)
        data = self._read(
            f"SELECT series_id, max(ts) AS ts, arg_max(value, ts) AS value FROM samples WHERE {_IDS} "
            "AND ts >= ? GROUP BY series_id ORDER BY series_id",
            [selected["series_id"].to_list(), since],
        )
        return self._labelled(data, selected)

    def series(self, pattern: str | None = None) -> pl.DataFrame:
        selected = self._select(Selector.parse(pattern) if pattern else None)
        return selected.select("series_id", "name", *self._catalog.label_columns(selected)).sort("series_id")

    def metrics(self, pattern: str | None = None) -> pl.DataFrame:
        frame = self._read("SELECT name, type, unit, help FROM metrics ORDER BY name")
        counts = self._catalog.frame.group_by("name").agg(pl.len().cast(pl.Int64).alias("series"))
        frame = frame.join(counts, on="name", how="left").with_columns(pl.col("series").fill_null(0))
        return frame.filter(name_glob(pattern)) if pattern else frame

    def events(
        self,
        *,
        since: TimeLike = "24h",
        until: TimeLike | None = None,
        kind: str | None = None,
        source: str | None = None,
        severity: str | None = None,
        limit: int = 1000,
    ) -> pl.DataFrame:
        now = self._clock()
        where: list[str] = ["ts >= ?", "ts <= ?"]
        params: list[Any] = [
            _naive(parse_time(since, now=now)),
            _naive(parse_time(until, now=now)),
        ]
        for column, value in (("kind", kind), ("source", source), ("severity", severity)):
            if value:
                where.append(f"{column} GLOB ?")
                params.append(value)
        frame = self._read(
            "SELECT id, ts, kind, source, severity, message, attrs FROM events "
            f"WHERE {' AND '.join(where)} ORDER BY ts DESC, id DESC LIMIT ?",
            [*params, max(0, int(limit))],
        )
        return _utc(frame)

    def sql(self, query: str, params: SQLParams = None) -> pl.DataFrame:
        try:
            statements = duckdb.extract_statements(query)
        except duckdb.Error as exc:
            raise QueryError(f"invalid SQL: {exc}") from exc
        if len(statements) != 1:
            raise QueryError(f"expected one SQL statement, got {len(statements)}")
        if statements[0].type not in _READ_ONLY:
            raise QueryError(f"Store.sql is read-only: {statements[0].type.name} statements are refused")
        cursor = self._db.cursor()
        try:
            # The statement check gives clear errors; the read-only transaction is what guarantees it
            # (EXPLAIN ANALYZE, for one, runs the statement it explains).
            cursor.execute("BEGIN TRANSACTION READ ONLY")
            relation = cursor.sql(query, params=params)
            frame = as_frame(relation) if relation is not None else pl.DataFrame()
        except duckdb.Error as exc:
            raise QueryError(f"SQL failed: {exc}") from exc
        except pl.exceptions.PolarsError as exc:  # a type polars cannot hold
            raise QueryError(f"SQL result cannot be returned as a frame ({exc}); cast that column") from exc
        finally:
            try:
                cursor.execute("ROLLBACK")
            except duckdb.Error:
                pass  # the transaction never began
            cursor.close()
        # Every TIMESTAMP in the store is UTC: say so, as query() does.
        naive = [c for c, t in frame.schema.items() if isinstance(t, pl.Datetime) and t.time_zone is None]
        return frame.with_columns(pl.col(naive).dt.replace_time_zone("UTC")) if naive else frame

    @property
    def size_bytes(self) -> int:
        """Bytes on disk: the database file and its write-ahead log."""
        wal = self.path.with_name(self.path.name + ".wal")
        return sum(p.stat().st_size for p in (self.path, wal) if p.exists())

    @property
    def series_count(self) -> int:
        """How many series the store knows."""
        return len(self._catalog)

    def stats(self) -> dict[str, Any]:
        rows = {tier.name: self._read(f"SELECT count(*) AS n FROM {tier.table}")["n"][0] for tier in TIERS}
        return {
            "path": str(self.path),
            "size_bytes": self.size_bytes,
            "schema_version": migrations.SCHEMA_VERSION,  # _prepare refuses any other
            "series": self.series_count,
            "metrics": len(self._metric_names),
            "rows": rows,
            "watermarks": {t.name: _iso(self._tiers[t.name].watermark) for t in ROLLUPS},
        }

    # ---- maintenance ---------------------------------------------------------------------------------
    def rollup(self, now: datetime | None = None) -> dict[str, int]:
        """Bring the rollup tiers up to date; returns the number of buckets (re)computed per tier."""
        moment = _naive(now or self._clock())
        done = {}
        for tier in ROLLUPS:
            assert tier.bucket is not None and tier.source is not None
            if tier.source == "raw":
                target: datetime | None = floor_time(moment - ROLLUP_LAG, tier.bucket)
            else:
                source_mark = self._tiers[tier.source].watermark
                target = floor_time(source_mark, tier.bucket) if source_mark else None
            done[tier.name] = self._rollup_tier(tier, target) if target else 0
        return done

    def _rollup_tier(self, tier: Tier, target: datetime) -> int:
        total = 0
        while True:
            with self._lock:  # held across choosing and rolling up a span, so no dirty mark is lost
                span = self._next_span(tier, target)
                if span is None:
                    return total
                start, end = span
                state = self._tiers[tier.name]
                # A dirty range is recomputed from its start; what lies between it and the watermark stays dirty.
                mark = max(state.watermark, end) if state.watermark is not None else end
                dirty = (
                    end
                    if state.dirty_since is not None and state.watermark is not None and end < state.watermark
                    else None
                )
                total += self._transaction(
                    partial(self._rollup_span, tier=tier, start=start, end=end, mark=mark, dirty=dirty)
                )
                # Only now, committed: readers must not trust the new rows before they can see them.
                state.watermark, state.dirty_since = mark, dirty

    def _next_span(self, tier: Tier, target: datetime) -> tuple[datetime, datetime] | None:
        """The next range of ``tier`` to (re)compute: from its dirty point or watermark, one chunk long."""
        assert tier.bucket is not None and tier.source is not None
        state = self._tiers[tier.name]
        marks = [m for m in (state.watermark, state.dirty_since) if m is not None]
        if marks:
            start = floor_time(min(marks), tier.bucket)
        else:
            oldest = self._read(f"SELECT min(ts) AS ts FROM {BY_NAME[tier.source].table}")["ts"][0]
            if oldest is None:
                return None
            start = floor_time(oldest, tier.bucket)
        return (start, min(start + ROLLUP_CHUNK[tier.name], target)) if start < target else None

    def _rollup_span(
        self,
        cursor: duckdb.DuckDBPyConnection,
        tier: Tier,
        start: datetime,
        end: datetime,
        mark: datetime,
        dirty: datetime | None,
    ) -> int:
        """Recompute ``tier`` over ``[start, end)`` and record its new marks (inside a transaction)."""
        cursor.execute(f"DELETE FROM {tier.table} WHERE ts >= ? AND ts < ?", [start, end])
        cursor.execute(rollup_sql(tier), [start, end])
        row = cursor.execute(f"SELECT count(*) FROM {tier.table} WHERE ts >= ? AND ts < ?", [start, end]).fetchone()
        cursor.execute("UPDATE tiers SET watermark = ?, dirty_since = ? WHERE name = ?", [mark, dirty, tier.name])
        coarser = next((t for t in ROLLUPS if t.source == tier.name), None)
        if coarser is not None:
            self._mark_dirty(cursor, coarser.name, start)
        return int(row[0]) if row else 0

    def expire(self, now: datetime | None = None, retention: RetentionSettings | None = None) -> dict[str, int]:
        """Delete data past each tier's retention; never raw data the minute tier has not rolled up yet."""
        keep = retention or self.settings.retention
        moment = _naive(now or self._clock())
        limits = {"raw": keep.raw, "minute": keep.minute, "hour": keep.hour}
        deleted = {}
        readable = self._readable_until()
        for tier in TIERS:
            cutoff = moment - limits[tier.name]
            consumer = next((t for t in ROLLUPS if t.source == tier.name), None)
            if consumer is not None:  # keep what the next tier has not rolled up (or must recompute)
                done = readable[consumer.name]
                if done is None:
                    deleted[tier.name] = 0
                    continue
                cutoff = min(cutoff, done)
            deleted[tier.name] = self._delete_before(tier.table, cutoff, tier=tier.name)
        deleted["events"] = self._delete_before("events", moment - keep.events)
        return deleted

    def _delete_before(self, table: str, cutoff: datetime, tier: str | None = None) -> int:
        def work(cursor: duckdb.DuckDBPyConnection) -> int:
            row = cursor.execute(f"DELETE FROM {table} WHERE ts < ?", [cutoff]).fetchone()
            if tier is not None:
                cursor.execute("UPDATE tiers SET expired_before = ? WHERE name = ?", [cutoff, tier])
            return int(row[0]) if row else 0

        with self._lock:
            deleted = int(self._transaction(work))
            if tier is not None:
                self._tiers[tier].expired_before = cutoff
        return deleted

    def checkpoint(self) -> None:
        """Fold the write-ahead log into the database file and reclaim deleted space."""
        with self._lock:
            cursor = self._db.cursor()
            try:
                cursor.execute("CHECKPOINT")
            except duckdb.Error as exc:
                raise StoreError(f"checkpoint failed: {exc}") from exc
            finally:
                cursor.close()

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def _empty_samples() -> pl.DataFrame:
    return pl.DataFrame(schema={"ts": pl.Datetime("us", "UTC"), "value": pl.Float64, "name": pl.String})


def _rate(points: pl.DataFrame) -> pl.DataFrame:
    """Per-second rate between consecutive buckets' last values of each counter; a drop is a reset."""
    previous = pl.col("value").shift(1).over("series_id")
    increase = pl.when(pl.col("value") >= previous).then(pl.col("value") - previous).otherwise(pl.col("value"))
    seconds = (pl.col("lst_ts") - pl.col("lst_ts").shift(1).over("series_id")).dt.total_microseconds() / 1e6
    return (
        points.sort("series_id", "ts")
        .with_columns((increase / seconds).alias("value"), seconds.alias("seconds"))
        .filter(pl.col("seconds") > 0)
        .drop("seconds")
    )
