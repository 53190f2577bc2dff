/*
 * store.c - docent's store: the SQLite database (source of truth) and the
 * per-collection FAISS indexes derived from it.  Everything of index.h except
 * idx_search (store_search.c).
 *
 * Design:
 *   - One connection per idx_store, WAL mode, foreign keys on, a busy timeout.
 *     synchronous=NORMAL: in WAL mode a commit is then durable against an
 *     application crash (kill -9; the WAL is in the OS's hands), though the
 *     last commits may roll back on power loss.  Power loss cannot make the
 *     store inconsistent either: a FAISS generation is recorded in the same
 *     transaction as its chunks, and a recorded file that is missing or does
 *     not match (its xxh64 is recorded too) is rebuilt from the embeddings.
 *   - The schema is versioned: meta.schema_version and the migrations[] table
 *     below, applied in order inside one transaction.  A database written by
 *     a newer docent is refused.
 *   - chunks_fts is an FTS5 *external content* table over chunks(text,
 *     heading) with rowid = chunk id, kept in step by this file's statements
 *     (not triggers: see the schema), so the text is stored once and FTS5's
 *     integrity-check (rank 1) also compares the index with the chunks it was
 *     built from.  Tokenizer: unicode61, diacritics removed.
 *   - Embeddings are stored as dim f16 values (host order, i.e. little-endian
 *     on the machines docent runs on).  The vectors put in FAISS are those
 *     f16 values widened again, so an index built incrementally and one
 *     rebuilt from SQLite give identical scores.
 *   - Writes: idx_begin = BEGIN IMMEDIATE; each idx_doc_put / idx_doc_remove
 *     checks everything first (a refused call leaves the transaction as it
 *     was), writes the rows and FTS rows, and then updates the collection's
 *     in-memory index (or marks it for rebuild when the index cannot remove
 *     ids, HNSW).  A failure while writing (I/O, memory) rolls the whole
 *     transaction back: no savepoints, because each one makes FTS5 flush its
 *     pending terms (measured: 2x slower bulk inserts). idx_commit saves each touched
 *     index as generation g+1 (atomic file write), records it in `vectors`,
 *     COMMITs and only then unlinks generation g.  Any failure rolls back and
 *     drops the touched in-memory indexes, which are reloaded from the last
 *     committed files on next use: memory never disagrees with SQLite.
 *   - Generation files are only created inside a write transaction, so under
 *     the write lock (idx_open's sweep) any file of another generation is
 *     stray; after a commit only older generations are removed.
 *   - Another connection may commit between our transactions: idx_begin and
 *     searches re-read `vectors` and reload collections whose generation moved.
 *
 * Not thread-safe: one idx_store per thread.
 */
#include "index/internal.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#define SCHEMA_VERSION 1
#define BUSY_TIMEOUT_MS 10000
#define DEFAULT_HNSW_THRESHOLD 50000
#define DEFAULT_HNSW_FACTORY "IDMap2,HNSW32"
#define DEFAULT_EF_SEARCH 128

enum {
    URI_MAX = 8192,       /* bytes of a document uri */
    TITLE_MAX = 4096,     /* bytes of a title, mime or heading */
    TEXT_MAX = 1 << 20,   /* bytes of one chunk's text */
    CHUNKS_MAX = 1 << 20, /* chunks of one document */
    READERS_MAX = 511,    /* bytes of a collection's readers */
    REBUILD_BATCH = 1024, /* vectors added to FAISS at once when rebuilding */
    EACH_BATCH = 256,     /* chunks read at once by idx_chunk_each */
};

/* ---- schema ------------------------------------------------------------ */

/* migrations[v] takes a database from schema version v to v+1. */
static const char *const migrations[SCHEMA_VERSION] = {
    /* 0 -> 1: the initial schema */
    "CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;"
    "CREATE TABLE collections("
    "  id INTEGER PRIMARY KEY,"
    "  name TEXT NOT NULL UNIQUE,"
    "  readers TEXT NOT NULL DEFAULT '*',"
    "  created_at INTEGER NOT NULL);"
    "CREATE TABLE documents("
    "  id INTEGER PRIMARY KEY,"
    "  collection_id INTEGER NOT NULL REFERENCES collections(id),"
    "  uri TEXT NOT NULL,"
    "  title TEXT NOT NULL DEFAULT '',"
    "  mime TEXT NOT NULL DEFAULT '',"
    "  hash INTEGER NOT NULL," /* xxh64 as a signed 64-bit integer */
    "  mtime INTEGER NOT NULL,"
    "  size INTEGER NOT NULL,"
    "  status INTEGER NOT NULL," /* IDX_DOC_OK, IDX_DOC_EMPTY */
    "  ingested_at INTEGER NOT NULL,"
    "  UNIQUE(collection_id, uri));"
    "CREATE TABLE chunks("
    "  id INTEGER PRIMARY KEY," /* the caller's stable chunk id = FAISS id */
    "  doc_id INTEGER NOT NULL REFERENCES documents(id),"
    "  ordinal INTEGER NOT NULL,"
    "  text TEXT NOT NULL,"
    "  heading TEXT NOT NULL DEFAULT '',"
    "  page INTEGER NOT NULL DEFAULT 0,"
    "  line_start INTEGER NOT NULL DEFAULT 0,"
    "  line_end INTEGER NOT NULL DEFAULT 0,"
    "  char_start INTEGER NOT NULL DEFAULT 0,"
    "  char_end INTEGER NOT NULL DEFAULT 0,"
    "  n_tokens INTEGER NOT NULL DEFAULT 0,"
    "  embedding BLOB NOT NULL);" /* dim f16 values */
    "CREATE INDEX chunks_doc ON chunks(doc_id, ordinal);"
    /* kept in step by store.c's own statements, not triggers: an FTS5
     * insert from a trigger flushes FTS5's pending terms row by row (3x
     * slower bulk inserts) */
    "CREATE VIRTUAL TABLE chunks_fts USING fts5(text, heading, content='chunks',"
    "  content_rowid='id', tokenize='unicode61 remove_diacritics 2');"
    "CREATE TABLE vectors("
    "  collection_id INTEGER PRIMARY KEY REFERENCES collections(id),"
    "  generation INTEGER NOT NULL,"
    "  hash INTEGER NOT NULL);", /* xxh64 of the generation's file */
};

/* the SQL of the cached statements, by slot (store_search.c passes its own) */
#define SQL_CHUNK_COUNT                                                                            \
    "SELECT count(*) FROM chunks"                                                                  \
    " WHERE doc_id IN (SELECT id FROM documents WHERE collection_id = ?1)"
#define SQL_DOC_SELECT                                                                             \
    "SELECT d.id, d.collection_id, c.name, d.uri, d.title, d.mime, d.hash, d.mtime, d.size,"       \
    " d.ingested_at, (SELECT count(*) FROM chunks WHERE doc_id = d.id)"                            \
    " FROM documents d JOIN collections c ON c.id = d.collection_id "

/* ---- errors and statements ---------------------------------------------- */

int store_fail(idx_store *s, int rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->err.msg, sizeof s->err.msg, fmt, ap);
    va_end(ap);
    s->err.rc = rc;
    return rc;
}

/* sql_rc: the DOC_E* code for an SQLite result code. */
static int sql_rc(int code)
{
    switch (code & 0xff) {
    case SQLITE_OK:
    case SQLITE_DONE:
    case SQLITE_ROW: return DOC_OK;
    case SQLITE_NOMEM: return DOC_ENOMEM;
    case SQLITE_NOTADB:
    case SQLITE_CORRUPT:
    case SQLITE_FORMAT:
    case SQLITE_SCHEMA: return DOC_EFORMAT;
    case SQLITE_CONSTRAINT:
    case SQLITE_MISMATCH:
    case SQLITE_RANGE: return DOC_EINVAL;
    case SQLITE_TOOBIG:
    case SQLITE_FULL: return DOC_ELIMIT;
    case SQLITE_READONLY:
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
    case SQLITE_MISUSE: return DOC_ESTATE;
    case SQLITE_INTERRUPT: return DOC_ECANCELLED;
    default: return DOC_EIO;
    }
}

int store_sqlerr(idx_store *s, const char *what)
{
    int code = s->db ? sqlite3_extended_errcode(s->db) : SQLITE_CANTOPEN;
    const char *m = s->db ? sqlite3_errmsg(s->db) : "cannot open";
    int rc = sql_rc(code);
    if (rc == DOC_OK) rc = DOC_EIO; /* called on a failure the connection did not record */
    return store_fail(s, rc, "%s: %s", what, m);
}

struct sqlite3_stmt *store_q(idx_store *s, int q, const char *sql)
{
    sqlite3_stmt *st = s->q[q];
    if (st) {
        sqlite3_reset(st);
        sqlite3_clear_bindings(st);
        return st;
    }
    if (sqlite3_prepare_v3(s->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &st, NULL) != SQLITE_OK) {
        store_sqlerr(s, s->db_path);
        return NULL;
    }
    s->q[q] = st;
    return st;
}

int store_exec(idx_store *s, const char *sql)
{
    if (sqlite3_exec(s->db, sql, NULL, NULL, NULL) != SQLITE_OK) return store_sqlerr(s, s->db_path);
    return DOC_OK;
}

/* step_done: step a statement that returns no rows, then reset it. */
static int step_done(idx_store *s, sqlite3_stmt *st)
{
    int r = sqlite3_step(st);
    int rc = r == SQLITE_DONE ? DOC_OK : store_sqlerr(s, s->db_path);
    sqlite3_reset(st);
    return rc;
}

/* query_i64: the first column of the first row of a statement (bound by the
 * caller) as an integer; DOC_ENOTFOUND when there is no row. */
static int query_i64(idx_store *s, sqlite3_stmt *st, int64_t *out)
{
    int r = sqlite3_step(st);
    int rc = DOC_OK;
    if (r == SQLITE_ROW)
        *out = sqlite3_column_int64(st, 0);
    else if (r == SQLITE_DONE)
        rc = DOC_ENOTFOUND;
    else
        rc = store_sqlerr(s, s->db_path);
    sqlite3_reset(st);
    return rc;
}

