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
# AVA1 with delta > 0 drops training images: its data folder is data/ava1-delta<DELTA> (the campaigns read it there).
AVA1_DATA := data/ava1$(if $(filter-out 0,$(DELTA)),-delta$(DELTA))$(SUFFIX)
DATA ?= data/$(if $(findstring ava1-delta1,$(PROFILE)),ava1-delta1,$(if $(findstring ava1,$(PROFILE)),ava1,ava2))$(SUFFIX)
GPU ?=
# DOCKER=1: run caffe inside the ilgnet-caffe image (the CUDA one with GPU=..., else the CPU one), same arguments;
# the host then needs the package only, not Caffe (the package's setup instead of Caffe's).
DOCKER ?=
RUN ?= $(VARIANT)-$(PROFILE)

# Setup runs by itself only when it has not finished in $(VENV) yet or a recipe file changed since: the targets
# depend on the stamps tools/setup.sh writes when done. It builds the mode recorded in $(VENV)/ilgnet-setup.json
# (cpu or cuda, chosen on the first setup); only `make setup-cuda` and `make setup-cpu` change it.
SETUP := ILGNET_VENV=$(abspath $(VENV)) bash tools/setup.sh
SETUP_STAMP := $(VENV)/.setup-stamp
PACKAGE_STAMP := $(VENV)/.ilgnet-deps
RECIPE := tools/setup.sh tools/build-caffe.sh tools/cuda-wheels.sh tools/caffe-patches \
	$(wildcard tools/caffe-patches/*.patch) pyproject.toml
CAFFE_SETUP := $(if $(DOCKER),$(PACKAGE_STAMP),$(SETUP_STAMP))

.PHONY: help setup setup-cuda setup-cpu setup-python test test-fast test-tools lint demo doctor prototxt nets ava \
	ava1-lmdb official-lmdb ava2-lmdb train train-ava1 train-ava2 evaluate weights export bench-lmdb bench-predict \
	bench-ray docker-base docker-build docker-build-cpu apptainer-image clean clean-runs campaign report paper \
	paper-data paper-demo

help:
	@echo "make setup        install apt packages, build Caffe (cached), create $(VENV); the first setup picks the"
	@echo "                  build mode (cuda when nvidia-smi lists a GPU, else cpu), later ones keep it"
	@echo "make setup-cuda   the same with a CUDA build of Caffe, recorded as the mode from now on"
	@echo "make setup-cpu    the same with a CPU-only build, recorded as the mode from now on"
	@echo "                  (other targets run setup only when it never finished or a recipe file changed)"
	@echo "make test         run the whole test suite against the real Caffe (after setup where needed, and test-tools)"
	@echo "make test-tools   install Debian's chromium (the gallery's browser tests), Slurm and munge (the slurm tests)"
	@echo "make test-fast    the tests that need no Caffe, Docker image or real work (a venv with the package only;"
	@echo "                  meant for at most 90 s on an idle 2-core machine; prints its 15 slowest tests)"
	@echo "make lint         ruff over src, tests and tools (line length 120; run by make test and make test-fast)"
	@echo "make demo         the whole pipeline on a generated AVA-format dataset, on CPU"
	@echo "make doctor       print which Caffe is used and check it works"
	@echo "make prototxt     regenerate prototxt/ and solvers/ (ilgnet gen)"
	@echo "make nets         table of the net variants: parameters, input size, CPU forward time"
	@echo "make ava          fetch AVA into AVA_ROOT from a pinned mirror (MIRROR=...), checked, and verify every photo"
	@echo "                  (ilgnet ava fetch; ilgnet ava verify checks a copy from anywhere)"
	@echo "make ava1-lmdb    AVA1 split + LMDBs + mean from AVA_ROOT (or AVA_TXT/AVA_IMAGES) (DELTA=$(DELTA), SEED=$(SEED));"
	@echo "                  ILGNET_REPO=<clone of the original repository> uses its published lists instead"
	@echo "make official-lmdb  AVA's official train/test lists + LMDBs in data/official/ava1 (ilgnet campaign official)"
	@echo "make ava2-lmdb    AVA2 split (top/bottom 10 %) + LMDBs + mean (ILGNET_REPO likewise)"
	@echo "make paper-data   every data folder of the paper's campaign: ava1, ava1-delta1, ava2, each at 256 and 320"
	@echo "make train-ava1   fine-tune ILGNet on data/ava1 (GPU=0 or GPU=all for the GPU)"
	@echo "make train-ava2   fine-tune ILGNet on data/ava2"
	@echo "make train VARIANT=... PROFILE=...   any net variant with any solver profile"
	@echo "make evaluate WEIGHTS=... DATA=...   score a model (a run folder, a snapshot, ilgnet-ava1/2) on every val"
	@echo "                  record (ilgnet test)"
	@echo "make campaign PLAN=table3 GPUS=0,1   train and evaluate every run of a plan (table2/3/4, paper or a"
	@echo "                  .toml file); RAY=auto for a Ray cluster, SLURM=1 for a Slurm job array (SLURM_FLAGS=...:"
	@echo "                  --partition, --time, --slurm-parallel, ...); resumes what was interrupted (ilgnet campaign)"
	@echo "make report PLAN=...   its tables and figures beside the paper's (ilgnet report runs/PLAN)"
	@echo "make paper        (AVA, GPU machine) paper-data, the whole campaign on GPUS (default all), then the report"
	@echo "make paper-demo   the same on a synthetic AVA at toy size, on the CPU: 25 toy runs, then the report"
	@echo "make weights      download and verify bvlc_googlenet and the published ILGNet models (ilgnet weights fetch)"
	@echo "                  (ilgnet weights fetch inception-v3 / inception-v4 for the ilgnet-inc3/4 trunks)"
	@echo "make export MODEL=... [OUT=model.onnx] [PRECISION=fp32|fp16|int8]   a model as one ONNX file (ilgnet export)"
	@echo "make docker-build / docker-build-cpu  the CUDA and CPU images (needs a Docker engine; CA=FILE behind a"
	@echo "                  TLS-inspecting proxy); make docker-base makes their base image debian:12 without Docker Hub"
	@echo "make apptainer-image   the CUDA image as ilgnet-caffe.sif for Slurm clusters with Apptainer (docs/SLURM.md)"
	@echo "make bench-lmdb / bench-predict / bench-ray   throughput benchmarks"
	@echo "make clean        delete what is rebuilt cheaply: work/ (the demo's), Python and pytest caches"
	@echo "                  (keeps runs/, models/, data/ and the cached Caffe builds)"
	@echo "make clean-runs   delete runs/: every training run, with its snapshots and logs"

setup:
	$(SETUP)

setup-cuda:
	$(SETUP) --cuda

setup-cpu:
	$(SETUP) --cpu

setup-python:
	$(SETUP) --python-only

$(SETUP_STAMP): $(RECIPE)
	$(SETUP)

$(PACKAGE_STAMP): tools/setup.sh pyproject.toml
	$(SETUP) --python-only

test: $(SETUP_STAMP) test-tools lint
	$(PY) -m pytest tests

# Debian's Chromium, which the gallery's browser tests open headless (tests/test_gallery.py), and Slurm with munge,
# of which tests/slurm_cluster.py starts a one-node cluster for the `slurm` tests (tests/test_slurm.py).
TEST_TOOLS := chromium:chromium sbatch:slurm-client slurmctld:slurmctld slurmd:slurmd munged:munge
test-tools:
	@missing=$$(for pair in $(TEST_TOOLS); do \
	  PATH=$$PATH:/usr/sbin command -v $${pair%%:*} >/dev/null || echo $${pair#*:}; done); \
	[ -z "$$missing" ] || { \
	  sudo=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$sudo apt-get update -qq && \
	  $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; }

# ruff over the package, the tests and the tools (pyproject.toml's [tool.ruff]: line length 120)
lint: $(PACKAGE_STAMP)
	$(PY) -m ruff check src tests tools

# The fast tier: no Caffe, no real work (the `slow` marker), no install, Docker image or Slurm cluster; it prints its
# 15 slowest tests, so that one growing past a second or two is seen (goal: 90 s on an idle 2-core machine).
FAST_TIER := not caffe and not slow and not install and not docker and not slurm
test-fast: $(PACKAGE_STAMP) lint
	$(PY) -m pytest -m "$(FAST_TIER)" --durations=15 tests

doctor: $(SETUP_STAMP)
	$(ILGNET) doctor

prototxt: $(SETUP_STAMP)
	$(ILGNET) gen

nets: $(SETUP_STAMP)
	$(ILGNET) nets

# MIRROR: one of `ilgnet ava mirrors` (default iqa-pytorch), MIRRORS: a JSON file of more; HF_ENDPOINT: another Hub
MIRROR ?=
MIRRORS ?=
ava: $(PACKAGE_STAMP)
	$(ILGNET) ava fetch --to $(AVA_ROOT)$(if $(MIRROR), --mirror $(MIRROR))$(if $(MIRRORS), --mirrors $(MIRRORS))

ava1-lmdb: $(SETUP_STAMP)
ifeq ($(ILGNET_REPO),)
	$(ILGNET) split ava1 --ava-txt $(AVA_TXT) --delta $(DELTA) --seed $(SEED) --out $(AVA1_DATA)
else
	$(ILGNET) split published $(ILGNET_REPO) --set AVA1 --out $(AVA1_DATA)
endif
	$(ILGNET) lmdb --split $(AVA1_DATA) --images $(AVA_IMAGES) --seed $(SEED) --resize $(RESIZE)

# AVA's official lists (generic_ls_train / generic_test) where the built-in plan official's runs read them
official-lmdb: $(SETUP_STAMP)
	$(ILGNET) split official --ava-txt $(AVA_TXT) --out data/official/ava1$(SUFFIX)
	$(ILGNET) lmdb --split data/official/ava1$(SUFFIX) --images $(AVA_IMAGES) --seed $(SEED) --resize $(RESIZE)

ava2-lmdb: $(SETUP_STAMP)
ifeq ($(ILGNET_REPO),)
	$(ILGNET) split ava2 --ava-txt $(AVA_TXT) --seed $(SEED) --out data/ava2$(SUFFIX)
else
	$(ILGNET) split published $(ILGNET_REPO) --set AVA2 --out data/ava2$(SUFFIX)
endif
	$(ILGNET) lmdb --split data/ava2$(SUFFIX) --images $(AVA_IMAGES) --seed $(SEED) --resize $(RESIZE)

train: $(CAFFE_SETUP)
	$(ILGNET) train --variant $(VARIANT) --profile $(PROFILE) --data $(DATA) --name $(RUN) $(if $(GPU),--gpu $(GPU),--cpu) $(if $(DOCKER),--docker)

train-ava1: $(CAFFE_SETUP)
	$(ILGNET) train --variant ilgnet --profile ava1-delta$(DELTA) --data $(AVA1_DATA) --name ilgnet-ava1 $(if $(GPU),--gpu $(GPU),--cpu) $(if $(DOCKER),--docker)

train-ava2: $(CAFFE_SETUP)
	$(ILGNET) train --variant ilgnet --profile ava2 --data data/ava2 --name ilgnet-ava2 $(if $(GPU),--gpu $(GPU),--cpu) $(if $(DOCKER),--docker)

# Refused while the Makefile is read, before setup or anything else runs.
ifneq ($(filter evaluate,$(MAKECMDGOALS)),)
ifeq ($(WEIGHTS),)
$(error make evaluate needs WEIGHTS=<a run folder, a .caffemodel, or ilgnet-ava1 / ilgnet-ava2>)
endif
endif
evaluate: $(CAFFE_SETUP)
	$(ILGNET) test --weights $(WEIGHTS) $(if $(filter command line,$(origin VARIANT)),--variant $(VARIANT)) $(if $(GPU),--gpu $(GPU)) $(if $(DOCKER),--docker) --data $(DATA) --json runs/$(RUN)/test.json --markdown runs/$(RUN)/test.md

weights: $(SETUP_STAMP)
	$(ILGNET) weights fetch bvlc_googlenet ilgnet-ava1 ilgnet-ava2

# MODEL: a run folder, ilgnet-ava1/2 or a .caffemodel (then VARIANT=... and MEAN=... too); OUT: the ONNX file
export: $(PACKAGE_STAMP)
	$(if $(MODEL),,$(error make export needs MODEL=<a run folder, ilgnet-ava1 / ilgnet-ava2, or a .caffemodel>))
	$(ILGNET) export $(MODEL) --out $(or $(OUT),$(notdir $(basename $(MODEL))).onnx) --precision $(or $(PRECISION),fp32) $(if $(filter command line,$(origin VARIANT)),--variant $(VARIANT)) $(if $(MEAN),--mean $(MEAN))

demo: $(SETUP_STAMP)
	$(ILGNET) demo

# The paper's campaign (docs/PAPER.md). PLAN: table2, table3, table4, paper or a plan file; GPUS: ids or all; RAY: a
# Ray cluster's address (auto, HOST:PORT) instead of this machine's GPUs.
PLAN ?= paper
GPUS ?=
RAY ?=
PLAN_NAME = $(basename $(notdir $(PLAN)))
PAPER_DATA := ava1 ava1-delta1 ava2 ava1-320 ava1-delta1-320 ava2-320

campaign: $(SETUP_STAMP)
	$(ILGNET) campaign $(PLAN) $(if $(RAY),--ray $(RAY),$(if $(SLURM),--slurm $(SLURM_FLAGS),$(if $(GPUS),--gpus $(GPUS),--cpu)))

report: $(SETUP_STAMP)
	$(ILGNET) report runs/$(PLAN_NAME) --out reports/$(PLAN_NAME) $(if $(GPU),--gpu $(GPU))

paper-data: $(SETUP_STAMP)
	@for folder in $(PAPER_DATA); do \
	  [ -f data/$$folder/lmdb.json ] && continue; \
	  set=$${folder%-320}; resize=$$([ "$$folder" = "$$set" ] && echo 256 || echo 320); \
	  $(MAKE) --no-print-directory $${set%-delta1}-lmdb RESIZE=$$resize DELTA=$$([ "$$set" = ava1-delta1 ] && echo 1 || echo 0) || exit 1; \
	done

paper: paper-data
	$(ILGNET) campaign paper $(if $(RAY),--ray $(RAY),--gpus $(or $(GPUS),all))
	$(ILGNET) report runs/paper --out reports/paper --plan paper $(if $(GPU),--gpu $(GPU))

paper-demo: $(SETUP_STAMP)
	$(ILGNET) campaign plans/paper-demo.toml --cpu --jobs 2
	$(ILGNET) report work/paper-demo/runs --out work/paper-demo/report --plan plans/paper-demo.toml

bench-lmdb: $(SETUP_STAMP)
	$(PY) tools/bench_lmdb.py

bench-predict: $(SETUP_STAMP)
	$(PY) tools/bench_predict.py

bench-ray: $(SETUP_STAMP)
	$(PY) tools/bench_ray.py

# The images (docs/DOCKER.md). CA=FILE lends pip and apt a CA bundle during the build only, as the build secret
# `ca` (behind a TLS-inspecting proxy: CA=/etc/ssl/certs/ca-certificates.crt). DOCKER_BUILD_FLAGS go to
# `docker build` as they are (--no-cache, --progress=plain, --build-arg CUDA_ARCHS="86 89 90", ...). The client is
# one that builds with BuildKit (tools/docker-client.sh: $ILGNET_DOCKER, else docker or /usr/bin/docker).
comma := ,
CA ?=
DOCKER_BUILD_FLAGS ?=
CA_SECRET = $(if $(CA),$(if $(wildcard $(CA)),--secret id=ca$(comma)src=$(abspath $(CA)),$(error CA=$(CA): no such file)))
DOCKER_BUILD = client=$$(bash tools/docker-client.sh) && DOCKER_BUILDKIT=1 "$$client" $(strip build $(CA_SECRET) $(DOCKER_BUILD_FLAGS))

docker-base:
	bash tools/docker-base.sh

docker-build:
	bash tools/docker-base.sh
	$(DOCKER_BUILD) -t ilgnet-caffe:cuda .

docker-build-cpu:
	bash tools/docker-base.sh
	$(DOCKER_BUILD) --build-arg CAFFE=cpu -t ilgnet-caffe:cpu .

# The CUDA image (make docker-build) as one Apptainer file, for clusters without Docker: `ilgnet campaign --slurm
# --apptainer ilgnet-caffe.sif`. Run where both Docker and Apptainer are; copy the .sif to the cluster's storage.
APPTAINER_IMAGE ?= ilgnet-caffe.sif
apptainer-image:
	@command -v apptainer >/dev/null || { echo "make apptainer-image: no apptainer here; build the .sif on a" \
	  "machine that has Docker and Apptainer (docs/SLURM.md)" >&2; exit 1; }
	apptainer build $(APPTAINER_IMAGE) docker-daemon://ilgnet-caffe:cuda

clean:
	rm -rf work .pytest_cache
	find src tests tools -name __pycache__ -type d -prune -exec rm -rf {} +

clean-runs:
	rm -rf runs

# ---- GPU bundle and check, Docker smoke test (docs/GPU.md, docs/DOCKER.md) ----
.PHONY: gpu-bundle gpu-check docker-smoke

gpu-bundle:
	bash tools/gpu-bundle.sh

gpu-check:
	bash tools/gpu-check.sh .bundle/ilgnet-gpu.tar.xz

docker-smoke:
	bash tools/docker-smoke.sh
