/*
 * llama.c - llama-family decoder (Llama 2/3, SmolLM/SmolLM2, Mistral, Qwen2,
 * TinyLlama): weights and the forward pass over a session's KV cache.
 *
 * Forward for n new tokens at positions p..p+n-1 (pre-norm, GQA, SwiGLU):
 *   x = tok_embd[ids]
 *   per layer:  xb = rms(x)·attn_norm;  q = Wq xb (+bq);  k,v = Wk xb, Wv xb written
 *               straight into the cache rows p..p+n-1;  rope(q), rope(k);
 *               x += Wo · attn(q, K[0..p+n), V[0..p+n))
 *               xb = rms(x)·ffn_norm;  x += Wd · (silu(Wg xb) * (Wu xb))
 *   logits = W_out · rms(x)·out_norm   (W_out = tok_embd when tied)
 * A prompt is processed in chunks of UBATCH tokens; the session's activations
 * are sized once, at creation, for that chunk.
 *
 * The KV cache holds n_ctx positions.  On a backend without kv_reserve it is
 * allocated whole, layer by layer (L, c, g*hd): on the CPU only written pages
 * take memory.  With kv_reserve (CUDA) it is an address range laid out
 * position by position (c, L, g*hd), given memory in the backend's blocks as
 * the sequence reaches them (kv_ensure), so memory follows actual lengths.
 * Either way layer l of position p is at kc + l*lo + p*ldc.
 */
#include "llm/model.h"

#include "core/json.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define UBATCH 256

int llama_load(llm_model *m, doc_err *err)
{
    llm_hparams *hp = &m->hp;
    const int d = hp->d, ff = hp->n_ff, hd = hp->head_dim;
    const int qd = hp->n_head * hd, kvd = hp->n_head_kv * hd;
    int rc;
    if ((rc = model_vec(m, "output_norm.weight", d, 1, &m->out_norm, err)) ||
        (rc = model_weight(m, "output.weight", d, hp->n_vocab, 0, &m->output, err)))
        return rc;
    if (!m->output.data && m->src.hf &&
        json_is_false(json_object_get(hf_config(m->src.hf), "tie_word_embeddings")))
        return doc_errf(err, DOC_EFORMAT, "%s: missing tensor lm_head.weight (tie_word_embeddings is false)",
                        m->src.path);
    /* with a separate output matrix the embedding table is only gathered from */
    int emb = W_REQUIRED | (m->output.data ? W_ROWS_ONLY : 0);
    if ((rc = model_weight(m, "token_embd.weight", d, hp->n_vocab, emb, &m->tok_embd, err))) return rc;
    if (!m->output.data) m->output = m->tok_embd; /* tied embeddings (SmolLM2, Qwen2 small) */
    m->layers = calloc((size_t)hp->n_layer, sizeof *m->layers);
    if (!m->layers) return doc_errf(err, DOC_ENOMEM, "out of memory");
    for (int i = 0; i < hp->n_layer; i++) {
        llm_layer *L = &m->layers[i];
        char n[96];
#define W(field, nm, cols, rows)                                         \
    snprintf(n, sizeof n, "blk.%d.%s.weight", i, nm);                    \
    if ((rc = model_weight(m, n, cols, rows, 1, &L->field, err))) return rc
#define V(field, nm, kind, len, req)                                     \
    snprintf(n, sizeof n, "blk.%d.%s.%s", i, nm, kind);                  \
    if ((rc = model_vec(m, n, len, req, &L->field, err))) return rc
        V(attn_norm, "attn_norm", "weight", d, 1);
        W(wq, "attn_q", d, qd);
        W(wk, "attn_k", d, kvd);
        W(wv, "attn_v", d, kvd);
        W(wo, "attn_output", qd, d);
        V(bq, "attn_q", "bias", qd, 0); /* Qwen2 */
        V(bk, "attn_k", "bias", kvd, 0);
        V(bv, "attn_v", "bias", kvd, 0);
        V(ffn_norm, "ffn_norm", "weight", d, 1);
        W(w_gate, "ffn_gate", d, ff);
        W(w_up, "ffn_up", d, ff);
        W(w_down, "ffn_down", ff, d);
#undef W
#undef V
    }
    return DOC_OK;
}

