#!/usr/bin/env bash
# make_fixtures.sh [--passages] - regenerate the engine parity fixtures.
#
# Runs every tests/reference/gen_*.py (embeddings from sentence-transformers,
# greedy decoding and logits from llama.cpp via llama-cpp-python) against the
# models in models/.  The passages in tests/fixtures/embed/passages.txt are
# kept as committed; --passages re-extracts them from /usr/share/doc first
# (needs the Debian doc packages passages.py names, e.g. sqlite3-doc).
# Needs: pip install -r tests/reference/requirements.txt (not needed by make test).
set -euo pipefail
cd "$(dirname "$0")/../.."
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false

if ! python3 -c 'import sentence_transformers, llama_cpp, jinja2, numpy' 2>/dev/null; then
    echo "make_fixtures.sh: reference packages missing; run:" >&2
    echo "    pip install -r tests/reference/requirements.txt" >&2
    exit 1
fi
for m in models/all-minilm-l6-v2 models/smollm2-135m-instruct-q4_1.gguf; do
    [ -e "$m" ] || { echo "make_fixtures.sh: $m is missing (run make models)" >&2; exit 1; }
done
if [ "${1:-}" = "--passages" ]; then
    python3 tests/reference/passages.py
fi
for g in tests/reference/gen_*.py; do
    echo "== $g"
    python3 "$g"
done
du -ch tests/fixtures/embed tests/fixtures/generate | tail -n 1
