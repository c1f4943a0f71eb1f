#!/usr/bin/env bash
# Builds both Docker images with `make docker-build-cpu` and `make docker-build` (from a clean build cache unless
# --cached) and checks them on this machine, driven by an `ilgnet` in a venv without Caffe (setup.sh
# --python-only: Caffe runs in the images only):
#   `ilgnet doctor --docker` (both images; the CUDA one on the CPU where there is no GPU);
#   CPU image: a small synthetic AVA made into LMDBs in the image (`ilgnet split`, `ilgnet lmdb`); a 20-iteration
#              `ilgnet train --docker --cpu` on it; `ilgnet test --engine caffe --docker` on its snapshot
#   CUDA image: `caffe device_query -gpu all`, and where nvidia-smi lists a GPU, a 20-iteration
#              `ilgnet train --docker --gpu 0`; without a GPU, device_query must say so in one line (exit status
#              1) and the GPU training is reported as not run
# and prints the build times, image sizes and results as a markdown table (also work/docker-smoke/results.md).
#
# Usage: tools/docker-smoke.sh [--cached]
#   --cached   reuse Docker's build cache (default: prune it and build with --no-cache)
# Needs: a running Docker engine and Python 3.11 (no Caffe).
# Environment:
#   ILGNET_DOCKER      the docker client (default: one that builds with BuildKit, tools/docker-client.sh)
#   ILGNET_CA_BUNDLE   CA bundle given to the builds as the secret `ca` (make's CA=; default:
#                      /etc/ssl/certs/ca-certificates.crt when present; empty for none)
#   ILGNET_DEBIAN_MIRROR  mirror for debootstrap when debian:12 cannot be pulled (tools/docker-base.sh)
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
cached=0
for arg in "$@"; do
  case "$arg" in
    --cached) cached=1 ;;
    -h|--help) awk 'NR > 1 && /^#/ {print; next} NR > 1 {exit}' "$0"; exit 0 ;;
    *) echo "docker-smoke: unknown option '$arg' (try --help)" >&2; exit 2 ;;
  esac
done
docker=${ILGNET_DOCKER:-$(bash "$repo/tools/docker-client.sh")}
export ILGNET_DOCKER=$docker
ca=${ILGNET_CA_BUNDLE-/etc/ssl/certs/ca-certificates.crt}
[ -n "$ca" ] && [ -f "$ca" ] || ca=
work="$repo/work/docker-smoke"
results="$work/results.md"
venv="$repo/work/docker-smoke-venv"
ilgnet="$venv/bin/ilgnet"

log() { printf '[docker-smoke] %s\n' "$*" >&2; }
die() { printf '[docker-smoke] error: %s\n' "$*" >&2; exit 1; }
result() { printf '| %s | %s |\n' "$1" "$2" >> "$results"; log "$1: $2"; }

"$docker" info >/dev/null 2>&1 || die "no Docker engine answers '$docker info' (start dockerd)"
rm -rf "$work" && mkdir -p "$work"
printf '| step | result |\n|---|---|\n' > "$results"

# The host side: the package in a venv of its own, without Caffe.
log "host venv without Caffe: $venv (log: $work/venv.log)"
ILGNET_VENV=$venv ILGNET_EXTRAS= bash "$repo/tools/setup.sh" --python-only > "$work/venv.log" 2>&1 ||
  die "making $venv failed (log: $work/venv.log)"
# No Caffe for it to find: no ILGNET_CAFFE_ROOT, no folder on PATH with a `caffe`, no pycaffe, no caffe-root file.
unset ILGNET_CAFFE_ROOT
PATH=$(tr ':' '\n' <<< "$PATH" | while read -r dir; do [ -x "$dir/caffe" ] || echo "$dir"; done | paste -sd:)
if "$venv/bin/python" -c 'import caffe' 2>/dev/null || [ -e "$venv/caffe-root" ]; then
  die "$venv reaches a Caffe: the smoke test needs a host without one"
fi
result "host" "ilgnet in $venv: no pycaffe, no caffe-root, no caffe on PATH, no ILGNET_CAFFE_ROOT"

result "base image" "$(make -s -C "$repo" docker-base 2>&1 | tail -1)"
if [ "$cached" = 0 ]; then
  # A build killed mid-way can leave a lease that fails the first prune; the second one then succeeds.
  DOCKER_BUILDKIT=1 "$docker" builder prune -af > /dev/null 2>&1 ||
    DOCKER_BUILDKIT=1 "$docker" builder prune -af > /dev/null
  "$docker" image rm -f ilgnet-caffe:cpu ilgnet-caffe:cuda > /dev/null 2>&1 || true
