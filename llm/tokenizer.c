/*
 * tokenizer.c - building tokenizers from GGUF metadata or Hugging Face
 * directories, matching special tokens in text, dispatch to the model
 * (tok_bpe.c, tok_wordpiece.c), and decoding.
 *
 * Design: one llm_tokenizer holds the vocabulary (strings, types, scores), a
 * hash map piece -> id, a hash map of BPE merges (left id, right id) -> rank,
 * and what the model-specific encoder needs.  It is immutable once built:
 * tok_encode keeps its scratch on the stack or in per-call allocations, so a
 * shared tokenizer is thread-safe.
 *
 * Special tokens in text: at each position the longest matching token wins
 * (leftmost-longest).  Control tokens (GGUF type 3, HF added tokens with
 * special=true) match only with parse_special; user-defined tokens (type 4,
 * HF added tokens with special=false) always match, as llama.cpp and HF
 * tokenizers both do.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/json.h"
#include "llm/tok_impl.h"

#define TOK_MAX_VOCAB (1 << 22)
#define TOK_MAX_JSON (256u << 20)

/* ======================================================================
 * Hash maps
 * ====================================================================== */

static uint64_t hash_bytes(const char *s, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a, then a final mix */
    for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)s[i]) * 0x100000001b3ull;
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    return h;
}

static uint64_t hash_u64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    x ^= x >> 33;
    return x;
}

int tok_vocab_init(llm_tokenizer *t, int n_vocab, doc_err *err)
{
    if (n_vocab <= 0 || n_vocab > TOK_MAX_VOCAB)
        return doc_errf(err, DOC_EFORMAT, "tokenizer: vocabulary size %d out of range", n_vocab);
    t->n_vocab = n_vocab;
    t->text = arena_zalloc(&t->mem, sizeof *t->text * (size_t)n_vocab, 8);
    t->len = arena_zalloc(&t->mem, sizeof *t->len * (size_t)n_vocab, 8);
    t->type = arena_alloc(&t->mem, (size_t)n_vocab, 1);
    if (!t->text || !t->len || !t->type)
        return doc_errf(err, DOC_ENOMEM, "tokenizer: out of memory for %d tokens", n_vocab);
    memset(t->type, TT_NORMAL, (size_t)n_vocab);
    return DOC_OK;
}

int tok_vocab_set(llm_tokenizer *t, int id, const char *s, size_t n, doc_err *err)
{
    if (id < 0 || id >= t->n_vocab)
        return doc_errf(err, DOC_EFORMAT, "tokenizer: token id %d out of range", id);
    char *p = arena_strndup(&t->mem, s, n);
    if (!p) return doc_errf(err, DOC_ENOMEM, "tokenizer: out of memory");
    t->text[id] = p;
    t->len[id] = (uint32_t)n;
    return DOC_OK;
}

/* tok_vocab_index: fill holes with "" (unused), build piece -> id.  A
 * duplicated piece maps to its last id, as in llama.cpp. */
int tok_vocab_index(llm_tokenizer *t, doc_err *err)
{
    uint32_t size = 16;
    while (size < (uint32_t)t->n_vocab * 2) size <<= 1;
    t->vmap = arena_zalloc(&t->mem, sizeof *t->vmap * size, 8);
    if (!t->vmap) return doc_errf(err, DOC_ENOMEM, "tokenizer: out of memory");
    t->vmap_mask = size - 1;
    for (int id = 0; id < t->n_vocab; id++) {
        if (!t->text[id]) {
            t->text[id] = "";
            t->type[id] = TT_UNUSED;
        }
        if (t->len[id] == 0) continue;
        uint32_t h = (uint32_t)hash_bytes(t->text[id], t->len[id]) & t->vmap_mask;
        for (;; h = (h + 1) & t->vmap_mask) {
            uint32_t v = t->vmap[h];
            if (!v) {
                t->vmap[h] = (uint32_t)id + 1;
                break;
            }
            if (t->len[v - 1] == t->len[id] && !memcmp(t->text[v - 1], t->text[id], t->len[id])) {
                t->vmap[h] = (uint32_t)id + 1;
                break;
            }
        }
    }
    return DOC_OK;
}

int32_t tok_find(const llm_tokenizer *t, const char *s, size_t n)
{
    if (!n) return -1;
    uint32_t h = (uint32_t)hash_bytes(s, n) & t->vmap_mask;
    for (;; h = (h + 1) & t->vmap_mask) {
        uint32_t v = t->vmap[h];
        if (!v) return -1;
        if (t->len[v - 1] == n && !memcmp(t->text[v - 1], s, n)) return (int32_t)v - 1;
    }
}

int tok_merges_init(llm_tokenizer *t, int n, doc_err *err)
{
    uint64_t size = 16;
    while (size < (uint64_t)n * 2) size <<= 1;
    t->mmap = arena_zalloc(&t->mem, sizeof *t->mmap * size, 8);
    if (!t->mmap) return doc_errf(err, DOC_ENOMEM, "tokenizer: out of memory for %d merges", n);
    t->mmap_mask = size - 1;
    return DOC_OK;
}

