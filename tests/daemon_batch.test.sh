#!/usr/bin/env bash
# daemon_batch.test.sh - concurrent answers on one generator instance
# ([daemon] parallel): their decode steps run as one batch, and batching
# changes nothing in what a caller gets.  A real daemon on a temporary socket,
# the default models, six real pages from sqlite3-doc.
#
#   - three questions asked one after another: every decode step served one
#     answer (decode_tokens == decode_steps in /v1/status);
#   - the same three at once: none waited for a slot, some steps served
#     several answers, and each answer (text, citations, stop) is identical
#     to the one it got alone (greedy decoding; on the CPU a batched step's
#     logits are bit-identical to a single one's);
#   - three streams at once, one client hanging up after its first token: the
#     other two complete with the same answers as alone, and the daemon goes
#     on serving;
#   - five at once with parallel = 3: all answered, two after waiting;
#   - generators x parallel over 64 is refused by --check-config, naming both.
set -u
B=${1:-build}
. "$(dirname "$0")/daemon_env.sh"

T=$(mktemp -d /tmp/docent-batch-XXXXXX)
pid=""
cleanup() {
    [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null
    rm -rf "$T"
}
trap cleanup EXIT
export DOCENT_CONFIG="$root/etc/docent.conf"

mkdir -p "$T/run" "$T/pages"
chmod 750 "$T/run"
cp "$SQ/wal.html" "$SQ/autoinc.html" "$SQ/lang_upsert.html" "$SQ/lang_vacuum.html" \
    "$SQ/lang_savepoint.html" "$SQ/foreignkeys.html" "$T/pages/"
"$D" ingest -q --data "$T/data" "${O[@]}" "$T/pages" > "$T/ingest.log" 2>&1 ||
    { echo "FAIL: ingest: $(tail -5 "$T/ingest.log")"; exit 1; }

SOCK=$T/run/docentd.sock
C=(curl -s --unix-socket "$SOCK")
"$DD" --socket "$SOCK" --data "$T/data" "${O[@]}" -o daemon.generators=1 -o daemon.parallel=3 \
    -o daemon.queue_timeout_s=600 > "$T/docentd.log" 2>&1 &
pid=$!
for _ in $(seq 1 600); do "${C[@]}" -f http://d/healthz > /dev/null 2>&1 && break; sleep 0.1; done
"${C[@]}" -f http://d/healthz > /dev/null 2>&1 || { echo "FAIL: docentd did not start:"; cat "$T/docentd.log"; exit 1; }

Q=("How does AUTOINCREMENT choose a new rowid?"
   "What does the VACUUM command do?"
   "How do I make a transaction savepoint and roll back to it?")
body() { python3 -c "import json,sys; print(json.dumps({'question': sys.argv[1], 'max_tokens': 48}))" "$1"; }
ask() { "${C[@]}" -X POST http://d/v1/ask -d "$(body "$1")" > "$2"; }
decode() { "${C[@]}" http://d/v1/status | j "'%d %d' % (d['queue']['decode_steps'], d['queue']['decode_tokens'])"; }
# what a caller gets, without the timings
same() {
    python3 - "$1" "$2" <<'EOF'
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
def key(d):
    return (d.get("answer"), d.get("stop"), [(c.get("uri"), c.get("n")) for c in d.get("citations", [])])
sys.exit(0 if key(a) == key(b) else 1)
EOF
}

# ---- alone, one after another --------------------------------------------------
for i in 0 1 2; do ask "${Q[$i]}" "$T/alone$i.json"; done
read -r s0 t0 <<< "$(decode)"
n_ok=0
for i in 0 1 2; do
    a=$(j 'd.get("answer", "")' < "$T/alone$i.json")
    [ -n "$a" ] && n_ok=$((n_ok + 1)) || bad "alone $i: $(head -c 300 "$T/alone$i.json")"
done
[ "$n_ok" = 3 ] && [ "$s0" -gt 0 ] && [ "$s0" = "$t0" ] &&
    ok "3 answers one after another: $t0 tokens in $s0 steps, one answer per step" ||
    bad "alone: $n_ok answers, decode steps $s0 tokens $t0 (want equal)"

# ---- together ------------------------------------------------------------------
ps=()
for i in 0 1 2; do ask "${Q[$i]}" "$T/par$i.json" & ps+=($!); done
wait "${ps[@]}"
read -r s1 t1 <<< "$(decode)"
ds=$((s1 - s0)) dt=$((t1 - t0))
[ "$dt" -gt "$ds" ] && ok "3 answers at once: $dt tokens in $ds steps (mean batch $(python3 -c "print(round($dt / $ds, 2))"))" ||
    bad "3 answers at once were not batched: $dt tokens in $ds steps"
for i in 0 1 2; do
    q=$(j 'd["timings"]["queue"]' < "$T/par$i.json" 2>/dev/null || echo "?")
    same "$T/alone$i.json" "$T/par$i.json" && ok "answer $i batched = alone (queued ${q}s)" ||
        bad "answer $i differs batched:
  $(j 'd.get("answer")' < "$T/par$i.json" 2>&1 | head -c 300)
alone:
  $(j 'd.get("answer")' < "$T/alone$i.json" | head -c 300)"
done
maxq=$(cat "$T"/par*.json | python3 -c "import json,sys; print(max(json.loads(l)['timings']['queue'] for l in sys.stdin if l.strip()))")
python3 -c "import sys; sys.exit(0 if $maxq < 1.0 else 1)" && ok "none of the 3 waited for a slot (max ${maxq}s)" ||
    bad "with parallel = 3 an answer waited ${maxq}s for a slot"

# ---- streams, one client hanging up ------------------------------------------------
sse() { exec "${C[@]}" -N -X POST http://d/v1/ask -H 'Accept: text/event-stream' -d "$(body "$1")" > "$2"; }
sse "${Q[0]}" "$T/s0.sse" & p0=$!
sse "${Q[1]}" "$T/s1.sse" & p1=$!
sse "${Q[2]}" "$T/s2.sse" & p2=$!
for _ in $(seq 1 300); do grep -q "^event: token" "$T/s1.sse" 2>/dev/null && break; sleep 0.1; done
kill "$p1" 2>/dev/null
wait "$p0" "$p2"
for i in 0 2; do
    # the done event carries the whole answer
    python3 - "$T/s$i.sse" "$T/alone$i.json" <<'EOF' && ok "stream $i completed as alone while another client hung up" || bad "stream $i: $(tail -c 400 "$T/s$i.sse")"
import json, sys
ev = None
done = None
for line in open(sys.argv[1]):
    if line.startswith("event: "):
        ev = line[7:].strip()
    elif line.startswith("data: ") and ev == "done":
        done = json.loads(line[6:])
alone = json.load(open(sys.argv[2]))
sys.exit(0 if done and done.get("answer") == alone.get("answer") else 1)
EOF
done
"${C[@]}" -f http://d/healthz > /dev/null && ok "still serving after the hang-up" || bad "no /healthz after the hang-up"

# ---- more questions than slots ---------------------------------------------------
ps=()
for i in 0 1 2 3 4; do ask "${Q[$((i % 3))]}" "$T/more$i.json" & ps+=($!); done
wait "${ps[@]}"
waited=0 answered=0
for i in 0 1 2 3 4; do
    a=$(j 'd.get("answer", "")' < "$T/more$i.json" 2>/dev/null)
    [ -n "$a" ] && answered=$((answered + 1))
    same "$T/alone$((i % 3)).json" "$T/more$i.json" || bad "answer $i of 5 differs from alone"
    python3 -c "import json,sys; sys.exit(0 if json.load(open(sys.argv[1]))['timings']['queue'] > 0.05 else 1)" \
        "$T/more$i.json" 2>/dev/null && waited=$((waited + 1))
done
[ "$answered" = 5 ] && [ "$waited" -ge 2 ] && ok "5 at once on 3 slots: all answered, $waited waited for a slot" ||
    bad "5 at once on 3 slots: $answered answered, $waited waited (want 5 and >= 2)"

kill -TERM "$pid"
for _ in $(seq 1 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
wait "$pid"; rc=$?
pid=""
[ $rc = 0 ] && ok "SIGTERM: exit 0" || bad "SIGTERM: exit $rc"

# ---- the limit ---------------------------------------------------------------------
out=$("$DD" --check-config "${O[@]}" -o daemon.generators=8 -o daemon.parallel=9 2>&1)
rc=$?
[ $rc != 0 ] && echo "$out" | grep -q "generators x parallel" && ok "generators x parallel > 64 refused: $out" ||
    bad "generators 8 x parallel 9: rc $rc, $out"

[ $fails = 0 ] || { echo "$fails failure(s); the daemon's log:"; tail -20 "$T/docentd.log"; exit 1; }
echo "all ok"
