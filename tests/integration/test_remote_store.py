"""RemoteStore against a real uvicorn server in a thread: the Store API over HTTP answers what LocalStore does.

The server serves the ``store`` fixture's LocalStore; every read through :class:`RemoteStore` is compared
with the same call on that LocalStore (absolute times, since relative ones resolve against two clocks).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
import uvicorn
from polars.testing import assert_frame_equal

import qwq_core
from qwq_core.announce import Announcement, announcement_path
from qwq_core.errors import AuthError, QueryError, RemoteError
from qwq_core.model import Event, MetricInfo
from qwq_core.server import build_app
from qwq_core.store import LocalStore
from qwq_core.store.remote import RemoteStore
from qwq_core.timeutil import utcnow
from tests.support import free_port

TOKEN = "s3cret"


@contextmanager
def serving(store: LocalStore, token: str | None = None) -> Iterator[str]:
    """Serve ``store`` with uvicorn in a daemon thread; yields the base URL, stops the server afterwards."""
    port = free_port()
    app = build_app(store, token=token, dashboard=False)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture
def now() -> datetime:
    return utcnow().replace(microsecond=0)


@pytest.fixture
def filled(store: LocalStore, now: datetime) -> LocalStore:
    """Ten minutes of 10 s samples: two gauges, a counter with a reset, label values with quotes; events."""
    ts = [now - timedelta(seconds=10 * (60 - i)) for i in range(60)]
    frames = [
        pl.DataFrame({"name": "host_load1", "ts": ts, "value": [base + i / 100 for i in range(60)], "host": host})
        for host, base in (("a", 1.0), ("b", 2.0))
    ]
    for mountpoint in ("/", '/mnt/"odd" \\ path'):
        frames.append(
            pl.DataFrame({"name": "host_filesystem_free_bytes", "ts": ts, "value": 1e9, "mountpoint": mountpoint})
        )
    counter = [5.0 * (i if i < 30 else i - 30) for i in range(60)]
    frames.append(pl.DataFrame({"name": "http_requests_total", "ts": ts, "value": counter, "host": "a"}))
    store.write(pl.concat(frames, how="diagonal"))
    store.record(
        [
            Event("collector.failed", "host timed out", source="host", severity="error", ts=now - timedelta(minutes=3)),
            Event("target.down", "node is down", source="node", attrs={"n": 1}, ts=now - timedelta(minutes=1)),
        ]
    )
    return store


@pytest.fixture
def url(filled: LocalStore) -> Iterator[str]:
    with serving(filled) as base:
        yield base


@pytest.fixture
def remote(url: str) -> Iterator[RemoteStore]:
    with RemoteStore(url) as opened:
        yield opened


def span(now: datetime) -> dict[str, datetime]:
    return {"since": now - timedelta(minutes=15), "until": now}


# ---- reads equal the LocalStore's --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("metric", "options"),
    [
        ("host_load1", {}),
        ("host_*", {}),
        ('host_load1{host=~"a|b",host!="b"}', {}),
        ('host_filesystem_free_bytes{mountpoint="/mnt/\\"odd\\" \\\\ path"}', {}),
        ("host_load1", {"labels": {"host": "b"}}),
        ("host_load1", {"step": "1m", "agg": "avg"}),
        ("host_load1", {"step": "2m", "agg": "max"}),
        ("host_load1", {"step": "30s", "agg": "count"}),
        ("http_requests_total", {"step": "1m", "agg": "rate"}),
        ("http_requests_total", {"agg": "rate"}),
        ("no_such_metric", {}),
    ],
)
def test_query_equals_local(remote: RemoteStore, filled: LocalStore, now: datetime, metric: str, options: dict) -> None:
    expected = filled.query(metric, **span(now), **options)
    got = remote.query(metric, **span(now), **options)
    assert_frame_equal(got, expected)
    if metric.startswith("host_filesystem"):
        assert got.height == 60, "a label value with quotes and backslashes must survive the selector round trip"


def test_relative_query_resolves_against_the_client_clock(remote: RemoteStore, filled: LocalStore) -> None:
    assert remote.query("host_load1", since="1h").height == filled.query("host_load1", since="1h").height == 120


@pytest.mark.parametrize("pattern", [None, "host_*", '{host="b"}', "nothing_*"])
def test_series_equals_local(remote: RemoteStore, filled: LocalStore, pattern: str | None) -> None:
    assert_frame_equal(remote.series(pattern), filled.series(pattern))


@pytest.mark.parametrize("pattern", [None, "*_total", "host_load?"])
def test_metrics_equals_local(remote: RemoteStore, filled: LocalStore, pattern: str | None) -> None:
    assert_frame_equal(remote.metrics(pattern), filled.metrics(pattern))


def test_latest_equals_local(remote: RemoteStore, filled: LocalStore) -> None:
    assert_frame_equal(remote.latest(), filled.latest())
    assert_frame_equal(
        remote.latest("host_load1", labels={"host": "a"}), filled.latest("host_load1", labels={"host": "a"})
    )
    assert remote.latest("host_load1", max_age="5s").is_empty()  # newest sample is 10 s old
    assert remote.latest("host_load1", max_age=timedelta(minutes=1)).height == 2


def test_events_equal_local(remote: RemoteStore, filled: LocalStore, now: datetime) -> None:
    assert_frame_equal(remote.events(**span(now)), filled.events(**span(now)))
    assert_frame_equal(remote.events(kind="collector.*", **span(now)), filled.events(kind="collector.*", **span(now)))
    newest = remote.events(limit=1, **span(now))
    assert newest["kind"].to_list() == ["target.down"]


def test_events_with_a_large_limit_equal_local(remote: RemoteStore, filled: LocalStore, now: datetime) -> None:
    assert_frame_equal(remote.events(limit=200_000, **span(now)), filled.events(limit=200_000, **span(now)))


def test_sql_equals_local(remote: RemoteStore, filled: LocalStore) -> None:
    query = "SELECT name, count(*) AS n, max(value) AS top FROM points WHERE value > ? GROUP BY name ORDER BY name"
    assert_frame_equal(remote.sql(query, [1.5]), filled.sql(query, [1.5]))
    assert remote.sql(query, [1.5])["name"].to_list() == [
        "host_filesystem_free_bytes",
        "host_load1",
        "http_requests_total",
    ]
    typed = "SELECT ts, labels, value FROM points ORDER BY ts, value LIMIT 5"
    assert_frame_equal(remote.sql(typed), filled.sql(typed))


def test_stats_equal_local(remote: RemoteStore, filled: LocalStore) -> None:
    assert remote.stats() == filled.stats()


# ---- writes land in the served store -----------------------------------------------------------------


def test_write_through_the_server(remote: RemoteStore, filled: LocalStore, now: datetime) -> None:
    frame = pl.DataFrame(
        {
            "name": ["queue_length"] * 4,
            "ts": [now - timedelta(seconds=s) for s in (4, 3, 2, 1)],
            "value": [1.0, float("nan"), 3.0, None],
            "queue": ["mail", "mail", "", None],
        }
    )
    assert remote.write(frame) == 2  # NaN and null values are skipped, as LocalStore does
    stored = filled.query("queue_length", **span(now))
    assert sorted(stored.select("value", "queue").rows()) == [(1.0, "mail"), (3.0, None)]
    assert remote.series("queue_length").height == 2
    assert_frame_equal(remote.query("queue_length", **span(now)), stored)


def test_write_refuses_a_bad_frame_before_sending(remote: RemoteStore, filled: LocalStore, now: datetime) -> None:
    with pytest.raises(QueryError, match="value"):
        remote.write(pl.DataFrame({"name": ["x"], "ts": [now]}))
    with pytest.raises(QueryError, match="9lives"):
        remote.write(pl.DataFrame({"name": ["9lives"], "ts": [now], "value": [1.0]}))
    assert filled.stats()["rows"]["raw"] == 5 * 60


def test_record_and_describe_round_trip(remote: RemoteStore, filled: LocalStore) -> None:
    remote.record([Event("deploy.done", "v2 is out", source="ci", severity="warning", attrs={"version": "2"})])
    remote.record([])  # nothing to send is not an error
    got = remote.events(kind="deploy.*")
    assert got.select("kind", "source", "severity", "message", "attrs").rows() == [
        ("deploy.done", "ci", "warning", "v2 is out", '{"version": "2"}')
    ]
    assert_frame_equal(got, filled.events(kind="deploy.*"))

    remote.describe([MetricInfo("queue_wait_seconds", "gauge", "seconds", "Time a job waits")])
    remote.describe([MetricInfo("http_requests_total", "counter", "", "Requests served")])
    rows = {r["name"]: r for r in remote.metrics().iter_rows(named=True)}
    assert rows["queue_wait_seconds"] == {
        "name": "queue_wait_seconds",
        "type": "gauge",
        "unit": "seconds",
        "help": "Time a job waits",
        "series": 0,
    }
    assert rows["http_requests_total"]["help"] == "Requests served"
    assert_frame_equal(remote.metrics(), filled.metrics())


def test_record_keeps_the_event_time(remote: RemoteStore, now: datetime) -> None:
    when = now - timedelta(hours=3)
    remote.record([Event("backfill.done", "imported", ts=when)])
    got = remote.events(kind="backfill.*", since=when - timedelta(minutes=1), until=when + timedelta(minutes=1))
    assert got["ts"].to_list() == [when]


# ---- errors map to qwq's classes ---------------------------------------------------------------------


def test_server_side_query_errors_are_query_errors(remote: RemoteStore) -> None:
    with pytest.raises(QueryError, match="invalid selector"):
        remote.series("host_load1{")  # parsed by the server
    with pytest.raises(QueryError, match="read-only"):
        remote.sql("DELETE FROM samples")
    with pytest.raises(QueryError, match="invalid selector"):
        remote.query("bad{")
    with pytest.raises(QueryError, match="invalid duration"):
        remote.latest(max_age="ages")


def test_named_sql_parameters_are_refused(remote: RemoteStore) -> None:
    with pytest.raises(QueryError, match="named"):
        remote.sql("SELECT $x AS x", {"x": 1})


def test_token(filled: LocalStore) -> None:
    with serving(filled, token=TOKEN) as base:
        for token in (None, "wrong"):
            with RemoteStore(base, token=token) as remote, pytest.raises(AuthError):
                remote.series()
        with RemoteStore(base, token=TOKEN) as remote:
            assert_frame_equal(remote.series(), filled.series())
            assert remote.health()["status"] == "ok"


def test_unreachable_server_is_a_remote_error() -> None:
    with RemoteStore(f"http://127.0.0.1:{free_port()}", timeout=2) as remote, pytest.raises(RemoteError, match="reach"):
        remote.series()


def test_a_non_qwq_error_answer_is_a_remote_error_with_its_status(url: str) -> None:
    with RemoteStore(url + "/elsewhere") as remote, pytest.raises(RemoteError) as caught:
        remote.metrics()
    assert caught.value.status == 404


# ---- connect() ---------------------------------------------------------------------------------------


def dead_pid() -> int:
    """The PID of a process that has exited (and been reaped)."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_connect_url_gives_a_remote_store(url: str, filled: LocalStore) -> None:
    with qwq_core.connect(url) as opened:
        assert isinstance(opened, RemoteStore)
        assert_frame_equal(opened.series(), filled.series())


