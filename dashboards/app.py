"""The Dash application: :func:`create_dashboard` builds it, the callbacks here wire the page to a store.

Every panel has its own callback reading the store synchronously (the Flask server runs in WSGI worker
threads), so a slow or failing query delays or blanks one panel only: a store error becomes a message in
that panel's figures. Each panel reads the absolute range ending when its callback runs.

Callbacks and what they read (``h`` = the selected host; graphs read the chosen range at its step):

- ``hosts`` (each tick): ``series("host_uptime_seconds")`` → host selector options
- ``address`` (control or address change): nothing → ``?host=…&range=…`` both ways
- ``live`` (range change): nothing → interval on/off and the live badge
- ``tiles``: ``latest("host_*", labels={"host": h})`` → headline tiles and sample freshness
- ``cpu``: ``query('host_cpu_usage_ratio{cpu="total",mode=~"|user|system|iowait|steal"}')`` → busy, modes
- ``memory``: ``query("host_memory_*_bytes")`` and ``query("host_swap_used_bytes")`` → memory graph;
  ``latest("forecast_used_ratio", metric="host_memory_used_ratio")`` → the forecast band of used memory
- ``network``: ``query("host_network_*_bytes_total", agg="rate")`` → rx/tx per device
- ``filesystems``: ``query("host_filesystem_*_bytes")`` → used share per mountpoint (1 - free/size);
  ``latest("forecast_used_ratio", metric="host_filesystem_used_ratio")`` → a forecast band per mountpoint
- ``disk_io``: ``query("host_disk_*_bytes_total", agg="rate")`` → read/write per device
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode

import dash
import plotly.graph_objects as go
from dash import Input, Output, State, no_update

from dashboards import actions_page, alerts_page, fleet_page, layout, panels
from dashboards.figures import add_anomaly_markers, anomaly_scores, empty_figure
from dashboards.fleets import FLEETS
from dashboards.layout import build_layout, render_tiles
from dashboards.ranges import RANGES, is_live, range_span
from dashboards.tiles import freshness, summarize
from qwq_core.errors import QwqError
from qwq_core.store import Store
from qwq_core.timeutil import utcnow

log = logging.getLogger(__name__)

ASSETS = Path(__file__).resolve().parent / "assets"
Panel = Callable[[Store, panels.View], go.Figure | tuple[go.Figure, ...]]
"""A panel builder: one figure, or a tuple of figures for a callback with several graphs."""

ANOMALY_METRICS = {
    "cpu": "host_cpu_usage_ratio",
    "memory": "host_memory_*",
    "network": "host_network_*",
    "filesystems": "host_filesystem_*",
    "disk_io": "host_disk_*",
}
"""Per panel, the metrics whose ``anomaly_score`` series mark its graphs."""
PANELS: dict[str, tuple[tuple[str, ...], Panel]] = {
    "cpu": ((layout.CPU_BUSY, layout.CPU_MODES), panels.cpu_figures),
    "memory": ((layout.MEMORY,), panels.memory_figure),
    "network": ((layout.NETWORK,), panels.network_figure),
    "filesystems": ((layout.FILESYSTEMS,), panels.filesystem_figure),
    "disk_io": ((layout.DISK_IO,), panels.disk_io_figure),
}
"""Graph callbacks by name: the graph ids they fill and the panel function that draws them."""


def create_dashboard(store: Store, refresh: timedelta = timedelta(seconds=5)) -> dash.Dash:
    """The host overview as a Dash app on its own Flask server (``app.server``), mounted at ``/``.

    Graphs refresh every ``refresh`` while the chosen range is shorter than a week.
    """
    app = dash.Dash(
        __name__,
        title="qwq",
        update_title="",  # no "Updating..." flicker in the tab title on every refresh
        assets_folder=str(ASSETS),
        requests_pathname_prefix="/",
        routes_pathname_prefix="/",
        add_log_handler=False,  # handlers are the CLI's business
        suppress_callback_exceptions=True,  # each page's components exist only while it is shown
    )
    app.layout = lambda: build_layout(_hosts(store), refresh)
    _register_router(app)
    fleet_page.register(app, store)
    alerts_page.register(app, store)
    actions_page.register(app, store)
    _register_controls(app, store, refresh)
    _register_tiles(app, store)
    for name, (graphs, panel) in PANELS.items():
        _register_panel(app, store, name, graphs, panel)
    return app


def _hosts(store: Store) -> list[str]:
    try:
        return panels.list_hosts(store)
    except QwqError as exc:
        log.warning("dashboard: cannot list hosts: %s", exc)
        return []


def _register_router(app: dash.Dash) -> None:
    @app.callback(Output(layout.PAGE, "children"), Output(layout.PAGE_NAME, "children"), Input(layout.URL, "pathname"))
    def route(path: str | None) -> tuple[Any, str]:
        """Show the page the address names; unknown paths get the host overview."""
        if path == alerts_page.ALERTS_PATH:
            return alerts_page.page(alerts_page.ALERTS_BODY, "Alerts"), "alerts"
        if path == actions_page.ACTIONS_PATH:
            return alerts_page.page(actions_page.ACTIONS_BODY, "Actions"), "actions"
        if path == alerts_page.CAPACITY_PATH:
            return alerts_page.page(alerts_page.CAPACITY_BODY, "Capacity"), "capacity"
        fleet = FLEETS.get(path or "/")
        if fleet is None:
            return layout.overview(), "host overview"
        return fleet_page.page(fleet), fleet.title.lower()


def _register_controls(app: dash.Dash, store: Store, refresh: timedelta) -> None:
    @app.callback(
        Output(layout.HOST, "options"),
        Output(layout.HOST, "value", allow_duplicate=True),
        Input(layout.REFRESH, "n_intervals"),
        State(layout.HOST, "options"),
        State(layout.HOST, "value"),
        prevent_initial_call=True,
    )
    def hosts(_tick: int, known: list[str] | None, current: str | None) -> tuple[Any, Any]:
        """Pick up hosts that started reporting after the page loaded."""
        found = _hosts(store)
        if found == (known or []):
            return no_update, no_update
        return found, current if current in found else (found[0] if found else None)

    @app.callback(
        Output(layout.URL, "search"),
        Output(layout.HOST, "value"),
        Output(layout.RANGE, "value"),
        Input(layout.URL, "search"),
        Input(layout.HOST, "value"),
        Input(layout.RANGE, "value"),
        State(layout.HOST, "options"),
    )
    def address(search: str | None, host: str | None, range_key: str | None, known: list[str] | None) -> Any:
        """Keep ``?host=…&range=…`` in the address bar, so a view can be bookmarked and shared."""
        if dash.ctx.triggered_id not in (None, layout.URL):  # the user changed a control
            wanted = _search(host, range_key, parse_qs((search or "").lstrip("?")).get("target", [None])[-1])
            return (wanted if wanted != search else no_update), no_update, no_update
        asked = parse_qs((search or "").lstrip("?"))
        host = next((h for h in asked.get("host", []) if h in (known or [])), host)
        range_key = next((r for r in asked.get("range", []) if r in RANGES), range_key)
        return _search(host, range_key, asked.get("target", [None])[-1]), host, range_key

    @app.callback(
        Output(layout.REFRESH, "disabled"),
        Output(layout.LIVE, "children"),
        Output(layout.LIVE, "className"),
        Input(layout.RANGE, "value"),
    )
    def live(range_key: str | None) -> tuple[bool, str, str]:
        """Refresh short ranges on the interval; pause long ones, whose graphs barely move."""
        if is_live(range_span(range_key)):
            return False, f"live · {refresh.total_seconds():g}s", "qwq-live qwq-live-on"
        return True, "paused", "qwq-live qwq-live-off"


def _search(host: str | None, range_key: str | None, target: str | None = None) -> str:
    """The address-bar query string of a view (``target``: the fleet row picked for drill-down)."""
    pairs = (("host", host), ("range", range_key), ("target", target))
    return "?" + urlencode({key: value for key, value in pairs if value})


def _register_tiles(app: dash.Dash, store: Store) -> None:
    @app.callback(
        Output(layout.TILES, "children"),
        Output(layout.FRESHNESS, "children"),
        Input(layout.HOST, "value"),
        Input(layout.REFRESH, "n_intervals"),
    )
    def tiles(host: str | None, _tick: int) -> tuple[Any, str]:
        """The headline tiles from the host's newest samples."""
        if not host:
            return no_update, "waiting for the first host"
        now = utcnow()
        try:
            latest = store.latest("host_*", labels={"host": host})
        except QwqError as exc:
            log.warning("dashboard: tiles for %s failed: %s", host, exc)
            return no_update, f"store unavailable: {exc}"
        return render_tiles(summarize(latest, now)), freshness(latest, now)


def _register_panel(app: dash.Dash, store: Store, name: str, graphs: tuple[str, ...], panel: Panel) -> None:
    def update(host: str | None, range_key: str | None, _tick: int) -> list[go.Figure]:
        if not host:
            return [empty_figure("No hosts yet", "start the host collector")] * len(graphs)
        view = panels.View.ending(host, range_span(range_key), utcnow())
        try:
            drawn = panel(store, view)
        except QwqError as exc:
            log.warning("dashboard: panel %s for %s failed: %s", name, host, exc)
            return [empty_figure("Store unavailable", str(exc), view.window)] * len(graphs)
        figures = list(drawn) if isinstance(drawn, tuple) else [drawn]
        scores = anomaly_scores(store, {"host": view.host}, view.window, ANOMALY_METRICS.get(name))
        for figure in figures:  # keep zoom and legend toggles across refreshes of the same view
            add_anomaly_markers(figure, scores)
            figure.update_layout(uirevision=f"{host}|{range_key}")
        return figures

    update.__name__ = f"update_{name}"
    app.callback(
        [Output(graph, "figure") for graph in graphs],
        Input(layout.HOST, "value"),
        Input(layout.RANGE, "value"),
        Input(layout.REFRESH, "n_intervals"),
    )(update)
