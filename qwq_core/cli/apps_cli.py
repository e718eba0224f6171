"""``qwq apps list|search|show|install|upgrade|uninstall|status|ignore-upgrade``: the app store.

Mounted by the main app: ``app.add_typer(apps_app, name="apps")``. Install, upgrade and uninstall run
through the action engine (planned, locked per app, audited; ``--dry-run`` prints the plan) with a progress
bar; ``--set KEY=VALUE`` gives template parameters. The catalog is the built-in one plus the ``[apps]
catalogs`` sources of the configuration.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer

from qwq_core.cli.actions_cli import cli_actor, cli_print_result, cli_progress, cli_settings, parse_params
from qwq_core.cli.output import cell_text, out, print_rows

if TYPE_CHECKING:
    from actions.apps.state import AppsEnv
    from actions.engine import Engine

apps_app = typer.Typer(
    help="Install, upgrade and remove apps from the catalog (Compose templates).", no_args_is_help=True
)

StoreOption = Annotated[
    str | None,
    typer.Option("--store", help="store file, directory or http://host:port (default: the configured store)."),
]
SetOption = Annotated[list[str] | None, typer.Option("--set", "-s", help="template parameter KEY=VALUE (repeatable).")]
DryRunOption = Annotated[bool, typer.Option("--dry-run", help="print the plan, change nothing.")]
FormatOption = Annotated[Literal["table", "json"], typer.Option("--format", "-f", help="output format.")]


def _env() -> AppsEnv:
    from actions.apps.state import AppsEnv, configure

    env = AppsEnv.from_settings(cli_settings())
    configure(env)
    return env


@contextmanager
def _engine(store: str | None) -> Iterator[Engine]:
    """An action engine on the configured store with the app actions registered."""
    from actions.apps import app_actions
    from actions.engine import Engine
    from actions.service import ActionsOptions
    from qwq_core.connect import connect

    settings = cli_settings()
    options = ActionsOptions.model_validate(getattr(settings, "actions", None) or {})
    with connect(store, settings=settings) as opened:
        engine = Engine(opened, extra=app_actions(_env()), home=settings.home, docker_url=options.docker_url)
        try:
            yield engine
        finally:
            engine.close()


def _run(action: str, params: dict[str, Any], dry_run: bool, fmt: str, store: str | None) -> None:
    with _engine(store) as engine, cli_progress(fmt == "table") as report:
        result = engine.run(action, params, actor=cli_actor(), dry_run=dry_run, on_progress=report)
    cli_print_result(result, fmt)
    if not result.ok:
        raise typer.Exit(1)


def _catalog_rows(search: str | None) -> list[dict[str, Any]]:
    from actions.apps.catalog import describe

    catalog = _env().catalog()
    templates = catalog.search(search) if search else catalog.latest()
    for skipped in catalog.skipped:
        out.print(f"[yellow]skipped[/] {skipped.path or skipped.source}: {skipped.reason}", highlight=False)
    return [{**describe(t), "versions": catalog.versions(t.name)} for t in templates]


@apps_app.command("list")
def list_apps(fmt: FormatOption = "table") -> None:
    """List the apps in the catalogs (newest version of each)."""
    print_rows(_catalog_rows(None), ["name", "version", "category", "description", "source"], fmt, "apps")


@apps_app.command("search")
def search_apps(
    text: Annotated[str, typer.Argument(help="words in the name, category or description.")],
    fmt: FormatOption = "table",
) -> None:
    """Search the catalogs."""
    print_rows(_catalog_rows(text), ["name", "version", "category", "description"], fmt, f"apps matching {text!r}")


@apps_app.command("show")
def show_app(
    name: Annotated[str, typer.Argument(help="app name in the catalog.")],
    version: Annotated[str | None, typer.Option(help="version (default: the newest).")] = None,
    fmt: FormatOption = "table",
) -> None:
    """Show an app's template: description, versions, parameters, ports, volumes, dependencies."""
    from actions.apps.catalog import describe

    catalog = _env().catalog()
    data = {**describe(catalog.get(name, version)), "versions": catalog.versions(name)}
    if fmt == "json":
        sys.stdout.write(json.dumps(data) + "\n")
        return
    out.print(f"[bold]{data['name']}[/] {data['version']} ({data['category']}) — {data['description']}")
    out.print(f"versions: {', '.join(data['versions'])}; from {data['source']}", highlight=False)
    params = [
        {"param": k, **{f: cell_text(v.get(f)) for f in ("type", "default", "description")}}
        for k, v in data["params"].items()
    ]
    print_rows(params, ["param", "type", "default", "description"], "table", "parameters")
    print_rows(list(data["ports"]), ["param", "container", "protocol", "description"], "table", "ports")
    print_rows(list(data["volumes"]), ["name", "path", "description"], "table", "volumes")
    if data["dependencies"]:
        print_rows(list(data["dependencies"]), ["app", "alias"], "table", "dependencies")


