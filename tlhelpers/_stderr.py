"""Known, harmless lines filtered out of file descriptor 2, line by line; no TensorFlow.

C++ libraries print some lines straight to descriptor 2, where Python's ``sys.stderr``
settings cannot reach them and, in Jupyter, they land in the notebook as red noise:
libjpeg's "Corrupt JPEG data" for a file the scan is about to report by name, the LiteRT
runtime's delegate notice, and two error-level lines TensorFlow 2.20 and 2.21 print
although nothing is wrong. :func:`stderr_lines_dropped` drops the lines that match known
patterns and lets every other line, errors included, through as it arrives. Nothing is
filtered when ``TLHELPERS_TF_LOGS`` is set.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import sys
import threading
from collections.abc import Iterable, Iterator


@contextlib.contextmanager
def descriptor_2_to(target_fd: int) -> Iterator[int | None]:
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
    with descriptor_2_to(write_fd) as saved:
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


#: What the LiteRT converter prints to stderr on every successful int8 conversion: its settings,
#: which no one needs to read.
CONVERTER_NOTICES = (r"^fully_quantize: \d+, inference_type: ",)

#: Lines TensorFlow prints although nothing is wrong: two at error level (a tf.data graph rewrite
#: that op determinism, ``tl.set_seed``, turns on copies an attribute the rewritten op does not
#: declare, "Unknown attributes will be ignored"; and oneDNN reports, once, that it leaves float16
#: arithmetic to Eigen on this CPU) and the converter's notice above.
HARMLESS_TENSORFLOW_LINES = (
    r"node_def_util\.cc:\d+\] NodeDef mentions attribute use_unbounded_threadpool which is not in the op definition",
    r"util\.cc:\d+\] oneDNN supports DT_HALF only on platforms with AVX-512",
    *CONVERTER_NOTICES,
)


def drop_for_the_process(patterns: Iterable[str]) -> None:
    """Enter :func:`stderr_lines_dropped` for the rest of the process; it is left at exit,
    before the interpreter tears its modules down, so descriptor 2 is restored cleanly."""
    context = stderr_lines_dropped(patterns)
    context.__enter__()
    atexit.register(context.__exit__, None, None, None)


__all__ = [
    "CONVERTER_NOTICES",
    "HARMLESS_TENSORFLOW_LINES",
    "LIBJPEG_NOTICES",
    "descriptor_2_to",
    "drop_for_the_process",
    "stderr_lines_dropped",
]
