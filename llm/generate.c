/*
 * generate.c - text generation: prompt -> tokens -> prefill -> sample/beam
 * search -> streamed text with stop strings.
 *
 * Streaming contract (llm_text_cb): text is passed on only when it is final:
 * whole UTF-8 characters, and never a tail that could still become the start
 * of a stop string.  A stop string ends generation and is not passed on.
 */
#include "llm/model.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- output: pending text, stop strings, UTF-8 boundaries -------------- */

typedef struct emitter {
    buf pending;
    const llm_sampling *s;
    llm_text_cb cb;
    void *ud;
    int stopped;   /* a stop string was seen */
    int cancelled; /* the callback asked to stop */
} emitter;

/* bytes at the end of p[0..n) that are an incomplete UTF-8 sequence */
static size_t utf8_tail(const char *p, size_t n)
{
    for (size_t back = 1; back <= 3 && back <= n; back++) {
        unsigned char c = (unsigned char)p[n - back];
        if ((c & 0xC0) == 0x80) continue; /* continuation: look further back */
        size_t need = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
        return need > back ? back : 0;
    }
    return 0;
}

static void emit(emitter *e, size_t n)
{
    if (n == 0 || e->cancelled) return;
    if (e->cb && e->cb(e->ud, e->pending.data, n)) e->cancelled = 1;
    memmove(e->pending.data, e->pending.data + n, e->pending.len - n);
    e->pending.len -= n;
    e->pending.data[e->pending.len] = 0;
}

/* emitter_push: add bytes; pass on what is final.  Returns 1 when a stop string
 * ended the text or the callback cancelled. */
static int emitter_push(emitter *e, const char *p, size_t n)
{
    if (buf_append(&e->pending, p, n)) return e->cancelled = 1;
    const char *d = e->pending.data;
    size_t len = e->pending.len, hold = 0;
    for (int i = 0; i < e->s->n_stop; i++) {
        const char *st = e->s->stop[i];
        size_t sl = strlen(st);
        if (!sl) continue;
        const char *hit = memmem(d, len, st, sl);
        if (hit) {
            emit(e, (size_t)(hit - d));
            e->stopped = 1;
            return 1;
        }
        for (size_t k = sl - 1; k > hold; k--) /* longest suffix that prefixes st */
            if (k <= len && !memcmp(d + len - k, st, k)) {
                hold = k;
                break;
            }
    }
    size_t t = utf8_tail(d, len);
    if (t > hold) hold = t;
    emit(e, len - hold);
    return e->cancelled;
}

static void emitter_flush(emitter *e)
{
    if (!e->stopped) emit(e, e->pending.len);
}

/* ---- end of generation ------------------------------------------------- */

static int is_eog(const llm_model *m, int32_t id)
{
    static const char *const ends[] = {"<|im_end|>", "<|eot_id|>", "<|end_of_text|>", "</s>",
                                       "<end_of_turn>", "<|endoftext|>", "<|end|>"};
    const tok_special *sp = tok_specials(m->tok);
    if (id == sp->eos || id == sp->eot) return 1;
    if (!tok_is_special(m->tok, id)) return 0;
    const char *t = tok_text(m->tok, id);
    for (size_t i = 0; t && i < sizeof ends / sizeof ends[0]; i++)
        if (!strcmp(t, ends[i])) return 1;
    return 0;
}

static int push_token(const llm_model *m, emitter *e, int32_t id)
{
    char piece[256];
    int n = tok_piece_bytes(m->tok, id, 0, piece, sizeof piece);
    if (n < 0) return 0;
    if (n > (int)sizeof piece) n = (int)sizeof piece;
    return emitter_push(e, piece, (size_t)n);
}

/* ---- beam search ------------------------------------------------------- */

typedef struct beam {
    llm_session *sess;
    int32_t *toks;
    int n, done;
    double score; /* sum of log-probabilities */
    float *logits;
} beam;

typedef struct {
    double score;
    int parent;
    int32_t tok; /* -1: the parent itself, already finished */
} beam_cand;

static double beam_norm(double score, int n) { return n > 0 ? score / n : score; }

static int cand_desc(const void *a, const void *b)
{
    const beam_cand *x = a, *y = b;
    return x->score < y->score ? 1 : x->score > y->score ? -1 : 0;
}

