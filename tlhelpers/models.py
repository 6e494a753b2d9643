"""Pre-trained bases, classification heads, and fine-tuning that keeps BatchNorm frozen."""

from __future__ import annotations

import functools
import importlib
import inspect
import urllib.error

import numpy as np

from . import core
from ._tf import keras

#: Width multipliers Keras publishes ImageNet weights for. Without an ``alpha`` the
#: network gets Keras' own default, 1.0.
_ALPHAS = {
    "MobileNet": (0.25, 0.5, 0.75, 1.0),
    "MobileNetV2": (0.35, 0.5, 0.75, 1.0, 1.3, 1.4),
    "MobileNetV3Small": (0.75, 1.0),
    "MobileNetV3Large": (0.75, 1.0),
}


@functools.cache
def _network_names() -> tuple[str, ...]:
    return tuple(
        sorted(
            name
            for name, obj in vars(keras.applications).items()
            if callable(obj) and name[0].isupper() and "include_top" in inspect.signature(obj).parameters
        )
    )


def available_networks() -> list[str]:
    """The architecture names ``keras.applications`` offers (``MobileNetV2``, ``ResNet50``, ...)."""
    return list(_network_names())


def get_base_model(
    network: str,
    alpha: float | None = None,
    input_shape: tuple[int, int, int] = (224, 224, 3),
    weights: str | None = "imagenet",
    training_layer: str | None = None,
    pop_layers: int = 0,
) -> keras.Model:
    """A frozen convolutional base from ``keras.applications``, without its classifier.

    Args:
        network: an architecture name, e.g. ``"MobileNetV2"``, ``"EfficientNetB0"``
            (see :func:`available_networks`).
        alpha: the width multiplier of the MobileNet variants (``None``: Keras'
            default, 1.0). With ImageNet weights it must be one Keras publishes
            weights for.
        input_shape: ``(height, width, channels)`` of the input images.
        weights: ``"imagenet"``, ``None`` (random initialisation) or a weights file.
        training_layer: cut the model at this named layer (it becomes the output).
        pop_layers: drop this many layers from the end: the output becomes
            ``layers[-(pop_layers + 1)]``.

    Returns:
        A ``keras.Model`` with ``include_top=False`` and ``trainable=False``.

    Raises:
        ValueError: for an unknown network, an alpha the network has no ImageNet
            weights for (or any alpha for a network without one), a layer name the
            model lacks, a bad ``pop_layers`` or both cuts at once; the message lists
            what is valid.
        RuntimeError: when ImageNet weights are not cached and cannot be downloaded.
    """
    networks = available_networks()
    if network not in networks:
        close = [n for n in networks if n.lower() == str(network).lower()]
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"Unknown network {network!r}.{hint} Valid names: {', '.join(networks)}.")
    if training_layer is not None and pop_layers:
        raise ValueError("Pass either training_layer or pop_layers, not both.")
    if not isinstance(pop_layers, int) or pop_layers < 0:
        raise ValueError(f"pop_layers must be a non-negative integer, got {pop_layers!r}.")
    kwargs = dict(input_shape=tuple(input_shape), include_top=False, weights=weights)
    if network in _ALPHAS and alpha is not None:
        valid = _ALPHAS[network]
        kwargs["alpha"] = alpha
        if weights == "imagenet" and alpha not in valid:
            raise ValueError(
                f"{network} has ImageNet weights for alpha in {list(valid)}, not {alpha!r}. "
                "Pick one of those, or pass weights=None for a randomly initialised model."
            )
    elif alpha is not None:
        raise ValueError(f"alpha is the width multiplier of MobileNet, MobileNetV2 and MobileNetV3; {network} has none.")
    try:
        model = getattr(keras.applications, network)(**kwargs)
    except Exception as err:  # Keras wraps download failures in a plain Exception
        download_failed = isinstance(err, (urllib.error.URLError, OSError)) or "URL fetch failure" in str(err)
        if weights == "imagenet" and download_failed:
            raise RuntimeError(
                f"Could not get the {network} ImageNet weights ({err}): they are not in Keras' cache "
                f"{core.keras_models_dir()} and could not be downloaded. " + core.offline_advice()
            ) from err
        raise

    if training_layer is not None:
        names = [layer.name for layer in model.layers]
        if training_layer not in names:
            raise ValueError(
                f"{network} has no layer named {training_layer!r}. Its layers run from {names[1]!r} to "
                f"{names[-1]!r}; list them all with [l.name for l in model.layers]."
            )
        model = keras.Model(model.inputs, model.get_layer(training_layer).output, name=f"{model.name}_to_{training_layer}")
    elif pop_layers:
        if pop_layers >= len(model.layers) - 1:
            raise ValueError(
                f"pop_layers={pop_layers} would remove every layer: {network} has {len(model.layers)} layers (input included)."
            )
        model = keras.Model(model.inputs, model.layers[-(pop_layers + 1)].output, name=f"{model.name}_pop{pop_layers}")
    model.trainable = False
    model.tlhelpers_network = network  # read by build_classifier and extract_features
    return model


