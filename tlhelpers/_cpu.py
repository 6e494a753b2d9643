"""TensorFlow's oneDNN CPU kernels, asked for before TensorFlow is imported.

On x86 CPUs TensorFlow has two sets of kernels for convolutions and matrix products:
Eigen's, and Intel's oneDNN library. It turns oneDNN on by itself only on CPUs with
the newer deep-learning instructions (AVX512_VNNI, AVX512_BF16, AMX); on the many
CPUs without them (most AMD processors, Intel's before Cascade Lake, many cloud
machines) it runs Eigen's, unless the environment variable
``TF_ENABLE_ONEDNN_OPTS=1`` is set *before* TensorFlow is imported. A notebook
rarely does that, and on such CPUs the difference is large (the benchmark's
``kernels`` phase measures it: ``benchmarks/README.md``).

``import tlhelpers`` therefore sets ``TF_ENABLE_ONEDNN_OPTS=1`` when TensorFlow is not
imported yet, the CPU is x86 and the variable is unset: a value the user set, ``0``
included, is kept. oneDNN computes the same functions in a different order, so
results differ from Eigen's by float32 rounding (TensorFlow says so at start-up).
"""

from __future__ import annotations

import os
import platform
import sys

_X86 = {"x86_64", "amd64", "i386", "i686", "x86"}


def prefer_onednn() -> bool:
    """Ask TensorFlow for its oneDNN CPU kernels, if it is not imported yet.

    Returns:
        True when this call set ``TF_ENABLE_ONEDNN_OPTS=1``; False when TensorFlow was
        already imported, the variable was already set, or the CPU is not x86 (where
        TensorFlow's oneDNN build is not the default one).
    """
    if "tensorflow" in sys.modules or "TF_ENABLE_ONEDNN_OPTS" in os.environ:
        return False
    if platform.machine().lower() not in _X86:
        return False
    os.environ["TF_ENABLE_ONEDNN_OPTS"] = "1"
    return True
