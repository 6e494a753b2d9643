"""Named datasets: where they come from, how they are checked, where they are kept.

``dataset_path(name)`` returns the folder of an extracted dataset: from the offline kit
when it is installed, otherwise downloaded once (checksum-verified, extracted safely)
into ``~/.tlhelpers/datasets``.
"""

from __future__ import annotations

import os
import shutil
import tarfile
import tempfile
import time
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

from . import core


@dataclass(frozen=True)
class DatasetSource:
    """Where a named dataset is downloaded from and how it is checked.

    Attributes:
        url: the archive's address (``kaggle://owner/name`` for a Kaggle dataset).
        size: the archive's size in bytes, or ``None`` when not pinned.
        sha256: the archive's SHA-256, or ``None`` when not pinned.
        root: the folder inside the archive that holds the splits.
        splits: the split folders (``train``, ``validation``) that must exist.
    """

    url: str
    size: int | None
    sha256: str | None
    root: str
    splits: tuple[str, ...]


DATASETS: dict[str, DatasetSource] = {
    "cats_and_dogs_filtered": DatasetSource(
        url="https://storage.googleapis.com/mledu-datasets/cats_and_dogs_filtered.zip",
        size=68_606_236,
        sha256=None,
        root="cats_and_dogs_filtered",
        splits=("train", "validation"),
    ),
    "flower_photos": DatasetSource(
        url="https://storage.googleapis.com/download.tensorflow.org/example_images/flower_photos.tgz",
        size=228_813_984,
        sha256=None,
        root="flower_photos",
        splits=(),
    ),
    "alien_vs_predator": DatasetSource(
        url="kaggle://pmigdal/alien-vs-predator-images",
        size=None,
        sha256=None,
        root="data",
        splits=("train", "validation"),
    ),
}


class DatasetUnavailableError(RuntimeError):
    """A named dataset is neither installed nor downloadable right now."""


def _complete(folder: Path, source: DatasetSource) -> bool:
    return folder.is_dir() and all((folder / split).is_dir() for split in source.splits) and any(folder.iterdir())


def dataset_path(name: str, download: bool = True) -> Path:
    """The local folder of a named dataset, downloading it if needed.

    Args:
        name: one of :data:`DATASETS` (``cats_and_dogs_filtered``, ``flower_photos``,
            ``alien_vs_predator``).
        download: whether to try the network when the dataset is not installed.

    Returns:
        The dataset's folder (holding ``train/`` and ``validation/`` where the dataset
        has those splits).

    Raises:
        ValueError: for an unknown name.
        DatasetUnavailableError: when it is not installed and cannot be downloaded;
            the message says how to install the offline kit.
    """
    if name not in DATASETS:
        raise ValueError(f"Unknown dataset {name!r}; choose one of {sorted(DATASETS)}.")
    source = DATASETS[name]
    folder = core.datasets_dir() / name
    if _complete(folder, source):
        return folder
    if not download:
        raise DatasetUnavailableError(_missing_message(name, folder, "downloads are switched off"))
    try:
        return fetch(name)
    except (OSError, ValueError, ImportError) as err:
        raise DatasetUnavailableError(_missing_message(name, folder, str(err))) from err


def _missing_message(name: str, folder: Path, why: str) -> str:
    return (
        f"The dataset {name!r} is not installed in {folder} and could not be downloaded ({why}). "
        "Connect to the internet, or install the offline kit: `python -m tlhelpers.kit install PATH/TO/kit`."
    )


def fetch(name: str, target_dir: str | os.PathLike | None = None, retries: int = 2) -> Path:
    """Download, verify and extract a named dataset into ``target_dir/name``.

    The archive is downloaded to a temporary file, checked against its pinned size and
    checksum, and extracted into a temporary folder next to the target, which is
    renamed into place only when everything succeeded: a failed or partial download
    leaves nothing behind, and the next call starts again.

    Returns:
        The extracted dataset folder.
    """
    source = DATASETS[name]
    target_root = Path(target_dir) if target_dir else core.datasets_dir()
    target = target_root / name
    if _complete(target, source):
        return target
    target_root.mkdir(parents=True, exist_ok=True)
    if source.url.startswith("kaggle://"):
        return _fetch_kaggle(source, target)
    with tempfile.TemporaryDirectory(dir=target_root, prefix=f".{name}-") as tmp:
        archive = Path(tmp) / Path(source.url).name
        download_file(source.url, archive, size=source.size, sha256=source.sha256, retries=retries)
        staging = Path(tmp) / "extracted"
        safe_extract(archive, staging)
        _install_extracted(staging / source.root, target, source)
    return target


