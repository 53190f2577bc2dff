/*
 * model.c - opening models: source detection (GGUF file or HF directory),
 * hyperparameters, backend choice, weight and vector loading with shape
 * checks, tokenizer and chat-template wiring.
 *
 * Every tensor a model uses is fetched through model_weight / model_vec, which
 * check its presence, type and shape against the hyperparameters and name the
 * tensor in any error.  Nothing is computed on a tensor before that check.
 */
#include "llm/model.h"

#include <dlfcn.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/json.h"

/* ---- sources ----------------------------------------------------------- */

const llm_tensor *src_tensor(const llm_source *s, const char *name)
{
    return s->gguf ? gguf_tensor(s->gguf, name) : hf_tensor(s->hf, name);
}

static int src_open(llm_source *s, const char *path, doc_err *err)
{
    memset(s, 0, sizeof *s);
    if (strlen(path) >= sizeof s->path) return doc_errf(err, DOC_ELIMIT, "%s: path too long", path);
    strcpy(s->path, path);
    if (file_is_dir(path)) {
        int rc = hf_open(path, &s->hf, err);
        if (rc) return rc;
        const char *mt = json_str_or(hf_config(s->hf), "model_type", NULL);
        if (!mt) return doc_errf(err, DOC_EFORMAT, "%s/config.json: no \"model_type\"", path);
        snprintf(s->arch, sizeof s->arch, "%s", mt);
        return DOC_OK;
    }
    if (!file_exists(path)) return doc_errf(err, DOC_ENOTFOUND, "%s: no such file or directory", path);
    int rc = gguf_open(path, &s->gguf, err);
    if (rc) return rc;
    const char *arch = gguf_get_str(s->gguf, "general.architecture");
    if (!arch) return doc_errf(err, DOC_EFORMAT, "%s: no general.architecture key", path);
    snprintf(s->arch, sizeof s->arch, "%s", arch);
    return DOC_OK;
}

static void src_close(llm_source *s)
{
    gguf_close(&s->gguf);
    hf_close(&s->hf);
}

/* ---- hyperparameters --------------------------------------------------- */

/* gguf "{arch}.{key}" as u32/f32; required ones fail with the key named */
static int gu32(const llm_model *m, const char *key, int required, int *out, doc_err *err)
{
    char full[128];
    snprintf(full, sizeof full, "%s.%s", m->src.arch, key);
    uint32_t v;
    int rc = gguf_get_u32(m->src.gguf, full, &v, err);
    if (rc == DOC_ENOTFOUND) {
        if (required) return doc_errf(err, DOC_EFORMAT, "%s: missing metadata key %s", m->src.path, full);
        return DOC_OK;
    }
    if (rc) return rc;
    if (v > (1u << 30)) return doc_errf(err, DOC_EFORMAT, "%s: %s = %u is out of range", m->src.path, full, v);
    *out = (int)v;
    return DOC_OK;
}

static int gf32(const llm_model *m, const char *key, float *out, doc_err *err)
{
    char full[128];
    snprintf(full, sizeof full, "%s.%s", m->src.arch, key);
    int rc = gguf_get_f32(m->src.gguf, full, out, err);
    return rc == DOC_ENOTFOUND ? DOC_OK : rc;
}

static int hparams_gguf(llm_model *m, doc_err *err)
{
    llm_hparams *hp = &m->hp;
    int rc;
    if ((rc = gu32(m, "embedding_length", 1, &hp->d, err)) ||
        (rc = gu32(m, "block_count", 1, &hp->n_layer, err)) ||
        (rc = gu32(m, "feed_forward_length", 1, &hp->n_ff, err)) ||
        (rc = gu32(m, "attention.head_count", 1, &hp->n_head, err)) ||
        (rc = gu32(m, "context_length", 1, &hp->n_ctx_train, err)))
        return rc;
    hp->n_head_kv = hp->n_head;
    if ((rc = gu32(m, "attention.head_count_kv", 0, &hp->n_head_kv, err))) return rc;
    hp->norm_eps = m->kind == LLM_ENCODER ? 1e-12f : 1e-5f;
    if ((rc = gf32(m, "attention.layer_norm_rms_epsilon", &hp->norm_eps, err)) ||
        (rc = gf32(m, "attention.layer_norm_epsilon", &hp->norm_eps, err)))
        return rc;
    hp->rope_theta = 10000.0f;
    if ((rc = gf32(m, "rope.freq_base", &hp->rope_theta, err))) return rc;
    hp->rope_neox = !strcmp(m->src.arch, "qwen2");
    /* refuse what would otherwise run silently wrong: scaled rope (Llama 3.1+) */
    char key[128];
    snprintf(key, sizeof key, "%s.rope.scaling.type", m->src.arch);
    const char *scaling = gguf_get_str(m->src.gguf, key);
    if ((scaling && strcmp(scaling, "none")) || gguf_tensor(m->src.gguf, "rope_freqs.weight"))
        return doc_errf(err, DOC_EUNSUPPORTED, "%s: rope scaling (%.40s) is not supported", m->src.path,
                        scaling ? scaling : "rope_freqs.weight");
    int pool_type = 1;
    if ((rc = gu32(m, "pooling_type", 0, &pool_type, err))) return rc;
    hp->pooling = pool_type == 2 ? POOL_CLS : POOL_MEAN;
    hp->max_seq = hp->n_ctx_train;
    return DOC_OK;
}

