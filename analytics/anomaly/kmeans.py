"""Netdata-style consensus of k-means models over lagged differences: "does the recent shape look familiar?".

As in Netdata's machine learning: a point's feature vector is the last ``LAGS`` first differences; each
series periodically trains k-means (k = 2) on the vectors of its recent history (a ring buffer of
``WINDOW`` values) and keeps the median training distance as that model's yardstick (Netdata flags beyond
the 99th percentile; here the per-series tail model of :mod:`analytics.anomaly.combine` sets the
threshold, and a median is a far steadier yardstick than an extreme of 120 vectors), or half the mean
distance where that is larger: a sparse series' median distance is ~0. The last ``MODELS``
models vote: the statistic is the smallest ratio of distance to yardstick among them, so it is large only
when every model finds the shape unfamiliar. Training is staggered by a hash of the series,
so one step retrains only 1/``RETRAIN`` of the series, and is deterministic (centroids start at the mean and
the vector farthest from it), so online and batch scores agree exactly.
"""

from __future__ import annotations

import numpy as np

from analytics.anomaly.state import Arrays, FloatArray, Index

WINDOW = 128
LAGS = 6
MODELS = 3
RETRAIN = 128
_ITERATIONS = 4
_MEAN_SHARE = 0.5  # the least yardstick, as a share of the mean training distance


class KMeansConsensus(Arrays):
    """Ring buffers and the last ``MODELS`` trained models of every series."""

    buffer: FloatArray  # (series, WINDOW)
    count: FloatArray
    offset: FloatArray  # staggering phase in [0, RETRAIN)
    centroids: FloatArray  # (series, MODELS, 2, LAGS)
    threshold: FloatArray  # (series, MODELS); 0 = not trained
    floor: FloatArray  # smallest distance threshold worth trusting (constant series)

    def __init__(self) -> None:
        super().__init__(
            buffer=np.zeros((0, WINDOW)),
            count=np.zeros(0),
            offset=np.zeros(0),
            centroids=np.zeros((0, MODELS, 2, LAGS)),
            threshold=np.zeros((0, MODELS)),
            floor=np.zeros(0),
        )

    def step(self, idx: Index, y: FloatArray) -> FloatArray:
        """Add ``y`` to each series' buffer and return the consensus distance ratio of its new shape."""
        count = self.count[idx].astype(np.int64)
        rows = self.rows(idx)  # written and read in place: a copy of the whole buffers costs more than the step
        self.buffer[rows, count % WINDOW] = y
        recent = self.buffer[rows[:, None], (count[:, None] - np.arange(LAGS, -1, -1)) % WINDOW]
        features = np.diff(recent, axis=1)
        threshold = self.threshold[idx]
        gaps = features[:, None, None, :] - self.centroids[idx]
        distance = np.sqrt(np.min(np.sum(gaps * gaps, axis=3), axis=2))
        yardstick = np.maximum(threshold, self.floor[idx][:, None])
        ratio = np.divide(distance, yardstick, out=np.full_like(distance, np.inf), where=yardstick > 0)
        stat = np.min(np.where(threshold > 0, ratio, np.inf), axis=1)  # every trained model must agree
        stat = np.where(np.isfinite(stat), stat, 0.0)
        self.count[idx] = count + 1
        self._train(idx, count + 1)
        return stat

    def _train(self, idx: Index, count: np.ndarray) -> None:
        offset = self.offset[idx].astype(np.int64)
        due = (count >= WINDOW) & ((count + offset) % RETRAIN == 0)
        if not due.any():
            return
        rows = self.rows(idx)[due]
        order = (count[due, None] + np.arange(WINDOW)) % WINDOW  # oldest first
        history = self.buffer[rows[:, None], order]
        centroids, threshold = fit(np.diff(_windows(history), axis=2))
        slot = ((count[due] + offset[due]) // RETRAIN) % MODELS
        self.centroids[rows, slot] = centroids
        self.threshold[rows, slot] = threshold
        self.floor[rows] = 1e-9 * np.mean(np.abs(history), axis=1) + 1e-12


def _windows(history: FloatArray) -> FloatArray:
    """(series, vectors, LAGS + 1) sliding windows over each row of ``history``."""
    return np.lib.stride_tricks.sliding_window_view(history, LAGS + 1, axis=1)


def fit(vectors: FloatArray) -> tuple[FloatArray, FloatArray]:
    """k-means (k = 2) per series over ``vectors`` (series, count, dims): centroids and the median distance of
    the training vectors to their nearest centroid."""
    mean = vectors.mean(axis=1)
    norms = np.sum(vectors * vectors, axis=2)
    spread = norms - 2 * (vectors @ mean[:, :, None])[:, :, 0]
    far = vectors[np.arange(len(vectors)), np.argmax(spread, axis=1)]
    centroids = np.stack([mean, far], axis=1)
    total, count = vectors.sum(axis=1), vectors.shape[1]
    for _ in range(_ITERATIONS):
        second = (_squared(vectors, norms, centroids).argmin(axis=2) == 1).astype(float)
        size = second.sum(axis=1)[:, None]
        summed = (second[:, None, :] @ vectors)[:, 0, :]
        centroids[:, 1] = np.where(size > 0, summed / np.maximum(size, 1), centroids[:, 1])
        centroids[:, 0] = np.where(size < count, (total - summed) / np.maximum(count - size, 1), centroids[:, 0])
    distance = np.sqrt(np.maximum(_squared(vectors, norms, centroids).min(axis=2), 0.0))
    # Most of a sparse series' vectors are all zeros, so its median distance is ~0 and every burst would
    # look infinitely unfamiliar however often it recurs; half the mean is a distance the series does travel.
    return centroids, np.maximum(np.median(distance, axis=1), _MEAN_SHARE * distance.mean(axis=1))


def _squared(vectors: FloatArray, norms: FloatArray, centroids: FloatArray) -> FloatArray:
    """Squared distances (series, vectors, 2) from each vector to each centroid."""
    cross = vectors @ centroids.transpose(0, 2, 1)
    return norms[:, :, None] - 2 * cross + np.sum(centroids * centroids, axis=2)[:, None, :]
