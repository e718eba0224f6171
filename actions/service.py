"""Actions inside ``qwq up``: the engine, cron schedules, self-healing and remediation, and their REST API.

A ``qwq.services`` service named ``actions`` (its table: ``[actions]``). Jobs:

- ``actions.schedules`` (every 15 s): run the schedules that came due;
- ``actions.heal`` (every ``heal_interval``): poll containers and apply the restart policies;
- ``actions.remediate`` (every 15 s, with remediations configured): the alerting service's firing alerts
  through the remediation policies.

:meth:`ActionsService.connect` (called once every service is built) links it to the alerting service:
exhausted policies and escalations become alerts in its pipeline, and its firing alerts feed remediation.

Routes (mounted under ``/api/v1``): ``GET /actions``, ``GET /actions/runs``, ``POST /actions/{name}``,
``GET /audit``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from actions.apps.state import AppsEnv
from actions.apps.state import configure as configure_apps
from actions.engine import Engine, RunResult, audit
from actions.policies import AlertSink, Healer, Remediation, Remediator, RestartPolicy
from actions.schedules import Schedule, ScheduleRunner
from analytics.alerting.model import Alert
from qwq_core.scheduler import Job
from qwq_core.services import ServiceContext
from qwq_core.settings import Duration
from qwq_core.timeutil import utcnow

log = logging.getLogger(__name__)

SCHEDULE_TICK = timedelta(seconds=15)
API_ACTOR = "api"


class ActionsOptions(BaseModel):
    """The ``[actions]`` table."""

    model_config = ConfigDict(extra="forbid")

    docker_url: str | None = Field(default=None, description="Docker Engine API address; default $DOCKER_HOST")
    default_timeout: Duration = Field(default=timedelta(minutes=10), description="apply timeout of an action")
    lock_wait: Duration = Field(default=timedelta(seconds=30), description="how long a run waits for its target")
    heal_interval: Duration = Field(default=timedelta(seconds=5), description="how often policies poll")
    schedules: list[Schedule] = Field(default_factory=list, description="cron-style runs")
    policies: list[RestartPolicy] = Field(default_factory=list, description="self-healing restart policies")
    remediations: list[Remediation] = Field(default_factory=list, description="alert → action rules")


class RunRequest(BaseModel):
    """Body of ``POST /actions/{name}``."""

    params: dict[str, Any] = Field(default_factory=dict, description="the action's parameters")
    dry_run: bool = Field(default=False, description="plan only: answer what would change, change nothing")


class ActionsService:
    """The actions service of one ``qwq up``."""

    name: ClassVar[str] = "actions"
    Options: ClassVar[type[ActionsOptions]] = ActionsOptions

    def __init__(self, options: ActionsOptions, context: ServiceContext, *, engine: Engine | None = None) -> None:
        self.options = options
        self.context = context
        self.engine = engine or Engine(
            context.store,
            home=context.settings.home,
            docker_url=options.docker_url,
            default_timeout=options.default_timeout.total_seconds(),
            lock_wait=options.lock_wait.total_seconds(),
        )
        self.apps = AppsEnv.from_settings(context.settings)
        configure_apps(self.apps)  # app actions found through entry points use this home and these catalogs
        self._alerts: list[AlertSink] = []
        self._firing: Callable[[datetime], list[Alert]] | None = None
        emit = context.writer.add_events
        self.healer = Healer(options.policies, self.engine, on_alert=self._alert, emit=emit)
        self.remediator = Remediator(options.remediations, self.engine, on_alert=self._alert, emit=emit)
        self.schedules = ScheduleRunner(options.schedules, self.engine, start=utcnow())

    def connect(self, services: Mapping[str, Any]) -> None:
        """Link to the alerting service, when it runs: raise alerts into it, remediate its firing alerts."""
        alerting = services.get("alerting")
        if alerting is not None:
            self.connect_alerts(lambda alert: alerting.ingest([alert], utcnow()))
            self._firing = alerting.firing

    def _remediate_job(self, now: datetime) -> int:
        return len(self.remediate(self._firing(now), now)) if self._firing is not None else 0

    def connect_alerts(self, sink: AlertSink) -> None:
        """Send the alerts this service raises (budget exhausted, remediation escalated) to ``sink``."""
        self._alerts.append(sink)

    def _alert(self, alert: Alert) -> None:
        if not self._alerts:
            log.warning("alert %s raised but no alert sink is connected", alert.labels)
        for sink in self._alerts:
            sink(alert)

    def remediate(self, alerts: Iterable[Alert], now: datetime) -> list[RunResult]:
        """Feed every alert firing at ``now``; runs the remediations due (see :mod:`actions.policies`)."""
        return self.remediator(alerts, now)

    def jobs(self) -> Sequence[Job]:
        """The schedules job (when there are schedules) and the healing job (when there are policies)."""
        jobs = []
        if self.schedules.schedules:
            jobs.append(Job("actions.schedules", SCHEDULE_TICK, self.schedules.tick, self.options.default_timeout))
        if self.options.policies:
            interval = self.options.heal_interval
            # Restarts verify their outcome, so one tick may take a while; give it far more than the interval.
            jobs.append(Job("actions.heal", interval, self.healer.tick, max(interval * 10, timedelta(minutes=5))))
        if self.options.remediations:
            jobs.append(Job("actions.remediate", SCHEDULE_TICK, self._remediate_job, self.options.default_timeout))
        return jobs

    def router(self) -> Any:
        """The REST routes: actions, runs, audit, and the app store (FastAPI imported only when serving)."""
        from actions.apps.api import build_router as apps_router

        router = build_router(self.engine)
        router.include_router(apps_router(self.engine, self.apps))
        return router

    def close(self) -> None:
        """Close the engine's Docker client."""
        self.engine.close()


def build_router(engine: Engine) -> Any:
    """``GET /actions``, ``GET /actions/runs``, ``POST /actions/{name}``, ``GET /audit``."""
    from fastapi import APIRouter

    router = APIRouter(tags=["actions"])

    @router.get("/actions", summary="Registered actions with their parameter schemas")
    def list_actions() -> list[dict[str, Any]]:
        return engine.describe()

    @router.get("/actions/runs", summary="Recent runs, newest first, with live progress")
    def runs() -> list[dict[str, Any]]:
        return engine.runs()

    @router.post("/actions/{name}", summary="Plan (dry_run) or run an action; answers the plan or the result")
    def run(name: str, request: RunRequest) -> dict[str, Any]:
        return engine.run(name, request.params, actor=API_ACTOR, dry_run=request.dry_run).as_dict()

    @router.get("/audit", summary="The audit trail of action runs, newest first")
    def audit_trail(
        since: str = "30d",
        until: str | None = None,
        action: str | None = None,
        target: str | None = None,
        actor: str | None = None,
        outcome: str | None = None,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        frame = audit(
            engine.store,
            since=since,
            until=until,
            action=action,
            target=target,
            actor=actor,
            outcome=outcome,
            limit=limit,
        )
        return [{**row, "ts": row["ts"].isoformat()} for row in frame.to_dicts()]

    return router


__all__: Sequence[str] = ["ActionsOptions", "ActionsService", "RunRequest", "build_router"]
