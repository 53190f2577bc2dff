/*
 * ingest.c - the pipeline: sources -> fingerprint -> extract -> chunk -> embed
 * -> store, with progress, per-document problems and grouped transactions.
 *
 * Design:
 *   - One document at a time: read (or fetch), hash, compare with the stored
 *     fingerprint, extract, chunk, embed, then idx_doc_put inside the current
 *     write transaction.  A transaction is committed every commit_docs
 *     documents or commit_seconds of work and at the end, so a crash loses at
 *     most the uncommitted documents, each wholly.
 *   - Chunk ids are xxh64 of (collection, uri, title, heading, text, occurrence)
 *     so they stay the same across re-ingests of unchanged text, and the
 *     embedding input of a chunk is a function of its id: a changed document
 *     reuses the stored vectors of the chunks whose id it still has.
 *   - The embedded text is "title > heading\n\ntext"; the context part is cut
 *     to CTX_TOKENS tokens and the chunk budget leaves room for it and for the
 *     [CLS]/[SEP] tokens, so no chunk is ever truncated by the encoder.
 */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "ingest/ingest.h"
#include "ingest/internal.h"

#define CTX_TOKENS 32          /* tokens of title/heading context per chunk */
#define MAX_PATHS (1 << 24)    /* files in one folder source */
#define NOTHING_TO_STORE 1     /* store_doc: the text has no chunk (headings only) */

struct ing_ctx {
    idx_store *s;
    llm_model *m;
    ing_opts o;
    int64_t coll_id;
    char coll[128];
    int dim;
    int budget;                /* tokens of chunk text */
    int overlap;
    /* transaction */
    int in_txn, txn_docs;
    double txn_start;
    int store_failed;          /* the store refused a write: the run stops */
    /* run state */
    ing_summary *sum;
    ing_progress pr;
    double t0, last_progress;
};

/* ---- small helpers ------------------------------------------------------ */

static void note(ing_ctx *c, const char *kind, const char *uri, const char *why)
{
    if (c->o.note) c->o.note(c->o.cb_ctx, kind, uri, why);
    else if (!strcmp(kind, "failed")) log_warn("%s: %s", uri, why);
    else log_info("%s %s%s%s", kind, uri, why ? ": " : "", why ? why : "");
}

static void progress(ing_ctx *c, int force)
{
    double now = time_now();
    if (!c->o.progress || (!force && now - c->last_progress < 0.1)) return;
    c->last_progress = now;
    c->pr.elapsed = now - c->t0;
    c->o.progress(c->o.cb_ctx, &c->pr);
}

static int cancelled(const ing_ctx *c)
{
    return c->o.cancel && *c->o.cancel;
}

static int count_tokens(void *ctx, const char *s, size_t n)
{
    ing_ctx *c = ctx;
    int nt = 0;
    doc_err e;
    int rc = llm_count_tokens(c->m, s, n, &nt, &e);
    return rc ? rc : nt;
}

/* hold: tell the lock hook that the store, the embedder or the writer's
 * place is taken (on=1) or given back (on=0) */
static void hold(const ing_ctx *c, int what, int on)
{
    if (c->o.lock) c->o.lock(c->o.cb_ctx, what, on);
}

/* the store calls the pipeline makes, each under the store (and with its
 * message taken while the store is still held) */
static int s_doc_find(ing_ctx *c, const char *uri, idx_doc *d, doc_err *err)
{
    hold(c, ING_USE_STORE, 1);
    int rc = idx_doc_find(c->s, c->coll_id, uri, d);
    if (rc && rc != DOC_ENOTFOUND) doc_errf(err, rc, "%s", idx_errmsg(c->s));
    hold(c, ING_USE_STORE, 0);
    return rc;
}

static int s_doc_touch(ing_ctx *c, int64_t id, int64_t mtime, doc_err *err)
{
    hold(c, ING_USE_STORE, 1);
    int rc = idx_doc_touch(c->s, id, mtime);
    if (rc) doc_errf(err, rc, "%s", idx_errmsg(c->s));
    hold(c, ING_USE_STORE, 0);
    return rc;
}

static int s_doc_remove(ing_ctx *c, int64_t id, doc_err *err)
{
    hold(c, ING_USE_STORE, 1);
    int rc = idx_doc_remove(c->s, id);
    if (rc) doc_errf(err, rc, "%s", idx_errmsg(c->s));
    hold(c, ING_USE_STORE, 0);
    return rc;
}

static int s_doc_list(ing_ctx *c, idx_doc **docs, int *n, doc_err *err)
{
    hold(c, ING_USE_STORE, 1);
    int rc = idx_doc_list(c->s, c->coll_id, docs, n);
    if (rc) doc_errf(err, rc, "%s", idx_errmsg(c->s));
    hold(c, ING_USE_STORE, 0);
    return rc;
}

