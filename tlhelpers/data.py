"""Image folders in, ``tf.data`` pipelines out: the loaders, the splits, and one pass over a folder.

:func:`load_image_dataset` is ``keras.utils.image_dataset_from_directory`` with the
folder checked first (:func:`tlhelpers.scan.scan_image_tree`: bad files are skipped and
reported by name, not met inside ``fit``). It gives the same pixels as Keras' loader
(:mod:`tlhelpers.decode`) and, for a folder where every file is usable, the same
training/validation split for the same ``seed``. :func:`load_splits` is the
collection's one rule for training, validation and test sets. :func:`load_image_files`
builds the same pipeline from a list of files.
"""

from __future__ import annotations

import os
import threading
import weakref
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ._tf import tf
from .decode import check_decoder, decode_resize, looks_like_jpeg, parallel_calls, without_autotune
from .scan import check_class_names, scan_image_tree

# --- caching decoded images in memory ---------------------------------------------------------

_reserved = [0]  # bytes promised to in-memory caches of live datasets
_reserved_lock = threading.Lock()


def _available_memory() -> int:
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 4 << 30


def _reserve_cache(ds, nbytes: int) -> bool:
    """Whether ``nbytes`` of decoded images may be cached in memory for the dataset ``ds``.

    Together, the in-memory caches of the datasets alive in this process stay under a
    quarter of the free memory and 4 GiB; the reservation is released when ``ds`` is
    garbage collected.
    """
    with _reserved_lock:
        if _reserved[0] + nbytes > min(_available_memory() // 4, 4 << 30):
            return False
        _reserved[0] += nbytes
    weakref.finalize(ds, _release_cache, nbytes)
    return True


def _release_cache(nbytes: int) -> None:
    with _reserved_lock:
        _reserved[0] -= nbytes


# --- pipelines ---------------------------------------------------------------------------------


def load_image_files(
    files: list,
    labels=None,
    image_size: tuple[int, int] = (224, 224),
    batch_size: int | None = 32,
    shuffle: bool = False,
    seed: int | None = None,
    cache: bool | str = "auto",
    decode: str = "keras",
    interpolation: str = "bilinear",
    skip_undecodable: bool = False,
):
    """A ``tf.data.Dataset`` of ``(images, labels)`` (or images alone) from image files.

    Images come out as float32 in ``[0, 255]``, shape ``(batch, height, width, 3)``,
    the pixels ``keras.utils.image_dataset_from_directory`` gives for the same files,
    size and interpolation (``decode="fast"`` opts into reduced-scale JPEG decoding:
    see :mod:`tlhelpers.decode`). Files are decoded one per CPU core at a time, with two
    batches prefetched and tf.data's autotuner off (:func:`tlhelpers.decode.without_autotune`).

    Args:
        files: image files TensorFlow can decode (JPEG, PNG, BMP, GIF).
        labels: integer labels, one per file, or ``None`` for images alone.
        image_size: ``(height, width)`` to resize to.
        batch_size: images per batch, or ``None`` for unbatched images.
        shuffle: shuffle the files once with ``seed`` (as Keras' loader does), then
            reshuffle them every epoch.
        seed: the shuffling seed.
        cache: ``True`` keeps the decoded images in memory after the first epoch,
            ``False`` never, ``"auto"`` when they fit in the share of free memory the
            package allows itself (:func:`_reserve_cache`); a path string caches to
            files there.
        decode: ``"keras"`` (Keras' own pixels) or ``"fast"``.
        interpolation: the resizing method, as in Keras' loader (``"bilinear"``,
            ``"nearest"``, ``"bicubic"``, ``"area"``, ...).
        skip_undecodable: drop the files TensorFlow fails to decode instead of raising
            (pass their positions as ``labels`` to learn which came out; see
            :func:`tlhelpers.scan.scan_deferring_decode`).

    Returns:
        The dataset, with attributes ``file_paths`` (the files in the order the
        pipeline reads them before its per-epoch reshuffling) and ``labels``.
    """
    check_decoder(decode)
    files = [str(f) for f in files]
    labels = None if labels is None else np.asarray(labels).astype("int32")
    order = np.arange(len(files))
    if shuffle:
        np.random.RandomState(seed).shuffle(order)
    files = [files[i] for i in order]
    labels = None if labels is None else labels[order]
    image_size = tuple(int(s) for s in image_size)
    is_jpeg = [looks_like_jpeg(f) for f in files] if decode == "fast" else [False] * len(files)

    slices = (files, is_jpeg) if labels is None else (files, is_jpeg, labels)
    ds = tf.data.Dataset.from_tensor_slices(slices)

    @tf.autograph.experimental.do_not_convert
    def load(path, jpeg, *label):
        image = decode_resize(path, jpeg, image_size, decode, interpolation)
        return (image, *label) if label else image

    ds = ds.map(load, num_parallel_calls=parallel_calls(), deterministic=True)
    if skip_undecodable:
        ds = ds.ignore_errors()
    if cache == "auto":
        bytes_per_image = image_size[0] * image_size[1] * 3 * (4 if decode == "keras" else 1)
        cache = _reserve_cache(ds, len(files) * bytes_per_image)
    if cache:
        ds = ds.cache(cache if isinstance(cache, str) else "")
    if shuffle:
        ds = ds.shuffle(min(len(files), 1024), seed=seed, reshuffle_each_iteration=True)
    if batch_size:
        ds = ds.batch(batch_size)
    if decode == "fast":

        @tf.autograph.experimental.do_not_convert
        def to_float(image, *label):
            image = tf.cast(image, tf.float32)
            return (image, *label) if label else image

        ds = ds.map(to_float, num_parallel_calls=parallel_calls(), deterministic=True)
    ds = without_autotune(ds.prefetch(2))
    ds.file_paths = files
    ds.labels = labels
    return ds


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
    decode: str = "keras",
    interpolation: str = "bilinear",
    verbose: bool = True,
):
    """Load a folder-per-class image tree as a batched ``tf.data.Dataset``, its files checked first.

    ``keras.utils.image_dataset_from_directory`` with two additions: the folder is
    scanned first (:func:`tlhelpers.scan.scan_image_tree`: unusable files are skipped
    and listed, images TensorFlow cannot decode correctly are converted to RGB), and the
    decoded images are kept in memory when they fit. The pixels are Keras' (same
    decoder, size and ``interpolation``). A split is Keras' too: the files are shuffled
    with ``numpy.random.RandomState(seed)`` and the last ``int(validation_split * n)``
    are the ``"validation"`` subset, so for a folder where every file is usable the
    subsets hold the same files as Keras' for the same ``seed``. Unlike Keras, the
    split is made from the seeded shuffle even with ``shuffle=False``.

    Args:
        directory: a folder with one sub-folder of images per class, or the name of a
            dataset split such as ``"cats_and_dogs_filtered/train"`` (see
            :func:`tlhelpers.datasets.dataset_path`).
        image_size: ``(height, width)`` the images are resized to.
        batch_size: images per batch.
        shuffle: shuffle every epoch (leave on for training, off for evaluation); a
            ``"validation"`` subset is never shuffled.
        seed: seed for shuffling and for the split (required with ``validation_split``).
        validation_split: fraction of the files to hold out, with ``subset``.
        subset: ``"training"``, ``"validation"`` or ``"both"`` (returns a pair).
        class_names: the expected classes (e.g. the training set's); a mismatch
            raises ``ValueError`` listing the differences.
        cache, decode, interpolation: see :func:`load_image_files`.
        verbose: print the scan's summary when files were skipped or converted.

    Returns:
        A ``tf.data.Dataset`` of ``(float32 images in [0, 255], int32 labels)`` with
        attributes ``class_names``, ``file_paths``, ``labels`` and ``report`` (the
        scan's :class:`tlhelpers.scan.ImageTreeReport`); a pair of them when
        ``subset="both"``.

    Raises:
        FileNotFoundError: if the folder does not exist.
        ValueError: for bad arguments, fewer than two usable classes, or classes
            that differ from ``class_names``.
    """
    directory = resolve_image_dir(directory)
    check_split_arguments(validation_split, subset, seed)
    check_decoder(decode)
    report = scan_image_tree(directory)
    if verbose and (report.num_skipped or report.converted):
        print(report.summary())
    if class_names is not None:
        check_class_names(list(class_names), report.class_names)
    subsets = split_files(list(zip(report.files, report.labels)), validation_split, seed)

    def build(chosen: list, training: bool):
        ds = load_image_files(
            [p for p, _ in chosen],
            [label for _, label in chosen],
            image_size=image_size,
            batch_size=batch_size,
            shuffle=shuffle and training,
            seed=seed,
            cache=cache,
            decode=decode,
            interpolation=interpolation,
        )
        ds.class_names = report.class_names
        ds.report = report
        return ds

    if subset == "both":
        return build(subsets["training"], True), build(subsets["validation"], False)
    return build(subsets[subset], subset != "validation")


