"""Website checks: an HTTP(S) request per check, its timings split by phase, assertions, the TLS chain.

Configured under ``[collectors.<name>]`` with ``type = "http"`` (see ``docs/collectors/sites.md``)::

    [[collectors.sites.checks]]
    name = "shop"
    url = "https://shop.example.com/health"
    expected_status = ["200-299"]
    body_contains = ["ok"]
    json_path = [{ path = "$.db.status", equals = "up" }]

Every run makes a fresh connection per check (no keep-alive across runs: the phases measure what a new
visitor waits for). The phases, summed over the redirects followed:

``dns``
    resolving the host name with the system resolver (0 for an IP address);
``connect``
    the TCP handshake, after resolution;
``tls``
    the TLS handshake, certificate verification included (0 for ``http://``);
``first_byte``
    from sending the request headers until the response headers arrived (upload and server time);
``body``
    reading the response body (at most ``max_body_bytes``);
``total``
    the whole check, wall time: the phases plus the client's own overhead.

A phase that did not happen is 0. For ``https://`` URLs the certificate chain is inspected on a second,
concurrent connection (:mod:`collectors.tls`). A check passes when the response arrived, its status is
expected and every body assertion holds; otherwise ``site_up`` is 0, the timings and status of a response
that did arrive are still recorded, and the ``target.down`` event's reason starts with what failed:
``dns``, ``connect``, ``tls``, ``timeout``, ``http``, ``redirects``, ``status``, ``body`` or ``json``.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import re
import ssl
import time
from collections.abc import AsyncGenerator, AsyncIterator, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any, ClassVar, Literal, cast

import certifi
import httpcore
import httpx
import polars as pl
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, FilePath, HttpUrl, PlainSerializer, field_validator

from collectors import tls
from collectors.checks import Check, CheckList, CheckRunner, ResolveError, Result, Row, describe, resolve
from qwq_core import __version__
from qwq_core.collector import CollectorContext, samples
from qwq_core.model import MetricInfo
from qwq_core.secrets import Secret

log = logging.getLogger(__name__)

PHASES = ("dns", "connect", "tls", "first_byte", "body")
USER_AGENT = f"qwq/{__version__} (website check)"
MAX_REASON = 300
METRICS: tuple[MetricInfo, ...] = (
    MetricInfo("site_up", "gauge", "", "1 if the site answered as expected (status, body, TLS), else 0."),
    MetricInfo("site_response_seconds", "gauge", "seconds", "Time per phase of the check (label phase)."),
    MetricInfo("site_status_code", "gauge", "", "HTTP status of the final response."),
    MetricInfo("site_redirects", "gauge", "", "Redirects followed to reach the final response."),
    MetricInfo("site_response_size_bytes", "gauge", "bytes", "Body bytes read (decoded, at most max_body_bytes)."),
    MetricInfo(
        "site_tls_expiry_seconds",
        "gauge",
        "seconds",
        "Seconds until the leaf (cert=leaf) or the "
        "earliest presented certificate (cert=chain) expires; negative once expired.",
    ),
    MetricInfo("site_tls_valid", "gauge", "", "1 if the TLS part (label part: all, chain, hostname, dates) is valid."),
    MetricInfo("site_tls_info", "gauge", "", "Always 1; the leaf's issuer, subject, fingerprint and the protocol."),
)


# ---- options -------------------------------------------------------------------------------------------
def parse_status_range(value: Any) -> tuple[int, int]:
    """``200``, ``"200"``, ``"200-299"`` or ``"2xx"`` as an inclusive ``(low, high)`` range of statuses."""
    if isinstance(value, tuple | list) and len(value) == 2:
        low, high = (int(v) for v in value)
    elif isinstance(value, int) and not isinstance(value, bool):
        low = high = value
    elif isinstance(value, str) and (match := re.fullmatch(r"\s*(\d{3})\s*(?:-\s*(\d{3})\s*)?", value)):
        low, high = int(match[1]), int(match[2] or match[1])
    elif isinstance(value, str) and re.fullmatch(r"\s*[1-5][xX]{2}\s*", value):
        low = int(value.strip()[0]) * 100
        high = low + 99
    else:
        raise ValueError(f'invalid status range {value!r}: use e.g. 200, "200-299" or "2xx"')
    if not 100 <= low <= high <= 599:
        raise ValueError(f"invalid status range {value!r}: statuses run from 100 to 599, low to high")
    return low, high


def format_status_range(statuses: tuple[int, int]) -> str:
    """The text of a range as :func:`parse_status_range` reads it: ``"200"`` or ``"200-299"``."""
    low, high = statuses
    return str(low) if low == high else f"{low}-{high}"


StatusRange = Annotated[
    tuple[int, int], BeforeValidator(parse_status_range), PlainSerializer(format_status_range, return_type=str)
]

JsonPart = str | int
_KEY = re.compile(r"[A-Za-z0-9_-]+")
_SEGMENT = re.compile(r'\.([A-Za-z0-9_-]+)|\[(-?\d+)\]|\[("(?:[^"\\]|\\.)*")\]')


def parse_json_path(text: str) -> tuple[JsonPart, ...]:
    """``$.a.b[0]["odd key"]`` (``$`` optional, as is the first dot) as ``("a", "b", 0, "odd key")``."""
    rest = text.strip().removeprefix("$")
    if rest and rest[0] not in ".[":
        rest = "." + rest
    parts: list[JsonPart] = []
    while rest:
        match = _SEGMENT.match(rest)
        if match is None:
            raise ValueError(f'invalid JSON path {text!r} at {rest!r}: use $.key, [index] or ["key"]')
        key, index, quoted = match.groups()
        parts.append(key if key is not None else int(index) if index is not None else json.loads(quoted))
        rest = rest[match.end() :]
    return tuple(parts)


def format_json_path(parts: Sequence[JsonPart]) -> str:
    """The canonical text of a path: ``$``, then ``.key``, ``[index]`` or ``["other key"]``."""
    text = "$"
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if _KEY.fullmatch(part) else f"[{json.dumps(part)}]"
    return text


JsonPath = Annotated[
    tuple[JsonPart, ...],
    BeforeValidator(lambda v: parse_json_path(v) if isinstance(v, str) else v),
    PlainSerializer(format_json_path, return_type=str),
]


def _regex(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    try:
        return re.compile(value)
    except re.error as exc:
        raise ValueError(f"invalid regular expression {value!r}: {exc}") from None


Regex = Annotated[re.Pattern[str], BeforeValidator(_regex), PlainSerializer(lambda p: p.pattern, return_type=str)]


class BasicAuth(BaseModel):
    """HTTP basic authentication (sent only to the URL's own origin, not across redirects elsewhere)."""

    model_config = ConfigDict(extra="forbid")

    username: str = Field(description="User name.")
    password: Secret = Field(description='Password (a secret: literal, "env:NAME" or { env = "NAME" }).')


class JsonAssertion(BaseModel):
    """A value the JSON response body must hold at ``path``."""

    model_config = ConfigDict(extra="forbid")

    path: JsonPath = Field(description='Where: $.key.other[0]["odd key"].')
    equals: Any = Field(None, description="The value expected there (same type); absent: the path must exist.")


class HttpCheck(Check):
    """One website check."""

    IDENTITY: ClassVar[frozenset[str]] = frozenset(
        {"site", "url", "phase", "cert", "part", "issuer", "subject", "fingerprint", "protocol"}
    )

    url: HttpUrl = Field(description="http:// or https:// URL to request (no user:password@; use basic_auth).")
    method: Literal["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"] = Field("GET", description="Method.")
    headers: dict[str, Secret] = Field(default_factory=dict, description="Request headers (secrets, never shown).")
    body: Secret | None = Field(None, description="Request body (a secret, never shown).")
    basic_auth: BasicAuth | None = Field(None, description="username and password for HTTP basic auth.")
    expected_status: list[StatusRange] = Field(
        default_factory=lambda: [(200, 299)], min_length=1, description='Accepted statuses: 200, "200-299", "2xx".'
    )
    body_contains: list[str] = Field(default_factory=list, description="Text the body must contain (each).")
    body_not_contains: list[str] = Field(default_factory=list, description="Text the body must not contain.")
    body_regex: Regex | None = Field(None, description="A regular expression the body must match (search).")
    body_not_regex: Regex | None = Field(None, description="A regular expression the body must not match.")
    json_path: list[JsonAssertion] = Field(default_factory=list, description="Values the JSON body must hold.")
    follow_redirects: bool = Field(True, description="Follow redirects; else a 3xx is the final response.")
    max_redirects: int = Field(10, ge=0, le=100, description="Redirects followed at most.")
    verify_tls: bool = Field(True, description="Fail the check when the certificate is not valid.")
    ca_file: FilePath | None = Field(None, description="PEM file of the CAs to trust instead of certifi's bundle.")
    inspect_tls: bool = Field(True, description="Inspect the certificate chain of https:// URLs (site_tls_*).")
    max_body_bytes: int = Field(4 * 2**20, ge=0, description="Body bytes read at most; assertions see those.")

    @field_validator("url")
    @classmethod
    def _no_credentials(cls, url: HttpUrl) -> HttpUrl:
        if url.username or url.password:
            raise ValueError("put credentials in basic_auth, not in the URL (labels and events show the URL)")
        return url

    @property
    def needs_body(self) -> bool:
        """Whether an assertion looks at the body (else it is read and counted, not kept)."""
        return bool(
            self.body_contains or self.body_not_contains or self.body_regex or self.body_not_regex or self.json_path
        )


class HttpOptions(CheckList[HttpCheck]):
    """Options of an ``http`` collector: a list of website checks."""


def url_label(url: HttpUrl) -> str:
    """The URL as a label: scheme, host, port if not the default, path; no query (it may hold tokens)."""
    default_port = {"http": 80, "https": 443}.get(url.scheme)
    port = "" if url.port in (None, default_port) else f":{url.port}"
    return f"{url.scheme}://{url.host}{port}{url.path or '/'}"


# ---- timing --------------------------------------------------------------------------------------------
_TRACED = {
    ("connect_tcp", "started"): ("connect", True),
    ("start_tls", "started"): ("tls", True),
    ("send_request_headers", "started"): ("first_byte", True),
    **{
        (name, end): (phase, False)
        for name, phase in (
            ("connect_tcp", "connect"),
            ("start_tls", "tls"),
            ("receive_response_headers", "first_byte"),
        )
        for end in ("complete", "failed")
    },
}
"""httpcore trace events → (phase, starts it?). The body is timed by the reader (it may stop early)."""


class PhaseTimer:
    """Seconds per phase of one check, fed by httpcore's ``trace`` extension and the resolving backend."""

    def __init__(self) -> None:
        self.seconds = dict.fromkeys(PHASES, 0.0)
        self.failed_in: str | None = None
        """The first phase that ended in an error (or was cancelled by the timeout)."""
        self._open: dict[str, float] = {}

    def start(self, phase: str) -> None:
        """Start (or restart) timing ``phase``."""
        self._open[phase] = time.perf_counter()

    def stop(self, phase: str, *, failed: bool = False) -> None:
        """Add the time since ``phase`` started to it."""
        started = self._open.pop(phase, None)
        if started is not None:
            self.seconds[phase] += time.perf_counter() - started
            if failed and self.failed_in is None:
                self.failed_in = phase

    async def trace(self, event: str, info: Mapping[str, Any]) -> None:
        """httpcore's trace callback: ``connection.connect_tcp.started`` and the like."""
        _, name, stage = event.rsplit(".", 2)
        phase, starts = _TRACED.get((name, stage), (None, False))
        if phase is None:
            return
        if starts:
            self.start(phase)
        else:
            self.stop(phase, failed=stage == "failed")


# ---- transport: httpx over an httpcore pool whose backend resolves names itself, timed -----------------
class _ResolvingBackend(httpcore.AsyncNetworkBackend):
    def __init__(self, timer: PhaseTimer) -> None:
        self._timer = timer
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Any = None,
    ) -> httpcore.AsyncNetworkStream:
        self._timer.start("dns")
        try:
            addresses = await resolve(host, port)
        except BaseException as exc:
            self._timer.stop("dns", failed=True)
            if isinstance(exc, ResolveError):
                raise httpcore.ConnectError(str(exc)) from exc
            raise
        self._timer.stop("dns")
        self._timer.start("connect")  # restarted: the TCP handshake alone, resolution left out
        error: httpcore.ConnectError | None = None
        for address in addresses:  # in the resolver's order, like a browser without happy eyeballs
            try:
                return await self._inner.connect_tcp(address, port, timeout, local_address, socket_options)
            except httpcore.ConnectError as exc:
                error = exc
        assert error is not None
        raise error

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


