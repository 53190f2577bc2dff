/*
 * store_search.c - hybrid retrieval over the store: idx_search.
 *
 * Two legs, fused by reciprocal rank:
 *   - dense: each allowed collection's FAISS index gives its n_dense nearest
 *     chunks (inner product of normalised vectors = cosine); the lists are
 *     merged by score and cut to n_dense.
 *   - BM25: FTS5 over chunk text and heading, ranked by bm25(), restricted to
 *     the allowed collections in SQL, n_bm25 results.  The user's text is
 *     never FTS5 syntax: it is cut into words here (runs of ASCII letters and
 *     digits and of non-ASCII bytes), each word becomes a quoted FTS5 string,
 *     and the strings are OR-ed, so a chunk matching some of the words still
 *     ranks.
 * score = sum over legs of 1 / (rrf_k + rank).  Candidates that are
 * consecutive chunks of one document are then merged into one passage (text
 * joined without the overlap the chunker repeated, score = its best part's;
 * never across a page break, so a passage cites one page).
 * Ties are broken by chunk id, so results are deterministic.
 *
 * All reads happen in one read transaction (unless a write transaction is
 * open), so the FAISS generation, the chunks and the FTS rows agree.
 */
#include "index/internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

enum {
    K_MAX = 1000,            /* passages returned */
    LEG_MAX = 1000,          /* candidates per leg */
    QUERY_BYTES_MAX = 16384, /* query text read for BM25 */
    TERMS_MAX = 64,          /* words in the MATCH expression */
    TERM_BYTES_MAX = 128,    /* bytes of one word (longer words are cut) */
    MERGE_MAX = 8,           /* chunks merged into one passage at most */
};

typedef struct cand {
    int64_t id;
    int dense_rank, bm25_rank; /* 1-based, 0: not from that leg */
    double dense_score, bm25_score, score;
    /* from SQLite */
    int64_t doc_id, char_start, char_end;
    int ordinal, page, line_start, line_end;
    char *text, *heading, *uri, *title, *collection;
} cand;

typedef struct scored {
    int64_t id;
    double score;
} scored;

static int cmp_scored(const void *a, const void *b)
{
    const scored *x = a, *y = b;
    if (x->score != y->score) return x->score > y->score ? -1 : 1;
    return (x->id > y->id) - (x->id < y->id);
}

static int cmp_cand_id(const void *a, const void *b)
{
    const cand *x = a, *y = b;
    return (x->id > y->id) - (x->id < y->id);
}

static int cmp_cand_pos(const void *a, const void *b)
{
    const cand *x = a, *y = b;
    if (x->doc_id != y->doc_id) return (x->doc_id > y->doc_id) - (x->doc_id < y->doc_id);
    if (x->ordinal != y->ordinal) return (x->ordinal > y->ordinal) - (x->ordinal < y->ordinal);
    return (x->id > y->id) - (x->id < y->id);
}

/* rank_cmp: a leg's ranks, 0 (absent) after any rank */
static int rank_cmp(int a, int b)
{
    if (a == b) return 0;
    if (!a || !b) return a ? -1 : 1;
    return a < b ? -1 : 1;
}

/* passages by fused score; RRF ties are common (dense rank r alone scores as
 * BM25 rank r alone, ranks (3, 5) as (5, 3)) and go to the better dense rank,
 * then BM25 rank, so the order never depends on chunk ids (which hash the
 * document's path) */
static int cmp_hit(const void *a, const void *b)
{
    const idx_hit *x = a, *y = b;
    if (x->score != y->score) return x->score > y->score ? -1 : 1;
    int c = rank_cmp(x->dense_rank, y->dense_rank);
    if (!c) c = rank_cmp(x->bm25_rank, y->bm25_rank);
    if (c) return c;
    return (x->chunk_id > y->chunk_id) - (x->chunk_id < y->chunk_id);
}

static void cand_clear(cand *c)
{
    free(c->text);
    free(c->heading);
    free(c->uri);
    free(c->title);
    free(c->collection);
}

/* ---- the query as FTS5 strings ------------------------------------------- */

static int word_byte(unsigned char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           ch >= 0x80;
}

/* match_expr: `"w1" OR "w2" ...` for the words of q (deduplicated, ASCII
 * case folded); out stays empty when q has no words. */
