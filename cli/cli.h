/*
 * cli.h - declarations shared by the files of cli/ (the `docent` program).
 */
#ifndef DOCENT_CLI_H
#define DOCENT_CLI_H

#include <getopt.h>

#include "core/config.h"
#include "core/core.h"
#include "core/json.h"
#include "index/index.h"
#include "llm/llm.h"
#include "prompts/prompts.h"

#define EXIT_USAGE 2

/* cli_fail: print "docent: [what: ]message" for a runtime error; returns 1. */
int cli_fail(const char *what, const doc_err *e);
/* cli_usage_error: print a usage problem with a pointer to --help; returns 2. */
int cli_usage_error(const char *cmd, const char *msg);

/* ---- flags, config and opening, shared by the in-process commands (common.c) */

typedef struct common {
    const char *cmd;
    const char *config_path;
    const char *data;
    const char *collection;
    const char *socket;        /* --socket: talk to docentd there */
    int local;                 /* --local: in-process even if DOCENT_SOCKET is set */
    const char *generator;     /* --generator PATH|URL: overrides [models] generator */
    const char *embedder;      /* --embedder PATH|URL: overrides [models] embedder */
    char cfg_socket[1024];     /* the config's [daemon] socket when cli_socket chose it */
    const char *overrides[32];
    int n_over;
    int json;
    int quiet;
    /* ingest */
    const char *inc[64], *exc[64];
    int n_inc, n_exc, watch, follow;
    /* search, ask, eval */
    int k, dense, bm25;
    int no_stream, retrieve_only;
    /* eval */
    double min_recall, min_mrr, min_cite, min_expect, min_not_found;
    const char *out;
    doc_config cfg;
    llm_model *m;              /* the embedder */
    llm_model *gen;            /* the generator (ask, chat, eval) */
    prompt_set *prompts;
    idx_store *s;
} common;

enum { C_DATA = 2000, C_CONFIG, C_JSON, C_WATCH, C_INCLUDE, C_EXCLUDE, C_FOLLOW, C_QUIET, C_MODE,
       C_NO_STREAM, C_RETRIEVE_ONLY, C_MIN_RECALL, C_MIN_MRR, C_MIN_CITE, C_MIN_EXPECT,
       C_MIN_NOT_FOUND, C_OUT, C_SOCKET, C_LOCAL, C_GENERATOR, C_EMBEDDER };

#define COMMON_LONGOPTS                                                                   \
    {"data", required_argument, 0, C_DATA}, {"config", required_argument, 0, C_CONFIG},  \
        {"collection", required_argument, 0, 'c'}, {"json", no_argument, 0, C_JSON},     \
        {"quiet", no_argument, 0, 'q'}, {"help", no_argument, 0, 'h'},                   \
        {"socket", required_argument, 0, C_SOCKET}, {"local", no_argument, 0, C_LOCAL},  \
        {"generator", required_argument, 0, C_GENERATOR},                                \
        {"embedder", required_argument, 0, C_EMBEDDER}

/* own_flag_fn: a command's own flags; same return convention as common_flag */
typedef int (*own_flag_fn)(common *a, int c);

/* set by SIGINT/SIGTERM once cli_catch_signals ran: long work stops cleanly
 * (the program's only mutable global: a signal handler needs one) */
extern volatile int cli_stop;
void cli_catch_signals(void);
/* cli_parse_flags: getopt over the common flags (--data --config -c --json -q
 * -o --help) and the command's own (own may be NULL); -1 when the command
 * should go on (optind at its first operand), else the exit code (0 after
 * --help). */
int cli_parse_flags(common *a, int argc, char **argv, const char *shortopts,
                    const struct option *lo, const char *help, own_flag_fn own);
/* cli_print_json: one compact line on stdout; takes the reference to o */
void cli_print_json(json_t *o);
/* cli_load_config: docent.conf (--config, $DOCENT_CONFIG, ...), then -o and --data */
int cli_load_config(common *a);
/* cli_open_store: the data directory's store; with_model: the embedder too (the
 * store checks its identity).  flags: CLI_STORE_CREATE makes a new store where
 * there is none (ingest; otherwise that is an error, said before any model
 * loads), CLI_STORE_REINDEX accepts a different embedder. */
enum { CLI_STORE_REINDEX = 1, CLI_STORE_CREATE = 2 };
int cli_open_store(common *a, int with_model, int flags);
/* cli_open_answerer: the generator and the prompt templates (after cli_open_store) */
int cli_open_answerer(common *a);
void cli_close_all(common *a);
/* cli_redact_hits: replace each hit's text by its redacted copy ([safety] redact) */
int cli_redact_hits(idx_hit *hits, int n, unsigned cats);
/* cli_resolve_collection: a->collection's id, or 1 after saying it does not exist */
int cli_resolve_collection(common *a, int64_t *id);

/* ---- the daemon (client.c) ------------------------------------------------ */

/* cli_socket: the daemon's socket for a command: --socket, else $DOCENT_SOCKET,
 * else the config's [daemon] socket when that path is a socket (the config is
 * read here, with --config and -o; not when --data names a store, which is
 * in-process); NULL (run in-process) with --local, --generator, --embedder
 * or none of them.  The result
 * is borrowed (from argv, the environment or a). */
const char *cli_socket(common *a);
/* cli_daemon_live: 1 when docentd answers GET /healthz at sock */
int cli_daemon_live(const char *sock);
/* cli_remote_fail: print "docent: [what: ]message" for a failed daemon call,
 * with what a 403 (the access rule) or a 429 (busy) means; returns 1. */
int cli_remote_fail(const char *what, long status, const doc_err *e);
/* cli_call: one request (body may be NULL); *out the reply's JSON (caller
 * decrefs).  A transport failure is DOC_EIO naming the socket; an error reply
 * is DOC_EINVAL with its message; *status the HTTP status. */
int cli_call(const char *sock, const char *method, const char *path, json_t *body, json_t **out,
             long *status, doc_err *err);
/* cli_sse_fn: one server-sent event; return non-zero to hang up (cancels) */
typedef int (*cli_sse_fn)(void *ud, const char *event, const char *data);
int cli_call_sse(const char *sock, const char *path, json_t *body, cli_sse_fn fn, void *ud,
                 long *status, doc_err *err);
int cmd_status(int argc, char **argv);

/* store commands (store_cmds.c): through docentd when cli_socket names one
 * (reindex and check: in-process only), else in-process */
int cmd_ingest(int argc, char **argv);
int cmd_search(int argc, char **argv);
int cmd_ls(int argc, char **argv);
int cmd_rm(int argc, char **argv);
int cmd_collections(int argc, char **argv);
int cmd_reindex(int argc, char **argv);
int cmd_check(int argc, char **argv);

/* answer commands (answer_cmds.c): ask, chat, eval */
int cmd_ask(int argc, char **argv);
int cmd_chat(int argc, char **argv);
int cmd_eval(int argc, char **argv);

#endif
