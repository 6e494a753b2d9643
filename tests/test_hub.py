"""The TF Hub feature extractor as a Keras 3 layer, on the kit's cached SavedModel."""

from __future__ import annotations

import keras
import numpy as np
import pytest

import tlhelpers as tl
from tlhelpers import core, kit
from tlhelpers import hub as tlhub

from helpers import sample_images

HANDLE = kit.MOBILENET_V2_FEATURE_VECTOR
TFHUB_HANDLE = "https://tfhub.dev/google/imagenet/mobilenet_v2_100_224/feature_vector/5"


@pytest.fixture(scope="module")
def images():
    return sample_images(8, size=(224, 224))


@pytest.fixture(scope="module")
def frozen_extractor():
    """The notebooks' TF Hub model, loaded once for the tests that only read it."""
    return tl.hub_feature_extractor(HANDLE)


@pytest.fixture
def offline(monkeypatch):
    """No network: any download attempt (urllib, kagglehub, a raw socket) fails the test's call."""
    import socket

    import kagglehub

    def refuse(*args, **kwargs):
        raise OSError("network unreachable (simulated)")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr("urllib.request.urlopen", refuse)
    monkeypatch.setattr(kagglehub, "model_download", refuse)


@pytest.mark.parametrize("with_tensorflow_hub", [True, False], ids=["tensorflow_hub", "fallback"])
@pytest.mark.parametrize("handle", [HANDLE, TFHUB_HANDLE])
def test_handle_resolves_from_the_installed_cache_without_the_network(handle, with_tensorflow_hub, offline, monkeypatch):
    """The kit's cached models resolve with the network cut off, through tensorflow_hub's
    hub.resolve and through the package's own resolver (for runtimes where tensorflow_hub
    does not import); a handle that is not cached then fails, naming the offline kit."""
    hub = tlhub.tensorflow_hub()
    assert hub is not None  # a dependency: it imports here
    used = []
    if with_tensorflow_hub:
        real = hub.resolve
        monkeypatch.setattr(hub, "resolve", lambda h: used.append(h) or real(h))
    else:
        monkeypatch.setattr(tlhub, "tensorflow_hub", lambda: None)
    path = tlhub.resolve_handle(handle)
    assert path == str(core.hub_cache_dir() / kit.hub_handle_dirname(handle)) and used == (
        [handle] if with_tensorflow_hub else []
    )
    with pytest.raises(RuntimeError, match="tlhelpers.kit install"):
        tlhub.resolve_handle(handle.replace("mobilenet", "not-a-model"))


def test_features_match_the_keras_application(images, frozen_extractor):
    x, _ = images
    extractor = frozen_extractor
    assert extractor.output.shape == (None, 1280)
    reference = keras.applications.MobileNetV2(include_top=False, pooling="avg", alpha=1.0, input_shape=(224, 224, 3))
    expected = reference.predict(keras.applications.mobilenet_v2.preprocess_input(x.copy()), verbose=0)
    got = extractor.predict(x, verbose=0)
    np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-3)


def _train_in_sequential(trainable, images, extractor=None):
    x, y = images
    extractor = extractor or tl.hub_feature_extractor(HANDLE, trainable=trainable)
    model = keras.Sequential([extractor, keras.layers.Dense(2, activation="softmax")])
    model.compile(keras.optimizers.SGD(0.05), "sparse_categorical_crossentropy", metrics=["accuracy"])
    before = extractor.predict(x, verbose=0)
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    return model, extractor, before


def test_frozen_extractor_inside_sequential_trains_only_the_head(images, frozen_extractor):
    model, extractor, before = _train_in_sequential(False, images, frozen_extractor)
    assert extractor.trainable_weights == []
    assert len(model.trainable_weights) == 2
    np.testing.assert_array_equal(extractor.predict(images[0], verbose=0), before)


def test_trainable_extractor_really_fine_tunes(images):
    model, extractor, before = _train_in_sequential(True, images)
    layer = extractor.get_layer("hub_module")
    assert len(layer.trainable_weights) > 100
    assert not np.allclose(extractor.predict(images[0], verbose=0), before)


