"""Image folders in, ``tf.data`` pipelines out, with bad files reported by name.

A training folder holds one sub-folder per class. :func:`scan_image_tree` checks every
file before TensorFlow sees it, so that a corrupt JPEG, a text file called
``photo.jpg`` or a CMYK scan becomes one line in a report instead of an opaque error
in the middle of ``fit``. :func:`load_image_dataset` builds the input pipeline from
the files that passed: parallel decoding (JPEGs decoded at reduced scale when the
image is much larger than the target size), resizing, in-memory caching when the
decoded images fit, shuffling, batching and prefetching.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from . import core

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")
#: Formats and modes TensorFlow decodes to the right RGB pixels without help.
_DIRECT = {("JPEG", "RGB"), ("JPEG", "L"), ("PNG", "RGB"), ("PNG", "L"), ("BMP", "RGB"), ("BMP", "L")}
#: Cache of scan results, bumped when the checks change.
_SCAN_VERSION = 2

# Reasons a file is skipped, as they appear in reports.
HIDDEN = "hidden file or folder"
NOT_IMAGE = "not an image (unreadable by any image decoder)"
CORRUPT = "corrupt or truncated image"
TOO_SMALL = "too small"
OTHER_EXTENSION = "not an image file extension"
NOT_IN_CLASS = "not inside a class folder"


@dataclass
class ImageTreeReport:
    """What :func:`scan_image_tree` found in a folder-per-class image tree.

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
    files: list[Path]
    labels: list[int]
    sources: list[Path]
    skipped: dict[str, list[Path]] = field(default_factory=dict)
    converted: dict[str, list[Path]] = field(default_factory=dict)
    empty_classes: list[str] = field(default_factory=list)
    nested: list[Path] = field(default_factory=list)

    @property
    def class_counts(self) -> dict[str, int]:
        """Usable images per class."""
        counts = Counter(self.labels)
        return {name: counts[i] for i, name in enumerate(self.class_names)}

    @property
    def num_skipped(self) -> int:
        """How many files were left out."""
        return sum(len(v) for v in self.skipped.values())

    def summary(self, max_names: int = 5) -> str:
        """A short human-readable report: counts per class, then each problem with file names."""
        lines = [
            f"{self.root}: {len(self.files)} usable images in {len(self.class_names)} classes "
            + ", ".join(f"{k}={v}" for k, v in self.class_counts.items())
        ]

        def names(paths: list[Path]) -> str:
            shown = ", ".join(str(p.relative_to(self.root)) if p.is_relative_to(self.root) else str(p) for p in paths[:max_names])
            return shown + (f", ... ({len(paths) - max_names} more)" if len(paths) > max_names else "")

        for reason, paths in sorted(self.skipped.items()):
            lines.append(f"  skipped {len(paths)} ({reason}): {names(paths)}")
        for reason, paths in sorted(self.converted.items()):
            lines.append(f"  converted {len(paths)} to RGB ({reason}): {names(paths)}")
        if self.empty_classes:
            lines.append(f"  ignored empty class folders: {', '.join(self.empty_classes)}")
        if self.nested:
            lines.append(f"  {len(self.nested)} images found in sub-folders were counted in their class: {names(self.nested)}")
        return "\n".join(lines)


def _is_hidden(name: str) -> bool:
    return name.startswith(".") or name.startswith("__") or name == "Thumbs.db"


