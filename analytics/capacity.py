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
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from qwq_core.timeutil import DurationLike

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
    return found.sort(["crossing_s", "earliest_s"], nulls_last=True)


__all__: Sequence[str] = ["RATIOS", "SOURCES", "runs_out", "usage_ratios"]
