"""The containers collector against a real Docker-API engine (podman's service) and images built here."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import docker
import httpx
import polars as pl
import pytest

from qwq_core.model import Event
from qwq_core.store import LocalStore
from tests.integration.containers.conftest import HOST, Collected, Containers
from tests.services.podman import BUSYBOX, PodmanEngine

T = TypeVar("T")
HEALTHCHECK = {"test": ["CMD", "test", "-e", "/tmp/ok"], "interval": 3_600_000_000_000, "retries": 1}
"""Passes once /tmp/ok exists. The interval is long: the tests run the check by hand."""
BUSY = ("sh", "-c", "while :; do :; done")


def wait_for(what: Callable[[], T], timeout: float = 15.0, message: str = "") -> T:
    """``what()`` once it is truthy; fails the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = what()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g}s waiting for {message or what}")
        time.sleep(0.05)


def value(frame: pl.DataFrame, name: str, container: str | None = None) -> float | None:
    """The value of metric ``name`` (of ``container``) in ``frame``; None if there is no such sample."""
    rows = frame.filter(pl.col("name") == name)
    if container is not None:
        rows = rows.filter(pl.col("container") == container)
    assert rows.height <= 1, rows
    return rows["value"][0] if rows.height else None


def event(collected: Collected, kind: str, container: str, **attrs: Any) -> Event | None:
    """The first event of ``kind`` about ``container`` whose attrs include ``attrs``."""
    for found in list(collected.events):
        if found.kind == kind and found.attrs.get("container") == container:
            if all(found.attrs.get(key) == wanted for key, wanted in attrs.items()):
                return found
    return None


@pytest.mark.service
def test_a_running_container_has_every_metric(collected: Collected, containers: Containers, tmp_path: Path) -> None:
    name = containers.name("busy")
    containers.run("busy", BUSY, mem_limit="64m")
    collected.collect()  # the CPU ratio is measured between two polls
    time.sleep(0.5)
    frame = collected.collect()

    assert value(frame, "container_engine_up") == 1
    assert value(frame, "container_up", name) == 1
    assert 0.01 < value(frame, "container_cpu_usage_ratio", name) <= 1  # a busy loop, on 1 of 2+ CPUs
    assert value(frame, "container_cpu_usage_seconds_total", name) > 0
    assert value(frame, "container_memory_limit_bytes", name) == 64 * 1024 * 1024
    assert 0 < value(frame, "container_memory_used_bytes", name) < 64 * 1024 * 1024
    assert value(frame, "container_network_receive_bytes_total", name) >= 0
    assert value(frame, "container_network_transmit_bytes_total", name) >= 0
    assert value(frame, "container_block_read_bytes_total", name) >= 0
    assert value(frame, "container_block_written_bytes_total", name) >= 0
    assert 0 < value(frame, "container_uptime_seconds", name) < 60
    assert value(frame, "container_restarts_total", name) == 0
    assert value(frame, "container_health", name) is None  # no health check
    mine = frame.filter(pl.col("container") == name)
    assert set(mine["image"]) == {BUSYBOX} and set(mine["host"]) == {HOST}
    assert {m.name for m in collected.collector.metrics()} >= set(frame["name"])

    with LocalStore(tmp_path / "qwq.duckdb") as store:  # and the frame is one the store takes as it is
        store.write(frame)
        stored = store.query("container_up", labels={"container": name}, since="1h")
    assert stored["value"].to_list() == [1.0] and stored["image"].to_list() == [BUSYBOX]


@pytest.mark.service
def test_an_image_built_here_serves_and_its_traffic_is_counted(
    collected: Collected, containers: Containers, engine: PodmanEngine
) -> None:
    image = engine.build(
        "localhost/qwq-test/web:1",
        f'FROM {BUSYBOX}\nCOPY index.html /www/index.html\nCMD ["httpd", "-f", "-p", "8080", "-h", "/www"]\n',
        {"index.html": b"hello from qwq\n" * 1000},
    )
    name = containers.name("site")
    site = containers.run("site", (), image=image)
    address = engine.api.inspect_container(site)["NetworkSettings"]["IPAddress"]
    url = f"http://{address}:8080/"
    wait_for(lambda: _answers(url), message=f"{url} to answer")
    before = collected.collect()
    for _ in range(20):
        assert httpx.get(url, timeout=5).text.startswith("hello from qwq")
    after = collected.collect()

    assert value(after, "container_up", name) == 1
    assert set(after.filter(pl.col("container") == name)["image"]) == {image}
    sent = value(after, "container_network_transmit_bytes_total", name) - value(
        before, "container_network_transmit_bytes_total", name
    )
    received = value(after, "container_network_receive_bytes_total", name) - value(
        before, "container_network_receive_bytes_total", name
    )
    # Twenty answers of 15 kB and twenty requests. Podman 4.3 reports the two directions the other way round
    # (the host side's view of the veth pair; Docker reports the container's), so only both together.
    assert sent + received >= 20 * 15_000 and min(sent, received) > 20 * 50


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.mark.service
def test_a_stopped_container_is_down_with_a_reason_and_recovers(
    collected: Collected, containers: Containers, engine: PodmanEngine
) -> None:
    name = containers.name("web")
    web = containers.run("web")
    assert value(collected.collect(), "container_up", name) == 1

    engine.api.stop(web, timeout=0)
    frame = collected.collect()
    assert value(frame, "container_up", name) == 0
    assert value(frame, "container_restarts_total", name) == 0
    for running_only in ("container_uptime_seconds", "container_cpu_usage_ratio", "container_memory_used_bytes"):
        assert value(frame, running_only, name) is None
    down = event(collected, "target.down", name)
    assert down is not None and down.attrs["reason"] == "exited with code 137"

    engine.api.start(web)
    assert value(collected.collect(), "container_up", name) == 1
    assert event(collected, "target.up", name) is not None