static int txn_begin(ing_ctx *c, doc_err *err)
{
    if (c->in_txn) return 0;
    hold(c, ING_USE_WRITER, 1);
    hold(c, ING_USE_STORE, 1);
    int rc = idx_begin(c->s);
    if (rc) doc_errf(err, rc, "%s", idx_errmsg(c->s));
    hold(c, ING_USE_STORE, 0);
    if (rc) {
        hold(c, ING_USE_WRITER, 0);
        return rc;
    }
    c->in_txn = 1;
    c->txn_docs = 0;
    c->txn_start = time_now();
    return 0;
}

static int txn_commit(ing_ctx *c, doc_err *err)
{
    if (!c->in_txn) return 0;
    double t = time_now();
    hold(c, ING_USE_STORE, 1);
    int rc = idx_commit(c->s);
    if (rc) doc_errf(err, rc, "commit: %s", idx_errmsg(c->s));
    hold(c, ING_USE_STORE, 0);
    hold(c, ING_USE_WRITER, 0);
    c->in_txn = 0;
    if (c->sum) c->sum->t_store += time_now() - t;
    return rc;
}

static void txn_rollback(ing_ctx *c)
{
    if (!c->in_txn) return;
    hold(c, ING_USE_STORE, 1);
    idx_rollback(c->s);
    hold(c, ING_USE_STORE, 0);
    hold(c, ING_USE_WRITER, 0);
    c->in_txn = 0;
}

/* after a document: commit when the transaction is big or old enough */
static int txn_maybe_commit(ing_ctx *c, doc_err *err)
{
    if (!c->in_txn) return 0;
    if (++c->txn_docs < c->o.commit_docs && time_now() - c->txn_start < c->o.commit_seconds)
        return 0;
    return txn_commit(c, err);
}

/* ---- setup --------------------------------------------------------------- */

int ing_new(idx_store *s, llm_model *m, const ing_opts *o, ing_ctx **out, doc_err *err)
{
    ing_ctx *c;
    int rc;
    *out = NULL;
    if (llm_model_kind(m) != LLM_ENCODER)
        return doc_errf(err, DOC_EINVAL, "ingest needs an encoder (embedding) model, got %s",
                        llm_model_desc(m));
    if (!(c = calloc(1, sizeof *c))) return doc_errf(err, DOC_ENOMEM, "out of memory");
    c->s = s;
    c->m = m;
    c->o = *o;
    if (!c->o.collection) c->o.collection = "default";
    if (c->o.chunk_tokens <= 0) c->o.chunk_tokens = 256;
    if (c->o.overlap_tokens == 0) c->o.overlap_tokens = 32;
    if (c->o.embed_batch <= 0) c->o.embed_batch = 32;
    if (!c->o.max_file_bytes) c->o.max_file_bytes = 64u << 20;
    if (c->o.commit_docs <= 0) c->o.commit_docs = 200;
    if (c->o.commit_seconds <= 0) c->o.commit_seconds = 10;
    c->dim = llm_embed_dim(m);
    /* the embedded text (context + chunk + [CLS] + [SEP]) fits the model */
    int total = c->o.chunk_tokens < llm_n_ctx(m) ? c->o.chunk_tokens : llm_n_ctx(m);
    c->budget = total - 2 - CTX_TOKENS;
    if (c->budget < 8) {
        rc = doc_errf(err, DOC_EINVAL,
                      "chunk_tokens %d leaves no room for text (the context takes %d tokens)",
                      c->o.chunk_tokens, CTX_TOKENS + 2);
        free(c);
        return rc;
    }
    c->overlap = c->o.overlap_tokens < 0 ? 0 : c->o.overlap_tokens;
    if (c->overlap > c->budget / 2) c->overlap = c->budget / 2;
    snprintf(c->coll, sizeof c->coll, "%s", c->o.collection);
    /* a write outside any transaction of ours: still the writer's turn */
    hold(c, ING_USE_WRITER, 1);
    hold(c, ING_USE_STORE, 1);
    rc = idx_collection_ensure(s, c->coll, NULL, &c->coll_id);
    if (rc) doc_errf(err, rc, "collection '%s': %s", c->coll, idx_errmsg(s));
    hold(c, ING_USE_STORE, 0);
    hold(c, ING_USE_WRITER, 0);
    if (rc) {
        free(c);
        return rc;
    }
    *out = c;
    return 0;
}

void ing_free(ing_ctx **pc)
{
    ing_ctx *c = pc ? *pc : NULL;
    if (!c) return;
    txn_rollback(c);
    free(c);
    *pc = NULL;
}

/* ---- one document -------------------------------------------------------- */

