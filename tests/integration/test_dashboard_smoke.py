"""The dashboard over a real LocalStore, through Flask's test client: page, layout and graph callbacks.

The store holds 30 minutes of synthetic 1-second samples shaped like the host collector's; the callbacks
are posted the way the Dash renderer posts them, with ids and outputs read from ``/_dash-dependencies``.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from typing import Any

import polars as pl
import pytest

from dashboards import create_dashboard
from dashboards.layout import (
    CARDS,
    CPU_BUSY,
    CPU_MODES,
    FILESYSTEMS,
    HOST,
    MEMORY,
    NETWORK,
    PAGE,
    PAGE_NAME,
    RANGE,
    REFRESH,
)
from qwq_core.collector import samples
from qwq_core.errors import StoreError
from qwq_core.model import Event
from qwq_core.store import LocalStore

HOST_NAME = "web1"
MINUTES = 30
CPU_MODES_WRITTEN = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")
RX_RATE, TX_RATE = 1_000_000.0, 250_000.0
"""Bytes/s the synthetic eth0 counters grow by."""


def host_samples(host: str, end: datetime, minutes: int = MINUTES, cores: int = 4) -> pl.DataFrame:
    """``minutes`` of 1 s samples of every host-collector metric for ``host``, ending at ``end``."""
    seconds = minutes * 60
    ts = [end - timedelta(seconds=seconds - 1 - i) for i in range(seconds)]
    wave = [math.sin(i / 90) for i in range(seconds)]
    frames: list[pl.DataFrame] = []

    def add(name: str, values: list[float], **labels: str) -> None:
        frames.append(pl.DataFrame({"name": name, "ts": ts, "value": values, "host": host, **labels}))

    for cpu in ["total", *map(str, range(cores))]:
        busy = [0.35 + 0.2 * w for w in wave]
        add("host_cpu_usage_ratio", busy, cpu=cpu)
        shares = {"user": 0.6, "system": 0.25, "iowait": 0.1, "steal": 0.05}
        for mode in CPU_MODES_WRITTEN:
            values = [1 - b for b in busy] if mode == "idle" else [b * shares.get(mode, 0.0) for b in busy]
            add("host_cpu_usage_ratio", values, cpu=cpu, mode=mode)
    add("host_cpu_count", [float(cores)] * seconds)
    for window in (1, 5, 15):
        add(f"host_load{window}", [1.2 + w / window for w in wave])
    gib = 1024.0**3
    used = [6 * gib + gib * w for w in wave]
    add("host_memory_total_bytes", [16 * gib] * seconds)
    add("host_memory_used_bytes", used)
    add("host_memory_available_bytes", [16 * gib - u for u in used])
    add("host_memory_cached_bytes", [4 * gib] * seconds)
    add("host_memory_buffers_bytes", [0.5 * gib] * seconds)
    add("host_swap_total_bytes", [2 * gib] * seconds)
    add("host_swap_used_bytes", [0.1 * gib] * seconds)
    filesystems = (("/", "/dev/sda1", 100, 0.42), ("/var", "/dev/sdb1", 500, 0.8))
    for mountpoint, device, size, used_share in filesystems:
        labels = {"mountpoint": mountpoint, "device": device, "fstype": "ext4"}
        add("host_filesystem_size_bytes", [size * gib] * seconds, **labels)
        add("host_filesystem_free_bytes", [size * gib * (1 - used_share)] * seconds, **labels)
        add("host_filesystem_used_bytes", [size * gib * used_share] * seconds, **labels)
    for device, speed in (("sda", 1.0), ("nvme0n1", 4.0)):
        add("host_disk_read_bytes_total", [speed * 2e6 * i for i in range(seconds)], device=device)
        add("host_disk_written_bytes_total", [speed * 5e6 * i for i in range(seconds)], device=device)
    for device, scale in (("eth0", 1.0), ("lo", 0.01)):
        add("host_network_receive_bytes_total", [scale * RX_RATE * i for i in range(seconds)], device=device)
        add("host_network_transmit_bytes_total", [scale * TX_RATE * i for i in range(seconds)], device=device)
    add("host_processes", [312.0] * seconds)
    add("host_open_fds", [4096.0] * seconds)
    add("host_uptime_seconds", [86400.0 * 3 + i for i in range(seconds)])
    return pl.concat(frames, how="diagonal")


@pytest.fixture
def filled(store: LocalStore) -> LocalStore:
    """The test store with 30 minutes of one host's samples ending a second ago."""
    store.write(host_samples(HOST_NAME, datetime.now(UTC) - timedelta(seconds=1)))
    return store


