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

echo "ingest: $fails failures"
[ $fails -eq 0 ]
