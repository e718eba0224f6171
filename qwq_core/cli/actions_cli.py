"""``qwq action list|plan|run`` and ``qwq audit``: thin commands over :mod:`actions.engine`.

Mounted by the main app: ``app.add_typer(action_app, name="action")`` and
``app.command("audit")(audit_command)``. Parameters are ``key=value`` words; a value that parses as JSON
(``3``, ``true``, ``["a"]``) is taken as that, anything else as a string.
"""

from __future__ import annotations

import getpass
import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import polars as pl
import typer
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

from qwq_core.cli.output import Format, err, out, print_frame, table
from qwq_core.errors import QueryError
from qwq_core.settings import Settings, load_settings

if TYPE_CHECKING:
    from actions.engine import Engine, RunResult, RunStatus
    from qwq_core.actions import Plan

action_app = typer.Typer(help="List, plan and run actions (restarts, app installs, …).", no_args_is_help=True)

StoreOption = Annotated[
    str | None,
    typer.Option("--store", help="store file, directory or http://host:port (default: the configured store)."),
]
ParamsArgument = Annotated[list[str] | None, typer.Argument(help="parameters as key=value (JSON values allowed).")]


def parse_params(words: Sequence[str]) -> dict[str, Any]:
    """``["container=web", "stop_timeout=0"]`` → ``{"container": "web", "stop_timeout": 0}``."""
    params: dict[str, Any] = {}
    for word in words:
        key, sep, value = word.partition("=")
        if not sep or not key:
            raise QueryError(f"parameters are key=value, got {word!r}")
        try:
            params[key] = json.loads(value)
        except ValueError:
            params[key] = value
    return params


def cli_settings() -> Settings:
    from qwq_core.cli.main import state  # the main app's --config; imported late (main imports this module)

    return state.settings() if state.config is not None else load_settings()[0]


def open_engine(store: Any, settings: Settings) -> Engine:
    """The engine the commands use: entry-point actions, the ``[actions]`` table's Docker URL and limits."""
    from actions.engine import Engine
    from actions.service import ActionsOptions

    table_ = getattr(settings, "actions", None) or {}
    options = ActionsOptions.model_validate(table_)
    return Engine(
        store,
        home=settings.home,
        docker_url=options.docker_url,
        default_timeout=options.default_timeout.total_seconds(),
        lock_wait=options.lock_wait.total_seconds(),
    )


@contextmanager
def _engine(store: str | None) -> Iterator[Engine]:
    from qwq_core.connect import connect

    settings = cli_settings()
    with connect(store, settings=settings) as opened:
        engine = open_engine(opened, settings)
        try:
            yield engine
        finally:
            engine.close()


def cli_actor() -> str:
    return f"cli:{getpass.getuser()}"


def plan_table(plan: Plan) -> pl.DataFrame:
    """A plan's changes as a frame (verb, target, summary)."""
    rows = [{"verb": c.verb, "target": c.target, "summary": c.summary} for c in plan.changes]
    return pl.DataFrame(rows, schema={"verb": pl.String, "target": pl.String, "summary": pl.String})


@action_app.command("list")
def list_actions(
    fmt: Annotated[Literal["table", "json"], typer.Option("--format", "-f", help="output format.")] = "table",
    store: StoreOption = None,
) -> None:
    """List the registered actions (built-in and third-party) and their parameters."""
    with _engine(store) as engine:
        rows = engine.describe()
    if fmt == "json":
        out.print_json(json.dumps(rows, default=str))
        return
    shown = [
        {"action": r["name"], "params": ", ".join(r["params"].get("properties", {})), "description": r["description"]}
        for r in rows
    ]
    frame = pl.DataFrame(shown, schema={"action": pl.String, "params": pl.String, "description": pl.String})
    out.print(table(frame, "actions"))


@action_app.command("plan")
def plan_action(
    name: Annotated[str, typer.Argument(help="action name, e.g. containers.restart.")],
    params: ParamsArgument = None,
    fmt: Annotated[Literal["table", "json"], typer.Option("--format", "-f", help="output format.")] = "table",
    store: StoreOption = None,
) -> None:
    """Show what running NAME would change, without changing anything (nor auditing)."""
    with _engine(store) as engine:
        plan = engine.plan(name, parse_params(params or []), actor=cli_actor())
    if fmt == "json":
        out.print_json(json.dumps(plan.as_dict(), default=str))
    elif plan.empty:
        out.print(f"{name} on {plan.target}: nothing to do")
    else:
        out.print(table(plan_table(plan), f"{name} on {plan.target}"))


