/*
 * common.c - what the in-process commands share: the common flags, the
 * config, opening the store and the models, signals, JSON output.
 */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "ingest/ingest.h"
#include "rag/rag.h"

/* set by SIGINT/SIGTERM: work stops between documents and what is done is kept
 * (the only mutable global of the program: a signal handler needs one) */
volatile int cli_stop;

static void on_signal(int sig)
{
    (void)sig;
    cli_stop = 1;
}

void cli_catch_signals(void)
{
    struct sigaction sa = {0};
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

/* ---- common flags and opening ------------------------------------------- */

/* common_flag: 0 when c was one of the common flags, -1 when not, else an exit code */
static int common_flag(common *a, int c)
{
    switch (c) {
    case C_DATA: a->data = optarg; return 0;
    case C_SOCKET: a->socket = optarg; return 0;
    case C_LOCAL: a->local = 1; return 0;
    case C_GENERATOR: a->generator = optarg; return 0;
    case C_EMBEDDER: a->embedder = optarg; return 0;
    case C_CONFIG: a->config_path = optarg; return 0;
    case 'c': a->collection = optarg; return 0;
    case C_JSON: a->json = 1; return 0;
    case 'q': a->quiet = 1; return 0;
    case 'o':
        if (a->n_over == 32) return cli_usage_error(a->cmd, "at most 32 -o options");
        a->overrides[a->n_over++] = optarg;
        return 0;
    }
    return -1;
}


/* cli_parse_flags: run getopt over the common flags and the command's own; -1 when
 * the command should go on (optind at its first operand), else the exit code
 * (0 after --help). */
int cli_parse_flags(common *a, int argc, char **argv, const char *shortopts,
                       const struct option *lo, const char *help, own_flag_fn own)
{
    int c, r;
    optind = 1;
    while ((c = getopt_long(argc, argv, shortopts, lo, NULL)) != -1) {
        if ((r = common_flag(a, c)) >= 0 || (own && (r = own(a, c)) >= 0)) {
            if (r > 0) return r;
            continue;
        }
        if (c == 'h') return fputs(help, stdout), 0;
        return cli_usage_error(a->cmd, "unknown option");
    }
    return -1;
}

/* cli_print_json: one compact line on stdout; takes the reference to o */
void cli_print_json(json_t *o)
{
    char *txt = json_dumps(o, JSON_COMPACT);
    if (txt) puts(txt);
    free(txt);
    json_decref(o);
}

int cli_load_config(common *a)
{
    doc_err e = {0};
    if (config_load(a->config_path, &a->cfg, &e)) return cli_fail("config", &e);
    for (int i = 0; i < a->n_over; i++)
        if (config_set(&a->cfg, a->overrides[i], &e)) return cli_fail("-o", &e);
    if (a->data) {
        char abs[512];
        int n;
        if (a->data[0] != '/' && getcwd(abs, sizeof abs))
            n = snprintf(a->cfg.data_dir, sizeof a->cfg.data_dir, "%s/%s", abs, a->data);
        else
            n = snprintf(a->cfg.data_dir, sizeof a->cfg.data_dir, "%s", a->data);
        if (n < 0 || (size_t)n >= sizeof a->cfg.data_dir)
            return cli_usage_error(a->cmd, "--data: path too long");
    }
    /* --generator / --embedder: a path (relative to the current directory) or a URL */
    if (a->generator && snprintf(a->cfg.generator, sizeof a->cfg.generator, "%s", a->generator) >=
                            (int)sizeof a->cfg.generator)
        return cli_usage_error(a->cmd, "--generator: too long");
    if (a->embedder && snprintf(a->cfg.embedder, sizeof a->cfg.embedder, "%s", a->embedder) >=
                           (int)sizeof a->cfg.embedder)
        return cli_usage_error(a->cmd, "--embedder: too long");
    return 0;
}

int cli_open_store(common *a, int with_model, int flags)
{
    doc_err e = {0};
    char name[256], sha[65], db[1100];
    int reindex = (flags & CLI_STORE_REINDEX) != 0;
    snprintf(db, sizeof db, "%s/docent.db", a->cfg.data_dir);
    if (!(flags & CLI_STORE_CREATE) && !file_exists(db)) { /* say so before loading models */
        fprintf(stderr, "docent: %s: no store here (nothing ingested yet; see docent ingest)\n",
                a->cfg.data_dir);
        return 1;
    }
    idx_opts io = {.data_dir = a->cfg.data_dir,
                   .hnsw_threshold = a->cfg.hnsw_threshold,
                   .hnsw_factory = a->cfg.hnsw_factory,
                   .hnsw_ef_search = a->cfg.hnsw_ef_search,
                   .allow_embedder_change = reindex};
    if (with_model) {
        llm_opts lo;
        llm_remote_opts ro;
        llm_opts_from_config(&a->cfg, LLM_ENCODER, &lo, &ro);
        if (llm_model_open(a->cfg.embedder, &lo, &a->m, &e)) return cli_fail("embedder", &e);
        if (llm_model_kind(a->m) != LLM_ENCODER) {
            fprintf(stderr, "docent: embedder %s is not an encoder model\n", a->cfg.embedder);
            return 1;
        }
        if (ing_embedder_identity(llm_model_source(a->m), name, sha, &e)) return cli_fail("embedder", &e);
        io.embedder_name = name;
        io.embedder_sha256 = sha;
        io.dim = llm_embed_dim(a->m);
    }
    if (idx_open(&io, &a->s, &e)) return cli_fail(NULL, &e);
    return 0;
}

int cli_open_answerer(common *a)
{
    doc_err e = {0};
    llm_opts lo;
    llm_remote_opts ro;
    llm_opts_from_config(&a->cfg, LLM_DECODER, &lo, &ro);
    if (llm_model_open(a->cfg.generator, &lo, &a->gen, &e)) return cli_fail("generator", &e);
    if (llm_model_kind(a->gen) != LLM_DECODER) {
        fprintf(stderr, "docent: generator %s is not a decoder model\n", a->cfg.generator);
        return 1;
    }
    if (prompt_set_load(a->cfg.prompts_dir, &a->prompts, &e)) return cli_fail("prompts", &e);
    return 0;
}

void cli_close_all(common *a)
{
    idx_close(&a->s);
    llm_model_close(&a->m);
    llm_model_close(&a->gen);
    prompt_set_free(&a->prompts);
}

/* cli_redact_hits: passages shown to a user go through the PII/secret filter
 * ([safety] redact); each hit's text is replaced by its redacted copy */
int cli_redact_hits(idx_hit *hits, int n, unsigned cats)
{
    for (int i = 0; i < n && cats; i++) {
        buf out;
        buf_init(&out, 0);
        int nr = 0;
        if (rag_redact(hits[i].text, strlen(hits[i].text), cats, &out, NULL, 0, &nr)) {
            buf_free(&out);
            return -1;
        }
        if (!nr) {
            buf_free(&out);
            continue;
        }
        char *t = buf_steal(&out, NULL);
        if (!t) return -1;
        free(hits[i].text);
        hits[i].text = t;
    }
    return 0;
}

int cli_resolve_collection(common *a, int64_t *id)
{
    idx_collection col;
    if (idx_collection_find(a->s, a->collection, &col)) {
        fprintf(stderr, "docent: no collection named '%s' (see docent collections)\n", a->collection);
        return 1;
    }
    *id = col.id;
    return 0;
}

