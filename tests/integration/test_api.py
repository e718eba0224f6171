"""The REST API v1, /metrics and the OpenAPI docs over a real LocalStore, through FastAPI's TestClient.

The store holds ten minutes of 10-second samples: two gauges (one with two series), a ``_total`` counter
that resets once, and three events. Answers are compared with what the LocalStore itself returns for the
same call, so a route that drops a parameter or mangles a frame fails here.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import polars as pl
import pytest
from fastapi.testclient import TestClient
from polars.testing import assert_frame_equal
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families

from qwq_core import __version__
from qwq_core.model import Event
from qwq_core.server import build_app
from qwq_core.store import LocalStore
from qwq_core.timeutil import utcnow

ARROW = "application/vnd.apache.arrow.stream"
PARQUET = "application/vnd.apache.parquet"
STEPS = 60
"""Samples per series: one every 10 s for ten minutes."""
RESET_AT = 30
"""Index at which the counter restarts from zero."""
TOKEN = "s3cret"


def seed(store: LocalStore, now: datetime) -> tuple[datetime, datetime]:
    """Write the fixture data; returns the first and last sample times."""
    first = now - timedelta(seconds=10 * STEPS)
    ts = [first + timedelta(seconds=10 * i) for i in range(STEPS)]
    frames = [
        pl.DataFrame({"name": "host_load1", "ts": ts, "value": [base + i / 100 for i in range(STEPS)], "host": host})
        for host, base in (("a", 1.0), ("b", 2.0))
    ]
    for cpu, share in (("total", 0.25), ("0", 0.75)):
        frames.append(pl.DataFrame({"name": "host_cpu_usage_ratio", "ts": ts, "value": share, "host": "a", "cpu": cpu}))
    counter = [5.0 * (i if i < RESET_AT else i - RESET_AT) for i in range(STEPS)]
    frames.append(pl.DataFrame({"name": "http_requests_total", "ts": ts, "value": counter, "host": "a"}))
    store.write(pl.concat(frames, how="diagonal"))
    store.record(
        [
            Event("collector.failed", "host timed out", source="host", severity="error", ts=now - timedelta(minutes=3)),
            Event("collector.recovered", "host is back", source="host", ts=now - timedelta(minutes=2)),
            Event(
                "target.down",
                "node is down",
                source="node",
                severity="warning",
                attrs={"target": "http://node:9100/metrics"},
                ts=now - timedelta(minutes=1),
            ),
        ]
    )
    return ts[0], ts[-1]


@pytest.fixture
def now() -> datetime:
    return utcnow().replace(microsecond=0)


@pytest.fixture
def filled(store: LocalStore, now: datetime) -> LocalStore:
    seed(store, now)
    return store


@pytest.fixture
def client(filled: LocalStore) -> Iterator[TestClient]:
    with TestClient(build_app(filled, dashboard=False)) as opened:
        yield opened


def window(now: datetime) -> dict[str, str]:
    """Absolute since/until covering all the fixture data, as query parameters."""
    return {"since": (now - timedelta(minutes=15)).isoformat(), "until": now.isoformat()}


def arrow(response: Any) -> pl.DataFrame:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == ARROW
    return pl.read_ipc_stream(io.BytesIO(response.content))


def error_of(response: Any, status: int = 400) -> dict[str, str]:
    """The ``error`` object of an error response, checking status and shape."""
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["type"] and error["message"]
    return error


# ---- server routes -----------------------------------------------------------------------------------


def test_health_answers_with_version_and_store(client: TestClient, filled: LocalStore) -> None:
    body = client.get("/api/v1/health").json()
    assert body["status"] == "ok"
    assert body["version"] == __version__
    assert body["store"] == str(filled.path)
    assert 0 <= body["uptime_seconds"] < 60


def test_status_without_runtime_has_store_facts_and_no_collectors(client: TestClient, filled: LocalStore) -> None:
    body = client.get("/api/v1/status").json()
    assert body["version"] == __version__
    assert body["collectors"] == [] and body["writer"] is None
    expected = filled.stats()
    assert body["store"]["path"] == expected["path"]
    assert body["store"]["series"] == expected["series"] == 5
    assert body["store"]["rows"] == expected["rows"]
    assert body["store"]["rows"]["raw"] == 5 * STEPS


# ---- /query ------------------------------------------------------------------------------------------


def test_query_json_rows_have_iso_times_and_match_the_store(
    client: TestClient, filled: LocalStore, now: datetime
) -> None:
    response = client.get("/api/v1/query", params={"metric": 'host_load1{host="b"}', **window(now)})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    rows = response.json()["data"]
    expected = filled.query('host_load1{host="b"}', **window(now))
    assert len(rows) == expected.height == STEPS
    got = [(datetime.fromisoformat(r["ts"]), r["value"], r["name"], r["host"]) for r in rows]
    assert got == list(expected.select("ts", "value", "name", "host").iter_rows())
    assert datetime.fromisoformat(rows[0]["ts"]).utcoffset() == timedelta(0)


def test_query_default_since_is_the_last_hour(client: TestClient) -> None:
    rows = client.get("/api/v1/query", params={"metric": "host_load1"}).json()["data"]
    assert len(rows) == 2 * STEPS
    assert {r["host"] for r in rows} == {"a", "b"}


def test_query_arrow_equals_the_store_frame(client: TestClient, filled: LocalStore, now: datetime) -> None:
    response = client.get("/api/v1/query", params={"metric": "host_*", **window(now)}, headers={"Accept": ARROW})
    expected = filled.query("host_*", **window(now))
    assert expected.height == 4 * STEPS
    assert_frame_equal(arrow(response), expected)


@pytest.mark.parametrize("agg", ["avg", "min", "max", "sum", "count", "last"])
def test_query_step_and_agg_equal_the_store(client: TestClient, filled: LocalStore, now: datetime, agg: str) -> None:
    params = {"metric": "host_load1", "step": "1m", "agg": agg, **window(now)}
    got = arrow(client.get("/api/v1/query", params=params, headers={"Accept": ARROW}))
    expected = filled.query("host_load1", step="1m", agg=agg, **window(now))
    assert 20 <= expected.height <= 24  # ten or eleven minute buckets per series
    assert_frame_equal(got, expected)


def test_query_rate_reads_the_counter_per_second_across_a_reset(
    client: TestClient, filled: LocalStore, now: datetime
) -> None:
    params = {"metric": "http_requests_total", "step": "1m", "agg": "rate", **window(now)}
    got = arrow(client.get("/api/v1/query", params=params, headers={"Accept": ARROW}))
    assert_frame_equal(got, filled.query("http_requests_total", step="1m", agg="rate", **window(now)))
    values = got["value"].to_list()
    assert len(values) >= 9
    assert all(v >= 0 for v in values), "a counter reset must not give a negative rate"
    assert sum(v == pytest.approx(0.5) for v in values) >= len(values) - 1  # 5 per 10 s


def test_query_labels_are_repeatable_equality_filters(client: TestClient, filled: LocalStore, now: datetime) -> None:
    params = {"metric": "host_cpu_usage_ratio", "labels": ["host=a", "cpu=0"], **window(now)}
    got = arrow(client.get("/api/v1/query", params=params, headers={"Accept": ARROW}))
    assert_frame_equal(got, filled.query("host_cpu_usage_ratio", labels={"host": "a", "cpu": "0"}, **window(now)))
    assert got["cpu"].unique().to_list() == ["0"] and got["value"].unique().to_list() == [0.75]


def test_query_since_until_cut_the_range(client: TestClient, now: datetime) -> None:
    since, until = now - timedelta(minutes=3), now - timedelta(minutes=1)
    params = {"metric": 'host_load1{host="a"}', "since": since.isoformat(), "until": str(until.timestamp())}
    rows = client.get("/api/v1/query", params=params).json()["data"]
    times = [datetime.fromisoformat(r["ts"]) for r in rows]
    assert len(times) == 13  # 3 min .. 1 min ago, both ends included
    assert min(times) == since and max(times) == until


def test_query_parquet_equals_the_store_frame(client: TestClient, filled: LocalStore, now: datetime) -> None:
    response = client.get("/api/v1/query", params={"metric": "host_load1", **window(now)}, headers={"Accept": PARQUET})
    assert response.status_code == 200 and response.headers["content-type"] == PARQUET
    assert_frame_equal(pl.read_parquet(io.BytesIO(response.content)), filled.query("host_load1", **window(now)))


def test_query_csv_has_a_header_and_one_line_per_sample(client: TestClient, filled: LocalStore, now: datetime) -> None:
    response = client.get(
        "/api/v1/query", params={"metric": "host_load1", **window(now)}, headers={"Accept": "text/csv"}
    )
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
    got = pl.read_csv(io.StringIO(response.text), try_parse_dates=True)
    assert_frame_equal(got, filled.query("host_load1", **window(now)), check_dtypes=False)


def test_format_parameter_overrides_the_accept_header(client: TestClient, now: datetime) -> None:
    params = {"metric": "host_load1", "format": "json", **window(now)}
    response = client.get("/api/v1/query", params=params, headers={"Accept": ARROW})
    assert response.headers["content-type"] == "application/json"
    assert len(response.json()["data"]) == 2 * STEPS
    response = client.get("/api/v1/query", params={**params, "format": "arrow"})
    assert arrow(response).height == 2 * STEPS


def test_accept_picks_the_first_known_media_type(client: TestClient) -> None:
    response = client.get("/api/v1/series", headers={"Accept": f"text/html, {PARQUET};q=0.9, {ARROW}"})
    assert response.headers["content-type"] == PARQUET
    assert client.get("/api/v1/series", headers={"Accept": "*/*"}).headers["content-type"] == "application/json"


def test_unknown_format_is_a_400_query_error(client: TestClient) -> None:
    error = error_of(client.get("/api/v1/query", params={"metric": "host_load1", "format": "xml"}))
    assert error["type"] == "QueryError" and "xml" in error["message"]


# ---- /latest, /series, /metrics, /events -------------------------------------------------------------


def test_latest_is_the_newest_sample_of_each_matching_series(client: TestClient, filled: LocalStore) -> None:
    got = arrow(client.get("/api/v1/latest", params={"metric": "host_load1"}, headers={"Accept": ARROW}))
    assert_frame_equal(got, filled.latest("host_load1"))
    assert got.sort("host")["value"].to_list() == [1.0 + (STEPS - 1) / 100, 2.0 + (STEPS - 1) / 100]
    one = client.get("/api/v1/latest", params={"metric": "host_load1", "labels": "host=b"}).json()["data"]
    assert [(r["host"], r["value"]) for r in one] == [("b", 2.0 + (STEPS - 1) / 100)]
    every = client.get("/api/v1/latest").json()["data"]
    assert len(every) == 5


def test_latest_drops_series_older_than_max_age(client: TestClient) -> None:
    # the newest sample is 10 s old
    assert client.get("/api/v1/latest", params={"metric": "host_load1", "max_age": "5s"}).json()["data"] == []
    assert len(client.get("/api/v1/latest", params={"metric": "host_load1", "max_age": "1m"}).json()["data"]) == 2


@pytest.mark.parametrize("match", [None, "host_*", 'host_cpu_usage_ratio{cpu!="total"}', '{host="b"}'])
def test_series_match_equals_the_store(client: TestClient, filled: LocalStore, match: str | None) -> None:
    params = {"match": match} if match else {}
    got = arrow(client.get("/api/v1/series", params=params, headers={"Accept": ARROW}))
    assert_frame_equal(got, filled.series(match))
    assert got.height == {None: 5, "host_*": 4, 'host_cpu_usage_ratio{cpu!="total"}': 1, '{host="b"}': 1}[match]


def test_metrics_lists_metadata_with_series_counts(client: TestClient, filled: LocalStore) -> None:
    rows = client.get("/api/v1/metrics").json()["data"]
    by_name = {r["name"]: r for r in rows}
    assert set(by_name) == {"host_load1", "host_cpu_usage_ratio", "http_requests_total"}
    assert by_name["http_requests_total"]["type"] == "counter"
    assert by_name["host_cpu_usage_ratio"] == {
        "name": "host_cpu_usage_ratio",
        "type": "gauge",
        "unit": "ratio",
        "help": "",
        "series": 2,
    }
    got = arrow(client.get("/api/v1/metrics", params={"match": "*_total"}, headers={"Accept": ARROW}))
    assert_frame_equal(got, filled.metrics("*_total"))
    assert got["name"].to_list() == ["http_requests_total"]


def test_events_are_newest_first_and_filtered_by_kind_glob(client: TestClient, filled: LocalStore) -> None:
    rows = client.get("/api/v1/events").json()["data"]
    assert [r["kind"] for r in rows] == ["target.down", "collector.recovered", "collector.failed"]
    assert rows[0]["attrs"] == '{"target": "http://node:9100/metrics"}'
    collector = client.get("/api/v1/events", params={"kind": "collector.*"}).json()["data"]
    assert [r["kind"] for r in collector] == ["collector.recovered", "collector.failed"]
    newest = client.get("/api/v1/events", params={"kind": "collector.*", "limit": 1}).json()["data"]
    assert [r["message"] for r in newest] == ["host is back"]
    errors = arrow(client.get("/api/v1/events", params={"severity": "error"}, headers={"Accept": ARROW}))
    assert_frame_equal(errors, filled.events(severity="error"))
    assert errors["kind"].to_list() == ["collector.failed"]


def test_events_since_narrows_the_window(client: TestClient) -> None:
    rows = client.get("/api/v1/events", params={"since": "150s"}).json()["data"]
    assert [r["kind"] for r in rows] == ["target.down", "collector.recovered"]


def test_post_events_records_them(client: TestClient, filled: LocalStore) -> None:
    body = [
        {"kind": "deploy.done", "message": "v2 rolled out", "severity": "warning", "attrs": {"version": "2"}},
        {"kind": "deploy.started", "message": "rolling v2"},
    ]
    response = client.post("/api/v1/events", json=body)
    assert response.status_code == 200 and response.json() == {"written": 2}
    stored = filled.events(kind="deploy.*").sort("kind")
    assert stored.select("kind", "source", "severity", "message", "attrs").rows() == [
        ("deploy.done", "api", "warning", "v2 rolled out", '{"version": "2"}'),
        ("deploy.started", "api", "info", "rolling v2", "{}"),
    ]


# ---- /sql --------------------------------------------------------------------------------------------


def test_sql_runs_a_parameterised_select(client: TestClient, filled: LocalStore) -> None:
    query = "SELECT name, count(*) AS n FROM points WHERE value >= ? GROUP BY name ORDER BY name"
    response = client.post("/api/v1/sql", json={"query": query, "params": [0]})
    assert response.json()["data"] == [
        {"name": "host_cpu_usage_ratio", "n": 2 * STEPS},
        {"name": "host_load1", "n": 2 * STEPS},
        {"name": "http_requests_total", "n": STEPS},
    ]
    got = arrow(client.post("/api/v1/sql", json={"query": query, "params": [2.0]}, headers={"Accept": ARROW}))
    assert_frame_equal(got, filled.sql(query, [2.0]))


@pytest.mark.parametrize(
    "statement",
    ["DELETE FROM samples", "DROP TABLE events", "SELECT 1; DELETE FROM samples", "COPY samples TO 'x.csv'"],
)
def test_sql_refuses_anything_but_one_select(client: TestClient, filled: LocalStore, statement: str) -> None:
    error = error_of(client.post("/api/v1/sql", json={"query": statement}))
    assert error["type"] == "QueryError"
    assert filled.stats()["rows"]["raw"] == 5 * STEPS


@pytest.mark.parametrize("statement", ["SELEC 1", "SELECT nope FROM samples", "SELECT * FROM read_csv('/etc/passwd')"])
def test_sql_errors_are_query_errors(client: TestClient, statement: str) -> None:
    assert error_of(client.post("/api/v1/sql", json={"query": statement}))["type"] == "QueryError"


def test_sql_returns_an_interval_column_as_seconds(client: TestClient) -> None:
    response = client.post(
        "/api/v1/sql", json={"query": "SELECT INTERVAL 90 SECOND AS wait, now() - max(ts) AS age FROM samples"}
    )
    (row,) = response.json()["data"]
    assert row["wait"] == 90.0 and row["age"] > 0


def test_sql_csv_of_the_points_view_is_not_a_server_error(client: TestClient) -> None:
    response = client.post("/api/v1/sql", params={"format": "csv"}, json={"query": "SELECT * FROM points LIMIT 3"})
    assert response.status_code in (200, 400), response.text


# ---- /write, /metadata -------------------------------------------------------------------------------


def test_write_arrow_body_stores_the_frame(client: TestClient, filled: LocalStore, now: datetime) -> None:
    frame = pl.DataFrame(
        {
            "name": "disk_free_bytes",
            "ts": [now - timedelta(seconds=2), now - timedelta(seconds=1)],
            "value": [10.0, 11.0],
            "device": ["sda", ""],
        }
    ).with_columns(pl.col("ts").dt.cast_time_unit("us").dt.replace_time_zone("UTC"))
    buffer = io.BytesIO()
    frame.write_ipc_stream(buffer)
    response = client.post("/api/v1/write", content=buffer.getvalue(), headers={"Content-Type": ARROW})
    assert response.status_code == 200 and response.json() == {"written": 2}
    stored = filled.query("disk_free_bytes", **window(now))
    assert stored.select("ts", "value", "device").rows() == [
        (frame["ts"][0], 10.0, "sda"),
        (frame["ts"][1], 11.0, None),
    ]


def test_write_json_rows_with_iso_times(client: TestClient, filled: LocalStore) -> None:
    rows = [
        {"name": "temp_celsius", "ts": "2026-01-02T03:04:05Z", "value": 21.5, "room": "a"},
        {"name": "temp_celsius", "ts": "2026-01-02T03:04:15Z", "value": 22, "room": "a"},
    ]
    response = client.post("/api/v1/write", json=rows)
    assert response.json() == {"written": 2}
    stored = filled.query("temp_celsius", since="2026-01-02T00:00:00Z", until="2026-01-03T00:00:00Z")
    assert [(t.isoformat(), v) for t, v in stored.select("ts", "value").iter_rows()] == [
        ("2026-01-02T03:04:05+00:00", 21.5),
        ("2026-01-02T03:04:15+00:00", 22.0),
    ]


def test_write_json_rows_with_an_offset_are_converted_to_utc(client: TestClient, filled: LocalStore) -> None:
    rows = [{"name": "temp_celsius", "ts": "2026-01-02T05:00:00+02:00", "value": 1.0}]
    assert client.post("/api/v1/write", json=rows).json() == {"written": 1}
    stored = filled.query("temp_celsius", since="2026-01-02T00:00:00Z", until="2026-01-03T00:00:00Z")
    assert stored["ts"].to_list()[0].isoformat() == "2026-01-02T03:00:00+00:00"


def test_write_json_rows_with_epoch_seconds(client: TestClient, filled: LocalStore) -> None:
    epoch = 1_767_323_045  # 2026-01-02T03:04:05Z
    rows = [
        {"name": "temp_celsius", "ts": epoch, "value": 1.0},
        {"name": "temp_celsius", "ts": epoch + 0.5, "value": 2.0},
    ]
    response = client.post("/api/v1/write", json={"data": rows})
    assert response.json() == {"written": 2}
    stored = filled.query("temp_celsius", since=epoch - 60, until=epoch + 60)
    assert [t.isoformat() for t in stored["ts"]] == ["2026-01-02T03:04:05+00:00", "2026-01-02T03:04:05.500000+00:00"]


@pytest.mark.parametrize(
    ("content", "content_type", "in_message"),
    [
        (b'[{"name": "x", "ts": "2026-01-02T03:04:05Z"}]', "application/json", "value"),
        (b'[{"name": "1bad", "ts": "2026-01-02T03:04:05Z", "value": 1}]', "application/json", "1bad"),
        (b'[{"name": "x", "ts": "yesterday", "value": 1}]', "application/json", "ts"),
        (b'[{"name": "x", "ts": 1, "value": 1, "__name__": "y"}]', "application/json", "__name__"),
        (b"this is not json", "application/json", "json"),
        (b"not an arrow stream", ARROW, "arrow"),
        (b"5", "application/json", "list of sample objects"),
        (b'{"data": 5}', "application/json", "list of sample objects"),
        (b'[1, "a"]', "application/json", "list of sample objects"),
        (b'[{"name": "x", "ts": 1e20, "value": 1}]', "application/json", "ts"),
    ],
)
def test_write_refuses_an_invalid_frame(
    client: TestClient, filled: LocalStore, content: bytes, content_type: str, in_message: str
) -> None:
    error = error_of(client.post("/api/v1/write", content=content, headers={"Content-Type": content_type}))
    assert error["type"] == "QueryError"
    assert in_message in error["message"]
    assert filled.stats()["rows"]["raw"] == 5 * STEPS


def test_write_csv_with_numeric_looking_labels(client: TestClient, filled: LocalStore) -> None:
    body = b"name,ts,value,cpu\nhost_cpu_usage_ratio,2026-01-02T03:04:05Z,0.5,0\n"
    response = client.post("/api/v1/write", content=body, headers={"Content-Type": "text/csv"})
    assert response.json() == {"written": 1}


def test_write_takes_iso_and_unix_seconds_mixed_in_csv_and_json(client: TestClient, filled: LocalStore) -> None:
    body = b"name,ts,value\nmixed_value,2026-01-02T00:00:00Z,1\nmixed_value,1767312060,2\n"
    assert client.post("/api/v1/write", content=body, headers={"Content-Type": "text/csv"}).json() == {"written": 2}
    rows = [
        {"name": "mixed_value", "ts": "2026-01-02T00:02:00+00:00", "value": 3},
        {"name": "mixed_value", "ts": "2026-01-02T00:03:00", "value": 4},  # naive: UTC
        {"name": "mixed_value", "ts": 1767312240.5, "value": 5},
    ]
    assert client.post("/api/v1/write", json=rows).json() == {"written": 3}
    stored = filled.query("mixed_value", since="2026-01-01T23:00:00Z", until="2026-01-02T01:00:00Z")
    assert [t.isoformat() for t in stored["ts"]] == [
        "2026-01-02T00:00:00+00:00",
        "2026-01-02T00:01:00+00:00",
        "2026-01-02T00:02:00+00:00",
        "2026-01-02T00:03:00+00:00",
        "2026-01-02T00:04:00.500000+00:00",
    ]


def test_metadata_declares_type_unit_and_help(client: TestClient, filled: LocalStore) -> None:
    body = [{"name": "http_requests_total", "type": "counter", "unit": "", "help": "Requests served"}]
    assert client.post("/api/v1/metadata", json=body).json() == {"written": 1}
    body = [{"name": "queue_length", "help": "Jobs waiting"}]
    assert client.post("/api/v1/metadata", json=body).json() == {"written": 1}
    rows = {r["name"]: r for r in filled.metrics().iter_rows(named=True)}
    assert rows["http_requests_total"]["help"] == "Requests served"
    assert rows["queue_length"] == {
        "name": "queue_length",
        "type": "gauge",
        "unit": "",
        "help": "Jobs waiting",
        "series": 0,
    }


# ---- bad input ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "params", "in_message"),
    [
        ("/api/v1/query", {"metric": "host_load1{"}, "invalid selector"),
        ("/api/v1/query", {"metric": 'host_load1{host=~"("}'}, "regular expression"),
        ("/api/v1/query", {"metric": "host_load1", "since": "10m", "until": "20m"}, "after until"),
        ("/api/v1/query", {"metric": "host_load1", "since": "yesterday"}, "invalid time"),
        ("/api/v1/query", {"metric": "host_load1", "step": "often"}, "invalid duration"),
        ("/api/v1/query", {"metric": "host_load1", "step": "0s"}, "step must be positive"),
        ("/api/v1/query", {"metric": "host_load1", "labels": "host"}, "name=value"),
        ("/api/v1/latest", {"max_age": "ages"}, "invalid duration"),
        ("/api/v1/series", {"match": "{}"}, "invalid selector"),
        ("/api/v1/events", {"since": "last week"}, "invalid time"),
    ],
)
def test_bad_input_is_a_400_query_error(client: TestClient, path: str, params: dict[str, str], in_message: str) -> None:
    error = error_of(client.get(path, params=params))
    assert error["type"] == "QueryError"
    assert in_message in error["message"]


@pytest.mark.parametrize(
    ("method", "path", "kwargs"),
    [
        pytest.param(
            "GET",
            "/api/v1/query",
            {"params": {"metric": "host_load1", "step": "1m", "agg": "median"}},
            id="unknown-agg",
        ),
        pytest.param(
            "GET",
            "/api/v1/events",
            {"params": {"limit": -1}},
            id="negative-limit",
        ),
        pytest.param(
            "POST",
            "/api/v1/events",
            {"json": [{"kind": "x", "message": "y", "severity": "fatal"}]},
            id="bad-severity",
        ),
    ],
)
def test_request_validation_errors_use_the_error_shape(
    client: TestClient, method: str, path: str, kwargs: dict[str, Any]
) -> None:
    error_of(client.request(method, path, **kwargs))


def test_unknown_agg_is_refused_not_a_server_error(client: TestClient) -> None:
    """Whatever the shape, an unknown aggregation is the client's fault and names the accepted ones."""
    response = client.get("/api/v1/query", params={"metric": "host_load1", "step": "1m", "agg": "median"})
    assert 400 <= response.status_code < 500
    assert "rate" in response.text


