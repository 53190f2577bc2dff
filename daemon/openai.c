/*
 * openai.c - the OpenAI-compatible routes, so that chatbots and the `openai`
 * client libraries can use docent as their model:
 *
 *   POST /v1/chat/completions   the last user message is answered through the
 *                               answer path (the earlier user/assistant turns
 *                               are its conversation); the cited sources are
 *                               appended to the content as a "Sources:" list
 *                               and returned in a `citations` field; JSON or
 *                               streamed chunks ("data: {...}" then
 *                               "data: [DONE]") with "stream": true
 *   POST /v1/embeddings         the embedder's vectors ("input": a string or
 *                               an array of strings)
 *   GET  /v1/models             "docent" (chat), the embedder, and
 *                               "docent-generator" (the generator alone, for
 *                               admins: generate.c)
 *
 * Access is the same as /v1/ask: only the caller's readable collections are
 * searched.  Unknown request fields are ignored, as OpenAI's own server does
 * for fields it does not use; the ones docent uses are checked.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "daemon/internal.h"
#include "ingest/ingest.h"

#define CHAT_MODEL "docent"
enum { MAX_MESSAGES = 64, MAX_INPUTS = 256, MAX_INPUT_BYTES = 32 * 1024 };

/* embed_model: the embedder's name: the last part of its path, or the model
 * after '#' in a remote one's URL#MODEL */
static const char *embed_model(const dd_server *srv)
{
    const char *src = llm_model_source(srv->embedder);
    const char *h = strrchr(src, '#');
    if (llm_model_is_remote(srv->embedder) && h && h[1]) return h + 1;
    const char *b = strrchr(src, '/');
    return b && b[1] ? b + 1 : src;
}

char *dd_message_text(const json_t *content)
{
    if (json_is_string(content)) return strdup(json_string_value(content));
    if (!json_is_array(content)) return NULL;
    buf b;
    buf_init(&b, 1 << 20);
    size_t i;
    json_t *part;
    json_array_foreach(content, i, part) {
        const char *t = json_string_value(json_object_get(part, "text"));
        if (t && (b.len ? buf_putc(&b, '\n') : 0) == DOC_OK) buf_puts(&b, t);
    }
    if (!b.data && buf_append(&b, "", 0)) return NULL;
    return buf_steal(&b, NULL);
}

/* sources_text: the cited sources as the list appended to the content */
static char *sources_text(const rag_answer *a)
{
    buf b;
    buf_init(&b, 0);
    int any = 0;
    for (int n = 1; n <= a->n_given; n++)
        for (int i = 0; i < a->n_passages; i++) {
            const rag_passage *p = &a->passages[i];
            if (p->n != n || !p->cited) continue;
            buf_printf(&b, "%s[%d] %s \u2014 %s%s%s", any ? "\n" : "\n\nSources:\n", n, p->title,
                       p->uri, *p->heading ? "#" : "", p->heading);
            if (p->page > 0) buf_printf(&b, ", p. %d", p->page);
            if (p->line_start > 0) buf_printf(&b, ", lines %d\u2013%d", p->line_start, p->line_end);
            any = 1;
        }
    if (!b.data && buf_append(&b, "", 0)) return NULL;
    return buf_steal(&b, NULL);
}

static const char *finish_reason(const rag_answer *a)
{
    return a->stop_reason == LLM_STOP_LENGTH || a->stop_reason == LLM_STOP_CONTEXT ? "length" : "stop";
}

/* ---- chat completions ---------------------------------------------------- */

typedef struct chat_ext {
    char id[40];
    int64_t created;
    int sent_role;
    rag_turn turns[MAX_MESSAGES];
    int n_turns;
} chat_ext;

static json_t *chunk(const chat_ext *x, json_t *delta, const char *finish)
{
    return json_pack("{s:s,s:s,s:I,s:s,s:[{s:i,s:o,s:o}]}", "id", x->id, "object",
                     "chat.completion.chunk", "created", (json_int_t)x->created, "model", CHAT_MODEL,
                     "choices", "index", 0, "delta", delta, "finish_reason",
                     finish ? json_string(finish) : json_null());
}

