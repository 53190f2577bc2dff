#!/usr/bin/env bash
# run.sh BUILD SECONDS - run each libFuzzer target for SECONDS on its own seed
# corpus, made at run time from real files (nothing binary is committed):
#   fuzz_gguf  the first 64 KiB of the default GGUF (header, metadata, tokenizer start)
#   fuzz_html  the first 6 KB of real sqlite3-doc and postgresql-doc-15 pages
#   fuzz_md    tests/fixtures/docs/sample.md and this repository's docs/*.md
#   fuzz_docx  tests/fixtures/docs/sample.docx (pandoc-made)
#   fuzz_route docentd's routes: a few requests of each kind (see fuzz_route.c)
# Exits non-zero if a target finds a crash, a leak or a timeout.
set -euo pipefail
BUILD=${1:-build}
SECS=${2:-300}
cd "$(dirname "$0")/../.."
seeds=$(mktemp -d)
trap 'rm -rf "$seeds"' EXIT
mkdir -p "$seeds"/{gguf,html,md,docx,route}
head -c 65536 models/smollm2-135m-instruct-q4_1.gguf > "$seeds/gguf/smollm2-head.gguf"
printf 'GGUF\003\000\000\000' > "$seeds/gguf/minimal.gguf"
for f in /usr/share/doc/sqlite3/lang_createtable.html /usr/share/doc/sqlite3/fts5.html \
         /usr/share/doc/postgresql-doc-15/html/ddl-constraints.html \
         /usr/share/doc/postgresql-doc-15/html/tutorial-join.html; do
    [ -f "$f" ] && head -c 6000 "$f" > "$seeds/html/$(basename "$f")"
done
cp tests/fixtures/docs/sample.md docs/*.md "$seeds/md/"
cp tests/fixtures/docs/sample.docx "$seeds/docx/"
# route: "<caller byte>METHOD PATH\n" + body, as fuzz_route.c reads them
printf '\000POST /v1/search\n{"query": "write-ahead logging", "k": 3}' > "$seeds/route/search"
printf '\001POST /v1/search\n{"query": "budget", "collection": "private"}' > "$seeds/route/search-private"
printf '\000POST /v1/ask\n{"question": "What is WAL?", "stream": true, "max_tokens": 8}' > "$seeds/route/ask"
printf '\000POST /v1/chat/completions\n{"model": "docent", "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]}' > "$seeds/route/chat"
printf '\000POST /v1/embeddings\n{"input": ["a", "b"]}' > "$seeds/route/embed"
printf '\000POST /v1/chat/completions\n{"model": "docent-generator", "max_tokens": 4, "stop": ["x"], "messages": [{"role": "user", "content": "hi"}]}' > "$seeds/route/generator"
printf '\000POST /v1/chat/completions\n{"model": "docent-generator", "stream": true, "messages": [{"role": "user", "content": "hi"}]}' > "$seeds/route/generator-stream"
printf '\000POST /v1/ask\n{"question": "And then?", "history": [{"question": "What is WAL?", "answer": "A log."}], "max_tokens": 4}' > "$seeds/route/ask-history"
printf '\000POST /v1/search\n{"query": "wal", "mode": "bm25", "k": 2}' > "$seeds/route/search-bm25"
printf '\001GET /v1/documents\n' > "$seeds/route/documents"
printf '\000GET /v1/status\n' > "$seeds/route/status"
printf '\000GET /v1/jobs/1\n' > "$seeds/route/job"
printf '\000GET /metrics\n' > "$seeds/route/metrics"
for t in "$BUILD"/fuzz/fuzz_*; do
    name=${t##*/fuzz_}
    [ -d "$seeds/$name" ] || { echo "fuzz: no seed corpus for $t"; exit 1; }
    echo "== $t for ${SECS}s"
    rc=0
    "$t" -max_total_time="$SECS" -rss_limit_mb=2048 -print_final_stats=1 "$seeds/$name" \
        >"$seeds/log" 2>&1 || rc=$?
    grep -E "stat::number_of_executed_units|ERROR|SUMMARY|Done" "$seeds/log" || true
    [ "$rc" -eq 0 ] || { echo "fuzz: $t found a problem (exit $rc)"; tail -30 "$seeds/log"; exit 1; }
done
