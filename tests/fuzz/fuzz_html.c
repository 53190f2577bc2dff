/*
 * fuzz_html.c - libFuzzer target for the HTML extractor (ingest/extract_html.c, libxml2's HTML parser).
 * The checks are in fuzz_extract.h.
 */
#include "tests/fuzz/fuzz_extract.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return fuzz_extract(ing_extract_html, "fuzz.html", data, size);
}
