"""LiteRT (TensorFlow Lite) files from a Keras classifier, and running them.

:func:`export_litert` turns a classifier that takes ``[0, 255]`` images and returns
class probabilities (or the SavedModel ``model.export`` wrote for one) into a
``.tflite`` file for phones, browsers and small boards, optionally quantized, and
reports in an :class:`ExportResult` how closely the file agrees with the model.
:func:`litert_predict` runs such a file on images with the LiteRT runtime, and
:func:`litert_interpreter` opens one for hand-written ``set_tensor`` / ``invoke``
loops; both need the ``ai-edge-litert`` package (``pip install "tlhelpers[litert]"``).

The conversion takes one route on every Keras 3 version: ``model.export(folder)``
writes a SavedModel, and ``tf.lite.TFLiteConverter.from_saved_model`` converts it
with LiteRT's built-in operations only, so the file runs on the plain LiteRT runtime,
which has no TensorFlow ("Flex") operations. ``model.export(path, format="litert")``
exists too (Keras 3.13 and later), but Keras 3.13 converts through
``TFLiteConverter.from_keras_model``, which fails on Keras 3 models with some
TensorFlow versions (2.16: "no attribute '_get_save_spec'"), and both 3.13 and 3.15
let TensorFlow operations into the file.

For a server, ``model.export(folder)`` alone does the whole job: the SavedModel it
writes is what ``tf.saved_model.load(folder).serve(images)``,
``keras.layers.TFSMLayer(folder, call_endpoint="serve")`` and TensorFlow Serving
read (notebook 7), so no helper stands in for it.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ._quiet import import_tensorflow_quietly

import_tensorflow_quietly()

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from . import core  # noqa: E402

#: The quantization modes :func:`export_litert` offers.
QUANTIZATIONS = ("none", "dynamic", "int8")

_INSTALL_HINT = 'pip install "tlhelpers[litert]" (or: pip install ai-edge-litert)'


@dataclass
class ExportResult:
    """What :func:`export_litert` wrote, and how closely the file agrees with Keras.

    Attributes:
        path: the ``.tflite`` file.
        quantization: ``"none"``, ``"dynamic"`` or ``"int8"``.
        size_bytes: the file's size.
        compared: how many validation images both models ran on (0 without
            ``validation_data``; the fields below are then ``None``).
        top1_agreement: the fraction of those images on which the file's most
            probable class is the Keras model's.
        max_abs_diff: the largest absolute difference between the two models'
            probabilities, over every image and class.
        accuracy: the file's accuracy, when the validation data has labels.
        keras_accuracy: the source model's accuracy on the same images (the Keras
            model's, or the SavedModel's when a folder was converted).
    """

    path: Path
    quantization: str
    size_bytes: int
    compared: int = 0
    top1_agreement: float | None = None
    max_abs_diff: float | None = None
    accuracy: float | None = None
    keras_accuracy: float | None = None

    @property
    def size_mb(self) -> float:
        """The file's size in megabytes (10**6 bytes)."""
        return self.size_bytes / 1e6


def _logs_hidden():
    """Hide what the converter and the runtime print straight to file descriptor 2
    (``TLHELPERS_TF_LOGS=1`` keeps it)."""
    from ._quiet import _stderr_silenced

    return contextlib.nullcontext() if os.environ.get("TLHELPERS_TF_LOGS") else _stderr_silenced()


def _check_path(path: str | os.PathLike) -> Path:
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path} is a folder; give the name of a file in it, e.g. {path / 'model.tflite'}.")
    if path.suffix != ".tflite":
        raise ValueError(f"A LiteRT file name ends in .tflite; got {path.name!r}. Use e.g. {path.with_suffix('.tflite').name!r}.")
    if not path.parent.is_dir():
        raise ValueError(
            f"The folder {path.parent} does not exist. Create it first "
            "(Path(folder).mkdir(parents=True, exist_ok=True)) or write the file elsewhere."
        )
    return path