static int match_expr(const char *q, buf *out)
{
    char terms[TERMS_MAX][TERM_BYTES_MAX + 1];
    int n = 0;
    size_t len = strnlen(q, QUERY_BYTES_MAX);
    for (size_t i = 0; i < len && n < TERMS_MAX;) {
        if (!word_byte((unsigned char)q[i])) {
            i++;
            continue;
        }
        size_t j = i;
        while (j < len && word_byte((unsigned char)q[j])) j++;
        size_t wl = j - i;
        if (wl > TERM_BYTES_MAX) { /* cut at a UTF-8 boundary */
            wl = TERM_BYTES_MAX;
            while (wl > 0 && ((unsigned char)q[i + wl] & 0xC0) == 0x80) wl--;
        }
        char w[TERM_BYTES_MAX + 1];
        for (size_t k = 0; k < wl; k++) {
            char ch = q[i + k];
            w[k] = (ch >= 'A' && ch <= 'Z') ? (char)(ch - 'A' + 'a') : ch;
        }
        w[wl] = 0;
        int dup = 0;
        for (int t = 0; t < n && !dup; t++) dup = strcmp(terms[t], w) == 0;
        if (!dup && wl > 0) memcpy(terms[n++], w, wl + 1);
        i = j;
    }
    for (int t = 0; t < n; t++) {
        int rc = buf_puts(out, t ? " OR \"" : "\"");
        for (const char *p = terms[t]; rc == DOC_OK && *p; p++)
            rc = *p == '"' ? buf_puts(out, "\"\"") : buf_putc(out, *p);
        if (rc == DOC_OK) rc = buf_putc(out, '"');
        if (rc != DOC_OK) return rc;
    }
    return DOC_OK;
}

/* ---- legs ------------------------------------------------------------------- */

/* dense_leg: the n best chunks over the allowed collections' indexes. */
static int dense_leg(idx_store *s, store_coll **allowed, int n_allowed, const float *q, int n,
                     scored **out, int *n_out)
{
    *out = NULL;
    *n_out = 0;
    scored *all = malloc((size_t)n * (size_t)n_allowed * sizeof *all);
    float *sc = malloc((size_t)n * sizeof *sc);
    int64_t *ids = malloc((size_t)n * sizeof *ids);
    int m = 0, rc = DOC_OK;
    if (!all || !sc || !ids) {
        rc = store_fail(s, DOC_ENOMEM, "search: out of memory");
        goto done;
    }
    for (int i = 0; i < n_allowed; i++) {
        vindex *v = NULL;
        doc_err e = {0};
        if ((rc = store_coll_vindex(s, allowed[i], &v)) != DOC_OK) goto done;
        int64_t cnt = vx_count(v);
        int k = cnt < n ? (int)cnt : n;
        if (k == 0) continue;
        if ((rc = vx_search(v, q, k, sc, ids, &e)) != DOC_OK) {
            s->err = e;
            goto done;
        }
        for (int j = 0; j < k; j++)
            if (ids[j] >= 0) all[m++] = (scored){ids[j], sc[j]};
    }
    qsort(all, (size_t)m, sizeof *all, cmp_scored);
    *out = all;
    *n_out = m < n ? m : n;
    all = NULL;
done:
    free(all);
    free(sc);
    free(ids);
    return rc;
}

