"""Evaluating rules: from the frames their queries returned to a value and a verdict per (rule, group).

Pure and vectorised. Rules that read the same metric share one query (:func:`plan_queries`: the metric
name and the label matchers all its rules share, over the longest of their windows). Within it, rules
with the same window and per-series reduction share that reduction; each rule's own label matchers then
pick its series — equality matchers by a join of all such rules at once, other matchers once per distinct
set — so the cost grows with the number of (rule, series) pairs, not with rules × polars calls. That is
what lets 10,000 rules over 1,000 series evaluate in well under a second.

An :class:`Evaluation` holds one row per (rule, series or ``by`` group): ``rule`` (index into
``rules``), ``key`` (the group's identity within the rule), ``value``, ``holds`` and one column per label.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import reduce
from typing import Any, Literal

import polars as pl

from analytics.alerting.rules import Combine, RuleSpec, WindowAgg
from qwq_core.selectors import Matcher, Selector
from qwq_core.timeutil import as_utc

__all__ = ["Evaluation", "Result", "evaluate", "fetch_selectors", "plan_queries"]

_META = frozenset({"rule", "value", "key", "holds"})
_SAMPLE = frozenset({"ts", "value"})
_KEY_SEPARATOR, _PAIR_SEPARATOR = "\x1f", "\x1e"


@dataclass(frozen=True)
class Result:
    """One (rule, group): its labels (the series' or the ``by`` labels), value and verdict."""

    rule: RuleSpec
    key: str
    labels: dict[str, str]
    value: float | None
    holds: bool


@dataclass(frozen=True)
class Evaluation:
    """The outcome of evaluating ``rules`` at ``now``.

    ``frame`` has a row per (rule, group); ``errors`` maps the names of rules that could not be evaluated
    (say, a forecast rule without the forecasting module) to the reason.
    """

    rules: tuple[RuleSpec, ...]
    now: datetime
    frame: pl.DataFrame
    errors: Mapping[str, str] = field(default_factory=dict)

    @property
    def label_columns(self) -> list[str]:
        """The frame's label columns."""
        return [c for c in self.frame.columns if c not in _META]

    def results(self, holds: bool | None = True) -> list[Result]:
        """The rows as :class:`Result` objects: those whose condition holds (default), fails, or all (None)."""
        frame = self.frame if holds is None else self.frame.filter(pl.col("holds") == holds)
        labels = self.label_columns
        return [
            Result(
                rule=self.rules[row["rule"]],
                key=row["key"],
                labels={name: row[name] for name in labels if row[name]},
                value=None if row["value"] is None or math.isnan(row["value"]) else row["value"],
                holds=row["holds"],
            )
            for row in frame.iter_rows(named=True)
        ]


# ---- which queries to run --------------------------------------------------------------------------------
def fetch_selectors(rules: Sequence[RuleSpec]) -> list[Selector]:
    """Per rule, the selector its data is fetched with: its metric name and the matchers shared by every
    rule reading that name (a rule without a name is fetched with its own selector)."""
    by_name: dict[str, list[int]] = defaultdict(list)
    for index, rule in enumerate(rules):
        by_name[rule.selector.name or str(rule.selector)].append(index)
    fetched: list[Selector | None] = [None] * len(rules)
    for indices in by_name.values():
        first = rules[indices[0]].selector
        shared = set(first.matchers).intersection(*(rules[i].selector.matchers for i in indices[1:]))
        selector = Selector(first.name, tuple(m for m in first.matchers if m in shared))
        for index in indices:
            fetched[index] = selector if first.name else rules[index].selector
    return [s for s in fetched if s is not None]


def plan_queries(rules: Sequence[RuleSpec]) -> dict[str, timedelta]:
    """The raw-sample queries ``rules`` need: selector text → how far back to read (the longest window)."""
    plan: dict[str, timedelta] = {}
    for rule, selector in zip(rules, fetch_selectors(rules), strict=True):
        text = str(selector)
        plan[text] = max(plan.get(text, timedelta(0)), rule.query.window)
    return plan


# ---- evaluation ------------------------------------------------------------------------------------------
def evaluate(rules: Sequence[RuleSpec], frames: Mapping[str, pl.DataFrame], now: datetime) -> Evaluation:
    """Evaluate ``rules`` at ``now`` over ``frames`` (selector text of :func:`plan_queries` → samples).

    Each frame has ``ts``, ``value`` and the ``name`` and label columns :meth:`Store.query` returns; a
    missing frame means no samples. Windows end at ``now`` (inclusive) and start just after ``now - window``.
    """
    rules, now = tuple(rules), as_utc(now)
    selectors = fetch_selectors(rules)
    shared: dict[tuple[str, timedelta, WindowAgg], list[int]] = defaultdict(list)
    forecasts: list[int] = []
    for index, rule in enumerate(rules):
        if rule.condition.kind == "forecast":
            forecasts.append(index)
        else:
            shared[(str(selectors[index]), rule.query.window, rule.window_agg)].append(index)
    parts = []
    for (text, window, agg), indices in shared.items():
        series = per_series(frames.get(text), now, window, agg)
        parts.append(_rule_values(rules, indices, series, selectors[indices[0]], agg))
    errors: dict[str, str] = {}
    if forecasts:
        part, errors = _forecasts(rules, forecasts, selectors, frames, now)
        parts.append(part)
    frame = pl.concat(parts, how="diagonal_relaxed") if parts else _empty()
    return Evaluation(rules, now, _verdicts(frame, rules), errors)


def _empty() -> pl.DataFrame:
    return pl.DataFrame(schema={"rule": pl.UInt32, "value": pl.Float64})


def _window(frame: pl.DataFrame | None, now: datetime, window: timedelta) -> pl.DataFrame:
    """The samples of ``frame`` in ``(now - window, now]`` with a value, time-ordered; samples sharing a
    timestamp (a retried write) by value, so no result depends on the order rows arrived in."""
    if frame is None or frame.is_empty():
        return pl.DataFrame(schema={"ts": pl.Datetime("us", "UTC"), "value": pl.Float64})
    ts = frame.schema["ts"]
    if isinstance(ts, pl.Datetime) and ts.time_zone is None:
        frame = frame.with_columns(pl.col("ts").dt.replace_time_zone("UTC"))
    value = pl.col("value").cast(pl.Float64)
    return (
        frame.with_columns(value)
        .filter((pl.col("ts") > now - window) & (pl.col("ts") <= now) & value.is_not_null() & value.is_not_nan())
        .sort("ts", "value")
    )


def _reduction(agg: WindowAgg, now: datetime) -> pl.Expr:
    """The expression reducing one series' time-ordered samples to its value."""
    value, ts = pl.col("value"), pl.col("ts")
    span = (ts.last() - ts.first()).dt.total_microseconds() / 1e6
    step = value.diff()
    increase = pl.when(step < 0).then(value).otherwise(step).sum()  # a drop is a counter reset
    several = pl.len() > 1
    reductions: dict[str, pl.Expr] = {
        "avg": value.mean(),
        "min": value.min(),
        "max": value.max(),
        "sum": value.sum(),
        "count": pl.len().cast(pl.Float64),
        "last": value.last(),
        "increase": pl.when(several).then(increase),
        "rate": pl.when(span > 0).then(increase / span),
        "delta": pl.when(several).then(value.last() - value.first()),
        "deriv": pl.when(span > 0).then((value.last() - value.first()) / span),
        "age": (pl.lit(now) - ts.max()).dt.total_microseconds() / 1e6,
    }
    return reductions[agg].cast(pl.Float64).alias("value")


def per_series(frame: pl.DataFrame | None, now: datetime, window: timedelta, agg: WindowAgg) -> pl.DataFrame:
    """One row per series of ``frame`` with samples in the window: ``sid``, ``name``, labels, ``value``."""
    data = _window(frame, now, window)
    keys = [c for c in data.columns if c not in _SAMPLE]
    if data.is_empty():
        schema = {"sid": pl.UInt32, **{k: pl.String for k in keys}, "value": pl.Float64}
        return pl.DataFrame(schema=schema)
    reduced = data.group_by(keys).agg(_reduction(agg, now)) if keys else data.select(_reduction(agg, now))
    return reduced.with_row_index("sid")


def _rule_values(
    rules: tuple[RuleSpec, ...], indices: list[int], series: pl.DataFrame, fetched: Selector, agg: WindowAgg
) -> pl.DataFrame:
    """Rows ``rule, value, <labels>`` for rules ``indices``, which share ``series`` (fetched by ``fetched``)."""
    pairs = _pairs(rules, indices, series, fetched)
    joined = _named(pairs.join(series, on="sid").drop("sid"), fetched)
    out = _grouped(rules, indices, joined)
    if agg == "age":
        out = pl.concat([out, _nothing_at_all(rules, indices, out)], how="diagonal_relaxed")
    return out


def _pairs(rules: tuple[RuleSpec, ...], indices: list[int], series: pl.DataFrame, fetched: Selector) -> pl.DataFrame:
    """``rule, sid`` for every series each rule's matchers (beyond the fetched ones) select."""
    fetched_matchers = set(fetched.matchers)
    partitions: dict[tuple[tuple[str, ...], tuple[Matcher, ...]], list[tuple[int, list[str]]]] = defaultdict(list)
    for index in indices:
        equal: dict[str, str] = {}
        other: list[Matcher] = []
        for matcher in rules[index].selector.matchers:
            if matcher in fetched_matchers:
                continue
            if matcher.op == "=" and matcher.label not in equal:
                equal[matcher.label] = matcher.value
            else:
                other.append(matcher)
        labels = tuple(sorted(equal))
        partitions[(labels, tuple(other))].append((index, [equal[label] for label in labels]))
    columns = set(series.columns)
    found = [
        _partition_pairs(series, columns, labels, other, members) for (labels, other), members in partitions.items()
    ]
    return pl.concat(found) if found else pl.DataFrame(schema={"rule": pl.UInt32, "sid": pl.UInt32})


def _partition_pairs(
    series: pl.DataFrame,
    columns: set[str],
    labels: tuple[str, ...],
    other: tuple[Matcher, ...],
    members: list[tuple[int, list[str]]],
) -> pl.DataFrame:
    """Pairs for rules with equality matchers on ``labels`` (values per member) and matchers ``other``."""
    if other:
        series = series.filter(reduce(lambda a, b: a & b, (m.expr(columns) for m in other)))
    wanted = pl.DataFrame(
        {
            "rule": [index for index, _ in members],
            **{label: [v[i] for _, v in members] for i, label in enumerate(labels)},
        },
        schema={"rule": pl.UInt32, **{label: pl.String for label in labels}},
    )
    if not labels:
        return wanted.join(series.select("sid"), how="cross")
    keyed = series.select(
        "sid", *((pl.col(lb).fill_null("") if lb in columns else pl.lit("")).alias(lb) for lb in labels)
    )
    return wanted.join(keyed, on=list(labels)).select("rule", "sid")


_COMBINE: dict[Combine, Callable[[pl.Expr], pl.Expr]] = {
    "avg": lambda v: v.mean(),
    "min": lambda v: v.min(),
    "max": lambda v: v.max(),
    "sum": lambda v: v.sum(),
    "count": lambda v: v.count().cast(pl.Float64),
}


def _grouped(rules: tuple[RuleSpec, ...], indices: list[int], joined: pl.DataFrame) -> pl.DataFrame:
    """Per-series rows for rules without ``by``; per (rule, group) combined rows for rules with one."""
    by_partition: dict[tuple[tuple[str, ...], Combine] | None, list[int]] = defaultdict(list)
    for index in indices:
        by = rules[index].query.by
        by_partition[None if by is None else (by, rules[index].combine)].append(index)
    if list(by_partition) == [None]:
        return joined
    parts = []
    for partition, members in by_partition.items():
        rows = joined.filter(pl.col("rule").is_in(members))
        if partition is None:
            parts.append(rows)
            continue
        by, combine = partition
        rows = rows.with_columns(pl.lit(None, pl.String).alias(b) for b in by if b not in rows.columns)
        value = pl.col("value")
        combined = pl.when(value.count() > 0).then(_COMBINE[combine](value)).alias("value")
        parts.append(rows.group_by("rule", *by).agg(combined))
    return pl.concat(parts, how="diagonal_relaxed")


def _nothing_at_all(rules: tuple[RuleSpec, ...], indices: list[int], out: pl.DataFrame) -> pl.DataFrame:
    """For absent rules that matched no series at all: one row labelled with their equality matchers."""
    seen = set(out["rule"].unique().to_list())
    rows: list[dict[str, Any]] = []
    for index in indices:
        if index not in seen:
            equal = {m.label: m.value for m in rules[index].selector.matchers if m.op == "=" and m.value}
            rows.append({"rule": index, "value": None, **equal})
    if not rows:
        return _empty()
    return pl.DataFrame(rows, infer_schema_length=None).with_columns(
        pl.col("rule").cast(pl.UInt32), pl.col("value").cast(pl.Float64)
    )


# ---- forecasts -------------------------------------------------------------------------------------------
_FORECAST_DIRECTION: dict[str, Literal["rising", "falling", "auto"]] = {
    "up": "rising",
    "down": "falling",
    "either": "auto",
}


def _forecasts(
    rules: tuple[RuleSpec, ...],
    indices: list[int],
    selectors: list[Selector],
    frames: Mapping[str, pl.DataFrame],
    now: datetime,
) -> tuple[pl.DataFrame, dict[str, str]]:
    """Rows ``rule, value, <labels>``: seconds from ``now`` until the forecast crosses the threshold (null if
    it does not within the horizon); rules whose forecast fails are reported in the errors instead."""
    try:
        from analytics.forecast import time_to_threshold  # heavy (statsmodels): only when a rule needs it
    except ImportError as exc:
        reason = f"forecast conditions need analytics.forecast: {exc}"
        return _empty(), {rules[i].name: reason for i in indices}
    parts: list[pl.DataFrame] = []
    errors: dict[str, str] = {}
    for index in indices:
        rule, condition = rules[index], rules[index].condition
        assert condition.threshold is not None and condition.horizon is not None
        data = rule.selector.filter(_window(frames.get(str(selectors[index])), now, rule.query.window))
        if data.is_empty():
            continue
        try:
            crossings = time_to_threshold(
                data, condition.threshold, horizon=condition.horizon, direction=_FORECAST_DIRECTION[condition.direction]
            )
        except Exception as exc:  # one rule's model failing must not stop the other rules
            errors[rule.name] = f"forecast failed: {exc}"
            continue
        labels = [c for c in data.columns if c not in _SAMPLE]
        seconds = ((pl.col("crossing_ts") - pl.lit(now)).dt.total_microseconds() / 1e6).clip(lower_bound=0)
        rows = crossings.select(pl.lit(index, pl.UInt32).alias("rule"), seconds.alias("value"), *labels)
        parts.append(_named(rows, selectors[index]))
    return (pl.concat(parts, how="diagonal_relaxed") if parts else _empty()), errors


def _named(rows: pl.DataFrame, fetched: Selector) -> pl.DataFrame:
    """``rows`` without the ``name`` column — kept as label ``metric`` when a wildcard may match several."""
    if "name" not in rows.columns:
        return rows
    wildcard = fetched.name is None or any(c in fetched.name for c in "*?")
    keep = wildcard and "metric" not in rows.columns
    return rows.rename({"name": "metric"}) if keep else rows.drop("name")


# ---- verdicts --------------------------------------------------------------------------------------------
def _verdicts(frame: pl.DataFrame, rules: tuple[RuleSpec, ...]) -> pl.DataFrame:
    """Add ``holds`` (the rule's condition on ``value``) and ``key`` (the row's labels, canonical)."""
    labels = sorted(c for c in frame.columns if c not in _META)
    frame = frame.with_columns(pl.col(label).cast(pl.String) for label in labels)
    index = frame["rule"]
    param = {
        "kind": pl.Series([r.condition.kind for r in rules], dtype=pl.String),
        "threshold": pl.Series([_threshold(r) for r in rules], dtype=pl.Float64),
        "direction": pl.Series([r.condition.direction for r in rules], dtype=pl.String),
    }
    params = pl.DataFrame({name: series.gather(index) for name, series in param.items()})
    kind, threshold, value = pl.col("kind"), pl.col("threshold"), pl.col("value")
    direction = pl.col("direction")
    holds = (
        pl.when(kind.is_in(["above", "anomaly"]))
        .then(value > threshold)
        .when(kind == "below")
        .then(value < threshold)
        .when(kind == "rate_of_change")
        .then(
            pl.when(direction == "up")
            .then(value > threshold)
            .when(direction == "down")
            .then(value < -threshold)
            .otherwise(value.abs() > threshold)
        )
        .when(kind == "absent")
        .then(value.is_null() | (value > threshold))
        .when(kind == "forecast")
        .then(value.is_not_null() & (value <= threshold))
        .otherwise(False)
        .fill_null(False)
    )
    key = (
        pl.concat_str(
            [pl.when(pl.col(label) != "").then(pl.lit(label + _PAIR_SEPARATOR) + pl.col(label)) for label in labels],
            separator=_KEY_SEPARATOR,
            ignore_nulls=True,
        )
        if labels
        else pl.lit("")
    )
    verdicts = pl.concat([frame, params], how="horizontal").select(
        "rule", key.fill_null("").alias("key"), "value", holds.alias("holds"), *labels
    )
    return verdicts.sort("rule", "key")


def _threshold(rule: RuleSpec) -> float:
    """What ``value`` is compared with: the threshold, or the seconds of ``after``/``horizon``."""
    condition = rule.condition
    if condition.kind == "absent":
        return rule.absent_after.total_seconds()
    if condition.kind == "forecast":
        assert condition.horizon is not None
        return condition.horizon.total_seconds()
    assert condition.threshold is not None
    return condition.threshold
