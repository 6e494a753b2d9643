"""Image-tree checks (tlhelpers.scan) and tf.data loading (tlhelpers.data) on real photos and generated bad files."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import keras
import numpy as np
import pytest
from PIL import Image

import tlhelpers as tl
from tlhelpers import decode, scan
from tlhelpers.data import load_image_files, load_splits

from helpers import SAMPLE


def test_sample_loads_as_batched_float_images(sample):
    ds = tl.load_image_dataset(sample / "train", image_size=(160, 160), batch_size=16, seed=0)
    assert ds.class_names == ["cats", "dogs"]
    images, labels = next(iter(ds))
    assert images.shape == (16, 160, 160, 3) and images.dtype.name == "float32"
    assert 0 <= float(images.numpy().min()) and float(images.numpy().max()) <= 255
    assert float(images.numpy().max()) > 200  # real pixels, not [0, 1]
    all_labels = np.concatenate([y.numpy() for _, y in ds])
    assert len(all_labels) == 80 and np.bincount(all_labels).tolist() == [40, 40]
    # a shuffled training set mixes the classes within a batch
    assert 0 < labels.numpy().mean() < 1


def test_unshuffled_order_follows_file_paths(sample):
    ds = tl.load_image_dataset(sample / "validation", image_size=(96, 96), shuffle=False)
    labels = np.concatenate([y.numpy() for _, y in ds])
    assert [Path(p).parent.name for p in ds.file_paths] == [
        ds.class_names[i] for i in labels
    ] and ds.labels.tolist() == labels.tolist()


@pytest.fixture(scope="module")
def kit_photos(tmp_path_factory):
    """100 of Google's cats_and_dogs_filtered validation photos (50 per class, from the installed kit), linked into a tree."""
    source = tl.dataset_path("cats_and_dogs_filtered") / "validation"
    tree = tmp_path_factory.mktemp("kit_photos")
    for cls in ("cats", "dogs"):
        (tree / cls).mkdir()
        for f in sorted((source / cls).iterdir())[:50]:
            (tree / cls / f.name).symlink_to(f)
    return tree


@pytest.mark.parametrize("interpolation", ["bilinear", "area"])
def test_the_pixels_are_those_of_keras_own_loader(kit_photos, interpolation):
    """By default load_image_dataset gives exactly image_dataset_from_directory's pixels, so
    a model trained on them sees the same numbers from Keras' loader or a TensorFlow server;
    decode="fast" (reduced-scale JPEG decoding) is an opt-in that changes them."""
    kwargs = dict(image_size=(160, 160), shuffle=False, interpolation=interpolation)
    ours = tl.load_image_dataset(kit_photos, cache=False, **kwargs)
    theirs = keras.utils.image_dataset_from_directory(kit_photos, verbose=False, **kwargs)
    assert ours.file_paths == list(theirs.file_paths)
    a = np.concatenate([x.numpy() for x, _ in ours])
    b = np.concatenate([x.numpy() for x, _ in theirs])
    assert a.shape == (100, 160, 160, 3)
    np.testing.assert_array_equal(a, b)
    fast = np.concatenate([x.numpy() for x, _ in tl.load_image_dataset(kit_photos, decode="fast", cache=False, **kwargs)])
    assert 0.5 < np.abs(fast - b).mean() < 10  # other pixels, the same photos


def test_shuffling_is_reproducible_with_a_seed(sample):
    def order(seed):
        ds = tl.load_image_dataset(sample / "train", image_size=(32, 32), seed=seed, cache=False)
        return np.concatenate([y.numpy() for _, y in ds])

    assert np.array_equal(order(3), order(3))
    assert not np.array_equal(order(3), order(4))


@pytest.mark.parametrize("how", decode.DECODERS)
def test_pipelines_decode_in_parallel_without_the_autotuner(sample, how):
    """tf.data's autotuner is off (its background work stalled the deletion of iterators
    for seconds); the parallel pipeline gives the images of a one-by-one decode, in order."""
    import tensorflow as tf

    files = tl.scan_image_tree(sample / "validation").files
    ds = load_image_files(files, None, (96, 96), batch_size=8, cache=False, decode=how)
    assert ds.options().autotune.enabled is False
    assert tl.load_image_dataset(sample / "validation", image_size=(96, 96)).options().autotune.enabled is False
    batched = np.concatenate([images.numpy() for images in ds])
    one_by_one = [decode.decode_resize(tf.constant(str(f)), decode.looks_like_jpeg(f), (96, 96), how).numpy() for f in files]
    assert batched.shape == (40, 96, 96, 3) and batched.dtype == np.float32
    np.testing.assert_array_equal(batched, np.stack(one_by_one).astype("float32"))
    with pytest.raises(ValueError, match="decode must be one of"):
        load_image_files(files, None, decode="pillow")


