"""The benchmarks still run: each script, at a tiny scale, exits 0 and ends with its JSON line of figures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"

QUERIES = ("q24h_1m", "q30d_1h", "q1h_raw", "q1h_rate")
CASES = {
    "bench_ingest.py": (
        ["--repeat", "2"],
        {"samples", "series", "bare_s", "qwq_cold_s", "qwq_warm_s", "ratio_cold", "ratio_warm"},
    ),
    "bench_query.py": (
        ["--runs", "3"],
        {"samples", "generate_s", "write_s", "rollup_s", "size_bytes", "rows", *QUERIES},
    ),
}
OVERHEAD_FIGURES = {
    "startup_s",
    "window_s",
    "cpu_percent",
    "rss_mb_end",
    "rss_mb_max",
    "samples",
    "samples_per_s",
    "size_bytes",
}


def run_benchmark(script: str, work: Path, *options: str) -> dict[str, Any]:
    """Run ``script`` at scale 0.002; check it exits 0 without errors and return its JSON line."""
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), "--scale", "0.002", "--dir", str(work), *options],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    figures: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    assert {"bench", "scale", "targets", "errors"} <= figures.keys()
    assert figures["errors"] == []
    assert figures["samples"] > 0
    return figures


@pytest.mark.slow
@pytest.mark.parametrize("script", sorted(CASES))
def test_benchmark_runs_and_reports(script: str, tmp_path: Path) -> None:
    options, expected = CASES[script]
    figures = run_benchmark(script, tmp_path, *options)
    assert expected <= figures.keys()
    for query in QUERIES & figures.keys():
        assert {"median_s", "p95_s", "rows"} <= figures[query].keys()


@pytest.mark.slow
@pytest.mark.service
def test_overhead_benchmark_measures_a_running_server(tmp_path: Path) -> None:
    figures = run_benchmark("bench_overhead.py", tmp_path)
    assert OVERHEAD_FIGURES <= figures.keys()
    assert figures["window_s"] >= 5
    assert 0 < figures["cpu_percent"] < 100 * 64  # measured, and at most every core of a big machine
    assert 0 < figures["rss_mb_end"] <= figures["rss_mb_max"]
    assert not (tmp_path / "home" / "qwq.server.json").exists(), "the server was not stopped"
