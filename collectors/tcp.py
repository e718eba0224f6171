"""TCP port checks: does ``host:port`` accept a connection, and how long does the handshake take?

Configured under ``[collectors.<name>]`` with ``type = "tcp"`` (see ``docs/collectors/sites.md``)::

    [[collectors.ports.checks]]
    name = "postgres"
    host = "db.example.com"
    port = 5432

The host name is resolved first with the system resolver (not timed); the addresses are then tried in
order until one accepts. ``tcp_connect_seconds`` is that successful TCP handshake alone. A check that
cannot connect is ``tcp_up = 0`` with a ``target.down`` event whose reason starts with ``dns``,
``connect`` or ``timeout``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import ClassVar

import polars as pl
from pydantic import Field

from collectors.checks import Check, CheckList, CheckRunner, ResolveError, Result, describe, resolve
from qwq_core.collector import CollectorContext, samples
from qwq_core.model import MetricInfo

METRICS: tuple[MetricInfo, ...] = (
    MetricInfo("tcp_up", "gauge", "", "1 if the port accepted a TCP connection, else 0."),
    MetricInfo("tcp_connect_seconds", "gauge", "seconds", "Duration of the TCP handshake (resolution excluded)."),
)


class TcpCheck(Check):
    """One TCP port check."""

    IDENTITY: ClassVar[frozenset[str]] = frozenset({"check", "address"})

    host: str = Field(min_length=1, description="Host name or IP address to connect to.")
    port: int = Field(ge=1, le=65535, description="TCP port.")
    timeout: float = Field(5.0, gt=0, le=300, description="Seconds the check may take once started.")


class TcpOptions(CheckList[TcpCheck]):
    """Options of a ``tcp`` collector: a list of port checks."""


def address_label(host: str, port: int) -> str:
    """``host:port``, with brackets around an IPv6 address."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def connect(host: str, port: int) -> float:
    """Seconds the first address of ``host`` that accepts took to connect; raises ``OSError`` otherwise."""
    error: OSError | None = None
    for address in await resolve(host, port):
        started = time.perf_counter()
        try:
            _, writer = await asyncio.open_connection(address, port)
        except OSError as exc:
            error = exc
            continue
        seconds = time.perf_counter() - started
        writer.close()
        return seconds
    assert error is not None
    raise error


def connect_problem(exc: BaseException, timeout: float) -> str:
    """The reason of a failed connection, starting with what failed."""
    if isinstance(exc, TimeoutError):
        return f"timeout: no connection within {timeout:g}s"
    if isinstance(exc, ResolveError):
        return f"dns: {exc}"
    if isinstance(exc, ConnectionRefusedError):
        return "connect: connection refused"
    if isinstance(exc, OSError) and exc.strerror:
        return f"connect: {exc.strerror}"
    return f"connect: {describe(exc)}"


class TcpCollector:
    """Checks TCP ports concurrently; see the module docstring."""

    default_interval = timedelta(seconds=30)
    Options = TcpOptions

    def __init__(self, options: TcpOptions, context: CollectorContext) -> None:
        self.options = options
        self.runner = CheckRunner(
            context, options.checks, concurrency=options.concurrency, up_metric="tcp_up", identity=self._identity
        )

    @staticmethod
    def _identity(check: TcpCheck) -> dict[str, str]:
        return {"check": check.name, "address": address_label(check.host, check.port)}

    async def collect(self, now: datetime) -> pl.DataFrame:
        """Connect to every due port at once; a closed port is ``tcp_up=0`` plus an event."""
        rows = await self.runner.run(now, self._probe)
        return await asyncio.to_thread(samples, now, rows)

    async def _probe(self, check: TcpCheck) -> Result:
        labels = self.runner.labels(check)
        try:
            async with asyncio.timeout(check.timeout):
                seconds = await connect(check.host, check.port)
        except OSError as exc:  # TimeoutError and ResolveError are OSErrors too
            return Result(connect_problem(exc, check.timeout), [("tcp_up", labels, 0.0)])
        return Result(None, [("tcp_up", labels, 1.0), ("tcp_connect_seconds", labels, seconds)])

    def metrics(self) -> list[MetricInfo]:
        """Metadata of every metric this collector emits."""
        return list(METRICS)

    def close(self) -> None:
        """Nothing to release: every connection is closed as soon as it is made."""


__all__: Sequence[str] = ["METRICS", "TcpCheck", "TcpCollector", "TcpOptions", "address_label", "connect_problem"]