void tok_merge_add(llm_tokenizer *t, const char *l, size_t ln, const char *r, size_t rn, int rank)
{
    char tmp[512];
    if (ln + rn > sizeof tmp) return;
    int32_t a = tok_find(t, l, ln), b = tok_find(t, r, rn);
    if (a < 0 || b < 0) return;
    memcpy(tmp, l, ln);
    memcpy(tmp + ln, r, rn);
    int32_t c = tok_find(t, tmp, ln + rn);
    if (c < 0) return;
    uint64_t key = (((uint64_t)(uint32_t)a << 32) | (uint32_t)b) + 1;
    for (uint64_t h = hash_u64(key) & t->mmap_mask;; h = (h + 1) & t->mmap_mask) {
        if (t->mmap[h].key == key) return; /* keep the first (lowest) rank */
        if (!t->mmap[h].key) {
            t->mmap[h].key = key;
            t->mmap[h].rank = rank;
            t->mmap[h].result = c;
            t->n_merges++;
            return;
        }
    }
}

const tok_merge_slot *tok_merge_find(const llm_tokenizer *t, int32_t l, int32_t r)
{
    if (!t->mmap || l < 0 || r < 0) return NULL;
    uint64_t key = (((uint64_t)(uint32_t)l << 32) | (uint32_t)r) + 1;
    for (uint64_t h = hash_u64(key) & t->mmap_mask;; h = (h + 1) & t->mmap_mask) {
        if (t->mmap[h].key == key) return &t->mmap[h];
        if (!t->mmap[h].key) return NULL;
    }
}

/* ======================================================================
 * Construction helpers
 * ====================================================================== */

static llm_tokenizer *tok_new(int kind)
{
    llm_tokenizer *t = calloc(1, sizeof *t);
    if (!t) return NULL;
    t->kind = kind;
    arena_init(&t->mem, 1 << 20, 0);
    tok_special *s = &t->sp;
    s->bos = s->eos = s->eot = s->unk = s->pad = s->cls = s->sep = s->mask = -1;
    for (int i = 0; i < 256; i++) t->byte_id[i] = t->spm_byte[i] = -1;
    t->wp_max_chars = 100;
    strcpy(t->wp_prefix, "##");
    return t;
}

void tok_free(llm_tokenizer **tp)
{
    if (!tp || !*tp) return;
    tok_bpe_free(*tp);
    arena_free(&(*tp)->mem);
    free(*tp);
    *tp = NULL;
}

static int cmp_len_desc(const void *a, const void *b, void *ctx)
{
    const llm_tokenizer *t = ctx;
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    if (t->len[x] != t->len[y]) return t->len[x] < t->len[y] ? 1 : -1;
    return x < y ? -1 : x > y;
}

/* index_specials: the tokens matched inside text, longest first */
static int index_specials(llm_tokenizer *t, doc_err *err)
{
    int n = 0;
    for (int i = 0; i < t->n_vocab; i++)
        if ((t->type[i] == TT_CONTROL || t->type[i] == TT_USER || t->type[i] == TT_UNKNOWN) &&
            t->len[i] > 0)
            n++;
    t->match_ids = arena_alloc(&t->mem, sizeof(int32_t) * (size_t)(n ? n : 1), 4);
    if (!t->match_ids) return doc_errf(err, DOC_ENOMEM, "tokenizer: out of memory");
    t->n_match = 0;
    for (int i = 0; i < t->n_vocab; i++)
        if ((t->type[i] == TT_CONTROL || t->type[i] == TT_USER || t->type[i] == TT_UNKNOWN) &&
            t->len[i] > 0) {
            t->match_ids[t->n_match++] = i;
            t->first_byte[(uint8_t)t->text[i][0]] = 1;
        }
    qsort_r(t->match_ids, (size_t)t->n_match, sizeof(int32_t), cmp_len_desc, t);
    return DOC_OK;
}

static void set_add_special_ids(llm_tokenizer *t)
{
    t->n_pre = t->n_post = 0;
    if (t->kind == TOK_WORDPIECE) {
        if (t->sp.cls >= 0) t->pre_ids[t->n_pre++] = t->sp.cls;
        if (t->sp.sep >= 0) t->post_ids[t->n_post++] = t->sp.sep;
        return;
    }
    if (t->sp.add_bos && t->sp.bos >= 0) t->pre_ids[t->n_pre++] = t->sp.bos;
    if (t->sp.add_eos && t->sp.eos >= 0) t->post_ids[t->n_post++] = t->sp.eos;
}

/* ======================================================================
 * GGUF
 * ====================================================================== */

static const struct {
    const char *name;
    int kind;
} gguf_models[] = {
    {"gpt2", TOK_BPE},
    {"llama", TOK_SPM},
    {"bert", TOK_WORDPIECE},
};

static int gguf_special(const gguf_file *g, const char *key, int32_t *out, int n_vocab,
                        doc_err *err)
{
    uint32_t v;
    int rc = gguf_get_u32(g, key, &v, err);
    if (rc == DOC_ENOTFOUND) return DOC_OK;
    if (rc) return rc;
    /* llama.cpp writes -1 (as u32) for "none" in some files; treat any bad id so */
    *out = v < (uint32_t)n_vocab ? (int32_t)v : -1;
    return DOC_OK;
}