/* the context prefix "title > heading", cut to CTX_TOKENS tokens */
static int context_prefix(ing_ctx *c, const char *title, const char *heading, buf *out)
{
    buf_reset(out);
    if (title && *title) buf_puts(out, title);
    if (heading && *heading) {
        if (out->len) buf_puts(out, " > ");
        buf_puts(out, heading);
    }
    if (!out->len) return 0;
    for (;;) {
        int nt = count_tokens(c, out->data, out->len);
        if (nt < 0) return nt;
        if (nt <= CTX_TOKENS) break;
        /* drop words from the end, proportionally, at a UTF-8 boundary */
        size_t keep = out->len * CTX_TOKENS / (size_t)nt;
        if (keep >= out->len) keep = out->len - 1;
        while (keep > 0 && ((unsigned char)out->data[keep] & 0xC0) == 0x80) keep--;
        out->len = keep;
        out->data[keep] = 0;
        if (!keep) break;
    }
    return 0;
}

static int64_t chunk_id(const char *coll, const char *uri, const char *title, const char *heading,
                        const char *text, size_t len, int occurrence)
{
    buf b;
    buf_init(&b, 0);
    buf_printf(&b, "%s%c%s%c%s%c%s%c%d%c", coll, 0, uri, 0, title ? title : "", 0, heading, 0,
               occurrence, 0);
    buf_append(&b, text, len);
    uint64_t h = b.data ? hash64(b.data, b.len) : 0;
    buf_free(&b);
    int64_t id = (int64_t)(h & INT64_MAX);
    return id ? id : 1;
}

typedef struct doc_work {
    ing_text t;
    ing_chunk *ch;
    int n;
    idx_chunk *ic;
    char **texts;     /* NUL-terminated chunk texts */
    char **inputs;    /* embedder inputs of the chunks to embed */
    int *which;       /* chunk index of each input */
    float *vecs;      /* (n, dim) */
} doc_work;

static void doc_work_free(doc_work *w)
{
    for (int i = 0; i < w->n; i++) {
        if (w->texts) free(w->texts[i]);
        if (w->inputs) free(w->inputs[i]);
    }
    free(w->texts);
    free(w->inputs);
    free(w->which);
    free(w->ic);
    free(w->vecs);
    ing_chunks_free(&w->ch, w->n);
    ing_text_free(&w->t);
}

