#!/usr/bin/env bash
# Set-up for a fresh Debian 12 machine (docs/DESIGN.md §3): system packages, a pinned
# virtualenv, BVLC Caffe 1.0 from the pinned source with the project's patch set and native
# layers, built into .caffe/<variant>. Idempotent: a second run with nothing changed takes
# seconds, and an edited native layer recompiles alone.
#
# Environment:
#   CUDA=auto|0|1     build the CUDA variant (auto: when a GPU is visible; 1 also builds
#                     without a GPU, e.g. to compile every .cu file)
#   CUDA_ARCH="75 80 86 89 90"   compute capabilities for the CUDA variant (the PTX of the
#                     last one is embedded too, for newer GPUs)
#   CUDA_HOME=/usr/local/cuda    the toolkit; cuBLAS/cuRAND come from it, or, where it has only
#                     the compiler, from the pinned wheels of toolchain/cuda-requirements.txt;
#                     where it has no nvcc at all, those wheels are the whole toolkit (compiler,
#                     headers, runtime: what CI compiles with), unpacked into REID_CACHE
#   CUDA_HOME=wheels  the pinned wheels as the toolkit even where one is installed
#   CUDA_EXTRA_CMAKE_ARGS="-DX=Y ..."   more CMake arguments for the CUDA variant
#   WITH_PYTHON=1     pycaffe and Python layers (0 for a bare GPU-machine build)
#   WITH_OPENCV=1     Caffe's OpenCV image I/O
#   CAFFE_SRC=/path   use an existing checkout of BVLC Caffe 99bd997 instead of downloading
#                     (its patched tree is cached by the checkout's content, not its path)
#   REID_CACHE=dir    where source, build trees and virtualenvs are cached
#   JOBS=n            parallel compile jobs (default: number of cores)
#   REID_SETUP_UNTIL=source|toolkit   stop once the patched source tree (and, with toolkit, the
#                     CUDA toolkit) is ready: no compiling; the toolchain tests use it to check
#                     the source routes cheaply
# The pinned source, first found wins: CAFFE_SRC; the cached tarball; a cached git clone whose
# HEAD is the pinned commit; the Debian source package from this machine's mirror, then from
# the distribution's archive of old releases; a git clone. Once cached, set-up needs no network.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TC=$ROOT/toolchain
# shellcheck source=caffe.lock
source "$TC/caffe.lock"
# shellcheck source=apt_sources.sh
source "$TC/apt_sources.sh"
CACHE=${REID_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/reid-caffe}
JOBS=${JOBS:-$(nproc)}
WITH_PYTHON=${WITH_PYTHON:-1}
WITH_OPENCV=${WITH_OPENCV:-1}
CUDA_ARCH=${CUDA_ARCH:-75 80 86 89 90}
CUDA_HOME_GIVEN=${CUDA_HOME:+1}
CUDA_HOME=${CUDA_HOME:-/usr/local/cuda}
CUDA_REQS=$TC/cuda-requirements.txt
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
# Prints the virtualenv's path (nothing when WITH_PYTHON=0). Its name is keyed by the pins
# above requirements.txt's "not keyed" line (numpy among them: Caffe compiles against the
# virtualenv, so a new key rebuilds Caffe); the pins below it are pure Python and are
# installed into the existing virtualenv whenever the file changes.
setup_venv() {
  [[ $WITH_PYTHON == 1 ]] || return 0
  [[ -x $SYSTEM_PYTHON ]] || die "no $SYSTEM_PYTHON: install python3-dev and python3-venv"
  local key venv reqs=$TC/requirements.txt stamp
  key=$( (sed '/^# ---- not keyed/,$d' "$reqs"; "$SYSTEM_PYTHON" -VV) | sha256sum | cut -c1-12)
  stamp=$(sha256sum "$reqs" | cut -c1-16)
  venv=$CACHE/venv-$key
  if [[ ! -f $venv/.complete ]]; then
    step "creating virtualenv $venv"
    rm -rf "$venv"
    "$SYSTEM_PYTHON" -m venv "$venv" >&2 || die "python3 -m venv failed: install python3-venv"
    "$venv/bin/pip" install -q --no-deps -r "$reqs" >&2 \
      || { rm -rf "$venv"; die "pip install -r toolchain/requirements.txt failed (see above)"; }
    touch "$venv/.complete"
  elif [[ $(cat "$venv/.requirements" 2>/dev/null) != "$stamp" ]]; then
    step "installing the unkeyed pins of toolchain/requirements.txt into $venv"
    "$venv/bin/pip" install -q --no-deps -r "$reqs" >&2 || die "pip install -r toolchain/requirements.txt failed (see above)"
  fi
  echo "$stamp" >"$venv/.requirements"
  ln -sfn "$venv" "$ROOT/.venv"
  echo "$venv"
}