@pytest.fixture
def client(filled: LocalStore) -> Any:
    return create_dashboard(filled, refresh=timedelta(seconds=5)).server.test_client()


def call(client: Any, output: str, values: dict[str, Any], changed: str) -> dict[str, Any]:
    """Post the callback writing ``output`` (``id.property``) as the renderer does; its ``response``.

    The callback's inputs and state are read from ``/_dash-dependencies`` and take their values from
    ``values`` (by ``id.property``); ``changed`` is the property that triggered it. ``{}`` for "no update".
    """
    specs = client.get("/_dash-dependencies").get_json()
    spec = next(cb for cb in specs if output in cb["output"].strip(".").split("..."))
    targets = [target.split(".") for target in spec["output"].strip(".").split("...")]

    def with_values(items: list[dict[str, str]]) -> list[dict[str, Any]]:
        return [{**item, "value": values[f"{item['id']}.{item['property']}"]} for item in items]

    outputs = [{"id": id_, "property": prop} for id_, prop in targets]
    payload = {
        "output": spec["output"],
        "outputs": outputs[0] if len(outputs) == 1 and not spec["output"].startswith("..") else outputs,
        "inputs": with_values(spec["inputs"]),
        "state": with_values(spec["state"]),
        "changedPropIds": [changed],
    }
    response = client.post("/_dash-update-component", json=payload)
    assert response.status_code in (200, 204), response.data[:500]
    return response.get_json()["response"] if response.status_code == 200 else {}


def tick(client: Any, output: str, host: str = HOST_NAME, range_key: str = "1h") -> dict[str, Any]:
    """The response of the callback writing ``output`` after an interval tick."""
    values = {f"{HOST}.value": host, f"{RANGE}.value": range_key, f"{REFRESH}.n_intervals": 3}
    return call(client, output, values, f"{REFRESH}.n_intervals")


def figures(client: Any, graph: str, **kwargs: Any) -> dict[str, Any]:
    """The figures (by graph id) the callback drawing ``graph`` answers with after a tick."""
    return {key: value["figure"] for key, value in tick(client, f"{graph}.figure", **kwargs).items()}


def test_index_serves_the_dash_renderer(client: Any) -> None:
    response = client.get("/")
    assert response.status_code == 200
    html = response.data.decode()
    assert "<title>qwq</title>" in html
    assert "dash-renderer" in html or "DashRenderer" in html
    assert "qwq.css" in html


def test_layout_names_every_graph_and_the_host(client: Any) -> None:
    response = client.get("/_dash-layout")
    assert response.status_code == 200
    text = response.data.decode()
    for card in CARDS:
        assert f'"id":"{card.graph}"' in text.replace(" ", "")
    assert HOST_NAME in text


def test_cpu_callback_draws_busy_and_stacked_modes(client: Any) -> None:
    drawn = figures(client, CPU_BUSY)
    busy = drawn[CPU_BUSY]["data"]
    assert len(busy) == 1
    values = busy[0]["y"]
    # 1h at a 15 s step over 30 minutes of data: about 120 buckets, each averaging 0.35 ± 0.2.
    assert 115 <= len(values) <= 122
    assert all(0.14 < v < 0.56 for v in values)
    assert drawn[CPU_BUSY]["layout"]["yaxis"]["tickformat"] == ".0%"
    modes = drawn[CPU_MODES]["data"]
    assert [t["name"] for t in modes] == ["user", "system", "iowait", "steal"]
    assert all(t["stackgroup"] == "stack" for t in modes)
    stacked = [sum(t["y"][i] for t in modes) for i in range(len(values))]
    assert stacked == pytest.approx(values, rel=1e-6)