def _install_extracted(extracted: Path, target: Path, source: DatasetSource) -> None:
    if not _complete(extracted, source):
        raise ValueError(f"The archive does not hold the expected folder {source.root!r} with {source.splits}.")
    if target.exists():
        shutil.rmtree(target)
    os.replace(extracted, target)


def _fetch_kaggle(source: DatasetSource, target: Path) -> Path:
    import kagglehub  # uses the standard Kaggle configuration (~/.kaggle or KAGGLE_* variables)

    handle = source.url.removeprefix("kaggle://")
    try:
        downloaded = Path(kagglehub.dataset_download(handle))
    except Exception as err:  # kagglehub raises network, HTTP and credential errors of many types
        raise OSError(f"Kaggle download of {handle} failed: {type(err).__name__}: {err}") from err
    candidates = [downloaded / source.root, *downloaded.glob(f"*/{source.root}"), downloaded]
    found = next((c for c in candidates if _complete(c, source)), None)
    if found is None:
        raise ValueError(f"The Kaggle dataset {handle} does not hold the expected {source.splits} folders.")
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{target.name}-") as tmp:
        staging = Path(tmp) / "copy"
        shutil.copytree(found, staging)
        _install_extracted(staging, target, source)
    return target


def download_file(url: str, dest: Path, size: int | None = None, sha256: str | None = None, retries: int = 2) -> Path:
    """Download ``url`` to ``dest``, verifying its size and SHA-256 when given.

    The bytes go to ``dest.partial`` first and are renamed to ``dest`` only once
    verified; on any failure the partial file is removed. Network errors are retried
    ``retries`` times with a short pause.

    Raises:
        ValueError: when the size or checksum does not match (the file is deleted).
        OSError: when the download keeps failing.
    """
    dest = Path(dest)
    partial = dest.with_name(dest.name + ".partial")
    last_error: Exception | None = None
    for attempt in range(retries + 1):
        try:
            with urllib.request.urlopen(url, timeout=60) as response, open(partial, "wb") as out:
                shutil.copyfileobj(response, out, 1 << 20)
            actual_size = partial.stat().st_size
            if size is not None and actual_size != size:
                raise ValueError(f"{url}: expected {size} bytes, got {actual_size} (an incomplete download?)")
            if sha256 is not None and core.sha256(partial) != sha256:
                raise ValueError(f"{url}: the SHA-256 checksum does not match the pinned one")
            os.replace(partial, dest)
            return dest
        except ValueError:
            partial.unlink(missing_ok=True)
            raise
        except OSError as err:
            partial.unlink(missing_ok=True)
            last_error = err
            if attempt < retries:
                time.sleep(1 + attempt)
    raise OSError(f"Could not download {url}: {last_error}")


def safe_extract(archive: Path, dest: Path) -> Path:
    """Extract a zip or tar archive into ``dest``, refusing any member that escapes it.

    Absolute paths, ``..`` components, and (for tar files) links pointing outside
    ``dest`` and device files raise ``ValueError`` before anything is written.

    Returns:
        ``dest``.
    """
    dest = Path(dest).resolve()
    dest.mkdir(parents=True, exist_ok=True)

    def inside(member_name: str) -> bool:
        return (dest / member_name).resolve().is_relative_to(dest)

    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            bad = [n for n in zf.namelist() if os.path.isabs(n) or not inside(n)]
            if bad:
                raise ValueError(f"Refusing to extract {archive.name}: members escape the target folder: {bad[:5]}")
            zf.extractall(dest)
        return dest
    with tarfile.open(archive) as tf:
        members = tf.getmembers()
        bad = [m.name for m in members if os.path.isabs(m.name) or not inside(m.name)]
        bad += [m.name for m in members if (m.issym() or m.islnk()) and not inside(os.path.join(os.path.dirname(m.name), m.linkname))]
        bad += [m.name for m in members if m.isdev()]
        if bad:
            raise ValueError(f"Refusing to extract {archive.name}: members escape the target folder: {bad[:5]}")
        tf.extractall(dest, filter="data")
    return dest
