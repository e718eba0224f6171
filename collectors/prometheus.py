"""Scrape Prometheus exporters (node_exporter, any ``/metrics`` endpoint) in text format 0.0.4.

Configured under ``[collectors.<name>]`` in ``qwq.toml``::

    [collectors.node]
    type = "prometheus"
    urls = ["http://127.0.0.1:9100/metrics"]
    labels = { env = "prod" }          # added to every series
    exclude = ["go_*", "promhttp_*"]   # shell globs over sample names

Every series gets the target labels ``job`` (the option, else the collector's name), ``instance``
(``host:port`` of the URL) and ``host`` (the URL's host name, or qwq's own host label for loopback
targets); static ``labels`` win over all three. Exporter labels that clash with these, or with qwq's column
names (``name``, ``ts``, ``value``), are kept as ``exported_<label>`` like Prometheus does without
``honor_labels``. Per target the collector adds Prometheus' synthetic series ``up``,
``scrape_duration_seconds``, ``scrape_samples_scraped`` and ``scrape_samples_post_metric_relabeling``
(what is left after ``include``/``exclude``). A target that cannot be scraped yields ``up=0`` and a
``target.down`` event (``target.up`` when it recovers); the other targets are unaffected.

Counters are stored under their ``_total`` sample names (the parser names a counter ``foo`` without the
suffix ``foo_total``, as OpenMetrics does); ``_created`` samples are dropped.
"""

from __future__ import annotations

import asyncio
import fnmatch
import functools
import ipaddress
import logging
import re
import ssl
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import httpx
import polars as pl
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from pydantic import BaseModel, ConfigDict, Field, HttpUrl, SecretStr, field_validator

from qwq_core.collector import CollectorContext, samples
from qwq_core.model import RESERVED_COLUMNS, MetricInfo, MetricType, is_valid_label_name, is_valid_metric_name
from qwq_core.targets import TargetHealth

log = logging.getLogger(__name__)

ACCEPT = "text/plain;version=0.0.4"
METRICS = (
    MetricInfo("up", "gauge", help="1 if the target was scraped and parsed, 0 otherwise."),
    MetricInfo("scrape_duration_seconds", "gauge", "seconds", "How long the scrape (fetch and parse) took."),
    MetricInfo("scrape_samples_scraped", "gauge", help="Samples the target exposed."),
    MetricInfo("scrape_samples_post_metric_relabeling", "gauge", help="Samples kept after include/exclude."),
)
_CREATED_PARENTS = frozenset({"counter", "histogram", "summary"})
_MAX_REASON = 300


class PrometheusOptions(BaseModel):
    """Options of a ``prometheus`` collector."""

    model_config = ConfigDict(extra="forbid")

    urls: list[HttpUrl] = Field(min_length=1, description="Exporter endpoints to scrape, http or https.")
    job: str | None = Field(None, min_length=1, description="The job label; default: the collector's name.")
    labels: dict[str, str] = Field(default_factory=dict, description="Static labels added to every series.")
    include: list[str] = Field(default_factory=lambda: ["*"], description="Sample-name globs to keep.")
    exclude: list[str] = Field(default_factory=list, description="Sample-name globs to drop (wins).")
    timeout: float = Field(10.0, gt=0, description="Seconds allowed per scrape.")
    headers: dict[str, SecretStr] = Field(
        default_factory=dict, description="Extra HTTP request headers (secrets: never printed)."
    )

    @field_validator("urls")
    @classmethod
    def _distinct(cls, urls: list[HttpUrl]) -> list[HttpUrl]:
        seen = [str(url) for url in urls]
        duplicates = sorted({url for url in seen if seen.count(url) > 1})
        if duplicates:
            raise ValueError(f"listed more than once: {', '.join(duplicates)}")
        return urls

    @field_validator("labels")
    @classmethod
    def _label_names(cls, labels: dict[str, str]) -> dict[str, str]:
        bad = sorted(name for name in labels if not is_valid_label_name(name))
        if bad:
            raise ValueError(f"invalid label name(s) {bad}: use [a-zA-Z_][a-zA-Z0-9_]*, not __*, name, ts, value")
        return labels


@dataclass(frozen=True)
class Target:
    """One endpoint to scrape and the labels its series get."""

    url: str
    labels: Mapping[str, str]


