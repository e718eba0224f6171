"""``qwq alerts``, ``qwq silence add|list|expire``, ``qwq incidents``: clients of a running ``qwq up``.

Alert state lives in the server's pipeline, so these commands talk to it over REST (the address comes
from the store's announcement file, the token from the settings) and say so when it is not running.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import typer

from qwq_core.cli.output import Format, out, print_rows
from qwq_core.connect import live_server
from qwq_core.errors import RemoteError
from qwq_core.settings import Settings
from qwq_core.store.remote import RemoteStore

silence_app = typer.Typer(help="Mute alerts by label matchers for a while (or on a schedule).", no_args_is_help=True)
FormatOption = Annotated[Format, typer.Option("--format", "-f", help="output format.")]


def server(settings: Settings) -> RemoteStore:
    """A client of the running ``qwq up`` of these settings' store."""
    running = live_server(settings.store_path)
    if running is None:
        raise RemoteError("qwq is not running on this store: start it with `qwq up`")
    return RemoteStore(running.url, token=settings.server.token_value())


def alerts(
    settings: Settings,
    state: Literal["firing", "resolved", "active", "suppressed", "flapping"] | None,
    fmt: Format,
) -> None:
    """List alerts known to the pipeline."""
    with server(settings) as api:
        rows = api.call("GET", "/alerts", params={"state": state} if state else None)
    columns = ["status", "labels", "starts_at", "received", "duplicates", "silenced_by", "inhibited_by", "incident"]
    print_rows(rows, columns, fmt, "alerts")


def silence_add(settings: Settings, matchers: list[str], duration: str | None, **fields: Any) -> None:
    """Create a silence (or maintenance window) and print its id."""
    body = {"matchers": matchers, "duration": duration, **{k: v for k, v in fields.items() if v is not None}}
    with server(settings) as api:
        created = api.call("POST", "/silences", json=body)
    out.print(f"silence [bold]{created['id']}[/] created: {created['matchers']} until {created.get('ends_at')}")


def silence_list(settings: Settings, state: str | None, fmt: Format) -> None:
    """List silences."""
    with server(settings) as api:
        rows = api.call("GET", "/silences", params={"state": state} if state else None)
    print_rows(
        rows, ["id", "state", "matchers", "starts_at", "ends_at", "created_by", "comment", "schedule"], fmt, "silences"
    )


def silence_expire(settings: Settings, silence_id: str) -> None:
    """End a silence now."""
    with server(settings) as api:
        api.call("DELETE", f"/silences/{silence_id}")
    out.print(f"silence {silence_id} expired")


def incidents(settings: Settings, status: str | None, fmt: Format) -> None:
    """List incidents."""
    with server(settings) as api:
        rows = api.call("GET", "/incidents", params={"status": status} if status else None)
    print_rows(rows, ["id", "status", "severity", "title", "opened_at", "acknowledged_by", "alerts"], fmt, "incidents")


def incident_change(settings: Settings, incident_id: str, verb: str, by: str) -> None:
    """Acknowledge or resolve an incident."""
    with server(settings) as api:
        api.call("POST", f"/incidents/{incident_id}/{verb}", json={"by": by})
    out.print(f"incident {incident_id}: {verb}d by {by}")
