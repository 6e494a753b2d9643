"""The committed notebooks: linked from the README, Colab-ready, and with clean outputs."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def test_lessons_are_numbered_in_order():
    assert [p.name[:2] for p in NOTEBOOKS] == [f"{i:02d}" for i in range(1, len(NOTEBOOKS) + 1)] and len(NOTEBOOKS) >= 6


def test_repository_url_and_release_are_the_same_in_every_badge_and_install_cell():
    """One setting (pyproject's Repository and the package version) drives every link:
    `python tools/sync_notebooks.py --check` finds nothing out of step, and no other
    GitHub address of the project appears anywhere."""
    import re
    import sys

    sys.path.insert(0, str(ROOT / "tools"))
    import sync_notebooks

    repository, tag = sync_notebooks.settings()
    assert sync_notebooks.sync(repository, tag, write=False) == []
    texts = {"README.md": (ROOT / "README.md").read_text()}
    texts.update({p.name: p.read_text() for p in NOTEBOOKS})
    for name, text in texts.items():
        for url in re.findall(r"colab\.research\.google\.com/github/([^)\s\"]+)/blob/([^/]+)/", text):
            assert url == (repository.removeprefix("https://github.com/"), tag), f"{name}: {url}"
        for ref in re.findall(r"git\+(https://github\.com/[^@\s\"]+)@([\w.]+)", text):
            assert ref == (repository, tag), f"{name}: {ref}"
    for path in NOTEBOOKS:
        install = next(c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code").source
        assert f"git+{repository}@{tag}" in install and 'run_line_magic("pip"' in install


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_linked_colab_ready_and_clean(path):
    nb = nbformat.read(path, as_version=4)
    readme = (ROOT / "README.md").read_text()
    assert f"notebooks/{path.name})" in readme and f"/notebooks/{path.name})" in readme
    first_md = next(c for c in nb.cells if c.cell_type == "markdown")
    assert first_md.source.startswith("# ") and f"notebooks/{path.name})" in first_md.source  # title and Colab badge
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert "google.colab" in code[0].source
    assert any('os.environ.get("TLHELPERS_QUICK")' in c.source for c in code[:3])  # one parameters cell
    assert any(re.search(r"^QUICK = False", c.source, re.M) for c in code[:3]), "QUICK: a learner's switch, off by default"
    assert all(c.execution_count for c in code), "committed notebooks carry the outputs of a full run"
    assert path.stat().st_size <= 1_500_000, f"{path.name} is {path.stat().st_size / 1e6:.1f} MB: keep notebooks under 1.5 MB"
    for cell in code:
        for out in cell.outputs:
            assert out.output_type != "error", f"stack trace in the outputs of: {cell.source[:60]!r}"
            assert not (out.output_type == "stream" and out.name == "stderr"), f"log noise in the outputs: {out.text[:200]!r}"
            assert "application/vnd.jupyter.widget-view+json" not in out.get("data", {}), (
                "a progress-bar widget was left in the outputs"
            )
        assert not re.search(r"^\s*assert\b", cell.source, re.M), f"an assert in a lesson cell: {cell.source[:60]!r}"
        printed = "".join(out.get("text", "") + out.get("data", {}).get("text/plain", "") for out in cell.outputs)
        for noise in ("/root/", "/home/", "/work/", "/tmp/", "AutoGraph", "WARNING"):
            assert noise not in printed, f"{noise!r} (a machine's path or log noise) in the outputs of: {cell.source[:60]!r}"
    # prose between the steps: at least one markdown cell for every two code cells
    assert sum(c.cell_type == "markdown" for c in nb.cells) * 2 >= len(code)
