#!/usr/bin/env bash
# CI's Colab leg: Colab's own stack (Python 3.13, tensorflow 2.20.0, keras 3.13.2,
# tensorflow-hub 0.16.1, numpy 2.1.3, ipykernel 6.17.1; nothing added by hand), tlhelpers
# installed by each notebook's real install cell from this checkout's commit, and every
# notebook run in quick mode from a temporary folder that holds only that notebook.
# The environment comes from .ci/colab_env.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)

if [ ! -f .venv-colab/.ready ]; then   # .ci/run builds it in the background; alone, this script builds it
    bash .ci/colab_env.sh
fi

export TLHELPERS_QUICK=1
export TLHELPERS_SOURCE="git+file://$PWD@$(git rev-parse HEAD)"   # what the install cell installs
export PYTHONPATH="$PWD/.ci/colab_stub"                             # `import google.colab` succeeds
export MPLBACKEND=Agg
export PYDEVD_DISABLE_FILE_VALIDATION=1   # ipykernel 6.17 on Python 3.13 warns about frozen modules otherwise
status=0
for notebook in notebooks/[0-9][0-9]_*.ipynb; do
    alone=$(mktemp -d)
    cp "$notebook" "$alone/"
    t0=$(date +%s)
    if (cd "$alone" && "$OLDPWD/.venv-colab/bin/python" -m pytest -q -p no:cacheprovider --nbval-lax --nbval-current-env \
            --nbval-cell-timeout=600 -o addopts="" "$(basename "$notebook")"); then
        echo "Colab leg: $(basename "$notebook") passed in $(( $(date +%s) - t0 )) s"
    else
        echo "Colab leg: $(basename "$notebook") FAILED"
        status=1
    fi
    rm -rf "$alone"
done
echo "Colab leg finished in $(( $(date +%s) - start )) s"
exit $status
