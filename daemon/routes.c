/*
 * routes.c - docentd's routes (shared/DESIGN.md §7) on plain dd_req/dd_resp:
 *
 *   GET  /healthz           liveness
 *   GET  /v1/status         models, collections the caller can read, counters, uptime
 *   GET  /v1/collections    collections the caller can read (admins: all), with counts
 *   POST /v1/collections    {"name", "readers"?}: create one or set its readers (admins)
 *   GET  /v1/documents      documents of the readable collections (admins: all)
 *   POST /v1/search         {"query", "k"?, "collection"?} -> ranked passages
 *   DELETE /v1/documents/ID a document and its chunks and vectors (admins)
 *   POST /v1/ingest, GET /v1/jobs/ID   ingest jobs (jobs.c)
 *   GET  /metrics           Prometheus text: requests, errors and latency per route,
 *                           answer stage histograms, tokens, refusals, in flight
 *   POST /v1/ask            {"question", "k"?, "collection"?, "stream"?, "max_tokens"?,
 *                           "temperature"?} -> the answer,
 *                           as JSON or as server-sent events (sources, token,
 *                           citations, done) with "stream": true or
 *                           Accept: text/event-stream
 *   and the OpenAI-compatible routes of openai.c
 *
 * Every route that reads the store restricts it to the collections the
 * caller may read (dd_readable) before anything is retrieved: an unreadable
 * chunk never reaches a prompt, a citation or a result.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/internal.h"
#include "ingest/ingest.h"

/* ---- request bodies ------------------------------------------------------ */

static int depth_of(const json_t *v, int limit)
{
    if (limit <= 0) return 1;
    int d = 0;
    if (json_is_object(v)) {
        const char *k;
        json_t *x;
        json_object_foreach((json_t *)v, k, x) {
            int e = depth_of(x, limit - 1);
            if (e > d) d = e;
        }
        return d + 1;
    }
    if (json_is_array(v)) {
        size_t i;
        json_t *x;
        json_array_foreach(v, i, x) {
            int e = depth_of(x, limit - 1);
            if (e > d) d = e;
        }
        return d + 1;
    }
    return 0;
}

/* dd_parse_body: the JSON object of a POST, or NULL after filling rs with the
 * error (position of a syntax error, depth over the limit, not an object) */
json_t *dd_parse_body(dd_server *srv, const dd_req *rq, dd_resp *rs)
{
    json_error_t je;
    json_t *o = json_loadb(rq->body, rq->body_len, JSON_REJECT_DUPLICATES, &je);
    if (!o) {
        dd_error(rs, 400, "bad_json", "body: %s at line %d, column %d (byte %d)", je.text, je.line,
                 je.column, je.position);
        return NULL;
    }
    if (!json_is_object(o)) {
        json_decref(o);
        dd_error(rs, 400, "bad_json", "body: a JSON object is expected");
        return NULL;
    }
    dd_settings set;
    dd_settings_get(srv, &set);
    if (depth_of(o, set.max_json_depth + 1) > set.max_json_depth) {
        json_decref(o);
        dd_error(rs, 400, "too_deep", "body: nested deeper than [daemon] max_json_depth (%d)",
                 set.max_json_depth);
        return NULL;
    }
    return o;
}

/* field helpers: 0 ok (absent fields keep *out), else rs holds the error */
int dd_str_field(const json_t *o, const char *key, int required, const char **out, dd_resp *rs)
{
    json_t *v = json_object_get(o, key);
    if (!v) {
        if (required) dd_error(rs, 400, "missing_field", "field %s: required", key);
        return required ? -1 : 0;
    }
    if (!json_is_string(v)) {
        dd_error(rs, 400, "bad_field", "field %s: a string is expected", key);
        return -1;
    }
    *out = json_string_value(v);
    return 0;
}

int dd_int_field(const json_t *o, const char *key, int lo, int hi, int *out, dd_resp *rs)
{
    json_t *v = json_object_get(o, key);
    if (!v) return 0;
    if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi) {
        dd_error(rs, 400, "bad_field", "field %s: an integer in %d..%d is expected", key, lo, hi);
        return -1;
    }
    *out = (int)json_integer_value(v);
    return 0;
}

int dd_num_field(const json_t *o, const char *key, double lo, double hi, double *out, dd_resp *rs)
{
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) return 0;
    if (!json_is_number(v) || json_number_value(v) < lo || json_number_value(v) > hi) {
        dd_error(rs, 400, "bad_field", "field %s: a number in %g..%g is expected", key, lo, hi);
        return -1;
    }
    *out = json_number_value(v);
    return 0;
}

int dd_bool_field(const json_t *o, const char *key, int *out, dd_resp *rs)
{
    json_t *v = json_object_get(o, key);
    if (!v) return 0;
    if (!json_is_boolean(v)) {
        dd_error(rs, 400, "bad_field", "field %s: true or false is expected", key);
        return -1;
    }
    *out = json_is_true(v);
    return 0;
}

