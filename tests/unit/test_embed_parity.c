/*
 * test_embed_parity.c - all-minilm-l6-v2 embeddings against sentence-transformers.
 *
 * The fixture (tests/fixtures/embed/, made by tests/reference/passages.py and
 * gen_embed.py) holds 118 real passages from Debian documentation, 5 to 1465
 * tokens (24 of them longer than the model's 256 and therefore truncated), and
 * the reference vectors sentence-transformers computed for them on the CPU
 * (normalize_embeddings=True), stored as IEEE halves.  Halving a unit vector
 * moves its cosine with the original by < 1e-6, so the stored form does not
 * loosen the check.
 *
 * Checks, through the public API only:
 *   - one batched llm_embed call (batch 32) and one call per passage both give
 *     cosine >= 0.9999 with the reference for every passage;
 *   - every output vector has unit length (|norm - 1| <= 1e-5);
 *   - batched and single results agree element-wise within 1e-5 (padding in a
 *     batch must not leak into a sequence).
 * Min and mean cosine are printed.  DOCENT_TEST_BACKEND picks the backend
 * (default "cpu").
 */
#include "testutil.h"

#include <math.h>

#include "llm/llm.h"

#define FIX_DIR "tests/fixtures/embed"
#define DIM 384
#define MIN_COS 0.9999
#define NORM_TOL 1e-5
#define BATCH_TOL 1e-5f

typedef struct fixture {
    char *raw;      /* passages.txt, NUL-terminated; texts point into it */
    char **texts;   /* n NUL-terminated passages */
    float *ref;     /* (n, DIM) reference vectors */
    int n;
    llm_model *model;
} fixture;

/* ---- fixture files ----------------------------------------------------- */

/* parse_passages: split "@@ <i> <nbytes> <source>\n<text>\n" records in place
 * (the newline after each text becomes its NUL). */
static int parse_passages(fixture *f, size_t len)
{
    char *p = f->raw, *end = f->raw + len;
    int cap = 256;
    f->texts = calloc((size_t)cap, sizeof *f->texts);
    if (!f->texts) return -1;
    while (p < end) {
        int idx;
        long nb;
        if (sscanf(p, "@@ %d %ld", &idx, &nb) != 2 || idx != f->n || nb < 0 || f->n >= cap)
            return -1;
        char *nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl || nl + 1 + nb >= end || nl[1 + nb] != '\n') return -1;
        f->texts[f->n++] = nl + 1;
        nl[1 + nb] = '\0';
        p = nl + 2 + nb;
    }
    return f->n > 0 ? 0 : -1;
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    doc_err err = {0};
    char *blob = NULL;
    size_t len, blen;
    char path[512];
    if (!f) return -1;
    *state = f;
    test_model_path(path, sizeof path, TEST_EMBEDDER);

    if (file_read_all(FIX_DIR "/passages.txt", 1 << 24, &f->raw, &len, &err) != 0) {
        print_error("%s\n", err.msg);
        return -1;
    }
    if (parse_passages(f, len) != 0) {
        print_error("%s/passages.txt: malformed record %d\n", FIX_DIR, f->n);
        return -1;
    }
    if (file_read_all(FIX_DIR "/embeddings.f16", 1 << 24, &blob, &blen, &err) != 0) {
        print_error("%s\n", err.msg);
        return -1;
    }
    if (blen != (size_t)f->n * DIM * 2) {
        print_error("embeddings.f16: %zu bytes, want %d passages x %d halves\n", blen, f->n, DIM);
        free(blob);
        return -1;
    }
    f->ref = malloc((size_t)f->n * DIM * sizeof *f->ref);
    if (!f->ref) return -1;
    for (size_t i = 0; i < (size_t)f->n * DIM; i++) {
        const uint8_t *b = (const uint8_t *)blob + 2 * i;
        f->ref[i] = f16_to_f32((uint16_t)(b[0] | b[1] << 8));
    }
    free(blob);

    const char *be = getenv("DOCENT_TEST_BACKEND");
    llm_opts o = {.n_threads = 0, .backend = be && *be ? be : "cpu", .batch = 32};
    if (llm_model_open(path, &o, &f->model, &err) != 0) {
        print_error("llm_model_open %s: %s\n", path, err.msg);
        return -1;
    }
    printf("model: %s; %d passages\n", llm_model_desc(f->model), f->n);
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    if (!f) return 0;
    llm_model_close(&f->model);
    free(f->texts);
    free(f->raw);
    free(f->ref);
    free(f);
    return 0;
}

/* ---- checks ------------------------------------------------------------ */

