"""Batch scoring: the online recursion run over a frame's history, so batch and online scores are identical."""

from __future__ import annotations

import polars as pl

from analytics.anomaly.combine import DEFAULT_SENSITIVITY, Sensitivity
from analytics.anomaly.online import OnlineDetector


def detect_anomalies(frame: pl.DataFrame, *, sensitivity: Sensitivity = DEFAULT_SENSITIVITY) -> pl.DataFrame:
    """``frame`` plus ``anomaly_score`` (Float64 in [0, 1]) and ``is_anomaly`` (Boolean) per point.

    ``frame`` is what ``Store.query`` returns — ``name``, ``ts``, ``value`` and one text column per label —
    or just ``ts`` and ``value``; every distinct combination of the text columns is one series. Each point
    is scored from its series' past only (see :class:`~analytics.anomaly.online.OnlineDetector`), so
    scoring a longer history never changes the scores of earlier points. ``sensitivity`` (in (0, 1] or
    ``"low"``/``"medium"``/``"high"``) sets the expected false-alarm rate per point behind ``is_anomaly``
    (1e-5, 1e-4, 1e-3); ``anomaly_score`` does not depend on it (0.5 is the default threshold). Points
    that cannot be scored — missing values, the first point of a counter, repeated timestamps — get a
    null score; the first few points of a series (too little history) score 0.
    """
    return OnlineDetector(sensitivity).update(frame).drop("anomaly_onset")
