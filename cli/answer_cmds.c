/*
 * answer_cmds.c - `docent ask | chat | eval | status`: the answer path
 * (rag/) run in-process on the data directory's store, with the embedder, the
 * generator and the prompt templates the config names; or, for ask, chat and
 * status, through docentd over its socket (--socket, $DOCENT_SOCKET or the
 * config's) with the same output.
 */
#include <editline/readline.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "cli/cli.h"
#include "rag/rag.h"

/* ---- shared: options from the config, printing -------------------------- */

/* env_from_config: rag_env for the opened store and models */
static int env_from_config(common *a, rag_env *env)
{
    doc_err e = {0};
    memset(env, 0, sizeof *env);
    env->store = a->s;
    env->embedder = a->m;
    env->generator = a->gen;
    env->prompts = a->prompts;
    if (rag_opts_from_config(&a->cfg, &env->opts, &e)) return cli_fail("config", &e);
    if (a->k) env->opts.k = a->k;
    return 0;
}

/* open_all: config, store + embedder, generator + prompts, the -c collection */
static int open_all(common *a, int64_t *coll)
{
    int rc;
    if ((rc = cli_load_config(a))) return rc;
    if ((rc = cli_open_store(a, 1, 0))) return rc;
    if (!a->retrieve_only && (rc = cli_open_answerer(a))) return rc;
    if (!a->prompts) { /* retrieval only still renders nothing, but keep the env complete */
        doc_err e = {0};
        if (prompt_set_load(a->cfg.prompts_dir, &a->prompts, &e)) return cli_fail("prompts", &e);
    }
    *coll = 0;
    if (a->collection && (rc = cli_resolve_collection(a, coll))) return rc;
    return 0;
}

static int stream_out(void *ud, const char *text, size_t len)
{
    (void)ud;
    fwrite(text, 1, len, stdout);
    fflush(stdout);
    return cli_stop;
}

/* answer_json: rag's answer object with the models used (as docentd sends it) */
static json_t *answer_json(const rag_answer *r, const common *a)
{
    json_t *o = rag_answer_json(r);
    json_object_set_new(o, "models",
                        json_pack("{s:s,s:s}", "embedder", a->cfg.embedder, "generator",
                                  a->gen ? a->cfg.generator : ""));
    return o;
}

/* print_sources: the Sources block (the cited sources) on stdout, then the
 * notes (dropped and flagged sources, an ungrounded answer, redactions,
 * timings) on stderr, from an answer object of the wire: the daemon's reply
 * (remote), or answer_json of an in-process answer */
static void print_sources(const json_t *r, int quiet, int remote)
{
    json_t *cites = json_object_get(r, "citations");
    size_t i;
    json_t *c;
    if (json_array_size(cites)) printf("\nSources:\n");
    json_array_foreach(cites, i, c) {
        const char *heading = json_str_or(c, "heading", "");
        printf("[%lld] %s \u2014 %s%s%s", (long long)json_int_or(c, "n", 0), json_str_or(c, "title", ""),
               json_str_or(c, "uri", ""), *heading ? "#" : "", heading);
        if (json_int_or(c, "page", 0) > 0) printf(", p. %lld", (long long)json_int_or(c, "page", 0));
        json_t *l = json_object_get(c, "lines");
        if (json_array_size(l) == 2)
            printf(", lines %lld\u2013%lld", (long long)json_integer_value(json_array_get(l, 0)),
                   (long long)json_integer_value(json_array_get(l, 1)));
        printf("\n");
        const char *snip = json_str_or(c, "snippet", "");
        if (*snip) {
            printf("    \"");
            for (const char *p = snip; *p; p++) putchar(*p == '\n' ? ' ' : *p);
            printf("\"\n");
        }
    }
    fflush(stdout);
    if (quiet) return;
    json_t *dropped = json_object_get(r, "dropped_sources");
    if (json_array_size(dropped)) {
        fprintf(stderr, "note: %zu retrieved passage%s did not fit the prompt's token budget:",
                json_array_size(dropped), json_array_size(dropped) > 1 ? "s" : "");
        json_array_foreach(dropped, i, c) {
            const char *h = json_str_or(c, "heading", "");
            fprintf(stderr, "%s %s%s%s", i ? ";" : "", json_str_or(c, "uri", ""), *h ? "#" : "", h);
        }
        fprintf(stderr, "\n");
    }
    json_array_foreach(json_object_get(r, "flagged_sources"), i, c)
        fprintf(stderr, "note: %s holds instruction-like text (%s)\n", json_str_or(c, "uri", ""),
                json_is_true(json_object_get(c, "withheld")) ? "withheld from the model" : "given as data");
    if (!json_is_true(json_object_get(r, "refused")) && !json_is_true(json_object_get(r, "not_found")) &&
        !json_is_true(json_object_get(r, "grounded")))
        fprintf(stderr, "note: not grounded: %lld sentence(s) without a supporting source\n",
                (long long)json_int_or(r, "unsupported_sentences", 0));
    if (json_int_or(r, "redacted", 0) > 0)
        fprintf(stderr, "note: %lld item(s) redacted\n", (long long)json_int_or(r, "redacted", 0));
    json_t *t = json_object_get(r, "timings"), *u = json_object_get(r, "usage");
    fprintf(stderr, "time: first text %.2f s, total %.2f s (retrieve %.3f s",
            json_num_or(t, "first_text", 0), json_num_or(t, "total", 0),
            json_num_or(t, "embed", 0) + json_num_or(t, "retrieve", 0));
    if (json_num_or(t, "rewrite", 0) > 0) fprintf(stderr, ", rewrite %.2f s", json_num_or(t, "rewrite", 0));
    if (json_int_or(u, "prompt_tokens", 0) > 0)
        fprintf(stderr, ", prefill %.2f s for %lld tokens, decode %.2f s for %lld tokens",
                json_num_or(t, "prefill", 0), (long long)json_int_or(u, "prompt_tokens", 0),
                json_num_or(t, "decode", 0), (long long)json_int_or(u, "completion_tokens", 0));
    fprintf(stderr, "%s)\n", remote ? "; in docentd" : "");
}

