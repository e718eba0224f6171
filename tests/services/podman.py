"""A Docker Engine API for tests: podman's compatible service on a private unix socket, with its own storage.

No Docker daemon and no registry exist on the test machines, so :class:`PodmanEngine` starts
``podman system service`` with storage, run and tmp directories of its own (nothing shared with other
podman users on the machine, events included) and the project's ``podman-containers.conf``; images are
built locally — :meth:`PodmanEngine.import_busybox` imports a busybox rootfs, :meth:`PodmanEngine.build`
builds a Dockerfile on top of it. Everything else goes through the Docker Engine API (``docker`` SDK)
exactly as against Docker; only what that API cannot do (running a health check now: podman has no timer
for it without systemd) uses the podman CLI.

A test session shares one engine: fixtures wrap :func:`shared_engine` (started by its first user, closed
after the last), and each test removes what it created (:meth:`PodmanEngine.run` labels every container
with the engine's id; :meth:`PodmanEngine.remove` and :meth:`PodmanEngine.remove_all` clean up).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import tarfile
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import docker
from docker.errors import DockerException, NotFound

CONF = Path(__file__).with_name("podman-containers.conf")
BUSYBOX = "localhost/qwq-test/busybox:1"
ENGINE_LABEL = "qwq.test.engine"
"""Label carried by every container :meth:`PodmanEngine.run` creates: the engine's directory name."""
TOOLS = ("podman", "runc", "conmon", "busybox")


def missing() -> str | None:
    """Why no engine can be started here (a tool is not installed), or None."""
    absent = [tool for tool in TOOLS if shutil.which(tool) is None]
    if absent:
        return f"{', '.join(absent)} not installed (make test installs podman, runc and busybox-static)"
    return None


def busybox_rootfs() -> bytes:
    """A tar of a minimal root filesystem: static busybox with every applet linked, /tmp, /www, /etc."""
    busybox = Path(shutil.which("busybox") or "/bin/busybox")
    applets = subprocess.run([busybox, "--list"], capture_output=True, text=True, check=True).stdout.split()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for directory, mode in (("bin", 0o755), ("tmp", 0o1777), ("www", 0o755), ("etc", 0o755)):
            entry = tarfile.TarInfo(directory)
            entry.type, entry.mode = tarfile.DIRTYPE, mode
            tar.addfile(entry)
        tar.add(busybox, "bin/busybox")
        for applet in applets:
            if applet != "busybox":
                link = tarfile.TarInfo(f"bin/{applet}")
                link.type, link.linkname = tarfile.SYMTYPE, "busybox"
                tar.addfile(link)
        for name, text in (("etc/passwd", "root:x:0:0:root:/:/bin/sh\n"), ("www/index.html", "qwq\n")):
            _add_file(tar, name, text.encode())
    return buffer.getvalue()


