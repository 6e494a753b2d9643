"""get_base_model, unfreeze, build_classifier and friends, on the kit's real weights."""

from __future__ import annotations

from types import SimpleNamespace

import keras
import numpy as np
import pytest

import tlhelpers as tl

from helpers import sample_images


@pytest.fixture(scope="module")
def base160():
    return tl.get_base_model("MobileNetV2", alpha=1.0, input_shape=(160, 160, 3))


def test_mobilenet_v2_base_is_frozen_and_headless(base160):
    assert len(base160.layers) == 154
    assert base160.output.shape == (None, 5, 5, 1280)
    assert base160.trainable is False
    assert base160.trainable_weights == []
    assert not any(layer.name == "predictions" for layer in base160.layers)


def test_alpha_defaults_to_keras_own_and_is_checked():
    default = tl.get_base_model("MobileNetV2", input_shape=(96, 96, 3))
    keras_default = keras.applications.MobileNetV2(input_shape=(96, 96, 3), include_top=False)
    assert default.name == keras_default.name == "mobilenetv2_1.00_96"
    assert all(np.array_equal(a, b) for a, b in zip(default.get_weights(), keras_default.get_weights()))
    slim = tl.get_base_model("MobileNetV2", alpha=0.35, input_shape=(96, 96, 3))
    assert slim.get_layer("Conv1").filters == 16  # 32 filters scaled by 0.35, rounded to 8
    assert slim.output.shape[-1] == 1280  # the last layer is never thinned
    v1 = tl.get_base_model("MobileNet", input_shape=(96, 96, 3), weights=None)
    assert v1.get_layer("conv1").filters == 32  # Keras' own default, 1.0
    with pytest.raises(ValueError, match=r"MobileNetV3Small has ImageNet weights for alpha in \[0.75, 1.0\], not 0.35"):
        tl.get_base_model("MobileNetV3Small", alpha=0.35, input_shape=(96, 96, 3))
    with pytest.raises(ValueError, match=r"alpha in \[0.25, 0.5, 0.75, 1.0\]"):
        tl.get_base_model("MobileNet", alpha=0.35, input_shape=(96, 96, 3))
    with pytest.raises(ValueError, match="ResNet50 has none"):
        tl.get_base_model("ResNet50", alpha=0.35, input_shape=(64, 64, 3), weights=None)
    assert tl.get_base_model("MobileNet", alpha=0.35, input_shape=(96, 96, 3), weights=None).get_layer("conv1").filters == 11


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
    """With an empty weights cache, Keras tries to download; that failure becomes our advice."""
    from keras.src.utils import file_utils

    tried = []

    def offline(url, *args, **kwargs):
        tried.append(url)
        raise OSError("network unreachable (simulated)")

    monkeypatch.setattr(file_utils.config, "keras_home", lambda: str(tmp_path))  # an empty cache
    monkeypatch.setattr(file_utils, "urlretrieve", offline)
    with pytest.raises(RuntimeError, match="tlhelpers.kit install") as err:
        tl.get_base_model("MobileNetV2", alpha=0.35, input_shape=(96, 96, 3), weights="imagenet")
    assert tried and tried[0].endswith("mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_96_no_top.h5")
    assert "could not be downloaded" in str(err.value) and "network unreachable (simulated)" in str(err.value)


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


@pytest.mark.parametrize("network", tl.available_networks())
def test_preprocessing_matches_keras_for_every_network(network):
    """For each network, tlhelpers' preprocessing layer equals the network's own
    ``keras.applications.<module>.preprocess_input`` on real photos."""
    import importlib

    images, _ = sample_images(2, size=(32, 32))
    module = importlib.import_module(getattr(keras.applications, network).__module__)
    expected = module.preprocess_input(images.copy())
    got = keras.ops.convert_to_numpy(tl.models.preprocessing_layer(network)(images))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-3)


def _small_input(network):
    if network.startswith("NASNet"):
        return (224, 224, 3) if network == "NASNetMobile" else (331, 331, 3)
    return (75, 75, 3)


