/*
 * tok_bpe.c - byte-level BPE (GPT-2 family: SmolLM, Llama 3, Qwen 2) and
 * SentencePiece-style BPE with byte fallback (Llama 2, Mistral).
 *
 * Byte-level BPE: the text is cut into words by a chain of regexes (PCRE2,
 * UTF + UCP, JIT); each regex splits every piece the previous one produced
 * into its matches and the text between them, and sees only that piece (a
 * lookahead cannot look past it).  This is how the reference tokenizers
 * apply pre-tokenizer sequences: SmolLM/StarCoder first isolate every digit
 * (\p{N}) and then apply the GPT-2 regex.  Each word's bytes start as one
 * symbol per byte (the token of that byte's GPT-2 code point) and adjacent
 * pairs are merged lowest merge rank first, leftmost first on ties, with a
 * binary heap and lazy invalidation, so a long word costs O(n log n).
 *
 * SPM: spaces become U+2581 (and one is prepended at the start of the text
 * when add_space_prefix), the text starts as one symbol per character, and
 * adjacent pairs whose concatenation is a vocabulary piece are merged highest
 * score first (leftmost on ties).  Symbols that are not pieces are emitted as
 * their <0xAB> byte tokens.
 *
 * Scratch (match data, JIT stack, symbol arrays, heap) is per call.
 */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "llm/tok_impl.h"

/* ======================================================================
 * Pre-tokenizer regex sets, by tokenizer.ggml.pre
 * ====================================================================== */

#define RE_GPT2 "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"
#define RE_LLAMA3                                                                          \
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|" \
    "\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define RE_QWEN2                                                                           \
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|" \
    "\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"

static const struct {
    const char *name;
    const char *re[TOK_MAX_RE];
    int ignore_merges;
} pre_table[] = {
    {"default", {"[\\p{P}\\$\\+<=>\\^~\\|]+", RE_GPT2, "\\p{N}+", "[0-9][0-9][0-9]"}, 0},
    {"gpt2", {RE_GPT2}, 0},
    {"gpt-2", {RE_GPT2}, 0},
    {"phi-2", {RE_GPT2}, 0},
    {"smollm", {"\\p{N}", RE_GPT2}, 0},
    {"starcoder", {"\\p{N}", RE_GPT2}, 0},
    {"refact", {"\\p{N}", RE_GPT2}, 0},
    {"command-r", {"\\p{N}", RE_GPT2}, 0},
    {"codeshell", {"\\p{N}", RE_GPT2}, 0},
    {"llama-bpe", {RE_LLAMA3}, 1},
    {"llama3", {RE_LLAMA3}, 1},
    {"llama-v3", {RE_LLAMA3}, 1},
    {"qwen2", {RE_QWEN2}, 0},
    {"deepseek-r1-qwen", {RE_QWEN2}, 0},
};

static void setup_byte_map(llm_tokenizer *t)
{
    int extra = 0;
    for (int i = 0; i < 324; i++) t->cp_byte[i] = -1;
    for (int b = 0; b < 256; b++) {
        int self = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
        int cp = self ? b : 256 + extra++;
        t->byte_cp[b] = (uint16_t)cp;
        t->cp_byte[cp] = (int16_t)b;
        char u[4];
        int l = utf8_encode((uint32_t)cp, u);
        t->byte_id[b] = tok_find(t, u, (size_t)l);
    }
    t->byte_level = 1;
}

int tok_bpe_setup_regex(llm_tokenizer *t, const char *const *patterns, int n, doc_err *err)
{
    setup_byte_map(t);
    for (int i = 0; i < n && i < TOK_MAX_RE; i++) {
        int ec;
        PCRE2_SIZE eo;
        pcre2_code *re = pcre2_compile((PCRE2_SPTR)patterns[i], PCRE2_ZERO_TERMINATED,
                                       PCRE2_UTF | PCRE2_UCP, &ec, &eo, NULL);
        if (!re) {
            PCRE2_UCHAR msg[160];
            pcre2_get_error_message(ec, msg, sizeof msg);
            return doc_errf(err, DOC_EFORMAT, "pre-tokenizer regex %d at offset %zu: %s", i,
                            (size_t)eo, (const char *)msg);
        }
        pcre2_jit_compile(re, PCRE2_JIT_COMPLETE); /* the interpreter is the fallback */
        t->re[t->n_re++] = re;
    }
    return DOC_OK;
}

