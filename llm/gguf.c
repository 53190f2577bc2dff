/*
 * gguf.c - a validating GGUF v2/v3 reader.
 *
 * Layout (little-endian): "GGUF", u32 version, u64 tensor count, u64 kv count;
 * the kvs (string key, u32 value type, value; an array is u32 element type,
 * u64 count, elements; a string is u64 length + bytes); the tensor infos
 * (string name, u32 n_dims, u64 ne[n_dims], u32 type, u64 offset); padding
 * to general.alignment (default 32); the tensor data, each tensor at its
 * offset from the start of the data section.
 *
 * Design: the file is mapped once (or the caller's memory borrowed) and
 * parsed by one cursor whose every read is bounds-checked, so no byte pattern
 * can make it read outside the mapping.  Counts are capped by the bytes left
 * (an entry cannot be smaller than its fixed fields), so a lying count fails
 * at the first short read instead of driving a huge allocation.  Metadata is
 * copied into an arena (strings NUL-terminated, numeric arrays naturally
 * aligned); tensor data stays in the mapping.  Keys and tensor names are
 * found through open-addressing hash tables built at open, which also reject
 * duplicates.  Arrays of arrays are accepted one level deep (validated and
 * skipped: such a kv has arr_type GGUF_T_ARRAY and arr NULL); deeper nesting
 * is refused.
 *
 * Invariants after a successful open: every tensor has 1 <= n_dims <= 4,
 * ne[i] >= 1, a known in-file type, ne[0] a multiple of its block, an aligned
 * offset, and data + nbytes inside the mapping.
 */
#include "llm/internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "gguf.c copies little-endian arrays as is; add byte swapping for this host"
#endif

#define GGUF_MAGIC "GGUF"
#define GGUF_DEFAULT_ALIGNMENT 32
#define GGUF_MAX_ALIGNMENT (1u << 30)
#define GGUF_MAX_KEY 65535      /* the spec's limit on key length */
#define GGUF_MAX_NAME 255       /* tensor names (the spec says 64; be lenient) */
#define GGUF_MAX_DIMS 4

struct gguf_file {
    char *name;
    file_map map; /* zeroed when the memory is borrowed */
    const uint8_t *data;
    size_t size;
    uint32_t version;
    size_t alignment, data_off;
    arena ar;     /* keys, strings, arrays, tensor names */
    gguf_kv *kvs;
    int n_kv;
    llm_tensor *tensors;
    int n_tensors;
    int32_t *kv_hash, *t_hash; /* index + 1, 0 = empty */
    size_t kv_hcap, t_hcap;
};

/* names of GGUF tensor types docent does not load, for error messages only */
static const char *const foreign_types[] = {
    [6] = "q5_0", [7] = "q5_1", [10] = "q2_K", [11] = "q3_K", [16] = "iq2_xxs",
    [17] = "iq2_xs", [18] = "iq3_xxs", [19] = "iq1_s", [20] = "iq4_nl", [21] = "iq3_s",
    [22] = "iq2_s", [23] = "iq4_xs", [24] = "i8", [25] = "i16", [26] = "i32", [27] = "i64",
    [28] = "f64", [29] = "iq1_m", [34] = "tq1_0", [35] = "tq2_0", [39] = "mxfp4",
};

/* size of a scalar value type; 0 for strings, arrays and unknown types */
static const uint8_t value_size[] = {
    [GGUF_T_U8] = 1, [GGUF_T_I8] = 1, [GGUF_T_U16] = 2, [GGUF_T_I16] = 2,
    [GGUF_T_U32] = 4, [GGUF_T_I32] = 4, [GGUF_T_F32] = 4, [GGUF_T_BOOL] = 1,
    [GGUF_T_STRING] = 0, [GGUF_T_ARRAY] = 0, [GGUF_T_U64] = 8, [GGUF_T_I64] = 8,
    [GGUF_T_F64] = 8,
};

