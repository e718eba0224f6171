"""The actions page: installed apps and the audit trail — both folded from the store's events.

- ``actions_view`` (page, range, tick): ``events(kind="app.*")`` (all time) → installed apps;
  ``events(kind="action.*")`` over the range → the audit trail, newest first
"""

from __future__ import annotations

import json
from typing import Any

import dash
import polars as pl
from dash import Input, Output, html

from dashboards import layout
from dashboards.alerts_page import card, simple_table
from dashboards.ranges import range_span
from qwq_core.errors import QwqError
from qwq_core.store import Store
from qwq_core.timeutil import utcnow

ACTIONS_PATH = "/actions"
ACTIONS_BODY = "actions-body"


def installed_apps(events: pl.DataFrame) -> list[dict[str, Any]]:
    """Apps installed and not uninstalled since, with their version and parameters (secrets never shown)."""
    apps: dict[str, dict[str, Any]] = {}
    for row in events.sort("id").iter_rows(named=True):
        attrs = json.loads(row["attrs"] or "{}")
        name = attrs.get("app")
        if not name:
            continue
        if row["kind"] == "app.uninstalled":
            apps.pop(name, None)
        elif row["kind"] in ("app.installed", "app.upgraded"):
            params = ", ".join(f"{k}={v}" for k, v in sorted((attrs.get("params") or {}).items()))
            apps[name] = {
                "app": name,
                "template": attrs.get("template", name),
                "version": attrs.get("version", ""),
                "parameters": params,
                "since": f"{row['ts']:%Y-%m-%d %H:%M}",
                "ignore upgrade": apps.get(name, {}).get("ignore upgrade", ""),
            }
        elif row["kind"] == "app.ignore_upgrade" and name in apps:
            apps[name]["ignore upgrade"] = "yes" if attrs.get("ignore") else ""
    return sorted(apps.values(), key=lambda a: a["app"])


def audit_rows(events: pl.DataFrame, limit: int = 100) -> list[dict[str, Any]]:
    """The newest action runs: when, who, what, on which target, and how it went."""
    rows = []
    for row in events.sort("id", descending=True).head(limit).iter_rows(named=True):
        attrs = json.loads(row["attrs"] or "{}")
        rows.append(
            {
                "time": f"{row['ts']:%Y-%m-%d %H:%M:%S}",
                "actor": attrs.get("actor", ""),
                "action": attrs.get("action", ""),
                "target": attrs.get("target", ""),
                "outcome": attrs.get("outcome", row["kind"].removeprefix("action.")),
                "changes": len(attrs.get("changes") or []),
                "error": attrs.get("error") or "",
                "failed": row["kind"] == "action.failed",
            }
        )
    return rows


def register(app: dash.Dash, store: Store) -> None:
    """The page's callback."""

    @app.callback(
        Output(ACTIONS_BODY, "children"),
        Input(layout.URL, "pathname"),
        Input(layout.RANGE, "value"),
        Input(layout.REFRESH, "n_intervals"),
    )
    def actions_view(path: str, range_key: str | None, _tick: int) -> Any:
        if path != ACTIONS_PATH:
            return dash.no_update
        try:
            apps = store.events(since="36500d", kind="app.*", limit=100_000)
            runs = store.events(since=utcnow() - range_span(range_key), kind="action.*", limit=1000)
        except QwqError as exc:
            return html.Div(f"Store unavailable: {exc}", className="qwq-muted")
        app_columns = ["app", "template", "version", "parameters", "since", "ignore upgrade"]
        run_columns = ["time", "actor", "action", "target", "outcome", "changes", "error"]
        return [
            card(
                "Installed apps", simple_table(installed_apps(apps), app_columns, "No apps installed (qwq apps list).")
            ),
            card(
                "Audit trail", simple_table(audit_rows(runs), run_columns, "No actions in this range.", down="failed")
            ),
        ]


__all__ = ["ACTIONS_BODY", "ACTIONS_PATH", "audit_rows", "installed_apps", "register"]
