/* status.c - status code names, error text, logging, time. */
#include "core.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

static const struct {
    int rc;
    const char *name;
} status_names[] = {
    {DOC_OK, "ok"},
    {DOC_EINVAL, "invalid argument"},
    {DOC_ENOMEM, "out of memory"},
    {DOC_EIO, "i/o error"},
    {DOC_EFORMAT, "bad format"},
    {DOC_ELIMIT, "limit reached"},
    {DOC_ENOTFOUND, "not found"},
    {DOC_EUNSUPPORTED, "unsupported"},
    {DOC_ECANCELLED, "cancelled"},
    {DOC_ESTATE, "invalid state"},
    {DOC_EDEVICE, "device error"},
};

const char *doc_strerror(int rc)
{
    for (size_t i = 0; i < sizeof status_names / sizeof status_names[0]; i++)
        if (status_names[i].rc == rc) return status_names[i].name;
    return "unknown error";
}

int doc_errf(doc_err *e, int rc, const char *fmt, ...)
{
    if (!e) return rc;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
    e->rc = rc;
    return rc;
}

void doc_errprefix(doc_err *e, const char *fmt, ...)
{
    if (!e) return;
    char pre[256], old[sizeof e->msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(pre, sizeof pre, fmt, ap);
    va_end(ap);
    memcpy(old, e->msg, sizeof old);
    size_t pl = strlen(pre), ol = strnlen(old, sizeof old - 1);
    if (pl > sizeof e->msg - 3) pl = sizeof e->msg - 3;
    if (ol > sizeof e->msg - 3 - pl) ol = sizeof e->msg - 3 - pl;
    memcpy(e->msg, pre, pl);
    memcpy(e->msg + pl, ": ", 2);
    memcpy(e->msg + pl + 2, old, ol);
    e->msg[pl + 2 + ol] = 0;
}

/* ---- logging ----------------------------------------------------------- */

static int log_threshold = LOG_WARN; /* process-wide, set by main() */
/* the redaction filter of every line, set once at start (log_set_filter) */
static log_filter_fn log_filter;
static void *log_filter_ctx;

void log_set_filter(log_filter_fn fn, void *ctx)
{
    log_filter = fn;
    log_filter_ctx = ctx;
}

int log_level(void) { return log_threshold; }
void log_set_level(int level) { log_threshold = level; }

void log_init(void)
{
    static const char *names[] = {"error", "warn", "info", "debug"};
    const char *env = getenv("DOCENT_LOG");
    if (!env) return;
    for (int i = 0; i < 4; i++)
        if (!strcasecmp(env, names[i])) log_threshold = i;
}

void log_write(int level, const char *file, int line, const char *fmt, ...)
{
    static const char tag[] = "EWID";
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    const char *base = strrchr(file, '/');
    char clean[2048];
    const char *out = msg;
    if (log_filter && log_filter(log_filter_ctx, msg, strlen(msg), clean, sizeof clean) == 0)
        out = clean;
    else if (log_filter) /* the filter failed: the line is not written unfiltered */
        out = "[log line withheld: the redaction filter failed]";
    fprintf(stderr, "docent %c %s:%d: %s\n", tag[level & 3], base ? base + 1 : file, line, out);
}

double time_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}
