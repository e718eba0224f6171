"""Tests of the analytics: anomaly detection, forecasting and their evaluation."""
