#!/usr/bin/env bash
# ingest.test.sh - docent ingest / search / ls / rm / check end to end on real
# documents (tests/corpus.sh: sqlite3-doc HTML, postgresql-doc-15 HTML, an
# r-doc-pdf manual, Markdown, pandoc DOCX, plain text) with the real embedder,
# a real SQLite file and real FAISS indexes.
#
# Checks: summary counts; locations (PDF page of a known sentence, Markdown
# heading paths and line ranges against the source file); known passages found
# by search; incremental sync (unchanged tree embeds nothing, one changed file
# re-embeds only its changed chunks, a deleted file's rows and vectors go);
# rm; deleted / corrupted / stale vector files rebuilt; truncated and foreign
# database files refused with a clear error; embedder change refused.
set -u
B=${1:-build}
root=$(cd "$(dirname "$0")/.." && pwd)
D="$root/$B/docent"
EMB="$root/models/all-minilm-l6-v2"
[ -d "$EMB" ] || { echo "skip: $EMB missing (make models)"; exit 77; }
T=$(mktemp -d /tmp/docent-ingest-XXXXXX)
trap 'rm -rf "$T"' EXIT
"$root/tests/corpus.sh" "$T/c" || exit $?
export DOCENT_CONFIG="$root/etc/docent.conf"
run() { "$D" "$@" --data "$T/data" -o models.embedder="$EMB" -o models.threads=2; }
fails=0
ok() { echo "ok: $*"; }
bad() { echo "FAIL: $*"; fails=$((fails + 1)); }
jget() { python3 -c "import json,sys; d=json.load(sys.stdin); print(eval(sys.argv[1]))" "$1"; }

# ---- first ingest -----------------------------------------------------------
run ingest --json -q "$T/c" > "$T/s1.json" 2> "$T/s1.err"
rc=$?
[ $rc -eq 0 ] || { bad "ingest exit $rc: $(tail -3 "$T/s1.err")"; exit 1; }
ndocs=$(find "$T/c" -type f | wc -l)
added=$(jget "d['added']" < "$T/s1.json")
failed=$(jget "d['failed']" < "$T/s1.json")
chunks=$(jget "d['chunks']" < "$T/s1.json")
[ "$added" -eq "$ndocs" ] && [ "$failed" -eq 0 ] && ok "ingest: $added documents, $chunks chunks" ||
    bad "ingest: added $added of $ndocs, failed $failed: $(cat "$T/s1.json")"
run check > "$T/check" 2>&1 && ok "check after ingest" || bad "check: $(cat "$T/check")"

# ---- known passages, locations ---------------------------------------------
search() { run search --json -k "${K:-5}" "$@"; }
top_uri() { jget "d['results'][0]['uri'] if d['results'] else ''"; }
u=$(search "How do I enable foreign key constraints in SQLite?" | top_uri)
case "$u" in */foreignkeys.html) ok "search: foreign keys -> foreignkeys.html" ;;
    *) bad "search: foreign keys -> $u" ;; esac
u=$(search "write-ahead log checkpoint" | top_uri)
case "$u" in */wal.html) ok "search: wal -> wal.html" ;; *) bad "search: wal -> $u" ;; esac
u=$(search "join the weather and cities tables" | top_uri)
case "$u" in */tutorial-join.html) ok "search: join -> tutorial-join.html" ;;
    *) bad "search: join -> $u" ;; esac