static int chat_text(void *ud, const char *text, size_t len)
{
    dd_job *j = ud;
    chat_ext *x = j->ext;
    if (!x->sent_role) {
        dd_stream_event(j->stream, NULL, chunk(x, json_pack("{s:s,s:s}", "role", "assistant", "content", ""), NULL));
        x->sent_role = 1;
    }
    dd_stream_event(j->stream, NULL, chunk(x, json_pack("{s:s%}", "content", text, len), NULL));
    return j->stream->cancel || j->srv->stopping;
}

static void free_turns(chat_ext *x)
{
    for (int i = 0; i < x->n_turns; i++) {
        free((char *)x->turns[i].question);
        free((char *)x->turns[i].answer);
    }
    x->n_turns = 0;
}

static void *chat_thread(void *arg)
{
    dd_job *j = arg;
    chat_ext *x = j->ext;
    rag_answer a = {0};
    doc_err e = {0};
    int rc = dd_run_ask(j, &a, &e);
    if (rc == DOC_OK) {
        if (!x->sent_role) /* refusals and "not found" arrive whole, through on_text too */
            chat_text(j, "", 0);
        char *src = sources_text(&a);
        if (src && *src) dd_stream_event(j->stream, NULL, chunk(x, json_pack("{s:s}", "content", src), NULL));
        free(src);
        json_t *last = chunk(x, json_object(), finish_reason(&a));
        json_object_set_new(last, "citations", rag_passages_json(a.passages, a.n_passages, 1));
        json_object_set_new(last, "usage", json_pack("{s:i,s:i,s:i}", "prompt_tokens", a.prompt_tokens,
                                                     "completion_tokens", a.answer_tokens,
                                                     "total_tokens", a.prompt_tokens + a.answer_tokens));
        dd_stream_event(j->stream, NULL, last);
        dd_stream_raw(j->stream, "data: [DONE]\n\n");
    } else if (rc != DOC_ECANCELLED) {
        dd_stream_event(j->stream, NULL,
                        json_pack("{s:{s:s,s:s}}", "error", "message", e.msg, "type", "server_error"));
    }
    rag_answer_free(&a);
    dd_stream_close(j->stream);
    dd_stream_release(j->stream);
    dd_server *srv = j->srv;
    free_turns(x);
    free(x);
    dd_job_free(j);
    dd_producer_done(srv);
    return NULL;
}

/* chat_history: the messages into the job: the last user message is the
 * question; earlier user messages each with the assistant reply after them
 * are the conversation; system messages are not used (docent's own rules
 * apply).  0 ok, else rs holds the error. */
static int chat_history(const json_t *msgs, dd_job *j, chat_ext *x, dd_resp *rs)
{
    if (!json_is_array(msgs) || !json_array_size(msgs)) {
        dd_error(rs, 400, "bad_field", "field messages: a non-empty array is expected");
        return -1;
    }
    size_t n = json_array_size(msgs);
    if (n > MAX_MESSAGES) {
        dd_error(rs, 400, "bad_field", "field messages: at most %d", MAX_MESSAGES);
        return -1;
    }
    char *pending_q = NULL;
    for (size_t i = 0; i < n; i++) {
        json_t *m = json_array_get(msgs, i);
        const char *role = json_string_value(json_object_get(m, "role"));
        char *text = role ? dd_message_text(json_object_get(m, "content")) : NULL;
        if (!role || !text) {
            free(text);
            free(pending_q);
            dd_error(rs, 400, "bad_field", "field messages[%zu]: role and content (a string or text parts) are expected", i);
            return -1;
        }
        if (!strcmp(role, "user")) {
            free(pending_q);
            pending_q = text;
        } else if (!strcmp(role, "assistant") && pending_q) {
            x->turns[x->n_turns].question = pending_q;
            x->turns[x->n_turns++].answer = text;
            pending_q = NULL;
        } else {
            free(text);
        }
    }
    const json_t *last = json_array_get(msgs, n - 1);
    if (!pending_q || strcmp(json_string_value(json_object_get(last, "role")), "user")) {
        free(pending_q);
        dd_error(rs, 400, "bad_field", "field messages: the last message must be the user's question");
        return -1;
    }
    j->question = pending_q;
    j->history = x->turns;
    j->n_history = x->n_turns;
    return 0;
}

