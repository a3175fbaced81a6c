# kiln's make targets. Scripts under scripts/ do the work; see CONTRIBUTING.md.
SHELL := /bin/bash
export CGO_CFLAGS ?= -O2 -g -Wno-deprecated-declarations

.PHONY: test ptx ptx-check asm kernel-report bench gpu-bundle cuda libcuda1 builtin-model

## test: everything CI runs (installs the pinned nvcc and Debian's libcuda1 into .cache/ first)
test:
	./scripts/test.sh

## ptx: regenerate the committed PTX under kernels/ptx/ with the pinned nvcc 12.4
ptx:
	./scripts/ptx.sh kernels/ptx

## ptx-check: regenerate PTX into a temporary folder and fail on any difference
ptx-check:
	./scripts/ptx-check.sh

## asm: regenerate the generated CPU assembly (runtime/cpu/attention_amd64.s)
asm:
	python3 scripts/gen-attention-amd64.py

## kernel-report: ptxas registers, spills and shared memory per kernel (sm_80, sm_90a)
kernel-report:
	./scripts/kernel-report.sh

## bench: run the benchmark cases on the best available device
bench:
	go run ./cmd/kiln bench

## gpu-bundle: build the GPU suite into .gpu/ for scripts/gpu-check.sh on a GPU machine
gpu-bundle:
	./scripts/gpu-bundle.sh

## cuda: install the pinned nvcc 12.4 into .cache/cuda-12.4
cuda:
	./scripts/install-cuda.sh

## libcuda1: fetch Debian's driver library (no GPU needed) into .cache/libcuda1
libcuda1:
	./scripts/fetch-libcuda1.sh

## builtin-model: retrain the built-in model (models/builtin/kiln-austen.gguf and its golden values) on the CPU
##   one-time setup: python3 -m venv /tmp/kiln-train-builtin
##                   /tmp/kiln-train-builtin/bin/pip install -r scripts/train-builtin/requirements.txt
##   TRAIN_PYTHON overrides the interpreter; TRAIN_ARGS passes flags (e.g. --deb FILE, see train.py -h)
TRAIN_PYTHON ?= /tmp/kiln-train-builtin/bin/python
builtin-model:
	@if [ ! -x "$(TRAIN_PYTHON)" ]; then \
		echo "builtin-model: no $(TRAIN_PYTHON); set up the venv first:" >&2; \
		echo "  python3 -m venv /tmp/kiln-train-builtin && /tmp/kiln-train-builtin/bin/pip install -r scripts/train-builtin/requirements.txt" >&2; \
		exit 2; \
	fi
	$(TRAIN_PYTHON) scripts/train-builtin/train.py $(TRAIN_ARGS)