static int cfg_int(const json_t *cfg, const char *key, int def, int *out, const char *path,
                   doc_err *err)
{
    long long v = json_int_or(cfg, key, def);
    if (v < 0 || v > (1 << 30))
        return doc_errf(err, DOC_EFORMAT, "%s/config.json: %s = %lld is out of range", path, key, v);
    *out = (int)v;
    return DOC_OK;
}

static int hparams_hf(llm_model *m, doc_err *err)
{
    llm_hparams *hp = &m->hp;
    const json_t *cfg = hf_config(m->src.hf);
    const char *p = m->src.path;
    int rc;
    if ((rc = cfg_int(cfg, "hidden_size", 0, &hp->d, p, err)) ||
        (rc = cfg_int(cfg, "num_hidden_layers", 0, &hp->n_layer, p, err)) ||
        (rc = cfg_int(cfg, "intermediate_size", 0, &hp->n_ff, p, err)) ||
        (rc = cfg_int(cfg, "num_attention_heads", 0, &hp->n_head, p, err)) ||
        (rc = cfg_int(cfg, "max_position_embeddings", 512, &hp->n_ctx_train, p, err)) ||
        (rc = cfg_int(cfg, "type_vocab_size", 0, &hp->n_types, p, err)))
        return rc;
    if ((rc = cfg_int(cfg, "num_key_value_heads", hp->n_head, &hp->n_head_kv, p, err))) return rc;
    static const char *const need[] = {"hidden_size", "num_hidden_layers", "intermediate_size",
                                       "num_attention_heads"};
    for (size_t i = 0; i < sizeof need / sizeof need[0]; i++)
        if (!json_is_integer(json_object_get(cfg, need[i])))
            return doc_errf(err, DOC_EFORMAT, "%s/config.json: missing integer \"%s\"", p, need[i]);
    if (m->kind == LLM_ENCODER) {
        hp->norm_eps = (float)json_num_or(cfg, "layer_norm_eps", 1e-12);
        const char *act = json_str_or(cfg, "hidden_act", "gelu");
        if (strcmp(act, "gelu"))
            return doc_errf(err, DOC_EUNSUPPORTED, "%s/config.json: hidden_act \"%s\" (only gelu)", p, act);
        const char *pet = json_str_or(cfg, "position_embedding_type", "absolute");
        if (strcmp(pet, "absolute"))
            return doc_errf(err, DOC_EUNSUPPORTED, "%s/config.json: position_embedding_type \"%s\"", p, pet);
    } else {
        hp->norm_eps = (float)json_num_or(cfg, "rms_norm_eps", 1e-6);
        hp->rope_theta = (float)json_num_or(cfg, "rope_theta", 10000.0);
        hp->rope_neox = 1; /* HF checkpoints rotate halves; GGUF llama permutes q/k instead */
        const char *act = json_str_or(cfg, "hidden_act", "silu");
        if (strcmp(act, "silu"))
            return doc_errf(err, DOC_EUNSUPPORTED, "%s/config.json: hidden_act \"%s\" (only silu)", p, act);
        /* refuse what would otherwise run silently wrong */
        json_t *rs = json_object_get(cfg, "rope_scaling");
        if (rs && !json_is_null(rs))
            return doc_errf(err, DOC_EUNSUPPORTED, "%s/config.json: rope_scaling (type \"%s\") is not supported",
                            p, json_str_or(rs, "rope_type", json_str_or(rs, "type", "?")));
        long long hdim = json_int_or(cfg, "head_dim", 0);
        if (hdim && hp->n_head > 0 && hdim * hp->n_head != hp->d)
            return doc_errf(err, DOC_EUNSUPPORTED, "%s/config.json: head_dim %lld != hidden_size / heads",
                            p, hdim);
    }
    hp->max_seq = hp->n_ctx_train;
    hp->pooling = POOL_MEAN;
    /* sentence-transformers side files: pooling mode and truncation length */
    char f[1200];
    json_t *j = NULL;
    doc_err e2 = {0};
    snprintf(f, sizeof f, "%s/1_Pooling/config.json", p);
    if (file_exists(f) && json_load_capped(f, 1 << 16, &j, &e2) == DOC_OK) {
        json_t *cls = json_object_get(j, "pooling_mode_cls_token");
        if (json_is_true(cls)) hp->pooling = POOL_CLS;
        json_decref(j);
    }
    snprintf(f, sizeof f, "%s/sentence_bert_config.json", p);
    if (file_exists(f) && json_load_capped(f, 1 << 16, &j, &e2) == DOC_OK) {
        long long ms = json_int_or(j, "max_seq_length", 0);
        if (ms > 0 && ms < hp->max_seq) hp->max_seq = (int)ms;
        json_decref(j);
    }
    return DOC_OK;
}

