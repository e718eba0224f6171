"""The ``qwq`` command: thin commands over library calls.

Exit codes: 0 success, 1 failure, 2 bad input (invalid config, query or arguments) — with a one-line
reason per problem on stderr and no traceback.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from pathlib import Path
from typing import Annotated, Any, Literal

import polars as pl
import typer
from pydantic import ValidationError
from rich.logging import RichHandler

from qwq_core import __version__
from qwq_core.announce import Announcement, announcement_path
from qwq_core.cli import alerts_cli
from qwq_core.cli.actions_cli import action_app, audit_command
from qwq_core.cli.apps_cli import apps_app
from qwq_core.cli.output import Format, err, out, print_frame, table
from qwq_core.collector import build_collectors, configured, registry
from qwq_core.connect import connect, live_server
from qwq_core.errors import ConfigError, ConfigIssue, QwqError, StoreLockedError, exit_code
from qwq_core.model import Event
from qwq_core.runtime import collector_job, failure_reason
from qwq_core.scheduler import Outcome, Scheduler
from qwq_core.selectors import parse_label_filters
from qwq_core.services import validate_options
from qwq_core.settings import CollectorSettings, Settings, load_settings, override, read_toml, resolve_config_path
from qwq_core.store.base import Store
from qwq_core.store.local import LocalStore
from qwq_core.store.remote import RemoteStore
from qwq_core.targets import target_table
from qwq_core.timeutil import utcnow

app = typer.Typer(
    name="qwq",
    help="qwq — watch hosts, store every sample in DuckDB, query it as polars frames.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    add_completion=False,
)
config_app = typer.Typer(help="Check or show the configuration.", no_args_is_help=True)
app.add_typer(config_app, name="config")
app.add_typer(alerts_cli.silence_app, name="silence")
app.add_typer(action_app, name="action")
app.add_typer(apps_app, name="apps")
app.command("audit")(audit_command)

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", envvar="QWQ_CONFIG", help="TOML config file (default $QWQ_HOME/qwq.toml)."),
]
StoreOption = Annotated[
    str | None,
    typer.Option("--store", help="store file, directory or http://host:port (default: the configured store)."),
]
FormatOption = Annotated[Format, typer.Option("--format", "-f", help="output format.")]
OutputOption = Annotated[Path | None, typer.Option("--output", "-o", help="write to a file instead of stdout.")]


class State:
    """Options of the top-level command, shared with subcommands."""

    config: Path | None = None

    def settings(self) -> Settings:
        return load_settings(self.config)[0]


state = State()


def print_version(value: bool) -> None:
    """Print the version and stop, before any command is required (an eager option)."""
    if value:
        out.print(f"qwq {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    config: ConfigOption = None,
    log_level: Annotated[
        Literal["debug", "info", "warning", "error"] | None,
        typer.Option(help="log level (default from config)."),
    ] = None,
    version: Annotated[
        bool, typer.Option("--version", callback=print_version, is_eager=True, help="print the version and exit.")
    ] = False,
) -> None:
    """qwq — watch hosts, store every sample in DuckDB, query it as polars frames."""
    state.config = config
    logging.basicConfig(
        level=(log_level or "warning").upper(),
        format="%(message)s",
        handlers=[RichHandler(console=err, show_path=False)],
    )


@app.command()
def up(
    host: Annotated[str | None, typer.Option(help="address to bind (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="port to bind (default 8765; 0 picks a free one).")] = None,
    access_log: Annotated[bool, typer.Option(help="log every HTTP request.")] = False,
) -> None:
    """Collect and serve: REST API, /metrics and the dashboard on one port, until Ctrl-C."""
    from qwq_core.server import serve  # heavy imports (uvicorn, dash) only for this command

    settings = override(state.settings(), **{"server.host": host, "server.port": port})
    logging.getLogger().setLevel(settings.log_level.upper())

    def ready(url: str) -> None:
        out.print(f"[bold green]qwq {__version__} is up[/] — store {settings.store_path}")
        out.print(f"  dashboard  {url}/\n  REST API   {url}/docs\n  metrics    {url}/metrics")

    try:
        serve(settings, on_ready=ready, access_log=access_log)
    except StoreLockedError:
        running = Announcement.read(announcement_path(settings.store_path))
        if running is None:
            raise
        err.print(f"qwq is already running at {running.url} (PID {running.pid})")
        raise typer.Exit(1) from None


@app.command()
def collect(
    once: Annotated[bool, typer.Option("--once", help="run every collector once and print the result.")] = False,
    fmt: FormatOption = "table",
    write: Annotated[bool, typer.Option(help="also store the samples (through a running server if any).")] = False,
    store: StoreOption = None,
) -> None:
    """Run the configured collectors once and show each one's state and samples."""
    if not once:
        err.print("only --once is supported; `qwq up` collects continuously")
        raise typer.Exit(2)
    settings = state.settings()
    events: list[Event] = []
    collectors = build_collectors(settings, events.append)
    scheduler = Scheduler([collector_job(c, settings.host) for c in collectors], lambda _: None)
    with err.status("collecting…"):
        outcomes = asyncio.run(scheduler.run_once(utcnow()))
    for collector in collectors:
        collector.close()
    frames = [o.result for o in outcomes if o.ok and o.result.height]
    samples = pl.concat(frames, how="diagonal_relaxed") if frames else pl.DataFrame()
    if write and samples.height:
        with connect(store, settings=settings) as target:
            target.write(samples)
    summary = pl.DataFrame([_outcome_row(c.type, o) for c, o in zip(collectors, outcomes, strict=True)])
    targets = target_table(samples, [e.as_row() for e in events if e.kind == "target.down"])
    if fmt == "json":
        rows = json.loads(samples.write_json()) if samples.height else []
        document = {
            "collectors": summary.to_dicts(),
            "targets": targets.to_dicts(),
            "samples": rows,
            "events": [e.as_row() for e in events],
        }
        sys.stdout.write(json.dumps(document, default=str) + "\n")
    elif fmt == "table":
        out.print(table(summary, "collectors"))
        if targets.height:
            out.print(table(targets, "targets"))
        if samples.height:
            out.print(table(samples.sort("name"), "samples"))
    else:
        print_frame(samples, fmt)
    if not all(o.ok for o in outcomes):
        raise typer.Exit(1)