int tok_from_gguf(const gguf_file *g, llm_tokenizer **out, doc_err *err)
{
    llm_tokenizer *t = NULL;
    int rc;
    *out = NULL;
    const char *name = gguf_name(g);
    const char *model = gguf_get_str(g, "tokenizer.ggml.model");
    if (!model) return doc_errf(err, DOC_EFORMAT, "%s: no tokenizer.ggml.model", name);
    int kind = 0;
    for (size_t i = 0; i < sizeof gguf_models / sizeof gguf_models[0]; i++)
        if (!strcmp(model, gguf_models[i].name)) kind = gguf_models[i].kind;
    if (!kind)
        return doc_errf(err, DOC_EUNSUPPORTED, "%s: tokenizer.ggml.model \"%s\" is not supported",
                        name, model);
    const gguf_kv *toks = gguf_get(g, "tokenizer.ggml.tokens");
    if (!toks || toks->type != GGUF_T_ARRAY || toks->arr_type != GGUF_T_STRING)
        return doc_errf(err, DOC_EFORMAT, "%s: tokenizer.ggml.tokens missing or not strings", name);
    if (toks->n > TOK_MAX_VOCAB)
        return doc_errf(err, DOC_EFORMAT, "%s: tokenizer.ggml.tokens: %llu tokens", name,
                        (unsigned long long)toks->n);
    int n = (int)toks->n;
    t = tok_new(kind);
    if (!t) return doc_errf(err, DOC_ENOMEM, "%s: out of memory", name);
    if ((rc = tok_vocab_init(t, n, err))) goto done;

    const gguf_kv *types = gguf_get(g, "tokenizer.ggml.token_type");
    if (types && (types->type != GGUF_T_ARRAY || types->n != toks->n ||
                  (types->arr_type != GGUF_T_I32 && types->arr_type != GGUF_T_U32))) {
        rc = doc_errf(err, DOC_EFORMAT, "%s: tokenizer.ggml.token_type: not %d int32 values",
                      name, n);
        goto done;
    }
    const gguf_kv *scores = gguf_get(g, "tokenizer.ggml.scores");
    if (scores && (scores->type != GGUF_T_ARRAY || scores->n != toks->n ||
                   scores->arr_type != GGUF_T_F32)) {
        rc = doc_errf(err, DOC_EFORMAT, "%s: tokenizer.ggml.scores: not %d float32 values", name,
                      n);
        goto done;
    }
    if (scores) {
        t->score = arena_alloc(&t->mem, sizeof(float) * (size_t)n, 4);
        if (!t->score) {
            rc = doc_errf(err, DOC_ENOMEM, "%s: out of memory", name);
            goto done;
        }
        memcpy(t->score, scores->arr, sizeof(float) * (size_t)n);
    }
    for (int i = 0; i < n; i++) {
        const char *s = toks->strs[i];
        size_t len = toks->lens[i];
        int type = types ? ((const int32_t *)types->arr)[i] : TT_NORMAL;
        if (type < TT_NORMAL || type > TT_BYTE) type = TT_NORMAL;
        t->type[i] = (uint8_t)type;
        if (kind == TOK_WORDPIECE && type == TT_NORMAL) {
            /* llama.cpp's BERT vocab marks word starts with U+2581 and drops
             * "##" from continuations; restore the WordPiece spelling */
            char tmp[512];
            if (len >= 3 && !memcmp(s, "\xe2\x96\x81", 3)) {
                s += 3;
                len -= 3;
            } else if (!(len >= 2 && s[0] == '[' && s[len - 1] == ']') && len + 2 < sizeof tmp) {
                memcpy(tmp, "##", 2);
                memcpy(tmp + 2, s, len);
                if ((rc = tok_vocab_set(t, i, tmp, len + 2, err))) goto done;
                continue;
            }
        }
        if ((rc = tok_vocab_set(t, i, s, len, err))) goto done;
    }
    if ((rc = tok_vocab_index(t, err))) goto done;

    tok_special *sp = &t->sp;
    if ((rc = gguf_special(g, "tokenizer.ggml.bos_token_id", &sp->bos, n, err)) ||
        (rc = gguf_special(g, "tokenizer.ggml.eos_token_id", &sp->eos, n, err)) ||
        (rc = gguf_special(g, "tokenizer.ggml.eot_token_id", &sp->eot, n, err)) ||
        (rc = gguf_special(g, "tokenizer.ggml.unknown_token_id", &sp->unk, n, err)) ||
        (rc = gguf_special(g, "tokenizer.ggml.padding_token_id", &sp->pad, n, err)) ||
        (rc = gguf_special(g, "tokenizer.ggml.cls_token_id", &sp->cls, n, err)) ||
        (rc = gguf_special(g, "tokenizer.ggml.seperator_token_id", &sp->sep, n, err)) ||
        (rc = gguf_special(g, "tokenizer.ggml.mask_token_id", &sp->mask, n, err)))
        goto done;
    sp->add_bos = kind == TOK_SPM;
    sp->add_eos = 0;
    int b;
    if (gguf_get_bool(g, "tokenizer.ggml.add_bos_token", &b, NULL) == DOC_OK) sp->add_bos = b;
    if (gguf_get_bool(g, "tokenizer.ggml.add_eos_token", &b, NULL) == DOC_OK) sp->add_eos = b;
    t->add_space_prefix = kind == TOK_SPM;
    if (gguf_get_bool(g, "tokenizer.ggml.add_space_prefix", &b, NULL) == DOC_OK)
        t->add_space_prefix = b;

    if (kind == TOK_BPE) {
        const gguf_kv *merges = gguf_get(g, "tokenizer.ggml.merges");
        if (!merges || merges->type != GGUF_T_ARRAY || merges->arr_type != GGUF_T_STRING) {
            rc = doc_errf(err, DOC_EFORMAT, "%s: tokenizer.ggml.merges missing or not strings",
                          name);
            goto done;
        }
        if ((rc = tok_merges_init(t, (int)merges->n, err))) goto done;
        for (uint64_t i = 0; i < merges->n; i++) {
            const char *m = merges->strs[i];
            size_t ml = merges->lens[i];
            /* "left right": the first space after the first byte separates them */
            const char *sp2 = ml > 1 ? memchr(m + 1, ' ', ml - 1) : NULL;
            if (!sp2) {
                rc = doc_errf(err, DOC_EFORMAT, "%s: tokenizer.ggml.merges[%llu]: no space in \"%s\"",
                              name, (unsigned long long)i, m);
                goto done;
            }
            tok_merge_add(t, m, (size_t)(sp2 - m), sp2 + 1, ml - (size_t)(sp2 - m) - 1, (int)i);
        }
        const char *pre = gguf_get_str(g, "tokenizer.ggml.pre");
        if ((rc = tok_bpe_setup(t, pre ? pre : "default", err))) {
            doc_errprefix(err, "%s", name);
            goto done;
        }
    } else if (kind == TOK_SPM) {
        if (!t->score) {
            rc = doc_errf(err, DOC_EFORMAT, "%s: tokenizer.ggml.scores missing (needed by \"llama\")",
                          name);
            goto done;
        }
        for (int i = 0; i < 256; i++) {
            char hex[8];
            snprintf(hex, sizeof hex, "<0x%02X>", i);
            t->spm_byte[i] = tok_find(t, hex, 6);
        }
    } else {
        t->wp_clean = t->wp_chinese = t->wp_strip_accents = t->wp_lower = 1;
        t->wp_cleanup = 1;
        if (sp->cls < 0) sp->cls = sp->bos;
        if (sp->sep < 0) sp->sep = sp->eos;
        if (sp->unk < 0) sp->unk = tok_find(t, "[UNK]", 5);
    }
    if ((rc = index_specials(t, err))) goto done;
    set_add_special_ids(t);
    *out = t;
    t = NULL;
done:
    tok_free(&t);
    return rc;
}

