"""The action engine: validate → lock → plan → (dry-run stops) → apply with timeout and retries → audit.

:meth:`Engine.run` is the one way any trigger (CLI, REST, schedule, self-healing policy, remediation) runs
an action. Errors before apply (unknown action, invalid params — :class:`ConfigError` —, a plan that
refuses, a busy target — :class:`ActionError`) are raised; once apply starts, the answer is a
:class:`RunResult` whose ``outcome`` says ``applied``, ``noop`` (the plan was empty) or ``failed``.

Every run that gets to planning writes exactly one audit event to the store's append-only events table:
``action.planned`` (dry-run), ``action.applied`` (applied or no-op) or ``action.failed`` (the plan refused,
apply raised or timed out), with the actor, action, target, redacted params, the plan's changes, outcome,
result or error, and start/end times. :func:`audit` reads them back.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import docker
import polars as pl
from pydantic import BaseModel, ValidationError

from actions.locks import Locks, TargetLock
from actions.redact import redact, redact_params, scrub, secret_values
from qwq_core.actions import Action, Plan
from qwq_core.errors import ActionError, ConfigError, QwqError
from qwq_core.model import Event, Severity
from qwq_core.plugins import Plugin, Registry
from qwq_core.settings import issues_from
from qwq_core.store.base import Store
from qwq_core.timeutil import TimeLike, utcnow

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "qwq.actions"
AUDIT_KINDS = ("action.planned", "action.applied", "action.failed")
Outcome = Literal["planned", "noop", "applied", "failed"]
ProgressCallback = Callable[["RunStatus"], None]


@dataclass(frozen=True)
class RunResult:
    """What one run did. ``audit_id`` is the run id recorded in the audit event (``attrs.run_id``)."""

    plan: Plan
    outcome: Outcome
    result: Mapping[str, Any]
    error: str | None
    started: datetime
    ended: datetime
    audit_id: str
    attempts: int = 0
    rolled_back: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """True unless the apply failed."""
        return self.outcome != "failed"

    def raise_for_outcome(self) -> RunResult:
        """Raise :class:`ActionError` if the run failed; return self otherwise (for chaining)."""
        if not self.ok:
            raise ActionError(self.error or "failed", target=self.plan.target, rolled_back=self.rolled_back)
        return self

    def as_dict(self) -> dict[str, Any]:
        """JSON-able form (REST answers, ``--format json``)."""
        return {
            "run_id": self.audit_id,
            "outcome": self.outcome,
            "plan": self.plan.as_dict(),
            "result": dict(self.result),
            "error": self.error,
            "rolled_back": list(self.rolled_back),
            "attempts": self.attempts,
            "started": self.started.isoformat(),
            "ended": self.ended.isoformat(),
        }


@dataclass
class RunStatus:
    """Live status of a run, updated as it progresses (what ``GET /actions/runs`` and the CLI bar show)."""

    run_id: str
    action: str
    actor: str
    target: str = ""
    state: Literal["planning", "waiting", "applying", "done"] = "planning"
    fraction: float = 0.0
    message: str = ""
    outcome: Outcome | None = None
    started: datetime = field(default_factory=utcnow)
    ended: datetime | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-able snapshot."""
        return {
            **{k: v for k, v in vars(self).items() if k not in ("started", "ended")},
            "started": self.started.isoformat(),
            "ended": self.ended.isoformat() if self.ended else None,
        }


@dataclass
class _Context:
    """The :class:`~qwq_core.actions.ActionContext` the engine hands an action."""

    actor: str
    store: Store
    now: Callable[[], datetime]
    _report: Callable[[float, str], None]
    _docker: Callable[[], docker.DockerClient]

    def progress(self, fraction: float, message: str) -> None:
        self._report(min(1.0, max(0.0, float(fraction))), message)

    def docker(self) -> docker.DockerClient:
        return self._docker()