/* dd_scope: the collections rq's caller may read, optionally one by name;
 * 0 with *n == 0 means nothing readable (the caller answers accordingly) */
int dd_scope(dd_server *srv, const dd_req *rq, const char *name, int64_t **ids, int *n,
                 dd_resp *rs)
{
    int rc = dd_readable(srv, &rq->caller, name, ids, n);
    if (rc == DOC_ENOTFOUND) {
        /* the same answer for "absent" and "not yours": names do not leak */
        dd_error(rs, 404, "no_collection", "collection %s: none you can read", name);
        return -1;
    }
    if (rc) {
        dd_error(rs, 500, "store", "store: %s", idx_errmsg(srv->store));
        return -1;
    }
    if (name && !*n) {
        dd_error(rs, 404, "no_collection", "collection %s: none you can read", name);
        return -1;
    }
    return 0;
}

static json_t *lines_json(int a, int b)
{
    return a > 0 ? json_pack("[ii]", a, b) : json_null();
}

static json_t *redacted(unsigned cats, const char *text)
{
    buf b;
    buf_init(&b, 0);
    if (rag_redact(text, strlen(text), cats, &b, NULL, 0, NULL) || !b.data) {
        buf_free(&b);
        return json_string("");
    }
    json_t *s = json_stringn(b.data, b.len);
    buf_free(&b);
    return s;
}

/* ---- simple routes ------------------------------------------------------- */

static void route_status(dd_server *srv, const dd_req *rq, dd_resp *rs)
{
    idx_collection *cols = NULL;
    int nc = 0;
    if (idx_collection_list(srv->store, &cols, &nc)) {
        dd_error(rs, 500, "store", "store: %s", idx_errmsg(srv->store));
        return;
    }
    json_t *arr = json_array();
    int admin = dd_is_admin(srv, &rq->caller);
    for (int i = 0; i < nc; i++) {
        if (!admin && !dd_list_matches(cols[i].readers, &rq->caller)) continue;
        json_t *c = json_pack("{s:s,s:I,s:I}", "name", cols[i].name, "documents",
                              (json_int_t)cols[i].n_docs, "chunks", (json_int_t)cols[i].n_chunks);
        if (admin) json_object_set_new(c, "readers", json_string(cols[i].readers));
        json_array_append_new(arr, c);
    }
    free(cols);
    pthread_mutex_lock(&srv->stats);
    json_t *counters = json_pack("{s:I,s:I,s:i}", "requests", (json_int_t)srv->n_requests,
                                 "errors", (json_int_t)srv->n_errors, "in_flight", srv->in_flight);
    int jobs_waiting = 0, jobs_running = 0;
    for (int i = 0; i < DD_JOBS; i++) {
        jobs_waiting += srv->jobs[i].id && srv->jobs[i].state == DD_JOB_QUEUED;
        jobs_running += srv->jobs[i].id && srv->jobs[i].state == DD_JOB_RUNNING;
    }
    pthread_mutex_unlock(&srv->stats);
    int ans_wait, gen_busy, emb_q, emb_i;
    dd_pool_depth(&srv->gen_pool, &ans_wait, NULL, &gen_busy);
    dd_pool_depth(&srv->embed_pool, &emb_q, &emb_i, NULL);
    uint64_t steps, toks;
    dd_decode_stats(srv, &steps, &toks);
    json_object_set_new(counters, "queue",
                        json_pack("{s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:I,s:I}", "answers_waiting",
                                  ans_wait, "generators_busy", gen_busy, "answer_slots",
                                  srv->gen_pool.n, "generators", srv->n_generators, "parallel",
                                  srv->cfg.parallel, "embed_waiting_queries", emb_q,
                                  "embed_waiting_ingest", emb_i, "ingest_jobs_queued", jobs_waiting,
                                  "ingest_jobs_running", jobs_running, "decode_steps",
                                  (json_int_t)steps, "decode_tokens", (json_int_t)toks));
    rs->json = json_pack("{s:s,s:f,s:{s:s,s:s,s:s,s:s},s:o,s:o,s:{s:I,s:I,s:b}}", "status", "ok",
                         "uptime_s", time_now() - srv->started, "models", "embedder",
                         srv->cfg.embedder, "embedder_engine", llm_model_desc(srv->embedder),
                         "generator", srv->cfg.generator, "generator_engine",
                         srv->generator ? llm_model_desc(srv->generator) : "none", "collections", arr, "counters", counters,
                         "caller", "uid", (json_int_t)rq->caller.uid, "gid",
                         (json_int_t)rq->caller.gid, "admin", admin);
    json_t *q = json_object_get(counters, "queue");
    if (rs->json) {
        json_object_set(rs->json, "queue", q);
        json_object_del(counters, "queue");
        if (admin) {
            json_object_set_new(rs->json, "watch", dd_watch_json(srv));
            json_object_set_new(rs->json, "data_dir", json_string(srv->cfg.data_dir));
        }
    }
}

