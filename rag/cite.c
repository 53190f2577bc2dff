/*
 * cite.c - the citation checker: validates the [n] markers of a generated
 * answer against the sources that were actually in the prompt, and measures
 * how well each sentence is supported by them.
 *
 * Three passes, each linear:
 *   1. clean: copy the answer into out, rewriting every numeric bracket
 *      ("[1]", "[1, 2]", "[1,2]", "[1-3]") to normalised "[1][2]..." form and
 *      removing invalid ones ("[0]", "[]", "[7]" with 3 sources) together with
 *      one adjacent space.  Brackets holding anything but digits, commas,
 *      dashes and spaces ("[see above]", Markdown links "[x](u)") and text in
 *      backtick code spans are copied untouched.  The position and source bits
 *      of each kept marker in out are recorded.
 *   2. split: out is cut into sentences at ". ", "! ", "? ", CJK 。！？,
 *      blank lines and newlines that start a list item or heading; markers
 *      right after a sentence end ("table. [2] Next") belong to the sentence
 *      before.  "e.g.", "i.e.", decimals and version numbers do not split.
 *   3. support: each source's content words (ASCII alphanumeric or non-ASCII
 *      runs of >= 3 bytes, lower-cased, minus a stop list) go once into an
 *      open-addressing set of hash64 values; a sentence's support by a source
 *      is the share of its content words found in that set.
 *
 * Pure and thread-safe: all state lives in the call.
 */
#include <stdlib.h>
#include <string.h>

#include "rag/rag.h"

#define MAX_SOURCES 32
#define MAX_BRACKET 64 /* longest bracket body looked at as a marker */
#define MAX_WORD 64    /* longer words are hashed as written (no folding) */
#define SHORT_WORDS 4  /* sentences with fewer content words need no support */

/* ---- words --------------------------------------------------------------- */

/* stop words of >= 3 letters (shorter words never count) */
static const char *const stop_words[] = {
    "the", "and", "for", "are", "but", "not", "you", "all", "any", "can", "had", "has", "have",
    "her", "his", "was", "one", "our", "out", "this", "that", "with", "from", "they", "them",
    "their", "there", "then", "than", "these", "those", "will", "would", "what", "which", "when",
    "where", "who", "whom", "why", "how", "into", "also", "been", "being", "were", "its", "such",
    "only", "other", "some", "more", "most", "very", "each", "does", "did", "your", "about",
    "after", "before", "both", "same", "should", "could", "may", "might", "must", "shall",
    "over", "under", "again", "once", "here", "own", "just", "too", "nor", "off", "because",
    "until", "while", "itself", "yes", "she", "him", "use", "used", "using", "via", "per",
    "instead", "many", "much", "few", "get", "gets", "like", "make", "makes", "let", "lets",
};

static int is_word_byte(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c >= 0x80;
}

