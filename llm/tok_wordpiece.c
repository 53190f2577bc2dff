/*
 * tok_wordpiece.c - BERT tokenization: the BertNormalizer, the
 * BertPreTokenizer and greedy longest-match-first WordPiece, as Hugging Face
 * tokenizers does them.
 *
 * Normalization, in the reference's order:
 *   clean text     drop NUL, U+FFFD and "other" characters (Cc Cf Cs Co Cn)
 *                  except tab/LF/CR; map White_Space characters to ' '
 *   chinese chars  put spaces around CJK ideographs
 *   strip accents  NFD, then drop nonspacing marks (Mn)
 *   lowercase      per character (full mapping: U+0130 gives "i" + U+0307)
 * Pre-tokenization splits on White_Space and isolates each punctuation
 * character (ASCII punctuation and Unicode P*).  A word longer than
 * max_input_chars_per_word characters, or one that cannot be covered by
 * vocabulary pieces ("##"-prefixed after the first), becomes [UNK].
 *
 * Unicode data comes from utf8proc.
 */
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "llm/tok_impl.h"

static int is_white_space(uint32_t c)
{
    return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
           c == 0x205F || c == 0x3000;
}

static int is_other(uint32_t c)
{
    switch (utf8proc_category((utf8proc_int32_t)c)) {
    case UTF8PROC_CATEGORY_CC:
    case UTF8PROC_CATEGORY_CF:
    case UTF8PROC_CATEGORY_CS:
    case UTF8PROC_CATEGORY_CO:
    case UTF8PROC_CATEGORY_CN: return 1;
    default: return 0;
    }
}

