"""Sites: 200 website, TLS, DNS and TCP checks every 30 s on qwq's scheduler, against local servers.

    .venv/bin/python benchmarks/bench_sites.py [--scale 1.0] [--dir DIR]

A child process serves what is checked (``tests/services``): an HTTP server, two HTTPS servers with
certificates from a test CA (one behind an intermediate) and dnsmasq with a test zone. This process runs
the checks exactly as ``qwq up`` does — collectors built from settings by ``build_collectors``, run by
``qwq_core.runtime.Runtime`` on ``qwq_core.scheduler`` into a real store through the buffered writer — as
four collectors on the same 30 s grid, so all checks start at once: ``http`` (50 %: pages and JSON, by
name and by IP), ``https`` (20 %: with certificate-chain inspection), ``dns`` (15 %) and ``tcp`` (15 %).
It runs until every collector has run 3 times (2 full cycles after the first) and reports, per run: its
duration (the cycle time), how late it started after its scheduled tick, missed schedules (runs skipped
by the scheduler or ticks without a run), the event loop's worst stall (a 100 ms ticker), and the CPU this
process used over the window (% of one core; the servers' process is reported apart). At the end every
check must be up in the store, once per run. ``--scale`` scales the checks (at least 8) and the
interval (at least 2 s). Targets: no missed schedules, max lateness <= 1 s, max cycle <= 10 s, CPU <= 25 %.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import statistics
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import polars as pl
import psutil
from _common import Target, finish, parser, table, workdir

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the test services live in tests/services

from qwq_core.collector import build_collectors  # noqa: E402
from qwq_core.runtime import Runtime  # noqa: E402
from qwq_core.settings import Settings  # noqa: E402
from qwq_core.store import LocalStore  # noqa: E402
from qwq_core.writer import BufferedWriter  # noqa: E402

CHECKS, INTERVAL_S, RUNS = 200, 30.0, 3
SHARES = {"http": 0.5, "https": 0.2, "dns": 0.15, "tcp": 0.15}
UP_METRIC = {"http": "site_up", "https": "site_up", "dns": "dns_up", "tcp": "tcp_up"}
LATENESS_TARGET_S, CYCLE_TARGET_S, CPU_TARGET = 1.0, 10.0, 25.0
DNS_QUERIES = [("www", "A", ["192.0.2.10"]), ("www", "AAAA", ["2001:db8::10"]), ("", "MX", ["10 mail.bench.test"]),
               ("", "TXT", ["v=spf1 -all"]), ("alias", "CNAME", ["www.bench.test"])]  # fmt: skip


# ---- the servers, in a child process -------------------------------------------------------------------
def serve(directory: str, pipe: Connection) -> None:
    """Child process: start the servers, send their addresses, serve until told to stop (or orphaned)."""
    from tests.services.dnsmasq import Dnsmasq, Zone
    from tests.services.web import TestCA, WebServer

    ca = TestCA.create(Path(directory) / "ca")
    intermediate = ca.intermediate("bench-intermediate", days=60)
    zone = Zone("bench.test", hosts={"www": ["192.0.2.10", "2001:db8::10"], "mail": ["192.0.2.25"]},
                cnames={"alias": "www"}, mx=[(10, "mail")], txt={"": ["v=spf1 -all"]})  # fmt: skip
    with ExitStack() as stack:
        web = stack.enter_context(WebServer())
        secure = [
            stack.enter_context(WebServer(ca.issue("bench-root", ["localhost", "127.0.0.1"], days=90))),
            stack.enter_context(WebServer(intermediate.issue("bench-leaf", ["localhost"], days=30))),
        ]
        dns = stack.enter_context(Dnsmasq(zone, Path(directory) / "dnsmasq"))
        pipe.send({"web": web.port, "secure": [s.port for s in secure], "ca": str(ca.path), "dns": dns.nameserver})
        pipe.poll(None)  # returns when the parent says stop or exits


@contextmanager
def servers(directory: Path) -> Iterator[tuple[dict[str, Any], psutil.Process]]:
    """The child process's addresses and the process, stopped afterwards."""
    here, there = multiprocessing.get_context("spawn").Pipe()
    child = multiprocessing.get_context("spawn").Process(target=serve, args=(str(directory), there), daemon=True)
    child.start()
    try:
        if not here.poll(60):
            raise RuntimeError("the servers did not start within 60 s")
        yield here.recv(), psutil.Process(child.pid)
    finally:
        here.send("stop")
        child.join(10)
        if child.is_alive():
            child.kill()