static void route_collections(dd_server *srv, const dd_req *rq, dd_resp *rs)
{
    route_status(srv, rq, rs);
    if (rs->status != 200) return;
    json_t *c = json_incref(json_object_get(rs->json, "collections"));
    json_decref(rs->json);
    rs->json = json_pack("{s:o}", "collections", c);
}

/* POST /v1/collections {"name", "readers"?}: create a collection or set its
 * readers (admins only) */
static void route_collection_set(dd_server *srv, const dd_req *rq, dd_resp *rs)
{
    if (!dd_is_admin(srv, &rq->caller)) {
        dd_error(rs, 403, "not_admin", "changing collections needs an admin ([daemon] admins)");
        return;
    }
    json_t *o = dd_parse_body(srv, rq, rs);
    if (!o) return;
    const char *name = NULL, *readers = NULL;
    int64_t id;
    if (dd_str_field(o, "name", 1, &name, rs) || dd_str_field(o, "readers", 0, &readers, rs)) goto done;
    if (readers && strlen(readers) >= sizeof ((idx_collection *)0)->readers) {
        dd_error(rs, 400, "bad_field", "field readers: over %zu bytes",
                 sizeof ((idx_collection *)0)->readers - 1);
        goto done;
    }
    if (idx_collection_ensure(srv->store, name, readers, &id) ||
        (readers && idx_collection_set_readers(srv->store, name, readers))) {
        dd_error(rs, 400, "bad_field", "field name: %s", idx_errmsg(srv->store));
        goto done;
    }
    idx_collection col;
    if (idx_collection_find(srv->store, name, &col)) {
        dd_error(rs, 500, "store", "store: %s", idx_errmsg(srv->store));
        goto done;
    }
    rs->json = json_pack("{s:s,s:s,s:I}", "name", col.name, "readers", col.readers, "documents",
                         (json_int_t)col.n_docs);
done:
    json_decref(o);
}

static void route_documents(dd_server *srv, const dd_req *rq, dd_resp *rs)
{
    int64_t *ids = NULL;
    int n = 0;
    if (dd_is_admin(srv, &rq->caller)) { /* admins manage every collection: they list all */
        if (!(ids = malloc(sizeof *ids))) {
            dd_error(rs, 500, "memory", "out of memory");
            return;
        }
        ids[n++] = 0; /* idx_doc_list: 0 is every collection */
    } else if (dd_scope(srv, rq, NULL, &ids, &n, rs)) {
        return;
    }
    json_t *arr = json_array();
    for (int i = 0; i < n; i++) {
        idx_doc *docs = NULL;
        int nd = 0;
        if (idx_doc_list(srv->store, ids[i], &docs, &nd)) {
            json_decref(arr);
            free(ids);
            dd_error(rs, 500, "store", "store: %s", idx_errmsg(srv->store));
            return;
        }
        for (int j = 0; j < nd; j++)
            json_array_append_new(arr, json_pack("{s:I,s:s,s:s,s:s,s:s,s:I,s:I,s:I,s:I}", "id",
                                                 (json_int_t)docs[j].id, "collection",
                                                 docs[j].collection, "uri", docs[j].uri, "title",
                                                 docs[j].title ? docs[j].title : "", "mime",
                                                 docs[j].mime ? docs[j].mime : "", "size",
                                                 (json_int_t)docs[j].size, "mtime",
                                                 (json_int_t)docs[j].mtime, "chunks",
                                                 (json_int_t)docs[j].n_chunks, "ingested_at",
                                                 (json_int_t)docs[j].ingested_at));
        idx_doc_list_free(&docs, nd);
    }
    free(ids);
    rs->json = json_pack("{s:o}", "documents", arr);
}

/* ---- search ---------------------------------------------------------------- */

