"""The state of each rule's alerts: inactive → pending → firing → resolved, driven by evaluations.

Pure: :meth:`AlertStates.update` takes an :class:`~analytics.alerting.evaluate.Evaluation` (which carries
its ``now``) and returns the :class:`Alert` objects for the notification pipeline and the transition
:class:`Event` objects to record. Prometheus' semantics:

- a (rule, group) whose condition starts to hold becomes *pending* (event ``alert.pending``), and *firing*
  once it has held for the rule's ``for`` (``alert.firing``; straight away when ``for`` is 0);
- a pending alert whose condition stops holding goes back to inactive (``alert.inactive``), unnoticed by
  the pipeline;
- a firing alert whose condition stops holding stays firing for ``keep_firing_for`` more, then resolves
  (``alert.resolved``, and one resolved :class:`Alert`);
- every evaluation sends every firing alert again (as Prometheus does); the pipeline drops duplicates.

An alert's labels — the series' (or ``by`` group's) labels, the rule's templated ``labels``, ``alertname``
and ``severity`` — are rendered when it becomes pending and then kept: they are its identity
(:attr:`Alert.fingerprint`). Annotations are rendered when it becomes pending, when it fires, and whenever
its value changes while it fires, so they can show the current value.

Every event's ``attrs`` hold ``rule``, ``key``, ``fingerprint``, ``labels``, ``annotations``, ``value``,
``active_since`` and ``fired_at``, which is all :func:`restore` needs to rebuild the state after a restart.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Literal

from analytics.alerting.evaluate import Evaluation, Result
from analytics.alerting.model import Alert, fingerprint
from analytics.alerting.rules import RuleSpec
from analytics.alerting.templates import render
from qwq_core.model import Event, Severity
from qwq_core.timeutil import as_utc

__all__ = ["ALERT_EVENT_KINDS", "ActiveAlert", "AlertStates", "Update", "restore"]

Phase = Literal["pending", "firing"]
ALERT_EVENT_KINDS = ("alert.pending", "alert.firing", "alert.inactive", "alert.resolved")
"""The events this module records, one per transition."""
SOURCE = "rules"


@dataclass(slots=True)
class ActiveAlert:
    """A (rule, group) whose condition holds or held recently: pending or firing."""

    rule: str
    key: str
    phase: Phase
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    value: float | None
    active_since: datetime
    last_held: datetime
    fired_at: datetime | None = None

    def alert(self, ends_at: datetime | None = None) -> Alert:
        """This alert for the pipeline: firing, or resolved at ``ends_at``."""
        return Alert(
            labels=self.labels,
            starts_at=self.active_since,
            status="resolved" if ends_at is not None else "firing",
            annotations=self.annotations,
            ends_at=ends_at,
            source="qwq",
            value=self.value,
        )


@dataclass(frozen=True)
class Update:
    """What one evaluation changed: alerts for the pipeline and transition events to record."""

    alerts: tuple[Alert, ...]
    events: tuple[Event, ...]

    @property
    def firing(self) -> tuple[Alert, ...]:
        """The alerts firing after the update."""
        return tuple(a for a in self.alerts if a.status == "firing")

    @property
    def resolved(self) -> tuple[Alert, ...]:
        """The alerts the update resolved."""
        return tuple(a for a in self.alerts if a.status == "resolved")


class AlertStates:
    """The pending and firing alerts of every rule, keyed by (rule name, group key)."""

    def __init__(self, active: Iterable[ActiveAlert] = ()) -> None:
        self._active: dict[tuple[str, str], ActiveAlert] = {(a.rule, a.key): a for a in active}

    def active(self) -> list[ActiveAlert]:
        """A snapshot (copies) of the pending and firing alerts, ordered by rule and key."""
        return [replace(self._active[k]) for k in sorted(self._active)]

    def update(self, evaluation: Evaluation) -> Update:
        """Apply ``evaluation``: only the states of the rules it evaluated (without error) change."""
        now = as_utc(evaluation.now)
        rules = {rule.name: rule for rule in evaluation.rules if rule.name not in evaluation.errors}
        alerts: list[Alert] = []
        events: list[Event] = []
        holding: set[tuple[str, str]] = set()
        for result in evaluation.results(holds=True):
            holding.add((result.rule.name, result.key))
            current = self._held(result, now, events)
            if current.phase == "firing":
                alerts.append(current.alert())
        for ident, current in list(self._active.items()):
            rule = rules.get(ident[0])
            if rule is None or ident in holding:
                continue
            if current.phase == "firing" and now - current.last_held < rule.keep_firing_for:
                alerts.append(current.alert())
                continue
            self._end(current, now, alerts, events)
        return Update(tuple(alerts), tuple(events))

    def retire(self, keep: Collection[str], now: datetime) -> Update:
        """End the alerts of rules not named in ``keep`` (rules removed from the configuration)."""
        alerts: list[Alert] = []
        events: list[Event] = []
        for current in list(self._active.values()):
            if current.rule not in keep:
                self._end(current, as_utc(now), alerts, events)
        return Update(tuple(alerts), tuple(events))

    def _held(self, result: Result, now: datetime, events: list[Event]) -> ActiveAlert:
        rule = result.rule
        ident = (rule.name, result.key)
        current = self._active.get(ident)
        if current is None:
            context = _context(rule, result.labels, result.value)
            current = ActiveAlert(
                rule=rule.name,
                key=result.key,
                phase="pending",
                labels=_labels(rule, result.labels, context),
                annotations=_annotations(rule, context),
                value=result.value,
                active_since=now,
                last_held=now,
            )
            self._active[ident] = current
            if rule.for_ > timedelta(0):
                events.append(_event("alert.pending", current, "info"))
        else:
            changed = current.value != result.value
            current.value, current.last_held = result.value, now
            if changed and current.phase == "firing":  # what the pipeline sees stays current
                current.annotations = _annotations(rule, _context(rule, result.labels, result.value))
        if current.phase == "pending" and now - current.active_since >= rule.for_:
            current.phase, current.fired_at = "firing", now
            current.annotations = _annotations(rule, _context(rule, result.labels, result.value))
            events.append(_event("alert.firing", current, rule.severity))
        return current

    def _end(self, current: ActiveAlert, now: datetime, alerts: list[Alert], events: list[Event]) -> None:
        del self._active[(current.rule, current.key)]
        if current.phase == "pending":
            events.append(_event("alert.inactive", current, "debug", ts=now))
            return
        alerts.append(current.alert(ends_at=now))
        events.append(_event("alert.resolved", current, "info", ts=now))


def _context(rule: RuleSpec, labels: Mapping[str, str], value: float | None) -> dict[str, Any]:
    """What a rule's label and annotation templates see."""
    return {
        "labels": dict(labels),
        "value": value,
        "rule": rule.name,
        "severity": rule.severity,
        "threshold": rule.condition.threshold,
    }


