"""Buffer samples, events and metadata in memory and commit them to the store once per flush interval.

One transaction per flush keeps ingestion cheap at one-second collection, and bounds what a crash can
lose to the last flush interval. If the store refuses a flush (disk full, a bug), the batch stays buffered
and is retried at the next flush; past ``max_samples`` the oldest batches are dropped and counted.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

import polars as pl

from qwq_core.model import Event, MetricInfo
from qwq_core.store import ingest
from qwq_core.store.base import Store

log = logging.getLogger(__name__)


@dataclass
class WriterStats:
    """Counters of the writer's work since it started."""

    flushes: int = 0
    samples_written: int = 0
    flush_errors: int = 0
    samples_dropped: int = 0
    last_flush_seconds: float = 0.0
    buffered: int = 0


class BufferedWriter:
    """Thread-safe buffer in front of a :class:`Store`; :meth:`flush` commits everything buffered."""

    def __init__(self, store: Store, *, max_samples: int = 2_000_000) -> None:
        self.store = store
        self.max_samples = max_samples
        self.stats = WriterStats()
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._frames: deque[pl.DataFrame] = deque()
        self._events: list[Event] = []
        self._metrics: dict[str, MetricInfo] = {}
        self._described: dict[str, MetricInfo] = {}

    def add(self, frame: pl.DataFrame) -> None:
        """Buffer a sample frame; it is checked and normalised here, so one bad frame raises in its writer's
        code instead of failing every later flush (see :func:`qwq_core.store.ingest.normalise`)."""
        if frame.is_empty():
            return
        if not ingest.is_normalised(frame):
            frame = ingest.normalise(frame)
        with self._lock:
            self._frames.append(frame)
            self.stats.buffered += frame.height
            while self.stats.buffered > self.max_samples and len(self._frames) > 1:
                dropped = self._frames.popleft()
                self.stats.buffered -= dropped.height
                self.stats.samples_dropped += dropped.height

    def add_events(self, events: Iterable[Event]) -> None:
        """Buffer events."""
        with self._lock:
            self._events.extend(events)

    def emit(self, event: Event) -> None:
        """Buffer one event: the event sink handed to collectors."""
        self.add_events([event])

    def add_metrics(self, metrics: Iterable[MetricInfo]) -> None:
        """Buffer metric metadata; unchanged metadata already stored is not written again."""
        with self._lock:
            for info in metrics:
                if self._described.get(info.name) != info:
                    self._metrics[info.name] = info

    def flush(self) -> int:
        """Commit everything buffered; returns the samples written. On failure the data stays buffered."""
        with self._flush_lock:
            with self._lock:
                frames, self._frames = list(self._frames), deque()
                events, self._events = self._events, []
                metrics, self._metrics = self._metrics, {}
            started = time.perf_counter()
            try:
                if metrics:
                    self.store.describe(metrics.values())
                    self._described.update(metrics)
                    metrics = {}
                written = self.store.write(pl.concat(frames, how="diagonal_relaxed")) if frames else 0
                frames = []
                if events:
                    self.store.record(events)
            except Exception:  # the store refused, or a bug: keep the data either way, bounded by max_samples
                self._requeue(frames, events, metrics)
                self.stats.flush_errors += 1
                raise
            with self._lock:
                self.stats.buffered = sum(f.height for f in self._frames)
            self.stats.flushes += 1
            self.stats.samples_written += written
            self.stats.last_flush_seconds = time.perf_counter() - started
            return written

    def _requeue(self, frames: list[pl.DataFrame], events: list[Event], metrics: dict[str, MetricInfo]) -> None:
        with self._lock:
            self._frames.extendleft(reversed(frames))
            self._events[:0] = events
            for name, info in metrics.items():
                self._metrics.setdefault(name, info)
