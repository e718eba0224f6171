"""Fleet pages' pure parts: the status table rows, sparkline values and target ids."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import polars as pl
from hypothesis import given
from hypothesis import strategies as st

from dashboards.fleets import CONTAINERS, SITES, fleet_table, parse_target, sparkline_values, target_id
from dashboards.sparkline import sparkline_svg
from qwq_core.collector import samples

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def containers() -> pl.DataFrame:
    web = {"container": "web", "image": "nginx:1.27", "host": "h1"}
    db = {"container": "db", "image": "postgres:17", "host": "h1"}
    return samples(
        NOW,
        [
            ("container_up", web, 1.0),
            ("container_cpu_usage_ratio", web, 0.25),
            ("container_memory_used_bytes", web, 64 * 2**20),
            ("container_restarts_total", web, 3),
            ("container_up", db, 0.0),
        ],
    )


def test_down_targets_come_first_with_formatted_values_and_dashes_for_missing_ones() -> None:
    rows = fleet_table(CONTAINERS, containers())
    assert [row["container"] for row in rows] == ["db", "web"]
    down, up = rows
    assert down["up"] is False and down["CPU"] == "—" and down["image"] == "postgres:17"
    assert up["CPU"] == "25.0%" and up["memory"] == "64 MiB" and up["restarts"] == "3" and up["uptime"] == "—"
    assert up["id"] == "container=web"


def test_a_column_restricted_by_label_reads_only_that_series() -> None:
    site = {"site": "blog"}
    frame = samples(
        NOW,
        [
            ("site_up", site, 1.0),
            ("site_response_seconds", {**site, "phase": "dns"}, 0.9),
            ("site_response_seconds", {**site, "phase": "total"}, 0.125),
        ],
    )
    (row,) = fleet_table(SITES, frame)
    assert row["response"] == "125 ms"


def test_sparkline_values_are_per_target_in_time_order() -> None:
    frames = [
        samples(NOW + timedelta(seconds=i), [("container_cpu_usage_ratio", {"container": c}, v)])
        for i, (c, v) in enumerate([("web", 0.1), ("db", 0.5), ("web", 0.2)])
    ]
    history = pl.concat(frames, how="diagonal_relaxed").sort("ts", descending=True)
    assert sparkline_values(CONTAINERS.spark, history, CONTAINERS.key) == {
        "container=web": [0.1, 0.2],
        "container=db": [0.5],
    }


def test_sparkline_draws_a_polyline_only_with_two_points() -> None:
    def svg(values: list[float]) -> str:
        return base64.b64decode(sparkline_svg(values).split(",", 1)[1]).decode()

    assert "polyline" not in svg([1.0]) and "polyline" in svg([1.0, 2.0, float("nan"), 0.5])


@given(
    st.dictionaries(st.sampled_from(["db", "instance"]), st.text(st.characters(blacklist_characters=",="), min_size=1))
)
def test_target_ids_round_trip(labels: dict[str, str]) -> None:
    assert parse_target(target_id(labels, ("db", "instance")), ("db", "instance")) == labels
