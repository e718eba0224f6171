"""Properties of rule evaluation, alert states and intake.

- The vectorised evaluation equals a naive one (each rule on its own, series by series, in plain Python),
  whatever the data, the rules, the order of rows and the order of rules.
- The state machine follows Prometheus' rules for any sequence of outcomes, and replaying its events
  (:func:`restore`) gives back the same state at every step.
- An Alertmanager webhook built from alerts parses back into the same alerts.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analytics.alerting.evaluate import Evaluation, evaluate, plan_queries
from analytics.alerting.intake import parse_alerts
from analytics.alerting.model import Alert
from analytics.alerting.rules import RuleSpec
from analytics.alerting.state import AlertStates, restore
from qwq_core.selectors import Selector

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
WINDOW = timedelta(minutes=5)

# ---- data and rules ------------------------------------------------------------------------------------
series_st = st.fixed_dictionaries(
    {
        "name": st.sampled_from(["m", "n"]),
        "host": st.sampled_from(["a", "b", "c"]),
        "dev": st.sampled_from(["x", "y", None]),
    }
)


@st.composite
def frames(draw: st.DrawFn) -> pl.DataFrame:
    """Samples of a few series: integer values, some outside the window, some sharing a timestamp (a retried
    write stores a sample twice)."""
    rows = []
    # By label name: fixed_dictionaries does not promise one key order, so ``tuple(s.values())`` would not do.
    distinct = st.lists(series_st, min_size=0, max_size=6, unique_by=lambda s: (s["name"], s["host"], s["dev"]))
    for labels in draw(distinct):
        offsets = draw(st.lists(st.integers(-30, 400), min_size=1, max_size=8))
        for offset in offsets:
            value = draw(st.integers(-5, 20).map(float))
            rows.append({**labels, "ts": NOW - timedelta(seconds=offset), "value": value})
    schema = {
        "name": pl.String,
        "host": pl.String,
        "dev": pl.String,
        "ts": pl.Datetime("us", "UTC"),
        "value": pl.Float64,
    }
    return pl.DataFrame(rows, schema=schema)


matcher_st = st.sampled_from(
    ['host="a"', 'host!="b"', 'host=~"a|c"', 'dev="x"', 'dev=""', 'dev!~"y"', 'host="a",dev="y"', 'dev="z"']
)
AGGS = ["avg", "min", "max", "sum", "count", "last", "rate", "increase", "delta", "deriv"]


@st.composite
def shapes(draw: st.DrawFn) -> dict[str, Any]:
    """A rule's aggregation, grouping and combination."""
    shape: dict[str, Any] = {"agg": draw(st.sampled_from(AGGS))}
    by = draw(st.sampled_from([None, [], ["host"], ["dev"], ["host", "dev"]]))
    if by is not None:
        shape["by"] = by
        shape["combine"] = draw(st.sampled_from([None, "avg", "min", "max", "sum", "count"]))
    return shape


@st.composite
def rules(draw: st.DrawFn) -> list[RuleSpec]:
    """Up to 8 rules; most share one of two shapes, so they share evaluation work as real rule sets do."""
    common = draw(st.lists(shapes(), min_size=2, max_size=2))
    specs = []
    for index in range(draw(st.integers(1, 8))):
        matchers = draw(st.lists(matcher_st, max_size=2))
        metric = draw(st.sampled_from(["m", "n", "m*"])) + "{" + ",".join(matchers) + "}"
        shape = draw(st.one_of(st.sampled_from(common), shapes()))
        kind = draw(st.sampled_from(["above", "below"]))
        threshold = draw(st.integers(-3, 15)) + 0.25  # never equal to an integer value or a mean of two
        specs.append(
            RuleSpec.model_validate(
                {
                    "name": f"r{index}",
                    "query": {"metric": metric, **shape},
                    "condition": {"kind": kind, "threshold": threshold},
                }
            )
        )
    return specs


