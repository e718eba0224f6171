"""MongoDB: connections, operation counters, memory, network, uptime and replication lag, from serverStatus.

Configured under ``[collectors.<name>]`` with ``type = "mongodb"``::

    [collectors.mongodb]
    [[collectors.mongodb.targets]]
    name = "docs"
    host = "mongo1.example.org"
    user = "qwq"
    password = "env:MONGO_PASSWORD"

A target is ``host``/``port`` (polled directly, not through replica-set discovery, so each member is its
own target) or a ``uri`` (``mongodb://`` or ``mongodb+srv://``, itself a secret; qwq's timeouts and
``user``/``password``/``tls`` override its options). The monitoring user needs the ``clusterMonitor``
role. On a secondary, ``replSetGetStatus`` gives the lag behind the primary. Names follow
mongodb_exporter's ``mongodb_ss_*`` in spirit (see docs/collectors/databases.md).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from pydantic import Field, field_validator
from pymongo import MongoClient
from pymongo.errors import ServerSelectionTimeoutError

from collectors.database import COMMON_METRICS, DatabaseCollector, DatabaseOptions, DatabaseTarget, Row, Tls
from qwq_core.model import MetricInfo
from qwq_core.secrets import Secret, reveal

MEBIBYTE = 1024 * 1024
OPERATIONS = ("insert", "query", "update", "delete", "getmore", "command")

METRICS: tuple[MetricInfo, ...] = (
    *COMMON_METRICS,
    MetricInfo("mongodb_connections", "gauge", help="Incoming connections by state: current, available."),
    MetricInfo("mongodb_connections_created_total", "counter", help="Incoming connections accepted."),
    MetricInfo("mongodb_opcounters_total", "counter", help="Operations by type (label type), since start."),
    MetricInfo("mongodb_memory_resident_bytes", "gauge", "bytes", "Resident memory of mongod."),
    MetricInfo("mongodb_memory_virtual_bytes", "gauge", "bytes", "Virtual memory of mongod."),
    MetricInfo("mongodb_network_received_bytes_total", "counter", "bytes", "Network bytes received."),
    MetricInfo("mongodb_network_sent_bytes_total", "counter", "bytes", "Network bytes sent."),
    MetricInfo("mongodb_network_requests_total", "counter", help="Requests received."),
    MetricInfo("mongodb_uptime_seconds", "gauge", "seconds", "Seconds since mongod started."),
    MetricInfo("mongodb_is_replica", "gauge", help="1 on a replica-set secondary, else 0."),
    MetricInfo(
        "mongodb_replication_lag_seconds", "gauge", "seconds", "On a secondary: how far its oplog trails the primary."
    ),
)


class MongodbTarget(DatabaseTarget):
    """A mongod (or mongos) server."""

    port: int = Field(27017, ge=1, le=65535, description="server port")
    auth_source: str = Field("admin", min_length=1, description="database the user is defined in")
    uri: Secret | None = Field(None, description="mongodb:// or mongodb+srv:// URI instead of host and port")

    @field_validator("tls")
    @classmethod
    def _one_pem(cls, tls: Tls | None) -> Tls | None:
        if tls is not None and tls.key is not None:
            raise ValueError("pymongo reads the key from the `cert` file: give certificate and key in one PEM")
        return tls

    def instance(self) -> str:
        """The URI's host list (credentials left out), else ``host:port``."""
        if self.uri is None:
            return super().instance()
        after_scheme = self.uri.get_secret_value().partition("://")[2]
        return after_scheme.split("/", 1)[0].split("?", 1)[0].rpartition("@")[2] or super().instance()

    def client_options(self, timeout: float) -> dict[str, Any]:
        """Keyword arguments of :class:`MongoClient`: timeouts, no retries, credentials, TLS."""
        milliseconds = int(timeout * 1000)
        options: dict[str, Any] = {
            "serverSelectionTimeoutMS": milliseconds,
            "connectTimeoutMS": milliseconds,
            "socketTimeoutMS": milliseconds,
            "retryReads": False,
            "appname": "qwq",
        }
        if self.uri is None:
            options |= {"host": self.host, "port": self.port, "directConnection": True}
        if self.user is not None:
            options |= {"username": self.user, "authSource": self.auth_source}
        if self.password is not None:
            options["password"] = reveal(self.password)
        if self.tls is not None:
            options["tls"] = True
            options |= {"tlsCAFile": str(self.tls.ca)} if self.tls.ca else {}
            options |= {"tlsCertificateKeyFile": str(self.tls.cert)} if self.tls.cert else {}
            options["tlsInsecure"] = not self.tls.verify
        return options


