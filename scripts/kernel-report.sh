#!/usr/bin/env bash
# kernel-report.sh — what ptxas makes of every committed kernel: registers,
# spill stores and loads, static shared memory and stack frame, per kernel,
# for three builds:
#
#   sm_80  <- compute_80 PTX   (A100: what the driver JIT produces there)
#   sm_90a <- compute_80 PTX   (H100/H200 running the baseline)
#   sm_90a <- sm_90a PTX       (H100/H200 running a Hopper variant)
#
# One table per kernel family (PTX file), one row per kernel and build.
# Exits non-zero when any kernel (or a function it calls) spills registers.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=cuda-env.sh
source "$ROOT/scripts/cuda-env.sh"
PTX_DIR=$ROOT/kernels/ptx

# report PTXFILE ARCH LABEL: ptxas -v output reduced to one line per entry:
#   kernel label registers spill_stores spill_loads smem_bytes stack_bytes
report() {
	"$PTXAS" -arch="$2" -v "$1" -o /dev/null 2>&1 | awk -v label="$3" '
		function flush() {
			if (entry != "") print entry, label, regs, st, ld, smem, stack
			entry = ""
		}
		/Compiling entry function/ {
			flush()
			match($0, /\047[^\047]+\047/); entry = substr($0, RSTART + 1, RLENGTH - 2)
			regs = 0; st = 0; ld = 0; smem = 0; stack = 0; props = ""
			next
		}
		/Function properties for/ { props = $NF; next }
		/bytes stack frame/ {
			# The entry itself, or a function it calls (its spills count too).
			if (props == entry) stack = $1
			st += $5; ld += $9
			next
		}
		/Used [0-9]+ registers/ {
			for (i = 1; i <= NF; i++) {
				if ($(i + 1) ~ /^registers/) regs = $i
				if ($(i + 1) == "bytes" && $(i + 2) ~ /^smem/) smem = $i
			}
			next
		}
		/error|fatal/ { print "ptxas: " $0 > "/dev/stderr"; failed = 1 }
		END { flush(); exit failed }
	'
}

spilled=0
shopt -s nullglob
files=("$PTX_DIR"/compute_80/*.ptx)
if [ ${#files[@]} -eq 0 ]; then
	echo "kernel-report: no PTX under kernels/ptx/compute_80; run 'make ptx'" >&2
	exit 1
fi
# ptxas runs for every family in parallel (one per core); the report prints in order.
JOBS=${KILN_JOBS:-$(nproc)}
ROWS=$(mktemp -d "${TMPDIR:-/tmp}/kiln-report.XXXXXX")
trap 'rm -rf "$ROWS"' EXIT
pids=()
for base in "${files[@]}"; do
	family=$(basename "$base" .ptx)
	while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do wait -n || true; done
	(
		report "$base" sm_80 "sm_80<-compute_80"
		report "$base" sm_90a "sm_90a<-compute_80"
		if [ -f "$PTX_DIR/sm_90a/$family.ptx" ]; then
			report "$PTX_DIR/sm_90a/$family.ptx" sm_90a "sm_90a<-sm_90a"
		fi
	) >"$ROWS/$family" &
	pids+=($!)
done
for pid in "${pids[@]}"; do
	wait "$pid" || { echo "kernel-report: ptxas failed (see above)" >&2; exit 1; }
done
for base in "${files[@]}"; do
	family=$(basename "$base" .ptx)
	rows=$(cat "$ROWS/$family")
	echo "== $family ($(basename "$base")$([ -f "$PTX_DIR/sm_90a/$family.ptx" ] && echo ", sm_90a/$family.ptx"))"
	printf '%-30s %-20s %5s %11s %11s %10s %11s\n' kernel build regs "spill st B" "spill ld B" "smem B" "stack B"
	# Group the rows of one kernel together, builds in the order above.
	echo "$rows" | awk '{ print NR, $0 }' | sort -k2,2 -k1,1n -s | cut -d' ' -f2- |
		while read -r kernel label regs st ld smem stack; do
			flag=""
			if [ "$st" != 0 ] || [ "$ld" != 0 ]; then flag="  <- SPILLS"; fi
			printf '%-30s %-20s %5s %11s %11s %10s %11s%s\n' "$kernel" "$label" "$regs" "$st" "$ld" "$smem" "$stack" "$flag"
		done
	if echo "$rows" | awk '$4 != 0 || $5 != 0 { found = 1 } END { exit !found }'; then spilled=1; fi
	echo
done

if [ "$spilled" = 1 ]; then
	echo "kernel-report: FAIL: some kernels spill registers (marked above); a spill is a bug in kiln" >&2
	exit 1
fi
echo "kernel-report: no kernel spills"
