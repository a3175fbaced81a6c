#!/usr/bin/env bash
# gpu-check.sh OUTDIR — kiln's whole GPU suite, run on a GPU machine from the
# repository root with the bundle that scripts/gpu-bundle.sh built in .gpu/.
# docs/GPU-SUITE.md says how to read what it writes.
#
#   1. environment: glibc, nvidia-smi (device, driver, clocks), the bundle's
#      checksums, libcuda.so.1 (KILN_CUDA_LIBRARY exported when it is off the
#      default search path), NCCL from the Python packages, kiln info;
#   2. every test binary with -test.v (the packages in BOTH_KERNEL_SETS once with
#      KILN_KERNELS=simple and once with KILN_KERNELS=auto), then a
#      compute-sanitizer memcheck pass over the conformance binary;
#   3. kiln bench -json and the PyTorch peer on the same shapes, joined into a
#      table of speed ratios (scripts/peers/join.py);
#   4. a summary, printed last.
#
# OUTDIR receives at most 5 files: summary.txt, table.md, bench-kiln.json,
# bench-torch.json and logs.tgz (every log). Exit status: 0 when every test
# passed and the sanitizer found nothing; 1 when a test failed, timed out or did
# not run, the sanitizer found errors, kiln bench or one of its cases failed,
# libcuda.so.1 was not found, or the bundle is incomplete or damaged; 2 for a
# usage error or a missing bundle. The PyTorch peer's failures are reported,
# not failed on.
#
# Each step runs under `timeout`, inside one budget for the whole run; an
# optional step (sanitizer, bench, peer) that no longer fits is skipped, and the
# summary says so. Environment knobs (defaults in brackets):
#   KILN_GPU_BUDGET_S [420]    seconds for the whole run
#   KILN_GPU_STEPS [tests,sanitizer,bench,peer]  which steps to run (comma list)
#   KILN_GPU_BUNDLE [.gpu]     the bundle folder
#   KILN_SANITIZER_RUN [^TestOps$]  -test.run filter of the sanitizer pass (the op
#                              conformance table; always with -test.short)
#   KILN_BENCH_ARGS []         more arguments for kiln bench (e.g. "-filter ^op/")
#   KILN_PEER_ARGS []          more arguments for ops_torch.py (e.g. "--filter ^op/");
#                              they come last, so "--device cpu --quick" smoke-tests it
set -uo pipefail

# --- configuration -----------------------------------------------------------
# Packages whose tests run under both kernel sets (simple, then auto).
BOTH_KERNEL_SETS="runtime/conformance runtime/gpu"
# The package whose binary the sanitizer runs.
SANITIZER_PACKAGE="runtime/conformance"
SANITIZER_KERNELS="auto"
# Per-step caps and the least time worth starting a step with (seconds).
TEST_CAP_S=150 TEST_MIN_S=20
SANITIZER_CAP_S=120 SANITIZER_MIN_S=30
BENCH_CAP_S=120 BENCH_MIN_S=30
PEER_CAP_S=120 PEER_MIN_S=30
JOIN_CAP_S=30 JOIN_MIN_S=5
INFO_CAP_S=30
# Kept back for the join, the log tarball and the summary.
RESERVE_S=10

BUDGET_S=${KILN_GPU_BUDGET_S:-420}
STEPS=",${KILN_GPU_STEPS:-tests,sanitizer,bench,peer},"
BUNDLE=${KILN_GPU_BUNDLE:-.gpu}
SANITIZER_RUN=${KILN_SANITIZER_RUN:-^TestOps\$}
if ! [[ $BUDGET_S =~ ^[0-9]+$ ]]; then
	echo "gpu-check: KILN_GPU_BUDGET_S=$BUDGET_S: expected whole seconds" >&2
	exit 2
fi
read -r -a BENCH_ARGS <<<"${KILN_BENCH_ARGS:-}"
read -r -a PEER_ARGS <<<"${KILN_PEER_ARGS:-}"

