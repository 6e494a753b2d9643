"""Image folders in, ``tf.data`` pipelines out, with bad files reported by name.

A training folder holds one sub-folder per class. :func:`scan_image_tree` checks every
file before it reaches a pipeline, so that a corrupt JPEG, a text file called
``photo.jpg`` or a CMYK scan becomes one line in a report instead of an opaque error
in the middle of ``fit``. Each file is opened with Pillow (format, mode, size) and
then decoded by TensorFlow with the pipeline's own function (:func:`_decode`; a JPEG
at 1/8 scale, which fails exactly when any scale does): what the scan accepts, the
pipeline decodes. Feature extraction, whose first pass decodes every file anyway,
leaves that decode to the pass (:func:`scan_deferring_decode`): the files that fail
in it are recorded as corrupt, and the folder is scanned again without them.
:func:`load_image_dataset` builds the input pipeline from the files that passed:
parallel decoding (JPEGs decoded at reduced scale when the image is much larger
than the target size), resizing, in-memory caching when the decoded images fit,
shuffling, batching and prefetching.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import stat as stat_mode
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from PIL import Image

from . import core

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")
#: Formats and modes TensorFlow decodes to the right RGB pixels without help.
_DIRECT = {("JPEG", "RGB"), ("JPEG", "L"), ("PNG", "RGB"), ("PNG", "L"), ("BMP", "RGB"), ("BMP", "L")}
#: Cache of scan results, bumped when the checks change.
_SCAN_VERSION = 3
#: The scales (1/ratio) at which the pipeline may decode a JPEG.
_JPEG_RATIOS = (1, 2, 4, 8)
#: The scale at which the scan checks a JPEG: the cheapest, and as strict as any (see :func:`_decode_check`).
_CHECK_RATIO = 8
_JPEG_SIGNATURE = b"\xff\xd8\xff"

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
    afterwards (:func:`_undecodable`), and a conversion decodes the file with Pillow.
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
    if frames > 1 or (fmt, mode) not in _DIRECT:
        return "convert", f"{fmt} {mode}"
    return "ok", fmt


def _converted_path(path: Path, stat: os.stat_result) -> Path:
    """Where the RGB PNG copy of ``path`` (in the state ``stat`` describes) is kept."""
    key = hashlib.sha1(f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:20]
    return core.home() / "cache" / "converted" / f"{key}.png"


def _rgb_image(path: Path) -> Image.Image:
    """The first frame of an image file as RGB: alpha composited on white, CMYK and grayscale converted."""
    with Image.open(path) as img:
        img.seek(0)
        if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
            rgba = img.convert("RGBA")
            rgb = Image.new("RGB", rgba.size, (255, 255, 255))
            rgb.paste(rgba, mask=rgba.getchannel("A"))
            return rgb
        return img.convert("RGB")


def _convert_to_rgb(path: Path, dest: Path) -> bool:
    """Write an RGB PNG copy of ``path`` to ``dest`` (atomically); returns False when Pillow cannot decode it all.

    Raises:
        OSError: if ``dest`` cannot be written, naming the folder to fix.
    """
    try:
        rgb = _rgb_image(path)
    except Exception:  # noqa: BLE001 (truncated data, broken headers: Pillow raises many types)
        return False
    try:
        with core.atomic_path(dest, suffix=".png") as tmp:
            rgb.save(tmp, format="PNG")
    except OSError as exc:
        raise OSError(
            f"Cannot write the RGB copy of {path} into {dest.parent} ({exc}): "
            "make that folder writable, or set TLHELPERS_HOME to a writable folder."
        ) from exc
    return True


def _cached_verdict(path: Path, stat: os.stat_result, entries: dict[str, list]) -> _Verdict | None:
    """The verdict cached for ``path`` if its size and mtime are unchanged (and its RGB copy still exists), else None."""
    hit = entries.get(str(path))
    if not (isinstance(hit, list) and len(hit) == 4 and hit[:2] == [stat.st_size, stat.st_mtime_ns]):
        return None
    kind, detail = hit[2], hit[3]
    if kind == "skip":
        return _Verdict(kind, detail)
    usable = _converted_path(path, stat) if kind == "convert" else path
    return _Verdict(kind, detail, usable) if usable.exists() else None


def _classify(path: Path, stat: os.stat_result, min_size: int) -> _Verdict:
    """Check one file with Pillow and write its RGB copy if it needs one (TensorFlow's check comes after, in bulk)."""
    kind, detail = _check_with_pillow(path, min_size)
    if kind == "skip":
        return _Verdict(kind, detail)
    if kind == "ok":
        return _Verdict(kind, detail, path)
    dest = _converted_path(path, stat)
    if not dest.exists() and not _convert_to_rgb(path, dest):
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
    pipeline with ``images_dataset(files, positions, skip_undecodable=True)``, then
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


def _tensorflow():
    """TensorFlow, imported quietly the first time (see :mod:`tlhelpers._quiet`)."""
    from ._quiet import import_tensorflow_quietly

    import_tensorflow_quietly()
    import tensorflow as tf

    return tf


def _decode(data, is_jpeg: bool, ratio: int = 1):
    """Graph function: image bytes to a uint8 ``[height, width, 3]`` tensor, a JPEG at 1/``ratio`` scale.

    The one decoder behind both the pipeline (:func:`_decode_resize`) and the scan's
    check (:func:`_decode_check`), so that the two cannot drift apart.
    """
    tf = _tensorflow()
    if is_jpeg:
        return tf.io.decode_jpeg(data, channels=3, ratio=ratio, dct_method="INTEGER_FAST")
    return tf.io.decode_image(data, channels=3, expand_animations=False)


def _jpeg_ratio_index(shape, image_size: tuple[int, int]):
    """Graph function: the index in ``_JPEG_RATIOS`` of the largest scale-down keeping a JPEG of ``shape`` >= ``image_size``."""
    tf = _tensorflow()
    height, width = image_size
    scale = tf.minimum(shape[0] // height, shape[1] // width)
    return tf.add_n([tf.cast(scale >= r, tf.int32) for r in _JPEG_RATIOS[1:]])


def _decode_resize(path, is_jpeg, image_size: tuple[int, int]):
    """Graph function: read and decode one file to a uint8 ``[height, width, 3]`` image of ``image_size``."""
    tf = _tensorflow()
    data = tf.io.read_file(path)

    def decode_jpeg():
        # libjpeg can decode straight to 1/2, 1/4 or 1/8 size: far less work than a
        # full decode followed by a large downscale.
        index = _jpeg_ratio_index(tf.image.extract_jpeg_shape(data), image_size)
        return tf.switch_case(index, [lambda r=r: _decode(data, True, r) for r in _JPEG_RATIOS])

    image = tf.cond(is_jpeg, decode_jpeg, lambda: _decode(data, False))
    image.set_shape([None, None, 3])
    image = tf.image.resize(image, image_size)
    return tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)


def _decode_check(data, is_jpeg):
    """Graph function: decode image bytes as :func:`_decode_resize` may, raising where it would fail.

    A JPEG is decoded once, at 1/8 scale. libjpeg reads the whole entropy-coded stream at
    every scale (where files break: truncation, flipped bits, bad markers or tables) and
    the scales differ only in the inverse DCT, which cannot fail; so a JPEG decodes at 1/8
    exactly when it decodes at 1, 1/2 and 1/4 (the tests check this on every kind of
    damage in their fuzzed files). The 1/8 decode costs less than half a full one, and
    a quarter of decoding at all four scales.

    Returns the number of values decoded, so that no decode is optimised away.
    """
    tf = _tensorflow()

    def jpeg():
        total = tf.reduce_prod(tf.cast(tf.image.extract_jpeg_shape(data), tf.int64))
        return total + tf.size(_decode(data, True, _CHECK_RATIO), out_type=tf.int64)

    return tf.cond(is_jpeg, jpeg, lambda: tf.size(_decode(data, False), out_type=tf.int64))


def _undecodable(files: list[Path], workers: int) -> list[int]:
    """Positions in ``files`` of the files TensorFlow fails to decode in any way the pipeline may, sorted."""
    if not files:
        return []
    tf = _tensorflow()
    paths = [str(f) for f in files]

    def attempt(index, path, is_jpeg):
        return index, _decode_check(tf.io.read_file(path), is_jpeg)

    ds = tf.data.Dataset.from_tensor_slices((list(range(len(paths))), paths, [_looks_like_jpeg(p) for p in paths]))
    # A failing element is dropped (ignore_errors): the positions missing at the end are the failures.
    ds = ds.map(attempt, num_parallel_calls=max(1, workers), deterministic=False).ignore_errors().batch(256)
    ds = _without_autotune(ds)
    with _decoder_messages_hidden():
        decoded = {int(i) for indices, _ in ds for i in indices.numpy()}
    return sorted(set(range(len(paths))) - decoded)


def _parallel_calls() -> int:
    """How many elements a pipeline's ``map`` works on at once: one per CPU core."""
    return max(2, os.cpu_count() or 2)


def _without_autotune(ds):
    """``ds`` with tf.data's autotuner switched off (the pipeline sets its own parallelism).

    With the autotuner on, destroying an iterator waits for the autotuner's background
    work, and on a busy CPU that wait can take seconds: passes over 1,000 images with a
    base running measured a stall of about 5 s when the iterator was deleted in 4 of 10
    passes, none in 10 passes with the autotuner off, at the same speed. Every
    extraction pass ends with such a deletion, and ``fit`` makes a new iterator every
    epoch. So the pipelines built here switch the autotuner off and set their own
    parallelism: :func:`images_dataset` and ``ActivationSet``'s datasets map with one
    call per CPU core (``_parallel_calls``) and prefetch two batches; the scan's decode
    check maps with its worker count.

    Args:
        ds: a ``tf.data.Dataset``.

    Returns:
        The same dataset with ``options().autotune.enabled`` set to ``False``.
    """
    tf = _tensorflow()
    options = tf.data.Options()
    options.autotune.enabled = False
    return ds.with_options(options)


def _decoder_messages_hidden():
    """A context hiding libjpeg's "Corrupt JPEG data" lines, printed straight to stderr (``TLHELPERS_TF_LOGS=1`` keeps them)."""
    import contextlib

    from ._quiet import _stderr_silenced

    return contextlib.nullcontext() if os.environ.get("TLHELPERS_TF_LOGS") else _stderr_silenced()


def _memory_budget() -> int:
    """Bytes of decoded images worth caching in memory: a quarter of the free memory, at most 4 GiB."""
    try:
        available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        available = 4 << 30
    return min(available // 4, 4 << 30)


def images_dataset(
    files: list[Path],
    labels: list[int] | None,
    image_size: tuple[int, int] = (224, 224),
    batch_size: int | None = 32,
    shuffle: bool = False,
    seed: int | None = None,
    cache: bool | str = "auto",
    skip_undecodable: bool = False,
):
    """A ``tf.data.Dataset`` of ``(images, labels)`` (or images alone) from file paths.

    Images come out as float32 in ``[0, 255]``, shape ``(batch, height, width, 3)``,
    like ``keras.utils.image_dataset_from_directory``. Files are decoded one per CPU
    core at a time, in order, with two batches prefetched and tf.data's autotuner off
    (it stalled for seconds whenever an iterator was deleted; see ``_without_autotune``).

    Args:
        files: image files TensorFlow can decode (JPEG, PNG, BMP, GIF).
        labels: integer labels, one per file, or ``None`` for images alone.
        image_size: ``(height, width)`` to resize to.
        batch_size: images per batch, or ``None`` for unbatched images.
        shuffle: reshuffle every epoch (the file order is shuffled once with ``seed``
            before caching, and a shuffle buffer reorders the cached images each epoch).
        seed: the shuffling seed.
        cache: ``True`` caches decoded images in memory, ``False`` never, ``"auto"``
            when they take under a quarter of the free memory; a path string caches
            to files there.
        skip_undecodable: drop the files TensorFlow fails to decode instead of
            raising (pass their positions as ``labels`` to learn which came out; see
            :func:`scan_deferring_decode`).
    """
    tf = _tensorflow()
    files = [str(f) for f in files]
    order = list(range(len(files)))
    if shuffle:
        random.Random(seed).shuffle(order)
    files = [files[i] for i in order]
    is_jpeg = [_looks_like_jpeg(f) for f in files]  # by content: extensions can lie
    image_size = tuple(int(s) for s in image_size)
    if cache == "auto":
        cache = len(files) * image_size[0] * image_size[1] * 3 < _memory_budget()

    slices = (files, is_jpeg) if labels is None else (files, is_jpeg, [int(labels[i]) for i in order])
    ds = tf.data.Dataset.from_tensor_slices(slices)

    def load(path, jpeg, *label):
        image = _decode_resize(path, jpeg, image_size)
        return (image, *label) if label else image

    ds = ds.map(load, num_parallel_calls=_parallel_calls(), deterministic=True)
    if skip_undecodable:
        ds = ds.ignore_errors()
    if cache:
        ds = ds.cache(cache if isinstance(cache, str) else "")
    if shuffle:
        ds = ds.shuffle(min(len(files), 1024), seed=seed, reshuffle_each_iteration=True)
    if batch_size:
        ds = ds.batch(batch_size)

    def to_float(image, *label):
        image = tf.cast(image, tf.float32)
        return (image, *label) if label else image

    ds = ds.map(to_float, num_parallel_calls=_parallel_calls(), deterministic=True)
    return _without_autotune(ds.prefetch(2))


def pad_batch(images, batch_size: int):
    """A batch padded with zeros to ``batch_size`` images, and how many of them are real.

    A compiled (``tf.function``) step traces a new graph for every new batch shape, and
    TensorFlow's CPU kernels set themselves up again for it; the last, shorter batch of
    a folder costs both. Padding it keeps one shape for every call: run the step on the
    padded batch and keep the first ``count`` rows of what it returns.

    Returns:
        ``(padded, count)``.
    """
    tf = _tensorflow()
    count = int(images.shape[0])
    if count >= batch_size:
        return images, count
    padding = tf.zeros([batch_size - count, *images.shape[1:]], images.dtype)
    return tf.concat([images, padding], axis=0), count


def _looks_like_jpeg(path: str) -> bool:
    """True when the file starts with the JPEG signature (its extension may lie)."""
    try:
        with open(path, "rb") as fh:
            return fh.read(3) == _JPEG_SIGNATURE
    except OSError:
        return False


def load_image_dataset(
    directory: str | os.PathLike,
    image_size: tuple[int, int] = (224, 224),
    batch_size: int = 32,
    shuffle: bool = True,
    seed: int | None = None,
    validation_split: float | None = None,
    subset: str | None = None,
    class_names: list[str] | None = None,
    cache: bool | str = "auto",
    verbose: bool = True,
):
    """Load a folder-per-class image tree as a batched ``tf.data.Dataset``.

    The tree is checked first (:func:`scan_image_tree`): unusable files are skipped
    and listed, images TensorFlow cannot decode correctly are converted to RGB.

    Args:
        directory: a folder with one sub-folder of images per class, or the name of a
            dataset split such as ``"cats_and_dogs_filtered/train"`` (see
            :func:`tlhelpers.datasets.dataset_path`).
        image_size: ``(height, width)`` the images are resized to.
        batch_size: images per batch.
        shuffle: shuffle every epoch (leave on for training, off for evaluation).
        seed: seed for shuffling and for the validation split.
        validation_split: fraction of the files to hold out, with ``subset``.
        subset: ``"training"``, ``"validation"`` or ``"both"`` (returns a pair).
        class_names: the expected classes (e.g. the training set's); a mismatch
            raises ``ValueError`` listing the differences.
        cache: see :func:`images_dataset`.
        verbose: print the report's summary when files were skipped or converted.

    Returns:
        A ``tf.data.Dataset`` of ``(float32 images in [0, 255], int32 labels)`` with
        attributes ``class_names``, ``file_paths`` and ``report``; a pair of them
        when ``subset="both"``.

    Raises:
        FileNotFoundError: if the folder does not exist.
        ValueError: for bad arguments, fewer than two usable classes, or classes
            that differ from ``class_names``.
    """
    directory = resolve_image_dir(directory)
    check_split_arguments(validation_split, subset, seed)
    report = scan_image_tree(directory)
    if verbose and (report.num_skipped or report.converted):
        print(report.summary())
    if class_names is not None:
        check_class_names(list(class_names), report.class_names)

    pairs = list(zip(report.files, report.labels))
    subsets = split_files(pairs, validation_split, seed)

    def build(chosen, training: bool):
        ds = images_dataset(
            [p for p, _ in chosen],
            [label for _, label in chosen],
            image_size=image_size,
            batch_size=batch_size,
            shuffle=shuffle and training,
            seed=seed,
            cache=cache,
        )
        ds.class_names = report.class_names
        ds.file_paths = [str(p) for p, _ in chosen] if not (shuffle and training) else None
        ds.report = report
        return ds

    if subset == "both":
        return build(subsets["training"], True), build(subsets["validation"], False)
    if subset is not None:
        return build(subsets[subset], subset == "training")
    return build(pairs, True)


def check_split_arguments(validation_split: float | None, subset: str | None, seed: int | None, allow_both: bool = True) -> None:
    """Raise ``ValueError`` for an inconsistent ``validation_split``/``subset``/``seed``."""
    if validation_split is not None and not 0 < validation_split < 1:
        raise ValueError(f"validation_split must be between 0 and 1, got {validation_split}.")
    if (validation_split is None) != (subset is None):
        raise ValueError("Pass validation_split and subset together (subset: 'training', 'validation' or 'both').")
    allowed = ("training", "validation", "both") if allow_both else ("training", "validation")
    if subset is not None and subset not in allowed:
        raise ValueError(f"subset must be one of {allowed}, got {subset!r}.")
    if validation_split is not None and seed is None:
        raise ValueError("Pass a seed with validation_split, so that the training and validation subsets do not overlap.")


def split_files(pairs: list, validation_split: float | None, seed: int | None) -> dict:
    """Split ``(file, label)`` pairs the same way every time for a given seed.

    Returns:
        ``{None: pairs}`` without a split, else ``{"training": [...], "validation": [...]}``.
    """
    if validation_split is None:
        return {None: list(pairs)}
    order = list(pairs)
    random.Random(seed).shuffle(order)
    n_val = round(validation_split * len(order))
    return {"training": order[n_val:], "validation": order[:n_val]}


def resolve_image_dir(directory: str | os.PathLike) -> Path:
    """A folder path as given, or ``name/split`` of a named dataset (downloaded if needed)."""
    from . import datasets

    path = Path(directory).expanduser()
    if path.exists():
        return path
    parts = Path(directory).parts
    names = [*datasets.DATASETS, *datasets.BUNDLED]
    if parts and parts[0] in names:
        return datasets.dataset_path(parts[0]).joinpath(*parts[1:])
    raise FileNotFoundError(
        f"Image folder {path} does not exist: pass a folder with one sub-folder of images per class, "
        f"or a named dataset split such as 'cats_and_dogs_filtered/train' ({', '.join(names)})."
    )
