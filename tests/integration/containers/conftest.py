"""Fixtures for the containers collector: the session's podman engine, containers a test creates, collectors."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

import polars as pl
import pytest

from collectors.containers import ContainerCollector, ContainerOptions
from qwq_core.collector import CollectorContext
from qwq_core.model import Event
from tests.services.podman import PodmanEngine, missing, shared_engine

HOST = "testhost"


@pytest.fixture(scope="session")
def engine() -> Iterator[PodmanEngine]:
    """The session's Docker-API engine (podman's service) with the busybox image; skipped without podman."""
    reason = missing()
    if reason:
        pytest.skip(reason)
    with shared_engine() as shared:
        yield shared


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
        return f"{self.prefix}-{name}"

    def remove_all(self) -> None:
        self.engine.remove(self.ids)


@pytest.fixture
def containers(engine: PodmanEngine) -> Iterator[Containers]:
    """A factory of containers for one test, all removed when it ends (failed or not)."""
    created = Containers(engine)
    yield created
    created.remove_all()


class Collected:
    """A collector under test and the events it emitted (from polls and from its event thread)."""

    def __init__(self, collector: ContainerCollector, events: list[Event]) -> None:
        self.collector = collector
        self.events = events

    def collect(self) -> pl.DataFrame:
        return self.collector.collect(datetime.now(UTC))

    def kinds(self) -> list[str]:
        return [event.kind for event in self.events]


@pytest.fixture
def make_collector() -> Iterator[Callable[..., Collected]]:
    """Build ``ContainerCollector(ContainerOptions(**options))``; every one built is closed afterwards."""
    built: list[ContainerCollector] = []

    def make(**options: Any) -> Collected:
        events: list[Event] = []
        collector = ContainerCollector(ContainerOptions(**options), CollectorContext("containers", HOST, events.append))
        built.append(collector)
        return Collected(collector, events)

    yield make
    for collector in built:
        collector.close()


@pytest.fixture
def collected(engine: PodmanEngine, containers: Containers, make_collector: Callable[..., Collected]) -> Collected:
    """A collector on the session's engine that watches only this test's containers."""
    return make_collector(url=engine.url, include=[f"{containers.prefix}-*"])
