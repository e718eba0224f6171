"""`qwq up` end to end: REST, /metrics, dashboard, and live reads from another process while it writes."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from qwq_core.announce import announcement_path
from qwq_core.store import LocalStore
from tests.integration.conftest import QWQ, Server, start_server

pytestmark = pytest.mark.service

HOST_METRICS = {
    "host_cpu_usage_ratio",
    "host_load1",
    "host_load5",
    "host_load15",
    "host_memory_used_bytes",
    "host_memory_total_bytes",
    "host_swap_used_bytes",
    "host_filesystem_free_bytes",
    "host_filesystem_size_bytes",
    "host_filesystem_files_free",
    "host_disk_read_bytes_total",
    "host_disk_written_bytes_total",
    "host_network_receive_bytes_total",
    "host_network_transmit_bytes_total",
    "host_network_errors_total",
    "host_processes",
    "host_open_fds",
    "host_uptime_seconds",
}


def test_query_returns_host_cpu(qwq_server: Server) -> None:
    response = qwq_server.get("/api/v1/query", params={"metric": "host_cpu_usage_ratio", "since": "1m"})
    rows = response.json()["data"]
    assert response.status_code == 200 and rows
    assert {row["cpu"] for row in rows} >= {"total", "0"}
    assert all(0 <= row["value"] <= 1 for row in rows)


def test_metrics_expose_every_host_metric_and_qwqs_own(qwq_server: Server) -> None:
    response = qwq_server.get("/metrics")
    families = {f.name: f for f in text_string_to_metric_families(response.text)}
    sample_names = {s.name for f in families.values() for s in f.samples}
    assert HOST_METRICS <= sample_names
    assert "process_cpu_seconds_total" in sample_names and "qwq_collector_duration_seconds" in sample_names
    assert families["host_disk_read_bytes"].type == "counter"  # the parser strips _total from counter families
    assert all(s.labels.get("host") for s in families["host_load1"].samples)


def test_the_dashboard_renders(qwq_server: Server) -> None:
    page = qwq_server.get("/")
    assert page.status_code == 200 and "_dash-renderer" in page.text and "<title>qwq" in page.text
    layout = qwq_server.get("/_dash-layout")
    assert layout.status_code == 200 and "cpu" in layout.text.lower()


def test_another_process_reads_live_data_through_the_server(qwq_server: Server) -> None:
    code = (
        "import qwq_core\n"
        "store = qwq_core.connect()\n"
        "frame = store.query('host_memory_used_bytes', since='5m')\n"
        "print(type(store).__name__, frame.height, frame['ts'].max())\n"
    )
    first = subprocess.run([sys.executable, "-c", code], env=qwq_server.env, capture_output=True, text=True)
    time.sleep(2.5)  # more than a flush interval
    second = subprocess.run([sys.executable, "-c", code], env=qwq_server.env, capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    kind, rows, newest = first.stdout.split(maxsplit=2)
    kind2, rows2, newest2 = second.stdout.split(maxsplit=2)
    assert kind == kind2 == "RemoteStore"
    assert int(rows) > 0 and int(rows2) > int(rows) and newest2 > newest  # live, not a snapshot


def test_status_and_cli_queries_go_through_the_server(qwq_server: Server) -> None:
    status = subprocess.run([QWQ, "status", "--format", "json"], env=qwq_server.env, capture_output=True, text=True)
    report = json.loads(status.stdout)
    assert report["running"] is True and report["url"] == qwq_server.url
    (host,) = [c for c in report["collectors"] if c["name"] == "host"]
    assert host["up"] is True and host["runs"] >= 1 and host["errors"] == 0
    query = subprocess.run(
        [QWQ, "query", 'host_cpu_usage_ratio{cpu="total",mode=""}', "--since", "1m", "--format", "json"],
        env=qwq_server.env,
        capture_output=True,
        text=True,
    )
    rows = json.loads(query.stdout)
    assert query.returncode == 0 and rows and all("mode" not in row or row["mode"] is None for row in rows)


def test_self_metrics_and_start_event_are_stored(qwq_server: Server) -> None:
    duration = qwq_server.get(
        "/api/v1/query", params={"metric": "qwq_collector_duration_seconds", "labels": "collector=host"}
    ).json()["data"]
    assert duration and all(0 < row["value"] < 1 for row in duration)
    events = qwq_server.get("/api/v1/events", params={"kind": "server.*"}).json()["data"]
    assert events[-1]["kind"] == "server.started"


def test_sigterm_stops_cleanly_and_keeps_everything(tmp_path_factory: pytest.TempPathFactory) -> None:
    server = start_server(tmp_path_factory.mktemp("stop") / "home")
    store_file = server.home / "qwq.duckdb"
    assert announcement_path(store_file).exists()
    output = server.stop(signal.SIGTERM)
    assert server.process.returncode == 0, output
    assert not announcement_path(store_file).exists()
    with LocalStore(store_file) as store:
        kinds = store.events(since="1h")["kind"].to_list()
        assert kinds[0] == "server.stopped" and "server.started" in kinds
        assert store.query("host_load1", since="1h").height >= 1


def test_a_second_qwq_up_on_the_same_store_refuses_clearly(qwq_server: Server) -> None:
    second = subprocess.run([QWQ, "up", "--port", "0"], env=qwq_server.env, capture_output=True, text=True, timeout=60)
    assert second.returncode == 1
    assert f"already running at {qwq_server.url}" in second.stderr + second.stdout