static int bind_text(sqlite3_stmt *st, int i, const char *t)
{
    return sqlite3_bind_text(st, i, t ? t : "", -1, SQLITE_STATIC);
}

static char *col_dup(sqlite3_stmt *st, int i)
{
    const unsigned char *t = sqlite3_column_text(st, i);
    return strdup(t ? (const char *)t : "");
}

static void col_copy(sqlite3_stmt *st, int i, char *out, size_t cap)
{
    const unsigned char *t = sqlite3_column_text(st, i);
    snprintf(out, cap, "%s", t ? (const char *)t : "");
}

/* ---- small helpers ------------------------------------------------------- */

/* name_check: collection names are 1..127 bytes of [A-Za-z0-9_.-] (file
 * names of the FAISS indexes); "." and ".." are refused too. */
static int name_check(idx_store *s, const char *name)
{
    size_t n = name ? strlen(name) : 0;
    if (n == 0) return store_fail(s, DOC_EINVAL, "collection name is empty");
    if (n > 127)
        return store_fail(s, DOC_ELIMIT, "collection name '%.40s...': over 127 bytes", name);
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)name[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '_' || ch == '.' || ch == '-'))
            return store_fail(s, DOC_EINVAL,
                              "collection name '%s': only letters, digits, '_', '.', '-'", name);
    }
    if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
        return store_fail(s, DOC_EINVAL, "collection name '%s' is reserved", name);
    return DOC_OK;
}

static int readers_check(idx_store *s, const char *readers)
{
    size_t n = strlen(readers);
    if (n > READERS_MAX)
        return store_fail(s, DOC_ELIMIT, "readers list over %d bytes", READERS_MAX);
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)readers[i] < 0x20)
            return store_fail(s, DOC_EINVAL, "readers list: control character at byte %zu", i);
    return DOC_OK;
}

/* mkdir_p: create dir and its parents. */
static int mkdir_p(idx_store *s, const char *dir)
{
    char tmp[1024];
    if (snprintf(tmp, sizeof tmp, "%s", dir) >= (int)sizeof tmp)
        return store_fail(s, DOC_ELIMIT, "data directory path over %zu bytes", sizeof tmp - 1);
    for (char *p = tmp + 1;; p++) {
        if (*p != '/' && *p) continue;
        char c = *p;
        *p = 0;
        if (mkdir(tmp, 0755) != 0 && errno != EEXIST)
            return store_fail(s, DOC_EIO, "%s: cannot create: %s", tmp, strerror(errno));
        if (!c) break;
        *p = c;
    }
    if (!file_is_dir(dir)) return store_fail(s, DOC_EIO, "%s: not a directory", dir);
    return DOC_OK;
}

static void gen_path(const idx_store *s, const store_coll *c, int64_t gen, char *out, size_t cap)
{
    snprintf(out, cap, "%s/%s.%lld.faiss", s->vec_dir, c->name, (long long)gen);
}

/* gen_of_file: the generation of `file` when it is "<name>.<N>.faiss" (tmp 0)
 * or a temporary "<name>.<N>.faiss.tmp.<anything>" (tmp 1); -1 otherwise. */
static int64_t gen_of_file(const char *file, const char *name, int *tmp)
{
    size_t n = strlen(name);
    if (strncmp(file, name, n) != 0 || file[n] != '.') return -1;
    const char *p = file + n + 1;
    if (*p < '0' || *p > '9') return -1;
    int64_t g = 0;
    while (*p >= '0' && *p <= '9') {
        if (g > INT64_MAX / 10 - 10) return -1;
        g = g * 10 + (*p++ - '0');
    }
    if (strcmp(p, ".faiss") == 0)
        *tmp = 0;
    else if (strncmp(p, ".faiss.tmp.", 11) == 0)
        *tmp = 1;
    else
        return -1;
    return g;
}

/* sweep: remove c's index files other than generation keep: every other
 * generation and leftover temporaries when we hold the write lock (all),
 * else only older generations. */
static void sweep(idx_store *s, const store_coll *c, int64_t keep, int all)
{
    DIR *d = opendir(s->vec_dir);
    if (!d) return;
    struct dirent *e;
    char path[2048];
    while ((e = readdir(d))) {
        int tmp = 0;
        int64_t g = gen_of_file(e->d_name, c->name, &tmp);
        if (g < 0 || (g == keep && !tmp)) continue;
        if (!all && (tmp || g >= keep)) continue;
        snprintf(path, sizeof path, "%s/%s", s->vec_dir, e->d_name);
        if (unlink(path) == 0)
            log_debug("%s: removed (live generation is %lld)", path, (long long)keep);
    }
    closedir(d);
}

/* ---- meta ------------------------------------------------------------------ */

/* meta_get: value of key into out; DOC_ENOTFOUND when absent. */
static int meta_get(idx_store *s, const char *key, char *out, size_t cap)
{
    sqlite3_stmt *st = store_q(s, Q_META_GET, "SELECT value FROM meta WHERE key = ?1");
    if (!st) return s->err.rc;
    bind_text(st, 1, key);
    int r = sqlite3_step(st), rc = DOC_OK;
    if (r == SQLITE_ROW)
        col_copy(st, 0, out, cap);
    else if (r == SQLITE_DONE)
        rc = DOC_ENOTFOUND;
    else
        rc = store_sqlerr(s, s->db_path);
    sqlite3_reset(st);
    return rc;
}

static int meta_put(idx_store *s, const char *key, const char *value)
{
    sqlite3_stmt *st =
        store_q(s, Q_META_PUT, "INSERT OR REPLACE INTO meta(key, value) VALUES (?1, ?2)");
    if (!st) return s->err.rc;
    bind_text(st, 1, key);
    bind_text(st, 2, value);
    return step_done(s, st);
}

static int meta_put_embedder(idx_store *s)
{
    char dim[32];
    snprintf(dim, sizeof dim, "%d", s->dim);
    int rc;
    if ((rc = meta_put(s, "embedder_name", s->embedder_name)) != DOC_OK) return rc;
    if ((rc = meta_put(s, "embedder_sha256", s->embedder_sha256)) != DOC_OK) return rc;
    return meta_put(s, "embedder_dim", dim);
}

/* ---- opening: connection, schema, embedder ------------------------------- */

