"""Cycles other than the day and the week: the period search, and the detector on a series that has one."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from analytics.anomaly import detect_anomalies
from analytics.anomaly.cycle import HISTORY, CycleFinder, find_periods
from tests.unit.analytics.test_anomaly import episodes, frame, noise

SIZE = 1024


def sine(period: float, amplitude: float, seed: int, size: int = SIZE) -> np.ndarray:
    t = np.arange(size)
    rng = np.random.default_rng(seed)
    return amplitude * np.sin(2 * np.pi * t / period + rng.uniform(0, 2 * np.pi)) + rng.normal(size=size)


@settings(max_examples=60, deadline=None)
@given(period=st.floats(5, 120), amplitude=st.floats(2.5, 20), seed=st.integers(0, 2**16))
@example(period=100.0, amplitude=2.5, seed=11266)  # its first peak reads 4 % long: the multiple must be found
def test_the_period_of_a_noisy_cycle_is_found_not_a_multiple_of_it(period: float, amplitude: float, seed: int) -> None:
    found = find_periods(sine(period, amplitude, seed)[None, :], np.zeros(1))[0]
    assert abs(found - period) <= max(0.5, 0.03 * period)


def test_a_pulse_train_has_the_period_of_its_pulses() -> None:
    t = np.arange(SIZE)
    rows = [5 * np.exp(-0.5 * ((t % p - p / 2) / (p / 12)) ** 2) + noise(SIZE, p) for p in (20, 75, 200)]
    assert np.allclose(find_periods(np.array(rows), np.zeros(3)), [20, 75, 200], rtol=0.02)


@pytest.mark.parametrize("shape", ["white", "student_t", "random_walk", "smooth", "trend"])
def test_noise_trends_and_walks_have_no_cycle(shape: str) -> None:
    rng = np.random.default_rng(3)
    rows = rng.normal(size=(300, SIZE))
    if shape == "student_t":
        rows = rng.standard_t(2, size=(300, SIZE))
    elif shape == "random_walk":
        rows = np.cumsum(rows, axis=1)
    elif shape == "smooth":  # AR(1) at 0.95: long memory, no period
        for i in range(1, SIZE):
            rows[:, i] += 0.95 * rows[:, i - 1]
    elif shape == "trend":
        rows = rows + np.linspace(0, 50, SIZE)
    share = (find_periods(rows, np.zeros(len(rows))) > 0).mean()
    assert share <= (0.05 if shape == "random_walk" else 0.01)


def test_a_known_period_is_kept_while_it_still_fits_and_dropped_when_it_does_not() -> None:
    # A strong second harmonic: the search alone may name 60 or 30; a known 60 stays.
    t = np.arange(SIZE)
    values = np.sin(2 * np.pi * t / 60) + 0.9 * np.sin(4 * np.pi * t / 60) + 0.2 * noise(SIZE, 1)
    assert find_periods(values[None, :], np.array([60.0]))[0] == 60.0
    assert find_periods(sine(40, 5, 2)[None, :], np.array([60.0]))[0] == pytest.approx(40, rel=0.02)
    assert find_periods(noise(SIZE, 4)[None, :], np.array([60.0]))[0] == 0.0


def test_a_known_period_is_kept_when_the_search_names_its_multiple_or_divisor() -> None:
    # Bursts of uneven height every 60 points: the double correlates about as well as the period itself.
    rng = np.random.default_rng(4)
    t = np.arange(SIZE)
    values = np.where(t % 60 < 8, rng.choice([2.0, 4.0, 6.0, 8.0], SIZE), 0.0) + 0.05 * rng.normal(size=SIZE)
    values += np.where(t % 120 < 8, 3.0, 0.0)  # every other burst is larger
    found = find_periods(values[None, :], np.zeros(1))[0]
    assert found == pytest.approx(120, rel=0.02)  # what the search alone names
    assert find_periods(values[None, :], np.array([60.0]))[0] == 60.0
    assert find_periods(values[None, :], np.array([240.0]))[0] == 240.0
    assert find_periods(values[None, :], np.array([90.0]))[0] == pytest.approx(120, rel=0.02)  # not a multiple


def test_the_finder_searches_a_ring_of_recent_values_oldest_first() -> None:
    finder = CycleFinder()
    finder.grow(2)
    values = np.stack([sine(25, 5, 5, 3 * HISTORY), noise(3 * HISTORY, 6)])
    changes = []
    for i in range(values.shape[1]):
        moved, periods = finder.step(slice(0, 2), values[:, i])
        changes += [(i, int(row), round(float(p))) for row, p in zip(moved, periods, strict=True)]
    assert changes[0][1:] == (0, 25)  # found once, at the first search, and kept through the ring's wraps
    assert [row for _, row, _ in changes] == [0]
    assert finder.period[1] == 0.0


def test_a_spike_and_a_broken_cycle_are_flagged_where_the_period_is_not_a_day() -> None:
    # A 37-minute cycle ten times the noise: a spike of 8 noise sigmas is within the cycle's swing,
    # and a stretch shifted by half a cycle keeps every value inside the usual range.
    size, spike, shifted = 4000, 3000, 3400
    values = 50 + 10 * np.sin(2 * np.pi * np.arange(size) / 37) + np.random.default_rng(8).normal(size=size)
    values[spike] += 8
    values[shifted : shifted + 37] = values[shifted - 18 : shifted + 19].copy()
    starts = [s for s in episodes(detect_anomalies(frame(values))) if s > 1500]
    assert spike in starts
    assert starts[1] - shifted < 20
    assert all(s == spike or shifted <= s <= shifted + 38 for s in starts)  # and where the shift ends