# ---- the checks ----------------------------------------------------------------------------------------
def split(total: int) -> dict[str, int]:
    """How many checks of each kind: ``SHARES`` of ``total``, at least one each."""
    counts = {kind: max(1, round(total * share)) for kind, share in SHARES.items()}
    counts["http"] += total - sum(counts.values())
    return counts


def configuration(counts: dict[str, int], where: dict[str, Any], interval: float) -> dict[str, Any]:
    """The ``[collectors]`` tables of qwq.toml for the benchmark."""
    web, secure, nameserver = where["web"], where["secure"], where["dns"]
    page = {"body_contains": ["Hello"]}
    document = {"json_path": [{"path": "$.db.up", "equals": True}]}
    pages = [  # by name (timed lookup) and by IP; every third a JSON document
        {"name": f"page-{i}", "url": f"http://{'localhost' if i % 2 else '127.0.0.1'}:{web}/", **page}
        if i % 3 else {"name": f"json-{i}", "url": f"http://localhost:{web}/json", **document}
        for i in range(counts["http"])
    ]  # fmt: skip
    sites = [{"name": f"tls-{i}", "url": f"https://localhost:{secure[i % 2]}/"} for i in range(counts["https"])]
    lookups = [
        {"name": f"dns-{i}", "query": f"{name}.bench.test".lstrip("."), "type": kind, "expect": expect}
        for i, (name, kind, expect) in ((i, DNS_QUERIES[i % len(DNS_QUERIES)]) for i in range(counts["dns"]))
    ]
    ports = [{"name": f"tcp-{i}", "host": "127.0.0.1", "port": [web, *secure][i % 3]} for i in range(counts["tcp"])]
    tables = {
        "http": {"type": "http", "checks": pages},
        "https": {"type": "http", "defaults": {"ca_file": where["ca"]}, "checks": sites},
        "dns": {"type": "dns", "defaults": {"nameservers": [nameserver]}, "checks": lookups},
        "tcp": {"type": "tcp", "checks": ports},
    }
    for name, options in tables.items():  # a `bench` label tells the collectors' series apart in the store
        options["interval"] = f"{interval:g}s"
        options["defaults"] = {**options.get("defaults", {}), "labels": {"bench": name}}
    return {"host": {"enabled": False}, **tables}


# ---- measuring -----------------------------------------------------------------------------------------
@dataclass
class Timed:
    """A collector that records when each of its runs started and ended, then does the collector's work."""

    inner: Any
    runs: list[tuple[datetime, float, float]] = field(default_factory=list)
    """(scheduled, started, ended), wall-clock seconds."""
    cpu_at_first_run: float | None = None

    async def collect(self, now: datetime) -> Any:
        started = time.time()
        if self.cpu_at_first_run is None:
            self.cpu_at_first_run = time.process_time()
        frame = await self.inner.collect(now)
        self.runs.append((now, started, time.time()))
        return frame

    def metrics(self) -> Any:
        return self.inner.metrics()

    def close(self) -> None:
        self.inner.close()


async def loop_stalls(stop: asyncio.Event, stalls: list[float], period: float = 0.1) -> None:
    """How much later than asked a 100 ms sleep wakes up, while the checks run."""
    while not stop.is_set():
        before = time.perf_counter()
        await asyncio.sleep(period)
        stalls.append(time.perf_counter() - before - period)


