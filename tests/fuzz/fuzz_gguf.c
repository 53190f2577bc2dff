/*
 * fuzz_gguf.c - libFuzzer target for the GGUF reader (llm/gguf.c).
 *
 * Feeds the input to gguf_open_mem and, when it opens, walks every kv and
 * every tensor the way a loader would (typed getters, array elements, the
 * first and last byte of each tensor's data, the dequantizer on the first
 * block), so a bound the reader failed to check shows up under ASan.
 *
 *   make fuzz && build/fuzz/fuzz_gguf -max_total_time=60 corpus/
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "llm/internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    gguf_file *g = NULL;
    doc_err err = {0};
    if (gguf_open_mem(data, size, "fuzz", &g, &err) != 0) {
        if (g || !err.msg[0] || err.rc >= 0) abort(); /* failures must be clean */
        return 0;
    }
    volatile uint64_t sink = 0;
    for (int i = 0; i < gguf_n_kv(g); i++) {
        const gguf_kv *kv = gguf_kv_at(g, i);
        if (gguf_get(g, kv->key) != kv) abort();
        uint32_t u;
        int64_t v;
        float f;
        int b;
        gguf_get_u32(g, kv->key, &u, &err);
        gguf_get_i64(g, kv->key, &v, &err);
        gguf_get_f32(g, kv->key, &f, &err);
        gguf_get_bool(g, kv->key, &b, &err);
        if (kv->type == GGUF_T_STRING) sink += strlen(kv->str) <= kv->len ? kv->len : 0;
        if (kv->type != GGUF_T_ARRAY || kv->n == 0) continue;
        if (kv->arr_type == GGUF_T_STRING) {
            for (uint64_t j = 0; j < kv->n; j++) sink += (uint8_t)kv->strs[j][kv->lens[j]];
        } else if (kv->arr) {
            const uint8_t *p = kv->arr;
            sink += p[0];
        }
    }
    float block[256];
    for (int i = 0; i < gguf_n_tensors(g); i++) {
        const llm_tensor *t = gguf_tensor_at(g, i);
        if (gguf_tensor(g, t->name) != t) abort();
        const llm_type_info *ti = llm_type(t->type);
        if (!ti || !ti->in_files || t->ne[0] % ti->block) abort();
        const uint8_t *d = t->data;
        if (d < data || d + t->nbytes > data + size) abort();
        if (t->nbytes) sink += d[0] + d[t->nbytes - 1];
        if (t->nbytes >= ti->block_size) llm_dequantize_ref(t->type, d, block, ti->block);
    }
    (void)sink;
    gguf_close(&g);
    return 0;
}
