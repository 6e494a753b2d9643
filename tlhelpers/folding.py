"""BatchNorm folded into the convolution before it: the same numbers, faster.

In inference mode a BatchNormalization layer is a fixed per-channel scale and shift.
:func:`fold_batchnorm` merges it into the convolution that feeds it, which removes
about fifty memory-bound layers from MobileNetV2, for inference (feature extraction).
:func:`fold_frozen_batchnorm` does the same for training with BatchNorm frozen (the
top of a base during fine-tuning): the scale is applied to the convolution's own
kernel inside each step, so the same variables train with the same gradients.

Finding the convolution that feeds a BatchNorm layer reads Keras' graph internals (a
functional model's nodes), which is why this lives in a module of its own; a Keras
version that changes them makes both functions return the model unfolded, never a
wrong one (checked by the tests).
"""

from __future__ import annotations

from collections import Counter

from ._tf import keras


class _Passthrough(keras.layers.Layer):
    """Stands in for a BatchNormalization layer whose work was folded into a convolution."""

    def call(self, inputs, training=None, mask=None):
        return inputs

    def compute_output_shape(self, input_shape):
        return input_shape


def _batchnorm_pairs(model: keras.Model, frozen_only: bool = False) -> dict[str, keras.layers.Layer]:
    """Convolution name -> the BatchNormalization layer that alone reads its output, in ``model``'s graph.

    The graph is ``model``'s own nodes: a base that also runs inside a classifier has a
    second node per layer there, which must not hide a pair. Pairs with a layer used
    twice in ``model``, a convolution with an activation or groups, or a convolution
    whose output goes elsewhere too are left out; so is a trainable BatchNorm layer when
    ``frozen_only``. Returns no pairs when Keras' graph internals are not as expected.
    """
    try:
        nodes = [node for depth in model._nodes_by_depth.values() for node in depth]
        producers = {id(t): node for node in nodes for t in keras.tree.flatten(node.outputs)}
        readers = Counter(id(t) for node in nodes for t in node.arguments.keras_tensors)
    except AttributeError:
        return {}
    readers.update(id(t) for t in keras.tree.flatten(model.outputs))
    uses = Counter(id(node.operation) for node in nodes)
    pairs = {}
    for node in nodes:
        bn = node.operation
        if not isinstance(bn, keras.layers.BatchNormalization) or uses[id(bn)] != 1 or (frozen_only and bn.trainable):
            continue
        inputs = node.arguments.keras_tensors
        if len(inputs) != 1 or id(inputs[0]) not in producers or readers[id(inputs[0])] != 1:
            continue
        conv = producers[id(inputs[0])].operation
        if (
            isinstance(conv, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D))
            and uses[id(conv)] == 1
            and getattr(conv, "groups", 1) == 1
            and conv.activation in (None, keras.activations.linear)
        ):
            pairs[conv.name] = bn
    return pairs


def _folded_weights(conv: keras.layers.Layer, bn: keras.layers.Layer) -> tuple:
    """``(kernel, bias)`` with ``conv(x, kernel) + bias == bn(conv(x))`` in inference mode.

    Computed with ``keras.ops`` from the layers' variables, so that inside a training
    step the gradients reach the convolution's own kernel (and bias).
    """
    gamma = bn.gamma if bn.scale else 1.0
    beta = bn.beta if bn.center else 0.0
    scale = gamma * keras.ops.rsqrt(bn.moving_variance + bn.epsilon)
    bias = conv.bias if conv.use_bias else 0.0
    kernel = conv.kernel
    if isinstance(conv, keras.layers.DepthwiseConv2D):
        scale_shape = (1, 1, kernel.shape[2], kernel.shape[3])  # channels x depth multiplier
    else:
        scale_shape = (kernel.shape[-1],)
    return kernel * keras.ops.reshape(scale, scale_shape), beta + (bias - bn.moving_mean) * scale