usage() {
	echo "usage: scripts/gpu-check.sh OUTDIR   (run from the repository root, bundle in $BUNDLE/)" >&2
	exit 2
}
[ $# -eq 1 ] || usage
case $1 in -h | --help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;; esac
for s in ${STEPS//,/ }; do
	case $s in tests | sanitizer | bench | peer) ;; *) echo "gpu-check: unknown step '$s' in KILN_GPU_STEPS (tests,sanitizer,bench,peer)" >&2; exit 2 ;; esac
done
OUT=$1
mkdir -p "$OUT" || { echo "gpu-check: cannot create OUTDIR $OUT" >&2; exit 2; }
OUT=$(cd "$OUT" && pwd)
# The bundle travels compressed (.gpu.txz, made by gpu-bundle.sh next to
# .gpu/): unpack it when the folder is not there, with xz when installed,
# else with Python's tarfile (the GPU machines have python3).
ARCHIVE=${KILN_GPU_ARCHIVE:-.gpu.txz}
if [ ! -f "$BUNDLE/MANIFEST" ] && [ -f "$ARCHIVE" ]; then
	mkdir -p "$BUNDLE" || { echo "gpu-check: cannot create $BUNDLE/" >&2; exit 2; }
	if command -v xz >/dev/null; then
		xz -dc "$ARCHIVE" | tar -C "$BUNDLE" -xf -
	else
		python3 -c 'import sys, tarfile; tarfile.open(sys.argv[1], "r:xz").extractall(sys.argv[2])' "$ARCHIVE" "$BUNDLE"
	fi || { echo "gpu-check: cannot unpack $ARCHIVE into $BUNDLE/" >&2; exit 2; }
fi
if [ ! -f "$BUNDLE/MANIFEST" ] || [ ! -f "$BUNDLE/tests.tsv" ]; then
	echo "gpu-check: no bundle in $BUNDLE/ (MANIFEST, tests.tsv) nor $ARCHIVE: run 'make gpu-bundle' on the development machine and carry .gpu.txz" >&2
	exit 2
fi
BUNDLE=$(cd "$BUNDLE" && pwd)
SCRIPT_DIR=$(cd "$(dirname "$0")" && pwd)
PEERS=$SCRIPT_DIR/peers

WORK=$(mktemp -d "${TMPDIR:-/tmp}/kiln-gpu-check.XXXXXX")
LOGS=$WORK/logs
mkdir -p "$LOGS"

# --- bookkeeping -------------------------------------------------------------
FAILS=()         # what makes the run fail
SKIPPED=()       # steps left out, and why
TEST_ROWS=()     # one line per test run
DETAILS=()       # failed test names, errors: a few lines each
NOTES=()         # environment facts for the summary
SKIP_LOGS=()     # test logs to mine for skip reasons

say() { printf '%s\n' "$*"; }
fail() { FAILS+=("$1"); say "gpu-check: FAIL: $1"; }
skip() { SKIPPED+=("$1"); say "gpu-check: skipped: $1"; }
note() { NOTES+=("$1"); say "  $1"; }
has_step() { [[ $STEPS == *",$1,"* ]]; }

# step_time CAP MIN prints the timeout for a step: CAP, or what is left of the
# budget if that is less; it fails when less than MIN is left.
step_time() {
	local left=$((BUDGET_S - SECONDS - RESERVE_S))
	local t=$1
	[ "$left" -lt "$t" ] && t=$left
	[ "$t" -ge "$2" ] || return 1
	echo "$t"
}

# pack_logs refreshes OUTDIR/logs.tgz, so that logs survive a kill from outside.
pack_logs() { tar -czf "$OUT/logs.tgz" -C "$WORK" logs 2>/dev/null || true; }

valid_json() { python3 -c 'import json,sys; json.load(open(sys.argv[1]))' "$1" >/dev/null 2>&1; }

