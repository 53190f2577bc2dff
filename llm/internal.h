/*
 * internal.h - declarations shared between the files of llm/ (not public).
 *
 * Sections: element types and quantization (quant.c), GGUF reader (gguf.c),
 * Hugging Face directories and safetensors (hf.c), tokenizers (tokenizer.c,
 * tok_*.c), the model source abstraction (model.c), chat templates (chat.c),
 * sampling (sample.c).
 */
#ifndef DOCENT_LLM_INTERNAL_H
#define DOCENT_LLM_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "core/core.h"
#include "llm/backend.h"
#include "llm/llm.h"

/* ======================================================================
 * Element types and quantization (quant.c)
 * ====================================================================== */

/* Block layouts, byte-exact with GGUF files (little-endian).  f16 fields are
 * IEEE half stored as uint16_t. */
#define QK4_0 32
#define QK4_1 32
#define QK8_0 32
#define QK8_1 32
#define QK_K 256
#define K_SCALE_SIZE 12

typedef struct { uint16_t d; uint8_t qs[QK4_0 / 2]; } block_q4_0;            /* 18 bytes */
typedef struct { uint16_t d, m; uint8_t qs[QK4_1 / 2]; } block_q4_1;         /* 20 bytes */
typedef struct { uint16_t d; int8_t qs[QK8_0]; } block_q8_0;                 /* 34 bytes */
typedef struct { float d, s; int8_t qs[QK8_1]; } block_q8_1;                  /* 40 bytes; s = d * sum(qs) (activations only) */
typedef struct { uint16_t d, dmin; uint8_t scales[K_SCALE_SIZE]; uint8_t qs[QK_K / 2]; } block_q4_K; /* 144 */
typedef struct { uint16_t d, dmin; uint8_t scales[K_SCALE_SIZE]; uint8_t qh[QK_K / 8]; uint8_t qs[QK_K / 2]; } block_q5_K; /* 176 */
typedef struct { uint8_t ql[QK_K / 2]; uint8_t qh[QK_K / 4]; int8_t scales[QK_K / 16]; uint16_t d; } block_q6_K; /* 210 */
typedef struct { float d; int8_t qs[QK_K]; int16_t bsums[QK_K / 16]; } block_q8_K; /* 292; activations only */

typedef struct llm_type_info {
    const char *name;  /* "q4_K" */
    int block;         /* elements per block (1 for float types) */
    size_t block_size; /* bytes per block */
    int in_files;      /* 1 if docent loads it from model files */
} llm_type_info;

/* llm_type: info for a type id, or NULL for an unknown id. */
const llm_type_info *llm_type(int type);
/* llm_row_bytes: bytes of a row of n elements of type (n must be a multiple of the block). */
size_t llm_row_bytes(int type, int64_t n);

/* Reference (scalar, obviously-correct) conversions.  n is a multiple of the
 * type's block size.  dequantize works for every in_files type; quantize for
 * F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q8_1, Q8_K (and Q4_K/Q5_K/Q6_K, used by
 * tests to make real blocks). */
void llm_dequantize_ref(int type, const void *src, float *dst, int64_t n);
void llm_quantize_ref(int type, const float *src, void *dst, int64_t n);

/* ======================================================================
 * GGUF v3 reader (gguf.c)
 * ====================================================================== */

enum {
    GGUF_T_U8 = 0, GGUF_T_I8 = 1, GGUF_T_U16 = 2, GGUF_T_I16 = 3, GGUF_T_U32 = 4,
    GGUF_T_I32 = 5, GGUF_T_F32 = 6, GGUF_T_BOOL = 7, GGUF_T_STRING = 8, GGUF_T_ARRAY = 9,
    GGUF_T_U64 = 10, GGUF_T_I64 = 11, GGUF_T_F64 = 12,
};

/* llm_tensor: one named tensor as stored.  ne[0] is the innermost (contiguous)
 * dimension, as in GGUF; dims past n_dims are 1.  data points into the file
 * mapping (or into a loader-owned buffer) and is valid while the file is open. */
typedef struct llm_tensor {
    const char *name;
    int type;
    int n_dims;
    int64_t ne[4];
    const void *data;
    size_t nbytes;
} llm_tensor;

/* gguf_kv: one metadata entry, materialised at open.  Strings are copied and
 * NUL-terminated (len holds the true length; embedded NULs are possible).
 * Arrays: arr_type is the element type, n the count; numeric elements are in
 * `arr` as a naturally aligned native array of that type; string arrays are in
 * `strs` (n pointers) with lengths in `lens`. */
