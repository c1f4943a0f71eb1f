# ilgnet-caffe: every target mirrors an `ilgnet` subcommand. `make help` lists them.
SHELL := /bin/bash
VENV ?= .venv
ILGNET := $(VENV)/bin/ilgnet
PY := $(VENV)/bin/python

# AVA inputs: AVA_ROOT holds AVA.txt and the photos (images/<id>.jpg), as AVA's own download lays them out.
AVA_ROOT ?= $(HOME)/data/AVA
AVA_TXT ?= $(AVA_ROOT)/AVA.txt
AVA_IMAGES ?= $(AVA_ROOT)/images
SEED ?= 1
DELTA ?= 0
# A clone of the original ILGNet repository: when set, ava1-lmdb / ava2-lmdb use its published lists.
ILGNET_REPO ?=
VARIANT ?= ilgnet
PROFILE ?= ava2
# The Inception-v3/v4 variants crop 299 pixels: their LMDBs are built at 320 and kept apart (data/ava1-320).
RESIZE ?= $(if $(filter ilgnet-inc3 ilgnet-inc4,$(VARIANT)),320,256)
SUFFIX := $(if $(filter-out 256,$(RESIZE)),-$(RESIZE))
DATA ?= data/$(if $(findstring ava1,$(PROFILE)),ava1,ava2)$(SUFFIX)
GPU ?=
# DOCKER=1: run caffe inside the ilgnet-caffe image (the CUDA one with GPU=..., else the CPU one), same arguments.
DOCKER ?=
RUN ?= $(VARIANT)-$(PROFILE)

.PHONY: help setup setup-cuda setup-python test test-fast test-tools demo doctor prototxt nets ava1-lmdb ava2-lmdb train train-ava1 train-ava2 \
	evaluate weights export bench-lmdb bench-predict bench-ray docker-build docker-build-cpu clean

help:
	@echo "make setup        install apt packages, build Caffe (cached), create $(VENV)"
	@echo "make setup-cuda   the same with a CUDA build of Caffe"
	@echo "make test         run the whole test suite against the real Caffe (runs setup and test-tools first)"
	@echo "make test-tools   install Debian's chromium for the gallery's browser tests"
	@echo "make test-fast    run the tests that need no Caffe (a venv with the package only; about a minute)"
	@echo "make demo         the whole pipeline on a generated AVA-format dataset, on CPU"
	@echo "make doctor       print which Caffe is used and check it works"
	@echo "make prototxt     regenerate prototxt/ and solvers/ (ilgnet gen)"
	@echo "make nets         table of the net variants: parameters, input size, CPU forward time"
	@echo "make ava1-lmdb    AVA1 split + LMDBs + mean from AVA_ROOT (or AVA_TXT/AVA_IMAGES) (DELTA=$(DELTA), SEED=$(SEED));"
	@echo "                  ILGNET_REPO=<clone of the original repository> uses its published lists instead"
	@echo "make ava2-lmdb    AVA2 split (top/bottom 10 %) + LMDBs + mean (ILGNET_REPO likewise)"
	@echo "make train-ava1   fine-tune ILGNet on data/ava1 (GPU=0 or GPU=all for the GPU)"
	@echo "make train-ava2   fine-tune ILGNet on data/ava2"
	@echo "make train VARIANT=... PROFILE=...   any net variant with any solver profile"
	@echo "make evaluate WEIGHTS=... DATA=...   score a model (a run folder, a snapshot, ilgnet-ava1/2) on every val"
	@echo "                  record (ilgnet test)"
	@echo "make weights      download and verify bvlc_googlenet and the published ILGNet models (ilgnet weights fetch)"
	@echo "                  (ilgnet weights fetch inception-v3 / inception-v4 for the ilgnet-inc3/4 trunks)"
	@echo "make export MODEL=... [OUT=model.onnx] [PRECISION=fp32|fp16|int8]   a model as one ONNX file (ilgnet export)"
	@echo "make docker-build / docker-build-cpu  the CUDA and CPU images (needs a Docker engine)"
	@echo "make bench-lmdb / bench-predict / bench-ray   throughput benchmarks"

setup:
	bash tools/setup.sh

setup-cuda:
	bash tools/setup.sh --cuda

setup-python:
	bash tools/setup.sh --python-only

test: setup test-tools
	$(PY) -m pytest tests

# Debian's Chromium, which the gallery's browser tests open headless (tests/test_gallery.py).
test-tools:
	@command -v chromium >/dev/null || { \
	  sudo=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$sudo apt-get update -qq && \
	  $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium; }

