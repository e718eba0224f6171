"""The actions service on the real engine: REST (plan/apply/runs/audit), schedules, jobs, and the CLI."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import docker
import pytest
import typer
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from actions.engine import Engine, audit
from actions.service import ActionsOptions, ActionsService
from qwq_core.cli import actions_cli
from qwq_core.server import build_app
from qwq_core.services import ServiceContext
from qwq_core.settings import Settings
from qwq_core.store import LocalStore
from qwq_core.writer import BufferedWriter
from tests.integration.actions.conftest import RESTART_ACTIONS, Containers
from tests.services.podman import PodmanEngine

pytestmark = [pytest.mark.service]
FAST = {"stop_timeout": 0, "settle": 0.3}


@pytest.fixture
def service(store: LocalStore, tmp_path: Path, make_engine: Callable[..., Engine]) -> Iterator[ActionsService]:
    options = ActionsOptions.model_validate(
        {
            "policies": [{"name": "heal", "match": ["t*"], "params": FAST}],
            "schedules": [{"name": "nightly", "cron": "0 3 * * *", "action": "containers.restart"}],
        }
    )
    context = ServiceContext(Settings(home=tmp_path / "home"), store, BufferedWriter(store))
    built = ActionsService(options, context, engine=make_engine())
    yield built
    built.close()


@pytest.fixture
def client(service: ActionsService, store: LocalStore) -> Iterator[TestClient]:
    with TestClient(build_app(store, dashboard=False, extra_routers=[service.router()])) as opened:
        yield opened


def test_rest_lists_plans_runs_and_audits(
    client: TestClient, containers: Containers, docker_client: docker.DockerClient
) -> None:
    containers.run("web")
    name = containers.name("web")
    listed = {row["name"]: row for row in client.get("/api/v1/actions").json()}
    assert "container" in listed["containers.restart"]["params"]["properties"]
    before = docker_client.containers.get(name).attrs["State"]["StartedAt"]

    planned = client.post("/api/v1/actions/containers.restart", json={"params": {"container": name}, "dry_run": True})
    assert planned.status_code == 200, planned.text
    assert planned.json()["outcome"] == "planned"
    assert planned.json()["plan"]["changes"][0]["target"] == f"container:{name}"
    assert docker_client.containers.get(name).attrs["State"]["StartedAt"] == before

    applied = client.post("/api/v1/actions/containers.restart", json={"params": {"container": name, **FAST}})
    assert applied.json()["outcome"] == "applied", applied.text
    assert docker_client.containers.get(name).attrs["State"]["StartedAt"] != before

    runs = client.get("/api/v1/actions/runs").json()
    assert [(r["outcome"], r["fraction"]) for r in runs[:2]] == [("applied", 1.0), ("planned", 1.0)]
    trail = client.get("/api/v1/audit", params={"actor": "api"}).json()
    assert [row["outcome"] for row in trail] == ["applied", "planned"]


def test_rest_errors_map_to_status_codes(client: TestClient) -> None:
    bad = client.post("/api/v1/actions/containers.restart", json={"params": {"stop_timeout": -1}})
    assert bad.status_code == 400
    assert {issue["key"] for issue in bad.json()["error"]["issues"]} == {"params.container", "params.stop_timeout"}
    missing = client.post("/api/v1/actions/containers.restart", json={"params": {"container": "nope-404"}})
    assert missing.status_code == 409
    assert "no container named 'nope-404'" in missing.json()["error"]["message"]
    assert client.post("/api/v1/actions/no.such", json={}).status_code == 404


def test_jobs_and_schedules(
    service: ActionsService, containers: Containers, docker_client: docker.DockerClient, store: LocalStore
) -> None:
    assert {job.name for job in service.jobs()} == {"actions.heal", "actions.schedules"}
    containers.run("cron")
    name = containers.name("cron")
    service.schedules.schedules[0] = service.schedules.schedules[0].model_copy(
        update={"params": {"container": name, **FAST}}
    )
    next_time = service.schedules.upcoming()["nightly"]
    assert service.schedules.tick(next_time - timedelta(seconds=1)) == []
    (run,) = service.schedules.tick(next_time)
    assert run.outcome == "applied", run.error
    assert audit(store, actor="schedule:nightly").height == 1
    assert service.schedules.upcoming()["nightly"] == next_time + timedelta(days=1)


@pytest.mark.slow
def test_cli_plan_run_and_audit(
    engine: PodmanEngine,
    containers: Containers,
    qwq_env: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def open_engine(store: Any, settings: Settings) -> Engine:
        return Engine(store, extra=RESTART_ACTIONS, home=settings.home, docker_url=engine.url)

    monkeypatch.setattr(actions_cli, "open_engine", open_engine)
    app = typer.Typer()
    app.add_typer(actions_cli.action_app, name="action")
    app.command("audit")(actions_cli.audit_command)
    runner = CliRunner()
    containers.run("cli")
    name = containers.name("cli")
    params = [f"container={name}", "stop_timeout=0", "settle=0.3"]

    listed = runner.invoke(app, ["action", "list", "--format", "json"])
    assert listed.exit_code == 0, listed.output
    assert "containers.restart" in {row["name"] for row in json.loads(listed.stdout)}
    planned = runner.invoke(app, ["action", "plan", "containers.restart", *params])
    assert planned.exit_code == 0, planned.output
    assert f"container:{name}" in planned.stdout
    dry = runner.invoke(app, ["action", "run", "containers.restart", *params, "--dry-run"])
    assert "dry run: nothing changed" in dry.stdout
    done = runner.invoke(app, ["action", "run", "containers.restart", *params, "--format", "json"])
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout)["outcome"] == "applied"
    failed = runner.invoke(app, ["action", "run", "containers.restart", "container=nope-404"])
    assert failed.exit_code != 0

    trail = runner.invoke(app, ["audit", "--format", "json"])
    assert trail.exit_code == 0, trail.output
    rows = json.loads(trail.stdout)
    assert [row["outcome"] for row in rows] == ["failed", "applied", "planned"]
    assert all(row["actor"].startswith("cli:") for row in rows)
