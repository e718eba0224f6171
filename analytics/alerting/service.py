"""Alerting inside ``qwq up``: rules on a schedule → the pipeline → apprise, as a ``qwq.services`` service.

Jobs (one thread of control through the pipeline, guarded by a lock):

- ``alerting.rules.<interval>``: evaluate the rules due at that interval (:func:`source.run_rules` records
  their transitions), write ``ALERTS{alertstate="firing"}`` samples, hand the alerts to the pipeline;
- ``alerting.notify`` (every second): ``pipeline.tick`` → deliver each notification → record the pipeline's
  events (silences, incidents, notifications queued) through the buffered writer.

State survives restarts: rule states and the pipeline are rebuilt from their events at start.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, ClassVar

import polars as pl
from pydantic import Field, ValidationError, model_validator

from analytics.alerting import source
from analytics.alerting.delivery import Deliverer, ReceiverSpec
from analytics.alerting.model import Alert, Notification
from analytics.alerting.pipeline import RESTORE_SQL, Pipeline, PipelineSpec, events_from_frame
from analytics.alerting.routing import Route
from analytics.alerting.rules import RuleSpec, RulesSettings
from qwq_core.collector import samples
from qwq_core.errors import NotFoundError, QueryError
from qwq_core.model import Event, is_valid_label_name
from qwq_core.scheduler import Job
from qwq_core.services import ServiceContext
from qwq_core.store.base import Store
from qwq_core.timeutil import utcnow

log = logging.getLogger(__name__)

NOTIFY_INTERVAL = timedelta(seconds=1)


class AlertingOptions(RulesSettings, PipelineSpec):
    """The ``[alerting]`` table: rules, receivers, and the pipeline's routing, inhibition and incidents."""

    receivers: tuple[ReceiverSpec, ...] = Field(default=(), description="where notifications go (apprise URLs)")

    @model_validator(mode="after")
    def _known_receivers(self) -> AlertingOptions:
        known = {receiver.name for receiver in self.receivers}
        if known:  # with no receivers at all, alerts are kept and shown but nobody is notified
            missing = sorted(set(Route.build(self.route).receivers()) - known)
            if missing:
                raise ValueError(f"route names receivers that are not configured: {', '.join(missing)}")
        return self

    def pipeline_spec(self) -> PipelineSpec:
        """The pipeline's own part of the table."""
        return PipelineSpec.model_validate({key: getattr(self, key) for key in PipelineSpec.model_fields})


