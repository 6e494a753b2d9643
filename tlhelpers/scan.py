"""Checking a folder of images before anything is trained: the folder scan.

A training folder holds one sub-folder per class. :func:`scan_image_tree` checks every
file before it reaches a pipeline, so that a corrupt JPEG, a text file called
``photo.jpg`` or a CMYK scan becomes one line in a report instead of an opaque error
in the middle of ``fit``. Each file is opened with Pillow (format, mode, size); images
TensorFlow cannot decode to the right RGB pixels itself are converted once to RGB PNG
copies; then TensorFlow decodes every file the pipelines will read
(:func:`tlhelpers.decode.undecodable`, the pipelines' own decoder): what the scan
accepts, the pipelines decode. Feature extraction, whose first pass decodes every file
anyway, leaves that decode to the pass (:func:`scan_deferring_decode`): the files that
fail in it are recorded as corrupt, and the folder is scanned again without them.
Verdicts are cached per file (size and modification time), so a second scan of an
unchanged folder decodes nothing and does not import TensorFlow.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat as stat_mode
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from PIL import Image

from . import core
from .convert import DIRECT, convert_to_rgb, converted_path

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")
#: Cache of scan results, bumped when the checks change.
_SCAN_VERSION = 3

# Reasons a file is skipped, as they appear in reports.
HIDDEN = "hidden file or folder"
NOT_IMAGE = "not an image (unreadable by any image decoder)"
CORRUPT = "corrupt or truncated image"
UNREADABLE = "unreadable (no permission, a broken link, or not a regular file)"
BAD_NAME = "name not valid UTF-8, which TensorFlow cannot open (rename it)"
TOO_SMALL = "too small"
OTHER_EXTENSION = "not an image file extension"
NOT_IN_CLASS = "not inside a class folder"


@dataclass
class ImageTreeReport:
    """What :func:`scan_image_tree` found in a folder-per-class image tree.

    Its ``repr`` is a few lines (counts, then each kind of problem with a few file
    names); :meth:`summary` lists every kind of problem, and the attributes hold
    every file.

    Attributes:
        root: the scanned folder.
        class_names: the classes with at least one usable image, sorted.
        files: the usable image files (converted copies where a conversion was needed).
        labels: the class index of each file in ``files``.
        sources: the original file behind each entry of ``files``.
        skipped: reason -> files that cannot be used.
        converted: reason -> files converted to 3-channel RGB copies.
        empty_classes: class folders holding no usable image.
        nested: files found in sub-folders of a class folder (used, in that class).
    """

    root: Path
    class_names: list[str]
    files: list[Path] = field(repr=False)
    labels: list[int] = field(repr=False)
    sources: list[Path] = field(repr=False)
    skipped: dict[str, list[Path]] = field(default_factory=dict, repr=False)
    converted: dict[str, list[Path]] = field(default_factory=dict, repr=False)
    empty_classes: list[str] = field(default_factory=list)
    nested: list[Path] = field(default_factory=list, repr=False)

    @property
    def class_counts(self) -> dict[str, int]:
        """Usable images per class."""
        counts = Counter(self.labels)
        return {name: counts[i] for i, name in enumerate(self.class_names)}

    @property
    def num_skipped(self) -> int:
        """How many files were left out."""
        return sum(len(v) for v in self.skipped.values())

    def _headline(self) -> str:
        """One line: the root, the usable images and the count per class."""
        return f"{self.root}: {len(self.files)} usable images in {len(self.class_names)} classes " + ", ".join(
            f"{k}={v}" for k, v in self.class_counts.items()
        )

    def _names(self, paths: list[Path], max_names: int) -> str:
        """The first ``max_names`` paths (relative to the root where possible), then how many more."""
        shown = ", ".join(str(p.relative_to(self.root)) if p.is_relative_to(self.root) else str(p) for p in paths[:max_names])
        return shown + (f", ... ({len(paths) - max_names} more)" if len(paths) > max_names else "")

    def _problem_lines(self, max_names: int) -> list[str]:
        """One line per kind of problem (skip reason, conversion, empty classes, nesting), with file names."""
        lines = [f"skipped {len(paths)} ({why}): {self._names(paths, max_names)}" for why, paths in sorted(self.skipped.items())]
        for why, paths in sorted(self.converted.items()):
            lines.append(f"converted {len(paths)} to RGB ({why}): {self._names(paths, max_names)}")
        if self.empty_classes:
            lines.append(f"ignored empty class folders: {', '.join(self.empty_classes)}")
        if self.nested:
            names = self._names(self.nested, max_names)
            lines.append(f"{len(self.nested)} images found in sub-folders were counted in their class: {names}")
        return lines

    def summary(self, max_names: int = 5) -> str:
        """A human-readable report: counts per class, then each problem with up to ``max_names`` file names."""
        return "\n".join([self._headline()] + [f"  {line}" for line in self._problem_lines(max_names)])

    def __repr__(self) -> str:
        """A short summary (at most 12 lines of at most 160 characters), not every file path."""
        problems = self._problem_lines(max_names=3)
        if len(problems) > 10:
            problems = problems[:9] + [f"... {len(problems) - 9} more kinds of problem: print(report.summary()) lists them all"]
        lines = [f"ImageTreeReport({self._headline()}", *(f"  {line}" for line in problems)]
        return "\n".join(_shorten(line, 160) for line in lines) + ")"


def _shorten(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters, ending in "..." when cut."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


class _Candidate(NamedTuple):
    """A file that may be an image: its class's index, its path, and whether it lies in a sub-folder."""

    class_index: int
    path: Path
    nested: bool


