"""PostgreSQL: connections, transactions, tuples, cache hits, sizes, deadlocks, temp files, long queries, replication.

Configured under ``[collectors.<name>]`` with ``type = "postgres"``::

    [collectors.postgres]
    [[collectors.postgres.targets]]
    name = "main"
    host = "db1.example.org"
    user = "qwq"
    password = "env:PGPASSWORD"

A target is given by ``host``/``port``/``user``/``password``/``database``/``tls``, by a libpq ``dsn``
(connection string or URI, itself a secret so it can come from the environment), or both: fields set
explicitly override the DSN's parts. Every query works for a role with ``pg_monitor``; without it,
other users' sessions have no state and are counted as ``unknown``. Names follow postgres_exporter's
``pg_stat_database_*`` columns with a ``postgres_`` prefix and ``_total`` for counters (see
docs/collectors/databases.md). qwq's own session counts as one active connection, as with the exporter,
but is left out of the longest query and transaction.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from pydantic import Field

from collectors.database import (
    COMMON_METRICS,
    DatabaseCollector,
    DatabaseOptions,
    DatabaseTarget,
    Row,
    Tls,
    host_port,
    optional_rows,
    ratio,
)
from qwq_core.model import MetricInfo
from qwq_core.secrets import Secret, reveal

STATES = (
    "active",
    "idle",
    "idle in transaction",
    "idle in transaction (aborted)",
    "fastpath function call",
    "disabled",
)
"""pg_stat_activity states, always reported (0 when no session is in one)."""
MIN_CONNECT_TIMEOUT = 2
"""libpq's smallest connect_timeout (seconds); the poll's own timeout still bounds the whole poll."""

DATABASE_COUNTERS = {
    "xact_commit": "Transactions committed.",
    "xact_rollback": "Transactions rolled back.",
    "blks_read": "Disk blocks read (not found in shared buffers).",
    "blks_hit": "Disk blocks found in shared buffers.",
    "tup_returned": "Rows returned by queries (sequential scans count every live row read).",
    "tup_fetched": "Rows fetched by queries (index scans).",
    "tup_inserted": "Rows inserted.",
    "tup_updated": "Rows updated.",
    "tup_deleted": "Rows deleted.",
    "deadlocks": "Deadlocks detected.",
    "temp_files": "Temporary files created by queries.",
    "temp_bytes": "Bytes written to temporary files by queries.",
}
"""pg_stat_database columns, each reported as ``postgres_<column>_total{datname}``."""

METRICS: tuple[MetricInfo, ...] = (
    *COMMON_METRICS,
    MetricInfo("postgres_connections", "gauge", help="Client connections by state (label state)."),
    MetricInfo("postgres_max_connections", "gauge", help="The max_connections setting."),
    MetricInfo("postgres_start_time_seconds", "gauge", "seconds", "When the server started (Unix time)."),
    MetricInfo("postgres_longest_query_seconds", "gauge", "seconds", "Age of the longest-running active query."),
    MetricInfo("postgres_longest_transaction_seconds", "gauge", "seconds", "Age of the oldest open transaction."),
    *(
        MetricInfo(f"postgres_{column}_total", "counter", "bytes" if column == "temp_bytes" else "", text)
        for column, text in DATABASE_COUNTERS.items()
    ),
    MetricInfo("postgres_database_size_bytes", "gauge", "bytes", "Disk space used by each database (label datname)."),
    MetricInfo(
        "postgres_cache_hit_ratio", "gauge", "ratio", "Share of block reads served from shared buffers, since reset."
    ),
    MetricInfo("postgres_in_recovery", "gauge", help="1 on a standby (replica), 0 on a primary."),
    MetricInfo("postgres_replicas", "gauge", help="Standbys streaming from this server (pg_stat_replication)."),
    MetricInfo(
        "postgres_replication_lag_seconds",
        "gauge",
        "seconds",
        "On a standby: age of the last replayed transaction, 0 when everything received is replayed.",
    ),
    MetricInfo("postgres_replication_lag_bytes", "gauge", "bytes", "On a standby: WAL received but not yet replayed."),
)

SERVER = """
SELECT current_setting('max_connections')::float8,
       extract(epoch FROM pg_postmaster_start_time())::float8,
       pg_is_in_recovery()
