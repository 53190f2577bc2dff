/*
 * server.c - HTTP/1.1 on the Unix socket through libmicrohttpd (the only
 * file of docent that includes it).
 *
 * One thread per connection (libmicrohttpd's internal threads), a cap on
 * connections and on idle time from the config.  A request body is collected
 * up to [daemon] max_body_kb (413 past it; the rest is read and dropped), then the
 * route runs on the connection's thread.  Streamed replies (SSE) are drained
 * from a dd_stream that a producer thread fills; when the client goes away
 * the stream's cancel flag is raised so the producer stops generating.
 */
#include <errno.h>
#include <microhttpd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>

#include "daemon/internal.h"

/* ---- streams ------------------------------------------------------------- */

dd_stream *dd_stream_new(void)
{
    dd_stream *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    buf_init(&s->pending, 0);
    s->refs = 2;
    return s;
}

int dd_stream_event(dd_stream *s, const char *name, json_t *data)
{
    char *txt = json_dumps(data, JSON_COMPACT);
    json_decref(data);
    if (!txt) return DOC_ENOMEM;
    pthread_mutex_lock(&s->mu);
    int rc = name ? buf_printf(&s->pending, "event: %s\ndata: %s\n\n", name, txt)
                  : buf_printf(&s->pending, "data: %s\n\n", txt);
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
    free(txt);
    return rc;
}

int dd_stream_raw(dd_stream *s, const char *text)
{
    pthread_mutex_lock(&s->mu);
    int rc = buf_puts(&s->pending, text);
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
    return rc;
}

