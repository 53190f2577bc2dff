#!/usr/bin/env bash
# demo.sh BUILD - docent end to end on the default models and a real manual:
#   1. ingest 65 pages of the SQLite manual (Debian's sqlite3-doc, the pages
#      listed in tests/eval/sqlite.pages) into BUILD/demo-data, with a progress
#      bar; ingest again (nothing changed: nothing is embedded);
#   2. search it: ranked passages with their scores and locations;
#   3. ask it three questions with `docent ask`: answers streamed from
#      SmolLM2-135M-Instruct, citing the passages as [n], then the cited sources
#      (title, uri#heading, lines, the supporting snippet) and the timings;
#   4. ask a question the pages do not answer: "the documents don't say";
#   5. the engine alone: embed a few sentences with all-MiniLM-L6-v2 and print
#      their cosine similarity matrix.
set -euo pipefail
BUILD=${1:-build}
cd "$(dirname "$0")/.."
D=$BUILD/docent
EMB=models/all-minilm-l6-v2
GEN=models/smollm2-135m-instruct-q4_1.gguf
MANUAL=/usr/share/doc/sqlite3
[ -f "$MANUAL/wal.html" ] || { echo "demo: $MANUAL is missing (apt-get install sqlite3-doc, or make deps)"; exit 1; }
export DOCENT_CONFIG=$PWD/etc/docent.conf
store=(--data "$BUILD/demo-data" -o models.embedder="$PWD/$EMB" -o models.generator="$PWD/$GEN")
pages=()
while read -r p; do
    case "$p" in ''|'#'*) continue ;; esac
    pages+=("$MANUAL/$p")
done < tests/eval/sqlite.pages
rm -rf "$BUILD/demo-data"   # a fresh store each run: the first ingest does all the work

echo "== ingest: ${#pages[@]} pages of the SQLite manual ($MANUAL, listed in tests/eval/sqlite.pages)"
"$D" ingest "${store[@]}" -c sqlite "${pages[@]}"
echo
echo "== ingest again (unchanged documents are skipped, nothing is embedded)"
"$D" ingest "${store[@]}" -c sqlite -q "${pages[@]}"
echo
q="write-ahead log checkpoint"
echo "== search: $q"
"$D" search "${store[@]}" -k 3 "$q"
echo
# questions that the default (135M-parameter) generator answers on topic;
# a larger model ([models] generator) answers better
for q in "What is the sqldiff utility?" \
         "How do I load an extension from a shared library at run time?" \
         "How do I collect statistics about indexes so the query planner can choose better plans?"; do
    echo "== ask: $q"
    "$D" ask "${store[@]}" "$q"
    echo
done
q="How do I grant SELECT privileges on a table to another database user?"
echo "== ask (the manual does not say): $q"
"$D" ask "${store[@]}" "$q"
echo

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
