"""Change-point tests on standardised residuals: level shifts and trend changes, variance changes.

Two two-sided CUSUMs (Page, 1954) per series:

* **level**, on the residual z after removing its slow EW mean (a steady bias, e.g. a smoother lagging a
  trend, is not a change) and clipping it (a spike is not a shift). A trend change shows up as a growing
  bias, so the same test catches it;
* **scale**, on ``sqrt(|z|)`` (clipped; the square root makes it nearly symmetric for most noise shapes):
  up for a burst of noise, down for a series that flatlines.

Each input is standardised by its own EW mean and variance, and the CUSUM's p-value comes from the Brownian
approximation ``P(S > h) = exp(-2 k h / s2)`` (with a skewness correction to ``2 k``), where ``s2`` is the
long-run variance relative to white noise:
the larger of what the lag-1 autocorrelation implies and how much a short (~40-point) EW mean of the input
wanders compared with white noise, so residuals that drift slowly, or noise that comes in bursts, do not
read as changes. The inputs are bounded,
so an anomaly cannot distort what the tests learn about normal behaviour. Once a level change is confirmed
the caller resets the test and moves the models to the new level, so it becomes normal at once instead of
alarming until the smoothers catch up; a confirmed variance change only restarts its test (a burst of noise
is usually short, and scales grown to it at once would hide the next).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from analytics.anomaly.state import Arrays, FloatArray, Index

DRIFT = 0.5  # allowance k, in standard deviations of the standardised input
_Z_CLIP = 4.0
_GAIN = 1 / 500  # memory of the input's mean, variance and autocorrelation
_BIAS_GAIN = 0.005
LATEST = 5  # z values the size of a confirmed level shift is measured on
_MAX_CORRELATION = 0.9
_DOUBT = 1e-3
_BLOCK_GAIN = 0.05
_BLOCK_IID = _BLOCK_GAIN / (2 - _BLOCK_GAIN)  # mean square of the short EW mean of white noise


class Cusum(Arrays):
    """A two-sided CUSUM of a standardised input, with the input's running moments."""

    pos: FloatArray
    neg: FloatArray
    mean: FloatArray
    var: FloatArray
    cov: FloatArray
    last: FloatArray
    block: FloatArray  # short EW mean of the standardised input
    block_var: FloatArray  # its mean square: how far short stretches wander
    doubt: FloatArray  # the smaller p-value at the previous point
    skew: FloatArray  # third moment of the standardised input
    count: FloatArray

    def __init__(self, mean: float, var: float) -> None:
        self.prior = (mean, var)
        zero = np.zeros(0)
        super().__init__(
            pos=zero,
            neg=zero,
            mean=zero,
            var=zero,
            cov=zero,
            last=zero,
            block=zero,
            block_var=zero,
            doubt=zero,
            skew=zero,
            count=zero,
        )

    def defaults(self) -> dict[str, float]:
        return {
            "mean": self.prior[0],
            "var": self.prior[1],
            "last": self.prior[0],
            "block_var": _BLOCK_IID,
            "doubt": 1.0,
        }

    def step(self, idx: Index, x: FloatArray) -> tuple[FloatArray, FloatArray]:
        """Add ``x``; return the p-values of an upward and of a downward change."""
        # Copies: with a slice ``idx`` these would be views, changed under our feet by the updates below.
        mean, var, cov, last = (
            self.mean[idx].copy(),
            self.var[idx].copy(),
            self.cov[idx].copy(),
            self.last[idx].copy(),
        )
        sd = np.sqrt(np.maximum(var, 1e-12))
        # Clipped again once standardised: the input's own spread may be far below its clip (a series that
        # is mostly flat), and one spike must not be worth a level shift's evidence.
        e = np.clip((x - mean) / sd, -_Z_CLIP, _Z_CLIP)
        pos = np.maximum(0.0, self.pos[idx] + e - DRIFT)
        neg = np.maximum(0.0, self.neg[idx] - e - DRIFT)
        correlation = np.clip(cov / np.maximum(var, 1e-12), -0.5, _MAX_CORRELATION)
        block = self.block[idx] + _BLOCK_GAIN * (e - self.block[idx])
        long_run = np.maximum((1 + correlation) / (1 - correlation), self.block_var[idx] / _BLOCK_IID)
        skew = self.skew[idx]
        long_run = np.maximum(long_run, 1.0)
        up = np.minimum(1.0, np.exp(-_tilt(skew) / long_run * pos))
        down = np.minimum(1.0, np.exp(-_tilt(-skew) / long_run * neg))
        # What may be a change teaches the moments little, or it would soon pass for normal.
        count = self.count[idx] + 1.0
        learn = np.maximum(1.0 / (count + 10.0), _GAIN)
        gain = learn * np.minimum(1.0, self.doubt[idx] / _DOUBT)  # as of the previous point: a lone outlier counts
        self.doubt[idx] = np.minimum(up, down)
        self.block[idx] = block
        self.block_var[idx] = self.block_var[idx] + gain * (block * block - self.block_var[idx])
        self.cov[idx] = cov + gain * ((x - mean) * (last - mean) - cov)
        self.mean[idx] = mean + gain * (x - mean)
        self.var[idx] = var + gain * ((x - mean) ** 2 - var)
        self.skew[idx] = skew + gain * (e**3 - skew)
        self.last[idx], self.pos[idx], self.neg[idx], self.count[idx] = x, pos, neg, count
        return up, down

    def reset(self, idx: Index) -> None:
        """Forget the accumulated evidence (after a confirmed change)."""
        self.pos[idx] = 0.0
        self.neg[idx] = 0.0
        self.doubt[idx] = 1.0


