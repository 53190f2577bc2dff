/*
 * fetch.c - the URL source: one HTTP(S) GET through libcurl's easy API.
 *
 * This is the only file of ingest/ that includes curl/curl.h.  Each call uses
 * its own easy handle, so calls on different threads share nothing.
 *
 * Policy: http and https only, for the first request and for every redirect
 * (a redirect to ftp:// or file:// is refused); at most max_redirects hops;
 * a connect timeout and a whole-transfer timeout; the body is capped while it
 * arrives (the transfer is aborted at the cap; CURLOPT_MAXFILESIZE_LARGE
 * refuses an announced Content-Length above it before any byte is read); a
 * compressed body is capped after decoding, so a small gzip bomb cannot pass.
 * A non-2xx final status is an error carrying the status and the server's
 * reason phrase (or the standard one when the server sends none, as HTTP/2
 * does); its body is not downloaded.  Cancellation: the progress callback
 * reads *cancel, which libcurl calls many times a second while data flows and
 * at least about once a second while it waits.
 *
 * curl_global_init is not thread-safe and must run before any easy handle;
 * it is run exactly once per process through pthread_once (the one piece of
 * process-wide state here, besides constant tables), and never undone:
 * curl_global_cleanup at exit is left to the process's end.
 */
#include "ingest/internal.h"

#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FETCH_USER_AGENT "docent/0.1"
#define FETCH_MAX_URL 8192
#define FETCH_DEFAULT_TIMEOUT 60
#define FETCH_DEFAULT_CONNECT_TIMEOUT 10
#define FETCH_DEFAULT_MAX_BYTES ((size_t)64 << 20)
#define FETCH_DEFAULT_MAX_REDIRECTS 5

/* ---- once-only library initialisation ------------------------------------- */

static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static CURLcode global_rc = CURLE_FAILED_INIT; /* written once, under global_once */

static void global_init(void) { global_rc = curl_global_init(CURL_GLOBAL_DEFAULT); }

/* ---- the transfer ----------------------------------------------------------- */

typedef struct xfer {
    buf body;
    const volatile int *cancel;
    long status;         /* status of the last response whose headers were read */
    char reason[64];     /* its reason phrase, lower-cased, "" when none */
    int too_big, http_error, nomem;
} xfer;

/* standard reason phrases, for responses that carry none (HTTP/2, HTTP/3) */
static const struct {
    int code;
    const char *reason;
} reasons[] = {
    {400, "bad request"}, {401, "unauthorized"}, {403, "forbidden"}, {404, "not found"},
    {405, "method not allowed"}, {406, "not acceptable"}, {408, "request timeout"},
    {410, "gone"}, {429, "too many requests"}, {451, "unavailable for legal reasons"},
    {500, "internal server error"}, {501, "not implemented"}, {502, "bad gateway"},
    {503, "service unavailable"}, {504, "gateway timeout"},
};

