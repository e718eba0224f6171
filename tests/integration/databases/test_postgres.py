"""The postgres collector against a real PostgreSQL 15 primary and streaming standby, as a pg_monitor role."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest

from collectors.postgres import METRICS, STATES, PostgresCollector
from qwq_core.model import Event
from tests.integration.databases.conftest import MONITOR, PASSWORD, Factory, collect, names, value, wait_for
from tests.services.databases import Postgres

pytestmark = pytest.mark.service


def target(server: Postgres, **overrides: object) -> dict[str, object]:
    return {"name": "main", "port": server.port, "user": MONITOR, "password": PASSWORD, **overrides}


def cause_deadlock(server: Postgres) -> None:
    """Two sessions locking two rows in opposite order: PostgreSQL aborts one of them."""
    server.sql("CREATE TABLE IF NOT EXISTS locks (id int PRIMARY KEY)", dbname="shop")
    server.sql("INSERT INTO locks VALUES (1), (2) ON CONFLICT DO NOTHING", dbname="shop")
    barrier = threading.Barrier(2)
    errors: list[Exception] = []

    def lock(order: tuple[int, int]) -> None:
        with server.connect("shop") as connection:
            try:
                with connection.transaction():
                    connection.execute("SELECT 1 FROM locks WHERE id = %s FOR UPDATE", (order[0],))
                    barrier.wait()
                    connection.execute("SELECT 1 FROM locks WHERE id = %s FOR UPDATE", (order[1],))
            except psycopg.errors.DeadlockDetected as exc:
                errors.append(exc)

    threads = [threading.Thread(target=lock, args=(order,)) for order in ((1, 2), (2, 1))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len(errors) == 1


SLEEPING = "SELECT pid FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(60)' AND state = 'active'"


def sleep_until_cancelled(server: Postgres) -> None:
    with pytest.raises(psycopg.errors.QueryCanceled):
        server.sql("SELECT pg_sleep(60)")


@pytest.fixture(scope="module")
def shop(postgres: Postgres) -> Postgres:
    """A database with a table of 2000 rows, some updated and deleted, one rolled-back transaction."""
    postgres.sql("CREATE DATABASE shop")
    postgres.sql("CREATE TABLE orders (id int PRIMARY KEY, note text)", dbname="shop")
    postgres.sql("INSERT INTO orders SELECT g, repeat('x', 100) FROM generate_series(1, 2000) g", dbname="shop")
    postgres.sql("UPDATE orders SET note = 'y' WHERE id <= 100", dbname="shop")
    postgres.sql("DELETE FROM orders WHERE id > 1900", dbname="shop")
    with postgres.connect("shop") as connection:
        connection.execute("BEGIN")
        connection.execute("INSERT INTO orders VALUES (0, 'rolled back')")
        connection.execute("ROLLBACK")
    return postgres


def test_every_metric_after_real_load(shop: Postgres, make_collector: Factory, events: list[Event]) -> None:
    collector = make_collector(PostgresCollector, target(shop))
    before = collect(collector)
    # Load: sorts that spill to temp files, a deadlock, idle sessions, an open transaction, a running query.
    shop.sql(
        "SET work_mem = '64kB'; SELECT count(*) FROM (SELECT * FROM orders ORDER BY note DESC, id) s", dbname="shop"
    )
    cause_deadlock(shop)
    with shop.connect("shop") as idle, shop.connect("shop") as in_transaction:
        idle.execute("SELECT 1")
        in_transaction.execute("BEGIN")
        in_transaction.execute("SELECT count(*) FROM orders")
        sleeper = threading.Thread(target=sleep_until_cancelled, args=(shop,))
        sleeper.start()
        wait_for(lambda: shop.sql(SLEEPING), "the sleeping query to start")
        time.sleep(0.6)
        after = collect(collector)
        shop.sql(f"SELECT pg_cancel_backend(pid) FROM ({SLEEPING}) s")
        sleeper.join(10)
        in_transaction.execute("ROLLBACK")

    assert not events
    assert value(after, "db_up", engine="postgres", db="main") == 1
    assert names(after) == {info.name for info in METRICS} - {
        "postgres_replication_lag_seconds",
        "postgres_replication_lag_bytes",
    }
    labels = {"db": "main", "instance": f"127.0.0.1:{shop.port}"}
    assert value(after, "postgres_max_connections", **labels) == 40
    assert time.time() - 600 < value(after, "postgres_start_time_seconds") < time.time()
    assert value(after, "postgres_connections", state="idle") >= 1  # sessions of another role: pg_monitor sees them
    assert value(after, "postgres_connections", state="idle in transaction") >= 1
    assert value(after, "postgres_connections", state="active") >= 2  # the sleeper and qwq itself
    assert set(after.filter(name="postgres_connections")["state"]) >= set(STATES)
    assert 0.5 <= value(after, "postgres_longest_query_seconds") < 5
    assert 0.5 <= value(after, "postgres_longest_transaction_seconds") < 5
    assert value(after, "postgres_in_recovery") == 0
    assert value(after, "postgres_replicas") >= 0

    def delta(name: str) -> float:
        return value(after, name, datname="shop") - value(before, name, datname="shop")

    assert value(after, "postgres_tup_inserted_total", datname="shop") >= 2000
    assert value(after, "postgres_tup_updated_total", datname="shop") >= 100
    assert value(after, "postgres_tup_deleted_total", datname="shop") >= 100
    assert value(after, "postgres_xact_rollback_total", datname="shop") >= 1
    assert delta("postgres_xact_commit_total") >= 1
    assert delta("postgres_tup_returned_total") >= 1900  # the sort read the whole table
    assert delta("postgres_deadlocks_total") == 1
    assert delta("postgres_temp_files_total") >= 1
    assert delta("postgres_temp_bytes_total") > 64 * 1024
    assert value(after, "postgres_database_size_bytes", datname="shop") > 1_000_000
    assert 0 < value(after, "postgres_cache_hit_ratio", datname="shop") <= 1
    assert "template0" not in set(after["datname"].drop_nulls())
    assert 0 < value(after, "db_scrape_duration_seconds") < 3


def test_the_connection_is_reused_between_polls(postgres: Postgres, make_collector: Factory) -> None:
    collector = make_collector(PostgresCollector, target(postgres))
    query = "SELECT pid FROM pg_stat_activity WHERE usename = %s"
    collect(collector)
    first = postgres.sql(query, (MONITOR,))
    collect(collector)
    assert postgres.sql(query, (MONITOR,)) == first and len(first) == 1


def test_standby_reports_replication_lag(
    postgres: Postgres, postgres_standby: Postgres, make_collector: Factory
) -> None:
    standby = make_collector(PostgresCollector, target(postgres_standby, name="standby"))
    primary = make_collector(PostgresCollector, target(postgres, name="primary"))
    postgres.sql("CREATE TABLE IF NOT EXISTS ticks (n int)")
    assert value(collect(primary), "postgres_replicas") == 1
    synced = collect(standby)
    assert value(synced, "postgres_in_recovery") == 1
    assert value(synced, "postgres_replication_lag_bytes") >= 0
    assert "postgres_replicas" not in names(synced)

    postgres_standby.sql("SELECT pg_wal_replay_pause()")
    try:
        postgres.sql("INSERT INTO ticks SELECT generate_series(1, 1000)")
        time.sleep(0.3)  # the standby receives the WAL but does not replay it
        lagging = collect(standby)
    finally:
        postgres_standby.sql("SELECT pg_wal_replay_resume()")
    assert value(lagging, "postgres_replication_lag_bytes") > 0
    assert value(lagging, "postgres_replication_lag_seconds") >= 0.3
    wait_for(lambda: value(collect(standby), "postgres_replication_lag_bytes") == 0, "the standby to catch up")


def test_a_role_without_pg_monitor_still_works(postgres: Postgres, make_collector: Factory) -> None:
    postgres.sql(f"CREATE ROLE qwq_nobody LOGIN PASSWORD '{PASSWORD}'")
    collector = make_collector(PostgresCollector, target(postgres, user="qwq_nobody"))
    with postgres.connect():  # a superuser session: its state is hidden from this role
        frame = collect(collector)
    assert value(frame, "db_up") == 1
    assert value(frame, "postgres_connections", state="unknown") >= 1
    assert value(frame, "postgres_database_size_bytes", datname="postgres") > 0


def test_dsn_from_an_environment_variable(
    postgres: Postgres, make_collector: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    dsn = f"postgresql://{MONITOR}:{quote(PASSWORD, safe='')}@localhost:{postgres.port}/postgres?sslmode=disable"
    monkeypatch.setenv("QWQ_TEST_DSN", dsn)
    collector = make_collector(PostgresCollector, {"name": "via-dsn", "dsn": "env:QWQ_TEST_DSN"})
    assert value(collect(collector), "db_up", db="via-dsn", instance=f"localhost:{postgres.port}") == 1


def test_tls_verified_against_the_ca(
    postgres: Postgres, tls_files: dict[str, Path], make_collector: Factory, events: list[Event], tmp_path: Path
) -> None:
    verified = make_collector(PostgresCollector, target(postgres, tls={"ca": str(tls_files["ca"])}))
    assert value(collect(verified), "db_up") == 1
    rows = postgres.sql(
        "SELECT ssl FROM pg_stat_ssl JOIN pg_stat_activity USING (pid) WHERE usename = %s AND application_name = 'qwq'",
        (MONITOR,),
    )
    assert rows == [(True,)]

    other_ca = tmp_path / "other-ca.pem"
    other_ca.write_bytes(tls_files["cert"].read_bytes())  # a certificate that did not sign the server's
    untrusted = make_collector(PostgresCollector, target(postgres, name="untrusted", tls={"ca": str(other_ca)}))
    assert value(collect(untrusted), "db_up", db="untrusted") == 0
    assert "certificate verify failed" in events[-1].attrs["reason"]


def test_wrong_password_is_down_with_the_reason_but_never_the_password(
    postgres: Postgres, make_collector: Factory, events: list[Event]
) -> None:
    wrong = PASSWORD[::-1]
    frame = collect(make_collector(PostgresCollector, target(postgres, password=wrong)))
    assert value(frame, "db_up") == 0
    (event,) = events
    assert event.kind == "target.down" and "password authentication failed" in event.attrs["reason"]
    assert wrong not in repr(event) and quote(wrong, safe="") not in repr(event)
