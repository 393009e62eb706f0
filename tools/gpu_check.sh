#!/usr/bin/env bash
# The GPU check, for a machine with an NVIDIA GPU; run from the repository root:
#
#   bash tools/gpu_check.sh [NET] [PY_NET]
#
#   1. the native gtests on the GPU: every layer's tests on both devices (GradientChecker on
#      the GPU too), each layer's GPU pass against its CPU pass, and one forward + backward of
#      NET on the GPU against the CPU (test_gpu_cpu_agreement.cpp states the tolerances);
#   2. `caffe time -gpu 0` on NET: the per-layer table, slowest first;
#   3. `caffe train -gpu 0` on NET for TRAIN_ITERS iterations: iterations/s;
#   4. the same with the Python data layer feeding it (PY_NET), where this Caffe has Python
#      layers: the data path's overhead is the difference to 3.
#
# NET defaults to prototxt/gpu_check/all_paper_native.prototxt: the paper-size ALL net built
# from native layers only (DummyData/Input instead of the Python data layer), written by the
# net generator (reid/nets). Until it exists the script measures tools/gpu_smoke_native.prototxt
# and says so. PY_NET defaults to prototxt/gpu_check/all_paper_python.prototxt.
#
# Caffe comes from CAFFE_PREFIX, else .gpu_bundle/caffe-cuda.tar.xz, unpacked into TMPDIR
# (toolchain/gather_gpu_bundle.sh: the cuda-nopy-nocv build and its non-CUDA libraries, for a
# machine without Caffe's dependencies), else .caffe/cuda or .caffe/cuda-nopy-nocv. CUDA's
# runtime, cuBLAS and cuRAND come from the machine: its Python's nvidia wheels (nvidia/*/lib),
# then CUDA_HOME/lib64.
#
# Environment: ITERS (caffe time iterations, 50), TRAIN_ITERS (200), GPU (device id, 0),
#   OUT (folder for the logs; default out/gpu_check), GTEST_FILTER (step 1's tests, all),
#   GPU_CHECK_CPU=1 runs the same steps on the CPU (no GPU needed: the CPU instantiations of
#   the gtests, the agreement tests CPU against CPU) to check the script and a bundle on a
#   machine without a GPU; it measures nothing about GPUs.
set -uo pipefail
# caffe time / train report at INFO level; a caller (bin/python sets 1) must not hide it
export GLOG_minloglevel=0
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
NET=${1:-prototxt/gpu_check/all_paper_native.prototxt}
PY_NET=${2:-prototxt/gpu_check/all_paper_python.prototxt}
ITERS=${ITERS:-50}
TRAIN_ITERS=${TRAIN_ITERS:-200}
GPU=${GPU:-0}
CPU_DRY=${GPU_CHECK_CPU:-0}
LOGS=${OUT:-$ROOT/out/gpu_check}
CUDA_HOME=${CUDA_HOME:-/usr/local/cuda}
mkdir -p "$LOGS"
FAILED=()
SUMMARY=$LOGS/summary.txt
: >"$SUMMARY"

say() { echo "$*" | tee -a "$SUMMARY"; }
section() { echo; say "==> $*"; }
fail() { FAILED+=("$1"); say "FAILED: $1"; }

# ---- which Caffe, which CUDA libraries -------------------------------------------------
pick_caffe() {
  local p
  if [[ -z ${CAFFE_PREFIX:-} && -f $ROOT/.gpu_bundle/caffe-cuda.tar.xz ]]; then
    p=$(mktemp -d "${TMPDIR:-/tmp}/reid-gpu-bundle.XXXXXX")
    tar -C "$p" -xJf "$ROOT/.gpu_bundle/caffe-cuda.tar.xz" 2>/dev/null \
      || python3 -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' \
           "$ROOT/.gpu_bundle/caffe-cuda.tar.xz" "$p" \
      || { echo "gpu_check: cannot unpack .gpu_bundle/caffe-cuda.tar.xz" >&2; return 1; }
    cp "$ROOT/.gpu_bundle/MANIFEST" "$p/" 2>/dev/null
    echo "$p"; return
  fi
  for p in ${CAFFE_PREFIX:-} "$ROOT/.caffe/cuda" "$ROOT/.caffe/cuda-nopy-nocv"; do
    [[ -x $p/bin/caffe && -x $p/bin/reid_native_tests ]] && { echo "$p"; return; }
  done
  return 1
}

