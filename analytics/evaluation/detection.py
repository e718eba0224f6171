"""Scoring anomaly flags against labelled windows, with a NAB-like window rule.

A labelled frame holds the detector's input (``name``, ``ts``, ``value``, string label columns) plus the
truth columns :data:`TRUTH_COLUMNS`: the series' ``kind`` (:data:`NONE` for a series without anomalies),
and per point whether it lies in an anomaly ``window`` (``label``) and that window's ``window_start`` and
``window_end`` (null outside). One series holds anomalies of one kind. The flags come from a detector:
the same series and times with a Boolean ``is_anomaly``.

The rule, the same for every detector:

- a window ``[start, end]`` is *detected* when a flagged point lies in ``[start, end + tolerance]``; the
  first such point gives the detection delay, in seconds and in the series' points from ``start``;
- a flagged point outside every such range is a *false positive*, counted once per contiguous run of
  flagged points (so a detector that stays on for an hour is charged one false alarm, not sixty);
- flags in the first ``probation`` share of each series (its warm-up) are ignored; no window lies there.

Per kind, recall is the share of its windows detected and precision counts the false positives of the
series of that kind; the ``all`` row adds the series of kind :data:`NONE`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import polars as pl

TRUTH_COLUMNS = ("kind", "label", "window_start", "window_end")
OUTPUT_COLUMNS = ("anomaly_score", "is_anomaly")
NONE = "none"
ALL = "all"
_US = 1_000_000


@dataclass(frozen=True)
class Rule:
    """How flags are matched to windows: the lateness allowed after a window, and the warm-up share ignored."""

    tolerance: timedelta
    probation: float = 0.5


@dataclass(frozen=True)
class Matches:
    """Every window with whether and when it was detected, and every false-positive run."""

    windows: pl.DataFrame
    false_positives: pl.DataFrame


def series_keys(frame: pl.DataFrame) -> list[str]:
    """The columns that identify a series: all but time, value, truth and detector output."""
    skip = {"ts", "value", *TRUTH_COLUMNS, *OUTPUT_COLUMNS}
    return [column for column in frame.columns if column not in skip]


def detector_input(truth: pl.DataFrame) -> pl.DataFrame:
    """A labelled frame without its truth columns: what a detector is given."""
    return truth.drop(TRUTH_COLUMNS)


def match(truth: pl.DataFrame, flags: pl.DataFrame, rule: Rule) -> Matches:
    """Match ``flags`` (``is_anomaly`` per series and time) to the windows of ``truth`` under ``rule``."""
    keys = series_keys(truth)
    ids = truth.select(keys).unique(maintain_order=True).with_row_index("series_id")
    points = _points(truth, flags, ids, keys, rule)
    found = _windows(points, rule)
    assigned = _assign(points, found)
    detected = _detections(found, assigned)
    runs = _false_positive_runs(assigned)
    named = ids.select("series_id", *keys)
    return Matches(
        windows=named.join(detected, on="series_id").drop("series_id"),
        false_positives=named.join(runs, on="series_id").drop("series_id"),
    )


def _points(truth: pl.DataFrame, flags: pl.DataFrame, ids: pl.DataFrame, keys: list[str], rule: Rule) -> pl.DataFrame:
    """Truth points by series id and position, with ``flag`` = flagged after the series' probation."""
    flagged = (
        flags.select(*keys, "ts", "is_anomaly")
        .join(ids, on=keys, nulls_equal=True)
        .select("series_id", "ts", "is_anomaly")
        .unique(["series_id", "ts"], keep="first")
    )
    micros = pl.col("ts").dt.epoch("us")
    span = micros.max() - micros.min()
    return (
        truth.join(ids, on=keys, nulls_equal=True)
        .select("series_id", "ts", "kind", "window_start", "window_end")
        .join(flagged, on=["series_id", "ts"], how="left")
        .sort("series_id", "ts")
        .with_columns(
            position=pl.int_range(pl.len()).over("series_id"),
            flag=pl.col("is_anomaly").fill_null(False)
            & (micros >= micros.min() + span * rule.probation).over("series_id"),
        )
        .drop("is_anomaly")
    )


def _windows(points: pl.DataFrame, rule: Rule) -> pl.DataFrame:
    """The labelled windows of each series, with ``reach`` = end + tolerance and the position of the start."""
    found = (
        points.filter(pl.col("window_start").is_not_null())
        .group_by("series_id", "window_start")
        .agg(pl.col("kind").first(), pl.col("window_end").first())
        .with_columns(reach=pl.col("window_end") + rule.tolerance)
        .sort("window_start")
    )
    starts = points.select("series_id", "ts", start_position="position").sort("ts")
    return found.join_asof(
        starts, left_on="window_start", right_on="ts", by="series_id", strategy="forward", check_sortedness=False
    ).drop("ts")


