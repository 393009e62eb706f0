#!/usr/bin/env bash
# The whole test suite: the native gtests (Caffe's GradientChecker), then pytest.
# Where nvcc exists (CUDA_HOME/bin/nvcc, default /usr/local/cuda) and the build under test is
# the CPU one, it first builds the CUDA variant without Python and OpenCV (cuda-nopy-nocv,
# cached beside the CPU build; the one that toolchain/gather_gpu_bundle.sh carries to a GPU
# machine), so that every .cu file compiles on every change, GPU or not. Where the build under
# test is itself a CUDA one (a GPU machine, the CUDA image), that build has compiled them, and
# no second variant is built. REID_SKIP_CUDA=1 skips that build for quick local runs.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
source "$ROOT/bin/reid-env"
if [[ ${REID_SKIP_CUDA:-0} == 1 ]]; then
  echo "==> CUDA build skipped (REID_SKIP_CUDA=1)"
elif [[ $CAFFE_VARIANT == cuda* ]]; then
  echo "==> CUDA build: the build under test ($CAFFE_VARIANT) compiles every .cu file"
elif [[ -x ${CUDA_HOME:-/usr/local/cuda}/bin/nvcc ]]; then
  echo "==> CUDA build (cuda-nopy-nocv): compiles every .cu file"
  CUDA=1 WITH_PYTHON=0 WITH_OPENCV=0 bash "$ROOT/toolchain/setup.sh"
fi
# The binary and its filter from reid.testing.gtest_command, the one place that knows which
# tests need a GPU (a CUDA build without one runs the CPU instantiations only).
mapfile -t gtest < <(cd "$ROOT" && "$ROOT/.venv/bin/python" -c \
  'from reid.testing import gtest_command; print("\n".join(gtest_command("*")))')
[[ ${#gtest[@]} -eq 2 ]] || { echo "run_tests: cannot find the native gtest binary" >&2; exit 1; }
no_gpu=; [[ ${gtest[1]#--gtest_filter=} == *-* ]] && no_gpu=", no GPU: CPU instantiations only"
echo "==> native gtests ($CAFFE_VARIANT$no_gpu)"
"${gtest[@]}" 2>&1 | awk '/FAILED|PASSED|tests ran|Failure|error/'
echo "==> pytest"
cd "$ROOT"
exec "$ROOT/.venv/bin/python" -m pytest "$@"
