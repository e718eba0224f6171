"""Issue #3's "Must show", end to end through the real ``qwq collect --once --format json``.

A podman engine with a locally built container, an HTTPS site with a certificate from a test CA, a DNS
zone served by dnsmasq, PostgreSQL, MariaDB and Redis are started once for the module and configured in
one ``qwq.toml`` (the host collector off, to keep the runs short). With all of them running every
``*_up`` series is 1 and the site's certificate expiry is reported; then, one at a time, each is stopped:
its ``up`` turns 0 with a ``target.down`` event and every other target stays up. Each case starts the
thing it stopped again, so the next one begins from all up.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import qwq_env
from tests.services import databases, podman
from tests.services.databases import MARIADBD, PG_BIN, REDIS_SERVER, MariaDB, Postgres, Redis
from tests.services.dnsmasq import Dnsmasq, Zone
from tests.services.podman import BUSYBOX, PodmanEngine, shared_engine
from tests.services.web import Issued, TestCA, WebServer

QWQ = str(Path(sys.executable).with_name("qwq"))
PASSWORD = "Mon1tor-pw"
MONITOR = "qwq_monitor"
ZONE = Zone("qwq.test", hosts={"www": ["192.0.2.10"]})


def _why_not() -> str | None:
    """Why the services cannot all run here, or None."""
    if reason := podman.missing():
        return reason
    if not Dnsmasq.available():
        return "dnsmasq is not installed (Debian: dnsmasq-base)"
    return databases.missing(PG_BIN / "initdb", "mariadb-install-db", MARIADBD, REDIS_SERVER)


pytestmark = [
    pytest.mark.service,
    pytest.mark.slow,
    pytest.mark.skipif(_why_not() is not None, reason=_why_not() or ""),
]


@dataclass
class Thing:
    """One monitored thing: the ``up`` series that shows it (``metric`` with ``label=value``) and its switch."""

    metric: str
    label: str
    value: str
    stop: Callable[[], None]
    start: Callable[[], None]

    def sample(self, document: dict[str, Any]) -> float:
        """The value of this thing's one ``up`` sample in a ``collect --format json`` document."""
        found = [
            s["value"] for s in document["samples"] if s["name"] == self.metric and s.get(self.label) == self.value
        ]
        assert len(found) == 1, f"{self.metric}{{{self.label}={self.value!r}}}: {found}"
        return float(found[0])

    def is_target(self, row: dict[str, Any]) -> bool:
        """Whether a row of the document's ``targets`` is this thing."""
        return row["metric"] == self.metric and f"{self.label}={self.value}" in row["target"].split(", ")

    def downs(self, document: dict[str, Any]) -> list[dict[str, Any]]:
        """The attributes of the ``target.down`` events about this thing."""
        events = [json.loads(e["attrs"]) for e in document["events"] if e["kind"] == "target.down"]
        return [attrs for attrs in events if attrs.get("target") == self.value]


class Site:
    """An HTTPS server in a thread that can be stopped and started again on the same port."""

    def __init__(self, certificate: Issued) -> None:
        self.certificate = certificate
        self.server = WebServer(certificate).start()
        self.port = self.server.port

    def stop(self) -> None:
        self.server.stop()

    def start(self) -> None:
        self.server = WebServer(self.certificate, port=self.port).start()


# ---- the services --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def engine() -> Iterator[PodmanEngine]:
    with shared_engine() as shared:
        yield shared


@pytest.fixture(scope="module")
def container(engine: PodmanEngine) -> Iterator[tuple[str, str]]:
    """A container of an image built here, running: ``(name, id)``."""
    image = engine.build("localhost/qwq-test/must-show:1", f'FROM {BUSYBOX}\nCMD ["sleep", "3600"]\n')
    name = f"qwq-must-show-{uuid.uuid4().hex[:8]}"
    container_id = engine.run((), image=image, name=name)
    try:
        yield name, container_id
    finally:
        engine.remove([container_id])


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> TestCA:
    return TestCA.create(tmp_path_factory.mktemp("ca"))


@pytest.fixture(scope="module")
def site(ca: TestCA) -> Iterator[Site]:
    running = Site(ca.issue("site", ["localhost", "127.0.0.1"], days=30))
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def dnsmasq(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dnsmasq]:
    with Dnsmasq(ZONE, tmp_path_factory.mktemp("dnsmasq")) as server:
        yield server


@pytest.fixture(scope="module")
def postgres() -> Iterator[Postgres]:
    server = Postgres()
    try:
        server.start()
        server.sql(f"CREATE ROLE {MONITOR} LOGIN PASSWORD '{PASSWORD}' IN ROLE pg_monitor")
        yield server
    finally:
        server.cleanup()


@pytest.fixture(scope="module")
def mariadb() -> Iterator[MariaDB]:
    server = MariaDB()
    try:
        server.start()
        server.sql(f"CREATE USER {MONITOR}@'%' IDENTIFIED BY '{PASSWORD}'", f"GRANT PROCESS ON *.* TO {MONITOR}@'%'")
        yield server
    finally:
        server.cleanup()


@pytest.fixture(scope="module")
def redis_server() -> Iterator[Redis]:
    server = Redis(password=PASSWORD)
    try:
        server.start()
        yield server
    finally:
        server.cleanup()