class _Verdict(NamedTuple):
    """The scan's decision on one file: kind ("ok", "convert" or "skip"), detail, and the file the pipeline reads."""

    kind: str
    detail: str
    usable: Path | None = None


def _is_hidden(name: str) -> bool:
    """True for names of hidden files and system clutter (``.DS_Store``, ``__MACOSX``, ``Thumbs.db``)."""
    return name.startswith((".", "__")) or name == "Thumbs.db"


def _walk_tree(root: Path) -> tuple[list[Path], list[_Candidate], dict[str, list[Path]]]:
    """List ``root``'s class folders, the candidate image files in them, and what is skipped by its name alone.

    Returns:
        ``(class folders, candidates, {reason: paths})``.
    """
    skipped: dict[str, list[Path]] = defaultdict(list)
    class_dirs = []
    for entry in sorted(root.iterdir()):
        if _is_hidden(entry.name):
            skipped[HIDDEN].append(entry)
        elif entry.is_dir():
            class_dirs.append(entry)
        else:
            skipped[NOT_IN_CLASS].append(entry)
    candidates = [c for index, class_dir in enumerate(class_dirs) for c in _walk_class(index, class_dir, skipped)]
    return class_dirs, candidates, skipped


def _walk_class(index: int, class_dir: Path, skipped: dict[str, list[Path]]) -> list[_Candidate]:
    """The candidate image files under one class folder, recursively; hidden and non-image names go to ``skipped``."""
    candidates = []
    for dirpath, dirnames, filenames in os.walk(class_dir, followlinks=True):
        for d in sorted(dirnames):
            if _is_hidden(d):
                skipped[HIDDEN].append(Path(dirpath) / d)
        dirnames[:] = sorted(d for d in dirnames if not _is_hidden(d))
        nested = Path(dirpath) != class_dir
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if _is_hidden(name):
                skipped[HIDDEN].append(path)
            elif not name.lower().endswith(IMAGE_EXTENSIONS):
                skipped[OTHER_EXTENSION].append(path)
            elif not _utf8(str(path)):
                skipped[BAD_NAME].append(path)
            else:
                candidates.append(_Candidate(index, path, nested))
    return candidates