/* ---- sessions ---------------------------------------------------------- */

struct llm_session {
    llm_model *m;
    int pos, n_ctx;
    float *kc, *vc;                 /* the caches, (L, c, g*hd) or (c, L, g*hd) */
    size_t lo, ldc;                 /* floats from layer to layer, position to position */
    int ready;                      /* positions with memory behind them */
    float *x, *xb, *q, *att, *hb, *hb2; /* (UBATCH, ...) activations */
    float *logits;                  /* (logits_rows, vocab) backend */
    int logits_rows;                /* grown on demand: most evaluations need one row */
    int32_t posv[UBATCH];
};

int llm_session_new(llm_model *m, llm_session **out, doc_err *err)
{
    if (m->remote) { /* remote models have no local decoding */
        *out = NULL;
        return doc_errf(err, DOC_EUNSUPPORTED, "%s: a remote model has no sessions", m->src.path);
    }
    return session_new_n(m, m->n_ctx, out, err);
}

size_t llama_session_bytes(const llm_model *m, int n_ctx, size_t *kv)
{
    const llm_hparams *hp = &m->hp;
    size_t kvd = (size_t)hp->n_head_kv * hp->head_dim, qd = (size_t)hp->n_head * hp->head_dim;
    size_t d = (size_t)hp->d, cache = 2 * (size_t)hp->n_layer * (size_t)n_ctx * kvd;
    size_t act = (size_t)UBATCH * (d + (qd > d ? qd : d) + 2 * qd + 2 * (size_t)hp->n_ff) + hp->n_vocab;
    if (kv) *kv = cache * sizeof(float);
    return (cache + act) * sizeof(float);
}

int session_new_n(llm_model *m, int n_ctx, llm_session **out, doc_err *err)
{
    *out = NULL;
    if (m->kind != LLM_DECODER)
        return doc_errf(err, DOC_ESTATE, "%s: generation needs a decoder model, this is an encoder",
                        m->src.path);
    const llm_hparams *hp = &m->hp;
    llm_backend *be = m->be;
    llm_session *s = calloc(1, sizeof *s);
    if (!s) return doc_errf(err, DOC_ENOMEM, "out of memory");
    s->m = m;
    s->n_ctx = n_ctx > 0 && n_ctx < m->n_ctx ? n_ctx : m->n_ctx;
    size_t kvd = (size_t)hp->n_head_kv * hp->head_dim, qd = (size_t)hp->n_head * hp->head_dim;
    size_t cache = (size_t)hp->n_layer * s->n_ctx * kvd;
    if (be->i->kv_reserve) {
        /* a prompt chunk's new keys and values wait in the FFN buffers */
        if (kvd > (size_t)hp->n_ff) {
            free(s);
            return doc_errf(err, DOC_EUNSUPPORTED, "%s: kv width %zu exceeds the ffn width %d",
                            m->src.path, kvd, hp->n_ff);
        }
        s->kc = be->i->kv_reserve(be, cache);
        s->vc = be->i->kv_reserve(be, cache);
        s->lo = kvd;
        s->ldc = (size_t)hp->n_layer * kvd;
    } else {
        s->kc = be->i->alloc(be, cache);
        s->vc = be->i->alloc(be, cache);
        s->lo = (size_t)s->n_ctx * kvd;
        s->ldc = kvd;
        s->ready = s->n_ctx;
    }
    s->x = be->i->alloc(be, (size_t)UBATCH * hp->d);
    s->xb = be->i->alloc(be, (size_t)UBATCH * (qd > (size_t)hp->d ? qd : (size_t)hp->d));
    s->q = be->i->alloc(be, (size_t)UBATCH * qd);
    s->att = be->i->alloc(be, (size_t)UBATCH * qd);
    s->hb = be->i->alloc(be, (size_t)UBATCH * hp->n_ff);
    s->hb2 = be->i->alloc(be, (size_t)UBATCH * hp->n_ff);
    s->logits = be->i->alloc(be, (size_t)hp->n_vocab);
    s->logits_rows = 1;
    if (!s->kc || !s->vc || !s->x || !s->xb || !s->q || !s->att || !s->hb || !s->hb2 || !s->logits) {
        double mb = llama_session_bytes(m, s->n_ctx, NULL) / 1048576.0;
        llm_session_free(&s);
        return doc_errf(err, DOC_ENOMEM, "cannot allocate a session of %d positions (%.0f MiB)",
                        n_ctx, mb);
    }
    *out = s;
    return DOC_OK;
}

