"""``apps.uninstall``: remove an app's containers and networks, and its volumes only when asked.

An app other installed apps are linked to (a dependency) is refused unless ``force``. Uninstalling an app
that is not there plans nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from pydantic import BaseModel, Field

from actions.apps.compose import APP_LABEL
from actions.apps.deploy import app_containers, remove_app
from actions.apps.install import APP_NAME
from actions.apps.state import AppsEnv, default_env, installed, record_event
from qwq_core.actions import ActionContext, Change, Plan
from qwq_core.errors import ActionError


class UninstallParams(BaseModel):
    """Parameters of ``apps.uninstall``."""

    name: str = Field(pattern=APP_NAME, description="the installed app")
    delete_data: bool = Field(False, description="also delete the app's volumes (default: keep them)")
    force: bool = Field(False, description="uninstall even when other apps depend on it")


class Uninstall:
    """Uninstall an app, keeping or deleting its data."""

    name: ClassVar[str] = "apps.uninstall"
    description: ClassVar[str] = "Uninstall an app; its volumes are kept unless delete_data"
    Params: ClassVar[type[BaseModel]] = UninstallParams

    def __init__(self, env: AppsEnv | None = None) -> None:
        self.env = env or default_env()

    def plan(self, params: BaseModel, context: ActionContext) -> Plan:
        assert isinstance(params, UninstallParams)
        apps = installed(context.store)
        dependents = sorted(n for n, a in apps.items() if params.name in a.dependencies.values())
        if dependents and not params.force:
            raise ActionError(
                f"{params.name} is used by {', '.join(dependents)}: uninstall those first or pass force=true",
                target=f"app:{params.name}",
            )
        api = context.docker().api
        label = {"label": f"{APP_LABEL}={params.name}"}
        changes = [
            Change("delete", f"container:{c['Names'][0].lstrip('/')}", f"remove container {c['Names'][0].lstrip('/')}")
            for c in app_containers(api, params.name)
        ]
        changes += [
            Change("delete", f"network:{n['Name']}", f"remove network {n['Name']}") for n in api.networks(filters=label)
        ]
        volumes = [v["Name"] for v in (api.volumes(filters=label) or {}).get("Volumes") or []]
        if params.delete_data:
            changes += [Change("delete", f"volume:{v}", f"delete volume {v} and its data") for v in volumes]
        if params.name in apps:
            kept = f" (keeping volumes {', '.join(volumes)})" if volumes and not params.delete_data else ""
            changes.append(Change("record", f"app:{params.name}", f"record {params.name} as uninstalled{kept}"))
        return Plan(self.name, f"app:{params.name}", params.model_dump(), tuple(changes))

    def apply(self, plan: Plan, params: BaseModel, context: ActionContext) -> Mapping[str, Any]:
        assert isinstance(params, UninstallParams)
        api = context.docker().api
        context.progress(0.2, f"removing {params.name}")
        removed = remove_app(api, params.name, volumes=params.delete_data)
        left = app_containers(api, params.name)
        if left:
            raise ActionError(f"could not remove {len(left)} container(s) of {params.name}", target=plan.target)
        event = record_event(
            "app.uninstalled", params.name, None, {}, self.env.secrets, data_deleted=params.delete_data
        )
        context.store.record([event])
        return {"app": params.name, "removed": removed, "data_deleted": params.delete_data}


__all__: Sequence[str] = ["Uninstall", "UninstallParams"]
