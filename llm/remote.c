/*
 * remote.c - models behind an OpenAI-compatible server (vLLM, TGI/TEI,
 * llama.cpp's server, another docentd): generation through
 * POST {base}/chat/completions (streamed, SSE parsed as bytes arrive) and
 * embeddings through POST {base}/embeddings, with libcurl.  Also the two calls
 * that work on local and remote models alike (llm_generate_chat,
 * llm_count_tokens) and the mapping from docent.conf to llm_opts.
 *
 * A remote model is an llm_model with m->remote set; model.c sends the calls
 * here.  Thread safety: the remote's settings are read-only after open; each
 * request has its own easy handle; the only shared mutable state is the count
 * of requests in flight (mutex + condition variable), capped at
 * max_concurrency.  Retries (429, 5xx, refused/reset connections) happen only
 * before any text was forwarded, with exponential backoff plus jitter or the
 * server's Retry-After.  Everything read from the network is capped: SSE line
 * length, reply size, the number and dimension of embeddings.  The API key
 * goes only into the Authorization header: never into logs or error messages
 * (server text quoted in a message has the key masked).
 *
 * curl_global_init runs once per process through pthread_once (as in
 * ingest/fetch.c): the one piece of process-wide state here.
 */
#include "llm/model.h"

#include <curl/curl.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/config.h"
#include "core/json.h"

#define R_MAX_URL 900
#define R_MAX_LINE ((size_t)1 << 20)       /* one SSE line */
#define R_MAX_REPLY ((size_t)256 << 20)    /* one non-streamed reply */
#define R_MAX_ERR_BODY ((size_t)16 << 10)  /* an error reply kept for the message */
#define R_MAX_DIM 65536
#define R_MAX_RETRY_AFTER 60.0
#define R_USER_AGENT "docent/0.1"

struct llm_remote {
    char base[R_MAX_URL];  /* no trailing '/' */
    char model[256];
    char source[R_MAX_URL + 260]; /* base#model */
    char *key;             /* API key or NULL (wiped at close) */
    long timeout_s, connect_timeout_s, idle_timeout_s;
    int retries, backoff_ms, insecure;
    char ca_file[1024];
    int dim;
    gguf_file *tok_gguf;   /* the counting tokenizer's file (kept open: the tokenizer borrows) */
    llm_tokenizer *tok;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int in_flight, max_conc, sync_ok;
};

static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static CURLcode global_rc = CURLE_FAILED_INIT; /* written once, under global_once */
static void global_init(void) { global_rc = curl_global_init(CURL_GLOBAL_DEFAULT); }

int remote_is_url(const char *path)
{
    return path && (!strncmp(path, "http://", 7) || !strncmp(path, "https://", 8));
}

/* ---- slots: at most max_conc requests in flight --------------------------- */

static void slot_take(struct llm_remote *r)
{
    pthread_mutex_lock(&r->mu);
    while (r->in_flight >= r->max_conc) pthread_cond_wait(&r->cv, &r->mu);
    r->in_flight++;
    pthread_mutex_unlock(&r->mu);
}

static void slot_give(struct llm_remote *r)
{
    pthread_mutex_lock(&r->mu);
    r->in_flight--;
    pthread_cond_signal(&r->cv);
    pthread_mutex_unlock(&r->mu);
}

/* ---- one transfer ---------------------------------------------------------- */

/* the stop-string filter: text that could still begin a stop string is held */
typedef struct holdback {
    const llm_sampling *s;
    buf pending;
    int stopped;
} holdback;

typedef struct xfer {
    struct llm_remote *r;
    CURL *h;
    long status;
    double retry_after;    /* seconds from Retry-After, -1 when none */
    int is_sse;            /* the reply is text/event-stream */
    buf body;              /* non-stream replies and error bodies */
    size_t body_cap;
    int too_big;
    /* streaming */
    int stream;
    buf line;
    llm_text_cb cb;
    void *ud;
    holdback hb;
    buf text;              /* everything forwarded (for counting when no usage comes) */
    int forwarded;         /* any text was forwarded (no retry after that) */
    int cancelled, done, finish;  /* finish: LLM_STOP_* from finish_reason */
    int usage_prompt, usage_gen;
    double t_first;
    char cut[160];         /* why a stream that had begun ended early ("" when it did not) */
    int prc;               /* a parse error inside a callback */
    doc_err perr;
} xfer;

/* excerpt: a short, printable copy of server text for a message, with the API
 * key masked */
static void excerpt(const struct llm_remote *r, const char *p, size_t n, char *out, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; i < n && o + 4 < cap; i++) {
        unsigned char c = (unsigned char)p[i];
        out[o++] = c >= 0x20 && c < 0x7f ? (char)c : (c == '\n' || c == '\t' ? ' ' : '?');
    }
    if (o + 4 >= cap && n > o) o = o > 3 ? o - 3 : o, memcpy(out + o, "...", 3), o += 3;
    out[o] = 0;
    if (r->key && *r->key) {
        size_t kl = strlen(r->key);
        for (char *k = strstr(out, r->key); k; k = strstr(k, r->key)) memset(k, '*', kl);
    }
}

static int hb_emit(xfer *x, const char *p, size_t n)
{
    if (!n) return 0;
    if (buf_append(&x->text, p, n)) return DOC_ENOMEM;
    x->forwarded = 1;
    if (x->cb && x->cb(x->ud, p, n)) x->cancelled = 1;
    return 0;
}