/* kv_ensure: memory behind s's cache positions [0, upto) (a growing cache;
 * the model's kv_budget caps all sessions' together) */
static int kv_ensure(llm_session *s, int upto, doc_err *err)
{
    if (upto <= s->ready) return DOC_OK;
    llm_model *m = s->m;
    llm_backend *be = m->be;
    const double MB = 1048576.0;
    size_t per = s->ldc * sizeof(float) * 2; /* bytes of one position, keys and values */
    size_t more = (size_t)(upto - s->ready) * per;
    size_t held = __atomic_load_n(&m->kv_held, __ATOMIC_RELAXED);
    if (m->kv_budget && held + more > m->kv_budget)
        return doc_errf(err, DOC_ENOMEM,
                        "KV cache: %d more positions (%.1f MiB) would take the caches past the %.0f MiB "
                        "that [models] memory_limit_mb leaves them (%.0f MiB held); lower [daemon] "
                        "parallel or [models] context, or raise the limit",
                        upto - s->ready, more / MB, m->kv_budget / MB, held / MB);
    size_t rk = 0, rv = 0;
    doc_err e2 = {0};
    int rc = be->i->kv_grow(be, s->kc, (size_t)upto * s->ldc, &rk, &e2);
    if (!rc) rc = be->i->kv_grow(be, s->vc, (size_t)upto * s->ldc, &rv, &e2);
    if (rc)
        return doc_errf(err, rc, "KV cache: cannot grow a session to %d positions (%.0f MiB held by "
                        "this model's caches): %s", upto, held / MB, e2.msg);
    size_t r = (rk < rv ? rk : rv) / s->ldc;
    int now = r < (size_t)s->n_ctx ? (int)r : s->n_ctx;
    __atomic_add_fetch(&m->kv_held, (size_t)(now - s->ready) * per, __ATOMIC_RELAXED);
    s->ready = now;
    return DOC_OK;
}

void llm_session_free(llm_session **sp)
{
    llm_session *s = sp ? *sp : NULL;
    if (!s) return;
    llm_backend *be = s->m->be;
    if (be->i->kv_reserve && s->ready)
        __atomic_sub_fetch(&s->m->kv_held, (size_t)s->ready * s->ldc * sizeof(float) * 2,
                           __ATOMIC_RELAXED);
    float *bufs[] = {s->kc, s->vc, s->x, s->xb, s->q, s->att, s->hb, s->hb2, s->logits};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) be->i->release(be, bufs[i]);
    free(s);
    *sp = NULL;
}

int llm_session_pos(const llm_session *s) { return s->pos; }
void llm_session_reset(llm_session *s) { s->pos = 0; }

int llm_session_truncate(llm_session *s, int pos)
{
    if (pos < 0 || pos > s->pos) return DOC_EINVAL;
    s->pos = pos; /* rows past pos are simply overwritten later */
    return DOC_OK;
}

