#!/usr/bin/env bash
# engine.sh - docent's engine against the reference engines, same inputs, same
# models, 2 threads each.  See bench/README.md for the targets.
#
#   bench/engine.sh [BUILD]        (make bench runs it; BUILD defaults to build)
#
# 1. builds BUILD/docent, BUILD/libdocent.a and BUILD/bench/embed_bench;
# 2. cuts 128- and 256-token prompts and embedding chunks from the documentation
#    passages in tests/fixtures/embed (bench/reference.py prep);
# 3. generation: `docent generate -n 128 --temp 0 --stats` (3 runs, medians of
#    its prompt and decode tok/s) vs llama.cpp via llama-cpp-python on the same
#    GGUF, the same prompt text and the same number of generated tokens;
# 4. embeddings: bench/embed_bench (batch 32) vs sentence-transformers (torch
#    threads 2, batch 32) on 64 chunks of 128 and of 256 tokens;
# and prints each pair with the ratio docent / reference.
# Needs the reference packages: pip install -r tests/reference/requirements.txt.
# Exits non-zero if a measurement is missing (e.g. no --stats line).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
THREADS=2
REPS=3
NGEN=128
GGUF=models/smollm2-135m-instruct-q4_1.gguf
EMBEDDER=models/all-minilm-l6-v2
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false

die() { echo "engine.sh: $*" >&2; exit 1; }
for m in "$GGUF" "$EMBEDDER"; do [ -e "$m" ] || die "$m is missing (run make models)"; done
python3 -c 'import llama_cpp, sentence_transformers' 2>/dev/null ||
    die "reference packages missing: pip install -r tests/reference/requirements.txt"

make --no-print-directory -j2 BUILD="$BUILD" "$BUILD/docent" "$BUILD/bench/embed_bench" >/dev/null

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
python3 bench/reference.py prep "$WORK" 2>/dev/null

median() { sort -g | awk '{a[NR] = $1} END {if (NR) print a[int((NR + 1) / 2)]; else exit 1}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2fx", (b > 0 ? a / b : 0)}'; }

echo "docent vs llama.cpp: $GGUF, $THREADS threads, greedy, median of $REPS runs"
for n in 128 256; do
    prompt=$(cat "$WORK/prompt$n.txt")
    : >"$WORK/runs"
    for r in $(seq "$REPS"); do
        "$BUILD/docent" generate -m "$GGUF" --threads "$THREADS" -n "$NGEN" --temp 0 --stats \
            "$prompt" >/dev/null 2>"$WORK/stderr" || { cat "$WORK/stderr" >&2; die "docent generate failed"; }
        line=$(grep -E 'prompt: *[0-9]+ tokens' "$WORK/stderr" | tail -n 1) ||
            { cat "$WORK/stderr" >&2; die "no 'prompt: N tokens, X tok/s; generate: ...' line from --stats"; }
        # prompt: N tokens, X tok/s; generate: M tokens, Y tok/s (...)
        echo "$line" | sed -nE 's/.*prompt: *([0-9]+) tokens, *([0-9.]+) tok\/s; *generate: *([0-9]+) tokens, *([0-9.]+) tok\/s.*/\1 \2 \3 \4/p' >>"$WORK/runs"
    done
    [ "$(wc -l <"$WORK/runs")" -eq "$REPS" ] || die "could not parse the --stats line: $line"
    d_np=$(awk '{print $1}' "$WORK/runs" | median)
    d_pp=$(awk '{print $2}' "$WORK/runs" | median)
    d_ng=$(awk '{print $3}' "$WORK/runs" | median)
    d_tg=$(awk '{print $4}' "$WORK/runs" | median)
    [ "$d_ng" -gt 0 ] || die "docent generated no tokens"
    ref=$(python3 bench/reference.py llama "$WORK/prompt$n.txt" "$d_ng" "$REPS" 2>/dev/null | grep '^llama.cpp') ||
        die "llama.cpp reference run failed"
    r_pp=$(echo "$ref" | sed -nE 's/.*prompt: *[0-9]+ tokens, *([0-9.]+) tok\/s.*/\1/p')
    r_tg=$(echo "$ref" | sed -nE 's/.*generate: *[0-9]+ tokens, *([0-9.]+) tok\/s.*/\1/p')
    r_np=$(echo "$ref" | sed -nE 's/.*prompt: *([0-9]+) tokens.*/\1/p')
    printf '  prompt %3s tok: docent %7.1f tok/s (%s tok)  llama.cpp %7.1f tok/s (%s tok)  ratio %s\n' \
        "$n" "$d_pp" "$d_np" "$r_pp" "$r_np" "$(ratio "$d_pp" "$r_pp")"
    printf '  decode %3s tok: docent %7.1f tok/s            llama.cpp %7.1f tok/s            ratio %s  (after a %s-token prompt)\n' \
        "$d_ng" "$d_tg" "$r_tg" "$(ratio "$d_tg" "$r_tg")" "$n"
done

echo "docent vs sentence-transformers: $EMBEDDER, $THREADS threads, batch 32, median of $REPS runs"
for n in 128 256; do
    d=$("$BUILD/bench/embed_bench" "$EMBEDDER" "$WORK/chunks$n.txt" "$REPS" "$THREADS") ||
        die "embed_bench failed"
    d_cps=$(echo "$d" | sed -nE 's/^docent: *[0-9]+ chunks, *([0-9.]+) chunks\/s.*/\1/p')
    s=$(python3 bench/reference.py st "$WORK/chunks$n.txt" "$REPS" 2>/dev/null | grep '^sentence') ||
        die "sentence-transformers reference run failed"
    s_cps=$(echo "$s" | sed -nE 's/.*, *([0-9.]+) chunks\/s.*/\1/p')
    [ -n "$d_cps" ] && [ -n "$s_cps" ] || die "could not parse: '$d' / '$s'"
    printf '  %3s-token chunks: docent %7.1f chunks/s  sentence-transformers %7.1f chunks/s  ratio %s\n' \
        "$n" "$d_cps" "$s_cps" "$(ratio "$d_cps" "$s_cps")"
done
