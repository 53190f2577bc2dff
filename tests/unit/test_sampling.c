/* test_sampling.c - the sampler: greedy, temperature, top-k, top-p, min-p,
 * repetition penalty, seeds.  Distributions are checked by counting draws. */
#include "testutil.h"

#include <math.h>

#include "llm/model.h"

#define NV 5

static void fill(float *lg, const double *p)
{
    for (int i = 0; i < NV; i++) lg[i] = p[i] > 0 ? (float)log(p[i]) : -1e9f;
}

/* draw n tokens from probabilities p under settings s; counts per token */
static void draw(const llm_sampling *s, const double *p, int n, int *counts)
{
    sampler *sp;
    assert_int_equal(sampler_new(s, NV, &sp), DOC_OK);
    memset(counts, 0, NV * sizeof *counts);
    float lg[NV];
    for (int i = 0; i < n; i++) {
        fill(lg, p);
        int32_t id = sampler_pick(sp, lg);
        assert_true(id >= 0 && id < NV);
        counts[id]++;
    }
    sampler_free(&sp);
}

static const double P[NV] = {0.4, 0.3, 0.15, 0.1, 0.05};

static void test_greedy(void **state)
{
    (void)state;
    llm_sampling s;
    llm_sampling_default(&s);
    int c[NV];
    draw(&s, P, 100, c);
    assert_int_equal(c[0], 100);
    s.temperature = 0.8f;
    s.top_k = 1;
    draw(&s, P, 100, c);
    assert_int_equal(c[0], 100);
}

static void test_temperature_one_matches_distribution(void **state)
{
    (void)state;
    llm_sampling s;
    llm_sampling_default(&s);
    s.temperature = 1.0f;
    s.seed = 42;
    int c[NV], n = 40000;
    draw(&s, P, n, c);
    for (int i = 0; i < NV; i++) {
        double f = (double)c[i] / n, sd = sqrt(P[i] * (1 - P[i]) / n);
        printf("token %d: %.4f (p %.2f)\n", i, f, P[i]);
        assert_true(fabs(f - P[i]) < 5 * sd);
    }
}

static void test_low_temperature_sharpens(void **state)
{
    (void)state;
    llm_sampling s;
    llm_sampling_default(&s);
    s.temperature = 0.25f; /* p^4 renormalised: token 0 gets 0.4^4 / sum */
    s.seed = 7;
    int c[NV], n = 20000;
    draw(&s, P, n, c);
    double z = 0;
    for (int i = 0; i < NV; i++) z += pow(P[i], 4);
    double want = pow(P[0], 4) / z;
    assert_true(fabs((double)c[0] / n - want) < 0.02);
}

static void test_top_k_top_p_min_p(void **state)
{
    (void)state;
    llm_sampling s;
    llm_sampling_default(&s);
    s.temperature = 1.0f;
    s.seed = 1;
    int c[NV];
    s.top_k = 2;
    draw(&s, P, 5000, c);
    assert_int_equal(c[2] + c[3] + c[4], 0);
    assert_true(c[0] > 0 && c[1] > 0);
    /* renormalised over the two kept: 0.4/0.7 */
    assert_true(fabs(c[0] / 5000.0 - 0.4 / 0.7) < 0.03);

    s.top_k = 0;
    s.top_p = 0.8f; /* 0.4 + 0.3 = 0.7 < 0.8, + 0.15 = 0.85: three kept */
    draw(&s, P, 5000, c);
    assert_int_equal(c[3] + c[4], 0);
    assert_true(c[2] > 0);

    s.top_p = 1.0f;
    s.min_p = 0.5f; /* keep p >= 0.2: tokens 0 and 1 */
    draw(&s, P, 5000, c);
    assert_int_equal(c[2] + c[3] + c[4], 0);
    assert_true(c[1] > 0);
}

static void test_seed_reproducible(void **state)
{
    (void)state;
    llm_sampling s;
    llm_sampling_default(&s);
    s.temperature = 1.0f;
    int32_t a[64], b[64], c[64];
    for (int run = 0; run < 3; run++) {
        s.seed = run == 2 ? 99 : 1234;
        sampler *sp;
        assert_int_equal(sampler_new(&s, NV, &sp), DOC_OK);
        int32_t *out = run == 0 ? a : run == 1 ? b : c;
        for (int i = 0; i < 64; i++) {
            float lg[NV];
            fill(lg, P);
            out[i] = sampler_pick(sp, lg);
        }
        sampler_free(&sp);
    }
    assert_memory_equal(a, b, sizeof a);
    assert_memory_not_equal(a, c, sizeof a);
}

static void test_repetition_penalty(void **state)
{
    (void)state;
    llm_sampling s;
    llm_sampling_default(&s);
    s.repeat_penalty = 2.0f;
    s.repeat_last_n = 4;
    sampler *sp;
    assert_int_equal(sampler_new(&s, NV, &sp), DOC_OK);
    float lg[NV] = {3.0f, 2.0f, -1.0f, 0.5f, 0.0f};
    sampler_accept(sp, 0);
    sampler_accept(sp, 0); /* counted once */
    sampler_accept(sp, 2);
    int32_t id = sampler_pick(sp, lg);
    assert_true(fabsf(lg[0] - 1.5f) < 1e-6f); /* positive: divided */
    assert_true(fabsf(lg[2] + 2.0f) < 1e-6f); /* negative: multiplied */
    assert_int_equal(id, 1);
    /* the window slides: after 4 more other tokens, 0 is no longer penalised */
    for (int i = 0; i < 4; i++) sampler_accept(sp, 4);
    float lg2[NV] = {3.0f, 2.0f, -1.0f, 0.5f, 0.0f};
    assert_int_equal(sampler_pick(sp, lg2), 0);
    sampler_free(&sp);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_greedy),
        cmocka_unit_test(test_temperature_one_matches_distribution),
        cmocka_unit_test(test_low_temperature_sharpens),
        cmocka_unit_test(test_top_k_top_p_min_p),
        cmocka_unit_test(test_seed_reproducible),
        cmocka_unit_test(test_repetition_penalty),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
