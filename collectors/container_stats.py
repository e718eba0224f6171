"""What the Docker Engine API says about a container, turned into samples: pure functions, no I/O, no clock.

``GET /containers/{id}/json`` (inspect) becomes a :class:`ContainerInfo`, ``GET /containers/{id}/stats``
(one-shot) a :class:`Usage`; :func:`container_rows` makes the samples of one poll from both, plus the CPU
usage ratio measured between this poll's stats and the previous one's (:func:`cpu_ratio`).

Fields differ between cgroup v1 and v2 engines (``total_inactive_file`` vs ``inactive_file``, ``Read`` vs
``read``), and a field an engine does not report yields no sample rather than a zero.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from qwq_core.model import MetricInfo

Row = tuple[str, Mapping[str, str], float]

COMPOSE_PROJECT = "com.docker.compose.project"
COMPOSE_SERVICE = "com.docker.compose.service"
HEALTH_VALUES = {"healthy": 1.0, "unhealthy": 0.0}
"""``container_health`` per health status; ``starting`` and no health check yield no sample."""

HELP = {
    "container_engine_up": "1 if the engine answered the last poll, 0 otherwise",
    "container_engine_events_connected": "1 while the engine's event stream is followed (with events = true)",
    "container_up": "1 if the container is running, 0 in any other state (created, paused, restarting, exited)",
    "container_health": "Health check status: 1 healthy, 0 unhealthy; absent while starting or without a check",
    "container_uptime_seconds": "Time since the running container was last started",
    "container_restarts_total": "Restarts by the engine's restart policy (the engine's RestartCount)",
    "container_cpu_usage_ratio": "CPU time used between two polls as a share of all the engine's CPUs (0-1)",
    "container_cpu_usage_seconds_total": "CPU time the container has used (user and system)",
    "container_memory_used_bytes": "Memory in use, page cache that can be reclaimed left out (as docker stats)",
    "container_memory_limit_bytes": "Memory limit; the engine's memory when the container has none",
    "container_network_receive_bytes_total": "Bytes received, over all the container's interfaces",
    "container_network_transmit_bytes_total": "Bytes sent, over all the container's interfaces",
    "container_block_read_bytes_total": "Bytes read from block devices",
    "container_block_written_bytes_total": "Bytes written to block devices",
}
METRICS: tuple[MetricInfo, ...] = tuple(replace(MetricInfo.infer(name), help=text) for name, text in HELP.items())
"""Every metric the containers collector can emit; type and unit follow from the name."""

_TIME = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$")
_NS_PER_S = 1_000_000_000


def parse_time_ns(text: str | None) -> int | None:
    """Nanoseconds since the Unix epoch of an engine timestamp (RFC 3339, nanosecond precision).

    None for a missing, malformed or zero (``0001-01-01T00:00:00Z``, "never") timestamp.
    """
    match = _TIME.match(text or "")
    if match is None:
        return None
    whole, fraction, zone = match.groups()
    moment = datetime.fromisoformat(whole + ("+00:00" if zone == "Z" else zone)).astimezone(UTC)
    if moment.year <= 1:
        return None
    seconds = int((moment - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds())
    return seconds * _NS_PER_S + int((fraction or "0")[:9].ljust(9, "0"))


@dataclass(frozen=True)
class ContainerInfo:
    """A container's identity and state, from an inspect answer."""

    id: str
    name: str
    image: str
    labels: Mapping[str, str]
    state: str
    """``created``, ``running``, ``paused``, ``restarting``, ``removing``, ``exited`` or ``dead``."""
    exit_code: int | None
    health: str | None
    """``healthy``, ``unhealthy``, ``starting``, or None without a health check."""
    started_ns: int | None
    restarts: int

    @property
    def running(self) -> bool:
        return self.state == "running"

    def series_labels(self, host: str) -> dict[str, str]:
        """``container``, ``image``, ``host`` and, for Compose services, ``compose_project`` and ``compose_service``."""
        labels = {"container": self.name, "image": self.image, "host": host}
        for key, label in ((COMPOSE_PROJECT, "compose_project"), (COMPOSE_SERVICE, "compose_service")):
            if self.labels.get(key):
                labels[label] = self.labels[key]
        return labels

    def down_reason(self) -> str:
        """Why the container is not running, for a ``target.down`` event."""
        if self.state in ("exited", "dead") and self.exit_code is not None:
            return f"{self.state} with code {self.exit_code}"
        return self.state