/* bm25_leg: the n best chunks by BM25 (score = -bm25, higher is better). */
static int bm25_leg(idx_store *s, const char *query, store_coll **allowed, int n_allowed,
                    int all_colls, int n, scored **out, int *n_out)
{
    *out = NULL;
    *n_out = 0;
    buf expr, ids;
    buf_init(&expr, 0);
    buf_init(&ids, 0);
    scored *v = NULL;
    int m = 0, r, rc = match_expr(query, &expr);
    sqlite3_stmt *st = NULL;
    if (rc != DOC_OK || expr.len == 0) goto done; /* no words: the leg is skipped */
    if (all_colls) {
        st = store_q(s, Q_SEARCH_BM25_ALL,
                     "SELECT rowid, bm25(chunks_fts) AS r FROM chunks_fts WHERE chunks_fts MATCH ?1"
                     " ORDER BY r, rowid LIMIT ?2");
    } else {
        rc = buf_putc(&ids, '[');
        for (int i = 0; i < n_allowed && rc == DOC_OK; i++)
            rc = buf_printf(&ids, "%s%lld", i ? "," : "", (long long)allowed[i]->id);
        if (rc == DOC_OK) rc = buf_putc(&ids, ']');
        if (rc != DOC_OK) goto done;
        st = store_q(s, Q_SEARCH_BM25_IN,
                     "SELECT chunks_fts.rowid, bm25(chunks_fts) AS r FROM chunks_fts"
                     " JOIN chunks c ON c.id = chunks_fts.rowid JOIN documents d ON d.id = c.doc_id"
                     " WHERE chunks_fts MATCH ?1"
                     " AND d.collection_id IN (SELECT value FROM json_each(?3))"
                     " ORDER BY r, chunks_fts.rowid LIMIT ?2");
        if (st) sqlite3_bind_text(st, 3, ids.data, (int)ids.len, SQLITE_STATIC);
    }
    if (!st) {
        rc = s->err.rc;
        goto done;
    }
    sqlite3_bind_text(st, 1, expr.data, (int)expr.len, SQLITE_STATIC);
    sqlite3_bind_int(st, 2, n);
    if (!(v = malloc((size_t)n * sizeof *v))) {
        rc = store_fail(s, DOC_ENOMEM, "search: out of memory");
        goto done;
    }
    while (m < n && (r = sqlite3_step(st)) == SQLITE_ROW)
        v[m++] = (scored){sqlite3_column_int64(st, 0), -sqlite3_column_double(st, 1)};
    if (m < n && r != SQLITE_DONE) rc = store_sqlerr(s, "search: bm25");
done:
    if (st) sqlite3_reset(st);
    buf_free(&expr);
    buf_free(&ids);
    if (rc != DOC_OK) {
        free(v);
        return rc;
    }
    *out = v;
    *n_out = m;
    return DOC_OK;
}

/* ---- candidates -------------------------------------------------------------- */

/* fuse: one candidate per chunk id of either leg, with its ranks and RRF score. */
static int fuse(idx_store *s, const scored *d, int nd, const scored *b, int nb, int rrf_k,
                cand **out, int *n_out)
{
    cand *c = calloc((size_t)(nd + nb) + 1, sizeof *c);
    if (!c) return store_fail(s, DOC_ENOMEM, "search: out of memory");
    int n = 0;
    for (int i = 0; i < nd; i++) {
        c[n] = (cand){
            .id = d[i].id, .dense_rank = i + 1, .dense_score = d[i].score, .bm25_score = NAN};
        n++;
    }
    qsort(c, (size_t)n, sizeof *c, cmp_cand_id);
    int n_dense = n;
    for (int i = 0; i < nb; i++) {
        cand key = {.id = b[i].id};
        cand *hit = bsearch(&key, c, (size_t)n_dense, sizeof *c, cmp_cand_id);
        if (!hit) {
            hit = &c[n++];
            *hit = (cand){.id = b[i].id, .dense_score = NAN};
        }
        hit->bm25_rank = i + 1;
        hit->bm25_score = b[i].score;
    }
    for (int i = 0; i < n; i++) {
        c[i].score = 0;
        if (c[i].dense_rank) c[i].score += 1.0 / (rrf_k + c[i].dense_rank);
        if (c[i].bm25_rank) c[i].score += 1.0 / (rrf_k + c[i].bm25_rank);
    }
    *out = c;
    *n_out = n;
    return DOC_OK;
}

static char *dup_col(sqlite3_stmt *st, int i)
{
    const unsigned char *t = sqlite3_column_text(st, i);
    return strdup(t ? (const char *)t : "");
}

/* fetch: read each candidate's chunk and document; candidates whose chunk is
 * gone are dropped. */
