#!/usr/bin/env bash
# daemon_work.test.sh - how docentd shares its store and models between
# requests, its time limits, its watch folders, and stopping or crashing
# without losing stored data.  A real daemon on a temporary socket, the
# default models, real pages from sqlite3-doc.
#
#   - watch folders ([daemon] watch): synced at start, then a file added to
#     the folder is ingested and a file removed is removed, with the state in
#     /v1/status;
#   - one answer at a time (generators = 1, parallel = 1): while it streams an answer a
#     second question waits in the queue (/v1/status says so) and a search is
#     served at once, before the answer ends;
#   - queue_timeout_s: a question that waited too long gets 503 busy with
#     Retry-After; timeout_s: an answer stopped by its time limit says stop
#     "timeout" and keeps what it had;
#   - an ingest job runs while searches are served, each within a bound;
#   - SIGTERM during a job and a streamed answer: exit 0 within 30 s, what the
#     job committed is kept, the store checks clean;
#   - kill -9 during a job: the restarted daemon serves, the store checks
#     clean, and the same job run again completes with every document once;
#   - SIGHUP: a new max_json_depth and [search] k apply at once, a changed
#     [ingest] setting is named as needing a restart, a broken config changes
#     nothing.
set -u
B=${1:-build}
. "$(dirname "$0")/daemon_env.sh"

