"""Headline numbers of one host from its newest samples — pure functions over a ``latest()`` frame."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

import polars as pl

from dashboards.units import format_bytes, format_count, format_duration

Level = Literal["ok", "warn", "crit", "none"]
MISSING = "—"
WARN, CRIT = 0.80, 0.90
"""Utilisation ratios at which a tile turns amber, then red."""


@dataclass(frozen=True)
class Tile:
    """One headline number: ``value`` big, ``detail`` small below, ``gauge`` (0–1) as a bar if set."""

    key: str
    label: str
    value: str = MISSING
    detail: str = "no data"
    level: Level = "none"
    gauge: float | None = None


def pick(latest: pl.DataFrame, name: str, **labels: str) -> float | None:
    """The value of the series ``name`` with exactly these labels set (``""`` = label absent), if any."""
    if latest.is_empty():
        return None
    condition = pl.col("name") == name
    for label, wanted in labels.items():
        column = pl.col(label).fill_null("") if label in latest.columns else pl.lit("")
        condition &= column == wanted
    values = latest.filter(condition)["value"]
    return float(values[0]) if len(values) else None


def level(ratio: float, warn: float = WARN, crit: float = CRIT) -> Level:
    """``ok``, ``warn`` or ``crit`` for a utilisation ratio."""
    return "crit" if ratio >= crit else "warn" if ratio >= warn else "ok"


def summarize(latest: pl.DataFrame, now: datetime) -> list[Tile]:
    """The headline tiles of one host from its ``store.latest()`` frame, in display order."""
    return [
        cpu_tile(latest),
        memory_tile(latest),
        swap_tile(latest),
        load_tile(latest),
        filesystem_tile(latest),
        uptime_tile(latest, now),
        Tile("procs", "Processes", *_count(pick(latest, "host_processes"), "total")),
        Tile("fds", "Open files", *_count(pick(latest, "host_open_fds"), "system-wide")),
    ]


def placeholders() -> list[Tile]:
    """Every tile with its value missing: what the page shows before the first refresh."""
    return summarize(pl.DataFrame(), datetime.fromtimestamp(0, UTC))


def cpu_tile(latest: pl.DataFrame) -> Tile:
    """CPU busy share of all cores."""
    busy = pick(latest, "host_cpu_usage_ratio", cpu="total", mode="")
    if busy is None:
        return Tile("cpu", "CPU busy")
    cores = pick(latest, "host_cpu_count")
    detail = f"of {cores:.0f} cores" if cores else "all cores"
    return Tile("cpu", "CPU busy", f"{busy:.0%}", detail, level(busy), busy)


def memory_tile(latest: pl.DataFrame) -> Tile:
    """Memory used as a share of total."""
    return _share_tile(
        "mem", "Memory used", pick(latest, "host_memory_used_bytes"), pick(latest, "host_memory_total_bytes")
    )


def swap_tile(latest: pl.DataFrame) -> Tile:
    """Swap used as a share of total (``no swap`` when there is none)."""
    used, total = pick(latest, "host_swap_used_bytes"), pick(latest, "host_swap_total_bytes")
    if total == 0:
        return Tile("swap", "Swap used", "off", "no swap configured", "none")
    return _share_tile("swap", "Swap used", used, total)


def load_tile(latest: pl.DataFrame) -> Tile:
    """The 1-minute load average big, 5 and 15 minutes below, coloured by load per core."""
    loads = {window: pick(latest, f"host_load{window}") for window in (1, 5, 15)}
    load1 = loads.pop(1)
    if load1 is None:
        return Tile("load", "Load")
    detail = " · ".join(f"{value:.2f}" for value in loads.values() if value is not None)
    cores = pick(latest, "host_cpu_count")
    if not cores:
        return Tile("load", "Load", f"{load1:.2f}", detail)
    per_core = load1 / cores
    return Tile("load", "Load", f"{load1:.2f}", f"{detail} · {per_core:.2f}/core", level(per_core, 1.0, 1.5))


def filesystem_tile(latest: pl.DataFrame) -> Tile:
    """The fullest filesystem by used share of its size."""
    if latest.is_empty() or "mountpoint" not in latest.columns:
        return Tile("fs", "Disk used")
    sizes = latest.filter(pl.col("name") == "host_filesystem_size_bytes", pl.col("value") > 0)
    free = latest.filter(pl.col("name") == "host_filesystem_free_bytes")
    shares = sizes.join(free, on="mountpoint", suffix="_free").select(
        "mountpoint", (1 - pl.col("value_free") / pl.col("value")).alias("used")
    )
    if shares.is_empty():
        return Tile("fs", "Disk used")
    fullest = shares.sort("used", descending=True).row(0, named=True)
    used = float(fullest["used"])
    return Tile("fs", "Disk used", f"{used:.0%}", f"fullest: {fullest['mountpoint']}", level(used), used)


def uptime_tile(latest: pl.DataFrame, now: datetime) -> Tile:
    """Time since boot, and the boot time in UTC."""
    uptime = pick(latest, "host_uptime_seconds")
    if uptime is None:
        return Tile("uptime", "Uptime")
    booted = now - timedelta(seconds=uptime)
    return Tile("uptime", "Uptime", format_duration(uptime), f"booted {booted:%b %d %H:%M}")


def freshness(latest: pl.DataFrame, now: datetime) -> str:
    """How old the host's newest sample is: ``last sample 3s ago`` or ``no recent samples``."""
    if latest.is_empty():
        return "no recent samples"
    newest = latest["ts"].max()
    assert isinstance(newest, datetime)
    age = (now - newest).total_seconds()
    return "last sample just now" if age < 1 else f"last sample {format_duration(age)} ago"


def _share_tile(key: str, label: str, used: float | None, total: float | None) -> Tile:
    if used is None or not total:
        return Tile(key, label)
    share = used / total
    detail = f"{format_bytes(used)} of {format_bytes(total)}"
    return Tile(key, label, f"{share:.0%}", detail, level(share), share)


def _count(value: float | None, detail: str) -> tuple[str, str]:
    return (MISSING, "no data") if value is None else (format_count(value), detail)
