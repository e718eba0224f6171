"""Multivariate anomalies in the running system: each host's metric vector, scored as it arrives.

:func:`score_hosts` runs :func:`analytics.anomaly.detect_multivariate` per host over a recent history,
trained on the rows before the newest interval and scoring that interval only — so, like the per-series
detector, a row is judged by its past. What it finds is what no single series shows: a broken
relationship between metrics (memory climbing while CPU idles), or many metrics each a little off at
once. :func:`host_samples` and :func:`host_events` turn the scored rows into ``host_anomaly_score{host}``
samples and one ``anomaly.multivariate`` event per episode, naming the metrics that contributed most.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

import polars as pl

from analytics.anomaly.combine import Sensitivity
from qwq_core.model import Event, MetricInfo
from qwq_core.timeutil import as_utc

MIN_ROWS = 32
"""Rows (steps) of history before hosts are scored: a model of fewer says little, and costs a process."""
SCORE_METRIC = "host_anomaly_score"
EVENT_KIND = "anomaly.multivariate"
METRICS = (
    MetricInfo(
        SCORE_METRIC,
        "gauge",
        "ratio",
        "How unusual a host's metrics were together, 0-1 (IsolationForest over the host's metric vector).",
    ),
)


def score_hosts(
    frame: pl.DataFrame, *, now: datetime, interval: timedelta, step: timedelta, sensitivity: Sensitivity
) -> pl.DataFrame:
    """The rows of the last ``interval`` before ``now`` of each host in ``frame`` (a sample frame holding
    every host's series over a history, on a ``step`` grid), scored by a model of the rows before them.

    Columns as :func:`~analytics.anomaly.detect_multivariate` returns them (``host``, ``ts``,
    ``anomaly_score``, ``is_anomaly``, ``forest_score``, ``top_metrics``); empty while a host has too
    little history.
    """
    from analytics.anomaly.multivariate import detect_multivariate  # scikit-learn: only where it runs

    since = now - interval
    scored = detect_multivariate(frame, by=("host",), every=step, train_until=since, sensitivity=sensitivity)
    return scored.filter((pl.col("ts") >= since) & (pl.col("ts") < now)).sort("host", "ts")


def host_samples(scored: pl.DataFrame) -> pl.DataFrame:
    """``host_anomaly_score{host}`` samples, ready for ``Store.write``."""
    return scored.select(pl.lit(SCORE_METRIC).alias("name"), "ts", pl.col("anomaly_score").alias("value"), "host")


def host_events(scored: pl.DataFrame, alarmed: set[str]) -> list[Event]:
    """One ``anomaly.multivariate`` event per episode that starts in ``scored``.

    ``alarmed`` holds the hosts whose last scored row was flagged; it is updated in place, so an episode
    running across calls is announced once.
    """
    events = []
    for (host,), rows in scored.partition_by("host", as_dict=True, maintain_order=True).items():
        was = host in alarmed
        for row in rows.iter_rows(named=True):
            if row["is_anomaly"] and not was:
                events.append(_event(str(host), row))
            was = bool(row["is_anomaly"])
        (alarmed.add if was else alarmed.discard)(str(host))
    return events


def _event(host: str, row: dict[str, object]) -> Event:
    metrics: Sequence[str] = row["top_metrics"] or []  # type: ignore[assignment]
    named = ", ".join(metrics) if metrics else "several metrics"
    score = float(row["anomaly_score"])  # type: ignore[arg-type]
    return Event(
        kind=EVENT_KIND,
        message=f"host {host} is behaving unusually (score {score:.2f}): {named}",
        source="analytics",
        severity="warning",
        attrs={"host": host, "score": score, "top_metrics": list(metrics)},
        ts=as_utc(row["ts"]),  # type: ignore[arg-type]
    )


__all__ = ["EVENT_KIND", "METRICS", "MIN_ROWS", "SCORE_METRIC", "host_events", "host_samples", "score_hosts"]
