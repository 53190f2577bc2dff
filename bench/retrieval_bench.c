/*
 * retrieval_bench.c - retrieval quality and search latency on a question set.
 *
 *   retrieval_bench DATA_DIR EMBEDDER QUESTIONS.tsv [COLLECTION]
 *
 * DATA_DIR holds a store built by `docent ingest` with EMBEDDER.  Each line of
 * QUESTIONS is "question<TAB>page[|page...]"; a question is answered when a
 * returned passage's uri ends with "/page".  For dense only, BM25 only and
 * hybrid (RRF) it prints recall@5 (an answering page among the top 5
 * passages) and MRR@10 (1/rank of the first answering passage in the top 10,
 * 0 when none), then the latency of query embedding and of idx_search
 * (p50/p99 over every question and mode).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "index/index.h"
#include "ingest/ingest.h"
#include "llm/llm.h"

#define MAXQ 1000

static int answers(const char *uri, char *pages)
{
    char tmp[1024], *save = NULL;
    snprintf(tmp, sizeof tmp, "%s", pages);
    for (char *p = strtok_r(tmp, "|", &save); p; p = strtok_r(NULL, "|", &save)) {
        size_t ul = strlen(uri), pl = strlen(p);
        if (ul > pl && uri[ul - pl - 1] == '/' && !strcmp(uri + ul - pl, p)) return 1;
    }
    return 0;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double pct(double *v, int n, double p)
{
    qsort(v, (size_t)n, sizeof *v, cmp_d);
    int i = (int)ceil(p * n) - 1;
    return v[i < 0 ? 0 : i];
}

int main(int argc, char **argv)
{
    char name[256], sha[65], line[2048];
    char *qs[MAXQ], *pages[MAXQ];
    int nq = 0;
    doc_err e = {0};
    llm_model *m = NULL;
    idx_store *s = NULL;
    if (argc < 4) {
        fprintf(stderr, "usage: retrieval_bench DATA_DIR EMBEDDER QUESTIONS.tsv [COLLECTION]\n");
        return 2;
    }
    FILE *f = fopen(argv[3], "r");
    if (!f) return perror(argv[3]), 1;
    while (nq < MAXQ && fgets(line, sizeof line, f)) {
        char *tab = strchr(line, '\t');
        if (line[0] == '#' || !tab) continue;
        *tab = 0;
        tab[strcspn(tab + 1, "\r\n") + 1] = 0;
        qs[nq] = strdup(line), pages[nq] = strdup(tab + 1);
        nq++;
    }
    fclose(f);
    llm_opts lo = {0};
    if (llm_model_open(argv[2], &lo, &m, &e) || ing_embedder_identity(argv[2], name, sha, &e)) {
        fprintf(stderr, "%s\n", e.msg);
        return 1;
    }
    idx_opts io = {.data_dir = argv[1], .embedder_name = name, .embedder_sha256 = sha,
                   .dim = llm_embed_dim(m), .readonly = 1};
    if (idx_open(&io, &s, &e)) {
        fprintf(stderr, "%s\n", e.msg);
        return 1;
    }
    int64_t coll = 0;
    if (argc > 4) {
        idx_collection c;
        if (idx_collection_find(s, argv[4], &c)) return fprintf(stderr, "no collection %s\n", argv[4]), 1;
        coll = c.id;
    }
    idx_stats st;
    idx_stats_get(s, &st);
    printf("store: %lld documents, %lld chunks; %d questions\n", (long long)st.n_docs,
           (long long)st.n_chunks, nq);
    int dim = llm_embed_dim(m);
    float *qv = malloc((size_t)nq * (size_t)dim * sizeof *qv);
    double *t_embed = malloc((size_t)nq * sizeof(double)), *t_search = malloc(3 * (size_t)nq * sizeof(double));
    for (int i = 0; i < nq; i++) {
        double t = time_now();
        if (ing_embed_query(m, qs[i], qv + (size_t)i * (size_t)dim, &e)) return fprintf(stderr, "%s\n", e.msg), 1;
        t_embed[i] = time_now() - t;
    }
    static const char *modes[3] = {"dense", "bm25", "hybrid"};
    printf("%-8s %10s %8s\n", "mode", "recall@5", "MRR@10");
    int ns = 0;
    for (int mode = 0; mode < 3; mode++) {
        double rec = 0, mrr = 0;
        for (int i = 0; i < nq; i++) {
            idx_hit *h = NULL;
            int n = 0;
            idx_search_opts so = {.k = 10, .collections = coll ? &coll : NULL, .n_collections = coll ? 1 : 0};
            double t = time_now();
            if (idx_search(s, mode != 1 ? qv + (size_t)i * (size_t)dim : NULL, mode != 0 ? qs[i] : NULL, &so,
                           &h, &n))
                return fprintf(stderr, "search: %s\n", idx_errmsg(s)), 1;
            t_search[ns++] = time_now() - t;
            int first = 0;
            for (int j = 0; j < n && !first; j++)
                if (answers(h[j].uri, pages[i])) first = j + 1;
            if (first && first <= 5) rec += 1;
            if (first) mrr += 1.0 / first;
            if (getenv("VERBOSE"))
                printf("  %-6s rank %2d  %s  (top: %s)\n", modes[mode], first, qs[i], n ? h[0].uri : "-");
            idx_hits_free(&h, n);
        }
        printf("%-8s %10.3f %8.3f\n", modes[mode], rec / nq, mrr / nq);
    }
    printf("latency: query embedding p50 %.2f ms p99 %.2f ms; idx_search (k=10, 50+50 candidates) "
           "p50 %.2f ms p99 %.2f ms\n",
           pct(t_embed, nq, 0.5) * 1e3, pct(t_embed, nq, 0.99) * 1e3, pct(t_search, ns, 0.5) * 1e3,
           pct(t_search, ns, 0.99) * 1e3);
    for (int i = 0; i < nq; i++) free(qs[i]), free(pages[i]);
    free(qv), free(t_embed), free(t_search);
    idx_close(&s);
    llm_model_close(&m);
    return 0;
}
