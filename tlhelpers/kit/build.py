"""Building an offline kit while online: ``python -m tlhelpers.kit download DIR``.

Fills a folder with what the notebooks download (the MobileNetV2 weights, the ImageNet
class index, the TF Hub models and the named datasets) in the layout
:func:`tlhelpers.kit.install` expects, and writes its ``SHA256SUMS`` manifest.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from .. import datasets as named
from ..core import atomic_path, hub_cache_set_to, sha256
from ..hub import resolve_handle
from . import (
    HUB_HANDLES,
    IMAGENET_CLASS_INDEX,
    IMAGENET_CLASS_INDEX_URL,
    KERAS_WEIGHTS_URL,
    MANIFEST,
    MOBILENET_V2_WEIGHTS,
    mobilenet_v2_weights_name,
)


def download(kit_dir: str | os.PathLike, datasets: Iterable[str] | None = None) -> Path:
    """Build an offline kit in ``kit_dir`` (needs internet access).

    Downloads the MobileNetV2 weights (alpha 1.0 and 0.35, every input size, and the
    full 1.0/224 model with its top), the ImageNet class index, the TF Hub handles in
    :data:`tlhelpers.kit.HUB_HANDLES` and the named datasets, then writes
    ``SHA256SUMS`` (the manifest :func:`tlhelpers.kit.install` requires), listing every file.

    Args:
        kit_dir: the folder to fill; created if needed.
        datasets: names from :data:`tlhelpers.datasets.DATASETS`; all by default.

    Returns:
        The kit folder.
    """
    from .._tf import keras

    kit = Path(kit_dir).expanduser().resolve()
    (kit / "keras" / "models").mkdir(parents=True, exist_ok=True)
    for alpha, size, top in MOBILENET_V2_WEIGHTS:
        name = mobilenet_v2_weights_name(alpha, size, top)
        keras.utils.get_file(
            name, KERAS_WEIGHTS_URL + "mobilenet_v2/" + name, cache_dir=str(kit / "keras"), cache_subdir="models"
        )
    keras.utils.get_file(
        IMAGENET_CLASS_INDEX,
        IMAGENET_CLASS_INDEX_URL,
        cache_dir=str(kit / "keras"),
        cache_subdir="models",
        file_hash="c2c37ea517e94d9795004a39431a14cb",
    )
    with hub_cache_set_to(kit / "tfhub_modules"):
        for handle in HUB_HANDLES:
            resolve_handle(handle)
    for name in datasets or named.DATASETS:
        named.fetch(name, target_dir=kit / "datasets")
    listed = sorted(p for p in kit.rglob("*") if p.is_file() and p.name != MANIFEST)
    with atomic_path(kit / MANIFEST) as tmp:
        tmp.write_text("".join(f"{sha256(path)}  ./{path.relative_to(kit).as_posix()}\n" for path in listed), encoding="utf8")
    return kit


__all__ = ["download"]
