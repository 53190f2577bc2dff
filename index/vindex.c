/*
 * vindex.c - one collection's vector index: a FAISS IndexIDMap2 reached only
 * through the FAISS C API (the headers in faiss/c_api/).  This is the one C
 * file of docent that includes FAISS; the store (store*.c) sees only the vx_*
 * functions of index/internal.h.
 *
 * Design:
 *   - Metric is inner product; callers pass L2-normalised vectors, so scores
 *     are cosine similarities.  Ids are the store's chunk ids (>= 0; -1 is
 *     FAISS's "no result").
 *   - The index is always an IndexIDMap2 (ids kept both ways, so they can be
 *     listed and removed).  Whether the wrapped index supports removal is
 *     decided once, when the vindex is built or loaded: a Flat index does,
 *     everything else is treated as not (HNSW cannot remove at all).
 *   - Files are written whole and atomically (core's file_write_atomic) and
 *     checked on load against the xxh64 the store recorded, so a stale,
 *     foreign, truncated or torn file is refused with DOC_EFORMAT before FAISS
 *     parses it; the checks after parsing (type, metric, dimension, counts)
 *     catch the rest.  The file is trusted once its hash matches: it is ours.
 *
 * Thread-safety: the const functions (vx_search, vx_ids, vx_save, the
 * getters) may run concurrently with each other; vx_add, vx_remove and
 * vx_set_ef_search need exclusive access.  FAISS may use OpenMP threads
 * inside one call.
 */
#include "index/internal.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <faiss/c_api/AutoTune_c.h>
#include <faiss/c_api/IndexFlat_c.h>
#include <faiss/c_api/Index_c.h>
#include <faiss/c_api/MetaIndexes_c.h>
#include <faiss/c_api/error_c.h>
#include <faiss/c_api/impl/AuxIndexStructures_c.h>
#include <faiss/c_api/index_factory_c.h>
#include <faiss/c_api/index_io_c.h>

enum {
    VX_DIM_MAX = 1 << 16,     /* largest vector dimension accepted */
    VX_K_MAX = 1 << 16,       /* largest k of one search */
    VX_EF_MAX = 1 << 16,      /* largest HNSW efSearch */
    VX_FACTORY_MAX = 256,     /* longest factory string */
};
#define VX_FILE_MAX ((size_t)1 << 36) /* 64 GiB: larger index files are refused */

static const char default_factory[] = "IDMap2,Flat";
static const char idmap2_prefix[] = "IDMap2,";

struct vindex {
    FaissIndex *index; /* an IndexIDMap2; owns its sub-index */
    int dim;
    int can_remove;    /* the sub-index is Flat */
};

/* ---- helpers ---------------------------------------------------------------- */

/* faiss_fail: record the last FAISS error (from this thread) as rc, prefixed
 * by what was being done; with oom_is_enomem, bad_alloc inside FAISS becomes
 * DOC_ENOMEM. */
static int faiss_fail(doc_err *err, int rc, int oom_is_enomem, const char *what)
{
    const char *m = faiss_get_last_error();
    if (!m) m = "unknown error";
    if (oom_is_enomem && strstr(m, "bad_alloc")) rc = DOC_ENOMEM;
    char msg[384];
    snprintf(msg, sizeof msg, "%s", m);
    size_t n = strlen(msg); /* FAISS messages sometimes end in a newline */
    while (n && (msg[n - 1] == '\n' || msg[n - 1] == ' ')) msg[--n] = 0;
    return doc_errf(err, rc, "%s: faiss: %s", what, msg);
}

static int all_finite(const float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i])) return 0;
    return 1;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/*
 * check_framing: check the IndexIDMap2 wrapper of a serialised index before
 * FAISS parses it.  FAISS 1.7.3 trusts the wrapper's ntotal when it rebuilds
 * the id -> position map after reading, indexing past the id array when the
 * field lies (a loop over garbage, or a crash), so that field is checked here
 * against the id array at the end of the file.  Layout (native endianness,
 * as FAISS writes it): "IxM2", int32 d, int64 ntotal, ...header..., the
 * sub-index, then the ids: uint64 count (== ntotal) and count int64s.
 */
