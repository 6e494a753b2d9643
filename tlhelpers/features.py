"""Cached bottleneck features: run the frozen base once, train the head in seconds.

With a frozen base, the pooled feature vector of an image never changes, yet the
standard recipe recomputes it for every image on every epoch. :func:`extract_features`
computes the vectors once (with a progress bar), stores them on disk under a key made
of everything that changes them — the base's architecture and weights, the image
size, the preprocessing, the augmentation, and each file's path, size and modification
time — and reuses them across runs and notebooks. :func:`train_head` trains
:func:`tlhelpers.models.classifier_head` on them; that same head then goes onto the
base with ``build_classifier(base, ..., head=head)`` for prediction or fine-tuning.

Augmentation is not lost: ``augment_passes=k`` also stores ``k`` randomly augmented
versions of every training image, and the head trains on all of them. The
trade-off: the head sees ``k`` fixed variations per image instead of a new one every
epoch, and extraction costs ``k`` more passes (still once, not every epoch).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import weakref
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import core
from ._tf import keras, tf
from .decode import check_decoder
from .folding import fold_batchnorm
from .models import classifier_head, network_of, preprocessing_layer
from .passes import first_pass, run_step
from .scan import check_class_names

_EVAL_BATCH = 1024  # rows per validation batch in train_head (any size gives the same metrics)
_FORMAT_VERSION = 3  # the layout of a cache file and the meaning of its key; a new value forgets old files


@dataclass
class FeatureSet:
    """Pooled features of an image folder, in file order.

    Attributes:
        features: ``(n, dim)`` float32 feature vectors of the un-augmented images.
        labels: ``(n,)`` int class indices.
        class_names: the class names the labels index.
        files: the image files, in the order of the rows.
        augmented: ``(passes, n, dim)`` features of augmented copies (``passes`` may be 0).
        from_cache: whether the vectors were read from the cache.
        seconds: time spent extracting (0 for a cache hit), and ``images_per_second``
            through the base (including decoding) when extracted.
    """

    features: np.ndarray
    labels: np.ndarray
    class_names: list[str]
    files: list[str]
    augmented: np.ndarray
    from_cache: bool = False
    seconds: float = 0.0
    images_per_second: float = 0.0
    cache_file: Path | None = field(default=None, repr=False)

    def training_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """Features and labels of the original images and every augmented pass, stacked."""
        if not len(self.augmented):
            return self.features, self.labels
        feats = np.concatenate([self.features, *self.augmented])
        return feats, np.tile(self.labels, 1 + len(self.augmented))


def cache_dir() -> Path:
    """Where features are cached: ``$TLHELPERS_HOME/cache/features``."""
    return core.home() / "cache" / "features"


def weights_digest(model: keras.Model) -> str:
    """SHA-256 over a model's weight values (names, shapes and bytes)."""
    digest = hashlib.sha256()
    for weight in model.weights:
        value = np.ascontiguousarray(keras.ops.convert_to_numpy(weight))
        digest.update(f"{weight.path}:{value.shape}:{value.dtype}".encode())
        digest.update(value.tobytes())
    return digest.hexdigest()


def _files_fingerprint(files: list[Path]) -> list[list]:
    out = []
    for f in files:
        st = os.stat(f)
        out.append([str(f), st.st_size, st.st_mtime_ns])
    return out


def _augmentation_config(augmentation) -> object:
    """What the augmentation does (layer types and settings), not its build state or names."""
    if augmentation is None:
        return None
    layers = getattr(augmentation, "layers", None) or [augmentation]
    return [
        [type(layer).__name__, {k: v for k, v in layer.get_config().items() if k not in ("name", "trainable")}]
        for layer in layers
    ]


def feature_key(
    base: keras.Model,
    files: list[Path],
    image_size,
    network: str,
    augmentation=None,
    augment_passes: int = 0,
    seed: int | None = None,
    digest: str | None = None,
    decode: str = "keras",
    interpolation: str = "bilinear",
) -> str:
    """The cache key: a SHA-256 over everything that changes the feature vectors
    (``digest``: the base's :func:`weights_digest`, computed when not given)."""
    spec = {
        "decode": decode,
        "interpolation": interpolation,
        "version": _FORMAT_VERSION,
        "base": base.name,
        "input_shape": list(base.input_shape[1:]),
        "weights": digest or weights_digest(base),
        "image_size": list(image_size),
        "preprocess": keras.saving.serialize_keras_object(preprocessing_layer(network)),
        "augmentation": _augmentation_config(augmentation) if augment_passes else None,
        "augment_passes": augment_passes,
        "seed": seed if augment_passes else None,
        "files": _files_fingerprint(files),
    }
    return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()


