#!/usr/bin/env bash
# daemon.sh [STORE] - docentd under load: /v1/search throughput and latency,
# streamed /v1/ask time to first token and total, memory, clean shutdown.
#
# STORE: a data directory to serve; without one the 65 pages of
# tests/eval/sqlite.pages are ingested into a temporary one first (with
# BENCH_PG=1 the whole postgresql-doc-15 manual too, as collection "pg",
# ~200 s more: the memory figure for a store of ~1,200 pages).
#
# Starts build/docentd on a socket in a 0750 temporary directory (default
# models, THREADS threads, default 2, shared by GENERATORS generator
# instances, default 1, each decoding PARALLEL answers at once as one batch,
# default 4; no queue timeout), then bench/daemon_load.py drives it
# through the socket, one persistent connection per client thread:
#   search  SEARCH_CLIENTS (default "1 8 32") concurrent clients, each level
#           for SEARCH_SECONDS (10) [or SEARCH_REQUESTS in all]; k SEARCH_K (5);
#           queries: the questions of tests/eval/sqlite.jsonl
#   ask     streamed (SSE), ASK_CLIENTS (default "1 4 16") concurrent clients,
#           ASK_PER_CLIENT (default "4 2 1") answerable questions each
#   mixed   one search client while MIXED_ASK_CLIENTS (2) answers stream
#           (BENCH_MIXED=0 to skip)
# then reads VmRSS/VmHWM from /proc, sends SIGTERM and checks for exit 0 and
# the socket removed.  All clients share one uid, so [daemon] max_per_caller is
# raised to MAX_PER_CALLER (64) for the run.  There is no peer for the daemon: absolute figures only.
# Fails (non-zero, message on stderr) if the daemon does not start, a request
# fails or the daemon counts an error, or the shutdown is not clean.
set -euo pipefail
cd "$(dirname "$0")/.."
B=${BUILD:-build}
EMB=$PWD/models/all-minilm-l6-v2
GEN=$PWD/models/smollm2-135m-instruct-q4_1.gguf
THREADS=${THREADS:-2}
SQ=/usr/share/doc/sqlite3
PG=/usr/share/doc/postgresql-doc-15/html
export DOCENT_CONFIG=$PWD/etc/docent.conf
die() { echo "daemon.sh: $*" >&2; exit 1; }
[ -x "$B/docent" ] && [ -x "$B/docentd" ] || die "$B/docent or $B/docentd missing (make)"
[ -d "$EMB" ] && [ -f "$GEN" ] || die "models missing (make models)"
command -v python3 >/dev/null || die "python3 missing"
O=(-o models.embedder="$EMB" -o models.generator="$GEN" -o models.threads="$THREADS")

W=$(mktemp -d /tmp/docent-bench-daemon-XXXXXX)
chmod 755 "$W"
pid=""
cleanup() {
    if [ -n "$pid" ]; then kill -9 "$pid" 2>/dev/null || true; fi
    rm -rf "$W"
}
trap cleanup EXIT
t_start=$(date +%s.%N)

STORE=${1:-}
ingest_s=-
if [ -z "$STORE" ]; then
    [ -f "$SQ/wal.html" ] || die "$SQ missing (make deps)"
    STORE=$W/data
    mkdir -p "$W/pages"
    grep -v '^#' tests/eval/sqlite.pages | while read -r p; do
        if [ -n "$p" ]; then cp "$SQ/$p" "$W/pages/"; fi
    done
    t0=$(date +%s.%N)
    echo "== ingesting the $(ls "$W/pages" | wc -l) eval pages into $STORE"
    "$B/docent" ingest -q --data "$STORE" "${O[@]}" "$W/pages" || die "ingest of the eval pages failed"
    if [ "${BENCH_PG:-0}" = 1 ]; then
        [ -d "$PG" ] || die "$PG missing (make deps)"
        echo "== ingesting the PostgreSQL manual ($(ls "$PG"/*.html | wc -l) pages) as collection pg"
        "$B/docent" ingest -q --data "$STORE" "${O[@]}" -c pg "$PG" || die "ingest of the PostgreSQL manual failed"
    fi
    ingest_s=$(python3 -c "print(f'{$(date +%s.%N) - $t0:.1f}')")
fi
[ -f "$STORE/docent.db" ] || die "$STORE: no docent.db (not a docent data directory)"

# ---- start the daemon ---------------------------------------------------------
mkdir -p "$W/run"
chmod 750 "$W/run"
SOCK=$W/run/docentd.sock
echo "== starting docentd ($THREADS threads) on $SOCK"
t0=$(date +%s.%N)
# every client is the same uid: lift the per-caller cap (default 16) above the 32 clients
"$B/docentd" --socket "$SOCK" --data "$STORE" "${O[@]}" -o daemon.max_per_caller="${MAX_PER_CALLER:-64}" \
    -o daemon.generators="${GENERATORS:-1}" -o daemon.parallel="${PARALLEL:-4}" \
    -o daemon.queue_timeout_s=3600 > "$W/docentd.log" 2>&1 &
pid=$!
up=0
for _ in $(seq 1 600); do
    kill -0 "$pid" 2>/dev/null || break
    if [ -S "$SOCK" ] && curl -sf --unix-socket "$SOCK" http://d/healthz > /dev/null 2>&1; then up=1; break; fi
    sleep 0.1
done
if [ $up -ne 1 ]; then
    if kill -0 "$pid" 2>/dev/null; then why="no answer on $SOCK within 60 s"
    else why="it exited"; wait "$pid" || why="it exited with status $?"; pid=""; fi
    echo "daemon.sh: docentd did not start ($why); its log:" >&2
    cat "$W/docentd.log" >&2
    exit 1