static int is_alpha(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static int is_stop(const char *w, size_t n)
{
    if (n > 8) return 0;
    for (size_t i = 0; i < sizeof stop_words / sizeof stop_words[0]; i++)
        if (strlen(stop_words[i]) == n && !memcmp(stop_words[i], w, n)) return 1;
    return 0;
}

/* next_word: the hash of the next content word of s[*pos..n) (never 0), or 0
 * at the end; *pos moves past it. */
static uint64_t next_word(const char *s, size_t n, size_t *pos)
{
    size_t i = *pos;
    while (i < n) {
        while (i < n && !is_word_byte((unsigned char)s[i])) i++;
        size_t a = i;
        while (i < n && is_word_byte((unsigned char)s[i])) i++;
        size_t len = i - a;
        if (len < 3) continue;
        uint64_t h;
        if (len <= MAX_WORD) {
            char w[MAX_WORD];
            for (size_t k = 0; k < len; k++) {
                unsigned char c = (unsigned char)s[a + k];
                w[k] = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
            }
            if (is_stop(w, len)) continue;
            h = hash64(w, len);
        } else {
            h = hash64(s + a, len);
        }
        *pos = i;
        return h ? h : 1;
    }
    *pos = n;
    return 0;
}

/* word_set: open addressing over word hashes; 0 marks an empty slot */
typedef struct word_set {
    uint64_t *slot;
    size_t mask;
} word_set;

static int set_build(word_set *ws, const char *s, size_t n)
{
    size_t count = 0, pos = 0;
    while (next_word(s, n, &pos)) count++;
    size_t cap = 16;
    while (cap < 2 * count) cap *= 2;
    ws->slot = calloc(cap, sizeof *ws->slot);
    if (!ws->slot) return DOC_ENOMEM;
    ws->mask = cap - 1;
    pos = 0;
    for (uint64_t h; (h = next_word(s, n, &pos));) {
        size_t k = (size_t)h & ws->mask;
        while (ws->slot[k] && ws->slot[k] != h) k = (k + 1) & ws->mask;
        ws->slot[k] = h;
    }
    return DOC_OK;
}

static int set_has(const word_set *ws, uint64_t h)
{
    for (size_t k = (size_t)h & ws->mask; ws->slot[k]; k = (k + 1) & ws->mask)
        if (ws->slot[k] == h) return 1;
    return 0;
}

/* ---- pass 1: markers ---------------------------------------------------- */

typedef struct marker {
    size_t off, end; /* in out */
    unsigned bits;
} marker;

typedef struct cite_state {
    marker *mk;
    size_t n_mk, cap_mk;
    rag_sentence *sn;
    size_t cap_sn;
} cite_state;

static int grow(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap) return DOC_OK;
    size_t nc = *cap ? *cap * 2 : 16;
    while (nc < need) nc *= 2;
    void *q = realloc(*p, nc * elem);
    if (!q) return DOC_ENOMEM;
    *p = q;
    *cap = nc;
    return DOC_OK;
}

/*
 * parse_bracket: body b[0..n) of a bracket whose characters are all digits,
 * commas, dashes or spaces.  Sets *bits to the valid sources named (in the
 * order kept in order[], *n_order of them) and returns the number of invalid
 * items (a number out of range, a malformed or out-of-range range, an empty
 * body or item).
 */
static int parse_bracket(const char *b, size_t n, int n_sources, int *order, int *n_order,
                         unsigned *bits)
{
    int bad = 0;
    size_t i = 0;
    *n_order = 0;
    *bits = 0;
    for (;;) {
        while (i < n && b[i] == ' ') i++;
        size_t a = i;
        while (i < n && b[i] != ',') i++;
        size_t e = i;
        while (e > a && b[e - 1] == ' ') e--;
        /* item b[a..e): N or N-M */
        long v[2] = {0, 0};
        int nv = 0, ok = e > a;
        size_t k = a;
        while (ok && k < e) {
            if (nv == 2) { ok = 0; break; }
            while (k < e && b[k] == ' ') k++;
            size_t d = k;
            while (k < e && b[k] >= '0' && b[k] <= '9') {
                if (v[nv] < 1000) v[nv] = v[nv] * 10 + (b[k] - '0');
                k++;
            }
            if (k == d) { ok = 0; break; }
            nv++;
            while (k < e && b[k] == ' ') k++;
            if (k < e) {
                if (b[k] != '-' || nv == 2) { ok = 0; break; }
                k++;
                if (k == e) ok = 0;
            }
        }
        long lo = v[0], hi = nv == 2 ? v[1] : v[0];
        if (!ok || lo < 1 || hi > n_sources || lo > hi) {
            bad++;
        } else {
            for (long x = lo; x <= hi; x++) {
                unsigned bit = 1u << (x - 1);
                if (*bits & bit) continue;
                *bits |= bit;
                order[(*n_order)++] = (int)x;
            }
        }
        if (i >= n) break;
        i++; /* past ',' */
    }
    return bad;
}