static int hparams_check(llm_model *m, doc_err *err)
{
    llm_hparams *hp = &m->hp;
    const char *p = m->src.path;
    if (hp->d <= 0 || hp->n_layer <= 0 || hp->n_head <= 0 || hp->n_ff <= 0)
        return doc_errf(err, DOC_EFORMAT, "%s: bad hyperparameters (d %d, layers %d, heads %d, ff %d)",
                        p, hp->d, hp->n_layer, hp->n_head, hp->n_ff);
    if (hp->d % hp->n_head)
        return doc_errf(err, DOC_EFORMAT, "%s: width %d is not a multiple of %d heads", p, hp->d, hp->n_head);
    if (hp->n_head_kv <= 0 || hp->n_head % hp->n_head_kv)
        return doc_errf(err, DOC_EFORMAT, "%s: %d heads is not a multiple of %d kv heads", p,
                        hp->n_head, hp->n_head_kv);
    if (hp->n_ctx_train <= 0)
        return doc_errf(err, DOC_EFORMAT, "%s: bad hyperparameters (context length %d)", p, hp->n_ctx_train);
    hp->head_dim = hp->d / hp->n_head;
    if (hp->head_dim % 2)
        return doc_errf(err, DOC_EFORMAT, "%s: head dimension %d is odd", p, hp->head_dim);
    if (!(hp->norm_eps > 0 && hp->norm_eps < 1) || !(hp->rope_theta > 0 || m->kind == LLM_ENCODER))
        return doc_errf(err, DOC_EFORMAT, "%s: bad norm epsilon or rope base", p);
    const llm_tensor *te = src_tensor(&m->src, "token_embd.weight");
    if (!te) return doc_errf(err, DOC_EFORMAT, "%s: missing tensor token_embd.weight", p);
    if (te->n_dims != 2 || te->ne[1] < 1 || te->ne[1] > (1 << 24))
        return doc_errf(err, DOC_EFORMAT, "%s: tensor token_embd.weight has a bad shape", p);
    hp->n_vocab = (int)te->ne[1];
    return DOC_OK;
}

/* ---- weights ----------------------------------------------------------- */

static int track(void **arr, int *n, int *cap, void *p)
{
    if (*n == *cap) {
        int nc = *cap ? *cap * 2 : 64;
        void *q = realloc(*(void **)arr, (size_t)nc * sizeof(void *));
        if (!q) return DOC_ENOMEM;
        *(void **)arr = q;
        *cap = nc;
    }
    ((void **)*(void **)arr)[(*n)++] = p;
    return DOC_OK;
}