static int fetch(idx_store *s, cand *c, int *n)
{
    sqlite3_stmt *st =
        store_q(s, Q_SEARCH_CHUNK,
                "SELECT c.doc_id, c.ordinal, c.text, c.heading, c.page, c.line_start,"
                " c.line_end, c.char_start, c.char_end, d.uri, d.title, col.name"
                " FROM chunks c JOIN documents d ON d.id = c.doc_id"
                " JOIN collections col ON col.id = d.collection_id WHERE c.id = ?1");
    if (!st) return s->err.rc;
    int m = 0, rc = DOC_OK;
    for (int i = 0; i < *n; i++) {
        sqlite3_reset(st);
        sqlite3_bind_int64(st, 1, c[i].id);
        int r = sqlite3_step(st);
        if (r == SQLITE_DONE) continue;
        if (r != SQLITE_ROW) {
            rc = store_sqlerr(s, "search: chunk");
            break;
        }
        cand x = c[i];
        x.doc_id = sqlite3_column_int64(st, 0);
        x.ordinal = sqlite3_column_int(st, 1);
        x.text = dup_col(st, 2);
        x.heading = dup_col(st, 3);
        x.page = sqlite3_column_int(st, 4);
        x.line_start = sqlite3_column_int(st, 5);
        x.line_end = sqlite3_column_int(st, 6);
        x.char_start = sqlite3_column_int64(st, 7);
        x.char_end = sqlite3_column_int64(st, 8);
        x.uri = dup_col(st, 9);
        x.title = dup_col(st, 10);
        x.collection = dup_col(st, 11);
        c[m++] = x;
        if (!x.text || !x.heading || !x.uri || !x.title || !x.collection) {
            rc = store_fail(s, DOC_ENOMEM, "search: out of memory");
            break;
        }
    }
    sqlite3_reset(st);
    *n = m;
    return rc;
}

/* ---- passages ----------------------------------------------------------------- */

/* join_text: chunks p[0..n) of one document, consecutive, as one text.  Where
 * chunk i+1 starts before chunk i ends (the chunker's overlap) the repeated
 * bytes are dropped, provided the text really repeats; otherwise a blank line
 * separates chunks that are not contiguous. */
static char *join_text(const cand *p, int n)
{
    buf b;
    buf_init(&b, 0);
    int rc = buf_puts(&b, p[0].text);
    for (int i = 1; i < n && rc == DOC_OK; i++) {
        const cand *a = &p[i - 1], *c = &p[i];
        const char *t = c->text;
        size_t tl = strlen(t), al = strlen(a->text);
        int64_t ov = a->char_end - c->char_start;
        if (ov > 0 && (size_t)ov <= tl && (size_t)ov <= al &&
            memcmp(a->text + al - (size_t)ov, t, (size_t)ov) == 0) {
            rc = buf_puts(&b, t + ov);
        } else {
            if (c->char_start != a->char_end || ov > 0) rc = buf_puts(&b, "\n\n");
            if (rc == DOC_OK) rc = buf_puts(&b, t);
        }
    }
    if (rc != DOC_OK) {
        buf_free(&b);
        return NULL;
    }
    return buf_steal(&b, NULL);
}

/* passage: fill hit h from the run p[0..n). */
static int passage(const cand *p, int n, idx_hit *h)
{
    memset(h, 0, sizeof *h);
    h->chunk_id = p[0].id;
    h->chunk_last = p[n - 1].id;
    h->doc_id = p[0].doc_id;
    h->page = p[0].page;
    h->line_start = p[0].line_start;
    h->line_end = p[0].line_end;
    h->dense_score = h->bm25_score = NAN;
    for (int i = 0; i < n; i++) {
        const cand *c = &p[i];
        if (c->score > h->score) h->score = c->score;
        if (c->line_end > h->line_end) h->line_end = c->line_end;
        if (c->line_start && (!h->line_start || c->line_start < h->line_start))
            h->line_start = c->line_start;
        if (c->dense_rank && (!h->dense_rank || c->dense_rank < h->dense_rank)) {
            h->dense_rank = c->dense_rank;
            h->dense_score = c->dense_score;
        }
        if (c->bm25_rank && (!h->bm25_rank || c->bm25_rank < h->bm25_rank)) {
            h->bm25_rank = c->bm25_rank;
            h->bm25_score = c->bm25_score;
        }
    }
    h->uri = strdup(p[0].uri);
    h->title = strdup(p[0].title);
    h->heading = strdup(p[0].heading);
    h->collection = strdup(p[0].collection);
    h->text = join_text(p, n);
    return h->uri && h->title && h->heading && h->collection && h->text ? DOC_OK : DOC_ENOMEM;
}

void idx_hits_free(idx_hit **hits, int n)
{
    if (!hits || !*hits) return;
    for (int i = 0; i < n; i++) {
        idx_hit *h = &(*hits)[i];
        free(h->uri);
        free(h->title);
        free(h->heading);
        free(h->collection);
        free(h->text);
    }
    free(*hits);
    *hits = NULL;
}

