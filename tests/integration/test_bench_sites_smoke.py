"""The sites benchmark still runs: at a tiny scale it exits 0 and ends with its JSON line of figures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.services.dnsmasq import Dnsmasq

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_sites.py"
FIGURES = {"checks", "interval_s", "runs", "cycle_s_max", "lateness_s_max", "missed_schedules", "cpu_percent"}


@pytest.mark.slow
@pytest.mark.service
def test_the_sites_benchmark_runs_checks_on_the_scheduler(tmp_path: Path) -> None:
    if not Dnsmasq.available():
        pytest.skip("dnsmasq is not installed (Debian: dnsmasq-base)")
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--scale", "0.002", "--dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    assert figures["bench"] == "sites" and figures["errors"] == []
    assert FIGURES <= figures.keys()
    assert figures["checks"] == 8 and figures["runs"] == 4 * 3  # four collectors, three runs each
    assert figures["missed_schedules"] == 0 and figures["samples"] > 0
    assert 0 < figures["cpu_percent"] < 100 * 64
