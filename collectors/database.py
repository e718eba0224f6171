"""What the database collectors (postgres, mysql, redis, mongodb) share: targets, polling, health, secrets.

An engine module defines a target model (a subclass of :class:`DatabaseTarget`), its options
(``DatabaseOptions[ThatTarget]``) and a :class:`DatabaseCollector` subclass that knows how to ``connect``,
``read`` one set of rows from a connection and ``disconnect``. This module does the rest:

- every target is polled at once, each in its own daemon thread. The drivers get ``timeout`` for
  connecting and for each query; a poll still running a ``grace`` (0.5 s) past it is abandoned and the
  target is down, so a dead or hung server costs about one timeout, never the collector's run. A target whose
  poll still hangs is skipped (down) until the thread returns, and its connection is replaced.
- connections are kept between polls; a poll whose kept connection fails tries once more over a new one
  (a server restarted between polls is not down), and a failed poll drops it, so the next reconnects.
- per target: ``db_up`` (1/0, with an ``engine`` label), ``db_scrape_duration_seconds`` and the engine's
  rows, all labelled ``db`` (the target's name) and ``instance`` (``host:port``, socket path); a change
  of state is a ``target.down``/``target.up`` event through :class:`~qwq_core.targets.TargetHealth`.
- failure reasons are one line, at most 300 characters, with every secret of the target (and its
  URL-encoded form) replaced by ``***`` before they reach an event or a log. Secrets never become labels.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar
from urllib.parse import quote, unquote, urlsplit

import polars as pl
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from qwq_core.collector import CollectorContext, samples
from qwq_core.model import MetricInfo
from qwq_core.scheduler import in_daemon_thread
from qwq_core.secrets import Secret
from qwq_core.targets import TargetHealth

log = logging.getLogger(__name__)

Row = tuple[str, Mapping[str, str], float]
MAX_REASON = 300
REDACTED = "***"
CLOSE_WAIT = 0.2
"""Seconds close() waits for a poll that is just finishing before leaving the connection to it."""

COMMON_METRICS = (
    MetricInfo("db_up", "gauge", help="1 if the database answered the last poll, 0 otherwise (label engine)."),
    MetricInfo("db_scrape_duration_seconds", "gauge", "seconds", "How long the last poll of the target took."),
)


class Tls(BaseModel):
    """TLS to the server; its presence turns TLS on."""

    model_config = ConfigDict(extra="forbid")

    ca: Path | None = Field(None, description="CA bundle (PEM) to verify the server with; default the system's")
    cert: Path | None = Field(None, description="client certificate (PEM), for certificate authentication")
    key: Path | None = Field(None, description="the client certificate's private key (PEM)")
    verify: bool = Field(True, description="check the server's certificate and host name")


class DatabaseTarget(BaseModel):
    """One database server to poll. Engines add their own fields (a DSN or URL, a database, a socket)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, description="the `db` label of its series and the target of its events")
    host: str = Field("127.0.0.1", min_length=1, description="server host name or address")
    port: int = Field(ge=1, le=65535, description="server port")  # each engine sets its default
    user: str | None = Field(None, description="user name to log in as")
    password: Secret | None = Field(None, description='password: literal, "env:NAME" or { env = "NAME" }')
    tls: Tls | None = Field(None, description="TLS settings; absent means the engine's default (see below)")

    def instance(self) -> str:
        """The ``instance`` label: ``host:port`` (IPv6 in brackets) or a socket path; never credentials."""
        return host_port(self.host, self.port)

    def secrets(self) -> list[str]:
        """Every secret this target holds, and the password inside any secret that is a URL."""
        found: list[str] = []
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr) and value.get_secret_value():
                text = value.get_secret_value()
                found += [text, *_url_password(text)]
        return found


T = TypeVar("T", bound=DatabaseTarget)
C = TypeVar("C")


