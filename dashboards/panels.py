"""What each dashboard panel reads from the store, and how it turns the answer into figures.

Each ``*_figures`` function makes the fewest queries its panel needs (one selector per panel where the
names share a pattern), reshapes the frames in polars and hands them to :mod:`dashboards.figures`.
They raise whatever the store raises; the callbacks in :mod:`dashboards.app` turn that into a message.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import plotly.graph_objects as go
import polars as pl

from dashboards.figures import Window, add_forecast_band, forecast_rows, io_figure, timeseries_figure, y_scale
from dashboards.ranges import pick_step
from qwq_core.store import Store
from qwq_core.store.tiers import Agg

CPU_MODES = ("user", "system", "iowait", "steal")
CPU_COLORS = {"user": "#5794f2", "system": "#ff9830", "iowait": "#b877d9", "steal": "#f2495c"}
"""Mode colours as sysadmins expect them: steal, the one to worry about, in red."""
MEMORY_SERIES = {
    "host_memory_used_bytes": "used",
    "host_memory_cached_bytes": "cached",
    "host_memory_available_bytes": "available",
    "host_swap_used_bytes": "swap used",
    "host_memory_total_bytes": "total",
}
"""Memory metrics drawn, and their legend names in drawing order."""
_SHARE_SCHEMA = pl.Schema({"ts": pl.Datetime("us", "UTC"), "mountpoint": pl.String(), "value": pl.Float64()})


@dataclass(frozen=True)
class View:
    """What every panel of one refresh reads: one host over one absolute time range at one step."""

    host: str
    start: datetime
    end: datetime
    step: timedelta | None

    @classmethod
    def ending(cls, host: str, span: timedelta, now: datetime) -> View:
        """The view of the ``span`` before ``now``, at the step :func:`pick_step` chooses for it."""
        return cls(host, now - span, now, pick_step(span))

    @property
    def window(self) -> Window:
        """The graphs' time axis."""
        return self.start, self.end

    def read(self, store: Store, metric: str, agg: Agg = "avg") -> pl.DataFrame:
        """``store.query`` of ``metric`` restricted to this view's host, range and step."""
        return store.query(
            metric, labels={"host": self.host}, since=self.start, until=self.end, step=self.step, agg=agg
        )


def list_hosts(store: Store) -> list[str]:
    """Hosts the host collector reports on (those with an uptime series), sorted."""
    series = store.series("host_uptime_seconds")
    if "host" not in series.columns:
        return []
    return sorted(series["host"].drop_nulls().unique().to_list())


def cpu_figures(store: Store, view: View) -> tuple[go.Figure, go.Figure]:
    """CPU busy share of all cores, and the time by mode stacked (one query for both)."""
    modes = "|".join(CPU_MODES)
    frame = view.read(store, f'host_cpu_usage_ratio{{cpu="total",mode=~"|{modes}"}}')
    mode = pl.col("mode").fill_null("") if "mode" in frame.columns else pl.lit("")
    busy = frame.filter(mode == "").with_columns(pl.lit("busy").alias("series"))
    by_mode = frame.filter(mode != "")
    window = view.window
    return (
        timeseries_figure(busy, by="series", unit="ratio", window=window),
        timeseries_figure(
            by_mode, by="mode", unit="ratio", window=window, stacked=True, order=CPU_MODES, colors=CPU_COLORS
        ),
    )


def memory_figure(store: Store, view: View) -> go.Figure:
    """Used, cached, available and swap used, with the total as a dashed ceiling; used continues as its
    forecast."""
    frame = pl.concat(
        [view.read(store, "host_memory_*_bytes"), view.read(store, "host_swap_used_bytes")],
        how="diagonal_relaxed",
    )
    named = frame.filter(pl.col("name").is_in(list(MEMORY_SERIES))).with_columns(
        pl.col("name").replace_strict(MEMORY_SERIES).alias("series")
    )
    order = list(MEMORY_SERIES.values())
    figure = timeseries_figure(named, by="series", unit="bytes", window=view.window, order=order, dashed={"total"})
    forecast = forecast_rows(store, {"host": view.host, "metric": "host_memory_used_ratio"})
    used = memory_in_bytes(forecast, frame)
    if used.is_empty() or named.is_empty():
        return figure
    divisor, hover = y_scale(named, "bytes")
    band = used.with_columns(pl.col("value") / divisor, series=pl.lit("used"))
    return add_forecast_band(figure, band, by="series", window=view.window, hover=hover)


