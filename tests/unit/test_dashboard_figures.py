"""The dashboard's pure parts: the step picker, human units, frame-to-figure functions and headline tiles."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import plotly.graph_objects as go
import polars as pl
import pytest

from dashboards.figures import (
    NO_DATA,
    add_forecast_band,
    empty_figure,
    forecast_paths,
    io_figure,
    timeseries_figure,
)
from dashboards.panels import share_of_size, used_share
from dashboards.ranges import NICE_STEPS, RANGES, RAW_UP_TO, TARGET_POINTS, is_live, pick_step, range_span
from dashboards.tiles import MISSING, summarize
from dashboards.units import byte_scale, format_bytes, format_count, format_duration

GIB = 1024.0**3
END = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
WINDOW = (END - timedelta(hours=1), END)


def samples(rows: list[tuple[int, float, dict[str, str]]]) -> pl.DataFrame:
    """A query-shaped frame from ``(seconds before END, value, labels)`` rows."""
    labels = sorted({key for _, _, row_labels in rows for key in row_labels})
    return pl.DataFrame(
        {
            "ts": [END - timedelta(seconds=s) for s, _, _ in rows],
            "value": [float(v) for _, v, _ in rows],
            "name": ["m"] * len(rows),
            **{key: [row_labels.get(key) for _, _, row_labels in rows] for key in labels},
        },
        schema_overrides={"ts": pl.Datetime("us", "UTC")},
    )


def series(label: str, values: dict[str, list[float]]) -> pl.DataFrame:
    """One series per key of ``values`` (label ``label``), one sample a minute ending at END."""
    rows = [(60 * (len(vs) - 1 - i), v, {label: key}) for key, vs in values.items() for i, v in enumerate(vs)]
    return samples(rows)


def annotation_text(figure: go.Figure) -> str:
    return " ".join(a.text for a in figure.layout.annotations)


# ---- step picker -----------------------------------------------------------------------------------
SPANS = [timedelta(minutes=m) for m in (1, 5, 14, 15, 16, 20, 30, 45, 60, 90)] + [
    timedelta(hours=h) for h in (2, 3, 6, 12, 24, 48, 72, 24 * 7, 24 * 14, 24 * 30, 24 * 60, 24 * 90)
]


@pytest.mark.parametrize("span", SPANS + list(RANGES.values()))
def test_step_keeps_graphs_near_three_hundred_points(span: timedelta) -> None:
    step = pick_step(span)
    if span <= RAW_UP_TO:
        assert step is None
        return
    assert step in NICE_STEPS
    points = span / step
    assert points <= 400
    if step != NICE_STEPS[-1]:  # nice steps grow at most 3x apart: never below a third of the target
        assert points >= TARGET_POINTS / 3


def test_step_grows_with_the_range() -> None:
    steps = [pick_step(span) or timedelta(0) for span in sorted(SPANS)]
    assert steps == sorted(steps)
    assert pick_step(RANGES["1h"]) == timedelta(seconds=15)
    assert pick_step(RANGES["24h"]) == timedelta(minutes=5)
    assert pick_step(RANGES["30d"]) == timedelta(hours=6)


def test_ranges_and_live_refresh() -> None:
    assert range_span("6h") == timedelta(hours=6)
    assert range_span(None) == range_span("bogus") == timedelta(hours=1)
    assert is_live(RANGES["24h"]) and not is_live(RANGES["7d"])


# ---- units -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "unit"),
    [(0, "B"), (1023, "B"), (1024, "KiB"), (GIB - 1, "MiB"), (GIB, "GiB"), (5 * GIB * 1024, "TiB")],
)
def test_byte_scale_picks_the_largest_fitting_binary_unit(value: float, unit: str) -> None:
    divisor, found = byte_scale(value)
    assert found == unit
    assert 1 <= value / divisor < 1024 or value == 0


def test_human_formats() -> None:
    assert format_bytes(512) == "512 B"
    assert format_bytes(8.2 * GIB) == "8.2 GiB"
    assert format_bytes(150 * 1024**2) == "150 MiB"
    assert format_duration(42) == "42s"
    assert format_duration(3 * 86400 + 4 * 3600 + 59) == "3d 4h"
    assert format_duration(3600) == "1h 0m"
    assert format_count(4096) == "4,096"
    assert format_count(2_500_000) == "2.5M"


# ---- figures ---------------------------------------------------------------------------------------
def test_empty_frames_give_a_no_data_annotation_not_an_error() -> None:
    empty = pl.DataFrame(schema={"ts": pl.Datetime("us", "UTC"), "value": pl.Float64, "name": pl.String})
    for figure in (
        timeseries_figure(empty, by="device", unit="bytes", window=WINDOW),
        io_figure(empty, empty, by="device", window=WINDOW),
        empty_figure(),
    ):
        assert figure.data == ()
        assert NO_DATA in annotation_text(figure)
    message = annotation_text(empty_figure("Store unavailable", "read failed: <binder error>"))
    assert "Store unavailable" in message and "read failed: &lt;binder error&gt;" in message


def test_one_trace_per_label_value_in_the_given_order() -> None:
    frame = series("mode", {"steal": [0.01] * 3, "user": [0.3] * 3, "zz": [0.1] * 3, "system": [0.1] * 3})
    order = ("user", "system", "steal")
    figure = timeseries_figure(frame, by="mode", unit="ratio", window=WINDOW, order=order)
    assert [t.name for t in figure.data] == ["user", "system", "steal", "zz"]
    assert len({t.line.color for t in figure.data}) == 4
    assert figure.layout.showlegend is True


def test_ratio_axis_is_percent_and_values_stay_ratios() -> None:
    frame = series("cpu", {"total": [0.25, 0.5, 0.75]})
    figure = timeseries_figure(frame, by="cpu", unit="ratio", window=WINDOW)
    assert figure.layout.yaxis.tickformat == ".0%"
    assert tuple(figure.layout.yaxis.range) == (0, 1)
    (trace,) = figure.data
    assert list(trace.y) == [0.25, 0.5, 0.75]
    assert trace.fill == "tozeroy"  # a lone series is filled
    assert figure.layout.showlegend is False


def test_byte_values_are_scaled_to_the_unit_named_on_the_axis() -> None:
    frame = series("series", {"used": [4 * GIB, 6 * GIB], "total": [16 * GIB, 16 * GIB]})
    figure = timeseries_figure(frame, by="series", unit="bytes", window=WINDOW, dashed={"total"})
    assert figure.layout.yaxis.title.text == "GiB"
    traces = {t.name: t for t in figure.data}
    assert list(traces["used"].y) == [4.0, 6.0]
    assert traces["total"].line.dash == "dash"
    assert "GiB" in traces["used"].hovertemplate


def test_stacked_series_share_a_stack_and_dashed_ones_stay_out() -> None:
    frame = series("mode", {"user": [0.3] * 3, "system": [0.1] * 3, "limit": [0.9] * 3})
    figure = timeseries_figure(frame, by="mode", unit="ratio", window=WINDOW, stacked=True, dashed={"limit"})
    traces = {t.name: t for t in figure.data}
    assert traces["user"].stackgroup == traces["system"].stackgroup == "stack"
    # the top series must not outline the whole stack in its own colour
    assert traces["user"].line.width == traces["system"].line.width == 0
    assert traces["limit"].stackgroup is None


def test_times_are_utc_wall_clock_and_the_axis_covers_the_window() -> None:
    frame = series("cpu", {"total": [0.1, 0.2]}).with_columns(pl.col("ts").dt.convert_time_zone("Europe/Paris"))
    figure = timeseries_figure(frame, by="cpu", unit="ratio", window=WINDOW)
    assert list(figure.data[0].x) == ["2025-03-01 11:59:00", "2025-03-01 12:00:00"]
    paris = (WINDOW[0].astimezone(timezone(timedelta(hours=1))), WINDOW[1])
    layout = timeseries_figure(frame, by="cpu", unit="ratio", window=paris).layout
    assert tuple(layout.xaxis.range) == ("2025-03-01 11:00:00", "2025-03-01 12:00:00")


def test_sparse_series_get_markers_so_a_lone_point_shows() -> None:
    sparse = timeseries_figure(series("cpu", {"total": [0.5]}), by="cpu", unit="ratio", window=WINDOW)
    dense = timeseries_figure(series("cpu", {"total": [0.5] * 60}), by="cpu", unit="ratio", window=WINDOW)
    assert sparse.data[0].mode == "lines+markers"
    assert dense.data[0].mode == "lines"


def test_io_figure_pairs_directions_per_device() -> None:
    inbound = series("device", {"eth0": [3 * 1024**2] * 3, "lo": [1024.0] * 3})
    outbound = series("device", {"eth0": [1024**2] * 3})
    figure = io_figure(inbound, outbound, by="device", window=WINDOW, names=("rx", "tx"))
    traces = {t.name: t for t in figure.data}
    assert set(traces) == {"eth0 rx", "eth0 tx", "lo rx"}
    assert figure.layout.yaxis.title.text == "MiB/s"
    assert list(traces["eth0 rx"].y) == [3.0] * 3
    assert traces["eth0 tx"].line.dash == "dash" and traces["eth0 rx"].line.dash is None
    assert traces["eth0 rx"].line.color == traces["eth0 tx"].line.color
    assert traces["eth0 rx"].legendgroup == "eth0"


def test_used_share_divides_free_by_size_per_mountpoint() -> None:
    rows = [
        (0, 100.0, {"mountpoint": "/"}),
        (0, 25.0, {"mountpoint": "/"}),
        (0, 0.0, {"mountpoint": "/empty"}),
        (0, 0.0, {"mountpoint": "/empty"}),
    ]
    frame = samples(rows).with_columns(
        pl.Series("name", ["host_filesystem_size_bytes", "host_filesystem_free_bytes"] * 2)
    )
    shares = used_share(frame)
    assert shares.select("mountpoint", "value").rows() == [("/", 0.75)]  # size 0 is skipped, not divided by
    assert used_share(frame.clear()).is_empty()


# ---- forecast bands --------------------------------------------------------------------------------
LADDER = {"0s": 0.50, "10m": 0.52, "1h": 0.60, "6h": 0.80}
"""Expected value at each lead; the interval is ± 0.05 around it."""


def forecast(made: datetime, ladder: dict[str, float] = LADDER, mountpoint: str = "/") -> pl.DataFrame:
    """``forecast_used_ratio`` samples as ``store.latest`` returns them, all made at ``made``."""
    rows = [
        (ahead, bound, value + offset)
        for ahead, value in ladder.items()
        for bound, offset in (("expected", 0.0), ("lower", -0.05), ("upper", 0.05))
    ]
    return pl.DataFrame(
        {
            "ts": [made] * len(rows),
            "value": [value for _, _, value in rows],
            "name": "forecast_used_ratio",
            "metric": "host_filesystem_used_ratio",
            "mountpoint": mountpoint,
            "ahead": [ahead for ahead, _, _ in rows],
            "bound": [bound for _, bound, _ in rows],
        },
        schema_overrides={"ts": pl.Datetime("us", "UTC")},
    )


def test_the_band_starts_when_the_forecast_was_made_and_ends_with_the_extended_axis() -> None:
    made = END - timedelta(minutes=20)
    figure = timeseries_figure(series("mountpoint", {"/": [0.5] * 60}), by="mountpoint", unit="ratio", window=WINDOW)
    add_forecast_band(figure, forecast(made), by="mountpoint", window=WINDOW)
    band, expected = (trace for trace in figure.data if trace.name == "forecast")
    end = END + timedelta(minutes=15)  # a quarter of the hour shown
    assert expected.x[0] == made.strftime("%Y-%m-%d %H:%M:%S") and expected.x[-1] == end.strftime("%Y-%m-%d %H:%M:%S")
    assert max(band.x) == expected.x[-1] and min(band.x) == expected.x[0]  # the polygon spans the same times
    assert figure.layout.xaxis.range == (WINDOW[0].strftime("%Y-%m-%d %H:%M:%S"), expected.x[-1])
    assert expected.line.color == "#5794f2" and band.fillcolor == "rgba(87, 148, 242, 0.25)"  # the series' colour
    assert expected.line.dash == "dot" and band.showlegend and not expected.showlegend
    assert figure.layout.yaxis.range == (0, 1) and figure.layout.yaxis.tickformat == ".0%"  # axis untouched


def test_the_path_is_interpolated_between_lead_times_and_cut_at_the_axis_end() -> None:
    made = END - timedelta(minutes=20)
    ((name, path),) = forecast_paths(forecast(made), "mountpoint", END + timedelta(minutes=15))
    assert name == "/" and path["ts"].to_list() == [made, made + timedelta(minutes=10), END + timedelta(minutes=15)]
    # END + 15 min is 25 of the 50 minutes from the 10m lead to the 1h lead: halfway from 0.52 to 0.60
    assert path.row(-1)[1:] == pytest.approx((0.56, 0.51, 0.61))
    assert forecast_paths(forecast(made), "mountpoint", made - timedelta(minutes=1)) == []


def test_a_figure_without_forecast_rows_is_unchanged() -> None:
    figure = timeseries_figure(series("mountpoint", {"/": [0.5] * 60}), by="mountpoint", unit="ratio", window=WINDOW)
    before = figure.to_dict()
    for rows in (pl.DataFrame(), forecast(END).clear()):
        assert add_forecast_band(figure, rows, by="mountpoint", window=WINDOW).to_dict() == before


def test_a_forecast_of_dfs_ratio_is_drawn_as_a_share_of_the_size() -> None:
    gb = 1e9
    frame = samples(
        [(0, 100 * gb, {"mountpoint": "/"}), (0, 70 * gb, {"mountpoint": "/"}), (0, 25 * gb, {"mountpoint": "/"})]
    ).with_columns(
        pl.Series("name", ["host_filesystem_size_bytes", "host_filesystem_used_bytes", "host_filesystem_free_bytes"])
    )
    ratio = forecast(END, {"0s": 70 / 95})  # df: used / (used + available); 5 GB are reserved for root
    shares = share_of_size(ratio, frame).filter(pl.col("bound") == "expected")
    assert shares["value"].to_list() == pytest.approx([0.75])  # as the graph draws it: 1 - free / size
    assert share_of_size(ratio, frame.clear()).is_empty()


# ---- tiles -----------------------------------------------------------------------------------------
def latest(rows: list[tuple[str, float, dict[str, str]]]) -> pl.DataFrame:
    frame = samples([(1, value, labels) for _, value, labels in rows])
    return frame.with_columns(pl.Series("name", [name for name, _, _ in rows]))


def test_tiles_from_the_newest_samples() -> None:
    frame = latest(
        [
            ("host_cpu_usage_ratio", 0.93, {"cpu": "total"}),
            ("host_cpu_usage_ratio", 0.50, {"cpu": "total", "mode": "user"}),
            ("host_cpu_usage_ratio", 0.10, {"cpu": "0"}),
            ("host_cpu_count", 8, {}),
            ("host_memory_used_bytes", 4 * GIB, {}),
            ("host_memory_total_bytes", 16 * GIB, {}),
            ("host_swap_used_bytes", 0, {}),
            ("host_swap_total_bytes", 0, {}),
            ("host_load1", 12.0, {}),
            ("host_load5", 6.0, {}),
            ("host_load15", 3.0, {}),
            ("host_filesystem_size_bytes", 100, {"mountpoint": "/"}),
            ("host_filesystem_free_bytes", 50, {"mountpoint": "/"}),
            ("host_filesystem_size_bytes", 100, {"mountpoint": "/var"}),
            ("host_filesystem_free_bytes", 15, {"mountpoint": "/var"}),
            ("host_uptime_seconds", 90061, {}),
            ("host_open_fds", 4096, {}),
        ]
    )
    tiles = {tile.key: tile for tile in summarize(frame, END)}
    assert (tiles["cpu"].value, tiles["cpu"].detail, tiles["cpu"].level) == ("93%", "of 8 cores", "crit")
    assert (tiles["mem"].value, tiles["mem"].detail, tiles["mem"].level) == ("25%", "4 GiB of 16 GiB", "ok")
    assert tiles["swap"].value == "off"
    assert (tiles["load"].value, tiles["load"].level) == ("12.00", "crit")
    assert "6.00 · 3.00" in tiles["load"].detail
    assert (tiles["fs"].value, tiles["fs"].detail, tiles["fs"].level) == ("85%", "fullest: /var", "warn")
    assert tiles["uptime"].value == "1d 1h"
    assert tiles["fds"].value == "4,096"
    assert tiles["procs"].value == MISSING


def test_tiles_without_data_all_show_missing() -> None:
    tiles = summarize(pl.DataFrame(), END)
    assert len(tiles) == 8
    assert all(tile.value == MISSING and tile.gauge is None for tile in tiles)