int model_weight(llm_model *m, const char *name, int64_t cols, int64_t rows, int flags,
                 llm_weight *w, doc_err *err)
{
    memset(w, 0, sizeof *w);
    const llm_tensor *t = src_tensor(&m->src, name);
    if (!t) {
        if (flags & W_REQUIRED) return doc_errf(err, DOC_EFORMAT, "%s: missing tensor %s", m->src.path, name);
        return DOC_OK;
    }
    if (t->n_dims != 2 || t->ne[0] != cols || t->ne[1] != rows)
        return doc_errf(err, DOC_EFORMAT,
                        "%s: tensor %s has shape [%lld, %lld] (%d dims), expected [%lld, %lld]",
                        m->src.path, name, (long long)t->ne[0], (long long)t->ne[1], t->n_dims,
                        (long long)cols, (long long)rows);
    const llm_type_info *ti = llm_type(t->type);
    if (!ti || !ti->in_files)
        return doc_errf(err, DOC_EUNSUPPORTED, "%s: tensor %s has unsupported type %d", m->src.path,
                        name, t->type);
    if (t->nbytes != llm_row_bytes(t->type, cols) * (size_t)rows)
        return doc_errf(err, DOC_EFORMAT, "%s: tensor %s has %zu bytes, expected %zu", m->src.path,
                        name, t->nbytes, llm_row_bytes(t->type, cols) * (size_t)rows);
    w->type = t->type;
    w->cols = cols;
    w->rows = rows;
    w->data = t->data;
    w->name = t->name;
    w->rows_only = !!(flags & W_ROWS_ONLY);
    if (m->weights_f32 && t->type != LLM_T_F32) {
        /* the embedding table may be shared with the output layer: convert once */
        float *f = malloc((size_t)(cols * rows) * sizeof *f);
        if (!f) return doc_errf(err, DOC_ENOMEM, "%s: out of memory converting %s to f32", m->src.path, name);
        llm_dequantize_ref(t->type, t->data, f, cols * rows);
        if (track((void **)&m->owned, &m->n_owned, &m->cap_owned, f)) {
            free(f);
            return doc_errf(err, DOC_ENOMEM, "out of memory");
        }
        w->type = LLM_T_F32;
        w->data = f;
    } else if ((flags & W_BF16) && t->type == LLM_T_F32 && !m->weights_f32) {
        uint16_t *h = malloc((size_t)(cols * rows) * sizeof *h);
        if (!h) return doc_errf(err, DOC_ENOMEM, "%s: out of memory converting %s to bf16", m->src.path, name);
        if (track((void **)&m->owned, &m->n_owned, &m->cap_owned, h)) {
            free(h);
            return doc_errf(err, DOC_ENOMEM, "out of memory");
        }
        const float *f = t->data; /* safetensors F32 data is 4-byte aligned (hf.c checks offsets) */
        for (int64_t i = 0; i < cols * rows; i++) {
            float v;
            memcpy(&v, f + i, sizeof v);
            h[i] = f32_to_bf16(v);
        }
        w->type = LLM_T_BF16;
        w->data = h;
    }
    int rc = m->be->i->weight_prepare(m->be, w, err);
    if (rc) return rc;
    return track((void **)&m->weights, &m->n_weights, &m->cap_weights, w);
}

int model_vec(llm_model *m, const char *name, int64_t n, int required, float **out, doc_err *err)
{
    *out = NULL;
    const llm_tensor *t = src_tensor(&m->src, name);
    if (!t) {
        if (required) return doc_errf(err, DOC_EFORMAT, "%s: missing tensor %s", m->src.path, name);
        return DOC_OK;
    }
    int64_t total = t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3];
    if (total != n || t->ne[0] != n)
        return doc_errf(err, DOC_EFORMAT, "%s: tensor %s has %lld elements, expected %lld",
                        m->src.path, name, (long long)total, (long long)n);
    if (t->type != LLM_T_F32 && t->type != LLM_T_F16 && t->type != LLM_T_BF16)
        return doc_errf(err, DOC_EUNSUPPORTED, "%s: tensor %s: 1-D tensors must be f32/f16/bf16, not %s",
                        m->src.path, name, llm_type(t->type) ? llm_type(t->type)->name : "unknown");
    float *host = malloc((size_t)n * sizeof *host);
    if (!host) return doc_errf(err, DOC_ENOMEM, "%s: out of memory", name);
    llm_dequantize_ref(t->type, t->data, host, n);
    float *dev = m->be->i->alloc(m->be, (size_t)n);
    int rc = DOC_OK;
    if (!dev) rc = doc_errf(err, DOC_ENOMEM, "%s: backend out of memory", name);
    else if ((rc = m->be->i->upload(m->be, dev, host, (size_t)n)))
        doc_errf(err, rc, "%s: upload failed", name);
    free(host);
    if (rc) {
        if (dev) m->be->i->release(m->be, dev);
        return rc;
    }
    if (track((void **)&m->vecs, &m->n_vecs, &m->cap_vecs, dev)) {
        m->be->i->release(m->be, dev);
        return doc_errf(err, DOC_ENOMEM, "out of memory");
    }
    *out = dev;
    return DOC_OK;
}

