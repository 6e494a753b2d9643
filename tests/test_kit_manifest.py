"""`kit install` against small fake kits: the manifest, links and stubs, staging, locking, the command line."""

from __future__ import annotations

import concurrent.futures
import hashlib
import os
import threading
import time
from pathlib import Path

import pytest

from tlhelpers import core, datasets, kit
from tlhelpers.kit.__main__ import main as kit_command

LISTED = {
    "keras/models/weights_224.h5": b"weights",
    "tfhub_modules/aaaa/saved_model.pb": b"model",
    "tfhub_modules/aaaa/variables/variables.index": b"index",
    **{
        f"datasets/toy/{split}/{cls}/{i}.jpg": f"{split}{cls}{i}".encode()
        for split in ("train", "validation")
        for cls in "ab"
        for i in range(3)
    },
}
STUBS = {"keras/models/weights_160.h5": "weights_224.h5", "tfhub_modules/bbbb": "aaaa"}
TOY = datasets.DatasetSource("http://127.0.0.1/toy.zip", None, None, "toy", ("train", "validation"))


def _make_kit(
    root: Path, listed: dict[str, bytes] = LISTED, stubs: dict[str, str] = STUBS, extra: dict[str, bytes] | None = None
) -> Path:
    """A kit in ``root``: ``listed`` files in its SHA256SUMS, link ``stubs`` (path: text) and ``extra`` unlisted files."""
    for rel, data in {**listed, **(extra or {})}.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    for rel, text in stubs.items():
        (root / rel).write_text(text)
    (root / "SHA256SUMS").write_text("".join(f"{hashlib.sha256(data).hexdigest()}  ./{rel}\n" for rel, data in listed.items()))
    return root


@pytest.fixture
def dest(tmp_path, monkeypatch) -> Path:
    """Empty destination homes (TLHELPERS_HOME=dest/home, KERAS_HOME=dest/keras); returns ``dest``."""
    monkeypatch.setenv("TLHELPERS_HOME", str(tmp_path / "dest" / "home"))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "dest" / "keras"))
    return tmp_path / "dest"


def _installed(dest: Path) -> dict[str, bytes]:
    """Every installed file by its path below ``dest``, the lock file and the install record left out."""
    return {
        p.relative_to(dest).as_posix(): p.read_bytes()
        for p in sorted(dest.rglob("*"))
        if p.is_file() and p.name not in (".kit-install.lock", "kit-installed.json")
    }


EXPECTED = {
    "keras/models/weights_160.h5": b"weights",
    "keras/models/weights_224.h5": b"weights",
    **{
        f"home/tfhub_modules/{h}/{rel}": data
        for h in ("aaaa", "bbbb")
        for rel, data in [("saved_model.pb", b"model"), ("variables/variables.index", b"index")]
    },
    **{f"home/{rel}": data for rel, data in LISTED.items() if rel.startswith("datasets/")},
}


def test_install_copies_only_listed_files_following_links_and_stubs(tmp_path, dest):
    src = _make_kit(tmp_path / "kit", extra={"keras/models/stray.h5": b"x" * 1000, "datasets/toy/train/a/notes.txt": b"hello"})
    (src / "keras" / "models" / "weights_128.h5").symlink_to("weights_224.h5")
    report = kit.install(src)
    assert report.copied == {"keras": 3, "tfhub_modules": 4, "datasets": 12} and report["keras"] == 3
    assert report.unlisted == ["keras/models/stray.h5", "datasets/toy/train/a/notes.txt"]
    assert _installed(dest) == {**EXPECTED, "keras/models/weights_128.h5": b"weights"}
    recorded = {Path(path).relative_to(dest).as_posix(): digest for path, digest in kit.installed_files().items()}
    assert recorded == {rel: hashlib.sha256(data).hexdigest() for rel, data in _installed(dest).items()}
    assert kit.install(src).copied == {"keras": 0, "tfhub_modules": 0, "datasets": 0}  # everything already in place


def test_install_verifies_the_file_a_stub_names(tmp_path, dest):
    src = _make_kit(tmp_path / "kit")
    (src / "keras" / "models" / "weights_224.h5").write_bytes(b"weightz")
    with pytest.raises(ValueError, match="weights_224.h5 does not match its SHA256SUMS entry"):
        kit.install(src)
    assert not (dest / "keras" / "models" / "weights_160.h5").exists()