def _annotations(rule: RuleSpec, context: Mapping[str, Any]) -> dict[str, str]:
    return {key: render(text, context) for key, text in rule.annotations.items()}


def _labels(rule: RuleSpec, series: Mapping[str, str], context: Mapping[str, Any]) -> dict[str, str]:
    """Series labels, overridden by the rule's (templated) labels, then ``alertname`` and ``severity``."""
    labels = dict(series)
    labels.update({key: render(text, context) for key, text in rule.labels.items()})
    labels.update(alertname=rule.name, severity=rule.severity)
    return {key: value for key, value in labels.items() if value}


def _event(kind: str, current: ActiveAlert, severity: Severity, ts: datetime | None = None) -> Event:
    summary = current.annotations.get("summary") or ", ".join(f"{k}={v}" for k, v in sorted(current.labels.items()))
    phase = kind.removeprefix("alert.")
    return Event(
        kind=kind,
        message=f"{current.rule} {phase}: {summary}",
        source=SOURCE,
        severity=severity,
        attrs={
            "rule": current.rule,
            "key": current.key,
            "fingerprint": fingerprint(current.labels),
            "labels": dict(current.labels),
            "annotations": dict(current.annotations),
            "value": current.value,
            "active_since": current.active_since.isoformat(),
            "fired_at": current.fired_at.isoformat() if current.fired_at else None,
        },
        ts=ts or current.last_held,
    )


def restore(events: Iterable[Event]) -> AlertStates:
    """The alert states that ``events`` (``alert.*`` events as recorded, any order) leave behind.

    Replays the events oldest first: ``alert.pending``/``alert.firing`` (re)activate an alert,
    ``alert.inactive``/``alert.resolved`` end it. The last time a condition held is taken to be the
    time of its last event, so ``keep_firing_for`` counts from no later than that.
    """
    active: dict[tuple[str, str], ActiveAlert] = {}
    for event in sorted(events, key=lambda e: as_utc(e.ts)):
        if event.kind not in ALERT_EVENT_KINDS:
            continue
        attrs = event.attrs
        ident = (str(attrs["rule"]), str(attrs["key"]))
        if event.kind in ("alert.inactive", "alert.resolved"):
            active.pop(ident, None)
            continue
        fired_at = attrs.get("fired_at")
        active[ident] = ActiveAlert(
            rule=ident[0],
            key=ident[1],
            phase="firing" if event.kind == "alert.firing" else "pending",
            labels=dict(attrs["labels"]),
            annotations=dict(attrs.get("annotations") or {}),
            value=attrs.get("value"),
            active_since=as_utc(datetime.fromisoformat(attrs["active_since"])),
            last_held=as_utc(event.ts),
            fired_at=as_utc(datetime.fromisoformat(fired_at)) if fired_at else None,
        )
    return AlertStates(active.values())
