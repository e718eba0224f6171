"""The qwq web dashboard: a Dash app over a :class:`~qwq_core.store.Store`, built by :func:`create_dashboard`.

Modules: :mod:`~dashboards.ranges` (time ranges and query steps), :mod:`~dashboards.units` (human
numbers), :mod:`~dashboards.figures` (frames to plotly figures), :mod:`~dashboards.tiles` (headline
numbers), :mod:`~dashboards.panels` (store reads per panel), :mod:`~dashboards.layout` (the page) and
:mod:`~dashboards.app` (callbacks and the app itself). Only the last two import Dash.
"""

from dashboards.app import create_dashboard

__all__ = ["create_dashboard"]