class MongodbOptions(DatabaseOptions[MongodbTarget]):
    """Options of a ``mongodb`` collector."""


class MongodbCollector(DatabaseCollector[MongodbTarget, MongoClient[Any]]):
    """Polls MongoDB servers; see the module docstring."""

    engine = "mongodb"
    metric_infos = METRICS
    Options = MongodbOptions
    grace = 1.0  # pymongo looks at its server-selection deadline only every 0.5 s

    def connect(self, target: MongodbTarget) -> MongoClient[Any]:
        """A client (it connects in the background and keeps its connections)."""
        options = target.client_options(self.options.timeout)
        if target.uri is not None:
            return MongoClient(target.uri.get_secret_value(), **options)
        return MongoClient(**options)

    def read(self, connection: MongoClient[Any], target: MongodbTarget) -> Iterable[Row]:
        """serverStatus, and on a secondary replSetGetStatus."""
        status = connection.admin.command("serverStatus")
        secondary = bool(status.get("repl", {}).get("secondary"))
        replset = connection.admin.command("replSetGetStatus") if secondary else None
        return status_rows(status) + replication_rows(secondary, replset)

    def disconnect(self, connection: MongoClient[Any]) -> None:
        """Close the client and its connection pool."""
        connection.close()

    def explain(self, exc: Exception) -> str:
        """The error without pymongo's topology description, which names a new client id every time."""
        text = str(exc)
        if isinstance(exc, ServerSelectionTimeoutError):
            text = re.sub(r"\s*\(configured timeouts:[^)]*\)", "", text.split(", Timeout:")[0])
        return text


def status_rows(status: Mapping[str, Any]) -> list[Row]:
    """Rows from a ``serverStatus`` reply."""
    connections = status.get("connections", {})
    opcounters = status.get("opcounters", {})
    memory = status.get("mem", {})
    network = status.get("network", {})
    rows: list[Row] = [
        ("mongodb_connections", {"state": state}, float(connections[state]))
        for state in ("current", "available")
        if state in connections
    ]
    rows += [("mongodb_opcounters_total", {"type": op}, float(opcounters[op])) for op in OPERATIONS if op in opcounters]
    fields = [
        ("mongodb_connections_created_total", connections.get("totalCreated"), 1),
        ("mongodb_memory_resident_bytes", memory.get("resident"), MEBIBYTE),
        ("mongodb_memory_virtual_bytes", memory.get("virtual"), MEBIBYTE),
        ("mongodb_network_received_bytes_total", network.get("bytesIn"), 1),
        ("mongodb_network_sent_bytes_total", network.get("bytesOut"), 1),
        ("mongodb_network_requests_total", network.get("numRequests"), 1),
        ("mongodb_uptime_seconds", status.get("uptime"), 1),
    ]
    return rows + [(name, {}, float(value) * scale) for name, value, scale in fields if value is not None]


def replication_rows(secondary: bool, replset: Mapping[str, Any] | None) -> list[Row]:
    """``mongodb_is_replica`` and, on a secondary, the lag from a ``replSetGetStatus`` reply."""
    rows: list[Row] = [("mongodb_is_replica", {}, float(secondary))]
    lag = replication_lag(replset) if replset is not None else None
    return rows + ([("mongodb_replication_lag_seconds", {}, lag)] if lag is not None else [])


def replication_lag(replset: Mapping[str, Any]) -> float | None:
    """Seconds between the primary's last applied operation and this member's, or None without a primary."""
    members = replset.get("members", [])
    me = next((m for m in members if m.get("self")), None)
    primary = next((m for m in members if m.get("stateStr") == "PRIMARY"), None)
    if me is None or primary is None:
        return None
    mine, theirs = me.get("optimeDate"), primary.get("optimeDate")
    if not isinstance(mine, datetime) or not isinstance(theirs, datetime):
        return None
    return max(0.0, (theirs - mine).total_seconds())


__all__: Sequence[str] = ["METRICS", "MongodbCollector", "MongodbOptions", "MongodbTarget"]
