"""Containers: one poll of 50 running containers, their stats read concurrently, in <= 1 s.

    .venv/bin/python benchmarks/bench_containers.py [--scale 1.0] [--dir DIR] [--cycles 10]
        [--url unix:///var/run/docker.sock --image busybox:latest]

Without ``--url`` it starts podman's Docker-compatible service on a private socket (as the test suite does,
``tests/services/podman.py``) and builds a busybox image from a rootfs; with ``--url`` it uses that engine
and ``--image``, which must exist there. It starts ``round(50 x scale)`` idle containers (at least 2), takes
two untimed polls (the CPU ratio needs a previous one; with the event stream open, inspect answers are
reused from the third), then times ``--cycles`` polls of the ``ContainerCollector`` as configured by
default (8 requests at a time, events on), and as many with ``max_concurrency = 1`` for comparison. Every
timed poll must report each container up, with its CPU ratio and memory.
Target: median seconds per poll <= 1.0 at scale 1.0 (p95 and max are reported too).
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import docker
import polars as pl
from _common import Target, finish, median, p95, parser, table, timed, workdir

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for the test suite's podman helper

from collectors.containers import ContainerCollector, ContainerOptions  # noqa: E402
from qwq_core.collector import CollectorContext  # noqa: E402
from tests.services.podman import BUSYBOX, PodmanEngine, missing  # noqa: E402

FULL = 50
TARGET_S = 1.0
LABEL = "qwq.bench"


@contextmanager
def engine_at(url: str | None, work: Path) -> Iterator[str]:
    """The engine's URL: ``url``, or a podman service of our own, removed afterwards (its log kept in ``work``)."""
    if url is not None:
        yield url
        return
    reason = missing()
    if reason:
        raise SystemExit(f"no engine: {reason}; or pass --url")
    with PodmanEngine() as podman:
        podman.import_busybox()
        try:
            yield podman.url
        finally:
            (work / "podman-service.log").write_text(podman.log())


@contextmanager
def running(url: str, count: int, image: str) -> Iterator[float]:
    """``count`` idle containers labelled ``qwq.bench`` for the duration; yields the seconds starting took."""
    api = docker.APIClient(base_url=url, version="auto", timeout=60, max_pool_size=8)

    def start(index: int) -> str:
        created = api.create_container(image, ["sleep", "3600"], name=f"qwq-bench-{index:03d}", labels={LABEL: "1"})
        api.start(created["Id"])
        return str(created["Id"])

    def remove(container_id: str) -> None:
        api.remove_container(container_id, force=True)

    ids: list[str] = []
    started = time.perf_counter()
    try:
        with ThreadPoolExecutor(4) as pool:
            for container_id in pool.map(start, range(count)):
                ids.append(container_id)
        yield time.perf_counter() - started
    finally:
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(remove, ids))
        api.close()


def polls(url: str, cycles: int, count: int, concurrency: int, errors: list[str]) -> list[float]:
    """Seconds of each of ``cycles`` timed polls (after one untimed); checks what each poll returned."""
    options = ContainerOptions(url=url, include=[f"{LABEL}=1"], max_concurrency=concurrency)
    collector = ContainerCollector(options, CollectorContext("bench", "bench-host", lambda _: None))
    try:
        for _ in range(2):  # the CPU ratio needs a previous poll; inspect answers are reused from the third on
            collector.collect(datetime.now(UTC))
        times = []
        for _ in range(cycles):
            seconds, frame = timed(lambda: collector.collect(datetime.now(UTC)))
            times.append(seconds)
            check(frame, count, concurrency, errors)
        return times
    finally:
        collector.close()


def check(frame: pl.DataFrame, count: int, concurrency: int, errors: list[str]) -> None:
    for name in ("container_up", "container_cpu_usage_ratio", "container_memory_used_bytes"):
        found = frame.filter(pl.col("name") == name)
        if found.height != count or (name == "container_up" and found["value"].min() != 1):
            errors.append(f"max_concurrency={concurrency}: {found.height} of {count} containers have {name}")


def main() -> int:
    cli = parser(__doc__.splitlines()[0])
    cli.add_argument("--cycles", type=int, default=10, help="timed polls per setting (median reported)")
    cli.add_argument("--url", help="an existing engine to measure (default: start podman's service)")
    cli.add_argument("--image", default=BUSYBOX, help="image the containers run `sleep 3600` in (with --url)")
    args = cli.parse_args()
    count = max(2, math.floor(FULL * args.scale + 0.5))
    errors: list[str] = []
    with workdir(args.dir) as work, engine_at(args.url, work) as url, running(url, count, args.image) as startup_s:
        concurrent = polls(url, args.cycles, count, ContainerOptions().max_concurrency, errors)
        sequential = polls(url, args.cycles, count, 1, errors)
    figures = {
        "containers": count,
        "cycles": args.cycles,
        "samples": count * args.cycles,
        "startup_s": startup_s,
        "median_s": median(concurrent),
        "p95_s": p95(concurrent),
        "max_s": max(concurrent),
        "sequential_median_s": median(sequential),
        "speedup": median(sequential) / median(concurrent),
    }
    table(
        f"containers: one poll of {count} running containers, {args.cycles} polls each",
        [
            ("starting the containers, s", figures["startup_s"]),
            ("poll, 8 at a time: median s", figures["median_s"]),
            ("poll, 8 at a time: p95 s", figures["p95_s"]),
            ("poll, 8 at a time: max s", figures["max_s"]),
            ("poll, one at a time: median s", figures["sequential_median_s"]),
            ("speed-up", figures["speedup"]),
            ("all polls, s", " ".join(f"{t:.3f}" for t in concurrent)),
        ],
    )
    return finish("containers", args.scale, figures, [Target("median_s", figures["median_s"], TARGET_S)], errors)


if __name__ == "__main__":
    sys.exit(main())