int tok_bpe_setup(llm_tokenizer *t, const char *pre, doc_err *err)
{
    for (size_t i = 0; i < sizeof pre_table / sizeof pre_table[0]; i++) {
        if (strcmp(pre, pre_table[i].name)) continue;
        int n = 0;
        while (n < TOK_MAX_RE && pre_table[i].re[n]) n++;
        t->ignore_merges = pre_table[i].ignore_merges;
        return tok_bpe_setup_regex(t, pre_table[i].re, n, err);
    }
    return doc_errf(err, DOC_EUNSUPPORTED, "tokenizer.ggml.pre \"%s\" is not supported", pre);
}

void tok_bpe_free(llm_tokenizer *t)
{
    for (int i = 0; i < t->n_re; i++) pcre2_code_free(t->re[i]);
    t->n_re = 0;
}

int tok_bytes_unmap(const llm_tokenizer *t, const char *s, size_t n, char *out, int cap)
{
    int w = 0;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        int l = utf8_decode(s + i, n - i, &cp);
        if (!l) l = 1, cp = 0xFFFFFFFFu;
        if (cp < 324 && t->cp_byte[cp] >= 0) {
            if (w < cap) out[w] = (char)t->cp_byte[cp];
            w++;
        } else { /* not a mapped byte: keep the text */
            for (int k = 0; k < l; k++, w++)
                if (w < cap) out[w] = s[i + k];
        }
        i += (size_t)l;
    }
    return w;
}

/* ======================================================================
 * Per-call scratch and the merge heap
 * ====================================================================== */

typedef struct heap_ent {
    float key;   /* BPE: rank; SPM: -score (smaller pops first) */
    int32_t pos; /* left symbol index: ties pop leftmost first */
    int32_t r;   /* right symbol index */
    int32_t a, b; /* BPE: ids of left/right when pushed; SPM: merged length, result id */
} heap_ent;

typedef struct scratch {
    pcre2_match_data *md[TOK_MAX_RE];
    pcre2_match_context *mctx;
    pcre2_jit_stack *jit;
    int32_t *sym, *prev, *next, *slen; /* symbol id (BPE) or byte offset (SPM); links; lengths */
    size_t cap;
    heap_ent *heap;
    size_t hn, hcap;
    char *mapped;
    size_t mcap;
} scratch;

static void scratch_free(scratch *sc)
{
    for (int i = 0; i < TOK_MAX_RE; i++) pcre2_match_data_free(sc->md[i]);
    pcre2_match_context_free(sc->mctx);
    pcre2_jit_stack_free(sc->jit);
    free(sc->sym);
    free(sc->prev);
    free(sc->next);
    free(sc->slen);
    free(sc->heap);
    free(sc->mapped);
}

static int scratch_syms(scratch *sc, size_t n)
{
    if (n <= sc->cap) return 0;
    size_t c = sc->cap ? sc->cap : 64;
    while (c < n) c *= 2;
    int32_t *a = realloc(sc->sym, c * 4), *b = a ? realloc(sc->prev, c * 4) : NULL;
    if (a) sc->sym = a;
    if (b) sc->prev = b;
    int32_t *d = b ? realloc(sc->next, c * 4) : NULL;
    if (d) sc->next = d;
    int32_t *e = d ? realloc(sc->slen, c * 4) : NULL;
    if (e) sc->slen = e;
    if (!e) return -1;
    sc->cap = c;
    return 0;
}

static int heap_less(const heap_ent *x, const heap_ent *y)
{
    return x->key < y->key || (x->key == y->key && x->pos < y->pos);
}

static int heap_push(scratch *sc, heap_ent e)
{
    if (sc->hn == sc->hcap) {
        size_t c = sc->hcap ? sc->hcap * 2 : 64;
        heap_ent *h = realloc(sc->heap, c * sizeof *h);
        if (!h) return -1;
        sc->heap = h;
        sc->hcap = c;
    }
    size_t i = sc->hn++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!heap_less(&e, &sc->heap[p])) break;
        sc->heap[i] = sc->heap[p];
        i = p;
    }
    sc->heap[i] = e;
    return 0;
}

static heap_ent heap_pop(scratch *sc)
{
    heap_ent top = sc->heap[0], last = sc->heap[--sc->hn];
    size_t i = 0, n = sc->hn;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && heap_less(&sc->heap[c + 1], &sc->heap[c])) c++;
        if (!heap_less(&sc->heap[c], &last)) break;
        sc->heap[i] = sc->heap[c];
        i = c;
    }
    if (n) sc->heap[i] = last;
    return top;
}

static int oom(doc_err *err) { return doc_errf(err, DOC_ENOMEM, "tokenizer: out of memory"); }

/* ======================================================================
 * Byte-level BPE
 * ====================================================================== */

#define DEAD INT32_MIN

static int bpe_push(const llm_tokenizer *t, scratch *sc, int32_t l, int32_t r)
{
    const tok_merge_slot *m = tok_merge_find(t, sc->sym[l], sc->sym[r]);
    if (!m) return 0;
    heap_ent e = {(float)m->rank, l, r, sc->sym[l], sc->sym[r]};
    return heap_push(sc, e);
}