@dataclass
class Scrape:
    """The outcome of scraping one target: parsed families, or why not."""

    target: Target
    seconds: float
    families: list[Metric] = field(default_factory=list)
    error: str | None = None


class NameFilter:
    """Sample-name shell globs: kept if some ``include`` glob matches and no ``exclude`` glob does."""

    def __init__(self, include: Sequence[str], exclude: Sequence[str]) -> None:
        self._include = _globs(include)
        self._exclude = _globs(exclude)
        self._cache: dict[str, bool] = {}

    def __call__(self, name: str) -> bool:
        keep = self._cache.get(name)
        if keep is None:
            keep = bool(self._include.match(name)) and not self._exclude.match(name)
            self._cache[name] = keep
        return keep


def _globs(patterns: Sequence[str]) -> re.Pattern[str]:
    if not patterns:
        return re.compile(r"(?!)")  # matches nothing
    return re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in patterns))


def is_loopback(hostname: str) -> bool:
    """True for ``localhost`` (and ``*.localhost``), 127.0.0.0/8 and ::1."""
    hostname = hostname.strip("[]").lower()
    if hostname == "localhost" or hostname.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(hostname).is_loopback
    except ValueError:
        return False


def target_labels(url: HttpUrl, job: str, local_host: str, static: Mapping[str, str]) -> dict[str, str]:
    """``job``, ``instance`` and ``host`` of a target, overridden by the static labels."""
    hostname = (url.host or "").strip("[]")
    host = local_host if is_loopback(hostname) else hostname
    return {"job": job, "instance": f"{url.host}:{url.port}", "host": host, **static}


@functools.cache
def _valid_label(name: str) -> bool:
    return is_valid_label_name(name)


def series_labels(exported: Mapping[str, str], target: Mapping[str, str]) -> dict[str, str] | None:
    """An exported sample's labels plus the target's (``honor_labels: false``); None if any is invalid.

    Exported labels that clash with a target label or a reserved column become ``exported_<label>``
    (``exported_exported_<label>`` if that is taken too). Empty exported values mean absent labels.
    """
    labels = {k: v for k, v in exported.items() if v}
    clashes = [k for k in labels if k in target or k in RESERVED_COLUMNS]
    moved = {k: labels.pop(k) for k in clashes}
    labels.update(target)
    for key, value in moved.items():
        renamed = f"exported_{key}"
        while renamed in labels:
            renamed = f"exported_{renamed}"
        labels[renamed] = value
    return labels if all(_valid_label(k) for k in labels) else None


def metric_type(family_type: str, family_name: str, sample_name: str) -> MetricType:
    """qwq's type of one sample name of a Prometheus family."""
    if family_type == "counter":
        return "counter" if sample_name.endswith("_total") else "gauge"
    if family_type in ("histogram", "summary"):
        suffix = sample_name[len(family_name) :]
        return "counter" if suffix in ("_bucket", "_count", "_sum") else "gauge"
    if family_type in ("unknown", "untyped"):
        return "untyped"
    return "gauge"  # gauge, info, stateset, gaugehistogram


def metric_info(family: Metric, sample_name: str) -> MetricInfo:
    """Metadata of one sample name of ``family``.

    The unit is the family's, else guessed from the family name; ``_count`` and ``_bucket`` samples
    count observations and have none.
    """
    counts = sample_name[len(family.name) :] in ("_count", "_bucket")
    unit = "" if counts else family.unit or MetricInfo.infer(family.name).unit
    kind = metric_type(family.type, family.name, sample_name)
    return MetricInfo(sample_name, kind, unit, family.documentation)


@functools.cache
def _ssl_context() -> ssl.SSLContext:
    """One TLS context for every client: building it costs ~20 ms, a client with it ~1 ms."""
    return httpx.create_ssl_context()


