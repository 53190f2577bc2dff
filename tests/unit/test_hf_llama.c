/*
 * test_hf_llama.c - the Hugging Face directory path for llama-family decoders
 * held to llama.cpp, with no model hub.
 *
 * Group setup builds, in a temp dir, the HF checkpoint the default GGUF was
 * converted from, using only docent's own readers: config.json from the
 * llama.* metadata; model.safetensors with every tensor dequantised to F32
 * (llm_dequantize_ref), renamed to HF names, shapes reversed, and the q/k row
 * permutation of the GGUF converter undone (GGUF row (h, i, j), i < hd/2,
 * j < 2, holds HF row (h, j, i): GGUF rotates adjacent pairs, HF rotates
 * halves); tokenizer.json (byte-level BPE: vocab, merges, added_tokens from
 * the control tokens, SmolLM2's Digits + ByteLevel pre-tokenizer) and
 * tokenizer_config.json from tokenizer.ggml.*.  These weights are exactly the
 * ones llama.cpp decoded for tests/fixtures/generate/f32_reference.txt, so:
 *
 *   test_hf_open        the directory opens as a llama decoder with the
 *                       config's hyperparameters;
 *   test_hf_greedy      every reference prompt (22), 64 greedy steps each
 *                       with teacher forcing: every token identical
 *                       (except where llama.cpp's top-2 margin < 1e-3) and
 *                       the 4 reference top logits within 2e-3 (as
 *                       test_generate_f32.c for the GGUF with weights_f32;
 *                       measured: 1408/1408 identical, max diff 8.4e-5);
 *   test_hf_tokenizer   tokenizer.json gives the GGUF tokenizer's ids on every
 *                       line of tests/fixtures/tokens/corpus.txt (plain text)
 *                       and on a rendered chat (special tokens parsed).
 *
 * The checks can fail: leaving the q/k rows permuted breaks the first greedy
 * step; dropping the Digits pre-tokenizer changes 14 corpus lines.  The temp
 * dir is removed as soon as the model is open (the mapping outlives it).
 */
#include "testutil.h"
#include "f32ref.h"

#include <math.h>
#include <unistd.h>

#include "core/json.h"
#include "llm/internal.h"
#include "llm/llm.h"


/* ---- building the HF directory ----------------------------------------------- */

/* the HF name of a GGUF llama tensor; 0 or -1 if unmapped */
static int hf_name_of(const char *g, char *out, size_t cap)
{
    static const char *const global[][2] = {
        {"token_embd.weight", "model.embed_tokens.weight"},
        {"output_norm.weight", "model.norm.weight"},
        {"output.weight", "lm_head.weight"},
    };
    static const char *const layer[][2] = {
        {"attn_q", "self_attn.q_proj"},     {"attn_k", "self_attn.k_proj"},
        {"attn_v", "self_attn.v_proj"},     {"attn_output", "self_attn.o_proj"},
        {"attn_norm", "input_layernorm"},   {"ffn_norm", "post_attention_layernorm"},
        {"ffn_gate", "mlp.gate_proj"},      {"ffn_up", "mlp.up_proj"},
        {"ffn_down", "mlp.down_proj"},
    };
    for (size_t i = 0; i < sizeof global / sizeof global[0]; i++)
        if (!strcmp(g, global[i][0])) return snprintf(out, cap, "%s", global[i][1]) < (int)cap ? 0 : -1;
    int blk, n = 0;
    char part[64], suf[16];
    if (sscanf(g, "blk.%d.%63[^.].%15s%n", &blk, part, suf, &n) != 3 || g[n]) return -1;
    for (size_t i = 0; i < sizeof layer / sizeof layer[0]; i++)
        if (!strcmp(part, layer[i][0]))
            return snprintf(out, cap, "model.layers.%d.%s.%s", blk, layer[i][1], suf) < (int)cap ? 0 : -1;
    return -1;
}

