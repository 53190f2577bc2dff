/*
 * hf.c - Hugging Face model directories: config.json + safetensors.
 *
 * A safetensors file is an 8-byte little-endian header length N, N bytes of
 * JSON ({"name": {"dtype", "shape", "data_offsets": [begin, end]}, ...,
 * "__metadata__": {...}}) and the tensor bytes, offsets relative to 8 + N.
 *
 * Design: every file is mapped read-only and its header validated in full
 * before any tensor is exposed: the header length is capped and must lie
 * inside the file, dtypes are F32/F16/BF16 only (HF's integer position_ids
 * buffer is skipped, anything else is refused by name), shape product times
 * element size must equal the byte range, ranges lie inside the data section
 * and do not overlap each other.  Tensor names are rewritten to GGUF names
 * (hf_gguf_name) so model code has one naming; a hash table finds them and
 * rejects two HF names that map to the same GGUF name.  ne[] is in GGUF order
 * (the reverse of the safetensors shape).
 */
#include "llm/internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/json.h"

#define HF_MAX_CONFIG (1u << 20)          /* config.json */
#define HF_MAX_INDEX (64u << 20)          /* model.safetensors.index.json */
#define HF_MAX_HEADER (100u << 20)        /* safetensors JSON header */
#define HF_MAX_SHARDS 1024
#define HF_MAX_DIMS 4

struct hf_model {
    char *dir;
    json_t *config;
    file_map *maps;
    int n_maps;
    llm_tensor *tensors;
    int n_tensors, cap;
    arena names;
    int32_t *hash; /* index + 1, 0 = empty */
    size_t hcap;
};

/* ---- HF -> GGUF names ------------------------------------------------------ */

typedef struct name_map {
    const char *hf, *gguf;
} name_map;

/* whole-model tensors (stems: the name without .weight/.bias) */
static const name_map global_names[] = {
    {"embeddings.word_embeddings", "token_embd"},
    {"embeddings.position_embeddings", "position_embd"},
    {"embeddings.token_type_embeddings", "token_types"},
    {"embeddings.LayerNorm", "token_embd_norm"},
    {"model.embed_tokens", "token_embd"},
    {"model.norm", "output_norm"},
    {"lm_head", "output"},
};

/* per-layer prefixes: "<prefix>N.<rest>" -> "blk.N.<gguf>" */
static const char *const layer_prefixes[] = {"encoder.layer.", "model.layers."};

static const name_map layer_names[] = {
    /* BERT */
    {"attention.self.query", "attn_q"},
    {"attention.self.key", "attn_k"},
    {"attention.self.value", "attn_v"},
    {"attention.output.dense", "attn_output"},
    {"attention.output.LayerNorm", "attn_output_norm"},
    {"intermediate.dense", "ffn_up"},
    {"output.dense", "ffn_down"},
    {"output.LayerNorm", "layer_output_norm"},
    /* llama, qwen2, mistral */
    {"self_attn.q_proj", "attn_q"},
    {"self_attn.k_proj", "attn_k"},
    {"self_attn.v_proj", "attn_v"},
    {"self_attn.o_proj", "attn_output"},
    {"input_layernorm", "attn_norm"},
    {"post_attention_layernorm", "ffn_norm"},
    {"mlp.gate_proj", "ffn_gate"},
    {"mlp.up_proj", "ffn_up"},
    {"mlp.down_proj", "ffn_down"},
};

/* parameter suffixes; old BERT checkpoints name LayerNorm parameters gamma/beta */
static const name_map suffixes[] = {
    {"weight", "weight"}, {"bias", "bias"}, {"gamma", "weight"}, {"beta", "bias"},
};

#define COUNT(a) (sizeof(a) / sizeof *(a))

