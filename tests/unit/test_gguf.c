/*
 * test_gguf.c - the GGUF reader and the Hugging Face directory reader on the
 * real default models.
 *
 * Expected values come from the `gguf` PyPI package's GGUFReader and from
 * safetensors.numpy on the same files (see tests/reference/gen_quant.py for
 * the dequantized rows in tests/fixtures/quant/smollm2_rows.txt).
 */
#include "testutil.h"

#include <math.h>

#include "core/json.h"
#include "llm/internal.h"

static gguf_file *open_gguf(void)
{
    char path[1024];
    test_model_path(path, sizeof path, TEST_GGUF);
    gguf_file *g = NULL;
    doc_err err = {0};
    double t0 = time_now();
    int rc = gguf_open(path, &g, &err);
    double dt = time_now() - t0;
    if (rc) fail_msg("gguf_open: %s", err.msg);
    print_message("gguf_open: %.1f ms\n", dt * 1e3);
    return g;
}

static void test_gguf_metadata(void **state)
{
    (void)state;
    gguf_file *g = open_gguf();
    doc_err err = {0};
    assert_string_equal(gguf_get_str(g, "general.architecture"), "llama");
    assert_string_equal(gguf_get_str(g, "general.name"), "Smollm2 135M 8k Lc100K Mix1 Ep2");
    uint32_t u = 0;
    assert_int_equal(gguf_get_u32(g, "llama.block_count", &u, &err), DOC_OK);
    assert_int_equal(u, 30);
    assert_int_equal(gguf_get_u32(g, "llama.embedding_length", &u, &err), DOC_OK);
    assert_int_equal(u, 576);
    assert_int_equal(gguf_get_u32(g, "llama.attention.head_count_kv", &u, &err), DOC_OK);
    assert_int_equal(u, 3);
    int64_t i64 = 0;
    assert_int_equal(gguf_get_i64(g, "llama.context_length", &i64, &err), DOC_OK);
    assert_int_equal(i64, 8192);
    float f = 0;
    assert_int_equal(gguf_get_f32(g, "llama.rope.freq_base", &f, &err), DOC_OK);
    assert_float_equal(f, 100000.0f, 0);
    assert_int_equal(gguf_get_f32(g, "llama.attention.layer_norm_rms_epsilon", &f, &err), DOC_OK);
    assert_float_equal(f, 1e-5f, 1e-12);
    int b = 1;
    assert_int_equal(gguf_get_bool(g, "tokenizer.ggml.add_bos_token", &b, &err), DOC_OK);
    assert_int_equal(b, 0);

    /* absent keys leave the output alone; wrong types name the key */
    u = 1234;
    assert_int_equal(gguf_get_u32(g, "llama.no_such_key", &u, &err), DOC_ENOTFOUND);
    assert_int_equal(u, 1234);
    assert_null(gguf_get(g, "llama.no_such_key"));
    assert_null(gguf_get_str(g, "llama.block_count"));
    assert_int_equal(gguf_get_u32(g, "general.architecture", &u, &err), DOC_EFORMAT);
    assert_non_null(strstr(err.msg, "general.architecture"));
    assert_int_equal(gguf_get_f32(g, "llama.block_count", &f, &err), DOC_EFORMAT);
    assert_int_equal(gguf_get_bool(g, "llama.block_count", &b, &err), DOC_EFORMAT);

    /* arrays */
    const gguf_kv *tok = gguf_get(g, "tokenizer.ggml.tokens");
    assert_non_null(tok);
    assert_int_equal(tok->type, GGUF_T_ARRAY);
    assert_int_equal(tok->arr_type, GGUF_T_STRING);
    assert_int_equal(tok->n, 49152);
    assert_string_equal(tok->strs[0], "<|endoftext|>");
    assert_int_equal(tok->lens[0], 13);
    assert_string_equal(tok->strs[49151], "ectable");
    const gguf_kv *merges = gguf_get(g, "tokenizer.ggml.merges");
    assert_int_equal(merges->n, 48900);
    assert_string_equal(merges->strs[0], "\xC4\xA0 t");
    const gguf_kv *tt = gguf_get(g, "tokenizer.ggml.token_type");
    assert_int_equal(tt->arr_type, GGUF_T_I32);
    assert_int_equal(tt->n, 49152);
    assert_int_equal(((uintptr_t)tt->arr) % 4, 0);
    assert_int_equal(((const int32_t *)tt->arr)[0], 3);

    /* kv_at walks the same entries gguf_get finds */
    assert_int_equal(gguf_n_kv(g), 33);
    for (int i = 0; i < gguf_n_kv(g); i++) assert_ptr_equal(gguf_get(g, gguf_kv_at(g, i)->key), gguf_kv_at(g, i));
    assert_null(gguf_kv_at(g, -1));
    assert_null(gguf_kv_at(g, gguf_n_kv(g)));
    gguf_close(&g);
    assert_null(g);
    gguf_close(&g); /* NULL is fine */
}