/* clean: pass 1 (see the file header); *n_invalid counts removed items */
static int clean(const char *s, size_t n, int n_sources, buf *out, cite_state *st, int *n_invalid)
{
    int in_code = 0, rc;
    size_t i = 0;
    while (i < n) {
        char c = s[i];
        if (c == '`') in_code = !in_code;
        if (c != '[' || in_code || (i > 0 && s[i - 1] == '!')) {
            size_t a = i++;
            while (i < n && s[i] != '[' && s[i] != '`') i++;
            if ((rc = buf_append(out, s + a, i - a))) return rc;
            continue;
        }
        /* a bracket: is its body numeric-ish and closed? */
        size_t j = i + 1;
        while (j < n && j - i - 1 <= MAX_BRACKET &&
               ((s[j] >= '0' && s[j] <= '9') || s[j] == ',' || s[j] == '-' || s[j] == ' '))
            j++;
        if (j >= n || s[j] != ']' || j - i - 1 > MAX_BRACKET ||
            (j + 1 < n && (s[j + 1] == '(' || s[j + 1] == ':'))) {
            if ((rc = buf_putc(out, '['))) return rc;
            i++;
            continue;
        }
        int order[MAX_SOURCES], n_order;
        unsigned bits;
        *n_invalid += parse_bracket(s + i + 1, j - i - 1, n_sources, order, &n_order, &bits);
        i = j + 1;
        if (!n_order) {
            /* removed: take one adjacent space with it */
            if (out->len && out->data[out->len - 1] == ' ')
                out->data[--out->len] = '\0';
            else if (i < n && s[i] == ' ' && (!out->len || out->data[out->len - 1] == '\n'))
                i++;
            continue;
        }
        if ((rc = grow((void **)&st->mk, &st->cap_mk, st->n_mk + 1, sizeof *st->mk))) return rc;
        marker *m = &st->mk[st->n_mk];
        m->off = out->len;
        m->bits = bits;
        for (int k = 0; k < n_order; k++)
            if ((rc = buf_printf(out, "[%d]", order[k]))) return rc;
        m->end = out->len;
        st->n_mk++;
    }
    return DOC_OK;
}

/* ---- pass 2: sentences --------------------------------------------------- */

/* abbrev: is the '.' at s[i] part of "e.g." / "i.e." style abbreviations? */
static int abbrev(const char *s, size_t start, size_t i)
{
    /* "e.g." / "i.e.": letter, period, letter, period, the first letter alone */
    if (i >= start + 3 && s[i - 2] == '.' && is_alpha(s[i - 1]) && is_alpha(s[i - 3]) &&
        (i == start + 3 || !is_word_byte((unsigned char)s[i - 4])))
        return 1;
    /* common short abbreviations */
    static const char *const abbr[] = {"vs", "cf", "approx", "fig", "mr", "dr"};
    size_t a = i;
    while (a > start && is_word_byte((unsigned char)s[a - 1])) a--;
    size_t len = i - a;
    for (size_t k = 0; k < sizeof abbr / sizeof abbr[0]; k++) {
        if (strlen(abbr[k]) != len) continue;
        size_t m = 0;
        while (m < len && (s[a + m] | 0x20) == abbr[k][m]) m++;
        if (m == len) return 1;
    }
    return 0;
}

static int is_cjk_end(const char *s, size_t n, size_t i)
{
    if (i + 3 > n) return 0;
    const unsigned char *u = (const unsigned char *)s + i;
    return (u[0] == 0xE3 && u[1] == 0x80 && u[2] == 0x82) ||  /* 。 */
           (u[0] == 0xEF && u[1] == 0xBC && (u[2] == 0x81 || u[2] == 0x9F)); /* ！？ */
}

/* line_break: does the newline at s[i] end a paragraph or precede a list
 * item or heading? */
static int line_break(const char *s, size_t n, size_t i)
{
    size_t k = i + 1;
    while (k < n && (s[k] == ' ' || s[k] == '\t' || s[k] == '\r')) k++;
    if (k >= n || s[k] == '\n' || s[k] == '#') return 1;
    if ((s[k] == '-' || s[k] == '*' || s[k] == '+') && k + 1 < n && s[k + 1] == ' ') return 1;
    size_t d = k;
    while (k < n && s[k] >= '0' && s[k] <= '9') k++;
    return k > d && k + 1 < n && (s[k] == '.' || s[k] == ')') && s[k + 1] == ' ';
}

/* absorb: markers (and the spaces before them) starting at e; returns the new end */
static size_t absorb(const char *s, size_t n, const cite_state *st, size_t m, size_t e)
{
    for (;;) {
        size_t k = e;
        while (k < n && s[k] == ' ') k++;
        while (m < st->n_mk && st->mk[m].off < k) m++;
        if (m < st->n_mk && st->mk[m].off == k) {
            e = st->mk[m].end;
            continue;
        }
        return e;
    }
}