_TRANSLATED: tuple[tuple[type[Exception], type[httpx.TransportError]], ...] = (
    (httpcore.TimeoutException, httpx.TimeoutException),
    (httpcore.ConnectError, httpx.ConnectError),
    (httpcore.NetworkError, httpx.NetworkError),
    (httpcore.RemoteProtocolError, httpx.RemoteProtocolError),
    (httpcore.ProtocolError, httpx.ProtocolError),
    (httpcore.UnsupportedProtocol, httpx.UnsupportedProtocol),
)


@contextmanager
def _translated(request: httpx.Request) -> Iterator[None]:
    """httpcore's exceptions as httpx's, the original kept as the cause."""
    try:
        yield
    except Exception as exc:
        for core, translated in _TRANSLATED:
            if isinstance(exc, core):
                raise translated(str(exc) or type(exc).__name__, request=request) from exc
        raise


class _Body(httpx.AsyncByteStream):
    def __init__(self, stream: Any, request: httpx.Request) -> None:
        self._stream = stream
        self._request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _translated(self._request):
            async for chunk in self._stream:
                yield chunk

    async def aclose(self) -> None:
        await self._stream.aclose()


class TimedTransport(httpx.AsyncBaseTransport):
    """One new connection per request (no keep-alive), names resolved and timed by the check's timer."""

    def __init__(self, ssl_context: ssl.SSLContext, timer: PhaseTimer) -> None:
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context, max_keepalive_connections=0, network_backend=_ResolvingBackend(timer)
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        core = httpcore.Request(
            method=request.method,
            url=httpcore.URL(scheme=url.raw_scheme, host=url.raw_host, port=url.port, target=url.raw_path),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        with _translated(request):
            response = await self._pool.handle_async_request(core)
        return httpx.Response(
            response.status,
            headers=response.headers,
            stream=_Body(response.stream, request),
            extensions=response.extensions,
        )

    async def aclose(self) -> None:
        await self._pool.aclose()


@functools.cache
def ssl_context(verify: bool, ca_file: str | None) -> ssl.SSLContext:
    """The TLS context of requests: certifi's CAs (as httpx) or ``ca_file``'s; built once (it costs ~20 ms)."""
    if not verify:
        return httpx.create_ssl_context(verify=False)
    return ssl.create_default_context(cafile=ca_file or certifi.where())


# ---- assertions (pure) ---------------------------------------------------------------------------------
def status_problem(check: HttpCheck, status: int, phrase: str) -> str | None:
    """Why ``status`` fails the check, or None."""
    if any(low <= status <= high for low, high in check.expected_status):
        return None
    expected = ", ".join(format_status_range(r) for r in check.expected_status)
    return f"status: {status} {phrase}".rstrip() + f", expected {expected}"


def body_problem(check: HttpCheck, text: str) -> str | None:
    """Why the body ``text`` fails the check's keyword, regex and JSON assertions, or None."""
    for keyword in check.body_contains:
        if keyword not in text:
            return f"body: {keyword!r} not found"
    for keyword in check.body_not_contains:
        if keyword in text:
            return f"body: {keyword!r} found"
    if check.body_regex is not None and not check.body_regex.search(text):
        return f"body: no match for /{check.body_regex.pattern}/"
    if check.body_not_regex is not None and check.body_not_regex.search(text):
        return f"body: /{check.body_not_regex.pattern}/ matched"
    return json_problem(check.json_path, text) if check.json_path else None


def json_problem(assertions: Sequence[JsonAssertion], text: str) -> str | None:
    """Why the JSON document ``text`` fails ``assertions``, or None."""
    try:
        document = json.loads(text)
    except ValueError:
        return "json: the body is not JSON"
    for assertion in assertions:
        where = format_json_path(assertion.path)
        try:
            value = json_lookup(document, assertion.path)
        except LookupError as exc:
            missing = str(exc.args[0])
            return f"json: {where} not found" + ("" if missing == where else f" (nothing at {missing})")
        if assertion.equals is not None and not same_json(value, assertion.equals):
            return f"json: {where} is {_short(value)}, expected {_short(assertion.equals)}"
    return None


def json_lookup(document: Any, path: Sequence[JsonPart]) -> Any:
    """The value at ``path`` in ``document``; raises ``LookupError(the path up to the first missing part)``."""
    value = document
    for depth, part in enumerate(path):
        if isinstance(part, int) and isinstance(value, list) and -len(value) <= part < len(value):
            value = value[part]
        elif isinstance(part, str) and isinstance(value, dict) and part in value:
            value = value[part]
        else:
            raise LookupError(format_json_path(path[: depth + 1]))
    return value


def same_json(actual: Any, expected: Any) -> bool:
    """Equal as JSON values: ``1 == 1.0`` but ``true != 1``; lists in order, objects by key."""
    if isinstance(actual, bool) or isinstance(expected, bool):
        return type(actual) is type(expected) and actual == expected
    if isinstance(actual, list) and isinstance(expected, list):
        return len(actual) == len(expected) and all(map(same_json, actual, expected))
    if isinstance(actual, dict) and isinstance(expected, dict):
        return actual.keys() == expected.keys() and all(same_json(actual[k], expected[k]) for k in actual)
    if isinstance(actual, int | float) and isinstance(expected, int | float):
        return actual == expected
    return type(actual) is type(expected) and actual == expected


def _short(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def failure_reason(exc: BaseException, timer: PhaseTimer, check: HttpCheck) -> str:
    """The reason of a request that got no response, starting with what failed."""
    if isinstance(exc, TimeoutError | httpx.TimeoutException):
        return f"timeout: no complete response within {check.timeout:g}s (in {timer.failed_in or 'connect'})"
    if isinstance(exc, httpx.TooManyRedirects):
        return f"redirects: more than {check.max_redirects}"
    causes = list(_causes(exc))
    unresolved = next((c for c in causes if isinstance(c, ResolveError)), None)
    if unresolved is not None:
        return f"dns: {unresolved}"
    cause = causes[-1]
    if isinstance(cause, ssl.SSLCertVerificationError):
        return f"tls: {cause.verify_message}"
    if isinstance(cause, ssl.SSLError):
        return "tls: handshake failed: " + re.sub(r"\s*\(_ssl\.c:\d+\)$", "", cause.strerror or describe(cause))
    if not isinstance(exc, httpx.ConnectError):
        return f"http: {describe(exc)}"  # connected, then the exchange failed: reset, malformed response...
    if isinstance(cause, ConnectionRefusedError):
        return "connect: connection refused"
    return f"connect: {cause.strerror if isinstance(cause, OSError) and cause.strerror else describe(cause)}"


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and what it was raised from or while handling, outermost first.

    The context is followed even when suppressed: httpcore's pool re-raises ``from None``, hiding the cause.
    """
    current: BaseException | None = exc
    while current is not None:
        yield current
        current = current.__cause__ or current.__context__


# ---- the collector -------------------------------------------------------------------------------------
@dataclass
class Fetched:
    """The final response of a check."""

    status: int
    phrase: str
    redirects: int
    size: int
    body: bytes | None
    encoding: str


class HttpCollector:
    """Runs website checks concurrently; see the module docstring."""

    default_interval = timedelta(seconds=30)
    Options = HttpOptions

    def __init__(self, options: HttpOptions, context: CollectorContext) -> None:
        self.options = options
        self.context = context
        self.runner = CheckRunner(
            context, options.checks, concurrency=options.concurrency, up_metric="site_up", identity=self._identity
        )

    @staticmethod
    def _identity(check: HttpCheck) -> dict[str, str]:
        return {"site": check.name, "url": url_label(check.url)}

    async def collect(self, now: datetime) -> pl.DataFrame:
        """Check every due site at once; a failing site is ``site_up=0`` plus an event, never an exception."""
        rows = await self.runner.run(now, functools.partial(self._probe, now=now))
        return await asyncio.to_thread(samples, now, rows)

    async def _probe(self, check: HttpCheck, *, now: datetime) -> Result:
        timer = PhaseTimer()
        started = time.perf_counter()
        inspecting = check.url.scheme == "https" and check.inspect_tls
        fetched, inspected = await asyncio.gather(
            _bounded(self._fetch(check, timer), check.timeout),
            _bounded(_inspect(check, now), check.timeout) if inspecting else asyncio.sleep(0),
        )
        total = time.perf_counter() - started
        labels = self.runner.labels(check)
        rows: list[Row] = [
            ("site_response_seconds", {**labels, "phase": p}, s) for p, s in (*timer.seconds.items(), ("total", total))
        ]
        assessment = inspected if isinstance(inspected, tls.Assessment) else None
        if isinstance(inspected, Exception):
            log.debug("inspecting the TLS chain of %s failed: %s", check.name, describe(inspected))
        if assessment is not None:
            rows += _tls_rows(labels, assessment)
        if isinstance(fetched, Fetched):
            rows += _response_rows(labels, fetched)
            reason = await _response_problem(check, fetched)
        else:
            reason = failure_reason(fetched, timer, check)
            if reason.startswith("tls:") and assessment is not None and assessment.problems:
                reason = "tls: " + "; ".join(assessment.problems)
        rows.append(("site_up", labels, 0.0 if reason else 1.0))
        return Result(reason[:MAX_REASON] if reason else None, rows)

    async def _fetch(self, check: HttpCheck, timer: PhaseTimer) -> Fetched:
        context = ssl_context(check.verify_tls, str(check.ca_file) if check.ca_file else None)
        auth = (
            httpx.BasicAuth(check.basic_auth.username, check.basic_auth.password.get_secret_value())
            if check.basic_auth
            else None
        )
        async with httpx.AsyncClient(
            transport=TimedTransport(context, timer),
            headers={"User-Agent": USER_AGENT},
            timeout=check.timeout,
            follow_redirects=check.follow_redirects,
            max_redirects=check.max_redirects,
            trust_env=False,
        ) as client:
            request = client.build_request(
                check.method,
                str(check.url),
                headers={k: v.get_secret_value() for k, v in check.headers.items()},
                content=check.body.get_secret_value().encode() if check.body else None,
                extensions={"trace": timer.trace},
            )
            response = await client.send(request, auth=auth, stream=True)
            timer.start("body")
            try:
                size, body = await _read(response, check.max_body_bytes, keep=check.needs_body)
            except BaseException:
                timer.stop("body", failed=True)
                raise
            finally:
                await response.aclose()
            timer.stop("body")
        return Fetched(
            response.status_code,
            response.reason_phrase,
            len(response.history),
            size,
            body,
            response.encoding or "utf-8",
        )

    def metrics(self) -> list[MetricInfo]:
        """Metadata of every metric this collector emits."""
        return list(METRICS)

    def close(self) -> None:
        """Nothing to release: clients live for one check."""


async def _bounded(work: Any, seconds: float) -> Any:
    """``await work`` within ``seconds``; an exception (the timeout too) is returned, not raised."""
    try:
        async with asyncio.timeout(seconds):
            return await work
    except Exception as exc:
        return exc


async def _inspect(check: HttpCheck, now: datetime) -> tls.Assessment:
    host, port = check.url.host or "", check.url.port or 443
    ca_file = str(check.ca_file) if check.ca_file else None
    error: OSError | None = None
    for address in await resolve(host, port):  # the first that accepts, as the request's connection does
        try:
            shown = await tls.handshake(address, port, host, ca_file=ca_file)
        except OSError as exc:
            error = exc
            continue
        return tls.assess(shown, host, now)
    assert error is not None
    raise error


async def _read(response: httpx.Response, limit: int, *, keep: bool) -> tuple[int, bytes | None]:
    """Read up to ``limit`` body bytes; return how many, and them if ``keep``."""
    size, chunks = 0, []
    stream = cast(AsyncGenerator[bytes, None], response.aiter_bytes())  # an async generator: it can be closed
    try:
        async for chunk in stream:
            chunk = chunk[: limit - size]
            size += len(chunk)
            if keep:
                chunks.append(chunk)
            if size >= limit:
                break
    finally:
        await stream.aclose()  # closed now, not by the garbage collector after the check has ended
    return size, b"".join(chunks) if keep else None


async def _response_problem(check: HttpCheck, fetched: Fetched) -> str | None:
    problem = status_problem(check, fetched.status, fetched.phrase)
    if problem is None and fetched.body is not None:  # decoding, regexes and JSON are CPU work: off the loop
        problem = await asyncio.to_thread(_body_problem, check, fetched.body, fetched.encoding)
    return problem


def _body_problem(check: HttpCheck, body: bytes, encoding: str) -> str | None:
    try:
        text = body.decode(encoding, "replace")
    except LookupError:  # a charset Python does not know
        text = body.decode("utf-8", "replace")
    return body_problem(check, text)


def _response_rows(labels: Mapping[str, str], fetched: Fetched) -> list[Row]:
    return [
        ("site_status_code", labels, float(fetched.status)),
        ("site_redirects", labels, float(fetched.redirects)),
        ("site_response_size_bytes", labels, float(fetched.size)),
    ]


def _tls_rows(labels: Mapping[str, str], assessment: tls.Assessment) -> list[Row]:
    info = {"issuer": assessment.issuer, "subject": assessment.subject, "fingerprint": assessment.fingerprint}
    return [
        ("site_tls_expiry_seconds", {**labels, "cert": "leaf"}, assessment.leaf_expiry_seconds),
        ("site_tls_expiry_seconds", {**labels, "cert": "chain"}, assessment.chain_expiry_seconds),
        ("site_tls_valid", {**labels, "part": "all"}, float(assessment.ok)),
        *(("site_tls_valid", {**labels, "part": part}, float(assessment.valid[part])) for part in tls.PARTS),
        ("site_tls_info", {**labels, **info, "protocol": assessment.protocol}, 1.0),
    ]


__all__: Sequence[str] = [
    "METRICS",
    "HttpCheck",
    "HttpCollector",
    "HttpOptions",
    "PhaseTimer",
    "body_problem",
    "format_json_path",
    "format_status_range",
    "json_lookup",
    "parse_json_path",
    "parse_status_range",
    "same_json",
    "status_problem",
    "url_label",
]
