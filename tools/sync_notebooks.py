"""Keep every notebook's Colab badge and install cell in step with one setting.

The repository's address lives in one place, ``[project.urls] Repository`` in
``pyproject.toml``, and the release in ``tlhelpers.__version__``. This script writes
them into the README's and each notebook's "Open in Colab" badge (which opens the
notebook at the release tag ``vX.Y.Z``) and into each notebook's first code cell, the
Colab install cell (which installs ``tlhelpers`` at that same tag), so a notebook and
the package it runs on never drift apart.

    python tools/sync_notebooks.py                 # rewrite from the current settings
    python tools/sync_notebooks.py --repository https://github.com/OWNER/NAME   # move everything
    python tools/sync_notebooks.py --check         # exit 1 if anything is out of step (the tests run this)
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = ROOT / "pyproject.toml"
README = ROOT / "README.md"
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))

_REPO_LINE = re.compile(r'^Repository = "([^"]+)"$', re.M)
_BADGE = re.compile(r"https://colab\.research\.google\.com/github/[^)\s]+?/notebooks/([0-9]{2}_[\w-]+\.ipynb)")

INSTALL_CELL = """\
# Google Colab only (this cell does nothing elsewhere): install tlhelpers at the release
# this notebook was written for. Colab already has TensorFlow and Keras; nothing of
# theirs is replaced. For speed pick a GPU: Runtime > Change runtime type > T4 GPU.
import importlib.util
import os

try:
    import google.colab  # noqa: F401
    IN_COLAB = True
except ImportError:
    IN_COLAB = False

if IN_COLAB and importlib.util.find_spec("tensorflow") is None:
    print("This Colab runtime has no TensorFlow (TPU runtimes don't): choose Runtime > "
          "Change runtime type > CPU or T4 GPU, then run the notebook again.")
elif IN_COLAB:
    TLHELPERS = os.environ.get("TLHELPERS_SOURCE", "git+{repository}@{tag}")
    get_ipython().run_line_magic("pip", f"install tlhelpers{extras}@{{TLHELPERS}}")"""

#: Optional extras a notebook's install cell adds (``pip install tlhelpers[extra]``).
EXTRAS = {"07_deploy_litert_and_savedmodel.ipynb": "[litert]"}


def settings() -> tuple[str, str]:
    """``(repository URL, release tag)`` from pyproject.toml and tlhelpers.__version__."""
    match = _REPO_LINE.search(PYPROJECT.read_text())
    if not match:
        raise SystemExit('pyproject.toml needs a line `Repository = "https://github.com/OWNER/NAME"` under [project.urls].')
    version = re.search(r'^__version__ = "([^"]+)"', (ROOT / "tlhelpers" / "__init__.py").read_text(), re.M).group(1)
    return match.group(1).rstrip("/"), f"v{version}"


def badge_url(repository: str, tag: str, notebook: str) -> str:
    """The "Open in Colab" address of ``notebook`` at ``tag``."""
    path = repository.removeprefix("https://github.com/")
    return f"https://colab.research.google.com/github/{path}/blob/{tag}/notebooks/{notebook}"


def _badges(text: str, repository: str, tag: str) -> str:
    return _BADGE.sub(lambda m: badge_url(repository, tag, m.group(1)), text)


def sync(repository: str, tag: str, write: bool) -> list[str]:
    """Bring the README and notebooks in step; returns the files that were (or would be) changed."""
    changed = []
    readme = README.read_text()
    if _badges(readme, repository, tag) != readme:
        changed.append(README.name)
        if write:
            README.write_text(_badges(readme, repository, tag))
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        first_md = next(c for c in nb.cells if c.cell_type == "markdown")
        install = next(c for c in nb.cells if c.cell_type == "code")
        new_md = _badges(first_md.source, repository, tag)
        new_install = INSTALL_CELL.format(repository=repository, tag=tag, extras=EXTRAS.get(path.name, ""))
        if new_md != first_md.source or new_install != install.source:
            changed.append(f"notebooks/{path.name}")
            if write:
                first_md.source, install.source = new_md, new_install
                nbformat.write(nb, path)
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repository", help="move every link to this GitHub repository (updates pyproject.toml)")
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 when something is out of step")
    args = parser.parse_args(argv)
    if args.repository:
        text = PYPROJECT.read_text()
        PYPROJECT.write_text(_REPO_LINE.sub(f'Repository = "{args.repository.rstrip("/")}"', text))
    repository, tag = settings()
    changed = sync(repository, tag, write=not args.check)
    for name in changed:
        print(("out of step: " if args.check else "updated: ") + name)
    return 1 if args.check and changed else 0


if __name__ == "__main__":
    sys.exit(main())
