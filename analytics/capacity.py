"""Capacity planning: which resource runs out first — pure functions over the host collector's frames.

Usage of each finite resource is turned into a ratio series (``*_used_ratio``, 0–1) so one threshold fits
every disk and host, then forecast with :func:`analytics.forecast.time_to_threshold`:

===================================  ====================================================================
ratio                                from
===================================  ====================================================================
``host_filesystem_used_ratio``       used / (used + available to users), per mountpoint — what ``df`` shows
``host_filesystem_files_used_ratio`` 1 − free inodes / inodes, per mountpoint
``host_memory_used_ratio``           used / total memory
===================================  ====================================================================

:func:`outlook` also keeps where each ratio is headed: the forecast at a ladder of lead times (:data:`LEADS`),
from the same fit as the crossings.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import polars as pl

from qwq_core.timeutil import DurationLike, parse_duration

SOURCES = (
    "host_filesystem_used_bytes",
    "host_filesystem_free_bytes",
    "host_filesystem_files",
    "host_filesystem_files_free",
    "host_memory_used_bytes",
    "host_memory_total_bytes",
)
"""The metrics :func:`usage_ratios` reads."""
RATIOS = ("host_filesystem_used_ratio", "host_filesystem_files_used_ratio", "host_memory_used_ratio")
LEADS = ("0s", "10m", "1h", "6h", "1d", "3d", "7d", "14d", "28d")
"""Lead times :func:`outlook` samples the forecast at, as written in the ``ahead`` label. 28 days, not 30: the
forecast starts at the last observation (up to an hour or so before now), so the default 30-day horizon
reaches now + 28 days but not quite now + 30 days."""
BANDS = ("yhat", "yhat_lower", "yhat_upper")
_US = timedelta(microseconds=1)


@dataclass(frozen=True)
class Outlook:
    """One capacity forecast: when each resource reaches the threshold, and where its usage is headed."""

    crossings: pl.DataFrame
    """As :func:`runs_out` returns them."""
    path: pl.DataFrame
    """``name, ahead, yhat, yhat_lower, yhat_upper, <labels>``: see :func:`ahead`."""


def usage_ratios(frame: pl.DataFrame) -> pl.DataFrame:
    """Ratio series (``name, ts, value, <labels>``) from a frame holding :data:`SOURCES` samples."""
    if frame.is_empty():
        return frame
    labels = [c for c in frame.columns if c not in ("name", "ts", "value", "series_id")]
    wide = frame.pivot(on="name", index=["ts", *labels], values="value", aggregate_function="last")
    parts = []
    for name, expr, needs in (
        (
            "host_filesystem_used_ratio",
            pl.col("host_filesystem_used_bytes")
            / (pl.col("host_filesystem_used_bytes") + pl.col("host_filesystem_free_bytes")),
            ("host_filesystem_used_bytes", "host_filesystem_free_bytes"),
        ),
        (
            "host_filesystem_files_used_ratio",
            1 - pl.col("host_filesystem_files_free") / pl.col("host_filesystem_files"),
            ("host_filesystem_files", "host_filesystem_files_free"),
        ),
        (
            "host_memory_used_ratio",
            pl.col("host_memory_used_bytes") / pl.col("host_memory_total_bytes"),
            ("host_memory_used_bytes", "host_memory_total_bytes"),
        ),
    ):
        if set(needs) <= set(wide.columns):
            ratio = wide.select("ts", *labels, expr.alias("value")).with_columns(name=pl.lit(name))
            parts.append(ratio.filter(pl.col("value").is_finite()))
    if not parts:
        return frame.clear()
    ratios = pl.concat(parts, how="diagonal_relaxed")
    present = [c for c in labels if ratios[c].null_count() < ratios.height]  # memory has no mountpoint
    return ratios.select("name", "ts", "value", *present).sort("name", *present, "ts")


def runs_out(
    frame: pl.DataFrame, *, threshold: float = 0.9, horizon: DurationLike = "30d", workers: int = 1
) -> pl.DataFrame:
    """When each resource's usage reaches ``threshold``, soonest first (those not reached last).

    ``frame`` holds :data:`SOURCES` samples over the history to learn from. Columns as
    :func:`~analytics.forecast.time_to_threshold` returns them, rising direction.
    """
    from analytics.forecast import time_to_threshold  # statsmodels: only where forecasts are made

    ratios = usage_ratios(frame)
    if ratios.is_empty():
        return ratios
    found = time_to_threshold(ratios, threshold, horizon=horizon, direction="rising", workers=workers)
    return _soonest_first(found)


def outlook(
    frame: pl.DataFrame,
    now: datetime,
    *,
    threshold: float = 0.9,
    horizon: DurationLike = "30d",
    leads: Sequence[str] = LEADS,
    workers: int = 1,
) -> Outlook:
    """:func:`runs_out` and :func:`ahead` from one forecast per resource."""
    from analytics.forecast import forecast_and_crossings  # statsmodels: only where forecasts are made

    ratios = usage_ratios(frame)
    if ratios.is_empty():
        return Outlook(ratios, ratios)
    path, found = forecast_and_crossings(ratios, threshold, horizon=horizon, direction="rising", workers=workers)
    return Outlook(_soonest_first(found), ahead(path, found, now, horizon=horizon, leads=leads))


def ahead(
    path: pl.DataFrame, crossings: pl.DataFrame, now: datetime, *, horizon: DurationLike, leads: Sequence[str] = LEADS
) -> pl.DataFrame:
    """The forecast ``path`` at ``now + lead`` for each of ``leads`` up to ``horizon`` that the path reaches.

    ``path`` is what :func:`~analytics.forecast.forecast` returns and ``crossings`` what
    :func:`~analytics.forecast.time_to_threshold` returns for the same series: each path starts from its
    series' last observation (``last_ts``, ``last_value``, where the interval has no width) and is linear
    between forecast steps. Values are clipped to 0–1, as no usage ratio leaves it. Columns: ``name``,
    ``ahead`` (the lead as written in ``leads``), ``yhat``, ``yhat_lower``, ``yhat_upper``, then the labels.
    """
    keys = [c for c in path.columns if c not in ("ts", *BANDS)]
    start = crossings.select(*keys, pl.col("last_ts").alias("ts"), *(pl.col("last_value").alias(c) for c in BANDS))
    steps = pl.concat([start, path.select(start.columns)]).with_columns(
        after=(pl.col("ts") - pl.lit(now)).dt.total_microseconds()
    )
    limit = parse_duration(horizon)
    wanted = [(lead, parse_duration(lead) // _US) for lead in leads if parse_duration(lead) <= limit]
    rows = []
    for key, part in steps.sort("ts").partition_by(keys, as_dict=True, maintain_order=True).items():
        after, bands = part["after"].to_numpy(), [part[c].to_numpy() for c in BANDS]
        reached = [(lead, at) for lead, at in wanted if at <= after[-1]]  # never extrapolate past the forecast
        rows += [(*key, lead, *(float(np.interp(at, after, band)) for band in bands)) for lead, at in reached]
    schema = {**{k: path.schema[k] for k in keys}, "ahead": pl.String(), **dict.fromkeys(BANDS, pl.Float64())}
    frame = pl.DataFrame(rows, schema=schema, orient="row").with_columns(pl.col(*BANDS).clip(0.0, 1.0))
    return frame.select("name", "ahead", *BANDS, *(k for k in keys if k != "name"))


def _soonest_first(crossings: pl.DataFrame) -> pl.DataFrame:
    return crossings.sort(["crossing_s", "earliest_s"], nulls_last=True)


__all__: Sequence[str] = ["LEADS", "RATIOS", "SOURCES", "Outlook", "ahead", "outlook", "runs_out", "usage_ratios"]
