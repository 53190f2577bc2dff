/*
 * vindex_bench.c - build, search and save/load timings of index/vindex.c
 * (FAISS through its C API) on random unit vectors, with recall@k against an
 * exact Flat index over the same vectors.
 *
 * Build: make build/bench/vindex_bench (bench/store.sh does).
 * Run:
 *   build/bench/vindex_bench -f Flat -n 10000 -d 384
 *   build/bench/vindex_bench -f HNSW32 -n 1000000 -d 384 -e 128 -t 300
 * -t caps the build time: vectors are added in batches until n or the cap is
 * reached, and everything after is measured at the size reached.  Random
 * vectors are the hard case for HNSW (no cluster structure), so recall on
 * real embeddings is usually higher at the same efSearch.
 *
 * Searches are one query per call, as the daemon makes them; latency is per
 * vx_search call.  OpenMP settings (OMP_NUM_THREADS, OMP_WAIT_POLICY) move
 * both the build time and the search latency: say which were used.
 */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/core.h"
#include "index/internal.h"

static uint64_t rng(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

/* fill x (n, d) with random unit vectors */
static void rand_unit(float *x, int64_t n, int d, uint64_t *s)
{
    for (int64_t i = 0; i < n; i++) {
        float *v = x + i * d;
        double ss = 0;
        for (int j = 0; j < d; j++) {
            v[j] = (float)((rng(s) >> 40) * (1.0 / (1 << 23))) - 1.0f;
            ss += (double)v[j] * v[j];
        }
        float inv = (float)(1.0 / sqrt(ss));
        for (int j = 0; j < d; j++) v[j] *= inv;
    }
}

/* fill x (n, d) with unit vectors around nc random centres (centre + noise
 * of relative size sigma, normalised): a rough stand-in for embeddings,
 * which cluster by topic */
static void rand_clustered(float *x, int64_t n, int d, int nc, float sigma, uint64_t *s)
{
    float *c = malloc((size_t)nc * (size_t)d * sizeof *c);
    if (!c) {
        rand_unit(x, n, d, s);
        return;
    }
    rand_unit(c, nc, d, s);
    rand_unit(x, n, d, s);
    for (int64_t i = 0; i < n; i++) {
        const float *ci = c + (size_t)(rng(s) % (uint64_t)nc) * d;
        float *v = x + i * d;
        double ss = 0;
        for (int j = 0; j < d; j++) {
            v[j] = ci[j] + sigma * v[j];
            ss += (double)v[j] * v[j];
        }
        float inv = (float)(1.0 / sqrt(ss));
        for (int j = 0; j < d; j++) v[j] *= inv;
    }
    free(c);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void usage(void)
{
    fprintf(stderr,
            "usage: vindex_bench [-f factory] [-n vectors] [-d dim] [-q queries] [-k k]\n"
            "                    [-e efSearch] [-t build-seconds] [-r recall-queries]\n"
            "                    [-s seed] [-o index-file] [-c clusters]\n"
            "defaults: -f Flat -n 10000 -d 384 -q 1000 -k 10 -t 300 -r 200 -s 1; -e only\n"
            "for HNSW; -r 0 skips recall; -o times vx_save and vx_load through that file;\n"
            "-c C draws vectors and queries around C random centres instead of uniformly\n");
}

int main(int argc, char **argv)
{
    const char *factory = "Flat", *outfile = NULL;
    int64_t n = 10000;
    int d = 384, nq = 1000, k = 10, ef = 0, nr = 200, nc = 0;
    double tmax = 300;
    uint64_t seed = 1;
    int c;
    while ((c = getopt(argc, argv, "f:n:d:q:k:e:t:r:s:o:c:h")) != -1) {
        switch (c) {
        case 'f': factory = optarg; break;
        case 'n': n = atoll(optarg); break;
        case 'd': d = atoi(optarg); break;
        case 'q': nq = atoi(optarg); break;
        case 'k': k = atoi(optarg); break;
        case 'e': ef = atoi(optarg); break;
        case 't': tmax = atof(optarg); break;
        case 'r': nr = atoi(optarg); break;
        case 's': seed = strtoull(optarg, NULL, 10); break;
        case 'o': outfile = optarg; break;
        case 'c': nc = atoi(optarg); break;
        default: usage(); return 2;
        }
    }
    if (n <= 0 || d <= 0 || nq <= 0 || k <= 0 || nr < 0 || nc < 0) {
        usage();
        return 2;
    }
    if (nr > nq) nr = nq;
    setvbuf(stdout, NULL, _IOLBF, 0); /* progress shows when redirected */

    int rc = 1;
    doc_err err = {0};
    vindex *v = NULL, *exact = NULL, *loaded = NULL;
    float *x = NULL, *q = NULL, *sc = NULL, *sc2 = NULL;
    int64_t *ids = NULL, *lab = NULL, *lab2 = NULL, *got = NULL;
    double *lat = NULL;
    uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
    enum { BATCH = 10000 };

    if (vx_new(d, factory, &v, &err) != DOC_OK) goto fail;
    if (ef > 0 && vx_set_ef_search(v, ef, &err) != DOC_OK) goto fail;
    x = malloc((size_t)n * (size_t)d * sizeof *x);
    ids = malloc((size_t)n * sizeof *ids);
    q = malloc((size_t)nq * (size_t)d * sizeof *q);
    sc = malloc((size_t)k * sizeof *sc);
    sc2 = malloc((size_t)k * sizeof *sc2);
    lab = malloc((size_t)k * sizeof *lab);
    lab2 = malloc((size_t)k * sizeof *lab2);
    got = malloc((size_t)nr * (size_t)k * sizeof *got);
    lat = malloc((size_t)nq * sizeof *lat);
    if (!x || !ids || !q || !sc || !sc2 || !lab || !lab2 || !got || !lat) {
        fprintf(stderr, "out of memory\n");
        goto done;
    }
    double t0 = time_now();
    if (nc > 0) {
        /* queries from the same mixture: draw them with the data */
        float *all = malloc(((size_t)n + (size_t)nq) * (size_t)d * sizeof *all);
        if (!all) {
            fprintf(stderr, "out of memory\n");
            goto done;
        }
        rand_clustered(all, n + nq, d, nc, 0.5f, &s);
        memcpy(x, all, (size_t)n * (size_t)d * sizeof *x);
        memcpy(q, all + (size_t)n * d, (size_t)nq * (size_t)d * sizeof *q);
        free(all);
    } else {
        rand_unit(x, n, d, &s);
        rand_unit(q, nq, d, &s);
    }
    for (int64_t i = 0; i < n; i++) ids[i] = i;
    printf("data: %lld vectors + %d queries of dim %d (%s) generated in %.1f s\n", (long long)n,
           nq, d, nc > 0 ? "clustered" : "uniform on the sphere", time_now() - t0);

    /* build in batches until n or the time cap */
    int64_t added = 0;
    t0 = time_now();
    while (added < n && time_now() - t0 < tmax) {
        int64_t b = n - added < BATCH ? n - added : BATCH;
        if (vx_add(v, b, x + added * d, ids + added, &err) != DOC_OK) goto fail;
        added += b;
    }
    double tb = time_now() - t0;
    printf("build: factory \"%s\", %lld vectors in %.1f s (%.0f vectors/s)%s\n", factory,
           (long long)added, tb, added / (tb > 0 ? tb : 1e-9),
           added < n ? ", stopped by -t" : "");

    /* latency, one query per call */
    for (int i = 0; i < 20 && i < nq; i++) /* warm-up */
        if (vx_search(v, q + (size_t)i * d, k, sc, lab, &err) != DOC_OK) goto fail;
    for (int i = 0; i < nq; i++) {
        double a = time_now();
        if (vx_search(v, q + (size_t)i * d, k, sc, lab, &err) != DOC_OK) goto fail;
        lat[i] = (time_now() - a) * 1e3;
        if (i < nr) memcpy(got + (size_t)i * k, lab, (size_t)k * sizeof *lab);
    }
    double sum = 0;
    for (int i = 0; i < nq; i++) sum += lat[i];
    qsort(lat, (size_t)nq, sizeof *lat, cmp_double);
    printf("search: k %d%s, %d queries: p50 %.3f ms, p99 %.3f ms, mean %.3f ms, max %.3f ms\n",
           k, ef > 0 ? "" : " (default efSearch if HNSW)", nq, lat[nq / 2],
           lat[(int)((nq - 1) * 0.99)], sum / nq, lat[nq - 1]);
    if (ef > 0) printf("        efSearch %d\n", ef);

    /* recall@k against an exact index over the same vectors */
    if (nr > 0) {
        if (vx_new(d, "Flat", &exact, &err) != DOC_OK) goto fail;
        if (vx_add(exact, added, x, ids, &err) != DOC_OK) goto fail;
        int64_t hits = 0;
        double te = time_now();
        for (int i = 0; i < nr; i++) {
            if (vx_search(exact, q + (size_t)i * d, k, sc2, lab2, &err) != DOC_OK) goto fail;
            for (int j = 0; j < k; j++)
                for (int l = 0; l < k; l++) hits += got[(size_t)i * k + j] == lab2[l];
        }
        printf("recall@%d vs exact (Flat, %.1f ms/query): %.4f over %d queries\n", k,
               (time_now() - te) * 1e3 / nr, (double)hits / ((double)nr * k), nr);
        vx_free(&exact);
    }

    if (outfile) {
        uint64_t h = 0;
        double a = time_now();
        if (vx_save(v, outfile, &h, &err) != DOC_OK) goto fail;
        double ts = time_now() - a;
        a = time_now();
        if (vx_load(outfile, d, h, &loaded, &err) != DOC_OK) goto fail;
        double tl = time_now() - a;
        printf("file: %s, save %.2f s, load (hash + parse) %.2f s\n", outfile, ts, tl);
        unlink(outfile);
    }
    rc = 0;
    goto done;
fail:
    fprintf(stderr, "vindex_bench: %s (%s)\n", err.msg, doc_strerror(err.rc));
done:
    vx_free(&v);
    vx_free(&exact);
    vx_free(&loaded);
    free(x);
    free(ids);
    free(q);
    free(sc);
    free(sc2);
    free(lab);
    free(lab2);
    free(got);
    free(lat);
    return rc;
}