static int type_known(uint32_t t) { return t <= GGUF_T_F64; }

/* ---- checked cursor ------------------------------------------------------ */

typedef struct cursor {
    const uint8_t *p;
    size_t size, pos;
    const char *name;
    doc_err *err;
    char ctx[300]; /* "key 'x'" or "tensor 'y'" while inside one, else "" */
} cursor;

/* fail: record "NAME: offset OFF: CTX: message" and return rc */
static int fail(cursor *c, int rc, size_t off, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int fail(cursor *c, int rc, size_t off, const char *fmt, ...)
{
    char msg[300];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return doc_errf(c->err, rc, "%s: offset %zu: %s%s%s", c->name, off, c->ctx,
                    c->ctx[0] ? ": " : "", msg);
}

static size_t left(const cursor *c) { return c->size - c->pos; }

static int rd_bytes(cursor *c, void *out, size_t n, const char *what)
{
    if (n > left(c))
        return fail(c, DOC_EFORMAT, c->pos, "truncated %s (%zu bytes needed, %zu left)", what,
                    n, left(c));
    memcpy(out, c->p + c->pos, n);
    c->pos += n;
    return DOC_OK;
}

static int rd_u32(cursor *c, uint32_t *v, const char *what)
{
    uint8_t b[4] = {0};
    int rc = rd_bytes(c, b, 4, what);
    if (rc) return rc;
    *v = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
    return DOC_OK;
}

static int rd_u64(cursor *c, uint64_t *v, const char *what)
{
    uint8_t b[8] = {0};
    int rc = rd_bytes(c, b, 8, what);
    if (rc) return rc;
    uint64_t x = 0;
    for (int i = 7; i >= 0; i--) x = x << 8 | b[i];
    *v = x;
    return DOC_OK;
}

/* rd_str: a length-prefixed string; *s points into the buffer (not NUL-terminated) */
static int rd_str(cursor *c, const uint8_t **s, uint64_t *len, const char *what)
{
    size_t at = c->pos;
    int rc = rd_u64(c, len, what);
    if (rc) return rc;
    if (*len > left(c))
        return fail(c, DOC_EFORMAT, at, "%s length %llu is past the end of the file (%zu bytes left)",
                    what, (unsigned long long)*len, left(c));
    *s = c->p + c->pos;
    c->pos += (size_t)*len;
    return DOC_OK;
}

/* ---- hash tables --------------------------------------------------------- */

static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return h;
}

static size_t hash_cap(int n)
{
    size_t cap = 16;
    while (cap < (size_t)n * 2) cap *= 2;
    return cap;
}

/* find the slot for key: the one holding it, or the empty one where it goes */
static size_t hash_slot(const int32_t *tab, size_t cap, const char *key,
                        const char *(*name_at)(const void *, int32_t), const void *ctx)
{
    size_t i = (size_t)hash_str(key) & (cap - 1);
    while (tab[i] && strcmp(name_at(ctx, tab[i] - 1), key) != 0) i = (i + 1) & (cap - 1);
    return i;
}

static const char *kv_name(const void *g, int32_t i) { return ((const gguf_file *)g)->kvs[i].key; }
static const char *t_name(const void *g, int32_t i) { return ((const gguf_file *)g)->tensors[i].name; }

/* ---- metadata values ------------------------------------------------------ */

static void scalar_from_bytes(gguf_kv *kv, int type, const uint8_t *b)
{
    uint64_t u = 0;
    size_t n = value_size[type];
    for (size_t i = n; i-- > 0;) u = u << 8 | b[i];
    switch (type) {
    case GGUF_T_I8: kv->v.i = (int8_t)u; break;
    case GGUF_T_I16: kv->v.i = (int16_t)u; break;
    case GGUF_T_I32: kv->v.i = (int32_t)u; break;
    case GGUF_T_I64: kv->v.i = (int64_t)u; break;
    case GGUF_T_F32: {
        uint32_t w = (uint32_t)u;
        float f;
        memcpy(&f, &w, 4);
        kv->v.f = f;
        break;
    }
    case GGUF_T_F64: memcpy(&kv->v.f, &u, 8); break;
    case GGUF_T_BOOL: kv->v.u = u != 0; break;
    default: kv->v.u = u; break;
    }
}

