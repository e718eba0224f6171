"""Redis: clients, memory, operations, keyspace hits and misses, evictions, expiries, replication, last save.

Configured under ``[collectors.<name>]`` with ``type = "redis"``::

    [collectors.redis]
    [[collectors.redis.targets]]
    name = "cache"
    host = "127.0.0.1"
    password = "env:REDIS_PASSWORD"

A target is ``host``/``port`` or a Unix ``socket``, or a ``url`` (``redis://``, ``rediss://``,
``unix://``, itself a secret); with a URL, its parts win and ``user``/``password``/``tls`` fill in what it
lacks. Everything comes from one ``INFO`` (an ACL user needs only ``+info``). Names follow redis_exporter
(see docs/collectors/databases.md). Redis measures replication lag on the primary, per replica, from the
replica's acknowledged offset and the age of its last acknowledgement; a replica itself reports whether
its link to the primary is up and how long ago the primary last talked to it.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import redis
from pydantic import Field
from redis.backoff import NoBackoff
from redis.connection import parse_url
from redis.retry import Retry

from collectors.database import (
    COMMON_METRICS,
    DatabaseCollector,
    DatabaseOptions,
    DatabaseTarget,
    Row,
    host_port,
    optional_rows,
)
from qwq_core.model import MetricInfo, MetricType
from qwq_core.secrets import Secret, reveal

INFO: dict[str, tuple[str, MetricType, str]] = {  # INFO field → (metric, type, help)
    "connected_clients": ("redis_connected_clients", "gauge", "Client connections, replicas excluded."),
    "blocked_clients": ("redis_blocked_clients", "gauge", "Clients waiting in a blocking call."),
    "used_memory": ("redis_memory_used_bytes", "gauge", "Memory allocated by Redis."),
    "maxmemory": ("redis_memory_max_bytes", "gauge", "The maxmemory limit; 0 means none."),
    "instantaneous_ops_per_sec": ("redis_instantaneous_ops_per_sec", "gauge", "Commands per second (sampled)."),
    "total_commands_processed": ("redis_commands_processed_total", "counter", "Commands processed."),
    "total_connections_received": ("redis_connections_received_total", "counter", "Connections accepted."),
    "rejected_connections": ("redis_rejected_connections_total", "counter", "Connections refused (maxclients)."),
    "keyspace_hits": ("redis_keyspace_hits_total", "counter", "Key lookups that found the key."),
    "keyspace_misses": ("redis_keyspace_misses_total", "counter", "Key lookups that did not find the key."),
    "evicted_keys": ("redis_evicted_keys_total", "counter", "Keys evicted because of the maxmemory limit."),
    "expired_keys": ("redis_expired_keys_total", "counter", "Keys deleted because their TTL ran out."),
    "connected_slaves": ("redis_connected_replicas", "gauge", "Replicas connected to this server."),
    "rdb_changes_since_last_save": ("redis_rdb_changes_since_last_save", "gauge", "Writes since the last save."),
    "uptime_in_seconds": ("redis_uptime_seconds", "gauge", "Seconds since the server started."),
}  # fmt: skip

METRICS: tuple[MetricInfo, ...] = (
    *COMMON_METRICS,
    *(MetricInfo(metric, kind, MetricInfo.infer(metric).unit, text) for metric, kind, text in INFO.values()),
    MetricInfo("redis_last_save_age_seconds", "gauge", "seconds", "Seconds since the last successful RDB save."),
    MetricInfo("redis_db_keys", "gauge", help="Keys in each logical database (label database)."),
    MetricInfo("redis_db_keys_expiring", "gauge", help="Keys with a TTL in each logical database."),
    MetricInfo("redis_is_replica", "gauge", help="1 if this server replicates another, 0 on a primary."),
    MetricInfo(
        "redis_master_link_connected", "gauge", help="On a replica: 1 if the link to its primary is up, else 0."
    ),
    MetricInfo(
        "redis_master_last_io_seconds", "gauge", "seconds", "On a replica: seconds since the primary last talked."
    ),
    MetricInfo(
        "redis_replica_lag_seconds", "gauge", "seconds", "On a primary: age of each replica's last ack (label replica)."
    ),
    MetricInfo(
        "redis_replica_lag_bytes", "gauge", "bytes", "On a primary: replication stream not yet acked by each replica."
    ),
)


class RedisTarget(DatabaseTarget):
    """A Redis server, over TCP, TLS or a Unix socket."""

    port: int = Field(6379, ge=1, le=65535, description="server port")
    socket: Path | None = Field(None, description="Unix socket path; used instead of host and port")
    url: Secret | None = Field(None, description="redis://, rediss:// or unix:// URL; its parts win")

    def instance(self) -> str:
        """``host:port`` or the socket path, from the URL when one is given."""
        if self.url is not None:
            try:
                parts = parse_url(self.url.get_secret_value())
            except ValueError:  # an invalid URL: the poll will say so (redacted)
                return super().instance()
            return (
                str(parts["path"])
                if "path" in parts
                else host_port(parts.get("host", "localhost"), parts.get("port", 6379))
            )
        return str(self.socket) if self.socket else super().instance()

    def client_options(self, timeout: float) -> dict[str, Any]:
        """Keyword arguments of :class:`redis.Redis`: timeouts, no retries (a failed poll is data), TLS."""
        options: dict[str, Any] = {
            "socket_timeout": timeout,
            "socket_connect_timeout": timeout,
            "retry": Retry(NoBackoff(), 0),
        }
        if self.user is not None:
            options["username"] = self.user
        if self.password is not None:
            options["password"] = reveal(self.password)
        if self.tls is not None:
            options |= {
                "ssl": True,
                "ssl_ca_certs": str(self.tls.ca) if self.tls.ca else None,
                "ssl_certfile": str(self.tls.cert) if self.tls.cert else None,
                "ssl_keyfile": str(self.tls.key) if self.tls.key else None,
                "ssl_cert_reqs": "required" if self.tls.verify else "none",
                "ssl_check_hostname": self.tls.verify,
            }
        return options


class RedisOptions(DatabaseOptions[RedisTarget]):
    """Options of a ``redis`` collector."""


class RedisCollector(DatabaseCollector[RedisTarget, redis.Redis]):
    """Polls Redis servers; see the module docstring."""

    engine = "redis"
    metric_infos = METRICS
    Options = RedisOptions

    def connect(self, target: RedisTarget) -> redis.Redis:
        """A client (it connects on first use and keeps the connection in its pool)."""
        options = target.client_options(self.options.timeout)
        if target.url is not None:
            return redis.Redis.from_url(target.url.get_secret_value(), **options)
        if target.socket is not None:
            return redis.Redis(unix_socket_path=str(target.socket), **options)
        return redis.Redis(host=target.host, port=target.port, **options)

    def read(self, connection: redis.Redis, target: RedisTarget) -> Iterable[Row]:
        """Everything from one ``INFO``."""
        return info_rows(connection.info(), time.time())

    def disconnect(self, connection: redis.Redis) -> None:
        """Close the client's connections."""
        connection.close()


