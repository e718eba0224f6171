"""DNS checks against a real dnsmasq serving a test zone; TCP port checks against real listeners."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from collectors.dns import DnsCollector
from collectors.tcp import TcpCollector
from qwq_core.collector import CollectorContext
from qwq_core.model import Event
from tests.integration.sites.conftest import collect, run_once
from tests.services.dnsmasq import Dnsmasq
from tests.services.web import WebServer
from tests.support import free_port

pytestmark = pytest.mark.service


def dns_check(server: Dnsmasq, **check: Any) -> dict[str, Any]:
    return {"defaults": {"nameservers": [server.nameserver]}, "checks": [{"name": "d", **check}]}


@pytest.mark.parametrize(
    ("query", "record_type", "expect"),
    [
        ("www.qwq.test", "A", ["192.0.2.11", "192.0.2.10"]),
        ("www.qwq.test", "AAAA", ["2001:db8:0:0:0:0:0:10"]),  # compared canonically: 2001:db8::10
        ("alias.qwq.test", "CNAME", ["WWW.qwq.test"]),
        ("alias.qwq.test", "A", ["192.0.2.10", "192.0.2.11"]),  # through the CNAME
        ("qwq.test", "MX", ["10 mail.qwq.test.", "20 backup-mail.qwq.test"]),
        ("qwq.test", "TXT", ["v=spf1 -all"]),
        ("_verify.qwq.test", "TXT", ["token=abc123"]),
    ],
)
def test_answers_match_the_expected_values(dnsmasq: Dnsmasq, query: str, record_type: str, expect: list[str]) -> None:
    run = run_once(DnsCollector, dns_check(dnsmasq, query=query, type=record_type, expect=expect))
    assert run.value("dns_up", check="d") == 1, run.events
    assert run.value("dns_answers", check="d") == len(expect)
    assert 0 < run.value("dns_lookup_seconds", check="d") < 1
    labels = run.frame.filter(name="dns_up").row(0, named=True)
    assert (labels["query"], labels["type"], labels["server"]) == (query, record_type, dnsmasq.nameserver)


def test_the_tcp_transport_works_too(dnsmasq: Dnsmasq) -> None:
    run = run_once(DnsCollector, dns_check(dnsmasq, query="mail.qwq.test", expect=["192.0.2.25"], tcp=True))
    assert run.value("dns_up", check="d") == 1


@pytest.mark.parametrize(
    ("check", "reason"),
    [
        (
            {"query": "www.qwq.test", "expect": ["192.0.2.10"]},
            "mismatch: got ['192.0.2.10', '192.0.2.11'], expected ['192.0.2.10']",
        ),
        (
            {"query": "www.qwq.test", "expect": ["192.0.2.99"], "match": "contains"},
            "mismatch: missing ['192.0.2.99'] in ['192.0.2.10', '192.0.2.11']",
        ),
        ({"query": "nope.qwq.test"}, "dns: nope.qwq.test does not exist (NXDOMAIN)"),
        ({"query": "mail.qwq.test", "type": "AAAA"}, "dns: no AAAA records for mail.qwq.test"),
    ],
)
def test_wrong_or_missing_answers_are_down_with_the_reason(
    dnsmasq: Dnsmasq, check: dict[str, Any], reason: str
) -> None:
    run = run_once(DnsCollector, dns_check(dnsmasq, **check))
    assert run.value("dns_up", check="d") == 0
    assert run.reason("d") == reason
    assert run.value("dns_lookup_seconds", check="d") > 0  # the server did answer


def test_contains_accepts_extra_answers(dnsmasq: Dnsmasq) -> None:
    run = run_once(DnsCollector, dns_check(dnsmasq, query="www.qwq.test", expect=["192.0.2.10"], match="contains"))
    assert run.value("dns_up", check="d") == 1


def test_a_silent_nameserver_times_out_within_the_bound() -> None:
    started = time.monotonic()
    silent = f"127.0.0.1:{free_port()}"  # nothing listens: UDP queries go unanswered
    run = run_once(
        DnsCollector, {"checks": [{"name": "d", "query": "x.test", "nameservers": [silent], "timeout": 0.5}]}
    )
    assert time.monotonic() - started < 2
    assert run.value("dns_up", check="d") == 0
    assert run.reason("d") in (
        "timeout: no answer within 0.5s",
        "dns: no nameserver could answer (SERVFAIL, REFUSED or unreachable)",
    )


def test_a_changed_record_goes_down_and_comes_back(dnsmasq: Dnsmasq) -> None:
    events: list[Event] = []
    options = DnsCollector.Options.model_validate(dns_check(dnsmasq, query="mail.qwq.test", expect=["192.0.2.25"]))
    collector = DnsCollector(options, CollectorContext("dns", "testhost", events.append))
    start = datetime(2030, 1, 1, tzinfo=UTC)
    try:
        dnsmasq.set_hosts({"www": ["192.0.2.10", "192.0.2.11", "2001:db8::10"], "mail": ["192.0.2.26"]})
        collect(collector, start)
    finally:
        dnsmasq.set_hosts(dict(dnsmasq.zone.hosts))
    collect(collector, start + timedelta(seconds=30))
    assert [e.kind for e in events] == ["target.down", "target.up"]
    assert events[0].attrs["reason"] == "mismatch: got ['192.0.2.26'], expected ['192.0.2.25']"
    assert events[0].attrs["query"] == "mail.qwq.test"


def test_an_open_port_is_up_with_its_connect_time(web: WebServer) -> None:
    options = {
        "checks": [
            {"name": "web", "host": "localhost", "port": web.port},
            {"name": "ip", "host": "127.0.0.1", "port": web.port},
        ]
    }
    run = run_once(TcpCollector, options)
    for name in ("web", "ip"):
        assert run.value("tcp_up", check=name) == 1
        assert 0 < run.value("tcp_connect_seconds", check=name) < 1
    assert run.frame.filter(name="tcp_up", check="web")["address"][0] == f"localhost:{web.port}"


def test_closed_and_unknown_ports_are_down_with_the_reason() -> None:
    options = {
        "defaults": {"timeout": 3},
        "checks": [
            {"name": "closed", "host": "127.0.0.1", "port": free_port()},
            {"name": "unknown", "host": "no-such-host.invalid", "port": 22},
        ],
    }
    run = run_once(TcpCollector, options)
    assert run.value("tcp_up", check="closed") == 0 and run.value("tcp_up", check="unknown") == 0
    assert run.reason("closed") == "connect: connection refused"
    assert run.reason("unknown").startswith(("dns: cannot resolve no-such-host.invalid", "timeout:"))
    assert run.frame.filter(name="tcp_connect_seconds").is_empty()
