"""The containers benchmark still runs: at a tiny scale it exits 0, checks its polls and ends with its figures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.services.podman import missing

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_containers.py"
FIGURES = {"containers", "cycles", "samples", "startup_s", "median_s", "p95_s", "max_s", "sequential_median_s"}


@pytest.mark.slow
@pytest.mark.service
def test_containers_benchmark_runs_and_reports(tmp_path: Path) -> None:
    reason = missing()
    if reason:
        pytest.skip(reason)
    engines_before = set(Path("/tmp").glob("qwq-podman-*"))
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--scale", "0.04", "--cycles", "3", "--dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    assert figures["bench"] == "containers" and figures["errors"] == []
    assert FIGURES <= figures.keys()
    assert figures["containers"] == 2 and figures["cycles"] == 3 and figures["samples"] == 6
    assert 0 < figures["median_s"] <= figures["max_s"]
    assert (tmp_path / "podman-service.log").exists()
    assert set(Path("/tmp").glob("qwq-podman-*")) <= engines_before, "the engine's storage was not removed"
