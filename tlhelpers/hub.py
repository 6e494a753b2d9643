"""TF Hub feature extractors as real Keras 3 layers.

``hub.KerasLayer`` is built on the legacy ``tf_keras`` package, and Keras 3 refuses
it: "Only instances of keras.Layer can be added to a Sequential model".
:class:`HubFeatureExtractor` loads the same TF2 SavedModel (what ``hub.load`` does) and
wraps it in a ``keras.layers.Layer`` whose weights *are* the SavedModel's variables,
so it can be frozen, fine-tuned, saved and reloaded like any other Keras layer.

Handles are resolved by the ``tensorflow_hub`` package (``hub.resolve``) into the TF
Hub cache the offline kit fills (:func:`tlhelpers.core.hub_cache_dir`). Where that
package does not import (its 0.16 release needs ``pkg_resources``, which Python 3.12+
environments without an older setuptools lack: tensorflow/hub#934), the module resolves
them itself, from the same cache or by downloading: Kaggle handles through
``kagglehub``, tfhub.dev handles as the compressed archive TF Hub serves.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from keras.src.saving import serialization_lib  # the safe-mode flag; Keras has no public getter

from . import core, datasets
from ._tf import keras, tf
from .kit import HUB_HANDLES, MOBILENET_V2_FEATURE_VECTOR

#: Handles a saved model may name and still reload in Keras' safe mode: the published
#: models this project uses (and the offline kit carries).
KNOWN_HANDLES = frozenset(HUB_HANDLES)

_KAGGLE_PREFIX = "https://www.kaggle.com/models/"


def tensorflow_hub():
    """The ``tensorflow_hub`` module, or ``None`` where it does not import (tensorflow/hub#934)."""
    try:
        import tensorflow_hub as hub
    except Exception:  # noqa: BLE001 (ImportError, or its own import of pkg_resources failing)
        return None
    return hub


def resolve_handle(handle: str) -> str:
    """A local SavedModel folder for a TF Hub or Kaggle model handle.

    A local folder is returned as is. A URL is resolved by ``tensorflow_hub``'s
    ``hub.resolve`` into the TF Hub cache :func:`tlhelpers.core.hub_cache_dir` (where
    the offline kit puts its models; nothing is downloaded when the model is there).
    Without the ``tensorflow_hub`` package the same cache is read, or the model
    downloaded into it: a Kaggle handle
    (``https://www.kaggle.com/models/OWNER/MODEL/FRAMEWORK/VARIATION/VERSION``) through
    ``kagglehub``, any other URL (``tfhub.dev``) as the compressed archive TF Hub serves.

    Raises:
        RuntimeError: when the handle is not cached and cannot be downloaded; the
            message says why and how to get it offline.
    """
    if os.path.isdir(handle):
        return handle
    hub = tensorflow_hub()
    cached = core.hub_cache_dir() / core.hub_handle_dirname(handle)
    try:
        if hub is not None:
            with core.hub_cache_set_to(core.hub_cache_dir()):
                return hub.resolve(handle)
        if not (cached / "saved_model.pb").exists():
            if handle.startswith(_KAGGLE_PREFIX):
                _download_kaggle(handle, cached)
            else:
                _download_compressed(handle, cached)
    except Exception as err:  # network, HTTP, credential and archive errors of many types
        hint = ""
        if "tfhub.dev" in handle:
            hint = (
                f" tfhub.dev sometimes refuses downloads (HTTP 403): the same models are on Kaggle, e.g. "
                f"{MOBILENET_V2_FEATURE_VECTOR!r}."
            )
        raise RuntimeError(
            f"Could not get the model {handle}: it is not in the cache {core.hub_cache_dir()} and downloading it "
            f"failed ({type(err).__name__}: {err}).{hint} " + core.offline_advice()
        ) from err
    return str(cached)


def _install_folder(source: Path, cached: Path) -> None:
    """Copy a SavedModel folder into the cache: staged beside it, then renamed into place."""
    if not (source / "saved_model.pb").exists():
        raise ValueError(f"{source} holds no saved_model.pb: not a TF2 SavedModel.")
    with core.staging_beside(cached) as work:
        shutil.copytree(source, work / "model")
        core.replace_folder(work / "model", cached)


def _download_kaggle(handle: str, cached: Path) -> None:
    import kagglehub

    path = handle.removeprefix(_KAGGLE_PREFIX).strip("/")
    _install_folder(Path(kagglehub.model_download(path)), cached)


def _download_compressed(handle: str, cached: Path) -> None:
    with core.staging_beside(cached) as work:
        archive = work / "model.tar.gz"
        separator = "&" if "?" in handle else "?"
        datasets.download_file(f"{handle}{separator}tf-hub-format=compressed", archive)
        _install_folder(datasets.safe_extract(archive, work / "extracted"), cached)


def _wrap_existing(variable: tf.Variable) -> keras.Variable:
    """A Keras variable backed by an existing ``tf.Variable`` (not a copy)."""
    wrapped = keras.Variable(
        initializer=variable.read_value(),
        trainable=variable.trainable,
        dtype=variable.dtype.name,
        name=variable.name.split(":")[0].replace("/", "_"),
    )
    # Keras' public constructor copies its initial value; point it at the
    # SavedModel's own variable so that training updates what the model computes with.
    wrapped._value = variable
    return wrapped


@keras.saving.register_keras_serializable(package="tlhelpers")
class HubFeatureExtractor(keras.layers.Layer):
    """A TF Hub image model as a Keras 3 layer.

    Args:
        handle: a TF Hub URL or a local SavedModel folder. The model must take
            float32 images in ``[0, 1]`` and return feature vectors (or logits).
        output_dim: the size of the output vector (1280 for MobileNetV2); found by a
            trial call when ``None``.
        trainable: whether the model's own weights train with the rest (fine-tuning).
    """

    def __init__(self, handle: str, output_dim: int | None = None, trainable: bool = False, **kwargs):
        super().__init__(trainable=trainable, **kwargs)
        self.handle = handle
        self._module = tf.saved_model.load(resolve_handle(handle))
        if not callable(self._module):
            raise ValueError(f"{handle} is not a callable TF2 SavedModel (a TF1 hub.Module cannot be used with Keras 3).")
        variables = list(getattr(self._module, "variables", []))
        self._hub_variables = [_wrap_existing(v) for v in variables]
        for wrapped, original in zip(self._hub_variables, variables):
            self._track_variable(wrapped)
            if wrapped.value is not original:  # pragma: no cover - guards against Keras internals changing
                raise RuntimeError(
                    "This Keras version copies wrapped variables: fine-tuning a TF Hub model would be silently lost."
                )
        self.output_dim = output_dim
        self._training_arg = _accepts_training(self._module)

    def build(self, input_shape):
        if self.output_dim is None:
            probe = tf.zeros([1, *[int(d) for d in input_shape[1:]]], tf.float32)
            self.output_dim = int(self._call_module(probe, False).shape[-1])
        self.built = True

    def _call_module(self, images, training):
        if self._training_arg:
            return self._module(images, training=training)
        return self._module(images)

    def call(self, inputs, training=False):
        # Only weights train when fine-tuning; the module's BatchNorm statistics stay fixed.
        return self._call_module(tf.cast(inputs, tf.float32), False)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.output_dim)

    def get_config(self):
        return {**super().get_config(), "handle": self.handle, "output_dim": self.output_dim}

    @classmethod
    def from_config(cls, config, safe_mode=None):
        """Rebuild the layer from a saved model's config, refusing unknown handles in safe mode.

        Loading a SavedModel runs its graph, which can do anything a TensorFlow program
        can. Like Keras' own ``TFSMLayer``, a saved model that names any other SavedModel
        is refused unless safe mode is off.
        """
        if safe_mode is None:
            safe_mode = serialization_lib.in_safe_mode()
        handle = config.get("handle")
        if safe_mode is not False and handle not in KNOWN_HANDLES:
            raise ValueError(
                f"This model contains a HubFeatureExtractor that loads the SavedModel {handle!r}, which is not one of "
                "the published TF Hub models tlhelpers knows. Loading a SavedModel runs its code, so Keras' safe mode "
                "refuses it. If you trust the file and that model, load it with "
                "keras.saving.load_model(path, safe_mode=False) or call keras.config.enable_unsafe_deserialization() first."
            )
        return cls(**config)


