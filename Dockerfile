# ilgnet-caffe with BVLC Caffe on Debian 12, built by tools/setup.sh (the script CI runs): the CUDA image
# (default; compute capabilities 8.0 and 9.0 with compute_90 PTX: A100, H100/H200 and newer, cuDNN 9 and NCCL)
# or, with --build-arg CAFFE=cpu, the CPU image (OpenBLAS).
#
#   make docker-build                  # DOCKER_BUILDKIT=1 docker build -t ilgnet-caffe:cuda .
#   make docker-build-cpu              # DOCKER_BUILDKIT=1 docker build --build-arg CAFFE=cpu -t ilgnet-caffe:cpu .
#   make docker-build CA=/etc/ssl/certs/ca-certificates.crt    # adds --secret id=ca,src=FILE
#   tools/docker-caffe.sh ilgnet train --variant ilgnet --profile ava2 --data data/ava2 --gpu 0
#
# Build arguments:
#   CAFFE=cuda|cpu       which Caffe (default: cuda)
#   CUDA_ARCHS="80 90"   the compute capabilities of the CUDA build (the last one also as PTX)
#   CUDNN=0              a CUDA build without cuDNN (Caffe's own convolutions)
# Build secret (optional): `ca`, a CA bundle that pip and apt trust during the build only (a TLS-inspecting
# proxy's); tools/docker-step.sh mounts it per RUN, so no layer holds it, and names it in one line when a
# download fails on certificate verification. BuildKit is needed for the secret and bind mounts.
#
# The layers follow what shapes them, so that a change rebuilds only what depends on it:
#   system        Debian's build packages and Caffe's Debian source package (tools/setup.sh --deps)
#   requirements  the package's dependencies and build requirements, read from pyproject.toml, and apart the
#                 one of them Caffe is compiled against (numpy); copied into `build` by content, so an edit of
#                 pyproject.toml that leaves them alone rebuilds nothing
#   build         a venv with numpy, the CUDA wheels and Caffe built from its recipe (tools/setup.sh,
#                 build-caffe.sh, caffe-patches/, cuda-wheels.sh); then, in a layer of their own, the other
#                 requirements (numpy held where it is: another dependency added does not recompile Caffe);
#                 tools/docker-runtime.sh gathers what the final image needs from it
#   final image   Debian's runtime packages of Caffe's libraries, the gathered tree, then the ilgnet package
#                 (pyproject.toml, README.md, tools/, src/) installed editable in a layer of its own: an edit
#                 under src/ or of README.md rebuilds that layer only (seconds; docs/DOCKER.md has the figures)
# At run time the NVIDIA container toolkit (`docker run --gpus`) supplies the driver library.
ARG CAFFE=cuda

FROM debian:12 AS system
ENV ILGNET_CACHE=/opt/caffe-cache
WORKDIR /opt/ilgnet-caffe
COPY tools/setup.sh tools/docker-step.sh tools/
RUN --mount=type=secret,id=ca bash tools/docker-step.sh bash tools/setup.sh --deps

FROM system AS requirements
COPY pyproject.toml ./
RUN python3.11 -c 'import re, tomllib; p = tomllib.load(open("pyproject.toml", "rb")); \
      wanted = [*p["project"]["dependencies"], *p["build-system"]["requires"]]; \
      open("/opt/requirements.txt", "w").write("".join(f"{r}\n" for r in wanted)); \
      open("/opt/caffe-requirements.txt", "w").write("".join(f"{r}\n" for r in wanted if re.match(r"numpy\b", r)))'

FROM system AS build
ARG CAFFE
ARG CUDA_ARCHS="80 90"
ARG CUDNN=1
ENV ILGNET_CUDA_ARCHS=${CUDA_ARCHS} \
    ILGNET_CUDNN=${CUDNN} \
    ILGNET_REQUIREMENTS=/opt/caffe-requirements.txt
COPY --from=requirements /opt/caffe-requirements.txt /opt/caffe-requirements.txt
COPY tools/build-caffe.sh tools/cuda-wheels.sh tools/
COPY tools/caffe-patches tools/caffe-patches
# No GPU is visible while building, so the mode is explicit (setup.sh's auto mode would choose CPU).
RUN --mount=type=secret,id=ca bash tools/docker-step.sh bash tools/setup.sh --${CAFFE}
COPY --from=requirements /opt/requirements.txt /opt/requirements.txt
COPY tools/docker-runtime.sh tools/
RUN --mount=type=secret,id=ca bash tools/docker-step.sh bash -c \
      '.venv/bin/pip freeze | grep -i "^numpy==" > /tmp/caffe-numpy.txt \
       && .venv/bin/pip install -q -r /opt/requirements.txt -c /tmp/caffe-numpy.txt' \
 && bash tools/docker-runtime.sh /opt/runtime

FROM debian:12
COPY --from=build /opt/runtime/packages /tmp/runtime-packages
RUN --mount=type=secret,id=ca --mount=type=bind,source=tools/docker-step.sh,target=/tmp/docker-step.sh \
    bash /tmp/docker-step.sh bash -c 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
      apt-get install -y -qq --no-install-recommends $(cat /tmp/runtime-packages)' \
 && rm -rf /var/lib/apt/lists/* /tmp/runtime-packages
COPY --from=build /opt/runtime/tree/ /
# ILGNET_CACHE outside /root: the container runs as the calling user (tools/docker-caffe.sh --user).
ENV PATH=/opt/ilgnet-caffe/.venv/bin:$PATH \
    ILGNET_CACHE=/opt/caffe-cache \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility
WORKDIR /opt/ilgnet-caffe
# The package last: its dependencies and build requirements are in the venv already, so this needs no network.
COPY pyproject.toml README.md ./
COPY tools tools
COPY src src
RUN pip install -q --no-deps --no-build-isolation -e . && ilgnet doctor
CMD ["ilgnet", "doctor"]