/* undo the converter's q/k permutation: HF row (h, j, i) = GGUF row (h, i, j) */
static void unpermute_rows(const float *src, float *dst, int n_head, int rows, int cols)
{
    int hd = rows / n_head, half = hd / 2;
    for (int h = 0; h < n_head; h++)
        for (int j = 0; j < 2; j++)
            for (int i = 0; i < half; i++)
                memcpy(dst + ((size_t)h * hd + (size_t)j * half + i) * cols,
                       src + ((size_t)h * hd + 2 * i + j) * cols, (size_t)cols * sizeof *dst);
}

static int dump_json(json_t *j, const char *dir, const char *name)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int rc = json_dump_file(j, path, JSON_COMPACT);
    json_decref(j);
    return rc;
}

static int64_t gguf_u(const gguf_file *g, const char *key)
{
    int64_t v = -1;
    assert_int_equal(gguf_get_i64(g, key, &v, NULL), DOC_OK);
    return v;
}

static double gguf_f(const gguf_file *g, const char *key)
{
    float v = 0;
    assert_int_equal(gguf_get_f32(g, key, &v, NULL), DOC_OK);
    return v;
}

static void write_config(const gguf_file *g, const char *dir)
{
    json_t *c = json_object();
    json_object_set_new(c, "architectures", json_pack("[s]", "LlamaForCausalLM"));
    json_object_set_new(c, "model_type", json_string("llama"));
    json_object_set_new(c, "hidden_size", json_integer(gguf_u(g, "llama.embedding_length")));
    json_object_set_new(c, "num_hidden_layers", json_integer(gguf_u(g, "llama.block_count")));
    json_object_set_new(c, "intermediate_size", json_integer(gguf_u(g, "llama.feed_forward_length")));
    json_object_set_new(c, "num_attention_heads", json_integer(gguf_u(g, "llama.attention.head_count")));
    json_object_set_new(c, "num_key_value_heads",
                        json_integer(gguf_u(g, "llama.attention.head_count_kv")));
    json_object_set_new(c, "max_position_embeddings", json_integer(gguf_u(g, "llama.context_length")));
    json_object_set_new(c, "rms_norm_eps", json_real(gguf_f(g, "llama.attention.layer_norm_rms_epsilon")));
    json_object_set_new(c, "rope_theta", json_real(gguf_f(g, "llama.rope.freq_base")));
    json_object_set_new(c, "tie_word_embeddings", json_true());
    json_object_set_new(c, "hidden_act", json_string("silu"));
    json_object_set_new(c, "vocab_size", json_integer(49152));
    json_object_set_new(c, "torch_dtype", json_string("float32"));
    assert_int_equal(dump_json(c, dir, "config.json"), 0);
}

static void write_safetensors(const gguf_file *g, const char *dir)
{
    int nt = gguf_n_tensors(g);
    int n_head = (int)gguf_u(g, "llama.attention.head_count");
    int n_head_kv = (int)gguf_u(g, "llama.attention.head_count_kv");
    json_t *hdr = json_object();
    size_t off = 0;
    for (int i = 0; i < nt; i++) {
        const llm_tensor *t = gguf_tensor_at(g, i);
        char hf[256];
        assert_int_equal(hf_name_of(t->name, hf, sizeof hf), 0);
        int64_t n = t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3];
        json_t *shape = json_array();
        for (int d = t->n_dims - 1; d >= 0; d--) json_array_append_new(shape, json_integer(t->ne[d]));
        json_object_set_new(hdr, hf,
                            json_pack("{s:s, s:o, s:[I,I]}", "dtype", "F32", "shape", shape,
                                      "data_offsets", (json_int_t)off,
                                      (json_int_t)(off + (size_t)n * 4)));
        off += (size_t)n * 4;
    }
    char *js = json_dumps(hdr, JSON_COMPACT);
    json_decref(hdr);
    size_t hl = strlen(js), pad = (8 - hl % 8) % 8;
    char path[1024];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    uint8_t le[8];
    for (int k = 0; k < 8; k++) le[k] = (uint8_t)((uint64_t)(hl + pad) >> (8 * k));
    assert_int_equal(fwrite(le, 1, 8, f), 8);
    assert_int_equal(fwrite(js, 1, hl, f), hl);
    assert_int_equal(fwrite("        ", 1, pad, f), pad);
    free(js);
    for (int i = 0; i < nt; i++) {
        const llm_tensor *t = gguf_tensor_at(g, i);
        int64_t n = t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3];
        float *x = malloc((size_t)n * sizeof *x);
        assert_non_null(x);
        llm_dequantize_ref(t->type, t->data, x, n);
        int heads = strstr(t->name, ".attn_q.") ? n_head : strstr(t->name, ".attn_k.") ? n_head_kv : 0;
        if (heads) {
            float *y = malloc((size_t)n * sizeof *y);
            assert_non_null(y);
            unpermute_rows(x, y, heads, (int)t->ne[1], (int)t->ne[0]);
            free(x);
            x = y;
        }
        assert_int_equal(fwrite(x, sizeof *x, (size_t)n, f), (size_t)n);
        free(x);
    }
    assert_int_equal(fclose(f), 0);
}