# ---- the naive evaluation ------------------------------------------------------------------------------
def reduce_series(agg: str, points: list[tuple[datetime, float]]) -> float | None:
    values = [v for _, v in points]
    span = (points[-1][0] - points[0][0]).total_seconds()
    increase = sum(b if b < a else b - a for a, b in zip(values, values[1:], strict=False))
    change = values[-1] - values[0]
    reducers: dict[str, Callable[[], float | None]] = {
        "avg": lambda: sum(values) / len(values),
        "min": lambda: min(values),
        "max": lambda: max(values),
        "sum": lambda: sum(values),
        "count": lambda: float(len(values)),
        "last": lambda: values[-1],
        "increase": lambda: increase if len(values) > 1 else None,
        "rate": lambda: increase / span if span > 0 else None,
        "delta": lambda: change if len(values) > 1 else None,
        "deriv": lambda: change / span if span > 0 else None,
    }
    return reducers[agg]()


COMBINE: dict[str, Callable[[list[float]], float]] = {
    "avg": lambda v: sum(v) / len(v),
    "min": min,
    "max": max,
    "sum": sum,
    "count": lambda v: float(len(v)),
}

Row = tuple[str, tuple[tuple[str, str], ...]]


def naive(specs: list[RuleSpec], data: pl.DataFrame) -> dict[Row, float | None]:
    """(rule, labels) → value, computed rule by rule over the raw rows."""
    out: dict[Row, float | None] = {}
    for spec in specs:
        rows = spec.selector.filter(data).filter((pl.col("ts") > NOW - WINDOW) & (pl.col("ts") <= NOW))
        per_series: dict[tuple[tuple[str, str], ...], list[tuple[datetime, float]]] = defaultdict(list)
        for row in rows.sort("ts", "value").iter_rows(named=True):
            labels = {"host": row["host"], "dev": row["dev"]}
            if "*" in (spec.selector.name or ""):
                labels["metric"] = row["name"]
            per_series[tuple(sorted((k, v) for k, v in labels.items() if v))].append((row["ts"], row["value"]))
        values = {labels: reduce_series(spec.window_agg, points) for labels, points in per_series.items()}
        if spec.query.by is None:
            out.update({(spec.name, labels): value for labels, value in values.items()})
            continue
        groups: dict[tuple[tuple[str, str], ...], list[float]] = defaultdict(list)
        for labels, value in values.items():
            group = tuple((k, v) for k, v in labels if k in spec.query.by)
            groups.setdefault(group, [])
            if value is not None:
                groups[group].append(value)
        for group, members in groups.items():
            out[(spec.name, group)] = COMBINE[spec.combine](members) if members else None
    return out


def vectorised(specs: list[RuleSpec], data: pl.DataFrame) -> Evaluation:
    frames = {text: Selector.parse(text).filter(data) for text in plan_queries(specs)}
    return evaluate(specs, frames, NOW)


def holds(spec: RuleSpec, value: float | None) -> bool:
    threshold = spec.condition.threshold
    assert threshold is not None
    if value is None:
        return False
    return value > threshold if spec.condition.kind == "above" else value < threshold


@pytest.mark.slow
@settings(max_examples=150, deadline=None)
@given(data=frames(), specs=rules(), shuffle=st.randoms(use_true_random=False))
def test_vectorised_evaluation_equals_the_naive_one(data: pl.DataFrame, specs: list[RuleSpec], shuffle: Any) -> None:
    expected = naive(specs, data)
    order = list(range(data.height))
    shuffle.shuffle(order)
    permuted = specs[:]
    shuffle.shuffle(permuted)
    evaluation = vectorised(permuted, data[order] if order else data)
    got = {(r.rule.name, tuple(sorted(r.labels.items()))): r for r in evaluation.results(holds=None)}
    assert got.keys() == expected.keys()
    by_name = {spec.name: spec for spec in specs}
    for row, value in expected.items():
        result = got[row]
        if value is None:
            assert result.value is None, row
        else:
            assert result.value is not None and math.isclose(result.value, value, rel_tol=1e-9, abs_tol=1e-9), row
        assert result.holds == holds(by_name[row[0]], value), row


# ---- the state machine ---------------------------------------------------------------------------------
def one_row(spec: RuleSpec, now: datetime, condition: bool | None) -> Evaluation:
    """An evaluation of ``spec`` whose single group holds, fails, or has no data (None)."""
    rows = [] if condition is None else [{"rule": 0, "key": "host\x1ea", "value": 1.0, "holds": condition, "host": "a"}]
    schema = {"rule": pl.UInt32, "key": pl.String, "value": pl.Float64, "holds": pl.Boolean, "host": pl.String}
    return Evaluation((spec,), now, pl.DataFrame(rows, schema=schema))