void dd_stream_close(dd_stream *s)
{
    pthread_mutex_lock(&s->mu);
    s->closed = 1;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

void dd_stream_release(dd_stream *s)
{
    pthread_mutex_lock(&s->mu);
    int last = --s->refs == 0;
    pthread_mutex_unlock(&s->mu);
    if (!last) return;
    buf_free(&s->pending);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    free(s);
}

/* stream_read: libmicrohttpd pulls the next bytes; blocks until there are
 * some or the producer closed the stream */
static ssize_t stream_read(void *cls, uint64_t pos, char *out, size_t max)
{
    (void)pos;
    dd_stream *s = cls;
    pthread_mutex_lock(&s->mu);
    while (s->read_off == s->pending.len && !s->closed) pthread_cond_wait(&s->cv, &s->mu);
    ssize_t n;
    if (s->read_off < s->pending.len) {
        size_t avail = s->pending.len - s->read_off;
        n = (ssize_t)(avail < max ? avail : max);
        memcpy(out, s->pending.data + s->read_off, (size_t)n);
        s->read_off += (size_t)n;
        if (s->read_off == s->pending.len) { /* drained: reuse the memory */
            buf_reset(&s->pending);
            s->read_off = 0;
        }
    } else {
        n = MHD_CONTENT_READER_END_OF_STREAM;
    }
    pthread_mutex_unlock(&s->mu);
    return n;
}

/* stream_done: the connection is finished with the stream (sent, or the
 * client went away): stop the producer */
static void stream_done(void *cls)
{
    dd_stream *s = cls;
    s->cancel = 1;
    dd_stream_release(s);
}

/* ---- errors -------------------------------------------------------------- */

void dd_error(dd_resp *r, int status, const char *code, const char *fmt, ...)
{
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    json_decref(r->json);
    r->status = status;
    r->json = json_pack("{s:{s:i,s:s,s:s}}", "error", "status", status, "code", code, "message", msg);
}

/* ---- per-caller limit ------------------------------------------------------ */

static void caller_name(const dd_caller *c, char *out, size_t cap)
{
    if (c->tcp) snprintf(out, cap, "key:%s", c->key);
    else snprintf(out, cap, "uid:%u", (unsigned)c->uid);
}

/* caller_enter: count one more request of c in flight; 0 past the limit
 * (or when the table is full: the limit then applies to everyone at once) */
static int caller_enter(dd_server *srv, const dd_caller *c, int limit)
{
    char who[72];
    caller_name(c, who, sizeof who);
    int ok = 0, free_slot = -1;
    pthread_mutex_lock(&srv->stats);
    size_t n = sizeof srv->callers / sizeof srv->callers[0];
    for (size_t i = 0; i < n; i++) {
        if (srv->callers[i].n && !strcmp(srv->callers[i].who, who)) {
            if (srv->callers[i].n < limit) ok = 1, srv->callers[i].n++;
            pthread_mutex_unlock(&srv->stats);
            return ok;
        }
        if (!srv->callers[i].n && free_slot < 0) free_slot = (int)i;
    }
    if (free_slot >= 0) {
        snprintf(srv->callers[free_slot].who, sizeof srv->callers[free_slot].who, "%s", who);
        srv->callers[free_slot].n = 1;
        ok = 1;
    }
    pthread_mutex_unlock(&srv->stats);
    return ok;
}

static void caller_leave(dd_server *srv, const dd_caller *c)
{
    char who[72];
    caller_name(c, who, sizeof who);
    pthread_mutex_lock(&srv->stats);
    for (size_t i = 0; i < sizeof srv->callers / sizeof srv->callers[0]; i++)
        if (srv->callers[i].n && !strcmp(srv->callers[i].who, who)) {
            srv->callers[i].n--;
            break;
        }
    pthread_mutex_unlock(&srv->stats);
}

/* ---- connections --------------------------------------------------------- */

typedef struct conn {
    buf body;
    int too_big;
    int max_body_kb;            /* the cap when the body began */
    dd_caller caller;
} conn;

typedef struct ctx {
    dd_server *srv;
} ctx;

/* tcp_caller: a TCP caller is named by its API key.  With keys configured a
 * request without a valid one stays unknown (refused); without keys (loopback
 * only) it is the anonymous caller, who matches only readers "*". */
static void tcp_caller(dd_server *srv, struct MHD_Connection *c, dd_caller *out)
{
    out->tcp = 1;
    out->uid = (uid_t)-1;
    out->gid = (gid_t)-1;
    const char *auth = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
    const char *secret = auth && !strncasecmp(auth, "Bearer ", 7) ? auth + 7 : "";
    while (*secret == ' ') secret++;
    pthread_rwlock_rdlock(&srv->reload_rw); /* SIGHUP may change the keys */
    if (!*srv->cfg.api_keys) out->known = 1;
    else if (*secret && dd_key_lookup(srv->cfg.api_keys, secret, out->key, sizeof out->key)) out->known = 1;
    pthread_rwlock_unlock(&srv->reload_rw);
}

static void peer_cred(dd_server *srv, struct MHD_Connection *c, dd_caller *out)
{
    memset(out, 0, sizeof *out);
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (!ci) return;
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    if (getsockname(ci->connect_fd, (struct sockaddr *)&ss, &sl) == 0 && ss.ss_family != AF_UNIX) {
        tcp_caller(srv, c, out);
        return;
    }
    struct ucred uc;
    socklen_t len = sizeof uc;
    if (getsockopt(ci->connect_fd, SOL_SOCKET, SO_PEERCRED, &uc, &len) == 0 && len == sizeof uc) {
        out->known = 1;
        out->uid = uc.uid;
        out->gid = uc.gid;
        out->pid = uc.pid;
    }
}

static enum MHD_Result send_resp(struct MHD_Connection *c, dd_resp *rs, const char *id)
{
    struct MHD_Response *r;
    if (rs->stream) {
        r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, stream_read, rs->stream,
                                              stream_done);
        if (!r) {
            stream_done(rs->stream);
            return MHD_NO;
        }
        MHD_add_response_header(r, "Content-Type", "text/event-stream");
        MHD_add_response_header(r, "Cache-Control", "no-cache");
    } else {
        char *body;
        size_t len;
        const char *type = rs->content_type;
        if (rs->json) {
            body = json_dumps(rs->json, JSON_COMPACT);
            if (!body) return MHD_NO;
            len = strlen(body);
            type = "application/json";
            /* a trailing newline: friendlier to curl and line-based tools */
            char *b2 = realloc(body, len + 2);
            if (!b2) {
                free(body);
                return MHD_NO;
            }
            body = b2;
            body[len++] = '\n';
            body[len] = 0;
        } else {
            body = rs->text ? rs->text : strdup("");
            rs->text = NULL;
            if (!body) return MHD_NO;
            len = strlen(body);
        }
        r = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
        if (!r) {
            free(body);
            return MHD_NO;
        }
        MHD_add_response_header(r, "Content-Type", type ? type : "text/plain; charset=utf-8");
    }
    MHD_add_response_header(r, "X-Request-Id", id);
    if (rs->status == 429 || rs->status == 503) MHD_add_response_header(r, "Retry-After", "5");
    enum MHD_Result ok = MHD_queue_response(c, (unsigned)rs->status, r);
    MHD_destroy_response(r);
    return ok;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version,
                                  const char *upload, size_t *upload_size, void **state)
{
    (void)version;
    ctx *x = cls;
    dd_server *srv = x->srv;
    conn *cn = *state;
    if (!cn) { /* the headers are in: set up the body */
        if (!(cn = calloc(1, sizeof *cn))) return MHD_NO;
        dd_settings set;
        dd_settings_get(srv, &set);
        cn->max_body_kb = set.max_body_kb;
        buf_init(&cn->body, (size_t)set.max_body_kb * 1024);
        peer_cred(srv, c, &cn->caller);
        *state = cn;
        return MHD_YES;
    }
    if (*upload_size) {
        if (!cn->too_big && buf_append(&cn->body, upload, *upload_size) == DOC_ELIMIT)
            cn->too_big = 1;
        *upload_size = 0;
        return MHD_YES;
    }
    dd_req rq = {.method = method, .path = url, .caller = cn->caller};
    pthread_mutex_lock(&srv->stats);
    int64_t nr = ++srv->n_requests;
    srv->in_flight++;
    pthread_mutex_unlock(&srv->stats);
    snprintf(rq.id, sizeof rq.id, "r%lld", (long long)nr);
    rq.body = cn->body.data ? cn->body.data : "";
    rq.body_len = cn->body.len;
    const char *accept = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Accept");
    rq.wants_sse = accept && strstr(accept, "text/event-stream") != NULL;
    dd_resp rs = {.status = 200};
    int probe = rq.caller.tcp && !strcmp(url, "/healthz"); /* liveness probes need no key */
    if (cn->too_big)
        dd_error(&rs, 413, "body_too_large", "request body over [daemon] max_body_kb (%d KiB)",
                 cn->max_body_kb);
    else if (!rq.caller.known && rq.caller.tcp && !probe)
        dd_error(&rs, 401, "no_key", "an API key is needed: Authorization: Bearer KEY");
    else if (!rq.caller.known && !probe)
        dd_error(&rs, 403, "no_credentials", "the caller's credentials are unavailable");
    double t0 = time_now();
    int idx = -1;
    if (!cn->too_big && (rq.caller.known || probe)) {
        dd_settings set;
        dd_settings_get(srv, &set);
        if (!caller_enter(srv, &rq.caller, set.max_per_caller)) {
            dd_error(&rs, 429, "too_many", "over [daemon] max_per_caller (%d) requests in flight",
                     set.max_per_caller);
        } else {
            idx = dd_route(srv, &rq, &rs);
            caller_leave(srv, &rq.caller);
        }
    }
    pthread_mutex_lock(&srv->stats);
    if (rs.status >= 400) srv->n_errors++;
    if (idx >= 0 && idx < DD_MAX_ROUTES) {
        srv->route_requests[idx]++;
        srv->route_errors[idx] += rs.status >= 400;
        dd_hist_add(&srv->route_latency[idx], time_now() - t0);
    }
    pthread_mutex_unlock(&srv->stats);
    log_info("%s uid %u %s %s -> %d", rq.id, (unsigned)rq.caller.uid, method, url, rs.status);
    enum MHD_Result ok = send_resp(c, &rs, rq.id);
    json_decref(rs.json);
    free(rs.text);
    pthread_mutex_lock(&srv->stats);
    srv->in_flight--;
    pthread_mutex_unlock(&srv->stats);
    return ok;
}