/* ---- backend ----------------------------------------------------------- */

#define PLAN_SLACK (64u << 20) /* working space beyond the planned buffers (scratch, workspaces) */

int model_plan(llm_model *m, int n_seq, doc_err *err)
{
    size_t fr = 0, tot = 0, kv = 0, one, need;
    int have = m->be->i->mem_info && m->be->i->mem_info(m->be, &fr, &tot) == DOC_OK;
    int grows = m->kind == LLM_DECODER && m->be->i->kv_reserve;
    if (m->kind == LLM_DECODER) {
        one = llama_session_bytes(m, m->n_ctx, &kv);
        /* n_seq sessions and the decode step's buffers (llama.c's m->step).
         * Growing caches take memory as answers lengthen: room for one
         * answer of the full context is planned, the rest is checked as
         * they grow (kv_budget) */
        need = (size_t)n_seq * one + llama_session_bytes(m, 1, NULL) +
               (size_t)n_seq * m->hp.n_vocab * sizeof(float);
        if (grows) need -= (size_t)(n_seq - 1) * kv;
    } else {
        one = need = bert_batch_bytes(m, m->batch, m->hp.max_seq);
    }
    need += PLAN_SLACK;
    size_t limit = m->mem_limit_mb > 0 ? (size_t)m->mem_limit_mb << 20 : 0;
    if ((!have || need <= fr) && (!limit || need <= limit)) {
        /* the caches may take what the limit leaves after the rest */
        if (grows) m->kv_budget = limit ? limit - (need - kv) : 0;
        return DOC_OK;
    }
    const double MB = 1048576.0;
    int by_limit = limit && (!have || limit < fr);
    char what[160];
    if (m->kind == LLM_DECODER && grows)
        snprintf(what, sizeof what, "%d session%s (activations %.0f MiB each) and a KV cache of %d positions (%.0f MiB)",
                 n_seq, n_seq == 1 ? "" : "s", (one - kv) / MB, m->n_ctx, kv / MB);
    else if (m->kind == LLM_DECODER)
        snprintf(what, sizeof what, "%d session%s of %d positions (KV cache %.0f MiB, activations %.0f MiB each)",
                 n_seq, n_seq == 1 ? "" : "s", m->n_ctx, kv / MB, (one - kv) / MB);
    else
        snprintf(what, sizeof what, "a batch of %d x %d tokens", m->batch, m->hp.max_seq);
    int dec = m->kind == LLM_DECODER;
    return doc_errf(err, DOC_ENOMEM,
                    "%s: %s need%s %.0f MiB of working memory on the %s backend, but %s %.0f MiB; "
                    "lower %s%s",
                    m->src.path, what, dec && (n_seq > 1 || grows) ? "" : "s", need / MB, m->be->i->name,
                    by_limit ? "[models] memory_limit_mb allows" : "it has", (by_limit ? limit : fr) / MB,
                    dec ? "[models] context or [daemon] parallel" : "[ingest] embed_batch",
                    by_limit ? ", or raise the limit" : "");
}

static int backend_open(llm_model *m, const llm_opts *o, doc_err *err)
{
    const char *want = o && o->backend ? o->backend : "auto";
    int threads = o && o->n_threads > 0 ? o->n_threads : 0;
    if (!strcmp(want, "cuda") || !strcmp(want, "auto")) {
        doc_err e2 = {0};
        int rc = llm_cuda_backend_new(0, &m->be, &e2);
        if (rc == DOC_OK) return DOC_OK;
        if (!strcmp(want, "cuda")) return doc_errf(err, rc, "backend cuda: %s", e2.msg);
        log_info("backend auto: no usable CUDA device (%s); using the CPU", e2.msg);
    } else if (strcmp(want, "cpu")) {
        return doc_errf(err, DOC_EINVAL, "unknown backend \"%s\" (auto, cpu, cuda)", want);
    }
    return llm_cpu_backend_new(threads, &m->be, err);
}

