"""Website, DNS and TCP checks without a network: options, assertions, reasons, the runner, the docs."""

from __future__ import annotations

import asyncio
import re
import ssl
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import BaseModel, ValidationError

from collectors import dns as dns_module
from collectors import http, tcp
from collectors.checks import Check, CheckRunner, ResolveError, Result
from collectors.dns import DnsCheck, DnsCollector, answer_problem, canonical_text, parse_nameserver
from collectors.http import HttpCheck, HttpCollector, PhaseTimer, body_problem, failure_reason, status_problem
from collectors.tcp import TcpCollector, connect_problem
from collectors.tls import hostname_matches, name_matches
from qwq_core.collector import CollectorContext
from qwq_core.model import Event

SITES_DOC = (Path(__file__).resolve().parents[2] / "docs" / "collectors" / "sites.md").read_text()


def http_check(**settings: Any) -> HttpCheck:
    return HttpCheck.model_validate({"name": "c", "url": "https://example.com/", **settings})


# ---- options -------------------------------------------------------------------------------------------
def test_defaults_apply_to_every_check_and_tables_merge() -> None:
    options = HttpCollector.Options.model_validate(
        {
            "defaults": {"timeout": 3, "labels": {"team": "web", "env": "prod"}, "headers": {"A": "1"}},
            "checks": [
                {"name": "a", "url": "http://a.test/"},
                {"name": "b", "url": "http://b.test/", "timeout": 7, "labels": {"env": "dev"}, "headers": {"B": "2"}},
            ],
        }
    )
    a, b = options.checks
    assert (a.timeout, a.labels) == (3, {"team": "web", "env": "prod"})
    assert (b.timeout, b.labels) == (7, {"team": "web", "env": "dev"})
    assert {k: v.get_secret_value() for k, v in b.headers.items()} == {"A": "1", "B": "2"}


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"checks": []}, "at least 1 item"),
        (
            {"checks": [{"name": "a", "url": "http://a/"}, {"name": "a", "url": "http://b/"}]},
            "listed more than once: a",
        ),
        ({"defaults": {"nope": 1}, "checks": [{"name": "a", "url": "http://a/"}]}, "not a check option"),
        ({"defaults": {"name": "x"}, "checks": [{"name": "a", "url": "http://a/"}]}, "not a check option"),
        ({"checks": [{"name": "a", "url": "http://a/", "labels": {"site": "x"}}]}, "invalid label name"),
        ({"checks": [{"name": "a", "url": "http://u:p@a/"}]}, "put credentials in basic_auth"),
        ({"checks": [{"name": "a", "url": "ftp://a/"}]}, "URL scheme should be 'http' or 'https'"),
        ({"checks": [{"name": "a", "url": "http://a/", "expected_status": ["2xy"]}]}, "invalid status range"),
        ({"checks": [{"name": "a", "url": "http://a/", "body_regex": "("}]}, "invalid regular expression"),
        ({"checks": [{"name": "a", "url": "http://a/", "json_path": [{"path": "$..x"}]}]}, "invalid JSON path"),
        ({"checks": [{"name": "a", "url": "http://a/", "headers": {"X": "env:QWQ_NOT_SET_ANYWHERE"}}]}, "not set"),
        ({"checks": [{"name": "a", "url": "http://a/", "timeout": 0}]}, "greater than 0"),
        ({"checks": [{"name": "a", "url": "http://a/", "bogus": 1}]}, "Extra inputs are not permitted"),
    ],
)
def test_invalid_http_options_say_what_is_wrong(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(message)):
        HttpCollector.Options.model_validate(options)


@pytest.mark.parametrize(
    ("check", "message"),
    [
        ({"query": "a.test", "type": "A", "expect": ["not-an-ip"]}, "is not a valid A value"),
        ({"query": "a.test", "type": "AAAA", "expect": ["1.2.3.4"]}, "is not a valid AAAA value"),
        ({"query": "a.test", "type": "MX", "expect": ["mail.test"]}, "is not a valid MX value"),
        ({"query": "a.test", "nameservers": ["dns.google"]}, "not an IP address"),
        ({"query": "a.test", "nameservers": ["1.1.1.1:99999"]}, "port out of range"),
        ({"query": "a.test", "type": "SPF"}, "Input should be"),
    ],
)
def test_invalid_dns_options_say_what_is_wrong(check: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(message)):
        DnsCollector.Options.model_validate({"checks": [{"name": "d", **check}]})