static int bpe_word(const llm_tokenizer *t, scratch *sc, const char *w, size_t m, tok_out *o,
                    doc_err *err)
{
    if (m == 1) {
        int32_t id = t->byte_id[(uint8_t)w[0]];
        if (id >= 0 || t->sp.unk >= 0) tok_emit(o, id >= 0 ? id : t->sp.unk);
        return DOC_OK;
    }
    if (t->ignore_merges) { /* a word that is a token is that token */
        if (sc->mcap < m * 2) {
            char *p = realloc(sc->mapped, m * 2);
            if (!p) return oom(err);
            sc->mapped = p;
            sc->mcap = m * 2;
        }
        size_t k = 0;
        for (size_t i = 0; i < m; i++) k += (size_t)utf8_encode(t->byte_cp[(uint8_t)w[i]], sc->mapped + k);
        int32_t id = tok_find(t, sc->mapped, k);
        if (id >= 0) {
            tok_emit(o, id);
            return DOC_OK;
        }
    }
    if (scratch_syms(sc, m)) return oom(err);
    for (size_t i = 0; i < m; i++) {
        sc->sym[i] = t->byte_id[(uint8_t)w[i]];
        sc->prev[i] = (int32_t)i - 1;
        sc->next[i] = i + 1 < m ? (int32_t)i + 1 : -1;
    }
    sc->hn = 0;
    for (size_t i = 0; i + 1 < m; i++)
        if (bpe_push(t, sc, (int32_t)i, (int32_t)i + 1)) return oom(err);
    while (sc->hn) {
        heap_ent e = heap_pop(sc);
        int32_t l = e.pos, r = e.r;
        if (sc->sym[l] != e.a || sc->next[l] != r || sc->sym[r] != e.b) continue; /* stale */
        sc->sym[l] = tok_merge_find(t, e.a, e.b)->result;
        sc->sym[r] = DEAD;
        sc->next[l] = sc->next[r];
        if (sc->next[r] >= 0) sc->prev[sc->next[r]] = l;
        if (sc->prev[l] >= 0 && bpe_push(t, sc, sc->prev[l], l)) return oom(err);
        if (sc->next[l] >= 0 && bpe_push(t, sc, l, sc->next[l])) return oom(err);
    }
    for (int32_t i = 0; i >= 0; i = sc->next[i]) {
        int32_t id = sc->sym[i] >= 0 ? sc->sym[i] : t->sp.unk;
        if (id >= 0) tok_emit(o, id);
    }
    return DOC_OK;
}

/* split: cut s[0..n) with regex `level` and hand every match and every gap to
 * the next level; past the last regex, BPE the word */
static int split(const llm_tokenizer *t, scratch *sc, int level, const char *s, size_t n,
                 tok_out *o, doc_err *err)
{
    if (level == t->n_re) return bpe_word(t, sc, s, n, o, err);
    pcre2_code *re = t->re[level];
    pcre2_match_data *md = sc->md[level];
    size_t pos = 0, last = 0;
    int rc;
    while (pos < n) {
        int r = pcre2_match(re, (PCRE2_SPTR)s, n, pos, PCRE2_NO_UTF_CHECK, md, sc->mctx);
        if (r == PCRE2_ERROR_NOMATCH) break;
        if (r < 0) {
            PCRE2_UCHAR msg[160];
            pcre2_get_error_message(r, msg, sizeof msg);
            return doc_errf(err, DOC_ELIMIT, "pre-tokenizer regex %d: %s", level, (const char *)msg);
        }
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        size_t ms = ov[0], me = ov[1];
        if (me <= ms) { /* empty match: step one character */
            pos = ms + 1;
            while (pos < n && ((uint8_t)s[pos] & 0xC0) == 0x80) pos++;
            continue;
        }
        if (ms > last && (rc = split(t, sc, level + 1, s + last, ms - last, o, err))) return rc;
        if ((rc = split(t, sc, level + 1, s + ms, me - ms, o, err))) return rc;
        last = pos = me;
    }
    if (n > last) return split(t, sc, level + 1, s + last, n - last, o, err);
    return DOC_OK;
}