def _one_network_per_family() -> list[str]:
    """The smallest network of each keras.applications module (one preprocess_input each)."""
    by_module: dict[str, list[str]] = {}
    for network in tl.available_networks():
        by_module.setdefault(getattr(keras.applications, network).__module__, []).append(network)
    smallest = {"convnext": "ConvNeXtTiny", "efficientnet": "EfficientNetB0", "efficientnet_v2": "EfficientNetV2B0"}
    smallest |= {"mobilenet_v3": "MobileNetV3Small", "nasnet": "NASNetMobile", "resnet": "ResNet50", "resnet_v2": "ResNet50V2"}
    return [smallest.get(module.rsplit(".", 1)[-1], sorted(names)[0]) for module, names in sorted(by_module.items())]


@pytest.mark.parametrize("network", tl.available_networks())
def test_every_network_is_recognised_from_the_name_keras_gives_it(network):
    """network_of() on a model named as the constructor names it by default (MobileNet and
    MobileNetV2 compute their names from alpha and size: the built models below cover them)."""
    import inspect

    default = inspect.signature(getattr(keras.applications, network)).parameters["name"].default
    if default is None:
        pytest.skip(f"{network} names its model from its alpha and input size")
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)], name=default)
    assert tl.models.network_of(model) == network


@pytest.mark.slow
@pytest.mark.parametrize("network", _one_network_per_family())
def test_build_classifier_preprocesses_like_keras_for_every_family(network):
    """A base built with keras.applications directly (random weights, small input), one
    network per family: build_classifier finds the network from the model's name and its
    pooled features equal the reference pipeline, Keras' preprocess_input then the base."""
    import importlib

    keras.utils.set_random_seed(0)
    shape = _small_input(network)
    base = getattr(keras.applications, network)(include_top=False, weights=None, input_shape=shape)
    base.trainable = False
    assert tl.models.network_of(base) == network or (network == "NASNetLarge" and tl.models.network_of(base) == "NASNetMobile")
    model = tl.build_classifier(base, 2)
    pooled = keras.Model(model.input, model.get_layer("pool").output)
    images, _ = sample_images(2, size=shape[:2])
    module = importlib.import_module(getattr(keras.applications, network).__module__)
    reference = keras.ops.convert_to_numpy(
        keras.ops.mean(base(module.preprocess_input(images.copy()), training=False), axis=(1, 2))
    )
    got = keras.ops.convert_to_numpy(pooled(images, training=False))
    scale = np.abs(reference).max() + 1e-6
    assert np.abs(got - reference).max() <= 1e-3 * scale, f"{network}: features differ from Keras' reference"


def _bn_layers(model):
    return [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]


def _fine_tune_step(base, train_all_bn: bool):
    model = tl.build_classifier(base, 2)
    if train_all_bn:
        base.trainable = True  # the naive recipe
    else:
        tl.unfreeze(base, 100)
    model.compile(keras.optimizers.SGD(0.01), "sparse_categorical_crossentropy")
    images, labels = sample_images(8, size=base.input_shape[1:3])
    before = [(bn.moving_mean.numpy().copy(), bn.moving_variance.numpy().copy()) for bn in _bn_layers(base)]
    weights_before = {layer.name: [w.numpy().copy() for w in layer.weights] for layer in base.layers}
    model.fit(images, labels, batch_size=8, epochs=1, verbose=0)
    return before, weights_before


def test_unfreeze_keeps_batchnorm_statistics_fixed():
    base = tl.get_base_model("MobileNetV2", input_shape=(96, 96, 3))
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


def test_naive_unfreezing_moves_batchnorm_statistics_a_momentum_step_at_a_time():
    """The mechanism unfreeze() avoids, in the form that happens on every Keras version: the
    whole base made trainable and called without ``training=False`` (as many tutorials
    do), so fit() runs its BatchNorm layers in training mode. Each step normalises with the
    batch's own statistics and moves every stored average a step of ``1 - momentum`` (0.1%
    for MobileNetV2's 0.999) towards them: a drift that grows with the number of steps,
    not a reset. (Keras up to 3.15 does this even through ``base(x, training=False)``,
    keras-team/keras#20285; 3.16 honours the argument. Notebook 3 measures the effect.)"""
    base = tl.get_base_model("MobileNetV2", input_shape=(96, 96, 3))
    inputs = keras.Input((96, 96, 3))
    preprocess = keras.layers.Rescaling(1 / 127.5, offset=-1)
    x = base(preprocess(inputs))  # no training=False
    outputs = keras.layers.Dense(2, activation="softmax")(keras.layers.GlobalAveragePooling2D()(x))
    model = keras.Model(inputs, outputs)
    base.trainable = True
    model.compile(keras.optimizers.SGD(0.01), "sparse_categorical_crossentropy")
    before = [bn.moving_mean.numpy().copy() for bn in _bn_layers(base)]
    images, labels = sample_images(8, size=(96, 96))
    first = base.get_layer("bn_Conv1")
    conv1 = keras.Model(base.input, base.get_layer("Conv1").output)(preprocess(images)).numpy()  # its input, before the step
    model.fit(images, labels, batch_size=8, epochs=1, verbose=0)
    moved = [not np.array_equal(bn.moving_mean.numpy(), mean) for bn, mean in zip(_bn_layers(base), before)]
    assert all(moved)
    momentum = first.momentum
    assert momentum == pytest.approx(0.999)
    expected = momentum * before[0] + (1 - momentum) * conv1.mean(axis=(0, 1, 2))
    np.testing.assert_allclose(first.moving_mean.numpy(), expected, rtol=1e-4, atol=1e-6)