static int setup_connection(idx_store *s)
{
    sqlite3_busy_timeout(s->db, BUSY_TIMEOUT_MS);
    sqlite3_stmt *st = NULL;
    /* the first statement that reads the file: a garbage file fails here */
    if (sqlite3_prepare_v2(s->db, "PRAGMA journal_mode=WAL", -1, &st, NULL) != SQLITE_OK)
        return store_sqlerr(s, s->db_path);
    int r = sqlite3_step(st), rc = DOC_OK;
    if (r != SQLITE_ROW)
        rc = store_sqlerr(s, s->db_path);
    else if (!s->readonly && sqlite3_stricmp((const char *)sqlite3_column_text(st, 0), "wal") != 0)
        rc = store_fail(s, DOC_EIO, "%s: cannot switch to WAL mode (journal mode is %s)",
                        s->db_path, (const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    if (rc != DOC_OK) return rc;
    return store_exec(s, "PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;"
                         " PRAGMA cache_size=-32768; PRAGMA temp_store=MEMORY");
}

/* schema_version: meta.schema_version, 0 for an empty database.  A database
 * with tables but no meta is not ours. */
static int schema_version(idx_store *s, int *version)
{
    *version = 0;
    sqlite3_stmt *st = NULL;
    int64_t n_tables = 0, has_meta = 0;
    int rc = DOC_OK;
    if (sqlite3_prepare_v2(
            s->db, "SELECT count(*), count(*) FILTER (WHERE name = 'meta') FROM sqlite_master", -1,
            &st, NULL) != SQLITE_OK)
        return store_sqlerr(s, s->db_path);
    if (sqlite3_step(st) != SQLITE_ROW) {
        rc = store_sqlerr(s, s->db_path);
        goto done;
    }
    n_tables = sqlite3_column_int64(st, 0);
    has_meta = sqlite3_column_int64(st, 1);
    if (n_tables == 0) goto done;
    if (!has_meta) {
        rc = store_fail(s, DOC_EFORMAT, "%s: not a docent store (no meta table)", s->db_path);
        goto done;
    }
    char v[32] = "";
    rc = meta_get(s, "schema_version", v, sizeof v);
    if (rc == DOC_ENOTFOUND ||
        (rc == DOC_OK && (atoi(v) <= 0 || strspn(v, "0123456789") != strlen(v))))
        rc = store_fail(s, DOC_EFORMAT, "%s: meta.schema_version missing or invalid ('%s')",
                        s->db_path, v);
    if (rc == DOC_OK) *version = atoi(v);
done:
    sqlite3_finalize(st);
    return rc;
}

static int migrate(idx_store *s)
{
    int v = 0, rc = schema_version(s, &v);
    if (rc != DOC_OK) return rc;
    if (v > SCHEMA_VERSION)
        return store_fail(s, DOC_EUNSUPPORTED,
                          "%s: schema version %d is newer than this docent knows (%d): "
                          "use a newer docent",
                          s->db_path, v, SCHEMA_VERSION);
    if (v == SCHEMA_VERSION) return DOC_OK;
    if (s->readonly)
        return store_fail(s, DOC_ESTATE,
                          "%s: schema version %d needs migrating to %d: "
                          "open it read-write once",
                          s->db_path, v, SCHEMA_VERSION);
    if ((rc = store_exec(s, "BEGIN IMMEDIATE")) != DOC_OK) return rc;
    /* another process may have migrated while we waited for the lock */
    if ((rc = schema_version(s, &v)) != DOC_OK) goto done;
    for (; v < SCHEMA_VERSION; v++) {
        if ((rc = store_exec(s, migrations[v])) != DOC_OK) {
            doc_errprefix(&s->err, "migration to schema version %d", v + 1);
            goto done;
        }
        log_info("%s: schema migrated to version %d", s->db_path, v + 1);
    }
    char ver[16];
    snprintf(ver, sizeof ver, "%d", SCHEMA_VERSION);
    if ((rc = meta_put(s, "schema_version", ver)) != DOC_OK) goto done;
    rc = store_exec(s, "COMMIT");
done:
    if (rc != DOC_OK) sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
    return rc;
}

/* check_embedder: compare the recorded embedder with the caller's, or record
 * it in a fresh store.  o->embedder_name NULL adopts the recorded identity. */
static int check_embedder(idx_store *s, const idx_opts *o)
{
    char name[128] = "", sha[72] = "", dims[32] = "";
    int rc = meta_get(s, "embedder_name", name, sizeof name);
    if (rc == DOC_OK) rc = meta_get(s, "embedder_sha256", sha, sizeof sha);
    if (rc == DOC_OK) rc = meta_get(s, "embedder_dim", dims, sizeof dims);
    if (rc != DOC_OK && rc != DOC_ENOTFOUND) return rc;
    int recorded = rc == DOC_OK, rdim = atoi(dims);

    if (!recorded) {
        if (!o->embedder_name || s->dim <= 0)
            return store_fail(s, DOC_EINVAL,
                              "%s: a new store needs the embedder's name and dimension",
                              s->db_path);
        if (s->readonly) return DOC_OK; /* recorded by the first writer */
        if ((rc = store_exec(s, "BEGIN IMMEDIATE")) != DOC_OK) return rc;
        rc = meta_put_embedder(s);
        if (rc == DOC_OK) rc = store_exec(s, "COMMIT");
        if (rc != DOC_OK) sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
        return rc;
    }
    if (!o->embedder_name) { /* adopt */
        if (s->dim > 0 && s->dim != rdim)
            return store_fail(s, DOC_ESTATE, "store %s holds %d-d embeddings, not %d-d", s->dir,
                              rdim, s->dim);
        snprintf(s->embedder_name, sizeof s->embedder_name, "%s", name);
        snprintf(s->embedder_sha256, sizeof s->embedder_sha256, "%s", sha);
        s->dim = rdim;
        if (s->dim <= 0)
            return store_fail(s, DOC_EFORMAT, "%s: meta.embedder_dim invalid ('%s')", s->db_path,
                              dims);
        return DOC_OK;
    }
    if (strcmp(name, s->embedder_name) == 0 && strcmp(sha, s->embedder_sha256) == 0 &&
        rdim == s->dim)
        return DOC_OK;
    if (!o->allow_embedder_change)
        return store_fail(
            s, DOC_ESTATE,
            "store %s was built with embedder %s (sha256 %.12s..., %d-d); this one is "
            "%s (sha256 %.12s..., %d-d): run `docent reindex` to re-embed",
            s->dir, name, sha, rdim, s->embedder_name, s->embedder_sha256, s->dim);
    log_info(
        "store %s: embedder changes from %s (%d-d) to %s (%d-d); vectors unusable until reindexed",
        s->dir, name, rdim, s->embedder_name, s->dim);
    s->embedder_stale = 1;
    return DOC_OK;
}

/* ---- collections in memory ------------------------------------------------ */

store_coll *store_coll_get(idx_store *s, int64_t id)
{
    for (int i = 0; i < s->n_colls; i++)
        if (s->colls[i].id == id) return &s->colls[i];
    return NULL;
}

static void coll_drop(store_coll *c)
{
    vx_free(&c->vx);
    vx_free(&c->new_vx);
}

/* colls_sync: make s->colls match the collections and generations SQLite
 * records; an entry whose generation moved loses its loaded index. */
static int colls_sync(idx_store *s)
{
    sqlite3_stmt *st = store_q(s, Q_COLL_ALL,
                               "SELECT c.id, c.name, v.generation, v.hash FROM collections c"
                               " LEFT JOIN vectors v ON v.collection_id = c.id ORDER BY c.id");
    if (!st) return s->err.rc;
    store_coll *out = NULL;
    int n = 0, cap = 0, rc = DOC_OK, r;
    while ((r = sqlite3_step(st)) == SQLITE_ROW) {
        if (n == cap) {
            int nc = cap ? cap * 2 : 8;
            store_coll *t = realloc(out, (size_t)nc * sizeof *t);
            if (!t) {
                rc = store_fail(s, DOC_ENOMEM, "out of memory listing collections");
                goto done;
            }
            out = t;
            cap = nc;
        }
        store_coll c = {0};
        c.id = sqlite3_column_int64(st, 0);
        col_copy(st, 1, c.name, sizeof c.name);
        c.gen = sqlite3_column_int64(st, 2);
        c.hash = (uint64_t)sqlite3_column_int64(st, 3);
        store_coll *old = store_coll_get(s, c.id);
        if (old && old->gen == c.gen && old->hash == c.hash && !old->touched && !old->rebuild) {
            c.vx = old->vx; /* still current */
            old->vx = NULL;
        }
        out[n++] = c;
    }
    if (r != SQLITE_DONE) rc = store_sqlerr(s, s->db_path);
done:
    sqlite3_reset(st);
    if (rc != DOC_OK) {
        for (int i = 0; i < n; i++) coll_drop(&out[i]);
        free(out);
        return rc;
    }
    for (int i = 0; i < s->n_colls; i++) coll_drop(&s->colls[i]);
    free(s->colls);
    s->colls = out;
    s->n_colls = n;
    s->cap_colls = cap;
    return DOC_OK;
}

static int coll_nchunks(idx_store *s, const store_coll *c, int64_t *n)
{
    sqlite3_stmt *st = store_q(s, Q_COLL_NCHUNKS, SQL_CHUNK_COUNT);
    if (!st) return s->err.rc;
    sqlite3_bind_int64(st, 1, c->id);
    return query_i64(s, st, n);
}

/* ---- vector indexes --------------------------------------------------------- */

static int vx_fail(idx_store *s, const doc_err *e)
{
    s->err = *e;
    return e->rc;
}

static int new_index(idx_store *s, int64_t n_chunks, vindex **out)
{
    doc_err e = {0};
    int hnsw = n_chunks > s->hnsw_threshold;
    int rc = vx_new(s->dim, hnsw ? s->hnsw_factory : NULL, out, &e);
    if (rc == DOC_OK && hnsw) rc = vx_set_ef_search(*out, s->hnsw_ef_search, &e);
    if (rc != DOC_OK) {
        vx_free(out);
        return vx_fail(s, &e);
    }
    return DOC_OK;
}

/* build_index: a new index of collection c from its stored embeddings (as
 * SQLite sees them now, inside or outside a transaction). */
static int build_index(idx_store *s, const store_coll *c, int64_t n_chunks, vindex **out)
{
    *out = NULL;
    vindex *v = NULL;
    float *x = malloc((size_t)REBUILD_BATCH * (size_t)s->dim * sizeof *x);
    int64_t *ids = malloc(REBUILD_BATCH * sizeof *ids);
    int rc = DOC_OK, r, m = 0;
    doc_err e = {0};
    sqlite3_stmt *st = NULL;
    if (!x || !ids) {
        rc = store_fail(s, DOC_ENOMEM, "out of memory rebuilding collection '%s'", c->name);
        goto done;
    }
    if ((rc = new_index(s, n_chunks, &v)) != DOC_OK) goto done;
    st = store_q(s, Q_COLL_EMBEDDINGS,
                 "SELECT c.id, c.embedding FROM documents d JOIN chunks c ON c.doc_id = d.id"
                 " WHERE d.collection_id = ?1 ORDER BY c.id");
    if (!st) {
        rc = s->err.rc;
        goto done;
    }
    sqlite3_bind_int64(st, 1, c->id);
    for (;;) {
        r = sqlite3_step(st);
        if (r == SQLITE_ROW) {
            int64_t id = sqlite3_column_int64(st, 0);
            const uint16_t *h = sqlite3_column_blob(st, 1);
            int bytes = sqlite3_column_bytes(st, 1);
            if (bytes != 2 * s->dim || !h) {
                rc = store_fail(
                    s, DOC_EFORMAT,
                    "chunk %lld: stored embedding has %d bytes, expected %d (%d-d f16)%s",
                    (long long)id, bytes, 2 * s->dim, s->dim,
                    s->embedder_stale ? ": reindex has not finished" : "");
                goto done;
            }
            float *xi = x + (size_t)m * (size_t)s->dim;
            for (int j = 0; j < s->dim; j++) xi[j] = f16_to_f32(h[j]);
            ids[m++] = id;
        } else if (r != SQLITE_DONE) {
            rc = store_sqlerr(s, s->db_path);
            goto done;
        }
        if (m == REBUILD_BATCH || (r == SQLITE_DONE && m > 0)) {
            if ((rc = vx_add(v, m, x, ids, &e)) != DOC_OK) {
                rc = vx_fail(s, &e);
                goto done;
            }
            m = 0;
        }
        if (r == SQLITE_DONE) break;
    }
    *out = v;
    v = NULL;
done:
    if (st) sqlite3_reset(st);
    vx_free(&v);
    free(x);
    free(ids);
    return rc;
}

/* store_coll_vindex: see internal.h.  A rebuild inside a write transaction
 * marks the collection touched so idx_commit records the new file; outside
 * one (read-only stores, searches) the rebuilt index lives in memory only. */
int store_coll_vindex(idx_store *s, store_coll *c, vindex **out)
{
    *out = NULL;
    if (c->vx) {
        *out = c->vx;
        return DOC_OK;
    }
    int64_t n = 0;
    int rc;
    if (s->embedder_stale) { /* old vectors are meaningless; reindex rebuilds */
        if ((rc = new_index(s, 0, &c->vx)) != DOC_OK) return rc;
        *out = c->vx;
        return DOC_OK;
    }
    if ((rc = coll_nchunks(s, c, &n)) != DOC_OK) return rc;
    char why[2200] = "", path[2048];
    if (c->gen > 0) {
        doc_err e = {0};
        vindex *v = NULL;
        gen_path(s, c, c->gen, path, sizeof path);
        rc = vx_load(path, s->dim, c->hash, &v, &e);
        if (rc == DOC_OK && vx_count(v) != n) {
            snprintf(why, sizeof why, "%s: holds %lld vectors for %lld chunks", path,
                     (long long)vx_count(v), (long long)n);
            vx_free(&v);
        } else if (rc == DOC_OK) {
            if (!vx_can_remove(v) && (rc = vx_set_ef_search(v, s->hnsw_ef_search, &e)) != DOC_OK) {
                vx_free(&v);
                return vx_fail(s, &e);
            }
            c->vx = *out = v;
            return DOC_OK;
        } else {
            snprintf(why, sizeof why, "%s", e.msg);
        }
    } else if (n == 0) {
        if ((rc = new_index(s, 0, &c->vx)) != DOC_OK) return rc;
        *out = c->vx;
        return DOC_OK;
    } else {
        snprintf(why, sizeof why, "collection '%s': no index file recorded", c->name);
    }
    if ((rc = build_index(s, c, n, &c->vx)) != DOC_OK) return rc;
    log_warn("%s; rebuilt collection '%s' from %lld stored embeddings%s", why, c->name,
             (long long)n, s->in_tx ? "" : " (in memory only)");
    if (s->in_tx) c->touched = 1;
    *out = c->vx;
    return DOC_OK;
}

int store_refresh(idx_store *s)
{
    if (s->in_tx) return DOC_OK;
    return colls_sync(s);
}

/* ---- open / close ------------------------------------------------------------ */

static int load_all(idx_store *s)
{
    int rc;
    vindex *v;
    if (s->readonly || s->embedder_stale) {
        if ((rc = store_exec(s, "BEGIN")) != DOC_OK) return rc;
        rc = colls_sync(s);
        for (int i = 0; rc == DOC_OK && i < s->n_colls; i++)
            rc = store_coll_vindex(s, &s->colls[i], &v);
        sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL);
        return rc;
    }
    if ((rc = idx_begin(s)) != DOC_OK) return rc;
    for (int i = 0; rc == DOC_OK && i < s->n_colls; i++)
        rc = store_coll_vindex(s, &s->colls[i], &v);
    if (rc != DOC_OK) {
        idx_rollback(s);
        return rc;
    }
    /* under the write lock every other generation's file is stray */
    for (int i = 0; i < s->n_colls; i++) sweep(s, &s->colls[i], s->colls[i].gen, 1);
    return idx_commit(s);
}

int idx_open(const idx_opts *o, idx_store **out, doc_err *err)
{
    *out = NULL;
    if (!o || !o->data_dir || !*o->data_dir)
        return doc_errf(err, DOC_EINVAL, "idx_open: no data directory");
    if (o->dim < 0 || o->dim > 65536)
        return doc_errf(err, DOC_EINVAL, "idx_open: embedding dimension %d out of range", o->dim);
    if (o->embedder_name && strlen(o->embedder_name) >= 128)
        return doc_errf(err, DOC_ELIMIT, "idx_open: embedder name over 127 bytes");
    if (o->embedder_sha256 && strlen(o->embedder_sha256) >= 72)
        return doc_errf(err, DOC_ELIMIT, "idx_open: embedder sha256 over 71 bytes");
    if (o->hnsw_factory && strlen(o->hnsw_factory) >= 256)
        return doc_errf(err, DOC_ELIMIT, "idx_open: faiss factory string over 255 bytes");
    if (strlen(o->data_dir) >= 1000)
        return doc_errf(err, DOC_ELIMIT, "idx_open: data directory path over 999 bytes");

    idx_store *s = calloc(1, sizeof *s);
    if (!s) return doc_errf(err, DOC_ENOMEM, "idx_open: out of memory");
    int rc = DOC_OK;
    snprintf(s->dir, sizeof s->dir, "%s", o->data_dir);
    size_t dl = strlen(s->dir);
    while (dl > 1 && s->dir[dl - 1] == '/') s->dir[--dl] = 0;
    snprintf(s->db_path, sizeof s->db_path, "%s/docent.db", s->dir);
    snprintf(s->vec_dir, sizeof s->vec_dir, "%s/vectors", s->dir);
    s->dim = o->dim;
    s->readonly = o->readonly != 0;
    snprintf(s->embedder_name, sizeof s->embedder_name, "%s",
             o->embedder_name ? o->embedder_name : "");
    snprintf(s->embedder_sha256, sizeof s->embedder_sha256, "%s",
             o->embedder_sha256 ? o->embedder_sha256 : "");
    s->hnsw_threshold = o->hnsw_threshold > 0 ? o->hnsw_threshold : DEFAULT_HNSW_THRESHOLD;
    snprintf(s->hnsw_factory, sizeof s->hnsw_factory, "%s",
             o->hnsw_factory && *o->hnsw_factory ? o->hnsw_factory : DEFAULT_HNSW_FACTORY);
    s->hnsw_ef_search = o->hnsw_ef_search > 0 ? o->hnsw_ef_search : DEFAULT_EF_SEARCH;

    /* reading, or opening without an embedder (ls, rm, check): never create a store */
    if (s->readonly || !o->embedder_name) {
        if (!file_exists(s->db_path)) {
            rc = store_fail(s, DOC_ENOTFOUND, "%s: no store here (nothing ingested yet)",
                            s->db_path);
            goto done;
        }
    }
    if (!s->readonly &&
        ((rc = mkdir_p(s, s->dir)) != DOC_OK || (rc = mkdir_p(s, s->vec_dir)) != DOC_OK))
        goto done;
    int flags = (s->readonly ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE) |
                SQLITE_OPEN_NOMUTEX;
    if (sqlite3_open_v2(s->db_path, &s->db, flags, NULL) != SQLITE_OK) {
        rc = store_sqlerr(s, s->db_path);
        goto done;
    }
    sqlite3_extended_result_codes(s->db, 1);
    if ((rc = setup_connection(s)) != DOC_OK) goto done;
    if ((rc = migrate(s)) != DOC_OK) goto done;
    if ((rc = check_embedder(s, o)) != DOC_OK) goto done;
    if ((rc = load_all(s)) != DOC_OK) goto done;
done:
    if (rc != DOC_OK) {
        if (err) *err = s->err;
        idx_close(&s);
        return rc;
    }
    *out = s;
    return DOC_OK;
}

void idx_close(idx_store **sp)
{
    if (!sp || !*sp) return;
    idx_store *s = *sp;
    if (s->in_tx) idx_rollback(s);
    for (int i = 0; i < s->n_colls; i++) coll_drop(&s->colls[i]);
    free(s->colls);
    for (int i = 0; i < Q_N; i++) sqlite3_finalize(s->q[i]);
    if (s->db) sqlite3_close_v2(s->db);
    free(s);
    *sp = NULL;
}

const char *idx_errmsg(const idx_store *s)
{
    return s ? s->err.msg : "no store";
}

/* ---- collections ------------------------------------------------------------ */

static int need_writable(idx_store *s, const char *what)
{
    if (s->readonly)
        return store_fail(s, DOC_ESTATE, "%s: store %s is open read-only", what, s->dir);
    return DOC_OK;
}

int idx_collection_ensure(idx_store *s, const char *name, const char *readers, int64_t *id)
{
    int rc;
    if ((rc = name_check(s, name)) != DOC_OK) return rc;
    if (!readers) readers = "*";
    if ((rc = readers_check(s, readers)) != DOC_OK) return rc;
    sqlite3_stmt *st = store_q(s, Q_COLL_BY_NAME, "SELECT id FROM collections WHERE name = ?1");
    if (!st) return s->err.rc;
    bind_text(st, 1, name);
    rc = query_i64(s, st, id);
    if (rc != DOC_ENOTFOUND) return rc;
    if ((rc = need_writable(s, "idx_collection_ensure")) != DOC_OK) return rc;
    st = store_q(s, Q_COLL_INSERT,
                 "INSERT INTO collections(name, readers, created_at) VALUES (?1, ?2, ?3)");
    if (!st) return s->err.rc;
    bind_text(st, 1, name);
    bind_text(st, 2, readers);
    sqlite3_bind_int64(st, 3, (int64_t)time(NULL));
    if ((rc = step_done(s, st)) != DOC_OK) return rc;
    *id = sqlite3_last_insert_rowid(s->db);
    /* in memory: no index file yet; an empty index is made on first use */
    if (s->n_colls == s->cap_colls) {
        int nc = s->cap_colls ? s->cap_colls * 2 : 8;
        store_coll *t = realloc(s->colls, (size_t)nc * sizeof *t);
        if (!t) return store_fail(s, DOC_ENOMEM, "out of memory adding collection '%s'", name);
        s->colls = t;
        s->cap_colls = nc;
    }
    store_coll *c = &s->colls[s->n_colls++];
    memset(c, 0, sizeof *c);
    c->id = *id;
    snprintf(c->name, sizeof c->name, "%s", name);
    c->touched = s->in_tx; /* its (empty) index file is written at commit */
    return DOC_OK;
}

int idx_collection_set_readers(idx_store *s, const char *name, const char *readers)
{
    int rc;
    if ((rc = need_writable(s, "idx_collection_set_readers")) != DOC_OK) return rc;
    if ((rc = name_check(s, name)) != DOC_OK) return rc;
    if (!readers) readers = "*";
    if ((rc = readers_check(s, readers)) != DOC_OK) return rc;
    sqlite3_stmt *st =
        store_q(s, Q_COLL_READERS, "UPDATE collections SET readers = ?2 WHERE name = ?1");
    if (!st) return s->err.rc;
    bind_text(st, 1, name);
    bind_text(st, 2, readers);
    if ((rc = step_done(s, st)) != DOC_OK) return rc;
    if (sqlite3_changes(s->db) == 0)
        return store_fail(s, DOC_ENOTFOUND, "collection '%s' does not exist", name);
    return DOC_OK;
}

#define SQL_COLL_SELECT                                                                            \
    "SELECT c.id, c.name, c.readers,"                                                              \
    " (SELECT count(*) FROM documents WHERE collection_id = c.id),"                                \
    " (SELECT count(*) FROM chunks WHERE doc_id IN"                                                \
    "   (SELECT id FROM documents WHERE collection_id = c.id))"                                    \
    " FROM collections c "

static void coll_fill(sqlite3_stmt *st, idx_collection *c)
{
    memset(c, 0, sizeof *c);
    c->id = sqlite3_column_int64(st, 0);
    col_copy(st, 1, c->name, sizeof c->name);
    col_copy(st, 2, c->readers, sizeof c->readers);
    c->n_docs = sqlite3_column_int64(st, 3);
    c->n_chunks = sqlite3_column_int64(st, 4);
}

int idx_collection_list(idx_store *s, idx_collection **out, int *n)
{
    *out = NULL;
    *n = 0;
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(s->db, SQL_COLL_SELECT "ORDER BY c.name", -1, &st, NULL) != SQLITE_OK)
        return store_sqlerr(s, s->db_path);
    idx_collection *v = NULL;
    int m = 0, cap = 0, r, rc = DOC_OK;
    while ((r = sqlite3_step(st)) == SQLITE_ROW) {
        if (m == cap) {
            cap = cap ? cap * 2 : 8;
            idx_collection *t = realloc(v, (size_t)cap * sizeof *t);
            if (!t) {
                rc = store_fail(s, DOC_ENOMEM, "out of memory listing collections");
                goto done;
            }
            v = t;
        }
        coll_fill(st, &v[m++]);
    }
    if (r != SQLITE_DONE) rc = store_sqlerr(s, s->db_path);
done:
    sqlite3_finalize(st);
    if (rc != DOC_OK) {
        free(v);
        return rc;
    }
    *out = v;
    *n = m;
    return DOC_OK;
}

