"""Anomaly detection: per-series online scoring, a multivariate host detector, and root-cause hints.

``detect_anomalies(frame)`` scores every point of every series from its past; ``OnlineDetector`` does the
same incrementally with saved state, for the running system (``score_samples`` and ``anomaly_events`` turn
its output into ``anomaly_score`` samples and events); ``detect_multivariate`` scores a host's metric
vector and names the metrics behind each anomaly; ``correlate`` ranks the series that moved around an
anomaly.
"""

from __future__ import annotations

from analytics._lazy import lazy_attributes

_HOMES = {
    "LEVELS": "analytics.anomaly.combine",
    "Sensitivity": "analytics.anomaly.combine",
    "false_positive_rate": "analytics.anomaly.combine",
    "correlate": "analytics.anomaly.correlate",
    "detect_anomalies": "analytics.anomaly.detect",
    "detect_multivariate": "analytics.anomaly.multivariate",
    "OnlineDetector": "analytics.anomaly.online",
    "anomaly_events": "analytics.anomaly.output",
    "score_samples": "analytics.anomaly.output",
}
__all__ = sorted(_HOMES)


# Imported on first use: the multivariate detector needs scikit-learn and correlate scipy, which the
# always-on scoring in ``qwq up`` does not.
__getattr__ = lazy_attributes(__name__, globals(), _HOMES)
