"""The ``/metrics`` exposition: qwq's own process metrics plus the newest value of every stored series.

prometheus-client writes the text (Prometheus 0.0.4, or OpenMetrics when the ``Accept`` header asks for
it); nothing here assembles exposition text by hand. :class:`StoreCollector` turns the store into metric
families: one per stored metric name, each series' newest sample within ``max_age`` (5 minutes by default,
so series that stopped reporting drop out as with Prometheus staleness), typed from the store's metadata.
A counter family is exported only for names ending in ``_total``; other counters, and untyped metrics,
are exported as ``unknown`` (``untyped`` in the 0.0.4 text).

qwq's own families come first and win name clashes: a stored series whose name is one of them (qwq
scraped its own ``/metrics``) is folded into that family, so no family name appears twice.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence, Set
from typing import Any

import polars as pl
from prometheus_client.exposition import choose_encoder
from prometheus_client.gc_collector import GCCollector
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
    UnknownMetricFamily,
)
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector, CollectorRegistry
from prometheus_client.samples import Sample

from qwq_core.model import SAMPLE_COLUMNS, MetricInfo
from qwq_core.store.base import Store
from qwq_core.timeutil import DurationLike

log = logging.getLogger(__name__)

DEFAULT_MAX_AGE: DurationLike = "5m"

# The sample names a family of each type carries, as suffixes of the family name.
_SAMPLE_SUFFIXES: dict[str, tuple[str, ...]] = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "unknown": ("",),
    "stateset": ("",),
    "info": ("_info",),
    "summary": ("", "_sum", "_count", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "gaugehistogram": ("_bucket", "_gsum", "_gcount"),
}


class StoreCollector:
    """A prometheus-client collector over a :class:`Store`: the newest sample of each fresh series."""

    def __init__(self, store: Store, *, max_age: DurationLike = DEFAULT_MAX_AGE) -> None:
        self.store = store
        self.max_age = max_age

    def collect(self) -> Iterator[Metric]:
        """One family per stored metric name with a sample younger than ``max_age``, sorted by name."""
        latest = self.store.latest(max_age=self.max_age)
        if latest.is_empty():
            return
        meta = {row["name"]: row for row in self.store.metrics().iter_rows(named=True)}
        present = set(latest.get_column("name").unique().to_list())
        labels = [c for c in latest.columns if c not in SAMPLE_COLUMNS]
        for (name,), group in sorted(latest.partition_by("name", as_dict=True).items()):
            family = new_family(str(name), meta.get(name), present)
            family.samples.extend(_samples(str(name), group, labels))
            yield family


def _samples(name: str, group: pl.DataFrame, labels: Sequence[str]) -> Iterator[Sample]:
    for value, *values in group.select("value", *labels).iter_rows():
        yield Sample(name, {k: v for k, v in zip(labels, values, strict=True) if v}, value)


def new_family(name: str, meta: Mapping[str, Any] | None, present: Set[str] = frozenset()) -> Metric:
    """An empty family for the stored metric ``name`` with metadata ``meta`` (a ``Store.metrics()`` row).

    A ``_total`` counter whose base name (or ``<base>_created``) is stored too stays ``unknown``: as an
    OpenMetrics counter family it would clash with that other family.
    """
    info = MetricInfo(name, meta["type"], meta["unit"] or "", meta["help"] or "") if meta else MetricInfo.infer(name)
    base = name.removesuffix("_total")
    if info.type == "counter" and base != name and base not in present and f"{base}_created" not in present:
        return CounterMetricFamily(name, info.help, unit=_unit(base, info.unit))
    if info.type == "gauge":
        return GaugeMetricFamily(name, info.help, unit=_unit(name, info.unit))
    return UnknownMetricFamily(name, info.help, unit=_unit(name, info.unit))


def _unit(family_name: str, unit: str) -> str:
    """The unit to declare: only one the family name ends with (prometheus-client would append it)."""
    return unit if unit and family_name.endswith(f"_{unit}") else ""


class Merged:
    """The families of several collectors, each name once: a clashing later family is folded in.

    Folding keeps the later family's samples that fit the earlier family (same sample name, a series
    not already there) and drops the rest.
    """

    def __init__(self, *collectors: Collector) -> None:
        self.collectors = collectors

    def collect(self) -> list[Metric]:
        """Every family of every collector, in order, with clashing families folded together."""
        owners: dict[str, Metric] = {}
        families: list[Metric] = []
        for collector in self.collectors:
            for family in collector.collect():
                names = _names(family)
                owner = next((owners[n] for n in names if n in owners), None)
                if owner is None:
                    families.append(family)
                    owners.update(dict.fromkeys(names, family))
                else:
                    _fold(family, owner)
        return families


def _names(family: Metric) -> set[str]:
    """Every name ``family`` claims: its own, its type's sample names, and the sample names it has."""
    suffixes = _SAMPLE_SUFFIXES.get(family.type, ("",))
    return {family.name, *(family.name + s for s in suffixes), *(s.name for s in family.samples)}


def _fold(family: Metric, owner: Metric) -> None:
    fits = {owner.name + s for s in _SAMPLE_SUFFIXES.get(owner.type, ("",))}
    seen = {(s.name, frozenset(s.labels.items())) for s in owner.samples}
    kept = [s for s in family.samples if s.name in fits and (s.name, frozenset(s.labels.items())) not in seen]
    owner.samples.extend(kept)
    if len(kept) < len(family.samples):
        log.debug(
            "exposition: dropped %d samples of %s %s clashing with %s %s",
            len(family.samples) - len(kept),
            family.type,
            family.name,
            owner.type,
            owner.name,
        )


def build_registry(store: Store, *, max_age: DurationLike = DEFAULT_MAX_AGE) -> CollectorRegistry:
    """A fresh registry: qwq's process, platform and GC metrics, with the store's series merged in."""
    own = CollectorRegistry()
    ProcessCollector(registry=own)
    PlatformCollector(registry=own)
    GCCollector(registry=own)
    registry = CollectorRegistry()
    registry.register(Merged(own, StoreCollector(store, max_age=max_age)))
    return registry


def render(store: Store, accept_header: str | None, *, max_age: DurationLike = DEFAULT_MAX_AGE) -> tuple[bytes, str]:
    """The exposition body and its content type, in the format ``accept_header`` negotiates."""
    encoder, content_type = choose_encoder(accept_header or "")
    return encoder(build_registry(store, max_age=max_age)), content_type


__all__: Sequence[str] = [
    "DEFAULT_MAX_AGE",
    "Merged",
    "StoreCollector",
    "build_registry",
    "new_family",
    "render",
]