int idx_collection_find(idx_store *s, const char *name, idx_collection *out)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(s->db, SQL_COLL_SELECT "WHERE c.name = ?1", -1, &st, NULL) != SQLITE_OK)
        return store_sqlerr(s, s->db_path);
    bind_text(st, 1, name);
    int r = sqlite3_step(st), rc = DOC_OK;
    if (r == SQLITE_ROW)
        coll_fill(st, out);
    else if (r == SQLITE_DONE)
        rc = store_fail(s, DOC_ENOTFOUND, "collection '%s' does not exist", name ? name : "");
    else
        rc = store_sqlerr(s, s->db_path);
    sqlite3_finalize(st);
    return rc;
}

/* ---- documents --------------------------------------------------------------- */

void idx_doc_clear(idx_doc *d)
{
    if (!d) return;
    free(d->uri);
    free(d->title);
    free(d->mime);
    d->uri = d->title = d->mime = NULL;
}

static int doc_fill(idx_store *s, sqlite3_stmt *st, idx_doc *d)
{
    memset(d, 0, sizeof *d);
    d->id = sqlite3_column_int64(st, 0);
    d->collection_id = sqlite3_column_int64(st, 1);
    col_copy(st, 2, d->collection, sizeof d->collection);
    d->uri = col_dup(st, 3);
    d->title = col_dup(st, 4);
    d->mime = col_dup(st, 5);
    d->hash = (uint64_t)sqlite3_column_int64(st, 6);
    d->mtime = sqlite3_column_int64(st, 7);
    d->size = sqlite3_column_int64(st, 8);
    d->ingested_at = sqlite3_column_int64(st, 9);
    d->n_chunks = sqlite3_column_int64(st, 10);
    if (!d->uri || !d->title || !d->mime) {
        idx_doc_clear(d);
        return store_fail(s, DOC_ENOMEM, "out of memory reading a document");
    }
    return DOC_OK;
}

