#!/usr/bin/env bash
# test.sh — everything CI runs, in one command (`make test`; .ci/run calls it).
#
# On a fresh machine it first installs what the checks need into .cache/
# (git-ignored): the pinned nvcc 12.4 for the PTX freshness check, and
# Debian's libcuda1 (a real driver library; no GPU needed) for the
# "driver but no device" tests. Both are skipped when already there.
#
# Steps: formatting and vet (cgo and CGO_ENABLED=0), the CPU-only build and
# tests (CGO_ENABLED=0), the cgo build and tests with -race on the runtime
# packages (the cgo driver binding included, against no driver, Debian's
# libcuda1 and the fake driver), PTX freshness, the ptxas report (no spills),
# CLI smoke tests, and the real-model check: kiln generate on stories260K
# prints the reference text of ../shared/models/README.md exactly. GPU tests skip here with a message; they run on a GPU
# machine through scripts/gpu-check.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

export CGO_CFLAGS="${CGO_CFLAGS:--O2 -g -Wno-deprecated-declarations}"
start=$(date +%s)
step() { printf '\n=== %s (%ds)\n' "$*" $(( $(date +%s) - start )); }

step "toolchain"
go version

step "gofmt"
unformatted=$(gofmt -l $(git ls-files '*.go'))
if [ -n "$unformatted" ]; then
  echo "gofmt would change these files (run gofmt -w):"
  echo "$unformatted"
  exit 1
fi

step "go vet (cgo) and go vet (CGO_ENABLED=0)"
go vet ./...
CGO_ENABLED=0 go vet ./...

step "CPU-only build and tests (CGO_ENABLED=0)"
CGO_ENABLED=0 go build ./...
CGO_ENABLED=0 go test -count=1 ./...

step "pinned nvcc 12.4 and Debian's libcuda1 (cached under .cache/)"
./scripts/install-cuda.sh
KILN_TEST_LIBCUDA1=$(./scripts/fetch-libcuda1.sh | tail -n 1)
export KILN_TEST_LIBCUDA1

step "cgo tests with -race (runtime packages, driver binding, kernels)"
go test -count=1 -race ./cuda/... ./kernels/... ./runtime/...
step "cgo tests (the rest)"
go test -count=1 $(go list ./... | grep -v -e '/cuda' -e '/kernels' -e '/runtime/')

step "generated assembly is fresh (make asm)"
python3 scripts/gen-attention-amd64.py "${TMPDIR:-/tmp}/kiln-attention_amd64.s"
if ! cmp -s "${TMPDIR:-/tmp}/kiln-attention_amd64.s" runtime/cpu/attention_amd64.s; then
  echo "runtime/cpu/attention_amd64.s differs from what scripts/gen-attention-amd64.py writes: run make asm"
  exit 1
fi
echo "runtime/cpu/attention_amd64.s is up to date"

step "PTX freshness (make ptx-check)"
./scripts/ptx-check.sh

step "ptxas report (no kernel may spill)"
./scripts/kernel-report.sh > /tmp/kiln-kernel-report.txt || { cat /tmp/kiln-kernel-report.txt; exit 1; }
tail -n 3 /tmp/kiln-kernel-report.txt

step "peer scripts' own tests (no torch needed)"
python3 scripts/peers/peers_test.py

step "CLI: kiln info explains the CPU fallback"
out=$(KILN_CUDA_LIBRARY="$KILN_TEST_LIBCUDA1" go run ./cmd/kiln info)
echo "$out"
grep -q "Backend for -device auto: cpu" <<<"$out"

step "real model: kiln generate -model stories260K.gguf -temp 0 -n 200 prints the reference text (CPU)"
shared=${KILN_SHARED:-../shared}
if [ -f "$shared/models/stories260K.gguf" ] && [ -f "$shared/models/README.md" ]; then
  # The reference: the first fenced block after "exactly this text" in the
  # stories260K section of the shared README (no trailing newline).
  want=$(awk '/^## stories260K.gguf/{s=1} s&&/exactly this text/{t=1} t&&/^```/{if(b){exit}; b=1; next} b{print}' "$shared/models/README.md")
  got=$(go run ./cmd/kiln generate -model "$shared/models/stories260K.gguf" -temp 0 -n 200 -device cpu 2>/tmp/kiln-generate.err)
  if [ -z "$want" ] || [ "$got" != "$want" ]; then
    echo "kiln generate did not print the reference text"
    diff <(echo "$want") <(echo "$got") || true
    cat /tmp/kiln-generate.err
    exit 1
  fi
  echo "matches the reference text ($(wc -c <<<"$got") bytes)"
  tail -n 1 /tmp/kiln-generate.err
else
  echo "SKIPPED: $shared/models/stories260K.gguf not found (set KILN_SHARED); the Go tests skip their real-model checks too"
fi

step "demo: kiln generate with the built-in model (CPU)"
go run ./cmd/kiln generate -device cpu -n 40 -seed 1
echo

step "all checks passed"
