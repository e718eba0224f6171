"""The redis collector against a real Redis 7 primary and replica."""

from __future__ import annotations

import time
from urllib.parse import quote

import pytest

from collectors.redis import METRICS, RedisCollector
from qwq_core.model import Event
from tests.integration.databases.conftest import MONITOR, PASSWORD, Factory, collect, names, value, wait_for
from tests.services.databases import Redis

pytestmark = pytest.mark.service

REPLICA_SIDE = {"redis_master_link_connected", "redis_master_last_io_seconds"}
PRIMARY_SIDE = {"redis_replica_lag_seconds", "redis_replica_lag_bytes"}


def target(server: Redis, **overrides: object) -> dict[str, object]:
    return {"name": "cache", "port": server.port, "password": PASSWORD, **overrides}


def test_every_metric_after_real_load(
    redis_server: Redis, redis_replica: Redis, make_collector: Factory, events: list[Event]
) -> None:
    collector = make_collector(RedisCollector, target(redis_server))
    before = collect(collector)
    with redis_server.client() as client:
        client.mset({f"key:{i}": "v" for i in range(100)})
        client.mget([f"key:{i}" for i in range(150)])  # 100 hits, 50 misses
        client.set("short-lived", "v", px=1)
        time.sleep(0.01)
        assert client.get("short-lived") is None  # expired on access
        wait_for(lambda: not client.info("persistence")["rdb_bgsave_in_progress"], "the replica's sync to end")
        client.save()
        client.config_set("maxmemory-policy", "allkeys-lru")
        client.config_set("maxmemory", client.info("memory")["used_memory"] + 1024 * 1024)
        try:
            for i in range(2000):  # 4 MB of values into 1 MB of headroom
                client.set(f"big:{i}", "x" * 2048)
            during = collect(collector)
        finally:
            client.config_set("maxmemory", 0)
        others = [redis_server.client() for _ in range(3)]
        for other in others:
            other.ping()
        after = collect(collector)
        keys = client.dbsize()
        for other in others:
            other.close()

    assert not events
    assert value(after, "db_up", engine="redis", db="cache", instance=f"127.0.0.1:{redis_server.port}") == 1
    assert names(after) == {info.name for info in METRICS} - REPLICA_SIDE

    def delta(name: str) -> float:
        return value(after, name) - value(before, name)

    assert value(after, "redis_connected_clients") >= 4
    assert value(after, "redis_blocked_clients") == 0
    assert value(after, "redis_memory_used_bytes") > 100_000
    assert value(during, "redis_memory_max_bytes") > 0 and value(after, "redis_memory_max_bytes") == 0
    assert delta("redis_commands_processed_total") >= 20
    assert delta("redis_keyspace_hits_total") >= 100
    assert delta("redis_keyspace_misses_total") >= 50
    assert delta("redis_expired_keys_total") >= 1
    assert delta("redis_evicted_keys_total") >= 1
    assert value(after, "redis_instantaneous_ops_per_sec") >= 0
    assert value(after, "redis_last_save_age_seconds") < 5  # SAVE just ran
    assert value(after, "redis_rdb_changes_since_last_save") >= 1  # the big keys came after it
    assert value(after, "redis_db_keys", database="0") == keys > 0
    assert value(after, "redis_db_keys_expiring", database="0") == 0
    assert value(after, "redis_is_replica") == 0
    assert value(after, "redis_connected_replicas") == 1
    assert 0 <= value(after, "redis_uptime_seconds") < 600


def test_replication_lag_on_both_sides(redis_server: Redis, redis_replica: Redis, make_collector: Factory) -> None:
    collector = make_collector(
        RedisCollector, target(redis_server, name="primary"), target(redis_replica, name="replica")
    )
    with redis_server.client() as client:
        client.set("replicated", "v")
        wait_for(lambda: client.info("replication")["slave0"]["offset"] == client.info()["master_repl_offset"], "ack")
    frame = collect(collector)
    replica_address = f"127.0.0.1:{redis_replica.port}"
    assert value(frame, "redis_replica_lag_bytes", db="primary", replica=replica_address) >= 0
    assert 0 <= value(frame, "redis_replica_lag_seconds", db="primary", replica=replica_address) < 5
    assert value(frame, "redis_is_replica", db="replica") == 1
    assert value(frame, "redis_master_link_connected", db="replica") == 1
    assert 0 <= value(frame, "redis_master_last_io_seconds", db="replica") < 30
    assert not names(frame.filter(db="replica")) & PRIMARY_SIDE


def test_acl_user_allowed_only_info(redis_server: Redis, make_collector: Factory) -> None:
    frame = collect(make_collector(RedisCollector, target(redis_server, user=MONITOR)))
    assert value(frame, "db_up") == 1
    assert value(frame, "redis_connected_clients") >= 1


def test_socket_and_url_targets(redis_server: Redis, make_collector: Factory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QWQ_TEST_REDIS_URL", f"redis://:{quote(PASSWORD, safe='')}@localhost:{redis_server.port}/0")
    collector = make_collector(
        RedisCollector,
        {"name": "socket", "socket": str(redis_server.socket), "password": PASSWORD},
        {"name": "url", "url": {"env": "QWQ_TEST_REDIS_URL"}},
    )
    frame = collect(collector)
    assert value(frame, "db_up", db="socket", instance=str(redis_server.socket)) == 1
    assert value(frame, "db_up", db="url", instance=f"localhost:{redis_server.port}") == 1


def test_wrong_password_is_down_with_the_reason(
    redis_server: Redis, make_collector: Factory, events: list[Event]
) -> None:
    frame = collect(make_collector(RedisCollector, target(redis_server, password="not-" + PASSWORD)))
    assert value(frame, "db_up") == 0
    (event,) = events
    assert "invalid username-password" in event.attrs["reason"] and PASSWORD not in repr(event)