class Splits(NamedTuple):
    """The training, validation and test sets of a dataset, as :func:`load_splits` makes them."""

    train: object
    validation: object
    test: object


def load_splits(
    dataset: str | os.PathLike,
    seed: int,
    image_size: tuple[int, int] = (224, 224),
    batch_size: int = 32,
    held_out: float = 0.3,
    **kwargs,
) -> Splits:
    """Training, validation and test sets of a dataset, by the rule every notebook follows.

    The rule, written with Keras' loader (``seed`` is the same in every call):

    * a dataset with ``train/`` and ``validation/`` folders (``cats_and_dogs_filtered``,
      ``cats_and_dogs_sample``): ``train/`` is the training set; ``validation/`` is
      split in halves, ``image_dataset_from_directory(validation, validation_split=0.5,
      subset="both", seed=seed)``: its ``"training"`` half is the validation set, its
      ``"validation"`` half the test set;
    * a dataset that is one folder of classes (``flower_photos``): ``held_out`` of it is
      split off the same way (``validation_split=held_out``; the ``"training"`` subset is
      the training set), and the held-out files are halved again as above.

    The validation set is for choosing (epochs, learning rates, early stopping); the
    test set is looked at once, at the end.

    Args:
        dataset: a dataset name (:func:`tlhelpers.datasets.dataset_path`) or folder.
        seed: the split seed.
        image_size, batch_size: as in :func:`load_image_dataset`.
        held_out: the share of a one-folder dataset that is not training data.
        **kwargs: passed on to :func:`load_image_dataset` (``cache``, ``decode``,
            ``interpolation``, ``verbose``).

    Returns:
        :class:`Splits` ``(train, validation, test)``: the training set reshuffled
        every epoch, the other two in a fixed order; each with ``class_names``,
        ``file_paths``, ``labels`` and ``report``.
    """
    root = resolve_image_dir(dataset)
    common = dict(image_size=image_size, batch_size=batch_size, seed=seed, **kwargs)
    if (root / "train").is_dir() and (root / "validation").is_dir():
        train = load_image_dataset(root / "train", **common)
        validation, test = load_image_dataset(
            root / "validation", validation_split=0.5, subset="both", shuffle=False, class_names=train.class_names, **common
        )
        return Splits(train, validation, test)
    train, rest = load_image_dataset(root, validation_split=held_out, subset="both", **common)  # one scan
    halves = split_files(list(zip(rest.file_paths, rest.labels)), 0.5, seed)

    def part(pairs: list):
        ds = load_image_files(
            [p for p, _ in pairs],
            [y for _, y in pairs],
            image_size,
            batch_size,
            **{k: v for k, v in kwargs.items() if k in ("cache", "decode", "interpolation")},
        )
        ds.class_names, ds.report = train.class_names, train.report
        return ds

    return Splits(train, part(halves["training"]), part(halves["validation"]))


