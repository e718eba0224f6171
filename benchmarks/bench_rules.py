"""Rules: 10,000 alerting rules over 1,000 series, evaluated from a real store (at scale 1.0).

    .venv/bin/python benchmarks/bench_rules.py [--scale 1.0] [--dir DIR] [--runs 10]

The store holds 10 minutes of 1,000 series at 10 s (750 gauges, 250 counters over 50 hosts x 20 devices).
The rules mix what people write: per-host and per-device thresholds on gauges (avg, max, last), counter
rates summed by host, regular-expression selectors grouped by host, rates of change, and absent checks
(some on hosts that do not exist, which must fire). One evaluation cycle is what the scheduled job runs:
fetch the samples (one query per metric), evaluate every rule, advance the alert states and record the
transitions. Each part is timed over ``--runs`` cycles, each with one new sample per series, after a first
cycle (which records every transition; reported apart). Target (median of the evaluation of all rules):
<= 1 s. The whole cycle is reported too; with these thresholds about 18,000 (rule, series) conditions hold
and up to 12,000 alerts fire at once — a storm, in which per-alert work (states, templated annotations,
events) costs about as much as evaluating. Correctness: 50 rules evaluated one by one agree with the
batch, and every absent rule on a missing host holds (an error fails the run at any scale).
"""

from __future__ import annotations

import random
import sys
from datetime import datetime, timedelta
from typing import Any

from _common import COUNTER, GAUGE, Target, finish, fresh, median, p95, parser, samples, series_labels, table, timed
from _common import workdir as work_directory

from analytics.alerting.evaluate import Evaluation, evaluate, plan_queries
from analytics.alerting.rules import RuleSpec
from analytics.alerting.source import fetch, run_rules
from analytics.alerting.state import AlertStates
from qwq_core.store import LocalStore
from qwq_core.timeutil import floor_time, utcnow

TARGET_S = 1.0
POINTS = 60  # 10 minutes at 10 s
STEP = timedelta(seconds=10)


def naive(moment: datetime) -> datetime:
    """``moment`` as the naive UTC time :func:`_common.samples` takes."""
    return moment.replace(tzinfo=None)


def make_rules(count: int, hosts: list[str], seed: int = 7) -> list[RuleSpec]:
    """``count`` rules in the mix described above, deterministic for ``seed``."""
    rng = random.Random(seed)
    regexes = [f"dev{a}|dev{b}" for a, b in zip(range(0, 20, 2), range(1, 20, 2), strict=True)]
    specs: list[dict[str, Any]] = []
    for index in range(count):
        host = rng.choice(hosts)
        kind = rng.random()
        spec: dict[str, Any] = {"name": f"rule-{index:05d}", "for": rng.choice(["0s", "30s", "5m"])}
        if kind < 0.40:
            spec["query"] = {"metric": f'{GAUGE}{{host="{host}"}}', "agg": rng.choice(["avg", "max", "last"])}
            spec["condition"] = {"kind": "above", "threshold": rng.uniform(0.5, 0.99)}
        elif kind < 0.60:
            device = f"dev{rng.randrange(20)}"
            spec["query"] = {"metric": f'{GAUGE}{{host="{host}",device="{device}"}}', "agg": "last"}
            spec["condition"] = {"kind": rng.choice(["above", "below"]), "threshold": rng.uniform(0.05, 0.95)}
        elif kind < 0.75:
            spec["query"] = {"metric": f'{COUNTER}{{host="{host}"}}', "agg": "rate", "by": ["host"]}
            spec["condition"] = {"kind": "above", "threshold": rng.uniform(10, 300)}
        elif kind < 0.85:
            regex = rng.choice(regexes)
            spec["query"] = {"metric": f'{GAUGE}{{device=~"{regex}"}}', "agg": "max", "by": ["host"]}
            spec["condition"] = {"kind": "above", "threshold": rng.uniform(0.8, 0.99)}
        elif kind < 0.95:
            spec["query"] = {"metric": f'{GAUGE}{{host="{host}"}}'}
            spec["condition"] = {"kind": "rate_of_change", "threshold": rng.uniform(0, 0.001), "direction": "either"}
        else:
            missing = rng.random() < 0.2
            spec["query"] = {"metric": f'{GAUGE}{{host="{"gone-" if missing else ""}{host}"}}'}
            spec["condition"] = {"kind": "absent", "after": "1m"}
        spec["annotations"] = {"summary": "{{ labels.host }} at {{ value | humanize }}"}
        specs.append(spec)
    return [RuleSpec.model_validate(spec) for spec in specs]


