"""Cached bottleneck features: hits, misses, damaged files, and heads that fit the base."""

from __future__ import annotations

import os
import time

import keras
import numpy as np
import pytest

import tlhelpers as tl
from tlhelpers import features
from tlhelpers.passes import pad_batch

from helpers import fresh_classifier


@pytest.fixture(scope="module")
def base():
    return tl.get_base_model("MobileNetV2", alpha=0.35, input_shape=(96, 96, 3))


def test_features_are_cached_and_reused(base, copy_tree, isolated_home):
    tree = copy_tree(per_class=4)
    first = tl.extract_features(base, tree, verbose=False)
    assert not first.from_cache and first.features.shape == (8, 1280)
    assert first.cache_file.exists() and first.cache_file.is_relative_to(isolated_home)
    second = tl.extract_features(base, tree, verbose=False)
    assert second.from_cache
    np.testing.assert_array_equal(second.features, first.features)
    assert second.files == first.files and second.class_names == ["cats", "dogs"]


def test_features_equal_the_keras_reference_pipeline(trained, sample):
    """tlhelpers' cached features against plain Keras: image_dataset_from_directory,
    mobilenet_v2.preprocess_input and MobileNetV2(pooling="avg"). The same pixels go in,
    so the vectors differ only by the rounding of BatchNorm folded into the convolutions
    (about 1e-6 of their size); preprocessing applied twice or not at all is off by
    10-100%, and the fast decoder by about 1%."""
    folder = sample / "validation"
    fs = trained.val
    reference = keras.applications.MobileNetV2(include_top=False, pooling="avg", input_shape=(160, 160, 3))
    ds = keras.utils.image_dataset_from_directory(folder, image_size=(160, 160), shuffle=False, verbose=False)
    assert [str(p) for p in ds.file_paths] == fs.files
    expected = reference.predict(ds.map(lambda x, y: keras.applications.mobilenet_v2.preprocess_input(x)), verbose=0)
    relative = np.linalg.norm(fs.features - expected, axis=1) / np.linalg.norm(expected, axis=1)
    assert relative.max() < 1e-4
    fast = tl.extract_features(trained.base, folder, verbose=False, cache=False, decode="fast")
    relative_fast = np.linalg.norm(fast.features - expected, axis=1) / np.linalg.norm(expected, axis=1)
    assert 1e-3 < np.median(relative_fast) < 0.05


def test_every_key_input_changes_the_key(base, copy_tree, isolated_home):
    tree = copy_tree(per_class=3)
    fs = tl.extract_features(base, tree, verbose=False)
    key = fs.cache_file.stem
    aug = tl.augmentation_layers(seed=1)
    files = [tree / "cats" / p for p in sorted(os.listdir(tree / "cats"))] + [
        tree / "dogs" / p for p in sorted(os.listdir(tree / "dogs"))
    ]
    assert features.feature_key(base, files, (96, 96), "MobileNetV2") == key
    variants = {
        "image size": features.feature_key(base, files, (64, 64), "MobileNetV2"),
        "preprocessing": features.feature_key(base, files, (96, 96), "ResNet50"),
        "augmentation passes": features.feature_key(base, files, (96, 96), "MobileNetV2", aug, 2),
        "file list": features.feature_key(base, files[:-1], (96, 96), "MobileNetV2"),
        "decoder": features.feature_key(base, files, (96, 96), "MobileNetV2", decode="fast"),
        "interpolation": features.feature_key(base, files, (96, 96), "MobileNetV2", interpolation="area"),
    }
    other_alpha = tl.get_base_model("MobileNetV2", alpha=1.0, input_shape=(96, 96, 3))
    variants["network and alpha"] = features.feature_key(other_alpha, files, (96, 96), "MobileNetV2")
    assert key not in variants.values() and len(set(variants.values())) == len(variants)
    # changed weights (same architecture) -> miss
    weights = base.get_weights()
    try:
        base.set_weights([w + 0.01 if i == 0 else w for i, w in enumerate(weights)])
        assert features.feature_key(base, files, (96, 96), "MobileNetV2") != key
    finally:
        base.set_weights(weights)
    # a file edited in place (new content, new mtime) -> miss, and the features are recomputed
    time.sleep(0.01)
    files[0].write_bytes(files[1].read_bytes())
    again = tl.extract_features(base, tree, verbose=False)
    assert not again.from_cache and again.cache_file.stem != key
    np.testing.assert_allclose(again.features[0], again.features[1], atol=1e-5)


