#!/usr/bin/env bash
# check.sh - `make gpu-check`: the CUDA backend on a machine with an NVIDIA GPU.
#
#   1. build: the binaries prepare.sh put in .gpu/bin (the GPU machine lacks
#      docent's C dependencies), else `make BUILD=build-cuda` here; and nvcc
#      compiles llm/cuda/*.cu on this machine as a check of its toolchain
#   2. op parity: test_cuda (every op vs the CPU reference); a skip is a failure
#   3. copy bandwidth through the backend (for the bound fractions), and
#      decode-sized matmuls with quantized weights kept vs expanded to f16
#   4. model parity + benchmarks: tests/gpu/model_parity.py (random llama
#      models of the SmolLM2-135M and 1B shapes vs transformers; MiniLM vs
#      sentence-transformers; decode/prefill/encoder rates)
#   5. test_cuda under compute-sanitizer memcheck (GPU_CHECK_SANITIZE=0: not)
# Prints a table; writes logs and JSON under $OUT when set (else
# build-cuda/gpu-check/).  Exits non-zero on any failure.  About 5 minutes on
# an H200.  GPU_CHECK_QUICK=1: one small decoder shape, short benchmarks;
# GPU_CHECK_DEVICE=cpu GPU_CHECK_BACKEND=cpu: a dry run of step 4 without a GPU.
set -uo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
RES=${OUT:-$ROOT/build-cuda/gpu-check}
WORK=${GPU_CHECK_WORK:-/tmp/docent-gpu-check}
mkdir -p "$RES" "$WORK"
export PYTHONUNBUFFERED=1
failed=()
t_start=$SECONDS
step() { printf '\n=== %s (%ds)\n' "$1" $((SECONDS - t_start)); }
# one deadline for every step's timeout: a device call runs at most 600 s, and
# the summary (gpu_check.json) must still be written
deadline=$((t_start + ${GPU_CHECK_BUDGET:-570}))
# limit WANT KEEP: WANT seconds, less if fewer than WANT + KEEP are left
limit() { local l=$((deadline - SECONDS - $2)); [ $l -gt $1 ] && l=$1; [ $l -lt 1 ] && l=1; echo $l; }

step "0. machine"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 || true
command -v nvcc >/dev/null && nvcc --version | tail -1

step "1. build"
# CUDA's libraries: the toolkit's, else the ones pip installed with PyTorch
cuda_libs=""
nvcc_lib=$(command -v nvcc >/dev/null && cd "$(dirname "$(command -v nvcc)")/../lib64" 2>/dev/null && pwd)
for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib $nvcc_lib; do
    [ -e "$d/libcublas.so.13" ] && cuda_libs="$cuda_libs:$d"
done
if [ -z "$cuda_libs" ]; then
    py_libs=$(python3 - <<'PY' 2>/dev/null
import glob, os, site
seen = set()
for sp in site.getsitepackages():
    for f in glob.glob(os.path.join(sp, "nvidia", "**", "libcublas*.so*"), recursive=True) + \
             glob.glob(os.path.join(sp, "nvidia", "**", "libcudart.so*"), recursive=True):
        seen.add(os.path.dirname(f))
print(":".join(sorted(seen)))
PY
)
    cuda_libs=":$py_libs"