def _outcome_row(type_name: str, outcome: Outcome) -> dict[str, Any]:
    return {
        "collector": outcome.job.name,
        "type": type_name,
        "state": "ok" if outcome.ok else "failed",
        "samples": outcome.result.height if outcome.ok else 0,
        "seconds": round(outcome.duration, 4),
        "error": None if outcome.ok else failure_reason(outcome),
    }


@app.command()
def query(
    metric: Annotated[str, typer.Argument(help='metric name or selector, e.g. host_cpu_usage_ratio{cpu="total"}')],
    label: Annotated[list[str], typer.Option("--label", "-l", help="filter name=value (repeatable).")] = [],  # noqa: B006
    since: Annotated[str, typer.Option(help="start: duration ago (1h), ISO time or Unix seconds.")] = "1h",
    until: Annotated[str | None, typer.Option(help="end (default now).")] = None,
    step: Annotated[str | None, typer.Option(help="bucket width, e.g. 1m; omit for raw samples.")] = None,
    agg: Annotated[
        Literal["avg", "min", "max", "sum", "count", "last", "rate"],
        typer.Option(help="aggregation per bucket."),
    ] = "avg",
    fmt: FormatOption = "table",
    output: OutputOption = None,
    store: StoreOption = None,
) -> None:
    """Print the samples of the series matching METRIC."""
    with connect(store, settings=state.settings()) as opened:
        frame = opened.query(metric, labels=parse_label_filters(label), since=since, until=until, step=step, agg=agg)
    print_frame(frame, fmt, output)


@app.command()
def series(
    pattern: Annotated[str | None, typer.Argument(help="selector or name glob, e.g. 'host_*'.")] = None,
    fmt: FormatOption = "table",
    output: OutputOption = None,
    store: StoreOption = None,
) -> None:
    """List the stored series (metric name and labels)."""
    with connect(store, settings=state.settings()) as opened:
        print_frame(opened.series(pattern), fmt, output)


@app.command()
def events(
    since: Annotated[str, typer.Option(help="start: duration ago or time.")] = "24h",
    until: Annotated[str | None, typer.Option(help="end (default now).")] = None,
    kind: Annotated[str | None, typer.Option(help="kind glob, e.g. 'collector.*'.")] = None,
    source: Annotated[str | None, typer.Option(help="source glob.")] = None,
    severity: Annotated[str | None, typer.Option(help="info, warning, error, … (glob).")] = None,
    limit: Annotated[int, typer.Option(help="at most this many, newest first.")] = 100,
    fmt: FormatOption = "table",
    output: OutputOption = None,
    store: StoreOption = None,
) -> None:
    """List recent events (collector failures, state changes, server starts)."""
    with connect(store, settings=state.settings()) as opened:
        found = opened.events(since=since, until=until, kind=kind, source=source, severity=severity, limit=limit)
    print_frame(found, fmt, output)


