/*
 * test_badmodel.c - corrupted real model files through the whole open path.
 *
 * test_badfiles checks the GGUF and safetensors readers; this goes one level up:
 * bytes are flipped in the metadata of the real GGUF (hyperparameters, the
 * tokenizer's tokens, merges, types and special ids, the chat template) and in
 * the real MiniLM config.json, then llm_model_open runs, and whatever opens is
 * used (tokenize, a few generated tokens or an embedding).  Every outcome must
 * be a clean success or an error with a message; a crash, a sanitizer report or
 * a hang (each case has an alarm) fails the test.
 */
#include "testutil.h"

#include <signal.h>
#include <unistd.h>

#include "llm/llm.h"

static int use_model(llm_model *m)
{
    doc_err err = {0};
    int32_t *ids = NULL;
    int n = 0;
    const char *text = "Hello wörld, 12345 <|im_start|> [SEP] ☃ 中文";
    if (llm_tokenize(m, text, strlen(text), 1, 1, &ids, &n, &err) == DOC_OK) free(ids);
    if (llm_model_kind(m) == LLM_DECODER) {
        llm_sampling s;
        llm_sampling_default(&s);
        s.max_tokens = 3;
        llm_gen_stats st;
        return llm_generate(m, "The capital of France is", &s, NULL, NULL, &st, &err);
    }
    float v[4096];
    const char *t = "a short passage";
    if (llm_embed_dim(m) > 4096) return 0;
    return llm_embed(m, &t, 1, v, NULL, &err);
}

/* write data with n_flip random byte changes inside [lo, hi) to path */
static void write_flipped(const char *path, const uint8_t *data, size_t size, size_t lo, size_t hi,
                          int n_flip, uint64_t *rng)
{
    uint8_t *copy = malloc(size);
    memcpy(copy, data, size);
    for (int i = 0; i < n_flip; i++) {
        size_t at = lo + test_rand(rng) % (hi - lo);
        copy[at] ^= (uint8_t)(1 + test_rand(rng) % 255);
    }
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(copy, 1, size, f), size);
    fclose(f);
    free(copy);
}

static void test_gguf_metadata_flips(void **state)
{
    (void)state;
    char src[512];
    test_model_path(src, sizeof src, TEST_GGUF);
    file_map fm;
    doc_err err = {0};
    assert_int_equal(file_map_open(src, &fm, &err), DOC_OK);
    char dir[] = "/tmp/docent-badmodel-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[256];
    snprintf(path, sizeof path, "%s/m.gguf", dir);
    /* the metadata and tensor infos live in the first ~1.8 MB (data starts
     * at 1785664 in this file); flip there */
    size_t meta_end = 1785000 < fm.size ? 1785000 : fm.size;
    uint64_t rng = 0x5eed0001;
    int cases = getenv("DOCENT_TEST_LONG") ? 400 : 60, opened = 0, used_ok = 0;
    llm_opts o = {.n_threads = 1, .n_ctx = 256};
    for (int c = 0; c < cases; c++) {
        write_flipped(path, fm.data, fm.size, 8, meta_end, 1 + c % 4, &rng);
        alarm(60);
        llm_model *m = NULL;
        memset(&err, 0, sizeof err);
        int rc = llm_model_open(path, &o, &m, &err);
        if (rc) {
            assert_true(rc < 0);
            assert_true(err.msg[0] != 0);
            if (getenv("DOCENT_TEST_VERBOSE")) printf("refused: %s\n", err.msg);
        } else {
            opened++;
            used_ok += use_model(m) == DOC_OK;
            llm_model_close(&m);
        }
        alarm(0);
    }
    printf("gguf: %d corrupted copies, %d opened (%d then generated), the rest refused with a message\n",
           cases, opened, used_ok);
    unlink(path);
    rmdir(dir);
    file_map_close(&fm);
}

static void test_hf_config_flips(void **state)
{
    (void)state;
    char src[512], cfg[600];
    test_model_path(src, sizeof src, TEST_EMBEDDER);
    snprintf(cfg, sizeof cfg, "%s/config.json", src);
    char *json;
    size_t len;
    doc_err err = {0};
    assert_int_equal(file_read_all(cfg, 1 << 20, &json, &len, &err), DOC_OK);
    char dir[] = "/tmp/docent-badhf-XXXXXX";
    assert_non_null(mkdtemp(dir));
    static const char *const links[] = {"model.safetensors", "tokenizer.json", "vocab.txt",
                                        "tokenizer_config.json", "special_tokens_map.json"};
    char a[1200], b[1200];
    for (size_t i = 0; i < sizeof links / sizeof links[0]; i++) {
        snprintf(a, sizeof a, "%s/%s", src, links[i]);
        if (a[0] != '/') {
            char cwd[256];
            assert_non_null(getcwd(cwd, sizeof cwd));
            snprintf(b, sizeof b, "%s/%s/%s", cwd, src, links[i]);
            snprintf(a, sizeof a, "%s", b);
        }
        snprintf(b, sizeof b, "%s/%s", dir, links[i]);
        assert_int_equal(symlink(a, b), 0);
    }
    snprintf(b, sizeof b, "%s/config.json", dir);
    uint64_t rng = 0x5eed0002;
    int opened = 0, cases = 80;
    llm_opts o = {.n_threads = 1};
    for (int c = 0; c < cases; c++) {
        write_flipped(b, (const uint8_t *)json, len, 0, len, 1, &rng);
        alarm(60);
        llm_model *m = NULL;
        memset(&err, 0, sizeof err);
        int rc = llm_model_open(dir, &o, &m, &err);
        if (rc) {
            assert_true(err.msg[0] != 0);
        } else {
            opened++;
            use_model(m);
            llm_model_close(&m);
        }
        alarm(0);
    }
    printf("config.json: %d corrupted copies, %d opened\n", cases, opened);
    unlink(b);
    for (size_t i = 0; i < sizeof links / sizeof links[0]; i++) {
        snprintf(b, sizeof b, "%s/%s", dir, links[i]);
        unlink(b);
    }
    rmdir(dir);
    free(json);
}