/* chunk, reuse or embed, store; t already extracted */
static int store_doc(ing_ctx *c, doc_work *w, const char *uri, const char *mime, uint64_t hash,
                     int64_t mtime, int64_t size, int replacing, doc_err *err)
{
    int rc = 0, n_in = 0;
    double t;
    buf pre;
    buf_init(&pre, 1 << 16);
    ing_chunk_opts co = {.max_tokens = c->budget, .overlap_tokens = c->overlap};
    const char *title = w->t.title ? w->t.title : "";

    t = time_now();
    rc = ing_chunk_text(&w->t, &co, count_tokens, c, &w->ch, &w->n, err);
    c->sum->t_chunk += time_now() - t;
    if (rc) goto done;
    if (w->n == 0) { /* headings only (a chapter's table of contents): nothing to store */
        rc = NOTHING_TO_STORE;
        goto done;
    }
    if (!(w->ic = calloc((size_t)w->n, sizeof *w->ic)) ||
        !(w->texts = calloc((size_t)w->n, sizeof *w->texts)) ||
        !(w->inputs = calloc((size_t)w->n, sizeof *w->inputs)) ||
        !(w->which = calloc((size_t)w->n, sizeof *w->which)) ||
        !(w->vecs = malloc((size_t)w->n * (size_t)c->dim * sizeof(float)))) {
        rc = doc_errf(err, DOC_ENOMEM, "out of memory for %d chunks", w->n);
        goto done;
    }
    for (int i = 0; i < w->n; i++) {
        const ing_chunk *k = &w->ch[i];
        const char *txt = w->t.text.data + k->off;
        int occ = 0;
        if (!(w->texts[i] = strndup(txt, k->len))) {
            rc = doc_errf(err, DOC_ENOMEM, "out of memory");
            goto done;
        }
        for (int j = 0; j < i; j++) /* identical chunks in one document stay distinct */
            if (w->ch[j].len == k->len && !strcmp(w->texts[j], w->texts[i]) &&
                !strcmp(w->ch[j].heading, k->heading))
                occ++;
        idx_chunk *ic = &w->ic[i];
        ic->id = chunk_id(c->coll, uri, title, k->heading, txt, k->len, occ);
        ic->ordinal = i;
        ic->text = w->texts[i];
        ic->heading = k->heading;
        ic->page = k->page;
        ic->line_start = k->line_start;
        ic->line_end = k->line_end;
        ic->char_start = (int64_t)k->off;
        ic->char_end = (int64_t)(k->off + k->len);
        ic->n_tokens = k->n_tokens;
        ic->vec = w->vecs + (size_t)i * (size_t)c->dim;
        if (replacing) {
            hold(c, ING_USE_STORE, 1);
            int same = idx_chunk_vec_lookup(c->s, ic->id, ic->text, (float *)ic->vec);
            hold(c, ING_USE_STORE, 0);
            if (same == 1) continue; /* unchanged chunk: its stored vector is still right */
        }
        if ((rc = context_prefix(c, title, k->heading, &pre))) {
            doc_errf(err, rc, "tokenizing the heading of chunk %d", i);
            goto done;
        }
        buf in;
        buf_init(&in, 0);
        if (pre.len) buf_printf(&in, "%s\n\n", pre.data);
        buf_append(&in, txt, k->len);
        if (!(w->inputs[n_in] = buf_steal(&in, NULL))) {
            rc = doc_errf(err, DOC_ENOMEM, "out of memory");
            goto done;
        }
        w->which[n_in++] = i;
    }
    /* embed in batches, scatter into place */
    t = time_now();
    for (int b = 0; b < n_in; b += c->o.embed_batch) {
        int nb = n_in - b < c->o.embed_batch ? n_in - b : c->o.embed_batch;
        float *tmp = malloc((size_t)nb * (size_t)c->dim * sizeof(float));
        if (!tmp) {
            rc = doc_errf(err, DOC_ENOMEM, "out of memory");
            goto done;
        }
        hold(c, ING_USE_EMBEDDER, 1);
        rc = llm_embed(c->m, (const char *const *)w->inputs + b, nb, tmp, c->o.cancel, err);
        hold(c, ING_USE_EMBEDDER, 0);
        for (int i = 0; !rc && i < nb; i++)
            memcpy(w->vecs + (size_t)w->which[b + i] * (size_t)c->dim, tmp + (size_t)i * (size_t)c->dim,
                   (size_t)c->dim * sizeof(float));
        free(tmp);
        if (rc) goto done;
        c->pr.chunks_embedded += nb;
        progress(c, 0);
    }
    c->sum->t_embed += time_now() - t;
    c->sum->chunks_embedded += n_in;

    t = time_now();
    if ((rc = txn_begin(c, err))) {
        c->store_failed = 1;
        goto done;
    }
    idx_doc d = {.collection_id = c->coll_id, .uri = (char *)uri, .title = (char *)title,
                 .mime = (char *)mime, .hash = hash, .mtime = mtime, .size = size,
                 .ingested_at = (int64_t)time(NULL)};
    snprintf(d.collection, sizeof d.collection, "%s", c->coll);
    hold(c, ING_USE_STORE, 1);
    rc = idx_doc_put(c->s, &d, w->ic, w->n);
    if (rc) doc_errf(err, rc, "store: %s", idx_errmsg(c->s));
    hold(c, ING_USE_STORE, 0);
    if (rc) {
        c->store_failed = 1;
        c->sum->t_store += time_now() - t;
        goto done;
    }
    c->sum->t_store += time_now() - t;
    c->sum->chunks += w->n;
    c->pr.chunks += w->n;
    if ((rc = txn_maybe_commit(c, err))) c->store_failed = 1;
done:
    buf_free(&pre);
    return rc;
}

/* Returns 0 whatever happened to the document (counted in the summary), or a
 * negative code when the run must stop (store failure, cancellation). */