static int is_cjk(uint32_t c)
{
    return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) ||
           (c >= 0x20000 && c <= 0x2A6DF) || (c >= 0x2A700 && c <= 0x2B73F) ||
           (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B820 && c <= 0x2CEAF) ||
           (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

static int is_punct(uint32_t c)
{
    if (c < 0x80)
        return (c >= 33 && c <= 47) || (c >= 58 && c <= 64) || (c >= 91 && c <= 96) ||
               (c >= 123 && c <= 126);
    switch (utf8proc_category((utf8proc_int32_t)c)) {
    case UTF8PROC_CATEGORY_PC:
    case UTF8PROC_CATEGORY_PD:
    case UTF8PROC_CATEGORY_PS:
    case UTF8PROC_CATEGORY_PE:
    case UTF8PROC_CATEGORY_PI:
    case UTF8PROC_CATEGORY_PF:
    case UTF8PROC_CATEGORY_PO: return 1;
    default: return 0;
    }
}

/* growable code point array for one call */
typedef struct cps {
    uint32_t *v;
    size_t n, cap;
} cps;

static int cps_push(cps *a, uint32_t c)
{
    if (a->n == a->cap) {
        size_t nc = a->cap ? a->cap * 2 : 256;
        uint32_t *p = realloc(a->v, nc * sizeof *p);
        if (!p) return -1;
        a->v = p;
        a->cap = nc;
    }
    a->v[a->n++] = c;
    return 0;
}

/* push one normalized character (after clean text / CJK) through strip
 * accents and lowercase */
static int push_tail(const llm_tokenizer *t, cps *out, uint32_t c)
{
    utf8proc_int32_t d[32];
    utf8proc_ssize_t nd = 1;
    d[0] = (utf8proc_int32_t)c;
    if (t->wp_strip_accents) {
        utf8proc_ssize_t r =
            utf8proc_decompose_char((utf8proc_int32_t)c, d, 32, UTF8PROC_DECOMPOSE, NULL);
        if (r > 0 && r <= 32) nd = r; /* else keep c as it is */
    }
    for (utf8proc_ssize_t i = 0; i < nd; i++) {
        uint32_t x = (uint32_t)d[i];
        if (t->wp_strip_accents && utf8proc_category(d[i]) == UTF8PROC_CATEGORY_MN) continue;
        if (t->wp_lower) {
            if (x == 0x130) { /* the one unconditional multi-character lowercase */
                if (cps_push(out, 'i') || cps_push(out, 0x307)) return -1;
                continue;
            }
            x = (uint32_t)utf8proc_tolower((utf8proc_int32_t)x);
        }
        if (cps_push(out, x)) return -1;
    }
    return 0;
}

/* wordpiece: one word (code points w[0..n)) to ids.  tmp holds the word's
 * UTF-8 and, after it, the candidate "##" + rest; offs[i] is the byte offset
 * of character i. */
static void wordpiece(const llm_tokenizer *t, const uint32_t *w, size_t n, tok_out *o, char *tmp,
                      size_t *offs)
{
    size_t k = 0, pl = strlen(t->wp_prefix);
    for (size_t i = 0; i < n; i++) {
        offs[i] = k;
        k += (size_t)utf8_encode(w[i], tmp + k);
    }
    offs[n] = k;
    char *cand = tmp + k; /* prefix + the rest of the word from `start` */
    memcpy(cand, t->wp_prefix, pl);
    int start_n = o->n;
    size_t start = 0;
    while (start < n) {
        const char *p = tmp + offs[start];
        size_t extra = 0;
        if (start) {
            memcpy(cand + pl, p, offs[n] - offs[start]);
            p = cand;
            extra = pl;
        }
        int32_t found = -1;
        size_t end = n;
        for (; end > start; end--)
            if ((found = tok_find(t, p, offs[end] - offs[start] + extra)) >= 0) break;
        if (found < 0) {
            o->n = start_n; /* the whole word is unknown */
            if (t->sp.unk >= 0) tok_emit(o, t->sp.unk);
            return;
        }
        tok_emit(o, found);
        start = end;
    }
}

int tok_wp_encode(const llm_tokenizer *t, const char *s, size_t n, tok_out *o, doc_err *err)
{
    cps a = {0};
    int rc = DOC_OK;
    char *tmp = NULL;
    size_t *offs = NULL;
    for (size_t i = 0; i < n;) {
        uint32_t c;
        int l = utf8_decode(s + i, n - i, &c);
        if (!l) {
            rc = doc_errf(err, DOC_EINVAL, "invalid UTF-8 at byte %zu", i);
            goto done;
        }
        i += (size_t)l;
        if (t->wp_clean) {
            if (c == 0 || c == 0xFFFD || (c != '\t' && c != '\n' && c != '\r' && is_other(c)))
                continue;
            if (is_white_space(c)) c = ' ';
        }
        if (t->wp_chinese && is_cjk(c)) {
            if (cps_push(&a, ' ') || push_tail(t, &a, c) || cps_push(&a, ' ')) goto nomem;
            continue;
        }
        if (push_tail(t, &a, c)) goto nomem;
    }
    /* words: split on white space, isolate punctuation */
    size_t maxw = (size_t)t->wp_max_chars + 1;
    tmp = malloc(maxw * 8 + sizeof t->wp_prefix);
    offs = malloc((maxw + 1) * sizeof *offs);
    if (!tmp || !offs) goto nomem;
    for (size_t i = 0; i < a.n;) {
        uint32_t c = a.v[i];
        if (is_white_space(c)) {
            i++;
            continue;
        }
        size_t j = i + 1;
        if (!is_punct(c))
            while (j < a.n && !is_white_space(a.v[j]) && !is_punct(a.v[j])) j++;
        if (j - i > (size_t)t->wp_max_chars) {
            if (t->sp.unk >= 0) tok_emit(o, t->sp.unk);
        } else {
            wordpiece(t, a.v + i, j - i, o, tmp, offs);
        }
        i = j;
    }
    goto done;
nomem:
    rc = doc_errf(err, DOC_ENOMEM, "tokenizer: out of memory");
done:
    free(a.v);
    free(tmp);
    free(offs);
    return rc;
}
