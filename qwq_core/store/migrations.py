"""Ordered, named schema migrations, recorded in the database (``qwq_migrations``).

A migration is appended to :data:`MIGRATIONS` and never edited once released: the schema version of a store
is the number of migrations applied. Each runs in its own transaction together with its record, so a crash
leaves the store at a known version.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import duckdb

from qwq_core.errors import StoreError


@dataclass(frozen=True)
class Migration:
    """One schema change: a stable name and the SQL statements that make it."""

    name: str
    statements: Sequence[str]


_ROLLUP_COLUMNS = """
    series_id INTEGER NOT NULL,
    ts TIMESTAMP NOT NULL,
    min DOUBLE NOT NULL,
    max DOUBLE NOT NULL,
    avg DOUBLE NOT NULL,
    count BIGINT NOT NULL,
    last DOUBLE NOT NULL,
    last_ts TIMESTAMP NOT NULL
"""

MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        "0001_series_samples_tiers",
        (
            """CREATE TABLE series (
                id INTEGER PRIMARY KEY,
                name VARCHAR NOT NULL,
                labels MAP(VARCHAR, VARCHAR) NOT NULL,
                key VARCHAR NOT NULL UNIQUE,
                created TIMESTAMP NOT NULL
            )""",
            """CREATE TABLE metrics (
                name VARCHAR PRIMARY KEY,
                type VARCHAR NOT NULL,
                unit VARCHAR NOT NULL,
                help VARCHAR NOT NULL
            )""",
            "CREATE TABLE samples (series_id INTEGER NOT NULL, ts TIMESTAMP NOT NULL, value DOUBLE NOT NULL)",
            f"CREATE TABLE samples_1m ({_ROLLUP_COLUMNS})",
            f"CREATE TABLE samples_1h ({_ROLLUP_COLUMNS})",
            # watermark: rollups before it are complete; dirty_since: recompute from here (late samples);
            # expired_before: retention deleted this tier's rows before it.
            """CREATE TABLE tiers (
                name VARCHAR PRIMARY KEY,
                watermark TIMESTAMP,
                dirty_since TIMESTAMP,
                expired_before TIMESTAMP
            )""",
            "INSERT INTO tiers (name) VALUES ('raw'), ('minute'), ('hour')",
            # A convenience view for notebooks: every raw sample with its metric name and labels.
            """CREATE VIEW points AS
                SELECT s.name, s.labels, p.ts, p.value
                FROM samples p JOIN series s ON s.id = p.series_id""",
        ),
    ),
    Migration(
        "0002_events",
        (
            "CREATE SEQUENCE events_id START 1",
            """CREATE TABLE events (
                id BIGINT PRIMARY KEY DEFAULT nextval('events_id'),
                ts TIMESTAMP NOT NULL,
                kind VARCHAR NOT NULL,
                source VARCHAR NOT NULL,
                severity VARCHAR NOT NULL,
                message VARCHAR NOT NULL,
                attrs VARCHAR NOT NULL
            )""",
        ),
    ),
)

SCHEMA_VERSION = len(MIGRATIONS)

_LEDGER = """CREATE TABLE IF NOT EXISTS qwq_migrations (
    id INTEGER PRIMARY KEY, name VARCHAR NOT NULL, applied_at TIMESTAMP NOT NULL
)"""


def applied(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Names of the migrations recorded in the store, in order (empty for a new store)."""
    exists = con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = 'qwq_migrations'"
    ).fetchone()
    if not exists or not exists[0]:
        return []
    return [row[0] for row in con.execute("SELECT name FROM qwq_migrations ORDER BY id").fetchall()]


def migrate(con: duckdb.DuckDBPyConnection, now: datetime) -> list[str]:
    """Apply every pending migration; returns the names applied. Refuses a store newer than this code."""
    done = applied(con)
    known = [m.name for m in MIGRATIONS]
    if done != known[: len(done)]:
        raise StoreError(
            f"store schema {done} does not match this qwq's migrations {known}: "
            "it was written by a newer or different qwq"
        )
    con.execute(_LEDGER)
    ran = []
    for number, migration in enumerate(MIGRATIONS[len(done) :], start=len(done) + 1):
        con.execute("BEGIN TRANSACTION")
        try:
            for statement in migration.statements:
                con.execute(statement)
            con.execute("INSERT INTO qwq_migrations VALUES (?, ?, ?)", [number, migration.name, now])
            con.execute("COMMIT")
        except duckdb.Error as exc:
            con.execute("ROLLBACK")
            raise StoreError(f"migration {migration.name} failed: {exc}") from exc
        ran.append(migration.name)
    return ran