def fold_batchnorm(model: keras.Model) -> keras.Model:
    """An inference-only copy of ``model`` with BatchNorm folded into the convolutions.

    In inference mode a BatchNormalization layer is a fixed per-channel scale and
    shift, which can be merged into the convolution before it: the copy computes the
    same outputs (to float32 rounding) with about fifty fewer memory-bound layers in
    MobileNetV2, so faster (``benchmarks/README.md`` measures how much). Use it only for
    inference (feature extraction); train the original.

    Returns:
        The folded copy, or ``model`` itself when it has nothing to fold.
    """
    pairs = _batchnorm_pairs(model)
    if not pairs:
        return model
    folded_bn = {bn.name for bn in pairs.values()}

    def clone(layer):
        if layer.name in folded_bn:
            return _Passthrough(name=layer.name)
        config = layer.get_config()
        if layer.name in pairs:
            config["use_bias"] = True
        return layer.__class__.from_config(config)

    copy = keras.models.clone_model(model, clone_function=clone)
    for layer in model.layers:
        if not layer.weights or layer.name in folded_bn:
            continue
        target = copy.get_layer(layer.name)
        if layer.name not in pairs:
            target.set_weights(layer.get_weights())
            continue
        target.set_weights([keras.ops.convert_to_numpy(w) for w in _folded_weights(layer, pairs[layer.name])])
    copy.trainable = False
    return copy


class _ConvWithFrozenBatchNorm(keras.layers.Layer):
    """A convolution and the frozen BatchNorm layer after it, computed as one convolution.

    Holds the two original layers and reads their variables at every call: the kernel
    is scaled per output channel by BatchNorm's fixed scale and the shift is added as a
    bias. The result equals ``bn(conv(x))`` in inference mode (to float rounding), and
    the gradients reach the same convolution kernel (and bias) as they would through
    the two layers, so training through this layer trains ``conv`` itself.
    """

    def __init__(self, conv: keras.layers.Layer, bn: keras.layers.Layer, **kwargs):
        super().__init__(name=f"{conv.name}_with_{bn.name}", **kwargs)
        self.conv, self.bn = conv, bn

    def call(self, inputs):
        conv = self.conv
        kernel, bias = _folded_weights(conv, self.bn)
        if isinstance(conv, keras.layers.DepthwiseConv2D):
            outputs = keras.ops.depthwise_conv(inputs, kernel, conv.strides, conv.padding, conv.data_format, conv.dilation_rate)
        else:
            outputs = keras.ops.conv(inputs, kernel, conv.strides, conv.padding, conv.data_format, conv.dilation_rate)
        if conv.data_format == "channels_first":
            bias = keras.ops.reshape(bias, (1, -1) + (1,) * (len(outputs.shape) - 2))
        return outputs + bias

    def compute_output_shape(self, input_shape):
        return self.conv.compute_output_shape(input_shape)


def fold_frozen_batchnorm(model: keras.Model) -> keras.Model:
    """A model that trains ``model``'s own variables, with each frozen BatchNorm layer
    computed inside the convolution before it.

    :func:`fold_batchnorm` makes a faster copy for inference; this does the same for
    training when BatchNorm stays frozen, as in fine-tuning (:func:`tlhelpers.unfreeze`).
    The returned model shares every layer with ``model`` except the folded pairs, which
    it computes with :class:`_ConvWithFrozenBatchNorm` from the very same variables:
    training it trains ``model`` (same gradients, to float rounding), one elementwise
    pass per BatchNorm layer fewer, forward and backward. Save ``model``, not the copy.

    Returns:
        The folding model, or ``model`` itself when it has no frozen BatchNorm to fold.
    """
    pairs = _batchnorm_pairs(model, frozen_only=True)
    if not pairs:
        return model
    folded_bn = {bn.name for bn in pairs.values()}

    def reuse(layer):
        if layer.name in pairs:
            return _ConvWithFrozenBatchNorm(layer, pairs[layer.name])
        return _Passthrough(name=layer.name) if layer.name in folded_bn else layer

    return keras.models.clone_model(model, clone_function=reuse)


__all__ = ["fold_batchnorm", "fold_frozen_batchnorm"]
