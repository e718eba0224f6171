"""Inhibition: a firing alert mutes other alerts it explains, with Alertmanager's rules and semantics.

A rule has ``source_matchers``, ``target_matchers`` and ``equal`` labels: an alert matching the target
matchers is muted while some *firing* alert matches the source matchers and has the same value for every
``equal`` label (an absent label equals an absent one). An alert that matches both sides is never muted
by an alert that also matches both sides — so rules such as "critical mutes warning" cannot make alerts
mute each other or themselves. With ``topology = true`` a target is also muted when it lies below the
source in the :class:`~analytics.alerting.incidents.Topology` (host → container → site).

qwq's default rules (:data:`DEFAULT_INHIBIT_RULES`, replaced by any ``inhibit_rules`` you configure): while
an alert named ``HostDown`` fires for a host, alerts of that host's containers (alerts with a ``container``
label and the same ``host``) and of its sites (alerts with a ``site`` label and the same ``host``, or
below the host in the topology) are muted — they are symptoms of the host being down.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field, field_validator

from analytics.alerting.incidents import Topology
from analytics.alerting.model import Alert
from analytics.alerting.routing import labels_match, parse_matchers
from qwq_core.errors import QueryError
from qwq_core.selectors import Matcher


class InhibitRuleSpec(BaseModel):
    """One inhibition rule as configured (Alertmanager's keys, plus ``topology``)."""

    model_config = ConfigDict(extra="forbid")

    source_matchers: list[str] = Field(description="alerts that mute others while firing")
    target_matchers: list[str] = Field(description="alerts that may be muted")
    equal: list[str] = Field(default_factory=list, description="labels source and target must share")
    topology: bool = Field(default=False, description="also mute targets below the source in the topology")

    @field_validator("source_matchers", "target_matchers")
    @classmethod
    def _parses(cls, value: list[str]) -> list[str]:
        try:
            parse_matchers(value)
        except QueryError as exc:
            raise ValueError(str(exc)) from None
        return value


DEFAULT_INHIBIT_RULES = (
    InhibitRuleSpec(
        source_matchers=['alertname="HostDown"'],
        target_matchers=['container=~".+"'],
        equal=["host"],
        topology=True,
    ),
    InhibitRuleSpec(
        source_matchers=['alertname="HostDown"'],
        target_matchers=['site=~".+"'],
        equal=["host"],
        topology=True,
    ),
)
"""A host that is down mutes its containers' and its sites' alerts."""


@dataclass(frozen=True)
class InhibitRule:
    """A parsed rule."""

    source: tuple[Matcher, ...]
    target: tuple[Matcher, ...]
    equal: tuple[str, ...]
    topology: bool

    @classmethod
    def from_spec(cls, spec: InhibitRuleSpec) -> InhibitRule:
        return cls(
            parse_matchers(spec.source_matchers), parse_matchers(spec.target_matchers), tuple(spec.equal), spec.topology
        )


@dataclass
class _Sources:
    """Firing source alerts of one rule sharing one key: the first of them, and the first not also a target."""

    first: str | None = None
    first_source_only: str | None = None

    def add(self, fingerprint: str, also_target: bool) -> None:
        self.first = self.first or fingerprint
        if not also_target:
            self.first_source_only = self.first_source_only or fingerprint

    def pick(self, target_is_source: bool) -> str | None:
        return self.first_source_only if target_is_source else self.first


class InhibitIndex:
    """The firing source alerts of every rule, indexed so that checking a target costs one lookup per rule."""

    def __init__(self, rules: Sequence[InhibitRule], topology: Topology, alerts: Iterable[Alert]) -> None:
        self.rules = rules
        self.topology = topology
        self._by_equal: list[dict[tuple[str, ...], _Sources]] = [{} for _ in rules]
        self._by_node: list[dict[str, _Sources]] = [{} for _ in rules]
        for alert in alerts:
            if alert.status == "firing":
                self._add(alert)

    def _add(self, alert: Alert) -> None:
        labels = alert.labels
        for i, rule in enumerate(self.rules):
            if not labels_match(rule.source, labels):
                continue
            also_target = labels_match(rule.target, labels)
            key = tuple(labels.get(name) or "" for name in rule.equal)
            self._by_equal[i].setdefault(key, _Sources()).add(alert.fingerprint, also_target)
            if rule.topology:
                for n in self.topology.nodes(labels):
                    self._by_node[i].setdefault(n, _Sources()).add(alert.fingerprint, also_target)

    def inhibited_by(self, alert: Alert) -> str | None:
        """The fingerprint of a firing alert that mutes ``alert``, or None."""
        labels = alert.labels
        for i, rule in enumerate(self.rules):
            if not labels_match(rule.target, labels):
                continue
            is_source = labels_match(rule.source, labels)
            key = tuple(labels.get(name) or "" for name in rule.equal)
            sources = self._by_equal[i].get(key)
            found = sources.pick(is_source) if sources else None
            if found is None and rule.topology:
                found = self._below(i, alert, is_source)
            if found is not None:
                return found
        return None

    def _below(self, rule: int, alert: Alert, is_source: bool) -> str | None:
        sources = self._by_node[rule]
        for n in self.topology.nodes(alert.labels):
            for upper in self.topology.ancestors(n):
                found = sources[upper].pick(is_source) if upper in sources else None
                if found is not None:
                    return found
        return None


class Inhibitor:
    """Inhibition rules plus the topology they may use; :meth:`index` prepares them for one moment."""

    def __init__(self, rules: Iterable[InhibitRuleSpec] = DEFAULT_INHIBIT_RULES, topology: Topology | None = None):
        self.rules = tuple(InhibitRule.from_spec(spec) for spec in rules)
        self.topology = topology or Topology()

    def index(self, alerts: Iterable[Alert]) -> InhibitIndex:
        """An index of the firing alerts among ``alerts`` as sources, to check targets against."""
        return InhibitIndex(self.rules, self.topology, alerts)


__all__: Sequence[str] = ["DEFAULT_INHIBIT_RULES", "InhibitIndex", "InhibitRule", "InhibitRuleSpec", "Inhibitor"]
