/*
 * store_cmds.c - `docent ingest | search | ls | rm | collections | reindex | check`.
 *
 * Each store command runs either through docentd, when cli_socket names one
 * (--socket, $DOCENT_SOCKET, or the config's [daemon] socket when a daemon
 * made it), or in-process on the data directory's store (--local, or no
 * daemon).  Both paths print through the same functions, so the output and
 * the exit status are the same; where the daemon's reply lacks a field the
 * in-process output has, the line is printed without it.  reindex and check
 * stay in-process: they need the store to themselves (see guard_daemon).
 * Settings come from docent.conf (see core/config.h); --data, --config and -o
 * override them (in-process; the daemon uses its own).
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "core/config.h"
#include "core/json.h"
#include "index/index.h"
#include "ingest/ingest.h"
#include "llm/llm.h"
#include "rag/rag.h"

/* ---- ingest ------------------------------------------------------------- */

static const char ingest_help[] =
    "usage: docent ingest [-c COLLECTION] [--watch] [--json] [options] PATH|URL...\n"
    "  adds files, folders (recursively) and http(s) URLs to a collection.  Unchanged\n"
    "  documents are skipped; changed ones are replaced; documents that vanished from\n"
    "  an ingested folder are removed.  Ctrl-C stops after the current document and\n"
    "  keeps what is done.  Exit status 1 when a document failed (the summary says\n"
    "  which and why); skipped documents (unknown types, no text) are not failures.\n"
    "  -c, --collection NAME   target collection (default: \"default\")\n"
    "  --watch                 after ingesting, follow the folders and ingest changes\n"
    "  --include GLOB          only files whose name matches (repeatable)\n"
    "  --exclude GLOB          skip files and folders matching (repeatable)\n"
    "  --follow-symlinks       follow symbolic links (loops are detected)\n"
    "  --json                  print the summary as one JSON object\n"
    "  -q, --quiet             no progress, no per-file lines\n"
    "  --data DIR, --config FILE, -o SECTION.KEY=VALUE   settings (see etc/docent.conf)\n"
    "  --embedder PATH|URL     another embedder than [models] (a URL is an OpenAI-compatible\n"
    "                          server: docs/remote.md); runs in-process\n"
    "  --socket PATH           ingest through docentd there (also $DOCENT_SOCKET, or the\n"
    "                          config's [daemon] socket when docentd runs); --local: in-process.\n"
    "                          Through docentd the paths are sent absolute and docentd reads\n"
    "                          them itself: they must be readable by docentd's user.  Ctrl-C\n"
    "                          stops following the job; docentd carries on with it.  --watch\n"
    "                          is in-process only (docentd follows the folders of its\n"
    "                          config's [daemon] watch).\n";

typedef struct problem {
    char *kind, *uri, *why;
} problem;

typedef struct ingest_ui {
    common *a;
    int tty, width;
    double last_line;
    problem *probs;
    int n_probs, cap_probs, dropped;
    int shown_bar;
} ingest_ui;

static void fmt_eta(double s, char *out, size_t cap)
{
    if (!(s >= 0) || s > 360000) snprintf(out, cap, "--");
    else if (s >= 3600) snprintf(out, cap, "%dh%02dm", (int)s / 3600, (int)s % 3600 / 60);
    else if (s >= 60) snprintf(out, cap, "%dm%02ds", (int)s / 60, (int)s % 60);
    else snprintf(out, cap, "%ds", (int)s);
}

static void on_progress(void *ctx, const ing_progress *p)
{
    ingest_ui *u = ctx;
    char eta[32], line[512], bar[32];
    double rate = p->elapsed > 0 ? (double)p->chunks_embedded / p->elapsed : 0;
    if (u->a->quiet || u->a->json) return;
    if (p->files_total > 0 && p->files_done > 0)
        fmt_eta(p->elapsed / (double)p->files_done * (double)(p->files_total - p->files_done), eta,
                sizeof eta);
    else
        snprintf(eta, sizeof eta, "--");
    if (u->tty) {
        int w = 20, fill = p->files_total > 0 ? (int)(w * p->files_done / p->files_total) : 0;
        for (int i = 0; i < w; i++) bar[i] = i < fill ? '#' : '.';
        bar[w] = 0;
        int n = snprintf(line, sizeof line, "[%s] %lld/%lld files  %lld chunks  %.1f chunks/s  ETA %s  %s",
                         bar, (long long)p->files_done, (long long)(p->files_total < 0 ? 0 : p->files_total),
                         (long long)p->chunks, rate, eta, p->current ? p->current : "");
        if (n > u->width - 1) n = u->width - 1;
        if (n < 0) n = 0;
        fprintf(stderr, "\r%.*s\033[K", n, line);
        u->shown_bar = 1;
    } else if (p->elapsed - u->last_line >= 5 || (!p->current && p->files_done)) {
        u->last_line = p->elapsed;
        fprintf(stderr, "progress: %lld/%lld files, %lld chunks, %.1f chunks/s, ETA %s\n",
                (long long)p->files_done, (long long)(p->files_total < 0 ? 0 : p->files_total),
                (long long)p->chunks, rate, eta);
    }
}

static void on_note(void *ctx, const char *kind, const char *uri, const char *why)
{
    ingest_ui *u = ctx;
    if (!strcmp(kind, "skipped") || !strcmp(kind, "failed") || !strcmp(kind, "removed")) {
        if (u->n_probs == 10000) {
            u->dropped++;
        } else {
            if (u->n_probs == u->cap_probs) {
                int cap = u->cap_probs ? 2 * u->cap_probs : 64;
                problem *p = realloc(u->probs, (size_t)cap * sizeof *p);
                if (!p) return;
                u->probs = p, u->cap_probs = cap;
            }
            problem *p = &u->probs[u->n_probs++];
            p->kind = strdup(kind), p->uri = strdup(uri), p->why = strdup(why ? why : "");
        }
    }
    if (u->a->quiet || u->a->json) return;
    if (!strcmp(kind, "failed") || !strcmp(kind, "skipped")) {
        if (u->shown_bar) fputs("\r\033[K", stderr);
        fprintf(stderr, "%s: %s: %s\n", kind, uri, why ? why : "");
    }
}

