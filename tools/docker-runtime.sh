#!/usr/bin/env bash
# Build-stage helper of the Dockerfile: after `tools/setup.sh` has run in the image's build stage, gathers
# what the final image needs from it, at the same absolute paths, and lists the Debian packages its shared
# libraries come from, so the final stage holds no compiler, header or source. The ilgnet package is not part
# of it: the final stage installs it in a layer of its own, so that a change to the package leaves this alone.
#
# Usage: tools/docker-runtime.sh DEST
#   DEST/tree/      copied into the final image's /: the venv (the package's dependencies, pycaffe linked in),
#                   every Caffe install in $ILGNET_CACHE, and for a CUDA build the CUDA shared libraries from
#                   tools/cuda-wheels.sh's prefix (cudart, cuBLAS, cuRAND, cuDNN with the engines it loads at
#                   run time, NCCL)
#   DEST/packages   the Debian packages owning every library ldd resolves for Caffe's tools, libraries and
#                   pycaffe, plus the interpreter the venv runs on (python3.11)
# Environment: ILGNET_CACHE (default ~/.cache/ilgnet-caffe), ILGNET_VENV (default: .venv in this checkout).
set -euo pipefail

die() { printf '[docker-runtime] error: %s\n' "$*" >&2; exit 1; }
[ $# -eq 1 ] || die "usage: tools/docker-runtime.sh DEST"
dest=$1
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache=${ILGNET_CACHE:-$HOME/.cache/ilgnet-caffe}
venv=${ILGNET_VENV:-$repo/.venv}
tree="$dest/tree"

# copy PATH...: copies each path (a file, folder or link) into the tree at its own absolute path.
copy() {
  local path
  for path in "$@"; do
    mkdir -p "$tree$(dirname "$path")"
    cp -a "$path" "$tree$path"
  done
}

mkdir -p "$tree"
copy "$venv"
installs=()
for d in "$cache"/caffe-*; do
  if [ -x "$d/bin/caffe" ]; then installs+=("$d"); fi
done
[ ${#installs[@]} -gt 0 ] || die "no Caffe install in $cache (run tools/setup.sh first)"
copy "${installs[@]}"
for prefix in "$cache"/cuda-*; do
  [ -d "$prefix/nvidia" ] || continue
  # Libraries as their sonames and the files those point to; cuDNN's engine libraries are loaded with
  # dlopen, so all of cuDNN goes.
  copy "$prefix"/nvidia/cu13/lib/lib{cudart,cublas,cublasLt,curand,cudnn,cudnn_*,nccl}.so.* \
    "$prefix"/nvidia/cudnn/lib "$prefix"/nvidia/nccl/lib
done

{
  # The venv's interpreter (python3.11 is also the package with its whole standard library).
  basename "$(readlink -f "$venv/bin/python")"
  # ldd fails on the scripts among the executables; what it prints for the rest is what counts.
  find "${installs[@]}" -type f \( -name '*.so*' -o -perm -u+x \) -print0 |
    { xargs -0 ldd 2>/dev/null || true; } | awk '$2 == "=>" && $3 ~ /^\// {print $3}' | sort -u |
    while read -r lib; do
      # dpkg knows each file under the one path its package used: /lib is a link to /usr/lib on Debian 12,
      # and BLAS and LAPACK are reached through /etc/alternatives.
      real=$(readlink -f "$lib")
      for path in "$lib" "$real" "${real#/usr}"; do
        if dpkg -S "$path" 2>/dev/null; then break; fi
      done
    done | cut -d: -f1
} | sort -u > "$dest/packages"
[ -s "$dest/packages" ] || die "no Debian package found for Caffe's libraries"
echo "[docker-runtime] $(du -sh "$tree" | cut -f1) in $tree; $(wc -l < "$dest/packages") packages: $(paste -sd' ' "$dest/packages")"
