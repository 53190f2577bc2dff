#!/usr/bin/env bash
# remote.test.sh BUILD - remote backends end to end, against real peers on loopback.
#
# (a) A second docentd serves as the remote (its OpenAI-compatible routes on a
#     loopback TCP port, with API keys):
#     - `docent ask --local --generator http://127.0.0.1:PORT/v1#docent-generator`
#       (the peer's generator alone; an admin key) answers a
#       question over a small ingested corpus: streamed (text before the
#       summary), with citations of stored documents;
#     - `docent ingest --embedder http://127.0.0.1:PORT/v1#EMBEDDER` embeds a
#       corpus into a fresh store through it; the store records the identity
#       "remote:EMBEDDER"; `docent search` with the same URL finds the expected
#       page first; the local embedder on that store is refused (identity).
#     - a generator URL nobody listens on: exit 1, the message names the URL;
#     - docent-generator refuses a non-admin key, and gives a plain completion;
#     - a docentd whose remote generator hangs (tests/remote_faults.py "hang")
#       still serves searches, refuses a second question after queue_timeout_s,
#       and fails the hung answer after [remote] idle_timeout_s, saying so.
# (b) llama.cpp's server (llama-cpp-python[server]) serving the default GGUF for
#     chat, with the docentd peer for embeddings: the same ask.  Only when
#     `import llama_cpp.server.app` works; with DOCENT_TEST_LONG=1 the server
#     extras are installed into BUILD/venv-llama first.
# Exit 77 with the reason when something it needs is missing.
set -u
B=${1:-build}
. "$(dirname "$0")/daemon_env.sh"

T=$(mktemp -d /tmp/docent-remote-XXXXXX)
chmod 755 "$T"
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done
    rm -rf "$T"
}
trap cleanup EXIT
export DOCENT_CONFIG="$root/etc/docent.conf"
unset DOCENT_SOCKET
freeport() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
Q="How does AUTOINCREMENT choose a new rowid?"

# ---- the corpus, ingested locally (the peer and the asking side share it) -----
mkdir -p "$T/docs" "$T/run"
chmod 750 "$T/run"
cp "$SQ/wal.html" "$SQ/autoinc.html" "$SQ/lang_upsert.html" "$T/docs/"
t0=$(date +%s.%N)
"$D" ingest -q --local --data "$T/data" "${O[@]}" -c docs "$T/docs" || { echo "FAIL: ingest"; exit 1; }
echo "local ingest: $(python3 -c "print(round($(date +%s.%N) - $t0, 2))") s"

# ---- (a) the docentd peer ---------------------------------------------------------
SOCK=$T/run/peer.sock
PORT=$(freeport)
# the asking side generates with the peer's model "docent-generator" (the
# generator alone: admins only, so its key is an admin's) and embeds through it
KEY=peer-$RANDOM$RANDOM
"$DD" --socket "$SOCK" --data "$T/data" "${O[@]}" --http "127.0.0.1:$PORT" \
    -o "daemon.api_keys=peer:$KEY,guest:guest-$KEY" -o daemon.admins=key:peer > "$T/peer.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 150); do [ -S "$SOCK" ] && break; sleep 0.1; done
[ -S "$SOCK" ] || { echo "FAIL: the peer docentd did not start:"; cat "$T/peer.log"; exit 1; }
# anonymous loopback callers read collections whose readers include "*"
curl -s --unix-socket "$SOCK" -X POST http://d/v1/collections -d '{"name": "docs", "readers": "*"}' > /dev/null
BASE="http://127.0.0.1:$PORT/v1"
GBASE="$BASE#docent-generator"
O+=(-o "remote.api_key=$KEY")
EMBNAME=$(curl -s -H "Authorization: Bearer $KEY" "$BASE/models" | j 'd["data"][1]["id"]')
[ "$EMBNAME" = all-minilm-l6-v2 ] && ok "peer lists its models (docent, $EMBNAME)" || bad "peer /v1/models: $EMBNAME"

# ask through the peer as the generator (streamed: text reaches stdout before the summary on stderr)
t0=$(date +%s.%N)
"$D" ask --local --data "$T/data" "${O[@]}" --generator "$GBASE" -c docs "$Q" > "$T/ask.out" 2> "$T/ask.err"
rc=$?
echo "remote ask (docentd peer): $(python3 -c "print(round($(date +%s.%N) - $t0, 2))") s"
if [ $rc -eq 0 ] && [ -s "$T/ask.out" ]; then ok "docent ask --generator URL: an answer"; else
    bad "ask --generator: rc $rc $(head -c 600 "$T/ask.out") $(cat "$T/ask.err")"; fi
