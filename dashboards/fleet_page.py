"""The fleet pages' components and callbacks: status table with sparklines, drill-down graphs.

Callbacks and what they read (``h`` = the selected host, ``f`` = the page's :class:`~dashboards.fleets.Fleet`):

- ``fleet_table`` (page, host, range, tick): ``latest(f.latest, host=h)`` and ``query(f.spark)`` over the range
- ``fleet_detail`` (page, ``?target=``, host, range, tick): each of ``f.graphs`` for the picked target
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import parse_qs, urlencode

import dash
from dash import Input, Output, dcc, html

from dashboards import layout
from dashboards.figures import add_anomaly_markers, anomaly_scores, empty_figure, timeseries_figure
from dashboards.fleets import FLEETS, Fleet, fleet_table, parse_target, sparkline_values
from dashboards.ranges import pick_step, range_span
from dashboards.sparkline import sparkline_svg
from qwq_core.errors import QwqError
from qwq_core.selectors import name_glob
from qwq_core.store import Store
from qwq_core.timeutil import utcnow

log = logging.getLogger(__name__)

TABLE = "fleet-table"
DETAIL = "fleet-detail"


def page(fleet: Fleet) -> html.Main:
    """The page skeleton; its callbacks fill the table and the graphs."""
    return html.Main(
        className="qwq-main",
        children=[
            html.Section(
                className="qwq-card qwq-fleet",
                children=[
                    html.Div(className="qwq-card-head", children=[html.H2(fleet.title)]),
                    html.Div(id=TABLE, children=html.Div("Loading…", className="qwq-muted")),
                ],
            ),
            html.Section(id=DETAIL, className="qwq-grid"),
        ],
    )


def render_table(fleet: Fleet, rows: list[dict[str, Any]], sparks: dict[str, list[float]], search: str) -> Any:
    """The status table; each target's name links to its drill-down (``?target=…``, other params kept)."""
    if not rows:
        return html.Div(
            f"No {fleet.title.lower()} reported yet — configure a collector for them.", className="qwq-muted"
        )
    head = html.Tr(
        [
            html.Th(""),
            *(html.Th(k) for k in fleet.key),
            *(html.Th(c.title) for c in fleet.columns),
            html.Th(f"{fleet.spark.title} over the range"),
        ]
    )
    body = []
    for row in rows:
        link = dcc.Link(row[fleet.key[0]] or "—", href=fleet.path + _with_target(search, str(row["id"])))
        cells = [link, *(row[k] for k in fleet.key[1:])]
        body.append(
            html.Tr(
                [
                    html.Td(
                        html.Span(
                            className="qwq-dot " + ("qwq-up" if row["up"] else "qwq-down"),
                            title="up" if row["up"] else "down",
                        )
                    ),
                    *(html.Td(cell) for cell in cells),
                    *(html.Td(row[c.title]) for c in fleet.columns),
                    html.Td(html.Img(src=sparkline_svg(sparks.get(str(row["id"]), [])), className="qwq-spark")),
                ],
                className="qwq-row-down" if not row["up"] else None,
            )
        )
    return html.Table([html.Thead(head), html.Tbody(body)], className="qwq-table")


def _with_target(search: str, target: str) -> str:
    params = {k: v[-1] for k, v in parse_qs((search or "").lstrip("?")).items()}
    params["target"] = target
    return "?" + urlencode(params)


def _spark_history(store: Store, fleet: Fleet, labels: Any, since: Any, until: Any, step: Any) -> Any:
    """The range of the first spark metric the store has (databases name them per engine)."""
    for metric in fleet.spark.metrics:
        frame = store.query(metric, labels=labels, since=since, until=until, step=step)
        if frame.height:
            return frame
    return frame


def register(app: dash.Dash, store: Store) -> None:
    """The fleet pages' callbacks."""

    @app.callback(
        Output(TABLE, "children"),
        Input(layout.URL, "pathname"),
        Input(layout.HOST, "value"),
        Input(layout.RANGE, "value"),
        Input(layout.REFRESH, "n_intervals"),
        dash.State(layout.URL, "search"),
    )
    def fleet_table_view(path: str, host: str | None, range_key: str | None, _tick: int, search: str) -> Any:
        fleet = FLEETS.get(path)
        if fleet is None:
            return dash.no_update
        labels = {"host": host} if host else None
        span = range_span(range_key)
        now = utcnow()
        try:
            latest = store.latest(fleet.latest, labels=labels, max_age="10m")
            history = _spark_history(store, fleet, labels, now - span, now, pick_step(span))
        except QwqError as exc:
            log.warning("dashboard: %s table failed: %s", fleet.title, exc)
            return html.Div(f"Store unavailable: {exc}", className="qwq-muted")
        return render_table(
            fleet, fleet_table(fleet, latest), sparkline_values(fleet.spark, history, fleet.key), search
        )

    @app.callback(
        Output(DETAIL, "children"),
        Input(layout.URL, "pathname"),
        Input(layout.URL, "search"),
        Input(layout.HOST, "value"),
        Input(layout.RANGE, "value"),
        Input(layout.REFRESH, "n_intervals"),
    )
    def fleet_detail(path: str, search: str, host: str | None, range_key: str | None, _tick: int) -> Any:
        fleet = FLEETS.get(path)
        if fleet is None:
            return dash.no_update
        wanted = parse_qs((search or "").lstrip("?")).get("target", [""])[-1]
        target = parse_target(wanted, fleet.key)
        if not target:
            return [html.Div("Pick a target in the table for its graphs.", className="qwq-muted")]
        labels = {**target, **({"host": host} if host else {})}
        span = range_span(range_key)
        now = utcnow()
        window = (now - span, now)
        cards = []
        scores = anomaly_scores(store, labels, window, "*")
        for graph in fleet.graphs:
            try:
                frame = store.query(
                    graph.selector, labels=labels, since=window[0], until=now, step=pick_step(span), agg=graph.agg
                )
                figure = timeseries_figure(
                    frame, by=graph.by if graph.by in frame.columns else "name", unit=graph.unit, window=window
                )
            except QwqError as exc:
                figure = empty_figure("Store unavailable", str(exc), window)
            if not scores.is_empty():
                add_anomaly_markers(figure, scores.filter(name_glob(graph.selector, "metric")))
            figure.update_layout(uirevision=f"{wanted}|{range_key}")
            cards.append(layout.graph_card(graph.title, ", ".join(f"{k}={v}" for k, v in target.items()), figure))
        return cards
