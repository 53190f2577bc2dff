#!/usr/bin/env bash
# prepare.sh - run HERE (the build machine, with nvcc and docent's build
# dependencies) before a device call that runs `make gpu-check`.
#
# The GPU machine has CUDA, PyTorch, transformers and sentence-transformers but
# none of docent's C dependencies (jansson, pcre2, utf8proc, curl, cmocka) and
# no internet, and a call carries at most 64 MiB.  So this script puts into
# .gpu/ (git-ignored; name it in the call's `carry`):
#   .gpu/bin/   test_cuda and gpu_probe (stripped) and libdocent-cuda.so, the
#               backend they load from their own folder
#   .gpu/lib/   the shared libraries they need beyond glibc, libstdc++ and CUDA
#   .gpu/minilm-int8/  all-MiniLM-L6-v2 packed by pack_minilm.py (~23 MB; its
#                      weights xz-compressed, 21 MB)
#   .gpu/tiny-q4.gguf.xz  2 layers of the default generator (make_tiny_gguf.py,
#                      22 MB, 19 MB compressed)
# The call carries the tracked tree too, and everything must stay under 64 MiB:
# the script prints the total and fails above 63 MiB.
# and prints the size and the device call to make.  (.gpu/ is in .gitignore.)
# .gpu/STAMP: a hash of the C/CUDA sources; check.sh refuses stale binaries.
set -euo pipefail
cd "$(dirname "$0")/../.."
# --stamp: a hash of the sources the binaries are built from; prepare.sh
# leaves it in .gpu/STAMP and check.sh refuses binaries whose stamp differs
stamp() {
    find core llm tests/unit tests/gpu -type f \( -name '*.c' -o -name '*.h' -o -name '*.cu' \) -print0 |
        LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -c1-64
}
[ "${1:-}" = --stamp ] && { stamp; exit 0; }
BUILD=${BUILD:-build}
command -v nvcc >/dev/null || { echo "prepare.sh: nvcc not found: cannot build the CUDA backend" >&2; exit 1; }
make -j2 BUILD="$BUILD" "$BUILD/tests/test_cuda" "$BUILD/gpu/gpu_probe" "$BUILD/libdocent-cuda.so"
nm -D "$BUILD/libdocent-cuda.so" 2>/dev/null | grep " T docent_cuda_backend_new" >/dev/null ||
    { echo "prepare.sh: $BUILD/libdocent-cuda.so has no CUDA backend entry (stale objects? make clean)" >&2; exit 1; }
rm -rf .gpu/bin .gpu/lib .gpu/tiny-q4.gguf* .gpu/minilm-int8
mkdir -p .gpu/bin .gpu/lib
for b in "$BUILD/tests/test_cuda" "$BUILD/gpu/gpu_probe"; do
    strip -o ".gpu/bin/$(basename "$b")" "$b"
done
strip --strip-unneeded -o .gpu/bin/libdocent-cuda.so "$BUILD/libdocent-cuda.so"
# the closure of shared libraries, less glibc, the C++ runtime and CUDA's own
ldd .gpu/bin/gpu_probe .gpu/bin/test_cuda .gpu/bin/libdocent-cuda.so | awk '$2 == "=>" && $3 ~ /^\// {print $3}' | sort -u |
    grep -Ev '/(libc|libm|libdl|librt|libpthread|libresolv|libstdc\+\+|libgcc_s)\.so|/libcu|/libnv' |
    while read -r lib; do cp -L "$lib" .gpu/lib/; done
# a 2-layer cut of the default generator with Q4_0/Q4_1/Q8_0 weights (~22 MB):
# test_cuda's generator parity on the device (DOCENT_TEST_CUDA_GGUF)
if [ -f models/smollm2-135m-instruct-q4_1.gguf ]; then
    python3 tests/gpu/make_tiny_gguf.py models/smollm2-135m-instruct-q4_1.gguf .gpu/tiny-q4.gguf 2
    xz -T0 -6 -f .gpu/tiny-q4.gguf # 22 -> 19 MB: all of .gpu and the tree must fit in 64 MiB
else
    echo "prepare.sh: models/smollm2-135m-instruct-q4_1.gguf missing (make models): the generator parity will be skipped" >&2
fi
if [ -d models/all-minilm-l6-v2 ]; then
    python3 tests/gpu/pack_minilm.py pack models/all-minilm-l6-v2 .gpu/minilm-int8
    xz -T0 -6 -f .gpu/minilm-int8/weights.safetensors
else
    echo "prepare.sh: models/all-minilm-l6-v2 missing (make models): the encoder checks will be skipped" >&2
fi
stamp >.gpu/STAMP
du -sh .gpu
total=$(( $(du -sb .gpu | cut -f1) + $(git ls-files -z | xargs -0 du -cb 2>/dev/null | tail -1 | cut -f1) ))
echo "a device call carries about $((total / 1048576)) MiB (.gpu and the tracked tree; the limit is 64 MiB)"
[ "$total" -le $((63 << 20)) ] || { echo "prepare.sh: too much to carry" >&2; exit 1; }
echo "now: device run, carry [\".gpu\"], command: make gpu-check, timeout_s 600 (or: bash tests/gpu/check.sh)"
