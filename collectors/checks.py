"""What the website, DNS and TCP collectors share: a list of named checks, run concurrently and bounded.

A collector of this family is configured with a list of ``checks`` (each a table with a ``name``, its target
and its settings), ``defaults`` for every check of the list and a ``concurrency`` bound::

    [collectors.sites]
    type = "http"
    concurrency = 50
    defaults = { timeout = 5, labels = { team = "web" } }
    [[collectors.sites.checks]]
    name = "home"
    url = "https://example.com/"

A check's own value replaces the default, except for tables (``labels``, ``headers``), which are merged key
by key. On every run, :class:`CheckRunner` starts each check that is due (a check with its own ``interval``
runs on the first collector run at least that long after its previous one), at most ``concurrency`` at a
time, each bounded by its ``timeout`` from the moment it starts. A check that fails, times out or hits a bug
yields its ``<kind>_up = 0`` and a ``target.down`` event naming why (``target.up`` when it recovers); it
never raises, so one check cannot break the others.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from qwq_core.collector import CollectorContext
from qwq_core.model import is_valid_label_name
from qwq_core.settings import Duration
from qwq_core.targets import TargetHealth

log = logging.getLogger(__name__)

Row = tuple[str, Mapping[str, str], float]
"""One sample: metric name, labels, value."""

GRACE_SECONDS = 1.0
"""How long past its own timeout a check may take before the runner gives up on it (a safety net)."""


class Check(BaseModel):
    """What every check has: a unique ``name``, labels, a timeout and an optional interval of its own."""

    model_config = ConfigDict(extra="forbid")

    IDENTITY: ClassVar[frozenset[str]] = frozenset()
    """Label names the collector sets itself; user labels may not use them."""

    name: str = Field(min_length=1, description="Names the check: its series' identifying label, its events.")
    labels: dict[str, str] = Field(default_factory=dict, description="Static labels added to the check's series.")
    timeout: float = Field(10.0, gt=0, le=300, description="Seconds the check may take once started.")
    interval: Duration | None = Field(
        None, description="Run at most this often (rounded up to the collector's interval); default every run."
    )

    @model_validator(mode="after")
    def _label_names(self) -> Check:
        bad = sorted(k for k in self.labels if not is_valid_label_name(k) or k in self.IDENTITY)
        if bad:
            reserved = ", ".join(sorted(self.IDENTITY))
            raise ValueError(f"invalid label name(s) {bad}: use [a-zA-Z_][a-zA-Z0-9_]*, not __*, {reserved}")
        return self


C = TypeVar("C", bound=Check)

_MERGED = ("labels", "headers")
"""Check fields that are tables: a check's keys are merged over the defaults' instead of replacing them."""


class CheckList(BaseModel, Generic[C]):
    """Options of a collector that runs a list of checks; subclass as ``CheckList[MyCheck]``."""

    model_config = ConfigDict(extra="forbid")

    checks: list[C] = Field(min_length=1, description="The checks to run, each a table with a unique name.")
    defaults: dict[str, Any] = Field(
        default_factory=dict, description="Values for every check that does not set its own (any check option)."
    )
    concurrency: int = Field(100, ge=1, le=10_000, description="How many checks run at the same time at most.")

    @model_validator(mode="before")
    @classmethod
    def _apply_defaults(cls, data: Any) -> Any:
        if not isinstance(data, Mapping) or not isinstance(data.get("defaults"), Mapping):
            return data
        defaults = dict(data["defaults"])
        check_type = cls.model_fields["checks"].annotation.__args__[0]  # type: ignore[union-attr]
        unknown = sorted(set(defaults) - set(check_type.model_fields) | ({"name"} & set(defaults)))
        if unknown:
            raise ValueError(f"defaults: not a check option (or one that must differ per check): {unknown}")
        checks = data.get("checks")
        if isinstance(checks, list):
            data = {**data, "checks": [_merged(defaults, c) if isinstance(c, Mapping) else c for c in checks]}
        return data

    @field_validator("checks")
    @classmethod
    def _distinct_names(cls, checks: list[C]) -> list[C]:
        names = [check.name for check in checks]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"check names must be unique; listed more than once: {', '.join(duplicates)}")
        return checks


def _merged(defaults: Mapping[str, Any], check: Mapping[str, Any]) -> dict[str, Any]:
    merged = {**defaults, **check}
    for key in _MERGED:
        if isinstance(defaults.get(key), Mapping) and isinstance(check.get(key), Mapping):
            merged[key] = {**defaults[key], **check[key]}
    return merged


@dataclass
class Result:
    """What one run of a check found: ``reason`` is None when it passed; ``rows`` are its samples."""

    reason: str | None = None
    rows: list[Row] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.reason is None


Probe = Callable[[C], Awaitable[Result]]


class CheckRunner(Generic[C]):
    """Runs a collector's checks: due ones only, ``concurrency`` at a time, each bounded; reports health.

    ``identity(check)`` gives the labels that identify a check's series (its name, under ``site`` or
    ``check``, and its target) and ``up_metric`` is the series that says whether it passed: the runner emits
    it with 0 itself for a check that overran its timeout or raised. Events carry ``target`` = the check's
    name plus ``identity`` and the check's labels as attributes.
    """

    def __init__(
        self,
        context: CollectorContext,
        checks: Sequence[C],
        *,
        concurrency: int,
        up_metric: str,
        identity: Callable[[C], Mapping[str, str]],
    ) -> None:
        self.context = context
        self.checks = list(checks)
        self.concurrency = concurrency
        self.up_metric = up_metric
        self.identity = identity
        self.health = TargetHealth(context.name)
        self._last_run: dict[str, datetime] = {}

    def labels(self, check: C) -> dict[str, str]:
        """Every label of a check's series: its own labels, then its identity (which wins)."""
        return {**check.labels, **self.identity(check)}

    def due(self, now: datetime) -> list[C]:
        """The checks to run at ``now``: all of them, except those whose own interval has not passed."""
        return [c for c in self.checks if c.interval is None or _since(self._last_run.get(c.name), now, c.interval)]

    async def run(self, now: datetime, probe: Probe[C]) -> list[Row]:
        """Run the due checks with ``probe``; emit their events; return every sample row."""
        due = self.due(now)
        slots = asyncio.Semaphore(self.concurrency)
        results = await asyncio.gather(*(self._bounded(check, probe, slots) for check in due))
        rows: list[Row] = []
        for check, result in zip(due, results, strict=True):
            self._last_run[check.name] = now
            rows += result.rows
            event = self.health.update(check.name, result.ok, result.reason, attrs=self.labels(check), now=now)
            if event is not None:
                self.context.emit(event)
        return rows

    async def _bounded(self, check: C, probe: Probe[C], slots: asyncio.Semaphore) -> Result:
        async with slots:
            try:
                async with asyncio.timeout(check.timeout + GRACE_SECONDS):
                    return await probe(check)
            except TimeoutError:
                reason = f"timeout: no result within {check.timeout:g}s"
            except Exception as exc:  # a bug in one probe must not take the other checks down
                log.exception("check %s of %s failed unexpectedly", check.name, self.context.name)
                reason = f"error: {describe(exc)}"
        return Result(reason, [(self.up_metric, self.labels(check), 0.0)])


def _since(last: datetime | None, now: datetime, interval: timedelta) -> bool:
    return last is None or now - last >= interval or now < last  # a clock step back runs it at once


def describe(exc: BaseException) -> str:
    """``Type: message`` of an exception, or its type alone when it has no message."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class ResolveError(OSError):
    """A host name did not resolve; the message says which and why."""


def is_ip(host: str) -> bool:
    """True if ``host`` is an IPv4 or IPv6 address (brackets allowed), which needs no resolution."""
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


async def resolve(host: str, port: int) -> list[str]:
    """The addresses ``host`` resolves to with the system resolver (``/etc/hosts``, DNS), in its order.

    An IP address is returned as it is, without a lookup. Raises :class:`ResolveError`.
    """
    if is_ip(host):
        return [host.strip("[]")]
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else describe(exc)
        raise ResolveError(f"cannot resolve {host}: {reason}") from exc
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    if not addresses:
        raise ResolveError(f"cannot resolve {host}: no addresses")
    return addresses


__all__: Sequence[str] = [
    "Check",
    "CheckList",
    "CheckRunner",
    "Probe",
    "ResolveError",
    "Result",
    "Row",
    "describe",
    "is_ip",
    "resolve",
]
