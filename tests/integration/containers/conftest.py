"""Fixtures for the containers collector: the session's podman engine, containers a test creates, collectors."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import polars as pl
import pytest

from collectors.containers import ContainerCollector, ContainerOptions
from qwq_core.collector import CollectorContext
from qwq_core.model import Event
from tests.services.podman import Containers, PodmanEngine

HOST = "testhost"


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
