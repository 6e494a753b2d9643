"""get_base_model, unfreeze, build_classifier and friends, on the kit's real weights."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from helpers import sample_images

import tlhelpers as tl


@pytest.fixture(scope="module")
def base160():
    return tl.get_base_model("MobileNetV2", alpha=1.0, input_shape=(160, 160, 3))


def test_mobilenet_v2_base_is_frozen_and_headless(base160):
    assert len(base160.layers) == 154
    assert base160.output.shape == (None, 5, 5, 1280)
    assert base160.trainable is False
    assert base160.trainable_weights == []
    assert not any(layer.name == "predictions" for layer in base160.layers)


def test_alpha_reaches_mobilenets_only():
    slim = tl.get_base_model("MobileNetV2", alpha=0.35, input_shape=(96, 96, 3))
    assert slim.get_layer("Conv1").filters == 16  # 32 filters scaled by 0.35, rounded to 8
    assert slim.output.shape[-1] == 1280  # the last layer is never thinned
    resnet = tl.get_base_model("ResNet50", alpha=0.35, input_shape=(64, 64, 3), weights=None)
    assert resnet.output.shape == (None, 2, 2, 2048)


def test_training_layer_cuts_the_model(base160):
    cut = tl.get_base_model("MobileNetV2", alpha=1.0, input_shape=(160, 160, 3), training_layer="block_13_expand_relu")
    assert cut.layers[-1].name == "block_13_expand_relu"
    assert cut.output.shape == (None, 10, 10, 576)
    assert cut.trainable is False


@pytest.mark.parametrize("n", [1, 3])
def test_pop_layers_drops_exactly_n_layers(base160, n):
    popped = tl.get_base_model("MobileNetV2", alpha=1.0, input_shape=(160, 160, 3), pop_layers=n)
    assert popped.layers[-1].name == base160.layers[-(n + 1)].name
    assert len(popped.layers) == len(base160.layers) - n


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match="Did you mean 'MobileNetV2'.*Valid names:.*ResNet50"):
        tl.get_base_model("mobilenetv2")
    with pytest.raises(ValueError, match="Unknown network 'NoSuchNet'.*EfficientNetB0"):
        tl.get_base_model("NoSuchNet")
    with pytest.raises(ValueError, match="no layer named 'nope'"):
        tl.get_base_model("MobileNetV2", alpha=1.0, input_shape=(96, 96, 3), training_layer="nope")
    with pytest.raises(ValueError, match="pop_layers"):
        tl.get_base_model("MobileNetV2", alpha=1.0, input_shape=(96, 96, 3), pop_layers=-1)
    with pytest.raises(ValueError, match="would remove every layer"):
        tl.get_base_model("MobileNetV2", alpha=1.0, input_shape=(96, 96, 3), pop_layers=500)


def test_missing_weights_offline_say_how_to_get_them(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    # keras reads KERAS_HOME when it is imported; point its cache at the empty folder directly
    monkeypatch.setattr("keras.src.utils.file_utils.config.keras_home", lambda: str(tmp_path), raising=False)
    monkeypatch.setattr("urllib.request.urlopen", _offline)
    monkeypatch.setattr("urllib.request.urlretrieve", _offline)
    with pytest.raises(RuntimeError, match="tlhelpers.kit install"):
        tl.get_base_model("MobileNetV2", alpha=0.35, input_shape=(96, 96, 3), weights="imagenet")


def _offline(*args, **kwargs):
    raise OSError("network unreachable (simulated)")


def test_full_imagenet_model_recognises_real_photos():
    """The kit's weights are real: the full MobileNetV2 calls sample cats cats and dogs dogs."""
    model = keras.applications.MobileNetV2(weights="imagenet", alpha=1.0, input_shape=(224, 224, 3))
    images, labels = sample_images(8, size=(224, 224))
    probs = model.predict(keras.applications.mobilenet_v2.preprocess_input(images), verbose=0)
    top5 = np.argsort(-probs, axis=-1)[:, :5]
    is_cat = ((top5 >= 281) & (top5 <= 293)).any(-1)  # domestic and wild cats
    is_dog = ((top5 >= 151) & (top5 <= 275)).any(-1)  # dog breeds
    assert is_cat[labels == 0].mean() >= 0.75 and is_dog[labels == 1].mean() >= 0.75
    assert not is_cat[labels == 1].all()


@pytest.mark.parametrize("mode", ["tf", "torch", "caffe"])
def test_preprocess_layer_matches_keras(mode):
    images, _ = sample_images(2)
    expected = keras.applications.imagenet_utils.preprocess_input(images.copy(), mode=mode)
    np.testing.assert_allclose(tl.ImagenetPreprocess(mode)(images), expected, rtol=1e-5, atol=1e-3)


def _bn_layers(model):
    return [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]


def _fine_tune_step(base, train_all_bn: bool):
    model = tl.build_classifier(base, 2)
    if train_all_bn:
        base.trainable = True  # the naive recipe
    else:
        tl.unfreeze(base, 100)
    model.compile(keras.optimizers.SGD(0.01), "sparse_categorical_crossentropy")
    images, labels = sample_images(8)
    before = [(bn.moving_mean.numpy().copy(), bn.moving_variance.numpy().copy()) for bn in _bn_layers(base)]
    weights_before = {layer.name: [w.numpy().copy() for w in layer.weights] for layer in base.layers}
    model.fit(images, labels, batch_size=8, epochs=1, verbose=0)
    return before, weights_before