@app.command()
def sql(
    statement: Annotated[str, typer.Argument(help="one SELECT over series, samples, points, metrics, events …")],
    fmt: FormatOption = "table",
    output: OutputOption = None,
    store: StoreOption = None,
) -> None:
    """Run a read-only SQL query against the store."""
    with connect(store, settings=state.settings()) as opened:
        print_frame(opened.sql(statement), fmt, output)


@app.command()
def status(fmt: Annotated[Literal["table", "json"], typer.Option("--format", "-f")] = "table") -> None:
    """Is qwq running? Store size, series, tiers, and each collector's state."""
    settings = state.settings()
    running = live_server(settings.store_path)
    report: dict[str, Any] = {"running": False, "store": None, "collectors": [], "targets": []}
    if running is not None:
        with RemoteStore(running.url, token=settings.server.token_value()) as remote:
            report = {"running": True, "url": running.url, "pid": running.pid, **remote.status()}
            report["targets"] = _targets(remote)
    elif settings.store_path.exists():
        with LocalStore(settings.store_path, settings=settings.store, read_only=True) as local:
            report["store"] = local.stats()
            report["targets"] = _targets(local)
    if fmt == "json":
        sys.stdout.write(json.dumps(report, default=str) + "\n")
        return
    if report["running"]:
        out.print(f"[green]● running[/] at {report['url']} (PID {report['pid']}, qwq {report['version']})")
    else:
        out.print("[yellow]○ not running[/] — start it with `qwq up`")
    if report["store"]:
        facts = report["store"]
        rows = " · ".join(f"{tier} {count:,}" for tier, count in facts["rows"].items())
        out.print(
            f"store {facts['path']}: {facts['size_bytes'] / 1e6:.1f} MB, {facts['series']:,} series, "
            f"rows: {rows}, schema v{facts['schema_version']}"
        )
    if report["collectors"]:
        out.print(table(pl.DataFrame(report["collectors"]).drop("last_run", strict=False), "collectors"))
    if report["targets"]:
        down = [t for t in report["targets"] if not t["up"]]
        colour = "red" if down else "green"
        out.print(f"targets: [{colour}]{len(report['targets']) - len(down)} up, {len(down)} down[/]")
        if down:
            out.print(table(pl.DataFrame(down), "down"))


def _targets(store: Store) -> list[dict[str, Any]]:
    """Each target's newest up/down sample of the last 5 minutes, with the reason when down."""
    latest = store.latest("*up", max_age="5m")
    down_events = store.events(since="24h", kind="target.down", limit=10_000)
    return target_table(latest, down_events.to_dicts()).sort(["up", "metric", "target"]).to_dicts()


@app.command()
def alerts(
    state_filter: Annotated[
        Literal["firing", "resolved", "active", "suppressed", "flapping"] | None,
        typer.Option("--state", help="only alerts in this state."),
    ] = None,
    fmt: FormatOption = "table",
) -> None:
    """Alerts of the running server: status, labels, dedup counts, and what mutes them."""
    alerts_cli.alerts(state.settings(), state_filter, fmt)


@alerts_cli.silence_app.command("add")
def silence_add(
    matchers: Annotated[list[str], typer.Argument(help="label matchers, e.g. 'host=\"db1\"' 'alertname=~\"Disk.*\"'.")],
    duration: Annotated[str | None, typer.Option("--for", help="how long, e.g. 2h (or give --until).")] = "1h",
    until: Annotated[str | None, typer.Option(help="end time (RFC 3339).")] = None,
    author: Annotated[str, typer.Option(help="who silences.")] = os.environ.get("USER", "cli"),
    comment: Annotated[str, typer.Option(help="why.")] = "",
    schedule: Annotated[str | None, typer.Option(help="cron expression: a recurring maintenance window.")] = None,
    timezone: Annotated[str, typer.Option(help="time zone of --schedule.")] = "UTC",
) -> None:
    """Mute the alerts the matchers match, from now for --for (or until --until)."""
    alerts_cli.silence_add(
        state.settings(),
        matchers,
        None if until else duration,
        ends_at=until,
        created_by=author,
        comment=comment,
        schedule=schedule,
        timezone=timezone,
    )