# --- 1. environment ----------------------------------------------------------
step_environment() {
	say "== environment"
	{
		echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
		echo "host: $(uname -a)"
		echo "glibc: $(ldd --version 2>&1 | head -1)"
	} | tee "$LOGS/environment.txt"
	note "glibc here: $(ldd --version 2>&1 | head -1); bundle built with: $(sed -n 's/^host: //p' "$BUNDLE/MANIFEST")"
	cp "$BUNDLE/MANIFEST" "$LOGS/MANIFEST"
	sed 's/^/  /' "$BUNDLE/MANIFEST"
	BUNDLE_COMMIT=$(sed -n 's/^commit: //p' "$BUNDLE/MANIFEST")
	local status
	status=$(sed -n 's/^status: //p' "$BUNDLE/MANIFEST")
	[ "$status" = complete ] || fail "bundle: $status"
	if [ -f "$BUNDLE/SHA256SUMS" ]; then
		if ! (cd "$BUNDLE" && sha256sum --quiet -c SHA256SUMS) >"$LOGS/sha256sum.txt" 2>&1; then
			fail "bundle: checksums do not match SHA256SUMS (damaged copy?): $(head -3 "$LOGS/sha256sum.txt" | tr '\n' ' ')"
		fi
	else
		fail "bundle: no SHA256SUMS"
	fi
	if [ -f "$BUNDLE/scripts/gpu-check.sh" ] && ! cmp -s "$0" "$BUNDLE/scripts/gpu-check.sh"; then
		note "warning: $0 differs from the bundle's copy (bundle older than the tree? rebuild with make gpu-bundle)"
	fi

	if command -v nvidia-smi >/dev/null; then
		timeout 30 nvidia-smi >"$LOGS/nvidia-smi.txt" 2>&1
		timeout 30 nvidia-smi -q -d CLOCK,PERFORMANCE,POWER,TEMPERATURE >>"$LOGS/nvidia-smi.txt" 2>&1
		local q
		q=$(timeout 30 nvidia-smi --format=csv,noheader \
			--query-gpu=name,driver_version,pci.bus_id,memory.total,clocks.sm,clocks.max.sm,clocks.mem,clocks.max.mem,power.draw,power.limit,temperature.gpu 2>&1)
		DEVICE_LINE=$(head -1 <<<"$q")
		note "nvidia-smi: $DEVICE_LINE  (name, driver, bus, memory, sm clock, max sm, mem clock, max mem, power, limit, temp)"
		local cudaver
		cudaver=$(grep -o 'CUDA Version: [0-9.]*' "$LOGS/nvidia-smi.txt" | head -1)
		[ -n "$cudaver" ] && note "nvidia-smi: $cudaver"
	else
		DEVICE_LINE="(no nvidia-smi)"
		note "warning: nvidia-smi not found"
	fi

	# libcuda.so.1: the default search path first, then where the driver is mounted.
	local lib="" dir
	lib=$(ldconfig -p 2>/dev/null | awk '$1 == "libcuda.so.1" && /x86-64/ {print $NF; exit}')
	if [ -n "$lib" ]; then
		note "libcuda: $lib (on the default search path)"
	else
		for dir in /usr/local/nvidia/lib64 /usr/local/nvidia/lib /usr/lib/x86_64-linux-gnu /usr/lib64; do
			if [ -e "$dir/libcuda.so.1" ]; then
				lib=$dir/libcuda.so.1
				break
			fi
		done
		if [ -n "$lib" ]; then
			export KILN_CUDA_LIBRARY=$lib
			# libcuda loads its siblings (the PTX JIT compiler) by name.
			LD_LIBRARY_PATH=$(dirname "$lib")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
			export LD_LIBRARY_PATH
			note "libcuda: $lib (off the default path: exported KILN_CUDA_LIBRARY and put $(dirname "$lib") on LD_LIBRARY_PATH)"
		else
			fail "libcuda.so.1 not found (ldconfig -p, /usr/local/nvidia/lib64, /usr/lib/x86_64-linux-gnu): every GPU test will skip"
		fi
	fi
	if [ -n "$lib" ]; then
		# The cuda package's real-device test runs children without KILN_CUDA_*.
		export KILN_TEST_REAL_LIBCUDA=$lib
		if ! ls "$(dirname "$lib")"/libnvidia-ptxjitcompiler.so.1 >/dev/null 2>&1 &&
			! ldconfig -p 2>/dev/null | grep -q 'libnvidia-ptxjitcompiler.so.1 '; then
			note "warning: libnvidia-ptxjitcompiler.so.1 not found beside $lib: loading PTX may fail"
		fi
	fi

	local nccl
	nccl=$(timeout 30 python3 -c 'import nvidia.nccl, os; print(os.path.dirname(nvidia.nccl.__file__) if nvidia.nccl.__file__ else list(nvidia.nccl.__path__)[0])' 2>/dev/null)
	if [ -n "$nccl" ] && [ -e "$nccl/lib/libnccl.so.2" ]; then
		export LD_LIBRARY_PATH=$nccl/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
		export KILN_TEST_NCCL=$nccl/lib/libnccl.so.2 # the cuda package's real-NCCL test
		note "nccl: $nccl/lib/libnccl.so.2 (put on LD_LIBRARY_PATH; KILN_TEST_NCCL set)"
	else
		note "nccl: not found in the Python packages (nvidia.nccl)"
	fi

	SANITIZER_BIN=$(command -v compute-sanitizer 2>/dev/null)
	if [ -z "$SANITIZER_BIN" ]; then
		for f in /usr/local/cuda/bin/compute-sanitizer /usr/local/cuda/compute-sanitizer/compute-sanitizer /usr/local/cuda-*/bin/compute-sanitizer; do
			[ -x "$f" ] && SANITIZER_BIN=$f && break
		done
	fi
	note "compute-sanitizer: ${SANITIZER_BIN:-not found}"

	TORCH_LINE=$(timeout 60 python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "available" if torch.cuda.is_available() else "NOT AVAILABLE")' 2>&1 | tail -1)
	note "python: $(python3 --version 2>&1); $TORCH_LINE"

	export KILN_TEST_MODELS=$BUNDLE/models
	env | grep -E '^(KILN_|LD_LIBRARY_PATH|CUDA_)' | sort >"$LOGS/env.txt"

	if [ -x "$BUNDLE/kiln" ]; then
		timeout "$INFO_CAP_S" "$BUNDLE/kiln" info >"$LOGS/kiln-info.txt" 2>&1
		local rc=$?
		say "-- kiln info (exit $rc)"
		head -40 "$LOGS/kiln-info.txt" | sed 's/^/  /'
		[ $rc -eq 0 ] || fail "kiln info exited $rc (logs/kiln-info.txt)"
	fi
	pack_logs
}

