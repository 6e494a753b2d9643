"""Fine-tuning on cached activations: the cut, exactness, and that training reaches the classifier."""

from __future__ import annotations

import keras
import numpy as np
import pytest

import tlhelpers as tl
from tlhelpers.activations import ActivationCache, best_cut, crossing_tensors

from helpers import SAMPLE, fresh_classifier


@pytest.fixture(scope="module")
def classifier(trained):
    """A copy of the session's classifier, its base unfrozen from layer 100 (the tests train it)."""
    model, base = fresh_classifier(trained)
    tl.unfreeze(base, 100)
    return model, base, SAMPLE


def test_the_cut_moves_down_to_the_narrowest_block_boundary(classifier):
    _, base, _ = classifier
    # at layer 100 both block 11's expansion and the residual input of its add cross
    assert sorted(tuple(t.shape[1:]) for t in crossing_tensors(base, 100)) == [(10, 10, 96), (10, 10, 576)]
    cut = best_cut(base, 100)
    assert cut <= 100 and [tuple(t.shape[1:]) for t in crossing_tensors(base, cut)] == [(10, 10, 64)]


def test_top_on_cache_equals_the_full_model_and_training_reaches_it(classifier, tmp_path):
    model, base, sample = classifier
    cache = ActivationCache(model, 100, dtype="float32")
    # BatchNorm is computed inside the convolutions, in the bottom that fills the cache and the top that trains
    assert not any(isinstance(layer, keras.layers.BatchNormalization) for layer in cache.model.layers)
    val = cache.extract(sample / "validation")
    images = tl.load_image_dataset(sample / "validation", image_size=(160, 160), shuffle=False)
    assert val.files == images.file_paths and val.nbytes == 40 * 10 * 10 * 64 * 4
    np.testing.assert_allclose(cache.model.predict(val.dataset(), verbose=0), model.predict(images, verbose=0), atol=1e-4)

    train = cache.extract(sample / "train", augmentation=tl.augmentation_layers(seed=1), augment_passes=1, augment_seed=1)
    assert len(train.labels) == 2 * 80 and train.passes == 1
    assert cache._step().experimental_get_tracing_count() == 1  # both folders' plain passes ran one graph
    assert not np.array_equal(train.inputs[0][:80], train.inputs[0][80:])  # the augmented pass differs
    before = {layer.name: [w.numpy().copy() for w in layer.weights] for layer in base.layers}
    cache.model.compile(keras.optimizers.RMSprop(1e-5), "sparse_categorical_crossentropy", metrics=["accuracy"])
    ds, steps = train.training_dataset(16, seed=0)
    assert steps == 5 and train.num_images == 80
    assert ds.options().autotune.enabled is False and val.dataset().options().autotune.enabled is False
    seen = np.concatenate([y.numpy() for _, y in ds.take(2 * steps)])
    assert len(seen) == 160 and sorted(seen[:80]) == sorted(train.labels[:80])  # one pass of the images per epoch
    cache.model.fit(ds, steps_per_epoch=steps, epochs=1, verbose=0)
    moved = {
        n for n, ws in before.items() if any(not np.array_equal(w.numpy(), o) for w, o in zip(base.get_layer(n).weights, ws))
    }
    assert moved == {layer.name for layer in base.layers[100:] if layer.trainable_weights}

    # the tuned top is the classifier's: same predictions, and it saves and reloads as a normal model
    tuned = model.predict(images, verbose=0)
    np.testing.assert_allclose(cache.model.predict(val.dataset(), verbose=0), tuned, atol=1e-4)
    model.save(tmp_path / "tuned.keras")
    np.testing.assert_allclose(keras.saving.load_model(tmp_path / "tuned.keras").predict(images, verbose=0), tuned, atol=1e-5)

    half = ActivationCache(model, 100).extract(sample / "validation")  # float16 storage: half the bytes, close
    assert half.nbytes * 2 == val.nbytes
    np.testing.assert_allclose(cache.model.predict(half.dataset(), verbose=0), tuned, atol=1e-2)


def test_layers_below_the_cut_must_be_frozen(classifier):
    model, base, _ = classifier
    with pytest.raises(ValueError, match=r"tl.unfreeze\(base, 150\)"):
        ActivationCache(model, 150)  # layers 100-149 train: their outputs change, no cache can hold them
