#!/usr/bin/env bash
# demo.sh BUILD - show the engine end to end on the default models:
#   1. embed a few sentences with all-MiniLM-L6-v2 and print their cosine similarity matrix;
#   2. ask SmolLM2-135M-Instruct a question in its chat template, streamed, with timings.
# (The full question-answering demo over a real manual arrives with the answer path.)
set -euo pipefail
BUILD=${1:-build}
cd "$(dirname "$0")/.."
D=$BUILD/docent
EMB=models/all-minilm-l6-v2
GEN=models/smollm2-135m-instruct-q4_1.gguf
sentences=(
  "How do I rotate the VPN certificate?"
  "Renewing the certificate used by the VPN gateway"
  "The cafeteria is closed on public holidays."
  "SQLite stores the entire database in a single file."
  "Une base de données SQLite tient dans un seul fichier."
)
echo "== embeddings: $EMB"
printf '%s\n' "${sentences[@]}" | "$D" embed -m "$EMB" - > "$BUILD/demo-vectors.txt"
echo "cosine similarity (vectors are L2-normalised, so this is the dot product):"
awk -v labels="$(printf '%s|' "${sentences[@]}")" '
  { n = NR; for (j = 1; j <= NF; j++) v[NR, j] = $j; d = NF }
  END {
    split(labels, L, "|")
    printf "%-52s", ""; for (i = 1; i <= n; i++) printf "  [%d] ", i; printf "\n"
    for (i = 1; i <= n; i++) {
      printf "[%d] %-48.48s", i, L[i]
      for (k = 1; k <= n; k++) { s = 0; for (j = 1; j <= d; j++) s += v[i, j] * v[k, j]; printf " %5.3f", s }
      printf "\n"
    }
  }' "$BUILD/demo-vectors.txt"
echo
echo "== generation: $GEN (greedy, chat template from the model)"
q="What is a good way to keep passwords safe? Answer in two sentences."
echo "user: $q"
printf 'assistant: '
"$D" generate -m "$GEN" --chat -n 96 --stats "$q"