/* ======================================================================
 * Hugging Face: tokenizer.json, vocab.txt
 * ====================================================================== */

/* the token named by a tokenizer_config.json entry: "x" or {"content": "x"} */
static int32_t config_token(const llm_tokenizer *t, const json_t *cfg, const char *key)
{
    const json_t *v = json_object_get(cfg, key);
    if (json_is_object(v)) v = json_object_get(v, "content");
    if (!json_is_string(v)) return -1;
    return tok_find(t, json_string_value(v), json_string_length(v));
}

static int pre_tokenizer_from_json(llm_tokenizer *t, const json_t *pt, const char **res, int *nres,
                                   char *tmp, size_t tmpcap, int *byte_level, doc_err *err)
{
    static const char *gpt2_re =
        "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
    if (!pt || json_is_null(pt)) return DOC_OK;
    const char *type = json_str_or(pt, "type", "");
    if (!strcmp(type, "Sequence")) {
        const json_t *arr = json_object_get(pt, "pretokenizers");
        size_t i;
        const json_t *e;
        json_array_foreach(arr, i, e)
        {
            int rc = pre_tokenizer_from_json(t, e, res, nres, tmp, tmpcap, byte_level, err);
            if (rc) return rc;
        }
        return DOC_OK;
    }
    if (*nres >= TOK_MAX_RE)
        return doc_errf(err, DOC_EUNSUPPORTED, "tokenizer.json: more than %d pre-tokenizers",
                        TOK_MAX_RE);
    if (!strcmp(type, "ByteLevel")) {
        *byte_level = 1;
        const json_t *ap = json_object_get(pt, "add_prefix_space");
        t->add_prefix_space = json_is_true(ap);
        const json_t *ur = json_object_get(pt, "use_regex");
        if (!ur || json_is_true(ur)) res[(*nres)++] = gpt2_re;
        return DOC_OK;
    }
    if (!strcmp(type, "Digits")) {
        res[(*nres)++] = json_is_true(json_object_get(pt, "individual_digits")) ? "\\p{N}" : "\\p{N}+";
        return DOC_OK;
    }
    if (!strcmp(type, "Split")) {
        const char *beh = json_str_or(pt, "behavior", "");
        if (strcmp(beh, "Isolated") || json_is_true(json_object_get(pt, "invert")))
            return doc_errf(err, DOC_EUNSUPPORTED,
                            "tokenizer.json: Split pre-tokenizer with behavior \"%s\"", beh);
        const json_t *pat = json_object_get(pt, "pattern");
        const char *re = json_str_or(pat, "Regex", NULL);
        if (re) {
            res[(*nres)++] = re;
            return DOC_OK;
        }
        const char *lit = json_str_or(pat, "String", NULL);
        if (!lit || strstr(lit, "\\E") || strlen(lit) + 5 > tmpcap)
            return doc_errf(err, DOC_EUNSUPPORTED, "tokenizer.json: Split pattern not supported");
        snprintf(tmp, tmpcap, "\\Q%s\\E", lit);
        res[(*nres)++] = tmp;
        return DOC_OK;
    }
    return doc_errf(err, DOC_EUNSUPPORTED, "tokenizer.json: pre_tokenizer \"%s\" not supported",
                    type);
}

