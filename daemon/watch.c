/*
 * watch.c - the config's watch folders ([daemon] watch = COLLECTION:/PATH,...).
 *
 * Each folder gets a thread: it waits its turn among ingest jobs
 * (srv->ingest_mu), brings the collection in line with the folder (the same
 * sync as `docent ingest FOLDER`: new and changed files are ingested, vanished
 * ones removed), then follows it with inotify (ing_watch_run) until the
 * daemon stops.  Like a job it shares the store and the embedder through
 * sched.c, behind queries.  GET /v1/status shows each folder's state.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "daemon/internal.h"

static const char *const state_names[] = {"waiting", "syncing", "watching", "failed", "stopped"};

static void watch_lock(void *ctx, int what, int on)
{
    dd_watch *w = ctx;
    dd_ingest_lock(w->srv, what, on);
}

static void watch_progress(void *ctx, const ing_progress *p)
{
    dd_watch *w = ctx;
    pthread_mutex_lock(&w->srv->stats);
    w->files_done = p->files_done;
    w->files_total = p->files_total;
    pthread_mutex_unlock(&w->srv->stats);
}

static void watch_note(void *ctx, const char *kind, const char *uri, const char *why)
{
    dd_watch *w = ctx;
    pthread_mutex_lock(&w->srv->stats);
    if (!strcmp(kind, "added")) w->added++;
    else if (!strcmp(kind, "updated")) w->updated++;
    else if (!strcmp(kind, "removed")) w->removed++;
    else if (!strcmp(kind, "failed")) w->failed++;
    pthread_mutex_unlock(&w->srv->stats);
    if (!strcmp(kind, "failed") || !strcmp(kind, "skipped"))
        log_info("watch %s: %s %s%s%s", w->path, kind, uri ? uri : "", why ? ": " : "", why ? why : "");
}

static void set_state(dd_watch *w, int state, const char *error)
{
    pthread_mutex_lock(&w->srv->stats);
    w->state = state;
    if (error) snprintf(w->error, sizeof w->error, "%s", error);
    pthread_mutex_unlock(&w->srv->stats);
}

static void *watch_thread(void *arg)
{
    dd_watch *w = arg;
    dd_server *srv = w->srv;
    doc_err e = {0};
    ing_summary sum = {0};
    ing_ctx *ic = NULL;
    ing_opts io;
    dd_ingest_opts(srv, w->collection, &io);
    io.progress = watch_progress;
    io.note = watch_note;
    io.lock = watch_lock;
    io.cb_ctx = w;
    const char *roots[] = {w->path};
    pthread_mutex_lock(&srv->ingest_mu);
    set_state(w, DD_WATCH_SYNCING, NULL);
    int rc = ing_new(srv->store, srv->embedder, &io, &ic, &e);
    if (rc == DOC_OK) rc = ing_add(ic, roots, 1, &sum, &e);
    pthread_mutex_unlock(&srv->ingest_mu);
    if (rc == DOC_OK) {
        fprintf(stderr, "docentd: watch %s (%s): %d added, %d updated, %d unchanged, %d removed, "
                        "%d failed; following it\n",
                w->path, w->collection, sum.added, sum.updated, sum.unchanged, sum.removed,
                sum.failed);
        set_state(w, DD_WATCH_WATCHING, NULL);
        rc = ing_watch_run(ic, roots, 1, &sum, &e);
    }
    if (rc && rc != DOC_ECANCELLED) {
        log_error("watch %s: %s", w->path, e.msg);
        set_state(w, DD_WATCH_FAILED, e.msg);
    } else {
        set_state(w, DD_WATCH_STOPPED, NULL);
    }
    ing_free(&ic);
    dd_producer_done(srv);
    return NULL;
}

/* parse "COLLECTION:/PATH, ..." into srv->watches */
static int parse_watch(dd_server *srv, doc_err *err)
{
    const char *p = srv->cfg.watch;
    while (*p) {
        while (*p == ' ' || *p == '\t' || *p == ',') p++;
        if (!*p) break;
        const char *end = strchr(p, ',');
        if (!end) end = p + strlen(p);
        size_t n = (size_t)(end - p);
        while (n && (p[n - 1] == ' ' || p[n - 1] == '\t')) n--;
        const char *colon = memchr(p, ':', n);
        if (!colon || colon == p || colon[1] != '/')
            return doc_errf(err, DOC_EINVAL,
                            "[daemon] watch: '%.*s': COLLECTION:/ABSOLUTE/PATH is expected",
                            (int)n, p);
        if (srv->n_watches == DD_MAX_WATCHES)
            return doc_errf(err, DOC_ELIMIT, "[daemon] watch: more than %d folders", DD_MAX_WATCHES);
        dd_watch *w = &srv->watches[srv->n_watches];
        size_t cl = (size_t)(colon - p), pl = n - cl - 1;
        if (cl >= sizeof w->collection || pl >= sizeof w->path)
            return doc_errf(err, DOC_ELIMIT, "[daemon] watch: '%.*s': name or path too long", (int)n, p);
        memcpy(w->collection, p, cl);
        w->collection[cl] = 0;
        memcpy(w->path, colon + 1, pl);
        w->path[pl] = 0;
        struct stat st;
        if (stat(w->path, &st) || !S_ISDIR(st.st_mode))
            return doc_errf(err, DOC_ENOTFOUND, "[daemon] watch: %s: not a folder docentd can read",
                            w->path);
        w->srv = srv;
        srv->n_watches++;
        p = end;
    }
    return DOC_OK;
}

int dd_watch_check(dd_server *srv, doc_err *err)
{
    srv->n_watches = 0;
    return parse_watch(srv, err);
}

int dd_watch_start(dd_server *srv, doc_err *err)
{
    int rc = dd_watch_check(srv, err);
    if (rc) return rc;
    for (int i = 0; i < srv->n_watches; i++)
        if (dd_start_producer(srv, watch_thread, &srv->watches[i]))
            return doc_errf(err, DOC_EIO, "watch %s: could not start a thread", srv->watches[i].path);
    return DOC_OK;
}

json_t *dd_watch_json(dd_server *srv)
{
    json_t *arr = json_array();
    pthread_mutex_lock(&srv->stats);
    for (int i = 0; i < srv->n_watches; i++) {
        const dd_watch *w = &srv->watches[i];
        json_t *o = json_pack("{s:s,s:s,s:s,s:I,s:I,s:I,s:I,s:I,s:I}", "collection", w->collection,
                              "path", w->path, "state", state_names[w->state], "documents_done",
                              (json_int_t)w->files_done, "documents_total",
                              (json_int_t)w->files_total, "added", (json_int_t)w->added, "updated",
                              (json_int_t)w->updated, "removed", (json_int_t)w->removed, "failed",
                              (json_int_t)w->failed);
        if (*w->error) json_object_set_new(o, "error", json_string(w->error));
        json_array_append_new(arr, o);
    }
    pthread_mutex_unlock(&srv->stats);
    return arr;
}
