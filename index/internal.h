/*
 * index/internal.h - declarations shared by the files of index/ only.
 *
 * vindex.c is the only file that includes FAISS (its C API, the headers under faiss/c_api/);
 * store*.c are the only files that include sqlite3.h.  The store talks to
 * FAISS through the vx_* functions below.
 */
#ifndef DOCENT_INDEX_INTERNAL_H
#define DOCENT_INDEX_INTERNAL_H

#include <stdint.h>

#include "core/core.h"
#include "index/index.h"

/* ---- vindex: one collection's FAISS index (vindex.c) --------------------- */

typedef struct vindex vindex;

/* vx_new: an empty IndexIDMap2 of dimension dim with inner-product metric.
 * factory NULL or "" builds "IDMap2,Flat"; otherwise the FAISS factory string
 * (e.g. "IDMap2,HNSW32"; "IDMap2," is prepended when the string lacks it). */
int vx_new(int dim, const char *factory, vindex **out, doc_err *err);
void vx_free(vindex **v);

int vx_dim(const vindex *v);
int64_t vx_count(const vindex *v);
/* vx_can_remove: 1 when the underlying index supports removal (Flat), 0 (HNSW). */
int vx_can_remove(const vindex *v);

/* vx_add: add n vectors (n, dim) with their ids. */
int vx_add(vindex *v, int64_t n, const float *x, const int64_t *ids, doc_err *err);
/* vx_remove: remove the given ids (absent ids are ignored); *removed may be
 * NULL.  DOC_EUNSUPPORTED when the index cannot remove (see vx_can_remove). */
int vx_remove(vindex *v, const int64_t *ids, int64_t n, int64_t *removed, doc_err *err);
/* vx_search: the k nearest to q (dim floats): scores[k] (inner product,
 * descending) and ids[k] (-1 past the end). */
int vx_search(const vindex *v, const float *q, int k, float *scores, int64_t *ids,
              doc_err *err);
/* vx_set_ef_search: HNSW efSearch (ignored for Flat). */
int vx_set_ef_search(vindex *v, int ef, doc_err *err);
/* vx_ids: every id in the index, ascending; *ids malloc'd (caller frees). */
int vx_ids(const vindex *v, int64_t **ids, int64_t *n, doc_err *err);

/* vx_save: serialise and write atomically to path (temp + fsync + rename +
 * fsync(dir)); *hash = xxh64 of the bytes written. */
int vx_save(const vindex *v, const char *path, uint64_t *hash, doc_err *err);
/* vx_load: read path, check its xxh64 equals expect_hash and its dimension
 * equals dim, then deserialise.  DOC_ENOTFOUND when missing, DOC_EFORMAT when
 * the hash, dimension or contents are wrong (the message names the file). */
int vx_load(const char *path, int dim, uint64_t expect_hash, vindex **out, doc_err *err);

/* ---- store: what store.c shares with store_search.c ---------------------- */

/* The SQLite handles are seen here only as incomplete struct types, so this
 * header does not include sqlite3.h (vindex.c includes it too). */
struct sqlite3;
struct sqlite3_stmt;

/* one collection's in-memory state */
typedef struct store_coll {
    int64_t id;
    char name[128];
    vindex *vx;         /* NULL until loaded (store_coll_vindex) */
    int64_t gen;        /* committed generation of its FAISS file, 0: none */
    uint64_t hash;      /* xxh64 of that file */
    int touched;        /* changed in the open write transaction */
    int rebuild;        /* vx no longer follows SQLite: rebuild from stored embeddings */
    /* idx_commit's work between saving the new file and COMMIT */
    int64_t new_gen;
    uint64_t new_hash;
    vindex *new_vx;     /* a rebuilt index replacing vx once committed */
} store_coll;

/* cached prepared statements: one slot each (store_q) */
enum {
    Q_COLL_BY_NAME, Q_COLL_INSERT, Q_COLL_ALL, Q_COLL_READERS, Q_COLL_NCHUNKS,
    Q_DOC_FIND_ID, Q_DOC_INSERT, Q_DOC_UPDATE, Q_DOC_BY_URI, Q_DOC_BY_ID, Q_DOC_TOUCH,
    Q_DOC_DELETE, Q_DOC_COLL,
    Q_CHUNK_IDS_OF_DOC, Q_CHUNK_DELETE_DOC, Q_CHUNK_INSERT, Q_CHUNK_OWNER, Q_CHUNK_VEC, Q_PASSAGE_VECS,
    Q_CHUNK_SET_VEC, Q_CHUNK_EACH, Q_COLL_EMBEDDINGS, Q_COLL_CHUNK_IDS,
    Q_FTS_INSERT, Q_FTS_DELETE, Q_VEC_PUT, Q_META_GET, Q_META_PUT,
    Q_SEARCH_BM25_ALL, Q_SEARCH_BM25_IN, Q_SEARCH_CHUNK,
    Q_N
};

/* the store's state, shared by store.c and store_search.c (vindex.c does not
 * look inside) */
struct idx_store {
    struct sqlite3 *db;
    struct sqlite3_stmt *q[Q_N];
    char dir[1024], db_path[1100], vec_dir[1100];
    int dim, readonly, in_tx;
    int embedder_stale;      /* opened with allow_embedder_change on another embedder */
    int reindex_finished;    /* idx_reindex_finish ran in the open transaction */
    char embedder_name[128], embedder_sha256[72];
    int64_t hnsw_threshold;
    char hnsw_factory[256];
    int hnsw_ef_search;
    store_coll *colls;
    int n_colls, cap_colls;
    doc_err err;             /* the last error (idx_errmsg) */
};

/* store_q: the cached statement of slot q, prepared from sql on first use;
 * reset with bindings cleared.  NULL on failure (s->err says why). */
struct sqlite3_stmt *store_q(idx_store *s, int q, const char *sql);
/* store_sqlerr: record the connection's last SQLite error as a DOC_E* code
 * (with "what: " in front) in s->err and return it. */
int store_sqlerr(idx_store *s, const char *what);
/* store_fail: record rc and a message in s->err; returns rc. */
int store_fail(idx_store *s, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* store_exec: run SQL without results; DOC_E* via store_sqlerr. */
int store_exec(idx_store *s, const char *sql);
/* store_refresh: outside a write transaction, bring the collections and their
 * vector indexes up to what SQLite records (another connection may have
 * committed); call inside the read transaction the caller then queries in. */
int store_refresh(idx_store *s);
/* store_coll_vindex: collection c's vector index, loaded (or rebuilt from the
 * stored embeddings when its file is missing, stale or unreadable). */
int store_coll_vindex(idx_store *s, store_coll *c, vindex **out);
/* store_coll_get: the collection with this id (NULL when unknown). */
store_coll *store_coll_get(idx_store *s, int64_t id);

#endif
