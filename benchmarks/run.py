"""Benchmark: the standard transfer-learning recipe against cached features, and fine-tuning.

Run from the repository root (with the offline kit installed, or online)::

    python benchmarks/run.py

Every phase runs in its own Python process, one after the other, so that each gets the
machine to itself and its peak memory is its own. All phases use the same data
(``cats_and_dogs_filtered``: 2,000 training and 1,000 validation images at 160x160), the
same MobileNetV2 (alpha 1.0) base, the same head (dropout 0.2, softmax) and 10 epochs:

``standard``
    The TensorFlow tutorial's recipe: ``image_dataset_from_directory`` pipelines and
    ``fit`` with augmentation layers, the frozen base running on every image every epoch.
``cached``
    tlhelpers: extract the pooled features once (cold cache, so the extraction and the
    tree check are counted), train the head on them.
``cached_augmented``
    The same with two augmented passes of the training images cached alongside.
``fine_tune``
    From the cached head: unfreeze the base from layer 100 (BatchNorm frozen), RMSprop
    1e-5, 10 more epochs on images with augmentation.
``kernels``
    TensorFlow's oneDNN CPU kernels off and on (``TF_ENABLE_ONEDNN_OPTS``, read when
    TensorFlow is imported, so each setting runs in processes of its own, alternating):
    the base and the folded base on tensors in memory, and fine-tuning from layer 100.
``throughput``
    Images per second through the frozen base on a first pass over the 3,000 JPEGs: a plain
    ``model.predict`` over ``image_dataset_from_directory`` against ``extract_features``
    (cold, every file checked; and on a folder checked before); the base alone on tensors
    in memory; the share of time the base waits for input; the cold check of every file;
    and the base in bfloat16 against float32 on this CPU.

Writes ``benchmarks/results.json`` and ``benchmarks/results.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
IMAGE_SIZE = (160, 160)
BATCH_SIZE = 32
EPOCHS = 10
SEED = 42
PHASES = ["kernels", "throughput", "decoders", "standard", "cached", "cached_augmented", "fine_tune", "fine_tune_cached"]
#: Every phase runs on TensorFlow's oneDNN CPU kernels, the ones ``import tlhelpers`` asks
#: for: plain-Keras phases included, so that each comparison measures a method, not the
#: switch. The ``kernels`` phase measures the switch itself.
ONEDNN = "1"
CACHED_PASSES = 2  # augmented passes of the training images in the activation cache


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _base():
    import tlhelpers as tl

    return tl.get_base_model("MobileNetV2", alpha=1.0, input_shape=(*IMAGE_SIZE, 3))


def phase_standard(data: Path) -> dict:
    import keras

    import tlhelpers as tl

    tl.set_seed(SEED)
    start = time.perf_counter()
    train = keras.utils.image_dataset_from_directory(
        data / "train", image_size=IMAGE_SIZE, batch_size=BATCH_SIZE, seed=SEED, verbose=False
    )
    val = keras.utils.image_dataset_from_directory(
        data / "validation", image_size=IMAGE_SIZE, batch_size=BATCH_SIZE, shuffle=False, verbose=False
    )
    train, val = train.prefetch(-1), val.prefetch(-1)
    base = _base()
    inputs = keras.Input((*IMAGE_SIZE, 3))
    x = keras.layers.RandomFlip("horizontal", seed=SEED)(inputs)
    x = keras.layers.RandomRotation(0.1, seed=SEED)(x)
    x = keras.layers.Rescaling(1 / 127.5, offset=-1)(x)
    x = base(x, training=False)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dropout(0.2)(x)
    outputs = keras.layers.Dense(2, activation="softmax")(x)
    model = keras.Model(inputs, outputs)
    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(train, validation_data=val, epochs=EPOCHS, verbose=0)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "val_accuracy": history.history["val_accuracy"][-1], "epochs": EPOCHS}


def _cached(data: Path, passes: int) -> tuple[dict, object, object]:
    import tlhelpers as tl

    tl.set_seed(SEED)
    start = time.perf_counter()
    base = _base()
    augmentation = tl.augmentation_layers(seed=SEED) if passes else None
    train = tl.extract_features(
        base, data / "train", augmentation=augmentation, augment_passes=passes, augment_seed=SEED, verbose=False
    )
    val = tl.extract_features(base, data / "validation", verbose=False)
    extracted = time.perf_counter() - start
    head, history = tl.train_head(train, val, epochs=EPOCHS, seed=SEED)
    seconds = time.perf_counter() - start
    result = {
        "seconds": seconds,
        "extract_seconds": extracted,
        "head_seconds": seconds - extracted,
        "val_accuracy": history.history["val_accuracy"][-1],
        "augment_passes": passes,
        "epochs": EPOCHS,
    }
    return result, base, head


def phase_cached(data: Path) -> dict:
    return _cached(data, 0)[0]


def phase_cached_augmented(data: Path) -> dict:
    return _cached(data, 2)[0]


def _EpochClock():
    """A callback that records each epoch's wall time (training and validation) in ``.seconds``."""
    import keras

    class EpochClock(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.seconds: list[float] = []

        def on_epoch_begin(self, epoch, logs=None):
            self._start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds.append(time.perf_counter() - self._start)

    return EpochClock()


def phase_fine_tune(data: Path) -> dict:
    import keras

    import tlhelpers as tl

    head_result, base, head = _cached(data, 2)
    start = time.perf_counter()
    train = tl.load_image_dataset(data / "train", image_size=IMAGE_SIZE, batch_size=BATCH_SIZE, seed=SEED, verbose=False)
    val = tl.load_image_dataset(data / "validation", image_size=IMAGE_SIZE, batch_size=BATCH_SIZE, shuffle=False, verbose=False)
    model = tl.build_classifier(base, 2, augmentation=tl.augmentation_layers(seed=SEED), head=head)
    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
    before = model.evaluate(val, verbose=0)[1]
    tl.unfreeze(base, 100)
    model.compile(keras.optimizers.RMSprop(1e-5), "sparse_categorical_crossentropy", metrics=["accuracy"])
    epochs = _EpochClock()
    history = model.fit(train, validation_data=val, epochs=EPOCHS, verbose=0, callbacks=[epochs])
    return {
        "epoch_seconds": epochs.seconds,
        "seconds": time.perf_counter() - start,
        "val_accuracy": history.history["val_accuracy"][-1],
        "best_val_accuracy": max(history.history["val_accuracy"]),
        "val_accuracy_before": before,
        "head_seconds": head_result["seconds"],
        "fine_tune_at": 100,
        "epochs": EPOCHS,
    }


def phase_fine_tune_cached(data: Path) -> dict:
    """The same fine-tuning on cached activations: the frozen bottom of the base runs once
    per image (plus CACHED_PASSES augmented passes), the top trains on the cache."""
    import keras

    import tlhelpers as tl

    head_result, base, head = _cached(data, 2)
    start = time.perf_counter()
    model = tl.build_classifier(base, 2, augmentation=tl.augmentation_layers(seed=SEED), head=head)
    tl.unfreeze(base, 100)
    cache = tl.ActivationCache(model, 100)
    train = cache.extract(
        data / "train", augmentation=tl.augmentation_layers(seed=SEED), augment_passes=CACHED_PASSES, augment_seed=SEED
    )
    val = cache.extract(data / "validation")
    cached_at = time.perf_counter() - start
    cache.model.compile(keras.optimizers.RMSprop(1e-5), "sparse_categorical_crossentropy", metrics=["accuracy"])
    before = cache.model.evaluate(val.dataset(BATCH_SIZE), verbose=0)[1]
    batches, steps = train.training_dataset(BATCH_SIZE, seed=SEED)
    epochs = _EpochClock()
    history = cache.model.fit(
        batches, steps_per_epoch=steps, validation_data=val.dataset(BATCH_SIZE), epochs=EPOCHS, verbose=0, callbacks=[epochs]
    )
    return {
        "epoch_seconds": epochs.seconds,
        "seconds": time.perf_counter() - start,
        "cache_seconds": cached_at,
        "val_accuracy": history.history["val_accuracy"][-1],
        "best_val_accuracy": max(history.history["val_accuracy"]),
        "val_accuracy_before": before,
        "cache_mb": (train.nbytes + val.nbytes) / 2**20,
        "cut": cache.cut,
        "augment_passes": CACHED_PASSES,
        "fine_tune_at": 100,
        "epochs": EPOCHS,
    }


def phase_throughput(data: Path) -> dict:
    import keras
    import tensorflow as tf

    import tlhelpers as tl
    from tlhelpers import features

    base = _base()
    folders = [data / "train", data / "validation"]
    for path in (p for folder in folders for p in folder.rglob("*.jpg")):
        path.read_bytes()  # the same warm file cache for both routes

    def plain_route() -> float:
        """image_dataset_from_directory + model.predict, end to end (a new model: cold graph)."""
        model = features.feature_model(base, "MobileNetV2", fold=False)
        start = time.perf_counter()
        plain = None
        for folder in folders:
            ds = keras.utils.image_dataset_from_directory(
                folder, image_size=IMAGE_SIZE, batch_size=BATCH_SIZE, shuffle=False, labels=None, verbose=False
            )
            plain = ds if plain is None else plain.concatenate(ds)
        n = len(model.predict(plain, verbose=0))
        return n / (time.perf_counter() - start)

    def tlhelpers_route(checked: bool) -> float:
        """extract_features end to end: BatchNorm folded and the graph traced anew, JPEGs
        decoded in parallel (Keras' own decoding). ``checked=False``: every file checked too
        (an empty scan cache, the cold start); ``checked=True``: the folder was checked
        before (as load_image_dataset or an earlier run does), so the scan reads its cache."""
        features._EXTRACTORS.clear()
        os.environ["TLHELPERS_HOME"] = scanned_home if checked else tempfile.mkdtemp(dir=homes)
        start = time.perf_counter()
        n = sum(len(tl.extract_features(base, folder, cache=False, verbose=False).files) for folder in folders)
        return n / (time.perf_counter() - start)

    homes = tempfile.mkdtemp()  # one TLHELPERS_HOME per cold route, removed at the end
    scanned_home = tempfile.mkdtemp(dir=homes)
    os.environ["TLHELPERS_HOME"] = scanned_home
    files = [str(p) for folder in folders for p in tl.scan_image_tree(folder).files]  # fills the "checked" cache

    # Shared machines are noisy: alternate the routes and keep the medians.
    rounds = [(plain_route(), tlhelpers_route(checked=False), tlhelpers_route(checked=True)) for _ in range(3)]
    baseline = statistics.median(r[0] for r in rounds)
    ours = statistics.median(r[1] for r in rounds)
    ours_checked = statistics.median(r[2] for r in rounds)

    # 3. the base alone, graph mode, on tensors already in memory
    base_only, folded_only, folded_model = _base_alone(base)

    # 4. the input pipeline alone, and the share of time the base waits for it
    pipeline = tl.load_image_files(files, None, image_size=IMAGE_SIZE, batch_size=BATCH_SIZE, cache=False)
    start = time.perf_counter()
    for _ in pipeline:
        pass
    pipeline_rate = len(files) / (time.perf_counter() - start)
    step = tf.function(lambda x: folded_model(x, training=False))
    step(next(iter(pipeline))).numpy()
    start = time.perf_counter()
    for batch in pipeline:
        step(batch).numpy()
    combined = time.perf_counter() - start

    # 5. the scan alone, cold: what checking every file costs
    os.environ["TLHELPERS_HOME"] = tempfile.mkdtemp(dir=homes)
    start = time.perf_counter()
    for folder in folders:
        tl.scan_image_tree(folder)
    scan_seconds = time.perf_counter() - start
    shutil.rmtree(homes, ignore_errors=True)
    bf16 = _bfloat16(base)
    return {
        "images": len(files),
        "baseline_images_per_s": baseline,
        "tlhelpers_images_per_s": ours,
        "speedup": ours / baseline,
        "rounds": [{"baseline": b, "tlhelpers": t, "tlhelpers_checked": c} for b, t, c in rounds],
        "speedup_per_round": [t / b for b, t, _ in rounds],
        "tlhelpers_checked_images_per_s": ours_checked,
        "share_of_folded_base": ours / folded_only,
        "share_of_folded_base_checked": ours_checked / folded_only,
        "scan_cold_seconds": scan_seconds,
        "bfloat16": bf16,
        "base_alone_images_per_s": base_only,
        "folded_base_alone_images_per_s": folded_only,
        "pipeline_alone_images_per_s": pipeline_rate,
        "base_waits_for_input_share": max(0.0, 1 - (len(files) / folded_only) / combined),
        "cpu_count": os.cpu_count(),
    }


def phase_decoders(data: Path) -> dict:
    """Keras' own decoding (the default) against the opt-in reduced-scale one (decode="fast").

    The same 1,000 validation JPEGs at 160x160 read both ways: the pipeline's speed alone
    (median of 3 alternating rounds, no in-memory cache), the first pass of extract_features
    (cold, median of 3 alternating rounds), the pixel differences, and what they do to the
    predictions of a head trained on Keras-decoded training features (the lessons' recipe):
    how many predictions change class, and both accuracies.
    """
    import numpy as np

    import tlhelpers as tl
    from tlhelpers import features

    folder = data / "validation"
    files = [str(p) for p in tl.scan_image_tree(folder).files]
    for path in files:
        Path(path).read_bytes()  # a warm file cache for both

    def pipeline_rate(decode: str) -> float:
        start = time.perf_counter()
        for _ in tl.load_image_files(files, None, IMAGE_SIZE, BATCH_SIZE, cache=False, decode=decode):
            pass
        return len(files) / (time.perf_counter() - start)

    base = _base()

    def first_pass_rate(decode: str) -> float:
        features._EXTRACTORS.clear()
        os.environ["TLHELPERS_HOME"] = tempfile.mkdtemp(dir=homes)
        start = time.perf_counter()
        n = len(tl.extract_features(base, folder, cache=False, verbose=False, decode=decode).files)
        return n / (time.perf_counter() - start)

    homes = tempfile.mkdtemp()
    rounds = [
        {
            f"{kind}_{d}": fn(d)
            for d in ("keras", "fast")
            for kind, fn in (("pipeline", pipeline_rate), ("first_pass", first_pass_rate))
        }
        for _ in range(3)
    ]
    median = {key: statistics.median(r[key] for r in rounds) for key in rounds[0]}

    keras_pixels = np.concatenate(list(tl.load_image_files(files, None, IMAGE_SIZE, BATCH_SIZE, cache=False)))
    fast_pixels = np.concatenate(list(tl.load_image_files(files, None, IMAGE_SIZE, BATCH_SIZE, cache=False, decode="fast")))
    difference = np.abs(keras_pixels - fast_pixels)

    tl.set_seed(SEED)
    train = tl.extract_features(base, data / "train", verbose=False)
    head, _ = tl.train_head(train, epochs=EPOCHS, seed=SEED)
    model = tl.build_classifier(base, head=head)
    labels = np.asarray(tl.scan_image_tree(folder).labels)
    keras_pred = model.predict(keras_pixels, batch_size=BATCH_SIZE, verbose=0).argmax(-1)
    fast_pred = model.predict(fast_pixels, batch_size=BATCH_SIZE, verbose=0).argmax(-1)
    shutil.rmtree(homes, ignore_errors=True)
    return {
        "images": len(files),
        "rounds": rounds,
        **{f"{key}_images_per_s": value for key, value in median.items()},
        "pipeline_speedup_fast": median["pipeline_fast"] / median["pipeline_keras"],
        "first_pass_speedup_fast": median["first_pass_fast"] / median["first_pass_keras"],
        "pixel_mean_abs_difference": float(difference.mean()),
        "pixel_max_abs_difference": float(difference.max()),
        "images_with_a_pixel_off_by_more_than_20": int((difference.reshape(len(files), -1).max(axis=1) > 20).sum()),
        "predictions_changed": int((keras_pred != fast_pred).sum()),
        "accuracy_keras_decoded": float((keras_pred == labels).mean()),
        "accuracy_fast_decoded": float((fast_pred == labels).mean()),
    }


def _base_alone(base) -> tuple[float, float, object]:
    """Images per second of the base and of the folded base on tensors in memory (graph
    mode, batches of BATCH_SIZE), and the folded feature model itself."""
    import tlhelpers as tl
    from tlhelpers import features

    plain_model = features.feature_model(base, "MobileNetV2", fold=False)
    folded_model = features.feature_model(base, "MobileNetV2", fold=True)
    base_only = tl.images_per_second(plain_model, batch_size=BATCH_SIZE, repeats=10)
    folded_only = tl.images_per_second(folded_model, batch_size=BATCH_SIZE, repeats=10)
    return base_only, folded_only, folded_model


def _bfloat16(base) -> dict:
    """Whether this CPU has bfloat16 instructions, and what bfloat16 compute does to the
    base here: speed against float32, and how far its features move."""
    import keras
    import numpy as np
    import tensorflow as tf

    import tlhelpers as tl

    flags = set(_cpuinfo("flags").split())
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        twin = keras.applications.MobileNetV2(include_top=False, weights=None, alpha=1.0, input_shape=(*IMAGE_SIZE, 3))
    finally:
        keras.config.set_dtype_policy("float32")
    twin.set_weights(base.get_weights())
    images = tf.random.stateless_uniform([BATCH_SIZE, *IMAGE_SIZE, 3], seed=(SEED, 0), minval=-1, maxval=1)
    ours = keras.layers.GlobalAveragePooling2D()(base(images, training=False)).numpy()
    theirs = keras.layers.GlobalAveragePooling2D()(twin(images, training=False)).numpy().astype("float32")
    return {
        "cpu_has_avx512_bf16": "avx512_bf16" in flags,
        "cpu_has_amx_bf16": "amx_bf16" in flags,
        "float32_images_per_s": tl.images_per_second(base, batch_size=BATCH_SIZE, repeats=5),
        "bfloat16_images_per_s": tl.images_per_second(twin, batch_size=BATCH_SIZE, repeats=5),
        "feature_relative_error": float(np.linalg.norm(theirs - ours) / np.linalg.norm(ours)),
    }


def phase_kernel_probe(data: Path) -> dict:
    """One setting of TF_ENABLE_ONEDNN_OPTS (the caller's): the base, the folded base and
    fine-tuning from layer 100 on in-memory batches, in images per second."""
    import keras
    import numpy as np

    import tlhelpers as tl
    from tlhelpers import runtime

    base = _base()
    base_only, folded_only, _ = _base_alone(base)
    model = tl.build_classifier(base, 2)
    tl.unfreeze(base, 100)
    model.compile(keras.optimizers.RMSprop(1e-5), "sparse_categorical_crossentropy")
    images = np.random.default_rng(SEED).uniform(0, 255, (BATCH_SIZE * 12, *IMAGE_SIZE, 3)).astype("float32")
    labels = np.arange(len(images)) % 2
    model.fit(images[: 2 * BATCH_SIZE], labels[: 2 * BATCH_SIZE], batch_size=BATCH_SIZE, verbose=0)  # trace, warm up
    start = time.perf_counter()
    model.fit(images, labels, batch_size=BATCH_SIZE, verbose=0)
    return {
        "onednn": runtime.onednn_enabled(),
        "base_alone_images_per_s": base_only,
        "folded_base_alone_images_per_s": folded_only,
        "fine_tune_images_per_s": len(images) / (time.perf_counter() - start),
    }


def phase_kernels(data: Path) -> dict:
    """oneDNN off against on: two rounds, alternating, each setting in a fresh process."""
    rounds = {"0": [], "1": []}
    for _ in range(2):
        for setting in rounds:
            proc = _in_own_process("kernel_probe", data, {**os.environ, "TF_ENABLE_ONEDNN_OPTS": setting})
            proc.check_returncode()
            rounds[setting].append(_result(proc))
    out = {}
    for setting, name in (("0", "off"), ("1", "on")):
        out[name] = {k: statistics.median(r[k] for r in rounds[setting]) for k in rounds[setting][0] if k.endswith("_per_s")}
        out[name]["onednn"] = all(r["onednn"] for r in rounds[setting])
        out[name]["rounds"] = rounds[setting]
    out["speedup"] = {k: out["on"][k] / out["off"][k] for k in out["on"] if k.endswith("_per_s")}
    out["onednn_by_default"] = _onednn_by_default()
    return out


def _onednn_by_default() -> bool:
    """Whether this machine's TensorFlow runs oneDNN with the variable unset and tlhelpers not imported."""
    env = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    code = (  # TensorFlow imported before tlhelpers, so that tlhelpers leaves the variable unset
        "import os; os.environ['TF_CPP_MIN_LOG_LEVEL'] = '3'\n"
        "import tensorflow\nfrom tlhelpers.runtime import onednn_enabled\nprint(onednn_enabled())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout
    return out.strip().splitlines()[-1] == "True"


def _cpuinfo(field: str) -> str:
    """The first processor's ``field`` in /proc/cpuinfo ("" where there is none)."""
    try:
        with open("/proc/cpuinfo") as f:
            return next((line.split(":", 1)[1].strip() for line in f if line.split(":")[0].strip() == field), "")
    except OSError:
        return ""


def _machine_jiffies() -> list[int]:
    """The machine's CPU time counters (/proc/stat's first line: user, nice, system, idle,
    iowait, irq, softirq, steal), or ``[]`` where there are none."""
    try:
        with open("/proc/stat") as f:
            return [int(x) for x in f.readline().split()[1:9]]
    except (OSError, ValueError):
        return []


def _cpu_record(wall: float, children: tuple[float, float], before: list[int], after: list[int]) -> dict:
    """How much CPU a phase got: the cores its process kept busy on average, and the
    share of the machine's CPU time the hypervisor took for other guests (steal)."""
    record = {"busy_cores": (children[0] + children[1]) / wall if wall else 0.0}
    if len(before) == len(after) == 8:
        delta = [b - a for a, b in zip(before, after)]
        record["machine_steal_share"] = delta[7] / sum(delta) if sum(delta) else 0.0
    return record


def _in_own_process(name: str, data: Path, env: dict) -> subprocess.CompletedProcess:
    """Run one phase in a fresh Python process with ``env``; its result is the JSON line
    it prints last (see :func:`_result`)."""
    return subprocess.run(
        [sys.executable, __file__, "--phase", name, "--data", str(data)], capture_output=True, text=True, env=env
    )


def _result(proc: subprocess.CompletedProcess) -> dict:
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_phase(name: str, data: Path) -> dict:
    """Run one phase in this process and return its results with its peak memory."""
    result = globals()[f"phase_{name}"](data)
    result["peak_memory_mb"] = _peak_mb()
    return result


def _markdown(results: dict) -> str:
    t, s, c, ca, f, fc = (
        results[k] for k in ("throughput", "standard", "cached", "cached_augmented", "fine_tune", "fine_tune_cached")
    )
    b = t["bfloat16"]
    k = results.get("kernels")
    rows = [
        "| Recipe (10 epochs, 160×160, MobileNetV2 1.0) | Wall time | Speed-up | Validation accuracy | Peak memory |",
        "|---|---:|---:|---:|---:|",
        f"| Standard (`image_dataset_from_directory` + `fit`, augmentation) | {s['seconds']:.0f} s | 1.0× | {s['val_accuracy']:.1%} | {s['peak_memory_mb']:.0f} MB |",
        f"| Cached features (extraction {c['extract_seconds']:.0f} s + head {c['head_seconds']:.1f} s) | {c['seconds']:.0f} s | {s['seconds'] / c['seconds']:.1f}× | {c['val_accuracy']:.1%} | {c['peak_memory_mb']:.0f} MB |",
        f"| Cached features + 2 augmented passes | {ca['seconds']:.0f} s | {s['seconds'] / ca['seconds']:.1f}× | {ca['val_accuracy']:.1%} | {ca['peak_memory_mb']:.0f} MB |",
        f"| Fine-tuning from layer 100, BatchNorm frozen (after the cached head), on images | {f['seconds']:.0f} s | 1.0× | {f['val_accuracy']:.1%} (from {f['val_accuracy_before']:.1%}) | {f['peak_memory_mb']:.0f} MB |",
        f"| The same on cached activations (cache {fc['cache_seconds']:.0f} s, {fc['cache_mb']:.0f} MB float16, {fc['augment_passes']} augmented passes) | {fc['seconds']:.0f} s | {f['seconds'] / fc['seconds']:.1f}× | {fc['val_accuracy']:.1%} (from {fc['val_accuracy_before']:.1%}) | {fc['peak_memory_mb']:.0f} MB |",
        "",
        "| Images per second through the frozen base, first pass over 3,000 JPEGs (median of 3 alternating rounds) | |",
        "|---|---:|",
        f"| `model.predict` over `image_dataset_from_directory`, end to end | {t['baseline_images_per_s']:.0f} |",
        f"| tlhelpers `extract_features`, end to end, cold (every file checked: Pillow reads its header, the pass itself decodes it; BatchNorm folded; Keras' own decoding, in parallel) | {t['tlhelpers_images_per_s']:.0f} ({t['speedup']:.2f}×; {t['share_of_folded_base']:.0%} of the folded base alone) |",
        f"| the same on a folder checked before (the scan reads its cache) | {t['tlhelpers_checked_images_per_s']:.0f} ({t['tlhelpers_checked_images_per_s'] / t['baseline_images_per_s']:.2f}×; {t['share_of_folded_base_checked']:.0%}) |",
        f"| the base alone, graph mode, tensors in memory | {t['base_alone_images_per_s']:.0f} |",
        f"| the base alone with BatchNorm folded into the convolutions (what `extract_features` runs) | {t['folded_base_alone_images_per_s']:.0f} |",
        f"| the tlhelpers input pipeline alone | {t['pipeline_alone_images_per_s']:.0f} |",
        f"| share of time the base waits for input (tlhelpers pipeline) | {t['base_waits_for_input_share']:.0%} |",
        f"| `scan_image_tree` over the 3,000 files, cold, TensorFlow's decode check included (seconds) | {t['scan_cold_seconds']:.1f} s |",
        f"| speed-up per round, cold route | {', '.join(f'{x:.2f}×' for x in t['speedup_per_round'])} |",
        f"| the base in bfloat16 against float32 (this CPU {'has' if b['cpu_has_avx512_bf16'] or b['cpu_has_amx_bf16'] else 'has no'} bfloat16 instructions) | {b['bfloat16_images_per_s'] / b['float32_images_per_s']:.2f}× (features within {b['feature_relative_error']:.1%}) |",
    ]
    d = results.get("decoders")
    if d:
        rows += [
            "",
            f'| Decoding {d["images"]:,} validation JPEGs at 160×160 (median of 3 alternating rounds) | Keras\' own (default) | reduced-scale (`decode="fast"`) | fast / Keras |',
            "|---|---:|---:|---:|",
            f"| the pipeline alone, images per second | {d['pipeline_keras_images_per_s']:.0f} | {d['pipeline_fast_images_per_s']:.0f} | {d['pipeline_speedup_fast']:.2f}× |",
            f"| `extract_features` first pass, cold, images per second | {d['first_pass_keras_images_per_s']:.0f} | {d['first_pass_fast_images_per_s']:.0f} | {d['first_pass_speedup_fast']:.2f}× |",
            f"| pixels against Keras' loader: mean / largest absolute difference (levels of 255) | 0 / 0 | {d['pixel_mean_abs_difference']:.2f} / {d['pixel_max_abs_difference']:.0f} | |",
            f"| predictions of a head trained on Keras-decoded features that change class | | {d['predictions_changed']} of {d['images']:,} | |",
            f"| accuracy of that classifier | {d['accuracy_keras_decoded']:.1%} | {d['accuracy_fast_decoded']:.1%} | |",
        ]
    if k:
        rows += [
            "",
            f"| TensorFlow's oneDNN CPU kernels (images per second; median of 2 alternating rounds; on by default here: {'yes' if k['onednn_by_default'] else 'no'}) | off | on | on / off |",
            "|---|---:|---:|---:|",
            *(
                f"| {label} | {k['off'][key]:.0f} | {k['on'][key]:.0f} | {k['speedup'][key]:.2f}× |"
                for label, key in (
                    ("the base alone, tensors in memory", "base_alone_images_per_s"),
                    ("the folded base alone", "folded_base_alone_images_per_s"),
                    ("fine-tuning from layer 100 (training steps)", "fine_tune_images_per_s"),
                )
            ),
        ]
    cpu = [(name, results[name]["cpu"]) for name in PHASES if "cpu" in results.get(name, {})]
    if cpu:
        rows += [
            "",
            "| CPU each phase got (its process, in its own run) | cores kept busy, on average | machine time taken by other guests (steal) |",
            "|---|---:|---:|",
            *(
                f"| `{name}` | {c['busy_cores']:.2f} of {results['machine']['cpus']} | "
                + (f"{c['machine_steal_share']:.1%}" if "machine_steal_share" in c else "n/a")
                + " |"
                for name, c in cpu
            ),
        ]
    return "\n".join(rows) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--phase", choices=[*PHASES, "kernel_probe"], help="run one phase in this process (used internally)")
    parser.add_argument("--data", help="the dataset folder (default: cats_and_dogs_filtered from the kit)")
    parser.add_argument("--out", default=str(HERE / "results.json"))
    parser.add_argument("--only", nargs="+", choices=PHASES, help="re-run these phases, keeping the others' results from --out")
    args = parser.parse_args(argv)

    import tlhelpers as tl

    data = Path(args.data) if args.data else tl.dataset_path("cats_and_dogs_filtered")
    if args.phase:
        print(json.dumps(run_phase(args.phase, data)))
        return 0

    results = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version()}}
    if args.only:
        results = json.loads(Path(args.out).read_text())
    for name in args.only or PHASES:
        with tempfile.TemporaryDirectory() as home:  # cold caches for every phase
            env = {**os.environ, "TLHELPERS_HOME": home, "TFHUB_CACHE_DIR": str(tl.core.hub_cache_dir())}
            env["TF_ENABLE_ONEDNN_OPTS"] = ONEDNN
            print(f"[{time.strftime('%H:%M:%S')}] {name} ...", flush=True)
            times, jiffies, start = os.times(), _machine_jiffies(), time.perf_counter()
            proc = _in_own_process(name, data, env)
            wall, after = time.perf_counter() - start, os.times()
            if proc.returncode:
                print(proc.stderr[-3000:], file=sys.stderr)
                return proc.returncode
            results[name] = _result(proc)
            children = (after.children_user - times.children_user, after.children_system - times.children_system)
            results[name]["cpu"] = _cpu_record(wall, children, jiffies, _machine_jiffies())
            print(f"    {json.dumps(results[name])}", flush=True)
    import tensorflow as tf

    results["machine"]["tensorflow"] = tf.__version__
    results["machine"]["tf_enable_onednn_opts"] = ONEDNN
    results["machine"]["cpu"] = _cpuinfo("model name") or platform.processor()
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    table = _markdown(results)
    Path(args.out).with_suffix(".md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
