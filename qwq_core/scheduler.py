"""Run jobs on fixed intervals: no drift, fixed jitter, timeouts, exponential backoff, isolation.

Each job runs on its own grid of wall-clock ticks ``k * interval + offset`` (the offset is a stable hash of
the job's name scaled to its ``jitter``), so samples land on predictable timestamps and never drift however
long a run takes. A run that overruns its interval skips the ticks it missed (counted, not queued). A run
that raises or exceeds its timeout is reported to ``on_done`` and the job backs off exponentially
(``interval × 2^(failures-1)``, capped); one failing or hanging job never delays the others. Synchronous jobs
run in daemon threads: a hung thread cannot be killed, so the job is not started again until it returns,
and it does not keep the process from exiting. A wall clock that steps back rejoins the grid at once.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import inspect
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

log = logging.getLogger(__name__)

MAX_BACKOFF = timedelta(minutes=5)


@dataclass(frozen=True)
class Job:
    """A named unit of periodic work. ``run(scheduled_time)`` may be a plain or an ``async`` function."""

    name: str
    interval: timedelta
    run: Callable[[datetime], Any] | Callable[[datetime], Awaitable[Any]]
    timeout: timedelta
    jitter: timedelta = timedelta(0)
    max_backoff: timedelta = MAX_BACKOFF


@dataclass(frozen=True)
class Outcome:
    """What one run of a job did."""

    job: Job
    scheduled: datetime
    duration: float
    result: Any = None
    error: BaseException | None = None
    timed_out: bool = False
    missed: int = 0
    """Ticks skipped before this run (overrun or a previous run still hanging)."""

    @property
    def ok(self) -> bool:
        """True when the run returned within its timeout."""
        return self.error is None and not self.timed_out


@dataclass
class _State:
    failures: int = 0
    in_flight: concurrent.futures.Future[Any] | None = field(default=None, repr=False)


def in_daemon_thread(
    function: Callable[[datetime], Any], argument: datetime, name: str
) -> concurrent.futures.Future[Any]:
    """Run ``function(argument)`` in a new daemon thread: a run that hangs forever (a stale NFS mount)
    cannot keep the process from exiting, as a thread pool's workers would."""
    future: concurrent.futures.Future[Any] = concurrent.futures.Future()

    def target() -> None:
        if not future.set_running_or_notify_cancel():
            return
        try:
            future.set_result(function(argument))
        except BaseException as exc:
            future.set_exception(exc)

    threading.Thread(target=target, name=f"qwq-job-{name}", daemon=True).start()
    return future


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)


def stable_offset(name: str, jitter: timedelta) -> int:
    """A fixed offset in ``[0, jitter)`` microseconds derived from ``name``: spreads jobs without drift."""
    digest = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big")
    return digest * (jitter // _US) // 2**64


def backoff_ticks(job: Job, failures: int) -> int:
    """How many ticks after this one the next run comes: 1 normally, doubling per consecutive failure."""
    if failures == 0:
        return 1
    backoff = min(job.interval * 2 ** (failures - 1), max(job.max_backoff, job.interval))
    return max(1, round(backoff / job.interval))


def next_tick(after: int, interval: int, offset: int) -> int:
    """The first grid time ``k * interval + offset`` strictly after ``after`` (all in Unix microseconds)."""
    return ((after - offset) // interval + 1) * interval + offset


class Scheduler:
    """Runs a set of jobs until stopped, reporting every run's :class:`Outcome` to ``on_done``."""

    def __init__(
        self, jobs: list[Job], on_done: Callable[[Outcome], None], *, clock: Callable[[], float] = time.time
    ) -> None:
        self.jobs = jobs
        self._on_done = on_done
        self._clock = clock
        self._states = {job.name: _State() for job in jobs}

    def running(self, name: str) -> bool:
        """Whether a synchronous run of job ``name`` is still going (possibly past its timeout)."""
        in_flight = self._states[name].in_flight
        return in_flight is not None and not in_flight.done()

    async def run(self, stop: asyncio.Event) -> None:
        """Run every job on its schedule until ``stop`` is set, then wait for the loops to end."""
        loops = [asyncio.create_task(self._loop(job, stop), name=f"job:{job.name}") for job in self.jobs]
        try:
            await stop.wait()
        finally:
            for task in loops:
                task.cancel()
            await asyncio.gather(*loops, return_exceptions=True)

    async def run_once(self, now: datetime) -> list[Outcome]:
        """Run every job once, concurrently, stamped ``now`` (for ``qwq collect --once``)."""
        outcomes = await asyncio.gather(*(self._execute(job, now, missed=0) for job in self.jobs))
        return list(outcomes)

    def _now(self) -> int:
        return int(self._clock() * 1e6)

    async def _loop(self, job: Job, stop: asyncio.Event) -> None:
        interval = job.interval // _US
        offset = stable_offset(job.name, job.jitter)
        due = next_tick(self._now(), interval, offset)
        missed = 0
        while not stop.is_set():
            due = await self._sleep_until(due, interval, offset)
            state = self._states[job.name]
            if self.running(job.name):
                missed += 1  # the previous run still hangs in its thread
                due = next_tick(self._now(), interval, offset)
                continue
            scheduled = EPOCH + due * _US
            outcome = await self._execute(job, scheduled, missed)
            try:
                self._on_done(outcome)
            except Exception:  # a broken consumer must not stop the schedule
                log.exception("handling the outcome of job %s failed", job.name)
            state.failures = 0 if outcome.ok else state.failures + 1
            ticks = backoff_ticks(job, state.failures)
            earliest = due + ticks * interval
            now = self._now()
            if earliest - now > (ticks + 1) * interval:  # the wall clock stepped back during the run
                earliest = next_tick(now, interval, offset) + ticks * interval
            if earliest > now:
                due, missed = earliest, 0
            else:  # overran: skip to the next tick in the future, counting the ones missed
                following = next_tick(now, interval, offset)
                missed = max(0, (following - due) // interval - ticks)
                due = following

    async def _sleep_until(self, due: int, interval: int, offset: int) -> int:
        """Sleep until ``due``; returns the tick reached (another one if the wall clock stepped back)."""
        longest = due - self._now()
        while (remaining := due - self._now()) > 0:
            if remaining > longest + interval:  # the wait grew: the clock stepped back; rejoin the grid now
                due = next_tick(self._now(), interval, offset)
                longest = due - self._now()
                continue
            await asyncio.sleep(remaining / 1e6)
        return due

    async def _execute(self, job: Job, scheduled: datetime, missed: int) -> Outcome:
        started = time.perf_counter()
        timeout = job.timeout.total_seconds()
        try:
            if inspect.iscoroutinefunction(job.run):
                result = await asyncio.wait_for(job.run(scheduled), timeout)
            else:
                future = in_daemon_thread(job.run, scheduled, job.name)
                self._states[job.name].in_flight = future
                result = await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(future)), timeout)
        except TimeoutError:
            return Outcome(job, scheduled, time.perf_counter() - started, timed_out=True, missed=missed)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            return Outcome(job, scheduled, time.perf_counter() - started, error=exc, missed=missed)
        return Outcome(job, scheduled, time.perf_counter() - started, result=result, missed=missed)