static int add_sentence(const char *s, size_t a, size_t e, cite_state *st, rag_citations *c)
{
    while (a < e && (s[a] == ' ' || s[a] == '\t' || s[a] == '\n' || s[a] == '\r')) a++;
    while (e > a && (s[e - 1] == ' ' || s[e - 1] == '\t' || s[e - 1] == '\n' || s[e - 1] == '\r'))
        e--;
    if (e == a) return DOC_OK;
    int rc = grow((void **)&st->sn, &st->cap_sn, (size_t)c->n_sentences + 1, sizeof *st->sn);
    if (rc) return rc;
    c->sentences = st->sn;
    rag_sentence *r = &st->sn[c->n_sentences++];
    memset(r, 0, sizeof *r);
    r->off = a;
    r->len = e - a;
    return DOC_OK;
}

static int split(const char *s, size_t n, cite_state *st, rag_citations *c)
{
    size_t start = 0, i = 0, m = 0;
    int rc;
    while (i < n) {
        while (m < st->n_mk && st->mk[m].off < i) m++;
        size_t e = 0;
        int cut = 0;
        char ch = s[i];
        if ((ch == '.' || ch == '!' || ch == '?') && !(ch == '.' && abbrev(s, start, i))) {
            size_t j = i + 1;
            while (j < n && (s[j] == '"' || s[j] == '\'' || s[j] == ')')) j++;
            e = absorb(s, n, st, m, j);
            cut = e >= n || s[e] == ' ' || s[e] == '\n' || s[e] == '\t' || s[e] == '\r' ||
                  (e > j && s[e] != '.');
        } else if (is_cjk_end(s, n, i)) {
            e = absorb(s, n, st, m, i + 3);
            cut = 1;
        } else if (ch == '\n' && line_break(s, n, i)) {
            e = i;
            cut = 1;
        }
        if (!cut) {
            i++;
            continue;
        }
        if ((rc = add_sentence(s, start, e, st, c))) return rc;
        start = e;
        i = e > i ? e : i + 1;
    }
    return add_sentence(s, start, n, st, c);
}

/* ---- pass 3: support ----------------------------------------------------- */

/* score: support of sentence r by every source into sup[] (n_sources of them) */
static void score(const char *s, const rag_sentence *r, const word_set *sets, int n_sources,
                  double *sup, int *n_words)
{
    int hits[MAX_SOURCES] = {0}, total = 0;
    size_t pos = r->off, end = r->off + r->len;
    for (uint64_t h; (h = next_word(s, end, &pos));) {
        total++;
        for (int k = 0; k < n_sources; k++) hits[k] += set_has(&sets[k], h);
    }
    for (int k = 0; k < n_sources; k++) sup[k] = total ? (double)hits[k] / total : 0.0;
    *n_words = total;
}

/* ---- the entry points ---------------------------------------------------- */

