"""Fixtures for the action tests (engine, restarts, policies, app store): the session's Docker-API engine,
a client for it, containers one test creates, and an action context on a fresh store."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import docker
import pytest

from actions.engine import Engine
from actions.restart import ComposeRestart, ContainerRestart, SystemdRestart
from qwq_core.store import LocalStore
from tests.services.podman import PodmanEngine, missing, shared_engine


@pytest.fixture(scope="session")
def engine() -> Iterator[PodmanEngine]:
    """The session's Docker-API engine (podman's service) with the busybox image; skipped without podman."""
    reason = missing()
    if reason:
        pytest.skip(reason)
    with shared_engine() as shared:
        yield shared


@pytest.fixture(scope="session")
def docker_client(engine: PodmanEngine) -> Iterator[docker.DockerClient]:
    """A high-level Docker SDK client on the session's engine (what actions get from ``context.docker()``)."""
    client = docker.DockerClient(base_url=engine.url, version="auto", timeout=60)
    yield client
    client.close()


class Containers:
    """Containers one test creates on the shared engine, named ``<prefix>-<name>`` and removed afterwards."""

    def __init__(self, engine: PodmanEngine) -> None:
        self.engine = engine
        self.prefix = f"t{uuid.uuid4().hex[:8]}"
        self.ids: list[str] = []

    def run(self, name: str, command: Sequence[str] = ("sleep", "3600"), **options: Any) -> str:
        """Create and start ``<prefix>-<name>``; returns its id. Options as :meth:`PodmanEngine.run`."""
        container_id = self.engine.run(command, name=self.name(name), **options)
        self.ids.append(container_id)
        return container_id

    def name(self, name: str) -> str:
        """The full name of this test's container ``name``."""
        return f"{self.prefix}-{name}"

    def remove_all(self) -> None:
        """Force-remove every container this test created."""
        self.engine.remove(self.ids)


@pytest.fixture
def containers(engine: PodmanEngine) -> Iterator[Containers]:
    """A factory of containers for one test, all removed when it ends (failed or not)."""
    created = Containers(engine)
    yield created
    created.remove_all()


RESTART_ACTIONS = {cls.name: cls for cls in (ContainerRestart, ComposeRestart, SystemdRestart)}


@pytest.fixture
def make_engine(engine: PodmanEngine, store: LocalStore, tmp_path: Path) -> Iterator[Callable[..., Engine]]:
    """Build an action :class:`Engine` on the test's store and the session's Docker engine, with the restart
    actions plus any given as ``extra``; closed afterwards. Keyword options go to :class:`Engine`."""
    built: list[Engine] = []

    def make(extra: Mapping[str, Any] | None = None, **options: Any) -> Engine:
        options.setdefault("home", tmp_path / "home")
        options.setdefault("docker_url", engine.url)
        made = Engine(store, extra={**RESTART_ACTIONS, **(extra or {})}, **options)
        built.append(made)
        return made

    yield make
    for made in built:
        made.close()