class Engine:
    """Runs registered actions against one store; see the module docstring.

    ``extra`` registers actions directly (classes or instances; they win over entry points). ``home``
    enables cross-process lock files under ``<home>/locks``. ``docker_url`` is the Engine API address
    (``unix:///var/run/docker.sock``, ``tcp://…``); None means the ``DOCKER_HOST`` environment, as the
    ``docker`` CLI does.
    """

    def __init__(
        self,
        store: Store,
        *,
        extra: Mapping[str, Any] | None = None,
        registry: Registry[Any] | None = None,
        home: Path | None = None,
        docker_url: str | None = None,
        clock: Callable[[], datetime] = utcnow,
        default_timeout: float = 600.0,
        lock_wait: float = 30.0,
        retry_backoff: float = 1.0,
        keep_runs: int = 200,
    ) -> None:
        self.store = store
        self.registry = registry or Registry(ENTRY_POINT_GROUP, extra=dict(extra or {}))
        self.clock = clock
        self.default_timeout = default_timeout
        self.lock_wait = lock_wait
        self.retry_backoff = retry_backoff
        self._locks = Locks(home / "locks" if home is not None else None)
        self._docker_url = docker_url
        self._docker_client: docker.DockerClient | None = None
        self._docker_guard = threading.Lock()
        self._runs: deque[RunStatus] = deque(maxlen=keep_runs)
        self._listeners: list[ProgressCallback] = []

    # ---- what is registered ----------------------------------------------------------------------------
    def plugins(self) -> list[Plugin[Any]]:
        """Every registered action, enabled or not."""
        return self.registry.plugins()

    def action(self, name: str) -> Action:
        """The action called ``name`` (an instance); :class:`NotFoundError` if unknown or disabled."""
        loaded = self.registry.get(name)
        return loaded() if isinstance(loaded, type) else loaded

    def describe(self) -> list[dict[str, Any]]:
        """Each action's name, description, parameter JSON schema, retry-safety and status."""
        rows = []
        for plugin in self.plugins():
            row: dict[str, Any] = {"name": plugin.name, "source": plugin.distribution or plugin.target}
            if plugin.loaded is None:
                rows.append({**row, "description": "", "params": {}, "status": plugin.error})
                continue
            kind = plugin.loaded
            rows.append(
                {
                    **row,
                    "description": getattr(kind, "description", ""),
                    "params": kind.Params.model_json_schema(),
                    "retry_safe": bool(getattr(kind, "retry_safe", False)),
                    "status": "ok",
                }
            )
        return rows

    def validate(self, name: str, params: Mapping[str, Any] | BaseModel) -> BaseModel:
        """Validate raw params against the action's model; :class:`ConfigError` names each bad key."""
        model = self.action(name).Params
        if isinstance(params, model):
            return params
        raw = params.model_dump() if isinstance(params, BaseModel) else dict(params)
        try:
            return model.model_validate(raw)
        except ValidationError as exc:
            raise ConfigError(issues_from(exc, f"action {name}", {}, prefix=("params",))) from None

    # ---- docker ----------------------------------------------------------------------------------------
    def docker(self) -> docker.DockerClient:
        """The engine's shared Docker client, created on first use."""
        with self._docker_guard:
            if self._docker_client is None:
                try:
                    self._docker_client = (
                        docker.DockerClient(base_url=self._docker_url, version="auto", timeout=60)
                        if self._docker_url
                        else docker.from_env(timeout=60)
                    )
                except docker.errors.DockerException as exc:
                    where = self._docker_url or "DOCKER_HOST"
                    raise ActionError(f"cannot reach the Docker engine at {where}: {exc}") from exc
            return self._docker_client

    def close(self) -> None:
        """Close the Docker client (if one was made)."""
        with self._docker_guard:
            if self._docker_client is not None:
                self._docker_client.close()
                self._docker_client = None

    # ---- live status -----------------------------------------------------------------------------------
    def subscribe(self, listener: ProgressCallback) -> None:
        """Call ``listener`` with every status update of every run (the dashboard, a log)."""
        self._listeners.append(listener)

    def runs(self) -> list[dict[str, Any]]:
        """Recent runs, newest first, with live progress for those still going."""
        return [status.as_dict() for status in reversed(self._runs)]

    # ---- running ---------------------------------------------------------------------------------------
    def plan(self, name: str, params: Mapping[str, Any] | BaseModel, *, actor: str = "library") -> Plan:
        """Validate and plan without locking, applying or auditing (what ``qwq action plan`` shows)."""
        action, validated = self.action(name), self.validate(name, params)
        status = RunStatus(uuid.uuid4().hex, name, actor)
        return self._plan(action, validated, self._context(actor, status, None))

    def run(
        self,
        name: str,
        params: Mapping[str, Any] | BaseModel,
        *,
        actor: str,
        dry_run: bool = False,
        timeout: float | None = None,
        retry: bool = True,
        on_progress: ProgressCallback | None = None,
    ) -> RunResult:
        """Run ``name``: validate, lock the target, plan, apply (unless ``dry_run``), verify, audit.

        ``retry=False`` makes one attempt even for a retry-safe action (self-healing policies do their own
        backoff across ticks).
        """
        action, validated = self.action(name), self.validate(name, params)
        status = RunStatus(uuid.uuid4().hex, name, actor, started=self.clock())
        self._runs.append(status)
        context = self._context(actor, status, on_progress)
        secrets = secret_values(validated)
        shown = redact_params(validated)
        try:
            plan = self._plan(action, validated, context)
        except ActionError as exc:
            self._finish(status, "failed", on_progress)
            if not dry_run:
                self._audit_refusal(status, shown, scrub(str(exc), secrets), exc)
            raise
        status.target = plan.target
        if dry_run:
            return self._done(status, plan, "planned", {}, None, secrets, on_progress)
        self._update(status, on_progress, state="waiting", message=f"waiting for the lock on {plan.target}")
        lock = self._locks.acquire(plan.target, wait=self.lock_wait, holder={"actor": actor, "action": name})
        attempt = _Attempt(action, validated, context, self.retry_backoff if retry else None)
        return self._apply_locked(attempt, plan, status, lock, timeout, secrets, on_progress)

    def _apply_locked(
        self,
        attempt: _Attempt,
        plan: Plan,
        status: RunStatus,
        lock: TargetLock,
        timeout: float | None,
        secrets: set[str],
        on_progress: ProgressCallback | None,
    ) -> RunResult:
        action = attempt.action
        worker = _Worker(attempt, lock.release)
        try:
            # Re-plan under the lock: another run may have changed the target while we waited for it.
            plan = self._plan(action, attempt.params, attempt.context)
            if plan.empty:
                return self._done(status, plan, "noop", {}, None, secrets, on_progress)
            self._update(status, on_progress, state="applying", message="applying")
            limit = timeout if timeout is not None else float(getattr(action, "timeout", self.default_timeout))
            result = worker.run(plan, limit)
            return self._done(status, plan, "applied", result, None, secrets, on_progress, attempt.count)
        except _TimedOut:
            error = ActionError(f"timed out after {limit:g}s (still running in the background; lock held)")
            return self._done(status, plan, "failed", {}, error, secrets, on_progress, attempt.count)
        except Exception as exc:  # an action's failure is a recorded outcome, whatever it raised
            return self._done(status, plan, "failed", {}, exc, secrets, on_progress, attempt.count)
        finally:
            worker.release_when_done()

    def _plan(self, action: Action, params: BaseModel, context: _Context) -> Plan:
        try:
            plan = action.plan(params, context)
        except QwqError:
            raise
        except Exception as exc:
            raise ActionError(f"{action.name}: planning failed: {type(exc).__name__}: {exc}") from exc
        # The engine owns redaction: whatever the action put in params, the audit sees them masked.
        return replace(plan, params=redact_params(params))

    def _context(self, actor: str, status: RunStatus, on_progress: ProgressCallback | None) -> _Context:
        def report(fraction: float, message: str) -> None:
            self._update(status, on_progress, fraction=fraction, message=message)

        return _Context(actor, self.store, self.clock, report, self.docker)

    def _update(self, status: RunStatus, on_progress: ProgressCallback | None, **changes: Any) -> None:
        for key, value in changes.items():
            setattr(status, key, value)
        for listener in [*self._listeners, *([on_progress] if on_progress else [])]:
            try:
                listener(status)
            except Exception:  # a broken progress display must not fail the action
                log.exception("progress listener failed")

    def _finish(self, status: RunStatus, outcome: Outcome, on_progress: ProgressCallback | None) -> None:
        fraction = 1.0 if outcome != "failed" else status.fraction
        self._update(status, on_progress, state="done", outcome=outcome, fraction=fraction, ended=self.clock())

    def _done(
        self,
        status: RunStatus,
        plan: Plan,
        outcome: Outcome,
        result: Mapping[str, Any],
        error: BaseException | None,
        secrets: set[str],
        on_progress: ProgressCallback | None,
        attempts: int = 0,
    ) -> RunResult:
        message = scrub(f"{error}" if isinstance(error, QwqError) else f"{type(error).__name__}: {error}", secrets)
        clean = json.loads(scrub(json.dumps(redact(dict(result)), default=str), secrets))
        rolled_back = error.rolled_back if isinstance(error, ActionError) else ()
        self._finish(status, outcome, on_progress)
        run = RunResult(
            plan,
            outcome,
            clean,
            message if error is not None else None,
            status.started,
            status.ended or self.clock(),
            status.run_id,
            attempts,
            tuple(rolled_back),
        )
        if error is not None:
            log.warning("action %s on %s failed: %s", plan.action, plan.target, run.error)
        self.store.record([audit_event(run, status.actor)])
        return run

    def _audit_refusal(self, status: RunStatus, params: dict[str, Any], message: str, error: ActionError) -> None:
        plan = Plan(status.action, error.target or "", params)
        run = RunResult(plan, "failed", {}, message, status.started, status.ended or self.clock(), status.run_id)
        self.store.record([audit_event(run, status.actor, stage="plan")])