def test_unfreeze_keeps_batchnorm_statistics_fixed():
    base = tl.get_base_model("MobileNetV2", alpha=1.0, input_shape=(160, 160, 3))
    trained = tl.unfreeze(base, 100)
    assert trained > 0
    assert all(not layer.trainable for layer in base.layers[:100])
    assert all(not bn.trainable for bn in _bn_layers(base))
    assert any(layer.trainable for layer in base.layers[100:])
    before, weights_before = _fine_tune_step(base, train_all_bn=False)
    for bn, (mean, var) in zip(_bn_layers(base), before):
        np.testing.assert_array_equal(bn.moving_mean.numpy(), mean)
        np.testing.assert_array_equal(bn.moving_variance.numpy(), var)
    changed = lambda layer: any(not np.array_equal(w.numpy(), o) for w, o in zip(layer.weights, weights_before[layer.name]))
    assert not any(changed(layer) for layer in base.layers[:100])
    assert any(changed(layer) for layer in base.layers[100:] if not isinstance(layer, keras.layers.BatchNormalization))


def test_naive_unfreezing_does_move_batchnorm_statistics():
    """The pitfall unfreeze() avoids is real in Keras 3: training=False does not protect BatchNorm."""
    base = tl.get_base_model("MobileNetV2", alpha=1.0, input_shape=(160, 160, 3))
    before, _ = _fine_tune_step(base, train_all_bn=True)
    moved = [not np.array_equal(bn.moving_mean.numpy(), mean) for bn, (mean, _) in zip(_bn_layers(base), before)]
    assert all(moved)


def test_unfreeze_rejects_bad_positions(base160):
    with pytest.raises(ValueError, match="between 0 and 154"):
        tl.unfreeze(base160, 999)
    with pytest.raises(ValueError, match="no layer named"):
        tl.unfreeze(base160, "nope")
    index = [layer.name for layer in base160.layers].index("block_16_expand")
    assert tl.unfreeze(base160, "block_16_expand") == tl.unfreeze(base160, index)
    base160.trainable = False


def test_classifier_saves_and_reloads_in_safe_mode(base160, tmp_path):
    model = tl.build_classifier(base160, 2, augmentation=tl.augmentation_layers(seed=1))
    images, _ = sample_images(4)
    expected = model.predict(images, verbose=0)
    assert expected.shape == (4, 2)
    np.testing.assert_allclose(expected.sum(-1), 1, rtol=1e-5)
    model.save(tmp_path / "m.keras")
    reloaded = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True)
    np.testing.assert_allclose(reloaded.predict(images, verbose=0), expected, atol=1e-5)


def test_set_seed_makes_training_repeatable():
    images, labels = sample_images(8, size=(96, 96))

    def run():
        tl.set_seed(7)
        base = tl.get_base_model("MobileNetV2", alpha=0.35, input_shape=(96, 96, 3))
        model = tl.build_classifier(base, 2, augmentation=tl.augmentation_layers(seed=7))
        model.compile("adam", "sparse_categorical_crossentropy")
        model.fit(images, labels, epochs=2, batch_size=4, verbose=0)
        return model.get_layer("head").get_weights()[0]

    np.testing.assert_array_equal(run(), run())


def test_count_params(base160):
    trainable, frozen = tl.count_params(base160)
    assert trainable == 0 and frozen == base160.count_params()


def test_images_per_second_is_measured(base160):
    slow = tl.images_per_second(base160, batch_size=4, repeats=2)
    small = tl.get_base_model("MobileNetV2", alpha=0.35, input_shape=(96, 96, 3))
    fast = tl.images_per_second(small, batch_size=4, repeats=2)
    assert 0 < slow < fast  # a thinner net on smaller images is faster


@pytest.mark.parametrize("alpha", [1.0, 0.35])  # 0.35: official weights with real BatchNorm statistics
def test_folding_batchnorm_keeps_the_outputs_and_drops_the_layers(base160, alpha):
    base = base160 if alpha == 1.0 else tl.get_base_model("MobileNetV2", alpha=alpha, input_shape=(160, 160, 3))
    folded = tl.models.fold_batchnorm(base)
    assert not any(isinstance(layer, keras.layers.BatchNormalization) for layer in folded.layers)
    images, _ = sample_images(8)
    x = keras.applications.mobilenet_v2.preprocess_input(images.copy())
    expected = base.predict(x, verbose=0)
    np.testing.assert_allclose(folded.predict(x, verbose=0), expected, atol=2e-3, rtol=1e-3)
    assert np.abs(folded.predict(x, verbose=0) - expected).max() < 1e-2 * np.abs(expected).max()
    assert base.get_layer("Conv1").use_bias is False  # the original is untouched
    dense = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    assert tl.models.fold_batchnorm(dense) is dense  # nothing to fold


def test_augmentation_repeats_with_the_same_seed():
    images, _ = sample_images(4, size=(64, 64))

    def augmented(seed):
        tl.set_seed(seed)
        layer = tl.augmentation_layers(seed=seed)
        return [keras.ops.convert_to_numpy(layer(images, training=True)) for _ in range(2)]

    first, again, other = augmented(1), augmented(1), augmented(2)
    np.testing.assert_array_equal(first[0], again[0])
    np.testing.assert_array_equal(first[1], again[1])
    assert not np.array_equal(first[0], first[1])  # a new variation on every call
    assert not np.array_equal(first[0], other[0])
    passthrough = keras.ops.convert_to_numpy(tl.augmentation_layers(seed=1)(images, training=False))
    np.testing.assert_array_equal(passthrough, images)  # inactive outside training
