/*
 * fuzz_md.c - libFuzzer target for the Markdown extractor (ingest/extract_md.c, md4c).
 * The checks are in fuzz_extract.h.
 */
#include "tests/fuzz/fuzz_extract.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return fuzz_extract(ing_extract_markdown, "fuzz.md", data, size);
}
