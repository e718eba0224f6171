"""Failure is data, for every engine: stopped, restarted, hung and misconfigured targets; secrets never leak."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import polars as pl
import pytest
from typer.testing import CliRunner

from collectors.database import DatabaseCollector
from collectors.mongodb import MongodbCollector
from collectors.mysql import MysqlCollector
from collectors.postgres import PostgresCollector
from collectors.redis import RedisCollector
from qwq_core.cli.main import app
from qwq_core.errors import ConfigError
from qwq_core.model import Event
from tests.integration.databases.conftest import MONITOR, PASSWORD, Factory, collect
from tests.services.databases import Server
from tests.support import free_port

pytestmark = pytest.mark.service

QWQ = str(Path(sys.executable).with_name("qwq"))


@dataclass(frozen=True)
class Engine:
    """How to point one engine's collector at the session's servers."""

    collector: type[DatabaseCollector[Any, Any]]
    primary: str  # fixture names
    replica: str
    user: str | None

    def target(self, name: str, port: int, **overrides: Any) -> dict[str, Any]:
        user = {"user": self.user} if self.user else {}
        return {"name": name, "port": port, "password": PASSWORD, **user, **overrides}


ENGINES = {
    "postgres": Engine(PostgresCollector, "postgres", "postgres_standby", MONITOR),
    "mysql": Engine(MysqlCollector, "mariadb", "mariadb_replica", MONITOR),
    "redis": Engine(RedisCollector, "redis_server", "redis_replica", None),  # ACL users are not replicated
}
ALL = {**ENGINES, "mongodb": Engine(MongodbCollector, "", "", MONITOR)}


def up(frame: pl.DataFrame) -> dict[str, float]:
    """db_up by target name."""
    rows = frame.filter(name="db_up").select("db", "value").rows()
    return {db: value for db, value in rows}


@pytest.fixture
def hung_port() -> Iterator[int]:
    """A loopback port that accepts TCP connections (the kernel's backlog) and never says a word."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield listener.getsockname()[1]


@pytest.mark.slow
@pytest.mark.parametrize("kind", ENGINES)
def test_a_stopped_server_is_down_the_others_unaffected_then_it_recovers(
    kind: str, request: pytest.FixtureRequest, make_collector: Factory, events: list[Event]
) -> None:
    engine = ENGINES[kind]
    primary: Server = request.getfixturevalue(engine.primary)
    replica: Server = request.getfixturevalue(engine.replica)
    collector = make_collector(
        engine.collector, engine.target("primary", primary.port), engine.target("replica", replica.port)
    )
    assert up(collect(collector)) == {"primary": 1, "replica": 1}

    primary.stop()
    try:
        started = time.monotonic()
        down = collect(collector)
        elapsed = time.monotonic() - started
        still_down = collect(collector)
    finally:
        primary.start()
    recovered = collect(collector)

    assert up(down) == up(still_down) == {"primary": 0, "replica": 1}
    assert elapsed < 3, "a refused connection is reported at once, not after the timeout"
    assert down.filter(db="replica").height > 5  # the replica's own metrics, as usual
    assert down.filter(db="primary")["name"].to_list() == ["db_up", "db_scrape_duration_seconds"]
    assert up(recovered) == {"primary": 1, "replica": 1}
    assert [event.kind for event in events] == ["target.down", "target.up"]  # one each, not one per poll
    went_down, came_back = events
    assert went_down.source == kind and went_down.severity == "error"
    assert went_down.attrs["engine"] == kind and went_down.attrs["db"] == "primary"
    assert went_down.attrs["instance"] == f"127.0.0.1:{primary.port}"
    assert "refused" in went_down.attrs["reason"].lower()
    assert came_back.attrs["db"] == "primary" and came_back.attrs["down_seconds"] >= 0


@pytest.mark.slow
@pytest.mark.parametrize("kind", ENGINES)
def test_a_restart_between_polls_is_not_down(
    kind: str, request: pytest.FixtureRequest, make_collector: Factory, events: list[Event]
) -> None:
    engine = ENGINES[kind]
    server: Server = request.getfixturevalue(engine.primary)
    request.getfixturevalue(engine.replica)  # keep the session's pair as the other tests see it
    collector = make_collector(engine.collector, engine.target("main", server.port))
    assert up(collect(collector)) == {"main": 1}
    server.stop()
    server.start()
    assert up(collect(collector)) == {"main": 1}  # the kept connection is dead: reconnected within the poll
    assert not events


@pytest.mark.slow
@pytest.mark.parametrize("kind", ALL)
def test_a_hung_server_costs_one_timeout_and_spares_the_others(
    kind: str, request: pytest.FixtureRequest, make_collector: Factory, events: list[Event], hung_port: int
) -> None:
    engine = ALL[kind]
    healthy = [engine.target("healthy", request.getfixturevalue(engine.primary).port)] if engine.primary else []
    collector = make_collector(engine.collector, engine.target("hung", hung_port), *healthy, timeout=1.0)
    started = time.monotonic()
    frame = collect(collector)
    elapsed = time.monotonic() - started
    assert 0.9 <= elapsed < 2.5
    assert up(frame) == {"hung": 0, **({"healthy": 1} if healthy else {})}
    (event,) = events
    assert event.attrs["db"] == "hung" and "time" in event.attrs["reason"].lower()  # timed out / timeout


@pytest.mark.parametrize("kind", ALL)
def test_secrets_never_reach_frames_events_logs_or_reprs(
    kind: str,
    request: pytest.FixtureRequest,
    make_collector: Factory,
    events: list[Event],
    caplog: pytest.LogCaptureFixture,
) -> None:
    engine = ALL[kind]
    wrong = "Wr0ng-" + PASSWORD[::-1]
    targets = [engine.target("refused", free_port())]
    if engine.primary:  # a server that checks passwords: one right, one wrong
        port = request.getfixturevalue(engine.primary).port
        targets += [engine.target("good", port), engine.target("wrong", port, password=wrong)]
    else:
        targets.append(engine.target("wrong", free_port(), password=wrong))
    caplog.set_level(logging.DEBUG)
    collector = make_collector(engine.collector, *targets, timeout=1.0)
    frames = [collect(collector), collect(collector)]

    assert events and all(event.kind == "target.down" for event in events)
    text = "\n".join(
        [
            *(frame.select(pl.exclude("ts", "value")).write_csv() for frame in frames),
            *(repr(event) for event in events),
            caplog.text,
            repr(collector.options),
            str(collector.options),
            collector.options.model_dump_json(),
        ]
    )
    for secret in (PASSWORD, wrong):
        for form in (secret, quote(secret, safe=""), quote(secret)):
            assert form not in text


@pytest.mark.slow
def test_qwq_collect_once_with_every_engine_and_an_environment_password(
    postgres: Server, mariadb: Server, redis_server: Server, tmp_path: Path
) -> None:
    config = f"""
[collectors.host]
enabled = false

[collectors.postgres]
targets = [
  {{ name = "main", port = {postgres.port}, user = "{MONITOR}", password = {{ env = "DB_MONITOR_PASSWORD" }} }},
  {{ name = "gone", port = {free_port()}, user = "{MONITOR}", password = "env:DB_MONITOR_PASSWORD" }},
]

[collectors.mysql]
timeout = 2
[[collectors.mysql.targets]]
name = "shop"
port = {mariadb.port}
user = "{MONITOR}"
password = "env:DB_MONITOR_PASSWORD"

[collectors.cache]
type = "redis"
targets = [{{ name = "cache", port = {redis_server.port}, password = "env:DB_MONITOR_PASSWORD" }}]
"""
    home = tmp_path / "home"
    home.mkdir()
    (home / "qwq.toml").write_text(config)
    env = {k: v for k, v in os.environ.items() if not k.startswith("QWQ_")}
    env |= {"QWQ_HOME": str(home), "DB_MONITOR_PASSWORD": PASSWORD}
    done = subprocess.run(
        [QWQ, "collect", "--once", "--format", "json"], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert PASSWORD not in done.stdout + done.stderr
    document = json.loads(done.stdout)
    assert {c["collector"]: c["state"] for c in document["collectors"]} == {
        "postgres": "ok",
        "mysql": "ok",
        "cache": "ok",
    }
    ups = {(s["engine"], s["db"]): s["value"] for s in document["samples"] if s["name"] == "db_up"}
    assert ups == {("postgres", "main"): 1, ("postgres", "gone"): 0, ("mysql", "shop"): 1, ("redis", "cache"): 1}
    (down,) = [t for t in document["targets"] if not t["up"]]
    assert "db=gone" in down["target"] and "refused" in down["reason"].lower()

    shown = CliRunner().invoke(app, ["config", "show"], env=env)
    assert shown.exit_code == 0 and "**********" in shown.output and PASSWORD not in shown.output

    env["DB_MONITOR_PASSWORD"] = None  # type: ignore[assignment]  # CliRunner: unset it
    unset = CliRunner().invoke(app, ["config", "check"], env=env)
    assert isinstance(unset.exception, ConfigError)  # `qwq` turns it into exit code 2
    issue = "collectors.mysql.targets.0.password: environment variable DB_MONITOR_PASSWORD is not set"
    assert issue in str(unset.exception)