typedef struct remote_ask {
    json_t *done;
    char err[512];
} remote_ask;

static int on_ask_event(void *ud, const char *event, const char *data)
{
    remote_ask *r = ud;
    json_error_t je;
    if (!strcmp(event, "token")) {
        json_t *o = json_loads(data, 0, &je);
        const char *t = json_str_or(o, "text", "");
        fputs(t, stdout);
        fflush(stdout);
        json_decref(o);
    } else if (!strcmp(event, "done")) {
        r->done = json_loads(data, 0, &je);
    } else if (!strcmp(event, "error")) {
        json_t *o = json_loads(data, 0, &je);
        snprintf(r->err, sizeof r->err, "%s", json_str_or(o, "message", data));
        json_decref(o);
    }
    return cli_stop;
}

/* remote_answer: POST /v1/ask (streamed to stdout unless --json or
 * --no-stream) with the earlier turns in history (a JSON array, or NULL);
 * *done the answer object (caller decrefs) */
static int remote_answer(common *a, const char *sock, const char *question, json_t *history,
                         json_t **done, doc_err *e)
{
    long status = 0;
    int stream = !a->json && !a->no_stream;
    json_t *body = json_pack("{s:s,s:b}", "question", question, "stream", stream);
    if (a->collection) json_object_set_new(body, "collection", json_string(a->collection));
    if (a->k) json_object_set_new(body, "k", json_integer(a->k));
    if (history && json_array_size(history)) json_object_set(body, "history", history);
    remote_ask r = {0};
    int rc;
    cli_catch_signals();
    if (stream) {
        rc = cli_call_sse(sock, "/v1/ask", body, on_ask_event, &r, &status, e);
        if (rc == DOC_OK && !r.done && !*r.err && cli_stop) rc = doc_errf(e, DOC_ECANCELLED, "cancelled");
        else if (rc == DOC_OK && !r.done) rc = doc_errf(e, DOC_EIO, "%s", *r.err ? r.err : "the stream ended early");
    } else {
        rc = cli_call(sock, "POST", "/v1/ask", body, &r.done, &status, e);
    }
    json_decref(body);
    if (rc) {
        json_decref(r.done);
        r.done = NULL;
    }
    *done = r.done;
    return rc;
}

/* ask_remote: docent ask through docentd */
static int ask_remote(common *a, const char *sock, const char *question)
{
    doc_err e = {0};
    remote_ask r = {0};
    int stream = !a->json && !a->no_stream;
    int rc = remote_answer(a, sock, question, NULL, &r.done, &e);
    if (rc) {
        if (rc == DOC_ECANCELLED) return fprintf(stderr, "\ndocent: ask: cancelled\n"), 130;
        return cli_fail("ask", &e);
    }
    if (a->json) {
        cli_print_json(r.done); /* takes the reference */
        return 0;
    }
    if (!stream) fputs(json_str_or(r.done, "answer", ""), stdout);
    printf("\n");
    print_sources(r.done, a->quiet, 1);
    json_decref(r.done);
    return 0;
}

