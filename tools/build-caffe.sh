#!/usr/bin/env bash
# The Caffe build recipe: unpack Debian's caffe source package, apply tools/caffe-patches, configure with CMake
# and install into PREFIX. tools/setup.sh and tools/gpu-bundle.sh hash this file and the patches into their
# cache keys, so any change here rebuilds.
#
# Usage: tools/build-caffe.sh SOURCE_DSC PREFIX PYTHON cpu|cuda [lean]
#   SOURCE_DSC  caffe_<version>.dsc fetched by `apt-get source`
#   PREFIX      final install folder (must not exist yet); work happens in PREFIX.work and resumes there
#   PYTHON      the venv interpreter pycaffe is built for (numpy installed); unused with lean
#   lean        no pycaffe, OpenCV or LevelDB: the `caffe` tool and libcaffe with the fewest libraries
#               (tools/gpu-bundle.sh)
# Environment: ILGNET_JOBS (default nproc), ILGNET_CUDA_ARCHS (default "80 90"); for cuda builds nvcc must be
#   on PATH, and NCCL_DIR / CUDNN_DIR say where NCCL / cuDNN are when not in the CUDA toolkit, /usr/local or
#   /usr; ILGNET_CUDNN=0 builds without cuDNN even where it is found.
# A wrong argument count, mode or fifth argument, an existing PREFIX, a missing SOURCE_DSC or PYTHON are refused
# in one line with exit status 2, before any work; a failed build step exits 1.
set -euo pipefail

log() { printf '[build-caffe] %s\n' "$*"; }
die() { printf '[build-caffe] error: %s\n' "$*" >&2; exit 1; }
refuse() { printf '[build-caffe] error: %s\n' "$*" >&2; exit 2; }

