"""Plotly figures from sample frames — pure functions: polars in, :class:`plotly.graph_objects.Figure` out.

Every function takes frames shaped like :meth:`~qwq_core.store.Store.query` answers (``ts, value`` and
label columns) plus the time window the graph covers, and draws one trace per label value in the house
theme: dark, thin lines, units on the y axis, times in UTC. An empty frame gives a "no data yet" figure
instead of an empty plot, so panels never have to check. Overlays (anomaly markers, forecast bands) are
added to a drawn figure, and leave it as it was when there is nothing to add.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from html import escape
from typing import Any, Literal

import numpy as np
import plotly.graph_objects as go
import polars as pl

from dashboards.units import byte_scale
from qwq_core.errors import QwqError
from qwq_core.selectors import name_glob
from qwq_core.store import Store
from qwq_core.timeutil import parse_duration

log = logging.getLogger(__name__)

Unit = Literal["ratio", "bytes", "bytes/s", "seconds", "count"]
Window = tuple[datetime, datetime]
"""The ``(start, end)`` a graph's time axis covers, UTC."""

PALETTE = ("#5794f2", "#73bf69", "#ff9830", "#b877d9", "#f2cc0c", "#f2495c", "#8ab8ff", "#96d98d", "#ffb357")
TEXT = "#c7d0d9"
MUTED = "#8e98a8"
GRID = "rgba(204, 214, 230, 0.07)"
FONT = "Inter, system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif"
_TS_FORMAT = "%Y-%m-%d %H:%M:%S"
NO_DATA = "No data yet"
THEME = go.layout.Template(
    layout={
        "paper_bgcolor": "rgba(0,0,0,0)",
        "plot_bgcolor": "rgba(0,0,0,0)",
        "font": {"family": FONT, "size": 11, "color": TEXT},
        "margin": {"l": 52, "r": 14, "t": 12, "b": 30},
        "hovermode": "x unified",
        "hoverlabel": {"bgcolor": "#1f242d", "bordercolor": "#3a4150", "font": {"color": TEXT}},
        "legend": {
            "orientation": "h",
            "x": 0,
            "y": 1.0,
            "yanchor": "bottom",
            "bgcolor": "rgba(0,0,0,0)",
            "traceorder": "normal",
        },
        "xaxis": {
            "type": "date",
            "gridcolor": GRID,
            "linecolor": GRID,
            "zeroline": False,
            "hoverformat": "%b %d %H:%M:%S UTC",
            "tickfont": {"color": MUTED},
        },
        "yaxis": {"gridcolor": GRID, "zeroline": False, "tickfont": {"color": MUTED}},
    }
)
"""The house theme, validated once; every figure names it instead of plotly's default template."""
_MARKERS_BELOW = 30
"""Traces with fewer points also get markers, so a lone sample is visible."""
_TICK_FORMATS = [  # by tick spacing in ms: one line of labels, no date row under the axis
    {"dtickrange": [None, 60_000], "value": "%H:%M:%S"},
    {"dtickrange": [60_000, 86_400_000], "value": "%H:%M"},
    {"dtickrange": [86_400_000, None], "value": "%b %d"},
]


def empty_figure(message: str = NO_DATA, detail: str = "", window: Window | None = None) -> go.Figure:
    """A figure with no traces and ``message`` (and a smaller ``detail`` line, e.g. an error) in the middle."""
    text = escape(message)
    if detail:
        text += f"<br><span style='font-size:11px;color:{MUTED}'>{escape(detail)}</span>"
    layout = _layout(window, {"visible": False}, legend=False)
    layout["xaxis"].update(visible=window is not None, showgrid=False)
    layout["annotations"] = [
        {
            "text": text,
            "showarrow": False,
            "xref": "paper",
            "yref": "paper",
            "x": 0.5,
            "y": 0.5,
            "font": {"size": 14, "color": MUTED},
        }
    ]
    return go.Figure(layout=layout)


def timeseries_figure(
    frame: pl.DataFrame,
    *,
    by: str,
    unit: Unit,
    window: Window,
    stacked: bool = False,
    order: Sequence[str] = (),
    dashed: Collection[str] = (),
    colors: Mapping[str, str] | None = None,
) -> go.Figure:
    """One line per value of the ``by`` column (stacked areas with ``stacked``).

    ``order`` puts those series first (legend, stacking from the bottom); the others follow sorted.
    Series named in ``dashed`` are drawn as dashed lines outside any stack (a total, a limit). Colours
    come from ``colors`` by series name, else from :data:`PALETTE` in order.
    """
    if frame.is_empty():
        return empty_figure(window=window)
    divisor, axis, hover = _y_axis(unit, _largest(frame, stacked))
    groups = _groups(frame, by, order)
    single = len(groups) == 1 and not stacked
    traces = [
        _trace(
            name,
            part,
            divisor,
            hover,
            (colors or {}).get(name, PALETTE[i % len(PALETTE)]),
            dash="dash" if name in dashed else None,
            stack=stacked and name not in dashed,
            fill=single,
        )
        for i, (name, part) in enumerate(groups)
    ]
    return go.Figure(data=traces, layout=_layout(window, axis, legend=len(traces) > 1))


