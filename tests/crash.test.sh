#!/usr/bin/env bash
# crash.test.sh - kill -9 `docent ingest` at random points and check the store.
#
# A reference ingest of the HTML part of tests/corpus.sh gives each document's
# chunk count.  Then, RUNS times (4 in make test, 24 with DOCENT_TEST_LONG=1):
# ingest into a fresh data directory with a transaction per 2 documents, kill -9
# it after a random delay, and check that
#   - `docent check` passes (PRAGMA integrity_check, the FTS5 integrity check,
#     every FAISS index's ids == its collection's chunk ids),
#   - every stored document has exactly its reference chunk count (wholly
#     present or wholly absent),
#   - a second ingest completes the store to the reference state.
# Half of the runs kill a re-ingest that is replacing changed documents.
set -u
B=${1:-build}
root=$(cd "$(dirname "$0")/.." && pwd)
D="$root/$B/docent"
EMB="$root/models/all-minilm-l6-v2"
[ -d "$EMB" ] || { echo "skip: $EMB missing (make models)"; exit 77; }
RUNS=${CRASH_RUNS:-$([ -n "${DOCENT_TEST_LONG:-}" ] && echo 24 || echo 4)}
T=$(mktemp -d /tmp/docent-crash-XXXXXX)
trap 'rm -rf "$T"' EXIT
"$root/tests/corpus.sh" "$T/all" >/dev/null || exit $?
mkdir -p "$T/c" && cp -r "$T/all/sqlite" "$T/all/pg" "$T/c/"
export DOCENT_CONFIG="$root/etc/docent.conf"
run() { local dir=$1; shift; "$D" "$@" --data "$dir" -o models.embedder="$EMB" -o models.threads=2 \
    -o ingest.commit_docs=2; }
fails=0
bad() { echo "FAIL: $*"; fails=$((fails + 1)); }

t0=$(date +%s.%N)
run "$T/ref" ingest -q --json "$T/c" > "$T/ref.json" || { echo "FAIL: reference ingest"; exit 1; }
t1=$(date +%s.%N)
run "$T/ref" ls --json > "$T/ref.ls"
dur=$(python3 -c "print(float('$t1') - float('$t0'))")
echo "reference ingest: $(python3 -c "import json; d=json.load(open('$T/ref.json')); print(d['added'], 'documents,', d['chunks'], 'chunks')") in ${dur%.*} s"

# the changed corpus the "replace" runs re-ingest: every document edited
cp -r "$T/c" "$T/c2"
for f in "$T"/c2/*/*.html; do sed -i 's/<p>/<p>Edited. /' "$f"; done
run "$T/ref2" ingest -q --json "$T/c2" > /dev/null && run "$T/ref2" ls --json > "$T/ref2.ls"

verify() { # dir label
    local out
    if ! out=$(run "$1" check 2>&1); then
        # killed before the store was created (still loading the model):
        # nothing stored is a consistent state
        if [ ! -e "$1/docent.db" ] && [[ $out == *"no store here"* ]]; then return; fi
        bad "$2: check: $out"; return
    fi
    python3 - "$1" "$T/ref.ls" "$T/ref2.ls" <<'EOF' || bad "$2: a document is partly stored"
import json, subprocess, sys, os
d = json.loads(subprocess.run([os.environ["D"], "ls", "--json", "--data", sys.argv[1]],
                              capture_output=True, text=True, check=True).stdout)
# the edited corpus's reference was ingested from c2/; its files are swapped in under c/
refs = [{x["uri"].replace("/c2/", "/c/"): x["chunks"] for x in json.load(open(p))["documents"]}
        for p in sys.argv[2:]]
for x in d["documents"]:
    if not any(r.get(x["uri"]) == x["chunks"] for r in refs):
        print("partial:", x["uri"], x["chunks"]); sys.exit(1)
EOF
}
export D

for i in $(seq 1 "$RUNS"); do
    dir="$T/run$i"
    if [ $((i % 2)) -eq 0 ]; then
        # kill a re-ingest that replaces documents: start from the finished
        # reference store and swap the edited files in under the stored paths
        mkdir -p "$dir" && cp -r "$T/ref/." "$dir/"
        rm -rf "$T/c.bak" && mv "$T/c" "$T/c.bak" && cp -r "$T/c2" "$T/c"
    fi
    delay=$(python3 -c "import random; print(round(random.uniform(0.3, max(0.5, $dur * 0.9)), 2))")
    # docent itself in the background (not through run(): $! must be docent's pid)
    "$D" ingest -q "$T/c" --data "$dir" -o models.embedder="$EMB" -o models.threads=2 \
        -o ingest.commit_docs=2 > /dev/null 2>&1 &
    pid=$!
    sleep "$delay"
    if kill -9 $pid 2>/dev/null; then killed=1; else killed=0; fi
    wait $pid 2>/dev/null
    verify "$dir" "run $i (killed after $delay s)"
    at_kill=$(run "$dir" ls --json 2>/dev/null | python3 -c "import json,sys; print(len(json.load(sys.stdin)['documents']))" 2>/dev/null)
    run "$dir" ingest -q --json "$T/c" > "$T/resume.json" 2>&1 || bad "run $i: resume failed: $(tail -2 "$T/resume.json")"
    verify "$dir" "run $i (resumed)"
    n=$(run "$dir" ls --json | python3 -c "import json,sys; print(len(json.load(sys.stdin)['documents']))")
    want=$(python3 -c "import json; print(len(json.load(open('$T/ref.ls'))['documents']))")
    [ "$n" = "$want" ] || bad "run $i: $n documents after resume, want $want"
    if [ -d "$T/c.bak" ]; then rm -rf "$T/c" && mv "$T/c.bak" "$T/c"; fi
    rm -rf "$dir"
    [ $killed -eq 1 ] || echo "run $i: the ingest had finished before the kill (delay $delay s)"
    echo "run $i: $([ $((i % 2)) -eq 0 ] && echo re-ingest || echo ingest) killed after $delay s with ${at_kill:-0 (no store yet)} documents stored: consistent, resumed"
done
echo "crash: $RUNS runs, $fails failures"
[ $fails -eq 0 ]
