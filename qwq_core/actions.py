"""The action contract: what every action (built-in or third-party) implements and what the engine hands it.

An action turns validated parameters into a :class:`Plan` with :meth:`Action.plan` (read-only: it looks,
never touches) and then executes that plan with :meth:`Action.apply`, which verifies the outcome and rolls
back what it can on failure. An empty plan means there is nothing to do, which is what makes actions
idempotent: applying the same install twice plans nothing the second time.

Actions register through the ``qwq.actions`` entry-point group (see :mod:`qwq_core.plugins`); the engine in
:mod:`actions.engine` validates parameters, takes the per-target lock, plans, applies with a timeout and
writes the audit event. Actions never write audit records themselves.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

from pydantic import BaseModel

if TYPE_CHECKING:
    import docker

    from qwq_core.store import Store


@dataclass(frozen=True)
class Change:
    """One step of a plan: a verb on a target, in one human sentence.

    ``verb`` is ``create``, ``update``, ``delete``, ``restart``, ``start``, ``stop``, ...; ``target`` is
    ``kind:name`` (``container:grafana-web-1``, ``network:qwq-grafana``, ``unit:nginx.service``).
    ``details`` must be JSON-able and never carry a secret in clear.
    """

    verb: str
    target: str
    summary: str
    details: Mapping[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """The change as a JSON-able dict (for audit records, REST answers and ``--format json``)."""
        return {"verb": self.verb, "target": self.target, "summary": self.summary, "details": dict(self.details)}


@dataclass(frozen=True)
class Plan:
    """What an apply would do: the action, the lock key, the (redacted) params and the ordered changes.

    ``target`` is the lock key (``app:grafana``, ``container:web``): two applies on one target never
    interleave. ``params`` are for display and audit, so secrets in them are already redacted.
    """

    action: str
    target: str
    params: Mapping[str, Any]
    changes: tuple[Change, ...] = ()

    @property
    def empty(self) -> bool:
        """True when there is nothing to do: applying this plan is a no-op."""
        return not self.changes

    def as_dict(self) -> dict[str, Any]:
        """The plan as a JSON-able dict."""
        return {
            "action": self.action,
            "target": self.target,
            "params": dict(self.params),
            "changes": [change.as_dict() for change in self.changes],
            "empty": self.empty,
        }


@runtime_checkable
class ActionContext(Protocol):
    """What the engine hands an action: who runs it, progress reporting, the engine client, the store, a clock."""

    actor: str
    """Who asked: ``cli:root``, ``api``, ``schedule:nightly``, ``policy:restart-web``."""
    store: Store
    """The store, to read; the engine writes audit and progress events itself."""

    @property
    def now(self) -> Callable[[], datetime]:
        """The clock (UTC): call ``context.now()``; tests pass a fake one."""
        ...

    def progress(self, fraction: float, message: str) -> None:
        """Report progress, ``fraction`` in 0..1; becomes live status (CLI bar, REST, dashboard)."""
        ...

    def docker(self) -> docker.DockerClient:
        """The configured Docker Engine API client (``DOCKER_HOST`` semantics), created on first use."""
        ...


@runtime_checkable
class Action(Protocol):
    """One action. Implementations are plain classes with these class attributes and two methods.

    Optional class attributes the engine honours: ``retry_safe: ClassVar[bool]`` (default False) — the
    engine may retry a failed apply with backoff; ``timeout: ClassVar[float]`` — the default apply timeout
    in seconds.
    """

    name: ClassVar[str]
    """The registered name, dotted: ``containers.restart``, ``apps.install``."""
    description: ClassVar[str]
    """One line for ``qwq action list`` and ``GET /actions``."""
    Params: ClassVar[type[BaseModel]]
    """The parameter model; secrets as :class:`pydantic.SecretStr` / :data:`qwq_core.secrets.Secret`."""

    def plan(self, params: BaseModel, context: ActionContext) -> Plan:
        """What applying would change; read-only. An empty plan means nothing to do."""
        ...

    def apply(self, plan: Plan, params: BaseModel, context: ActionContext) -> Mapping[str, Any]:
        """Execute, verify, roll back what it can on failure (then raise ActionError with what was rolled
        back); return a JSON-able result. Must be safe to call again after a failure."""
        ...


__all__: Sequence[str] = ["Action", "ActionContext", "Change", "Plan"]