# PDF: this sentence is on page 10 of R-data.pdf (pdftotext -f 10 -l 10)
search "The second is the form of escape commonly used by spreadsheets" > "$T/pdf.json"
pg=$(jget "[r['page'] for r in d['results'] if r['uri'].endswith('R-data.pdf') and 'commonly used by spreadsheets' in r['text']][:1]" < "$T/pdf.json")
[ "$pg" = "[10]" ] && ok "pdf: sentence found on page 10" || bad "pdf: page $pg (want [10])"
# DOCX: a heading of docs/engine.md becomes a heading of the pandoc DOCX
n=$(search "engine" --mode bm25 -k 20 | jget "len([r for r in d['results'] if r['uri'].endswith('.docx') and r['heading']])")
[ "$n" -gt 0 ] && ok "docx: passages with heading paths" || bad "docx: no passage with a heading"
# Markdown: every hit's line range holds its text and sits under its heading
K=20 search "tokenizer tests fixtures" --mode bm25 > "$T/md.json"
python3 - "$T/md.json" <<'EOF' && ok "markdown: line ranges and heading paths match the source" || bad "markdown locations"
import json, re, sys
d = json.load(open(sys.argv[1]))
md = [r for r in d["results"] if r["uri"].endswith(".md")]
assert md, "no markdown hits"
for r in md:
    lines = open(r["uri"], encoding="utf-8").read().split("\n")
    a, b = r["lines"]
    src = " ".join(lines[a - 1:b])
    words = [w for w in re.findall(r"[A-Za-z]{5,}", r["text"])][:8]
    missing = [w for w in words if w not in src]
    assert len(missing) <= 2, (r["uri"], a, b, missing)
    if r["heading"]:
        plain = lambda t: re.sub(r"[`*_]", "", t)
        last = plain(r["heading"].split(" > ")[-1])
        heads = [plain(l.lstrip("#").strip()) for l in lines[:a] if l.startswith("#")]
        assert any(last in h or h in last for h in heads), (r["uri"], last, a)
EOF

# ---- incremental ------------------------------------------------------------
run ingest --json -q "$T/c" > "$T/s2.json" 2>&1
[ "$(jget "(d['unchanged'], d['chunks_embedded'], d['added'], d['updated'])" < "$T/s2.json")" = "($ndocs, 0, 0, 0)" ] &&
    ok "re-ingest of an unchanged tree embeds nothing" || bad "re-ingest: $(cat "$T/s2.json")"
touch "$T/c/sqlite/wal.html"
run ingest --json -q "$T/c" > "$T/s3.json" 2>&1
[ "$(jget "(d['unchanged'], d['chunks_embedded'])" < "$T/s3.json")" = "($ndocs, 0)" ] &&
    ok "touch (same content) embeds nothing" || bad "touch: $(cat "$T/s3.json")"
# change one paragraph of one document: only that document is updated, and only
# the chunks whose text changed are embedded
python3 - "$T/c/text/GPL-3.txt" <<'EOF'
import sys
p = sys.argv[1]; s = open(p).read()
s = s.replace("The GNU General Public License is a free, copyleft license", "The GNU General Public License is a free, copyleft licence (edited)", 1)
open(p, "w").write(s)
EOF
before=$(run ls --json | jget "[x['chunks'] for x in d['documents'] if x['uri'].endswith('GPL-3.txt')][0]")
run ingest --json -q "$T/c" > "$T/s4.json" 2>&1
r=$(jget "(d['updated'], d['unchanged'], d['added'])" < "$T/s4.json")
emb=$(jget "d['chunks_embedded']" < "$T/s4.json")
[ "$r" = "(1, $((ndocs - 1)), 0)" ] && [ "$emb" -ge 1 ] && [ "$emb" -lt "$before" ] &&
    ok "one changed file: 1 updated, $emb of $before chunks re-embedded" || bad "changed file: $r, embedded $emb of $before"
u=$(search "copyleft licence edited" --mode bm25 | top_uri)
case "$u" in */GPL-3.txt) ok "search sees the new text" ;; *) bad "new text not found: $u" ;; esac
rm "$T/c/pg/tutorial-views.html"
run ingest --json -q "$T/c" > "$T/s5.json" 2>&1
[ "$(jget "d['removed']" < "$T/s5.json")" = 1 ] && ok "deleted file removed on re-ingest" || bad "delete: $(cat "$T/s5.json")"
run ls --json | jget "[x for x in d['documents'] if 'tutorial-views' in x['uri']]" | grep -q '^\[\]$' &&
    ok "ls no longer lists it" || bad "ls still lists the deleted file"
