/*
 * tok_impl.h - the tokenizer object shared by tokenizer.c (loading, special
 * tokens, dispatch, decoding), tok_bpe.c (byte-level BPE and SentencePiece-
 * style BPE) and tok_wordpiece.c (BERT).  Private to those three files (and
 * tests/unit/test_tokenizer.c, which swaps pre-tokenizers through it).
 *
 * Invariants: everything in an llm_tokenizer is written while it is built and
 * only read afterwards, so one tokenizer may be used by many threads at once.
 * All tables live in the arena `mem` (freed at once by tok_free) except the
 * compiled regexes, which tok_free releases.
 */
#ifndef DOCENT_LLM_TOK_IMPL_H
#define DOCENT_LLM_TOK_IMPL_H

#include "llm/internal.h"

/* token types, as GGUF's tokenizer.ggml.token_type numbers them */
enum {
    TT_NORMAL = 1,
    TT_UNKNOWN = 2,
    TT_CONTROL = 3, /* matched in text only with parse_special; skipped by decode */
    TT_USER = 4,    /* user-defined: always matched in text, decoded as text */
    TT_UNUSED = 5,
    TT_BYTE = 6,    /* SPM <0xAB> */
};

/* pre-tokenizer regex sets (byte-level BPE) */
#define TOK_MAX_RE 4

/* caps on one tok_encode call */
#define TOK_MAX_TEXT (64u << 20) /* bytes of input */

typedef struct tok_merge_slot {
    uint64_t key;   /* (left id << 32) | right id, plus 1 so 0 means empty */
    int32_t rank;   /* lower merges first (BPE); for SPM unused */
    int32_t result; /* id of the merged token */
} tok_merge_slot;

struct llm_tokenizer {
    int kind;
    int n_vocab;
    const char **text;   /* (n_vocab) NUL-terminated vocab strings */
    uint32_t *len;       /* (n_vocab) their lengths */
    float *score;        /* (n_vocab) SPM scores, or NULL */
    uint8_t *type;       /* (n_vocab) TT_* */

    /* piece -> id: open addressing, power-of-two size, slot holds id + 1 */
    uint32_t *vmap;
    uint32_t vmap_mask;

    /* BPE merges (left id, right id) -> rank, result */
    tok_merge_slot *mmap;
    uint64_t mmap_mask;
    int n_merges;

    /* tokens matched inside text: sorted longest first */
    int32_t *match_ids;
    int n_match;
    uint8_t first_byte[256]; /* 1 if some matched token starts with this byte */

    tok_special sp;
    /* what add_special puts around the text (BOS; [CLS] ... [SEP]) */
    int32_t pre_ids[4], post_ids[4];
    int n_pre, n_post;

    /* byte-level BPE */
    int32_t byte_id[256];    /* token of the single mapped char of each byte, -1 if none */
    uint16_t byte_cp[256];   /* GPT-2 byte -> code point */
    int16_t cp_byte[324];    /* code point -> byte, -1 where none */
    int byte_level;          /* 1 once byte_cp is set up */
    int nfc;                 /* HF "NFC" normalizer before pre-tokenizing */
    void *re[TOK_MAX_RE];    /* pcre2_code*, applied one after another */
    int n_re;
    int ignore_merges;       /* a word that is a whole token is not merged (Llama 3) */
    int add_prefix_space;    /* HF ByteLevel add_prefix_space */

    /* SPM */
    int add_space_prefix;
    int32_t spm_byte[256];   /* <0xAB> token of each byte, -1 if none */

    /* WordPiece */
    int wp_clean, wp_chinese, wp_strip_accents, wp_lower;
    int wp_max_chars;
    int wp_cleanup;          /* decoder cleans spaces before punctuation */
    char wp_prefix[16];      /* "##" */

    arena mem;
};

/* vocabulary helpers (tokenizer.c) */
int32_t tok_find(const llm_tokenizer *t, const char *s, size_t n);
int tok_vocab_init(llm_tokenizer *t, int n_vocab, doc_err *err);
int tok_vocab_set(llm_tokenizer *t, int id, const char *s, size_t n, doc_err *err);
int tok_vocab_index(llm_tokenizer *t, doc_err *err);
int tok_merges_init(llm_tokenizer *t, int n, doc_err *err);
/* tok_merge_add: "left right" -> rank; silently skips pairs whose parts or
 * result are not in the vocabulary (they could never apply). */
void tok_merge_add(llm_tokenizer *t, const char *l, size_t ln, const char *r, size_t rn, int rank);
const tok_merge_slot *tok_merge_find(const llm_tokenizer *t, int32_t l, int32_t r);

/* output accumulator shared by the encoders: ids beyond cap are counted only */
typedef struct tok_out {
    int32_t *ids;
    int cap, n;
} tok_out;
static inline void tok_emit(tok_out *o, int32_t id)
{
    if (o->n < o->cap) o->ids[o->n] = id;
    o->n++;
}

/* byte-level BPE / SPM (tok_bpe.c) */
int tok_bpe_setup(llm_tokenizer *t, const char *pre, doc_err *err);
int tok_bpe_setup_regex(llm_tokenizer *t, const char *const *patterns, int n, doc_err *err);
int tok_bpe_encode(const llm_tokenizer *t, const char *s, size_t n, tok_out *o, doc_err *err);
int tok_spm_encode(const llm_tokenizer *t, const char *s, size_t n, int at_start, tok_out *o,
                   doc_err *err);
void tok_bpe_free(llm_tokenizer *t);
/* tok_bytes_unmap: undo the GPT-2 byte mapping of s into out; returns bytes written
 * (at most cap are written, the full length is returned) */
int tok_bytes_unmap(const llm_tokenizer *t, const char *s, size_t n, char *out, int cap);

/* WordPiece (tok_wordpiece.c) */
int tok_wp_encode(const llm_tokenizer *t, const char *s, size_t n, tok_out *o, doc_err *err);

#endif
