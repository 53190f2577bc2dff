/*
 * chunk.c - structured text (ing_text) to token-budgeted chunks.
 *
 * Structure first.  Headings cut the document into sections (the heading path
 * is the stack of enclosing headings by level), and a change of page cuts a
 * section further; a run of non-heading blocks of one section on one page is a
 * "segment", and no chunk crosses a segment.  Within a segment the text is cut
 * into units, each counted once with the caller's count function:
 *
 *   - every block into sentences (CODE and TABLE blocks into lines); a
 *     sentence ends at . ! ? followed by whitespace (not after "e.g.", "Dr.",
 *     an initial, or before a lower-case word) or at 。！？;
 *   - a sentence over the budget into words (ASCII whitespace);
 *   - a word over the budget (CJK without spaces, a long URL) into pieces at
 *     UTF-8 character boundaries, each a prefix that fits within ~3% of the
 *     budget, found in a few counts of the piece itself (split_chars).
 *
 * A block's count is the sum of its units' counts.  Chunks are then packed
 * greedily: a block that fits the budget is kept whole (it goes to the next
 * chunk when the current one has no room for it); a block over the budget is
 * packed unit by unit.  Consecutive chunks of a segment overlap: the next chunk
 * starts with the previous chunk's last whole units (sentences) worth at most
 * min(overlap_tokens, max_tokens / 2), or, when its last sentence alone is
 * larger, its last words; the overlap shrinks when the next block needs room.
 *
 * Counting: units are joined by whitespace, so for tokenizers that split at
 * whitespace (WordPiece) a chunk's count is the sum of its parts.  The chunker
 * does not rely on it: a chunk made of several parts is counted once more on
 * its exact text, that count is n_tokens, and a chunk found over the budget
 * (a tokenizer whose count is not additive across the joins) drops its
 * overlap, then its last units, until it fits.  So n_tokens == count(chunk text) <= max_tokens always,
 * and the whole text is counted about twice.
 *
 * Invariants: a chunk's text t->text.data[off, off+len) begins and ends at a
 * UTF-8 character boundary and never with whitespace; it contains no heading;
 * each chunk holds at least one unit not in the previous chunk, so the loop
 * always advances.  The result depends only on the input (deterministic).
 * Each heading is cut to HEADING_CAP bytes in the path, so a hostile document
 * cannot make every chunk carry a huge heading.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "ingest/internal.h"

#define HEADING_CAP 256      /* bytes kept of one heading in a heading path */
#define MAX_LEVEL 6
#define MAX_BUDGET (1 << 20) /* max_tokens above this is refused */

/* unit: a sentence, line, word or word piece; text.data[off, off+len) */
typedef struct unit {
    size_t off, len;
    int tok;    /* count of the unit's own text */
    int blk;    /* index of its block in t->blocks */
    int glued;  /* a word piece after the first: no whitespace before it */
} unit;

/* an overlap candidate: the next chunk may start at off; tok counts the text
 * from off to the end of the previous chunk */
typedef struct head {
    size_t off;
    int tok, blk;
} head;

typedef struct chunker {
    const ing_text *t;
    const char *s;        /* t->text.data */
    int max, ovl;         /* budget; overlap target (<= max / 2) */
    ing_count_fn count;
    void *ctx;
    doc_err *err;
    unit *u;              /* units of the current segment */
    int nu, cu;
    long long *btok;      /* per block of the segment: sum of its units' tokens */
    int cb;
    head *h;              /* overlap candidates, growing tok */
    int nh, ch;
    ing_chunk *out;
    int n, cap;
    buf path;             /* heading path of the current section */
} chunker;

/* ---- small helpers ------------------------------------------------------ */

