"""Converge an app's containers, networks and volumes to a desired set through the Docker Engine API.

:func:`diff` (read-only) compares :class:`Desired` with what the engine has and lists the
:class:`~qwq_core.actions.Change`\\ s; :class:`Deployment` applies them and remembers everything it did so
:meth:`Deployment.rollback` can undo it. A container whose configuration changed is *replaced*: the old one
is stopped and renamed aside (kept, not removed), the new one created under the canonical name, and only
when the app is healthy are the old ones removed; otherwise the new ones go and the old ones come back.
A container that publishes no fixed host port is started before its predecessor stops, one replica at a
time, each health-gated — a rolling update of a multi-replica service.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from docker.errors import APIError, DockerException, NotFound

from actions.apps.compose import (
    APP_LABEL,
    HASH_LABEL,
    PROJECT_LABEL,
    ContainerSpec,
    Project,
    config_hash,
    create_kwargs,
)
from qwq_core.actions import Change
from qwq_core.errors import ActionError

log = logging.getLogger(__name__)
OLD_SUFFIX = ".qwq-old"


@dataclass(frozen=True)
class Desired:
    """What one app should look like on the engine."""

    app: str
    project: Project
    specs: tuple[ContainerSpec, ...]
    gated: frozenset[str]
    """Services whose health gates the app (empty: every service with a health check)."""
    health_timeout: float


def diff(api: Any, desired: Desired) -> list[Change]:
    """The changes that would bring the engine to ``desired`` (read-only)."""
    changes: list[Change] = []
    for network in desired.project.networks:
        name = desired.project.network_name(network)
        if not _exists(api.inspect_network, name):
            changes.append(Change("create", f"network:{name}", f"create network {name}"))
    for volume in desired.project.volumes:
        name = desired.project.volume_name(volume)
        if not _exists(api.inspect_volume, name):
            changes.append(Change("create", f"volume:{name}", f"create volume {name}"))
    existing = {c["Names"][0].lstrip("/"): c for c in app_containers(api, desired.app)}
    for spec in desired.specs:
        change = _container_change(spec, existing.get(spec.name))
        if change is not None:
            changes.append(change)
    wanted = {spec.name for spec in desired.specs}
    for name in sorted(existing):
        if name not in wanted and not name.endswith(OLD_SUFFIX):
            changes.append(Change("delete", f"container:{name}", f"remove {name} (no longer in the app)"))
    return changes


def _container_change(spec: ContainerSpec, current: Mapping[str, Any] | None) -> Change | None:
    target, details = f"container:{spec.name}", {"image": spec.image, "service": spec.service}
    if current is None:
        return Change("create", target, f"create and start {spec.name} from {spec.image}", details)
    if (current.get("Labels") or {}).get(HASH_LABEL) != config_hash(spec):
        return Change("update", target, f"replace {spec.name} with {spec.image} (configuration changed)", details)
    if current.get("State") != "running":
        return Change("start", target, f"start {spec.name} (it is {current.get('State')})", details)
    return None


def _exists(inspect: Callable[[str], Any], name: str) -> bool:
    try:
        inspect(name)
    except NotFound:
        return False
    return True


def app_containers(api: Any, app: str) -> list[dict[str, Any]]:
    """Every container (running or not) labelled as belonging to ``app``."""
    return list(api.containers(all=True, filters={"label": f"{APP_LABEL}={app}"}))


# ---- port conflicts ----------------------------------------------------------------------------------
def port_conflicts(api: Any, app: str, ports: Sequence[tuple[int, str]]) -> list[str]:
    """Why each of ``ports`` cannot be published by ``app``: another container's binding, or a host socket.

    Ports ``app``'s own containers already publish are not conflicts (a reinstall or an upgrade).
    """
    own, others = _published(api, app)
    problems, seen = [], set()
    for port, protocol in ports:
        if (port, protocol) in seen:
            problems.append(f"port {port}/{protocol} is published twice by this app")
        seen.add((port, protocol))
        if (port, protocol) in others:
            problems.append(f"port {port}/{protocol} is already published by container {others[(port, protocol)]}")
        elif (port, protocol) not in own and not host_port_free(port, protocol):
            problems.append(f"port {port}/{protocol} is already in use on the host")
    return problems


def _published(api: Any, app: str) -> tuple[set[tuple[int, str]], dict[tuple[int, str], str]]:
    own: set[tuple[int, str]] = set()
    others: dict[tuple[int, str], str] = {}
    for container in api.containers(all=True):
        name = container["Names"][0].lstrip("/")
        mine = (container.get("Labels") or {}).get(APP_LABEL) == app
        for port in container.get("Ports") or []:
            if port.get("PublicPort"):
                key = (int(port["PublicPort"]), port.get("Type", "tcp"))
                if mine:
                    own.add(key)
                else:
                    others[key] = name
    return own, others


def host_port_free(port: int, protocol: str = "tcp") -> bool:
    """True when nothing on the host holds ``port``: we can bind it on every address ourselves."""
    kind = socket.SOCK_STREAM if protocol == "tcp" else socket.SOCK_DGRAM
    with socket.socket(socket.AF_INET, kind) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


# ---- applying ----------------------------------------------------------------------------------------
@dataclass
class Deployment:
    """Applies :class:`Desired` states and records every step for :meth:`rollback`."""

    api: Any
    poll: float = 0.5
    progress: Callable[[str], None] = lambda message: None
    created_networks: list[str] = field(default_factory=list)
    created_volumes: list[str] = field(default_factory=list)
    created_containers: list[str] = field(default_factory=list)
    replaced: list[tuple[str, str]] = field(default_factory=list)
    """(old container id, canonical name) of containers renamed aside."""
    removed: list[str] = field(default_factory=list)

    def converge(self, desired: Desired) -> None:
        """Create what is missing, replace what changed, start what stopped; wait for health throughout."""
        labels = {PROJECT_LABEL: desired.project.name, APP_LABEL: desired.app}
        for network in desired.project.networks:
            self._ensure_network(desired.project.network_name(network), labels)
        for volume in desired.project.volumes:
            self._ensure_volume(desired.project.volume_name(volume), labels)
        existing = {c["Names"][0].lstrip("/"): c for c in app_containers(self.api, desired.app)}
        deadline = time.monotonic() + desired.health_timeout
        for spec in desired.specs:
            self._converge_one(spec, existing.get(spec.name), desired, deadline)
        for name, container in existing.items():
            if name not in {s.name for s in desired.specs} and not name.endswith(OLD_SUFFIX):
                self._set_aside(container["Id"], name)
        self.wait_healthy([s.name for s in desired.specs if _gated(s, desired)], deadline)

    def _converge_one(
        self, spec: ContainerSpec, current: Mapping[str, Any] | None, desired: Desired, deadline: float
    ) -> None:
        change = _container_change(spec, current)
        if change is None:
            return
        self.progress(change.summary)
        if change.verb == "start" and current is not None:
            self.api.start(current["Id"])
        elif current is None:
            self._create(spec)
        elif any(p.host_port for p in spec.ports):  # the port is taken until the old one stops
            self._set_aside(current["Id"], spec.name)
            self._create(spec)
        else:  # start first, then retire the old replica: no moment without a serving replica
            new_id = self._create(spec, name=f"{spec.name}.qwq-new")
            self.wait_healthy([new_id], deadline)
            self._set_aside(current["Id"], spec.name)
            self.api.rename(new_id, spec.name)
        if _gated(spec, desired) or _awaited(spec, desired):
            self.wait_healthy([spec.name], deadline)

    def _ensure_network(self, name: str, labels: Mapping[str, str]) -> None:
        if not _exists(self.api.inspect_network, name):
            self.progress(f"create network {name}")
            self.api.create_network(name, driver="bridge", labels=dict(labels))
            self.created_networks.append(name)

    def _ensure_volume(self, name: str, labels: Mapping[str, str]) -> None:
        if not _exists(self.api.inspect_volume, name):
            self.progress(f"create volume {name}")
            self.api.create_volume(name, labels=dict(labels))
            self.created_volumes.append(name)

    def _create(self, spec: ContainerSpec, *, name: str | None = None) -> str:
        created = self.api.create_container(**create_kwargs(self.api, spec, name=name))
        container_id = str(created["Id"])
        self.created_containers.append(container_id)
        for network in spec.networks[1:]:
            self.api.connect_container_to_network(container_id, network, aliases=spec.aliases or None)
        self.api.start(container_id)
        return container_id

    def _set_aside(self, container_id: str, name: str) -> None:
        self.api.stop(container_id)  # the container's own stop_timeout
        self.api.rename(container_id, f"{name}{OLD_SUFFIX}")
        self.replaced.append((container_id, name))

    def wait_healthy(self, containers: Sequence[str], deadline: float) -> None:
        """Wait until each container is healthy (running, for one without a health check).

        Fails fast when one exits or turns unhealthy; raises ActionError naming the laggards at the deadline.
        """
        pending = list(containers)
        while pending:
            states = {c: container_health(self.api, c) for c in pending}
            bad = {c: s for c, s in states.items() if s in ("unhealthy", "exited", "dead", "missing")}
            if bad:
                raise ActionError("not healthy: " + ", ".join(f"{_short(c)} is {s}" for c, s in bad.items()))
            pending = [c for c, s in states.items() if s != "healthy"]
            if pending and time.monotonic() >= deadline:
                raise ActionError("not healthy in time: " + ", ".join(f"{_short(c)} is {states[c]}" for c in pending))
            if pending:
                time.sleep(self.poll)

    def commit(self) -> None:
        """Success: remove the containers set aside."""
        for container_id, _ in self.replaced:
            _remove(self.api, container_id)

    def rollback(self) -> list[str]:
        """Undo everything in reverse: new containers out, old ones back and started, created networks and
        volumes removed. Returns what was undone (for :class:`ActionError`)."""
        undone: list[str] = []
        for container_id in reversed(self.created_containers):
            if _remove(self.api, container_id):
                undone.append(f"removed container {_short(container_id)}")
        for container_id, name in reversed(self.replaced):
            try:
                self.api.rename(container_id, name)
                self.api.start(container_id)
                undone.append(f"restored {name}")
            except DockerException as exc:
                log.warning("could not restore %s: %s", name, exc)
        for network in reversed(self.created_networks):
            if _quietly(self.api.remove_network, network):
                undone.append(f"removed network {network}")
        for volume in reversed(self.created_volumes):
            if _quietly(self.api.remove_volume, volume):
                undone.append(f"removed volume {volume}")
        return undone


def container_health(api: Any, container: str) -> str:
    """``healthy``, ``starting``, ``unhealthy``, or the state (``exited``, ``missing``) when not running.

    A running container without a health check counts as ``healthy``.
    """
    try:
        state = api.inspect_container(container)["State"]
    except NotFound:
        return "missing"
    if not state.get("Running"):
        return str(state.get("Status") or "exited")
    health = state.get("Health") or {}
    status = health.get("Status") or ""
    return "healthy" if status in ("", "none") else status


def _gated(spec: ContainerSpec, desired: Desired) -> bool:
    return spec.health is not None and (not desired.gated or spec.service in desired.gated)


def _awaited(spec: ContainerSpec, desired: Desired) -> bool:
    """A later service waits for this one (``depends_on: condition: service_healthy``)."""
    return any(s.depends_on.get(spec.service) == "service_healthy" for s in desired.specs)


def remove_app(api: Any, app: str, *, volumes: bool) -> list[str]:
    """Remove every container, network (and volume, if asked) labelled for ``app``; returns what went."""
    gone = [f"container:{c['Names'][0].lstrip('/')}" for c in app_containers(api, app) if _remove(api, c["Id"])]
    label = {"label": f"{APP_LABEL}={app}"}
    for network in api.networks(filters=label):
        if _quietly(api.remove_network, network["Name"]):
            gone.append(f"network:{network['Name']}")
    if volumes:
        for volume in (api.volumes(filters=label) or {}).get("Volumes") or []:
            if _quietly(api.remove_volume, volume["Name"]):
                gone.append(f"volume:{volume['Name']}")
    return gone


def _remove(api: Any, container: str) -> bool:
    try:
        api.remove_container(container, force=True, v=False)
    except NotFound:
        return False
    return True


def _quietly(call: Callable[[str], Any], name: str) -> bool:
    try:
        call(name)
    except (NotFound, APIError) as exc:
        log.debug("could not remove %s: %s", name, exc)
        return False
    return True


def _short(container: str) -> str:
    return container[:12] if len(container) == 64 else container


__all__: Sequence[str] = [
    "Deployment",
    "Desired",
    "app_containers",
    "container_health",
    "diff",
    "host_port_free",
    "port_conflicts",
    "remove_app",
]
