/*
 * gpu_probe.c - docent's engine driven from the command line for
 * tests/gpu/check.sh: logits and greedy tokens of a decoder, embeddings of an
 * encoder, timings, and the device's copy bandwidth, as one JSON object on
 * stdout (arrays of floats go to binary files, little-endian f32).
 *
 *   gpu_probe decode MODEL BACKEND IDS_FILE STEPS LOGITS_OUT [T:TOP_P:SEED]
 *       IDS_FILE: whitespace-separated token ids (the prompt).  Prefill in one
 *       call, then STEPS greedy steps; writes the prefill's last-token logits
 *       to LOGITS_OUT (the steps pick greedily on the backend, as llm_generate
 *       does); prints {"tokens": [...], "prefill_s", "decode_s",
 *       "decode_tok_s", "backend_info"} (backend_info: llm_model_backend_info,
 *       on CUDA the graph counters and KV blocks).  With T:TOP_P:SEED the
 *       steps sample instead (temperature T, top_p, draws from SEED), picked
 *       on the backend.
 *   gpu_probe prefill MODEL BACKEND N REPS
 *       times a prefill of N tokens (ids i % 1000 + 10) on a fresh session,
 *       REPS times after one warm-up; prints the best and mean seconds.
 *   gpu_probe embed MODEL BACKEND TEXTS_FILE BATCH OUT
 *       one text per line; writes (n, dim) embeddings to OUT and the time.
 *   gpu_probe batch MODEL BACKEND B STEPS
 *       continuous batching: B sessions, each a different 32-token prompt,
 *       then STEPS decode steps of all B at once (the first with logits, the
 *       rest picking greedily on the backend: llm_sessions_step_rows);
 *       the first step's logits of sessions 0 and B-1 are checked against the
 *       same sessions evaluated alone; prints {"batch", "step_s", "tok_s",
 *       "maxdiff_rel", "backend_info"} (max |batched - alone| / logit range;
 *       the rate leaves out the first two steps).
 *   gpu_probe gemv BACKEND TYPE ROWS COLS N[,N...] REPS (a JSON line per N)
 *       one matmul of N activation rows with a random ROWS x COLS weight of
 *       TYPE (q4_0, q4_1, q8_0, f16, ...), REPS times after a warm-up: the
 *       time per call and the weight bytes the device holds per second
 *       (DOCENT_CUDA_QUANT=keep keeps quantized weights as they are).
 *   gpu_probe copybw BACKEND MIB REPS
 *       device-to-device copy through the backend's copy op; bytes read +
 *       written per second.
 * Exit status 0, or 1 with a message on stderr.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "llm/backend.h"
#include "llm/internal.h"
#include "llm/llm.h"

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + t.tv_nsec * 1e-9;
}

static int die(const char *what, const doc_err *e)
{
    fprintf(stderr, "gpu_probe: %s: %s\n", what, e ? e->msg : "");
    return 1;
}

static int open_model(const char *path, const char *backend, int n_ctx, int batch, llm_model **m,
                      doc_err *err)
{
    llm_opts o = {.backend = backend, .n_ctx = n_ctx, .batch = batch};
    return llm_model_open(path, &o, m, err);
}

static int32_t argmax(const float *x, int n)
{
    int32_t b = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[b]) b = i;
    return b;
}

static int write_f32(const char *path, const float *x, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t w = fwrite(x, sizeof *x, n, f);
    return fclose(f) || w != n ? -1 : 0;
}

static int cmd_decode(char **a)
{
    doc_err err = {0};
    llm_model *m = NULL;
    int steps = atoi(a[3]), cap = 1 << 16, n = 0;
    float temp = 0, top_p = 1;
    unsigned long long rng = 0;
    if (a[5] && sscanf(a[5], "%f:%f:%llu", &temp, &top_p, &rng) != 3)
        return die("the sampling argument is T:TOP_P:SEED", NULL);
    int32_t *ids = malloc((size_t)cap * sizeof *ids);
    FILE *f = fopen(a[2], "r");
    if (!ids || !f) return die("cannot read the ids file", NULL);
    while (n < cap && fscanf(f, "%d", &ids[n]) == 1) n++;
    fclose(f);
    if (open_model(a[0], a[1], n + steps + 8, 0, &m, &err)) return die("open", &err);
    int nv = llm_n_vocab(m);
    float *lg = malloc((size_t)nv * sizeof *lg);
    llm_session *s = NULL;
    if (!lg || llm_session_new(m, &s, &err)) return die("session", &err);
    double t0 = now();
    if (llm_session_eval(s, ids, n, 0, lg, &err)) return die("prefill", &err);
    double t1 = now();
    if (write_f32(a[4], lg, (size_t)nv)) return die("cannot write the logits file", NULL);
    printf("{\"model\": \"%s\", \"desc\": \"%s\", \"n_prompt\": %d, \"tokens\": [", a[0],
           llm_model_desc(m), n);
    /* the rate leaves out the first 2 steps (a backend may record the step
     * as a graph on the second) when there are enough */
    int skip = steps > 8 ? 2 : 0;
    double ts = t1;
    int32_t id = argmax(lg, nv);
    for (int t = 0; t < steps; t++) {
        if (t == skip) ts = now();
        printf("%s%d", t ? ", " : "", id);
        /* as llm_generate decodes: the backend picks, only the id comes back */
        llm_step_row row = {.s = s, .id = id, .pick = {.penalty = 1.0f}};
        if (temp > 0) {
            row.pick.temperature = temp;
            row.pick.top_p = top_p;
            rng = rng * 6364136223846793005ull + 1442695040888963407ull;
            row.pick.u = (double)(rng >> 11) * 0x1p-53;
        }
        if (llm_sessions_step_rows(&row, 1, &err)) return die("decode", &err);
        id = row.next;
    }
    double t2 = now();
    char info[256];
    llm_model_backend_info(m, info, sizeof info);
    printf("], \"prefill_s\": %.6f, \"decode_s\": %.6f, \"decode_tok_s\": %.2f, \"backend_info\": \"%s\"}\n",
           t1 - t0, t2 - t1, (steps - skip) / (t2 - ts), info);
    llm_session_free(&s);
    llm_model_close(&m);
    free(lg);
    free(ids);
    return 0;
}

