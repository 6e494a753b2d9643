"""Re-run the notebooks: full mode in place (the committed outputs), quick mode on a copy, both timed.

    python tools/run_notebooks.py                  # every notebook, both modes
    python tools/run_notebooks.py 03 05 --full     # these notebooks, full mode only
    python tools/run_notebooks.py --quick          # quick mode only (nothing is written into the notebooks)

Each notebook runs in a fresh kernel from the ``notebooks`` folder, with the offline kit (or
the network) providing its data. Full mode writes the outputs into the notebook; quick mode
(``TLHELPERS_QUICK=1``) runs on a temporary copy. The wall time of every run, and the speed
of ``python -m tlhelpers.check``'s probe on this machine measured before and after (their
median is stored beside each time it ran with), go into ``tlhelpers/notebook_times.json``: the check scales them to estimate run times on other
machines, and ``tools/teaching_guide.py`` builds the teacher's schedules from them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
TIMES = ROOT / "tlhelpers" / "notebook_times.json"
PROBE = (
    "import tlhelpers, keras\n"
    "from tlhelpers.runtime import images_per_second\n"
    "m = keras.applications.MobileNetV2(input_shape=(160, 160, 3), include_top=False, weights=None)\n"
    "print(images_per_second(m, batch_size=32, repeats=3, warmup=1))\n"
)


def probe() -> float:
    """The check's speed probe, in a fresh process (images per second through MobileNetV2 at 160 px)."""
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True).stdout
    return float(out.split()[-1])


def run(path: Path, quick: bool) -> float:
    """Execute one notebook (quick mode on a copy); returns the wall time in seconds."""
    env = {k: v for k, v in os.environ.items() if k != "TLHELPERS_QUICK"}
    if quick:
        env["TLHELPERS_QUICK"] = "1"
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb,
        timeout=3600,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
        record_timing=False,
    )
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)  # the kernel inherits this process's environment
    try:
        start = time.perf_counter()
        client.execute()
        seconds = time.perf_counter() - start
    finally:
        os.environ.clear()
        os.environ.update(saved)
    if quick:
        scratch = Path(tempfile.mkdtemp()) / path.name
        nbformat.write(nb, scratch)  # kept for reading, never committed
        print(f"  quick-mode outputs: {scratch}", flush=True)
    else:
        nbformat.write(nb, path)
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("only", nargs="*", help="notebook numbers (01, 02, ...); all by default")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--full", action="store_true", help="full mode only")
    mode.add_argument("--quick", action="store_true", help="quick mode only")
    args = parser.parse_args(argv)

    chosen = [p for p in NOTEBOOKS if not args.only or p.name[:2] in args.only]
    modes = ["full"] if args.full else ["quick"] if args.quick else ["quick", "full"]
    record = json.loads(TIMES.read_text()) if TIMES.exists() else {"notebooks": {}}
    speeds = [probe()]
    measured = []
    for path in chosen:
        for mode in modes:
            print(f"[{time.strftime('%H:%M:%S')}] {path.name} ({mode})", flush=True)
            seconds = run(path, quick=mode == "quick")
            measured.append((path.stem, mode, seconds))
            print(f"  {seconds:.0f} s", flush=True)
    speeds.append(probe())
    run_probe = round(statistics.median(speeds), 1)
    for stem, mode, seconds in measured:  # each time keeps the probe of the run that measured it
        record["notebooks"].setdefault(stem, {}).update({mode: round(seconds, 1), f"{mode}_probe": run_probe})
    probes = [v for entry in record["notebooks"].values() for k, v in entry.items() if k.endswith("_probe")]
    import tensorflow as tf

    record.update(
        probe_images_per_second=round(statistics.median(probes), 1),
        machine=f"{os.cpu_count()} CPU cores, {platform.machine()}, "
        + (f"{len(tf.config.list_physical_devices('GPU'))} GPU(s)" if tf.config.list_physical_devices("GPU") else "no GPU"),
        software=f"Python {platform.python_version()}, TensorFlow {tf.__version__}",
        measured=time.strftime("%Y-%m-%d"),
    )
    TIMES.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    print(f"probe {speeds} images/s; times written to {TIMES.relative_to(ROOT)}")
    shutil.rmtree(ROOT / "notebooks" / ".ipynb_checkpoints", ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