def test_network_callback_draws_rates_per_device(client: Any) -> None:
    figure = figures(client, NETWORK, range_key="15m")[NETWORK]
    traces = {t["name"]: t for t in figure["data"]}
    assert set(traces) == {"eth0 rx", "eth0 tx", "lo rx", "lo tx"}
    assert figure["layout"]["yaxis"]["title"]["text"] == "KiB/s"
    rx = traces["eth0 rx"]["y"]
    # 15m reads raw 1 s samples: one rate per second.
    assert 895 <= len(rx) <= 901
    assert rx == pytest.approx([RX_RATE / 1024] * len(rx))
    assert traces["eth0 tx"]["y"] == pytest.approx([TX_RATE / 1024] * len(rx))
    assert traces["eth0 tx"]["line"]["dash"] == "dash"


@pytest.mark.parametrize("range_key", ["15m", "6h", "24h"])
def test_every_graph_callback_answers(client: Any, range_key: str) -> None:
    for card in CARDS:
        figure = figures(client, card.graph, range_key=range_key)[card.graph]
        assert figure["data"], (card.graph, range_key)


def texts(component: dict[str, Any]) -> list[Any]:
    """The children of each child of a serialised component (a tile's label, value, detail...)."""
    return [part["props"]["children"] for part in component["props"]["children"]]


def test_tiles_show_the_latest_values(client: Any) -> None:
    tiles = tick(client, "tiles.children")["tiles"]["children"]
    shown = {tile["props"]["id"]: texts(tile) for tile in tiles}
    wave = math.sin((MINUTES * 60 - 1) / 90)  # of the newest sample
    assert shown["tile-cpu"][:3] == ["CPU busy", f"{0.35 + 0.2 * wave:.0%}", "of 4 cores"]
    assert shown["tile-mem"][1:3] == [f"{(6 + wave) / 16:.0%}", f"{6 + wave:.3g} GiB of 16 GiB"]
    assert shown["tile-fs"][1:3] == ["80%", "fullest: /var"]
    assert shown["tile-uptime"][1] == "3d 0h"
    assert shown["tile-procs"][1] == "312"
    assert shown["tile-fds"][1] == "4,096"


def test_address_bar_selects_host_and_range_and_follows_the_controls(client: Any) -> None:
    def address(changed: str, search: str, host: str, range_key: str) -> tuple[Any, ...]:
        values = {
            "url.search": search,
            f"{HOST}.value": host,
            f"{RANGE}.value": range_key,
            f"{HOST}.options": [HOST_NAME, "db2"],
        }
        answer = call(client, "url.search", values, changed)
        outputs = (("url", "search"), (HOST, "value"), (RANGE, "value"))
        return tuple(answer.get(id_, {}).get(prop) for id_, prop in outputs)

    assert address("url.search", "?host=db2&range=6h", HOST_NAME, "1h") == ("?host=db2&range=6h", "db2", "6h")
    unknown = address("url.search", "?host=evil&range=1y", HOST_NAME, "1h")  # ignored: not offered
    assert unknown == (f"?host={HOST_NAME}&range=1h", HOST_NAME, "1h")
    followed = address(f"{RANGE}.value", "?host=db2&range=6h", "db2", "24h")  # the controls write the address
    assert followed == ("?host=db2&range=24h", None, None)


def test_unknown_host_gets_no_data_figures(client: Any) -> None:
    figure = figures(client, NETWORK, host="nobody")[NETWORK]
    assert figure["data"] == []
    assert "No data yet" in json.dumps(figure["layout"]["annotations"])


