"""Fixtures shared by every test layer: a fresh store, a clean qwq home."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from qwq_core.store import LocalStore


@pytest.fixture
def store(tmp_path: Path) -> Iterator[LocalStore]:
    """An empty LocalStore in a temporary directory, closed afterwards."""
    with LocalStore(tmp_path / "qwq.duckdb") as opened:
        yield opened


@pytest.fixture
def qwq_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private QWQ_HOME with no QWQ_* variables leaking in from the developer's shell."""
    import os

    for name in list(os.environ):
        if name.startswith("QWQ_"):
            monkeypatch.delenv(name)
    home = tmp_path / "home"
    monkeypatch.setenv("QWQ_HOME", str(home))
    return home