# ---- authentication ----------------------------------------------------------------------------------

PROTECTED: list[tuple[str, str, dict[str, Any]]] = [
    ("GET", "/api/v1/status", {}),
    ("GET", "/api/v1/query", {"params": {"metric": "host_load1"}}),
    ("GET", "/api/v1/latest", {}),
    ("GET", "/api/v1/series", {}),
    ("GET", "/api/v1/metrics", {}),
    ("GET", "/api/v1/events", {}),
    ("POST", "/api/v1/events", {"json": [{"kind": "x.y", "message": "m"}]}),
    ("POST", "/api/v1/sql", {"json": {"query": "SELECT 1 AS one"}}),
    ("POST", "/api/v1/write", {"json": [{"name": "x", "ts": 1_767_323_045, "value": 1}]}),
    ("POST", "/api/v1/metadata", {"json": [{"name": "x"}]}),
]


@pytest.fixture
def secured(filled: LocalStore) -> Iterator[TestClient]:
    with TestClient(build_app(filled, token=TOKEN, dashboard=False)) as opened:
        yield opened


def test_every_api_route_is_covered_by_the_auth_table(secured: TestClient) -> None:
    routes = {
        (method, path)
        for path, item in secured.get("/openapi.json").json()["paths"].items()
        if path.startswith("/api/v1/") and path != "/api/v1/health"
        for method in item
    }
    assert routes == {(method.lower(), path) for method, path, _ in PROTECTED}


