#!/usr/bin/env bash
# Checks a Caffe bundle from tools/gpu-bundle.sh on a CUDA machine that has NVIDIA's CUDA 13 wheels (cudart,
# cuBLAS, cuRAND, cuDNN 9, NCCL) for its python3 and no network, in at most 8 minutes:
#   1. CPU: the `ilgnet` train_val's filler weights (a 0-iteration `caffe train`), then `caffe test` on the
#      bundle's LMDB (4 x 50 images);
#   2. GPU: `caffe device_query` (the first GPU step: without a GPU the check stops there with one line);
#   3. the same `caffe test` on the GPU, in strict FP32 (NVIDIA_TF32_OVERRIDE=0: must equal the CPU within
#      1e-4) and with cuDNN's default math (TF32 allowed on Ampere and newer: reported);
#   4. `caffe time` forward-backward at batch 48 with every layer on the cuDNN engine, then on Caffe's own;
#   5. 350 iterations of `caffe train` at batch 48 from the LMDB: images/s and peak GPU memory (nvidia-smi);
#   steps 4 and 5 for `ilgnet` and `ilgnet-bn`;
#   6. the same `ilgnet` training with the CUDA Docker image's `caffe` (tools/docker-caffe.sh, `--gpus all`), where
#      a Docker engine here has that image (ILGNET_IMAGE, default ilgnet-caffe:cuda); else reported as not run,
#      with the reason, in one line.
# It prints one table and writes it to $OUT/gpu-check.md, with every log in $OUT/gpu-check-logs.tar.gz.
#
# Usage: tools/gpu-check.sh BUNDLE
#   BUNDLE  the archive tools/gpu-bundle.sh wrote (.bundle/ilgnet-gpu.tar.xz)
# Environment:
#   OUT               where the results go (default: ./gpu-check-out)
#   ILGNET_CUDA_LIBS  colon-separated folders with the CUDA libraries (default: the lib folders of the
#                     nvidia wheels python3 imports)
#   ILGNET_IMAGE      the CUDA image of step 6 (default: ilgnet-caffe:cuda, from `make docker-build`)
# Exit status: 0 all checks passed; 1 a check failed; 2 usage or a broken bundle; 3 no usable GPU.
set -euo pipefail