def io_figure(
    inbound: pl.DataFrame,
    outbound: pl.DataFrame,
    *,
    by: str,
    window: Window,
    names: tuple[str, str] = ("in", "out"),
) -> go.Figure:
    """Byte rates in two directions per value of ``by``: one colour per device, outbound dashed."""
    if inbound.is_empty() and outbound.is_empty():
        return empty_figure(window=window)
    divisor, axis, hover = _y_axis("bytes/s", max(_largest(inbound), _largest(outbound)))
    directions = [(dict(_groups(inbound, by)), names[0], None), (dict(_groups(outbound, by)), names[1], "dash")]
    devices = sorted(set().union(*(groups for groups, _, _ in directions)))
    traces = []
    for i, device in enumerate(devices):
        color = PALETTE[i % len(PALETTE)]
        for groups, direction, dash in directions:
            if device in groups:
                trace = _trace(f"{device} {direction}", groups[device], divisor, hover, color, dash=dash)
                traces.append({**trace, "legendgroup": device})
    return go.Figure(data=traces, layout=_layout(window, axis, legend=len(traces) > 1))


def _groups(frame: pl.DataFrame, by: str, order: Sequence[str] = ()) -> list[tuple[str, pl.DataFrame]]:
    """``(label value, its rows sorted by time)`` pairs: ``order`` first, then the rest sorted."""
    if frame.is_empty():
        return []
    keyed = frame.with_columns(pl.col(by).fill_null("") if by in frame.columns else pl.lit("").alias(by))
    parts = {key[0]: part.sort("ts") for key, part in keyed.partition_by(by, as_dict=True).items()}
    names = [n for n in order if n in parts] + sorted(set(parts) - set(order))
    return [(str(name), parts[name]) for name in names]


ANOMALY_COLOR = "#f2495c"


def anomaly_scores(
    store: Store, labels: dict[str, str], window: tuple[datetime, datetime], metrics: str | None
) -> pl.DataFrame:
    """The ``anomaly_score`` series with ``labels`` over ``window`` whose ``metric`` matches the name glob
    ``metrics`` (empty when ``metrics`` is None or the store fails: graphs still draw without markers)."""
    if metrics is None:
        return pl.DataFrame()
    try:
        scores = store.query("anomaly_score", labels=labels, since=window[0], until=window[1])
    except QwqError as exc:
        log.warning("dashboard: anomaly scores unavailable: %s", exc)
        return pl.DataFrame()
    if scores.is_empty() or "metric" not in scores.columns:
        return pl.DataFrame()
    return scores.filter(name_glob(metrics, "metric"))


def add_anomaly_markers(figure: go.Figure, scores: pl.DataFrame, threshold: float = 0.5) -> go.Figure:
    """Mark the times ``scores`` (``ts, value, metric, <labels>``) reach ``threshold``: red triangles along
    the top of the graph, hovering which series and how unusual. The figure's own y axis is untouched."""
    hits = scores.filter(pl.col("value") >= threshold).sort("ts") if not scores.is_empty() else scores
    if hits.is_empty():
        return figure
    labels = [c for c in hits.columns if c not in ("ts", "value", "name", "metric", "host", "series_id")]
    text = [
        f"{row['metric']}{{{', '.join(f'{k}={row[k]}' for k in labels if row.get(k))}}} score {row['value']:.2f}"
        for row in hits.iter_rows(named=True)
    ]
    figure.add_trace(
        go.Scatter(
            x=_timestamps(hits["ts"]),
            y=[1.0] * hits.height,
            yaxis="y2",
            mode="markers",
            marker={"symbol": "triangle-down", "size": 9, "color": ANOMALY_COLOR},
            name="anomaly",
            hovertext=text,
            hovertemplate="%{hovertext}<extra>anomaly</extra>",
        )
    )
    figure.update_layout(yaxis2={"overlaying": "y", "range": [0, 1.04], "visible": False, "fixedrange": True})
    return figure


FORECAST_METRIC = "forecast_used_ratio"
FORECAST_EXTENSION = 0.25
"""How far a graph with a forecast band extends its time axis past the window's end, as a share of the window
(at least the forecast's first lead time)."""
_BANDS = ("expected", "lower", "upper")