/* doc_one: run a statement expected to yield at most one document row. */
static int doc_one(idx_store *s, sqlite3_stmt *st, idx_doc *out, const char *what)
{
    int r = sqlite3_step(st), rc;
    if (r == SQLITE_ROW)
        rc = doc_fill(s, st, out);
    else if (r == SQLITE_DONE)
        rc = store_fail(s, DOC_ENOTFOUND, "document %s not found", what);
    else
        rc = store_sqlerr(s, s->db_path);
    sqlite3_reset(st);
    return rc;
}

int idx_doc_find(idx_store *s, int64_t collection_id, const char *uri, idx_doc *out)
{
    memset(out, 0, sizeof *out);
    sqlite3_stmt *st =
        store_q(s, Q_DOC_BY_URI, SQL_DOC_SELECT "WHERE d.collection_id = ?1 AND d.uri = ?2");
    if (!st) return s->err.rc;
    sqlite3_bind_int64(st, 1, collection_id);
    bind_text(st, 2, uri);
    return doc_one(s, st, out, uri ? uri : "");
}

int idx_doc_get(idx_store *s, int64_t doc_id, idx_doc *out)
{
    memset(out, 0, sizeof *out);
    sqlite3_stmt *st = store_q(s, Q_DOC_BY_ID, SQL_DOC_SELECT "WHERE d.id = ?1");
    if (!st) return s->err.rc;
    sqlite3_bind_int64(st, 1, doc_id);
    char what[32];
    snprintf(what, sizeof what, "%lld", (long long)doc_id);
    return doc_one(s, st, out, what);
}

int idx_doc_list(idx_store *s, int64_t collection_id, idx_doc **out, int *n)
{
    *out = NULL;
    *n = 0;
    sqlite3_stmt *st = NULL;
    const char *sql = collection_id ? SQL_DOC_SELECT "WHERE d.collection_id = ?1 ORDER BY d.uri"
                                    : SQL_DOC_SELECT "ORDER BY d.uri, d.collection_id";
    if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) != SQLITE_OK)
        return store_sqlerr(s, s->db_path);
    if (collection_id) sqlite3_bind_int64(st, 1, collection_id);
    idx_doc *v = NULL;
    int m = 0, cap = 0, r, rc = DOC_OK;
    while ((r = sqlite3_step(st)) == SQLITE_ROW) {
        if (m == cap) {
            cap = cap ? cap * 2 : 16;
            idx_doc *t = realloc(v, (size_t)cap * sizeof *t);
            if (!t) {
                rc = store_fail(s, DOC_ENOMEM, "out of memory listing documents");
                goto done;
            }
            v = t;
        }
        if ((rc = doc_fill(s, st, &v[m])) != DOC_OK) goto done;
        m++;
    }
    if (r != SQLITE_DONE) rc = store_sqlerr(s, s->db_path);
done:
    sqlite3_finalize(st);
    if (rc != DOC_OK) {
        idx_doc_list_free(&v, m);
        return rc;
    }
    *out = v;
    *n = m;
    return DOC_OK;
}

void idx_doc_list_free(idx_doc **docs, int n)
{
    if (!docs || !*docs) return;
    for (int i = 0; i < n; i++) idx_doc_clear(&(*docs)[i]);
    free(*docs);
    *docs = NULL;
}

/* ---- transactions -------------------------------------------------------------- */

int idx_begin(idx_store *s)
{
    int rc;
    if ((rc = need_writable(s, "idx_begin")) != DOC_OK) return rc;
    if (s->in_tx) return store_fail(s, DOC_ESTATE, "idx_begin: a transaction is already open");
    if ((rc = store_exec(s, "BEGIN IMMEDIATE")) != DOC_OK) return rc;
    /* another connection may have committed since our last look */
    if ((rc = colls_sync(s)) != DOC_OK) {
        sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
        return rc;
    }
    s->in_tx = 1;
    s->reindex_finished = 0;
    for (int i = 0; i < s->n_colls; i++) {
        s->colls[i].touched = s->colls[i].rebuild = 0;
        s->colls[i].new_gen = 0;
    }
    return DOC_OK;
}

void idx_rollback(idx_store *s)
{
    if (!s || !s->in_tx) return;
    sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
    /* touched indexes hold uncommitted changes: drop them; the next use loads
     * the last committed file */
    for (int i = 0; i < s->n_colls; i++) {
        store_coll *c = &s->colls[i];
        if (c->touched || c->rebuild) vx_free(&c->vx);
        vx_free(&c->new_vx);
        c->touched = c->rebuild = 0;
        c->new_gen = 0;
    }
    s->in_tx = 0;
    s->reindex_finished = 0;
    if (colls_sync(s) != DOC_OK) { /* keep the error text; drop everything loaded */
        for (int i = 0; i < s->n_colls; i++) coll_drop(&s->colls[i]);
        s->n_colls = 0;
    }
}

/* commit_coll: write collection c's index as its next generation and record
 * it (inside the transaction). */
static int commit_coll(idx_store *s, store_coll *c)
{
    int64_t n = 0;
    int rc;
    vindex *v = NULL;
    if ((rc = coll_nchunks(s, c, &n)) != DOC_OK) return rc;
    if (!c->rebuild && !c->vx && (rc = store_coll_vindex(s, c, &v)) != DOC_OK) return rc;
    int grown = n > s->hnsw_threshold && c->vx && vx_can_remove(c->vx); /* Flat -> HNSW */
    int astray = !c->rebuild && c->vx && vx_count(c->vx) != n;          /* a bug if ever */
    if (astray)
        log_warn("collection '%s': index holds %lld vectors for %lld chunks; rebuilt", c->name,
                 (long long)vx_count(c->vx), (long long)n);
    if (c->rebuild || !c->vx || grown || astray)
        if ((rc = build_index(s, c, n, &c->new_vx)) != DOC_OK) return rc;
    v = c->new_vx ? c->new_vx : c->vx;
    char path[2048];
    doc_err e = {0};
    uint64_t h = 0;
    c->new_gen = c->gen + 1;
    gen_path(s, c, c->new_gen, path, sizeof path);
    if ((rc = vx_save(v, path, &h, &e)) != DOC_OK) return vx_fail(s, &e);
    c->new_hash = h;
    sqlite3_stmt *st = store_q(s, Q_VEC_PUT,
                               "INSERT OR REPLACE INTO vectors(collection_id, generation, hash)"
                               " VALUES (?1, ?2, ?3)");
    if (!st) return s->err.rc;
    sqlite3_bind_int64(st, 1, c->id);
    sqlite3_bind_int64(st, 2, c->new_gen);
    sqlite3_bind_int64(st, 3, (int64_t)h);
    return step_done(s, st);
}

