"""Containers of a Docker engine: state, health, restarts and resource use, plus the engine's events live.

Configured under ``[collectors.<name>]`` in ``qwq.toml``::

    [collectors.containers]
    url = "unix:///var/run/docker.sock"      # default: $DOCKER_HOST, else this socket
    exclude = ["buildx_*", "com.example.monitor=false"]

It speaks only the Docker Engine API, through the ``docker`` SDK. Each poll lists the containers, then
inspects each one and reads its one-shot stats, concurrently (``max_concurrency`` requests at a time), all
within ``timeout``. Every series has the labels ``container``, ``image``, ``host`` (the engine's: qwq's own
for a local socket, the URL's host for a remote engine) and, for Compose services, ``compose_project`` and
``compose_service``. See ``docs/collectors/containers.md`` for the metrics and what they mean exactly.

With the event stream open, a container's inspect answer is reused until the engine reports an event about
it (or lists it in another state), so a steady poll costs one stats request per running container.

An engine that cannot be reached is data: ``container_engine_up 0`` and a ``target.down`` event with the
reason, never an exception. A container that was seen running and stops is ``container_up 0`` and a
``target.down`` event too (``target.up`` when it runs again). With ``events`` on, a thread follows the
engine's event stream and records start, die, oom, health_status, restart, kill, stop and the like as
``container.<action>`` events the moment the engine reports them (:mod:`collectors.container_events`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import docker
import polars as pl
from docker.errors import APIError, NotFound
from docker.utils import version_lt
from pydantic import BaseModel, ConfigDict, Field, field_validator

from collectors.container_engine import ENGINE_ERRORS, Engine, check_certificates, check_url, describe
from collectors.container_events import DEFAULT_ACTIONS, EventTranslator, EventWatcher
from collectors.container_stats import (
    METRICS,
    ContainerFilter,
    ContainerInfo,
    Row,
    Usage,
    container_info,
    container_rows,
    cpu_ratio,
    engine_host,
    forget_missing,
    usage,
)
from qwq_core.collector import CollectorContext, samples
from qwq_core.model import MetricInfo
from qwq_core.targets import TargetHealth
from qwq_core.timeutil import as_utc

log = logging.getLogger(__name__)

ONE_SHOT_API = "1.41"
"""The first API version with one-shot stats; older engines sample for a second per container."""


class ContainerOptions(BaseModel):
    """Options of a ``containers`` collector."""

    model_config = ConfigDict(extra="forbid")

    url: str | None = Field(
        None, description="Engine URL (unix://, tcp://, ssh://); default: $DOCKER_HOST, else the local socket."
    )
    cert_path: Path | None = Field(
        None, description="Directory with ca.pem, cert.pem, key.pem: TLS with client certificates (tcp://)."
    )
    include: list[str] = Field(
        default_factory=lambda: ["*"], description="Container name globs, or label=value-glob, to watch."
    )
    exclude: list[str] = Field(default_factory=list, description="Name globs or label=value-glob to skip (wins).")
    include_stopped: bool = Field(True, description="Also report containers that are not running (container_up 0).")
    timeout: float = Field(5.0, gt=0, description="Seconds allowed for one poll, and for each request in it.")
    max_concurrency: int = Field(8, ge=1, le=64, description="Containers inspected and measured at a time.")
    events: bool = Field(True, description="Follow the engine's event stream and record container events.")
    event_actions: list[str] = Field(
        default_factory=lambda: list(DEFAULT_ACTIONS), description="Engine actions recorded as events."
    )

    _url = field_validator("url")(check_url)
    _cert_path = field_validator("cert_path")(check_certificates)


class ContainerCollector:
    """Polls one Docker engine and follows its events; see the module docstring."""

    default_interval = timedelta(seconds=10)
    Options = ContainerOptions

    def __init__(self, options: ContainerOptions, context: CollectorContext) -> None:
        self.options = options
        self.context = context
        self.engine = Engine(options.url, options.cert_path, options.max_concurrency)
        self.url = self.engine.url
        self.host = engine_host(self.url, context.host)
        self._keep = ContainerFilter(options.include, options.exclude)
        self._engine = TargetHealth(context.name)
        self._targets: dict[str, TargetHealth] = {}  # by container name: those seen running
        self._usage: dict[str, Usage] = {}  # by container id: the previous stats, for CPU ratios
        self._known: dict[str, ContainerInfo] = {}  # by container id: the last poll's, for events and reuse
        self._changed: set[str] = set()  # ids of containers the engine reported events about since the poll
        self._changed_lock = threading.Lock()
        self._stream_at_poll: int | None = None  # the event stream's connection number at the last poll
        self._pool = ThreadPoolExecutor(options.max_concurrency, thread_name_prefix=f"qwq-{context.name}")
        self._api: docker.APIClient | None = None
        self._translate = EventTranslator(context.name, self.host, options.event_actions)
        self._watcher: EventWatcher | None = None

    # ---- polling -------------------------------------------------------------------------------------
    def collect(self, now: datetime) -> pl.DataFrame:
        """One poll of every watched container, stamped ``now``; an unreachable engine is ``up=0``."""
        deadline = time.monotonic() + self.options.timeout
        self._follow_events()
        try:
            api = self._connect()
            listed = [s for s in api.containers(all=self.options.include_stopped) if self._keep(*_identity(s))]
            infos, problem = self._inspect_all(api, listed, self._still_current(), deadline)
        except ENGINE_ERRORS as exc:
            infos, problem = [], describe(exc, self.options.timeout)
            self._disconnect()
        rows: list[Row] = [("container_engine_up", self._engine_labels(), 0.0 if problem else 1.0)]
        if self._watcher is not None:
            rows.append(("container_engine_events_connected", self._engine_labels(), float(self._watcher.connected)))
        self._report_engine(problem, now)
        if problem is None:
            rows += self._container_rows(infos, listed, now)
        return samples(now, rows)

    def _connect(self) -> docker.APIClient:
        if self._api is None:
            self._api = self.engine.client(self.options.timeout)
            if self._watcher is not None and not self._watcher.connected:
                self._watcher.wake()  # the engine is back: no need to wait out the stream's backoff
        return self._api

    def _disconnect(self) -> None:
        api, self._api = self._api, None
        if api is not None:
            api.close()

    def _still_current(self) -> dict[str, ContainerInfo]:
        """The last poll's inspect answers no event has touched since, if the event stream stayed open."""
        with self._changed_lock:
            changed, self._changed = self._changed, set()
        watcher = self._watcher
        stream = watcher.connections if watcher is not None and watcher.connected else None
        previous, self._stream_at_poll = self._stream_at_poll, stream
        if stream is None or stream != previous:  # events may have been missed: inspect everything
            return {}
        return {key: info for key, info in self._known.items() if key not in changed}

    def _inspect_all(
        self,
        api: docker.APIClient,
        listed: list[dict[str, Any]],
        current: Mapping[str, ContainerInfo],
        deadline: float,
    ) -> tuple[list[tuple[ContainerInfo, Usage | None]], str | None]:
        """Inspect (unless ``current`` still holds it) and measure ``listed`` concurrently until ``deadline``.

        Returns what came back and a problem. A container removed meanwhile is skipped; one that errs or is
        not done in time is left out of this poll. Only if none came back for such reasons is the engine
        considered down.
        """
        one_shot = not version_lt(api.api_version, ONE_SHOT_API)
        futures = []
        for summary in listed:
            known = current.get(summary["Id"])
            reuse = known if known is not None and known.state == summary.get("State") else None
            futures.append(self._pool.submit(_inspect, api, summary["Id"], one_shot, reuse))
        done, late = wait(futures, timeout=max(0.0, deadline - time.monotonic()))
        for future in late:
            future.cancel()
        results: list[tuple[ContainerInfo, Usage | None]] = []
        errors: list[BaseException] = []
        for future in done:
            error = future.exception()
            if error is None:
                results.append(future.result())
            elif not isinstance(error, NotFound):
                errors.append(error)
        if late or errors:
            log.debug("%s: %d containers late, %d failed (%s)", self.context.name, len(late), len(errors), errors[:1])
        if results or not (late or errors):
            return results, None
        if errors:
            return results, describe(errors[0], self.options.timeout)
        return results, f"timed out after {self.options.timeout:g}s"

    def _container_rows(
        self, infos: list[tuple[ContainerInfo, Usage | None]], listed: list[dict[str, Any]], now: datetime
    ) -> list[Row]:
        now_ns = _nanoseconds(now)
        rows: list[Row] = []
        for info, stats in infos:
            ratio = None
            if stats is not None:
                ratio = cpu_ratio(self._usage.get(info.id), stats)
                self._usage[info.id] = stats
            rows += container_rows(info, stats, ratio, now_ns, self.host)
            self._report_container(info, now)
        forget_missing(self._usage, (summary["Id"] for summary in listed))
        forget_missing(self._targets, (_identity(summary)[0] for summary in listed))
        self._known = {info.id: info for info, _ in infos}
        return rows

    # ---- events --------------------------------------------------------------------------------------
    def _report_engine(self, problem: str | None, now: datetime) -> None:
        event = self._engine.update(self.url, problem is None, problem, attrs=self._engine_labels(), now=now)
        if event is not None:
            self.context.emit(event)

    def _report_container(self, info: ContainerInfo, now: datetime) -> None:
        """``target.down`` when a container stops — or is found stopped by a failure (non-zero exit, dead,
        restarting) the first time we look; ``target.up`` when it runs again. A container found cleanly
        exited (code 0: a finished job) is only ``container_up 0``."""
        health = self._targets.get(info.name)
        if health is None:
            crashed = info.state in ("dead", "restarting") or info.exit_code not in (None, 0)
            if not info.running and not crashed:
                return
            health = self._targets[info.name] = TargetHealth(self.context.name)
        attrs = info.series_labels(self.host)
        reason = None if info.running else info.down_reason()
        event = health.update(info.name, info.running, reason, attrs=attrs, now=now)
        if event is not None:
            self.context.emit(event)

    def _follow_events(self) -> None:
        """Start the event watcher on the first poll, and again should its thread ever have ended."""
        if not self.options.events or (self._watcher is not None and self._watcher.alive()):
            return
        if self._watcher is not None:
            log.error("%s: the container event watcher ended unexpectedly; restarting it", self.context.name)
        self._watcher = EventWatcher(
            partial(self.engine.events, timeout=self.options.timeout),
            self._on_event,
            started_ns=time.time_ns(),
            name=self.context.name,
        )
        self._watcher.start()

    def _on_event(self, raw: Mapping[str, Any]) -> None:
        with self._changed_lock:  # whatever happened, the next poll inspects the container again
            self._changed.add(str((raw.get("Actor") or {}).get("ID") or raw.get("id") or ""))
        event = self._translate(raw, self._known, self._keep)
        if event is not None:
            self.context.emit(event)

    # ---- the rest ------------------------------------------------------------------------------------
    def _engine_labels(self) -> dict[str, str]:
        return {"engine": self.url, "host": self.host}

    def metrics(self) -> list[MetricInfo]:
        """Type, unit and help of every metric this collector emits."""
        return list(METRICS)

    def close(self) -> None:
        """Stop the event watcher and release the connections."""
        if self._watcher is not None:
            self._watcher.close()
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._disconnect()


def _inspect(
    api: docker.APIClient, container_id: str, one_shot: bool, known: ContainerInfo | None = None
) -> tuple[ContainerInfo, Usage | None]:
    """Inspect one container (unless ``known``) and, if it runs, read its stats once (CPU is per poll)."""
    info = known or container_info(api.inspect_container(container_id))
    if not info.running:
        return info, None
    try:
        raw = api.stats(container_id, stream=False, one_shot=True if one_shot else None)
    except APIError as exc:  # stopped or removed since: its state is known, its figures not
        log.debug("no stats of container %s: %s", info.name, exc)
        return info, None
    return info, usage(raw)


def _identity(summary: Mapping[str, Any]) -> tuple[str, Mapping[str, str]]:
    """Name and labels of a container from a list entry (its shortest name: others are link aliases)."""
    names = [str(name).lstrip("/") for name in summary.get("Names") or ()]
    name = min(names, key=lambda n: n.count("/"), default=str(summary["Id"])[:12])
    return name, summary.get("Labels") or {}


def _nanoseconds(moment: datetime) -> int:
    return (as_utc(moment) - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1) * 1000


__all__: Sequence[str] = ["METRICS", "ContainerCollector", "ContainerOptions"]
