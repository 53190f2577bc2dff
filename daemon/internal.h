/*
 * internal.h - declarations shared by the files of daemon/ (docentd).
 *
 *   main.c     arguments, config, opening the store and models, the socket,
 *              signals (SIGTERM/SIGINT stop, SIGHUP reloads the prompts)
 *   server.c   HTTP/1.1 through libmicrohttpd (the only file that includes
 *              it): bodies with a cap, peer credentials, JSON and SSE replies
 *   routes.c   the routes, on plain request/response structs
 *   access.c   who the caller is and what it may read
 *   openai.c   the OpenAI-compatible routes
 *   jobs.c     ingest jobs
 *   systemd.c  socket activation and readiness notification
 *
 * Threads: libmicrohttpd runs one thread per connection.  The store and the
 * models are single-threaded objects, so every route that touches them holds
 * srv->work (answers and searches are served one at a time for now).
 */
#ifndef DOCENT_DAEMON_INTERNAL_H
#define DOCENT_DAEMON_INTERNAL_H

#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <sys/types.h>

#include "core/config.h"
#include "core/core.h"
#include "core/json.h"
#include "index/index.h"
#include "ingest/ingest.h"
#include "llm/llm.h"
#include "prompts/prompts.h"
#include "rag/rag.h"

/* Prometheus histograms: cumulative bucket counts, sum and count */
enum { DD_BUCKETS = 12, DD_MAX_ROUTES = 24, DD_STAGES = 5 };
typedef struct dd_hist {
    int64_t bucket[DD_BUCKETS]; /* le 0.005 .. 10, +Inf */
    double sum;
    int64_t count;
} dd_hist;
void dd_hist_add(dd_hist *h, double seconds);
extern const double dd_hist_bounds[DD_BUCKETS - 1];
/* answer stages recorded per answer: retrieve, prefill, decode, first text, total */
extern const char *const dd_stage_names[DD_STAGES];

/* an ingest job (jobs.c); fields under srv->stats */
enum { DD_JOBS = 32 };
enum { DD_JOB_QUEUED, DD_JOB_RUNNING, DD_JOB_DONE, DD_JOB_FAILED, DD_JOB_CANCELLED };
struct dd_server;
typedef struct dd_jobinfo {
    int64_t id;                 /* 0: a free slot */
    struct dd_server *srv;
    int state;
    char collection[128];
    ing_progress prog;
    char current[512];
    double elapsed;
    ing_summary sum;
    char error[512];
    json_t *notes;              /* [{kind, uri, why}], at most 200 */
} dd_jobinfo;

typedef struct dd_server {
    doc_config cfg;
    idx_store *store;
    llm_model *embedder, *generator;
    prompt_set *prompts;        /* swapped under work on SIGHUP */
    rag_opts opts;
    pthread_mutex_t work;       /* store, models, prompts */
    double started;             /* time_now() at start */
    uid_t self_uid;
    volatile int stopping;      /* SIGTERM: in-flight answers stop generating */
    /* counters, under stats */
    pthread_mutex_t stats;
    int64_t n_requests, n_errors, n_tokens;
    int in_flight;
    int producers;              /* streamed answers still running (under stats) */
    int64_t route_requests[DD_MAX_ROUTES], route_errors[DD_MAX_ROUTES];
    dd_hist route_latency[DD_MAX_ROUTES];
    dd_hist stage[DD_STAGES];
    int64_t n_refused, n_not_found, n_prompt_tokens;
    dd_jobinfo jobs[DD_JOBS];   /* under stats */
    int64_t last_job;
    pthread_cond_t jobs_changed;
    /* requests in flight per caller (uid, or API key name), under stats */
    struct { char who[72]; int n; } callers[64];
    pthread_cond_t producers_done;
} dd_server;

/* The caller: from SO_PEERCRED on the Unix socket, from its API key on TCP. */
typedef struct dd_caller {
    int known;                  /* 0: credentials unavailable (refused) */
    int tcp;                    /* 1: a TCP caller: uid/gid mean nothing, key names it */
    uid_t uid;
    gid_t gid;
    pid_t pid;
    char key[64];               /* TCP: the API key's NAME ("" without keys: anonymous) */
} dd_caller;

/* A request as the routes see it. */
typedef struct dd_req {
    const char *method;
    const char *path;           /* without the query string */
    const char *body;           /* NUL-terminated copy; "" when none */
    size_t body_len;
    int wants_sse;              /* Accept: text/event-stream */
    dd_caller caller;
    char id[24];                /* request id, in logs and the X-Request-Id header */
} dd_req;

/* A streamed reply (server-sent events): the producer appends, the server
 * drains.  Either side may end it: the producer with dd_stream_close, the
 * server (client gone) by setting cancel. */
typedef struct dd_stream {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    buf pending;                /* bytes not yet handed to the connection */
    size_t read_off;
    int closed;
    volatile int cancel;
    int refs;                   /* producer + server */
} dd_stream;

dd_stream *dd_stream_new(void);
/* dd_stream_event: append "event: NAME\ndata: JSON\n\n" (takes the reference
 * to data); name NULL: only "data: JSON\n\n" (OpenAI's streams). */
