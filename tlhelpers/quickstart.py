"""The quick start: a cats-vs-dogs classifier from a pre-trained MobileNetV2, end to end.

``python -m tlhelpers.quickstart`` trains on the sample bundled with the package and writes
``outputs/predictions.png`` (a grid of test predictions, right in green, wrong in red)
and ``outputs/model.keras``:

1. split the photos into training, validation and test sets (:func:`tlhelpers.load_splits`,
   the rule every notebook follows);
2. load the pre-trained MobileNetV2 base (ImageNet weights, top removed, frozen);
3. compute its pooled features for every training and validation photo once (cached on disk);
4. train a softmax head on those features, watching the validation set;
5. put the head on the base and evaluate the whole model once on the test photos,
   straight from their JPEG files.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

DEFAULT_DATA = Path(__file__).resolve().parent / "sample_data" / "cats_and_dogs_sample"


def main(argv: list[str] | None = None) -> int:
    """Run the quick start; returns the process exit status."""
    parser = argparse.ArgumentParser(prog="python -m tlhelpers.quickstart", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data",
        default=str(DEFAULT_DATA),
        help="a dataset name, or a folder with train/ and validation/ class folders or with class folders alone",
    )
    parser.add_argument("--out", default="outputs", help="folder for predictions.png and model.keras")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--image-size", type=int, default=160)
    parser.add_argument("--alpha", type=float, default=1.0, help="MobileNetV2 width multiplier (1.0 or 0.35 in the kit)")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args(argv)
    from tlhelpers._stderr import HARMLESS_TENSORFLOW_LINES, stderr_lines_dropped

    with stderr_lines_dropped(HARMLESS_TENSORFLOW_LINES):  # TensorFlow's error-level lines about nothing
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    """The quick start itself, for :func:`main`'s parsed arguments."""
    import matplotlib

    matplotlib.use("Agg")
    import numpy as np

    import tlhelpers as tl
    from tlhelpers import _tf  # noqa: F401  (TensorFlow, its start-up lines kept off the terminal)

    start = time.perf_counter()
    tl.set_seed(args.seed)
    size = (args.image_size, args.image_size)
    splits = tl.load_splits(args.data, seed=args.seed, image_size=size)
    try:
        base = tl.get_base_model("MobileNetV2", alpha=args.alpha, input_shape=(*size, 3))
    except RuntimeError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"Base: MobileNetV2 alpha={args.alpha} at {size}, {len(base.layers)} layers, frozen")

    train = tl.extract_features(base, splits.train, verbose=False)
    val = tl.extract_features(base, splits.validation, verbose=False)
    print(
        f"Features: {len(train.files)} training and {len(val.files)} validation photos "
        f"({'from cache' if train.from_cache else f'{train.seconds:.1f} s'})"
    )

    head, history = tl.train_head(train, val, epochs=args.epochs, seed=args.seed)
    print(f"Head trained for {args.epochs} epochs: validation accuracy {history.history['val_accuracy'][-1]:.3f}")

    model = tl.build_classifier(base, head=head)
    probabilities = model.predict(splits.test, verbose=0)
    labels = splits.test.labels
    accuracy = float((probabilities.argmax(-1) == labels).mean())
    print(f"Full model on the {len(labels)} test photos, read from their files: accuracy {accuracy:.3f}")

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    pick = np.random.default_rng(args.seed).choice(len(labels), size=min(30, len(labels)), replace=False)
    images = np.concatenate([x.numpy() for x, _ in splits.test])[pick]
    fig = tl.plot_predictions(images, probabilities[pick], [c.title() for c in train.class_names], labels=labels[pick])
    fig.savefig(out / "predictions.png", dpi=80)
    model.save(out / "model.keras")
    right = int((probabilities[pick].argmax(-1) == labels[pick]).sum())
    print(f"Saved {out / 'predictions.png'} ({right}/{len(pick)} right in the grid) and {out / 'model.keras'}")
    print(f"Done in {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