@apps_app.command("install")
def install_app(
    app: Annotated[str, typer.Argument(help="app name in the catalog.")],
    name: Annotated[str | None, typer.Option(help="name of the installed app (default: APP).")] = None,
    version: Annotated[str | None, typer.Option(help="version (default: the newest).")] = None,
    set_: SetOption = None,
    with_dependencies: Annotated[bool, typer.Option(help="install missing dependencies with their defaults.")] = False,
    dry_run: DryRunOption = False,
    fmt: FormatOption = "table",
    store: StoreOption = None,
) -> None:
    """Install APP: check ports and dependencies, create its containers, wait for health; roll back on failure."""
    params = {
        "app": app,
        "name": name,
        "version": version,
        "params": parse_params(set_ or []),
        "install_dependencies": with_dependencies,
    }
    _run("apps.install", params, dry_run, fmt, store)


@apps_app.command("upgrade")
def upgrade_app(
    name: Annotated[str, typer.Argument(help="installed app.")],
    version: Annotated[str | None, typer.Option(help="version (default: the newest).")] = None,
    set_: SetOption = None,
    strategy: Annotated[
        Literal["replace", "blue-green"], typer.Option(help="replace (rolling) or blue-green.")
    ] = "replace",
    dry_run: DryRunOption = False,
    fmt: FormatOption = "table",
    store: StoreOption = None,
) -> None:
    """Upgrade NAME, health-gated: the old containers come back if the new ones are not healthy in time."""
    action = "apps.blue_green" if strategy == "blue-green" else "apps.upgrade"
    _run(action, {"name": name, "version": version, "params": parse_params(set_ or [])}, dry_run, fmt, store)


@apps_app.command("uninstall")
def uninstall_app(
    name: Annotated[str, typer.Argument(help="installed app.")],
    delete_data: Annotated[bool, typer.Option(help="also delete its volumes (default: keep them).")] = False,
    force: Annotated[bool, typer.Option(help="even when other apps depend on it.")] = False,
    dry_run: DryRunOption = False,
    fmt: FormatOption = "table",
    store: StoreOption = None,
) -> None:
    """Uninstall NAME, keeping its data unless --delete-data."""
    _run("apps.uninstall", {"name": name, "delete_data": delete_data, "force": force}, dry_run, fmt, store)


@apps_app.command("ignore-upgrade")
def ignore_upgrade(
    name: Annotated[str, typer.Argument(help="installed app.")],
    undo: Annotated[bool, typer.Option(help="offer upgrades again.")] = False,
    store: StoreOption = None,
) -> None:
    """Skip NAME in upgrades that name no version (1Panel's ignore-upgrade)."""
    _run("apps.ignore_upgrade", {"name": name, "ignore": not undo}, False, "table", store)


@apps_app.command("status")
def status(
    name: Annotated[str | None, typer.Argument(help="one installed app (default: all).")] = None,
    fmt: FormatOption = "table",
    store: StoreOption = None,
) -> None:
    """Installed apps: version, state of their containers, available upgrades."""
    from actions.apps.status import app_status

    with _engine(store) as engine:
        rows = [r for r in app_status(engine.docker().api, engine.store, _env()) if name in (None, r["name"])]
    if fmt == "json":
        sys.stdout.write(json.dumps(rows, default=str) + "\n")
        return
    for row in rows:
        row["containers"] = [f"{c['name']} ({c['health']})" for c in row["containers"]]
        row["upgrade"] = row["latest"] if row["upgrade_available"] else ""
    print_rows(rows, ["name", "template", "version", "state", "upgrade", "containers"], fmt, "installed apps")


__all__: Sequence[str] = ["apps_app"]
