#!/usr/bin/env bash
# demo.sh BUILD - docent end to end on the default models and a real manual:
#   1. ingest the SQL language reference of the SQLite manual (sqlite3-doc, the
#      lang_*.html pages) into BUILD/demo-data, with a progress bar; ingest again
#      (nothing changed: nothing is embedded);
#   2. search it: ranked passages with their scores and locations;
#   3. embed a few sentences with all-MiniLM-L6-v2 and print their cosine similarity matrix;
#   4. ask SmolLM2-135M-Instruct a question in its chat template, streamed, with timings.
# (Cited answers over the manual arrive with the answer path: docent ask.)
set -euo pipefail
BUILD=${1:-build}
cd "$(dirname "$0")/.."
D=$BUILD/docent
EMB=models/all-minilm-l6-v2
GEN=models/smollm2-135m-instruct-q4_1.gguf
MANUAL=/usr/share/doc/sqlite3
export DOCENT_CONFIG=$PWD/etc/docent.conf
store=(--data "$BUILD/demo-data" -o models.embedder="$PWD/$EMB")

echo "== ingest: the SQL language reference of the SQLite manual ($MANUAL/lang_*.html)"
"$D" ingest "${store[@]}" -c sqlite --include 'lang_*.html' "$MANUAL"
echo
echo "== ingest again (unchanged documents are skipped, nothing is embedded)"
"$D" ingest "${store[@]}" -c sqlite --include 'lang_*.html' -q "$MANUAL"
echo
for q in "How do I add a column to an existing table?" \
         "What happens when a UNIQUE constraint fails during an insert?" \
         "recursive common table expression"; do
    echo "== search: $q"
    "$D" search "${store[@]}" -k 3 "$q"
done
sentences=(
  "How do I rotate the VPN certificate?"
  "Renewing the certificate used by the VPN gateway"
  "The cafeteria is closed on public holidays."
  "SQLite stores the entire database in a single file."
  "Une base de données SQLite tient dans un seul fichier."
)
echo "== the engine: embeddings with $EMB"
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