def container_info(inspect: Mapping[str, Any]) -> ContainerInfo:
    """The :class:`ContainerInfo` of an inspect answer (``GET /containers/{id}/json``)."""
    state = inspect.get("State") or {}
    config = inspect.get("Config") or {}
    health = (state.get("Health") or {}).get("Status") or None  # "" when the container has no check
    exit_code = state.get("ExitCode")
    return ContainerInfo(
        id=inspect["Id"],
        name=str(inspect.get("Name") or inspect["Id"][:12]).lstrip("/"),
        image=str(config.get("Image") or inspect.get("Image") or ""),
        labels=dict(config.get("Labels") or {}),
        state=str(state.get("Status") or ("running" if state.get("Running") else "unknown")),
        exit_code=exit_code if isinstance(exit_code, int) else None,
        health=health if health != "none" else None,
        started_ns=parse_time_ns(state.get("StartedAt")),
        restarts=int(inspect.get("RestartCount") or 0),
    )


@dataclass(frozen=True)
class Usage:
    """Resource figures of one stats answer; None where the engine reports nothing."""

    read_ns: int
    cpu_ns: int | None
    online_cpus: int
    memory_used: float | None
    memory_limit: float | None
    network_rx: float | None
    network_tx: float | None
    block_read: float | None
    block_written: float | None


def usage(stats: Mapping[str, Any]) -> Usage | None:
    """The :class:`Usage` of a one-shot stats answer; None if it has no read time (a stopped container)."""
    read_ns = parse_time_ns(stats.get("read"))
    if read_ns is None:
        return None
    cpu = stats.get("cpu_stats") or {}
    cpu_usage = cpu.get("cpu_usage") or {}
    total = cpu_usage.get("total_usage")
    memory = stats.get("memory_stats") or {}
    limit = memory.get("limit")
    networks = stats.get("networks")
    rx, tx = _network_totals(networks) if isinstance(networks, Mapping) else (None, None)
    read, written = _block_totals(stats.get("blkio_stats"))
    return Usage(
        read_ns=read_ns,
        cpu_ns=int(total) if isinstance(total, int | float) else None,
        online_cpus=int(cpu.get("online_cpus") or len(cpu_usage.get("percpu_usage") or ()) or 1),
        memory_used=memory_used(memory),
        memory_limit=float(limit) if limit else None,
        network_rx=rx,
        network_tx=tx,
        block_read=read,
        block_written=written,
    )


def memory_used(memory_stats: Mapping[str, Any]) -> float | None:
    """Usage minus inactive page cache, as ``docker stats`` shows it (cgroup v1 and v2 fields)."""
    used = memory_stats.get("usage")
    if not isinstance(used, int | float):
        return None
    details = memory_stats.get("stats") or {}
    for key in ("total_inactive_file", "inactive_file"):  # cgroup v1, v2
        inactive = details.get(key)
        if isinstance(inactive, int | float) and inactive < used:
            return float(used - inactive)
    return float(used)


def _network_totals(networks: Mapping[str, Any]) -> tuple[float, float]:
    rx = sum(float(nic.get("rx_bytes") or 0) for nic in networks.values())
    tx = sum(float(nic.get("tx_bytes") or 0) for nic in networks.values())
    return rx, tx


def _block_totals(blkio: Any) -> tuple[float | None, float | None]:
    """Bytes read and written over all devices; None if the engine gives no byte counts at all."""
    entries = (blkio or {}).get("io_service_bytes_recursive") if isinstance(blkio, Mapping) else None
    if not isinstance(entries, list):
        return None, None
    totals = {"read": 0.0, "write": 0.0}
    for entry in entries:
        op = str(entry.get("op", "")).lower()  # "Read" on cgroup v1, "read" on v2
        if op in totals:
            totals[op] += float(entry.get("value") or 0)
    return totals["read"], totals["write"]


