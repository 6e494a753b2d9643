"""``import tlhelpers`` asks TensorFlow for its oneDNN CPU kernels, and keeps the user's choice."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

from tlhelpers import _cpu

x86_only = pytest.mark.skipif(
    platform.machine().lower() not in _cpu._X86, reason="oneDNN is TensorFlow's default build on x86 only"
)

PROBE = (
    "import os, tlhelpers, tensorflow\n"
    "from tlhelpers.runtime import onednn_enabled\n"
    "print(os.environ.get('TF_ENABLE_ONEDNN_OPTS'), onednn_enabled())\n"
)


def _probe(**env: str) -> list[str]:
    clean = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    out = subprocess.run(
        [sys.executable, "-c", PROBE], env={**clean, **env}, capture_output=True, text=True, timeout=120, check=True
    ).stdout
    return out.split()[-2:]


@x86_only
def test_importing_tlhelpers_first_turns_onednn_on():
    assert _probe() == ["1", "True"]


@x86_only
def test_a_choice_the_user_made_is_kept():
    assert _probe(TF_ENABLE_ONEDNN_OPTS="0") == ["0", "False"]


def test_nothing_changes_once_tensorflow_is_imported(monkeypatch):
    import tensorflow  # noqa: F401

    monkeypatch.delenv("TF_ENABLE_ONEDNN_OPTS", raising=False)
    assert _cpu.prefer_onednn() is False
    assert "TF_ENABLE_ONEDNN_OPTS" not in os.environ
