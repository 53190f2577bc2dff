#!/usr/bin/env bash
# cli_daemon.test.sh BUILD - the docent store commands through a real docentd
# (issue 5, "CLI on the daemon"): a daemon on a temporary socket with the
# default models and a handful of sqlite3-doc pages.
#
# Checks:
#   - the socket is found three ways: --socket, $DOCENT_SOCKET, and the
#     config's [daemon] socket (the config's own data dir holds no store, so a
#     command that ran in-process would fail);
#   - ingest (relative paths sent absolute; summary, --json summary with a
#     skipped file among its problems, progress lines), search (human, --json,
#     -c), ls (human, --json, -c), rm (by id; a missing id removes nothing),
#     collections (human, --json);
#   - the same commands --local on the same store once the daemon is stopped
#     print the same (ls, collections, search and search --mode bm25/dense,
#     human and --json, exactly; ingest's summary line but for the time);
#   - ingest --include/--exclude through the daemon;
#   - errors: a dead socket (exit 1, says to start docentd or use --local), an
#     unknown collection, --watch through the daemon (exit 2),
#     reindex and check refused while the daemon runs (check --local allowed),
#     a non-admin (nobody, via runuser when root) refused with the access rule;
#   - Ctrl-C while following an ingest job: exit 1, the job's id is given, and
#     the job goes on to finish in the daemon.
set -u
B=${1:-build}
. "$(dirname "$0")/daemon_env.sh"