/* print_summary: stages 0 when their times are unknown (a daemon that does not send them) */
static void print_summary(ingest_ui *u, const char *coll, const ing_summary *s, int watching, int stages)
{
    common *a = u->a;
    if (u->shown_bar) fputs("\r\033[K", stderr), u->shown_bar = 0;
    if (a->json) {
        json_t *o = json_object(), *st = json_object(), *pr = json_array();
        json_object_set_new(o, "collection", json_string(coll));
        json_object_set_new(o, "added", json_integer(s->added));
        json_object_set_new(o, "updated", json_integer(s->updated));
        json_object_set_new(o, "unchanged", json_integer(s->unchanged));
        json_object_set_new(o, "removed", json_integer(s->removed));
        json_object_set_new(o, "skipped", json_integer(s->skipped));
        json_object_set_new(o, "failed", json_integer(s->failed));
        json_object_set_new(o, "chunks", json_integer(s->chunks));
        json_object_set_new(o, "chunks_embedded", json_integer(s->chunks_embedded));
        json_object_set_new(o, "seconds", json_real(round(s->seconds * 1000) / 1000));
        json_object_set_new(st, "read", json_real(s->t_read));
        json_object_set_new(st, "extract", json_real(s->t_extract));
        json_object_set_new(st, "chunk", json_real(s->t_chunk));
        json_object_set_new(st, "embed", json_real(s->t_embed));
        json_object_set_new(st, "store", json_real(s->t_store));
        if (stages) json_object_set_new(o, "stages", st);
        else json_decref(st);
        for (int i = 0; i < u->n_probs; i++) {
            if (!strcmp(u->probs[i].kind, "removed")) continue;
            json_t *p = json_object();
            json_object_set_new(p, "kind", json_string(u->probs[i].kind));
            json_object_set_new(p, "uri", json_string(u->probs[i].uri));
            json_object_set_new(p, "reason", json_string(u->probs[i].why));
            json_array_append_new(pr, p);
        }
        json_object_set_new(o, "problems", pr);
        cli_print_json(o);
        return;
    }
    printf("%s '%s' in %.1f s: %d added, %d updated, %d unchanged, %d removed, %d skipped, %d failed; "
           "%lld chunks (%lld embedded)\n",
           watching ? "watched" : "ingested into", coll, s->seconds, s->added, s->updated,
           s->unchanged, s->removed, s->skipped, s->failed, (long long)s->chunks,
           (long long)s->chunks_embedded);
    if (stages)
        printf("  time: read %.1f s, extract %.1f s, chunk %.1f s, embed %.1f s, store %.1f s\n",
               s->t_read, s->t_extract, s->t_chunk, s->t_embed, s->t_store);
    for (int k = 0; k < 2; k++) {
        const char *kind = k ? "failed" : "skipped";
        int shown = 0;
        for (int i = 0; i < u->n_probs; i++) {
            if (strcmp(u->probs[i].kind, kind)) continue;
            if (!shown++) printf("%s:\n", kind);
            if (shown <= 50) printf("  %s: %s\n", u->probs[i].uri, u->probs[i].why);
        }
        if (shown > 50) printf("  ... and %d more\n", shown - 50);
    }
    if (u->dropped) printf("  (%d more problems not listed)\n", u->dropped);
}

/* ---- ingest through docentd ------------------------------------------------ */

/* job_show: hand the job's progress and its notes not yet seen (from
 * *seen on) to the same callbacks as in-process; final: the job is over */
static void job_show(ingest_ui *u, const json_t *job, size_t *seen, int final)
{
    const json_t *pr = json_object_get(job, "progress");
    ing_progress p = {.files_total = json_int_or(pr, "documents_total", -1),
                      .files_done = json_int_or(pr, "documents_done", 0),
                      .chunks = json_int_or(pr, "chunks", 0),
                      .elapsed = json_num_or(job, "elapsed_s", 0),
                      .current = final ? NULL : json_str_or(pr, "current", "")};
    p.chunks_embedded = json_int_or(pr, "chunks_embedded", p.chunks);
    const json_t *notes = json_object_get(job, "notes");
    for (; *seen < json_array_size(notes); (*seen)++) {
        const json_t *n = json_array_get(notes, *seen);
        on_note(u, json_str_or(n, "kind", ""), json_str_or(n, "uri", ""), json_str_or(n, "why", ""));
    }
    if (final && !p.files_done) return; /* nothing was looked at: no closing progress line */
    on_progress(u, &p);
}

/* job_summary: the job's summary as ing_summary; 1 when it has the stage times */
static int job_summary(const json_t *job, ing_summary *s)
{
    const json_t *j = json_object_get(job, "summary"), *st = json_object_get(j, "stages");
    *s = (ing_summary){.added = (int)json_int_or(j, "added", 0),
                       .updated = (int)json_int_or(j, "updated", 0),
                       .unchanged = (int)json_int_or(j, "unchanged", 0),
                       .removed = (int)json_int_or(j, "removed", 0),
                       .skipped = (int)json_int_or(j, "skipped", 0),
                       .failed = (int)json_int_or(j, "failed", 0),
                       .chunks = json_int_or(j, "chunks", 0),
                       .chunks_embedded = json_int_or(j, "chunks_embedded", 0),
                       .seconds = json_num_or(j, "seconds", 0),
                       .t_read = json_num_or(st, "read", 0),
                       .t_extract = json_num_or(st, "extract", 0),
                       .t_chunk = json_num_or(st, "chunk", 0),
                       .t_embed = json_num_or(st, "embed", 0),
                       .t_store = json_num_or(st, "store", 0)};
    return st != NULL;
}

/* ingest_remote: POST /v1/ingest with absolute paths and the URLs, then follow
 * GET /v1/jobs/ID until the job is over (or Ctrl-C: the job goes on) */