class AlertingService:
    """Rules, pipeline and delivery of one ``qwq up``."""

    name: ClassVar[str] = "alerting"
    Options: ClassVar[type[AlertingOptions]] = AlertingOptions

    def __init__(self, options: AlertingOptions, context: ServiceContext) -> None:
        self.options = options
        self.context = context
        self.lock = threading.Lock()
        self.deliverer = Deliverer(options.receivers, record=context.writer.add_events)
        now = utcnow()
        self.states = source.load_states(context.store)
        self.pipeline = Pipeline.restore(
            events_from_frame(context.store.sql(RESTORE_SQL)),
            now,
            options.pipeline_spec(),
            send_resolved={r.name: r.send_resolved for r in options.receivers},
        )
        self._unknown_receivers: set[str] = set()
        self.api_rules = restore_api_rules(context.store)
        self._retire_unknown(now)

    def _retire_unknown(self, now: datetime) -> None:
        """End alerts of rules no longer configured (edited out of qwq.toml while qwq was down)."""
        known = {rule.name for rule in self.options.rules} | set(self.api_rules)
        update = self.states.retire(known, now)
        if update.events:
            self.context.writer.add_events(update.events)
            self.pipeline.ingest(update.alerts, now)

    def jobs(self) -> Sequence[Job]:
        """One rules job per distinct evaluation interval (rules added over the API run at the default
        one), and the notifier."""
        by_interval: dict[timedelta, list[RuleSpec]] = {self.options.evaluation_interval: []}
        for rule in self.options.rules:
            by_interval.setdefault(self.options.due(rule), []).append(rule)
        default = self.options.evaluation_interval
        jobs = [
            Job(
                f"alerting.rules.{interval.total_seconds():g}s",
                interval,
                self._rules_job(rules, with_api_rules=interval == default),
                interval,
            )
            for interval, rules in sorted(by_interval.items())
        ]
        jobs.append(Job("alerting.notify", NOTIFY_INTERVAL, self.notify, timedelta(minutes=2)))
        return jobs

    def add_rule(self, rule: RuleSpec, now: datetime) -> None:
        """Add (or replace) a rule over the API; recorded as a ``rule.created`` event, so it survives restarts."""
        if rule.name in {r.name for r in self.options.rules}:
            raise QueryError(f"rule {rule.name!r} is defined in the configuration; change it there")
        with self.lock:
            self.api_rules[rule.name] = rule
        self.context.writer.emit(
            Event("rule.created", f"rule {rule.name} added", "alerting", attrs={"rule": rule.model_dump(mode="json")})
        )

    def delete_rule(self, name: str, now: datetime) -> None:
        """Remove a rule added over the API, ending its alerts."""
        with self.lock:
            if name not in self.api_rules:
                raise NotFoundError(f"no rule {name!r} was added over the API")
            del self.api_rules[name]
            self._retire_unknown(now)
        self.context.writer.emit(Event("rule.deleted", f"rule {name} removed", "alerting", attrs={"name": name}))

    def _rules_job(self, rules: list[RuleSpec], *, with_api_rules: bool) -> Any:
        def evaluate(now: datetime) -> int:
            with self.lock:  # states and pipeline are shared by every rules job and the notifier
                due = [*rules, *self.api_rules.values()] if with_api_rules else rules
                if not due:
                    return 0
                update = source.run_rules(self.context.store, due, self.states, now)
                self.pipeline.ingest(update.alerts, now)
            if update.firing:
                self.context.writer.add(alert_samples(update.firing, now))
            return len(update.firing)

        return evaluate

    def firing(self, now: datetime) -> list[Alert]:
        """The alerts firing now (for remediation policies)."""
        with self.lock:
            return [view.alert for view in self.pipeline.alerts(now, "firing")]

    def ingest(self, alerts: Sequence[Alert], now: datetime) -> dict[str, int]:
        """Alerts sent in from outside (``POST /api/v1/alerts``) into the same pipeline."""
        with self.lock:
            intake = self.pipeline.ingest(alerts, now)
            self.context.writer.add_events(self.pipeline.drain_events())
        return {k: getattr(intake, k) for k in ("received", "new", "updated", "duplicates", "held")}

    async def notify(self, now: datetime) -> int:
        """Flush due groups and deliver their notifications; returns how many were delivered."""
        with self.lock:
            notifications = self.pipeline.tick(now)
            self.context.writer.add_events(self.pipeline.drain_events())
        sendable = [n for n in notifications if self._configured(n)]
        deliveries = await asyncio.gather(*(self.deliverer.deliver(n) for n in sendable))
        return sum(1 for delivery in deliveries if delivery.delivered)

    def _configured(self, notification: Notification) -> bool:
        if notification.receiver in self.deliverer.receivers:
            return True
        if notification.receiver not in self._unknown_receivers:  # say it once, not every group interval
            self._unknown_receivers.add(notification.receiver)
            log.warning("alerts for receiver %r are not sent: no such receiver configured", notification.receiver)
        return False

    def router(self) -> Any:
        """The REST routes: alerts, silences, incidents."""
        from analytics.alerting.api import build_router  # FastAPI only when serving

        return build_router(self)

    def close(self) -> None:
        """Nothing to release: state lives in events, delivery threads end with their sends."""


def restore_api_rules(store: Store) -> dict[str, RuleSpec]:
    """The rules added over the API and not deleted since, from their events, oldest first."""
    events = store.sql("SELECT kind, attrs FROM events WHERE kind IN ('rule.created', 'rule.deleted') ORDER BY id")
    rules: dict[str, RuleSpec] = {}
    for row in events.iter_rows(named=True):
        attrs = json.loads(row["attrs"])
        if row["kind"] == "rule.created":
            try:
                rule = RuleSpec.model_validate(attrs["rule"])
            except ValidationError as exc:  # a rule a newer/older qwq wrote: skip it, say so
                log.warning("ignoring a stored API rule that no longer validates: %s", exc)
                continue
            rules[rule.name] = rule
        else:
            rules.pop(attrs.get("name"), None)
    return rules


def alert_samples(firing: Sequence[Alert], now: datetime) -> pl.DataFrame:
    """Prometheus' ``ALERTS{alertname, alertstate="firing", <labels>} 1`` for each firing alert."""
    rows = [
        ("ALERTS", {**{k: v for k, v in alert.labels.items() if is_valid_label_name(k)}, "alertstate": "firing"}, 1.0)
        for alert in firing
    ]
    return samples(now, rows)


__all__ = ["AlertingOptions", "AlertingService", "alert_samples"]