static const char status_help[] =
    "usage: docent status [--socket PATH] [--json]\n"
    "  the daemon's state: models and their engines, the collections you can read\n"
    "  (with counts; readers for admins), request counters, queues, uptime.  The socket\n"
    "  comes from --socket, $DOCENT_SOCKET or the config's [daemon] socket.\n";

int cmd_status(int argc, char **argv)
{
    common a = {.cmd = "status"};
    static const struct option lo[] = {COMMON_LONGOPTS, {0, 0, 0, 0}};
    int rc;
    if ((rc = cli_parse_flags(&a, argc, argv, "o:qh", lo, status_help, NULL)) >= 0) return rc;
    if (optind != argc) return cli_usage_error("status", "takes no operands");
    const char *sock = cli_socket(&a);
    if (!sock) return cli_usage_error("status", "no daemon: give --socket PATH, set DOCENT_SOCKET, or start docentd on the config's [daemon] socket");
    json_t *o = NULL;
    long st = 0;
    doc_err e = {0};
    if (cli_call(sock, "GET", "/v1/status", NULL, &o, &st, &e)) return cli_fail("status", &e);
    if (a.json) {
        cli_print_json(o);
        return 0;
    }
    json_t *m = json_object_get(o, "models");
    printf("docentd up %.0f s\n  embedder  %s (%s)\n  generator %s (%s)\n", json_num_or(o, "uptime_s", 0),
           json_str_or(m, "embedder", ""), json_str_or(m, "embedder_engine", ""),
           json_str_or(m, "generator", ""), json_str_or(m, "generator_engine", ""));
    size_t i;
    json_t *c;
    printf("collections you can read:\n");
    json_array_foreach(json_object_get(o, "collections"), i, c) {
        printf("  %-20s %6lld documents %8lld chunks", json_str_or(c, "name", ""),
               (long long)json_int_or(c, "documents", 0), (long long)json_int_or(c, "chunks", 0));
        if (json_object_get(c, "readers")) printf("  readers: %s", json_str_or(c, "readers", ""));
        printf("\n");
    }
    json_t *k = json_object_get(o, "counters"), *who = json_object_get(o, "caller");
    printf("requests %lld, errors %lld, in flight %lld; you are uid %lld%s\n",
           (long long)json_int_or(k, "requests", 0), (long long)json_int_or(k, "errors", 0),
           (long long)json_int_or(k, "in_flight", 0), (long long)json_int_or(who, "uid", -1),
           json_is_true(json_object_get(who, "admin")) ? " (admin)" : "");
    json_decref(o);
    return 0;
}

static int int_flag(const char *cmd, const char *name, long lo, long hi, int *out)
{
    char *end;
    long v = strtol(optarg, &end, 10);
    if (!*optarg || *end || v < lo || v > hi) {
        char msg[96];
        snprintf(msg, sizeof msg, "%s needs %ld..%ld", name, lo, hi);
        return cli_usage_error(cmd, msg);
    }
    *out = (int)v;
    return 0;
}

/* ---- ask ------------------------------------------------------------------ */

static const char ask_help[] =
    "usage: docent ask [-c COLLECTION] [-k N] [--json] [--no-stream] QUESTION\n"
    "  answer QUESTION from the stored documents, citing them as [n]; then the cited\n"
    "  sources: [n] title \u2014 uri#heading, page, lines, and the supporting snippet.\n"
    "  When the documents do not hold the answer it says so; unsafe requests are refused.\n"
    "  -c, --collection NAME   use only this collection (default: all)\n"
    "  -k N                    passages retrieved (default: [search] k)\n"
    "  --no-stream             print the answer when it is complete\n"
    "  --json                  one object: answer, citations, grounded, refused, not_found,\n"
    "                          dropped_sources, flagged_sources, timings, usage\n"
    "  -q                      no notes or timings on stderr\n"
    "  --socket PATH           ask docentd there (also $DOCENT_SOCKET); --local: in-process\n"
    "  --generator PATH|URL, --embedder PATH|URL  other models than [models] (a URL is an\n"
    "                          OpenAI-compatible server: docs/remote.md); run in-process\n"
    "  --data DIR, --config FILE, -o SECTION.KEY=VALUE ([answer] and [safety] settings;\n"
    "                          in-process only: the daemon uses its own)\n";

static int ask_flag(common *a, int c)
{
    if (c == 'k') return int_flag(a->cmd, "-k", 1, 32, &a->k);
    if (c == C_NO_STREAM) return a->no_stream = 1, 0;
    return -1;
}

