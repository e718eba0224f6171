"""Frames over HTTP: JSON by default; Arrow IPC, Parquet or CSV by ``Accept`` header or ``?format=``.

The remote store asks for Arrow IPC streams, which round-trip polars frames exactly (types, nulls,
time zones) and cost no parsing; browsers and ``curl`` get JSON.
"""

from __future__ import annotations

import io
import json
from typing import Any

import polars as pl

from qwq_core.errors import QueryError

MEDIA_TYPES = {
    "json": "application/json",
    "arrow": "application/vnd.apache.arrow.stream",
    "parquet": "application/vnd.apache.parquet",
    "csv": "text/csv",
}
_BY_MEDIA_TYPE = {media: name for name, media in MEDIA_TYPES.items()}

FRAME_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": 'A table: JSON `{"data": [rows]}` by default, or Arrow IPC / Parquet / CSV as negotiated.',
        "content": {
            MEDIA_TYPES["json"]: {"schema": {"type": "object", "properties": {"data": {"type": "array"}}}},
            MEDIA_TYPES["arrow"]: {"schema": {"type": "string", "format": "binary"}},
            MEDIA_TYPES["parquet"]: {"schema": {"type": "string", "format": "binary"}},
            MEDIA_TYPES["csv"]: {"schema": {"type": "string"}},
        },
    }
}


def negotiate(accept: str | None, requested: str | None) -> str:
    """The format to answer with: ``requested`` (``?format=``) wins, then the first known ``Accept`` type."""
    if requested:
        if requested not in MEDIA_TYPES:
            raise QueryError(f"unknown format {requested!r}; choose one of {', '.join(MEDIA_TYPES)}")
        return requested
    for part in (accept or "").split(","):
        media = part.split(";")[0].strip().lower()
        if media in _BY_MEDIA_TYPE:
            return _BY_MEDIA_TYPE[media]
    return "json"


def flat(frame: pl.DataFrame) -> pl.DataFrame:
    """``frame`` with nested columns (lists, structs, maps) as JSON text and binary ones as hex: for CSV/JSON."""
    columns = []
    for name, dtype in frame.schema.items():
        if dtype.is_nested():
            values = [json.dumps(v, default=str) if v is not None else None for v in frame[name].to_list()]
            columns.append(pl.Series(name, values, dtype=pl.String))
        elif dtype == pl.Binary:
            columns.append(frame[name].bin.encode("hex"))
    return frame.with_columns(columns) if columns else frame


def encode(frame: pl.DataFrame, fmt: str) -> bytes:
    """``frame`` serialised in ``fmt``."""
    if fmt == "json":
        return b'{"data":' + flat(frame).write_json().encode() + b"}"
    if fmt == "csv":
        return flat(frame).write_csv().encode()
    buffer = io.BytesIO()
    if fmt == "arrow":
        frame.write_ipc_stream(buffer)
    else:
        frame.write_parquet(buffer)
    return buffer.getvalue()


def decode(body: bytes, media_type: str) -> pl.DataFrame:
    """A frame from a request body in Arrow IPC, Parquet, CSV or JSON (``{"data": [rows]}`` or ``[rows]``)."""
    fmt = _BY_MEDIA_TYPE.get(media_type.split(";")[0].strip().lower(), "json")
    try:
        if fmt == "arrow":
            return pl.read_ipc_stream(io.BytesIO(body))
        if fmt == "parquet":
            return pl.read_parquet(io.BytesIO(body))
        if fmt == "csv":  # labels that look like numbers (cpu=0) are still labels
            return pl.read_csv(io.BytesIO(body), infer_schema=False).with_columns(pl.col("value").cast(pl.Float64))
        rows = json.loads(body)
        rows = rows.get("data", rows) if isinstance(rows, dict) else rows
        if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
            raise QueryError('a JSON body is a list of sample objects, or {"data": [...]}')
        return pl.DataFrame(rows, infer_schema_length=None) if rows else pl.DataFrame()
    except (pl.exceptions.PolarsError, OSError, TypeError, ValueError) as exc:  # JSONDecodeError is a ValueError
        raise QueryError(f"cannot read the request body as {fmt}: {exc}") from exc
