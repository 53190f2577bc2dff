#!/usr/bin/env bash
# answer.sh [STORE] - the answer path's latency: docent ask vs a Python RAG
# stack (bench/answer_peer.py: sentence-transformers + FAISS + llama.cpp via
# llama-cpp-python) on the same store, models, templates, budget and sampling,
# measured in the same run, 2 threads each.
#
# STORE: a data directory holding the pages of tests/eval/sqlite.pages; without
# one they are ingested into a temporary directory first.  The questions are
# the first 20 answerable ones of tests/eval/sqlite.jsonl.
#
# docent: `docent ask --json`, one process per question; its in-process timings
# (first text, total, per stage) exclude model loading, like the peer's; the
# process's wall time (loading both models included) is printed too.
# Prints p50 of each figure and the ratio peer / docent (> 1: docent faster).
set -euo pipefail
cd "$(dirname "$0")/.."
B=${BUILD:-build}
EMB=$PWD/models/all-minilm-l6-v2
GEN=$PWD/models/smollm2-135m-instruct-q4_1.gguf
export DOCENT_CONFIG=$PWD/etc/docent.conf
die() { echo "answer.sh: $*" >&2; exit 1; }
[ -x "$B/docent" ] || die "$B/docent missing (make)"
[ -d "$EMB" ] && [ -f "$GEN" ] || die "models missing (make models)"
python3 -c 'import llama_cpp, sentence_transformers, faiss' 2>/dev/null ||
    die "the peer needs llama-cpp-python, sentence-transformers and faiss-cpu (pip install -r tests/reference/requirements.txt faiss-cpu)"
W=$(mktemp -d /tmp/docent-bench-answer-XXXXXX)
trap 'rm -rf "$W"' EXIT
STORE=${1:-}
if [ -z "$STORE" ]; then
    STORE=$W/data
    mkdir -p "$W/pages"
    grep -v '^#' tests/eval/sqlite.pages | while read -r p; do cp "/usr/share/doc/sqlite3/$p" "$W/pages/"; done
    echo "== ingesting the eval pages into $STORE"
    "$B/docent" ingest -q --data "$STORE" -o models.embedder="$EMB" -o models.threads=2 "$W/pages"
fi
python3 - > "$W/questions.txt" <<'EOF'
import json
qs = [json.loads(l) for l in open("tests/eval/sqlite.jsonl")]
print("\n".join([q["question"] for q in qs if q.get("answerable", True)][:20]))
EOF

echo "== docent ask --json (20 questions)"
: > "$W/docent.jsonl"
while read -r q; do
    t0=$(date +%s.%N)
    "$B/docent" ask --json -q --data "$STORE" -o models.embedder="$EMB" -o models.generator="$GEN" \
        -o models.threads=2 "$q" > "$W/one.json"
    t1=$(date +%s.%N)
    python3 -c "import json,sys; d=json.load(open('$W/one.json')); d['wall']=$t1-$t0; print(json.dumps(d))" >> "$W/docent.jsonl"
done < "$W/questions.txt"

echo "== peer: sentence-transformers + FAISS + llama.cpp (20 questions)"
python3 bench/answer_peer.py "$STORE/docent.db" "$EMB" "$GEN" prompts "$W/questions.txt" > "$W/peer.jsonl"

python3 - "$W/docent.jsonl" "$W/peer.jsonl" <<'EOF'
import json, statistics, sys
d = [json.loads(l) for l in open(sys.argv[1])]
p = [json.loads(l) for l in open(sys.argv[2])]
med = statistics.median
def row(name, a, b, unit="s"):
    r = f"{b / a:5.2f}x" if a and b else "   -  "
    print(f"{name:34s} docent {a:8.3f} {unit}   peer {b:8.3f} {unit}   peer/docent {r}")
print(f"p50 over {len(d)} questions, 2 threads each")
row("time to first text", med(x["timings"]["first_text"] for x in d), med(x["first_text"] for x in p))
row("whole answer", med(x["timings"]["total"] for x in d), med(x["total"] for x in p))
row("question embedding", med(x["timings"]["embed"] for x in d), med(x["embed"] for x in p))
row("retrieval", med(x["timings"]["retrieve"] for x in d), med(x["retrieve"] for x in p))
dpt = med((x["timings"]["prefill"] / x["usage"]["prompt_tokens"]) * 1e3 for x in d)
ppt = med((x["first_text"] - x["embed"] - x["retrieve"]) / x["prompt_tokens"] * 1e3 for x in p)
row("prompt: time per prompt token", dpt, ppt, "ms")
dd = [x["timings"]["decode"] / x["usage"]["completion_tokens"] * 1e3 for x in d if x["usage"]["completion_tokens"] > 1]
pd = [(x["total"] - x["first_text"]) / (x["completion_tokens"] - 1) * 1e3 for x in p if x["completion_tokens"] > 1]
row("decode: time per answer token", med(dd), med(pd), "ms")
print(f"{'prompt tokens (p50)':34s} docent {med(x['usage']['prompt_tokens'] for x in d):8.0f}     peer {med(x['prompt_tokens'] for x in p):8.0f}")
print(f"{'answer tokens (p50)':34s} docent {med(x['usage']['completion_tokens'] for x in d):8.0f}     peer {med(x['completion_tokens'] for x in p):8.0f}")
print(f"docent stage split (p50, s): " + ", ".join(
    f"{k} {med(x['timings'][k] for x in d):.3f}" for k in
    ("guard", "embed", "retrieve", "prompt", "prefill", "decode", "cite", "filter")))
print(f"docent ask wall time per question, models loaded each time (p50): {med(x['wall'] for x in d):.2f} s")
EOF
