"""LiteRT (TensorFlow Lite) files from a Keras classifier, and running them.

:func:`export_litert` turns a classifier that takes ``[0, 255]`` images and returns
class probabilities (or the SavedModel ``model.export`` wrote for one) into a
``.tflite`` file for phones, browsers and small boards, optionally quantized, and
reports in an :class:`ExportResult` how closely the file agrees with the model (which
runs the file with :mod:`tlhelpers.litert`, the ``ai-edge-litert`` runtime).

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

from . import core
from ._stderr import CONVERTER_NOTICES, stderr_lines_dropped
from ._tf import keras, tf
from .litert import BatchRunner, image_batches, litert_interpreter

#: The quantization modes :func:`export_litert` offers.
QUANTIZATIONS = ("none", "dynamic", "int8")


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


def _calibration_images(data, image_shape, samples: int) -> np.ndarray:
    """Up to ``samples`` images for int8 calibration: the first ones of a ``tf.data``
    dataset (shuffle it, so that they cover every class), evenly spaced ones of an array."""
    parts, count = [], 0
    for x, _ in image_batches(data, "representative data", image_shape):
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
        with stderr_lines_dropped(CONVERTER_NOTICES):
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
            int32 biases, a real share of a file for a network with small depthwise
            filters such as MobileNetV2's. One scale per tensor saves those bytes, but
            one range must then fit every channel of a tensor, and channels whose
            weights differ by orders of magnitude lose precision: notebook 7 measures
            both on its classifier.

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
    runner = BatchRunner(litert_interpreter(result.path))
    agree = correct = keras_correct = labelled = compared = 0
    max_diff = 0.0
    for images, labels in image_batches(validation_data, "validation data", source.image_shape):
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


__all__ = ["QUANTIZATIONS", "ExportResult", "export_litert"]
