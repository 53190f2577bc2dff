/*
 * config.c - docent.conf through inih (the one file that includes ini.h).
 *
 * One table of options; the handler looks the (section, key) pair up, parses
 * the value by the row's type and range and stores it at the row's offset.
 * inih reports the first line whose handler failed; the handler leaves the
 * reason in the parse state so the message names line, key and problem.
 */
#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <ini.h>

#include "core/config.h"

enum { T_INT, T_LONG, T_DOUBLE, T_STR, T_PATH };

typedef struct opt {
    const char *section, *key;
    int type;
    size_t off, size;           /* size: capacity for strings */
    double lo, hi;
    const char *def;
} opt;

#define O(sec, k, t, field, lo, hi, def) \
    {sec, k, t, offsetof(doc_config, field), sizeof(((doc_config *)0)->field), lo, hi, def}

static const opt opts[] = {
    O("data", "dir", T_PATH, data_dir, 0, 0, "~/.local/share/docent"),
    O("models", "embedder", T_PATH, embedder, 0, 0, "models/all-minilm-l6-v2"),
    O("models", "generator", T_PATH, generator, 0, 0, "models/smollm2-135m-instruct-q4_1.gguf"),
    O("models", "threads", T_INT, threads, 0, 1024, "0"),
    O("models", "backend", T_STR, backend, 0, 0, "auto"),
    O("models", "memory_limit_mb", T_LONG, memory_limit_mb, 0, 1e9, "0"),
    O("models", "context", T_INT, context, 0, 1 << 20, "0"),
    O("ingest", "chunk_tokens", T_INT, chunk_tokens, 16, 8192, "256"),
    O("ingest", "overlap_tokens", T_INT, overlap_tokens, 0, 4096, "32"),
    O("ingest", "embed_batch", T_INT, embed_batch, 1, 1024, "32"),
    O("ingest", "max_file_mb", T_LONG, max_file_mb, 1, 4096, "64"),
    O("ingest", "fetch_timeout_s", T_LONG, fetch_timeout_s, 1, 3600, "60"),
    O("ingest", "fetch_max_mb", T_LONG, fetch_max_mb, 1, 4096, "64"),
    O("ingest", "fetch_max_redirects", T_INT, fetch_max_redirects, 0, 50, "5"),
    O("ingest", "commit_docs", T_INT, commit_docs, 1, 100000, "200"),
    O("ingest", "commit_seconds", T_DOUBLE, commit_seconds, 0.1, 3600, "10"),
    O("index", "hnsw_threshold", T_LONG, hnsw_threshold, 0, 1e12, "50000"),
    O("index", "hnsw_factory", T_STR, hnsw_factory, 0, 0, "IDMap2,HNSW32"),
    O("index", "hnsw_ef_search", T_INT, hnsw_ef_search, 1, 1 << 16, "128"),
    O("search", "k", T_INT, k, 1, 1000, "5"),
    O("search", "n_dense", T_INT, n_dense, 1, 100000, "50"),
    O("search", "n_bm25", T_INT, n_bm25, 1, 100000, "50"),
    O("search", "rrf_k", T_INT, rrf_k, 1, 100000, "60"),
    O("daemon", "socket", T_PATH, socket_path, 0, 0, "/run/docent/docentd.sock"),
    O("daemon", "socket_group", T_STR, socket_group, 0, 0, ""),
    O("daemon", "admins", T_STR, admins, 0, 0, ""),
    O("daemon", "http", T_STR, http_addr, 0, 0, ""),
    O("daemon", "api_keys", T_STR, api_keys, 0, 0, ""),
    O("daemon", "max_body_kb", T_INT, max_body_kb, 1, 1 << 20, "1024"),
    O("daemon", "max_json_depth", T_INT, max_json_depth, 2, 1000, "32"),
    O("daemon", "max_connections", T_INT, max_connections, 1, 65536, "64"),
    O("daemon", "max_per_caller", T_INT, max_per_caller, 1, 65536, "16"),
    O("daemon", "request_timeout_s", T_INT, request_timeout_s, 1, 86400, "300"),
    O("daemon", "generators", T_INT, generators, 1, 64, "1"),
    O("daemon", "parallel", T_INT, parallel, 1, 64, "4"),
    O("daemon", "queue_timeout_s", T_INT, queue_timeout_s, 1, 86400, "120"),
    O("daemon", "answer_timeout_s", T_INT, answer_timeout_s, 1, 86400, "600"),
    O("daemon", "watch", T_STR, watch, 0, 0, ""),
    O("answer", "prompts", T_PATH, prompts_dir, 0, 0, "prompts"),
    O("answer", "min_similarity", T_DOUBLE, min_similarity, -1, 1, "0.38"),
    O("answer", "prompt_tokens", T_INT, prompt_tokens, 256, 1 << 20, "1024"),
    O("answer", "answer_tokens", T_INT, answer_tokens, 16, 1 << 16, "256"),
    O("answer", "temperature", T_DOUBLE, temperature, 0, 5, "0"),
    O("answer", "repeat_penalty", T_DOUBLE, repeat_penalty, 1, 5, "1.1"),
    O("answer", "seed", T_LONG, seed, 0, 9.0e15, "42"),
    O("answer", "min_support", T_DOUBLE, min_support, 0, 1, "0.5"),
    O("answer", "min_match_similarity", T_DOUBLE, min_match_similarity, -1, 1, "0.6"),
    O("safety", "redact", T_STR, redact, 0, 0, "all"),
    O("safety", "refuse", T_STR, refuse, 0, 0, "all"),
    O("safety", "injections", T_STR, injections, 0, 0, "mask"),
    O("remote", "api_key", T_STR, remote_api_key, 0, 0, ""),
    O("remote", "api_key_env", T_STR, remote_api_key_env, 0, 0, ""),
    O("remote", "timeout_s", T_INT, remote_timeout_s, 1, 86400, "300"),
    O("remote", "connect_timeout_s", T_INT, remote_connect_timeout_s, 1, 600, "10"),
    O("remote", "idle_timeout_s", T_INT, remote_idle_timeout_s, 1, 86400, "60"),
    O("remote", "retries", T_INT, remote_retries, 0, 20, "2"),
    O("remote", "backoff_ms", T_INT, remote_backoff_ms, 1, 60000, "500"),
    O("remote", "max_concurrency", T_INT, remote_max_concurrency, 1, 4096, "8"),
    O("remote", "tls_verify", T_INT, remote_tls_verify, 0, 1, "1"),
    O("remote", "ca_file", T_PATH, remote_ca_file, 0, 0, ""),
    O("remote", "tokenizer", T_PATH, remote_tokenizer, 0, 0, ""),
    O("remote", "embedder_tokenizer", T_PATH, remote_embedder_tokenizer, 0, 0, ""),
    O("remote", "n_ctx", T_INT, remote_n_ctx, 256, 1 << 24, "4096"),
};

