"""tlhelpers: the small helper package behind the transfer-learning notebooks.

``import tlhelpers as tl`` loads only the package's TensorFlow-free core and, outside
Jupyter, not TensorFlow: each public name is imported on first use, and only the modules
that need TensorFlow import it (through :mod:`tlhelpers._tf`, with its start-up lines
hidden). Inside a Jupyter kernel ``import tlhelpers`` imports TensorFlow at once,
quietly: the notebook needs it anyway, and its start-up lines would otherwise land in
the cell that imports Keras. ``python -m tlhelpers.kit`` and ``python -m
tlhelpers.check`` start without TensorFlow.

Importing the package also sets, when unset: ``TF_CPP_MIN_LOG_LEVEL=2`` (TensorFlow's
errors only), ``TF_ENABLE_ONEDNN_OPTS=1`` on x86 CPUs (:mod:`tlhelpers._cpu`), and
``TFHUB_CACHE_DIR`` to the TF Hub cache the offline kit fills
(:func:`tlhelpers.core.hub_cache_dir`), so that ``tensorflow_hub.load`` finds its
models there.

The modules, each with one job, are listed in the README in the order they may import
each other.
"""

from __future__ import annotations

import importlib
import os
from typing import TYPE_CHECKING

from . import core
from ._cpu import prefer_onednn

__version__ = "0.2.0"

if not os.environ.get("TLHELPERS_TF_LOGS"):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
prefer_onednn()  # TensorFlow's faster oneDNN CPU kernels, also on CPUs where they are off by default
os.environ.setdefault("TFHUB_CACHE_DIR", str(core.hub_cache_dir()))
if core.in_jupyter_kernel():
    from . import _tf  # noqa: F401  (TensorFlow now, quietly: see the docstring)

#: Public name -> the module that defines it.
_EXPORTS = {
    "ActivationCache": "activations",
    "CollectBatchStats": "callbacks",
    "EpochSummary": "callbacks",
    "resumable_fit": "callbacks",
    "grad_cam": "explain",
    "load_image_dataset": "data",
    "load_image_files": "data",
    "load_splits": "data",
    "DatasetUnavailableError": "datasets",
    "dataset_path": "datasets",
    "export_litert": "export",
    "extract_features": "features",
    "train_head": "features",
    "hub_feature_extractor": "hub",
    "litert_predict": "litert",
    "augmentation_layers": "models",
    "available_networks": "models",
    "build_classifier": "models",
    "count_params": "models",
    "get_base_model": "models",
    "unfreeze": "models",
    "plot_batch_stats": "plots",
    "plot_confusion_matrix": "plots",
    "plot_history": "plots",
    "plot_predictions": "plots",
    "plot_top_losses": "plots",
    "show_batch": "plots",
    "top_losses": "plots",
    "images_per_second": "runtime",
    "set_seed": "runtime",
    "scan_image_tree": "scan",
    "paired_test": "stats",
}
_SUBMODULES = {
    "activations",
    "callbacks",
    "check",
    "core",
    "data",
    "datasets",
    "decode",
    "explain",
    "export",
    "features",
    "folding",
    "hub",
    "kit",
    "litert",
    "models",
    "plots",
    "runtime",
    "scan",
    "stats",
}

__all__ = [  # the names of _EXPORTS (a test keeps the two in step)
    "ActivationCache",
    "CollectBatchStats",
    "DatasetUnavailableError",
    "EpochSummary",
    "augmentation_layers",
    "available_networks",
    "build_classifier",
    "count_params",
    "dataset_path",
    "export_litert",
    "extract_features",
    "get_base_model",
    "grad_cam",
    "hub_feature_extractor",
    "images_per_second",
    "litert_predict",
    "load_image_dataset",
    "load_image_files",
    "load_splits",
    "paired_test",
    "plot_batch_stats",
    "plot_confusion_matrix",
    "plot_history",
    "plot_predictions",
    "plot_top_losses",
    "resumable_fit",
    "scan_image_tree",
    "set_seed",
    "show_batch",
    "top_losses",
    "train_head",
    "unfreeze",
]

if TYPE_CHECKING:  # what editors and type checkers see; at run time the names load on first use
    from .activations import ActivationCache
    from .callbacks import CollectBatchStats, EpochSummary, resumable_fit
    from .data import load_image_dataset, load_image_files, load_splits
    from .datasets import DatasetUnavailableError, dataset_path
    from .explain import grad_cam
    from .export import export_litert
    from .features import extract_features, train_head
    from .hub import hub_feature_extractor
    from .litert import litert_predict
    from .models import augmentation_layers, available_networks, build_classifier, count_params, get_base_model, unfreeze
    from .plots import (
        plot_batch_stats,
        plot_confusion_matrix,
        plot_history,
        plot_predictions,
        plot_top_losses,
        show_batch,
        top_losses,
    )
    from .runtime import images_per_second, set_seed
    from .scan import scan_image_tree
    from .stats import paired_test


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    elif name in _SUBMODULES:
        value = importlib.import_module(f".{name}", __name__)
    else:
        raise AttributeError(f"module 'tlhelpers' has no attribute {name!r}")
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS, *_SUBMODULES})