class _TimedOut(Exception):
    pass


class _Attempt:
    """Apply with retries and exponential backoff, only for actions that declare ``retry_safe``
    (``backoff`` None: one attempt whatever the action declares)."""

    def __init__(self, action: Action, params: BaseModel, context: _Context, backoff: float | None) -> None:
        self.action, self.params, self.context, self.backoff = action, params, context, backoff
        self.count = 0
        self.abandoned = threading.Event()

    def run(self, plan: Plan) -> Mapping[str, Any]:
        safe = getattr(self.action, "retry_safe", False) and self.backoff is not None
        retries = int(getattr(self.action, "retries", 2)) if safe else 0
        while True:
            self.count += 1
            try:
                return dict(self.action.apply(plan, self.params, self.context))
            except Exception as exc:
                if self.count > retries or self.abandoned.is_set():
                    raise
                delay = (self.backoff or 0.0) * 2 ** (self.count - 1)
                log.info("%s failed (%s); retry %d in %.1fs", self.action.name, exc, self.count, delay)
                if self.abandoned.wait(delay):
                    raise
                plan = self.action.plan(self.params, self.context)
                if plan.empty:  # the failure healed itself or a retry is not needed any more
                    return {"replanned": "nothing left to do"}


class _Worker:
    """Runs an apply in a daemon thread with a time limit; the target lock is released when it really
    ends, so a timed-out apply still blocks others from interleaving with it."""

    def __init__(self, attempt: _Attempt, release: Callable[[], None]) -> None:
        self._attempt = attempt
        self._release = release
        self._guard = threading.Lock()
        self._finished = threading.Event()
        self._abandoned = False
        self._started = False
        self._box: dict[str, Any] = {}

    def run(self, plan: Plan, timeout: float) -> Mapping[str, Any]:
        self._started = True
        threading.Thread(target=self._target, args=(plan,), daemon=True, name="qwq-action").start()
        if not self._finished.wait(timeout):
            with self._guard:
                self._abandoned = not self._finished.is_set()
            if self._abandoned:
                self._attempt.abandoned.set()  # no further retries after the caller gave up
                raise _TimedOut
        if "error" in self._box:
            raise self._box["error"]
        return self._box["result"]

    def _target(self, plan: Plan) -> None:
        try:
            self._box["result"] = self._attempt.run(plan)
        except BaseException as exc:
            self._box["error"] = exc
        finally:
            with self._guard:
                self._finished.set()
                abandoned = self._abandoned
            if abandoned:
                self._release()

    def release_when_done(self) -> None:
        """Release the lock now unless an abandoned apply still runs (then it releases on its own)."""
        with self._guard:
            if self._started and self._abandoned and not self._finished.is_set():
                return
        self._release()