#ifndef DOCENT_CUDA
int llm_cuda_backend_new(int device, llm_backend **out, doc_err *err)
{
    (void)device;
    *out = NULL;
    return doc_errf(err, DOC_EUNSUPPORTED, "this build has no CUDA support (built with CUDA=0 or without nvcc)");
}
#else
/* cuda_lib: where libdocent-cuda.so is: $DOCENT_CUDA_LIB, else next to the
 * program, else in its parent folder (build/tests/test_x -> build/) */
static int cuda_lib(char *path, size_t cap)
{
    const char *env = getenv("DOCENT_CUDA_LIB");
    if (env && *env) return snprintf(path, cap, "%s", env) < (int)cap;
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) return 0;
    exe[n] = 0;
    for (int up = 0; up < 2; up++) {
        char *slash = strrchr(exe, '/');
        if (!slash) return 0;
        *slash = 0;
        if (snprintf(path, cap, "%s/libdocent-cuda.so", exe) < (int)cap && access(path, R_OK) == 0)
            return 1;
    }
    return 0;
}

/* The CUDA backend is libdocent-cuda.so, loaded here only where an NVIDIA
 * driver is present: cuBLAS linked into every program cost 150 MiB of RSS at
 * startup on machines without a GPU.  A loaded library stays loaded (the
 * backend's ops live in it); one that gives no backend is unloaded. */
int llm_cuda_backend_new(int device, llm_backend **out, doc_err *err)
{
    *out = NULL;
    if (access("/dev/nvidiactl", F_OK) != 0 && !getenv("DOCENT_CUDA_LIB"))
        return doc_errf(err, DOC_EDEVICE, "no CUDA device (no NVIDIA driver: /dev/nvidiactl is missing)");
    char path[PATH_MAX];
    if (!cuda_lib(path, sizeof path))
        return doc_errf(err, DOC_EDEVICE, "no CUDA backend: libdocent-cuda.so is not next to the "
                                          "program (set DOCENT_CUDA_LIB to its path)");
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h) return doc_errf(err, DOC_EDEVICE, "CUDA backend %s: %s", path, dlerror());
    int (*fn)(int, llm_backend **, doc_err *);
    *(void **)&fn = dlsym(h, "docent_cuda_backend_new");
    if (!fn) {
        dlclose(h);
        return doc_errf(err, DOC_EDEVICE, "CUDA backend %s: no docent_cuda_backend_new", path);
    }
    int rc = fn(device, out, err);
    if (rc) dlclose(h);
    return rc;
}
#endif

/* ---- open / close ------------------------------------------------------ */

static const struct {
    const char *arch;
    int kind;
} arch_table[] = {
    {"llama", LLM_DECODER}, {"mistral", LLM_DECODER}, {"qwen2", LLM_DECODER},
    {"bert", LLM_ENCODER},
};

/* hf_chat_template: the Jinja chat template of an HF directory, from
 * tokenizer_config.json ("chat_template" as a string, or the entry named
 * "default" of a list of {name, template}).  Borrowed from *cfg, which the
 * caller releases; NULL when there is none. */
static const char *hf_chat_template(const char *dir, json_t **cfg)
{
    char f[1200];
    doc_err e2 = {0};
    *cfg = NULL;
    snprintf(f, sizeof f, "%s/tokenizer_config.json", dir);
    if (!file_exists(f) || json_load_capped(f, 1 << 22, cfg, &e2)) return NULL;
    json_t *t = json_object_get(*cfg, "chat_template");
    if (json_is_string(t)) return json_string_value(t);
    size_t i;
    json_t *v;
    json_array_foreach(t, i, v)
        if (!strcmp(json_str_or(v, "name", ""), "default")) return json_str_or(v, "template", NULL);
    return NULL;
}

