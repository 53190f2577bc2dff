/*
 * llm.h - docent's transformer engine, public API.
 *
 * A model is opened from a GGUF file or a Hugging Face directory and is either
 * an encoder (BERT family: embeddings) or a decoder (llama family: text
 * generation).  One model may be used from one thread at a time; open a second
 * model (the mapping is shared by the OS) for parallel use, or let several
 * threads generate on one decoder with llm_model_set_parallel.
 */
#ifndef DOCENT_LLM_H
#define DOCENT_LLM_H

#include <stddef.h>
#include <stdint.h>

#include "core/core.h"

typedef struct llm_model llm_model;
typedef struct llm_session llm_session;

enum { LLM_ENCODER = 1, LLM_DECODER = 2 };

/* llm_remote_opts: how a remote model (an OpenAI-compatible server, see
 * llm_model_open and docs/remote.md) is reached.  Zero fields take the
 * defaults in brackets. */
typedef struct llm_remote_opts {
    const char *api_key;     /* sent as "Authorization: Bearer KEY"; never logged [none] */
    const char *api_key_env; /* or the key is read from this environment variable [none] */
    int timeout_s;           /* whole request, streaming included [300] */
    int connect_timeout_s;   /* TCP + TLS connect [10] */
    int idle_timeout_s;      /* no byte received for this long ends the request [60] */
    int retries;             /* extra attempts on 429/5xx/connect errors before any text [2];
                                -1: none */
    int backoff_ms;          /* first retry delay, doubled each time, plus jitter [500] */
    int max_concurrency;     /* requests in flight per model; more callers wait [8] */
    int tls_insecure;        /* 1: do not verify the server's certificate (tests only) */
    const char *ca_file;     /* PEM bundle to verify against [the system's] */
    const char *tokenizer;   /* local model whose tokenizer counts tokens [estimate] */
    int n_ctx;               /* the remote generator's context [4096] */
} llm_remote_opts;

typedef struct llm_opts {
    int n_threads;             /* <= 0: all online CPUs */
    int n_ctx;                 /* decoder context; 0: min(model's, 4096) */
    const char *backend;       /* "auto" (default), "cpu", "cuda" */
    const char *chat_template; /* NULL: detect from metadata; else "chatml", "llama3", "llama2", "gemma" */
    int batch;                 /* encoder batch size; 0: 32 */
    int weights_f32;           /* 1: dequantize every weight to f32 at load (exact
                                  float math, no activation quantization; 4x the
                                  memory of Q8 weights; for verification) */
    int want_kind;             /* remote models: LLM_ENCODER or LLM_DECODER (0: decoder) */
    long mem_limit_mb;         /* most working memory (KV caches, activations) the model may
                                  plan on, in MiB; 0: what its backend reports free */
    const llm_remote_opts *remote; /* remote models: NULL for the defaults */
} llm_opts;

/* llm_model_open: load path (a .gguf file or a directory with config.json).
 * Every tensor the architecture needs is checked against the hyperparameters
 * before use.  Caller closes with llm_model_close.
 *
 * A path starting with http:// or https:// opens a remote model instead: an
 * OpenAI-compatible server's base URL ("http://10.0.0.5:8000/v1") with an
 * optional "#MODEL" (without it the first id of GET {base}/models).  Its kind
 * is o->want_kind; an encoder learns its dimension from one probe embedding.
 * Remote models support llm_generate_chat, llm_embed, llm_count_tokens and the
 * getters; the token-level calls fail with DOC_EUNSUPPORTED.  Unlike local
 * models, a remote model may be used from several threads at once. */
int llm_model_open(const char *path, const llm_opts *o, llm_model **out, doc_err *err);
void llm_model_close(llm_model **m);

/* llm_opts_from_config: the model options docent.conf gives ([models],
 * [ingest] embed_batch for an encoder, [remote]) for a model in role want_kind.
 * o->remote points at *ro, which must live as long as the open call. */
struct doc_config;
void llm_opts_from_config(const struct doc_config *c, int want_kind, llm_opts *o,
                          llm_remote_opts *ro);

/* llm_model_set_parallel: let up to n threads (1..64) generate on this local
 * decoder at once (llm_generate, llm_generate_chat; tokenizing, rendering
 * and counting are always safe to share).  Their decode steps run together
 * as one batch (llm_sessions_step): continuous batching, each sequence
 * joining after its prefill and leaving when it ends.  Call once, before
 * sharing the model; a no-op for remote models, which take concurrent calls
 * anyway.  Sessions and embeddings stay one-thread-at-a-time calls. */
