#!/usr/bin/env bash
# Check an image recipe without a Docker engine:
#   docker/check_recipe.sh cpu|cuda          (as root; CUDA_ARCH="90" narrows the cuda recipe)
# 1. a minimal Debian 12 root made by debootstrap from this machine's own apt configuration
#    (made once under CHECK_ROOT and copied for each run);
# 2. docker/Dockerfile's steps, turned into a script by docker/dockerfile_steps.py, run in it
#    with chroot (proc, sys, dev mounted, and always unmounted again);
# 3. inside, with the image's environment: `make test`, then `bin/python tools/demo.py --tiny`.
# Prints the wall time of each stage and the size of the root after step 2 (an estimate of the
# image's size) and appends them to CHECK_ROOT/times.txt. Not part of `make test`: it takes
# long and needs root. The root stays for inspection; the next run of the recipe replaces it,
# or with CHECK_REUSE=1 runs the steps again over it (a rebuild after a change, as Docker's
# layer cache would make it: only what changed is rebuilt).
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
source "$REPO/docker/recipes.sh"
source "$REPO/toolchain/apt_sources.sh"
WORK=${CHECK_ROOT:-/var/tmp/reid-check}
MARK=.reid-check-root   # proves a folder is a root this script made, before it deletes one

die() { echo "check_recipe: $*" >&2; exit 1; }
say() { echo "==> $*" >&2; }

recipe=${1:-}
read -r BASE CUDA_ARG < <(recipe_args "$recipe") || die "usage: docker/check_recipe.sh cpu|cuda"
[[ $BASE == debian:bookworm ]] || die "recipe $recipe builds FROM $BASE: debootstrap makes Debian 12 roots only"
[[ $(id -u) -eq 0 ]] || die "needs root (debootstrap, chroot, mount)"
ROOTFS=$WORK/$recipe

mounts_under() { awk -v r="$1" '$2 == r || index($2, r "/") == 1 {print $2}' /proc/mounts; }

remove_root() {  # only a root this script made, and only with nothing mounted inside
  [[ -e $1 ]] || return 0
  [[ -f $1/$MARK ]] || die "$1 exists but was not made by check_recipe.sh: remove it yourself"
  [[ -z $(mounts_under "$1") ]] || die "$1 still has mounts: $(mounts_under "$1" | tr '\n' ' ')"
  rm -rf "$1"
}

base_root() {  # the pristine debootstrap root, made once per mirror
  local mirror dir
  mirror=$(apt_mirror)
  [[ -n $mirror ]] || die "this machine's apt sources name no Debian mirror"
  dir=$WORK/bookworm-$(echo "$mirror" | sha256sum | cut -c1-8)
  if [[ ! -f $dir/$MARK ]]; then
    command -v debootstrap >/dev/null || apt-get install -y -qq debootstrap >/dev/null \
      || die "apt-get install debootstrap failed"
    say "debootstrap --variant=minbase bookworm from $mirror"
    remove_root "$dir.part"
    mkdir -p "$dir.part" && touch "$dir.part/$MARK"
    debootstrap --variant=minbase bookworm "$dir.part" "$mirror" >"$WORK/debootstrap.log" 2>&1 \
      || die "debootstrap failed; see $WORK/debootstrap.log"
    mv "$dir.part" "$dir"
  fi
  echo "$dir"
}

# This machine's Debian sources, DNS and local trust anchors (a proxy's CA, picked up when the
# recipe installs ca-certificates) inside the root, as a Docker build here would need them.
copy_machine_config() {
  local f
  rm -f "$1/etc/apt/sources.list"
  apt_source_files | while read -r f; do
    if grep -qE '(URIs:|^deb) .*://[^ ]*/debian' "$f"; then cp "$f" "$1$f"; fi
  done
  cp -L /etc/resolv.conf "$1/etc/resolv.conf"
  if [[ -d /usr/local/share/ca-certificates ]]; then
    mkdir -p "$1/usr/local/share/ca-certificates"
    cp -a /usr/local/share/ca-certificates/. "$1/usr/local/share/ca-certificates/"
  fi
}

