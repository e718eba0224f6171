"""kill -9 during ingestion: the store opens again and loses at most the last flush interval."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from qwq_core.announce import announcement_path
from qwq_core.store import LocalStore
from tests.integration.conftest import start_server

pytestmark = [pytest.mark.service, pytest.mark.slow]

WRITER = textwrap.dedent(
    """
    import sys
    from datetime import datetime, timedelta, UTC
    import polars as pl
    from qwq_core.store import LocalStore

    store = LocalStore(sys.argv[1])
    base = datetime(2026, 11, 1, tzinfo=UTC)
    batch = 0
    while True:
        store.write(pl.DataFrame({
            "name": "crash_value",
            "ts": [base + timedelta(seconds=batch)] * 500,
            "value": [float(batch)] * 500,
            "slot": [str(i) for i in range(500)],
        }))
        print(batch, flush=True)  # acknowledged: write() returned
        batch += 1
    """
)


@pytest.mark.parametrize("kill_after", [0.7, 1.5, 2.5])
def test_every_acknowledged_batch_survives_kill_9_and_none_is_torn(tmp_path: Path, kill_after: float) -> None:
    path = tmp_path / "qwq.duckdb"
    child = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    first = child.stdout.readline()  # the kill lands mid-ingestion however slowly the interpreter starts
    time.sleep(kill_after)
    os.kill(child.pid, signal.SIGKILL)
    output, _ = child.communicate()
    acknowledged = [int(line) for line in (first + output).split()]
    assert acknowledged, "the writer never got going"
    with LocalStore(path) as store:
        counts = store.sql("SELECT value, count(*) AS n FROM points GROUP BY value ORDER BY value")
    per_batch = dict(zip(counts["value"].cast(pl.Int64).to_list(), counts["n"].to_list(), strict=True))
    assert all(per_batch.get(batch) == 500 for batch in acknowledged)  # nothing acknowledged is lost
    assert set(per_batch.values()) == {500}  # a batch is all or nothing
    assert max(per_batch) <= acknowledged[-1] + 1  # at most the one in flight besides


def test_qwq_up_killed_loses_at_most_the_last_flush_interval(tmp_path: Path) -> None:
    server = start_server(tmp_path / "home")  # host collector every 1 s, flush every 1 s
    time.sleep(4)
    killed_at = datetime.now(UTC)
    os.kill(server.process.pid, signal.SIGKILL)
    server.process.wait()
    flush, interval = timedelta(seconds=1), timedelta(seconds=1)

    with LocalStore(server.home / "qwq.duckdb") as store:
        newest = store.query("host_load1", since=killed_at - timedelta(minutes=5), until=killed_at)["ts"].max()
        assert isinstance(newest, datetime)
        # The last committed flush holds samples up to one collection interval before it.
        assert newest >= killed_at - flush - interval - timedelta(seconds=1)
        before = store.query("host_load1", since="1h").height
        assert store.rollup() is not None  # the reopened store works, writes included

    # The stale announcement of the dead server misleads nobody, and qwq starts again on the same store.
    assert announcement_path(server.home / "qwq.duckdb").exists()
    restarted = start_server(server.home)
    try:
        deadline = time.monotonic() + 15
        rows: list[dict[str, object]] = []
        while time.monotonic() < deadline and len(rows) <= before:
            time.sleep(0.5)
            rows = restarted.get("/api/v1/query", params={"metric": "host_load1", "since": "1h"}).json()["data"]
        assert len(rows) > before  # old samples kept, new ones arriving
    finally:
        restarted.stop()