static void route_search(dd_server *srv, const dd_req *rq, dd_resp *rs)
{
    json_t *o = dd_parse_body(srv, rq, rs);
    if (!o) return;
    const char *query = NULL, *coll = NULL, *mode = "hybrid";
    pthread_rwlock_rdlock(&srv->reload_rw);
    rag_opts ro = srv->opts; /* [search] as SIGHUP last left it */
    pthread_rwlock_unlock(&srv->reload_rw);
    int k = ro.k > 0 ? ro.k : 5;
    int64_t *ids = NULL;
    int n = 0, nh = 0;
    idx_hit *hits = NULL;
    float *vec = NULL;
    doc_err e = {0};
    if (dd_str_field(o, "query", 1, &query, rs) || dd_str_field(o, "collection", 0, &coll, rs) ||
        dd_int_field(o, "k", 1, 1000, &k, rs) || dd_str_field(o, "mode", 0, &mode, rs))
        goto done;
    int dense = strcmp(mode, "bm25") != 0, bm25 = strcmp(mode, "dense") != 0;
    if (strcmp(mode, "hybrid") && strcmp(mode, "dense") && strcmp(mode, "bm25")) {
        dd_error(rs, 400, "bad_field", "field mode: hybrid, dense or bm25");
        goto done;
    }
    if (!*query || strlen(query) > RAG_QUESTION_MAX || !utf8_valid(query, strlen(query))) {
        dd_error(rs, 400, "bad_field", "field query: 1..%d bytes of UTF-8", RAG_QUESTION_MAX);
        goto done;
    }
    dd_use(srv, DD_USE_STORE, 0, 1);
    int sc = dd_scope(srv, rq, coll, &ids, &n, rs);
    dd_use(srv, DD_USE_STORE, 0, 0);
    if (sc) goto done;
    json_t *arr = json_array();
    if (n) {
        int rc = dense ? DOC_ENOMEM : DOC_OK;
        if (dense) vec = malloc((size_t)llm_embed_dim(srv->embedder) * sizeof *vec);
        if (vec) {
            dd_use(srv, DD_USE_EMBEDDER, DD_PRIO_HIGH, 1);
            rc = ing_embed_query(srv->embedder, query, vec, &e);
            dd_use(srv, DD_USE_EMBEDDER, DD_PRIO_HIGH, 0);
        }
        if (rc) {
            json_decref(arr);
            dd_error(rs, 500, "embed", "query: %s", vec ? e.msg : "out of memory");
            goto done;
        }
        idx_search_opts so = {.k = k, .n_dense = ro.n_dense, .n_bm25 = ro.n_bm25, .rrf_k = ro.rrf_k,
                              .collections = ids, .n_collections = n};
        dd_use(srv, DD_USE_STORE, 0, 1);
        rc = idx_search(srv->store, vec, bm25 ? query : NULL, &so, &hits, &nh);
        if (rc) dd_error(rs, 500, "store", "search: %s", idx_errmsg(srv->store));
        dd_use(srv, DD_USE_STORE, 0, 0);
        if (rc) {
            json_decref(arr);
            goto done;
        }
    }
    for (int i = 0; i < nh; i++) {
        idx_hit *h = &hits[i];
        json_t *r = json_pack("{s:I,s:s,s:s,s:s,s:s,s:o,s:o,s:f}", "document_id",
                              (json_int_t)h->doc_id, "uri", h->uri, "title", h->title ? h->title : "",
                              "heading", h->heading ? h->heading : "", "collection",
                              h->collection ? h->collection : "", "page",
                              h->page ? json_integer(h->page) : json_null(), "lines",
                              lines_json(h->line_start, h->line_end), "score", h->score);
        json_object_set_new(r, "dense_score", isnan(h->dense_score) ? json_null() : json_real(h->dense_score));
        json_object_set_new(r, "bm25_score", isnan(h->bm25_score) ? json_null() : json_real(h->bm25_score));
        json_object_set_new(r, "dense_rank", h->dense_rank ? json_integer(h->dense_rank) : json_null());
        json_object_set_new(r, "bm25_rank", h->bm25_rank ? json_integer(h->bm25_rank) : json_null());
        json_object_set_new(r, "text", redacted(ro.redact, h->text));
        json_array_append_new(arr, r);
    }
    rs->json = json_pack("{s:o}", "results", arr);
done:
    idx_hits_free(&hits, nh);
    free(vec);
    free(ids);
    json_decref(o);
}

/* ---- ask ------------------------------------------------------------------- */

/* answer_json: rag's answer object, with the wait for a generator and the models */
static json_t *answer_json(const rag_answer *a, const dd_job *j)
{
    json_t *o = rag_answer_json(a);
    json_object_set_new(json_object_get(o, "timings"), "queue", json_real(j->queued_s));
    json_object_set_new(o, "models", json_pack("{s:s,s:s}", "embedder", j->srv->cfg.embedder,
                                               "generator", j->srv->cfg.generator));
    return o;
}

static int job_text(void *ud, const char *text, size_t len)
{
    dd_job *j = ud;
    if (j->stream) {
        dd_stream_event(j->stream, "token", json_pack("{s:s%}", "text", text, len));
        return j->stream->cancel || j->srv->stopping;
    }
    return j->srv->stopping;
}

static void job_sources(void *ud, const struct rag_passage *p, int n)
{
    dd_job *j = ud;
    if (j->stream) dd_stream_event(j->stream, "sources", json_pack("{s:o}", "sources", rag_passages_json(p, n, 0)));
}