static double dot(const float *a, const float *b)
{
    double s = 0;
    for (int i = 0; i < DIM; i++) s += (double)a[i] * b[i];
    return s;
}

static double cosine(const float *a, const float *b)
{
    return dot(a, b) / sqrt(dot(a, a) * dot(b, b));
}

/* check_against_ref: cosine and unit length of every row of out; returns the
 * number of failing passages and prints each failure. */
static int check_against_ref(const fixture *f, const float *out, const char *mode)
{
    double min_cos = 2, sum_cos = 0, max_norm_err = 0;
    int bad = 0, worst = -1;
    for (int i = 0; i < f->n; i++) {
        const float *v = out + (size_t)i * DIM;
        double c = cosine(v, f->ref + (size_t)i * DIM);
        double ne = fabs(sqrt(dot(v, v)) - 1.0);
        sum_cos += c;
        if (c < min_cos) min_cos = c, worst = i;
        if (ne > max_norm_err) max_norm_err = ne;
        if (!(c >= MIN_COS) || !(ne <= NORM_TOL)) {
            printf("%s: passage %d (%zu bytes): cosine %.6f, |norm-1| %.2e\n", mode, i,
                   strlen(f->texts[i]), c, ne);
            bad++;
        }
    }
    printf("%s: cosine min %.9f (1 - min %.1e, passage %d) mean %.9f; max |norm-1| %.1e; "
           "%d/%d below %.4f\n",
           mode, min_cos, 1 - min_cos, worst, sum_cos / f->n, max_norm_err, bad, f->n, MIN_COS);
    return bad;
}

static void test_embed_batched_and_single(void **state)
{
    fixture *f = *state;
    doc_err err = {0};
    assert_int_equal(llm_model_kind(f->model), LLM_ENCODER);
    assert_int_equal(llm_embed_dim(f->model), DIM);

    float *batched = malloc((size_t)f->n * DIM * sizeof *batched);
    float *single = malloc((size_t)f->n * DIM * sizeof *single);
    assert_non_null(batched);
    assert_non_null(single);

    double t0 = time_now();
    int rc = llm_embed(f->model, (const char *const *)f->texts, f->n, batched, NULL, &err);
    if (rc != 0) print_error("llm_embed (batched): %s\n", err.msg);
    assert_int_equal(rc, DOC_OK);
    double t1 = time_now();
    for (int i = 0; i < f->n; i++) {
        rc = llm_embed(f->model, (const char *const *)&f->texts[i], 1, single + (size_t)i * DIM,
                       NULL, &err);
        if (rc != 0) print_error("llm_embed (passage %d): %s\n", i, err.msg);
        assert_int_equal(rc, DOC_OK);
    }
    double t2 = time_now();
    printf("batched %.2fs, one at a time %.2fs\n", t1 - t0, t2 - t1);

    int bad_b = check_against_ref(f, batched, "batched");
    int bad_s = check_against_ref(f, single, "single");

    float max_diff = 0;
    int at = -1;
    for (size_t i = 0; i < (size_t)f->n * DIM; i++) {
        float d = fabsf(batched[i] - single[i]);
        if (!(d <= max_diff)) max_diff = d, at = (int)(i / DIM);
    }
    if (at < 0) printf("batched vs single: identical\n");
    else printf("batched vs single: max |diff| %.2e (passage %d), tolerance %.0e\n", max_diff,
                at, BATCH_TOL);

    free(batched);
    free(single);
    assert_int_equal(bad_b, 0);
    assert_int_equal(bad_s, 0);
    assert_true(max_diff <= BATCH_TOL);
}

/* The same passage twice in one batch, next to a long one, gives the same
 * vector both times (padding and batch position must not matter). */
static void test_embed_duplicate_in_batch(void **state)
{
    fixture *f = *state;
    doc_err err = {0};
    int longest = 0;
    for (int i = 1; i < f->n; i++)
        if (strlen(f->texts[i]) > strlen(f->texts[longest])) longest = i;
    const char *texts[3] = {f->texts[0], f->texts[longest], f->texts[0]};
    float out[3 * DIM];
    assert_int_equal(llm_embed(f->model, texts, 3, out, NULL, &err), DOC_OK);
    for (int i = 0; i < DIM; i++) assert_true(fabsf(out[i] - out[2 * DIM + i]) <= BATCH_TOL);
    assert_true(cosine(out + DIM, f->ref + (size_t)longest * DIM) >= MIN_COS);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_embed_batched_and_single),
        cmocka_unit_test(test_embed_duplicate_in_batch),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
