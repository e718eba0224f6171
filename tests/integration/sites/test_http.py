"""The http collector against real HTTP servers on loopback: phases, assertions, redirects, failures."""

from __future__ import annotations

import json
import logging
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import polars as pl
import pytest

from collectors.http import PHASES, HttpCollector
from qwq_core.collector import CollectorContext
from qwq_core.model import Event
from qwq_core.store import LocalStore
from tests.integration.sites.conftest import collect, run_once
from tests.services.web import WebServer
from tests.support import free_port

pytestmark = pytest.mark.service


def check(name: str, url: str, **settings: Any) -> dict[str, Any]:
    return {"checks": [{"name": name, "url": url, **settings}]}


def test_a_healthy_site_is_up_with_every_phase_timed(web: WebServer) -> None:
    run = run_once(HttpCollector, check("home", web.url("/", host="localhost"), body_contains=["Hello"]))
    assert run.value("site_up", site="home") == 1
    assert run.value("site_status_code", site="home") == 200
    assert run.value("site_redirects", site="home") == 0
    assert run.value("site_response_size_bytes", site="home") > 50
    phases = {p: run.value("site_response_seconds", site="home", phase=p) for p in (*PHASES, "total")}
    assert phases["tls"] == 0  # plain http
    assert phases["dns"] > 0 and phases["connect"] > 0 and phases["first_byte"] > 0
    assert sum(phases[p] for p in PHASES) <= phases["total"]
    assert run.frame["url"].unique().to_list() == [f"http://localhost:{web.port}/"]
    assert not run.events  # up from the start: nothing to tell


def test_an_ip_address_needs_no_lookup(web: WebServer) -> None:
    run = run_once(HttpCollector, check("ip", web.url("/")))
    assert run.value("site_up", site="ip") == 1
    assert run.value("site_response_seconds", site="ip", phase="dns") < 0.001


def test_an_unexpected_status_is_down_with_the_response_still_recorded(web: WebServer) -> None:
    run = run_once(HttpCollector, check("api", web.url("/status/503")))
    assert run.value("site_up", site="api") == 0
    assert run.value("site_status_code", site="api") == 503
    assert run.value("site_response_seconds", site="api", phase="first_byte") > 0
    assert run.reason("api") == "status: 503 Service Unavailable, expected 200-299"
    accepted = run_once(HttpCollector, check("api", web.url("/status/503"), expected_status=["5xx", 200]))
    assert accepted.value("site_up", site="api") == 1


@pytest.mark.parametrize(
    ("path", "settings", "reason"),
    [
        ("/", {"body_contains": ["Hello", "nominal"]}, None),
        ("/", {"body_contains": ["Goodbye"]}, "body: 'Goodbye' not found"),
        ("/", {"body_not_contains": ["Traceback"]}, None),
        ("/", {"body_not_contains": ["nominal"]}, "body: 'nominal' found"),
        ("/", {"body_regex": r"<h1>Hello.*</h1>"}, None),
        ("/", {"body_regex": r"^\d+$"}, r"body: no match for /^\d+$/"),
        ("/", {"body_not_regex": r"(?i)error|exception"}, None),
        ("/", {"body_not_regex": "sys?tems"}, "body: /sys?tems/ matched"),
        ("/json", {"json_path": [{"path": "$.status", "equals": "ok"}]}, None),
        ("/json", {"json_path": [{"path": "db.up", "equals": True}, {"path": "$.items[1].name", "equals": "b"}]}, None),
        ("/json", {"json_path": [{"path": "$.db.latency", "equals": 0.5}, {"path": "$.items"}]}, None),
        (
            "/json",
            {"json_path": [{"path": "$.status", "equals": "degraded"}]},
            'json: $.status is "ok", expected "degraded"',
        ),
        ("/json", {"json_path": [{"path": "$.db.up", "equals": 1}]}, "json: $.db.up is true, expected 1"),
        ("/json", {"json_path": [{"path": "$.items[5]"}]}, "json: $.items[5] not found"),
        ("/", {"json_path": [{"path": "$.status"}]}, "json: the body is not JSON"),
    ],
)
def test_body_assertions(web: WebServer, path: str, settings: dict[str, Any], reason: str | None) -> None:
    run = run_once(HttpCollector, check("page", web.url(path), **settings))
    assert run.value("site_up", site="page") == (1 if reason is None else 0)
    assert run.value("site_status_code", site="page") == 200  # the response is recorded either way
    if reason is not None:
        assert run.reason("page") == reason


def test_keywords_are_looked_for_within_max_body_bytes_only(web: WebServer) -> None:
    run = run_once(HttpCollector, check("big", web.url("/big?bytes=100000"), max_body_bytes=1000, body_contains=["x"]))
    assert run.value("site_up", site="big") == 1
    assert run.value("site_response_size_bytes", site="big") == 1000


def test_redirects_followed_counted_or_refused(web: WebServer) -> None:
    followed = run_once(HttpCollector, check("r", web.url("/redirect/3")))
    assert followed.value("site_up", site="r") == 1
    assert followed.value("site_redirects", site="r") == 3
    kept = run_once(HttpCollector, check("r", web.url("/redirect/3"), follow_redirects=False))
    assert kept.value("site_status_code", site="r") == 302
    assert kept.reason("r") == "status: 302 Found, expected 200-299"
    expected = run_once(
        HttpCollector, check("r", web.url("/redirect/3"), follow_redirects=False, expected_status=["3xx"])
    )
    assert expected.value("site_up", site="r") == 1
    too_many = run_once(HttpCollector, check("r", web.url("/redirect/3"), max_redirects=2))
    assert too_many.value("site_up", site="r") == 0
    assert too_many.reason("r") == "redirects: more than 2"


