#!/usr/bin/env bash
# make_docx.sh - regenerate tests/fixtures/docs/sample.docx from sample.md with
# pandoc (used by tests/unit/test_extract.c: headings with levels, a table,
# a list, a code block, dc:title from the front matter).
set -euo pipefail
cd "$(dirname "$0")/../fixtures/docs"
pandoc --from markdown --to docx -o sample.docx sample.md
ls -l sample.docx
