"""The offline kit: pre-trained weights, TF Hub models and datasets without a network.

A kit is a folder laid out like the caches the libraries keep themselves::

    kit/
      keras/models/<weights>.h5      # Keras' cache ($KERAS_HOME/models)
      tfhub_modules/<sha1(handle)>/  # TF Hub's cache (TFHUB_CACHE_DIR)
      datasets/<name>/               # extracted datasets, one folder each
      SHA256SUMS                     # the manifest: the checksum of every file to install

This module says what a kit holds and installs one, without TensorFlow:
``python -m tlhelpers.kit install DIR`` copies a kit into the places Keras and
``tlhelpers`` look, copying only the files ``SHA256SUMS`` lists and verifying each.
:mod:`tlhelpers.kit.build` makes a kit while online (``python -m tlhelpers.kit
download DIR``), for a workshop to copy onto every machine.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import posixpath
import re
import shutil
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ..core import (
    STAGING_SUFFIX,
    atomic_path,
    datasets_dir,
    home,
    hub_cache_dir,
    keras_models_dir,
    replace_folder,
    sha256,
    staging_beside,
)
from ..core import (
    hub_handle_dirname as hub_handle_dirname,  # re-exported: the folder a handle has in a kit
)

try:
    import fcntl
except ImportError:  # Windows: installs are not locked against each other
    fcntl = None

#: The MobileNetV2 ImageNet weight files the notebooks use (alpha, size, with top).
MOBILENET_V2_WEIGHTS = [
    *[(alpha, size, False) for alpha in ("1.0", "0.35") for size in (96, 128, 160, 192, 224)],
    ("1.0", 224, True),
]
KERAS_WEIGHTS_URL = "https://storage.googleapis.com/tensorflow/keras-applications/"
IMAGENET_CLASS_INDEX = "imagenet_class_index.json"
IMAGENET_CLASS_INDEX_URL = "https://storage.googleapis.com/download.tensorflow.org/data/" + IMAGENET_CLASS_INDEX

#: The MobileNetV2 feature-vector model the notebooks use (on Kaggle, where TF Hub's models now live).
MOBILENET_V2_FEATURE_VECTOR = "https://www.kaggle.com/models/google/mobilenet-v2/TensorFlow2/100-224-feature-vector/2"

#: The TF Hub handles a kit holds: the notebooks' model and the same model under its tfhub.dev addresses.
HUB_HANDLES = [
    MOBILENET_V2_FEATURE_VECTOR,
    "https://tfhub.dev/google/imagenet/mobilenet_v2_100_224/feature_vector/5",
    "https://tfhub.dev/google/tf2-preview/mobilenet_v2/feature_vector/4",
]

MANIFEST = "SHA256SUMS"
_LINK_STUB_MAX_BYTES = 256
_MANIFEST_LINE = re.compile(r"([0-9a-fA-F]{64}) [ *](.+)")


def mobilenet_v2_weights_name(alpha: str | float, size: int, include_top: bool) -> str:
    """The file name Keras gives a MobileNetV2 ImageNet weights file."""
    alpha = f"{float(alpha):g}" if float(alpha) != 1 else "1.0"
    suffix = "" if include_top else "_no_top"
    return f"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_{alpha}_{size}{suffix}.h5"


@dataclass
class InstallReport:
    """What :func:`install` did.

    Attributes:
        copied: how many files were copied into each destination (``keras``,
            ``tfhub_modules``, ``datasets``); files already in place are not counted.
            ``report["keras"]`` is short for ``report.copied["keras"]``.
        unlisted: the kit's files (paths relative to the kit) that ``SHA256SUMS`` does
            not list, and that were therefore not copied.
    """

    copied: dict[str, int]
    unlisted: list[str] = field(default_factory=list)

    def __getitem__(self, part: str) -> int:
        return self.copied[part]


@dataclass
class _File:
    source: Path  # the verified file in the kit (links and stubs followed)
    rel: str  # its path below the unit's destination
    digest: str
    size: int


@dataclass
class _Unit:
    """Files installed together: one top-level file, or one folder staged as a whole."""

    part: str
    dest: Path  # the destination folder the files' ``rel`` paths are relative to
    files: list[_File]
    folder: bool


def some_names(names: list[str], shown: int = 5) -> str:
    """``names`` for a message: the first few, then how many more."""
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


def _read_manifest(kit: Path) -> dict[str, str]:
    """The kit's ``SHA256SUMS`` as ``{relative posix path: hex digest}``.

    Raises:
        FileNotFoundError: when the kit has no manifest.
        ValueError: for a malformed line, or one naming a path outside the kit.
    """
    path = kit / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(
            f"{kit} has no {MANIFEST}: installing needs this manifest to know which files to copy and to verify them. "
            "Copy the whole kit again, or rebuild it with `python -m tlhelpers.kit download DIR` (which writes one)."
        )
    sums = {}
    for number, line in enumerate(path.read_text(encoding="utf8", errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        match = _MANIFEST_LINE.fullmatch(line)
        name = posixpath.normpath(match[2]) if match else ""
        if not match or name.startswith(("/", "../")) or name in (".", ".."):
            raise ValueError(
                f"{path}, line {number}: expected '<64 hex digits>  ./relative/path', got {line[:80]!r}; "
                "the manifest is damaged: copy the kit again."
            )
        sums[name] = match[1].lower()
    return sums


def _stub_target(path: Path) -> Path | None:
    """Where a link stub points (resolved), or ``None`` when ``path`` is not a stub.

    Kits are copied with tools that sometimes turn a relative symbolic link into a
    regular file whose whole content is the link's target ("other_file.h5"): a small
    UTF-8 file holding one line.
    """
    if path.stat().st_size > _LINK_STUB_MAX_BYTES:
        return None
    try:
        text = path.read_bytes().decode("utf8").strip()
    except UnicodeDecodeError:
        return None
    if not text or any(c in text for c in "\n\r\0"):
        return None
    return Path(os.path.realpath(path.parent / text))


def _follow(path: Path, kit: Path, sums: dict[str, str]) -> tuple[str, Path, str | None]:
    """What ``path`` (inside the resolved ``kit``) stands for, through links and link stubs.

    Returns:
        ``("dir", folder, None)``; ``("file", file, digest)`` for a file the manifest
        lists under ``path``'s own name or under the name of the file it leads to; or
        ``("unlisted", path, None)``.

    Raises:
        ValueError: for a link or stub leading outside the kit, a loop, a broken link,
            or a special file (fifo, device, socket).
    """
    digest = sums.get(path.relative_to(kit).as_posix())
    seen: set[Path] = set()
    current = path
    while True:
        try:
            real = Path(os.path.realpath(current, strict=True))
        except OSError as err:
            raise ValueError(
                f"{path} is a broken link or a link loop ({err.strerror}): the kit is damaged; copy it again."
            ) from err
        if not real.is_relative_to(kit):
            raise ValueError(
                f"{path} leads to {real}, outside the kit {kit}: refusing it. Copy the kit with its links followed (cp -rL)."
            )
        if real in seen:
            raise ValueError(f"{path}: its link stubs form a loop: the kit is damaged; copy it again.")
        seen.add(real)
        mode = real.stat().st_mode
        if stat.S_ISDIR(mode):
            return "dir", real, None
        if not stat.S_ISREG(mode):
            raise ValueError(f"{path} is not a regular file or folder (a fifo, device or socket): refusing to install it.")
        digest = digest or sums.get(real.relative_to(kit).as_posix())
        if digest:
            return "file", real, digest
        target = _stub_target(real)
        if target is not None and not target.is_relative_to(kit):
            raise ValueError(f"{path} is a link stub naming {target}, outside the kit {kit}: refusing it.")
        if target is None or not os.path.lexists(target):
            return "unlisted", path, None
        current = target


def _collect(
    folder: Path, kit: Path, sums: dict[str, str], unlisted: list[str], stack: tuple[Path, ...], prefix: str = ""
) -> list[_File]:
    """The listed files below ``folder`` (recursively), appending the unlisted ones to ``unlisted``.

    ``stack`` holds the folders being walked above ``folder``; a link or stub that
    leads back into one of them would copy a folder into itself, so it is refused.
    """
    if any(above.is_relative_to(folder) for above in stack):
        raise ValueError(f"{folder} is reached again through a link or link stub inside it (a loop): the kit is damaged.")
    files = []
    for entry in sorted(Path(e.path) for e in os.scandir(folder)):
        kind, real, digest = _follow(entry, kit, sums)
        rel = prefix + entry.name
        if kind == "dir":
            files += _collect(real, kit, sums, unlisted, (*stack, folder), rel + "/")
        elif kind == "file":
            files.append(_File(real, rel, digest, real.stat().st_size))
        else:
            unlisted.append(entry.relative_to(kit).as_posix())
    return files


def _plan(kit: Path, sums: dict[str, str], parts: dict[str, tuple[Path, Path]]) -> tuple[list[_Unit], list[str]]:
    """Everything to install, checked before anything is written: the units, and the unlisted files."""
    units: list[_Unit] = []
    unlisted: list[str] = []
    for part, (src, dst) in parts.items():
        kind, root, _ = _follow(src, kit, sums)
        if kind != "dir":
            raise ValueError(f"{src} is not a folder: the kit is damaged; copy it again.")
        for entry in sorted(Path(e.path) for e in os.scandir(root)):
            kind, real, digest = _follow(entry, kit, sums)
            if kind == "dir":
                units.append(_Unit(part, dst / entry.name, _collect(real, kit, sums, unlisted, (root,)), folder=True))
            elif kind == "file":
                units.append(_Unit(part, dst, [_File(real, entry.name, digest, real.stat().st_size)], folder=False))
            else:
                unlisted.append(entry.relative_to(kit).as_posix())
    return units, unlisted


def _in_place(target: Path, file: _File) -> bool:
    return target.is_file() and target.stat().st_size == file.size and sha256(target) == file.digest


def _copy_verified(source: Path, target: Path, digest: str) -> None:
    """Copy ``source`` to ``target`` (through a temporary file), checking the copied bytes against ``digest``."""
    with atomic_path(target) as tmp:
        actual = hashlib.sha256()
        with open(source, "rb") as src, open(tmp, "wb") as out:
            while block := src.read(1 << 20):
                actual.update(block)
                out.write(block)
        if actual.hexdigest() != digest:
            raise ValueError(f"{source} does not match its {MANIFEST} entry: the kit is damaged; copy it again.")
        os.chmod(tmp, 0o644)  # readable by all, like a `cp` under the usual umask (temporary files start private)


def _install_unit(unit: _Unit) -> int:
    """Install one unit; returns how many files were copied (0 when all were in place).

    A folder is copied whole into a staging folder beside its destination and renamed
    into place, so an interrupted install never leaves a folder that looks complete.
    """
    if all(_in_place(unit.dest / f.rel, f) for f in unit.files):
        return 0
    if not unit.folder:  # a single file, replaced in one step
        for f in unit.files:
            _copy_verified(f.source, unit.dest / f.rel, f.digest)
        return len(unit.files)
    with staging_beside(unit.dest) as work:
        for f in unit.files:
            _copy_verified(f.source, work / "folder" / f.rel, f.digest)
        replace_folder(work / "folder", unit.dest)
    return len(unit.files)


@contextlib.contextmanager
def _install_lock(destinations: Iterable[Path]) -> Iterator[None]:
    """Hold an exclusive lock on ``home()/.kit-install.lock`` so that installs take turns.

    Once it is held, staging folders that an interrupted install left in
    ``destinations`` are removed. Without ``fcntl`` (Windows) nothing is locked or
    removed; the staging folders' unique names still keep installs apart.
    """
    lock = home() / ".kit-install.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a") as fh:
        if fcntl is not None:
            fcntl.flock(fh, fcntl.LOCK_EX)  # released when the file is closed
            for folder in destinations:
                for stale in folder.glob(f".*{STAGING_SUFFIX}") if folder.is_dir() else ():
                    shutil.rmtree(stale, ignore_errors=True)
        yield


def install(kit_dir: str | os.PathLike) -> InstallReport:
    """Install an offline kit so that weights, TF Hub handles and datasets load offline.

    Only files listed in the kit's ``SHA256SUMS`` are copied, each checked against its
    entry; a symbolic link or link stub is followed to the listed file it names. Each
    dataset and TF Hub model folder is staged beside its destination and renamed into
    place, and concurrent installs into the same home take turns.

    Args:
        kit_dir: a kit folder (``keras/``, ``tfhub_modules/``, ``datasets/``, ``SHA256SUMS``).

    Returns:
        An :class:`InstallReport`: how many files were copied into each destination
        (files already in place are skipped, so installing twice is cheap) and which
        kit files were left out because the manifest does not list them.

    Raises:
        FileNotFoundError: if ``kit_dir`` holds none of the three parts, has no
            ``SHA256SUMS``, or lacks files the manifest lists.
        ValueError: if a file does not match its ``SHA256SUMS`` entry, the manifest is
            malformed, or a link leads outside the kit, loops, or is a special file.
    """
    kit = Path(os.path.realpath(Path(kit_dir).expanduser()))
    parts = {
        "keras": (kit / "keras" / "models", keras_models_dir()),
        "tfhub_modules": (kit / "tfhub_modules", hub_cache_dir()),
        "datasets": (kit / "datasets", datasets_dir()),
    }
    present = {name: p for name, p in parts.items() if p[0].is_dir()}
    if not present:
        raise FileNotFoundError(
            f"{kit} is not an offline kit: expected keras/models, tfhub_modules or datasets inside it. "
            "Build one with `python -m tlhelpers.kit download DIR` on a machine with internet access."
        )
    sums = _read_manifest(kit)
    missing = sorted(name for name in sums if not (kit / name).is_file())
    if missing:
        raise FileNotFoundError(
            f"The kit {kit} is incomplete: {len(missing)} file(s) listed in {MANIFEST} are missing: {some_names(missing)}. "
            "Copy the kit again (with links followed: cp -rL)."
        )
    units, unlisted = _plan(kit, sums, present)
    copied = dict.fromkeys(present, 0)
    with _install_lock(dst for _, dst in present.values()):
        for unit in units:
            copied[unit.part] += _install_unit(unit)
        _record_install(kit, units)
    return InstallReport(copied, unlisted)


def installed_record_path() -> Path:
    """Where :func:`install` records the files it installed: ``home()/kit-installed.json``."""
    return home() / "kit-installed.json"


def installed_files() -> dict[str, str]:
    """``{installed file: SHA-256}`` of every file a kit install put in place (empty when none did)."""
    try:
        record = json.loads(installed_record_path().read_text())
    except (OSError, ValueError):
        return {}
    files = record.get("files") if isinstance(record, dict) else None
    return files if isinstance(files, dict) else {}


def _record_install(kit: Path, units: list[_Unit]) -> None:
    files = installed_files()
    files.update({str(unit.dest / f.rel): f.digest for unit in units for f in unit.files})
    with atomic_path(installed_record_path()) as tmp:
        tmp.write_text(json.dumps({"kit": str(kit), "files": files}, indent=0, sort_keys=True))
        os.chmod(tmp, 0o644)
