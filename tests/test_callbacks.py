"""CollectBatchStats, EpochSummary and resumable training."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest

import tlhelpers as tl


def _features(n=64, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    x = rng.normal(size=(n, 8)).astype("float32") + y[:, None] * 1.5
    return x, y


@pytest.mark.parametrize("metric", ["accuracy", "acc", "sparse_categorical_accuracy"])
def test_collect_batch_stats_records_every_batch(metric):
    x, y = _features()
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(2, activation="softmax")])
    model.compile(keras.optimizers.Adam(0.05), "sparse_categorical_crossentropy", metrics=[metric])
    stats = tl.CollectBatchStats()
    model.fit(x, y, batch_size=16, epochs=3, verbose=0, callbacks=[stats])
    assert len(stats.batch_losses) == len(stats.batch_acc) == 3 * 4
    assert all(0 <= a <= 1 for a in stats.batch_acc)
    assert stats.batch_losses[-1] < stats.batch_losses[0]


def test_epoch_summary_prints_one_line_per_epoch():
    x, y = _features()
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(2, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    out = io.StringIO()
    model.fit(x, y, validation_split=0.25, epochs=3, verbose=0, callbacks=[tl.EpochSummary(stream=out)])
    lines = out.getvalue().splitlines()
    assert len(lines) == 3 and lines[2].startswith("epoch 3/3") and "val_accuracy" in lines[2]


TRAIN_SCRIPT = textwrap.dedent(
    """
    import os, sys
    import numpy as np
    import keras
    import tlhelpers as tl

    ckpt, epochs, die_after = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    tl.set_seed(0)
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 128)
    x = (rng.normal(size=(128, 8)) + y[:, None]).astype("float32")

    class Die(keras.callbacks.Callback):
        # killed half-way through the epoch after `die_after` completed epochs
        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch

        def on_train_batch_end(self, batch, logs=None):
            if die_after and self.epoch == die_after and batch == 1:
                os._exit(9)  # like a killed kernel: no clean-up at all

    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(2, activation="softmax")])
    model.compile(keras.optimizers.Adam(0.01), "sparse_categorical_crossentropy", metrics=["accuracy"])
    h = tl.resumable_fit(model, x, ckpt, epochs=epochs, y=y, batch_size=32, shuffle=False,
                         validation_data=(x[:32], y[:32]), verbose=0, callbacks=[Die()])
    np.save(os.path.join(ckpt, "final.npy"), np.concatenate([w.ravel() for w in model.get_weights()]))
    print("epochs in history", len(h.history["loss"]))
    """
)


def _run(script: Path, ckpt: Path, epochs: int, die_after: int = 0) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(script), str(ckpt), str(epochs), str(die_after)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "CUDA_VISIBLE_DEVICES": ""},
    )


def test_killed_training_resumes_from_the_last_epoch_with_the_same_result(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(TRAIN_SCRIPT)
    straight = _run(script, tmp_path / "straight", 6)
    assert straight.returncode == 0, straight.stderr[-2000:]
    killed = _run(script, tmp_path / "resumed", 6, die_after=3)
    assert killed.returncode == 9
    journal = json.loads((tmp_path / "resumed" / "history.json").read_text())
    assert len(journal["history"]["loss"]) == 3 and (tmp_path / "resumed" / "best.keras").exists()
    assert json.loads((tmp_path / "resumed" / "backup" / "training_metadata.json").read_text())["epoch"] == 3
    resumed = _run(script, tmp_path / "resumed", 6)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "epochs in history 6" in resumed.stdout
    journal = json.loads((tmp_path / "resumed" / "history.json").read_text())
    assert journal["best"] == pytest.approx(min(journal["history"]["val_loss"]))  # the best over both runs
    assert not (tmp_path / "resumed" / "best.partial.keras").exists()
    np.testing.assert_allclose(
        np.load(tmp_path / "resumed" / "final.npy"), np.load(tmp_path / "straight" / "final.npy"), rtol=1e-5, atol=1e-6
    )
    best = keras.saving.load_model(tmp_path / "resumed" / "best.keras", safe_mode=True)
    assert best.predict(np.zeros((1, 8), "float32"), verbose=0).shape == (1, 2)
