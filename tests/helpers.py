"""Helpers shared by the tests (imported by name: pytest's conftest modules are not)."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "tlhelpers" / "sample_data" / "cats_and_dogs_sample"


def sample_images(n: int = 8, size=(160, 160), split: str = "validation"):
    """A batch of real sample images (float32, [0, 255]) with their labels, cats and dogs mixed."""
    import numpy as np
    from PIL import Image

    files = []
    for cls in ("cats", "dogs"):
        files += sorted((SAMPLE / split / cls).glob("*.jpg"))[: n // 2]
    images = np.stack([np.asarray(Image.open(f).convert("RGB").resize(size[::-1]), dtype="float32") for f in files])
    labels = np.array([0] * (n // 2) + [1] * (n // 2))
    return images, labels


def fresh_classifier(trained):
    """A copy of the session's trained classifier (the ``trained`` fixture) that a test may change: ``(model, base)``."""
    import keras

    model = keras.saving.load_model(trained.path)
    return model, next(layer for layer in model.layers if isinstance(layer, keras.Model) and len(layer.layers) > 20)