/* skip_array: validate and skip the body of an array nested in an array */
static int skip_array(cursor *c)
{
    size_t at = c->pos;
    uint32_t et;
    uint64_t n;
    int rc = rd_u32(c, &et, "nested array type");
    if (!rc) rc = rd_u64(c, &n, "nested array count");
    if (rc) return rc;
    if (et == GGUF_T_ARRAY)
        return fail(c, DOC_EUNSUPPORTED, at, "arrays nested deeper than one level");
    if (!type_known(et)) return fail(c, DOC_EFORMAT, at, "unknown array element type %u", et);
    size_t esz = et == GGUF_T_STRING ? 8 : value_size[et];
    if (n > left(c) / esz)
        return fail(c, DOC_EFORMAT, at, "nested array count %llu is past the end of the file",
                    (unsigned long long)n);
    if (et != GGUF_T_STRING) {
        c->pos += (size_t)n * esz;
        return DOC_OK;
    }
    for (uint64_t i = 0; i < n; i++) {
        const uint8_t *s;
        uint64_t len;
        if ((rc = rd_str(c, &s, &len, "string"))) return rc;
    }
    return DOC_OK;
}

static int read_array(cursor *c, arena *ar, gguf_kv *kv)
{
    size_t at = c->pos;
    uint32_t et;
    uint64_t n;
    int rc = rd_u32(c, &et, "array type");
    if (!rc) rc = rd_u64(c, &n, "array count");
    if (rc) return rc;
    if (!type_known(et)) return fail(c, DOC_EFORMAT, at, "unknown array element type %u", et);
    /* every element takes at least this many bytes of the file */
    size_t esz = et == GGUF_T_STRING ? 8 : et == GGUF_T_ARRAY ? 12 : value_size[et];
    if (n > left(c) / esz)
        return fail(c, DOC_EFORMAT, at, "array count %llu is past the end of the file (%zu bytes left)",
                    (unsigned long long)n, left(c));
    kv->arr_type = (int)et;
    kv->n = n;
    if (et == GGUF_T_ARRAY) {
        for (uint64_t i = 0; i < n; i++)
            if ((rc = skip_array(c))) return rc;
        return DOC_OK;
    }
    if (et != GGUF_T_STRING) {
        size_t bytes = (size_t)n * esz;
        void *dst = arena_alloc(ar, bytes ? bytes : 1, esz);
        if (!dst) return fail(c, DOC_ENOMEM, at, "cannot allocate %zu bytes for an array", bytes);
        memcpy(dst, c->p + c->pos, bytes);
        c->pos += bytes;
        kv->arr = dst;
        return DOC_OK;
    }
    char **strs = arena_alloc(ar, (size_t)(n ? n : 1) * sizeof *strs, sizeof *strs);
    uint32_t *lens = arena_alloc(ar, (size_t)(n ? n : 1) * sizeof *lens, sizeof *lens);
    if (!strs || !lens) return fail(c, DOC_ENOMEM, at, "cannot allocate %llu strings", (unsigned long long)n);
    for (uint64_t i = 0; i < n; i++) {
        size_t sat = c->pos;
        const uint8_t *s;
        uint64_t len;
        if ((rc = rd_str(c, &s, &len, "string"))) return rc;
        if (len > UINT32_MAX)
            return fail(c, DOC_ELIMIT, sat, "array string %llu is %llu bytes long", (unsigned long long)i,
                        (unsigned long long)len);
        strs[i] = arena_strndup(ar, (const char *)s, (size_t)len);
        if (!strs[i]) return fail(c, DOC_ENOMEM, sat, "cannot allocate a string");
        lens[i] = (uint32_t)len;
    }
    kv->strs = (const char *const *)strs;
    kv->lens = lens;
    return DOC_OK;
}