def check(store: LocalStore, rules: list[RuleSpec], batch: Evaluation, now: datetime) -> list[str]:
    """Errors: rules evaluated alone that disagree with the batch; absent rules on missing hosts not holding."""
    errors = []
    rows = {(r.rule.name, r.key): (r.value, r.holds) for r in batch.results(holds=None)}
    for rule in random.Random(1).sample(rules, min(50, len(rules))):
        alone = evaluate([rule], fetch(store, [rule], now), now)  # fetched with the rule's own matchers
        single = {(r.rule.name, r.key): (r.value, r.holds) for r in alone.results(holds=None)}
        mine = {key: value for key, value in rows.items() if key[0] == rule.name}
        if single.keys() != mine.keys() or any(
            single[k][1] != mine[k][1] or abs((single[k][0] or 0) - (mine[k][0] or 0)) > 1e-9 for k in single
        ):
            errors.append(f"{rule.name} alone gives {len(single)} rows, in the batch {len(mine)} (or other values)")
    holding = {r.rule.name for r in batch.results()}
    for rule in rules:
        if rule.condition.kind == "absent" and "gone-" in rule.query.metric and rule.name not in holding:
            errors.append(f"{rule.name} (absent, missing host) does not hold")
    return errors


def cycle_parts(store: LocalStore, rules: list[RuleSpec], states: AlertStates, now: datetime) -> dict[str, float]:
    """Seconds of each part of one cycle, run separately."""
    fetch_s, frames = timed(lambda: fetch(store, rules, now))
    evaluate_s, evaluation = timed(lambda: evaluate(rules, frames, now))
    update_s, _ = timed(lambda: states.update(evaluation))
    return {"fetch_s": fetch_s, "evaluate_s": evaluate_s, "update_s": update_s}


def main() -> int:
    cli = parser(__doc__.splitlines()[0])
    cli.add_argument("--runs", type=int, default=10, help="timed cycles (median, p95)")
    args = cli.parse_args()
    series_count = max(40, round(1000 * args.scale))
    rule_count = max(50, round(10_000 * args.scale))
    labels = series_labels(series_count)
    hosts = sorted(labels["host"].unique().to_list())
    end = floor_time(utcnow(), timedelta(seconds=10))
    rules = make_rules(rule_count, hosts)
    with work_directory(args.dir) as work, LocalStore(fresh(work / "rules.duckdb")) as store:
        history = samples(labels, naive(end) - timedelta(seconds=10 * (POINTS - 1)), POINTS, seed=3)
        store.write(history)
        states = AlertStates()
        first_s, first = timed(lambda: run_rules(store, rules, states, end))
        cycles, parts = [], []
        for tick in range(1, args.runs + 1):  # every cycle sees one new sample per series, as in production
            now = end + tick * STEP
            store.write(samples(labels, naive(now), 1, seed=100 + tick))
            parts.append(cycle_parts(store, rules, AlertStates(states.active()), now))
            cycles.append(timed(lambda t=now: run_rules(store, rules, states, t))[0])
        batch = evaluate(rules, fetch(store, rules, now), now)
        errors = check(store, rules, batch, now)
    figures: dict[str, Any] = {
        "rules": rule_count,
        "series": series_count,
        "samples": history.height + len(cycles) * series_count,
        "queries": len(plan_queries(rules)),
        "rows": batch.frame.height,
        "holding": int(batch.frame["holds"].sum()),
        "first_cycle_s": first_s,
        "first_cycle_events": len(first.events),
        "firing": len(first.firing),
        "cycle_median_s": median(cycles),
        "cycle_p95_s": p95(cycles),
        **{name: median([p[name] for p in parts]) for name in ("fetch_s", "evaluate_s", "update_s")},
    }
    report(figures)
    targets = [Target("evaluate_median_s", figures["evaluate_s"], TARGET_S)]
    return finish("rules", args.scale, figures, targets, errors)


def report(figures: dict[str, Any]) -> None:
    table(
        f"{figures['rules']:,} rules over {figures['series']:,} series ({figures['samples']:,} samples in the store)",
        [
            ("queries per cycle", figures["queries"]),
            ("(rule, group) rows", figures["rows"]),
            ("conditions holding", figures["holding"]),
            ("first cycle, s", f"{figures['first_cycle_s']:.3f}  ({figures['first_cycle_events']:,} events recorded)"),
            ("cycle median, s", figures["cycle_median_s"]),
            ("cycle p95, s", figures["cycle_p95_s"]),
            ("  fetch (median), s", figures["fetch_s"]),
            ("  evaluate (median), s", figures["evaluate_s"]),
            ("  update states (median), s", figures["update_s"]),
        ],
    )


if __name__ == "__main__":
    sys.exit(main())