static int cmd_batch(char **a)
{
    doc_err err = {0};
    llm_model *m = NULL;
    int B = atoi(a[2]), steps = atoi(a[3]);
    if (B < 1 || B > 256 || steps < 2) return die("B must be 1..256 and STEPS at least 2", NULL);
    if (open_model(a[0], a[1], 32 + steps + 8, 0, &m, &err)) return die("open", &err);
    int nv = llm_n_vocab(m);
    llm_session **ss = calloc((size_t)B, sizeof *ss), *alone[2] = {NULL, NULL};
    int32_t *ids = malloc((size_t)B * sizeof *ids), prompt[32];
    float *lg = malloc((size_t)B * nv * sizeof *lg), *one = malloc((size_t)nv * sizeof *one);
    if (!ss || !ids || !lg || !one) return die("out of memory", NULL);
    for (int i = 0; i < B; i++) {
        for (int t = 0; t < 32; t++) prompt[t] = (int32_t)((i * 131 + t * 17) % 1000 + 10);
        if (llm_session_new(m, &ss[i], &err) || llm_session_eval(ss[i], prompt, 32, 0, one, &err))
            return die("prefill", &err);
        ids[i] = argmax(one, nv);
        if (i == 0 || i == B - 1) {
            llm_session **s1 = &alone[i == 0 ? 0 : 1];
            if (!*s1 && (llm_session_new(m, s1, &err) || llm_session_copy(*s1, ss[i])))
                return die("session copy", &err);
        }
    }
    double maxrel = 0, t0 = 0;
    int skip = steps > 4 ? 2 : 1; /* the first steps may record graphs */
    llm_step_row *rows = calloc((size_t)B, sizeof *rows);
    if (!rows) return die("out of memory", NULL);
    for (int s = 0; s < steps; s++) {
        if (s == skip) t0 = now();
        if (s > 0) { /* greedy picks on the backend: only ids come back */
            for (int i = 0; i < B; i++) rows[i] = (llm_step_row){.s = ss[i], .id = ids[i], .pick = {.penalty = 1.0f}};
            if (llm_sessions_step_rows(rows, B, &err)) return die("batched step", &err);
            for (int i = 0; i < B; i++) ids[i] = rows[i].next;
            continue;
        }
        if (llm_sessions_step(ss, ids, B, lg, &err)) return die("batched step", &err);
        if (s == 0)
            for (int k = 0; k < 2; k++) {
                int row = k == 0 ? 0 : B - 1;
                if (!alone[k] || (k == 1 && B == 1)) continue;
                if (llm_session_eval(alone[k], &ids[row], 1, 0, one, &err)) return die("alone", &err);
                float mn = one[0], mx = one[0];
                double d = 0;
                for (int v = 0; v < nv; v++) {
                    mn = one[v] < mn ? one[v] : mn;
                    mx = one[v] > mx ? one[v] : mx;
                    double e = lg[(size_t)row * nv + v] - one[v];
                    d = e < 0 ? (-e > d ? -e : d) : (e > d ? e : d);
                }
                d /= mx > mn ? mx - mn : 1;
                maxrel = d > maxrel ? d : maxrel;
            }
        for (int i = 0; i < B; i++) ids[i] = argmax(lg + (size_t)i * nv, nv);
    }
    double dt = (now() - t0) / (steps - skip);
    char info[256];
    llm_model_backend_info(m, info, sizeof info);
    printf("{\"batch\": %d, \"step_s\": %.6f, \"tok_s\": %.2f, \"maxdiff_rel\": %.3g, "
           "\"backend_info\": \"%s\"}\n", B, dt, B / dt, maxrel, info);
    for (int i = 0; i < B; i++) llm_session_free(&ss[i]);
    llm_session_free(&alone[0]);
    llm_session_free(&alone[1]);
    llm_model_close(&m);
    free(ss);
    free(ids);
    free(lg);
    free(one);
    free(rows);
    return 0;
}

