"""The forecasting benchmarks still run: at a tiny scale each exits 0 and ends with its JSON line of figures."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.test_benchmarks_smoke import run_benchmark


@pytest.mark.slow
def test_forecast_speed_benchmark_runs_in_worker_processes(tmp_path: Path) -> None:
    figures = run_benchmark("bench_forecast.py", tmp_path, "--workers", "2")
    assert figures["series"] == 8 and figures["rows"] == 8 * 24
    assert figures["forecast_s"] > 0 and figures["serial_ms_per_series"] > 0
    assert set(figures["targets"]) == {"forecast_s"}


@pytest.mark.slow
def test_forecast_quality_evaluation_reports_every_shape(tmp_path: Path) -> None:
    figures = run_benchmark("eval_forecast.py", tmp_path, "--workers", "1")
    shapes = figures["shapes"]
    assert {"daily", "weekly", "trend_daily", "gaps", "counter", "all"} <= shapes.keys()
    assert all(shape["folds"] >= 1 and shape["auto_mase"] >= 0 for shape in shapes.values())
    assert "mase_ratio_all" in figures["targets"]
