"""Validation and normalisation of sample frames before they are stored — pure functions.

A sample frame has ``name`` (str), ``ts`` (datetime; naive means UTC) and ``value`` (numeric) columns and any
number of string label columns. Normalised frames have ``ts`` as naive UTC microseconds, ``value`` as
Float64, label columns as String with empty strings turned into nulls (absent), and no null or NaN values.
"""

from __future__ import annotations

import polars as pl

from qwq_core.errors import QueryError
from qwq_core.model import SAMPLE_COLUMNS, is_valid_label_name, is_valid_metric_name

TS = pl.Datetime("us")


def label_columns(frame: pl.DataFrame) -> list[str]:
    """The label columns of a sample frame, sorted."""
    return sorted(c for c in frame.columns if c not in SAMPLE_COLUMNS)


def is_normalised(frame: pl.DataFrame) -> bool:
    """True when ``frame`` already has the canonical column types (a cheap schema check, no data read)."""
    schema = frame.schema
    return (
        schema.get("name") == pl.String
        and schema.get("ts") == TS
        and schema.get("value") == pl.Float64
        and all(schema[c] == pl.String for c in label_columns(frame))
    )


def normalise(frame: pl.DataFrame) -> pl.DataFrame:
    """Check ``frame`` and return it in canonical form; raises :class:`QueryError` naming the problem."""
    missing = [c for c in ("name", "ts", "value") if c not in frame.columns]
    if missing:
        raise QueryError(f"sample frame lacks column(s) {', '.join(missing)}; has {frame.columns}")
    labels = label_columns(frame)
    _check_types(frame, labels)
    bad_labels = [c for c in labels if not is_valid_label_name(c)]
    if bad_labels:
        raise QueryError(f"invalid label name(s) {bad_labels}: use [a-zA-Z_][a-zA-Z0-9_]*, not __*")
    ts = pl.col("ts")
    ts_type = frame.schema["ts"]
    if isinstance(ts_type, pl.Datetime) and ts_type.time_zone is not None:
        ts = ts.dt.convert_time_zone("UTC").dt.replace_time_zone(None)
    out = frame.select(
        pl.col("name").cast(pl.String),
        ts.cast(TS),
        pl.col("value").cast(pl.Float64),
        *(pl.col(c).cast(pl.String).replace("", None) for c in labels),
    ).filter(pl.col("value").is_not_null() & pl.col("value").is_not_nan() & pl.col("ts").is_not_null())
    names = out.get_column("name").unique()
    bad_names = [n for n in names.to_list() if n is None or not is_valid_metric_name(n)]
    if bad_names:
        raise QueryError(f"invalid metric name(s) {bad_names[:5]}: use [a-zA-Z_:][a-zA-Z0-9_:]*")
    return out


def _check_types(frame: pl.DataFrame, labels: list[str]) -> None:
    schema = frame.schema
    if not isinstance(schema["ts"], pl.Datetime):
        raise QueryError(f"column ts must be a datetime, got {schema['ts']}")
    if not (schema["value"].is_numeric() or schema["value"] == pl.Boolean):
        raise QueryError(f"column value must be numeric, got {schema['value']}")
    textual = (pl.String, pl.Categorical, pl.Enum, pl.Null)
    for column in ["name", *labels]:
        if not isinstance(schema[column], textual):
            raise QueryError(f"column {column} must be a string (labels are strings), got {schema[column]}")