@pytest.mark.service
def test_health_checks_become_1_and_0(collected: Collected, containers: Containers, engine: PodmanEngine) -> None:
    collected.collect()  # starts following the engine's events
    good, bad = containers.name("good"), containers.name("bad")
    good_id = containers.run("good", ("sh", "-c", "touch /tmp/ok; exec sleep 3600"), healthcheck=HEALTHCHECK)
    bad_id = containers.run("bad", healthcheck=HEALTHCHECK)
    frame = collected.collect()
    assert value(frame, "container_health", good) is None  # "starting": no check has run yet

    assert engine.healthcheck(good_id) == "healthy"
    assert engine.healthcheck(bad_id) == "unhealthy"
    for name in (good, bad):  # the poll after the engine reported the change
        wait_for(lambda name=name: event(collected, "container.health_status", name))
    frame = collected.collect()
    assert value(frame, "container_health", good) == 1
    assert value(frame, "container_health", bad) == 0
    assert value(frame, "container_up", bad) == 1  # unhealthy is still running

    engine.healthcheck(bad_id)
    unhealthy = wait_for(lambda: event(collected, "container.health_status", bad, health_status="unhealthy"))
    assert unhealthy.severity == "warning"


@pytest.mark.service
def test_restarts_are_counted(collected: Collected, containers: Containers, engine: PodmanEngine) -> None:
    collected.collect()
    name = containers.name("crash")
    crash = containers.run(
        "crash", ("sh", "-c", "sleep 0.2; exit 3"), restart_policy={"Name": "on-failure", "MaximumRetryCount": 2}
    )

    def gave_up() -> bool:
        state = engine.api.inspect_container(crash)
        return state["RestartCount"] == 2 and state["State"]["Status"] == "exited"

    wait_for(gave_up, message="two restarts, then exited")
    frame = collected.collect()
    assert value(frame, "container_restarts_total", name) == 2
    assert value(frame, "container_up", name) == 0
    died = wait_for(lambda: event(collected, "container.die", name, exit_code=3))
    assert died.severity == "error" and "exit code 3" in died.message
    assert wait_for(lambda: event(collected, "container.restart", name)).severity == "info"


@pytest.mark.service
def test_compose_labels_become_series_labels(collected: Collected, containers: Containers) -> None:
    name = containers.name("api")
    compose = {"com.docker.compose.project": "shop", "com.docker.compose.service": "api"}
    containers.run("api", labels=compose)
    containers.run("plain")
    frame = collected.collect()
    api = frame.filter(pl.col("container") == name)
    assert set(api["compose_project"]) == {"shop"} and set(api["compose_service"]) == {"api"}
    plain = frame.filter(pl.col("container") == containers.name("plain"))
    assert plain["compose_project"].is_null().all() and plain["compose_service"].is_null().all()


@pytest.mark.service
def test_events_arrive_before_the_next_poll(collected: Collected, containers: Containers, engine: PodmanEngine) -> None:
    name = containers.name("ev")
    compose = {"com.docker.compose.project": "shop", "com.docker.compose.service": "worker"}
    ev = containers.run("ev", labels=compose)
    collected.collect()  # the last poll: from here on only the event stream can tell
    polled = len(collected.events)

    engine.api.kill(ev, signal="SIGTERM")  # sleep as PID 1 ignores it: nothing happens but the kill event
    engine.api.kill(ev)
    started = time.monotonic()
    died = wait_for(lambda: event(collected, "container.die", name), timeout=10)
    assert time.monotonic() - started < 5
    killed = event(collected, "container.kill", name)
    assert killed is not None and killed.attrs["signal"] in ("15", "SIGTERM", None)
    assert died.attrs["exit_code"] == 137 and died.attrs["requested"] is True
    assert died.severity == "info"  # killed on request: not a crash
    assert died.attrs["compose_project"] == "shop" and died.attrs["compose_service"] == "worker"
    assert died.attrs["image"] == BUSYBOX and died.attrs["host"] == HOST
    assert died.source == "containers"
    assert len(collected.events) > polled  # and no poll ran in between

    engine.api.start(ev)
    wait_for(lambda: event(collected, "container.start", name), timeout=10)
    assert value(collected.collect(), "container_engine_events_connected") == 1


