"""The notebooks are committed without outputs (CI renders the executed ones)."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[2] / "notebooks").glob("*.ipynb"))


def test_there_are_notebooks():
    assert {path.stem for path in NOTEBOOKS} >= {"fairness", "waiting", "failures", "utilisation"}


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[path.stem for path in NOTEBOOKS])
def test_the_notebook_is_committed_without_outputs(notebook: Path):
    cells = nbformat.read(notebook, as_version=4).cells
    assert [c.source[:40] for c in cells if c.cell_type == "code" and (c.outputs or c.execution_count)] == []