static void test_gguf_tensors(void **state)
{
    (void)state;
    char path[1024];
    test_model_path(path, sizeof path, TEST_GGUF);
    /* open over our own mapping so data pointers can be checked against it */
    file_map m;
    doc_err err = {0};
    assert_int_equal(file_map_open(path, &m, &err), DOC_OK);
    gguf_file *g = NULL;
    if (gguf_open_mem(m.data, m.size, path, &g, &err)) fail_msg("%s", err.msg);
    assert_string_equal(gguf_name(g), path);
    assert_int_equal(gguf_n_tensors(g), 272);

    const llm_tensor *t = gguf_tensor(g, "token_embd.weight");
    assert_non_null(t);
    assert_int_equal(t->n_dims, 2);
    assert_int_equal(t->ne[0], 576);
    assert_int_equal(t->ne[1], 49152);
    assert_int_equal(t->ne[2], 1);
    assert_int_equal(t->type, LLM_T_Q8_0);
    assert_int_equal(t->nbytes, 30081024);
    assert_int_equal((const uint8_t *)t->data - m.data, 1785664); /* GGUFReader's data_offset */

    int counts[LLM_T_COUNT] = {0};
    size_t end_max = 0;
    for (int i = 0; i < gguf_n_tensors(g); i++) {
        const llm_tensor *ti = gguf_tensor_at(g, i);
        assert_ptr_equal(gguf_tensor(g, ti->name), ti);
        const uint8_t *d = ti->data;
        assert_true(d >= m.data && d + ti->nbytes <= m.data + m.size);
        assert_int_equal((size_t)(d - m.data) % 32, 0);
        int64_t nel = ti->ne[0] * ti->ne[1] * ti->ne[2] * ti->ne[3];
        assert_int_equal(ti->nbytes, llm_row_bytes(ti->type, ti->ne[0]) * (size_t)(nel / ti->ne[0]));
        counts[ti->type]++;
        if ((size_t)(d - m.data) + ti->nbytes > end_max) end_max = (size_t)(d - m.data) + ti->nbytes;
    }
    assert_int_equal(end_max, m.size); /* the last tensor ends the file */
    assert_int_equal(counts[LLM_T_Q4_1], 210);
    assert_int_equal(counts[LLM_T_F32], 61);
    assert_int_equal(counts[LLM_T_Q8_0], 1);
    assert_non_null(gguf_tensor(g, "blk.29.ffn_down.weight"));
    assert_null(gguf_tensor(g, "blk.30.ffn_down.weight"));
    assert_null(gguf_tensor(g, ""));
    assert_null(gguf_tensor_at(g, 272));

    /* real rows dequantize to what the gguf package gives */
    FILE *f = fopen("tests/fixtures/quant/smollm2_rows.txt", "r");
    assert_non_null(f);
    char line[512], name[256], val[64];
    int n = 0;
    long row, col;
    while (fgets(line, sizeof line, f)) {
        if (line[0] == '#' || sscanf(line, "%255s %ld %ld %63s", name, &row, &col, val) != 4) continue;
        const llm_tensor *ti = gguf_tensor(g, name);
        assert_non_null(ti);
        float *out = malloc((size_t)ti->ne[0] * sizeof *out);
        size_t rb = llm_row_bytes(ti->type, ti->ne[0]);
        llm_dequantize_ref(ti->type, (const uint8_t *)ti->data + rb * (size_t)row, out, ti->ne[0]);
        float want = strtof(val, NULL);
        if (out[col] != want) fail_msg("%s[%ld][%ld] = %.9g, gguf says %.9g", name, row, col, out[col], want);
        free(out);
        n++;
    }
    fclose(f);
    assert_true(n >= 50);
    gguf_close(&g);
    file_map_close(&m);
}

