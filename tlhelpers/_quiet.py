"""Import TensorFlow without its start-up log lines.

TensorFlow's C++ runtime prints a few lines ("oneDNN custom operations are on",
"Could not find cuda drivers", ...) to file descriptor 2 while it is imported,
before any Python logging setting can reach it. In Jupyter those lines land in the
notebook as red noise. This module imports TensorFlow once with descriptor 2
pointed at ``/dev/null`` and lowers TensorFlow's own log level for the rest of the
session. Set ``TLHELPERS_TF_LOGS=1`` to keep every log line.
"""

from __future__ import annotations

import contextlib
import os
import sys
import warnings
from collections.abc import Iterator


@contextlib.contextmanager
def _stderr_silenced() -> Iterator[None]:
    """Point file descriptor 2 at /dev/null for the duration of the block."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real descriptor (rare embedded interpreters)
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def quiet_tensorflow_logs() -> None:
    """Ask TensorFlow's C++ runtime for errors only, before it is imported.

    ``import tlhelpers`` calls this (it costs nothing and imports nothing), so that a
    notebook's own ``import keras`` after it stays free of start-up log lines too.
    Skipped when ``TLHELPERS_TF_LOGS`` is set.
    """
    if not os.environ.get("TLHELPERS_TF_LOGS"):
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def import_tensorflow_quietly() -> None:
    """Import TensorFlow and Keras with their start-up noise hidden.

    Does nothing visible if TensorFlow is already imported, or if the environment
    variable ``TLHELPERS_TF_LOGS`` is set to a non-empty value.
    """
    if "tensorflow" in sys.modules or os.environ.get("TLHELPERS_TF_LOGS"):
        return  # (also keeps this a no-op when called while TensorFlow traces a graph)
    quiet_tensorflow_logs()
    with _stderr_silenced():
        import keras  # noqa: F401
        import tensorflow as tf  # noqa: F401

        # Probing for GPUs logs a "failed call to cuInit" line on machines without one.
        tf.config.list_physical_devices("GPU")
    tf.get_logger().setLevel("ERROR")
    # Keras warns on every fit() over a tf.data pipeline that its default
    # shuffle=True is ignored; our pipelines shuffle themselves.
    warnings.filterwarnings("ignore", message="`shuffle=True` was passed", category=UserWarning)