int llm_model_open(const char *path, const llm_opts *o, llm_model **out, doc_err *err)
{
    json_t *tok_cfg = NULL;
    *out = NULL;
    llm_model *m = calloc(1, sizeof *m);
    if (!m) return doc_errf(err, DOC_ENOMEM, "out of memory");
    int rc;
    if (remote_is_url(path)) { /* an OpenAI-compatible server (remote.c) */
        rc = remote_open(m, path, o, err);
        goto done;
    }
    rc = src_open(&m->src, path, err);
    if (rc) goto done;
    for (size_t i = 0; i < sizeof arch_table / sizeof arch_table[0]; i++)
        if (!strcmp(arch_table[i].arch, m->src.arch)) m->kind = arch_table[i].kind;
    if (!m->kind) {
        rc = doc_errf(err, DOC_EUNSUPPORTED,
                      "%s: unsupported architecture \"%s\" (supported: llama, mistral, qwen2, bert)",
                      path, m->src.arch);
        goto done;
    }
    rc = m->src.gguf ? hparams_gguf(m, err) : hparams_hf(m, err);
    if (rc || (rc = hparams_check(m, err))) goto done;
    rc = m->src.gguf ? tok_from_gguf(m->src.gguf, &m->tok, err) : tok_from_hf_dir(path, &m->tok, err);
    if (rc) {
        doc_errprefix(err, "%s: tokenizer", path);
        goto done;
    }
    if (tok_n_vocab(m->tok) > m->hp.n_vocab) {
        rc = doc_errf(err, DOC_EFORMAT, "%s: tokenizer has %d tokens but the embedding has %d rows",
                      path, tok_n_vocab(m->tok), m->hp.n_vocab);
        goto done;
    }
    if ((rc = backend_open(m, o, err))) goto done;
    m->batch = o && o->batch > 0 ? o->batch : 32;
    m->weights_f32 = o && o->weights_f32;
    m->mem_limit_mb = o ? o->mem_limit_mb : 0;
    rc = m->kind == LLM_ENCODER ? bert_load(m, err) : llama_load(m, err);
    if (!rc && m->kind == LLM_DECODER) {
        int want = o && o->n_ctx > 0 ? o->n_ctx : 4096;
        m->n_ctx = want < m->hp.n_ctx_train ? want : m->hp.n_ctx_train;
    }
    if (!rc) rc = model_plan(m, 1, err);
    if (rc == DOC_ENOMEM && strcmp(m->be->i->name, "cpu") &&
        !strcmp(o && o->backend ? o->backend : "auto", "auto")) {
        /* the weights or a session do not fit on the device: auto falls back to the CPU */
        log_info("backend auto: %s; using the CPU", err ? err->msg : "out of device memory");
        llm_model_close(&m);
        llm_opts cpu_o = o ? *o : (llm_opts){0};
        cpu_o.backend = "cpu";
        return llm_model_open(path, &cpu_o, out, err);
    }
    if (rc) goto done;
    if (m->kind == LLM_DECODER) {
        const char *tmpl = m->src.gguf ? gguf_get_str(m->src.gguf, "tokenizer.chat_template")
                                       : hf_chat_template(path, &tok_cfg);
        if (o && o->chat_template) {
            m->chat = chat_from_name(o->chat_template);
            if (m->chat < 0) {
                rc = doc_errf(err, DOC_EINVAL, "unknown chat template \"%s\" (chatml, llama3, llama2, gemma)",
                              o->chat_template);
                goto done;
            }
        } else {
            m->chat = chat_detect(tmpl, m->src.arch);
        }
        m->chat_system = chat_default_system(tmpl);
    } else {
        m->n_ctx = m->hp.max_seq;
    }
    const char *wt = llm_type(m->layers[0].wq.type) ? llm_type(m->layers[0].wq.type)->name : "?";
    int cpu = !strcmp(m->be->i->name, "cpu"); /* the CPU names its kernels' ISA: "cpu/avx2" */
    snprintf(m->desc, sizeof m->desc, "%s %dL d%d %s, %s%s%s", m->src.arch, m->hp.n_layer, m->hp.d,
             wt, m->be->i->name, cpu ? "/" : "", cpu ? llm_cpu_isa() : "");
done:
    json_decref(tok_cfg);
    if (rc) llm_model_close(&m);
    *out = m;
    return rc;
}

void llm_model_close(llm_model **mp)
{
    llm_model *m = mp ? *mp : NULL;
    if (!m) return;
    if (m->remote) remote_close(m);
    batch_free(m);
    llm_session_free(&m->step);
    if (m->be) {
        for (int i = 0; i < m->n_weights; i++) m->be->i->weight_release(m->be, m->weights[i]);
        for (int i = 0; i < m->n_vecs; i++) m->be->i->release(m->be, m->vecs[i]);
    }
    for (int i = 0; i < m->n_owned; i++) free(m->owned[i]);
    free(m->owned);
    free(m->weights);
    free(m->vecs);
    free(m->layers);
    free(m->chat_system);
    llm_backend_free(&m->be);
    tok_free(&m->tok);
    src_close(&m->src);
    free(m);
    *mp = NULL;
}

