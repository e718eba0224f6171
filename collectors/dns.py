"""DNS checks with dnspython: resolve a name, time it, compare the answers with the expected values.

Configured under ``[collectors.<name>]`` with ``type = "dns"`` (see ``docs/collectors/sites.md``)::

    [[collectors.dns.checks]]
    name = "www"
    query = "www.example.com"
    type = "A"
    expect = ["93.184.215.14"]
    nameservers = ["1.1.1.1", "[2606:4700:4700::1111]:53"]   # default: /etc/resolv.conf

Values are compared in a canonical form, so ``::1`` equals ``0:0:0:0:0:0:0:1`` and ``mail.example.com``
equals ``mail.example.com.``: addresses in their shortest form, names lower-case and absolute (ending in
a dot), MX as ``preference exchange``, SRV as ``priority weight port target``, TXT as the record's
strings joined (case kept). With ``match = "exact"`` (the default) the set of answers must equal
``expect``; with ``"contains"`` each expected value must be among them. A CNAME on the way to an A or AAAA
answer is followed. ``dns_lookup_seconds`` is the time until the resolver had a reply (answer, NXDOMAIN or
no records). A failed check's reason starts with ``dns``, ``timeout`` or ``mismatch``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import time
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, ClassVar, Literal

import dns.asyncresolver
import dns.exception
import dns.name
import dns.nameserver
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.resolver
import polars as pl
from pydantic import Field, field_validator, model_validator

from collectors.checks import Check, CheckList, CheckRunner, Result, Row, describe
from qwq_core.collector import CollectorContext, samples
from qwq_core.model import MetricInfo

RecordType = Literal["A", "AAAA", "CNAME", "MX", "NS", "TXT", "SRV", "CAA", "PTR", "SOA"]
METRICS: tuple[MetricInfo, ...] = (
    MetricInfo("dns_up", "gauge", "", "1 if the name resolved and the answers were as expected, else 0."),
    MetricInfo("dns_lookup_seconds", "gauge", "seconds", "Time until the resolver had a reply."),
    MetricInfo("dns_answers", "gauge", "", "Records in the answer (0 for NXDOMAIN or no records)."),
)
_SERVER = re.compile(r"\[(?P<v6>[^\]]+)\](?::(?P<v6port>\d+))?|(?P<v4>[^:]+)(?::(?P<v4port>\d+))?")


def parse_nameserver(text: str) -> tuple[str, int]:
    """``1.1.1.1``, ``1.1.1.1:5353``, ``::1``, ``[::1]:5353`` as ``(address, port)``; port 53 by default."""
    text = text.strip()
    if text.count(":") > 1 and not text.startswith("["):
        address, port = text, "53"  # a bare IPv6 address
    elif match := _SERVER.fullmatch(text):
        address = match["v6"] or match["v4"]
        port = match["v6port"] or match["v4port"] or "53"
    else:
        raise ValueError(f"invalid nameserver {text!r}: use an IP address, optionally with :port")
    try:
        address = str(ipaddress.ip_address(address))
    except ValueError:
        raise ValueError(f"invalid nameserver {text!r}: not an IP address") from None
    if not 1 <= int(port) <= 65535:
        raise ValueError(f"invalid nameserver {text!r}: port out of range")
    return address, int(port)


def format_nameserver(address: str, port: int) -> str:
    """The text :func:`parse_nameserver` reads back: ``1.1.1.1:53``, ``[::1]:53``."""
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def canonical(rdata: dns.rdata.Rdata) -> str:
    """A record's value in the form answers and expected values are compared in (see the module doc)."""
    if rdata.rdtype == dns.rdatatype.TXT:
        return b"".join(rdata.strings).decode("utf-8", "replace")  # type: ignore[attr-defined]
    return rdata.to_text().lower()


def canonical_text(record_type: str, text: str) -> str:
    """The canonical form of an expected value written as text; raises ``ValueError`` if it is not one."""
    if record_type == "TXT":
        return text
    try:
        rdata = dns.rdata.from_text(dns.rdataclass.IN, record_type, text, origin=dns.name.root, relativize=False)
    except (dns.exception.DNSException, ValueError) as exc:
        raise ValueError(f"{text!r} is not a valid {record_type} value: {describe(exc)}") from None
    return canonical(rdata)


