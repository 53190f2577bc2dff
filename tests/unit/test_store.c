/*
 * test_store.c - index/: the SQLite store with its FAISS indexes, through the
 * public API only (index.h).
 *
 * Real SQLite files and real FAISS indexes in a mkdtemp() directory (each
 * test its own store directory), random L2-normalised vectors (no model
 * needed).  Covers: schema creation and reopening, the embedder check and
 * reindex, putting / replacing / removing documents (rows, FTS, FAISS ids via
 * idx_check), rollback, hybrid search (dense, BM25, FTS5 syntax in the query,
 * collection restriction, merging adjacent chunks), rebuilding missing,
 * corrupt and stale FAISS files and the HNSW path, refusing truncated and
 * garbage databases, and a 10k-chunk throughput / latency measurement.
 */
#include "testutil.h"

#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <math.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "index/index.h"

#define EMB "test-embedder"
#define SHA "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
#define DIM 16

static char tmpdir[256];
static int n_dirs;

/* ---- helpers ------------------------------------------------------------- */

/* new_dir: a fresh store directory under tmpdir */
static void new_dir(char *out, size_t cap)
{
    snprintf(out, cap, "%s/store%d", tmpdir, n_dirs++);
}

static int open_store(const char *dir, const char *emb, int dim, int allow, idx_store **s,
                      doc_err *err)
{
    idx_opts o = {.data_dir = dir,
                  .embedder_name = emb,
                  .embedder_sha256 = SHA,
                  .dim = dim,
                  .allow_embedder_change = allow};
    return idx_open(&o, s, err);
}

static idx_store *must_open(const char *dir)
{
    idx_store *s = NULL;
    doc_err err = {0};
    int rc = open_store(dir, EMB, DIM, 0, &s, &err);
    if (rc != DOC_OK) fail_msg("idx_open %s: %s", dir, err.msg);
    return s;
}

static void rand_unit(uint64_t *seed, float *v, int dim)
{
    double n = 0;
    for (int i = 0; i < dim; i++) {
        v[i] = test_randf(seed);
        n += (double)v[i] * v[i];
    }
    for (int i = 0; i < dim; i++) v[i] = (float)(v[i] / sqrt(n));
}

/* put_doc: document uri with chunks of the given texts, ids base+i, random
 * vectors (written to vecs when not NULL, dim each); inside idx_begin/commit. */
static int64_t put_doc(idx_store *s, int64_t coll, const char *uri, const char *const *texts, int n,
                       int64_t base, uint64_t seed, float *vecs)
{
    float *v = vecs ? vecs : malloc((size_t)n * DIM * sizeof *v);
    idx_chunk *c = calloc((size_t)n, sizeof *c);
    int64_t pos = 0;
    for (int i = 0; i < n; i++) {
        rand_unit(&seed, v + (size_t)i * DIM, DIM);
        int64_t len = (int64_t)strlen(texts[i]);
        c[i] = (idx_chunk){.id = base + i,
                           .ordinal = i,
                           .text = texts[i],
                           .heading = "Part > Sec",
                           .page = 0,
                           .line_start = i + 1,
                           .line_end = i + 1,
                           .char_start = pos,
                           .char_end = pos + len,
                           .n_tokens = 10,
                           .vec = v + (size_t)i * DIM};
        pos += len + 2;
    }
    idx_doc d = {.collection_id = coll,
                 .uri = (char *)uri,
                 .title = "A title",
                 .mime = "text/plain",
                 .hash = 0xfeedfacecafebeefull,
                 .mtime = 1700000000,
                 .size = 1234};
    assert_int_equal(idx_doc_put(s, &d, c, n), DOC_OK);
    assert_true(d.id > 0);
    free(c);
    if (!vecs) free(v);
    return d.id;
}

static void must_check(idx_store *s)
{
    int rc = idx_check(s);
    if (rc != DOC_OK) fail_msg("idx_check: %s", idx_errmsg(s));
}

/* sql_tool: run SQL on a store's database with the sqlite3 tool (the tests
 * do not include sqlite3.h); 0 when it ran, -1 when the tool is missing */
static int sql_tool(const char *dir, const char *sql)
{
    if (access("/usr/bin/sqlite3", X_OK) != 0) {
        printf("note: no sqlite3 tool, a check is skipped\n");
        return -1;
    }
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "/usr/bin/sqlite3 '%s/docent.db' \"%s\" >/dev/null 2>&1", dir, sql);
    return system(cmd) == 0 ? 0 : -1;
}

/* live_gen: the generation of the one vectors/<coll>.<gen>.faiss file; fails
 * if there is not exactly one */
static long live_gen(const char *dir, const char *coll)
{
    char vd[512];
    snprintf(vd, sizeof vd, "%s/vectors", dir);
    DIR *d = opendir(vd);
    assert_non_null(d);
    struct dirent *e;
    long gen = -1;
    int n = 0;
    size_t cl = strlen(coll);
    while ((e = readdir(d))) {
        char *end;
        if (strncmp(e->d_name, coll, cl) || e->d_name[cl] != '.') continue;
        long g = strtol(e->d_name + cl + 1, &end, 10);
        if (strcmp(end, ".faiss") == 0) {
            gen = g;
            n++;
        }
    }
    closedir(d);
    if (n != 1) fail_msg("%s: %d index files of collection %s", vd, n, coll);
    return gen;
}

static void gen_file(const char *dir, const char *coll, long gen, char *out, size_t cap)
{
    snprintf(out, cap, "%s/vectors/%s.%ld.faiss", dir, coll, gen);
}

static int count_hits(idx_store *s, const char *query, const int64_t *colls, int n_colls)
{
    idx_search_opts o = {.k = 100, .collections = colls, .n_collections = n_colls};
    idx_hit *h = NULL;
    int n = 0;
    int rc = idx_search(s, NULL, query, &o, &h, &n);
    if (rc != DOC_OK) fail_msg("search '%s': %s", query, idx_errmsg(s));
    idx_hits_free(&h, n);
    return n;
}

static const char *const texts3[] = {
    "The quick brown fox jumps over the lazy dog.",
    "Sphinx of black quartz, judge my vow: zyzzogeton.",
    "Pack my box with five dozen liquor jugs.",
};

