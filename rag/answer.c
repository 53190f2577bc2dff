/*
 * answer.c - the query path (shared/DESIGN.md §6): one question in, one
 * filtered, cited answer out.
 *
 *   guard      the question (and its standalone rewrite) against the unsafe
 *              categories; a hit is answered from refusal.txt, nothing else runs
 *   rewrite    a follow-up in a conversation becomes a standalone question
 *              (rewrite.txt through the generator, checked, else the previous
 *              question is prepended)
 *   retrieve   embed the question, hybrid search in the caller's collections
 *   not found  no passage similar enough: not_found.txt, no generation
 *   budget     source blocks in rank order while they fit the prompt's token
 *              budget; the rest are reported as dropped
 *   prompt     system.txt + user.txt (with the source blocks) in the
 *              generator's chat template
 *   generate   streamed; the stream goes through the same filters as the
 *              final answer, released a word (or, near digits and symbols, a
 *              sentence) at a time
 *   cite       markers checked, sentences matched (words, then embeddings),
 *              snippets chosen for the cited sources
 *   filter     remote links stripped, PII and secrets redacted
 *
 * Passages with instruction-like text are flagged; with mask_injections their
 * offending sentences are replaced by a notice before the model sees them.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ingest/ingest.h"
#include "rag/rag.h"

#define MAX_K 32               /* rag_cite handles up to 32 sources */
#define SNIPPET_MAX 320        /* bytes of a citation's snippet */
#define REWRITE_MAX 400        /* bytes of a standalone rewrite */
#define HISTORY_TURNS 3        /* earlier turns shown to the rewriter */
#define HISTORY_ANSWER_MAX 600 /* bytes of each earlier answer shown to it */
#define BUDGET_MARGIN 8        /* tokens kept free for tokenization at block joins */
#define MATCH_VECS 16          /* chunk vectors compared per passage */
#define LOOP_MIN 24            /* bytes of a repeated sentence that ends generation */
#define MASK_NOTICE "[docent: instruction-like text withheld]"

void rag_opts_default(rag_opts *o)
{
    memset(o, 0, sizeof *o);
    o->k = 5;
    o->min_similarity = 0.38;
    o->prompt_tokens = 1024;
    o->answer_tokens = 256;
    o->temperature = 0.0f;
    o->repeat_penalty = 1.1f;
    o->seed = 42;
    o->min_support = 0.5;
    o->min_match_similarity = 0.6;
    o->redact = RAG_REDACT_ALL;
    o->refuse = RAG_UNSAFE_ALL;
    o->mask_injections = 1;
}

int rag_opts_from_config(const doc_config *c, rag_opts *o, doc_err *err)
{
    rag_opts_default(o);
    o->k = c->k;
    o->n_dense = c->n_dense;
    o->n_bm25 = c->n_bm25;
    o->rrf_k = c->rrf_k;
    o->min_similarity = c->min_similarity;
    o->prompt_tokens = c->prompt_tokens;
    o->answer_tokens = c->answer_tokens;
    o->temperature = (float)c->temperature;
    o->repeat_penalty = (float)c->repeat_penalty;
    o->seed = (uint64_t)c->seed;
    o->min_support = c->min_support;
    o->min_match_similarity = c->min_match_similarity;
    int rc;
    if ((rc = rag_redact_parse(c->redact, &o->redact, err))) return doc_errprefix(err, "[safety] redact"), rc;
    if ((rc = rag_unsafe_parse(c->refuse, &o->refuse, err))) return doc_errprefix(err, "[safety] refuse"), rc;
    if (!strcmp(c->injections, "mask")) o->mask_injections = 1;
    else if (!strcmp(c->injections, "flag")) o->mask_injections = 0;
    else return doc_errf(err, DOC_EINVAL, "[safety] injections: '%s' (use mask or flag)", c->injections);
    return DOC_OK;
}

/* ---- small helpers ------------------------------------------------------- */

static char *dup_str(const char *s)
{
    return strdup(s ? s : "");
}

static int ieq_at(const char *s, size_t n, size_t i, const char *w)
{
    size_t k = 0;
    for (; w[k]; k++) {
        if (i + k >= n) return 0;
        char c = s[i + k];
        if (c >= 'A' && c <= 'Z') c = (char)(c + 32);
        if (c != w[k]) return 0;
    }
    return 1;
}

int rag_said_not_found(const char *text, size_t len)
{
    /* the phrases a model uses for rule 3 of system.txt; matched in the first
     * sentences only, so an answer that later mentions a limit is not caught */
    static const char *const phrases[] = {
        "documents do not say", "documents don't say", "documents do not mention",
        "documents don't mention", "documents do not contain", "documents don't contain",
        "documents do not provide", "documents don't provide", "sources do not say",
        "sources don't say", "sources do not mention", "sources don't mention",
        "sources do not contain", "sources don't contain", "sources do not provide",
        "sources don't provide", "no information about", "no information on",
        "not mentioned in the", "not covered in the", "documents do not specify",
        "sources do not specify", "documents don't specify", "sources don't specify",
    };
    size_t n = len < 240 ? len : 240;
    for (size_t i = 0; i < n; i++)
        for (size_t p = 0; p < sizeof phrases / sizeof phrases[0]; p++)
            if (ieq_at(text, len, i, phrases[p])) return 1;
    return 0;
}

