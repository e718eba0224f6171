"""What each installed app looks like right now: its record, its containers' state and health, upgrades."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from actions.apps.catalog import version_key
from actions.apps.deploy import app_containers, container_health
from actions.apps.state import AppsEnv, InstalledApp, installed
from qwq_core.errors import NotFoundError
from qwq_core.store.base import Store


def app_status(api: Any, store: Store, env: AppsEnv) -> list[dict[str, Any]]:
    """One JSON-able row per installed app, sorted by name (secrets masked).

    ``state`` is ``running`` (every container healthy or running), ``degraded`` (some are not),
    ``stopped`` (none runs) or ``missing`` (the store records the app, the engine has no container of it).
    """
    return [_row(api, env, app) for _, app in sorted(installed(store).items())]


def _row(api: Any, env: AppsEnv, app: InstalledApp) -> dict[str, Any]:
    containers = [
        {"name": c["Names"][0].lstrip("/"), "state": c.get("State"), "health": container_health(api, c["Id"])}
        for c in app_containers(api, app.name)
    ]
    try:
        latest: str | None = env.catalog().get(app.template).version
    except NotFoundError:
        latest = None
    newer = latest is not None and version_key(latest) > version_key(app.version)
    return {
        **app.shown(),
        "state": _state([c["health"] for c in containers]),
        "containers": containers,
        "latest": latest,
        "upgrade_available": newer and not app.ignore_upgrade,
    }


def _state(healths: Sequence[str]) -> str:
    if not healths:
        return "missing"
    if all(h == "healthy" for h in healths):
        return "running"
    if any(h in ("healthy", "starting", "unhealthy") for h in healths):
        return "degraded"
    return "stopped"


__all__: Sequence[str] = ["app_status"]