@action_app.command("run")
def run_action(
    name: Annotated[str, typer.Argument(help="action name, e.g. containers.restart.")],
    params: ParamsArgument = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="print the plan (audited), change nothing.")] = False,
    timeout: Annotated[float | None, typer.Option(help="apply timeout in seconds (default: the action's).")] = None,
    fmt: Annotated[Literal["table", "json"], typer.Option("--format", "-f", help="output format.")] = "table",
    store: StoreOption = None,
) -> None:
    """Run NAME: plan, apply with a progress bar, verify, audit. Exit code 1 if it failed."""
    with _engine(store) as engine, cli_progress(fmt == "table") as report:
        result = engine.run(
            name, parse_params(params or []), actor=cli_actor(), dry_run=dry_run, timeout=timeout, on_progress=report
        )
    cli_print_result(result, fmt)
    if not result.ok:
        raise typer.Exit(1)


@contextmanager
def cli_progress(show: bool) -> Iterator[Any]:
    """A rich progress bar on stderr fed by the engine's status updates (nothing when output is JSON)."""
    if not show:
        yield None
        return
    columns = (TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(), TimeElapsedColumn())
    with Progress(*columns, console=err, transient=True) as bar:
        task = bar.add_task("planning", total=1.0)

        def report(status: RunStatus) -> None:
            bar.update(task, completed=status.fraction, description=status.message or status.state)

        yield report


def cli_print_result(result: RunResult, fmt: str) -> None:
    if fmt == "json":
        out.print_json(json.dumps(result.as_dict(), default=str))
        return
    plan = result.plan
    if not plan.empty:
        out.print(table(plan_table(plan), f"{plan.action} on {plan.target}"))
    seconds = (result.ended - result.started).total_seconds()
    if result.outcome == "planned":
        out.print("dry run: nothing changed" if not plan.empty else "dry run: nothing to do")
    elif result.outcome == "noop":
        out.print(f"nothing to do: {plan.target} is already as asked")
    elif result.ok:
        out.print(f"[green]applied[/] in {seconds:.1f}s (run {result.audit_id})")
    else:
        err.print(f"[red]failed[/] after {seconds:.1f}s: {result.error}", highlight=False)
        if result.rolled_back:
            err.print(f"rolled back: {', '.join(result.rolled_back)}", highlight=False)


def audit_command(
    since: Annotated[str, typer.Option(help="start: duration ago (7d) or time.")] = "30d",
    until: Annotated[str | None, typer.Option(help="end (default now).")] = None,
    action: Annotated[str | None, typer.Option(help="action glob, e.g. 'apps.*'.")] = None,
    target: Annotated[str | None, typer.Option(help="target glob, e.g. 'app:grafana'.")] = None,
    actor: Annotated[str | None, typer.Option(help="actor glob, e.g. 'policy:*'.")] = None,
    outcome: Annotated[str | None, typer.Option(help="planned, noop, applied or failed.")] = None,
    limit: Annotated[int, typer.Option(help="at most this many, newest first.")] = 100,
    fmt: Annotated[Format, typer.Option("--format", "-f", help="output format.")] = "table",
    output: Annotated[Path | None, typer.Option("--output", "-o", help="write to a file instead of stdout.")] = None,
    store: StoreOption = None,
) -> None:
    """List the audit trail of action runs: who ran what on which target, and how it went."""
    from actions.engine import audit
    from qwq_core.connect import connect

    with connect(store, settings=cli_settings()) as opened:
        frame = audit(
            opened, since=since, until=until, action=action, target=target, actor=actor, outcome=outcome, limit=limit
        )
    if fmt == "table":
        frame = frame.select("ts", "actor", "action", "target", "outcome", "changes", "duration_s", "error")
    print_frame(frame, fmt, output, title="audit")


__all__: Sequence[str] = ["action_app", "audit_command", "open_engine", "parse_params"]
