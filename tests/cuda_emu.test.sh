#!/usr/bin/env bash
# cuda_emu.test.sh BUILD - test_cuda against the CUDA backend built for the CPU
# emulator of the device (tests/cuda_emu/emu.h): llm/cuda/cuda.cu's own host
# code and kernels, run on emulated threads and streams, checked against the
# CPU reference op by op, then the default models end to end; first the
# emulator's own self-test (tests/cuda_emu/selftest.cu).  Quick mode
# (the longest cases left out) unless DOCENT_TEST_CUDA_FULL=1 (make
# cuda-emu-check).  Passing here is not passing on a GPU: see emu.h for what
# the emulator does not check, and make gpu-check.
set -u
BUILD=${1:-build}
cd "$(dirname "$0")/.."
so=$BUILD/cuda-emu/libdocent-cuda.so
case $so in /*) ;; *) so=$PWD/$so ;; esac
[ -f "$so" ] || { echo "skipped: $so is not built (a build without nvcc has no CUDA backend to load)"; exit 77; }
echo "the emulator's self-test (it catches what it claims to)"
"$BUILD/cuda-emu/selftest" || exit 1
[ "${DOCENT_TEST_CUDA_FULL:-0}" = 1 ] || export DOCENT_TEST_CUDA_QUICK=1
echo "test_cuda on the CPU emulator ($so)"
DOCENT_CUDA_LIB=$so "$BUILD/tests/test_cuda"
