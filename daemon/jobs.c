/*
 * jobs.c - ingest through the daemon:
 *
 *   POST /v1/ingest     {"paths"?: [...], "urls"?: [...], "text"?: {"uri", "content",
 *                       "title"?, "format"?}, "collection"?, "include"?: [globs],
 *                       "exclude"?: [globs], "follow_symlinks"?, "wait"?} (admins)
 *                       -> a job id;
 *                       with "wait": true the reply comes when the job is done
 *   GET  /v1/jobs/ID    the job: state (queued, running, done, failed, cancelled),
 *                       progress (documents, chunks, the current one), the summary
 *                       and the per-document notes (skipped, failed, with why)
 *
 * Each job runs on its own thread with the same pipeline as `docent ingest`
 * (ingest/), one job at a time (srv->ingest_mu; later ones say "queued").  It
 * shares the store and the embedder through sched.c: the store per call, the
 * embedder one batch at a time behind any query waiting for it, so searches
 * and answers go on while a job runs.  The last DD_JOBS jobs are kept;
 * SIGTERM cancels a running job between documents and embedding batches, and
 * what it committed stays.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/internal.h"
#include "ingest/ingest.h"

enum { MAX_SOURCES = 1024, MAX_NOTES = 200, MAX_GLOBS = 64, MAX_GLOB_BYTES = 256 };

static const char *const state_names[] = {"queued", "running", "done", "failed", "cancelled"};

static dd_jobinfo *job_find(dd_server *srv, int64_t id)
{
    for (int i = 0; i < DD_JOBS; i++)
        if (srv->jobs[i].id == id) return &srv->jobs[i];
    return NULL;
}

/* job_json: the job's state under srv->stats */
static json_t *job_json(const dd_jobinfo *jb)
{
    json_t *o = json_pack("{s:I,s:s,s:s,s:{s:I,s:I,s:I,s:I,s:s},s:f}", "id", (json_int_t)jb->id,
                          "state", state_names[jb->state], "collection", jb->collection, "progress",
                          "documents_done", (json_int_t)jb->prog.files_done, "documents_total",
                          (json_int_t)jb->prog.files_total, "chunks", (json_int_t)jb->prog.chunks,
                          "chunks_embedded", (json_int_t)jb->prog.chunks_embedded, "current",
                          jb->current, "elapsed_s", jb->elapsed);
    if (jb->state >= DD_JOB_DONE) {
        const ing_summary *s = &jb->sum;
        json_object_set_new(o, "summary",
                            json_pack("{s:i,s:i,s:i,s:i,s:i,s:i,s:I,s:I,s:f}", "added", s->added,
                                      "updated", s->updated, "unchanged", s->unchanged, "removed",
                                      s->removed, "skipped", s->skipped, "failed", s->failed,
                                      "chunks", (json_int_t)s->chunks, "chunks_embedded",
                                      (json_int_t)s->chunks_embedded, "seconds", s->seconds));
        json_object_set_new(json_object_get(o, "summary"), "stages",
                            json_pack("{s:f,s:f,s:f,s:f,s:f}", "read", s->t_read, "extract",
                                      s->t_extract, "chunk", s->t_chunk, "embed", s->t_embed,
                                      "store", s->t_store));
    }
    if (*jb->error) json_object_set_new(o, "error", json_string(jb->error));
    json_object_set_new(o, "notes", json_incref(jb->notes));
    return o;
}

void dd_ingest_opts(dd_server *srv, const char *collection, ing_opts *io)
{
    *io = (ing_opts){.collection = collection, .chunk_tokens = srv->cfg.chunk_tokens,
                     .overlap_tokens = srv->cfg.overlap_tokens, .embed_batch = srv->cfg.embed_batch,
                     .max_file_bytes = (size_t)srv->cfg.max_file_mb << 20,
                     .fetch_timeout_s = srv->cfg.fetch_timeout_s,
                     .fetch_max_bytes = (size_t)srv->cfg.fetch_max_mb << 20,
                     .fetch_max_redirects = srv->cfg.fetch_max_redirects,
                     .commit_docs = srv->cfg.commit_docs, .commit_seconds = srv->cfg.commit_seconds,
                     .cancel = &srv->stopping};
}

