"""``qwq_core.connect()``: one call that finds the right store for a notebook, a script or the CLI.

DuckDB lets one process write a database file and, while it does, no other process may open it. qwq's
answer: the process that runs ``qwq up`` owns the file and announces its URL next to it; everyone else
reads and writes through that server's REST API (Arrow IPC on the wire, so frames arrive intact and live —
up to the last flush). When no server runs, ``connect()`` opens the file directly.
"""

from __future__ import annotations

from pathlib import Path

import httpx

from qwq_core.announce import Announcement, announcement_path
from qwq_core.settings import Settings, load_settings
from qwq_core.store.base import Store
from qwq_core.store.local import LocalStore
from qwq_core.store.remote import RemoteStore


def connect(
    target: str | Path | None = None,
    *,
    token: str | None = None,
    read_only: bool = False,
    settings: Settings | None = None,
) -> Store:
    """Open a store.

    ``target`` is ``None`` (the configured store: ``$QWQ_HOME/qwq.duckdb`` by default), a path to a store
    file or to a directory holding ``qwq.duckdb``, or the ``http(s)://host:port`` of a running qwq. For a
    file, a live ``qwq up`` serving it is used when there is one; otherwise the file is opened in this
    process (``read_only=True`` to open it without taking the write lock).
    """
    if settings is None:
        settings = load_settings()[0]
    token = token or settings.server.token_value()
    if isinstance(target, str) and target.startswith(("http://", "https://")):
        return RemoteStore(target, token=token)
    path = settings.store_path if target is None else _store_file(Path(target).expanduser())
    server = live_server(path)
    if server is not None:
        return RemoteStore(server.url, token=token)
    return LocalStore(path, settings=settings.store, read_only=read_only)


def _store_file(path: Path) -> Path:
    return path / "qwq.duckdb" if path.is_dir() or not path.suffix else path


def live_server(store_path: Path) -> Announcement | None:
    """The announcement of the ``qwq up`` serving the store at ``store_path``, if it is alive and answers."""
    announcement = Announcement.read(announcement_path(store_path))
    if announcement is None:
        return None
    try:
        httpx.get(f"{announcement.url}/api/v1/health", timeout=3.0).raise_for_status()
    except httpx.HTTPError:
        return None
    return announcement
