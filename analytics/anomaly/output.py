"""What the running system records from scored points: ``anomaly_score`` samples and anomaly events."""

from __future__ import annotations

import polars as pl

from analytics.anomaly.frames import label_columns
from qwq_core.model import Event, series_key
from qwq_core.timeutil import as_utc

SCORE_METRIC = "anomaly_score"
EVENT_KIND = "anomaly.detected"


def score_samples(scored: pl.DataFrame) -> pl.DataFrame:
    """``anomaly_score{metric="<name>", <labels>}`` samples from a scored frame (unscored points dropped).

    Ready for ``Store.write``: ``name``, ``ts``, ``value`` and the label columns, with the scored series'
    name moved into the ``metric`` label.
    """
    labels = [column for column in label_columns(scored) if column not in ("name", "metric")]
    metric = pl.col("name") if "name" in scored.columns else pl.lit("")
    return scored.filter(pl.col("anomaly_score").is_not_null()).select(
        pl.lit(SCORE_METRIC).alias("name"),
        pl.col("ts"),
        pl.col("anomaly_score").alias("value"),
        metric.cast(pl.String).alias("metric"),
        *labels,
    )


def anomaly_events(scored: pl.DataFrame, *, source: str = "anomaly") -> list[Event]:
    """One ``anomaly.detected`` event per episode: each point of ``scored`` (from
    :meth:`~analytics.anomaly.online.OnlineDetector.update`) where ``anomaly_onset`` is set."""
    labels = [column for column in label_columns(scored) if column != "name"]
    events = []
    for row in scored.filter(pl.col("anomaly_onset")).iter_rows(named=True):
        name = str(row.get("name") or "")
        key = series_key(name, {label: row[label] for label in labels})
        events.append(
            Event(
                kind=EVENT_KIND,
                message=f"{key} is anomalous (value {row['value']:.6g}, score {row['anomaly_score']:.2f})",
                source=source,
                severity="warning",
                attrs={"series": key, "metric": name, "value": row["value"], "score": row["anomaly_score"]},
                ts=as_utc(row["ts"]),
            )
        )
    return events