def test_expected_dns_values_are_kept_in_canonical_form() -> None:
    check = DnsCheck(name="d", query="x.test", type="AAAA", expect=["2001:DB8:0::1", "::1"], nameservers=["::1"])
    assert check.expect == ["2001:db8::1", "::1"]
    assert check.nameservers == ["[::1]:53"]
    assert canonical_text("MX", "10 Mail.Example.com") == "10 mail.example.com."
    assert canonical_text("TXT", "Keep Case") == "Keep Case"


def test_secrets_never_show_in_reprs_or_dumps() -> None:
    check = http_check(
        headers={"Authorization": "Bearer t0ken"}, body="pa55", basic_auth={"username": "u", "password": "pw0rd"}
    )
    shown = repr(check) + check.model_dump_json() + str(check.model_dump())
    assert "t0ken" not in shown and "pa55" not in shown and "pw0rd" not in shown
    assert check.basic_auth is not None and check.basic_auth.password.get_secret_value() == "pw0rd"


def test_options_round_trip_through_their_dump() -> None:
    check = http_check(expected_status=["2xx", 301], json_path=[{"path": 'a["b c"][0]', "equals": 1}], body_regex="x+")
    dumped = check.model_dump(mode="json")
    assert dumped["expected_status"] == ["200-299", "301"]
    assert dumped["json_path"] == [{"path": '$.a["b c"][0]', "equals": 1}]
    assert dumped["body_regex"] == "x+"
    assert HttpCheck.model_validate(dumped).model_dump(mode="json") == dumped


def test_the_url_label_leaves_out_the_query_and_default_ports() -> None:
    assert http.url_label(http_check(url="https://example.com/a?token=x").url) == "https://example.com/a"
    assert http.url_label(http_check(url="http://example.com:8080").url) == "http://example.com:8080/"


# ---- assertions and reasons ----------------------------------------------------------------------------
def test_status_ranges() -> None:
    check = http_check(expected_status=["2xx", "301-302", 418])
    assert [status_problem(check, s, "") is None for s in (200, 299, 301, 302, 303, 418, 500)] == [
        True, True, True, True, False, True, False
    ]  # fmt: skip
    assert status_problem(check, 500, "Internal Server Error") == (
        "status: 500 Internal Server Error, expected 200-299, 301-302, 418"
    )


@pytest.mark.parametrize(
    ("settings", "text", "reason"),
    [
        ({"body_contains": ["a", "b"]}, "ab", None),
        ({"body_contains": ["a", "z"]}, "ab", "body: 'z' not found"),
        ({"body_not_contains": ["error"]}, "fine", None),
        ({"body_regex": r"v\d+"}, "version v12", None),
        ({"body_not_regex": "(?i)ERROR"}, "an error", "body: /(?i)ERROR/ matched"),
        ({"json_path": [{"path": "a[-1]", "equals": {"b": [1, 2.0]}}]}, '{"a": [0, {"b": [1, 2]}]}', None),
        ({"json_path": [{"path": "a", "equals": "1"}]}, '{"a": 1}', 'json: $.a is 1, expected "1"'),
        ({"json_path": [{"path": "a.b"}]}, '{"a": [1]}', "json: $.a.b not found"),
        ({"json_path": [{"path": "x.y.z"}]}, '{"x": {}}', "json: $.x.y.z not found (nothing at $.x.y)"),
        ({"json_path": [{"path": "$"}]}, "<html>", "json: the body is not JSON"),
    ],
)
def test_body_problems(settings: dict[str, Any], text: str, reason: str | None) -> None:
    assert body_problem(http_check(**settings), text) == reason


def test_json_values_compare_by_type() -> None:
    assert http.same_json(1, 1.0) and http.same_json({"a": [True]}, {"a": [True]})
    assert not http.same_json(True, 1) and not http.same_json(0, False) and not http.same_json("1", 1)
    assert not http.same_json([1, 2], [2, 1]) and not http.same_json({"a": 1}, {"a": 1, "b": 2})