int dd_run_ask(dd_job *j, rag_answer *a, doc_err *e)
{
    dd_server *srv = j->srv;
    const volatile int *cancel = j->stream ? &j->stream->cancel : NULL;
    int slot = dd_take_generator(j, e);
    if (slot < 0) return slot;
    pthread_rwlock_rdlock(&srv->reload_rw);
    rag_env env;
    dd_rag_env(srv, dd_generator(srv, slot), &env);
    if (j->answer_tokens > 0 && j->answer_tokens < env.opts.answer_tokens)
        env.opts.answer_tokens = j->answer_tokens;
    if (j->temperature >= 0) env.opts.temperature = (float)j->temperature;
    rag_request rr = {.question = j->question, .collections = j->ids, .n_collections = j->n_ids,
                      .k = j->k, .history = j->history, .n_history = j->n_history,
                      .on_text = j->on_text ? j->on_text : job_text,
                      .on_sources = j->on_text ? NULL : job_sources, .ud = j, .cancel = cancel,
                      .deadline = j->deadline};
    int rc = rag_answer_question(&env, &rr, a, e);
    pthread_rwlock_unlock(&srv->reload_rw);
    dd_pool_give(&srv->gen_pool, slot);
    pthread_mutex_lock(&srv->stats);
    srv->n_tokens += a->answer_tokens;
    srv->n_prompt_tokens += a->prompt_tokens;
    if (rc == DOC_OK) {
        srv->n_refused += a->refused;
        srv->n_not_found += a->not_found != RAG_FOUND;
        double st[DD_STAGES] = {a->t.embed + a->t.retrieve, a->t.prefill, a->t.decode,
                                a->t.first_text, a->t.total};
        for (int i = 0; i < DD_STAGES; i++) dd_hist_add(&srv->stage[i], st[i]);
    }
    pthread_mutex_unlock(&srv->stats);
    return rc;
}

void dd_job_free(dd_job *j)
{
    for (int i = 0; i < j->n_own_history; i++) {
        free((char *)j->own_history[i].question);
        free((char *)j->own_history[i].answer);
    }
    free(j->own_history);
    free(j->question);
    free(j->ids);
    free(j);
}

int dd_start_producer(dd_server *srv, void *(*fn)(void *), void *arg)
{
    pthread_t th;
    pthread_attr_t at;
    pthread_attr_init(&at);
    pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
    pthread_mutex_lock(&srv->stats);
    srv->producers++;
    pthread_mutex_unlock(&srv->stats);
    int rc = pthread_create(&th, &at, fn, arg);
    pthread_attr_destroy(&at);
    if (rc) dd_producer_done(srv);
    return rc ? -1 : 0;
}

int dd_spawn(dd_server *srv, void *(*fn)(void *), dd_job *j, dd_resp *rs)
{
    /* once the thread runs it owns j and may free it at any moment (an answer
     * that fails at once): take the stream before */
    dd_stream *st = j->stream;
    if (dd_start_producer(srv, fn, j)) {
        dd_stream_release(st);
        dd_stream_release(st);
        j->stream = NULL;
        dd_error(rs, 503, "busy", "could not start the answer");
        return -1;
    }
    rs->stream = st; /* the server's reference */
    return 0;
}

void dd_producer_done(dd_server *srv)
{
    pthread_mutex_lock(&srv->stats);
    if (--srv->producers == 0) pthread_cond_broadcast(&srv->producers_done);
    pthread_mutex_unlock(&srv->stats);
}

static void *ask_thread(void *arg)
{
    dd_job *j = arg;
    rag_answer a = {0};
    doc_err e = {0};
    int rc = dd_run_ask(j, &a, &e);
    if (rc == DOC_OK) {
        dd_stream_event(j->stream, "citations", json_pack("{s:o}", "citations",
                                                          rag_passages_json(a.passages, a.n_passages, 1)));
        dd_stream_event(j->stream, "done", answer_json(&a, j));
    } else if (rc != DOC_ECANCELLED) {
        dd_stream_event(j->stream, "error", json_pack("{s:s}", "message", e.msg));
    }
    rag_answer_free(&a);
    dd_stream_close(j->stream);
    dd_stream_release(j->stream);
    dd_server *srv = j->srv;
    dd_job_free(j);
    dd_producer_done(srv);
    return NULL;
}

/* ask_history: /v1/ask's optional "history": [{"question", "answer"}...],
 * oldest first, into j (owned); 0, or rs holds the error */
static int ask_history(const json_t *h, dd_job *j, dd_resp *rs)
{
    enum { MAX_TURNS = 16, MAX_ANSWER = 16 * 1024 };
    if (!h) return 0;
    size_t n = json_array_size(h);
    if (!json_is_array(h) || n > MAX_TURNS) {
        dd_error(rs, 400, "bad_field", "field history: an array of at most %d {question, answer} turns", MAX_TURNS);
        return -1;
    }
    if (n && !(j->own_history = calloc(n, sizeof *j->own_history))) {
        dd_error(rs, 500, "memory", "out of memory");
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        const json_t *t = json_array_get(h, i);
        const char *q = json_string_value(json_object_get(t, "question"));
        const char *a = json_string_value(json_object_get(t, "answer"));
        if (!q || !a || strlen(q) > RAG_QUESTION_MAX || strlen(a) > MAX_ANSWER ||
            !utf8_valid(q, strlen(q)) || !utf8_valid(a, strlen(a))) {
            dd_error(rs, 400, "bad_field",
                     "field history[%zu]: {\"question\" (at most %d bytes), \"answer\" (at most %d)} "
                     "of UTF-8 text", i, RAG_QUESTION_MAX, MAX_ANSWER);
            return -1;
        }
        rag_turn *r = &j->own_history[j->n_own_history];
        if (!(r->question = strdup(q)) || !(r->answer = strdup(a))) {
            free((char *)r->question);
            dd_error(rs, 500, "memory", "out of memory");
            return -1;
        }
        j->n_own_history++;
    }
    j->history = j->own_history;
    j->n_history = j->n_own_history;
    return 0;
}

