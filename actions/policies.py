"""Self-healing: restart policies for containers, and remediation of firing alerts.

**Restart policies** watch containers by polling the Docker Engine API (one list per tick, an inspect only
for containers a policy matches; polling rather than the event stream, so a missed event or an engine
restart can never leave a container unhealed). A matched container that is exited, unhealthy or
OOM-killed is restarted through the engine (``containers.restart``, audited with actor
``policy:<name>``) with exponential backoff between attempts; at most ``max_attempts`` per ``window``.
When the budget is spent the policy stops trying, records a ``policy.exhausted`` event and raises an
:class:`~analytics.alerting.model.Alert` (``alertname="RestartBudgetExhausted"``) through a callback; the
alert resolves when the container is seen running again.

**Remediations** run an action when an alert fires ("when HighLatency fires, restart web"), at most
``max_runs`` per ``window`` and ``interval`` apart, then escalate with a ``RemediationEscalated`` alert.
The decisions (:func:`decide`, :func:`remediate`) are pure functions over observations or alert states;
:class:`Healer` and :class:`Remediator` are the thin wrappers that observe, run and report.
"""

from __future__ import annotations

import fnmatch
import logging
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Literal

import docker
from docker.errors import DockerException, NotFound
from pydantic import BaseModel, ConfigDict, Field

from actions.engine import Engine, RunResult
from analytics.alerting.model import Alert
from qwq_core.errors import QwqError
from qwq_core.model import Event, Severity
from qwq_core.settings import Duration

log = logging.getLogger(__name__)

Condition = Literal["exited", "unhealthy", "oom"]
CONDITIONS: tuple[Condition, ...] = ("exited", "unhealthy", "oom")
AlertSink = Callable[[Alert], None]
EventSink = Callable[[Iterable[Event]], None]
EXHAUSTED_ALERT = "RestartBudgetExhausted"
ESCALATED_ALERT = "RemediationEscalated"


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ---- restart policies: the pure part ---------------------------------------------------------------------
class RestartPolicy(_Config):
    """One ``[[actions.policies]]`` row: which containers, on what, how fast, how often."""

    name: str = Field(min_length=1, description="policy name (the audit actor is policy:<name>)")
    match: list[str] = Field(default_factory=lambda: ["*"], description="container name globs")
    labels: dict[str, str] = Field(default_factory=dict, description="labels the container must carry (globs)")
    on: list[Condition] = Field(default_factory=lambda: list(CONDITIONS), description="conditions acted on")
    backoff: Duration = Field(default=timedelta(seconds=10), description="wait after the first attempt")
    backoff_factor: float = Field(default=2.0, ge=1.0, description="each further wait is this much longer")
    max_backoff: Duration = Field(default=timedelta(minutes=5), description="cap on the wait")
    max_attempts: int = Field(default=5, ge=1, description="attempts allowed per window")
    window: Duration = Field(default=timedelta(hours=1), description="the budget's sliding window")
    action: str = Field(default="containers.restart", description="the action run per attempt")
    params: dict[str, Any] = Field(default_factory=dict, description="extra params for the action")
    severity: str = Field(default="critical", description="severity label of the exhaustion alert")


@dataclass(frozen=True)
class Observation:
    """One container as seen by a poll."""

    id: str
    name: str
    labels: Mapping[str, str]
    status: str
    health: str | None = None
    oom_killed: bool = False
    exit_code: int | None = None


@dataclass(frozen=True)
class Budget:
    """What a policy remembers about one container: its recent attempts and whether it gave up."""

    attempts: tuple[datetime, ...] = ()
    exhausted: bool = False


@dataclass(frozen=True)
class Decision:
    """What to do about one container now, and the budget afterwards."""

    kind: Literal["restart", "wait", "exhausted", "recovered", "idle"]
    budget: Budget
    condition: Condition | None = None
    next_at: datetime | None = None
    """For ``wait``: when the next attempt becomes allowed."""


def condition(observation: Observation) -> Condition | None:
    """The container's problem, if any: OOM-killed, exited (or dead), or unhealthy."""
    if observation.status in ("exited", "dead"):
        return "oom" if observation.oom_killed else "exited"
    if observation.health == "unhealthy":
        return "unhealthy"
    return None


def matches(policy: RestartPolicy, observation: Observation) -> bool:
    """True when the container's name matches a glob and it carries every required label."""
    if not any(fnmatch.fnmatchcase(observation.name, glob) for glob in policy.match):
        return False
    return all(fnmatch.fnmatchcase(observation.labels.get(k, ""), v) for k, v in policy.labels.items())


