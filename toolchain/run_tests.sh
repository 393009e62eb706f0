#!/usr/bin/env bash
# The whole test suite: the native gtests (Caffe's GradientChecker), then pytest.
# Where nvcc exists (CUDA_HOME/bin/nvcc, default /usr/local/cuda), it first builds the CUDA
# variant without Python and OpenCV (cuda-nopy-nocv, cached beside the CPU build; the one that
# toolchain/gather_gpu_bundle.sh carries to a GPU machine), so that every .cu file compiles on
# every change, GPU or not; REID_SKIP_CUDA=1 skips that build for quick local runs.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [[ ${REID_SKIP_CUDA:-0} == 1 ]]; then
  echo "==> CUDA build skipped (REID_SKIP_CUDA=1)"
elif [[ -x ${CUDA_HOME:-/usr/local/cuda}/bin/nvcc ]]; then
  echo "==> CUDA build (cuda-nopy-nocv): compiles every .cu file"
  CUDA=1 WITH_PYTHON=0 WITH_OPENCV=0 bash "$ROOT/toolchain/setup.sh"
fi
source "$ROOT/bin/reid-env"
echo "==> native gtests ($CAFFE_VARIANT)"
"$(cat "$CAFFE_PREFIX/share/reid/gtest_path")" 2>&1 | awk '/FAILED|PASSED|tests ran|Failure|error/'
echo "==> pytest"
cd "$ROOT"
exec "$ROOT/.venv/bin/python" -m pytest "$@"