static void on_completed(void *cls, struct MHD_Connection *c, void **state,
                         enum MHD_RequestTerminationCode why)
{
    (void)cls;
    (void)c;
    (void)why;
    conn *cn = *state;
    if (!cn) return;
    buf_free(&cn->body);
    free(cn);
    *state = NULL;
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t n = strlen(msg);
    while (n && msg[n - 1] == '\n') msg[--n] = 0;
    log_warn("http: %s", msg);
}

int dd_load_config(const dd_args *a, doc_config *c, doc_err *err)
{
    int rc;
    if ((rc = config_load(a->config, c, err))) return rc;
    for (int i = 0; i < a->n_over; i++)
        if ((rc = config_set(c, a->over[i], err))) return rc;
    const char *flags[][3] = {{"--socket", "daemon.socket", a->sock},
                              {"--data", "data.dir", a->data},
                              {"--http", "daemon.http", a->http},
                              {"--embedder", "models.embedder", a->embedder},
                              {"--generator", "models.generator", a->generator},
                              {"--backend", "models.backend", a->backend}};
    for (size_t i = 0; i < sizeof flags / sizeof flags[0]; i++) {
        char kv[1200];
        if (!flags[i][2]) continue;
        if (snprintf(kv, sizeof kv, "%s=%s", flags[i][1], flags[i][2]) >= (int)sizeof kv)
            return doc_errf(err, DOC_ELIMIT, "%s: too long", flags[i][0]);
        if ((rc = config_set(c, kv, err))) return doc_errprefix(err, flags[i][0]), rc;
    }
    if (c->generators * c->parallel > 64)
        return doc_errf(err, DOC_EINVAL,
                        "[daemon] generators x parallel is %d x %d = %d answers at once; at most 64",
                        c->generators, c->parallel, c->generators * c->parallel);
    return DOC_OK;
}

