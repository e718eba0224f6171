"""Fleet pages — containers, sites, databases: what each shows, and the table it builds (pure functions).

A fleet page is a status table (one row per target: up/down dot, identity, latest values, a sparkline) and,
for the target picked in the table, drill-down graphs. A :class:`Fleet` says which series make all that;
:func:`fleet_table` shapes the store's answers into rows, so the page callbacks stay thin.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import polars as pl

from dashboards.figures import Unit
from dashboards.units import format_bytes, format_count, format_duration
from qwq_core.store.tiers import Agg


@dataclass(frozen=True)
class Column:
    """A table column: the latest value of the first of ``metrics`` a target has, formatted."""

    title: str
    metrics: tuple[str, ...]
    format: Callable[[float], str]
    where: tuple[tuple[str, str], ...] = ()
    """Label values the series must have (e.g. ``phase=total``)."""


@dataclass(frozen=True)
class Graph:
    """A drill-down graph: ``selector`` read for the picked target, one line per value of ``by``."""

    title: str
    selector: str
    unit: Unit
    by: str = "name"
    agg: Agg = "avg"


@dataclass(frozen=True)
class Fleet:
    """One fleet page."""

    path: str
    title: str
    up: str
    """The up series naming each target (``container_up``): its labels in ``key`` identify a row."""
    key: tuple[str, ...]
    latest: str
    """Name glob of the series the table reads the latest values from (one query)."""
    columns: tuple[Column, ...]
    spark: Column
    graphs: tuple[Graph, ...]


def _seconds(value: float) -> str:
    return f"{value * 1000:.0f} ms" if value < 1 else format_duration(value)


def _percent(value: float) -> str:
    return f"{value:.1%}"


def _days(value: float) -> str:
    return "expired" if value <= 0 else f"{value / 86400:.0f} d"


CONTAINERS = Fleet(
    path="/containers",
    title="Containers",
    up="container_up",
    key=("container",),
    latest="container_*",
    columns=(
        Column("image", (), str),
        Column("CPU", ("container_cpu_usage_ratio",), _percent),
        Column("memory", ("container_memory_used_bytes",), format_bytes),
        Column("restarts", ("container_restarts_total",), format_count),
        Column("uptime", ("container_uptime_seconds",), format_duration),
    ),
    spark=Column("CPU", ("container_cpu_usage_ratio",), _percent),
    graphs=(
        Graph("CPU", "container_cpu_usage_ratio", "ratio"),
        Graph("Memory", "container_memory_*_bytes", "bytes"),
        Graph("Network", "container_network_*_bytes_total", "bytes/s", agg="rate"),
        Graph("Block I/O", "container_block_*_bytes_total", "bytes/s", agg="rate"),
    ),
)
SITES = Fleet(
    path="/sites",
    title="Sites",
    up="site_up",
    key=("site",),
    latest="site_*",
    columns=(
        Column("status", ("site_status_code",), lambda v: f"{v:.0f}"),
        Column("response", ("site_response_seconds",), _seconds, where=(("phase", "total"),)),
        Column("certificate", ("site_tls_expiry_seconds",), _days, where=(("cert", "chain"),)),
    ),
    spark=Column("response", ("site_response_seconds",), _seconds, where=(("phase", "total"),)),
    graphs=(
        Graph("Response time by phase", "site_response_seconds", "seconds", by="phase"),
        Graph("Up", "site_up", "count"),
    ),
)
DATABASES = Fleet(
    path="/databases",
    title="Databases",
    up="db_up",
    key=("db", "instance"),
    latest="*",
    columns=(
        Column(
            "connections",
            ("postgres_connections", "mysql_threads_connected", "redis_connected_clients", "mongodb_connections"),
            format_count,
        ),
        Column(
            "memory / size",
            ("postgres_database_size_bytes", "redis_memory_used_bytes", "mysql_innodb_buffer_pool_bytes_data"),
            format_bytes,
        ),
    ),
    spark=Column(
        "connections",
        ("postgres_connections", "mysql_threads_connected", "redis_connected_clients", "mongodb_connections"),
        format_count,
    ),
    graphs=(
        Graph("Up", "db_up", "count"),
        Graph("PostgreSQL transactions/s", "postgres_xact_*_total", "count", agg="rate"),
        Graph("MySQL queries/s", "mysql_questions_total", "count", agg="rate"),
        Graph("Redis commands/s", "redis_commands_processed_total", "count", agg="rate"),
    ),
)
FLEETS: dict[str, Fleet] = {fleet.path: fleet for fleet in (CONTAINERS, SITES, DATABASES)}
"""The fleet pages by URL path."""


def target_id(row: dict[str, object], key: Sequence[str]) -> str:
    """The text naming a target in the address bar (``db=main,instance=127.0.0.1:5432``)."""
    return ",".join(f"{k}={row.get(k) or ''}" for k in key)


def parse_target(text: str, key: Sequence[str]) -> dict[str, str]:
    """The inverse of :func:`target_id`; unknown keys are ignored."""
    pairs = (part.split("=", 1) for part in text.split(",") if "=" in part)
    return {k: v for k, v in pairs if k in key and v}


def fleet_table(fleet: Fleet, latest: pl.DataFrame) -> list[dict[str, object]]:
    """Rows of the status table from the newest samples: ``id, up, <key labels>, <column titles>``.

    Down targets come first, then by key. Values are formatted text, ``—`` where a target has none.
    """
    if latest.is_empty() or not set(fleet.key) <= set(latest.columns):
        return []
    ups = latest.filter(pl.col("name") == fleet.up).unique(list(fleet.key), keep="last")
    rows = []
    for up in ups.sort(list(fleet.key)).iter_rows(named=True):
        mine = latest.filter(*(pl.col(k) == up[k] for k in fleet.key if up[k] is not None))
        row: dict[str, object] = {k: up[k] or "" for k in fleet.key}
        row["id"], row["up"] = target_id(up, fleet.key), up["value"] >= 1
        for column in fleet.columns:
            row[column.title] = _cell(column, mine, up)
        rows.append(row)
    return sorted(rows, key=lambda r: (bool(r["up"]), str(r["id"])))


def _cell(column: Column, mine: pl.DataFrame, up: dict[str, object]) -> str:
    if not column.metrics:  # a label column (the container's image)
        value = up.get(column.title)
        return str(value) if value else "—"
    value = latest_value(column, mine)
    return column.format(value) if value is not None else "—"


def latest_value(column: Column, frame: pl.DataFrame) -> float | None:
    """The newest value of the first of ``column.metrics`` in ``frame``, summed over its series."""
    for metric in column.metrics:
        found = frame.filter(pl.col("name") == metric, *_where(column, frame))
        if found.height:  # several series (connections by state, sizes by database) add up
            return float(found.filter(pl.col("ts") == pl.col("ts").max())["value"].sum())
    return None


def _where(column: Column, frame: pl.DataFrame) -> list[pl.Expr]:
    return [pl.col(k) == v if k in frame.columns else pl.lit(False) for k, v in column.where]


def sparkline_values(column: Column, history: pl.DataFrame, key: Sequence[str]) -> dict[str, list[float]]:
    """Per target id, the values of the spark column over the range, oldest first."""
    if history.is_empty() or not set(key) <= set(history.columns):
        return {}
    present = [m for m in column.metrics if m in set(history["name"].to_list())]
    if not present:
        return {}
    picked = history.filter(pl.col("name") == present[0], *_where(column, history)).sort("ts")
    out: dict[str, list[float]] = {}
    for labels, part in picked.group_by(list(key), maintain_order=True):
        out[target_id(dict(zip(key, labels, strict=True)), key)] = part["value"].to_list()
    return out


__all__ = ["FLEETS", "Column", "Fleet", "Graph", "fleet_table", "parse_target", "sparkline_values", "target_id"]
