/*
 * ingest.h - docent's ingest pipeline, public API.
 *
 *   sources (files, folders, http(s) URLs, text)
 *     -> fingerprint (size, mtime, xxh64 of the bytes: unchanged documents are skipped)
 *     -> extract (plain text, Markdown, HTML, PDF, DOCX) -> structured text
 *     -> chunk (structure first, packed to the embedder's token budget, with overlap)
 *     -> embed in batches (llm/; chunks whose text did not change keep their vectors)
 *     -> store (index/): one document's old rows and vectors are replaced in the
 *        same transaction that adds the new ones; transactions group documents.
 *
 * Nothing holds more than one document (plus the current transaction's FAISS
 * delta) in memory.  An ing_ctx is used from one thread; *opts.cancel (may be
 * NULL) stops work between documents and between embedding batches.
 */
#ifndef DOCENT_INGEST_H
#define DOCENT_INGEST_H

#include <stddef.h>
#include <stdint.h>

#include "core/core.h"
#include "index/index.h"
#include "llm/llm.h"

typedef struct ing_ctx ing_ctx;

typedef struct ing_progress {
    int64_t files_total;      /* documents to look at (-1 while unknown) */
    int64_t files_done;
    int64_t chunks;           /* chunks stored so far */
    int64_t chunks_embedded;  /* of which newly embedded */
    double elapsed;           /* seconds since the start */
    const char *current;      /* the document being worked on (borrowed) */
} ing_progress;
typedef void (*ing_progress_fn)(void *ctx, const ing_progress *p);

/* ing_note_fn: one line worth telling the user now (a skip, a failure, a
 * watch event); kind is "skipped", "failed", "removed", "added", "updated". */
typedef void (*ing_note_fn)(void *ctx, const char *kind, const char *uri, const char *why);

typedef struct ing_opts {
    const char *collection;   /* NULL: "default" (created when missing) */
    int chunk_tokens;         /* budget of the embedded text; 0: 256; capped at the model's max */
    int overlap_tokens;       /* 0: 32; -1: none */
    int embed_batch;          /* 0: 32 */
    size_t max_file_bytes;    /* bigger files are skipped; 0: 64 MiB */
    long fetch_timeout_s;     /* 0: 60 */
    size_t fetch_max_bytes;   /* 0: 64 MiB */
    int fetch_max_redirects;  /* 0: 5 */
    int commit_docs;          /* documents per transaction; 0: 200 */
    double commit_seconds;    /* or seconds of work per transaction; 0: 10 */
    const char *const *include; /* globs (see ing_walk) */
    int n_include;
    const char *const *exclude;
    int n_exclude;
    int follow_symlinks;
    const volatile int *cancel;
    ing_progress_fn progress; /* may be NULL; called at most ~10 times a second */
    ing_note_fn note;         /* may be NULL */
    /* lock: when not NULL, called with on=1 before and on=0 after each use of
     * the store (ING_USE_STORE) and of the embedder (ING_USE_EMBEDDER, one
     * batch at a time), and around each write transaction, from its start to
     * its commit or rollback (ING_USE_WRITER, taken before the store), so a
     * store and an embedder can be shared with other threads (docentd) */
    void (*lock)(void *ctx, int what, int on);
    void *cb_ctx;
} ing_opts;

enum { ING_USE_STORE = 1, ING_USE_WRITER, ING_USE_EMBEDDER };

typedef struct ing_summary {
    int added, updated, unchanged, removed, skipped, failed;
    int64_t chunks;           /* chunks of the documents added or updated */
    int64_t chunks_embedded;  /* of which embedded now (the rest reused stored vectors) */
    double seconds;           /* wall time */
    /* time by stage (seconds): reading/fetching, extracting, chunking (with
     * tokenizing), embedding, storing (SQLite + FAISS, commits included) */
    double t_read, t_extract, t_chunk, t_embed, t_store;
} ing_summary;

/* ing_new: a pipeline writing into store s (borrowed) with embedder m
 * (borrowed, an encoder).  o is copied (its strings and arrays are borrowed
 * and must outlive the ctx). */
int ing_new(idx_store *s, llm_model *m, const ing_opts *o, ing_ctx **out, doc_err *err);
void ing_free(ing_ctx **c);

/* ing_add: ingest each source: a file, a folder (recursively; documents that
 * were ingested from under the folder and no longer exist are removed) or an
 * http(s) URL.  Per-document problems are counted (skipped/failed, reported
 * through opts.note) and do not stop the run; the return value is non-zero
 * only when the run as a whole could not go on (store error, cancellation). */
int ing_add(ing_ctx *c, const char *const *sources, int n, ing_summary *sum, doc_err *err);

/* ing_add_text: ingest text given in memory under uri (format NULL: plain
 * text; else "markdown", "html", ...). */
int ing_add_text(ing_ctx *c, const char *uri, const char *title, const char *format,
                 const char *text, size_t len, ing_summary *sum, doc_err *err);

/* ing_watch_run: follow the given folders with inotify until *opts.cancel: each
 * change is ingested (or removed) as it settles.  Run ing_add first for the
 * initial sync. */
int ing_watch_run(ing_ctx *c, const char *const *roots, int n, ing_summary *sum, doc_err *err);

/* ing_reindex: re-embed every stored chunk with m and record m as the store's
 * embedder (one transaction; the FAISS indexes are rebuilt). */
int ing_reindex(idx_store *s, llm_model *m, int batch, ing_progress_fn progress, void *cb_ctx,
                const volatile int *cancel, doc_err *err);

/* ing_embed_query: the embedding of a search query (dim floats in vec). */
int ing_embed_query(llm_model *m, const char *query, float *vec, doc_err *err);

/* ing_embedder_identity: name (the path's last component) and sha256 of the
 * weights (model.safetensors in a directory, else the file) for idx_opts.
 * For a remote embedder pass llm_model_source(m), "URL#MODEL": the name is
 * "remote:MODEL" and the hash that of the whole string (docs/remote.md). */
int ing_embedder_identity(const char *model_path, char name[256], char sha256[65], doc_err *err);

#endif