/* the directory relative paths are resolved against ("" for defaults: cwd) */
typedef struct pstate {
    doc_config *c;
    char base[1024];
    char why[256];
} pstate;

static int set_value(pstate *ps, const opt *o, const char *v)
{
    char *p = (char *)ps->c + o->off, *end;
    errno = 0;
    switch (o->type) {
    case T_INT:
    case T_LONG: {
        long long x = strtoll(v, &end, 10);
        if (!*v || *end || errno || x < o->lo || x > o->hi) {
            snprintf(ps->why, sizeof ps->why, "%s.%s = '%.64s': needs a whole number in %.0f..%.0f",
                     o->section, o->key, v, o->lo, o->hi);
            return -1;
        }
        if (o->type == T_INT) *(int *)p = (int)x;
        else *(long *)p = (long)x;
        return 0;
    }
    case T_DOUBLE: {
        double x = strtod(v, &end);
        if (!*v || *end || errno || !(x >= o->lo && x <= o->hi)) {
            snprintf(ps->why, sizeof ps->why, "%s.%s = '%.64s': needs a number in %g..%g",
                     o->section, o->key, v, o->lo, o->hi);
            return -1;
        }
        *(double *)p = x;
        return 0;
    }
    case T_STR:
    case T_PATH: {
        int n;
        const char *home = getenv("HOME");
        if (o->type == T_PATH && v[0] == '~' && v[1] == '/')
            n = snprintf(p, o->size, "%s/%s", home ? home : "", v + 2);
        else if (o->type == T_PATH && v[0] && v[0] != '/' && !strstr(v, "://") && ps->base[0])
            n = snprintf(p, o->size, "%s/%s", ps->base, v);
        else
            n = snprintf(p, o->size, "%s", v);
        if (n < 0 || (size_t)n >= o->size) {
            snprintf(ps->why, sizeof ps->why, "%s.%s: value longer than %zu bytes", o->section,
                     o->key, o->size - 1);
            return -1;
        }
        return 0;
    }
    }
    return -1;
}

