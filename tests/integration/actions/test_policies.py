"""Self-healing against the real engine: a container killed again and again is restarted with backoff
until the policy's budget is spent; then an alert fires, and it resolves when the container is back."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta

import docker
import pytest

from actions.engine import Engine, audit
from actions.policies import EXHAUSTED_ALERT, Healer, Remediation, Remediator, RestartPolicy
from analytics.alerting.model import Alert
from qwq_core.store import LocalStore
from qwq_core.timeutil import utcnow
from tests.integration.actions.conftest import Containers

pytestmark = [pytest.mark.service, pytest.mark.slow]
FAST = {"stop_timeout": 0, "settle": 0.3}


def test_killed_container_restarted_with_backoff_until_budget_then_alert(
    containers: Containers, docker_client: docker.DockerClient, make_engine: Callable[..., Engine], store: LocalStore
) -> None:
    containers.run("app")
    containers.run("bystander")  # not matched: never touched
    name = containers.name("app")
    policy = RestartPolicy(name="heal-app", match=[name], backoff=timedelta(seconds=1), max_attempts=3, params=FAST)
    alerts: list[Alert] = []
    healer = Healer([policy], make_engine(), on_alert=alerts.append)
    app = docker_client.containers.get(name)
    t0 = utcnow()

    def kill_and_tick(offset: float) -> str:
        app.reload()
        if app.status == "running":
            app.kill()
        (decision,) = [d for _, c, d in healer.tick(t0 + timedelta(seconds=offset)) if c == name]
        app.reload()
        return decision.kind

    assert kill_and_tick(0) == "restart"
    assert app.status == "running"
    assert kill_and_tick(0.5) == "wait"  # 1 s after the first attempt
    assert app.status == "exited"
    assert kill_and_tick(1.0) == "restart"
    assert kill_and_tick(2.5) == "wait"  # backoff doubled: 2 s after the second attempt
    assert kill_and_tick(3.0) == "restart"
    assert kill_and_tick(60) == "exhausted"  # three attempts spent within the window
    assert app.status == "exited"  # the policy stopped trying
    assert kill_and_tick(120) == "idle"  # and does not alert twice

    assert [a.labels["alertname"] for a in alerts] == [EXHAUSTED_ALERT]
    assert (alerts[0].status, alerts[0].labels["container"]) == ("firing", name)
    exhausted = store.events(kind="policy.exhausted", until=t0 + timedelta(hours=1))  # ticks ran on a fake clock
    assert exhausted.height == 1
    assert json.loads(exhausted["attrs"][0])["container"] == name
    trail = audit(store, actor="policy:heal-app")
    assert trail.height == 3  # every attempt audited
    assert set(trail["outcome"]) == {"applied"}
    assert docker_client.containers.get(containers.name("bystander")).attrs["RestartCount"] == 0

    app.start()
    (decision,) = [d for _, c, d in healer.tick(t0 + timedelta(seconds=130)) if c == name]
    assert decision.kind == "recovered"
    assert [a.status for a in alerts] == ["firing", "resolved"]


def test_remediation_runs_action_then_escalates(
    containers: Containers, docker_client: docker.DockerClient, make_engine: Callable[..., Engine], store: LocalStore
) -> None:
    containers.run("api")
    name = containers.name("api")
    remediation = Remediation(
        name="restart-api",
        alert="HighLatency",
        action="containers.restart",
        params={"container": "{container}", **FAST},
        max_runs=1,
        interval=timedelta(seconds=10),
    )
    sent: list[Alert] = []
    remediator = Remediator([remediation], make_engine(), on_alert=sent.append)
    t0 = utcnow()
    firing = Alert({"alertname": "HighLatency", "container": name}, t0)
    (run,) = remediator([firing], t0)
    assert run.outcome == "applied", run.error
    assert run.plan.target == f"container:{name}"
    assert remediator([firing], t0 + timedelta(seconds=5)) == []  # within the interval: no run, no escalation
    assert remediator([firing], t0 + timedelta(seconds=11)) == []
    assert [a.labels["alertname"] for a in sent] == ["RemediationEscalated"]
    assert audit(store, actor="remediation:restart-api").height == 1
    remediator([], t0 + timedelta(seconds=20))  # the alert resolved
    assert [a.status for a in sent] == ["firing", "resolved"]
