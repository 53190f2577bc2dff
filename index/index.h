/*
 * index.h - docent's store: SQLite (the source of truth) and FAISS (derived
 * vectors), public API.
 *
 * A store lives in one data directory:
 *
 *     <data>/docent.db                             SQLite, WAL mode
 *     <data>/vectors/<collection>.<gen>.faiss      one FAISS index per collection
 *
 * SQLite holds collections (with their readers), documents, chunks (text,
 * location, token count, the embedding as an f16 blob), an FTS5 table over the
 * chunk text for BM25, and `meta` (schema version, embedder identity).  Each
 * collection's FAISS index is an IndexIDMap2 keyed by chunk id; it is written
 * atomically (temp + fsync + rename + fsync(dir)) under a new generation and
 * the generation (with the file's xxh64) is recorded in the same SQLite
 * transaction that commits the chunks.  On open, a missing, stale, foreign or
 * unreadable index file is rebuilt from the stored embeddings (logged).
 *
 * Writes are grouped: idx_begin() opens a write transaction, any number of
 * idx_doc_put / idx_doc_remove calls follow, idx_commit() saves the touched
 * FAISS indexes and commits.  A crash at any point leaves each document wholly
 * present or wholly absent.  One idx_store is used from one thread at a time;
 * open a second store (another connection) for a second thread.
 *
 * Vectors are plain float arrays of `dim` floats, L2-normalised by the caller
 * (the embedder); scores are inner products (cosine).
 */
#ifndef DOCENT_INDEX_H
#define DOCENT_INDEX_H

#include <stddef.h>
#include <stdint.h>

#include "core/core.h"

typedef struct idx_store idx_store;

typedef struct idx_opts {
    const char *data_dir;        /* created if missing (with vectors/) */
    /* the embedder's identity; a store built by another embedder is refused
     * with DOC_ESTATE and a message that says to run `docent reindex`, unless
     * allow_embedder_change is set (reindex opens the store that way) */
    const char *embedder_name;   /* e.g. "all-minilm-l6-v2"; NULL: accept the stored
                                    identity and dim (commands that never embed:
                                    ls, rm, collections) */
    const char *embedder_sha256; /* hex digest of the weights file */
    int dim;                     /* embedding dimension */
    int allow_embedder_change;
    int64_t hnsw_threshold;      /* chunks in a collection above which HNSW is used; 0: 50000 */
    const char *hnsw_factory;    /* FAISS factory string; NULL: "IDMap2,HNSW32" */
    int hnsw_ef_search;          /* 0: 128 */
    int readonly;                /* open for search only */
} idx_opts;

/* idx_open: open (creating or migrating) the store in o->data_dir.  Stale,
 * missing or foreign FAISS files are rebuilt here.  Caller closes with
 * idx_close.  On failure *out is NULL and err says why (file, field). */
int idx_open(const idx_opts *o, idx_store **out, doc_err *err);
void idx_close(idx_store **s);
/* idx_errmsg: the last error's text (borrowed, valid until the next call). */
const char *idx_errmsg(const idx_store *s);

/* ---- collections ------------------------------------------------------- */

typedef struct idx_collection {
    int64_t id;
    char name[128];
    char readers[512];  /* comma-separated "user:NAME", "group:NAME", "uid:N", "*" (anyone) */
    int64_t n_docs, n_chunks;
} idx_collection;

/* idx_collection_ensure: the id of collection `name`, creating it (readers "*"
 * unless given) when missing.  Names: 1..127 bytes of [A-Za-z0-9_.-]. */
int idx_collection_ensure(idx_store *s, const char *name, const char *readers, int64_t *id);
int idx_collection_set_readers(idx_store *s, const char *name, const char *readers);
/* idx_collection_list: every collection, with counts; *out malloc'd. */
int idx_collection_list(idx_store *s, idx_collection **out, int *n);
/* idx_collection_find: DOC_ENOTFOUND when absent. */
int idx_collection_find(idx_store *s, const char *name, idx_collection *out);

/* ---- documents and chunks ---------------------------------------------- */

enum { IDX_DOC_OK = 0, IDX_DOC_EMPTY = 1 };

typedef struct idx_doc {
    int64_t id;
    int64_t collection_id;
    char collection[128];
    char *uri;            /* file path (absolute) or URL */
    char *title;
    char *mime;
    uint64_t hash;        /* xxh64 of the raw content */
    int64_t mtime;        /* seconds since the epoch (source's, or Last-Modified) */
    int64_t size;         /* bytes of the raw content */
    int64_t ingested_at;  /* seconds since the epoch */
    int64_t n_chunks;
} idx_doc;
/* idx_doc_clear: free the strings of a filled idx_doc. */
void idx_doc_clear(idx_doc *d);

typedef struct idx_chunk {
    int64_t id;            /* stable: see ing_chunk_id; chosen by the caller */
    int ordinal;           /* 0.. within the document */
    const char *text;
    const char *heading;   /* "Part > Chapter > Section" or "" */
    int page;              /* 1-based page, 0 when the format has none */
    int line_start, line_end;   /* 1-based source lines, 0 when unknown */
    int64_t char_start, char_end; /* [start, end) in the extracted text */
    int n_tokens;
    const float *vec;      /* dim floats */
} idx_chunk;

/* idx_doc_find: the document with this uri in the collection; DOC_ENOTFOUND
 * when absent.  Caller clears *out with idx_doc_clear. */