int cmd_ask(int argc, char **argv)
{
    common a = {.cmd = "ask"};
    rag_env env;
    rag_answer r = {0};
    int64_t coll = 0;
    doc_err e = {0};
    int rc;
    static const struct option lo[] = {COMMON_LONGOPTS, {"no-stream", no_argument, 0, C_NO_STREAM},
                                       {0, 0, 0, 0}};
    if ((rc = cli_parse_flags(&a, argc, argv, "c:k:o:qh", lo, ask_help, ask_flag)) >= 0) return rc;
    if (optind != argc - 1) return cli_usage_error("ask", "give one QUESTION (quote it)");
    const char *question = argv[optind];
    const char *sock = cli_socket(&a);
    if (sock) return ask_remote(&a, sock, question);
    if ((rc = open_all(&a, &coll)) || (rc = env_from_config(&a, &env))) goto done;
    cli_catch_signals();
    int stream = !a.json && !a.no_stream;
    rag_request rq = {.question = question, .collections = coll ? &coll : NULL,
                      .n_collections = coll ? 1 : 0, .on_text = stream ? stream_out : NULL,
                      .cancel = &cli_stop};
    int arc = rag_answer_question(&env, &rq, &r, &e);
    if (arc && arc != DOC_ECANCELLED) {
        rc = cli_fail("ask", &e);
        goto done;
    }
    if (a.json) {
        cli_print_json(answer_json(&r, &a));
    } else {
        if (!stream) fputs(r.text ? r.text : "", stdout);
        else if (r.stream_revised)
            printf("\n\n[the output filters changed the text above; the answer as delivered:]\n%s",
                   r.text ? r.text : "");
        printf("\n");
        json_t *aj = answer_json(&r, &a);
        print_sources(aj, a.quiet, 0);
        json_decref(aj);
    }
    if (arc == DOC_ECANCELLED) {
        fprintf(stderr, "docent: ask: cancelled\n");
        rc = 130;
    }
done:
    rag_answer_free(&r);
    cli_close_all(&a);
    return rc;
}

/* ---- chat ------------------------------------------------------------------ */

static const char chat_help[] =
    "usage: docent chat [-c COLLECTION] [-k N]\n"
    "  an interactive conversation over the documents, with line editing and history\n"
    "  (~/.docent_history).  A follow-up question is rewritten into a standalone one\n"
    "  before retrieval (shown as \"(searched for: ...)\").  Commands: /reset forgets the\n"
    "  conversation, /quit (or Ctrl-D) leaves.  Reads plain lines when stdin is not a\n"
    "  terminal.\n"
    "  --socket PATH           chat through docentd there (also $DOCENT_SOCKET, or the\n"
    "                          config's [daemon] socket when docentd runs); --local: in-process\n"
    "  --generator PATH|URL, --embedder PATH|URL  other models than [models] (a URL is an\n"
    "                          OpenAI-compatible server: docs/remote.md); run in-process\n"
    "  --data DIR, --config FILE, -o SECTION.KEY=VALUE\n";

enum { CHAT_TURNS = 8 };

static char *read_line(int tty)
{
    if (tty) return readline("docent> ");
    char *line = NULL;
    size_t cap = 0;
    ssize_t n = getline(&line, &cap, stdin);
    if (n < 0) {
        free(line);
        return NULL;
    }
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r')) line[--n] = 0;
    return line;
}

/* chat_remember: keep a turn (the standalone question and the answer), the
 * oldest going when CHAT_TURNS are kept */
static void chat_remember(rag_turn *turns, int *n, const char *question, const char *answer)
{
    if (*n == CHAT_TURNS) {
        free((char *)turns[0].question);
        free((char *)turns[0].answer);
        memmove(turns, turns + 1, (CHAT_TURNS - 1) * sizeof *turns);
        (*n)--;
    }
    char *q = strdup(question), *a = strdup(answer);
    if (!q || !a) {
        free(q);
        free(a);
        return;
    }
    turns[*n].question = q;
    turns[*n].answer = a;
    (*n)++;
}