# The build context as Docker sends it: the working tree less what git (and .dockerignore) ignore.
copy_context() {
  mkdir -p "$1/.reid-context"
  git -C "$REPO" ls-files -co --exclude-standard -z | (cd "$REPO" && tar --null -T - -cf -) \
    | tar -xf - -C "$1/.reid-context"
}

mount_all() {
  mount -t proc proc "$ROOTFS/proc"
  mount -t sysfs sys "$ROOTFS/sys"
  mount --bind /dev "$ROOTFS/dev"
  mount --bind /dev/pts "$ROOTFS/dev/pts"
}

unmount_all() {
  local m
  for m in dev/pts dev sys proc; do
    mountpoint -q "$ROOTFS/$m" && { umount "$ROOTFS/$m" || umount -l "$ROOTFS/$m"; }
  done
  return 0
}

# Run a command in the root with the image's environment (as `docker run` would).
in_root() {
  chroot "$ROOTFS" /usr/bin/env -i HOME=/root TERM=dumb PATH=/usr/sbin:/usr/bin:/sbin:/bin \
    /bin/bash -c "source /.reid-image-env && cd \"\$(cat /.reid-image-workdir)\" && $1"
}

FAILED=()
timed() {  # timed LABEL COMMAND...: runs it, records its wall time and whether it passed
  local t0=$SECONDS status=passed
  "${@:2}" || { status=FAILED; FAILED+=("$1"); }
  echo "$recipe $1: $status, $((SECONDS - t0)) s" | tee -a "$WORK/times.txt" >&2
}

run_recipe() {
  local args=("CUDA=$CUDA_ARG")
  [[ -n ${CUDA_ARCH:-} ]] && args+=("CUDA_ARCH=$CUDA_ARCH")
  { python3 "$REPO/docker/dockerfile_steps.py" "$REPO/docker/Dockerfile" /.reid-context "${args[@]}"
    echo 'export -p >/.reid-image-env; pwd >/.reid-image-workdir'; } >"$ROOTFS/.reid-steps.sh"
  chroot "$ROOTFS" /usr/bin/env -i HOME=/root TERM=dumb /bin/bash /.reid-steps.sh
}

main() {
  mkdir -p "$WORK"
  local base size
  base=$(base_root)
  if [[ ${CHECK_REUSE:-0} == 1 && -f $ROOTFS/$MARK ]]; then
    # as Docker's layer cache would: the steps run again over the root an earlier run built
    say "CHECK_REUSE=1: the Dockerfile's steps run again over $ROOTFS"
    [[ -z $(mounts_under "$ROOTFS") ]] || die "$ROOTFS still has mounts: $(mounts_under "$ROOTFS" | tr '\n' ' ')"
    rm -rf "$ROOTFS/.reid-context"
  else
    remove_root "$ROOTFS"
    cp -a "$base" "$ROOTFS"
  fi
  copy_machine_config "$ROOTFS"
  copy_context "$ROOTFS"
  trap unmount_all EXIT
  trap 'exit 130' INT TERM HUP   # so that an interrupted check unmounts too
  mount_all
  echo "$recipe started $(date -u +%FT%TZ) (CUDA_ARCH=${CUDA_ARCH:-default})" >>"$WORK/times.txt"
  timed "Dockerfile steps" run_recipe
  [[ ${#FAILED[@]} -eq 0 ]] || die "recipe $recipe: the Dockerfile's steps failed (see above)"
  size=$(du -sxm --exclude=.reid-context "$ROOTFS" | cut -f1)
  echo "$recipe root after the Dockerfile steps (image size estimate): $size MiB" | tee -a "$WORK/times.txt" >&2
  timed "make test" in_root "make test"
  # its own output folder: a root reused across versions may hold an out/demo of an older one
  timed "demo --tiny" in_root "bin/python tools/demo.py --tiny --fresh --out out/check_recipe_demo"
  [[ ${#FAILED[@]} -eq 0 ]] || die "recipe $recipe: ${FAILED[*]} failed (see above); root kept in $ROOTFS"
  say "recipe $recipe passed; root kept in $ROOTFS"
}

main