@pytest.mark.parametrize("damage", ["truncate", "garbage", "flip_values"])
def test_a_damaged_cache_file_is_rebuilt_not_trusted(base, copy_tree, isolated_home, damage):
    tree = copy_tree(per_class=2)
    fs = tl.extract_features(base, tree, verbose=False)
    raw = fs.cache_file.read_bytes()
    if damage == "truncate":
        fs.cache_file.write_bytes(raw[: len(raw) // 2])
    elif damage == "garbage":
        fs.cache_file.write_bytes(b"not a numpy file")
    else:
        data = dict(np.load(fs.cache_file))
        data["features"] = data["features"] * 0  # valid file, wrong numbers
        np.savez(fs.cache_file, **data)
    rebuilt = tl.extract_features(base, tree, verbose=False)
    assert not rebuilt.from_cache
    np.testing.assert_allclose(rebuilt.features, fs.features, atol=1e-5)
    assert tl.extract_features(base, tree, verbose=False).from_cache


def test_augmented_passes_are_cached_alongside(base, copy_tree, isolated_home):
    tree = copy_tree(per_class=2)
    aug = tl.augmentation_layers(seed=3)
    with pytest.raises(ValueError, match="augmentation layer"):
        tl.extract_features(base, tree, augment_passes=2, verbose=False)
    fs = tl.extract_features(base, tree, augmentation=aug, augment_passes=2, verbose=False)
    assert fs.augmented.shape == (2, 4, 1280)
    assert not np.allclose(fs.augmented[0], fs.features) and not np.allclose(fs.augmented[0], fs.augmented[1])
    x, y = fs.training_arrays()
    assert x.shape == (12, 1280) and y.tolist() == fs.labels.tolist() * 3
    again = tl.extract_features(base, tree, augmentation=aug, augment_passes=2, verbose=False)
    assert again.from_cache
    np.testing.assert_array_equal(again.augmented, fs.augmented)


def test_head_trained_on_features_drops_onto_the_base(trained, sample):
    assert trained.history.history["val_accuracy"][-1] >= 0.8  # 40 real images per class
    ds = tl.load_image_dataset(sample / "validation", image_size=(160, 160), shuffle=False)
    np.testing.assert_allclose(
        trained.model.predict(ds, verbose=0), trained.head.predict(trained.val.features, verbose=0), atol=1e-4
    )
    # and it fine-tunes from there: the unfrozen convolutions move, the rest of the base
    # and every BatchNorm statistic stay put, and accuracy holds
    model, base = fresh_classifier(trained)
    tl.unfreeze(base, 100)
    model.compile(keras.optimizers.RMSprop(1e-5), "sparse_categorical_crossentropy", metrics=["accuracy"])
    snapshot = {layer.name: [w.numpy().copy() for w in layer.weights] for layer in base.layers}
    history = model.fit(tl.load_image_dataset(sample / "train", image_size=(160, 160), seed=0), epochs=2, verbose=0)
    moved = {
        name
        for name, ws in snapshot.items()
        if any(not np.array_equal(w.numpy(), o) for w, o in zip(base.get_layer(name).weights, ws))
    }
    tuned = {layer.name for layer in base.layers[100:] if layer.trainable_weights}
    assert moved == tuned and tuned
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert model.evaluate(ds, verbose=0)[1] >= 0.8


def test_quickstart_runs_end_to_end(tmp_path, isolated_home, capsys):
    from tlhelpers import quickstart

    assert quickstart.main(["--out", str(tmp_path / "out"), "--epochs", "5"]) == 0
    out = capsys.readouterr().out
    assert (tmp_path / "out" / "predictions.png").stat().st_size > 10_000
    reloaded = keras.saving.load_model(tmp_path / "out" / "model.keras", safe_mode=True)
    assert reloaded.output.shape == (None, 2)
    accuracy = float(out.split("test photos, read from their files: accuracy ")[1].split()[0])
    assert accuracy >= 0.8


def test_features_of_a_split_are_exactly_its_photos(base, copy_tree, isolated_home):
    """Given a split made by load_image_dataset, extract_features takes exactly its files, in
    its order, with its labels: the split is made in one place, with one seed, and no
    validation photo can end up in the training features."""
    tree = copy_tree(per_class=5)
    train_ds, val_ds = tl.load_image_dataset(tree, image_size=(96, 96), validation_split=0.3, subset="both", seed=4)
    train_fs = tl.extract_features(base, train_ds, verbose=False)
    val_fs = tl.extract_features(base, val_ds, verbose=False)
    assert val_fs.files == val_ds.file_paths and len(val_fs.files) == 3 and len(train_fs.files) == 7
    assert sorted(train_fs.files) == sorted(train_ds.file_paths) and not set(val_fs.files) & set(train_fs.files)
    labels = np.concatenate([y.numpy() for _, y in val_ds])
    assert val_fs.labels.tolist() == labels.tolist() == val_ds.labels.tolist()
    # the rows are the photos': the same vector as the folder-wide extraction gives each file
    whole = tl.extract_features(base, tree, verbose=False)
    row = {f: v for f, v in zip(whole.files, whole.features)}
    np.testing.assert_allclose(val_fs.features, [row[f] for f in val_fs.files], atol=1e-5)


def test_a_short_last_batch_is_padded_and_traced_once(base, copy_tree, isolated_home):
    """8 images in batches of 3: the last batch (2 images) is padded, so the compiled step
    is traced once, and every image's vector is what it is in one batch of 8."""
    tree = copy_tree(per_class=4)
    features._EXTRACTORS.clear()
    in_threes = tl.extract_features(base, tree, batch_size=3, cache=False, verbose=False)
    (step,) = [v[1] for k, v in features._EXTRACTORS.items() if len(k) == 4]
    assert step.experimental_get_tracing_count() == 1
    whole = tl.extract_features(base, tree, batch_size=8, cache=False, verbose=False)
    assert in_threes.features.shape == whole.features.shape == (8, 1280)
    np.testing.assert_allclose(in_threes.features, whole.features, rtol=1e-4, atol=1e-5)


def test_pad_batch_pads_with_zeros_and_counts_the_real_images():
    images = np.arange(2 * 2 * 2 * 3, dtype="float32").reshape(2, 2, 2, 3) + 1
    padded, count = pad_batch(images, 5)
    assert count == 2 and tuple(padded.shape) == (5, 2, 2, 3)
    np.testing.assert_array_equal(np.asarray(padded)[:2], images)
    assert not np.asarray(padded)[2:].any()
    full, count = pad_batch(images, 2)
    assert count == 2 and full is images


def test_grouped_steps_train_the_head_exactly_as_single_steps(base, copy_tree, isolated_home):
    """steps_per_execution only groups steps into one compiled call: the same updates."""
    fs = tl.extract_features(base, copy_tree(per_class=20), verbose=False)
    single, h1 = tl.train_head(fs, fs, epochs=3, batch_size=4, seed=0, steps_per_execution=1)
    grouped, h64 = tl.train_head(fs, fs, epochs=3, batch_size=4, seed=0)
    np.testing.assert_allclose(h64.history["loss"], h1.history["loss"], rtol=1e-5)
    for a, b in zip(grouped.get_weights(), single.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_the_first_pass_does_the_scans_decode_check(base, copy_tree, isolated_home, monkeypatch):
    """extract_features decodes every new file once, not twice: the scan leaves TensorFlow's
    check to the first pass, which drops a file that fails, records it as corrupt and scans
    again; a later scan reads every verdict from the cache."""
    from tlhelpers import scan

    tree = copy_tree(per_class=4)
    raw = next((tree / "cats").glob("*.jpg")).read_bytes()
    truncated = tree / "cats" / "truncated.jpg"
    truncated.write_bytes(raw[: len(raw) // 2])  # Pillow reads its header; TensorFlow cannot decode it
    checked = []
    real_undecodable = scan._undecodable
    monkeypatch.setattr(scan, "_undecodable", lambda files, workers: checked.extend(files) or real_undecodable(files, workers))

    fs = tl.extract_features(base, tree, verbose=False, cache=False)
    assert not checked, "the scan decoded files the first pass decodes anyway"
    assert str(truncated) not in fs.files and len(fs.files) == 8 and fs.features.shape == (8, 1280)
    assert fs.labels.tolist() == [0, 0, 0, 0, 1, 1, 1, 1]

    report = tl.scan_image_tree(tree)
    assert not checked, "the verdicts of the first pass were not stored"
    assert report.skipped == {scan.CORRUPT: [truncated]}
    assert [str(f) for f in report.files] == fs.files
    # The same vectors as a pass over the good files alone.
    good = tl.extract_features(base, tree, verbose=False, cache=False)
    np.testing.assert_array_equal(good.features, fs.features)


def test_activation_cache_drops_a_file_that_does_not_decode(copy_tree, isolated_home):
    base = tl.get_base_model("MobileNetV2", alpha=0.35, input_shape=(96, 96, 3))
    model = tl.build_classifier(base, 2)
    tl.unfreeze(base, 100)
    tree = copy_tree(per_class=3)
    raw = next((tree / "dogs").glob("*.jpg")).read_bytes()
    (tree / "dogs" / "truncated.jpg").write_bytes(raw[: len(raw) // 2])
    acts = tl.ActivationCache(model, 100).extract(tree)
    assert acts.num_images == 6 and not any(f.endswith("truncated.jpg") for f in acts.files)
    assert all(len(x) == 6 for x in acts.inputs) and acts.labels.tolist() == [0, 0, 0, 1, 1, 1]
