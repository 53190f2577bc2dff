/*
 * llm.h - docent's transformer engine, public API.
 *
 * A model is opened from a GGUF file or a Hugging Face directory and is either
 * an encoder (BERT family: embeddings) or a decoder (llama family: text
 * generation).  One model may be used from one thread at a time; open a second
 * model (the mapping is shared by the OS) for parallel use.
 */
#ifndef DOCENT_LLM_H
#define DOCENT_LLM_H

#include <stddef.h>
#include <stdint.h>

#include "core/core.h"

typedef struct llm_model llm_model;
typedef struct llm_session llm_session;

enum { LLM_ENCODER = 1, LLM_DECODER = 2 };

typedef struct llm_opts {
    int n_threads;             /* <= 0: all online CPUs */
    int n_ctx;                 /* decoder context; 0: min(model's, 4096) */
    const char *backend;       /* "auto" (default), "cpu", "cuda" */
    const char *chat_template; /* NULL: detect from metadata; else "chatml", "llama3", "llama2", "gemma" */
    int batch;                 /* encoder batch size; 0: 32 */
    int weights_f32;           /* 1: dequantize every weight to f32 at load (exact
                                  float math, no activation quantization; 4x the
                                  memory of Q8 weights; for verification) */
} llm_opts;

/* llm_model_open: load path (a .gguf file or a directory with config.json).
 * Every tensor the architecture needs is checked against the hyperparameters
 * before use.  Caller closes with llm_model_close. */
int llm_model_open(const char *path, const llm_opts *o, llm_model **out, doc_err *err);
void llm_model_close(llm_model **m);

int llm_model_kind(const llm_model *m);
/* llm_model_desc: "llama 30L d576 q4_1, cpu/avx512, 2 threads" (borrowed). */
const char *llm_model_desc(const llm_model *m);
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
 * add_assistant opens the assistant turn.  Appends to out. */
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

enum { LLM_STOP_EOS = 1, LLM_STOP_LENGTH, LLM_STOP_STRING, LLM_STOP_CANCELLED, LLM_STOP_CONTEXT };

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

/* Sessions: low-level decoding for tests and the server.  A session owns a KV
 * cache of n_ctx positions.  llm_session_eval appends n tokens and writes
 * logits: for the last token only (all=0; logits has n_vocab floats) or for
 * every token (all=1; n * n_vocab). */
int llm_session_new(llm_model *m, llm_session **out, doc_err *err);
void llm_session_free(llm_session **s);
int llm_session_eval(llm_session *s, const int32_t *ids, int n, int all, float *logits,
                     doc_err *err);
int llm_session_pos(const llm_session *s);
void llm_session_reset(llm_session *s);
/* llm_session_truncate: drop positions >= pos (used by beam search). */
int llm_session_truncate(llm_session *s, int pos);
/* llm_session_copy: make dst's cache and position equal to src's (same model). */
int llm_session_copy(llm_session *dst, const llm_session *src);

#endif