def info_rows(info: Mapping[str, Any], now: float) -> list[Row]:
    """Rows from a parsed ``INFO`` reply; ``now`` (Unix time) is used only if the server gives no time."""
    rows: list[Row] = [(metric, {}, float(info[field])) for field, (metric, _, _) in INFO.items() if field in info]
    server_time = info["server_time_usec"] / 1e6 if "server_time_usec" in info else now
    if "rdb_last_save_time" in info:
        rows.append(("redis_last_save_age_seconds", {}, max(0.0, server_time - info["rdb_last_save_time"])))
    for name, keyspace in info.items():
        if name.startswith("db") and name[2:].isdigit() and isinstance(keyspace, Mapping):
            labels = {"database": name[2:]}
            rows += [
                ("redis_db_keys", labels, float(keyspace.get("keys", 0))),
                ("redis_db_keys_expiring", labels, float(keyspace.get("expires", 0))),
            ]
    return rows + replication_rows(info)


def replication_rows(info: Mapping[str, Any]) -> list[Row]:
    """Replica side: link state and last I/O; primary side: each replica's lag in seconds and bytes."""
    if info.get("role") == "slave":
        return optional_rows(
            [
                ("redis_is_replica", {}, 1.0),
                ("redis_master_link_connected", {}, float(info.get("master_link_status") == "up")),
                ("redis_master_last_io_seconds", {}, _nonnegative(info.get("master_last_io_seconds_ago"))),
            ]
        )
    rows: list[Row] = [("redis_is_replica", {}, 0.0)]
    offset = info.get("master_repl_offset")
    for name, replica in info.items():
        if name.startswith("slave") and name[5:].isdigit() and isinstance(replica, Mapping):
            labels = {"replica": host_port(str(replica.get("ip")), replica.get("port", ""))}
            lag_bytes = offset - replica["offset"] if offset is not None and "offset" in replica else None
            rows += optional_rows(
                [
                    ("redis_replica_lag_seconds", labels, _nonnegative(replica.get("lag"))),
                    ("redis_replica_lag_bytes", labels, None if lag_bytes is None else max(0, lag_bytes)),
                ]
            )
    return rows


def _nonnegative(value: Any) -> float | None:
    """A number Redis reports, or None where it reports -1 (not known yet) or nothing."""
    return float(value) if isinstance(value, int | float) and value >= 0 else None


__all__: Sequence[str] = ["METRICS", "RedisCollector", "RedisOptions", "RedisTarget"]
