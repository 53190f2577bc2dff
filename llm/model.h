/*
 * model.h - the model object shared by model.c, bert.c, llama.c, sample.c
 * (private to llm/).
 *
 * A model is its source (GGUF or HF directory, kept open: weights point into
 * its mapping), hyperparameters, a tokenizer, a backend, and weights prepared
 * for that backend.  1-D parameters (norms, biases) are converted to f32 once
 * and live in backend memory; they are released with the model.
 */
#ifndef DOCENT_LLM_MODEL_H
#define DOCENT_LLM_MODEL_H

#include "llm/internal.h"

enum { POOL_MEAN = 1, POOL_CLS = 2 };

typedef struct llm_hparams {
    int n_vocab, d, n_layer, n_head, n_head_kv, head_dim, n_ff, n_ctx_train;
    float norm_eps, rope_theta;
    int rope_neox;     /* 1: rotate halves (HF, Qwen2 GGUF); 0: adjacent pairs (llama GGUF) */
    int n_types;       /* bert token types */
    int pooling;       /* POOL_* */
    int max_seq;       /* encoder truncation length */
} llm_hparams;

typedef struct llm_layer {
    llm_weight wq, wk, wv, wo;            /* (d, h*hd) (d, g*hd) (d, g*hd) (h*hd, d): cols, rows */
    llm_weight w_gate, w_up, w_down;      /* (d, ff) (d, ff) (ff, d) */
    float *bq, *bk, *bv, *bo, *b_up, *b_down; /* optional biases */
    float *attn_norm, *attn_norm_b;       /* llama: pre-attention rmsnorm; bert: post-attention layernorm */
    float *ffn_norm, *ffn_norm_b;         /* llama: pre-ffn rmsnorm; bert: output layernorm */
} llm_layer;

struct llm_model {
    llm_source src;
    int kind;
    llm_hparams hp;
    llm_tokenizer *tok;
    llm_backend *be;
    llm_weight tok_embd, pos_embd, type_embd, output;
    float *embd_norm, *embd_norm_b; /* bert */
    float *out_norm;                /* llama */
    llm_layer *layers;
    float **vecs; /* every backend allocation of 1-D parameters, to release */
    int n_vecs, cap_vecs;
    llm_weight **weights; /* every prepared weight, to release */
    int n_weights, cap_weights;
    int chat;            /* CHAT_* */
    char *chat_system;   /* default system prompt the template inserts, or NULL */
    int n_ctx, batch;
    long mem_limit_mb;   /* opts.mem_limit_mb (model_plan) */
    int weights_f32;     /* opts.weights_f32: weights converted at load */
    void **owned;        /* host copies made at load (f32 weights), to free */
    int n_owned, cap_owned;
    char desc[256];
    struct llm_remote *remote; /* set for a model opened from a URL (remote.c); then
                                  only kind, n_ctx, batch, desc and src.path are set */
    struct llm_batcher *batcher; /* llm_model_set_parallel (batch.c), or NULL */
    struct llm_session *step;    /* llama.c: the decode step's activations, made at
                                    the first step (a session without a cache) */
    size_t kv_held;   /* llama.c: bytes of growing caches' memory, all sessions */
    size_t kv_budget; /* model_plan: what kv_held may reach (0: no limit) */
};

/* bert.c */
int bert_load(llm_model *m, doc_err *err);
/* bert_batch_bytes: backend bytes of the activations of a b x t batch */
size_t bert_batch_bytes(const llm_model *m, int b, int t);
int bert_embed(llm_model *m, const char *const *texts, int n, float *out,
               const volatile int *cancel, doc_err *err);

/* model.c: model_plan: the working memory of n_seq full-context sessions
 * (decoder) or one full batch (encoder), on top of the weights, must fit in
 * what the backend reports free (and mem_limit_mb); else DOC_ENOMEM with the
 * numbers.  At open with n_seq 1, and by llm_model_set_parallel. */
int model_plan(llm_model *m, int n_seq, doc_err *err);

/* llama.c */
int llama_load(llm_model *m, doc_err *err);
/* llama_session_bytes: backend bytes of a session of n_ctx positions (KV
 * cache and activations); *kv gets the cache's share */
size_t llama_session_bytes(const llm_model *m, int n_ctx, size_t *kv);
/* session_new_n: a session with a cache of n_ctx positions (<= the model's). */
int session_new_n(llm_model *m, int n_ctx, llm_session **out, doc_err *err);

/* batch.c: several threads generating on one decoder.  Without a batcher
 * (the default) each is the plain single-thread call. */
typedef struct llm_batcher llm_batcher;
void batch_free(llm_model *m);
/* batch_exec: hold (on=1) or release the backend around any other use of it
 * (session allocation, beam search's evaluations) */
void batch_exec(llm_model *m, int on);
/* batch_join: a sequence starts (on=1) or ends (0) its decode steps */
void batch_join(llm_model *m, int on);
/* batch_decode: append id to s, in one step with the other sequences
 * waiting, and choose the next token as smp would into *next: picked by the
 * step (on the backend when it picks: a GPU sends back only the id) */
typedef struct sampler sampler;
int batch_decode(llm_model *m, llm_session *s, int32_t id, sampler *smp, int32_t *next,
                 doc_err *err);
/* batch_prefill: append a prompt to s (logits for its last token) in chunks,
 * letting waiting decode steps run between them */
int batch_prefill(llm_model *m, llm_session *s, const int32_t *ids, int n, float *logits,
                  doc_err *err);

/* remote.c: models behind an OpenAI-compatible server */
int remote_is_url(const char *path);
int remote_open(llm_model *m, const char *url, const llm_opts *o, doc_err *err);
void remote_close(llm_model *m);
int remote_embed(llm_model *m, const char *const *texts, int n, float *out,
                 const volatile int *cancel, doc_err *err);
int remote_embed_dim(const llm_model *m);
const char *remote_source(const llm_model *m);

/* model.c helpers used by the loaders.  model_weight flags: */
enum {
    W_REQUIRED = 1,  /* a missing tensor is an error */
    W_ROWS_ONLY = 2, /* read by get_rows only (see llm_weight) */
    W_BF16 = 4,      /* hold an F32 tensor as BF16 (ignored with weights_f32) */
};
int model_weight(llm_model *m, const char *name, int64_t cols, int64_t rows, int flags,
                 llm_weight *w, doc_err *err);
int model_vec(llm_model *m, const char *name, int64_t n, int required, float **out, doc_err *err);

/* sample.c: sampling over host logits */
int sampler_new(const llm_sampling *s, int n_vocab, sampler **out);
void sampler_free(sampler **sp);
/* sampler_pick: choose the next token from logits (modified in place). */
int32_t sampler_pick(sampler *sp, float *logits);
void sampler_accept(sampler *sp, int32_t id);
/* sampler_row: row's recent ids and pick as sp would choose now (drawing u
 * from sp's generator when it samples), so the backend can choose for it */
void sampler_row(sampler *sp, llm_step_row *row);
/* penalize: the repetition penalty over recent (each distinct id once);
 * greedy_pick: that, then the first maximum (pick_row's greedy choice) */
void penalize(float *logits, int nv, const int32_t *recent, int n_recent, float penalty);
int32_t greedy_pick(float *logits, int nv, const int32_t *recent, int n_recent, float penalty);

#endif