class DnsCheck(Check):
    """One DNS check."""

    IDENTITY: ClassVar[frozenset[str]] = frozenset({"check", "query", "type", "server"})

    query: str = Field(min_length=1, description="The name to resolve (absolute; no search domains).")
    type: RecordType = Field("A", description="Record type: A, AAAA, CNAME, MX, NS, TXT, SRV, CAA, PTR, SOA.")
    expect: list[str] = Field(default_factory=list, description="Expected values; empty: any answer will do.")
    match: Literal["exact", "contains"] = Field("exact", description="exact: answers = expect; contains: ⊇ expect.")
    nameservers: list[str] = Field(
        default_factory=list, description="Servers to ask, IP[:port]; empty: the system's (/etc/resolv.conf)."
    )
    tcp: bool = Field(False, description="Query over TCP instead of UDP.")
    timeout: float = Field(5.0, gt=0, le=300, description="Seconds the check may take once started.")

    @field_validator("nameservers")
    @classmethod
    def _servers(cls, servers: list[str]) -> list[str]:
        return [format_nameserver(*parse_nameserver(server)) for server in servers]

    @model_validator(mode="after")
    def _canonical_expect(self) -> DnsCheck:
        self.expect = sorted({canonical_text(self.type, value) for value in self.expect})
        return self


class DnsOptions(CheckList[DnsCheck]):
    """Options of a ``dns`` collector: a list of DNS checks."""


def answer_problem(check: DnsCheck, answers: Sequence[str]) -> str | None:
    """Why ``answers`` (canonical) fail the check's expectation, or None."""
    got, expected = set(answers), set(check.expect)
    if not got:
        return f"dns: no {check.type} records for {check.query}"
    if not expected or got == expected or (check.match == "contains" and expected <= got):
        return None
    if check.match == "contains":
        return f"mismatch: missing {sorted(expected - got)} in {sorted(got)}"
    return f"mismatch: got {sorted(got)}, expected {sorted(expected)}"


def resolver_for(check: DnsCheck) -> dns.asyncresolver.Resolver:
    """A resolver asking the check's nameservers, or the system's; raises ``DNSException`` without any."""
    if not check.nameservers:
        return dns.asyncresolver.Resolver()  # reads /etc/resolv.conf
    resolver = dns.asyncresolver.Resolver(configure=False)
    resolver.nameservers = [dns.nameserver.Do53Nameserver(*parse_nameserver(s)) for s in check.nameservers]
    return resolver


class DnsCollector:
    """Runs DNS checks concurrently; see the module docstring."""

    default_interval = timedelta(seconds=30)
    Options = DnsOptions

    def __init__(self, options: DnsOptions, context: CollectorContext) -> None:
        self.options = options
        self.runner = CheckRunner(
            context, options.checks, concurrency=options.concurrency, up_metric="dns_up", identity=self._identity
        )

    @staticmethod
    def _identity(check: DnsCheck) -> dict[str, str]:
        server = ",".join(check.nameservers) or "system"
        return {"check": check.name, "query": check.query, "type": check.type, "server": server}

    async def collect(self, now: datetime) -> pl.DataFrame:
        """Resolve every due check at once; a failing one is ``dns_up=0`` plus an event."""
        rows = await self.runner.run(now, self._probe)
        return await asyncio.to_thread(samples, now, rows)

    async def _probe(self, check: DnsCheck) -> Result:
        labels = self.runner.labels(check)
        started = time.perf_counter()
        try:
            answers = await _lookup(check)
            problem = answer_problem(check, answers)
        except dns.resolver.NXDOMAIN:
            answers, problem = [], f"dns: {check.query} does not exist (NXDOMAIN)"
        except dns.exception.Timeout:
            return Result(f"timeout: no answer within {check.timeout:g}s", [("dns_up", labels, 0.0)])
        except dns.exception.DNSException as exc:
            return Result(f"dns: {_describe(exc)}", [("dns_up", labels, 0.0)])
        rows: list[Row] = [
            ("dns_lookup_seconds", labels, time.perf_counter() - started),
            ("dns_answers", labels, float(len(answers))),
        ]
        return Result(problem, [*rows, ("dns_up", labels, 0.0 if problem else 1.0)])

    def metrics(self) -> list[MetricInfo]:
        """Metadata of every metric this collector emits."""
        return list(METRICS)

    def close(self) -> None:
        """Nothing to release: resolvers live for one check."""


async def _lookup(check: DnsCheck) -> list[str]:
    """The canonical answers; none when the name has no records of the type."""
    try:
        answer = await resolver_for(check).resolve(
            check.query, check.type, tcp=check.tcp, lifetime=check.timeout, search=False
        )
    except dns.resolver.NoAnswer:
        return []
    return [canonical(rdata) for rdata in answer]


def _describe(exc: Any) -> str:
    if isinstance(exc, dns.resolver.NoNameservers):
        return "no nameserver could answer (SERVFAIL, REFUSED or unreachable)"
    if isinstance(exc, dns.resolver.NoResolverConfiguration):
        return "no nameservers configured (/etc/resolv.conf)"
    return describe(exc)


__all__: Sequence[str] = [
    "METRICS",
    "DnsCheck",
    "DnsCollector",
    "DnsOptions",
    "answer_problem",
    "canonical",
    "canonical_text",
    "format_nameserver",
    "parse_nameserver",
]
