#!/usr/bin/env bash
# Runs a command inside the ilgnet-caffe Docker image: `caffe` by default, or any tool the image has
# (ilgnet, convert_imageset, python, bash). This checkout, the working directory and every --mount folder are
# mounted at their own absolute paths, so the absolute paths in generated prototxt files and solver states
# mean the same inside and out. The checkout's src/ comes first on PYTHONPATH, so the mounted code is what runs.
# Only Docker is needed on the host: no Caffe, no Python.
#
# Usage: tools/docker-caffe.sh [--cpu] [--image NAME] [--mount DIR]... [--] [COMMAND] ARGS...
#        tools/docker-caffe.sh [--cpu] [--image NAME] --check
#   tools/docker-caffe.sh train -solver runs/ilgnet-ava2/solver.prototxt -gpu 0
#   tools/docker-caffe.sh --mount /data/ava caffe test -model M -weights W -iterations 100 -gpu 0
#   tools/docker-caffe.sh ilgnet train --profile ava2 --data data/ava2 --gpu all     # no Caffe needed on the host
#   --cpu          no GPUs, and the CPU image unless --image or ILGNET_IMAGE names another
#   --image NAME   the image to run (default: $ILGNET_IMAGE, else ilgnet-caffe:cuda, with --cpu ilgnet-caffe:cpu)
#   --mount DIR    also mount DIR (data folders outside the checkout)
#   --check        run nothing: check that Docker answers, the image is here and the folders can be mounted (a
#                  --mount folder may not exist yet), and print the image's name and id
# Environment:
#   ILGNET_IMAGE   the image, as --image; build them with `make docker-build` and `make docker-build-cpu`
#   ILGNET_GPUS    value of `docker run --gpus` (default: all)
#   ILGNET_DOCKER  the docker client (default: docker)
# A missing docker, an engine that does not answer or a missing image is one line on stderr, exit status 1.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
# From a checkout, its src/ is mounted and runs; from a plain install (this file in PREFIX/share/ilgnet-caffe) the
# image's own ilgnet runs, and nothing of the install is mounted.
checkout=1
[ -d "$repo/src/ilgnet" ] || checkout=0
# The image's own folders: a mount at one of them, above it (/, /opt) or inside it (/usr/lib) would hide the
# image's system, venv or Caffe; Docker refuses to mount / at all.
image_folders=(/bin /dev /etc /lib /lib64 /opt/caffe-cache /opt/ilgnet-caffe /proc /sbin /sys /usr /var/lib)
refuse_cover() {    # FOLDER WHAT HINT: exit 2 when mounting FOLDER would hide any of image_folders
  local folder
  [ "$1" != / ] || { echo "docker-caffe: $2 / cannot be mounted in the image; $3" >&2; exit 2; }
  for folder in "${image_folders[@]}"; do
    if [[ "$folder/" == "$1/"* || "$1/" == "$folder/"* ]]; then
      echo "docker-caffe: $2 $1 cannot be mounted in the image: it overlaps the image's $folder; $3" >&2
      exit 2
    fi
  done
}
cpu=0
check=0
image=${ILGNET_IMAGE:-}
mounts=("$(pwd -P)")
[ "$checkout" = 0 ] || mounts+=("$repo")
wanted=()
while [ $# -gt 0 ]; do
  case "$1" in
    --cpu) cpu=1; shift ;;
    --image) [ $# -ge 2 ] && [ -n "$2" ] || { echo "docker-caffe: --image needs a name" >&2; exit 2; }
             image=$2; shift 2 ;;
    --mount) [ $# -ge 2 ] || { echo "docker-caffe: --mount needs a folder" >&2; exit 2; }
             wanted+=("$2"); shift 2 ;;
    --check) check=1; shift ;;
    --) shift; break ;;
    -h|--help) awk 'NR > 1 && /^#/ {print; next} NR > 1 {exit}' "$0"; exit 0 ;;
    *) break ;;
  esac
done
[ $# -gt 0 ] || [ "$check" = 1 ] || { echo "docker-caffe: nothing to run (try --help)" >&2; exit 2; }
for dir in "${wanted[@]}"; do
  if [ -d "$dir" ]; then
    dir=$(cd "$dir" && pwd -P)
  elif [ "$check" = 1 ]; then
    dir=$(realpath -m "$dir")        # --check before a run: where the folder will be
  else
    echo "docker-caffe: --mount $dir: no such folder" >&2; exit 2
  fi
  refuse_cover "$dir" "--mount" "mount a folder of your data"
  mounts+=("$dir")
done
refuse_cover "$(pwd -P)" "the working folder" "run from another folder (cd into your project first)"
[ "$checkout" = 0 ] || refuse_cover "$repo" "the checkout" "clone ilgnet-caffe elsewhere"
case "${1:-}" in
  train|test|time|device_query) set -- caffe "$@" ;;    # bare caffe actions
esac

if [ "$cpu" = 1 ]; then
  image=${image:-ilgnet-caffe:cpu}
  gpus=()
else
  image=${image:-ilgnet-caffe:cuda}
  gpus=(--gpus "${ILGNET_GPUS:-all}")
fi
docker=${ILGNET_DOCKER:-docker}
command -v "$docker" >/dev/null || { echo "docker-caffe: $docker is not installed (Debian 12: apt-get install docker.io)" >&2; exit 1; }
if ! id=$("$docker" image inspect -f '{{.Id}}' "$image" 2>&1); then
  if grep -qi 'no such image' <<< "$id"; then
    case "$image" in
      ilgnet-caffe:cpu) how="build it with \`make docker-build-cpu\`" ;;
      ilgnet-caffe:cuda) how="build it with \`make docker-build\`" ;;
      *) how="build or pull it" ;;
    esac
    echo "docker-caffe: there is no image $image on this Docker engine: $how (docs/DOCKER.md)" >&2
  else
    echo "docker-caffe: $docker cannot reach its engine: $(grep -v '^$' <<< "$id" | tail -1)" >&2
  fi
  exit 1
fi
if [ "$check" = 1 ]; then
  echo "$image $id"
  exit 0
fi

volumes=()
mapfile -t mounts < <(printf '%s\n' "${mounts[@]}" | LC_ALL=C sort -u)
for dir in "${mounts[@]}"; do
  volumes+=(-v "$dir:$dir")
done
pythonpath=()
[ "$checkout" = 0 ] || pythonpath=(-e PYTHONPATH="$repo/src")
tty=()
[ -t 0 ] && [ -t 1 ] && tty=(-it)     # a terminal: Ctrl-C goes through it; otherwise docker forwards signals

# --init: a minimal init forwards SIGINT to Caffe, which then snapshots and stops (-sigint_effect stop).
exec "$docker" run --rm --init "${tty[@]}" "${gpus[@]}" \
  --user "$(id -u):$(id -g)" -e HOME=/tmp -e MPLCONFIGDIR=/tmp/matplotlib \
  "${pythonpath[@]}" "${volumes[@]}" -w "$(pwd -P)" \
  "$image" "$@"