/* post_processor: what add_special puts around the text */
static void post_processor_from_json(llm_tokenizer *t, const json_t *pp)
{
    const char *type = json_str_or(pp, "type", "");
    if (!strcmp(type, "Sequence")) {
        size_t i;
        const json_t *e;
        json_array_foreach(json_object_get(pp, "processors"), i, e) post_processor_from_json(t, e);
        return;
    }
    if (!strcmp(type, "TemplateProcessing")) {
        const json_t *single = json_object_get(pp, "single");
        const json_t *specials = json_object_get(pp, "special_tokens");
        int after = 0;
        size_t i;
        const json_t *e;
        t->n_pre = t->n_post = 0;
        json_array_foreach(single, i, e)
        {
            if (json_object_get(e, "Sequence")) {
                after = 1;
                continue;
            }
            const char *name = json_str_or(json_object_get(e, "SpecialToken"), "id", NULL);
            if (!name) continue;
            const json_t *ids = json_object_get(json_object_get(specials, name), "ids");
            size_t k;
            const json_t *idv;
            json_array_foreach(ids, k, idv)
            {
                json_int_t id = json_integer_value(idv);
                if (id < 0 || id >= t->n_vocab) continue;
                if (!after && t->n_pre < 4) t->pre_ids[t->n_pre++] = (int32_t)id;
                if (after && t->n_post < 4) t->post_ids[t->n_post++] = (int32_t)id;
            }
        }
        return;
    }
    if (!strcmp(type, "BertProcessing") || !strcmp(type, "RobertaProcessing")) {
        json_int_t c = json_integer_value(json_array_get(json_object_get(pp, "cls"), 1));
        json_int_t s = json_integer_value(json_array_get(json_object_get(pp, "sep"), 1));
        t->n_pre = t->n_post = 0;
        if (c >= 0 && c < t->n_vocab) t->pre_ids[t->n_pre++] = (int32_t)c;
        if (s >= 0 && s < t->n_vocab) t->post_ids[t->n_post++] = (int32_t)s;
    }
}

static int from_tokenizer_json(const char *path, const json_t *cfg, llm_tokenizer **out,
                               doc_err *err)
{
    json_t *root = NULL;
    llm_tokenizer *t = NULL;
    int rc = json_load_capped(path, TOK_MAX_JSON, &root, err);
    if (rc) return rc;
    const json_t *model = json_object_get(root, "model");
    const json_t *vocab = json_object_get(model, "vocab");
    const json_t *added = json_object_get(root, "added_tokens");
    const char *mtype = json_str_or(model, "type", NULL);
    if (!mtype) mtype = json_object_get(model, "merges") ? "BPE" : "WordPiece";
    int kind = !strcmp(mtype, "BPE") ? TOK_BPE : !strcmp(mtype, "WordPiece") ? TOK_WORDPIECE : 0;
    if (!kind) {
        rc = doc_errf(err, DOC_EUNSUPPORTED, "%s: model type \"%s\" is not supported", path, mtype);
        goto done;
    }
    if (!json_is_object(vocab)) {
        rc = doc_errf(err, DOC_EFORMAT, "%s: model.vocab is not an object", path);
        goto done;
    }
    /* size: the largest id in vocab and added_tokens */
    json_int_t max_id = -1;
    const char *key;
    const json_t *v;
    size_t i;
    json_object_foreach((json_t *)vocab, key, v)
    {
        if (!json_is_integer(v) || json_integer_value(v) < 0 ||
            json_integer_value(v) >= TOK_MAX_VOCAB) {
            rc = doc_errf(err, DOC_EFORMAT, "%s: model.vocab[\"%s\"]: bad id", path, key);
            goto done;
        }
        if (json_integer_value(v) > max_id) max_id = json_integer_value(v);
    }
    json_array_foreach(added, i, v)
    {
        json_int_t id = json_int_or(v, "id", -1);
        if (id < 0 || id >= TOK_MAX_VOCAB || !json_is_string(json_object_get(v, "content"))) {
            rc = doc_errf(err, DOC_EFORMAT, "%s: added_tokens[%zu]: bad id or content", path, i);
            goto done;
        }
        if (id > max_id) max_id = id;
    }
    t = tok_new(kind);
    if (!t) {
        rc = doc_errf(err, DOC_ENOMEM, "%s: out of memory", path);
        goto done;
    }
    if ((rc = tok_vocab_init(t, (int)max_id + 1, err))) goto done;
    json_object_foreach((json_t *)vocab, key, v)
    {
        size_t klen = strlen(key); /* jansson object keys are NUL-terminated */
        if ((rc = tok_vocab_set(t, (int)json_integer_value(v), key, klen, err))) goto done;
    }
    json_array_foreach(added, i, v)
    {
        const json_t *c = json_object_get(v, "content");
        int id = (int)json_int_or(v, "id", -1);
        if ((rc = tok_vocab_set(t, id, json_string_value(c), json_string_length(c), err))) goto done;
        t->type[id] = json_is_true(json_object_get(v, "special")) ? TT_CONTROL : TT_USER;
    }
    if ((rc = tok_vocab_index(t, err))) goto done;

    tok_special *sp = &t->sp;
    const char *unk = json_str_or(model, "unk_token", NULL);
    if (unk) sp->unk = tok_find(t, unk, strlen(unk));

    if (kind == TOK_WORDPIECE) {
        const json_t *norm = json_object_get(root, "normalizer");
        const char *nt = json_str_or(norm, "type", "");
        if (norm && !json_is_null(norm) && strcmp(nt, "BertNormalizer")) {
            rc = doc_errf(err, DOC_EUNSUPPORTED, "%s: normalizer \"%s\" with WordPiece", path, nt);
            goto done;
        }
        const json_t *f;
        t->wp_clean = !(f = json_object_get(norm, "clean_text")) || json_is_true(f);
        t->wp_chinese = !(f = json_object_get(norm, "handle_chinese_chars")) || json_is_true(f);
        t->wp_lower = !(f = json_object_get(norm, "lowercase")) || json_is_true(f);
        f = json_object_get(norm, "strip_accents");
        t->wp_strip_accents = json_is_boolean(f) ? json_is_true(f) : t->wp_lower;
        if (!norm || json_is_null(norm)) t->wp_clean = t->wp_chinese = t->wp_lower = t->wp_strip_accents = 0;
        const char *pfx = json_str_or(model, "continuing_subword_prefix", "##");
        if (strlen(pfx) >= sizeof t->wp_prefix) {
            rc = doc_errf(err, DOC_EUNSUPPORTED, "%s: continuing_subword_prefix too long", path);
            goto done;
        }
        strcpy(t->wp_prefix, pfx);
        long long mc = json_int_or(model, "max_input_chars_per_word", 100);
        t->wp_max_chars = mc < 1 ? 1 : mc > 10000 ? 10000 : (int)mc;
        const json_t *dec = json_object_get(root, "decoder");
        t->wp_cleanup = !(f = json_object_get(dec, "cleanup")) || json_is_true(f);
        sp->cls = tok_find(t, "[CLS]", 5);
        sp->sep = tok_find(t, "[SEP]", 5);
        sp->pad = tok_find(t, "[PAD]", 5);
        sp->mask = tok_find(t, "[MASK]", 6);
        set_add_special_ids(t);
    } else {
        const char *res[TOK_MAX_RE];
        char tmp[1024];
        int nres = 0, byte_level = 0;
        if ((rc = pre_tokenizer_from_json(t, json_object_get(root, "pre_tokenizer"), res, &nres, tmp,
                                          sizeof tmp, &byte_level, err))) {
            doc_errprefix(err, "%s", path);
            goto done;
        }
        if (!byte_level && !strcmp(json_str_or(json_object_get(root, "decoder"), "type", ""),
                                   "ByteLevel"))
            byte_level = 1;
        if (!byte_level) {
            rc = doc_errf(err, DOC_EUNSUPPORTED,
                          "%s: BPE without a ByteLevel pre-tokenizer (SentencePiece-style) is not "
                          "supported; use the GGUF file",
                          path);
            goto done;
        }
        const json_t *norm = json_object_get(root, "normalizer");
        const char *nt = json_str_or(norm, "type", "");
        if (!strcmp(nt, "NFC")) t->nfc = 1;
        else if (norm && !json_is_null(norm)) {
            rc = doc_errf(err, DOC_EUNSUPPORTED, "%s: normalizer \"%s\" with BPE", path, nt);
            goto done;
        }
        t->ignore_merges = json_is_true(json_object_get(model, "ignore_merges"));
        const json_t *merges = json_object_get(model, "merges");
        if ((rc = tok_merges_init(t, (int)json_array_size(merges), err))) goto done;
        json_array_foreach(merges, i, v)
        {
            if (json_is_string(v)) {
                const char *m = json_string_value(v);
                const char *s2 = strchr(m + (m[0] != 0), ' ');
                if (!s2) {
                    rc = doc_errf(err, DOC_EFORMAT, "%s: model.merges[%zu]: no space", path, i);
                    goto done;
                }
                tok_merge_add(t, m, (size_t)(s2 - m), s2 + 1, strlen(s2 + 1), (int)i);
            } else if (json_is_array(v) && json_array_size(v) == 2) {
                const json_t *a = json_array_get(v, 0), *b = json_array_get(v, 1);
                if (!json_is_string(a) || !json_is_string(b)) continue;
                tok_merge_add(t, json_string_value(a), json_string_length(a), json_string_value(b),
                              json_string_length(b), (int)i);
            }
        }
        if ((rc = tok_bpe_setup_regex(t, res, nres, err))) {
            doc_errprefix(err, "%s", path);
            goto done;
        }
        sp->bos = config_token(t, cfg, "bos_token");
        sp->eos = config_token(t, cfg, "eos_token");
        sp->pad = config_token(t, cfg, "pad_token");
        if (sp->unk < 0) sp->unk = config_token(t, cfg, "unk_token");
        sp->add_bos = json_is_true(json_object_get(cfg, "add_bos_token"));
        sp->add_eos = json_is_true(json_object_get(cfg, "add_eos_token"));
        set_add_special_ids(t);
    }
    const json_t *pp = json_object_get(root, "post_processor");
    if (pp && !json_is_null(pp)) post_processor_from_json(t, pp);
    if (kind == TOK_BPE) {
        if (t->n_pre && t->pre_ids[0] == sp->bos) sp->add_bos = 1;
        if (t->n_post && t->post_ids[t->n_post - 1] == sp->eos) sp->add_eos = 1;
    }
    if ((rc = index_specials(t, err))) goto done;
    *out = t;
    t = NULL;
done:
    tok_free(&t);
    json_decref(root);
    return rc;
}

