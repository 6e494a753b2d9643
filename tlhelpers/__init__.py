"""tlhelpers: the small helper package behind the transfer-learning notebooks.

``import tlhelpers as tl`` is instant: each public name is loaded on first use, and
the modules that need TensorFlow import it then, with its start-up log lines hidden.
``python -m tlhelpers.kit`` never imports TensorFlow. In a Jupyter kernel, where a
notebook's own ``import keras`` would print those lines, ``import tlhelpers`` imports
TensorFlow quietly at once.

Modules (each has one job): ``core`` (paths, hashing, atomic writes), ``kit`` (the
offline kit), ``datasets`` (named datasets), ``data`` (checking image folders and
``tf.data`` pipelines), ``models`` (bases, heads, unfreezing), ``folding``
(BatchNorm folded into convolutions), ``hub`` (TF Hub models as Keras layers),
``features`` (cached features), ``activations`` (fine-tuning on cached
activations), ``explain`` (Grad-CAM), ``export`` (LiteRT files), ``callbacks``, ``plots``,
``runtime`` (seeding and
timing).
"""

from __future__ import annotations

import importlib
import sys

from ._cpu import prefer_onednn
from ._quiet import import_tensorflow_quietly, quiet_tensorflow_logs

quiet_tensorflow_logs()
prefer_onednn()  # TensorFlow's faster oneDNN CPU kernels, also on CPUs where they are off by default
if "ipykernel" in sys.modules:
    # In a notebook TensorFlow is needed anyway, and its C++ start-up lines go to the
    # process's stderr, which lands in the notebook whichever cell imports it first:
    # import it now, with those lines hidden.
    import_tensorflow_quietly()

__version__ = "0.2.0"

#: Public name -> the module that defines it.
_EXPORTS = {
    "ActivationCache": "activations",
    "CollectBatchStats": "callbacks",
    "EpochSummary": "callbacks",
    "early_stopping": "callbacks",
    "resumable_fit": "callbacks",
    "grad_cam": "explain",
    "ImageTreeReport": "data",
    "images_dataset": "data",
    "load_image_dataset": "data",
    "pad_batch": "data",
    "scan_image_tree": "data",
    "DatasetUnavailableError": "datasets",
    "dataset_path": "datasets",
    "ExportResult": "export",
    "export_litert": "export",
    "litert_interpreter": "export",
    "litert_predict": "export",
    "FeatureSet": "features",
    "extract_features": "features",
    "train_head": "features",
    "hub_feature_extractor": "hub",
    "augmentation_layers": "models",
    "available_networks": "models",
    "build_classifier": "models",
    "classifier_head": "models",
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
}
_SUBMODULES = {
    "activations",
    "callbacks",
    "core",
    "data",
    "datasets",
    "export",
    "explain",
    "features",
    "folding",
    "hub",
    "kit",
    "models",
    "plots",
    "runtime",
}

__all__ = sorted(_EXPORTS)


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