static int cmd_prefill(char **a)
{
    doc_err err = {0};
    llm_model *m = NULL;
    int n = atoi(a[2]), reps = atoi(a[3]);
    if (open_model(a[0], a[1], n + 8, 0, &m, &err)) return die("open", &err);
    int nv = llm_n_vocab(m);
    int32_t *ids = malloc((size_t)n * sizeof *ids);
    float *lg = malloc((size_t)nv * sizeof *lg);
    if (!ids || !lg) return die("out of memory", NULL);
    for (int i = 0; i < n; i++) ids[i] = 10 + i % 1000 < nv ? 10 + i % 1000 : i % nv;
    double best = 1e30, sum = 0;
    for (int r = -1; r < reps; r++) {
        llm_session *s = NULL;
        if (llm_session_new(m, &s, &err)) return die("session", &err);
        double t0 = now();
        if (llm_session_eval(s, ids, n, 0, lg, &err)) return die("prefill", &err);
        double dt = now() - t0;
        llm_session_free(&s);
        if (r < 0) continue; /* warm-up */
        sum += dt;
        if (dt < best) best = dt;
    }
    printf("{\"model\": \"%s\", \"n\": %d, \"best_s\": %.6f, \"mean_s\": %.6f, \"tok_s\": %.1f}\n", a[0],
           n, best, sum / reps, n / best);
    llm_model_close(&m);
    free(ids);
    free(lg);
    return 0;
}