int idx_doc_find(idx_store *s, int64_t collection_id, const char *uri, idx_doc *out);
/* idx_doc_get: by id. */
int idx_doc_get(idx_store *s, int64_t doc_id, idx_doc *out);

/* idx_chunk_vec_lookup: the stored embedding of chunk `id` if it exists and its
 * text equals `text` (so a changed document reuses the vectors of its unchanged
 * chunks).  Returns 1 and fills vec (dim floats) when found, 0 when not. */
int idx_chunk_vec_lookup(idx_store *s, int64_t id, const char *text, float *vec);

/* idx_passage_vecs: the stored embeddings of a passage (idx_hit chunk_id ..
 * chunk_last: the chunks of one document between their ordinals), at most max
 * of them into vecs (max * dim floats).  Returns how many, or a negative
 * DOC_E* (idx_errmsg says why). */
int idx_passage_vecs(idx_store *s, int64_t first, int64_t last, float *vecs, int max);

/* idx_begin / idx_commit / idx_rollback: a write transaction.  idx_commit writes
 * a new generation of every FAISS index touched, records the generations and
 * commits; old files are unlinked after the commit. */
int idx_begin(idx_store *s);
int idx_commit(idx_store *s);
void idx_rollback(idx_store *s);

/* idx_doc_put: insert or replace document d->uri of collection d->collection_id
 * with chunks[0..n) (inside idx_begin/idx_commit).  The old chunks, FTS rows and
 * vectors of a replaced document go in the same transaction.  d->id is set.
 * Arguments (chunk ids used by another document or twice, non-finite vectors,
 * caps) are checked before anything is written: such an error leaves the
 * transaction as it was.  A failure while writing (I/O, memory) rolls the
 * whole transaction back (the message says so); idx_begin again. */
int idx_doc_put(idx_store *s, idx_doc *d, const idx_chunk *chunks, int n);
/* idx_doc_touch: record a new mtime for an unchanged document. */
int idx_doc_touch(idx_store *s, int64_t doc_id, int64_t mtime);
/* idx_doc_remove: delete a document's rows and vectors (inside a transaction). */
int idx_doc_remove(idx_store *s, int64_t doc_id);

/* idx_doc_list: documents of a collection (collection_id 0: all), ordered by
 * uri; *out malloc'd, free each with idx_doc_clear then free(*out). */
int idx_doc_list(idx_store *s, int64_t collection_id, idx_doc **out, int *n);
void idx_doc_list_free(idx_doc **docs, int n);

/* idx_chunk_each: call fn for every chunk (ordered by id) with its text and
 * heading (reindex uses this); fn returns non-zero to stop (returned). */
typedef int (*idx_chunk_fn)(void *ctx, int64_t chunk_id, int64_t doc_id, const char *title,
                            const char *heading, const char *text);
int idx_chunk_each(idx_store *s, idx_chunk_fn fn, void *ctx);
/* idx_reindex_set: replace chunk id's embedding (reindex; inside a transaction;
 * the collection's FAISS index is rebuilt at idx_commit). */
int idx_reindex_set(idx_store *s, int64_t chunk_id, const float *vec);
/* idx_reindex_finish: record the new embedder identity (inside the transaction). */
int idx_reindex_finish(idx_store *s);

/* ---- search ------------------------------------------------------------ */

typedef struct idx_search_opts {
    int k;                   /* passages returned; 0: 5 */
    int n_dense, n_bm25;     /* candidates from each leg; 0: 50 */
    int rrf_k;               /* reciprocal-rank constant; 0: 60 */
    const int64_t *collections; /* collections the caller may read; NULL: all */
    int n_collections;
    int merge_adjacent;      /* merge consecutive chunks of one document (default 1; -1 off) */
} idx_search_opts;

typedef struct idx_hit {
    int64_t chunk_id;        /* first chunk of the passage */
    int64_t chunk_last;      /* last chunk when merged, else == chunk_id */
    int64_t doc_id;
    char *uri, *title, *heading, *collection;
    char *text;              /* the passage (merged chunks without repeated overlap) */
    int page;
    int line_start, line_end;
    double score;            /* fused RRF score */
    double dense_score;      /* cosine of the best chunk, or NAN when not a dense hit */
    double bm25_score;       /* -bm25 of the best chunk (higher is better), or NAN */
    int dense_rank, bm25_rank; /* 1-based, 0 when absent from that leg */
} idx_hit;

/* idx_search: hybrid retrieval for one query.  qvec (dim floats, may be NULL to
 * skip the dense leg) and query (free text, escaped before FTS5; may be NULL to
 * skip BM25).  *hits malloc'd, ordered by score; free with idx_hits_free. */
int idx_search(idx_store *s, const float *qvec, const char *query, const idx_search_opts *o,
               idx_hit **hits, int *n);
void idx_hits_free(idx_hit **hits, int n);

/* ---- checks (tests, `docent status`) ------------------------------------ */

typedef struct idx_stats {
    int64_t n_collections, n_docs, n_chunks;
    int schema_version;
    char embedder[256];     /* "name sha256 dim" */
} idx_stats;
int idx_stats_get(idx_store *s, idx_stats *st);

/* idx_check: PRAGMA integrity_check, the FTS5 integrity check, and, for each
 * collection, that its FAISS ids equal its chunk ids.  0 when all hold; else
 * DOC_EFORMAT with the first problem in idx_errmsg. */
int idx_check(idx_store *s);

#endif