static void write_tokenizer(const gguf_file *g, const char *dir)
{
    const gguf_kv *toks = gguf_get(g, "tokenizer.ggml.tokens");
    const gguf_kv *merges = gguf_get(g, "tokenizer.ggml.merges");
    const gguf_kv *types = gguf_get(g, "tokenizer.ggml.token_type");
    assert_non_null(toks);
    assert_non_null(merges);
    assert_non_null(types);
    assert_int_equal(types->n, toks->n);
    assert_int_equal(types->arr_type, GGUF_T_I32);
    const int32_t *tt = types->arr;
    json_t *vocab = json_object(), *added = json_array(), *mj = json_array();
    for (uint64_t i = 0; i < toks->n; i++) {
        json_object_set_new(vocab, toks->strs[i], json_integer((json_int_t)i));
        if (tt[i] == 3 || tt[i] == 4)
            json_array_append_new(added, json_pack("{s:I, s:s, s:b, s:b, s:b, s:b, s:b}", "id",
                                                   (json_int_t)i, "content", toks->strs[i],
                                                   "single_word", 0, "lstrip", 0, "rstrip", 0,
                                                   "normalized", 0, "special", tt[i] == 3));
    }
    for (uint64_t i = 0; i < merges->n; i++) json_array_append_new(mj, json_string(merges->strs[i]));
    json_t *pre = json_pack(
        "{s:s, s:[{s:s, s:b}, {s:s, s:b, s:b, s:b}]}", "type", "Sequence", "pretokenizers", "type",
        "Digits", "individual_digits", 1, "type", "ByteLevel", "add_prefix_space", 0, "trim_offsets",
        1, "use_regex", 1);
    json_t *root = json_object();
    json_object_set_new(root, "version", json_string("1.0"));
    json_object_set_new(root, "added_tokens", added);
    json_object_set_new(root, "normalizer", json_null());
    json_object_set_new(root, "pre_tokenizer", pre);
    json_object_set_new(root, "post_processor",
                        json_pack("{s:s, s:b, s:b, s:b}", "type", "ByteLevel", "add_prefix_space", 1,
                                  "trim_offsets", 0, "use_regex", 1));
    json_object_set_new(root, "decoder",
                        json_pack("{s:s, s:b, s:b, s:b}", "type", "ByteLevel", "add_prefix_space", 1,
                                  "trim_offsets", 1, "use_regex", 1));
    json_object_set_new(root, "model",
                        json_pack("{s:s, s:n, s:n, s:n, s:n, s:b, s:b, s:o, s:o}", "type", "BPE",
                                  "dropout", "unk_token", "continuing_subword_prefix",
                                  "end_of_word_suffix", "fuse_unk", 0, "byte_fallback", 0, "vocab",
                                  vocab, "merges", mj));
    assert_int_equal(dump_json(root, dir, "tokenizer.json"), 0);

    int64_t bos = gguf_u(g, "tokenizer.ggml.bos_token_id"), eos = gguf_u(g, "tokenizer.ggml.eos_token_id");
    json_t *cfg = json_object();
    json_object_set_new(cfg, "add_bos_token", json_false());
    json_object_set_new(cfg, "bos_token", json_string(toks->strs[bos]));
    json_object_set_new(cfg, "eos_token", json_string(toks->strs[eos]));
    const char *tmpl = gguf_get_str(g, "tokenizer.chat_template");
    if (tmpl) json_object_set_new(cfg, "chat_template", json_string(tmpl));
    json_object_set_new(cfg, "tokenizer_class", json_string("GPT2Tokenizer"));
    assert_int_equal(dump_json(cfg, dir, "tokenizer_config.json"), 0);
}

