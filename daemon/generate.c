/*
 * generate.c - POST /v1/chat/completions with "model": "docent-generator":
 * the generator itself, without retrieval, citations or filters, so that one
 * docentd (say, the one with the GPU) can be another docent's remote
 * generator (llm/remote.c, docs/remote.md).  The asking docent sends its own
 * grounded prompt and runs citations and filters on what comes back.
 *
 * Unfiltered generation is not for every caller: it needs an admin (root,
 * the daemon's user, or [daemon] admins, e.g. the asking docent's API key).
 * The messages (system, user, assistant) go through the generator's chat
 * template; max_tokens, temperature, top_p, top_k, seed, stop and
 * repeat_penalty (or repetition_penalty) are honoured.  It takes a generator
 * from the same pool as answers, under the same queue and answer time limits;
 * a client that hangs up stops the generation.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "daemon/internal.h"

enum { MAX_MESSAGES = 64, MAX_STOP = 4, MAX_STOP_BYTES = 64, MAX_GEN_TOKENS = 8192 };

typedef struct gen_req {
    llm_chat_msg msgs[MAX_MESSAGES];
    char *texts[MAX_MESSAGES];
    int n;
    llm_sampling s;
    char *stop[MAX_STOP];
    char id[48];
    int64_t created;
    int sent_role;
    buf text;                   /* the whole reply, when not streamed */
    llm_gen_stats st;
    int timed_out;
} gen_req;

static void gen_free(gen_req *g)
{
    if (!g) return;
    for (int i = 0; i < g->n; i++) free(g->texts[i]);
    for (int i = 0; i < g->s.n_stop; i++) free(g->stop[i]);
    buf_free(&g->text);
    free(g);
}

static json_t *chunk(const gen_req *g, json_t *delta, const char *finish)
{
    return json_pack("{s:s,s:s,s:I,s:s,s:[{s:i,s:o,s:o}]}", "id", g->id, "object",
                     "chat.completion.chunk", "created", (json_int_t)g->created, "model",
                     DD_RAW_MODEL, "choices", "index", 0, "delta", delta, "finish_reason",
                     finish ? json_string(finish) : json_null());
}

static int gen_text(void *ud, const char *text, size_t len)
{
    dd_job *j = ud;
    gen_req *g = j->ext;
    if (time_now() > j->deadline) {
        g->timed_out = 1;
        return 1;
    }
    if (j->stream) {
        if (!g->sent_role) {
            dd_stream_event(j->stream, NULL,
                            chunk(g, json_pack("{s:s,s:s}", "role", "assistant", "content", ""), NULL));
            g->sent_role = 1;
        }
        dd_stream_event(j->stream, NULL, chunk(g, json_pack("{s:s%}", "content", text, len), NULL));
        return j->stream->cancel || j->srv->stopping;
    }
    if (buf_append(&g->text, text, len)) return 1;
    return j->srv->stopping;
}

/* run: a generator from the pool, then the generation (0, DOC_ELIMIT with
 * j->busy when none came free in time, or the engine's error) */
static int run(dd_job *j, doc_err *e)
{
    dd_server *srv = j->srv;
    gen_req *g = j->ext;
    int slot = dd_take_generator(j, e);
    if (slot < 0) return slot;
    llm_model *gen = dd_generator(srv, slot);
    if (!gen) { /* a server set up without one (tests/fuzz) */
        dd_pool_give(&srv->gen_pool, slot);
        return doc_errf(e, DOC_ESTATE, "no generator model is loaded");
    }
    int rc = llm_generate_chat(gen, g->msgs, g->n, &g->s, gen_text, j, &g->st, e);
    dd_pool_give(&srv->gen_pool, slot);
    pthread_mutex_lock(&srv->stats);
    srv->n_tokens += g->st.n_gen;
    srv->n_prompt_tokens += g->st.n_prompt;
    pthread_mutex_unlock(&srv->stats);
    return rc;
}

static const char *finish(const gen_req *g)
{
    return g->st.stop_reason == LLM_STOP_LENGTH || g->st.stop_reason == LLM_STOP_CONTEXT || g->timed_out
               ? "length"
               : "stop";
}

static json_t *usage(const gen_req *g)
{
    return json_pack("{s:i,s:i,s:i}", "prompt_tokens", g->st.n_prompt, "completion_tokens",
                     g->st.n_gen, "total_tokens", g->st.n_prompt + g->st.n_gen);
}

static void *gen_thread(void *arg)
{
    dd_job *j = arg;
    gen_req *g = j->ext;
    doc_err e = {0};
    int rc = run(j, &e);
    if (rc == DOC_OK || (rc == DOC_ECANCELLED && g->timed_out)) {
        if (!g->sent_role) gen_text(j, "", 0);
        json_t *last = chunk(g, json_object(), finish(g));
        json_object_set_new(last, "usage", usage(g));
        dd_stream_event(j->stream, NULL, last);
        dd_stream_raw(j->stream, "data: [DONE]\n\n");
    } else if (rc != DOC_ECANCELLED) {
        dd_stream_event(j->stream, NULL,
                        json_pack("{s:{s:s,s:s}}", "error", "message", e.msg, "type",
                                  j->busy ? "busy" : "server_error"));
    }
    dd_stream_close(j->stream);
    dd_stream_release(j->stream);
    dd_server *srv = j->srv;
    gen_free(g);
    j->ext = NULL;
    dd_job_free(j);
    dd_producer_done(srv);
    return NULL;
}