def audit_event(run: RunResult, actor: str, *, stage: str = "apply") -> Event:
    """The one audit event of ``run``."""
    kind = {"planned": "action.planned", "failed": "action.failed"}.get(run.outcome, "action.applied")
    plan = run.plan
    verb = {"planned": "planned", "noop": "found nothing to do for", "applied": "applied", "failed": "failed"}
    message = f"{actor} {verb[run.outcome]} {plan.action} on {plan.target or '?'}"
    if run.outcome in ("planned", "applied"):
        message += f" ({len(plan.changes)} change{'s' if len(plan.changes) != 1 else ''})"
    if run.error:
        message += f": {run.error}"
    attrs = {
        "run_id": run.audit_id,
        "actor": actor,
        "action": plan.action,
        "target": plan.target,
        "params": dict(plan.params),
        "changes": [change.as_dict() for change in plan.changes],
        "outcome": run.outcome,
        "stage": stage,
        "result": dict(run.result),
        "error": run.error,
        "rolled_back": list(run.rolled_back),
        "attempts": run.attempts,
        "started": run.started.isoformat(),
        "ended": run.ended.isoformat(),
        "duration_s": round((run.ended - run.started).total_seconds(), 3),
    }
    severity: Severity = "error" if run.outcome == "failed" else "info"
    return Event(kind, message, source=f"action:{plan.action}", severity=severity, attrs=attrs, ts=run.ended)