static void route_ask(dd_server *srv, const dd_req *rq, dd_resp *rs)
{
    json_t *o = dd_parse_body(srv, rq, rs);
    if (!o) return;
    const char *question = NULL, *coll = NULL;
    int k = 0, stream = rq->wants_sse, max_tokens = 0, timeout_s = 0;
    double temperature = -1;
    dd_job *j = NULL;
    if (dd_str_field(o, "question", 1, &question, rs) || dd_str_field(o, "collection", 0, &coll, rs) ||
        dd_int_field(o, "k", 1, 32, &k, rs) || dd_bool_field(o, "stream", &stream, rs) ||
        dd_int_field(o, "max_tokens", 1, 1 << 16, &max_tokens, rs) ||
        dd_num_field(o, "temperature", 0, 2, &temperature, rs) ||
        dd_int_field(o, "timeout_s", 1, 86400, &timeout_s, rs))
        goto done;
    if (!(j = calloc(1, sizeof *j)) || !(j->question = strdup(question))) {
        dd_error(rs, 500, "memory", "out of memory");
        goto done;
    }
    j->srv = srv;
    j->k = k;
    j->answer_tokens = max_tokens;
    j->temperature = temperature;
    j->timeout_s = timeout_s;
    if (ask_history(json_object_get(o, "history"), j, rs)) goto done;
    dd_use(srv, DD_USE_STORE, 0, 1);
    int sc = dd_scope(srv, rq, coll, &j->ids, &j->n_ids, rs);
    dd_use(srv, DD_USE_STORE, 0, 0);
    if (sc) goto done;
    if (!j->n_ids) { /* NULL collections would mean "all": never search on nothing readable */
        dd_error(rs, 403, "no_collection", "there is no collection you can read");
        goto done;
    }
    if (stream) {
        if (!(j->stream = dd_stream_new())) {
            dd_error(rs, 500, "memory", "out of memory");
            goto done;
        }
        if (dd_spawn(srv, ask_thread, j, rs)) goto done;
        j = NULL; /* the thread owns it */
        goto done;
    }
    rag_answer a = {0};
    doc_err e = {0};
    int rc = dd_run_ask(j, &a, &e);
    if (rc == DOC_EINVAL) dd_error(rs, 400, "bad_field", "field %s", e.msg);
    else if (j->busy) dd_error(rs, 503, "busy", "%s", e.msg);
    else if (rc) dd_error(rs, 500, "answer", "%s", e.msg);
    else rs->json = answer_json(&a, j);
    rag_answer_free(&a);
done:
    if (j) dd_job_free(j);
    json_decref(o);
}

/* ---- metrics ------------------------------------------------------------------ */

const double dd_hist_bounds[DD_BUCKETS - 1] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                               0.5,   1,    2.5,   5,    10};
const char *const dd_stage_names[DD_STAGES] = {"retrieve", "prefill", "decode", "first_text",
                                               "total"};

void dd_hist_add(dd_hist *h, double s)
{
    for (int i = 0; i < DD_BUCKETS; i++)
        if (i == DD_BUCKETS - 1 || s <= dd_hist_bounds[i]) h->bucket[i]++;
    h->sum += s;
    h->count++;
}

static void hist_text(buf *b, const char *name, const char *labels, const dd_hist *h)
{
    for (int i = 0; i < DD_BUCKETS; i++) {
        char le[32];
        if (i < DD_BUCKETS - 1) snprintf(le, sizeof le, "%g", dd_hist_bounds[i]);
        else snprintf(le, sizeof le, "+Inf");
        buf_printf(b, "%s_bucket{%s%sle=\"%s\"} %lld\n", name, labels, *labels ? "," : "", le,
                   (long long)h->bucket[i]);
    }
    buf_printf(b, "%s_sum%s%s%s %.6f\n", name, *labels ? "{" : "", labels, *labels ? "}" : "", h->sum);
    buf_printf(b, "%s_count%s%s%s %lld\n", name, *labels ? "{" : "", labels, *labels ? "}" : "",
               (long long)h->count);
}