# ---- pinned source --------------------------------------------------------------------
# fetch_deb_source MIRROR [apt options]: the pinned Debian source package into downloads/.
fetch_deb_source() {
  local mirror=$1 dl=$CACHE/downloads work
  work=$(mktemp -d)
  mkdir -p "$work/lists/partial" "$dl"
  echo "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror $CAFFE_DEB_SUITE main" >"$work/sources.list"
  local opts=(-o "Dir::Etc::sourcelist=$work/sources.list" -o "Dir::Etc::sourceparts=-"
              -o "Dir::State::Lists=$work/lists" -o "APT::Sandbox::User=root" "${@:2}")
  step "fetching caffe=$CAFFE_DEB_VERSION source package from $mirror"
  if apt-get "${opts[@]}" update -qq && (cd "$work" && apt-get "${opts[@]}" source -qq --download-only "caffe=$CAFFE_DEB_VERSION"); then
    mv "$work/$CAFFE_ORIG_TARBALL" "$dl/$CAFFE_ORIG_TARBALL.part"
  fi
  rm -rf "$work"
  [[ -f $dl/$CAFFE_ORIG_TARBALL.part ]]
}

# The mirror first, then the archive of old releases (whose Release files are past their
# Valid-Until by design; their signatures are still checked).
fetch_deb_source_anywhere() {
  local mirror archive
  mirror=$(apt_mirror)
  [[ -n $mirror ]] && fetch_deb_source "$mirror" && return 0
  while read -r archive; do
    fetch_deb_source "$archive" -o Acquire::Check-Valid-Until=false && return 0
  done < <(apt_archives)
  return 1
}

verify_tarball() {
  local got
  got=$(sha256sum "$1" | cut -d' ' -f1)
  [[ $got == "$CAFFE_ORIG_SHA256" ]] || { rm -f "$1"; die "checksum mismatch for $1 (got $got, want $CAFFE_ORIG_SHA256): the download is corrupt; run set-up again"; }
}

clone_at_pin() { [[ $(git -C "$1" rev-parse HEAD 2>/dev/null) == "$CAFFE_COMMIT" ]]; }

git_clone_source() {
  local clone=$1
  command -v git >/dev/null || return 1
  step "cloning $CAFFE_GIT_URL at $CAFFE_COMMIT"
  rm -rf "$clone.part"
  if git clone -q "$CAFFE_GIT_URL" "$clone.part" && git -C "$clone.part" checkout -q "$CAFFE_COMMIT" \
      && clone_at_pin "$clone.part"; then
    rm -rf "$clone" && mv "$clone.part" "$clone"
    return 0
  fi
  rm -rf "$clone.part"
  return 1
}

# Prints the path of a pristine source: a verified tarball or a directory.
obtain_source() {
  local tarball=$CACHE/downloads/$CAFFE_ORIG_TARBALL clone=$CACHE/downloads/caffe-git
  if [[ -n ${CAFFE_SRC:-} ]]; then
    [[ -f $CAFFE_SRC/src/caffe/proto/caffe.proto ]] || die "CAFFE_SRC=$CAFFE_SRC is not a Caffe source tree"
    echo "$CAFFE_SRC"
  elif [[ -f $tarball ]]; then
    verify_tarball "$tarball"
    echo "$tarball"
  elif [[ -d $clone ]] && clone_at_pin "$clone"; then
    step "using the cached git clone $clone (HEAD is the pinned $CAFFE_COMMIT)"
    echo "$clone"
  elif fetch_deb_source_anywhere; then
    verify_tarball "$tarball.part"
    mv "$tarball.part" "$tarball"
    echo "$tarball"
  elif git_clone_source "$clone"; then
    echo "$clone"
  else
    die "could not obtain Caffe: no cached source in $CACHE/downloads, and neither the Debian source package (mirror, archive) nor a git clone of $CAFFE_GIT_URL worked; set CAFFE_SRC=/path/to/caffe-99bd997"
  fi
}