int idx_commit(idx_store *s)
{
    if (!s->in_tx) return store_fail(s, DOC_ESTATE, "idx_commit: no transaction is open");
    int rc = DOC_OK;
    int save = !s->embedder_stale || s->reindex_finished;
    if (s->reindex_finished) /* every index holds the old embedder's vectors */
        for (int i = 0; i < s->n_colls; i++) s->colls[i].touched = s->colls[i].rebuild = 1;
    for (int i = 0; save && i < s->n_colls; i++)
        if (s->colls[i].touched && (rc = commit_coll(s, &s->colls[i])) != DOC_OK) goto fail;
    if ((rc = store_exec(s, "COMMIT")) != DOC_OK) goto fail;

    s->in_tx = 0;
    if (s->reindex_finished) s->embedder_stale = 0;
    s->reindex_finished = 0;
    for (int i = 0; i < s->n_colls; i++) {
        store_coll *c = &s->colls[i];
        if (c->new_gen) {
            char path[2048];
            gen_path(s, c, c->gen, path, sizeof path);
            if (c->gen > 0 && unlink(path) != 0 && errno != ENOENT)
                log_warn("%s: cannot remove: %s", path, strerror(errno));
            c->gen = c->new_gen;
            c->hash = c->new_hash;
            if (c->new_vx) {
                vx_free(&c->vx);
                c->vx = c->new_vx;
                c->new_vx = NULL;
            }
            sweep(s, c, c->gen, 0);
        }
        c->touched = c->rebuild = 0;
        c->new_gen = 0;
    }
    return DOC_OK;
fail:;
    doc_err keep = s->err;
    for (int i = 0; i < s->n_colls; i++) { /* files of generations never recorded */
        store_coll *c = &s->colls[i];
        if (!c->new_gen) continue;
        char path[2048];
        gen_path(s, c, c->new_gen, path, sizeof path);
        unlink(path);
    }
    idx_rollback(s);
    s->err = keep;
    return rc;
}

/* ---- writing documents ----------------------------------------------------------- */

static int need_tx(idx_store *s, const char *what)
{
    if (!s->in_tx)
        return store_fail(s, DOC_ESTATE, "%s outside a transaction (call idx_begin first)", what);
    return DOC_OK;
}

/* tx_fail: a write failed after the transaction was changed: roll it all
 * back (SQLite and the touched indexes) so nothing half-done can commit. */
static int tx_fail(idx_store *s, int rc)
{
    doc_err keep = s->err;
    idx_rollback(s);
    s->err = keep;
    size_t n = strlen(s->err.msg);
    snprintf(s->err.msg + n, sizeof s->err.msg - n, " (transaction rolled back)");
    return rc;
}

/* delete_chunks: remove a document's chunks and their FTS rows (an external
 * content table is told the old values); their ids are returned for the
 * vector index, *ids malloc'd. */
static int delete_chunks(idx_store *s, int64_t doc_id, int64_t **ids, int64_t *n)
{
    *ids = NULL;
    *n = 0;
    sqlite3_stmt *st =
        store_q(s, Q_CHUNK_IDS_OF_DOC, "SELECT id, text, heading FROM chunks WHERE doc_id = ?1");
    sqlite3_stmt *del = store_q(s, Q_FTS_DELETE,
                                "INSERT INTO chunks_fts(chunks_fts, rowid, text, heading)"
                                " VALUES ('delete', ?1, ?2, ?3)");
    if (!st || !del) return s->err.rc;
    sqlite3_bind_int64(st, 1, doc_id);
    int64_t *v = NULL, m = 0, cap = 0;
    int r, rc = DOC_OK;
    while ((r = sqlite3_step(st)) == SQLITE_ROW) {
        if (m == cap) {
            cap = cap ? cap * 2 : 64;
            int64_t *t = realloc(v, (size_t)cap * sizeof *t);
            if (!t) {
                rc = store_fail(s, DOC_ENOMEM, "out of memory listing chunks");
                goto done;
            }
            v = t;
        }
        v[m] = sqlite3_column_int64(st, 0);
        sqlite3_reset(del);
        sqlite3_bind_int64(del, 1, v[m]);
        sqlite3_bind_value(del, 2, sqlite3_column_value(st, 1));
        sqlite3_bind_value(del, 3, sqlite3_column_value(st, 2));
        if ((rc = step_done(s, del)) != DOC_OK) goto done;
        m++;
    }
    if (r != SQLITE_DONE) rc = store_sqlerr(s, s->db_path);
done:
    sqlite3_reset(st);
    if (rc == DOC_OK && m > 0) {
        sqlite3_stmt *dc = store_q(s, Q_CHUNK_DELETE_DOC, "DELETE FROM chunks WHERE doc_id = ?1");
        if (!dc)
            rc = s->err.rc;
        else {
            sqlite3_bind_int64(dc, 1, doc_id);
            rc = step_done(s, dc);
        }
    }
    if (rc != DOC_OK) {
        free(v);
        return rc;
    }
    *ids = v;
    *n = m;
    return DOC_OK;
}

/* vx_apply: mirror a document's change in the collection's index: remove
 * old ids, add the new vectors.  An index that cannot remove, or any failure,
 * marks the collection for a rebuild from SQLite at commit instead. */
static void vx_apply(idx_store *s, store_coll *c, const int64_t *old, int64_t n_old, const float *x,
                     const int64_t *ids, int64_t n_new)
{
    doc_err e = {0};
    c->touched = 1;
    if (s->embedder_stale || c->rebuild || !c->vx) {
        c->rebuild = 1;
        return;
    }
    if (n_old > 0 && (!vx_can_remove(c->vx) || vx_remove(c->vx, old, n_old, NULL, &e) != DOC_OK)) {
        c->rebuild = 1;
        return;
    }
    if (n_new > 0 && vx_add(c->vx, n_new, x, ids, &e) != DOC_OK) {
        log_warn("collection '%s': %s; index rebuilt at commit", c->name, e.msg);
        c->rebuild = 1;
    }
}