static int is_space(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

/* length of the UTF-8 sequence starting at s[0] (1 for a stray byte) */
static size_t char_len(const char *s, size_t n)
{
    uint32_t cp;
    int l = utf8_decode(s, n, &cp);
    return l > 0 ? (size_t)l : 1;
}

/* snap i back to the start of the character that holds it (not below lo) */
static size_t snap(const char *s, size_t lo, size_t i)
{
    while (i > lo && ((unsigned char)s[i] & 0xC0) == 0x80) i--;
    return i;
}

static int count_at(chunker *c, size_t off, size_t len, int *tok)
{
    int r = c->count(c->ctx, c->s + off, len);
    *tok = r < 0 ? 0 : r;
    if (r < 0)
        return doc_errf(c->err, r, "token count failed on %zu bytes of text at byte %zu", len,
                        off);
    return 0;
}

static int push_unit(chunker *c, size_t off, size_t len, int tok, int blk, int glued)
{
    if (c->nu == c->cu) {
        int nc = c->cu ? c->cu * 2 : 256;
        unit *p = nc > c->cu ? realloc(c->u, (size_t)nc * sizeof *p) : NULL;
        if (!p) return doc_errf(c->err, DOC_ENOMEM, "out of memory for %d text units", nc);
        c->u = p;
        c->cu = nc;
    }
    c->u[c->nu++] = (unit){off, len, tok, blk, glued};
    return 0;
}

static int push_head(chunker *c, size_t off, int tok, int blk)
{
    if (c->nh == c->ch) {
        int nc = c->ch ? c->ch * 2 : 32;
        head *p = realloc(c->h, (size_t)nc * sizeof *p);
        if (!p) return doc_errf(c->err, DOC_ENOMEM, "out of memory for overlap");
        c->h = p;
        c->ch = nc;
    }
    c->h[c->nh++] = (head){off, tok, blk};
    return 0;
}

/* ---- sentences ---------------------------------------------------------- */

/* abbreviations whose period does not end a sentence (compared lower-case) */
static const char *const abbrevs[] = {
    "e.g", "i.e", "cf", "vs", "al", "mr", "mrs", "ms", "dr", "prof", "sr", "jr",
    "st", "fig", "figs", "vol", "ch", "sec", "approx", "incl", "resp", "viz", "ca", "eq",
};

/* closing marks that belong to the sentence before them: ASCII quotes and
 * brackets, more terminators, and ” ’ 」 』 ） (returns their byte length) */
static size_t closer_len(const char *p, size_t n)
{
    const unsigned char *u = (const unsigned char *)p;
    if (strchr("\"')]}.!?", u[0]) && u[0]) return 1;
    if (n >= 3 && u[0] == 0xE2 && u[1] == 0x80 && (u[2] == 0x9D || u[2] == 0x99)) return 3;
    if (n >= 3 && u[0] == 0xE3 && u[1] == 0x80 && (u[2] == 0x8D || u[2] == 0x8F)) return 3;
    if (n >= 3 && u[0] == 0xEF && u[1] == 0xBC && u[2] == 0x89) return 3;
    return 0;
}

/* length of a CJK full stop / exclamation / question mark at p (。！？), or 0 */
static size_t cjk_stop_len(const char *p, size_t n)
{
    const unsigned char *u = (const unsigned char *)p;
    if (n >= 3 && u[0] == 0xE3 && u[1] == 0x80 && u[2] == 0x82) return 3;
    if (n >= 3 && u[0] == 0xEF && u[1] == 0xBC && (u[2] == 0x81 || u[2] == 0x9F)) return 3;
    return 0;
}

/* period_ends: does the '.' at p[dot] (followed by whitespace at p[k]) end a
 * sentence?  Not after an abbreviation or a single letter (an initial), nor
 * when the next word starts lower-case. */
static int period_ends(const char *p, size_t dot, size_t k, size_t n)
{
    size_t ws = dot;
    while (ws > 0 && !is_space((unsigned char)p[ws - 1])) ws--;
    while (ws < dot && p[ws] && strchr("(\"'[", p[ws])) ws++;
    size_t wl = dot - ws;
    if (wl == 1 && ((p[ws] | 0x20) >= 'a' && (p[ws] | 0x20) <= 'z')) return 0;
    for (size_t a = 0; a < sizeof abbrevs / sizeof *abbrevs; a++)
        if (strlen(abbrevs[a]) == wl && !strncasecmp(p + ws, abbrevs[a], wl)) return 0;
    while (k < n && is_space((unsigned char)p[k])) k++;
    if (k < n && p[k] >= 'a' && p[k] <= 'z') return 0;
    return 1;
}

/* sentence_len: length of the first sentence of p[0..n), terminator and
 * closing marks included, trailing whitespace not */
static size_t sentence_len(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        size_t k, cl;
        int cjk = 0;
        if (p[i] == '.' || p[i] == '!' || p[i] == '?') {
            k = i + 1;
        } else if ((cl = cjk_stop_len(p + i, n - i))) {
            k = i + cl;
            cjk = 1;
        } else {
            continue;
        }
        while (k < n && (cl = closer_len(p + k, n - k))) k += cl;
        if (k == n) return n;
        if (!cjk && (!is_space((unsigned char)p[k]) || (p[i] == '.' && !period_ends(p, i, k, n)))) {
            i = k - 1;
            continue;
        }
        return k;
    }
    return n;
}

/* ---- units -------------------------------------------------------------- */

