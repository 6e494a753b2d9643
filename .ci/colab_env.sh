#!/usr/bin/env bash
# The Colab leg's environment: a fresh Python 3.13 virtualenv with Colab's own pins
# (tensorflow 2.20.0, keras 3.13.2, tensorflow-hub 0.16.1, numpy 2.1.3, ipykernel 6.17.1,
# setuptools 75.2.0) and nothing added by hand. tlhelpers is not installed here: each
# notebook's install cell installs it. `.ci/run` builds this in the background while the
# main leg runs.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)

# Colab's Python: COLAB_PYTHON if set, else python3.13 on PATH, else pyenv's 3.13; the first
# candidate that really runs Python 3.13 (a pyenv shim on PATH fails unless 3.13 is selected).
is_python313() { [ -n "$1" ] && "$1" -c 'import sys; assert sys.version_info[:2] == (3, 13)' > /dev/null 2>&1; }
find_python313() {
    local root candidate
    root=$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")
    for candidate in "${COLAB_PYTHON:-}" "$(command -v python3.13 2>/dev/null || true)" \
        $(ls -d "$root"/versions/3.13*/bin/python3.13 2>/dev/null | sort -V -r); do
        if is_python313 "$candidate"; then echo "$candidate"; return; fi
        if [ -n "${COLAB_PYTHON:-}" ]; then return; fi  # a Python chosen by hand is not second-guessed
    done
}
PY313=$(find_python313 || true)
if ! is_python313 "$PY313"; then
    echo "The Colab leg needs Python 3.13 (Colab's): no Python 3.13 interpreter found (COLAB_PYTHON, python3.13 on PATH, pyenv's versions/3.13*)." >&2
    echo "Install it (e.g. pyenv install 3.13.0) or set COLAB_PYTHON to its interpreter." >&2
    exit 1
fi

rm -rf .venv-colab
"$PY313" -m venv .venv-colab
.venv-colab/bin/python -m pip install --quiet --upgrade pip
.venv-colab/bin/python -m pip install --quiet tensorflow==2.20.0 keras==3.13.2 tensorflow-hub==0.16.1 numpy==2.1.3 \
    ipykernel==6.17.1 setuptools==75.2.0 matplotlib seaborn pillow tqdm kagglehub "nbval>=0.11" "pytest>=8"
.venv-colab/bin/python -c "import sys, tensorflow as tf, keras, tensorflow_hub; print('Colab leg: Python', sys.version.split()[0], '| TensorFlow', tf.__version__, '| Keras', keras.__version__, '| TF Hub', tensorflow_hub.__version__)" 2>/dev/null
touch .venv-colab/.ready
echo "Colab environment ready in $(( $(date +%s) - start )) s (Python: $PY313)"