def _raised_inside(outer: Exception, inner: BaseException) -> Exception:
    """``outer`` as httpcore's pool leaves it: the inner error only as (suppressed) context."""
    try:
        try:
            raise inner
        except BaseException:
            raise outer from None
    except Exception as exc:
        return exc


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (TimeoutError(), "timeout: no complete response within 10s (in connect)"),
        (httpx.TooManyRedirects("x"), "redirects: more than 10"),
        (
            _raised_inside(httpx.ConnectError("x"), ResolveError("cannot resolve a.test: no")),
            "dns: cannot resolve a.test: no",
        ),
        (
            _raised_inside(httpx.ConnectError("x"), ConnectionRefusedError(111, "Connection refused")),
            "connect: connection refused",
        ),
        (_raised_inside(httpx.ConnectError("x"), OSError(113, "No route to host")), "connect: No route to host"),
        (_raised_inside(httpx.ConnectError("x"), ssl.SSLError(1, "[SSL] bad")), "tls: handshake failed: [SSL] bad"),
        (httpx.RemoteProtocolError("Server disconnected"), "http: RemoteProtocolError: Server disconnected"),
        (_raised_inside(httpx.ReadError("reset"), ConnectionResetError(104, "reset")), "http: ReadError: reset"),
    ],
)
def test_failures_are_named_by_what_failed(error: Exception, reason: str) -> None:
    assert failure_reason(error, PhaseTimer(), http_check()) == reason


def test_dns_and_tcp_problems() -> None:
    check = DnsCheck(name="d", query="x.test", expect=["192.0.2.1", "192.0.2.2"])
    assert answer_problem(check, ["192.0.2.2", "192.0.2.1"]) is None
    assert answer_problem(check, ["192.0.2.1"]) == "mismatch: got ['192.0.2.1'], expected ['192.0.2.1', '192.0.2.2']"
    assert answer_problem(DnsCheck(name="d", query="x.test"), []) == "dns: no A records for x.test"
    assert connect_problem(TimeoutError(), 2) == "timeout: no connection within 2s"
    assert connect_problem(ResolveError("cannot resolve x: y"), 2) == "dns: cannot resolve x: y"


def test_the_phase_timer_follows_httpcore_trace_events() -> None:
    timer = PhaseTimer()

    async def replay() -> None:
        for event in (
            "connection.connect_tcp.started",
            "connection.connect_tcp.complete",
            "connection.start_tls.started",
            "connection.start_tls.complete",
            "http11.send_request_headers.started",
            "http11.send_request_headers.complete",
            "http11.receive_response_headers.started",
        ):
            await timer.trace(event, {})
            time.sleep(0.002)
        await timer.trace("http11.receive_response_headers.failed", {})

    asyncio.run(replay())
    assert timer.seconds["connect"] > 0.001 and timer.seconds["tls"] > 0.001
    assert timer.seconds["first_byte"] > 0.005  # from sending the headers until the (failed) response
    assert timer.failed_in == "first_byte" and timer.seconds["dns"] == timer.seconds["body"] == 0


# ---- the runner ----------------------------------------------------------------------------------------
class Probe:
    """A fake probe that records how many checks ran at once."""

    def __init__(self, seconds: float = 0.05, fail: frozenset[str] = frozenset()) -> None:
        self.seconds, self.fail = seconds, fail
        self.running = self.most = 0

    async def __call__(self, check: Check) -> Result:
        self.running += 1
        self.most = max(self.most, self.running)
        try:
            if check.name == "hangs":
                await asyncio.sleep(3600)
            if check.name == "buggy":
                raise KeyError("oops")
            await asyncio.sleep(self.seconds)
        finally:
            self.running -= 1
        reason = "broken: on purpose" if check.name in self.fail else None
        return Result(reason, [("x_up", {"check": check.name}, 0.0 if reason else 1.0)])


def runner(checks: list[Check], events: list[Event], concurrency: int = 100) -> CheckRunner[Check]:
    context = CollectorContext("t", "h", events.append)
    return CheckRunner(context, checks, concurrency=concurrency, up_metric="x_up", identity=lambda c: {"check": c.name})


def test_the_runner_bounds_concurrency() -> None:
    probe = Probe()
    checks = [Check(name=f"c{i}") for i in range(10)]
    rows = asyncio.run(runner(checks, [], concurrency=3).run(datetime.now(UTC), probe))
    assert probe.most == 3 and len(rows) == 10