/* split_chars: a word of tok tokens (> budget) into pieces at character
 * boundaries, each a prefix of the rest whose own count fits, as long as
 * cheaply found: the first guess comes from the word's bytes per token, the
 * next ones interpolate between the longest prefix seen to fit (lo) and the
 * shortest seen not to (hi), bisecting after a few rounds.  The count is not
 * monotonic in the length (WordPiece maps an over-long word to one [UNK]), so
 * a length is accepted only once its own count has been seen to fit. */
static int split_chars(chunker *c, int blk, size_t s, size_t e, int tok)
{
    const char *p = c->s;
    const int good = c->max - c->max / 32; /* a piece this full is long enough */
    const double bpt = tok > 0 ? (double)(e - s) / tok : 1.0;
    int rc, first = 1;
    while (s < e) {
        size_t lo = s + char_len(p + s, e - s), hi = 0; /* hi 0: no miss seen yet */
        int tlo, thi = 0, tg;
        if ((rc = count_at(c, s, lo - s, &tlo))) return rc;
        if (tlo > c->max)
            return doc_errf(c->err, DOC_ELIMIT,
                            "the character at byte %zu alone counts %d tokens, over max_tokens %d",
                            s, tlo, c->max);
        for (int it = 0; lo < e && tlo < good; it++) {
            double want;           /* bytes from s */
            if (it == 0)
                want = bpt * c->max * 0.97;
            else if (!hi)
                want = tlo > 0 ? (double)(lo - s) * c->max / tlo : 2.0 * (double)(lo - s);
            else if (it < 8 && thi > tlo)
                want = (double)(lo - s) + (double)(hi - lo) * (c->max - tlo) / (thi - tlo);
            else
                want = (double)(lo - s) + (double)(hi - lo) / 2;
            size_t top = hi ? hi : e + 1; /* candidates lie in (lo, top) */
            size_t g = want >= (double)(e - s) ? e : s + (size_t)want;
            if (g >= top) g = top - 1;
            g = snap(p, lo, g);
            if (g <= lo) g = lo + char_len(p + lo, e - lo);
            if (g >= top) break; /* no character boundary between lo and hi */
            if ((rc = count_at(c, s, g - s, &tg))) return rc;
            if (tg <= c->max) {
                lo = g;
                tlo = tg;
            } else {
                hi = g;
                thi = tg;
            }
        }
        if ((rc = push_unit(c, s, lo - s, tlo, blk, !first))) return rc;
        first = 0;
        s = lo;
    }
    return 0;
}

/* add_sentence: one sentence (or code line) p[s..e), trimmed; over the budget
 * it becomes words, and a word over the budget pieces */
static int add_sentence(chunker *c, int blk, size_t s, size_t e)
{
    const char *p = c->s;
    int rc, tok;
    if ((rc = count_at(c, s, e - s, &tok))) return rc;
    if (tok <= c->max) return push_unit(c, s, e - s, tok, blk, 0);
    size_t i = s;
    while (i < e) {
        while (i < e && is_space((unsigned char)p[i])) i++;
        if (i == e) break;
        size_t j = i;
        while (j < e && !is_space((unsigned char)p[j])) j++;
        int wt = tok;   /* a sentence without spaces is one word: counted already */
        if ((i != s || j != e) && (rc = count_at(c, i, j - i, &wt))) return rc;
        rc = wt <= c->max ? push_unit(c, i, j - i, wt, blk, 0) : split_chars(c, blk, i, j, wt);
        if (rc) return rc;
        i = j;
    }
    return 0;
}

/* add_block: a block's sentences (lines for CODE and TABLE) */
static int add_block(chunker *c, int blk)
{
    const ing_block *b = &c->t->blocks[blk];
    const char *p = c->s;
    int lines = b->kind == ING_BLK_CODE || b->kind == ING_BLK_TABLE;
    size_t i = b->off, e = b->off + b->len;
    int rc;
    while (i < e) {
        while (i < e && is_space((unsigned char)p[i])) i++;
        if (i == e) break;
        size_t j;
        if (lines) {
            const char *nl = memchr(p + i, '\n', e - i);
            j = nl ? (size_t)(nl - p) : e;
        } else {
            j = i + sentence_len(p + i, e - i);
        }
        size_t k = j;
        while (k > i && is_space((unsigned char)p[k - 1])) k--;
        if ((rc = add_sentence(c, blk, i, k))) return rc;
        i = j;
    }
    return 0;
}

/* ---- packing ------------------------------------------------------------ */

