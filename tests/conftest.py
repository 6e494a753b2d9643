"""Shared fixtures: the bundled sample, the offline kit, and image trees made on the fly.

No test writes into the real home folder. At start-up this module points ``KERAS_HOME``
and ``TLHELPERS_HOME`` at a temporary folder (before Keras is imported: Keras reads
``KERAS_HOME`` once) whose caches link to the installed kit's weights, TF Hub models
and datasets, read-only; every test then gets a fresh, empty ``TLHELPERS_HOME`` of its
own with the same links.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from tlhelpers import core

from helpers import SAMPLE

os.environ.setdefault("MPLBACKEND", "Agg")

ROOT = Path(__file__).resolve().parent.parent
KIT = Path(os.environ.get("TLHELPERS_KIT", ROOT.parent / "shared" / "kit"))

# Where the kit was installed (the user's real caches), read before they are redirected.
INSTALLED = {
    "keras_models": core.keras_models_dir(),
    "tfhub_modules": core.hub_cache_dir(),
    "datasets": core.datasets_dir(),
}
_SESSION = Path(tempfile.mkdtemp(prefix="tlhelpers-tests-"))
atexit.register(shutil.rmtree, _SESSION, ignore_errors=True)


def _linked_home(folder: Path) -> Path:
    """A TLHELPERS_HOME whose TF Hub cache and datasets are links to the installed ones."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("tfhub_modules", "datasets"):
        if INSTALLED[name].is_dir() and not (folder / name).exists():
            (folder / name).symlink_to(INSTALLED[name], target_is_directory=True)
    return folder


(_SESSION / "keras").mkdir()
if INSTALLED["keras_models"].is_dir():
    (_SESSION / "keras" / "models").symlink_to(INSTALLED["keras_models"], target_is_directory=True)
os.environ["KERAS_HOME"] = str(_SESSION / "keras")
os.environ["TLHELPERS_HOME"] = str(_linked_home(_SESSION / "home"))
os.environ.pop("TFHUB_CACHE_DIR", None)


@pytest.fixture(autouse=True)
def isolated_home(tmp_path, monkeypatch) -> Path:
    """A fresh, empty TLHELPERS_HOME for every test (scan and feature caches start
    empty), with the installed TF Hub cache and datasets reachable through links."""
    home = _linked_home(tmp_path / "tlhelpers_home")
    monkeypatch.setenv("TLHELPERS_HOME", str(home))
    monkeypatch.delenv("TFHUB_CACHE_DIR", raising=False)
    return home


@pytest.fixture(scope="session")
def sample() -> Path:
    """The bundled cats-vs-dogs sample (train/ and validation/)."""
    return SAMPLE


@pytest.fixture(scope="session")
def kit_dir() -> Path:
    """The offline kit folder; tests that copy from it are skipped where it is absent."""
    if not (KIT / "keras" / "models").is_dir():
        pytest.skip(f"no offline kit at {KIT} (set TLHELPERS_KIT)")
    return KIT


@pytest.fixture
def copy_tree(tmp_path):
    """Copy a few images per class of the sample into a fresh folder and return it."""

    def make(split: str = "train", per_class: int = 6, classes=("cats", "dogs")) -> Path:
        dest = tmp_path / f"tree_{split}_{per_class}"
        for cls in classes:
            (dest / cls).mkdir(parents=True)
            for f in sorted((SAMPLE / split / cls).glob("*.jpg"))[:per_class]:
                shutil.copy(f, dest / cls / f.name)
        return dest

    return make
