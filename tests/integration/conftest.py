"""A real ``qwq up`` in a subprocess, on a free port with its own home, stopped after the tests; and the
session's Docker-API engine (podman) for the container and action tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.services.podman import PodmanEngine, missing, shared_engine
from tests.support import free_port

QWQ = str(Path(sys.executable).with_name("qwq"))
FAST_CONFIG = """
[store]
flush_interval = "1s"

[collectors.host]
interval = "1s"
"""


@dataclass
class Server:
    """A running ``qwq up`` and how to reach it."""

    url: str
    home: Path
    env: dict[str, str]
    process: subprocess.Popen[str]

    def get(self, path: str, **kwargs: object) -> httpx.Response:
        return httpx.get(self.url + path, timeout=10, **kwargs)  # type: ignore[arg-type]

    def stop(self, sig: int = signal.SIGTERM) -> str:
        """Stop the server; returns what it printed."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.stdout.read() if self.process.stdout else ""


def qwq_env(home: Path) -> dict[str, str]:
    """The environment of a qwq process with its own home and no inherited QWQ_* settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("QWQ_")}
    env["QWQ_HOME"] = str(home)
    return env


def start_server(home: Path, config: str = FAST_CONFIG, *, wait_for: str | None = "host_cpu_usage_ratio") -> Server:
    """Start ``qwq up`` and wait until it answers (and, with ``wait_for``, has stored that metric)."""
    home.mkdir(parents=True, exist_ok=True)
    (home / "qwq.toml").write_text(config)
    env = qwq_env(home)
    port = free_port()
    process = subprocess.Popen(
        [QWQ, "up", "--port", str(port)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    server = Server(f"http://127.0.0.1:{port}", home, env, process)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"qwq up exited with {process.returncode}:\n{server.stop()}")
        try:
            if server.get("/api/v1/health").status_code == 200 and (
                wait_for is None or server.get("/api/v1/series", params={"match": wait_for}).json()["data"]
            ):
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    output = server.stop()
    raise RuntimeError(f"qwq up did not come up within 60 s:\n{output}")


@pytest.fixture(scope="module")
def qwq_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One ``qwq up`` (host collector at 1 s, flush 1 s) shared by a test module."""
    server = start_server(tmp_path_factory.mktemp("qwq-up") / "home")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def engine() -> Iterator[PodmanEngine]:
    """The session's Docker-API engine (podman's service) with the busybox image; skipped without podman."""
    reason = missing()
    if reason:
        pytest.skip(reason)
    with shared_engine() as shared:
        yield shared
