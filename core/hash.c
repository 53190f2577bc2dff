/*
 * hash.c - xxh64 fingerprints (the one file that includes xxhash.h).
 *
 * Content hashes decide whether a document changed (ingest) and whether a
 * FAISS file is the one SQLite recorded (index); xxh64 is fast enough to hash
 * every byte of a corpus on each sync and collisions at 64 bits are not a
 * practical concern for those uses (it is not a security boundary).
 */
#include <errno.h>
#include <stdlib.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include <xxhash.h>

#include "core/core.h"

uint64_t hash64(const void *p, size_t n)
{
    return (uint64_t)XXH64(p, n, 0);
}

int hash64_file(const char *path, uint64_t *out, doc_err *err)
{
    int rc = 0, fd = -1;
    XXH64_state_t *st = NULL;
    char *blk = NULL;
    *out = 0;
    if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
        return doc_errf(err, DOC_EIO, "%s: %s", path, strerror(errno));
    if (!(st = XXH64_createState()) || !(blk = malloc(1 << 20))) {
        rc = doc_errf(err, DOC_ENOMEM, "%s: out of memory", path);
        goto done;
    }
    XXH64_reset(st, 0);
    for (;;) {
        ssize_t r = read(fd, blk, 1 << 20);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            rc = doc_errf(err, DOC_EIO, "%s: read: %s", path, strerror(errno));
            goto done;
        }
        if (r == 0) break;
        XXH64_update(st, blk, (size_t)r);
    }
    *out = (uint64_t)XXH64_digest(st);
done:
    free(blk);
    if (st) XXH64_freeState(st);
    if (fd >= 0) close(fd);
    return rc;
}