def test_unfreeze_rejects_bad_positions(base160):
    with pytest.raises(ValueError, match="between 0 and 154"):
        tl.unfreeze(base160, 999)
    with pytest.raises(ValueError, match="no layer named"):
        tl.unfreeze(base160, "nope")
    index = [layer.name for layer in base160.layers].index("block_16_expand")
    assert tl.unfreeze(base160, "block_16_expand") == tl.unfreeze(base160, index)
    # the start of a name: the first layer of block 16, so that no block is cut in two
    assert tl.unfreeze(base160, "block_16") == tl.unfreeze(base160, index)
    assert not base160.get_layer("block_15_add").trainable and base160.get_layer("block_16_expand").trainable
    with pytest.raises(ValueError, match="no layer named 'block_99' or starting with it"):
        tl.unfreeze(base160, "block_99")
    base160.trainable = False


def test_build_classifier_refuses_what_it_would_ignore(base160):
    head = tl.build_classifier(base160, 3).get_layer("head")
    assert tl.build_classifier(base160, head=head).output.shape == (None, 3)
    assert tl.build_classifier(base160, 3, head=head).output.shape == (None, 3)
    with pytest.raises(ValueError, match="num_classes=2, but the head classifies into 3"):
        tl.build_classifier(base160, 2, head=head)
    with pytest.raises(ValueError, match="keeps its own dropout"):
        tl.build_classifier(base160, head=head, dropout=0.5)
    with pytest.raises(ValueError, match="Pass num_classes"):
        tl.build_classifier(base160)
    assert tl.build_classifier(base160, 2, dropout=0.5).get_layer("head").layers[1].rate == 0.5


def test_classifier_saves_and_reloads_in_safe_mode(base160, tmp_path):
    model = tl.build_classifier(base160, 2, augmentation=tl.augmentation_layers(seed=1))
    images, _ = sample_images(4)
    expected = model.predict(images, verbose=0)
    assert expected.shape == (4, 2)
    np.testing.assert_allclose(expected.sum(-1), 1, rtol=1e-5)
    model.save(tmp_path / "m.keras")
    reloaded = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True)
    np.testing.assert_allclose(reloaded.predict(images, verbose=0), expected, atol=1e-5)
    # MobileNetV2's preprocessing is a built-in layer: the file needs no tlhelpers to load
    assert isinstance(reloaded.get_layer("preprocess"), keras.layers.Rescaling)


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


def test_count_params():
    base = tl.get_base_model("MobileNetV2", alpha=0.35, input_shape=(96, 96, 3))
    assert tl.count_params(base) == (0, base.count_params())
    tl.unfreeze(base, 100)
    trainable, frozen = tl.count_params(base)
    expected = sum(
        int(np.prod(w.shape))
        for layer in base.layers[100:]
        if not isinstance(layer, keras.layers.BatchNormalization)
        for w in layer.weights
    )
    assert trainable == expected > 0
    assert trainable + frozen == base.count_params()


