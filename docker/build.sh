#!/usr/bin/env bash
# Build the project's images from docker/Dockerfile:
#   docker/build.sh cpu     -> reid-caffe:cpu   (Debian 12, CPU_ONLY Caffe)
#   docker/build.sh cuda    -> reid-caffe:cuda  (NVIDIA CUDA 12.6 devel, Ubuntu 24.04, no cuDNN)
#   docker/build.sh all
# CUDA_ARCH="80 90" docker/build.sh cuda   restricts the compute capabilities compiled.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
build() {
  docker build -f docker/Dockerfile --build-arg BASE="$2" --build-arg CUDA="$3" \
    --build-arg CUDA_ARCH="${CUDA_ARCH:-75 80 86 89 90}" -t "reid-caffe:$1" .
}
case ${1:-all} in
  cpu) build cpu debian:bookworm 0 ;;
  cuda) build cuda nvidia/cuda:12.6.3-devel-ubuntu24.04 1 ;;
  all) build cpu debian:bookworm 0; build cuda nvidia/cuda:12.6.3-devel-ubuntu24.04 1 ;;
  *) echo "usage: docker/build.sh cpu|cuda|all" >&2; exit 2 ;;
esac
