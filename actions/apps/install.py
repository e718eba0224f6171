"""``apps.install``: install an app from the catalog — validated, conflict-checked, dependency-resolved,
health-gated, rolled back on failure, recorded; installing it again with the same parameters plans nothing.

Everything that can refuse an install does so in :meth:`Install.plan`, before anything is created: unknown
app or version, invalid parameters, a host port another container or a host process holds, a dependency
that is not installed (unless ``install_dependencies``). A dependency is *linked*: the app's containers
join the dependency's network and its template sees ``${<ALIAS>_HOST}`` (the dependency's container) and
``${<ALIAS>_<PARAM>}`` (each of its parameters).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import BaseModel, Field

from actions.apps.catalog import Template
from actions.apps.compose import container_specs, parse_duration_ns
from actions.apps.deploy import Deployment, Desired, diff, port_conflicts
from actions.apps.state import AppsEnv, InstalledApp, default_env, installed, record_event
from qwq_core.actions import ActionContext, Change, Plan
from qwq_core.errors import ActionError

APP_NAME = r"^[a-z0-9][a-z0-9-]{0,40}$"


class InstallParams(BaseModel):
    """Parameters of ``apps.install``."""

    app: str = Field(description="the template's name in the catalog")
    name: str | None = Field(None, pattern=APP_NAME, description="the installed app's name (default: app)")
    version: str | None = Field(None, description="template version (default: the newest)")
    params: dict[str, str | int | bool] = Field(default_factory=dict, description="template parameters")
    install_dependencies: bool = Field(False, description="install missing dependencies with their defaults")


@dataclass(frozen=True)
class Link:
    """A dependency of an app: which installed (or to-be-installed) app fills it."""

    alias: str
    name: str
    template: Template
    values: Mapping[str, str]
    missing: bool


@dataclass(frozen=True)
class Target:
    """Everything one app's install or upgrade resolves to."""

    name: str
    template: Template
    values: Mapping[str, str]
    links: tuple[Link, ...]
    desired: Desired

    def event(self, kind: str, env: AppsEnv, **extra: Any) -> Any:
        links = {link.alias: link.name for link in self.links}
        return record_event(kind, self.name, self.template, self.values, env.secrets, dependencies=links, **extra)


def resolve_target(
    env: AppsEnv,
    apps: Mapping[str, InstalledApp],
    name: str,
    template: Template,
    given: Mapping[str, Any],
    previous: InstalledApp | None,
    *,
    install_missing: bool = False,
) -> Target:
    """Validate parameters, link dependencies and build the desired engine state of app ``name``."""
    old = previous.values(env.secrets) if previous is not None and previous.template == template.name else None
    values = template.resolve(given, old, generate=lambda param: env.secrets.generate(name, param))
    links = tuple(_link(env, apps, template, dep, previous, install_missing) for dep in template.manifest.dependencies)
    variables = dict(values)
    networks: list[str] = []
    for link in links:
        linked = link.template.project(link.name, link.values)
        service = next((d.service for d in template.manifest.dependencies if d.alias == link.alias), None)
        host_service = service or linked.services[0].name
        variables[f"{link.alias}_HOST"] = f"{linked.name}-{host_service}-1"
        variables |= {f"{link.alias}_{key}": value for key, value in link.values.items()}
        networks.append(linked.network_name(linked.networks[0]))
    return Target(name, template, values, links, desired(name, template, variables, networks))


def desired(name: str, template: Template, values: Mapping[str, str], networks: Sequence[str] = ()) -> Desired:
    """The engine state of app ``name`` from ``template`` with ``values`` substituted."""
    project = template.project(name, values)
    specs = container_specs(project, name, template.version, extra_networks=networks)
    timeout = parse_duration_ns(template.manifest.health.timeout) / 1e9
    return Desired(name, project, tuple(specs), frozenset(template.manifest.health.services), timeout)


def _link(
    env: AppsEnv,
    apps: Mapping[str, InstalledApp],
    template: Template,
    dependency: Any,
    previous: InstalledApp | None,
    install_missing: bool,
) -> Link:
    linked_name = (previous.dependencies.get(dependency.alias) if previous else None) or _find(apps, dependency.app)
    if linked_name is not None and linked_name in apps:
        record = apps[linked_name]
        linked = env.catalog().get(record.template, record.version)
        return Link(dependency.alias, linked_name, linked, record.values(env.secrets), False)
    if not install_missing:
        raise ActionError(
            f"app {template.name} needs {dependency.app} (as {dependency.alias}), which is not installed: "
            f"install it first (qwq apps install {dependency.app}) or pass install_dependencies=true",
            target=f"app:{template.name}",
        )
    linked = env.catalog().get(dependency.app, dependency.version)
    values = linked.resolve({}, None, generate=lambda param: env.secrets.generate(dependency.app, param))
    return Link(dependency.alias, dependency.app, linked, values, True)