static int beam_search(llm_model *m, llm_session *root, const float *root_logits,
                       const llm_sampling *s, int n_prompt, emitter *e, llm_gen_stats *st,
                       doc_err *err)
{
    const int B = s->n_beams, nv = m->hp.n_vocab, maxt = s->max_tokens;
    int ctx = n_prompt + maxt;
    int rc = DOC_OK;
    beam *cur = calloc((size_t)B, sizeof *cur), *nxt = calloc((size_t)B, sizeof *nxt);
    beam_cand *cands = malloc((size_t)B * B * sizeof *cands + sizeof *cands * B);
    float *lp = malloc((size_t)nv * sizeof *lp);
    if (!cur || !nxt || !cands || !lp) {
        rc = doc_errf(err, DOC_ENOMEM, "out of memory for %d beams", B);
        goto done;
    }
    for (int i = 0; i < B; i++) {
        batch_exec(m, 1);
        if (!(rc = session_new_n(m, ctx, &cur[i].sess, err))) rc = session_new_n(m, ctx, &nxt[i].sess, err);
        batch_exec(m, 0);
        if (rc) goto done;
        cur[i].toks = malloc((size_t)(maxt + 1) * sizeof(int32_t));
        nxt[i].toks = malloc((size_t)(maxt + 1) * sizeof(int32_t));
        cur[i].logits = malloc((size_t)nv * sizeof(float));
        nxt[i].logits = malloc((size_t)nv * sizeof(float));
        if (!cur[i].toks || !nxt[i].toks || !cur[i].logits || !nxt[i].logits) {
            rc = doc_errf(err, DOC_ENOMEM, "out of memory for %d beams", B);
            goto done;
        }
    }
    batch_exec(m, 1);
    llm_session_copy(cur[0].sess, root);
    batch_exec(m, 0);
    memcpy(cur[0].logits, root_logits, (size_t)nv * sizeof(float));
    int alive = 1; /* beams in use */
    for (int step = 0; step < maxt; step++) {
        int nc = 0, any_open = 0;
        for (int b = 0; b < alive; b++) {
            if (cur[b].done) {
                cands[nc++] = (beam_cand){beam_norm(cur[b].score, cur[b].n), b, -1};
                continue;
            }
            any_open = 1;
            /* log-softmax, then the B best tokens of this beam */
            const float *lg = cur[b].logits;
            float mx = lg[0];
            for (int i = 1; i < nv; i++) mx = lg[i] > mx ? lg[i] : mx;
            double z = 0;
            for (int i = 0; i < nv; i++) z += exp((double)lg[i] - mx);
            double lz = mx + log(z);
            for (int i = 0; i < nv; i++) lp[i] = (float)(lg[i] - lz);
            for (int k = 0; k < B; k++) {
                int best = -1;
                for (int i = 0; i < nv; i++)
                    if (lp[i] > -INFINITY && (best < 0 || lp[i] > lp[best])) best = i;
                if (best < 0) break;
                double sc = cur[b].score + lp[best];
                cands[nc++] = (beam_cand){beam_norm(sc, cur[b].n + 1), b, best};
                lp[best] = -INFINITY;
            }
        }
        if (!any_open) break;
        qsort(cands, (size_t)nc, sizeof *cands, cand_desc);
        int nb = nc < B ? nc : B;
        for (int i = 0; i < nb; i++) {
            const beam *p = &cur[cands[i].parent];
            beam *q = &nxt[i];
            memcpy(q->toks, p->toks, (size_t)p->n * sizeof(int32_t));
            q->n = p->n;
            q->score = p->score;
            q->done = p->done;
            if (cands[i].tok < 0) {
                memcpy(q->logits, p->logits, (size_t)nv * sizeof(float));
                continue;
            }
            int32_t t = cands[i].tok;
            q->score = cands[i].score * (p->n + 1); /* undo the normalisation */
            if (is_eog(m, t)) {
                q->done = 1;
                continue;
            }
            q->toks[q->n++] = t;
            batch_exec(m, 1);
            llm_session_copy(q->sess, p->sess);
            rc = llm_session_eval(q->sess, &t, 1, 0, q->logits, err);
            batch_exec(m, 0);
            if (rc) goto done;
            st->n_gen++;
        }
        for (int i = 0; i < nb; i++) { /* swap generations */
            beam t = cur[i];
            cur[i] = nxt[i];
            nxt[i] = t;
        }
        alive = nb;
        if (e->cb && e->cb(e->ud, "", 0)) { /* let the caller cancel between steps */
            e->cancelled = 1;
            break;
        }
    }
    /* best beam by normalised score */
    int best = 0;
    for (int b = 1; b < alive; b++)
        if (beam_norm(cur[b].score, cur[b].n) > beam_norm(cur[best].score, cur[best].n)) best = b;
    st->stop_reason = cur[best].done ? LLM_STOP_EOS : LLM_STOP_LENGTH;
    for (int i = 0; i < cur[best].n && !e->cancelled; i++)
        if (push_token(m, e, cur[best].toks[i])) break;
done:
    batch_exec(m, 1);
    for (int i = 0; i < B; i++) {
        if (cur) {
            llm_session_free(&cur[i].sess);
            free(cur[i].toks);
            free(cur[i].logits);
        }
        if (nxt) {
            llm_session_free(&nxt[i].sess);
            free(nxt[i].toks);
            free(nxt[i].logits);
        }
    }
    batch_exec(m, 0);
    free(cur);
    free(nxt);
    free(cands);
    free(lp);
    return rc;
}

