# ilgnet-caffe with BVLC Caffe built for NVIDIA GPUs (compute capabilities 8.0 and 9.0: A100, H100/H200).
#
#   docker build -t ilgnet-caffe:cuda .
#   tools/docker-caffe.sh ilgnet train --variant ilgnet --profile ava2 --data data/ava2 --gpu 0
#
# Every build step is tools/setup.sh, the script CI runs; this file only provides what it expects. setup.sh
# builds Caffe from Debian's source package against Debian 12's libraries, while the nvidia/cuda images are
# Ubuntu, so the OS here is debian:12 and the CUDA toolkit (nvcc, cudart, cuBLAS, cuRAND) and NCCL are copied
# from the nvidia/cuda devel image. NVIDIA builds its toolkit for older glibc than Debian 12's, and nvcc uses
# Debian's gcc 12 as host compiler, which CUDA 12.x supports. Other CUDA versions: pass both build args, e.g.
#   --build-arg CUDA_IMAGE=nvidia/cuda:12.8.1-devel-ubuntu22.04 --build-arg CUDA_VERSION=12.8
# At run time the NVIDIA container toolkit (`docker run --gpus`) supplies the driver library.
ARG CUDA_IMAGE=nvidia/cuda:12.6.3-devel-ubuntu22.04
FROM ${CUDA_IMAGE} AS cuda

FROM debian:12
ARG CUDA_VERSION=12.6
ARG CUDA_ARCHS="80 90"
# NCCL lets `caffe train -gpu all` use several GPUs; --build-arg WITH_NCCL=0 builds without it.
ARG WITH_NCCL=1

COPY --from=cuda /usr/local/cuda-${CUDA_VERSION} /usr/local/cuda-${CUDA_VERSION}
COPY --from=cuda /usr/include/nccl.h /opt/nccl/include/
COPY --from=cuda /usr/lib/x86_64-linux-gnu/libnccl.so* /opt/nccl/lib/
RUN ln -s cuda-${CUDA_VERSION} /usr/local/cuda \
 && printf '/usr/local/cuda/lib64\n/opt/nccl/lib\n' > /etc/ld.so.conf.d/cuda.conf && ldconfig

# ILGNET_CACHE outside /root: the container runs as the calling user (tools/docker-caffe.sh --user).
ENV PATH=/opt/ilgnet-caffe/.venv/bin:/usr/local/cuda/bin:$PATH \
    ILGNET_CACHE=/opt/caffe-cache \
    ILGNET_CUDA_ARCHS=${CUDA_ARCHS} \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility

WORKDIR /opt/ilgnet-caffe
COPY pyproject.toml README.md ./
COPY tools tools
COPY src src
# No GPU is visible while building, so --cuda is explicit (setup.sh's auto mode would choose CPU).
# tools/build-caffe.sh enables NCCL when $NCCL_DIR/include/nccl.h exists.
RUN if [ "$WITH_NCCL" = 1 ]; then export NCCL_DIR=/opt/nccl; fi \
 && bash tools/setup.sh --cuda \
 && rm -rf "$ILGNET_CACHE/source" /var/lib/apt/lists/* /root/.cache/pip

CMD ["ilgnet", "doctor"]
