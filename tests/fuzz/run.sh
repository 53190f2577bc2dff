#!/usr/bin/env bash
# run.sh BUILD SECONDS - run each libFuzzer target for SECONDS on a seed corpus
# made from the real models (the first 64 KiB of the GGUF: header, metadata,
# tokenizer start).  Exits non-zero if a target finds a crash.
set -euo pipefail
BUILD=${1:-build}
SECS=${2:-300}
cd "$(dirname "$0")/../.."
corpus=$(mktemp -d)
trap 'rm -rf "$corpus"' EXIT
head -c 65536 models/smollm2-135m-instruct-q4_1.gguf > "$corpus/smollm2-head.gguf"
printf 'GGUF\003\000\000\000' > "$corpus/minimal.gguf"
for t in "$BUILD"/fuzz/fuzz_*; do
    echo "== $t for ${SECS}s"
    rc=0
    "$t" -max_total_time="$SECS" -rss_limit_mb=2048 -print_final_stats=1 "$corpus" >"$corpus.log" 2>&1 || rc=$?
    grep -E "stat::number_of_executed_units|ERROR|SUMMARY|Done" "$corpus.log" || true
    rm -f "$corpus.log"
    [ "$rc" -eq 0 ] || { echo "fuzz: $t found a problem (exit $rc)"; exit 1; }
done