_NOT_A_CLASSIFIER = (
    " export_litert converts classifiers: one batch of images in, one (batch, classes) array of "
    "probabilities out, e.g. tl.build_classifier(base, num_classes, head=head). For any other model, "
    "write a SavedModel with model.export(folder) and convert it with "
    "tf.lite.TFLiteConverter.from_saved_model(folder) (notebook 7 shows both steps)."
)


def _check_classifier(name: str, input_shapes: list[tuple], output_shapes: list[tuple], predict) -> tuple[int, int, int]:
    """The ``(height, width, channels)`` a classifier takes; ``ValueError`` for anything else.

    The rule: exactly one input, a batch of images of a fixed size; exactly one output
    of shape ``(batch, classes)`` with at least two classes; and on a test batch every
    output row is a probability vector (non-negative, summing to 1), as a final softmax
    makes it. ``predict`` maps a batch of images to the output.
    """
    if len(input_shapes) != 1 or len(input_shapes[0]) != 4:
        shapes = ", ".join(map(str, input_shapes)) or "nothing"
        raise ValueError(
            f"Model {name!r} takes {shapes}, not one batch of images (batch, height, width, channels)." + _NOT_A_CLASSIFIER
        )
    image_shape = tuple(input_shapes[0][1:])
    if any(d is None for d in image_shape):
        raise ValueError(
            f"Model {name!r} takes images of any size {image_shape}; a LiteRT file is converted for one size. "
            "Rebuild it on keras.Input((height, width, 3)), e.g. with get_base_model(..., input_shape=(160, 160, 3))."
        )
    if len(output_shapes) != 1:
        raise ValueError(f"Model {name!r} has {len(output_shapes)} outputs, not one." + _NOT_A_CLASSIFIER)
    shape = tuple(output_shapes[0])
    if len(shape) != 2 or shape[-1] is None or shape[-1] < 2:
        hint = ""
        if len(shape) == 4:
            hint = " It returns feature maps: is it a base without its head?"
        elif len(shape) == 2 and shape[-1] == 1:
            hint = " A single output unit (a sigmoid) is not a probability per class: use a 2-unit softmax instead."
        raise ValueError(f"Model {name!r} returns shape {shape}, not (batch, classes).{hint}" + _NOT_A_CLASSIFIER)
    probe = np.random.default_rng(0).uniform(0, 255, (2, *image_shape)).astype("float32")
    rows = np.asarray(predict(probe), "float64")
    if not (np.all(rows >= -1e-6) and np.allclose(rows.sum(axis=-1), 1.0, atol=1e-3)):
        raise ValueError(
            f"Model {name!r} returns {shape[-1]} numbers per image that are not probabilities (non-negative, "
            "summing to 1): a feature extractor, or a classifier that ends in logits? Add the softmax: "
            "keras.Sequential([model, keras.layers.Softmax()])." + _NOT_A_CLASSIFIER
        )
    return image_shape


