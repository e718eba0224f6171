"""Restart actions against the real Docker-API engine: containers, Compose projects, systemd units."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import docker
import pytest

from actions.engine import Engine, audit
from actions.restart import SYSTEMD_RUNTIME, systemd_unavailable
from qwq_core.errors import ActionError, ConfigError
from qwq_core.store import LocalStore
from tests.integration.actions.conftest import Containers
from tests.services.podman import PodmanEngine

pytestmark = [pytest.mark.service]
FAST = {"stop_timeout": 0, "settle": 0.5}
"""busybox sleep as PID 1 ignores SIGTERM: do not wait the default 10 s for a clean stop."""


def started_at(client: docker.DockerClient, name: str) -> str:
    return str(client.containers.get(name).attrs["State"]["StartedAt"])


@contextmanager
def health_ticker(engine: PodmanEngine, name: str) -> Iterator[None]:
    """Run the container's health check every 0.3 s (Docker does this on its own; podman needs systemd)."""
    stop = threading.Event()

    def tick() -> None:
        while not stop.wait(0.3):
            engine.healthcheck(name)

    thread = threading.Thread(target=tick, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def test_restart_container_verified_and_audited(
    containers: Containers, docker_client: docker.DockerClient, make_engine: Callable[..., Engine], store: LocalStore
) -> None:
    containers.run("web")
    name = containers.name("web")
    before = started_at(docker_client, name)
    run = make_engine().run("containers.restart", {"container": name, **FAST}, actor="cli:test")
    assert run.outcome == "applied", run.error
    assert run.plan.target == f"container:{name}"
    assert [c.verb for c in run.plan.changes] == ["restart"]
    assert docker_client.containers.get(name).status == "running"
    assert started_at(docker_client, name) != before
    trail = audit(store, action="containers.restart")
    assert trail.height == 1
    assert trail.row(0, named=True)["actor"] == "cli:test"
    assert trail.row(0, named=True)["outcome"] == "applied"
    assert trail.row(0, named=True)["run_id"] == run.audit_id


def test_dry_run_changes_nothing(
    containers: Containers, docker_client: docker.DockerClient, make_engine: Callable[..., Engine], store: LocalStore
) -> None:
    containers.run("web")
    name = containers.name("web")
    before = started_at(docker_client, name)
    run = make_engine().run("containers.restart", {"container": name, **FAST}, actor="cli:test", dry_run=True)
    assert run.outcome == "planned"
    assert len(run.plan.changes) == 1
    assert started_at(docker_client, name) == before
    assert audit(store)["outcome"].to_list() == ["planned"]


def test_stopped_container_is_started(
    containers: Containers, docker_client: docker.DockerClient, make_engine: Callable[..., Engine]
) -> None:
    containers.run("stopped")
    name = containers.name("stopped")
    docker_client.containers.get(name).stop(timeout=0)
    run = make_engine().run("containers.restart", {"container": name, **FAST}, actor="cli:test")
    assert run.outcome == "applied", run.error
    assert run.plan.changes[0].verb == "start"
    assert docker_client.containers.get(name).status == "running"


def test_container_that_keeps_dying_fails_after_retries(
    containers: Containers, make_engine: Callable[..., Engine], store: LocalStore
) -> None:
    containers.run("dying", ["sh", "-c", "exit 3"])
    run = make_engine(retry_backoff=0.05).run(
        "containers.restart", {"container": containers.name("dying"), "verify_timeout": 5, **FAST}, actor="cli:test"
    )
    assert run.outcome == "failed"
    assert run.attempts == 3  # retry-safe: the first try plus two retries
    assert "exit code 3" in (run.error or "")
    row = audit(store).row(0, named=True)
    assert (row["outcome"], row["attempts"]) == ("failed", 3)
    with pytest.raises(ActionError):
        run.raise_for_outcome()


@pytest.mark.slow
def test_health_checked_container_must_be_healthy(
    engine: PodmanEngine, containers: Containers, make_engine: Callable[..., Engine]
) -> None:
    check = {"test": ["CMD", "true"], "interval": 3_600_000_000_000, "retries": 1}
    containers.run("healthy", healthcheck=check)
    bad = {"test": ["CMD", "false"], "interval": 3_600_000_000_000, "retries": 1}
    containers.run("sick", healthcheck=bad)
    actions = make_engine(retry_backoff=0.05)
    with health_ticker(engine, containers.name("healthy")):
        good = actions.run("containers.restart", {"container": containers.name("healthy"), **FAST}, actor="t")
    assert good.outcome == "applied", good.error
    assert good.result["health"] == "healthy"
    with health_ticker(engine, containers.name("sick")):
        sick = {"container": containers.name("sick"), "verify_timeout": 10, **FAST}
        run = actions.run("containers.restart", sick, actor="t")
    assert run.outcome == "failed"
    assert "unhealthy" in (run.error or "")


@pytest.mark.slow
def test_compose_project_restarts_dependencies_first(
    containers: Containers, docker_client: docker.DockerClient, make_engine: Callable[..., Engine]
) -> None:
    project = containers.prefix
    for service, depends in (("web", "api:service_started:false"), ("api", "db:service_healthy:true"), ("db", "")):
        labels = {"com.docker.compose.project": project, "com.docker.compose.service": service}
        if depends:
            labels["com.docker.compose.depends_on"] = depends
        containers.run(service, labels=labels)
    before = {s: started_at(docker_client, containers.name(s)) for s in ("web", "api", "db")}
    run = make_engine().run("compose.restart", {"project": project, **FAST}, actor="cli:test")
    assert run.outcome == "applied", run.error
    order = [containers.name(s) for s in ("db", "api", "web")]
    assert [c.target for c in run.plan.changes] == [f"container:{n}" for n in order]
    assert run.result["restarted"] == order
    assert all(started_at(docker_client, containers.name(s)) != t for s, t in before.items())


def test_missing_container_is_refused_and_audited(make_engine: Callable[..., Engine], store: LocalStore) -> None:
    with pytest.raises(ActionError, match="no container named 'nope-"):
        make_engine().run("containers.restart", {"container": "nope-404"}, actor="cli:test")
    row = audit(store).row(0, named=True)
    assert (row["outcome"], row["stage"], row["target"]) == ("failed", "plan", "container:nope-404")


def test_invalid_params_are_config_errors(make_engine: Callable[..., Engine], store: LocalStore) -> None:
    with pytest.raises(ConfigError, match="params.stop_timeout"):
        make_engine().run("containers.restart", {"container": "x", "stop_timeout": -1}, actor="t")
    assert audit(store).height == 0  # nothing was attempted


@pytest.mark.skipif(SYSTEMD_RUNTIME.is_dir(), reason="systemd runs here; the disabled path cannot be shown")
def test_systemd_restart_disabled_without_systemd(make_engine: Callable[..., Engine]) -> None:
    assert systemd_unavailable() is not None
    with pytest.raises(ActionError, match="systemd is not running"):
        make_engine().run("systemd.restart", {"unit": "nginx.service"}, actor="t", dry_run=True)