void dd_ingest_lock(dd_server *srv, int what, int on)
{
    int use = what == ING_USE_STORE ? DD_USE_STORE : what == ING_USE_WRITER ? DD_USE_WRITER
                                                                           : DD_USE_EMBEDDER;
    dd_use(srv, use, DD_PRIO_LOW, on);
}

static void job_lock(void *ctx, int what, int on)
{
    dd_jobinfo *jb = ctx;
    dd_ingest_lock(jb->srv, what, on);
}

static void on_progress(void *ctx, const ing_progress *p)
{
    dd_jobinfo *jb = ctx;
    pthread_mutex_lock(&jb->srv->stats);
    jb->prog = *p;
    snprintf(jb->current, sizeof jb->current, "%s", p->current ? p->current : "");
    jb->elapsed = p->elapsed;
    pthread_mutex_unlock(&jb->srv->stats);
}

static void on_note(void *ctx, const char *kind, const char *uri, const char *why)
{
    dd_jobinfo *jb = ctx;
    pthread_mutex_lock(&jb->srv->stats);
    if (json_array_size(jb->notes) < MAX_NOTES)
        json_array_append_new(jb->notes, json_pack("{s:s,s:s,s:s}", "kind", kind, "uri", uri ? uri : "",
                                                   "why", why ? why : ""));
    pthread_mutex_unlock(&jb->srv->stats);
}

typedef struct job_run {
    dd_jobinfo *jb;
    char **sources;
    int n_sources;
    char *include[MAX_GLOBS], *exclude[MAX_GLOBS];
    int n_include, n_exclude, follow_symlinks;
    char *text_uri, *text_title, *text_format, *text;
} job_run;

static void run_free(job_run *r)
{
    for (int i = 0; i < r->n_sources; i++) free(r->sources[i]);
    free(r->sources);
    for (int i = 0; i < r->n_include; i++) free(r->include[i]);
    for (int i = 0; i < r->n_exclude; i++) free(r->exclude[i]);
    free(r->text_uri);
    free(r->text_title);
    free(r->text_format);
    free(r->text);
    free(r);
}

static void *job_thread(void *arg)
{
    job_run *r = arg;
    dd_jobinfo *jb = r->jb;
    dd_server *srv = jb->srv;
    doc_err e = {0};
    ing_summary sum = {0};
    pthread_mutex_lock(&srv->ingest_mu);
    pthread_mutex_lock(&srv->stats);
    jb->state = DD_JOB_RUNNING;
    pthread_mutex_unlock(&srv->stats);
    ing_opts io;
    dd_ingest_opts(srv, jb->collection, &io);
    io.progress = on_progress;
    io.note = on_note;
    io.lock = job_lock;
    io.cb_ctx = jb;
    io.include = (const char *const *)r->include;
    io.n_include = r->n_include;
    io.exclude = (const char *const *)r->exclude;
    io.n_exclude = r->n_exclude;
    io.follow_symlinks = r->follow_symlinks;
    ing_ctx *ic = NULL;
    int rc = ing_new(srv->store, srv->embedder, &io, &ic, &e);
    if (rc == DOC_OK && r->n_sources)
        rc = ing_add(ic, (const char *const *)r->sources, r->n_sources, &sum, &e);
    if (rc == DOC_OK && r->text) {
        ing_summary s2 = {0};
        rc = ing_add_text(ic, r->text_uri, r->text_title, r->text_format, r->text, strlen(r->text),
                          &s2, &e);
        sum.added += s2.added, sum.updated += s2.updated, sum.unchanged += s2.unchanged;
        sum.skipped += s2.skipped, sum.failed += s2.failed, sum.chunks += s2.chunks;
        sum.chunks_embedded += s2.chunks_embedded, sum.seconds += s2.seconds;
    }
    ing_free(&ic);
    pthread_mutex_unlock(&srv->ingest_mu);
    pthread_mutex_lock(&srv->stats);
    jb->sum = sum;
    jb->state = rc == DOC_ECANCELLED ? DD_JOB_CANCELLED : rc ? DD_JOB_FAILED : DD_JOB_DONE;
    if (rc) snprintf(jb->error, sizeof jb->error, "%s", e.msg);
    jb->current[0] = 0;
    pthread_cond_broadcast(&srv->jobs_changed);
    pthread_mutex_unlock(&srv->stats);
    run_free(r);
    dd_producer_done(srv);
    return NULL;
}