static int read_kv(cursor *c, gguf_file *g, gguf_kv *kv)
{
    size_t at = c->pos;
    const uint8_t *key;
    uint64_t klen;
    int rc = rd_str(c, &key, &klen, "key");
    if (rc) return rc;
    if (klen == 0 || klen > GGUF_MAX_KEY || memchr(key, 0, (size_t)klen))
        return fail(c, DOC_EFORMAT, at, "bad key (length %llu, or a NUL byte in it)",
                    (unsigned long long)klen);
    memset(kv, 0, sizeof *kv);
    kv->key = arena_strndup(&g->ar, (const char *)key, (size_t)klen);
    if (!kv->key) return fail(c, DOC_ENOMEM, at, "cannot allocate a key");
    snprintf(c->ctx, sizeof c->ctx, "key '%.200s'", kv->key);
    size_t tat = c->pos;
    uint32_t type;
    if ((rc = rd_u32(c, &type, "value type"))) return rc;
    if (!type_known(type)) return fail(c, DOC_EFORMAT, tat, "unknown value type %u", type);
    kv->type = (int)type;
    if (type == GGUF_T_ARRAY) return read_array(c, &g->ar, kv);
    if (type == GGUF_T_STRING) {
        const uint8_t *s;
        uint64_t len;
        if ((rc = rd_str(c, &s, &len, "string"))) return rc;
        kv->str = arena_strndup(&g->ar, (const char *)s, (size_t)len);
        if (!kv->str) return fail(c, DOC_ENOMEM, tat, "cannot allocate a string");
        kv->len = (size_t)len;
        return DOC_OK;
    }
    uint8_t b[8] = {0};
    if ((rc = rd_bytes(c, b, value_size[type], "value"))) return rc;
    scalar_from_bytes(kv, (int)type, b);
    return DOC_OK;
}

/* ---- tensor infos ------------------------------------------------------- */

/* read_tensor: one tensor info; data is resolved after the alignment is known.
 * *offset gets the data offset (relative to the data section). */
