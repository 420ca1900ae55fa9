"""docs/tutorial.ipynb runs as written: executed cell by cell in a fresh kernel on tiny settings (nbclient), and
equal to what experiments.tools.make_tutorial generates (so the notebook and its reviewed source never drift)."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from experiments.tools.make_tutorial import build

NOTEBOOK = Path(__file__).resolve().parents[1] / "docs" / "tutorial.ipynb"


def test_the_notebook_is_the_generated_one():
    shipped = nbformat.read(str(NOTEBOOK), as_version=4)
    assert [(c.cell_type, c.source) for c in shipped.cells] == [(c.cell_type, c.source) for c in build().cells], \
        "docs/tutorial.ipynb differs from experiments/tools/make_tutorial.py: run python -m experiments.tools.make_tutorial"


@pytest.mark.slow
def test_every_cell_of_the_tutorial_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("TUTORIAL_STEPS", "3")
    monkeypatch.setenv("TUTORIAL_SAMPLES", "2000")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(str(NOTEBOOK), as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "FZPlus  MSE" in outputs and "with HFGI" in outputs
    assert not any(o.get("output_type") == "error" for c in nb.cells if c.cell_type == "code" for o in c.outputs)