def test_install_requires_the_manifest(tmp_path, dest):
    src = _make_kit(tmp_path / "kit")
    (src / "SHA256SUMS").unlink()
    with pytest.raises(FileNotFoundError, match="has no SHA256SUMS: installing needs this manifest.*kit download"):
        kit.install(src)


def test_install_names_the_listed_files_that_are_missing(tmp_path, dest):
    src = _make_kit(tmp_path / "kit")
    with open(src / "SHA256SUMS", "a") as sums:
        sums.writelines(f"{'0' * 64}  ./datasets/toy/gone{i}.jpg\n" for i in range(7))
    with pytest.raises(
        FileNotFoundError, match=r"7 file\(s\) listed in SHA256SUMS are missing: datasets/toy/gone0.jpg, .* and 2 more"
    ):
        kit.install(src)
    assert not dest.exists()  # checked before anything is copied


@pytest.mark.parametrize(
    "line",
    ["not a checksum line", f"{'0' * 64}  ../../etc/passwd", f"{'0' * 64}  /etc/passwd", f"{'0' * 63}  ./keras/models/x.h5"],
)
def test_a_malformed_manifest_line_is_named_by_its_number(tmp_path, dest, line):
    src = _make_kit(tmp_path / "kit")
    listed = (src / "SHA256SUMS").read_text().splitlines()
    (src / "SHA256SUMS").write_text("\n".join([listed[0], "", line, *listed[1:]]) + "\n")
    with pytest.raises(ValueError, match="SHA256SUMS, line 3: expected '<64 hex digits>"):
        kit.install(src)


def _link(path: Path, target: str | Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.symlink_to(target)


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda src, out: _link(src / "keras/models/evil.h5", out / "outside.h5"), id="symlink-to-a-file"),
        pytest.param(lambda src, out: _link(src / "datasets/evil", out), id="symlink-to-a-folder"),
        pytest.param(lambda src, out: (src / "keras/models/evil.h5").write_text("../../../outside.h5"), id="stub-dotdot"),
        pytest.param(lambda src, out: (src / "keras/models/evil.h5").write_text(str(out / "outside.h5")), id="stub-absolute"),
        pytest.param(
            lambda src, out: (src / "keras/models/evil.h5").write_text("../../../../../../nowhere"), id="stub-dotdot-missing"
        ),
        pytest.param(
            lambda src, out: [
                (src / "keras/models/evil.h5").write_text("next.h5"),
                (src / "keras/models/next.h5").write_text("../../../outside.h5"),
            ],
            id="stub-chain",
        ),
    ],
)
def test_install_refuses_anything_leading_outside_the_kit(tmp_path, dest, make):
    src = _make_kit(tmp_path / "kit")
    (tmp_path / "outside.h5").write_bytes(b"secret")
    make(src, tmp_path)
    with pytest.raises(ValueError, match="outside the kit"):
        kit.install(src)
    assert not dest.exists()  # refused before anything is copied


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda src: (src / "keras/models/loop.h5").write_text("loop.h5"), id="stub-naming-itself"),
        pytest.param(
            lambda src: [(src / "keras/models/a.h5").write_text("b.h5"), (src / "keras/models/b.h5").write_text("a.h5")],
            id="stub-pair",
        ),
        pytest.param(
            lambda src: [_link(src / "keras/models/l1.h5", "l2.h5"), _link(src / "keras/models/l2.h5", "l1.h5")],
            id="symlink-pair",
        ),
        pytest.param(lambda src: (src / "datasets/toy/train/up").write_text(".."), id="stub-naming-its-parent-folder"),
        pytest.param(lambda src: (src / "tfhub_modules/cccc").write_text(".."), id="stub-naming-the-kit"),
        pytest.param(lambda src: _link(src / "datasets/toy/train/up", "../../toy"), id="symlink-naming-an-ancestor"),
    ],
)
def test_install_refuses_link_loops_with_a_clear_error(tmp_path, dest, make):
    src = _make_kit(tmp_path / "kit")
    make(src)
    with pytest.raises(ValueError, match="loop"):
        kit.install(src)
    assert not dest.exists()


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no fifos here")
def test_install_refuses_special_files(tmp_path, dest):
    src = _make_kit(tmp_path / "kit")
    os.mkfifo(src / "datasets" / "toy" / "train" / "a" / "pipe")  # opening it would block: it must not be read
    with pytest.raises(ValueError, match="pipe is not a regular file or folder"):
        kit.install(src)