def test_validation_split_is_disjoint_complete_and_keras_own(sample):
    train, val = tl.load_image_dataset(
        sample / "train", image_size=(32, 32), validation_split=0.25, subset="both", seed=5, shuffle=False
    )
    assert len(set(train.file_paths) & set(val.file_paths)) == 0
    assert len(train.file_paths) == 60 and len(val.file_paths) == 20
    again = tl.load_image_dataset(sample / "train", image_size=(32, 32), validation_split=0.25, subset="validation", seed=5)
    assert again.file_paths == val.file_paths
    # the same subsets as Keras' loader makes with the same seed
    k_train, k_val = keras.utils.image_dataset_from_directory(
        sample / "train", image_size=(32, 32), validation_split=0.25, subset="both", seed=5, verbose=False
    )
    assert list(k_val.file_paths) == val.file_paths and sorted(k_train.file_paths) == sorted(train.file_paths)
    with pytest.raises(ValueError, match="seed"):
        tl.load_image_dataset(sample / "train", validation_split=0.2, subset="training")
    with pytest.raises(ValueError, match="together"):
        tl.load_image_dataset(sample / "train", validation_split=0.2, seed=1)


def test_the_collection_splits_by_one_rule(sample):
    """load_splits: train/ for training; validation/ halved by the seed into validation and
    test (Keras' split with validation_split=0.5); a one-folder dataset holds out 30% first."""
    splits = load_splits(sample, seed=42, image_size=(32, 32))
    assert [len(s.file_paths) for s in splits] == [80, 20, 20]
    assert not set(splits.validation.file_paths) & set(splits.test.file_paths)
    assert all(Path(f).parts[-3] == "validation" for f in splits.validation.file_paths + splits.test.file_paths)
    _, k_test = keras.utils.image_dataset_from_directory(
        sample / "validation", image_size=(32, 32), validation_split=0.5, subset="both", seed=42, verbose=False
    )
    assert splits.test.file_paths == list(k_test.file_paths)
    again = load_splits(sample, seed=42, image_size=(32, 32))
    assert again.test.file_paths == splits.test.file_paths
    assert load_splits(sample, seed=7, image_size=(32, 32)).test.file_paths != splits.test.file_paths

    flowers = load_splits("flower_photos", seed=42, image_size=(32, 32), verbose=False)
    files = [set(s.file_paths) for s in flowers]
    assert [len(f) for f in files] == [1050, 225, 225]
    assert not (files[0] & files[1] or files[0] & files[2] or files[1] & files[2])
    assert flowers.test.class_names == flowers.train.class_names == ["daisy", "dandelion", "roses", "sunflowers", "tulips"]
    with pytest.raises(TypeError):
        load_splits(sample)  # the seed is not optional


def test_named_dataset_split_resolves_to_the_installed_kit():
    ds = tl.load_image_dataset("cats_and_dogs_filtered/validation", image_size=(32, 32), shuffle=False)
    assert ds.class_names == ["cats", "dogs"] and len(ds.file_paths) == 1000


def test_missing_and_non_folder_paths(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist.*one sub-folder of images per class"):
        tl.load_image_dataset(tmp_path / "nope")
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(FileNotFoundError, match="it is a file"):
        tl.scan_image_tree(tmp_path / "file.txt")


def test_empty_folder_and_single_class_are_clear_errors(tmp_path, copy_tree):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="at least two class folders.*found none"):
        tl.load_image_dataset(tmp_path / "empty")
    single = copy_tree(classes=("cats",))
    with pytest.raises(ValueError, match=r"at least two class folders.*cats \(6 images\)"):
        tl.load_image_dataset(single)


def test_parent_of_splits_is_recognised(sample):
    with pytest.raises(ValueError, match="holds the splits.*pass one of them"):
        tl.scan_image_tree(sample)