/* hb_push: text arrives; emit what can no longer begin a stop string */
static int hb_push(xfer *x, const char *p, size_t n)
{
    holdback *hb = &x->hb;
    if (hb->stopped || x->cancelled) return 0;
    if (!hb->s || !hb->s->n_stop) return hb_emit(x, p, n);
    if (buf_append(&hb->pending, p, n)) return DOC_ENOMEM;
    const char *d = hb->pending.data;
    size_t len = hb->pending.len, cut = len, keep = 0;
    for (int i = 0; i < hb->s->n_stop; i++) {
        const char *st = hb->s->stop[i];
        if (!st || !*st) continue;
        char *f = memmem(d, len, st, strlen(st));
        if (f && (size_t)(f - d) < cut) cut = (size_t)(f - d), hb->stopped = 1;
    }
    if (hb->stopped) return hb_emit(x, d, cut);
    /* longest tail that is a prefix of a stop string */
    for (int i = 0; i < hb->s->n_stop; i++) {
        const char *st = hb->s->stop[i];
        size_t sl = st ? strlen(st) : 0;
        for (size_t k = sl ? sl - 1 : 0; k > keep; k--)
            if (k <= len && !memcmp(d + len - k, st, k)) {
                keep = k;
                break;
            }
    }
    /* whole UTF-8 characters only */
    size_t emit = len - keep;
    while (emit > 0 && emit < len && ((unsigned char)d[emit] & 0xC0) == 0x80) emit--;
    int rc = hb_emit(x, d, emit);
    memmove(hb->pending.data, d + emit, len - emit);
    hb->pending.len = len - emit;
    return rc;
}

static int hb_flush(xfer *x)
{
    holdback *hb = &x->hb;
    if (hb->stopped || x->cancelled || !hb->pending.len) return 0;
    int rc = hb_emit(x, hb->pending.data, hb->pending.len);
    hb->pending.len = 0;
    return rc;
}

static int finish_code(const char *f)
{
    if (!strcmp(f, "length")) return LLM_STOP_LENGTH;
    return LLM_STOP_EOS; /* "stop", "eos", "content_filter", "tool_calls": the server ended it */
}

/* sse_data: one "data:" payload of a chat completion stream */
static int sse_data(xfer *x, const char *p, size_t n)
{
    while (n && (*p == ' ')) p++, n--;
    if (n == 6 && !memcmp(p, "[DONE]", 6)) {
        x->done = 1;
        return 0;
    }
    json_error_t je;
    json_t *o = json_loadb(p, n, 0, &je);
    char ex[96];
    if (!json_is_object(o)) {
        excerpt(x->r, p, n, ex, sizeof ex);
        json_decref(o);
        return doc_errf(&x->perr, DOC_EFORMAT, "remote %s: malformed event in the stream: \"%s\"",
                        x->r->base, ex);
    }
    int rc = 0;
    json_t *e = json_object_get(o, "error");
    if (e) {
        const char *msg = json_is_object(e) ? json_str_or(e, "message", "") : json_string_value(e);
        excerpt(x->r, msg ? msg : "", msg ? strlen(msg) : 0, ex, sizeof ex);
        rc = doc_errf(&x->perr, DOC_EIO, "remote %s: the server reported an error mid-stream: \"%s\"",
                      x->r->base, ex);
        goto done;
    }
    json_t *u = json_object_get(o, "usage");
    if (json_is_object(u)) {
        long long pt = json_int_or(u, "prompt_tokens", -1), ct = json_int_or(u, "completion_tokens", -1);
        if (pt >= 0 && pt < (1 << 30)) x->usage_prompt = (int)pt;
        if (ct >= 0 && ct < (1 << 30)) x->usage_gen = (int)ct;
    }
    json_t *ch = json_array_get(json_object_get(o, "choices"), 0);
    if (!ch) goto done; /* a usage-only chunk */
    const char *txt = json_string_value(json_object_get(json_object_get(ch, "delta"), "content"));
    if (!txt) txt = json_string_value(json_object_get(ch, "text"));
    if (txt && *txt) {
        if (!x->t_first) x->t_first = time_now();
        if ((rc = hb_push(x, txt, strlen(txt)))) rc = doc_errf(&x->perr, rc, "out of memory");
    }
    const char *fr = json_string_value(json_object_get(ch, "finish_reason"));
    if (fr) x->finish = finish_code(fr);
done:
    json_decref(o);
    return rc;
}

static int sse_line(xfer *x, const char *p, size_t n)
{
    if (n && p[n - 1] == '\r') n--;
    if (!n || p[0] == ':') return 0;          /* event separator, comment */
    if (n >= 5 && !memcmp(p, "data:", 5)) return sse_data(x, p + 5, n - 5);
    return 0;                                  /* event:, id:, retry: */
}

static size_t on_header(char *p, size_t size, size_t nmemb, void *ud)
{
    xfer *x = ud;
    size_t n = size * nmemb;
    if (n > 12 && !strncasecmp(p, "HTTP/", 5)) { /* a new response (after 100 Continue...) */
        x->retry_after = -1;
        x->is_sse = 0;
    } else if (n > 12 && !strncasecmp(p, "retry-after:", 12)) {
        char tmp[32];
        snprintf(tmp, sizeof tmp, "%.*s", (int)(n - 12 < 31 ? n - 12 : 31), p + 12);
        char *end;
        double v = strtod(tmp, &end);
        if (end != tmp && v >= 0) x->retry_after = v > R_MAX_RETRY_AFTER ? R_MAX_RETRY_AFTER : v;
    } else if (n > 13 && !strncasecmp(p, "content-type:", 13)) {
        char tmp[128];
        snprintf(tmp, sizeof tmp, "%.*s", (int)(n - 13 < 127 ? n - 13 : 127), p + 13);
        x->is_sse = strstr(tmp, "text/event-stream") != NULL;
    }
    return n;
}

