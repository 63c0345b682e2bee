#!/usr/bin/env bash
# The whole test suite: unit and end-to-end tests, the browser test, and the notebooks (nbval).
# `--quick`: the quick loop instead, every test not marked slow or browser, no notebooks
# (about 3 minutes on 2 cores). Other arguments go to pytest.
set -euo pipefail
source "$(dirname "$0")/bootstrap.sh"
cd "$ROOT"
if [ "${1:-}" = "--quick" ]; then
    shift
    exec python -m pytest tests -m "not slow and not browser" -p no:cacheprovider "$@"
fi
if ! command -v chromium >/dev/null 2>&1; then
    echo "[setup] installing Debian chromium for the browser test"
    if [ "$(id -u)" = 0 ]; then
        (apt-get update -qq && apt-get install -y -qq chromium >/dev/null) || echo "[setup] chromium unavailable: the browser test will be skipped"
    else
        echo "[setup] not root: cannot apt-get install chromium; the browser test will be skipped"
    fi
fi
export FAKEFACE_NB_FAST=1
exec python -m pytest tests notebooks --nbval-lax -p no:cacheprovider "$@"
