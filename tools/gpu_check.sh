#!/usr/bin/env bash
# The GPU check, for a machine with an NVIDIA GPU; run from the repository root:
#
#   bash tools/gpu_check.sh
#
#   1. the native gtests on the GPU: every layer's tests on both devices (GradientChecker on
#      the GPU too) and each layer's GPU passes against the CPU reference
#      (native/src/caffe/test/test_gpu_cpu_agreement.cpp states the checks and tolerances);
#   2. two SGD iterations of ALL_NET on the GPU against the CPU (the same file's net test);
#   3. `caffe time -gpu 0` per layer on ALL_NET and on CNN_NET (the plain CaffeNet-1024 trunk
#      at the same batch): the TAM + SRM overhead as the ratio of their forward-backward times;
#   4. `caffe train -gpu 0` on ALL_NET for TRAIN_ITERS iterations: iterations/s;
#   5. `caffe time -gpu 0` on METRIC_NET (the deploy metric net, SRM, paper 3.3, at a batch of
#      pairs that fills a GPU): pairs/s, and from it the time to re-score the top 100 of all
#      1,980 MARS queries (RERANK_QUERIES x RERANK_TOP pairs).
# Every number also goes to a `RESULT` line of $OUT/summary.txt.
#
# Nets (made by tools/generate_nets.py; ALL_NET, CNN_NET, METRIC_NET override them):
#   prototxt/gpu_check/all_paper_native.prototxt    the paper-size ALL net, native layers only
#   prototxt/gpu_check/cnn_paper_native.prototxt    the CNN row of Table 2, same batch
#   prototxt/gpu_check/all_paper_metric.prototxt    deploy_metric of ALL at 512 pairs
#
# Caffe comes from CAFFE_PREFIX, else .gpu_bundle/caffe-cuda.tar.xz, unpacked into TMPDIR
# (toolchain/gather_gpu_bundle.sh: the cuda-nopy-nocv build and its non-CUDA libraries, for a
# machine without Caffe's dependencies), else .caffe/cuda or .caffe/cuda-nopy-nocv. CUDA's
# runtime, cuBLAS and cuRAND come from the machine: CUDA_LIB_DIRS (colon-separated) if set,
# else the nvidia wheels (nvidia/*/lib) of PYTHON (default python3), then CUDA_HOME/lib64.
# The bundle's fallback/ (its C++ runtime and cudart) serves only libraries that ldd reports
# missing or too old here: put first, its libstdc++ (Debian 12, needs glibc 2.36) would
# replace a host's own and break hosts with an older glibc.
#
# Environment: ITERS (caffe time iterations, 50), TRAIN_ITERS (200), GPU (device id, 0),
#   OUT (folder for the logs; default out/gpu_check), GTEST_FILTER (step 1's tests, all),
#   GPU_CHECK_CPU=1 runs the same steps on the CPU (no GPU needed: the CPU instantiations of
#   the gtests, the GPU's passes of the agreement tests on the CPU) to check the script and a
#   bundle on a machine without a GPU; it measures nothing about GPUs.
set -uo pipefail
# caffe time / train report at INFO level; a caller (bin/python sets 1) must not hide it
export GLOG_minloglevel=0
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
ALL_NET=${ALL_NET:-prototxt/gpu_check/all_paper_native.prototxt}
CNN_NET=${CNN_NET:-prototxt/gpu_check/cnn_paper_native.prototxt}
METRIC_NET=${METRIC_NET:-prototxt/gpu_check/all_paper_metric.prototxt}
RERANK_QUERIES=1980   # MARS test queries (paper 4.1)
RERANK_TOP=100        # candidates re-scored per query by the metric (paper eq. 2)
ITERS=${ITERS:-50}
TRAIN_ITERS=${TRAIN_ITERS:-200}
GPU=${GPU:-0}
CPU_DRY=${GPU_CHECK_CPU:-0}
LOGS=${OUT:-$ROOT/out/gpu_check}
CUDA_HOME=${CUDA_HOME:-/usr/local/cuda}
PYTHON=${PYTHON:-python3}
mkdir -p "$LOGS"
FAILED=()
SUMMARY=$LOGS/summary.txt
: >"$SUMMARY"

