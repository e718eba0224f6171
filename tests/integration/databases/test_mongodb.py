"""The mongodb collector against a real mongod, where one exists: MongoDB is not in Debian.

A ``mongod`` on PATH is started on a free loopback port; otherwise ``MONGODB_TEST_URI`` may name a server
to use (the tests only read and insert into a ``qwq_test`` database). Without either they skip. What needs
no server runs everywhere: a refused target here, a hung one and leaked secrets in test_failures.py, and
the mapping of serverStatus and replSetGetStatus replies in tests/unit/test_database_collectors.py.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pymongo
import pytest

from collectors.mongodb import METRICS, MongodbCollector
from qwq_core.model import Event
from tests.integration.databases.conftest import Factory, collect, names, value
from tests.services.databases import Mongod
from tests.support import free_port

pytestmark = pytest.mark.service

NO_SERVER = "no MongoDB server: MongoDB is not in Debian; put mongod on PATH or set MONGODB_TEST_URI"


@pytest.fixture(scope="module")
def mongodb_uri() -> Iterator[str]:
    """A reachable server's URI."""
    if shutil.which("mongod"):
        server = Mongod()
        try:
            server.start()
            yield f"mongodb://127.0.0.1:{server.port}/"
        finally:
            server.cleanup()
    elif os.environ.get("MONGODB_TEST_URI"):
        yield os.environ["MONGODB_TEST_URI"]
    else:
        pytest.skip(NO_SERVER)


def test_metrics_after_real_load(mongodb_uri: str, make_collector: Factory, events: list[Event]) -> None:
    collector = make_collector(MongodbCollector, {"name": "docs", "uri": mongodb_uri})
    before = collect(collector)
    with pymongo.MongoClient(mongodb_uri, serverSelectionTimeoutMS=3000) as client:
        collection = client.qwq_test.orders
        collection.insert_many([{"n": i} for i in range(100)])
        assert collection.count_documents({"n": {"$lt": 10}}) == 10
        collection.drop()
    after = collect(collector)

    assert not events
    assert value(after, "db_up", engine="mongodb", db="docs") == 1
    assert names(after) == {info.name for info in METRICS} - {"mongodb_replication_lag_seconds"}
    assert value(after, "mongodb_connections", state="current") >= 1
    assert value(after, "mongodb_connections", state="available") > 0
    assert (
        value(after, "mongodb_opcounters_total", type="insert")
        - value(before, "mongodb_opcounters_total", type="insert")
        >= 100
    )
    assert value(after, "mongodb_memory_resident_bytes") > 1024 * 1024
    assert value(after, "mongodb_network_received_bytes_total") > value(before, "mongodb_network_received_bytes_total")
    assert value(after, "mongodb_uptime_seconds") >= 0


def test_an_unreachable_server_is_one_event_with_a_stable_reason(make_collector: Factory, events: list[Event]) -> None:
    collector = make_collector(MongodbCollector, {"name": "gone", "port": free_port()}, timeout=0.5)
    frames = [collect(collector) for _ in range(3)]
    assert [value(frame, "db_up", db="gone") for frame in frames] == [0, 0, 0]
    (event,) = events  # pymongo names a new topology id in every error: left out of the reason
    assert event.attrs["reason"].startswith("ServerSelectionTimeoutError: ") and "refused" in event.attrs["reason"]
