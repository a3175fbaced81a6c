# cuda-env.sh — source this to use the pinned nvcc 12.4 installed by
# scripts/install-cuda.sh. It exports:
#   CUDA_PREFIX  the unpacked toolkit (.cache/cuda-12.4)
#   NVCC, PTXAS  absolute paths of the compiler and the assembler
#   LD_LIBRARY_PATH  with the toolkit's library directory first (nvcc needs libnvvm)
# and fails (returns 1) with a message when the toolkit is not installed.
# shellcheck shell=bash
_kiln_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CUDA_PREFIX=$_kiln_root/.cache/cuda-12.4
NVCC=$CUDA_PREFIX/usr/lib/nvidia-cuda-toolkit/bin/nvcc
PTXAS=$CUDA_PREFIX/usr/bin/ptxas
unset _kiln_root
if [ ! -x "$NVCC" ] || [ ! -x "$PTXAS" ]; then
	echo "cuda-env: the pinned nvcc 12.4 is not installed in $CUDA_PREFIX; run 'make cuda' (scripts/install-cuda.sh)" >&2
	return 1 2>/dev/null || exit 1
fi
LD_LIBRARY_PATH=$CUDA_PREFIX/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export CUDA_PREFIX NVCC PTXAS LD_LIBRARY_PATH
