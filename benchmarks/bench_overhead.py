"""Overhead: CPU and memory of an idle ``qwq up`` that collects host metrics every second.

    .venv/bin/python benchmarks/bench_overhead.py [--scale 1.0] [--dir DIR]

Starts ``qwq up`` as a subprocess with its own ``QWQ_HOME``, on a free port, configured with
``[collectors.host] interval = "1s"`` and default store settings (a flush every 2 s). Waits until
``/api/v1/health`` answers and the writer has committed samples, lets it settle, then reads
``/api/v1/status`` once and measures for 60 s x scale (at least 5 s) without touching the API — nobody
looks at the dashboard. Every second psutil samples the process and its children (if any): CPU is the
user+system seconds the tree consumed over the window divided by the wall time (% of one core), memory is
the RSS at the end and the largest seen. At the end ``/api/v1/status`` gives the samples committed during
the window (writer counter) and the store size.
Targets: average CPU <= 2 % of one core, max RSS <= 250 MB. Netdata, for context, claims 1-5 % of a core
and 100-200 MB for per-second collection of far more metrics.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
from _common import Target, finish, free_port, parser, table, workdir

QWQ = str(Path(sys.executable).with_name("qwq"))
CONFIG = '[collectors.host]\ninterval = "1s"\n'
CPU_TARGET, RSS_TARGET_MB = 2.0, 250.0
NETDATA = "1-5 % of one core, 100-200 MB (per-second collection of far more metrics)"
STARTUP_TIMEOUT_S = 60.0
MB = 1e6


def window(scale: float) -> tuple[float, float]:
    """(settle, measure) seconds: 5 s and 60 s at scale 1.0; at least 2 s and 5 s."""
    return max(2.0, 5.0 * scale), max(5.0, 60.0 * scale)


# ---- the server ----------------------------------------------------------------------------------------
@dataclass
class Server:
    """A ``qwq up`` subprocess and its URL."""

    process: subprocess.Popen[bytes]
    url: str
    log: Path

    def status(self) -> dict[str, Any]:
        response = httpx.get(f"{self.url}/api/v1/status", timeout=30)
        response.raise_for_status()
        return dict(response.json())


@contextmanager
def qwq_up(home: Path) -> Iterator[Server]:
    """Run ``qwq up`` on a free port with ``home`` as ``QWQ_HOME``; stop it (SIGTERM, then kill) afterwards."""
    home.mkdir(parents=True, exist_ok=True)
    (home / "qwq.toml").write_text(CONFIG)
    env = {k: v for k, v in os.environ.items() if not k.startswith("QWQ_")} | {"QWQ_HOME": str(home)}
    port = free_port()
    log = home / "qwq-up.log"
    with log.open("wb") as output:
        process = subprocess.Popen([QWQ, "up", "--port", str(port)], env=env, stdout=output, stderr=subprocess.STDOUT)
    try:
        yield Server(process, f"http://127.0.0.1:{port}", log)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_until_collecting(server: Server) -> float:
    """Seconds until the server answers and has committed samples; raises if it exits or takes too long."""
    started = time.monotonic()
    while time.monotonic() - started < STARTUP_TIMEOUT_S:
        if server.process.poll() is not None:
            raise RuntimeError(f"qwq up exited with {server.process.returncode}:\n{server.log.read_text()}")
        try:
            if httpx.get(f"{server.url}/api/v1/health", timeout=5).status_code == 200:
                writer = server.status().get("writer") or {}
                if writer.get("samples_written", 0) > 0:
                    return time.monotonic() - started
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"qwq up was not collecting within {STARTUP_TIMEOUT_S:g} s:\n{server.log.read_text()}")


# ---- measuring -----------------------------------------------------------------------------------------
@dataclass
class ProcessTree:
    """CPU seconds and RSS of a process and its descendants; children that exit keep their last CPU time."""

    root: psutil.Process
    most: int = 0
    """The most processes seen at once."""
    _cpu: dict[int, float] = field(default_factory=dict)

    def members(self) -> list[psutil.Process]:
        return [self.root, *self.root.children(recursive=True)]

    def sample(self) -> tuple[float, int]:
        """(CPU seconds used so far, RSS bytes now) of the tree."""
        rss = 0
        members = self.members()
        self.most = max(self.most, len(members))
        for proc in members:
            try:
                with proc.oneshot():
                    times, memory = proc.cpu_times(), proc.memory_info()
            except psutil.NoSuchProcess:
                continue
            reaped = times.children_user + times.children_system if proc.pid == self.root.pid else 0.0
            self._cpu[proc.pid] = times.user + times.system + reaped
            rss += memory.rss
        return sum(self._cpu.values()), rss

    def unique_memory(self) -> int:
        """USS bytes of the tree: memory that would be freed if it exited (reads smaps; do it once)."""
        return sum(proc.memory_full_info().uss for proc in self.members())


@dataclass
class Measurement:
    """What the sampler saw over the window."""

    wall_s: float
    cpu_s: float
    rss_end: int
    rss_max: int
    cpu_per_second: list[float]
    threads: int


def measure(tree: ProcessTree, seconds: float) -> Measurement:
    """Sample ``tree`` once a second for ``seconds``; no requests to the server meanwhile."""
    cpu_start, rss = tree.sample()
    wall_start = last_wall = time.monotonic()
    last_cpu, rss_max, per_second = cpu_start, rss, []
    while (now := time.monotonic()) - wall_start < seconds:
        time.sleep(min(1.0, seconds - (now - wall_start)))
        cpu, rss = tree.sample()
        now = time.monotonic()
        per_second.append(100 * (cpu - last_cpu) / (now - last_wall))
        last_cpu, last_wall, rss_max = cpu, now, max(rss_max, rss)
    return Measurement(last_wall - wall_start, last_cpu - cpu_start, rss, rss_max, per_second, tree.root.num_threads())


# ---- the run -------------------------------------------------------------------------------------------
def run(home: Path, settle_s: float, measure_s: float) -> tuple[dict[str, Any], list[str]]:
    """Start the server, measure it, and return the figures and correctness errors."""
    with qwq_up(home) as server:
        startup_s = wait_until_collecting(server)
        time.sleep(settle_s)
        before, before_at = server.status(), time.monotonic()  # the last request before the window
        tree = ProcessTree(psutil.Process(server.process.pid))
        seen = measure(tree, measure_s)
        uss = tree.unique_memory()
        after, after_at = server.status(), time.monotonic()  # the first request after it
        alive = server.process.poll() is None
    written = after["writer"]["samples_written"] - before["writer"]["samples_written"]
    figures = {
        "startup_s": startup_s,
        "settle_s": settle_s,
        "window_s": seen.wall_s,
        "cpu_percent": 100 * seen.cpu_s / seen.wall_s,
        "cpu_percent_max_1s": max(seen.cpu_per_second, default=0.0),
        "cpu_seconds": seen.cpu_s,
        "rss_mb_end": seen.rss_end / MB,
        "rss_mb_max": seen.rss_max / MB,
        "uss_mb_end": uss / MB,
        "threads": seen.threads,
        "processes": tree.most,
        "samples": written,
        "samples_per_s": written / (after_at - before_at),
        "flushes": after["writer"]["flushes"] - before["writer"]["flushes"],
        "series": after["store"]["series"],
        "size_bytes": after["store"]["size_bytes"],
        "collector_errors": sum(c["errors"] for c in after["collectors"]),
    }
    errors = [] if alive else ["qwq up exited during the measurement"]
    if written <= 0:
        errors.append("no samples were committed during the window")
    if figures["collector_errors"]:
        errors.append(f"{figures['collector_errors']} collector runs failed")
    return figures, errors


def report(figures: dict[str, Any]) -> None:
    per_s = figures["cpu_percent_max_1s"]
    table(
        f"overhead: qwq up, host collector every 1 s, {figures['window_s']:.0f} s window",
        [
            ("startup until collecting, s", f"{figures['startup_s']:.1f}  (then {figures['settle_s']:g} s settling)"),
            ("CPU, % of one core", f"{figures['cpu_percent']:.2f}  (target <= {CPU_TARGET:g}; max 1 s: {per_s:.1f})"),
            ("CPU seconds in window", f"{figures['cpu_seconds']:.2f}"),
            (
                "RSS at end / max, MB",
                f"{figures['rss_mb_end']:.0f} / {figures['rss_mb_max']:.0f}  (target <= {RSS_TARGET_MB:g})",
            ),
            ("USS at end, MB", f"{figures['uss_mb_end']:.0f}"),
            ("threads / processes", f"{figures['threads']} / {figures['processes']}"),
            ("samples committed in window", figures["samples"]),
            ("samples/s", f"{figures['samples_per_s']:.0f}  ({figures['flushes']} flushes)"),
            ("series in store", figures["series"]),
            ("store size (file + WAL), MB", f"{figures['size_bytes'] / MB:.1f}"),
            ("Netdata's claim, for context", NETDATA),
            ("CPUs on this machine", psutil.cpu_count()),
        ],
    )


def main() -> int:
    args = parser(__doc__.splitlines()[0]).parse_args()
    settle_s, measure_s = window(args.scale)
    with workdir(args.dir) as work:
        figures, errors = run(work / "home", settle_s, measure_s)
    report(figures)
    targets = [
        Target("cpu_percent", figures["cpu_percent"], CPU_TARGET),
        Target("rss_mb_max", figures["rss_mb_max"], RSS_TARGET_MB),
    ]
    return finish("overhead", args.scale, figures, targets, errors)


if __name__ == "__main__":
    sys.exit(main())