async def run_until_done(runtime: Runtime, deadline_s: float) -> list[float]:
    """Run the runtime until it has handled ``RUNS`` runs of every collector; returns the event loop's stalls.

    Handled, not merely finished: stopping cancels the scheduler's loops, and a run whose collect() has
    returned but whose outcome the runtime has not taken yet would be lost with its samples."""
    stop, stalls = asyncio.Event(), []
    tasks = [asyncio.create_task(runtime.run(stop)), asyncio.create_task(loop_stalls(stop, stalls))]
    started = time.monotonic()
    while any(s.runs < RUNS for s in runtime.status.values()) and time.monotonic() - started < deadline_s:
        await asyncio.sleep(0.2)
    stop.set()
    await asyncio.gather(*tasks)
    return stalls


def measure(home: Path, config: dict[str, Any], interval: float) -> tuple[dict[str, Any], list[str], LocalStore]:
    """Run the checks through the runtime; return figures, correctness errors and the store."""
    settings = Settings.model_validate({"home": home, "host": "bench", "collectors": config})
    store = LocalStore(settings.store_path, settings=settings.store)
    writer = BufferedWriter(store)
    collectors = build_collectors(settings, writer.emit)
    timed = {c.name: Timed(c.collector) for c in collectors}
    for configured in collectors:
        configured.collector = timed[configured.name]
    runtime = Runtime(settings, store, collectors, writer)
    stalls = asyncio.run(run_until_done(runtime, deadline_s=interval * (RUNS + 2) + 60))
    for name, t in timed.items():  # a run that finished as the runtime stopped was never handled: not counted
        handled = runtime.status[name]
        del t.runs[handled.runs - handled.errors :]  # Timed records successful runs only
    runs = [run for t in timed.values() for run in t.runs]
    if not runs:
        return {}, ["no collector ran"], store
    # CPU over the window from the first run's start to now: the same RUNS cycles for every collector.
    cpu_s = time.process_time() - min(t.cpu_at_first_run or 0.0 for t in timed.values() if t.runs)
    first = min(run[1] for run in runs)
    wall_s = time.time() - first
    status = runtime.status.values()
    missed = sum(s.missed for s in status) + sum(_gaps(t.runs, interval) for t in timed.values())
    figures = {
        "checks": sum(len(t.inner.runner.checks) for t in timed.values()),
        "interval_s": interval,
        "runs": len(runs),
        "window_s": max(run[2] for run in runs) - first,
        "cycle_s_median": statistics.median(run[2] - run[1] for run in runs),
        "cycle_s_max": max(run[2] - run[1] for run in runs),
        "lateness_s_max": max(run[1] - run[0].timestamp() for run in runs),
        "missed_schedules": missed,
        "collector_errors": sum(s.errors for s in status),
        "loop_stall_s_max": max(stalls, default=0.0),
        "cpu_seconds": cpu_s,
        "cpu_percent": 100 * cpu_s / wall_s,
        "cpu_seconds_per_cycle": cpu_s / RUNS,
        "samples": runtime.writer.stats.samples_written,
        "per_collector": {name: _per_collector(t) for name, t in timed.items()},
    }
    errors = [f"{name} ran {len(t.runs)} times, expected {RUNS}" for name, t in timed.items() if len(t.runs) < RUNS]
    return figures, errors, store


def _gaps(runs: list[tuple[datetime, float, float]], interval: float) -> int:
    """Ticks between consecutive runs that had no run."""
    ticks = [run[0].timestamp() for run in runs]
    return sum(max(0, round((b - a) / interval) - 1) for a, b in zip(ticks, ticks[1:], strict=False))


def _per_collector(timed: Timed) -> dict[str, float]:
    return {
        "checks": len(timed.inner.runner.checks),
        "runs": len(timed.runs),
        "cycle_s_max": max(end - start for _, start, end in timed.runs),
        "lateness_s_max": max(start - scheduled.timestamp() for scheduled, start, _ in timed.runs),
    }