@keras.saving.register_keras_serializable(package="tlhelpers")
class ImagenetPreprocess(keras.layers.Layer):
    """Caffe-style ImageNet preprocessing: RGB to BGR, then the ImageNet mean subtracted.

    What ``keras.applications.resnet50.preprocess_input`` (and VGG's) do, as a layer,
    so that a saved model carries it and reloads in Keras' safe mode. The other
    conventions are built-in Keras layers (see :func:`preprocessing_layer`).
    """

    def __init__(self, mode: str = "caffe", **kwargs):
        super().__init__(**kwargs)
        if mode != "caffe":
            raise ValueError(f"ImagenetPreprocess only does mode='caffe'; got {mode!r}.")
        self.mode = mode

    def call(self, inputs):
        x = keras.ops.cast(inputs, "float32")
        return keras.ops.flip(x, axis=-1) - keras.ops.array([103.939, 116.779, 123.68])

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}


_PROBE = np.array([[[[0.0, 127.5, 255.0], [12.0, 200.0, 31.0]]]], "float32")
_TORCH_MEAN = np.array([0.485, 0.456, 0.406]) * 255.0
_TORCH_STD = np.array([0.229, 0.224, 0.225]) * 255.0
_MODES = {
    "none": lambda x: x,
    "tf": lambda x: x / 127.5 - 1.0,
    "torch": lambda x: (x - _TORCH_MEAN) / _TORCH_STD,
    "caffe": lambda x: x[..., ::-1] - np.array([103.939, 116.779, 123.68]),
}


def preprocessing_mode(network: str) -> str:
    """How ``keras.applications.<network>`` expects its input pixels.

    Found by running the network's own ``preprocess_input`` (from its module in
    ``keras.applications``) on a few pixel values and comparing with the four
    conventions: ``"none"`` (the model rescales ``[0, 255]`` pixels itself, as
    EfficientNet, ConvNeXt and MobileNetV3 do), ``"tf"`` (to ``[-1, 1]``),
    ``"torch"`` (ImageNet mean and standard deviation) and ``"caffe"`` (BGR, mean
    subtracted).

    Raises:
        ValueError: for a name that is not a ``keras.applications`` network, or one
            whose preprocessing is none of the four.
    """
    constructor = getattr(keras.applications, network, None)
    if constructor is None or network not in available_networks():
        raise ValueError(f"Unknown network {network!r}. Valid names: {', '.join(available_networks())}.")
    reference = np.asarray(importlib.import_module(constructor.__module__).preprocess_input(_PROBE.copy()))
    for mode, fn in _MODES.items():
        if np.allclose(reference, fn(_PROBE.astype("float64")), atol=1e-4):
            return mode
    raise ValueError(f"{network}'s preprocess_input matches none of the known conventions; preprocess the images yourself.")


