"""The file by which a running ``qwq up`` tells other processes where to reach it.

It lives next to the store (``qwq.duckdb`` → ``qwq.server.json``) and holds the server's URL and PID; it is
written atomically after the socket is bound and removed on shutdown. A file whose process is gone is
ignored, so a ``kill -9`` leaves nothing that misleads.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from qwq_core import __version__


def announcement_path(store_path: Path) -> Path:
    """Where the server of the store at ``store_path`` announces itself."""
    return store_path.with_suffix(".server.json")


@dataclass(frozen=True)
class Announcement:
    """What a running server tells other processes."""

    url: str
    pid: int
    store: str
    version: str = __version__

    def write(self, path: Path) -> None:
        """Write atomically, so readers never see half a file."""
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(vars(self)))
        temporary.replace(path)

    @classmethod
    def read(cls, path: Path) -> Announcement | None:
        """The announcement at ``path`` if it exists and its process is alive."""
        try:
            announcement = cls(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError):
            return None
        try:
            os.kill(announcement.pid, 0)
        except PermissionError:
            return announcement  # the process exists, it belongs to another user
        except OSError:
            return None
        return announcement
