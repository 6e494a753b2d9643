"""The offline kit command, safe extraction and verified downloads."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import http.server
import io
import os
import shutil
import tarfile
import threading
import time
import zipfile
from pathlib import Path
from typing import ClassVar

import pytest

from tlhelpers import datasets, kit
from tlhelpers.kit import build as kit_build
from tlhelpers.kit.__main__ import main as kit_command


def _stub_followed(path: Path) -> Path:
    """The file or folder a kit's link stub names (``path`` itself when it is not a stub)."""
    if path.is_file() and path.stat().st_size < 256:
        target = path.parent / path.read_text().strip()
        if target.exists():
            return target
    return path


def test_install_copies_weights_hub_and_datasets_and_follows_link_stubs(kit_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("TLHELPERS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    listed = [line.split(maxsplit=1)[1] for line in (kit_dir / "SHA256SUMS").read_text().splitlines()]
    report = kit.install(kit_dir)
    assert report["keras"] == 12 and report["datasets"] == sum(name.startswith("./datasets/") for name in listed)
    assert report.unlisted == []
    models = tmp_path / "keras" / "models"
    small = models / kit.mobilenet_v2_weights_name(1.0, 160, False)
    full = models / kit.mobilenet_v2_weights_name(1.0, 224, False)
    assert small.read_bytes()[:8] == b"\x89HDF\r\n\x1a\n" and kit.sha256(small) == kit.sha256(full)
    for handle in kit.HUB_HANDLES:
        assert (tmp_path / "home" / "tfhub_modules" / kit.hub_handle_dirname(handle) / "saved_model.pb").exists()
    assert len(list((tmp_path / "home" / "datasets" / "cats_and_dogs_filtered" / "train" / "cats").glob("*.jpg"))) == 1000
    assert kit.install(kit_dir).copied == {"keras": 0, "tfhub_modules": 0, "datasets": 0}  # already in place


def _tiny_kit(tmp_path) -> Path:
    src = tmp_path / "kit"
    (src / "keras" / "models").mkdir(parents=True)
    (src / "keras" / "models" / "weights.h5").write_bytes(b"real weights")
    (src / "keras" / "models" / "alias.h5").write_text("weights.h5")
    digest = hashlib.sha256(b"real weights").hexdigest()
    (src / "SHA256SUMS").write_text(f"{digest}  ./keras/models/weights.h5\n")
    return src


def test_command_line_install_and_damaged_kit(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TLHELPERS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    src = _tiny_kit(tmp_path)
    assert kit_command(["install", str(src)]) == 0, capsys.readouterr().err
    assert "keras: 2 file(s) copied" in capsys.readouterr().out
    assert (tmp_path / "keras" / "models" / "alias.h5").read_bytes() == b"real weights"
    (src / "keras" / "models" / "weights.h5").write_bytes(b"real weightz")
    (tmp_path / "keras" / "models" / "weights.h5").unlink()
    assert kit_command(["install", str(src)]) == 1
    assert "does not match its SHA256SUMS" in capsys.readouterr().err
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


def _tar(path: Path, *members: tuple[str, bytes | str]) -> Path:
    """A tar archive of regular files (name, bytes) and hard links (name, "->target")."""
    with tarfile.open(path, "w") as tf:
        for name, content in members:
            info = tarfile.TarInfo(name)
            if isinstance(content, str):
                info.type, info.linkname = tarfile.LNKTYPE, content.removeprefix("->")
                tf.addfile(info)
            else:
                info.size = len(content)
                tf.addfile(info, io.BytesIO(content))
    return path


def test_safe_extract_resolves_tar_hard_links_from_the_archive_root(tmp_path):
    archive = _tar(tmp_path / "links.tar", ("root/train/a/x.txt", b"shared"), ("root/train/b/y.txt", "->root/train/a/x.txt"))
    out = datasets.safe_extract(archive, tmp_path / "out")
    assert (out / "root" / "train" / "b" / "y.txt").read_bytes() == b"shared"
    (tmp_path / "secret.txt").write_text("secret")
    # From its own folder the link would stay inside (out/a/b/secret.txt); from the archive root it leaves.
    evil = _tar(tmp_path / "evil.tar", ("a/ok.txt", b"fine"), ("a/b/c/link", "->../secret.txt"))
    with pytest.raises(ValueError, match="evil.tar: a member would escape"):
        datasets.safe_extract(evil, tmp_path / "out2")
    assert not (tmp_path / "out2" / "a").exists()  # every member is checked before the first is written


def test_safe_extract_refuses_tar_files_without_the_data_filter(tmp_path, monkeypatch):
    archive = _tar(tmp_path / "good.tar", ("root/x.txt", b"x"))
    monkeypatch.delattr(tarfile, "data_filter")
    with pytest.raises(ValueError, match="good.tar: this Python .* has no tarfile 'data' filter"):
        datasets.safe_extract(archive, tmp_path / "out")


def _damaged(tmp_path: Path, kind: str) -> Path:
    if kind == "garbage":
        (tmp_path / "damaged.tgz").write_bytes(b"not an archive at all " * 50)
    elif kind == "truncated-tgz":
        with tarfile.open(tmp_path / "full.tgz", "w:gz") as tf:
            info = tarfile.TarInfo("root/x.bin")
            info.size = 200_000
            tf.addfile(info, io.BytesIO(os.urandom(200_000)))
        (tmp_path / "damaged.tgz").write_bytes((tmp_path / "full.tgz").read_bytes()[:100_000])
    else:
        with zipfile.ZipFile(tmp_path / "damaged.zip", "w") as zf:
            zf.writestr("root/x.txt", "hello world, hello world")
        data = bytearray((tmp_path / "damaged.zip").read_bytes())
        data[data.index(b"hello world")] ^= 1  # stored data no longer matches its CRC
        (tmp_path / "damaged.zip").write_bytes(bytes(data))
    return next(tmp_path.glob("damaged.*"))


@pytest.mark.parametrize("kind", ["garbage", "truncated-tgz", "zip-bad-crc"])
def test_safe_extract_names_a_damaged_archive(tmp_path, kind):
    archive = _damaged(tmp_path, kind)
    with pytest.raises(ValueError, match=rf"{archive.name} is damaged or not a zip or tar archive.*download it again"):
        datasets.safe_extract(archive, tmp_path / "out")


@pytest.fixture
def server(tmp_path):
    """A file server on the loopback interface, serving tmp_path/www (and the scripted paths of _QuietHandler)."""
    www = tmp_path / "www"
    www.mkdir()
    _QuietHandler.requests = []
    handler = functools.partial(_QuietHandler, directory=str(www))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield www, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    rewrite: str | None = None  # when set, every path under /models/ serves this file
    requests: ClassVar[list[str]] = []  # the paths asked for, in order

    def do_GET(self):
        _QuietHandler.requests.append(self.path)
        scripted = {"/endless": self._endless, "/trickle": self._trickle, "/error500": lambda: self.send_error(500)}
        scripted.get(self.path, super().do_GET)()

    def _endless(self):
        """Bytes without a Content-Length, until the client hangs up (or 64 MiB)."""
        self.send_response(200)
        self.end_headers()
        with contextlib.suppress(OSError):
            for _ in range(1024):
                self.wfile.write(b"x" * 65536)

    def _trickle(self):
        """One byte every 50 ms of an announced 1000: each read succeeds, the whole takes 50 s."""
        self.send_response(200)
        self.send_header("Content-Length", "1000")
        self.end_headers()
        with contextlib.suppress(OSError):
            for _ in range(1000):
                self.wfile.write(b"x")
                time.sleep(0.05)

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
    dest = _download_target(tmp_path, "a.bin")
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


def _download_target(tmp_path, name: str):
    """A file path in a fresh, empty folder (so a test can check nothing was left behind)."""
    (tmp_path / "dl").mkdir()
    return tmp_path / "dl" / name


def test_download_stops_reading_past_the_expected_size(server, tmp_path):
    _, url = server
    dest = _download_target(tmp_path, "big.bin")
    # a reader that did not stop would run into the deadline instead (a TimeoutError)
    with pytest.raises(ValueError, match="expected 100000 bytes, the server sent more: stopped reading"):
        datasets.download_file(f"{url}/endless", dest, size=100_000, deadline=60)
    assert list(dest.parent.iterdir()) == []


def test_download_gives_up_at_its_deadline_although_every_read_succeeds(server, tmp_path):
    _, url = server
    dest = _download_target(tmp_path, "slow.bin")
    with pytest.raises(TimeoutError, match=r"gave up after the 0.5 s deadline.*/trickle: \d+ of 1000 bytes received"):
        datasets.download_file(f"{url}/trickle", dest, size=1000, timeout=5, deadline=0.5)
    assert list(dest.parent.iterdir()) == []


def test_download_does_not_retry_a_client_error_but_retries_a_server_error(server, tmp_path):
    _, url = server
    dest = _download_target(tmp_path, "a.bin")
    with pytest.raises(OSError, match=r"missing.bin: HTTP 404 File not found \(not retried"):
        datasets.download_file(f"{url}/missing.bin", dest, retries=3)
    assert _QuietHandler.requests == ["/missing.bin"]
    with pytest.raises(OSError, match="error500: HTTP 500"):
        datasets.download_file(f"{url}/error500", dest, retries=1)
    assert _QuietHandler.requests.count("/error500") == 2 and list(dest.parent.iterdir()) == []


def test_download_falls_back_to_mirrors_and_reports_every_failure(server, tmp_path):
    www, url = server
    (www / "a.bin").write_bytes(b"payload")
    (www / "bad.bin").write_bytes(b"payloaX")
    good = hashlib.sha256(b"payload").hexdigest()
    dest = _download_target(tmp_path, "a.bin")
    urls = [f"{url}/missing.bin", f"{url}/bad.bin", f"{url}/a.bin"]
    assert datasets.download_file(urls, dest, size=7, sha256=good).read_bytes() == b"payload"
    assert _QuietHandler.requests == ["/missing.bin", "/bad.bin", "/a.bin"]
    dest.unlink()
    with pytest.raises(ValueError) as failed:
        datasets.download_file(urls[:2], dest, size=7, sha256=good)
    assert f"{url}/missing.bin: HTTP 404" in str(failed.value) and f"{url}/bad.bin: the SHA-256 checksum does not match" in str(
        failed.value
    )
    assert list(dest.parent.iterdir()) == []


def test_cats_and_dogs_are_fetched_from_the_current_address_first_then_the_old_one(tmp_path, monkeypatch):
    """What fetch really asks the network for, in order: Google's current address for
    cats_and_dogs_filtered, then the older one as a mirror; and the failure names both."""
    import urllib.error

    asked = []

    def offline(url, *args, **kwargs):
        asked.append(url if isinstance(url, str) else url.full_url)
        raise urllib.error.URLError("network unreachable (simulated)")

    monkeypatch.setattr("urllib.request.urlopen", offline)
    target = tmp_path / "datasets"
    with pytest.raises(OSError, match="every address failed") as failed:
        datasets.fetch("cats_and_dogs_filtered", target_dir=target, retries=0)
    assert asked == [
        "https://download.mlcc.google.com/mledu-datasets/cats_and_dogs_filtered.zip",
        "https://storage.googleapis.com/mledu-datasets/cats_and_dogs_filtered.zip",
    ]
    assert all(url in str(failed.value) for url in asked)
    assert list(target.iterdir()) == []  # nothing left behind


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
    urls = (f"{url}/moved/toy.zip", f"{url}/toy.zip")  # the first address is gone (404): the mirror serves it
    source = datasets.DatasetSource(urls=urls, size=len(payload), sha256="f" * 64, root="toy", splits=("train", "validation"))
    monkeypatch.setitem(datasets.DATASETS, "toy", source)
    target = tmp_path / "datasets"
    with pytest.raises(ValueError, match="checksum"):
        datasets.fetch("toy", target_dir=target)
    assert not (target / "toy").exists() and [p.name for p in target.iterdir()] == []
    monkeypatch.setitem(
        datasets.DATASETS, "toy", source.__class__(**{**source.__dict__, "sha256": hashlib.sha256(payload).hexdigest()})
    )
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
        shutil.copyfile(_stub_followed(models / name), www / "mobilenet_v2" / name)
    shutil.copyfile(models / kit.IMAGENET_CLASS_INDEX, www / kit.IMAGENET_CLASS_INDEX)
    hub_src = _stub_followed(kit_dir / "tfhub_modules" / kit.hub_handle_dirname(kit.HUB_HANDLES[1]))
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
    monkeypatch.setattr(kit_build, "KERAS_WEIGHTS_URL", url + "/")
    monkeypatch.setattr(kit_build, "IMAGENET_CLASS_INDEX_URL", f"{url}/{kit.IMAGENET_CLASS_INDEX}")
    monkeypatch.setattr(kit_build, "HUB_HANDLES", [f"{url}/models/feature_vector/5"])
    monkeypatch.setitem(
        datasets.DATASETS,
        "toy",
        datasets.DatasetSource(
            f"{url}/toy.zip", len(payload), hashlib.sha256(payload).hexdigest(), "toy", ("train", "validation")
        ),
    )
    try:
        built = kit_build.download(tmp_path / "newkit", datasets=["toy"])
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