static int read_tensor(cursor *c, gguf_file *g, llm_tensor *t, uint64_t *offset)
{
    size_t at = c->pos;
    const uint8_t *name;
    uint64_t nlen;
    int rc = rd_str(c, &name, &nlen, "tensor name");
    if (rc) return rc;
    if (nlen == 0 || nlen > GGUF_MAX_NAME || memchr(name, 0, (size_t)nlen))
        return fail(c, DOC_EFORMAT, at, "bad tensor name (length %llu, or a NUL byte in it)",
                    (unsigned long long)nlen);
    memset(t, 0, sizeof *t);
    t->name = arena_strndup(&g->ar, (const char *)name, (size_t)nlen);
    if (!t->name) return fail(c, DOC_ENOMEM, at, "cannot allocate a tensor name");
    snprintf(c->ctx, sizeof c->ctx, "tensor '%s'", t->name);

    size_t dat = c->pos;
    uint32_t n_dims;
    if ((rc = rd_u32(c, &n_dims, "n_dims"))) return rc;
    if (n_dims < 1 || n_dims > GGUF_MAX_DIMS)
        return fail(c, DOC_EFORMAT, dat, "n_dims %u is not in 1..%d", n_dims, GGUF_MAX_DIMS);
    t->n_dims = (int)n_dims;
    int64_t nel = 1;
    for (int i = 0; i < GGUF_MAX_DIMS; i++) {
        uint64_t ne = 1;
        size_t eat = c->pos;
        if (i < (int)n_dims && (rc = rd_u64(c, &ne, "ne"))) return rc;
        if (ne < 1 || ne > (uint64_t)INT64_MAX)
            return fail(c, DOC_EFORMAT, eat, "ne[%d] = %llu is not positive", i, (unsigned long long)ne);
        if ((int64_t)ne > INT64_MAX / nel)
            return fail(c, DOC_EFORMAT, eat, "element count overflows at ne[%d] = %llu", i,
                        (unsigned long long)ne);
        nel *= (int64_t)ne;
        t->ne[i] = (int64_t)ne;
    }

    size_t tat = c->pos;
    uint32_t type;
    if ((rc = rd_u32(c, &type, "tensor type"))) return rc;
    const llm_type_info *ti = llm_type((int)type);
    if (!ti || !ti->in_files) {
        const char *fname = ti ? ti->name
                            : type < sizeof foreign_types / sizeof *foreign_types ? foreign_types[type]
                                                                                 : NULL;
        if (fname) return fail(c, DOC_EUNSUPPORTED, tat, "unsupported type %u (%s)", type, fname);
        return fail(c, DOC_EFORMAT, tat, "unknown type %u", type);
    }
    t->type = (int)type;
    if (t->ne[0] % ti->block)
        return fail(c, DOC_EFORMAT, dat, "ne[0] = %lld is not a multiple of the %s block of %d",
                    (long long)t->ne[0], ti->name, ti->block);
    /* bytes: row bytes times the other dims, each step checked */
    uint64_t bytes = (uint64_t)(t->ne[0] / ti->block) * ti->block_size;
    for (int i = 1; i < GGUF_MAX_DIMS; i++) {
        if ((uint64_t)t->ne[i] > UINT64_MAX / (bytes ? bytes : 1))
            return fail(c, DOC_EFORMAT, dat, "byte size overflows");
        bytes *= (uint64_t)t->ne[i];
    }
    if (bytes > g->size) /* cannot fit whatever the offset: say so early */
        return fail(c, DOC_EFORMAT, dat, "%llu bytes of data but the file has %zu",
                    (unsigned long long)bytes, g->size);
    t->nbytes = (size_t)bytes;
    return rd_u64(c, offset, "tensor offset");
}

/* ---- open / close --------------------------------------------------------- */