static size_t on_body(char *p, size_t size, size_t nmemb, void *ud)
{
    xfer *x = ud;
    size_t n = size * nmemb;
    if (!x->status) curl_easy_getinfo(x->h, CURLINFO_RESPONSE_CODE, &x->status);
    if (!(x->stream && x->status == 200 && x->is_sse)) {
        size_t cap = x->status == 200 ? x->body_cap : R_MAX_ERR_BODY;
        if (x->body.len + n > cap) {
            if (x->status != 200) return n; /* an error body: keep the start */
            x->too_big = 1;
            return 0;
        }
        if (buf_append(&x->body, p, n)) return 0;
        return n;
    }
    /* SSE: complete lines are handled as they arrive; a partial one waits */
    size_t i = 0;
    while (i < n) {
        const char *nl = memchr(p + i, '\n', n - i);
        size_t take = nl ? (size_t)(nl - (p + i)) : n - i;
        if (x->line.len + take > R_MAX_LINE) {
            x->prc = doc_errf(&x->perr, DOC_ELIMIT, "remote %s: a stream line longer than %zu bytes",
                              x->r->base, R_MAX_LINE);
            return 0;
        }
        if (buf_append(&x->line, p + i, take)) return 0;
        i += take;
        if (!nl) break;
        i++;
        int rc = sse_line(x, x->line.data ? x->line.data : "", x->line.len);
        x->line.len = 0;
        if (rc) {
            x->prc = rc;
            return 0;
        }
        if (x->cancelled || x->hb.stopped) return 0; /* abort the transfer */
    }
    return n;
}

static CURL *handle_new(xfer *x, const char *url, struct curl_slist **hdrs, const char *body,
                        int stream)
{
    struct llm_remote *r = x->r;
    CURL *h = curl_easy_init();
    if (!h) return NULL;
    *hdrs = curl_slist_append(*hdrs, "Content-Type: application/json");
    if (stream) *hdrs = curl_slist_append(*hdrs, "Accept: text/event-stream");
    if (r->key) {
        buf a;
        buf_init(&a, 0);
        if (!buf_printf(&a, "Authorization: Bearer %s", r->key)) *hdrs = curl_slist_append(*hdrs, a.data);
        if (a.data) memset(a.data, 0, a.len);
        buf_free(&a);
    }
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, *hdrs);
    if (body) curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_USERAGENT, R_USER_AGENT);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, r->timeout_s);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, r->connect_timeout_s);
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, r->idle_timeout_s);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, r->insecure ? 0L : 1L);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, r->insecure ? 0L : 2L);
    if (r->ca_file[0]) curl_easy_setopt(h, CURLOPT_CAINFO, r->ca_file);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, x);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, x);
    curl_easy_setopt(h, CURLOPT_ACCEPT_ENCODING, "");
    return h;
}

/* http_error: the message for a non-2xx reply.  404 that mentions the model
 * is DOC_ENOTFOUND ("model NAME not found"). */
static int http_error(xfer *x, const char *what, int attempts, doc_err *err)
{
    struct llm_remote *r = x->r;
    char ex[160];
    excerpt(r, x->body.data ? x->body.data : "", x->body.len, ex, sizeof ex);
    long s = x->status;
    if (s == 401 || s == 403)
        return doc_errf(err, DOC_EIO, "remote %s: the server refused the API key (HTTP %ld%s)%s",
                        r->base, s, r->key ? "" : "; none was sent: set [remote] api_key or api_key_env",
                        "");
    if (s == 404) {
        if (x->body.data && strstr(x->body.data, "model"))
            return doc_errf(err, DOC_ENOTFOUND, "remote %s: model %s not found (HTTP 404: \"%s\")",
                            r->base, r->model, ex);
        return doc_errf(err, DOC_ENOTFOUND, "remote %s: %s: HTTP 404 (is the base URL right? \"%s\")",
                        r->base, what, ex);
    }
    if (s == 429)
        return doc_errf(err, DOC_EIO, "remote %s: %s: rate limited (HTTP 429) after %d attempts: \"%s\"",
                        r->base, what, attempts, ex);
    if (s >= 500)
        return doc_errf(err, DOC_EIO, "remote %s: %s: server error HTTP %ld after %d attempts: \"%s\"",
                        r->base, what, s, attempts, ex);
    return doc_errf(err, DOC_EIO, "remote %s: %s: HTTP %ld: \"%s\"", r->base, what, s, ex);
}

static int curl_error(xfer *x, CURLcode cc, const char *cerr, const char *what, int attempts,
                      doc_err *err)
{
    const char *b = x->r->base;
    const char *detail = cerr && *cerr ? cerr : curl_easy_strerror(cc);
    switch (cc) {
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
        return doc_errf(err, DOC_EIO, "remote %s: %s: cannot resolve the host (%s)", b, what, detail);
    case CURLE_COULDNT_CONNECT:
        return doc_errf(err, DOC_EIO, "remote %s: %s: cannot connect (%s) after %d attempts", b, what,
                        detail, attempts);
    case CURLE_OPERATION_TIMEDOUT:
        return doc_errf(err, DOC_EIO, "remote %s: %s: timed out (%s)", b, what, detail);
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CACERT_BADFILE:
        return doc_errf(err, DOC_EIO,
                        "remote %s: %s: TLS verification failed (%s); set [remote] ca_file", b, what,
                        detail);
    case CURLE_SSL_CONNECT_ERROR:
        return doc_errf(err, DOC_EIO, "remote %s: %s: TLS handshake failed (%s)", b, what, detail);
    default:
        return doc_errf(err, DOC_EIO, "remote %s: %s: %s after %d attempts", b, what, detail, attempts);
    }
}

