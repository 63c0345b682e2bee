#!/usr/bin/env bash
# Create (or refresh) the project's virtual environment and install the package into it.
# Sourced by scripts/main.sh and scripts/test.sh, or by you in any shell to put `fakeface` on
# PATH; re-installs only when pyproject.toml, requirements.lock (every version, from
# scripts/lock.py) or FAKEFACE_GPU changes. It sets no shell options
# (no `set -e`), so sourcing it leaves an interactive shell as it was; each step stops it on
# failure instead.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${FAKEFACE_VENV:-$ROOT/.venv}"
PY="${PYTHON:-python3}"
if [ ! -x "$VENV/bin/python" ]; then
    echo "[setup] creating virtual environment in $VENV"
    "$PY" -m venv "$VENV" || { echo "[setup] could not create $VENV" >&2; return 1 2>/dev/null || exit 1; }
fi
# TensorFlow: the [cpu] extra, or with FAKEFACE_GPU=1 the [gpu] one (CUDA wheels). The two
# builds own the same files, so a switch between them uninstalls the old one first.
if [ "${FAKEFACE_GPU:-0}" = 1 ]; then TF_EXTRA=gpu; else TF_EXTRA=cpu; fi
STAMP="$VENV/.fakeface-installed"
WANT="$(cat "$ROOT/pyproject.toml" "$ROOT/requirements.lock" | sha256sum | cut -c1-16) $TF_EXTRA"
HAVE="$(cat "$STAMP" 2>/dev/null || true)"
if [ "$HAVE" != "$WANT" ]; then
    echo "[setup] installing fakeface_tf and its pinned dependencies with $TF_EXTRA TensorFlow" \
         "(a few minutes the first time)"
    HAVE_EXTRA="${HAVE#* }"
    [ "$HAVE_EXTRA" = "$HAVE" ] && HAVE_EXTRA=cpu  # a stamp from before the switch existed
    if [ -n "$HAVE" ] && [ "$HAVE_EXTRA" != "$TF_EXTRA" ]; then
        "$VENV/bin/python" -m pip uninstall -q -y tensorflow tensorflow-cpu ||
            { echo "[setup] pip uninstall failed (see above)" >&2; return 1 2>/dev/null || exit 1; }
    fi
    "$VENV/bin/python" -m pip install -q --upgrade pip &&
        "$VENV/bin/python" -m pip install -q -c "$ROOT/requirements.lock" \
            -e "$ROOT[dev,serve,tune,track,notebooks,beam,export,$TF_EXTRA]" ||
        { echo "[setup] pip install failed (see above)" >&2; return 1 2>/dev/null || exit 1; }
    echo "$WANT" > "$STAMP"
fi
export PATH="$VENV/bin:$PATH"
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
export PYTHONUNBUFFERED=1
