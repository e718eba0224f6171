"""The rules benchmark still runs: at a tiny scale it exits 0, finds no errors and reports its figures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
FIGURES = {
    "rules",
    "series",
    "samples",
    "queries",
    "rows",
    "holding",
    "first_cycle_s",
    "first_cycle_events",
    "firing",
    "cycle_median_s",
    "cycle_p95_s",
    "fetch_s",
    "evaluate_s",
    "update_s",
}


@pytest.mark.slow
def test_rules_benchmark_runs_and_reports(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / "bench_rules.py"), "--scale", "0.002", "--dir", str(tmp_path), "--runs", "2"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    assert figures["bench"] == "rules" and figures["errors"] == []
    assert FIGURES <= figures.keys()
    assert set(figures["targets"]) == {"evaluate_median_s"}
    assert figures["rules"] == 50 and figures["holding"] > 0 and figures["first_cycle_events"] > 0
    assert 0 < figures["evaluate_s"] and 0 < figures["cycle_median_s"] <= figures["cycle_p95_s"]