/* ---- llm_generate ------------------------------------------------------ */

int llm_generate(llm_model *m, const char *prompt, const llm_sampling *s_in, llm_text_cb cb,
                 void *ud, llm_gen_stats *st_out, doc_err *err)
{
    llm_sampling s;
    if (s_in) s = *s_in;
    else llm_sampling_default(&s);
    llm_gen_stats st = {0};
    int rc = DOC_OK, n = 0, joined = 0;
    int32_t *ids = NULL;
    float *logits = NULL;
    llm_session *sess = NULL;
    sampler *smp = NULL;
    emitter e = {.s = &s, .cb = cb, .ud = ud};
    buf_init(&e.pending, 1 << 20);

    if (m->kind != LLM_DECODER) {
        rc = doc_errf(err, DOC_ESTATE, "%s: generation needs a decoder model, this is an encoder", m->src.path);
        goto done;
    }
    if (m->remote) {
        rc = doc_errf(err, DOC_EUNSUPPORTED, "%s: a remote model takes messages (llm_generate_chat), not a prompt",
                      m->src.path);
        goto done;
    }
    if (!prompt || !*prompt) {
        rc = doc_errf(err, DOC_EINVAL, "empty prompt");
        goto done;
    }
    if (s.max_tokens < 0 || s.n_beams < 0 || s.n_beams > 16 || s.top_p < 0 || s.top_p > 1 ||
        s.min_p < 0 || s.min_p > 1 || s.temperature < 0 || s.top_k < 0) {
        rc = doc_errf(err, DOC_EINVAL,
                      "bad sampling settings (need max_tokens >= 0, 1 <= beams <= 16, 0 <= top_p, min_p <= 1, temperature >= 0, top_k >= 0)");
        goto done;
    }
    if ((rc = llm_tokenize(m, prompt, strlen(prompt), 1, 1, &ids, &n, err))) goto done;
    if (n == 0) {
        rc = doc_errf(err, DOC_EINVAL, "prompt gives no tokens");
        goto done;
    }
    if (n >= m->n_ctx) {
        rc = doc_errf(err, DOC_ELIMIT,
                      "prompt of %d tokens does not fit in the context of %d tokens (room for at least one more is needed)",
                      n, m->n_ctx);
        goto done;
    }
    st.n_prompt = n;
    int ctx = n + (s.max_tokens > 0 ? s.max_tokens : 1);
    batch_exec(m, 1);
    rc = session_new_n(m, ctx, &sess, err);
    batch_exec(m, 0);
    if (rc) goto done;
    logits = malloc((size_t)m->hp.n_vocab * sizeof *logits);
    if (!logits || sampler_new(&s, m->hp.n_vocab, &smp)) {
        rc = doc_errf(err, DOC_ENOMEM, "out of memory");
        goto done;
    }
    for (int i = 0; i < n; i++) sampler_accept(smp, ids[i]);
    double t0 = time_now();
    if ((rc = batch_prefill(m, sess, ids, n, logits, err))) goto done;
    double t1 = time_now();
    st.t_prompt = t1 - t0;
    if (s.n_beams > 1) {
        rc = beam_search(m, sess, logits, &s, n, &e, &st, err);
    } else {
        st.stop_reason = LLM_STOP_LENGTH;
        batch_join(m, 1);
        joined = 1;
        int32_t id = s.max_tokens > 0 ? sampler_pick(smp, logits) : 0;
        for (int i = 0; i < s.max_tokens; i++) {
            if (is_eog(m, id)) {
                st.stop_reason = LLM_STOP_EOS;
                break;
            }
            sampler_accept(smp, id);
            st.n_gen++;
            if (push_token(m, &e, id)) break;
            if (i + 1 == s.max_tokens) break;
            if (llm_session_pos(sess) >= ctx) {
                st.stop_reason = LLM_STOP_CONTEXT;
                break;
            }
            /* the next id, picked by the step (a GPU sends back only ids) */
            if ((rc = batch_decode(m, sess, id, smp, &id, err))) goto done;
        }
    }
    st.t_gen = time_now() - t1;
    if (e.stopped) st.stop_reason = LLM_STOP_STRING;
    if (e.cancelled && !e.stopped) st.stop_reason = LLM_STOP_CANCELLED;
    emitter_flush(&e);
done:
    if (joined) batch_join(m, 0);
    if (st_out) *st_out = st;
    buf_free(&e.pending);
    sampler_free(&smp);
    batch_exec(m, 1);
    llm_session_free(&sess);
    batch_exec(m, 0);
    free(logits);
    free(ids);
    return rc;
}
