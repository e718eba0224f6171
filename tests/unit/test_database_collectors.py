"""Database collectors without servers: options, connection settings, reply mapping, the polling machinery, docs."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st
from psycopg.conninfo import conninfo_to_dict
from pydantic import BaseModel, ValidationError

from collectors import mongodb, mysql, postgres, redis
from collectors.database import (
    DatabaseCollector,
    DatabaseOptions,
    DatabaseTarget,
    Row,
    Tls,
    describe,
    redact,
)
from qwq_core.collector import CollectorContext, build_collectors, registry
from qwq_core.errors import ConfigError
from qwq_core.model import Event, MetricInfo, is_valid_metric_name
from qwq_core.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DOCS = (ROOT / "docs" / "collectors" / "databases.md").read_text()
ENGINES = {"postgres": postgres, "mysql": mysql, "redis": redis, "mongodb": mongodb}
TARGETS = [postgres.PostgresTarget, mysql.MysqlTarget, redis.RedisTarget, mongodb.MongodbTarget]
NOW = datetime(2026, 1, 1, tzinfo=UTC)


# --- registration, metadata and docs ---------------------------------------------------------------


@pytest.mark.parametrize("name", ENGINES)
def test_each_engine_is_registered_under_its_entry_point(name: str) -> None:
    collector = registry().get(name)
    assert collector.__module__ == f"collectors.{name}"
    assert collector.default_interval.total_seconds() == 15


@pytest.mark.parametrize("module", ENGINES.values(), ids=list(ENGINES))
def test_metric_names_follow_prometheus_conventions(module: Any) -> None:
    infos: tuple[MetricInfo, ...] = module.METRICS
    assert len({info.name for info in infos}) == len(infos)
    prefix = module.__name__.removeprefix("collectors.")
    for info in infos:
        assert is_valid_metric_name(info.name) and info.help
        assert info.name.startswith((f"{prefix}_", "db_"))
        assert (info.type == "counter") == info.name.endswith("_total"), info.name
        assert info.unit == MetricInfo.infer(info.name).unit, info.name  # base unit in the name


def _fields(model: type[BaseModel]) -> list[str]:
    return list(model.model_fields)


@pytest.mark.parametrize("option", sorted({f for m in [*TARGETS, Tls, DatabaseOptions] for f in _fields(m)}), ids=str)
def test_every_option_is_documented(option: str) -> None:
    assert f"| `{option}` |" in DOCS


@pytest.mark.parametrize("name", sorted({i.name for m in ENGINES.values() for i in m.METRICS}))
def test_every_metric_is_documented(name: str) -> None:
    assert f"| `{name}` |" in DOCS


# --- options ---------------------------------------------------------------------------------------


def test_target_names_must_be_unique_and_options_are_checked() -> None:
    with pytest.raises(ValidationError, match="target names must be unique: a given more than once"):
        postgres.PostgresOptions.model_validate({"targets": [{"name": "a"}, {"name": "a", "port": 1}]})
    with pytest.raises(ValidationError, match="at least 1 item"):
        redis.RedisOptions.model_validate({"targets": []})
    with pytest.raises(ValidationError, match="Extra inputs"):
        mysql.MysqlOptions.model_validate({"targets": [{"name": "a", "dsn": "x"}]})
    with pytest.raises(ValidationError, match="greater than 0"):
        mysql.MysqlOptions.model_validate({"targets": [{"name": "a"}], "timeout": 0})
    with pytest.raises(ValidationError, match="certificate and key in one PEM"):
        mongodb.MongodbOptions.model_validate({"targets": [{"name": "a", "tls": {"cert": "c", "key": "k"}}]})


def test_an_unset_password_variable_is_a_config_error_naming_the_key() -> None:
    settings = Settings.model_validate(
        {"collectors": {"pg": {"type": "postgres", "targets": [{"name": "a", "password": "env:QWQTEST_UNSET_PW"}]}}}
    )
    with pytest.raises(ConfigError) as caught:
        build_collectors(settings, lambda _: None)
    (issue,) = [i for i in caught.value.issues if i.key.startswith("collectors.pg")]
    assert issue.key == "collectors.pg.targets.0.password"
    assert issue.reason.startswith("environment variable QWQTEST_UNSET_PW is not set")


@pytest.mark.parametrize(("target", "default_port"), list(zip(TARGETS, (5432, 3306, 6379, 27017), strict=True)))
def test_default_ports_and_instance_labels(target: type[DatabaseTarget], default_port: int) -> None:
    assert target.model_validate({"name": "a"}).instance() == f"127.0.0.1:{default_port}"
    assert target.model_validate({"name": "a", "host": "::1", "port": 7}).instance() == "[::1]:7"


# --- connection settings ---------------------------------------------------------------------------


def test_postgres_conninfo_from_fields_with_tls() -> None:
    target = postgres.PostgresTarget.model_validate(
        {"name": "a", "host": "db", "user": "qwq", "password": "p w'", "tls": {"ca": "/ca.pem"}}
    )
    parts = conninfo_to_dict(target.conninfo(0.5))
    assert parts == {
        "host": "db",
        "port": "5432",
        "dbname": "postgres",
        "user": "qwq",
        "password": "p w'",
        "sslmode": "verify-full",
        "sslrootcert": "/ca.pem",
        "application_name": "qwq",
        "connect_timeout": "2",  # libpq's minimum; the poll's timeout still bounds the whole poll
    }
    unverified = conninfo_to_dict(target.model_copy(update={"tls": Tls(verify=False)}).conninfo(5))
    assert unverified["sslmode"] == "require" and "sslrootcert" not in unverified
    system = conninfo_to_dict(target.model_copy(update={"tls": Tls()}).conninfo(5))
    assert system["sslmode"] == "verify-full" and system["sslrootcert"] == "system"


def test_postgres_dsn_parts_are_overridden_only_by_fields_set() -> None:
    dsn = "postgresql://u:dsn%40pw@db.example:6543/app?sslmode=require"
    plain = postgres.PostgresTarget.model_validate({"name": "a", "dsn": dsn})
    parts = conninfo_to_dict(plain.conninfo(3))
    assert (parts["host"], parts["port"], parts["dbname"], parts["user"]) == ("db.example", "6543", "app", "u")
    assert parts["password"] == "dsn@pw" and parts["sslmode"] == "require" and "application_name" not in parts
    assert plain.instance() == "db.example:6543"
    assert "dsn@pw" in plain.secrets() and "dsn%40pw" not in plain.instance()

    overridden = postgres.PostgresTarget.model_validate({"name": "a", "dsn": dsn, "database": "other", "port": 1})
    parts = conninfo_to_dict(overridden.conninfo(3))
    assert (parts["host"], parts["port"], parts["dbname"]) == ("db.example", "1", "other")

    keywords = postgres.PostgresTarget.model_validate({"name": "a", "dsn": "host=h password=kw-secret"})
    assert "kw-secret" in keywords.secrets() and keywords.instance() == "h:5432"


def test_redis_url_and_tls_options() -> None:
    target = redis.RedisTarget.model_validate({"name": "a", "url": "rediss://:p%40ss@cache.example:6380/2"})
    assert target.instance() == "cache.example:6380"
    assert "p@ss" in target.secrets()
    assert redis.RedisTarget.model_validate({"name": "a", "url": "unix:///run/redis.sock"}).instance() == (
        "/run/redis.sock"
    )
    options = redis.RedisTarget.model_validate({"name": "a", "tls": {"verify": False}}).client_options(2)
    assert options["ssl"] and options["ssl_cert_reqs"] == "none" and not options["ssl_check_hostname"]
    assert options["socket_timeout"] == options["socket_connect_timeout"] == 2


def test_mongodb_client_options_and_uri_instance() -> None:
    target = mongodb.MongodbTarget.model_validate(
        {"name": "a", "user": "mon", "password": "pw", "tls": {"ca": "/ca.pem", "cert": "/me.pem"}}
    )
    options = target.client_options(1.5)
    assert options["directConnection"] and options["serverSelectionTimeoutMS"] == 1500
    assert options["authSource"] == "admin" and options["tlsCAFile"] == "/ca.pem"
    assert options["tlsCertificateKeyFile"] == "/me.pem" and options["tlsInsecure"] is False
    uri = mongodb.MongodbTarget.model_validate({"name": "a", "uri": "mongodb://u:p%40w@m1:1,m2:2/db?tls=true"})
    assert uri.instance() == "m1:1,m2:2" and "p@w" in uri.secrets()
    assert "host" not in uri.client_options(1)


# --- reply mapping ---------------------------------------------------------------------------------


def rows_dict(rows: Iterable[Row]) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(name, tuple(sorted(labels.items()))): value for name, labels, value in rows}


def test_mysql_status_and_replica_mapping() -> None:
    status = {"Threads_connected": "3", "Innodb_buffer_pool_read_requests": "1000", "Innodb_buffer_pool_reads": "50"}
    rows = rows_dict(mysql.status_rows(status, {"max_connections": "151"}))
    assert rows[("mysql_threads_connected", ())] == 3 and rows[("mysql_max_connections", ())] == 151
    assert rows[("mysql_innodb_buffer_pool_hit_ratio", ())] == 0.95
    assert ("mysql_innodb_buffer_pool_hit_ratio", ()) not in rows_dict(mysql.status_rows({}, {}))

    new = {"Replica_IO_Running": "Yes", "Replica_SQL_Running": "Yes", "Seconds_Behind_Source": 4}
    old = {"Slave_IO_Running": "Yes", "Slave_SQL_Running": "No", "Seconds_Behind_Master": None}
    assert rows_dict(mysql.replica_rows(new)) == {
        ("mysql_replica_running", ()): 1,
        ("mysql_replication_lag_seconds", ()): 4,
    }
    assert rows_dict(mysql.replica_rows(old)) == {("mysql_replica_running", ()): 0}
    assert mysql.replica_rows(None) == []


@given(st.integers(0, 10**12), st.integers(0, 10**12))
def test_the_buffer_pool_hit_ratio_is_a_ratio(requests: int, misses: int) -> None:
    misses = min(misses, requests)
    status = {"Innodb_buffer_pool_read_requests": str(requests), "Innodb_buffer_pool_reads": str(misses)}
    ratio = rows_dict(mysql.status_rows(status, {})).get(("mysql_innodb_buffer_pool_hit_ratio", ()))
    assert (ratio is None) == (requests == 0)
    assert ratio is None or 0 <= ratio <= 1


def test_redis_info_mapping_on_a_primary_and_a_replica() -> None:
    primary = {
        "role": "master",
        "connected_clients": 5,
        "rdb_last_save_time": 1000,
        "server_time_usec": 1_060_500_000,
        "master_repl_offset": 500,
        "slave0": {"ip": "10.0.0.2", "port": 6380, "state": "online", "offset": 480, "lag": 1},
        "db0": {"keys": 7, "expires": 2, "avg_ttl": 0},
    }
    rows = rows_dict(redis.info_rows(primary, now=0))
    assert rows[("redis_connected_clients", ())] == 5
    assert rows[("redis_last_save_age_seconds", ())] == pytest.approx(60.5)
    assert rows[("redis_db_keys", (("database", "0"),))] == 7
    assert rows[("redis_db_keys_expiring", (("database", "0"),))] == 2
    assert rows[("redis_replica_lag_bytes", (("replica", "10.0.0.2:6380"),))] == 20
    assert rows[("redis_replica_lag_seconds", (("replica", "10.0.0.2:6380"),))] == 1
    assert rows[("redis_is_replica", ())] == 0

    replica = {"role": "slave", "master_link_status": "down", "master_last_io_seconds_ago": -1}
    assert rows_dict(redis.info_rows(replica, now=0)) == {
        ("redis_is_replica", ()): 1,
        ("redis_master_link_connected", ()): 0,
    }


def test_mongodb_server_status_and_replication_mapping() -> None:
    status = {
        "uptime": 3600.0,
        "connections": {"current": 4, "available": 800, "totalCreated": 40},
        "opcounters": {"insert": 10, "query": 20, "update": 0, "delete": 1, "getmore": 0, "command": 99},
        "mem": {"resident": 100, "virtual": 1500},
        "network": {"bytesIn": 1000, "bytesOut": 2000, "numRequests": 50},
    }
    rows = rows_dict(mongodb.status_rows(status))
    assert rows[("mongodb_connections", (("state", "current"),))] == 4
    assert rows[("mongodb_opcounters_total", (("type", "command"),))] == 99
    assert rows[("mongodb_memory_resident_bytes", ())] == 100 * 1024 * 1024
    assert rows[("mongodb_network_sent_bytes_total", ())] == 2000
    assert len(rows) == 2 + 6 + 7

    members = [
        {"stateStr": "PRIMARY", "optimeDate": datetime(2026, 1, 1, 0, 0, 10)},
        {"stateStr": "SECONDARY", "self": True, "optimeDate": datetime(2026, 1, 1, 0, 0, 7)},
    ]
    assert mongodb.replication_rows(True, {"members": members}) == [
        ("mongodb_is_replica", {}, 1.0),
        ("mongodb_replication_lag_seconds", {}, 3.0),
    ]
    assert mongodb.replication_lag({"members": members[1:]}) is None  # no primary: unknown, not 0


# --- redaction -------------------------------------------------------------------------------------

secret_text = st.text(min_size=1).filter(lambda s: "*" not in s)


@given(secret=secret_text, before=st.text(), after=st.text(), encoded=st.booleans())
def test_redact_removes_every_secret_plain_or_url_encoded(secret: str, before: str, after: str, encoded: bool) -> None:
    text = before + (quote(secret, safe="") if encoded else secret) + after
    assert secret not in redact(text, [secret])
    assert quote(secret, safe="") not in redact(text, [secret])


def test_describe_is_one_bounded_line_without_secrets() -> None:
    error = ConnectionError("failed for password=hunter2\n\tsecond line " + "x" * 500)
    reason = describe(error, ["hunter2"])
    assert reason.startswith("ConnectionError: failed for password=*** second line")
    assert "\n" not in reason and len(reason) == 300
    assert describe(TimeoutError(), []) == "TimeoutError"


# --- the polling machinery, with an engine whose server is a Python object --------------------------


class FakeServer:
    """What a FakeCollector target talks to: answers, fails or blocks on demand."""

    def __init__(self) -> None:
        self.connects = 0
        self.closed = 0
        self.failure: Exception | None = None
        self.gate = threading.Event()
        self.gate.set()
        self.delay = 0.0


class FakeTarget(DatabaseTarget):
    port: int = 1


class FakeCollector(DatabaseCollector[FakeTarget, dict[str, Any]]):
    engine = "fake"
    metric_infos = (MetricInfo("fake_answers_total", "counter", help="answers"),)
    Options = DatabaseOptions[FakeTarget]
    servers: ClassVar[dict[str, FakeServer]] = {}

    def connect(self, target: FakeTarget) -> dict[str, Any]:
        server = self.servers[target.name]
        server.connects += 1
        if server.failure:
            raise server.failure
        return {"server": server, "alive": True}

    def read(self, connection: dict[str, Any], target: FakeTarget) -> Iterable[Row]:
        server: FakeServer = connection["server"]
        time.sleep(server.delay)
        server.gate.wait()
        if not connection["alive"] or server.failure:
            raise ConnectionError("server closed the connection")
        return [("fake_answers_total", {"kind": "x"}, 1.0)]

    def disconnect(self, connection: dict[str, Any]) -> None:
        connection["alive"] = False
        connection["server"].closed += 1


@pytest.fixture
def fake() -> Any:
    FakeCollector.servers = {name: FakeServer() for name in ("a", "b")}
    events: list[Event] = []
    options = FakeCollector.Options.model_validate({"targets": [{"name": "a"}, {"name": "b"}], "timeout": 0.5})
    collector = FakeCollector(options, CollectorContext("fake", "h", events.append))
    yield collector, FakeCollector.servers, events
    for server in FakeCollector.servers.values():
        server.gate.set()
    collector.close()


def ups(collector: FakeCollector) -> dict[str, float]:
    frame = collector.collect(NOW)
    return dict(frame.filter(name="db_up").select("db", "value").rows())


def test_targets_are_polled_concurrently_over_kept_connections(fake: Any) -> None:
    collector, servers, events = fake
    servers["a"].delay = servers["b"].delay = 0.4
    started = time.monotonic()
    frame = collector.collect(NOW)
    assert time.monotonic() - started < 0.7  # not 0.8: both at once
    assert set(frame.filter(name="fake_answers_total")["db"]) == {"a", "b"}
    assert set(frame.filter(name="db_up")["engine"]) == {"fake"}
    collector.collect(NOW)
    assert servers["a"].connects == servers["b"].connects == 1 and not events


def test_a_failure_is_down_with_one_event_and_recovery_is_another(fake: Any) -> None:
    collector, servers, events = fake
    servers["a"].failure = ConnectionRefusedError("connection refused")
    assert ups(collector) == ups(collector) == {"a": 0, "b": 1}
    servers["a"].failure = None
    assert ups(collector) == {"a": 1, "b": 1}
    assert [(e.kind, e.attrs["db"]) for e in events] == [("target.down", "a"), ("target.up", "a")]
    assert events[0].attrs["reason"] == "ConnectionRefusedError: connection refused"
    assert events[0].attrs["engine"] == "fake" and events[0].attrs["instance"] == "127.0.0.1:1"


def test_a_dead_kept_connection_is_replaced_within_the_poll(fake: Any) -> None:
    collector, servers, events = fake
    ups(collector)
    collector._slots[0].connection["alive"] = False  # the server restarted since the last poll
    assert ups(collector) == {"a": 1, "b": 1}
    assert servers["a"].connects == 2 and servers["a"].closed == 1 and not events


def test_a_hung_target_times_out_stays_busy_until_it_returns_then_recovers(fake: Any) -> None:
    collector, servers, events = fake
    servers["a"].gate.clear()
    started = time.monotonic()
    assert ups(collector) == {"a": 0, "b": 1}
    assert 0.95 < time.monotonic() - started < 1.5  # the timeout plus the grace for the driver's own error
    assert ups(collector) == {"a": 0, "b": 1}  # the first poll still hangs: not started again
    assert [e.attrs["reason"] for e in events] == [
        "timed out after 0.5s",
        "still busy: an earlier poll has not returned after 0.5s",
    ]
    servers["a"].gate.set()
    collector._slots[0].running.result(timeout=5)  # the hung poll returns
    assert ups(collector) == {"a": 1, "b": 1}
    assert servers["a"].connects == 2  # the timed-out connection was replaced
    assert events[-1].kind == "target.up"


def test_close_closes_kept_connections(fake: Any) -> None:
    collector, servers, _ = fake
    ups(collector)
    collector.close()
    assert servers["a"].closed == servers["b"].closed == 1


def test_every_sample_is_labelled_with_db_and_instance(fake: Any) -> None:
    collector, servers, _ = fake
    frame = collector.collect(NOW)
    assert frame["db"].null_count() == frame["instance"].null_count() == 0
    assert set(frame["name"]) == {"fake_answers_total", "db_up", "db_scrape_duration_seconds"}
    assert re.fullmatch(r"127\.0\.0\.1:1", frame["instance"][0])
