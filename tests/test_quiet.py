"""TensorFlow imported quietly, but errors not hidden: the log level, and stderr filtered line by line."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap


def _python(code: str, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "TLHELPERS_TF_LOGS")}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], env={**clean, **env}, capture_output=True, text=True, timeout=120
    )


def test_errors_stay_visible_and_start_up_lines_do_not():
    """`import tlhelpers` asks for errors only (level 2, not 3, which hides errors too), the
    import itself prints nothing, and an error TensorFlow logs afterwards still reaches stderr."""
    done = _python(
        """
        import os, tlhelpers
        print(os.environ["TF_CPP_MIN_LOG_LEVEL"])
        import sys; sys.stderr.write("IMPORTED\\n"); sys.stderr.flush()
        from tlhelpers import _tf
        sys.stderr.write("AFTER\\n"); sys.stderr.flush()
        import tensorflow as tf
        try:
            tf.io.decode_jpeg(b"not a jpeg")  # TensorFlow raises; its C++ side may log too
        except Exception as err:
            print(type(err).__name__)
        """
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[:2] == ["2", "InvalidArgumentError"]
    between = done.stderr.split("IMPORTED\n", 1)[1].split("AFTER\n", 1)[0]
    assert between == "", f"TensorFlow's start-up lines reached stderr: {between[:300]!r}"
    user_level = _python("import os, tlhelpers; print(os.environ['TF_CPP_MIN_LOG_LEVEL'])", TF_CPP_MIN_LOG_LEVEL="0")
    assert user_level.stdout.strip() == "0"  # a level the user set is kept


def test_only_the_known_lines_are_dropped_from_stderr():
    done = _python(
        """
        import os
        from tlhelpers._stderr import LIBJPEG_NOTICES, stderr_lines_dropped
        with stderr_lines_dropped(LIBJPEG_NOTICES):
            os.write(2, b"Corrupt JPEG data: 22 extraneous bytes before marker 0xd9\\n")
            os.write(2, b"E0000 real_problem.cc:12] something went wrong\\n")
            os.write(2, b"Premature end of JPEG file\\n")
        os.write(2, b"Corrupt JPEG data: outside the block\\n")
        """
    )
    assert done.returncode == 0
    assert done.stderr.splitlines() == [
        "E0000 real_problem.cc:12] something went wrong",
        "Corrupt JPEG data: outside the block",
    ]
    kept = _python(
        """
        import os
        from tlhelpers._stderr import LIBJPEG_NOTICES, stderr_lines_dropped
        with stderr_lines_dropped(LIBJPEG_NOTICES):
            os.write(2, b"Corrupt JPEG data: kept\\n")
        """,
        TLHELPERS_TF_LOGS="1",
    )
    assert "Corrupt JPEG data: kept" in kept.stderr.splitlines()  # TLHELPERS_TF_LOGS=1 keeps every line


def test_a_notebook_kernel_drops_tensorflows_harmless_errors_and_nothing_else():
    """In a Jupyter kernel (an IPKernelApp instance exists), the two error-level lines TensorFlow
    prints about nothing are dropped for the kernel's life; any other error line passes. With
    ipykernel merely imported (as test runners and tools do), nothing is filtered."""
    code = """
        import os
        from ipykernel.kernelapp import IPKernelApp
        IPKernelApp.instance()  # what a running kernel has
        import tlhelpers
        from tlhelpers import _tf
        os.write(2, b"E0000 00:00:1.0 1 node_def_util.cc:682] NodeDef mentions attribute use_unbounded_threadpool which is not in the op definition: Op<name=MapDataset>\\n")
        os.write(2, b"E0000 00:00:1.0 1 util.cc:131] oneDNN supports DT_HALF only on platforms with AVX-512. Falling back\\n")
        os.write(2, b"E0000 00:00:1.0 1 other.cc:1] a real error\\n")
        import time; time.sleep(0.2)
        """
    in_kernel = _python(code)
    assert in_kernel.returncode == 0, in_kernel.stderr
    assert [line for line in in_kernel.stderr.splitlines() if line.startswith("E0000")] == [
        "E0000 00:00:1.0 1 other.cc:1] a real error"
    ]
    script = _python(code.replace("IPKernelApp.instance()  # what a running kernel has", ""))
    assert sum(line.startswith("E0000") for line in script.stderr.splitlines()) == 3  # outside a kernel nothing is filtered