static int ingest_remote(common *a, ingest_ui *u, const char *sock, char **src, int n)
{
    const char *coll = a->collection ? a->collection : "default";
    json_t *body = json_pack("{s:s}", "collection", coll), *paths = json_array(), *urls = json_array();
    json_t *job = NULL;
    doc_err e = {0};
    long status = 0;
    int rc = 0;
    for (int i = 0; i < n; i++) {
        char real[PATH_MAX], cwd[PATH_MAX];
        if (!strncmp(src[i], "http://", 7) || !strncmp(src[i], "https://", 8)) {
            json_array_append_new(urls, json_string(src[i]));
        } else if (realpath(src[i], real)) {
            json_array_append_new(paths, json_string(real));
        } else if (src[i][0] == '/' || !getcwd(cwd, sizeof cwd)) {
            json_array_append_new(paths, json_string(src[i])); /* docentd says what is wrong */
        } else {
            char abs[PATH_MAX];
            json_array_append_new(paths, json_string(path_join(abs, sizeof abs, cwd, src[i]) ? src[i] : abs));
        }
    }
    if (json_array_size(paths)) json_object_set(body, "paths", paths);
    if (json_array_size(urls)) json_object_set(body, "urls", urls);
    json_t *inc = json_array(), *exc = json_array();
    for (int i = 0; i < a->n_inc; i++) json_array_append_new(inc, json_string(a->inc[i]));
    for (int i = 0; i < a->n_exc; i++) json_array_append_new(exc, json_string(a->exc[i]));
    if (a->n_inc) json_object_set(body, "include", inc);
    if (a->n_exc) json_object_set(body, "exclude", exc);
    json_decref(inc);
    json_decref(exc);
    if (a->follow) json_object_set_new(body, "follow_symlinks", json_true());
    cli_catch_signals();
    if (cli_call(sock, "POST", "/v1/ingest", body, &job, &status, &e)) {
        rc = cli_remote_fail("ingest", status, &e);
        goto done;
    }
    long long id = json_int_or(job, "id", 0);
    char path[64];
    snprintf(path, sizeof path, "/v1/jobs/%lld", id);
    size_t seen = 0;
    const char *state;
    for (;;) {
        state = json_str_or(job, "state", "");
        int over = strcmp(state, "queued") && strcmp(state, "running");
        job_show(u, job, &seen, over);
        if (over) break;
        if (cli_stop) {
            if (u->shown_bar) fputs("\r\033[K", stderr), u->shown_bar = 0;
            fprintf(stderr, "docent: stopped following; job %lld continues in docentd "
                            "(GET /v1/jobs/%lld shows it)\n", id, id);
            rc = 1;
            goto done;
        }
        struct timespec ts = {0, 250 * 1000 * 1000};
        nanosleep(&ts, NULL); /* Ctrl-C cuts it short */
        json_decref(job);
        job = NULL;
        if (cli_call(sock, "GET", path, NULL, &job, &status, &e)) {
            if (u->shown_bar) fputs("\r\033[K", stderr), u->shown_bar = 0;
            rc = cli_remote_fail("ingest: job", status, &e);
            goto done;
        }
    }
    ing_summary sum;
    int stages = job_summary(job, &sum);
    /* problems the daemon kept no note of (it keeps the first ones) */
    int listed = 0;
    for (int i = 0; i < u->n_probs; i++) listed += strcmp(u->probs[i].kind, "removed") != 0;
    if (sum.skipped + sum.failed > listed) u->dropped += sum.skipped + sum.failed - listed;
    print_summary(u, coll, &sum, 0, stages);
    if (sum.failed) rc = 1;
    if (!strcmp(state, "failed")) {
        fprintf(stderr, "docent: %s\n", json_str_or(job, "error", "the job failed"));
        rc = 1;
    } else if (!strcmp(state, "cancelled")) {
        fprintf(stderr, "docent: docentd stopped the job; the documents finished before the stop are kept\n");
        rc = 1;
    }
done:
    json_decref(job);
    json_decref(paths);
    json_decref(urls);
    json_decref(body);
    return rc;
}

static int ingest_flag(common *a, int c)
{
    switch (c) {
    case C_WATCH: a->watch = 1; return 0;
    case C_FOLLOW: a->follow = 1; return 0;
    case C_INCLUDE:
        if (a->n_inc == 64) return cli_usage_error("ingest", "at most 64 --include");
        a->inc[a->n_inc++] = optarg;
        return 0;
    case C_EXCLUDE:
        if (a->n_exc == 64) return cli_usage_error("ingest", "at most 64 --exclude");
        a->exc[a->n_exc++] = optarg;
        return 0;
    }
    return -1;
}