def verify(store: LocalStore, figures: dict[str, Any]) -> list[str]:
    """Every check in the store once per run of its collector, and up each time; no target went down."""
    errors = []
    for collector, each in figures["per_collector"].items():
        samples = store.query(UP_METRIC[collector], since="1h", labels={"bench": collector})
        name = "site" if UP_METRIC[collector] == "site_up" else "check"
        per_check = samples.group_by(name).agg(n=pl.len(), up=pl.col("value").min()) if samples.height else None
        if per_check is None or per_check.height != each["checks"]:
            found = 0 if per_check is None else per_check.height
            errors.append(f"{collector}: {found} checks in the store, expected {each['checks']}")
            continue
        if per_check["n"].min() != each["runs"] or per_check["n"].max() != each["runs"]:
            errors.append(f"{collector}: {per_check['n'].min()}-{per_check['n'].max()} samples per check, "
                          f"expected {each['runs']}")  # fmt: skip
        if per_check["up"].min() < 1:
            errors.append(f"{collector}: {per_check.filter(pl.col('up') < 1).height} checks were down")
    downs = store.events(since="1h", kind="target.down")
    errors += [f"target.down: {row['message']}" for row in downs.head(5).to_dicts()]
    return errors


def report(figures: dict[str, Any], servers_cpu: float) -> None:
    rows: list[tuple[str, Any]] = [
        ("checks / interval", f"{figures['checks']} every {figures['interval_s']:g} s, {RUNS} runs per collector"),
        ("window, s", f"{figures['window_s']:.1f}"),
        ("cycle (run duration) median / max, s", f"{figures['cycle_s_median']:.3f} / {figures['cycle_s_max']:.3f}"
         f"  (target <= {CYCLE_TARGET_S:g})"),
        ("max lateness after the tick, s", f"{figures['lateness_s_max']:.4f}  (target <= {LATENESS_TARGET_S:g})"),
        ("missed schedules", f"{figures['missed_schedules']}  (target 0)"),
        ("collector errors", figures["collector_errors"]),
        ("event loop worst stall, s", f"{figures['loop_stall_s_max']:.3f}"),
        ("CPU, % of one core (this process)", f"{figures['cpu_percent']:.2f}  (target <= {CPU_TARGET:g})"),
        ("CPU seconds per cycle", f"{figures['cpu_seconds_per_cycle']:.2f}"),
        ("CPU seconds of the servers' process", f"{servers_cpu:.2f}"),
        ("samples written", figures["samples"]),
    ]  # fmt: skip
    for name, each in figures["per_collector"].items():
        rows.append((f"  {name}: checks, max cycle / lateness", f"{each['checks']:.0f}, "
                     f"{each['cycle_s_max']:.3f} / {each['lateness_s_max']:.4f} s"))  # fmt: skip
    rows.append(("CPUs on this machine", psutil.cpu_count()))
    table("sites: website, TLS, DNS and TCP checks on qwq's scheduler", rows)


def main() -> int:
    args = parser(__doc__.splitlines()[0]).parse_args()
    total = max(8, round(CHECKS * args.scale))
    interval = max(2.0, INTERVAL_S * args.scale)
    counts = split(total)
    with workdir(args.dir) as work, servers(work / "servers") as (where, child):
        figures, errors, store = measure(work / "home", configuration(counts, where, interval), interval)
        with store:
            errors += verify(store, figures) if figures else []
        times = child.cpu_times()
        servers_cpu = times.user + times.system
    figures["servers_cpu_seconds"] = servers_cpu
    report(figures, servers_cpu)
    targets = [
        Target("missed_schedules", figures["missed_schedules"], 0),
        Target("lateness_s_max", figures["lateness_s_max"], LATENESS_TARGET_S),
        Target("cycle_s_max", figures["cycle_s_max"], CYCLE_TARGET_S),
        Target("cpu_percent", figures["cpu_percent"], CPU_TARGET),
    ]
    if figures["collector_errors"]:
        errors.append(f"{figures['collector_errors']} collector runs failed")
    return finish("sites", args.scale, figures, targets, errors)


if __name__ == "__main__":
    sys.exit(main())
