/*
 * decode_bench.c - decode throughput by batch size (continuous batching).
 *
 *   decode_bench MODEL [BATCHES] [STEPS] [THREADS] [BACKEND]
 *
 * For each batch size B in BATCHES (comma-separated, default "1,2,4,8,16"):
 * B sessions each read a different ~100-token prompt, then STEPS (default
 * 32) decode steps run all B at once through llm_sessions_step (greedy
 * tokens fed back).  Prints per B the step time and the aggregate and
 * per-sequence tokens/s, and the speed-up of the aggregate over B = 1.  One
 * untimed pass at B = 1 comes first, and the first step of each size is not
 * timed.  THREADS default 2,
 * BACKEND default "auto".  Uses only llm.h.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llm/llm.h"

static int argmax(const float *x, int n)
{
    int b = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[b]) b = i;
    return b;
}

int main(int argc, char **argv)
{
    if (argc < 2 || argc > 6) {
        fprintf(stderr, "usage: decode_bench MODEL [BATCHES] [STEPS] [THREADS] [BACKEND]\n");
        return 2;
    }
    const char *batches = argc > 2 ? argv[2] : "1,2,4,8,16";
    int steps = argc > 3 ? atoi(argv[3]) : 32;
    llm_opts o = {.n_threads = argc > 4 ? atoi(argv[4]) : 2, .n_ctx = 512,
                  .backend = argc > 5 ? argv[5] : "auto"};
    doc_err err = {0};
    llm_model *m;
    if (steps < 2 || llm_model_open(argv[1], &o, &m, &err)) {
        fprintf(stderr, "decode_bench: %s\n", steps < 2 ? "STEPS must be at least 2" : err.msg);
        return 1;
    }
    const int nv = llm_n_vocab(m);
    printf("%s\n%6s %10s %12s %12s %8s\n", llm_model_desc(m), "batch", "step ms", "tok/s all",
           "tok/s each", "vs B=1");
    double base = 0;
    /* "1" first, untimed: the first steps after loading pay for page faults */
    char *list = malloc(strlen(batches) + 3);
    sprintf(list, "w,%s", batches);
    for (char *tok = strtok(list, ","); tok; tok = strtok(NULL, ",")) {
        int warm = !strcmp(tok, "w"), B = warm ? 1 : atoi(tok);
        if (B < 1 || B > 256) {
            fprintf(stderr, "decode_bench: batch %s out of range (1..256)\n", tok);
            return 2;
        }
        llm_session **ss = calloc((size_t)B, sizeof *ss);
        int32_t *ids = calloc((size_t)B, sizeof *ids);
        float *lg = malloc((size_t)B * nv * sizeof *lg);
        for (int i = 0; i < B; i++) {
            char prompt[1024];
            int n = snprintf(prompt, sizeof prompt, "Question %d. ", i);
            for (int k = 0; k < 12 && n < 900; k++)
                n += snprintf(prompt + n, sizeof prompt - (size_t)n,
                              "Write-ahead log segment %d of table t%d is archived; ", k * 7 + i, i);
            int32_t *p;
            int np;
            if (llm_tokenize(m, prompt, strlen(prompt), 1, 1, &p, &np, &err) ||
                llm_session_new(m, &ss[i], &err) || llm_session_eval(ss[i], p, np, 0, lg, &err)) {
                fprintf(stderr, "decode_bench: %s\n", err.msg);
                return 1;
            }
            ids[i] = argmax(lg, nv);
            free(p);
        }
        double t0 = 0;
        for (int s = 0; s < steps; s++) {
            if (s == 1) t0 = time_now();
            if (llm_sessions_step(ss, ids, B, lg, &err)) {
                fprintf(stderr, "decode_bench: %s\n", err.msg);
                return 1;
            }
            for (int i = 0; i < B; i++) ids[i] = argmax(lg + (size_t)i * nv, nv);
        }
        double dt = (time_now() - t0) / (steps - 1);
        double all = B / dt;
        if (!warm && (B == 1 || base == 0)) base = all / B;
        if (!warm) printf("%6d %10.2f %12.1f %12.1f %7.2fx\n", B, dt * 1e3, all, all / B, all / base);
        fflush(stdout);
        for (int i = 0; i < B; i++) llm_session_free(&ss[i]);
        free(ss);
        free(ids);
        free(lg);
    }
    free(list);
    llm_model_close(&m);
    return 0;
}
