"""``python -m tlhelpers.kit {install,download} DIR``: the offline kit's command line.

``install`` starts without TensorFlow; ``download`` (online) imports what it downloads with.
"""

from __future__ import annotations

import argparse
import sys

from ..core import datasets_dir, hub_cache_dir, keras_models_dir
from . import MANIFEST, install, some_names


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the process exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m tlhelpers.kit", description="The offline kit: pre-trained weights, TF Hub models and datasets."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p_install = sub.add_parser("install", help="install a kit so that everything loads offline")
    p_install.add_argument("kit_dir")
    p_download = sub.add_parser("download", help="build a kit (needs internet access)")
    p_download.add_argument("kit_dir")
    p_download.add_argument("--dataset", action="append", help="only these datasets (repeatable)")
    args = parser.parse_args(argv)
    try:
        if args.command == "install":
            report = install(args.kit_dir)
            for part, n in report.copied.items():
                print(f"{part}: {n} file(s) copied")
            if report.unlisted:
                print(f"skipped {len(report.unlisted)} file(s) not listed in {MANIFEST}: {some_names(report.unlisted, 10)}")
            print(f"Keras weights: {keras_models_dir()}\nTF Hub models: {hub_cache_dir()}\nDatasets: {datasets_dir()}")
        else:
            from .build import download

            print(f"Kit written to {download(args.kit_dir, args.dataset)}")
    except (OSError, ValueError) as err:
        print("error: " + str(err).replace("\n", " "), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