@pytest.mark.parametrize(("method", "path", "kwargs"), PROTECTED, ids=[f"{m} {p}" for m, p, _ in PROTECTED])
def test_token_is_required_on_every_api_route(
    secured: TestClient, filled: LocalStore, method: str, path: str, kwargs: dict[str, Any]
) -> None:
    rows_before = filled.stats()["rows"]["raw"]
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Bearer {TOKEN}x"}):
        error = error_of(secured.request(method, path, headers=headers, **kwargs), 401)
        assert error["type"] == "AuthError"
    assert filled.stats()["rows"]["raw"] == rows_before, "a refused write must not be stored"
    response = secured.request(method, path, headers={"Authorization": f"Bearer {TOKEN}"}, **kwargs)
    assert response.status_code == 200, response.text


def test_health_stays_public_with_a_token(secured: TestClient) -> None:
    assert secured.get("/api/v1/health").json()["status"] == "ok"


# ---- /metrics, OpenAPI -------------------------------------------------------------------------------


def test_metrics_exposes_the_latest_value_of_each_series(client: TestClient) -> None:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    families = {f.name: f for f in text_string_to_metric_families(response.text)}
    load = {s.labels["host"]: s.value for s in families["host_load1"].samples}
    assert load == {"a": pytest.approx(1.0 + (STEPS - 1) / 100), "b": pytest.approx(2.0 + (STEPS - 1) / 100)}
    assert families["host_load1"].type == "gauge"
    assert families["http_requests"].type == "counter"
    assert [(s.name, s.value) for s in families["http_requests"].samples] == [
        ("http_requests_total", 5.0 * (STEPS - 1 - RESET_AT))
    ]
    assert "process_cpu_seconds" in families or "python_info" in families  # qwq's own metrics too