/* ---- schema, embedder ------------------------------------------------------------ */

static void test_schema_reopen(void **state)
{
    (void)state;
    char dir[300];
    new_dir(dir, sizeof dir);
    idx_store *s = must_open(dir);
    idx_stats st;
    assert_int_equal(idx_stats_get(s, &st), DOC_OK);
    assert_int_equal(st.schema_version, 1);
    assert_string_equal(st.embedder, EMB " " SHA " 16");
    int64_t id = 0, id2 = 0;
    assert_int_equal(idx_collection_ensure(s, "default", NULL, &id), DOC_OK);
    assert_int_equal(idx_collection_ensure(s, "default", "user:x", &id2), DOC_OK);
    assert_int_equal(id, id2);
    assert_int_equal(idx_collection_ensure(s, "a b", NULL, &id2), DOC_EINVAL);
    assert_non_null(strstr(idx_errmsg(s), "collection name 'a b': only letters, digits"));
    assert_int_equal(idx_collection_ensure(s, "..", NULL, &id2), DOC_EINVAL);
    assert_int_equal(idx_collection_ensure(s, "", NULL, &id2), DOC_EINVAL);
    assert_int_equal(idx_collection_set_readers(s, "default", "user:alice,group:staff"), DOC_OK);
    assert_int_equal(idx_collection_set_readers(s, "nope", "*"), DOC_ENOTFOUND);
    assert_int_equal(idx_begin(s), DOC_OK);
    put_doc(s, id, "/docs/a.txt", texts3, 3, 100, 1, NULL);
    assert_int_equal(idx_commit(s), DOC_OK);
    idx_close(&s);
    assert_null(s);

    s = must_open(dir);
    idx_collection c;
    assert_int_equal(idx_collection_find(s, "default", &c), DOC_OK);
    assert_int_equal(c.id, id);
    assert_string_equal(c.readers, "user:alice,group:staff");
    assert_int_equal(c.n_docs, 1);
    assert_int_equal(c.n_chunks, 3);
    assert_int_equal(idx_collection_find(s, "other", &c), DOC_ENOTFOUND);
    idx_collection *list = NULL;
    int n = 0;
    assert_int_equal(idx_collection_list(s, &list, &n), DOC_OK);
    assert_int_equal(n, 1);
    assert_string_equal(list[0].name, "default");
    free(list);
    idx_doc d;
    assert_int_equal(idx_doc_find(s, id, "/docs/a.txt", &d), DOC_OK);
    assert_string_equal(d.title, "A title");
    assert_string_equal(d.collection, "default");
    assert_true(d.hash == 0xfeedfacecafebeefull);
    assert_int_equal(d.n_chunks, 3);
    assert_true(d.ingested_at > 0);
    idx_doc_clear(&d);
    must_check(s);
    /* a read-only second connection sees the same store */
    idx_opts ro = {.data_dir = dir, .readonly = 1};
    idx_store *r = NULL;
    doc_err err = {0};
    assert_int_equal(idx_open(&ro, &r, &err), DOC_OK);
    assert_int_equal(count_hits(r, "zyzzogeton", NULL, 0), 1);
    assert_int_equal(idx_begin(r), DOC_ESTATE);
    /* what the writer commits later is seen by the reader's next search
     * (both legs: its FAISS index is reloaded at the new generation) */
    const char *t1[] = {"written later xylophone"};
    float v1[DIM];
    assert_int_equal(idx_begin(s), DOC_OK);
    put_doc(s, id, "/docs/later.txt", t1, 1, 900, 2, v1);
    assert_int_equal(idx_commit(s), DOC_OK);
    assert_int_equal(count_hits(r, "xylophone", NULL, 0), 1);
    idx_hit *h = NULL;
    idx_search_opts so = {.k = 1, .merge_adjacent = -1};
    assert_int_equal(idx_search(r, v1, NULL, &so, &h, &n), DOC_OK);
    assert_int_equal(n, 1);
    assert_int_equal(h[0].chunk_id, 900);
    idx_hits_free(&h, n);
    must_check(r);
    idx_close(&r);
    idx_close(&s);
}

/* reindex: every stored chunk re-embedded at another dimension */
typedef struct reidx {
    idx_store *s;
    int n;
    int64_t ids[16];
} reidx;

static int collect_chunk(void *ctx, int64_t id, int64_t doc_id, const char *title,
                         const char *heading, const char *text)
{
    (void)doc_id;
    reidx *r = ctx;
    assert_string_equal(title, "A title");
    assert_string_equal(heading, "Part > Sec");
    assert_true(strlen(text) > 0);
    r->ids[r->n++] = id;
    return 0;
}

static void test_embedder_change(void **state)
{
    (void)state;
    char dir[300];
    new_dir(dir, sizeof dir);
    idx_store *s = must_open(dir);
    int64_t coll;
    assert_int_equal(idx_collection_ensure(s, "default", NULL, &coll), DOC_OK);
    assert_int_equal(idx_begin(s), DOC_OK);
    put_doc(s, coll, "/a", texts3, 3, 1, 5, NULL);
    assert_int_equal(idx_commit(s), DOC_OK);
    idx_close(&s);

    doc_err err = {0};
    assert_int_equal(open_store(dir, "other-model", DIM, 0, &s, &err), DOC_ESTATE);
    assert_null(s);
    assert_non_null(strstr(err.msg, "was built with embedder " EMB " (sha256 0123456789ab"));
    assert_non_null(strstr(err.msg, "16-d); this one is other-model"));
    assert_non_null(strstr(err.msg, "run `docent reindex`"));
    assert_int_equal(open_store(dir, EMB, 8, 0, &s, &err), DOC_ESTATE); /* dimension alone */

    /* reindex: open allowing the change, re-embed at 8-d, finish */
    assert_int_equal(open_store(dir, "other-model", 8, 1, &s, &err), DOC_OK);
    reidx r = {.s = s};
    assert_int_equal(idx_chunk_each(s, collect_chunk, &r), DOC_OK);
    assert_int_equal(r.n, 3);
    assert_true(r.ids[0] < r.ids[1] && r.ids[1] < r.ids[2]);
    float v8[3][8];
    uint64_t seed = 99;
    assert_int_equal(idx_begin(s), DOC_OK);
    for (int i = 0; i < 3; i++) {
        rand_unit(&seed, v8[i], 8);
        assert_int_equal(idx_reindex_set(s, r.ids[i], v8[i]), DOC_OK);
    }
    assert_int_equal(idx_reindex_set(s, 12345, v8[0]), DOC_ENOTFOUND);
    assert_int_equal(idx_reindex_finish(s), DOC_OK);
    assert_int_equal(idx_commit(s), DOC_OK);
    must_check(s);
    idx_close(&s);

    assert_int_equal(open_store(dir, "other-model", 8, 0, &s, &err), DOC_OK);
    idx_hit *h = NULL;
    int n = 0;
    idx_search_opts o = {.k = 3, .merge_adjacent = -1};
    assert_int_equal(idx_search(s, v8[1], NULL, &o, &h, &n), DOC_OK);
    assert_true(n >= 1);
    assert_int_equal(h[0].chunk_id, r.ids[1]);
    assert_true(fabs(h[0].dense_score - 1.0) < 1e-2);
    idx_hits_free(&h, n);
    must_check(s);
    idx_close(&s);
    assert_int_equal(open_store(dir, EMB, DIM, 0, &s, &err), DOC_ESTATE);
}

