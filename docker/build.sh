#!/usr/bin/env bash
# Build the project's images from docker/Dockerfile (recipes in docker/recipes.sh):
#   docker/build.sh cpu               -> reid-caffe:cpu   (Debian 12, CPU_ONLY Caffe)
#   docker/build.sh cuda              -> reid-caffe:cuda  (Debian 12 + NVIDIA's pinned CUDA wheels)
#   docker/build.sh cuda-nvidia-base  -> reid-caffe:cuda-nvidia-base (UNCHECKED, see recipes.sh)
#   docker/build.sh all               (cpu and cuda)
# CUDA_ARCH="80 90" docker/build.sh cuda   restricts the compute capabilities compiled.
# docker/check_recipe.sh cpu|cuda checks a recipe without Docker.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source docker/recipes.sh
build() {
  local base cuda
  read -r base cuda < <(recipe_args "$1") || { echo "usage: docker/build.sh $RECIPES|all" >&2; exit 2; }
  docker build -f docker/Dockerfile --build-arg BASE="$base" --build-arg CUDA="$cuda" \
    --build-arg CUDA_ARCH="${CUDA_ARCH:-75 80 86 89 90}" -t "reid-caffe:$1" .
}
case ${1:-all} in
  all) build cpu; build cuda ;;
  *) build "$1" ;;
esac