/* ---- fixture ----------------------------------------------------------------- */

typedef struct fixture {
    char dir[256];
    llm_model *hf, *gguf;
} fixture;

static void remove_dir(const char *dir)
{
    static const char *const files[] = {"config.json", "model.safetensors", "tokenizer.json",
                                        "tokenizer_config.json"};
    char p[512];
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, files[i]);
        unlink(p);
    }
    rmdir(dir);
}

/* config.json variants that would run silently wrong must be refused, naming
 * the field: scaled rope, a head_dim that disagrees, untied embeddings without
 * lm_head.  The directory's config.json is restored afterwards. */
static void check_refusals(const char *dir)
{
    static const struct {
        const char *key, *json, *want;
    } cases[] = {
        {"rope_scaling", "{\"rope_type\": \"llama3\", \"factor\": 8.0}", "rope_scaling"},
        {"head_dim", "32", "head_dim"},
        {"tie_word_embeddings", "false", "lm_head"},
    };
    char path[600];
    snprintf(path, sizeof path, "%s/config.json", dir);
    json_t *orig = json_load_file(path, 0, NULL);
    assert_non_null(orig);
    llm_opts o = {.n_threads = 1, .n_ctx = 256, .backend = "cpu"};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        json_t *c = json_deep_copy(orig);
        json_object_set_new(c, cases[i].key, json_loads(cases[i].json, JSON_DECODE_ANY, NULL));
        assert_int_equal(json_dump_file(c, path, 0), 0);
        json_decref(c);
        llm_model *m = NULL;
        doc_err err = {0};
        int rc = llm_model_open(dir, &o, &m, &err);
        printf("config %s = %s: %s\n", cases[i].key, cases[i].json, rc ? err.msg : "opened");
        assert_true(rc < 0);
        assert_non_null(strstr(err.msg, cases[i].want));
    }
    assert_int_equal(json_dump_file(orig, path, 0), 0);
    json_decref(orig);
}

static int setup(void **state)
{
    char path[512];
    test_model_path(path, sizeof path, TEST_GGUF);
    fixture *fx = calloc(1, sizeof *fx);
    assert_non_null(fx);
    const char *tmp = getenv("TMPDIR");
    snprintf(fx->dir, sizeof fx->dir, "%s/docent_hf_llama_XXXXXX", tmp && *tmp ? tmp : "/tmp");
    assert_non_null(mkdtemp(fx->dir));
    double t0 = time_now();
    gguf_file *g;
    doc_err err = {0};
    assert_int_equal(gguf_open(path, &g, &err), DOC_OK);
    write_config(g, fx->dir);
    write_safetensors(g, fx->dir);
    write_tokenizer(g, fx->dir);
    gguf_close(&g);
    printf("built %s in %.1fs\n", fx->dir, time_now() - t0);
    llm_opts o = {.n_threads = 2, .n_ctx = 2048, .backend = "cpu"};
    check_refusals(fx->dir);
    int rc = llm_model_open(fx->dir, &o, &fx->hf, &err);
    if (rc) printf("llm_model_open(%s): %s\n", fx->dir, err.msg);
    remove_dir(fx->dir); /* the open model keeps its mapping; nothing is left behind */
    assert_int_equal(rc, DOC_OK);
    assert_int_equal(llm_model_open(path, &o, &fx->gguf, &err), DOC_OK);
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    fixture *fx = *state;
    if (!fx) return 0;
    llm_model_close(&fx->hf);
    llm_model_close(&fx->gguf);
    free(fx);
    return 0;
}

/* ---- tests ------------------------------------------------------------------- */