def check_split_arguments(validation_split: float | None, subset: str | None, seed: int | None) -> None:
    """Raise ``ValueError`` for an inconsistent ``validation_split``/``subset``/``seed``, as Keras does."""
    if validation_split is not None and not 0 < validation_split < 1:
        raise ValueError(f"validation_split must be between 0 and 1, got {validation_split}.")
    if (validation_split is None) != (subset is None):
        raise ValueError("Pass validation_split and subset together (subset: 'training', 'validation' or 'both').")
    if subset is not None and subset not in ("training", "validation", "both"):
        raise ValueError(f"subset must be 'training', 'validation' or 'both', got {subset!r}.")
    if validation_split is not None and seed is None:
        raise ValueError("Pass a seed with validation_split, so that the training and validation subsets do not overlap.")


def split_files(pairs: list, validation_split: float | None, seed: int | None) -> dict:
    """Split ``(file, label)`` pairs as ``keras.utils.image_dataset_from_directory`` does.

    The pairs are shuffled with ``numpy.random.RandomState(seed)``; the last
    ``int(validation_split * n)`` are the validation subset, the rest the training subset.

    Returns:
        ``{None: pairs}`` without a split, else ``{"training": [...], "validation": [...]}``.

    Raises:
        ValueError: when a subset would be empty.
    """
    if validation_split is None:
        return {None: list(pairs)}
    order = list(pairs)
    np.random.RandomState(seed).shuffle(order)
    n_val = int(validation_split * len(order))
    if not 0 < n_val < len(order):
        raise ValueError(
            f"validation_split={validation_split} of {len(order)} files leaves an empty subset: "
            "use a larger folder or another validation_split."
        )
    return {"training": order[: len(order) - n_val], "validation": order[len(order) - n_val :]}


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


__all__ = [
    "Splits",
    "check_split_arguments",
    "load_image_dataset",
    "load_image_files",
    "load_splits",
    "resolve_image_dir",
    "split_files",
]