static int from_vocab_txt(const char *path, const json_t *cfg, llm_tokenizer **out, doc_err *err)
{
    char *data = NULL;
    size_t len = 0;
    llm_tokenizer *t = NULL;
    int rc = file_read_all(path, 64u << 20, &data, &len, err);
    if (rc) return rc;
    int n = 0;
    for (size_t i = 0; i < len; i++) n += data[i] == '\n';
    if (len && data[len - 1] != '\n') n++;
    t = tok_new(TOK_WORDPIECE);
    if (!t) {
        rc = doc_errf(err, DOC_ENOMEM, "%s: out of memory", path);
        goto done;
    }
    if ((rc = tok_vocab_init(t, n, err))) goto done;
    size_t p = 0;
    for (int id = 0; id < n; id++) {
        size_t e = p;
        while (e < len && data[e] != '\n') e++;
        size_t l = e - p;
        if (l && data[p + l - 1] == '\r') l--;
        if (!utf8_valid(data + p, l)) {
            rc = doc_errf(err, DOC_EFORMAT, "%s: line %d is not valid utf-8", path, id + 1);
            goto done;
        }
        if ((rc = tok_vocab_set(t, id, data + p, l, err))) goto done;
        p = e + 1;
    }
    if ((rc = tok_vocab_index(t, err))) goto done;
    const json_t *f;
    t->wp_clean = t->wp_chinese = 1;
    t->wp_lower = !(f = json_object_get(cfg, "do_lower_case")) || json_is_true(f);
    f = json_object_get(cfg, "tokenize_chinese_chars");
    if (json_is_boolean(f)) t->wp_chinese = json_is_true(f);
    f = json_object_get(cfg, "strip_accents");
    t->wp_strip_accents = json_is_boolean(f) ? json_is_true(f) : t->wp_lower;
    t->wp_cleanup = 1;
    tok_special *sp = &t->sp;
    static const struct {
        const char *key, *def;
        size_t off;
    } names[] = {
        {"cls_token", "[CLS]", offsetof(tok_special, cls)},
        {"sep_token", "[SEP]", offsetof(tok_special, sep)},
        {"unk_token", "[UNK]", offsetof(tok_special, unk)},
        {"pad_token", "[PAD]", offsetof(tok_special, pad)},
        {"mask_token", "[MASK]", offsetof(tok_special, mask)},
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        int32_t id = config_token(t, cfg, names[i].key);
        if (id < 0) id = tok_find(t, names[i].def, strlen(names[i].def));
        *(int32_t *)((char *)sp + names[i].off) = id;
        if (id >= 0) t->type[id] = TT_CONTROL;
    }
    set_add_special_ids(t);
    if ((rc = index_specials(t, err))) goto done;
    *out = t;
    t = NULL;
done:
    tok_free(&t);
    free(data);
    return rc;
}