int tok_bpe_encode(const llm_tokenizer *t, const char *s, size_t n, tok_out *o, doc_err *err)
{
    scratch sc;
    memset(&sc, 0, sizeof sc);
    char *tmp = NULL;
    int rc = DOC_OK;
    if (t->nfc) {
        utf8proc_uint8_t *nf = NULL;
        utf8proc_ssize_t l = utf8proc_map((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)n, &nf,
                                          UTF8PROC_STABLE | UTF8PROC_COMPOSE);
        if (l < 0) return doc_errf(err, DOC_EINVAL, "nfc: %s", utf8proc_errmsg(l));
        tmp = (char *)nf;
        s = tmp;
        n = (size_t)l;
    }
    if (t->add_prefix_space && n && s[0] != ' ') {
        char *p = malloc(n + 1);
        if (!p) {
            rc = oom(err);
            goto done;
        }
        p[0] = ' ';
        memcpy(p + 1, s, n);
        free(tmp);
        tmp = p;
        s = p;
        n++;
    }
    sc.mctx = pcre2_match_context_create(NULL);
    sc.jit = pcre2_jit_stack_create(32 * 1024, 8 << 20, NULL);
    if (!sc.mctx || !sc.jit) {
        rc = oom(err);
        goto done;
    }
    pcre2_jit_stack_assign(sc.mctx, NULL, sc.jit);
    for (int i = 0; i < t->n_re; i++)
        if (!(sc.md[i] = pcre2_match_data_create_from_pattern(t->re[i], NULL))) {
            rc = oom(err);
            goto done;
        }
    rc = split(t, &sc, 0, s, n, o, err);
done:
    scratch_free(&sc);
    free(tmp);
    return rc;
}

/* ======================================================================
 * SentencePiece-style BPE
 * ====================================================================== */

static int spm_push(const llm_tokenizer *t, scratch *sc, const char *text, int32_t l, int32_t r)
{
    int32_t len = sc->slen[l] + sc->slen[r];
    int32_t id = tok_find(t, text + sc->sym[l], (size_t)len);
    if (id < 0 || (t->type[id] != TT_NORMAL && t->type[id] != TT_USER)) return 0;
    heap_ent e = {-t->score[id], l, r, len, id};
    return heap_push(sc, e);
}

int tok_spm_encode(const llm_tokenizer *t, const char *s, size_t n, int at_start, tok_out *o,
                   doc_err *err)
{
    scratch sc;
    memset(&sc, 0, sizeof sc);
    int rc = DOC_OK;
    size_t cap = n * 3 + 3, k = 0;
    char *text = malloc(cap);
    if (!text) return oom(err);
    if (at_start && t->add_space_prefix) {
        memcpy(text, "\xe2\x96\x81", 3);
        k = 3;
    }
    for (size_t i = 0; i < n; i++) {
        if (s[i] == ' ') {
            memcpy(text + k, "\xe2\x96\x81", 3);
            k += 3;
        } else {
            text[k++] = s[i];
        }
    }
    if (scratch_syms(&sc, k)) {
        rc = oom(err);
        goto done;
    }
    int32_t m = 0;
    for (size_t i = 0; i < k; m++) {
        uint32_t cp;
        int l = utf8_decode(text + i, k - i, &cp);
        if (!l) l = 1;
        sc.sym[m] = (int32_t)i;
        sc.slen[m] = l;
        sc.prev[m] = m - 1;
        sc.next[m] = m + 1;
        i += (size_t)l;
    }
    if (m) sc.next[m - 1] = -1;
    for (int32_t i = 0; i + 1 < m; i++)
        if (spm_push(t, &sc, text, i, i + 1)) {
            rc = oom(err);
            goto done;
        }
    while (sc.hn) {
        heap_ent e = heap_pop(&sc);
        int32_t l = e.pos, r = e.r;
        if (!sc.slen[l] || !sc.slen[r] || sc.next[l] != r || sc.slen[l] + sc.slen[r] != e.a)
            continue; /* stale */
        sc.slen[l] += sc.slen[r];
        sc.slen[r] = 0;
        sc.next[l] = sc.next[r];
        if (sc.next[r] >= 0) sc.prev[sc.next[r]] = l;
        if ((sc.prev[l] >= 0 && spm_push(t, &sc, text, sc.prev[l], l)) ||
            (sc.next[l] >= 0 && spm_push(t, &sc, text, l, sc.next[l]))) {
            rc = oom(err);
            goto done;
        }
    }
    for (int32_t i = m ? 0 : -1; i >= 0; i = sc.next[i]) {
        const char *p = text + sc.sym[i];
        int32_t id = tok_find(t, p, (size_t)sc.slen[i]);
        if (id >= 0) {
            tok_emit(o, id);
            continue;
        }
        for (int32_t b = 0; b < sc.slen[i]; b++) { /* byte fallback */
            int32_t bid = t->spm_byte[(uint8_t)p[b]];
            if (bid < 0) bid = t->sp.unk;
            if (bid >= 0) tok_emit(o, bid);
        }
    }
done:
    scratch_free(&sc);
    free(text);
    return rc;
}