static double secs_since(double t0)
{
    return time_now() - t0;
}

/* ---- the filters (final answer and stream alike) ------------------------- */

/* html_tag: at raw[i] == '<', the length of an HTML tag a small model echoes
 * or invents (source wrappers, script, iframe, img, ...), else 0.  For script
 * and style the element's content up to its end tag goes too. */
static size_t html_tag(const char *raw, size_t n, size_t i)
{
    static const char *const tags[] = {"source", "script", "style", "iframe", "img", "object",
                                       "embed", "link", "meta", "form", "input", "video", "audio"};
    size_t j = i + 1 + (i + 1 < n && raw[i + 1] == '/');
    for (size_t t = 0; t < sizeof tags / sizeof tags[0]; t++) {
        size_t tl = strlen(tags[t]);
        if (!ieq_at(raw, n, j, tags[t])) continue;
        char after = j + tl < n ? raw[j + tl] : '>';
        if (after != ' ' && after != '>' && after != '/' && after != '\n' && after != '\t') continue;
        /* the tag ends at a '>' outside quoted attribute values (a source
         * tag's section="A > B" holds '>') */
        size_t end = j + tl;
        char quote = 0;
        for (; end < n; end++) {
            char ch = raw[end];
            if (quote) {
                if (ch == quote) quote = 0;
            } else if (ch == '"' || ch == '\'') {
                quote = ch;
            } else if (ch == '>') {
                break;
            }
        }
        end = end < n ? end + 1 : n;
        if (raw[i + 1] != '/' && (t == 1 || t == 2)) { /* script, style: to the end tag */
            for (size_t k = end; k < n; k++)
                if (raw[k] == '<' && k + 1 < n && raw[k + 1] == '/' && ieq_at(raw, n, k + 2, tags[t])) {
                    const char *g2 = memchr(raw + k, '>', n - k);
                    return (g2 ? (size_t)(g2 - raw) + 1 : n) - i;
                }
            return n - i;
        }
        return end - i;
    }
    return 0;
}

/* rag_strip_echo: copy raw without what a small model echoes from the prompt's
 * format or invents around it: HTML tags (html_tag) and the literal
 * placeholder marker "[n]". */
int rag_strip_echo(const char *raw, size_t n, buf *out)
{
    int rc = buf_append(out, "", 0);
    size_t i = 0, a = 0;
    while (rc == DOC_OK && i < n) {
        size_t skip = 0;
        if (raw[i] == '<') skip = html_tag(raw, n, i);
        else if (raw[i] == '[' && i + 2 < n && raw[i + 1] == 'n' && raw[i + 2] == ']') skip = 3;
        if (!skip) {
            i++;
            continue;
        }
        rc = buf_append(out, raw + a, i - a);
        i += skip;
        a = i;
    }
    if (rc == DOC_OK) rc = buf_append(out, raw + a, n - a);
    return rc;
}

/* output_filter: cleaned (markers already checked) with remote links
 * stripped and PII redacted, into out */
static int output_filter(const buf *cleaned, const rag_opts *o, buf *out, int *n_stripped,
                         int *n_redacted, doc_err *err)
{
    buf t;
    buf_init(&t, 0);
    buf_reset(out);
    int rc = rag_strip_remote(cleaned->data ? cleaned->data : "", cleaned->len, &t, n_stripped);
    if (rc == DOC_OK) rc = rag_redact(t.data ? t.data : "", t.len, o->redact, out, NULL, 0, n_redacted);
    if (rc == DOC_OK && !out->data) rc = buf_append(out, "", 0);
    buf_free(&t);
    if (rc) doc_errf(err, rc, "answer filter: %s", rc == DOC_ENOMEM ? "out of memory" : "output cap");
    return rc;
}

/* filter_text: what the final answer gets, for a prefix of the stream: echoed
 * prompt syntax removed, markers checked against n_given (text-less) sources,
 * then output_filter (cleaned is scratch) */
static int filter_text(const char *raw, size_t n, const rag_source *sources, int n_given,
                       const rag_opts *o, buf *cleaned, buf *out, doc_err *err)
{
    rag_citations c;
    buf t;
    buf_init(&t, 0);
    buf_reset(cleaned);
    int rc = rag_strip_echo(raw, n, &t);
    if (rc == DOC_OK) rc = rag_cite(t.data, t.len, sources, n_given, o->min_support, cleaned, &c, err);
    buf_free(&t);
    if (rc) return rc;
    rag_citations_free(&c);
    return output_filter(cleaned, o, out, NULL, NULL, err);
}

/* the stream: raw text accumulates; at release points the whole raw prefix is
 * filtered and the new part of the result handed on */
typedef struct stream {
    const rag_opts *o;
    const rag_source *empty;  /* n_given sources with no text: markers only */
    int n_given;
    llm_text_cb cb;
    void *ud;
    const volatile int *cancel;
    buf raw, cleaned, filtered, emitted;
    size_t word_start;        /* start of the word being read in raw */
    size_t scanned;           /* raw bytes looked at */
    int pending_sensitive;    /* a word since the last release held digits or symbols */
    int revised;              /* the filters changed text already handed on */
    int stopped;              /* the consumer asked to stop */
    size_t sent_start;        /* start of the sentence being read in raw */
    int looped;               /* generation stopped: a sentence repeated an earlier one */
    double deadline;          /* rag_request.deadline */
    int timed_out;            /* generation stopped at the deadline */
    double t0, first;         /* call start; first hand-over (0: none yet) */
} stream;

