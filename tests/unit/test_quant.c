/*
 * test_quant.c - element types and the reference quantizers (llm/quant.c).
 *
 * Dequantization is checked against fixtures made by the `gguf` PyPI
 * package's reference dequantizer on random-but-valid blocks
 * (tests/reference/gen_quant.py -> tests/fixtures/quant/<type>.{bin,f32});
 * quantizers are checked by round trips with per-format error bounds and by
 * their side fields (q8_1's s, q8_K's bsums).
 */
#include "testutil.h"

#include <math.h>

#include "llm/internal.h"

#define FIXTURES "tests/fixtures/quant"

static void *read_fixture(const char *name, const char *ext, size_t *len)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s.%s", FIXTURES, name, ext);
    char *data = NULL;
    doc_err err = {0};
    int rc = file_read_all(path, 1 << 20, &data, len, &err);
    if (rc) fail_msg("%s", err.msg);
    return data;
}

/* ---- the type table ---------------------------------------------------------- */

static void test_type_table(void **state)
{
    (void)state;
    static const struct {
        int type;
        const char *name;
        int block;
        size_t size;
        int in_files;
    } want[] = {
        {LLM_T_F32, "f32", 1, 4, 1},        {LLM_T_F16, "f16", 1, 2, 1},
        {LLM_T_BF16, "bf16", 1, 2, 1},      {LLM_T_Q4_0, "q4_0", 32, 18, 1},
        {LLM_T_Q4_1, "q4_1", 32, 20, 1},    {LLM_T_Q8_0, "q8_0", 32, 34, 1},
        {LLM_T_Q8_1, "q8_1", 32, 40, 0},    {LLM_T_Q4_K, "q4_K", 256, 144, 1},
        {LLM_T_Q5_K, "q5_K", 256, 176, 1},  {LLM_T_Q6_K, "q6_K", 256, 210, 1},
        {LLM_T_Q8_K, "q8_K", 256, 292, 0},
    };
    int known = 0;
    for (size_t i = 0; i < sizeof want / sizeof *want; i++) {
        const llm_type_info *t = llm_type(want[i].type);
        assert_non_null(t);
        assert_string_equal(t->name, want[i].name);
        assert_int_equal(t->block, want[i].block);
        assert_int_equal(t->block_size, want[i].size);
        assert_int_equal(t->in_files, want[i].in_files);
        assert_int_equal(llm_row_bytes(want[i].type, 4096), 4096 / want[i].block * want[i].size);
    }
    for (int t = -5; t < 300; t++) known += llm_type(t) != NULL;
    assert_int_equal(known, 11);
    assert_null(llm_type(6));  /* q5_0: a GGUF type docent does not load */
    assert_null(llm_type(LLM_T_COUNT));
    assert_int_equal(llm_row_bytes(99, 32), 0);
}

/* ---- dequantization against the gguf package ---------------------------------- */

static void check_fixture(const char *name, int type)
{
    const llm_type_info *ti = llm_type(type);
    size_t nraw, nref;
    uint8_t *raw = read_fixture(name, "bin", &nraw);
    float *ref = read_fixture(name, "f32", &nref);
    assert_int_equal(nraw % ti->block_size, 0);
    int64_t n = (int64_t)(nraw / ti->block_size) * ti->block;
    assert_int_equal(nref, (size_t)n * 4);
    float *out = malloc((size_t)n * sizeof *out);
    llm_dequantize_ref(type, raw, out, n);
    int bad = 0;
    for (int64_t i = 0; i < n; i++) {
        /* exact up to float rounding of the same products */
        float tol = 1e-6f * fabsf(ref[i]) + 1e-30f;
        if (!(fabsf(out[i] - ref[i]) <= tol)) {
            if (bad++ < 5)
                print_error("%s: element %lld: got %.9g, reference %.9g\n", name, (long long)i,
                            out[i], ref[i]);
        }
    }
    free(out);
    free(raw);
    free(ref);
    assert_int_equal(bad, 0);
}

