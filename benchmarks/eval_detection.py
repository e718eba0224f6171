"""Anomaly detection: qwq's default detector against a tuned windowed-Gaussian baseline, per kind of anomaly.

    .venv/bin/python benchmarks/eval_detection.py [--scale 1.0] [--seed 1 ...] [--tune-seed 0] [--dir DIR]
                            [--trace PARQUET] [--tune-trace PARQUET] [--quiet-trace PARQUET]
                            [--sensitivity LEVEL]

Three labelled sets (``analytics.evaluation``): synthetic series (40 per kind of anomaly and 40 without,
over 6 base shapes and 5 noise shapes; two weeks at 5-minute steps), and two recorded host traces
(``analytics/evaluation/data/``: 17 real series over 90 minutes, recorded at 1 s and taken at 5 s, the host
collector's default) with 40 copies per kind injected with anomalies, plus the untouched series. The
first trace was recorded on a machine busy with other work, the second ("quiet") with nothing else
running. A seasonality break goes only into series with a season to break (``traces.SEASON_FOUND``); a
trace without one leaves the kind out. Both detectors are scored by the same rule (``detection.Rule``): a
window counts as detected if a point is flagged in ``[start, end + 12 points]``; flags elsewhere are false
positives, one per contiguous run; the first half of each series is warm-up.

The baseline's window and threshold are tuned for best overall F1 on each set drawn with ``--tune-seed``
(for the busy host trace, from a second recording, ``host-trace-tune.parquet``, taken at another time; for
the quiet one, from the same recording, which favours the baseline); both detectors are then scored on the
set drawn with ``--seed``; with N seeds, on their N draws pooled into one set (N times the windows, so one
window moves a kind's F1 N times less). The detector runs with its default sensitivity. Target, per
set and kind: the default's F1 beats the baseline's. ``--dir`` keeps each window's outcome as parquet. Until
``analytics.anomaly`` exists, only the baseline is reported.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import polars as pl
from _common import Target, finish, parser, table

from analytics.evaluation import synthetic, traces
from analytics.evaluation.baselines import tune_windowed_gaussian, windowed_gaussian
from analytics.evaluation.detection import ALL, Rule, detector_input, match, summarise

Detector = Callable[[pl.DataFrame], pl.DataFrame]
TOLERANCE_POINTS = 12
MARGIN = 0.001
"""How much higher the default's F1 must be to count as beating the baseline."""


@dataclass(frozen=True)
class LabelledSet:
    """A labelled set to score, a twin drawn independently to tune the baseline on, and the scoring rule."""

    name: str
    test: pl.DataFrame
    tune: pl.DataFrame
    rule: Rule
    step: str
    breakdowns: tuple[str, ...]
    """Series columns the scores are also broken down by."""
    trace: Path | None = None
    """The recording a host-trace set was drawn from (its cycle evidence is reported)."""


@dataclass(frozen=True)
class TraceSet:
    """A host-trace set to score: its name, the recording scored and the one the baseline is tuned on."""

    name: str
    trace: Path
    tune_trace: Path


def labelled_sets(scale: float, seeds: list[int], tune_seed: int, trace_sets: list[TraceSet]) -> list[LabelledSet]:
    """The synthetic set and each host-trace set, sized by ``scale`` (1.0: full sets); drawn with each of
    ``seeds`` and pooled (the draws told apart by a ``draw`` label) when there are several."""
    per_kind = max(1, round(40 * scale))
    copies = max(1, round(40 * scale))
    points = synthetic.POINTS if scale >= 0.5 else max(864, round(synthetic.POINTS * scale))
    trace_points = None if scale >= 0.5 else 600
    controls = None if scale >= 0.5 else max(1, round(17 * scale))

    def draw_synthetic(s: int) -> pl.DataFrame:
        return synthetic.generate(s, series_per_kind=per_kind, points=points)

    def draw_trace(s: int, path: Path) -> pl.DataFrame:
        return traces.trace_dataset(s, copies_per_kind=copies, controls=controls, points=trace_points, path=path)

    def pooled(draw: Callable[[int], pl.DataFrame]) -> pl.DataFrame:
        if len(seeds) == 1:
            return draw(seeds[0])
        return pl.concat([draw(s).with_columns(draw=pl.lit(str(s))) for s in seeds], how="diagonal_relaxed")

    sets = [
        LabelledSet(
            "synthetic",
            pooled(draw_synthetic),
            draw_synthetic(tune_seed),
            Rule(TOLERANCE_POINTS * synthetic.STEP),
            "5 min",
            ("base", "noise", "name"),
        ),
    ]
    for spec in trace_sets:
        if not (spec.trace.exists() and spec.tune_trace.exists()):
            print(f"{spec.name} set skipped: no recording {spec.trace} or {spec.tune_trace} (see traces.py)")
            continue
        trace_step = traces.interval(spec.trace) * traces.EVERY
        sets.append(
            LabelledSet(
                spec.name,
                pooled(partial(draw_trace, path=spec.trace)),
                draw_trace(tune_seed, spec.tune_trace),
                Rule(TOLERANCE_POINTS * trace_step),
                f"{trace_step.total_seconds():g} s",
                ("name",),
                spec.trace,
            )
        )
    return sets