def _add_file(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    entry = tarfile.TarInfo(name)
    entry.size, entry.mode = len(data), 0o644
    tar.addfile(entry, io.BytesIO(data))


class PodmanEngine:
    """``podman system service`` on ``unix://<directory>/docker.sock``; see the module docstring."""

    def __init__(self) -> None:
        # Short and fixed under /tmp: podman refuses a run root longer than 50 characters.
        self.directory = Path(tempfile.mkdtemp(prefix="qwq-podman-", dir="/tmp"))
        self.socket = self.directory / "docker.sock"
        self.url = f"unix://{self.socket}"
        self.id = self.directory.name
        self._process: subprocess.Popen[bytes] | None = None
        self._api: docker.APIClient | None = None

    # ---- the service ---------------------------------------------------------------------------------
    def podman(self, *args: str, timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run the podman CLI on this engine's storage (tests only: production code speaks the API)."""
        return subprocess.run(
            [*self._base(), *args],
            env=self._env(),
            cwd=self.directory,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=check,
        )

    def _base(self) -> list[str]:
        d = self.directory
        return ["podman", "--root", str(d / "root"), "--runroot", str(d / "run"), "--tmpdir", str(d / "tmp")]

    def _env(self) -> dict[str, str]:
        return {**os.environ, "CONTAINERS_CONF": str(CONF)}

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, timeout: float = 30) -> PodmanEngine:
        """Start the service (again, after :meth:`stop_service`) and wait until it answers."""
        if self.running:
            return self
        self.socket.unlink(missing_ok=True)
        log = (self.directory / "service.log").open("ab")
        self._process = subprocess.Popen(
            [*self._base(), "system", "service", "--time=0", self.url],
            env=self._env(),
            cwd=self.directory,  # conmon drops files (an "oom" marker) in its working directory
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"podman service exited with {self._process.returncode}:\n{self.log()}")
            if self.socket.exists() and self._answers():
                return self
            time.sleep(0.05)
        self.stop_service()
        raise RuntimeError(f"podman service did not answer within {timeout:g}s:\n{self.log()}")

    def _answers(self) -> bool:
        try:
            with docker.APIClient(base_url=self.url, version="1.41", timeout=2) as api:
                return bool(api.ping())
        except DockerException:
            return False

    def log(self) -> str:
        """What the service printed."""
        path = self.directory / "service.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop_service(self) -> None:
        """Stop the API service only; containers keep running (like a daemon restart with live-restore)."""
        process, self._process = self._process, None
        if self._api is not None:
            self._api.close()
            self._api = None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def close(self) -> None:
        """Remove every container, stop the service, and delete the engine's storage."""
        with suppress(DockerException, OSError):
            if self.running:
                self.remove_all(every=True)
        self.stop_service()
        with suppress(subprocess.SubprocessError, OSError):  # containers created behind the API's back
            self.podman("rm", "--all", "--force", "--time", "0", check=False)
        self._kill_leftovers()
        self._unmount()
        shutil.rmtree(self.directory, ignore_errors=True)

    def _kill_leftovers(self) -> None:
        """Kill processes this engine started that outlived it (conmon of an exec session, say), by PID."""
        marker = str(self.directory).encode()
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            with suppress(OSError):
                if marker in (entry / "cmdline").read_bytes():
                    os.kill(int(entry.name), signal.SIGKILL)

    def _unmount(self) -> None:
        """Unmount what the engine mounted under its directory (overlay layers, shm), deepest first."""
        prefix = str(self.directory) + "/"
        with suppress(OSError):
            points = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
            for point in sorted((p for p in points if p.startswith(prefix)), key=len, reverse=True):
                subprocess.run(["umount", "-l", point], capture_output=True, check=False)

    def __enter__(self) -> PodmanEngine:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ---- the API -------------------------------------------------------------------------------------
    @property
    def api(self) -> docker.APIClient:
        """A Docker SDK low-level client for this engine."""
        if self._api is None:
            self._api = docker.APIClient(base_url=self.url, version="auto", timeout=60, max_pool_size=16)
        return self._api

    def import_busybox(self, tag: str = BUSYBOX) -> str:
        """Import :func:`busybox_rootfs` as image ``tag`` (once); returns the tag."""
        if not self.api.images(name=tag):
            repository, _, version = tag.rpartition(":")
            answer = self.api.import_image_from_data(busybox_rootfs(), repository=repository, tag=version)
            image_id = json.loads(str(answer).strip().splitlines()[-1])["status"]  # the last progress line
            self.api.tag(image_id, repository, version)  # podman's import ignores the tag
        return tag

    def build(self, tag: str, dockerfile: str, files: Mapping[str, bytes] | None = None) -> str:
        """Build ``dockerfile`` with ``files`` as its context (``FROM`` a local image); returns the tag."""
        context = io.BytesIO()
        with tarfile.open(fileobj=context, mode="w") as tar:
            for name, data in {"Dockerfile": dockerfile.encode(), **(files or {})}.items():
                _add_file(tar, name, data)
        context.seek(0)
        for line in self.api.build(fileobj=context, custom_context=True, tag=tag, rm=True, decode=True):
            if "error" in line:
                raise RuntimeError(f"building {tag}: {line['error']}")
        return tag

    def run(
        self,
        command: Sequence[str] = ("sleep", "3600"),
        *,
        image: str = BUSYBOX,
        name: str | None = None,
        labels: Mapping[str, str] | None = None,
        healthcheck: Mapping[str, Any] | None = None,
        start: bool = True,
        **host_config: Any,
    ) -> str:
        """Create (and start) a container labelled as this engine's; returns its id.

        ``host_config`` takes the SDK's ``create_host_config`` arguments (``restart_policy``, ``mem_limit``,
        ``network_mode``, ...); ``healthcheck`` the Engine API's (``test``, ``interval`` in ns, ``retries``).
        """
        created = self.api.create_container(
            image,
            list(command),
            name=name,
            labels={ENGINE_LABEL: self.id, **(labels or {})},
            healthcheck=dict(healthcheck) if healthcheck else None,
            host_config=self.api.create_host_config(**host_config),
        )
        container_id = str(created["Id"])
        if start:
            self.api.start(container_id)
        return container_id

    def remove(self, ids: Sequence[str]) -> None:
        """Force-remove containers, several at a time; ones already gone are fine."""

        def remove(container_id: str) -> None:
            with suppress(NotFound):
                self.api.remove_container(container_id, force=True, v=True)

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(remove, ids))

    def remove_all(self, *, every: bool = False) -> None:
        """Remove the containers :meth:`run` created (``every``: all containers of the engine)."""
        filters = None if every else {"label": f"{ENGINE_LABEL}={self.id}"}
        self.remove([c["Id"] for c in self.api.containers(all=True, filters=filters)])

    def healthcheck(self, container: str) -> str:
        """Run the container's health check now; returns ``healthy`` or ``unhealthy``.

        Docker runs checks on its own timer; podman needs systemd for that, so tests trigger them.
        """
        done = self.podman("healthcheck", "run", container, check=False)
        return "healthy" if done.returncode == 0 else "unhealthy"