class PrometheusCollector:
    """Scrapes Prometheus exporters concurrently; see the module docstring."""

    default_interval = timedelta(seconds=15)
    Options = PrometheusOptions

    def __init__(self, options: PrometheusOptions, context: CollectorContext) -> None:
        self.options = options
        self.context = context
        job = options.job or context.name
        self.targets = [Target(str(url), target_labels(url, job, context.host, options.labels)) for url in options.urls]
        self.health = TargetHealth(context.name)
        self._keep = NameFilter(options.include, options.exclude)
        self._infos: dict[str, MetricInfo] = {}

    async def collect(self, now: datetime) -> pl.DataFrame:
        """Scrape every target at once; a failing target is ``up=0`` plus an event, never an exception."""
        async with self._client() as client:
            scrapes = await asyncio.gather(*(self._scrape(client, t) for t in self.targets))
        return await asyncio.to_thread(self._frame, scrapes, now)

    def _frame(self, scrapes: list[Scrape], now: datetime) -> pl.DataFrame:
        rows: list[tuple[str, Mapping[str, str], float]] = []
        for scrape in scrapes:
            rows += self._rows(scrape)
            target = scrape.target
            event = self.health.update(target.url, scrape.error is None, scrape.error, attrs=target.labels, now=now)
            if event is not None:
                self.context.emit(event)
        return samples(now, rows)

    def _client(self) -> httpx.AsyncClient:
        # A client per collect: an AsyncClient is bound to the event loop it first ran on, and
        # `qwq collect --once` runs each collect in a fresh loop. Keep-alive still spans one collect.
        return httpx.AsyncClient(
            headers={"Accept": ACCEPT, **{k: v.get_secret_value() for k, v in self.options.headers.items()}},
            timeout=self.options.timeout,
            follow_redirects=True,
            verify=_ssl_context(),
            trust_env=False,
        )

    async def _scrape(self, client: httpx.AsyncClient, target: Target) -> Scrape:
        started = time.perf_counter()
        families: list[Metric] = []
        error: str | None = None
        try:
            async with asyncio.timeout(self.options.timeout):
                response = await client.get(target.url)
            if response.is_success:
                # Parsing is CPU work (pure Python): in a thread, not on the event loop qwq's HTTP shares.
                families = await asyncio.to_thread(_parse, response.text)
            else:
                error = f"HTTP {response.status_code} {response.reason_phrase}".strip()
        except (TimeoutError, httpx.TimeoutException):
            error = f"timed out after {self.options.timeout:g}s"
        except httpx.HTTPError as exc:
            error = _describe(exc)
        except ValueError as exc:  # how the parser rejects a body (UnicodeDecodeError too)
            error = f"unparsable response: {_describe(exc)}"[:_MAX_REASON]
        return Scrape(target, time.perf_counter() - started, families, error)

    def _rows(self, scrape: Scrape) -> list[tuple[str, Mapping[str, str], float]]:
        target = scrape.target.labels
        exposed = sum(len(family.samples) for family in scrape.families)
        rows = list(self._samples(scrape.families, target))
        if scrape.error is None:
            log.debug("scraped %s: %d samples in %.1f ms", scrape.target.url, exposed, scrape.seconds * 1e3)
        synthetic = {
            "up": 0.0 if scrape.error else 1.0,
            "scrape_duration_seconds": scrape.seconds,
            "scrape_samples_scraped": float(exposed),
            "scrape_samples_post_metric_relabeling": float(len(rows)),
        }
        return rows + [(name, target, value) for name, value in synthetic.items()]

    def _samples(
        self, families: Iterable[Metric], target: Mapping[str, str]
    ) -> Iterator[tuple[str, Mapping[str, str], float]]:
        families = list(families)
        created_parents = {f.name for f in families if f.type in _CREATED_PARENTS}
        for family in families:
            names: set[str] = set()
            for sample in family.samples:
                name = sample.name
                if not self._keep(name) or _is_created(name, created_parents):
                    continue
                labels = series_labels(sample.labels, target)
                if labels is None or not is_valid_metric_name(name):
                    continue
                names.add(name)
                yield name, labels, sample.value
            for name in names:
                self._infos[name] = metric_info(family, name)

    def metrics(self) -> list[MetricInfo]:
        """Metadata of the synthetic series and of every sample name scraped so far."""
        return [*METRICS, *(self._infos[name] for name in sorted(self._infos))]


def _parse(text: str) -> list[Metric]:
    return list(text_string_to_metric_families(text))


def _is_created(name: str, parents: set[str]) -> bool:
    return name.endswith("_created") and name[: -len("_created")] in parents


def _describe(exc: Exception) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


__all__: Sequence[str] = ["PrometheusCollector", "PrometheusOptions", "series_labels", "target_labels"]