class DatabaseOptions(BaseModel, Generic[T]):
    """Options of a database collector: the targets and the time each may take."""

    model_config = ConfigDict(extra="forbid")

    targets: list[T] = Field(min_length=1, description="the servers to poll, each a table with a unique `name`")
    timeout: float = Field(
        5.0, gt=0, description="seconds a target has to connect and answer each poll; slower means down"
    )

    @field_validator("targets")
    @classmethod
    def _distinct_names(cls, targets: list[T]) -> list[T]:
        names = [target.name for target in targets]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"target names must be unique: {', '.join(duplicates)} given more than once")
        return targets


@dataclass
class Poll:
    """The outcome of polling one target: its rows, or why there are none."""

    rows: list[Row] = field(default_factory=list)
    seconds: float = 0.0
    error: str | None = None


@dataclass
class _Slot(Generic[T]):
    """A target and what persists between its polls: the connection and the poll in flight."""

    target: T
    labels: dict[str, str]
    secrets: list[str]
    connection: Any = None
    stale: bool = False  # timed out: the connection may be mid-answer, replace it
    running: Future[Poll] | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


class DatabaseCollector(Generic[T, C]):
    """Polls database targets concurrently; engines implement ``connect``, ``read`` and ``disconnect``."""

    engine: ClassVar[str]
    metric_infos: ClassVar[tuple[MetricInfo, ...]]
    default_interval: ClassVar[timedelta] = timedelta(seconds=15)
    grace: ClassVar[float] = 0.5
    """Seconds a poll may run past ``timeout`` before it is abandoned: a driver's own timeout error, which
    says more (connection refused, TLS, authentication), wins over a bare "timed out"."""

    def __init__(self, options: DatabaseOptions[T], context: CollectorContext) -> None:
        self.options = options
        self.context = context
        self.health = TargetHealth(context.name)
        self._closed = False
        self._slots = [
            _Slot(target, {"db": target.name, "instance": target.instance()}, target.secrets())
            for target in options.targets
        ]

    def connect(self, target: T) -> C:
        """Open a connection to ``target`` with ``self.options.timeout`` for connecting and each query."""
        raise NotImplementedError

    def read(self, connection: C, target: T) -> Iterable[Row]:
        """The engine's rows (name, engine-specific labels, value) from one round of queries."""
        raise NotImplementedError

    def disconnect(self, connection: C) -> None:
        """Close a connection; must not raise for one that is already broken."""
        raise NotImplementedError

    def explain(self, exc: Exception) -> str:
        """What went wrong, in words that stay the same while the problem does (events are sent on changes)."""
        return str(exc)

    def collect(self, now: datetime) -> pl.DataFrame:
        """Poll every target at once; one that fails or times out is ``db_up=0`` and an event, never raised."""
        deadline = time.monotonic() + self.options.timeout + self.grace
        polls = [(slot, self._start(slot, now)) for slot in self._slots]
        rows: list[Row] = []
        for slot, running in polls:
            poll = self._wait(slot, running, deadline)
            rows += self._rows(slot, poll)
            attrs = {"engine": self.engine, **slot.labels}
            event = self.health.update(slot.target.name, poll.error is None, poll.error, attrs=attrs, now=now)
            if event is not None:
                self.context.emit(event)
        return samples(now, rows)

    def metrics(self) -> list[MetricInfo]:
        """Metadata of every metric this engine produces, ``db_up`` included."""
        return list(self.metric_infos)

    def close(self) -> None:
        """Close every connection; a poll still hanging closes its own when it returns."""
        self._closed = True
        for slot in self._slots:
            if slot.lock.acquire(timeout=CLOSE_WAIT):
                try:
                    self._drop(slot)
                finally:
                    slot.lock.release()

    def _start(self, slot: _Slot[T], now: datetime) -> Future[Poll] | None:
        if slot.running is not None and not slot.running.done():
            return None  # the previous poll still hangs in its thread
        slot.running = in_daemon_thread(lambda _: self._poll(slot), now, f"{self.context.name}-{slot.target.name}")
        return slot.running

    def _wait(self, slot: _Slot[T], running: Future[Poll] | None, deadline: float) -> Poll:
        timeout = self.options.timeout
        if running is None:
            return Poll(seconds=timeout, error=f"still busy: an earlier poll has not returned after {timeout:g}s")
        try:
            return running.result(timeout=max(0.0, deadline - time.monotonic()))
        except TimeoutError:
            slot.stale = True
            return Poll(seconds=timeout, error=f"timed out after {timeout:g}s")

    def _poll(self, slot: _Slot[T]) -> Poll:
        started = time.perf_counter()
        with slot.lock:
            try:
                rows = self._read(slot)
            except Exception as exc:  # any failure of one target is that target's state, never the collector's
                self._drop(slot)
                reason = describe(exc, slot.secrets, self.explain(exc))
                log.debug("%s %s: %s", self.engine, slot.target.name, reason)
                return Poll(seconds=time.perf_counter() - started, error=reason)
            finally:
                if self._closed:
                    self._drop(slot)
        return Poll(rows, time.perf_counter() - started)

    def _read(self, slot: _Slot[T]) -> list[Row]:
        """Read over the kept connection; if that fails, once more over a new one (the server may have
        restarted since the last poll, which is no reason to call it down)."""
        if slot.stale or self._closed:
            self._drop(slot)
        if slot.connection is not None:
            try:
                return list(self.read(slot.connection, slot.target))
            except Exception as exc:
                reason = describe(exc, slot.secrets, self.explain(exc))
                log.debug("%s %s: reconnecting: %s", self.engine, slot.target.name, reason)
                self._drop(slot)
        slot.connection = self.connect(slot.target)
        return list(self.read(slot.connection, slot.target))

    def _drop(self, slot: _Slot[T]) -> None:
        connection, slot.connection, slot.stale = slot.connection, None, False
        if connection is not None:
            try:
                self.disconnect(connection)
            except Exception as exc:  # a broken connection may fail to close; it is gone either way
                log.debug("%s %s: close failed: %s", self.engine, slot.target.name, describe(exc, slot.secrets))

    def _rows(self, slot: _Slot[T], poll: Poll) -> list[Row]:
        labels = slot.labels
        rows: list[Row] = [(name, {**extra, **labels}, value) for name, extra, value in poll.rows]
        rows.append(("db_up", {"engine": self.engine, **labels}, 0.0 if poll.error else 1.0))
        rows.append(("db_scrape_duration_seconds", labels, poll.seconds))
        return rows