@settings(max_examples=200, deadline=None)
@given(
    for_steps=st.integers(0, 3),
    keep_steps=st.integers(0, 3),
    outcomes=st.lists(st.sampled_from([True, False, None]), min_size=1, max_size=25),
)
def test_states_follow_prometheus_and_replay_from_events(
    for_steps: int, keep_steps: int, outcomes: list[bool | None]
) -> None:
    step = timedelta(seconds=10)
    spec = RuleSpec.model_validate(
        {
            "name": "R",
            "for": step * for_steps,
            "keep_firing_for": step * keep_steps,
            "query": {"metric": "m"},
            "condition": {"kind": "above", "threshold": 0},
        }
    )
    states, events = AlertStates(), []
    phase, since, last_held = "inactive", NOW, NOW  # the reference model
    for i, outcome in enumerate(outcomes):
        now = NOW + step * i
        update = states.update(one_row(spec, now, outcome))
        events += update.events
        expected_kinds = []
        if outcome:
            if phase == "inactive":
                phase, since = "pending", now
                if for_steps:
                    expected_kinds.append("alert.pending")
            if phase == "pending" and now - since >= step * for_steps:
                phase = "firing"
                expected_kinds.append("alert.firing")
            last_held = now
        elif phase == "pending":
            phase = "inactive"
            expected_kinds.append("alert.inactive")
        elif phase == "firing" and now - last_held >= step * keep_steps:
            phase = "inactive"
            expected_kinds.append("alert.resolved")
        assert [e.kind for e in update.events] == expected_kinds
        assert len(update.firing) == (phase == "firing")
        assert len(update.resolved) == ("alert.resolved" in expected_kinds)
        assert [a.phase for a in states.active()] == ([] if phase == "inactive" else [phase])
        if phase != "inactive":
            assert states.active()[0].active_since == since
        replayed = restore(events).active()
        assert [(a.rule, a.key, a.phase, a.active_since, a.fired_at) for a in replayed] == [
            (a.rule, a.key, a.phase, a.active_since, a.fired_at) for a in states.active()
        ]


# ---- intake ----------------------------------------------------------------------------------------------
label_names = st.from_regex(r"[a-zA-Z_][a-zA-Z0-9_]{0,8}", fullmatch=True)
texts = st.text(min_size=1, max_size=20)
moments = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)).map(
    lambda t: t.replace(microsecond=t.microsecond)
)


@st.composite
def alerts(draw: st.DrawFn) -> Alert:
    status = draw(st.sampled_from(["firing", "resolved"]))
    starts = draw(moments)
    return Alert(
        labels=draw(st.dictionaries(label_names, texts, min_size=1, max_size=4)),
        starts_at=starts,
        status=status,
        annotations=draw(st.dictionaries(label_names, texts, max_size=3)),
        ends_at=starts + timedelta(seconds=draw(st.integers(0, 10**6))) if status == "resolved" else None,
        source="alertmanager",
        generator_url=draw(st.sampled_from(["", "http://prometheus:9090/graph"])),
    )


def webhook(sent: list[Alert]) -> dict[str, Any]:
    """The body Alertmanager would post for ``sent``, through JSON and back."""
    body = {
        "version": "4",
        "status": "firing",
        "receiver": "qwq",
        "alerts": [
            {
                "status": a.status,
                "labels": dict(a.labels),
                "annotations": dict(a.annotations),
                "startsAt": a.starts_at.isoformat().replace("+00:00", "Z"),
                "endsAt": a.ends_at.isoformat() if a.ends_at else "0001-01-01T00:00:00Z",
                "generatorURL": a.generator_url,
                "fingerprint": a.fingerprint,
            }
            for a in sent
        ],
    }
    decoded: dict[str, Any] = json.loads(json.dumps(body))
    return decoded


@settings(max_examples=100, deadline=None)
@given(sent=st.lists(alerts(), max_size=5))
def test_an_alertmanager_webhook_parses_back_into_its_alerts(sent: list[Alert]) -> None:
    received = parse_alerts(webhook(sent), NOW)
    assert received == sent
    assert [a.fingerprint for a in received] == [a.fingerprint for a in sent]