int tok_from_hf_dir(const char *dir, llm_tokenizer **out, doc_err *err)
{
    char path[4096];
    json_t *cfg = NULL;
    int rc;
    *out = NULL;
    if ((rc = path_join(path, sizeof path, dir, "tokenizer_config.json")))
        return doc_errf(err, rc, "%s: path too long", dir);
    if (file_exists(path) && (rc = json_load_capped(path, 16u << 20, &cfg, err))) return rc;
    path_join(path, sizeof path, dir, "tokenizer.json");
    if (file_exists(path)) {
        rc = from_tokenizer_json(path, cfg, out, err);
    } else {
        path_join(path, sizeof path, dir, "vocab.txt");
        if (file_exists(path))
            rc = from_vocab_txt(path, cfg, out, err);
        else
            rc = doc_errf(err, DOC_ENOTFOUND, "%s: neither tokenizer.json nor vocab.txt", dir);
    }
    json_decref(cfg);
    return rc;
}

/* ======================================================================
 * Encoding
 * ====================================================================== */

static int encode_text(const llm_tokenizer *t, const char *s, size_t n, int at_start, tok_out *o,
                       doc_err *err)
{
    if (!n) return DOC_OK;
    switch (t->kind) {
    case TOK_BPE: return tok_bpe_encode(t, s, n, o, err);
    case TOK_SPM: return tok_spm_encode(t, s, n, at_start, o, err);
    default: return tok_wp_encode(t, s, n, o, err);
    }
}

/* match_at: the longest special token at s allowed here, or -1 */
static int32_t match_at(const llm_tokenizer *t, const char *s, size_t n, int parse_special)
{
    for (int i = 0; i < t->n_match; i++) {
        int32_t id = t->match_ids[i];
        if (t->type[id] != TT_USER && !parse_special) continue;
        if (t->len[id] <= n && !memcmp(t->text[id], s, t->len[id])) return id;
    }
    return -1;
}

int tok_encode(const llm_tokenizer *t, const char *text, size_t len, int add_special,
               int parse_special, int32_t *ids, int cap, int *n, doc_err *err)
{
    *n = 0;
    if (!t || (!text && len) || cap < 0 || (cap > 0 && !ids))
        return doc_errf(err, DOC_EINVAL, "tok_encode: bad arguments");
    if (len > TOK_MAX_TEXT)
        return doc_errf(err, DOC_ELIMIT, "tok_encode: %zu bytes of text (limit %u)", len,
                        TOK_MAX_TEXT);
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        int l = (uint8_t)text[i] < 0x80 ? 1 : utf8_decode(text + i, len - i, &cp);
        if (!l) return doc_errf(err, DOC_EINVAL, "invalid UTF-8 at byte %zu", i);
        i += (size_t)l;
    }
    tok_out o = {ids, cap, 0};
    int rc = DOC_OK;
    if (add_special)
        for (int i = 0; i < t->n_pre; i++) tok_emit(&o, t->pre_ids[i]);
    size_t seg = 0, i = 0;
    int at_start = 1;
    while (i < len) {
        if (t->first_byte[(uint8_t)text[i]]) {
            int32_t m = match_at(t, text + i, len - i, parse_special);
            if (m >= 0) {
                if (i > seg && (rc = encode_text(t, text + seg, i - seg, at_start, &o, err)))
                    return rc;
                tok_emit(&o, m);
                at_start = 1;
                i += t->len[m];
                seg = i;
                continue;
            }
        }
        i++;
    }
    if (len > seg && (rc = encode_text(t, text + seg, len - seg, at_start, &o, err))) return rc;
    if (add_special)
        for (int k = 0; k < t->n_post; k++) tok_emit(&o, t->post_ids[k]);
    *n = o.n;
    if (o.n > cap)
        return doc_errf(err, DOC_ELIMIT, "tok_encode: %d tokens, room for %d", o.n, cap);
    return DOC_OK;
}

/* ======================================================================
 * Decoding
 * ====================================================================== */