def cpu_ratio(previous: Usage | None, current: Usage) -> float | None:
    """CPU time used between two stats readings as a share of all the engine's CPUs over that time.

    ``Δ cpu_usage.total_usage / (Δ read × online_cpus)``, clamped to 0–1. The engine's own read times are
    the clock, so scheduling delays on qwq's side do not skew it. None on the first reading, when no time
    passed, or when the counter went back (the container was re-created or restarted).
    """
    if previous is None or previous.cpu_ns is None or current.cpu_ns is None:
        return None
    elapsed = current.read_ns - previous.read_ns
    used = current.cpu_ns - previous.cpu_ns
    if elapsed <= 0 or used < 0:
        return None
    return min(1.0, max(0.0, used / (elapsed * current.online_cpus)))


def container_rows(info: ContainerInfo, stats: Usage | None, ratio: float | None, now_ns: int, host: str) -> list[Row]:
    """The samples of one container at one poll; ``stats`` only for a running container."""
    labels = info.series_labels(host)
    rows: list[Row] = [
        ("container_up", labels, 1.0 if info.running else 0.0),
        ("container_restarts_total", labels, float(info.restarts)),
    ]
    if info.health in HEALTH_VALUES and info.running:
        rows.append(("container_health", labels, HEALTH_VALUES[info.health]))
    if info.running and info.started_ns is not None:
        rows.append(("container_uptime_seconds", labels, max(0, now_ns - info.started_ns) / _NS_PER_S))
    if stats is None or not info.running:
        return rows
    if ratio is not None:
        rows.append(("container_cpu_usage_ratio", labels, ratio))
    figures = {
        "container_cpu_usage_seconds_total": None if stats.cpu_ns is None else stats.cpu_ns / _NS_PER_S,
        "container_memory_used_bytes": stats.memory_used,
        "container_memory_limit_bytes": stats.memory_limit,
        "container_network_receive_bytes_total": stats.network_rx,
        "container_network_transmit_bytes_total": stats.network_tx,
        "container_block_read_bytes_total": stats.block_read,
        "container_block_written_bytes_total": stats.block_written,
    }
    rows += [(name, labels, value) for name, value in figures.items() if value is not None]
    return rows


class ContainerFilter:
    """Which containers to watch: ``include`` and ``exclude`` patterns, exclude winning.

    A pattern with ``=`` matches a label (``com.docker.compose.project=shop``, the value a shell glob:
    ``tier=*`` is "has the label"); any other pattern is a shell glob over the container's name.
    """

    def __init__(self, include: Sequence[str], exclude: Sequence[str]) -> None:
        self._include = [_pattern(p) for p in include]
        self._exclude = [_pattern(p) for p in exclude]

    def __call__(self, name: str, labels: Mapping[str, str]) -> bool:
        def matches(key: str | None, glob: str) -> bool:
            if key is None:
                return fnmatch.fnmatchcase(name, glob)
            return key in labels and fnmatch.fnmatchcase(labels[key], glob)

        included = any(matches(key, glob) for key, glob in self._include)
        return included and not any(matches(key, glob) for key, glob in self._exclude)


def _pattern(text: str) -> tuple[str | None, str]:
    key, sep, glob = text.partition("=")
    return (key, glob) if sep else (None, text)


def is_loopback(hostname: str) -> bool:
    """True for ``localhost`` and loopback addresses."""
    hostname = hostname.strip("[]").lower()
    if hostname == "localhost":
        return True
    try:
        return ipaddress.ip_address(hostname).is_loopback
    except ValueError:
        return False


def engine_host(url: str, local_host: str) -> str:
    """The ``host`` label of an engine's series: the URL's host for a remote engine, else qwq's own."""
    parts = urlsplit(url)
    if parts.scheme in ("unix", "http+unix", "npipe", "") or not parts.hostname or is_loopback(parts.hostname):
        return local_host
    return parts.hostname


def forget_missing(state: dict[str, Any], present: Iterable[str]) -> None:
    """Drop the entries of ``state`` whose key is not in ``present`` (containers that are gone)."""
    for key in state.keys() - set(present):
        del state[key]


__all__: Sequence[str] = [
    "METRICS",
    "ContainerFilter",
    "ContainerInfo",
    "Usage",
    "container_info",
    "container_rows",
    "cpu_ratio",
    "engine_host",
    "forget_missing",
    "memory_used",
    "parse_time_ns",
    "usage",
]
