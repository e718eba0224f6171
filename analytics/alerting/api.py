"""REST routes of the alerting service, mounted under ``/api/v1``: alerts, intake, silences, incidents."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import APIRouter, Body, Query
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from analytics.alerting.incidents import IncidentStatus
from analytics.alerting.intake import parse_alerts
from analytics.alerting.pipeline import AlertFilter
from analytics.alerting.rules import RuleSpec
from qwq_core.errors import QueryError
from qwq_core.timeutil import parse_duration, utcnow

if TYPE_CHECKING:
    from analytics.alerting.service import AlertingService


class SilenceRequest(BaseModel):
    """A new silence (or, with ``schedule``, a recurring maintenance window)."""

    model_config = ConfigDict(extra="forbid")

    matchers: str | list[str] = Field(description='e.g. `{host="db1", alertname=~"Disk.*"}`')
    ends_at: datetime | None = None
    starts_at: datetime | None = None
    duration: str | None = Field(default=None, description="e.g. `2h`; instead of ends_at")
    created_by: str = ""
    comment: str = ""
    schedule: str | None = Field(default=None, description="cron expression of a maintenance window")
    timezone: str = "UTC"


class ByRequest(BaseModel):
    """Who acknowledges or resolves an incident."""

    by: str = "api"


def build_router(service: AlertingService) -> APIRouter:
    """The routes, bound to one running service."""
    router = APIRouter(tags=["alerting"])
    pipeline = service.pipeline

    @router.get("/alerts")
    def alerts(state: AlertFilter | None = None) -> dict[str, Any]:
        """Alerts known to the pipeline (firing, or resolved recently), with dedup counts and why muted."""
        with service.lock:
            found = [view.to_dict() for view in pipeline.alerts(utcnow(), state)]
        return {"data": found}

    @router.post("/alerts")
    def intake(payload: Annotated[Any, Body()]) -> dict[str, Any]:
        """Alerts from other tools: an Alertmanager webhook payload (v4) or generic JSON alerts."""
        now = utcnow()
        return {"data": service.ingest(parse_alerts(payload, now), now)}

    @router.get("/alerts/rules")
    def rules() -> dict[str, Any]:
        """The alerting rules: from the configuration, and added over the API."""
        configured = [{**rule.model_dump(mode="json"), "origin": "config"} for rule in service.options.rules]
        added = [{**rule.model_dump(mode="json"), "origin": "api"} for rule in list(service.api_rules.values())]
        return {"data": configured + added}

    @router.post("/alerts/rules", status_code=201)
    def add_rule(rule: Annotated[dict[str, Any], Body()]) -> dict[str, Any]:
        """Add or replace a rule (same keys as ``[[alerting.rules]]``), evaluated at the default interval."""
        try:
            spec = RuleSpec.model_validate(rule)
        except ValidationError as exc:  # a bad rule is bad input (400), named key by key
            reasons = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors(include_url=False))
            raise QueryError(f"invalid rule: {reasons}") from None
        service.add_rule(spec, utcnow())
        return {"data": spec.model_dump(mode="json")}

    @router.delete("/alerts/rules/{name}")
    def delete_rule(name: str) -> dict[str, Any]:
        """Remove a rule added over the API; its alerts resolve."""
        service.delete_rule(name, utcnow())
        return {"data": {"name": name}}

    @router.get("/silences")
    def silences(state: Literal["pending", "active", "expired"] | None = None) -> dict[str, Any]:
        """Silences and maintenance windows."""
        now = utcnow()
        with service.lock:
            return {"data": [{**s.to_dict(), "state": s.state(now)} for s in pipeline.silences(now, state)]}

    @router.post("/silences", status_code=201)
    def add_silence(request: SilenceRequest) -> dict[str, Any]:
        """Mute the alerts the matchers match, from ``starts_at`` (default now) to ``ends_at`` / for ``duration``."""
        duration = parse_duration(request.duration) if request.duration else None
        with service.lock:
            silence = pipeline.silence(
                request.matchers,
                now=utcnow(),
                ends_at=request.ends_at,
                starts_at=request.starts_at,
                duration=duration,
                created_by=request.created_by,
                comment=request.comment,
                schedule=request.schedule,
                timezone=request.timezone,
            )
            service.context.writer.add_events(pipeline.drain_events())
        return {"data": silence.to_dict()}

    @router.delete("/silences/{silence_id}")
    def expire_silence(silence_id: str) -> dict[str, Any]:
        """End a silence now."""
        with service.lock:
            silence = pipeline.expire_silence(silence_id, utcnow())
            service.context.writer.add_events(pipeline.drain_events())
        return {"data": silence.to_dict()}

    @router.get("/incidents")
    def incidents(status: Annotated[IncidentStatus | None, Query()] = None) -> dict[str, Any]:
        """Incidents (open, acknowledged or resolved): correlated alerts with their timeline."""
        with service.lock:
            return {"data": [i.to_dict() for i in pipeline.incidents(status)]}

    @router.post("/incidents/{incident_id}/{verb}")
    def change_incident(
        incident_id: str, verb: Literal["acknowledge", "resolve"], request: ByRequest | None = None
    ) -> dict[str, Any]:
        """Acknowledge or resolve an incident."""
        by = (request or ByRequest()).by
        with service.lock:
            change = pipeline.acknowledge if verb == "acknowledge" else pipeline.resolve_incident
            incident = change(incident_id, by, utcnow())
            service.context.writer.add_events(pipeline.drain_events())
        return {"data": incident.to_dict()}

    return router


__all__ = ["SilenceRequest", "build_router"]