def test_store_error_blanks_only_the_failing_panel(filled: LocalStore, monkeypatch: Any) -> None:
    client = create_dashboard(filled).server.test_client()

    def broken(*args: Any, **kwargs: Any) -> pl.DataFrame:
        raise StoreError("disk on fire")

    monkeypatch.setattr(filled, "query", broken)
    figure = figures(client, NETWORK)[NETWORK]
    assert "disk on fire" in json.dumps(figure["layout"]["annotations"])
    tiles = tick(client, "tiles.children")  # latest() still works: the tiles are unaffected
    assert "Memory used" in json.dumps(tiles)


def container_samples(end: datetime, minutes: int = 10) -> pl.DataFrame:
    """A running ``web`` and a stopped ``db`` container on the test host, one sample a minute."""
    web = {"container": "web", "image": "nginx:1.27", "host": HOST_NAME}
    db = {"container": "db", "image": "postgres:17", "host": HOST_NAME}
    frames = [
        samples(
            end - timedelta(minutes=minutes - i),
            [
                ("container_up", web, 1.0),
                ("container_cpu_usage_ratio", web, 0.1 * i),
                ("container_memory_used_bytes", web, 2**20 * (10 + i)),
                ("container_up", db, 0.0),
            ],
        )
        for i in range(minutes)
    ]
    return pl.concat(frames)


def test_fleet_pages_route_and_list_targets_with_drill_down(filled: LocalStore) -> None:
    filled.write(container_samples(datetime.now(UTC) - timedelta(seconds=1)))
    web = {"container": "web", "image": "nginx:1.27", "host": HOST_NAME}
    filled.write(
        samples(
            datetime.now(UTC) - timedelta(minutes=3),
            [("anomaly_score", {**web, "metric": "container_cpu_usage_ratio"}, 0.9)],
        )
    )
    client = create_dashboard(filled).server.test_client()
    routed = call(client, f"{PAGE}.children", {"url.pathname": "/containers"}, "url.pathname")
    assert routed[PAGE_NAME]["children"] == "containers"
    values = {
        "url.pathname": "/containers",
        "url.search": "?range=1h",
        f"{HOST}.value": HOST_NAME,
        f"{RANGE}.value": "1h",
        f"{REFRESH}.n_intervals": 1,
    }
    table = json.dumps(call(client, "fleet-table.children", values, "url.pathname"))
    assert table.index('"db"') < table.index('"web"')  # down first
    assert "qwq-down" in table and "nginx:1.27" in table and "/containers?range=1h&target=container%3Dweb" in table
    detail = call(client, "fleet-detail.children", {**values, "url.search": "?target=container%3Dweb"}, "url.search")
    cards = json.dumps(detail)
    assert '"CPU"' in cards and '"Memory"' in cards
    cpu, memory = (card["props"]["children"][1]["props"]["figure"] for card in detail["fleet-detail"]["children"][:2])
    assert cpu["data"] and max(cpu["data"][0]["y"]) == pytest.approx(0.9)
    (marks,) = [trace for trace in cpu["data"] if trace["name"] == "anomaly"]  # the CPU score, on its graph
    assert len(marks["x"]) == 1 and "container_cpu_usage_ratio" in marks["hovertext"][0]
    assert not [trace for trace in memory["data"] if trace["name"] == "anomaly"]


