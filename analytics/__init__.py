"""Analytics: pure functions over the polars frames ``Store.query`` returns (no I/O, no clock).

Forecasting and capacity planning (:mod:`analytics.forecast`, :mod:`analytics.capacity`), anomaly
detection (:mod:`analytics.anomaly`), alerting (:mod:`analytics.alerting`) and the evaluation harnesses
(:mod:`analytics.evaluation`). See ``docs/analytics.md``.

The names below are imported on first use: statsmodels and scikit-learn cost ~150 MB, and ``qwq up`` loads
``analytics.alerting`` without needing them.
"""

from __future__ import annotations

from analytics._lazy import lazy_attributes

_HOMES = {
    "OnlineDetector": "analytics.anomaly",
    "correlate": "analytics.anomaly",
    "detect_anomalies": "analytics.anomaly",
    "detect_multivariate": "analytics.anomaly",
    "outlook": "analytics.capacity",
    "runs_out": "analytics.capacity",
    "usage_ratios": "analytics.capacity",
    "backtest": "analytics.forecast",
    "forecast": "analytics.forecast",
    "forecast_and_crossings": "analytics.forecast",
    "time_to_threshold": "analytics.forecast",
}
__all__ = sorted(_HOMES)


__getattr__ = lazy_attributes(__name__, globals(), _HOMES)