static int is_letter(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

/* sensitive: could this word be part of PII, a secret, a link or a marker? */
static int sensitive(const char *w, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)w[i];
        int plain = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c >= 0x80 || c == '.' ||
                    c == ',' || c == ';' || c == '!' || c == '?' || c == '\'' || c == '"' ||
                    c == '*' || c == '`' || c == ')';
        /* a hyphen between letters ("write-ahead") is plain; "-----BEGIN" is not */
        if (c == '-' && i > 0 && i + 1 < n && is_letter(w[i - 1]) && is_letter(w[i + 1])) plain = 1;
        if (!plain) return 1;
    }
    return 0;
}

/* emit: hand the part of filtered beyond what was emitted to the consumer */
static int emit(stream *s, const buf *filtered)
{
    if (s->revised || s->stopped) return DOC_OK;
    size_t have = s->emitted.len;
    if (filtered->len < have || (have && memcmp(filtered->data, s->emitted.data, have) != 0)) {
        s->revised = 1; /* the final answer will be shown whole */
        return DOC_OK;
    }
    if (filtered->len == have) return DOC_OK;
    int rc = buf_append(&s->emitted, filtered->data + have, filtered->len - have);
    if (rc) return rc;
    if (!s->first) s->first = secs_since(s->t0);
    if (s->cb && s->cb(s->ud, filtered->data + have, filtered->len - have)) s->stopped = 1;
    return DOC_OK;
}

static int release(stream *s, size_t upto)
{
    doc_err e = {0};
    int rc = filter_text(s->raw.data, upto, s->empty, s->n_given, s->o, &s->cleaned,
                         &s->filtered, &e);
    if (rc) return rc;
    s->pending_sensitive = 0;
    return emit(s, &s->filtered);
}

static int on_gen_text(void *ud, const char *text, size_t len)
{
    stream *s = ud;
    if (s->cancel && *s->cancel) return 1;
    if (s->deadline > 0 && time_now() > s->deadline) {
        s->timed_out = 1;
        return 1;
    }
    if (buf_append(&s->raw, text, len)) return 1;
    const char *r = s->raw.data;
    for (size_t i = s->scanned; i < s->raw.len; i++) {
        char c = r[i];
        if (c != ' ' && c != '\n' && c != '\t') continue;
        size_t ws = s->word_start, we = i;
        s->word_start = i + 1;
        if (we == ws) {
            if (c == '\n' && release(s, i + 1)) return 1;
            continue;
        }
        int sens = sensitive(r + ws, we - ws);
        if (sens) s->pending_sensitive = 1;
        char last = r[we - 1];
        int sentence_end = !sens && (last == '.' || last == '!' || last == '?');
        if (!s->pending_sensitive || c == '\n' || sentence_end) {
            if (release(s, i + 1)) return 1;
        }
        if (c == '\n' || last == '.' || last == '!' || last == '?') {
            /* a small model's loop: a whole sentence said before ends the answer */
            size_t a = s->sent_start, len = we - a;
            while (len && (r[a] == ' ' || r[a] == '\n')) a++, len--;
            s->sent_start = i + 1;
            if (len >= LOOP_MIN && memmem(r, a, r + a, len)) {
                s->looped = 1;
                s->scanned = s->raw.len;
                return 1;
            }
        }
    }
    s->scanned = s->raw.len;
    return s->stopped || (s->cancel && *s->cancel);
}

/* ---- passages ------------------------------------------------------------ */

/* mask_passage: text with each sentence that trips the injection guard
 * replaced by the notice; *masked counts them.  When the passage as a whole is
 * flagged but no single sentence is, all of it is withheld. */
static char *mask_passage(const char *text, int *masked)
{
    size_t n = strlen(text);
    buf b;
    buf_init(&b, 0);
    *masked = 0;
    size_t a = 0;
    int rc = DOC_OK;
    for (size_t i = 0; i <= n && rc == DOC_OK; i++) {
        int end = i == n || text[i] == '\n' ||
                  ((text[i] == '.' || text[i] == '!' || text[i] == '?') &&
                   (i + 1 == n || text[i + 1] == ' ' || text[i + 1] == '\n'));
        if (!end) continue;
        size_t e = i < n ? i + 1 : n;
        if (rag_guard_passage(text + a, e - a, NULL)) {
            (*masked)++;
            rc = buf_puts(&b, MASK_NOTICE);
            if (rc == DOC_OK && text[e - 1] == '\n') rc = buf_putc(&b, '\n');
            else if (rc == DOC_OK && e < n) rc = buf_putc(&b, ' ');
            if (e < n && text[e - 1] != '\n' && text[e] == ' ') e++;
        } else {
            rc = buf_append(&b, text + a, e - a);
        }
        if (i == n) break;
        a = e;
        i = e - 1;
    }
    if (rc == DOC_OK && *masked == 0) {
        buf_reset(&b);
        *masked = 1;
        rc = buf_puts(&b, MASK_NOTICE);
    }
    if (rc) {
        buf_free(&b);
        return NULL;
    }
    return buf_steal(&b, NULL);
}

static void passage_free(rag_passage *p)
{
    free(p->uri);
    free(p->title);
    free(p->heading);
    free(p->collection);
    free(p->text);
    free(p->snippet);
}

