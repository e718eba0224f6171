"""From a frame of samples to regular numeric series: the groundwork shared by forecasting and anomaly detection.

A frame as :meth:`qwq_core.store.Store.query` returns it (``ts``, ``value``, ``name`` and one string column per
label, or just ``ts`` and ``value``) holds one series per distinct combination of its other columns.
:func:`split` turns it into :class:`Series` (numpy arrays, microseconds since the epoch, time-ordered);
:func:`infer_step` finds the sampling step; :func:`regularize` puts a series on a grid of that step, filling
short gaps by linear interpolation (which :func:`fill_seasonally` can redo along a known cycle) and dropping
what precedes the last long gap; counters go through :func:`reset_corrected` (on raw samples) and
:func:`rate` (on the grid).

Everything here is pure: no clock, no I/O, inputs never modified.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl

from qwq_core.errors import QueryError

__all__ = [
    "US",
    "BoolArray",
    "FloatArray",
    "IntArray",
    "Regular",
    "Series",
    "fill_seasonally",
    "infer_step",
    "is_counter",
    "key_columns",
    "rate",
    "regularize",
    "reset_corrected",
    "split",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]
US = 1_000_000
"""Microseconds in a second: every time here is an integer number of microseconds since the epoch (UTC)."""


@dataclass(frozen=True)
class Series:
    """One series of a frame: its identifying columns and its samples, oldest first, no null or NaN value."""

    key: dict[str, Any]
    """The series' identifying columns (``name`` and labels) with their values, in the frame's column order."""
    ts: IntArray
    """Sample times, microseconds since the epoch, non-decreasing."""
    values: FloatArray


@dataclass(frozen=True)
class Regular:
    """A series on a regular grid: ``values[i]`` is the value at ``start + i * step`` (microseconds), and
    ``filled[i]`` tells whether it was filled in for a cell with no sample."""

    start: int
    step: int
    values: FloatArray
    filled: BoolArray

    @property
    def ts(self) -> IntArray:
        """The grid's times, microseconds since the epoch."""
        return self.start + self.step * np.arange(len(self.values), dtype=np.int64)

    @property
    def end(self) -> int:
        """The time of the last value (``start`` when there is none)."""
        return self.start + self.step * max(len(self.values) - 1, 0)


def key_columns(frame: pl.DataFrame) -> list[str]:
    """The columns identifying a series: every column except ``ts`` and ``value``, in frame order."""
    return [column for column in frame.columns if column not in ("ts", "value")]


def split(frame: pl.DataFrame) -> list[Series]:
    """The series of ``frame``, in order of first appearance; samples with a null or NaN value are dropped.

    Raises :class:`QueryError` when ``frame`` lacks a datetime ``ts`` or a numeric ``value`` column.
    """
    _check_columns(frame)
    keys = key_columns(frame)
    clean = frame.filter(pl.col("value").is_not_null() & pl.col("value").is_not_nan()).select(
        *keys,
        pl.col("ts").dt.epoch("us").cast(pl.Int64),
        pl.col("value").cast(pl.Float64),
    )
    parts = clean.partition_by(keys, maintain_order=True) if keys else [clean]
    return [_series(part.sort("ts", maintain_order=True), keys) for part in parts if part.height]


def _check_columns(frame: pl.DataFrame) -> None:
    schema = frame.schema
    if not isinstance(schema.get("ts"), pl.Datetime):
        raise QueryError(f"a series frame needs a datetime 'ts' column; got columns {frame.columns}")
    value = schema.get("value")
    if value is None or not value.is_numeric():
        raise QueryError(f"a series frame needs a numeric 'value' column; got columns {frame.columns}")


def _series(part: pl.DataFrame, keys: Sequence[str]) -> Series:
    key = dict(zip(keys, part.select(keys).row(0), strict=True)) if keys else {}
    return Series(key, part["ts"].to_numpy().astype(np.int64), part["value"].to_numpy().astype(np.float64))


def is_counter(name: str | None) -> bool:
    """True for a Prometheus counter by its name (``*_total``), as :meth:`MetricInfo.infer` decides."""
    return bool(name) and str(name).endswith("_total")