# Folders of the machine's CUDA libraries: its Python's nvidia wheels, then the toolkit.
nvidia_lib_dirs() {
  {
    python3 - <<'PY' 2>/dev/null
import glob, os
try:
    import nvidia
    roots = list(nvidia.__path__)
except Exception:
    roots = []
for root in roots:
    for d in sorted(glob.glob(os.path.join(root, "*", "lib"))):
        if glob.glob(os.path.join(d, "lib*.so*")):
            print(d)
PY
    ls -d /usr/local/lib/python3*/dist-packages/nvidia/*/lib /opt/*/.venv/lib/python3*/site-packages/nvidia/*/lib 2>/dev/null
    [[ -d $CUDA_HOME/lib64 ]] && echo "$CUDA_HOME/lib64"
  } | awk '!seen[$0]++' | paste -sd: -
}

PREFIX=$(pick_caffe) || { echo "gpu_check: no CUDA Caffe: run toolchain/gather_gpu_bundle.sh (or make setup CUDA=1)" >&2; exit 2; }
[[ $PREFIX == */reid-gpu-bundle.* ]] && trap 'rm -rf "$PREFIX"' EXIT   # the unpacked bundle
CUDA_LIBS=$(nvidia_lib_dirs)
export LD_LIBRARY_PATH="$PREFIX/lib${CUDA_LIBS:+:$CUDA_LIBS}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
[[ -d $PREFIX/fallback ]] && LD_LIBRARY_PATH+=":$PREFIX/fallback"
CAFFE=$PREFIX/bin/caffe
GTEST=$PREFIX/bin/reid_native_tests

section "machine"
say "caffe: $PREFIX"
[[ -f $PREFIX/MANIFEST ]] && say "$(sed -n 's/^\(build\|commit\|cuda\|made\): /bundle \1: /p' "$PREFIX/MANIFEST")"
say "glibc: $(ldd --version | head -n 1)"
say "CUDA libraries from: ${CUDA_LIBS:-(none found; the default search path)}"
if [[ $CPU_DRY == 1 ]]; then
  say "GPU_CHECK_CPU=1: everything below runs on the CPU (a check of this script, not of the GPU)"
  DEV=() ; MODE=CPU
else
  nvidia-smi -L >/dev/null 2>&1 || { say "no GPU visible (nvidia-smi -L failed): nothing to check here; GPU_CHECK_CPU=1 runs the steps on the CPU"; exit 2; }
  say "GPU: $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader -i "$GPU")"
  DEV=(-gpu "$GPU"); MODE=GPU
fi
missing=$(ldd "$CAFFE" "$GTEST" "$PREFIX"/lib/libcaffe.so* 2>/dev/null | awk '/not found/ {print $1}' | sort -u | tr '\n' ' ')
[[ -z $missing ]] || { say "missing libraries: $missing(LD_LIBRARY_PATH=$LD_LIBRARY_PATH)"; exit 2; }

PAPER=1
if [[ ! -f $NET ]]; then
  say "NOTE: $NET does not exist yet (the net generator in reid/nets writes it);"
  say "      measuring the smoke net tools/gpu_smoke_native.prototxt instead (not paper size)"
  NET=tools/gpu_smoke_native.prototxt; PAPER=0
fi
say "net: $NET"

# ---- 1. native gtests -------------------------------------------------------------------
section "1. native gtests ($MODE; $GTEST)"
filter=${GTEST_FILTER:-*}
if [[ $CPU_DRY == 1 ]]; then
  # CPU instantiations only (/0, /1 of the typed tests); the agreement tests compare CPU with CPU
  filter=${GTEST_FILTER:-*/0.*:*/1.*:NetGpuCpuAgreementTest.*}
  export REID_AGREEMENT_DRY_RUN=1
fi
if GLOG_minloglevel=1 "$GTEST" "$GPU" --gtest_filter="$filter" >"$LOGS/gtest.log" 2>&1; then
  grep -E '^\[  PASSED  \]|tests? from .* test cases? ran' "$LOGS/gtest.log" | tee -a "$SUMMARY"
else
  grep -E '^\[  FAILED  \]|Failure|error|Check failed' "$LOGS/gtest.log" | head -n 40 | tee -a "$SUMMARY"
  fail "native gtests (see $LOGS/gtest.log)"
fi
grep -E 'GPU vs CPU: .*max abs' "$LOGS/gtest.log" | tee -a "$SUMMARY"
say "  one iteration of $NET, GPU vs CPU:"
if REID_AGREEMENT_NET=$NET GLOG_minloglevel=1 "$GTEST" "$GPU" --gtest_filter='NetGpuCpuAgreementTest.*' >"$LOGS/agreement.log" 2>&1; then
  grep -E '  loss:|GPU vs CPU: |^\[  PASSED' "$LOGS/agreement.log" | tee -a "$SUMMARY"
else
  grep -E 'BAD|  loss:|GPU vs CPU: |Failure|Check failed' "$LOGS/agreement.log" | head -n 40 | tee -a "$SUMMARY"
  fail "net $NET: GPU and CPU disagree (see $LOGS/agreement.log)"
fi

