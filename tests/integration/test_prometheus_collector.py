"""The prometheus collector against a real node_exporter and real HTTP servers; /metrics via render()."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import polars as pl
import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families

from collectors.prometheus import PrometheusCollector
from qwq_core.api.exposition import render
from qwq_core.collector import CollectorContext, samples
from qwq_core.model import Event, MetricInfo
from qwq_core.store import LocalStore
from tests.support import free_port

pytestmark = pytest.mark.service

NODE_EXPORTER = "/usr/bin/prometheus-node-exporter"
HOST = "testhost"


class NodeExporter:
    """A node_exporter process on a fixed local port that can be stopped and started again."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}/metrics"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [NODE_EXPORTER, f"--web.listen-address=127.0.0.1:{self.port}", "--no-collector.systemd"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url, timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("node_exporter did not answer within 10s")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None


@pytest.fixture
def node_exporter() -> Iterator[NodeExporter]:
    if shutil.which(NODE_EXPORTER) is None:
        pytest.skip("prometheus-node-exporter is not installed")
    exporter = NodeExporter(free_port())
    exporter.start()
    try:
        yield exporter
    finally:
        exporter.stop()


@contextmanager
def serve(respond: Callable[[BaseHTTPRequestHandler], tuple[int, str, bytes]]) -> Iterator[str]:
    """An HTTP server in a thread; ``respond(handler)`` gives status, content type and body of each GET."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status, content_type, body = respond(self)
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/metrics"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def make(events: list[Event], **options: Any) -> PrometheusCollector:
    context = CollectorContext(name="node", host=HOST, emit=events.append)
    return PrometheusCollector(PrometheusCollector.Options.model_validate(options), context)


def collect(collector: PrometheusCollector) -> pl.DataFrame:
    return asyncio.run(collector.collect(datetime.now(UTC)))


def value(frame: pl.DataFrame, name: str, **labels: str) -> float:
    rows = frame.filter(pl.col("name") == name, *(pl.col(k) == v for k, v in labels.items()))
    assert rows.height == 1, f"expected one {name}{labels}, got {rows}"
    return float(rows["value"][0])


# ---- node_exporter ------------------------------------------------------------------------------------


def test_scrapes_node_exporter(node_exporter: NodeExporter, store: LocalStore) -> None:
    events: list[Event] = []
    collector = make(events, urls=[node_exporter.url], labels={"env": "test"})
    frame = collect(collector)

    instance = f"127.0.0.1:{node_exporter.port}"
    assert value(frame, "up", instance=instance) == 1
    assert value(frame, "scrape_samples_scraped") > 100
    assert 0 < value(frame, "scrape_duration_seconds") < 10
    cpu = frame.filter(pl.col("name") == "node_cpu_seconds_total")
    assert cpu.height >= 2
    assert cpu["cpu"].null_count() == 0 and "idle" in cpu["mode"].to_list()
    # target labels on every row; a loopback target is this host
    assert frame["job"].unique().to_list() == ["node"]
    assert frame["instance"].unique().to_list() == [instance]
    assert frame["host"].unique().to_list() == [HOST]
    assert frame["env"].unique().to_list() == ["test"]
    assert frame.filter(pl.col("name").str.ends_with("_created")).is_empty()
    assert frame.schema["ts"] == pl.Datetime("us", "UTC")
    assert events == []
    assert store.write(frame) == frame.filter(pl.col("value").is_not_nan()).height  # a valid sample frame

    types = {info.name: info for info in collector.metrics()}
    assert types["node_cpu_seconds_total"].type == "counter"
    assert types["node_cpu_seconds_total"].unit == "seconds"
    assert types["node_load1"].type == "gauge"
    assert types["go_gc_duration_seconds_count"].type == "counter"  # summary _count
    assert types["go_gc_duration_seconds"].type == "gauge"  # summary quantiles
    assert {"up", "scrape_duration_seconds", "scrape_samples_scraped"} <= set(types)


def test_down_and_up_events_on_transitions_only(node_exporter: NodeExporter) -> None:
    events: list[Event] = []
    collector = make(events, urls=[node_exporter.url], timeout=2)
    assert value(collect(collector), "up") == 1

    node_exporter.stop()
    frame = collect(collector)
    assert value(frame, "up") == 0
    assert value(frame, "scrape_samples_scraped") == 0
    assert frame.filter(pl.col("name").str.starts_with("node_")).is_empty()
    assert [e.kind for e in events] == ["target.down"]
    down = events[0]
    assert down.severity == "error" and down.source == "node"
    assert down.attrs["reason"] and down.attrs["target"] == node_exporter.url
    assert down.attrs["instance"] == f"127.0.0.1:{node_exporter.port}"

    assert value(collect(collector), "up") == 0
    assert len(events) == 1  # still down for the same reason: nothing new

    node_exporter.start()
    assert value(collect(collector), "up") == 1
    assert [e.kind for e in events] == ["target.down", "target.up"]


def test_unreachable_target_does_not_hide_the_reachable_one(node_exporter: NodeExporter) -> None:
    events: list[Event] = []
    dead = f"http://127.0.0.1:{free_port()}/metrics"
    frame = collect(make(events, urls=[dead, node_exporter.url]))
    assert value(frame, "up", instance=f"127.0.0.1:{node_exporter.port}") == 1
    assert value(frame, "up", instance=dead.split("/")[2]) == 0
    assert not frame.filter(pl.col("name") == "node_cpu_seconds_total").is_empty()
    assert [(e.kind, e.attrs["target"]) for e in events] == [("target.down", dead)]


def test_include_and_exclude_globs(node_exporter: NodeExporter) -> None:
    frame = collect(make([], urls=[node_exporter.url], include=["node_cpu_*", "node_load*"], exclude=["*15"]))
    names = set(frame["name"].unique().to_list()) - {
        "up",
        "scrape_duration_seconds",
        "scrape_samples_scraped",
        "scrape_samples_post_metric_relabeling",
    }
    assert names and all(n.startswith(("node_cpu_", "node_load")) for n in names)
    assert "node_load1" in names and "node_load15" not in names
    kept = value(frame, "scrape_samples_post_metric_relabeling")
    assert kept == frame.height - 4 and kept < value(frame, "scrape_samples_scraped")


# ---- failures that are not connection errors ----------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "body", "reason"),
    [
        (500, b"boom", "HTTP 500"),
        (200, b'metric{label="unterminated 1\n', "unparsable response"),
    ],
    ids=["http-500", "garbage"],
)
def test_bad_responses_are_down_not_exceptions(status: int, body: bytes, reason: str) -> None:
    events: list[Event] = []
    with serve(lambda _: (status, "text/plain", body)) as url:
        frame = collect(make(events, urls=[url]))
    assert value(frame, "up") == 0
    assert len(events) == 1 and events[0].attrs["reason"].startswith(reason)


def test_slow_target_times_out() -> None:
    def slow(_: BaseHTTPRequestHandler) -> tuple[int, str, bytes]:
        time.sleep(1)
        return 200, "text/plain", b"x 1\n"

    events: list[Event] = []
    with serve(slow) as url:
        started = time.monotonic()
        frame = collect(make(events, urls=[url], timeout=0.2))
        assert time.monotonic() - started < 0.9
    assert value(frame, "up") == 0
    assert events[0].attrs["reason"] == "timed out after 0.2s"


def test_exporter_labels_clashing_with_target_labels_are_kept_as_exported() -> None:
    body = b'# TYPE m gauge\nm{job="app",host="h1",name="n",exported_job="x"} 1\n'
    with serve(lambda handler: (200, "text/plain", body)) as url:
        frame = collect(make([], urls=[url], job="scrape"))
    row = frame.filter(pl.col("name") == "m").row(0, named=True)
    assert row["job"] == "scrape" and row["host"] == HOST
    assert row["exported_host"] == "h1" and row["exported_name"] == "n"
    assert row["exported_job"] == "x" and row["exported_exported_job"] == "app"


def test_sends_accept_and_configured_headers() -> None:
    seen: dict[str, str] = {}

    def record(handler: BaseHTTPRequestHandler) -> tuple[int, str, bytes]:
        seen.update(handler.headers.items())
        return 200, "text/plain", b"x 1\n"

    with serve(record) as url:
        collect(make([], urls=[url], headers={"Authorization": "Bearer s3cret"}))
    assert seen["Accept"] == "text/plain;version=0.0.4"
    assert seen["Authorization"] == "Bearer s3cret"


# ---- /metrics exposition --------------------------------------------------------------------------------


def fill(store: LocalStore) -> None:
    now = datetime.now(UTC)
    store.write(
        samples(
            now,
            [
                ("room_temperature_celsius", {"room": "lab", "host": "sensor1"}, 21.5),
                ("room_temperature_celsius", {"room": "hall", "host": "sensor1"}, 18.0),
                ("http_requests_total", {"code": "200", "host": "web1"}, 42),
                ("queue_depth", {}, 7),
            ],
        )
    )
    store.write(samples(now - timedelta(minutes=10), [("stale_gauge", {"host": "gone"}, 1)]))
    store.describe(
        [
            MetricInfo("room_temperature_celsius", "gauge", "celsius", "Room temperature."),
            MetricInfo("http_requests_total", "counter", "", "Requests served."),
            MetricInfo("queue_depth", "untyped", "", "Items waiting."),
        ]
    )


def families(body: bytes) -> dict[str, Any]:
    parsed = list(text_string_to_metric_families(body.decode()))
    names = [f.name for f in parsed]
    assert len(names) == len(set(names)), f"duplicate families: {sorted(names)}"
    return {f.name: f for f in parsed}


def test_render_types_help_and_staleness(store: LocalStore) -> None:
    fill(store)
    body, content_type = render(store, None)
    assert content_type.startswith("text/plain; version=0.0.4")
    text = body.decode()
    assert "# TYPE http_requests_total counter" in text
    assert "# TYPE room_temperature_celsius gauge" in text
    assert "# TYPE queue_depth untyped" in text
    assert "# HELP room_temperature_celsius Room temperature." in text
    parsed = families(body)
    temps = {s.labels["room"]: s.value for s in parsed["room_temperature_celsius"].samples}
    assert temps == {"lab": 21.5, "hall": 18.0}
    assert "process_cpu_seconds" in parsed and "python_info" in parsed  # qwq's own metrics
    assert "stale_gauge" not in parsed
    assert "stale_gauge" in families(render(store, None, max_age="1h")[0])


def test_render_merges_stored_copies_of_its_own_metrics(store: LocalStore) -> None:
    store.write(samples(datetime.now(UTC), [("process_cpu_seconds_total", {"job": "qwq"}, 12.5)]))
    body, _ = render(store, None)
    assert body.decode().count("# TYPE process_cpu_seconds_total ") == 1
    cpu = families(body)["process_cpu_seconds"]
    assert cpu.type == "counter"
    by_job = {s.labels.get("job"): s.value for s in cpu.samples}
    assert by_job["qwq"] == 12.5 and None in by_job  # the stored series and qwq's live one


def test_render_openmetrics_when_asked(store: LocalStore) -> None:
    fill(store)
    # `jobs_total` as a counter family `jobs` would clash with the gauge `jobs`: it stays unknown
    store.write(samples(datetime.now(UTC), [("jobs_total", {}, 3), ("jobs", {}, 1)]))
    body, content_type = render(store, "application/openmetrics-text; version=1.0.0")
    assert content_type.startswith("application/openmetrics-text; version=1.0.0")
    assert body.endswith(b"# EOF\n")
    parsed = {f.name: f for f in parse_openmetrics(body.decode())}
    assert parsed["http_requests"].type == "counter"
    assert parsed["room_temperature_celsius"].unit == "celsius"
    assert parsed["queue_depth"].type == "unknown"
    assert (parsed["jobs"].type, parsed["jobs_total"].type) == ("gauge", "unknown")


def test_round_trip_render_then_scrape(store: LocalStore) -> None:
    fill(store)

    def metrics(handler: BaseHTTPRequestHandler) -> tuple[int, str, bytes]:
        body, content_type = render(store, handler.headers.get("Accept"))
        return 200, content_type, body

    events: list[Event] = []
    with serve(metrics) as url:
        collector = make(events, urls=[url], job="qwq")
        frame = collect(collector)
    assert events == [] and value(frame, "up") == 1
    # the stored `host` clashes with the target's and comes back as exported_host
    assert value(frame, "room_temperature_celsius", room="lab", exported_host="sensor1", host=HOST) == 21.5
    assert value(frame, "http_requests_total", code="200", exported_host="web1") == 42
    assert value(frame, "queue_depth") == 7
    assert value(frame, "process_cpu_seconds_total") >= 0
    assert frame.filter(pl.col("name") == "stale_gauge").is_empty()
    types = {info.name: info for info in collector.metrics()}
    assert types["http_requests_total"].type == "counter"
    assert types["room_temperature_celsius"].type == "gauge"
    assert types["queue_depth"].type == "untyped"
    assert types["room_temperature_celsius"].help == "Room temperature."