static int check_framing(const uint8_t *p, size_t n, int dim, const char *path, doc_err *err)
{
    int32_t d;
    int64_t ntotal;
    uint64_t count;
    if (n < 24 || memcmp(p, "IxM2", 4) != 0) /* type, d, ntotal; the id count */
        return doc_errf(err, DOC_EFORMAT, "%s: not an IDMap2 index", path);
    memcpy(&d, p + 4, sizeof d);
    memcpy(&ntotal, p + 8, sizeof ntotal);
    if (d != dim) return doc_errf(err, DOC_EFORMAT, "%s: dimension %d, expected %d", path, d, dim);
    if (ntotal < 0 || (uint64_t)ntotal > (n - 24) / sizeof(int64_t))
        return doc_errf(err, DOC_EFORMAT, "%s: vector count %lld does not fit the file", path,
                        (long long)ntotal);
    memcpy(&count, p + n - 8 * (size_t)ntotal - 8, sizeof count);
    if (count != (uint64_t)ntotal)
        return doc_errf(err, DOC_EFORMAT, "%s: %lld vectors but %llu ids", path,
                        (long long)ntotal, (unsigned long long)count);
    return DOC_OK;
}

/* wrap: take ownership of idx (an IndexIDMap2) into a new vindex. */
static int wrap(FaissIndex *idx, vindex **out, doc_err *err)
{
    vindex *v = calloc(1, sizeof *v);
    if (!v) {
        faiss_Index_free(idx);
        return doc_errf(err, DOC_ENOMEM, "vindex: out of memory");
    }
    v->index = idx;
    v->dim = faiss_Index_d(idx);
    FaissIndex *sub = faiss_IndexIDMap2_sub_index(faiss_IndexIDMap2_cast(idx));
    v->can_remove = sub && faiss_IndexFlat_cast(sub) != NULL;
    *out = v;
    return DOC_OK;
}

/* ---- building and querying -------------------------------------------------- */

/* vx_new: see internal.h.  DOC_EINVAL for a bad dimension or a factory string
 * FAISS rejects (the message quotes it), DOC_ELIMIT for an over-long one.  On
 * failure *out is NULL.  Caller frees with vx_free. */
int vx_new(int dim, const char *factory, vindex **out, doc_err *err)
{
    *out = NULL;
    if (dim <= 0 || dim > VX_DIM_MAX)
        return doc_errf(err, DOC_EINVAL, "vector dimension %d out of range 1..%d", dim,
                        VX_DIM_MAX);
    if (!factory || !*factory) factory = default_factory;
    if (strlen(factory) > VX_FACTORY_MAX)
        return doc_errf(err, DOC_ELIMIT, "faiss factory string over %d bytes", VX_FACTORY_MAX);

    char desc[sizeof idmap2_prefix + VX_FACTORY_MAX];
    if (strncmp(factory, idmap2_prefix, sizeof idmap2_prefix - 1) == 0)
        snprintf(desc, sizeof desc, "%s", factory);
    else
        snprintf(desc, sizeof desc, "%s%s", idmap2_prefix, factory);

    FaissIndex *idx = NULL;
    if (faiss_index_factory(&idx, dim, desc, METRIC_INNER_PRODUCT) != 0 || !idx) {
        char what[VX_FACTORY_MAX + 64];
        snprintf(what, sizeof what, "faiss factory string \"%s\"", desc);
        return faiss_fail(err, DOC_EINVAL, 1, what);
    }
    FaissIndexIDMap2 *map = faiss_IndexIDMap2_cast(idx);
    if (!map || !faiss_IndexIDMap2_sub_index(map)) {
        faiss_Index_free(idx);
        return doc_errf(err, DOC_EINVAL, "faiss factory string \"%s\": not an IDMap2 index", desc);
    }
    return wrap(idx, out, err);
}

/* vx_free: release v and its FAISS index; sets *v to NULL; accepts NULL. */
void vx_free(vindex **v)
{
    if (!v || !*v) return;
    if ((*v)->index) faiss_Index_free((*v)->index);
    free(*v);
    *v = NULL;
}

