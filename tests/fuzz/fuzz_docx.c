/*
 * fuzz_docx.c - libFuzzer target for the DOCX extractor (ingest/extract_docx.c: libzip + libxml2).
 * The checks are in fuzz_extract.h.
 */
#include "tests/fuzz/fuzz_extract.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return fuzz_extract(ing_extract_docx, "fuzz.docx", data, size);
}
