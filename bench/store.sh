#!/usr/bin/env bash
# store.sh [BUILD] - storage, ingest and retrieval figures (make bench-store).
#
# 1. Ingest the whole postgresql-doc-15 manual (1,173 HTML pages) into a fresh
#    store with `docent ingest --json`: wall time, pages/s, chunks/s and the
#    time by stage (read, extract, chunk, embed, store).  Peer: the same
#    number of stored chunk texts (a sample of 512, scaled) embedded by
#    sentence-transformers on 2 threads: the ratio of embedding rates.
# 2. Re-ingest the unchanged manual (the incremental path: nothing embedded).
# 3. Ingest the sqlite3-doc HTML pages and run bench/retrieval_bench on the 40
#    questions of bench/questions_sqlite.tsv: recall@5 and MRR@10 for dense
#    only, BM25 only and hybrid; query embedding and idx_search latency.
# 4. bench/vindex_bench: FAISS search latency p50/p99 at 10k and 1M synthetic
#    vectors (VINDEX_N_LARGE to change the large size), exact (Flat) and HNSW32,
#    with HNSW's recall@10 against exact search on the same vectors.
# Needs: make deps, make models; the peer needs sentence-transformers (see
# tests/reference/requirements.txt).  Run on an idle machine.
set -euo pipefail
BUILD=${1:-build}
cd "$(dirname "$0")/.."
EMB=models/all-minilm-l6-v2
THREADS=${THREADS:-2}
PG=/usr/share/doc/postgresql-doc-15/html
SQ=/usr/share/doc/sqlite3
die() { echo "store.sh: $*" >&2; exit 1; }
[ -d "$EMB" ] || die "$EMB missing (make models)"
[ -d "$PG" ] && [ -d "$SQ" ] || die "postgresql-doc-15 / sqlite3-doc missing (make deps)"
make --no-print-directory -j2 BUILD="$BUILD" "$BUILD/docent" "$BUILD/bench/retrieval_bench" \
    "$BUILD/bench/vindex_bench" >/dev/null
W=$(mktemp -d /tmp/docent-bench-XXXXXX)
trap 'rm -rf "$W"' EXIT
export DOCENT_CONFIG=$PWD/etc/docent.conf
D() { "$BUILD/docent" "$@" -o models.embedder="$PWD/$EMB" -o models.threads="$THREADS"; }
j() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))" "$@"; }

echo "== 1. ingest: the whole postgresql-doc-15 manual ($(ls "$PG"/*.html | wc -l) pages), $THREADS threads"
D ingest --json -q --data "$W/pg" -c pg "$PG" > "$W/pg.json"
j "$W/pg.json" "'wall %.1f s: %d documents added, %d skipped, %d failed; %d chunks; %.1f pages/s, %.1f chunks/s' % (d['seconds'], d['added'], d['skipped'], d['failed'], d['chunks'], d['added']/d['seconds'], d['chunks']/d['seconds'])"
j "$W/pg.json" "'stages: ' + ', '.join('%s %.1f s' % (k, v) for k, v in d['stages'].items())"
if python3 -c 'import sentence_transformers' 2>/dev/null; then
    python3 - "$W/pg/docent.db" "$EMB" "$THREADS" "$W/pg.json" <<'EOF'
import json, sqlite3, sys, time
import torch
from sentence_transformers import SentenceTransformer
db, emb, threads, summ = sys.argv[1], sys.argv[2], int(sys.argv[3]), json.load(open(sys.argv[4]))
torch.set_num_threads(threads)
rows = sqlite3.connect(db).execute(
    "SELECT d.title, c.heading, c.text FROM chunks c JOIN documents d ON d.id = c.doc_id "
    "ORDER BY c.id LIMIT 512").fetchall()
texts = [(t + (" > " + h if h else "") + "\n\n" + x) if (t or h) else x for t, h, x in rows]
m = SentenceTransformer(emb, device="cpu")
m.encode(texts[:32], batch_size=32)
t = time.time(); m.encode(texts, batch_size=32); dt = time.time() - t
st = len(texts) / dt
ours = summ["chunks_embedded"] / summ["stages"]["embed"]
print("embed stage: docent %.1f chunks/s, sentence-transformers %.1f chunks/s on the same chunk texts "
      "(sample of %d): ratio %.2fx" % (ours, st, len(texts), ours / st))
print("sentence-transformers would need ~%.0f s to embed the %d chunks alone" % (summ["chunks"] / st, summ["chunks"]))
EOF
else
    echo "(peer skipped: sentence-transformers not installed)"
fi

echo "== 2. re-ingest of the unchanged manual"
D ingest --json -q --data "$W/pg" -c pg "$PG" > "$W/pg2.json"
j "$W/pg2.json" "'wall %.1f s: %d unchanged, %d chunks embedded' % (d['seconds'], d['unchanged'], d['chunks_embedded'])"

echo "== 3. retrieval quality: sqlite3-doc, $(grep -vc '^#' bench/questions_sqlite.tsv) questions"
D ingest --json -q --data "$W/sq" --include '*.html' "$SQ" > "$W/sq.json"
j "$W/sq.json" "'ingested %d pages, %d chunks in %.1f s' % (d['added'], d['chunks'], d['seconds'])"
"$BUILD/bench/retrieval_bench" "$W/sq" "$EMB" bench/questions_sqlite.tsv

echo "== 4. vector search (FAISS through docent's vindex), one query per call, k=10"
N=${VINDEX_N_LARGE:-1000000}
echo "-- 10k, exact (Flat)"
"$BUILD/bench/vindex_bench" -f Flat -n 10000 -d 384 -q 2000
echo "-- $N, exact (Flat): the baseline HNSW is measured against"
"$BUILD/bench/vindex_bench" -f Flat -n "$N" -d 384 -q 100 -r 0 -c 1000
echo "-- $N, HNSW32 efSearch 128, vectors around 1000 centres (embeddings cluster by topic)"
"$BUILD/bench/vindex_bench" -f HNSW32 -n "$N" -d 384 -e 128 -q 1000 -r 200 -c 1000 -t "${VINDEX_BUILD_S:-1200}"