/* opening is mmap + header parsing: milliseconds, not a read of 98 MB */
static void test_gguf_open_fast(void **state)
{
    (void)state;
    char path[1024];
    test_model_path(path, sizeof path, TEST_GGUF);
    double best = 1e9;
    for (int i = 0; i < 5; i++) {
        gguf_file *g = NULL;
        doc_err err = {0};
        double t0 = time_now();
        assert_int_equal(gguf_open(path, &g, &err), DOC_OK);
        double dt = time_now() - t0;
        gguf_close(&g);
        if (dt < best) best = dt;
    }
    print_message("gguf_open best of 5: %.2f ms\n", best * 1e3);
    assert_true(best < 0.5); /* generous for sanitizer builds on a loaded machine */
}

/* a file from an independent writer (the gguf package's GGUFWriter): every
 * kv value type, every in-file tensor type (tests/reference/gen_quant.py) */
static void test_gguf_writer_types(void **state)
{
    (void)state;
    const char *path = "tests/fixtures/quant/writer_types.gguf";
    gguf_file *g = NULL;
    doc_err err = {0};
    if (gguf_open(path, &g, &err)) fail_msg("%s", err.msg);
    const gguf_kv *kv;
    assert_non_null(kv = gguf_get(g, "t.u8"));
    assert_int_equal(kv->type, GGUF_T_U8);
    assert_int_equal(kv->v.u, 200);
    assert_int_equal(gguf_get(g, "t.i8")->v.i, -100);
    assert_int_equal(gguf_get(g, "t.u16")->v.u, 60000);
    assert_int_equal(gguf_get(g, "t.i16")->v.i, -30000);
    uint32_t u;
    assert_int_equal(gguf_get_u32(g, "t.u32", &u, &err), DOC_OK);
    assert_int_equal(u, 4000000000u);
    assert_int_equal(gguf_get_u32(g, "t.i32", &u, &err), DOC_EFORMAT); /* negative */
    int64_t i64;
    assert_int_equal(gguf_get_i64(g, "t.i32", &i64, &err), DOC_OK);
    assert_int_equal(i64, -2000000000);
    assert_int_equal(gguf_get_i64(g, "t.i64", &i64, &err), DOC_OK);
    assert_int_equal(i64, -(1LL << 40));
    assert_int_equal(gguf_get_u32(g, "t.u64", &u, &err), DOC_EFORMAT); /* too big */
    assert_int_equal(gguf_get_i64(g, "t.u64", &i64, &err), DOC_OK);
    assert_int_equal(i64, 1LL << 40);
    float f;
    assert_int_equal(gguf_get_f32(g, "t.f32", &f, &err), DOC_OK);
    assert_float_equal(f, 0.25f, 0);
    assert_int_equal(gguf_get_f32(g, "t.f64", &f, &err), DOC_OK);
    assert_float_equal(f, -1.5f, 0);
    int b;
    assert_int_equal(gguf_get_bool(g, "t.bool", &b, &err), DOC_OK);
    assert_int_equal(b, 1);
    assert_string_equal(gguf_get_str(g, "t.str"), "h\xC3\xA9llo");
    assert_int_equal(gguf_get(g, "t.str")->len, 6);
    kv = gguf_get(g, "t.arr_i32");
    assert_int_equal(kv->arr_type, GGUF_T_I32);
    assert_int_equal(kv->n, 3);
    assert_int_equal(((const int32_t *)kv->arr)[1], -2);
    kv = gguf_get(g, "t.arr_f32");
    assert_int_equal(kv->arr_type, GGUF_T_F32);
    assert_float_equal(((const float *)kv->arr)[1], 1.5f, 0);
    kv = gguf_get(g, "t.arr_str");
    assert_int_equal(kv->n, 3);
    assert_string_equal(kv->strs[1], "");
    assert_int_equal(kv->lens[2], 2);

    FILE *fx = fopen("tests/fixtures/quant/writer_types.txt", "r");
    assert_non_null(fx);
    char line[256], name[64], val[64];
    int type, n = 0;
    long ne0, ne1, idx;
    while (fgets(line, sizeof line, fx)) {
        if (line[0] == '#' ||
            sscanf(line, "%63s %d %ld %ld %ld %63s", name, &type, &ne0, &ne1, &idx, val) != 6)
            continue;
        const llm_tensor *t = gguf_tensor(g, name);
        if (!t) fail_msg("missing tensor %s", name);
        assert_int_equal(t->type, type);
        assert_int_equal(t->ne[0], ne0);
        assert_int_equal(t->ne[1], ne1);
        float *out = malloc((size_t)(ne0 * ne1) * sizeof *out);
        llm_dequantize_ref(t->type, t->data, out, ne0 * ne1);
        float want = strtof(val, NULL);
        if (out[idx] != want) fail_msg("%s[%ld] = %.9g, gguf says %.9g", name, idx, out[idx], want);
        free(out);
        n++;
    }
    fclose(fx);
    assert_int_equal(n, 9 * 6);
    gguf_close(&g);
}