/* ---- writing ----------------------------------------------------------------------- */

static void test_put_replace_remove(void **state)
{
    (void)state;
    char dir[300];
    new_dir(dir, sizeof dir);
    idx_store *s = must_open(dir);
    int64_t coll;
    assert_int_equal(idx_collection_ensure(s, "docs", NULL, &coll), DOC_OK);
    assert_int_equal(idx_doc_put(s, &(idx_doc){.collection_id = coll, .uri = "/x"}, NULL, 0),
                     DOC_ESTATE);

    const char *t5[] = {"alpha one", "beta two", "gamma three", "delta four", "epsilon unique5"};
    float v[5 * DIM];
    assert_int_equal(idx_begin(s), DOC_OK);
    int64_t doc = put_doc(s, coll, "/doc.md", t5, 5, 1000, 7, v);
    int64_t other = put_doc(s, coll, "/other.md", texts3, 3, 2000, 8, NULL);
    assert_int_equal(idx_commit(s), DOC_OK);
    must_check(s);
    assert_int_equal(count_hits(s, "unique5", NULL, 0), 1);

    /* embeddings are reused only for the same id and text */
    float got[DIM];
    assert_int_equal(idx_chunk_vec_lookup(s, 1001, "beta two", got), 1);
    for (int i = 0; i < DIM; i++) assert_true(fabsf(got[i] - v[DIM + i]) < 1e-3f);
    assert_int_equal(idx_chunk_vec_lookup(s, 1001, "beta changed", got), 0);
    assert_int_equal(idx_chunk_vec_lookup(s, 999999, "beta two", got), 0);

    /* replace: 3 chunks, two ids kept, one new; "unique5" disappears */
    const char *t3[] = {"alpha one", "beta two", "zeta replaced6"};
    assert_int_equal(idx_begin(s), DOC_OK);
    int64_t doc2 = put_doc(s, coll, "/doc.md", t3, 3, 1000, 9, NULL);
    assert_int_equal(doc2, doc);
    assert_int_equal(idx_commit(s), DOC_OK);
    must_check(s);
    idx_doc d;
    assert_int_equal(idx_doc_get(s, doc, &d), DOC_OK);
    assert_int_equal(d.n_chunks, 3);
    idx_doc_clear(&d);
    assert_int_equal(count_hits(s, "unique5", NULL, 0), 0);
    assert_int_equal(count_hits(s, "replaced6", NULL, 0), 1);
    assert_int_equal(idx_chunk_vec_lookup(s, 1004, "epsilon unique5", got), 0);

    assert_int_equal(idx_doc_touch(s, doc, 42), DOC_OK);
    assert_int_equal(idx_doc_get(s, doc, &d), DOC_OK);
    assert_int_equal(d.mtime, 42);
    idx_doc_clear(&d);

    /* remove */
    assert_int_equal(idx_begin(s), DOC_OK);
    assert_int_equal(idx_doc_remove(s, doc), DOC_OK);
    assert_int_equal(idx_doc_remove(s, doc), DOC_ENOTFOUND);
    assert_int_equal(idx_commit(s), DOC_OK);
    must_check(s);
    assert_int_equal(idx_doc_find(s, coll, "/doc.md", &d), DOC_ENOTFOUND);
    assert_int_equal(count_hits(s, "replaced6", NULL, 0), 0);
    idx_doc *list = NULL;
    int n = 0;
    assert_int_equal(idx_doc_list(s, 0, &list, &n), DOC_OK);
    assert_int_equal(n, 1);
    assert_int_equal(list[0].id, other);
    assert_string_equal(list[0].uri, "/other.md");
    idx_doc_list_free(&list, n);
    assert_null(list);
    idx_close(&s);

    s = must_open(dir); /* the committed state survives reopening */
    must_check(s);
    idx_stats st;
    assert_int_equal(idx_stats_get(s, &st), DOC_OK);
    assert_int_equal(st.n_docs, 1);
    assert_int_equal(st.n_chunks, 3);
    idx_close(&s);

    /* idx_check fails when the FTS index lost a chunk's row */
    if (sql_tool(dir, "INSERT INTO chunks_fts(chunks_fts, rowid, text, heading) SELECT 'delete', id,"
                      " text, heading FROM chunks WHERE id = 2001") == 0) {
        s = must_open(dir);
        assert_int_equal(idx_check(s), DOC_EFORMAT);
        assert_non_null(strstr(idx_errmsg(s), "chunks_fts integrity check"));
        idx_close(&s);
    }
}

