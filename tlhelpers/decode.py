"""Image files to pixels: the decoders behind every pipeline, and the scan's decode check.

Two ways to read a file, chosen with ``decode=``:

``"keras"`` (the default)
    Exactly what ``keras.utils.image_dataset_from_directory`` does:
    ``tf.io.decode_image(..., channels=3, expand_animations=False)`` at full size, then
    ``tf.image.resize(image, size, method=interpolation)``; float32 pixels in
    ``[0, 255]``. A model trained on these pixels sees the same numbers from Keras' own
    loader, from a server that decodes with TensorFlow, and from the package.
``"fast"``
    A JPEG is decoded by libjpeg straight to 1/2, 1/4 or 1/8 of its size when it is at
    least that much larger than the target, with libjpeg's fast integer inverse DCT,
    then resized and rounded to uint8. Less work per image, but other pixels than
    Keras' loader gives (``benchmarks/README.md`` measures both the gain and the
    difference): opt in only where every image, in training and in use, is read this way.

:func:`undecodable` is the scan's check that TensorFlow can decode a file, with the
same decoder. The module also holds the two ``tf.data`` settings every pipeline of the
package shares (:func:`parallel_calls`, :func:`without_autotune`).
"""

from __future__ import annotations

import os
from pathlib import Path

from ._stderr import LIBJPEG_NOTICES, stderr_lines_dropped
from ._tf import tf

#: The ways a pipeline can decode an image file (see the module's docstring).
DECODERS = ("keras", "fast")
#: The scales (1/ratio) at which the fast decoder may decode a JPEG.
_JPEG_RATIOS = (1, 2, 4, 8)
#: The scale at which the check decodes a JPEG: the cheapest, and as strict as any (see :func:`decode_check`).
_CHECK_RATIO = 8
_JPEG_SIGNATURE = b"\xff\xd8\xff"


def check_decoder(decode: str) -> None:
    """Raise ``ValueError`` unless ``decode`` is one of :data:`DECODERS`."""
    if decode not in DECODERS:
        raise ValueError(f"decode must be one of {DECODERS}, got {decode!r}.")


def looks_like_jpeg(path: str | os.PathLike) -> bool:
    """True when the file starts with the JPEG signature (its extension may lie)."""
    try:
        with open(path, "rb") as fh:
            return fh.read(3) == _JPEG_SIGNATURE
    except OSError:
        return False


def _decode_jpeg(data, ratio: int):
    return tf.io.decode_jpeg(data, channels=3, ratio=ratio, dct_method="INTEGER_FAST")


def _decode_other(data):
    return tf.io.decode_image(data, channels=3, expand_animations=False)


def _jpeg_ratio_index(shape, image_size: tuple[int, int]):
    """Graph function: the index in ``_JPEG_RATIOS`` of the largest scale-down keeping a JPEG of ``shape`` >= ``image_size``."""
    height, width = image_size
    scale = tf.minimum(shape[0] // height, shape[1] // width)
    return tf.add_n([tf.cast(scale >= r, tf.int32) for r in _JPEG_RATIOS[1:]])


@tf.autograph.experimental.do_not_convert  # graph ops only: nothing for AutoGraph to convert
def decode_resize(path, is_jpeg, image_size: tuple[int, int], decode: str = "keras", interpolation: str = "bilinear"):
    """Graph function: read one image file and resize it to ``image_size``.

    Args:
        path: a string tensor, the file.
        is_jpeg: a bool tensor, whether the file holds a JPEG (read by
            :func:`looks_like_jpeg`; used by the ``"fast"`` decoder only).
        image_size: ``(height, width)``.
        decode: ``"keras"`` or ``"fast"`` (the module's docstring says what each does).
        interpolation: the ``tf.image.resize`` method, as in Keras' loader.

    Returns:
        A ``[height, width, 3]`` image: float32 for ``"keras"``, uint8 for ``"fast"``.
    """
    data = tf.io.read_file(path)
    if decode == "keras":
        image = tf.image.resize(_decode_other(data), image_size, method=interpolation)
        image.set_shape([*image_size, 3])
        return image

    def jpeg():
        index = _jpeg_ratio_index(tf.image.extract_jpeg_shape(data), image_size)
        return tf.switch_case(index, [lambda r=r: _decode_jpeg(data, r) for r in _JPEG_RATIOS])

    image = tf.cond(is_jpeg, jpeg, lambda: _decode_other(data))
    image.set_shape([None, None, 3])
    image = tf.image.resize(image, image_size, method=interpolation)
    image = tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)
    image.set_shape([*image_size, 3])
    return image


@tf.autograph.experimental.do_not_convert
def decode_check(data, is_jpeg):
    """Graph function: decode image bytes as either decoder may, raising where it would fail.

    A JPEG is decoded once, at 1/8 scale. libjpeg reads the whole entropy-coded stream at
    every scale (where files break: truncation, flipped bits, bad markers or tables) and
    the scales differ only in the inverse DCT, which cannot fail; so a JPEG decodes at 1/8
    exactly when it decodes at full size or at 1/2 or 1/4 (the tests check this on every
    kind of damage in their fuzzed files). The 1/8 decode costs a fraction of a full one.

    Returns the number of values decoded, so that no decode is optimised away.
    """

    def jpeg():
        total = tf.reduce_prod(tf.cast(tf.image.extract_jpeg_shape(data), tf.int64))
        return total + tf.size(_decode_jpeg(data, _CHECK_RATIO), out_type=tf.int64)

    return tf.cond(is_jpeg, jpeg, lambda: tf.size(_decode_other(data), out_type=tf.int64))


def undecodable(files: list[Path], workers: int) -> list[int]:
    """Positions in ``files`` of the files TensorFlow fails to decode in any way a pipeline may, sorted.

    libjpeg's notices about the damaged files ("Corrupt JPEG data ...") are dropped from
    stderr: the scan reports those files by name.
    """
    if not files:
        return []
    paths = [str(f) for f in files]

    def attempt(index, path, is_jpeg):
        return index, decode_check(tf.io.read_file(path), is_jpeg)

    ds = tf.data.Dataset.from_tensor_slices((list(range(len(paths))), paths, [looks_like_jpeg(p) for p in paths]))
    # A failing element is dropped (ignore_errors): the positions missing at the end are the failures.
    ds = ds.map(attempt, num_parallel_calls=max(1, workers), deterministic=False).ignore_errors().batch(256)
    with stderr_lines_dropped(LIBJPEG_NOTICES):
        decoded = {int(i) for indices, _ in without_autotune(ds) for i in indices.numpy()}
    return sorted(set(range(len(paths))) - decoded)


def parallel_calls() -> int:
    """How many elements a pipeline's ``map`` works on at once: one per CPU core (at least 2)."""
    return max(2, os.cpu_count() or 2)


def without_autotune(ds):
    """``ds`` with tf.data's autotuner switched off (the pipeline sets its own parallelism).

    With the autotuner on, deleting an iterator waits for the autotuner's background
    work, which on a busy CPU can take seconds; every extraction pass ends with such a
    deletion and ``fit`` makes a new iterator every epoch (``benchmarks/README.md``
    measures the stall). The package's pipelines therefore map with
    :func:`parallel_calls` and prefetch a fixed number of batches instead.

    Returns:
        The same dataset with ``options().autotune.enabled`` set to ``False``.
    """
    options = tf.data.Options()
    options.autotune.enabled = False
    return ds.with_options(options)


__all__ = [
    "DECODERS",
    "check_decoder",
    "decode_check",
    "decode_resize",
    "looks_like_jpeg",
    "parallel_calls",
    "undecodable",
    "without_autotune",
]