static int emit(chunker *c, size_t off, size_t end, int blk0, int blk1, int tok)
{
    if (c->n == c->cap) {
        int nc = c->cap ? c->cap * 2 : 64;
        ing_chunk *p = nc > c->cap ? realloc(c->out, (size_t)nc * sizeof *p) : NULL;
        if (!p) return doc_errf(c->err, DOC_ENOMEM, "out of memory for %d chunks", nc);
        c->out = p;
        c->cap = nc;
    }
    ing_chunk *k = &c->out[c->n];
    memset(k, 0, sizeof *k);
    if (!(k->heading = strdup(c->path.len ? c->path.data : "")))
        return doc_errf(c->err, DOC_ENOMEM, "out of memory for a heading path");
    k->off = off;
    k->len = end - off;
    k->n_tokens = tok;
    k->page = c->t->blocks[blk0].page;
    for (int b = blk0; b <= blk1; b++) {
        const ing_block *x = &c->t->blocks[b];
        int lo = x->line_start ? x->line_start : x->line_end;
        int hi = x->line_end > x->line_start ? x->line_end : x->line_start;
        if (lo && (!k->line_start || lo < k->line_start)) k->line_start = lo;
        if (hi > k->line_end) k->line_end = hi;
    }
    c->n++;
    return 0;
}

/* overlap: candidates for the start of the chunk after the units [first, i):
 * whole units from the end while they fit the target, else words of the last
 * unit.  None when the next unit continues a cut word. */
static int overlap(chunker *c, int first, int i)
{
    const char *p = c->s;
    int rc, acc = 0;
    c->nh = 0;
    if (c->ovl <= 0 || i >= c->nu || c->u[i].glued) return 0;
    int k;
    for (k = i - 1; k >= first; k--) {
        acc += c->u[k].tok;
        if (acc > c->ovl) break;
        if (!c->u[k].glued && (rc = push_head(c, c->u[k].off, acc, c->u[k].blk))) return rc;
    }
    if (c->nh || k != i - 1 || c->u[k].glued) return 0;
    /* the last unit alone is over the target: its last words */
    const unit *l = &c->u[i - 1];
    size_t e = l->off + l->len;
    acc = 0;
    while (e > l->off) {
        size_t ws = e;
        while (ws > l->off && !is_space((unsigned char)p[ws - 1])) ws--;
        if (ws == l->off) break; /* that would be the whole unit */
        int wt;
        if ((rc = count_at(c, ws, e - ws, &wt))) return rc;
        if (acc + wt > c->ovl) break;
        acc += wt;
        if ((rc = push_head(c, ws, acc, l->blk))) return rc;
        e = ws;
        while (e > l->off && is_space((unsigned char)p[e - 1])) e--;
    }
    return 0;
}

/* pack: the units of one segment (blocks b0..b1-1) into chunks */
static int pack(chunker *c, int b0, int b1)
{
    int rc, nb = b1 - b0;
    if (nb > c->cb) {
        long long *p = realloc(c->btok, (size_t)nb * sizeof *p);
        if (!p) return doc_errf(c->err, DOC_ENOMEM, "out of memory for %d blocks", nb);
        c->btok = p;
        c->cb = nb;
    }
    memset(c->btok, 0, (size_t)nb * sizeof *c->btok);
    for (int k = 0; k < c->nu; k++) c->btok[c->u[k].blk - b0] += c->u[k].tok;

    c->nh = 0;
    int i = 0;
    while (i < c->nu) {
        int first = i, hk = c->nh - 1; /* hk: overlap candidate in use, -1 none */
        long long sum = hk >= 0 ? c->h[hk].tok : 0;
        while (i < c->nu) {
            const unit *x = &c->u[i];
            int starts = i == 0 || c->u[i - 1].blk != x->blk;
            long long need = x->tok;
            int iend = i + 1;
            if (starts && c->btok[x->blk - b0] <= c->max) { /* a whole block */
                need = c->btok[x->blk - b0];
                while (iend < c->nu && c->u[iend].blk == x->blk) iend++;
            }
            if (sum + need > c->max) {
                if (i > first) break;
                while (hk >= 0 && c->h[hk].tok + need > c->max) hk--;
                sum = hk >= 0 ? c->h[hk].tok : 0;
            }
            sum += need;
            i = iend;
        }
        /* the exact count of what was packed; shrink when the sum was wrong */
        int tok = (int)sum;
        for (;;) {
            size_t off = hk >= 0 ? c->h[hk].off : c->u[first].off;
            size_t end = c->u[i - 1].off + c->u[i - 1].len;
            if (hk < 0 && i - first == 1) {
                tok = c->u[first].tok;
                break;
            }
            if ((rc = count_at(c, off, end - off, &tok))) return rc;
            if (tok <= c->max) break;
            if (hk >= 0) hk--;
            else i--;
        }
        size_t off = hk >= 0 ? c->h[hk].off : c->u[first].off;
        int blk0 = hk >= 0 ? c->h[hk].blk : c->u[first].blk;
        if ((rc = emit(c, off, c->u[i - 1].off + c->u[i - 1].len, blk0, c->u[i - 1].blk, tok)))
            return rc;
        if ((rc = overlap(c, first, i))) return rc;
    }
    return 0;
}

