#!/usr/bin/env bash
# install-cuda.sh — install the pinned CUDA compiler, nvcc 12.4 (12.4.131), into
# .cache/cuda-12.4 (git-ignored) without touching the system's apt configuration.
#
# What it does (see ../shared/docs/CUDA-TOOLCHAIN.md, "A recipe that works"):
#   1. skips everything when .cache/cuda-12.4 already holds nvcc 12.4.131
#      unpacked from exactly the packages below (recorded in .cache/cuda-12.4/PACKAGES);
#   2. points a private apt state (.cache/cuda-apt) at Debian trixie (main and
#      non-free) and downloads four pinned packages: nvidia-cuda-toolkit (nvcc,
#      ptxas), libnvvm4 (the NVVM compiler library), nvidia-cuda-dev (headers
#      only) and libcu++-dev 2.3.2 (headers only: CUDA 12.4's own libcu++, whose
#      <nv/target> cuda_fp16.h and cuda_bf16.h include);
#   3. unpacks them with dpkg -x into .cache/cuda-12.4 (no root, no install);
#   4. replaces nvcc.profile with one relative to nvcc itself (the packaged one
#      names absolute Debian paths);
#   5. deletes the downloaded .deb files and checks `nvcc --version`.
#
# Afterwards, `source scripts/cuda-env.sh` exports NVCC and PTXAS.
# Needs: apt-get, dpkg, network access to deb.debian.org, about 1 GB of download
# and 250 MB of disk.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
PREFIX=$ROOT/.cache/cuda-12.4
APTDIR=$ROOT/.cache/cuda-apt
WANT=12.4.131
NVCC_BIN=$PREFIX/usr/lib/nvidia-cuda-toolkit/bin/nvcc
LIBDIR=$PREFIX/usr/lib/x86_64-linux-gnu
PACKAGES=(
	nvidia-cuda-toolkit=12.4.131~12.4.1-2
	libnvvm4=12.4.131~12.4.1-2
	nvidia-cuda-dev=12.4.127~12.4.1-2
	libcu++-dev=2.3.2-2
)

installed_version() {
	[ -x "$NVCC_BIN" ] || return 1
	LD_LIBRARY_PATH=$LIBDIR${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH} "$NVCC_BIN" --version 2>/dev/null |
		sed -n 's/.*release [0-9.]*, V\([0-9.]*\).*/\1/p'
}

if [ "$(installed_version || true)" = "$WANT" ] &&
	[ "$(cat "$PREFIX/PACKAGES" 2>/dev/null)" = "${PACKAGES[*]}" ]; then
	echo "install-cuda: nvcc $WANT is already installed in .cache/cuda-12.4; nothing to do."
	exit 0
fi

for tool in apt-get dpkg dpkg-deb tar; do
	command -v "$tool" >/dev/null || {
		echo "install-cuda: '$tool' is required (this recipe is for Debian/Ubuntu machines)" >&2
		exit 1
	}
done

echo "install-cuda: installing nvcc $WANT into .cache/cuda-12.4 (downloads about 1 GB from deb.debian.org)"
rm -rf "$PREFIX"
mkdir -p "$APTDIR/lists/partial" "$APTDIR/archives/partial" "$PREFIX"
echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian trixie main non-free" \
	>"$APTDIR/sources.list"
APT_OPTS=(
	-o "Dir::Etc::SourceList=$APTDIR/sources.list"
	-o Dir::Etc::SourceParts=/dev/null
	-o "Dir::State::Lists=$APTDIR/lists"
	-o "Dir::Cache::archives=$APTDIR/archives"
	-o Debug::NoLocking=1
)
# As root, apt hands downloads to the _apt user, which cannot write into this
# checkout; keep the download as the calling user instead (no warning).
if [ "$(id -u)" = 0 ]; then
	APT_OPTS+=(-o APT::Sandbox::User=root)
fi

echo "install-cuda: [1/4] apt-get update (private lists in .cache/cuda-apt)"
apt-get "${APT_OPTS[@]}" -q update

echo "install-cuda: [2/4] downloading ${PACKAGES[*]}"
rm -f "$APTDIR"/archives/*.deb
(cd "$APTDIR/archives" && apt-get "${APT_OPTS[@]}" -q download "${PACKAGES[@]}")

echo "install-cuda: [3/4] unpacking into .cache/cuda-12.4"
dpkg -x "$APTDIR"/archives/nvidia-cuda-toolkit_*.deb "$PREFIX"
dpkg -x "$APTDIR"/archives/libnvvm4_*.deb "$PREFIX"
# Only the headers of the -dev package are needed (the libraries are large and unused).
dpkg-deb --fsys-tarfile "$APTDIR"/archives/nvidia-cuda-dev_*.deb | tar -x -C "$PREFIX" ./usr/include
dpkg-deb --fsys-tarfile "$APTDIR"/archives/libcu++-dev_*.deb | tar -x -C "$PREFIX" ./usr/include

echo "install-cuda: [4/4] writing a relocatable nvcc.profile and removing the downloads"
cat >"$PREFIX/usr/lib/nvidia-cuda-toolkit/bin/nvcc.profile" <<'PROFILE'
TOP = $(_HERE_)/../../../..
NVVMIR_LIBRARY_DIR = $(TOP)/usr/lib/nvidia-cuda-toolkit/libdevice
PATH += $(_HERE_):$(TOP)/usr/bin:
INCLUDES += "-I$(TOP)/usr/include" $(_SPACE_)
PROFILE
rm -f "$APTDIR"/archives/*.deb

got=$(installed_version || true)
if [ "$got" != "$WANT" ]; then
	echo "install-cuda: after unpacking, nvcc reports version '$got', expected $WANT" >&2
	exit 1
fi
echo "${PACKAGES[*]}" >"$PREFIX/PACKAGES"
echo "install-cuda: done: nvcc $WANT in .cache/cuda-12.4 (use: source scripts/cuda-env.sh)"