def _utf8(text: str) -> bool:
    """True when ``text`` encodes to UTF-8 (file names that are not valid UTF-8 arrive with lone surrogates)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _scan_cache_file(root: Path) -> Path:
    """Where the scan results of the folder ``root`` are cached."""
    key = hashlib.sha1(str(root.resolve()).encode()).hexdigest()[:16]
    return core.home() / "cache" / "scans" / f"{key}.json"


def _load_scan_cache(cache_file: Path, min_size: int) -> dict[str, list]:
    """The cached ``{path: [size, mtime_ns, kind, detail]}`` of an earlier scan with the same checks, else ``{}``."""
    try:
        cache = json.loads(cache_file.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(cache, dict) or cache.get("version") != _SCAN_VERSION or cache.get("min_size") != min_size:
        return {}
    files = cache.get("files")
    return files if isinstance(files, dict) else {}


def _save_scan_cache(cache_file: Path, min_size: int, entries: dict[str, list]) -> None:
    """Write the scan results for the next scan, atomically; a read-only home only costs a re-scan next time."""
    try:
        with core.atomic_path(cache_file) as tmp:
            tmp.write_text(json.dumps({"version": _SCAN_VERSION, "min_size": min_size, "files": entries}))
    except OSError:
        pass


def _check_with_pillow(path: Path, min_size: int) -> tuple[str, str]:
    """Classify one file from its header, read by Pillow: returns ``("ok"|"convert"|"skip", detail)``.

    Nothing is decoded here: TensorFlow decodes the files it will read in bulk
    afterwards (:func:`tlhelpers.decode.undecodable`), and a conversion decodes the file with Pillow.
    """
    try:
        fh = open(path, "rb")  # noqa: SIM115 (closed by the with below; opened apart to tell unreadable from corrupt)
    except OSError:
        return "skip", UNREADABLE
    try:
        with fh, Image.open(fh) as img:
            fmt, mode, size = img.format, img.mode, img.size
            frames = getattr(img, "n_frames", 1)
    except Image.DecompressionBombError:
        return "skip", "image too large (decompression bomb guard)"
    except (Image.UnidentifiedImageError, ValueError):
        return "skip", NOT_IMAGE
    except Exception:  # noqa: BLE001 (truncated data, broken headers: Pillow raises many types)
        return "skip", CORRUPT
    if min(size) < min_size:
        return "skip", f"{TOO_SMALL} (under {min_size} px)"
    if frames > 1 or (fmt, mode) not in DIRECT:
        return "convert", f"{fmt} {mode}"
    return "ok", fmt


def _cached_verdict(path: Path, stat: os.stat_result, entries: dict[str, list]) -> _Verdict | None:
    """The verdict cached for ``path`` if its size and mtime are unchanged (and its RGB copy still exists), else None."""
    hit = entries.get(str(path))
    if not (isinstance(hit, list) and len(hit) == 4 and hit[:2] == [stat.st_size, stat.st_mtime_ns]):
        return None
    kind, detail = hit[2], hit[3]
    if kind == "skip":
        return _Verdict(kind, detail)
    usable = converted_path(path, stat) if kind == "convert" else path
    return _Verdict(kind, detail, usable) if usable.exists() else None


def _classify(path: Path, stat: os.stat_result, min_size: int) -> _Verdict:
    """Check one file with Pillow and write its RGB copy if it needs one (TensorFlow's check comes after, in bulk)."""
    kind, detail = _check_with_pillow(path, min_size)
    if kind == "skip":
        return _Verdict(kind, detail)
    if kind == "ok":
        return _Verdict(kind, detail, path)
    dest = converted_path(path, stat)
    if not dest.exists() and not convert_to_rgb(path, dest):
        return _Verdict("skip", CORRUPT)
    return _Verdict(kind, detail, dest)


def _examine(
    paths: list[Path], min_size: int, entries: dict[str, list], workers: int, decode: bool = True
) -> tuple[list[_Verdict], dict[str, list]]:
    """The verdict on each file: cached when unchanged, else checked by Pillow then TensorFlow; updates ``entries``.

    With ``decode=False`` the new files Pillow accepts are not decoded: their entries are
    returned apart, ``{file the pipeline reads: [source path, entry]}``, for
    :class:`DeferredDecodeCheck` to store once a pass has decoded them.
    """

    def first_look(path: Path) -> tuple[_Verdict, os.stat_result | None]:
        try:
            stat = path.stat()
        except OSError:
            return _Verdict("skip", UNREADABLE), None
        if not stat_mode.S_ISREG(stat.st_mode):  # a pipe or device named *.jpg would block or never end
            return _Verdict("skip", UNREADABLE), None
        cached = _cached_verdict(path, stat, entries)
        return (cached, None) if cached else (_classify(path, stat, min_size), stat)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        looks = list(pool.map(first_look, paths))
    verdicts = [verdict for verdict, _ in looks]
    fresh = [i for i, (_, stat) in enumerate(looks) if stat is not None]
    if decode:
        to_decode = [i for i in fresh if verdicts[i].usable is not None]
        for j in _undecodable([verdicts[i].usable for i in to_decode], workers):
            verdicts[to_decode[j]] = _Verdict("skip", CORRUPT)
    deferred = {}
    for i in fresh:
        stat = looks[i][1]
        entry = [stat.st_size, stat.st_mtime_ns, verdicts[i].kind, verdicts[i].detail]
        if decode or verdicts[i].usable is None:
            entries[str(paths[i])] = entry
        else:
            deferred[str(verdicts[i].usable)] = [str(paths[i]), entry]
    return verdicts, deferred


def _assemble_report(
    root: Path, class_dirs: list[Path], candidates: list[_Candidate], verdicts: list[_Verdict], skipped: dict[str, list[Path]]
) -> ImageTreeReport:
    """Gather the verdicts into a report, renumbering labels over the classes that have usable images."""
    skipped = defaultdict(list, skipped)
    files, labels, sources, nested = [], [], [], []
    converted: dict[str, list[Path]] = defaultdict(list)
    for candidate, verdict in zip(candidates, verdicts):
        if verdict.kind == "skip":
            skipped[verdict.detail].append(candidate.path)
            continue
        if verdict.kind == "convert":
            converted[verdict.detail].append(candidate.path)
        files.append(verdict.usable)
        labels.append(candidate.class_index)
        sources.append(candidate.path)
        if candidate.nested:
            nested.append(candidate.path)
    used = sorted(set(labels))
    names = [d.name for d in class_dirs]
    remap = {old: new for new, old in enumerate(used)}
    return ImageTreeReport(
        root=root,
        class_names=[names[i] for i in used],
        files=files,
        labels=[remap[label] for label in labels],
        sources=sources,
        skipped=dict(skipped),
        converted=dict(converted),
        empty_classes=[name for i, name in enumerate(names) if i not in remap],
        nested=nested,
    )


def scan_image_tree(directory: str | os.PathLike, min_size: int = 16, workers: int | None = None) -> ImageTreeReport:
    """Check a folder-per-class image tree and list what can be used.

    Every file's header is read with Pillow (format, mode, size). Images that
    TensorFlow cannot decode to the right RGB pixels itself (PNG with alpha, palette
    images, CMYK or 16-bit files, WebP, TIFF, animations) are converted once to RGB
    PNG copies in ``~/.tlhelpers/cache/converted``. Then TensorFlow decodes every
    file the pipeline will read with the pipeline's own function (a JPEG at 1/8 scale,
    which fails exactly when a decode at any scale would): what fails is
    skipped as corrupt, so that iterating the dataset never fails on a file.
    Results are cached per file (size and modification time), so a second scan of
    an unchanged tree is quick and does not import TensorFlow.

    Args:
        directory: a folder holding one sub-folder per class.
        min_size: images whose shorter side has fewer pixels are skipped.
        workers: threads used to check files (default: number of CPUs).

    Returns:
        An :class:`ImageTreeReport`: every candidate file is either in ``sources``
        or named in ``skipped`` with the reason.

    Raises:
        FileNotFoundError: if ``directory`` does not exist or is not a folder.
        ValueError: if fewer than two classes hold usable images, or the folder
            looks like the parent of ``train``/``validation`` folders.
    """
    return _scan(directory, min_size, workers, decode=True)[0]


def _scan(
    directory: str | os.PathLike, min_size: int, workers: int | None, decode: bool
) -> tuple[ImageTreeReport, DeferredDecodeCheck]:
    """:func:`scan_image_tree`, and the decode check it left undone when ``decode=False``."""
    root = Path(directory).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(
            f"Image folder {root} does not exist"
            + (" (it is a file)" if root.exists() else "")
            + ": pass a folder that holds one sub-folder of images per class."
        )
    class_dirs, candidates, skipped = _walk_tree(root)
    cache_file = _scan_cache_file(root)
    cached = _load_scan_cache(cache_file, min_size)
    paths = [c.path for c in candidates]
    entries = {str(p): cached[str(p)] for p in paths if str(p) in cached}  # forget files that are gone
    verdicts, deferred = _examine(paths, min_size, entries, workers or os.cpu_count() or 2, decode)
    _save_scan_cache(cache_file, min_size, entries)
    report = _assemble_report(root, class_dirs, candidates, verdicts, skipped)
    _require_classes(report, class_dirs)
    return report, DeferredDecodeCheck(cache_file, min_size, deferred)


def scan_deferring_decode(directory: str | os.PathLike, min_size: int = 16) -> tuple[ImageTreeReport, DeferredDecodeCheck]:
    """:func:`scan_image_tree` without TensorFlow's decode check of files it has not seen before.

    For a caller whose first pass decodes every file anyway (feature extraction):
    decoding them twice would cost a tenth of that pass. The caller builds its
    pipeline with ``load_image_files(files, positions, skip_undecodable=True)``, then
    hands the positions that came out to :meth:`DeferredDecodeCheck.record`, which
    stores the verdicts in the scan cache, as :func:`scan_image_tree` would have,
    and returns the files that failed. When some did, the caller scans again: they
    are skipped as corrupt from then on.

    Returns:
        ``(report, check)``; ``report.files`` may hold files TensorFlow cannot decode
        until ``check.record`` has seen the pass.
    """
    return _scan(directory, min_size, None, decode=False)


@dataclass
class DeferredDecodeCheck:
    """The decode check :func:`scan_deferring_decode` left to the caller's first pass.

    Attributes:
        cache_file: the scan cache of the folder.
        min_size: the scan's ``min_size`` (part of the cache's validity).
        pending: ``{file the pipeline reads: [source path, scan cache entry]}`` of the
            files not decoded yet.
    """

    cache_file: Path
    min_size: int
    pending: dict[str, list] = field(repr=False)

    def record(self, files: list, decoded) -> list[Path]:
        """Store the verdicts of a pass over ``files`` in which the positions ``decoded`` decoded.

        Args:
            files: the files the pass read, in order.
            decoded: the positions (in ``files``) of the images that came out.

        Returns:
            The files that failed to decode; each was pending and is now cached as corrupt.

        Raises:
            RuntimeError: if a file that an earlier scan decoded failed (it changed on
                disk without a new size or modification time).
        """
        ok = {int(i) for i in decoded}
        failed = [Path(f) for i, f in enumerate(files) if i not in ok]
        changed = [f for f in failed if str(f) not in self.pending]
        if changed:
            raise RuntimeError(
                f"{changed[0]} no longer decodes although an earlier scan decoded it: "
                "it changed on disk. Touch or replace the file, or delete the folder's scan cache "
                f"({self.cache_file}), and run again."
            )
        seen = [(i, str(f)) for i, f in enumerate(files) if str(f) in self.pending]
        if not seen:
            return failed
        entries = _load_scan_cache(self.cache_file, self.min_size)
        for i, f in seen:
            source, entry = self.pending.pop(f)
            entries[source] = entry if i in ok else [*entry[:2], "skip", CORRUPT]
        _save_scan_cache(self.cache_file, self.min_size, entries)
        return failed


_SPLIT_NAMES = {"train", "training", "val", "valid", "validation", "test", "testing"}


def _require_classes(report: ImageTreeReport, class_dirs: list[Path]) -> None:
    """Raise ``ValueError`` when ``report`` has fewer than two usable classes or the folder holds splits, not classes."""
    names = [d.name for d in class_dirs]
    if names and {n.lower() for n in names} <= _SPLIT_NAMES and report.files and len(report.nested) == len(report.files):
        raise ValueError(f"{report.root} holds the splits {names}, not classes: pass one of them, e.g. {report.root / names[0]}.")
    if len(report.class_names) >= 2:
        return
    found = ", ".join(f"{k} ({v} images)" for k, v in report.class_counts.items()) or "none"
    detail = report.summary() if report.num_skipped or report.empty_classes else ""
    raise ValueError(
        f"{report.root} needs at least two class folders with usable images; found {found}. "
        "Put each class's images in its own sub-folder, e.g. DIR/cats/*.jpg and DIR/dogs/*.jpg."
        + (f"\n{detail}" if detail else "")
    )


def check_class_names(train: list[str], other: list[str], what: str = "validation") -> None:
    """Raise ``ValueError`` naming the differences when two splits' classes differ."""
    if list(train) == list(other):
        return
    missing = sorted(set(train) - set(other))
    extra = sorted(set(other) - set(train))
    raise ValueError(
        f"The {what} classes {list(other)} do not match the training classes {list(train)}"
        + (f"; missing from {what}: {missing}" if missing else "")
        + (f"; only in {what}: {extra}" if extra else "")
        + ". Give both folders the same class sub-folders."
    )


def _undecodable(files: list[Path], workers: int) -> list[int]:
    """:func:`tlhelpers.decode.undecodable`, imported only when some file needs TensorFlow's check."""
    if not files:
        return []
    from .decode import undecodable

    return undecodable(files, workers)