def filesystem_figure(store: Store, view: View) -> go.Figure:
    """Used share of each filesystem, by mountpoint, continued by its forecast."""
    frame = view.read(store, "host_filesystem_*_bytes")
    figure = timeseries_figure(used_share(frame), by="mountpoint", unit="ratio", window=view.window)
    forecast = forecast_rows(store, {"host": view.host, "metric": "host_filesystem_used_ratio"})
    return add_forecast_band(figure, share_of_size(forecast, frame), by="mountpoint", window=view.window)


def used_share(frame: pl.DataFrame) -> pl.DataFrame:
    """``ts, mountpoint, value``: 1 - free/size per mountpoint from a frame holding both metrics."""
    if frame.is_empty() or "mountpoint" not in frame.columns:
        return pl.DataFrame(schema=_SHARE_SCHEMA)
    size = frame.filter(pl.col("name") == "host_filesystem_size_bytes", pl.col("value") > 0)
    free = frame.filter(pl.col("name") == "host_filesystem_free_bytes")
    joined = size.join(free, on=["ts", "mountpoint"], suffix="_free")
    return joined.select("ts", "mountpoint", (1 - pl.col("value_free") / pl.col("value")).alias("value"))


def share_of_size(forecast: pl.DataFrame, frame: pl.DataFrame) -> pl.DataFrame:
    """A forecast of df's used ratio, used / (used + available), as the share of the size the graph draws.

    The graph counts blocks reserved for root (size − used − available: 5 % on ext4) as used, the forecast
    does not; with the newest samples' sizes, share = 1 − (1 − ratio) · (used + available) / size. Empty
    when ``frame`` lacks them.
    """
    names = ("host_filesystem_used_bytes", "host_filesystem_free_bytes", "host_filesystem_size_bytes")
    if forecast.is_empty() or frame.is_empty() or not set(names) <= set(frame["name"]):
        return forecast.clear()
    newest = frame.filter(pl.col("ts") == pl.col("ts").max().over("name", "mountpoint"))
    sizes = newest.pivot(on="name", index="mountpoint", values="value", aggregate_function="last").select(
        "mountpoint", kept=(pl.col(names[0]) + pl.col(names[1])) / pl.col(names[2])
    )
    shares = forecast.join(sizes, on="mountpoint").with_columns(value=1 - (1 - pl.col("value")) * pl.col("kept"))
    return shares.drop("kept")


def memory_in_bytes(forecast: pl.DataFrame, frame: pl.DataFrame) -> pl.DataFrame:
    """A forecast of the used share of memory in bytes: ratio × the newest total. Empty without the total."""
    total = frame.filter(pl.col("name") == "host_memory_total_bytes").sort("ts") if not frame.is_empty() else frame
    if forecast.is_empty() or total.is_empty():
        return forecast.clear()
    return forecast.with_columns(pl.col("value") * total["value"][-1])


def disk_io_figure(store: Store, view: View) -> go.Figure:
    """Bytes read and written per second, by device."""
    metrics = ("host_disk_read_bytes_total", "host_disk_written_bytes_total")
    return _rates_figure(store, view, "host_disk_*_bytes_total", metrics, ("read", "write"))


def network_figure(store: Store, view: View) -> go.Figure:
    """Bytes received and transmitted per second, by network device."""
    metrics = ("host_network_receive_bytes_total", "host_network_transmit_bytes_total")
    return _rates_figure(store, view, "host_network_*_bytes_total", metrics, ("rx", "tx"))


def _rates_figure(
    store: Store, view: View, pattern: str, metrics: tuple[str, str], names: tuple[str, str]
) -> go.Figure:
    """Two counters per device (``pattern`` matches both), read as per-second rates, drawn in and out."""
    frame = view.read(store, pattern, agg="rate")
    inbound, outbound = (frame.filter(pl.col("name") == metric) for metric in metrics)
    return io_figure(inbound, outbound, by="device", window=view.window, names=names)