say() { echo "$*" | tee -a "$SUMMARY"; }
section() { echo; say "==> $*"; }
fail() { FAILED+=("$1"); say "FAILED: $1"; }
result() { say "RESULT $*"; }

for net in "$ALL_NET" "$CNN_NET" "$METRIC_NET"; do
  [[ -f $net ]] || { echo "gpu_check: $net does not exist: run 'bin/python tools/generate_nets.py' (or set ALL_NET/CNN_NET/METRIC_NET)" >&2; exit 2; }
done

# ---- which Caffe, which CUDA libraries -------------------------------------------------
pick_caffe() {
  local p
  if [[ -z ${CAFFE_PREFIX:-} && -f $ROOT/.gpu_bundle/caffe-cuda.tar.xz ]]; then
    p=$(mktemp -d "${TMPDIR:-/tmp}/reid-gpu-bundle.XXXXXX")
    tar -C "$p" -xJf "$ROOT/.gpu_bundle/caffe-cuda.tar.xz" 2>/dev/null \
      || "$PYTHON" -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' \
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

# Folders of the machine's CUDA libraries: CUDA_LIB_DIRS, else PYTHON's nvidia wheels (any
# layout: asked of the interpreter), then the toolkit.
nvidia_lib_dirs() {
  if [[ -n ${CUDA_LIB_DIRS:-} ]]; then echo "$CUDA_LIB_DIRS"; return; fi
  {
    "$PYTHON" - <<'PY' 2>/dev/null
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
    [[ -d $CUDA_HOME/lib64 ]] && echo "$CUDA_HOME/lib64"
  } | awk '!seen[$0]++' | paste -sd: -
}

# Libraries that ldd reports missing ("not found") or too old ("version ... not found").
unresolved_libs() {
  ldd "$@" 2>&1 | awk '
    / => not found/ { print $1 }
    /version .* not found/ { n = split($0, a, ":"); lib = a[2]; sub(/^ */, "", lib); sub(/.*\//, "", lib); print lib }' \
    | sort -u
}

PREFIX=$(pick_caffe) || { echo "gpu_check: no CUDA Caffe: run toolchain/gather_gpu_bundle.sh (or make setup CUDA=1)" >&2; exit 2; }
[[ $PREFIX == */reid-gpu-bundle.* ]] && trap 'rm -rf "$PREFIX"' EXIT   # the unpacked bundle
CAFFE=$PREFIX/bin/caffe
GTEST=$PREFIX/bin/reid_native_tests
CUDA_LIBS=$(nvidia_lib_dirs)
export LD_LIBRARY_PATH="$PREFIX/lib${CUDA_LIBS:+:$CUDA_LIBS}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
BINARIES=("$CAFFE" "$GTEST" "$PREFIX"/lib/libcaffe.so*)
FALLBACK_USED=()
if [[ -d $PREFIX/fallback ]]; then
  # Links to just the fallback libraries this machine lacks, in a folder of their own.
  used=$(mktemp -d "${TMPDIR:-/tmp}/reid-gpu-fallback.XXXXXX")
  trap 'rm -rf "$used"; [[ $PREFIX == */reid-gpu-bundle.* ]] && rm -rf "$PREFIX"' EXIT
  for lib in $(unresolved_libs "${BINARIES[@]}"); do
    [[ -f $PREFIX/fallback/$lib ]] && ln -s "$PREFIX/fallback/$lib" "$used/$lib" && FALLBACK_USED+=("$lib")
  done
  [[ ${#FALLBACK_USED[@]} -gt 0 ]] && LD_LIBRARY_PATH+=":$used"
fi

section "machine"
say "caffe: $PREFIX"
[[ -f $PREFIX/MANIFEST ]] && say "$(sed -n 's/^\(build\|commit\|cuda\|made\): /bundle \1: /p' "$PREFIX/MANIFEST")"
say "glibc: $(ldd --version | head -n 1)"
say "CUDA libraries from: ${CUDA_LIBS:-(none found; the default search path)}"
say "from the bundle's fallback/: ${FALLBACK_USED[*]:-(nothing: the machine has them all)}"
if [[ $CPU_DRY == 1 ]]; then
  say "GPU_CHECK_CPU=1: everything below runs on the CPU (a check of this script, not of the GPU)"
  DEV=(); MODE=CPU
  result "card: none (GPU_CHECK_CPU=1, CPU only), $(date -u +%Y-%m-%d)"
else
  nvidia-smi -L >/dev/null 2>&1 || { say "no GPU visible (nvidia-smi -L failed): nothing to check here; GPU_CHECK_CPU=1 runs the steps on the CPU"; exit 2; }
  card=$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader -i "$GPU")
  say "GPU: $card"
  DEV=(-gpu "$GPU"); MODE=GPU
  result "card: $card, $(date -u +%Y-%m-%d)"
fi
missing=$(unresolved_libs "${BINARIES[@]}" | tr '\n' ' ')
[[ -z $missing ]] || { say "missing libraries: $missing(LD_LIBRARY_PATH=$LD_LIBRARY_PATH)"; exit 2; }
say "nets: $ALL_NET, $CNN_NET, $METRIC_NET"

# ---- 1. native gtests -------------------------------------------------------------------
section "1. native gtests ($MODE; $GTEST)"
filter=${GTEST_FILTER:-*}
if [[ $CPU_DRY == 1 ]]; then
  # CPU instantiations only (/0, /1 of the typed tests); the GPU's passes run on the CPU
  filter=${GTEST_FILTER:-*/0.*:*/1.*:NetAgreementTest.*}
  export REID_AGREEMENT_DRY_RUN=1
fi
if GLOG_minloglevel=1 "$GTEST" "$GPU" --gtest_filter="$filter" >"$LOGS/gtest.log" 2>&1; then
  grep -E '^\[  PASSED  \]|tests? from .* test cases? ran' "$LOGS/gtest.log" | tee -a "$SUMMARY"
  result "native gtests: $(sed -n 's/^\[  PASSED  \] \([0-9]*\) tests\?.*/\1/p' "$LOGS/gtest.log") passed ($MODE)"
else
  grep -E '^\[  FAILED  \]|Failure|error|Check failed' "$LOGS/gtest.log" | head -n 40 | tee -a "$SUMMARY"
  fail "native gtests (see $LOGS/gtest.log)"
fi
# the worst layer agreement: the GPU's passes against the CPU reference
awk -v dev="$([[ $CPU_DRY == 1 ]] && echo 'CPU (dry run)' || echo GPU)" '
  index($0, " " dev " vs CPU [") && /max abs difference/ { n++; sub(/.*max abs difference /, ""); split($0, a, /[ ,]+/);
    if (a[1] + 0 > abs) abs = a[1] + 0; if (a[5] + 0 > rel) rel = a[5] + 0 }
  END { if (n) printf "layers, %s vs CPU: %d comparisons, max abs difference %.3g, max relative %.3g\n", dev, n, abs, rel }' \
  "$LOGS/gtest.log" | while read -r line; do result "$line"; done

# ---- 2. two training iterations of the ALL net ------------------------------------------
section "2. two SGD iterations of $ALL_NET, $MODE against the CPU"
if REID_AGREEMENT_NET=$ALL_NET GLOG_minloglevel=1 "$GTEST" "$GPU" --gtest_filter='NetAgreementTest.*' >"$LOGS/agreement.log" 2>&1; then
  grep -E 'loss: |vs CPU \[iteration.*max abs|^\[  PASSED' "$LOGS/agreement.log" | tee -a "$SUMMARY"
  grep -E 'vs CPU \[iteration 2\].*max abs' "$LOGS/agreement.log" | sed 's/^ *net /ALL net /' \
    | while read -r line; do result "$line"; done
else
  grep -E 'BAD|loss: |vs CPU \[|Failure|Check failed' "$LOGS/agreement.log" | head -n 40 | tee -a "$SUMMARY"
  fail "net $ALL_NET: $MODE and CPU disagree (see $LOGS/agreement.log)"
fi

# ---- 3. caffe time per layer, ALL against CNN ---------------------------------------------
# Prints the per-layer table of a `caffe time` log, slowest first, and the averages.
layer_table() {
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
    }' "$1"
}

# caffe time on one net; prints the table (the slowest 40 layers on the terminal, all of it
# in the summary) and sets TIME_FW / TIME_FB (ms per iteration).
time_net() {
  local label=$1 net=$2 iters=$3 log=$4 table rows
  TIME_FW=; TIME_FB=
  if ! "$CAFFE" time -model "$net" "${DEV[@]}" -iterations "$iters" >"$log" 2>&1; then
    tail -n 20 "$log"; fail "caffe time on $net (see $log)"; return 1
  fi
  table=$(layer_table "$log")
  echo "$table" >>"$SUMMARY"
  rows=$(( $(echo "$table" | wc -l) - 2 ))
  echo "$table" | sed '$d' | head -n 41
  (( rows > 40 )) && echo "  ... $((rows - 40)) more layers in $SUMMARY"
  echo "$table" | tail -n 1
  TIME_FW=$(awk '/Average Forward pass/ { print $(NF - 1) }' "$log")
  TIME_FB=$(awk '/Average Forward-Backward/ { print $(NF - 1) }' "$log")
  result "$label: forward $TIME_FW ms, forward-backward $TIME_FB ms per iteration ($net, $MODE)"
}

section "3. caffe time ${DEV[*]:-(CPU)} -iterations $ITERS: $ALL_NET against $CNN_NET"
time_net "caffe time ALL" "$ALL_NET" "$ITERS" "$LOGS/time_all.log"; all_fb=$TIME_FB
time_net "caffe time CNN" "$CNN_NET" "$ITERS" "$LOGS/time_cnn.log"; cnn_fb=$TIME_FB
if [[ -n $all_fb && -n $cnn_fb ]]; then
  result "TAM+SRM overhead: ALL / CNN forward-backward = $(awk -v a="$all_fb" -v c="$cnn_fb" 'BEGIN { printf "%.2f", a / c }') ($all_fb / $cnn_fb ms)"
fi

# ---- 4. training iterations/s -------------------------------------------------------------
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
  local t0 t1 line
  t0=$(date +%s.%N)
  if (cd "$work" && "$CAFFE" train -solver solver.prototxt "${DEV[@]}") >"$log" 2>&1; then
    t1=$(date +%s.%N)
    line=$(awk -v label="$label" -v iters="$TRAIN_ITERS" -v t0="$t0" -v t1="$t1" '
      /Iteration [0-9]+ \(.* iter\/s/ { n++; if (n > 1) { r = $0; sub(/.*\(/, "", r); sub(/ iter\/s.*/, "", r); s += r; c++ } }
      /Iteration [0-9]+.*loss = / { loss = $NF }
      END { wall = t1 - t0
            printf "%s: %s iterations/s (mean over display intervals after the first), %d iterations in %.1f s wall (%.2f/s incl. set-up), last loss %s\n",
                   label, c ? sprintf("%.2f", s / c) : "n/a", iters, wall, iters / wall, loss }' "$log")
    result "$line"
  else
    tail -n 20 "$log"; fail "$label: caffe train on $net (see $log)"
  fi
  rm -rf "$work"
}

section "4. caffe train ${DEV[*]:-(CPU)}: $TRAIN_ITERS iterations of $ALL_NET"
train_rate "training ALL ($MODE)" "$ALL_NET" "$LOGS/train_all.log"

# ---- 5. SRM pairs/s ------------------------------------------------------------------------
pairs=$(awk '/dim:/ { print $2; exit }' "$METRIC_NET")   # N of the first Input: pairs per pass
section "5. caffe time ${DEV[*]:-(CPU)}: $METRIC_NET, $pairs pairs per forward pass"
if time_net "caffe time metric" "$METRIC_NET" "$(( ITERS < 20 ? ITERS : 20 ))" "$LOGS/time_metric.log" \
   && [[ -n $TIME_FW ]]; then
  result "$(awk -v n="$pairs" -v ms="$TIME_FW" -v q="$RERANK_QUERIES" -v k="$RERANK_TOP" -v mode="$MODE" 'BEGIN {
    rate = n / (ms / 1000)
    printf "SRM metric: %.0f pairs/s (%d pairs in %.3f ms, %s); re-scoring the top %d of %d MARS queries (%d pairs): %.1f s (pool5 features computed once per tracklet, not included)",
           rate, n, ms, mode, k, q, q * k, q * k / rate }')"
fi

echo
if [[ ${#FAILED[@]} -gt 0 ]]; then
  say "gpu_check: ${#FAILED[@]} step(s) failed: ${FAILED[*]}"
  exit 1
fi
say "gpu_check: all steps passed (logs in $LOGS; RESULT lines in $SUMMARY)"
