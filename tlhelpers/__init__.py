"""tlhelpers: the small helper package behind the transfer-learning notebooks.

Importing it imports TensorFlow and Keras with their start-up log lines hidden.
"""

from ._quiet import import_tensorflow_quietly

import_tensorflow_quietly()

from .callbacks import CollectBatchStats, EpochSummary, early_stopping, resumable_fit  # noqa: E402
from .data import (  # noqa: E402
    ImageTreeReport,
    check_class_names,
    images_dataset,
    load_image_dataset,
    scan_image_tree,
)
from .datasets import DATASETS, DatasetUnavailableError, dataset_path  # noqa: E402
from .features import FeatureSet, extract_features, train_head  # noqa: E402
from .hub import HubFeatureExtractor, hub_feature_extractor  # noqa: E402
from .models import (  # noqa: E402
    ImagenetPreprocess,
    augmentation_layers,
    available_networks,
    build_classifier,
    classifier_head,
    count_params,
    fold_batchnorm,
    get_base_model,
    images_per_second,
    preprocessing_layer,
    set_seed,
    unfreeze,
)
from .plots import (  # noqa: E402
    plot_batch_stats,
    plot_confusion_matrix,
    plot_history,
    plot_predictions,
    plot_top_losses,
    show_batch,
    top_losses,
)

__version__ = "0.1.0"

__all__ = [
    "DATASETS",
    "CollectBatchStats",
    "DatasetUnavailableError",
    "EpochSummary",
    "FeatureSet",
    "HubFeatureExtractor",
    "ImageTreeReport",
    "ImagenetPreprocess",
    "augmentation_layers",
    "available_networks",
    "build_classifier",
    "check_class_names",
    "classifier_head",
    "count_params",
    "dataset_path",
    "early_stopping",
    "extract_features",
    "fold_batchnorm",
    "get_base_model",
    "hub_feature_extractor",
    "images_dataset",
    "images_per_second",
    "load_image_dataset",
    "plot_batch_stats",
    "plot_confusion_matrix",
    "plot_history",
    "plot_predictions",
    "plot_top_losses",
    "preprocessing_layer",
    "resumable_fit",
    "scan_image_tree",
    "set_seed",
    "show_batch",
    "top_losses",
    "train_head",
    "unfreeze",
]
