"""Alerting rules as configured: a query over a window, a condition, timing, severity and templated text.

A rule reads the series its ``query.metric`` selector matches over the last ``query.window``, reduces each
series to one value with ``query.agg``, optionally combines series into groups (``query.by``, like
PromQL's ``sum by (host) (...)``), and tests each value against its ``condition``. Each series (or group)
for which the condition holds becomes an alert named after the rule. In TOML::

    [[alerting.rules]]
    name = "HostCpuBusy"
    for = "5m"
    severity = "critical"
    query = { metric = 'host_cpu_usage_ratio{cpu="total",mode=""}', agg = "avg", window = "5m" }
    condition = { kind = "above", threshold = 0.9 }
    annotations = { summary = "CPU {{ value | humanize_percentage }} busy on {{ labels.host }}" }

``docs/alerting-rules.md`` is the reference for every field and condition kind.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from datetime import timedelta
from functools import cached_property
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from analytics.alerting.templates import compile_template
from qwq_core.errors import QueryError
from qwq_core.model import Severity, is_valid_label_name
from qwq_core.selectors import Matcher, Selector
from qwq_core.settings import Duration

__all__ = [
    "ANOMALY_METRIC",
    "Aggregation",
    "Combine",
    "Condition",
    "ConditionKind",
    "RuleQuery",
    "RuleSpec",
    "RulesSettings",
]

Aggregation = Literal["avg", "min", "max", "sum", "count", "last", "rate", "increase", "delta", "deriv"]
"""How a series' samples in the window become one value (see docs/alerting-rules.md)."""
Combine = Literal["avg", "min", "max", "sum", "count"]
"""How the values of the series in one ``by`` group become the group's value."""
ConditionKind = Literal["above", "below", "rate_of_change", "absent", "anomaly", "forecast"]
WindowAgg = Literal[Aggregation, "age"]
"""What evaluation computes per series: an :data:`Aggregation`, or ``age`` (seconds since the newest sample)."""

ANOMALY_METRIC = "anomaly_score"
"""The series the anomaly job writes, labelled ``metric=<scored metric>`` plus the scored series' labels."""

DEFAULT_COMBINE: dict[str, Combine] = {
    "avg": "avg",
    "min": "min",
    "max": "max",
    "sum": "sum",
    "count": "sum",
    "last": "avg",
    "rate": "sum",
    "increase": "sum",
    "delta": "avg",
    "deriv": "avg",
    "age": "min",
}
"""The ``combine`` used when a rule sets ``by`` but no ``combine``: sums stay sums, averages averages."""