die() { printf 'gpu-check: %s\n' "$*" >&2; exit 2; }
[ $# -eq 1 ] || die "usage: tools/gpu-check.sh BUNDLE"
[ -f "$1" ] || die "no bundle at $1 (make it with tools/gpu-bundle.sh)"
bundle=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
out=${OUT:-$PWD/gpu-check-out}
budget=470          # seconds: the steps stop being started past this, so the whole check ends within 8 min
mkdir -p "$out"

work=$(mktemp -d /tmp/gpu-check.XXXXXX)
trap 'rm -rf "$work"' EXIT
logs="$work/logs"
mkdir -p "$logs"
tar -C "$work" -xJf "$bundle" || die "cannot unpack $bundle"
top="$work/ilgnet-gpu"
caffe="$top/bin/caffe"

if [ -z "${ILGNET_CUDA_LIBS:-}" ]; then
  ILGNET_CUDA_LIBS=$(python3 - <<'EOF'
import glob, os
import nvidia
dirs = sorted({os.path.dirname(f) for root in nvidia.__path__ for f in glob.glob(os.path.join(root, "*", "lib", "lib*.so*"))})
print(":".join(dirs))
EOF
) || die "python3 cannot import NVIDIA's wheels (nvidia.*); set ILGNET_CUDA_LIBS to the CUDA library folders"
fi
export LD_LIBRARY_PATH="$top/lib:$ILGNET_CUDA_LIBS${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
missing=$(ldd "$caffe" "$top"/lib/libcaffe.so.* | awk '/not found/ {print $1}' | sort -u | paste -sd' ')
[ -z "$missing" ] || die "the bundle's caffe cannot find $missing (ILGNET_CUDA_LIBS=$ILGNET_CUDA_LIBS)"
python3 "$repo/tools/gpu_check.py" nets "$repo" "$top/data" "$work"

# step NAME SECONDS COMMAND...: runs COMMAND with its output in $logs/NAME.log, within SECONDS and the budget.
step() {
  local name=$1 limit=$2 left rc=0 start=$SECONDS
  shift 2
  left=$((budget - SECONDS))
  if [ "$left" -lt 20 ]; then
    echo "$name skipped(time) 0" >> "$logs/steps.txt"
    return 1
  fi
  [ "$limit" -le "$left" ] || limit=$left
  printf 'gpu-check: %-22s ' "$name" >&2
  timeout "$limit" "$@" > "$logs/$name.log" 2>&1 || rc=$?
  local verdict=ok
  [ "$rc" = 0 ] || verdict=failed
  [ "$rc" = 124 ] && verdict=timed-out
  echo "$name $verdict $((SECONDS - start))" >> "$logs/steps.txt"
  echo "$verdict ($((SECONDS - start)) s)" >&2
  return "$rc"
}

finish() {
  local rc=0
  python3 "$repo/tools/gpu_check.py" report "$work" > "$out/gpu-check.md" || rc=$?
  cat "$out/gpu-check.md"
  tar -C "$work" -czf "$out/gpu-check-logs.tar.gz" logs
  echo "gpu-check: table in $out/gpu-check.md, logs in $out/gpu-check-logs.tar.gz" >&2
  return "$rc"
}

{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "bundle: $(head -1 "$top/MANIFEST" | sed 's/^built: //'), $(grep '^commit' "$top/MANIFEST")"
  if command -v nvidia-smi >/dev/null; then
    echo "GPU: $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | head -1)"
  fi
  echo "CUDA libraries: $(ldd "$top"/lib/libcaffe.so.* | awk '$1 ~ /^lib(cudart|cublas|curand|cudnn|nccl)\.so/ {print $3}' | xargs -r readlink -f | paste -sd' ')"
} > "$logs/machine.log"
# Step 6's image: "NAME sha256:ID" where a Docker engine here has it, else why not (one line).
image=${ILGNET_IMAGE:-ilgnet-caffe:cuda}
docker_caffe=(bash "$repo/tools/docker-caffe.sh" --image "$image" --mount "$work")
image_found=$("${docker_caffe[@]}" --check 2>&1) || { echo "$image_found" > "$logs/image-train-ilgnet.not-run"; image_found=; }
[ -z "$image_found" ] || echo "Docker image: $image_found" >> "$logs/machine.log"

# train NAME COMMAND...: a `caffe train` step with GPU 0's memory sampled every 200 ms (nvidia-smi) meanwhile.
train() {
  local name=$1 mem="$logs/$1.mem" sampler= rc=0
  shift
  if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -i 0 > "$mem"
    nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -i 0 -lms 200 >> "$mem" &
    sampler=$!
  fi
  step "$name" "$@" || rc=$?
  [ -z "$sampler" ] || kill "$sampler" 2>/dev/null || true
  return "$rc"
}

il="$work/ilgnet"
step weights-ilgnet 120 "$caffe" train -solver "$il/solver-weights.prototxt" || { finish; exit 1; }
weights="$il/init_iter_0.caffemodel"
step cpu-test-ilgnet 180 "$caffe" test -model "$il/train_val.prototxt" -weights "$weights" -iterations 4 ||
  { finish; exit 1; }

if ! step device-query 30 "$caffe" device_query -gpu all; then
  finish || true
  reason=$(grep -m1 -E 'No CUDA GPU|error|Check failed' "$logs/device-query.log" | sed 's/^.*\] //')
  echo "gpu-check: stopped at the first GPU step (caffe device_query): no usable GPU: ${reason:-see $logs/device-query.log}" >&2
  exit 3
fi

NVIDIA_TF32_OVERRIDE=0 step gpu-test-ilgnet 90 "$caffe" test -model "$il/train_val.prototxt" -weights "$weights" \
  -iterations 4 -gpu 0 || true
step gpu-test-ilgnet-tf32 90 "$caffe" test -model "$il/train_val.prototxt" -weights "$weights" \
  -iterations 4 -gpu 0 || true
for variant in ilgnet ilgnet-bn; do
  for engine in cudnn caffe; do
    step "time-$variant-$engine" 120 "$caffe" time -model "$work/$variant/train_val-$engine.prototxt" \
      -gpu 0 -iterations 20 || true
  done
  train "train-$variant" 180 "$caffe" train -solver "$work/$variant/solver-train.prototxt" -gpu 0 || true
  if [ "$variant" = ilgnet ] && [ -n "$image_found" ]; then
    # The same training with the image's caffe, the bundle's data mounted at its own path.
    train image-train-ilgnet 240 "${docker_caffe[@]}" caffe train -solver "$work/ilgnet/solver-train.prototxt" \
      -gpu 0 || true
  fi
done
finish
