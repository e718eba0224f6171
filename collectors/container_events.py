"""The engine's event stream (``GET /events``, ``type=container``) turned into qwq events as they happen.

:class:`EventTranslator` maps one engine event to an :class:`~qwq_core.model.Event` (pure: no I/O, no clock);
:class:`EventWatcher` follows the stream in a daemon thread, reconnecting with backoff and resuming from the
last event it saw (``since``), so a broken stream loses nothing the engine still remembers and replays
nothing twice.

Kinds are ``container.<action>`` with the engine's action names (``container.die``, ``container.oom``,
``container.health_status``, ...). Severity follows what happened: an OOM kill, or an exit with a non-zero
code nobody asked for, is an ``error``; an unhealthy check a ``warning``; the rest ``info`` (a restart too:
Docker reports ``restart`` for one asked for, while a crash shows in its ``die``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

from collectors.container_stats import COMPOSE_PROJECT, COMPOSE_SERVICE, ContainerInfo
from qwq_core.model import Event, Severity

log = logging.getLogger(__name__)

DEFAULT_ACTIONS = (
    "create",
    "start",
    "restart",
    "stop",
    "kill",
    "die",
    "oom",
    "pause",
    "unpause",
    "destroy",
    "rename",
    "health_status",
)
"""Engine actions recorded by default; exec, attach, resize, copy and the like are left out."""
STOP_REQUESTS = frozenset({"kill", "stop"})
REQUEST_WINDOW_NS = 60 * 1_000_000_000
"""A container that dies within this long of a kill or stop request was stopped, not crashed."""
_VERBS = {
    "create": "was created",
    "start": "started",
    "restart": "restarted",
    "stop": "stopped",
    "pause": "was paused",
    "unpause": "was unpaused",
    "destroy": "was removed",
    "oom": "ran out of memory (OOM kill)",
}
_NS = 1_000_000_000
STABLE_SECONDS = 10.0
"""A stream that stayed open this long resets the reconnection backoff."""


def _time_ns(raw: Mapping[str, Any]) -> int:
    nanos = raw.get("timeNano")
    return int(nanos) if nanos else int(raw.get("time") or 0) * _NS


class EventTranslator:
    """Turns engine events into qwq events; remembers kill/stop requests to tell a stop from a crash."""

    def __init__(self, source: str, host: str, actions: Iterable[str] = DEFAULT_ACTIONS) -> None:
        self.source = source
        self.host = host
        self.actions = frozenset(actions)
        self._requested: dict[str, int] = {}  # container id → time of its last kill or stop request

    def __call__(
        self,
        raw: Mapping[str, Any],
        known: Mapping[str, ContainerInfo],
        keep: Callable[[str, Mapping[str, str]], bool],
    ) -> Event | None:
        """The qwq event for ``raw``, or None if it is not a recorded container action or not watched.

        ``known`` (containers by id, from the last poll) fills in labels the engine left out of the event;
        ``keep(name, labels)`` is the collector's include/exclude filter.
        """
        if raw.get("Type", "container") != "container":
            return None
        action, _, detail = str(raw.get("Action") or raw.get("status") or "").partition(":")
        actor = raw.get("Actor") or {}
        container_id = str(actor.get("ID") or raw.get("id") or "")
        attributes: Mapping[str, str] = actor.get("Attributes") or {}
        at = _time_ns(raw)
        expected = self._note(action, container_id, at)
        if action not in self.actions:
            return None
        info = known.get(container_id)
        name = attributes.get("name") or (info.name if info else container_id[:12])
        labels = dict(info.labels) if info else {}
        labels.update({k: v for k, v in attributes.items() if k not in ("name", "image")})
        if not keep(name, labels):
            return None
        image = attributes.get("image") or (info.image if info else "") or str(raw.get("from") or "")
        attrs: dict[str, Any] = {"container": name, "id": container_id[:12], "image": image, "action": action}
        attrs["host"] = self.host
        for key, attr in ((COMPOSE_PROJECT, "compose_project"), (COMPOSE_SERVICE, "compose_service")):
            if labels.get(key):
                attrs[attr] = labels[key]
        severity, what = self._describe(action, detail.strip(), raw, attributes, attrs, expected)
        return Event(
            kind=f"container.{action}",
            message=f"container {name} ({image}) {what}",
            source=self.source,
            severity=severity,
            attrs=attrs,
            ts=datetime.fromtimestamp(at / _NS, UTC),
        )

    def _note(self, action: str, container_id: str, at: int) -> bool:
        """Record stop requests; for a ``die``, whether one came shortly before."""
        if action in STOP_REQUESTS:
            self._requested[container_id] = at
            if len(self._requested) > 10_000:  # containers removed without dying: forget the oldest
                del self._requested[next(iter(self._requested))]
            return False
        if action in ("die", "destroy"):
            requested = self._requested.pop(container_id, None)
            return requested is not None and at - requested <= REQUEST_WINDOW_NS
        return False

    @staticmethod
    def _describe(
        action: str,
        detail: str,
        raw: Mapping[str, Any],
        attributes: Mapping[str, str],
        attrs: dict[str, Any],
        expected: bool,
    ) -> tuple[Severity, str]:
        """Severity and message predicate of one action; adds the action's own details to ``attrs``."""
        if action == "die":
            code = _int(attributes.get("exitCode"))
            attrs["exit_code"] = code
            attrs["requested"] = expected
            if code == 0 or expected:
                return "info", f"exited with code {code}" + (" after a stop request" if expected else "")
            return "error", "died" if code is None else f"died with exit code {code}"
        if action == "health_status":
            # Docker puts the status in the action ("health_status: unhealthy"); some engines in a field.
            status = detail or str(raw.get("HealthStatus") or "")
            attrs["health_status"] = status or None
            if status == "unhealthy":
                return "warning", "is unhealthy"
            return "info", f"is {status}" if status else "changed health status"
        if action == "kill":
            attrs["signal"] = attributes.get("signal")
            return "info", f"was sent signal {attributes.get('signal', '?')}"
        if action == "rename":
            attrs["old_name"] = attributes.get("oldName", "").lstrip("/") or None
            return "info", f"was renamed from {attrs['old_name']}"
        return "error" if action == "oom" else "info", _VERBS.get(action, action)


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