fi
if [ -x .gpu/bin/test_cuda ] && [ -x .gpu/bin/gpu_probe ]; then
    # the carried binaries must be built from these sources (prepare.sh's stamp)
    if [ "$(cat .gpu/STAMP 2>/dev/null)" != "$(bash tests/gpu/prepare.sh --stamp)" ]; then
        echo "the binaries in .gpu/bin were built from other sources than these: run tests/gpu/prepare.sh again before the device call"
        exit 1
    fi
    BIN=$ROOT/.gpu/bin
    export DOCENT_CUDA_LIB=$BIN/libdocent-cuda.so
    LDP="$ROOT/.gpu/lib$cuda_libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    echo "using the binaries prepare.sh built ($BIN)"
    if command -v nvcc >/dev/null; then
        for cu in llm/cuda/*.cu; do
            nvcc -O2 -std=c++17 -I. -gencode arch=compute_90,code=sm_90 -c "$cu" -o "$WORK/$(basename "$cu" .cu).o" \
                || failed+=("nvcc $cu")
        done
        echo "nvcc here compiles llm/cuda/*.cu: ${failed[*]:-ok}"
    fi
else
    make -j"$(nproc)" BUILD=build-cuda build-cuda/tests/test_cuda build-cuda/gpu/gpu_probe \
        build-cuda/libdocent-cuda.so >"$RES/build.log" 2>&1 ||
        { tail -30 "$RES/build.log"; echo "build failed; on a machine without docent's build dependencies run tests/gpu/prepare.sh first (elsewhere) and carry .gpu"; exit 1; }
    BIN=$ROOT/build-cuda/tests
    export DOCENT_CUDA_LIB=$ROOT/build-cuda/libdocent-cuda.so
    cp build-cuda/gpu/gpu_probe "$BIN/" 2>/dev/null || true
    LDP="${cuda_libs#:}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi
# the carried libraries are for docent's binaries only: Python keeps its own
export DOCENT_LD_PATH=$LDP
run_bin() { LD_LIBRARY_PATH="$LDP" "$@"; }
LD_LIBRARY_PATH="$LDP" ldd "$BIN/gpu_probe" "$BIN/test_cuda" "$DOCENT_CUDA_LIB" | grep "not found" &&
    { echo "missing shared libraries"; exit 1; }

# test_cuda's generator parity runs on the 2-layer cut prepare.sh carries
# (compressed: unpacked here with Python's lzma)
unxz_to() { python3 -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' "$1" "$2"; }
if [ -f .gpu/tiny-q4.gguf.xz ] && unxz_to .gpu/tiny-q4.gguf.xz "$WORK/tiny-q4.gguf"; then
    export DOCENT_TEST_CUDA_GGUF=$WORK/tiny-q4.gguf
fi

step "2. op parity (test_cuda)"
run_bin timeout "$(limit 150 300)" "$BIN/test_cuda" 2>&1 | tee "$RES/test_cuda.log"
rc=${PIPESTATUS[0]}
case $rc in
    0) echo "op parity: passed" ;;
    77) failed+=("test_cuda skipped on a GPU machine"); echo "op parity: SKIPPED - the CUDA backend did not start" ;;
    *) failed+=("test_cuda (exit $rc)") ;;
esac

step "3. copy bandwidth"
bw_json=$(run_bin timeout 30 "$BIN/gpu_probe" copybw cuda 1024 20) || failed+=("copybw")
echo "$bw_json" | tee "$RES/copybw.json"
gbs=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["gb_s"])' "$bw_json" 2>/dev/null || echo 0)

step "3b. quantized weights: kept as blocks (DOCENT_CUDA_QUANT=keep) vs expanded to f16"
# decode-sized matmuls (1 and 8 rows) of 1B-like shapes and SmolLM2's output
# matrix; the faster should be the default (it is f16 until this is measured)
LD_LIBRARY_PATH="$LDP" timeout "$(limit 120 250)" python3 - "$BIN/gpu_probe" "$RES/gemv.json" <<'PY' || failed+=("gemv")
import json, os, subprocess, sys
probe, out = sys.argv[1], sys.argv[2]
rows, bad = [], 0
print("%-6s %-12s %3s %12s %12s %8s %10s %10s" % ("type", "shape", "n", "f16 us", "kept us", "speedup", "f16 GB/s", "kept GB/s"))
for t in ("q4_0", "q4_1", "q8_0"):
    for (r, c) in ((2048, 2048), (8192, 2048), (2048, 8192), (49152, 576)):
        res = {}  # (mode, n): one process per mode times both counts
        for mode in ("f16", "keep"):
            env = dict(os.environ, DOCENT_CUDA_QUANT=mode)
            p = subprocess.run([probe, "gemv", "cuda", t, str(r), str(c), "1,8", "200"],
                               capture_output=True, text=True, env=env)
            if p.returncode:
                print("gemv %s %dx%d %s: %s" % (t, r, c, mode, p.stderr.strip()[-300:]))
                bad += 1
                continue
            for line in p.stdout.splitlines():
                j = json.loads(line)
                res[(mode, j["n"])] = j
        for n in (1, 8):
            if ("f16", n) in res and ("keep", n) in res:
                f, k = res[("f16", n)], res[("keep", n)]
                print("%-6s %-12s %3d %12.2f %12.2f %7.2fx %10.0f %10.0f" % (
                    t, "%dx%d" % (r, c), n, f["us"], k["us"], f["us"] / k["us"], f["weight_gb_s"], k["weight_gb_s"]))
                rows.append({"type": t, "rows": r, "cols": c, "n": n, "f16": f, "keep": k})
json.dump(rows, open(out, "w"), indent=1)
sys.exit(1 if bad else 0)
PY

step "4. model parity and benchmarks"
minilm=()
if [ -f .gpu/minilm-int8/weights.safetensors.xz ]; then
    rm -rf "$WORK/minilm-int8" && cp -r .gpu/minilm-int8 "$WORK/minilm-int8" &&
        unxz_to .gpu/minilm-int8/weights.safetensors.xz "$WORK/minilm-int8/weights.safetensors" &&
        python3 tests/gpu/pack_minilm.py unpack "$WORK/minilm-int8" "$WORK/minilm" && minilm=(--minilm "$WORK/minilm")
elif [ -d models/all-minilm-l6-v2 ]; then
    minilm=(--minilm models/all-minilm-l6-v2)
else
    echo "no MiniLM weights carried (.gpu/minilm-int8): the encoder part is skipped"
fi
shapes=smollm2-135m,llama-1b quick=()
[ "${GPU_CHECK_QUICK:-0}" = 1 ] && shapes=smollm2-135m quick=(--quick)
timeout "$(limit 460 15)" python3 tests/gpu/model_parity.py --probe "$BIN/gpu_probe" --work "$WORK" \
    --json "$RES/model_parity.json" --bench \
    --device "${GPU_CHECK_DEVICE:-cuda}" --backend "${GPU_CHECK_BACKEND:-cuda}" --copy-gbs "$gbs" --shapes "$shapes" "${minilm[@]}" "${quick[@]}" \
    2>&1 | grep -v "Writing model shards\|deprecated\|return forward_call" | tee "$RES/model_parity.log"
rc=${PIPESTATUS[0]}
[ "$rc" = 0 ] || failed+=("model parity (exit $rc)")

step "5. compute-sanitizer memcheck of the op tests"
# last, so that a slow or refused sanitizer costs none of the results above;
# the device must be supported (it was on Firecracker machines, not on gVisor)
# a device call may run 600 s: memcheck takes what is left before the deadline
left=$(limit 240 5)
if [ $left -lt 60 ]; then
    echo "memcheck: skipped, ${left}s left of the call's time"
elif [ "${GPU_CHECK_SANITIZE:-1}" = 1 ] && command -v compute-sanitizer >/dev/null; then
    LD_LIBRARY_PATH="$LDP" DOCENT_MODELS=/nonexistent timeout $left compute-sanitizer --tool memcheck \
        --error-exitcode 9 "$BIN/test_cuda" >"$RES/memcheck.log" 2>&1
    rc=$?
    tail -4 "$RES/memcheck.log"
    case $rc in
        0) echo "memcheck: clean" ;;
        9) failed+=("compute-sanitizer memcheck found errors (memcheck.log)") ;;
        124) echo "memcheck: did not finish in ${left}s (not counted)" ;;
        77) echo "memcheck: test_cuda skipped (no device; step 2 counts that)" ;;
        *) grep -q "Device not supported\|error 999" "$RES/memcheck.log" &&
               echo "memcheck: the sanitizer does not support this machine (not counted)" ||
               failed+=("test_cuda under memcheck (exit $rc)") ;;
    esac
else
    echo "memcheck: skipped (GPU_CHECK_SANITIZE=0 or no compute-sanitizer)"
fi

step "summary"
python3 - "$RES" "${failed[@]}" <<'PY'
import json, os, sys
res, failed = sys.argv[1], sys.argv[2:]
out = {"failed": failed}
for f in ("copybw.json", "gemv.json", "model_parity.json"):
    p = os.path.join(res, f)
    if os.path.exists(p):
        try:
            out[f[:-5]] = json.load(open(p))
        except ValueError:
            pass
json.dump(out, open(os.path.join(res, "gpu_check.json"), "w"), indent=1)
PY
echo "results: $RES/gpu_check.json  (${SECONDS}s)"
if [ ${#failed[@]} -gt 0 ]; then
    echo "GPU CHECK FAILED: ${failed[*]}"
    exit 1
fi
echo "GPU CHECK PASSED"
