"""The alerts and capacity pages: what fires, what is muted, incidents, the timeline; what runs out first.

Both read the store only — the alerting service records every change as an event and writes
``ALERTS{alertstate="firing"}`` series; the analytics service writes ``forecast_threshold_seconds``:

- ``alerts_view`` (page, range, tick): ``latest("ALERTS")``, ``events(kind="alert.*|silence.*|incident.*|
  notification.*")`` over the range → firing table, silences, incidents, timeline
- ``capacity_view`` (page, host, tick): ``latest("forecast_threshold_seconds")`` → soonest first, and for
  the first few a graph of their usage and forecast (:mod:`dashboards.capacity_graphs`)
"""

from __future__ import annotations

import json
import logging
from datetime import datetime
from typing import Any

import dash
import polars as pl
from dash import Input, Output, html

from dashboards import layout
from dashboards.capacity_graphs import capacity_graphs
from dashboards.ranges import range_span
from dashboards.units import format_duration
from qwq_core.errors import QwqError
from qwq_core.store import Store
from qwq_core.timeutil import utcnow

log = logging.getLogger(__name__)

ALERTS_PATH, CAPACITY_PATH = "/alerts", "/capacity"
ALERTS_BODY, CAPACITY_BODY = "alerts-body", "capacity-body"
TIMELINE_KINDS = ("alert.*", "silence.*", "incident.*", "notification.*")
_HIDDEN_LABELS = {"name", "ts", "value", "series_id", "alertstate"}


def page(body_id: str, title: str) -> html.Main:
    """A page whose body one callback fills."""
    return html.Main(
        className="qwq-main",
        children=[html.Section(id=body_id, children=html.Div(f"Loading {title.lower()}…", className="qwq-muted"))],
    )


def card(title: str, content: Any) -> html.Section:
    """A titled card around a table or a message."""
    head = html.Div(className="qwq-card-head", children=[html.H2(title)])
    return html.Section(className="qwq-card qwq-fleet", children=[head, content])


def simple_table(rows: list[dict[str, Any]], columns: list[str], empty: str, down: str | None = None) -> Any:
    """A plain table of ``rows``; rows whose ``down`` key is true are tinted."""
    if not rows:
        return html.Div(empty, className="qwq-muted")
    head = html.Tr([html.Th(c.replace("_", " ")) for c in columns])
    body = [
        html.Tr(
            [html.Td(str(row.get(c) or "")) for c in columns],
            className="qwq-row-down" if down and row.get(down) else None,
        )
        for row in rows
    ]
    return html.Table([html.Thead(head), html.Tbody(body)], className="qwq-table")


def firing_rows(latest: pl.DataFrame) -> list[dict[str, Any]]:
    """One row per firing alert from the newest ``ALERTS`` samples, most severe first."""
    if latest.is_empty():
        return []
    rank = {"critical": 0, "error": 1, "warning": 2, "info": 3}
    rows = []
    for row in latest.iter_rows(named=True):
        labels = {k: v for k, v in row.items() if k not in _HIDDEN_LABELS and v and k not in ("alertname", "severity")}
        rows.append(
            {
                "alertname": row.get("alertname"),
                "severity": row.get("severity") or "",
                "labels": ", ".join(f"{k}={v}" for k, v in sorted(labels.items())),
                "since": row["ts"].strftime("%H:%M:%S"),
                "firing": True,
            }
        )
    return sorted(rows, key=lambda r: (rank.get(r["severity"], 9), r["alertname"] or "", r["labels"]))


def silence_rows(events: pl.DataFrame, now: datetime) -> list[dict[str, Any]]:
    """Silences created and neither expired nor past their end."""
    created: dict[str, dict[str, Any]] = {}
    for row in events.filter(pl.col("kind").str.starts_with("silence.")).sort("id").iter_rows(named=True):
        attrs = json.loads(row["attrs"] or "{}")
        ident = attrs.get("id")
        if row["kind"] == "silence.created" and ident:
            created[ident] = attrs
        elif row["kind"] == "silence.expired":
            created.pop(ident, None)
    live = [s for s in created.values() if s.get("schedule") or not s.get("ends_at") or s["ends_at"] > now.isoformat()]
    return sorted(live, key=lambda s: str(s.get("ends_at")))


def incident_rows(events: pl.DataFrame) -> list[dict[str, Any]]:
    """The newest state of each incident seen in the events, open ones first."""
    latest: dict[str, dict[str, Any]] = {}
    for row in events.filter(pl.col("kind").str.starts_with("incident.")).sort("id").iter_rows(named=True):
        attrs = json.loads(row["attrs"] or "{}")
        ident = attrs.get("incident") or attrs.get("id")
        if ident:
            state = latest.setdefault(ident, {"id": ident, "title": "", "severity": ""})
            state["title"] = attrs.get("title") or state["title"]
            state["severity"] = (attrs.get("labels") or {}).get("severity") or state["severity"]
            state["last change"] = f"{row['ts']:%H:%M:%S} {row['kind'].removeprefix('incident.')}"
            state["open"] = row["kind"] != "incident.resolved"
    return sorted(latest.values(), key=lambda s: (not s["open"], str(s["last change"])), reverse=False)


