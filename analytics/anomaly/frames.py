"""From a sample frame to the arrays the online recursion steps through, and back.

A frame holds many series (one per distinct combination of the columns other than ``ts`` and ``value``).
The recursion advances every series by one point per step, so the rows are laid out step-major: step ``t``
holds the ``t``-th point of every series that has one. Series are ranked by length, longest first, so the
series active at any step are a prefix of the ranking and a fresh detector can work on slices of its state.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import polars as pl

from qwq_core.model import series_key

BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class Layout:
    """The rows of a frame in step-major order.

    ``keys[r]`` and ``counter[r]`` describe the series of rank ``r``; ``rows`` are input row numbers, and
    step ``t`` covers ``rows[offsets[t]:offsets[t + 1]]``, whose series ranks are ``0 .. width - 1``.
    """

    keys: list[str]
    counter: BoolArray
    rows: npt.NDArray[np.int64]
    ts_us: npt.NDArray[np.float64]
    value: npt.NDArray[np.float64]
    offsets: npt.NDArray[np.int64]


def label_columns(frame: pl.DataFrame) -> list[str]:
    """The columns that identify a series: the text columns (``name`` and labels) other than ``ts``/``value``.

    Columns of other types (flags, numbers, times a caller carries along) are passed through untouched.
    """
    text = (pl.String, pl.Categorical, pl.Enum)
    return [c for c, dtype in frame.schema.items() if c not in ("ts", "value") and isinstance(dtype, text)]


def layout(frame: pl.DataFrame) -> Layout:
    """Lay out ``frame`` (``ts``, ``value`` and identifying columns) for stepping; rows with a null ``ts``
    are left out. Raises ``ValueError`` when ``ts`` or ``value`` is missing."""
    missing = {"ts", "value"} - set(frame.columns)
    if missing:
        raise ValueError(f"frame lacks column(s) {', '.join(sorted(missing))}")
    labels = label_columns(frame)
    rows = frame.select(
        *labels,
        pl.col("ts").cast(pl.Datetime("us")).dt.epoch("us").alias("_ts"),
        pl.col("value").cast(pl.Float64).fill_null(float("nan")).alias("_value"),
    ).with_row_index("_row")
    rows = rows.filter(pl.col("_ts").is_not_null())
    series = _series(rows.select(labels)) if labels else pl.DataFrame({"_sid": [0], "_key": [""], "_counter": [False]})
    if labels:
        rows = rows.join(series.drop("_key", "_counter"), on=labels, how="left", nulls_equal=True)
    else:
        rows = rows.with_columns(_sid=pl.lit(0, pl.UInt32))
    if rows.height == 0:
        series = series.head(0)
    sid = rows["_sid"].to_numpy().astype(np.int64)
    ts = rows["_ts"].to_numpy().astype(np.int64)
    lengths = np.bincount(sid, minlength=series.height)
    rank_of = np.empty(series.height, dtype=np.int64)
    rank_of[np.argsort(-lengths, kind="stable")] = np.arange(series.height)  # longest first
    rank = rank_of[sid]
    by_series = np.lexsort((ts, rank))  # each series in time order, series by rank
    starts = np.concatenate([[0], np.cumsum(np.bincount(rank, minlength=series.height))])
    step = np.empty(len(sid), dtype=np.int64)
    step[by_series] = np.arange(len(sid)) - starts[rank[by_series]]
    order = by_series[np.argsort(step[by_series], kind="stable")]  # step-major, rank within a step
    by_rank = series.sort(pl.Series(rank_of))
    return Layout(
        keys=by_rank["_key"].to_list(),
        counter=by_rank["_counter"].to_numpy().astype(bool),
        rows=rows["_row"].to_numpy().astype(np.int64)[order],
        ts_us=ts[order].astype(np.float64),
        value=rows["_value"].to_numpy().astype(np.float64)[order],
        offsets=np.searchsorted(step[order], np.arange(int(step.max(initial=-1)) + 2)).astype(np.int64),
    )


def _series(labels: pl.DataFrame) -> pl.DataFrame:
    """The distinct series: ``_sid``, the label columns, the canonical ``_key`` and whether it is a counter."""
    unique = labels.unique(maintain_order=True).with_row_index("_sid")
    has_name = "name" in labels.columns
    others = [column for column in labels.columns if column != "name"]
    keys, counters = [], []
    for row in unique.iter_rows(named=True):
        name = str(row["name"] or "") if has_name else ""
        keys.append(series_key(name, {column: _text(row[column]) for column in others}))
        counters.append(name.endswith("_total"))
    return unique.with_columns(pl.Series("_key", keys), pl.Series("_counter", counters))


def _text(value: object) -> str | None:
    return None if value is None else str(value)


def attach(frame: pl.DataFrame, plan: Layout, score: np.ndarray, flag: np.ndarray) -> pl.DataFrame:
    """``frame`` plus ``anomaly_score`` and ``is_anomaly``, from per-row results in ``plan`` order
    (NaN score = not scored: null)."""
    scores = np.full(frame.height, np.nan)
    flags = np.zeros(frame.height, dtype=bool)
    scores[plan.rows] = score
    flags[plan.rows] = flag
    return frame.with_columns(
        pl.Series("anomaly_score", scores, dtype=pl.Float64).fill_nan(None),
        pl.Series("is_anomaly", flags, dtype=pl.Boolean),
    )