fi
startup_s=$(python3 -c "print(f'{$(date +%s.%N) - $t0:.2f}')")
rss_start=$(awk '/^VmRSS/ {printf "%.0f", $2 / 1024}' "/proc/$pid/status")
hwm_start=$(awk '/^VmHWM/ {printf "%.0f", $2 / 1024}' "/proc/$pid/status")

# ---- load -----------------------------------------------------------------------
echo "== load (search ${SEARCH_SECONDS:-10} s per level; ${GENERATORS:-1} generator(s) x ${PARALLEL:-4} answers at once)"
python3 bench/daemon_load.py "$SOCK" "$pid" tests/eval/sqlite.jsonl "$W/load.json" || {
    echo "daemon.sh: the load run failed; the daemon's log (last 30 lines):" >&2
    tail -n 30 "$W/docentd.log" >&2
    exit 1
}
kill -0 "$pid" 2>/dev/null || die "docentd died during the run: $(tail -n 20 "$W/docentd.log")"
curl -sf --unix-socket "$SOCK" http://d/metrics | awk '
    /^docent_decode_steps_total/ {s = $2} /^docent_decode_tokens_total/ {t = $2}
    END {printf "decode steps: %d tokens in %d steps (mean batch %.2f)\n", t, s, s ? t / s : 0}'
hwm=$(awk '/^VmHWM/ {printf "%.0f", $2 / 1024}' "/proc/$pid/status")
rss_end=$(awk '/^VmRSS/ {printf "%.0f", $2 / 1024}' "/proc/$pid/status")

# ---- shutdown ---------------------------------------------------------------------
t0=$(date +%s.%N)
kill -TERM "$pid"
for _ in $(seq 1 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
kill -0 "$pid" 2>/dev/null && die "docentd still running 30 s after SIGTERM"
rc=0
wait "$pid" || rc=$?
pid=""
stop_s=$(python3 -c "print(f'{$(date +%s.%N) - $t0:.2f}')")
[ $rc -eq 0 ] || die "docentd exited $rc after SIGTERM: $(tail -n 20 "$W/docentd.log")"
[ -e "$SOCK" ] && die "docentd left its socket behind after SIGTERM"
total_s=$(python3 -c "print(f'{$(date +%s.%N) - $t_start:.0f}')")

# ---- report ---------------------------------------------------------------------
python3 - "$W/load.json" "$ingest_s" "$startup_s" "$rss_start" "$hwm_start" "$rss_end" "$hwm" \
    "$stop_s" "$total_s" "$THREADS" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
ingest, startup, rss0, hwm0, rss1, hwm, stop, total, threads = sys.argv[2:]
chunks = sum(c["chunks"] for c in d["collections"])
docs = sum(c["documents"] for c in d["collections"])
print(f"\ndocentd: {docs} documents, {chunks} chunks; {threads} generator/embedder threads; "
      f"client and daemon on the same machine")
print("absolute figures (there is no peer daemon to compare against)\n")
print("/v1/search (k %s), persistent connection per client" % d.get("k", 5))
print(f"{'clients':>8} {'requests':>9} {'req/s':>8} {'p50 ms':>9} {'p99 ms':>9} {'max ms':>9}")
for r in d["search"]:
    print(f"{r['clients']:>8} {r['requests']:>9} {r['rps']:>8.1f} {r['p50_ms']:>9.1f} "
          f"{r['p99_ms']:>9.1f} {r['max_ms']:>9.1f}")
print("\n/v1/ask, streamed (SSE); first token = client-side, request sent -> first token event;"
      "\n'daemon' = timings.first_text / total of the done event (after the answer got the generator)")
print(f"{'clients':>8} {'answers':>8} {'first p50':>10} {'first p99':>10} {'total p50':>10} "
      f"{'total p99':>10} {'daemon 1st':>11} {'daemon tot':>11} {'tokens':>7}")
for r in d["ask"]:
    print(f"{r['clients']:>8} {r['answers']:>8} {r['ttft_p50']:>9.2f}s {r['ttft_p99']:>9.2f}s "
          f"{r['total_p50']:>9.2f}s {r['total_p99']:>9.2f}s {r['d_first_p50']:>10.2f}s "
          f"{r['d_total_p50']:>10.2f}s {r['tokens_p50']:>7}")
    print(f"{'':>8} tokens per answer: {r['tokens']}")
    if r["no_token"] or r["not_found"] or r["refused"]:
        print(f"{'':>8} ({r['no_token']} without a token event, {r['not_found']} not found, "
              f"{r['refused']} refused)")
if "mixed" in d:
    m = d["mixed"]
    print(f"\nsearch while {m['ask_clients']} answers stream: {m['searches']} searches, "
          f"p50 {m['p50_ms']:.0f} ms, p99 {m['p99_ms']:.0f} ms, max {m['max_ms']:.0f} ms")
print("\nmemory (MiB)        RSS after startup %s (peak so far %s), after the load %s, peak (VmHWM) %s"
      % (rss0, hwm0, rss1, hwm))
mem = d["mem"]
print("                    RSS after warm-up %.0f, after search %.0f, after ask %.0f" % (
    mem["after_warmup"]["VmRSS"], mem["after_search"]["VmRSS"], mem["after_ask"]["VmRSS"]))
print(f"startup {startup} s (to /healthz answering); SIGTERM -> exit 0 in {stop} s, socket removed")
print(f"requests served {d['counters']['requests']}, errors {d['counters']['errors']}; "
      f"ingest {ingest} s; whole run {total} s")
EOF
if grep -qiE 'error|warn|fail' "$W/docentd.log"; then
    echo "note: the daemon's log has error/warning lines:"
    grep -iE 'error|warn|fail' "$W/docentd.log" | head -n 10
fi
