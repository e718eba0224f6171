"""REST for the app store (mounted under ``/api/v1``): the catalog, installed apps, and the app actions.

``POST /apps/{name}/install|upgrade|uninstall`` run through the action engine exactly like
``POST /actions/apps.install`` would (audited, locked per app), with ``dry_run`` answering the plan.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from fastapi import APIRouter
from pydantic import BaseModel, Field

from actions.apps.catalog import describe
from actions.apps.state import AppsEnv
from actions.apps.status import app_status
from actions.engine import Engine

API_ACTOR = "api"


class InstallRequest(BaseModel):
    """Body of ``POST /apps/{name}/install``; ``name`` in the path is the installed app's name."""

    app: str | None = Field(None, description="template name (default: the path's name)")
    version: str | None = None
    params: dict[str, str | int | bool] = Field(default_factory=dict)
    install_dependencies: bool = False
    dry_run: bool = False


class UpgradeRequest(BaseModel):
    """Body of ``POST /apps/{name}/upgrade``."""

    version: str | None = None
    params: dict[str, str | int | bool] = Field(default_factory=dict)
    strategy: Literal["replace", "blue_green"] = Field("replace", description="replace (rolling) or blue_green")
    dry_run: bool = False


class UninstallRequest(BaseModel):
    """Body of ``POST /apps/{name}/uninstall``."""

    delete_data: bool = False
    force: bool = False
    dry_run: bool = False


def build_router(engine: Engine, env: AppsEnv) -> APIRouter:
    """The app store's routes, on an engine that has the app actions registered."""
    router = APIRouter(tags=["apps"])

    @router.get("/apps/catalog", summary="The newest version of every app in the catalogs")
    def catalog(q: str | None = None) -> dict[str, Any]:
        loaded = env.catalog()
        templates = loaded.search(q) if q else loaded.latest()
        return {
            "apps": [{**describe(t), "versions": loaded.versions(t.name)} for t in templates],
            "skipped": [vars(s) for s in loaded.skipped],
        }

    @router.get("/apps/catalog/{name}", summary="One app's template: metadata, versions and Compose file")
    def template(name: str, version: str | None = None) -> dict[str, Any]:
        loaded = env.catalog()
        found = loaded.get(name, version)
        return {**describe(found), "versions": loaded.versions(name), "compose": found.compose_text}

    @router.get("/apps", summary="Installed apps with their containers' state and available upgrades")
    def installed_apps() -> list[dict[str, Any]]:
        return app_status(engine.docker().api, engine.store, env)

    @router.post("/apps/{name}/install", summary="Install (or plan installing) an app")
    def install(name: str, request: InstallRequest) -> dict[str, Any]:
        params = request.model_dump(exclude={"dry_run"}) | {"app": request.app or name, "name": name}
        return engine.run("apps.install", params, actor=API_ACTOR, dry_run=request.dry_run).as_dict()

    @router.post("/apps/{name}/upgrade", summary="Upgrade (or plan upgrading) an installed app, health-gated")
    def upgrade(name: str, request: UpgradeRequest) -> dict[str, Any]:
        action = "apps.blue_green" if request.strategy == "blue_green" else "apps.upgrade"
        params = request.model_dump(exclude={"dry_run", "strategy"}) | {"name": name}
        return engine.run(action, params, actor=API_ACTOR, dry_run=request.dry_run).as_dict()

    @router.post("/apps/{name}/uninstall", summary="Uninstall (or plan uninstalling) an app")
    def uninstall(name: str, request: UninstallRequest) -> dict[str, Any]:
        params = request.model_dump(exclude={"dry_run"}) | {"name": name}
        return engine.run("apps.uninstall", params, actor=API_ACTOR, dry_run=request.dry_run).as_dict()

    return router


__all__: Sequence[str] = ["InstallRequest", "UninstallRequest", "UpgradeRequest", "build_router"]