def _write_bad_files(tree: Path) -> dict[str, Path]:
    """One file of every kind of trouble, next to the good images; returns them by kind."""
    good = next((tree / "cats").glob("*.jpg"))
    rgb = Image.open(good).convert("RGB")
    files = {
        "truncated": tree / "cats" / "truncated.jpg",
        "text": tree / "dogs" / "notes.jpg",
        "empty_file": tree / "dogs" / "zero.png",
        "alpha_png": tree / "cats" / "alpha.png",
        "gray": tree / "dogs" / "gray.jpg",
        "cmyk": tree / "cats" / "cmyk.jpg",
        "palette_gif": tree / "dogs" / "palette.gif",
        "tiny": tree / "cats" / "tiny.jpg",
        "ds_store": tree / ".DS_Store",
        "hidden_in_class": tree / "cats" / "._cat.1.jpg",
        "checkpoints": tree / "dogs" / ".ipynb_checkpoints" / "dog.jpg",
        "nested": tree / "dogs" / "more" / "nested.jpg",
        "readme": tree / "cats" / "README.txt",
        "loose": tree / "loose.jpg",
    }
    raw = good.read_bytes()
    files["truncated"].write_bytes(raw[: len(raw) // 2])
    files["text"].write_text("this is not a picture")
    files["empty_file"].write_bytes(b"")
    alpha = rgb.convert("RGBA")
    alpha.putalpha(Image.new("L", rgb.size, 0))  # fully transparent: should become white
    alpha.save(files["alpha_png"])
    rgb.convert("L").save(files["gray"])
    rgb.convert("CMYK").save(files["cmyk"])
    rgb.convert("P").save(files["palette_gif"])
    rgb.resize((8, 8)).save(files["tiny"])
    files["ds_store"].write_bytes(b"\x00\x01binary")
    files["hidden_in_class"].write_bytes(b"\x00\x05\x16\x07 resource fork")
    files["checkpoints"].parent.mkdir()
    shutil.copy(good, files["checkpoints"])
    files["nested"].parent.mkdir()
    shutil.copy(good, files["nested"])
    files["readme"].write_text("about these photos")
    shutil.copy(good, files["loose"])
    (tree / "birds").mkdir()  # an empty class folder
    return files


def test_every_kind_of_bad_file_is_handled_and_reported(copy_tree, isolated_home):
    tree = copy_tree(per_class=5)
    bad = _write_bad_files(tree)
    report = tl.scan_image_tree(tree)
    assert report.class_names == ["cats", "dogs"]  # the empty 'birds' folder is ignored
    assert report.empty_classes == ["birds"]
    skipped = {p: reason for reason, paths in report.skipped.items() for p in paths}
    assert skipped[bad["truncated"]] == scan.CORRUPT
    assert skipped[bad["text"]] == scan.NOT_IMAGE
    assert skipped[bad["empty_file"]] == scan.NOT_IMAGE
    assert skipped[bad["tiny"]].startswith(scan.TOO_SMALL)
    assert skipped[bad["ds_store"]] == scan.HIDDEN
    assert skipped[bad["hidden_in_class"]] == scan.HIDDEN
    assert skipped[bad["checkpoints"].parent] == scan.HIDDEN
    assert skipped[bad["readme"]] == scan.OTHER_EXTENSION
    assert skipped[bad["loose"]] == scan.NOT_IN_CLASS
    converted = {p for paths in report.converted.values() for p in paths}
    assert {bad["alpha_png"], bad["cmyk"], bad["palette_gif"]} <= converted
    assert bad["gray"] in report.sources and bad["gray"] not in converted  # TensorFlow expands grayscale itself
    assert bad["nested"] in report.nested and bad["nested"] in report.sources
    assert report.class_counts == {"cats": 5 + 2, "dogs": 5 + 3}  # alpha+cmyk; gray+gif+nested
    text = report.summary()
    for name in ("truncated.jpg", "notes.jpg", "tiny.jpg", ".DS_Store", "birds", "cmyk.jpg", "nested.jpg"):
        assert name in text


def test_converted_images_are_rgb_with_alpha_on_white(copy_tree, isolated_home):
    tree = copy_tree(per_class=2)
    bad = _write_bad_files(tree)
    report = tl.scan_image_tree(tree)
    png = report.files[report.sources.index(bad["alpha_png"])]
    with Image.open(png) as img:
        assert img.mode == "RGB"
        assert np.asarray(img).min() == 255  # transparent everywhere -> white
    cmyk = report.files[report.sources.index(bad["cmyk"])]
    with Image.open(cmyk) as img, Image.open(next((tree / "cats").glob("cat.*.jpg"))) as orig:
        assert img.mode == "RGB" and img.size == orig.size


def test_training_on_a_messy_tree_never_fails_inside_fit(copy_tree, isolated_home, capsys):
    tree = copy_tree(per_class=4)
    _write_bad_files(tree)
    ds = tl.load_image_dataset(tree, image_size=(32, 32), batch_size=4, seed=0)
    printed = capsys.readouterr().out
    assert "skipped" in printed and "truncated.jpg" in printed and "converted" in printed
    model = keras.Sequential(
        [
            keras.Input((32, 32, 3)),
            keras.layers.Rescaling(1 / 255),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(2, activation="softmax"),
        ]
    )
    model.compile("adam", "sparse_categorical_crossentropy")
    history = model.fit(ds, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    n = sum(int(x.shape[0]) for x, _ in ds)
    assert n == len(ds.report.files) == 4 * 2 + 5


def test_class_folders_that_differ_between_splits(copy_tree):
    train = copy_tree("train", 3, ("cats", "dogs"))
    val = copy_tree("validation", 3, ("cats", "dogs"))
    (val / "dogs").rename(val / "dogz")  # a typo in one split
    train_ds = tl.load_image_dataset(train, image_size=(32, 32), seed=0)
    with pytest.raises(ValueError, match=r"missing from validation: \['dogs'\]; only in validation: \['dogz'\]"):
        tl.load_image_dataset(val, image_size=(32, 32), shuffle=False, class_names=train_ds.class_names)


def test_scan_results_are_cached_and_notice_changed_files(copy_tree, isolated_home):
    tree = copy_tree(per_class=3)
    first = tl.scan_image_tree(tree)
    assert not first.skipped
    victim = first.sources[0]
    victim.write_bytes(victim.read_bytes()[:200])  # damaged after the first scan
    second = tl.scan_image_tree(tree)
    assert victim in second.skipped[scan.CORRUPT]


def test_file_with_image_extension_but_png_bytes_decodes(copy_tree, isolated_home):
    tree = copy_tree(per_class=2)
    lying = tree / "cats" / "really_a_png.jpg"
    Image.open(next((tree / "cats").glob("*.jpg"))).save(lying, format="PNG")
    ds = tl.load_image_dataset(tree, image_size=(32, 32), shuffle=False)
    assert len(ds.file_paths) == 5
    assert sum(int(x.shape[0]) for x, _ in ds) == 5


def _pillow_only_jpeg(good: Path, dest: Path) -> Path:
    """A copy of ``good`` with a comment marker, whose length runs past the end, pasted into the
    middle of the compressed data: Pillow decodes it in full, TensorFlow's decoder rejects it."""
    raw = good.read_bytes()
    sos = raw.index(b"\xff\xda")
    middle = (sos + 2 + int.from_bytes(raw[sos + 2 : sos + 4], "big") + len(raw)) // 2
    dest.write_bytes(raw[:middle] + b"\xff\xfe\xff\xff" + raw[middle + 4 :])
    return dest


def test_files_pillow_decodes_but_tensorflow_rejects_are_skipped_by_name(copy_tree, isolated_home):
    tree = copy_tree(per_class=4)
    bad = _pillow_only_jpeg(next((tree / "cats").glob("*.jpg")), tree / "cats" / "pillow_only.jpg")
    with Image.open(bad) as img:
        img.load()  # Pillow is happy with it: only TensorFlow's check can catch it
    report = tl.scan_image_tree(tree)
    assert report.skipped == {scan.CORRUPT: [bad]}
    # Keras' decoder, and every scale of the fast one: 1 (224 px), 1/2 (96), 1/4 (48) and 1/8 (24) for these ~300 px photos
    ds = tl.load_image_dataset(tree, image_size=(224, 224), batch_size=3, seed=0, verbose=False)
    assert sum(int(x.shape[0]) for x, _ in ds) == 8
    for size in ((224, 224), (96, 96), (48, 48), (24, 24)):
        ds = tl.load_image_dataset(tree, image_size=size, batch_size=3, seed=0, verbose=False, decode="fast")
        assert sum(int(x.shape[0]) for x, _ in ds) == 8


def test_scan_checks_jpegs_with_the_pipelines_own_decoder(copy_tree, isolated_home, monkeypatch):
    import tensorflow as tf

    tree = copy_tree(per_class=2)
    for cls in ("cats", "dogs"):
        Image.open(next((tree / cls).glob("*.jpg"))).save(tree / cls / "picture.png")
    real = decode._decode_jpeg

    def fails_at_one_eighth(data, ratio):
        if ratio == 8:  # as if libjpeg failed on these files at 1/8 scale
            return tf.io.decode_jpeg(tf.constant(b"broken"), channels=3)
        return real(data, ratio)

    monkeypatch.setattr(decode, "_decode_jpeg", fails_at_one_eighth)
    report = tl.scan_image_tree(tree)
    assert sorted(p.name for p in report.sources) == ["picture.png", "picture.png"]
    assert len(report.skipped[scan.CORRUPT]) == 4
    ds = tl.load_image_dataset(tree, image_size=(16, 16), shuffle=False, verbose=False)  # 1/8 scale for JPEGs here
    assert sum(int(x.shape[0]) for x, _ in ds) == 2


def test_a_second_scan_decodes_nothing_that_is_unchanged(copy_tree, isolated_home, monkeypatch):
    tree = copy_tree(per_class=3)
    _pillow_only_jpeg(next((tree / "dogs").glob("*.jpg")), tree / "dogs" / "pillow_only.jpg")
    first = tl.scan_image_tree(tree)

    def no_decoding(files, workers):
        assert not files, f"decoded again: {files}"
        return []

    monkeypatch.setattr(scan, "_undecodable", no_decoding)
    second = tl.scan_image_tree(tree)
    assert second.skipped == first.skipped and second.files == first.files


def test_unreadable_files_are_skipped_by_name(copy_tree, isolated_home):
    tree = copy_tree(per_class=2)
    broken = tree / "cats" / "gone.jpg"
    broken.symlink_to(tree / "nowhere.jpg")
    pipe = tree / "dogs" / "pipe.jpg"
    os.mkfifo(pipe)  # opening it would wait forever for a writer
    report = tl.scan_image_tree(tree)
    assert report.skipped == {scan.UNREADABLE: [broken, pipe]}


def test_report_repr_is_a_short_summary(copy_tree, isolated_home):
    tree = copy_tree(per_class=40)
    for i in range(30):
        (tree / "dogs" / f"broken_{i:02d}.jpg").write_text("not a picture")
    report = tl.scan_image_tree(tree)
    assert len(report.sources) + report.num_skipped == 110
    text = repr(report)
    assert len(text.splitlines()) <= 15 and len(text) <= 2000
    assert "80 usable images" in text and "cats=40, dogs=40" in text
    assert "skipped 30 (not an image" in text and "broken_00.jpg" in text and "broken_29.jpg" not in text
    assert str(report.sources[-1]) not in text
    # many kinds of problem, many long names: still short
    many = scan.ImageTreeReport(
        root=tree,
        class_names=["cats", "dogs"],
        files=report.files,
        labels=report.labels,
        sources=report.sources,
        skipped={f"reason {k}": [tree / "cats" / ("x" * 200 + f"{k}_{i}.jpg") for i in range(50)] for k in range(40)},
    )
    text = repr(many)
    assert len(text.splitlines()) <= 15 and len(text) <= 2000
    assert "31 more kinds of problem" in text and "summary()" in text
    assert len(many.summary().splitlines()) == 41  # the summary lists them all


def test_file_names_that_are_not_utf8_are_skipped_by_name(copy_tree, isolated_home):
    tree = copy_tree(per_class=2)
    good = next((tree / "dogs").glob("*.jpg"))
    raw_name = os.fsencode(tree / "dogs") + b"/caf\xe9.jpg"  # Latin-1 bytes: not UTF-8
    shutil.copy(good, raw_name)
    report = tl.scan_image_tree(tree)
    assert report.skipped == {scan.BAD_NAME: [Path(os.fsdecode(raw_name))]}
    ds = tl.load_image_dataset(tree, image_size=(32, 32), verbose=False)
    assert sum(int(x.shape[0]) for x, _ in ds) == 4


def test_the_bundled_sample_is_a_named_dataset_that_ships_with_the_package():
    from tlhelpers import datasets

    folder = tl.dataset_path("cats_and_dogs_sample")
    assert folder == SAMPLE and folder.is_relative_to(Path(tl.__file__).parent)
    ds = tl.load_image_dataset("cats_and_dogs_sample/validation", image_size=(32, 32), shuffle=False)
    assert ds.class_names == ["cats", "dogs"] and len(ds.file_paths) == 40
    assert "cats_and_dogs_sample" in datasets.BUNDLED
