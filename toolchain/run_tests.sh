#!/usr/bin/env bash
# The whole test suite: the native gtests (Caffe's GradientChecker), then pytest.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
source "$ROOT/bin/reid-env"
echo "==> native gtests ($CAFFE_VARIANT)"
"$(cat "$CAFFE_PREFIX/share/reid/gtest_path")" 2>&1 | awk '/FAILED|PASSED|tests ran|Failure|error/'
echo "==> pytest"
cd "$ROOT"
exec "$ROOT/.venv/bin/python" -m pytest "$@"