/* GET /metrics: Prometheus text format */
static void route_metrics(dd_server *srv, const dd_req *rq, dd_resp *rs)
{
    (void)rq;
    buf b;
    buf_init(&b, 0);
    char name[96], lab[128];
    pthread_mutex_lock(&srv->stats);
    buf_puts(&b, "# HELP docent_requests_total Requests per route.\n# TYPE docent_requests_total counter\n");
    for (int i = 0; i < dd_route_count() && i < DD_MAX_ROUTES; i++)
        buf_printf(&b, "docent_requests_total{route=\"%s\"} %lld\n", dd_route_name(i, name, sizeof name),
                   (long long)srv->route_requests[i]);
    buf_puts(&b, "# HELP docent_request_errors_total Replies with status >= 400 per route.\n"
                 "# TYPE docent_request_errors_total counter\n");
    for (int i = 0; i < dd_route_count() && i < DD_MAX_ROUTES; i++)
        buf_printf(&b, "docent_request_errors_total{route=\"%s\"} %lld\n",
                   dd_route_name(i, name, sizeof name), (long long)srv->route_errors[i]);
    buf_printf(&b, "# HELP docent_errors_total Replies with status >= 400, routed or not.\n"
                   "# TYPE docent_errors_total counter\ndocent_errors_total %lld\n",
               (long long)srv->n_errors);
    buf_puts(&b, "# HELP docent_request_seconds Time to the reply's headers per route.\n"
                 "# TYPE docent_request_seconds histogram\n");
    for (int i = 0; i < dd_route_count() && i < DD_MAX_ROUTES; i++) {
        snprintf(lab, sizeof lab, "route=\"%s\"", dd_route_name(i, name, sizeof name));
        hist_text(&b, "docent_request_seconds", lab, &srv->route_latency[i]);
    }
    buf_puts(&b, "# HELP docent_answer_stage_seconds Time per stage of the answers.\n"
                 "# TYPE docent_answer_stage_seconds histogram\n");
    for (int i = 0; i < DD_STAGES; i++) {
        snprintf(lab, sizeof lab, "stage=\"%s\"", dd_stage_names[i]);
        hist_text(&b, "docent_answer_stage_seconds", lab, &srv->stage[i]);
    }
    buf_printf(&b,
               "# TYPE docent_generated_tokens_total counter\ndocent_generated_tokens_total %lld\n"
               "# TYPE docent_prompt_tokens_total counter\ndocent_prompt_tokens_total %lld\n"
               "# TYPE docent_refusals_total counter\ndocent_refusals_total %lld\n"
               "# TYPE docent_not_found_total counter\ndocent_not_found_total %lld\n"
               "# TYPE docent_in_flight gauge\ndocent_in_flight %d\n"
               "# TYPE docent_streams_running gauge\ndocent_streams_running %d\n"
               "# TYPE docent_uptime_seconds gauge\ndocent_uptime_seconds %.1f\n",
               (long long)srv->n_tokens, (long long)srv->n_prompt_tokens, (long long)srv->n_refused,
               (long long)srv->n_not_found, srv->in_flight, srv->producers,
               time_now() - srv->started);
    pthread_mutex_unlock(&srv->stats);
    int ans_wait, gen_busy, emb_q, emb_i;
    dd_pool_depth(&srv->gen_pool, &ans_wait, NULL, &gen_busy);
    dd_pool_depth(&srv->embed_pool, &emb_q, &emb_i, NULL);
    uint64_t steps, toks;
    dd_decode_stats(srv, &steps, &toks);
    buf_printf(&b,
               "# HELP docent_queue_depth Requests waiting for a model.\n"
               "# TYPE docent_queue_depth gauge\n"
               "docent_queue_depth{queue=\"answers\"} %d\n"
               "docent_queue_depth{queue=\"embed_queries\"} %d\n"
               "docent_queue_depth{queue=\"embed_ingest\"} %d\n"
               "# HELP docent_generators_busy Answer slots producing an answer.\n"
               "# TYPE docent_generators_busy gauge\ndocent_generators_busy %d\n"
               "# HELP docent_answer_slots Answers produced at once (generators x parallel).\n"
               "# TYPE docent_answer_slots gauge\ndocent_answer_slots %d\n"
               "# TYPE docent_generators gauge\ndocent_generators %d\n"
               "# HELP docent_answer_queue_timeouts_total Questions refused after queue_timeout_s.\n"
               "# TYPE docent_answer_queue_timeouts_total counter\n"
               "docent_answer_queue_timeouts_total %lld\n"
               "# HELP docent_decode_steps_total Batched decode steps run (local generators).\n"
               "# TYPE docent_decode_steps_total counter\ndocent_decode_steps_total %llu\n"
               "# HELP docent_decode_tokens_total Tokens those steps produced (tokens/steps: mean batch).\n"
               "# TYPE docent_decode_tokens_total counter\ndocent_decode_tokens_total %llu\n",
               ans_wait, emb_q, emb_i, gen_busy, srv->gen_pool.n, srv->n_generators,
               (long long)srv->gen_pool.timeouts, (unsigned long long)steps,
               (unsigned long long)toks);
    rs->text = buf_steal(&b, NULL);
    rs->content_type = "text/plain; version=0.0.4; charset=utf-8";
    if (!rs->text) dd_error(rs, 500, "memory", "out of memory");
}