int dd_stream_event(dd_stream *s, const char *name, json_t *data);
/* dd_stream_raw: append bytes as they are ("data: [DONE]\n\n"). */
int dd_stream_raw(dd_stream *s, const char *text);
void dd_stream_close(dd_stream *s);
/* dd_stream_release: drop one reference; the last frees it. */
void dd_stream_release(dd_stream *s);

typedef struct dd_resp {
    int status;
    json_t *json;               /* a JSON body (owned), or */
    char *text;                 /* a plain body (owned; content_type says what) */
    const char *content_type;
    dd_stream *stream;          /* an SSE body (one reference owned) */
} dd_resp;

/* dd_error: status with {"error": {"status", "code", "message"}}. */
void dd_error(dd_resp *r, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* routes.c */
/* dd_route: run the route for rq; returns its index in the table (for the
 * per-route metrics), -1 when none matched */
int dd_route(dd_server *srv, const dd_req *rq, dd_resp *rs);
/* dd_route_name: "POST /v1/ask" for an index */
const char *dd_route_name(int idx, char *out, size_t cap);
int dd_route_count(void);
/* the helpers the route files share: a POST body as a JSON object (or NULL
 * with rs holding the error), typed fields (0 ok; absent fields keep *out),
 * the caller's readable collections (dd_readable, errors into rs) */
json_t *dd_parse_body(dd_server *srv, const dd_req *rq, dd_resp *rs);
int dd_str_field(const json_t *o, const char *key, int required, const char **out, dd_resp *rs);
int dd_int_field(const json_t *o, const char *key, int lo, int hi, int *out, dd_resp *rs);
int dd_bool_field(const json_t *o, const char *key, int *out, dd_resp *rs);
int dd_num_field(const json_t *o, const char *key, double lo, double hi, double *out, dd_resp *rs);
int dd_scope(dd_server *srv, const dd_req *rq, const char *name, int64_t **ids, int *n, dd_resp *rs);
/* dd_passages_json: given/dropped passages (cited_only 0) or the citations */
json_t *dd_passages_json(const rag_passage *p, int n, int cited_only);

/* One answer to produce, for /v1/ask and /v1/chat/completions. */
typedef struct dd_job {
    dd_server *srv;
    dd_stream *stream;          /* NULL: a JSON reply */
    char *question;
    int64_t *ids;
    int n_ids, k;
    int answer_tokens;          /* 0: the config's (a request can only lower it) */
    double temperature;         /* < 0: the config's */
    const rag_turn *history;    /* earlier turns (OpenAI messages), borrowed */
    int n_history;
    void *ext;                  /* the route's own state for its callbacks */
    llm_text_cb on_text;        /* NULL: the SSE "token" events of /v1/ask */
} dd_job;

/* dd_run_ask: answer j under srv->work (fills a; rag's status) */
int dd_run_ask(dd_job *j, rag_answer *a, doc_err *e);
void dd_job_free(dd_job *j);
/* dd_spawn: run fn(j) on a detached producer thread that streams into
 * j->stream (which must hold both references); on success rs->stream takes
 * the server's reference and the thread owns j; else rs holds a 503. */
int dd_spawn(dd_server *srv, void *(*fn)(void *), dd_job *j, dd_resp *rs);
/* dd_producer_done: a producer thread's last call (main waits for them) */
void dd_producer_done(dd_server *srv);

/* jobs.c: POST /v1/ingest, GET /v1/jobs/{id} */
void dd_route_ingest(dd_server *srv, const dd_req *rq, dd_resp *rs);
void dd_route_job(dd_server *srv, const dd_req *rq, dd_resp *rs);

/* openai.c: /v1/chat/completions, /v1/embeddings, /v1/models */
void dd_route_chat(dd_server *srv, const dd_req *rq, dd_resp *rs);
void dd_route_embeddings(dd_server *srv, const dd_req *rq, dd_resp *rs);
void dd_route_models(dd_server *srv, const dd_req *rq, dd_resp *rs);

/* access.c */
/* dd_list_matches: does caller match one entry of a readers/admins list
 * ("*", "uid:N", "user:NAME", "group:NAME", "key:NAME", comma-separated)?
 * uid/user/group entries never match a TCP caller; key entries only match one. */
int dd_list_matches(const char *list, const dd_caller *c);
/* dd_is_admin: root, the daemon's own user, or [daemon] admins. */
int dd_is_admin(const dd_server *srv, const dd_caller *c);
/* dd_readable: ids of the collections c may read (*ids malloc'd); with name
 * non-NULL only that one (DOC_ENOTFOUND: no such collection; 0 ids: not
 * readable).  Call under srv->work. */
int dd_readable(dd_server *srv, const dd_caller *c, const char *name, int64_t **ids, int *n);

/* server.c */
/* dd_reload: load the prompt templates again and swap them in (under work);
 * a failed load keeps the old set and is logged. */
void dd_reload(dd_server *srv);
/* dd_serve: serve on the bound, listening Unix socket fd (and the TCP socket
 * tcp_fd unless -1) until *stop (set by a signal handler); *hup set means:
 * reload the prompts (then cleared). */
int dd_serve(dd_server *srv, int fd, int tcp_fd, volatile sig_atomic_t *stop,
             volatile sig_atomic_t *hup, doc_err *err);
/* dd_key_lookup: the NAME of the configured key equal to secret (compared in
 * time independent of where they differ), into name; 0 when none matches */
int dd_key_lookup(const char *keys, const char *secret, char *name, size_t cap);

#endif
