"""The detection evaluation still runs: at a tiny scale it exits 0 and reports both detectors per kind."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from analytics.anomaly.frames import label_columns
from analytics.evaluation.detection import series_keys

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
SCRIPT = BENCHMARKS / "eval_detection.py"
SETS = ("synthetic", "host trace", "quiet host trace")
ROW = {"windows", "detected", "false_positives", "precision", "recall", "f1", "mean_delay_points", "mean_delay_s"}


def run(*options: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *options], capture_output=True, text=True, timeout=120, cwd=BENCHMARKS.parent
    )


@pytest.mark.slow
def test_the_evaluation_scores_both_detectors_per_kind(tmp_path: Path) -> None:
    done = run("--scale", "0.01", "--dir", str(tmp_path))
    assert done.returncode == 0, done.stdout + done.stderr
    figures: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    assert figures["bench"] == "eval_detection" and figures["errors"] == [] and figures["seeds"] == [1]
    detectors = ["baseline"] + (["default"] if figures["detector"] else [])
    assert set(SETS) <= figures.keys()  # the recordings are shipped: every set is scored
    for name in SETS:
        found = figures[name]
        assert found["points"] > 0 and found["baseline_params"]["window"] > 0
        for detector in detectors:
            kinds = found[detector]["kind"]
            assert "all" in kinds and len(kinds) >= 2
            assert all(ROW <= row.keys() and 0 <= row["f1"] <= 1 for row in kinds.values())
            assert (tmp_path / f"windows-{name.replace(' ', '-')}-{detector}.parquet").exists()
        assert "F1" in done.stdout and name in done.stdout
    if figures["detector"]:
        assert figures["targets"] and all("F1 default - baseline" in t for t in figures["targets"])
        assert ("PASS" in done.stdout) or ("FAIL" in done.stdout)


@pytest.mark.parametrize("seeds", [["3"], ["1", "3"]])
def test_the_baseline_is_never_tuned_on_a_seed_it_is_scored_on(seeds: list[str]) -> None:
    done = run("--seed", *seeds, "--tune-seed", "3")
    assert done.returncode == 2 and "must not be one of --seed" in done.stderr


def test_a_seed_is_pooled_once() -> None:
    done = run("--seed", "1", "1")
    assert done.returncode == 2 and "each seed once" in done.stderr


def test_without_the_detector_the_runner_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    monkeypatch.setitem(sys.modules, "analytics.anomaly", None)  # makes `import analytics.anomaly` fail
    import eval_detection

    detector, described = eval_detection.default_detector(None)
    assert detector is None and described.startswith("detector not available")


def windows_of(truth: pl.DataFrame, keys: list[str]) -> int:
    return truth.filter(pl.col("window_start").is_not_null()).select(*keys, "window_start").unique().height


def test_several_seeds_pool_their_draws_into_one_set_each(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import eval_detection

    spec = [
        eval_detection.TraceSet(
            "quiet host trace", eval_detection.traces.QUIET_TRACE, eval_detection.traces.QUIET_TRACE
        )
    ]
    one, two = (eval_detection.labelled_sets(0.01, [seed], 0, spec) for seed in (1, 2))
    pooled = eval_detection.labelled_sets(0.01, [1, 2], 0, spec)
    assert len(pooled) == 2  # synthetic and the quiet trace (shipped): both pooled
    for first, second, both in zip(one, two, pooled, strict=True):
        assert both.test.height == first.test.height + second.test.height
        assert both.test["draw"].unique().sort().to_list() == ["1", "2"]
        windows = [windows_of(labelled.test, series_keys(labelled.test)) for labelled in (first, second)]
        keys = series_keys(both.test)
        assert windows_of(both.test, keys) == sum(windows)
        # Without the draw, the draws' series would merge: their copies share names (and, traces, times).
        assert both.test.select(keys).n_unique() == sum(
            labelled.test.select(series_keys(labelled.test)).n_unique() for labelled in (first, second)
        )
        assert both.test.select(key for key in keys if key != "draw").n_unique() < both.test.select(keys).n_unique()
        assert "draw" in label_columns(both.test)  # the detector, too, keeps the draws' series apart
        assert both.tune.equals(first.tune)  # the baseline is tuned as before
