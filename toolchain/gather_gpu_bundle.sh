#!/usr/bin/env bash
# Gather the CUDA build for a GPU machine that has CUDA's own libraries but none of Caffe's
# (no Boost, glog, protobuf, ...): the cuda-nopy-nocv variant's `caffe` tool, libcaffe and the
# native gtest binary, plus every non-CUDA shared library they load, into one folder
# (default .gpu_bundle, git-ignored) that travels with the checkout. tools/gpu_check.sh runs
# from it, with the GPU machine's own CUDA runtime, cuBLAS and cuRAND (its nvidia wheels).
#
#   bash toolchain/gather_gpu_bundle.sh [DEST]
#
# Environment: CAFFE_PREFIX (default .caffe/cuda-nopy-nocv, built by
#   `CUDA=1 WITH_PYTHON=0 WITH_OPENCV=0 bash toolchain/setup.sh`), MAX_MIB (64: the size the
#   bundle plus the checkout may reach; the gather fails above it).
# DEST holds caffe-cuda.tar.xz (tools/gpu_check.sh unpacks it) and MANIFEST (from which build,
#   sizes, the glibc it needs). Inside the tarball: bin/ (caffe, reid_native_tests), lib/
#   (libcaffe and the non-CUDA libraries: OpenBLAS alone is 35 MB, hence the compression),
#   fallback/ (libcudart from this toolkit and the C++ runtime, for machines without their
#   own; tools/gpu_check.sh loads from it only what ldd reports missing or too old).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PREFIX=${CAFFE_PREFIX:-$ROOT/.caffe/cuda-nopy-nocv}
DEST=${1:-$ROOT/.gpu_bundle}
MAX_MIB=${MAX_MIB:-64}
CUDA_HOME=${CUDA_HOME:-/usr/local/cuda}

die() { echo "gather_gpu_bundle: $*" >&2; exit 1; }

[[ -f $PREFIX/.complete ]] || die "no complete CUDA build in $PREFIX: run 'CUDA=1 WITH_PYTHON=0 WITH_OPENCV=0 bash toolchain/setup.sh' first"
[[ -x $PREFIX/bin/caffe && -x $PREFIX/bin/reid_native_tests ]] || die "$PREFIX lacks bin/caffe or bin/reid_native_tests"
if ldd "$PREFIX/bin/caffe" | grep -qiE 'libpython|libboost_python|libopencv'; then
  die "$PREFIX links Python or OpenCV; the GPU machine has neither: use the cuda-nopy-nocv variant"
fi

# Loaded from the GPU machine itself: glibc, the kernel's vDSO, and CUDA (driver, runtime,
# cuBLAS, cuRAND: too large to carry, and they must match the machine's driver).
is_system_lib() {
  case $1 in
    linux-vdso.so*|ld-linux*|libc.so*|libm.so*|libpthread.so*|libdl.so*|librt.so*|libresolv.so*|libutil.so*) return 0 ;;
    libcuda.so*|libcudart.so*|libcublas.so*|libcublasLt.so*|libcurand.so*|libnvidia*|libnvrtc*) return 0 ;;
  esac
  return 1
}

# The C++ runtime: the machine's own is newer than Debian 12's (gcc 12) on any distribution
# recent enough for CUDA 13, and ours would raise the glibc needed from 2.34 to 2.36; carried
# in fallback/ for a machine without one.
is_fallback_lib() {
  case $1 in libstdc++.so*|libgcc_s.so*) return 0 ;; esac
  return 1
}

# Where this build finds its CUDA libraries (toolkit or the wheels set-up unpacked), so that
# ldd resolves them here.
cuda_lib_path() {
  local rp
  rp=$(readelf -d "$PREFIX/lib/libcaffe.so" | sed -n 's/.*R\(UN\)\?PATH.*\[\(.*\)\]/\2/p')
  echo "${rp:+$rp:}$CUDA_HOME/lib64"
}

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
STAGE=$WORK/bundle
mkdir -p "$STAGE/bin" "$STAGE/lib" "$STAGE/fallback"
cp -L "$PREFIX/bin/caffe" "$PREFIX/bin/reid_native_tests" "$STAGE/bin/"
libcaffe=$(readlink -f "$PREFIX/lib/libcaffe.so")
soname=$(readelf -d "$libcaffe" | sed -n 's/.*SONAME.*\[\(.*\)\]/\1/p')
cp -L "$libcaffe" "$STAGE/lib/${soname:-libcaffe.so.1.0.0}"