static void test_gguf_missing(void **state)
{
    (void)state;
    gguf_file *g = (gguf_file *)1;
    doc_err err = {0};
    assert_int_equal(gguf_open("/nonexistent/x.gguf", &g, &err), DOC_ENOTFOUND);
    assert_null(g);
    assert_non_null(strstr(err.msg, "/nonexistent/x.gguf"));
}

/* ---- Hugging Face directory ------------------------------------------------------ */

static void test_hf_minilm(void **state)
{
    (void)state;
    char dir[1024];
    test_model_path(dir, sizeof dir, TEST_EMBEDDER);
    hf_model *h = NULL;
    doc_err err = {0};
    double t0 = time_now();
    if (hf_open(dir, &h, &err)) fail_msg("hf_open: %s", err.msg);
    print_message("hf_open: %.1f ms\n", (time_now() - t0) * 1e3);
    assert_string_equal(hf_dir(h), dir);
    const json_t *cfg = hf_config(h);
    assert_string_equal(json_str_or(cfg, "model_type", ""), "bert");
    assert_int_equal(json_int_or(cfg, "hidden_size", 0), 384);

    /* 104 safetensors entries less the int64 position_ids buffer */
    assert_int_equal(hf_n_tensors(h), 103);
    assert_null(hf_tensor(h, "embeddings.position_ids"));

    const llm_tensor *q = hf_tensor(h, "blk.0.attn_q.weight");
    assert_non_null(q);
    assert_int_equal(q->type, LLM_T_F32);
    assert_int_equal(q->n_dims, 2);
    assert_int_equal(q->ne[0], 384);
    assert_int_equal(q->ne[1], 384);
    assert_int_equal(q->nbytes, 384 * 384 * 4);
    float v;
    memcpy(&v, (const float *)q->data + 1 * 384 + 2, 4); /* HF [1, 2] */
    assert_float_equal(v, 0x1.36e7bcp-4f, 0);
    memcpy(&v, (const float *)q->data + 383 * 384 + 0, 4);
    assert_float_equal(v, 0x1.320804p-4f, 0);

    const llm_tensor *e = hf_tensor(h, "token_embd.weight");
    assert_non_null(e);
    assert_int_equal(e->type, LLM_T_F32);
    assert_int_equal(e->ne[0], 384);
    assert_int_equal(e->ne[1], 30522);
    memcpy(&v, (const float *)e->data, 4);
    assert_float_equal(v, -0x1.478p-6f, 0);
    memcpy(&v, (const float *)e->data + 101 * 384 + 5, 4);
    assert_float_equal(v, -0x1.588b34p-10f, 0);
    memcpy(&v, (const float *)e->data + 30521L * 384 + 383, 4);
    assert_float_equal(v, 0x1.2b80f2p-8f, 0);

    static const char *const names[] = {
        "position_embd.weight", "token_types.weight", "token_embd_norm.weight",
        "token_embd_norm.bias", "blk.5.attn_k.bias", "blk.5.attn_v.weight",
        "blk.0.attn_output.weight", "blk.0.attn_output_norm.weight", "blk.3.ffn_up.weight",
        "blk.3.ffn_down.weight", "blk.5.layer_output_norm.bias", "pooler.dense.weight",
    };
    for (size_t i = 0; i < sizeof names / sizeof *names; i++)
        if (!hf_tensor(h, names[i])) fail_msg("missing %s", names[i]);
    const llm_tensor *up = hf_tensor(h, "blk.3.ffn_up.weight");
    assert_int_equal(up->ne[0], 384);
    assert_int_equal(up->ne[1], 1536);
    const llm_tensor *pe = hf_tensor(h, "position_embd.weight");
    assert_int_equal(pe->ne[1], 512);
    const llm_tensor *nb = hf_tensor(h, "token_embd_norm.bias");
    assert_int_equal(nb->n_dims, 1);
    assert_int_equal(nb->ne[0], 384);
    assert_int_equal(nb->ne[1], 1);
    for (int i = 0; i < hf_n_tensors(h); i++)
        assert_ptr_equal(hf_tensor(h, hf_tensor_at(h, i)->name), hf_tensor_at(h, i));
    hf_close(&h);
    assert_null(h);
}

