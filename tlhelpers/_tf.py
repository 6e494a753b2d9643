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

:func:`stderr_lines_dropped` removes known, harmless lines that C++ libraries print
straight to descriptor 2 later (libjpeg's "Corrupt JPEG data" for a file the scan
is about to report, the LiteRT runtime's delegate notice) and lets every other line,
errors included, through. In a Jupyter kernel, where ipykernel already passes
descriptor 2 through a pipe into the notebook, :data:`HARMLESS_TENSORFLOW_LINES` are
dropped for the kernel's whole life: two error-level lines TensorFlow 2.20 and 2.21
print although nothing is wrong.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import threading
import warnings
from collections.abc import Iterable, Iterator


def quiet_tensorflow_logs() -> None:
    """Ask TensorFlow's C++ runtime for errors only, before it is imported.

    Sets ``TF_CPP_MIN_LOG_LEVEL=2`` (errors and fatal messages; 3 would hide errors too)
    when the variable is unset and ``TLHELPERS_TF_LOGS`` is not set. Costs nothing and
    imports nothing: ``import tlhelpers`` calls it, so that a notebook's own
    ``import keras`` after it is quiet too.
    """
    if not os.environ.get("TLHELPERS_TF_LOGS"):
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@contextlib.contextmanager
def _descriptor_2_to(target_fd: int) -> Iterator[int | None]:
    """Point file descriptor 2 at ``target_fd`` for the block; yields the saved original (or None)."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real descriptor (rare embedded interpreters)
        yield None
        return
    try:
        os.dup2(target_fd, 2)
        yield saved
    finally:
        with contextlib.suppress(OSError, ValueError):
            sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


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
        with _descriptor_2_to(devnull):
            import keras  # noqa: F401
            import tensorflow as tf

            tf.config.list_physical_devices("GPU")
    finally:
        os.close(devnull)
    tf.get_logger().setLevel("ERROR")
    # Keras warns on every fit() over a tf.data pipeline that its default shuffle=True
    # is ignored; the package's pipelines shuffle themselves.
    warnings.filterwarnings("ignore", message="`shuffle=True` was passed", category=UserWarning)


#: Lines libjpeg prints straight to stderr for a damaged file (its "warnings"), which the
#: scan then reports by name.
LIBJPEG_NOTICES = (
    r"Corrupt JPEG data",
    r"Premature end of JPEG file",
    r"Invalid SOS parameters",
    r"Unsupported marker type",
    r"Warning: unknown JFIF revision",
    r"Bogus marker length",
    r"Inconsistent progression sequence",
)


@contextlib.contextmanager
def stderr_lines_dropped(patterns: Iterable[str]) -> Iterator[None]:
    """Drop the lines written to file descriptor 2 that match one of ``patterns``.

    Descriptor 2 goes through a pipe for the block; a thread passes every line that
    matches none of the regular expressions on to the real stderr, as it arrives, and
    drops the others. Nothing is filtered when ``TLHELPERS_TF_LOGS`` is set.
    """
    if os.environ.get("TLHELPERS_TF_LOGS"):
        yield
        return
    matcher = re.compile("|".join(f"(?:{p})" for p in patterns))
    read_fd, write_fd = os.pipe()
    with _descriptor_2_to(write_fd) as saved:
        os.close(write_fd)
        if saved is None:
            os.close(read_fd)
            yield
            return
        forward = os.dup(saved)

        def pump() -> None:
            with os.fdopen(read_fd, "rb") as source, os.fdopen(forward, "wb", buffering=0) as sink:
                for line in source:
                    if not matcher.search(line.decode("utf-8", "replace")):
                        sink.write(line)

        thread = threading.Thread(target=pump, name="tlhelpers-stderr-filter", daemon=True)
        thread.start()
        try:
            yield
        finally:
            os.dup2(saved, 2)  # closes the pipe's last write end: the thread reads to its end
            thread.join(timeout=5)


#: Error-level lines TensorFlow prints although nothing is wrong. A tf.data graph rewrite that
#: op determinism (``tl.set_seed``) turns on copies an attribute the rewritten op does not
#: declare ("Unknown attributes will be ignored"); and oneDNN reports, once, that it leaves
#: float16 arithmetic to Eigen on this CPU.
HARMLESS_TENSORFLOW_LINES = (
    r"node_def_util\.cc:\d+\] NodeDef mentions attribute use_unbounded_threadpool which is not in the op definition",
    r"util\.cc:\d+\] oneDNN supports DT_HALF only on platforms with AVX-512",
)


def _drop_for_the_process(patterns: Iterable[str]) -> None:
    """Enter :func:`stderr_lines_dropped` and never leave it: the filter lasts as long as the process."""
    context = stderr_lines_dropped(patterns)
    context.__enter__()
    _drop_for_the_process.context = context  # kept alive


import_tensorflow_quietly()
if "ipykernel" in sys.modules and not os.environ.get("TLHELPERS_TF_LOGS"):
    _drop_for_the_process(HARMLESS_TENSORFLOW_LINES)

import keras  # noqa: E402  (after the quiet import above, which this module exists for)
import tensorflow as tf  # noqa: E402

__all__ = [
    "HARMLESS_TENSORFLOW_LINES",
    "LIBJPEG_NOTICES",
    "import_tensorflow_quietly",
    "keras",
    "quiet_tensorflow_logs",
    "stderr_lines_dropped",
    "tf",
]