usage="usage: tools/build-caffe.sh SOURCE_DSC PREFIX PYTHON cpu|cuda [lean]"
case "${1:-}" in -h|--help) awk 'NR > 1 && /^#/ {print; next} NR > 1 {exit}' "$0"; exit 0 ;; esac
[ $# -eq 4 ] || [ $# -eq 5 ] || refuse "expected 4 or 5 arguments, got $# ($usage)"
dsc=$1 dest=$2 py=$3 mode=$4 flavour=${5:-full}
case "$mode" in cpu|cuda) ;; *) refuse "build mode '$mode': expected cpu or cuda ($usage)" ;; esac
[ $# -eq 4 ] || [ "$flavour" = lean ] || refuse "fifth argument '$flavour': expected lean or none ($usage)"
[ ! -e "$dest" ] && [ ! -L "$dest" ] || refuse "install prefix $dest exists already; remove it to build again there"
[ -f "$dsc" ] || refuse "source package $dsc does not exist"
[ "$flavour" = lean ] || command -v "$py" >/dev/null || refuse "PYTHON $py is not an executable"

jobs=${ILGNET_JOBS:-$(nproc)}
cuda_archs=${ILGNET_CUDA_ARCHS:-80 90}
patch_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/caffe-patches
work="$dest.work"

if [ "$flavour" = lean ]; then
  # HDF5 stays: this Caffe's net.cpp calls it whatever USE_HDF5 says.
  features=(-DBUILD_python=OFF -DBUILD_python_layer=OFF -DUSE_OPENCV=OFF -DUSE_LEVELDB=OFF -DUSE_HDF5=ON)
else
  py_inc=$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
  py_lib=$("$py" -c 'import sysconfig, os; print(os.path.join(sysconfig.get_config_var("LIBDIR"), sysconfig.get_config_var("LDLIBRARY")))')
  [ -f "$py_lib" ] || die "no shared libpython at $py_lib; pycaffe needs a Python built with --enable-shared"
  features=(-DBUILD_python=ON -DBUILD_python_layer=ON -DUSE_OPENCV=ON -DUSE_LEVELDB=ON -DUSE_HDF5=ON
    -Dpython_version=3.11 -DPYTHON_EXECUTABLE="$py" -DPYTHON_INCLUDE_DIR="$py_inc" -DPYTHON_LIBRARY="$py_lib")
fi

if [ ! -f "$work/src/CMakeLists.txt" ]; then
  rm -rf "$work" && mkdir -p "$work"
  log "unpacking $(basename "$dsc") and applying $(ls "$patch_dir" | wc -l) patches"
  dpkg-source --no-check -x "$dsc" "$work/src.partial" >/dev/null
  for p in "$patch_dir"/*.patch; do patch -d "$work/src.partial" -p1 --quiet < "$p"; done
  mv "$work/src.partial" "$work/src"
fi

flags=(-DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX="$dest" -DBLAS=Open -DBUILD_docs=OFF -DBUILD_matlab=OFF
  -DUSE_LMDB=ON "${features[@]}")
if [ "$mode" = cuda ]; then
  command -v nvcc >/dev/null || die "a CUDA build needs nvcc on PATH"
  cuda_home=$(dirname "$(dirname "$(readlink -f "$(command -v nvcc)")")")
  # NCCL (for `caffe train -gpu all`) where it is installed: Caffe's FindNCCL also reads $NCCL_DIR.
  nccl=OFF
  for d in ${NCCL_DIR:-} "$cuda_home" /usr/local /usr; do
    if [ -f "$d/include/nccl.h" ]; then nccl=ON; export NCCL_DIR=$d; break; fi
  done
  # cuDNN 8 or 9 (tools/caffe-patches/04-cudnn8-9.patch), named to CMake explicitly: NVIDIA's wheel ships
  # libcudnn.so.9 only, which Caffe's own search (for libcudnn.so) would miss.
  cudnn=()
  if [ "${ILGNET_CUDNN:-1}" != 0 ]; then
    for d in ${CUDNN_DIR:-} "$cuda_home" /usr/local /usr; do
      [ -f "$d/include/cudnn_version.h" ] || continue
      for lib in "$d"/lib/libcudnn.so* "$d"/lib64/libcudnn.so* "$d"/lib/x86_64-linux-gnu/libcudnn.so*; do
        if [ -e "$lib" ]; then cudnn=(-DCUDNN_INCLUDE="$d/include" -DCUDNN_LIBRARY="$lib"); break 2; fi
      done
    done
  fi
  # Caffe's own arch list stops at Pascal, which CUDA 12+ rejects: name the bins explicitly. The shared CUDA
  # runtime, so that a machine's own libcudart (a wheel's, say) serves. CUDA 13's thrust needs C++17.
  flags+=(-DCPU_ONLY=OFF -DUSE_NCCL=$nccl -DCUDA_TOOLKIT_ROOT_DIR="$cuda_home" -DCUDA_USE_STATIC_CUDA_RUNTIME=OFF
    -DCUDA_ARCH_NAME=Manual -DCUDA_ARCH_BIN="$cuda_archs" -DCUDA_ARCH_PTX="${cuda_archs##* }"
    -DCUDA_NVCC_FLAGS="-std=c++17" -DCMAKE_CXX_STANDARD=17)
  if [ ${#cudnn[@]} -gt 0 ]; then
    flags+=(-DUSE_CUDNN=ON "${cudnn[@]}")
    log "CUDA build for compute capabilities $cuda_archs (cuDNN ${cudnn[1]#*=}, NCCL $nccl)"
  else
    flags+=(-DUSE_CUDNN=OFF)
    log "CUDA build for compute capabilities $cuda_archs (no cuDNN, NCCL $nccl)"
  fi
else
  flags+=(-DCPU_ONLY=ON)
  log "CPU-only build"
fi

mkdir -p "$work/build"
(cd "$work/build" && cmake "${flags[@]}" ../src >cmake.log 2>&1) ||
  { tail -30 "$work/build/cmake.log"; die "cmake failed (log: $work/build/cmake.log)"; }
log "compiling with $jobs jobs (about 4 minutes on 2 cores for the CPU build; log: $work/build/make.log)"
(cd "$work/build" && make -j"$jobs" >make.log 2>&1) ||
  { tail -30 "$work/build/make.log"; die "compile failed (log: $work/build/make.log); run setup again to resume"; }
rm -rf "$work/stage"
(cd "$work/build" && make install DESTDIR="$work/stage" >install.log 2>&1) ||
  { tail -30 "$work/build/install.log"; die "install failed (log: $work/build/install.log)"; }
[ -x "$work/stage$dest/bin/caffe" ] || die "the build finished without bin/caffe"
# The install was staged under DESTDIR with the final prefix baked into RUNPATH; one rename publishes it.
mv "$work/stage$dest" "$dest"
rm -rf "$work"
log "installed into $dest"