def test_an_interrupted_install_leaves_no_dataset_that_looks_complete_and_a_rerun_completes(tmp_path, dest, monkeypatch):
    src = _make_kit(tmp_path / "kit")
    copy = kit._copy_verified
    dataset_copies = []

    def copy_then_fail(source: Path, target: Path, digest: str) -> None:
        if core.datasets_dir() in target.parents:
            dataset_copies.append(target)
            if len(dataset_copies) > 5:  # halfway through the 12 files of datasets/toy
                raise OSError("No space left on device (simulated)")
        copy(source, target, digest)

    monkeypatch.setattr(kit, "_copy_verified", copy_then_fail)
    with pytest.raises(OSError, match="simulated"):
        kit.install(src)
    toy = core.datasets_dir() / "toy"
    assert not datasets.is_complete(toy, TOY) and not toy.exists()
    assert list(core.datasets_dir().iterdir()) == []  # no staging folder left behind either
    monkeypatch.setattr(kit, "_copy_verified", copy)
    stale = core.datasets_dir() / f".toy.abc123{core.STAGING_SUFFIX}"  # what an install killed outright leaves
    (stale / "train").mkdir(parents=True)
    report = kit.install(src)
    assert report.copied == {"keras": 0, "tfhub_modules": 0, "datasets": 12}  # the weights and TF Hub models were complete
    assert datasets.is_complete(toy, TOY) and _installed(dest) == EXPECTED and not stale.exists()


def test_two_installs_at_once_take_turns(tmp_path, dest, monkeypatch):
    """Two installs started at the same moment: the lock makes one wait until the other has
    finished, so that every file is copied once, by one of them. Without the lock both
    would copy, their copies interleaved (each copy takes 20 ms here)."""
    src = _make_kit(tmp_path / "kit")
    copy = kit._copy_verified
    copiers = []
    both_started = threading.Barrier(2)

    def slow_copy(source: Path, target: Path, digest: str) -> None:
        copiers.append(threading.get_ident())
        time.sleep(0.02)
        copy(source, target, digest)

    def install(_):
        both_started.wait(timeout=30)
        return kit.install(src)

    monkeypatch.setattr(kit, "_copy_verified", slow_copy)
    with concurrent.futures.ThreadPoolExecutor(2) as pool:  # an error in either install is raised here
        reports = list(pool.map(install, range(2)))
    copied = {part: sum(report[part] for report in reports) for part in ("keras", "tfhub_modules", "datasets")}
    assert copied == {"keras": 2, "tfhub_modules": 4, "datasets": 12}  # each file once: the second found them in place
    assert len(copiers) == 18 and len(set(copiers)) == 1, "the two installs copied at the same time"
    assert _installed(dest) == EXPECTED


def test_command_line_reports_copied_and_skipped_files(tmp_path, dest, capsys):
    src = _make_kit(tmp_path / "kit", extra={"keras/models/stray.h5": b"x" * 1000})
    assert kit_command(["install", str(src)]) == 0
    out = capsys.readouterr().out
    assert "keras: 2 file(s) copied\ntfhub_modules: 4 file(s) copied\ndatasets: 12 file(s) copied\n" in out
    assert "skipped 1 file(s) not listed in SHA256SUMS: keras/models/stray.h5\n" in out


def test_command_line_fails_with_one_error_line(tmp_path, dest, capsys):
    src = _make_kit(tmp_path / "kit")
    (src / "SHA256SUMS").unlink()
    assert kit_command(["install", str(src)]) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.startswith("error: ") and captured.err.count("\n") == 1
    assert "SHA256SUMS" in captured.err


def test_the_kit_command_and_the_package_start_without_tensorflow():
    """`python -m tlhelpers.kit` and `import tlhelpers` import neither TensorFlow nor Keras
    (a fresh interpreter is the only way to see what an import pulls in)."""
    import subprocess
    import sys

    code = (
        "import sys, runpy\n"
        "import tlhelpers, tlhelpers.kit, tlhelpers.core, tlhelpers.datasets, tlhelpers.scan\n"
        "sys.argv = ['tlhelpers.kit', '--help']\n"
        "try:\n    runpy.run_module('tlhelpers.kit', run_name='__main__')\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]" and "install" in out
