"""The containers collector's pure parts: Engine API JSON → figures and samples, filters, event translation."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from docker.errors import APIError, DockerException
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from collectors.container_engine import describe
from collectors.container_events import EventTranslator, EventWatcher
from collectors.container_stats import (
    METRICS,
    ContainerFilter,
    ContainerInfo,
    Usage,
    container_info,
    container_rows,
    cpu_ratio,
    engine_host,
    memory_used,
    parse_time_ns,
    usage,
)
from collectors.containers import ContainerOptions

NS = 1_000_000_000
READ = "2026-03-01T12:00:00.123456789Z"
READ_NS = int(datetime(2026, 3, 1, 12, tzinfo=UTC).timestamp()) * NS + 123_456_789

# A Docker Engine on cgroup v2: lower-case block I/O ops, inactive_file, two networks.
DOCKER_V2 = {
    "read": READ,
    "cpu_stats": {"cpu_usage": {"total_usage": 5_000_000_000}, "system_cpu_usage": 9 * 10**15, "online_cpus": 4},
    "memory_stats": {"usage": 30_449_664, "limit": 8_241_434_624, "stats": {"inactive_file": 4_096_000}},
    "networks": {"eth0": {"rx_bytes": 5338, "tx_bytes": 648}, "eth1": {"rx_bytes": 4641, "tx_bytes": 352}},
    "blkio_stats": {
        "io_service_bytes_recursive": [
            {"major": 8, "minor": 0, "op": "read", "value": 4096},
            {"major": 8, "minor": 16, "op": "read", "value": 1024},
            {"major": 8, "minor": 0, "op": "write", "value": 8192},
        ]
    },
}
# cgroup v1: capitalised ops with Sync/Async/Total duplicates, total_inactive_file, per-CPU usage only.
DOCKER_V1 = {
    "read": READ,
    "cpu_stats": {"cpu_usage": {"total_usage": 100, "percpu_usage": [40, 60]}},
    "memory_stats": {"usage": 6_537_216, "limit": 67_108_864, "stats": {"total_inactive_file": 537_216}},
    "networks": {"eth0": {"rx_bytes": 10, "tx_bytes": 20}},
    "blkio_stats": {
        "io_service_bytes_recursive": [
            {"major": 8, "minor": 0, "op": "Read", "value": 100},
            {"major": 8, "minor": 0, "op": "Write", "value": 200},
            {"major": 8, "minor": 0, "op": "Sync", "value": 300},
            {"major": 8, "minor": 0, "op": "Total", "value": 300},
        ]
    },
}


def inspect(**state: Any) -> dict[str, Any]:
    """An inspect answer of a running container, with ``State`` fields overridden."""
    return {
        "Id": "0123456789abcdef" * 4,
        "Name": "/web",
        "RestartCount": 2,
        "Config": {
            "Image": "nginx:1.27",
            "Labels": {"com.docker.compose.project": "shop", "com.docker.compose.service": "web"},
        },
        "State": {"Status": "running", "Running": True, "ExitCode": 0, "StartedAt": READ, **state},
    }


def reading(at_ns: int, cpu_ns: int | None, cpus: int = 2) -> Usage:
    return Usage(at_ns, cpu_ns, cpus, None, None, None, None, None, None)


# ---- timestamps -------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (READ, READ_NS),
        ("2026-03-01T12:00:00Z", READ_NS - 123_456_789),
        ("2026-03-01T12:00:00.5Z", READ_NS - 123_456_789 + NS // 2),
        ("2026-03-01T14:00:00.123456789+02:00", READ_NS),
        ("0001-01-01T00:00:00Z", None),
        ("", None),
        (None, None),
        ("yesterday", None),
    ],
)
def test_engine_timestamps_parse_to_nanoseconds(text: str | None, expected: int | None) -> None:
    assert parse_time_ns(text) == expected


@given(st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2200, 1, 1)), st.integers(0, 999))
def test_timestamps_round_trip_with_nanoseconds(moment: datetime, nanos: int) -> None:
    text = moment.strftime("%Y-%m-%dT%H:%M:%S") + f".{moment.microsecond:06d}{nanos:03d}Z"
    expected = (moment.replace(tzinfo=UTC) - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
    assert parse_time_ns(text) == expected * 1000 + nanos


# ---- stats ------------------------------------------------------------------------------------------------
def test_docker_cgroup_v2_stats() -> None:
    figures = usage(DOCKER_V2)
    assert figures == Usage(
        read_ns=READ_NS,
        cpu_ns=5_000_000_000,
        online_cpus=4,
        memory_used=30_449_664 - 4_096_000,
        memory_limit=8_241_434_624,
        network_rx=5338 + 4641,
        network_tx=648 + 352,
        block_read=4096 + 1024,
        block_written=8192,
    )


def test_docker_cgroup_v1_stats() -> None:
    figures = usage(DOCKER_V1)
    assert figures is not None
    assert figures.online_cpus == 2  # from the per-CPU list when online_cpus is missing
    assert figures.memory_used == 6_000_000
    assert (figures.block_read, figures.block_written) == (100, 200)  # Sync and Total are not double-counted


def test_what_an_engine_does_not_report_is_absent_not_zero() -> None:
    figures = usage({"read": READ, "memory_stats": {}, "blkio_stats": {"io_service_bytes_recursive": None}})
    assert figures is not None
    assert (figures.cpu_ns, figures.memory_used, figures.memory_limit) == (None, None, None)
    assert (figures.network_rx, figures.block_read) == (None, None)  # no networks (host mode), no block stats
    no_io = usage({"read": READ, "blkio_stats": {"io_service_bytes_recursive": []}})
    assert no_io is not None and no_io.block_read == 0  # listed but empty: no I/O happened


def test_a_stopped_containers_stats_have_no_reading() -> None:
    assert usage({"read": "0001-01-01T00:00:00Z", "memory_stats": {}}) is None


@pytest.mark.parametrize(
    ("memory", "expected"),
    [
        ({"usage": 1000}, 1000),
        ({"usage": 1000, "stats": {"inactive_file": 300}}, 700),
        ({"usage": 1000, "stats": {"total_inactive_file": 300}}, 700),
        ({"usage": 1000, "stats": {"inactive_file": 5000}}, 1000),  # nonsense: keep the usage
        ({}, None),
    ],
)
def test_memory_used_leaves_out_inactive_page_cache(memory: dict[str, Any], expected: float | None) -> None:
    assert memory_used(memory) == expected


# ---- CPU ratio --------------------------------------------------------------------------------------------
def test_cpu_ratio_is_a_share_of_all_the_engines_cpus() -> None:
    before = reading(0, 0, cpus=4)
    after = reading(2 * NS, 4 * NS, cpus=4)  # 4 CPU-seconds in 2 s on 4 CPUs: half the machine
    assert cpu_ratio(before, after) == 0.5
    assert cpu_ratio(None, after) is None  # the first poll of a container
    assert cpu_ratio(after, reading(3 * NS, 1 * NS)) is None  # the counter went back: restarted
    assert cpu_ratio(after, reading(2 * NS, 5 * NS)) is None  # no time passed
    assert cpu_ratio(before, reading(1 * NS, 9 * NS, cpus=4)) == 1.0  # clamped


@given(
    st.integers(0, 10**15),
    st.integers(1, 10**12),
    st.integers(0, 10**15),
    st.integers(0, 10**13),
    st.integers(1, 256),
)
def test_cpu_ratio_is_always_between_0_and_1(start: int, elapsed: int, cpu: int, used: int, cpus: int) -> None:
    ratio = cpu_ratio(reading(start, cpu, cpus), reading(start + elapsed, cpu + used, cpus))
    assert ratio is not None and 0 <= ratio <= 1
    if used <= elapsed * cpus:
        assert ratio == pytest.approx(used / (elapsed * cpus))


# ---- inspect and samples ----------------------------------------------------------------------------------
def test_inspect_answers_become_container_info() -> None:
    info = container_info(inspect())
    assert (info.name, info.image, info.state, info.restarts, info.health) == ("web", "nginx:1.27", "running", 2, None)
    assert info.started_ns == READ_NS and info.running
    assert container_info(inspect(Health={"Status": ""})).health is None  # some engines: an empty status
    assert container_info(inspect(Health={"Status": "unhealthy"})).health == "unhealthy"
    stopped = container_info(inspect(Status="exited", Running=False, ExitCode=137))
    assert not stopped.running and stopped.down_reason() == "exited with code 137"
    assert container_info(inspect(Status="restarting")).down_reason() == "restarting"


def test_samples_of_a_running_container() -> None:
    info = container_info(inspect(Health={"Status": "healthy"}))
    rows = container_rows(info, usage(DOCKER_V2), 0.25, READ_NS + 90 * NS, "db1")
    values = {name: value for name, _, value in rows}
    assert values["container_up"] == 1 and values["container_health"] == 1
    assert values["container_uptime_seconds"] == 90
    assert values["container_cpu_usage_ratio"] == 0.25 and values["container_cpu_usage_seconds_total"] == 5
    assert values["container_restarts_total"] == 2
    assert values["container_block_read_bytes_total"] == 5120
    assert len(values) == len(rows) == len(METRICS) - 2  # all but the two engine-level series
    expected = {"container": "web", "image": "nginx:1.27", "host": "db1", "compose_project": "shop"}
    assert all(labels == {**expected, "compose_service": "web"} for _, labels, _ in rows)


def test_samples_of_a_stopped_or_starting_container() -> None:
    stopped = container_info(inspect(Status="exited", Running=False, Health={"Status": "unhealthy"}))
    assert {name: value for name, _, value in container_rows(stopped, None, None, READ_NS, "h")} == {
        "container_up": 0,
        "container_restarts_total": 2,
    }
    starting = container_info(inspect(Health={"Status": "starting"}))
    names = {name for name, _, _ in container_rows(starting, None, None, READ_NS - NS, "h")}
    assert "container_health" not in names
    (uptime,) = [v for n, _, v in container_rows(starting, None, None, READ_NS - NS, "h") if "uptime" in n]
    assert uptime == 0  # a clock a little behind the engine's never makes it negative


def test_metrics_are_typed_by_their_names() -> None:
    kinds = {info.name: info.type for info in METRICS}
    assert kinds["container_restarts_total"] == "counter" and kinds["container_up"] == "gauge"
    assert all(info.help for info in METRICS)
    assert {info.unit for info in METRICS if info.name.endswith("_bytes")} == {"bytes"}


# ---- filters and engine URLs ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("include", "exclude", "name", "labels", "kept"),
    [
        (["*"], [], "web", {}, True),
        (["web-*"], [], "db", {}, False),
        (["*"], ["*-test"], "web-test", {}, False),
        (["com.docker.compose.project=shop"], [], "x", {"com.docker.compose.project": "shop"}, True),
        (["com.docker.compose.project=shop"], [], "x", {"com.docker.compose.project": "blog"}, False),
        (["tier=*"], [], "x", {}, False),
        (["tier=*"], [], "x", {"tier": ""}, True),
        (["*"], ["qwq.monitor=false"], "x", {"qwq.monitor": "false"}, False),
    ],
)
def test_filters_by_name_glob_or_label(
    include: list[str], exclude: list[str], name: str, labels: dict[str, str], kept: bool
) -> None:
    assert ContainerFilter(include, exclude)(name, labels) is kept


NAMES = st.text("abc-=*", min_size=1, max_size=6)


@given(st.lists(NAMES, max_size=3), st.lists(NAMES, min_size=1, max_size=3), st.text("abc-", max_size=6))
def test_exclude_always_wins(include: list[str], exclude: list[str], name: str) -> None:
    labels = {"a": name}
    if ContainerFilter(exclude, [])(name, labels):
        assert not ContainerFilter(include, exclude)(name, labels)


@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("unix:///var/run/docker.sock", "me"),
        ("http+unix://%2Fvar%2Frun%2Fdocker.sock", "me"),
        ("npipe:////./pipe/docker_engine", "me"),
        ("tcp://127.0.0.1:2375", "me"),
        ("tcp://[::1]:2375", "me"),
        ("tcp://localhost:2375", "me"),
        ("tcp://10.0.0.5:2376", "10.0.0.5"),
        ("ssh://deploy@build.example.com", "build.example.com"),
        ("tcp://127.example.com:2375", "127.example.com"),
    ],
)
def test_the_host_label_is_the_engines(url: str, host: str) -> None:
    assert engine_host(url, "me") == host


# ---- options and failure reasons --------------------------------------------------------------------------
def test_options_are_checked(tmp_path: Path) -> None:
    assert ContainerOptions().url is None and ContainerOptions().events
    with pytest.raises(ValidationError, match="unsupported URL"):
        ContainerOptions(url="ftp://engine")
    with pytest.raises(ValidationError, match="extra"):
        ContainerOptions.model_validate({"urls": ["unix:///x"]})
    with pytest.raises(ValidationError, match="lacks ca.pem, cert.pem, key.pem"):
        ContainerOptions(url="tcp://engine:2376", cert_path=tmp_path)
    with pytest.raises(ValidationError):
        ContainerOptions(max_concurrency=0)


def test_failure_reasons_are_short_and_stable() -> None:
    refused = requests.ConnectionError(ConnectionRefusedError(111, "Connection refused"))
    wrapped = DockerException("Error while fetching server API version: " + str(refused))
    wrapped.__cause__ = refused
    assert describe(wrapped, 5) == "ConnectionRefusedError: Connection refused"
    assert describe(requests.ReadTimeout("read timed out"), 2.5) == "timed out after 2.5s"
    response = requests.Response()
    response.status_code = 500
    assert describe(APIError("boom", response, explanation="engine broke"), 5) == "HTTP 500: engine broke"


# ---- events -----------------------------------------------------------------------------------------------
def engine_event(action: str, container: str = "abc123", at: int = 10, **attributes: str) -> dict[str, Any]:
    """An event as Docker sends it: container labels among the actor's attributes."""
    return {
        "Type": "container",
        "Action": action,
        "id": container,
        "Actor": {"ID": container, "Attributes": {"name": "web", "image": "nginx:1.27", **attributes}},
        "time": at,
        "timeNano": at * NS + 5,
    }


