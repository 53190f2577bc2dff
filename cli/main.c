/*
 * main.c - the `docent` command line.
 *
 * Engine commands (in-process, no daemon): tokenize, embed, generate.  Store
 * commands (store_cmds.c, in-process until the daemon serves them): ingest,
 * search, ls, rm, collections, reindex, check.  Answer commands
 * (answer_cmds.c, in-process too): ask, chat, eval.  status comes with the daemon.
 * Commands are a table; each parses its own flags with getopt_long.
 * Exit status: 0 ok, 1 runtime error (message on stderr), 2 usage error.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "core/core.h"
#include "llm/llm.h"
#include "rag/rag.h"

/* cli_fail: report a runtime error; what (may be NULL) is context the message lacks */
int cli_fail(const char *what, const doc_err *e)
{
    const char *msg = e->msg[0] ? e->msg : doc_strerror(e->rc);
    if (what) fprintf(stderr, "docent: %s: %s\n", what, msg);
    else fprintf(stderr, "docent: %s\n", msg);
    return 1;
}

int cli_usage_error(const char *cmd, const char *msg)
{
    fprintf(stderr, "docent %s: %s (see docent %s --help)\n", cmd, msg, cmd);
    return EXIT_USAGE;
}

/* strict number parsing: the whole argument must be a number in range */
static int parse_int(const char *s, long lo, long hi, int *out)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (!*s || *end || v < lo || v > hi) return -1;
    *out = (int)v;
    return 0;
}

static int parse_float(const char *s, double lo, double hi, float *out)
{
    char *end;
    double v = strtod(s, &end);
    if (!*s || *end || !(v >= lo && v <= hi)) return -1;
    *out = (float)v;
    return 0;
}

/* common model flags */
typedef struct model_args {
    const char *model;
    llm_opts opts;
} model_args;

enum { OPT_THREADS = 1000, OPT_BACKEND, OPT_CTX, OPT_TEMPLATE, OPT_JSON, OPT_STATS, OPT_REPEAT,
       OPT_STOP, OPT_SPECIAL, OPT_BATCH, OPT_F32 };

static int model_flag(int c, const char *cmd, model_args *a)
{
    switch (c) {
    case 'm': a->model = optarg; return 0;
    case 't':
    case OPT_THREADS:
        return parse_int(optarg, 1, 1024, &a->opts.n_threads) ? cli_usage_error(cmd, "--threads needs 1..1024") : 0;
    case OPT_BACKEND: a->opts.backend = optarg; return 0;
    case OPT_CTX:
        return parse_int(optarg, 16, 1 << 20, &a->opts.n_ctx) ? cli_usage_error(cmd, "--ctx needs 16..1048576") : 0;
    case OPT_TEMPLATE: a->opts.chat_template = optarg; return 0;
    case OPT_F32: a->opts.weights_f32 = 1; return 0;
    case OPT_BATCH:
        return parse_int(optarg, 1, 4096, &a->opts.batch) ? cli_usage_error(cmd, "--batch needs 1..4096") : 0;
    }
    return -1;
}

#define MODEL_LONGOPTS                                                                  \
    {"model", required_argument, 0, 'm'}, {"threads", required_argument, 0, OPT_THREADS}, \
        {"backend", required_argument, 0, OPT_BACKEND}, {"ctx", required_argument, 0, OPT_CTX}, \
        {"template", required_argument, 0, OPT_TEMPLATE}, {"f32-weights", no_argument, 0, OPT_F32}, \
        {"help", no_argument, 0, 'h'}

static int open_model(const char *cmd, model_args *a, llm_model **m)
{
    if (!a->model) return cli_usage_error(cmd, "-m MODEL is required");
    doc_err e = {0};
    if (llm_model_open(a->model, &a->opts, m, &e)) return cli_fail(NULL, &e); /* names the file */
    return 0;
}

/* ---- tokenize ---------------------------------------------------------- */

static const char tokenize_help[] =
    "usage: docent tokenize -m MODEL [--json] [--special] TEXT\n"
    "  prints the token ids of TEXT, space separated (--json: a JSON array).\n"
    "  --special   add the model's special tokens (BOS, [CLS]/[SEP]) and parse\n"
    "              special-token text such as <|im_start|>\n";

