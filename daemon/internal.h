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
 *   sched.c    who uses the store, the embedder and the generators, when
 *   watch.c    the config's watch folders: ingested at start, then followed
 *
 * Threads: libmicrohttpd runs one thread per connection; streamed answers and
 * ingest jobs run on threads of their own.  The store and the models are
 * single-threaded objects shared through sched.c: the store is taken per call,
 * the embedder per batch (queries before ingest), a generator per answer.
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

/* A pool of n interchangeable slots (sched.c) with two FIFO queues; a freed
 * slot goes to the oldest high-priority waiter, else the oldest low one. */
enum { DD_PRIO_LOW = 0, DD_PRIO_HIGH = 1 };
enum { DD_POOL_TIMEOUT = -1, DD_POOL_CANCELLED = -2 };
struct dd_waiter;
typedef struct dd_pool {
    pthread_mutex_t mu;
    int n;
    uint64_t free_mask;
    struct dd_waiter *head[2], *tail[2];
    int waiting[2];
    int64_t taken, timeouts;
} dd_pool;
int dd_pool_init(dd_pool *p, int n); /* 1 <= n <= 64 */
void dd_pool_destroy(dd_pool *p);
/* dd_pool_take: a slot (0..n-1), waiting in prio's queue; DD_POOL_TIMEOUT
 * after timeout_s (<= 0: no limit), DD_POOL_CANCELLED once *cancel or
 * *stopping is set (either may be NULL; checked four times a second). */
int dd_pool_take(dd_pool *p, int prio, double timeout_s, const volatile int *cancel,
                 const volatile int *stopping);
void dd_pool_give(dd_pool *p, int slot);
/* dd_pool_depth: waiters per queue and slots in use (any may be NULL) */
void dd_pool_depth(dd_pool *p, int *high, int *low, int *busy);

enum { DD_MAX_GENERATORS = 64, DD_MAX_WATCHES = 32 };

/* a [daemon] watch folder (watch.c); counters under srv->stats */
enum { DD_WATCH_WAITING, DD_WATCH_SYNCING, DD_WATCH_WATCHING, DD_WATCH_FAILED, DD_WATCH_STOPPED };
typedef struct dd_watch {
    struct dd_server *srv;
    char collection[128];
    char path[1024];
    int state;
    int64_t files_done, files_total, added, updated, removed, failed;
    char error[512];
} dd_watch;

/* the command line's config sources, kept for SIGHUP's reload */
typedef struct dd_args {
    const char *config;         /* --config (NULL: the usual search) */
    const char *over[32];       /* -o SECTION.KEY=VALUE */
    int n_over;
    const char *sock, *data, *http, *embedder, *generator, *backend; /* flags, or NULL */
} dd_args;
/* the settings SIGHUP may change, as one request reads them (dd_settings) */
typedef struct dd_settings {
    int max_body_kb, max_json_depth, max_per_caller, queue_timeout_s, answer_timeout_s;
} dd_settings;
/* dd_load_config: the config file, then -o, then the flags (server.c) */
int dd_load_config(const dd_args *a, doc_config *c, doc_err *err);