static void test_rollback(void **state)
{
    (void)state;
    char dir[300];
    new_dir(dir, sizeof dir);
    idx_store *s = must_open(dir);
    int64_t coll, tmp;
    assert_int_equal(idx_collection_ensure(s, "default", NULL, &coll), DOC_OK);
    assert_int_equal(idx_begin(s), DOC_OK);
    put_doc(s, coll, "/keep", texts3, 3, 10, 1, NULL);
    assert_int_equal(idx_commit(s), DOC_OK);
    long gen = live_gen(dir, "default");

    const char *t[] = {"rolled back text qwertyuiop"};
    assert_int_equal(idx_begin(s), DOC_OK);
    assert_int_equal(idx_collection_ensure(s, "temp", NULL, &tmp), DOC_OK);
    put_doc(s, coll, "/gone", t, 1, 20, 2, NULL);
    put_doc(s, tmp, "/gone2", t, 1, 30, 3, NULL);
    assert_int_equal(idx_doc_remove(s, 1 /* /keep */), DOC_OK);
    idx_rollback(s);

    idx_doc d;
    assert_int_equal(idx_doc_find(s, coll, "/gone", &d), DOC_ENOTFOUND);
    assert_int_equal(idx_doc_find(s, coll, "/keep", &d), DOC_OK);
    idx_doc_clear(&d);
    idx_collection c;
    assert_int_equal(idx_collection_find(s, "temp", &c), DOC_ENOTFOUND);
    assert_int_equal(count_hits(s, "qwertyuiop", NULL, 0), 0);
    assert_int_equal(count_hits(s, "zyzzogeton", NULL, 0), 1);
    must_check(s); /* the in-memory index went back to the committed one */
    assert_int_equal(live_gen(dir, "default"), gen);

    /* a failing put leaves the transaction usable: chunk id owned by /keep */
    assert_int_equal(idx_begin(s), DOC_OK);
    float vec[DIM];
    uint64_t seed = 5;
    rand_unit(&seed, vec, DIM);
    idx_chunk ch = {.id = 11, .text = "clash", .heading = "", .vec = vec};
    idx_doc bad = {.collection_id = coll, .uri = "/clash"};
    assert_int_equal(idx_doc_put(s, &bad, &ch, 1), DOC_EINVAL);
    assert_non_null(strstr(idx_errmsg(s), "chunk id 11 is already used by document"));
    idx_chunk two[2] = {ch, ch};
    two[0].id = two[1].id = 500;
    assert_int_equal(idx_doc_put(s, &bad, two, 2), DOC_EINVAL);
    assert_non_null(strstr(idx_errmsg(s), "appears twice"));
    ch.vec = (float[DIM]){NAN};
    ch.id = 600;
    assert_int_equal(idx_doc_put(s, &bad, &ch, 1), DOC_EINVAL);
    idx_doc nocoll = {.collection_id = 777, .uri = "/x"};
    assert_int_equal(idx_doc_put(s, &nocoll, NULL, 0), DOC_ENOTFOUND);
    const char *t2[] = {"after the failure asdfghjkl"};
    put_doc(s, coll, "/after", t2, 1, 40, 4, NULL);
    assert_int_equal(idx_commit(s), DOC_OK);
    assert_int_equal(idx_doc_find(s, coll, "/clash", &d), DOC_ENOTFOUND);
    assert_int_equal(count_hits(s, "asdfghjkl", NULL, 0), 1);
    must_check(s);
    idx_close(&s);
}

/* ---- search ------------------------------------------------------------------------ */

static void test_search(void **state)
{
    (void)state;
    char dir[300];
    new_dir(dir, sizeof dir);
    idx_store *s = must_open(dir);
    int64_t a, b;
    assert_int_equal(idx_collection_ensure(s, "alpha", NULL, &a), DOC_OK);
    assert_int_equal(idx_collection_ensure(s, "beta", NULL, &b), DOC_OK);
    const char *ta[] = {"shared words in collection alpha", "unbalanced quotes are words here",
                        "near and or not col minus x", "filler text about apples"};
    const char *tb[] = {"shared words in collection beta", "filler text about oranges"};
    float va[4 * DIM], vb[2 * DIM];
    assert_int_equal(idx_begin(s), DOC_OK);
    put_doc(s, a, "/a", ta, 4, 100, 11, va);
    put_doc(s, b, "/b", tb, 2, 200, 12, vb);
    assert_int_equal(idx_commit(s), DOC_OK);

    idx_hit *h = NULL;
    int n = 0;
    /* dense: the exact vector's chunk comes first */
    idx_search_opts o = {.k = 3, .merge_adjacent = -1};
    for (int i = 0; i < 4; i++) {
        assert_int_equal(idx_search(s, va + i * DIM, NULL, &o, &h, &n), DOC_OK);
        assert_int_equal(n, 3);
        assert_int_equal(h[0].chunk_id, 100 + i);
        assert_int_equal(h[0].dense_rank, 1);
        assert_true(fabs(h[0].dense_score - 1.0) < 1e-2);
        assert_true(isnan(h[0].bm25_score));
        assert_int_equal(h[0].bm25_rank, 0);
        assert_true(h[0].score >= h[1].score && h[1].score >= h[2].score);
        idx_hits_free(&h, n);
    }
    /* BM25: a rare word */
    assert_int_equal(idx_search(s, NULL, "Apples!", &o, &h, &n), DOC_OK);
    assert_int_equal(n, 1);
    assert_int_equal(h[0].chunk_id, 103);
    assert_int_equal(h[0].bm25_rank, 1);
    assert_true(h[0].bm25_score > 0);
    assert_true(isnan(h[0].dense_score));
    assert_string_equal(h[0].uri, "/a");
    assert_string_equal(h[0].title, "A title");
    assert_string_equal(h[0].collection, "alpha");
    assert_string_equal(h[0].heading, "Part > Sec");
    assert_string_equal(h[0].text, "filler text about apples");
    assert_int_equal(h[0].line_start, 4);
    assert_true(fabs(h[0].score - 1.0 / 61) < 1e-12);
    idx_hits_free(&h, n);
    /* hybrid: both legs agree on chunk 201 */
    assert_int_equal(idx_search(s, vb + DIM, "oranges", &o, &h, &n), DOC_OK);
    assert_int_equal(h[0].chunk_id, 201);
    assert_true(fabs(h[0].score - 2.0 / 61) < 1e-12);
    idx_hits_free(&h, n);
    /* an RRF tie (dense rank 1 alone, BM25 rank 1 alone) goes to the dense hit,
     * whichever chunk id is lower */
    idx_search_opts o1 = {.k = 2, .n_dense = 1, .n_bm25 = 1, .merge_adjacent = -1};
    assert_int_equal(idx_search(s, va, "oranges", &o1, &h, &n), DOC_OK);
    assert_int_equal(n, 2);
    assert_true(h[0].score == h[1].score);
    assert_int_equal(h[0].chunk_id, 100);
    assert_int_equal(h[1].chunk_id, 201);
    idx_hits_free(&h, n);
    assert_int_equal(idx_search(s, vb + DIM, "apples", &o1, &h, &n), DOC_OK);
    assert_int_equal(n, 2);
    assert_int_equal(h[0].chunk_id, 201);
    assert_int_equal(h[1].chunk_id, 103);
    idx_hits_free(&h, n);

    /* FTS5 syntax is read as words */
    const char *hostile[] = {
        "\"unbalanced", "NEAR(a b)", "col:*", "AND OR NOT", "-x", "\"\"\"", "*", "^", "(",
        "a\"b OR c",    "",          "   ",   "{col} : NOT"};
    for (size_t i = 0; i < sizeof hostile / sizeof *hostile; i++) {
        int rc = idx_search(s, NULL, hostile[i], &o, &h, &n);
        if (rc != DOC_OK) fail_msg("query '%s': %s", hostile[i], idx_errmsg(s));
        idx_hits_free(&h, n);
    }
    assert_int_equal(count_hits(s, "\"unbalanced", NULL, 0), 1);
    assert_int_equal(count_hits(s, "NEAR(", NULL, 0), 1);
    assert_int_equal(count_hits(s, "col:*", NULL, 0), 1);
    assert_int_equal(count_hits(s, "AND OR NOT", NULL, 0), 1);
    assert_int_equal(count_hits(s, "-x", NULL, 0), 1);
    assert_int_equal(count_hits(s, "", NULL, 0), 0);

    /* collection restriction, both legs */
    assert_int_equal(count_hits(s, "shared", NULL, 0), 2);
    assert_int_equal(count_hits(s, "shared", &a, 1), 1);
    assert_int_equal(count_hits(s, "shared", &b, 1), 1);
    assert_int_equal(count_hits(s, "shared", &a, 0), 0);
    idx_search_opts ob = {.k = 10, .collections = &b, .n_collections = 1, .merge_adjacent = -1};
    assert_int_equal(idx_search(s, va, "shared apples", &ob, &h, &n), DOC_OK);
    assert_int_equal(n, 2);
    for (int i = 0; i < n; i++) assert_string_equal(h[i].collection, "beta");
    idx_hits_free(&h, n);
    idx_close(&s);
}