typedef struct gguf_kv {
    const char *key;
    int type;
    union {
        uint64_t u;   /* U8..U64, BOOL */
        int64_t i;    /* I8..I64 */
        double f;     /* F32, F64 */
    } v;
    const char *str; /* STRING */
    size_t len;
    int arr_type;
    uint64_t n;
    const void *arr;
    const char *const *strs;
    const uint32_t *lens;
} gguf_kv;

typedef struct gguf_file gguf_file;

/*
 * gguf_open: map and fully validate a GGUF v2/v3 file: magic, version, counts
 * against the file size, every string and array length, key and tensor name
 * lengths, tensor types (known ones only), dimensions (positive, no overflow,
 * ne[0] a multiple of the block size), data offsets aligned and in bounds.
 * Nothing is read past the end of the mapping, whatever the bytes.  On error
 * err names the file, the offset and the field.  Caller closes with gguf_close.
 * gguf_open_mem: the same over caller memory (borrowed; used by the fuzzer).
 */
int gguf_open(const char *path, gguf_file **out, doc_err *err);
int gguf_open_mem(const void *data, size_t size, const char *name, gguf_file **out, doc_err *err);
void gguf_close(gguf_file **g);

/* metadata lookups; NULL / -1 when absent */
const gguf_kv *gguf_get(const gguf_file *g, const char *key);
int gguf_n_kv(const gguf_file *g);
const gguf_kv *gguf_kv_at(const gguf_file *g, int i);
/* typed scalar getters: DOC_OK, DOC_ENOTFOUND (absent: *out untouched) or
 * DOC_EFORMAT (present with an incompatible type; err names the key). Any
 * integer type converts to u32/i64 if it fits; F32/F64 convert to float. */
int gguf_get_u32(const gguf_file *g, const char *key, uint32_t *out, doc_err *err);
int gguf_get_i64(const gguf_file *g, const char *key, int64_t *out, doc_err *err);
int gguf_get_f32(const gguf_file *g, const char *key, float *out, doc_err *err);
int gguf_get_bool(const gguf_file *g, const char *key, int *out, doc_err *err);
const char *gguf_get_str(const gguf_file *g, const char *key); /* NULL if absent/not a string */

int gguf_n_tensors(const gguf_file *g);
const llm_tensor *gguf_tensor_at(const gguf_file *g, int i);
const llm_tensor *gguf_tensor(const gguf_file *g, const char *name); /* NULL if absent */
const char *gguf_name(const gguf_file *g); /* the path given at open */

/* ======================================================================
 * Hugging Face directories (hf.c): config.json + model.safetensors
 * ====================================================================== */

typedef struct hf_model hf_model;

/*
 * hf_open: read dir/config.json and map dir/model.safetensors (or the shards
 * listed in model.safetensors.index.json).  The safetensors header is fully
 * validated (JSON size cap, dtype F32/F16/BF16 only, shape product times
 * element size equals the byte range, ranges inside the file and not
 * overlapping the header).  Tensors are exposed under GGUF names (see
 * hf_gguf_name) so the model code knows one naming; unmapped tensors keep their
 * HF name.  Caller closes with hf_close.
 */
int hf_open(const char *dir, hf_model **out, doc_err *err);
void hf_close(hf_model **h);
/* hf_config: the parsed config.json (borrowed; a jansson json_t*). */
const void *hf_config(const hf_model *h);
const char *hf_dir(const hf_model *h);
int hf_n_tensors(const hf_model *h);
const llm_tensor *hf_tensor_at(const hf_model *h, int i);
const llm_tensor *hf_tensor(const hf_model *h, const char *gguf_name);
/* hf_gguf_name: map an HF tensor name to the GGUF name for bert or llama
 * layouts ("encoder.layer.3.attention.self.query.weight" ->
 * "blk.3.attn_q.weight"); returns 0 and writes out, or -1 if unmapped. */
int hf_gguf_name(const char *hf_name, char *out, size_t cap);

/* ======================================================================
 * Tokenizers (tokenizer.c, tok_bpe.c, tok_wordpiece.c)
 * ====================================================================== */

enum {
    TOK_BPE = 1,       /* byte-level BPE (GPT-2, Llama 3, Qwen, SmolLM) */
    TOK_SPM = 2,       /* SentencePiece-style BPE with byte fallback (Llama 2, Mistral) */
    TOK_WORDPIECE = 3, /* BERT */
};

typedef struct llm_tokenizer llm_tokenizer;

/* tok_from_gguf: build from tokenizer.ggml.* metadata (model "gpt2" -> TOK_BPE
 * with the pre-tokenizer regex chosen by tokenizer.ggml.pre; "llama" ->
 * TOK_SPM; "bert" -> TOK_WORDPIECE). */
