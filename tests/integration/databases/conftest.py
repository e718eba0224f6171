"""Session-wide PostgreSQL (with a streaming standby), MariaDB (with a replica) and Redis (with a replica).

Servers are started once per session on free loopback ports and removed at the end. Tests that stop a
server start it again (same port, same data) in a ``finally``. Every server has a monitoring login whose
password, :data:`PASSWORD`, has characters that need quoting in URLs, so redaction of encoded forms is
exercised; tests assert it never appears in frames, events, logs or errors.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from collectors.database import DatabaseCollector
from qwq_core.collector import CollectorContext
from qwq_core.model import Event
from tests.services.databases import PG_BIN, MariaDB, Postgres, Redis, missing

PASSWORD = "S3cr3t-q7Wx2@:/%"
"""The monitoring users' password, in every server (fixed: pytest may import this module twice)."""
MONITOR = "qwq_monitor"
HOST = "testhost"

Factory = Callable[..., DatabaseCollector[Any, Any]]


def skip_unless_installed(*programs: str | Path) -> None:
    reason = missing(*programs)
    if reason:
        pytest.skip(reason)


@pytest.fixture(scope="session")
def tls_files() -> Iterator[dict[str, Path]]:
    """A private CA and a server certificate for 127.0.0.1/localhost signed by it, as PEM files."""
    from tempfile import TemporaryDirectory

    with TemporaryDirectory(prefix="qwq-tls-") as directory:
        yield write_tls_files(Path(directory))


def write_tls_files(directory: Path) -> dict[str, Path]:
    """``ca`` (certificate), ``cert`` and ``key`` (the server's) under ``directory``."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "qwq test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    files = {"ca": directory / "ca.pem", "cert": directory / "server.pem", "key": directory / "server.key"}
    files["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    files["cert"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    private = serialization.PrivateFormat.TraditionalOpenSSL
    files["key"].write_bytes(key.private_bytes(serialization.Encoding.PEM, private, serialization.NoEncryption()))
    return files


@pytest.fixture(scope="session")
def postgres(tls_files: dict[str, Path]) -> Iterator[Postgres]:
    """A PostgreSQL 15 primary with TLS on, fast deadlock detection and a ``pg_monitor`` login."""
    skip_unless_installed(PG_BIN / "initdb")
    server = Postgres()
    try:
        owner = server.dir.stat()
        for name in ("cert", "key"):
            copy = server.dir / tls_files[name].name
            copy.write_bytes(tls_files[name].read_bytes())
            os.chown(copy, owner.st_uid, owner.st_gid)
            copy.chmod(0o600)
        server.settings |= {
            "ssl": "on",
            "ssl_cert_file": server.dir / "server.pem",
            "ssl_key_file": server.dir / "server.key",
            "deadlock_timeout": "100ms",
        }
        server.start()
        server.sql(f"CREATE ROLE {MONITOR} LOGIN PASSWORD '{PASSWORD}' IN ROLE pg_monitor")
        yield server
    finally:
        server.cleanup()


@pytest.fixture(scope="session")
def postgres_standby(postgres: Postgres) -> Iterator[Postgres]:
    """A streaming standby of :func:`postgres` (it has the same roles)."""
    server = Postgres(primary=postgres)
    try:
        server.start()
        yield server
    finally:
        server.cleanup()


@pytest.fixture(scope="session")
def mariadb() -> Iterator[MariaDB]:
    """A MariaDB 10.11 primary (binary log on) with a monitoring login, a bare login and a replication one."""
    skip_unless_installed("mariadb-install-db", "/usr/sbin/mariadbd")
    server = MariaDB(server_id=1, binlog=True)
    try:
        server.start()
        server.sql(
            f"CREATE USER {MONITOR}@'%' IDENTIFIED BY '{PASSWORD}'",
            f"GRANT PROCESS, SLAVE MONITOR ON *.* TO {MONITOR}@'%'",
            f"CREATE USER qwq_plain@'%' IDENTIFIED BY '{PASSWORD}'",
            f"CREATE USER qwq_repl@'%' IDENTIFIED BY '{PASSWORD}'",
            "GRANT REPLICATION SLAVE ON *.* TO qwq_repl@'%'",
        )
        yield server
    finally:
        server.cleanup()


@pytest.fixture(scope="session")
def mariadb_replica(mariadb: MariaDB) -> Iterator[MariaDB]:
    """A replica of :func:`mariadb`, caught up (so it has the same users)."""
    server = MariaDB(server_id=2)
    try:
        server.start()
        server.sql(
            f"CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT={mariadb.port}, MASTER_USER='qwq_repl', "
            f"MASTER_PASSWORD='{PASSWORD}', MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1",
            "START SLAVE",
        )
        wait_for(lambda: server.sql(f"SELECT 1 FROM mysql.user WHERE user = '{MONITOR}'"), "replication to start")
        yield server
    finally:
        server.cleanup()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[Redis]:
    """A Redis 7 server with :data:`PASSWORD` for the default user and an ACL user allowed only INFO."""
    skip_unless_installed("redis-server")
    server = Redis(password=PASSWORD, users=[f"{MONITOR} on >{PASSWORD} +info"])
    try:
        server.start()
        yield server
    finally:
        server.cleanup()


@pytest.fixture(scope="session")
def redis_replica(redis_server: Redis) -> Iterator[Redis]:
    """A replica of :func:`redis_server`, with its link up."""
    server = Redis(password=PASSWORD, replica_of=redis_server)
    try:
        server.start()
        with server.client() as client:
            wait_for(lambda: client.info("replication")["master_link_status"] == "up", "the replica link")
        yield server
    finally:
        server.cleanup()


def wait_for(condition: Callable[[], Any], what: str, timeout: float = 20.0) -> None:
    """Poll until ``condition()`` is truthy."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.fixture
def events() -> list[Event]:
    """The events emitted by collectors made with :func:`make_collector`."""
    return []


@pytest.fixture
def make_collector(events: list[Event]) -> Iterator[Factory]:
    """Build a collector of a type from its targets (dicts) and options; closed after the test."""
    made: list[DatabaseCollector[Any, Any]] = []

    def make(kind: type[DatabaseCollector[Any, Any]], *targets: Mapping[str, Any], **options: Any) -> Any:
        validated = kind.Options.model_validate({"targets": list(targets), "timeout": 3.0, **options})  # type: ignore[attr-defined]
        collector = kind(validated, CollectorContext(kind.engine, HOST, events.append))
        made.append(collector)
        return collector

    yield make
    for collector in made:
        collector.close()


def collect(collector: DatabaseCollector[Any, Any]) -> pl.DataFrame:
    """One poll, stamped now."""
    return collector.collect(dt.datetime.now(dt.UTC))


def value(frame: pl.DataFrame, name: str, **labels: str) -> float:
    """The one sample named ``name`` with these labels; fails if there is none or several."""
    matches = frame.filter(pl.col("name") == name, *(pl.col(k) == v for k, v in labels.items()))
    assert matches.height == 1, f"{name}{labels}: {matches.height} samples in\n{frame}"
    return float(matches["value"][0])


def names(frame: pl.DataFrame) -> set[str]:
    """The metric names in a frame."""
    return set(frame["name"])