@contextlib.contextmanager
def _one_input_warning_hidden() -> Iterator[None]:
    """A model built on a list of one input warns when called on a bare array; the answer is the same."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The structure of `inputs`")
        yield


class _KerasSource:
    """A Keras model to convert: exported to a temporary SavedModel first."""

    def __init__(self, model: keras.Model):
        inputs, outputs = getattr(model, "inputs", None), getattr(model, "outputs", None)
        if not inputs or not outputs:
            raise ValueError(
                f"Model {model.name!r} has no defined inputs and outputs yet. Build it from keras.Input "
                "(a functional or Sequential model with an input shape) before exporting it."
            )
        self.model = model
        self.image_shape = _check_classifier(
            model.name, [tuple(x.shape) for x in inputs], [tuple(y.shape) for y in outputs], self.predict
        )

    def predict(self, images: np.ndarray) -> np.ndarray:
        with _one_input_warning_hidden():
            return keras.ops.convert_to_numpy(self.model(images, training=False))

    def predict_batch(self, images: np.ndarray) -> np.ndarray:
        with _one_input_warning_hidden():
            return np.asarray(self.model.predict_on_batch(images))

    @contextlib.contextmanager
    def saved_model(self) -> Iterator[str]:
        with tempfile.TemporaryDirectory(prefix="tlhelpers-savedmodel-") as folder:
            with _logs_hidden():
                _export_saved_model(self.model, folder)
            yield folder


class _SavedModelSource:
    """A SavedModel folder written by ``model.export(folder)``: converted as it is."""

    def __init__(self, folder: Path):
        if not (folder / "saved_model.pb").is_file():
            raise ValueError(
                f"{folder} is not a SavedModel folder (it has no saved_model.pb). Pass the Keras model, or the "
                "folder model.export(folder) wrote."
            )
        with _logs_hidden():
            loaded = tf.saved_model.load(str(folder))
        self.folder = folder
        self._loaded = loaded  # keeps the signature's variables alive
        self.function = loaded.signatures.get("serving_default")
        if self.function is None:
            raise ValueError(
                f"The SavedModel in {folder} has no 'serving_default' signature; write it with model.export(folder)."
            )
        args, kwargs = self.function.structured_input_signature
        specs = dict(kwargs) or {f"input_{i}": spec for i, spec in enumerate(args)}
        self.input_name = next(iter(specs)) if kwargs else None
        outputs = self.function.structured_outputs
        output_specs = list(outputs.values()) if isinstance(outputs, dict) else tf.nest.flatten(outputs)
        self.image_shape = _check_classifier(
            folder.name,
            [tuple(spec.shape.as_list()) for spec in specs.values()],
            [tuple(spec.shape.as_list()) for spec in output_specs],
            self.predict,
        )

    def predict(self, images: np.ndarray) -> np.ndarray:
        x = tf.constant(images)
        out = self.function(**{self.input_name: x}) if self.input_name else self.function(x)
        return np.asarray(next(iter(out.values())) if isinstance(out, dict) else tf.nest.flatten(out)[0])

    predict_batch = predict

    @contextlib.contextmanager
    def saved_model(self) -> Iterator[str]:
        yield str(self.folder)


def _source(model) -> _KerasSource | _SavedModelSource:
    if isinstance(model, keras.Model):
        return _KerasSource(model)
    if isinstance(model, (str, os.PathLike)):
        folder = Path(model)
        if not folder.is_dir():
            raise ValueError(
                f"There is no SavedModel folder at {folder}. Pass a Keras model, or a folder written by model.export(folder)."
            )
        return _SavedModelSource(folder)
    raise TypeError(f"export_litert takes a keras.Model or a SavedModel folder, got {type(model).__name__}.")


def _batches(data, what: str, image_shape=None, batch_size: int = 32) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
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


def _calibration_images(data, image_shape, samples: int) -> np.ndarray:
    """Up to ``samples`` images for int8 calibration: the first ones of a ``tf.data``
    dataset (shuffle it, so that they cover every class), evenly spaced ones of an array."""
    parts, count = [], 0
    for x, _ in _batches(data, "representative data", image_shape):
        parts.append(x)
        count += len(x)
        if isinstance(data, tf.data.Dataset) and count >= samples:
            break
    if not count:
        raise ValueError("The representative data is empty: pass some training images.")
    images = np.concatenate(parts)
    if isinstance(data, tf.data.Dataset):
        return images[:samples]
    return images[np.unique(np.linspace(0, len(images) - 1, min(samples, len(images))).round().astype(int))]


def _export_saved_model(model: keras.Model, folder: str) -> None:
    import inspect

    quiet = {"verbose": False} if "verbose" in inspect.signature(model.export).parameters else {}
    model.export(folder, format="tf_saved_model", **quiet)


def _convert(saved_model: str, quantization: str, calibration: np.ndarray | None, per_channel: bool = True) -> bytes:
    """Convert a SavedModel to a LiteRT flatbuffer with built-in operations only."""
    converter = tf.lite.TFLiteConverter.from_saved_model(saved_model)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if quantization != "none":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        # The converter's switch for one scale per weight tensor (experimental: underscore).
        # It covers the convolutions; a final dense layer keeps one per class.
        converter._experimental_disable_per_channel = not per_channel
    if quantization == "int8":
        converter.representative_dataset = lambda: ([image[None]] for image in calibration)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.float32  # the default, said out loud: float [0, 255] pixels in,
        converter.inference_output_type = tf.float32  # float probabilities out
    try:
        with _logs_hidden():
            return converter.convert()
    except Exception as err:
        lines = str(err).strip().splitlines()
        hint = " Some operation may have no int8 version: try quantization='dynamic'." if quantization == "int8" else ""
        raise RuntimeError(f"The LiteRT converter failed: {lines[0] if lines else type(err).__name__}.{hint}") from err


def export_litert(
    model: keras.Model | str | os.PathLike,
    path: str | os.PathLike,
    quantization: str = "none",
    representative_data=None,
    validation_data=None,
    calibration_samples: int = 100,
    per_channel: bool = True,
) -> ExportResult:
    """Write a Keras classifier to a LiteRT (``.tflite``) file, optionally quantized.

    The model is exported as a SavedModel (``model.export``) into a temporary folder and
    converted with ``tf.lite.TFLiteConverter.from_saved_model``, using LiteRT's built-in
    operations only. A SavedModel folder that ``model.export(folder)`` already wrote
    can be passed instead of the model: it is converted as it is, which saves the
    export when one model becomes several files. The file is written atomically: it
    appears complete or not at all.

    Quantization:
        ``"none"``: float32 weights and activations; the same numbers as Keras up to
        rounding.
        ``"dynamic"``: weights stored as int8 (about 4x smaller), activations float;
        no data needed.
        ``"int8"``: full integer quantization. Weights are int8 (one scale per output
        channel), and so is every activation: the converter runs
        ``representative_data`` through the model to record each activation's range
        and maps that range onto the 256 int8 values. Images unlike the real ones give
        wrong ranges (clipped or coarse activations), so pass training images as the
        model takes them, ``[0, 255]`` pixels.

    The input and output stay float32, so the file takes the same ``[0, 255]`` images
    as the Keras model and returns probabilities. The preprocessing layer inside the
    model (e.g. ``Rescaling`` to ``[-1, 1]``) is converted with the rest of the graph:
    with ``"int8"`` a quantize step at the entrance turns the float pixels into int8
    (the calibrated ``[0, 255]`` range fits the 256 levels, so whole pixel values pass
    unchanged), the rescaling then runs as int8 multiply and add, and a dequantize step
    at the exit returns float probabilities.

    Args:
        model: a classifier: one batch of fixed-size images in, one
            ``(batch, classes)`` array of probabilities out (a final softmax), such as
            :func:`tlhelpers.build_classifier` makes; or the SavedModel folder
            ``model.export(folder)`` wrote for one.
        path: the ``.tflite`` file to write, in an existing folder; replaced if it exists.
        quantization: ``"none"``, ``"dynamic"`` or ``"int8"``.
        representative_data: for ``"int8"`` only: training images, an array
            ``(n, height, width, 3)`` or a ``tf.data`` dataset of images or
            ``(images, labels)``, batched or not.
        validation_data: optional held-out images in the same forms (with labels for
            accuracies): both models run on them and the result reports their
            agreement. Needs the LiteRT runtime (``ai-edge-litert``).
        calibration_samples: how many representative images calibrate ``"int8"``
            (the first ones of a dataset, so shuffle it; evenly spaced ones of an array).
        per_channel: quantized convolution weights get one scale per output channel
            (the default), or one per tensor with ``False`` (the classifier's final
            dense layer keeps one per class). A LiteRT file stores each scale in 4 bytes
            and its zero point in 8, for the weights and, with ``"int8"``, again for the
            int32 biases: on MobileNetV2, whose depthwise filters have 9 weights per
            channel, that is 0.4 MB of a 2.7 MB int8 file.
            One scale per tensor saves it, but one range must then fit channels whose
            weights differ by orders of magnitude: the cats-vs-dogs classifier of
            notebook 7 fell from 97% to 70% (int8) and to 50% (dynamic range).

    Returns:
        An :class:`ExportResult`: the path, the size and, with ``validation_data``, the
        top-1 agreement, the largest probability difference and the accuracies.

    Raises:
        ValueError: for an unknown quantization, ``"int8"`` without representative data
            (or representative data without ``"int8"``), a path that is a folder, does
            not end in ``.tflite`` or lies in a missing folder, images of the wrong size,
            and a model that is not such a classifier (a base or feature extractor,
            several inputs or outputs, an output that is not probabilities) or a
            folder that is not a SavedModel.
        RuntimeError: when the converter fails.
    """
    if quantization not in QUANTIZATIONS:
        raise ValueError(f"quantization must be one of {', '.join(map(repr, QUANTIZATIONS))}; got {quantization!r}.")
    if quantization == "int8" and representative_data is None:
        raise ValueError(
            "quantization='int8' needs representative_data: about a hundred training images ([0, 255] pixels, as the "
            "model takes them; an array or a tf.data dataset such as the training set). The converter runs them through "
            "the model to set the range of every activation. Without data, use quantization='dynamic'."
        )
    if quantization != "int8" and representative_data is not None:
        raise ValueError(
            f"representative_data calibrates quantization='int8' only; quantization={quantization!r} does not use it."
        )
    if quantization == "none" and not per_channel:
        raise ValueError("per_channel=False chooses how quantized weights are scaled; quantization='none' has none.")
    if not isinstance(calibration_samples, int) or calibration_samples < 1:
        raise ValueError(f"calibration_samples must be a positive integer, got {calibration_samples!r}.")
    path = _check_path(path)
    source = _source(model)
    calibration = (
        _calibration_images(representative_data, source.image_shape, calibration_samples) if quantization == "int8" else None
    )

    with source.saved_model() as folder:
        flatbuffer = _convert(folder, quantization, calibration, per_channel)
    with core.atomic_path(path, suffix=".tflite") as tmp:
        tmp.write_bytes(flatbuffer)
    result = ExportResult(path=path, quantization=quantization, size_bytes=path.stat().st_size)
    if validation_data is not None:
        _compare(result, source, validation_data)
    return result


def _compare(result: ExportResult, source: _KerasSource | _SavedModelSource, validation_data) -> None:
    """Run both models on the validation images and fill in the agreement fields."""
    runner = _Runner(litert_interpreter(result.path))
    agree = correct = keras_correct = labelled = compared = 0
    max_diff = 0.0
    for images, labels in _batches(validation_data, "validation data", source.image_shape):
        reference = source.predict_batch(images)
        probabilities = runner(images)
        agree += int((probabilities.argmax(-1) == reference.argmax(-1)).sum())
        max_diff = max(max_diff, float(np.abs(probabilities - reference).max()))
        compared += len(images)
        if labels is not None:
            correct += int((probabilities.argmax(-1) == labels).sum())
            keras_correct += int((reference.argmax(-1) == labels).sum())
            labelled += len(labels)
    if not compared:
        raise ValueError("The validation data is empty.")
    result.compared = compared
    result.top1_agreement = agree / compared
    result.max_abs_diff = max_diff
    if labelled == compared:
        result.accuracy = correct / compared
        result.keras_accuracy = keras_correct / compared


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
    with _logs_hidden():
        interpreter = Interpreter(model_path=str(path), num_threads=num_threads)
        interpreter.allocate_tensors()
    return interpreter


class _Runner:
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
    runner = _Runner(litert_interpreter(path, num_threads))
    out = [runner(x) for x, _ in _batches(images, "images", batch_size=batch_size)]
    if not out:
        raise ValueError("There are no images to predict.")
    return np.concatenate(out)


__all__ = ["QUANTIZATIONS", "ExportResult", "export_litert", "litert_interpreter", "litert_predict"]