int cmd_chat(int argc, char **argv)
{
    common a = {.cmd = "chat"};
    rag_env env;
    int64_t coll = 0;
    int rc;
    rag_turn turns[CHAT_TURNS];
    int n_turns = 0;
    char hist_path[1024] = "";
    static const struct option lo[] = {COMMON_LONGOPTS, {0, 0, 0, 0}};
    if ((rc = cli_parse_flags(&a, argc, argv, "c:k:o:qh", lo, chat_help, ask_flag)) >= 0) return rc;
    if (optind != argc) return cli_usage_error("chat", "takes no operands");
    const char *sock = cli_socket(&a); /* through docentd: /v1/ask with the turns as history */
    if (!sock && ((rc = open_all(&a, &coll)) || (rc = env_from_config(&a, &env)))) goto done;
    int tty = isatty(0);
    if (tty) {
        const char *home = getenv("HOME");
        if (home) snprintf(hist_path, sizeof hist_path, "%s/.docent_history", home);
        using_history();
        if (*hist_path) read_history(hist_path);
        printf("docent chat: ask about the documents; /reset forgets, /quit leaves.\n");
    }
    for (char *line; (line = read_line(tty)); free(line)) {
        char *q = line;
        while (*q == ' ' || *q == '\t') q++;
        if (!*q) continue;
        if (tty) add_history(q);
        if (!strcmp(q, "/quit") || !strcmp(q, "/exit")) {
            free(line);
            break;
        }
        if (!strcmp(q, "/reset")) {
            for (int i = 0; i < n_turns; i++) free((char *)turns[i].question), free((char *)turns[i].answer);
            n_turns = 0;
            printf("(conversation forgotten)\n");
            continue;
        }
        cli_stop = 0;
        cli_catch_signals();
        if (sock) {
            json_t *hist = json_array(), *done = NULL;
            for (int i = 0; i < n_turns; i++)
                json_array_append_new(hist, json_pack("{s:s,s:s}", "question", turns[i].question,
                                                      "answer", turns[i].answer));
            doc_err e = {0};
            int arc = remote_answer(&a, sock, q, hist, &done, &e);
            json_decref(hist);
            if (arc == DOC_ECANCELLED) printf("\n(cancelled)\n");
            else if (arc) cli_fail("chat", &e);
            if (arc) continue;
            printf("\n");
            if (n_turns) printf("(searched for: %s)\n", json_str_or(done, "query", q));
            print_sources(done, a.quiet, 1);
            printf("\n");
            if (!json_is_true(json_object_get(done, "refused")))
                chat_remember(turns, &n_turns, json_str_or(done, "query", q), json_str_or(done, "answer", ""));
            json_decref(done);
            fflush(stdout);
            continue;
        }
        rag_answer r = {0};
        doc_err e = {0};
        rag_request rq = {.question = q, .collections = coll ? &coll : NULL,
                          .n_collections = coll ? 1 : 0, .history = turns, .n_history = n_turns,
                          .on_text = stream_out, .cancel = &cli_stop};
        int arc = rag_answer_question(&env, &rq, &r, &e);
        if (arc && arc != DOC_ECANCELLED) {
            cli_fail("chat", &e);
            continue;
        }
        if (r.stream_revised)
            printf("\n\n[the output filters changed the text above; as delivered:]\n%s",
                   r.text ? r.text : "");
        printf("\n");
        if (n_turns) printf("(searched for: %s)\n", r.query);
        json_t *aj = answer_json(&r, &a);
        print_sources(aj, a.quiet, 0);
        json_decref(aj);
        printf("\n");
        if (arc == DOC_ECANCELLED) printf("(cancelled)\n");
        if (arc == DOC_OK && !r.refused) chat_remember(turns, &n_turns, r.query ? r.query : q, r.text ? r.text : "");
        rag_answer_free(&r);
        fflush(stdout);
    }
    if (tty && *hist_path) write_history(hist_path);
done:
    for (int i = 0; i < n_turns; i++) free((char *)turns[i].question), free((char *)turns[i].answer);
    cli_close_all(&a);
    return rc;
}

/* ---- eval ----------------------------------------------------------------- */

static const char eval_help[] =
    "usage: docent eval [-c COLLECTION] [-k N] [--retrieval-only] [--json] FILE.jsonl\n"
    "  run each question of FILE (one JSON object per line: question, gold: [uri or\n"
    "  uri suffix...], expect: [phrases, any of which a right answer contains],\n"
    "  answerable: true|false) and report:\n"
    "    recall@k and MRR of retrieval (answerable questions with gold),\n"
    "    citation validity (answers whose markers were all valid, at least one),\n"
    "    cited gold (answers citing a gold document), grounded answers,\n"
    "    expected phrases (answers containing one), not-found accuracy (unanswerable\n"
    "    questions answered \"the documents don't say\") and false not-found rate,\n"
    "    p50 time to first text and to the whole answer.\n"
    "  --min-recall X --min-mrr X --min-cite X --min-expect X --min-not-found X\n"
    "                          exit 1 when a figure is under its threshold (0..1)\n"
    "  --out FILE              every question's answer and figures as JSON lines\n"
    "  --retrieval-only        only the retrieval figures (no generation)\n";