def test_connect_path_uses_the_announced_live_server(url: str, filled: LocalStore, qwq_env: Path) -> None:
    Announcement(url, os.getpid(), str(filled.path)).write(announcement_path(filled.path))
    for target in (filled.path, str(filled.path), filled.path.parent):
        with qwq_core.connect(target) as opened:
            assert isinstance(opened, RemoteStore), target
            assert opened.url == url
            assert_frame_equal(opened.series(), filled.series())


def test_connect_path_ignores_an_announcement_of_a_dead_process(url: str, tmp_path: Path, qwq_env: Path) -> None:
    path = tmp_path / "other" / "qwq.duckdb"
    with LocalStore(path):
        pass
    Announcement(url, dead_pid(), str(path)).write(announcement_path(path))
    with qwq_core.connect(path) as opened:
        assert isinstance(opened, LocalStore)
        assert opened.path == path


def test_connect_path_ignores_a_live_pid_whose_server_does_not_answer(tmp_path: Path, qwq_env: Path) -> None:
    path = tmp_path / "other" / "qwq.duckdb"
    path.parent.mkdir()
    Announcement(f"http://127.0.0.1:{free_port()}", os.getpid(), str(path)).write(announcement_path(path))
    with qwq_core.connect(path) as opened:
        assert isinstance(opened, LocalStore)


def test_connect_path_without_announcement_opens_the_file(tmp_path: Path, qwq_env: Path) -> None:
    path = tmp_path / "fresh" / "qwq.duckdb"
    with qwq_core.connect(path) as opened:
        assert isinstance(opened, LocalStore)
        assert opened.series().is_empty()
    assert path.exists()