_shared: PodmanEngine | None = None
_users = 0
_lock = threading.Lock()


class Containers:
    """Containers one test creates on the shared engine, named ``<prefix>-<name>`` and removed afterwards."""

    def __init__(self, engine: PodmanEngine) -> None:
        self.engine = engine
        self.prefix = f"t{uuid.uuid4().hex[:8]}"
        self.ids: list[str] = []

    def run(self, name: str, command: Sequence[str] = ("sleep", "3600"), **options: Any) -> str:
        """Create and start ``<prefix>-<name>``; returns its id. Options as :meth:`PodmanEngine.run`."""
        container_id = self.engine.run(command, name=self.name(name), **options)
        self.ids.append(container_id)
        return container_id

    def name(self, name: str) -> str:
        """The full name of this test's container ``name``."""
        return f"{self.prefix}-{name}"

    def remove_all(self) -> None:
        """Force-remove every container this test created."""
        self.engine.remove(self.ids)


@contextmanager
def shared_engine() -> Iterator[PodmanEngine]:
    """The test session's engine with the busybox image imported: started by its first user, closed after
    its last. Session-scoped fixtures in any conftest wrap this, so test areas share one engine."""
    global _shared, _users
    with _lock:
        if _shared is None:
            engine = PodmanEngine().start()
            try:
                engine.import_busybox()
            except BaseException:
                engine.close()
                raise
            _shared = engine
        _users += 1
        engine = _shared
    try:
        yield engine
    finally:
        with _lock:
            _users -= 1
            if _users == 0:
                _shared = None
                engine.close()


__all__: Sequence[str] = [
    "Containers",
    "BUSYBOX",
    "CONF",
    "ENGINE_LABEL",
    "PodmanEngine",
    "busybox_rootfs",
    "missing",
    "shared_engine",
]