static void test_merge_adjacent(void **state)
{
    (void)state;
    char dir[300];
    new_dir(dir, sizeof dir);
    idx_store *s = must_open(dir);
    int64_t coll;
    assert_int_equal(idx_collection_ensure(s, "default", NULL, &coll), DOC_OK);
    /* chunk 1 repeats the end of chunk 0 ("gamma"): ranges overlap by 5 bytes */
    float v[4 * DIM];
    uint64_t seed = 3;
    for (int i = 0; i < 4; i++) rand_unit(&seed, v + i * DIM, DIM);
    idx_chunk c[4] = {
        {.id = 50,
         .ordinal = 0,
         .text = "alpha beta gamma",
         .heading = "H",
         .line_start = 1,
         .line_end = 2,
         .char_start = 0,
         .char_end = 16,
         .vec = v},
        {.id = 51,
         .ordinal = 1,
         .text = "gamma delta epsilon",
         .heading = "H",
         .line_start = 2,
         .line_end = 3,
         .char_start = 11,
         .char_end = 30,
         .vec = v + DIM},
        {.id = 52,
         .ordinal = 2,
         .text = "unrelated middle",
         .heading = "H",
         .line_start = 4,
         .line_end = 4,
         .char_start = 32,
         .char_end = 48,
         .vec = v + 2 * DIM},
        {.id = 53,
         .ordinal = 3,
         .text = "gamma again",
         .heading = "H",
         .line_start = 5,
         .line_end = 5,
         .char_start = 50,
         .char_end = 61,
         .vec = v + 3 * DIM},
    };
    idx_doc d = {.collection_id = coll, .uri = "/m", .title = "M"};
    assert_int_equal(idx_begin(s), DOC_OK);
    assert_int_equal(idx_doc_put(s, &d, c, 4), DOC_OK);
    assert_int_equal(idx_commit(s), DOC_OK);

    idx_hit *h = NULL;
    int n = 0;
    idx_search_opts o = {.k = 5};
    assert_int_equal(idx_search(s, NULL, "gamma", &o, &h, &n), DOC_OK);
    assert_int_equal(n, 2); /* 50+51 merged; 53 alone (52 is not a candidate) */
    int m = h[0].chunk_id == 50 ? 0 : 1;
    assert_int_equal(h[m].chunk_id, 50);
    assert_int_equal(h[m].chunk_last, 51);
    assert_string_equal(h[m].text, "alpha beta gamma delta epsilon");
    assert_int_equal(h[m].line_start, 1);
    assert_int_equal(h[m].line_end, 3);
    assert_int_equal(h[1 - m].chunk_id, 53);
    assert_int_equal(h[1 - m].chunk_last, 53);
    idx_hits_free(&h, n);

    /* three in a row, the gap before 52 gets a blank line */
    assert_int_equal(idx_search(s, NULL, "gamma middle", &o, &h, &n), DOC_OK);
    assert_int_equal(n, 1);
    assert_int_equal(h[0].chunk_id, 50);
    assert_int_equal(h[0].chunk_last, 53);
    assert_string_equal(h[0].text,
                        "alpha beta gamma delta epsilon\n\nunrelated middle\n\ngamma again");
    idx_hits_free(&h, n);

    o.merge_adjacent = -1;
    assert_int_equal(idx_search(s, NULL, "gamma", &o, &h, &n), DOC_OK);
    assert_int_equal(n, 3);
    idx_hits_free(&h, n);
    idx_close(&s);
}

/* ---- FAISS files -------------------------------------------------------------------- */