typedef struct dd_server {
    dd_args args;
    doc_config cfg;             /* reloadable fields change under reload_rw */
    idx_store *store;
    llm_model *embedder;
    llm_model *generators[DD_MAX_GENERATORS]; /* [daemon] generators instances */
    int n_generators;
    llm_model *generator;       /* generators[0]: descriptions, the chat template */
    prompt_set *prompts;        /* swapped under reload_rw (write) on SIGHUP */
    /* SIGHUP changes the prompts, opts and cfg's reloadable fields ([daemon]
     * admins, api_keys, max_body_kb, max_json_depth, max_per_caller,
     * queue_timeout_s, answer_timeout_s) under it; answers hold it for
     * reading while they run, other readers for as long as they read */
    pthread_rwlock_t reload_rw;
    rag_opts opts;
    pthread_mutex_t store_mu;   /* one store call at a time (sched.c) */
    pthread_mutex_t writer_mu;  /* one write transaction at a time */
    pthread_mutex_t ingest_mu;  /* one ingest job (or watch sync) at a time */
    dd_pool embed_pool;         /* the embedder: queries first, then ingest */
    dd_pool gen_pool;           /* generators x parallel answer slots */
    dd_watch watches[DD_MAX_WATCHES];
    int n_watches;
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

/* One answer to produce, for /v1/ask and /v1/chat/completions. */
typedef struct dd_job {
    dd_server *srv;
    dd_stream *stream;          /* NULL: a JSON reply */
    char *question;
    int64_t *ids;
    int n_ids, k;
    int answer_tokens;          /* 0: the config's (a request can only lower it) */
    double temperature;         /* < 0: the config's */
    int timeout_s;              /* 0: answer_timeout_s (a request can only lower it) */
    const rag_turn *history;    /* earlier turns (OpenAI messages), borrowed */
    int n_history;
    rag_turn *own_history;      /* /v1/ask's "history": owned (dd_job_free) */
    int n_own_history;
    void *ext;                  /* the route's own state for its callbacks */
    llm_text_cb on_text;        /* NULL: the SSE "token" events of /v1/ask */
    /* set by dd_run_ask */
    double deadline;            /* time_now() past which generation stops */
    double queued_s;            /* waited for a generator */
    int busy;                   /* no generator within queue_timeout_s (503) */
} dd_job;

/* dd_run_ask: answer j with a generator from the pool (fills a; rag's
 * status; DOC_ELIMIT when none came free within queue_timeout_s) */
int dd_run_ask(dd_job *j, rag_answer *a, doc_err *e);
void dd_job_free(dd_job *j);
/* dd_spawn: run fn(j) on a detached producer thread that streams into
 * j->stream (which must hold both references); on success rs->stream takes
 * the server's reference and the thread owns j; else rs holds a 503. */
int dd_spawn(dd_server *srv, void *(*fn)(void *), dd_job *j, dd_resp *rs);
/* dd_start_producer: fn(arg) on a detached thread that main waits for at
 * shutdown (it must end with dd_producer_done); -1 when it could not start */
int dd_start_producer(dd_server *srv, void *(*fn)(void *), void *arg);
/* dd_producer_done: a producer thread's last call (main waits for them) */
void dd_producer_done(dd_server *srv);

/* jobs.c: POST /v1/ingest, GET /v1/jobs/{id} */
/* dd_ingest_opts: ing_opts from the config, srv->stopping as the cancel flag
 * (the caller adds its callbacks and a lock hook that calls dd_ingest_lock) */
void dd_ingest_opts(dd_server *srv, const char *collection, ing_opts *io);
/* dd_ingest_lock: an ingest lock hook's work: ING_USE_* through dd_use, behind
 * queries */
void dd_ingest_lock(dd_server *srv, int what, int on);
void dd_route_ingest(dd_server *srv, const dd_req *rq, dd_resp *rs);
void dd_route_job(dd_server *srv, const dd_req *rq, dd_resp *rs);

/* openai.c: /v1/chat/completions, /v1/embeddings, /v1/models */
#define DD_RAW_MODEL "docent-generator" /* the generator alone (generate.c) */
/* dd_message_text: a chat message's content as text (a string, or its text
 * parts joined); NULL when it is neither (malloc'd) */
char *dd_message_text(const json_t *content);
/* dd_route_generate: chat completions with DD_RAW_MODEL, body o (admins) */
void dd_route_generate(dd_server *srv, const dd_req *rq, const json_t *o, int stream, dd_resp *rs);
void dd_route_chat(dd_server *srv, const dd_req *rq, dd_resp *rs);
void dd_route_embeddings(dd_server *srv, const dd_req *rq, dd_resp *rs);
void dd_route_models(dd_server *srv, const dd_req *rq, dd_resp *rs);

/* sched.c */
/* dd_take_generator: a generator slot for j (0..n-1; give it back with
 * dd_pool_give(&srv->gen_pool, slot)), after waiting at most queue_timeout_s:
 * else DOC_ELIMIT with j->busy set, or DOC_ECANCELLED (client gone,
 * stopping).  Sets j->queued_s and j->deadline (answer_timeout_s, or
 * j->timeout_s when lower). */
int dd_take_generator(dd_job *j, doc_err *e);
/* dd_generator: the instance serving a slot (slots are spread over the
 * generators instances, [daemon] parallel each); NULL in a server set up
 * without generators (tests) */
llm_model *dd_generator(dd_server *srv, int slot);
/* dd_decode_stats: batched decode steps and their tokens, all instances */
void dd_decode_stats(dd_server *srv, uint64_t *steps, uint64_t *tokens);
/* dd_settings_get: a consistent copy of the reloadable limits */
void dd_settings_get(dd_server *srv, dd_settings *out);
/* dd_server_init: the locks and pools of a zeroed srv (n_generators slots,
 * 1..DD_MAX_GENERATORS: DOC_EINVAL otherwise); dd_server_destroy undoes it */
int dd_server_init(dd_server *srv, int n_generators);
void dd_server_destroy(dd_server *srv);
enum { DD_USE_STORE = 1, DD_USE_WRITER, DD_USE_EMBEDDER };
/* dd_use: take (on=1) or give back (on=0) one shared object; prio matters
 * for the embedder (DD_PRIO_HIGH: queries) */
void dd_use(dd_server *srv, int what, int prio, int on);
/* dd_rag_env: an answer's environment: the store and the embedder shared
 * through dd_use, the given generator (caller holds reload_rw for reading) */
void dd_rag_env(dd_server *srv, llm_model *generator, rag_env *env);

/* watch.c: the [daemon] watch folders */
/* dd_watch_check: parse the list into srv->watches (each must be a folder) */
int dd_watch_check(dd_server *srv, doc_err *err);
/* dd_watch_start: check the list, then sync and follow each folder on a
 * thread of its own (a producer: main waits for it at shutdown) */
int dd_watch_start(dd_server *srv, doc_err *err);
/* dd_watch_json: [{collection, path, state, documents_done, ...}] */
json_t *dd_watch_json(dd_server *srv);

/* access.c */
/* dd_list_matches: does caller match one entry of a readers/admins list
 * ("*", "uid:N", "user:NAME", "group:NAME", "key:NAME", comma-separated)?
 * uid/user/group entries never match a TCP caller; key entries only match one. */
int dd_list_matches(const char *list, const dd_caller *c);
/* dd_is_admin: root, the daemon's own user, or [daemon] admins. */
int dd_is_admin(dd_server *srv, const dd_caller *c);
/* dd_readable: ids of the collections c may read (*ids malloc'd); with name
 * non-NULL only that one (DOC_ENOTFOUND: no such collection; 0 ids: not
 * readable).  Call with the store taken (dd_use DD_USE_STORE). */
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
