"""Alert noise: a storm of 10,000 alert events in one minute across 50 hosts, through the pipeline.

    .venv/bin/python benchmarks/bench_alert_noise.py [--scale 1.0] [--seed 7]

Every host has one problem, cycling through five kinds, each noisy in its own way:

- **outage** — ``HostDown`` (critical) plus ``ContainerDown`` for its 4 containers and ``SiteDown`` for its
  2 sites (site alerts carry no host label; the topology ties them to the host), all re-sent: duplicates,
  and symptoms that inhibition must mute;
- **disk** — ``DiskFull`` re-sent with a new value each time (partial duplicates);
- **flapping** — ``HighLoad`` switching between firing and resolved every few seconds;
- **crash loop** — ``ContainerRestarting`` for 2 containers, the restart count in the annotations rising;
- **cpu** — ``HighCPU`` re-sent unchanged.

The events are spread over the first minute (each alert's first report in the first 10 s); at 15 minutes
every alert resolves. The pipeline (grouped by host and site, critical alerts also to a pager, default
flap detection and inhibition, the generator's topology) is ticked every second for two minutes, then every
5 s up to 40 minutes. Targets: notifications ≤ 5 % of raw events, and the storm processed faster than it
arrived. Checked at every scale: every problem is notified (firing) at least once and becomes exactly one
incident, and no alert muted by a firing ``HostDown`` is ever notified firing.
"""

from __future__ import annotations

import random
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from _common import Target, finish, parser, table, timed

from analytics.alerting.model import Alert, Notification
from analytics.alerting.pipeline import Pipeline, PipelineSpec

T0 = datetime(2026, 1, 1, tzinfo=UTC)
KINDS = ("outage", "disk", "flapping", "crashloop", "cpu")
NAMES = {"disk": "DiskFull", "flapping": "HighLoad", "crashloop": "ContainerRestarting", "cpu": "HighCPU"}
STORM_S, RESOLVE_AT_S, END_S = 60, 900, 2400
CONTAINERS, SITES = 4, 2
SPEC = {
    "route": {
        "receiver": "ops",
        "group_by": ["host", "site"],
        "routes": [
            {"matchers": ['severity="critical"'], "receiver": "pager", "continue": True},
            {"receiver": "ops"},
        ],
    }
}


@dataclass
class Problem:
    """One distinct incident of the generated stream: a kind of trouble on a host, and its alerts."""

    host: str
    kind: str
    alerts: list[Alert] = field(default_factory=list)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def problem(index: int) -> Problem:
    """Host ``index``'s problem; kinds in turn."""
    host, kind = f"host-{index:02d}", KINDS[index % len(KINDS)]
    found = Problem(host, kind)
    warning = {"host": host, "severity": "warning"}
    if kind == "outage":
        found.alerts.append(Alert({**warning, "alertname": "HostDown", "severity": "critical"}, T0))
        for c in range(CONTAINERS):
            found.alerts.append(Alert({**warning, "alertname": "ContainerDown", "container": f"{host}-c{c}"}, T0))
        for s in range(SITES):
            found.alerts.append(Alert({"alertname": "SiteDown", "site": f"{host}-s{s}", "severity": "error"}, T0))
    elif kind == "crashloop":
        for c in range(2):
            labels = {
                **warning,
                "alertname": NAMES[kind],
                "compose_project": f"{host}-app",
                "container": f"{host}-c{c}",
            }
            found.alerts.append(Alert(labels, T0))
    else:
        found.alerts.append(Alert({**warning, "alertname": NAMES[kind]}, T0))
    return found


def topology(hosts: int) -> list[tuple[str, str]]:
    """host → container → site edges: each site is served by its host's first container."""
    edges = []
    for i in range(hosts):
        host = f"host-{i:02d}"
        edges += [(f"host={host}", f"container={host}-c{c}") for c in range(CONTAINERS)]
        edges += [(f"container={host}-c0", f"site={host}-s{s}") for s in range(SITES)]
    return edges


def storm(found: list[Problem], events: int, rng: random.Random) -> list[tuple[float, Alert]]:
    """``events`` timed reports over the first minute, first reports in the first 10 s, sorted by time."""
    alerts = [(p.kind, a) for p in found for a in p.alerts]
    timed_reports = [(rng.uniform(0, 10), kind, a) for kind, a in alerts]
    timed_reports += [(rng.uniform(0, STORM_S), *rng.choice(alerts)) for _ in range(max(0, events - len(alerts)))]
    timed_reports.sort(key=lambda item: item[0])
    seen: dict[str, int] = {}
    out = []
    for t, kind, alert in timed_reports:
        n = seen[alert.fingerprint] = seen.get(alert.fingerprint, -1) + 1
        out.append((t, variant(kind, alert, n, rng)))
    return out