n=$(search "views" --mode bm25 -k 50 | jget "len([r for r in d['results'] if 'tutorial-views' in r['uri']])")
[ "$n" = 0 ] && ok "its chunks are gone from FTS5" || bad "FTS5 still returns it"
run check > "$T/check" 2>&1 && ok "check: FAISS ids == chunk ids after delete" || bad "check: $(cat "$T/check")"
# rm by path
run rm -q "$T/c/sqlite/limits.html" > /dev/null 2>&1 && [ -z "$(run ls --json | jget "[x for x in d['documents'] if x['uri'].endswith('limits.html')] or ''")" ] &&
    ok "rm PATH" || bad "rm PATH"
run rm "$T/c/nonexistent.html" > /dev/null 2> "$T/rm.err"
[ $? -eq 1 ] && grep -q "no stored document" "$T/rm.err" && ok "rm of an unknown document: clear error" || bad "rm unknown: $(cat "$T/rm.err")"

# ---- damaged vector files are rebuilt ---------------------------------------
V="$T/data/vectors"
want=$(search "write-ahead log checkpoint" | top_uri)
rm -f "$V"/*.faiss
u=$(search "write-ahead log checkpoint" 2> "$T/rb.err" | top_uri)
[ "$u" = "$want" ] && grep -qi "rebuil" "$T/rb.err" && ok "deleted vector file: rebuilt (logged), same result" ||
    bad "deleted vector file: got '$u', log: $(head -2 "$T/rb.err")"
f=$(ls "$V"/*.faiss | head -1)
python3 -c "import sys; p=sys.argv[1]; b=bytearray(open(p,'rb').read()); b[len(b)//2]^=0xff; b[100]^=0x55; open(p,'wb').write(b)" "$f"
u=$(search "write-ahead log checkpoint" 2> "$T/rb2.err" | top_uri)
[ "$u" = "$want" ] && grep -qi "rebuil" "$T/rb2.err" && ok "corrupted vector file: rebuilt" || bad "corrupted vector file: '$u' $(head -2 "$T/rb2.err")"
run check > /dev/null 2>&1 && ok "check after rebuilds" || bad "check after rebuilds"

# ---- embedder change refused ------------------------------------------------
"$D" search "x" --data "$T/data" -o models.embedder="$root/models/smollm2-135m-instruct-q4_1.gguf" > /dev/null 2> "$T/emb.err"
rc=$?
[ $rc -eq 1 ] && grep -q "not an encoder" "$T/emb.err" && ok "a decoder as embedder: refused" || bad "decoder as embedder: rc $rc $(cat "$T/emb.err")"

# ---- another embedder: refused until `docent reindex` ----------------------------
# a copy of MiniLM with one weight changed: a valid model with another sha256
mkdir -p "$T/emb2" && cp -r "$EMB/." "$T/emb2/"
python3 - "$T/emb2/model.safetensors" <<'EOF'
import struct, sys
p = sys.argv[1]; b = bytearray(open(p, "rb").read())
b[-4:] = struct.pack("<f", 0.0)   # the last float of the last tensor
open(p, "wb").write(b)
EOF
"$D" search "wal" --data "$T/data" -o models.embedder="$T/emb2" > /dev/null 2> "$T/emb2.err"
rc=$?
[ $rc -eq 1 ] && grep -q "docent reindex" "$T/emb2.err" && ok "another embedder: refused, says to run docent reindex" ||
    bad "another embedder: rc $rc: $(cat "$T/emb2.err")"
nchunks=$(run collections --json | jget "sum(c['chunks'] for c in d['collections'])")
"$D" reindex -q --data "$T/data" -o models.embedder="$T/emb2" > "$T/reindex.out" 2>&1 &&
    grep -q "reindexed $nchunks chunks" "$T/reindex.out" && ok "reindex: $nchunks chunks re-embedded" ||
    bad "reindex: $(cat "$T/reindex.out")"
u=$("$D" search --json "write-ahead log checkpoint" --data "$T/data" -o models.embedder="$T/emb2" 2>/dev/null | top_uri)
case "$u" in */wal.html) ok "search with the new embedder after reindex" ;; *) bad "after reindex: $u" ;; esac
"$D" check --data "$T/data" > /dev/null 2>&1 && ok "check after reindex" || bad "check after reindex"
"$D" search "wal" --data "$T/data" -o models.embedder="$EMB" > /dev/null 2> "$T/emb3.err"
[ $? -eq 1 ] && grep -q "docent reindex" "$T/emb3.err" && ok "the old embedder is now refused" || bad "old embedder: $(cat "$T/emb3.err")"
"$D" reindex -q --data "$T/data" -o models.embedder="$EMB" > /dev/null 2>&1 || bad "reindex back"