AUDIT_COLUMNS: dict[str, pl.DataType | type[pl.DataType]] = {
    "id": pl.Int64,
    "ts": pl.Datetime("us", "UTC"),
    "run_id": pl.String,
    "outcome": pl.String,
    "actor": pl.String,
    "action": pl.String,
    "target": pl.String,
    "changes": pl.Int64,
    "params": pl.String,
    "plan": pl.String,
    "error": pl.String,
    "stage": pl.String,
    "attempts": pl.Int64,
    "started": pl.String,
    "ended": pl.String,
    "duration_s": pl.Float64,
}


def audit(
    store: Store,
    *,
    since: TimeLike = "30d",
    until: TimeLike | None = None,
    action: str | None = None,
    target: str | None = None,
    actor: str | None = None,
    outcome: str | None = None,
    limit: int = 1000,
) -> pl.DataFrame:
    """The audit trail, newest first: one row per run (``AUDIT_COLUMNS``); filters take shell globs."""
    import fnmatch

    events = store.events(since=since, until=until, kind="action.*", limit=1_000_000)
    wanted = {"action": action, "target": target, "actor": actor, "outcome": outcome}
    rows = []
    for row in events.iter_rows(named=True):
        if row["kind"] not in AUDIT_KINDS:
            continue
        attrs = json.loads(row["attrs"] or "{}")
        if all(glob is None or fnmatch.fnmatchcase(str(attrs.get(k, "")), glob) for k, glob in wanted.items()):
            rows.append(_audit_row(row, attrs))
        if len(rows) >= limit:
            break
    return pl.DataFrame(rows, schema=AUDIT_COLUMNS)


def _audit_row(row: Mapping[str, Any], attrs: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "ts": row["ts"],
        "run_id": attrs.get("run_id"),
        "outcome": attrs.get("outcome"),
        "actor": attrs.get("actor"),
        "action": attrs.get("action"),
        "target": attrs.get("target"),
        "changes": len(attrs.get("changes") or []),
        "params": json.dumps(attrs.get("params") or {}, sort_keys=True),
        "plan": json.dumps(attrs.get("changes") or []),
        "error": attrs.get("error"),
        "stage": attrs.get("stage"),
        "attempts": attrs.get("attempts"),
        "started": attrs.get("started"),
        "ended": attrs.get("ended"),
        "duration_s": attrs.get("duration_s"),
    }


__all__: Sequence[str] = [
    "AUDIT_COLUMNS",
    "AUDIT_KINDS",
    "ENTRY_POINT_GROUP",
    "Engine",
    "Outcome",
    "RunResult",
    "RunStatus",
    "audit",
    "audit_event",
]
