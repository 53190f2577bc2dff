/*
 * testutil.h - shared helpers for docent's cmocka tests.
 *
 * Tests that need the default models find them under DOCENT_MODELS (default
 * "models"); when a model is missing the test exits 77 (skipped) with a line
 * saying so, so `make test` reports it rather than passing silently.
 */
#ifndef DOCENT_TESTUTIL_H
#define DOCENT_TESTUTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "core/core.h"

static inline const char *test_models_dir(void)
{
    const char *d = getenv("DOCENT_MODELS");
    return d && *d ? d : "models";
}

/* test_model_path: models/<name> into out; exits 77 (skip) if absent. */
static inline void test_model_path(char *out, size_t cap, const char *name)
{
    snprintf(out, cap, "%s/%s", test_models_dir(), name);
    if (!file_exists(out)) {
        printf("skipped: %s is missing (run `make models`)\n", out);
        exit(77);
    }
}

#define TEST_GGUF "smollm2-135m-instruct-q4_1.gguf"
#define TEST_EMBEDDER "all-minilm-l6-v2"

/* xorshift random numbers, seeded per test so failures reproduce */
static inline uint64_t test_rand(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}
static inline float test_randf(uint64_t *s) /* uniform in [-1, 1) */
{
    return (float)((test_rand(s) >> 40) * (1.0 / (1 << 23))) - 1.0f;
}

#endif