def test_saved_model_with_hub_layer_reloads(images, tmp_path, frozen_extractor):
    model, _, _ = _train_in_sequential(False, images, frozen_extractor)
    expected = model.predict(images[0], verbose=0)
    model.save(tmp_path / "hub.keras")
    reloaded = keras.saving.load_model(tmp_path / "hub.keras", safe_mode=True)
    np.testing.assert_allclose(reloaded.predict(images[0], verbose=0), expected, atol=1e-5)


def test_local_savedmodel_path_works(images):
    extractor = tl.hub_feature_extractor(tlhub.resolve_handle(HANDLE))
    assert extractor.predict(images[0][:2], verbose=0).shape == (2, 1280)


def test_unreachable_handle_says_how_to_fix_it(tmp_path, monkeypatch):
    monkeypatch.setenv("TFHUB_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(tlhub, "tensorflow_hub", lambda: None)  # the package's own download, through urllib
    monkeypatch.setattr("urllib.request.urlopen", _offline)
    with pytest.raises(RuntimeError, match="tfhub.dev sometimes refuses.*kaggle.*tlhelpers.kit install") as err:
        tl.hub_feature_extractor("https://tfhub.dev/google/imagenet/not_a_model/feature_vector/1")
    assert "network unreachable (simulated)" in str(err.value)


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


def _savedmodel_folder(folder):
    """A small real SavedModel: mean colour per image, shaped like a feature vector."""
    import tensorflow as tf

    class Mean(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)])
        def __call__(self, images):
            return tf.reduce_mean(images, axis=[1, 2])

    tf.saved_model.save(Mean(), str(folder))
    return folder


def test_tfhub_url_downloads_the_compressed_archive_into_the_cache(tmp_path, monkeypatch):
    """The fallback without tensorflow_hub: the ?tf-hub-format=compressed archive, extracted into TF Hub's cache layout."""
    import functools
    import http.server
    import tarfile
    import threading

    model = _savedmodel_folder(tmp_path / "model")
    served = tmp_path / "served"
    served.mkdir()
    with tarfile.open(served / "m", "w:gz") as tar:
        for item in model.iterdir():
            tar.add(item, arcname=item.name)
    requests = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            requests.append(self.path)
            self.path = self.path.split("?")[0]
            super().do_GET()

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(served)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        cache = tmp_path / "cache"
        monkeypatch.setenv("TFHUB_CACHE_DIR", str(cache))
        monkeypatch.setattr(tlhub, "tensorflow_hub", lambda: None)
        handle = f"http://127.0.0.1:{server.server_address[1]}/m"
        path = tlhub.resolve_handle(handle)
        assert path == str(cache / kit.hub_handle_dirname(handle)) and requests == ["/m?tf-hub-format=compressed"]
        assert tlhub.resolve_handle(handle) == path and len(requests) == 1  # the second time from the cache
        extractor = tl.hub_feature_extractor(handle, input_shape=(8, 8, 3))
        assert extractor.predict(np.full((1, 8, 8, 3), 255.0, "float32"), verbose=0).tolist() == [[1.0, 1.0, 1.0]]
    finally:
        server.shutdown()
        server.server_close()
    assert [p.name for p in cache.iterdir()] == [kit.hub_handle_dirname(handle)]  # no staging left behind


def test_kaggle_handle_resolves_through_kagglehub(tmp_path, monkeypatch):
    import kagglehub

    model = _savedmodel_folder(tmp_path / "kaggle_download")
    asked = []
    monkeypatch.setattr(kagglehub, "model_download", lambda path: asked.append(path) or str(model))
    monkeypatch.setattr(tlhub, "tensorflow_hub", lambda: None)
    monkeypatch.setenv("TFHUB_CACHE_DIR", str(tmp_path / "cache"))
    handle = "https://www.kaggle.com/models/someone/some-model/TensorFlow2/feature-vector/3"
    path = tlhub.resolve_handle(handle)
    assert asked == ["someone/some-model/TensorFlow2/feature-vector/3"]
    assert path == str(tmp_path / "cache" / kit.hub_handle_dirname(handle)) and (tmp_path / "cache").is_dir()
    assert (tmp_path / "cache" / kit.hub_handle_dirname(handle) / "saved_model.pb").exists()
