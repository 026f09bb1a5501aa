"""Every notebook runs headless with the SMOKE switch on, and is committed without outputs."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from tests.tasks.test_diffusion import tiny_pipe  # noqa: F401  (the fixture, for the pipeline app)

_ROOT = Path(__file__).resolve().parents[1] / "notebooks"
#: The lessons, then the apps that ``labkit app`` serves.
NOTEBOOKS = sorted(_ROOT.glob("*.ipynb")) + sorted((_ROOT / "apps").glob("*.ipynb"))
_IDS = [str(p.relative_to(_ROOT).with_suffix("")) for p in NOTEBOOKS]
#: Run headless here: the lessons, and the apps no browser test serves (the browser tests in
#: tests/browser/test_app.py run every other app through `labkit app`, ranking a round each).
RUN = [p for p in NOTEBOOKS if p.parent == _ROOT or p.stem == "pipeline"]


def test_there_are_notebooks() -> None:
    assert NOTEBOOKS, "notebooks/ should hold the lessons and apps"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_IDS)
def test_notebook_is_committed_without_outputs(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, (
                f"{path.name} cell {i} has outputs: strip them before committing"
            )


@pytest.mark.parametrize("path", RUN, ids=[_IDS[NOTEBOOKS.index(p)] for p in RUN])
def test_notebook_runs_headless_in_smoke_mode(
    path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    monkeypatch.setenv("LABKIT_SMOKE", "1")
    monkeypatch.setenv("LABKIT_DB", str(tmp_path / "rounds.sqlite"))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("LABKIT_THREADS", "1")
    if path.name == "pipeline.ipynb":
        # The pipeline app loads a diffusers folder from disk: a tiny one, saved here.
        pipe = request.getfixturevalue("tiny_pipe")
        pipe.save_pretrained(tmp_path / "pipeline")
        monkeypatch.setenv("LABKIT_PIPELINE", str(tmp_path / "pipeline"))
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    )
    client.execute()  # raises CellExecutionError, with the cell and traceback, on any error
    errors = [
        out
        for cell in nb.cells
        if cell.cell_type == "code"
        for out in cell.outputs
        if out.get("output_type") == "error"
    ]
    assert not errors
