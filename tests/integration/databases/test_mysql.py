"""The mysql collector against a real MariaDB 10.11 primary and replica."""

from __future__ import annotations

import threading
import time

import pymysql
import pytest

from collectors.mysql import METRICS, MysqlCollector
from qwq_core.model import Event
from tests.integration.databases.conftest import MONITOR, PASSWORD, Factory, collect, names, value, wait_for
from tests.services.databases import MariaDB

pytestmark = pytest.mark.service

REPLICATION = {"mysql_replica_running", "mysql_replication_lag_seconds"}


def target(server: MariaDB, **overrides: object) -> dict[str, object]:
    return {"name": "shop", "port": server.port, "user": MONITOR, "password": PASSWORD, **overrides}


def wait_for_a_table_lock(server: MariaDB) -> None:
    """An INSERT that has to wait for another session's READ lock on a MyISAM table."""
    server.sql("CREATE TABLE IF NOT EXISTS shop.audit (id int) ENGINE=MyISAM")
    holder = server.connect()
    try:
        with holder.cursor() as cursor:
            cursor.execute("LOCK TABLES shop.audit READ")
            writer = threading.Thread(target=server.sql, args=("INSERT INTO shop.audit VALUES (1)",))
            writer.start()
            time.sleep(0.3)
            cursor.execute("UNLOCK TABLES")
        writer.join(10)
    finally:
        holder.close()


def test_every_metric_after_real_load(mariadb: MariaDB, make_collector: Factory, events: list[Event]) -> None:
    collector = make_collector(MysqlCollector, target(mariadb))
    before = collect(collector)
    mariadb.sql(
        "CREATE DATABASE IF NOT EXISTS shop",
        "CREATE TABLE shop.orders (id int PRIMARY KEY, note varchar(100)) ENGINE=InnoDB",
        "INSERT INTO shop.orders SELECT seq, repeat('x', 100) FROM shop.seq_1_to_2000",
        "SELECT count(*), max(note) FROM shop.orders",
        "SET SESSION long_query_time = 0.1",
        "SELECT SLEEP(0.2)",
    )
    with pytest.raises(pymysql.err.OperationalError):
        pymysql.connect(host="127.0.0.1", port=mariadb.port, user=MONITOR, password="wrong", connect_timeout=5)
    wait_for_a_table_lock(mariadb)
    held = [mariadb.connect() for _ in range(2)]
    try:
        after = collect(collector)
    finally:
        for connection in held:
            connection.close()

    assert not events
    assert value(after, "db_up", engine="mysql", db="shop", instance=f"127.0.0.1:{mariadb.port}") == 1
    assert names(after) == {info.name for info in METRICS} - REPLICATION

    def delta(name: str) -> float:
        return value(after, name) - value(before, name)

    assert value(after, "mysql_threads_connected") >= 3
    assert value(after, "mysql_threads_running") >= 1
    assert value(after, "mysql_max_connections") == 151
    assert value(after, "mysql_max_used_connections") >= 3
    assert delta("mysql_questions_total") >= 6
    assert delta("mysql_slow_queries_total") >= 1
    assert delta("mysql_aborted_connects_total") >= 1
    assert delta("mysql_table_locks_waited_total") >= 1
    assert delta("mysql_connections_total") >= 4
    assert delta("mysql_innodb_buffer_pool_read_requests_total") > 1000
    assert 0 < value(after, "mysql_innodb_buffer_pool_hit_ratio") <= 1
    assert 0 <= value(after, "mysql_uptime_seconds") < 600


def test_replica_reports_lag_and_thread_state(
    mariadb: MariaDB, mariadb_replica: MariaDB, make_collector: Factory
) -> None:
    collector = make_collector(MysqlCollector, target(mariadb, name="primary"), target(mariadb_replica, name="replica"))
    frame = collect(collector)
    assert not names(frame.filter(db="primary")) & REPLICATION
    assert value(frame, "mysql_replica_running", db="replica") == 1
    assert 0 <= value(frame, "mysql_replication_lag_seconds", db="replica") < 60

    mariadb_replica.sql("STOP SLAVE SQL_THREAD")
    try:
        stopped = collect(collector)
    finally:
        mariadb_replica.sql("START SLAVE SQL_THREAD")
    assert value(stopped, "mysql_replica_running", db="replica") == 0
    assert "mysql_replication_lag_seconds" not in names(stopped.filter(db="replica"))  # NULL: unknown, not 0
    wait_for(lambda: value(collect(collector), "mysql_replica_running", db="replica") == 1, "the replica to resume")


def test_a_user_without_replica_monitor_is_up_without_replication_metrics(
    mariadb_replica: MariaDB, make_collector: Factory
) -> None:
    frame = collect(make_collector(MysqlCollector, target(mariadb_replica, user="qwq_plain")))
    assert value(frame, "db_up") == 1
    assert value(frame, "mysql_threads_connected") >= 1
    assert not names(frame) & REPLICATION


def test_unix_socket_target(mariadb: MariaDB, make_collector: Factory) -> None:
    frame = collect(make_collector(MysqlCollector, {"name": "local", "socket": str(mariadb.socket), "user": "root"}))
    assert value(frame, "db_up", instance=str(mariadb.socket)) == 1


def test_wrong_password_is_down_with_the_reason(mariadb: MariaDB, make_collector: Factory, events: list[Event]) -> None:
    frame = collect(make_collector(MysqlCollector, target(mariadb, password="not-" + PASSWORD)))
    assert value(frame, "db_up") == 0
    (event,) = events
    assert "Access denied" in event.attrs["reason"] and PASSWORD not in repr(event)
