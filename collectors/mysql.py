"""MySQL and MariaDB: threads, questions, slow queries, InnoDB buffer pool, aborted connects, locks, replication.

Configured under ``[collectors.<name>]`` with ``type = "mysql"``::

    [collectors.mysql]
    [[collectors.mysql.targets]]
    name = "shop"
    host = "db2.example.org"
    user = "qwq"
    password = { env = "MYSQL_PASSWORD" }

Reads ``SHOW GLOBAL STATUS`` and ``SHOW GLOBAL VARIABLES`` (no privilege needed) and ``SHOW REPLICA
STATUS`` (MariaDB ≥ 10.5 and MySQL ≥ 8.0.22; ``SHOW SLAVE STATUS`` before), which needs ``REPLICA
MONITOR`` on MariaDB or ``REPLICATION CLIENT`` on MySQL: without it the replication metrics are left out
and the target stays up. Names are mysqld_exporter's ``mysql_global_status_*`` without the
``global_status_`` part (see docs/collectors/databases.md).
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pymysql
from pydantic import Field

from collectors.database import (
    COMMON_METRICS,
    DatabaseCollector,
    DatabaseOptions,
    DatabaseTarget,
    Row,
    Tls,
    optional_rows,
    ratio,
)
from qwq_core.model import MetricInfo, MetricType
from qwq_core.secrets import reveal

log = logging.getLogger(__name__)

STATUS: dict[str, tuple[str, MetricType, str]] = {  # SHOW GLOBAL STATUS variable → (metric, type, help)
    "Threads_connected": ("mysql_threads_connected", "gauge", "Open client connections."),
    "Threads_running": ("mysql_threads_running", "gauge", "Threads executing a statement now."),
    "Max_used_connections": ("mysql_max_used_connections", "gauge", "Most connections open at once since start."),
    "Connections": ("mysql_connections_total", "counter", "Connection attempts, successful or not."),
    "Aborted_connects": ("mysql_aborted_connects_total", "counter", "Failed connection attempts."),
    "Questions": ("mysql_questions_total", "counter", "Statements sent by clients."),
    "Slow_queries": ("mysql_slow_queries_total", "counter", "Queries that took longer than long_query_time."),
    "Table_locks_waited": ("mysql_table_locks_waited_total", "counter", "Table locks that had to wait."),
    "Innodb_buffer_pool_read_requests": (
        "mysql_innodb_buffer_pool_read_requests_total",
        "counter",
        "Logical reads from the InnoDB buffer pool.",
    ),
    "Innodb_buffer_pool_reads": (
        "mysql_innodb_buffer_pool_reads_total",
        "counter",
        "Logical reads InnoDB could not serve from the buffer pool (read from disk).",
    ),
    "Uptime": ("mysql_uptime_seconds", "gauge", "Seconds since the server started."),
}
VARIABLES = ("max_connections",)
REPLICA_STATEMENTS = ("SHOW REPLICA STATUS", "SHOW SLAVE STATUS")
SYNTAX_ERROR = 1064
ACCESS_DENIED = (1227, 1142, 1044, 1045)

METRICS: tuple[MetricInfo, ...] = (
    *COMMON_METRICS,
    *(MetricInfo(metric, kind, MetricInfo.infer(metric).unit, text) for metric, kind, text in STATUS.values()),
    MetricInfo("mysql_max_connections", "gauge", help="The max_connections setting."),
    MetricInfo(
        "mysql_innodb_buffer_pool_hit_ratio", "gauge", "ratio", "Share of buffer-pool reads served from memory."
    ),
    MetricInfo("mysql_replica_running", "gauge", help="On a replica: 1 if both IO and SQL threads run, else 0."),
    MetricInfo("mysql_replication_lag_seconds", "gauge", "seconds", "On a replica: Seconds_Behind_Master (Source)."),
)


class MysqlTarget(DatabaseTarget):
    """A MySQL or MariaDB server, over TCP or a Unix socket."""

    port: int = Field(3306, ge=1, le=65535, description="server port")
    socket: Path | None = Field(None, description="Unix socket path; used instead of host and port")

    def instance(self) -> str:
        """``host:port``, or the socket path."""
        return str(self.socket) if self.socket else super().instance()


class MysqlOptions(DatabaseOptions[MysqlTarget]):
    """Options of a ``mysql`` collector."""


class MysqlCollector(DatabaseCollector[MysqlTarget, pymysql.connections.Connection]):
    """Polls MySQL and MariaDB servers; see the module docstring."""

    engine = "mysql"
    metric_infos = METRICS
    Options = MysqlOptions

    def connect(self, target: MysqlTarget) -> pymysql.connections.Connection:
        """A connection in autocommit mode with connect, read and write timeouts."""
        timeout = self.options.timeout
        return pymysql.connect(
            host=target.host,
            port=target.port,
            unix_socket=str(target.socket) if target.socket else None,
            user=target.user or "",
            password=reveal(target.password) or "",
            ssl=_ssl_context(target.tls) if target.tls else None,
            connect_timeout=timeout,
            read_timeout=timeout,
            write_timeout=timeout,
            autocommit=True,
            program_name="qwq",
        )

    def read(self, connection: pymysql.connections.Connection, target: MysqlTarget) -> Iterable[Row]:
        """Global status and variables, and the replica status when this is a replica."""
        with connection.cursor() as cursor:
            cursor.execute("SHOW GLOBAL STATUS")
            status = dict(cursor.fetchall())
            cursor.execute("SHOW GLOBAL VARIABLES WHERE Variable_name IN %s", (VARIABLES,))
            variables = dict(cursor.fetchall())
        return status_rows(status, variables) + replica_rows(_replica_status(connection, target))

    def disconnect(self, connection: pymysql.connections.Connection) -> None:
        """Close the connection, whatever state it is in."""
        if connection.open:  # close() of a closed connection raises
            connection.close()


def _ssl_context(tls: Tls) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(tls.ca) if tls.ca else None)
    if not tls.verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if tls.cert:
        context.load_cert_chain(str(tls.cert), str(tls.key) if tls.key else None)
    return context


def _replica_status(connection: pymysql.connections.Connection, target: MysqlTarget) -> Mapping[str, Any] | None:
    """The first replication channel's status, or None on a primary or without the privilege to see it."""
    with connection.cursor(pymysql.cursors.DictCursor) as cursor:
        for statement in REPLICA_STATEMENTS:
            try:
                cursor.execute(statement)
            except pymysql.err.ProgrammingError as exc:
                if exc.args[0] == SYNTAX_ERROR:
                    continue  # before MariaDB 10.5 / MySQL 8.0.22: try the old spelling
                raise
            except pymysql.err.OperationalError as exc:
                if exc.args[0] in ACCESS_DENIED:
                    log.debug("mysql %s: no replication metrics: %s", target.name, exc.args[-1])
                    return None
                raise
            return cursor.fetchone()
    return None


