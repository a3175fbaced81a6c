#!/usr/bin/env bash
# gpu-bundle.sh — build, on the development machine, everything the GPU suite
# (scripts/gpu-check.sh) needs on a GPU machine that has no Go toolchain, no
# network and no ../shared, into one git-ignored folder:
#
#   .gpu/<name>.test          a test binary per package with GPU tests (cgo on, stripped)
#   .gpu/kiln                 the CLI (kiln info, kiln bench)
#   .gpu/pkg/<package path>/  each test binary's working directory: a mirror of the
#                             package folder without its Go files (testdata/, kernel
#                             sources, ptx/; go test runs a package's tests in its own
#                             folder, so relative paths resolve the same)
#   .gpu/models/stories260K.gguf
#   .gpu/scripts/gpu-check.sh, .gpu/scripts/peers/*.py
#   .gpu/tests.tsv            name <TAB> package path, one line per test binary
#   .gpu/MANIFEST             commit (+"-dirty"), build date, go version, status
#   .gpu/SHA256SUMS           checked by gpu-check.sh before it runs anything
#
# Usage: scripts/gpu-bundle.sh [--partial]
#   A package that fails to compile (or has no test files), a failed kiln build
#   or a missing model file is an error: by default nothing is left in .gpu/ and
#   the script exits 1. With --partial it still exits 1 but keeps a bundle of
#   what did build, marked INCOMPLETE in MANIFEST (gpu-check.sh then reports it
#   and fails), so the rest can still be checked on a GPU machine.
#
# Environment: GPU_TEST_PACKAGES overrides the package list below (for example
# to bundle only what builds while others are mid-edit); KILN_SHARED is the
# shared folder (default ../shared beside the repository).
set -euo pipefail

# The packages whose test binaries run on the GPU machine, lowest layer first
# (gpu-check.sh runs them in this order). models/llama runs stories260K on
# cuda:0 (exact greedy text, Q8_0 closeness, batching) from the bundle's copy;
# cmd/kiln runs `kiln generate -model stories260K.gguf -temp 0 -n 200 -device
# cuda:0` against the reference text of the shared models/README.md (copied).
DEFAULT_GPU_TEST_PACKAGES="./cuda ./kernels ./runtime/gpu ./runtime/conformance ./models/llama ./cmd/kiln"

# Package folders whose data files (testdata/, ...) other packages' tests read,
# mirrored without a test binary of their own: cmd/kiln's tests read the
# built-in model's golden values from models/builtin/testdata.
DATA_PACKAGES="models/builtin"

# Files from the shared folder that later model checks read (source -> bundle path).
SHARED_FILES="models/stories260K.gguf models/README.md"

# What travels to the GPU machine is the compressed archive .gpu.txz; .gpu/
# is the same bundle unpacked, for looking at here. The device tool carries
# at most 64 MiB, the working tree (tracked and untracked, not ignored files)
# included: the script fails when tree + archive pass CARRY_LIMIT_BYTES, and
# warns above WARN_CARRY_BYTES.
#
# xz with one thread and a 64 MiB dictionary, not gzip: every test binary
# embeds the same ~11 MiB of PTX and the same Go runtime, and gzip's 32 KiB
# window sees none of that repetition (gzip: 40 MiB, this: 14 MiB, measured
# on the 2026-11-27 bundle). It takes about 1.5 minutes on 2 cores.
CARRY_LIMIT_BYTES=$((62 * 1024 * 1024))
WARN_CARRY_BYTES=$((52 * 1024 * 1024))
ARCHIVE=.gpu.txz

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
BUNDLE=.gpu
STAGE=.cache/gpu-bundle.stage # git-ignored, so a killed build leaves nothing that travels
SHARED=${KILN_SHARED:-$ROOT/../shared}
PACKAGES=${GPU_TEST_PACKAGES:-$DEFAULT_GPU_TEST_PACKAGES}

partial=0
for arg in "$@"; do
	case $arg in
	--partial) partial=1 ;;
	-h | --help)
		sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
		exit 0
		;;
	*)
		echo "gpu-bundle: unknown argument $arg (expected --partial)" >&2
		exit 2
		;;
	esac
done

if ! command -v go >/dev/null; then
	echo "gpu-bundle: no go toolchain on PATH" >&2
	exit 2