@pytest.fixture(scope="module")
def things(
    engine: PodmanEngine,
    container: tuple[str, str],
    site: Site,
    dnsmasq: Dnsmasq,
    postgres: Postgres,
    mariadb: MariaDB,
    redis_server: Redis,
) -> dict[str, Thing]:
    """Everything monitored, by the name the parametrized test uses."""
    name, container_id = container
    return {
        "container": Thing(
            "container_up",
            "container",
            name,
            lambda: engine.api.stop(container_id, timeout=0),
            lambda: engine.api.start(container_id),
        ),
        "site": Thing("site_up", "site", "site", site.stop, site.start),
        "dns": Thing("dns_up", "check", "zone", dnsmasq.stop, dnsmasq.start),
        "postgres": Thing("db_up", "db", "pg", postgres.stop, postgres.start),
        "mariadb": Thing("db_up", "db", "maria", mariadb.stop, mariadb.start),
        "redis": Thing("db_up", "db", "cache", redis_server.stop, redis_server.start),
    }


# ---- qwq -----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def home(
    tmp_path_factory: pytest.TempPathFactory,
    engine: PodmanEngine,
    container: tuple[str, str],
    ca: TestCA,
    site: Site,
    dnsmasq: Dnsmasq,
    postgres: Postgres,
    mariadb: MariaDB,
    redis_server: Redis,
) -> Path:
    """A QWQ_HOME whose qwq.toml configures a collector of each type for the services above."""
    home = tmp_path_factory.mktemp("qwq-home")
    s = json.dumps  # TOML basic strings read JSON strings as they are
    db = f"host = '127.0.0.1', user = '{MONITOR}', password = '{PASSWORD}'"
    (home / "qwq.toml").write_text(
        f"""
[collectors.host]
enabled = false

[collectors.containers]
url = {s(engine.url)}
include = [{s(container[0])}]

[collectors.sites]
type = "http"
[[collectors.sites.checks]]
name = "site"
url = "https://127.0.0.1:{site.port}/"
ca_file = {s(str(ca.path))}
timeout = 5

[collectors.dns]
[[collectors.dns.checks]]
name = "zone"
query = "www.qwq.test"
expect = ["192.0.2.10"]
nameservers = [{s(dnsmasq.nameserver)}]
timeout = 3

[collectors.postgres]
timeout = 3
targets = [{{ name = "pg", port = {postgres.port}, {db} }}]

[collectors.mysql]
timeout = 3
targets = [{{ name = "maria", port = {mariadb.port}, {db} }}]

[collectors.redis]
timeout = 3
targets = [{{ name = "cache", host = "127.0.0.1", port = {redis_server.port}, password = '{PASSWORD}' }}]
"""
    )
    return home


def collect_once(home: Path) -> dict[str, Any]:
    """``qwq collect --once --format json`` in a process of its own; the parsed document."""
    done = subprocess.run(
        [QWQ, "collect", "--once", "--format", "json"],
        env=qwq_env(home),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    document: dict[str, Any] = json.loads(done.stdout)
    failed = [c for c in document["collectors"] if c["state"] != "ok"]
    assert not failed, failed
    return document


def assert_all_up_but(document: dict[str, Any], down: Thing | None = None) -> None:
    """Every target in the document is up, except ``down``'s."""
    targets = document["targets"]
    assert targets, document
    others = [t for t in targets if down is None or not down.is_target(t)]
    assert all(t["up"] for t in others), [t for t in others if not t["up"]]


# ---- the tests -----------------------------------------------------------------------------------------
def test_everything_configured_is_up(home: Path, things: dict[str, Thing]) -> None:
    document = collect_once(home)

    assert {name: thing.sample(document) for name, thing in things.items()} == dict.fromkeys(things, 1.0)
    assert_all_up_but(document)
    assert {c["collector"] for c in document["collectors"]} == {
        "containers",
        "sites",
        "dns",
        "postgres",
        "mysql",
        "redis",
    }
    expiry = [s for s in document["samples"] if s["name"] == "site_tls_expiry_seconds" and s["site"] == "site"]
    assert {s["cert"] for s in expiry} == {"leaf", "chain"}
    assert all(29 * 86400 < s["value"] <= 30 * 86400 for s in expiry), expiry  # the certificate's 30 days
    assert not [e for e in document["events"] if e["kind"] == "target.down"], document["events"]


@pytest.mark.parametrize("name", ["container", "site", "dns", "postgres", "mariadb", "redis"])
def test_stopping_one_turns_only_its_up_to_0(home: Path, things: dict[str, Thing], name: str) -> None:
    stopped = things[name]
    stopped.stop()
    try:
        document = collect_once(home)
    finally:
        stopped.start()

    assert stopped.sample(document) == 0.0
    assert [t["up"] for t in document["targets"] if stopped.is_target(t)] == [False]
    assert_all_up_but(document, stopped)
    for other in things.values():
        if other is not stopped:
            assert other.sample(document) == 1.0, other
    downs = [e for e in document["events"] if e["kind"] == "target.down"]
    # A stopped container is reported even by a fresh `collect --once`: it was stopped by a signal (exit
    # code 137), not a job that finished with 0 (see docs/collectors/containers.md).
    assert [attrs["target"] for attrs in map(json.loads, (e["attrs"] for e in downs))] == [stopped.value]
    (reason,) = [attrs["reason"] for attrs in stopped.downs(document)]
    (row,) = [t for t in document["targets"] if stopped.is_target(t)]
    assert reason and row["reason"] == reason
