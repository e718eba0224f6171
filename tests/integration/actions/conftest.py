"""Fixtures for the action tests (engine, restarts, policies, app store): the session's Docker-API engine,
a client for it, containers one test creates, and an action context on a fresh store."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import docker
import pytest

from actions.engine import Engine
from actions.restart import ComposeRestart, ContainerRestart, SystemdRestart
from qwq_core.store import LocalStore
from tests.services.podman import Containers, PodmanEngine


@pytest.fixture(scope="session")
def docker_client(engine: PodmanEngine) -> Iterator[docker.DockerClient]:
    """A high-level Docker SDK client on the session's engine (what actions get from ``context.docker()``)."""
    client = docker.DockerClient(base_url=engine.url, version="auto", timeout=60)
    yield client
    client.close()


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
