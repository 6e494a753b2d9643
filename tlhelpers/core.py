"""Paths, hashing, atomic writes and staged folders: the TensorFlow-free core every other module uses.

Nothing here imports TensorFlow or Keras, so the kit command (``python -m
tlhelpers.kit``), the setup check and the scanning of image folders start in a
fraction of a second.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

__all__ = [
    "STAGING_SUFFIX",
    "atomic_path",
    "datasets_dir",
    "home",
    "hub_cache_dir",
    "hub_cache_set_to",
    "hub_handle_dirname",
    "keras_home",
    "keras_models_dir",
    "offline_advice",
    "replace_folder",
    "sha256",
    "staging_beside",
]

#: The suffix of the scratch folders :func:`staging_beside` makes (an interrupted run leaves them behind).
STAGING_SUFFIX = ".tlhelpers-staging"


def in_jupyter_kernel() -> bool:
    """True inside a running Jupyter (IPython) kernel; False in scripts, tests and plain IPython."""
    kernelapp = sys.modules.get("ipykernel.kernelapp")
    return bool(kernelapp and kernelapp.IPKernelApp.initialized())


def home() -> Path:
    """Where ``tlhelpers`` keeps datasets, TF Hub models and caches.

    ``$TLHELPERS_HOME`` if set, else ``~/.tlhelpers``.
    """
    return Path(os.environ.get("TLHELPERS_HOME") or Path.home() / ".tlhelpers").expanduser()


def keras_home() -> Path:
    """Keras' own cache folder: ``$KERAS_HOME`` if set, else ``~/.keras``."""
    return Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras").expanduser()


def keras_models_dir() -> Path:
    """The folder Keras searches for downloaded weights before it downloads them."""
    return keras_home() / "models"


def hub_cache_dir() -> Path:
    """The TF Hub cache ``tlhelpers`` reads handles from (``$TFHUB_CACHE_DIR`` if set)."""
    env = os.environ.get("TFHUB_CACHE_DIR")
    return Path(env).expanduser() if env else home() / "tfhub_modules"


def datasets_dir() -> Path:
    """The folder named datasets are extracted into: ``home()/datasets``."""
    return home() / "datasets"


@contextlib.contextmanager
def hub_cache_set_to(folder: str | os.PathLike) -> Iterator[None]:
    """Point ``TFHUB_CACHE_DIR`` (where ``tensorflow_hub`` downloads to) at ``folder`` for the block."""
    previous = os.environ.get("TFHUB_CACHE_DIR")
    os.environ["TFHUB_CACHE_DIR"] = str(folder)
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("TFHUB_CACHE_DIR", None)
        else:
            os.environ["TFHUB_CACHE_DIR"] = previous


def sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """The hex SHA-256 digest of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def hub_handle_dirname(handle: str) -> str:
    """The folder name TF Hub's cache uses for ``handle`` (the SHA-1 of the string)."""
    return hashlib.sha1(handle.encode("utf8")).hexdigest()


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Write a file under a temporary name, then rename it to ``target`` in one step.

    Yields a fresh path in ``target``'s folder (unique per call, so two processes
    writing the same target never share a temporary file); when the block finishes
    without an exception the file there replaces ``target`` atomically, otherwise it
    is removed. Readers therefore see the old file or the complete new one, never a
    half-written one. ``suffix`` keeps an extension some writers insist on
    (``".keras"``, ``".npz"``).
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=f".tmp{suffix}", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def staging_beside(target: str | os.PathLike) -> Iterator[Path]:
    """A fresh scratch folder beside ``target``, removed when the block ends, whatever happens.

    Beside ``target`` means on the same file system, so a folder built in it can be
    renamed into place in one step with :func:`replace_folder`: how every download,
    extraction and kit install of the package puts a folder in place, so that no
    interrupted run leaves a folder that looks complete. The scratch folder's name ends
    in :data:`STAGING_SUFFIX`.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=STAGING_SUFFIX, dir=target.parent))
    try:
        os.chmod(work, 0o755)  # like a folder made under the usual umask (mkdtemp's start private)
        yield work
    finally:
        shutil.rmtree(work, ignore_errors=True)


def replace_folder(new: str | os.PathLike, target: str | os.PathLike) -> None:
    """Move the folder ``new`` to ``target``, replacing whatever is there.

    The old folder is first renamed aside (beside ``new``, which must be on the same
    file system as ``target``: a folder from :func:`staging_beside`) and deleted last,
    so ``target`` is at every moment absent, the old folder or the new one: never
    half-deleted or half-written.
    """
    new, target = Path(new), Path(target)
    old = new.with_name(new.name + ".old")
    if target.is_symlink() or target.exists():
        os.replace(target, old)
    os.replace(new, target)
    if old.is_symlink():
        old.unlink()
    else:
        shutil.rmtree(old, ignore_errors=True)


def offline_advice() -> str:
    """What to do when something must be downloaded and the network is out of reach."""
    return (
        "Connect to the internet, or install the offline kit: `python -m tlhelpers.kit install PATH/TO/kit` "
        "(build one on a machine with internet access with `python -m tlhelpers.kit download PATH/TO/kit`)."
    )