# ---- broken database files --------------------------------------------------
cp -r "$T/data" "$T/trunc"
sz=$(stat -c %s "$T/trunc/docent.db")
truncate -s $((sz / 3)) "$T/trunc/docent.db"
rm -f "$T/trunc/docent.db-wal" "$T/trunc/docent.db-shm"
"$D" search "wal" --data "$T/trunc" -o models.embedder="$EMB" > /dev/null 2> "$T/tr.err"
rc=$?
[ $rc -eq 1 ] && grep -q "docent.db" "$T/tr.err" && ok "truncated database: clear error ($(head -1 "$T/tr.err"))" ||
    bad "truncated database: rc $rc: $(head -2 "$T/tr.err")"
mkdir -p "$T/garbage" && head -c 100000 /dev/urandom > "$T/garbage/docent.db"
"$D" ls --data "$T/garbage" > /dev/null 2> "$T/gb.err"
rc=$?
[ $rc -eq 1 ] && grep -q "docent.db" "$T/gb.err" && ok "garbage database: clear error" || bad "garbage database: rc $rc: $(head -2 "$T/gb.err")"

# ---- unknown and empty documents ----------------------------------------------
mkdir -p "$T/odd" && head -c 3000 /dev/urandom > "$T/odd/blob.bin" && printf '\n\n  \n' > "$T/odd/empty.txt"
cp "$root/tests/fixtures/docs/scanned.pdf" "$T/odd/" 2>/dev/null
run ingest --json -q "$T/odd" > "$T/odd.json" 2>&1
python3 - "$T/odd.json" <<'EOF' && ok "unknown type and empty documents are skipped with reasons" || bad "odd files: $(cat "$T/odd.json")"
import json, sys
d = json.load(open(sys.argv[1]))
assert d["added"] == 0 and d["skipped"] >= 2, d
reasons = {p["uri"].rsplit("/", 1)[-1]: p["reason"] for p in d["problems"]}
assert "blob.bin" in reasons and "empty.txt" in reasons and "no text" in reasons["empty.txt"], reasons
EOF

# ---- http(s) sources ----------------------------------------------------------
port=$(python3 -c "import socket; s=socket.socket(); s.bind(('127.0.0.1',0)); print(s.getsockname()[1])")
(cd "$T/c/sqlite" && exec python3 -m http.server "$port" --bind 127.0.0.1) > /dev/null 2>&1 &
hpid=$!
for _ in $(seq 1 50); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
run ingest --json -q -c web "http://127.0.0.1:$port/autoinc.html" "http://127.0.0.1:$port/missing.html" > "$T/url.json" 2>&1
kill $hpid 2>/dev/null
python3 - "$T/url.json" "$port" <<'EOF' && ok "url: a page is ingested, a 404 is reported" || bad "url: $(cat "$T/url.json")"
import json, sys
d = json.load(open(sys.argv[1]))
assert d["added"] == 1 and d["failed"] == 1, d
r = [p["reason"] for p in d["problems"] if p["uri"].endswith("missing.html")]
assert r and "404" in r[0], d["problems"]
EOF
u=$(search -c web "AUTOINCREMENT keyword" | top_uri)
[ "$u" = "http://127.0.0.1:$port/autoinc.html" ] && ok "url: searchable under its URL" || bad "url: search -> $u"