static const opt *find(const char *section, const char *key)
{
    for (size_t i = 0; i < sizeof opts / sizeof opts[0]; i++)
        if (!strcmp(opts[i].section, section) && !strcmp(opts[i].key, key)) return &opts[i];
    return NULL;
}

static int handler(void *user, const char *section, const char *key, const char *value)
{
    pstate *ps = user;
    const opt *o = find(section, key);
    if (!o) {
        snprintf(ps->why, sizeof ps->why, "unknown option [%.64s] %.64s", section, key);
        return 0;
    }
    return set_value(ps, o, value) == 0;
}

void config_defaults(doc_config *c)
{
    pstate ps = {.c = c};
    memset(c, 0, sizeof *c);
    for (size_t i = 0; i < sizeof opts / sizeof opts[0]; i++) set_value(&ps, &opts[i], opts[i].def);
}

int config_load(const char *path, doc_config *c, doc_err *err)
{
    pstate ps = {.c = c};
    const char *cands[3] = {getenv("DOCENT_CONFIG"), "etc/docent.conf", "/etc/docent/docent.conf"};
    const char *chosen = NULL;
    config_defaults(c);
    if (path) {
        if (!file_exists(path)) return doc_errf(err, DOC_ENOTFOUND, "%s: no such config file", path);
        chosen = path;
    } else {
        for (int i = 0; i < 3 && !chosen; i++)
            if (cands[i] && *cands[i] && file_exists(cands[i])) chosen = cands[i];
    }
    if (!chosen) return 0;
    if (!realpath(chosen, c->path))
        return doc_errf(err, DOC_EIO, "%s: %s", chosen, strerror(errno));
    /* values in the file are relative to its directory; the built-in relative
     * defaults (models/...) to the directory above it (the repository for
     * ./etc/docent.conf) */
    snprintf(ps.base, sizeof ps.base, "%s", c->path);
    char *slash = strrchr(ps.base, '/');
    if (slash) *slash = 0;
    pstate dps = {.c = c};
    snprintf(dps.base, sizeof dps.base, "%s", ps.base);
    slash = strrchr(dps.base, '/');
    if (slash && slash != dps.base) *slash = 0;
    for (size_t i = 0; i < sizeof opts / sizeof opts[0]; i++)
        if (opts[i].type == T_PATH && opts[i].def[0] != '~') set_value(&dps, &opts[i], opts[i].def);
    int line = ini_parse(c->path, handler, &ps);
    if (line < 0) return doc_errf(err, DOC_EIO, "%s: cannot read", c->path);
    if (line > 0)
        return doc_errf(err, DOC_EINVAL, "%s:%d: %s", c->path, line,
                        ps.why[0] ? ps.why : "syntax error (expected [section] or key = value)");
    return 0;
}

int config_set(doc_config *c, const char *assignment, doc_err *err)
{
    pstate ps = {.c = c};
    char sec[64], key[64];
    const char *dot = strchr(assignment, '.'), *eq = strchr(assignment, '=');
    if (!dot || !eq || dot > eq || dot - assignment >= (long)sizeof sec ||
        eq - dot - 1 >= (long)sizeof key)
        return doc_errf(err, DOC_EINVAL, "'%.64s': expected section.key=value", assignment);
    snprintf(sec, sizeof sec, "%.*s", (int)(dot - assignment), assignment);
    snprintf(key, sizeof key, "%.*s", (int)(eq - dot - 1), dot + 1);
    const opt *o = find(sec, key);
    if (!o) return doc_errf(err, DOC_EINVAL, "unknown option %s.%s", sec, key);
    if (getcwd(ps.base, sizeof ps.base) == NULL) ps.base[0] = 0;
    if (set_value(&ps, o, eq + 1)) return doc_errf(err, DOC_EINVAL, "%s", ps.why);
    return 0;
}