def test_method_headers_body_and_basic_auth_are_sent_and_secrets_stay_hidden(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    options = check(
        "echo",
        "",
        method="POST",
        headers={"X-Token": "s3cret-header"},
        body='{"q": "s3cret-body"}',
        basic_auth={"username": "qwq", "password": "s3cret-password"},
    )
    with WebServer() as server:  # its own, so `received` holds this request only
        options["checks"][0]["url"] = server.url("/echo")
        run = run_once(HttpCollector, options)
    assert run.value("site_up", site="echo") == 1
    [received] = server.received
    assert received["method"] == "POST" and received["body"] == '{"q": "s3cret-body"}'
    assert received["headers"]["X-Token"] == "s3cret-header"
    assert received["headers"]["Authorization"] == "Basic cXdxOnMzY3JldC1wYXNzd29yZA=="  # qwq:s3cret-password
    validated = HttpCollector.Options.model_validate(options)
    shown = repr(validated) + validated.model_dump_json()
    logged = caplog.text + json.dumps([e.as_row() for e in run.events], default=str) + run.frame.write_csv()
    for secret in ("s3cret-header", "s3cret-body", "s3cret-password"):
        assert secret not in shown and secret not in logged


def test_a_secret_header_can_come_from_the_environment(web: WebServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QWQ_TEST_TOKEN", "from-env")
    options = check(
        "env",
        web.url("/echo"),
        headers={"X-Token": "env:QWQ_TEST_TOKEN"},
        json_path=[{"path": "$.headers.X-Token", "equals": "from-env"}],
    )
    assert run_once(HttpCollector, options).value("site_up", site="env") == 1


def test_a_slow_site_times_out_within_its_bound(web: WebServer) -> None:
    started = time.monotonic()
    run = run_once(HttpCollector, check("slow", web.url("/slow?seconds=5"), timeout=0.5))
    assert time.monotonic() - started < 2.5
    assert run.value("site_up", site="slow") == 0
    assert run.reason("slow") == "timeout: no complete response within 0.5s (in first_byte)"
    assert 0.4 < run.value("site_response_seconds", site="slow", phase="total") < 1.5


def test_unreachable_sites_say_why() -> None:
    port = free_port()
    options = {
        "defaults": {"timeout": 3},
        "checks": [
            {"name": "refused", "url": f"http://127.0.0.1:{port}/"},
            {"name": "unknown", "url": "http://no-such-host.invalid/"},
        ],
    }
    run = run_once(HttpCollector, options)
    assert run.value("site_up", site="refused") == 0 and run.value("site_up", site="unknown") == 0
    assert run.reason("refused") == "connect: connection refused"
    unknown = run.reason("unknown")  # offline CI: the system resolver may time out instead of failing fast
    assert unknown.startswith("dns: cannot resolve no-such-host.invalid") or unknown.endswith("(in dns)")


def test_down_then_up_again_with_one_event_each(tmp_path: Any) -> None:
    port = free_port()
    events: list[Event] = []
    options = HttpCollector.Options.model_validate(check("flaky", f"http://127.0.0.1:{port}/", labels={"team": "web"}))
    collector = HttpCollector(options, CollectorContext("sites", "testhost", events.append))
    start = datetime(2030, 1, 1, tzinfo=UTC)
    collect(collector, start)
    collect(collector, start + timedelta(seconds=30))  # still down, same reason: no new event
    with WebServer(port=port):
        frame = collect(collector, start + timedelta(seconds=60))
    assert frame.filter(name="site_up")["value"].to_list() == [1.0]
    assert [e.kind for e in events] == ["target.down", "target.up"]
    down, up = events
    assert down.attrs == {
        "target": "flaky",
        "site": "flaky",
        "url": f"http://127.0.0.1:{port}/",
        "team": "web",
        "reason": "connect: connection refused",
    }
    assert up.attrs["down_seconds"] == 60


def test_checks_run_concurrently_and_each_at_its_own_interval(web: WebServer) -> None:
    options = {
        "concurrency": 10,
        "checks": [
            *({"name": f"slow{i}", "url": web.url("/slow?seconds=0.5")} for i in range(6)),
            {"name": "hourly", "url": web.url("/"), "interval": "1h"},
        ],
    }
    collector = HttpCollector(HttpCollector.Options.model_validate(options), CollectorContext("s", "h", lambda e: None))
    start = datetime(2030, 1, 1, tzinfo=UTC)
    began = time.monotonic()
    first = collect(collector, start)
    assert time.monotonic() - began < 2.5  # six half-second checks at once, not one after another
    second = collect(collector, start + timedelta(minutes=30))
    third = collect(collector, start + timedelta(hours=1))
    sites = [set(f.filter(name="site_up")["site"]) for f in (first, second, third)]
    assert "hourly" in sites[0] and "hourly" not in sites[1] and "hourly" in sites[2]
    assert len(sites[1]) == 6


def test_samples_land_in_the_store_with_their_labels(web: WebServer, store: LocalStore) -> None:
    run = run_once(HttpCollector, check("home", web.url("/"), labels={"env": "prod"}))
    store.write(run.frame.with_columns(host=pl.lit("testhost")))
    stored = store.query('site_response_seconds{site="home",phase="total"}')
    assert stored.height == 1 and stored["env"][0] == "prod"
    assert set(store.series("site_*")["name"]) == {
        "site_up",
        "site_status_code",
        "site_redirects",
        "site_response_size_bytes",
        "site_response_seconds",
    }