static int process_doc(ing_ctx *c, const char *uri, const char *data, size_t len,
                       const char *content_type, int64_t mtime, const char *title_hint,
                       const char *format)
{
    int rc = 0, found = 0;
    idx_doc old = {0};
    doc_err e = {0};
    doc_work w = {0};
    double t;
    const char *why = NULL;
    const ing_format *fmt = NULL;
    uint64_t hash = hash64(data, len);

    c->pr.current = uri;
    rc = s_doc_find(c, uri, &old, &e);
    if (rc == 0) found = 1;
    else if (rc != DOC_ENOTFOUND) goto fatal;
    rc = 0;
    if (found && old.hash == hash && old.size == (int64_t)len) {
        c->sum->unchanged++;
        if (old.mtime != mtime) {
            if ((rc = txn_begin(c, &e)) || (rc = s_doc_touch(c, old.id, mtime, &e))) goto fatal;
        }
        goto done;
    }
    if (format) {
        if (!(fmt = ing_format_find(format))) why = "unknown format name";
    } else {
        fmt = ing_detect(uri, content_type, data, len, &why);
    }
    if (!fmt) {
        c->sum->skipped++;
        note(c, "skipped", uri, why ? why : "unknown type");
        goto done;
    }
    ing_text_init(&w.t, 0);
    t = time_now();
    rc = fmt->extract(data, len, uri, &w.t, &e);
    c->sum->t_extract += time_now() - t;
    if (rc) {
        c->sum->failed++;
        note(c, "failed", uri, e.msg[0] ? e.msg : doc_strerror(rc));
        rc = 0;
        goto done;
    }
    if (!w.t.title && title_hint) ing_text_set_title(&w.t, title_hint, strlen(title_hint));
    if (w.t.n_blocks > 0) rc = store_doc(c, &w, uri, fmt->mime, hash, mtime, (int64_t)len, found, &e);
    if (w.t.n_blocks == 0 || rc == NOTHING_TO_STORE) {
        c->sum->skipped++;
        note(c, "skipped", uri,
             rc == NOTHING_TO_STORE ? "no text besides headings"
             : !strcmp(fmt->name, "pdf") ? "no text (a scanned pdf? it has no text layer)"
                                         : "no text");
        rc = 0;
        if (found) { /* its old text is gone: so are its chunks */
            if ((rc = txn_begin(c, &e)) || (rc = s_doc_remove(c, old.id, &e))) goto fatal;
            c->sum->removed++;
        }
        goto done;
    }
    if (rc == DOC_ECANCELLED) goto fatal;
    if (rc) {
        /* a store failure is fatal (the transaction is suspect); others are per-document */
        if (c->store_failed) goto fatal;
        c->sum->failed++;
        note(c, "failed", uri, e.msg[0] ? e.msg : doc_strerror(rc));
        rc = 0;
        goto done;
    }
    if (found) c->sum->updated++, note(c, "updated", uri, NULL);
    else c->sum->added++, note(c, "added", uri, NULL);
done:
    doc_work_free(&w);
    idx_doc_clear(&old);
    c->pr.files_done++;
    progress(c, 0);
    return rc;
fatal:
    doc_work_free(&w);
    idx_doc_clear(&old);
    txn_rollback(c);
    log_error("%s: %s", uri, e.msg);
    return rc ? rc : DOC_EIO;
}

/* ---- sources ------------------------------------------------------------- */

static int do_file(ing_ctx *c, const char *path, const struct stat *st)
{
    char *data = NULL;
    size_t len = 0;
    doc_err e = {0};
    int rc;
    double t = time_now();
    if ((size_t)st->st_size > c->o.max_file_bytes) {
        char why[96];
        snprintf(why, sizeof why, "larger than the %zu MiB limit", c->o.max_file_bytes >> 20);
        c->sum->skipped++;
        c->pr.files_done++;
        note(c, "skipped", path, why);
        return 0;
    }
    rc = file_read_all(path, c->o.max_file_bytes, &data, &len, &e);
    c->sum->t_read += time_now() - t;
    if (rc) {
        c->sum->failed++;
        c->pr.files_done++;
        note(c, "failed", path, e.msg);
        return 0;
    }
    rc = process_doc(c, path, data, len, NULL, (int64_t)st->st_mtime, NULL, NULL);
    free(data);
    return rc;
}

static int do_url(ing_ctx *c, const char *url)
{
    ing_fetched f = {0};
    doc_err e = {0};
    ing_fetch_opts fo = {.timeout_s = c->o.fetch_timeout_s, .max_bytes = c->o.fetch_max_bytes,
                         .max_redirects = c->o.fetch_max_redirects, .cancel = c->o.cancel};
    double t = time_now();
    int rc = ing_fetch(url, &fo, &f, &e);
    c->sum->t_read += time_now() - t;
    if (rc == DOC_ECANCELLED) return rc;
    if (rc) {
        c->sum->failed++;
        c->pr.files_done++;
        note(c, "failed", url, e.msg);
        return 0;
    }
    rc = process_doc(c, url, f.data, f.len, f.content_type, f.mtime ? f.mtime : (int64_t)time(NULL),
                     NULL, NULL);
    ing_fetched_free(&f);
    return rc;
}

/* a folder's file list, gathered first so progress can show a total and so
 * documents that vanished can be found */
typedef struct path_list {
    char **v;
    int n, cap;
    int overflow;
} path_list;

static int collect(void *ctx, const char *path, const struct stat *st)
{
    path_list *l = ctx;
    (void)st;
    if (l->n == l->cap) {
        int cap = l->cap ? 2 * l->cap : 256;
        if (cap > MAX_PATHS) return l->overflow = 1, DOC_ELIMIT;
        char **v = realloc(l->v, (size_t)cap * sizeof *v);
        if (!v) return DOC_ENOMEM;
        l->v = v, l->cap = cap;
    }
    if (!(l->v[l->n] = strdup(path))) return DOC_ENOMEM;
    l->n++;
    return 0;
}

