"""Health-gated rollouts: the blue/green switch (``apps.blue_green``).

Rolling updates need no action of their own: :class:`~actions.apps.deploy.Deployment` replaces the
replicas of a service without a fixed host port one at a time, starting each new replica and waiting for
its health before retiring the old one (``apps.upgrade`` does it).

Blue/green runs the new version (*green*) next to the live one (*blue*) and moves the service's network
alias — the name a reverse proxy or another app on the app's network reaches it by — only when every green
container is healthy. Until the switch blue serves alone and is never touched: a green that does not become
healthy in time is removed and blue stays live. After the switch the green containers are checked again;
if one is no longer healthy the alias goes back to blue. Only then are the blue containers removed. Services
that publish a fixed host port cannot run twice side by side, so they are refused (use ``apps.upgrade``).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, ClassVar

from pydantic import BaseModel, Field

from actions.apps.compose import ContainerSpec, create_kwargs
from actions.apps.deploy import Deployment, container_health
from actions.apps.install import APP_NAME, Target, resolve_target
from actions.apps.state import AppsEnv, InstalledApp, default_env, installed
from actions.apps.upgrade import installed_app
from qwq_core.actions import ActionContext, Change, Plan
from qwq_core.errors import ActionError

GREEN_SUFFIX = ".qwq-green"


class BlueGreenParams(BaseModel):
    """Parameters of ``apps.blue_green``."""

    name: str = Field(pattern=APP_NAME, description="the installed app")
    version: str | None = Field(None, description="version to switch to (default: the newest)")
    params: dict[str, str | int | bool] = Field(default_factory=dict, description="parameters to change")


class BlueGreen:
    """Deploy a new version beside the live one and switch the service alias to it once it is healthy."""

    name: ClassVar[str] = "apps.blue_green"
    description: ClassVar[str] = "Blue/green switch of an app to another version, health-gated"
    Params: ClassVar[type[BaseModel]] = BlueGreenParams
    timeout: ClassVar[float] = 1800.0

    def __init__(self, env: AppsEnv | None = None) -> None:
        self.env = env or default_env()

    def _target(self, params: BlueGreenParams, context: ActionContext) -> tuple[InstalledApp, Target]:
        apps = installed(context.store)
        record = installed_app(apps, params.name)
        template = self.env.catalog().get(record.template, params.version)
        target = resolve_target(self.env, apps, record.name, template, params.params, record)
        fixed = sorted({s.service for s in target.desired.specs if any(p.host_port for p in s.ports)})
        if fixed:
            raise ActionError(
                f"blue/green needs services reached by their network alias; {', '.join(fixed)} publish a fixed "
                "host port (use apps.upgrade)",
                target=f"app:{record.name}",
            )
        return record, target

    def plan(self, params: BaseModel, context: ActionContext) -> Plan:
        assert isinstance(params, BlueGreenParams)
        record, target = self._target(params, context)
        if record.version == target.template.version and not params.params:
            return Plan(self.name, f"app:{record.name}", params.model_dump())
        changes = []
        for spec in target.desired.specs:
            changes += [
                Change("create", f"container:{spec.name}{GREEN_SUFFIX}", f"start green {spec.name} ({spec.image})"),
                Change("switch", f"alias:{spec.service}", f"move alias {spec.service} to green once healthy"),
                Change("delete", f"container:{spec.name}", f"remove blue {spec.name} after the switch"),
            ]
        changes.append(Change("upgrade", f"app:{record.name}", f"record {record.name} {target.template.version}"))
        return Plan(self.name, f"app:{record.name}", params.model_dump(), tuple(changes))

    def apply(self, plan: Plan, params: BaseModel, context: ActionContext) -> Mapping[str, Any]:
        assert isinstance(params, BlueGreenParams)
        record, target = self._target(params, context)
        api = context.docker().api
        blue = {spec.name: api.inspect_container(spec.name)["Id"] for spec in target.desired.specs}
        green = self._start_green(api, target, context)
        context.progress(0.6, "green is healthy: switching")
        for spec in target.desired.specs:
            _move_alias(api, spec, source=blue[spec.name], destination=green[spec.name])
        if not _still_healthy(api, green.values()):
            for spec in target.desired.specs:
                _move_alias(api, spec, source=green[spec.name], destination=blue[spec.name])
            _remove(api, green.values())
            raise ActionError("green turned unhealthy after the switch; alias moved back to blue", target=plan.target)
        for spec in target.desired.specs:
            api.remove_container(blue[spec.name], force=True)
            api.rename(green[spec.name], spec.name)
        context.store.record(
            [target.event("app.upgraded", self.env, previous_version=record.version, rollout="blue_green")]
        )
        return {"app": record.name, "from": record.version, "to": target.template.version, "live": "green"}

    def _start_green(self, api: Any, target: Target, context: ActionContext) -> dict[str, str]:
        green: dict[str, str] = {}
        deadline = time.monotonic() + target.desired.health_timeout
        deployment = Deployment(api, poll=self.env.poll)
        try:
            for spec in target.desired.specs:
                context.progress(0.2, f"starting green {spec.name}")
                created = api.create_container(**create_kwargs(api, spec, name=spec.name + GREEN_SUFFIX, role="green"))
                green[spec.name] = str(created["Id"])
                for network in spec.networks[1:]:
                    api.connect_container_to_network(created["Id"], network)
                api.start(created["Id"])
            deployment.wait_healthy(list(green.values()), deadline)
        except Exception as exc:
            _remove(api, green.values())
            raise ActionError(f"green not healthy ({exc}); blue stays live", target=f"app:{target.name}") from exc
        return green


def _move_alias(api: Any, spec: ContainerSpec, *, source: str, destination: str) -> None:
    """Reconnect both containers to the service's network: ``destination`` with the alias, ``source`` without."""
    network = spec.networks[0]
    api.disconnect_container_from_network(source, network)
    api.connect_container_to_network(source, network)
    api.disconnect_container_from_network(destination, network)
    api.connect_container_to_network(destination, network, aliases=spec.aliases)


def _still_healthy(api: Any, containers: Iterable[str]) -> bool:
    return all(container_health(api, c) == "healthy" for c in containers)


def _remove(api: Any, containers: Iterable[str]) -> None:
    for container in list(containers):
        api.remove_container(container, force=True)


__all__: Sequence[str] = ["BlueGreen", "BlueGreenParams"]