static int chunk_check(idx_store *s, const idx_doc *d, const idx_chunk *k, int i)
{
    if (k->id < 0)
        return store_fail(s, DOC_EINVAL, "%s: chunk %d has a negative id %lld", d->uri, i,
                          (long long)k->id);
    if (!k->text || !k->vec)
        return store_fail(s, DOC_EINVAL, "%s: chunk %d has no text or no embedding", d->uri, i);
    if (strlen(k->text) > TEXT_MAX)
        return store_fail(s, DOC_ELIMIT, "%s: chunk %d: text over %d bytes", d->uri, i, TEXT_MAX);
    if (k->heading && strlen(k->heading) > TITLE_MAX)
        return store_fail(s, DOC_ELIMIT, "%s: chunk %d: heading over %d bytes", d->uri, i,
                          TITLE_MAX);
    for (int j = 0; j < s->dim; j++)
        if (!isfinite(k->vec[j]))
            return store_fail(s, DOC_EINVAL, "%s: chunk %d: embedding component %d is not finite",
                              d->uri, i, j);
    return DOC_OK;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* ids_check: chunk ids appear once in the call and belong to no other
 * document (checked before anything is written). */
static int ids_check(idx_store *s, const idx_doc *d, int64_t doc_id, const int64_t *ids, int n)
{
    int64_t *sorted = malloc((n ? (size_t)n : 1) * sizeof *sorted);
    if (!sorted) return store_fail(s, DOC_ENOMEM, "%s: out of memory", d->uri);
    memcpy(sorted, ids, (size_t)n * sizeof *sorted);
    qsort(sorted, (size_t)n, sizeof *sorted, cmp_i64);
    int rc = DOC_OK;
    for (int i = 1; i < n && rc == DOC_OK; i++)
        if (sorted[i] == sorted[i - 1])
            rc = store_fail(s, DOC_EINVAL, "%s: chunk id %lld appears twice", d->uri,
                            (long long)sorted[i]);
    free(sorted);
    sqlite3_stmt *st = store_q(s, Q_CHUNK_OWNER, "SELECT doc_id FROM chunks WHERE id = ?1");
    if (!st) return s->err.rc;
    for (int i = 0; i < n && rc == DOC_OK; i++) {
        int64_t owner = 0;
        sqlite3_reset(st);
        sqlite3_bind_int64(st, 1, ids[i]);
        rc = query_i64(s, st, &owner);
        if (rc == DOC_ENOTFOUND)
            rc = DOC_OK;
        else if (rc == DOC_OK && owner != doc_id)
            rc = store_fail(s, DOC_EINVAL, "%s: chunk id %lld is already used by document %lld",
                            d->uri, (long long)ids[i], (long long)owner);
    }
    return rc;
}

/* insert_chunk: one row of chunks and its FTS row (h: its f16 embedding). */
static int insert_chunk(idx_store *s, sqlite3_stmt *st, sqlite3_stmt *fts, const idx_doc *d,
                        const idx_chunk *k, const uint16_t *h)
{
    sqlite3_reset(st);
    sqlite3_bind_int64(st, 1, k->id);
    sqlite3_bind_int64(st, 2, d->id);
    sqlite3_bind_int(st, 3, k->ordinal);
    bind_text(st, 4, k->text);
    bind_text(st, 5, k->heading);
    sqlite3_bind_int(st, 6, k->page);
    sqlite3_bind_int(st, 7, k->line_start);
    sqlite3_bind_int(st, 8, k->line_end);
    sqlite3_bind_int64(st, 9, k->char_start);
    sqlite3_bind_int64(st, 10, k->char_end);
    sqlite3_bind_int(st, 11, k->n_tokens);
    sqlite3_bind_blob(st, 12, h, 2 * s->dim, SQLITE_STATIC);
    if (sqlite3_step(st) != SQLITE_DONE) return store_sqlerr(s, d->uri);
    sqlite3_reset(st);
    sqlite3_reset(fts);
    sqlite3_bind_int64(fts, 1, k->id);
    bind_text(fts, 2, k->text);
    bind_text(fts, 3, k->heading);
    if (sqlite3_step(fts) != SQLITE_DONE) return store_sqlerr(s, d->uri);
    sqlite3_reset(fts);
    return DOC_OK;
}

/* idx_doc_put: see index.h.  Everything is checked before the first write;
 * a failure after it (I/O, memory) rolls the whole transaction back. */
int idx_doc_put(idx_store *s, idx_doc *d, const idx_chunk *chunks, int n)
{
    int rc;
    if ((rc = need_tx(s, "idx_doc_put")) != DOC_OK) return rc;
    if (!d || !d->uri || !*d->uri)
        return store_fail(s, DOC_EINVAL, "idx_doc_put: document without uri");
    if (strlen(d->uri) > URI_MAX)
        return store_fail(s, DOC_ELIMIT, "document uri over %d bytes", URI_MAX);
    if ((d->title && strlen(d->title) > TITLE_MAX) || (d->mime && strlen(d->mime) > TITLE_MAX))
        return store_fail(s, DOC_ELIMIT, "%s: title or mime over %d bytes", d->uri, TITLE_MAX);
    if (n < 0 || n > CHUNKS_MAX || (n > 0 && !chunks))
        return store_fail(s, n > CHUNKS_MAX ? DOC_ELIMIT : DOC_EINVAL, "%s: %d chunks (limit %d)",
                          d->uri, n, CHUNKS_MAX);
    store_coll *c = store_coll_get(s, d->collection_id);
    if (!c)
        return store_fail(s, DOC_ENOTFOUND, "%s: collection id %lld does not exist", d->uri,
                          (long long)d->collection_id);
    for (int i = 0; i < n; i++)
        if ((rc = chunk_check(s, d, &chunks[i], i)) != DOC_OK) return rc;
    vindex *v = NULL;
    if ((rc = store_coll_vindex(s, c, &v)) != DOC_OK) return rc;

    size_t nd = (size_t)n * (size_t)s->dim;
    uint16_t *h = malloc((nd ? nd : 1) * sizeof *h);
    float *x = malloc((nd ? nd : 1) * sizeof *x);
    int64_t *ids = malloc((n ? (size_t)n : 1) * sizeof *ids);
    int64_t *old = NULL, n_old = 0, existing = 0;
    sqlite3_stmt *st, *fts;
    if (!h || !x || !ids) {
        rc = store_fail(s, DOC_ENOMEM, "%s: out of memory for %d embeddings", d->uri, n);
        goto done;
    }
    for (int i = 0; i < n; i++) ids[i] = chunks[i].id;
    st =
        store_q(s, Q_DOC_FIND_ID, "SELECT id FROM documents WHERE collection_id = ?1 AND uri = ?2");
    if (!st) {
        rc = s->err.rc;
        goto done;
    }
    sqlite3_bind_int64(st, 1, d->collection_id);
    bind_text(st, 2, d->uri);
    rc = query_i64(s, st, &existing);
    if (rc == DOC_ENOTFOUND)
        existing = 0;
    else if (rc != DOC_OK)
        goto done;
    if ((rc = ids_check(s, d, existing, ids, n)) != DOC_OK) goto done;
    /* FAISS gets the f16 values widened back: the same as a rebuild sees */
    for (size_t j = 0; j < nd; j++) {
        h[j] = f32_to_f16(chunks[j / (size_t)s->dim].vec[j % (size_t)s->dim]);
        x[j] = f16_to_f32(h[j]);
    }
    if (!d->ingested_at) d->ingested_at = (int64_t)time(NULL);

    /* the writes */
    if (existing) {
        d->id = existing;
        if ((rc = delete_chunks(s, existing, &old, &n_old)) != DOC_OK) goto failed;
        st = store_q(s, Q_DOC_UPDATE,
                     "UPDATE documents SET title = ?2, mime = ?3, hash = ?4, mtime = ?5, size = ?6,"
                     " status = ?7, ingested_at = ?8 WHERE id = ?1");
        if (!st) goto failed;
        sqlite3_bind_int64(st, 1, existing);
    } else {
        st = store_q(s, Q_DOC_INSERT,
                     "INSERT INTO documents(collection_id, title, mime, hash, mtime, size, status,"
                     " ingested_at, uri) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)");
        if (!st) goto failed;
        sqlite3_bind_int64(st, 1, d->collection_id);
        bind_text(st, 9, d->uri);
    }
    bind_text(st, 2, d->title);
    bind_text(st, 3, d->mime);
    sqlite3_bind_int64(st, 4, (int64_t)d->hash);
    sqlite3_bind_int64(st, 5, d->mtime);
    sqlite3_bind_int64(st, 6, d->size);
    sqlite3_bind_int(st, 7, n > 0 ? IDX_DOC_OK : IDX_DOC_EMPTY);
    sqlite3_bind_int64(st, 8, d->ingested_at);
    if ((rc = step_done(s, st)) != DOC_OK) goto failed;
    if (!existing) d->id = sqlite3_last_insert_rowid(s->db);

    st =
        store_q(s, Q_CHUNK_INSERT,
                "INSERT INTO chunks(id, doc_id, ordinal, text, heading, page, line_start, line_end,"
                " char_start, char_end, n_tokens, embedding)"
                " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)");
    fts = store_q(s, Q_FTS_INSERT,
                  "INSERT INTO chunks_fts(rowid, text, heading) VALUES (?1, ?2, ?3)");
    if (!st || !fts) goto failed;
    for (int i = 0; i < n; i++)
        if ((rc = insert_chunk(s, st, fts, d, &chunks[i], h + (size_t)i * (size_t)s->dim)) !=
            DOC_OK)
            goto failed;
    vx_apply(s, c, old, n_old, x, ids, n);
    goto done;
failed:
    if (rc == DOC_OK) rc = s->err.rc ? s->err.rc : DOC_EIO;
    rc = tx_fail(s, rc);
done:
    free(h);
    free(x);
    free(ids);
    free(old);
    return rc;
}

int idx_doc_touch(idx_store *s, int64_t doc_id, int64_t mtime)
{
    int rc;
    if ((rc = need_writable(s, "idx_doc_touch")) != DOC_OK) return rc;
    sqlite3_stmt *st = store_q(s, Q_DOC_TOUCH, "UPDATE documents SET mtime = ?2 WHERE id = ?1");
    if (!st) return s->err.rc;
    sqlite3_bind_int64(st, 1, doc_id);
    sqlite3_bind_int64(st, 2, mtime);
    if ((rc = step_done(s, st)) != DOC_OK) return rc;
    if (sqlite3_changes(s->db) == 0)
        return store_fail(s, DOC_ENOTFOUND, "document %lld not found", (long long)doc_id);
    return DOC_OK;
}

int idx_doc_remove(idx_store *s, int64_t doc_id)
{
    int rc;
    if ((rc = need_tx(s, "idx_doc_remove")) != DOC_OK) return rc;
    sqlite3_stmt *st = store_q(s, Q_DOC_COLL, "SELECT collection_id FROM documents WHERE id = ?1");
    if (!st) return s->err.rc;
    sqlite3_bind_int64(st, 1, doc_id);
    int64_t coll_id = 0, *old = NULL, n_old = 0;
    if ((rc = query_i64(s, st, &coll_id)) != DOC_OK)
        return rc == DOC_ENOTFOUND ? store_fail(s, rc, "document %lld not found", (long long)doc_id)
                                   : rc;
    store_coll *c = store_coll_get(s, coll_id);
    if (!c)
        return store_fail(s, DOC_ESTATE, "document %lld: collection %lld unknown",
                          (long long)doc_id, (long long)coll_id);
    vindex *v = NULL;
    if ((rc = store_coll_vindex(s, c, &v)) != DOC_OK) return rc;
    rc = delete_chunks(s, doc_id, &old, &n_old);
    if (rc == DOC_OK) {
        st = store_q(s, Q_DOC_DELETE, "DELETE FROM documents WHERE id = ?1");
        if (!st)
            rc = s->err.rc;
        else {
            sqlite3_bind_int64(st, 1, doc_id);
            rc = step_done(s, st);
        }
    }
    if (rc == DOC_OK)
        vx_apply(s, c, old, n_old, NULL, NULL, 0);
    else
        rc = tx_fail(s, rc);
    free(old);
    return rc;
}

/* ---- chunks ------------------------------------------------------------------------ */

int idx_chunk_vec_lookup(idx_store *s, int64_t id, const char *text, float *vec)
{
    if (!text || !vec || s->embedder_stale) return 0;
    sqlite3_stmt *st = store_q(s, Q_CHUNK_VEC, "SELECT text, embedding FROM chunks WHERE id = ?1");
    if (!st) return 0;
    sqlite3_bind_int64(st, 1, id);
    int found = 0;
    if (sqlite3_step(st) == SQLITE_ROW) {
        const char *t = (const char *)sqlite3_column_text(st, 0);
        const uint16_t *h = sqlite3_column_blob(st, 1);
        if (t && h && strcmp(t, text) == 0 && sqlite3_column_bytes(st, 1) == 2 * s->dim) {
            for (int j = 0; j < s->dim; j++) vec[j] = f16_to_f32(h[j]);
            found = 1;
        }
    }
    sqlite3_reset(st);
    return found;
}

int idx_passage_vecs(idx_store *s, int64_t first, int64_t last, float *vecs, int max)
{
    if (!vecs || max <= 0) return 0;
    sqlite3_stmt *st = store_q(s, Q_PASSAGE_VECS,
                               "SELECT c.embedding FROM chunks a, chunks b, chunks c"
                               " WHERE a.id = ?1 AND b.id = ?2 AND b.doc_id = a.doc_id"
                               " AND c.doc_id = a.doc_id AND c.ordinal BETWEEN a.ordinal AND b.ordinal"
                               " ORDER BY c.ordinal LIMIT ?3");
    if (!st) return s->err.rc ? s->err.rc : DOC_EIO;
    sqlite3_bind_int64(st, 1, first);
    sqlite3_bind_int64(st, 2, last);
    sqlite3_bind_int(st, 3, max);
    int n = 0, rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const uint16_t *h = sqlite3_column_blob(st, 0);
        if (!h || sqlite3_column_bytes(st, 0) != 2 * s->dim) continue;
        for (int j = 0; j < s->dim; j++) vecs[(size_t)n * s->dim + j] = f16_to_f32(h[j]);
        n++;
    }
    if (rc != SQLITE_DONE) n = store_sqlerr(s, "passage vectors");
    sqlite3_reset(st);
    return n;
}

