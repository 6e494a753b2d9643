"""Figures: what they draw, checked on real images."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.colors as mcolors  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import tlhelpers as tl  # noqa: E402
from tlhelpers import plots  # noqa: E402

from helpers import sample_images  # noqa: E402

NAMES = ["cats", "dogs"]


@pytest.fixture(scope="module")
def batch():
    return sample_images(30, size=(64, 64))


def _titled_axes(fig):
    return [ax for ax in fig.axes if ax.get_title()]


def test_show_batch_titles_each_image_with_its_class(batch):
    images, labels = batch
    fig = tl.show_batch(images, labels, NAMES, rows=2, cols=3)
    titles = [ax.get_title() for ax in _titled_axes(fig)]
    assert titles == [NAMES[label] for label in labels[:6]]
    assert fig.axes[0].images[0].get_array().max() <= 1.0


def test_prediction_grid_marks_right_green_and_wrong_red(batch):
    images, labels = batch
    probs = np.eye(2)[labels] * 0.8 + 0.1
    probs[:3] = probs[:3, ::-1]  # the first three are wrong
    fig = tl.plot_predictions(images, probs, NAMES, labels=labels)
    axes = _titled_axes(fig)
    assert len(axes) == 30 and len(fig.axes) == 30  # 6 x 5
    colours = [mcolors.to_hex(ax.title.get_color()) for ax in axes]
    assert colours[:3] == [plots.WRONG] * 3 and set(colours[3:]) == {plots.RIGHT}
    assert axes[0].get_title() == f"{NAMES[1 - labels[0]]} 90% ({NAMES[labels[0]]})"  # a mistake names the truth
    assert axes[3].get_title() == f"{NAMES[labels[3]]} 90%"


def test_prediction_grid_without_labels_is_neutral(batch):
    images, labels = batch
    fig = tl.plot_predictions(images[:4], np.eye(2)[labels[:4]], NAMES, rows=2, cols=2)
    assert {mcolors.to_hex(ax.title.get_color()) for ax in _titled_axes(fig)} == {"#000000"}


def test_learning_curves_join_runs_and_mark_fine_tuning():
    first = {"accuracy": [0.6, 0.7], "val_accuracy": [0.65, 0.72], "loss": [0.9, 0.7], "val_loss": [0.8, 0.6]}
    second = {
        "accuracy": [0.8, 0.9, 0.95],
        "val_accuracy": [0.8, 0.85, 0.9],
        "loss": [0.5, 0.3, 0.2],
        "val_loss": [0.5, 0.4, 0.3],
    }
    fig = tl.plot_history(first, second)
    acc_ax, loss_ax = fig.axes
    lines = {line.get_label(): line for line in acc_ax.lines}
    assert list(lines["training accuracy"].get_ydata()) == [0.6, 0.7, 0.8, 0.9, 0.95]
    assert lines["fine-tuning starts"].get_xdata()[0] == pytest.approx(2.5)
    fig.canvas.draw()
    ticks = [t for t in loss_ax.get_xticks() if loss_ax.get_xlim()[0] <= t <= loss_ax.get_xlim()[1]]
    assert ticks and all(float(t).is_integer() for t in ticks)  # whole epochs only
    assert loss_ax.get_title() == "loss"


def test_batch_stats_plot(batch):
    stats = tl.CollectBatchStats()
    stats.batch_losses, stats.batch_acc = [0.9, 0.5, 0.3], [0.5, 0.7, 0.9]
    fig = tl.plot_batch_stats(stats)
    assert [list(ax.lines[0].get_ydata()) for ax in fig.axes] == [stats.batch_losses, stats.batch_acc]


def test_confusion_matrix_counts_and_heatmap():
    labels = np.array([0, 0, 0, 1, 1, 2])
    predicted = np.array([0, 1, 0, 1, 1, 0])
    m = plots.confusion_matrix(labels, predicted, 3)
    assert m.tolist() == [[2, 1, 0], [0, 2, 0], [1, 0, 0]]
    fig = tl.plot_confusion_matrix(labels, predicted, ["a", "b", "c"])
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert texts == ["2", "1", "0", "0", "2", "0", "1", "0", "0"]


def test_top_losses_puts_confident_mistakes_first(batch):
    images, _ = batch
    labels = np.array([0, 1, 0, 1])
    probs = np.array([[0.9, 0.1], [0.4, 0.6], [0.01, 0.99], [0.7, 0.3]])
    assert tl.top_losses(probs, labels, k=2).tolist() == [2, 3]
    fig = tl.plot_top_losses(images[:4], probs, labels, NAMES, k=2, cols=2)
    first = _titled_axes(fig)[0]
    assert "pred dogs 99%" in first.get_title() and "true cats" in first.get_title()
    assert mcolors.to_hex(first.title.get_color()) == plots.WRONG


def test_top_losses_rank_by_keras_own_loss_clipped_like_keras():
    """The ranking uses Keras' sparse categorical cross-entropy: a probability of 0 for the true
    class costs -ln(1e-7), about 16.12, not infinity, and equal losses keep their order."""
    import keras

    probs = np.array([[0.9, 0.1], [0.0, 1.0], [0.3, 0.7], [1.0, 0.0], [1e-9, 1 - 1e-9]], "float32")
    labels = np.array([0, 0, 0, 1, 0])
    keras_losses = keras.ops.convert_to_numpy(keras.losses.sparse_categorical_crossentropy(labels, probs))
    assert plots._losses(probs, labels) == pytest.approx(keras_losses, rel=1e-4)
    assert keras_losses.max() == pytest.approx(-np.log(1e-7), rel=1e-4)
    assert tl.top_losses(probs, labels, k=5).tolist() == [1, 3, 4, 2, 0]  # 1, 3 and 4 tie at the ceiling