int tok_from_gguf(const gguf_file *g, llm_tokenizer **out, doc_err *err);
/* tok_from_hf_dir: from dir/tokenizer.json (BPE or WordPiece models, with their
 * normalizer / pre_tokenizer / post_processor / added_tokens) or, failing that,
 * dir/vocab.txt (+ tokenizer_config.json for do_lower_case). */
int tok_from_hf_dir(const char *dir, llm_tokenizer **out, doc_err *err);
void tok_free(llm_tokenizer **t);

/*
 * tok_encode: text (len bytes, must be valid UTF-8, else DOC_EINVAL naming the
 * byte offset) to ids.  add_special: add what the tokenizer's post-processor
 * adds (BOS for llama-style when add_bos is set; [CLS] ... [SEP] for BERT).
 * parse_special: text matching special/added tokens ("<|im_start|>") becomes
 * that token (for rendered chat templates); otherwise it is plain text.
 * Writes at most cap ids; *n gets the full count; DOC_ELIMIT if it exceeded cap
 * (the ids written are the first cap).  Thread-safe on a shared tokenizer.
 */
int tok_encode(const llm_tokenizer *t, const char *text, size_t len, int add_special,
               int parse_special, int32_t *ids, int cap, int *n, doc_err *err);
/* tok_piece_bytes: the bytes token id stands for in decoded text (byte-level
 * mapping undone; SPM "▁" -> " ", <0xAB> -> byte 0xAB; WordPiece "##" kept as
 * is).  Special/control tokens give their text only if `special` is set, else
 * "".  Returns the length, writes at most cap bytes (no NUL), -1 for a bad id. */
int tok_piece_bytes(const llm_tokenizer *t, int32_t id, int special, char *out, int cap);
/* tok_decode: ids to text the way the reference tokenizer's decode(skip_special_tokens) does. */
int tok_decode(const llm_tokenizer *t, const int32_t *ids, int n, buf *out);

int tok_kind(const llm_tokenizer *t);
int tok_n_vocab(const llm_tokenizer *t);
const char *tok_text(const llm_tokenizer *t, int32_t id); /* the vocab string, NULL if bad id */
int32_t tok_lookup(const llm_tokenizer *t, const char *piece); /* id or -1 */
int tok_is_special(const llm_tokenizer *t, int32_t id); /* control/added-special token */
/* special ids, -1 when the vocabulary has none */
typedef struct tok_special {
    int32_t bos, eos, eot, unk, pad, cls, sep, mask;
    int add_bos, add_eos;
} tok_special;
const tok_special *tok_specials(const llm_tokenizer *t);

/* ======================================================================
 * Model sources (model.c): one view over GGUF files and HF directories
 * ====================================================================== */

typedef struct llm_source {
    gguf_file *gguf; /* exactly one of gguf / hf is set */
    hf_model *hf;
    char arch[32];   /* "llama", "qwen2", "bert", ... */
    char path[1024];
} llm_source;

/* src_tensor: the tensor by GGUF name, or NULL. */
const llm_tensor *src_tensor(const llm_source *s, const char *name);

/* ======================================================================
 * The sampler's choice (sample.c): the reference of the backends' pick op
 * ====================================================================== */

/* pick_cand: scratch for pick_row, n_vocab of them */
typedef struct pick_cand {
    float logit;
    int32_t id;
} pick_cand;
/* pick_row: the token p chooses from logits (nv, modified in place) after
 * the penalty over recent (llm.h, llm_pick) */
int32_t pick_row(float *logits, int nv, const int32_t *recent, int n_recent, const llm_pick *p,
                 pick_cand *c);

/* ======================================================================
 * Chat templates (chat.c)
 * ====================================================================== */

enum { CHAT_NONE = 0, CHAT_CHATML, CHAT_LLAMA3, CHAT_LLAMA2, CHAT_GEMMA, CHAT_COUNT };
/* chat_detect: a template family from a Jinja template string (or NULL) and
 * the architecture; CHAT_NONE if unknown. */
int chat_detect(const char *jinja, const char *arch);
int chat_from_name(const char *name); /* "chatml", "llama3", ...; -1 if unknown */
const char *chat_name(int family);
int chat_render(int family, const llm_chat_msg *msgs, int n, int add_assistant, buf *out,
                doc_err *err);
/* chat_default_system: the system prompt a Jinja template inserts when the
 * conversation has none (SmolLM2 does), malloc'd; NULL if none. */
char *chat_default_system(const char *jinja);

#endif