def translate(*raws: Mapping[str, Any], known: Mapping[str, ContainerInfo] | None = None, keep: Any = None) -> list:
    translator = EventTranslator("containers", "db1")
    events = [translator(raw, known or {}, keep or (lambda name, labels: True)) for raw in raws]
    return [event for event in events if event is not None]


def test_a_crash_is_an_error_with_its_exit_code_and_compose_labels() -> None:
    (died,) = translate(engine_event("die", exitCode="3", **{"com.docker.compose.project": "shop"}))
    assert (died.kind, died.severity, died.source) == ("container.die", "error", "containers")
    assert died.message == "container web (nginx:1.27) died with exit code 3"
    assert died.attrs == {
        "container": "web",
        "id": "abc123",
        "image": "nginx:1.27",
        "action": "die",
        "host": "db1",
        "compose_project": "shop",
        "exit_code": 3,
        "requested": False,
    }
    assert died.ts == datetime.fromtimestamp(10, UTC)  # the engine's time of the event


def test_a_requested_stop_is_not_a_crash() -> None:
    kill, died, stop = translate(
        engine_event("kill", at=10, signal="15"), engine_event("die", at=11, exitCode="143"), engine_event("stop")
    )
    assert (kill.kind, kill.attrs["signal"]) == ("container.kill", "15")
    assert died.severity == "info" and died.attrs["requested"] is True
    assert "after a stop request" in died.message and stop.kind == "container.stop"
    (late,) = translate(engine_event("kill", at=10), engine_event("die", at=100, exitCode="1"))[1:]
    assert late.severity == "error"  # a minute after the kill: something else
    (clean,) = translate(engine_event("die", exitCode="0"))
    assert clean.severity == "info"


