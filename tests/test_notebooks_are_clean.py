"""The committed notebooks: linked from the README, Colab-ready, and with clean outputs."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def test_there_are_six_lessons():
    assert len(NOTEBOOKS) == 6


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_linked_colab_ready_and_clean(path):
    nb = nbformat.read(path, as_version=4)
    readme = (ROOT / "README.md").read_text()
    assert f"notebooks/{path.name})" in readme and f"blob/main/notebooks/{path.name})" in readme
    first_md = next(c for c in nb.cells if c.cell_type == "markdown")
    assert first_md.source.startswith("# ") and f"notebooks/{path.name})" in first_md.source  # title and Colab badge
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert "google.colab" in code[0].source
    assert any('os.environ.get("TLHELPERS_QUICK")' in c.source for c in code[:3])  # one parameters cell
    assert all(c.execution_count for c in code), "committed notebooks carry the outputs of a full run"
    for cell in code:
        for out in cell.outputs:
            assert out.output_type != "error", f"stack trace in the outputs of: {cell.source[:60]!r}"
            assert not (out.output_type == "stream" and out.name == "stderr"), f"log noise in the outputs: {out.text[:200]!r}"
            assert "application/vnd.jupyter.widget-view+json" not in out.get("data", {}), "a progress-bar widget was left in the outputs"
    # prose between the steps: at least one markdown cell for every two code cells
    assert sum(c.cell_type == "markdown" for c in nb.cells) * 2 >= len(code)