def test_alerts_and_capacity_pages_read_alert_series_events_and_forecasts(store: LocalStore) -> None:
    now = datetime.now(UTC) - timedelta(seconds=1)
    store.write(
        samples(
            now,
            [
                ("ALERTS", {"alertname": "DiskFull", "severity": "critical", "host": "h1", "alertstate": "firing"}, 1),
                (
                    "forecast_threshold_seconds",
                    {"metric": "host_filesystem_used_ratio", "mountpoint": "/", "host": "h1", "bound": "expected"},
                    2 * 86400,
                ),
                (
                    "forecast_threshold_seconds",
                    {"metric": "host_filesystem_used_ratio", "mountpoint": "/", "host": "h1", "bound": "earliest"},
                    86400,
                ),
                (
                    "forecast_threshold_seconds",
                    {"metric": "host_filesystem_used_ratio", "mountpoint": "/", "host": "h1", "bound": "latest"},
                    3 * 86400,
                ),
            ],
        )
    )
    store.record(
        [
            Event(
                "silence.created", "s", attrs={"id": "s1", "matchers": '{host="h9"}', "ends_at": "2999-01-01"}, ts=now
            ),
            Event(
                "incident.opened",
                "i",
                attrs={"incident": "i1", "title": "DiskFull on h1", "labels": {"severity": "critical"}},
                ts=now,
            ),
            Event("alert.firing", "DiskFull firing", ts=now),
        ]
    )
    client = create_dashboard(store).server.test_client()
    values = {"url.pathname": "/alerts", f"{RANGE}.value": "1h", f"{REFRESH}.n_intervals": 1}
    page = json.dumps(call(client, "alerts-body.children", values, "url.pathname"))
    for expected in ("DiskFull", "critical", "host=h1", '{host=\\"h9\\"}', "DiskFull on h1", "alert.firing"):
        assert expected in page
    values = {"url.pathname": "/capacity", f"{HOST}.value": "h1", f"{REFRESH}.n_intervals": 1}
    capacity = json.dumps(call(client, "capacity-body.children", values, "url.pathname"))
    assert "filesystem" in capacity and "2d 0h" in capacity and "1d 0h \\u2013 3d 0h" in capacity


def test_actions_page_lists_installed_apps_and_the_audit_trail(store: LocalStore) -> None:
    now = datetime.now(UTC) - timedelta(seconds=1)
    store.record(
        [
            Event("app.installed", "i", attrs={"app": "web", "version": "1", "params": {"port": 8080}}, ts=now),
            Event("app.installed", "i", attrs={"app": "gone", "version": "1"}, ts=now),
            Event("app.upgraded", "u", attrs={"app": "web", "version": "2", "params": {"port": 8080}}, ts=now),
            Event("app.uninstalled", "x", attrs={"app": "gone"}, ts=now),
            Event(
                "action.failed",
                "f",
                attrs={
                    "actor": "cli:root",
                    "action": "apps.install",
                    "target": "app:db",
                    "outcome": "failed",
                    "error": "port 5432 in use",
                },
                ts=now,
            ),
        ]
    )
    client = create_dashboard(store).server.test_client()
    values = {"url.pathname": "/actions", f"{RANGE}.value": "1h", f"{REFRESH}.n_intervals": 1}
    page = json.dumps(call(client, "actions-body.children", values, "url.pathname"))
    assert "port=8080" in page and '"gone"' not in page and "port 5432 in use" in page and "qwq-row-down" in page


def test_graphs_mark_the_anomalies_scored_for_their_metrics(filled: LocalStore) -> None:
    at = datetime.now(UTC) - timedelta(minutes=5)
    filled.write(
        samples(
            at,
            [
                (
                    "anomaly_score",
                    {"metric": "host_network_receive_bytes_total", "device": "eth0", "host": HOST_NAME},
                    0.97,
                ),
                (
                    "anomaly_score",
                    {"metric": "host_network_transmit_bytes_total", "device": "eth0", "host": HOST_NAME},
                    0.1,
                ),
                ("anomaly_score", {"metric": "host_load1", "host": HOST_NAME}, 0.99),
            ],
        )
    )
    client = create_dashboard(filled).server.test_client()
    network = figures(client, NETWORK)[NETWORK]
    (marks,) = [trace for trace in network["data"] if trace["name"] == "anomaly"]
    assert len(marks["x"]) == 1 and "host_network_receive_bytes_total" in marks["hovertext"][0]
    cpu = figures(client, CPU_BUSY)[CPU_BUSY]
    assert not [trace for trace in cpu["data"] if trace["name"] == "anomaly"]  # load1 is not a CPU graph metric


