"""Image-tree checks and tf.data loading on the bundled sample and on generated bad files."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import keras
import numpy as np
import pytest
from PIL import Image

import tlhelpers as tl
from tlhelpers import data as tldata

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
    assert [Path(p).parent.name for p in ds.file_paths] == [ds.class_names[i] for i in labels]
    first = np.asarray(Image.open(ds.file_paths[0]).convert("RGB").resize((96, 96), Image.BILINEAR), "float32")
    got = next(iter(ds))[0][0].numpy()
    assert np.abs(got - first).mean() < 12  # same picture (resampling differs slightly)


def test_shuffling_is_reproducible_with_a_seed(sample):
    def order(seed):
        ds = tl.load_image_dataset(sample / "train", image_size=(32, 32), seed=seed, cache=False)
        return np.concatenate([y.numpy() for _, y in ds])

    assert np.array_equal(order(3), order(3))
    assert not np.array_equal(order(3), order(4))


def test_pipelines_decode_in_parallel_without_the_autotuner(sample):
    """tf.data's autotuner is off (its background work stalled the deletion of iterators
    for seconds); the parallel pipeline gives the images of a one-by-one decode, in order."""
    import tensorflow as tf

    files = tl.scan_image_tree(sample / "validation").files
    ds = tldata.images_dataset(files, None, (96, 96), batch_size=8, cache=False)
    assert ds.options().autotune.enabled is False
    assert tl.load_image_dataset(sample / "validation", image_size=(96, 96)).options().autotune.enabled is False
    batched = np.concatenate([images.numpy() for images in ds])
    one_by_one = [tldata._decode_resize(tf.constant(str(f)), tldata._looks_like_jpeg(str(f)), (96, 96)).numpy() for f in files]
    assert batched.shape == (40, 96, 96, 3)
    np.testing.assert_array_equal(batched, np.stack(one_by_one).astype("float32"))


def test_validation_split_is_disjoint_and_complete(sample):
    train, val = tl.load_image_dataset(
        sample / "train", image_size=(32, 32), validation_split=0.25, subset="both", seed=5, shuffle=False
    )
    assert len(set(train.file_paths) & set(val.file_paths)) == 0
    assert len(train.file_paths) == 60 and len(val.file_paths) == 20
    again = tl.load_image_dataset(sample / "train", image_size=(32, 32), validation_split=0.25, subset="validation", seed=5)
    assert again.file_paths == val.file_paths
    with pytest.raises(ValueError, match="seed"):
        tl.load_image_dataset(sample / "train", validation_split=0.2, subset="training")
    with pytest.raises(ValueError, match="together"):
        tl.load_image_dataset(sample / "train", validation_split=0.2, seed=1)


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
    assert skipped[bad["truncated"]] == tldata.CORRUPT
    assert skipped[bad["text"]] == tldata.NOT_IMAGE
    assert skipped[bad["empty_file"]] == tldata.NOT_IMAGE
    assert skipped[bad["tiny"]].startswith(tldata.TOO_SMALL)
    assert skipped[bad["ds_store"]] == tldata.HIDDEN
    assert skipped[bad["hidden_in_class"]] == tldata.HIDDEN
    assert skipped[bad["checkpoints"].parent] == tldata.HIDDEN
    assert skipped[bad["readme"]] == tldata.OTHER_EXTENSION
    assert skipped[bad["loose"]] == tldata.NOT_IN_CLASS
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
    assert victim in second.skipped[tldata.CORRUPT]


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
    assert report.skipped == {tldata.CORRUPT: [bad]}
    # every decoding scale of the pipeline: 1 (224 px), 1/2 (96), 1/4 (48) and 1/8 (24) for these ~300 px photos
    for size in ((224, 224), (96, 96), (48, 48), (24, 24)):
        ds = tl.load_image_dataset(tree, image_size=size, batch_size=3, seed=0, verbose=False)
        assert sum(int(x.shape[0]) for x, _ in ds) == 8


def test_scan_checks_jpegs_with_the_pipelines_own_decoder(copy_tree, isolated_home, monkeypatch):
    import tensorflow as tf

    tree = copy_tree(per_class=2)
    for cls in ("cats", "dogs"):
        Image.open(next((tree / cls).glob("*.jpg"))).save(tree / cls / "picture.png")
    decode = tldata._decode

    def fails_at_one_eighth(data, is_jpeg, ratio=1):
        if is_jpeg and ratio == 8:  # as if libjpeg failed on these files at 1/8 scale
            return tf.io.decode_jpeg(tf.constant(b"broken"), channels=3)
        return decode(data, is_jpeg, ratio)

    monkeypatch.setattr(tldata, "_decode", fails_at_one_eighth)
    report = tl.scan_image_tree(tree)
    assert sorted(p.name for p in report.sources) == ["picture.png", "picture.png"]
    assert len(report.skipped[tldata.CORRUPT]) == 4
    ds = tl.load_image_dataset(tree, image_size=(16, 16), shuffle=False, verbose=False)  # 1/8 scale for JPEGs here
    assert sum(int(x.shape[0]) for x, _ in ds) == 2


def test_a_second_scan_decodes_nothing_that_is_unchanged(copy_tree, isolated_home, monkeypatch):
    tree = copy_tree(per_class=3)
    _pillow_only_jpeg(next((tree / "dogs").glob("*.jpg")), tree / "dogs" / "pillow_only.jpg")
    first = tl.scan_image_tree(tree)

    def no_decoding(files, workers):
        assert not files, f"decoded again: {files}"
        return []

    monkeypatch.setattr(tldata, "_undecodable", no_decoding)
    second = tl.scan_image_tree(tree)
    assert second.skipped == first.skipped and second.files == first.files


def test_unreadable_files_are_skipped_by_name(copy_tree, isolated_home):
    tree = copy_tree(per_class=2)
    broken = tree / "cats" / "gone.jpg"
    broken.symlink_to(tree / "nowhere.jpg")
    pipe = tree / "dogs" / "pipe.jpg"
    os.mkfifo(pipe)  # opening it would wait forever for a writer
    report = tl.scan_image_tree(tree)
    assert report.skipped == {tldata.UNREADABLE: [broken, pipe]}


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
    many = tldata.ImageTreeReport(
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
    assert report.skipped == {tldata.BAD_NAME: [Path(os.fsdecode(raw_name))]}
    ds = tl.load_image_dataset(tree, image_size=(32, 32), verbose=False)
    assert sum(int(x.shape[0]) for x, _ in ds) == 4


def test_the_bundled_sample_is_a_named_dataset_that_ships_with_the_package():
    from tlhelpers import datasets

    folder = tl.dataset_path("cats_and_dogs_sample")
    assert folder == SAMPLE and folder.is_relative_to(Path(tl.__file__).parent)
    ds = tl.load_image_dataset("cats_and_dogs_sample/validation", image_size=(32, 32), shuffle=False)
    assert ds.class_names == ["cats", "dogs"] and len(ds.file_paths) == 40
    assert "cats_and_dogs_sample" in datasets.BUNDLED