# --- 2. tests ----------------------------------------------------------------
# failure_messages LOG prints the first log lines (file.go:N: ...) of each
# failed test, found by following go test -v's "=== RUN/CONT/NAME" markers.
failure_messages() {
	awk '
		/^=== (RUN|CONT|NAME|PAUSE) / { cur = $3; next }
		/^[ \t]*--- FAIL: / { if (!($3 in failed)) { failed[$3] = 1; order[++n] = $3 }; next }
		/^[ \t]+[^ \t]+\.go:[0-9]+: / {
			if (cnt[cur] < 2) { line = $0; sub(/^[ \t]+/, "", line); msg[cur] = msg[cur] cur ": " line "\n"; cnt[cur]++ }
		}
		END { for (i = 1; i <= n; i++) if (order[i] in msg) printf "%s", msg[order[i]] }
	' "$1"
}

# summarise_test LOG LABEL RC SECONDS records one test run.
summarise_test() {
	local log=$1 label=$2 rc=$3 secs=$4
	local pass fails skips state
	pass=$(grep -cE '^\s*--- PASS: ' "$log")
	fails=$(grep -cE '^\s*--- FAIL: ' "$log")
	skips=$(grep -cE '^\s*--- SKIP: ' "$log")
	if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ] || grep -q '^panic: test timed out' "$log"; then
		state=TIMEOUT
	elif [ "$rc" -ne 0 ] || [ "$fails" -gt 0 ]; then
		state="FAIL($rc)"
	elif [ "$pass" -eq 0 ] && [ "$skips" -eq 0 ]; then
		state=NO-TESTS
	else
		state=ok
	fi
	TEST_ROWS+=("$(printf '  %-34s %-9s pass %4d  fail %3d  skip %3d  %4ds' "$label" "$state" "$pass" "$fails" "$skips" "$secs")")
	say "${TEST_ROWS[-1]}"
	SKIP_LOGS+=("$log")
	if [ "$state" != ok ]; then
		fail "tests $label: $state (logs/$(basename "$log"))"
		local names
		names=$(grep -E '^\s*--- FAIL: ' "$log" | sed -E 's/^\s*--- FAIL: (\S+).*/\1/' | head -12 | tr '\n' ' ')
		[ -n "$names" ] && DETAILS+=("$label failed: $names$([ "$fails" -gt 12 ] && echo "(+$((fails - 12)) more)")")
		grep -m3 -E '^(panic|fatal error):' "$log" | cut -c1-240 | while read -r l; do echo "$label: $l"; done >"$WORK/panic.txt"
		while read -r l; do DETAILS+=("$l"); done <"$WORK/panic.txt"
		failure_messages "$log" | head -10 | cut -c1-240 | sed "s/^/$label: /" >"$WORK/errs.txt"
		while read -r l; do DETAILS+=("$l"); done <"$WORK/errs.txt"
		[ "$state" = NO-TESTS ] && DETAILS+=("$label: the binary ran no test")
	fi
}