static int retryable_curl(CURLcode cc)
{
    return cc == CURLE_COULDNT_CONNECT || cc == CURLE_RECV_ERROR || cc == CURLE_SEND_ERROR ||
           cc == CURLE_GOT_NOTHING || cc == CURLE_PARTIAL_FILE;
}

static void backoff_sleep(const struct llm_remote *r, int attempt, double retry_after,
                          unsigned *seed)
{
    double d;
    if (retry_after >= 0) {
        d = retry_after;
    } else {
        d = r->backoff_ms / 1000.0 * (double)(1u << (attempt < 10 ? attempt : 10));
        d += d * 0.25 * ((double)rand_r(seed) / RAND_MAX); /* jitter: up to +25% */
        if (d > R_MAX_RETRY_AFTER) d = R_MAX_RETRY_AFTER;
    }
    struct timespec ts = {(time_t)d, (long)((d - (double)(time_t)d) * 1e9)};
    while (nanosleep(&ts, &ts) && ts.tv_sec >= 0) {}
}

/* request: one call with retries.  On success x->body holds a non-stream
 * reply (status 200) or the stream was forwarded.  what: "chat", "embeddings". */
static int request(xfer *x, const char *path, const char *body, const char *what, doc_err *err)
{
    struct llm_remote *r = x->r;
    char url[R_MAX_URL + 64];
    snprintf(url, sizeof url, "%s%s", r->base, path);
    unsigned seed = (unsigned)time(NULL) ^ (unsigned)(uintptr_t)x;
    int attempts = 0, rc = DOC_OK;
    for (;;) {
        attempts++;
        struct curl_slist *hdrs = NULL;
        char cerr[CURL_ERROR_SIZE] = "";
        x->status = 0;
        x->retry_after = -1;
        x->is_sse = 0;
        x->too_big = 0;
        buf_reset(&x->body);
        buf_reset(&x->line);
        x->h = handle_new(x, url, &hdrs, body, x->stream);
        if (!x->h) {
            curl_slist_free_all(hdrs);
            return doc_errf(err, DOC_ENOMEM, "remote %s: cannot make a transfer", r->base);
        }
        curl_easy_setopt(x->h, CURLOPT_ERRORBUFFER, cerr);
        slot_take(r);
        CURLcode cc = curl_easy_perform(x->h);
        slot_give(r);
        if (!x->status) curl_easy_getinfo(x->h, CURLINFO_RESPONSE_CODE, &x->status);
        curl_easy_cleanup(x->h);
        x->h = NULL;
        curl_slist_free_all(hdrs);
        int can_retry = !x->forwarded && attempts <= r->retries;
        if (x->prc) return doc_errf(err, x->prc, "%s", x->perr.msg);
        if (x->cancelled || x->hb.stopped) return DOC_OK;
        if (x->too_big)
            return doc_errf(err, DOC_ELIMIT, "remote %s: %s: reply larger than %zu bytes", r->base, what,
                            x->body_cap);
        if (cc == CURLE_OK && x->status >= 200 && x->status < 300) return DOC_OK;
        if (cc == CURLE_OK && (x->status == 429 || x->status == 500 || x->status == 502 ||
                               x->status == 503 || x->status == 504)) {
            if (!can_retry) return http_error(x, what, attempts, err);
            log_warn("remote %s: %s: HTTP %ld, retrying (attempt %d of %d)", r->base, what, x->status,
                     attempts + 1, r->retries + 1);
            backoff_sleep(r, attempts - 1, x->retry_after, &seed);
            continue;
        }
        if (cc == CURLE_OK) return http_error(x, what, attempts, err);
        if (x->forwarded) { /* cut mid-stream: handled by the caller */
            snprintf(x->cut, sizeof x->cut, ": %s", cerr[0] ? cerr : curl_easy_strerror(cc));
            rc = DOC_OK;
            break;
        }
        if (!(retryable_curl(cc) && can_retry)) return curl_error(x, cc, cerr, what, attempts, err);
        log_warn("remote %s: %s: %s, retrying (attempt %d of %d)", r->base, what,
                 cerr[0] ? cerr : curl_easy_strerror(cc), attempts + 1, r->retries + 1);
        backoff_sleep(r, attempts - 1, -1, &seed);
    }
    return rc;
}

static void xfer_init(xfer *x, struct llm_remote *r)
{
    memset(x, 0, sizeof *x);
    x->r = r;
    buf_init(&x->body, 0);
    buf_init(&x->line, 0);
    buf_init(&x->text, 0);
    buf_init(&x->hb.pending, 0);
    x->body_cap = R_MAX_REPLY;
}

static void xfer_free(xfer *x)
{
    buf_free(&x->body);
    buf_free(&x->line);
    buf_free(&x->text);
    buf_free(&x->hb.pending);
}

/* parse_reply: the 200 body as a JSON object, or a DOC_EFORMAT naming it */
static int parse_reply(xfer *x, const char *what, json_t **out, doc_err *err)
{
    json_error_t je;
    *out = json_loadb(x->body.data ? x->body.data : "", x->body.len, 0, &je);
    if (json_is_object(*out)) return DOC_OK;
    json_decref(*out);
    *out = NULL;
    char ex[96];
    excerpt(x->r, x->body.data ? x->body.data : "", x->body.len, ex, sizeof ex);
    return doc_errf(err, DOC_EFORMAT, "remote %s: %s: malformed JSON reply (%s): \"%s\"", x->r->base,
                    what, je.text, ex);
}