def _assign(points: pl.DataFrame, found: pl.DataFrame) -> pl.DataFrame:
    """Points with ``window`` = the start of the window whose range holds the flagged point (null if none)."""
    latest = found.select("series_id", "reach", window="window_start").sort("window")
    return (
        points.sort("ts")
        .join_asof(
            latest,
            left_on="ts",
            right_on="window",
            by="series_id",
            strategy="backward",
            coalesce=False,
            check_sortedness=False,
        )
        .with_columns(window=pl.when(pl.col("flag") & (pl.col("ts") <= pl.col("reach"))).then("window"))
        .drop("reach")
        .sort("series_id", "ts")
    )


def _detections(found: pl.DataFrame, assigned: pl.DataFrame) -> pl.DataFrame:
    """Each window with ``detected``, ``detected_at`` and the delay in seconds and in points."""
    first = (
        assigned.filter(pl.col("window").is_not_null())
        .group_by("series_id", "window")
        .agg(detected_at=pl.col("ts").min(), detected_position=pl.col("position").min())
    )
    return (
        found.join(first, left_on=["series_id", "window_start"], right_on=["series_id", "window"], how="left")
        .with_columns(
            detected=pl.col("detected_at").is_not_null(),
            delay_s=(pl.col("detected_at") - pl.col("window_start")).dt.total_microseconds() / _US,
            delay_points=pl.col("detected_position") - pl.col("start_position"),
        )
        .select("series_id", "kind", "window_start", "window_end", "detected", "detected_at", "delay_s", "delay_points")
        .sort("series_id", "window_start")
    )


def _false_positive_runs(assigned: pl.DataFrame) -> pl.DataFrame:
    """One row per contiguous run of flagged points outside every window: series, series kind, first time."""
    outside = pl.col("flag") & pl.col("window").is_null()
    return (
        assigned.with_columns(
            series_kind=pl.col("kind").first().over("series_id"),
            starts_run=outside & ~outside.shift(1, fill_value=False).over("series_id"),
        )
        .filter("starts_run")
        .select("series_id", kind="series_kind", ts="ts")
    )


def score(truth: pl.DataFrame, flags: pl.DataFrame, rule: Rule, *, by: str = "kind") -> pl.DataFrame:
    """Precision, recall, F1 and detection delays per kind of anomaly, and over all series (``kind="all"``).

    Columns: ``kind, windows, detected, false_positives, precision, recall, f1, mean_delay_points,
    median_delay_points, mean_delay_s, median_delay_s`` (delays over detected windows; null if none).
    ``by`` groups by another series column instead (``"base"``, ``"noise"``, ``"name"``); its rows count
    the windows and false positives of the series with that value.
    """
    return summarise(match(truth, flags, rule), by=by)


def summarise(matches: Matches, *, by: str = "kind") -> pl.DataFrame:
    """The :func:`score` table of already matched windows and false positives."""
    per_group = _tally(matches.windows, matches.false_positives, by)
    overall = _tally(
        matches.windows.with_columns(pl.lit(ALL).alias(by)),
        matches.false_positives.with_columns(pl.lit(ALL).alias(by)),
        by,
        groups=pl.DataFrame({by: [ALL]}),  # reported even when nothing was labelled
    )
    return pl.concat([per_group.sort(by), overall], how="vertical_relaxed")


def _tally(found: pl.DataFrame, runs: pl.DataFrame, by: str, groups: pl.DataFrame | None = None) -> pl.DataFrame:
    """Counts, precision, recall, F1 and delays for each value of ``by`` with windows (or in ``groups``)."""
    detected = pl.col("detected")
    counts = found.group_by(by).agg(
        windows=pl.len().cast(pl.Int64),
        detected=detected.sum().cast(pl.Int64),
        mean_delay_points=pl.col("delay_points").filter(detected).cast(pl.Float64).mean(),
        median_delay_points=pl.col("delay_points").filter(detected).cast(pl.Float64).median(),
        mean_delay_s=pl.col("delay_s").filter(detected).mean(),
        median_delay_s=pl.col("delay_s").filter(detected).median(),
    )
    if groups is not None:
        counts = groups.join(counts, on=by, how="left")
    alarms = runs.group_by(by).agg(false_positives=pl.len().cast(pl.Int64))
    tp, fp, n = pl.col("detected"), pl.col("false_positives"), pl.col("windows")
    precision = pl.when(tp + fp > 0).then(tp / (tp + fp)).otherwise(0.0)
    recall = pl.when(n > 0).then(tp / n).otherwise(0.0)
    return (
        counts.join(alarms, on=by, how="left")
        .with_columns(pl.col("windows", "detected", "false_positives").fill_null(0))
        .with_columns(precision=precision, recall=recall)
        .with_columns(
            f1=pl.when(pl.col("precision") + pl.col("recall") > 0)
            .then(2 * pl.col("precision") * pl.col("recall") / (pl.col("precision") + pl.col("recall")))
            .otherwise(0.0)
        )
        .select(
            by,
            "windows",
            "detected",
            "false_positives",
            "precision",
            "recall",
            "f1",
            "mean_delay_points",
            "median_delay_points",
            "mean_delay_s",
            "median_delay_s",
        )
    )
