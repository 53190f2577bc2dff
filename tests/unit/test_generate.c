/* test_generate.c - llm_generate on the default model: streaming contract,
 * stop strings, cancellation, max tokens, seeds, beam search, bad input. */
#include "testutil.h"

#include "llm/llm.h"

static llm_model *model;

static int setup(void **state)
{
    (void)state;
    char path[512];
    test_model_path(path, sizeof path, TEST_GGUF);
    doc_err err = {0};
    llm_opts o = {.n_threads = 2, .n_ctx = 512};
    if (llm_model_open(path, &o, &model, &err)) {
        printf("open: %s\n", err.msg);
        return -1;
    }
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    llm_model_close(&model);
    return 0;
}

typedef struct {
    buf text;
    int chunks, cancel_after;
    int bad_utf8;
} collect;

static int on_text(void *ud, const char *t, size_t n)
{
    collect *c = ud;
    if (!n) return 0;
    if (!utf8_valid(t, n)) c->bad_utf8++;
    buf_append(&c->text, t, n);
    c->chunks++;
    return c->cancel_after && c->chunks >= c->cancel_after;
}

static int run(const char *prompt, const llm_sampling *s, collect *c, llm_gen_stats *st)
{
    memset(c, 0, sizeof *c);
    buf_init(&c->text, 0);
    doc_err err = {0};
    int rc = llm_generate(model, prompt, s, on_text, c, st, &err);
    if (rc) printf("generate: %s\n", err.msg);
    return rc;
}

static void test_greedy_and_stream(void **state)
{
    (void)state;
    llm_sampling s;
    llm_sampling_default(&s);
    s.max_tokens = 12;
    collect c;
    llm_gen_stats st;
    assert_int_equal(run("The capital of France is", &s, &c, &st), DOC_OK);
    printf("greedy: [%s] (%d chunks)\n", c.text.data, c.chunks);
    assert_non_null(strstr(c.text.data, "Paris"));
    assert_int_equal(st.n_gen, 12);
    assert_int_equal(st.stop_reason, LLM_STOP_LENGTH);
    assert_int_equal(c.bad_utf8, 0);
    assert_true(st.n_prompt == 5);
    /* the same again gives the same text (greedy is deterministic) */
    collect c2;
    assert_int_equal(run("The capital of France is", &s, &c2, &st), DOC_OK);
    assert_string_equal(c.text.data, c2.text.data);
    buf_free(&c.text);
    buf_free(&c2.text);
}

static void test_stop_string(void **state)
{
    (void)state;
    llm_sampling s;
    llm_sampling_default(&s);
    s.max_tokens = 12;
    const char *stops[] = {"Paris"};
    s.stop = stops;
    s.n_stop = 1;
    collect c;
    llm_gen_stats st;
    assert_int_equal(run("The capital of France is", &s, &c, &st), DOC_OK);
    printf("stopped: [%s]\n", c.text.data);
    assert_int_equal(st.stop_reason, LLM_STOP_STRING);
    assert_null(strstr(c.text.data, "Paris"));
    assert_null(strstr(c.text.data, "Par")); /* a possible prefix is never streamed */
    buf_free(&c.text);
}

static void test_cancel(void **state)
{
    (void)state;
    llm_sampling s;
    llm_sampling_default(&s);
    s.max_tokens = 64;
    collect c;
    llm_gen_stats st;
    memset(&c, 0, sizeof c);
    buf_init(&c.text, 0);
    c.cancel_after = 2;
    doc_err err = {0};
    assert_int_equal(llm_generate(model, "Once upon a time there was a cat", &s, on_text, &c, &st, &err),
                     DOC_OK);
    assert_int_equal(st.stop_reason, LLM_STOP_CANCELLED);
    assert_int_equal(c.chunks, 2);
    assert_true(st.n_gen < 8);
    buf_free(&c.text);
}