int vx_dim(const vindex *v)
{
    return v->dim;
}

int64_t vx_count(const vindex *v)
{
    return faiss_Index_ntotal(v->index);
}

int vx_can_remove(const vindex *v)
{
    return v->can_remove;
}

/* vx_add: see internal.h.  ids must be >= 0 and not already in the index
 * (FAISS does not check duplicates; the store's chunk ids are unique).
 * DOC_EINVAL for a negative id or a non-finite component, DOC_ENOMEM when
 * FAISS runs out of memory.  On failure the index may hold a prefix of the
 * batch only if FAISS itself failed midway (then rebuild). */
int vx_add(vindex *v, int64_t n, const float *x, const int64_t *ids, doc_err *err)
{
    if (n < 0) return doc_errf(err, DOC_EINVAL, "vx_add: negative count %lld", (long long)n);
    if (n == 0) return DOC_OK;
    if (!x || !ids) return doc_errf(err, DOC_EINVAL, "vx_add: NULL vectors or ids");
    if ((uint64_t)n > SIZE_MAX / sizeof(float) / (uint64_t)v->dim)
        return doc_errf(err, DOC_ELIMIT, "vx_add: %lld vectors of dimension %d is too many",
                        (long long)n, v->dim);
    for (int64_t i = 0; i < n; i++)
        if (ids[i] < 0)
            return doc_errf(err, DOC_EINVAL, "vx_add: negative id %lld", (long long)ids[i]);
    if (!all_finite(x, (size_t)n * (size_t)v->dim))
        return doc_errf(err, DOC_EINVAL, "vx_add: vector with a non-finite component");
    if (faiss_Index_add_with_ids(v->index, n, x, ids) != 0)
        return faiss_fail(err, DOC_EINVAL, 1, "vx_add");
    return DOC_OK;
}

/* vx_remove: see internal.h.  *removed (if not NULL) is 0 on failure. */
int vx_remove(vindex *v, const int64_t *ids, int64_t n, int64_t *removed, doc_err *err)
{
    if (removed) *removed = 0;
    if (!v->can_remove)
        return doc_errf(err, DOC_EUNSUPPORTED,
                        "vx_remove: this index type cannot remove vectors (rebuild it instead)");
    if (n < 0) return doc_errf(err, DOC_EINVAL, "vx_remove: negative count %lld", (long long)n);
    if (n == 0) return DOC_OK;
    if (!ids) return doc_errf(err, DOC_EINVAL, "vx_remove: NULL ids");

    FaissIDSelectorBatch *sel = NULL;
    size_t nrem = 0;
    int rc = DOC_OK;
    if (faiss_IDSelectorBatch_new(&sel, (size_t)n, ids) != 0) {
        rc = faiss_fail(err, DOC_ENOMEM, 1, "vx_remove");
        goto done;
    }
    if (faiss_Index_remove_ids(v->index, (const FaissIDSelector *)sel, &nrem) != 0) {
        rc = faiss_fail(err, DOC_EINVAL, 1, "vx_remove");
        goto done;
    }
    if (removed) *removed = (int64_t)nrem;
done:
    if (sel) faiss_IDSelector_free((FaissIDSelector *)sel);
    return rc;
}

/* vx_search: see internal.h.  Past the last result ids are -1 and scores
 * -FLT_MAX (so scores stay descending and finite).  k in 1..65536; the query
 * must be finite (DOC_EINVAL).  On failure the outputs are unspecified. */
/* The OpenMP runtime FAISS is built with (libgomp).  FAISS parallelises a
 * search over its queries; with one query, the team it starts does no useful
 * work and, on a busy machine, waits on descheduled spinning threads (p50 of a
 * 10k Flat search went from 3 to 8 ms in our measurements).  vx_search runs its
 * single query with one thread.  The C API has no setter; these two are the
 * standard OpenMP entry points, always present where libfaiss is linked. */
extern int omp_get_max_threads(void);
extern void omp_set_num_threads(int n);