/* str_list: a JSON array of non-empty strings appended to r->sources */
static int str_list(json_t *arr, const char *key, job_run *r, dd_resp *rs)
{
    if (!arr) return 0;
    if (!json_is_array(arr)) {
        dd_error(rs, 400, "bad_field", "field %s: an array of strings is expected", key);
        return -1;
    }
    size_t i;
    json_t *v;
    json_array_foreach(arr, i, v) {
        const char *s = json_string_value(v);
        if (!s || !*s || strlen(s) > 4096) {
            dd_error(rs, 400, "bad_field", "field %s[%zu]: a path or URL of 1..4096 bytes", key, i);
            return -1;
        }
        if (r->n_sources == MAX_SOURCES) {
            dd_error(rs, 400, "bad_field", "field %s: at most %d sources per job", key, MAX_SOURCES);
            return -1;
        }
        if (!strcmp(key, "paths") && s[0] != '/') {
            dd_error(rs, 400, "bad_field", "field paths[%zu]: an absolute path is expected (the "
                                           "daemon's working directory is not yours)", i);
            return -1;
        }
        if (!strcmp(key, "urls") && strncmp(s, "http://", 7) && strncmp(s, "https://", 8)) {
            dd_error(rs, 400, "bad_field", "field urls[%zu]: http(s) URLs only", i);
            return -1;
        }
        if (!(r->sources[r->n_sources] = strdup(s))) return -1;
        r->n_sources++;
    }
    return 0;
}

/* glob_list: the optional array of globs under key into out */
static int glob_list(const json_t *arr, const char *key, char **out, int *n, dd_resp *rs)
{
    if (!arr) return 0;
    if (!json_is_array(arr) || json_array_size(arr) > MAX_GLOBS) {
        dd_error(rs, 400, "bad_field", "field %s: an array of at most %d globs is expected", key,
                 MAX_GLOBS);
        return -1;
    }
    for (size_t i = 0; i < json_array_size(arr); i++) {
        const char *g = json_string_value(json_array_get(arr, i));
        if (!g || !*g || strlen(g) > MAX_GLOB_BYTES) {
            dd_error(rs, 400, "bad_field", "field %s[%zu]: a glob of 1..%d bytes", key, i, MAX_GLOB_BYTES);
            return -1;
        }
        if (!(out[*n] = strdup(g))) {
            dd_error(rs, 500, "memory", "out of memory");
            return -1;
        }
        (*n)++;
    }
    return 0;
}