# The cache key of a pristine source: the tarball's pinned checksum, or a directory's content
# (every file but .git), so that a moved or re-cloned checkout reuses its tree.
source_digest() {
  if [[ -f $1 ]]; then
    echo "$CAFFE_ORIG_SHA256"
  else
    (cd "$1" && find . -path ./.git -prune -o -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum) \
      | sha256sum | cut -c1-64
  fi
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
    # (where no toolkit is installed, the pinned wheels are the toolkit)
    auto) has_gpu ;;
    *) die "CUDA=${CUDA}: use auto, 0 or 1" ;;
  esac
}

# The CUDA major version the pinned wheels are for, from the runtime's version.
cuda_major() {
  local major
  major=$(sed -nE 's/^nvidia-cuda-runtime==([0-9]+)\..*/\1/p' "$CUDA_REQS")
  [[ -n $major ]] || die "toolchain/cuda-requirements.txt pins no nvidia-cuda-runtime==X.Y: cannot tell the CUDA version"
  echo "$major"
}

nvcc_major() { "$1/bin/nvcc" --version | sed -nE 's/.*release ([0-9]+)\..*/\1/p'; }

toolkit_has_cuda_libs() {
  [[ -f $1/include/cublas_v2.h && -f $1/include/curand.h ]] \
    && compgen -G "$1/lib64/libcublas.so*" >/dev/null \
    && compgen -G "$1/lib64/libcurand.so*" >/dev/null
}

# pip for downloading only: the system's, else a throwaway venv's (Debian's python3-venv).
pip_download() {
  local py=$SYSTEM_PYTHON
  if ! "$py" -m pip --version >/dev/null 2>&1; then
    if [[ ! -x $CACHE/pip-venv/bin/python ]]; then
      "$SYSTEM_PYTHON" -m venv "$CACHE/pip-venv" >&2 || die "no pip: install python3-venv or python3-pip"
    fi
    py=$CACHE/pip-venv/bin/python
  fi
  "$py" -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: "$@" >&2
}