test-fast: setup-python
	$(PY) -m pytest -m "not caffe and not install" tests

doctor: setup
	$(ILGNET) doctor

prototxt: setup
	$(ILGNET) gen

nets: setup
	$(ILGNET) nets

ava1-lmdb: setup
ifeq ($(ILGNET_REPO),)
	$(ILGNET) split ava1 --ava-txt $(AVA_TXT) --delta $(DELTA) --seed $(SEED) --out data/ava1$(SUFFIX)
else
	$(ILGNET) split published $(ILGNET_REPO) --set AVA1 --out data/ava1$(SUFFIX)
endif
	$(ILGNET) lmdb --split data/ava1$(SUFFIX) --images $(AVA_IMAGES) --seed $(SEED) --resize $(RESIZE)

ava2-lmdb: setup
ifeq ($(ILGNET_REPO),)
	$(ILGNET) split ava2 --ava-txt $(AVA_TXT) --seed $(SEED) --out data/ava2$(SUFFIX)
else
	$(ILGNET) split published $(ILGNET_REPO) --set AVA2 --out data/ava2$(SUFFIX)
endif
	$(ILGNET) lmdb --split data/ava2$(SUFFIX) --images $(AVA_IMAGES) --seed $(SEED) --resize $(RESIZE)

train: setup
	$(ILGNET) train --variant $(VARIANT) --profile $(PROFILE) --data $(DATA) --name $(RUN) $(if $(GPU),--gpu $(GPU),--cpu) $(if $(DOCKER),--docker)

train-ava1: setup
	$(ILGNET) train --variant ilgnet --profile ava1-delta$(DELTA) --data data/ava1 --name ilgnet-ava1 $(if $(GPU),--gpu $(GPU),--cpu) $(if $(DOCKER),--docker)

train-ava2: setup
	$(ILGNET) train --variant ilgnet --profile ava2 --data data/ava2 --name ilgnet-ava2 $(if $(GPU),--gpu $(GPU),--cpu) $(if $(DOCKER),--docker)

evaluate: setup
	$(if $(WEIGHTS),,$(error make evaluate needs WEIGHTS=<a run folder, a .caffemodel, or ilgnet-ava1 / ilgnet-ava2>))
	$(ILGNET) test --weights $(WEIGHTS) $(if $(filter command line,$(origin VARIANT)),--variant $(VARIANT)) $(if $(GPU),--gpu $(GPU)) $(if $(DOCKER),--docker) --data $(DATA) --json runs/$(RUN)/test.json --markdown runs/$(RUN)/test.md

weights: setup
	$(ILGNET) weights fetch bvlc_googlenet ilgnet-ava1 ilgnet-ava2

# MODEL: a run folder, ilgnet-ava1/2 or a .caffemodel (then VARIANT=... and MEAN=... too); OUT: the ONNX file
export: setup-python
	$(if $(MODEL),,$(error make export needs MODEL=<a run folder, ilgnet-ava1 / ilgnet-ava2, or a .caffemodel>))
	$(ILGNET) export $(MODEL) --out $(or $(OUT),$(notdir $(basename $(MODEL))).onnx) --precision $(or $(PRECISION),fp32) $(if $(filter command line,$(origin VARIANT)),--variant $(VARIANT)) $(if $(MEAN),--mean $(MEAN))

demo: setup
	$(ILGNET) demo

bench-lmdb: setup
	$(PY) tools/bench_lmdb.py

bench-predict: setup
	$(PY) tools/bench_predict.py

bench-ray: setup
	$(PY) tools/bench_ray.py

# CA=/etc/ssl/certs/ca-certificates.crt lends pip and apt a CA bundle during the build only (behind a TLS proxy).
docker-build:
	DOCKER_BUILDKIT=1 docker build $(if $(CA),--secret id=ca,src=$(CA)) -t ilgnet-caffe:cuda .

docker-build-cpu:
	DOCKER_BUILDKIT=1 docker build $(if $(CA),--secret id=ca,src=$(CA)) -f Dockerfile.cpu -t ilgnet-caffe:cpu .

clean:
	rm -rf runs work

# ---- GPU bundle and check, Docker smoke test (docs/GPU.md, docs/DOCKER.md) ----
.PHONY: gpu-bundle gpu-check docker-smoke

gpu-bundle:
	bash tools/gpu-bundle.sh

gpu-check:
	bash tools/gpu-check.sh .bundle/ilgnet-gpu.tar.xz

docker-smoke:
	bash tools/docker-smoke.sh