def default_detector(sensitivity: str | None) -> tuple[Detector | None, str]:
    """qwq's detector (``analytics.anomaly.detect_anomalies``) and its description, or None and why not."""
    try:
        from analytics.anomaly import detect_anomalies
    except ImportError as exc:
        return None, f"detector not available ({exc})"
    if sensitivity is None:
        return detect_anomalies, "analytics.anomaly.detect_anomalies (default sensitivity)"
    level: Any = float(sensitivity) if sensitivity.replace(".", "", 1).isdigit() else sensitivity
    return lambda frame: detect_anomalies(frame, sensitivity=level), f"detect_anomalies(sensitivity={level!r})"


def contract_errors(name: str, given: pl.DataFrame, flagged: pl.DataFrame) -> list[str]:
    """Where a detector's output breaks the interface: rows, column types, scores outside [0, 1]."""
    errors = []
    if flagged.height != given.height:
        errors.append(f"{name}: {flagged.height} rows out for {given.height} in")
    for column, dtype in (("anomaly_score", pl.Float64), ("is_anomaly", pl.Boolean)):
        if flagged.schema.get(column) != dtype:
            errors.append(f"{name}: column {column} is {flagged.schema.get(column)}, expected {dtype}")
    if flagged.schema.get("anomaly_score") == pl.Float64:
        outside = flagged.filter((pl.col("anomaly_score") < 0) | (pl.col("anomaly_score") > 1)).height
        if outside:
            errors.append(f"{name}: {outside} scores outside [0, 1]")
    return errors


def evaluate(labelled: LabelledSet, detector: Detector | None, work: Path | None) -> tuple[dict[str, Any], list[str]]:
    """Tune the baseline, run both detectors on the test set, and score them; figures and contract errors."""
    tuned = tune_windowed_gaussian(labelled.tune, labelled.rule)
    given = detector_input(labelled.test)
    runs: dict[str, Detector] = {
        "baseline": lambda frame: windowed_gaussian(frame, window=tuned.window, threshold=tuned.threshold)
    }
    if detector is not None:
        runs = {"default": detector, **runs}
    figures: dict[str, Any] = {
        "series": labelled.test.select(pl.exclude("ts", "value", "label", "window_start", "window_end")).n_unique(),
        "points": labelled.test.height,
        "baseline_params": {"window": tuned.window, "threshold": tuned.threshold, "tune_f1": tuned.f1},
    }
    errors: list[str] = []
    for name, run in runs.items():
        started = time.perf_counter()
        flagged = run(given)
        figures[f"{name}_s"] = time.perf_counter() - started
        errors += contract_errors(f"{labelled.name} {name}", given, flagged)
        matches = match(labelled.test, flagged.with_columns(pl.col("is_anomaly").fill_null(False)), labelled.rule)
        if work is not None:
            matches.windows.write_parquet(work / f"windows-{labelled.name.replace(' ', '-')}-{name}.parquet")
        figures[name] = {"kind": _rows(summarise(matches), "kind")}
        figures[name]["f1_by"] = {
            by: {group: row["f1"] for group, row in _rows(summarise(matches, by=by), by).items()}
            for by in labelled.breakdowns
        }
    return figures, errors


def _rows(scores: pl.DataFrame, by: str) -> dict[str, dict[str, Any]]:
    return {row.pop(by): row for row in scores.to_dicts()}


# ---- reporting -----------------------------------------------------------------------------------------
def report(labelled: LabelledSet, figures: dict[str, Any]) -> None:
    """The per-kind table of one set: default and baseline side by side, and the verdict."""
    params = figures["baseline_params"]
    title = (
        f"{labelled.name}: {figures['series']} series, {figures['points']:,} points at {labelled.step}; "
        f"baseline window {params['window']}, threshold {params['threshold']:g} (tune F1 {params['tune_f1']:.3f})"
    )
    names = [name for name in ("default", "baseline") if name in figures]
    header = "  ".join(f"{name:<8}{'F1':>6}{'P':>6}{'R':>6}{'FP':>5}{'delay pts':>10}{'delay s':>9}" for name in names)
    rows: list[tuple[str, Any]] = [("kind           windows", header + ("  verdict" if len(names) == 2 else ""))]
    for kind, base in figures["baseline"]["kind"].items():
        cells = "  ".join(_cells(name, figures[name]["kind"][kind]) for name in names)
        verdict = ""
        if len(names) == 2:
            verdict = "  PASS" if _beats(figures, kind) else "  FAIL"
        rows.append((f"{kind:<18}{base['windows']:>4}", cells + verdict))
    table(title, rows)
    for by in labelled.breakdowns:
        table(
            f"  F1 by {by} ({' / '.join(names)})",
            [
                (group, " / ".join(f"{figures[name]['f1_by'][by][group]:.2f}" for name in names))
                for group in figures["baseline"]["f1_by"][by]
            ],
        )
    timing = ", ".join(f"{name} {figures[f'{name}_s']:.2f} s" for name in names)
    print(f"  run time: {timing}")