def backoff_delay(policy: RestartPolicy, attempts: int) -> timedelta:
    """The wait after the ``attempts``-th attempt of a window: ``backoff × factor^(attempts-1)``, capped."""
    if attempts <= 0:
        return timedelta(0)
    seconds = policy.backoff.total_seconds() * policy.backoff_factor ** (attempts - 1)
    return min(policy.max_backoff, timedelta(seconds=seconds))


def decide(policy: RestartPolicy, budget: Budget, problem: Condition | None, now: datetime) -> Decision:
    """The policy's decision for one container with ``problem`` (None: it is fine) at ``now``."""
    recent = tuple(t for t in budget.attempts if now - t < policy.window)
    if problem is None or problem not in policy.on:
        if budget.exhausted and problem is None:
            return Decision("recovered", Budget(recent, exhausted=False))
        return Decision("idle", Budget(recent, budget.exhausted))
    if len(recent) >= policy.max_attempts:
        kind: Literal["idle", "exhausted"] = "idle" if budget.exhausted else "exhausted"
        return Decision(kind, Budget(recent, exhausted=True), problem)
    if recent and now < (ready := recent[-1] + backoff_delay(policy, len(recent))):
        return Decision("wait", Budget(recent, budget.exhausted), problem, ready)
    return Decision("restart", Budget((*recent, now), budget.exhausted), problem)


def exhausted_alert(policy: RestartPolicy, observation: Observation, budget: Budget, now: datetime) -> Alert:
    """The alert raised when ``policy`` gives up on a container (resolved later by :func:`resolved`)."""
    window = policy.window.total_seconds()
    return Alert(
        labels={
            "alertname": EXHAUSTED_ALERT,
            "policy": policy.name,
            "container": observation.name,
            "severity": policy.severity,
        },
        starts_at=budget.attempts[0] if budget.attempts else now,
        annotations={
            "summary": f"{observation.name} keeps failing; policy {policy.name} stopped restarting it",
            "description": f"{len(budget.attempts)} restart attempts in {window:g}s did not keep it up; "
            f"it is {observation.status}" + (f" ({observation.health})" if observation.health else ""),
        },
        source="qwq.actions",
    )


def resolved(alert: Alert, now: datetime) -> Alert:
    """``alert`` as resolved at ``now``."""
    return replace(alert, status="resolved", ends_at=now)


# ---- restart policies: observing and acting --------------------------------------------------------------
def observe(client: docker.DockerClient, wanted: Callable[[str, Mapping[str, str]], bool]) -> list[Observation]:
    """Every container ``wanted(name, labels)`` selects, inspected for health and OOM state."""
    found = []
    for summary in client.containers.list(all=True, sparse=True):
        name = (summary.attrs.get("Names") or [summary.id])[0].lstrip("/")
        if not wanted(name, summary.attrs.get("Labels") or {}):
            continue
        try:
            container = client.containers.get(summary.id)
        except NotFound:  # removed between list and inspect
            continue
        state = container.attrs.get("State") or {}
        health = (state.get("Health") or state.get("Healthcheck") or {}).get("Status") or None
        found.append(
            Observation(
                container.id or summary.id,
                container.name or name,
                container.labels,
                state.get("Status") or container.status,
                health,
                bool(state.get("OOMKilled")),
                state.get("ExitCode"),
            )
        )
    return found


@dataclass
class _Tracked:
    budget: Budget = field(default_factory=Budget)
    alert: Alert | None = None