fi

# build TARGET TAG: `make TARGET`, recording its time and the image's size.
build() {
  local target=$1 tag=$2 start=$SECONDS bytes flags=--progress=plain
  [ "$cached" = 1 ] || flags+=" --no-cache"
  log "make $target (log: $work/$target.log)"
  make -C "$repo" "$target" ${ca:+CA="$ca"} DOCKER_BUILD_FLAGS="$flags" > "$work/$target.log" 2>&1 ||
    { tail -20 "$work/$target.log" >&2; die "make $target failed (log: $work/$target.log)"; }
  local seconds=$((SECONDS - start))
  bytes=$("$docker" image inspect -f '{{.Size}}' "$tag")
  result "make $target ($tag)" "$((seconds / 60)) min $((seconds % 60)) s, image $(awk -v b="$bytes" 'BEGIN {printf "%.2f GB (%.0f bytes)", b / 1e9, b}')"
}

# check NAME COMMAND...: runs COMMAND with its output in $work/NAME.log; records ok / failed and the time.
check() {
  local name=$1 start=$SECONDS
  shift
  log "$name: $*"
  if "$@" > "$work/$name.log" 2>&1; then
    result "$name" "ok in $((SECONDS - start)) s"
  else
    result "$name" "FAILED (exit $?, log $work/$name.log)"
    return 1
  fi
}

build docker-build-cpu ilgnet-caffe:cpu
build docker-build ilgnet-caffe:cuda

cd "$repo"
dc=(tools/docker-caffe.sh --cpu --mount "$work")
failed=0
check doctor-docker "$ilgnet" doctor --docker || failed=1
# A small AVA-format dataset: the demo's generator (300 photos), its AVA2 split (60) and LMDBs, in the image.
check cpu-data bash -c '
  "$@" python -c "import sys; from pathlib import Path; from ilgnet.data.synthetic import generate; generate(Path(sys.argv[1]), n_images=300, seed=1)" "'"$work"'/ava" &&
  "$@" ilgnet split ava2 --ava-txt "'"$work"'/ava/AVA.txt" --out "'"$work"'/data" &&
  "$@" ilgnet lmdb --split "'"$work"'/data" --images "'"$work"'/ava/images"' _ "${dc[@]}" || failed=1
train=(--variant ilgnet --profile ava2 --data "$work/data" --runs "$work/runs" --max-iter 20 --train-batch 4
  --display 5 --test-interval 20)
check cpu-train "$ilgnet" train --docker --cpu "${train[@]}" --name smoke || failed=1
# `caffe test` in the image over every val record once, on the run's snapshot (its model.json gives variant, mean).
check cpu-test-caffe "$ilgnet" test --engine caffe --docker --weights "$work/runs/smoke" --data "$work/data" \
  --json "$work/test-caffe.json" || failed=1

# The CUDA image's GPU steps: without a GPU, device_query must exit 1 with one line (not abort with a trace).
rc=0
"${dc[@]}" --image ilgnet-caffe:cuda caffe device_query -gpu all > "$work/cuda-device-query.log" 2>&1 || rc=$?
if [ "$rc" = 1 ] && grep -q 'No CUDA GPU available' "$work/cuda-device-query.log"; then
  result "cuda-device-query" "no GPU, reported cleanly: $(grep -m1 'No CUDA GPU' "$work/cuda-device-query.log" | sed 's/^.*\] //')"
elif [ "$rc" = 0 ]; then
  result "cuda-device-query" "a GPU answered: $(grep -m1 -i 'name' "$work/cuda-device-query.log" | sed 's/^.*\] //')"
else
  result "cuda-device-query" "FAILED (exit $rc, log $work/cuda-device-query.log)"
  failed=1
fi
if command -v nvidia-smi >/dev/null && nvidia-smi -L 2>/dev/null | grep -q '^GPU '; then
  check cuda-train-gpu "$ilgnet" train --docker --gpu 0 "${train[@]}" --name smoke-gpu || failed=1
else
  result "cuda-train-gpu" "not run: no GPU here (nvidia-smi lists none)"
fi

cat "$results"
exit "$failed"
