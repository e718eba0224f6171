"""Human-readable numbers: binary byte units, durations and counts — pure functions."""

from __future__ import annotations

import math

_BINARY = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")


def byte_scale(largest: float) -> tuple[float, str]:
    """The divisor and binary unit (``1024**3, "GiB"``) that show values up to ``largest`` best."""
    exponent = 0
    while math.isfinite(largest) and largest >= 1024.0 ** (exponent + 1) and exponent < len(_BINARY) - 1:
        exponent += 1
    return 1024.0**exponent, _BINARY[exponent]


def format_bytes(value: float) -> str:
    """``8.2 GiB``, ``512 B``: three significant digits in the largest fitting binary unit."""
    divisor, unit = byte_scale(abs(value))
    scaled = value / divisor
    return f"{scaled:.0f} {unit}" if unit == "B" or abs(scaled) >= 100 else f"{scaled:.3g} {unit}"


def format_duration(seconds: float) -> str:
    """The two largest units of a duration: ``3d 4h``, ``5h 12m``, ``42s``."""
    remaining = max(0, int(seconds))
    parts: list[str] = []
    for size, unit in ((86400, "d"), (3600, "h"), (60, "m"), (1, "s")):
        count, remaining = divmod(remaining, size)
        if count or (parts and len(parts) < 2):
            parts.append(f"{count}{unit}")
        if len(parts) == 2:
            break
    return " ".join(parts) or "0s"


def format_count(value: float) -> str:
    """A count with thousands separators (``12,345``), or ``1.2M`` from a million up."""
    if abs(value) >= 1_000_000:
        return f"{value / 1_000_000:.1f}M"
    return f"{value:,.0f}"