def preprocessing_layer(network: str) -> keras.layers.Layer:
    """The layer that prepares ``[0, 255]`` pixels for ``network``'s ImageNet weights.

    Built-in Keras layers where one exists (``Rescaling`` to ``[-1, 1]`` for the
    MobileNet, Inception, Xception and ResNetV2 families, ``Normalization`` for
    DenseNet, ``Identity`` for networks that rescale inside), so that a saved
    classifier reloads in plain Keras; :class:`ImagenetPreprocess` for ResNet and VGG.
    """
    mode = preprocessing_mode(network)
    if mode == "tf":
        return keras.layers.Rescaling(1.0 / 127.5, offset=-1.0, name="preprocess")
    if mode == "torch":
        return keras.layers.Normalization(mean=_TORCH_MEAN.tolist(), variance=(_TORCH_STD**2).tolist(), name="preprocess")
    if mode == "caffe":
        return ImagenetPreprocess("caffe", name="preprocess")
    return keras.layers.Identity(name="preprocess")


def augmentation_layers(seed: int | None = None, flip: bool = True, rotation: float = 0.1, zoom: float = 0.0) -> keras.Sequential:
    """Random horizontal flips and small rotations, active only while training."""
    layers = []
    if flip:
        layers.append(keras.layers.RandomFlip("horizontal", seed=seed))
    if rotation:
        layers.append(keras.layers.RandomRotation(rotation, seed=seed))
    if zoom:
        layers.append(keras.layers.RandomZoom(zoom, seed=seed))
    return keras.Sequential(layers, name="augmentation")


def classifier_head(feature_dim: int, num_classes: int, dropout: float = 0.2, name: str = "head") -> keras.Model:
    """A small classifier for pooled features: dropout and one softmax ``Dense`` layer.

    The same head trains on cached feature vectors (:mod:`tlhelpers.features`) and
    sits on top of the base in :func:`build_classifier`, so one trained on features
    drops onto the base unchanged.

    Returns:
        A ``keras.Model`` from ``(batch, feature_dim)`` to ``(batch, num_classes)``
        class probabilities.
    """
    inputs = keras.Input((feature_dim,), name="features")
    x = keras.layers.Dropout(dropout)(inputs) if dropout else inputs
    outputs = keras.layers.Dense(num_classes, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, outputs, name=name)


def build_classifier(
    base: keras.Model,
    num_classes: int | None = None,
    network: str | None = None,
    augmentation: keras.layers.Layer | None = None,
    dropout: float | None = None,
    head: keras.Model | None = None,
) -> keras.Model:
    """Put a pooled classification head on a frozen base.

    The model takes ``[0, 255]`` RGB images, augments them (training only),
    preprocesses them for ``network``, runs the base in inference mode, averages the
    feature map and classifies with :func:`classifier_head`, or with ``head``.

    Args:
        base: a model from :func:`get_base_model`.
        num_classes: number of classes (for a new head; with ``head``, if given, it
            must equal the head's).
        network: the base's ``keras.applications`` name, to pick the preprocessing
            (default: :func:`network_of`).
        augmentation: a layer applied to the images while training, e.g.
            :func:`augmentation_layers`; ``None`` for none.
        dropout: dropout rate before the last layer of a new head (default 0.2).
        head: an already trained head to reuse (from :func:`tlhelpers.train_head`);
            it keeps its own layers, dropout included.

    Returns:
        An uncompiled ``keras.Model`` whose output is class probabilities.

    Raises:
        ValueError: without ``num_classes`` or ``head``; with ``dropout`` and ``head``
            together; or when ``num_classes`` differs from the head's classes.
    """
    if head is None and num_classes is None:
        raise ValueError("Pass num_classes for a new head, or head= for a trained one.")
    if head is not None:
        if dropout is not None:
            raise ValueError("A trained head keeps its own dropout: pass dropout= only when build_classifier makes the head.")
        head_classes = head.output_shape[-1]
        if num_classes is not None and num_classes != head_classes:
            raise ValueError(f"num_classes={num_classes}, but the head classifies into {head_classes} classes.")
    network = network or network_of(base)
    inputs = keras.Input(base.input_shape[1:], name="image")
    x = augmentation(inputs) if augmentation is not None else inputs
    x = preprocessing_layer(network)(x)
    x = base(x, training=False)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    head = head or classifier_head(x.shape[-1], num_classes, 0.2 if dropout is None else dropout)
    return keras.Model(inputs, head(x), name=f"{base.name}_classifier")