def _arrays_checksum(arrays: dict[str, np.ndarray]) -> str:
    return hashlib.sha256(b"".join(np.ascontiguousarray(a).tobytes() for a in arrays.values())).hexdigest()


def _save(path: Path, fs: FeatureSet) -> None:
    arrays = {"features": fs.features, "labels": fs.labels, "augmented": fs.augmented}
    meta = json.dumps({"class_names": fs.class_names, "files": fs.files, "checksum": _arrays_checksum(arrays)})
    with core.atomic_path(path, suffix=".npz") as tmp:
        np.savez(tmp, meta=np.array(meta), **arrays)


def _load(path: Path) -> FeatureSet | None:
    """Read a cache file; ``None`` when it is missing or damaged in any way."""
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            arrays = {k: data[k] for k in ("features", "labels", "augmented")}
    except Exception:  # truncated zip, bad JSON, missing arrays: all mean "rebuild"
        return None
    if _arrays_checksum(arrays) != meta.get("checksum") or len(arrays["features"]) != len(meta.get("files", ())):
        return None
    return FeatureSet(class_names=meta["class_names"], files=meta["files"], from_cache=True, cache_file=path, **arrays)


def feature_model(base: keras.Model, network: str | None = None, fold: bool = True) -> keras.Model:
    """``[0, 255]`` images -> preprocessing -> frozen base (inference mode) -> pooled vector.

    With ``fold=True`` the base's BatchNorm layers are folded into its convolutions
    (:func:`tlhelpers.folding.fold_batchnorm`): same features, faster.
    """
    network = network or network_of(base)
    inputs = keras.Input(base.input_shape[1:])
    x = preprocessing_layer(network)(inputs)
    x = (fold_batchnorm(base) if fold else base)(x, training=False)
    if len(x.shape) == 4:
        x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, x, name=f"{base.name}_features")


_EXTRACTORS: dict[tuple, tuple] = {}


def _extractor(base: keras.Model, network: str, digest: str, augmentation=None):
    """The compiled feature function for ``base``, built once per base, weights,
    network and augmentation, and kept for the current base only.

    Folding BatchNorm and tracing the graph take seconds; extracting the training and
    the validation folder one after the other reuses them.
    """
    for stale in [k for k, v in _EXTRACTORS.items() if v[0]() is not base]:
        del _EXTRACTORS[stale]  # do not keep other bases' models alive
    model_key = (id(base), digest, network)
    if model_key not in _EXTRACTORS:
        _EXTRACTORS[model_key] = (weakref.ref(base), feature_model(base, network))
    model = _EXTRACTORS[model_key][1]
    step_key = (*model_key, id(augmentation))
    hit = _EXTRACTORS.get(step_key)
    if hit is not None and hit[2] is augmentation:
        return hit[1]

    @tf.function  # one trace: run_step pads the last batch to the others' size
    def step(images):
        if augmentation is not None:
            images = augmentation(images, training=True)
        return model(images, training=False)

    _EXTRACTORS[step_key] = (weakref.ref(base), step, augmentation)
    return step