fi
export CGO_ENABLED=1
export CGO_CFLAGS="${CGO_CFLAGS:--O2 -g -Wno-deprecated-declarations}"
cc=$(go env CC)
if ! command -v "${cc%% *}" >/dev/null; then
	echo "gpu-bundle: cgo needs a C compiler and '$cc' (go env CC) is not on PATH" >&2
	exit 2
fi

rm -rf "$STAGE"
mkdir -p "$STAGE/pkg" "$STAGE/models" "$STAGE/scripts/peers"

# mirror_package_files SRC DST copies what a package's tests may read from
# their working directory: the folder's files other than Go sources (kernel
# sources, headers, ...) and its subfolders that hold no Go files (testdata/,
# ptx/, ...). Go subpackages are left out: they have their own binaries.
mirror_package_files() {
	local src=$1 dst=$2 entry
	mkdir -p "$dst"
	for entry in "$src"/* "$src"/.[!.]*; do
		[ -e "$entry" ] || continue
		if [ -f "$entry" ]; then
			case $entry in *.go) continue ;; esac
			cp -L "$entry" "$dst/"
		elif [ -d "$entry" ] && [ -z "$(find "$entry" -name '*.go' -print -quit)" ]; then
			cp -RL "$entry" "$dst/" # links dereferenced: a link would travel as a link
		fi
	done
}

failures=()
fail() {
	failures+=("$1")
	echo "gpu-bundle: FAILED: $1" >&2
}

# Build log of one step: shown in full when the step fails.
log=$(mktemp "${TMPDIR:-/tmp}/kiln-gpu-bundle.XXXXXX")
trap 'rm -rf "$ROOT/$STAGE" "$log"' EXIT

: >"$STAGE/tests.tsv"
for pkg in $PACKAGES; do
	rel=${pkg#./}
	rel=${rel%/}
	name=${rel//\//-}
	out=$STAGE/$name.test
	echo "gpu-bundle: go test -c $pkg -> $BUNDLE/$name.test"
	if [ ! -d "$rel" ]; then
		fail "$pkg: no such package folder"
		continue
	fi
	if ! go test -c -ldflags='-s -w' -o "$out" "./$rel" >"$log" 2>&1; then
		cat "$log" >&2
		fail "$pkg: does not compile (go test -c)"
		continue
	fi
	if [ ! -x "$out" ]; then
		# go test -c writes nothing, and exits 0, for a package without tests.
		cat "$log" >&2
		fail "$pkg: go test -c wrote no binary (no test files?)"
		continue
	fi
	mirror_package_files "$rel" "$STAGE/pkg/$rel"
	if grep -l -s -- '\.\./shared' "$rel"/*_test.go >/dev/null; then
		echo "gpu-bundle: note: $pkg tests mention ../shared, which the GPU machine lacks;" \
			"they must skip there or read the bundle's copy (KILN_TEST_MODELS, set by gpu-check.sh)" >&2
	fi
	printf '%s\t%s\n' "$name" "$rel" >>"$STAGE/tests.tsv"
done

for rel in $DATA_PACKAGES; do
	mirror_package_files "$rel" "$STAGE/pkg/$rel"
done

echo "gpu-bundle: go build ./cmd/kiln -> $BUNDLE/kiln"
# -buildvcs=auto: kiln reports its commit from the build info (GOFLAGS may say false).
if [ ! -d cmd/kiln ] || ! go build -buildvcs=auto -ldflags='-s -w' -o "$STAGE/kiln" ./cmd/kiln >"$log" 2>&1; then
	cat "$log" >&2
	fail "./cmd/kiln: does not build"
fi

for f in $SHARED_FILES; do
	if [ -f "$SHARED/$f" ]; then
		mkdir -p "$(dirname "$STAGE/$f")"
		cp "$SHARED/$f" "$STAGE/$f"
	else
		fail "$SHARED/$f: missing (set KILN_SHARED to the shared folder)"
	fi
done

# The scripts, checked here so that a syntax error shows up before the GPU machine.
if bash -n scripts/gpu-check.sh; then
	cp scripts/gpu-check.sh "$STAGE/scripts/"
else
	fail "scripts/gpu-check.sh: bash -n failed"
fi
shopt -s nullglob
peers=(scripts/peers/*.py)
if [ ${#peers[@]} -eq 0 ]; then
	fail "scripts/peers: no peer scripts"
else
	for f in "${peers[@]}"; do
		if python3 -c 'import ast, sys; ast.parse(open(sys.argv[1]).read(), sys.argv[1])' "$f" >"$log" 2>&1; then
			cp "$f" "$STAGE/scripts/peers/"
		else
			cat "$log" >&2
			fail "$f: Python syntax error"
		fi
	done
fi

commit=$(git rev-parse HEAD 2>/dev/null || echo unknown)
if [ -n "$(git status --porcelain 2>/dev/null)" ]; then
	commit="$commit-dirty"
fi
status=complete
if [ ${#failures[@]} -gt 0 ]; then
	status="INCOMPLETE: ${#failures[@]} failure(s): $(printf '%s; ' "${failures[@]}")"
	status=${status%; }
fi
{
	echo "kiln GPU bundle (scripts/gpu-bundle.sh; run scripts/gpu-check.sh OUTDIR from the repository root)"
	echo "commit: $commit"
	echo "built: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
	echo "go: $(go version)"
	echo "host: $(uname -m), $(ldd --version 2>&1 | head -1)"
	echo "packages: $PACKAGES"
	echo "status: $status"
} >"$STAGE/MANIFEST"
sums=$(cd "$STAGE" && find . -type f -printf '%P\n' | LC_ALL=C sort | xargs -d '\n' sha256sum)
printf '%s\n' "$sums" >"$STAGE/SHA256SUMS"

size=$(du -sb "$STAGE" | cut -f1)
human=$(numfmt --to=iec-i --suffix=B "$size")
echo "gpu-bundle: bundle size $human unpacked ($size bytes)"
find "$STAGE" -maxdepth 1 -type f \( -name '*.test' -o -name kiln \) -printf '%s %P\n' | sort -rn |
	while read -r bytes path; do
		printf '  %8s  %s\n' "$(numfmt --to=iec-i --suffix=B "$bytes")" "$path"
	done
rm -f "$ARCHIVE.tmp"
if ! command -v xz >/dev/null; then
	fail "xz is not installed (the archive is xz-compressed; apt-get install xz-utils)"
	partial=0
else
	tar -C "$STAGE" -cf - . | xz -T1 -6 --lzma2=dict=64MiB >"$ARCHIVE.tmp"
fi
asize=$(stat -c %s "$ARCHIVE.tmp" 2>/dev/null || echo 0)
ahuman=$(numfmt --to=iec-i --suffix=B "$asize")
# The working tree that travels with it: tracked and untracked files git does not ignore.
tsize=$(git ls-files -co --exclude-standard -z | du -cb --files0-from=- 2>/dev/null | tail -1 | cut -f1)
tsize=${tsize:-0}
carry=$((asize + tsize))
chuman=$(numfmt --to=iec-i --suffix=B "$carry")
echo "gpu-bundle: archive $ARCHIVE is $ahuman; with the working tree $(numfmt --to=iec-i --suffix=B "$tsize") that is $chuman to carry (limit $((CARRY_LIMIT_BYTES / 1024 / 1024)) MiB)"
if [ "$carry" -gt "$CARRY_LIMIT_BYTES" ]; then
	fail "archive + working tree are $chuman, over the $((CARRY_LIMIT_BYTES / 1024 / 1024)) MiB limit (the device tool carries 64 MiB in all)"
	partial=0 # too big to carry at all
elif [ "$carry" -gt "$WARN_CARRY_BYTES" ]; then
	echo "gpu-bundle: warning: archive + working tree are $chuman, near the 64 MiB the device tool carries" >&2
fi

if [ ${#failures[@]} -gt 0 ] && [ "$partial" -eq 0 ]; then
	rm -rf "$BUNDLE" "$ARCHIVE" "$ARCHIVE.tmp"
	echo "gpu-bundle: ${#failures[@]} failure(s); no bundle written ($BUNDLE removed). Fix them, or use --partial:" >&2
	printf '  %s\n' "${failures[@]}" >&2
	exit 1
fi
rm -rf "$BUNDLE"
mv "$STAGE" "$BUNDLE"
mv "$ARCHIVE.tmp" "$ARCHIVE"
if [ ${#failures[@]} -gt 0 ]; then
	echo "gpu-bundle: wrote an INCOMPLETE bundle to $BUNDLE/ (--partial); gpu-check.sh will fail on it:" >&2
	printf '  %s\n' "${failures[@]}" >&2
	exit 1
fi
echo "gpu-bundle: wrote $BUNDLE/ ($human) and $ARCHIVE ($ahuman), commit $commit; carry $ARCHIVE"