"$D" ask --local --json --data "$T/data" "${O[@]}" --generator "$GBASE" -c docs "$Q" > "$T/ask.json" 2> "$T/ask.err"
python3 - "$T/ask.json" "$T/docs" <<'EOF' && ok "ask --json through the peer: answer, citations of stored documents, usage, timings" || bad "ask --json: $(head -c 800 "$T/ask.json") $(cat "$T/ask.err")"
import json, sys
d = json.load(open(sys.argv[1]))
assert d["answer"], d
assert d["citations"], "no citations"
assert all(c["uri"].startswith(sys.argv[2]) for c in d["citations"]), d["citations"]
assert d["usage"]["completion_tokens"] > 0, d["usage"]
assert "timings" in d, d.keys()
EOF
# streamed: the answer's text arrives in more than one piece (docentd streams, so do we)
python3 - "$D" "$T" "$BASE" "${O[@]}" <<'EOF' && ok "ask --generator URL streams (several writes before the end)" || bad "not streamed"
import subprocess, sys, time
d, t, base, o = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
p = subprocess.Popen([d, "ask", "--local", "--data", t + "/data", *o, "--generator", base + "#docent-generator", "-c", "docs",
                      "What is write-ahead logging?"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
import os
chunks, first = 0, None
while True:
    b = os.read(p.stdout.fileno(), 65536)
    if not b:
        break
    chunks += 1
    first = first or time.time()
p.wait()
assert p.returncode == 0 and chunks >= 2, (p.returncode, chunks)
EOF

# the generator alone is for admins: another key gets 403, naming the rule
r=$(curl -s -H "Authorization: Bearer guest-$KEY" "$BASE/chat/completions" \
    -d '{"model": "docent-generator", "messages": [{"role": "user", "content": "hi"}]}')
echo "$r" | grep -q "needs an admin" && ok "docent-generator refused to a non-admin key (403)" || bad "non-admin generator: $r"
# and it generates from the messages as given (no retrieval: no Sources list appended)
r=$(curl -s -H "Authorization: Bearer $KEY" "$BASE/chat/completions" \
    -d '{"model": "docent-generator", "max_tokens": 16, "messages": [{"role": "user", "content": "Say hello."}]}')
echo "$r" | j '1 if d["choices"][0]["message"]["content"] and "Sources:" not in d["choices"][0]["message"]["content"] and d["usage"]["completion_tokens"] > 0 else 0' \
    | grep -q 1 && ok "docent-generator: a plain completion with usage" || bad "docent-generator: $r"

# ingest through the peer as the embedder, into a fresh store
mkdir -p "$T/docs2"
cp "$SQ/wal.html" "$SQ/autoinc.html" "$SQ/lang_upsert.html" "$T/docs2/"
t0=$(date +%s.%N)
if "$D" ingest -q --local --data "$T/data2" "${O[@]}" --embedder "$BASE#$EMBNAME" -c docs "$T/docs2" 2> "$T/ing.err"; then
    echo "remote ingest: $(python3 -c "print(round($(date +%s.%N) - $t0, 2))") s"
    ok "docent ingest --embedder URL#MODEL"
else bad "ingest --embedder: $(cat "$T/ing.err")"; fi
out=$("$D" search --local --json --data "$T/data2" "${O[@]}" --embedder "$BASE#$EMBNAME" "write-ahead log checkpoint" 2>&1)
echo "$out" | j 'd["results"][0]["uri"]' 2>/dev/null | grep -q wal.html && ok "search through the remote embedder: wal.html first" \
    || bad "search via remote embedder: $(echo "$out" | head -c 600)"
out=$("$D" status --local --json --data "$T/data2" "${O[@]}" 2>&1; sqlite3 "$T/data2/docent.db" "select * from meta" 2>/dev/null)
echo "$out" | grep -q "remote:$EMBNAME" && ok "the store records the embedder remote:$EMBNAME" || bad "identity: $(echo "$out" | head -c 400)"
out=$("$D" search --local --data "$T/data2" "${O[@]}" "write-ahead log" 2>&1); rc=$?
[ $rc -ne 0 ] && ok "the local embedder on a remote-built store is refused (rc $rc)" || bad "local embedder accepted: $out"

# unreachable generator: a clear error naming the URL
DEAD="http://127.0.0.1:$(freeport)/v1"
out=$("$D" ask --local --data "$T/data" "${O[@]}" -o remote.retries=0 --generator "$DEAD" -c docs "$Q" 2>&1); rc=$?
[ $rc -eq 1 ] && echo "$out" | grep -q "$DEAD.*cannot connect" && ok "a dead remote: exit 1, '$DEAD ... cannot connect'" \
    || bad "dead remote: rc $rc $out"

# ---- a hung remote does not hold up the daemon's other work ---------------------------
# a third docentd whose generator is the fault server's "hang" mode (one piece, then nothing)
python3 "$root/tests/remote_faults.py" > "$T/faults.port" 2> "$T/faults.log" &
pids+=($!)
for _ in $(seq 1 50); do [ -s "$T/faults.port" ] && break; sleep 0.1; done
FPORT=$(head -1 "$T/faults.port")
HSOCK=$T/run/hung.sock
"$DD" --socket "$HSOCK" --data "$T/data" "${O[@]}" --generator "http://127.0.0.1:$FPORT/hang/v1#fake-chat" \
    -o remote.idle_timeout_s=4 -o remote.retries=0 -o daemon.queue_timeout_s=1 -o daemon.parallel=1 \
    > "$T/hung.log" 2>&1 &
hpid=$!
pids+=($hpid)
for _ in $(seq 1 300); do curl -sf --unix-socket "$HSOCK" http://d/healthz > /dev/null 2>&1 && break; sleep 0.1; done
HC=(curl -s --unix-socket "$HSOCK")
"${HC[@]}" -X POST http://d/v1/ask -d "{\"question\": \"$Q\", \"collection\": \"docs\"}" > "$T/hung.json" &
apid=$!
sleep 1
t0=$(date +%s.%N)
n=$("${HC[@]}" -X POST http://d/v1/search -d '{"query": "rowid", "collection": "docs"}' | j 'len(d["results"])')
ts=$(python3 -c "print(round($(date +%s.%N) - $t0, 2))")
[ "$n" -ge 1 ] && kill -0 $apid 2>/dev/null && ok "a search is served (${ts}s) while the remote generator hangs" ||
    bad "search while the remote hangs: $n results, ask done already: $(cat "$T/hung.json")"
r=$("${HC[@]}" -X POST http://d/v1/ask -d "{\"question\": \"$Q\", \"collection\": \"docs\"}")
echo "$r" | grep -q '"busy"' && ok "a second question gets 503 busy after queue_timeout_s" || bad "second ask: $r"
wait $apid
grep -q "incomplete\|no data\|idle\|timed out\|timeout" "$T/hung.json" &&
    ok "the hung answer fails after idle_timeout_s, saying so: $(j 'd["error"]["message"][:90]' < "$T/hung.json")" ||
    bad "hung answer: $(cat "$T/hung.json")"
[ "$("${HC[@]}" http://d/healthz | j 'd["status"]')" = ok ] && ok "the daemon is fine afterwards" || bad "daemon after the hang"
kill -TERM $hpid; wait $hpid; rc=$?
[ $rc -eq 0 ] && ok "it stops with exit 0" || bad "hung-remote daemon exit $rc"

# ---- (b) llama.cpp's server -----------------------------------------------------------
PY=python3
if ! python3 -c 'import llama_cpp.server.app' 2>/dev/null && [ "${DOCENT_TEST_LONG:-0}" = 1 ]; then
    V="$root/$B/venv-llama"
    if [ ! -x "$V/bin/python" ]; then
        { python3 -m venv --system-site-packages "$V" &&
          "$V/bin/pip" install -q uvicorn fastapi sse-starlette starlette-context pydantic-settings; } > "$T/venv.log" 2>&1
    fi
    PY="$V/bin/python"
fi
if "$PY" -c 'import llama_cpp.server.app' 2>/dev/null; then
    LPORT=$(freeport)
    "$PY" -m llama_cpp.server --model "$GEN" --host 127.0.0.1 --port "$LPORT" --n_ctx 4096 \
        --model_alias smollm2 > "$T/llama.log" 2>&1 &
    pids+=($!)
    for _ in $(seq 1 300); do curl -s "http://127.0.0.1:$LPORT/v1/models" > /dev/null 2>&1 && break; sleep 0.2; done
    LBASE="http://127.0.0.1:$LPORT/v1"
    t0=$(date +%s.%N)
    "$D" ask --local --json --data "$T/data2" "${O[@]}" --generator "$LBASE" --embedder "$BASE#$EMBNAME" \
        -c docs "$Q" > "$T/lask.json" 2> "$T/lask.err"
    echo "remote ask (llama.cpp server): $(python3 -c "print(round($(date +%s.%N) - $t0, 2))") s"
    python3 - "$T/lask.json" "$T/docs2" <<'EOF' && ok "llama.cpp server as the generator: answer with citations" || bad "llama.cpp ask: $(head -c 600 "$T/lask.json") $(cat "$T/lask.err") $(tail -5 "$T/llama.log")"
import json, sys
d = json.load(open(sys.argv[1]))
assert d["answer"], d
assert all(c["uri"].startswith(sys.argv[2]) for c in d["citations"]), d["citations"]
EOF
else
    echo "skipped (b): llama.cpp's server is not importable ($("$PY" -c 'import llama_cpp.server.app' 2>&1 | tail -1)); run with DOCENT_TEST_LONG=1 to install its extras into $B/venv-llama"
fi

[ $fails -eq 0 ] && echo "all remote checks passed" || echo "$fails remote checks failed"
[ $fails -eq 0 ]
