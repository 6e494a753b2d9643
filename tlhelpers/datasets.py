"""Named datasets: where they come from, how they are checked, where they are kept.

``dataset_path(name)`` returns the folder of an extracted dataset: from the offline kit
when it is installed, otherwise downloaded once (checksum-verified, extracted safely)
into ``~/.tlhelpers/datasets``.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import os
import platform
import shutil
import tarfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from . import core

#: Seconds a whole download may take (all retries and mirrors together) before it is abandoned.
DOWNLOAD_DEADLINE_S = 1200.0


@dataclass(frozen=True)
class DatasetSource:
    """Where a named dataset is downloaded from and how it is checked.

    Attributes:
        urls: the archive's addresses, tried in order (the first is the official one,
            the others mirrors); ``kaggle://owner/name`` for a Kaggle dataset. A single
            address may be given as a string.
        size: the archive's size in bytes, or ``None`` when not pinned.
        sha256: the archive's SHA-256, or ``None`` when not pinned.
        root: the folder inside the archive that holds the splits.
        splits: the split folders (``train``, ``validation``) that must exist.
    """

    urls: tuple[str, ...]
    size: int | None
    sha256: str | None
    root: str
    splits: tuple[str, ...]

    def __post_init__(self) -> None:
        urls = (self.urls,) if isinstance(self.urls, str) else tuple(self.urls)
        if not urls:
            raise ValueError("A DatasetSource needs at least one address.")
        object.__setattr__(self, "urls", urls)


DATASETS: dict[str, DatasetSource] = {
    "cats_and_dogs_filtered": DatasetSource(
        urls=(
            "https://download.mlcc.google.com/mledu-datasets/cats_and_dogs_filtered.zip",
            "https://storage.googleapis.com/mledu-datasets/cats_and_dogs_filtered.zip",
        ),
        size=68_606_236,
        sha256=None,  # no published checksum; the size is checked
        root="cats_and_dogs_filtered",
        splits=("train", "validation"),
    ),
    "flower_photos": DatasetSource(
        urls=("https://storage.googleapis.com/download.tensorflow.org/example_images/flower_photos.tgz",),
        size=228_813_984,
        # as published by TensorFlow Datasets (url_checksums/tf_flowers.txt)
        sha256="4c54ace7911aaffe13a365c34f650e71dd5bf1be0a58b464e5a7183e3e595d9c",
        root="flower_photos",
        splits=(),
    ),
    "alien_vs_predator": DatasetSource(
        urls=("kaggle://pmigdal/alien-vs-predator-images",),
        size=None,
        sha256=None,
        root="data",
        splits=("train", "validation"),
    ),
}


#: Datasets that ship inside the package: always there, no download.
BUNDLED: dict[str, Path] = {
    "cats_and_dogs_sample": Path(__file__).resolve().parent / "sample_data" / "cats_and_dogs_sample",
}


class DatasetUnavailableError(RuntimeError):
    """A named dataset is neither installed nor downloadable right now."""


def is_complete(folder: Path, source: DatasetSource) -> bool:
    """Whether ``folder`` holds an extracted copy of the dataset: its split folders exist and it is not empty."""
    return folder.is_dir() and all((folder / split).is_dir() for split in source.splits) and any(folder.iterdir())


def dataset_path(name: str, download: bool = True) -> Path:
    """The local folder of a named dataset, downloading it if needed.

    Args:
        name: one of :data:`DATASETS` (``cats_and_dogs_filtered``, ``flower_photos``,
            ``alien_vs_predator``), or ``cats_and_dogs_sample``, the 120 photos bundled
            with the package (40 + 20 per class in ``train/`` and ``validation/``).
        download: whether to try the network when the dataset is not installed.

    Returns:
        The dataset's folder (holding ``train/`` and ``validation/`` where the dataset
        has those splits).

    Raises:
        ValueError: for an unknown name.
        DatasetUnavailableError: when it is not installed and cannot be downloaded;
            the message says how to install the offline kit.
    """
    if name in BUNDLED:
        return BUNDLED[name]
    if name not in DATASETS:
        raise ValueError(f"Unknown dataset {name!r}; choose one of {sorted([*DATASETS, *BUNDLED])}.")
    source = DATASETS[name]
    folder = core.datasets_dir() / name
    if is_complete(folder, source):
        return folder
    if not download:
        raise DatasetUnavailableError(_missing_message(name, folder, "downloads are switched off"))
    try:
        return fetch(name)
    except (OSError, ValueError, ImportError) as err:
        raise DatasetUnavailableError(_missing_message(name, folder, str(err))) from err


def _missing_message(name: str, folder: Path, why: str) -> str:
    return f"The dataset {name!r} is not installed in {folder} and could not be downloaded ({why}). " + core.offline_advice()


def fetch(
    name: str, target_dir: str | os.PathLike | None = None, retries: int = 2, deadline: float = DOWNLOAD_DEADLINE_S
) -> Path:
    """Download, verify and extract a named dataset into ``target_dir/name``.

    The archive is downloaded (from the first of the source's addresses that works) to
    a temporary file, checked against its pinned size and checksum, and extracted into
    a temporary folder next to the target, which is renamed into place only when
    everything succeeded: a failed or partial download leaves nothing behind, and the
    next call starts again.

    Args:
        name: one of :data:`DATASETS`.
        target_dir: the folder that receives ``name/``; ``datasets_dir()`` by default.
        retries: how often a failing address is tried again (see :func:`download_file`).
        deadline: seconds the whole download may take.

    Returns:
        The extracted dataset folder.
    """
    source = DATASETS[name]
    target_root = Path(target_dir) if target_dir else core.datasets_dir()
    target = target_root / name
    if is_complete(target, source):
        return target
    if source.urls[0].startswith("kaggle://"):
        return _fetch_kaggle(source, target)
    with core.staging_beside(target) as work:
        archive = work / Path(urllib.parse.urlsplit(source.urls[0]).path).name
        download_file(source.urls, archive, size=source.size, sha256=source.sha256, retries=retries, deadline=deadline)
        safe_extract(archive, work / "extracted")
        _install_extracted(work / "extracted" / source.root, target, source)
    return target


def _install_extracted(extracted: Path, target: Path, source: DatasetSource) -> None:
    if not is_complete(extracted, source):
        raise ValueError(f"The archive does not hold the expected folder {source.root!r} with {source.splits}.")
    core.replace_folder(extracted, target)


def _fetch_kaggle(source: DatasetSource, target: Path) -> Path:
    import kagglehub  # uses the standard Kaggle configuration (~/.kaggle or KAGGLE_* variables)

    handle = source.urls[0].removeprefix("kaggle://")
    try:
        downloaded = Path(kagglehub.dataset_download(handle))
    except Exception as err:  # kagglehub raises network, HTTP and credential errors of many types
        raise OSError(f"Kaggle download of {handle} failed: {type(err).__name__}: {err}") from err
    candidates = [downloaded / source.root, *downloaded.glob(f"*/{source.root}"), downloaded]
    found = next((c for c in candidates if is_complete(c, source)), None)
    if found is None:
        raise ValueError(f"The Kaggle dataset {handle} does not hold the expected {source.splits} folders.")
    with core.staging_beside(target) as work:
        shutil.copytree(found, work / "copy")
        _install_extracted(work / "copy", target, source)
    return target


class _DeadlineExceeded(Exception):
    """The overall download deadline passed (internal: turned into a ``TimeoutError``)."""


def download_file(
    urls: str | Sequence[str],
    dest: str | os.PathLike,
    size: int | None = None,
    sha256: str | None = None,
    retries: int = 2,
    timeout: float = 60,
    deadline: float = DOWNLOAD_DEADLINE_S,
) -> Path:
    """Download a file to ``dest`` from the first of ``urls`` that works, verifying it.

    The bytes go to a temporary file beside ``dest`` that is renamed to ``dest`` only
    once its size and SHA-256 (when given) match; on any failure it is removed. Reading
    stops as soon as more than ``size`` bytes arrive. Network errors and HTTP 5xx
    answers are retried ``retries`` times with a short pause; an HTTP 4xx answer (such
    as 404; 408 and 429 are retried) or a wrong size or checksum moves on to the next
    address at once.

    Args:
        urls: one address, or several (mirrors) tried in order.
        dest: the file to write.
        size: the expected size in bytes, or ``None``.
        sha256: the expected hex SHA-256, or ``None``.
        retries: extra tries per address after a network error.
        timeout: seconds to wait for the connection and for each read.
        deadline: seconds the whole call may take (checked between reads, so it may
            overrun by at most ``timeout``).

    Returns:
        ``dest``.

    Raises:
        ValueError: when every address failed and one of them served a file of the
            wrong size or checksum.
        TimeoutError: when the deadline passed.
        OSError: when every address failed for network or HTTP reasons. Each message
            lists every address with the reason it failed.
    """
    dest = Path(dest)
    urls = (urls,) if isinstance(urls, str) else tuple(urls)
    give_up_at = time.monotonic() + deadline
    failures: dict[str, str] = {}
    bad_copy = False
    for url in urls:
        for attempt in range(retries + 1):
            try:
                with core.atomic_path(dest) as partial:
                    _download_once(url, partial, size, sha256, timeout, give_up_at)
                return dest
            except _DeadlineExceeded as err:
                failures[url] = str(err)
                raise TimeoutError(_failed(dest, failures, f"gave up after the {deadline:g} s deadline")) from None
            except ValueError as err:  # a wrong size or checksum: this copy is bad, try the next address
                failures[url], bad_copy = str(err), True
                break
            except urllib.error.HTTPError as err:
                err.close()
                failures[url] = f"HTTP {err.code} {err.reason}"
                if 400 <= err.code < 500 and err.code not in (408, 429):
                    failures[url] += " (not retried: the address is wrong or the file was removed)"
                    break
            except (OSError, http.client.HTTPException) as err:
                failures[url] = f"{type(err).__name__}: {err}"
            if attempt < retries:
                time.sleep(max(0.0, min(1 + attempt, give_up_at - time.monotonic())))
    raise (ValueError if bad_copy else OSError)(_failed(dest, failures, "every address failed"))


def _failed(dest: Path, failures: dict[str, str], why: str) -> str:
    details = "; ".join(f"{url}: {reason}" for url, reason in failures.items())
    return f"Could not download {dest.name} ({why}): {details}"


def _download_once(url: str, out_path: Path, size: int | None, sha256: str | None, timeout: float, give_up_at: float) -> None:
    """One attempt: stream ``url`` into ``out_path``, checking size, checksum and the deadline."""
    remaining = give_up_at - time.monotonic()
    if remaining <= 0:
        raise _DeadlineExceeded("no time left to start")
    digest = hashlib.sha256()
    received = 0
    with urllib.request.urlopen(url, timeout=min(timeout, remaining)) as response, open(out_path, "wb") as out:
        announced = response.headers.get("Content-Length")
        if size is not None and announced and announced.isdigit() and int(announced) != size:
            raise ValueError(f"expected {size} bytes, got {announced} (the server's Content-Length)")
        while block := response.read1(1 << 16):
            received += len(block)
            if size is not None and received > size:
                raise ValueError(f"expected {size} bytes, the server sent more: stopped reading")
            if time.monotonic() > give_up_at:
                raise _DeadlineExceeded(f"{received} of {size or '?'} bytes received")
            digest.update(block)
            out.write(block)
    if size is not None and received < size:
        raise ConnectionError(f"the connection closed after {received} of {size} bytes")
    if sha256 is not None and digest.hexdigest() != sha256.lower():
        raise ValueError("the SHA-256 checksum does not match the pinned one (a damaged or changed file)")


def safe_extract(archive: str | os.PathLike, dest: str | os.PathLike) -> Path:
    """Extract a zip or tar archive into ``dest``, refusing any member that escapes it.

    Zip members with absolute paths or ``..`` components are refused before anything
    is written. Tar archives are extracted with ``tarfile``'s ``"data"`` filter (links
    must stay inside ``dest``: symbolic links relative to their folder, hard links
    relative to the archive's root; no devices or fifos), every member checked before
    the first is written.

    Args:
        archive: the zip or tar (optionally compressed) file.
        dest: the folder to extract into; created if needed.

    Returns:
        ``dest`` (resolved).

    Raises:
        ValueError: for an unsafe member, a damaged archive, or a Python whose
            ``tarfile`` has no ``"data"`` filter; the message names the archive.
    """
    archive, dest = Path(archive), Path(dest).resolve()
    dest.mkdir(parents=True, exist_ok=True)
    try:
        if zipfile.is_zipfile(archive):
            _extract_zip(archive, dest)
        else:
            _extract_tar(archive, dest)
    except (tarfile.TarError, zipfile.BadZipFile, gzip.BadGzipFile, EOFError, zlib.error) as err:
        why = " ".join(f"{type(err).__name__}: {err}".split())  # on one line
        raise ValueError(
            f"{archive.name} is damaged or not a zip or tar archive ({why}); delete it and download it again."
        ) from err
    return dest


def _extract_zip(archive: Path, dest: Path) -> None:
    with zipfile.ZipFile(archive) as zf:
        names = zf.namelist()
        bad = [n for n in names if os.path.isabs(n) or not (dest / n).resolve().is_relative_to(dest)]
        if bad:
            raise ValueError(f"Refusing to extract {archive.name}: members escape the target folder: {bad[:5]}")
        zf.extractall(dest)


def _extract_tar(archive: Path, dest: Path) -> None:
    if not hasattr(tarfile, "data_filter"):
        raise ValueError(
            f"Refusing to extract {archive.name}: this Python ({platform.python_version()}) has no tarfile 'data' filter "
            "to extract it safely; use Python 3.12+, 3.11.4+ or 3.10.12+."
        )
    with tarfile.open(archive) as tf:
        members = tf.getmembers()
        try:
            for member in members:
                tarfile.data_filter(member, str(dest))
            tf.extractall(dest, members=members, filter="data")
        except tarfile.FilterError as err:
            raise ValueError(
                f"Refusing to extract {archive.name}: a member would escape the target folder or is unsafe: {err}"
            ) from err