static int parse(gguf_file *g, doc_err *err)
{
    cursor c = {.p = g->data, .size = g->size, .pos = 0, .name = g->name, .err = err};
    uint64_t *offsets = NULL;
    size_t *info_at = NULL, *kv_at = NULL; /* file offsets of entries, for messages */
    int rc;
    char magic[4];
    if ((rc = rd_bytes(&c, magic, 4, "magic"))) goto done;
    if (memcmp(magic, GGUF_MAGIC, 4) != 0) {
        rc = fail(&c, DOC_EFORMAT, 0, "not a GGUF file (bad magic)");
        goto done;
    }
    if ((rc = rd_u32(&c, &g->version, "version"))) goto done;
    if (g->version != 2 && g->version != 3) {
        rc = fail(&c, DOC_EUNSUPPORTED, 4, "unsupported GGUF version %u%s", g->version,
                  g->version > 0xFFFF ? " (a big-endian file?)" : " (2 or 3 expected)");
        goto done;
    }
    uint64_t nt, nkv;
    if ((rc = rd_u64(&c, &nt, "tensor count")) || (rc = rd_u64(&c, &nkv, "kv count"))) goto done;
    /* smallest kv: 8 (key len) + 1 + 4 (type) + 1; smallest tensor info: 8 + 1 + 4 + 8 + 4 + 8 */
    if (nkv > left(&c) / 14 || nkv > INT32_MAX) {
        rc = fail(&c, DOC_EFORMAT, 16, "kv count %llu cannot fit in the file", (unsigned long long)nkv);
        goto done;
    }
    if (nt > left(&c) / 33 || nt > INT32_MAX) {
        rc = fail(&c, DOC_EFORMAT, 8, "tensor count %llu cannot fit in the file", (unsigned long long)nt);
        goto done;
    }

    /* kvs: arrays grow as entries are read, so memory follows real content */
    int cap = 0;
    for (uint64_t i = 0; i < nkv; i++) {
        if (g->n_kv == cap) {
            cap = cap ? cap * 2 : 64;
            gguf_kv *p = realloc(g->kvs, (size_t)cap * sizeof *p);
            if (p) g->kvs = p;
            size_t *a = realloc(kv_at, (size_t)cap * sizeof *a);
            if (a) kv_at = a;
            if (!p || !a) {
                rc = fail(&c, DOC_ENOMEM, c.pos, "cannot allocate %d kvs", cap);
                goto done;
            }
        }
        c.ctx[0] = 0;
        kv_at[g->n_kv] = c.pos;
        if ((rc = read_kv(&c, g, &g->kvs[g->n_kv]))) goto done;
        g->n_kv++;
    }
    c.ctx[0] = 0;
    g->kv_hcap = hash_cap(g->n_kv);
    g->kv_hash = calloc(g->kv_hcap, sizeof *g->kv_hash);
    if (!g->kv_hash) {
        rc = fail(&c, DOC_ENOMEM, c.pos, "cannot allocate the key table");
        goto done;
    }
    for (int i = 0; i < g->n_kv; i++) {
        size_t s = hash_slot(g->kv_hash, g->kv_hcap, g->kvs[i].key, kv_name, g);
        if (g->kv_hash[s]) {
            rc = fail(&c, DOC_EFORMAT, kv_at[i], "duplicate key '%.200s'", g->kvs[i].key);
            goto done;
        }
        g->kv_hash[s] = i + 1;
    }

    g->alignment = GGUF_DEFAULT_ALIGNMENT;
    const gguf_kv *al = gguf_get(g, "general.alignment");
    if (al) {
        if (al->type != GGUF_T_U32 || al->v.u == 0 || al->v.u > GGUF_MAX_ALIGNMENT ||
            (al->v.u & (al->v.u - 1))) {
            rc = fail(&c, DOC_EFORMAT, kv_at[al - g->kvs], "general.alignment must be a u32 power of two (type %d, value %llu)",
                      al->type, (unsigned long long)al->v.u);
            goto done;
        }
        g->alignment = (size_t)al->v.u;
    }

    /* tensor infos */
    cap = 0;
    for (uint64_t i = 0; i < nt; i++) {
        if (g->n_tensors == cap) {
            cap = cap ? cap * 2 : 64;
            llm_tensor *p = realloc(g->tensors, (size_t)cap * sizeof *p);
            uint64_t *o = realloc(offsets, (size_t)cap * sizeof *o);
            if (o) offsets = o;
            size_t *a = realloc(info_at, (size_t)cap * sizeof *a);
            if (a) info_at = a;
            if (p) g->tensors = p;
            if (!p || !o || !a) {
                rc = fail(&c, DOC_ENOMEM, c.pos, "cannot allocate %d tensor infos", cap);
                goto done;
            }
        }
        c.ctx[0] = 0;
        info_at[g->n_tensors] = c.pos;
        if ((rc = read_tensor(&c, g, &g->tensors[g->n_tensors], &offsets[g->n_tensors]))) goto done;
        g->n_tensors++;
    }
    c.ctx[0] = 0;

    /* the data section starts at the next multiple of the alignment */
    size_t pad = (g->alignment - c.pos % g->alignment) % g->alignment;
    if (g->n_tensors > 0 && pad > left(&c)) {
        rc = fail(&c, DOC_EFORMAT, c.pos, "file ends before the data section");
        goto done;
    }
    g->data_off = c.pos + (pad <= left(&c) ? pad : left(&c));
    size_t data_len = g->size - g->data_off;

    g->t_hcap = hash_cap(g->n_tensors);
    g->t_hash = calloc(g->t_hcap, sizeof *g->t_hash);
    if (!g->t_hash) {
        rc = fail(&c, DOC_ENOMEM, c.pos, "cannot allocate the tensor table");
        goto done;
    }
    for (int i = 0; i < g->n_tensors; i++) {
        llm_tensor *t = &g->tensors[i];
        snprintf(c.ctx, sizeof c.ctx, "tensor '%s'", t->name);
        uint64_t off = offsets[i];
        if (off % g->alignment) {
            rc = fail(&c, DOC_EFORMAT, info_at[i], "data offset %llu is not a multiple of the alignment %zu",
                      (unsigned long long)off, g->alignment);
            goto done;
        }
        if (off > data_len || t->nbytes > data_len - off) {
            rc = fail(&c, DOC_EFORMAT, info_at[i],
                      "data [%llu, %llu) is outside the data section of %zu bytes at %zu",
                      (unsigned long long)off, (unsigned long long)off + t->nbytes, data_len,
                      g->data_off);
            goto done;
        }
        t->data = g->data + g->data_off + off;
        size_t s = hash_slot(g->t_hash, g->t_hcap, t->name, t_name, g);
        if (g->t_hash[s]) {
            rc = fail(&c, DOC_EFORMAT, info_at[i], "duplicate tensor name");
            goto done;
        }
        g->t_hash[s] = i + 1;
    }
    rc = DOC_OK;
done:
    free(offsets);
    free(info_at);
    free(kv_at);
    return rc;
}

