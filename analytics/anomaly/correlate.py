"""Root-cause hints: which series moved around the time of an anomaly, and which moved first.

For every series, the ``history`` before the event window is its normal: median and MAD (robust scale).
Inside the window ``[around - window, around + window]`` each point's robust z against that normal says
how far the series moved; its peak, direction and onset (the first point beyond ``ONSET_Z``) are reported,
with ``lead_s`` = seconds from onset to ``around`` (positive: it moved before — a candidate cause). Given
a ``target`` series, ``corr`` is the Pearson correlation of each series with it over the window, on the
target's timestamps (each series' latest value at or before each). The ``score`` turns the peak into the
detector's scale (:func:`analytics.anomaly.combine.score_from_p`), with the Gaussian tail probability of
the peak corrected for the number of points looked at.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime, timedelta

import numpy as np
import polars as pl
from scipy.special import erfc

from analytics.anomaly.combine import score_from_p
from analytics.anomaly.frames import label_columns
from qwq_core.timeutil import as_utc

ONSET_Z = 4.0
_MIN_HISTORY = 5


def correlate(
    frame: pl.DataFrame,
    around: datetime,
    *,
    window: timedelta = timedelta(minutes=15),
    history: timedelta = timedelta(hours=2),
    target: Mapping[str, str] | None = None,
    top: int = 10,
) -> pl.DataFrame:
    """Rank the series of ``frame`` by how much they moved within ``window`` of ``around``.

    ``frame`` is a sample frame (``name``, ``ts``, ``value``, labels); counters (``*_total``) are compared
    as rates. ``target`` (label values, e.g. ``{"name": "http_latency_seconds", "host": "web1"}``) names
    the anomalous series: it is left out of the ranking and the others are correlated with it. Returns up
    to ``top`` rows, strongest first: the label columns, ``peak_z``, ``direction`` (``up``/``down``),
    ``onset``, ``lead_s``, ``corr`` (null without a target) and ``score`` in [0, 1]. Series with fewer than
    five points of history are skipped.
    """
    labels = label_columns(frame)
    around = as_utc(around)
    opens = around - window
    rates = _as_rates(frame, labels).filter(pl.col("ts").is_between(opens - history, around + window))
    moved = _movements(rates, labels, opens, around)
    chosen = [pl.col(k) == v for k, v in (target or {}).items() if k in labels]
    if chosen:
        reference = rates.filter(pl.all_horizontal(chosen).fill_null(False) & (pl.col("ts") >= opens))
        moved = moved.join(_correlations(rates, reference, labels, opens), on=labels, how="left", nulls_equal=True)
        moved = moved.filter(~pl.all_horizontal(chosen).fill_null(False))  # a missing label is no match
    else:
        moved = moved.with_columns(corr=pl.lit(None, pl.Float64))
    moved = moved.drop("_series", strict=False)
    return moved.sort(["score", "lead_s"], descending=[True, True], nulls_last=True).head(top)


def _as_rates(frame: pl.DataFrame, labels: list[str]) -> pl.DataFrame:
    """Counters as per-second rates (a drop is a reset: no rate); gauges as they are; ``ts`` in UTC."""
    keys: list[str | pl.Expr] = [*labels] or [pl.lit(0).alias("_series")]
    ts = pl.col("ts").cast(pl.Datetime("us", "UTC"))
    ordered = frame.with_columns(ts=ts).sort([*labels, "ts"])
    rise = pl.col("value").diff().over(keys)
    seconds = pl.col("ts").diff().dt.total_microseconds().over(keys) / 1e6
    counter = pl.col("name").str.ends_with("_total") if "name" in labels else pl.lit(False)
    rate = pl.when(rise >= 0).then(rise / seconds)
    return ordered.with_columns(value=pl.when(counter).then(rate).otherwise(pl.col("value"))).drop_nulls("value")


def _movements(rates: pl.DataFrame, labels: list[str], opens: datetime, around: datetime) -> pl.DataFrame:
    """Per series: robust normal from the history, then peak z, direction, onset, lead and score in the window."""
    keys = labels or ["_series"]
    data = rates if labels else rates.with_columns(_series=pl.lit(0))
    before = pl.col("ts") < opens
    centre = pl.col("value").filter(before).median()
    spread = (pl.col("value").filter(before) - centre).abs().median() * 1.4826
    normal = data.group_by(keys).agg(
        centre=centre, spread=spread, std=pl.col("value").filter(before).std(), n=before.sum()
    )
    normal = normal.filter(pl.col("n") >= _MIN_HISTORY).with_columns(
        spread=pl.when(pl.col("spread") > 0).then("spread").otherwise(pl.col("std").fill_null(0.0))
    )
    inside = (
        data.filter(~before)
        .join(normal, on=keys, nulls_equal=True)  # an absent label is null: still the same series
        .with_columns(
            z=(pl.col("value") - pl.col("centre")) / pl.when(pl.col("spread") > 0).then("spread").otherwise(1e-12)
        )
    )
    peak = (
        inside.sort("ts")
        .group_by(keys)
        .agg(
            peak_z=pl.col("z").abs().max(),
            signed=pl.col("z").get(pl.col("z").abs().arg_max()),
            onset=pl.col("ts").filter(pl.col("z").abs() >= ONSET_Z).first(),
            looked=pl.len(),
        )
    )
    peak = peak.with_columns(onset=pl.col("onset").fill_null(pl.lit(None, pl.Datetime("us", "UTC"))))
    tail = peak.select(pl.col("peak_z"), pl.col("looked")).to_numpy()
    p = np.minimum(1.0, erfc(np.minimum(tail[:, 0], 38.0) / math.sqrt(2)) * tail[:, 1]) if len(tail) else []
    return peak.with_columns(
        direction=pl.when(pl.col("signed") >= 0).then(pl.lit("up")).otherwise(pl.lit("down")),
        lead_s=(pl.lit(around) - pl.col("onset")).dt.total_microseconds() / 1e6,
        score=pl.Series(score_from_p(np.asarray(p, dtype=float)), dtype=pl.Float64),
    ).select(*keys, "peak_z", "direction", "onset", "lead_s", "score")


def _correlations(rates: pl.DataFrame, reference: pl.DataFrame, labels: list[str], opens: datetime) -> pl.DataFrame:
    """Pearson correlation of each series with the target over the window, on the target's timestamps."""
    grid = reference.select("ts", target=pl.col("value")).sort("ts")
    window = rates.filter(pl.col("ts") >= opens).sort("ts")
    pairs = []
    for key, series in window.partition_by(labels, as_dict=True, maintain_order=True).items():
        joined = grid.join_asof(series.select("ts", "value"), on="ts", strategy="backward").drop_nulls()
        corr = joined.select(pl.corr("target", "value")).item() if joined.height >= 3 else None
        pairs.append({**dict(zip(labels, key, strict=True)), "corr": corr})
    schema: dict[str, pl.DataType] = {label: rates.schema[label] for label in labels}
    schema["corr"] = pl.Float64()
    return pl.DataFrame(pairs, schema=schema)