def status_rows(status: Mapping[str, str], variables: Mapping[str, str]) -> list[Row]:
    """Rows from ``SHOW GLOBAL STATUS`` and ``SHOW GLOBAL VARIABLES`` (as name → text value)."""
    rows: list[Row] = [
        (metric, {}, float(status[variable])) for variable, (metric, _, _) in STATUS.items() if variable in status
    ]
    rows += [(f"mysql_{name}", {}, float(variables[name])) for name in VARIABLES if name in variables]
    requests = float(status.get("Innodb_buffer_pool_read_requests", 0))
    misses = float(status.get("Innodb_buffer_pool_reads", 0))
    hit_ratio = ratio(requests - misses, requests)
    return rows + optional_rows([("mysql_innodb_buffer_pool_hit_ratio", {}, hit_ratio)])


def replica_rows(replica: Mapping[str, Any] | None) -> list[Row]:
    """Replication state from one row of ``SHOW REPLICA STATUS`` (old or new column names); none if absent."""
    if not replica:
        return []
    io = _first(replica, "Replica_IO_Running", "Slave_IO_Running")
    sql = _first(replica, "Replica_SQL_Running", "Slave_SQL_Running")
    lag = _first(replica, "Seconds_Behind_Source", "Seconds_Behind_Master")
    return optional_rows(
        [
            ("mysql_replica_running", {}, float(io == "Yes" and sql == "Yes")),
            ("mysql_replication_lag_seconds", {}, None if lag is None else float(lag)),
        ]
    )


def _first(row: Mapping[str, Any], *columns: str) -> Any:
    return next((row[column] for column in columns if row.get(column) is not None), None)


__all__: Sequence[str] = ["METRICS", "MysqlCollector", "MysqlOptions", "MysqlTarget"]
