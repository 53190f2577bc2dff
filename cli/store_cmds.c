/*
 * store_cmds.c - `docent ingest | search | ls | rm | collections | reindex`.
 *
 * These run in-process for now: they open the data directory's store (and the
 * embedder where they embed) themselves.  The daemon (issue 5) will serve the
 * same operations over the socket through the same ingest/index code, and the
 * CLI will then talk to it.  Settings come from docent.conf (see
 * core/config.h); --data, --config and -o override them.
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
    "  --data DIR, --config FILE, -o SECTION.KEY=VALUE   settings (see etc/docent.conf)\n";

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

static void print_summary(ingest_ui *u, const char *coll, const ing_summary *s, int watching)
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
        json_object_set_new(o, "stages", st);
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
    if ((rc = cli_load_config(&a)) || (rc = cli_open_store(&a, 1, CLI_STORE_CREATE))) goto done;
    u.tty = isatty(2);
    struct winsize ws;
    u.width = (u.tty && ioctl(2, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 20) ? ws.ws_col : 100;
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
    print_summary(&u, a.collection ? a.collection : "default", &sum, 0);
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
        print_summary(&u, a.collection ? a.collection : "default", &sum, 1);
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
    "  --data DIR, --config FILE, -o SECTION.KEY=VALUE\n";

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
    if (a.json) {
        json_t *o = json_object(), *res = json_array();
        for (int i = 0; i < n; i++) {
            idx_hit *h = &hits[i];
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
            idx_hit *h = &hits[i];
            printf("%d. [%.4f] %s%s%s", i + 1, h->score, h->uri, h->heading && *h->heading ? "#" : "",
                   h->heading ? h->heading : "");
            if (h->page) printf("  page %d", h->page);
            if (h->line_start) printf("  lines %d-%d", h->line_start, h->line_end);
            printf("\n   ");
            if (!isnan(h->dense_score)) printf("dense %.3f (#%d)  ", h->dense_score, h->dense_rank);
            if (!isnan(h->bm25_score)) printf("bm25 %.3f (#%d)", h->bm25_score, h->bm25_rank);
            printf("\n   ");
            /* the first ~300 bytes on one line, cut at a UTF-8 boundary */
            size_t len = strlen(h->text), cut = len < 300 ? len : 300;
            while (cut < len && ((unsigned char)h->text[cut] & 0xC0) == 0x80) cut--;
            for (size_t j = 0; j < cut; j++) putchar(h->text[j] == '\n' ? ' ' : h->text[j]);
            printf("%s\n\n", cut < len ? "..." : "");
        }
    }
done:
    idx_hits_free(&hits, n);
    free(q);
    cli_close_all(&a);
    return rc;
}

/* ---- ls, rm, collections ------------------------------------------------- */

static const char ls_help[] =
    "usage: docent ls [-c COLLECTION] [--json]\n"
    "  the stored documents: id, collection, chunks, uri, title.\n";

int cmd_ls(int argc, char **argv)
{
    common a = {.cmd = "ls"};
    int rc = 0, n = 0;
    int64_t coll = 0;
    idx_doc *docs = NULL;
    static const struct option lo[] = {COMMON_LONGOPTS, {0, 0, 0, 0}};
    if ((rc = cli_parse_flags(&a, argc, argv, "c:o:qh", lo, ls_help, NULL)) >= 0) return rc;
    rc = 0;
    if (optind != argc) return cli_usage_error("ls", "no arguments expected");
    if ((rc = cli_load_config(&a)) || (rc = cli_open_store(&a, 0, 0))) goto done;
    if (a.collection && (rc = cli_resolve_collection(&a, &coll))) goto done;
    if (idx_doc_list(a.s, coll, &docs, &n)) {
        fprintf(stderr, "docent: ls: %s\n", idx_errmsg(a.s));
        rc = 1;
        goto done;
    }
    if (a.json) {
        json_t *arr = json_array();
        for (int i = 0; i < n; i++) {
            json_t *d = json_object();
            json_object_set_new(d, "id", json_integer(docs[i].id));
            json_object_set_new(d, "collection", json_string(docs[i].collection));
            json_object_set_new(d, "uri", json_string(docs[i].uri));
            json_object_set_new(d, "title", json_string(docs[i].title ? docs[i].title : ""));
            json_object_set_new(d, "mime", json_string(docs[i].mime ? docs[i].mime : ""));
            json_object_set_new(d, "chunks", json_integer(docs[i].n_chunks));
            json_object_set_new(d, "size", json_integer(docs[i].size));
            json_object_set_new(d, "mtime", json_integer(docs[i].mtime));
            json_object_set_new(d, "ingested_at", json_integer(docs[i].ingested_at));
            json_array_append_new(arr, d);
        }
        json_t *o = json_pack("{s:o}", "documents", arr);
        cli_print_json(o);
    } else {
        for (int i = 0; i < n; i++)
            printf("%6lld  %-12s %5lld chunks  %s%s%s%s\n", (long long)docs[i].id, docs[i].collection,
                   (long long)docs[i].n_chunks, docs[i].uri, docs[i].title && *docs[i].title ? "  \"" : "",
                   docs[i].title ? docs[i].title : "", docs[i].title && *docs[i].title ? "\"" : "");
        if (!n) printf("no documents\n");
    }
done:
    idx_doc_list_free(&docs, n);
    cli_close_all(&a);
    return rc;
}