def infer_step(ts: IntArray) -> int | None:
    """The sampling step of ``ts`` (microseconds): the median positive spacing, rounded to whole seconds (or
    milliseconds below a second) to absorb scheduling jitter. ``None`` with fewer than two distinct times."""
    spacing = np.diff(np.unique(ts))
    if len(spacing) == 0:
        return None
    step = float(np.median(spacing))
    unit = US if step >= US else 1_000
    return max(int(round(step / unit)) * unit, 1)


def regularize(ts: IntArray, values: FloatArray, step: int, *, max_gap: int = 12) -> Regular:
    """``values`` observed at ``ts`` on the grid of ``step`` microseconds (multiples of ``step`` since the epoch).

    Samples in one grid cell are averaged. A gap of up to ``max_gap`` missing cells is filled by linear
    interpolation; a longer one cuts the series and only the part after the last long gap is kept (the
    history before an outage that long is taken to describe a different regime, and filling it would invent
    data). Raises :class:`ValueError` for a non-positive step or empty input.
    """
    if step <= 0:
        raise ValueError(f"step must be positive, got {step}")
    if len(ts) == 0:
        raise ValueError("cannot regularize an empty series")
    cells = np.floor_divide(ts, step)
    occupied, inverse = np.unique(cells, return_inverse=True)
    sums = np.bincount(inverse, weights=values)
    means = sums / np.bincount(inverse)
    jumps = np.diff(occupied)
    long_gaps = np.flatnonzero(jumps > max_gap + 1)
    if len(long_gaps):
        first = long_gaps[-1] + 1
        occupied, means = occupied[first:], means[first:]
    grid = np.arange(occupied[0], occupied[-1] + 1, dtype=np.int64)
    filled = np.ones(len(grid), dtype=np.bool_)
    filled[occupied - occupied[0]] = False
    return Regular(int(occupied[0]) * step, step, np.interp(grid, occupied, means).astype(np.float64), filled)


def fill_seasonally(regular: Regular, period: int) -> Regular:
    """``regular`` with each filled-in run shorter than ``period`` refilled from the cycle before it: the value
    one period earlier, shifted by an offset that moves linearly from the gap's left edge to its right edge
    (how far each edge sits from its own value one period earlier; a run at the very end keeps the left
    edge's). A straight line across a gap would flatten the part of the cycle it covers; runs without a cycle
    before them keep their straight line."""
    values = regular.values.copy()
    for first, end in _runs(regular.filled):
        left = first - 1  # the observed cell before the run
        if left - period < 0 or end - first >= period:
            continue
        offset_left = values[left] - values[left - period]
        offset_right = values[end] - values[end - period] if end < len(values) else offset_left
        fraction = (np.arange(first, end) - left) / (end - left)
        values[first:end] = (
            values[first - period : end - period] + offset_left + fraction * (offset_right - offset_left)
        )
    return Regular(regular.start, regular.step, values, regular.filled)


def _runs(mask: BoolArray) -> list[tuple[int, int]]:
    """The ``[first, end)`` index ranges where ``mask`` is true, in order."""
    edges = np.diff(np.concatenate(([0], mask.astype(np.int8), [0])))
    return list(zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist(), strict=True))


def reset_corrected(values: FloatArray) -> FloatArray:
    """A counter's samples with resets undone: after a drop, the counter is taken to restart from zero (as
    Prometheus' ``increase`` does), so the previous value is added to everything that follows."""
    previous = values[:-1]
    drops = np.where(values[1:] < previous, previous, 0.0)
    return values + np.concatenate(([0.0], np.cumsum(drops)))


def rate(regular: Regular) -> Regular:
    """The per-second rate of a reset-corrected counter on a grid; one point shorter, dated at each interval's
    end, filled in where either end was. Empty when the grid has a single point."""
    per_second = np.diff(regular.values) / (regular.step / US)
    filled = regular.filled[1:] | regular.filled[:-1]
    return Regular(regular.start + regular.step, regular.step, per_second, filled)