static int eval_flag(common *a, int c)
{
    double *d = NULL;
    switch (c) {
    case 'k': return int_flag(a->cmd, "-k", 1, 32, &a->k);
    case C_RETRIEVE_ONLY: a->retrieve_only = 1; return 0;
    case C_OUT: a->out = optarg; return 0;
    case C_MIN_RECALL: d = &a->min_recall; break;
    case C_MIN_MRR: d = &a->min_mrr; break;
    case C_MIN_CITE: d = &a->min_cite; break;
    case C_MIN_EXPECT: d = &a->min_expect; break;
    case C_MIN_NOT_FOUND: d = &a->min_not_found; break;
    default: return -1;
    }
    char *end;
    *d = strtod(optarg, &end);
    if (!*optarg || *end || !(*d >= 0 && *d <= 1)) return cli_usage_error("eval", "thresholds are 0..1");
    return 0;
}

static int has_suffix(const char *s, const char *suf)
{
    size_t a = strlen(s), b = strlen(suf);
    return b && a >= b && !strcmp(s + a - b, suf);
}

static int contains_ci(const char *hay, const char *needle)
{
    size_t n = strlen(needle);
    if (!n) return 0;
    for (const char *p = hay; *p; p++)
        if (!strncasecmp(p, needle, n)) return 1;
    return 0;
}

static int cmp_double(const void *x, const void *y)
{
    double a = *(const double *)x, b = *(const double *)y;
    return a < b ? -1 : a > b;
}

static double median(double *v, int n)
{
    if (!n) return NAN;
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

typedef struct eval_item {
    char *question;
    char **gold;
    int n_gold;
    char **expect;
    int n_expect;
    int answerable;
} eval_item;

static void items_free(eval_item *it, int n)
{
    for (int i = 0; i < n; i++) {
        free(it[i].question);
        for (int k = 0; k < it[i].n_gold; k++) free(it[i].gold[k]);
        for (int k = 0; k < it[i].n_expect; k++) free(it[i].expect[k]);
        free(it[i].gold);
        free(it[i].expect);
    }
    free(it);
}

/* str_array: a JSON array of strings into a malloc'd vector */
static int str_array(json_t *arr, char ***out, int *n)
{
    *out = NULL;
    *n = 0;
    if (!arr) return 0;
    if (!json_is_array(arr)) return -1;
    size_t m = json_array_size(arr);
    *out = calloc(m ? m : 1, sizeof **out);
    if (!*out) return -1;
    for (size_t i = 0; i < m; i++) {
        json_t *v = json_array_get(arr, i);
        if (!json_is_string(v)) return -1;
        (*out)[(*n)++] = strdup(json_string_value(v));
    }
    return 0;
}

/* load_items: the JSONL file; errors name the line and the field */
static int load_items(const char *path, eval_item **out, int *n_out)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "docent: eval: %s: %s\n", path, strerror(errno));
        return 1;
    }
    eval_item *it = NULL;
    int n = 0, cap = 0, rc = 0, lineno = 0;
    char *line = NULL;
    size_t lcap = 0;
    ssize_t len;
    while ((len = getline(&line, &lcap, f)) >= 0) {
        lineno++;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = 0;
        if (!len) continue;
        json_error_t je;
        json_t *o = json_loads(line, 0, &je);
        if (!o || !json_is_object(o)) {
            fprintf(stderr, "docent: eval: %s:%d: %s\n", path, lineno,
                    o ? "not a JSON object" : je.text);
            json_decref(o);
            rc = 1;
            break;
        }
        if (n == cap) {
            cap = cap ? cap * 2 : 64;
            eval_item *g = realloc(it, (size_t)cap * sizeof *it);
            if (!g) {
                json_decref(o);
                rc = 1;
                break;
            }
            it = g;
        }
        eval_item *x = &it[n++];
        memset(x, 0, sizeof *x);
        json_t *q = json_object_get(o, "question"), *ans = json_object_get(o, "answerable");
        const char *bad = NULL;
        if (!json_is_string(q) || !*json_string_value(q)) bad = "question (a non-empty string)";
        else if (str_array(json_object_get(o, "gold"), &x->gold, &x->n_gold)) bad = "gold (an array of strings)";
        else if (str_array(json_object_get(o, "expect"), &x->expect, &x->n_expect))
            bad = "expect (an array of strings)";
        else if (ans && !json_is_boolean(ans)) bad = "answerable (true or false)";
        if (!bad) {
            x->question = strdup(json_string_value(q));
            x->answerable = ans ? json_is_true(ans) : 1;
            if (x->answerable && !x->n_gold && !x->n_expect) bad = "gold or expect (an answerable question needs one)";
        }
        json_decref(o);
        if (bad) {
            fprintf(stderr, "docent: eval: %s:%d: field %s\n", path, lineno, bad);
            rc = 1;
            break;
        }
    }
    free(line);
    fclose(f);
    if (!rc && !n) {
        fprintf(stderr, "docent: eval: %s: no questions\n", path);
        rc = 1;
    }
    if (rc) {
        items_free(it, n);
        return rc;
    }
    *out = it;
    *n_out = n;
    return 0;
}

