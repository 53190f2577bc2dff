/*
 * embed_bench.c - embedding throughput of docent's engine, for bench/engine.sh.
 *
 *   embed_bench MODEL FILE [REPS] [THREADS]
 *
 * Reads FILE (one text per line), opens MODEL through the public API with
 * batch 32 and THREADS threads (default 2), embeds every line once to warm up,
 * then REPS times (default 3), and prints
 *   "docent: N chunks, X chunks/s (runs: a b c)"
 * with the median.  Built by engine.sh against build/libdocent.a; uses only llm.h.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llm/llm.h"

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    if (argc < 3 || argc > 5) {
        fprintf(stderr, "usage: embed_bench MODEL FILE [REPS] [THREADS]\n");
        return 2;
    }
    int reps = argc > 3 ? atoi(argv[3]) : 3;
    int threads = argc > 4 ? atoi(argv[4]) : 2;
    if (reps < 1 || reps > 100 || threads < 1) {
        fprintf(stderr, "embed_bench: REPS must be 1..100 and THREADS >= 1\n");
        return 2;
    }
    doc_err err = {0};
    char *data = NULL, **lines = NULL;
    float *out = NULL;
    double *rates = NULL;
    llm_model *m = NULL;
    size_t len;
    int rc = 1, n = 0;

    if (file_read_all(argv[2], 1 << 28, &data, &len, &err) != 0) {
        fprintf(stderr, "embed_bench: %s\n", err.msg);
        goto done;
    }
    lines = malloc((len / 2 + 1) * sizeof *lines);
    if (!lines) goto done;
    for (char *s = strtok(data, "\n"); s; s = strtok(NULL, "\n")) lines[n++] = s;
    if (n == 0) {
        fprintf(stderr, "embed_bench: %s has no lines\n", argv[2]);
        goto done;
    }

    llm_opts o = {.n_threads = threads, .backend = "cpu", .batch = 32};
    if (llm_model_open(argv[1], &o, &m, &err) != 0) {
        fprintf(stderr, "embed_bench: %s\n", err.msg);
        goto done;
    }
    int dim = llm_embed_dim(m);
    out = malloc((size_t)n * dim * sizeof *out);
    rates = malloc((size_t)reps * sizeof *rates);
    if (!out || !rates) goto done;

    for (int r = -1; r < reps; r++) {
        double t0 = time_now();
        if (llm_embed(m, (const char *const *)lines, n, out, NULL, &err) != 0) {
            fprintf(stderr, "embed_bench: %s\n", err.msg);
            goto done;
        }
        if (r >= 0) rates[r] = n / (time_now() - t0);
    }
    printf("docent: %d chunks, ", n);
    double *sorted = malloc((size_t)reps * sizeof *sorted);
    if (!sorted) goto done;
    memcpy(sorted, rates, (size_t)reps * sizeof *sorted);
    qsort(sorted, (size_t)reps, sizeof *sorted, cmp_double);
    printf("%.1f chunks/s (runs:", sorted[reps / 2]);
    for (int r = 0; r < reps; r++) printf(" %.1f", rates[r]);
    printf(") %s\n", llm_model_desc(m));
    free(sorted);
    rc = 0;
done:
    llm_model_close(&m);
    free(rates);
    free(out);
    free(lines);
    free(data);
    return rc;
}