int llm_session_copy(llm_session *dst, const llm_session *src)
{
    if (dst->m != src->m || dst->n_ctx != src->n_ctx) return DOC_EINVAL;
    const llm_hparams *hp = &src->m->hp;
    llm_backend *be = src->m->be;
    size_t kvd = (size_t)hp->n_head_kv * hp->head_dim;
    doc_err e2;
    if (kv_ensure(dst, src->pos, &e2)) return DOC_ENOMEM;
    if (src->ldc != kvd) { /* position by position: the prefix is one block */
        be->i->copy(be, dst->kc, src->kc, (size_t)src->pos * src->ldc);
        be->i->copy(be, dst->vc, src->vc, (size_t)src->pos * src->ldc);
    } else {
        for (int l = 0; l < hp->n_layer; l++) {
            size_t off = (size_t)l * src->lo;
            be->i->copy(be, dst->kc + off, src->kc + off, (size_t)src->pos * kvd);
            be->i->copy(be, dst->vc + off, src->vc + off, (size_t)src->pos * kvd);
        }
    }
    dst->pos = src->pos;
    return DOC_OK;
}

/* logits_reserve: room for rows of logits in s (UBATCH at most) */
static int logits_reserve(llm_session *s, int rows, doc_err *err)
{
    if (rows <= s->logits_rows) return DOC_OK;
    llm_backend *be = s->m->be;
    float *p = be->i->alloc(be, (size_t)rows * s->m->hp.n_vocab);
    if (!p)
        return doc_errf(err, DOC_ENOMEM, "cannot allocate logits for %d tokens (%.0f MiB)", rows,
                        (double)rows * s->m->hp.n_vocab * 4 / 1048576.0);
    be->i->release(be, s->logits);
    s->logits = p;
    s->logits_rows = rows;
    return DOC_OK;
}

/* the layer's attention inputs for n rows of s->x: q into s->q, the new keys
 * and values into kn, vn (n, g*hd), roped at s->posv */
static void layer_qkv(llm_session *s, const llm_layer *L, int n, float *kn, float *vn)
{
    llm_backend *be = s->m->be;
    const llm_backend_i *op = be->i;
    const llm_hparams *hp = &s->m->hp;
    op->rmsnorm(be, s->xb, s->x, L->attn_norm, n, hp->d, hp->norm_eps);
    op->matmul(be, s->q, s->xb, &L->wq, L->bq, n); /* (n, h*hd) */
    op->matmul(be, kn, s->xb, &L->wk, L->bk, n);
    op->matmul(be, vn, s->xb, &L->wv, L->bv, n);
    op->rope(be, s->q, n, hp->n_head, hp->head_dim, s->posv, hp->rope_theta, hp->rope_neox);
    op->rope(be, kn, n, hp->n_head_kv, hp->head_dim, s->posv, hp->rope_theta, hp->rope_neox);
}

/* the rest of the layer for n rows: x += Wo att; x += Wd (silu(Wg xb) * Wu xb)
 * with xb = rms(x) */
static void layer_out_ffn(llm_session *s, const llm_layer *L, int n)
{
    llm_backend *be = s->m->be;
    const llm_backend_i *op = be->i;
    const llm_hparams *hp = &s->m->hp;
    const int d = hp->d;
    op->matmul(be, s->xb, s->att, &L->wo, NULL, n); /* (n, d) */
    op->add(be, s->x, s->x, s->xb, (size_t)n * d);
    op->rmsnorm(be, s->xb, s->x, L->ffn_norm, n, d, hp->norm_eps);
    op->matmul(be, s->hb, s->xb, &L->w_gate, NULL, n); /* (n, ff) */
    op->matmul(be, s->hb2, s->xb, &L->w_up, NULL, n);
    op->swiglu(be, s->hb, s->hb, s->hb2, (size_t)n * hp->n_ff);
    op->matmul(be, s->xb, s->hb, &L->w_down, NULL, n);
    op->add(be, s->x, s->x, s->xb, (size_t)n * d);
}