void rag_answer_free(rag_answer *a)
{
    if (!a) return;
    for (int i = 0; i < a->n_passages; i++) passage_free(&a->passages[i]);
    free(a->passages);
    free(a->text);
    free(a->query);
    memset(a, 0, sizeof *a);
}

static int take_hits(rag_answer *a, idx_hit *hits, int n, int mask)
{
    a->passages = calloc(n ? (size_t)n : 1, sizeof *a->passages);
    if (!a->passages) return DOC_ENOMEM;
    for (int i = 0; i < n; i++) {
        idx_hit *h = &hits[i];
        rag_passage *p = &a->passages[a->n_passages++];
        p->doc_id = h->doc_id;
        p->chunk_id = h->chunk_id;
        p->chunk_last = h->chunk_last;
        p->page = h->page;
        p->line_start = h->line_start;
        p->line_end = h->line_end;
        p->score = h->score;
        p->dense_score = h->dense_score;
        p->bm25_score = h->bm25_score;
        p->uri = dup_str(h->uri);
        p->title = dup_str(h->title);
        p->heading = dup_str(h->heading);
        p->collection = dup_str(h->collection);
        p->injection = rag_guard_passage(h->text, strlen(h->text), NULL);
        if (p->injection) a->n_flagged++;
        p->text = p->injection && mask ? mask_passage(h->text, &p->n_masked) : dup_str(h->text);
        if (!p->uri || !p->title || !p->heading || !p->collection || !p->text) return DOC_ENOMEM;
    }
    return DOC_OK;
}

/* ---- fixed answers (refusal, not found) --------------------------------- */

static int fixed_answer(const rag_env *env, const rag_request *rq, rag_answer *a,
                        const char *tmpl, const prompt_var *vars, int nv, double t0, doc_err *err)
{
    buf out, red;
    buf_init(&out, 0);
    buf_init(&red, 0);
    int rc = prompt_render(env->prompts, tmpl, vars, nv, &out, err);
    if (rc == DOC_OK && !out.data) rc = buf_append(&out, "", 0);
    if (rc == DOC_OK)
        rc = rag_redact(out.data, out.len, env->opts.redact, &red, NULL, 0, &a->n_redacted);
    if (rc == DOC_OK && !red.data) rc = buf_append(&red, "", 0);
    if (rc == DOC_OK) {
        a->t.first_text = secs_since(t0);
        if (rq->on_text) rq->on_text(rq->ud, red.data, red.len);
        a->text = buf_steal(&red, NULL);
        if (!a->text) rc = doc_errf(err, DOC_ENOMEM, "answer: out of memory");
    } else if (rc != DOC_OK && !err->msg[0]) {
        doc_errf(err, rc, "answer: %s template failed", tmpl);
    }
    buf_free(&out);
    buf_free(&red);
    return rc;
}

/* ---- the follow-up rewrite ----------------------------------------------- */

static int rewrite_cb(void *ud, const char *text, size_t len)
{
    buf *b = ud;
    return buf_append(b, text, len) != DOC_OK;
}

/* rewrite: the standalone form of rq->question given its history, into *out
 * (malloc'd).  The model's line is used when it is one plausible question;
 * otherwise the last question and the follow-up are joined, which keeps
 * retrieval on topic. */
/* use: tell the caller's lock hook that a shared object is taken (on=1) or
 * given back (on=0) */
static void use(const rag_env *env, int what, int on)
{
    if (env->lock) env->lock(env->lock_ud, what, on);
}

static int rewrite(const rag_env *env, const rag_request *rq, char **out, doc_err *err)
{
    buf hist, msg, prompt, gen;
    buf_init(&hist, 64 * 1024);
    buf_init(&msg, 0);
    buf_init(&prompt, 0);
    buf_init(&gen, 4096);
    int rc = DOC_OK;
    int first = rq->n_history > HISTORY_TURNS ? rq->n_history - HISTORY_TURNS : 0;
    for (int i = first; i < rq->n_history && rc == DOC_OK; i++) {
        const char *q = rq->history[i].question ? rq->history[i].question : "";
        const char *ans = rq->history[i].answer ? rq->history[i].answer : "";
        size_t al = strlen(ans);
        if (al > HISTORY_ANSWER_MAX) {
            al = HISTORY_ANSWER_MAX;
            while (al > 0 && ((unsigned char)ans[al] & 0xC0) == 0x80) al--;
        }
        rc = buf_printf(&hist, "User: %s\nAssistant: %.*s\n", q, (int)al, ans);
    }
    if (rc == DOC_OK && env->generator) {
        use(env, RAG_USE_GENERATOR, 1);
        prompt_var v[] = {{"history", hist.data ? hist.data : ""}, {"question", rq->question}};
        rc = prompt_render(env->prompts, "rewrite", v, 2, &msg, err);
        llm_chat_msg m[] = {{"user", msg.data ? msg.data : ""}};
        llm_sampling s;
        llm_sampling_default(&s);
        s.max_tokens = 64;
        const char *stop[] = {"\n"};
        s.stop = stop;
        s.n_stop = 1;
        llm_gen_stats st;
        if (rc == DOC_OK) rc = llm_generate_chat(env->generator, m, 1, &s, rewrite_cb, &gen, &st, err);
        use(env, RAG_USE_GENERATOR, 0);
    }
    if (rc) goto done;
    /* the model's line: trimmed, one question, not a refusal to answer */
    const char *g = gen.data ? gen.data : "";
    while (*g == ' ' || *g == '"') g++;
    size_t gl = strlen(g);
    while (gl && (g[gl - 1] == ' ' || g[gl - 1] == '"' || g[gl - 1] == '\r')) gl--;
    static const char *const prefixes[] = {"standalone question:", "rewritten question:",
                                           "question:"};
    for (size_t k = 0; k < sizeof prefixes / sizeof prefixes[0]; k++)
        if (ieq_at(g, gl, 0, prefixes[k])) {
            size_t pl = strlen(prefixes[k]);
            g += pl;
            gl -= pl;
            while (gl && *g == ' ') g++, gl--;
        }
    /* a question, not an answer: ends with '?', not much longer than what it
     * rewrites */
    const char *prev = rq->history[rq->n_history - 1].question;
    size_t limit = 2 * (strlen(rq->question) + (prev ? strlen(prev) : 0)) + 40;
    if (gl >= 8 && gl <= REWRITE_MAX && gl <= limit && g[gl - 1] == '?' && utf8_valid(g, gl) &&
        !rag_said_not_found(g, gl)) {
        *out = strndup(g, gl);
    } else {
        buf j;
        buf_init(&j, 0);
        rc = buf_printf(&j, "%s %s", prev ? prev : "", rq->question);
        *out = rc ? NULL : buf_steal(&j, NULL);
        buf_free(&j);
    }
    if (!*out) rc = doc_errf(err, DOC_ENOMEM, "rewrite: out of memory");
done:
    buf_free(&hist);
    buf_free(&msg);
    buf_free(&prompt);
    buf_free(&gen);
    return rc;
}

