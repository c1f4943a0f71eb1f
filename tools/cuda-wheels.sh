#!/usr/bin/env bash
# Installs the CUDA parts Caffe builds against from NVIDIA's pip wheels (pinned below) into a cached prefix
# outside the clone, laid out like a CUDA toolkit, and prints that prefix's toolkit root. No NVIDIA apt
# repository, no runfile and no nvidia/cuda image: PyPI alone. The driver is not part of it (it comes with the
# machine's GPU, or from the NVIDIA container toolkit).
#
# Usage: tools/cuda-wheels.sh PYTHON
#   PYTHON   an interpreter whose pip installs the wheels (any Python 3; the wheels hold no Python code)
# Prints one line: the toolkit root (bin/nvcc, include, lib64, nvvm), which also holds cuDNN and NCCL:
#   ROOT/include/cudnn*.h, ROOT/include/nccl.h, ROOT/lib64/libcudnn.so, ROOT/lib64/libnccl.so
# Environment: ILGNET_CACHE (default ~/.cache/ilgnet-caffe). The prefix is $ILGNET_CACHE/cuda-<key>, <key>
# hashing this file; it is built in a work folder and renamed into place when complete.
set -euo pipefail

# CUDA 13.0 (the toolkit of the 580 drivers) and the libraries built for it. Caffe links the libraries by
# soname (libcudart.so.13, libcublas.so.13, libcurand.so.10, libcudnn.so.9, libnccl.so.2), so a machine may
# run it with newer wheels of the same major versions.
WHEELS=(
  nvidia-cuda-nvcc==13.0.88
  nvidia-cuda-crt==13.0.88
  nvidia-nvvm==13.0.88
  nvidia-cuda-runtime==13.0.96
  nvidia-cuda-cccl==13.0.85
  nvidia-cublas==13.1.0.3
  nvidia-curand==10.4.0.35
  nvidia-cudnn-cu13==9.13.0.50
  nvidia-nccl-cu13==2.27.7
)

die() { printf '[cuda-wheels] error: %s\n' "$*" >&2; exit 1; }
log() { printf '[cuda-wheels] %s\n' "$*" >&2; }

[ $# -eq 1 ] || die "usage: tools/cuda-wheels.sh PYTHON"
py=$1
cache=${ILGNET_CACHE:-$HOME/.cache/ilgnet-caffe}
key=$(sha256sum "${BASH_SOURCE[0]}" | cut -c1-16)
dest="$cache/cuda-$key"
root="$dest/nvidia/cu13"

if [ ! -x "$root/bin/nvcc" ]; then
  work="$dest.work"
  rm -rf "$work" && mkdir -p "$work"
  log "installing ${WHEELS[*]} into $dest"
  "$py" -m pip install -q --no-deps --only-binary=:all: --no-compile --target "$work" "${WHEELS[@]}" >&2 ||
    die "pip could not install the CUDA wheels (behind a TLS-inspecting proxy, set PIP_CERT to its CA bundle)"
  top="$work/nvidia/cu13"
  [ -x "$top/bin/nvcc" ] || die "the nvcc wheel did not provide nvidia/cu13/bin/nvcc"
  # The layout nvcc.profile and CMake's FindCUDA expect: targets/<arch>/{include,lib}, lib64.
  mkdir -p "$top/targets/x86_64-linux"
  ln -s ../../include "$top/targets/x86_64-linux/include"
  ln -s ../../lib "$top/targets/x86_64-linux/lib"
  ln -s lib "$top/lib64"
  # cuDNN and NCCL come in wheels of their own: link them in, as a toolkit with cuDNN installed has them.
  for sub in cudnn nccl; do
    for f in "$work/nvidia/$sub/include/"*.h; do ln -s "../../$sub/include/$(basename "$f")" "$top/include/"; done
    for f in "$work/nvidia/$sub/lib/"lib*.so.*; do ln -s "../../$sub/lib/$(basename "$f")" "$top/lib/"; done
  done
  # Wheels ship only sonames; the linker looks for the plain names.
  for f in "$top/lib/"lib*.so.[0-9]*; do
    dev="${f%%.so.*}.so"
    [ -e "$dev" ] || ln -s "$(basename "$f")" "$dev"
  done
  rm -rf "$dest" && mv "$work" "$dest"
  log "installed into $dest"
fi
echo "$root"