/* the config fields SIGHUP applies (the prompts come with prompts_dir) */
#define RELOADABLE(X)                                                                      \
    X(prompts_dir) X(min_similarity) X(prompt_tokens) X(answer_tokens) X(temperature)       \
    X(repeat_penalty) X(seed) X(min_support) X(min_match_similarity) X(redact) X(refuse)    \
    X(injections) X(k) X(n_dense) X(n_bm25) X(rrf_k) X(admins) X(api_keys) X(max_body_kb)  \
    X(max_json_depth) X(max_per_caller) X(queue_timeout_s) X(answer_timeout_s)

void dd_reload(dd_server *srv)
{
    doc_err e = {0};
    doc_config *c = calloc(1, sizeof *c), *probe = malloc(sizeof *probe);
    prompt_set *p = NULL;
    rag_opts ro;
    if (!c || !probe) {
        log_error("reload: out of memory (nothing changed)");
        goto done;
    }
    if (dd_load_config(&srv->args, c, &e) || rag_opts_from_config(c, &ro, &e) ||
        prompt_set_load(c->prompts_dir, &p, &e)) {
        log_error("reload: %s (nothing changed)", e.msg);
        goto done;
    }
    /* what a reload cannot change (models, data, sockets, ingest, watch,
     * generators...) must be as it was: say so instead of half-applying */
    *probe = *c;
#define KEEP(f) memcpy(&probe->f, &srv->cfg.f, sizeof probe->f);
    RELOADABLE(KEEP)
#undef KEEP
    int fixed_changed = memcmp(probe, &srv->cfg, sizeof *probe) != 0;
    pthread_rwlock_wrlock(&srv->reload_rw); /* waits for the answers using the old set */
    prompt_set *old = srv->prompts;
    srv->prompts = p;
    p = old;
    srv->opts = ro;
    /* only the reloadable fields are written: the rest is read without the lock */
#define TAKE(f) memcpy(&srv->cfg.f, &c->f, sizeof srv->cfg.f);
    RELOADABLE(TAKE)
#undef TAKE
    pthread_rwlock_unlock(&srv->reload_rw);
    fprintf(stderr, "docentd: reloaded the prompts (%s), [answer], [safety], [search] and the "
                    "[daemon] access lists and limits\n",
            srv->cfg.prompts_dir);
    if (fixed_changed)
        log_warn("reload: %s also changes settings a reload cannot apply ([data], [models], "
                 "[ingest], [index], [remote], the [daemon] sockets, watch, generators, parallel, "
                 "connections): restart docentd for them",
                 *c->path ? c->path : "the config");
done:
    prompt_set_free(&p);
    free(c);
    free(probe);
}

static struct MHD_Daemon *start_on(ctx *x, int fd)
{
    dd_server *srv = x->srv;
    return MHD_start_daemon(
        MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG,
        0, NULL, NULL, on_request, x, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
        MHD_OPTION_LISTEN_SOCKET, fd, MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)srv->cfg.max_connections,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)srv->cfg.request_timeout_s, MHD_OPTION_END);
}

int dd_serve(dd_server *srv, int fd, int tcp_fd, volatile sig_atomic_t *stop,
             volatile sig_atomic_t *hup, doc_err *err)
{
    ctx x = {.srv = srv};
    struct MHD_Daemon *d = start_on(&x, fd), *t = NULL;
    if (!d) return doc_errf(err, DOC_EIO, "http: libmicrohttpd could not start on the socket");
    if (tcp_fd >= 0 && !(t = start_on(&x, tcp_fd))) {
        MHD_stop_daemon(d);
        return doc_errf(err, DOC_EIO, "http: libmicrohttpd could not start on %s", srv->cfg.http_addr);
    }
    while (!*stop) {
        struct timespec ts = {0, 100 * 1000 * 1000};
        nanosleep(&ts, NULL);
        if (*hup) {
            *hup = 0;
            dd_reload(srv);
        }
    }
    srv->stopping = 1;
    /* stop accepting, then wait for the connections (in-flight answers see
     * their streams cancelled when their connections close) */
    MHD_quiesce_daemon(d);
    if (t) MHD_quiesce_daemon(t);
    MHD_stop_daemon(d);
    if (t) MHD_stop_daemon(t);
    return DOC_OK;
}
