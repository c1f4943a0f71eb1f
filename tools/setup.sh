#!/usr/bin/env bash
# Installs everything ilgnet-caffe needs on Debian 12: apt packages, BVLC Caffe built from Debian's
# source package (with the few patches today's libraries need), and the project venv (.venv) wired to it.
#
# Usage: tools/setup.sh [--cuda|--cpu|--deps|--python-only]
#   --cuda         build Caffe with CUDA (also chosen when nvidia-smi lists a GPU); the CUDA toolkit, cuDNN and
#                  NCCL come from NVIDIA's pip wheels (tools/cuda-wheels.sh), so the machine needs only the driver
#   --cpu          force a CPU-only build
#   --deps         only install the apt packages and fetch Caffe's source (tools/gpu-bundle.sh runs this)
#   --python-only  only the venv with the package and its test tools: no apt packages, no Caffe
#                  (enough for `make test-fast`)
# Environment:
#   PYTHON               interpreter for the venv (default: python3.11)
#   ILGNET_CACHE         where Caffe builds and the CUDA wheels are cached (default: ~/.cache/ilgnet-caffe)
#   ILGNET_VENV          venv path (default: .venv in the repository)
#   ILGNET_EXTRAS        the package's extras to install (default: test; empty for none, as the Docker images do)
#   ILGNET_REQUIREMENTS  a pip requirements file: the venv gets these packages instead of the ilgnet package (the
#                        Docker build, whose later layer installs the package; see Dockerfile)
#   ILGNET_CUDA_ARCHS    CUDA compute capabilities to build for (default: "80 90")
#   ILGNET_CUDA_HOME     build against this CUDA toolkit instead of the wheels (cuDNN and NCCL found in it,
#                        /usr/local, /usr, or CUDNN_DIR / NCCL_DIR)
#   ILGNET_CUDNN         0 builds the CUDA Caffe without cuDNN (default 1: with cuDNN where found)
#   ILGNET_JOBS          parallel compile jobs (default: nproc)
#
# The build (tools/build-caffe.sh) is cached under $ILGNET_CACHE/caffe-<key>, where <key> hashes everything
# that shapes it (see recipe_key). A changed recipe builds anew; an unchanged one is reused in seconds. The
# build runs in a work folder and is renamed into place only when complete, so an interrupted build resumes
# and never looks finished.
set -euo pipefail

CAFFE_DEB_VERSION="1.0.0+git20180821.99bd997-8"
CAFFE_DEB_SUITE="bullseye"
APT_PACKAGES=(dpkg-dev build-essential cmake libboost-dev libboost-filesystem-dev libboost-system-dev
  libboost-thread-dev libboost-python-dev libgflags-dev libgoogle-glog-dev libhdf5-dev liblmdb-dev
  libleveldb-dev libsnappy-dev libprotobuf-dev libprotoc-dev protobuf-compiler libopenblas-dev
  libopencv-dev python3-dev python3-venv)

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
patch_dir="$repo/tools/caffe-patches"
PYTHON=${PYTHON:-python3.11}
cache=${ILGNET_CACHE:-$HOME/.cache/ilgnet-caffe}
venv=${ILGNET_VENV:-$repo/.venv}
ILGNET_EXTRAS=${ILGNET_EXTRAS-test}
export ILGNET_CUDA_ARCHS=${ILGNET_CUDA_ARCHS:-80 90}

mode=auto
for arg in "$@"; do
  case "$arg" in
    --cuda) mode=cuda ;;
    --cpu) mode=cpu ;;
    --deps) mode=deps ;;
    --python-only) mode=none ;;
    -h|--help) awk 'NR > 1 && /^#/ {print; next} NR > 1 {exit}' "$0"; exit 0 ;;
    *) echo "setup: unknown option '$arg' (try --help)" >&2; exit 2 ;;
  esac
done
if [ "$mode" = auto ]; then
  # A GPU and its driver are enough: the toolkit comes from NVIDIA's wheels.
  if command -v nvidia-smi >/dev/null && nvidia-smi -L 2>/dev/null | grep -q '^GPU '; then
    mode=cuda
  else
    mode=cpu
  fi
fi