/* parse: the request's messages and sampling into g; 0, or rs holds the error */
static int parse(dd_server *srv, const json_t *o, gen_req *g, dd_resp *rs)
{
    const json_t *msgs = json_object_get(o, "messages");
    size_t n = json_array_size(msgs);
    if (!json_is_array(msgs) || !n || n > MAX_MESSAGES) {
        dd_error(rs, 400, "bad_field", "field messages: an array of 1..%d messages is expected", MAX_MESSAGES);
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        const json_t *m = json_array_get(msgs, i);
        const char *role = json_string_value(json_object_get(m, "role"));
        static const char *const roles[] = {"system", "user", "assistant"};
        const char *r = NULL;
        for (int k = 0; role && k < 3; k++)
            if (!strcmp(role, roles[k])) r = roles[k];
        char *t = r ? dd_message_text(json_object_get(m, "content")) : NULL;
        if (!t) {
            dd_error(rs, 400, "bad_field",
                     "field messages[%zu]: role system, user or assistant and content (a string or "
                     "text parts) are expected", i);
            return -1;
        }
        g->texts[g->n] = t;
        g->msgs[g->n].role = r;
        g->msgs[g->n++].content = t;
    }
    llm_sampling_default(&g->s);
    g->s.max_tokens = srv->opts.answer_tokens > 0 ? srv->opts.answer_tokens : 256;
    double temperature = 0, top_p = 1, rp = 1;
    int top_k = 0, seed = 0;
    if (dd_int_field(o, "max_tokens", 1, MAX_GEN_TOKENS, &g->s.max_tokens, rs) ||
        dd_int_field(o, "max_completion_tokens", 1, MAX_GEN_TOKENS, &g->s.max_tokens, rs) ||
        dd_num_field(o, "temperature", 0, 2, &temperature, rs) ||
        dd_num_field(o, "top_p", 0, 1, &top_p, rs) || dd_int_field(o, "top_k", 0, 1000, &top_k, rs) ||
        dd_int_field(o, "seed", 0, 1 << 30, &seed, rs) ||
        dd_num_field(o, "repeat_penalty", 0.5, 2, &rp, rs) ||
        dd_num_field(o, "repetition_penalty", 0.5, 2, &rp, rs))
        return -1;
    g->s.temperature = (float)temperature;
    g->s.top_p = (float)top_p;
    g->s.top_k = top_k;
    g->s.seed = (uint64_t)seed;
    g->s.repeat_penalty = (float)rp;
    const json_t *stop = json_object_get(o, "stop");
    size_t ns = json_is_string(stop) ? 1 : json_array_size(stop);
    if (stop && !json_is_null(stop) && ((!json_is_string(stop) && !json_is_array(stop)) || ns > MAX_STOP)) {
        dd_error(rs, 400, "bad_field", "field stop: a string or up to %d strings", MAX_STOP);
        return -1;
    }
    for (size_t i = 0; stop && i < ns; i++) {
        const char *t = json_string_value(json_is_string(stop) ? stop : json_array_get(stop, i));
        if (!t || !*t || strlen(t) > MAX_STOP_BYTES) {
            dd_error(rs, 400, "bad_field", "field stop[%zu]: 1..%d bytes", i, MAX_STOP_BYTES);
            return -1;
        }
        if (!(g->stop[g->s.n_stop] = strdup(t))) {
            dd_error(rs, 500, "memory", "out of memory");
            return -1;
        }
        g->s.n_stop++;
    }
    g->s.stop = (const char *const *)g->stop;
    return 0;
}

void dd_route_generate(dd_server *srv, const dd_req *rq, const json_t *o, int stream, dd_resp *rs)
{
    if (!dd_is_admin(srv, &rq->caller)) {
        dd_error(rs, 403, "not_admin",
                 "model %s (generation without retrieval or filters) needs an admin ([daemon] admins)",
                 DD_RAW_MODEL);
        return;
    }
    dd_job *j = calloc(1, sizeof *j);
    gen_req *g = calloc(1, sizeof *g);
    if (!j || !g) {
        free(j);
        free(g);
        dd_error(rs, 500, "memory", "out of memory");
        return;
    }
    j->srv = srv;
    j->ext = g;
    buf_init(&g->text, 1 << 20);
    pthread_rwlock_rdlock(&srv->reload_rw); /* srv->opts */
    int bad = parse(srv, o, g, rs);
    pthread_rwlock_unlock(&srv->reload_rw);
    if (bad) goto done;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    g->created = ts.tv_sec;
    snprintf(g->id, sizeof g->id, "chatcmpl-%s-%lld", rq->id, (long long)ts.tv_nsec);
    if (stream) {
        if (!(j->stream = dd_stream_new())) {
            dd_error(rs, 500, "memory", "out of memory");
            goto done;
        }
        if (dd_spawn(srv, gen_thread, j, rs)) goto done;
        return; /* the thread owns j and g */
    }
    doc_err e = {0};
    int rc = run(j, &e);
    if (rc == DOC_ECANCELLED && g->timed_out) rc = DOC_OK; /* cut short, said by "length" */
    if (j->busy) dd_error(rs, 503, "busy", "%s", e.msg);
    else if (rc == DOC_EINVAL || rc == DOC_ELIMIT) dd_error(rs, 400, "bad_field", "field messages: %s", e.msg);
    else if (rc) dd_error(rs, 500, "generate", "%s", e.msg);
    else
        rs->json = json_pack("{s:s,s:s,s:I,s:s,s:[{s:i,s:{s:s,s:s%},s:s}],s:o}", "id", g->id, "object",
                             "chat.completion", "created", (json_int_t)g->created, "model",
                             DD_RAW_MODEL, "choices", "index", 0, "message", "role", "assistant",
                             "content", g->text.data ? g->text.data : "", g->text.len,
                             "finish_reason", finish(g), "usage", usage(g));
done:
    gen_free(g);
    j->ext = NULL;
    if (j->stream) {
        dd_stream_release(j->stream);
        dd_stream_release(j->stream);
        j->stream = NULL;
    }
    dd_job_free(j);
}
