"""Run-time utilities: reproducible runs, a fair images-per-second measurement, and which CPU kernels run."""

from __future__ import annotations

import os
import time

import numpy as np

from ._tf import keras, tf


def images_per_second(model: keras.Model, batch_size: int = 32, repeats: int = 5, warmup: int = 3) -> float:
    """How many images per second ``model`` processes in inference mode on this machine.

    Runs a compiled (graph-mode) forward pass on a random batch shaped like the
    model's input: once to build the graph, ``warmup`` more times untimed (the first
    runs of a new graph are slower while TensorFlow's CPU kernels set themselves up),
    then ``repeats`` timed times.

    Returns:
        Images per second, from the median of the timed runs.
    """
    batch = tf.random.uniform([batch_size, *model.input_shape[1:]], 0, 255)
    run = tf.function(lambda x: model(x, training=False))
    for _ in range(1 + warmup):
        run(batch).numpy()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run(batch).numpy()
        times.append(time.perf_counter() - start)
    return batch_size / float(np.median(times))


def set_seed(seed: int, deterministic_ops: bool | None = None) -> None:
    """Seed Python, NumPy and TensorFlow; optionally ask for deterministic kernels.

    With the same seed, two runs on the same CPU machine give the same data split,
    shuffling, augmentation, initial weights and so the same accuracy.

    Args:
        seed: the seed for every random generator.
        deterministic_ops: ask TensorFlow for deterministic kernels
            (``tf.config.experimental.enable_op_determinism``). ``None`` (the default)
            turns them on only when no GPU is visible: on a GPU some kernels have no
            deterministic version (TensorFlow then raises naming them) and cuDNN
            convolutions can run several times slower, so there a seeded run is
            repeatable only up to the GPU's own non-determinism. Pass ``True`` to
            insist, at that cost.
    """
    os.environ["PYTHONHASHSEED"] = str(seed)
    keras.utils.set_random_seed(seed)
    if deterministic_ops is None:
        deterministic_ops = not tf.config.list_physical_devices("GPU")
    if deterministic_ops:
        tf.config.experimental.enable_op_determinism()


def onednn_enabled() -> bool:
    """Whether the TensorFlow of this process runs its oneDNN CPU kernels (see :mod:`tlhelpers._cpu`)."""
    try:
        from tensorflow.python.util import _pywrap_util_port
    except ImportError:  # a TensorFlow build that moved it: say what the variable asked for
        return os.environ.get("TF_ENABLE_ONEDNN_OPTS") == "1"
    return bool(_pywrap_util_port.IsMklEnabled())


__all__ = ["images_per_second", "onednn_enabled", "set_seed"]