/* hf_gguf_name: see internal.h. */
int hf_gguf_name(const char *hf_name, char *out, size_t cap)
{
    if (!hf_name || !out || cap == 0) return -1;
    if (strncmp(hf_name, "bert.", 5) == 0) hf_name += 5;
    const char *dot = strrchr(hf_name, '.');
    if (!dot) return -1;
    const char *suffix = NULL;
    for (size_t i = 0; i < COUNT(suffixes); i++)
        if (strcmp(dot + 1, suffixes[i].hf) == 0) suffix = suffixes[i].gguf;
    if (!suffix) return -1;
    size_t stem_len = (size_t)(dot - hf_name);
    int n = -1;
    for (size_t i = 0; i < COUNT(global_names); i++)
        if (strlen(global_names[i].hf) == stem_len &&
            memcmp(hf_name, global_names[i].hf, stem_len) == 0)
            n = snprintf(out, cap, "%s.%s", global_names[i].gguf, suffix);
    for (size_t p = 0; n < 0 && p < COUNT(layer_prefixes); p++) {
        size_t pl = strlen(layer_prefixes[p]);
        if (strncmp(hf_name, layer_prefixes[p], pl) != 0) continue;
        const char *s = hf_name + pl;
        long layer = 0;
        int digits = 0;
        while (s < dot && *s >= '0' && *s <= '9' && digits < 6) {
            layer = layer * 10 + (*s++ - '0');
            digits++;
        }
        if (!digits || *s != '.' || s >= dot) return -1;
        s++;
        size_t rest = (size_t)(dot - s);
        for (size_t i = 0; i < COUNT(layer_names); i++)
            if (strlen(layer_names[i].hf) == rest && memcmp(s, layer_names[i].hf, rest) == 0)
                n = snprintf(out, cap, "blk.%ld.%s.%s", layer, layer_names[i].gguf, suffix);
    }
    if (n < 0 || (size_t)n >= cap) return -1;
    return 0;
}

/* ---- tensor table ----------------------------------------------------------- */

static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return h;
}

static size_t slot_of(const hf_model *h, const char *name)
{
    size_t i = (size_t)hash_str(name) & (h->hcap - 1);
    while (h->hash[i] && strcmp(h->tensors[h->hash[i] - 1].name, name) != 0)
        i = (i + 1) & (h->hcap - 1);
    return i;
}

static int build_hash(hf_model *h, doc_err *err)
{
    h->hcap = 16;
    while (h->hcap < (size_t)h->n_tensors * 2) h->hcap *= 2;
    h->hash = calloc(h->hcap, sizeof *h->hash);
    if (!h->hash) return doc_errf(err, DOC_ENOMEM, "%s: out of memory", h->dir);
    for (int i = 0; i < h->n_tensors; i++) {
        size_t s = slot_of(h, h->tensors[i].name);
        if (h->hash[s])
            return doc_errf(err, DOC_EFORMAT, "%s: two tensors map to the name '%s'", h->dir,
                            h->tensors[i].name);
        h->hash[s] = i + 1;
    }
    return DOC_OK;
}

/* ---- safetensors -------------------------------------------------------------- */

typedef struct range {
    uint64_t begin, end;
    const char *name;
} range;

static int range_cmp(const void *a, const void *b)
{
    const range *x = a, *y = b;
    return x->begin < y->begin ? -1 : x->begin > y->begin ? 1 : (x->end > y->end) - (x->end < y->end);
}

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* read_u64_json: a non-negative JSON integer */
static int json_u64(const json_t *v, uint64_t *out)
{
    if (!json_is_integer(v) || json_integer_value(v) < 0) return -1;
    *out = (uint64_t)json_integer_value(v);
    return 0;
}