@pytest.mark.service
def test_include_and_exclude_by_name_and_label(
    containers: Containers, engine: PodmanEngine, make_collector: Callable[..., Collected]
) -> None:
    containers.run("keep", labels={"tier": "web"})
    containers.run("db", labels={"tier": "db"})
    containers.run("other")
    collected = make_collector(
        url=engine.url, include=[f"{containers.prefix}-keep", "tier=*"], exclude=["tier=db"], events=False
    )
    frame = collected.collect()
    assert set(frame["container"].drop_nulls()) == {containers.name("keep")}
    assert value(frame, "container_engine_events_connected") is None  # events = false


@pytest.mark.slow
@pytest.mark.service
def test_many_containers_are_measured_concurrently_and_inspected_only_on_change(
    collected: Collected, containers: Containers, engine: PodmanEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    count = 12
    with ThreadPoolExecutor(4) as pool:
        ids = list(pool.map(lambda i: containers.run(f"n{i:02d}"), range(count)))
    wait_for(lambda: value(collected.collect(), "container_engine_events_connected") == 1)
    inspected: list[str] = []
    inspect = docker.APIClient.inspect_container
    monkeypatch.setattr(docker.APIClient, "inspect_container", lambda api, c: inspected.append(c) or inspect(api, c))

    started = time.perf_counter()
    frame = collected.collect()
    seconds = time.perf_counter() - started
    up = frame.filter(pl.col("name") == "container_up")
    assert up.height == count and up["value"].to_list() == [1.0] * count
    assert frame.filter(pl.col("name") == "container_cpu_usage_ratio").height == count
    assert seconds < 2.0, f"one poll of {count} containers took {seconds:.2f}s"
    assert inspected == []  # nothing happened to them: the stream stayed open, their inspect answers hold

    engine.api.stop(ids[0], timeout=0)
    frame = collected.collect()
    assert inspected == [ids[0]]  # listed in another state: inspected again, with or without its event yet
    assert value(frame, "container_up", containers.name("n00")) == 0


@pytest.mark.slow
@pytest.mark.service
def test_engine_down_is_data_and_recovery_reconnects_events(
    make_collector: Callable[..., Collected], tmp_path: Path
) -> None:
    own = PodmanEngine()  # its own engine: this test stops it
    try:
        own.start()
        own.import_busybox()
        collected = make_collector(url=own.url, timeout=2)
        assert value(collected.collect(), "container_engine_up") == 1

        own.stop_service()
        started = time.perf_counter()
        frame = collected.collect()
        assert time.perf_counter() - started < 3
        assert value(frame, "container_engine_up") == 0
        assert frame.filter(pl.col("name") == "container_up").is_empty()
        down = [e for e in collected.events if e.kind == "target.down"]
        assert len(down) == 1 and down[0].attrs["target"] == own.url
        assert "No such file or directory" in down[0].attrs["reason"] or "refused" in down[0].attrs["reason"]
        collected.collect()
        assert collected.kinds().count("target.down") == 1  # still down, same reason: no new event

        own.start()
        assert value(collected.collect(), "container_engine_up") == 1
        assert "target.up" in collected.kinds()
        later = own.run(name="after-restart")
        wait_for(lambda: event(collected, "container.start", "after-restart"), timeout=20)
        own.remove([later])
    finally:
        own.close()


@pytest.fixture
def silent_engine(tmp_path: Path) -> Iterator[str]:
    """A unix socket that accepts connections and never answers: a hung engine."""
    path = tmp_path / "hung.sock"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    server.listen(16)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"unix://{path}"
    stop.set()
    thread.join()
    for connection in accepted:
        connection.close()
    server.close()


def test_a_hung_engine_costs_one_timeout_and_no_exception(
    silent_engine: str, make_collector: Callable[..., Collected]
) -> None:
    collected = make_collector(url=silent_engine, timeout=0.5)
    started = time.perf_counter()
    frame = collected.collect()
    assert time.perf_counter() - started < 2
    assert value(frame, "container_engine_up") == 0
    assert value(frame, "container_engine_events_connected") == 0
    (down,) = collected.events
    assert down.kind == "target.down" and down.attrs["reason"] == "timed out after 0.5s"

    started = time.perf_counter()
    collected.collector.close()  # the event thread is stuck connecting too: close does not wait for long
    assert time.perf_counter() - started < 3


def test_a_missing_socket_is_down_and_close_stops_the_event_thread(
    tmp_path: Path, make_collector: Callable[..., Collected]
) -> None:
    collected = make_collector(url=f"unix://{tmp_path}/none.sock")
    before = set(threading.enumerate())
    frame = collected.collect()
    assert value(frame, "container_engine_up") == 0
    assert "No such file or directory" in collected.events[0].attrs["reason"]
    (watcher,) = [t for t in set(threading.enumerate()) - before if t.name == "qwq-containers-events"]
    collected.collector.close()
    assert not watcher.is_alive()
