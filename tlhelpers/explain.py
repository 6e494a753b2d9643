"""Grad-CAM heat maps: which parts of an image a classifier's prediction rests on.

Grad-CAM (Selvaraju et al., 2017) weighs each channel of a convolutional layer's
activations by how much the class score rises when that channel rises (its gradient,
averaged over the image), adds the weighted channels up, keeps the positive part and
scales it to ``[0, 1]``.

The usual recipe builds ``keras.Model(model.inputs, [model.get_layer(conv).output,
model.output])``. That fails for a transfer-learning classifier, whose convolutional
layers live inside a nested base model (``get_layer`` finds no such layer, and the
base's own tensors are "not connected" to the outer inputs). :func:`grad_cam`
rebuilds the forward pass so that the base also hands out the chosen activation.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence

import numpy as np

from ._tf import keras, tf

_SQUASHING = ("softmax", "sigmoid")


def grad_cam(
    model: keras.Model,
    images,
    class_index: int | Sequence[int] | None = None,
    layer_name: str = "out_relu",
    batch_size: int = 32,
) -> np.ndarray:
    """Grad-CAM heat maps of ``model``'s class scores for a batch of images.

    Works for classifiers from :func:`tlhelpers.build_classifier` and for any
    functional or ``Sequential`` model, with the convolutional layer either in the
    model itself or inside a model nested in it (the base of a transfer-learning
    classifier), at any depth.

    The class score is taken before the output layer's softmax (or sigmoid): the
    activation of the model's last layer is set to linear while the gradients are
    computed and put back afterwards, as in the keras.io Grad-CAM example. A
    probability near 100% barely moves when the image changes, so its gradients
    vanish; the score before the softmax keeps them.

    Args:
        model: the classifier, taking the images as they are given here.
        images: a batch, ``(batch, height, width, channels)``, in the pixel range
            the model takes (``[0, 255]`` for tlhelpers' classifiers).
        class_index: the class whose score is explained: ``None`` for each image's
            predicted class, an ``int`` for the same class in every image, or one
            ``int`` per image.
        layer_name: the convolutional layer (or its activation) to explain with,
            found in ``model`` or in a model nested in it. The default is
            MobileNetV2's last activation; EfficientNet's is ``"top_activation"``,
            ResNet50's ``"conv5_block3_out"``.
        batch_size: images per gradient computation.

    Returns:
        A float32 array ``(batch, height, width)``: one map per image in ``[0, 1]``
        (1 where the class evidence is strongest; all zeros when nothing in the
        image counts for the class), at the layer's resolution and then resized
        bilinearly to the images' height and width, ready to lay over them.

    Raises:
        ValueError: when ``images`` is not a batch of images, when no layer named
            ``layer_name`` is found in the model or in the models nested in it (the
            message lists the last layers with a spatial output that could be
            passed instead), when that layer's output is not a
            ``(batch, height, width, channels)`` feature map, or when
            ``class_index`` does not fit the model's outputs.
    """
    images = np.asarray(images, dtype="float32")
    if images.ndim != 4:
        raise ValueError(
            f"images must be a batch of shape (batch, height, width, channels), got shape {images.shape}; "
            "for one image pass image[None]."
        )
    layer = _find_layer(model, layer_name)
    if layer is None:
        raise ValueError(_not_found_message(model, layer_name))
    if len(layer.output.shape) != 4:
        raise ValueError(
            f"Layer {layer_name!r} outputs shape {tuple(layer.output.shape)}, not a (batch, height, width, channels) "
            f"feature map. Pass layer_name= a convolutional layer or its activation: {_candidates(model)}."
        )
    gradient_model = _with_activation(model, layer_name)
    num_classes = int(gradient_model.outputs[1].shape[-1])
    classes = _class_indices(class_index, len(images), num_classes)

    maps = []
    with _linear_output(model):
        for start in range(0, len(images), batch_size):
            x = tf.constant(images[start : start + batch_size])
            with tf.GradientTape() as tape:
                activations, scores = gradient_model(x, training=False)
                chosen = classes[start : start + batch_size] if classes is not None else tf.argmax(scores, axis=-1)
                score = tf.gather(scores, tf.cast(chosen, tf.int32), axis=1, batch_dims=1)
            gradients = tape.gradient(score, activations)
            weights = tf.reduce_mean(gradients, axis=(1, 2))  # one weight per channel
            cam = tf.nn.relu(tf.einsum("bhwc,bc->bhw", activations, weights))
            cam = tf.math.divide_no_nan(cam, tf.reduce_max(cam, axis=(1, 2), keepdims=True))
            cam = tf.image.resize(cam[..., None], images.shape[1:3], method="bilinear")[..., 0]
            maps.append(cam.numpy())
    return np.clip(np.concatenate(maps), 0.0, 1.0).astype("float32")


def _class_indices(class_index, n: int, num_classes: int) -> np.ndarray | None:
    if class_index is None:
        return None
    classes = np.broadcast_to(np.asarray(class_index), (n,)) if np.ndim(class_index) == 0 else np.asarray(class_index)
    if classes.shape != (n,) or not np.issubdtype(classes.dtype, np.integer):
        raise ValueError(f"class_index must be None, one int, or one int per image ({n}); got {class_index!r}.")
    if classes.min() < 0 or classes.max() >= num_classes:
        raise ValueError(f"class_index must be between 0 and {num_classes - 1} (the model has {num_classes} outputs).")
    return classes


def _nested_models(model: keras.Model) -> list[keras.Model]:
    return [layer for layer in model.layers if isinstance(layer, keras.Model)]


def _find_layer(model: keras.Model, name: str):
    """The layer called ``name`` in ``model`` or in a model nested in it (depth first), or ``None``."""
    for layer in model.layers:
        if layer.name == name:
            return layer
    for inner in _nested_models(model):
        found = _find_layer(inner, name)
        if found is not None:
            return found
    return None


def _candidates(model: keras.Model, keep: int = 3) -> str:
    """The last few layers with a (batch, height, width, channels) output, in the innermost model that has any."""
    for inner in _nested_models(model):
        found = _candidates(inner, keep)
        if found:
            return found
    spatial = [layer.name for layer in model.layers if _is_spatial(layer) and not isinstance(layer, keras.Model)]
    return f"in {model.name!r}: {spatial[-keep:]}" if spatial else ""


def _is_spatial(layer) -> bool:
    try:
        return len(layer.output.shape) == 4
    except (AttributeError, ValueError):  # a layer called more than once, or never
        return False


def _not_found_message(model: keras.Model, name: str) -> str:
    nested = [m.name for m in _nested_models(model)]
    where = f"nor in the models nested in it ({', '.join(nested)})" if nested else "and it has no nested base model"
    candidates = _candidates(model)
    hint = (
        f" Pass layer_name= the name of the last convolutional layer or its activation, e.g. one of the last layers "
        f"with a spatial output {candidates}."
        if candidates
        else " Grad-CAM needs a convolutional layer: pass a model with one (or its base inside), and its name as layer_name=."
    )
    return f"No layer named {name!r} in model {model.name!r}, {where}.{hint}"


def _with_activation(model: keras.Model, name: str) -> keras.Model:
    """A model with the same inputs and weights as ``model`` and two outputs: layer ``name``'s activations and ``model``'s output.

    Where the layer is in ``model`` itself this is the usual two-output model. Where it
    is inside a nested model, that nested model is replaced, in a rebuilt copy of the
    forward pass sharing every layer, by its own two-output version, one level at a time.
    """
    if any(layer.name == name for layer in model.layers):
        return keras.Model(model.inputs, [model.get_layer(name).output, model.output], name=f"{model.name}_grad_cam")
    inner = next(m for m in _nested_models(model) if _find_layer(m, name) is not None)
    inner_two = _with_activation(inner, name)
    captured = []

    def call(layer, *args, **kwargs):
        if layer is inner:
            activations, output = inner_two(*args, **kwargs)
            captured.append(activations)
            return output
        return layer(*args, **kwargs)

    if isinstance(model, keras.Sequential):
        inputs = keras.Input(batch_shape=model.inputs[0].shape, dtype=model.inputs[0].dtype)
        x = inputs
        for layer in model.layers:
            x = call(layer, x)
        rebuilt = keras.Model(inputs, x)
    else:
        if "call_function" not in inspect.signature(keras.models.clone_model).parameters:
            raise RuntimeError(
                "grad_cam needs keras.models.clone_model(call_function=...): upgrade Keras (pip install -U keras)."
            )
        rebuilt = keras.models.clone_model(model, clone_function=lambda layer: layer, call_function=call)
    if len(captured) != 1:
        raise ValueError(f"{inner.name!r} is called {len(captured)} times in {model.name!r}; Grad-CAM needs exactly one call.")
    return keras.Model(rebuilt.inputs, [captured[0], rebuilt.outputs[0]], name=f"{model.name}_grad_cam")


class _linear_output:
    """Context: the model's final layer (inside nested models too) without its softmax or sigmoid."""

    def __init__(self, model: keras.Model):
        last = model.layers[-1]
        while isinstance(last, keras.Model):
            last = last.layers[-1]
        activation = getattr(last, "activation", None)
        self.layer = last if getattr(activation, "__name__", None) in _SQUASHING else None
        self.saved = activation

    def __enter__(self):
        if self.layer is not None:
            self.layer.activation = keras.activations.linear
        return self

    def __exit__(self, *exc):
        if self.layer is not None:
            self.layer.activation = self.saved
        return False


__all__ = ["grad_cam"]
