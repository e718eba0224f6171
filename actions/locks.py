"""Per-target locks: two applies on one target never interleave, in one process or across processes.

A target lock is an in-process lock plus, when the engine has a qwq home, an exclusive ``flock`` on
``<home>/locks/<target>.lock``, so a ``qwq action run`` from a shell and the actions of a running
``qwq up`` wait for each other. The holder writes who it is into the file, so a refusal can say who holds
the lock. ``flock`` locks die with their process: a crashed run never leaves a target locked.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from qwq_core.errors import ActionError

_POLL = 0.05


def lock_file(directory: Path, target: str) -> Path:
    """The lock file of ``target``: a readable name plus a short hash, so distinct targets never collide."""
    readable = re.sub(r"[^A-Za-z0-9_.-]+", "_", target)[:80]
    digest = hashlib.sha256(target.encode()).hexdigest()[:8]
    return directory / f"{readable}-{digest}.lock"


class TargetLock:
    """One held lock on a target; :meth:`release` may be called from any thread, once."""

    def __init__(self, target: str, memory: threading.Lock, fd: int | None) -> None:
        self.target = target
        self._memory = memory
        self._fd = fd
        self._released = False
        self._guard = threading.Lock()

    def release(self) -> None:
        """Give the lock up (the file lock first, then the in-process one)."""
        with self._guard:
            if self._released:
                return
            self._released = True
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
        self._memory.release()


class Locks:
    """The engine's target locks; ``directory`` None keeps them in-process only."""

    def __init__(self, directory: Path | None) -> None:
        self.directory = directory
        self._memory: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def acquire(self, target: str, *, wait: float, holder: Mapping[str, Any]) -> TargetLock:
        """Take ``target``'s lock, waiting up to ``wait`` seconds; :class:`ActionError` names the holder."""
        deadline = time.monotonic() + wait
        with self._guard:
            memory = self._memory.setdefault(target, threading.Lock())
        if not memory.acquire(timeout=max(wait, 0)):
            raise ActionError(f"{target} is busy: another run in this process holds its lock", target=target)
        try:
            fd = self._acquire_file(target, deadline)
        except BaseException:
            memory.release()
            raise
        if fd is not None:
            os.write(fd, json.dumps({**holder, "pid": os.getpid()}, default=str).encode())
        return TargetLock(target, memory, fd)

    def _acquire_file(self, target: str, deadline: float) -> int | None:
        if self.directory is None:
            return None
        self.directory.mkdir(parents=True, exist_ok=True)
        path = lock_file(self.directory, target)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                os.ftruncate(fd, 0)
                return fd
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    raise ActionError(f"{target} is busy: {_holder(path)} holds its lock", target=target) from None
                time.sleep(_POLL)


def _holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        info = {}
    if not info:
        return "another process"
    return f"{info.get('actor', '?')} running {info.get('action', '?')} (pid {info.get('pid', '?')})"


__all__: Sequence[str] = ["Locks", "TargetLock", "lock_file"]