def _check_file(path: Path, min_size: int) -> tuple[str, str]:
    """Classify one file: ("ok"|"convert"|"skip", detail). Opens it with Pillow."""
    try:
        with Image.open(path) as img:
            fmt, mode, size = img.format, img.mode, img.size
            frames = getattr(img, "n_frames", 1)
            img.seek(0)
            if fmt == "JPEG":
                img.draft("RGB", (max(1, size[0] // 8), max(1, size[1] // 8)))
            img.load()
    except Image.DecompressionBombError:
        return "skip", "image too large (decompression bomb guard)"
    except (Image.UnidentifiedImageError, ValueError):
        return "skip", NOT_IMAGE
    except Exception:  # truncated data, broken headers: Pillow raises many types
        return "skip", CORRUPT
    if min(size) < min_size:
        return "skip", f"{TOO_SMALL} (under {min_size} px)"
    if frames > 1 or (fmt, mode) not in _DIRECT:
        return "convert", f"{fmt} {mode}"
    return "ok", fmt


def _scan_cache_file(root: Path) -> Path:
    key = hashlib.sha1(str(root.resolve()).encode()).hexdigest()[:16]
    return core.home() / "cache" / "scans" / f"{key}.json"


def _converted_path(path: Path, stat: os.stat_result) -> Path:
    key = hashlib.sha1(f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:20]
    return core.home() / "cache" / "converted" / f"{key}.png"


def _convert_to_rgb(path: Path, dest: Path) -> None:
    """Write an RGB PNG copy of ``path``: alpha is composited on white, CMYK and
    grayscale converted, only the first frame of an animation kept."""
    with Image.open(path) as img:
        img.seek(0)
        if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
            rgba = img.convert("RGBA")
            rgb = Image.new("RGB", rgba.size, (255, 255, 255))
            rgb.paste(rgba, mask=rgba.getchannel("A"))
        else:
            rgb = img.convert("RGB")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + f".{os.getpid()}.tmp")
    rgb.save(tmp, format="PNG")
    os.replace(tmp, dest)


def scan_image_tree(directory: str | os.PathLike, min_size: int = 16, workers: int | None = None) -> ImageTreeReport:
    """Check a folder-per-class image tree and list what can be used.

    Every file is opened with Pillow (JPEGs decoded at 1/8 scale, which still reads
    the whole file and so catches truncation). Usable images that TensorFlow cannot
    decode to the right RGB pixels itself (PNG with alpha, palette images, CMYK or
    16-bit files, WebP, TIFF, animations) are converted once to RGB PNG copies in
    ``~/.tlhelpers/cache/converted``. Results are cached per file (size and
    modification time), so a second scan of an unchanged tree is quick.

    Args:
        directory: a folder holding one sub-folder per class.
        min_size: images whose shorter side has fewer pixels are skipped.
        workers: threads used to check files (default: number of CPUs).

    Returns:
        An :class:`ImageTreeReport`.

    Raises:
        FileNotFoundError: if ``directory`` does not exist or is not a folder.
        ValueError: if fewer than two classes hold usable images, or the folder
            looks like the parent of ``train``/``validation`` folders.
    """
    root = Path(directory).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(
            f"Image folder {root} does not exist" + (" (it is a file)" if root.exists() else "")
            + ": pass a folder that holds one sub-folder of images per class."
        )
    skipped: dict[str, list[Path]] = defaultdict(list)
    class_dirs = []
    for entry in sorted(root.iterdir()):
        if _is_hidden(entry.name):
            skipped[HIDDEN].append(entry)
        elif entry.is_dir():
            class_dirs.append(entry)
        else:
            skipped[NOT_IN_CLASS].append(entry)

    candidates: list[tuple[int, Path, bool]] = []  # (class index, path, nested)
    for idx, class_dir in enumerate(class_dirs):
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
                else:
                    candidates.append((idx, path, nested))

    cache_file = _scan_cache_file(root)
    try:
        cache = json.loads(cache_file.read_text())
        if cache.get("version") != _SCAN_VERSION or cache.get("min_size") != min_size:
            cache = {}
    except (OSError, ValueError):
        cache = {}
    entries: dict[str, list] = cache.get("files", {})

    def check(item: tuple[int, Path, bool]) -> tuple[str, str]:
        _, path, _ = item
        st = path.stat()
        key = str(path)
        hit = entries.get(key)
        if hit and hit[0] == st.st_size and hit[1] == st.st_mtime_ns:
            return hit[2], hit[3]
        verdict, detail = _check_file(path, min_size)
        entries[key] = [st.st_size, st.st_mtime_ns, verdict, detail]
        return verdict, detail

    with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 2) as pool:
        verdicts = list(pool.map(check, candidates))

    files, labels, sources, nested_files = [], [], [], []
    converted: dict[str, list[Path]] = defaultdict(list)
    for (idx, path, nested), (verdict, detail) in zip(candidates, verdicts):
        if verdict == "skip":
            skipped[detail].append(path)
            continue
        usable = path
        if verdict == "convert":
            usable = _converted_path(path, path.stat())
            if not usable.exists():
                _convert_to_rgb(path, usable)
            converted[detail].append(path)
        files.append(usable)
        labels.append(idx)
        sources.append(path)
        if nested:
            nested_files.append(path)

    try:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache_file.with_name(cache_file.name + f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"version": _SCAN_VERSION, "min_size": min_size, "files": entries}))
        os.replace(tmp, cache_file)
    except OSError:
        pass  # a read-only home only costs a re-scan next time

    used = sorted(set(labels))
    all_names = [d.name for d in class_dirs]
    empty = [all_names[i] for i in range(len(class_dirs)) if i not in used]
    remap = {old: new for new, old in enumerate(used)}
    report = ImageTreeReport(
        root=root,
        class_names=[all_names[i] for i in used],
        files=files,
        labels=[remap[label] for label in labels],
        sources=sources,
        skipped=dict(skipped),
        converted=dict(converted),
        empty_classes=empty,
        nested=nested_files,
    )
    _require_classes(report, class_dirs)
    return report