SEARCH="$PREFIX/lib:$(cuda_lib_path)"
missing=()
for f in "$STAGE"/bin/* "$STAGE/lib/${soname:-libcaffe.so.1.0.0}"; do
  while read -r name arrow path _; do
    [[ $arrow == "=>" ]] || continue
    is_system_lib "$name" && continue
    [[ $name == libcaffe.so* ]] && continue
    if [[ $path == "not" ]]; then missing+=("$name (needed by $(basename "$f"))"); continue; fi
    if is_fallback_lib "$name"; then
      [[ -e $STAGE/fallback/$name ]] || cp -L "$path" "$STAGE/fallback/$name"
    else
      [[ -e $STAGE/lib/$name ]] || cp -L "$path" "$STAGE/lib/$name"
    fi
  done < <(LD_LIBRARY_PATH=$SEARCH ldd "$f")
done
[[ ${#missing[@]} -eq 0 ]] || die "unresolved libraries: ${missing[*]}"
cudart=$(LD_LIBRARY_PATH=$SEARCH ldd "$STAGE/lib/${soname:-libcaffe.so.1.0.0}" | awk '$1 ~ /^libcudart/ {print $1, $3; exit}')
[[ -n $cudart ]] && cp -L "${cudart#* }" "$STAGE/fallback/${cudart%% *}"
# Symbols are not needed to run; the device code (fatbins) is most of what remains.
strip --strip-unneeded "$STAGE"/bin/* "$STAGE"/lib/* "$STAGE"/fallback/* 2>/dev/null || true

# Self-check: with only the bundle and CUDA's libraries on the path, every library resolves
# inside the bundle or to glibc/CUDA, and the CPU cases of the gtests pass (no GPU needed).
check_path="$STAGE/lib:$(cuda_lib_path):$STAGE/fallback"
for f in "$STAGE"/bin/* "$STAGE"/lib/*; do
  while read -r name arrow path _; do
    [[ $arrow == "=>" ]] || continue
    [[ $path == not ]] && die "$(basename "$f"): $name not found with the bundle alone"
    is_system_lib "$name" || [[ $path == "$STAGE"/* ]] \
      || die "$(basename "$f"): $name resolves outside the bundle ($path)"
  done < <(env -i PATH=/usr/bin:/bin LD_LIBRARY_PATH="$check_path" ldd "$f")
done
echo "gather_gpu_bundle: self-check: CPU cases of reid_native_tests from the bundle" >&2
env -i PATH=/usr/bin:/bin HOME="${HOME:-/root}" LD_LIBRARY_PATH="$check_path" GLOG_minloglevel=2 \
  REID_AGREEMENT_DRY_RUN=1 "$STAGE/bin/reid_native_tests" --gtest_filter='*/0.*:*/1.*:NetAgreementTest.*' \
  >"$STAGE/selfcheck.log" 2>&1 \
  || { tail -n 30 "$STAGE/selfcheck.log" >&2; die "the bundle's gtests fail on the CPU (log above)"; }
grep -E '^\[  PASSED  \]' "$STAGE/selfcheck.log" >&2
rm -f "$STAGE/selfcheck.log"

# The newest glibc symbol version that bin/ and lib/ use (fallback/ loads only where needed).
glibc=$(for f in "$STAGE"/bin/* "$STAGE"/lib/*; do objdump -T "$f" 2>/dev/null; done \
  | grep -oE 'GLIBC_[0-9]+\.[0-9]+' | sort -t. -k2 -n -u | tail -n 1)
unpacked_kib=$(du -sk "$STAGE" | cut -f1)
echo "gather_gpu_bundle: compressing $((unpacked_kib / 1024)) MiB (xz, about half a minute)" >&2
tar -C "$STAGE" -cf - bin lib fallback | xz -T0 -9 >"$WORK/caffe-cuda.tar.xz"
bundle_kib=$(du -sk "$WORK/caffe-cuda.tar.xz" | cut -f1)
tree_kib=$(cd "$ROOT" && git ls-files -z -co --exclude-standard | du -ck --files0-from=- 2>/dev/null | tail -n 1 | cut -f1)
{
  echo "# tools/gpu_check.sh unpacks caffe-cuda.tar.xz; made by toolchain/gather_gpu_bundle.sh"
  echo "build: $(cat "$PREFIX/.complete") from $PREFIX"
  echo "commit: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$ROOT" diff --quiet 2>/dev/null || echo '+changes')"
  echo "made: $(date -u +%Y-%m-%dT%H:%MZ) on $(uname -m), needs glibc >= ${glibc#GLIBC_}"
  echo "cuda: built with $("$CUDA_HOME/bin/nvcc" --version | sed -n 's/.*release \([0-9.]*\).*/\1/p'); needs from the machine: ${cudart%% *}, libcublas.so.13, libcublasLt.so.13, libcurand.so.10, libcuda.so.1"
  echo "size: caffe-cuda.tar.xz $(( (bundle_kib + 1023) / 1024 )) MiB ($(( (unpacked_kib + 1023) / 1024 )) MiB unpacked), checkout $(( (tree_kib + 1023) / 1024 )) MiB"
  (cd "$STAGE" && find bin lib fallback -type f -printf '%k KiB  %p\n' | sort -rn)
} >"$WORK/MANIFEST"
rm -rf "$DEST"
mkdir -p "$DEST"
mv "$WORK/caffe-cuda.tar.xz" "$WORK/MANIFEST" "$DEST/"
sed -n '1,7p' "$DEST/MANIFEST" >&2
total=$(( (bundle_kib + tree_kib + 1023) / 1024 ))
[[ $total -le $MAX_MIB ]] || die "bundle + checkout = $total MiB, over $MAX_MIB MiB"
echo "gather_gpu_bundle: $DEST ready ($(( (bundle_kib + 1023) / 1024 )) MiB; with the checkout $total of $MAX_MIB MiB)" >&2
