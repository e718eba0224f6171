"""The real ``qwq`` console script in subprocesses: exit codes, messages and every output format.

Each test gets its own ``QWQ_HOME``; data commands read a store file filled beforehand with LocalStore (no
server), and the ``service`` tests start a real ``qwq up``.
"""

from __future__ import annotations

import io
import json
import re
import subprocess
from datetime import datetime, timedelta
from pathlib import Path

import polars as pl
import psutil
import pytest
from polars.testing import assert_frame_equal

from qwq_core import __version__
from qwq_core.model import Event
from qwq_core.store import LocalStore
from qwq_core.timeutil import utcnow
from tests.integration.conftest import QWQ, qwq_env, start_server
from tests.support import free_port

COMMANDS = ("up", "collect", "query", "series", "events", "sql", "status", "collectors", "config")


def qwq(home: Path, *args: str, config: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run ``qwq ARGS`` with its own home (and ``config`` as its qwq.toml, if given)."""
    home.mkdir(parents=True, exist_ok=True)
    if config is not None:
        (home / "qwq.toml").write_text(config)
    return subprocess.run([QWQ, *args], env=qwq_env(home), capture_output=True, text=True, timeout=timeout)


def problems(result: subprocess.CompletedProcess[str]) -> list[str]:
    """The problem lines on stderr, checking there is no traceback."""
    assert "Traceback" not in result.stderr, result.stderr
    return [line.removeprefix("error: ") for line in result.stderr.splitlines() if line.strip()]


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


# ---- basics ------------------------------------------------------------------------------------------


def test_version(home: Path) -> None:
    result = qwq(home, "--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"qwq {__version__}"


def test_help_lists_the_commands(home: Path) -> None:
    result = qwq(home, "--help")
    assert result.returncode == 0
    listed = set(re.findall(r"^│ (\w+) ", result.stdout, re.MULTILINE))
    assert set(COMMANDS) <= listed, result.stdout


# ---- config ------------------------------------------------------------------------------------------


def test_config_check_ok_with_defaults(home: Path) -> None:
    result = qwq(home, "config", "check")
    assert result.returncode == 0, result.stderr
    assert "config OK" in result.stdout
    assert "host (host, every 5s)" in result.stdout


def test_config_check_names_every_collector(home: Path) -> None:
    config = '[collectors.node]\ntype = "prometheus"\nurls = ["http://127.0.0.1:9100/metrics"]\ninterval = "1m"\n'
    result = qwq(home, "config", "check", config=config)
    assert result.returncode == 0, result.stderr
    assert str(home / "qwq.toml") in result.stdout
    assert "node (prometheus, every 60s)" in result.stdout


INVALID = {
    "bad key": ("colour = 'blue'\n", "colour", "Extra inputs"),
    "bad duration": ("[store]\nflush_interval = 'soon'\n", "store.flush_interval", "invalid duration 'soon'"),
    "unknown collector type": ("[collectors.db]\ntype = 'oracle'\n", "collectors.db.type", "'oracle'"),
    "invalid regex": (
        "[collectors.host]\nexclude_disks = '(['\n",
        "collectors.host.exclude_disks",
        "regular expression",
    ),
    "bad collector option": (
        "[collectors.node]\ntype = 'prometheus'\nurls = ['ftp://x']\n",
        "collectors.node.urls.0",
        "URL",
    ),
}


@pytest.mark.parametrize("case", INVALID, ids=list(INVALID))
def test_config_check_reports_each_problem(home: Path, case: str) -> None:
    text, key, reason = INVALID[case]
    result = qwq(home, "config", "check", config=text)
    assert result.returncode == 2
    lines = problems(result)
    assert len(lines) == 1, lines
    source, found_key, message = lines[0].split(": ", 2)
    assert (source, found_key) == (str(home / "qwq.toml"), key)
    assert reason in message


def test_config_check_reports_collector_problems_together(home: Path) -> None:
    text = INVALID["unknown collector type"][0] + INVALID["invalid regex"][0]
    result = qwq(home, "config", "check", config=text)
    assert result.returncode == 2
    assert sorted(line.split(": ")[1] for line in problems(result)) == [
        "collectors.db.type",
        "collectors.host.exclude_disks",
    ]


def test_config_check_reports_every_problem_at_once(home: Path) -> None:
    result = qwq(home, "config", "check", config="".join(text for text, _, _ in INVALID.values()))
    assert result.returncode == 2
    assert {line.split(": ")[1] for line in problems(result)} == {key for _, key, _ in INVALID.values()}


def test_config_check_toml_syntax_error_has_line_and_column(home: Path) -> None:
    result = qwq(home, "config", "check", config='[store]\nflush_interval = "2s\n')
    assert result.returncode == 2
    (line,) = problems(result)
    assert line.startswith(f"{home / 'qwq.toml'}: line 2, column ")
    assert "invalid TOML" in line


def test_config_show_masks_secrets(home: Path) -> None:
    secret = "hunter2-do-not-print"
    result = qwq(home, "config", "show", config=f'[server]\ntoken = "{secret}"\nport = 9999\n')
    assert result.returncode == 0, result.stderr
    assert secret not in result.stdout + result.stderr
    shown = json.loads(result.stdout)
    assert shown["server"]["token"] == "**********"
    assert shown["server"]["port"] == 9999
    assert shown["home"] == str(home)
    assert "host" in shown["collectors"]


# ---- collect -----------------------------------------------------------------------------------------


def test_collect_once_json_has_host_samples(home: Path) -> None:
    result = qwq(home, "collect", "--once", "--format", "json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert [(c["collector"], c["state"]) for c in document["collectors"]] == [("host", "ok")]
    names = {s["name"] for s in document["samples"]}
    assert {"host_cpu_count", "host_memory_total_bytes", "host_load1", "host_cpu_usage_ratio"} <= names
    assert all(name.startswith("host_") for name in names)
    (cpus,) = [s for s in document["samples"] if s["name"] == "host_cpu_count"]
    assert cpus["value"] == psutil.cpu_count()
    assert document["collectors"][0]["samples"] == len(document["samples"])


def test_collect_once_with_a_down_target_is_data_not_a_failure(home: Path) -> None:
    port = free_port()
    config = f'[collectors.node]\ntype = "prometheus"\nurls = ["http://127.0.0.1:{port}/metrics"]\n'
    result = qwq(home, "collect", "--once", "--format", "json", config=config)
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert {c["collector"]: c["state"] for c in document["collectors"]} == {"host": "ok", "node": "ok"}
    up = [s for s in document["samples"] if s["name"] == "up"]
    assert [(s["job"], s["instance"], s["value"]) for s in up] == [("node", f"127.0.0.1:{port}", 0.0)]
    down = [e for e in document["events"] if e["kind"] == "target.down"]
    assert len(down) == 1 and down[0]["source"] == "node"
    assert f"127.0.0.1:{port}" in down[0]["message"]


def test_collect_once_table(home: Path) -> None:
    result = qwq(home, "collect", "--once")
    assert result.returncode == 0, result.stderr
    assert "host_cpu_count" in result.stdout and " ok " in result.stdout


def test_collect_without_once_is_bad_input(home: Path) -> None:
    result = qwq(home, "collect")
    assert result.returncode == 2
    assert "--once" in result.stderr and "Traceback" not in result.stderr


# ---- data commands over a store file -----------------------------------------------------------------


@pytest.fixture
def now() -> datetime:
    return utcnow().replace(microsecond=0)


@pytest.fixture
def filled_home(home: Path, now: datetime) -> Path:
    """A home whose store holds 20 samples of two series and two events (closed again: no server)."""
    ts = [now - timedelta(seconds=30 * (10 - i)) for i in range(10)]
    with LocalStore(home / "qwq.duckdb") as store:
        store.write(
            pl.concat(
                [
                    pl.DataFrame({"name": "host_load1", "ts": ts, "value": [i / 10 for i in range(10)], "host": h})
                    for h in ("web1", "db1")
                ]
            )
        )
        store.record(
            [
                Event("deploy.done", "v2 is out", source="ci", ts=now - timedelta(minutes=2)),
                Event(
                    "collector.failed", "host timed out", source="host", severity="error", ts=now - timedelta(minutes=1)
                ),
            ]
        )
    return home


def expected(home: Path, call: str, *args: object, **kwargs: object) -> pl.DataFrame:
    with LocalStore(home / "qwq.duckdb", read_only=True) as store:
        result: pl.DataFrame = getattr(store, call)(*args, **kwargs)
        return result


def window(now: datetime) -> list[str]:
    return ["--since", (now - timedelta(hours=1)).isoformat(), "--until", now.isoformat()]


def test_query_table(filled_home: Path) -> None:
    result = qwq(filled_home, "query", 'host_load1{host="db1"}')
    assert result.returncode == 0, result.stderr
    rows = [line for line in result.stdout.splitlines() if "host_load1" in line]
    assert len(rows) == 10 and all("db1" in row for row in rows)


def test_query_json_and_csv_equal_the_store(filled_home: Path, now: datetime) -> None:
    want = expected(filled_home, "query", "host_load1", since=now - timedelta(hours=1), until=now)
    assert want.height == 20
    as_json = qwq(filled_home, "query", "host_load1", "--format", "json", *window(now))
    assert as_json.returncode == 0, as_json.stderr
    rows = json.loads(as_json.stdout)
    got = [(datetime.fromisoformat(r["ts"]), r["value"], r["host"]) for r in rows]
    assert got == list(want.select("ts", "value", "host").iter_rows())
    as_csv = qwq(filled_home, "query", "host_load1", "-f", "csv", *window(now))
    assert_frame_equal(pl.read_csv(io.StringIO(as_csv.stdout), try_parse_dates=True), want)


def test_query_parquet_to_a_file(filled_home: Path, now: datetime, tmp_path: Path) -> None:
    target = tmp_path / "out.parquet"
    args = ["--label", "host=web1", "--step", "1m", "--agg", "max", *window(now)]
    result = qwq(filled_home, "query", "host_load1", *args, "--format", "parquet", "-o", str(target))
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    want = expected(
        filled_home,
        "query",
        "host_load1",
        labels={"host": "web1"},
        step="1m",
        agg="max",
        since=now - timedelta(hours=1),
        until=now,
    )
    assert want.height >= 5
    assert_frame_equal(pl.read_parquet(target), want)


def test_query_bad_selector_is_bad_input(filled_home: Path) -> None:
    result = qwq(filled_home, "query", "bad{")
    assert result.returncode == 2
    assert problems(result) == ["invalid selector 'bad{': expected a label name or '}' at position 4"]


def test_query_bad_agg_is_bad_input(filled_home: Path) -> None:
    result = qwq(filled_home, "query", "host_load1", "--agg", "median")
    assert result.returncode == 2 and "Traceback" not in result.stderr


def test_series_formats(filled_home: Path, tmp_path: Path) -> None:
    want = expected(filled_home, "series")
    table = qwq(filled_home, "series")
    assert table.returncode == 0 and "web1" in table.stdout and "db1" in table.stdout
    assert json.loads(qwq(filled_home, "series", "-f", "json").stdout) == want.to_dicts()
    assert_frame_equal(
        pl.read_csv(io.StringIO(qwq(filled_home, "series", "host_*", "-f", "csv").stdout)), want, check_dtypes=False
    )
    target = tmp_path / "series.parquet"
    assert qwq(filled_home, "series", '{host="db1"}', "-f", "parquet", "-o", str(target)).returncode == 0
    assert_frame_equal(pl.read_parquet(target), expected(filled_home, "series", '{host="db1"}'))


def test_sql_formats(filled_home: Path, tmp_path: Path) -> None:
    statement = "SELECT labels['host'] AS host, count(*) AS n, max(value) AS top FROM points GROUP BY ALL ORDER BY host"
    want = expected(filled_home, "sql", statement)
    assert want.rows() == [("db1", 10, 0.9), ("web1", 10, 0.9)]
    table = qwq(filled_home, "sql", statement)
    assert table.returncode == 0 and "web1" in table.stdout
    assert json.loads(qwq(filled_home, "sql", statement, "-f", "json").stdout) == want.to_dicts()
    assert_frame_equal(pl.read_csv(io.StringIO(qwq(filled_home, "sql", statement, "-f", "csv").stdout)), want)
    target = tmp_path / "sql.parquet"
    assert qwq(filled_home, "sql", statement, "-f", "parquet", "-o", str(target)).returncode == 0
    assert_frame_equal(pl.read_parquet(target), want)


def test_sql_delete_is_refused(filled_home: Path) -> None:
    result = qwq(filled_home, "sql", "DELETE FROM samples")
    assert result.returncode == 2
    assert problems(result) == ["Store.sql is read-only: DELETE statements are refused"]
    assert expected(filled_home, "sql", "SELECT count(*) AS n FROM samples")["n"].to_list() == [20]


def test_sql_csv_of_nested_columns_is_not_a_traceback(filled_home: Path) -> None:
    result = qwq(filled_home, "sql", "SELECT * FROM points LIMIT 2", "-f", "csv")
    assert "Traceback" not in result.stderr
    assert result.returncode in (0, 2)


def test_sql_interval_column_comes_out_in_seconds(filled_home: Path) -> None:
    result = qwq(filled_home, "sql", "SELECT INTERVAL 2 MINUTE AS span", "--format", "json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [{"span": 120.0}]


def test_events_formats(filled_home: Path) -> None:
    want = expected(filled_home, "events")
    assert want["kind"].to_list() == ["collector.failed", "deploy.done"]
    table = qwq(filled_home, "events")
    assert table.returncode == 0 and "deploy.done" in table.stdout
    rows = json.loads(qwq(filled_home, "events", "-f", "json", "--kind", "deploy.*").stdout)
    assert [(r["kind"], r["source"], r["message"]) for r in rows] == [("deploy.done", "ci", "v2 is out")]
    newest = pl.read_csv(io.StringIO(qwq(filled_home, "events", "-f", "csv", "--limit", "1").stdout))
    assert newest["kind"].to_list() == ["collector.failed"]
    as_parquet = subprocess.run(
        [QWQ, "events", "-f", "parquet"], env=qwq_env(filled_home), capture_output=True, timeout=60
    )  # stdout is a pipe, not a terminal: parquet may go there
    assert as_parquet.returncode == 0
    assert_frame_equal(pl.read_parquet(io.BytesIO(as_parquet.stdout)), want)


def test_events_parquet_to_a_file(filled_home: Path, tmp_path: Path) -> None:
    target = tmp_path / "events.parquet"
    result = qwq(filled_home, "events", "-f", "parquet", "-o", str(target))
    assert result.returncode == 0, result.stderr
    assert_frame_equal(pl.read_parquet(target), expected(filled_home, "events"))


# ---- status and up -----------------------------------------------------------------------------------


def test_status_without_a_server(filled_home: Path) -> None:
    result = qwq(filled_home, "status", "--format", "json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["running"] is False
    assert report["store"]["series"] == 2 and report["store"]["rows"]["raw"] == 20
    assert "not running" in qwq(filled_home, "status").stdout


def test_status_without_a_store(home: Path) -> None:
    report = json.loads(qwq(home, "status", "--format", "json").stdout)
    assert report == {"running": False, "store": None, "collectors": [], "targets": []}


@pytest.mark.service
def test_status_and_up_with_a_running_server(tmp_path: Path) -> None:
    server = start_server(tmp_path / "home")
    try:
        result = qwq(server.home, "status", "--format", "json")
        assert result.returncode == 0, result.stderr
        report = json.loads(result.stdout)
        assert report["running"] is True
        assert report["url"] == server.url and report["pid"] == server.process.pid
        assert [c["name"] for c in report["collectors"]] == ["host"]
        assert report["store"]["series"] > 0

        # reads go through the server while it holds the store file
        rows = json.loads(qwq(server.home, "query", "host_cpu_count", "-f", "json").stdout)
        assert rows and all(r["value"] == psutil.cpu_count() for r in rows)

        second = qwq(server.home, "up", "--port", "0", timeout=60)
        assert second.returncode == 1
        assert f"already running at {server.url} (PID {server.process.pid})" in second.stderr
        assert "Traceback" not in second.stderr
        assert server.process.poll() is None, "the first server must keep running"
    finally:
        server.stop()


def test_config_show_masks_collector_secrets(home: Path) -> None:
    config = '[collectors.node]\ntype = "prometheus"\nurls = ["http://x:9100/metrics"]\n'
    config += 'headers = { Authorization = "Bearer topsecret" }\n'
    result = qwq(home, "config", "show", config=config)
    assert result.returncode == 0, result.stderr
    assert "topsecret" not in result.stdout
    assert "Authorization" in json.loads(result.stdout)["collectors"]["node"]["headers"]