def network_of(base: keras.Model) -> str:
    """The ``keras.applications`` constructor name a base was built with.

    Bases from :func:`get_base_model` record it; for others (built with
    ``keras.applications.MobileNetV2(...)`` directly) it is read from the model's
    name, matching the longest constructor name it starts with (``mobilenetv2_1.00_160``
    is ``MobileNetV2``, ``MobileNetV3Small`` is not ``MobileNet``).

    Raises:
        ValueError: when the name matches no network; pass ``network=`` then.
    """
    recorded = getattr(base, "tlhelpers_network", None)
    if recorded:
        return recorded
    name = "".join(c for c in base.name.lower() if c.isalnum())
    by_length = sorted(available_networks(), key=len, reverse=True)
    for network in by_length:
        if name.startswith(network.lower()):
            return network
    if name.startswith("nasnet"):  # both NASNet models are named "NASNet"
        return "NASNetMobile"
    raise ValueError(
        f"Cannot tell which keras.applications network {base.name!r} is; pass network='MobileNetV2' "
        "(or whichever it is) so that the images are preprocessed the way its weights expect."
    )


def unfreeze(base: keras.Model, fine_tune_at: int | str = 0) -> int:
    """Make the top of ``base`` trainable for fine-tuning, keeping BatchNorm frozen.

    Layers before ``fine_tune_at`` stay frozen; layers from it on become trainable,
    except every ``BatchNormalization`` layer, which stays frozen and so runs in
    inference mode however the base is called. A trainable BatchNorm layer would, in
    ``fit``, normalise each batch with that batch's own statistics and move its stored
    averages towards them; a base called as ``base(x)`` passes ``fit``'s
    ``training=True`` on, and on Keras 3 before 3.16 so does ``base(x, training=False)``
    (keras-team/keras#20285). Notebook 3 measures what that changes.

    Args:
        base: the pre-trained base (the model inside the classifier).
        fine_tune_at: index of the first layer to train; or a layer name, or the start
            of one (``"block_13"``: the first layer whose name starts with it), so that
            the cut falls where a block begins, as keras.io's EfficientNet example does.

    Returns:
        The number of layers whose weights will now train.

    Raises:
        ValueError: for an index out of range or a name no layer has or starts with.

    Remember to ``compile`` the model again (with a lower learning rate) afterwards.
    """
    layers = base.layers
    if isinstance(fine_tune_at, str):
        names = [layer.name for layer in layers]
        matches = [i for i, name in enumerate(names) if name == fine_tune_at] or [
            i for i, name in enumerate(names) if name.startswith(fine_tune_at)
        ]
        if not matches:
            raise ValueError(
                f"{base.name} has no layer named {fine_tune_at!r} or starting with it; "
                "list the names with [layer.name for layer in base.layers]."
            )
        fine_tune_at = matches[0]
    if not 0 <= fine_tune_at <= len(layers):
        raise ValueError(f"fine_tune_at must be between 0 and {len(layers)} (the number of layers), got {fine_tune_at}.")
    base.trainable = True
    trained = 0
    for i, layer in enumerate(layers):
        frozen = i < fine_tune_at or isinstance(layer, keras.layers.BatchNormalization)
        layer.trainable = not frozen
        trained += int(not frozen and bool(layer.weights))
    return trained


def count_params(model: keras.Model) -> tuple[int, int]:
    """``(trainable, non-trainable)`` parameter counts."""
    trainable = sum(int(keras.ops.size(w)) for w in model.trainable_weights)
    frozen = sum(int(keras.ops.size(w)) for w in model.non_trainable_weights)
    return trainable, frozen
