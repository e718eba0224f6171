"""The data model: Prometheus-style series, metric metadata and events.

A *series* is a metric name plus a label set. A *sample* is a (series, ts, value) triple. Frames that carry
samples have the columns ``name``, ``ts``, ``value`` and one string column per label; a null or empty label
value means the label is absent, as in Prometheus.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from qwq_core.timeutil import as_utc, utcnow

METRIC_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
SAMPLE_COLUMNS = frozenset({"name", "ts", "value"})
"""The columns of a sample frame that are not labels."""
RESERVED_COLUMNS = SAMPLE_COLUMNS | {"series_id"}
"""Names no label may have: the sample columns, and the store's own series id."""

MetricType = Literal["gauge", "counter", "untyped"]
Severity = Literal["debug", "info", "warning", "error", "critical"]


def is_valid_metric_name(name: str) -> bool:
    """True if ``name`` is a valid Prometheus metric name."""
    return bool(METRIC_NAME.match(name))


def is_valid_label_name(name: str) -> bool:
    """True if ``name`` may be a label: Prometheus syntax, not reserved by qwq or Prometheus (``__*``)."""
    return bool(LABEL_NAME.match(name)) and not name.startswith("__") and name not in RESERVED_COLUMNS


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def series_key(name: str, labels: Mapping[str, str | None]) -> str:
    """Canonical text of a series, ``name{a="1",b="2"}`` with labels sorted and absent ones dropped."""
    inner = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(labels.items()) if v)
    return f"{name}{{{inner}}}"


@dataclass(frozen=True)
class MetricInfo:
    """Metadata of one metric name: its type, base unit and help text (Prometheus ``# TYPE``/``# HELP``)."""

    name: str
    type: MetricType = "gauge"
    unit: str = ""
    help: str = ""

    @classmethod
    def infer(cls, name: str) -> MetricInfo:
        """Metadata guessed from Prometheus naming conventions when a writer declared none."""
        metric_type: MetricType = "counter" if name.endswith("_total") else "gauge"
        base = name.removesuffix("_total")
        unit = next((u for u in ("seconds", "bytes", "ratio", "celsius") if base.endswith(f"_{u}")), "")
        return cls(name, metric_type, unit)


@dataclass(frozen=True)
class Event:
    """Something that happened: a collector failure, a state change, later alerts and actions.

    ``kind`` is dotted (``collector.failed``, ``target.down``); ``source`` names who reported it;
    ``attrs`` holds structured details (JSON-serialisable).
    """

    kind: str
    message: str
    source: str = "qwq"
    severity: Severity = "info"
    attrs: Mapping[str, Any] = field(default_factory=dict)
    ts: datetime = field(default_factory=utcnow)

    def as_row(self) -> dict[str, Any]:
        """The event as a row of the events table (naive UTC time, attrs as JSON text)."""
        return {
            "ts": as_utc(self.ts).replace(tzinfo=None),
            "kind": self.kind,
            "source": self.source,
            "severity": self.severity,
            "message": self.message,
            "attrs": json.dumps(dict(self.attrs), default=str, sort_keys=True),
        }
