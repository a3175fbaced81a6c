#!/usr/bin/env bash
# ptx-check.sh — regenerate the PTX into a temporary folder and compare it with
# the committed kernels/ptx: a changed, missing or extra file fails, with the
# command that fixes it.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
TMP=$(mktemp -d "${TMPDIR:-/tmp}/kiln-ptx-check.XXXXXX")
trap 'rm -rf "$TMP" "$TMP.diff"' EXIT

"$ROOT/scripts/ptx.sh" "$TMP" >/dev/null
if ! diff -r "$ROOT/kernels/ptx" "$TMP" >"$TMP.diff" 2>&1; then
	echo "ptx-check: the committed PTX in kernels/ptx does not match kernels/*.cu:" >&2
	grep -E '^(Only in|diff -r|Binary)' "$TMP.diff" | sed "s|$TMP|<regenerated>|g" >&2 || true
	rm -f "$TMP.diff"
	echo "ptx-check: run 'make ptx' and commit kernels/ptx." >&2
	exit 1
fi
rm -f "$TMP.diff"
echo "ptx-check: kernels/ptx is up to date ($(find "$ROOT/kernels/ptx" -name '*.ptx' | wc -l) files)"