def extract_features(
    base: keras.Model,
    data,
    image_size: tuple[int, int] | None = None,
    network: str | None = None,
    augmentation: keras.layers.Layer | None = None,
    augment_passes: int = 0,
    augment_seed: int = 0,
    batch_size: int = 32,
    cache: bool = True,
    verbose: bool = True,
    decode: str = "keras",
    interpolation: str = "bilinear",
) -> FeatureSet:
    """The pooled features of every usable image of a folder, or of a split, cached on disk.

    Args:
        base: a frozen base from :func:`tlhelpers.get_base_model` (or ``keras.applications``).
        data: an image folder (or a named dataset split, as in
            :func:`tlhelpers.load_image_dataset`), or a dataset from
            :func:`tlhelpers.load_image_dataset` or :func:`tlhelpers.load_splits`: then
            exactly its files (``file_paths``), split as it was split.
        image_size: ``(height, width)``; the base's input size by default.
        network: the architecture name for preprocessing (guessed from the base).
        augmentation: a layer applied to images in the augmented passes.
        augment_passes: how many augmented copies of each image to extract.
        augment_seed: seeds the augmented passes, so that they are reproducible.
        batch_size: images per batch through the base.
        cache: read and write the on-disk cache (:func:`cache_dir`).
        verbose: show a progress bar while extracting.
        decode, interpolation: how the images are read (:func:`tlhelpers.load_image_files`).

    Returns:
        A :class:`FeatureSet`; ``from_cache`` tells whether it was a cache hit.
    """
    if augment_passes and augmentation is None:
        raise ValueError("augment_passes needs an augmentation layer, e.g. tlhelpers.augmentation_layers().")
    check_decoder(decode)
    image_size = tuple(image_size or base.input_shape[1:3])
    network = network or network_of(base)
    digest = weights_digest(base)
    paths: dict[str, Path] = {}
    start = time.perf_counter()

    def stored(files, labels, class_names):
        key = feature_key(
            base, files, image_size, network, augmentation, augment_passes, augment_seed, digest, decode, interpolation
        )
        paths["cache"] = cache_dir() / f"{key}.npz"
        return _load(paths["cache"])

    run = first_pass(
        data,
        _extractor(base, network, digest),
        image_size,
        batch_size,
        decode,
        interpolation,
        reuse=stored if cache else None,
        desc="features",
        verbose=verbose,
    )
    if run.reused is not None:
        return run.reused
    passes = []
    if augment_passes:
        keras.utils.set_random_seed(augment_seed)
        step = _extractor(base, network, digest, augmentation)
        for i in range(augment_passes):
            desc = f"augmented pass {i + 1}/{augment_passes}"
            passes.append(run_step(step, run.images, batch_size, "float32", len(run.files), desc, verbose)[0][0])
    features = run.outputs[0]
    fs = FeatureSet(
        features=features,
        labels=run.labels,
        class_names=run.class_names,
        files=run.files,
        augmented=np.stack(passes) if passes else np.zeros((0, *features.shape), "float32"),
        seconds=time.perf_counter() - start,
        images_per_second=len(run.files) / run.seconds if run.seconds else 0.0,
        cache_file=paths.get("cache"),
    )
    if cache:
        _save(paths["cache"], fs)
    return fs


def train_head(
    train: FeatureSet,
    validation: FeatureSet | None = None,
    epochs: int = 10,
    batch_size: int = 32,
    learning_rate: float = 1e-3,
    dropout: float = 0.2,
    callbacks=None,
    verbose: int = 0,
    seed: int | None = None,
    steps_per_execution: int = 64,
) -> tuple[keras.Model, keras.callbacks.History]:
    """Train :func:`tlhelpers.models.classifier_head` on cached features.

    A head's training step is so small that Keras' per-step Python work is most of its
    time; ``steps_per_execution`` runs that many steps in one compiled call (the same
    updates, in less time), and validation runs in batches of 1,024 rows (the same
    metrics, fewer calls). Batch-level
    callbacks then see one call per group of steps; epoch-level ones are unaffected.

    Returns:
        ``(head, history)``: the trained head (put it on the base with
        ``build_classifier(base, num_classes, head=head)``) and its ``History``.
    """
    if validation is not None:
        check_class_names(train.class_names, validation.class_names)
    if seed is not None:
        keras.utils.set_random_seed(seed)
    x, y = train.training_arrays()
    head = classifier_head(x.shape[-1], len(train.class_names), dropout)
    head.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
        steps_per_execution=steps_per_execution,
    )
    val = (validation.features, validation.labels) if validation is not None else None
    history = head.fit(
        x,
        y,
        validation_data=val,
        epochs=epochs,
        batch_size=batch_size,
        validation_batch_size=_EVAL_BATCH,
        shuffle=True,
        callbacks=callbacks,
        verbose=verbose,
    )
    return head, history


__all__ = ["FeatureSet", "cache_dir", "extract_features", "feature_key", "feature_model", "train_head", "weights_digest"]