@pytest.mark.parametrize(
    ("raw", "status", "severity"),
    [
        (engine_event("health_status: unhealthy"), "unhealthy", "warning"),
        (engine_event("health_status: healthy"), "healthy", "info"),
        ({**engine_event("health_status"), "HealthStatus": "unhealthy"}, "unhealthy", "warning"),
    ],
)
def test_health_status_events(raw: dict[str, Any], status: str, severity: str) -> None:
    (event,) = translate(raw)
    assert (event.kind, event.attrs["health_status"], event.severity) == ("container.health_status", status, severity)


def test_severity_and_which_actions_are_recorded() -> None:
    oom, restart, start = translate(
        engine_event("oom"),
        engine_event("exec_start: sh -c date"),  # not recorded by default
        engine_event("restart"),
        engine_event("resize"),
        {**engine_event("connect"), "Type": "network"},
        engine_event("start"),
    )
    assert (oom.kind, oom.severity) == ("container.oom", "error")
    assert (restart.severity, start.severity) == ("info", "info")  # the crash before a restart is its die
    assert start.message == "container web (nginx:1.27) started"


def test_events_are_filtered_and_completed_from_the_last_poll() -> None:
    info = container_info(inspect())
    bare = {"Type": "container", "Action": "start", "Actor": {"ID": info.id, "Attributes": {}}, "timeNano": NS}
    (event,) = translate(bare, known={info.id: info})
    assert event.attrs["container"] == "web" and event.attrs["image"] == "nginx:1.27"
    assert event.attrs["compose_service"] == "web"
    assert translate(engine_event("start"), keep=lambda name, labels: name != "web") == []