def _tilt(skew: FloatArray) -> FloatArray:
    """The decay rate of the CUSUM's tail for increments of unit variance, drift ``-DRIFT`` and skewness
    ``skew``: the root of the cumulant expansion ``-k t + t^2 / 2 + skew t^3 / 6 = 0`` (``2 k`` when
    symmetric; smaller, so more cautious, when the increments' tail on this side is long)."""
    a = np.where(np.abs(skew) < 1e-6, 1e-6, skew) / 6.0
    root = (-0.5 + np.sqrt(np.maximum(0.25 + 4.0 * a * DRIFT, 0.0))) / (2.0 * a)
    return np.where(0.25 + 4.0 * a * DRIFT > 0, np.clip(root, 0.2 * DRIFT, 2.0 * DRIFT), 2.0 * DRIFT)


class ChangeStatistics(Arrays):
    """The level and scale tests of each series, and what a confirmed change needs to adapt the models."""

    bias: FloatArray
    latest: FloatArray  # (series, LATEST): the last values of z, oldest first

    def __init__(self) -> None:
        super().__init__(bias=np.zeros(0), latest=np.zeros((0, LATEST)))
        self.level = Cusum(0.0, 1.5)
        self.scale = Cusum(0.8, 0.1)

    def grow(self, count: int) -> None:
        super().grow(count)
        self.level.grow(count)
        self.scale.grow(count)

    def state(self, prefix: str) -> dict[str, np.ndarray[Any, Any]]:
        return {**super().state(prefix), **self.level.state(f"{prefix}.level"), **self.scale.state(f"{prefix}.scale")}

    def load(self, prefix: str, state: dict[str, np.ndarray[Any, Any]]) -> None:
        super().load(prefix, state)
        self.level.load(f"{prefix}.level", state)
        self.scale.load(f"{prefix}.scale", state)

    def step(self, idx: Index, z: FloatArray) -> tuple[FloatArray, FloatArray]:
        """Update with a standardised residual ``z``; p-values of a level change and of a variance change."""
        bias = self.bias[idx]
        centred = np.clip(z - bias, -_Z_CLIP, _Z_CLIP)
        self.bias[idx] = bias + _BIAS_GAIN * centred
        loudness = np.sqrt(np.minimum(np.abs(z), _Z_CLIP))
        self.latest[idx] = np.concatenate([self.latest[idx][:, 1:], z[:, None]], axis=1)
        up, down = self.level.step(idx, centred)
        louder, quieter = self.scale.step(idx, loudness)
        return np.minimum(1.0, 2 * np.minimum(up, down)), np.minimum(1.0, 2 * np.minimum(louder, quieter))

    def confirm_level(self, idx: Index) -> FloatArray:
        """A level change was confirmed: reset its test; return the size of the shift, the median of the
        latest z (a spike or a burst of noise among them would make a mean of them wildly wrong)."""
        shift = np.median(self.latest[idx], axis=1)
        self.level.reset(idx)
        self.latest[idx] = 0.0
        self.bias[idx] = 0.0
        return shift

    def confirm_scale(self, idx: Index) -> None:
        """A variance change was confirmed: reset its test."""
        self.scale.reset(idx)