/* ---- tokens ------------------------------------------------------------------ */

int llm_count_tokens(const llm_model *m, const char *text, size_t len, int *n, doc_err *err)
{
    *n = 0;
    if (!m->remote) {
        int32_t *ids = NULL;
        int rc = llm_tokenize(m, text, len, 0, 1, &ids, n, err);
        free(ids);
        return rc;
    }
    const struct llm_remote *r = m->remote;
    if (!r->tok) {
        if (len > (size_t)1 << 30) return doc_errf(err, DOC_ELIMIT, "text of %zu bytes is too long", len);
        *n = (int)((len + 2) / 3);
        return DOC_OK;
    }
    int cap = (int)(len / 2) + 16;
    int32_t *ids = malloc((size_t)cap * sizeof *ids);
    if (!ids) return doc_errf(err, DOC_ENOMEM, "out of memory");
    int rc = tok_encode(r->tok, text, len, 0, 1, ids, cap, n, err);
    if (rc == DOC_ELIMIT) { /* more than len/2 tokens: count exactly with room for all */
        int need = *n;
        int32_t *b = realloc(ids, (size_t)need * sizeof *ids);
        if (!b) rc = doc_errf(err, DOC_ENOMEM, "out of memory");
        else ids = b, rc = tok_encode(r->tok, text, len, 0, 1, ids, need, n, err);
    }
    free(ids);
    return rc;
}

static int count_or_estimate(const llm_model *m, const char *t, size_t n)
{
    int k = 0;
    doc_err e;
    if (llm_count_tokens(m, t, n, &k, &e)) k = (int)((n + 2) / 3);
    return k;
}

/* ---- chat ---------------------------------------------------------------------- */

static json_t *chat_body(const struct llm_remote *r, const llm_chat_msg *msgs, int n,
                         const llm_sampling *s)
{
    json_t *o = json_object(), *arr = json_array();
    if (!o || !arr) goto fail;
    json_object_set_new(o, "model", json_string(r->model));
    json_object_set_new(o, "messages", arr);
    for (int i = 0; i < n; i++) {
        json_t *m = json_pack("{s:s,s:s}", "role", msgs[i].role ? msgs[i].role : "user", "content",
                              msgs[i].content ? msgs[i].content : "");
        if (!m || json_array_append_new(arr, m)) goto fail;
    }
    json_object_set_new(o, "stream", json_true());
    json_object_set_new(o, "stream_options", json_pack("{s:b}", "include_usage", 1));
    if (s->max_tokens > 0) json_object_set_new(o, "max_tokens", json_integer(s->max_tokens));
    json_object_set_new(o, "temperature", json_real(s->temperature));
    if (s->top_p > 0 && s->top_p < 1) json_object_set_new(o, "top_p", json_real(s->top_p));
    if (s->top_k > 0) json_object_set_new(o, "top_k", json_integer(s->top_k));
    json_object_set_new(o, "seed", json_integer((json_int_t)(s->seed & 0x7fffffffffffLL)));
    /* multiplicative penalty as llama.cpp (repeat_penalty) and vLLM/TGI
     * (repetition_penalty) define it; OpenAI's frequency_penalty is additive
     * and is not a translation of it, so it is not sent */
    if (s->repeat_penalty > 0 && s->repeat_penalty != 1) {
        json_object_set_new(o, "repeat_penalty", json_real(s->repeat_penalty));
        json_object_set_new(o, "repetition_penalty", json_real(s->repeat_penalty));
    }
    if (s->n_stop > 0) {
        json_t *st = json_array();
        for (int i = 0; i < s->n_stop && i < 4; i++) /* OpenAI takes at most 4 */
            if (s->stop[i] && *s->stop[i]) json_array_append_new(st, json_string(s->stop[i]));
        json_object_set_new(o, "stop", st);
    }
    return o;
fail:
    json_decref(o);
    json_decref(arr);
    return NULL;
}

