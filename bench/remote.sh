#!/usr/bin/env bash
# remote.sh - answer latency through remote generators vs the local engine, on
# the same model (SmolLM2-135M Q4_1), store, questions, budget and sampling.
#
#   local      docent ask --local (the in-process engine)
#   docentd    --generator http://127.0.0.1:P/v1#docent-generator: a second
#              docentd's generator alone (its OpenAI route with the model
#              "docent-generator", for admin keys), on loopback TCP
#   llama.cpp  --generator http://127.0.0.1:P/v1: llama-cpp-python's server
#              (only when BUILD/venv-llama or python3 can import llama_cpp.server.app)
#
# Each row is the p50 over the questions of docent's own timings (ask --json):
# total, first text, the remote's (or the engine's) part = prefill + decode, and
# docent's own overhead = guard + rewrite + embed + retrieve + prompt + cite +
# filter.  Threads: 2 for every engine.  ANSWER_TOKENS (default 96) caps answers;
# SKIP_LLAMA=1 leaves llama.cpp out.
# The remote runs count tokens with the GGUF's tokenizer ([remote] tokenizer), as
# the local run does; the "-est" rows use the default estimate instead.
set -euo pipefail
cd "$(dirname "$0")/.."
B=${BUILD:-build}
EMB=$PWD/models/all-minilm-l6-v2
GEN=$PWD/models/smollm2-135m-instruct-q4_1.gguf
export DOCENT_CONFIG=$PWD/etc/docent.conf
unset DOCENT_SOCKET
NTOK=${ANSWER_TOKENS:-96}
W=$(mktemp -d /tmp/docent-bench-remote-XXXXXX)
pids=()
trap 'for p in "${pids[@]}"; do kill -9 $p 2>/dev/null; done; rm -rf "$W"' EXIT
freeport() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
O=(-o models.embedder="$EMB" -o models.generator="$GEN" -o models.threads=2 -o answer.answer_tokens=$NTOK)

mkdir -p "$W/docs" "$W/run" && chmod 750 "$W/run"
for p in wal autoinc lang_upsert lang_altertable lang_createindex; do cp "/usr/share/doc/sqlite3/$p.html" "$W/docs/"; done
"$B/docent" ingest -q --local --data "$W/data" "${O[@]}" -c docs "$W/docs" > /dev/null
cat > "$W/q.txt" <<'EOF'
How does AUTOINCREMENT choose a new rowid?
What does the WAL journal mode do?
How do I add a new column to an existing table?
What is an upsert in SQLite?
EOF

SOCK=$W/run/peer.sock PORT=$(freeport)
KEY=bench-$RANDOM$RANDOM
"$B/docentd" --socket "$SOCK" --data "$W/data" "${O[@]}" --http "127.0.0.1:$PORT" \
    -o "daemon.api_keys=bench:$KEY" -o daemon.admins=key:bench > "$W/peer.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 150); do [ -S "$SOCK" ] && break; sleep 0.1; done
curl -s --unix-socket "$SOCK" -X POST http://d/v1/collections -d '{"name": "docs", "readers": "*"}' > /dev/null

PY=python3
[ -x "$B/venv-llama/bin/python" ] && PY=$B/venv-llama/bin/python
LBASE=""
if [ "${SKIP_LLAMA:-0}" != 1 ] && "$PY" -c 'import llama_cpp.server.app' 2>/dev/null; then
    LPORT=$(freeport)
    "$PY" -m llama_cpp.server --model "$GEN" --host 127.0.0.1 --port "$LPORT" --n_ctx 4096 \
        --n_threads 2 --model_alias smollm2 > "$W/llama.log" 2>&1 &
    pids+=($!)
    for _ in $(seq 1 300); do curl -s "http://127.0.0.1:$LPORT/v1/models" > /dev/null 2>&1 && break; sleep 0.2; done
    LBASE="http://127.0.0.1:$LPORT/v1"
fi

run() { # name, extra args...
    local name=$1; shift
    : > "$W/$name.jsonl"
    while read -r q; do
        "$B/docent" ask --local --json --data "$W/data" "${O[@]}" "$@" -c docs "$q" >> "$W/$name.jsonl" 2> "$W/$name.err" ||
            echo "{\"error\": \"$(head -c 200 "$W/$name.err" | tr -d '"\n')\"}" >> "$W/$name.jsonl"
    done < "$W/q.txt"
}
run local
G="http://127.0.0.1:$PORT/v1#docent-generator"
run docentd --generator "$G" -o remote.api_key="$KEY" -o remote.tokenizer="$GEN"
run docentd-est --generator "$G" -o remote.api_key="$KEY"
[ -n "$LBASE" ] && run llamacpp --generator "$LBASE" -o remote.tokenizer="$GEN"
[ -n "$LBASE" ] && run llamacpp-est --generator "$LBASE"

python3 - "$W" <<'EOF'
import json, os, statistics, sys
w = sys.argv[1]
print(f"{'generator':10} {'n':>2} {'total':>7} {'first':>7} {'gen part':>8} {'docent':>8}  tokens(prompt/answer)  (p50 seconds)")
for name in ["local", "docentd", "docentd-est", "llamacpp", "llamacpp-est"]:
    f = os.path.join(w, name + ".jsonl")
    if not os.path.exists(f):
        print(f"{name:10} skipped (no server)")
        continue
    rows = [json.loads(l) for l in open(f) if l.strip()]
    errs = [r["error"] for r in rows if "error" in r]
    rows = [r for r in rows if "timings" in r]
    if not rows:
        print(f"{name:10} failed: {errs[:1]}")
        continue
    t = [r["timings"] for r in rows]
    p50 = lambda xs: statistics.median(xs)
    own = [x["guard"] + x["rewrite"] + x["embed"] + x["retrieve"] + x["prompt"] + x["cite"] + x["filter"] for x in t]
    print(f"{name:10} {len(rows):>2} {p50([x['total'] for x in t]):7.2f} {p50([x['first_text'] for x in t]):7.2f} "
          f"{p50([x['prefill'] + x['decode'] for x in t]):8.2f} {p50(own)*1000:6.1f}ms  "
          f"{p50([r['usage']['prompt_tokens'] for r in rows]):.0f}/{p50([r['usage']['completion_tokens'] for r in rows]):.0f}"
          + (f"  ({len(errs)} errors: {errs[0][:80]})" if errs else ""))
EOF