/* add_tensor: validate one header entry and append it */
static int add_tensor(hf_model *h, const char *path, const uint8_t *base, uint64_t data_len,
                      const char *hf_name, json_t *info, range *r, int *skipped, doc_err *err)
{
    *skipped = 0;
    if (!json_is_object(info))
        return doc_errf(err, DOC_EFORMAT, "%s: tensor '%s': header entry is not an object", path, hf_name);
    const char *dtype = json_string_value(json_object_get(info, "dtype"));
    json_t *shape = json_object_get(info, "shape"), *offs = json_object_get(info, "data_offsets");
    if (!dtype || !json_is_array(shape) || !json_is_array(offs) || json_array_size(offs) != 2)
        return doc_errf(err, DOC_EFORMAT, "%s: tensor '%s': needs dtype, shape and data_offsets [begin, end]",
                        path, hf_name);
    uint64_t begin, end;
    if (json_u64(json_array_get(offs, 0), &begin) || json_u64(json_array_get(offs, 1), &end) ||
        begin > end)
        return doc_errf(err, DOC_EFORMAT, "%s: tensor '%s': bad data_offsets", path, hf_name);
    if (end > data_len)
        return doc_errf(err, DOC_EFORMAT,
                        "%s: tensor '%s': data_offsets [%llu, %llu) past the %llu bytes of data",
                        path, hf_name, (unsigned long long)begin, (unsigned long long)end,
                        (unsigned long long)data_len);
    r->begin = begin;
    r->end = end;
    r->name = hf_name;

    int type;
    uint64_t elsize;
    if (strcmp(dtype, "F32") == 0) type = LLM_T_F32, elsize = 4;
    else if (strcmp(dtype, "F16") == 0) type = LLM_T_F16, elsize = 2;
    else if (strcmp(dtype, "BF16") == 0) type = LLM_T_BF16, elsize = 2;
    else if (ends_with(hf_name, "position_ids")) {
        *skipped = 1; /* BERT's buffer of 0..n-1, not a weight */
        return DOC_OK;
    } else
        return doc_errf(err, DOC_EUNSUPPORTED,
                        "%s: tensor '%s': dtype %.32s is not supported (F32, F16, BF16 only)", path,
                        hf_name, dtype);

    size_t nd = json_array_size(shape);
    if (nd > HF_MAX_DIMS)
        return doc_errf(err, DOC_EUNSUPPORTED, "%s: tensor '%s': %zu dimensions (at most %d)", path,
                        hf_name, nd, HF_MAX_DIMS);
    llm_tensor t = {.type = type, .n_dims = nd ? (int)nd : 1, .ne = {1, 1, 1, 1}};
    uint64_t nel = 1;
    for (size_t i = 0; i < nd; i++) {
        uint64_t d;
        if (json_u64(json_array_get(shape, i), &d) || d < 1 || d > (uint64_t)INT64_MAX / nel)
            return doc_errf(err, DOC_EFORMAT, "%s: tensor '%s': bad shape[%zu]", path, hf_name, i);
        nel *= d;
        t.ne[nd - 1 - i] = (int64_t)d; /* GGUF order: innermost first */
    }
    if (nel > UINT64_MAX / elsize || nel * elsize != end - begin)
        return doc_errf(err, DOC_EFORMAT,
                        "%s: tensor '%s': shape holds %llu elements of %s but the range has %llu bytes",
                        path, hf_name, (unsigned long long)nel, dtype,
                        (unsigned long long)(end - begin));
    t.data = base + begin;
    t.nbytes = (size_t)(end - begin);

    char gname[256];
    if (hf_gguf_name(hf_name, gname, sizeof gname) == 0) t.name = arena_strndup(&h->names, gname, strlen(gname));
    else t.name = arena_strndup(&h->names, hf_name, strlen(hf_name));
    if (!t.name) return doc_errf(err, DOC_ENOMEM, "%s: out of memory", path);
    if (h->n_tensors == h->cap) {
        int cap = h->cap ? h->cap * 2 : 128;
        llm_tensor *p = realloc(h->tensors, (size_t)cap * sizeof *p);
        if (!p) return doc_errf(err, DOC_ENOMEM, "%s: out of memory", path);
        h->tensors = p;
        h->cap = cap;
    }
    h->tensors[h->n_tensors++] = t;
    return DOC_OK;
}

