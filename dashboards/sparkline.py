"""Sparklines as tiny inline SVG images: dozens per table cost one ``<img>`` each, not a plotly graph."""

from __future__ import annotations

import base64
import math
from collections.abc import Sequence

WIDTH, HEIGHT = 120, 24


def sparkline_svg(values: Sequence[float], color: str = "#5794f2") -> str:
    """A ``data:`` URI of an SVG polyline through ``values`` scaled to the box; empty box for no data."""
    points = [v for v in values if v is not None and math.isfinite(v)]
    path = ""
    if len(points) >= 2:
        low, high = min(points), max(points)
        span = (high - low) or 1.0
        step = WIDTH / (len(points) - 1)
        coords = " ".join(
            f"{i * step:.1f},{HEIGHT - 2 - (v - low) / span * (HEIGHT - 4):.1f}" for i, v in enumerate(points)
        )
        path = f'<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{coords}"/>'
    svg = f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}">{path}</svg>'
    return "data:image/svg+xml;base64," + base64.b64encode(svg.encode()).decode()
