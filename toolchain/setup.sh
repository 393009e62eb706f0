#!/usr/bin/env bash
# Set-up for a fresh Debian 12 machine (docs/DESIGN.md §3): system packages, a pinned
# virtualenv, BVLC Caffe 1.0 from the pinned source with the project's patch set and native
# layers, built into .caffe/<variant>. Idempotent: a second run with nothing changed takes
# seconds, and an edited native layer recompiles alone.
#
# Environment:
#   CUDA=auto|0|1     build the CUDA variant (auto: when nvcc exists and a GPU is visible;
#                     1 also builds without a GPU, e.g. to compile every .cu file)
#   CUDA_ARCH="75 80 86 89 90"   compute capabilities for the CUDA variant (the PTX of the
#                     last one is embedded too, for newer GPUs)
#   CUDA_HOME=/usr/local/cuda    the toolkit; cuBLAS/cuRAND come from it, or, where it has only
#                     the compiler, from the pinned wheels of toolchain/cuda-requirements.txt
#   CUDA_EXTRA_CMAKE_ARGS="-DX=Y ..."   more CMake arguments for the CUDA variant
#   WITH_PYTHON=1     pycaffe and Python layers (0 for a bare GPU-machine build)
#   WITH_OPENCV=1     Caffe's OpenCV image I/O
#   CAFFE_SRC=/path   use an existing checkout of BVLC Caffe 99bd997 instead of downloading
#   REID_CACHE=dir    where source, build trees and virtualenvs are cached
#   JOBS=n            parallel compile jobs (default: number of cores)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TC=$ROOT/toolchain
# shellcheck source=caffe.lock
source "$TC/caffe.lock"
CACHE=${REID_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/reid-caffe}
JOBS=${JOBS:-$(nproc)}
WITH_PYTHON=${WITH_PYTHON:-1}
WITH_OPENCV=${WITH_OPENCV:-1}
CUDA_ARCH=${CUDA_ARCH:-75 80 86 89 90}
CUDA_HOME=${CUDA_HOME:-/usr/local/cuda}
SYSTEM_PYTHON=${SYSTEM_PYTHON:-/usr/bin/python3}

die() { echo "setup: $*" >&2; exit 1; }
step() { echo "==> $*" >&2; }

# ---- preflight -----------------------------------------------------------------------
for tool in gcc g++ make patch tar sha256sum; do
  command -v "$tool" >/dev/null || die "missing '$tool': install build-essential and patch (apt-get install build-essential patch)"
done
mkdir -p "$CACHE"
exec 9>"$CACHE/setup.lock"
flock 9   # one set-up at a time per cache: concurrent builds would corrupt the tree

