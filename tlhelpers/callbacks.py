"""Callbacks for the notebooks: per-batch statistics, early stopping, quiet progress,
and training that survives being interrupted."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from ._quiet import import_tensorflow_quietly

import_tensorflow_quietly()

import keras  # noqa: E402

from .core import atomic_path  # noqa: E402


class CollectBatchStats(keras.callbacks.Callback):
    """Records the loss and accuracy after every training batch.

    Keras reports running averages over the epoch so far; these are the values it
    logs after each batch. Whatever the accuracy metric is called in Keras 3
    (``accuracy``, ``acc``, ``sparse_categorical_accuracy``, ``binary_accuracy``),
    it lands in ``batch_acc``.

    Attributes:
        batch_losses: one loss value per batch, across all epochs.
        batch_acc: one accuracy value per batch (empty if no accuracy metric).
    """

    def __init__(self):
        super().__init__()
        self.batch_losses: list[float] = []
        self.batch_acc: list[float] = []

    @staticmethod
    def _accuracy_key(logs: dict) -> str | None:
        for key in ("accuracy", "acc"):
            if key in logs:
                return key
        return next((k for k in logs if k.endswith("accuracy") or k.endswith("_acc")), None)

    def on_train_batch_end(self, batch, logs=None):
        logs = logs or {}
        if "loss" in logs:
            self.batch_losses.append(float(logs["loss"]))
        key = self._accuracy_key(logs)
        if key is not None:
            self.batch_acc.append(float(logs[key]))


def early_stopping(
    patience: int = 2, monitor: str = "val_loss", restore_best_weights: bool = True, **kwargs
) -> keras.callbacks.EarlyStopping:
    """``keras.callbacks.EarlyStopping`` that restores the best weights by default.

    Stops after ``patience`` epochs without improvement of ``monitor`` and puts back
    the weights of the best epoch, so the model you keep is the one that did best
    on validation data rather than the last one.
    """
    return keras.callbacks.EarlyStopping(patience=patience, monitor=monitor, restore_best_weights=restore_best_weights, **kwargs)


class EpochSummary(keras.callbacks.Callback):
    """One short line per epoch instead of Keras' progress bars.

    Progress bars fill a notebook with hundreds of redraws; this prints
    ``epoch 3/10  loss 0.21  accuracy 0.93  val_loss 0.18  val_accuracy 0.95``.
    Use with ``verbose=0``.
    """

    def __init__(self, every: int = 1, stream=None):
        super().__init__()
        self.every = every
        self.stream = stream or sys.stdout
        self.epochs = None

    def on_train_begin(self, logs=None):
        self.epochs = self.params.get("epochs")

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every:
            return
        parts = [f"epoch {epoch + 1}/{self.epochs}"]
        parts += [f"{k} {v:.4f}" for k, v in (logs or {}).items() if k != "learning_rate"]
        print("  ".join(parts), file=self.stream, flush=True)


def resumable_fit(
    model: keras.Model,
    train_data,
    checkpoint_dir: str | os.PathLike,
    epochs: int,
    monitor: str = "val_loss",
    mode: str = "min",
    callbacks=None,
    **fit_kwargs,
) -> keras.callbacks.History:
    """``model.fit`` that picks up where an interrupted run stopped.

    After every epoch the whole model (weights and optimizer state) is saved to
    ``checkpoint_dir/epoch-NNNN.keras`` and ``state.json`` is switched to it in one
    atomic step, so a run killed at any moment leaves a consistent checkpoint. The
    best model so far (by ``monitor``) is kept as ``checkpoint_dir/best.keras``.
    Run the same call again after a crash or a killed kernel: it reloads the last
    checkpoint and continues with the next epoch.

    Args:
        model: a compiled model.
        train_data: the training dataset.
        checkpoint_dir: a folder for the checkpoints (created if needed).
        epochs: the total number of epochs, counting those already done.
        monitor, mode: what decides the best model (``"min"`` or ``"max"``).
        callbacks: more callbacks to pass to ``fit``.
        **fit_kwargs: passed on to ``fit`` (``validation_data``, ``verbose``, ...).

    Returns:
        The ``History`` of this call, whose ``history`` holds the metrics of every
        epoch of the run, including those done before an interruption.
    """
    folder = Path(checkpoint_dir)
    folder.mkdir(parents=True, exist_ok=True)
    state_file = folder / "state.json"
    state = {"epoch": 0, "checkpoint": None, "best": None, "history": {}}
    if state_file.exists():
        state = json.loads(state_file.read_text())
        restored = keras.saving.load_model(folder / state["checkpoint"], compile=True, safe_mode=True)
        model.set_weights(restored.get_weights())
        if restored.optimizer is not None and model.optimizer is not None:
            model.optimizer.build(model.trainable_variables)
            for target, source in zip(model.optimizer.variables, restored.optimizer.variables):
                target.assign(source)
    saver = _EpochCheckpoint(folder, state, monitor, mode)
    history = model.fit(
        train_data, epochs=epochs, initial_epoch=state["epoch"], callbacks=[*(callbacks or []), saver], **fit_kwargs
    )
    history.history = {k: list(v) for k, v in state["history"].items()}
    return history


class _EpochCheckpoint(keras.callbacks.Callback):
    """Saves ``epoch-NNNN.keras``, then points ``state.json`` at it atomically."""

    def __init__(self, folder: Path, state: dict, monitor: str, mode: str):
        super().__init__()
        self.folder, self.state, self.monitor, self.mode = folder, state, monitor, mode

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        value = logs.get(self.monitor)
        best = self.state["best"]
        if value is not None and (best is None or (value < best if self.mode == "min" else value > best)):
            self.state["best"] = float(value)
            _atomic_save(self.model, self.folder / "best.keras")
        name = f"epoch-{epoch + 1:04d}.keras"
        _atomic_save(self.model, self.folder / name)
        previous = self.state["checkpoint"]
        for key, val in logs.items():
            self.state["history"].setdefault(key, []).append(float(val))
        self.state.update(epoch=epoch + 1, checkpoint=name)
        with atomic_path(self.folder / "state.json") as tmp:
            tmp.write_text(json.dumps(self.state))
        if previous and previous != name:
            (self.folder / previous).unlink(missing_ok=True)


def _atomic_save(model: keras.Model, path: Path) -> None:
    with atomic_path(path, suffix=".keras") as tmp:
        model.save(tmp)