static int remote_chat(llm_model *m, const llm_chat_msg *msgs, int n, const llm_sampling *s,
                       llm_text_cb cb, void *ud, llm_gen_stats *st, doc_err *err)
{
    struct llm_remote *r = m->remote;
    xfer x;
    xfer_init(&x, r);
    x.stream = 1;
    x.cb = cb;
    x.ud = ud;
    x.hb.s = s;
    x.usage_prompt = x.usage_gen = -1;
    char *body = NULL;
    double t0 = time_now();
    int rc = DOC_OK;
    json_t *o = chat_body(r, msgs, n, s);
    if (!o || !(body = json_dumps(o, JSON_COMPACT))) {
        rc = doc_errf(err, DOC_ENOMEM, "out of memory");
        goto done;
    }
    if ((rc = request(&x, "/chat/completions", body, "chat", err))) goto done;
    if (!x.is_sse && !x.cancelled && !x.hb.stopped) {
        /* the server ignored stream: one JSON completion */
        json_t *rep = NULL;
        if ((rc = parse_reply(&x, "chat", &rep, err))) goto done;
        json_t *ch = json_array_get(json_object_get(rep, "choices"), 0);
        const char *txt = json_string_value(json_object_get(json_object_get(ch, "message"), "content"));
        if (!txt) {
            json_decref(rep);
            rc = doc_errf(err, DOC_EFORMAT, "remote %s: chat: the reply has no choices[0].message.content",
                          r->base);
            goto done;
        }
        x.t_first = time_now();
        if (hb_push(&x, txt, strlen(txt))) rc = doc_errf(err, DOC_ENOMEM, "out of memory");
        const char *fr = json_string_value(json_object_get(ch, "finish_reason"));
        x.finish = finish_code(fr ? fr : "stop");
        x.done = 1;
        json_t *u = json_object_get(rep, "usage");
        x.usage_prompt = (int)json_int_or(u, "prompt_tokens", -1);
        x.usage_gen = (int)json_int_or(u, "completion_tokens", -1);
        json_decref(rep);
        if (rc) goto done;
    } else if (x.is_sse && !x.cancelled && !x.hb.stopped && x.line.len) {
        /* a last line without its newline */
        if ((rc = sse_line(&x, x.line.data, x.line.len))) {
            rc = doc_errf(err, rc, "%s", x.perr.msg);
            goto done;
        }
    }
    if (x.cancelled) {
        st->stop_reason = LLM_STOP_CANCELLED;
    } else if (x.hb.stopped) {
        st->stop_reason = LLM_STOP_STRING;
    } else if (!x.done && !x.finish) {
        st->stop_reason = LLM_STOP_INCOMPLETE;
        rc = doc_errf(err, DOC_EIO,
                      "remote %s: the stream ended before the server finished: the answer is "
                      "incomplete (%zu bytes received%s)",
                      r->base, x.text.len + x.hb.pending.len, x.cut);
        hb_flush(&x);
    } else {
        hb_flush(&x);
        st->stop_reason = x.finish ? x.finish : LLM_STOP_EOS;
    }
done:
    st->t_prompt = x.t_first ? x.t_first - t0 : time_now() - t0;
    st->t_gen = x.t_first ? time_now() - x.t_first : 0;
    if (x.usage_gen >= 0) st->n_gen = x.usage_gen;
    else st->n_gen = count_or_estimate(m, x.text.data ? x.text.data : "", x.text.len);
    if (x.usage_prompt >= 0) {
        st->n_prompt = x.usage_prompt;
    } else {
        for (int i = 0; i < n; i++)
            st->n_prompt += msgs[i].content ? count_or_estimate(m, msgs[i].content, strlen(msgs[i].content)) : 0;
    }
    free(body);
    json_decref(o);
    xfer_free(&x);
    return rc;
}

int llm_generate_chat(llm_model *m, const llm_chat_msg *msgs, int n, const llm_sampling *s_in,
                      llm_text_cb cb, void *ud, llm_gen_stats *st_out, doc_err *err)
{
    llm_sampling s;
    if (s_in) s = *s_in;
    else llm_sampling_default(&s);
    llm_gen_stats st = {0};
    int rc;
    if (m->kind != LLM_DECODER) {
        rc = doc_errf(err, DOC_ESTATE, "%s: generation needs a decoder model, this is an encoder",
                      m->src.path);
    } else if (n <= 0 || !msgs) {
        rc = doc_errf(err, DOC_EINVAL, "no messages");
    } else if (m->remote) {
        rc = remote_chat(m, msgs, n, &s, cb, ud, &st, err);
    } else {
        buf prompt;
        buf_init(&prompt, 0);
        rc = llm_chat_render(m, msgs, n, 1, &prompt, err);
        if (rc == DOC_OK) rc = llm_generate(m, prompt.data ? prompt.data : "", &s, cb, ud, &st, err);
        buf_free(&prompt);
        if (st_out) *st_out = st;
        return rc;
    }
    if (st_out) *st_out = st;
    return rc;
}

/* ---- embeddings -------------------------------------------------------------------- */

/* embed_batch: n texts -> out (n, dim); dim 0 learns the dimension (probe) */
static int embed_batch(struct llm_remote *r, const char *const *texts, int n, float *out, int *dim,
                       doc_err *err)
{
    xfer x;
    xfer_init(&x, r);
    char *body = NULL;
    json_t *o = json_object(), *in = json_array(), *rep = NULL;
    int rc = DOC_OK;
    if (!o || !in) {
        json_decref(in);
        rc = doc_errf(err, DOC_ENOMEM, "out of memory");
        goto done;
    }
    json_object_set_new(o, "model", json_string(r->model));
    json_object_set_new(o, "input", in);
    json_object_set_new(o, "encoding_format", json_string("float"));
    for (int i = 0; i < n; i++) json_array_append_new(in, json_string(texts[i] ? texts[i] : ""));
    if (!(body = json_dumps(o, JSON_COMPACT))) {
        rc = doc_errf(err, DOC_ENOMEM, "out of memory (or a text is not UTF-8)");
        goto done;
    }
    /* a reply holds n vectors of dim numbers of at most ~32 bytes each */
    x.body_cap = (size_t)n * (size_t)(*dim ? *dim : R_MAX_DIM) * 32 + ((size_t)1 << 20);
    if (x.body_cap > R_MAX_REPLY) x.body_cap = R_MAX_REPLY;
    if ((rc = request(&x, "/embeddings", body, "embeddings", err))) goto done;
    if ((rc = parse_reply(&x, "embeddings", &rep, err))) goto done;
    json_t *data = json_object_get(rep, "data");
    if (!json_is_array(data) || json_array_size(data) != (size_t)n) {
        rc = doc_errf(err, DOC_EFORMAT, "remote %s: embeddings: %zu vectors for %d inputs", r->base,
                      json_is_array(data) ? json_array_size(data) : 0, n);
        goto done;
    }
    char *seen = calloc((size_t)n, 1);
    if (!seen) {
        rc = doc_errf(err, DOC_ENOMEM, "out of memory");
        goto done;
    }
    for (int i = 0; i < n && !rc; i++) {
        json_t *d = json_array_get(data, (size_t)i);
        json_t *v = json_object_get(d, "embedding");
        long long at = json_int_or(d, "index", i);
        size_t k = json_is_array(v) ? json_array_size(v) : 0;
        if (at < 0 || at >= n || seen[at]) {
            rc = doc_errf(err, DOC_EFORMAT, "remote %s: embeddings: bad or repeated index %lld", r->base, at);
            break;
        }
        seen[at] = 1;
        if (!*dim) {
            if (k < 1 || k > R_MAX_DIM) {
                rc = doc_errf(err, DOC_EFORMAT, "remote %s: embeddings: dimension %zu (1..%d)", r->base, k,
                              R_MAX_DIM);
                break;
            }
            *dim = (int)k;
            if (!out) break; /* the probe only learns the dimension */
        }
        if (k != (size_t)*dim) {
            rc = doc_errf(err, DOC_EFORMAT, "remote %s: embeddings: vector %lld has dimension %zu, expected %d",
                          r->base, at, k, *dim);
            break;
        }
        float *dst = out + (size_t)at * (size_t)*dim;
        double ss = 0;
        for (size_t j = 0; j < k; j++) {
            json_t *e = json_array_get(v, j);
            double f = json_number_value(e);
            if (!json_is_number(e) || !isfinite(f) || fabs(f) > 1e30) {
                rc = doc_errf(err, DOC_EFORMAT, "remote %s: embeddings: vector %lld element %zu is not a finite number",
                              r->base, at, j);
                break;
            }
            dst[j] = (float)f;
            ss += f * f;
        }
        if (!rc && !(ss > 0))
            rc = doc_errf(err, DOC_EFORMAT, "remote %s: embeddings: vector %lld is all zeros", r->base, at);
        for (size_t j = 0; !rc && j < k; j++) dst[j] = (float)(dst[j] / sqrt(ss));
    }
    free(seen);
done:
    json_decref(rep);
    json_decref(o);
    free(body);
    xfer_free(&x);
    return rc;
}