/* set a u32 metadata value in a copy of the GGUF: the key's bytes are found,
 * its type (4 bytes) and value follow */
static void set_u32(uint8_t *copy, size_t size, const char *key, uint32_t v)
{
    uint8_t *p = memmem(copy, size, key, strlen(key));
    assert_non_null(p);
    p += strlen(key);
    uint32_t type;
    memcpy(&type, p, 4);
    assert_int_equal(type, 4); /* GGUF_T_U32 */
    memcpy(p + 4, &v, 4);
}

static void test_gguf_semantic(void **state)
{
    (void)state;
    static const struct {
        const char *key;
        uint32_t value;
        const char *want; /* substring of the error, NULL: must open and work */
    } cases[] = {
        {"llama.block_count", 31, "blk.30.attn_norm.weight"},
        {"llama.block_count", 0, "bad hyperparameters"},
        {"llama.embedding_length", 1152, "expected"},
        {"llama.attention.head_count", 0, "bad hyperparameters"},
        {"llama.attention.head_count", 7, "not a multiple"},
        {"llama.attention.head_count_kv", 2, "not a multiple"},
        {"llama.attention.head_count_kv", 9, "blk.0.attn_k.weight"},
        {"llama.feed_forward_length", 1537, "ffn_gate"},
        {"llama.context_length", 0, "bad hyperparameters"},
        {"tokenizer.ggml.bos_token_id", 4000000000u, NULL}, /* out of range: "none", as llama.cpp writes -1 */
        {"tokenizer.ggml.eos_token_id", 49152, NULL},
        {"llama.context_length", 64, NULL},
    };
    char src[512];
    test_model_path(src, sizeof src, TEST_GGUF);
    file_map fm;
    doc_err err = {0};
    assert_int_equal(file_map_open(src, &fm, &err), DOC_OK);
    char dir[] = "/tmp/docent-badsem-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[256];
    snprintf(path, sizeof path, "%s/m.gguf", dir);
    uint8_t *copy = malloc(fm.size);
    llm_opts o = {.n_threads = 1};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        memcpy(copy, fm.data, fm.size);
        set_u32(copy, 2000000, cases[i].key, cases[i].value);
        FILE *f = fopen(path, "wb");
        assert_int_equal(fwrite(copy, 1, fm.size, f), fm.size);
        fclose(f);
        llm_model *m = NULL;
        memset(&err, 0, sizeof err);
        int rc = llm_model_open(path, &o, &m, &err);
        printf("%s = %u: %s\n", cases[i].key, cases[i].value, rc ? err.msg : "opened");
        if (cases[i].want) {
            assert_true(rc < 0);
            assert_non_null(strstr(err.msg, cases[i].want));
        } else {
            assert_int_equal(rc, DOC_OK);
            assert_int_equal(use_model(m), DOC_OK);
            llm_model_close(&m);
        }
    }
    /* a key renamed in place (same length): the chat template's string becomes
     * llama.rope.scaling.type, which docent does not implement and must refuse */
    memcpy(copy, fm.data, fm.size);
    uint8_t *k = memmem(copy, 2000000, "tokenizer.chat_template", 23);
    assert_non_null(k);
    memcpy(k, "llama.rope.scaling.type", 23);
    FILE *f = fopen(path, "wb");
    assert_int_equal(fwrite(copy, 1, fm.size, f), fm.size);
    fclose(f);
    llm_model *m = NULL;
    assert_int_not_equal(llm_model_open(path, &o, &m, &err), DOC_OK);
    printf("rope scaling: %s\n", err.msg);
    assert_non_null(strstr(err.msg, "rope scaling"));
    free(copy);
    unlink(path);
    rmdir(dir);
    file_map_close(&fm);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gguf_semantic),
        cmocka_unit_test(test_gguf_metadata_flips),
        cmocka_unit_test(test_hf_config_flips),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