# run_test NAME REL KERNELS runs one test binary in its package folder;
# KERNELS is simple, auto, or empty (KILN_KERNELS unset).
run_test() {
	local name=$1 rel=$2 kernels=$3
	local label=$name${kernels:+ [$kernels]}
	local bin=$BUNDLE/$name.test dir=$BUNDLE/pkg/$rel
	local log=$LOGS/test-$name${kernels:+-$kernels}.log
	local t
	if ! t=$(step_time "$TEST_CAP_S" "$TEST_MIN_S"); then
		fail "tests $label: not run, the time budget ran out"
		TEST_ROWS+=("$(printf '  %-34s %-9s' "$label" "NOT RUN")")
		return
	fi
	if [ ! -x "$bin" ] || [ ! -d "$dir" ]; then
		fail "tests $label: $bin or $dir missing from the bundle"
		return
	fi
	local envs=(env -u KILN_KERNELS)
	[ -n "$kernels" ] && envs=(env "KILN_KERNELS=$kernels")
	local start=$SECONDS
	(cd "$dir" && "${envs[@]}" timeout --kill-after=10 "$t" "$bin" -test.v -test.timeout="$((t - 5))s") </dev/null >"$log" 2>&1
	local rc=$?
	summarise_test "$log" "$label" "$rc" "$((SECONDS - start))"
	pack_logs
}