int remote_embed(llm_model *m, const char *const *texts, int n, float *out,
                 const volatile int *cancel, doc_err *err)
{
    struct llm_remote *r = m->remote;
    int dim = r->dim;
    for (int b = 0; b < n; b += m->batch) {
        if (cancel && *cancel) return doc_errf(err, DOC_ECANCELLED, "cancelled");
        int nb = n - b < m->batch ? n - b : m->batch;
        int rc = embed_batch(r, texts + b, nb, out + (size_t)b * (size_t)dim, &dim, err);
        if (rc) return rc;
    }
    return DOC_OK;
}

int remote_embed_dim(const llm_model *m) { return m->kind == LLM_ENCODER ? m->remote->dim : 0; }
const char *remote_source(const llm_model *m) { return m->remote->source; }

/* ---- open / close -------------------------------------------------------------------- */

/* first_model: the first id of GET {base}/models (ids[] up to 8 of them) */
static int list_models(struct llm_remote *r, char ids[8][256], int *n, doc_err *err)
{
    xfer x;
    xfer_init(&x, r);
    x.body_cap = (size_t)1 << 20;
    json_t *rep = NULL;
    *n = 0;
    int rc = request(&x, "/models", NULL, "listing models", err);
    if (!rc) {
        /* the request was a GET: handle_new sets POSTFIELDS only with a body */
        rc = parse_reply(&x, "models", &rep, err);
    }
    if (!rc) {
        json_t *data = json_object_get(rep, "data");
        for (size_t i = 0; i < json_array_size(data) && *n < 8; i++) {
            const char *id = json_str_or(json_array_get(data, i), "id", NULL);
            if (id && strlen(id) < 256) snprintf(ids[(*n)++], 256, "%s", id);
        }
        if (!*n) rc = doc_errf(err, DOC_ENOTFOUND, "remote %s: GET /models lists no model", r->base);
    }
    json_decref(rep);
    xfer_free(&x);
    return rc;
}

static int load_tokenizer(struct llm_remote *r, const char *path, doc_err *err)
{
    int rc;
    if (file_is_dir(path)) {
        rc = tok_from_hf_dir(path, &r->tok, err);
    } else {
        rc = gguf_open(path, &r->tok_gguf, err);
        if (!rc) rc = tok_from_gguf(r->tok_gguf, &r->tok, err);
    }
    if (rc) doc_errprefix(err, "[remote] tokenizer %s", path);
    return rc;
}

