"""Grad-CAM (tlhelpers.explain): shapes and range, the written-out computation of
notebook 5, models built in other ways, a case whose answer is known, and errors.

The real-model tests use the sample photos and the kit's MobileNetV2 (alpha 1.0,
160 px) with a head trained on the sample's cached features, as notebook 5 does.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from tlhelpers.explain import grad_cam

from helpers import sample_images


@pytest.fixture(scope="module")
def classifier(trained):
    """(model, base, head, images, labels): the session's cats-vs-dogs classifier and 8 validation photos."""
    images, labels = sample_images(8)
    return trained.model, trained.base, trained.head, images, labels


def manual_grad_cam(model, base, head, images, classes):
    """Grad-CAM written out as notebook 5 does it: the base up to its last activation,
    then the classifier's pooling and the head's Dense layer (before its softmax)."""
    conv_model = keras.Model(base.inputs, base.get_layer("out_relu").output)
    dense = head.get_layer("predictions")
    x = tf.constant(images)
    with tf.GradientTape() as tape:
        conv = conv_model(model.get_layer("preprocess")(x), training=False)
        pooled = model.get_layer("pool")(conv)
        scores = keras.ops.matmul(pooled, dense.kernel) + dense.bias
        chosen = tf.gather(scores, classes, axis=1, batch_dims=1)
    grads = tape.gradient(chosen, conv)
    weights = tf.reduce_mean(grads, axis=(1, 2))
    cam = tf.nn.relu(tf.einsum("bhwc,bc->bhw", conv, weights))
    cam = tf.math.divide_no_nan(cam, tf.reduce_max(cam, axis=(1, 2), keepdims=True))
    return tf.image.resize(cam[..., None], images.shape[1:3])[..., 0].numpy()


def test_heat_maps_have_the_images_size_and_lie_in_0_1(classifier):
    model, _, _, images, _ = classifier
    before = model.predict(images, verbose=0)
    maps = grad_cam(model, images)
    assert maps.shape == (8, 160, 160) and maps.dtype == np.float32
    assert maps.min() >= 0.0 and maps.max() <= 1.0
    assert (maps.max(axis=(1, 2)) > 0.9).all()  # normalised per image (bilinear upsampling shaves a little off the peak)
    assert (maps.reshape(8, -1).std(axis=1) > 0.05).all()  # a map, not a flat field
    # the softmax switched off for the gradients is back on afterwards
    np.testing.assert_allclose(model.predict(images, verbose=0), before, atol=1e-6)
    np.testing.assert_allclose(before.sum(axis=1), 1.0, atol=1e-5)


def test_equals_the_written_out_computation(classifier):
    model, base, head, images, _ = classifier
    predicted = model.predict(images, verbose=0).argmax(axis=1)
    np.testing.assert_allclose(grad_cam(model, images), manual_grad_cam(model, base, head, images, predicted), atol=1e-5)
    other = 1 - predicted
    np.testing.assert_allclose(
        grad_cam(model, images, class_index=other), manual_grad_cam(model, base, head, images, other), atol=1e-5
    )
    # one int for every image, and batching, change nothing
    np.testing.assert_allclose(
        grad_cam(model, images[:3], class_index=1, batch_size=2),
        manual_grad_cam(model, base, head, images[:3], np.ones(3, int)),
        atol=1e-5,
    )


def test_the_keras_io_recipe_fails_on_a_nested_base(classifier):
    """Why grad_cam exists (tensorflow/tensorflow#44462): the conv layer is inside the base."""
    model, base, *_ = classifier
    with pytest.raises(ValueError, match="No such layer"):
        model.get_layer("out_relu")
    with pytest.raises(ValueError, match="not connected"):
        keras.Model(model.inputs, [base.get_layer("out_relu").output, model.output])