static void test_dequant_f32(void **s) { (void)s; check_fixture("f32", LLM_T_F32); }
static void test_dequant_f16(void **s) { (void)s; check_fixture("f16", LLM_T_F16); }
static void test_dequant_bf16(void **s) { (void)s; check_fixture("bf16", LLM_T_BF16); }
static void test_dequant_q4_0(void **s) { (void)s; check_fixture("q4_0", LLM_T_Q4_0); }
static void test_dequant_q4_1(void **s) { (void)s; check_fixture("q4_1", LLM_T_Q4_1); }
static void test_dequant_q8_0(void **s) { (void)s; check_fixture("q8_0", LLM_T_Q8_0); }
static void test_dequant_q4_K(void **s) { (void)s; check_fixture("q4_K", LLM_T_Q4_K); }
static void test_dequant_q5_K(void **s) { (void)s; check_fixture("q5_K", LLM_T_Q5_K); }
static void test_dequant_q6_K(void **s) { (void)s; check_fixture("q6_K", LLM_T_Q6_K); }

/* ---- round trips --------------------------------------------------------------- */

/* data with structure real weights have: mixed scales per block, outliers,
 * a constant block, an all-zero block and one-sided blocks */
static void make_data(float *x, int n, uint64_t seed)
{
    uint64_t s = seed;
    for (int i = 0; i < n; i++) {
        float scale = (float)(1 + (i / 256) % 5) * 0.03f;
        x[i] = test_randf(&s) * scale;
        if (test_rand(&s) % 97 == 0) x[i] *= 8; /* outliers */
    }
    for (int i = 0; i < 256 && 256 + i < n; i++) x[256 + i] = 0.0f;
    for (int i = 0; i < 256 && 512 + i < n; i++) x[512 + i] = 0.125f;
    for (int i = 0; i < 256 && 768 + i < n; i++) x[768 + i] = fabsf(x[768 + i]) + 0.5f;
    for (int i = 0; i < 256 && 1024 + i < n; i++) x[1024 + i] = -fabsf(x[1024 + i]) - 0.25f;
}

/* roundtrip: the largest error in each group of `group` elements must stay
 * under frac * (the group's range or absmax) + abs_tol */
static void roundtrip(int type, int group, float frac, int use_range)
{
    enum { N = 4096 };
    const llm_type_info *ti = llm_type(type);
    static float x[N], y[N];
    make_data(x, N, 0x5eed0000u + (uint64_t)type);
    void *q = malloc(llm_row_bytes(type, N));
    llm_quantize_ref(type, x, q, N);
    llm_dequantize_ref(type, q, y, N);
    double se = 0, sx = 0;
    for (int g = 0; g < N; g += group) {
        float lo = 0, hi = 0, amax = 0;
        for (int i = g; i < g + group; i++) {
            lo = fminf(lo, x[i]);
            hi = fmaxf(hi, x[i]);
            amax = fmaxf(amax, fabsf(x[i]));
        }
        float bound = frac * (use_range ? hi - lo : amax) + 1e-7f;
        for (int i = g; i < g + group; i++) {
            float e = fabsf(y[i] - x[i]);
            se += (double)e * e;
            sx += (double)x[i] * x[i];
            if (!(e <= bound))
                fail_msg("%s: element %d: %.6g -> %.6g (error %.3g > bound %.3g)", ti->name, i,
                         x[i], y[i], e, bound);
        }
    }
    print_message("%-5s rms relative error %.5f\n", ti->name, sqrt(se / sx));
    free(q);
}

static void test_roundtrip_float(void **state)
{
    (void)state;
    roundtrip(LLM_T_F32, 1, 0.0f, 0);
    roundtrip(LLM_T_F16, 1, 1.0f / 2048, 0);
    roundtrip(LLM_T_BF16, 1, 1.0f / 256, 0);
}

/* bounds: half a step of the scale's grid, plus the f16 rounding of the
 * scales; q4_0 can clip the far side by one step */
static void test_roundtrip_q8_0(void **s) { (void)s; roundtrip(LLM_T_Q8_0, 32, 0.5f / 127 + 0.002f, 0); }
static void test_roundtrip_q8_1(void **s) { (void)s; roundtrip(LLM_T_Q8_1, 32, 0.5f / 127 + 1e-5f, 0); }
static void test_roundtrip_q8_K(void **s) { (void)s; roundtrip(LLM_T_Q8_K, 256, 0.5f / 127 + 1e-5f, 0); }
static void test_roundtrip_q4_0(void **s) { (void)s; roundtrip(LLM_T_Q4_0, 32, 1.0f / 8 + 0.002f, 0); }
static void test_roundtrip_q4_1(void **s) { (void)s; roundtrip(LLM_T_Q4_1, 32, 0.5f / 15 + 0.004f, 1); }
/* K-quants: steps are set per 256 by 6-bit (8-bit for q6_K) scales, so a
 * sub-block is measured against its super-block's range */
