# kiln's make targets. Scripts under scripts/ do the work; see CONTRIBUTING.md.
SHELL := /bin/bash
export CGO_CFLAGS ?= -O2 -g -Wno-deprecated-declarations

.PHONY: test ptx ptx-check kernel-report bench gpu-bundle cuda libcuda1

## test: everything CI runs (installs the pinned nvcc and Debian's libcuda1 into .cache/ first)
test:
	./scripts/test.sh

## ptx: regenerate the committed PTX under kernels/ptx/ with the pinned nvcc 12.4
ptx:
	./scripts/ptx.sh kernels/ptx

## ptx-check: regenerate PTX into a temporary folder and fail on any difference
ptx-check:
	./scripts/ptx-check.sh

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
