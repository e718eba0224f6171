"""Invariants of the anomaly detector: scores stay in [0, 1], and online scores never depend on the future."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from analytics.anomaly import OnlineDetector, detect_anomalies
from analytics.anomaly.combine import fuse, score_from_p

START_US = int(datetime(2024, 1, 1, tzinfo=UTC).timestamp() * 1e6)
values = st.one_of(
    st.floats(-1e6, 1e6, allow_nan=False),
    st.just(float("nan")),
    st.sampled_from([0.0, 1.0, 1e12, -1e-12]),
)


@st.composite
def series(draw: st.DrawFn, *, max_size: int = 160) -> pl.DataFrame:
    """One or two series with arbitrary values (NaN included), irregular gaps and, sometimes, a counter."""
    frames = []
    for host in draw(st.lists(st.sampled_from(["a", "b"]), min_size=1, max_size=2, unique=True)):
        size = draw(st.integers(0, max_size))
        gaps = draw(st.lists(st.integers(1, 3_600), min_size=size, max_size=size))
        name = draw(st.sampled_from(["x_ratio", "y_total"]))
        frames.append(
            pl.DataFrame(
                {
                    "name": pl.Series([name] * size, dtype=pl.String),
                    "ts": pl.Series(START_US + np.cumsum(np.array(gaps, dtype=np.int64)) * 1_000_000).cast(
                        pl.Datetime("us", "UTC")
                    ),
                    "value": pl.Series(draw(st.lists(values, min_size=size, max_size=size)), dtype=pl.Float64),
                    "host": pl.Series([host] * size, dtype=pl.String),
                }
            )
        )
    return pl.concat(frames)


@settings(max_examples=30, deadline=None)
@given(series(), st.sampled_from(["low", "medium", "high", 0.9]))
def test_scores_stay_in_the_unit_interval(frame: pl.DataFrame, sensitivity: str | float) -> None:
    scored = detect_anomalies(frame, sensitivity=sensitivity)  # type: ignore[arg-type]
    scores = scored["anomaly_score"].drop_nulls().to_numpy()
    assert np.all((scores >= 0) & (scores <= 1))
    assert scored.height == frame.height
    # A flag needs a score: unscored points are never flagged.
    assert not scored.filter(pl.col("anomaly_score").is_null())["is_anomaly"].any()


@settings(max_examples=25, deadline=None)
@given(series(max_size=220), st.data())
def test_online_scores_never_depend_on_the_future(frame: pl.DataFrame, data: st.DataObject) -> None:
    cut = data.draw(st.integers(0, frame.height))
    position = pl.int_range(pl.len()).over("host")
    whole = detect_anomalies(frame)
    past = detect_anomalies(frame.filter(position < cut))
    assert past["anomaly_score"].to_list() == whole.filter(position < cut)["anomaly_score"].to_list()
    # ... and feeding the same points in arbitrary chunks changes nothing either.
    detector = OnlineDetector()
    bounds = sorted(data.draw(st.lists(st.integers(0, frame.height), max_size=4)))
    chunks = [
        frame.filter(position.is_between(lo, hi - 1)) for lo, hi in zip([0, *bounds], [*bounds, 10**9], strict=True)
    ]
    online = pl.concat([detector.update(chunk) for chunk in chunks]).sort("host", "ts")
    assert online["anomaly_score"].to_list() == whole.sort("host", "ts")["anomaly_score"].to_list()


@given(st.lists(st.floats(0, 1), min_size=1, max_size=6))
def test_fusion_is_a_valid_p_value_and_the_score_is_monotone(pvalues: list[float]) -> None:
    weights = [1 / len(pvalues)] * len(pvalues)
    fused = float(fuse([np.array([p]) for p in pvalues], weights)[0])
    assert min(pvalues) <= fused <= 1.0
    scores = score_from_p(np.sort(np.array(pvalues)))
    assert np.all(np.diff(scores) <= 0) and np.all((scores >= 0) & (scores <= 1))