def test_same_maps_for_the_same_classifier_built_by_hand(classifier):
    """A keras.io-style functional model (preprocess_input as a function, Dropout, Dense)
    and a Sequential one, with the same base and head weights, give the same maps."""
    model, base, head, images, _ = classifier
    weights = head.get_layer("predictions").get_weights()

    inputs = keras.Input((160, 160, 3))
    x = keras.applications.mobilenet_v2.preprocess_input(inputs)
    x = base(x, training=False)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dropout(0.2)(x)
    outputs = keras.layers.Dense(2, activation="softmax")(x)
    functional = keras.Model(inputs, outputs)
    functional.layers[-1].set_weights(weights)

    sequential = keras.Sequential(
        [
            keras.Input((160, 160, 3)),
            keras.layers.Rescaling(1 / 127.5, offset=-1),
            base,
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(2, activation="softmax"),
        ]
    )
    sequential.layers[-1].set_weights(weights)

    expected = grad_cam(model, images)
    np.testing.assert_allclose(grad_cam(functional, images), expected, atol=1e-4)
    np.testing.assert_allclose(grad_cam(sequential, images), expected, atol=1e-4)


def tiny_classifier():
    """Two channels, each summed over 4 x 4 cells of a 16 x 16 image (a 4 x 4 feature map),
    pooled; class 0's score is channel 0, class 1's is channel 1."""
    inputs = keras.Input((16, 16, 2))
    cells = keras.layers.Conv2D(2, 4, strides=4, use_bias=False, name="cells")(inputs)
    base = keras.Model(inputs, keras.layers.ReLU(name="cells_relu")(cells), name="tiny_base")
    base.get_layer("cells").set_weights([np.einsum("hw,io->hwio", np.ones((4, 4)), np.eye(2)) / 16])
    image = keras.Input((16, 16, 2))
    x = keras.layers.GlobalAveragePooling2D()(base(image))
    outputs = keras.layers.Dense(2, activation="softmax", name="predictions")(x)
    model = keras.Model(image, outputs, name="tiny_classifier")
    model.get_layer("predictions").set_weights([np.eye(2), np.zeros(2)])
    return model


def test_the_map_peaks_where_the_evidence_is():
    """Channel 0 (class 0's evidence) is lit only in the top-left cell, channel 1 (class
    1's) only in the bottom row's third cell: each class's map lights up its own cell."""
    model = tiny_classifier()
    image = np.zeros((1, 16, 16, 2), "float32")
    image[0, 0:4, 0:4, 0] = 2.0
    image[0, 12:16, 8:12, 1] = 1.0
    assert model.predict(image, verbose=0).argmax() == 0
    for cls, (rows, cols) in {0: (slice(0, 4), slice(0, 4)), 1: (slice(12, 16), slice(8, 12))}.items():
        heat = grad_cam(model, image, class_index=cls, layer_name="cells_relu")[0]
        peak = np.unravel_index(heat.argmax(), heat.shape)
        assert rows.start <= peak[0] < rows.stop and cols.start <= peak[1] < cols.stop, (cls, peak)
        assert heat[rows, cols].mean() > 0.5
        far = np.ones_like(heat, bool)
        far[max(rows.start - 4, 0) : rows.stop + 4, max(cols.start - 4, 0) : cols.stop + 4] = False
        assert heat[far].max() == 0.0  # beyond the neighbouring cells, nothing
    np.testing.assert_array_equal(grad_cam(model, image, layer_name="cells_relu"), grad_cam(model, image, 0, "cells_relu"))


def test_nothing_for_a_class_without_evidence():
    model = tiny_classifier()
    image = np.zeros((1, 16, 16, 2), "float32")
    image[0, :4, :4, 0] = 1.0  # no channel-1 evidence anywhere
    np.testing.assert_array_equal(grad_cam(model, image, class_index=1, layer_name="cells_relu"), 0.0)


def test_errors_say_what_to_pass(classifier):
    model, _, head, images, _ = classifier
    with pytest.raises(ValueError, match=r"No layer named 'block_99'.*nested.*'out_relu'"):
        grad_cam(model, images, layer_name="block_99")
    with pytest.raises(ValueError, match="no nested base model.*convolutional layer"):
        grad_cam(head, np.zeros((2, 1280), "float32")[:, None, None, :], layer_name="out_relu")
    with pytest.raises(ValueError, match="not a \\(batch, height, width, channels\\) feature map"):
        grad_cam(model, images, layer_name="pool")
    with pytest.raises(ValueError, match="image\\[None\\]"):
        grad_cam(model, images[0])
    with pytest.raises(ValueError, match="between 0 and 1"):
        grad_cam(model, images, class_index=2)
    with pytest.raises(ValueError, match="one int per image"):
        grad_cam(model, images, class_index=[0, 1])