"""
CONNECTIONS = """
SELECT coalesce(state, 'unknown'), count(*) FROM pg_stat_activity
WHERE backend_type = 'client backend' OR (backend_type IS NULL AND datname IS NOT NULL)  -- hidden: another role's
GROUP BY 1
"""
LONGEST = """
SELECT coalesce(max(extract(epoch FROM now() - query_start)) FILTER (WHERE state = 'active'), 0)::float8,
       coalesce(max(extract(epoch FROM now() - xact_start)), 0)::float8
FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()
"""
DATABASES = f"""
SELECT d.datname, {", ".join(f"s.{column}" for column in DATABASE_COUNTERS)},
       CASE WHEN has_database_privilege(d.oid, 'CONNECT') OR pg_has_role('pg_read_all_stats', 'MEMBER')
            THEN pg_database_size(d.oid) END
FROM pg_database d JOIN pg_stat_database s ON s.datid = d.oid
WHERE NOT d.datistemplate
"""
STANDBY = """
SELECT CASE WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0
            ELSE extract(epoch FROM now() - pg_last_xact_replay_timestamp()) END::float8,
       pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn())::float8
"""
REPLICAS = "SELECT count(*) FROM pg_stat_replication"


class PostgresTarget(DatabaseTarget):
    """A PostgreSQL server."""

    port: int = Field(5432, ge=1, le=65535, description="server port")
    host: str = Field("127.0.0.1", min_length=1, description="host name, address, or Unix-socket directory")
    database: str = Field("postgres", min_length=1, description="database to connect to (stats cover all)")
    dsn: Secret | None = Field(
        None, description="libpq connection string or URI; fields set explicitly override its parts"
    )

    def conninfo(self, timeout: float) -> str:
        """The libpq connection string: the DSN's parts, the fields set, the TLS settings and timeouts."""
        fields = {"host": self.host, "port": self.port, "dbname": self.database, "user": self.user}
        names = {"dbname": "database"}
        params: dict[str, Any] = {
            key: value
            for key, value in fields.items()
            if value is not None and (self.dsn is None or names.get(key, key) in self.model_fields_set)
        }
        if self.password is not None:
            params["password"] = reveal(self.password)
        params |= tls_params(self.tls)
        if self.dsn is None:
            params["application_name"] = "qwq"
        params["connect_timeout"] = max(MIN_CONNECT_TIMEOUT, math.ceil(timeout))
        return make_conninfo(reveal(self.dsn) or "", **params)

    def instance(self) -> str:
        """``host:port`` of the server, from the DSN when one is given."""
        if self.dsn is None:
            return super().instance()
        try:
            parts = conninfo_to_dict(self.conninfo(1))
        except psycopg.Error:  # an invalid DSN: the poll will say so (redacted)
            return super().instance()
        return host_port(str(parts.get("host") or parts.get("hostaddr") or "localhost"), parts.get("port") or 5432)

    def secrets(self) -> list[str]:
        """The secrets, plus the password inside a key=value DSN."""
        found = super().secrets()
        if self.dsn is not None:
            try:
                password = conninfo_to_dict(self.dsn.get_secret_value()).get("password")
            except psycopg.Error:
                password = None
            found += [str(password)] if password else []
        return found


def tls_params(tls: Tls | None) -> dict[str, str]:
    """libpq's TLS parameters: verify-full against the CA (or the system's), or encryption only."""
    if tls is None:
        return {}  # libpq's default, sslmode=prefer, unless the DSN says otherwise
    params = {"sslmode": "verify-full" if tls.verify else "require"}
    if tls.verify:  # with verify off, a root certificate would make libpq verify anyway
        params["sslrootcert"] = str(tls.ca) if tls.ca else "system"
    params |= {"sslcert": str(tls.cert)} if tls.cert else {}
    params |= {"sslkey": str(tls.key)} if tls.key else {}
    return params


