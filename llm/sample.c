/*
 * sample.c - choosing the next token from logits.
 *
 * Order (as in the common llama.cpp-style chains): repetition penalty over the
 * last repeat_last_n tokens, then greedy when temperature is 0, else top-k,
 * top-p, min-p on the sorted candidates, temperature, softmax and a draw from
 * a seeded generator (splitmix64/xorshift: same seed, same output).
 * The sampler owns its candidate array (n_vocab entries, allocated once).
 */
#include "llm/model.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    float logit;
    int32_t id;
} cand;

struct sampler {
    llm_sampling s;
    int n_vocab;
    cand *c;
    int32_t *recent; /* ring of the last repeat_last_n accepted ids */
    int n_recent, head;
    uint64_t rng;
};

static uint64_t next_u64(uint64_t *x)
{
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

void llm_sampling_default(llm_sampling *s)
{
    memset(s, 0, sizeof *s);
    s->temperature = 0.0f;
    s->top_p = 1.0f;
    s->repeat_penalty = 1.0f;
    s->repeat_last_n = 64;
    s->max_tokens = 256;
    s->n_beams = 1;
}

int sampler_new(const llm_sampling *s, int n_vocab, sampler **out)
{
    *out = NULL;
    sampler *sp = calloc(1, sizeof *sp);
    if (!sp) return DOC_ENOMEM;
    sp->s = *s;
    sp->n_vocab = n_vocab;
    if (sp->s.repeat_last_n < 0) sp->s.repeat_last_n = 0;
    sp->c = malloc((size_t)n_vocab * sizeof *sp->c);
    sp->recent = malloc((size_t)(sp->s.repeat_last_n + 1) * sizeof *sp->recent);
    if (!sp->c || !sp->recent) {
        sampler_free(&sp);
        return DOC_ENOMEM;
    }
    sp->rng = s->seed;
    *out = sp;
    return DOC_OK;
}

void sampler_free(sampler **spp)
{
    sampler *sp = spp ? *spp : NULL;
    if (!sp) return;
    free(sp->c);
    free(sp->recent);
    free(sp);
    *spp = NULL;
}

void sampler_accept(sampler *sp, int32_t id)
{
    int w = sp->s.repeat_last_n;
    if (w <= 0) return;
    sp->recent[sp->head] = id;
    sp->head = (sp->head + 1) % w;
    if (sp->n_recent < w) sp->n_recent++;
}

static int by_logit_desc(const void *a, const void *b)
{
    const cand *x = a, *y = b;
    if (x->logit != y->logit) return x->logit < y->logit ? 1 : -1;
    return x->id - y->id;
}

void penalize(float *logits, int nv, const int32_t *recent, int n_recent, float penalty)
{
    if (penalty == 1.0f || !(penalty > 0)) return;
    for (int i = 0; i < n_recent; i++) {
        int32_t id = recent[i];
        /* each distinct id once: skip if it appeared earlier in the list */
        int seen = 0;
        for (int j = 0; j < i && !seen; j++) seen = recent[j] == id;
        if (seen || id < 0 || id >= nv) continue;
        logits[id] = logits[id] > 0 ? logits[id] / penalty : logits[id] * penalty;
    }
}

int32_t greedy_pick(float *logits, int nv, const int32_t *recent, int n_recent, float penalty)
{
    penalize(logits, nv, recent, n_recent, penalty);
    int32_t best = 0;
    for (int i = 1; i < nv; i++)
        if (logits[i] > logits[best]) best = i;
    return best;
}

int sampler_greedy(const sampler *sp, const int32_t **recent, int *n_recent, float *penalty)
{
    *recent = sp->recent;
    *n_recent = sp->n_recent;
    *penalty = sp->s.repeat_penalty;
    return sp->s.temperature <= 0.0f || sp->s.top_k == 1;
}

int32_t sampler_pick(sampler *sp, float *logits)
{
    const llm_sampling *s = &sp->s;
    const int nv = sp->n_vocab;
    if (s->temperature <= 0.0f || s->top_k == 1)
        return greedy_pick(logits, nv, sp->recent, sp->n_recent, s->repeat_penalty);
    penalize(logits, nv, sp->recent, sp->n_recent, s->repeat_penalty);
    /* candidates, top-k by partial selection when k is small */
    int n = nv;
    for (int i = 0; i < nv; i++) sp->c[i] = (cand){logits[i], i};
    if (s->top_k > 0 && s->top_k < nv) {
        /* nth_element-style: keep the k largest in front (quickselect) */
        int lo = 0, hi = nv - 1, k = s->top_k;
        while (lo < hi) {
            float pivot = sp->c[(lo + hi) / 2].logit;
            int i = lo, j = hi;
            while (i <= j) {
                while (sp->c[i].logit > pivot) i++;
                while (sp->c[j].logit < pivot) j--;
                if (i <= j) {
                    cand t = sp->c[i];
                    sp->c[i++] = sp->c[j];
                    sp->c[j--] = t;
                }
            }
            if (k - 1 <= j) hi = j;
            else if (k - 1 >= i) lo = i;
            else break;
        }
        n = k;
    }
    qsort(sp->c, (size_t)n, sizeof *sp->c, by_logit_desc);
    /* temperature, softmax over the kept candidates */
    float maxl = sp->c[0].logit;
    double sum = 0;
    for (int i = 0; i < n; i++) {
        sp->c[i].logit = expf((sp->c[i].logit - maxl) / s->temperature);
        sum += sp->c[i].logit;
    }
    for (int i = 0; i < n; i++) sp->c[i].logit = (float)(sp->c[i].logit / sum);
    /* min-p: drop candidates under min_p times the best probability */
    if (s->min_p > 0.0f) {
        float floor_p = s->min_p * sp->c[0].logit;
        int keep = 1;
        while (keep < n && sp->c[keep].logit >= floor_p) keep++;
        n = keep;
    }
    /* top-p: the smallest prefix whose mass reaches top_p */
    if (s->top_p > 0.0f && s->top_p < 1.0f) {
        double cum = 0;
        int keep = 0;
        while (keep < n) {
            cum += sp->c[keep++].logit;
            if (cum >= s->top_p) break;
        }
        n = keep;
    }
    double mass = 0;
    for (int i = 0; i < n; i++) mass += sp->c[i].logit;
    double r = (double)(next_u64(&sp->rng) >> 11) * (1.0 / 9007199254740992.0) * mass;
    for (int i = 0; i < n; i++) {
        r -= sp->c[i].logit;
        if (r <= 0) return sp->c[i].id;
    }
    return sp->c[n - 1].id;
}