static void test_roundtrip_q4_K(void **s) { (void)s; roundtrip(LLM_T_Q4_K, 256, 0.6f / 15 + 0.02f, 1); }
static void test_roundtrip_q5_K(void **s) { (void)s; roundtrip(LLM_T_Q5_K, 256, 0.6f / 31 + 0.02f, 1); }
static void test_roundtrip_q6_K(void **s) { (void)s; roundtrip(LLM_T_Q6_K, 256, 0.6f / 31 + 0.01f, 0); }

/* side fields of the activation formats */
static void test_q8_sums(void **state)
{
    (void)state;
    float x[256];
    make_data(x, 256, 42);
    block_q8_1 b1[8];
    llm_quantize_ref(LLM_T_Q8_1, x, b1, 256);
    for (int b = 0; b < 8; b++) {
        int sum = 0;
        float amax = 0;
        for (int j = 0; j < 32; j++) {
            sum += b1[b].qs[j];
            amax = fmaxf(amax, fabsf(x[32 * b + j]));
        }
        assert_float_equal(b1[b].d, amax / 127, 1e-9);
        assert_float_equal(b1[b].s, b1[b].d * (float)sum, 1e-6);
    }
    block_q8_K bk;
    llm_quantize_ref(LLM_T_Q8_K, x, &bk, 256);
    for (int g = 0; g < 16; g++) {
        int sum = 0;
        for (int j = 0; j < 16; j++) sum += bk.qs[16 * g + j];
        assert_int_equal(bk.bsums[g], sum);
    }
    /* sign convention: dequant = d * q with d > 0 */
    assert_true(bk.d > 0);
    for (int j = 0; j < 256; j++)
        if (fabsf(x[j]) > bk.d) assert_true((x[j] > 0) == (bk.qs[j] > 0));
}

/* a quantized block dequantizes the same whether it sits aligned or not */
static void test_unaligned(void **state)
{
    (void)state;
    static const int types[] = {LLM_T_F32, LLM_T_F16, LLM_T_Q4_0, LLM_T_Q8_0, LLM_T_Q4_K, LLM_T_Q6_K};
    float x[512], a[512], b[512];
    make_data(x, 512, 7);
    for (size_t k = 0; k < sizeof types / sizeof *types; k++) {
        size_t bytes = llm_row_bytes(types[k], 512);
        uint8_t *mem = malloc(bytes + 3);
        llm_quantize_ref(types[k], x, mem, 512);
        llm_dequantize_ref(types[k], mem, a, 512);
        memmove(mem + 3, mem, bytes);
        llm_dequantize_ref(types[k], mem + 3, b, 512);
        assert_memory_equal(a, b, sizeof a);
        free(mem);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_type_table),      cmocka_unit_test(test_dequant_f32),
        cmocka_unit_test(test_dequant_f16),     cmocka_unit_test(test_dequant_bf16),
        cmocka_unit_test(test_dequant_q4_0),    cmocka_unit_test(test_dequant_q4_1),
        cmocka_unit_test(test_dequant_q8_0),    cmocka_unit_test(test_dequant_q4_K),
        cmocka_unit_test(test_dequant_q5_K),    cmocka_unit_test(test_dequant_q6_K),
        cmocka_unit_test(test_roundtrip_float), cmocka_unit_test(test_roundtrip_q8_0),
        cmocka_unit_test(test_roundtrip_q8_1),  cmocka_unit_test(test_roundtrip_q8_K),
        cmocka_unit_test(test_roundtrip_q4_0),  cmocka_unit_test(test_roundtrip_q4_1),
        cmocka_unit_test(test_roundtrip_q4_K),  cmocka_unit_test(test_roundtrip_q5_K),
        cmocka_unit_test(test_roundtrip_q6_K),  cmocka_unit_test(test_q8_sums),
        cmocka_unit_test(test_unaligned),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