static int cmd_tokenize(int argc, char **argv)
{
    model_args a = {0};
    int json = 0, special = 0;
    static const struct option lo[] = {MODEL_LONGOPTS, {"json", no_argument, 0, OPT_JSON},
                                       {"special", no_argument, 0, OPT_SPECIAL}, {0, 0, 0, 0}};
    int c, r;
    while ((c = getopt_long(argc, argv, "m:t:h", lo, NULL)) != -1) {
        if (c == 'h') return fputs(tokenize_help, stdout), 0;
        if (c == OPT_JSON) json = 1;
        else if (c == OPT_SPECIAL) special = 1;
        else if ((r = model_flag(c, "tokenize", &a))) return r < 0 ? EXIT_USAGE : r;
    }
    if (optind != argc - 1) return cli_usage_error("tokenize", "give exactly one TEXT");
    llm_model *m;
    if ((r = open_model("tokenize", &a, &m))) return r;
    doc_err e = {0};
    int32_t *ids;
    int n;
    const char *text = argv[optind];
    if (llm_tokenize(m, text, strlen(text), special, special, &ids, &n, &e)) {
        llm_model_close(&m);
        return cli_fail("tokenize", &e);
    }
    if (json) putchar('[');
    for (int i = 0; i < n; i++) printf(json ? "%s%d" : "%s%d", i ? (json ? "," : " ") : "", ids[i]);
    puts(json ? "]" : "");
    free(ids);
    llm_model_close(&m);
    return 0;
}

/* ---- embed ------------------------------------------------------------- */

static const char embed_help[] =
    "usage: docent embed -m MODEL [--json] [--batch N] TEXT...\n"
    "  prints one L2-normalised embedding per TEXT (one line of numbers each;\n"
    "  --json: an array of arrays).  TEXT '-' reads one text per line from stdin.\n";

static int cmd_embed(int argc, char **argv)
{
    model_args a = {0};
    int json = 0;
    static const struct option lo[] = {MODEL_LONGOPTS, {"json", no_argument, 0, OPT_JSON},
                                       {"batch", required_argument, 0, OPT_BATCH}, {0, 0, 0, 0}};
    int c, r;
    while ((c = getopt_long(argc, argv, "m:t:h", lo, NULL)) != -1) {
        if (c == 'h') return fputs(embed_help, stdout), 0;
        if (c == OPT_JSON) json = 1;
        else if ((r = model_flag(c, "embed", &a))) return r < 0 ? EXIT_USAGE : r;
    }
    if (optind >= argc) return cli_usage_error("embed", "give at least one TEXT");
    /* inputs: arguments, or lines of stdin for "-" */
    int n = 0, cap = 0;
    char **texts = NULL, *line = NULL;
    size_t lcap = 0;
    int rc = 0;
    for (int i = optind; i < argc; i++) {
        int from_stdin = !strcmp(argv[i], "-");
        for (;;) {
            char *t;
            if (from_stdin) {
                ssize_t got = getline(&line, &lcap, stdin);
                if (got < 0) break;
                if (got && line[got - 1] == '\n') line[--got] = 0;
                t = strdup(line);
            } else {
                t = strdup(argv[i]);
            }
            if (n == cap) {
                cap = cap ? cap * 2 : 16;
                char **nt = realloc(texts, (size_t)cap * sizeof *nt);
                if (!nt) {
                    free(t);
                    rc = 1;
                    break;
                }
                texts = nt;
            }
            texts[n++] = t;
            if (!from_stdin) break;
        }
    }
    free(line);
    llm_model *m = NULL;
    float *out = NULL;
    if (rc || !texts) {
        fprintf(stderr, "docent embed: out of memory\n");
        rc = 1;
        goto done;
    }
    if ((rc = open_model("embed", &a, &m))) goto done;
    int dim = llm_embed_dim(m);
    if (dim <= 0) {
        fprintf(stderr, "docent embed: %s is not an embedding (encoder) model\n", a.model);
        rc = 1;
        goto done;
    }
    out = malloc((size_t)n * dim * sizeof *out);
    doc_err e = {0};
    if (!out) {
        rc = 1;
        goto done;
    }
    if (llm_embed(m, (const char *const *)texts, n, out, NULL, &e)) {
        rc = cli_fail("embed", &e);
        goto done;
    }
    if (json) putchar('[');
    for (int i = 0; i < n; i++) {
        if (json) printf("%s[", i ? "," : "");
        for (int j = 0; j < dim; j++) printf(json ? "%s%.7g" : "%s%.7g", j ? (json ? "," : " ") : "", out[(size_t)i * dim + j]);
        if (json) putchar(']');
        else putchar('\n');
    }
    if (json) puts("]");
done:
    for (int i = 0; i < n; i++) free(texts[i]);
    free(texts);
    free(out);
    llm_model_close(&m);
    return rc;
}

