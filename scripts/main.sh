#!/usr/bin/env bash
# The main job, end to end on the sample data: preprocess, train, evaluate, audit.
set -euo pipefail
source "$(dirname "$0")/bootstrap.sh"
cd "$ROOT"
exec fakeface main "$@"