int llm_model_kind(const llm_model *m) { return m->kind; }
const char *llm_model_desc(const llm_model *m) { return m->desc; }

void llm_model_backend_info(const llm_model *m, char *buf, size_t size)
{
    if (!size) return;
    buf[0] = 0;
    if (m && m->be && m->be->i->describe) m->be->i->describe(m->be, buf, size);
}
int llm_n_ctx(const llm_model *m) { return m->n_ctx; }
int llm_n_vocab(const llm_model *m) { return m->hp.n_vocab; }
int llm_embed_dim(const llm_model *m)
{
    if (m->remote) return remote_embed_dim(m);
    return m->kind == LLM_ENCODER ? m->hp.d : 0;
}
int llm_model_is_remote(const llm_model *m) { return m->remote != NULL; }
const char *llm_model_source(const llm_model *m) { return m->remote ? remote_source(m) : m->src.path; }

static int no_tokens(const llm_model *m, doc_err *err)
{
    return doc_errf(err, DOC_EUNSUPPORTED,
                    "%s: a remote model has no tokens here (use llm_generate_chat / llm_count_tokens)",
                    m->src.path);
}

/* ---- tokens ------------------------------------------------------------ */

int llm_tokenize(const llm_model *m, const char *text, size_t len, int add_special,
                 int parse_special, int32_t **ids, int *n, doc_err *err)
{
    *ids = NULL;
    *n = 0;
    if (m->remote) return no_tokens(m, err);
    /* a first guess of one token per 3 bytes, then exactly what is needed */
    int cap = (int)(len / 3) + 16;
    if (len > (size_t)1 << 30) return doc_errf(err, DOC_ELIMIT, "text of %zu bytes is too long", len);
    for (int attempt = 0; attempt < 2; attempt++) {
        int32_t *p = malloc((size_t)cap * sizeof *p);
        if (!p) return doc_errf(err, DOC_ENOMEM, "out of memory");
        int got = 0;
        int rc = tok_encode(m->tok, text, len, add_special, parse_special, p, cap, &got, err);
        if (rc == DOC_OK) {
            *ids = p;
            *n = got;
            return DOC_OK;
        }
        free(p);
        if (rc != DOC_ELIMIT) return rc;
        cap = got;
    }
    return doc_errf(err, DOC_ELIMIT, "tokenizer output size changed between calls");
}

int llm_token_bytes(const llm_model *m, int32_t id, char *out, int cap)
{
    if (m->remote) return -1;
    return tok_piece_bytes(m->tok, id, 0, out, cap);
}

int llm_detokenize(const llm_model *m, const int32_t *ids, int n, buf *out)
{
    if (m->remote) return no_tokens(m, NULL);
    return tok_decode(m->tok, ids, n, out);
}

int llm_embed(llm_model *m, const char *const *texts, int n, float *out,
              const volatile int *cancel, doc_err *err)
{
    if (m->kind != LLM_ENCODER)
        return doc_errf(err, DOC_ESTATE, "%s: embeddings need an encoder model, this is a %s decoder",
                        m->src.path, m->src.arch);
    if (m->remote) return remote_embed(m, texts, n, out, cancel, err);
    return bert_embed(m, texts, n, out, cancel, err);
}

int llm_chat_render(const llm_model *m, const llm_chat_msg *msgs, int n, int add_assistant,
                    buf *out, doc_err *err)
{
    if (m->kind != LLM_DECODER)
        return doc_errf(err, DOC_ESTATE, "%s: chat needs a decoder model", m->src.path);
    if (m->chat == CHAT_NONE)
        return doc_errf(err, DOC_EUNSUPPORTED,
                        "%s: no recognised chat template in the model; set one (chatml, llama3, llama2, gemma)",
                        m->src.path);
    /* the template's own default system prompt, when the caller gives none */
    if (m->chat_system && n > 0 && strcmp(msgs[0].role, "system")) {
        llm_chat_msg *all = malloc((size_t)(n + 1) * sizeof *all);
        if (!all) return doc_errf(err, DOC_ENOMEM, "out of memory");
        all[0].role = "system";
        all[0].content = m->chat_system;
        memcpy(all + 1, msgs, (size_t)n * sizeof *all);
        int rc = chat_render(m->chat, all, n + 1, add_assistant, out, err);
        free(all);
        return rc;
    }
    return chat_render(m->chat, msgs, n, add_assistant, out, err);
}
