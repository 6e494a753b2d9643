"""Fine-tuning on cached activations: run the frozen bottom of the base once.

When fine-tuning from layer ``fine_tune_at`` with BatchNorm in inference mode, every
layer below the cut is a fixed function of the input image, yet the classic recipe
recomputes it for every image on every epoch — most of the network's work at the
highest resolutions. :class:`ActivationCache` splits the base at a cut at or below
``fine_tune_at`` (where the fewest values cross it: MobileNetV2's residual
connections can make several tensors cross a cut, so the cut moves down to the
nearest narrow block boundary, and the few frozen layers in between stay in the
top), computes the tensors that cross it once per image (plus ``k`` augmented
passes, as :func:`tlhelpers.extract_features` does), stores them compactly, and
gives a model from those tensors to class probabilities that trains the full
classifier's own variables (BatchNorm, frozen, is computed inside the convolutions
there too: fewer passes over the activations, the same gradients). Training it trains
the classifier: the tuned top is already in the full model, which predicts the same
(to float rounding) and saves as usual.

What is given up: augmentation is limited to the ``k`` cached variations of each
image instead of a fresh one every epoch.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from ._tf import keras, tf
from .decode import check_decoder, parallel_calls, without_autotune
from .folding import fold_batchnorm, fold_frozen_batchnorm
from .models import network_of, preprocessing_layer
from .passes import first_pass, run_step


@dataclass
class ActivationSet:
    """The cached tensors crossing the cut, for the images of a folder, in file order.

    Attributes:
        inputs: one array per tensor crossing the cut, ``(n * (1 + passes), ...)``: the
            un-augmented images first, then each augmented pass.
        labels: ``(n * (1 + passes),)`` class indices matching ``inputs``.
        class_names: the class names the labels index.
        files: the image files (the un-augmented rows' order).
        passes: how many augmented passes follow the un-augmented rows.
        seconds: the time the extraction took.
    """

    inputs: list[np.ndarray]
    labels: np.ndarray
    class_names: list[str]
    files: list[str]
    passes: int
    seconds: float

    @property
    def nbytes(self) -> int:
        """Bytes the cached tensors take in memory."""
        return sum(a.nbytes for a in self.inputs)

    @property
    def num_images(self) -> int:
        """How many images (rows of one pass)."""
        return len(self.labels) // (1 + self.passes)

    def dataset(self, batch_size: int = 32) -> tf.data.Dataset:
        """Every row once, in order, as ``(tensors, labels)`` batches: for ``evaluate``,
        ``predict`` or ``validation_data``."""
        return self._batches(tf.data.Dataset.range(len(self.labels)), batch_size)

    def training_dataset(self, batch_size: int = 32, seed: int | None = None) -> tuple[tf.data.Dataset, int]:
        """Endless shuffled batches, one pass of the images per epoch, cycling through the
        un-augmented rows and each cached augmented pass.

        Returns:
            ``(dataset, steps_per_epoch)``: pass both to ``fit`` (``steps_per_epoch=``), so
            that an epoch sees each image once, as with images on disk.
        """
        n, passes = self.num_images, 1 + self.passes
        order = tf.data.Dataset.range(passes).repeat()
        order = order.flat_map(
            lambda p: tf.data.Dataset.from_tensor_slices(tf.random.shuffle(tf.range(n, dtype=tf.int64), seed=seed) + p * n)
        )
        return self._batches(order, batch_size), math.ceil(n / batch_size)

    def _batches(self, rows: tf.data.Dataset, batch_size: int) -> tf.data.Dataset:
        tensors = [tf.constant(a) for a in self.inputs]
        labels = tf.constant(self.labels)

        def gather(index):
            return tuple(tf.cast(tf.gather(t, index), tf.float32) for t in tensors), tf.gather(labels, index)

        batches = rows.batch(batch_size).map(gather, num_parallel_calls=parallel_calls(), deterministic=True)
        return without_autotune(batches.prefetch(2))


def _producers(base: keras.Model) -> dict[int, int]:
    """Maps each layer's output tensor (by id) to the index of the layer that makes it."""
    out = {}
    for index, layer in enumerate(base.layers):
        for node in layer._inbound_nodes:
            for tensor in keras.tree.flatten(node.output_tensors):
                out[id(tensor)] = index
    return out


def crossing_tensors(base: keras.Model, cut: int) -> list:
    """The tensors made by layers before ``cut`` and read by layers from ``cut`` on (or
    returned by the base): what the top needs from the bottom."""
    producers = _producers(base)
    crossing, seen = [], set()
    readers = [(layer, node) for layer in base.layers[cut:] for node in layer._inbound_nodes]
    tensors = [t for _, node in readers for t in keras.tree.flatten(node.input_tensors)]
    tensors += keras.tree.flatten(base.outputs)
    for tensor in tensors:
        index = producers.get(id(tensor))
        if index is not None and index < cut and id(tensor) not in seen:
            seen.add(id(tensor))
            crossing.append(tensor)
    return crossing


def best_cut(base: keras.Model, fine_tune_at: int) -> int:
    """The cut at or below ``fine_tune_at`` (above the input layer) with the fewest values
    crossing it per image; among equals, the highest (least recomputation)."""
    if not 1 <= fine_tune_at < len(base.layers):
        raise ValueError(f"fine_tune_at must be between 1 and {len(base.layers) - 1}, got {fine_tune_at}.")
    best, best_size = fine_tune_at, math.inf
    for cut in range(fine_tune_at, 0, -1):
        size = sum(math.prod(int(d) for d in t.shape[1:]) for t in crossing_tensors(base, cut))
        if size < best_size:
            best, best_size = cut, size
    return best


def _find_base(model: keras.Model) -> keras.Model:
    nested = [layer for layer in model.layers if isinstance(layer, keras.Model) and len(layer.layers) > 20]
    if len(nested) != 1:
        raise ValueError("Pass base=: the classifier should hold exactly one nested base model (as tl.build_classifier makes).")
    return nested[0]


class ActivationCache:
    """Fine-tune the top of a classifier's base on cached activations.

    Args:
        model: a classifier from :func:`tlhelpers.build_classifier` (images -> optional
            augmentation -> preprocessing -> base -> ``pool`` -> ``head``).
        fine_tune_at: the first layer of the base to train; layers below it must be
            frozen and BatchNorm layers frozen (:func:`tlhelpers.unfreeze` does both).
        base: the base inside ``model`` (found automatically when there is one).
        dtype: how the activations are stored (``"float16"`` halves the memory).

    Attributes:
        cut: the base's layer index where the cache is taken (at or below ``fine_tune_at``).
        model: the trainable model from cached activations to class probabilities. It
            trains the classifier's own variables (its frozen BatchNorm layers computed
            inside the convolutions, :func:`tlhelpers.folding.fold_frozen_batchnorm`), so
            training it fine-tunes the classifier; save the classifier, not this model.
    """

    def __init__(self, model: keras.Model, fine_tune_at: int, base: keras.Model | None = None, dtype: str = "float16"):
        self.classifier = model
        self.base = base if base is not None else _find_base(model)
        frozen = [layer.name for layer in self.base.layers[:fine_tune_at] if layer.trainable_weights]
        if frozen:
            raise ValueError(
                f"Layers below fine_tune_at={fine_tune_at} must be frozen for their output to be cached, "
                f"but {frozen[:3]} train: call tl.unfreeze(base, {fine_tune_at}) first."
            )
        self.network = network_of(self.base)
        self.cut = best_cut(self.base, fine_tune_at)
        self.dtype = dtype
        crossing = crossing_tensors(self.base, self.cut)
        self._bottom = keras.Model(self.base.inputs, crossing, name="bottom")
        top = keras.Model(crossing, self.base.outputs[0], name="top")
        pooled = model.get_layer("pool")(top.output)
        on_activations = keras.Model(top.inputs, model.get_layer("head")(pooled), name=f"{model.name}_on_activations")
        # BatchNorm is frozen above the cut too: computing it inside the convolutions
        # trains the same variables with fewer passes over the activations.
        self.model = fold_frozen_batchnorm(on_activations)
        self._folded = None
        self._plain = None

    def _step(self, augmentation=None):
        """A compiled function from a batch of images to the cut's tensors.

        The un-augmented one is made once and kept: every folder's plain pass reuses its
        graph instead of tracing a new one.
        """
        if augmentation is None and self._plain is not None:
            return self._plain
        if self._folded is None:
            self._folded = fold_batchnorm(self._bottom)  # frozen: the same tensors, faster
        preprocess, bottom = preprocessing_layer(self.network), self._folded

        @tf.function  # one trace: run_step pads the last batch to the others' size
        @tf.autograph.experimental.do_not_convert  # plain Python control flow only
        def step(images):
            if augmentation is not None:
                images = augmentation(images, training=True)
            out = bottom(preprocess(images), training=False)
            return out if isinstance(out, (list, tuple)) else [out]

        if augmentation is None:
            self._plain = step
        return step

    def extract(
        self,
        data,
        augmentation: keras.layers.Layer | None = None,
        augment_passes: int = 0,
        augment_seed: int = 0,
        batch_size: int = 32,
        decode: str = "keras",
        interpolation: str = "bilinear",
    ) -> ActivationSet:
        """The cut's tensors for every usable image of a folder, or of a split.

        Args:
            data: an image folder (or a named dataset split), or a dataset from
                :func:`tlhelpers.load_image_dataset` / :func:`tlhelpers.load_splits`.
            augmentation: applied to the images of the augmented passes.
            augment_passes: how many augmented copies of each image to cache.
            augment_seed: seeds the augmented passes.
            batch_size: images per batch through the bottom.
            decode, interpolation: how the images are read (:func:`tlhelpers.load_image_files`).

        Returns:
            An :class:`ActivationSet` (its ``training_dataset()`` feeds ``self.model.fit``,
            its ``dataset()`` ``evaluate`` and ``validation_data``).
        """
        if augment_passes and augmentation is None:
            raise ValueError("augment_passes needs an augmentation layer, e.g. tlhelpers.augmentation_layers().")
        check_decoder(decode)
        start = time.perf_counter()
        size = tuple(self.base.input_shape[1:3])
        run = first_pass(data, self._step(), size, batch_size, decode, interpolation, dtype=self.dtype)
        passes = [run.outputs]
        if augment_passes:
            keras.utils.set_random_seed(augment_seed)
            augmented = self._step(augmentation)
            passes += [run_step(augmented, run.images, batch_size, self.dtype)[0] for _ in range(augment_passes)]
        inputs = [np.concatenate([p[i] for p in passes]) for i in range(len(passes[0]))]
        return ActivationSet(
            inputs=inputs,
            labels=np.tile(run.labels, 1 + augment_passes),
            class_names=run.class_names,
            files=run.files,
            passes=augment_passes,
            seconds=time.perf_counter() - start,
        )


__all__ = ["ActivationCache", "ActivationSet", "best_cut", "crossing_tensors"]
