#!/usr/bin/env bash
# Builds both Docker images from a clean build cache and checks them on this machine (no GPU needed):
#   CPU image:  `ilgnet doctor`; a small synthetic AVA made into LMDBs in the image (`ilgnet split`,
#               `ilgnet lmdb`); a 20-iteration `ilgnet train --docker --cpu` on it driven by this checkout's
#               `ilgnet`; `ilgnet test --engine caffe --docker`
#   CUDA image: `ilgnet doctor` and `caffe device_query -gpu all`, which must say in one line that there is
#               no GPU (exit status 1) where there is none
# and prints the build times, image sizes and results as a markdown table (also work/docker-smoke/results.md).
#
# Usage: tools/docker-smoke.sh [--cached]
#   --cached   reuse Docker's build cache (default: prune it and build with --no-cache)
# Needs: a running Docker engine; this checkout's venv (`make setup`) for the host side of
# `ilgnet train --docker`.
# Environment:
#   DOCKER             the docker client (default: /usr/bin/docker when present, Debian's docker.io client,
#                      whose BuildKit needs no buildx plugin; else docker)
#   ILGNET_CA_BUNDLE   CA bundle given to the builds as the secret `ca` (default:
#                      /etc/ssl/certs/ca-certificates.crt when present; empty for none)
#   ILGNET_DEBIAN_MIRROR  mirror for debootstrap when debian:12 cannot be pulled (default:
#                      http://deb.debian.org/debian)
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
if [ -z "${DOCKER:-}" ]; then
  if [ -x /usr/bin/docker ]; then DOCKER=/usr/bin/docker; else DOCKER=docker; fi
