"""The host overview page: header with controls, headline tiles, and a grid of graph cards.

Component ids are module constants so callbacks and tests name the same things.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import plotly.graph_objects as go
from dash import dcc, html

from dashboards.figures import empty_figure
from dashboards.ranges import DEFAULT_RANGE, RANGES
from dashboards.tiles import MISSING, Tile, placeholders

URL = "url"
PAGE = "page"
PAGE_NAME = "page-name"
HOST = "host"
RANGE = "range"
REFRESH = "refresh"
LIVE = "live"
FRESHNESS = "freshness"
TILES = "tiles"
CPU_BUSY = "cpu-busy"
CPU_MODES = "cpu-modes"
MEMORY = "memory"
NETWORK = "network"
FILESYSTEMS = "filesystems"
DISK_IO = "disk-io"


@dataclass(frozen=True)
class Card:
    """A graph card: its graph's id, a title and a short line saying what is drawn."""

    graph: str
    title: str
    subtitle: str


CARDS = (
    Card(CPU_BUSY, "CPU busy", "all cores · % of capacity"),
    Card(CPU_MODES, "CPU by mode", "user · system · iowait · steal"),
    Card(MEMORY, "Memory", "used · cached · available · swap"),
    Card(NETWORK, "Network", "bytes/s per device · tx dashed"),
    Card(FILESYSTEMS, "Filesystems", "used % per mountpoint"),
    Card(DISK_IO, "Disk I/O", "bytes/s per device · write dashed"),
)
GRAPH_HEIGHT = 250
GRAPH_CONFIG = dcc.Graph.Config(displayModeBar=False, displaylogo=False, scrollZoom=False)


NAV = (
    ("/", "Host"),
    ("/containers", "Containers"),
    ("/sites", "Sites"),
    ("/databases", "Databases"),
    ("/alerts", "Alerts"),
    ("/capacity", "Capacity"),
    ("/actions", "Actions"),
)
"""The pages, in the order the navigation shows them."""


def build_layout(hosts: list[str], refresh: timedelta) -> html.Div:
    """The app shell for ``hosts`` (the first one selected), refreshing every ``refresh``; pages go in PAGE."""
    return html.Div(
        className="qwq",
        children=[
            header(hosts),
            html.Div(id=PAGE, children=overview()),
            dcc.Location(id=URL, refresh=False),
            dcc.Interval(id=REFRESH, interval=refresh.total_seconds() * 1000, n_intervals=0),
        ],
    )


def overview() -> html.Main:
    """The host overview page: headline tiles and the graph grid."""
    return html.Main(
        className="qwq-main",
        children=[
            html.Section(id=TILES, className="qwq-tiles", children=render_tiles(placeholders())),
            html.Section(className="qwq-grid", children=[card(c) for c in CARDS]),
        ],
    )


def nav() -> html.Nav:
    """Links to every page; the address bar's query (host, range) is kept by the address callback."""
    return html.Nav(className="qwq-nav", children=[dcc.Link(title, href=path) for path, title in NAV])


def header(hosts: list[str]) -> html.Header:
    """Brand, host selector, range picker and the live/freshness indicator."""
    return html.Header(
        className="qwq-header",
        children=[
            html.Div(
                className="qwq-brand",
                children=[
                    html.Span("qwq", className="qwq-logo"),
                    html.Span("host overview", id=PAGE_NAME, className="qwq-page"),
                    nav(),
                ],
            ),
            html.Div(
                className="qwq-controls",
                children=[
                    html.Div(
                        className="qwq-status",
                        children=[html.Span(id=LIVE, className="qwq-live"), html.Span(id=FRESHNESS)],
                    ),
                    dcc.Dropdown(
                        id=HOST,
                        options=hosts,
                        value=hosts[0] if hosts else None,
                        clearable=False,
                        placeholder="no hosts yet",
                        className="qwq-host",
                    ),
                    dcc.RadioItems(
                        id=RANGE,
                        options=list(RANGES),
                        value=DEFAULT_RANGE,
                        inline=True,
                        className="qwq-range",
                    ),
                ],
            ),
        ],
    )


def card(spec: Card) -> html.Div:
    """One graph card; the graph starts as a "loading" figure until its callback answers."""
    return graph_card(spec.title, spec.subtitle, empty_figure("Loading…"), graph_id=spec.graph)


def graph_card(title: str, subtitle: str, figure: go.Figure, *, graph_id: str | None = None) -> html.Div:
    """A titled card holding one graph."""
    graph = dcc.Graph(
        figure=figure,
        config=GRAPH_CONFIG,
        responsive=True,
        className="qwq-graph",
        style={"height": f"{GRAPH_HEIGHT}px"},
    )
    if graph_id:
        graph.id = graph_id
    return html.Div(
        className="qwq-card",
        children=[
            html.Div(
                className="qwq-card-head",
                children=[html.H2(title), html.Span(subtitle, className="qwq-card-sub")],
            ),
            graph,
        ],
    )


def render_tiles(tiles: list[Tile]) -> list[html.Div]:
    """The tile components: label, big value, detail line and an optional utilisation bar."""
    return [render_tile(tile) for tile in tiles]


def render_tile(tile: Tile) -> html.Div:
    """One tile, coloured by its level (``qwq-level-ok|warn|crit|none``)."""
    children = [
        html.Div(tile.label, className="qwq-tile-label"),
        html.Div(tile.value, className="qwq-tile-value"),
        html.Div(tile.detail, className="qwq-tile-detail", title=tile.detail),
    ]
    if tile.gauge is not None:
        width = f"{min(max(tile.gauge, 0.0), 1.0) * 100:.1f}%"
        bar = html.Div(className="qwq-gauge-fill", style={"width": width})
        children.append(html.Div(bar, className="qwq-gauge"))
    missing = " qwq-tile-missing" if tile.value == MISSING else ""
    return html.Div(children, className=f"qwq-tile qwq-level-{tile.level}{missing}", id=f"tile-{tile.key}")
