"""Labelled synthetic series for evaluating anomaly detectors, seeded and reproducible.

:func:`generate` builds, for every kind of anomaly, series of a base shape (flat, trend, daily or weekly
seasonality, random walk, counter) plus noise of a shape (Gaussian, heavy-tailed Student-t, skewed,
quantised to integers, bursty), injects one to three anomalies of that kind after the warm-up, and returns
them with anomaly-free control series (kind ``"none"``). Short gaps of one to three missing points are
sprinkled over a third of the series as a nuisance, never labelled; a long stop, a value stuck or a drop
to zero is the labelled kind ``missing_data``.

Magnitudes are in units of the series' noise (``sigma``) and meant to be plainly visible to a person
looking at the chart: spikes of 6–10 sigma, level shifts of 4–8, trend changes ramping 6–12 over 48–144
points, variance rising 3–6 fold, the daily cycle flattened or shifted by half a day. The injectors
(:func:`draw`, :func:`inject`) are public so that real traces get the same anomalies.

The frame has the detector's columns — ``name``, ``ts``, ``value`` and the labels ``series``, ``base``,
``noise`` — plus the truth columns of :mod:`analytics.evaluation.detection`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

import numpy as np
import polars as pl

from analytics.evaluation.detection import NONE, TRUTH_COLUMNS

START = datetime(2024, 1, 1, tzinfo=UTC)  # a Monday, so the weekly shape starts on a weekday
STEP = timedelta(minutes=5)
POINTS = 4032  # two weeks at 5 minutes
WARMUP = 0.5
GAUGE = "synthetic_value"
COUNTER = "synthetic_events_total"
_DAY_S = 86_400


class Kind(StrEnum):
    """The kinds of anomaly the harness scores separately."""

    SPIKE = "spike"
    LEVEL_SHIFT = "level_shift"
    TREND_CHANGE = "trend_change"
    VARIANCE_CHANGE = "variance_change"
    SEASONALITY_BREAK = "seasonality_break"
    MISSING_DATA = "missing_data"


KINDS = tuple(Kind)
BASES = ("flat", "trend", "daily", "weekly", "random_walk", "counter")
NOISES = ("gaussian", "student_t", "skewed", "quantised", "bursty")
SEASONAL = frozenset({"daily", "weekly"})
PERMANENT = frozenset({Kind.LEVEL_SHIFT, Kind.TREND_CHANGE})
"""Kinds that change the series for good: one per series (the rest may come twice, spikes thrice)."""
COUNTER_KINDS = frozenset({Kind.SPIKE, Kind.LEVEL_SHIFT, Kind.MISSING_DATA})
"""What is injected into a counter (into its increments, or its reported value for missing data)."""


def bases_for(kind: Kind) -> tuple[str, ...]:
    """The base shapes an anomaly of ``kind`` is injected into."""
    if kind is Kind.SEASONALITY_BREAK:
        return tuple(base for base in BASES if base in SEASONAL)
    return tuple(base for base in BASES if base != "counter" or kind in COUNTER_KINDS)


# ---- injecting anomalies -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Anomaly:
    """One anomaly to inject: its kind, how many points it lasts, its size in sigmas, and its variant."""

    kind: Kind
    length: int
    magnitude: float = 0.0
    variant: str = ""


def draw(kind: Kind, rng: np.random.Generator, *, period: int | None = None, counter: bool = False) -> Anomaly:
    """A random anomaly of ``kind``; ``period`` (points per cycle) is needed for a seasonality break."""
    sign = float(rng.choice([-1.0, 1.0]))
    match kind:
        case Kind.SPIKE:
            return Anomaly(kind, int(rng.integers(1, 4)), sign * rng.uniform(6, 10))
        case Kind.LEVEL_SHIFT:
            return Anomaly(kind, 12, sign * rng.uniform(4, 8))
        case Kind.TREND_CHANGE:
            return Anomaly(kind, int(rng.integers(48, 145)), sign * rng.uniform(6, 12))
        case Kind.VARIANCE_CHANGE:
            return Anomaly(kind, int(rng.integers(36, 145)), rng.uniform(3, 6))
        case Kind.SEASONALITY_BREAK:
            if period is None:
                raise ValueError("a seasonality break needs the period of the season")
            length = int(rng.integers(max(24, period // 4), period + 1))
            return Anomaly(kind, length, variant=str(rng.choice(["shift", "flatten"])))
        case Kind.MISSING_DATA:
            variants = ["stop", "stuck"] if counter else ["stop", "stuck", "zero"]
            return Anomaly(kind, int(rng.integers(24, 97)), variant=str(rng.choice(variants)))
    raise ValueError(f"unknown kind {kind!r}")


def inject(
    anomaly: Anomaly,
    values: np.ndarray,
    present: np.ndarray,
    start: int,
    rng: np.random.Generator,
    *,
    sigma: float,
    period: int | None = None,
    seasonal: np.ndarray | None = None,
) -> tuple[int, int]:
    """Inject ``anomaly`` at index ``start`` into ``values`` and ``present`` (in place); return its window.

    The window is the first and last index (inclusive) of the points labelled anomalous. For a stop, the
    points are removed and the window ends at the first point after the gap, the one that reveals it. A
    ``"flatten"`` seasonality break subtracts ``seasonal``; without it, the cycle is shifted by half.
    """
    end = start + anomaly.length
    match anomaly.kind:
        case Kind.SPIKE:
            values[start:end] += anomaly.magnitude * sigma
        case Kind.LEVEL_SHIFT:
            values[start:] += anomaly.magnitude * sigma
        case Kind.TREND_CHANGE:
            ramp = np.arange(1, anomaly.length + 1) / anomaly.length
            values[start:end] += anomaly.magnitude * sigma * ramp
            values[end:] += anomaly.magnitude * sigma
        case Kind.VARIANCE_CHANGE:
            extra = sigma * np.sqrt(anomaly.magnitude**2 - 1)
            values[start:end] += rng.normal(0.0, extra, anomaly.length)
        case Kind.SEASONALITY_BREAK:
            _break_season(anomaly, values, start, period, seasonal)
        case Kind.MISSING_DATA:
            return _go_missing(anomaly, values, present, start)
    return start, end - 1


def _break_season(
    anomaly: Anomaly, values: np.ndarray, start: int, period: int | None, seasonal: np.ndarray | None
) -> None:
    end = start + anomaly.length
    if anomaly.variant == "flatten" and seasonal is not None:
        values[start:end] -= seasonal[start:end] - seasonal.mean()
        return
    if period is None or start < period // 2:
        raise ValueError("a shifted season needs the period and half a period of history")
    values[start:end] = values[start - period // 2 : end - period // 2].copy()


def _go_missing(anomaly: Anomaly, values: np.ndarray, present: np.ndarray, start: int) -> tuple[int, int]:
    end = start + anomaly.length
    match anomaly.variant:
        case "stop":
            present[start:end] = False
            return start, end
        case "stuck":
            values[start:end] = values[start - 1]
        case _:
            values[start:end] = 0.0
    return start, end - 1


def place(lengths: Sequence[int], lo: int, hi: int, rng: np.random.Generator, *, gap: int = 48) -> list[int]:
    """Start indexes in ``[lo, hi)`` for windows of ``lengths``, in order, each ``gap`` points clear of the next.

    The range is cut into equal slots, one window in each; when a window does not fit its slot, the last
    windows are dropped until the rest fit (none if even the first does not fit the whole range).
    """
    for count in range(len(lengths), 0, -1):
        slot = (hi - lo) // count
        rooms = [slot - length - gap for length in lengths[:count]]
        if min(rooms) >= 0:
            return [lo + index * slot + int(rng.integers(0, room + 1)) for index, room in enumerate(rooms)]
    return []


# ---- base shapes and noise -----------------------------------------------------------------------------
def base_shape(base: str, seconds: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A base shape in sigma units over ``seconds`` since a Monday midnight, and its seasonal part."""
    zeros = np.zeros_like(seconds, dtype=float)
    phase = 2 * np.pi * seconds / _DAY_S + rng.uniform(0, 2 * np.pi)
    daily = rng.uniform(4, 10) * (np.sin(phase) + 0.3 * np.sin(2 * phase + rng.uniform(0, 2 * np.pi)))
    match base:
        case "flat":
            return zeros, zeros
        case "counter":  # the rate of requests follows the day; its seasonality is never broken
            return daily, zeros
        case "trend":
            return rng.choice([-1, 1]) * rng.uniform(5, 15) * seconds / max(1.0, seconds[-1]), zeros
        case "daily":
            return daily, daily
        case "weekly":
            weekend = (seconds // _DAY_S) % 7 >= 5
            weekly = np.where(weekend, 0.3 * daily - 0.5 * np.abs(daily).max(), daily)
            return weekly, weekly
        case "random_walk":
            return np.cumsum(rng.normal(0, 0.2, seconds.size)), zeros
    raise ValueError(f"unknown base shape {base!r}")


def noise(shape: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """Noise of unit variance (bursty: unit outside its bursts); ``quantised`` is rounded later, in units."""
    match shape:
        case "gaussian" | "quantised":
            return rng.normal(0, 1, size)
        case "student_t":
            return rng.standard_t(4, size) / np.sqrt(2)
        case "skewed":
            return (rng.gamma(2.0, 1.0, size) - 2.0) / np.sqrt(2)
        case "bursty":
            return rng.normal(0, 1, size) * _bursts(size, rng)
    raise ValueError(f"unknown noise shape {shape!r}")


def _bursts(size: int, rng: np.random.Generator) -> np.ndarray:
    """Noise scale: 1, and 3 in short bursts of 3–8 points covering about 2 % of the series."""
    scale = np.ones(size)
    for at in rng.integers(0, size, max(1, size // 275)):
        scale[at : at + int(rng.integers(3, 9))] = 3.0
    return scale


# ---- the data set --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Spec:
    """One series to generate."""

    series: str
    kind: str
    base: str
    noise: str


def specs(series_per_kind: int, kinds: Sequence[Kind] = KINDS, controls: int | None = None) -> list[Spec]:
    """Series per kind cycling through the base shapes that kind applies to and every noise shape, then controls."""
    out = []
    for kind in [*kinds, NONE]:
        bases = BASES if kind == NONE else bases_for(Kind(kind))
        count = series_per_kind if kind != NONE or controls is None else controls
        for index in range(count):
            noise_shape = NOISES[(index + index // len(bases)) % len(NOISES)]
            out.append(Spec(f"{kind}-{index:02d}", kind, bases[index % len(bases)], noise_shape))
    return out


def generate(
    seed: int,
    *,
    series_per_kind: int = 8,
    points: int = POINTS,
    step: timedelta = STEP,
    kinds: Sequence[Kind] = KINDS,
    controls: int | None = None,
    start: datetime = START,
) -> pl.DataFrame:
    """Labelled series: ``series_per_kind`` per kind and as many controls (or ``controls``), ``points`` each.

    The same ``seed`` gives the same frame. Anomalies lie after the first ``WARMUP`` share of each series.
    """
    if points < 288:
        raise ValueError("series need at least 288 points (a day at 5 minutes)")
    step_s = step / timedelta(seconds=1)
    seconds = np.arange(points) * step_s
    ts = (start - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1) + np.arange(points) * int(step_s * 1e6)
    frames = [
        _series(spec, seconds, ts, np.random.default_rng([seed, index]), round(_DAY_S / step_s))
        for index, spec in enumerate(specs(series_per_kind, kinds, controls))
    ]
    return pl.concat(frames)


def _series(spec: Spec, seconds: np.ndarray, ts: np.ndarray, rng: np.random.Generator, period: int) -> pl.DataFrame:
    """One labelled series of ``spec``."""
    size = seconds.size
    shape, seasonal = base_shape(spec.base, seconds, rng)
    quantised = spec.noise == "quantised"
    scale = rng.uniform(0.5, 2) if quantised else 10 ** rng.uniform(-1, 2)
    values = scale * (rng.uniform(20, 60) + shape + noise(spec.noise, size, rng))
    present = np.ones(size, dtype=bool)
    counter = spec.base == "counter"
    anomalies = [] if spec.kind == NONE else _anomalies(Kind(spec.kind), rng, period, counter=counter)
    starts = place([a.length for a in anomalies], int(size * (WARMUP + 0.05)), size - 24, rng)
    if counter:
        values, found = _counter(values, present, anomalies, starts, rng, scale)
    else:
        seasonal = seasonal * scale
        found = [
            inject(anomaly, values, present, at, rng, sigma=scale, period=period, seasonal=seasonal)
            for anomaly, at in zip(anomalies, starts, strict=False)
        ]
    if quantised or counter:
        values = np.round(values)
    _nuisance_gaps(present, found, rng)
    name = COUNTER if counter else GAUGE
    labels = {"name": name, "series": spec.series, "base": spec.base, "noise": spec.noise}
    return labelled_frame(ts, values, present, found, labels, spec.kind)


def _anomalies(kind: Kind, rng: np.random.Generator, period: int, *, counter: bool) -> list[Anomaly]:
    count = 1 if kind in PERMANENT else int(rng.integers(1, 4 if kind is Kind.SPIKE else 3))
    return [draw(kind, rng, period=period, counter=counter) for _ in range(count)]


def _counter(
    increments: np.ndarray,
    present: np.ndarray,
    anomalies: list[Anomaly],
    starts: list[int],
    rng: np.random.Generator,
    sigma: float,
) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """A counter from per-step increments: rate anomalies go into the increments, missing data into the total."""
    increments = increments.copy()
    found = []
    late = []
    for anomaly, at in zip(anomalies, starts, strict=False):
        if anomaly.kind is Kind.MISSING_DATA:
            late.append((anomaly, at))
        else:
            found.append(inject(anomaly, increments, present, at, rng, sigma=sigma))
    total = np.cumsum(np.maximum(increments, 0.0))
    found += [inject(anomaly, total, present, at, rng, sigma=sigma) for anomaly, at in late]
    return total, found


def _nuisance_gaps(present: np.ndarray, found: list[tuple[int, int]], rng: np.random.Generator) -> None:
    """Remove 1–3 runs of 1–3 points from a third of the series, away from the windows (in place)."""
    if rng.uniform() >= 1 / 3:
        return
    clear = np.ones(present.size, dtype=bool)
    for first, last in found:
        clear[max(0, first - 24) : last + 48] = False
    for _ in range(int(rng.integers(1, 4))):
        at, length = int(rng.integers(1, present.size - 4)), int(rng.integers(1, 4))
        if clear[at : at + length].all():
            present[at : at + length] = False


def labelled_frame(
    ts_us: np.ndarray,
    values: np.ndarray,
    present: np.ndarray,
    found: Sequence[tuple[int, int]],
    labels: Mapping[str, str | None],
    kind: str,
) -> pl.DataFrame:
    """A labelled frame of the present points of one series: its labels, values and truth columns.

    ``found`` holds each window's first and last index (inclusive) into ``ts_us`` (epoch microseconds).
    """
    window = np.full(ts_us.size, -1)
    for index, (first, last) in enumerate(found):
        window[first : last + 1] = index
    starts = np.array([ts_us[first] for first, _ in found] + [0], dtype=np.int64)
    ends = np.array([ts_us[last] for _, last in found] + [0], dtype=np.int64)
    inside = window >= 0
    stamp = pl.Datetime("us", "UTC")
    frame = pl.DataFrame(
        {
            "ts": pl.Series(ts_us, dtype=pl.Int64).cast(stamp),
            "value": pl.Series(values, dtype=pl.Float64),
            "kind": pl.Series([kind] * ts_us.size, dtype=pl.String),
            "label": pl.Series(inside),
            "window_start": pl.Series(np.where(inside, starts[window], 0)).cast(stamp),
            "window_end": pl.Series(np.where(inside, ends[window], 0)).cast(stamp),
        }
    ).with_columns(
        pl.when("label").then(pl.col("window_start", "window_end")),
        **{label: pl.lit(value, pl.String) for label, value in labels.items()},
    )
    return frame.filter(pl.Series(present)).select(*labels, "ts", "value", *TRUTH_COLUMNS)