def _accepts_training(module) -> bool:
    try:
        module.__call__.get_concrete_function(tf.TensorSpec([None, None, None, 3], tf.float32), training=False)
        return True
    except (TypeError, ValueError, AttributeError):
        return False


def hub_feature_extractor(
    handle: str = MOBILENET_V2_FEATURE_VECTOR,
    input_shape: tuple[int, int, int] = (224, 224, 3),
    trainable: bool = False,
) -> keras.Model:
    """A TF Hub feature-vector model as a Keras 3 model taking ``[0, 255]`` images.

    The result can go straight into a ``keras.Sequential`` or a functional model:
    it rescales pixels to ``[0, 1]`` (what TF Hub image models expect) and returns
    the model's feature vectors.

    Args:
        handle: a TF Hub URL (from the cache when the offline kit is installed) or a
            local SavedModel folder.
        input_shape: the image shape; ``(224, 224, 3)`` for the MobileNetV2 models.
        trainable: let the TF Hub model's weights train (fine-tuning).

    Returns:
        A ``keras.Model`` from ``(batch, *input_shape)`` images to
        ``(batch, features)``.
    """
    inputs = keras.Input(tuple(input_shape), name="image")
    x = keras.layers.Rescaling(1.0 / 255, name="to_unit_range")(inputs)
    extractor = HubFeatureExtractor(handle, trainable=trainable, name="hub_module")
    outputs = extractor(x)
    return keras.Model(inputs, outputs, name="hub_feature_extractor")