/* DELETE /v1/documents/{id} (admins) */
static void route_document_delete(dd_server *srv, const dd_req *rq, dd_resp *rs)
{
    if (!dd_is_admin(srv, &rq->caller)) {
        dd_error(rs, 403, "not_admin", "deleting documents needs an admin ([daemon] admins)");
        return;
    }
    const char *idtxt = rq->path + strlen("/v1/documents/");
    char *end;
    long long id = strtoll(idtxt, &end, 10);
    if (!*idtxt || *end || id <= 0) {
        dd_error(rs, 400, "bad_path", "/v1/documents/{id}: %s is not a document id", idtxt);
        return;
    }
    idx_doc d = {0};
    if (idx_doc_get(srv->store, id, &d)) {
        dd_error(rs, 404, "no_document", "document %lld: not found", id);
        return;
    }
    int rc = idx_begin(srv->store);
    if (rc == DOC_OK) rc = idx_doc_remove(srv->store, id);
    if (rc == DOC_OK) rc = idx_commit(srv->store);
    else idx_rollback(srv->store);
    if (rc) dd_error(rs, 500, "store", "delete: %s", idx_errmsg(srv->store));
    else rs->json = json_pack("{s:I,s:s,s:b}", "id", (json_int_t)id, "uri", d.uri, "deleted", 1);
    idx_doc_clear(&d);
}

/* ---- the table ------------------------------------------------------------- */

typedef struct route {
    const char *method, *path;
    int use;                    /* held around the handler: 0, DD_USE_STORE, or
                                   DD_USE_WRITER (the writer, then the store) */
    void (*fn)(dd_server *, const dd_req *, dd_resp *);
} route;

static void route_health(dd_server *srv, const dd_req *rq, dd_resp *rs)
{
    (void)srv;
    (void)rq;
    rs->json = json_pack("{s:s}", "status", "ok");
}

static const route routes[] = {
    {"GET", "/healthz", 0, route_health},
    {"GET", "/v1/status", DD_USE_STORE, route_status},
    {"GET", "/v1/collections", DD_USE_STORE, route_collections},
    {"POST", "/v1/collections", DD_USE_WRITER, route_collection_set},
    {"GET", "/v1/documents", DD_USE_STORE, route_documents},
    {"POST", "/v1/search", 0, route_search}, /* the store and the embedder in turn */
    {"POST", "/v1/ask", 0, route_ask},       /* and a generator (streams outlive the call) */
    {"POST", "/v1/chat/completions", 0, dd_route_chat},
    {"POST", "/v1/embeddings", 0, dd_route_embeddings},
    {"GET", "/v1/models", 0, dd_route_models},
    {"GET", "/metrics", 0, route_metrics},
    {"POST", "/v1/ingest", 0, dd_route_ingest}, /* the job takes what it needs on its thread */
    {"GET", "/v1/jobs/", 0, dd_route_job},
    {"DELETE", "/v1/documents/", DD_USE_WRITER, route_document_delete}, /* trailing '/': a prefix */
};

int dd_route_count(void)
{
    return (int)(sizeof routes / sizeof routes[0]);
}

const char *dd_route_name(int idx, char *out, size_t cap)
{
    snprintf(out, cap, "%s %s", routes[idx].method, routes[idx].path);
    return out;
}

int dd_route(dd_server *srv, const dd_req *rq, dd_resp *rs)
{
    int path_known = 0;
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
        int prefix = routes[i].path[strlen(routes[i].path) - 1] == '/';
        if (prefix ? strncmp(routes[i].path, rq->path, strlen(routes[i].path)) ||
                         !rq->path[strlen(routes[i].path)]
                   : strcmp(routes[i].path, rq->path))
            continue;
        path_known = 1;
        if (strcmp(routes[i].method, rq->method)) continue;
        rs->status = 200;
        int use = routes[i].use;
        if (use == DD_USE_WRITER) dd_use(srv, DD_USE_WRITER, 0, 1);
        if (use) dd_use(srv, DD_USE_STORE, 0, 1);
        routes[i].fn(srv, rq, rs);
        if (use) dd_use(srv, DD_USE_STORE, 0, 0);
        if (use == DD_USE_WRITER) dd_use(srv, DD_USE_WRITER, 0, 0);
        return (int)i;
    }
    if (path_known) dd_error(rs, 405, "method", "%s %s: method not allowed", rq->method, rq->path);
    else dd_error(rs, 404, "no_route", "%s: no such route", rq->path);
    return -1;
}