static int open_common(gguf_file *g, doc_err *err)
{
    /* metadata copies cost at most ~2x the header bytes; cap well above that */
    size_t cap = g->size > SIZE_MAX / 8 ? SIZE_MAX / 2 : g->size * 4 + (1u << 20);
    arena_init(&g->ar, 256 * 1024, cap);
    return parse(g, err);
}

/* gguf_open: see internal.h. */
int gguf_open(const char *path, gguf_file **out, doc_err *err)
{
    *out = NULL;
    gguf_file *g = calloc(1, sizeof *g);
    if (!g) return doc_errf(err, DOC_ENOMEM, "%s: out of memory", path);
    int rc;
    if (!(g->name = strdup(path))) {
        rc = doc_errf(err, DOC_ENOMEM, "%s: out of memory", path);
        goto done;
    }
    arena_init(&g->ar, 0, 0);
    if ((rc = file_map_open(path, &g->map, err))) goto done;
    g->data = g->map.data;
    g->size = g->map.size;
    rc = open_common(g, err);
done:
    if (rc) gguf_close(&g);
    *out = g;
    return rc;
}

/* gguf_open_mem: see internal.h; data is borrowed and must outlive the handle. */
int gguf_open_mem(const void *data, size_t size, const char *name, gguf_file **out, doc_err *err)
{
    *out = NULL;
    if (!name) name = "<memory>";
    gguf_file *g = calloc(1, sizeof *g);
    if (!g) return doc_errf(err, DOC_ENOMEM, "%s: out of memory", name);
    int rc;
    arena_init(&g->ar, 0, 0);
    if (!(g->name = strdup(name))) {
        rc = doc_errf(err, DOC_ENOMEM, "%s: out of memory", name);
        goto done;
    }
    g->data = data;
    g->size = data ? size : 0;
    rc = open_common(g, err);
done:
    if (rc) gguf_close(&g);
    *out = g;
    return rc;
}

/* gguf_close: release everything; accepts NULL and *g == NULL. */
void gguf_close(gguf_file **gp)
{
    if (!gp || !*gp) return;
    gguf_file *g = *gp;
    file_map_close(&g->map);
    arena_free(&g->ar);
    free(g->kvs);
    free(g->tensors);
    free(g->kv_hash);
    free(g->t_hash);
    free(g->name);
    free(g);
    *gp = NULL;
}

/* ---- lookups ------------------------------------------------------------- */

const gguf_kv *gguf_get(const gguf_file *g, const char *key)
{
    if (!g || !key || !g->kv_hash) return NULL;
    size_t s = hash_slot(g->kv_hash, g->kv_hcap, key, kv_name, g);
    return g->kv_hash[s] ? &g->kvs[g->kv_hash[s] - 1] : NULL;
}

