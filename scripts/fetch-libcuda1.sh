#!/usr/bin/env bash
# fetch-libcuda1.sh — fetch Debian bookworm's NVIDIA driver library, libcuda1
# (535.x), into .cache/libcuda1 (git-ignored), so that tests can exercise "a
# real driver library, but no GPU" on a machine without one: dlopen works,
# cuDriverGetVersion answers 12020 and cuInit returns CUDA_ERROR_NO_DEVICE.
#
# What it does (see ../shared/docs/CUDA-TOOLCHAIN.md, "Exercising a driver,
# but no GPU"):
#   1. skips everything when .cache/libcuda1 already holds the unpacked library;
#   2. points a private apt state (.cache/libcuda1-apt) at Debian bookworm's
#      non-free archive, without touching the system's apt configuration;
#   3. downloads the libcuda1 package (about 3 MB) and checks it is a 535.x build;
#   4. unpacks it with dpkg -x into .cache/libcuda1 (no root, no install) and
#      deletes the download.
#
# Progress goes to stderr; the last line, on stdout, is the absolute path of
# the unpacked libcuda.so.1, so `lib=$(scripts/fetch-libcuda1.sh)` works. Use it
# as KILN_CUDA_LIBRARY or KILN_TEST_LIBCUDA1.
# Needs: apt-get, dpkg, network access to deb.debian.org.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
PREFIX=$ROOT/.cache/libcuda1
APTDIR=$ROOT/.cache/libcuda1-apt
LIB=$PREFIX/usr/lib/x86_64-linux-gnu/nvidia/current/libcuda.so.1
STAMP=$PREFIX/.version

say() { echo "fetch-libcuda1: $*" >&2; }

if [ -e "$LIB" ] && [ -s "$STAMP" ]; then
	say "libcuda1 $(cat "$STAMP") is already unpacked in .cache/libcuda1; nothing to do."
	echo "$LIB"
	exit 0
fi

for tool in apt-get dpkg dpkg-deb; do
	command -v "$tool" >/dev/null || {
		say "'$tool' is required (this recipe is for Debian/Ubuntu machines)"
		exit 1
	}
done
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
if [ ! -r "$KEYRING" ]; then
	say "$KEYRING is missing (install the debian-archive-keyring package)"
	exit 1
fi

say "fetching Debian bookworm non-free's libcuda1 into .cache/libcuda1"
rm -rf "$PREFIX"
mkdir -p "$APTDIR/lists/partial" "$APTDIR/archives/partial" "$PREFIX"
echo "deb [signed-by=$KEYRING] http://deb.debian.org/debian bookworm non-free" >"$APTDIR/sources.list"
APT_OPTS=(
	-o "Dir::Etc::SourceList=$APTDIR/sources.list"
	-o Dir::Etc::SourceParts=/dev/null
	-o "Dir::State::Lists=$APTDIR/lists"
	-o "Dir::Cache::archives=$APTDIR/archives"
	-o Debug::NoLocking=1
	# Downloads land in .cache, which apt's unprivileged _apt user may not reach.
	-o APT::Sandbox::User=root
	# Only amd64 builds are wanted, whatever this machine's native architecture.
	-o APT::Architecture=amd64
	-o APT::Architectures=amd64
)

say "[1/3] apt-get update (private lists in .cache/libcuda1-apt)"
apt-get "${APT_OPTS[@]}" -q update >&2

say "[2/3] downloading libcuda1"
rm -f "$APTDIR"/archives/*.deb
(cd "$APTDIR/archives" && apt-get "${APT_OPTS[@]}" -q download libcuda1 >&2)
deb=$(ls "$APTDIR"/archives/libcuda1_*.deb)
version=$(dpkg-deb -f "$deb" Version)
case "$version" in
535.*) say "downloaded libcuda1 $version" ;;
*)
	say "expected a 535.x libcuda1 from bookworm, got '$version' ($deb)"
	exit 1
	;;
esac

say "[3/3] unpacking into .cache/libcuda1 and removing the download"
dpkg -x "$deb" "$PREFIX"
rm -f "$APTDIR"/archives/*.deb
if [ ! -e "$LIB" ]; then
	say "the package did not contain usr/lib/x86_64-linux-gnu/nvidia/current/libcuda.so.1"
	exit 1
fi
echo "$version" >"$STAMP"
say "done: libcuda1 $version"
echo "$LIB"