int rag_cite(const char *answer, size_t len, const rag_source *sources, int n_sources,
             double min_support, buf *out, rag_citations *c, doc_err *err)
{
    if (c) memset(c, 0, sizeof *c);
    if (!c || !out || (!answer && len) || (!sources && n_sources > 0))
        return doc_errf(err, DOC_EINVAL, "cite: missing argument");
    if (n_sources < 0 || n_sources > MAX_SOURCES)
        return doc_errf(err, DOC_EINVAL, "cite: %d sources (0..%d allowed)", n_sources,
                        MAX_SOURCES);
    cite_state st = {0};
    word_set sets[MAX_SOURCES] = {{0}};
    int rc;
    size_t base = out->len;

    /* allocate now so out is a NUL-terminated string even for an empty answer */
    if ((rc = buf_append(out, "", 0))) goto done;
    if ((rc = clean(answer ? answer : "", len, n_sources, out, &st, &c->n_invalid))) goto done;
    /* markers were recorded as absolute offsets in out; work on our part only */
    const char *s = out->data + base;
    size_t n = out->len - base;
    for (size_t k = 0; k < st.n_mk; k++) {
        st.mk[k].off -= base;
        st.mk[k].end -= base;
    }
    if ((rc = split(s, n, &st, c))) goto done;
    for (int k = 0; k < n_sources; k++) {
        const char *t = sources[k].text ? sources[k].text : "";
        if ((rc = set_build(&sets[k], t, strlen(t)))) goto done;
    }

    size_t m = 0;
    int anchored = 0;
    for (int i = 0; i < c->n_sentences; i++) {
        rag_sentence *r = &c->sentences[i];
        while (m < st.n_mk && st.mk[m].off < r->off) m++;
        for (; m < st.n_mk && st.mk[m].off < r->off + r->len; m++) r->cited |= st.mk[m].bits;
        double sup[MAX_SOURCES];
        int words, best = -1;
        score(s, r, sets, n_sources, sup, &words);
        for (int k = 0; k < n_sources; k++)
            if ((!r->cited || (r->cited >> k & 1u)) && (best < 0 || sup[k] > sup[best])) best = k;
        r->support = best >= 0 ? sup[best] : 0.0;
        if (r->cited) {
            c->used |= r->cited;
            anchored = 1;
        } else if (words >= SHORT_WORDS) {
            if (best >= 0 && r->support >= min_support) {
                r->matched = best + 1;
                c->used |= 1u << best;
                anchored = 1;
            } else {
                r->unsupported = 1;
                c->n_unsupported++;
            }
        }
    }
    c->grounded = c->n_unsupported == 0 && anchored;
    rc = DOC_OK;
done:
    for (int k = 0; k < MAX_SOURCES; k++) free(sets[k].slot);
    free(st.mk);
    if (rc) {
        free(st.sn);
        memset(c, 0, sizeof *c);
        out->len = base; /* out is left as it was */
        if (out->data) out->data[base] = '\0';
        if (rc == DOC_ELIMIT) doc_errf(err, rc, "cite: answer exceeds the output cap");
        else if (rc == DOC_ENOMEM) doc_errf(err, rc, "cite: out of memory");
    }
    return rc;
}

int rag_snippet(const char *source, size_t n, const char *claim, size_t claim_len,
                size_t max_len, size_t *off, size_t *len)
{
    *off = *len = 0;
    if (!source || !n) return DOC_OK;
    word_set ws = {0};
    if (set_build(&ws, claim ? claim : "", claim ? claim_len : 0)) return DOC_ENOMEM;
    /* cut the source at ". ", "! ", "? " and newlines; score each piece by the
     * claim's content words it holds */
    size_t best_a = 0, best_e = 0, a = 0;
    int best = -1;
    for (size_t i = 0; i <= n; i++) {
        int end = i == n || source[i] == '\n' ||
                  ((source[i] == '.' || source[i] == '!' || source[i] == '?') && i + 1 < n &&
                   (source[i + 1] == ' ' || source[i + 1] == '\n'));
        if (!end) continue;
        size_t e = i < n && source[i] != '\n' ? i + 1 : i;
        size_t pos = a;
        int hits = 0;
        for (uint64_t h; (h = next_word(source, e, &pos));) hits += set_has(&ws, h);
        while (a < e && (source[a] == ' ' || source[a] == '\t')) a++;
        if (e > a && hits > best) {
            best = hits;
            best_a = a;
            best_e = e;
        }
        a = i + 1;
    }
    free(ws.slot);
    if (best < 0) return DOC_OK;
    /* grow a short best piece with what follows it, then cap at a word boundary */
    size_t e = best_e;
    if (e - best_a < max_len / 2 && e < n) {
        e = best_a + max_len / 2 < n ? best_a + max_len / 2 : n;
        while (e < n && e > best_e && source[e] != ' ' && source[e] != '\n') e--;
    }
    if (e - best_a > max_len) {
        e = best_a + max_len;
        while (e > best_a + max_len / 2 && source[e] != ' ') e--;
    }
    while (e < n && e > best_a && ((unsigned char)source[e] & 0xC0) == 0x80) e--; /* whole chars */
    while (e > best_a && (source[e - 1] == ' ' || source[e - 1] == '\n')) e--;
    *off = best_a;
    *len = e - best_a;
    return DOC_OK;
}

void rag_citations_free(rag_citations *c)
{
    if (!c) return;
    free(c->sentences);
    memset(c, 0, sizeof *c);
}
