"""TLS checks against real HTTPS servers with certificates the tests issue: valid, soon, expired, wrong host."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from collectors import tls
from collectors.http import HttpCollector
from tests.integration.sites.conftest import INTERMEDIATE_DAYS, SOON_DAYS, VALID_DAYS, Run, run_once
from tests.services.web import WebServer

pytestmark = pytest.mark.service
DAY = 86_400


def site(server: WebServer, ca_file: Path | None, host: str = "localhost", **settings: Any) -> Run:
    options = {"checks": [{"name": "s", "url": server.url("/", host=host), **settings}]}
    if ca_file is not None:
        options["defaults"] = {"ca_file": str(ca_file)}
    return run_once(HttpCollector, options)


def validity(run: Run) -> dict[str, float]:
    return {part: run.value("site_tls_valid", site="s", part=part) for part in ("all", *tls.PARTS)}


def test_a_valid_chain_reports_leaf_and_earliest_expiry_and_issuer(https: dict[str, WebServer], ca_file: Path) -> None:
    run = site(https["valid"], ca_file)
    assert run.value("site_up", site="s") == 1
    assert validity(run) == {"all": 1, "chain": 1, "hostname": 1, "dates": 1}
    leaf = run.value("site_tls_expiry_seconds", site="s", cert="leaf")
    chain = run.value("site_tls_expiry_seconds", site="s", cert="chain")
    assert leaf == pytest.approx(VALID_DAYS * DAY, abs=600)
    assert chain == pytest.approx(INTERMEDIATE_DAYS * DAY, abs=600)  # the intermediate expires first
    info = run.frame.filter(name="site_tls_info").row(0, named=True)
    assert info["issuer"] == "CN=qwq-test-intermediate" and info["subject"] == "CN=valid"
    assert info["protocol"].startswith("TLSv1.") and len(info["fingerprint"]) == 64
    assert run.value("site_response_seconds", site="s", phase="tls") > 0


def test_an_ip_address_is_checked_against_the_ip_entries(https: dict[str, WebServer], ca_file: Path) -> None:
    run = site(https["valid"], ca_file, host="127.0.0.1")
    assert run.value("site_up", site="s") == 1
    assert validity(run)["hostname"] == 1


def test_a_certificate_expiring_soon_is_still_valid_with_its_days_left(
    https: dict[str, WebServer], ca_file: Path
) -> None:
    run = site(https["soon"], ca_file)
    assert run.value("site_up", site="s") == 1
    assert validity(run)["all"] == 1
    assert run.value("site_tls_expiry_seconds", site="s", cert="leaf") == pytest.approx(SOON_DAYS * DAY, abs=600)


def test_an_expired_certificate_is_down_with_negative_expiry(https: dict[str, WebServer], ca_file: Path) -> None:
    run = site(https["expired"], ca_file)
    assert run.value("site_up", site="s") == 0
    assert validity(run) == {"all": 0, "chain": 1, "hostname": 1, "dates": 0}
    assert run.value("site_tls_expiry_seconds", site="s", cert="leaf") == pytest.approx(-2 * DAY, abs=600)
    assert run.reason("s").startswith("tls: certificate expired on ")
    assert run.reason("s").endswith("(CN=expired)")


def test_a_certificate_for_another_host_is_down(https: dict[str, WebServer], ca_file: Path) -> None:
    run = site(https["wrong_host"], ca_file)
    assert run.value("site_up", site="s") == 0
    assert validity(run) == {"all": 0, "chain": 1, "hostname": 0, "dates": 1}
    assert run.reason("s") == "tls: hostname mismatch: localhost is not among other.test"


def test_a_certificate_without_alt_names_is_valid_for_no_host(https: dict[str, WebServer], ca_file: Path) -> None:
    run = site(https["no_san"], ca_file)
    assert validity(run)["hostname"] == 0
    assert "no subjectAltName" in run.reason("s")


def test_an_untrusted_ca_fails_the_chain(https: dict[str, WebServer]) -> None:
    run = site(https["soon"], ca_file=None)  # certifi's bundle does not know the test CA
    assert run.value("site_up", site="s") == 0
    assert validity(run) == {"all": 0, "chain": 0, "hostname": 1, "dates": 1}
    assert run.reason("s").startswith("tls: untrusted chain: unable to get local issuer certificate")


def test_without_verification_an_invalid_certificate_is_reported_but_the_site_is_up(
    https: dict[str, WebServer], ca_file: Path
) -> None:
    run = site(https["expired"], ca_file, verify_tls=False)
    assert run.value("site_up", site="s") == 1
    assert validity(run)["all"] == 0
    assert not run.events


def test_inspection_can_be_turned_off(https: dict[str, WebServer], ca_file: Path) -> None:
    run = site(https["valid"], ca_file, inspect_tls=False)
    assert run.value("site_up", site="s") == 1
    assert not run.frame.filter(run.frame["name"].str.starts_with("site_tls_")).height


def test_handshake_returns_the_presented_chain(https: dict[str, WebServer], ca_file: Path) -> None:
    shown = asyncio.run(tls.handshake("127.0.0.1", https["valid"].port, "localhost", ca_file=str(ca_file)))
    assert [tls.common_name(c) for c in shown.certificates] == ["CN=valid", "CN=qwq-test-intermediate"]
    assert shown.verify_errors == ()
    judged = tls.assess(shown, "other.test", datetime.now(UTC))
    assert judged.valid == {"chain": True, "hostname": False, "dates": True}