/* one chunk of n <= UBATCH tokens; logits for the last row, or all rows */
static void forward_chunk(llm_session *s, const int32_t *ids, int n, int all)
{
    llm_model *m = s->m;
    llm_backend *be = m->be;
    const llm_backend_i *op = be->i;
    const llm_hparams *hp = &m->hp;
    const int d = hp->d, h = hp->n_head, g = hp->n_head_kv, hd = hp->head_dim;
    const size_t kvd = (size_t)g * hd;
    const float scale = 1.0f / sqrtf((float)hd);
    for (int i = 0; i < n; i++) s->posv[i] = s->pos + i;

    op->get_rows(be, s->x, &m->tok_embd, ids, n);                            /* (n, d) */
    for (int l = 0; l < hp->n_layer; l++) {
        const llm_layer *L = &m->layers[l];
        float *kc = s->kc + (size_t)l * s->lo, *vc = s->vc + (size_t)l * s->lo;
        if (s->ldc == kvd) { /* the new keys and values go straight into the cache rows */
            layer_qkv(s, L, n, kc + (size_t)s->pos * kvd, vc + (size_t)s->pos * kvd);
            op->attn_causal(be, s->att, s->q, kc, vc, kvd, NULL, NULL, n, s->pos, h, g, hd, scale);
        } else { /* through the FFN buffers, stored by the attention op */
            layer_qkv(s, L, n, s->hb, s->hb2);
            op->attn_causal(be, s->att, s->q, kc, vc, s->ldc, s->hb, s->hb2, n, s->pos, h, g, hd,
                            scale);
        }
        layer_out_ffn(s, L, n);
    }
    int first = all ? 0 : n - 1, rows = all ? n : 1;
    float *xr = s->x + (size_t)first * d;
    op->rmsnorm(be, s->xb, xr, m->out_norm, rows, d, hp->norm_eps);
    op->matmul(be, s->logits, s->xb, &m->output, NULL, rows);                 /* (rows, vocab) */
    s->pos += n;
}

/*
 * One decode step for n sessions of one model at once (continuous batching):
 * token ids[i] is appended to ss[i] (the caller advances their positions).
 * The n rows share every weight matmul; rope takes each row's own position,
 * and each row attends over its own session's cache.  The batch lives in the
 * model's step buffers (m->step: the same buffers every step, so a backend
 * may replay the step as a graph); their FFN part holds the new keys and
 * values until attention stores them in the caches (n * g*hd <= UBATCH * ff
 * is checked).
 */
static void forward_step(llm_session *const *ss, const int32_t *ids, int n)
{
    llm_model *m = ss[0]->m;
    llm_session *s = m->step;
    llm_backend *be = m->be;
    const llm_backend_i *op = be->i;
    const llm_hparams *hp = &m->hp;
    const int d = hp->d, h = hp->n_head, g = hp->n_head_kv, hd = hp->head_dim;
    const size_t kvd = (size_t)g * hd, qd = (size_t)h * hd;
    const float scale = 1.0f / sqrtf((float)hd);
    float *kn = s->hb, *vn = s->hb2; /* (n, g*hd) */
    float *kcs[UBATCH], *vcs[UBATCH]; /* each row's cache of the layer */
    const size_t ldc = ss[0]->ldc;    /* one layout for all of a model's sessions */
    for (int i = 0; i < n; i++) s->posv[i] = ss[i]->pos;

    op->get_rows(be, s->x, &m->tok_embd, ids, n);
    for (int l = 0; l < hp->n_layer; l++) {
        const llm_layer *L = &m->layers[l];
        layer_qkv(s, L, n, kn, vn);
        for (int i = 0; i < n; i++) {
            kcs[i] = ss[i]->kc + (size_t)l * ss[i]->lo;
            vcs[i] = ss[i]->vc + (size_t)l * ss[i]->lo;
        }
        if (op->attn_decode) {
            op->attn_decode(be, s->att, s->q, kcs, vcs, ldc, s->posv, kn, vn, n, h, g, hd, scale);
        } else {
            for (int i = 0; i < n; i++)
                op->attn_causal(be, s->att + i * qd, s->q + i * qd, kcs[i], vcs[i], ldc, kn + i * kvd,
                                vn + i * kvd, 1, s->posv[i], h, g, hd, scale);
        }
        layer_out_ffn(s, L, n); /* kn, vn (the FFN buffers) are in the caches by now */
    }
    op->rmsnorm(be, s->xb, s->x, m->out_norm, n, d, hp->norm_eps);
    op->matmul(be, s->logits, s->xb, &m->output, NULL, n); /* (n, vocab) */
}