/* load_safetensors: map path, validate its header, append its tensors */
static int load_safetensors(hf_model *h, const char *path, doc_err *err)
{
    file_map *m = &h->maps[h->n_maps];
    int rc = file_map_open(path, m, err);
    if (rc) return rc;
    h->n_maps++;
    json_t *root = NULL;
    range *ranges = NULL;
    if (m->size < 8) {
        rc = doc_errf(err, DOC_EFORMAT, "%s: %zu bytes is too short for a safetensors file", path, m->size);
        goto done;
    }
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = n << 8 | m->data[i];
    if (n > HF_MAX_HEADER) {
        rc = doc_errf(err, DOC_ELIMIT, "%s: header length %llu is over the limit of %u", path,
                      (unsigned long long)n, HF_MAX_HEADER);
        goto done;
    }
    if (n < 2 || n > m->size - 8) {
        rc = doc_errf(err, DOC_EFORMAT, "%s: header length %llu does not fit in the file of %zu bytes",
                      path, (unsigned long long)n, m->size);
        goto done;
    }
    json_error_t je;
    root = json_loadb((const char *)m->data + 8, (size_t)n, JSON_REJECT_DUPLICATES, &je);
    if (!root) {
        rc = doc_errf(err, DOC_EFORMAT, "%s: header json at byte %d: %s", path, je.position + 8, je.text);
        goto done;
    }
    if (!json_is_object(root)) {
        rc = doc_errf(err, DOC_EFORMAT, "%s: header is not a json object", path);
        goto done;
    }
    const uint8_t *base = m->data + 8 + n;
    uint64_t data_len = m->size - 8 - n;
    size_t nr = 0;
    ranges = malloc((json_object_size(root) + 1) * sizeof *ranges);
    if (!ranges) {
        rc = doc_errf(err, DOC_ENOMEM, "%s: out of memory", path);
        goto done;
    }
    const char *key;
    json_t *val;
    json_object_foreach(root, key, val)
    {
        if (strcmp(key, "__metadata__") == 0) continue;
        int skipped;
        if ((rc = add_tensor(h, path, base, data_len, key, val, &ranges[nr], &skipped, err))) goto done;
        nr++;
    }
    qsort(ranges, nr, sizeof *ranges, range_cmp);
    for (size_t i = 1; i < nr; i++)
        if (ranges[i].begin < ranges[i - 1].end) {
            rc = doc_errf(err, DOC_EFORMAT, "%s: tensors '%s' and '%s' overlap", path,
                          ranges[i - 1].name, ranges[i].name);
            goto done;
        }
    rc = DOC_OK;
done:
    free(ranges);
    json_decref(root); /* the tensor names were copied to the arena */
    return rc;
}

/* shard_list: the distinct file names of model.safetensors.index.json */
static int load_index(hf_model *h, const char *index_path, doc_err *err)
{
    json_t *root = NULL;
    int rc = json_load_capped(index_path, HF_MAX_INDEX, &root, err);
    if (rc) return rc;
    json_t *wm = json_object_get(root, "weight_map"), *files = json_array();
    if (!json_is_object(wm) || !files) {
        rc = doc_errf(err, DOC_EFORMAT, "%s: no weight_map object", index_path);
        goto done;
    }
    const char *key;
    json_t *val;
    json_object_foreach(wm, key, val)
    {
        const char *f = json_string_value(val);
        if (!f || !*f || strchr(f, '/') || f[0] == '.') {
            rc = doc_errf(err, DOC_EFORMAT, "%s: tensor '%s': bad shard file name", index_path, key);
            goto done;
        }
        int seen = 0;
        for (size_t i = 0; i < json_array_size(files) && !seen; i++)
            seen = strcmp(json_string_value(json_array_get(files, i)), f) == 0;
        if (!seen) {
            if (json_array_size(files) >= HF_MAX_SHARDS) {
                rc = doc_errf(err, DOC_ELIMIT, "%s: more than %d shards", index_path, HF_MAX_SHARDS);
                goto done;
            }
            json_array_append_new(files, json_string(f));
        }
    }
    h->maps = calloc(json_array_size(files) + 1, sizeof *h->maps);
    if (!h->maps) {
        rc = doc_errf(err, DOC_ENOMEM, "%s: out of memory", index_path);
        goto done;
    }
    for (size_t i = 0; i < json_array_size(files); i++) {
        char path[4096];
        if (path_join(path, sizeof path, h->dir, json_string_value(json_array_get(files, i)))) {
            rc = doc_errf(err, DOC_ELIMIT, "%s: path too long", h->dir);
            goto done;
        }
        if ((rc = load_safetensors(h, path, err))) goto done;
    }
done:
    json_decref(files);
    json_decref(root);
    return rc;
}