static void search_exact(idx_store *s, const float *v, int64_t want)
{
    idx_hit *h = NULL;
    int n = 0;
    idx_search_opts o = {.k = 1, .merge_adjacent = -1};
    assert_int_equal(idx_search(s, v, NULL, &o, &h, &n), DOC_OK);
    assert_int_equal(n, 1);
    assert_int_equal(h[0].chunk_id, want);
    idx_hits_free(&h, n);
}

static void copy_file(const char *from, const char *to)
{
    char *data;
    size_t len;
    doc_err err = {0};
    assert_int_equal(file_read_all(from, 1 << 26, &data, &len, &err), DOC_OK);
    assert_int_equal(file_write_atomic(to, data, len, &err), DOC_OK);
    free(data);
}

static void test_faiss_rebuild(void **state)
{
    (void)state;
    char dir[300], path[600], saved[600];
    new_dir(dir, sizeof dir);
    idx_store *s = must_open(dir);
    int64_t coll;
    float v[3 * DIM], w[3 * DIM];
    assert_int_equal(idx_collection_ensure(s, "default", NULL, &coll), DOC_OK);
    assert_int_equal(idx_begin(s), DOC_OK);
    put_doc(s, coll, "/1", texts3, 3, 10, 21, v);
    assert_int_equal(idx_commit(s), DOC_OK);
    long g = live_gen(dir, "default");
    gen_file(dir, "default", g, saved, sizeof saved);
    strcat(saved, ".saved");
    gen_file(dir, "default", g, path, sizeof path);
    copy_file(path, saved);
    assert_int_equal(idx_begin(s), DOC_OK);
    put_doc(s, coll, "/2", texts3, 3, 20, 22, w);
    assert_int_equal(idx_commit(s), DOC_OK);
    assert_int_equal(live_gen(dir, "default"), g + 1); /* the old generation was removed */
    idx_close(&s);

    /* deleted */
    gen_file(dir, "default", g + 1, path, sizeof path);
    assert_int_equal(unlink(path), 0);
    /* a read-only store rebuilds in memory only */
    idx_opts ro = {.data_dir = dir, .readonly = 1};
    doc_err err = {0};
    assert_int_equal(idx_open(&ro, &s, &err), DOC_OK);
    search_exact(s, w + DIM, 21);
    idx_close(&s);
    gen_file(dir, "default", g + 2, path, sizeof path);
    assert_false(file_exists(path));
    s = must_open(dir);
    assert_int_equal(live_gen(dir, "default"), g + 2);
    must_check(s);
    search_exact(s, v + DIM, 11);
    search_exact(s, w + 2 * DIM, 22);
    idx_close(&s);

    /* corrupted: bytes flipped in the middle */
    gen_file(dir, "default", g + 2, path, sizeof path);
    int fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    struct stat st;
    assert_int_equal(fstat(fd, &st), 0);
    unsigned char bytes[8];
    assert_int_equal(pread(fd, bytes, 8, st.st_size / 2), 8);
    for (int i = 0; i < 8; i++) bytes[i] ^= 0x5a;
    assert_int_equal(pwrite(fd, bytes, 8, st.st_size / 2), 8);
    close(fd);
    s = must_open(dir);
    assert_int_equal(live_gen(dir, "default"), g + 3);
    must_check(s);
    search_exact(s, v, 10);
    idx_close(&s);

    /* stale: an older generation's file restored under the live name, and
     * under its own (stray) name */
    gen_file(dir, "default", g + 3, path, sizeof path);
    copy_file(saved, path);
    gen_file(dir, "default", g, path, sizeof path);
    copy_file(saved, path);
    unlink(saved);
    s = must_open(dir);
    assert_int_equal(live_gen(dir, "default"), g + 4); /* rebuilt, stray removed */
    must_check(s);
    search_exact(s, w + DIM, 21);
    idx_close(&s);
}

static void test_hnsw(void **state)
{
    (void)state;
    char dir[300];
    new_dir(dir, sizeof dir);
    idx_opts o = {.data_dir = dir,
                  .embedder_name = EMB,
                  .embedder_sha256 = SHA,
                  .dim = DIM,
                  .hnsw_threshold = 20};
    idx_store *s = NULL;
    doc_err err = {0};
    assert_int_equal(idx_open(&o, &s, &err), DOC_OK);
    int64_t coll;
    assert_int_equal(idx_collection_ensure(s, "big", NULL, &coll), DOC_OK);
    const char *t[10];
    char words[10][32];
    for (int i = 0; i < 10; i++) {
        snprintf(words[i], sizeof words[i], "chunk word%d text", i);
        t[i] = words[i];
    }
    float v[4][10 * DIM];
    assert_int_equal(idx_begin(s), DOC_OK);
    for (int d = 0; d < 3; d++) {
        char uri[16];
        snprintf(uri, sizeof uri, "/d%d", d);
        put_doc(s, coll, uri, t, 10, 100 * (d + 1), 30 + d, v[d]);
    }
    assert_int_equal(idx_commit(s), DOC_OK); /* 30 > 20: now HNSW */
    must_check(s);
    search_exact(s, v[1] + 3 * DIM, 203);
    /* replacing a document: HNSW cannot remove, the index is rebuilt */
    assert_int_equal(idx_begin(s), DOC_OK);
    put_doc(s, coll, "/d1", t, 10, 200, 40, v[3]);
    assert_int_equal(idx_commit(s), DOC_OK);
    must_check(s);
    search_exact(s, v[3] + 5 * DIM, 205);
    idx_close(&s);
    assert_int_equal(idx_open(&o, &s, &err), DOC_OK);
    must_check(s);
    search_exact(s, v[3] + 7 * DIM, 207);
    idx_close(&s);
}

/* ---- bad databases ------------------------------------------------------------------- */