log() { printf '[setup] %s\n' "$*"; }
die() { printf '[setup] error: %s\n' "$*" >&2; exit 1; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

install_apt_packages() {
  local missing=()
  for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && { log "apt packages: all present"; return; }
  log "apt packages: installing ${missing[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

# Prints the URI of the machine's own Debian archive (the first non-security Debian entry it uses).
debian_archive_uri() {
  local f uri
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    uri=$(awk '/^URIs:/ {for (i = 2; i <= NF; i++) if ($i !~ /security/ && $i ~ /debian/) {print $i; exit}}' "$f")
    [ -n "$uri" ] && { echo "$uri"; return; }
  done
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    uri=$(awk '$1 == "deb" {for (i = 2; i <= NF; i++) if ($i ~ /^[a-z+]+:\/\// && $i !~ /security/ && $i ~ /debian/) {print $i; exit}}' "$f")
    [ -n "$uri" ] && { echo "$uri"; return; }
  done
}

# Downloads Caffe's Debian source package (apt checks the signed .dsc) into $cache/source.
fetch_caffe_source() {
  local src="$cache/source"
  local dsc="$src/caffe_${CAFFE_DEB_VERSION}.dsc"
  [ -f "$dsc" ] && { log "caffe source: cached in $src"; return; }
  local list=/etc/apt/sources.list.d/ilgnet-caffe-src.sources
  if [ ! -f "$list" ]; then
    local uri
    uri=$(debian_archive_uri)
    [ -n "$uri" ] || die "no Debian archive found in /etc/apt/sources.list*; add one, then run again"
    log "apt: adding deb-src $CAFFE_DEB_SUITE main from $uri"
    printf 'Types: deb-src\nURIs: %s\nSuites: %s\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
      "$uri" "$CAFFE_DEB_SUITE" | as_root tee "$list" >/dev/null
  fi
  as_root apt-get update -qq
  mkdir -p "$src.partial"
  (cd "$src.partial" && apt-get source --download-only "caffe=$CAFFE_DEB_VERSION") ||
    die "apt-get source caffe=$CAFFE_DEB_VERSION failed; check that $list points at a Debian mirror carrying $CAFFE_DEB_SUITE"
  rm -rf "$src" && mv "$src.partial" "$src"
}

make_venv() {
  command -v "$PYTHON" >/dev/null || die "$PYTHON not found; install Python 3.11 or set PYTHON=/path/to/python3.11"
  [ -x "$venv/bin/python" ] || { log "venv: creating $venv"; "$PYTHON" -m venv "$venv"; }
  local stamp="$venv/.ilgnet-deps" want install
  if [ -n "${ILGNET_REQUIREMENTS:-}" ]; then
    want=$(sha256sum "$ILGNET_REQUIREMENTS" | cut -c1-16)
    install=(-r "$ILGNET_REQUIREMENTS")
  else
    want=$( (sha256sum "$repo/pyproject.toml"; echo "extras=$ILGNET_EXTRAS") | sha256sum | cut -c1-16)
    install=(-e "$repo${ILGNET_EXTRAS:+[$ILGNET_EXTRAS]}")
  fi
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    log "venv: installing ${ILGNET_REQUIREMENTS:-the ilgnet package${ILGNET_EXTRAS:+ with [$ILGNET_EXTRAS]} and its dependencies}"
    "$venv/bin/python" -m pip install -q --upgrade pip
    "$venv/bin/python" -m pip install -q "${install[@]}"
    echo "$want" > "$stamp"
  else
    log "venv: up to date"
  fi
}

# Puts the CUDA toolkit on PATH: ILGNET_CUDA_HOME, or the pinned wheels installed into the cache.
use_cuda_toolkit() {
  local root
  if [ -n "${ILGNET_CUDA_HOME:-}" ]; then
    root=$ILGNET_CUDA_HOME
    [ -x "$root/bin/nvcc" ] || die "ILGNET_CUDA_HOME=$root has no bin/nvcc"
  else
    root=$(bash "$repo/tools/cuda-wheels.sh" "$venv/bin/python") || die "installing the CUDA wheels failed"
  fi
  export PATH="$root/bin:$PATH"
  log "CUDA toolkit: $root"
}

# Everything that shapes the build: the recipe, the patches, the source version, the interpreter and numpy
# pycaffe is compiled against, and the CUDA choice with its toolkit (nvcc, and the pinned wheels' list).
recipe_key() {
  {
    cat "$repo/tools/build-caffe.sh" "$patch_dir"/*.patch
    echo "$CAFFE_DEB_VERSION mode=$mode archs=$ILGNET_CUDA_ARCHS"
    "$venv/bin/python" -c 'import sys, numpy; print(sys.version, numpy.__version__)'
    if [ "$mode" = cuda ]; then
      nvcc --version
      echo "cuda_home=${ILGNET_CUDA_HOME:-wheels} cudnn=${ILGNET_CUDNN:-1}"
      [ -n "${ILGNET_CUDA_HOME:-}" ] || cat "$repo/tools/cuda-wheels.sh"
    fi
  } | sha256sum | cut -c1-16
}

link_caffe_into_venv() {
  local dest=$1 site
  site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  echo "$dest/lib/python3/dist-packages" > "$site/ilgnet-caffe.pth"
  for tool in "$dest"/bin/*; do ln -sfn "$tool" "$venv/bin/$(basename "$tool")"; done
  echo "$dest" > "$venv/caffe-root"
}

main() {
  if [ "$mode" = none ]; then
    make_venv
    return
  fi
  install_apt_packages
  if [ "$mode" = deps ]; then
    mkdir -p "$cache"
    fetch_caffe_source
    return
  fi
  make_venv
  if [ "$mode" = cuda ]; then use_cuda_toolkit; fi
  local key dest
  key=$(recipe_key)
  dest="$cache/caffe-$key"
  if [ -x "$dest/bin/caffe" ]; then
    log "caffe: cached build $dest"
  else
    mkdir -p "$cache"
    fetch_caffe_source
    bash "$repo/tools/build-caffe.sh" "$cache/source/caffe_${CAFFE_DEB_VERSION}.dsc" "$dest" "$venv/bin/python" "$mode"
  fi
  link_caffe_into_venv "$dest"
  if [ -z "${ILGNET_REQUIREMENTS:-}" ]; then "$venv/bin/ilgnet" doctor; fi
}

main
