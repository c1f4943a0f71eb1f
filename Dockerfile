# ilgnet-caffe with BVLC Caffe built for NVIDIA GPUs (compute capabilities 8.0 and 9.0 with compute_90 PTX:
# A100, H100/H200 and newer), cuDNN 9 and NCCL, on Debian 12.
#
#   DOCKER_BUILDKIT=1 docker build -t ilgnet-caffe:cuda .
#   DOCKER_BUILDKIT=1 docker build -t ilgnet-caffe:cuda --secret id=ca,src=/etc/ssl/certs/ca-certificates.crt .
#   tools/docker-caffe.sh ilgnet train --variant ilgnet --profile ava2 --data data/ava2 --gpu 0
#
# Every build step is tools/setup.sh, the script CI runs. The CUDA toolkit parts Caffe builds against (nvcc,
# cudart, cuBLAS, cuRAND), cuDNN and NCCL are NVIDIA's pip wheels pinned in tools/cuda-wheels.sh, so the
# image needs only Debian's and PyPI's registries. Two stages: `build` runs setup (compilers, nvcc, headers,
# Caffe's source and build), and the final image gets only what tools/docker-runtime.sh gathers from it: the
# venv, Caffe's install, this package, the CUDA shared libraries, and the Debian runtime packages of Caffe's
# libraries. The optional build secret `ca` is a CA bundle that pip and apt trust during the build only (a
# TLS-inspecting proxy's); it is mounted per RUN and never stored in a layer. BuildKit is needed for it
# (Debian's docker.io client has it built in). At run time the NVIDIA container toolkit (`docker run --gpus`)
# supplies the driver library.
#   --build-arg CUDA_ARCHS="86 89 90"   other compute capabilities (the last one also as PTX)
#   --build-arg CUDNN=0                 without cuDNN (Caffe's own convolutions)

FROM debian:12 AS build
ARG CUDA_ARCHS="80 90"
ARG CUDNN=1
ENV ILGNET_CACHE=/opt/caffe-cache \
    ILGNET_CUDA_ARCHS=${CUDA_ARCHS} \
    ILGNET_CUDNN=${CUDNN}
WORKDIR /opt/ilgnet-caffe
COPY pyproject.toml README.md ./
COPY tools tools
COPY src src
# No GPU is visible while building, so --cuda is explicit (setup.sh's auto mode would choose CPU).
RUN --mount=type=secret,id=ca \
    if [ -f /run/secrets/ca ]; then \
      export PIP_CERT=/run/secrets/ca; \
      echo 'Acquire::https::CAInfo "/run/secrets/ca";' > /etc/apt/apt.conf.d/99build-ca; \
    fi \
 && ILGNET_EXTRAS= bash tools/setup.sh --cuda \
 && bash tools/docker-runtime.sh /opt/runtime

FROM debian:12
COPY --from=build /opt/runtime/packages /tmp/runtime-packages
RUN --mount=type=secret,id=ca \
    if [ -f /run/secrets/ca ]; then \
      echo 'Acquire::https::CAInfo "/run/secrets/ca";' > /etc/apt/apt.conf.d/99build-ca; \
    fi \
 && apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(cat /tmp/runtime-packages) \
 && rm -rf /var/lib/apt/lists/* /tmp/runtime-packages /etc/apt/apt.conf.d/99build-ca
COPY --from=build /opt/runtime/tree/ /
# ILGNET_CACHE outside /root: the container runs as the calling user (tools/docker-caffe.sh --user).
ENV PATH=/opt/ilgnet-caffe/.venv/bin:$PATH \
    ILGNET_CACHE=/opt/caffe-cache \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility
WORKDIR /opt/ilgnet-caffe
CMD ["ilgnet", "doctor"]
