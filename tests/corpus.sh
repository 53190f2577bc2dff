#!/usr/bin/env bash
# corpus.sh DIR - assemble the small real corpus the ingest tests use, from
# Debian's doc packages (see tools/deps.sh) and this repository's own docs:
#   DIR/sqlite/    12 HTML pages of sqlite3-doc
#   DIR/pg/        11 HTML pages of postgresql-doc-15 (the tutorial)
#   DIR/pdf/       R-data.pdf (r-doc-pdf, 41 pages)
#   DIR/md/        docs/*.md and README.md of this repository (Markdown)
#   DIR/docx/      engine.docx written by pandoc from docs/engine.md
#   DIR/text/      GPL-3 (plain text, base-files)
# Exits 77 (skip) when a package is missing.
set -eu
dir=$1
root=$(cd "$(dirname "$0")/.." && pwd)
SQ=/usr/share/doc/sqlite3
PG=/usr/share/doc/postgresql-doc-15/html
PDF=/usr/share/R/doc/manual/R-data.pdf
for need in "$SQ/lang_createtable.html" "$PG/tutorial-join.html" "$PDF" /usr/share/common-licenses/GPL-3; do
    [ -e "$need" ] || { echo "corpus: $need missing (run make deps)"; exit 77; }
done
command -v pandoc >/dev/null || { echo "corpus: pandoc missing (run make deps)"; exit 77; }
mkdir -p "$dir"/{sqlite,pg,pdf,md,docx,text}
for p in lang_createtable foreignkeys wal autoinc lang_altertable datatype3 limits lang_vacuum \
         partialindex expridx lang_upsert lang_returning; do
    cp "$SQ/$p.html" "$dir/sqlite/"
done
for p in tutorial-createdb tutorial-table tutorial-populate tutorial-select tutorial-join \
         tutorial-agg tutorial-update tutorial-delete tutorial-views tutorial-fk tutorial-transactions; do
    cp "$PG/$p.html" "$dir/pg/"
done
cp "$PDF" "$dir/pdf/"
cp "$root"/docs/*.md "$root/README.md" "$dir/md/"
pandoc -f markdown -t docx -o "$dir/docx/engine.docx" "$root/docs/engine.md"
cp /usr/share/common-licenses/GPL-3 "$dir/text/GPL-3.txt"