def describe(exc: BaseException, secrets: Sequence[str], text: str | None = None) -> str:
    """One line naming the error and saying ``text`` (default ``str(exc)``), every secret (plain and
    URL-encoded) replaced by ``***``."""
    text = " ".join((str(exc) if text is None else text).split())
    reason = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return redact(reason, secrets)[:MAX_REASON]


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every occurrence of each secret, plain or URL-encoded, replaced by ``***``."""
    forms = {form for secret in secrets if secret for form in (secret, quote(secret, safe=""), quote(secret))}
    for form in sorted(forms, key=len, reverse=True):  # longest first: a DSN before the password inside it
        text = text.replace(form, REDACTED)
    return text


def host_port(host: str, port: int | str) -> str:
    """``host:port``, with an IPv6 address in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _url_password(text: str) -> list[str]:
    try:
        password = urlsplit(text).password if "://" in text else None
    except ValueError:
        return []
    return [unquote(password)] if password else []


def ratio(part: float, whole: float) -> float | None:
    """``part / whole``, or None when there is nothing to divide (no traffic yet)."""
    return part / whole if whole > 0 else None


def optional_rows(rows: Iterable[tuple[str, Mapping[str, str], float | None]]) -> list[Row]:
    """The rows whose value is known (drops None values, e.g. a ratio with no traffic yet)."""
    return [(name, labels, float(value)) for name, labels, value in rows if value is not None]


__all__: Sequence[str] = [
    "COMMON_METRICS",
    "DatabaseCollector",
    "DatabaseOptions",
    "DatabaseTarget",
    "Poll",
    "Row",
    "Tls",
    "describe",
    "host_port",
    "optional_rows",
    "ratio",
    "redact",
]