def forecast_rows(store: Store, labels: dict[str, str]) -> pl.DataFrame:
    """The newest ``forecast_used_ratio`` samples with ``labels`` (``metric`` among them), from the last three
    hours — the capacity job refreshes hourly. Empty when the store fails: graphs still draw, without a band."""
    try:
        return store.latest(FORECAST_METRIC, labels=labels, max_age="3h")
    except QwqError as exc:
        log.warning("dashboard: forecasts unavailable: %s", exc)
        return pl.DataFrame()


def forecast_paths(forecast: pl.DataFrame, by: str, until: datetime) -> list[tuple[str, pl.DataFrame]]:
    """Per value of ``by``: ``ts, expected, lower, upper`` from the time its newest forecast was made to
    ``until`` at the latest — one point per lead time (``ahead``), and where the path runs past ``until`` a
    last point there, linearly interpolated. ``forecast`` holds ``forecast_used_ratio`` samples
    (``ts, value, bound, ahead, <by>``); a series with no point before ``until`` is left out."""
    if forecast.is_empty() or not {"bound", "ahead"} <= set(forecast.columns):
        return []
    paths = []
    for name, part in _groups(forecast, by):
        newest = part.filter(pl.col("ts") == pl.col("ts").max())  # not a lead only an older refresh reached
        wide = newest.pivot(on="bound", index=["ts", "ahead"], values="value", aggregate_function="first")
        if not set(_BANDS) <= set(wide.columns):
            continue
        leads = pl.Series([parse_duration(a) for a in wide["ahead"]], dtype=pl.Duration("us"))
        points = wide.select((pl.col("ts") + leads).alias("ts"), *_BANDS).sort("ts")
        inside = points.filter(pl.col("ts") <= until)
        if inside.is_empty():
            continue
        if inside.height < points.height:
            inside = pl.concat([inside, _interpolated(points, until)])
        paths.append((name, inside))
    return paths


def add_forecast_band(
    figure: go.Figure, forecast: pl.DataFrame, *, by: str, window: Window, hover: str = "%{y:.1%}"
) -> go.Figure:
    """Continue each series past the window's end with its forecast: the interval shaded and the expected
    path dotted, in the colour of the figure's trace named by the ``by`` value, grouped under one "forecast"
    legend entry. The time axis extends by :data:`FORECAST_EXTENSION`; the y axis is left alone. ``forecast``
    is as :func:`forecast_paths` takes it, its values in the figure's units (``hover`` formats them)."""
    end = _extended_end(window, forecast)
    paths = forecast_paths(forecast, by, end)
    if not paths:
        return figure
    colors = {trace.name: trace.line.color for trace in figure.data if getattr(trace, "line", None)}
    low, high = (hover.replace("%{y", f"%{{customdata[{bound}]") for bound in (0, 1))
    for i, (name, path) in enumerate(paths):
        color = colors.get(name or "value") or PALETTE[i % len(PALETTE)]
        x = _timestamps(path["ts"])
        common = {"name": "forecast", "legendgroup": "forecast", "mode": "lines"}
        figure.add_trace(
            go.Scatter(
                x=x + x[::-1],
                y=path["upper"].to_list() + path["lower"].to_list()[::-1],
                fill="toself",
                fillcolor=_alpha(color, 0.25),
                line={"width": 0},
                hoverinfo="skip",
                showlegend=i == 0,
                **common,
            )
        )
        figure.add_trace(
            go.Scatter(
                x=x,
                y=path["expected"].to_list(),
                customdata=path.select("lower", "upper").rows(),
                line={"color": color, "width": 1.4, "dash": "dot"},
                hovertemplate=f"{hover} ({low}–{high})<extra>{escape(name or 'value')} forecast</extra>",
                showlegend=False,
                **common,
            )
        )
    figure.update_layout(xaxis_range=[_utc_text(window[0]), _utc_text(end)], showlegend=True, margin={"t": 30})
    return figure


def _extended_end(window: Window, forecast: pl.DataFrame) -> datetime:
    """The window's end plus :data:`FORECAST_EXTENSION` of it, or the forecast's first lead if that is longer."""
    leads = [parse_duration(a) for a in forecast["ahead"].unique()] if "ahead" in forecast.columns else []
    first = min((lead for lead in leads if lead > timedelta()), default=timedelta())
    return window[1] + max((window[1] - window[0]) * FORECAST_EXTENSION, first)