int remote_open(llm_model *m, const char *url, const llm_opts *o, doc_err *err)
{
    static const llm_remote_opts defaults = {0};
    const llm_remote_opts *ro = o && o->remote ? o->remote : &defaults;
    pthread_once(&global_once, global_init);
    if (global_rc != CURLE_OK) return doc_errf(err, DOC_EIO, "libcurl: %s", curl_easy_strerror(global_rc));
    struct llm_remote *r = calloc(1, sizeof *r);
    if (!r) return doc_errf(err, DOC_ENOMEM, "out of memory");
    m->remote = r;
    if (pthread_mutex_init(&r->mu, NULL)) return doc_errf(err, DOC_ENOMEM, "mutex");
    if (pthread_cond_init(&r->cv, NULL)) {
        pthread_mutex_destroy(&r->mu);
        return doc_errf(err, DOC_ENOMEM, "condition variable");
    }
    r->sync_ok = 1;
    const char *hash = strchr(url, '#');
    size_t bl = hash ? (size_t)(hash - url) : strlen(url);
    while (bl > 8 && url[bl - 1] == '/') bl--;
    if (bl >= sizeof r->base) return doc_errf(err, DOC_ELIMIT, "remote URL longer than %zu bytes", sizeof r->base - 1);
    memcpy(r->base, url, bl);
    for (size_t i = 0; i < bl; i++)
        if ((unsigned char)url[i] <= 0x20 || url[i] == 0x7f)
            return doc_errf(err, DOC_EINVAL, "remote URL has a space or control character at byte %zu", i);
    if (hash && (!hash[1] || strlen(hash + 1) >= sizeof r->model))
        return doc_errf(err, DOC_EINVAL, "%s: the model name after '#' is empty or too long", r->base);
    snprintf(m->src.path, sizeof m->src.path, "%s", r->base);
    r->timeout_s = ro->timeout_s > 0 ? ro->timeout_s : 300;
    r->connect_timeout_s = ro->connect_timeout_s > 0 ? ro->connect_timeout_s : 10;
    r->idle_timeout_s = ro->idle_timeout_s > 0 ? ro->idle_timeout_s : 60;
    r->retries = ro->retries < 0 ? 0 : ro->retries > 0 ? ro->retries : 2;
    if (r->retries > 20) r->retries = 20;
    r->backoff_ms = ro->backoff_ms > 0 ? ro->backoff_ms : 500;
    r->max_conc = ro->max_concurrency > 0 ? ro->max_concurrency : 8;
    r->insecure = ro->tls_insecure;
    if (ro->ca_file && *ro->ca_file) snprintf(r->ca_file, sizeof r->ca_file, "%s", ro->ca_file);
    const char *key = ro->api_key && *ro->api_key ? ro->api_key : NULL;
    if (!key && ro->api_key_env && *ro->api_key_env) {
        key = getenv(ro->api_key_env);
        if (!key || !*key)
            return doc_errf(err, DOC_EINVAL, "%s: [remote] api_key_env names %s, which is not set", r->base,
                            ro->api_key_env);
    }
    if (key) {
        for (const char *k = key; *k; k++)
            if ((unsigned char)*k <= 0x20 || *k == 0x7f)
                return doc_errf(err, DOC_EINVAL, "%s: the API key has a space or control character", r->base);
        if (!(r->key = strdup(key))) return doc_errf(err, DOC_ENOMEM, "out of memory");
    }
    int rc;
    if (ro->tokenizer && *ro->tokenizer && (rc = load_tokenizer(r, ro->tokenizer, err))) return rc;
    m->kind = o && o->want_kind == LLM_ENCODER ? LLM_ENCODER : LLM_DECODER;
    m->batch = o && o->batch > 0 ? o->batch : 32;
    m->n_ctx = ro->n_ctx > 0 ? ro->n_ctx : o && o->n_ctx > 0 ? o->n_ctx : 4096;
    m->chat = CHAT_CHATML; /* llm_chat_render: for counting only */
    char ids[8][256];
    int n_ids = 1;
    if (hash) snprintf(ids[0], sizeof ids[0], "%s", hash + 1);
    else if ((rc = list_models(r, ids, &n_ids, err))) return rc;
    for (int i = 0; i < n_ids; i++) {
        snprintf(r->model, sizeof r->model, "%s", ids[i]);
        if (m->kind == LLM_DECODER) break;
        /* an encoder: one probe embedding learns the dimension; without
         * #MODEL, the first listed model that embeds is taken */
        const char *probe[1] = {"docent dimension probe"};
        r->dim = 0;
        rc = embed_batch(r, probe, 1, NULL, &r->dim, err);
        if (rc == DOC_OK || hash || rc != DOC_ENOTFOUND) break;
    }
    if (rc) return rc;
    snprintf(r->source, sizeof r->source, "%s#%s", r->base, r->model);
    if (m->kind == LLM_ENCODER)
        snprintf(m->desc, sizeof m->desc, "remote %.150s model %.80s, dim %d", r->base, r->model, r->dim);
    else
        snprintf(m->desc, sizeof m->desc, "remote %.150s model %.80s", r->base, r->model);
    return DOC_OK;
}

void remote_close(llm_model *m)
{
    struct llm_remote *r = m->remote;
    if (!r) return;
    if (r->key) {
        memset(r->key, 0, strlen(r->key));
        free(r->key);
    }
    tok_free(&r->tok);
    gguf_close(&r->tok_gguf);
    if (r->sync_ok) {
        pthread_mutex_destroy(&r->mu);
        pthread_cond_destroy(&r->cv);
    }
    free(r);
    m->remote = NULL;
}

/* ---- docent.conf --------------------------------------------------------------------- */

void llm_opts_from_config(const doc_config *c, int want_kind, llm_opts *o, llm_remote_opts *ro)
{
    memset(o, 0, sizeof *o);
    memset(ro, 0, sizeof *ro);
    o->n_threads = c->threads;
    o->backend = c->backend;
    o->want_kind = want_kind;
    o->mem_limit_mb = c->memory_limit_mb;
    if (want_kind == LLM_ENCODER) o->batch = c->embed_batch;
    else o->n_ctx = c->context;
    ro->api_key = c->remote_api_key;
    ro->api_key_env = c->remote_api_key_env;
    ro->timeout_s = c->remote_timeout_s;
    ro->connect_timeout_s = c->remote_connect_timeout_s;
    ro->idle_timeout_s = c->remote_idle_timeout_s;
    ro->retries = c->remote_retries ? c->remote_retries : -1;
    ro->backoff_ms = c->remote_backoff_ms;
    ro->max_concurrency = c->remote_max_concurrency;
    ro->tls_insecure = !c->remote_tls_verify;
    ro->ca_file = c->remote_ca_file;
    ro->tokenizer = want_kind == LLM_ENCODER ? c->remote_embedder_tokenizer : c->remote_tokenizer;
    ro->n_ctx = c->remote_n_ctx;
    o->remote = ro;
}