int cmd_ingest(int argc, char **argv)
{
    common a = {.cmd = "ingest"};
    int rc = 0;
    ingest_ui u = {.a = &a};
    ing_ctx *ic = NULL;
    ing_summary sum;
    doc_err e = {0};
    static const struct option lo[] = {COMMON_LONGOPTS,
                                       {"watch", no_argument, 0, C_WATCH},
                                       {"include", required_argument, 0, C_INCLUDE},
                                       {"exclude", required_argument, 0, C_EXCLUDE},
                                       {"follow-symlinks", no_argument, 0, C_FOLLOW},
                                       {0, 0, 0, 0}};
    if ((rc = cli_parse_flags(&a, argc, argv, "c:o:qh", lo, ingest_help, ingest_flag)) >= 0) return rc;
    rc = 0;
    if (optind >= argc) return cli_usage_error("ingest", "nothing to ingest (give PATHs or URLs)");
    u.tty = isatty(2);
    struct winsize ws;
    u.width = (u.tty && ioctl(2, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 20) ? ws.ws_col : 100;
    const char *sock = cli_socket(&a);
    if (sock && a.watch)
        return cli_usage_error("ingest", "--watch is not available through docentd: list the folders "
                                         "in its config's [daemon] watch, or use --local");
    if (sock) {
        rc = ingest_remote(&a, &u, sock, argv + optind, argc - optind);
        goto done;
    }
    if ((rc = cli_load_config(&a)) || (rc = cli_open_store(&a, 1, CLI_STORE_CREATE))) goto done;
    cli_catch_signals();
    ing_opts io = {.collection = a.collection,
                   .chunk_tokens = a.cfg.chunk_tokens,
                   .overlap_tokens = a.cfg.overlap_tokens ? a.cfg.overlap_tokens : -1,
                   .embed_batch = a.cfg.embed_batch,
                   .max_file_bytes = (size_t)a.cfg.max_file_mb << 20,
                   .fetch_timeout_s = a.cfg.fetch_timeout_s,
                   .fetch_max_bytes = (size_t)a.cfg.fetch_max_mb << 20,
                   .fetch_max_redirects = a.cfg.fetch_max_redirects,
                   .commit_docs = a.cfg.commit_docs,
                   .commit_seconds = a.cfg.commit_seconds,
                   .include = a.inc, .n_include = a.n_inc, .exclude = a.exc, .n_exclude = a.n_exc,
                   .follow_symlinks = a.follow,
                   .cancel = &cli_stop,
                   .progress = on_progress, .note = on_note, .cb_ctx = &u};
    if (ing_new(a.s, a.m, &io, &ic, &e)) {
        rc = cli_fail(NULL, &e);
        goto done;
    }
    int r = ing_add(ic, (const char *const *)argv + optind, argc - optind, &sum, &e);
    print_summary(&u, a.collection ? a.collection : "default", &sum, 0, 1);
    if (sum.failed) rc = 1;
    if (r && r != DOC_ECANCELLED) {
        rc = cli_fail(NULL, &e);
        goto done;
    }
    if (r == DOC_ECANCELLED) {
        fprintf(stderr, "docent: stopped; the documents finished before the stop are kept\n");
        rc = 1;
        goto done;
    }
    if (a.watch) {
        if (!a.quiet && !a.json) fprintf(stderr, "watching for changes (Ctrl-C to stop)\n");
        for (int i = 0; i < u.n_probs; i++) free(u.probs[i].kind), free(u.probs[i].uri), free(u.probs[i].why);
        u.n_probs = 0;
        int nd = 0;
        const char *dirs[256];
        for (int i = optind; i < argc && nd < 256; i++)
            if (file_is_dir(argv[i])) dirs[nd++] = argv[i];
        if (!nd) {
            rc = cli_usage_error("ingest", "--watch needs at least one folder");
            goto done;
        }
        r = ing_watch_run(ic, dirs, nd, &sum, &e);
        print_summary(&u, a.collection ? a.collection : "default", &sum, 1, 1);
        if (r && r != DOC_ECANCELLED) rc = cli_fail(NULL, &e);
    }
done:
    ing_free(&ic);
    for (int i = 0; i < u.n_probs; i++) free(u.probs[i].kind), free(u.probs[i].uri), free(u.probs[i].why);
    free(u.probs);
    cli_close_all(&a);
    return rc;
}

/* ---- search ------------------------------------------------------------- */

static const char search_help[] =
    "usage: docent search [-c COLLECTION] [-k N] [--json] QUERY\n"
    "  ranked passages (dense + BM25, fused by reciprocal rank) with their scores and\n"
    "  locations: uri#heading path, page, lines.  PII and secrets in the passages are\n"
    "  redacted as [safety] redact in the config says.\n"
    "  -c, --collection NAME   search only this collection (default: all)\n"
    "  -k N                    passages to show (default: [search] k in the config)\n"
    "  --mode hybrid|dense|bm25  both legs fused (default), or one leg alone\n"
    "  --json                  {\"results\": [{uri, title, heading, page, lines, score, text}...]}\n"
    "  --socket PATH           search through docentd there (also $DOCENT_SOCKET, or the\n"
    "                          config's [daemon] socket when docentd runs); --local: in-process\n"
    "  --data DIR, --config FILE, -o SECTION.KEY=VALUE\n"
    "  --embedder PATH|URL     another embedder than [models] (a URL is an OpenAI-compatible\n"
    "                          server: docs/remote.md); runs in-process\n";

static int search_flag(common *a, int c)
{
    if (c == C_MODE) {
        a->dense = !strcmp(optarg, "hybrid") || !strcmp(optarg, "dense");
        a->bm25 = !strcmp(optarg, "hybrid") || !strcmp(optarg, "bm25");
        if (!a->dense && !a->bm25) return cli_usage_error("search", "--mode needs hybrid, dense or bm25");
        return 0;
    }
    if (c == 'k') {
        char *end;
        long v = strtol(optarg, &end, 10);
        if (!*optarg || *end || v < 1 || v > 1000) return cli_usage_error("search", "-k needs 1..1000");
        a->k = (int)v;
        return 0;
    }
    return -1;
}

/* print_hits: the passages, human or --json (ranks are shown when known) */
static void print_hits(const common *a, const idx_hit *hits, int n)
{
    if (a->json) {
        json_t *o = json_object(), *res = json_array();
        for (int i = 0; i < n; i++) {
            const idx_hit *h = &hits[i];
            json_t *r = json_object(), *lines = json_array();
            json_object_set_new(r, "uri", json_string(h->uri));
            json_object_set_new(r, "title", json_string(h->title ? h->title : ""));
            json_object_set_new(r, "heading", json_string(h->heading ? h->heading : ""));
            json_object_set_new(r, "collection", json_string(h->collection ? h->collection : ""));
            json_object_set_new(r, "page", h->page ? json_integer(h->page) : json_null());
            if (h->line_start) {
                json_array_append_new(lines, json_integer(h->line_start));
                json_array_append_new(lines, json_integer(h->line_end));
                json_object_set_new(r, "lines", lines);
            } else {
                json_decref(lines);
                json_object_set_new(r, "lines", json_null());
            }
            json_object_set_new(r, "score", json_real(h->score));
            json_object_set_new(r, "dense_score", isnan(h->dense_score) ? json_null() : json_real(h->dense_score));
            json_object_set_new(r, "bm25_score", isnan(h->bm25_score) ? json_null() : json_real(h->bm25_score));
            json_object_set_new(r, "text", json_string(h->text));
            json_array_append_new(res, r);
        }
        json_object_set_new(o, "results", res);
        cli_print_json(o);
    } else {
        if (!n) printf("no passages found\n");
        for (int i = 0; i < n; i++) {
            const idx_hit *h = &hits[i];
            printf("%d. [%.4f] %s%s%s", i + 1, h->score, h->uri, h->heading && *h->heading ? "#" : "",
                   h->heading ? h->heading : "");
            if (h->page) printf("  page %d", h->page);
            if (h->line_start) printf("  lines %d-%d", h->line_start, h->line_end);
            printf("\n   ");
            if (!isnan(h->dense_score)) {
                printf("dense %.3f", h->dense_score);
                if (h->dense_rank) printf(" (#%d)", h->dense_rank);
                printf("  ");
            }
            if (!isnan(h->bm25_score)) {
                printf("bm25 %.3f", h->bm25_score);
                if (h->bm25_rank) printf(" (#%d)", h->bm25_rank);
            }
            printf("\n   ");
            /* the first ~300 bytes on one line, cut at a UTF-8 boundary */
            size_t len = strlen(h->text), cut = len < 300 ? len : 300;
            while (cut < len && ((unsigned char)h->text[cut] & 0xC0) == 0x80) cut--;
            for (size_t j = 0; j < cut; j++) putchar(h->text[j] == '\n' ? ' ' : h->text[j]);
            printf("%s\n\n", cut < len ? "..." : "");
        }
    }
}

static double num_or_nan(const json_t *o, const char *key)
{
    const json_t *v = json_object_get(o, key);
    return json_is_number(v) ? json_number_value(v) : NAN;
}

/* search_remote: POST /v1/search; the results as idx_hit for print_hits */
static int search_remote(common *a, const char *sock, const char *query)
{
    json_t *body = json_pack("{s:s,s:s}", "query", query, "mode",
                             !a->bm25 ? "dense" : !a->dense ? "bm25" : "hybrid"), *r = NULL;
    if (a->collection) json_object_set_new(body, "collection", json_string(a->collection));
    if (a->k) json_object_set_new(body, "k", json_integer(a->k));
    doc_err e = {0};
    long status = 0;
    idx_hit *hits = NULL;
    int rc = 0, n = 0;
    if (cli_call(sock, "POST", "/v1/search", body, &r, &status, &e)) {
        rc = cli_remote_fail("search", status, &e);
        goto done;
    }
    const json_t *res = json_object_get(r, "results");
    size_t nr = json_array_size(res);
    if (nr && !(hits = calloc(nr, sizeof *hits))) {
        rc = cli_fail("search", &(doc_err){DOC_ENOMEM, "out of memory"});
        goto done;
    }
    for (size_t i = 0; i < nr; i++, n++) {
        const json_t *o = json_array_get(res, i), *lines = json_object_get(o, "lines");
        idx_hit *h = &hits[i];
        h->doc_id = json_int_or(o, "document_id", 0);
        h->uri = strdup(json_str_or(o, "uri", ""));
        h->title = strdup(json_str_or(o, "title", ""));
        h->heading = strdup(json_str_or(o, "heading", ""));
        h->collection = strdup(json_str_or(o, "collection", ""));
        h->text = strdup(json_str_or(o, "text", ""));
        h->page = (int)json_int_or(o, "page", 0);
        h->line_start = (int)json_integer_value(json_array_get(lines, 0));
        h->line_end = (int)json_integer_value(json_array_get(lines, 1));
        h->score = json_num_or(o, "score", 0);
        h->dense_score = num_or_nan(o, "dense_score");
        h->bm25_score = num_or_nan(o, "bm25_score");
        h->dense_rank = (int)json_int_or(o, "dense_rank", 0);
        h->bm25_rank = (int)json_int_or(o, "bm25_rank", 0);
        if (!h->uri || !h->title || !h->heading || !h->collection || !h->text) {
            n++;
            rc = cli_fail("search", &(doc_err){DOC_ENOMEM, "out of memory"});
            goto done;
        }
    }
    print_hits(a, hits, n);
done:
    idx_hits_free(&hits, n);
    json_decref(r);
    json_decref(body);
    return rc;
}

int cmd_search(int argc, char **argv)
{
    common a = {.cmd = "search", .dense = 1, .bm25 = 1};
    int rc = 0, n = 0;
    unsigned cats = 0;
    idx_hit *hits = NULL;
    float *q = NULL;
    int64_t coll = 0;
    doc_err e = {0};
    static const struct option lo[] = {COMMON_LONGOPTS, {"mode", required_argument, 0, C_MODE},
                                       {0, 0, 0, 0}};
    if ((rc = cli_parse_flags(&a, argc, argv, "c:k:o:qh", lo, search_help, search_flag)) >= 0) return rc;
    rc = 0;
    if (optind != argc - 1) return cli_usage_error("search", "give one QUERY (quote it)");
    const char *query = argv[optind];
    if (!*query) return cli_usage_error("search", "the query is empty");
    const char *sock = cli_socket(&a);
    if (sock) return search_remote(&a, sock, query);
    if ((rc = cli_load_config(&a))) goto done;
    if (rag_redact_parse(a.cfg.redact, &cats, &e)) {
        rc = cli_fail("config: [safety] redact", &e);
        goto done;
    }
    if ((rc = cli_open_store(&a, 1, 0))) goto done;
    if (a.collection && (rc = cli_resolve_collection(&a, &coll))) goto done;
    if (!(q = malloc((size_t)llm_embed_dim(a.m) * sizeof *q))) {
        rc = cli_fail(NULL, &(doc_err){DOC_ENOMEM, "out of memory"});
        goto done;
    }
    if (ing_embed_query(a.m, query, q, &e)) {
        rc = cli_fail("query", &e);
        goto done;
    }
    idx_search_opts so = {.k = a.k ? a.k : a.cfg.k, .n_dense = a.cfg.n_dense, .n_bm25 = a.cfg.n_bm25,
                          .rrf_k = a.cfg.rrf_k, .collections = coll ? &coll : NULL,
                          .n_collections = coll ? 1 : 0};
    if (idx_search(a.s, a.dense ? q : NULL, a.bm25 ? query : NULL, &so, &hits, &n)) {
        fprintf(stderr, "docent: search: %s\n", idx_errmsg(a.s));
        rc = 1;
        goto done;
    }
    if (cli_redact_hits(hits, n, cats)) {
        rc = cli_fail("search", &(doc_err){DOC_ENOMEM, "out of memory redacting passages"});
        goto done;
    }
    print_hits(&a, hits, n);
done:
    idx_hits_free(&hits, n);
    free(q);
    cli_close_all(&a);
    return rc;
}

/* ---- ls, rm, collections ------------------------------------------------- */

/* remote_docs: GET /v1/documents as idx_doc (free with idx_doc_list_free),
 * only collection coll's when it is not NULL; *full: the reply carries mime,
 * size and mtime.  Returns the exit code (0 ok, after saying what failed). */
static int remote_docs(const char *what, const char *sock, const char *coll, idx_doc **out, int *n,
                       int *full)
{
    json_t *r = NULL;
    doc_err e = {0};
    long status = 0;
    int rc = 0;
    *out = NULL, *n = 0, *full = 0;
    if (cli_call(sock, "GET", "/v1/documents", NULL, &r, &status, &e)) {
        rc = cli_remote_fail(what, status, &e);
        goto done;
    }
    const json_t *arr = json_object_get(r, "documents");
    size_t nd = json_array_size(arr);
    if (nd && !(*out = calloc(nd, sizeof **out))) {
        rc = cli_fail(what, &(doc_err){DOC_ENOMEM, "out of memory"});
        goto done;
    }
    *full = nd && json_object_get(json_array_get(arr, 0), "mime");
    for (size_t i = 0; i < nd; i++) {
        const json_t *o = json_array_get(arr, i);
        if (coll && strcmp(json_str_or(o, "collection", ""), coll)) continue;
        idx_doc *d = &(*out)[(*n)++];
        d->id = json_int_or(o, "id", 0);
        snprintf(d->collection, sizeof d->collection, "%s", json_str_or(o, "collection", ""));
        d->uri = strdup(json_str_or(o, "uri", ""));
        d->title = strdup(json_str_or(o, "title", ""));
        d->mime = strdup(json_str_or(o, "mime", ""));
        d->size = json_int_or(o, "size", 0);
        d->mtime = json_int_or(o, "mtime", 0);
        d->ingested_at = json_int_or(o, "ingested_at", 0);
        d->n_chunks = json_int_or(o, "chunks", 0);
        if (!d->uri || !d->title || !d->mime) {
            rc = cli_fail(what, &(doc_err){DOC_ENOMEM, "out of memory"});
            goto done;
        }
    }
done:
    json_decref(r);
    return rc;
}

/* remote_collections: GET /v1/collections as idx_collection (free());
 * *readers: the reply names the readers (it does for admins) */
static int remote_collections(const char *what, const char *sock, idx_collection **out, int *n,
                              int *readers)
{
    json_t *r = NULL;
    doc_err e = {0};
    long status = 0;
    int rc = 0;
    *out = NULL, *n = 0, *readers = 1;
    if (cli_call(sock, "GET", "/v1/collections", NULL, &r, &status, &e)) {
        rc = cli_remote_fail(what, status, &e);
        goto done;
    }
    const json_t *arr = json_object_get(r, "collections");
    size_t nc = json_array_size(arr);
    if (nc && !(*out = calloc(nc, sizeof **out))) {
        rc = cli_fail(what, &(doc_err){DOC_ENOMEM, "out of memory"});
        goto done;
    }
    for (size_t i = 0; i < nc; i++, (*n)++) {
        const json_t *o = json_array_get(arr, i);
        idx_collection *c = &(*out)[i];
        snprintf(c->name, sizeof c->name, "%s", json_str_or(o, "name", ""));
        snprintf(c->readers, sizeof c->readers, "%s", json_str_or(o, "readers", ""));
        if (!json_object_get(o, "readers")) *readers = 0;
        c->n_docs = json_int_or(o, "documents", 0);
        c->n_chunks = json_int_or(o, "chunks", 0);
    }
done:
    json_decref(r);
    return rc;
}

/* remote_check_collection: 0 when the caller can see collection name through
 * the daemon, else the exit code after the same message as in-process */
static int remote_check_collection(const char *what, const char *sock, const char *name)
{
    idx_collection *cols = NULL;
    int n = 0, readers, rc = remote_collections(what, sock, &cols, &n, &readers), found = 0;
    for (int i = 0; !rc && i < n; i++) found |= !strcmp(cols[i].name, name);
    free(cols);
    if (rc) return rc;
    if (found) return 0;
    fprintf(stderr, "docent: no collection named '%s' (see docent collections)\n", name);
    return 1;
}

static const char ls_help[] =
    "usage: docent ls [-c COLLECTION] [--json]\n"
    "  the stored documents: id, collection, chunks, uri, title.\n"
    "  --socket PATH   list through docentd there (also $DOCENT_SOCKET, or the config's\n"
    "                  [daemon] socket when docentd runs): the documents of the collections\n"
    "                  you may read (admins: all); --local: in-process\n";

/* print_docs: full: mime, size and mtime are known (--json has them) */
static void print_docs(const common *a, const idx_doc *docs, int n, int full)
{
    if (a->json) {
        json_t *arr = json_array();
        for (int i = 0; i < n; i++) {
            json_t *d = json_object();
            json_object_set_new(d, "id", json_integer(docs[i].id));
            json_object_set_new(d, "collection", json_string(docs[i].collection));
            json_object_set_new(d, "uri", json_string(docs[i].uri));
            json_object_set_new(d, "title", json_string(docs[i].title ? docs[i].title : ""));
            if (full) json_object_set_new(d, "mime", json_string(docs[i].mime ? docs[i].mime : ""));
            json_object_set_new(d, "chunks", json_integer(docs[i].n_chunks));
            if (full) {
                json_object_set_new(d, "size", json_integer(docs[i].size));
                json_object_set_new(d, "mtime", json_integer(docs[i].mtime));
            }
            json_object_set_new(d, "ingested_at", json_integer(docs[i].ingested_at));
            json_array_append_new(arr, d);
        }
        json_t *o = json_pack("{s:o}", "documents", arr);
        cli_print_json(o);
        return;
    }
    for (int i = 0; i < n; i++)
        printf("%6lld  %-12s %5lld chunks  %s%s%s%s\n", (long long)docs[i].id, docs[i].collection,
               (long long)docs[i].n_chunks, docs[i].uri, docs[i].title && *docs[i].title ? "  \"" : "",
               docs[i].title ? docs[i].title : "", docs[i].title && *docs[i].title ? "\"" : "");
    if (!n) printf("no documents\n");
}

int cmd_ls(int argc, char **argv)
{
    common a = {.cmd = "ls"};
    int rc = 0, n = 0, full = 1;
    int64_t coll = 0;
    idx_doc *docs = NULL;
    static const struct option lo[] = {COMMON_LONGOPTS, {0, 0, 0, 0}};
    if ((rc = cli_parse_flags(&a, argc, argv, "c:o:qh", lo, ls_help, NULL)) >= 0) return rc;
    rc = 0;
    if (optind != argc) return cli_usage_error("ls", "no arguments expected");
    const char *sock = cli_socket(&a);
    if (sock) {
        if ((a.collection && (rc = remote_check_collection("ls", sock, a.collection))) ||
            (rc = remote_docs("ls", sock, a.collection, &docs, &n, &full)))
            goto done;
    } else {
        if ((rc = cli_load_config(&a)) || (rc = cli_open_store(&a, 0, 0))) goto done;
        if (a.collection && (rc = cli_resolve_collection(&a, &coll))) goto done;
        if (idx_doc_list(a.s, coll, &docs, &n)) {
            fprintf(stderr, "docent: ls: %s\n", idx_errmsg(a.s));
            rc = 1;
            goto done;
        }
    }
    print_docs(&a, docs, n, full);
done:
    idx_doc_list_free(&docs, n);
    cli_close_all(&a);
    return rc;
}

static const char rm_help[] =
    "usage: docent rm [-c COLLECTION] DOC|PATH...\n"
    "  removes documents (rows, chunks and vectors) by id (see docent ls), by uri,\n"
    "  or every document stored from under a folder.  When an argument matches\n"
    "  nothing, nothing is removed.\n"
    "  --socket PATH   remove through docentd there (also $DOCENT_SOCKET, or the config's\n"
    "                  [daemon] socket when docentd runs; an admin's work); --local: in-process.\n"
    "                  Through docentd each document goes in its own transaction.\n";

/* rm_match: mark with 1 in pick the documents that argument arg names (by id,
 * uri or folder) and that no earlier argument took (pick[d] == 0); 1 when any */
static int rm_match(const char *arg, const idx_doc *docs, int n, char *pick)
{
    char real[PATH_MAX], *end;
    const char *key = arg;
    long long id = strtoll(arg, &end, 10);
    int by_id = *arg && !*end, hit = 0;
    if (!by_id && realpath(arg, real)) key = real;
    size_t kl = strlen(key);
    for (int d = 0; d < n; d++) {
        const char *u = docs[d].uri;
        if (pick[d]) continue;
        if (by_id ? docs[d].id == id : (!strcmp(u, key) || (!strncmp(u, key, kl) && u[kl] == '/')))
            pick[d] = 1, hit = 1;
    }
    return hit;
}

/* rm_remote: every argument is matched against GET /v1/documents first (one
 * that matches nothing: nothing is removed), then each document is deleted */
static int rm_remote(common *a, const char *sock, char **args, int nargs)
{
    idx_doc *docs = NULL;
    char *pick = NULL;
    int *order = NULL;
    int n = 0, n_order = 0, full, rc, removed = 0;
    if ((a->collection && (rc = remote_check_collection("rm", sock, a->collection))) ||
        (rc = remote_docs("rm", sock, a->collection, &docs, &n, &full)))
        goto done;
    if (!(pick = calloc((size_t)n + 1, 1)) || !(order = calloc((size_t)n + 1, sizeof *order))) {
        rc = cli_fail("rm", &(doc_err){DOC_ENOMEM, "out of memory"});
        goto done;
    }
    /* the order of the in-process rm: argument by argument */
    for (int i = 0; i < nargs && !rc; i++) {
        if (!rm_match(args[i], docs, n, pick)) {
            fprintf(stderr, "docent: rm: no stored document matches '%s'\n", args[i]);
            fprintf(stderr, "docent: rm: nothing removed\n");
            rc = 1;
        }
        for (int d = 0; d < n; d++)
            if (pick[d] == 1) pick[d] = 2, order[n_order++] = d;
    }
    for (int o = 0; o < n_order && !rc; o++) {
        int d = order[o];
        char path[64];
        json_t *r = NULL;
        doc_err e = {0};
        long status = 0;
        snprintf(path, sizeof path, "/v1/documents/%lld", (long long)docs[d].id);
        if (cli_call(sock, "DELETE", path, NULL, &r, &status, &e)) {
            char what[64];
            snprintf(what, sizeof what, "rm %lld", (long long)docs[d].id);
            rc = cli_remote_fail(what, status, &e);
            if (removed) fprintf(stderr, "docent: rm: %d document%s removed before this\n", removed,
                                 removed == 1 ? " was" : "s were");
            else fprintf(stderr, "docent: rm: nothing removed\n");
        } else {
            if (!a->quiet) printf("removed %lld %s\n", (long long)docs[d].id, docs[d].uri);
            removed++;
        }
        json_decref(r);
    }
    if (!rc && !a->quiet) printf("%d document%s removed\n", removed, removed == 1 ? "" : "s");
done:
    free(order);
    free(pick);
    idx_doc_list_free(&docs, n);
    return rc;
}

int cmd_rm(int argc, char **argv)
{
    common a = {.cmd = "rm"};
    int rc = 0, n = 0, removed = 0;
    int64_t coll = 0;
    idx_doc *docs = NULL;
    char *pick = NULL;
    static const struct option lo[] = {COMMON_LONGOPTS, {0, 0, 0, 0}};
    if ((rc = cli_parse_flags(&a, argc, argv, "c:o:qh", lo, rm_help, NULL)) >= 0) return rc;
    rc = 0;
    if (optind >= argc) return cli_usage_error("rm", "give document ids or paths");
    const char *sock = cli_socket(&a);
    if (sock) return rm_remote(&a, sock, argv + optind, argc - optind);
    if ((rc = cli_load_config(&a)) || (rc = cli_open_store(&a, 0, 0))) goto done;
    if (a.collection && (rc = cli_resolve_collection(&a, &coll))) goto done;
    if (idx_doc_list(a.s, coll, &docs, &n) || idx_begin(a.s)) {
        fprintf(stderr, "docent: rm: %s\n", idx_errmsg(a.s));
        rc = 1;
        goto done;
    }
    if (!(pick = calloc((size_t)n + 1, 1))) {
        idx_rollback(a.s);
        rc = cli_fail("rm", &(doc_err){DOC_ENOMEM, "out of memory"});
        goto done;
    }
    for (int i = optind; i < argc && !rc; i++) {
        if (!rm_match(argv[i], docs, n, pick)) {
            fprintf(stderr, "docent: rm: no stored document matches '%s'\n", argv[i]);
            rc = 1;
        }
        for (int d = 0; d < n && !rc; d++) {
            if (pick[d] != 1) continue;
            pick[d] = 2; /* removed: later arguments do not match it */
            if (idx_doc_remove(a.s, docs[d].id)) {
                fprintf(stderr, "docent: rm %s: %s\n", docs[d].uri, idx_errmsg(a.s));
                rc = 1;
                break;
            }
            if (!a.quiet) printf("removed %lld %s\n", (long long)docs[d].id, docs[d].uri);
            removed++;
        }
    }
    if (rc) {
        idx_rollback(a.s);
        fprintf(stderr, "docent: rm: nothing removed\n");
    } else if (idx_commit(a.s)) {
        fprintf(stderr, "docent: rm: commit: %s\n", idx_errmsg(a.s));
        rc = 1;
    } else if (!a.quiet) {
        printf("%d document%s removed\n", removed, removed == 1 ? "" : "s");
    }
done:
    free(pick);
    idx_doc_list_free(&docs, n);
    cli_close_all(&a);
    return rc;
}

static const char collections_help[] =
    "usage: docent collections [--json]\n"
    "  collections with their document and chunk counts and readers.\n"
    "  --socket PATH   list through docentd there (also $DOCENT_SOCKET, or the config's\n"
    "                  [daemon] socket when docentd runs): the collections you may read\n"
    "                  (admins: all; readers are shown to admins only); --local: in-process\n";

/* print_collections: readers 0: unknown (a non-admin through the daemon) */
static void print_collections(const common *a, const idx_collection *cols, int n, int readers)
{
    if (a->json) {
        json_t *arr = json_array();
        for (int i = 0; i < n; i++) {
            json_t *c = json_pack("{s:s,s:I,s:I}", "name", cols[i].name, "documents",
                                  (json_int_t)cols[i].n_docs, "chunks", (json_int_t)cols[i].n_chunks);
            if (readers) json_object_set_new(c, "readers", json_string(cols[i].readers));
            json_array_append_new(arr, c);
        }
        json_t *o = json_pack("{s:o}", "collections", arr);
        cli_print_json(o);
        return;
    }
    for (int i = 0; i < n; i++) {
        printf("%-20s %6lld documents %8lld chunks", cols[i].name, (long long)cols[i].n_docs,
               (long long)cols[i].n_chunks);
        if (readers) printf("  readers: %s", cols[i].readers);
        printf("\n");
    }
    if (!n) printf("no collections\n");
}

int cmd_collections(int argc, char **argv)
{
    common a = {.cmd = "collections"};
    int rc = 0, n = 0, readers = 1;
    idx_collection *cols = NULL;
    static const struct option lo[] = {COMMON_LONGOPTS, {0, 0, 0, 0}};
    if ((rc = cli_parse_flags(&a, argc, argv, "o:qh", lo, collections_help, NULL)) >= 0) return rc;
    rc = 0;
    if (optind != argc) return cli_usage_error("collections", "no arguments expected");
    const char *sock = cli_socket(&a);
    if (sock) {
        if ((rc = remote_collections("collections", sock, &cols, &n, &readers))) goto done;
    } else {
        if ((rc = cli_load_config(&a)) || (rc = cli_open_store(&a, 0, 0))) goto done;
        if (idx_collection_list(a.s, &cols, &n)) {
            fprintf(stderr, "docent: collections: %s\n", idx_errmsg(a.s));
            rc = 1;
            goto done;
        }
    }
    print_collections(&a, cols, n, readers);
done:
    free(cols);
    cli_close_all(&a);
    return rc;
}

/* ---- reindex, check: in-process only -------------------------------------- */

/* guard_daemon: reindex and check open the store themselves, so a docentd
 * serving it must not be running.  reindex rewrites every vector under the
 * daemon's open indexes: refused whenever a daemon answers at --socket,
 * $DOCENT_SOCKET or the config's [daemon] socket, --local and --data or not
 * (docentd does not say which store it serves, so any live one counts).
 * check only reads, but could see a daemon's write in progress: refused when
 * the other commands would go through a live daemon (not with --local or
 * --data).  0 to go on, else the exit code after saying why. */
static int guard_daemon(common *a, int strict)
{
    int local = a->local;
    const char *data = a->data;
    if (strict) a->local = 0, a->data = NULL;
    const char *sock = cli_socket(a);
    a->local = local, a->data = data;
    if (!sock || !cli_daemon_live(sock)) return 0;
    if (strict)
        fprintf(stderr, "docent: %s: docentd is running at %s; stop it first (%s rewrites the vectors "
                        "it serves, even with --local)\n", a->cmd, sock, a->cmd);
    else
        fprintf(stderr, "docent: %s: docentd is running at %s and may be writing; stop it first, or "
                        "give --local to check anyway\n", a->cmd, sock);
    return 1;
}

/* ---- reindex ------------------------------------------------------------ */

static const char reindex_help[] =
    "usage: docent reindex\n"
    "  re-embeds every stored chunk with the configured embedder and rebuilds the\n"
    "  vector indexes (needed after changing [models] embedder).  One transaction:\n"
    "  interrupted, it leaves the store as it was.  In-process only, and refused while\n"
    "  docentd answers at --socket, $DOCENT_SOCKET or the config's [daemon] socket\n"
    "  (even with --local or --data): stop docentd first.\n";

static void on_reindex_progress(void *ctx, const ing_progress *p)
{
    common *a = ctx;
    if (a->quiet) return;
    fprintf(stderr, "\rreindex: %lld chunks, %.1f chunks/s", (long long)p->chunks,
            p->elapsed > 0 ? (double)p->chunks / p->elapsed : 0);
}

int cmd_reindex(int argc, char **argv)
{
    common a = {.cmd = "reindex"};
    int rc = 0;
    doc_err e = {0};
    idx_stats st;
    static const struct option lo[] = {COMMON_LONGOPTS, {0, 0, 0, 0}};
    if ((rc = cli_parse_flags(&a, argc, argv, "o:qh", lo, reindex_help, NULL)) >= 0) return rc;
    rc = 0;
    if ((rc = guard_daemon(&a, 1))) return rc;
    if ((rc = cli_load_config(&a)) || (rc = cli_open_store(&a, 1, CLI_STORE_REINDEX))) goto done;
    cli_catch_signals();
    double t0 = time_now();
    if (ing_reindex(a.s, a.m, a.cfg.embed_batch, on_reindex_progress, &a, &cli_stop, &e)) {
        if (!a.quiet) fputc('\n', stderr);
        rc = cli_fail("reindex", &e);
        goto done;
    }
    idx_stats_get(a.s, &st);
    if (!a.quiet) fputc('\n', stderr);
    printf("reindexed %lld chunks of %lld documents in %.1f s with %s\n", (long long)st.n_chunks,
           (long long)st.n_docs, time_now() - t0, st.embedder);
done:
    cli_close_all(&a);
    return rc;
}

/* ---- check --------------------------------------------------------------- */

static const char check_help[] =
    "usage: docent check\n"
    "  verifies the store: SQLite integrity, the full-text index, and that every\n"
    "  collection's vector index holds exactly its chunks.  Exit 0 when all hold.\n"
    "  In-process only; refused while docentd answers at --socket, $DOCENT_SOCKET or\n"
    "  the config's [daemon] socket unless --local or --data is given (it could see\n"
    "  a write in progress).\n";

int cmd_check(int argc, char **argv)
{
    common a = {.cmd = "check"};
    int rc = 0;
    idx_stats st;
    static const struct option lo[] = {COMMON_LONGOPTS, {0, 0, 0, 0}};
    if ((rc = cli_parse_flags(&a, argc, argv, "o:qh", lo, check_help, NULL)) >= 0) return rc;
    rc = 0;
    if ((rc = guard_daemon(&a, 0))) return rc;
    if ((rc = cli_load_config(&a)) || (rc = cli_open_store(&a, 0, 0))) goto done;
    if (idx_check(a.s)) {
        fprintf(stderr, "docent: check: %s\n", idx_errmsg(a.s));
        rc = 1;
        goto done;
    }
    idx_stats_get(a.s, &st);
    printf("ok: %lld collections, %lld documents, %lld chunks; schema %d; embedder %s\n",
           (long long)st.n_collections, (long long)st.n_docs, (long long)st.n_chunks,
           st.schema_version, st.embedder);
done:
    cli_close_all(&a);
    return rc;
}