int gguf_n_kv(const gguf_file *g) { return g ? g->n_kv : 0; }

const gguf_kv *gguf_kv_at(const gguf_file *g, int i)
{
    return g && i >= 0 && i < g->n_kv ? &g->kvs[i] : NULL;
}

static int is_uint(int t)
{
    return t == GGUF_T_U8 || t == GGUF_T_U16 || t == GGUF_T_U32 || t == GGUF_T_U64;
}
static int is_sint(int t)
{
    return t == GGUF_T_I8 || t == GGUF_T_I16 || t == GGUF_T_I32 || t == GGUF_T_I64;
}

static int bad_type(const gguf_file *g, const gguf_kv *kv, const char *want, doc_err *err)
{
    return doc_errf(err, DOC_EFORMAT, "%s: key '%s': type %d where %s was expected", g->name,
                    kv->key, kv->type, want);
}

int gguf_get_u32(const gguf_file *g, const char *key, uint32_t *out, doc_err *err)
{
    const gguf_kv *kv = gguf_get(g, key);
    if (!kv) return DOC_ENOTFOUND;
    if (is_uint(kv->type) && kv->v.u <= UINT32_MAX) {
        *out = (uint32_t)kv->v.u;
        return DOC_OK;
    }
    if (is_sint(kv->type) && kv->v.i >= 0 && kv->v.i <= (int64_t)UINT32_MAX) {
        *out = (uint32_t)kv->v.i;
        return DOC_OK;
    }
    return bad_type(g, kv, "an integer in u32 range", err);
}

int gguf_get_i64(const gguf_file *g, const char *key, int64_t *out, doc_err *err)
{
    const gguf_kv *kv = gguf_get(g, key);
    if (!kv) return DOC_ENOTFOUND;
    if (is_sint(kv->type)) {
        *out = kv->v.i;
        return DOC_OK;
    }
    if (is_uint(kv->type) && kv->v.u <= (uint64_t)INT64_MAX) {
        *out = (int64_t)kv->v.u;
        return DOC_OK;
    }
    return bad_type(g, kv, "an integer in i64 range", err);
}

int gguf_get_f32(const gguf_file *g, const char *key, float *out, doc_err *err)
{
    const gguf_kv *kv = gguf_get(g, key);
    if (!kv) return DOC_ENOTFOUND;
    if (kv->type != GGUF_T_F32 && kv->type != GGUF_T_F64) return bad_type(g, kv, "a float", err);
    *out = (float)kv->v.f;
    return DOC_OK;
}

int gguf_get_bool(const gguf_file *g, const char *key, int *out, doc_err *err)
{
    const gguf_kv *kv = gguf_get(g, key);
    if (!kv) return DOC_ENOTFOUND;
    if (kv->type != GGUF_T_BOOL) return bad_type(g, kv, "a bool", err);
    *out = kv->v.u != 0;
    return DOC_OK;
}

const char *gguf_get_str(const gguf_file *g, const char *key)
{
    const gguf_kv *kv = gguf_get(g, key);
    return kv && kv->type == GGUF_T_STRING ? kv->str : NULL;
}

int gguf_n_tensors(const gguf_file *g) { return g ? g->n_tensors : 0; }

const llm_tensor *gguf_tensor_at(const gguf_file *g, int i)
{
    return g && i >= 0 && i < g->n_tensors ? &g->tensors[i] : NULL;
}

const llm_tensor *gguf_tensor(const gguf_file *g, const char *name)
{
    if (!g || !name || !g->t_hash) return NULL;
    size_t s = hash_slot(g->t_hash, g->t_hcap, name, t_name, g);
    return g->t_hash[s] ? &g->tensors[g->t_hash[s] - 1] : NULL;
}

const char *gguf_name(const gguf_file *g) { return g ? g->name : NULL; }