int vx_search(const vindex *v, const float *q, int k, float *scores, int64_t *ids,
              doc_err *err)
{
    int rc, nth;
    if (k <= 0 || k > VX_K_MAX)
        return doc_errf(err, DOC_EINVAL, "vx_search: k %d out of range 1..%d", k, VX_K_MAX);
    if (!q || !scores || !ids) return doc_errf(err, DOC_EINVAL, "vx_search: NULL argument");
    if (!all_finite(q, (size_t)v->dim))
        return doc_errf(err, DOC_EINVAL, "vx_search: query with a non-finite component");
    nth = omp_get_max_threads();
    omp_set_num_threads(1);
    rc = faiss_Index_search(v->index, 1, q, k, scores, ids);
    omp_set_num_threads(nth);
    if (rc != 0) return faiss_fail(err, DOC_EINVAL, 1, "vx_search");
    for (int i = 0; i < k; i++)
        if (ids[i] < 0) {
            ids[i] = -1;
            scores[i] = -FLT_MAX;
        }
    return DOC_OK;
}

/* vx_set_ef_search: see internal.h.  ef in 1..65536 (DOC_EINVAL otherwise).
 * A Flat index ignores it; another index that has no efSearch (IVF...) gives
 * DOC_EUNSUPPORTED.  The value is saved with the index. */
int vx_set_ef_search(vindex *v, int ef, doc_err *err)
{
    if (ef <= 0 || ef > VX_EF_MAX)
        return doc_errf(err, DOC_EINVAL, "efSearch %d out of range 1..%d", ef, VX_EF_MAX);
    FaissIndex *sub = faiss_IndexIDMap2_sub_index(faiss_IndexIDMap2_cast(v->index));
    if (faiss_IndexFlat_cast(sub)) return DOC_OK;

    FaissParameterSpace *ps = NULL;
    int rc = DOC_OK;
    if (faiss_ParameterSpace_new(&ps) != 0) {
        rc = faiss_fail(err, DOC_ENOMEM, 1, "efSearch");
        goto done;
    }
    /* set on the sub-index: the parameter belongs to the HNSW inside the map */
    if (faiss_ParameterSpace_set_index_parameter(ps, sub, "efSearch", (double)ef) != 0)
        rc = faiss_fail(err, DOC_EUNSUPPORTED, 1, "efSearch");
done:
    if (ps) faiss_ParameterSpace_free(ps);
    return rc;
}

/* vx_ids: see internal.h.  An empty index gives *ids NULL and *n 0.  On
 * failure (DOC_ENOMEM) *ids is NULL and *n 0. */
int vx_ids(const vindex *v, int64_t **ids, int64_t *n, doc_err *err)
{
    *ids = NULL;
    *n = 0;
    idx_t *map = NULL;
    size_t size = 0;
    faiss_IndexIDMap2_id_map(faiss_IndexIDMap2_cast(v->index), &map, &size);
    if (size == 0) return DOC_OK;
    int64_t *out = malloc(size * sizeof *out);
    if (!out) return doc_errf(err, DOC_ENOMEM, "vx_ids: cannot allocate %zu ids", size);
    memcpy(out, map, size * sizeof *out);
    qsort(out, size, sizeof *out, cmp_i64);
    *ids = out;
    *n = (int64_t)size;
    return DOC_OK;
}

/* ---- files ------------------------------------------------------------------ */

/* vx_save: see internal.h.  The index is serialised in memory first (the file
 * is written in one piece), so saving needs about the index's size again in
 * memory.  On failure *hash is 0 and path is unchanged. */
int vx_save(const vindex *v, const char *path, uint64_t *hash, doc_err *err)
{
    *hash = 0;
    char *mem = NULL;
    size_t size = 0;
    int rc = DOC_OK;
    FILE *f = open_memstream(&mem, &size);
    if (!f) return doc_errf(err, DOC_ENOMEM, "%s: cannot open a memory stream", path);
    if (faiss_write_index(v->index, f) != 0) {
        fclose(f);
        rc = faiss_fail(err, DOC_EIO, 1, path);
        goto done;
    }
    int bad = ferror(f);
    if (fclose(f) != 0 || bad) {
        rc = doc_errf(err, DOC_ENOMEM, "%s: serialising the index failed", path);
        goto done;
    }
    uint64_t h = hash64(mem, size);
    if ((rc = file_write_atomic(path, mem, size, err)) != DOC_OK) goto done;
    *hash = h;
done:
    free(mem);
    return rc;
}