class PostgresOptions(DatabaseOptions[PostgresTarget]):
    """Options of a ``postgres`` collector."""


class PostgresCollector(DatabaseCollector[PostgresTarget, psycopg.Connection[Any]]):
    """Polls PostgreSQL servers; see the module docstring."""

    engine = "postgres"
    metric_infos = METRICS
    Options = PostgresOptions

    def connect(self, target: PostgresTarget) -> psycopg.Connection[Any]:
        """A connection in autocommit mode (no transaction left open) with a statement timeout."""
        connection = psycopg.connect(target.conninfo(self.options.timeout), autocommit=True)
        timeout_ms = str(math.ceil(self.options.timeout * 1000))
        connection.execute("SELECT set_config('statement_timeout', %s, false)", (timeout_ms,))
        return connection

    def read(self, connection: psycopg.Connection[Any], target: PostgresTarget) -> Iterable[Row]:
        """Server settings, sessions, per-database statistics and replication state."""
        max_connections, started, in_recovery = _one(connection, SERVER)
        longest_query, longest_transaction = _one(connection, LONGEST)
        rows: list[Row] = [
            ("postgres_max_connections", {}, max_connections),
            ("postgres_start_time_seconds", {}, started),
            ("postgres_longest_query_seconds", {}, longest_query),
            ("postgres_longest_transaction_seconds", {}, longest_transaction),
            ("postgres_in_recovery", {}, float(in_recovery)),
        ]
        rows += connection_rows(connection.execute(CONNECTIONS).fetchall())
        rows += database_rows(connection.execute(DATABASES).fetchall())
        if in_recovery:
            lag_seconds, lag_bytes = _one(connection, STANDBY)
            rows += optional_rows(
                [
                    ("postgres_replication_lag_seconds", {}, lag_seconds),
                    ("postgres_replication_lag_bytes", {}, lag_bytes),
                ]
            )
        else:
            rows.append(("postgres_replicas", {}, float(_one(connection, REPLICAS)[0])))
        return rows

    def disconnect(self, connection: psycopg.Connection[Any]) -> None:
        """Close the connection (a no-op on one already closed)."""
        connection.close()


def _one(connection: psycopg.Connection[Any], query: str) -> tuple[Any, ...]:
    row = connection.execute(query).fetchone()
    assert row is not None, "an aggregate query returns one row"
    return tuple(row)


def connection_rows(counts: Sequence[tuple[str, int]]) -> list[Row]:
    """``postgres_connections{state}`` for every known state (0 when absent) and any other seen."""
    by_state = dict.fromkeys(STATES, 0) | {state: count for state, count in counts}
    return [("postgres_connections", {"state": state}, float(count)) for state, count in by_state.items()]


def database_rows(stats: Sequence[tuple[Any, ...]]) -> list[Row]:
    """Per-database counters, size and cache hit ratio from the DATABASES query's rows."""
    rows: list[Row] = []
    for datname, *values in stats:
        labels = {"datname": str(datname)}
        counters = dict(zip(DATABASE_COUNTERS, values, strict=False))
        size = values[len(DATABASE_COUNTERS)]
        rows += [(f"postgres_{column}_total", labels, float(value or 0)) for column, value in counters.items()]
        hits, reads = counters["blks_hit"] or 0, counters["blks_read"] or 0
        rows += optional_rows(
            [
                ("postgres_database_size_bytes", labels, size),
                ("postgres_cache_hit_ratio", labels, ratio(hits, hits + reads)),
            ]
        )
    return rows


__all__: Sequence[str] = ["METRICS", "PostgresCollector", "PostgresOptions", "PostgresTarget"]
