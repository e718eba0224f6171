"""The scheduler against real time: grid alignment, overruns, hangs, timeouts, backoff, isolation."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from qwq_core.scheduler import EPOCH, Job, Outcome, Scheduler, backoff_ticks, next_tick, stable_offset

TICK = timedelta(milliseconds=50)


def run_for(jobs: list[Job], seconds: float) -> list[Outcome]:
    """Run ``jobs`` for ``seconds`` of wall time; return every outcome in order."""
    outcomes: list[Outcome] = []

    async def main() -> None:
        stop = asyncio.Event()
        asyncio.get_running_loop().call_later(seconds, stop.set)
        await Scheduler(jobs, outcomes.append).run(stop)

    asyncio.run(main())
    return outcomes


def of(outcomes: list[Outcome], name: str) -> list[Outcome]:
    return [o for o in outcomes if o.job.name == name]


@given(st.integers(0, 2 * 10**15), st.sampled_from([50_000, 10**6, 7 * 10**6, 60 * 10**6]), st.floats(0, 0.999))
def test_next_tick_is_the_first_grid_time_after(after: int, interval: int, fraction: float) -> None:
    offset = int(fraction * interval)
    tick = next_tick(after, interval, offset)
    assert after < tick <= after + interval
    assert (tick - offset) % interval == 0


def test_offsets_are_stable_per_name_and_within_the_jitter() -> None:
    jitter = timedelta(seconds=10)
    offsets = {name: stable_offset(name, jitter) for name in ("host", "node", "web", "db")}
    assert offsets == {name: stable_offset(name, jitter) for name in offsets}
    assert all(0 <= value < 10_000_000 for value in offsets.values())
    assert len(set(offsets.values())) == len(offsets)
    assert stable_offset("host", timedelta(0)) == 0


def test_backoff_doubles_per_failure_up_to_the_cap() -> None:
    job = Job("j", timedelta(seconds=10), lambda now: None, timedelta(seconds=1), max_backoff=timedelta(minutes=1))
    assert [backoff_ticks(job, n) for n in range(6)] == [1, 1, 2, 4, 6, 6]


def test_runs_land_on_the_grid_without_drift() -> None:
    def slow(now: datetime) -> None:
        time.sleep(0.02)  # work shorter than the interval must not push later runs back

    outcomes = run_for([Job("grid", TICK, slow, timeout=timedelta(seconds=1))], 1.2)
    assert len(outcomes) >= 12
    assert all((o.scheduled - EPOCH) % TICK == timedelta(0) for o in outcomes)  # exactly on the grid
    assert all(o.ok for o in outcomes)


def test_an_overrunning_job_skips_and_counts_missed_ticks() -> None:
    outcomes = run_for([Job("slow", TICK, lambda now: time.sleep(0.12), timeout=timedelta(seconds=1))], 1.0)
    gaps = [round((b.scheduled - a.scheduled) / TICK) for a, b in zip(outcomes, outcomes[1:], strict=False)]
    assert gaps and all(gap >= 3 for gap in gaps)  # 120 ms of work at a 50 ms interval
    assert [o.missed for o in outcomes[1:]] == [gap - 1 for gap in gaps]


def test_a_hung_sync_job_times_out_is_not_restarted_and_does_not_stop_others() -> None:
    release = threading.Event()
    started = []

    def hang(now: datetime) -> None:
        started.append(now)
        release.wait(5)

    jobs = [
        Job("hang", TICK, hang, timeout=timedelta(milliseconds=100)),
        Job("busy", TICK, lambda now: "fine", timeout=timedelta(seconds=1)),
    ]
    try:
        outcomes = run_for(jobs, 1.0)
    finally:
        release.set()
    hung = of(outcomes, "hang")
    assert len(started) == 1  # never started again while its thread still runs
    assert hung[0].timed_out and not hung[0].ok
    assert len(of(outcomes, "busy")) >= 12 and all(o.result == "fine" for o in of(outcomes, "busy"))


def test_an_async_job_is_cancelled_at_its_timeout() -> None:
    cancelled = []

    async def sleepy(now: datetime) -> None:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.append(now)
            raise

    outcomes = run_for([Job("sleepy", timedelta(milliseconds=200), sleepy, timeout=TICK)], 0.5)
    assert outcomes and all(o.timed_out for o in outcomes)
    assert len(cancelled) == len(outcomes)


def test_failures_back_off_exponentially_and_success_resets() -> None:
    calls = []

    def flaky(now: datetime) -> None:
        calls.append(now)
        if len(calls) <= 4:
            raise RuntimeError(f"failure {len(calls)}")

    job = Job("flaky", TICK, flaky, timeout=timedelta(seconds=1), max_backoff=timedelta(seconds=10))
    outcomes = run_for([job], 1.6)
    gaps = [round((b - a) / TICK) for a, b in zip(calls, calls[1:], strict=False)]
    assert gaps[:4] == [1, 2, 4, 8]  # after failures 1..4
    assert all(gap == 1 for gap in gaps[4:])  # healthy again
    assert [str(o.error) for o in outcomes[:4]] == [f"failure {n}" for n in range(1, 5)]


def test_run_once_runs_every_job_concurrently() -> None:
    def wait(now: datetime) -> datetime:
        time.sleep(0.2)
        return now

    now = datetime(2026, 1, 1)
    jobs = [Job(f"j{i}", TICK, wait, timeout=timedelta(seconds=2)) for i in range(4)]
    started = time.perf_counter()
    outcomes = asyncio.run(Scheduler(jobs, lambda _: None).run_once(now))
    assert time.perf_counter() - started < 0.6  # four 0.2 s jobs at once, not one after another
    assert [o.job.name for o in outcomes] == ["j0", "j1", "j2", "j3"]
    assert all(o.result == now for o in outcomes)


def test_a_broken_outcome_handler_does_not_stop_the_schedule() -> None:
    seen = []

    def handler(outcome: Outcome) -> None:
        seen.append(outcome)
        raise ValueError("consumer bug")

    async def main() -> None:
        stop = asyncio.Event()
        asyncio.get_running_loop().call_later(0.5, stop.set)
        await Scheduler([Job("j", TICK, lambda now: None, timeout=TICK)], handler).run(stop)

    asyncio.run(main())
    assert len(seen) >= 5


@pytest.mark.parametrize("jitter", [timedelta(0), timedelta(milliseconds=30)])
def test_jitter_shifts_the_grid_by_a_fixed_offset(jitter: timedelta) -> None:
    outcomes = run_for([Job("jittered", TICK, lambda now: None, timeout=TICK, jitter=jitter)], 0.6)
    offset = timedelta(microseconds=stable_offset("jittered", jitter))
    assert outcomes and all((o.scheduled - EPOCH - offset) % TICK == timedelta(0) for o in outcomes)


def test_a_wall_clock_stepping_back_rejoins_the_grid_at_once() -> None:
    jump = {"offset": 0.0}

    def clock() -> float:
        return time.time() + jump["offset"]

    after_jump: list[Outcome] = []

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()

        def record(outcome: Outcome) -> None:
            if outcome.scheduled.timestamp() < time.time() - 20:
                after_jump.append(outcome)
                if len(after_jump) >= 10:
                    stop.set()

        loop.call_later(0.5, lambda: jump.update(offset=-30.0))  # NTP steps the clock back 30 s
        loop.call_later(10, stop.set)  # a scheduler waiting for the old time would take 30 s
        await Scheduler([Job("j", TICK, lambda now: None, timeout=TICK)], record, clock=clock).run(stop)

    started = time.monotonic()
    asyncio.run(main())
    assert len(after_jump) >= 10  # it kept running on the stepped clock
    assert time.monotonic() - started < 10


def test_a_wall_clock_stepping_back_during_a_run_rejoins_the_grid_at_once() -> None:
    jump = {"offset": 0.0}
    runs: list[datetime] = []

    def work(now: datetime) -> None:
        if len(runs) == 3:
            jump["offset"] = -30.0  # stepped back while this run is under way, not while the scheduler sleeps
        time.sleep(0.01)
        runs.append(now)

    async def main() -> None:
        stop = asyncio.Event()
        asyncio.get_running_loop().call_later(2, stop.set)
        clock = lambda: time.time() + jump["offset"]  # noqa: E731
        await Scheduler([Job("j", TICK, work, timeout=timedelta(seconds=1))], lambda _: None, clock=clock).run(stop)

    asyncio.run(main())
    assert len(runs) >= 10  # not 4: waiting out the 30 s the clock went back
    assert runs[-1].timestamp() < time.time() - 20


def test_a_hung_job_does_not_keep_the_process_from_exiting() -> None:
    script = (
        "import asyncio, time\n"
        "from datetime import datetime, timedelta\n"
        "from qwq_core.scheduler import Job, Scheduler\n"
        "job = Job('stale-nfs', timedelta(seconds=1), lambda now: time.sleep(60), timedelta(milliseconds=200))\n"
        "(outcome,) = asyncio.run(Scheduler([job], lambda o: None).run_once(datetime(2026, 1, 1)))\n"
        "print(outcome.timed_out)\n"
    )
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30)
    assert result.stdout.strip() == "True"
    assert time.perf_counter() - started < 10  # not the 60 s the hung job would take