/* ---- idx_search --------------------------------------------------------------------- */

static int clamp(int v, int dflt, int max)
{
    if (v <= 0) return dflt;
    return v > max ? max : v;
}

int idx_search(idx_store *s, const float *qvec, const char *query, const idx_search_opts *o,
               idx_hit **hits, int *n_hits)
{
    *hits = NULL;
    *n_hits = 0;
    idx_search_opts dflt = {0};
    if (!o) o = &dflt;
    int k = clamp(o->k, 5, K_MAX), nd = clamp(o->n_dense, 50, LEG_MAX),
        nb = clamp(o->n_bm25, 50, LEG_MAX);
    int rrf_k = o->rrf_k > 0 ? o->rrf_k : 60, merge = o->merge_adjacent != -1;
    if (o->collections && o->n_collections < 0)
        return store_fail(s, DOC_EINVAL, "search: negative collection count");

    store_coll **allowed = NULL;
    scored *dl = NULL, *bl = NULL;
    cand *c = NULL;
    idx_hit *out = NULL;
    int n_allowed = 0, ndl = 0, nbl = 0, nc = 0, nh = 0, rc = DOC_OK, began = 0;

    if (!s->in_tx) {
        if ((rc = store_exec(s, "BEGIN")) != DOC_OK) return rc;
        began = 1;
    }
    if ((rc = store_refresh(s)) != DOC_OK) goto done;
    if (!(allowed = malloc(((size_t)s->n_colls + 1) * sizeof *allowed))) {
        rc = store_fail(s, DOC_ENOMEM, "search: out of memory");
        goto done;
    }
    for (int i = 0; i < s->n_colls; i++) {
        int ok = !o->collections;
        for (int j = 0; !ok && j < o->n_collections; j++) ok = o->collections[j] == s->colls[i].id;
        if (ok) allowed[n_allowed++] = &s->colls[i];
    }
    if (n_allowed == 0) goto done;

    if (qvec && !s->embedder_stale &&
        (rc = dense_leg(s, allowed, n_allowed, qvec, nd, &dl, &ndl)) != DOC_OK)
        goto done;
    if (query &&
        (rc = bm25_leg(s, query, allowed, n_allowed, !o->collections, nb, &bl, &nbl)) != DOC_OK)
        goto done;
    if ((rc = fuse(s, dl, ndl, bl, nbl, rrf_k, &c, &nc)) != DOC_OK) goto done;
    if ((rc = fetch(s, c, &nc)) != DOC_OK) goto done;

    /* passages: runs of consecutive ordinals of one document */
    qsort(c, (size_t)nc, sizeof *c, cmp_cand_pos);
    if (!(out = calloc((size_t)nc + 1, sizeof *out))) {
        rc = store_fail(s, DOC_ENOMEM, "search: out of memory");
        goto done;
    }
    for (int i = 0; i < nc;) {
        int j = i + 1;
        /* a passage stays on one page so that its citation names one page */
        while (merge && j < nc && j - i < MERGE_MAX && c[j].doc_id == c[i].doc_id &&
               c[j].ordinal == c[j - 1].ordinal + 1 && c[j].page == c[i].page)
            j++;
        if ((rc = passage(&c[i], j - i, &out[nh++])) != DOC_OK) {
            rc = store_fail(s, rc, "search: out of memory");
            goto done;
        }
        i = j;
    }
    qsort(out, (size_t)nh, sizeof *out, cmp_hit);
    for (int i = k; i < nh; i++) { /* beyond the k asked for */
        idx_hit *h = &out[i];
        free(h->uri);
        free(h->title);
        free(h->heading);
        free(h->collection);
        free(h->text);
    }
    if (nh > k) nh = k;
done:
    if (began) sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL);
    for (int i = 0; i < nc; i++) cand_clear(&c[i]);
    free(c);
    free(dl);
    free(bl);
    free(allowed);
    if (rc != DOC_OK) {
        idx_hits_free(&out, nh);
        return rc;
    }
    if (nh == 0) {
        free(out);
        out = NULL;
    }
    *hits = out;
    *n_hits = nh;
    return DOC_OK;
}