def test_a_hung_or_buggy_check_is_down_and_the_others_still_report() -> None:
    events: list[Event] = []
    checks = [Check(name="hangs", timeout=0.1), Check(name="buggy"), Check(name="fine"), Check(name="broken")]
    started = time.monotonic()
    rows = asyncio.run(runner(checks, events).run(datetime.now(UTC), Probe(fail=frozenset({"broken"}))))
    assert time.monotonic() - started < 2  # the hung probe was cut at timeout + grace
    assert {labels["check"]: value for _, labels, value in rows} == {"hangs": 0, "buggy": 0, "fine": 1, "broken": 0}
    reasons = {e.attrs["target"]: e.attrs["reason"] for e in events}
    assert reasons == {
        "hangs": "timeout: no result within 0.1s",
        "buggy": "error: KeyError: 'oops'",
        "broken": "broken: on purpose",
    }


def test_a_check_with_its_own_interval_runs_when_it_is_due() -> None:
    checks = [Check(name="every"), Check(name="slow", interval=timedelta(minutes=1))]
    run = runner(checks, [])
    start = datetime(2030, 1, 1, tzinfo=UTC)
    for seconds in (0, 30, 60, 90, 120):
        due_now = [c.name for c in run.due(start + timedelta(seconds=seconds))]
        asyncio.run(run.run(start + timedelta(seconds=seconds), Probe(seconds=0)))
        assert due_now == (["every", "slow"] if seconds % 60 == 0 else ["every"])


def test_collectors_emit_only_the_metrics_they_declare() -> None:
    declared = {info.name for m in (http, dns_module, tcp) for info in m.METRICS}
    assert {
        "site_up",
        "site_response_seconds",
        "site_status_code",
        "site_tls_expiry_seconds",
        "site_tls_valid",
    } <= declared
    assert {"dns_up", "dns_lookup_seconds", "tcp_up", "tcp_connect_seconds"} <= declared
    for collector in (HttpCollector, DnsCollector, TcpCollector):
        assert collector.default_interval == timedelta(seconds=30)


# ---- TLS names -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("pattern", "host", "matches"),
    [
        ("example.com", "EXAMPLE.com", True),
        ("example.com", "www.example.com", False),
        ("*.example.com", "www.example.com", True),
        ("*.example.com", "example.com", False),
        ("*.example.com", "a.b.example.com", False),
        ("w*.example.com", "www.example.com", False),
        ("*.com", "example.com", False),
        ("www.example.com.", "www.example.com", True),
    ],
)
def test_certificate_names(pattern: str, host: str, matches: bool) -> None:
    assert name_matches(pattern, host) is matches


def test_ip_hosts_need_ip_entries() -> None:
    assert hostname_matches("127.0.0.1", ["127.0.0.1"], []) is False
    assert hostname_matches("[::1]", [], ["0:0:0:0:0:0:0:1"]) is True


def test_nameservers_parse() -> None:
    assert parse_nameserver("1.1.1.1") == ("1.1.1.1", 53)
    assert parse_nameserver("[2001:db8::1]:5353") == ("2001:db8::1", 5353)
    assert parse_nameserver("2001:db8::1") == ("2001:db8::1", 53)


# ---- docs ----------------------------------------------------------------------------------------------
def option_names(model: type[BaseModel]) -> set[str]:
    names = set(model.model_fields)
    for field in model.model_fields.values():
        for arg in (field.annotation, *getattr(field.annotation, "__args__", ())):
            inner = getattr(arg, "__args__", (arg,))[0] if getattr(arg, "__args__", None) else arg
            if isinstance(inner, type) and issubclass(inner, BaseModel):
                names |= option_names(inner)
    return names


@pytest.mark.parametrize("collector", [HttpCollector, DnsCollector, TcpCollector])
def test_every_option_and_metric_is_documented(collector: Any) -> None:
    undocumented = sorted(o for o in option_names(collector.Options) if f"| `{o}` |" not in SITES_DOC)
    assert not undocumented, f"docs/collectors/sites.md lacks options {undocumented}"
    module = __import__(collector.__module__, fromlist=["METRICS"])
    missing = [m.name for m in module.METRICS if f"| `{m.name}` |" not in SITES_DOC]
    assert not missing, f"docs/collectors/sites.md lacks metrics {missing}"
