#!/usr/bin/env bash
# Installs everything ilgnet-caffe needs on Debian 12: apt packages, BVLC Caffe built from Debian's
# source package (with the few patches today's libraries need), and the project venv (.venv) wired to it.
#
# Usage: tools/setup.sh [--cuda|--cpu|--deps|--python-only|--show-mode]
#   (none)         the build mode recorded in the venv; on the first setup, cuda when nvidia-smi lists a GPU,
#                  else cpu
#   --cuda         build Caffe with CUDA and record that mode; the CUDA toolkit, cuDNN and NCCL come from
#                  NVIDIA's pip wheels (tools/cuda-wheels.sh), so the machine needs only the driver
#   --cpu          build Caffe for the CPU only and record that mode
#   --deps         only install the apt packages and fetch Caffe's source (tools/gpu-bundle.sh runs this)
#   --python-only  only the venv with the package and its test tools: no apt packages, no Caffe
#                  (enough for `make test-fast`)
#   --show-mode    print the build mode a plain run would use and why, and change nothing
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
# The build mode is recorded in $ILGNET_VENV/ilgnet-setup.json: cpu or cuda, and for cuda where the toolkit came
# from (NVIDIA's wheels or ILGNET_CUDA_HOME), the compute capabilities and whether cuDNN was used. A plain run
# (every `make` target whose setup is out of date) builds that mode again, whatever nvidia-smi says now (a build
# node or a container may see no GPU); it says so in one line when a detected GPU disagrees. Only --cuda and
# --cpu change the mode; environment variables set explicitly override the recorded CUDA details.
# A finished setup touches $ILGNET_VENV/.setup-stamp (and every venv install $ILGNET_VENV/.ilgnet-deps): the
# Makefile's targets re-run setup only when a recipe file is newer than the stamp.
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
record="$venv/ilgnet-setup.json"

mode=auto show=
for arg in "$@"; do
  case "$arg" in
    --cuda) mode=cuda ;;
    --cpu) mode=cpu ;;
    --deps) mode=deps ;;
    --python-only) mode=none ;;
    --show-mode) show=1 ;;
    -h|--help) awk 'NR > 1 && /^#/ {print; next} NR > 1 {exit}' "$0"; exit 0 ;;
    *) echo "setup: unknown option '$arg' (try --help)" >&2; exit 2 ;;
  esac
done

log() { printf '[setup] %s\n' "$*"; }
die() { printf '[setup] error: %s\n' "$*" >&2; exit 1; }

gpu_listed() { command -v nvidia-smi >/dev/null && nvidia-smi -L 2>/dev/null | grep -q '^GPU '; }

# Sets mode (cpu or cuda) and why: --cuda/--cpu, else the venv's record, else (a venv set up before records
# existed) the Caffe build linked into it, else nvidia-smi (a GPU and its driver are enough: the toolkit comes
# from NVIDIA's wheels). Recorded CUDA details fill in the ILGNET_CUDA_* variables that are not set.
choose_mode() {
  local recorded=() linked
  if [ "$mode" != auto ]; then
    why="asked for with --$mode"
  elif [ -f "$record" ]; then
    mapfile -t recorded < <("$venv/bin/python" - "$record" <<'PY'
import json, sys
try:
    record = json.load(open(sys.argv[1]))
except (OSError, ValueError):
    record = None
if not isinstance(record, dict) or record.get("mode") not in ("cpu", "cuda"):
    sys.exit(f"[setup] error: {sys.argv[1]} is not a build record of tools/setup.sh; run `make setup-cpu` or "
             f"`make setup-cuda` to choose the build mode again")
print(record["mode"], record.get("cuda_toolkit") or "", record.get("cuda_archs") or "", record.get("cudnn") or "",
      sep="\n")
PY
    ) && [ ${#recorded[@]} -eq 4 ] || exit 1
    mode=${recorded[0]} why="recorded in $record"
    if [ "$mode" = cuda ]; then
      if [ -z "${ILGNET_CUDA_HOME+set}" ]; then
        if [ "${recorded[1]}" != wheels ]; then export ILGNET_CUDA_HOME=${recorded[1]}; fi
      elif [ "$ILGNET_CUDA_HOME" != "${recorded[1]}" ]; then
        log "CUDA toolkit: ILGNET_CUDA_HOME=$ILGNET_CUDA_HOME, set in the environment, instead of the recorded" \
          "${recorded[1]}"
      fi
      if [ -z "${ILGNET_CUDA_ARCHS+set}" ]; then export ILGNET_CUDA_ARCHS=${recorded[2]}; fi
      if [ -z "${ILGNET_CUDNN+set}" ]; then export ILGNET_CUDNN=${recorded[3]}; fi
    fi
  elif linked=$(cat "$venv/caffe-root" 2>/dev/null) && [ -f "$linked/share/Caffe/CaffeConfig.cmake" ]; then
    mode=cuda why="the build linked into $venv ($linked)"
    if grep -q 'set(Caffe_CPU_ONLY ON)' "$linked/share/Caffe/CaffeConfig.cmake"; then mode=cpu; fi
  elif gpu_listed; then
    mode=cuda why="first setup: nvidia-smi lists a GPU"
  else
    mode=cpu why="first setup: nvidia-smi lists no GPU"
  fi
  export ILGNET_CUDA_ARCHS=${ILGNET_CUDA_ARCHS:-80 90}
  local details=
  if [ "$mode" = cuda ]; then
    local toolkit="NVIDIA's wheels" cudnn="where found"
    if [ -n "${ILGNET_CUDA_HOME:-}" ]; then toolkit=$ILGNET_CUDA_HOME; fi
    if [ "${ILGNET_CUDNN:-1}" = 0 ]; then cudnn=off; fi
    details="; CUDA from $toolkit, compute capabilities $ILGNET_CUDA_ARCHS, cuDNN $cudnn"
  fi
  log "build mode: $mode ($why)$details"
  case "$why" in
    first*|asked*) ;;
    *) if [ "$mode" = cpu ] && gpu_listed; then
         log "nvidia-smi lists a GPU, but this venv's Caffe is a CPU build: \`make setup-cuda\` switches to CUDA"
       elif [ "$mode" = cuda ] && ! gpu_listed; then
         log "nvidia-smi lists no GPU here; building for CUDA all the same (\`make setup-cpu\` switches to CPU)"
       fi ;;
  esac
}

