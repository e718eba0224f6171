"""How the CLI prints frames: a rich table for people, JSON/CSV/Parquet for programs."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import polars as pl
from rich.console import Console
from rich.table import Table

from qwq_core.api.formats import flat
from qwq_core.errors import QueryError

Format = Literal["table", "json", "csv", "parquet"]
TABLE_ROWS = 500

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


def cell(value: Any) -> str:
    """A table cell: compact numbers and UTC times, empty for nulls."""
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    return str(value)


def table(frame: pl.DataFrame, title: str | None = None) -> Table:
    """A rich table of the first :data:`TABLE_ROWS` rows of ``frame``."""
    view = Table(title=title, header_style="bold", show_edge=False)
    for column in frame.columns:
        numeric = frame.schema[column].is_numeric()
        view.add_column(column, justify="right" if numeric else "left", no_wrap=not numeric)
    for row in frame.head(TABLE_ROWS).iter_rows():
        view.add_row(*(cell(v) for v in row))
    return view


def print_rows(rows: list[dict[str, Any]], columns: Sequence[str], fmt: str, title: str) -> None:
    """API rows for people (the chosen columns as a table) or programs (everything, as JSON)."""
    if fmt == "json":
        sys.stdout.write(json.dumps(rows, default=str) + "\n")
        return
    flat_rows = [{c: cell_text(row.get(c)) for c in columns} for row in rows]
    print_frame(pl.DataFrame(flat_rows, schema=dict.fromkeys(columns, pl.String)), "table", title=title)


def cell_text(value: Any) -> str:
    """An API value as table text: mappings as ``k=v, …``, lists comma-separated, nothing for null."""
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items())
    if isinstance(value, list):
        return ", ".join(map(str, value))
    return "" if value is None else str(value)


def print_frame(frame: pl.DataFrame, fmt: Format, output: Path | None = None, title: str | None = None) -> None:
    """Print ``frame`` (or write it to ``output``) in ``fmt``."""
    if fmt == "parquet":
        if output is None and sys.stdout.isatty():
            raise QueryError("parquet is binary: give --output FILE or redirect stdout")
        frame.write_parquet(output if output is not None else sys.stdout.buffer)
        return
    if fmt == "table" and output is None:
        out.print(table(frame, title))
        if frame.height > TABLE_ROWS:
            err.print(f"[dim]… {frame.height - TABLE_ROWS} more rows; use --format csv for all of them[/dim]")
        return
    text = flat(frame).write_json() if fmt == "json" else flat(frame).write_csv()
    if output is not None:
        output.write_text(text)
    else:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
