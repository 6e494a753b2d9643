"""LiteRT export on a real classifier: the cats-vs-dogs model of the lessons, trained on
cached features of the bundled sample (80 training and 40 validation images).

The targets: the float32 file gives Keras' answer on every validation image with
probabilities within 1e-4; quantized files are under a third of its size (int8 within
32%, dynamic range within 30%) and cost at most one extra mistake (int8) or none
(dynamic range) on the 40 validation images.
"""

from __future__ import annotations

import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

import tlhelpers as tl
from tlhelpers import export
from tlhelpers.export import export_litert
from tlhelpers.litert import litert_interpreter, litert_predict

from helpers import SAMPLE


@pytest.fixture(scope="module")
def classifier(trained):
    """The session's classifier: MobileNetV2 1.0 at 160 px with a head trained on cached features of the sample."""
    return trained.base, trained.model


@pytest.fixture(scope="module")
def data():
    """The sample as the lessons load it: a shuffled training dataset, validation in a fixed order."""
    train = tl.load_image_dataset(SAMPLE / "train", image_size=(160, 160), batch_size=32, seed=0)
    val = tl.load_image_dataset(SAMPLE / "validation", image_size=(160, 160), batch_size=32, shuffle=False)
    images = np.concatenate([x.numpy() for x, _ in val])
    labels = np.concatenate([y.numpy() for _, y in val])
    return train, images, labels


@pytest.fixture(scope="module")
def exported(classifier, data, tmp_path_factory):
    """The three files, converted from the SavedModel ``model.export`` wrote (one export for
    three conversions), each compared with it on the validation images."""
    _, model = classifier
    train, images, labels = data
    folder = tmp_path_factory.mktemp("litert")
    saved = folder / "saved_model"
    model.export(saved, verbose=False)
    validation = (images, labels)
    return {
        "none": export_litert(saved, folder / "float32.tflite", validation_data=validation),
        "dynamic": export_litert(saved, folder / "dynamic.tflite", quantization="dynamic", validation_data=validation),
        "int8": export_litert(
            saved, folder / "int8.tflite", quantization="int8", representative_data=train, validation_data=validation
        ),
    }


def mistakes(accuracy: float, n: int = 40) -> int:
    return round((1 - accuracy) * n)


def test_float32_file_gives_keras_answers(exported, classifier, data):
    result = exported["none"]
    assert result.path.is_file() and result.size_bytes == result.path.stat().st_size
    assert result.compared == 40
    assert result.top1_agreement == 1.0
    assert result.max_abs_diff < 1e-4
    assert result.accuracy == result.keras_accuracy >= 0.85
    _, images, labels = data
    probabilities = litert_predict(result.path, images)
    assert probabilities.shape == (40, 2) and probabilities.dtype == np.float32
    keras_probabilities = classifier[1].predict(images, verbose=0)  # the Keras model itself, not its SavedModel
    assert np.array_equal(probabilities.argmax(-1), keras_probabilities.argmax(-1))
    assert np.abs(probabilities - keras_probabilities).max() < 1e-4
    # the same numbers whatever the batching, for one image, and from a tf.data dataset
    assert np.allclose(litert_predict(result.path, images, num_threads=1, batch_size=7), probabilities, atol=1e-6)
    assert np.allclose(litert_predict(result.path, images[3]), probabilities[3:4], atol=1e-6)
    dataset = tf.data.Dataset.from_tensor_slices((images, labels)).batch(16)
    assert np.allclose(litert_predict(result.path, dataset), probabilities, atol=1e-6)


