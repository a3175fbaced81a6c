#!/usr/bin/env bash
# ptx.sh OUTDIR — compile every kernels/*.cu to PTX with the pinned nvcc 12.4:
#
#   OUTDIR/compute_80/<name>.ptx   every .cu (the baseline: Ampere and newer,
#                                  through the driver's JIT)
#   OUTDIR/sm_90a/<name>.ptx       only the .cu files that carry the marker line
#                                  "// kiln:targets sm_90a" (Hopper variants)
#
# Flags: -ptx, -std=c++17, and the target. Deliberately nothing else:
#   - no -lineinfo and no -G, so the PTX holds no source paths and is the same
#     from any checkout directory;
#   - no --use_fast_math: kernels rely on IEEE division and sqrt and on the
#     exact expf/erff/tanhf (nvcc's defaults);
#   - no -O flag: nvcc's -O is for host code; device code is optimised by default.
# The output is byte-for-byte deterministic; scripts/ptx-check.sh relies on it.
#
# OUTDIR's compute_80/ and sm_90a/ are replaced only when every file compiled.
set -euo pipefail

if [ $# -ne 1 ]; then
	echo "usage: $0 OUTDIR   (make ptx runs: $0 kernels/ptx)" >&2
	exit 2
fi
OUT=$1
ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=cuda-env.sh
source "$ROOT/scripts/cuda-env.sh"

MARKER='^// kiln:targets sm_90a$'
FLAGS=(-ptx -std=c++17)

mkdir -p "$OUT"
STAGE=$(mktemp -d "${TMPDIR:-/tmp}/kiln-ptx.XXXXXX")
trap 'rm -rf "$STAGE"' EXIT
mkdir -p "$STAGE/compute_80" "$STAGE/sm_90a"

shopt -s nullglob
sources=("$ROOT"/kernels/*.cu)
if [ ${#sources[@]} -eq 0 ]; then
	echo "ptx: no kernels/*.cu found" >&2
	exit 1
fi

# Compile from inside kernels/ with relative names, so that nothing about
# where the checkout lives can reach the output.
# One nvcc per core at a time (each family is independent); any failure fails the run.
JOBS=${KILN_JOBS:-$(nproc)}
compile() { # name arch outdir
	echo "ptx: $1.cu -> $3/$1.ptx"
	"$NVCC" "${FLAGS[@]}" -arch="$2" -o "$STAGE/$3/$1.ptx" "$1.cu"
}
cd "$ROOT/kernels"
pids=()
for src in "${sources[@]}"; do
	name=$(basename "$src" .cu)
	jobs_for=("$name compute_80 compute_80")
	if grep -q "$MARKER" "$name.cu"; then
		jobs_for+=("$name sm_90a sm_90a")
	fi
	for j in "${jobs_for[@]}"; do
		while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do wait -n || true; done
		# shellcheck disable=SC2086
		compile $j &
		pids+=($!)
	done
done
failed=0
for pid in "${pids[@]}"; do wait "$pid" || failed=1; done
cd - >/dev/null
if [ "$failed" = 1 ]; then
	echo "ptx: nvcc failed (see above)" >&2
	exit 1
fi

rm -rf "$OUT/compute_80" "$OUT/sm_90a"
mv "$STAGE/compute_80" "$STAGE/sm_90a" "$OUT/"
echo "ptx: wrote $(find "$OUT/compute_80" "$OUT/sm_90a" -name '*.ptx' | wc -l) files under $OUT"