static int cmd_embed(char **a)
{
    doc_err err = {0};
    llm_model *m = NULL;
    if (open_model(a[0], a[1], 0, atoi(a[3]), &m, &err)) return die("open", &err);
    size_t cap = 0, len = 0;
    char *all = NULL;
    FILE *f = fopen(a[2], "rb");
    if (!f) return die("cannot read the texts file", NULL);
    for (;;) {
        if (len + 65536 > cap && !(all = realloc(all, cap = cap * 2 + 65536))) return die("oom", NULL);
        size_t r = fread(all + len, 1, cap - len - 1, f);
        if (!r) break;
        len += r;
    }
    fclose(f);
    all[len] = 0;
    int n = 0, tcap = 1024;
    const char **texts = malloc((size_t)tcap * sizeof *texts);
    for (char *p = all, *nl; p && *p; p = nl ? nl + 1 : NULL) {
        nl = strchr(p, '\n');
        if (nl) *nl = 0;
        if (n == tcap && !(texts = realloc(texts, (size_t)(tcap *= 2) * sizeof *texts))) return die("oom", NULL);
        texts[n++] = p;
    }
    int d = llm_embed_dim(m);
    float *out = malloc((size_t)n * d * sizeof *out);
    if (!out) return die("oom", NULL);
    if (llm_embed(m, texts, n < 4 ? n : 4, out, NULL, &err)) return die("embed (warm-up)", &err);
    double t0 = now();
    if (llm_embed(m, texts, n, out, NULL, &err)) return die("embed", &err);
    double dt = now() - t0;
    if (write_f32(a[4], out, (size_t)n * d)) return die("cannot write the embeddings", NULL);
    printf("{\"model\": \"%s\", \"desc\": \"%s\", \"n\": %d, \"dim\": %d, \"seconds\": %.6f, "
           "\"texts_s\": %.1f}\n",
           a[0], llm_model_desc(m), n, d, dt, n / dt);
    llm_model_close(&m);
    free(out);
    free(texts);
    free(all);
    return 0;
}

static int cmd_gemv(char **a)
{
    doc_err err = {0};
    llm_backend *be = NULL;
    int rc = !strcmp(a[0], "cuda") ? llm_cuda_backend_new(0, &be, &err) : llm_cpu_backend_new(0, &be, &err);
    if (rc) return die("backend", &err);
    int type = -1;
    for (int t = 0; t < LLM_T_COUNT; t++)
        if (llm_type(t) && !strcmp(llm_type(t)->name, a[1])) type = t;
    long rows = atol(a[2]), cols = atol(a[3]), reps = atol(a[5]);
    long ns[8];
    int nn = 0;
    for (char *s = a[4]; *s && nn < 8; s++) { /* N: one count or several, "1,8" */
        ns[nn] = strtol(s, &s, 10);
        if (ns[nn] < 1) return die("bad N", NULL);
        nn++;
        if (*s != ',') break;
    }
    if (type < 0 || rows < 1 || cols < 1 || !nn || reps < 1 || cols % llm_type(type)->block)
        return die("bad type or shape", NULL);
    long nmax = 0;
    for (int i = 0; i < nn; i++) nmax = ns[i] > nmax ? ns[i] : nmax;
    size_t rb = llm_row_bytes(type, cols);
    float *row = malloc((size_t)cols * sizeof *row), *x = malloc((size_t)nmax * cols * sizeof *x);
    char *wq = malloc(rb * (size_t)rows);
    if (!row || !x || !wq) return die("out of memory", NULL);
    uint64_t seed = 42;
    for (long r = 0; r < rows; r++) {
        for (long j = 0; j < cols; j++) {
            seed = seed * 6364136223846793005ull + 1442695040888963407ull;
            row[j] = (float)((seed >> 40) & 0xffff) / 32768.0f - 1.0f;
        }
        llm_quantize_ref(type, row, wq + (size_t)r * rb, cols);
    }
    for (long i = 0; i < nmax * cols; i++) x[i] = (float)(i % 17) / 17.0f - 0.5f;
    llm_weight w = {.type = type, .rows = rows, .cols = cols, .data = wq, .name = "w"};
    if (be->i->weight_prepare(be, &w, &err)) return die("weight_prepare", &err);
    float *dx = be->i->alloc(be, (size_t)nmax * cols), *dy = be->i->alloc(be, (size_t)nmax * rows);
    if (!dx || !dy || be->i->upload(be, dx, x, (size_t)nmax * cols)) return die("alloc", NULL);
    const char *keep = getenv("DOCENT_CUDA_QUANT");
    int kept = keep && !strcmp(keep, "keep") &&
               (type == LLM_T_Q4_0 || type == LLM_T_Q4_1 || type == LLM_T_Q8_0);
    double wbytes = kept ? (double)rb * rows : 2.0 * rows * cols;
    for (int i = 0; i < nn; i++) { /* one JSON line per count */
        long n = ns[i];
        be->i->matmul(be, dy, dx, &w, NULL, (int)n);
        if (be->i->sync(be, &err)) return die("matmul", &err);
        double t0 = now();
        for (long r = 0; r < reps; r++) be->i->matmul(be, dy, dx, &w, NULL, (int)n);
        if (be->i->sync(be, &err)) return die("matmul", &err);
        double dt = (now() - t0) / reps;
        printf("{\"type\": \"%s\", \"rows\": %ld, \"cols\": %ld, \"n\": %ld, \"kept\": %d, "
               "\"us\": %.2f, \"weight_gb_s\": %.1f}\n",
               a[1], rows, cols, n, kept, dt * 1e6, wbytes / dt / 1e9);
    }
    be->i->weight_release(be, &w);
    be->i->release(be, dx);
    be->i->release(be, dy);
    llm_backend_free(&be);
    free(row), free(x), free(wq);
    return 0;
}

