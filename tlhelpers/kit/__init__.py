"""The offline kit: pre-trained weights, TF Hub models and datasets without a network.

A kit is a folder laid out like the caches the libraries keep themselves::

    kit/
      keras/models/<weights>.h5      # Keras' cache ($KERAS_HOME/models)
      tfhub_modules/<sha1(handle)>/  # TF Hub's cache (TFHUB_CACHE_DIR)
      datasets/<name>/               # extracted datasets, one folder each
      SHA256SUMS                     # optional: checksums of every regular file

``python -m tlhelpers.kit install DIR`` copies a kit into the places Keras and
``tlhelpers`` look, verifying every file listed in ``SHA256SUMS``;
``python -m tlhelpers.kit download DIR`` builds a kit while online, for a workshop to
copy onto every machine.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from collections.abc import Iterable
from pathlib import Path

from ..core import datasets_dir, home, hub_cache_dir, hub_cache_set_to, hub_handle_dirname, keras_home, keras_models_dir, sha256

#: The MobileNetV2 ImageNet weight files the notebooks use (alpha, size, with top).
MOBILENET_V2_WEIGHTS = [
    *[(alpha, size, False) for alpha in ("1.0", "0.35") for size in (96, 128, 160, 192, 224)],
    ("1.0", 224, True),
]
KERAS_WEIGHTS_URL = "https://storage.googleapis.com/tensorflow/keras-applications/"
IMAGENET_CLASS_INDEX = "imagenet_class_index.json"
IMAGENET_CLASS_INDEX_URL = "https://storage.googleapis.com/download.tensorflow.org/data/" + IMAGENET_CLASS_INDEX

#: The TF Hub handles the notebooks use.
HUB_HANDLES = [
    "https://www.kaggle.com/models/google/mobilenet-v2/TensorFlow2/100-224-feature-vector/2",
    "https://tfhub.dev/google/imagenet/mobilenet_v2_100_224/feature_vector/5",
    "https://tfhub.dev/google/tf2-preview/mobilenet_v2/feature_vector/4",
]

_LINK_STUB_MAX_BYTES = 256


def mobilenet_v2_weights_name(alpha: str | float, size: int, include_top: bool) -> str:
    """The file name Keras gives a MobileNetV2 ImageNet weights file."""
    alpha = f"{float(alpha):g}" if float(alpha) != 1 else "1.0"
    suffix = "" if include_top else "_no_top"
    return f"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_{alpha}_{size}{suffix}.h5"


def _resolve_link_stub(path: Path) -> Path:
    """Follow a symbolic link that was checked out as a small text file.

    Kits are copied with tools that sometimes turn a relative symbolic link into a
    regular file whose whole content is the link's target ("other_file.h5"). Such a
    file is replaced by the file it names, when that file exists beside it.
    """
    if path.is_symlink() or not path.is_file() or path.stat().st_size > _LINK_STUB_MAX_BYTES:
        return path
    try:
        target = path.read_text(encoding="utf8").strip()
    except UnicodeDecodeError:
        return path
    if not target or "\n" in target:
        return path
    candidate = (path.parent / target).resolve()
    if candidate != path.resolve() and candidate.exists():
        return _resolve_link_stub(candidate)
    return path


def _read_sums(kit: Path) -> dict[str, str]:
    sums_file = kit / "SHA256SUMS"
    if not sums_file.exists():
        return {}
    sums = {}
    for line in sums_file.read_text(encoding="utf8").splitlines():
        if line.strip():
            digest, name = line.split(maxsplit=1)
            sums[os.path.normpath(name.lstrip("*"))] = digest
    return sums


def _copy_tree(src: Path, dst: Path, kit: Path, sums: dict[str, str]) -> int:
    """Copy ``src`` into ``dst`` following links and link stubs, checking sums.

    Returns the number of files copied. A file whose checksum is listed and does not
    match raises ``ValueError``; files already in place with the right size are kept.
    """
    copied = 0
    for root, dirs, files in os.walk(src, followlinks=True):
        dirs.sort()
        rel_root = Path(root).relative_to(src)
        for name in sorted(files):
            source = Path(root) / name
            real = _resolve_link_stub(source).resolve()
            if real.is_dir():  # a stub or link naming a folder (a TF Hub handle alias)
                copied += _copy_tree(real, dst / rel_root / name, kit, sums)
                continue
            target = dst / rel_root / name
            key = os.path.normpath(str(real.relative_to(kit.resolve()))) if real.is_relative_to(kit.resolve()) else None
            expected = sums.get(key) if key else None
            if target.exists() and target.stat().st_size == real.stat().st_size:
                if expected is None or sha256(target) == expected:
                    continue
            if expected is not None and sha256(real) != expected:
                raise ValueError(f"{source} does not match its SHA256SUMS entry: the kit is damaged; copy it again.")
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_name(target.name + ".partial")
            shutil.copyfile(real, partial)
            os.replace(partial, target)
            copied += 1
    return copied


def install(kit_dir: str | os.PathLike) -> dict[str, int]:
    """Install an offline kit so that weights, TF Hub handles and datasets load offline.

    Args:
        kit_dir: a kit folder (``keras/``, ``tfhub_modules/``, ``datasets/``).

    Returns:
        How many files were copied into each destination (files already in place are
        skipped, so installing twice is cheap).

    Raises:
        FileNotFoundError: if ``kit_dir`` holds none of the three parts.
        ValueError: if a file does not match the kit's ``SHA256SUMS``.
    """
    kit = Path(kit_dir).expanduser()
    parts = {
        "keras": (kit / "keras" / "models", keras_models_dir()),
        "tfhub_modules": (kit / "tfhub_modules", hub_cache_dir()),
        "datasets": (kit / "datasets", datasets_dir()),
    }
    present = {name: p for name, p in parts.items() if p[0].is_dir()}
    if not present:
        raise FileNotFoundError(
            f"{kit} is not an offline kit: expected keras/models, tfhub_modules or datasets inside it. "
            "Build one with `python -m tlhelpers.kit download DIR` on a machine with internet access."
        )
    sums = _read_sums(kit)
    return {name: _copy_tree(src, dst, kit, sums) for name, (src, dst) in present.items()}


def download(kit_dir: str | os.PathLike, datasets: Iterable[str] | None = None) -> Path:
    """Build an offline kit in ``kit_dir`` (needs internet access).

    Downloads the MobileNetV2 weights (alpha 1.0 and 0.35, every input size, and the
    full 1.0/224 model with its top), the ImageNet class index, the TF Hub handles in
    :data:`HUB_HANDLES` and the named datasets, then writes ``SHA256SUMS``.

    Args:
        kit_dir: the folder to fill; created if needed.
        datasets: names from :data:`tlhelpers.datasets.DATASETS`; all by default.

    Returns:
        The kit folder.
    """
    import keras
    import tensorflow_hub as hub

    from .. import datasets as named

    kit = Path(kit_dir).expanduser().resolve()
    models = kit / "keras" / "models"
    models.mkdir(parents=True, exist_ok=True)
    names = [mobilenet_v2_weights_name(a, s, top) for a, s, top in MOBILENET_V2_WEIGHTS]
    for name in names:
        keras.utils.get_file(name, KERAS_WEIGHTS_URL + "mobilenet_v2/" + name, cache_dir=str(kit / "keras"), cache_subdir="models")
    keras.utils.get_file(
        IMAGENET_CLASS_INDEX,
        IMAGENET_CLASS_INDEX_URL,
        cache_dir=str(kit / "keras"),
        cache_subdir="models",
        file_hash="c2c37ea517e94d9795004a39431a14cb",
    )
    with hub_cache_set_to(kit / "tfhub_modules"):
        for handle in HUB_HANDLES:
            hub.resolve(handle)
    for name in datasets or named.DATASETS:
        named.fetch(name, target_dir=kit / "datasets")
    with open(kit / "SHA256SUMS", "w", encoding="utf8") as out:
        for path in sorted(p for p in kit.rglob("*") if p.is_file() and p.name != "SHA256SUMS"):
            out.write(f"{sha256(path)}  ./{path.relative_to(kit)}\n")
    return kit


def weights_missing_message(name: str) -> str:
    """The advice given when pre-trained weights cannot be downloaded."""
    return (
        f"Could not get the pre-trained weights file {name!r}: this machine has no internet access "
        f"and the file is not in Keras' cache ({keras_models_dir()}). Either connect to the internet, "
        "or install an offline kit: `python -m tlhelpers.kit install PATH/TO/kit` "
        "(build one elsewhere with `python -m tlhelpers.kit download PATH/TO/kit`)."
    )


def main(argv: list[str] | None = None) -> int:
    """Command line: ``python -m tlhelpers.kit {install,download} DIR``."""
    parser = argparse.ArgumentParser(prog="python -m tlhelpers.kit", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_install = sub.add_parser("install", help="install a kit so that everything loads offline")
    p_install.add_argument("kit_dir")
    p_download = sub.add_parser("download", help="build a kit (needs internet access)")
    p_download.add_argument("kit_dir")
    p_download.add_argument("--dataset", action="append", help="only these datasets (repeatable)")
    args = parser.parse_args(argv)
    try:
        if args.command == "install":
            counts = install(args.kit_dir)
            for part, n in counts.items():
                print(f"{part}: {n} file(s) copied")
            print(f"Keras weights: {keras_models_dir()}\nTF Hub models: {hub_cache_dir()}\nDatasets: {datasets_dir()}")
        else:
            print(f"Kit written to {download(args.kit_dir, args.dataset)}")
    except (FileNotFoundError, ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0

