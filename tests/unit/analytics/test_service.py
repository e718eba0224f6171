"""The analytics service: usage ratios, its capacity forecast job, its online anomaly job and its multivariate job."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from analytics.capacity import ahead, runs_out, usage_ratios
from analytics.host_anomalies import host_events
from analytics.service import AnalyticsOptions, AnalyticsService, without
from qwq_core.collector import samples
from qwq_core.services import ServiceContext
from qwq_core.settings import Settings
from qwq_core.store import LocalStore
from qwq_core.writer import BufferedWriter

START = datetime(2026, 1, 1, tzinfo=UTC)


def host_history(hours: int = 7 * 24, growth: float = 0.2e9, noise: float = 0.0) -> pl.DataFrame:
    """A week of one disk filling linearly (50 GB used of 100 GB, +growth per hour, ± noise), memory flat at
    half."""
    rng = np.random.default_rng(3)
    frames = []
    for hour in range(hours):
        used = 50e9 + hour * growth + rng.normal(0, noise)
        disk = {"mountpoint": "/", "host": "h"}
        frames.append(
            samples(
                START + timedelta(hours=hour),
                [
                    ("host_filesystem_used_bytes", disk, used),
                    ("host_filesystem_free_bytes", disk, 100e9 - used),
                    ("host_filesystem_files", disk, 1e6),
                    ("host_filesystem_files_free", disk, 9e5),
                    ("host_memory_used_bytes", {"host": "h"}, 4e9),
                    ("host_memory_total_bytes", {"host": "h"}, 8e9),
                ],
            )
        )
    return pl.concat(frames, how="diagonal_relaxed")


def test_usage_ratios_are_df_style_per_mountpoint_and_host_wide_for_memory() -> None:
    ratios = usage_ratios(host_history(hours=2))
    last = ratios.filter(pl.col("ts") == pl.col("ts").max())
    values = {row["name"]: row["value"] for row in last.iter_rows(named=True)}
    assert values == pytest.approx(
        {"host_filesystem_used_ratio": 0.502, "host_filesystem_files_used_ratio": 0.1, "host_memory_used_ratio": 0.5}
    )
    assert last.filter(pl.col("name") == "host_memory_used_ratio")["mountpoint"].to_list() == [None]


def test_the_filling_disk_runs_out_first_and_flat_resources_never() -> None:
    found = runs_out(host_history(), threshold=0.9, horizon="30d")
    assert found["name"].to_list()[0] == "host_filesystem_used_ratio"
    hours = found["crossing_s"][0] / 3600  # 83.4 % used now, +0.2 points an hour: 33 h to 90 %
    assert hours == pytest.approx(33, rel=0.15)
    assert found["crossing_s"][1:].is_null().all()


def test_the_capacity_job_writes_forecast_series_and_warns_once(store: LocalStore) -> None:
    store.write(host_history())
    writer = BufferedWriter(store)
    service = AnalyticsService(AnalyticsOptions(), ServiceContext(Settings(), store, writer))
    now = START + timedelta(days=7)
    assert service.capacity(now) == 1
    assert service.capacity(now) == 1
    writer.flush()
    series = store.latest("forecast_threshold_seconds", max_age="1000d")
    assert set(series["bound"].to_list()) == {"expected", "earliest", "latest"}
    assert set(series["metric"].to_list()) == {"host_filesystem_used_ratio"}
    warnings = store.events(since=START, kind="capacity.forecast")
    assert warnings.height == 1 and "reaches 0.9" in warnings["message"][0]


def test_the_capacity_job_writes_the_forecast_at_each_lead_time_within_the_horizon(store: LocalStore) -> None:
    store.write(host_history(noise=0.3e9))
    writer = BufferedWriter(store)
    options = AnalyticsOptions(capacity={"horizon": "4d"})
    service = AnalyticsService(options, ServiceContext(Settings(), store, writer))
    now = START + timedelta(days=7)
    service.capacity(now)
    writer.flush()
    path = store.latest("forecast_used_ratio", max_age="1000d")
    assert set(path["ts"].to_list()) == {now}  # stamped when made, never in the future
    assert set(path["bound"].to_list()) == {"expected", "lower", "upper"}
    assert set(path["metric"].to_list()) == {
        "host_filesystem_used_ratio",
        "host_filesystem_files_used_ratio",
        "host_memory_used_ratio",
    }
    disk = path.filter(pl.col("metric") == "host_filesystem_used_ratio", pl.col("mountpoint") == "/")
    wide = disk.pivot(on="bound", index="ahead", values="value").sort("expected")
    assert wide["ahead"].to_list() == ["0s", "10m", "1h", "6h", "1d", "3d"]  # 7d and on are past the horizon
    assert (wide["lower"] <= wide["expected"]).all() and (wide["expected"] <= wide["upper"]).all()
    day = wide.row(by_predicate=pl.col("ahead") == "1d", named=True)
    assert day["lower"] < day["upper"] and day["expected"] == pytest.approx(0.834 + 0.2 * 25 / 100, abs=0.02)


def test_ahead_samples_the_path_from_the_last_observation_and_never_past_it() -> None:
    last = START + timedelta(minutes=50)
    utc = pl.Datetime("us", "UTC")
    path = pl.DataFrame(
        {
            "ts": [last + timedelta(hours=1), last + timedelta(hours=2)],
            "yhat": [0.7, 1.2],
            "yhat_lower": [0.6, 0.9],
            "yhat_upper": [0.8, 1.5],
            "name": "host_filesystem_used_ratio",
            "mountpoint": "/",
        },
        schema_overrides={"ts": utc},
    )
    crossings = pl.DataFrame(
        {"last_ts": [last], "last_value": [0.5], "name": "host_filesystem_used_ratio", "mountpoint": "/"},
        schema_overrides={"last_ts": utc},
    )
    found = ahead(path, crossings, START + timedelta(hours=1), horizon="2h", leads=("0s", "1h", "2h", "3h"))
    assert found.columns == ["name", "ahead", "yhat", "yhat_lower", "yhat_upper", "mountpoint"]
    rows = {row[1]: row[2:5] for row in found.rows()}
    assert set(rows) == {"0s", "1h"}  # now + 2h is past the path's end; 3h is past the horizon
    assert rows["0s"] == pytest.approx((0.5 + 0.2 / 6, 0.5 + 0.1 / 6, 0.5 + 0.3 / 6))  # 10 of 60 minutes on
    assert rows["1h"] == pytest.approx((0.7 + 0.5 / 6, 0.6 + 0.3 / 6, 0.8 + 0.7 / 6))  # 10 minutes past a step
    clipped = ahead(path, crossings, last + timedelta(hours=2), horizon="2h", leads=("0s",))
    assert clipped.select("yhat", "yhat_lower", "yhat_upper").row(0) == (1.0, 0.9, 1.0)


def test_the_anomaly_job_scores_each_minute_flags_a_spike_once_and_keeps_its_state(
    store: LocalStore, tmp_path: Path
) -> None:
    rng = np.random.default_rng(7)
    minutes = 240
    values = 10 + rng.normal(0, 0.2, minutes)
    values[200] = 30  # one spike
    store.write(
        pl.concat(
            [
                samples(START + timedelta(minutes=i, seconds=5), [("app_latency_seconds", {"app": "a"}, v)])
                for i, v in enumerate(values)
            ]
        )
    )
    settings = Settings(store={"path": tmp_path / "qwq.duckdb"})
    writer = BufferedWriter(store)
    service = AnalyticsService(AnalyticsOptions(), ServiceContext(settings, store, writer))
    for minute in range(1, minutes + 1):
        service.score(START + timedelta(minutes=minute, seconds=30))
    writer.flush()
    scores = store.query("anomaly_score", since=START, until=START + timedelta(hours=5))
    assert set(scores["metric"].to_list()) == {"app_latency_seconds"} and set(scores["app"].to_list()) == {"a"}
    assert scores["value"].is_between(0, 1).all()
    spike = scores.filter(pl.col("ts") == START + timedelta(minutes=201))["value"][0]
    assert spike > 0.95 and spike == scores["value"].max()
    events = store.events(since=START, kind="anomaly.detected")
    assert any("app_latency_seconds" in m for m in events["message"].to_list())
    service.close()
    restored = AnalyticsService(AnalyticsOptions(), ServiceContext(settings, store, writer))
    assert len(restored.detector) == 1


def test_the_multivariate_job_scores_the_newest_rows_of_each_host_and_names_what_broke(
    store: LocalStore, tmp_path: Path
) -> None:
    rng = np.random.default_rng(21)
    minutes = 360
    load = rng.normal(size=minutes)
    cpu = 0.5 + 0.1 * load + 0.01 * rng.normal(size=minutes)
    memory = 2e9 + 1e8 * load + 1e7 * rng.normal(size=minutes)
    cpu[357] -= 0.25  # memory climbs while CPU falls: each value alone is plausible
    memory[357] += 3e8
    store.write(
        pl.concat(
            [
                samples(
                    START + timedelta(minutes=i, seconds=5),
                    [
                        ("host_cpu_usage_ratio", {"host": "h", "cpu": "total"}, cpu[i]),
                        ("host_memory_used_bytes", {"host": "h"}, memory[i]),
                        ("app_requests", {"app": "a"}, 1.0),  # no host: not part of any vector
                    ],
                )
                for i in range(minutes)
            ]
        )
    )
    settings = Settings(store={"path": tmp_path / "qwq.duckdb"})
    writer = BufferedWriter(store)
    options = AnalyticsOptions(multivariate={"history": "6h", "sensitivity": "medium"})
    service = AnalyticsService(options, ServiceContext(settings, store, writer))
    assert "analytics.multivariate" in [job.name for job in service.jobs()]
    assert service.hosts(START + timedelta(minutes=minutes, seconds=30)) == 1
    writer.flush()
    scores = store.query("host_anomaly_score", since=START, until=START + timedelta(hours=7))
    assert scores["ts"].to_list() == [START + timedelta(minutes=m) for m in range(355, 360)]
    assert set(scores["host"].to_list()) == {"h"} and scores["value"].is_between(0, 1).all()
    assert scores["value"].arg_max() == 2
    events = store.events(since=START, kind="anomaly.multivariate")
    assert events.height == 1 and "host h" in events["message"][0]
    assert "host_memory_used_bytes" in events["message"][0]  # the metric whose return to typical clears it most
    assert events["attrs"][0] and "host_memory_used_bytes{}" in events["attrs"][0]


def test_a_multivariate_episode_across_runs_is_announced_once() -> None:
    def rows(flags: list[bool], start: int) -> pl.DataFrame:
        return pl.DataFrame(
            {
                "host": "h",
                "ts": [START + timedelta(minutes=start + i) for i in range(len(flags))],
                "anomaly_score": [0.9 if f else 0.1 for f in flags],
                "is_anomaly": flags,
                "top_metrics": [["host_load1{}"] if f else [] for f in flags],
            }
        )

    alarmed: set[str] = set()
    assert len(host_events(rows([False, True, True], 0), alarmed)) == 1 and alarmed == {"h"}
    again = host_events(rows([True, False, True], 3), alarmed)
    assert [e.ts for e in again] == [START + timedelta(minutes=5)] and "host_load1" in again[0].message
    assert host_events(rows([False], 6), alarmed) == [] and alarmed == set()


def test_without_drops_the_series_named_by_any_glob_and_no_globs_keeps_all() -> None:
    frame = pl.DataFrame({"name": ["anomaly_score", "host_anomaly_score", "host_load1"], "value": [1.0, 2.0, 3.0]})
    assert without(frame, ["*anomaly_score", "qwq_*"])["name"].to_list() == ["host_load1"]
    assert without(frame, []).equals(frame)  # an empty exclude list in the config: nothing left out
