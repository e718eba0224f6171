"""``apps.upgrade`` and ``apps.ignore_upgrade``: move an installed app to another template version.

The new version keeps the app's volumes (same Compose project, same volume names) and its parameters
(new parameters take their defaults). Containers whose configuration changed are replaced; the old ones are
only stopped and set aside until the new ones are healthy within the template's ``health.timeout``, and come
back by themselves when they are not. An app marked ``ignore_upgrade`` (as in 1Panel) is skipped by an
upgrade that names no version — an explicit ``version`` still upgrades it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from pydantic import BaseModel, Field

from actions.apps.catalog import version_key
from actions.apps.deploy import Deployment, diff
from actions.apps.install import APP_NAME, Target, check_ports, record_change, resolve_target
from actions.apps.state import AppsEnv, InstalledApp, default_env, installed, record_event
from qwq_core.actions import ActionContext, Change, Plan
from qwq_core.errors import ActionError, NotFoundError


class UpgradeParams(BaseModel):
    """Parameters of ``apps.upgrade``."""

    name: str = Field(pattern=APP_NAME, description="the installed app")
    version: str | None = Field(None, description="target version (default: the newest in the catalog)")
    params: dict[str, str | int | bool] = Field(default_factory=dict, description="parameters to change")


class IgnoreUpgradeParams(BaseModel):
    """Parameters of ``apps.ignore_upgrade``."""

    name: str = Field(pattern=APP_NAME, description="the installed app")
    ignore: bool = Field(True, description="true: skip upgrades that name no version; false: offer them again")


def installed_app(apps: Mapping[str, InstalledApp], name: str) -> InstalledApp:
    if name not in apps:
        raise NotFoundError(f"no app called {name} is installed (installed: {', '.join(sorted(apps)) or 'none'})")
    return apps[name]


class Upgrade:
    """Upgrade an installed app, health-gated, rolling back to the old containers on failure."""

    name: ClassVar[str] = "apps.upgrade"
    description: ClassVar[str] = "Upgrade an installed app; health-gated with automatic rollback"
    Params: ClassVar[type[BaseModel]] = UpgradeParams
    timeout: ClassVar[float] = 1800.0

    def __init__(self, env: AppsEnv | None = None) -> None:
        self.env = env or default_env()

    def _target(self, params: UpgradeParams, context: ActionContext) -> tuple[InstalledApp, Target | None]:
        apps = installed(context.store)
        record = installed_app(apps, params.name)
        if params.version is None and record.ignore_upgrade and not params.params:
            return record, None
        template = self.env.catalog().get(record.template, params.version)
        if params.version is None and version_key(template.version) < version_key(record.version):
            template = self.env.catalog().get(record.template, record.version)  # never downgrade implicitly
        return record, resolve_target(self.env, apps, record.name, template, params.params, record)

    def plan(self, params: BaseModel, context: ActionContext) -> Plan:
        assert isinstance(params, UpgradeParams)
        record, target = self._target(params, context)
        if target is None:
            return Plan(self.name, f"app:{record.name}", params.model_dump())
        api = context.docker().api
        check_ports(api, target)
        changes = diff(api, target.desired)
        changes += record_change(
            target, record, self.env, verb="upgrade" if record.version != target.template.version else "record"
        )
        return Plan(self.name, f"app:{record.name}", params.model_dump(), tuple(changes))

    def apply(self, plan: Plan, params: BaseModel, context: ActionContext) -> Mapping[str, Any]:
        assert isinstance(params, UpgradeParams)
        record, target = self._target(params, context)
        if target is None:
            return {"app": record.name, "skipped": "upgrades are ignored"}
        deployment = Deployment(context.docker().api, poll=self.env.poll, progress=lambda m: context.progress(0.5, m))
        context.progress(0.1, f"upgrading {record.name} {record.version} → {target.template.version}")
        try:
            deployment.converge(target.desired)
        except Exception as exc:
            undone = deployment.rollback()
            raise ActionError(
                f"upgrade of {record.name} to {target.template.version} failed: {exc}; rolled back to {record.version}",
                target=plan.target,
                rolled_back=undone,
            ) from exc
        deployment.commit()
        context.store.record([target.event("app.upgraded", self.env, previous_version=record.version)])
        return {"app": record.name, "from": record.version, "to": target.template.version}


class IgnoreUpgrade:
    """Mark an installed app so upgrades that name no version skip it (or clear the mark)."""

    name: ClassVar[str] = "apps.ignore_upgrade"
    description: ClassVar[str] = "Skip (or offer again) upgrades of an installed app"
    Params: ClassVar[type[BaseModel]] = IgnoreUpgradeParams

    def __init__(self, env: AppsEnv | None = None) -> None:
        self.env = env or default_env()

    def plan(self, params: BaseModel, context: ActionContext) -> Plan:
        assert isinstance(params, IgnoreUpgradeParams)
        record = installed_app(installed(context.store), params.name)
        changes: tuple[Change, ...] = ()
        if record.ignore_upgrade != params.ignore:
            verb = "ignore" if params.ignore else "offer again"
            changes = (Change("update", f"app:{record.name}", f"{verb} upgrades of {record.name}"),)
        return Plan(self.name, f"app:{record.name}", params.model_dump(), changes)

    def apply(self, plan: Plan, params: BaseModel, context: ActionContext) -> Mapping[str, Any]:
        assert isinstance(params, IgnoreUpgradeParams)
        event = record_event("app.ignore_upgrade", params.name, None, {}, self.env.secrets, ignore=params.ignore)
        context.store.record([event])
        return {"app": params.name, "ignore_upgrade": params.ignore}


__all__: Sequence[str] = ["IgnoreUpgrade", "IgnoreUpgradeParams", "Upgrade", "UpgradeParams"]