class Healer:
    """Runs the restart policies: one :meth:`tick` per poll (the service schedules it)."""

    def __init__(
        self,
        policies: Sequence[RestartPolicy],
        engine: Engine,
        *,
        on_alert: AlertSink | None = None,
        emit: EventSink | None = None,
    ) -> None:
        self.policies = list(policies)
        self.engine = engine
        self.on_alert = on_alert
        self.emit = emit or engine.store.record
        self._tracked: dict[tuple[str, str], _Tracked] = {}

    def _wanted(self, name: str, labels: Mapping[str, str]) -> bool:
        probe = Observation("", name, labels, "")
        return any(matches(policy, probe) for policy in self.policies)

    def tick(self, now: datetime) -> list[tuple[str, str, Decision]]:
        """Observe, decide and act once; returns ``(policy, container, decision)`` for each match."""
        try:
            seen = observe(self.engine.docker(), self._wanted)
        except (DockerException, QwqError) as exc:
            log.warning("self-healing cannot observe containers: %s", exc)
            return []
        done = []
        for observation in seen:
            policy = next((p for p in self.policies if matches(p, observation)), None)
            if policy is not None:
                done.append((policy.name, observation.name, self._handle(policy, observation, now)))
        self._forget(seen)
        return done

    def _handle(self, policy: RestartPolicy, observation: Observation, now: datetime) -> Decision:
        tracked = self._tracked.setdefault((policy.name, observation.id), _Tracked())
        decision = decide(policy, tracked.budget, condition(observation), now)
        tracked.budget = decision.budget
        if decision.kind == "restart":
            self._restart(policy, observation, decision, len(decision.budget.attempts))
        elif decision.kind == "exhausted":
            tracked.alert = exhausted_alert(policy, observation, decision.budget, now)
            self._report(tracked.alert, "policy.exhausted", "error", policy, observation, now)
        elif decision.kind == "recovered" and tracked.alert is not None:
            self._report(resolved(tracked.alert, now), "policy.recovered", "info", policy, observation, now)
            tracked.alert = None
        return decision

    def _restart(self, policy: RestartPolicy, observation: Observation, decision: Decision, attempt: int) -> None:
        params = {**policy.params, "container": observation.id}
        log.info("policy %s: %s is %s, attempt %d", policy.name, observation.name, decision.condition, attempt)
        try:
            run: RunResult | None = self.engine.run(policy.action, params, actor=f"policy:{policy.name}", retry=False)
        except QwqError as exc:  # refused (gone, busy): still an attempt of the budget; audited by the engine
            log.warning("policy %s: %s", policy.name, exc)
            run = None
        if run is not None and not run.ok:
            log.warning("policy %s: restarting %s failed: %s", policy.name, observation.name, run.error)

    def _report(
        self, alert: Alert, kind: str, severity: Severity, policy: RestartPolicy, obs: Observation, now: datetime
    ) -> None:
        attrs = {"policy": policy.name, "container": obs.name, "status": obs.status, "alert": alert.status}
        self.emit([Event(kind, alert.annotations.get("summary", kind), "actions", severity, attrs, now)])
        if self.on_alert is not None:
            self.on_alert(alert)

    def _forget(self, seen: Sequence[Observation]) -> None:
        present = {observation.id for observation in seen}
        for key in [key for key in self._tracked if key[1] not in present]:
            del self._tracked[key]  # a removed container is nobody's to heal


# ---- remediation of firing alerts -----------------------------------------------------------------------
class Remediation(_Config):
    """One ``[[actions.remediations]]`` row: when an alert fires, run an action, within a budget."""

    name: str = Field(min_length=1, description="remediation name (the audit actor is remediation:<name>)")
    alert: str = Field(description="alertname glob")
    matchers: dict[str, str] = Field(default_factory=dict, description="further label globs the alert must match")
    action: str = Field(description="the action to run")
    params: dict[str, Any] = Field(
        default_factory=dict, description="action params; {label} in a string is replaced by the alert's label"
    )
    max_runs: int = Field(default=3, ge=1, description="runs allowed per window before escalating")
    window: Duration = Field(default=timedelta(hours=1), description="the budget's sliding window")
    interval: Duration = Field(default=timedelta(minutes=5), description="minimum time between runs")
    severity: str = Field(default="critical", description="severity label of the escalation alert")


@dataclass(frozen=True)
class RemediationState:
    """What a remediation remembers about one alert (by fingerprint)."""

    runs: tuple[datetime, ...] = ()
    escalation: Alert | None = None


@dataclass(frozen=True)
class Step:
    """Run ``action`` with ``params`` for ``remediation`` because of ``alert``."""

    remediation: str
    action: str
    params: Mapping[str, Any]
    alert: Alert


@dataclass(frozen=True)
class RemediationPlan:
    """The outcome of one :func:`remediate` call: actions to run, alerts to send, the new states."""

    steps: tuple[Step, ...]
    alerts: tuple[Alert, ...]
    states: Mapping[tuple[str, str], RemediationState]


def alert_matches(remediation: Remediation, alert: Alert) -> bool:
    """True when the alert's name and labels match the remediation's globs."""
    if not fnmatch.fnmatchcase(alert.name, remediation.alert):
        return False
    return all(fnmatch.fnmatchcase(alert.labels.get(k, ""), v) for k, v in remediation.matchers.items())


def fill(params: Mapping[str, Any], labels: Mapping[str, str]) -> dict[str, Any]:
    """``params`` with ``{label}`` placeholders in strings replaced by the alert's labels (unknown kept)."""

    def one(value: Any) -> Any:
        if isinstance(value, str):
            return re.sub(r"\{(\w+)\}", lambda m: labels.get(m.group(1), m.group(0)), value)
        if isinstance(value, Mapping):
            return {k: one(v) for k, v in value.items()}
        if isinstance(value, list):
            return [one(v) for v in value]
        return value

    return {key: one(value) for key, value in params.items()}