def report_cycles(trace: Path) -> dict[str, Any]:
    """How much season the trace's series have to break (``traces.cycle_evidence``): printed and returned."""
    evidence = traces.cycle_evidence(trace).sort("oracle_found", "acf_period", descending=True)
    keys = [column for column in evidence.columns if column not in ("acf_period", "oracle_found")]
    rows = [
        (
            " ".join(str(row[key]) for key in keys if row[key] is not None),
            f"acf at the period {row['acf_period']:5.2f}   oracle finds {row['oracle_found']:4.0%}",
        )
        for row in evidence.head(5).to_dicts()
    ]
    table(
        f"  season to break ({traces.cycle_points(trace, traces.EVERY)} points per cycle; top 5 of {evidence.height})",
        rows,
    )
    return {"max_acf_period": evidence["acf_period"].max(), "max_oracle_found": evidence["oracle_found"].max()}


def _cells(name: str, row: dict[str, Any]) -> str:
    points, seconds = row["mean_delay_points"], row["mean_delay_s"]
    delay = f"{points:>10.1f}{seconds:>9.0f}" if points is not None else f"{'-':>10}{'-':>9}"
    return f"{'':<8}{row['f1']:>6.2f}{row['precision']:>6.2f}{row['recall']:>6.2f}{row['false_positives']:>5}{delay}"


def _beats(figures: dict[str, Any], kind: str) -> bool:
    return bool(figures["default"]["kind"][kind]["f1"] - figures["baseline"]["kind"][kind]["f1"] >= MARGIN)


def targets(name: str, figures: dict[str, Any]) -> list[Target]:
    """Per kind: the default's F1 minus the baseline's, at least :data:`MARGIN`."""
    if "default" not in figures:
        return []
    return [
        Target(
            f"{name} {kind}: F1 default - baseline",
            figures["default"]["kind"][kind]["f1"] - figures["baseline"]["kind"][kind]["f1"],
            MARGIN,
            at_least=True,
        )
        for kind in figures["baseline"]["kind"]
        if kind != ALL
    ]


def main() -> int:
    cli = parser(__doc__.splitlines()[0])
    cli.add_argument(
        "--seed",
        type=int,
        nargs="+",
        default=[1],
        help="seed of the sets scored (default 1); several: their draws pooled into one set each",
    )
    cli.add_argument("--tune-seed", type=int, default=0, help="seed of the sets the baseline is tuned on (default 0)")
    cli.add_argument("--sensitivity", help="passed to the detector (default: its own default)")
    cli.add_argument("--trace", type=Path, default=traces.TRACE, help="a host trace recorded by traces.py")
    cli.add_argument("--tune-trace", type=Path, default=traces.TUNE_TRACE, help="another, to tune the baseline on")
    cli.add_argument(
        "--quiet-trace", type=Path, default=traces.QUIET_TRACE, help="one recorded with nothing else running"
    )
    args = cli.parse_args()
    if args.tune_seed in args.seed:
        cli.error("--tune-seed must not be one of --seed: the baseline is tuned on data it is not scored on")
    if len(set(args.seed)) < len(args.seed):
        cli.error("--seed: each seed once (a draw pooled twice would merge with itself)")
    detector, described = default_detector(args.sensitivity)
    print(f"detector: {described}")
    if args.dir is not None:
        args.dir.mkdir(parents=True, exist_ok=True)
    figures: dict[str, Any] = {
        "detector": described if detector else None,
        "seeds": args.seed,
        "tolerance_points": TOLERANCE_POINTS,
    }
    all_targets: list[Target] = []
    errors: list[str] = []
    trace_sets = [
        TraceSet("host trace", args.trace, args.tune_trace),
        # one quiet recording only: the baseline is tuned on it too (another seed), which favours the baseline
        TraceSet("quiet host trace", args.quiet_trace, args.quiet_trace),
    ]
    sets = labelled_sets(args.scale, args.seed, args.tune_seed, trace_sets)
    for labelled in sets:
        found, broken = evaluate(labelled, detector, args.dir)
        report(labelled, found)
        if labelled.trace is not None:
            found["cycle_evidence"] = report_cycles(labelled.trace)
        figures[labelled.name] = found
        all_targets += targets(labelled.name, found)
        errors += broken
    figures["samples"] = sum(figures[labelled.name]["points"] for labelled in sets)
    return finish("eval_detection", args.scale, _finite(figures), all_targets, errors)


def _finite(value: Any) -> Any:
    """``value`` with NaN and infinities as None, so that the JSON line is valid JSON."""
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


if __name__ == "__main__":
    sys.exit(main())