_RESERVED_LABELS = frozenset({"alertname", "severity"})
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class RuleQuery(_Model):
    """What a rule reads: a selector, and how each series' samples in the window become one value."""

    metric: str = Field(description='a selector: name (wildcards allowed) and label matchers, `up{job="node"}`')
    agg: Aggregation = Field(default="avg", description="per-series reduction over the window")
    window: Duration = Field(default=timedelta(minutes=5), description="how far back samples are read")
    by: tuple[str, ...] | None = Field(default=None, description="labels to group series by (default: none)")
    combine: Combine | None = Field(default=None, description="how a group's series combine (default by agg)")

    @field_validator("metric")
    @classmethod
    def _selector_parses(cls, value: str) -> str:
        try:
            Selector.parse(value)
        except QueryError as exc:
            raise ValueError(str(exc)) from None
        return value

    @field_validator("window")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("window must be positive")
        return value

    @field_validator("by")
    @classmethod
    def _label_names(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        for name in value or ():
            if not is_valid_label_name(name):
                raise ValueError(f"{name!r} is not a label name")
        return value

    @cached_property
    def selector(self) -> Selector:
        """The parsed :attr:`metric`."""
        return Selector.parse(self.metric)


class Condition(_Model):
    """When a rule's value makes an alert.

    ``above``/``below``: value > / < ``threshold``. ``rate_of_change``: the change of each series over the
    window, per second (``per = "second"``) or over the whole window (``per = "window"``), beyond
    ``threshold`` in ``direction``. ``absent``: no sample for ``after`` (default: the window).
    ``anomaly``: the ``anomaly_score`` of the series above ``threshold``. ``forecast``: the series is
    forecast to reach ``threshold`` within ``horizon``, rising (``direction = "up"``), falling (``"down"``)
    or whichever way it is headed (``"either"``).
    """

    kind: ConditionKind = Field(description="above, below, rate_of_change, absent, anomaly or forecast")
    threshold: float | None = Field(default=None, description="the value compared against (all but absent)")
    per: Literal["second", "window"] = Field(default="second", description="rate_of_change: unit of change")
    direction: Literal["up", "down", "either"] = Field(
        default="up", description="rate_of_change and forecast: rising, falling or either way"
    )
    after: Duration | None = Field(default=None, description="absent: how long without samples")
    horizon: Duration | None = Field(default=None, description="forecast: how far ahead to look")

    @model_validator(mode="after")
    def _parameters_fit_kind(self) -> Condition:
        if self.kind != "absent" and self.threshold is None:
            raise ValueError(f"a {self.kind} condition needs a threshold")
        if self.kind == "absent" and self.threshold is not None:
            raise ValueError("an absent condition takes no threshold (use after)")
        if self.kind == "forecast" and (self.horizon is None or self.horizon <= timedelta(0)):
            raise ValueError("a forecast condition needs a positive horizon")
        if self.after is not None and self.kind != "absent":
            raise ValueError("after applies to absent conditions only")
        if self.horizon is not None and self.kind != "forecast":
            raise ValueError("horizon applies to forecast conditions only")
        return self


class RuleSpec(_Model):
    """One alerting rule. Its ``name`` becomes the ``alertname`` label of every alert it raises."""

    name: str = Field(description="the alert name; unique among rules")
    query: RuleQuery
    condition: Condition
    for_: Duration = Field(
        default=timedelta(0), alias="for", description="how long the condition must hold before firing"
    )
    keep_firing_for: Duration = Field(
        default=timedelta(0), description="how long a firing alert stays firing after the condition clears"
    )
    severity: Severity = Field(default="warning", description="debug, info, warning, error or critical")
    labels: dict[str, str] = Field(default_factory=dict, description="extra labels (templated)")
    annotations: dict[str, str] = Field(default_factory=dict, description="summary, description, … (templated)")
    interval: Duration | None = Field(default=None, description="evaluate this rule at its own interval")

    @field_validator("name")
    @classmethod
    def _printable_name(cls, value: str) -> str:
        if not value.strip() or _CONTROL.search(value) or len(value) > 200:
            raise ValueError("a rule name is 1-200 printable characters")
        return value

    @field_validator("labels")
    @classmethod
    def _label_keys(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            if not is_valid_label_name(key):
                raise ValueError(f"{key!r} is not a label name")
            if key in _RESERVED_LABELS:
                raise ValueError(f"label {key!r} is set by the rule's {'name' if key == 'alertname' else key}")
        return value

    @field_validator("labels", "annotations")
    @classmethod
    def _templates_compile(cls, value: dict[str, str]) -> dict[str, str]:
        for text in value.values():
            compile_template(text)
        return value

    @field_validator("interval")
    @classmethod
    def _positive_interval(cls, value: timedelta | None) -> timedelta | None:
        if value is not None and value <= timedelta(0):
            raise ValueError("interval must be positive")
        return value

    @model_validator(mode="after")
    def _query_fits_condition(self) -> RuleSpec:
        kind = self.condition.kind
        if kind in ("rate_of_change", "absent", "forecast") and "agg" in self.query.model_fields_set:
            raise ValueError(f"a {kind} condition computes its own value from the samples: leave query.agg unset")
        if kind == "forecast" and self.query.by is not None:
            raise ValueError("forecast conditions are evaluated per series: query.by is not supported")
        after = self.condition.after
        if after is not None and not timedelta(0) < after <= self.query.window:
            raise ValueError("condition.after must be positive and at most query.window")
        if kind == "anomaly" and self.query.selector.name is None:
            raise ValueError("an anomaly condition needs a metric name to read its anomaly_score")
        return self

    @property
    def window_agg(self) -> WindowAgg:
        """What evaluation computes per series, the condition taken into account."""
        kind = self.condition.kind
        if kind == "rate_of_change":
            return "deriv" if self.condition.per == "second" else "delta"
        return "age" if kind == "absent" else self.query.agg

    @property
    def combine(self) -> Combine:
        """How series combine within a ``by`` group (the query's, else the default for :attr:`window_agg`)."""
        return self.query.combine or DEFAULT_COMBINE[self.window_agg]

    @cached_property
    def selector(self) -> Selector:
        """The series evaluation reads: the query's, or for anomaly rules their ``anomaly_score`` series."""
        selector = self.query.selector
        if self.condition.kind != "anomaly":
            return selector
        assert selector.name is not None  # checked by _query_fits_condition
        if any(c in selector.name for c in "*?"):
            regex = re.escape(selector.name).replace(r"\*", ".*").replace(r"\?", ".")
            scored = Matcher("metric", "=~", regex)
        else:
            scored = Matcher("metric", "=", selector.name)
        return Selector(ANOMALY_METRIC, (*selector.matchers, scored))

    @property
    def absent_after(self) -> timedelta:
        """For absent rules: how long without samples makes a series absent."""
        return self.condition.after or self.query.window


class RulesSettings(_Model):
    """The rules part of ``[alerting]``: the default evaluation interval and the rules."""

    evaluation_interval: Duration = Field(
        default=timedelta(seconds=30), description="how often rules are evaluated (a rule may set its own)"
    )
    rules: tuple[RuleSpec, ...] = Field(default=(), description="the alerting rules")

    @field_validator("rules")
    @classmethod
    def _unique_names(cls, value: Sequence[RuleSpec]) -> Sequence[RuleSpec]:
        counts = Counter(rule.name for rule in value)
        duplicates = sorted(name for name, count in counts.items() if count > 1)
        if duplicates:
            raise ValueError(f"rule names must be unique; repeated: {', '.join(duplicates)}")
        return value

    def due(self, rule: RuleSpec) -> timedelta:
        """The interval ``rule`` is evaluated at."""
        return rule.interval or self.evaluation_interval