# ---- 2. caffe time --------------------------------------------------------------------
section "2. caffe time ${DEV[*]:-(CPU)} -iterations $ITERS on $NET"
if "$CAFFE" time -model "$NET" "${DEV[@]}" -iterations "$ITERS" >"$LOGS/time.log" 2>&1; then
  awk '
    function layer(line) { line = substr(line, index(line, "] ") + 2); sub(/\t.*/, "", line); gsub(/ /, "", line); return line }
    /\tforward: [0-9.e-]+ ms/ { n = layer($0);
                                f[n] = $(NF - 1); if (!(n in seen)) { seen[n] = 1; order[++k] = n } }
    /\tbackward: [0-9.e-]+ ms/ { b[layer($0)] = $(NF - 1) }
    /Average Forward pass/ { fw = $(NF - 1) } /Average Backward pass/ { bw = $(NF - 1) }
    /Average Forward-Backward/ { fb = $(NF - 1) }
    END {
      for (i = 1; i <= k; i++) t[order[i]] = f[order[i]] + b[order[i]];
      printf "  %-36s %12s %12s %12s %7s\n", "layer", "forward ms", "backward ms", "total ms", "share";
      # slowest first (selection sort: k is small)
      for (i = 1; i <= k; i++) { m = i; for (j = i + 1; j <= k; j++) if (t[order[j]] > t[order[m]]) m = j;
        s = order[i]; order[i] = order[m]; order[m] = s;
        n = order[i]; printf "  %-36s %12.4f %12.4f %12.4f %6.1f%%\n", n, f[n], b[n], t[n], (fb > 0 ? 100 * t[n] / fb : 0) }
      printf "  forward %.3f ms, backward %.3f ms, forward-backward %.3f ms per iteration\n", fw, bw, fb
    }' "$LOGS/time.log" >"$LOGS/.layers"
  cat "$LOGS/.layers" >>"$SUMMARY"   # the whole table; the slowest 40 layers on the terminal
  rows=$(( $(wc -l <"$LOGS/.layers") - 2 ))
  sed '$d' "$LOGS/.layers" | head -n 41
  (( rows > 40 )) && echo "  ... $((rows - 40)) more layers in $SUMMARY"
  tail -n 1 "$LOGS/.layers"
  rm -f "$LOGS/.layers"
else
  tail -n 20 "$LOGS/time.log"; fail "caffe time on $NET (see $LOGS/time.log)"
fi

# ---- 3./4. training iterations/s --------------------------------------------------------
# One `caffe train` of TRAIN_ITERS iterations; iterations/s from Caffe's own display lines
# (the first display interval, which includes warm-up, left out) and from the wall clock.
train_rate() {
  local label=$1 net=$2 log=$3 work display
  work=$(mktemp -d)
  display=$(( TRAIN_ITERS / 10 )); (( display > 0 )) || display=1
  cat >"$work/solver.prototxt" <<EOF
net: "$(cd "$(dirname "$net")" && pwd)/$(basename "$net")"
base_lr: 1e-5
lr_policy: "fixed"
momentum: 0.9
weight_decay: 0.0005
max_iter: $TRAIN_ITERS
display: $display
snapshot_after_train: false
random_seed: 1
solver_mode: $MODE
EOF
  local t0 t1
  t0=$(date +%s.%N)
  if (cd "$work" && "$CAFFE" train -solver solver.prototxt "${DEV[@]}") >"$log" 2>&1; then
    t1=$(date +%s.%N)
    awk -v label="$label" -v iters="$TRAIN_ITERS" -v t0="$t0" -v t1="$t1" '
      /Iteration [0-9]+ \(.* iter\/s/ { n++; if (n > 1) { r = $0; sub(/.*\(/, "", r); sub(/ iter\/s.*/, "", r); s += r; c++ } }
      /Iteration [0-9]+.*loss = / { loss = $NF }
      END { wall = t1 - t0
            printf "  %s: %s iterations/s (mean over display intervals after the first), %d iterations in %.1f s wall (%.2f/s incl. set-up), last loss %s\n",
                   label, c ? sprintf("%.2f", s / c) : "n/a", iters, wall, iters / wall, loss }' "$log" | tee -a "$SUMMARY"
  else
    tail -n 20 "$log"; fail "$label: caffe train on $net (see $log)"
  fi
  rm -rf "$work"
}

section "3. caffe train ${DEV[*]:-(CPU)}: $TRAIN_ITERS iterations of $NET (native layers)"
train_rate "native data (DummyData)" "$NET" "$LOGS/train_native.log"

section "4. the same, fed by the Python data layer ($PY_NET)"
if ! ldd "$PREFIX/lib/libcaffe.so" 2>/dev/null | grep -q libboost_python; then
  say "  skipped: this Caffe ($PREFIX) is built without Python layers (cuda-nopy-nocv: the GPU"
  say "  machine has no Boost.Python); build WITH_PYTHON=1 on a machine that has it to measure this"
elif [[ ! -f $PY_NET ]]; then
  say "  skipped: $PY_NET does not exist yet (the net generator in reid/nets writes it)"
else
  export PYTHONPATH="$PREFIX/python:$ROOT${PYTHONPATH:+:$PYTHONPATH}"
  train_rate "Python data layer" "$PY_NET" "$LOGS/train_python.log"
fi

echo
if [[ $PAPER == 0 ]]; then say "NOTE: timings above are of the smoke net, not the paper-size ALL net"; fi
if [[ ${#FAILED[@]} -gt 0 ]]; then
  say "gpu_check: ${#FAILED[@]} step(s) failed: ${FAILED[*]}"
  exit 1
fi
say "gpu_check: all steps passed (logs in $LOGS)"
