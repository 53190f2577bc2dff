/*
 * client.c - the CLI's side of the wire: HTTP/1.1 to docentd over its Unix
 * socket through libcurl (the only file of cli/ that includes it).
 *
 * A reply is read whole (JSON), or as server-sent events handed to a
 * callback one event at a time.  Transport failures name the socket and
 * say what to check; an error reply's JSON message is passed on as is.
 */
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/cli.h"

typedef struct sse_state {
    buf raw;                 /* bytes not yet cut into events (or the whole body) */
    cli_sse_fn fn;
    void *ud;
    int stop;
    long status;
    CURL *h;
} sse_state;

/* deliver complete events ("event: X\ndata: Y\n\n") from s->raw */
static void deliver(sse_state *s)
{
    for (;;) {
        char *end = s->raw.data ? strstr(s->raw.data, "\n\n") : NULL;
        if (!end) return;
        *end = 0;
        const char *name = "message", *data = "";
        char *line = s->raw.data;
        while (line && *line) {
            char *nl = strchr(line, '\n');
            if (nl) *nl = 0;
            if (!strncmp(line, "event: ", 7)) name = line + 7;
            else if (!strncmp(line, "data: ", 6)) data = line + 6;
            line = nl ? nl + 1 : NULL;
        }
        if (!s->stop && s->fn && s->fn(s->ud, name, data)) s->stop = 1;
        size_t used = (size_t)(end - s->raw.data) + 2;
        memmove(s->raw.data, s->raw.data + used, s->raw.len - used + 1);
        s->raw.len -= used;
    }
}

static size_t on_body(char *p, size_t size, size_t n, void *ud)
{
    sse_state *s = ud;
    size_t len = size * n;
    if (buf_append(&s->raw, p, len)) return 0; /* over the cap: curl stops */
    if (!s->status) curl_easy_getinfo(s->h, CURLINFO_RESPONSE_CODE, &s->status);
    if (s->fn && s->status == 200) deliver(s);
    return s->stop ? 0 : len;
}

static int do_request(const char *sock, const char *method, const char *path, const char *body,
                      int sse, sse_state *s, doc_err *err)
{
    static int inited;
    if (!inited) {
        curl_global_init(CURL_GLOBAL_DEFAULT);
        inited = 1;
    }
    CURL *h = curl_easy_init();
    if (!h) return doc_errf(err, DOC_ENOMEM, "curl: cannot start");
    s->h = h;
    char url[1024];
    snprintf(url, sizeof url, "http://docentd%s", path);
    struct curl_slist *hdr = curl_slist_append(NULL, "Content-Type: application/json");
    if (sse) hdr = curl_slist_append(hdr, "Accept: text/event-stream");
    curl_easy_setopt(h, CURLOPT_UNIX_SOCKET_PATH, sock);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdr);
    if (body) curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, s);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    CURLcode c = curl_easy_perform(h);
    if (!s->status) curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &s->status);
    int rc = DOC_OK;
    if (c != CURLE_OK && !(c == CURLE_WRITE_ERROR && s->stop))
        rc = doc_errf(err, DOC_EIO, "daemon at %s: %s (is docentd running, and may you use "
                      "its socket? --local runs in-process)",
                      sock, curl_easy_strerror(c));
    curl_slist_free_all(hdr);
    curl_easy_cleanup(h);
    return rc;
}

/* error_message: the "message" of a JSON error body, or the body itself */
static void error_message(const sse_state *s, doc_err *err)
{
    json_error_t je;
    json_t *o = s->raw.data ? json_loads(s->raw.data, 0, &je) : NULL;
    const char *m = json_string_value(json_object_get(json_object_get(o, "error"), "message"));
    doc_errf(err, DOC_EINVAL, "%s", m ? m : s->raw.data ? s->raw.data : "no reply");
    json_decref(o);
}

int cli_call(const char *sock, const char *method, const char *path, json_t *body, json_t **out,
             long *status, doc_err *err)
{
    sse_state s = {0};
    buf_init(&s.raw, 256u << 20);
    char *txt = body ? json_dumps(body, JSON_COMPACT) : NULL;
    *out = NULL;
    int rc = do_request(sock, method, path, txt, 0, &s, err);
    free(txt);
    *status = s.status;
    if (rc == DOC_OK) {
        json_error_t je;
        *out = s.raw.data ? json_loads(s.raw.data, 0, &je) : NULL;
        if (s.status >= 400) {
            error_message(&s, err);
            rc = DOC_EINVAL;
        } else if (!*out) {
            rc = doc_errf(err, DOC_EFORMAT, "daemon: a reply that is not JSON (status %ld)", s.status);
        }
    }
    buf_free(&s.raw);
    return rc;
}

int cli_call_sse(const char *sock, const char *path, json_t *body, cli_sse_fn fn, void *ud,
                 long *status, doc_err *err)
{
    sse_state s = {.fn = fn, .ud = ud};
    buf_init(&s.raw, 256u << 20);
    char *txt = json_dumps(body, JSON_COMPACT);
    int rc = do_request(sock, "POST", path, txt, 1, &s, err);
    free(txt);
    *status = s.status;
    if (rc == DOC_OK && s.status >= 400) {
        error_message(&s, err);
        rc = DOC_EINVAL;
    }
    buf_free(&s.raw);
    return rc;
}

const char *cli_socket(common *a)
{
    /* --generator / --embedder choose the models: that is in-process too
     * (docentd serves the models of its own config) */
    if (a->local || a->generator || a->embedder) return NULL;
    if (a->socket) return a->socket;
    const char *env = getenv("DOCENT_SOCKET");
    if (env && *env) return env;
    /* --data names a store: that is in-process, whatever daemon the config names */
    if (a->data) return NULL;
    /* the config's socket, when a daemon has made it (a config that does not
     * load is reported by the in-process path that follows) */
    doc_config cfg;
    doc_err e = {0};
    struct stat st;
    if (config_load(a->config_path, &cfg, &e)) return NULL;
    for (int i = 0; i < a->n_over; i++)
        if (config_set(&cfg, a->overrides[i], &e)) return NULL;
    if (!cfg.socket_path[0] || stat(cfg.socket_path, &st) || !S_ISSOCK(st.st_mode)) return NULL;
    snprintf(a->cfg_socket, sizeof a->cfg_socket, "%s", cfg.socket_path);
    return a->cfg_socket;
}

int cli_daemon_live(const char *sock)
{
    json_t *o = NULL;
    long status = 0;
    doc_err e = {0};
    int rc = cli_call(sock, "GET", "/healthz", NULL, &o, &status, &e);
    json_decref(o);
    return rc == DOC_OK && status == 200;
}

int cli_remote_fail(const char *what, long status, const doc_err *e)
{
    const char *msg = e->msg[0] ? e->msg : doc_strerror(e->rc);
    const char *hint = "";
    if (status == 403)
        hint = " (docentd's access rule: ingest, rm and collection changes need an admin: root, "
               "docentd's own user or [daemon] admins)";
    else if (status == 429)
        hint = " (docentd is busy: too many of your requests are in flight; try again)";
    if (what) fprintf(stderr, "docent: %s: %s%s\n", what, msg, hint);
    else fprintf(stderr, "docent: %s%s\n", msg, hint);
    return 1;
}