static size_t on_header(char *p, size_t size, size_t n, void *ud)
{
    xfer *x = ud;
    size_t len = size * n;
    /* a status line starts each response, redirects and 100 Continue included */
    if (len > 5 && memcmp(p, "HTTP/", 5) == 0) {
        size_t i = 5;
        while (i < len && p[i] != ' ') i++;
        while (i < len && p[i] == ' ') i++;
        long code = 0;
        while (i < len && p[i] >= '0' && p[i] <= '9' && code < 1000) code = code * 10 + (p[i++] - '0');
        while (i < len && p[i] == ' ') i++;
        size_t r = 0;
        while (i < len && p[i] != '\r' && p[i] != '\n' && r + 1 < sizeof x->reason) {
            char c = p[i++];
            x->reason[r++] = (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a')
                             : (c >= 0x20 && c < 0x7f) ? c : '?';
        }
        x->reason[r] = 0;
        x->status = code;
    }
    return len;
}

static size_t on_body(char *p, size_t size, size_t n, void *ud)
{
    xfer *x = ud;
    size_t len = size * n;
    if (x->status < 200 || x->status > 299) {
        x->http_error = 1; /* an error page: stop, the status says it all */
        return 0;
    }
    int rc = buf_append(&x->body, p, len);
    if (rc == DOC_ELIMIT) x->too_big = 1;
    else if (rc) x->nomem = 1;
    return rc ? 0 : len;
}

static int on_progress(void *ud, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                       curl_off_t ulnow)
{
    (void)dltotal, (void)dlnow, (void)ultotal, (void)ulnow;
    const xfer *x = ud;
    return x->cancel && *x->cancel; /* non-zero aborts with CURLE_ABORTED_BY_CALLBACK */
}

/* ---- messages ------------------------------------------------------------- */

static int is_tls_error(CURLcode c)
{
    switch (c) {
    case CURLE_SSL_CONNECT_ERROR: case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_ENGINE_NOTFOUND: case CURLE_SSL_ENGINE_SETFAILED:
    case CURLE_SSL_CERTPROBLEM: case CURLE_SSL_CIPHER: case CURLE_SSL_ENGINE_INITFAILED:
    case CURLE_SSL_CACERT_BADFILE: case CURLE_SSL_SHUTDOWN_FAILED:
    case CURLE_SSL_CRL_BADFILE: case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH: case CURLE_SSL_INVALIDCERTSTATUS:
    case CURLE_SSL_CLIENTCERT:
        return 1;
    default:
        return 0;
    }
}

/* host_of: the host part of url into out ("?" when it cannot be parsed). */
static void host_of(const char *url, char *out, size_t cap)
{
    snprintf(out, cap, "?");
    CURLU *u = curl_url();
    char *host = NULL;
    if (u && curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK)
        snprintf(out, cap, "%s", host);
    curl_free(host);
    curl_url_cleanup(u);
}

/* size_text: "64 MiB" for whole MiB, else "N bytes". */
static void size_text(size_t n, char *out, size_t cap)
{
    if (n >= ((size_t)1 << 20) && n % ((size_t)1 << 20) == 0)
        snprintf(out, cap, "%zu MiB", n >> 20);
    else
        snprintf(out, cap, "%zu bytes", n);
}

/* fail: turn a failed transfer into a DOC_E* code and a message naming url. */
static int fail(CURL *h, CURLcode c, const xfer *x, const char *url, const char *errbuf,
                const ing_fetch_opts *o, size_t max_bytes, doc_err *err)
{
    char host[256], sz[64];
    const char *detail = errbuf[0] ? errbuf : curl_easy_strerror(c);
    if (c == CURLE_ABORTED_BY_CALLBACK) return doc_errf(err, DOC_ECANCELLED, "%.300s: cancelled", url);
    /* before the status checks: the last response seen is then a 3xx */
    if (c == CURLE_TOO_MANY_REDIRECTS)
        return doc_errf(err, DOC_ELIMIT, "%.300s: too many redirects (max %ld)", url,
                        o->max_redirects > 0 ? o->max_redirects : FETCH_DEFAULT_MAX_REDIRECTS);
    if (c == CURLE_UNSUPPORTED_PROTOCOL)
        return doc_errf(err, DOC_EUNSUPPORTED,
                        "%.300s: only http and https are fetched (%s)", url, detail);
    if (x->too_big || c == CURLE_FILESIZE_EXCEEDED) {
        size_text(max_bytes, sz, sizeof sz);
        return doc_errf(err, DOC_ELIMIT, "%.300s: body larger than %s", url, sz);
    }
    if (x->nomem) return doc_errf(err, DOC_ENOMEM, "%.300s: out of memory", url);
    if (x->http_error) {
        const char *r = x->reason;
        for (size_t i = 0; !r[0] && i < sizeof reasons / sizeof reasons[0]; i++)
            if (reasons[i].code == x->status) r = reasons[i].reason;
        return doc_errf(err, x->status == 404 || x->status == 410 ? DOC_ENOTFOUND : DOC_EIO,
                        "%.300s: http %ld%s%s", url, x->status, r[0] ? " " : "", r);
    }
    switch (c) {
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY: {
        char *eff = NULL;
        curl_easy_getinfo(h, CURLINFO_EFFECTIVE_URL, &eff);
        host_of(eff ? eff : url, host, sizeof host);
        return doc_errf(err, DOC_EIO, "%.300s: could not resolve host %s", url, host);
    }
    case CURLE_COULDNT_CONNECT: {
        long os = 0;
        curl_easy_getinfo(h, CURLINFO_OS_ERRNO, &os);
        if (os == ECONNREFUSED) return doc_errf(err, DOC_EIO, "%.300s: connection refused", url);
        return doc_errf(err, DOC_EIO, "%.300s: could not connect: %s", url, detail);
    }
    case CURLE_OPERATION_TIMEDOUT: {
        /* a timeout before the connection was made is the connect timeout's */
        curl_off_t conn = 0;
        curl_easy_getinfo(h, CURLINFO_CONNECT_TIME_T, &conn);
        long t = o->timeout_s > 0 ? o->timeout_s : FETCH_DEFAULT_TIMEOUT;
        long ct = o->connect_timeout_s > 0 ? o->connect_timeout_s : FETCH_DEFAULT_CONNECT_TIMEOUT;
        if (strncmp(errbuf, "Resolving timed out", 19) == 0) {
            host_of(url, host, sizeof host);
            return doc_errf(err, DOC_EIO, "%.300s: could not resolve host %s (timed out after %ld s)",
                            url, host, ct < t ? ct : t);
        }
        if (conn == 0 && ct < t)
            return doc_errf(err, DOC_EIO, "%.300s: connect timed out after %ld s", url, ct);
        return doc_errf(err, DOC_EIO, "%.300s: timed out after %ld s", url, t);
    }
    default:
        if (is_tls_error(c)) return doc_errf(err, DOC_EIO, "%.300s: tls: %s", url, detail);
        return doc_errf(err, DOC_EIO, "%.300s: %s", url, detail);
    }
}

/* ---- public --------------------------------------------------------------- */

int ing_is_url(const char *s)
{
    return s && (strncasecmp(s, "http://", 7) == 0 || strncasecmp(s, "https://", 8) == 0);
}

void ing_fetched_free(ing_fetched *f)
{
    if (!f) return;
    free(f->data);
    free(f->content_type);
    free(f->final_url);
    memset(f, 0, sizeof *f);
}

int ing_fetch(const char *url, const ing_fetch_opts *o, ing_fetched *out, doc_err *err)
{
    static const ing_fetch_opts defaults;
    int rc = DOC_OK;
    CURL *h = NULL;
    char errbuf[CURL_ERROR_SIZE] = "";
    xfer x = {0};
    if (!o) o = &defaults;
    if (!out || !url) return doc_errf(err, DOC_EINVAL, "ing_fetch: no url or result");
    memset(out, 0, sizeof *out);
    if (strlen(url) > FETCH_MAX_URL)
        return doc_errf(err, DOC_ELIMIT, "%.200s...: url longer than %d bytes", url, FETCH_MAX_URL);
    if (!ing_is_url(url))
        return doc_errf(err, DOC_EUNSUPPORTED, "%.300s: only http and https urls are fetched", url);

    pthread_once(&global_once, global_init);
    if (global_rc != CURLE_OK)
        return doc_errf(err, DOC_EIO, "libcurl: initialisation failed: %s",
                        curl_easy_strerror(global_rc));

    size_t max_bytes = o->max_bytes ? o->max_bytes : FETCH_DEFAULT_MAX_BYTES;
    long timeout = o->timeout_s > 0 ? o->timeout_s : FETCH_DEFAULT_TIMEOUT;
    long ctimeout = o->connect_timeout_s > 0 ? o->connect_timeout_s : FETCH_DEFAULT_CONNECT_TIMEOUT;
    long redirs = o->max_redirects > 0 ? o->max_redirects : FETCH_DEFAULT_MAX_REDIRECTS;
    buf_init(&x.body, max_bytes);
    x.cancel = o->cancel;

    if (!(h = curl_easy_init())) {
        rc = doc_errf(err, DOC_ENOMEM, "%.300s: libcurl handle: out of memory", url);
        goto done;
    }
    /* each setopt below is valid for this libcurl (>= 7.85); a failure would be
     * a build against an older one, caught as CURLE_UNKNOWN_OPTION at the end */
    CURLcode c = CURLE_OK;
#define SET(opt, val) \
    do { if (c == CURLE_OK) c = curl_easy_setopt(h, opt, val); } while (0)
    SET(CURLOPT_URL, url);
    SET(CURLOPT_PROTOCOLS_STR, "http,https");
    SET(CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    SET(CURLOPT_FOLLOWLOCATION, 1L);
    SET(CURLOPT_MAXREDIRS, redirs);
    SET(CURLOPT_CONNECTTIMEOUT, ctimeout);
    SET(CURLOPT_TIMEOUT, timeout);
    SET(CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)max_bytes);
    SET(CURLOPT_USERAGENT, FETCH_USER_AGENT);
    SET(CURLOPT_ACCEPT_ENCODING, ""); /* every encoding libcurl decodes */
    SET(CURLOPT_FILETIME, 1L);
    SET(CURLOPT_NOSIGNAL, 1L);        /* no SIGALRM in a threaded daemon */
    SET(CURLOPT_ERRORBUFFER, errbuf);
    SET(CURLOPT_HEADERFUNCTION, on_header);
    SET(CURLOPT_HEADERDATA, &x);
    SET(CURLOPT_WRITEFUNCTION, on_body);
    SET(CURLOPT_WRITEDATA, &x);
    SET(CURLOPT_NOPROGRESS, 0L);
    SET(CURLOPT_XFERINFOFUNCTION, on_progress);
    SET(CURLOPT_XFERINFODATA, &x);
#undef SET
    if (c != CURLE_OK) {
        rc = doc_errf(err, DOC_EUNSUPPORTED, "%.300s: libcurl option refused: %s", url,
                      curl_easy_strerror(c));
        goto done;
    }

    c = curl_easy_perform(h);
    long status = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    if (c == CURLE_OK && (status < 200 || status > 299)) {
        x.http_error = 1; /* an empty error response never reached on_body */
        x.status = status;
    }
    if (c != CURLE_OK || x.http_error) {
        rc = fail(h, c, &x, url, errbuf, o, max_bytes, err);
        goto done;
    }

    char *ct = NULL, *eff = NULL;
    curl_off_t ft = -1;
    curl_easy_getinfo(h, CURLINFO_CONTENT_TYPE, &ct);
    curl_easy_getinfo(h, CURLINFO_EFFECTIVE_URL, &eff);
    curl_easy_getinfo(h, CURLINFO_FILETIME_T, &ft);
    out->len = x.body.len;
    /* buf_append left the body NUL-terminated; an empty body is "" */
    out->data = x.body.data ? buf_steal(&x.body, NULL) : calloc(1, 1);
    if (!out->data || (ct && !(out->content_type = strdup(ct))) ||
        !(out->final_url = strdup(eff ? eff : url))) {
        rc = doc_errf(err, DOC_ENOMEM, "%.300s: out of memory", url);
        goto done;
    }
    out->status = status;
    out->mtime = ft > 0 ? (int64_t)ft : 0;

done:
    if (rc) ing_fetched_free(out);
    buf_free(&x.body);
    curl_easy_cleanup(h);
    return rc;
}