/* ---- generate ---------------------------------------------------------- */

static const char generate_help[] =
    "usage: docent generate -m MODEL [options] PROMPT\n"
    "  streams the model's continuation of PROMPT to stdout.\n"
    "  --chat           wrap PROMPT as a user message in the model's chat template\n"
    "  --system TEXT    system message for --chat\n"
    "  -n N             generate at most N tokens (default 256)\n"
    "  --temp T         temperature (default 0: greedy)\n"
    "  --top-k K, --top-p P, --min-p P, --repeat-penalty R, --seed S\n"
    "  --beams B        beam search with B beams (deterministic)\n"
    "  --stop TEXT      stop string (repeatable)\n"
    "  --ctx N          context length (default: the model's, at most 4096)\n"
    "  --template NAME  chat template override: chatml, llama3, llama2, gemma\n"
    "  --threads N      CPU threads (default: all)\n"
    "  --backend B      auto (default), cpu, cuda\n"
    "  --f32-weights    dequantize weights to f32 at load (exact float math; for verification)\n"
    "  --stats          print prompt and generation speed to stderr\n";

static int print_text(void *ud, const char *text, size_t len)
{
    (void)ud;
    if (len) {
        fwrite(text, 1, len, stdout);
        fflush(stdout);
    }
    return 0;
}

