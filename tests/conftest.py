"""Shared fixtures: the bundled sample, the offline kit, and image trees made on the fly."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from helpers import SAMPLE

os.environ.setdefault("MPLBACKEND", "Agg")

ROOT = Path(__file__).resolve().parent.parent
KIT = Path(os.environ.get("TLHELPERS_KIT", ROOT.parent / "shared" / "kit"))


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
def isolated_home(tmp_path, monkeypatch) -> Path:
    """A fresh, empty TLHELPERS_HOME (scan and feature caches), keeping the installed
    TF Hub cache and datasets reachable."""
    from tlhelpers import kit

    hub_dir, datasets_dir = kit.hub_cache_dir(), kit.datasets_dir()
    home = tmp_path / "home"
    monkeypatch.setenv("TLHELPERS_HOME", str(home))
    monkeypatch.setenv("TFHUB_CACHE_DIR", str(hub_dir))
    (home).mkdir()
    if datasets_dir.exists():
        (home / "datasets").symlink_to(datasets_dir)
    return home


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
