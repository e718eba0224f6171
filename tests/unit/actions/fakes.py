"""An in-memory action for engine tests: sets ``key`` to ``value`` in a dict, idempotently."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from typing import Any, ClassVar

from pydantic import BaseModel, SecretStr

from qwq_core.actions import ActionContext, Change, Plan
from qwq_core.errors import ActionError
from qwq_core.secrets import Secret


class SetParams(BaseModel):
    key: str
    value: int
    password: Secret | None = None
    sleep: float = 0.0
    fail_times: int = 0


class SetValue:
    """``test.set``: ``state[key] = value``; an empty plan when it already is. Records overlapping applies."""

    name: ClassVar[str] = "test.set"
    description: ClassVar[str] = "set a value"
    Params: ClassVar[type[BaseModel]] = SetParams
    retry_safe: ClassVar[bool] = False

    def __init__(self) -> None:
        self.state: dict[str, int] = {}
        self.failures: dict[str, int] = {}
        self.active = 0
        self.max_active = 0
        self.guard = threading.Lock()

    def plan(self, params: BaseModel, context: ActionContext) -> Plan:
        assert isinstance(params, SetParams)
        changes = ()
        if self.state.get(params.key) != params.value:
            changes = (Change("update", f"key:{params.key}", f"set {params.key} to {params.value}"),)
        return Plan(self.name, f"key:{params.key}", params.model_dump(), changes)

    def apply(self, plan: Plan, params: BaseModel, context: ActionContext) -> Mapping[str, Any]:
        assert isinstance(params, SetParams)
        with self.guard:
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        try:
            context.progress(0.5, "halfway")
            time.sleep(params.sleep)
            if self.failures.get(params.key, 0) < params.fail_times:
                self.failures[params.key] = self.failures.get(params.key, 0) + 1
                secret = params.password.get_secret_value() if isinstance(params.password, SecretStr) else ""
                raise ActionError(f"flaky failure talking with password {secret}", rolled_back=["key:" + params.key])
            self.state[params.key] = params.value
            return {"key": params.key, "value": params.value, "echo": secret_echo(params)}
        finally:
            with self.guard:
                self.active -= 1


def secret_echo(params: SetParams) -> str:
    """A careless result that embeds the secret (the engine must scrub it)."""
    return f"connected with {params.password.get_secret_value()}" if params.password else ""


class RetrySetValue(SetValue):
    name: ClassVar[str] = "test.retry_set"
    retry_safe: ClassVar[bool] = True