void dd_route_chat(dd_server *srv, const dd_req *rq, dd_resp *rs)
{
    json_t *o = dd_parse_body(srv, rq, rs);
    if (!o) return;
    const char *model = CHAT_MODEL, *coll = NULL;
    int stream = 0, max_tokens = 0;
    dd_job *j = calloc(1, sizeof *j);
    chat_ext *x = calloc(1, sizeof *x);
    if (!j || !x) {
        dd_error(rs, 500, "memory", "out of memory");
        goto done;
    }
    j->srv = srv;
    j->ext = x;
    j->temperature = -1;
    if (dd_str_field(o, "model", 0, &model, rs) || dd_str_field(o, "collection", 0, &coll, rs) ||
        dd_bool_field(o, "stream", &stream, rs) ||
        dd_int_field(o, "max_tokens", 1, 1 << 16, &max_tokens, rs) ||
        dd_int_field(o, "max_completion_tokens", 1, 1 << 16, &max_tokens, rs) ||
        dd_num_field(o, "temperature", 0, 2, &j->temperature, rs))
        goto done;
    if (!strcmp(model, DD_RAW_MODEL)) {
        dd_route_generate(srv, rq, o, stream, rs);
        goto done;
    }
    if (strcmp(model, CHAT_MODEL)) {
        dd_error(rs, 404, "model_not_found", "model %s: this server has \"%s\" and \"%s\" (see /v1/models)",
                 model, CHAT_MODEL, DD_RAW_MODEL);
        goto done;
    }
    if (chat_history(json_object_get(o, "messages"), j, x, rs)) goto done;
    j->answer_tokens = max_tokens;
    dd_use(srv, DD_USE_STORE, 0, 1);
    int sc = dd_scope(srv, rq, coll, &j->ids, &j->n_ids, rs);
    dd_use(srv, DD_USE_STORE, 0, 0);
    if (sc) goto done;
    if (!j->n_ids) {
        dd_error(rs, 403, "no_collection", "there is no collection you can read");
        goto done;
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    x->created = ts.tv_sec;
    snprintf(x->id, sizeof x->id, "chatcmpl-%s-%lld", rq->id, (long long)ts.tv_nsec);
    if (stream) {
        if (!(j->stream = dd_stream_new())) {
            dd_error(rs, 500, "memory", "out of memory");
            goto done;
        }
        j->on_text = chat_text;
        if (dd_spawn(srv, chat_thread, j, rs)) goto done;
        j = NULL; /* the thread owns j and x */
        x = NULL;
        goto done;
    }
    j->on_text = NULL;
    rag_answer a = {0};
    doc_err e = {0};
    /* no stream: tokens are not needed one by one */
    int rc = dd_run_ask(j, &a, &e);
    if (rc == DOC_EINVAL) dd_error(rs, 400, "bad_field", "field messages: %s", e.msg);
    else if (j->busy) dd_error(rs, 503, "busy", "%s", e.msg);
    else if (rc) dd_error(rs, 500, "answer", "%s", e.msg);
    else {
        char *src = sources_text(&a);
        buf content;
        buf_init(&content, 0);
        buf_puts(&content, a.text ? a.text : "");
        buf_puts(&content, src ? src : "");
        rs->json = json_pack(
            "{s:s,s:s,s:I,s:s,s:[{s:i,s:{s:s,s:s},s:s}],s:{s:i,s:i,s:i},s:o}", "id", x->id,
            "object", "chat.completion", "created", (json_int_t)x->created, "model", CHAT_MODEL,
            "choices", "index", 0, "message", "role", "assistant", "content",
            content.data ? content.data : "", "finish_reason", finish_reason(&a), "usage",
            "prompt_tokens", a.prompt_tokens, "completion_tokens", a.answer_tokens, "total_tokens",
            a.prompt_tokens + a.answer_tokens, "citations",
            rag_passages_json(a.passages, a.n_passages, 1));
        json_object_set_new(rs->json, "grounded", json_boolean(a.grounded));
        json_object_set_new(rs->json, "not_found", json_boolean(a.not_found != RAG_FOUND));
        json_object_set_new(rs->json, "refused", json_boolean(a.refused));
        buf_free(&content);
        free(src);
    }
    rag_answer_free(&a);
done:
    if (x) {
        free_turns(x);
        free(x);
    }
    if (j) {
        j->ext = NULL;
        if (j->stream) {
            dd_stream_release(j->stream);
            dd_stream_release(j->stream);
        }
        dd_job_free(j);
    }
    json_decref(o);
}

/* ---- embeddings ---------------------------------------------------------- */

void dd_route_embeddings(dd_server *srv, const dd_req *rq, dd_resp *rs)
{
    json_t *o = dd_parse_body(srv, rq, rs);
    if (!o) return;
    const char *model = NULL;
    const char **texts = NULL;
    float *vecs = NULL;
    if (dd_str_field(o, "model", 0, &model, rs)) goto done;
    if (model && strcmp(model, embed_model(srv))) {
        dd_error(rs, 404, "model_not_found", "model %s: the embedder here is \"%s\"", model,
                 embed_model(srv));
        goto done;
    }
    json_t *in = json_object_get(o, "input");
    size_t n = json_is_string(in) ? 1 : json_is_array(in) ? json_array_size(in) : 0;
    if (!n || n > MAX_INPUTS) {
        dd_error(rs, 400, "bad_field", "field input: a string or 1..%d strings", MAX_INPUTS);
        goto done;
    }
    texts = calloc(n, sizeof *texts);
    int dim = llm_embed_dim(srv->embedder);
    vecs = malloc(n * (size_t)dim * sizeof *vecs);
    if (!texts || !vecs) {
        dd_error(rs, 500, "memory", "out of memory");
        goto done;
    }
    int tokens = 0;
    for (size_t i = 0; i < n; i++) {
        json_t *v = json_is_string(in) ? in : json_array_get(in, i);
        const char *t = json_string_value(v);
        if (!t || !*t || strlen(t) > MAX_INPUT_BYTES || !utf8_valid(t, strlen(t))) {
            dd_error(rs, 400, "bad_field", "field input[%zu]: 1..%d bytes of UTF-8 text", i, MAX_INPUT_BYTES);
            goto done;
        }
        texts[i] = t;
        int32_t *ids = NULL;
        int nt = 0;
        if (llm_tokenize(srv->embedder, t, strlen(t), 1, 0, &ids, &nt, NULL) == DOC_OK) tokens += nt;
        free(ids);
    }
    doc_err e = {0};
    dd_use(srv, DD_USE_EMBEDDER, DD_PRIO_HIGH, 1);
    int rc = llm_embed(srv->embedder, texts, (int)n, vecs, NULL, &e);
    dd_use(srv, DD_USE_EMBEDDER, DD_PRIO_HIGH, 0);
    if (rc) {
        dd_error(rs, 500, "embed", "embed: %s", e.msg);
        goto done;
    }
    json_t *data = json_array();
    for (size_t i = 0; i < n; i++) {
        json_t *v = json_array();
        for (int d = 0; d < dim; d++) json_array_append_new(v, json_real(vecs[i * (size_t)dim + d]));
        json_array_append_new(data, json_pack("{s:s,s:I,s:o}", "object", "embedding", "index",
                                              (json_int_t)i, "embedding", v));
    }
    rs->json = json_pack("{s:s,s:o,s:s,s:{s:i,s:i}}", "object", "list", "data", data, "model",
                         embed_model(srv), "usage", "prompt_tokens", tokens, "total_tokens", tokens);
done:
    free(texts);
    free(vecs);
    json_decref(o);
}

/* ---- models -------------------------------------------------------------- */

void dd_route_models(dd_server *srv, const dd_req *rq, dd_resp *rs)
{
    (void)rq;
    int64_t t = (int64_t)(time(NULL) - (time_t)(time_now() - srv->started));
    rs->json = json_pack("{s:s,s:[{s:s,s:s,s:I,s:s},{s:s,s:s,s:I,s:s},{s:s,s:s,s:I,s:s}]}",
                         "object", "list", "data", "id", CHAT_MODEL, "object", "model", "created",
                         (json_int_t)t, "owned_by", "docent", "id", embed_model(srv), "object",
                         "model", "created", (json_int_t)t, "owned_by", "docent", "id",
                         DD_RAW_MODEL, "object", "model", "created", (json_int_t)t, "owned_by",
                         "docent");
}