def remediate(
    remediations: Sequence[Remediation],
    alerts: Iterable[Alert],
    states: Mapping[tuple[str, str], RemediationState],
    now: datetime,
) -> RemediationPlan:
    """Decide, for the alerts firing now, which remediations run and which escalate.

    ``states`` is keyed by ``(remediation name, alert fingerprint)``; the returned plan carries the next
    states. An alert that stopped firing drops its state and resolves its escalation, if it had one.
    """
    steps: list[Step] = []
    sent: list[Alert] = []
    nexts: dict[tuple[str, str], RemediationState] = {}
    for alert in alerts:
        if alert.status != "firing":
            continue
        for remediation in remediations:
            if alert_matches(remediation, alert):
                key = (remediation.name, alert.fingerprint)
                state, step, escalation = _remediate_one(remediation, alert, states.get(key), now)
                nexts[key] = state
                steps += [step] if step else []
                sent += [escalation] if escalation else []
    for key, old in states.items():
        if key not in nexts and old.escalation is not None:
            sent.append(resolved(old.escalation, now))
    return RemediationPlan(tuple(steps), tuple(sent), nexts)


def _remediate_one(
    remediation: Remediation, alert: Alert, state: RemediationState | None, now: datetime
) -> tuple[RemediationState, Step | None, Alert | None]:
    state = state or RemediationState()
    runs = tuple(t for t in state.runs if now - t < remediation.window)
    settled = not runs or now - runs[-1] >= remediation.interval
    if len(runs) < remediation.max_runs:
        if not settled:
            return replace(state, runs=runs), None, None
        step = Step(remediation.name, remediation.action, fill(remediation.params, alert.labels), alert)
        return replace(state, runs=(*runs, now)), step, None
    if state.escalation is not None or not settled:  # give the last run its interval to work
        return replace(state, runs=runs), None, None
    escalation = escalation_alert(remediation, alert, len(runs), now)
    return RemediationState(runs, escalation), None, escalation


def escalation_alert(remediation: Remediation, alert: Alert, runs: int, now: datetime) -> Alert:
    """The alert sent when a remediation's budget is spent and its alert still fires."""
    labels = {**alert.labels, "alertname": ESCALATED_ALERT, "remediation": remediation.name}
    labels["escalated_alert"] = alert.name
    labels["severity"] = remediation.severity
    return Alert(
        labels=labels,
        starts_at=now,
        annotations={
            "summary": f"{alert.name} still fires after {runs} runs of {remediation.action}",
            "description": f"remediation {remediation.name} spent its budget; a human is needed",
        },
        source="qwq.actions",
    )


class Remediator:
    """Feeds alert states to :func:`remediate`, runs the steps through the engine, sends escalations."""

    def __init__(
        self,
        remediations: Sequence[Remediation],
        engine: Engine,
        *,
        on_alert: AlertSink | None = None,
        emit: EventSink | None = None,
    ) -> None:
        self.remediations = list(remediations)
        self.engine = engine
        self.on_alert = on_alert
        self.emit = emit or engine.store.record
        self.states: Mapping[tuple[str, str], RemediationState] = {}

    def __call__(self, alerts: Iterable[Alert], now: datetime) -> list[RunResult]:
        """Handle the alerts firing at ``now`` (all of them, each call: absence means resolved)."""
        plan = remediate(self.remediations, alerts, self.states, now)
        self.states = plan.states
        results = []
        for step in plan.steps:
            try:
                results.append(self.engine.run(step.action, step.params, actor=f"remediation:{step.remediation}"))
            except QwqError as exc:  # refused: audited by the engine when it got to planning
                log.warning("remediation %s: %s", step.remediation, exc)
        for alert in plan.alerts:
            kind = "remediation.escalated" if alert.status == "firing" else "remediation.resolved"
            attrs = {"remediation": alert.labels.get("remediation"), "alert": alert.labels.get("escalated_alert")}
            severity: Severity = "error" if alert.status == "firing" else "info"
            self.emit([Event(kind, alert.annotations.get("summary", kind), "actions", severity, attrs, now)])
            if self.on_alert is not None:
                self.on_alert(alert)
        return results


__all__: Sequence[str] = [
    "ESCALATED_ALERT",
    "EXHAUSTED_ALERT",
    "Budget",
    "Decision",
    "Healer",
    "Observation",
    "Remediation",
    "RemediationPlan",
    "RemediationState",
    "Remediator",
    "RestartPolicy",
    "Step",
    "backoff_delay",
    "condition",
    "decide",
    "escalation_alert",
    "exhausted_alert",
    "fill",
    "matches",
    "observe",
    "remediate",
]