static const char rm_help[] =
    "usage: docent rm [-c COLLECTION] DOC|PATH...\n"
    "  removes documents (rows, chunks and vectors) by id (see docent ls), by uri,\n"
    "  or every document stored from under a folder.\n";

int cmd_rm(int argc, char **argv)
{
    common a = {.cmd = "rm"};
    int rc = 0, n = 0, removed = 0;
    int64_t coll = 0;
    idx_doc *docs = NULL;
    static const struct option lo[] = {COMMON_LONGOPTS, {0, 0, 0, 0}};
    if ((rc = cli_parse_flags(&a, argc, argv, "c:o:qh", lo, rm_help, NULL)) >= 0) return rc;
    rc = 0;
    if (optind >= argc) return cli_usage_error("rm", "give document ids or paths");
    if ((rc = cli_load_config(&a)) || (rc = cli_open_store(&a, 0, 0))) goto done;
    if (a.collection && (rc = cli_resolve_collection(&a, &coll))) goto done;
    if (idx_doc_list(a.s, coll, &docs, &n) || idx_begin(a.s)) {
        fprintf(stderr, "docent: rm: %s\n", idx_errmsg(a.s));
        rc = 1;
        goto done;
    }
    for (int i = optind; i < argc && !rc; i++) {
        char real[PATH_MAX], *end;
        const char *key = argv[i];
        long long id = strtoll(argv[i], &end, 10);
        int by_id = *argv[i] && !*end, hit = 0;
        if (!by_id && realpath(argv[i], real)) key = real;
        size_t kl = strlen(key);
        for (int d = 0; d < n; d++) {
            const char *u = docs[d].uri;
            int match = by_id ? docs[d].id == id
                              : (!strcmp(u, key) || (!strncmp(u, key, kl) && u[kl] == '/'));
            if (!match || docs[d].id < 0) continue;
            if (idx_doc_remove(a.s, docs[d].id)) {
                fprintf(stderr, "docent: rm %s: %s\n", u, idx_errmsg(a.s));
                rc = 1;
                break;
            }
            if (!a.quiet) printf("removed %lld %s\n", (long long)docs[d].id, u);
            docs[d].id = -1;
            hit = 1, removed++;
        }
        if (!hit && !rc) {
            fprintf(stderr, "docent: rm: no stored document matches '%s'\n", argv[i]);
            rc = 1;
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
    idx_doc_list_free(&docs, n);
    cli_close_all(&a);
    return rc;
}

static const char collections_help[] =
    "usage: docent collections [--json]\n"
    "  collections with their document and chunk counts and readers.\n";

int cmd_collections(int argc, char **argv)
{
    common a = {.cmd = "collections"};
    int rc = 0, n = 0;
    idx_collection *cols = NULL;
    static const struct option lo[] = {COMMON_LONGOPTS, {0, 0, 0, 0}};
    if ((rc = cli_parse_flags(&a, argc, argv, "o:qh", lo, collections_help, NULL)) >= 0) return rc;
    rc = 0;
    if ((rc = cli_load_config(&a)) || (rc = cli_open_store(&a, 0, 0))) goto done;
    if (idx_collection_list(a.s, &cols, &n)) {
        fprintf(stderr, "docent: collections: %s\n", idx_errmsg(a.s));
        rc = 1;
        goto done;
    }
    if (a.json) {
        json_t *arr = json_array();
        for (int i = 0; i < n; i++)
            json_array_append_new(arr, json_pack("{s:s,s:I,s:I,s:s}", "name", cols[i].name, "documents",
                                                 (json_int_t)cols[i].n_docs, "chunks",
                                                 (json_int_t)cols[i].n_chunks, "readers", cols[i].readers));
        json_t *o = json_pack("{s:o}", "collections", arr);
        cli_print_json(o);
    } else {
        for (int i = 0; i < n; i++)
            printf("%-20s %6lld documents %8lld chunks  readers: %s\n", cols[i].name,
                   (long long)cols[i].n_docs, (long long)cols[i].n_chunks, cols[i].readers);
        if (!n) printf("no collections\n");
    }
done:
    free(cols);
    cli_close_all(&a);
    return rc;
}

/* ---- reindex ------------------------------------------------------------ */

static const char reindex_help[] =
    "usage: docent reindex\n"
    "  re-embeds every stored chunk with the configured embedder and rebuilds the\n"
    "  vector indexes (needed after changing [models] embedder).  One transaction:\n"
    "  interrupted, it leaves the store as it was.\n";

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
    "  collection's vector index holds exactly its chunks.  Exit 0 when all hold.\n";

int cmd_check(int argc, char **argv)
{
    common a = {.cmd = "check"};
    int rc = 0;
    idx_stats st;
    static const struct option lo[] = {COMMON_LONGOPTS, {0, 0, 0, 0}};
    if ((rc = cli_parse_flags(&a, argc, argv, "o:qh", lo, check_help, NULL)) >= 0) return rc;
    rc = 0;
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