/* ---- open / close / lookups ---------------------------------------------------- */

/* hf_open: see internal.h. */
int hf_open(const char *dir, hf_model **out, doc_err *err)
{
    *out = NULL;
    hf_model *h = calloc(1, sizeof *h);
    if (!h) return doc_errf(err, DOC_ENOMEM, "%s: out of memory", dir);
    arena_init(&h->names, 0, 0);
    int rc;
    char path[4096];
    if (!(h->dir = strdup(dir))) {
        rc = doc_errf(err, DOC_ENOMEM, "%s: out of memory", dir);
        goto done;
    }
    if ((rc = path_join(path, sizeof path, dir, "config.json"))) {
        rc = doc_errf(err, DOC_ELIMIT, "%s: path too long", dir);
        goto done;
    }
    json_t *cfg = NULL;
    if ((rc = json_load_capped(path, HF_MAX_CONFIG, &cfg, err))) goto done;
    h->config = cfg;
    if (!json_is_object(cfg)) {
        rc = doc_errf(err, DOC_EFORMAT, "%s: not a json object", path);
        goto done;
    }
    path_join(path, sizeof path, dir, "model.safetensors");
    if (file_exists(path)) {
        if (!(h->maps = calloc(1, sizeof *h->maps))) {
            rc = doc_errf(err, DOC_ENOMEM, "%s: out of memory", dir);
            goto done;
        }
        rc = load_safetensors(h, path, err);
    } else {
        path_join(path, sizeof path, dir, "model.safetensors.index.json");
        if (!file_exists(path)) {
            rc = doc_errf(err, DOC_ENOTFOUND, "%s: no model.safetensors or model.safetensors.index.json", dir);
            goto done;
        }
        rc = load_index(h, path, err);
    }
    if (!rc) rc = build_hash(h, err);
done:
    if (rc) hf_close(&h);
    *out = h;
    return rc;
}

/* hf_close: unmap and free; accepts NULL and *h == NULL. */
void hf_close(hf_model **hp)
{
    if (!hp || !*hp) return;
    hf_model *h = *hp;
    for (int i = 0; i < h->n_maps; i++) file_map_close(&h->maps[i]);
    free(h->maps);
    json_decref(h->config);
    arena_free(&h->names);
    free(h->tensors);
    free(h->hash);
    free(h->dir);
    free(h);
    *hp = NULL;
}

const void *hf_config(const hf_model *h) { return h ? h->config : NULL; }
const char *hf_dir(const hf_model *h) { return h ? h->dir : NULL; }
int hf_n_tensors(const hf_model *h) { return h ? h->n_tensors : 0; }

const llm_tensor *hf_tensor_at(const hf_model *h, int i)
{
    return h && i >= 0 && i < h->n_tensors ? &h->tensors[i] : NULL;
}

const llm_tensor *hf_tensor(const hf_model *h, const char *gguf_name)
{
    if (!h || !gguf_name || !h->hash) return NULL;
    size_t s = slot_of(h, gguf_name);
    return h->hash[s] ? &h->tensors[h->hash[s] - 1] : NULL;
}
