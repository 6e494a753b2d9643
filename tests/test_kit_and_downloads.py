"""The offline kit command, safe extraction and verified downloads."""

from __future__ import annotations

import functools
import hashlib
import http.server
import io
import os
import shutil
import subprocess
import sys
import tarfile
import threading
import zipfile
from pathlib import Path

import pytest

from tlhelpers import datasets, kit


def _kit_env(tmp_path) -> dict:
    return {
        **os.environ,
        "TLHELPERS_HOME": str(tmp_path / "home"),
        "KERAS_HOME": str(tmp_path / "keras"),
        "TFHUB_CACHE_DIR": "",
    }


def test_install_copies_weights_hub_and_datasets_and_follows_link_stubs(kit_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("TLHELPERS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.delenv("TFHUB_CACHE_DIR", raising=False)
    counts = kit.install(kit_dir)
    assert counts["keras"] == 12 and counts["datasets"] == 3000
    models = tmp_path / "keras" / "models"
    small = models / kit.mobilenet_v2_weights_name(1.0, 160, False)
    full = models / kit.mobilenet_v2_weights_name(1.0, 224, False)
    assert small.read_bytes()[:8] == b"\x89HDF\r\n\x1a\n" and kit.sha256(small) == kit.sha256(full)
    for handle in kit.HUB_HANDLES:
        assert (tmp_path / "home" / "tfhub_modules" / kit.hub_handle_dirname(handle) / "saved_model.pb").exists()
    assert len(list((tmp_path / "home" / "datasets" / "cats_and_dogs_filtered" / "train" / "cats").glob("*.jpg"))) == 1000
    assert kit.install(kit_dir) == {"keras": 0, "tfhub_modules": 0, "datasets": 0}  # already in place


def _tiny_kit(tmp_path) -> Path:
    src = tmp_path / "kit"
    (src / "keras" / "models").mkdir(parents=True)
    (src / "keras" / "models" / "weights.h5").write_bytes(b"real weights")
    (src / "keras" / "models" / "alias.h5").write_text("weights.h5")
    digest = hashlib.sha256(b"real weights").hexdigest()
    (src / "SHA256SUMS").write_text(f"{digest}  ./keras/models/weights.h5\n")
    return src


def test_command_line_install_and_damaged_kit(tmp_path):
    src = _tiny_kit(tmp_path)
    env = _kit_env(tmp_path)
    ok = subprocess.run([sys.executable, "-m", "tlhelpers.kit", "install", str(src)], capture_output=True, text=True, env=env)
    assert ok.returncode == 0, ok.stderr
    assert "keras: 2 file(s) copied" in ok.stdout
    assert (tmp_path / "keras" / "models" / "alias.h5").read_bytes() == b"real weights"
    (src / "keras" / "models" / "weights.h5").write_bytes(b"real weightz")
    (tmp_path / "keras" / "models" / "weights.h5").unlink()
    bad = subprocess.run([sys.executable, "-m", "tlhelpers.kit", "install", str(src)], capture_output=True, text=True, env=env)
    assert bad.returncode == 1 and "does not match its SHA256SUMS" in bad.stderr
    assert not (tmp_path / "keras" / "models" / "weights.h5").exists()


def test_install_refuses_a_folder_that_is_not_a_kit(tmp_path):
    with pytest.raises(FileNotFoundError, match="not an offline kit.*kit download"):
        kit.install(tmp_path)


def _zip_with(tmp_path, name: str) -> Path:
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("ok/file.txt", "fine")
        zf.writestr(name, "escaped")
    return archive


@pytest.mark.parametrize("member", ["../escaped.txt", "ok/../../escaped.txt", "/tmp/escaped_abs.txt"])
def test_safe_extract_refuses_paths_outside_the_target(tmp_path, member):
    archive = _zip_with(tmp_path, member)
    dest = tmp_path / "out"
    with pytest.raises(ValueError, match="escape"):
        datasets.safe_extract(archive, dest)
    assert not (tmp_path / "escaped.txt").exists()
    assert not (dest / "ok" / "file.txt").exists()  # nothing written at all


def test_safe_extract_refuses_tar_links_out(tmp_path):
    archive = tmp_path / "evil.tar"
    with tarfile.open(archive, "w") as tf:
        link = tarfile.TarInfo("data/link")
        link.type, link.linkname = tarfile.SYMTYPE, "../../etc/passwd"
        tf.addfile(link)
    with pytest.raises(ValueError, match="escape"):
        datasets.safe_extract(archive, tmp_path / "out")


def test_safe_extract_unpacks_a_good_archive(tmp_path):
    archive = tmp_path / "good.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        data = b"hello"
        info = tarfile.TarInfo("root/train/a/x.txt")
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    out = datasets.safe_extract(archive, tmp_path / "out")
    assert (out / "root" / "train" / "a" / "x.txt").read_bytes() == b"hello"


@pytest.fixture
def server(tmp_path):
    """A file server on the loopback interface, serving tmp_path/www."""
    www = tmp_path / "www"
    www.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(www))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield www, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    rewrite: str | None = None  # when set, every path under /models/ serves this file

    def translate_path(self, path):
        if self.rewrite and path.startswith("/models/"):
            path = self.rewrite
        return super().translate_path(path)

    def log_message(self, *args):
        pass


def test_download_verifies_checksum_and_leaves_nothing_on_failure(server, tmp_path):
    www, url = server
    (www / "a.bin").write_bytes(b"payload")
    good = hashlib.sha256(b"payload").hexdigest()
    dest = tmp_path / "dl" / "a.bin"
    dest.parent.mkdir()
    with pytest.raises(ValueError, match="checksum"):
        datasets.download_file(f"{url}/a.bin", dest, sha256="0" * 64)
    assert list(dest.parent.iterdir()) == []
    with pytest.raises(ValueError, match="expected 100 bytes, got 7"):
        datasets.download_file(f"{url}/a.bin", dest, size=100)
    assert list(dest.parent.iterdir()) == []
    with pytest.raises(OSError, match="Could not download"):
        datasets.download_file(f"{url}/missing.bin", dest, retries=1)
    assert list(dest.parent.iterdir()) == []
    assert datasets.download_file(f"{url}/a.bin", dest, size=7, sha256=good).read_bytes() == b"payload"


def test_fetch_installs_a_dataset_atomically_and_retries_after_failure(server, tmp_path, monkeypatch):
    www, url = server
    build = tmp_path / "build" / "toy"
    for split in ("train", "validation"):
        for cls in ("a", "b"):
            (build / split / cls).mkdir(parents=True)
            (build / split / cls / "x.txt").write_text(split + cls)
    archive = www / "toy.zip"
    shutil.make_archive(str(archive.with_suffix("")), "zip", build.parent, "toy")
    payload = archive.read_bytes()
    source = datasets.DatasetSource(url=f"{url}/toy.zip", size=len(payload), sha256="f" * 64, root="toy", splits=("train", "validation"))
    monkeypatch.setitem(datasets.DATASETS, "toy", source)
    target = tmp_path / "datasets"
    with pytest.raises(ValueError, match="checksum"):
        datasets.fetch("toy", target_dir=target)
    assert not (target / "toy").exists() and [p.name for p in target.iterdir()] == []
    monkeypatch.setitem(datasets.DATASETS, "toy", source.__class__(**{**source.__dict__, "sha256": hashlib.sha256(payload).hexdigest()}))
    got = datasets.fetch("toy", target_dir=target)
    assert (got / "validation" / "b" / "x.txt").read_text() == "validationb"


def test_unknown_or_unreachable_dataset(monkeypatch, tmp_path):
    with pytest.raises(ValueError, match="Unknown dataset 'nope'"):
        datasets.dataset_path("nope")
    monkeypatch.setenv("TLHELPERS_HOME", str(tmp_path))
    with pytest.raises(datasets.DatasetUnavailableError, match="tlhelpers.kit install"):
        datasets.dataset_path("cats_and_dogs_filtered", download=False)


def test_download_builds_a_kit_that_installs(server, tmp_path, monkeypatch, kit_dir):
    """`kit download` against a stand-in for the internet on loopback, then `kit install`."""
    www, url = server
    models = kit_dir / "keras" / "models"
    (www / "mobilenet_v2").mkdir()
    for alpha, size, top in kit.MOBILENET_V2_WEIGHTS:
        name = kit.mobilenet_v2_weights_name(alpha, size, top)
        shutil.copyfile(kit._resolve_link_stub(models / name), www / "mobilenet_v2" / name)
    shutil.copyfile(models / kit.IMAGENET_CLASS_INDEX, www / kit.IMAGENET_CLASS_INDEX)
    hub_src = kit._resolve_link_stub(kit_dir / "tfhub_modules" / kit.hub_handle_dirname(kit.HUB_HANDLES[1]))
    with tarfile.open(www / "module.tar.gz", "w:gz") as tf:
        for path in sorted(hub_src.rglob("*")):
            tf.add(path, arcname=str(path.relative_to(hub_src)), recursive=False)
    _QuietHandler.rewrite = "/module.tar.gz"  # any handle path serves the compressed module
    build = tmp_path / "toy"
    for split in ("train", "validation"):
        for cls in ("a", "b"):
            (build / split / cls).mkdir(parents=True)
            (build / split / cls / "x.txt").write_text(split + cls)
    shutil.make_archive(str(www / "toy"), "zip", tmp_path, "toy")
    payload = (www / "toy.zip").read_bytes()
    monkeypatch.setattr(kit, "KERAS_WEIGHTS_URL", url + "/")
    monkeypatch.setattr(kit, "IMAGENET_CLASS_INDEX_URL", f"{url}/{kit.IMAGENET_CLASS_INDEX}")
    monkeypatch.setattr(kit, "HUB_HANDLES", [f"{url}/models/feature_vector/5"])
    monkeypatch.setitem(datasets.DATASETS, "toy", datasets.DatasetSource(f"{url}/toy.zip", len(payload), hashlib.sha256(payload).hexdigest(), "toy", ("train", "validation")))
    try:
        built = kit.download(tmp_path / "newkit", datasets=["toy"])
    finally:
        _QuietHandler.rewrite = None
    assert len(list((built / "keras" / "models").glob("*.h5"))) == len(kit.MOBILENET_V2_WEIGHTS)
    assert (built / "tfhub_modules" / kit.hub_handle_dirname(f"{url}/models/feature_vector/5") / "saved_model.pb").exists()
    assert (built / "datasets" / "toy" / "validation" / "b" / "x.txt").read_text() == "validationb"
    sums = (built / "SHA256SUMS").read_text()
    assert "./keras/models/imagenet_class_index.json" in sums and "./datasets/toy/train/a/x.txt" in sums
    monkeypatch.setenv("TLHELPERS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.delenv("TFHUB_CACHE_DIR", raising=False)
    counts = kit.install(built)
    assert counts["keras"] == len(kit.MOBILENET_V2_WEIGHTS) + 1 and counts["datasets"] == 4
