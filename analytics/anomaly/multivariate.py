"""Multivariate anomalies: an IsolationForest over each host's vector of metrics, naming what stood out.

A host's series (every series sharing the ``by`` labels) become the columns of one matrix on a common time
grid: counters as rates, short gaps carried forward, each column robustly standardised (median and MAD of
the training rows). Two statistics score each row: the IsolationForest score (Liu et al., 2008), over the
standardised metrics and their whitened principal components, and the squared length of the whitened
components (a Mahalanobis distance: a broken relationship between metrics — memory up while CPU is down —
stands out, not only an extreme value). Each is calibrated like the univariate detector's statistics: an
exponential tail fitted over the 90th percentile of the training rows (the forest's score through its odds
``s / (1 - s)``, as the score itself saturates near 1), the two tail probabilities fused by Bonferroni,
flagged below the sensitivity's false-alarm rate and mapped to ``anomaly_score`` as in
:func:`analytics.anomaly.combine.score_from_p`. The raw forest score is kept as ``forest_score``.

For each flagged row, the metrics that contributed most are found by occlusion: the drop in the forest's
score when that metric alone is put back to its typical value. ``top_metrics`` lists the largest first.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

import numpy as np
import polars as pl
from sklearn.decomposition import PCA
from sklearn.ensemble import IsolationForest

from analytics.anomaly.combine import DEFAULT_SENSITIVITY, Sensitivity, false_positive_rate, score_from_p
from analytics.anomaly.frames import label_columns
from qwq_core.model import series_key

_TAIL = 0.1
_CARRY = 5  # grid steps a value is carried over a gap
_MIN_ROWS = 16
_COMPONENTS = 10


def detect_multivariate(
    frame: pl.DataFrame,
    *,
    by: Sequence[str] = ("host",),
    every: timedelta | None = None,
    train_until: datetime | None = None,
    sensitivity: Sensitivity = DEFAULT_SENSITIVITY,
    top: int = 3,
    seed: int = 0,
) -> pl.DataFrame:
    """Score each ``by`` group's (host's) metric vector over time.

    ``frame`` is a sample frame (``name``, ``ts``, ``value``, labels) holding several series per group.
    Points are bucketed to ``every`` (default: the median sampling interval). The forest is trained on the
    rows before ``train_until`` (default: all rows — in-sample scoring of a history). Returns one row per
    group and time: the ``by`` columns, ``ts``, ``anomaly_score`` (in [0, 1]), ``is_anomaly``,
    ``forest_score`` and ``top_metrics`` (up to ``top`` series names, for flagged rows; empty otherwise).
    """
    groups = [column for column in by if column in frame.columns]
    wide = _grid(frame, groups, every)
    fpr = false_positive_rate(sensitivity)
    split = wide.partition_by(groups, as_dict=True, maintain_order=True) if groups else {(): wide}
    parts = [
        _score_group(dict(zip(groups, keys, strict=True)), rows, train_until, fpr, (top, seed))
        for keys, rows in split.items()
    ]
    schema: dict[str, pl.DataType] = {g: pl.String() for g in groups}
    schema |= {"ts": pl.Datetime("us", "UTC"), "anomaly_score": pl.Float64(), "is_anomaly": pl.Boolean()}
    schema |= {"forest_score": pl.Float64(), "top_metrics": pl.List(pl.String)}
    empty = pl.DataFrame(schema=schema)
    return pl.concat([empty, *parts], how="vertical_relaxed") if parts else empty


def _grid(frame: pl.DataFrame, groups: list[str], every: timedelta | None) -> pl.DataFrame:
    """Long frame: group columns, ``ts`` on the grid, ``metric`` (series name within the group), ``value``."""
    labels = [column for column in label_columns(frame) if column not in groups]
    names = frame.select(labels).unique(maintain_order=True)
    metric = [
        series_key(str(row.get("name") or ""), {k: v for k, v in row.items() if k != "name"})
        for row in names.iter_rows(named=True)
    ]
    micros = pl.col("ts").cast(pl.Datetime("us")).dt.epoch("us")
    ordered = frame.join(names.with_columns(metric=pl.Series(metric)), on=labels, how="left", nulls_equal=True)
    ordered = ordered.sort([*groups, "metric", "ts"])
    counter = pl.col("metric").str.contains(r"_total\{")
    rate = (pl.col("value").diff() / micros.diff() * 1e6).over([*groups, "metric"])
    rate = pl.when(pl.col("value").diff().over([*groups, "metric"]) < 0).then(None).otherwise(rate)
    values = ordered.with_columns(value=pl.when(counter).then(rate).otherwise(pl.col("value")))
    if every is None:
        gaps = values.select(micros.diff().over([*groups, "metric"]).alias("gap"))["gap"].drop_nulls()
        every = timedelta(microseconds=int(gaps.filter(gaps > 0).median() or 1_000_000))  # type: ignore[arg-type]
    return (
        values.with_columns(ts=pl.col("ts").cast(pl.Datetime("us", "UTC")).dt.truncate(every))
        .group_by([*groups, "ts", "metric"])
        .agg(pl.col("value").mean())
    )


def _score_group(
    group: dict[str, object], rows: pl.DataFrame, train_until: datetime | None, fpr: float, options: tuple[int, int]
) -> pl.DataFrame:
    """Score one group's rows (long format) as a ts x metric matrix; ``options`` are ``(top, seed)``."""
    top, seed = options
    matrix = (
        rows.pivot(on="metric", index="ts", values="value", aggregate_function="mean")
        .sort("ts")
        .with_columns(pl.exclude("ts").fill_null(strategy="forward", limit=_CARRY))
    )
    metrics = sorted(column for column in matrix.columns if column != "ts")  # a stable order: seeds reproduce
    x = matrix.select(metrics).to_numpy().astype(float)
    train = np.ones(len(x), dtype=bool)
    if train_until is not None:
        train = (matrix["ts"] < train_until).to_numpy()
    if train.sum() < _MIN_ROWS or not metrics:
        return pl.DataFrame()
    centre = np.nanmedian(x[train], axis=0)
    spread = 1.4826 * np.nanmedian(np.abs(x[train] - centre), axis=0)
    spread = np.where(spread > 0, spread, np.nanstd(x[train], axis=0))
    z = np.nan_to_num((x - centre) / np.where(spread > 0, spread, 1.0))
    model = _Model(z[train], seed)
    forest, distance = model.score(z)
    odds = forest / (1.0 - forest)  # the forest's score saturates near 1; its odds do not
    p = np.minimum(1.0, 2 * np.minimum(_tail_pvalue(odds[train], odds), _tail_pvalue(distance[train], distance)))
    flagged = p < fpr
    named = [_top(model, z[i], forest[i], metrics, top) if flagged[i] else [] for i in range(len(z))]
    return pl.DataFrame(
        {
            **{name: [value] * len(z) for name, value in group.items()},
            "ts": matrix["ts"],
            "anomaly_score": score_from_p(p),
            "is_anomaly": flagged,
            "forest_score": forest,
            "top_metrics": pl.Series(named, dtype=pl.List(pl.String)),
        }
    )