int cmd_eval(int argc, char **argv)
{
    common a = {.cmd = "eval"};
    rag_env env;
    int64_t coll = 0;
    eval_item *it = NULL;
    int n = 0, rc;
    FILE *out = NULL;
    double *t_first = NULL, *t_total = NULL;
    static const struct option lo[] = {
        COMMON_LONGOPTS,
        {"retrieval-only", no_argument, 0, C_RETRIEVE_ONLY},
        {"min-recall", required_argument, 0, C_MIN_RECALL},
        {"min-mrr", required_argument, 0, C_MIN_MRR},
        {"min-cite", required_argument, 0, C_MIN_CITE},
        {"min-expect", required_argument, 0, C_MIN_EXPECT},
        {"min-not-found", required_argument, 0, C_MIN_NOT_FOUND},
        {"out", required_argument, 0, C_OUT},
        {0, 0, 0, 0}};
    if ((rc = cli_parse_flags(&a, argc, argv, "c:k:o:qh", lo, eval_help, eval_flag)) >= 0) return rc;
    if (optind != argc - 1) return cli_usage_error("eval", "give one FILE.jsonl");
    if ((rc = load_items(argv[optind], &it, &n))) return rc;
    if ((rc = open_all(&a, &coll)) || (rc = env_from_config(&a, &env))) goto done;
    if (a.out && !(out = fopen(a.out, "w"))) {
        fprintf(stderr, "docent: eval: --out %s: %s\n", a.out, strerror(errno));
        rc = 1;
        goto done;
    }
    cli_catch_signals();
    t_first = calloc((size_t)n, sizeof *t_first);
    t_total = calloc((size_t)n, sizeof *t_total);
    if (!t_first || !t_total) {
        rc = cli_fail("eval", &(doc_err){DOC_ENOMEM, "out of memory"});
        goto done;
    }
    int k = a.k ? a.k : a.cfg.k;
    int n_ret = 0, n_hit = 0, n_gen = 0, n_valid = 0, n_cited_gold = 0, n_grounded = 0;
    int n_exp = 0, n_exp_ok = 0, n_unans = 0, n_nf_ok = 0, n_ans = 0, n_false_nf = 0, n_t = 0;
    int n_refused = 0;
    double mrr = 0;
    for (int i = 0; i < n && !cli_stop; i++) {
        eval_item *x = &it[i];
        rag_answer r = {0};
        doc_err e = {0};
        rag_request rq = {.question = x->question, .collections = coll ? &coll : NULL,
                          .n_collections = coll ? 1 : 0, .k = k, .cancel = &cli_stop,
                          .retrieve_only = a.retrieve_only};
        int arc = rag_answer_question(&env, &rq, &r, &e);
        if (arc) {
            fprintf(stderr, "docent: eval: question %d: %s\n", i + 1, e.msg);
            rag_answer_free(&r);
            rc = 1;
            break;
        }
        /* retrieval: rank of the first passage from a gold document */
        int rank = 0;
        if (x->answerable && x->n_gold) {
            n_ret++;
            for (int p = 0; p < r.n_passages && p < k && !rank; p++)
                for (int g = 0; g < x->n_gold; g++)
                    if (has_suffix(r.passages[p].uri, x->gold[g])) rank = p + 1;
            if (rank) n_hit++, mrr += 1.0 / rank;
        }
        int cites_gold = 0, n_cited = 0, expect_ok = -1;
        if (!a.retrieve_only) {
            for (int p = 0; p < r.n_passages; p++) {
                if (!r.passages[p].cited) continue;
                n_cited++;
                for (int g = 0; g < x->n_gold; g++)
                    if (has_suffix(r.passages[p].uri, x->gold[g])) cites_gold = 1;
            }
            n_refused += r.refused;
            if (x->answerable) {
                n_ans++;
                if (r.not_found) n_false_nf++;
                if (!r.not_found && !r.refused) {
                    n_gen++;
                    if (n_cited && !r.n_invalid_markers) n_valid++;
                    n_cited_gold += cites_gold;
                    n_grounded += r.grounded;
                }
                if (x->n_expect) {
                    n_exp++;
                    expect_ok = 0;
                    for (int p = 0; p < x->n_expect; p++)
                        if (contains_ci(r.text, x->expect[p])) expect_ok = 1;
                    n_exp_ok += expect_ok;
                }
            } else {
                n_unans++;
                n_nf_ok += r.not_found != RAG_FOUND;
            }
            t_first[n_t] = r.t.first_text;
            t_total[n_t++] = r.t.total;
        }
        if (!a.quiet) {
            char rk[16] = "-";
            if (rank) snprintf(rk, sizeof rk, "%d", rank);
            fprintf(stderr, "[%d/%d] %s%sgold rank %s%s%s  %.1f s  %s\n", i + 1, n,
                    x->answerable ? "" : "(unanswerable) ",
                    r.not_found ? "not found, " : r.refused ? "refused, " : "", rk,
                    expect_ok == 1 ? "  expect ok" : expect_ok == 0 ? "  expect MISSED" : "",
                    cites_gold ? "  cites gold" : "", r.t.total, x->question);
        }
        if (out) {
            json_t *o = answer_json(&r, &a);
            json_object_set_new(o, "question", json_string(x->question));
            json_object_set_new(o, "gold_rank", json_integer(rank));
            json_object_set_new(o, "expect_ok", expect_ok < 0 ? json_null() : json_boolean(expect_ok));
            char *txt = json_dumps(o, JSON_COMPACT);
            if (txt) fprintf(out, "%s\n", txt);
            free(txt);
            json_decref(o);
        }
        rag_answer_free(&r);
    }
    if (rc) goto done;
    if (cli_stop) {
        fprintf(stderr, "docent: eval: cancelled\n");
        rc = 130;
        goto done;
    }
#define RATE(a, b) ((b) ? (double)(a) / (b) : NAN)
    double recall = RATE(n_hit, n_ret), m = n_ret ? mrr / n_ret : NAN;
    double cite = RATE(n_valid, n_gen), gold = RATE(n_cited_gold, n_gen), grounded = RATE(n_grounded, n_gen);
    double expect = RATE(n_exp_ok, n_exp), nf = RATE(n_nf_ok, n_unans), false_nf = RATE(n_false_nf, n_ans);
    double p50_first = median(t_first, n_t), p50_total = median(t_total, n_t);
    if (a.json) {
        json_t *o = json_pack("{s:i,s:i,s:o,s:o}", "questions", n, "k", k,
                              "recall_at_k", isnan(recall) ? json_null() : json_real(recall),
                              "mrr", isnan(m) ? json_null() : json_real(m));
        if (!a.retrieve_only) {
#define SETR(key, v) json_object_set_new(o, key, isnan(v) ? json_null() : json_real(v))
            SETR("citation_validity", cite);
            SETR("cited_gold", gold);
            SETR("grounded", grounded);
            SETR("expected_phrases", expect);
            SETR("not_found_accuracy", nf);
            SETR("false_not_found", false_nf);
            SETR("p50_first_text_s", p50_first);
            SETR("p50_total_s", p50_total);
            json_object_set_new(o, "refused", json_integer(n_refused));
#undef SETR
        }
        cli_print_json(o);
    } else {
        printf("questions %d (answerable %d, unanswerable %d), k %d\n", n, n - n_unans, n_unans, k);
        printf("retrieval: recall@%d %.3f  MRR %.3f  (%d questions with gold)\n", k, recall, m, n_ret);
        if (!a.retrieve_only) {
            printf("citations: valid %.3f  cite a gold document %.3f  grounded %.3f  (%d generated answers)\n",
                   cite, gold, grounded, n_gen);
            printf("answers: expected phrase %.3f (%d/%d)  false not-found %.3f  refused %d\n", expect,
                   n_exp_ok, n_exp, false_nf, n_refused);
            printf("not found: accuracy %.3f (%d/%d unanswerable)\n", nf, n_nf_ok, n_unans);
            printf("time: p50 first text %.2f s, p50 total %.2f s\n", p50_first, p50_total);
        }
    }
    /* thresholds (a figure with nothing to measure does not fail) */
    struct { const char *name; double v, min; } th[] = {
        {"recall", recall, a.min_recall},    {"mrr", m, a.min_mrr},
        {"citation validity", cite, a.min_cite},
        {"expected phrases", expect, a.min_expect},
        {"not-found accuracy", nf, a.min_not_found}};
    for (size_t i = 0; i < sizeof th / sizeof th[0]; i++)
        if (th[i].min > 0 && !isnan(th[i].v) && th[i].v < th[i].min) {
            fprintf(stderr, "docent: eval: %s %.3f is under the threshold %.3f\n", th[i].name, th[i].v,
                    th[i].min);
            rc = 1;
        }
done:
    if (out) fclose(out);
    free(t_first);
    free(t_total);
    items_free(it, n);
    cli_close_all(&a);
    return rc;
}