step_tests() {
	say "== tests (budget ${BUDGET_S}s; each run at most ${TEST_CAP_S}s)"
	local name rel
	while IFS=$'\t' read -r name rel; do
		[ -n "$name" ] || continue
		if [[ " $BOTH_KERNEL_SETS " == *" $rel "* ]]; then
			run_test "$name" "$rel" simple
			run_test "$name" "$rel" auto
		else
			run_test "$name" "$rel" ""
		fi
	done <"$BUNDLE/tests.tsv"
	if [ ${#TEST_ROWS[@]} -eq 0 ]; then
		fail "tests: the bundle lists no test binaries ($BUNDLE/tests.tsv is empty)"
	fi
}

SANITIZER_LINE=""
step_sanitizer() {
	local name
	name=$(awk -F'\t' -v rel="$SANITIZER_PACKAGE" '$2 == rel {print $1}' "$BUNDLE/tests.tsv")
	local what="memcheck over $name (-test.short -test.run '$SANITIZER_RUN', KILN_KERNELS=$SANITIZER_KERNELS)"
	say "== compute-sanitizer: $what"
	if [ -z "$name" ]; then
		skip "sanitizer: $SANITIZER_PACKAGE is not in the bundle"
		return
	fi
	if [ -z "${SANITIZER_BIN:-}" ]; then
		skip "sanitizer: compute-sanitizer not found"
		return
	fi
	local t
	if ! t=$(step_time "$SANITIZER_CAP_S" "$SANITIZER_MIN_S"); then
		skip "sanitizer: less than ${SANITIZER_MIN_S}s of the budget left"
		return
	fi
	local log=$LOGS/sanitizer-memcheck.log start=$SECONDS
	(cd "$BUNDLE/pkg/$SANITIZER_PACKAGE" && KILN_KERNELS=$SANITIZER_KERNELS timeout --kill-after=10 "$t" \
		"$SANITIZER_BIN" --tool memcheck --print-limit 100 --error-exitcode 99 \
		"$BUNDLE/$name.test" -test.v -test.short -test.run "$SANITIZER_RUN" -test.timeout="$((t - 5))s") </dev/null >"$log" 2>&1
	local rc=$? secs=$((SECONDS - start))
	local summaries errors
	summaries=$(grep -cE 'ERROR SUMMARY: [0-9]+' "$log")
	errors=$(grep -oE 'ERROR SUMMARY: [0-9]+' "$log" | awk '{s += $3} END {print s + 0}')
	if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ] || grep -q '^panic: test timed out' "$log"; then
		# Memcheck slows kernels many times over: a time-out means an incomplete
		# pass (listed under skipped), not a failure, unless it found errors.
		SANITIZER_LINE="sanitizer: $what: TIMEOUT after ${secs}s (incomplete), $errors error(s) reported before that"
		skip "sanitizer: incomplete, timed out after ${secs}s (narrow it with KILN_SANITIZER_RUN)"
		[ "$errors" -eq 0 ] || fail "sanitizer: $errors memcheck error(s) before the time-out"
	elif [ "$summaries" -eq 0 ]; then
		SANITIZER_LINE="sanitizer: $what: no ERROR SUMMARY (exit $rc), see logs/sanitizer-memcheck.log"
		fail "sanitizer: did not finish normally (exit $rc)"
	else
		SANITIZER_LINE="sanitizer: $what: $errors error(s), exit $rc, ${secs}s"
		[ "$errors" -eq 0 ] || fail "sanitizer: $errors memcheck error(s)"
		[ "$errors" -ne 0 ] || [ "$rc" -eq 0 ] || fail "sanitizer: tests failed under memcheck (exit $rc)"
		grep -m5 -E '^========= (Invalid|Program hit|Address|Saved host backtrace|  at )' "$log" | cut -c1-200 >"$WORK/san.txt"
		while read -r l; do DETAILS+=("sanitizer: $l"); done <"$WORK/san.txt"
	fi
	say "$SANITIZER_LINE"
	pack_logs
}

# --- 3. benchmarks -----------------------------------------------------------
BENCH_LINE="bench: not run"
step_bench() {
	say "== kiln bench -json -device cuda:0 ${BENCH_ARGS[*]}"
	if [ ! -x "$BUNDLE/kiln" ]; then
		skip "bench: no kiln binary in the bundle"
		BENCH_LINE="bench: kiln missing"
		return
	fi
	local t
	if ! t=$(step_time "$BENCH_CAP_S" "$BENCH_MIN_S"); then
		skip "bench: less than ${BENCH_MIN_S}s of the budget left"
		BENCH_LINE="bench: skipped (time)"
		return
	fi
	local start=$SECONDS
	timeout --kill-after=10 "$t" "$BUNDLE/kiln" bench -json -device cuda:0 "${BENCH_ARGS[@]}" \
		>"$OUT/bench-kiln.json" 2>"$LOGS/bench-kiln.stderr"
	local rc=$?
	# "N M": results, and how many of them failed (a result with an "error").
	local counts n failed
	counts=$(python3 -c 'import json,sys; r=json.load(open(sys.argv[1]))["results"]; print(len(r), sum(1 for x in r if x.get("error")))' \
		"$OUT/bench-kiln.json" 2>/dev/null)
	read -r n failed <<<"$counts"
	BENCH_LINE="bench: kiln exit $rc, ${n:-no valid JSON:} results (${failed:-?} failed), $((SECONDS - start))s"
	if [ "$rc" -ne 0 ]; then
		fail "bench: kiln bench exited $rc$([ "$rc" -eq 124 ] && echo ' (timeout)') (logs/bench-kiln.stderr)"
		tail -5 "$LOGS/bench-kiln.stderr" | cut -c1-240 | sed 's/^/bench: /' >"$WORK/b.txt"
		while read -r l; do DETAILS+=("$l"); done <"$WORK/b.txt"
	elif [ -z "$n" ]; then
		fail "bench: kiln bench printed no valid JSON (bench-kiln.json)"
	elif [ "$failed" -gt 0 ]; then
		fail "bench: $failed kiln case(s) failed (see table.md)"
		python3 -c 'import json,sys; [print("bench:", x["name"] + ":", str(x["error"])[:200]) for x in json.load(open(sys.argv[1]))["results"] if x.get("error")]' \
			"$OUT/bench-kiln.json" 2>/dev/null | head -5 >"$WORK/b.txt"
		while read -r l; do DETAILS+=("$l"); done <"$WORK/b.txt"
	fi
	say "$BENCH_LINE"
	pack_logs
}

PEER_LINE="peer: not run"
step_peer() {
	say "== PyTorch peer (scripts/peers/ops_torch.py ${PEER_ARGS[*]})"
	local t
	if ! t=$(step_time "$PEER_CAP_S" "$PEER_MIN_S"); then
		skip "peer: less than ${PEER_MIN_S}s of the budget left"
		PEER_LINE="peer: skipped (time)"
		return
	fi
	local names=()
	if [ -s "$OUT/bench-kiln.json" ] && valid_json "$OUT/bench-kiln.json"; then
		names=(--names-from "$OUT/bench-kiln.json")
	fi
	local start=$SECONDS
	PYTHONUNBUFFERED=1 timeout --kill-after=10 "$t" python3 "$PEERS/ops_torch.py" --device cuda \
		--json "$OUT/bench-torch.json" --time-limit "$((t - 15))" "${names[@]}" "${PEER_ARGS[@]}" >"$LOGS/bench-torch.log" 2>&1
	local rc=$?
	local n
	n=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(len(d["results"]), "results,", len(d.get("errors", [])), "errors,", len(d.get("skipped", [])), "skipped for time")' "$OUT/bench-torch.json" 2>/dev/null)
	PEER_LINE="peer: torch exit $rc, ${n:-no valid JSON}, $((SECONDS - start))s"
	# The peer is a yardstick, not the thing under test: its failures are reported, not failed on.
	if [ "$rc" -ne 0 ]; then
		tail -4 "$LOGS/bench-torch.log" | cut -c1-240 | sed 's/^/peer: /' >"$WORK/p.txt"
		while read -r l; do DETAILS+=("$l"); done <"$WORK/p.txt"
	fi
	say "$PEER_LINE"
	pack_logs
}

TABLE_LINE="table: not made"
step_join() {
	local t
	if ! t=$(step_time "$JOIN_CAP_S" "$JOIN_MIN_S"); then
		t=$JOIN_MIN_S # the reserve covers it
	fi
	local args=(--out "$OUT/table.md")
	[ -s "$OUT/bench-kiln.json" ] && args+=(--kiln "$OUT/bench-kiln.json")
	[ -s "$OUT/bench-torch.json" ] && args+=(--peer "$OUT/bench-torch.json")
	if [ ${#args[@]} -eq 2 ]; then
		TABLE_LINE="table: no benchmark results to join"
		return
	fi
	timeout "$t" python3 "$PEERS/join.py" "${args[@]}" >"$LOGS/join.log" 2>&1
	local rc=$?
	TABLE_LINE="table: join.py exit $rc, $(grep -cE '^\| [a-z]+/' "$OUT/table.md" 2>/dev/null) rows in table.md"
	if [ $rc -ne 0 ]; then
		fail "table: join.py exited $rc (logs/join.log)"
		tail -3 "$LOGS/join.log" | cut -c1-240 | sed 's/^/join: /' >"$WORK/j.txt"
		while read -r l; do DETAILS+=("$l"); done <"$WORK/j.txt"
	fi
}

# --- 4. summary --------------------------------------------------------------
write_summary() {
	{
		echo "== kiln GPU suite summary ($(date -u +%Y-%m-%dT%H:%M:%SZ), ${SECONDS}s of a ${BUDGET_S}s budget)"
		local steps=${STEPS#,}
		echo "bundle: commit ${BUNDLE_COMMIT:-?}; steps: ${steps%,}"
		echo "device: ${DEVICE_LINE:-?}"
		printf '%s\n' "${NOTES[@]}"
		if [ ${#TEST_ROWS[@]} -gt 0 ]; then
			echo "tests (pass/fail/skip count subtests too):"
			printf '%s\n' "${TEST_ROWS[@]}"
		fi
		if [ ${#SKIP_LOGS[@]} -gt 0 ]; then
			# Skip reasons: on a GPU machine a skip for "no device" means the setup is wrong.
			local reasons
			reasons=$(grep -hE '^\s+\S+\.go:[0-9]+: .*[Ss]kip' "${SKIP_LOGS[@]}" 2>/dev/null |
				sed -E 's/^\s+\S+\.go:[0-9]+: //' | cut -c1-160 | sort | uniq -c | sort -rn)
			if [ -n "$reasons" ]; then
				echo "skip reasons (count, message; top 10 of $(wc -l <<<"$reasons")):"
				head -10 <<<"$reasons"
				local dev
				dev=$(grep -ciE 'no (usable )?(cuda )?device|driver library not (available|found)|libcuda\.so\.1: cannot open' <<<"$reasons")
				[ "$dev" -eq 0 ] || echo "WARNING: $dev skip reason(s) mention the device or driver: on a GPU machine that means the GPU was not reached"
			fi
		fi
		[ -n "$SANITIZER_LINE" ] && echo "$SANITIZER_LINE"
		has_step bench && echo "$BENCH_LINE"
		has_step peer && echo "$PEER_LINE"
		{ has_step bench || has_step peer; } && echo "$TABLE_LINE"
		if [ ${#DETAILS[@]} -gt 0 ]; then
			echo "details (first lines; full logs in logs.tgz):"
			printf '  %s\n' "${DETAILS[@]:0:40}"
		fi
		if [ ${#SKIPPED[@]} -gt 0 ]; then
			echo "skipped:"
			printf '  %s\n' "${SKIPPED[@]}"
		fi
		echo "outputs: $(find "$OUT" -mindepth 1 -maxdepth 1 -printf '%f ')"
		if [ ${#FAILS[@]} -gt 0 ]; then
			echo "RESULT: FAIL (${#FAILS[@]})"
			printf '  %s\n' "${FAILS[@]}"
		else
			echo "RESULT: PASS"
		fi
	} >"$OUT/summary.txt"
}

finish() {
	trap - EXIT INT TERM
	pack_logs
	write_summary
	say ""
	cat "$OUT/summary.txt"
	rm -rf "$WORK"
	[ ${#FAILS[@]} -eq 0 ]
	exit $?
}
# shellcheck disable=SC2317 # called by the trap
on_signal() {
	fail "interrupted by a signal after ${SECONDS}s"
	finish
}
trap on_signal INT TERM
trap finish EXIT

step_environment
if has_step tests; then step_tests; else skip "tests: not in KILN_GPU_STEPS"; fi
if has_step sanitizer; then step_sanitizer; else skip "sanitizer: not in KILN_GPU_STEPS"; fi
if has_step bench; then step_bench; fi
if has_step peer; then step_peer; fi
if has_step bench || has_step peer; then
	step_join
	if [ -s "$OUT/table.md" ]; then
		say ""
		cat "$OUT/table.md"
	fi
fi
finish