/* vx_load: see internal.h.  On failure *out is NULL.  Anything FAISS cannot
 * parse is DOC_EFORMAT (even bad_alloc: a corrupt size field can ask for
 * terabytes), as are an empty file, trailing bytes, another index type or
 * metric, and inconsistent counts.  DOC_EINVAL for a path that is not a
 * regular file, DOC_ELIMIT past 64 GiB, DOC_EIO when reading fails.  Caller
 * frees *out with vx_free. */
int vx_load(const char *path, int dim, uint64_t expect_hash, vindex **out, doc_err *err)
{
    *out = NULL;
    file_map m = {0};
    FILE *f = NULL;
    FaissIndex *idx = NULL;
    int rc = file_map_open(path, &m, err);
    if (rc != DOC_OK) goto done;
    if (m.size > VX_FILE_MAX) {
        rc = doc_errf(err, DOC_ELIMIT, "%s: %zu bytes is over the limit of %zu", path, m.size,
                      VX_FILE_MAX);
        goto done;
    }
    if (hash64(m.data, m.size) != expect_hash) {
        rc = doc_errf(err, DOC_EFORMAT, "%s: checksum mismatch (stale or foreign index file)",
                      path);
        goto done;
    }
    if ((rc = check_framing(m.data, m.size, dim, path, err)) != DOC_OK) goto done;
    /* fmemopen in "r" mode never writes to the buffer, so the read-only
     * mapping can back it */
    if (!(f = fmemopen((void *)m.data, m.size, "r"))) {
        rc = doc_errf(err, DOC_ENOMEM, "%s: cannot open a memory stream", path);
        goto done;
    }
    if (faiss_read_index(f, 0, &idx) != 0 || !idx) {
        idx = NULL;
        char what[4200];
        snprintf(what, sizeof what, "%s: not a valid faiss index", path);
        rc = faiss_fail(err, DOC_EFORMAT, 0, what); /* a size field can ask for TBs */
        goto done;
    }
    long used = ftell(f);
    if (used < 0 || (size_t)used != m.size) {
        rc = doc_errf(err, DOC_EFORMAT, "%s: %zu bytes of trailing data after the index", path,
                      used < 0 ? (size_t)0 : m.size - (size_t)used);
        goto done;
    }
    FaissIndexIDMap2 *map = faiss_IndexIDMap2_cast(idx);
    FaissIndex *sub = map ? faiss_IndexIDMap2_sub_index(map) : NULL;
    if (!sub) {
        rc = doc_errf(err, DOC_EFORMAT, "%s: not an IDMap2 index", path);
        goto done;
    }
    if (faiss_Index_d(idx) != dim || faiss_Index_d(sub) != dim) {
        rc = doc_errf(err, DOC_EFORMAT, "%s: dimension %d, expected %d", path, faiss_Index_d(idx),
                      dim);
        goto done;
    }
    if (faiss_Index_metric_type(idx) != METRIC_INNER_PRODUCT ||
        faiss_Index_metric_type(sub) != METRIC_INNER_PRODUCT) {
        rc = doc_errf(err, DOC_EFORMAT, "%s: metric is not inner product", path);
        goto done;
    }
    idx_t *ids = NULL;
    size_t nids = 0;
    faiss_IndexIDMap2_id_map(map, &ids, &nids);
    if (faiss_Index_ntotal(idx) < 0 || (size_t)faiss_Index_ntotal(idx) != nids ||
        faiss_Index_ntotal(sub) != faiss_Index_ntotal(idx)) {
        rc = doc_errf(err, DOC_EFORMAT, "%s: inconsistent counts (%lld vectors, %zu ids)", path,
                      (long long)faiss_Index_ntotal(sub), nids);
        goto done;
    }
    rc = wrap(idx, out, err);
    idx = NULL; /* wrap took it, even on failure */
done:
    if (idx) faiss_Index_free(idx);
    if (f) fclose(f);
    file_map_close(&m);
    return rc;
}
