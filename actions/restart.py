"""Restart actions: a container, every container of a Compose project, a systemd unit.

Each one verifies what it did: a container counts as restarted when it runs again and, if it has a
health check, reports healthy; a unit when ``systemctl is-active`` says ``active``. A restart has nothing
to roll back, so a failed verification raises :class:`ActionError` with the container's state. Restarts
are safe to retry, so the engine retries them with backoff.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import docker
from docker.errors import APIError, NotFound
from docker.models.containers import Container
from pydantic import BaseModel, Field

from qwq_core.actions import ActionContext, Change, Plan
from qwq_core.errors import ActionError

PROJECT_LABEL = "com.docker.compose.project"
SERVICE_LABEL = "com.docker.compose.service"
DEPENDS_LABEL = "com.docker.compose.depends_on"
NUMBER_LABEL = "com.docker.compose.container-number"
SYSTEMD_RUNTIME = Path("/run/systemd/system")
"""Exists exactly when systemd is the running init (what ``sd_booted()`` checks)."""
_POLL = 0.2


def _as(params: BaseModel, model: type[Any]) -> Any:
    if not isinstance(params, model):
        raise TypeError(f"expected {model.__name__} params, got {type(params).__name__}")
    return params


# ---- containers -----------------------------------------------------------------------------------------
def container_state(container: Container) -> dict[str, Any]:
    """The facts a restart decision needs: status, health (or None), exit code, OOM kill, restart count."""
    state = container.attrs.get("State") or {}
    health = state.get("Health") or state.get("Healthcheck") or {}
    return {
        "status": state.get("Status") or container.status,
        "health": (health.get("Status") or "starting") if has_healthcheck(container) else None,
        "exit_code": state.get("ExitCode"),
        "oom_killed": bool(state.get("OOMKilled")),
        "restart_count": container.attrs.get("RestartCount", 0),
    }


def has_healthcheck(container: Container) -> bool:
    """True when the container's image or config defines a health check (and does not disable it)."""
    check = (container.attrs.get("Config") or {}).get("Healthcheck") or {}
    test = check.get("Test") or []
    return bool(test) and test[0] != "NONE"


def wait_healthy(
    container: Container, timeout: float, *, settle: float = 0.0, clock: Callable[[], float] = time.monotonic
) -> None:
    """Wait until ``container`` runs (and is healthy, if it has a check) and has stayed so for ``settle``
    seconds; :class:`ActionError` otherwise.

    ``settle`` catches a process that starts and dies at once (a bad config): "running" is briefly true.
    An exited container or an ``unhealthy`` report fails at once rather than waiting out the timeout.
    """
    deadline = clock() + timeout
    ready_since: float | None = None
    while True:
        state = _reload(container)
        if state["status"] in ("exited", "dead") or state["health"] == "unhealthy":
            raise ActionError(f"container {container.name} is {_describe(state)}", target=f"container:{container.name}")
        ready = state["status"] == "running" and state["health"] in (None, "healthy")
        ready_since = (ready_since or clock()) if ready else None
        if ready_since is not None and clock() - ready_since >= settle:
            return
        if clock() >= deadline:
            raise ActionError(
                f"container {container.name} not ready after {timeout:g}s: {_describe(state)}",
                target=f"container:{container.name}",
            )
        time.sleep(_POLL)


def _reload(container: Container) -> dict[str, Any]:
    try:
        container.reload()
    except NotFound:
        raise ActionError(f"container {container.name} disappeared", target=f"container:{container.name}") from None
    return container_state(container)


def _describe(state: Mapping[str, Any]) -> str:
    text = str(state["status"])
    if state["health"]:
        text += f" ({state['health']})"
    if state["status"] in ("exited", "dead"):
        text += f", exit code {state['exit_code']}" + (", OOM-killed" if state["oom_killed"] else "")
    return text


def _find(client: docker.DockerClient, name: str) -> Container:
    try:
        return client.containers.get(name)
    except NotFound:
        raise ActionError(f"no container named {name!r}", target=f"container:{name}") from None
    except APIError as exc:
        raise ActionError(f"cannot inspect container {name!r}: {exc.explanation or exc}") from exc


def _restart(container: Container, timings: RestartTimings) -> dict[str, Any]:
    try:
        container.restart(timeout=timings.stop_timeout)
    except APIError as exc:
        raise ActionError(f"restarting {container.name} failed: {exc.explanation or exc}") from exc
    wait_healthy(container, timings.verify_timeout, settle=timings.settle)
    return {"container": container.name, "id": container.id, **container_state(container)}