static void test_bad_db(void **state)
{
    (void)state;
    char dir[300], db[400];
    new_dir(dir, sizeof dir);
    snprintf(db, sizeof db, "%s/docent.db", dir);
    idx_store *s = must_open(dir);
    int64_t coll;
    assert_int_equal(idx_collection_ensure(s, "default", NULL, &coll), DOC_OK);
    /* enough pages that half the file loses tables */
    static char big[200][1100];
    const char *t[200];
    for (int i = 0; i < 200; i++) {
        memset(big[i], 'a' + i % 26, 1000);
        snprintf(big[i] + 1000, 100, " chunk%d", i);
        t[i] = big[i];
    }
    assert_int_equal(idx_begin(s), DOC_OK);
    put_doc(s, coll, "/big", t, 200, 1, 77, NULL);
    assert_int_equal(idx_commit(s), DOC_OK);
    idx_close(&s);

    struct stat st;
    assert_int_equal(stat(db, &st), 0);
    assert_true(st.st_size > 100000);
    assert_int_equal(truncate(db, st.st_size / 2), 0);
    doc_err err = {0};
    int rc = open_store(dir, EMB, DIM, 0, &s, &err);
    assert_true(rc < 0);
    assert_null(s);
    assert_non_null(strstr(err.msg, "docent.db: "));
    printf("truncated: %s\n", err.msg);

    /* garbage */
    uint64_t seed = 1234;
    char junk[65536];
    for (size_t i = 0; i < sizeof junk; i++) junk[i] = (char)test_rand(&seed);
    assert_int_equal(file_write_atomic(db, junk, sizeof junk, &err), DOC_OK);
    rc = open_store(dir, EMB, DIM, 0, &s, &err);
    assert_int_equal(rc, DOC_EFORMAT);
    assert_null(s);
    assert_non_null(strstr(err.msg, "docent.db: file is not a database"));

    /* a read-only open of a missing store */
    char empty[300];
    new_dir(empty, sizeof empty);
    idx_opts ro = {.data_dir = empty, .readonly = 1};
    assert_int_equal(idx_open(&ro, &s, &err), DOC_ENOTFOUND);

    /* a newer schema than this code knows (written with the sqlite3 tool) */
    char other[300];
    new_dir(other, sizeof other);
    s = must_open(other);
    idx_close(&s);
    if (sql_tool(other, "UPDATE meta SET value='99' WHERE key='schema_version'") == 0) {
        assert_int_equal(open_store(other, EMB, DIM, 0, &s, &err), DOC_EUNSUPPORTED);
        assert_non_null(strstr(err.msg, "schema version 99 is newer"));
    }
}

/* ---- kill -9 ------------------------------------------------------------------------------ */

enum { CRASH_DOCS = 16, CRASH_MAX_CHUNKS = 8 };

static int crash_open(const char *dir, idx_store **s)
{
    idx_opts o = {.data_dir = dir,
                  .embedder_name = EMB,
                  .embedder_sha256 = SHA,
                  .dim = DIM,
                  .hnsw_threshold = 40};
    doc_err err = {0};
    return idx_open(&o, s, &err);
}

/* crash_writer: the child: random puts, replacements and removals, one to
 * three per transaction, until killed.  Each document's title records its
 * chunk count so the parent can tell a partial document. */
static void crash_writer(const char *dir, uint64_t seed)
{
    idx_store *s = NULL;
    int64_t coll;
    if (crash_open(dir, &s) != DOC_OK || idx_collection_ensure(s, "default", NULL, &coll) != DOC_OK)
        _exit(2);
    char texts[CRASH_MAX_CHUNKS][64], title[32], uri[32];
    const char *tp[CRASH_MAX_CHUNKS];
    float v[CRASH_MAX_CHUNKS * DIM];
    idx_chunk c[CRASH_MAX_CHUNKS];
    for (;;) {
        if (idx_begin(s) != DOC_OK) _exit(3);
        int ops = 1 + (int)(test_rand(&seed) % 3);
        for (int op = 0; op < ops; op++) {
            int d = (int)(test_rand(&seed) % CRASH_DOCS);
            snprintf(uri, sizeof uri, "/crash/%d", d);
            idx_doc cur;
            if (test_rand(&seed) % 4 == 0) {
                if (idx_doc_find(s, coll, uri, &cur) == DOC_OK) {
                    if (idx_doc_remove(s, cur.id) != DOC_OK) _exit(4);
                    idx_doc_clear(&cur);
                }
                continue;
            }
            int k = 1 + (int)(test_rand(&seed) % CRASH_MAX_CHUNKS);
            for (int i = 0; i < k; i++) {
                snprintf(texts[i], sizeof texts[i], "doc%d part%d v%u", d, i,
                         (unsigned)(test_rand(&seed) % 1000));
                tp[i] = texts[i];
                rand_unit(&seed, v + i * DIM, DIM);
                c[i] = (idx_chunk){.id = d * 100 + i,
                                   .ordinal = i,
                                   .text = tp[i],
                                   .heading = "",
                                   .vec = v + i * DIM};
            }
            snprintf(title, sizeof title, "chunks=%d", k);
            idx_doc doc = {.collection_id = coll, .uri = uri, .title = title};
            if (idx_doc_put(s, &doc, c, k) != DOC_OK) _exit(5);
        }
        if (idx_commit(s) != DOC_OK) _exit(6);
    }
}

static void test_crash_kill9(void **state)
{
    (void)state;
    char dir[300], logpath[400];
    new_dir(dir, sizeof dir);
    snprintf(logpath, sizeof logpath, "%s.log", dir);
    uint64_t seed = 0x5eed;
    int rounds = getenv("DOCENT_TEST_LONG") ? 60 : 12;
    long total_docs = 0;
    for (int round = 0; round < rounds; round++) {
        fflush(stdout);
        fflush(stderr);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) crash_writer(dir, seed + (uint64_t)round * 7919);
        usleep(30000 + (useconds_t)(test_rand(&seed) % 150000));
        assert_int_equal(kill(pid, SIGKILL), 0);
        int status = 0;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        if (!WIFSIGNALED(status))
            fail_msg("round %d: writer exited with %d", round, WEXITSTATUS(status));

        /* reopen with stderr captured: a kill must never leave a recorded
         * FAISS file that needs rebuilding */
        idx_store *s = NULL;
        int saved = dup(2), fd = open(logpath, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        assert_true(saved >= 0 && fd >= 0);
        dup2(fd, 2);
        close(fd);
        int rc = crash_open(dir, &s);
        fflush(stderr);
        dup2(saved, 2);
        close(saved);
        if (rc != DOC_OK) fail_msg("round %d: reopen failed (%d)", round, rc);
        char *log = NULL;
        size_t len = 0;
        doc_err err = {0};
        assert_int_equal(file_read_all(logpath, 1 << 20, &log, &len, &err), DOC_OK);
        if (strstr(log, "rebuilt")) fail_msg("round %d: %s", round, log);
        free(log);
        must_check(s);
        idx_doc *docs = NULL;
        int n = 0;
        assert_int_equal(idx_doc_list(s, 0, &docs, &n), DOC_OK);
        for (int i = 0; i < n; i++) /* wholly present */
            if (docs[i].n_chunks != atoi(docs[i].title + 7))
                fail_msg("round %d: %s has %lld chunks, title says %s", round, docs[i].uri,
                         (long long)docs[i].n_chunks, docs[i].title);
        total_docs += n;
        idx_doc_list_free(&docs, n);
        idx_close(&s);
    }
    unlink(logpath);
    printf("kill -9: %d rounds, %ld documents checked whole\n", rounds, total_docs);
}

