#!/usr/bin/env bash
# The Colab leg's environment: a fresh Python 3.13 virtualenv with Colab's own pins
# (tensorflow 2.20.0, keras 3.13.2, tensorflow-hub 0.16.1, numpy 2.1.3, ipykernel 6.17.1)
# and nothing added by hand. tlhelpers is not installed here: each notebook's install cell
# installs it. `.ci/run` builds this in the background while the main leg runs.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)

PY313="${COLAB_PYTHON:-$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")/versions/3.13.0/bin/python3.13}"
rm -rf .venv-colab
"$PY313" -m venv .venv-colab
.venv-colab/bin/python -m pip install --quiet --upgrade pip
.venv-colab/bin/python -m pip install --quiet tensorflow==2.20.0 keras==3.13.2 tensorflow-hub==0.16.1 numpy==2.1.3 \
    ipykernel==6.17.1 matplotlib seaborn pillow tqdm kagglehub "nbval>=0.11" "pytest>=8"
.venv-colab/bin/python -c "import sys, tensorflow as tf, keras; print('Colab leg: Python', sys.version.split()[0], '| TensorFlow', tf.__version__, '| Keras', keras.__version__)" 2>/dev/null
touch .venv-colab/.ready
echo "Colab environment ready in $(( $(date +%s) - start )) s"