static int cmd_generate(int argc, char **argv)
{
    model_args a = {0};
    llm_sampling s;
    llm_sampling_default(&s);
    int chat = 0, stats = 0;
    const char *system = NULL;
    const char *stops[16];
    int n_stop = 0;
    static const struct option lo[] = {
        MODEL_LONGOPTS,
        {"chat", no_argument, 0, 'c'},
        {"system", required_argument, 0, 'S'},
        {"temp", required_argument, 0, 'T'},
        {"top-k", required_argument, 0, 'k'},
        {"top-p", required_argument, 0, 'p'},
        {"min-p", required_argument, 0, 'P'},
        {"seed", required_argument, 0, 's'},
        {"beams", required_argument, 0, 'b'},
        {"repeat-penalty", required_argument, 0, OPT_REPEAT},
        {"stop", required_argument, 0, OPT_STOP},
        {"stats", no_argument, 0, OPT_STATS},
        {0, 0, 0, 0},
    };
    int c, r;
    while ((c = getopt_long(argc, argv, "m:t:n:h", lo, NULL)) != -1) {
        int bad = 0;
        switch (c) {
        case 'h': return fputs(generate_help, stdout), 0;
        case 'c': chat = 1; break;
        case 'S': system = optarg; break;
        case 'n': bad = parse_int(optarg, 0, 1 << 20, &s.max_tokens); break;
        case 'T': bad = parse_float(optarg, 0, 100, &s.temperature); break;
        case 'k': bad = parse_int(optarg, 0, 1 << 24, &s.top_k); break;
        case 'p': bad = parse_float(optarg, 0, 1, &s.top_p); break;
        case 'P': bad = parse_float(optarg, 0, 1, &s.min_p); break;
        case 'b': bad = parse_int(optarg, 1, 16, &s.n_beams); break;
        case OPT_REPEAT: bad = parse_float(optarg, 0.01, 100, &s.repeat_penalty); break;
        case 's': {
            char *end;
            s.seed = strtoull(optarg, &end, 10);
            bad = !*optarg || *end;
            break;
        }
        case OPT_STOP:
            if (n_stop == 16) return cli_usage_error("generate", "at most 16 --stop strings");
            stops[n_stop++] = optarg;
            break;
        case OPT_STATS: stats = 1; break;
        default:
            if ((r = model_flag(c, "generate", &a))) return r < 0 ? EXIT_USAGE : r;
        }
        if (bad) {
            char msg[128];
            snprintf(msg, sizeof msg, "bad value \"%s\" for %s", optarg, argv[optind - 1]);
            return cli_usage_error("generate", msg);
        }
    }
    if (optind != argc - 1) return cli_usage_error("generate", "give exactly one PROMPT");
    s.stop = stops;
    s.n_stop = n_stop;
    llm_model *m;
    if ((r = open_model("generate", &a, &m))) return r;
    doc_err e = {0};
    buf prompt;
    buf_init(&prompt, 0);
    int rc = 0;
    if (chat) {
        llm_chat_msg msgs[2];
        int nm = 0;
        if (system) msgs[nm++] = (llm_chat_msg){"system", system};
        msgs[nm++] = (llm_chat_msg){"user", argv[optind]};
        if (llm_chat_render(m, msgs, nm, 1, &prompt, &e)) {
            rc = cli_fail("generate", &e);
            goto done;
        }
    } else if (buf_puts(&prompt, argv[optind])) {
        rc = 1;
        goto done;
    }
    llm_gen_stats st;
    if (llm_generate(m, prompt.data, &s, print_text, NULL, &st, &e)) {
        rc = cli_fail("generate", &e);
        goto done;
    }
    putchar('\n');
    fflush(stdout); /* the stats line on stderr comes after the text */
    if (stats)
        fprintf(stderr, "prompt: %d tokens, %.1f tok/s; generate: %d tokens, %.1f tok/s (%s)\n",
                st.n_prompt, st.t_prompt > 0 ? st.n_prompt / st.t_prompt : 0.0, st.n_gen,
                st.t_gen > 0 ? st.n_gen / st.t_gen : 0.0, llm_model_desc(m));
done:
    buf_free(&prompt);
    llm_model_close(&m);
    return rc;
}

/* ---- dispatch ---------------------------------------------------------- */

static const struct {
    const char *name;
    int (*fn)(int, char **);
    const char *summary;
} commands[] = {
    {"tokenize", cmd_tokenize, "token ids of a text"},
    {"embed", cmd_embed, "embedding vectors of texts (encoder models)"},
    {"generate", cmd_generate, "generate text (decoder models)"},
    {"ask", cmd_ask, "answer a question from the documents, with cited sources"},
    {"chat", cmd_chat, "a conversation over the documents (line editing, history)"},
    {"eval", cmd_eval, "measure retrieval and answers against a question file"},
    {"status", cmd_status, "the daemon's state: models, collections, counters (--socket)"},
    {"ingest", cmd_ingest, "add files, folders and URLs to a collection"},
    {"search", cmd_search, "ranked passages for a query (dense + BM25)"},
    {"ls", cmd_ls, "list stored documents"},
    {"rm", cmd_rm, "remove documents"},
    {"collections", cmd_collections, "list collections"},
    {"reindex", cmd_reindex, "re-embed everything with the configured embedder"},
    {"check", cmd_check, "verify the store (SQLite, full-text and vector indexes)"},
};

static void usage(FILE *f)
{
    fputs("usage: docent COMMAND [options]\n\ncommands:\n", f);
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
    fputs("\nrun 'docent COMMAND --help' for a command's options\n", f);
}

int main(int argc, char **argv)
{
    log_init();
    /* log lines go through the same PII/secret redaction as answers */
    log_set_filter(rag_log_filter, NULL);
    if (argc < 2) {
        usage(stderr);
        return EXIT_USAGE;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name)) return commands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "docent: unknown command \"%s\"\n", argv[1]);
    usage(stderr);
    return EXIT_USAGE;
}