class EventStream(Protocol):
    """What ``APIClient.events`` returns: an iterator of decoded events that another thread can close."""

    def __iter__(self) -> Any: ...

    def close(self) -> None: ...


class EventSource(Protocol):
    """Opens the engine's container event stream from ``since`` (``"<seconds>.<nanoseconds>"``) on."""

    def __call__(self, since: str) -> EventStream: ...


class EventWatcher:
    """Follows an engine's event stream in a daemon thread and hands each new event to ``handle``.

    The stream is (re)opened from the time of the last event received (from the watcher's start at first),
    so events during a reconnection are replayed by the engine; events already handled are skipped. Between
    attempts it waits ``min_backoff`` seconds, doubling up to ``max_backoff``. Nothing escapes the thread: a
    failure is logged and retried; :attr:`connected` says whether the stream is open right now.
    """

    def __init__(
        self,
        source: EventSource,
        handle: Callable[[Mapping[str, Any]], None],
        *,
        started_ns: int,
        name: str = "containers",
        min_backoff: float = 0.5,
        max_backoff: float = 30.0,
    ) -> None:
        self._source = source
        self._handle = handle
        self._last_ns = started_ns
        self._seen: deque[tuple[int, str, str]] = deque(maxlen=4096)
        self._seen_set: set[tuple[int, str, str]] = set()
        self._min_backoff, self._max_backoff = min_backoff, max_backoff
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._stream: EventStream | None = None
        self._connected = False
        self._connections = 0
        self._thread = threading.Thread(target=self._run, name=f"qwq-{name}-events", daemon=True)

    @property
    def connected(self) -> bool:
        """True while the event stream is open."""
        return self._connected

    @property
    def connections(self) -> int:
        """How many times the stream was opened: unchanged between two moments means no gap in events."""
        return self._connections

    def alive(self) -> bool:
        """True while the watcher's thread runs."""
        return self._thread.is_alive()

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        """Reconnect now rather than at the end of the backoff (say, the engine answered a poll again)."""
        self._wake.set()

    def close(self, timeout: float = 2.0) -> None:
        """Stop following the stream; returns once the thread ended, or after ``timeout`` seconds."""
        self._stop.set()
        self._wake.set()
        with self._lock:
            stream = self._stream
        if stream is not None:
            _close(stream)
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def _run(self) -> None:
        backoff = self._min_backoff
        while not self._stop.is_set():
            opened = time.monotonic()
            try:
                self._follow()
                if not self._stop.is_set():
                    log.warning("container event stream ended; reconnecting")
            except Exception as exc:  # the engine is down or broke the stream: retry, never die
                log.debug("container event stream failed: %s", exc, exc_info=True)
            finally:
                self._connected = False
                with self._lock:
                    stream, self._stream = self._stream, None
                if stream is not None:
                    _close(stream)
            if time.monotonic() - opened >= STABLE_SECONDS:  # it worked for a while: retry quickly
                backoff = self._min_backoff
            self._wake.wait(backoff)
            self._wake.clear()
            backoff = min(backoff * 2, self._max_backoff)

    def _follow(self) -> None:
        """Open the stream and hand on its events until it ends."""
        seconds, nanos = divmod(self._last_ns, _NS)
        stream = self._source(f"{seconds}.{nanos:09d}")
        with self._lock:
            self._stream = stream
            if self._stop.is_set():  # close() ran while the stream was being opened
                return
        self._connections += 1
        self._connected = True
        for raw in stream:
            if self._stop.is_set():
                break
            if isinstance(raw, Mapping) and self._is_new(raw):
                try:
                    self._handle(raw)
                except Exception:  # a bug in handling one event must not end the stream
                    log.exception("could not record container event %s", raw)

    def _is_new(self, raw: Mapping[str, Any]) -> bool:
        at = _time_ns(raw)
        key = (at, str(raw.get("id") or ""), str(raw.get("Action") or raw.get("status") or ""))
        if key in self._seen_set:
            return False
        if len(self._seen) == self._seen.maxlen:
            self._seen_set.discard(self._seen[0])
        self._seen.append(key)
        self._seen_set.add(key)
        self._last_ns = max(self._last_ns, at)
        return True


def _close(stream: EventStream) -> None:
    try:
        stream.close()
    except Exception as exc:  # already closed, or the socket is gone
        log.debug("closing the container event stream: %s", exc)


__all__: Sequence[str] = ["DEFAULT_ACTIONS", "EventSource", "EventStream", "EventTranslator", "EventWatcher"]