def test_a_keras_model_is_exported_through_a_temporary_saved_model(out):
    """The route from a Keras model, end to end, on a small classifier (a 3-class softmax)."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((32, 32, 3)),
            keras.layers.Rescaling(1 / 127.5, offset=-1),
            keras.layers.Conv2D(8, 3, activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(3, activation="softmax"),
        ]
    )
    images = np.random.default_rng(0).uniform(0, 255, (10, 32, 32, 3)).astype("float32")
    result = export_litert(model, out / "small.tflite", validation_data=images)
    assert result.compared == 10 and result.top1_agreement == 1.0 and result.max_abs_diff < 1e-5
    assert result.accuracy is None  # no labels
    assert [p.name for p in out.iterdir()] == ["small.tflite"]  # no temporary file or SavedModel left
    assert np.allclose(litert_predict(result.path, images), model.predict(images, verbose=0), atol=1e-5)


def test_int8_file_is_small_fully_quantized_and_as_accurate(exported):
    result, float32 = exported["int8"], exported["none"]
    assert result.size_bytes <= 0.32 * float32.size_bytes
    assert mistakes(result.accuracy) <= mistakes(result.keras_accuracy) + 1
    assert result.top1_agreement >= 36 / 40  # the images it changes are near 50/50 ones
    interpreter = litert_interpreter(result.path)
    # float [0, 255] pixels in, float probabilities out, int8 everywhere in between
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    assert inp["dtype"] == out["dtype"] == np.float32
    tensors = interpreter.get_tensor_details()
    assert {t["index"] for t in tensors if t["dtype"] == np.float32} == {inp["index"], out["index"]}
    inner = [t for t in tensors if t["index"] not in (inp["index"], out["index"])]
    assert all(t["dtype"] == np.int8 for t in inner if len(t["shape"]) > 1)  # weights and activations
    assert all(t["dtype"] in (np.int8, np.int32) for t in inner)  # int32: biases and reduction axes


def _scale_bytes(path) -> int:
    """Bytes a file spends on quantization scales (float32) and zero points (int64)."""
    q = [t["quantization_parameters"] for t in litert_interpreter(path).get_tensor_details()]
    return sum(4 * p["scales"].size + 8 * p["zero_points"].size for p in q)


def test_one_scale_per_tensor_saves_the_per_channel_scales(exported, data, tmp_path):
    """per_channel=False: no tensor keeps more than one scale, and the file is smaller by
    about the bytes the per-channel scales and zero points took."""
    train, images, labels = data
    per_channel = exported["int8"]
    result = export_litert(
        exported["none"].path.parent / "saved_model",
        tmp_path / "int8_per_tensor.tflite",
        quantization="int8",
        representative_data=train,
        per_channel=False,
    )
    tensors = litert_interpreter(result.path).get_tensor_details()
    several = [t for t in tensors if t["quantization_parameters"]["scales"].size > 1]
    assert [tuple(t["shape"]) for t in several] == [(2, 1280)]  # only the head's dense weights: one scale per class
    saved = per_channel.size_bytes - result.size_bytes
    assert 0.9 * _scale_bytes(per_channel.path) < saved + _scale_bytes(result.path) < 1.1 * _scale_bytes(per_channel.path)
    assert result.size_bytes <= 0.27 * exported["none"].size_bytes
    with pytest.raises(ValueError, match="per_channel"):
        export_litert(exported["none"].path.parent / "saved_model", tmp_path / "x.tflite", per_channel=False)


def test_dynamic_range_file_is_small_and_as_accurate(exported):
    result, float32 = exported["dynamic"], exported["none"]
    assert result.size_bytes <= 0.30 * float32.size_bytes
    assert mistakes(result.accuracy) <= mistakes(result.keras_accuracy)
    assert result.top1_agreement == 1.0


@pytest.fixture
def out(tmp_path):
    """An empty folder to write into (tmp_path also holds the test's TLHELPERS_HOME)."""
    folder = tmp_path / "out"
    folder.mkdir()
    return folder


def test_int8_needs_representative_data(classifier, out):
    _, model = classifier
    with pytest.raises(ValueError, match="representative_data"):
        export_litert(model, out / "m.tflite", quantization="int8")
    with pytest.raises(ValueError, match="int8' only"):
        export_litert(model, out / "m.tflite", quantization="dynamic", representative_data=np.zeros((1, 160, 160, 3)))
    with pytest.raises(ValueError, match="quantization must be one of"):
        export_litert(model, out / "m.tflite", quantization="float16")
    with pytest.raises(ValueError, match="model takes"):  # calibration images of the wrong size
        export_litert(model, out / "m.tflite", quantization="int8", representative_data=np.zeros((4, 96, 96, 3)))
    assert not list(out.iterdir())


def test_bad_paths_are_refused(classifier, out):
    _, model = classifier
    with pytest.raises(ValueError, match="does not exist"):
        export_litert(model, out / "missing" / "m.tflite")
    (out / "folder.tflite").mkdir()
    with pytest.raises(ValueError, match="is a folder"):
        export_litert(model, out / "folder.tflite")
    with pytest.raises(ValueError, match=r"ends in \.tflite"):
        export_litert(model, out / "m.keras")
    assert [p.name for p in out.iterdir()] == ["folder.tflite"]


def test_models_that_are_not_classifiers_are_refused(classifier, out):
    """The rule: one image input; one (batch, classes >= 2) output whose rows are probabilities."""
    base, model = classifier
    features = keras.Model(model.inputs, model.get_layer("pool").output)  # (batch, 1280) pooled features
    logits = keras.Sequential([keras.Input((160, 160, 3)), keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(2)])
    inputs = keras.Input((160, 160, 3))
    two_outputs = keras.Model(inputs, [model(inputs), features(inputs)])
    sigmoid = keras.Sequential(
        [keras.Input((160, 160, 3)), keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(1, activation="sigmoid")]
    )
    cases = [
        (base, r"returns shape \(None, 5, 5, 1280\).*base without its head"),
        (features, "not probabilities"),
        (logits, "not probabilities"),
        (two_outputs, "2 outputs"),
        (sigmoid, "single output unit"),
    ]
    for bad, message in cases:
        with pytest.raises(ValueError, match=message) as info:
            export_litert(bad, out / "m.tflite")
        assert "model.export(folder)" in str(info.value)  # says what to do instead
    with pytest.raises(ValueError, match="not a SavedModel folder"):
        export_litert(out, out / "m.tflite")
    assert not list(out.iterdir())


def test_a_write_cut_short_keeps_the_old_file(classifier, out, monkeypatch):
    """The new file is written under another name and renamed into place: a write that
    stops half-way (a full disk, a killed process) leaves the old file whole."""
    _, model = classifier
    target = out / "m.tflite"
    target.write_bytes(b"previous")
    monkeypatch.setattr(export, "_export_saved_model", lambda model, folder: None)
    monkeypatch.setattr(export, "_convert", lambda *args: b"new flatbuffer " * 1000)

    def half_then_fail(self, data):
        with open(self, "wb") as fh:
            fh.write(data[: len(data) // 2])
        raise OSError("No space left on device")

    monkeypatch.setattr(Path, "write_bytes", half_then_fail)
    with pytest.raises(OSError, match="No space left"):
        export_litert(model, target)
    assert target.read_bytes() == b"previous" and [p.name for p in out.iterdir()] == ["m.tflite"]


def test_running_a_file_without_the_runtime_says_what_to_install(exported, monkeypatch):
    monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)
    with pytest.raises(ImportError, match=r'pip install "tlhelpers\[litert\]"'):
        litert_predict(exported["none"].path, np.zeros((1, 160, 160, 3), "float32"))


def test_missing_file_and_wrong_image_size(exported, out):
    with pytest.raises(FileNotFoundError, match="export_litert"):
        litert_predict(out / "none.tflite", np.zeros((1, 160, 160, 3), "float32"))
    with pytest.raises(ValueError, match=r"takes images shaped \(160, 160, 3\)"):
        litert_predict(exported["none"].path, np.zeros((2, 96, 96, 3), "float32"))
