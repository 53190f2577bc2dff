/*
 * test_badfiles.c - hostile model files: gguf_open and hf_open must refuse
 * them with a code and a message naming the file, never crash, hang or read
 * out of bounds (run it under `make asan` for the last part).
 *
 * Two kinds of input:
 *   - the real default models copied to a temp dir, then truncated at many
 *     offsets (header, kvs, tensor infos, data) and with bytes flipped at
 *     seeded offsets: a flip in tensor data must still open (data is not
 *     validated), anything else may open or fail but must fail cleanly;
 *   - small hand-made files, one per malformation, built with the real
 *     layout so the check under test is the one that trips.
 */
#include "testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "llm/internal.h"

static char tmpdir[512];

/* ---- helpers ------------------------------------------------------------------- */

static int setup(void **state)
{
    (void)state;
    const char *t = getenv("TMPDIR");
    snprintf(tmpdir, sizeof tmpdir, "%s/docent-badfiles-XXXXXX", t && *t ? t : "/tmp");
    if (!mkdtemp(tmpdir)) return -1;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

static void write_file(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

static void copy_file(const char *from, const char *to)
{
    int in = open(from, O_RDONLY), out = open(to, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(in >= 0 && out >= 0);
    static char chunk[1 << 20];
    ssize_t n;
    while ((n = read(in, chunk, sizeof chunk)) > 0) assert_int_equal(write(out, chunk, (size_t)n), n);
    assert_int_equal(n, 0);
    close(in);
    close(out);
}

static void flip_byte(const char *path, off_t off, uint8_t mask)
{
    int fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    uint8_t b;
    assert_int_equal(pread(fd, &b, 1, off), 1);
    b ^= mask;
    assert_int_equal(pwrite(fd, &b, 1, off), 1);
    close(fd);
}

/* model_path: models/<name>, or skip this test (not the whole program) */
static void model_path(char *out, size_t cap, const char *name)
{
    snprintf(out, cap, "%s/%s", test_models_dir(), name);
    if (!file_exists(out)) {
        print_message("skipped: %s is missing (run `make models`)\n", out);
        skip();
    }
}

/* a failure must carry a negative code and a message naming the file */
static void check_failure(int rc, const doc_err *err, const char *path, const char *what)
{
    if (rc >= 0) fail_msg("%s: expected a failure", what);
    if (!err->msg[0] || !strstr(err->msg, path)) fail_msg("%s: message '%s' does not name %s", what, err->msg, path);
    if (err->rc != rc) fail_msg("%s: err.rc %d != rc %d", what, err->rc, rc);
}

static int try_gguf(const char *path, doc_err *err)
{
    gguf_file *g = NULL;
    memset(err, 0, sizeof *err);
    int rc = gguf_open(path, &g, err);
    if (rc == 0) {
        /* walk everything the way a loader would */
        for (int i = 0; i < gguf_n_kv(g); i++) {
            const gguf_kv *kv = gguf_kv_at(g, i);
            assert_ptr_equal(gguf_get(g, kv->key), kv);
        }
        volatile uint8_t sink = 0;
        for (int i = 0; i < gguf_n_tensors(g); i++) {
            const llm_tensor *t = gguf_tensor_at(g, i);
            assert_ptr_equal(gguf_tensor(g, t->name), t);
            sink ^= ((const uint8_t *)t->data)[0] ^ ((const uint8_t *)t->data)[t->nbytes - 1];
        }
        (void)sink;
        gguf_close(&g);
    } else {
        assert_null(g);
    }
    return rc;
}

static int try_hf(const char *dir, doc_err *err)
{
    hf_model *h = NULL;
    memset(err, 0, sizeof *err);
    int rc = hf_open(dir, &h, err);
    if (rc == 0) {
        volatile uint8_t sink = 0;
        for (int i = 0; i < hf_n_tensors(h); i++) {
            const llm_tensor *t = hf_tensor_at(h, i);
            sink ^= ((const uint8_t *)t->data)[0] ^ ((const uint8_t *)t->data)[t->nbytes - 1];
        }
        (void)sink;
        hf_close(&h);
    } else {
        assert_null(h);
    }
    return rc;
}

/* ---- the real GGUF, corrupted ------------------------------------------------------ */

static void test_real_gguf_corrupt(void **state)
{
    (void)state;
    char src[1024], path[1024];
    model_path(src, sizeof src, TEST_GGUF);
    snprintf(path, sizeof path, "%s/model.gguf", tmpdir);
    copy_file(src, path);
    doc_err err;
    assert_int_equal(try_gguf(path, &err), DOC_OK);

    /* where the data section starts (token_embd.weight is at data offset 0) */
    gguf_file *g = NULL;
    file_map m;
    assert_int_equal(file_map_open(path, &m, &err), DOC_OK);
    assert_int_equal(gguf_open_mem(m.data, m.size, path, &g, &err), DOC_OK);
    size_t data_start = (size_t)((const uint8_t *)gguf_tensor(g, "token_embd.weight")->data - m.data);
    size_t size = m.size;
    gguf_close(&g);
    file_map_close(&m);
    assert_int_equal(data_start, 1785664);

    uint64_t seed = 0xbadf11e5;
    int opened = 0, failed = 0;
    /* flips in the header (kvs, token strings, tensor infos): open or fail cleanly */
    for (int i = 0; i < 400; i++) {
        off_t off = i < 64 ? (off_t)i : (off_t)(test_rand(&seed) % data_start);
        uint8_t mask = (uint8_t)(1u << (test_rand(&seed) % 8));
        if (i % 5 == 0) mask = (uint8_t)(test_rand(&seed) | 1);
        flip_byte(path, off, mask);
        char what[64];
        snprintf(what, sizeof what, "flip at %lld", (long long)off);
        int rc = try_gguf(path, &err);
        if (rc) check_failure(rc, &err, path, what), failed++;
        else opened++;
        flip_byte(path, off, mask);
    }
    print_message("header flips: %d opened, %d refused\n", opened, failed);
    assert_true(failed > 50); /* the first 24 bytes alone must mostly fail */

    /* flips in tensor data: nothing validates data, so the file opens */
    for (int i = 0; i < 30; i++) {
        off_t off = (off_t)(data_start + test_rand(&seed) % (size - data_start));
        flip_byte(path, off, 0xFF);
        if (try_gguf(path, &err)) fail_msg("flip in data at %lld: %s", (long long)off, err.msg);
        flip_byte(path, off, 0xFF);
    }

    /* truncations, longest first so one copy serves: every one must fail
     * (the last tensor ends at the end of the file) */
    size_t offs[400];
    int n = 0;
    offs[n++] = size - 1;
    for (int i = 0; i < 20; i++) offs[n++] = data_start + test_rand(&seed) % (size - data_start);
    offs[n++] = data_start;
    offs[n++] = data_start - 1;
    for (int i = 0; i < 300; i++) offs[n++] = 24 + test_rand(&seed) % (data_start - 24);
    for (size_t o = 0; o <= 24; o++) offs[n++] = o;
    for (int i = 0; i < n; i++) /* sort descending */
        for (int j = i + 1; j < n; j++)
            if (offs[j] > offs[i]) {
                size_t t = offs[i];
                offs[i] = offs[j];
                offs[j] = t;
            }
    double t0 = time_now();
    for (int i = 0; i < n; i++) {
        assert_int_equal(truncate(path, (off_t)offs[i]), 0);
        char what[64];
        snprintf(what, sizeof what, "truncated to %zu", offs[i]);
        check_failure(try_gguf(path, &err), &err, path, what);
    }
    print_message("%d truncations in %.2f s; last message: %s\n", n, time_now() - t0, err.msg);
}

/* ---- the real safetensors, corrupted -------------------------------------------------- */

static void test_real_hf_corrupt(void **state)
{
    (void)state;
    char src[1024], from[1200], dir[1024], path[1200];
    model_path(src, sizeof src, TEST_EMBEDDER);
    snprintf(dir, sizeof dir, "%s/hf", tmpdir);
    assert_int_equal(mkdir(dir, 0755), 0);
    snprintf(from, sizeof from, "%s/config.json", src);
    snprintf(path, sizeof path, "%s/config.json", dir);
    copy_file(from, path);
    snprintf(from, sizeof from, "%s/model.safetensors", src);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    copy_file(from, path);
    doc_err err;
    assert_int_equal(try_hf(dir, &err), DOC_OK);

    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    size_t size = (size_t)st.st_size;
    FILE *f = fopen(path, "rb");
    uint8_t lenb[8];
    assert_int_equal(fread(lenb, 1, 8, f), 8);
    fclose(f);
    size_t data_start = 8;
    for (int i = 7; i >= 0; i--) data_start += (size_t)lenb[i] << (8 * i);
    assert_true(data_start < size);

    uint64_t seed = 0x5afe7e45;
    int opened = 0, failed = 0;
    for (int i = 0; i < 200; i++) {
        off_t off = i < 16 ? (off_t)i : (off_t)(test_rand(&seed) % data_start);
        uint8_t mask = (uint8_t)(1u << (test_rand(&seed) % 8));
        flip_byte(path, off, mask);
        char what[64];
        snprintf(what, sizeof what, "flip at %lld", (long long)off);
        int rc = try_hf(dir, &err);
        if (rc) check_failure(rc, &err, dir, what), failed++;
        else opened++;
        flip_byte(path, off, mask);
    }
    print_message("header flips: %d opened, %d refused\n", opened, failed);
    assert_true(failed > 16);
    for (int i = 0; i < 20; i++) {
        off_t off = (off_t)(data_start + test_rand(&seed) % (size - data_start));
        flip_byte(path, off, 0xFF);
        if (try_hf(dir, &err)) fail_msg("flip in data at %lld: %s", (long long)off, err.msg);
        flip_byte(path, off, 0xFF);
    }
    size_t offs[200];
    int n = 0;
    offs[n++] = size - 1;
    for (int i = 0; i < 20; i++) offs[n++] = data_start + test_rand(&seed) % (size - data_start);
    offs[n++] = data_start;
    for (int i = 0; i < 100; i++) offs[n++] = 8 + test_rand(&seed) % (data_start - 8);
    for (size_t o = 0; o <= 8; o++) offs[n++] = o;
    for (int i = 0; i < n; i++)
        for (int j = i + 1; j < n; j++)
            if (offs[j] > offs[i]) {
                size_t t = offs[i];
                offs[i] = offs[j];
                offs[j] = t;
            }
    for (int i = 0; i < n; i++) {
        assert_int_equal(truncate(path, (off_t)offs[i]), 0);
        char what[64];
        snprintf(what, sizeof what, "truncated to %zu", offs[i]);
        check_failure(try_hf(dir, &err), &err, dir, what);
    }
    print_message("%d truncations; last message: %s\n", n, err.msg);
}

/* ---- hand-made GGUF files ------------------------------------------------------------ */

enum {
    G_VALID, G_MAGIC, G_V1, G_BIGENDIAN, G_V2, G_UNKNOWN_TYPE, G_FOREIGN_TYPE, G_NE_OVERFLOW,
    G_NE_ZERO, G_NDIMS, G_NE0_BLOCK, G_OFFSET_OOB, G_OFFSET_UNALIGNED, G_HUGE_STRING,
    G_HUGE_ARRAY, G_HUGE_NKV, G_HUGE_NT, G_DUP_TENSOR, G_DUP_KEY, G_NESTED2, G_VALUE_TYPE,
    G_ALIGN_ZERO, G_ALIGN_ODD, G_ALIGN_STR, G_EMPTY_NAME, G_NUL_NAME, G_NO_DATA, G_ALIGN64,
    G_COUNT
};

static void put(buf *b, const void *p, size_t n) { assert_int_equal(buf_append(b, p, n), 0); }
static void put_u32(buf *b, uint32_t v) { put(b, &v, 4); }
static void put_u64(buf *b, uint64_t v) { put(b, &v, 8); }
static void put_str(buf *b, const char *s) { put_u64(b, strlen(s)); put(b, s, strlen(s)); }

/* make_gguf: a small valid v3 file (2 tensors, scalar, string, array and
 * nested-array kvs) with the one malformation `v` */
static void make_gguf(buf *b, int v)
{
    put(b, v == G_MAGIC ? "GGUX" : "GGUF", 4);
    put_u32(b, v == G_V1 ? 1 : v == G_BIGENDIAN ? 0x03000000 : v == G_V2 ? 2 : 3);
    int extra_kv = v == G_DUP_KEY || v == G_ALIGN_ZERO || v == G_ALIGN_ODD || v == G_ALIGN_STR ||
                   v == G_ALIGN64 || v == G_VALUE_TYPE;
    put_u64(b, v == G_HUGE_NT ? (1ull << 40) : 2);
    put_u64(b, v == G_HUGE_NKV ? (1ull << 40) : (uint64_t)(5 + extra_kv));
    /* kvs */
    if (v == G_HUGE_STRING) put_u64(b, 1ull << 62), put(b, "general.architecture", 20);
    else put_str(b, "general.architecture");
    put_u32(b, GGUF_T_STRING);
    put_str(b, "llama");
    put_str(b, "test.u32");
    put_u32(b, GGUF_T_U32);
    put_u32(b, 7);
    put_str(b, "test.arr");
    put_u32(b, GGUF_T_ARRAY);
    put_u32(b, GGUF_T_I32);
    put_u64(b, v == G_HUGE_ARRAY ? (1ull << 40) : 3);
    put_u32(b, 1), put_u32(b, 2), put_u32(b, 3);
    put_str(b, "test.strs");
    put_u32(b, GGUF_T_ARRAY);
    put_u32(b, GGUF_T_STRING);
    put_u64(b, 2);
    put_str(b, "a");
    put_str(b, "bc");
    put_str(b, "test.nested"); /* [[1, 2] as u8, ["x"]] */
    put_u32(b, GGUF_T_ARRAY);
    put_u32(b, GGUF_T_ARRAY);
    put_u64(b, 2);
    if (v == G_NESTED2) {
        put_u32(b, GGUF_T_ARRAY);
        put_u64(b, 1);
    }
    put_u32(b, GGUF_T_U8);
    put_u64(b, 2);
    put(b, "\x01\x02", 2);
    put_u32(b, GGUF_T_STRING);
    put_u64(b, 1);
    put_str(b, "x");
    if (v == G_DUP_KEY) put_str(b, "test.u32"), put_u32(b, GGUF_T_U32), put_u32(b, 8);
    if (v == G_VALUE_TYPE) put_str(b, "test.bad"), put_u32(b, 13), put_u32(b, 0);
    if (v == G_ALIGN_ZERO || v == G_ALIGN_ODD || v == G_ALIGN64) {
        put_str(b, "general.alignment");
        put_u32(b, GGUF_T_U32);
        put_u32(b, v == G_ALIGN_ZERO ? 0 : v == G_ALIGN_ODD ? 48 : 64);
    }
    if (v == G_ALIGN_STR) put_str(b, "general.alignment"), put_u32(b, GGUF_T_STRING), put_str(b, "32");
    size_t align = v == G_ALIGN64 ? 64 : 32;
    /* tensor 1: f32 (32, 2) at 0 (256 bytes) */
    put_str(b, v == G_EMPTY_NAME ? "" : "a.weight");
    put_u32(b, v == G_NDIMS ? 5 : 2);
    put_u64(b, v == G_NE_OVERFLOW ? (1ull << 40) : 32);
    put_u64(b, v == G_NE_OVERFLOW ? (1ull << 40) : v == G_NE_ZERO ? 0 : 2);
    if (v == G_NDIMS) put_u64(b, 1), put_u64(b, 1), put_u64(b, 1);
    put_u32(b, LLM_T_F32);
    put_u64(b, 0);
    /* tensor 2: q8_0 (64, 2) at 256 (136 bytes) */
    if (v == G_DUP_TENSOR) put_str(b, "a.weight");
    else if (v == G_NUL_NAME) put_u64(b, 5), put(b, "blk\0x", 5);
    else put_str(b, "blk.3.attn_q.weight");
    put_u32(b, 2);
    put_u64(b, v == G_NE0_BLOCK ? 48 : 64);
    put_u64(b, 2);
    put_u32(b, v == G_UNKNOWN_TYPE ? 99 : v == G_FOREIGN_TYPE ? 6 : LLM_T_Q8_0);
    put_u64(b, v == G_OFFSET_OOB ? 512 : v == G_OFFSET_UNALIGNED ? 260 : 256);
    if (v == G_NO_DATA) return;
    while (b->len % align) put(b, "", 1);
    for (int i = 0; i < 256 + 136; i++) put(b, &(uint8_t){(uint8_t)i}, 1);
}

static void test_handmade_gguf(void **state)
{
    (void)state;
    static const struct {
        int v;
        int rc;           /* expected code; 0 = opens */
        const char *want; /* substring of the message */
    } cases[] = {
        {G_VALID, 0, NULL},
        {G_V2, 0, NULL},
        {G_ALIGN64, 0, NULL},
        {G_MAGIC, DOC_EFORMAT, "bad magic"},
        {G_V1, DOC_EUNSUPPORTED, "version 1"},
        {G_BIGENDIAN, DOC_EUNSUPPORTED, "big-endian"},
        {G_UNKNOWN_TYPE, DOC_EFORMAT, "tensor 'blk.3.attn_q.weight': unknown type 99"},
        {G_FOREIGN_TYPE, DOC_EUNSUPPORTED, "unsupported type 6 (q5_0)"},
        {G_NE_OVERFLOW, DOC_EFORMAT, "tensor 'a.weight'"},
        {G_NE_ZERO, DOC_EFORMAT, "ne[1] = 0"},
        {G_NDIMS, DOC_EFORMAT, "n_dims 5"},
        {G_NE0_BLOCK, DOC_EFORMAT, "not a multiple"},
        {G_OFFSET_OOB, DOC_EFORMAT, "outside the data section"},
        {G_OFFSET_UNALIGNED, DOC_EFORMAT, "alignment"},
        {G_HUGE_STRING, DOC_EFORMAT, "key length"},
        {G_HUGE_ARRAY, DOC_EFORMAT, "array count"},
        {G_HUGE_NKV, DOC_EFORMAT, "kv count"},
        {G_HUGE_NT, DOC_EFORMAT, "tensor count"},
        {G_DUP_TENSOR, DOC_EFORMAT, "duplicate tensor name"},
        {G_DUP_KEY, DOC_EFORMAT, "duplicate key 'test.u32'"},
        {G_NESTED2, DOC_EUNSUPPORTED, "nested deeper"},
        {G_VALUE_TYPE, DOC_EFORMAT, "key 'test.bad': unknown value type 13"},
        {G_ALIGN_ZERO, DOC_EFORMAT, "general.alignment"},
        {G_ALIGN_ODD, DOC_EFORMAT, "general.alignment"},
        {G_ALIGN_STR, DOC_EFORMAT, "general.alignment"},
        {G_EMPTY_NAME, DOC_EFORMAT, "bad tensor name"},
        {G_NUL_NAME, DOC_EFORMAT, "bad tensor name"},
        {G_NO_DATA, DOC_EFORMAT, "data section"},
    };
    assert_int_equal(sizeof cases / sizeof *cases, G_COUNT);
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        buf b;
        buf_init(&b, 0);
        make_gguf(&b, cases[i].v);
        char path[1024];
        snprintf(path, sizeof path, "%s/hand%d.gguf", tmpdir, cases[i].v);
        write_file(path, b.data, b.len);
        doc_err err;
        int rc = try_gguf(path, &err);
        if (rc != cases[i].rc)
            fail_msg("case %d: rc %d (%s), want %d", cases[i].v, rc, err.msg, cases[i].rc);
        if (rc) {
            check_failure(rc, &err, path, "hand-made");
            if (!strstr(err.msg, cases[i].want) || !strstr(err.msg, ": offset "))
                fail_msg("case %d: message '%s' lacks '%s'", cases[i].v, err.msg, cases[i].want);
        }
        /* every prefix of a hand-made file fails cleanly too (in memory: fast) */
        for (size_t n = 0; n < b.len; n++) {
            gguf_file *g = NULL;
            memset(&err, 0, sizeof err);
            int prc = gguf_open_mem(b.data, n, "mem", &g, &err);
            if (prc == 0) fail_msg("case %d: prefix of %zu bytes opened", cases[i].v, n);
            assert_null(g);
            assert_non_null(strstr(err.msg, "mem"));
        }
        buf_free(&b);
    }

    /* the valid file's contents */
    buf b;
    buf_init(&b, 0);
    make_gguf(&b, G_VALID);
    gguf_file *g = NULL;
    doc_err err = {0};
    assert_int_equal(gguf_open_mem(b.data, b.len, "mem", &g, &err), 0);
    assert_int_equal(gguf_n_kv(g), 5);
    const gguf_kv *a = gguf_get(g, "test.arr");
    assert_int_equal(a->arr_type, GGUF_T_I32);
    assert_int_equal(a->n, 3);
    assert_int_equal(((const int32_t *)a->arr)[2], 3);
    const gguf_kv *s = gguf_get(g, "test.strs");
    assert_string_equal(s->strs[1], "bc");
    assert_int_equal(s->lens[1], 2);
    const gguf_kv *nest = gguf_get(g, "test.nested");
    assert_int_equal(nest->arr_type, GGUF_T_ARRAY);
    assert_int_equal(nest->n, 2);
    assert_null(nest->arr);
    const llm_tensor *t = gguf_tensor(g, "blk.3.attn_q.weight");
    assert_int_equal(t->type, LLM_T_Q8_0);
    assert_int_equal(t->nbytes, 136);
    assert_int_equal((const char *)t->data - b.data, b.len - 136);
    gguf_close(&g);
    buf_free(&b);
}

/* ---- hand-made safetensors ---------------------------------------------------------- */

/* make_hf: dir/config.json and dir/<file> holding header `json` (padded to 8)
 * and `data_len` bytes; len_override replaces the header length when nonzero */
static void make_st(const char *dir, const char *file, const char *json, size_t data_len,
                    uint64_t len_override)
{
    char path[1200];
    snprintf(path, sizeof path, "%s/config.json", dir);
    write_file(path, "{\"model_type\": \"bert\"}", 22);
    buf b;
    buf_init(&b, 0);
    size_t jl = strlen(json), padded = (jl + 7) / 8 * 8;
    put_u64(&b, len_override ? len_override : padded);
    put(&b, json, jl);
    for (size_t i = jl; i < padded; i++) put(&b, " ", 1);
    for (size_t i = 0; i < data_len; i++) put(&b, &(uint8_t){(uint8_t)(i * 7)}, 1);
    snprintf(path, sizeof path, "%s/%s", dir, file);
    write_file(path, b.data, b.len);
    buf_free(&b);
}

static void test_handmade_hf(void **state)
{
    (void)state;
    static const struct {
        const char *json;
        size_t data_len;
        uint64_t len_override;
        int rc;
        const char *want;
    } cases[] = {
        {"{\"__metadata__\": {\"format\": \"pt\"}, \"embeddings.word_embeddings.weight\": "
         "{\"dtype\": \"F16\", \"shape\": [3, 4], \"data_offsets\": [0, 24]}, "
         "\"embeddings.position_ids\": {\"dtype\": \"I64\", \"shape\": [1, 2], \"data_offsets\": [24, 40]}}",
         40, 0, 0, NULL},
        {"{\"embeddings.word_embeddings.weight\": {\"dtype\": \"I64\", \"shape\": [2], \"data_offsets\": [0, 16]}}",
         16, 0, DOC_EUNSUPPORTED, "tensor 'embeddings.word_embeddings.weight': dtype I64"},
        {"{\"w\": {\"dtype\": \"F8_E4M3\", \"shape\": [2], \"data_offsets\": [0, 2]}}", 2, 0,
         DOC_EUNSUPPORTED, "dtype F8_E4M3"},
        {"{\"w\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]}}", 8, 1u << 20,
         DOC_EFORMAT, "header length"},
        {"{\"w\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]}}", 8, 1ull << 60,
         DOC_ELIMIT, "header length"},
        {"{\"w\": {\"dtype\": \"F32\", \"shape\": [3], \"data_offsets\": [0, 8]}}", 8, 0,
         DOC_EFORMAT, "range has 8 bytes"},
        {"{\"w\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]}, "
         "\"v\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [4, 12]}}",
         12, 0, DOC_EFORMAT, "overlap"},
        {"{\"w\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [8, 16]}}", 8, 0,
         DOC_EFORMAT, "past the 8 bytes"},
        {"{\"w\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [8, 0]}}", 8, 0,
         DOC_EFORMAT, "bad data_offsets"},
        {"{\"w\": {\"dtype\": \"F32\", \"shape\": [0, 2], \"data_offsets\": [0, 0]}}", 8, 0,
         DOC_EFORMAT, "bad shape[0]"},
        {"{\"w\": {\"dtype\": \"F32\", \"shape\": [1,1,1,1,2], \"data_offsets\": [0, 8]}}", 8, 0,
         DOC_EUNSUPPORTED, "5 dimensions"},
        {"{\"w\": {\"dtype\": \"F32\", \"shape\": [4294967296, 4294967296, 4294967296], "
         "\"data_offsets\": [0, 8]}}", 8, 0, DOC_EFORMAT, "bad shape"},
        {"{\"w\": {\"dtype\": \"F32\", \"shape\": [2]}}", 8, 0, DOC_EFORMAT, "data_offsets"},
        {"{\"w\": 5}", 8, 0, DOC_EFORMAT, "not an object"},
        {"[1, 2]", 8, 0, DOC_EFORMAT, "not a json object"},
        {"{\"w\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]}, "
         "\"w\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]}}", 8, 0,
         DOC_EFORMAT, "header json"},
        {"{\"encoder.layer.0.output.dense.weight\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]}, "
         "\"bert.encoder.layer.0.output.dense.weight\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [8, 16]}}",
         16, 0, DOC_EFORMAT, "blk.0.ffn_down.weight"},
        {"{not json", 8, 0, DOC_EFORMAT, "header json"},
        {"", 0, 1, DOC_EFORMAT, "header length"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char dir[1024];
        snprintf(dir, sizeof dir, "%s/st%zu", tmpdir, i);
        assert_int_equal(mkdir(dir, 0755), 0);
        make_st(dir, "model.safetensors", cases[i].json, cases[i].data_len, cases[i].len_override);
        doc_err err;
        int rc = try_hf(dir, &err);
        if (rc != cases[i].rc) fail_msg("case %zu: rc %d (%s), want %d", i, rc, err.msg, cases[i].rc);
        if (rc) {
            check_failure(rc, &err, dir, "hand-made safetensors");
            if (!strstr(err.msg, cases[i].want))
                fail_msg("case %zu: message '%s' lacks '%s'", i, err.msg, cases[i].want);
        }
    }

    /* the valid one: F16 (4, 3) in GGUF order, the I64 buffer skipped */
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/st0", tmpdir);
    hf_model *h = NULL;
    doc_err err = {0};
    assert_int_equal(hf_open(dir, &h, &err), 0);
    assert_int_equal(hf_n_tensors(h), 1);
    const llm_tensor *t = hf_tensor(h, "token_embd.weight");
    assert_non_null(t);
    assert_int_equal(t->type, LLM_T_F16);
    assert_int_equal(t->ne[0], 4);
    assert_int_equal(t->ne[1], 3);
    assert_int_equal(t->nbytes, 24);
    assert_int_equal(((const uint8_t *)t->data)[1], 7);
    hf_close(&h);

    /* shards through model.safetensors.index.json */
    snprintf(dir, sizeof dir, "%s/sharded", tmpdir);
    assert_int_equal(mkdir(dir, 0755), 0);
    make_st(dir, "a.safetensors",
            "{\"model.layers.0.mlp.up_proj.weight\": {\"dtype\": \"BF16\", \"shape\": [2, 2], \"data_offsets\": [0, 8]}}",
            8, 0);
    make_st(dir, "b.safetensors",
            "{\"lm_head.weight\": {\"dtype\": \"F32\", \"shape\": [1, 2], \"data_offsets\": [0, 8]}}", 8, 0);
    char path[1200];
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
    const char *index = "{\"metadata\": {}, \"weight_map\": {\"model.layers.0.mlp.up_proj.weight\": "
                        "\"a.safetensors\", \"lm_head.weight\": \"b.safetensors\"}}";
    write_file(path, index, strlen(index));
    assert_int_equal(hf_open(dir, &h, &err), 0);
    assert_int_equal(hf_n_tensors(h), 2);
    assert_int_equal(hf_tensor(h, "blk.0.ffn_up.weight")->type, LLM_T_BF16);
    assert_int_equal(hf_tensor(h, "output.weight")->ne[0], 2);
    hf_close(&h);
    const char *evil = "{\"weight_map\": {\"lm_head.weight\": \"../b.safetensors\"}}";
    write_file(path, evil, strlen(evil));
    check_failure(try_hf(dir, &err), &err, dir, "shard outside the directory");
    /* nothing to load at all */
    snprintf(dir, sizeof dir, "%s/empty", tmpdir);
    assert_int_equal(mkdir(dir, 0755), 0);
    snprintf(path, sizeof path, "%s/config.json", dir);
    write_file(path, "{}", 2);
    assert_int_equal(try_hf(dir, &err), DOC_ENOTFOUND);
    check_failure(DOC_ENOTFOUND, &err, dir, "no weights");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_handmade_gguf),
        cmocka_unit_test(test_handmade_hf),
        cmocka_unit_test(test_real_gguf_corrupt),
        cmocka_unit_test(test_real_hf_corrupt),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
