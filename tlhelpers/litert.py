"""Running LiteRT (``.tflite``) files: the LiteRT runtime, from Python.

:func:`litert_predict` runs a classifier file on images with the ``ai-edge-litert``
runtime (``pip install "tlhelpers[litert]"``) and returns its probabilities;
:func:`litert_interpreter` opens a file for hand-written ``set_tensor`` / ``invoke``
loops. :mod:`tlhelpers.export` writes such files.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ._stderr import stderr_lines_dropped
from ._tf import tf

_INSTALL_HINT = 'pip install "tlhelpers[litert]" (or: pip install ai-edge-litert)'
#: What the runtime prints to stderr when it starts, and no one needs to read.
RUNTIME_NOTICES = (r"^INFO: Created TensorFlow Lite XNNPACK delegate for CPU",)


def image_batches(data, what: str, image_shape=None, batch_size: int = 32) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
    """``(images, labels or None)`` batches of at most ``batch_size`` float32 images from an
    array of images (or one image), an ``(images, labels)`` tuple of arrays, or a
    ``tf.data`` dataset of images or ``(images, labels)``, batched or not."""
    if isinstance(data, tf.data.Dataset):
        source = data
    else:
        labels = None
        if isinstance(data, (tuple, list)) and len(data) == 2 and np.ndim(data[0]) == 4:
            data, labels = data[0], np.asarray(data[1])
        images = np.asarray(data, "float32")
        if images.ndim == 3:
            images = images[None]
        if labels is not None and len(labels) != len(images):
            raise ValueError(f"The {what} has {len(images)} images but {len(labels)} labels.")
        source = (
            (images[i : i + batch_size], None if labels is None else labels[i : i + batch_size])
            for i in range(0, len(images), batch_size)
        )
    pending_x, pending_y = [], []
    for element in source:
        x, y = (element[0], element[1] if len(element) > 1 else None) if isinstance(element, (tuple, list)) else (element, None)
        x = np.asarray(x, "float32")
        if x.ndim == 3:  # one image of an unbatched dataset
            x = x[None]
            y = None if y is None else np.asarray(y)[None]
        if x.ndim != 4:
            raise ValueError(
                f"The {what} must be images shaped (height, width, channels), in batches or not; got shape {x.shape}."
            )
        if image_shape is not None and tuple(x.shape[1:]) != tuple(image_shape):
            raise ValueError(
                f"The {what} are {tuple(x.shape[1:])} images but the model takes {tuple(image_shape)}: "
                f"load them with image_size={tuple(image_shape[:2])}."
            )
        if y is not None:
            y = np.asarray(y)
            y = y.argmax(axis=-1) if y.ndim == 2 else y.reshape(-1)  # one-hot or integer labels
        pending_x.append(x)
        pending_y.append(y)
        if sum(len(p) for p in pending_x) >= batch_size:
            yield _joined(pending_x, pending_y)
            pending_x, pending_y = [], []
    if pending_x:
        yield _joined(pending_x, pending_y)


def _joined(xs: list[np.ndarray], ys: list) -> tuple[np.ndarray, np.ndarray | None]:
    images = xs[0] if len(xs) == 1 else np.concatenate(xs)
    if any(y is None for y in ys):
        return images, None
    return images, ys[0] if len(ys) == 1 else np.concatenate(ys)


def litert_interpreter(path: str | os.PathLike, num_threads: int | None = None):
    """A LiteRT ``Interpreter`` for a ``.tflite`` file, its tensors allocated.

    The chores around ``ai_edge_litert.interpreter.Interpreter(model_path=...)``: a
    clear message when the file or the runtime is missing, and the runtime's
    "Created TensorFlow Lite XNNPACK delegate" line hidden.

    Args:
        path: the ``.tflite`` file.
        num_threads: CPU threads the interpreter may use (``None``: the runtime's choice).

    Returns:
        An ``ai_edge_litert.interpreter.Interpreter``, ready for ``set_tensor`` /
        ``invoke`` / ``get_tensor``.

    Raises:
        ImportError: when ``ai-edge-litert`` is not installed (the message says how).
        FileNotFoundError: when there is no such file.
    """
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError as err:
        raise ImportError(f"Running a .tflite file needs the LiteRT runtime: {_INSTALL_HINT}.") from err
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"There is no LiteRT file at {path}; write one with tl.export_litert(model, path).")
    with stderr_lines_dropped(RUNTIME_NOTICES):
        interpreter = Interpreter(model_path=str(path), num_threads=num_threads)
        interpreter.allocate_tensors()
    return interpreter


class BatchRunner:
    """Runs batches of float ``[0, 255]`` images through one interpreter, resizing its
    input to each batch and converting to and from quantized input and output types."""

    def __init__(self, interpreter):
        self.interpreter = interpreter
        self.input = interpreter.get_input_details()[0]
        self.output = interpreter.get_output_details()[0]
        self.shape = tuple(self.input["shape"])

    def __call__(self, images: np.ndarray) -> np.ndarray:
        it, inp = self.interpreter, self.input
        expected = tuple(inp["shape_signature"][1:])
        if len(expected) != images.ndim - 1 or any(e not in (-1, d) for e, d in zip(expected, images.shape[1:])):
            raise ValueError(
                f"The file takes images shaped {tuple(int(d) for d in inp['shape'][1:])}; got {tuple(images.shape[1:])}."
            )
        if self.shape != images.shape:
            it.resize_tensor_input(inp["index"], list(images.shape))
            it.allocate_tensors()
            self.shape = images.shape
        it.set_tensor(inp["index"], _quantized(images, inp))
        it.invoke()
        out = it.get_tensor(self.output["index"])
        scale, zero_point = self.output["quantization"]
        if np.issubdtype(out.dtype, np.integer) and scale:
            out = (out.astype("float32") - zero_point) * scale
        return np.asarray(out, "float32")


def _quantized(images: np.ndarray, detail: dict) -> np.ndarray:
    """Images in the input tensor's type: as they are for float, scaled and rounded for int8/uint8."""
    dtype = detail["dtype"]
    if not np.issubdtype(dtype, np.integer):
        return images.astype(dtype, copy=False)
    scale, zero_point = detail["quantization"]
    info = np.iinfo(dtype)
    return np.clip(np.round(images / scale + zero_point), info.min, info.max).astype(dtype)


def litert_predict(path: str | os.PathLike, images, num_threads: int | None = None, batch_size: int = 32) -> np.ndarray:
    """Class probabilities from a ``.tflite`` classifier, run with the LiteRT runtime.

    Args:
        path: a file from :func:`export_litert` (or any image classifier ``.tflite``
            file; int8 or uint8 inputs and outputs are quantized and dequantized here).
        images: ``[0, 255]`` images: an array ``(n, height, width, 3)`` or one image
            ``(height, width, 3)``, or a ``tf.data`` dataset of images or
            ``(images, labels)`` (labels are ignored).
        num_threads: CPU threads for the interpreter (``None``: the runtime's choice).
        batch_size: images per ``invoke``; the input tensor is resized to the batch.

    Returns:
        ``(n, classes)`` float32 probabilities, in the order of the images.

    Raises:
        ImportError: without ``ai-edge-litert``: ``pip install "tlhelpers[litert]"``.
        FileNotFoundError, ValueError: for a missing file or images of the wrong shape.
    """
    runner = BatchRunner(litert_interpreter(path, num_threads))
    out = [runner(x) for x, _ in image_batches(images, "images", batch_size=batch_size)]
    if not out:
        raise ValueError("There are no images to predict.")
    return np.concatenate(out)


__all__ = ["BatchRunner", "image_batches", "litert_interpreter", "litert_predict"]