def timeline_rows(events: pl.DataFrame, limit: int = 50) -> list[dict[str, Any]]:
    """The newest alerting events, newest first."""
    return [
        {"time": f"{row['ts']:%Y-%m-%d %H:%M:%S}", "kind": row["kind"], "message": row["message"]}
        for row in events.sort("id", descending=True).head(limit).iter_rows(named=True)
    ]


def capacity_rows(latest: pl.DataFrame) -> list[dict[str, Any]]:
    """Resources expected to reach the threshold, soonest first, with the forecast's range (and, not shown
    in the table, the ``metric`` and ``labels`` naming the series)."""
    if latest.is_empty() or "bound" not in latest.columns:
        return []
    keys = [c for c in latest.columns if c not in _HIDDEN_LABELS and c != "bound"]
    wide = latest.pivot(on="bound", index=keys, values="value", aggregate_function="first")
    rows = []
    for row in wide.sort("expected", nulls_last=True).iter_rows(named=True):
        where = ", ".join(f"{k}={row[k]}" for k in keys if k not in ("metric", "host") and row[k])
        low, high = row.get("earliest"), row.get("latest")
        rows.append(
            {
                "resource": str(row["metric"]).removeprefix("host_").removesuffix("_used_ratio"),
                "host": row.get("host") or "",
                "where": where,
                "runs out in": format_duration(row["expected"]) if row.get("expected") is not None else "",
                "range": f"{format_duration(low)} – {format_duration(high)}" if low is not None and high else "",
                "soon": row.get("expected") is not None and row["expected"] < 7 * 86400,
                "metric": row["metric"],
                "labels": {k: row[k] for k in keys if k != "metric" and row[k]},
            }
        )
    return rows


def register(app: dash.Dash, store: Store) -> None:
    """The callbacks of both pages."""

    @app.callback(
        Output(ALERTS_BODY, "children"),
        Input(layout.URL, "pathname"),
        Input(layout.RANGE, "value"),
        Input(layout.REFRESH, "n_intervals"),
    )
    def alerts_view(path: str, range_key: str | None, _tick: int) -> Any:
        if path != ALERTS_PATH:
            return dash.no_update
        now = utcnow()
        try:
            firing = store.latest("ALERTS", max_age="2m")
            frames = [store.events(since=now - range_span(range_key), kind=kind, limit=5000) for kind in TIMELINE_KINDS]
            silences = store.events(since="90d", kind="silence.*", limit=10_000)
        except QwqError as exc:
            log.warning("dashboard: alerts page failed: %s", exc)
            return html.Div(f"Store unavailable: {exc}", className="qwq-muted")
        events = pl.concat(frames)
        return [
            card(
                "Firing",
                simple_table(
                    firing_rows(firing),
                    ["alertname", "severity", "labels", "since"],
                    "Nothing is firing.",
                    down="firing",
                ),
            ),
            card(
                "Silences",
                simple_table(
                    silence_rows(silences, now),
                    ["id", "matchers", "ends_at", "created_by", "comment", "schedule"],
                    "No silences.",
                ),
            ),
            card(
                "Incidents",
                simple_table(
                    incident_rows(events),
                    ["id", "title", "severity", "last change"],
                    "No incidents in this range.",
                    down="open",
                ),
            ),
            card("Timeline", simple_table(timeline_rows(events), ["time", "kind", "message"], "No alerting events.")),
        ]

    @app.callback(
        Output(CAPACITY_BODY, "children"),
        Input(layout.URL, "pathname"),
        Input(layout.HOST, "value"),
        Input(layout.REFRESH, "n_intervals"),
    )
    def capacity_view(path: str, host: str | None, _tick: int) -> Any:
        if path != CAPACITY_PATH:
            return dash.no_update
        try:
            latest = store.latest("forecast_threshold_seconds", labels={"host": host} if host else None, max_age="3h")
        except QwqError as exc:
            return html.Div(f"Store unavailable: {exc}", className="qwq-muted")
        columns = ["resource", "host", "where", "runs out in", "range"]
        empty = "Nothing is expected to reach the threshold within the horizon (forecasts refresh hourly)."
        rows = capacity_rows(latest)
        table = card("What runs out first", simple_table(rows, columns, empty, down="soon"))
        return [table, capacity_graphs(store, rows, host, utcnow())]