def variant(kind: str, alert: Alert, n: int, rng: random.Random) -> Alert:
    """The ``n``-th report of ``alert`` as its kind of trouble makes it look."""
    if kind == "disk":
        return replace(alert, value=round(0.9 + n * 0.0001, 4))
    if kind == "flapping":
        return replace(alert, status="firing" if n % 2 == 0 else "resolved", value=rng.random())
    if kind == "crashloop":
        return replace(alert, annotations={"summary": f"restarted {n} times"})
    return alert


def ticks() -> Iterator[float]:
    """Every second for two minutes, then every 5 s."""
    yield from range(0, 120)
    yield from range(120, END_S + 1, 5)


@dataclass
class Outcome:
    """What came out of the pipeline."""

    notifications: list[Notification]
    process_s: float
    storm_s: float
    pipeline: Pipeline


def run(found: list[Problem], stream: list[tuple[float, Alert]], edges: list[tuple[str, str]]) -> Outcome:
    """Feed the stream (batched per tick), resolve everything at RESOLVE_AT_S, tick to END_S."""
    spec = PipelineSpec.model_validate({**SPEC, "incidents": {"topology": edges}})
    pipeline = Pipeline(spec)
    resolves = [(RESOLVE_AT_S, replace(a, status="resolved")) for p in found for a in p.alerts]
    pending = stream + resolves
    notifications: list[Notification] = []
    storm_s = 0.0

    def advance() -> None:
        nonlocal storm_s, pending
        cursor = 0
        for tick in ticks():
            end = cursor
            while end < len(pending) and pending[end][0] <= tick:
                end += 1
            batch = [alert for _, alert in pending[cursor:end]]
            cursor = end
            spent, notes = timed(lambda b=batch, t=tick: (pipeline.ingest(b, at(t)), pipeline.tick(at(t)))[1])
            if tick <= STORM_S:
                storm_s += spent
            notifications.extend(notes)
            pipeline.drain_events()

    process_s, _ = timed(advance)
    return Outcome(notifications, process_s, storm_s, pipeline)


def check(found: list[Problem], outcome: Outcome) -> list[str]:
    """Correctness: every problem notified firing, and correlated into one incident of its own; nothing a
    firing HostDown mutes notified firing."""
    errors = []
    incidents = [i for i in outcome.pipeline.incidents() if i.merged_into is None]
    holding = {fp: i.id for i in incidents for fp in i.alerts}
    per_problem = [{holding.get(a.fingerprint) for a in p.alerts} for p in found]
    if len(incidents) != len(found) or any(len(ids) != 1 or None in ids for ids in per_problem):
        errors.append(f"{len(found)} problems were correlated into {len(incidents)} incidents")
    notified = {a.fingerprint for n in outcome.notifications for a in n.firing}
    for p in found:
        if not notified & {a.fingerprint for a in p.alerts}:
            errors.append(f"{p.kind} on {p.host} was never notified")
        if p.kind == "outage":
            muted = {a.fingerprint for a in p.alerts if a.name != "HostDown"}
            if leaked := notified & muted:
                errors.append(f"{len(leaked)} alerts of {p.host} notified although its HostDown fired")
    return errors


def main() -> int:
    cli = parser(__doc__.splitlines()[0])
    cli.add_argument("--seed", type=int, default=7, help="random seed of the generated stream")
    args = cli.parse_args()
    hosts = max(len(KINDS), round(50 * args.scale))
    found = [problem(i) for i in range(hosts)]
    stream = storm(found, round(10_000 * args.scale), random.Random(args.seed))
    outcome = run(found, stream, topology(hosts))
    raw = len(stream) + sum(len(p.alerts) for p in found)
    sent = len(outcome.notifications)
    totals = outcome.pipeline.registry.totals
    ratio = sent / raw
    figures = {
        "hosts": hosts,
        "problems": len(found),
        "raw_events": raw,
        "storm_events": len(stream),
        "notifications": sent,
        "firing_notifications": sum(1 for n in outcome.notifications if n.firing),
        "resolve_only_notifications": sum(1 for n in outcome.notifications if not n.firing),
        "ratio": round(ratio, 5),
        "duplicates": totals.duplicates,
        "updates": totals.updates,
        "incidents": sum(1 for i in outcome.pipeline.incidents() if i.merged_into is None),
        "process_s": round(outcome.process_s, 3),
        "storm_process_s": round(outcome.storm_s, 3),
        "events_per_s": round(raw / outcome.process_s),
    }
    table("alert noise", [(k.replace("_", " "), v) for k, v in figures.items()])
    targets = [
        Target("notifications / raw events", ratio, 0.05),
        Target("storm processing s (arrived in 60 s)", outcome.storm_s, STORM_S),
    ]
    return finish("alert_noise", args.scale, figures, targets, check(found, outcome))


if __name__ == "__main__":
    sys.exit(main())
