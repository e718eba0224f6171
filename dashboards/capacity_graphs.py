"""The capacity page's graphs: for the resources that run out first, their usage over the last week, continued
by the forecast band, against the threshold.

Reads, for the resources the page's table lists: ``query`` of each of :data:`analytics.capacity.SOURCES` over
:data:`SPAN` (turned into ratios by :func:`analytics.capacity.usage_ratios`, as the capacity job does) and
``latest("forecast_used_ratio")``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

import plotly.graph_objects as go
import polars as pl
from dash import html

from analytics.capacity import SOURCES, usage_ratios
from dashboards import layout
from dashboards.figures import MUTED, Window, add_forecast_band, forecast_rows, timeseries_figure
from dashboards.ranges import pick_step
from qwq_core.errors import QwqError
from qwq_core.store import Store

log = logging.getLogger(__name__)

GRAPHS = 6
"""At most this many resources get a graph, soonest to run out first."""
SPAN = timedelta(days=7)
THRESHOLD = 0.9
"""Where the dashed line is drawn: the default of ``[analytics.capacity] threshold`` (the dashboard is built
from the store alone and does not see the analytics settings)."""


def capacity_graphs(store: Store, resources: list[dict[str, Any]], host: str | None, now: datetime) -> Any:
    """A grid of graph cards for the first :data:`GRAPHS` of ``resources`` (rows of the page's table, with
    their ``metric`` and ``labels``); None when there are none, a message when the store fails."""
    if not resources:
        return None
    window = (now - SPAN, now)
    labels = {"host": host} if host else None
    try:
        frames = [
            store.query(name, labels=labels, since=window[0], until=now, step=pick_step(SPAN)) for name in SOURCES
        ]
    except QwqError as exc:
        log.warning("dashboard: capacity graphs failed: %s", exc)
        return html.Div(f"Store unavailable: {exc}", className="qwq-muted")
    ratios = usage_ratios(pl.concat(frames, how="diagonal_relaxed"))
    forecast = forecast_rows(store, labels or {})
    cards = [
        layout.graph_card(
            f"{row['resource']} {row['where']}".strip(),
            " · ".join(filter(None, (row["host"], row["runs out in"] and f"runs out in {row['runs out in']}"))),
            resource_figure(ratios, forecast, row["metric"], row["labels"], window),
        )
        for row in resources[:GRAPHS]
    ]
    return html.Section(className="qwq-grid", children=cards)


def resource_figure(
    ratios: pl.DataFrame,
    forecast: pl.DataFrame,
    metric: str,
    labels: Mapping[str, str],
    window: Window,
    threshold: float = THRESHOLD,
) -> go.Figure:
    """The usage ratio ``metric`` of the series with ``labels`` over ``window``, its forecast band, and a dashed
    line at ``threshold``. ``ratios`` as :func:`~analytics.capacity.usage_ratios` returns them; ``forecast``
    holds ``forecast_used_ratio`` samples."""
    history = _matching(ratios, "name", metric, labels)
    figure = timeseries_figure(history.with_columns(series=pl.lit("used")), by="series", unit="ratio", window=window)
    if history.is_empty():
        return figure
    band = _matching(forecast, "metric", metric, labels).with_columns(series=pl.lit("used"))
    add_forecast_band(figure, band, by="series", window=window)
    figure.add_hline(
        y=threshold,
        line={"dash": "dash", "color": MUTED, "width": 1},
        annotation={"text": f"{threshold:.0%}", "font": {"color": MUTED, "size": 10}},
        annotation_position="top left",
    )
    return figure


def _matching(frame: pl.DataFrame, column: str, metric: str, labels: Mapping[str, str]) -> pl.DataFrame:
    """The rows of ``frame`` whose ``column`` is ``metric`` and whose labels include ``labels``."""
    if frame.is_empty() or column not in frame.columns or not set(labels) <= set(frame.columns):
        return frame.clear()
    return frame.filter(pl.col(column) == metric, *(pl.col(k) == v for k, v in labels.items()))