static void walk_warn(void *ctx, const char *path, const char *why)
{
    ing_ctx *c = ctx;
    c->sum->skipped++;
    note(c, "skipped", path, why);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* remove documents stored from under root (a folder) that are not in l */
static int remove_vanished(ing_ctx *c, const char *root, path_list *l, doc_err *err)
{
    idx_doc *docs = NULL;
    int n = 0, rc;
    size_t rl = strlen(root);
    if ((rc = s_doc_list(c, &docs, &n, err))) return rc;
    qsort(l->v, (size_t)l->n, sizeof *l->v, cmp_str);
    for (int i = 0; i < n && !rc; i++) {
        const char *u = docs[i].uri;
        if (strncmp(u, root, rl) || (u[rl] != '/' && !(rl == 1 && root[0] == '/'))) continue;
        if (bsearch(&u, l->v, (size_t)l->n, sizeof *l->v, cmp_str)) continue;
        if ((rc = txn_begin(c, err)) || (rc = s_doc_remove(c, docs[i].id, err))) break;
        c->sum->removed++;
        note(c, "removed", u, "no longer exists");
    }
    idx_doc_list_free(&docs, n);
    return rc;
}

static int do_path(ing_ctx *c, const char *src, doc_err *err)
{
    char root[PATH_MAX];
    struct stat st;
    path_list l = {0};
    int rc = 0;
    if (!realpath(src, root) || stat(root, &st)) {
        c->sum->failed++;
        note(c, "failed", src, strerror(errno));
        return 0;
    }
    if (!S_ISDIR(st.st_mode)) {
        if (!S_ISREG(st.st_mode)) {
            c->sum->skipped++;
            note(c, "skipped", root, "not a regular file");
            return 0;
        }
        if (c->pr.files_total < 0) c->pr.files_total = 0;
        c->pr.files_total++;
        return do_file(c, root, &st);
    }
    ing_walk_opts wo = {.include = c->o.include, .n_include = c->o.n_include,
                        .exclude = c->o.exclude, .n_exclude = c->o.n_exclude,
                        .follow_symlinks = c->o.follow_symlinks};
    if ((rc = ing_walk(root, &wo, collect, walk_warn, &l, err))) {
        if (l.overflow) doc_errf(err, rc, "%s: more than %d files", root, MAX_PATHS);
        goto done;
    }
    if (c->pr.files_total < 0) c->pr.files_total = 0;
    c->pr.files_total += l.n;
    progress(c, 1);
    for (int i = 0; i < l.n && !rc; i++) {
        if (cancelled(c)) {
            rc = doc_errf(err, DOC_ECANCELLED, "cancelled");
            break;
        }
        if (stat(l.v[i], &st)) { /* gone since the walk */
            continue;
        }
        if ((rc = do_file(c, l.v[i], &st))) doc_errf(err, rc, "%s: stopped", l.v[i]);
    }
    if (!rc && !cancelled(c)) rc = remove_vanished(c, root, &l, err);
done:
    for (int i = 0; i < l.n; i++) free(l.v[i]);
    free(l.v);
    return rc;
}

static void run_begin(ing_ctx *c, ing_summary *sum)
{
    memset(sum, 0, sizeof *sum);
    c->sum = sum;
    memset(&c->pr, 0, sizeof c->pr);
    c->pr.files_total = -1;
    c->t0 = time_now();
    c->last_progress = 0;
}

static int run_end(ing_ctx *c, int rc, doc_err *err)
{
    doc_err e2 = {0};
    /* whatever was stored is whole: commit it even when stopping early */
    int rc2 = txn_commit(c, rc ? &e2 : err);
    if (!rc && rc2) rc = rc2;
    c->pr.current = NULL;
    progress(c, 1);
    c->sum->seconds = time_now() - c->t0;
    return rc;
}

int ing_add(ing_ctx *c, const char *const *sources, int n, ing_summary *sum, doc_err *err)
{
    int rc = 0;
    run_begin(c, sum);
    for (int i = 0; i < n && !rc; i++) {
        if (cancelled(c)) {
            rc = doc_errf(err, DOC_ECANCELLED, "cancelled");
            break;
        }
        if (ing_is_url(sources[i])) {
            if (c->pr.files_total < 0) c->pr.files_total = 0;
            c->pr.files_total++;
            if ((rc = do_url(c, sources[i]))) doc_errf(err, rc, "%s: stopped", sources[i]);
        } else {
            rc = do_path(c, sources[i], err);
        }
    }
    return run_end(c, rc, err);
}

int ing_add_text(ing_ctx *c, const char *uri, const char *title, const char *format,
                 const char *text, size_t len, ing_summary *sum, doc_err *err)
{
    int rc;
    run_begin(c, sum);
    c->pr.files_total = 1;
    rc = process_doc(c, uri, text, len, NULL, (int64_t)time(NULL), title, format ? format : "text");
    if (rc) doc_errf(err, rc, "%s: stopped", uri);
    return run_end(c, rc, err);
}

/* ---- watching ------------------------------------------------------------ */

static int remove_under(ing_ctx *c, const char *path, doc_err *err)
{
    idx_doc *docs = NULL;
    int n = 0, rc;
    size_t pl = strlen(path);
    if ((rc = s_doc_list(c, &docs, &n, err))) return rc;
    for (int i = 0; i < n && !rc; i++) {
        const char *u = docs[i].uri;
        if (strncmp(u, path, pl) || (u[pl] && u[pl] != '/')) continue;
        if ((rc = txn_begin(c, err)) || (rc = s_doc_remove(c, docs[i].id, err))) break;
        c->sum->removed++;
        note(c, "removed", u, NULL);
    }
    idx_doc_list_free(&docs, n);
    return rc;
}

int ing_watch_run(ing_ctx *c, const char *const *roots, int n, ing_summary *sum, doc_err *err)
{
    ing_watch **w = NULL;
    ing_event *ev = NULL;
    char (*rp)[PATH_MAX] = NULL;
    int rc = 0, max = 256;
    ing_walk_opts wo = {.include = c->o.include, .n_include = c->o.n_include,
                        .exclude = c->o.exclude, .n_exclude = c->o.n_exclude,
                        .follow_symlinks = c->o.follow_symlinks};
    run_begin(c, sum);
    if (!(w = calloc((size_t)n, sizeof *w)) || !(ev = calloc((size_t)max, sizeof *ev)) ||
        !(rp = calloc((size_t)n, sizeof *rp))) {
        rc = doc_errf(err, DOC_ENOMEM, "out of memory");
        goto done;
    }
    for (int i = 0; i < n; i++) {
        if (!realpath(roots[i], rp[i])) {
            rc = doc_errf(err, DOC_ENOTFOUND, "%s: %s", roots[i], strerror(errno));
            goto done;
        }
        if ((rc = ing_watch_open(rp[i], &wo, &w[i], err))) goto done;
    }
    while (!cancelled(c)) {
        for (int i = 0; i < n && !rc; i++) {
            int got = 0;
            rc = ing_watch_next(w[i], n > 1 ? 200 : 500, 300, c->o.cancel, ev, max, &got, err);
            if (rc == DOC_ECANCELLED) {
                rc = 0;
                goto done;
            }
            for (int k = 0; k < got && !rc; k++) {
                struct stat st;
                if (ev[k].kind == ING_EV_REMOVED) {
                    rc = remove_under(c, ev[k].path, err);
                } else if (stat(ev[k].path, &st) == 0 && S_ISDIR(st.st_mode)) {
                    rc = do_path(c, ev[k].path, err); /* a new folder, or a rescan */
                } else if (stat(ev[k].path, &st) == 0 && S_ISREG(st.st_mode)) {
                    rc = do_file(c, ev[k].path, &st);
                }
            }
            if (!rc && got) rc = txn_commit(c, err);
        }
        if (rc) break;
    }
done:
    for (int i = 0; w && i < n; i++) ing_watch_close(&w[i]);
    free(w);
    free(ev);
    free(rp);
    return run_end(c, rc, err);
}

/* ---- reindex, queries, identity ------------------------------------------- */

typedef struct reidx {
    llm_model *m;
    idx_store *s;
    int batch, dim, n;
    int64_t *ids;
    char **inputs;
    float *vecs;
    int64_t done;
    ing_progress pr;
    ing_progress_fn progress;
    void *cb_ctx;
    const volatile int *cancel;
    double t0, last;
    doc_err *err;
} reidx;

static int reidx_flush(reidx *r)
{
    int rc = 0;
    if (!r->n) return 0;
    rc = llm_embed(r->m, (const char *const *)r->inputs, r->n, r->vecs, r->cancel, r->err);
    for (int i = 0; !rc && i < r->n; i++)
        if ((rc = idx_reindex_set(r->s, r->ids[i], r->vecs + (size_t)i * (size_t)r->dim)))
            doc_errf(r->err, rc, "chunk %lld: %s", (long long)r->ids[i], idx_errmsg(r->s));
    for (int i = 0; i < r->n; i++) free(r->inputs[i]), r->inputs[i] = NULL;
    r->done += r->n;
    r->n = 0;
    if (r->progress && time_now() - r->last > 0.1) {
        r->last = time_now();
        r->pr.chunks = r->pr.chunks_embedded = r->done;
        r->pr.elapsed = r->last - r->t0;
        r->progress(r->cb_ctx, &r->pr);
    }
    return rc;
}

static int reidx_chunk(void *ctx, int64_t id, int64_t doc_id, const char *title,
                       const char *heading, const char *text)
{
    reidx *r = ctx;
    buf in;
    (void)doc_id;
    buf_init(&in, 0);
    /* same input as at ingest: "title > heading\n\ntext" (context cut to CTX_TOKENS) */
    ing_ctx tmp = {.m = r->m};
    buf pre;
    buf_init(&pre, 1 << 16);
    int rc = context_prefix(&tmp, title, heading, &pre);
    if (rc) {
        buf_free(&pre);
        return doc_errf(r->err, rc, "chunk %lld: tokenizing its heading", (long long)id);
    }
    if (pre.len) buf_printf(&in, "%s\n\n", pre.data);
    buf_puts(&in, text);
    buf_free(&pre);
    r->ids[r->n] = id;
    if (!(r->inputs[r->n] = buf_steal(&in, NULL))) return doc_errf(r->err, DOC_ENOMEM, "out of memory");
    if (++r->n == r->batch) return reidx_flush(r);
    return 0;
}

int ing_reindex(idx_store *s, llm_model *m, int batch, ing_progress_fn progress_fn, void *cb_ctx,
                const volatile int *cancel, doc_err *err)
{
    int rc;
    idx_stats st;
    reidx r = {.m = m, .s = s, .batch = batch > 0 ? batch : 32, .dim = llm_embed_dim(m),
               .progress = progress_fn, .cb_ctx = cb_ctx, .cancel = cancel, .err = err,
               .t0 = time_now()};
    if ((rc = idx_stats_get(s, &st))) return doc_errf(err, rc, "%s", idx_errmsg(s));
    r.pr.files_total = -1;
    r.pr.chunks = 0;
    if (!(r.ids = calloc((size_t)r.batch, sizeof *r.ids)) ||
        !(r.inputs = calloc((size_t)r.batch, sizeof *r.inputs)) ||
        !(r.vecs = malloc((size_t)r.batch * (size_t)r.dim * sizeof(float)))) {
        rc = doc_errf(err, DOC_ENOMEM, "out of memory");
        goto done;
    }
    if ((rc = idx_begin(s))) {
        doc_errf(err, rc, "%s", idx_errmsg(s));
        goto done;
    }
    rc = idx_chunk_each(s, reidx_chunk, &r);
    if (!rc) rc = reidx_flush(&r);
    if (!rc && (rc = idx_reindex_finish(s))) doc_errf(err, rc, "%s", idx_errmsg(s));
    if (!rc && (rc = idx_commit(s))) doc_errf(err, rc, "commit: %s", idx_errmsg(s));
    if (rc) idx_rollback(s);
done:
    for (int i = 0; r.inputs && i < r.batch; i++) free(r.inputs[i]);
    free(r.inputs);
    free(r.ids);
    free(r.vecs);
    return rc;
}

int ing_embed_query(llm_model *m, const char *query, float *vec, doc_err *err)
{
    const char *in[1] = {query};
    return llm_embed(m, in, 1, vec, NULL, err);
}

int ing_embedder_identity(const char *model_path, char name[256], char sha256[65], doc_err *err)
{
    char weights[PATH_MAX], real[PATH_MAX];
    const char *base;
    if (!strncmp(model_path, "http://", 7) || !strncmp(model_path, "https://", 8)) {
        /* a remote embedder (llm_model_source: "URL#MODEL"): the name is the
         * model's, the hash that of the whole string */
        const char *hash = strrchr(model_path, '#');
        if (!hash || !hash[1])
            return doc_errf(err, DOC_EINVAL, "%s: a remote embedder's identity needs URL#MODEL", model_path);
        snprintf(name, 256, "remote:%.240s", hash + 1);
        unsigned char d[32];
        sha256_ctx sc;
        sha256_init(&sc);
        sha256_update(&sc, model_path, strlen(model_path));
        sha256_final(&sc, d);
        for (int i = 0; i < 32; i++) snprintf(sha256 + 2 * i, 3, "%02x", d[i]);
        return DOC_OK;
    }
    if (!realpath(model_path, real)) return doc_errf(err, DOC_ENOTFOUND, "%s: %s", model_path, strerror(errno));
    base = strrchr(real, '/');
    snprintf(name, 256, "%.255s", base && base[1] ? base + 1 : real);
    if (file_is_dir(real)) {
        if (path_join(weights, sizeof weights, real, "model.safetensors"))
            return doc_errf(err, DOC_ELIMIT, "%s: path too long", real);
    } else {
        snprintf(weights, sizeof weights, "%s", real);
    }
    return sha256_file_hex(weights, sha256, err);
}
