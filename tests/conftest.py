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
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

import pytest

import tlhelpers
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
    empty), with the installed TF Hub cache and datasets reachable through links.

    After the test, TensorFlow's deterministic kernels are switched off again if the test
    (``tl.set_seed``) switched them on, so that no later test runs deterministic by the
    accident of the order."""
    home = _linked_home(tmp_path / "tlhelpers_home")
    monkeypatch.setenv("TLHELPERS_HOME", str(home))
    monkeypatch.delenv("TFHUB_CACHE_DIR", raising=False)
    yield home
    if "tensorflow" in sys.modules:
        from tensorflow.python.framework import config  # no public switch back off

        if config.is_op_determinism_enabled():
            config.disable_op_determinism()


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """The lessons' classifier on the bundled sample, built once for the whole run.

    MobileNetV2 (alpha 1.0, ImageNet weights) at 160 px; the pooled features of the
    sample's 80 training and 40 validation photos; a head trained on them for 10 epochs
    (seed 0); the head on the base. Tests read ``model``; a test that changes a model
    (unfreezes, trains) loads its own copy from ``path`` with ``helpers.fresh_classifier``.
    """
    tl = tlhelpers
    home = tmp_path_factory.mktemp("trained_home")
    previous = os.environ.get("TLHELPERS_HOME")
    os.environ["TLHELPERS_HOME"] = str(_linked_home(home))
    try:
        base = tl.get_base_model("MobileNetV2", input_shape=(160, 160, 3))
        train = tl.extract_features(base, SAMPLE / "train", verbose=False, cache=False)
        val = tl.extract_features(base, SAMPLE / "validation", verbose=False, cache=False)
        head, history = tl.train_head(train, val, epochs=10, seed=0)
        model = tl.build_classifier(base, head=head)
    finally:
        os.environ["TLHELPERS_HOME"] = previous or ""
    path = tmp_path_factory.mktemp("trained") / "classifier.keras"
    model.save(path)
    return SimpleNamespace(base=base, head=head, model=model, train=train, val=val, history=history, path=path)


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