T=$(mktemp -d /tmp/docent-work-XXXXXX)
pid=""
bg=()
cleanup() {
    [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null
    for p in "${bg[@]}"; do kill "$p" 2>/dev/null; done
    rm -rf "$T"
}
trap cleanup EXIT
# a config of our own (SIGHUP re-reads it): etc/docent.conf with absolute paths
sed -e "s|= \.\./|= $root/|" "$root/etc/docent.conf" > "$T/docent.conf"
export DOCENT_CONFIG="$T/docent.conf"
now() { date +%s.%N; }

mkdir -p "$T/run" "$T/watched" "$T/seed" "$T/bulk" "$T/bulk2"
chmod 750 "$T/run"
cp "$SQ/wal.html" "$SQ/autoinc.html" "$SQ/lang_upsert.html" "$T/seed/"
cp "$SQ/lang_vacuum.html" "$SQ/lang_savepoint.html" "$SQ/foreignkeys.html" "$T/watched/"
# the bulk folders: 30 pages each, none of them huge
ls "$SQ"/*.html | grep -v -e wal.html -e autoinc -e lang_upsert -e lang_vacuum -e lang_savepoint \
    -e foreignkeys | while read -r f; do [ "$(stat -c %s "$f")" -lt 40000 ] && echo "$f"; done |
    head -60 > "$T/pages"
head -30 "$T/pages" | xargs -I{} cp {} "$T/bulk/"
tail -n +31 "$T/pages" | head -30 | xargs -I{} cp {} "$T/bulk2/"
nb2=$(ls "$T/bulk2" | wc -l)
SOCK=$T/run/docentd.sock
C=(curl -s --unix-socket "$SOCK")

start() {
    "$DD" --socket "$SOCK" --data "$T/data" "${O[@]}" -o daemon.generators=1 -o daemon.parallel=1 \
        -o daemon.queue_timeout_s=2 -o "daemon.watch=w:$T/watched" -o ingest.embed_batch=8 \
        -o ingest.commit_seconds=1 "$@" >> "$T/docentd.log" 2>&1 &
    pid=$!
    # ready when it answers (a socket left by kill -9 is there before that)
    for _ in $(seq 1 600); do "${C[@]}" -f http://d/healthz > /dev/null 2>&1 && break; sleep 0.1; done
    "${C[@]}" -f http://d/healthz > /dev/null 2>&1 || { echo "FAIL: docentd did not start:"; cat "$T/docentd.log"; exit 1; }
}
ndocs() { # documents in collection $1 (admins see every collection)
    "${C[@]}" http://d/v1/documents | j "sum(1 for x in d['documents'] if x['collection'] == '$1')"
}
has_docs() { [ "$(ndocs "$1")" = "$2" ]; }
wait_for() { # wait_for SECONDS CMD...: until CMD succeeds
    local until=$(( $(date +%s) + $1 )); shift
    while ! "$@"; do [ "$(date +%s)" -ge "$until" ] && return 1; sleep 0.3; done
}
stop() { # SIGTERM; the exit status in $stop_rc, seconds in $stop_s
    local t0; t0=$(now)
    kill -TERM "$pid"
    local i=0
    while kill -0 "$pid" 2>/dev/null && [ $i -lt 300 ]; do sleep 0.1; i=$((i + 1)); done
    if kill -0 "$pid" 2>/dev/null; then stop_rc=hung; kill -9 "$pid"; else wait "$pid"; stop_rc=$?; fi
    stop_s=$(python3 -c "print(round($(now) - $t0, 1))")
    pid=""
}

start

# ---- watch folders ----------------------------------------------------------
watching() { [ "$("${C[@]}" http://d/v1/status | j "d['watch'][0]['state']")" = watching ]; }
if wait_for 120 watching; then
    n=$(ndocs w)
    [ "$n" = 3 ] && ok "watch: folder synced at start (3 documents), state watching" || bad "watch: $n documents after the sync"
else
    bad "watch: never reached watching: $("${C[@]}" http://d/v1/status | j 'd.get("watch")')"
fi
cp "$SQ/lang_transaction.html" "$T/watched/"
wait_for 60 has_docs w 4 && ok "watch: a new file is ingested" || bad "watch: new file not ingested ($(ndocs w))"
rm "$T/watched/lang_vacuum.html"
wait_for 60 has_docs w 3 && ok "watch: a removed file is removed" || bad "watch: removed file still there ($(ndocs w))"

# ---- a generator busy, a question queued, a search served --------------------
r=$("${C[@]}" -X POST http://d/v1/ingest -d "{\"paths\": [\"$T/seed\"], \"wait\": true}")
[ "$(echo "$r" | j 'd["state"]')" = done ] && ok "seed ingested" || bad "seed ingest: $r"
Q='{"question": "Explain write-ahead logging in SQLite in detail: how checkpoints work, what the wal file holds, and when readers block.", "max_tokens": 256}'
"${C[@]}" -N -H 'Accept: text/event-stream' -X POST http://d/v1/ask -d "$Q" > "$T/a.sse" &
bg+=($!)
wait_for 60 grep -q "^event: token" "$T/a.sse" || bad "answer A never streamed"
# search_while WHAT: a search served while answer A still streams (if A has
# ended by the time the search returns, nothing was shown: a note, not a pass)
search_while() {
    local t0 s ts
    t0=$(now)
    s=$("${C[@]}" -X POST http://d/v1/search -d '{"query": "checkpoint starvation", "k": 3}')
    ts=$(python3 -c "print(round($(now) - $t0, 2))")
    if grep -q "^event: done" "$T/a.sse"; then
        echo "note: answer A ended before the search returned (${ts}s): $1 not shown"
    elif [ "$(echo "$s" | j 'len(d["results"])')" -ge 1 ]; then
        ok "a search is served in ${ts}s while $1"
    else bad "search while $1: $s"; fi
}
search_while "the generator answers" # A has just begun: this one is always shown
"${C[@]}" -X POST http://d/v1/ask -d "$Q" > "$T/b.json" &
bpid=$!
bg+=($bpid)
queued() { [ "$("${C[@]}" http://d/v1/status | j 'd["queue"]["answers_waiting"]')" = 1 ]; }
if wait_for 10 queued; then
    search_while "the generator answers and a question waits"
else
    grep -q "^event: done" "$T/a.sse" && echo "note: answer A ended before B could queue" ||
        bad "question B never showed as queued: $("${C[@]}" http://d/v1/status | j 'd["queue"]')"
fi
wait "$bpid"
code=$(echo "$(cat "$T/b.json")" | j '"busy" if "error" in d else d["stop"]')
case $code in
busy) grep -q queue_timeout_s "$T/b.json" && ok "question B waited over queue_timeout_s: 503 busy" ||
    bad "B: $(cat "$T/b.json")" ;;
*) qs=$(j 'd["timings"]["queue"]' < "$T/b.json")
   python3 -c "import sys; sys.exit(0 if $qs < 2.5 else 1)" && ok "question B answered after ${qs}s in the queue" ||
       bad "B waited ${qs}s, over queue_timeout_s, yet was answered" ;;
esac
wait_for 120 grep -q "^event: done" "$T/a.sse" || bad "answer A never ended"

# queue_timeout_s directly: three questions at once on one generator
for i in 1 2 3; do
    "${C[@]}" -D "$T/h$i" -X POST http://d/v1/ask -d "$Q" > "$T/q$i.json" & bg+=($!)
done
wait "${bg[@]: -3}"
busy=0 maxq=0
for i in 1 2 3; do
    if grep -q '"busy"' "$T/q$i.json"; then
        busy=$((busy + 1))
        grep -qi '^retry-after:' "$T/h$i" || bad "503 without Retry-After"
        head -1 "$T/h$i" | grep -q 503 || bad "busy but status $(head -1 "$T/h$i")"
    else
        q=$(j 'd["timings"]["queue"]' < "$T/q$i.json")
        maxq=$(python3 -c "print(max($maxq, $q))")
    fi
done
if [ $busy -ge 1 ]; then ok "3 questions on one generator: $busy refused busy (503, Retry-After) after 2 s in the queue"
elif python3 -c "import sys; sys.exit(0 if $maxq < 2 else 1)"; then
    echo "note: answers too fast to queue 2 s here (longest wait ${maxq}s): queue timeout not exercised"
else bad "a question waited ${maxq}s > queue_timeout_s and was still answered"; fi

# an answer's own time limit
r=$("${C[@]}" -X POST http://d/v1/ask -d '{"question": "Explain write-ahead logging in SQLite in detail, step by step.", "max_tokens": 256, "timeout_s": 1}')
stop_r=$(echo "$r" | j 'd.get("stop")')
tot=$(echo "$r" | j 'd["timings"]["total"]')
if [ "$stop_r" = timeout ]; then
    # generation stops at the first token past the deadline (the prefill runs whole: on a slow
    # machine nothing may have been generated yet, and the answer is then empty)
    dec=$(echo "$r" | j 'd["timings"]["decode"]')
    n=$(echo "$r" | j 'len(d["answer"])')
    python3 -c "import sys; sys.exit(0 if $dec < 1.5 else 1)" &&
        ok "timeout_s 1: stopped (stop timeout) after ${tot}s, ${n} characters kept" ||
        bad "timeout: decoding went on for ${dec}s past the deadline: $r"
else # it may have ended before the deadline: then its generation did
    gen_end=$(echo "$r" | j 'sum(d["timings"][k] for k in ("guard", "rewrite", "embed", "retrieve", "prompt", "prefill", "decode"))')
    python3 -c "import sys; sys.exit(0 if $gen_end < 1.05 else 1)" &&
        echo "note: generation ended at ${gen_end}s (stop $stop_r), within timeout_s" ||
        bad "timeout_s 1 ignored: stop $stop_r, generation ended at ${gen_end}s"
fi
r=$("${C[@]}" -X POST http://d/v1/ask -d '{"question": "x", "timeout_s": 0}')
echo "$r" | grep -q "timeout_s" && ok "timeout_s 0 refused, naming the field" || bad "timeout_s 0: $r"

# ---- an ingest job while searches are served ------------------------------------
r=$("${C[@]}" -X POST http://d/v1/ingest -d "{\"paths\": [\"$T/bulk\"], \"collection\": \"bulk\"}")
id=$(echo "$r" | j 'd["id"]')
running() { [ "$("${C[@]}" http://d/v1/jobs/$id | j 'd["state"] == "running" and d["progress"]["chunks"] > 0')" = True ]; }
if wait_for 60 running; then
    worst=0 during=0
    for q in "rollback journal" "integer primary key" "savepoint release" "foreign key" "upsert"; do
        t0=$(now)
        n=$("${C[@]}" -X POST http://d/v1/search -d "{\"query\": \"$q\", \"k\": 3}" | j 'len(d["results"])')
        t=$(python3 -c "print(round($(now) - $t0, 2))")
        worst=$(python3 -c "print(max($worst, $t))")
        [ "$n" -ge 1 ] || bad "search '$q' during ingest: $n results"
        [ "$("${C[@]}" http://d/v1/jobs/$id | j 'd["state"]')" = running ] && during=$((during + 1))
    done
    [ $during -ge 1 ] && python3 -c "import sys; sys.exit(0 if $worst < 10 else 1)" &&
        ok "5 searches during an ingest job ($during while it still ran), slowest ${worst}s" ||
        bad "searches during ingest: slowest ${worst}s, $during while running"
    st=$("${C[@]}" http://d/v1/status | j 'd["queue"]["ingest_jobs_running"]')
    [ "$st" -le 1 ] || bad "status: $st jobs running"
else
    bad "the job never ran: $("${C[@]}" http://d/v1/jobs/$id)"
fi

# ---- SIGTERM during the job and a streamed answer ------------------------------
"${C[@]}" -N -H 'Accept: text/event-stream' -X POST http://d/v1/ask -d "$Q" > "$T/c.sse" & bg+=($!)
wait_for 60 grep -q "^event: sources" "$T/c.sse"
stop
[ "$stop_rc" = 0 ] && python3 -c "import sys; sys.exit(0 if $stop_s < 30 else 1)" &&
    ok "SIGTERM during a job and an answer: exit 0 in ${stop_s}s" || bad "SIGTERM: exit $stop_rc after ${stop_s}s"
"$D" check --local --data "$T/data" "${O[@]}" > "$T/check1" 2>&1 && ok "store checks clean: $(cat "$T/check1")" ||
    bad "check after SIGTERM: $(cat "$T/check1")"
start
kept=$(ndocs bulk)
[ "$kept" -ge 1 ] && ok "what the stopped job committed is kept ($kept documents)" || bad "the stopped job kept $kept documents"
[ "$(ndocs default)" = 3 ] && ok "the seed documents are intact" || bad "seed documents: $(ndocs default)"

# ---- kill -9 during a job ------------------------------------------------------
r=$("${C[@]}" -X POST http://d/v1/ingest -d "{\"paths\": [\"$T/bulk2\"], \"collection\": \"bulk2\"}")
id=$(echo "$r" | j 'd["id"]')
committed() { [ "$(ndocs bulk2)" -ge 2 ]; }
wait_for 90 committed || echo "note: nothing committed before the kill"
kill -9 "$pid"
wait "$pid" 2>/dev/null
pid=""
"$D" check --local --data "$T/data" "${O[@]}" > "$T/check2" 2>&1 && ok "kill -9 mid-job: the store checks clean" ||
    bad "check after kill -9: $(cat "$T/check2")"
start
r=$("${C[@]}" -X POST http://d/v1/ingest -d "{\"paths\": [\"$T/bulk2\"], \"collection\": \"bulk2\", \"wait\": true}")
[ "$(echo "$r" | j 'd["state"]')" = done ] || bad "the job again: $r"
n=$(ndocs bulk2)
uniq=$("${C[@]}" http://d/v1/documents | j "len(set(x['uri'] for x in d['documents'] if x['collection'] == 'bulk2'))")
[ "$n" = "$nb2" ] && [ "$uniq" = "$nb2" ] && ok "after kill -9 the job runs again: $n documents, each once" ||
    bad "after kill -9: $n documents ($uniq distinct), expected $nb2"
s=$("${C[@]}" -X POST http://d/v1/search -d '{"query": "checkpoint", "collection": "default", "k": 3}')
[ "$(echo "$s" | j 'len(d["results"])')" -ge 1 ] && ok "searches after the restart" || bad "search after restart: $s"

# ---- SIGHUP: reloadable settings apply, the others are named -------------------------
deep='{"query": "checkpoint", "x": {"a": {"b": {"c": 1}}}}'
r=$("${C[@]}" -X POST http://d/v1/search -d "$deep")
echo "$r" | grep -q '"results"' || bad "before the reload a depth-4 body was refused: $r"
sed -i -e 's/^max_json_depth = .*/max_json_depth = 3/' -e 's/^k = .*/k = 2/' "$T/docent.conf"
kill -HUP "$pid"
wait_for 10 grep -q "reloaded the prompts" "$T/docentd.log" || bad "no reload line in the log"
grep -q "restart docentd for them" "$T/docentd.log" && bad "SIGHUP: a restart asked for though only reloadable settings changed"
r=$("${C[@]}" -X POST http://d/v1/search -d "$deep")
echo "$r" | grep -q "max_json_depth (3)" && ok "SIGHUP: the new max_json_depth applies" || bad "after SIGHUP: $r"
n=$("${C[@]}" -X POST http://d/v1/search -d '{"query": "checkpoint", "collection": "default"}' | j 'len(d["results"])')
[ "$n" = 2 ] && ok "SIGHUP: [search] k = 2 applies" || bad "after SIGHUP k: $n results"
sed -i -e 's/^chunk_tokens = .*/chunk_tokens = 200/' "$T/docent.conf"
kill -HUP "$pid"
wait_for 10 grep -q "restart docentd for them" "$T/docentd.log" && ok "SIGHUP: a changed [ingest] setting is named for a restart" ||
    bad "no restart warning for chunk_tokens"
echo 'this is not = valid [' >> "$T/docent.conf"
kill -HUP "$pid"
wait_for 10 grep -q "nothing changed" "$T/docentd.log" && ok "SIGHUP with a broken config: logged, nothing changed" ||
    bad "broken config on SIGHUP: $(tail -3 "$T/docentd.log")"
[ "$("${C[@]}" http://d/healthz | j 'd["status"]')" = ok ] || bad "not healthy after a broken reload"
stop
[ "$stop_rc" = 0 ] || bad "final stop: $stop_rc"
grep -q "ERROR\|AddressSanitizer\|runtime error" "$T/docentd.log" && { echo "--- log:"; grep "ERROR\|Sanitizer\|runtime error" "$T/docentd.log" | head; }
echo "daemon_work: $fails failures"
[ $fails -eq 0 ]
