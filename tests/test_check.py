"""``python -m tlhelpers.check``: the verdict with nothing installed, with the kit, with a damaged file, and its time estimates."""

from __future__ import annotations

import io
import socket

import pytest

from tlhelpers import check, kit


@pytest.fixture
def offline(monkeypatch):
    """No network: every connection is refused, as on a venue's machine with no Wi-Fi."""

    def refuse(*args, **kwargs):
        raise OSError("network unreachable (simulated)")

    monkeypatch.setattr(socket.socket, "connect", refuse)


def _homes(monkeypatch, tmp_path):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.setenv("TLHELPERS_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("TFHUB_CACHE_DIR", raising=False)


def _run(*args: str) -> tuple[int, str]:
    out = io.StringIO()
    report = check.run(download="--download" in args, probe="--no-probe" not in args, stream=out)
    return (1 if report.blockers else 0), out.getvalue()


def test_nothing_installed_and_no_network_fails_with_the_fix(tmp_path, monkeypatch, offline, capsys):
    _homes(monkeypatch, tmp_path)
    status, out = _run("--no-probe")
    assert status == 1
    assert "FAIL  MobileNetV2 weights" in out and "6 of 6 files missing: not here and no network" in out
    assert "python -m tlhelpers.kit install PATH/TO/kit" in out
    assert "FAIL  TF Hub model" in out and "FAIL  cats_and_dogs_filtered" in out and "FAIL  flower_photos" in out
    assert (
        "FAIL  03_fine_tuning" in out
        and "weights mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_160_no_top.h5 missing" in out
    )
    assert "warn  06_generic_base_model_loader" not in out  # it needs weights in both modes: it cannot run at all
    line_06 = next(line for line in out.splitlines() if "06_generic_base_model_loader" in line)
    assert line_06.lstrip().startswith("FAIL") and "cannot run in either mode" in line_06
    assert "Verdict: 8 problem(s)" in out
    assert check.main(["--no-probe"]) == 1  # the command's exit status
    assert "Verdict: 8 problem(s)" in capsys.readouterr().out


@pytest.fixture(scope="module")
def installed(kit_dir, tmp_path_factory):
    """The offline kit installed into fresh Keras and tlhelpers homes: ``(keras home, tlhelpers home)``."""
    root = tmp_path_factory.mktemp("check_homes")
    with pytest.MonkeyPatch.context() as mp:
        _homes(mp, root)
        kit.install(kit_dir)
    return root


def test_the_installed_kit_is_all_green(installed, monkeypatch, offline):
    _homes(monkeypatch, installed)
    status, out = _run("--no-probe")
    assert status == 0, out
    assert "ok    MobileNetV2 weights       all 6 files, from the offline kit" in out
    assert "ok    TF Hub model              from the offline kit" in out
    assert "ok    cats_and_dogs_filtered    3,000 photos, from the offline kit" in out
    assert "warn  alien_vs_predator" in out and "FAIL" not in out
    assert out.rstrip().endswith("Verdict: every lesson can run here.")


def test_a_damaged_weights_file_is_named_with_the_fix(installed, monkeypatch, offline):
    _homes(monkeypatch, installed)
    damaged = installed / "keras" / "models" / kit.mobilenet_v2_weights_name("1.0", 160, False)
    original = damaged.read_bytes() if not damaged.is_symlink() else None
    target = damaged.resolve()
    saved = target.read_bytes()
    try:
        target.write_bytes(saved[: len(saved) // 3])  # a download cut short
        status, out = _run("--no-probe")
    finally:
        target.write_bytes(saved)
    assert original is None or original == saved
    assert status == 1
    line = next(line for line in out.splitlines() if "is damaged" in line)
    assert line.startswith("  FAIL  MobileNetV2 weights") and str(damaged.parent) in line
    assert "delete it, then `python -m tlhelpers.kit install PATH/TO/kit`" in line
    assert "02_feature_extraction" in out.split("Verdict:")[1]


def test_the_time_estimate_is_within_a_factor_of_two_of_a_quick_run_here(tmp_path):
    """The check's estimate of notebook 5 in quick mode, from its speed probe on this machine,
    against the same notebook run here in quick mode: within a factor of two."""
    import os
    import shutil
    import time

    import nbformat
    from nbclient import NotebookClient

    from helpers import ROOT

    report = check.Report()
    check._probe(report)
    name = "05_predictions_and_evaluation"
    estimate = check.estimate_seconds(name, "quick", report.probe)
    shutil.copy(ROOT / "notebooks" / f"{name}.ipynb", tmp_path)
    nb = nbformat.read(tmp_path / f"{name}.ipynb", as_version=4)
    saved = os.environ.get("TLHELPERS_QUICK")
    os.environ["TLHELPERS_QUICK"] = "1"  # the kernel inherits it
    try:
        start = time.perf_counter()
        NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
        measured = time.perf_counter() - start
    finally:
        os.environ.pop("TLHELPERS_QUICK") if saved is None else os.environ.__setitem__("TLHELPERS_QUICK", saved)
    assert 0.5 <= estimate / measured <= 2, f"estimated {estimate:.0f} s, measured {measured:.0f} s"