/* step_picks: the picks of the rows without a logits buffer, from the
 * step's logits (n rows of m->step->logits), by the backend's pick op */
static int step_picks(llm_model *m, llm_step_row *rows, int n, doc_err *err)
{
    llm_backend *be = m->be;
    const int nv = m->hp.n_vocab;
    float *lg = m->step->logits;
    int rc;
    int rmax = 0;
    for (int i = 0; i < n; i++)
        if (!rows[i].logits && rows[i].n_recent > rmax) rmax = rows[i].n_recent;
    int32_t *recent = malloc(((size_t)n * (rmax ? rmax : 1) + 2 * (size_t)n) * sizeof *recent);
    llm_pick *pk = malloc((size_t)n * sizeof *pk);
    if (!recent || !pk) {
        free(recent);
        free(pk);
        return doc_errf(err, DOC_ENOMEM, "out of memory");
    }
    int32_t *nrec = recent + (size_t)n * (rmax ? rmax : 1), *next = nrec + n;
    for (int i = 0; i < n; i++) { /* rows that return logits are picked too, greedily */
        int k = rows[i].logits ? 0 : rows[i].n_recent;
        if (k) memcpy(recent + (size_t)i * rmax, rows[i].recent, (size_t)k * sizeof *recent);
        nrec[i] = k;
        pk[i] = rows[i].logits ? (llm_pick){.penalty = 1.0f} : rows[i].pick;
    }
    rc = be->i->pick(be, next, lg, n, nv, recent, nrec, rmax, pk, err);
    for (int i = 0; i < n && !rc; i++)
        if (!rows[i].logits) rows[i].next = next[i];
    free(recent);
    free(pk);
    return rc;
}

int llm_sessions_step_rows(llm_step_row *rows, int n, doc_err *err)
{
    if (n <= 0 || n > UBATCH)
        return doc_errf(err, DOC_EINVAL, "a decode step takes 1 to %d sessions, not %d", UBATCH, n);
    llm_model *m = rows[0].s->m;
    const llm_hparams *hp = &m->hp;
    const size_t nv = (size_t)hp->n_vocab;
    if ((size_t)n * hp->n_head_kv * hp->head_dim > (size_t)UBATCH * hp->n_ff)
        return doc_errf(err, DOC_EUNSUPPORTED, "%s: kv width %d exceeds the ffn width %d",
                        m->src.path, hp->n_head_kv * hp->head_dim, hp->n_ff);
    llm_session *ss[UBATCH];
    int32_t ids[UBATCH];
    for (int i = 0; i < n; i++) {
        ss[i] = rows[i].s;
        ids[i] = rows[i].id;
        if (ss[i]->m != m)
            return doc_errf(err, DOC_EINVAL, "decode step: session %d belongs to another model", i);
        for (int j = 0; j < i; j++)
            if (ss[j] == ss[i])
                return doc_errf(err, DOC_EINVAL, "decode step: session %d appears twice (%d and %d)",
                                i, j, i);
        if (ss[i]->pos >= ss[i]->n_ctx)
            return doc_errf(err, DOC_ELIMIT, "decode step: session %d is full (%d positions)", i,
                            ss[i]->n_ctx);
        if (ids[i] < 0 || ids[i] >= hp->n_vocab)
            return doc_errf(err, DOC_EINVAL, "token id %d at %d is outside the vocabulary (%d)",
                            ids[i], i, hp->n_vocab);
        if (!rows[i].logits && rows[i].n_recent && !rows[i].recent)
            return doc_errf(err, DOC_EINVAL, "decode step: row %d has %d recent ids but no array", i,
                            rows[i].n_recent);
        const llm_pick *pk = &rows[i].pick;
        if (!rows[i].logits && pk->temperature > 0 &&
            !(pk->u >= 0 && pk->u < 1 && pk->top_k >= 0 && pk->top_p >= 0 && pk->top_p <= 1 &&
              pk->min_p >= 0 && pk->min_p <= 1 && pk->temperature < INFINITY))
            return doc_errf(err, DOC_EINVAL,
                            "decode step: row %d's pick is out of range (need 0 <= u < 1, top_k >= 0, "
                            "0 <= top_p, min_p <= 1, a finite temperature)", i);
    }
    llm_backend *be = m->be;
    int rc;
    for (int i = 0; i < n; i++)
        if ((rc = kv_ensure(ss[i], ss[i]->pos + 1, err))) return rc;
    if (!m->step && (rc = session_new_n(m, 1, &m->step, err))) return rc;
    if ((rc = logits_reserve(m->step, n, err))) return rc;
    if (be->i->graph_begin) { /* the same key, the same ops on the same buffers */
        be->i->graph_begin(be, (uint64_t)n);
        forward_step(ss, ids, n);
        rc = be->i->graph_end(be, err);
        if (rc == LLM_GRAPH_RERUN) {
            forward_step(ss, ids, n);
            rc = DOC_OK;
        }
        if (rc) return rc;
    } else {
        forward_step(ss, ids, n);
    }
    /* logits where asked for, runs of adjacent rows in one copy */
    int picks = 0;
    for (int i = 0; i < n;) {
        if (!rows[i].logits) {
            picks++, i++;
            continue;
        }
        int j = i + 1;
        while (j < n && rows[j].logits == rows[j - 1].logits + nv) j++;
        rc = be->i->download(be, rows[i].logits, m->step->logits + i * nv, (size_t)(j - i) * nv);
        if (rc) return doc_errf(err, rc, "logits download failed");
        i = j;
    }
    if (picks && (rc = step_picks(m, rows, n, err))) return rc;
    if ((rc = be->i->sync(be, err))) return rc;
    for (int i = 0; i < n; i++) ss[i]->pos++;
    return DOC_OK;
}