def forecast_ladder(made: datetime, metric: str, now_value: float, **labels: str) -> pl.DataFrame:
    """``forecast_used_ratio`` samples as the capacity job writes them: rising 1 point an hour, ± 2 points."""
    rows = [
        ("forecast_used_ratio", {**labels, "metric": metric, "ahead": ahead, "bound": bound}, value + offset)
        for ahead, value in (("0s", now_value), ("10m", now_value + 0.01 / 6), ("1h", now_value + 0.01))
        for bound, offset in (("expected", 0.0), ("lower", -0.02), ("upper", 0.02))
    ]
    return samples(made, rows)


def forecast_traces(figure: dict[str, Any]) -> list[dict[str, Any]]:
    return [trace for trace in figure["data"] if trace["name"] == "forecast"]


def test_host_graphs_continue_with_the_forecast_band(filled: LocalStore) -> None:
    made = datetime.now(UTC) - timedelta(minutes=10)
    ratio = "host_filesystem_used_ratio"
    filled.write(
        pl.concat(
            [
                forecast_ladder(made, ratio, 0.42, host=HOST_NAME, mountpoint="/"),
                forecast_ladder(made, ratio, 0.8, host=HOST_NAME, mountpoint="/var"),
                forecast_ladder(made, "host_memory_used_ratio", 0.4, host=HOST_NAME),
                forecast_ladder(made, ratio, 0.1, host="db2", mountpoint="/"),  # another host's: not drawn
            ],
            how="diagonal",
        )
    )
    client = create_dashboard(filled).server.test_client()
    filesystems = figures(client, FILESYSTEMS)[FILESYSTEMS]
    bands = forecast_traces(filesystems)
    assert len(bands) == 4  # a shaded interval and a dotted expected line per mountpoint
    lines = sorted((trace for trace in bands if trace.get("line", {}).get("dash") == "dot"), key=lambda t: t["y"][0])
    assert [line["y"][0] for line in lines] == pytest.approx([0.42, 0.8])
    assert lines[0]["x"][0] == made.strftime("%Y-%m-%d %H:%M:%S")
    assert filesystems["layout"]["xaxis"]["range"][1] > datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S")
    memory = figures(client, MEMORY)[MEMORY]
    (line,) = [trace for trace in forecast_traces(memory) if trace.get("line", {}).get("dash") == "dot"]
    assert line["y"][0] == pytest.approx(0.4 * 16)  # GiB: the ratio of the 16 GiB total
    assert not forecast_traces(figures(client, NETWORK)[NETWORK])


def test_the_capacity_page_graphs_what_runs_out_first_with_its_forecast(store: LocalStore) -> None:
    now = datetime.now(UTC) - timedelta(seconds=1)
    labels = {"metric": "host_filesystem_used_ratio", "mountpoint": "/var", "host": "h1"}
    store.write(host_samples("h1", now, minutes=5))
    store.write(
        samples(now, [("forecast_threshold_seconds", {**labels, "bound": "expected"}, 2 * 86400)]),
    )
    store.write(
        forecast_ladder(now - timedelta(minutes=30), "host_filesystem_used_ratio", 0.8, host="h1", mountpoint="/var")
    )
    client = create_dashboard(store).server.test_client()
    values = {"url.pathname": "/capacity", f"{HOST}.value": "h1", f"{REFRESH}.n_intervals": 1}
    table, graphs = call(client, "capacity-body.children", values, "url.pathname")["capacity-body"]["children"]
    (card,) = graphs["props"]["children"]
    assert "filesystem" in json.dumps(card) and "runs out in 2d 0h" in json.dumps(card)
    figure = card["props"]["children"][1]["props"]["figure"]
    assert figure["data"][0]["y"][-1] == pytest.approx(0.8)  # the history: used / (used + available)
    assert len(forecast_traces(figure)) == 2
    (threshold,) = figure["layout"]["shapes"]
    assert threshold["y0"] == threshold["y1"] == 0.9 and threshold["line"]["dash"] == "dash"
