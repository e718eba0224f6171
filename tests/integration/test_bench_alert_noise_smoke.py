"""The alert-noise benchmark still runs: at a tiny scale it exits 0, without errors, ending with its JSON line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_alert_noise.py"
FIGURES = {
    "hosts",
    "problems",
    "raw_events",
    "storm_events",
    "notifications",
    "ratio",
    "duplicates",
    "updates",
    "incidents",
    "process_s",
    "storm_process_s",
}


@pytest.mark.slow
def test_alert_noise_benchmark_runs_and_reports(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--scale", "0.01", "--dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    assert figures["bench"] == "alert_noise" and figures["errors"] == []
    assert FIGURES <= figures.keys()
    assert figures["storm_events"] == 100 and figures["raw_events"] > figures["storm_events"]
    assert figures["incidents"] == figures["problems"] == figures["hosts"]
    assert 0 < figures["notifications"] < figures["raw_events"]
    assert figures["duplicates"] + figures["updates"] > 0