/* segment: chunk blocks b0..b1-1 (no headings, one page) */
static int segment(chunker *c, int b0, int b1)
{
    int rc;
    c->nu = 0;
    for (int b = b0; b < b1; b++)
        if ((rc = add_block(c, b))) return rc;
    return c->nu ? pack(c, b0, b1) : 0;
}

/* ---- sections ----------------------------------------------------------- */

typedef struct level_entry {
    int level;
    size_t off, len;
} level_entry;

/* set_path: the heading path of the stack, components joined with " > " */
static int set_path(chunker *c, const level_entry *st, int depth)
{
    buf_reset(&c->path);
    for (int d = 0; d < depth; d++) {
        if ((d && buf_puts(&c->path, " > ")) || buf_append(&c->path, c->s + st[d].off, st[d].len))
            return doc_errf(c->err, DOC_ENOMEM, "out of memory for a heading path");
    }
    return 0;
}

int ing_chunk_text(const ing_text *t, const ing_chunk_opts *o, ing_count_fn count, void *ctx,
                   ing_chunk **out, int *n, doc_err *err)
{
    chunker c;
    level_entry st[MAX_LEVEL];
    int depth = 0, rc = 0, seg = -1;
    if (out) *out = NULL;
    if (n) *n = 0;
    if (!t || !o || !count || !out || !n)
        return doc_errf(err, DOC_EINVAL, "ing_chunk_text: missing argument");
    if (o->max_tokens < 1 || o->max_tokens > MAX_BUDGET || o->overlap_tokens < 0)
        return doc_errf(err, DOC_EINVAL,
                        "bad chunk budget (max_tokens %d must be 1..%d, overlap_tokens %d >= 0)",
                        o->max_tokens, MAX_BUDGET, o->overlap_tokens);
    if (t->n_blocks < 0 || (t->n_blocks && !t->blocks))
        return doc_errf(err, DOC_EINVAL, "ing_chunk_text: bad block list");
    memset(&c, 0, sizeof c);
    c.t = t;
    c.s = t->text.data;
    c.max = o->max_tokens;
    c.ovl = o->overlap_tokens < o->max_tokens / 2 ? o->overlap_tokens : o->max_tokens / 2;
    c.count = count;
    c.ctx = ctx;
    c.err = err;
    buf_init(&c.path, 0);

    for (int b = 0; b < t->n_blocks; b++) {
        const ing_block *x = &t->blocks[b];
        if (x->off > t->text.len || x->len > t->text.len - x->off) {
            rc = doc_errf(err, DOC_EINVAL, "block %d: range %zu+%zu is outside the text (%zu bytes)",
                          b, x->off, x->len, t->text.len);
            goto done;
        }
        if (x->kind == ING_BLK_HEADING) {
            if (seg >= 0 && (rc = segment(&c, seg, b))) goto done;
            seg = -1;
            int lv = x->level < 1 ? 1 : x->level > MAX_LEVEL ? MAX_LEVEL : x->level;
            while (depth > 0 && st[depth - 1].level >= lv) depth--;
            size_t len = x->len;
            if (len > HEADING_CAP) len = snap(c.s, x->off, x->off + HEADING_CAP) - x->off;
            while (len > 0 && is_space((unsigned char)c.s[x->off + len - 1])) len--;
            st[depth++] = (level_entry){lv, x->off, len};
            if ((rc = set_path(&c, st, depth))) goto done;
            continue;
        }
        if (seg >= 0 && x->page != t->blocks[seg].page) {
            if ((rc = segment(&c, seg, b))) goto done;
            seg = -1;
        }
        if (seg < 0) seg = b;
    }
    if (seg >= 0 && (rc = segment(&c, seg, t->n_blocks))) goto done;
    *out = c.out;
    *n = c.n;
    c.out = NULL;
    c.n = 0;
done:
    ing_chunks_free(&c.out, c.n);
    free(c.u);
    free(c.h);
    free(c.btok);
    buf_free(&c.path);
    return rc;
}

void ing_chunks_free(ing_chunk **c, int n)
{
    if (!c || !*c) return;
    for (int i = 0; i < n; i++) free((*c)[i].heading);
    free(*c);
    *c = NULL;
}