fi
ca=${ILGNET_CA_BUNDLE-/etc/ssl/certs/ca-certificates.crt}
mirror=${ILGNET_DEBIAN_MIRROR:-http://deb.debian.org/debian}
work="$repo/work/docker-smoke"
results="$work/results.md"
ilgnet="$repo/.venv/bin/ilgnet"

log() { printf '[docker-smoke] %s\n' "$*" >&2; }
die() { printf '[docker-smoke] error: %s\n' "$*" >&2; exit 1; }
result() { printf '| %s | %s |\n' "$1" "$2" >> "$results"; log "$1: $2"; }

"$DOCKER" info >/dev/null 2>&1 || die "no Docker engine answers '$DOCKER info' (start dockerd)"
[ -x "$ilgnet" ] || die "no $ilgnet: run 'make setup' first (the host's ilgnet drives 'ilgnet train --docker')"
rm -rf "$work" && mkdir -p "$work"
printf '| step | result |\n|---|---|\n' > "$results"

# debian:12 from the registry, or made here: debootstrap's bookworm with the official image's apt sources.
base_image() {
  if "$DOCKER" image inspect debian:12 >/dev/null 2>&1; then
    result "base image" "debian:12 already present ($("$DOCKER" image inspect -f '{{.Id}}' debian:12 | cut -c8-19))"
    return
  fi
  if "$DOCKER" pull debian:12 >/dev/null 2>&1; then
    result "base image" "debian:12 pulled from the registry"
    return
  fi
  command -v debootstrap >/dev/null || die "debian:12 cannot be pulled and debootstrap is missing (apt-get install debootstrap)"
  log "debian:12 cannot be pulled: making it with debootstrap bookworm from $mirror"
  local root="$work/rootfs" start=$SECONDS
  debootstrap --variant=minbase bookworm "$root" "$mirror" > "$work/debootstrap.log" 2>&1 ||
    die "debootstrap failed (log: $work/debootstrap.log)"
  rm -f "$root/etc/apt/sources.list"
  cat > "$root/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $mirror
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: ${mirror%/debian}/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
  tar -C "$root" -c . | "$DOCKER" import --change 'CMD ["bash"]' - debian:12 >/dev/null
  rm -rf "$root"
  result "base image" "debian:12 made with debootstrap bookworm + docker import in $((SECONDS - start)) s"
}

# build TAG DOCKERFILE: builds the image, recording its time and size.
build() {
  local tag=$1 file=$2 start=$SECONDS
  local args=(-f "$repo/$file" -t "$tag")
  [ "$cached" = 1 ] || args+=(--no-cache)
  if [ -n "$ca" ] && [ -f "$ca" ]; then args+=(--secret "id=ca,src=$ca"); fi
  log "building $tag from $file (log: $work/build-${tag#*:}.log)"
  DOCKER_BUILDKIT=1 "$DOCKER" build --progress=plain "${args[@]}" "$repo" > "$work/build-${tag#*:}.log" 2>&1 ||
    { tail -20 "$work/build-${tag#*:}.log" >&2; die "building $tag failed (log: $work/build-${tag#*:}.log)"; }
  local seconds=$((SECONDS - start)) bytes
  bytes=$("$DOCKER" image inspect -f '{{.Size}}' "$tag")
  result "build $tag ($file)" "$((seconds / 60)) min $((seconds % 60)) s, image $(awk -v b="$bytes" 'BEGIN {printf "%.2f GB (%.0f bytes)", b / 1e9, b}')"
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

base_image
if [ "$cached" = 0 ]; then
  # A build killed mid-way can leave a lease that fails the first prune; the second one then succeeds.
  DOCKER_BUILDKIT=1 "$DOCKER" builder prune -af > /dev/null 2>&1 ||
    DOCKER_BUILDKIT=1 "$DOCKER" builder prune -af > /dev/null
  "$DOCKER" image rm -f ilgnet-caffe:cpu ilgnet-caffe:cuda > /dev/null 2>&1 || true
fi
build ilgnet-caffe:cpu Dockerfile.cpu
build ilgnet-caffe:cuda Dockerfile

cd "$repo"
dc=(tools/docker-caffe.sh --cpu --mount "$work")
failed=0
check cpu-doctor "${dc[@]}" ilgnet doctor || failed=1
# A small AVA-format dataset: the demo's generator (300 photos), its AVA2 split (60) and LMDBs, in the image.
check cpu-data bash -c '
  "$@" python -c "import sys; from pathlib import Path; from ilgnet.data.synthetic import generate; generate(Path(sys.argv[1]), n_images=300, seed=1)" "'"$work"'/ava" &&
  "$@" ilgnet split ava2 --ava-txt "'"$work"'/ava/AVA.txt" --out "'"$work"'/data" &&
  "$@" ilgnet lmdb --split "'"$work"'/data" --images "'"$work"'/ava/images"' _ "${dc[@]}" || failed=1
check cpu-train "$ilgnet" train --docker --cpu --variant ilgnet --profile ava2 --data "$work/data" \
  --runs "$work/runs" --name smoke --max-iter 20 --train-batch 4 --display 5 --test-interval 20 || failed=1
# `caffe test` in the image over every val record once, on the run's snapshot (its model.json gives variant, mean).
check cpu-test-caffe "$ilgnet" test --engine caffe --docker --weights "$work/runs/smoke" --data "$work/data" \
  --json "$work/test-caffe.json" || failed=1

export ILGNET_IMAGE=ilgnet-caffe:cuda
check cuda-doctor "${dc[@]}" ilgnet doctor || failed=1
# On a machine without a GPU, device_query must exit 1 with one line saying so (not abort with a trace).
rc=0
"${dc[@]}" caffe device_query -gpu all > "$work/cuda-device-query.log" 2>&1 || rc=$?
if [ "$rc" = 1 ] && grep -q 'No CUDA GPU available' "$work/cuda-device-query.log"; then
  result "cuda-device-query" "no GPU, reported cleanly: $(grep -m1 'No CUDA GPU' "$work/cuda-device-query.log" | sed 's/^.*\] //')"
elif [ "$rc" = 0 ]; then
  result "cuda-device-query" "a GPU answered: $(grep -m1 -i 'name' "$work/cuda-device-query.log" | sed 's/^.*\] //')"
else
  result "cuda-device-query" "FAILED (exit $rc, log $work/cuda-device-query.log)"
  failed=1
fi

cat "$results"
exit "$failed"