def test_metrics_speaks_openmetrics_when_asked(client: TestClient) -> None:
    response = client.get("/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    assert response.headers["content-type"].startswith("application/openmetrics-text")
    assert response.text.endswith("# EOF\n")
    families = {f.name: f for f in parse_openmetrics(response.text)}
    assert families["host_cpu_usage_ratio"].unit == "ratio"
    assert {s.labels["cpu"]: s.value for s in families["host_cpu_usage_ratio"].samples} == {"total": 0.25, "0": 0.75}


def test_openapi_lists_the_routes_and_docs_render(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert spec["info"]["version"] == __version__
    expected = {
        "/api/v1/health",
        "/api/v1/status",
        "/api/v1/query",
        "/api/v1/latest",
        "/api/v1/series",
        "/api/v1/metrics",
        "/api/v1/events",
        "/api/v1/sql",
        "/api/v1/write",
        "/api/v1/metadata",
        "/metrics",
    }
    assert expected <= set(spec["paths"])
    assert set(spec["paths"]["/api/v1/events"]) == {"get", "post"}
    query_content = spec["paths"]["/api/v1/query"]["get"]["responses"]["200"]["content"]
    assert {ARROW, PARQUET, "text/csv", "application/json"} <= set(query_content)
    docs = client.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()


def test_the_token_also_guards_metrics_and_the_dashboard_with_a_browser_login(filled: LocalStore) -> None:
    with TestClient(build_app(filled, token=TOKEN), follow_redirects=False) as browser:
        assert browser.get("/").status_code == 401
        refused = browser.get("/metrics")
        assert refused.status_code == 401 and refused.headers["www-authenticate"].startswith("Bearer")
        assert browser.get("/metrics", headers={"Authorization": f"bearer {TOKEN}"}).status_code == 200
        assert browser.get("/metrics", headers={"Authorization": TOKEN}).status_code == 401  # scheme required
        assert browser.get("/openapi.json").status_code == 200 and browser.get("/docs").status_code == 200

        login = browser.get("/", params={"token": TOKEN, "range": "24h"})
        assert login.status_code == 303 and login.headers["location"] == "/?range=24h"
        assert "HttpOnly" in login.headers["set-cookie"]
        page = browser.get("/?range=24h")  # the client keeps the cookie
        assert page.status_code == 200 and "_dash-renderer" in page.text
        assert browser.get("/api/v1/status").status_code == 200

        browser.cookies.clear()
        assert browser.get("/", params={"token": "wrong"}).status_code == 401
