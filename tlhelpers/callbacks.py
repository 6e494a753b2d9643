"""Callbacks for the notebooks: per-batch statistics, quiet progress, and training that
survives being interrupted."""

from __future__ import annotations

import inspect
import json
import os
import sys
from pathlib import Path

from ._tf import keras
from .core import atomic_path


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
    """``model.fit`` that picks up where an interrupted run stopped, built on Keras' callbacks.

    ``keras.callbacks.BackupAndRestore`` saves the model's weights and optimizer state
    after every epoch into ``checkpoint_dir/backup`` (and keeps the state before, where
    the Keras version offers ``double_checkpoint``); when the same call runs again after
    a crash or a killed kernel, it restores them and training continues with the next
    epoch. ``keras.callbacks.ModelCheckpoint`` keeps the best model so far (by
    ``monitor``) as ``checkpoint_dir/best.keras``. What this function adds is what they
    lack across an interruption: the history of the epochs before it (in
    ``checkpoint_dir/history.json``, returned with the rest), the best value so far (a
    restarted ``ModelCheckpoint`` would start from nothing and replace ``best.keras``
    with a worse epoch), and ``best.keras`` written under another name and renamed into
    place, so that a run killed while saving it leaves the previous one.

    Args:
        model: a compiled, built model.
        train_data: the training data (``x`` of ``fit``).
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
    journal = _Journal(folder / "history.json")
    partial, best = folder / "best.partial.keras", folder / "best.keras"
    partial.unlink(missing_ok=True)  # an interrupted save
    backup_options = {"delete_checkpoint": False}
    if "double_checkpoint" in inspect.signature(keras.callbacks.BackupAndRestore).parameters:
        backup_options["double_checkpoint"] = True
    chain = [
        *(callbacks or []),
        _RecordHistory(journal),  # first: the epoch's metrics, before the state that says it is done
        keras.callbacks.BackupAndRestore(str(folder / "backup"), **backup_options),
        keras.callbacks.ModelCheckpoint(
            str(partial), monitor=monitor, mode=mode, save_best_only=True, initial_value_threshold=journal.state["best"]
        ),
        _PutBestInPlace(journal, partial, best, monitor),
    ]
    history = model.fit(train_data, epochs=epochs, callbacks=chain, **fit_kwargs)
    history.history = {k: list(v) for k, v in journal.state["history"].items()}
    return history


class _Journal:
    """``history.json``: every finished epoch's metrics and the best monitored value, written atomically."""

    def __init__(self, path: Path):
        self.path = path
        self.state = json.loads(path.read_text()) if path.exists() else {"history": {}, "best": None}

    def save(self) -> None:
        with atomic_path(self.path) as tmp:
            tmp.write_text(json.dumps(self.state))


class _RecordHistory(keras.callbacks.Callback):
    """Appends each epoch's metrics to the journal; drops those of epochs a restart runs again."""

    def __init__(self, journal: _Journal):
        super().__init__()
        self.journal = journal

    def on_epoch_begin(self, epoch, logs=None):
        history = self.journal.state["history"]
        for key in history:  # epochs recorded before the backup that says they were done
            del history[key][epoch:]

    def on_epoch_end(self, epoch, logs=None):
        for key, value in (logs or {}).items():
            self.journal.state["history"].setdefault(key, []).append(float(value))
        self.journal.save()


class _PutBestInPlace(keras.callbacks.Callback):
    """Renames the model ``ModelCheckpoint`` just saved to ``best.keras`` and records its value."""

    def __init__(self, journal: _Journal, partial: Path, best: Path, monitor: str):
        super().__init__()
        self.journal, self.partial, self.best, self.monitor = journal, partial, best, monitor

    def on_epoch_end(self, epoch, logs=None):
        if self.partial.exists():
            os.replace(self.partial, self.best)
            self.journal.state["best"] = float((logs or {})[self.monitor])
            self.journal.save()