# ---- system packages ------------------------------------------------------------------
install_apt_packages() {
  local missing=()
  while read -r pkg; do
    [[ -z $pkg || $pkg == \#* ]] && continue
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done <"$TC/apt-packages.txt"
  [[ ${#missing[@]} -eq 0 ]] && return
  step "installing system packages: ${missing[*]}"
  [[ $(id -u) -eq 0 ]] || die "missing packages ${missing[*]}: run 'sudo apt-get install ${missing[*]}' or run set-up as root"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq || die "apt-get update failed: check the machine's apt sources"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
    || die "apt-get install ${missing[*]} failed"
}

# ---- virtualenv -------------------------------------------------------------------------
setup_venv() {
  [[ $WITH_PYTHON == 1 ]] || return 0
  [[ -x $SYSTEM_PYTHON ]] || die "no $SYSTEM_PYTHON: install python3-dev and python3-venv"
  local key venv
  key=$( (cat "$TC/requirements.txt"; "$SYSTEM_PYTHON" -VV) | sha256sum | cut -c1-12)
  venv=$CACHE/venv-$key
  if [[ ! -f $venv/.complete ]]; then
    step "creating virtualenv $venv"
    rm -rf "$venv"
    "$SYSTEM_PYTHON" -m venv "$venv" || die "python3 -m venv failed: install python3-venv"
    "$venv/bin/pip" install -q --no-deps -r "$TC/requirements.txt" \
      || { rm -rf "$venv"; die "pip install -r toolchain/requirements.txt failed (see above)"; }
    touch "$venv/.complete"
  fi
  ln -sfn "$venv" "$ROOT/.venv"
  VENV=$venv
}

# ---- pinned source --------------------------------------------------------------------
apt_mirror() {
  # The first Debian mirror this machine's own apt sources name (never hard-coded).
  local f
  for f in /etc/apt/sources.list.d/*.sources /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [[ -f $f ]] || continue
    awk '/^URIs:/ && $2 ~ /debian\/?$/ {print $2; exit}
         /^deb / {for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\// && $i ~ /debian\/?$/) {print $i; exit}}' "$f"
  done | head -n 1
}

fetch_deb_source() {
  local dl=$CACHE/downloads mirror work
  mirror=$(apt_mirror)
  [[ -n $mirror ]] || return 1
  work=$(mktemp -d)
  mkdir -p "$work/lists/partial" "$dl"
  echo "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror $CAFFE_DEB_SUITE main" >"$work/sources.list"
  local opts=(-o "Dir::Etc::sourcelist=$work/sources.list" -o "Dir::Etc::sourceparts=-"
              -o "Dir::State::Lists=$work/lists" -o "APT::Sandbox::User=root")
  step "fetching caffe=$CAFFE_DEB_VERSION source package from $mirror"
  if apt-get "${opts[@]}" update -qq && (cd "$work" && apt-get "${opts[@]}" source -qq --download-only "caffe=$CAFFE_DEB_VERSION"); then
    mv "$work/$CAFFE_ORIG_TARBALL" "$dl/$CAFFE_ORIG_TARBALL.part"
  fi
  rm -rf "$work"
  [[ -f $dl/$CAFFE_ORIG_TARBALL.part ]]
}

verify_tarball() {
  local got
  got=$(sha256sum "$1" | cut -d' ' -f1)
  [[ $got == "$CAFFE_ORIG_SHA256" ]] || { rm -f "$1"; die "checksum mismatch for $1 (got $got, want $CAFFE_ORIG_SHA256): the download is corrupt; run set-up again"; }
}

# Prints the path of a pristine source: a verified tarball or a directory.
obtain_source() {
  if [[ -n ${CAFFE_SRC:-} ]]; then
    [[ -f $CAFFE_SRC/src/caffe/proto/caffe.proto ]] || die "CAFFE_SRC=$CAFFE_SRC is not a Caffe source tree"
    echo "$CAFFE_SRC"; return
  fi
  local tarball=$CACHE/downloads/$CAFFE_ORIG_TARBALL
  if [[ ! -f $tarball ]]; then
    if fetch_deb_source; then
      verify_tarball "$tarball.part"
      mv "$tarball.part" "$tarball"
    elif command -v git >/dev/null; then
      local clone=$CACHE/downloads/caffe-git
      step "source package unavailable; cloning $CAFFE_GIT_URL at $CAFFE_COMMIT"
      rm -rf "$clone.part"
      git clone -q "$CAFFE_GIT_URL" "$clone.part" && git -C "$clone.part" checkout -q "$CAFFE_COMMIT" \
        || { rm -rf "$clone.part"; die "could not download Caffe: neither the Debian source package nor a git clone worked; set CAFFE_SRC=/path/to/caffe-99bd997"; }
      [[ $(git -C "$clone.part" rev-parse HEAD) == "$CAFFE_COMMIT"* ]] || die "git clone is not at $CAFFE_COMMIT"
      rm -rf "$clone" && mv "$clone.part" "$clone"
      echo "$clone"; return
    else
      die "could not download Caffe source and git is missing; set CAFFE_SRC=/path/to/caffe-99bd997"
    fi
  fi
  verify_tarball "$tarball"
  echo "$tarball"
}

# ---- patched tree, keyed by source + patches ------------------------------------------
prepare_tree() {
  local source=$1 tree=$2
  [[ -f $tree/.prepared ]] && return
  step "preparing patched Caffe tree $tree"
  rm -rf "$tree" "$tree.part"
  mkdir -p "$tree.part"
  if [[ -d $source ]]; then
    (cd "$source" && tar --exclude=.git -cf - .) | tar -xf - -C "$tree.part"
  else
    tar -xzf "$source" -C "$tree.part" || die "cannot unpack $source"
  fi
  local p
  for p in "$TC"/patches/*.patch; do
    patch -d "$tree.part" -p1 --forward --batch -s <"$p" >/dev/null \
      || { rm -rf "$tree.part"; die "patch $(basename "$p") does not apply to the pinned source: $(head -n1 "$p")"; }
  done
  cp -p "$tree.part/src/caffe/proto/caffe.proto" "$tree.part/src/caffe/proto/caffe.proto.orig"
  touch "$tree.part/.prepared"
  mv "$tree.part" "$tree"
}

# ---- CUDA: toolkit, cuBLAS/cuRAND, architectures ----------------------------------------
has_gpu() { command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; }

cuda_wanted() {
  case ${CUDA:-auto} in
    1) return 0 ;;
    0) return 1 ;;
    # auto builds what can run here: without a GPU, a CUDA pycaffe would only be dead weight
    auto) [[ -x $CUDA_HOME/bin/nvcc ]] && has_gpu ;;
    *) die "CUDA=${CUDA}: use auto, 0 or 1" ;;
  esac
}

toolkit_has_cuda_libs() {
  [[ -f $CUDA_HOME/include/cublas_v2.h && -f $CUDA_HOME/include/curand.h ]] \
    && compgen -G "$CUDA_HOME/lib64/libcublas.so*" >/dev/null \
    && compgen -G "$CUDA_HOME/lib64/libcurand.so*" >/dev/null
}

# pip for downloading only: the system's, else a throwaway venv's (Debian's python3-venv).
pip_download() {
  local py=$SYSTEM_PYTHON
  if ! "$py" -m pip --version >/dev/null 2>&1; then
    if [[ ! -x $CACHE/pip-venv/bin/python ]]; then
      "$SYSTEM_PYTHON" -m venv "$CACHE/pip-venv" || die "no pip: install python3-venv or python3-pip"
    fi
    py=$CACHE/pip-venv/bin/python
  fi
  "$py" -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: "$@"
}

# cuBLAS and cuRAND where the toolkit has only nvcc (CUDA 13.0 here): NVIDIA's wheels pinned
# with hashes in toolchain/cuda-requirements.txt, unpacked (never installed) into a folder
# keyed by that file. Sets CUDA_LIBS_DIR: nvidia/cu13/include for the compilers, lib/ for the
# linker with unversioned names (CMake's find_library) and SONAMEs (for running the build here).
provide_cuda_libs() {
  local reqs=$TC/cuda-requirements.txt dir whl so base
  dir=$CACHE/cuda-libs-$(sha256sum "$reqs" | cut -c1-12)
  if [[ ! -f $dir/.complete ]]; then
    step "downloading cuBLAS/cuRAND: $(grep -oE '^[A-Za-z0-9_-]+==[^ ]+' "$reqs" | tr '\n' ' ')"
    rm -rf "$dir" "$dir.part"
    mkdir -p "$dir.part/wheels" "$dir.part/lib"
    pip_download --require-hashes -r "$reqs" -d "$dir.part/wheels" \
      || { rm -rf "$dir.part"; die "pip download -r toolchain/cuda-requirements.txt failed (network, or a wheel whose hash changed)"; }
    for whl in "$dir.part"/wheels/*.whl; do
      "$SYSTEM_PYTHON" -m zipfile -e "$whl" "$dir.part" || { rm -rf "$dir.part"; die "cannot unpack $whl"; }
    done
    rm -rf "$dir.part/wheels"
    for so in "$dir.part"/nvidia/cu13/lib/lib*.so.*; do
      base=$(basename "$so")
      ln -sfn "../nvidia/cu13/lib/$base" "$dir.part/lib/$base"
      ln -sfn "../nvidia/cu13/lib/$base" "$dir.part/lib/${base%%.so.*}.so"
    done
    for f in nvidia/cu13/include/cublas_v2.h nvidia/cu13/include/curand.h lib/libcublas.so lib/libcublasLt.so lib/libcurand.so; do
      [[ -e $dir.part/$f ]] || { rm -rf "$dir.part"; die "the wheels of toolchain/cuda-requirements.txt lack $f (layout changed?)"; }
    done
    touch "$dir.part/.complete"
    mv "$dir.part" "$dir"
  fi
  CUDA_LIBS_DIR=$dir
}

# ---- configure, build, install --------------------------------------------------------
cmake_args() {
  local args=(-DCMAKE_BUILD_TYPE=Release -DBLAS=Open -DUSE_CUDNN=OFF -DUSE_NCCL=OFF
              -DBUILD_matlab=OFF -DBUILD_docs=OFF -DUSE_LEVELDB=ON -DUSE_LMDB=ON
              "-DBUILD_only_tests=${NATIVE_TESTS:-caffe_main}")
  if [[ $WITH_PYTHON == 1 ]]; then
    args+=(-DBUILD_python=ON -DBUILD_python_layer=ON -Dpython_version=3
           "-DPYTHON_EXECUTABLE=$VENV/bin/python")
  else
    args+=(-DBUILD_python=OFF -DBUILD_python_layer=OFF)
  fi
  [[ $WITH_OPENCV == 1 ]] && args+=(-DUSE_OPENCV=ON) || args+=(-DUSE_OPENCV=OFF)
  if [[ $VARIANT == cuda* ]]; then
    # CCCL (Thrust/CUB) of CUDA 12/13 needs C++17; cuDNN >= 8 is unsupported by Caffe 1.0.
    local nvcc_flags=-std=c++17 extra=()
    args+=(-DCPU_ONLY=OFF -DCUDA_ARCH_NAME=Manual "-DCUDA_ARCH_BIN=$CUDA_ARCH"
           "-DCUDA_ARCH_PTX=${CUDA_ARCH##* }" "-DCUDA_TOOLKIT_ROOT_DIR=$CUDA_HOME")
    if [[ -n ${CUDA_LIBS_DIR:-} ]]; then
      args+=("-DCMAKE_LIBRARY_PATH=$CUDA_LIBS_DIR/lib"
             "-DCMAKE_CXX_FLAGS=-I$CUDA_LIBS_DIR/nvidia/cu13/include")
      nvcc_flags+=";-I$CUDA_LIBS_DIR/nvidia/cu13/include"
    fi
    args+=("-DCUDA_NVCC_FLAGS=$nvcc_flags")
    read -ra extra <<<"${CUDA_EXTRA_CMAKE_ARGS:-}"
    args+=("${extra[@]}")
  else
    args+=(-DCPU_ONLY=ON)
  fi
  printf '%s\n' "${args[@]}"
}

build_caffe() {
  local tree=$1 build=$2 prefix=$3 args sig
  mapfile -t args < <(cmake_args)
  sig=$( (printf '%s\n' "${args[@]}"; cat "$tree/.reid-native-manifest") | sha256sum | cut -c1-16)
  mkdir -p "$build"
  if [[ ! -f $build/.configured-$sig ]]; then
    step "configuring ($VARIANT)"
    rm -f "$build"/.configured-*
    cmake -S "$tree" -B "$build" "${args[@]}" >"$build/configure.log" 2>&1 \
      || die "cmake configure failed; see $build/configure.log"
    touch "$build/.configured-$sig"
  fi
  step "building Caffe ($VARIANT, $JOBS jobs; only changed files recompile)"
  make -C "$build" -j"$JOBS" --no-print-directory all test.testbin 2>&1 | tee "$build/build.log" \
    | awk '/^\[ *[0-9]+%\]|rror/ {print; fflush()}' || die "Caffe build failed; see $build/build.log"
  rm -f "$prefix/.complete"   # a half-installed prefix is never mistaken for a good one
  cmake --install "$build" --prefix "$prefix" >"$build/install.log" 2>&1 || die "install failed; see $build/install.log"
  mkdir -p "$prefix/share/reid"
  cp -p "$build/test/test.testbin" "$prefix/bin/reid_native_tests"
  echo "$prefix/bin/reid_native_tests" >"$prefix/share/reid/gtest_path"
  echo "$KEY" >"$prefix/.complete"
}

main() {
  install_apt_packages
  command -v cmake >/dev/null || die "missing cmake: apt-get install cmake"
  VENV=
  setup_venv
  local source archs
  source=$(obtain_source)
  VARIANT=cpu
  CUDA_LIBS_DIR=
  if cuda_wanted; then
    [[ -x $CUDA_HOME/bin/nvcc ]] || die "CUDA=1 but no nvcc under CUDA_HOME=$CUDA_HOME"
    read -ra archs <<<"$CUDA_ARCH"
    [[ ${#archs[@]} -gt 0 ]] || die "CUDA_ARCH is empty: name compute capabilities, e.g. CUDA_ARCH=\"80 90\""
    CUDA_ARCH="${archs[*]}"
    VARIANT=cuda
    toolkit_has_cuda_libs || provide_cuda_libs
  fi
  [[ $WITH_PYTHON == 1 ]] || VARIANT=$VARIANT-nopy
  [[ $WITH_OPENCV == 1 ]] || VARIANT=$VARIANT-nocv
  local srckey
  srckey=$( { if [[ -d $source ]]; then echo "$source"; else echo "$CAFFE_ORIG_SHA256"; fi; cat "$TC"/patches/*.patch; } | sha256sum | cut -c1-12)
  KEY=$srckey-$VARIANT
  local tree=$CACHE/caffe-$srckey/src build=$CACHE/caffe-$srckey/build-$VARIANT
  prepare_tree "$source" "$tree"
  NATIVE_TESTS=$("$SYSTEM_PYTHON" "$TC/sync_native.py" "$ROOT/native" "$tree") || die "syncing native layers failed"
  build_caffe "$tree" "$build" "$ROOT/.caffe/$VARIANT"
  step "Caffe ready in $ROOT/.caffe/$VARIANT"
}

main "$@"