# ---- the event watcher, with a stand-in for the engine's stream --------------------------------------------
class FakeStream:
    """Hands out queued events until ``None`` (the stream breaks) or until closed."""

    def __init__(self, events: list[dict[str, Any] | None]) -> None:
        self.queue: queue.Queue[dict[str, Any] | None] = queue.Queue()
        for item in events:
            self.queue.put(item)
        self.closed = threading.Event()

    def __iter__(self) -> Iterator[dict[str, Any]]:
        while True:
            item = self.queue.get()
            if item is None or self.closed.is_set():
                return
            yield item

    def close(self) -> None:
        self.closed.set()
        self.queue.put(None)


def test_the_watcher_resumes_after_a_break_without_repeating_events() -> None:
    first, second, third = engine_event("start", at=1), engine_event("die", at=2), engine_event("start", at=3)
    streams = [FakeStream([first, second, None]), FakeStream([second, third])]  # the engine replays `second`
    opened: list[str] = []
    handled: list[str] = []

    def source(since: str) -> FakeStream:
        opened.append(since)
        if len(opened) == 2:
            raise requests.ConnectionError("engine restarting")  # one failed attempt in between
        return streams[0] if len(opened) == 1 else streams[1]

    def handle(raw: Mapping[str, Any]) -> None:
        handled.append(f"{raw['Action']}@{raw['time']}")
        if raw["time"] == 1:
            raise RuntimeError("a bug in handling one event")  # logged, and the stream goes on

    watcher = EventWatcher(source, handle, started_ns=NS // 2, min_backoff=0.01, max_backoff=0.02)
    watcher.start()
    deadline = time.monotonic() + 5
    while len(handled) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert handled == ["start@1", "die@2", "start@3"]
    assert opened == ["0.500000000", "2.000000005", "2.000000005"]  # from the start, then from the last event
    assert watcher.connected and watcher.alive()
    started = time.monotonic()
    watcher.close()
    assert not watcher.alive() and time.monotonic() - started < 1
    assert streams[1].closed.is_set()