static void test_hf_open(void **state)
{
    fixture *fx = *state;
    assert_int_equal(llm_model_kind(fx->hf), LLM_DECODER);
    assert_int_equal(llm_n_vocab(fx->hf), 49152);
    assert_int_equal(llm_n_ctx(fx->hf), 2048);
    printf("hf model: %s\n", llm_model_desc(fx->hf));
    assert_non_null(strstr(llm_model_desc(fx->hf), "llama 30L d576 f32"));
}

static void test_hf_greedy(void **state)
{
    fixture *fx = *state;
    f32ref_check(fx->hf, "hf");
}

/* 1 if both models tokenize text to the same ids; prints the first difference */
static int same_ids(const fixture *fx, const char *text, size_t len, int parse_special, int line)
{
    int32_t *a = NULL, *b = NULL;
    int na = 0, nb = 0;
    doc_err err = {0};
    assert_int_equal(llm_tokenize(fx->hf, text, len, 0, parse_special, &a, &na, &err), DOC_OK);
    assert_int_equal(llm_tokenize(fx->gguf, text, len, 0, parse_special, &b, &nb, &err), DOC_OK);
    int ok = na == nb && (na == 0 || !memcmp(a, b, (size_t)na * sizeof *a));
    if (!ok) {
        int k = 0;
        while (k < na && k < nb && a[k] == b[k]) k++;
        printf("line %d: hf %d ids, gguf %d ids, first difference at %d (hf %d, gguf %d)\n", line, na, nb,
               k, k < na ? a[k] : -1, k < nb ? b[k] : -1);
    }
    free(a);
    free(b);
    return ok;
}

static void test_hf_tokenizer(void **state)
{
    fixture *fx = *state;
    char *data;
    size_t len;
    doc_err err = {0};
    assert_int_equal(file_read_all("tests/fixtures/tokens/corpus.txt", 1 << 26, &data, &len, &err), DOC_OK);
    int lines = 0, same = 0;
    double t0 = time_now();
    for (size_t p = 0; p < len;) {
        size_t e = p;
        while (e < len && data[e] != '\n') e++;
        lines++;
        same += same_ids(fx, data + p, e - p, 0, lines);
        p = e + 1;
    }
    free(data);

    llm_chat_msg msgs[] = {
        {"system", "You are a helpful assistant. Answer in 3 sentences."},
        {"user", "What's the capital of France?\n\nIt's   Paris, isn't it? 12345 <|im_end|>"},
        {"assistant", "Yes: Paris (pop. 2,102,650 in 2023)."},
        {"user", "¿Y la de España? 日本語も"},
    };
    buf chat;
    buf_init(&chat, 0);
    assert_int_equal(llm_chat_render(fx->gguf, msgs, 4, 1, &chat, &err), DOC_OK);
    int chat_ok = same_ids(fx, chat.data, chat.len, 1, -1);
    /* the directory's tokenizer_config.json template renders the same text,
     * including the default system prompt when none is given */
    for (int first = 0; first < 2; first++) {
        buf a, b;
        buf_init(&a, 0);
        buf_init(&b, 0);
        assert_int_equal(llm_chat_render(fx->gguf, msgs + first, 4 - first, 1, &a, &err), DOC_OK);
        assert_int_equal(llm_chat_render(fx->hf, msgs + first, 4 - first, 1, &b, &err), DOC_OK);
        assert_string_equal(a.data, b.data);
        buf_free(&a);
        buf_free(&b);
    }
    int32_t *ids = NULL;
    int n = 0, n_special = 0;
    assert_int_equal(llm_tokenize(fx->hf, chat.data, chat.len, 0, 1, &ids, &n, &err), DOC_OK);
    for (int i = 0; i < n; i++) n_special += ids[i] == 1 || ids[i] == 2; /* <|im_start|>, <|im_end|> */
    free(ids);
    buf_free(&chat);
    printf("hf tokenizer: %d/%d corpus lines identical, chat %s (%d ids, %d special); %.1fs\n", same,
           lines, chat_ok ? "identical" : "DIFFERENT", n, n_special, time_now() - t0);
    assert_true(lines > 2000);
    assert_int_equal(same, lines);
    assert_true(chat_ok);
    assert_true(n_special >= 8);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hf_open),
        cmocka_unit_test(test_hf_greedy),
        cmocka_unit_test(test_hf_tokenizer),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
