"""TensorFlow and Keras for the modules that need them, imported once and quietly.

Every module of the package that computes with TensorFlow starts with
``from ._tf import keras, tf``: the first such import brings TensorFlow in with its
C++ start-up lines ("oneDNN custom operations are on", "failed call to cuInit", ...)
kept out of the output, and the rest reuse it.

TensorFlow's C++ runtime writes those lines to file descriptor 2 while it is imported,
before any Python setting can reach it, and in Jupyter they land in the notebook as red
noise. So :func:`import_tensorflow_quietly` points descriptor 2 at ``/dev/null`` for
the import alone, and ``TF_CPP_MIN_LOG_LEVEL=2`` (set when the variable is unset) keeps
TensorFlow's info and warning lines out afterwards while its errors still show. Set
``TLHELPERS_TF_LOGS=1`` to keep every line.

In a Jupyter kernel, where ipykernel already passes descriptor 2 through a pipe into
the notebook, the lines of :data:`._stderr.HARMLESS_TENSORFLOW_LINES` (two error-level
lines TensorFlow 2.20 and 2.21 print although nothing is wrong, and the LiteRT converter's
notice after an int8 conversion) are dropped for the kernel's whole life; every other line,
errors included, still shows.
"""

from __future__ import annotations

import os
import sys
import warnings

from ._stderr import HARMLESS_TENSORFLOW_LINES, descriptor_2_to, drop_for_the_process
from .core import in_jupyter_kernel


def quiet_tensorflow_logs() -> None:
    """Ask TensorFlow's C++ runtime for errors only, before it is imported.

    Sets ``TF_CPP_MIN_LOG_LEVEL=2`` (errors and fatal messages; 3 would hide errors too)
    when the variable is unset and ``TLHELPERS_TF_LOGS`` is not set. Costs nothing and
    imports nothing: ``import tlhelpers`` calls it, so that a notebook's own
    ``import keras`` after it is quiet too.
    """
    if not os.environ.get("TLHELPERS_TF_LOGS"):
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def import_tensorflow_quietly() -> None:
    """Import TensorFlow and Keras with descriptor 2 silenced for the import alone.

    Also probes for GPUs inside the same window (the probe logs "failed call to cuInit"
    on machines without one). Does nothing visible when TensorFlow is already imported
    or ``TLHELPERS_TF_LOGS`` is set.
    """
    if "tensorflow" in sys.modules or os.environ.get("TLHELPERS_TF_LOGS"):
        return
    quiet_tensorflow_logs()
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        with descriptor_2_to(devnull):
            import keras  # noqa: F401
            import tensorflow as tf

            tf.config.list_physical_devices("GPU")
    finally:
        os.close(devnull)
    tf.get_logger().setLevel("ERROR")
    # Keras warns on every fit() over a tf.data pipeline that its default shuffle=True
    # is ignored; the package's pipelines shuffle themselves.
    warnings.filterwarnings("ignore", message="`shuffle=True` was passed", category=UserWarning)


import_tensorflow_quietly()
if in_jupyter_kernel() and not os.environ.get("TLHELPERS_TF_LOGS"):
    drop_for_the_process(HARMLESS_TENSORFLOW_LINES)

import keras  # noqa: E402  (after the quiet import above, which this module exists for)
import tensorflow as tf  # noqa: E402

__all__ = ["import_tensorflow_quietly", "keras", "quiet_tensorflow_logs", "tf"]
