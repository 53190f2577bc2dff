/*
 * fuzz_extract.h - the check the extractor fuzz targets (fuzz_html, fuzz_md,
 * fuzz_docx) share.
 *
 * Feeds the input to an extractor with a small output cap (so the cap path is
 * exercised too) and checks what a caller relies on: a failure is a negative
 * code with a message naming the file; a success leaves clean UTF-8 blocks
 * inside the text, "\n\n" between them, headings with levels 1..6, sane line
 * ranges and a UTF-8 title.  Any violation aborts (libFuzzer reports it).
 *
 *   make fuzz; tests/fuzz/run.sh build SECONDS   (seeds: tests/fuzz/run.sh)
 */
#ifndef DOCENT_FUZZ_EXTRACT_H
#define DOCENT_FUZZ_EXTRACT_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ingest/internal.h"

static int fuzz_extract(ing_extract_fn fn, const char *name, const uint8_t *data, size_t size)
{
    ing_text t;
    doc_err err = {0};
    ing_text_init(&t, (size_t)1 << 20);
    int rc = fn((const char *)data, size, name, &t, &err);
    if (rc != 0) {
        if (rc > 0 || !err.msg[0] || !strstr(err.msg, name)) abort();
    } else {
        if (!utf8_valid(t.text.data ? t.text.data : "", t.text.len)) abort();
        if (t.text.len && memchr(t.text.data, 0, t.text.len)) abort();
        size_t end = 0;
        for (int i = 0; i < t.n_blocks; i++) {
            const ing_block *b = &t.blocks[i];
            if (b->len == 0 || b->off + b->len > t.text.len) abort();
            if (i && (b->off != end + 2 || memcmp(t.text.data + end, "\n\n", 2) != 0)) abort();
            if (b->kind == ING_BLK_HEADING && (b->level < 1 || b->level > 6)) abort();
            if (b->line_end < b->line_start) abort();
            end = b->off + b->len;
        }
        if (t.title && !utf8_valid(t.title, strlen(t.title))) abort();
    }
    ing_text_free(&t);
    return 0;
}

#endif