# ---- passages shown to users are redacted ([safety] redact) ----------------------
mkdir -p "$T/pii"
printf 'VPN support contacts\n\nFor a new VPN certificate write to jane.doe@example.com or call +44 20 7946 0958.\nThe test card 4111 1111 1111 1111 must never be used in production.\n' > "$T/pii/contacts.txt"
run ingest -q -c pii "$T/pii" > /dev/null 2>&1
search -c pii "VPN certificate support contact" > "$T/pii.json"
python3 - "$T/pii.json" <<'EOF' && ok "search: email, phone and card redacted in passages" || bad "redaction: $(cat "$T/pii.json")"
import json, sys
t = json.load(open(sys.argv[1]))["results"][0]["text"]
assert "jane.doe@example.com" not in t and "4111 1111 1111 1111" not in t and "7946 0958" not in t, t
assert "[REDACTED:email]" in t and "[REDACTED:card]" in t and "[REDACTED:phone]" in t, t
EOF
search -c pii "VPN certificate support contact" -o safety.redact= | grep -q "jane.doe@example.com" &&
    ok "search: redaction off when [safety] redact is empty" || bad "redaction could not be turned off"

# ---- --watch: changes are ingested as they settle ---------------------------
mkdir -p "$T/w"
cp "$T/c/sqlite/autoinc.html" "$T/w/"
# docent itself in the background (not through run(): $! must be docent's pid)
"$D" ingest -q --watch -c watched "$T/w" --data "$T/data" -o models.embedder="$EMB" -o models.threads=2 \
    > "$T/watch.out" 2>&1 &
wpid=$!
wait_for() { # seconds condition...
    local n=$(( $1 * 2 )); shift
    for _ in $(seq 1 "$n"); do "$@" && return 0; sleep 0.5; done
    return 1
}
docs_in() { run ls -c watched --json 2>/dev/null | jget "sorted(x['uri'].rsplit('/',1)[-1] for x in d['documents'])" 2>/dev/null; }
has() { [ "$(docs_in)" = "$1" ]; }
wait_for 60 has "['autoinc.html']" && ok "watch: initial sync" || bad "watch: initial sync: $(docs_in)"
cp "$T/c/sqlite/wal.html" "$T/w/new.html"
wait_for 60 has "['autoinc.html', 'new.html']" && ok "watch: a new file is ingested" || bad "watch: new file: $(docs_in)"
u=$(search -c watched "write-ahead log checkpoint" | top_uri)
case "$u" in */w/new.html) ok "watch: the new file is searchable" ;; *) bad "watch: search -> $u" ;; esac
mv "$T/w/autoinc.html" "$T/w/renamed.html"
wait_for 60 has "['new.html', 'renamed.html']" && ok "watch: a move replaces the old path" || bad "watch: move: $(docs_in)"
rm "$T/w/new.html"
wait_for 60 has "['renamed.html']" && ok "watch: a deleted file is removed" || bad "watch: delete: $(docs_in)"
kill -INT $wpid
wait $wpid
rc=$?
[ $rc -eq 0 ] && grep -q "watched 'watched'" "$T/watch.out" && ok "watch: Ctrl-C ends with a summary" ||
    bad "watch: exit $rc: $(tail -3 "$T/watch.out")"
run check > "$T/check" 2>&1 && ok "check after watching" || bad "check after watch: $(cat "$T/check")"

echo "ingest: $fails failures"
[ $fails -eq 0 ]