def test_images_per_second_times_the_runs_after_the_warm_up(monkeypatch):
    """One untraced call to build the graph and ``warmup`` untimed ones, then ``repeats``
    timed runs, whose median gives the rate: counted and timed with a fake clock, so that
    a busy machine cannot make the test fail."""
    import tensorflow as tf

    from tlhelpers import runtime

    calls = []

    class Count(keras.layers.Layer):
        def call(self, x):
            return tf.numpy_function(lambda t: calls.append(1) or t, [x], tf.float32, stateful=True)

        def compute_output_shape(self, shape):
            return shape

    inputs = keras.Input((8, 8, 3))
    model = keras.Model(inputs, Count()(inputs))
    ticks = iter(np.cumsum([0.0] + [0.5, 0.0] * 10))  # every timed run lasts 0.5 s on the fake clock
    monkeypatch.setattr(runtime, "time", SimpleNamespace(perf_counter=lambda: next(ticks)))
    rate = tl.images_per_second(model, batch_size=4, repeats=3, warmup=2)
    assert len(calls) == 1 + 2 + 3
    assert rate == pytest.approx(4 / 0.5)


@pytest.mark.parametrize("alpha", [1.0, 0.35])  # 0.35: official weights with real BatchNorm statistics
def test_folding_batchnorm_keeps_the_outputs_and_drops_the_layers(base160, alpha):
    base = base160 if alpha == 1.0 else tl.get_base_model("MobileNetV2", alpha=alpha, input_shape=(160, 160, 3))
    folded = tl.folding.fold_batchnorm(base)
    assert not any(isinstance(layer, keras.layers.BatchNormalization) for layer in folded.layers)
    images, _ = sample_images(8)
    x = keras.applications.mobilenet_v2.preprocess_input(images.copy())
    expected = base.predict(x, verbose=0)
    np.testing.assert_allclose(folded.predict(x, verbose=0), expected, atol=2e-3, rtol=1e-3)
    assert np.abs(folded.predict(x, verbose=0) - expected).max() < 1e-2 * np.abs(expected).max()
    assert base.get_layer("Conv1").use_bias is False  # the original is untouched
    dense = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    assert tl.folding.fold_batchnorm(dense) is dense  # nothing to fold


def test_folding_finds_the_pairs_of_a_base_already_inside_a_classifier():
    # Keras 3 gives every layer of a base a second node when a classifier calls it: the
    # pairs must be read from the base's own graph, or nothing is folded
    base = tl.get_base_model("MobileNetV2", alpha=0.35, input_shape=(96, 96, 3))
    before = len(tl.folding.fold_batchnorm(base).layers)
    tl.build_classifier(base, 2)
    folded = tl.folding.fold_batchnorm(base)
    assert len(folded.layers) == before
    assert not any(isinstance(layer, keras.layers.BatchNormalization) for layer in folded.layers)


def test_frozen_batchnorm_folded_for_training_gives_the_same_outputs_and_gradients():
    base = tl.get_base_model("MobileNetV2", alpha=0.35, input_shape=(96, 96, 3))  # real BatchNorm statistics
    tl.unfreeze(base, 100)
    folding = tl.folding.fold_frozen_batchnorm(base)
    assert not any(isinstance(layer, keras.layers.BatchNormalization) for layer in folding.layers)
    # the very same variables train, so training the folding model trains the base
    assert [id(v) for v in folding.trainable_variables] == [id(v) for v in base.trainable_variables]
    images, _ = sample_images(4)
    x = keras.applications.mobilenet_v2.preprocess_input(keras.ops.image.resize(images, (96, 96)).numpy())

    def outputs_and_gradients(model):
        import tensorflow as tf

        with tf.GradientTape() as tape:
            y = model(x, training=True)
            loss = keras.ops.mean(keras.ops.square(y))
        return y.numpy(), [g.numpy() for g in tape.gradient(loss, model.trainable_variables)]

    y, grads = outputs_and_gradients(base)
    y_folded, grads_folded = outputs_and_gradients(folding)
    np.testing.assert_allclose(y_folded, y, atol=1e-4 * np.abs(y).max())
    for g, g_folded in zip(grads, grads_folded):
        np.testing.assert_allclose(g_folded, g, atol=1e-3 * np.abs(g).max() + 1e-9)
    assert max(np.abs(g).max() for g in grads) > 0  # the gradients compared are not all zero
    # a BatchNorm layer that trains is left alone; a model with no frozen one comes back as is
    base.get_layer("Conv_1_bn").trainable = True
    assert any(layer.name == "Conv_1_bn" for layer in tl.folding.fold_frozen_batchnorm(base).layers)
    dense = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    assert tl.folding.fold_frozen_batchnorm(dense) is dense


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
