"""Real servers for the website, TLS, DNS and TCP checks: HTTP(S) in threads, dnsmasq, a test CA.

Certificates (issued once per session by :class:`tests.services.web.TestCA`):

=============  ===================================================================================
``valid``      localhost and 127.0.0.1, 90 days, issued by an intermediate that expires in 40 days
``soon``       localhost, expires in 5 days (root-issued)
``expired``    localhost, expired 2 days ago
``wrong_host`` other.test only
``no_san``     no subjectAltName at all (only a CN)
=============  ===================================================================================
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from qwq_core.collector import CollectorContext
from qwq_core.model import Event
from tests.services.dnsmasq import Dnsmasq, Zone
from tests.services.web import Issued, TestCA, WebServer

ZONE = Zone(
    "qwq.test",
    hosts={"www": ["192.0.2.10", "192.0.2.11", "2001:db8::10"], "mail": ["192.0.2.25"]},
    cnames={"alias": "www"},
    mx=[(10, "mail"), (20, "backup-mail")],
    txt={"": ["v=spf1 -all"], "_verify": ["token=abc123"]},
)
INTERMEDIATE_DAYS, VALID_DAYS, SOON_DAYS = 40, 90, 5


@dataclass
class Run:
    """What one collect returned: the frame and the events emitted."""

    frame: pl.DataFrame
    events: list[Event] = field(default_factory=list)

    def value(self, name: str, **labels: str) -> float:
        """The one sample of ``name`` with these labels."""
        rows = self.frame.filter(pl.col("name") == name, *(pl.col(k) == v for k, v in labels.items()))
        assert rows.height == 1, f"{name}{labels}: {rows.height} samples in\n{self.frame}"
        return float(rows["value"][0])

    def reason(self, target: str) -> str:
        """The reason of the target.down event about ``target``."""
        downs = [e for e in self.events if e.kind == "target.down" and e.attrs["target"] == target]
        assert downs, f"no target.down event for {target}: {self.events}"
        return str(downs[-1].attrs["reason"])


def collect(collector: Any, now: datetime | None = None) -> pl.DataFrame:
    """One run of an async collector, in its own event loop like ``qwq collect --once``."""
    frame: pl.DataFrame = asyncio.run(collector.collect(now or datetime.now(UTC)))
    return frame


def run_once(collector_type: Any, options: dict[str, Any]) -> Run:
    """Build a collector of ``collector_type`` from ``options`` (as in qwq.toml) and run it once."""
    events: list[Event] = []
    collector = collector_type(
        collector_type.Options.model_validate(options), CollectorContext("t", "testhost", events.append)
    )
    return Run(collect(collector), events)


@pytest.fixture(scope="session")
def ca(tmp_path_factory: pytest.TempPathFactory) -> TestCA:
    return TestCA.create(tmp_path_factory.mktemp("ca"))


@pytest.fixture(scope="session")
def certificates(ca: TestCA) -> dict[str, Issued]:
    intermediate = ca.intermediate("qwq-test-intermediate", days=INTERMEDIATE_DAYS)
    return {
        "valid": intermediate.issue("valid", ["localhost", "127.0.0.1"], days=VALID_DAYS),
        "soon": ca.issue("soon", ["localhost"], days=SOON_DAYS),
        "expired": ca.issue("expired", ["localhost"], days=-2),
        "wrong_host": ca.issue("wrong_host", ["other.test"]),
        "no_san": ca.issue("no_san", []),
    }


@pytest.fixture(scope="module")
def web() -> Iterator[WebServer]:
    """A plain HTTP server."""
    with WebServer() as server:
        yield server


@pytest.fixture(scope="module")
def https(certificates: dict[str, Issued]) -> Iterator[dict[str, WebServer]]:
    """An HTTPS server per certificate, by the certificate's name."""
    with ExitStack() as stack:
        yield {name: stack.enter_context(WebServer(cert)) for name, cert in certificates.items()}


@pytest.fixture(scope="module")
def dnsmasq(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dnsmasq]:
    if not Dnsmasq.available():
        pytest.skip("dnsmasq is not installed (Debian: dnsmasq-base)")
    with Dnsmasq(ZONE, tmp_path_factory.mktemp("dnsmasq")) as server:
        yield server


@pytest.fixture
def ca_file(ca: TestCA) -> Path:
    return ca.path