int llm_model_set_parallel(llm_model *m, int n, doc_err *err);
/* llm_model_batch_stats: decode steps run and tokens they produced since
 * llm_model_set_parallel (tokens / steps is the mean batch); 0 without it. */
void llm_model_batch_stats(const llm_model *m, uint64_t *steps, uint64_t *tokens);

/* llm_model_is_remote: 1 for a model opened from a URL. */
int llm_model_is_remote(const llm_model *m);
/* llm_model_source: what the model was opened from: the path, or for a remote
 * model "URL#MODEL" with the model name resolved (borrowed).  This is what
 * ing_embedder_identity takes. */
const char *llm_model_source(const llm_model *m);

int llm_model_kind(const llm_model *m);
/* llm_model_desc: "llama 30L d576 q4_1, cpu/avx512, 2 threads" (borrowed). */
const char *llm_model_desc(const llm_model *m);
/* llm_model_backend_info: the backend's counters as one line into buf (on
 * CUDA: decode steps recorded and replayed as graphs); "" when it has none. */
void llm_model_backend_info(const llm_model *m, char *buf, size_t size);
int llm_n_ctx(const llm_model *m);      /* decoder context or encoder max positions */
int llm_n_vocab(const llm_model *m);

/* ---- tokens ------------------------------------------------------------ */

/* llm_tokenize: ids for text.  *ids is malloc'd (caller frees); DOC_EINVAL for
 * non-UTF-8 input (the message names the byte offset). */
int llm_tokenize(const llm_model *m, const char *text, size_t len, int add_special,
                 int parse_special, int32_t **ids, int *n, doc_err *err);
/* llm_token_bytes: the decoded bytes of one token (see tok_piece_bytes). */
int llm_token_bytes(const llm_model *m, int32_t id, char *out, int cap);
int llm_detokenize(const llm_model *m, const int32_t *ids, int n, buf *out);

/* ---- embeddings (encoders) ----------------------------------------------- */

int llm_embed_dim(const llm_model *m);
/* llm_embed: out (n, dim) = L2-normalised pooled embeddings of texts.  Inputs
 * longer than the model's maximum are truncated to it (as the reference does).
 * Batches of opts.batch sequences, padded per batch.  DOC_ECANCELLED if
 * *cancel becomes non-zero (cancel may be NULL). */
int llm_embed(llm_model *m, const char *const *texts, int n, float *out,
              const volatile int *cancel, doc_err *err);

/* ---- decoding (decoders) ----------------------------------------------- */

typedef struct llm_chat_msg {
    const char *role; /* "system", "user", "assistant" */
    const char *content;
} llm_chat_msg;

/* llm_chat_render: messages in the model's chat template (or the override);
 * add_assistant opens the assistant turn.  Appends to out.  A remote model
 * renders ChatML, for token counting only (its server applies its own
 * template to the messages llm_generate_chat sends). */
int llm_chat_render(const llm_model *m, const llm_chat_msg *msgs, int n, int add_assistant,
                    buf *out, doc_err *err);

typedef struct llm_sampling {
    float temperature;    /* 0: greedy */
    int top_k;            /* 0: off */
    float top_p;          /* 1: off */
    float min_p;          /* 0: off */
    float repeat_penalty; /* 1: off */
    int repeat_last_n;    /* window for the penalty (64) */
    uint64_t seed;
    int n_beams;          /* > 1: beam search (deterministic; ignores the samplers) */
    int max_tokens;       /* cap on generated tokens */
    const char *const *stop; /* stop strings (not included in the output) */
    int n_stop;
} llm_sampling;

void llm_sampling_default(llm_sampling *s); /* greedy, 256 tokens, no penalty */

typedef struct llm_gen_stats {
    int n_prompt, n_gen;
    double t_prompt, t_gen; /* seconds */
    int stop_reason;        /* LLM_STOP_* */
} llm_gen_stats;

/* LLM_STOP_INCOMPLETE: a remote stream ended before the server said it was
 * done; the text forwarded so far is a partial answer (the call fails). */
enum { LLM_STOP_EOS = 1, LLM_STOP_LENGTH, LLM_STOP_STRING, LLM_STOP_CANCELLED, LLM_STOP_CONTEXT,
       LLM_STOP_INCOMPLETE };

/* llm_token_cb: receives output text as it becomes final (whole UTF-8
 * characters; text that could still start a stop string is held back).  Return
 * non-zero to stop (cancellation). */
typedef int (*llm_text_cb)(void *ud, const char *text, size_t len);

/* llm_generate: tokenize prompt (special tokens parsed, BOS per the
 * tokenizer), prefill in one batched pass, then sample until EOS/EOT, a stop
 * string, max_tokens or the end of the context.  A prompt that does not fit in
 * the context is refused with DOC_ELIMIT naming both lengths; an empty prompt
 * with DOC_EINVAL. */