# The build mode and where its CUDA came from, for the next plain run (see choose_mode).
write_record() {
  local caffe=$1 toolkit=
  if [ "$mode" = cuda ]; then toolkit=${ILGNET_CUDA_HOME:-wheels}; fi
  "$venv/bin/python" - "$record" "$mode" "$caffe" "$toolkit" "${ILGNET_CUDA_ARCHS:-}" "${ILGNET_CUDNN:-1}" <<'PY'
import json, os, sys
path, mode, caffe, toolkit, archs, cudnn = sys.argv[1:]
record = {"mode": mode, "caffe_root": caffe}
if mode == "cuda":
    record.update(cuda_toolkit=toolkit, cuda_archs=archs, cudnn=cudnn)
with open(path + ".partial", "w") as out:
    json.dump(record, out, indent=2)
    out.write("\n")
os.replace(path + ".partial", path)
PY
}
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
  else
    log "venv: up to date"
  fi
  echo "$want" > "$stamp"         # rewritten every time: the Makefile compares its age with the recipe's
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

# One setup of a venv at a time: two at once (two `make` runs, a second terminal, two worktrees sharing a venv)
# would both create it and run pip into it. A second setup waits on a lock file beside the venv (flock; the kernel
# releases it when the first ends, however it ends), then finds the first's result ("venv: up to date", the
# cached build) and does nothing twice.
lock_venv() {
  local lock="$venv.setup-lock"
  command -v flock >/dev/null || { log "no flock here: two setups of $venv at once are not kept apart"; return 0; }
  mkdir -p "$(dirname "$venv")"
  exec 9>>"$lock"
  if ! flock -n 9; then
    log "another setup of $venv is running: waiting for it to finish ($lock)"
    flock 9
  fi
}

link_caffe_into_venv() {
  local dest=$1 site
  site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  echo "$dest/lib/python3/dist-packages" > "$site/ilgnet-caffe.pth"
  for tool in "$dest"/bin/*; do ln -sfn "$tool" "$venv/bin/$(basename "$tool")"; done
  echo "$dest" > "$venv/caffe-root"
}

main() {
  if [ -n "$show" ]; then
    case "$mode" in none|deps) echo "setup: --show-mode goes with --cuda, --cpu or nothing" >&2; exit 2 ;; esac
    choose_mode
    return
  fi
  if [ "$mode" = none ]; then
    lock_venv
    make_venv
    return
  fi
  if [ "$mode" = deps ]; then
    install_apt_packages
    mkdir -p "$cache"
    fetch_caffe_source
    return
  fi
  lock_venv
  choose_mode
  install_apt_packages
  make_venv
  if [ "$mode" = cuda ]; then use_cuda_toolkit; fi
  local key dest
  key=$(recipe_key)
  dest="$cache/caffe-$key"
  mkdir -p "$cache"
  if command -v flock >/dev/null; then          # the cache is shared by every venv: one build of a key at a time
    exec 8>>"$dest.lock"
    flock -n 8 || { log "another setup is building $dest: waiting for it"; flock 8; }
  fi
  if [ -x "$dest/bin/caffe" ]; then
    log "caffe: cached build $dest"
  else
    mkdir -p "$cache"
    fetch_caffe_source
    bash "$repo/tools/build-caffe.sh" "$cache/source/caffe_${CAFFE_DEB_VERSION}.dsc" "$dest" "$venv/bin/python" "$mode"
  fi
  link_caffe_into_venv "$dest"
  write_record "$dest"
  # With ILGNET_REQUIREMENTS the package is not installed yet: the Docker build checks it in a later layer.
  if [ -z "${ILGNET_REQUIREMENTS:-}" ]; then "$venv/bin/ilgnet" doctor; fi
  touch "$venv/.setup-stamp"
}

main
