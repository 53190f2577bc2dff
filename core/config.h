/*
 * config.h - docent.conf: one INI file read through one table of options.
 *
 * Every option is a row of the table in config.c (section, key, type, range,
 * default, where it lands in doc_config); the parser checks each value against
 * its row, so an unknown key, a bad number or an out-of-range value is refused
 * with the file, line and key named.  Relative paths in the file are taken
 * relative to the directory holding the file; "~/" is the caller's home.
 *
 * Where the file comes from (first that exists): the explicit path, then
 * $DOCENT_CONFIG, then ./etc/docent.conf, then /etc/docent/docent.conf.  With
 * none of them, the built-in defaults apply.
 */
#ifndef DOCENT_CORE_CONFIG_H
#define DOCENT_CORE_CONFIG_H

#include "core/core.h"

typedef struct doc_config {
    char path[1024];            /* the file read, "" for built-in defaults */
    /* [data] */
    char data_dir[1024];
    /* [models] */
    char embedder[1024];
    char generator[1024];
    int threads;                /* 0: all CPUs */
    char backend[16];           /* auto | cpu | cuda */
    long memory_limit_mb;       /* most working memory per model instance; 0: what is free */
    int context;                /* the generator's context in tokens; 0: min(model's, 4096) */
    /* [ingest] */
    int chunk_tokens;           /* budget per chunk (capped to the embedder's max) */
    int overlap_tokens;
    int embed_batch;
    long max_file_mb;
    long fetch_timeout_s;
    long fetch_max_mb;
    int fetch_max_redirects;
    int commit_docs;            /* documents per transaction */
    double commit_seconds;      /* or at most this many seconds of work per transaction */
    /* [index] */
    long hnsw_threshold;
    char hnsw_factory[128];
    int hnsw_ef_search;
    /* [search] */
    int k;
    int n_dense, n_bm25;
    int rrf_k;
    /* [daemon] */
    char socket_path[1024];     /* the Unix socket docentd serves */
    char socket_group[64];      /* group owning the socket ("": the daemon's) */
    char admins[512];           /* "user:NAME,group:NAME,uid:N,key:NAME": may ingest, delete, change */
    char http_addr[128];        /* "ADDR:PORT" for TCP clients ("": none) */
    char api_keys[2048];        /* "NAME:SECRET,...": TCP callers' bearer tokens */
    int max_body_kb;            /* request bodies over this are refused (413) */
    int max_json_depth;         /* deeper JSON bodies are refused (400) */
    int max_connections;        /* concurrent connections */
    int max_per_caller;         /* requests in flight per uid or API key (429 past it) */
    int request_timeout_s;      /* idle connections are closed after this */
    int generators;             /* generator instances */
    int parallel;               /* answers each instance decodes at once, batched */
    int queue_timeout_s;        /* a question waiting longer for a generator: 503 */
    int answer_timeout_s;       /* an answer's generation stops after this */
    char watch[4096];           /* "COLLECTION:/PATH,...": ingested and followed */
    /* [answer] */
    char prompts_dir[1024];     /* the prompt templates */
    double min_similarity;      /* not found when the best passage's cosine is under this */
    int prompt_tokens;          /* cap on the rendered prompt (sources included) */
    int answer_tokens;          /* cap on generated tokens (reserved in the context) */
    double temperature;         /* 0: greedy */
    double repeat_penalty;
    long seed;
    double min_support;         /* lexical support that matches an uncited sentence */
    double min_match_similarity;/* or embedding similarity */
    /* [safety] */
    char redact[256];           /* redaction categories ("all", "email,card", "" for none) */
    char refuse[256];           /* unsafe-request categories refused ("all", ...) */
    char injections[16];        /* passages with instruction-like text: mask | flag */
    /* [remote] (models given as http(s):// URLs; see docs/remote.md) */
    char remote_api_key[512];   /* bearer token ("": none, or api_key_env) */
    char remote_api_key_env[128]; /* environment variable holding the key */
    int remote_timeout_s;       /* whole request */
    int remote_connect_timeout_s;
    int remote_idle_timeout_s;  /* no byte for this long ends a request */
    int remote_retries;         /* extra attempts on 429/5xx/connect errors */
    int remote_backoff_ms;      /* first retry delay (doubled each time, + jitter) */
    int remote_max_concurrency; /* requests in flight per model */
    int remote_tls_verify;      /* 0: accept any certificate (testing only) */
    char remote_ca_file[1024];  /* PEM bundle ("": the system's) */
    char remote_tokenizer[1024];/* local model whose tokenizer counts a remote generator's tokens ("": estimate) */
    char remote_embedder_tokenizer[1024]; /* the same for a remote embedder (chunk sizes) */
    int remote_n_ctx;           /* the remote generator's context length */
} doc_config;

/* config_defaults: fill c with the built-in defaults. */
void config_defaults(doc_config *c);
/* config_load: defaults, then the first config file found (see above; path may
 * be NULL).  An explicit path that does not exist is an error; a bad line is
 * DOC_EINVAL naming "file:line: key". */
int config_load(const char *path, doc_config *c, doc_err *err);
/* config_set: apply one "section.key=value" override (command-line -o). */
int config_set(doc_config *c, const char *assignment, doc_err *err);

#endif
