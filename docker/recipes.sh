# The image recipes of docker/Dockerfile, shared by docker/build.sh and docker/check_recipe.sh:
# recipe_args NAME prints "BASE CUDA" for the build arguments.
#   cpu   Debian 12, CPU_ONLY Caffe                                  (checked by check_recipe.sh)
#   cuda  Debian 12 + NVIDIA's pinned CUDA wheels (toolchain/cuda-requirements.txt): the same
#         compiler and libraries CI compiles with                    (checked by check_recipe.sh)
#   cuda-nvidia-base  NVIDIA's CUDA 12.6 devel image, Ubuntu 24.04   (UNCHECKED: no build of
#         ours has seen its gcc 13 / Boost 1.83 / CUDA 12.6 combination)
RECIPES="cpu cuda cuda-nvidia-base"
recipe_args() {
  case $1 in
    cpu) echo "debian:bookworm 0" ;;
    cuda) echo "debian:bookworm 1" ;;
    cuda-nvidia-base) echo "nvidia/cuda:12.6.3-devel-ubuntu24.04 1" ;;
    *) return 1 ;;
  esac
}