/* ---- citations ----------------------------------------------------------- */

static double dot(const float *a, const float *b, int n)
{
    double s = 0;
    for (int i = 0; i < n; i++) s += (double)a[i] * b[i];
    return s;
}

/* match_by_embedding: sentences the words did not tie to a source are
 * compared, by embedding, with the stored vectors of the given passages. */
static int match_by_embedding(const rag_env *env, rag_passage **given, int n_given,
                              const char *text, rag_citations *c, doc_err *err)
{
    int dim = llm_embed_dim(env->embedder);
    float *vecs = NULL, *q = malloc((size_t)dim * sizeof *q);
    int *nv = calloc((size_t)n_given + 1, sizeof *nv), rc = DOC_OK;
    if (!q || !nv) {
        rc = doc_errf(err, DOC_ENOMEM, "cite: out of memory");
        goto done;
    }
    int loaded = 0;
    for (int i = 0; i < c->n_sentences; i++) {
        rag_sentence *r = &c->sentences[i];
        if (!r->unsupported) continue;
        if (!loaded) {
            vecs = malloc((size_t)n_given * MATCH_VECS * dim * sizeof *vecs);
            if (!vecs) {
                rc = doc_errf(err, DOC_ENOMEM, "cite: out of memory");
                goto done;
            }
            for (int k = 0; k < n_given; k++) {
                use(env, RAG_USE_STORE, 1);
                int got = idx_passage_vecs(env->store, given[k]->chunk_id, given[k]->chunk_last,
                                           vecs + (size_t)k * MATCH_VECS * dim, MATCH_VECS);
                use(env, RAG_USE_STORE, 0);
                nv[k] = got > 0 ? got : 0;
            }
            loaded = 1;
        }
        char *sent = strndup(text + r->off, r->len);
        if (!sent) {
            rc = doc_errf(err, DOC_ENOMEM, "cite: out of memory");
            goto done;
        }
        use(env, RAG_USE_EMBEDDER, 1);
        rc = ing_embed_query(env->embedder, sent, q, err);
        use(env, RAG_USE_EMBEDDER, 0);
        free(sent);
        if (rc) goto done;
        int best = -1;
        double best_sim = -2;
        for (int k = 0; k < n_given; k++)
            for (int v = 0; v < nv[k]; v++) {
                double sim = dot(q, vecs + ((size_t)k * MATCH_VECS + v) * dim, dim);
                if (sim > best_sim) best_sim = sim, best = k;
            }
        if (best >= 0 && best_sim >= env->opts.min_match_similarity) {
            r->matched = best + 1;
            r->unsupported = 0;
            c->used |= 1u << best;
            c->n_unsupported--;
        }
    }
done:
    free(q);
    free(vecs);
    free(nv);
    return rc;
}

/* snippets: for each cited source, the part that supports the sentences
 * citing (or matched to) it, redacted */
static int snippets(const rag_env *env, rag_passage **given, int n_given, const char *text,
                    const rag_citations *c)
{
    buf claim, red;
    buf_init(&claim, 0);
    buf_init(&red, 0);
    int rc = DOC_OK;
    for (int k = 0; k < n_given && rc == DOC_OK; k++) {
        if (!(c->used >> k & 1u)) continue;
        given[k]->cited = 1;
        buf_reset(&claim);
        for (int i = 0; i < c->n_sentences && rc == DOC_OK; i++) {
            const rag_sentence *r = &c->sentences[i];
            if ((r->cited >> k & 1u) || r->matched == k + 1) {
                rc = buf_append(&claim, text + r->off, r->len);
                if (rc == DOC_OK) rc = buf_putc(&claim, ' ');
            }
        }
        size_t off, len;
        const char *src = given[k]->text;
        if (rc == DOC_OK)
            rc = rag_snippet(src, strlen(src), claim.data ? claim.data : "", claim.len,
                             SNIPPET_MAX, &off, &len);
        buf_reset(&red);
        if (rc == DOC_OK) rc = rag_redact(src + off, len, env->opts.redact, &red, NULL, 0, NULL);
        if (rc == DOC_OK && !red.data) rc = buf_append(&red, "", 0);
        if (rc == DOC_OK) given[k]->snippet = buf_steal(&red, NULL);
    }
    buf_free(&claim);
    buf_free(&red);
    return rc;
}