int llm_sessions_step(llm_session *const *ss, const int32_t *ids, int n, float *logits,
                      doc_err *err)
{
    if (n <= 0 || n > UBATCH)
        return doc_errf(err, DOC_EINVAL, "a decode step takes 1 to %d sessions, not %d", UBATCH, n);
    llm_step_row rows[UBATCH];
    size_t nv = (size_t)ss[0]->m->hp.n_vocab;
    for (int i = 0; i < n; i++) rows[i] = (llm_step_row){.s = ss[i], .id = ids[i], .logits = logits + i * nv};
    return llm_sessions_step_rows(rows, n, err);
}

int llm_session_eval(llm_session *s, const int32_t *ids, int n, int all, float *logits,
                     doc_err *err)
{
    const llm_hparams *hp = &s->m->hp;
    if (n <= 0) return doc_errf(err, DOC_EINVAL, "nothing to evaluate (0 tokens)");
    if (n > s->n_ctx - s->pos)
        return doc_errf(err, DOC_ELIMIT, "%d tokens do not fit: %d of the context's %d positions are used",
                        n, s->pos, s->n_ctx);
    for (int i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= hp->n_vocab)
            return doc_errf(err, DOC_EINVAL, "token id %d at %d is outside the vocabulary (%d)", ids[i],
                            i, hp->n_vocab);
    llm_backend *be = s->m->be;
    if (n == 1 && !all && be->i->graph_begin) /* a decode step the backend can replay */
        return llm_sessions_step(&s, ids, 1, logits, err);
    int rc = logits_reserve(s, all ? (n < UBATCH ? n : UBATCH) : 1, err);
    if (rc || (rc = kv_ensure(s, s->pos + n, err))) return rc;
    for (int done = 0; done < n;) {
        int c = n - done < UBATCH ? n - done : UBATCH;
        forward_chunk(s, ids + done, c, all);
        if (all) {
            rc = be->i->download(be, logits + (size_t)done * hp->n_vocab, s->logits,
                                 (size_t)c * hp->n_vocab);
            if (rc) return doc_errf(err, rc, "logits download failed");
        }
        done += c;
    }
    if (!all) {
        rc = be->i->download(be, logits, s->logits, (size_t)hp->n_vocab);
        if (rc) return doc_errf(err, rc, "logits download failed");
    }
    return be->i->sync(be, err);
}