static void test_seeded_sampling(void **state)
{
    (void)state;
    llm_sampling s;
    llm_sampling_default(&s);
    s.max_tokens = 24;
    s.temperature = 1.0f;
    s.top_p = 0.95f;
    s.seed = 7;
    collect a, b, c;
    llm_gen_stats st;
    assert_int_equal(run("Once upon a time", &s, &a, &st), DOC_OK);
    assert_int_equal(run("Once upon a time", &s, &b, &st), DOC_OK);
    s.seed = 8;
    assert_int_equal(run("Once upon a time", &s, &c, &st), DOC_OK);
    printf("seed 7: [%s]\nseed 8: [%s]\n", a.text.data, c.text.data);
    assert_string_equal(a.text.data, b.text.data);
    assert_string_not_equal(a.text.data, c.text.data);
    buf_free(&a.text);
    buf_free(&b.text);
    buf_free(&c.text);
}

static void test_beams(void **state)
{
    (void)state;
    llm_sampling s;
    llm_sampling_default(&s);
    s.max_tokens = 10;
    collect g, b1, b3, b3b;
    llm_gen_stats st;
    assert_int_equal(run("The capital of France is", &s, &g, &st), DOC_OK);
    s.n_beams = 1;
    assert_int_equal(run("The capital of France is", &s, &b1, &st), DOC_OK);
    assert_string_equal(g.text.data, b1.text.data); /* one beam is greedy */
    s.n_beams = 3;
    assert_int_equal(run("The capital of France is", &s, &b3, &st), DOC_OK);
    assert_int_equal(run("The capital of France is", &s, &b3b, &st), DOC_OK);
    printf("greedy: [%s]\nbeams 3: [%s]\n", g.text.data, b3.text.data);
    assert_true(b3.text.len > 0);
    assert_string_equal(b3.text.data, b3b.text.data);
    buf_free(&g.text);
    buf_free(&b1.text);
    buf_free(&b3.text);
    buf_free(&b3b.text);
}

static void test_bad_input(void **state)
{
    (void)state;
    llm_sampling s;
    llm_sampling_default(&s);
    doc_err err = {0};
    llm_gen_stats st;
    assert_int_equal(llm_generate(model, "", &s, NULL, NULL, &st, &err), DOC_EINVAL);
    assert_non_null(strstr(err.msg, "empty prompt"));
    assert_int_equal(llm_generate(model, "caf\xc3", &s, NULL, NULL, &st, &err), DOC_EINVAL);
    assert_non_null(strstr(err.msg, "UTF-8"));
    /* 600 words: over the 512-token context this model was opened with */
    buf big;
    buf_init(&big, 0);
    for (int i = 0; i < 600; i++) buf_puts(&big, " word");
    assert_int_equal(llm_generate(model, big.data, &s, NULL, NULL, &st, &err), DOC_ELIMIT);
    assert_non_null(strstr(err.msg, "context of 512"));
    buf_free(&big);
    s.n_beams = 99;
    assert_int_equal(llm_generate(model, "hi", &s, NULL, NULL, &st, &err), DOC_EINVAL);
    /* sessions refuse ids outside the vocabulary and overfull contexts */
    llm_session *sess;
    assert_int_equal(llm_session_new(model, &sess, &err), DOC_OK);
    int32_t bad = 1 << 20;
    float *lg = malloc((size_t)llm_n_vocab(model) * sizeof *lg);
    assert_int_equal(llm_session_eval(sess, &bad, 1, 0, lg, &err), DOC_EINVAL);
    assert_non_null(strstr(err.msg, "outside the vocabulary"));
    int32_t *many = calloc(600, sizeof *many);
    assert_int_equal(llm_session_eval(sess, many, 600, 0, lg, &err), DOC_ELIMIT);
    free(many);
    free(lg);
    llm_session_free(&sess);
    /* an encoder call on a decoder */
    const char *t = "x";
    float v[8];
    assert_int_equal(llm_embed(model, &t, 1, v, NULL, &err), DOC_ESTATE);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_greedy_and_stream), cmocka_unit_test(test_stop_string),
        cmocka_unit_test(test_cancel),            cmocka_unit_test(test_seeded_sampling),
        cmocka_unit_test(test_beams),             cmocka_unit_test(test_bad_input),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
