/*
 * sample.c - choosing the next token from logits.
 *
 * Order (as in the common llama.cpp-style chains): repetition penalty over the
 * last repeat_last_n tokens, then greedy when temperature is 0, else top-k,
 * temperature and softmax over those, min-p, top-p on the sorted candidates,
 * and a draw from a seeded generator (splitmix64: same seed, same output).
 * The candidates are ordered best first with ties to the lower id, a total
 * order, so the kept set and the drawn token are defined exactly: pick_row is
 * the reference the backends' pick ops follow (a GPU picks the same token for
 * the same draw, up to float rounding at a boundary: sums of probabilities
 * are not bound to an order).
 * The sampler owns its candidate array (n_vocab entries, allocated once).
 */
#include "llm/model.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef pick_cand cand;

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

/* a before b: the higher logit, at equal logits the lower id */
static int before(const cand *a, const cand *b)
{
    return a->logit > b->logit || (a->logit == b->logit && a->id < b->id);
}

static int by_logit_desc(const void *a, const void *b)
{
    return before(a, b) ? -1 : before(b, a) ? 1 : 0;
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

void sampler_row(sampler *sp, llm_step_row *row)
{
    const llm_sampling *s = &sp->s;
    row->recent = sp->recent;
    row->n_recent = sp->n_recent;
    row->pick = (llm_pick){.penalty = s->repeat_penalty};
    if (s->temperature <= 0.0f || s->top_k == 1) return;
    row->pick.temperature = s->temperature;
    row->pick.top_k = s->top_k;
    row->pick.top_p = s->top_p;
    row->pick.min_p = s->min_p;
    row->pick.u = (double)(next_u64(&sp->rng) >> 11) * (1.0 / 9007199254740992.0);
}

int32_t sampler_pick(sampler *sp, float *logits)
{
    llm_step_row row = {0};
    sampler_row(sp, &row);
    return pick_row(logits, sp->n_vocab, row.recent, row.n_recent, &row.pick, sp->c);
}

/* select: the k best of c[lo..hi] (the total order) moved to c[lo..lo+k), by
 * quickselect; the rest after them */
static void select_best(cand *c, int lo, int hi, int k)
{
    int want = lo + k - 1;
    while (lo < hi) {
        cand pivot = c[(lo + hi) / 2];
        int i = lo, j = hi;
        while (i <= j) {
            while (before(&c[i], &pivot)) i++;
            while (before(&pivot, &c[j])) j--;
            if (i <= j) {
                cand t = c[i];
                c[i++] = c[j];
                c[j--] = t;
            }
        }
        if (want <= j) hi = j;
        else if (want >= i) lo = i;
        else break;
    }
}

/*
 * The candidates are put in order only as far as the walks below go: c[0,
 * sorted) is the best `sorted` of the pool in order, with their logits turned
 * into probabilities; extend() orders the next stretch (quickselect on the
 * rest, then a sort of what it picked), four times longer each time.  With a
 * peaked distribution the walks end in the first 64; a full sort is the worst
 * case.
 */
typedef struct {
    cand *c;
    int pool, sorted, step;
    float maxl, temp;
    double z;
} walk;

static int extend(walk *w, int need)
{
    while (w->sorted < need && w->sorted < w->pool) {
        int k = w->pool - w->sorted < w->step ? w->pool - w->sorted : w->step;
        select_best(w->c, w->sorted, w->pool - 1, k);
        qsort(w->c + w->sorted, (size_t)k, sizeof *w->c, by_logit_desc);
        for (int i = w->sorted; i < w->sorted + k; i++)
            w->c[i].logit = (float)(expf((w->c[i].logit - w->maxl) / w->temp) / w->z);
        w->sorted += k;
        w->step *= 4;
    }
    return need <= w->sorted;
}

int32_t pick_row(float *logits, int nv, const int32_t *recent, int n_recent, const llm_pick *p,
                 cand *c)
{
    if (p->temperature <= 0.0f || p->top_k == 1)
        return greedy_pick(logits, nv, recent, n_recent, p->penalty);
    penalize(logits, nv, recent, n_recent, p->penalty);
    /* the pool: the top-k (quickselect in the total order), or every candidate */
    int n = nv;
    for (int i = 0; i < nv; i++) c[i] = (cand){logits[i], i};
    if (p->top_k > 0 && p->top_k < nv) {
        select_best(c, 0, nv - 1, p->top_k);
        n = p->top_k;
    }
    /* temperature and softmax over the pool (Z summed in pool order) */
    walk w = {c, n, 0, 64, c[0].logit, p->temperature, 0};
    for (int i = 1; i < n; i++) w.maxl = c[i].logit > w.maxl ? c[i].logit : w.maxl;
    for (int i = 0; i < n; i++) w.z += expf((c[i].logit - w.maxl) / w.temp);
    extend(&w, 1);
    /* min-p: drop candidates under min_p times the best probability */
    if (p->min_p > 0.0f) {
        float floor_p = p->min_p * c[0].logit;
        int keep = 1;
        while (extend(&w, keep + 1) && keep < n && c[keep].logit >= floor_p) keep++;
        n = keep;
    }
    /* top-p: the smallest prefix whose mass reaches top_p */
    if (p->top_p > 0.0f && p->top_p < 1.0f) {
        double cum = 0;
        int keep = 0;
        while (keep < n && extend(&w, keep + 1)) {
            cum += c[keep++].logit;
            if (cum >= p->top_p) break;
        }
        n = keep;
    }
    /* the draw: the first, best first, where the running mass reaches u times the kept mass */
    double mass = 0;
    if (n <= w.sorted) {
        for (int i = 0; i < n; i++) mass += c[i].logit;
    } else { /* the whole pool: its probabilities need no order to be summed */
        for (int i = 0; i < w.sorted; i++) mass += c[i].logit;
        for (int i = w.sorted; i < n; i++) mass += (float)(expf((c[i].logit - w.maxl) / w.temp) / w.z);
    }
    double r = p->u * mass, cum = 0;
    for (int i = 0; i < n && extend(&w, i + 1); i++) {
        cum += c[i].logit;
        if (cum >= r) return c[i].id;
    }
    extend(&w, n);
    return c[n - 1].id;
}