class RestartTimings(BaseModel):
    """How long a container restart may take: the parameters every container restart shares."""

    stop_timeout: int = Field(default=10, ge=0, description="seconds to wait for a clean stop before killing")
    verify_timeout: float = Field(
        default=60, gt=0, description="seconds per container to wait for running (and healthy, if checked)"
    )
    settle: float = Field(default=1.0, ge=0, description="seconds each must then stay up to count as restarted")


class ContainerRestartParams(RestartTimings):
    """Parameters of ``containers.restart``."""

    container: str = Field(min_length=1, description="container name or id")


class ContainerRestart:
    """``containers.restart``: restart one container and verify it runs (healthy, if it has a check)."""

    name: ClassVar[str] = "containers.restart"
    description: ClassVar[str] = "Restart a container by name or id; verified running (and healthy if checked)."
    Params: ClassVar[type[BaseModel]] = ContainerRestartParams
    retry_safe: ClassVar[bool] = True
    timeout: ClassVar[float] = 180.0

    def plan(self, params: BaseModel, context: ActionContext) -> Plan:
        """One restart change for the named container (never empty: a restart is always a change)."""
        p = _as(params, ContainerRestartParams)
        container = _find(context.docker(), p.container)
        state = container_state(container)
        change = Change(
            "restart" if state["status"] == "running" else "start",
            f"container:{container.name}",
            f"restart {container.name} (now {_describe(state)})",
            {"id": container.id, **state},
        )
        return Plan(self.name, f"container:{container.name}", p.model_dump(), (change,))

    def apply(self, plan: Plan, params: BaseModel, context: ActionContext) -> Mapping[str, Any]:
        """Restart and verify."""
        p = _as(params, ContainerRestartParams)
        context.progress(0.1, f"restarting {p.container}")
        result = _restart(_find(context.docker(), p.container), p)
        context.progress(1.0, f"{p.container} is {_describe(result)}")
        return result


# ---- compose projects -----------------------------------------------------------------------------------
def compose_order(containers: Sequence[Container]) -> list[Container]:
    """The project's containers ordered dependencies first (``com.docker.compose.depends_on``, whose value
    is ``service:condition:restart`` entries joined by commas), then by service and replica number."""
    by_service: dict[str, list[Container]] = {}
    for container in containers:
        by_service.setdefault(container.labels.get(SERVICE_LABEL, container.name), []).append(container)
    needs = {service: _depends_on(members[0].labels) & set(by_service) for service, members in by_service.items()}
    ordered: list[Container] = []
    done: set[str] = set()
    while len(done) < len(by_service):
        ready = sorted(s for s in by_service if s not in done and needs[s] <= done)
        if not ready:
            cycle = ", ".join(sorted(set(by_service) - done))
            raise ActionError(f"dependency cycle among services {cycle}")
        for service in ready:
            ordered += sorted(by_service[service], key=lambda c: int(c.labels.get(NUMBER_LABEL, "0") or 0))
            done.add(service)
    return ordered


def _depends_on(labels: Mapping[str, str]) -> set[str]:
    value = labels.get(DEPENDS_LABEL, "")
    return {entry.split(":", 1)[0].strip() for entry in value.split(",") if entry.strip()}


class ComposeRestartParams(RestartTimings):
    """Parameters of ``compose.restart``."""

    project: str = Field(min_length=1, description="Compose project name (the com.docker.compose.project label)")