def _find(apps: Mapping[str, InstalledApp], template: str) -> str | None:
    if template in apps and apps[template].template == template:
        return template
    return next((name for name, app in sorted(apps.items()) if app.template == template), None)


def check_ports(api: Any, target: Target) -> None:
    """Refuse (before anything is created) when a host port the app publishes is taken."""
    ports = [(p.host_port, p.protocol) for s in target.desired.specs for p in s.ports if p.host_port]
    problems = port_conflicts(api, target.name, ports)
    if problems:
        raise ActionError(f"cannot install {target.name}: " + "; ".join(problems), target=f"app:{target.name}")


def record_change(target: Target, record: InstalledApp | None, env: AppsEnv, verb: str = "record") -> list[Change]:
    """A change recording the app in the store, unless the record already says exactly this."""
    same = (
        record is not None
        and record.version == target.template.version
        and record.template == target.template.name
        and record.values(env.secrets) == dict(target.values)
        and dict(record.dependencies) == {link.alias: link.name for link in target.links}
    )
    if same:
        return []
    summary = f"record {target.name} {target.template.version} with its parameters (secrets encrypted)"
    return [Change(verb, f"app:{target.name}", summary, {"version": target.template.version})]


class Install:
    """Install (or reconfigure) an app from the catalog."""

    name: ClassVar[str] = "apps.install"
    description: ClassVar[str] = (
        "Install an app from the catalog: conflict-checked, health-gated, rolled back on failure"
    )
    Params: ClassVar[type[BaseModel]] = InstallParams
    timeout: ClassVar[float] = 1800.0

    def __init__(self, env: AppsEnv | None = None) -> None:
        self.env = env or default_env()

    def plan(self, params: BaseModel, context: ActionContext) -> Plan:
        targets = self._targets(params, context)
        api = context.docker().api
        changes: list[Change] = []
        apps = installed(context.store)
        for target in targets:
            check_ports(api, target)
            changes += diff(api, target.desired)
            changes += record_change(target, apps.get(target.name), self.env)
        return Plan(self.name, f"app:{targets[-1].name}", params.model_dump(), tuple(changes))

    def _targets(self, params: BaseModel, context: ActionContext) -> list[Target]:
        """The app's target, preceded by those of dependencies it installs."""
        assert isinstance(params, InstallParams)
        name = params.name or params.app
        apps = installed(context.store)
        previous = apps.get(name)
        if previous is not None and previous.template != params.app:
            raise ActionError(
                f"an app called {name} is already installed from {previous.template}", target=f"app:{name}"
            )
        version = params.version or (previous.version if previous else None)
        template = self.env.catalog().get(params.app, version)
        if previous is not None and previous.version != template.version:
            raise ActionError(
                f"{name} is installed at version {previous.version}; use apps.upgrade to move to {template.version}",
                target=f"app:{name}",
            )
        target = resolve_target(
            self.env, apps, name, template, params.params, previous, install_missing=params.install_dependencies
        )
        dependencies = [
            resolve_target(self.env, apps, link.name, link.template, {}, None) for link in target.links if link.missing
        ]
        return [*dependencies, target]

    def apply(self, plan: Plan, params: BaseModel, context: ActionContext) -> Mapping[str, Any]:
        targets = self._targets(params, context)
        api = context.docker().api
        deployment = Deployment(api, poll=self.env.poll, progress=lambda m: context.progress(0.5, m))
        try:
            for index, target in enumerate(targets):
                check_ports(api, target)
                context.progress(index / len(targets), f"installing {target.name}")
                deployment.converge(target.desired)
        except Exception as exc:
            undone = deployment.rollback()
            raise ActionError(
                f"install of {targets[-1].name} failed: {exc}; rolled back", target=plan.target, rolled_back=undone
            ) from exc
        deployment.commit()
        context.store.record([t.event("app.installed", self.env) for t in targets])
        context.progress(1.0, f"{targets[-1].name} is healthy")
        return {
            "app": targets[-1].name,
            "version": targets[-1].template.version,
            "installed": [t.name for t in targets],
            "containers": [s.name for t in targets for s in t.desired.specs],
        }


__all__: Sequence[str] = ["Install", "InstallParams", "Target", "check_ports", "desired", "resolve_target"]
