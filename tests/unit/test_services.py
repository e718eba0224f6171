"""Services: built from their config table through the registry, their jobs run and fail like upkeep."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import pytest
from pydantic import BaseModel, ConfigDict

from analytics.alerting.model import Alert
from qwq_core.errors import ConfigError
from qwq_core.model import Event
from qwq_core.plugins import Registry
from qwq_core.runtime import Runtime
from qwq_core.scheduler import Job, Outcome
from qwq_core.services import ServiceContext, ServiceType, build_services
from qwq_core.settings import Settings
from qwq_core.store import LocalStore
from qwq_core.writer import BufferedWriter


class Pinger:
    """A service with one option and one job that records an event per run."""

    name: ClassVar[str] = "alerting"

    class Options(BaseModel):
        model_config = ConfigDict(extra="forbid")
        every: int = 1

    def __init__(self, options: Options, context: ServiceContext) -> None:
        self.options, self.context, self.closed = options, context, 0

    def jobs(self) -> Sequence[Job]:
        def ping(now: datetime) -> None:
            self.context.writer.emit(Event("ping", "ping", ts=now))

        return [Job("alerting.ping", timedelta(seconds=self.options.every), ping, timedelta(seconds=1))]

    def close(self) -> None:
        self.closed += 1


def types() -> Registry[ServiceType]:
    return Registry("qwq.test-services", extra={"pinger": Pinger})


def context(store: LocalStore, **tables: Any) -> ServiceContext:
    return ServiceContext(Settings(**tables), store, BufferedWriter(store))


def test_a_service_gets_its_table_validated(store: LocalStore) -> None:
    (built,) = build_services(context(store, alerting={"every": 7}), types=types())
    assert isinstance(built, Pinger) and built.options.every == 7


def test_invalid_service_options_name_the_table_and_key(store: LocalStore) -> None:
    with pytest.raises(ConfigError) as caught:
        build_services(context(store, alerting={"every": "often", "bogus": 1}), types=types(), source="qwq.toml")
    keys = {(issue.source, issue.key) for issue in caught.value.issues}
    assert keys == {("qwq.toml", "alerting.every"), ("qwq.toml", "alerting.bogus")}


def test_the_runtime_schedules_service_jobs_and_reports_their_failures(store: LocalStore) -> None:
    ctx = context(store)
    (service,) = build_services(ctx, types=types())
    runtime = Runtime(ctx.settings, store, [], ctx.writer, [service])
    (job,) = [j for j in runtime.scheduler.jobs if j.name == "alerting.ping"]
    now = datetime(2026, 1, 1, tzinfo=UTC)
    runtime._dispatch(Outcome(job, now, 0.1, error=RuntimeError("boom")))
    ctx.writer.flush()
    failed = store.events(since=now - timedelta(days=1), kind="service.failed")
    assert failed["message"].to_list() == ["alerting.ping failed: RuntimeError: boom"]


def test_validate_options_checks_tables_without_starting_services() -> None:
    from qwq_core.services import validate_options

    validate_options(Settings(alerting={"every": 3}), types=types())
    with pytest.raises(ConfigError) as caught:
        validate_options(Settings(alerting={"every": []}), types=types(), source="f.toml")
    assert [(i.source, i.key) for i in caught.value.issues] == [("f.toml", "alerting.every")]


def test_built_in_services_meet_each_other(store: LocalStore) -> None:
    built = {type(s).name: s for s in build_services(context(store))}  # type: ignore[attr-defined]
    assert set(built) == {"alerting", "analytics", "actions"}
    actions, alerting = built["actions"], built["alerting"]
    assert actions._firing == alerting.firing  # remediation reads the alerting service's firing alerts
    actions._alert(Alert({"alertname": "RestartBudgetExhausted", "container": "web"}, datetime.now(UTC)))
    assert [a["labels"]["alertname"] for a in (v.to_dict() for v in alerting.pipeline.alerts(datetime.now(UTC)))] == [
        "RestartBudgetExhausted"
    ]
