/* test_core.c - core: buffers, arena, files, pool, UTF-8, half floats. */
#include "testutil.h"

#include <math.h>
#include <stdatomic.h>
#include <unistd.h>

static void test_buf_cap(void **state)
{
    (void)state;
    buf b;
    buf_init(&b, 10);
    assert_int_equal(buf_puts(&b, "hello"), DOC_OK);
    assert_int_equal(buf_printf(&b, "%d", 1234), DOC_OK);
    assert_string_equal(b.data, "hello1234");
    assert_int_equal(buf_puts(&b, "xy"), DOC_ELIMIT); /* 11 > 10: refused, unchanged */
    assert_string_equal(b.data, "hello1234");
    assert_int_equal(buf_putc(&b, '!'), DOC_OK);
    assert_int_equal(b.len, 10);
    buf_free(&b);
    /* a buffer that was never written still steals as an empty C string */
    size_t n = 99;
    buf_init(&b, 0);
    char *e = buf_steal(&b, &n);
    assert_non_null(e);
    assert_int_equal(n, 0);
    assert_string_equal(e, "");
    free(e);
    buf_init(&b, 0);
    assert_int_equal(buf_reserve(&b, 100), DOC_OK);
    assert_string_equal(b.data, "");
    buf_free(&b);
}

static void test_arena(void **state)
{
    (void)state;
    arena a;
    arena_init(&a, 128, 4096);
    for (int i = 0; i < 100; i++) {
        char *p = arena_alloc(&a, 24, 8);
        assert_non_null(p);
        assert_int_equal((uintptr_t)p % 8, 0);
        memset(p, i, 24);
    }
    assert_null(arena_alloc(&a, 8192, 8)); /* over the cap */
    char *s = arena_strndup(&a, "abcdef", 3);
    assert_string_equal(s, "abc");
    arena_reset(&a);
    assert_non_null(arena_alloc(&a, 16, 16));
    arena_free(&a);
}

static void test_files(void **state)
{
    (void)state;
    char dir[] = "/tmp/docent-test-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[256];
    assert_int_equal(path_join(path, sizeof path, dir, "f.txt"), DOC_OK);
    doc_err err = {0};
    assert_int_equal(file_write_atomic(path, "abc\n", 4, &err), DOC_OK);
    char *data;
    size_t len;
    assert_int_equal(file_read_all(path, 100, &data, &len, &err), DOC_OK);
    assert_int_equal(len, 4);
    assert_string_equal(data, "abc\n");
    free(data);
    assert_int_equal(file_read_all(path, 3, &data, &len, &err), DOC_ELIMIT);
    assert_non_null(strstr(err.msg, "f.txt"));
    /* a file of exactly the limit is read whole */
    assert_int_equal(file_read_all(path, 4, &data, &len, &err), DOC_OK);
    assert_int_equal(len, 4);
    free(data);
    /* the same through a pipe (no size known up front): 4 bytes fit a limit of 4, not of 3 */
    int pfd[2];
    char pp[64];
    assert_int_equal(pipe(pfd), 0);
    assert_int_equal(write(pfd[1], "abc\n", 4), 4);
    close(pfd[1]);
    snprintf(pp, sizeof pp, "/proc/self/fd/%d", pfd[0]);
    assert_int_equal(file_read_all(pp, 4, &data, &len, &err), DOC_OK);
    assert_int_equal(len, 4);
    free(data);
    close(pfd[0]);
    assert_int_equal(pipe(pfd), 0);
    assert_int_equal(write(pfd[1], "abc\n", 4), 4);
    close(pfd[1]);
    snprintf(pp, sizeof pp, "/proc/self/fd/%d", pfd[0]);
    assert_int_equal(file_read_all(pp, 3, &data, &len, &err), DOC_ELIMIT);
    close(pfd[0]);
    file_map m;
    assert_int_equal(file_map_open(path, &m, &err), DOC_OK);
    assert_int_equal(m.size, 4);
    assert_memory_equal(m.data, "abc\n", 4);
    file_map_close(&m);
    assert_int_equal(file_read_all("/nonexistent/x", 0, &data, &len, &err), DOC_ENOTFOUND);
    assert_non_null(strstr(err.msg, "/nonexistent/x"));
    unlink(path);
    rmdir(dir);
}

static atomic_int hits[64];
static void pool_job(void *ctx, int ith, int nth)
{
    (void)ctx;
    assert_true(ith < nth);
    atomic_fetch_add(&hits[ith], 1);
}

static void test_pool(void **state)
{
    (void)state;
    pool *p;
    assert_int_equal(pool_new(4, &p), DOC_OK);
    for (int r = 0; r < 1000; r++) pool_run(p, pool_job, NULL);
    for (int i = 0; i < 4; i++) assert_int_equal(atomic_load(&hits[i]), 1000);
    pool_free(&p);
    assert_null(p);
    pool_free(&p); /* NULL is fine */
}

static void test_utf8(void **state)
{
    (void)state;
    assert_true(utf8_valid("h\xc3\xa9llo \xe4\xb8\xad \xf0\x9f\x98\x80", 15));
    assert_false(utf8_valid("\xc0\xaf", 2));         /* overlong */
    assert_false(utf8_valid("\xed\xa0\x80", 3));     /* surrogate */
    assert_false(utf8_valid("\xe4\xb8", 2));         /* truncated */
    assert_false(utf8_valid("\xff", 1));
    char out[4];
    uint32_t cp;
    for (uint32_t c = 1; c < 0x110000; c += 97) {
        int n = utf8_encode(c, out);
        if (c >= 0xD800 && c <= 0xDFFF) {
            assert_int_equal(n, 0);
            continue;
        }
        assert_int_equal(utf8_decode(out, (size_t)n, &cp), n);
        assert_int_equal(cp, c);
    }
}

static void test_half(void **state)
{
    (void)state;
    /* every finite f16 round-trips through f32 */
    for (uint32_t h = 0; h < 0x10000; h++) {
        if (((h >> 10) & 0x1F) == 0x1F) continue;
        float f = f16_to_f32((uint16_t)h);
        assert_int_equal(f32_to_f16(f), h);
    }
    assert_true(f16_to_f32(0x3C00) == 1.0f);
    assert_true(f16_to_f32(0xC000) == -2.0f);
    assert_int_equal(f32_to_f16(65520.0f), 0x7C00); /* rounds to inf */
    assert_true(bf16_to_f32(f32_to_bf16(1.5f)) == 1.5f);
    assert_true(fabsf(bf16_to_f32(f32_to_bf16(3.14159f)) - 3.14159f) < 0.02f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_buf_cap), cmocka_unit_test(test_arena),
        cmocka_unit_test(test_files),   cmocka_unit_test(test_pool),
        cmocka_unit_test(test_utf8),    cmocka_unit_test(test_half),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