static int is_skipped_special(const llm_tokenizer *t, int32_t id)
{
    return t->type[id] == TT_CONTROL || (t->kind != TOK_SPM && t->type[id] == TT_UNKNOWN);
}

int tok_piece_bytes(const llm_tokenizer *t, int32_t id, int special, char *out, int cap)
{
    if (!t || id < 0 || id >= t->n_vocab || cap < 0) return -1;
    const char *s = t->text[id];
    int n = (int)t->len[id];
    int type = t->type[id];
    if (is_skipped_special(t, id) && !special) return 0;
    if (t->kind == TOK_BPE && type == TT_NORMAL) return tok_bytes_unmap(t, s, (size_t)n, out, cap);
    if (t->kind == TOK_SPM) {
        if (type == TT_BYTE && n == 6 && !memcmp(s, "<0x", 3)) {
            if (cap > 0) out[0] = (char)strtol(s + 3, NULL, 16);
            return 1;
        }
        if (type == TT_UNKNOWN && !special) {
            s = " \xe2\x81\x87 "; /* U+2047, as llama.cpp shows unknown pieces */
            n = 5;
        } else if (type == TT_NORMAL || type == TT_USER) {
            int w = 0;
            for (int i = 0; i < n;) {
                if (i + 3 <= n && !memcmp(s + i, "\xe2\x96\x81", 3)) {
                    if (w < cap) out[w] = ' ';
                    w++;
                    i += 3;
                } else {
                    if (w < cap) out[w] = s[i];
                    w++;
                    i++;
                }
            }
            return w;
        }
    }
    if (cap > 0) memcpy(out, s, (size_t)(n < cap ? n : cap));
    return n;
}

static int append_piece(const llm_tokenizer *t, int32_t id, buf *out)
{
    int need = tok_piece_bytes(t, id, 0, NULL, 0);
    if (need < 0) return DOC_EINVAL;
    int rc = buf_reserve(out, (size_t)need + 1);
    if (rc) return rc;
    tok_piece_bytes(t, id, 0, out->data + out->len, need);
    out->len += (size_t)need;
    out->data[out->len] = 0;
    return DOC_OK;
}

/* wp_cleanup: HF's WordPiece decoder cleanup, applied to each token's text
 * (with the space put before it) on its own, as the reference does: drop the
 * space before . ? ! , and before the contractions n't 'm 's 've 're. */
static void wp_cleanup(buf *b, size_t from)
{
    static const struct {
        const char *from, *to;
    } rules[] = {
        {" .", "."},     {" ?", "?"},   {" !", "!"},           {" ,", ","},   {" ' ", "'"},
        {" n't", "n't"}, {" 'm", "'m"}, {" do not", " don't"}, {" 's", "'s"}, {" 've", "'ve"},
        {" 're", "'re"},
    };
    for (size_t r = 0; r < sizeof rules / sizeof rules[0]; r++) {
        size_t fl = strlen(rules[r].from), tl = strlen(rules[r].to); /* tl <= fl */
        size_t w = from;
        for (size_t i = from; i < b->len;) {
            if (i + fl <= b->len && !memcmp(b->data + i, rules[r].from, fl)) {
                memmove(b->data + w, rules[r].to, tl);
                w += tl;
                i += fl;
            } else {
                b->data[w++] = b->data[i++];
            }
        }
        b->len = w;
        b->data[w] = 0;
    }
}

int tok_decode(const llm_tokenizer *t, const int32_t *ids, int n, buf *out)
{
    if (!t || (!ids && n) || !out) return DOC_EINVAL;
    int rc = DOC_OK, first = 1;
    for (int i = 0; i < n; i++) {
        int32_t id = ids[i];
        if (id < 0 || id >= t->n_vocab) return DOC_EINVAL;
        if (is_skipped_special(t, id)) continue;
        if (t->kind == TOK_WORDPIECE) {
            size_t pl = strlen(t->wp_prefix);
            const char *s = t->text[id];
            size_t l = t->len[id];
            size_t at = out->len;
            if (pl && l >= pl && !memcmp(s, t->wp_prefix, pl)) {
                s += pl;
                l -= pl;
            } else if (!first && (rc = buf_putc(out, ' '))) {
                return rc;
            }
            if ((rc = buf_append(out, s, l))) return rc;
            if (t->wp_cleanup) wp_cleanup(out, at);
        } else {
            size_t at = out->len;
            if ((rc = append_piece(t, id, out))) return rc;
            if (t->kind == TOK_SPM && first && t->add_space_prefix && out->len > at &&
                out->data[at] == ' ') {
                memmove(out->data + at, out->data + at + 1, out->len - at - 1);
                out->len--;
                out->data[out->len] = 0;
            }
        }
        first = 0;
    }
    return DOC_OK;
}

/* ======================================================================
 * Accessors
 * ====================================================================== */

int tok_kind(const llm_tokenizer *t) { return t ? t->kind : 0; }
int tok_n_vocab(const llm_tokenizer *t) { return t ? t->n_vocab : 0; }

const char *tok_text(const llm_tokenizer *t, int32_t id)
{
    return t && id >= 0 && id < t->n_vocab ? t->text[id] : NULL;
}

int32_t tok_lookup(const llm_tokenizer *t, const char *piece)
{
    return t && piece ? tok_find(t, piece, strlen(piece)) : -1;
}

int tok_is_special(const llm_tokenizer *t, int32_t id)
{
    return t && id >= 0 && id < t->n_vocab && t->type[id] == TT_CONTROL;
}

const tok_special *tok_specials(const llm_tokenizer *t) { return t ? &t->sp : NULL; }
