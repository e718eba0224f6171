"""The benchmarks still run: each script, at a tiny scale, exits 0 and ends with its JSON line of figures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

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


@pytest.mark.slow
@pytest.mark.parametrize("script", sorted(CASES))
def test_benchmark_runs_and_reports(script: str, tmp_path: Path) -> None:
    options, expected = CASES[script]
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), "--scale", "0.002", "--dir", str(tmp_path), *options],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    assert expected | {"bench", "scale", "targets", "errors"} <= figures.keys()
    assert figures["errors"] == []
    assert figures["samples"] > 0
    for query in QUERIES & figures.keys():
        assert {"median_s", "p95_s", "rows"} <= figures[query].keys()