class ComposeRestart:
    """``compose.restart``: restart every container of a Compose project, dependencies first."""

    name: ClassVar[str] = "compose.restart"
    description: ClassVar[str] = "Restart every container of a Compose project in dependency order, verifying each."
    Params: ClassVar[type[BaseModel]] = ComposeRestartParams
    retry_safe: ClassVar[bool] = True
    timeout: ClassVar[float] = 600.0

    def _containers(self, client: docker.DockerClient, project: str) -> list[Container]:
        found = client.containers.list(all=True, filters={"label": f"{PROJECT_LABEL}={project}"})
        if not found:
            raise ActionError(f"no containers of Compose project {project!r}", target=f"compose:{project}")
        return compose_order(found)

    def plan(self, params: BaseModel, context: ActionContext) -> Plan:
        """One restart change per container, in the order apply will follow."""
        p = _as(params, ComposeRestartParams)
        changes = tuple(
            Change("restart", f"container:{c.name}", f"restart {c.name} ({c.labels.get(SERVICE_LABEL, '?')})")
            for c in self._containers(context.docker(), p.project)
        )
        return Plan(self.name, f"compose:{p.project}", p.model_dump(), changes)

    def apply(self, plan: Plan, params: BaseModel, context: ActionContext) -> Mapping[str, Any]:
        """Restart each container and verify it before moving to the next (its dependents need it up)."""
        p = _as(params, ComposeRestartParams)
        ordered = self._containers(context.docker(), p.project)
        restarted = []
        for index, container in enumerate(ordered):
            context.progress(index / len(ordered), f"restarting {container.name}")
            restarted.append(_restart(container, p)["container"])
        context.progress(1.0, f"{len(restarted)} containers restarted")
        return {"project": p.project, "restarted": restarted}


# ---- systemd units --------------------------------------------------------------------------------------
UNIT_NAME = re.compile(r"^[A-Za-z0-9:_.@\\-]+$")


def systemd_unavailable(runtime_dir: Path = SYSTEMD_RUNTIME) -> str | None:
    """Why units cannot be restarted here (systemd not running, no systemctl), or None."""
    if not runtime_dir.is_dir():
        return f"systemd is not running on this host ({runtime_dir} does not exist): systemd.restart is disabled"
    if shutil.which("systemctl") is None:
        return "systemctl is not installed: systemd.restart is disabled"
    return None


def _systemctl(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(["systemctl", *args], capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise ActionError(f"systemctl {' '.join(args)} timed out after {timeout:g}s") from exc


class SystemdRestartParams(BaseModel):
    """Parameters of ``systemd.restart``."""

    unit: str = Field(pattern=UNIT_NAME.pattern, description="unit name, e.g. nginx.service")
    verify_timeout: float = Field(default=60, gt=0, description="seconds to wait for the unit to be active")


class SystemdRestart:
    """``systemd.restart``: restart a unit with ``systemctl`` and verify it is active."""

    name: ClassVar[str] = "systemd.restart"
    description: ClassVar[str] = "Restart a systemd unit and verify it is active (where systemd runs)."
    Params: ClassVar[type[BaseModel]] = SystemdRestartParams
    retry_safe: ClassVar[bool] = True
    runtime_dir: ClassVar[Path] = SYSTEMD_RUNTIME

    def plan(self, params: BaseModel, context: ActionContext) -> Plan:
        """A restart change for a unit that exists; :class:`ActionError` where systemd is not running."""
        p = _as(params, SystemdRestartParams)
        target = f"unit:{p.unit}"
        reason = systemd_unavailable(self.runtime_dir)
        if reason:
            raise ActionError(reason, target=target)
        shown = _systemctl("show", "--property=LoadState,ActiveState", p.unit).stdout
        state = dict(line.split("=", 1) for line in shown.splitlines() if "=" in line)
        if state.get("LoadState") in (None, "not-found"):
            raise ActionError(f"unit {p.unit} not found", target=target)
        change = Change("restart", target, f"restart {p.unit} (now {state.get('ActiveState', '?')})", state)
        return Plan(self.name, target, p.model_dump(), (change,))

    def apply(self, plan: Plan, params: BaseModel, context: ActionContext) -> Mapping[str, Any]:
        """``systemctl restart`` then wait for ``is-active``."""
        p = _as(params, SystemdRestartParams)
        done = _systemctl("restart", p.unit, timeout=p.verify_timeout)
        if done.returncode != 0:
            raise ActionError(f"systemctl restart {p.unit} failed: {done.stderr.strip()}", target=plan.target)
        deadline = time.monotonic() + p.verify_timeout
        while (state := _systemctl("is-active", p.unit).stdout.strip()) != "active":
            if state == "failed" or time.monotonic() >= deadline:
                raise ActionError(f"unit {p.unit} is {state} after restart", target=plan.target)
            time.sleep(_POLL)
        return {"unit": p.unit, "state": state}


__all__: Sequence[str] = [
    "ComposeRestart",
    "ContainerRestart",
    "SystemdRestart",
    "compose_order",
    "container_state",
    "has_healthcheck",
    "systemd_unavailable",
    "wait_healthy",
]
