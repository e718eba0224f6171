"""How much of its seasonal swing a series has lately missed or overshot: the seasonality breaks that no
single point shows.

While the residual's model is seasonal, each residual is also measured as a share of the swing the profile
expects at the point's phase (plus the residual scale, so a flat phase is not divided by 0), and averaged
over about :data:`1 / GAIN` points. A burst-and-idle workload whose bursts vary in height by a third has
residuals of a third of its swing in every burst, so a burst that does not come at all, or comes half a
period late, is only a few times the series' normal residual point by point (p ~ 1e-3 after the tail model
has seen a few bursts); as a share of the swing, averaged over the burst, it is the whole swing, against a
fraction of it for ordinary variation and a short overshoot at an edge.
"""

from __future__ import annotations

import numpy as np

from analytics.anomaly.state import Arrays, FloatArray, Index

GAIN = 1 / 16  # EW gain per point: a memory of about a burst of a few-minute workload at 5 s steps
PRIOR = (2.7 * GAIN / (2 - GAIN), 0.55, 0.47)
"""(90th percentile, log-moments) of the statistic for Gaussian residuals of one swing: those of a squared
Gaussian, scaled by the variance an EW mean of gain :data:`GAIN` keeps."""


class SwingDeviation(Arrays):
    """Per series: the EW mean of the residual as a share of the expected swing."""

    mean: FloatArray

    def __init__(self) -> None:
        super().__init__(mean=np.zeros(0))

    def step(
        self, idx: Index, residual: FloatArray, swing: FloatArray, scale: FloatArray, seasonal: np.ndarray
    ) -> FloatArray:
        """The squared mean share of each series, 0 where the residual's model is not seasonal (the mean
        starts again from 0 when it becomes so)."""
        share = residual / (swing + scale)
        mean = np.where(seasonal, self.mean[idx] + GAIN * (share - self.mean[idx]), 0.0)
        self.mean[idx] = mean
        return mean * mean
