"""Analytics: pure functions over polars frames (forecasting, anomaly detection). Arrives with issue #5."""
