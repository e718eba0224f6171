"""The notebooks in ``notebooks/`` run, top to bottom, against a freshly started ``qwq up``.

Each is executed with nbclient in a ``python3`` kernel whose ``QWQ_HOME`` is the server's home, so
``qwq_core.connect()`` in the notebook finds that server. Cells tagged ``connect`` and ``query`` are checked
for what they show: a RemoteStore, and a query that returned samples.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbformat import NotebookNode

from tests.integration.conftest import Server

NOTEBOOKS = sorted((Path(__file__).resolve().parents[2] / "notebooks").glob("*.ipynb"))
CELL_TIMEOUT_S = 60


def text_of(cell: NotebookNode) -> str:
    """Everything a code cell printed or displayed as text."""
    parts = []
    for output in cell.get("outputs", []):
        if output.output_type == "stream":
            parts.append(output.text)
        elif output.output_type in ("execute_result", "display_data"):
            parts.append(output.data.get("text/plain", ""))
    return "".join(parts)


def tagged(nb: NotebookNode, tag: str) -> list[NotebookNode]:
    return [cell for cell in nb.cells if tag in cell.get("metadata", {}).get("tags", [])]


def test_there_are_notebooks() -> None:
    assert [path.name for path in NOTEBOOKS if path.name == "tour.ipynb"], "notebooks/tour.ipynb is missing"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.name)
def test_notebook_is_stored_without_outputs(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    dirty = [index for index, cell in enumerate(nb.cells) if cell.cell_type == "code" and cell.outputs]
    assert dirty == [], f"{path.name}: clear the outputs of cells {dirty} before committing"


@pytest.mark.slow
@pytest.mark.service
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.name)
def test_notebook_runs_against_a_running_server(path: Path, qwq_server: Server) -> None:
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb,
        kernel_name="python3",
        timeout=CELL_TIMEOUT_S,
        startup_timeout=CELL_TIMEOUT_S,
        resources={"metadata": {"path": str(path.parent)}},
    )
    client.execute(env=qwq_server.env)  # raises CellExecutionError, naming the cell, if one fails

    errors = [out for cell in nb.cells for out in cell.get("outputs", []) if out.output_type == "error"]
    assert errors == []
    for cell in tagged(nb, "connect"):
        assert "RemoteStore" in text_of(cell), text_of(cell)
        assert qwq_server.url in text_of(cell)
    for cell in tagged(nb, "query"):
        counts = [int(n) for n in re.findall(r"(\d+) samples", text_of(cell))]
        assert counts and all(n > 0 for n in counts), text_of(cell)
    if path.name == "tour.ipynb":
        assert tagged(nb, "connect") and tagged(nb, "query")
