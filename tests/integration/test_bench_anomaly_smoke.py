"""The anomaly benchmark still runs: at a tiny scale it exits 0 and ends with its JSON line of figures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_anomaly.py"
FIGURES = {
    "samples",
    "batch_s",
    "batch_points_per_s",
    "online_series",
    "online_step_s",
    "online_slowest_step_s",
    "state_mb",
    "flagged_share",
}


@pytest.mark.slow
def test_anomaly_benchmark_runs_and_reports(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--scale", "0.01", "--dir", str(tmp_path), "--repeat", "2"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    assert figures["bench"] == "anomaly" and figures["errors"] == []
    assert FIGURES <= figures.keys()
    assert figures["samples"] == 10 * 1_440 and figures["online_series"] == 100
    assert set(figures["targets"]) == {"batch_s", "online_slowest_step_s"}
    assert 0 < figures["online_step_s"] <= figures["online_slowest_step_s"] < figures["batch_s"]
    assert "PASS batch_s" in done.stdout or "FAIL batch_s" in done.stdout