/* ---- throughput ------------------------------------------------------------------------ */

static void test_throughput(void **state)
{
    (void)state;
    enum { N = 10000, D = 384, PER_DOC = 20, VOCAB = 5000 };
    char dir[300];
    new_dir(dir, sizeof dir);
    idx_opts o = {.data_dir = dir, .embedder_name = EMB, .embedder_sha256 = SHA, .dim = D};
    idx_store *s = NULL;
    doc_err err = {0};
    assert_int_equal(idx_open(&o, &s, &err), DOC_OK);
    int64_t coll;
    assert_int_equal(idx_collection_ensure(s, "default", NULL, &coll), DOC_OK);

    /* ~1 KB chunks of words from a skewed vocabulary */
    char *text = malloc((size_t)N * 1100);
    float *vec = malloc((size_t)N * D * sizeof *vec);
    uint64_t seed = 4242;
    for (int i = 0; i < N; i++) {
        char *p = text + (size_t)i * 1100;
        int len = 0;
        while (len < 1000) {
            uint64_t r = test_rand(&seed);
            int w = (int)((r % VOCAB) * ((r >> 20) % VOCAB) / VOCAB); /* skewed to small ids */
            len += snprintf(p + len, 1100 - (size_t)len, "w%x ", w);
        }
        p[len - 1] = 0;
        rand_unit(&seed, vec + (size_t)i * D, D);
    }
    idx_chunk *c = calloc(PER_DOC, sizeof *c);
    double t0 = time_now();
    assert_int_equal(idx_begin(s), DOC_OK);
    for (int d = 0; d < N / PER_DOC; d++) {
        for (int j = 0; j < PER_DOC; j++) {
            int i = d * PER_DOC + j;
            c[j] = (idx_chunk){.id = i,
                               .ordinal = j,
                               .text = text + (size_t)i * 1100,
                               .heading = "",
                               .char_start = j * 1000,
                               .char_end = j * 1000 + 1000,
                               .n_tokens = 256,
                               .vec = vec + (size_t)i * D};
        }
        char uri[32];
        snprintf(uri, sizeof uri, "/bulk/%d", d);
        idx_doc doc = {.collection_id = coll, .uri = uri};
        assert_int_equal(idx_doc_put(s, &doc, c, PER_DOC), DOC_OK);
    }
    double t1 = time_now();
    assert_int_equal(idx_commit(s), DOC_OK);
    double t2 = time_now();
    printf("bulk insert: %d chunks (~1 KB, %d-d) in %.2f s + commit %.2f s: %.0f chunks/s "
           "(%.0f with commit)\n",
           N, D, t1 - t0, t2 - t1, N / (t1 - t0), N / (t2 - t0));

    enum { Q = 50 };
    idx_search_opts so = {.k = 5};
    idx_hit *h = NULL;
    int n = 0;
    double tq = time_now();
    for (int q = 0; q < Q; q++) {
        char query[64];
        snprintf(query, sizeof query, "w%x w%x w%x", q * 7, q * 13 + 1, q * 101 + 5);
        assert_int_equal(idx_search(s, vec + (size_t)(q * 97) * D, query, &so, &h, &n), DOC_OK);
        assert_true(n >= 1);
        idx_hits_free(&h, n);
    }
    double tq2 = time_now();
    printf("search (hybrid, 50+50 candidates, k 5) at %d chunks: %.2f ms per query\n", N,
           (tq2 - tq) * 1000 / Q);
    for (int leg = 0; leg < 2; leg++) { /* each leg alone */
        tq = time_now();
        for (int q = 0; q < Q; q++) {
            char query[64];
            snprintf(query, sizeof query, "w%x w%x w%x", q * 7, q * 13 + 1, q * 101 + 5);
            assert_int_equal(idx_search(s, leg ? NULL : vec + (size_t)(q * 97) * D,
                                        leg ? query : NULL, &so, &h, &n),
                             DOC_OK);
            idx_hits_free(&h, n);
        }
        printf("  %s leg alone: %.2f ms per query\n", leg ? "bm25" : "dense",
               (time_now() - tq) * 1000 / Q);
    }
    idx_close(&s);
    double t3 = time_now();
    assert_int_equal(idx_open(&o, &s, &err), DOC_OK);
    printf("reopen (load the 10k-vector index): %.0f ms\n", (time_now() - t3) * 1000);
    must_check(s);
    idx_close(&s);
    free(c);
    free(text);
    free(vec);
}

/* ---- setup ------------------------------------------------------------------------------ */

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int setup(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof tmpdir, "%s/docent_store_XXXXXX",
             getenv("TMPDIR") && *getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    return nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

int main(int argc, char **argv)
{
    if (argc > 1) cmocka_set_test_filter(argv[1]); /* e.g. test_throughput */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_schema_reopen),
        cmocka_unit_test(test_embedder_change),
        cmocka_unit_test(test_put_replace_remove),
        cmocka_unit_test(test_rollback),
        cmocka_unit_test(test_search),
        cmocka_unit_test(test_merge_adjacent),
        cmocka_unit_test(test_faiss_rebuild),
        cmocka_unit_test(test_hnsw),
        cmocka_unit_test(test_bad_db),
        cmocka_unit_test(test_crash_kill9),
        cmocka_unit_test(test_throughput),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