# NVIDIA's wheels pinned with hashes in toolchain/cuda-requirements.txt (compiler, headers,
# runtime, cuBLAS, cuRAND), unpacked (never installed) into a folder keyed by the pinned lines,
# and laid out as a toolkit: bin/nvcc, include/, lib/ with lib64 and targets/<arch>/ beside
# as nvcc.profile and CMake expect, and unversioned library names for CMake's find_library.
# Prints the toolkit's path.
provide_cuda_wheels() {
  local major dir home whl so base
  major=$(cuda_major)
  dir=$CACHE/cuda-wheels-$(grep -E '^[A-Za-z0-9_-]+==' "$CUDA_REQS" | sha256sum | cut -c1-12)
  home=$dir/nvidia/cu$major
  if [[ ! -f $dir/.complete ]]; then
    step "downloading CUDA $major wheels: $(grep -oE '^[A-Za-z0-9_-]+==[^ ]+' "$CUDA_REQS" | tr '\n' ' ')"
    rm -rf "$dir" "$dir.part"
    mkdir -p "$dir.part/wheels"
    pip_download --require-hashes -r "$CUDA_REQS" -d "$dir.part/wheels" \
      || { rm -rf "$dir.part"; die "pip download -r toolchain/cuda-requirements.txt failed (network, or a wheel whose hash changed)"; }
    for whl in "$dir.part"/wheels/*.whl; do
      "$SYSTEM_PYTHON" -m zipfile -e "$whl" "$dir.part" || { rm -rf "$dir.part"; die "cannot unpack $whl"; }
    done
    rm -rf "$dir.part/wheels"
    local part=$dir.part/nvidia/cu$major
    chmod +x "$part"/bin/* "$part"/nvvm/bin/* 2>/dev/null || true   # zipfile drops the x bit
    ln -sfn lib "$part/lib64"
    mkdir -p "$part/targets/$(uname -m)-linux"
    ln -sfn ../../include "$part/targets/$(uname -m)-linux/include"
    ln -sfn ../../lib "$part/targets/$(uname -m)-linux/lib"
    for so in "$part"/lib/lib*.so.*; do
      base=$(basename "$so")
      [[ -e $part/lib/${base%%.so.*}.so ]] || ln -s "$base" "$part/lib/${base%%.so.*}.so"
    done
    for f in bin/nvcc nvvm/bin/cicc include/cuda_runtime.h include/cublas_v2.h include/curand.h \
             lib/libcudart.so lib/libcublas.so lib/libcublasLt.so lib/libcurand.so; do
      [[ -e $part/$f ]] || { rm -rf "$dir.part"; die "the wheels of toolchain/cuda-requirements.txt lack $f (layout changed?)"; }
    done
    touch "$dir.part/.complete"
    mv "$dir.part" "$dir"
  fi
  echo "$home"
}

# Prints "TOOLKIT [LIBS]": the toolkit nvcc and the CUDA headers come from, and where it lacks
# cuBLAS/cuRAND, the pinned wheels' toolkit that provides them.
cuda_toolkit() {
  local wheels
  if [[ $CUDA_HOME == wheels ]]; then
    provide_cuda_wheels
  elif [[ -x $CUDA_HOME/bin/nvcc ]]; then
    toolkit_has_cuda_libs "$CUDA_HOME" && { echo "$CUDA_HOME"; return; }
    [[ $(nvcc_major "$CUDA_HOME") == "$(cuda_major)" ]] \
      || die "CUDA_HOME=$CUDA_HOME holds CUDA $(nvcc_major "$CUDA_HOME") without cuBLAS/cuRAND, and toolchain/cuda-requirements.txt pins CUDA $(cuda_major) ones"
    wheels=$(provide_cuda_wheels)
    echo "$CUDA_HOME $wheels"
  elif [[ $CUDA_HOME_GIVEN == 1 ]]; then
    die "no nvcc under CUDA_HOME=$CUDA_HOME (unset CUDA_HOME to use the pinned wheels)"
  else
    step "no CUDA toolkit in $CUDA_HOME: the pinned wheels of toolchain/cuda-requirements.txt are the toolkit"
    provide_cuda_wheels
  fi
}

# ---- configure, build, install --------------------------------------------------------
# cmake_args VARIANT VENV CUDA_TOOLKIT CUDA_LIBS NATIVE_TESTS (empty where unused)
cmake_args() {
  local variant=$1 venv=$2 toolkit=$3 libs=$4 native_tests=$5
  local args=(-DCMAKE_BUILD_TYPE=Release -DBLAS=Open -DUSE_CUDNN=OFF -DUSE_NCCL=OFF
              -DBUILD_matlab=OFF -DBUILD_docs=OFF -DUSE_LEVELDB=ON -DUSE_LMDB=ON
              "-DBUILD_only_tests=${native_tests:-caffe_main}")
  if [[ $WITH_PYTHON == 1 ]]; then
    args+=(-DBUILD_python=ON -DBUILD_python_layer=ON -Dpython_version=3
           "-DPYTHON_EXECUTABLE=$venv/bin/python")
  else
    args+=(-DBUILD_python=OFF -DBUILD_python_layer=OFF)
  fi
  [[ $WITH_OPENCV == 1 ]] && args+=(-DUSE_OPENCV=ON) || args+=(-DUSE_OPENCV=OFF)
  if [[ $variant == cuda* ]]; then
    # CCCL (Thrust/CUB) of CUDA 12/13 needs C++17; cuDNN >= 8 is unsupported by Caffe 1.0.
    local nvcc_flags=-std=c++17 extra=()
    args+=(-DCPU_ONLY=OFF -DCUDA_ARCH_NAME=Manual "-DCUDA_ARCH_BIN=$CUDA_ARCH"
           "-DCUDA_ARCH_PTX=${CUDA_ARCH##* }" "-DCUDA_TOOLKIT_ROOT_DIR=$toolkit")
    if [[ -n $libs ]]; then
      args+=("-DCMAKE_LIBRARY_PATH=$libs/lib" "-DCMAKE_CXX_FLAGS=-I$libs/include")
      nvcc_flags+=";-I$libs/include"
    fi
    args+=("-DCUDA_NVCC_FLAGS=$nvcc_flags")
    read -ra extra <<<"${CUDA_EXTRA_CMAKE_ARGS:-}"
    args+=("${extra[@]}")
  else
    args+=(-DCPU_ONLY=ON)
  fi
  printf '%s\n' "${args[@]}"
}

# build_caffe TREE BUILD PREFIX KEY VARIANT CMAKE_ARGS...
build_caffe() {
  local tree=$1 build=$2 prefix=$3 key=$4 variant=$5 args=("${@:6}") sig
  sig=$( (printf '%s\n' "${args[@]}"; cat "$tree/.reid-native-manifest") | sha256sum | cut -c1-16)
  mkdir -p "$build"
  if [[ ! -f $build/.configured-$sig ]]; then
    step "configuring ($variant)"
    rm -f "$build"/.configured-*
    cmake -S "$tree" -B "$build" "${args[@]}" >"$build/configure.log" 2>&1 \
      || die "cmake configure failed; see $build/configure.log"
    touch "$build/.configured-$sig"
  fi
  step "building Caffe ($variant, $JOBS jobs; only changed files recompile)"
  make -C "$build" -j"$JOBS" --no-print-directory all test.testbin 2>&1 | tee "$build/build.log" \
    | awk '/^\[ *[0-9]+%\]|rror/ {print; fflush()}' || die "Caffe build failed; see $build/build.log"
  rm -f "$prefix/.complete"   # a half-installed prefix is never mistaken for a good one
  cmake --install "$build" --prefix "$prefix" >"$build/install.log" 2>&1 || die "install failed; see $build/install.log"
  mkdir -p "$prefix/share/reid"
  cp -p "$build/test/test.testbin" "$prefix/bin/reid_native_tests"
  echo "$prefix/bin/reid_native_tests" >"$prefix/share/reid/gtest_path"
  echo "$key" >"$prefix/.complete"
}

main() {
  install_apt_packages
  command -v cmake >/dev/null || die "missing cmake: apt-get install cmake"
  local venv= source variant=cpu toolkit= libs= archs srckey native_tests args
  venv=$(setup_venv)
  source=$(obtain_source)
  srckey=$( { source_digest "$source"; cat "$TC"/patches/*.patch; } | sha256sum | cut -c1-12)
  local tree=$CACHE/caffe-$srckey/src
  prepare_tree "$source" "$tree"
  if [[ ${REID_SETUP_UNTIL:-} == source ]]; then
    step "patched source ready in $tree (REID_SETUP_UNTIL=source: stopping before the build)"
    return
  fi
  if cuda_wanted; then
    read -ra archs <<<"$CUDA_ARCH"
    [[ ${#archs[@]} -gt 0 ]] || die "CUDA_ARCH is empty: name compute capabilities, e.g. CUDA_ARCH=\"80 90\""
    CUDA_ARCH="${archs[*]}"
    variant=cuda
    read -r toolkit libs < <(cuda_toolkit) && [[ -n $toolkit ]] || die "no CUDA toolkit (see above)"
  fi
  if [[ ${REID_SETUP_UNTIL:-} == toolkit ]]; then
    step "CUDA toolkit: ${toolkit:-none (CPU variant)}${libs:+, cuBLAS/cuRAND from $libs} (REID_SETUP_UNTIL=toolkit)"
    return
  fi
  [[ $WITH_PYTHON == 1 ]] || variant=$variant-nopy
  [[ $WITH_OPENCV == 1 ]] || variant=$variant-nocv
  local build=$CACHE/caffe-$srckey/build-$variant
  native_tests=$("$SYSTEM_PYTHON" "$TC/sync_native.py" "$ROOT/native" "$tree") || die "syncing native layers failed"
  mapfile -t args < <(cmake_args "$variant" "$venv" "$toolkit" "$libs" "$native_tests")
  build_caffe "$tree" "$build" "$ROOT/.caffe/$variant" "$srckey-$variant" "$variant" "${args[@]}"
  step "Caffe ready in $ROOT/.caffe/$variant"
}

main "$@"