def _tail_pvalue(reference: np.ndarray, score: np.ndarray) -> np.ndarray:
    """Tail probability of each score under an exponential tail over the reference scores' 90th percentile."""
    u = float(np.quantile(reference, 1 - _TAIL))
    excess = reference[reference > u] - u
    scale = max(float(excess.mean()) if len(excess) else 0.0, 1e-3)
    return np.where(score > u, _TAIL * np.exp(-(score - u) / scale), 1.0)


class _Model:
    """IsolationForest over the standardised metrics and their whitened principal components: the components
    make a broken relationship between metrics (memory up while CPU is down) as isolatable as an extreme."""

    def __init__(self, train: np.ndarray, seed: int) -> None:
        self.pca = PCA(n_components=min(train.shape[1], _COMPONENTS), whiten=True, random_state=seed).fit(train)
        components = np.clip(self.pca.transform(train), -1e6, 1e6)
        self.forest = IsolationForest(n_estimators=200, random_state=seed).fit(np.hstack([train, components]))

    def score(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The IsolationForest score of each row, in (0, 1), and its squared whitened distance from typical."""
        components = np.clip(self.pca.transform(z), -1e6, 1e6)
        forest = -self.forest.score_samples(np.hstack([z, components]))
        return np.asarray(forest, dtype=float), np.sum(components * components, axis=1)


def _top(model: _Model, row: np.ndarray, score: float, metrics: list[str], top: int) -> list[str]:
    """The metrics whose return to typical (0 after standardising) lowers the score most."""
    occluded = np.repeat(row[None, :], len(metrics), axis=0)
    np.fill_diagonal(occluded, 0.0)
    drop = score - model.score(occluded)[0]
    order = np.argsort(-drop)[:top]
    return [metrics[i] for i in order if drop[i] > 0]