/* ---- the path ------------------------------------------------------------ */

static int count_tokens(llm_model *m, const char *text, int *n, doc_err *err)
{
    return llm_count_tokens(m, text, strlen(text), n, err);
}

int rag_answer_question(const rag_env *env, const rag_request *rq, rag_answer *a, doc_err *err)
{
    double t0 = time_now(), t;
    memset(a, 0, sizeof *a);
    doc_err scratch;
    if (!err) err = &scratch;
    err->rc = 0;
    err->msg[0] = 0;
    if (!env || !env->store || !env->embedder || !env->prompts || !rq)
        return doc_errf(err, DOC_EINVAL, "answer: missing store, embedder or prompts");
    const rag_opts *o = &env->opts;
    const char *question = rq->question ? rq->question : "";
    size_t ql = strlen(question);
    while (ql && (question[ql - 1] == ' ' || question[ql - 1] == '\n')) ql--;
    while (ql && (*question == ' ' || *question == '\n')) question++, ql--;
    if (!ql) return doc_errf(err, DOC_EINVAL, "question: empty");
    if (ql > RAG_QUESTION_MAX)
        return doc_errf(err, DOC_EINVAL, "question: %zu bytes (at most %d)", ql, RAG_QUESTION_MAX);
    if (!utf8_valid(question, ql)) return doc_errf(err, DOC_EINVAL, "question: not valid UTF-8");
    if (!rq->retrieve_only && !env->generator)
        return doc_errf(err, DOC_EINVAL, "answer: no generator model");

    int rc = DOC_OK, k = rq->k > 0 ? rq->k : o->k > 0 ? o->k : 5;
    if (k > MAX_K) k = MAX_K;
    char *q = strndup(question, ql);
    idx_hit *hits = NULL;
    int n_hits = 0, gen_held = 0;
    float *qvec = NULL;
    rag_passage **given = NULL;
    rag_source *srcs = NULL;
    rag_citations cit = {0};
    stream s = {0};
    buf blocks, block, sys, user, prompt, cleaned, final;
    buf_init(&blocks, 0);
    buf_init(&block, 0);
    buf_init(&sys, 0);
    buf_init(&user, 0);
    buf_init(&prompt, 0);
    buf_init(&cleaned, 0);
    buf_init(&final, 0);
    buf_init(&s.raw, 1 << 20);
    buf_init(&s.cleaned, 0);
    buf_init(&s.filtered, 0);
    buf_init(&s.emitted, 0);
    if (!q) {
        rc = doc_errf(err, DOC_ENOMEM, "answer: out of memory");
        goto done;
    }

    /* 1. guard */
    t = time_now();
    unsigned cat = rag_guard_request(q, o->refuse, NULL);
    a->t.guard = secs_since(t);
    if (!cat && rq->n_history > 0 && rq->history) {
        t = time_now();
        char *standalone = NULL;
        if ((rc = rewrite(env, rq, &standalone, err))) goto done;
        a->t.rewrite = secs_since(t);
        free(q);
        q = standalone;
        cat = rag_guard_request(q, o->refuse, NULL);
    }
    if (!(a->query = strdup(q))) {
        rc = doc_errf(err, DOC_ENOMEM, "answer: out of memory");
        goto done;
    }
    if (cat) {
        a->refused = 1;
        snprintf(a->refusal_category, sizeof a->refusal_category, "%s", rag_unsafe_name(cat));
        prompt_var v[] = {{"category", rag_unsafe_name(cat)}, {"question", q}};
        rc = fixed_answer(env, rq, a, "refusal", v, 2, t0, err);
        goto done;
    }
    if (rq->cancel && *rq->cancel) {
        rc = doc_errf(err, DOC_ECANCELLED, "answer: cancelled");
        goto done;
    }

    /* 2. retrieve */
    t = time_now();
    int dim = llm_embed_dim(env->embedder);
    if (!(qvec = malloc((size_t)dim * sizeof *qvec))) {
        rc = doc_errf(err, DOC_ENOMEM, "answer: out of memory");
        goto done;
    }
    use(env, RAG_USE_EMBEDDER, 1);
    rc = ing_embed_query(env->embedder, q, qvec, err);
    use(env, RAG_USE_EMBEDDER, 0);
    if (rc) goto done;
    a->t.embed = secs_since(t);
    t = time_now();
    idx_search_opts so = {.k = k, .n_dense = o->n_dense, .n_bm25 = o->n_bm25, .rrf_k = o->rrf_k,
                          .collections = rq->collections, .n_collections = rq->n_collections,
                          /* one chunk per source: merged runs of neighbours cost the
                           * budget several sources' worth of tokens */
                          .merge_adjacent = -1};
    use(env, RAG_USE_STORE, 1);
    rc = idx_search(env->store, qvec, q, &so, &hits, &n_hits);
    if (rc) doc_errf(err, rc, "retrieve: %s", idx_errmsg(env->store));
    use(env, RAG_USE_STORE, 0);
    if (rc) goto done;
    if ((rc = take_hits(a, hits, n_hits, o->mask_injections))) {
        doc_errf(err, rc, "answer: out of memory");
        goto done;
    }
    a->t.retrieve = secs_since(t);
    if (rq->retrieve_only) goto done;

    /* 3. not found: nothing retrieved, or nothing similar enough */
    double best = -2;
    for (int i = 0; i < a->n_passages; i++)
        if (!isnan(a->passages[i].dense_score) && a->passages[i].dense_score > best)
            best = a->passages[i].dense_score;
    if (best < o->min_similarity) {
        a->not_found = RAG_NOT_FOUND_WEAK;
        buf closest;
        buf_init(&closest, 0);
        for (int i = 0; i < a->n_passages && i < 3 && rc == DOC_OK; i++) {
            const rag_passage *p = &a->passages[i];
            rc = buf_printf(&closest, "- %s (%s%s%s)\n", p->title, p->uri, *p->heading ? "#" : "",
                            p->heading);
        }
        if (rc == DOC_OK && closest.len) closest.data[--closest.len] = 0;
        prompt_var v[] = {{"question", q},
                          {"closest", a->n_passages ? closest.data : "(none)"}};
        if (rc == DOC_OK) rc = fixed_answer(env, rq, a, "not_found", v, 2, t0, err);
        else doc_errf(err, rc, "answer: out of memory");
        buf_free(&closest);
        goto done;
    }

    /* 4. budget: the prompt without sources, then source blocks while they fit */
    use(env, RAG_USE_GENERATOR, 1);
    gen_held = 1;
    t = time_now();
    char date[16];
    time_t now = time(NULL);
    struct tm tmv;
    strftime(date, sizeof date, "%Y-%m-%d", gmtime_r(&now, &tmv));
    prompt_var sv[] = {{"date", date}};
    if ((rc = prompt_render(env->prompts, "system", sv, 1, &sys, err))) goto done;
    prompt_var uv0[] = {{"sources", ""}, {"question", q}};
    if ((rc = prompt_render(env->prompts, "user", uv0, 2, &user, err))) goto done;
    llm_chat_msg msgs[2] = {{"system", sys.data ? sys.data : ""}, {"user", user.data}};
    if ((rc = llm_chat_render(env->generator, msgs, 2, 1, &prompt, err))) goto done;
    int base_tokens, budget = o->prompt_tokens > 0 ? o->prompt_tokens : 2048;
    int answer_tokens = o->answer_tokens > 0 ? o->answer_tokens : 256;
    int ctx_room = llm_n_ctx(env->generator) - answer_tokens;
    if (budget > ctx_room) budget = ctx_room;
    if ((rc = count_tokens(env->generator, prompt.data, &base_tokens, err))) goto done;
    budget -= base_tokens + BUDGET_MARGIN;
    given = calloc((size_t)a->n_passages + 1, sizeof *given);
    srcs = calloc((size_t)a->n_passages + 1, sizeof *srcs);
    if (!given || !srcs) {
        rc = doc_errf(err, DOC_ENOMEM, "answer: out of memory");
        goto done;
    }
    for (int i = 0; i < a->n_passages; i++) {
        rag_passage *p = &a->passages[i];
        char nbuf[16], pbuf[16];
        snprintf(nbuf, sizeof nbuf, "%d", a->n_given + 1);
        snprintf(pbuf, sizeof pbuf, "%d", p->page);
        prompt_var bv[] = {{"n", nbuf},         {"title", p->title}, {"heading", p->heading},
                           {"uri", p->uri},     {"page", p->page > 0 ? pbuf : ""},
                           {"text", p->text}};
        buf_reset(&block);
        if ((rc = prompt_render(env->prompts, "source", bv, 6, &block, err))) goto done;
        if ((rc = buf_puts(&block, "\n\n"))) goto oom;
        if ((rc = count_tokens(env->generator, block.data, &p->n_tokens, err))) goto done;
        if (p->n_tokens > budget) {
            p->dropped = 1;
            continue;
        }
        budget -= p->n_tokens;
        p->n = ++a->n_given;
        given[p->n - 1] = p;
        srcs[p->n - 1].text = p->text;
        if ((rc = buf_append(&blocks, block.data, block.len))) goto oom;
    }
    if (!a->n_given) { /* not even the best passage fits: say so rather than guess */
        rc = doc_errf(err, DOC_ELIMIT,
                      "prompt: no source fits the token budget (prompt_tokens %d, the prompt "
                      "without sources takes %d)",
                      o->prompt_tokens, base_tokens);
        goto done;
    }
    while (blocks.len && blocks.data[blocks.len - 1] == '\n') blocks.data[--blocks.len] = 0;
    buf_reset(&user);
    buf_reset(&prompt);
    prompt_var uv[] = {{"sources", blocks.data}, {"question", q}};
    if ((rc = prompt_render(env->prompts, "user", uv, 2, &user, err))) goto done;
    msgs[1].content = user.data;
    a->t.prompt = secs_since(t);
    if (rq->on_sources) rq->on_sources(rq->ud, a->passages, a->n_passages);

    /* 5. generate, streaming through the filters */
    llm_sampling smp;
    llm_sampling_default(&smp);
    smp.temperature = o->temperature;
    if (o->temperature > 0) {
        smp.top_k = 40;
        smp.top_p = 0.95f;
    }
    smp.repeat_penalty = o->repeat_penalty >= 1 ? o->repeat_penalty : 1.0f;
    smp.repeat_last_n = 64;
    smp.seed = o->seed;
    smp.max_tokens = answer_tokens;
    s.o = o;
    s.n_given = a->n_given;
    s.cb = rq->on_text;
    s.ud = rq->ud;
    s.cancel = rq->cancel;
    s.deadline = rq->deadline;
    s.t0 = t0;
    rag_source *empty = calloc((size_t)a->n_given, sizeof *empty);
    if (!empty) goto oom;
    s.empty = empty;
    llm_gen_stats st = {0};
    rc = llm_generate_chat(env->generator, msgs, 2, &smp, on_gen_text, &s, &st, err);
    free(empty);
    s.empty = NULL;
    a->t.prefill = st.t_prompt;
    a->t.decode = st.t_gen;
    a->prompt_tokens = st.n_prompt;
    a->answer_tokens = st.n_gen;
    a->stop_reason = st.stop_reason;
    if (rc) goto done;
    int cancelled = (rq->cancel && *rq->cancel) || s.stopped;
    if (s.looped) a->stop_reason = RAG_STOP_REPETITION;
    if (s.timed_out) a->stop_reason = RAG_STOP_TIMEOUT;

    /* 6. citations */
    t = time_now();
    buf echo;
    buf_init(&echo, 0);
    if ((rc = rag_strip_echo(s.raw.data ? s.raw.data : "", s.raw.len, &echo))) goto oom;
    rc = rag_cite(echo.data, echo.len, srcs, a->n_given, o->min_support, &cleaned, &cit, err);
    buf_free(&echo);
    if (rc) goto done;
    if (cit.n_unsupported > 0 && (rc = match_by_embedding(env, given, a->n_given,
                                                          cleaned.data, &cit, err)))
        goto done;
    int anchored = 0;
    for (int i = 0; i < cit.n_sentences; i++)
        if (cit.sentences[i].cited || cit.sentences[i].matched) anchored = 1;
    int has_marker = 0;
    for (int i = 0; i < cit.n_sentences; i++)
        if (cit.sentences[i].cited) has_marker = 1;
    if (!has_marker && rag_said_not_found(cleaned.data, cleaned.len)) {
        a->not_found = RAG_NOT_FOUND_MODEL;
        cit.used = 0; /* a "the documents don't say" answer cites nothing */
        anchored = 0;
    }
    a->grounded = cit.n_unsupported == 0 && anchored;
    a->n_unsupported = cit.n_unsupported;
    a->n_invalid_markers = cit.n_invalid;
    if ((rc = snippets(env, given, a->n_given, cleaned.data, &cit))) goto oom;
    a->t.cite = secs_since(t);

    /* 7. filters: the final text (the stream's filter_text of the whole raw
     * text, whose marker pass is step 6's), and the rest of the stream */
    t = time_now();
    if ((rc = output_filter(&cleaned, o, &final, &a->n_stripped, &a->n_redacted, err))) goto done;
    if (!cancelled) {
        if ((rc = emit(&s, &final))) goto oom;
    }
    a->stream_revised = s.revised;
    a->t.first_text = s.first ? s.first : secs_since(t0);
    if (!(a->text = buf_steal(&final, NULL))) goto oom;
    a->t.filter = secs_since(t);
    if (cancelled) rc = doc_errf(err, DOC_ECANCELLED, "answer: cancelled");
    goto done;

oom:
    rc = doc_errf(err, DOC_ENOMEM, "answer: out of memory or over the output cap");
done:
    if (gen_held) use(env, RAG_USE_GENERATOR, 0);
    if (!a->text && rc == DOC_OK && rq->retrieve_only) a->text = strdup("");
    a->t.total = secs_since(t0);
    rag_citations_free(&cit);
    idx_hits_free(&hits, n_hits);
    free(qvec);
    free(given);
    free(srcs);
    free(q);
    buf_free(&blocks);
    buf_free(&block);
    buf_free(&sys);
    buf_free(&user);
    buf_free(&prompt);
    buf_free(&cleaned);
    buf_free(&final);
    buf_free(&s.raw);
    buf_free(&s.cleaned);
    buf_free(&s.filtered);
    buf_free(&s.emitted);
    if (rc && rc != DOC_ECANCELLED) {
        rag_answer_free(a);
    }
    return rc;
}

const char *rag_stop_name(int r)
{
    switch (r) {
    case LLM_STOP_EOS: return "end";
    case LLM_STOP_LENGTH: return "length";
    case LLM_STOP_STRING: return "stop string";
    case LLM_STOP_CANCELLED: return "cancelled";
    case LLM_STOP_CONTEXT: return "context full";
    case LLM_STOP_INCOMPLETE: return "incomplete"; /* a remote stream cut mid-answer */
    case RAG_STOP_REPETITION: return "repetition";
    case RAG_STOP_TIMEOUT: return "timeout";
    }
    return "none";
}
