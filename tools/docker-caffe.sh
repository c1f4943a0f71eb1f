#!/usr/bin/env bash
# Runs a command inside the ilgnet-caffe Docker image: `caffe` by default, or any tool the image has
# (ilgnet, convert_imageset, python, bash). This checkout, the working directory and every --mount folder are
# mounted at their own absolute paths, so the absolute paths in generated prototxt files and solver states
# mean the same inside and out. The checkout's src/ comes first on PYTHONPATH, so the mounted code is what runs.
#
# Usage: tools/docker-caffe.sh [--cpu] [--mount DIR]... [--] [COMMAND] ARGS...
#   tools/docker-caffe.sh train -solver runs/ilgnet-ava2/solver.prototxt -gpu 0
#   tools/docker-caffe.sh --mount /data/ava caffe test -model M -weights W -iterations 100 -gpu 0
#   tools/docker-caffe.sh ilgnet train --profile ava2 --data data/ava2 --gpu all     # no Caffe needed on the host
#   --cpu          use the CPU image and no GPUs
#   --mount DIR    also mount DIR (data folders outside the checkout)
# Environment:
#   ILGNET_IMAGE   image (default: ilgnet-caffe:cuda, with --cpu ilgnet-caffe:cpu); build them with
#                  `docker build -t ilgnet-caffe:cuda .` and `docker build -f Dockerfile.cpu -t ilgnet-caffe:cpu .`
#   ILGNET_GPUS    value of `docker run --gpus` (default: all)
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
cpu=0
mounts=("$repo" "$(pwd -P)")
while [ $# -gt 0 ]; do
  case "$1" in
    --cpu) cpu=1; shift ;;
    --mount) [ $# -ge 2 ] || { echo "docker-caffe: --mount needs a folder" >&2; exit 2; }
             [ -d "$2" ] || { echo "docker-caffe: --mount $2: no such folder" >&2; exit 2; }
             mounts+=("$(cd "$2" && pwd -P)"); shift 2 ;;
    --) shift; break ;;
    -h|--help) awk 'NR > 1 && /^#/ {print; next} NR > 1 {exit}' "$0"; exit 0 ;;
    *) break ;;
  esac
done
[ $# -gt 0 ] || { echo "docker-caffe: nothing to run (try --help)" >&2; exit 2; }
case "$1" in
  train|test|time|device_query) set -- caffe "$@" ;;    # bare caffe actions
esac

if [ "$cpu" = 1 ]; then
  image=${ILGNET_IMAGE:-ilgnet-caffe:cpu}
  gpus=()
else
  image=${ILGNET_IMAGE:-ilgnet-caffe:cuda}
  gpus=(--gpus "${ILGNET_GPUS:-all}")
fi
command -v docker >/dev/null || { echo "docker-caffe: docker is not installed" >&2; exit 1; }

volumes=()
mapfile -t mounts < <(printf '%s\n' "${mounts[@]}" | sort -u)
for dir in "${mounts[@]}"; do
  volumes+=(-v "$dir:$dir")
done
tty=()
[ -t 0 ] && [ -t 1 ] && tty=(-it)     # a terminal: Ctrl-C goes through it; otherwise docker forwards signals

# --init: a minimal init forwards SIGINT to Caffe, which then snapshots and stops (-sigint_effect stop).
exec docker run --rm --init "${tty[@]}" "${gpus[@]}" \
  --user "$(id -u):$(id -g)" -e HOME=/tmp -e MPLCONFIGDIR=/tmp/matplotlib \
  -e PYTHONPATH="$repo/src" "${volumes[@]}" -w "$(pwd -P)" \
  "$image" "$@"