int llm_generate(llm_model *m, const char *prompt, const llm_sampling *s, llm_text_cb cb,
                 void *ud, llm_gen_stats *st, doc_err *err);

/* llm_generate_chat: answer a conversation.  Local models: llm_chat_render
 * (assistant turn opened) then llm_generate, exactly.  Remote models: POST
 * {base}/chat/completions with stream: true; the reply's text is forwarded
 * to cb as it arrives, stop strings are applied on this side too, and a
 * non-zero return from cb aborts the transfer (LLM_STOP_CANCELLED, rc 0).
 * Errors before any text are retried (see llm_remote_opts); never after.  A
 * stream cut before the server's end is DOC_EIO with st->stop_reason =
 * LLM_STOP_INCOMPLETE.  May be called from several threads on a remote model. */
int llm_generate_chat(llm_model *m, const llm_chat_msg *msgs, int n, const llm_sampling *s,
                      llm_text_cb cb, void *ud, llm_gen_stats *st, doc_err *err);

/* llm_count_tokens: tokens in text as a prompt would hold it (special-token
 * text counts as that token).  Local models: their tokenizer.  Remote models:
 * the tokenizer of llm_remote_opts.tokenizer, else the estimate
 * ceil(bytes / 3), which is above the true count for English text with every
 * common BPE vocabulary (about 4 bytes a token). */
int llm_count_tokens(const llm_model *m, const char *text, size_t len, int *n, doc_err *err);

/* Sessions: low-level decoding for tests and the server.  A session owns a KV
 * cache of n_ctx positions.  llm_session_eval appends n tokens and writes
 * logits: for the last token only (all=0; logits has n_vocab floats) or for
 * every token (all=1; n * n_vocab). */
int llm_session_new(llm_model *m, llm_session **out, doc_err *err);
void llm_session_free(llm_session **s);
int llm_session_eval(llm_session *s, const int32_t *ids, int n, int all, float *logits,
                     doc_err *err);
/* llm_sessions_step: one decode step for n distinct sessions of one model
 * (1 <= n <= 256) in a single pass: ids[i] is appended to ss[i] and logits
 * (n, n_vocab) receives each one's next-token logits.  Equal, up to the
 * order of float additions, to n calls of llm_session_eval(ss[i], &ids[i], 1,
 * 0, ...), and far cheaper than them: the weights are read once per step. */
int llm_sessions_step(llm_session *const *ss, const int32_t *ids, int n, float *logits,
                      doc_err *err);
/* llm_pick: how a row's next token is chosen, in the sampler's order
 * (sample.c): the repetition penalty over the row's recent ids (each distinct
 * id once: a positive logit divided by it, a negative one multiplied); then
 * the first maximum when temperature <= 0 or top_k == 1; else, with the
 * candidates ordered best first (ties: lower id first), the top_k best (0:
 * all), their probabilities softmax(logit / temperature) over those, the ones
 * of at least min_p times the best's (0: off), the fewest best whose mass
 * reaches top_p (off at 0 or 1), and of these the one where the running
 * total, best first, reaches u times their mass. */
typedef struct llm_pick {
    float penalty; /* 1 (or <= 0): none */
    float temperature;
    int top_k;
    float top_p, min_p;
    double u; /* the draw, in [0, 1) */
} llm_pick;

/* llm_step_row: one row of llm_sessions_step_rows */
typedef struct llm_step_row {
    llm_session *s;
    int32_t id;            /* the token appended to s */
    float *logits;         /* out: s's next-token logits (n_vocab); NULL: pick instead */
    const int32_t *recent; /* the pick's penalty applies to these ids */
    int n_recent;
    llm_pick pick;         /* zero: greedy, no penalty */
    int32_t next;          /* out when logits is NULL: the picked token */
} llm_step_row;
/* llm_sessions_step_rows: llm_sessions_step where each row chooses what comes
 * back: its logits, or its next token picked on the backend as row.pick says
 * (on a GPU only the ids cross to the host), equal to the sampler's choice
 * for the same draw. */
int llm_sessions_step_rows(llm_step_row *rows, int n, doc_err *err);
int llm_session_pos(const llm_session *s);
void llm_session_reset(llm_session *s);
/* llm_session_truncate: drop positions >= pos (used by beam search). */
int llm_session_truncate(llm_session *s, int pos);
/* llm_session_copy: make dst's cache and position equal to src's (same model). */
int llm_session_copy(llm_session *dst, const llm_session *src);

#endif