typedef struct each_row {
    int64_t id, doc_id;
    char *title, *heading, *text;
} each_row;

/* idx_chunk_each: rows are read EACH_BATCH at a time and the statement reset
 * before the callbacks run, so fn may write (idx_reindex_set) meanwhile. */
int idx_chunk_each(idx_store *s, idx_chunk_fn fn, void *ctx)
{
    each_row rows[EACH_BATCH];
    int64_t after = INT64_MIN;
    int rc = DOC_OK;
    for (;;) {
        sqlite3_stmt *st = store_q(s, Q_CHUNK_EACH,
                                   "SELECT c.id, c.doc_id, d.title, c.heading, c.text FROM chunks c"
                                   " JOIN documents d ON d.id = c.doc_id WHERE c.id > ?1"
                                   " ORDER BY c.id LIMIT ?2");
        if (!st) return s->err.rc;
        sqlite3_bind_int64(st, 1, after);
        sqlite3_bind_int(st, 2, EACH_BATCH);
        int m = 0, r;
        while ((r = sqlite3_step(st)) == SQLITE_ROW) {
            each_row *e = &rows[m];
            e->id = sqlite3_column_int64(st, 0);
            e->doc_id = sqlite3_column_int64(st, 1);
            e->title = col_dup(st, 2);
            e->heading = col_dup(st, 3);
            e->text = col_dup(st, 4);
            m++;
            if (!e->title || !e->heading || !e->text) {
                rc = store_fail(s, DOC_ENOMEM, "out of memory reading chunks");
                break;
            }
        }
        if (rc == DOC_OK && r != SQLITE_DONE) rc = store_sqlerr(s, s->db_path);
        sqlite3_reset(st);
        for (int i = 0; i < m; i++) {
            if (rc == DOC_OK) {
                rc = fn(ctx, rows[i].id, rows[i].doc_id, rows[i].title, rows[i].heading,
                        rows[i].text);
                after = rows[i].id;
            }
            free(rows[i].title);
            free(rows[i].heading);
            free(rows[i].text);
        }
        if (rc != DOC_OK || m < EACH_BATCH) return rc;
    }
}

int idx_reindex_set(idx_store *s, int64_t chunk_id, const float *vec)
{
    int rc;
    if ((rc = need_tx(s, "idx_reindex_set")) != DOC_OK) return rc;
    uint16_t *h = malloc((size_t)s->dim * sizeof *h);
    if (!h) return store_fail(s, DOC_ENOMEM, "out of memory");
    for (int j = 0; j < s->dim; j++) {
        if (!isfinite(vec[j])) {
            free(h);
            return store_fail(s, DOC_EINVAL, "chunk %lld: embedding component %d is not finite",
                              (long long)chunk_id, j);
        }
        h[j] = f32_to_f16(vec[j]);
    }
    int64_t coll_id = 0;
    sqlite3_stmt *st = store_q(s, Q_CHUNK_SET_VEC,
                               "UPDATE chunks SET embedding = ?2 WHERE id = ?1 RETURNING"
                               " (SELECT collection_id FROM documents WHERE id = chunks.doc_id)");
    if (!st) {
        free(h);
        return s->err.rc;
    }
    sqlite3_bind_int64(st, 1, chunk_id);
    sqlite3_bind_blob(st, 2, h, 2 * s->dim, SQLITE_STATIC);
    rc = query_i64(s, st, &coll_id);
    free(h);
    if (rc == DOC_ENOTFOUND) return store_fail(s, rc, "chunk %lld not found", (long long)chunk_id);
    if (rc != DOC_OK) return rc;
    store_coll *c = store_coll_get(s, coll_id);
    if (c) c->touched = c->rebuild = 1;
    return DOC_OK;
}

int idx_reindex_finish(idx_store *s)
{
    int rc;
    if ((rc = need_tx(s, "idx_reindex_finish")) != DOC_OK) return rc;
    if ((rc = meta_put_embedder(s)) != DOC_OK) return rc;
    s->reindex_finished = 1;
    return DOC_OK;
}

/* ---- stats and checks ------------------------------------------------------------- */

int idx_stats_get(idx_store *s, idx_stats *st)
{
    memset(st, 0, sizeof *st);
    sqlite3_stmt *q = NULL;
    if (sqlite3_prepare_v2(
            s->db,
            "SELECT (SELECT count(*) FROM collections), (SELECT count(*) FROM documents),"
            " (SELECT count(*) FROM chunks)",
            -1, &q, NULL) != SQLITE_OK)
        return store_sqlerr(s, s->db_path);
    int rc = DOC_OK;
    if (sqlite3_step(q) == SQLITE_ROW) {
        st->n_collections = sqlite3_column_int64(q, 0);
        st->n_docs = sqlite3_column_int64(q, 1);
        st->n_chunks = sqlite3_column_int64(q, 2);
    } else {
        rc = store_sqlerr(s, s->db_path);
    }
    sqlite3_finalize(q);
    if (rc != DOC_OK) return rc;
    char v[32] = "", name[128] = "", sha[72] = "", dim[32] = "";
    if ((rc = meta_get(s, "schema_version", v, sizeof v)) != DOC_OK) return rc;
    st->schema_version = atoi(v);
    meta_get(s, "embedder_name", name, sizeof name);
    meta_get(s, "embedder_sha256", sha, sizeof sha);
    meta_get(s, "embedder_dim", dim, sizeof dim);
    snprintf(st->embedder, sizeof st->embedder, "%s %s %s", name, sha, dim);
    return DOC_OK;
}

/* ids_compare: the first difference between a collection's FAISS ids and its
 * chunk ids (both ascending). */
static int ids_compare(idx_store *s, const store_coll *c, const char *where, const int64_t *vid,
                       int64_t nv)
{
    sqlite3_stmt *st = store_q(s, Q_COLL_CHUNK_IDS,
                               "SELECT c.id FROM documents d JOIN chunks c ON c.doc_id = d.id"
                               " WHERE d.collection_id = ?1 ORDER BY c.id");
    if (!st) return s->err.rc;
    sqlite3_bind_int64(st, 1, c->id);
    int64_t i = 0;
    int r, rc = DOC_OK;
    while ((r = sqlite3_step(st)) == SQLITE_ROW) {
        int64_t id = sqlite3_column_int64(st, 0);
        if (i >= nv || vid[i] > id) {
            rc = store_fail(s, DOC_EFORMAT, "collection '%s': chunk %lld missing from %s", c->name,
                            (long long)id, where);
            goto done;
        }
        if (vid[i] < id) {
            rc = store_fail(s, DOC_EFORMAT, "collection '%s': %s holds id %lld, which is no chunk",
                            c->name, where, (long long)vid[i]);
            goto done;
        }
        i++;
    }
    if (r != SQLITE_DONE)
        rc = store_sqlerr(s, s->db_path);
    else if (i < nv)
        rc = store_fail(s, DOC_EFORMAT, "collection '%s': %s holds id %lld, which is no chunk",
                        c->name, where, (long long)vid[i]);
done:
    sqlite3_reset(st);
    return rc;
}

/* check_coll: the in-memory index and the recorded file both hold exactly the
 * collection's chunk ids. */
static int check_coll(idx_store *s, store_coll *c)
{
    vindex *v = NULL, *f = NULL;
    int64_t *ids = NULL, n = 0;
    doc_err e = {0};
    int rc = store_coll_vindex(s, c, &v);
    if (rc != DOC_OK) return rc;
    if ((rc = vx_ids(v, &ids, &n, &e)) != DOC_OK) return vx_fail(s, &e);
    char where[2200];
    snprintf(where, sizeof where, "the in-memory index");
    if ((rc = ids_compare(s, c, where, ids, n)) != DOC_OK) goto done;
    if (c->gen > 0 && !c->touched) {
        gen_path(s, c, c->gen, where, sizeof where);
        free(ids);
        ids = NULL;
        if ((rc = vx_load(where, s->dim, c->hash, &f, &e)) != DOC_OK) {
            rc = vx_fail(s, &e);
            goto done;
        }
        if ((rc = vx_ids(f, &ids, &n, &e)) != DOC_OK) {
            rc = vx_fail(s, &e);
            goto done;
        }
        rc = ids_compare(s, c, where, ids, n);
    }
done:
    free(ids);
    vx_free(&f);
    return rc;
}

int idx_check(idx_store *s)
{
    sqlite3_stmt *st = NULL;
    int rc = DOC_OK, r;
    if (sqlite3_prepare_v2(s->db, "PRAGMA integrity_check", -1, &st, NULL) != SQLITE_OK)
        return store_sqlerr(s, s->db_path);
    r = sqlite3_step(st);
    if (r != SQLITE_ROW)
        rc = store_sqlerr(s, s->db_path);
    else if (strcmp((const char *)sqlite3_column_text(st, 0), "ok") != 0)
        rc = store_fail(s, DOC_EFORMAT, "%s: integrity check: %s", s->db_path,
                        (const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    if (rc != DOC_OK) return rc;

    /* FTS5's check is written as an INSERT; a read-only connection skips it */
    static const char fts_check[] =
        "INSERT INTO chunks_fts(chunks_fts, rank) VALUES ('integrity-check', 1)";
    if (!s->readonly && sqlite3_exec(s->db, fts_check, NULL, NULL, NULL) != SQLITE_OK) {
        rc = store_sqlerr(s, "chunks_fts integrity check");
        if (rc == DOC_EIO) rc = DOC_EFORMAT;
        return rc;
    }
    if (s->embedder_stale) return DOC_OK; /* no vectors to compare until reindexed */
    int began = 0;
    if (!s->in_tx) {
        if ((rc = store_exec(s, "BEGIN")) != DOC_OK) return rc;
        began = 1;
        if ((rc = colls_sync(s)) != DOC_OK) goto done;
    }
    for (int i = 0; i < s->n_colls && rc == DOC_OK; i++) rc = check_coll(s, &s->colls[i]);
done:
    if (began) sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL);
    return rc;
}
