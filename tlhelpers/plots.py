"""Figures for the notebooks: sample images, learning curves, per-batch statistics,
prediction grids, confusion matrices and the most confident mistakes.

Every function draws with matplotlib (seaborn for the heat map), returns the
``Figure`` and leaves showing it to Jupyter, so it can also be saved with
``fig.savefig(path)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker
import numpy as np  # noqa: E402

RIGHT, WRONG = "#1a7f37", "#cf222e"


def _to_display(image) -> np.ndarray:
    image = np.asarray(image, dtype="float32")
    if image.max() > 1.5:  # [0, 255] pixels
        image = image / 255.0
    return np.clip(image, 0, 1)


def _grid(n: int, rows: int | None, cols: int, size: float):
    rows = rows or int(np.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * size, rows * size * 1.1), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    return fig, axes.flat


def show_batch(images, labels=None, class_names: Sequence[str] | None = None, rows: int = 3, cols: int = 3, size: float = 2.2):
    """A grid of images with their class names as titles.

    Args:
        images: a batch of images, ``[0, 255]`` or ``[0, 1]`` pixels.
        labels: integer labels (or one-hot rows) for the titles, optional.
        class_names: the names the labels index.
        rows, cols: the grid's shape; at most ``rows * cols`` images are shown.
    """
    images = np.asarray(images)
    n = min(len(images), rows * cols)
    fig, axes = _grid(n, rows, cols, size)
    for i, ax in zip(range(n), axes):
        ax.imshow(_to_display(images[i]))
        if labels is not None:
            label = _as_index(labels[i])
            ax.set_title(class_names[label] if class_names is not None else str(label), fontsize=10)
    fig.tight_layout()
    return fig


def _as_index(label) -> int:
    label = np.asarray(label)
    return int(label.argmax()) if label.ndim else int(label)


def plot_history(*histories, fine_tune_at: int | None = None, metric: str = "accuracy", title: str | None = None):
    """Learning curves: the metric and the loss, training and validation, by epoch.

    Args:
        *histories: ``History`` objects (or their ``.history`` dicts), concatenated in
            order, e.g. the feature-extraction run then the fine-tuning run.
        fine_tune_at: the epoch where fine-tuning began; by default the length of
            the first history when more than one is given. A dashed line marks it.
        metric: the accuracy-like metric to plot beside the loss.

    Returns:
        The figure (two panels).
    """
    merged: dict[str, list[float]] = {}
    lengths = []
    for h in histories:
        data = getattr(h, "history", h)
        lengths.append(len(next(iter(data.values()), [])))
        for key, values in data.items():
            merged.setdefault(key, []).extend(float(v) for v in values)
    if fine_tune_at is None and len(histories) > 1:
        fine_tune_at = lengths[0]
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    for ax, key in zip(axes, (metric, "loss")):
        for prefix, style in (("", "-o"), ("val_", "-s")):
            values = merged.get(prefix + key)
            if values:
                epochs = np.arange(1, len(values) + 1)
                ax.plot(epochs, values, style, markersize=3, label=("validation " if prefix else "training ") + key)
        if fine_tune_at:
            ax.axvline(fine_tune_at + 0.5, color="gray", linestyle="--", label="fine-tuning starts")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))  # no "epoch 2.5"
        ax.set_title(key)
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_batch_stats(stats, title: str = "Training, batch by batch"):
    """Per-batch loss and accuracy from a :class:`tlhelpers.CollectBatchStats`."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.5))
    axes[0].plot(stats.batch_losses)
    axes[0].set_title("loss")
    axes[1].plot(stats.batch_acc)
    axes[1].set_title("accuracy")
    axes[1].set_ylim(0, 1.02)
    for ax in axes:
        ax.set_xlabel("training step (batch)")
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_predictions(
    images,
    probabilities,
    class_names: Sequence[str],
    labels=None,
    rows: int = 6,
    cols: int = 5,
    size: float = 2.0,
    title: str = "Model predictions",
):
    """A grid of predictions: each title is the predicted class and its confidence,
    green when it matches the true label; red when it does not, with the true class
    in brackets (``"dogs 97% (cats)"``).

    Args:
        images: the batch of images.
        probabilities: the model's output for them, ``(batch, num_classes)``.
        class_names: the class names, in label order.
        labels: the true labels, to colour the titles; black titles without them.
        rows, cols: the grid (6 x 5 by default).

    Returns:
        The matplotlib figure.
    """
    images, probabilities = np.asarray(images), np.asarray(probabilities)
    predicted = probabilities.argmax(axis=-1)
    n = min(len(images), rows * cols)
    fig, axes = _grid(n, rows, cols, size)
    for i, ax in zip(range(n), axes):
        ax.imshow(_to_display(images[i]))
        text = f"{class_names[predicted[i]]} {probabilities[i, predicted[i]]:.0%}"
        color = "black"
        if labels is not None:
            truth = _as_index(labels[i])
            color = RIGHT if predicted[i] == truth else WRONG
            if predicted[i] != truth:  # a long title goes on two lines rather than over its neighbour
                text += ("\n" if len(text) + len(class_names[truth]) + 3 > size * 11 else " ") + f"({class_names[truth]})"
        ax.set_title(text, color=color, fontsize=10)
    fig.suptitle(title + ("" if labels is None else " (green: right; red: wrong, true class in brackets)"))
    fig.tight_layout()
    return fig