@alerts_cli.silence_app.command("list")
def silence_list(
    state_filter: Annotated[
        Literal["pending", "active", "expired"] | None, typer.Option("--state", help="only these.")
    ] = None,
    fmt: FormatOption = "table",
) -> None:
    """Silences and maintenance windows."""
    alerts_cli.silence_list(state.settings(), state_filter, fmt)


@alerts_cli.silence_app.command("expire")
def silence_expire(silence_id: Annotated[str, typer.Argument(help="the silence's id.")]) -> None:
    """End a silence now."""
    alerts_cli.silence_expire(state.settings(), silence_id)


@app.command()
def incidents(
    status: Annotated[Literal["open", "resolved"] | None, typer.Option(help="only these.")] = None,
    ack: Annotated[str | None, typer.Option(help="acknowledge this incident.")] = None,
    resolve: Annotated[str | None, typer.Option(help="resolve this incident.")] = None,
    by: Annotated[str, typer.Option(help="who acknowledges or resolves.")] = os.environ.get("USER", "cli"),
    fmt: FormatOption = "table",
) -> None:
    """Incidents (correlated alerts) of the running server; --ack or --resolve one."""
    settings = state.settings()
    for incident_id, verb in ((ack, "acknowledge"), (resolve, "resolve")):
        if incident_id:
            alerts_cli.incident_change(settings, incident_id, verb, by)
    if not (ack or resolve):
        alerts_cli.incidents(settings, status, fmt)


@config_app.command("check")
def config_check() -> None:
    """Validate the config file: every key, and every collector's options. Exit 2 if invalid."""
    try:
        settings, path = load_settings(state.config)
    except ConfigError as error:  # still check the collector tables, to report every problem at once
        raise ConfigError([*error.issues, *collector_issues(state.config)]) from None
    collectors = build_collectors(settings, lambda _: None, source=str(path or "defaults"))
    for collector in collectors:
        collector.close()
    validate_options(settings, source=str(path or "defaults"))
    names = ", ".join(f"{c.name} ({c.type}, every {c.interval.total_seconds():g}s)" for c in collectors)
    out.print(f"[green]config OK[/] — {path or 'defaults (no config file)'}; collectors: {names or 'none'}")


def collector_issues(config: Path | None) -> list[ConfigIssue]:
    """Problems of the ``[collectors.*]`` tables alone, when the rest of the configuration is invalid."""
    path = resolve_config_path(config, os.environ)
    if path is None or not path.is_file():
        return []
    try:
        # A TOML syntax error, or wrong scheduling keys of these tables, were reported with the rest already.
        settings = Settings.model_validate({"collectors": read_toml(path).get("collectors", {})})
    except (ConfigError, ValidationError):
        return []
    try:
        build_collectors(settings, lambda _: None, source=str(path))
    except ConfigError as error:
        return list(error.issues)
    return []


@config_app.command("show")
def config_show() -> None:
    """Print the effective configuration (file + environment + defaults) as JSON; secrets masked."""
    settings = state.settings()
    data = settings.model_dump(mode="json")
    data["collectors"] = {name: _shown(name, entry) for name, entry in configured(settings).items()}
    sys.stdout.write(json.dumps(data, indent=2) + "\n")


def _shown(name: str, entry: CollectorSettings) -> dict[str, Any]:
    """A collector's settings with its options as its type's model has them (defaults, secrets masked)."""
    shown = entry.model_dump(mode="json", exclude=set(entry.options))
    try:
        options = registry().get(entry.type or name).Options.model_validate(entry.options)
    except (QwqError, ValidationError):
        return {**shown, "options": "invalid or unknown type: see `qwq config check`"}
    return {**shown, **options.model_dump(mode="json")}


@app.command("collectors")
def list_collectors() -> None:
    """List the installed collector types (built-in and third-party) and whether they load."""
    rows = [
        {"type": p.name, "from": p.distribution or "", "target": p.target, "status": p.error or "ok"}
        for p in registry().plugins()
    ]
    out.print(table(pl.DataFrame(rows), "collector types"))


def main() -> None:
    """Entry point of the ``qwq`` console script: QwqErrors become one-line messages and exit codes."""
    try:
        app()
    except ConfigError as error:
        for issue in error.issues:
            err.print(f"[red]error:[/] {issue}", highlight=False)
        sys.exit(exit_code(error))
    except QwqError as error:
        err.print(f"[red]error:[/] {error}", highlight=False)
        sys.exit(exit_code(error))