void dd_route_ingest(dd_server *srv, const dd_req *rq, dd_resp *rs)
{
    if (!dd_is_admin(srv, &rq->caller)) {
        dd_error(rs, 403, "not_admin", "ingest needs an admin ([daemon] admins)");
        return;
    }
    json_t *o = dd_parse_body(srv, rq, rs);
    if (!o) return;
    const char *coll = "default";
    int wait = 0;
    job_run *r = calloc(1, sizeof *r);
    if (!r || !(r->sources = calloc(MAX_SOURCES, sizeof *r->sources))) {
        dd_error(rs, 500, "memory", "out of memory");
        goto fail;
    }
    if (dd_str_field(o, "collection", 0, &coll, rs) || dd_bool_field(o, "wait", &wait, rs) ||
        str_list(json_object_get(o, "paths"), "paths", r, rs) ||
        str_list(json_object_get(o, "urls"), "urls", r, rs) ||
        glob_list(json_object_get(o, "include"), "include", r->include, &r->n_include, rs) ||
        glob_list(json_object_get(o, "exclude"), "exclude", r->exclude, &r->n_exclude, rs) ||
        dd_bool_field(o, "follow_symlinks", &r->follow_symlinks, rs))
        goto fail;
    json_t *t = json_object_get(o, "text");
    if (t) {
        const char *uri = json_string_value(json_object_get(t, "uri"));
        const char *content = json_string_value(json_object_get(t, "content"));
        const char *title = json_string_value(json_object_get(t, "title"));
        const char *format = json_string_value(json_object_get(t, "format"));
        if (!json_is_object(t) || !uri || !*uri || !content) {
            dd_error(rs, 400, "bad_field", "field text: {\"uri\", \"content\", \"title\"?, \"format\"?} is expected");
            goto fail;
        }
        r->text_uri = strdup(uri);
        r->text = strdup(content);
        r->text_title = title ? strdup(title) : NULL;
        r->text_format = format ? strdup(format) : NULL;
        if (!r->text_uri || !r->text) {
            dd_error(rs, 500, "memory", "out of memory");
            goto fail;
        }
    }
    if (!r->n_sources && !r->text) {
        dd_error(rs, 400, "missing_field", "fields paths, urls, text: give at least one");
        goto fail;
    }
    if (strlen(coll) >= sizeof srv->jobs[0].collection) {
        dd_error(rs, 400, "bad_field", "field collection: too long");
        goto fail;
    }
    /* a slot: the oldest finished job makes room */
    pthread_mutex_lock(&srv->stats);
    dd_jobinfo *jb = NULL;
    for (int i = 0; i < DD_JOBS; i++) {
        dd_jobinfo *c = &srv->jobs[i];
        if (!c->id) { jb = c; break; }
        if (c->state >= DD_JOB_DONE && (!jb || c->id < jb->id)) jb = c;
    }
    if (!jb) {
        pthread_mutex_unlock(&srv->stats);
        dd_error(rs, 503, "busy", "%d ingest jobs are queued or running; try later", DD_JOBS);
        goto fail;
    }
    json_decref(jb->notes);
    memset(jb, 0, sizeof *jb);
    jb->id = ++srv->last_job;
    jb->srv = srv;
    jb->state = DD_JOB_QUEUED;
    jb->prog.files_total = -1;
    snprintf(jb->collection, sizeof jb->collection, "%s", coll);
    jb->notes = json_array();
    srv->producers++;
    pthread_mutex_unlock(&srv->stats);
    r->jb = jb;
    int64_t id = jb->id;
    pthread_t th;
    pthread_attr_t at;
    pthread_attr_init(&at);
    pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
    int crc = pthread_create(&th, &at, job_thread, r);
    pthread_attr_destroy(&at);
    if (crc) {
        pthread_mutex_lock(&srv->stats);
        jb->state = DD_JOB_FAILED;
        snprintf(jb->error, sizeof jb->error, "could not start a thread");
        pthread_mutex_unlock(&srv->stats);
        dd_producer_done(srv);
        dd_error(rs, 503, "busy", "could not start the job");
        goto fail;
    }
    r = NULL;
    pthread_mutex_lock(&srv->stats);
    while (wait && (jb = job_find(srv, id)) && jb->state < DD_JOB_DONE)
        pthread_cond_wait(&srv->jobs_changed, &srv->stats);
    jb = job_find(srv, id);
    rs->status = wait ? 200 : 202;
    rs->json = jb ? job_json(jb) : json_pack("{s:I}", "id", (json_int_t)id);
    pthread_mutex_unlock(&srv->stats);
    json_decref(o);
    return;
fail:
    if (r) run_free(r);
    json_decref(o);
}

void dd_route_job(dd_server *srv, const dd_req *rq, dd_resp *rs)
{
    const char *t = rq->path + strlen("/v1/jobs/");
    char *end;
    long long id = strtoll(t, &end, 10);
    if (!*t || *end || id <= 0) {
        dd_error(rs, 400, "bad_path", "/v1/jobs/{id}: %s is not a job id", t);
        return;
    }
    if (!dd_is_admin(srv, &rq->caller)) {
        dd_error(rs, 403, "not_admin", "jobs are visible to admins");
        return;
    }
    pthread_mutex_lock(&srv->stats);
    dd_jobinfo *jb = job_find(srv, id);
    if (jb) rs->json = job_json(jb);
    pthread_mutex_unlock(&srv->stats);
    if (!jb) dd_error(rs, 404, "no_job", "job %lld: not found (the last %d are kept)", id, DD_JOBS);
}