def confusion_matrix(labels, predicted, num_classes: int) -> np.ndarray:
    """Counts of (true class, predicted class) pairs: row = truth, column = prediction."""
    matrix = np.zeros((num_classes, num_classes), dtype=int)
    np.add.at(matrix, (np.asarray(labels, int), np.asarray(predicted, int)), 1)
    return matrix


def plot_confusion_matrix(labels, predicted, class_names: Sequence[str], normalize: bool = False):
    """A heat map of the confusion matrix, counts written in each cell."""
    import seaborn as sns

    matrix = confusion_matrix(labels, predicted, len(class_names))
    shown = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1) if normalize else matrix
    size = 1.2 + 0.9 * len(class_names)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    sns.heatmap(
        shown,
        annot=True,
        fmt=".2f" if normalize else "d",
        cmap="Blues",
        cbar=False,
        xticklabels=class_names,
        yticklabels=class_names,
        ax=ax,
    )
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("Confusion matrix")
    fig.tight_layout()
    return fig


#: Keras clips probabilities to [1e-7, 1 - 1e-7] before its cross-entropy takes their
#: logarithm (``keras.config.epsilon()``), so no loss exceeds -ln(1e-7), about 16.12.
_KERAS_EPSILON = 1e-7


def _losses(probabilities: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Each example's sparse categorical cross-entropy, clipped as Keras clips it."""
    return -np.log(np.clip(probabilities[np.arange(len(labels)), labels], _KERAS_EPSILON, 1.0 - _KERAS_EPSILON))


def top_losses(probabilities, labels, k: int = 9) -> np.ndarray:
    """Indices of the ``k`` examples with the highest loss (the most confident mistakes first).

    The loss is Keras' ``sparse_categorical_crossentropy`` of each example; equal losses keep
    the examples' order.
    """
    probabilities = np.asarray(probabilities)
    labels = np.asarray(labels, int)
    return np.argsort(-_losses(probabilities, labels), kind="stable")[:k]


def plot_top_losses(images, probabilities, labels, class_names: Sequence[str], k: int = 9, cols: int = 3, size: float = 2.6):
    """The images the model got most confidently wrong: prediction, truth, loss."""
    probabilities = np.asarray(probabilities)
    labels = np.asarray(labels, int)
    idx = top_losses(probabilities, labels, k)
    fig, axes = _grid(len(idx), None, cols, size)
    for i, ax in zip(idx, axes):
        p = probabilities[i]
        pred = int(p.argmax())
        loss = float(_losses(p[None], np.asarray([labels[i]]))[0])
        ax.imshow(_to_display(images[i]))
        ax.set_title(
            f"pred {class_names[pred]} {p[pred]:.0%}\ntrue {class_names[labels[i]]}, loss {loss:.2f}",
            color=RIGHT if pred == labels[i] else WRONG,
            fontsize=9,
        )
    fig.suptitle("Top losses")
    fig.tight_layout()
    return fig


def use_headless_backend() -> None:
    """Draw to files only (for scripts and tests without a display)."""
    matplotlib.use("Agg")
