/*
 * fuzz_route.c - libFuzzer target for docentd's request handling after HTTP:
 * body parsing (JSON, depth, fields), routing, access checks and the route
 * handlers themselves, on a real store with the real embedder (the routes
 * that need the generator get none: they must fail cleanly).
 *
 * Input: "METHOD PATH\n" then the body.  The first byte's low bit picks the
 * caller: root (an admin) or uid 65534 (nobody: readers "*" only).  Routes
 * that change the fixture (ingest, collection changes, deletes) are skipped.
 * DOCENT_MODELS (default "models") must hold all-minilm-l6-v2; the store is
 * made in a temporary directory at start with two small collections.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "daemon/internal.h"
#include "ingest/ingest.h"

static dd_server g_srv; /* the fuzzer's process-wide server */

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    dd_server *s = &g_srv;
    doc_err e = {0};
    const char *models = getenv("DOCENT_MODELS");
    char emb[1024], dir[] = "/tmp/docent-fuzz-route-XXXXXX";
    snprintf(emb, sizeof emb, "%s/all-minilm-l6-v2", models && *models ? models : "models");
    if (!mkdtemp(dir)) abort();
    config_defaults(&s->cfg);
    snprintf(s->cfg.data_dir, sizeof s->cfg.data_dir, "%s", dir);
    snprintf(s->cfg.embedder, sizeof s->cfg.embedder, "%s", emb);
    s->cfg.max_json_depth = 16;
    rag_opts_default(&s->opts);
    dd_server_init(s, 1); /* one generator slot, with no generator in it */
    llm_opts lo = {.n_threads = 1};
    char name[256], sha[65];
    if (llm_model_open(emb, &lo, &s->embedder, &e) || ing_embedder_identity(emb, name, sha, &e) ||
        prompt_set_load("prompts", &s->prompts, &e)) {
        fprintf(stderr, "fuzz_route: %s (run from the repository root after make models)\n", e.msg);
        exit(1);
    }
    idx_opts io = {.data_dir = dir, .embedder_name = name, .embedder_sha256 = sha,
                   .dim = llm_embed_dim(s->embedder)};
    if (idx_open(&io, &s->store, &e)) abort();
    ing_ctx *ic;
    ing_opts ig = {.collection = "public"};
    ing_summary sum;
    static const char t1[] = "# WAL\n\nWrite-ahead logging lets readers and writers work at once.";
    static const char t2[] = "# Budget\n\nThe secret budget is 4.2 million euros.";
    if (ing_new(s->store, s->embedder, &ig, &ic, &e) ||
        ing_add_text(ic, "docs/wal.md", "WAL", "markdown", t1, sizeof t1 - 1, &sum, &e))
        abort();
    ing_free(&ic);
    ig.collection = "private";
    if (ing_new(s->store, s->embedder, &ig, &ic, &e) ||
        ing_add_text(ic, "docs/budget.md", "Budget", "markdown", t2, sizeof t2 - 1, &sum, &e))
        abort();
    ing_free(&ic);
    if (idx_collection_set_readers(s->store, "private", "uid:0")) abort();
    s->started = time_now();
    s->self_uid = 0;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 4 || size > 1 << 16) return 0;
    const char *nl = memchr(data + 1, '\n', size - 1);
    if (!nl) return 0;
    char line[512];
    size_t ll = (size_t)(nl - (const char *)data) - 1;
    if (ll >= sizeof line) return 0;
    memcpy(line, data + 1, ll);
    line[ll] = 0;
    char *sp = strchr(line, ' ');
    if (!sp) return 0;
    *sp = 0;
    size_t bl = size - (size_t)(nl + 1 - (const char *)data);
    char *body = malloc(bl + 1);
    memcpy(body, nl + 1, bl);
    body[bl] = 0;
    /* routes that change the fixture are left out: ingest would read whatever
     * paths the fuzzer names, and collection or delete changes would make the
     * store (and the private-text check below) depend on earlier inputs */
    if (!strncmp(sp + 1, "/v1/ingest", 10) || !strcmp(line, "DELETE") ||
        (!strcmp(line, "POST") && !strncmp(sp + 1, "/v1/collections", 15))) {
        free(body);
        return 0;
    }
    dd_req rq = {.method = line, .path = sp + 1, .body = body, .body_len = bl};
    rq.caller.known = 1;
    rq.caller.uid = (data[0] & 1) ? 65534 : 0;
    rq.caller.gid = rq.caller.uid;
    snprintf(rq.id, sizeof rq.id, "fuzz");
    dd_resp rs = {.status = 200};
    dd_route(&g_srv, &rq, &rs);
    if (rs.stream) { /* drain and let the producer finish */
        dd_stream *st = rs.stream;
        pthread_mutex_lock(&st->mu);
        while (!st->closed) pthread_cond_wait(&st->cv, &st->mu);
        pthread_mutex_unlock(&st->mu);
        dd_stream_release(st);
    }
    pthread_mutex_lock(&g_srv.stats);
    while (g_srv.producers > 0) pthread_cond_wait(&g_srv.producers_done, &g_srv.stats);
    pthread_mutex_unlock(&g_srv.stats);
    /* nobody may ever see the private collection's text (unless the input
     * itself carried it: error messages quote what they were given) */
    if (rq.caller.uid != 0 && rs.json && !memmem(data, size, "4.2 million", 11)) {
        char *txt = json_dumps(rs.json, JSON_COMPACT);
        if (txt && strstr(txt, "4.2 million")) abort();
        free(txt);
    }
    if (rs.status < 100 || rs.status > 599) abort();
    json_decref(rs.json);
    free(rs.text);
    free(body);
    return 0;
}