static int cmd_copybw(char **a)
{
    doc_err err = {0};
    llm_backend *be = NULL;
    int rc = !strcmp(a[0], "cuda") ? llm_cuda_backend_new(0, &be, &err) : llm_cpu_backend_new(0, &be, &err);
    if (rc) return die("backend", &err);
    size_t n = (size_t)atoi(a[1]) << 18; /* MiB of floats */
    int reps = atoi(a[2]);
    float *x = be->i->alloc(be, n), *y = be->i->alloc(be, n);
    if (!x || !y) return die("alloc", NULL);
    be->i->copy(be, y, x, n);
    if (be->i->sync(be, &err)) return die("sync", &err);
    double t0 = now();
    for (int r = 0; r < reps; r++) be->i->copy(be, r & 1 ? x : y, r & 1 ? y : x, n);
    if (be->i->sync(be, &err)) return die("sync", &err);
    double dt = now() - t0;
    printf("{\"backend\": \"%s\", \"bytes\": %zu, \"reps\": %d, \"seconds\": %.6f, \"gb_s\": %.1f}\n",
           a[0], n * 4, reps, dt, 2.0 * n * 4 * reps / dt / 1e9);
    be->i->release(be, x);
    be->i->release(be, y);
    llm_backend_free(&be);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc >= 7 && !strcmp(argv[1], "decode")) return cmd_decode(argv + 2);
    if (argc >= 6 && !strcmp(argv[1], "prefill")) return cmd_prefill(argv + 2);
    if (argc >= 7 && !strcmp(argv[1], "embed")) return cmd_embed(argv + 2);
    if (argc >= 5 && !strcmp(argv[1], "copybw")) return cmd_copybw(argv + 2);
    if (argc >= 8 && !strcmp(argv[1], "gemv")) return cmd_gemv(argv + 2);
    if (argc >= 6 && !strcmp(argv[1], "batch")) return cmd_batch(argv + 2);
    fprintf(stderr, "usage: gpu_probe decode MODEL BACKEND IDS_FILE STEPS LOGITS_OUT [T:TOP_P:SEED]\n"
                    "       gpu_probe prefill MODEL BACKEND N REPS\n"
                    "       gpu_probe embed MODEL BACKEND TEXTS_FILE BATCH OUT\n"
                    "       gpu_probe copybw BACKEND MIB REPS\n"
                    "       gpu_probe gemv BACKEND TYPE ROWS COLS N[,N...] REPS\n"
                    "       gpu_probe batch MODEL BACKEND B STEPS\n");
    return 2;
}
