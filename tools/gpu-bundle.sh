#!/usr/bin/env bash
# Builds, on this (CPU) machine, a CUDA Caffe for one kind of GPU machine and packs it with everything
# tools/gpu-check.sh needs into one archive: `caffe`, libcaffe, the non-CUDA shared libraries they load
# (found with ldd), a small generated LMDB with its mean, and a manifest. The CUDA libraries (cudart, cuBLAS,
# cuRAND, cuDNN, NCCL) are not packed: on the GPU machine they come from its own NVIDIA pip wheels.
#
# Usage: tools/gpu-bundle.sh
# Writes .bundle/ilgnet-gpu.tar.xz (git-ignored; at most 60 MiB, or the script fails) and prints its size.
# Environment:
#   ILGNET_BUNDLE_ARCHS  compute capabilities (default "90": H100/H200, with compute_90 PTX for newer chips)
#   ILGNET_CACHE         build cache (default ~/.cache/ilgnet-caffe): the build lands in caffe-bundle-<key>
#   ILGNET_JOBS          compile jobs (default nproc)
# Caffe is the lean build of tools/build-caffe.sh (no pycaffe, OpenCV or LevelDB) against the CUDA 13
# toolkit, cuDNN 9 and NCCL from tools/cuda-wheels.sh. Run it under `nice` on a shared machine: the CUDA
# build takes a while on few cores.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache=${ILGNET_CACHE:-$HOME/.cache/ilgnet-caffe}
archs=${ILGNET_BUNDLE_ARCHS:-90}
out_dir="$repo/.bundle"
archive="$out_dir/ilgnet-gpu.tar.xz"
max_bytes=$((60 * 1024 * 1024))
# For the dataset generator only.
TOOL_PACKAGES=(numpy==2.4.6 lmdb==1.7.5)

log() { printf '[gpu-bundle] %s\n' "$*"; }
die() { printf '[gpu-bundle] error: %s\n' "$*" >&2; exit 1; }
if [ $# -gt 0 ]; then
  awk 'NR > 1 && /^#/ {print; next} NR > 1 {exit}' "$0"
  [ "$1" = -h ] || [ "$1" = --help ] || exit 2
  exit 0
fi

# The apt packages Caffe builds against and Debian's caffe source, as `make setup` gets them.
bash "$repo/tools/setup.sh" --deps
dsc=$(ls "$cache"/source/caffe_*.dsc 2>/dev/null | head -1)
[ -n "$dsc" ] || die "tools/setup.sh --deps fetched no caffe source into $cache/source"

tools_venv="$cache/gpu-bundle-venv"
if [ ! -x "$tools_venv/bin/python" ] || ! "$tools_venv/bin/python" -c 'import numpy, lmdb' 2>/dev/null; then
  log "tools venv: $tools_venv (${TOOL_PACKAGES[*]})"
  python3 -m venv "$tools_venv"
  "$tools_venv/bin/python" -m pip install -q "${TOOL_PACKAGES[@]}" || die "pip could not install ${TOOL_PACKAGES[*]}"
fi

cuda_root=$(bash "$repo/tools/cuda-wheels.sh" "$tools_venv/bin/python") || die "installing the CUDA wheels failed"
key=$({ cat "$repo/tools/build-caffe.sh" "$repo/tools/caffe-patches/"*.patch "$repo/tools/cuda-wheels.sh"
        echo "archs=$archs lean"; } | sha256sum | cut -c1-16)
build="$cache/caffe-bundle-$key"
if [ -x "$build/bin/caffe" ]; then
  log "caffe: cached build $build"
else
  log "caffe: building into $build (compute capabilities $archs)"
  start=$SECONDS
  PATH="$cuda_root/bin:$PATH" ILGNET_CUDA_ARCHS=$archs \
    bash "$repo/tools/build-caffe.sh" "$dsc" "$build" - cuda lean
  log "caffe: built in $((SECONDS - start)) s"
fi

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
top="$stage/ilgnet-gpu"
mkdir -p "$top/bin" "$top/lib" "$top/data"
cp "$build/bin/caffe" "$top/bin/"
cp -P "$build"/lib/libcaffe.so* "$top/lib/"
# Every library ldd resolves, except libcaffe (copied above), glibc's, the C++ runtime's (any machine that
# runs Python has newer ones) and CUDA's (the GPU machine's wheels provide them).
skip='^(libcaffe|linux-vdso|ld-linux|libc|libm|libdl|librt|libpthread|libresolv|libstdc\+\+|libgcc_s|libcuda|libcudart|libcublas|libcublasLt|libcurand|libcudnn.*|libnccl|libnvrtc|libnvJitLink)\.so'
packed=()
while read -r name path; do
  if [[ "$name" =~ $skip ]]; then continue; fi
  [ -f "$path" ] || die "ldd could not resolve $name"
  cp -L "$path" "$top/lib/$name"
  packed+=("$name")
done < <(LD_LIBRARY_PATH="$cuda_root/lib" ldd "$build/bin/caffe" "$build"/lib/libcaffe.so.* |
         awk '$2 == "=>" {print $1, $3}' | sort -u)

"$tools_venv/bin/python" "$repo/tools/gpu_bundle_data.py" "$top/data" --records 256

cudnn_version=$(sed -n 's/^#define CUDNN_\(MAJOR\|MINOR\|PATCHLEVEL\) \([0-9]*\)$/\2/p' "$cuda_root/include/cudnn_version.h" | paste -sd.)
{
  echo "built: $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(. /etc/os-release && echo "$PRETTY_NAME")"
  echo "source: $(basename "$dsc" .dsc) + $(cd "$repo/tools/caffe-patches" && ls *.patch | paste -sd' ')"
  echo "commit: $(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown)"
  echo "compute capabilities: $archs (+ compute_${archs##* } PTX)"
  echo "built against: $(sed -n 's/^  \(nvidia-[a-z0-9-]*==[0-9.]*\)$/\1/p' "$repo/tools/cuda-wheels.sh" | paste -sd' ')"
  echo "cuDNN headers: $cudnn_version"
  echo "needs at run time (not packed): $(LD_LIBRARY_PATH="$cuda_root/lib" ldd "$build"/lib/libcaffe.so.* |
    awk '$1 ~ /^lib(cudart|cublas|cublasLt|curand|cudnn|nccl)\.so/ {print $1}' | sort -u | paste -sd' ')"
  echo "packed libraries: ${packed[*]}"
} > "$top/MANIFEST"

mkdir -p "$out_dir"
tar -C "$stage" -cf - ilgnet-gpu | xz -T0 -6 > "$archive.partial"
mv "$archive.partial" "$archive"
bytes=$(stat -c %s "$archive")
log "$archive: $bytes bytes ($(awk -v b="$bytes" 'BEGIN {printf "%.1f", b / 1048576}') MiB)"
[ "$bytes" -le "$max_bytes" ] || die "the bundle is over 60 MiB ($bytes bytes)"