static void test_hf_missing(void **state)
{
    (void)state;
    hf_model *h = NULL;
    doc_err err = {0};
    assert_true(hf_open("/nonexistent-dir", &h, &err) < 0);
    assert_null(h);
    assert_non_null(strstr(err.msg, "/nonexistent-dir"));
}

static void test_hf_names(void **state)
{
    (void)state;
    static const char *const cases[][2] = {
        {"embeddings.word_embeddings.weight", "token_embd.weight"},
        {"bert.embeddings.word_embeddings.weight", "token_embd.weight"},
        {"embeddings.position_embeddings.weight", "position_embd.weight"},
        {"embeddings.token_type_embeddings.weight", "token_types.weight"},
        {"embeddings.LayerNorm.weight", "token_embd_norm.weight"},
        {"embeddings.LayerNorm.gamma", "token_embd_norm.weight"},
        {"bert.embeddings.LayerNorm.beta", "token_embd_norm.bias"},
        {"encoder.layer.3.attention.self.query.weight", "blk.3.attn_q.weight"},
        {"encoder.layer.3.attention.self.key.bias", "blk.3.attn_k.bias"},
        {"encoder.layer.11.attention.self.value.weight", "blk.11.attn_v.weight"},
        {"bert.encoder.layer.0.attention.output.dense.weight", "blk.0.attn_output.weight"},
        {"encoder.layer.0.attention.output.LayerNorm.gamma", "blk.0.attn_output_norm.weight"},
        {"encoder.layer.2.intermediate.dense.bias", "blk.2.ffn_up.bias"},
        {"encoder.layer.2.output.dense.weight", "blk.2.ffn_down.weight"},
        {"encoder.layer.2.output.LayerNorm.bias", "blk.2.layer_output_norm.bias"},
        {"model.embed_tokens.weight", "token_embd.weight"},
        {"model.norm.weight", "output_norm.weight"},
        {"lm_head.weight", "output.weight"},
        {"model.layers.0.self_attn.q_proj.weight", "blk.0.attn_q.weight"},
        {"model.layers.0.self_attn.q_proj.bias", "blk.0.attn_q.bias"},
        {"model.layers.27.self_attn.k_proj.weight", "blk.27.attn_k.weight"},
        {"model.layers.1.self_attn.v_proj.bias", "blk.1.attn_v.bias"},
        {"model.layers.1.self_attn.o_proj.weight", "blk.1.attn_output.weight"},
        {"model.layers.9.input_layernorm.weight", "blk.9.attn_norm.weight"},
        {"model.layers.9.post_attention_layernorm.weight", "blk.9.ffn_norm.weight"},
        {"model.layers.4.mlp.gate_proj.weight", "blk.4.ffn_gate.weight"},
        {"model.layers.4.mlp.up_proj.weight", "blk.4.ffn_up.weight"},
        {"model.layers.4.mlp.down_proj.weight", "blk.4.ffn_down.weight"},
    };
    char out[128];
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        memset(out, 0, sizeof out);
        if (hf_gguf_name(cases[i][0], out, sizeof out) != 0) fail_msg("%s: unmapped", cases[i][0]);
        if (strcmp(out, cases[i][1]) != 0) fail_msg("%s -> %s, want %s", cases[i][0], out, cases[i][1]);
    }
    static const char *const unmapped[] = {
        "pooler.dense.weight", "embeddings.position_ids", "encoder.layer.x.attention.self.query.weight",
        "encoder.layer.3.attention.self.query", "model.layers.1.mlp.gate_proj.scales",
        "encoder.layer.3.attention.self.querying.weight", "model.layers..mlp.up_proj.weight", "",
        "weight", "lm_head.weight.extra",
    };
    for (size_t i = 0; i < sizeof unmapped / sizeof *unmapped; i++)
        if (hf_gguf_name(unmapped[i], out, sizeof out) == 0) fail_msg("'%s' mapped to %s", unmapped[i], out);
    /* too small an output buffer is a failure, not a truncation */
    assert_int_equal(hf_gguf_name("model.layers.4.mlp.down_proj.weight", out, 10), -1);
    assert_int_equal(hf_gguf_name("lm_head.weight", out, sizeof out), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gguf_metadata), cmocka_unit_test(test_gguf_tensors),
        cmocka_unit_test(test_gguf_open_fast), cmocka_unit_test(test_gguf_writer_types),
        cmocka_unit_test(test_gguf_missing),
        cmocka_unit_test(test_hf_minilm),     cmocka_unit_test(test_hf_missing),
        cmocka_unit_test(test_hf_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
