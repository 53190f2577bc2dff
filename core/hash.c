/*
 * hash.c - xxh64 fingerprints (the one file that includes xxhash.h).
 *
 * Content hashes decide whether a document changed (ingest) and whether a
 * FAISS file is the one SQLite recorded (index); xxh64 is fast enough to hash
 * every byte of a corpus on each sync and collisions at 64 bits are not a
 * practical concern for those uses (it is not a security boundary).
 */
#include <xxhash.h>

#include "core/core.h"

uint64_t hash64(const void *p, size_t n)
{
    return (uint64_t)XXH64(p, n, 0);
}

static void xxh_block(void *ctx, const void *p, size_t n)
{
    XXH64_update(ctx, p, n);
}

int hash64_file(const char *path, uint64_t *out, doc_err *err)
{
    int rc;
    XXH64_state_t *st = XXH64_createState();
    *out = 0;
    if (!st) return doc_errf(err, DOC_ENOMEM, "%s: out of memory", path);
    XXH64_reset(st, 0);
    if ((rc = file_each_block(path, xxh_block, st, err)) == 0) *out = (uint64_t)XXH64_digest(st);
    XXH64_freeState(st);
    return rc;
}
