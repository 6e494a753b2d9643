"""One pass of a compiled step over every image of a folder: what feature extraction and the activation cache share.

:func:`first_pass` runs a model (the frozen base, or the bottom of it) once over the
images of a folder or of a split, in batches of one shape (:func:`pad_batch`), and
leaves the scan's decode check to that pass, since it decodes every file anyway;
:func:`run_step` runs the further (augmented) passes over the same pipeline.
"""

from __future__ import annotations

import contextlib
import sys
import time
from dataclasses import dataclass, field

import numpy as np

from ._stderr import LIBJPEG_NOTICES, stderr_lines_dropped
from ._tf import tf
from .data import load_image_files, resolve_image_dir
from .scan import DeferredDecodeCheck, ImageTreeReport, scan_deferring_decode


def pad_batch(images, batch_size: int):
    """A batch padded with zeros to ``batch_size`` images, and how many of them are real.

    A compiled (``tf.function``) step traces a new graph for every new batch shape, and
    TensorFlow's CPU kernels set themselves up again for it; the last, shorter batch of
    a folder costs both. Padding it keeps one shape for every call: run the step on the
    padded batch and keep the first ``count`` rows of what it returns.

    Returns:
        ``(padded, count)``.
    """
    count = int(images.shape[0])
    if count >= batch_size:
        return images, count
    padding = tf.zeros([batch_size - count, *images.shape[1:]], images.dtype)
    return tf.concat([images, padding], axis=0), count


def run_step(
    step, dataset, batch_size: int, dtype: str = "float32", total: int | None = None, desc: str = "", verbose: bool = False
):
    """``step`` over every batch of ``(images, positions)``, the last batch padded (:func:`pad_batch`).

    Args:
        step: a compiled function from a batch of images to a tensor or a list of tensors.
        dataset: batches of ``(images, positions)`` (:func:`load_image_files` with the
            positions as labels).
        batch_size: the batch size (the last batch is padded to it).
        dtype: the type the outputs are stored in.
        total, desc, verbose: a progress bar (``verbose=True``) over ``total`` images.

    Returns:
        ``(outputs, positions)``: one array per output of ``step``, rows in pass order,
        and the positions of the images that came out.
    """
    from tqdm.auto import tqdm

    chunks: list[list[np.ndarray]] = []
    positions = []
    bar = tqdm(total=total, desc=desc, unit="img", disable=not verbose, leave=False, mininterval=1.0, file=sys.stdout)
    with bar:
        for images, where in dataset:
            padded, count = pad_batch(images, batch_size)
            outs = step(padded)
            outs = outs if isinstance(outs, (list, tuple)) else [outs]
            arrays = [np.asarray(o)[:count].astype(dtype) for o in outs]
            chunks = chunks or [[] for _ in arrays]
            for chunk, array in zip(chunks, arrays):
                chunk.append(array)
            positions.append(where.numpy())
            bar.update(count)
    if not chunks:
        raise ValueError("There are no images to run through the model (an empty folder or subset?).")
    return [np.concatenate(c) for c in chunks], np.concatenate(positions)


@dataclass
class FirstPass:
    """What :func:`first_pass` returns.

    Attributes:
        files: the images run, in row order.
        labels: their class indices.
        class_names: the names the labels index.
        outputs: the step's outputs, one array per output (empty when ``reused``).
        images: the pipeline of ``(images, positions)`` the pass read (for more passes).
        reused: what ``reuse`` returned, when it returned something.
        seconds: the time the pass took.
    """

    files: list[str]
    labels: np.ndarray
    class_names: list[str]
    outputs: list[np.ndarray] = field(default_factory=list, repr=False)
    images: object = field(default=None, repr=False)
    reused: object = None
    seconds: float = 0.0


def _images_of(data) -> tuple[list[str], np.ndarray, list[str], DeferredDecodeCheck | None, ImageTreeReport | None]:
    """Files, labels and class names of a folder (scanned, decode check deferred) or of a dataset this module made."""
    file_paths = getattr(data, "file_paths", None)
    if file_paths is not None and getattr(data, "class_names", None) is not None:  # a (split) dataset: files already checked
        return list(file_paths), np.asarray(data.labels, "int32"), list(data.class_names), None, getattr(data, "report", None)
    report, check = scan_deferring_decode(resolve_image_dir(data))
    return [str(f) for f in report.files], np.asarray(report.labels, "int32"), list(report.class_names), check, report


def first_pass(
    data,
    step,
    image_size: tuple[int, int],
    batch_size: int = 32,
    decode: str = "keras",
    interpolation: str = "bilinear",
    dtype: str = "float32",
    reuse=None,
    desc: str = "",
    verbose: bool = False,
) -> FirstPass:
    """Run ``step`` once over every image of a folder, or of a dataset from :func:`load_image_dataset`.

    A folder is scanned without TensorFlow's decode check (:func:`tlhelpers.scan.scan_deferring_decode`):
    the pass decodes every file anyway, and the files that fail in it are recorded as
    corrupt; then the folder is scanned and run again without them (this happens once).
    A dataset's files were checked when it was made.

    Args:
        data: a folder (or named dataset split), or a dataset from
            :func:`load_image_dataset` / :func:`load_splits`.
        step: a compiled function from a batch of images to a tensor or list of tensors.
        image_size, batch_size, decode, interpolation: how the images are read.
        dtype: the type the outputs are stored in.
        reuse: optional ``reuse(files, labels, class_names)`` that returns a stored
            result for these files, or ``None``; when it returns one, nothing runs.
        desc, verbose: a progress bar.

    Returns:
        A :class:`FirstPass`.
    """
    start = time.perf_counter()
    while True:
        files, labels, class_names, check, _ = _images_of(data)
        if reuse is not None:
            hit = reuse(files, labels, class_names)
            if hit is not None:
                if check is not None:
                    check.record(files, range(len(files)))  # they were all decoded when it was stored
                return FirstPass(files, labels, class_names, reused=hit)
        images = load_image_files(
            files,
            range(len(files)),
            image_size,
            batch_size,
            cache=False,
            decode=decode,
            interpolation=interpolation,
            skip_undecodable=check is not None,
        )
        pending = check is not None and check.pending
        with stderr_lines_dropped(LIBJPEG_NOTICES) if pending else contextlib.nullcontext():
            outputs, decoded = run_step(step, images, batch_size, dtype, len(files), desc, verbose)
        if check is None or not check.record(files, decoded):
            return FirstPass(files, labels, class_names, outputs, images, seconds=time.perf_counter() - start)


__all__ = ["FirstPass", "first_pass", "pad_batch", "run_step"]
