/*
 * test_generate_f32.c - the decoder's arithmetic held to llama.cpp tightly.
 *
 * The default GGUF is opened with weights_f32 (every weight dequantised once at
 * load, no activation quantization) and compared with llama.cpp decoding the
 * same weights written as an all-F32 GGUF with an F32 KV cache
 * (tests/reference/gen_generate_f32.py).  Without 8-bit activation rounding the
 * model is not chaotic, so the rule is strict: every greedy token of every
 * prompt (22 prompts x 64 steps) must be identical, except at a true tie where
 * llama.cpp's own top-2 margin is under 1e-3 (counted and printed; none occur
 * in the committed fixture, whose smallest margin is 3.7e-3), and the 4 best
 * logits of every step must agree within 2e-3 (measured: 6e-5).  After a
 * mismatch the reference token is fed (teacher forcing) so later steps are
 * still compared in the same context.
 *
 * test_generate_parity.c covers the quantized path on the same prompts.
 */
#include "testutil.h"
#include "f32ref.h"

static void test_f32_greedy(void **state)
{
    (void)state;
    char path[512];
    test_model_path(path, sizeof path, TEST_GGUF);
    llm_model *m;
    doc_err err = {0};
    llm_opts o = {.n_threads = 2, .n_ctx = 2048, .weights_f32 = 1};
    assert_int_equal(llm_model_open(path, &o, &m, &err), DOC_OK);
    f32ref_check(m, "gguf weights_f32");
    llm_model_close(&m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_f32_greedy)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