_SPLIT_NAMES = {"train", "training", "val", "valid", "validation", "test", "testing"}


def _require_classes(report: ImageTreeReport, class_dirs: list[Path]) -> None:
    names = [d.name for d in class_dirs]
    if names and {n.lower() for n in names} <= _SPLIT_NAMES and report.files and len(report.nested) == len(report.files):
        raise ValueError(
            f"{report.root} holds the splits {names}, not classes: pass one of them, "
            f"e.g. {report.root / names[0]}."
        )
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


def _decode_resize(path, is_jpeg, image_size):
    """Graph function: read and decode one file to a uint8 [h, w, 3] image of image_size."""
    import tensorflow as tf

    height, width = image_size
    data = tf.io.read_file(path)

    def decode_jpeg():
        shape = tf.image.extract_jpeg_shape(data)
        scale = tf.minimum(shape[0] // height, shape[1] // width)
        # libjpeg can decode straight to 1/2, 1/4 or 1/8 size: far less work than a
        # full decode followed by a large downscale.
        branch = tf.cast(scale >= 2, tf.int32) + tf.cast(scale >= 4, tf.int32) + tf.cast(scale >= 8, tf.int32)
        return tf.switch_case(
            branch,
            [lambda r=r: tf.io.decode_jpeg(data, channels=3, ratio=r, dct_method="INTEGER_FAST") for r in (1, 2, 4, 8)],
        )

    def decode_other():
        return tf.io.decode_image(data, channels=3, expand_animations=False)

    image = tf.cond(is_jpeg, decode_jpeg, decode_other)
    image.set_shape([None, None, 3])
    image = tf.image.resize(image, image_size)
    return tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)


def _memory_budget() -> int:
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
):
    """A ``tf.data.Dataset`` of ``(images, labels)`` (or images alone) from file paths.

    Images come out as float32 in ``[0, 255]``, shape ``(batch, height, width, 3)``,
    like ``keras.utils.image_dataset_from_directory``.

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
    """
    import tensorflow as tf

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

    ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if cache:
        ds = ds.cache(cache if isinstance(cache, str) else "")
    if shuffle:
        ds = ds.shuffle(min(len(files), 1024), seed=seed, reshuffle_each_iteration=True)
    if batch_size:
        ds = ds.batch(batch_size)

    def to_float(image, *label):
        image = tf.cast(image, tf.float32)
        return (image, *label) if label else image

    ds = ds.map(to_float, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


def _looks_like_jpeg(path: str) -> bool:
    """True when the file starts with the JPEG signature (its extension may lie)."""
    try:
        with open(path, "rb") as fh:
            return fh.read(3) == b"\xff\xd8\xff"
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
    n_val = int(round(validation_split * len(order)))
    return {"training": order[n_val:], "validation": order[:n_val]}


def resolve_image_dir(directory: str | os.PathLike) -> Path:
    """A folder path as given, or ``name/split`` of a named dataset (downloaded if needed)."""
    from . import datasets

    path = Path(directory).expanduser()
    if path.exists():
        return path
    parts = Path(directory).parts
    if parts and parts[0] in datasets.DATASETS:
        return datasets.dataset_path(parts[0]).joinpath(*parts[1:])
    raise FileNotFoundError(
        f"Image folder {path} does not exist: pass a folder with one sub-folder of images per class, "
        f"or a named dataset split such as 'cats_and_dogs_filtered/train' ({', '.join(datasets.DATASETS)})."
    )