def _interpolated(points: pl.DataFrame, at: datetime) -> pl.DataFrame:
    """``points`` (``ts`` and the bands) linearly interpolated at ``at``."""
    ts = points["ts"].dt.epoch("us").to_numpy()
    moment = pl.Series([at], dtype=points.schema["ts"]).dt.epoch("us")[0]
    values = {band: [float(np.interp(moment, ts, points[band].to_numpy()))] for band in _BANDS}
    return pl.DataFrame({"ts": pl.Series([at], dtype=points.schema["ts"]), **values})


def y_scale(frame: pl.DataFrame, unit: Unit, *, stacked: bool = False) -> tuple[float, str]:
    """``(divisor, hover template)`` of the y axis :func:`timeseries_figure` draws ``frame`` on: what an overlay
    in the same units divides its values by, and how it formats them."""
    divisor, _, hover = _y_axis(unit, _largest(frame, stacked))
    return divisor, hover


def _largest(frame: pl.DataFrame, stacked: bool = False) -> float:
    """The highest point a frame reaches on the y axis (per timestamp sum when stacked)."""
    if frame.is_empty():
        return 0.0
    values = frame.group_by("ts").agg(pl.col("value").sum())["value"] if stacked else frame["value"]
    return float(values.max() or 0.0)  # type: ignore[arg-type]


def _y_axis(unit: Unit, largest: float) -> tuple[float, dict[str, Any], str]:
    """``(divisor, y axis settings, hover template)`` for values of ``unit`` reaching ``largest``."""
    if unit == "ratio":
        axis_range = [0, 1] if largest <= 1.0 else None
        return 1.0, {"tickformat": ".0%", "range": axis_range}, "%{y:.1%}"
    if unit in ("seconds", "count"):
        suffix = "s" if unit == "seconds" else ""
        axis = {"title": {"text": suffix, "font": {"size": 11, "color": MUTED}}, "rangemode": "tozero"}
        return 1.0, axis, f"%{{y:,.3~g}} {suffix}".rstrip()
    divisor, prefix = byte_scale(largest)
    suffix = f"{prefix}/s" if unit == "bytes/s" else prefix
    axis = {"title": {"text": suffix, "font": {"size": 11, "color": MUTED}}, "rangemode": "tozero"}
    return divisor, axis, f"%{{y:,.2f}} {suffix}"


def _trace(
    name: str,
    part: pl.DataFrame,
    divisor: float,
    hover: str,
    color: str,
    *,
    dash: str | None = None,
    stack: bool = False,
    fill: bool = False,
) -> dict[str, Any]:
    """One line (or stacked area) as a plotly trace dict: values divided by ``divisor``."""
    values = part["value"] / divisor if divisor != 1.0 else part["value"]
    trace: dict[str, Any] = {
        "type": "scatter",
        "x": _timestamps(part["ts"]),
        "y": values.to_list(),
        "name": name or "value",
        "mode": "lines" if part.height >= _MARKERS_BELOW else "lines+markers",
        "marker": {"size": 5},
        "line": {"color": color, "width": 1.6, "dash": dash},
        "hovertemplate": hover,
    }
    if stack:
        # No outline: a stacked trace's line runs along the cumulative top, so the last series' colour
        # would outline the whole stack (a 0.02 % steal looked like steal spikes to 100 %).
        trace.update(stackgroup="stack", fillcolor=_alpha(color, 0.7))
        trace["line"]["width"] = 0
    elif fill:
        trace.update(fill="tozeroy", fillcolor=_alpha(color, 0.14))
    return trace


def _layout(window: Window | None, yaxis: dict[str, Any], *, legend: bool) -> dict[str, Any]:
    """A figure's own layout on top of :data:`THEME`: its time window, y axis and legend."""
    return {
        "template": THEME,
        "margin": {"t": 30 if legend else 12},
        "showlegend": legend,
        "xaxis": {
            "range": [_utc_text(moment) for moment in window] if window else None,
            "tickformatstops": _TICK_FORMATS,  # templates treat arrays of objects as item defaults
        },
        "yaxis": yaxis,
    }


def _timestamps(ts: pl.Series) -> list[str]:
    """UTC wall-clock strings: plotly.js draws dates as given, ignoring any offset."""
    if isinstance(ts.dtype, pl.Datetime) and ts.dtype.time_zone is not None:
        ts = ts.dt.convert_time_zone("UTC").dt.replace_time_zone(None)
    return ts.dt.strftime(_TS_FORMAT).to_list()


def _utc_text(moment: datetime) -> str:
    """A datetime as UTC wall-clock text (naive datetimes are UTC already)."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.strftime(_TS_FORMAT)


def _alpha(color: str, alpha: float) -> str:
    """``#rrggbb`` as an ``rgba()`` string with the given opacity."""
    red, green, blue = (int(color[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgba({red}, {green}, {blue}, {alpha})"