T=$(mktemp -d /tmp/docent-clid-XXXXXX)
chmod 755 "$T"
pid=""
cleanup() {
    [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null
    rm -rf "$T"
}
trap cleanup EXIT
unset DOCENT_SOCKET

# ---- corpus, config, a store made in-process --------------------------------
mkdir -p "$T/docs/a" "$T/docs/b" "$T/docs/big" "$T/run"
cp "$SQ/wal.html" "$SQ/autoinc.html" "$SQ/lang_upsert.html" "$T/docs/a/"
cp "$SQ/foreignkeys.html" "$SQ/datatype3.html" "$T/docs/b/"
head -c 3000 /dev/urandom > "$T/docs/b/blob.bin" # a type ingest skips
cp "$SQ/lang_altertable.html" "$SQ/fts5.html" "$SQ/fileformat2.html" "$SQ/lang_createtable.html" \
    "$SQ/pragma.html" "$T/docs/big/"
chmod 750 "$T/run"
SOCK=$T/run/docentd.sock
CONF=$T/docent.conf
# the config's data dir holds no store: only the daemon (given --data) has one
cat > "$CONF" <<EOF
[data]
dir = $T/nodata
[models]
embedder = $EMB
generator = $GEN
threads = 2
[daemon]
socket = $SOCK
[answer]
prompts = $root/prompts
EOF
export DOCENT_CONFIG=$CONF
L=(--local --data "$T/data") # in-process on the daemon's store
"$D" ingest -q "${L[@]}" -c alpha "$T/docs/a/wal.html" > /dev/null || { echo "FAIL: in-process ingest"; exit 1; }

group=""
if [ "$(id -u)" -eq 0 ] && command -v runuser >/dev/null && getent group nogroup >/dev/null; then
    group=nogroup # the socket's group: nobody may connect, and is no admin
    chgrp nogroup "$T/run"
fi
t0=$(date +%s)
"$DD" --config "$CONF" --data "$T/data" ${group:+-o daemon.socket_group=$group} > "$T/docentd.log" 2>&1 &
pid=$!
for _ in $(seq 1 600); do [ -S "$SOCK" ] && curl -sf --unix-socket "$SOCK" http://d/healthz >/dev/null && break; sleep 0.1; done
[ -S "$SOCK" ] || { echo "FAIL: docentd did not start:"; cat "$T/docentd.log"; exit 1; }
ok "docentd up in $(($(date +%s) - t0)) s"

# ---- ingest --------------------------------------------------------------------
cd "$T/docs"
"$D" ingest --socket "$SOCK" -c alpha a > "$T/ing.out" 2> "$T/ing.err"; rc=$?
{ [ $rc -eq 0 ] && grep -qE "^ingested into 'alpha' in [0-9.]+ s: 2 added, 0 updated, 1 unchanged, 0 removed, 0 skipped, 0 failed" "$T/ing.out" \
    && grep -q "^progress: 3/3 files" "$T/ing.err"; } && ok "ingest --socket (relative folder): summary and progress" \
    || bad "ingest --socket: rc $rc $(cat "$T/ing.out" "$T/ing.err")"
out=$(DOCENT_SOCKET=$SOCK "$D" ingest --json -c beta b); rc=$?
echo "$out" | j '1 if d["collection"] == "beta" and d["added"] == 2 and d["skipped"] == 1 and d["failed"] == 0 and d["chunks"] > 0 and [p["kind"] for p in d["problems"]] == ["skipped"] and d["problems"][0]["uri"].endswith("/b/blob.bin") and d["problems"][0]["reason"] else 0' \
    | grep -q 1 && [ $rc -eq 0 ] && ok "ingest --json via DOCENT_SOCKET: counts, the skipped file in problems" \
    || bad "ingest --json: rc $rc $out"
out=$("$D" ingest --socket "$SOCK" --json -c globbed --include '*.html' --exclude 'data*' b); rc=$?
echo "$out" | j '1 if d["added"] == 1 and d["skipped"] == 0 else 0' | grep -q 1 && [ $rc -eq 0 ] \
    && ok "ingest --include/--exclude through the daemon: 1 of 3 files" || bad "ingest globs: rc $rc $out"
gid=$("$D" ls --socket "$SOCK" -c globbed --json | j 'd["documents"][0]["id"]')
"$D" rm --socket "$SOCK" "$gid" > /dev/null || bad "rm the globbed document"
cd "$T"
# the config's socket (DOCENT_CONFIG names it; no --socket, no DOCENT_SOCKET)
"$D" ingest -c alpha "$T/docs/a" > "$T/ing2.out" 2>/dev/null; rc=$?
[ $rc -eq 0 ] && grep -q "3 unchanged" "$T/ing2.out" && ok "ingest via the config's socket: 3 unchanged" \
    || bad "ingest via config: rc $rc $(cat "$T/ing2.out")"

# ---- ls, collections, search ------------------------------------------------------
"$D" ls > "$T/ls.d"; rc=$?
[ $rc -eq 0 ] && [ "$(grep -c chunks "$T/ls.d")" = 5 ] && ok "ls via the config's socket: 5 documents" \
    || bad "ls: rc $rc $(cat "$T/ls.d")"
"$D" ls --socket "$SOCK" --json > "$T/ls.dj"
j '1 if len(d["documents"]) == 5 and all(set(x) >= {"id","collection","uri","title","chunks","ingested_at"} for x in d["documents"]) else 0' \
    < "$T/ls.dj" | grep -q 1 && ok "ls --json: 5 documents with id, collection, uri, title, chunks" || bad "ls --json: $(cat "$T/ls.dj")"
n=$(DOCENT_SOCKET=$SOCK "$D" ls -c beta | grep -c " beta ")
[ "$n" = 2 ] && ok "ls -c beta: 2" || bad "ls -c beta: $n"
DOCENT_SOCKET=$SOCK "$D" ls -c nope > /dev/null 2> "$T/e"; rc=$?
[ $rc -eq 1 ] && grep -q "no collection named 'nope'" "$T/e" && ok "ls -c nope: exit 1, names it" || bad "ls -c nope: rc $rc $(cat "$T/e")"
"$D" collections > "$T/col.d"; "$D" collections --json > "$T/col.dj"
grep -qE "^alpha +3 documents .* readers: \*" "$T/col.d" && grep -qE "^beta +2 documents" "$T/col.d" \
    && j '1 if sorted(c["name"] for c in d["collections"]) == ["alpha", "beta", "default", "globbed"] else 0' < "$T/col.dj" | grep -q 1 \
    && ok "collections (human, --json)" || bad "collections: $(cat "$T/col.d" "$T/col.dj")"
Q="write-ahead log checkpoint"
"$D" search --socket "$SOCK" "$Q" > "$T/s.d"; rc=$?
"$D" search --socket "$SOCK" --json -k 3 "$Q" > "$T/s.dj"
"$D" search --socket "$SOCK" --json -c beta "foreign key constraint" > "$T/sb.dj"
[ $rc -eq 0 ] && head -1 "$T/s.d" | grep -qE '^1\. \[[0-9.]+\] .*/wal\.html' && ok "search --socket: wal.html first" \
    || bad "search: rc $rc $(head -5 "$T/s.d")"
j '1 if len(d["results"]) == 3 and all(set(r) == {"uri","title","heading","collection","page","lines","score","dense_score","bm25_score","text"} for r in d["results"]) else 0' \
    < "$T/s.dj" | grep -q 1 && ok "search --json -k 3: the in-process keys" || bad "search --json: $(head -c 400 "$T/s.dj")"
j '1 if d["results"] and all(r["collection"] == "beta" for r in d["results"]) else 0' < "$T/sb.dj" | grep -q 1 \
    && ok "search -c beta: only beta" || bad "search -c beta: $(head -c 300 "$T/sb.dj")"
"$D" search --socket "$SOCK" -c nope "x" > /dev/null 2> "$T/e"; rc=$?
[ $rc -eq 1 ] && grep -q "nope" "$T/e" && ok "search -c nope: exit 1" || bad "search -c nope: rc $rc $(cat "$T/e")"

# ---- rm ------------------------------------------------------------------------------
"$D" rm --socket "$SOCK" 99999 > /dev/null 2> "$T/e"; rc=$?
[ $rc -eq 1 ] && grep -q "no stored document matches '99999'" "$T/e" && grep -q "nothing removed" "$T/e" \
    && ok "rm of a missing id: exit 1, nothing removed" || bad "rm missing: rc $rc $(cat "$T/e")"
id=$(j '[x["id"] for x in d["documents"] if x["uri"].endswith("datatype3.html")][0]' < "$T/ls.dj")
"$D" rm --socket "$SOCK" "$id" 99999 > /dev/null 2>&1
[ "$("$D" ls --socket "$SOCK" | grep -c chunks)" = 5 ] && ok "rm ID MISSING: nothing removed" || bad "rm with a missing id removed something"
out=$("$D" rm --socket "$SOCK" "$id"); rc=$?
[ $rc -eq 0 ] && echo "$out" | grep -q "^removed $id .*datatype3.html" && echo "$out" | grep -q "^1 document removed" \
    && [ "$("$D" ls --socket "$SOCK" | grep -c chunks)" = 4 ] && ok "rm ID: removed, 4 left" || bad "rm: rc $rc $out"

# ---- refusals and errors ------------------------------------------------------------
"$D" ls --socket "$T/run/none.sock" > /dev/null 2> "$T/e"; rc=$?
[ $rc -eq 1 ] && grep -q "none.sock" "$T/e" && grep -q "is docentd running" "$T/e" && grep -q -- "--local" "$T/e" \
    && ok "dead socket: exit 1, names it, says --local" || bad "dead socket: rc $rc $(cat "$T/e")"
"$D" ingest --socket "$SOCK" --watch "$T/docs/a" > /dev/null 2> "$T/e"; rc=$?
[ $rc -eq 2 ] && grep -q "\[daemon\] watch" "$T/e" && ok "ingest --watch through the daemon: exit 2, points at [daemon] watch" \
    || bad "--watch: rc $rc $(cat "$T/e")"
"$D" reindex > /dev/null 2> "$T/e"; rc=$?
[ $rc -eq 1 ] && grep -q "stop it first" "$T/e" && ok "reindex refused while docentd runs" || bad "reindex: rc $rc $(cat "$T/e")"
"$D" reindex "${L[@]}" > /dev/null 2> "$T/e"; rc=$?
[ $rc -eq 1 ] && grep -q "stop it first" "$T/e" && ok "reindex --local refused too" || bad "reindex --local: rc $rc $(cat "$T/e")"
"$D" check > /dev/null 2> "$T/e"; rc=$?
[ $rc -eq 1 ] && grep -q -- "--local" "$T/e" && ok "check refused while docentd runs" || bad "check: rc $rc $(cat "$T/e")"
"$D" check "${L[@]}" > "$T/e" 2>&1 && ok "check --local: $(cat "$T/e")" || bad "check --local: $(cat "$T/e")"
if [ -n "$group" ]; then
    as_nobody() { runuser -u nobody -- env DOCENT_SOCKET="$SOCK" DOCENT_CONFIG=/nonexistent "$D" "$@"; }
    as_nobody rm 1 > /dev/null 2> "$T/e"; rc=$?
    [ $rc -eq 1 ] && grep -q "needs an admin" "$T/e" && grep -q "access rule" "$T/e" \
        && ok "rm as nobody: 403, says the access rule" || bad "rm as nobody: rc $rc $(cat "$T/e")"
    as_nobody ingest /etc/hostname > /dev/null 2> "$T/e"; rc=$?
    [ $rc -eq 1 ] && grep -q "needs an admin" "$T/e" && ok "ingest as nobody: 403" || bad "ingest as nobody: rc $rc $(cat "$T/e")"
    n=$(as_nobody ls | grep -c chunks)
    [ "$n" = 4 ] && ok "ls as nobody: the readable documents" || bad "ls as nobody: $n"
else
    echo "note: the non-admin (403) checks skipped (need root, runuser and the nogroup group)"
fi

# ---- Ctrl-C while following a job ------------------------------------------------------
"$D" ingest --socket "$SOCK" -c big "$T/docs/big" > "$T/big.out" 2> "$T/big.err" &
cli=$!
jid=""
for _ in $(seq 1 100); do
    for i in 1 2 3 4 5 6 7 8; do
        s=$(curl -s --unix-socket "$SOCK" "http://d/v1/jobs/$i" | j '"%s %s" % (d.get("collection"), d.get("state"))' 2>/dev/null)
        [ "$s" = "big running" ] && jid=$i && break 2
    done
    sleep 0.1
done
kill -INT $cli; wait $cli; rc=$?
if [ -z "$jid" ]; then
    bad "the big ingest job was never seen running"
elif [ $rc -eq 1 ] && grep -q "job $jid continues in docentd" "$T/big.err"; then
    ok "Ctrl-C: exit 1, job $jid continues in docentd"
    for _ in $(seq 1 300); do
        s=$(curl -s --unix-socket "$SOCK" "http://d/v1/jobs/$jid" | j 'd["state"]')
        [ "$s" = running ] || [ "$s" = queued ] || break
        sleep 0.2
    done
    r=$(curl -s --unix-socket "$SOCK" "http://d/v1/jobs/$jid")
    echo "$r" | j '1 if d["state"] == "done" and d["summary"]["added"] == 5 else 0' | grep -q 1 \
        && ok "the interrupted job finished in docentd: 5 added" || bad "job after Ctrl-C: $r"
else
    bad "Ctrl-C: rc $rc $(cat "$T/big.err")"
fi

# ---- the same through docentd and --local ----------------------------------------------
"$D" ls > "$T/ls.d"; "$D" ls --json > "$T/ls.dj"
"$D" collections > "$T/col.d"; "$D" collections --json > "$T/col.dj"
"$D" search "$Q" > "$T/s.d"; "$D" search --json "$Q" > "$T/s.dj"
"$D" search --mode bm25 --json "$Q" > "$T/sb.dj"; "$D" search --mode dense --json "$Q" > "$T/sd.dj"
"$D" ingest -c alpha "$T/docs/a" 2>/dev/null | head -1 | sed 's/ in [0-9.]* s:/ in T s:/' > "$T/ing.d"
kill -TERM $pid; wait $pid; rc=$?
pid=""
[ $rc -eq 0 ] && ok "docentd stopped (SIGTERM: exit 0)" || bad "docentd exit $rc"
"$D" ls "${L[@]}" > "$T/ls.l"; "$D" ls "${L[@]}" --json > "$T/ls.lj"
"$D" collections "${L[@]}" > "$T/col.l"; "$D" collections "${L[@]}" --json > "$T/col.lj"
"$D" search "${L[@]}" "$Q" > "$T/s.l"; "$D" search "${L[@]}" --json "$Q" > "$T/s.lj"
"$D" search "${L[@]}" --mode bm25 --json "$Q" > "$T/sb.lj"; "$D" search "${L[@]}" --mode dense --json "$Q" > "$T/sd.lj"
"$D" ingest "${L[@]}" -c alpha "$T/docs/a" 2>/dev/null | head -1 | sed 's/ in [0-9.]* s:/ in T s:/' > "$T/ing.l"
cmp -s "$T/ls.d" "$T/ls.l" && ok "ls: the same through docentd and --local" || bad "ls differs: $(diff "$T/ls.d" "$T/ls.l" | head -5)"
cmp -s "$T/ls.dj" "$T/ls.lj" && ok "ls --json: the same through docentd and --local" \
    || bad "ls --json differs: $(diff <(tr ',' '\n' < "$T/ls.dj") <(tr ',' '\n' < "$T/ls.lj") | head -6)"
cmp -s "$T/col.d" "$T/col.l" && cmp -s "$T/col.dj" "$T/col.lj" && ok "collections (human, --json): the same" \
    || bad "collections differ: $(diff "$T/col.d" "$T/col.l"; diff "$T/col.dj" "$T/col.lj")"
cmp -s "$T/s.dj" "$T/s.lj" && ok "search --json: the same through docentd and --local" \
    || bad "search --json differs: $(diff <(tr ',' '\n' < "$T/s.dj") <(tr ',' '\n' < "$T/s.lj") | head -6)"
cmp -s "$T/s.d" "$T/s.l" && ok "search: the same through docentd and --local" \
    || bad "search differs: $(diff "$T/s.d" "$T/s.l" | head -6)"
cmp -s "$T/sb.dj" "$T/sb.lj" && cmp -s "$T/sd.dj" "$T/sd.lj" && [ -s "$T/sb.dj" ] \
    && ok "search --mode bm25 and dense: the same through docentd and --local" \
    || bad "search --mode differs: $(diff "$T/sb.dj" "$T/sb.lj" | head -3; diff "$T/sd.dj" "$T/sd.lj" | head -3)"
[ -s "$T/ing.d" ] && cmp -s "$T/ing.d" "$T/ing.l" && ok "ingest summary: the same ($(cat "$T/ing.l"))" \
    || bad "ingest summary differs: $(cat "$T/ing.d" "$T/ing.l")"
# no daemon: the config's socket is stale now, so the commands say so (--local runs in-process)
"$D" ls > /dev/null 2> "$T/e"; rc=$?
if [ -S "$SOCK" ]; then
    [ $rc -eq 1 ] && grep -q "is docentd running" "$T/e" && ok "a stale config socket: exit 1, says so" || bad "stale: rc $rc $(cat "$T/e")"
else
    [ $rc -eq 1 ] && grep -q "no store here" "$T/e" && ok "no socket left: in-process (the config's empty data dir)" \
        || bad "no daemon: rc $rc $(cat "$T/e")"
fi

[ $fails -eq 0 ] && echo "cli_daemon: all checks passed"
exit $((fails > 0))
