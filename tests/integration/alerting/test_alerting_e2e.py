"""End to end: a real ``qwq up`` evaluates a rule, notifies a real HTTP receiver once, then resolves once."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from qwq_core.collector import samples
from qwq_core.store.remote import RemoteStore
from qwq_core.timeutil import utcnow
from tests.integration.conftest import Server, start_server
from tests.services.receivers import HttpReceiver

pytestmark = [pytest.mark.service, pytest.mark.slow]

CONFIG = """
[store]
flush_interval = "1s"

[collectors.host]
enabled = false

[alerting]
evaluation_interval = "1s"

[[alerting.rules]]
name = "ProbeHigh"
severity = "critical"
query = {{ metric = "probe_value", agg = "last", window = "5s" }}
condition = {{ kind = "above", threshold = 0.5 }}
annotations = {{ summary = "probe at {{{{ value }}}}" }}

[[alerting.receivers]]
name = "hook"
urls = ["{url}"]

[alerting.route]
receiver = "hook"
group_by = ["alertname"]
group_wait = "1s"
group_interval = "2s"
repeat_interval = "1h"
"""


@pytest.fixture
def receiver() -> Iterator[HttpReceiver]:
    with HttpReceiver() as running:
        yield running


@pytest.fixture
def server(tmp_path: Path, receiver: HttpReceiver) -> Iterator[Server]:
    running = start_server(tmp_path / "home", CONFIG.format(url=receiver.url("json")), wait_for=None)
    yield running
    running.stop()


def feed(remote: RemoteStore, value: float, seconds: float) -> None:
    """Write ``probe_value`` once every 0.5 s for ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        remote.write(samples(utcnow(), [("probe_value", {"probe": "p1"}, value)]))
        time.sleep(0.5)


def test_one_notification_over_many_cycles_then_one_resolve(server: Server, receiver: HttpReceiver) -> None:
    with RemoteStore(server.url) as remote:
        feed(remote, 1.0, 8)  # ~8 evaluation cycles with the rule true
        firing = receiver.wait_for(1)
        assert len(firing) == 1
        message = firing[0].json()
        assert message["type"] == "failure" and "ProbeHigh" in message["title"] + message["message"]
        alerts = httpx.get(server.url + "/api/v1/alerts", params={"state": "firing"}).json()["data"]
        assert [a["labels"]["alertname"] for a in alerts] == ["ProbeHigh"] and alerts[0]["received"] >= 1
        feed(remote, 0.0, 7)  # the last value drops below the threshold: resolved
        both = receiver.wait_for(2)
        time.sleep(3)  # more cycles: nothing else may arrive
        assert len(receiver.requests) == 2
        assert both[1].json()["type"] == "success"
        kinds = set(remote.events(since=utcnow() - timedelta(minutes=5), kind="alert.*")["kind"].to_list())
        assert {"alert.firing", "alert.resolved"} <= kinds
        sent = remote.events(since=utcnow() - timedelta(minutes=5), kind="notification.sent")
        assert sent.height == 2 and "127.0.0.1" not in " ".join(sent["attrs"].to_list())


def test_rules_added_over_the_api_fire_survive_a_restart_and_can_be_removed(tmp_path: Path) -> None:
    config = (
        '[store]\nflush_interval = "1s"\n[collectors.host]\nenabled = false\n[alerting]\nevaluation_interval = "1s"\n'
    )
    server = start_server(tmp_path / "home", config, wait_for=None)
    rule = {
        "name": "ProbeLow",
        "query": {"metric": "probe_value", "agg": "last", "window": "5s"},
        "condition": {"kind": "below", "threshold": 0.5},
    }
    try:
        bad = httpx.post(server.url + "/api/v1/alerts/rules", json={"name": "x"})
        assert bad.status_code == 400 and "query" in bad.json()["error"]["message"]
        assert httpx.post(server.url + "/api/v1/alerts/rules", json=rule).status_code == 201
        with RemoteStore(server.url) as remote:
            feed(remote, 0.0, 4)
        firing = httpx.get(server.url + "/api/v1/alerts", params={"state": "firing"}).json()["data"]
        assert [a["labels"]["alertname"] for a in firing] == ["ProbeLow"]
        server.stop()
        server = start_server(tmp_path / "home", config, wait_for=None)  # same home: the rule is remembered
        origins = {r["name"]: r["origin"] for r in httpx.get(server.url + "/api/v1/alerts/rules").json()["data"]}
        assert origins == {"ProbeLow": "api"}
        assert httpx.delete(server.url + "/api/v1/alerts/rules/ProbeLow").status_code == 200
        assert httpx.get(server.url + "/api/v1/alerts/rules").json()["data"] == []
        assert httpx.get(server.url + "/api/v1/alerts", params={"state": "firing"}).json()["data"] == []
    finally:
        server.stop()
