"""The host collector: CPU, memory, filesystems, disks, network, processes and sensors, read with psutil.

Metric names follow node_exporter's spirit with a ``host_`` prefix and base units (bytes, seconds, ratios).
Each section is read on its own: one that fails (a missing /proc file, an unreadable sensor) is skipped,
the others are still collected, and a ``target.down`` event says which section and why (``target.up``
when it reads again). Every sample carries ``host=<context.host>``.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Annotated, Any

import polars as pl
import psutil
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from qwq_core.collector import CollectorContext, samples
from qwq_core.model import MetricInfo
from qwq_core.targets import TargetHealth

log = logging.getLogger(__name__)

Row = tuple[str, Mapping[str, str], float]
Section = Callable[[], Iterator[Row]]

DEFAULT_PROCFS = Path("/proc")
SECTION_ERRORS = (OSError, RuntimeError, ValueError, psutil.Error)
"""What psutil and /proc parsing raise when a source is missing, unreadable or malformed."""
IDLE_MODES = frozenset({"idle", "iowait"})
MIN_CPU_WINDOW = 0.1
"""Seconds of CPU time the ratios are measured over at the least."""
GUEST_MODES = frozenset({"guest", "guest_nice"})
"""Linux counts guest time in user/nice too; psutil leaves it out of the total, and so do we."""


def _regex(value: Any) -> Any:
    """Compile a string, naming the problem if it is not a valid regular expression."""
    if not isinstance(value, str):
        return value
    try:
        return re.compile(value)
    except re.error as exc:
        raise ValueError(f"invalid regular expression {value!r}: {exc}") from None


Regex = Annotated[re.Pattern[str], BeforeValidator(_regex)]
"""A regular expression, searched in the value (anchor it with ``^…$`` to match the whole value)."""


EXCLUDE_MOUNTPOINTS = re.compile(
    r"^/(dev|proc|sys|run/credentials|var/lib/docker/.+|var/lib/containers/.+|snap/.+)($|/)"
)
EXCLUDE_FSTYPES = re.compile(
    r"^(autofs|binfmt_misc|bpf|cgroup2?|configfs|debugfs|devpts|devtmpfs|fusectl|hugetlbfs|iso9660|mqueue|nsfs"
    r"|overlay|proc|procfs|pstore|rpc_pipefs|securityfs|selinuxfs|squashfs|sysfs|tracefs)$"
)
EXCLUDE_DISKS = re.compile(r"^(z?ram|loop|fd|(h|s|v|xv)d[a-z]|nvme\d+n\d+p)\d+$")
EXCLUDE_INTERFACES = re.compile(r"^(lo|veth.*)$")


class HostOptions(BaseModel):
    """Options of the host collector, under ``[collectors.host]`` in qwq.toml."""

    model_config = ConfigDict(extra="forbid")

    procfs: Path = Field(DEFAULT_PROCFS, description="the /proc to read; in a container, the host's, mounted")
    exclude_mountpoints: Regex = Field(EXCLUDE_MOUNTPOINTS, description="mountpoints to leave out")
    exclude_fstypes: Regex = Field(EXCLUDE_FSTYPES, description="filesystem types to leave out (pseudo ones)")
    exclude_disks: Regex = Field(EXCLUDE_DISKS, description="block devices to leave out (partitions, loop)")
    exclude_interfaces: Regex = Field(EXCLUDE_INTERFACES, description="network interfaces to leave out")


HELP = {
    "host_cpu_usage_ratio": "Share of CPU time since the last collect: busy (no mode label) or per mode",
    "host_cpu_count": "Logical CPUs",
    "host_load1": "1-minute load average",
    "host_load5": "5-minute load average",
    "host_load15": "15-minute load average",
    "host_memory_used_bytes": "Memory in use",
    "host_memory_total_bytes": "Physical memory",
    "host_memory_available_bytes": "Memory available to new processes without swapping",
    "host_memory_cached_bytes": "Page cache",
    "host_memory_buffers_bytes": "Block device buffers",
    "host_swap_used_bytes": "Swap in use",
    "host_swap_total_bytes": "Swap space",
    "host_filesystem_free_bytes": "Filesystem space available to unprivileged users",
    "host_filesystem_size_bytes": "Filesystem size",
    "host_filesystem_used_bytes": "Filesystem space in use",
    "host_filesystem_files": "Filesystem inodes",
    "host_filesystem_files_free": "Free filesystem inodes",
    "host_disk_read_bytes_total": "Bytes read from the disk",
    "host_disk_written_bytes_total": "Bytes written to the disk",
    "host_disk_reads_completed_total": "Reads completed",
    "host_disk_writes_completed_total": "Writes completed",
    "host_disk_io_time_seconds_total": "Time the disk spent doing I/O",
    "host_network_receive_bytes_total": "Bytes received",
    "host_network_transmit_bytes_total": "Bytes sent",
    "host_network_receive_packets_total": "Packets received",
    "host_network_transmit_packets_total": "Packets sent",
    "host_network_errors_total": "Network errors, by direction",
    "host_network_drops_total": "Dropped packets, by direction",
    "host_processes": "Processes",
    "host_open_fds": "File handles allocated system-wide",
    "host_open_fds_limit": "Maximum file handles system-wide",
    "host_context_switches_total": "Context switches",
    "host_interrupts_total": "Interrupts",
    "host_uptime_seconds": "Time since boot",
    "host_boot_time_seconds": "Boot time, seconds since the Unix epoch",
    "host_temperature_celsius": "Hardware sensor temperature",
}
"""Every metric the collector emits; type and base unit follow from the name (Prometheus conventions)."""
METRICS = [replace(MetricInfo.infer(name), help=text) for name, text in HELP.items()]


def _clamp(ratio: float) -> float:
    return min(1.0, max(0.0, ratio))


def _cpu_ratios(cpu: str, before: Any, after: Any) -> Iterator[Row]:
    """Busy and per-mode shares of the CPU time elapsed between two ``cpu_times`` readings."""
    modes = [mode for mode in after._fields if mode not in GUEST_MODES]
    deltas = {mode: getattr(after, mode) - getattr(before, mode) for mode in modes}
    elapsed = sum(deltas.values())
    if elapsed <= 0:
        return
    idle = sum(delta for mode, delta in deltas.items() if mode in IDLE_MODES)
    yield "host_cpu_usage_ratio", {"cpu": cpu}, _clamp(1 - idle / elapsed)
    for mode, delta in deltas.items():
        yield "host_cpu_usage_ratio", {"cpu": cpu, "mode": mode}, _clamp(delta / elapsed)


def _system() -> Iterator[Row]:
    """Machine-wide figures: CPUs, load, processes, kernel activity, boot time."""
    count, stats, boot = psutil.cpu_count(), psutil.cpu_stats(), psutil.boot_time()
    if count:
        yield "host_cpu_count", {}, count
    for minutes, value in zip((1, 5, 15), psutil.getloadavg(), strict=True):
        yield f"host_load{minutes}", {}, value
    yield "host_processes", {}, len(psutil.pids())
    yield "host_context_switches_total", {}, stats.ctx_switches
    yield "host_interrupts_total", {}, stats.interrupts
    yield "host_boot_time_seconds", {}, boot
    yield "host_uptime_seconds", {}, time.time() - boot


def _memory() -> Iterator[Row]:
    """Physical memory and swap."""
    memory = psutil.virtual_memory()
    for field in ("used", "total", "available", "cached", "buffers"):
        if hasattr(memory, field):  # cached and buffers exist on Linux and BSD only
            yield f"host_memory_{field}_bytes", {}, getattr(memory, field)
    swap = psutil.swap_memory()
    yield "host_swap_used_bytes", {}, swap.used
    yield "host_swap_total_bytes", {}, swap.total


def _filesystems(exclude_mountpoints: re.Pattern[str], exclude_fstypes: re.Pattern[str]) -> Iterator[Row]:
    """Space and inodes of each filesystem not excluded (the last mount on a path is the visible one)."""
    mounts = {part.mountpoint: part for part in psutil.disk_partitions(all=True)}
    for part in mounts.values():
        if not (exclude_mountpoints.search(part.mountpoint) or exclude_fstypes.search(part.fstype)):
            yield from _filesystem(part)


def _filesystem(part: Any) -> Iterator[Row]:
    """Rows of one ``disk_partitions`` entry; none when its ``statvfs`` fails."""
    try:
        stat = os.statvfs(part.mountpoint)
    except OSError as exc:  # stale NFS handle, no permission, unmounted meanwhile
        log.debug("host collector: skipping filesystem %s: %s", part.mountpoint, exc)
        return
    labels = {"mountpoint": part.mountpoint, "device": part.device, "fstype": part.fstype}
    block = stat.f_frsize or stat.f_bsize
    yield "host_filesystem_free_bytes", labels, stat.f_bavail * block
    yield "host_filesystem_size_bytes", labels, stat.f_blocks * block
    yield "host_filesystem_used_bytes", labels, (stat.f_blocks - stat.f_bfree) * block
    yield "host_filesystem_files", labels, stat.f_files
    yield "host_filesystem_files_free", labels, stat.f_ffree


def _disks(exclude: re.Pattern[str]) -> Iterator[Row]:
    """I/O counters of each block device not excluded."""
    for device, io in psutil.disk_io_counters(perdisk=True).items():
        if exclude.search(device):
            continue
        labels = {"device": device}
        yield "host_disk_read_bytes_total", labels, io.read_bytes
        yield "host_disk_written_bytes_total", labels, io.write_bytes
        yield "host_disk_reads_completed_total", labels, io.read_count
        yield "host_disk_writes_completed_total", labels, io.write_count
        if hasattr(io, "busy_time"):  # milliseconds, on Linux and FreeBSD
            yield "host_disk_io_time_seconds_total", labels, io.busy_time / 1000


def _network(exclude: re.Pattern[str]) -> Iterator[Row]:
    """Traffic, error and drop counters of each network interface not excluded."""
    for device, io in psutil.net_io_counters(pernic=True).items():
        if exclude.search(device):
            continue
        yield "host_network_receive_bytes_total", {"device": device}, io.bytes_recv
        yield "host_network_transmit_bytes_total", {"device": device}, io.bytes_sent
        yield "host_network_receive_packets_total", {"device": device}, io.packets_recv
        yield "host_network_transmit_packets_total", {"device": device}, io.packets_sent
        directions = {"receive": (io.errin, io.dropin), "transmit": (io.errout, io.dropout)}
        for direction, (errors, drops) in directions.items():
            yield "host_network_errors_total", {"device": device, "direction": direction}, errors
            yield "host_network_drops_total", {"device": device, "direction": direction}, drops


def _open_fds(procfs: Path) -> Iterator[Row]:
    """System-wide file handles: allocated and maximum (``sys/fs/file-nr``; its middle field is always 0)."""
    allocated, _unused, limit = (float(field) for field in (procfs / "sys/fs/file-nr").read_text().split())
    yield "host_open_fds", {}, allocated
    yield "host_open_fds_limit", {}, limit


def _temperatures() -> Iterator[Row]:
    """Hardware sensor readings, where the platform has any."""
    read = getattr(psutil, "sensors_temperatures", None)  # absent on some platforms
    # One series per (sensor, label): on multi-socket machines psutil repeats labels like "Core 0".
    readings = {
        (sensor, entry.label or str(index)): entry.current
        for sensor, entries in (read() if read else {}).items()
        for index, entry in enumerate(entries)
    }
    for (sensor, label), celsius in readings.items():
        yield "host_temperature_celsius", {"sensor": sensor, "label": label}, celsius


def _run(section: Section) -> tuple[list[Row], str | None]:
    """The rows of one section, or none and the reason if its source cannot be read."""
    try:
        return list(section()), None
    except SECTION_ERRORS as exc:
        return [], f"{type(exc).__name__}: {exc}"


class HostCollector:
    """Samples of the machine qwq runs on (or whose /proc it is given)."""

    default_interval = timedelta(seconds=5)
    Options = HostOptions

    def __init__(self, options: HostOptions, context: CollectorContext) -> None:
        self.options = options
        self.context = context
        if options.procfs != DEFAULT_PROCFS:
            psutil.PROCFS_PATH = str(options.procfs)  # process-wide: psutil has no per-call setting
        self._sections: dict[str, Section] = {
            "cpu": self._cpu,
            "system": _system,
            "memory": _memory,
            "filesystems": partial(_filesystems, options.exclude_mountpoints, options.exclude_fstypes),
            "disks": partial(_disks, options.exclude_disks),
            "network": partial(_network, options.exclude_interfaces),
            "open_fds": partial(_open_fds, options.procfs),
            "temperatures": _temperatures,
        }
        self._health = TargetHealth(context.name)
        self._cpu_times: list[Any] = []
        self._cpu_read_at = -MIN_CPU_WINDOW
        _run(self._cpu)  # the reading the first collect's ratios are relative to

    def _cpu(self) -> Iterator[Row]:
        """CPU ratios since the previous reading, for the machine (``cpu="total"``) and each logical CPU."""
        # A collect right after the priming reading (`qwq collect --once`) would measure nothing: wait a bit.
        time.sleep(max(0.0, self._cpu_read_at + MIN_CPU_WINDOW - time.monotonic()))
        current = [psutil.cpu_times(), *psutil.cpu_times(percpu=True)]
        self._cpu_read_at = time.monotonic()
        previous, self._cpu_times = self._cpu_times, current
        if len(previous) != len(current):  # the first reading, or a CPU went on- or offline
            return
        cpus = ["total", *(str(index) for index in range(len(current) - 1))]
        for cpu, before, after in zip(cpus, previous, current, strict=True):
            yield from _cpu_ratios(cpu, before, after)

    def collect(self, now: datetime) -> pl.DataFrame:
        """One sample of every section that can be read, stamped ``now``."""
        rows: list[Row] = []
        for name, section in self._sections.items():
            found, reason = _run(section)
            rows += found
            # A section that starts or stops failing is an event (once, not on every collect).
            event = self._health.update(f"{name} section", reason is None, reason, now=now)
            if event is not None:
                self.context.emit(event)
        host = {"host": self.context.host}
        return samples(now, ((name, {**labels, **host}, value) for name, labels, value in rows))

    def metrics(self) -> list[MetricInfo]:
        """Type, unit and help of every metric this collector emits."""
        return METRICS
