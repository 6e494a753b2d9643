"""The TF Hub feature extractor as a Keras 3 layer, on the kit's cached SavedModel."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from helpers import sample_images

import tlhelpers as tl
from tlhelpers import hub as tlhub
from tlhelpers import kit

HANDLE = tlhub.MOBILENET_V2_FEATURE_VECTOR


@pytest.fixture(scope="module")
def images():
    return sample_images(8, size=(224, 224))


def test_handle_resolves_from_the_installed_cache():
    path = tlhub.resolve_handle(HANDLE)
    assert path.endswith(kit.hub_handle_dirname(HANDLE))


def test_features_match_the_keras_application(images):
    x, _ = images
    extractor = tl.hub_feature_extractor(HANDLE)
    assert extractor.output.shape == (None, 1280)
    reference = keras.applications.MobileNetV2(include_top=False, pooling="avg", alpha=1.0, input_shape=(224, 224, 3))
    expected = reference.predict(keras.applications.mobilenet_v2.preprocess_input(x.copy()), verbose=0)
    got = extractor.predict(x, verbose=0)
    np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-3)


def _train_in_sequential(trainable, images):
    x, y = images
    extractor = tl.hub_feature_extractor(HANDLE, trainable=trainable)
    model = keras.Sequential([extractor, keras.layers.Dense(2, activation="softmax")])
    model.compile(keras.optimizers.SGD(0.05), "sparse_categorical_crossentropy", metrics=["accuracy"])
    before = extractor.predict(x, verbose=0)
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    return model, extractor, before


def test_frozen_extractor_inside_sequential_trains_only_the_head(images):
    model, extractor, before = _train_in_sequential(False, images)
    assert extractor.trainable_weights == []
    assert len(model.trainable_weights) == 2
    np.testing.assert_array_equal(extractor.predict(images[0], verbose=0), before)


def test_trainable_extractor_really_fine_tunes(images):
    model, extractor, before = _train_in_sequential(True, images)
    layer = extractor.get_layer("hub_module")
    assert len(layer.trainable_weights) > 100
    assert not np.allclose(extractor.predict(images[0], verbose=0), before)


def test_saved_model_with_hub_layer_reloads(images, tmp_path):
    model, _, _ = _train_in_sequential(False, images)
    expected = model.predict(images[0], verbose=0)
    model.save(tmp_path / "hub.keras")
    reloaded = keras.saving.load_model(tmp_path / "hub.keras", safe_mode=True)
    np.testing.assert_allclose(reloaded.predict(images[0], verbose=0), expected, atol=1e-5)


def test_local_savedmodel_path_works(images):
    extractor = tl.hub_feature_extractor(tlhub.resolve_handle(HANDLE))
    assert extractor.predict(images[0][:2], verbose=0).shape == (2, 1280)


def test_unreachable_handle_says_how_to_fix_it(tmp_path, monkeypatch):
    monkeypatch.setenv("TFHUB_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr("urllib.request.urlopen", _offline)
    with pytest.raises(RuntimeError, match="tlhelpers.kit install"):
        tl.hub_feature_extractor("https://tfhub.dev/google/imagenet/not_a_model/feature_vector/1")


def _offline(*args, **kwargs):
    raise OSError("network unreachable (simulated)")


def _file_writing_savedmodel(folder, marker):
    """A SavedModel that behaves like a feature extractor and writes ``marker`` when called."""
    import tensorflow as tf

    class Evil(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)])
        def __call__(self, images):
            tf.io.write_file(str(marker), "pwned")
            return tf.reduce_mean(images, axis=[1, 2])

    tf.saved_model.save(Evil(), str(folder))
    return str(folder)


def test_safe_mode_refuses_a_model_that_names_another_savedmodel(tmp_path):
    marker = tmp_path / "written_by_the_savedmodel"
    handle = _file_writing_savedmodel(tmp_path / "evil", marker)
    model = keras.Sequential([keras.Input((8, 8, 3)), tlhub.HubFeatureExtractor(handle, name="hub_module")])
    model.save(tmp_path / "crafted.keras")
    marker.unlink()  # building the model above ran it once

    with pytest.raises(ValueError, match="safe_mode=False.*enable_unsafe_deserialization"):
        keras.saving.load_model(tmp_path / "crafted.keras", safe_mode=True)
    with pytest.raises(ValueError, match="not one of the published TF Hub models"):
        keras.saving.load_model(tmp_path / "crafted.keras")  # safe mode is Keras' default
    assert not marker.exists()

    reloaded = keras.saving.load_model(tmp_path / "crafted.keras", safe_mode=False)  # the user's explicit choice
    assert reloaded(np.ones((1, 8, 8, 3), "float32")).shape == (1, 3)
    assert marker.exists()
