/*
 * test_chunk.c - ingest/chunk.c on real text, counted with the real MiniLM
 * tokenizer (the embedder's WordPiece).
 *
 * Texts: the GPL-3 from /usr/share/common-licenses (centred lines become h1,
 * "  N. Title." lines h2, indented paragraphs code), the chmod(1) man page in
 * Japanese, Chinese, French and German (tests/fixtures/chunk/
 * chmod-multilingual.md, made from Debian's manpages-{ja,zh,fr,de} roff
 * sources; "#" lines are headings), and small hand-built texts for the edge
 * cases.  ing_text values are built here by hand (text + blocks, "\n\n"
 * between blocks) so the test does not depend on extract.c.
 *
 * check_chunks() holds the contract: every chunk's n_tokens is the real count
 * of its exact text and <= max_tokens; the text is valid UTF-8, not padded
 * with whitespace, inside one section and one page, holds no heading; the
 * heading path, page and line range match the blocks it covers; every
 * non-heading byte is covered and a block that fits the budget sits whole in
 * one chunk; consecutive chunks of a section overlap by at most
 * min(overlap, max/2) tokens and chunks of different sections never overlap.
 */
#include "testutil.h"

#include "ingest/internal.h"
#include "llm/llm.h"

#define FIXTURE "tests/fixtures/chunk/chmod-multilingual.md"
#define GPL3 "/usr/share/common-licenses/GPL-3"

typedef struct counter {
    llm_model *m;
    long calls;
    size_t bytes;
    int fail_after; /* > 0: the count fails from that call on */
} counter;

static int count_fn(void *ctx, const char *s, size_t n)
{
    counter *c = ctx;
    int32_t *ids = NULL;
    int k = 0;
    doc_err e = {0};
    c->calls++;
    c->bytes += n;
    if (c->fail_after > 0 && c->calls >= c->fail_after) return DOC_EIO;
    if (llm_tokenize(c->m, s, n, 0, 0, &ids, &k, &e)) return e.rc ? e.rc : DOC_EINVAL;
    free(ids);
    return k;
}

/* two tokens per byte: no character fits a budget of one */
static int count_bytes(void *ctx, const char *s, size_t n)
{
    (void)ctx;
    (void)s;
    return (int)(2 * n);
}

static int ntok(counter *c, const char *s, size_t n)
{
    int k = count_fn(c, s, n);
    assert_true(k >= 0);
    return k;
}

/* ---- hand-built texts ----------------------------------------------------- */

static void text_init(ing_text *t)
{
    memset(t, 0, sizeof *t);
    buf_init(&t->text, 0);
}

static void text_free(ing_text *t)
{
    buf_free(&t->text);
    free(t->blocks);
    memset(t, 0, sizeof *t);
}

static void add(ing_text *t, int kind, int level, int page, int line0, int line1, const char *s,
                size_t n)
{
    if (t->n_blocks == t->cap_blocks) {
        t->cap_blocks = t->cap_blocks ? 2 * t->cap_blocks : 64;
        t->blocks = realloc(t->blocks, (size_t)t->cap_blocks * sizeof *t->blocks);
        assert_non_null(t->blocks);
    }
    if (t->n_blocks) assert_int_equal(buf_append(&t->text, "\n\n", 2), 0);
    ing_block *b = &t->blocks[t->n_blocks++];
    *b = (ing_block){kind, level, page, line0, line1, t->text.len, n};
    assert_int_equal(buf_append(&t->text, s, n), 0);
}

static void adds(ing_text *t, int kind, int level, int page, int line, const char *s)
{
    add(t, kind, level, page, line, line, s, strlen(s));
}

/* collapse whitespace runs to one space, trimmed (as ing_text_add does) */
static size_t collapse(char *s, size_t n)
{
    size_t w = 0;
    int sp = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == ' ' || s[i] == '\n' || s[i] == '\t') {
            sp = w > 0;
            continue;
        }
        if (sp) s[w++] = ' ';
        sp = 0;
        s[w++] = s[i];
    }
    return w;
}

/* load_gpl: paragraphs by blank lines; a lone line indented 10+ spaces is
 * h1, a lone "  N. Title." line h2, a paragraph whose lines are all indented
 * 4+ spaces code, every other paragraph running text */
static void load_gpl(ing_text *t)
{
    char *d;
    size_t n;
    doc_err e = {0};
    if (file_read_all(GPL3, 1 << 20, &d, &n, &e)) {
        printf("skipped: %s\n", e.msg);
        exit(77);
    }
    text_init(t);
    size_t i = 0;
    int line = 1;
    while (i < n) {
        while (i < n && d[i] == '\n') i++, line++;
        if (i >= n) break;
        size_t s = i;
        int l0 = line, lines = 0, indented = 1;
        while (i < n && !(d[i] == '\n' && (i + 1 >= n || d[i + 1] == '\n'))) {
            if (i == s || d[i - 1] == '\n') {
                lines++;
                if (strncmp(d + i, "    ", 4)) indented = 0;
            }
            if (d[i] == '\n') line++;
            i++;
        }
        size_t e_ = i;
        if (i < n) i++, line++; /* the paragraph's last newline */
        char *p = d + s;
        size_t len = e_ - s;
        int lead = 0;
        while (lead < (int)len && p[lead] == ' ') lead++;
        int numbered = lines == 1 && lead == 2 && p[lead] >= '0' && p[lead] <= '9' &&
                       p[len - 1] == '.' && len < 100;
        if (lines == 1 && lead >= 10) {
            size_t m = collapse(p, len);
            add(t, ING_BLK_HEADING, 1, 0, l0, l0, p, m);
        } else if (numbered) {
            size_t m = collapse(p, len);
            add(t, ING_BLK_HEADING, 2, 0, l0, l0, p, m);
        } else if (indented) {
            add(t, ING_BLK_CODE, 0, 0, l0, line - 1, p + lead, len - (size_t)lead);
        } else {
            size_t m = collapse(p, len);
            add(t, ING_BLK_PARA, 0, 0, l0, line - 1, p, m);
        }
    }
    free(d);
}

/* load_md: the fixture: "#"... lines are headings, paragraphs by blank lines */
static void load_md(ing_text *t, const char *path)
{
    char *d;
    size_t n;
    doc_err e = {0};
    if (file_read_all(path, 1 << 20, &d, &n, &e)) fail_msg("%s", e.msg);
    text_init(t);
    size_t i = 0;
    int line = 1;
    while (i < n) {
        char *nl = memchr(d + i, '\n', n - i);
        size_t e_ = nl ? (size_t)(nl - d) : n;
        if (d[i] == '#') {
            int lv = 0;
            while (d[i + lv] == '#') lv++;
            add(t, ING_BLK_HEADING, lv, 0, line, line, d + i + lv + 1, e_ - i - lv - 1);
        } else if (e_ > i) {
            add(t, ING_BLK_PARA, 0, 0, line, line, d + i, collapse(d + i, e_ - i));
        }
        i = e_ + 1;
        line++;
    }
    free(d);
}

/* ---- the contract ------------------------------------------------------- */

typedef struct stats {
    int pairs;      /* consecutive chunks within one section and page */
    int overlapped; /* of those, how many overlap */
} stats;

static int is_ws(char c)
{
    return c == ' ' || c == '\n' || c == '\t' || c == '\r';
}

/* expected heading path of every block's section, built independently */
static char **expected_paths(const ing_text *t)
{
    char **p = calloc((size_t)t->n_blocks + 1, sizeof *p);
    const ing_block *stack[8];
    int depth = 0;
    for (int b = 0; b < t->n_blocks; b++) {
        const ing_block *x = &t->blocks[b];
        if (x->kind == ING_BLK_HEADING) {
            while (depth && stack[depth - 1]->level >= x->level) depth--;
            stack[depth++] = x;
        }
        buf s;
        buf_init(&s, 0);
        buf_puts(&s, "");
        for (int k = 0; k < depth; k++) {
            if (k) buf_puts(&s, " > ");
            buf_append(&s, t->text.data + stack[k]->off, stack[k]->len);
        }
        p[b] = buf_steal(&s, NULL);
    }
    return p;
}

/* segment id of each block: a heading or a page change starts a new one */
static int *segments(const ing_text *t)
{
    int *sg = calloc((size_t)t->n_blocks + 1, sizeof *sg), id = 0;
    for (int b = 0; b < t->n_blocks; b++) {
        const ing_block *x = &t->blocks[b];
        if (x->kind == ING_BLK_HEADING || (b && x->page != t->blocks[b - 1].page)) id++;
        sg[b] = id;
    }
    return sg;
}

static void check_chunks(counter *cn, const ing_text *t, const ing_chunk *ch, int n, int max,
                         int ovl, stats *st)
{
    const char *s = t->text.data;
    char **path = expected_paths(t);
    int *sg = segments(t);
    int *seg_of = calloc((size_t)n + 1, sizeof *seg_of);
    unsigned char *cov = calloc(t->text.len + 1, 1);
    int lim = ovl < max / 2 ? ovl : max / 2;
    memset(st, 0, sizeof *st);
    for (int i = 0; i < n; i++) {
        const ing_chunk *c = &ch[i];
        assert_true(c->len > 0 && c->off + c->len <= t->text.len);
        assert_true(utf8_valid(s + c->off, c->len));
        assert_false(is_ws(s[c->off]));
        assert_false(is_ws(s[c->off + c->len - 1]));
        int k = ntok(cn, s + c->off, c->len);
        if (k != c->n_tokens || k > max)
            fail_msg("chunk %d: n_tokens %d, real count %d, max %d", i, c->n_tokens, k, max);
        /* the blocks it covers: no heading, one segment */
        int first = -1, last = -1, ls = 0, le = 0;
        for (int b = 0; b < t->n_blocks; b++) {
            const ing_block *x = &t->blocks[b];
            if (x->off + x->len <= c->off || x->off >= c->off + c->len) continue;
            if (x->kind == ING_BLK_HEADING) fail_msg("chunk %d covers heading block %d", i, b);
            if (first < 0) first = b;
            last = b;
            if (x->line_start && (!ls || x->line_start < ls)) ls = x->line_start;
            if (x->line_end > le) le = x->line_end;
        }
        assert_true(first >= 0);
        if (sg[first] != sg[last]) fail_msg("chunk %d spans blocks %d..%d", i, first, last);
        seg_of[i] = sg[first];
        assert_string_equal(c->heading, path[first]);
        assert_int_equal(c->page, t->blocks[first].page);
        assert_int_equal(c->line_start, ls);
        assert_int_equal(c->line_end, le);
        memset(cov + c->off, 1, c->len);
        if (i == 0) continue;
        const ing_chunk *p = &ch[i - 1];
        if (seg_of[i] != seg_of[i - 1]) {
            assert_true(c->off >= p->off + p->len);
            continue;
        }
        st->pairs++;
        assert_true(c->off >= p->off && c->off + c->len > p->off + p->len); /* progress */
        if (c->off < p->off + p->len) {
            st->overlapped++;
            int o = ntok(cn, s + c->off, p->off + p->len - c->off);
            if (o > lim) fail_msg("chunk %d repeats %d tokens, over %d", i, o, lim);
        }
    }
    for (int b = 0; b < t->n_blocks; b++) {
        const ing_block *x = &t->blocks[b];
        if (x->kind == ING_BLK_HEADING) {
            for (size_t j = 0; j < x->len; j++) assert_int_equal(cov[x->off + j], 0);
            continue;
        }
        for (size_t j = 0; j < x->len; j++)
            if (!is_ws(s[x->off + j]) && !cov[x->off + j])
                fail_msg("block %d: byte %zu not in any chunk", b, j);
        if (ntok(cn, s + x->off, x->len) <= max) { /* whole in one chunk */
            int whole = 0;
            for (int i = 0; i < n && !whole; i++)
                whole = ch[i].off <= x->off && ch[i].off + ch[i].len >= x->off + x->len;
            if (!whole) fail_msg("block %d fits the budget %d but was split", b, max);
        }
    }
    for (int b = 0; b < t->n_blocks; b++) free(path[b]);
    free(path);
    free(sg);
    free(seg_of);
    free(cov);
}

static void run(counter *cn, const ing_text *t, int max, int ovl, ing_chunk **ch, int *n)
{
    ing_chunk_opts o = {.max_tokens = max, .overlap_tokens = ovl};
    doc_err e = {0};
    int rc = ing_chunk_text(t, &o, count_fn, cn, ch, n, &e);
    if (rc) fail_msg("ing_chunk_text: %s", e.msg);
}

/* ---- tests ---------------------------------------------------------------- */

static void test_empty(void **state)
{
    counter *cn = *state;
    ing_text t;
    ing_chunk *ch = (ing_chunk *)1;
    int n = -1;
    text_init(&t);
    run(cn, &t, 64, 8, &ch, &n);
    assert_int_equal(n, 0);
    assert_null(ch);
    /* only headings: every section is empty */
    adds(&t, ING_BLK_HEADING, 1, 0, 1, "Title");
    adds(&t, ING_BLK_HEADING, 2, 0, 2, "Part one");
    adds(&t, ING_BLK_HEADING, 2, 0, 3, "Part two");
    run(cn, &t, 64, 8, &ch, &n);
    assert_int_equal(n, 0);
    ing_chunks_free(&ch, n);
    text_free(&t);
}

static void test_heading_paths(void **state)
{
    counter *cn = *state;
    ing_text t;
    ing_chunk *ch;
    int n;
    text_init(&t);
    adds(&t, ING_BLK_PARA, 0, 0, 1, "Text before any heading.");
    adds(&t, ING_BLK_HEADING, 1, 0, 3, "Guide");
    adds(&t, ING_BLK_PARA, 0, 0, 4, "The guide starts here.");
    adds(&t, ING_BLK_HEADING, 2, 0, 6, "Install");
    adds(&t, ING_BLK_PARA, 0, 0, 7, "Run make install.");
    adds(&t, ING_BLK_HEADING, 3, 0, 9, "Linux");
    adds(&t, ING_BLK_LIST, 0, 0, 10, "Debian: apt install docent");
    adds(&t, ING_BLK_LIST, 0, 0, 11, "Fedora: dnf install docent");
    adds(&t, ING_BLK_HEADING, 2, 0, 13, "Usage");
    add(&t, ING_BLK_CODE, 0, 0, 14, 16, "docent ingest ~/docs\ndocent ask", 31);
    adds(&t, ING_BLK_HEADING, 1, 0, 18, "Reference");
    adds(&t, ING_BLK_HEADING, 2, 0, 19, "Empty section");
    adds(&t, ING_BLK_HEADING, 2, 0, 20, "API");
    adds(&t, ING_BLK_PARA, 0, 0, 21, "The API is small.");
    adds(&t, ING_BLK_HEADING, 4, 0, 23, "Deep");
    adds(&t, ING_BLK_PARA, 0, 0, 24, "A level-four heading under a level-two one.");
    run(cn, &t, 64, 16, &ch, &n);
    static const char *const want[][2] = {
        {"", "Text before any heading."},
        {"Guide", "The guide starts here."},
        {"Guide > Install", "Run make install."},
        {"Guide > Install > Linux", "Debian: apt install docent\n\nFedora: dnf install docent"},
        {"Guide > Usage", "docent ingest ~/docs\ndocent ask"},
        {"Reference > API", "The API is small."},
        {"Reference > API > Deep", "A level-four heading under a level-two one."},
    };
    assert_int_equal(n, 7);
    for (int i = 0; i < n; i++) {
        assert_string_equal(ch[i].heading, want[i][0]);
        assert_int_equal(ch[i].len, strlen(want[i][1]));
        assert_memory_equal(t.text.data + ch[i].off, want[i][1], ch[i].len);
    }
    assert_int_equal(ch[3].line_start, 10);
    assert_int_equal(ch[3].line_end, 11);
    assert_int_equal(ch[4].line_start, 14);
    assert_int_equal(ch[4].line_end, 16);
    stats st;
    check_chunks(cn, &t, ch, n, 64, 16, &st);
    ing_chunks_free(&ch, n);
    assert_null(ch);
    text_free(&t);
}

/* pages: the GPL's paragraphs spread over pages, no headings */
static void test_pages(void **state)
{
    counter *cn = *state;
    ing_text g, t;
    ing_chunk *ch;
    int n, page = 1, paras = 0;
    load_gpl(&g);
    text_init(&t);
    for (int b = 0; b < g.n_blocks && paras < 40; b++) {
        const ing_block *x = &g.blocks[b];
        if (x->kind != ING_BLK_PARA) continue;
        if (++paras % 7 == 0) page++;
        add(&t, ING_BLK_PARA, 0, page, 0, 0, g.text.data + x->off, x->len);
    }
    run(cn, &t, 48, 12, &ch, &n);
    stats st;
    check_chunks(cn, &t, ch, n, 48, 12, &st);
    int pages_seen = 0;
    for (int i = 0; i < n; i++) {
        assert_string_equal(ch[i].heading, "");
        assert_int_equal(ch[i].line_start, 0);
        if (!i || ch[i].page != ch[i - 1].page) pages_seen++;
    }
    assert_int_equal(pages_seen, page);
    assert_true(st.pairs > 10 && st.overlapped * 2 > st.pairs);
    ing_chunks_free(&ch, n);
    text_free(&t);
    text_free(&g);
}

static void budgets(counter *cn, const ing_text *t, const char *what)
{
    static const int max[] = {16, 32, 64, 256};
    for (int k = 0; k < 4; k++) {
        ing_chunk *ch;
        int n;
        stats st;
        /* with overlap */
        run(cn, t, max[k], max[k] / 4, &ch, &n);
        check_chunks(cn, t, ch, n, max[k], max[k] / 4, &st);
        print_message("%s: max %d: %d chunks, %d/%d consecutive chunks overlap\n", what, max[k],
                      n, st.overlapped, st.pairs);
        assert_true(n > 0);
        if (st.pairs > 4) assert_true(st.overlapped * 2 > st.pairs);
        ing_chunks_free(&ch, n);
        /* overlap larger than half the budget is held to half */
        run(cn, t, max[k], max[k], &ch, &n);
        check_chunks(cn, t, ch, n, max[k], max[k], &st);
        ing_chunks_free(&ch, n);
        /* without overlap no two chunks share a byte */
        run(cn, t, max[k], 0, &ch, &n);
        check_chunks(cn, t, ch, n, max[k], 0, &st);
        assert_int_equal(st.overlapped, 0);
        ing_chunks_free(&ch, n);
    }
}

static void test_gpl_budgets(void **state)
{
    ing_text t;
    load_gpl(&t);
    print_message("GPL-3: %d blocks\n", t.n_blocks);
    assert_true(t.n_blocks > 100);
    budgets(*state, &t, "GPL-3");
    text_free(&t);
}

static void test_multilingual(void **state)
{
    ing_text t;
    load_md(&t, FIXTURE);
    assert_true(t.n_blocks > 100);
    budgets(*state, &t, "chmod ja/zh/fr/de");
    text_free(&t);
}

/* a 10,000-character word: ASCII (one [UNK] for WordPiece), a URL (many
 * tokens, cut at character boundaries), CJK without spaces, two-byte letters */
static void test_long_words(void **state)
{
    counter *cn = *state;
    const size_t nchars = 10000;
    for (int kind = 0; kind < 4; kind++) {
        buf w;
        buf_init(&w, 0);
        static const char *const cjk[] = {"文", "件", "模", "式", "位", "的", "改", "变", "权", "限"};
        for (size_t i = 0; i < nchars; i++) {
            if (kind == 0) buf_putc(&w, 'a' + (int)(i % 26));
            else if (kind == 1) buf_puts(&w, i == 0 ? "https://example.org/" : i % 9 ? "x" : "/");
            else if (kind == 2) buf_puts(&w, cjk[(i * 7) % 10]);
            else buf_puts(&w, i % 3 ? "é" : "ß");
        }
        for (int max = 16; max <= 256; max *= 4) {
            ing_text t;
            ing_chunk *ch;
            int n;
            stats st;
            text_init(&t);
            adds(&t, ING_BLK_PARA, 0, 0, 1, "Before the word.");
            add(&t, ING_BLK_PARA, 0, 0, 2, 2, w.data, w.len);
            adds(&t, ING_BLK_PARA, 0, 0, 3, "After the word.");
            run(cn, &t, max, max / 4, &ch, &n);
            check_chunks(cn, &t, ch, n, max, max / 4, &st);
            int whole = ntok(cn, w.data, w.len);
            if (whole > max) assert_true(n >= whole / max);
            ing_chunks_free(&ch, n);
            text_free(&t);
        }
        buf_free(&w);
    }
}

/* sentence ends: not after "e.g." "i.e." "Dr." an initial or inside 3.14 */
static void test_sentences(void **state)
{
    counter *cn = *state;
    static const char *const sent[] = {
        "Use a search tool, e.g. grep or ripgrep, to find the value. ",
        "The constant is 3.14 here and 2.72 there. ",
        "Dr. Smith wrote the first version in 1999! ",
        "Was it J. R. Smith, i.e. the same person? ",
        "Nobody knows. ",
        "The approx. size is unknown. ",
        "日本語の文です。",
        "次の文も短いです！",
        "最後の文ですか？",
        "The end.",
    };
    const int ns = (int)(sizeof sent / sizeof *sent);
    size_t send[16];
    buf para;
    buf_init(&para, 0);
    for (int k = 0; k < ns; k++) {
        buf_puts(&para, sent[k]);
        send[k] = para.len;
        while (send[k] > 0 && para.data[send[k] - 1] == ' ') send[k]--;
    }
    ing_text t;
    text_init(&t);
    adds(&t, ING_BLK_PARA, 0, 0, 1, para.data);
    for (int max = 8; max <= 32; max += 4) {
        ing_chunk *ch;
        int n;
        stats st;
        run(cn, &t, max, 0, &ch, &n);
        check_chunks(cn, &t, ch, n, max, 0, &st);
        assert_true(n > 1);
        for (int i = 0; i < n; i++) {
            /* a chunk ends where a sentence ends, or inside a sentence over the budget */
            size_t e = ch[i].off + ch[i].len;
            int k = 0;
            while (send[k] < e) k++;
            size_t s0 = k ? send[k - 1] + (t.text.data[send[k - 1]] == ' ') : 0;
            if (send[k] != e && ntok(cn, t.text.data + s0, send[k] - s0) <= max)
                fail_msg("max %d: chunk %d ends in the middle of a sentence: %.*s", max, i,
                         (int)ch[i].len, t.text.data + ch[i].off);
        }
        ing_chunks_free(&ch, n);
    }
    buf_free(&para);
    text_free(&t);

    /* code: cut between lines, never inside one */
    text_init(&t);
    buf code;
    buf_init(&code, 0);
    for (int i = 0; i < 40; i++)
        buf_printf(&code, "%sif (rc == %d) return doc_errf(err, rc, \"case %d\");", i ? "\n    " : "", i,
                   i);
    add(&t, ING_BLK_CODE, 0, 0, 1, 40, code.data, code.len);
    ing_chunk *ch;
    int n;
    stats st;
    run(cn, &t, 32, 8, &ch, &n);
    check_chunks(cn, &t, ch, n, 32, 8, &st);
    assert_true(n > 5 && st.overlapped > 0);
    for (int i = 0; i < n; i++) {
        size_t e = ch[i].off + ch[i].len;
        assert_true(e == t.text.len || t.text.data[e] == '\n');
        assert_true(ch[i].off == 0 || t.text.data[ch[i].off - 1] == ' ');
    }
    ing_chunks_free(&ch, n);
    buf_free(&code);
    text_free(&t);
}

/* overlap of words: one long sentence, no sentence to repeat whole */
static void test_overlap_words(void **state)
{
    counter *cn = *state;
    ing_text g, t;
    load_gpl(&g);
    text_init(&t);
    /* the GPL's paragraphs with their periods removed: one sentence each */
    for (int b = 0; b < g.n_blocks; b++) {
        const ing_block *x = &g.blocks[b];
        if (x->kind != ING_BLK_PARA || x->len < 600) continue;
        char *p = malloc(x->len);
        memcpy(p, g.text.data + x->off, x->len);
        for (size_t i = 0; i < x->len; i++)
            if (p[i] == '.') p[i] = ',';
        add(&t, ING_BLK_PARA, 0, 0, 0, 0, p, x->len);
        free(p);
    }
    ing_chunk *ch;
    int n;
    stats st;
    run(cn, &t, 40, 10, &ch, &n);
    check_chunks(cn, &t, ch, n, 40, 10, &st);
    assert_true(st.pairs > 20 && st.overlapped * 10 >= st.pairs * 9);
    ing_chunks_free(&ch, n);
    text_free(&t);
    text_free(&g);
}

static void test_deterministic(void **state)
{
    counter *cn = *state;
    ing_text t;
    ing_chunk *a, *b;
    int na, nb;
    load_md(&t, FIXTURE);
    run(cn, &t, 48, 12, &a, &na);
    run(cn, &t, 48, 12, &b, &nb);
    assert_int_equal(na, nb);
    for (int i = 0; i < na; i++) {
        assert_int_equal(a[i].off, b[i].off);
        assert_int_equal(a[i].len, b[i].len);
        assert_string_equal(a[i].heading, b[i].heading);
        assert_int_equal(a[i].page, b[i].page);
        assert_int_equal(a[i].line_start, b[i].line_start);
        assert_int_equal(a[i].line_end, b[i].line_end);
        assert_int_equal(a[i].n_tokens, b[i].n_tokens);
    }
    ing_chunks_free(&a, na);
    ing_chunks_free(&b, nb);
    text_free(&t);
}

static void test_errors(void **state)
{
    counter *cn = *state;
    ing_text t;
    ing_chunk *ch;
    int n;
    doc_err e = {0};
    text_init(&t);
    adds(&t, ING_BLK_PARA, 0, 0, 1, "Some text. More text.");
    ing_chunk_opts o = {.max_tokens = 0, .overlap_tokens = 0};
    assert_int_equal(ing_chunk_text(&t, &o, count_fn, cn, &ch, &n, &e), DOC_EINVAL);
    assert_non_null(strstr(e.msg, "max_tokens"));
    o = (ing_chunk_opts){.max_tokens = 16, .overlap_tokens = -1};
    assert_int_equal(ing_chunk_text(&t, &o, count_fn, cn, &ch, &n, &e), DOC_EINVAL);
    o.overlap_tokens = 4;
    assert_int_equal(ing_chunk_text(&t, &o, NULL, cn, &ch, &n, &e), DOC_EINVAL);
    /* a block outside the text */
    t.blocks[0].len = t.text.len + 1;
    assert_int_equal(ing_chunk_text(&t, &o, count_fn, cn, &ch, &n, &e), DOC_EINVAL);
    assert_non_null(strstr(e.msg, "block 0"));
    t.blocks[0].len = t.text.len;
    /* the count function fails: its code comes back, nothing is returned */
    counter bad = *cn;
    bad.calls = 0;
    bad.fail_after = 2;
    ch = (ing_chunk *)1;
    n = 5;
    assert_int_equal(ing_chunk_text(&t, &o, count_fn, &bad, &ch, &n, &e), DOC_EIO);
    assert_null(ch);
    assert_int_equal(n, 0);
    assert_non_null(strstr(e.msg, "token count failed"));
    /* a single character over the budget cannot be cut further */
    assert_int_equal(ing_chunk_text(&t, &(ing_chunk_opts){.max_tokens = 1}, count_bytes, NULL,
                                    &ch, &n, &e),
                     DOC_ELIMIT);
    assert_non_null(strstr(e.msg, "character at byte"));
    text_free(&t);
}

/* a tokenizer whose count is not the sum of its parts: every run of
 * whitespace costs one more token, so the chunker's sums fall short and its
 * exact recount must shrink chunks to fit */
static int count_joins(void *ctx, const char *s, size_t n)
{
    int k = count_fn(ctx, s, n);
    for (size_t i = 0; k >= 0 && i < n; i++)
        k += is_ws(s[i]) && (i == 0 || !is_ws(s[i - 1]));
    return k;
}

static void test_not_additive(void **state)
{
    counter *cn = *state;
    ing_text t;
    load_gpl(&t);
    unsigned char *cov = calloc(t.text.len, 1);
    for (int max = 16; max <= 256; max *= 4) {
        ing_chunk_opts o = {.max_tokens = max, .overlap_tokens = max / 4};
        ing_chunk *ch;
        int n;
        doc_err e = {0};
        assert_int_equal(ing_chunk_text(&t, &o, count_joins, cn, &ch, &n, &e), 0);
        memset(cov, 0, t.text.len);
        for (int i = 0; i < n; i++) {
            int k = count_joins(cn, t.text.data + ch[i].off, ch[i].len);
            if (k != ch[i].n_tokens || k > max)
                fail_msg("max %d chunk %d: n_tokens %d, count %d", max, i, ch[i].n_tokens, k);
            assert_true(utf8_valid(t.text.data + ch[i].off, ch[i].len));
            memset(cov + ch[i].off, 1, ch[i].len);
        }
        for (int b = 0; b < t.n_blocks; b++) {
            const ing_block *x = &t.blocks[b];
            for (size_t j = 0; x->kind != ING_BLK_HEADING && j < x->len; j++)
                if (!is_ws(t.text.data[x->off + j]) && !cov[x->off + j])
                    fail_msg("max %d: block %d byte %zu not covered", max, b, j);
        }
        ing_chunks_free(&ch, n);
    }
    free(cov);
    text_free(&t);
}

/* each piece of text is counted about twice (units once, each chunk once) */
static void test_count_cost(void **state)
{
    counter *cn = *state;
    ing_text t;
    ing_chunk *ch;
    int n;
    load_gpl(&t);
    for (int max = 32; max <= 256; max *= 2) {
        counter c = *cn;
        c.calls = 0;
        c.bytes = 0;
        double t0 = time_now();
        run(&c, &t, max, max / 8, &ch, &n);
        double dt = time_now() - t0;
        double ratio = (double)c.bytes / (double)t.text.len;
        print_message("GPL-3 max %d: %d chunks, %ld count calls, %.2fx the text counted, %.1f ms\n",
                      max, n, c.calls, ratio, dt * 1e3);
        assert_true(ratio < 3.0);
        ing_chunks_free(&ch, n);
    }
    text_free(&t);
}

static int setup(void **state)
{
    char path[1024];
    test_model_path(path, sizeof path, TEST_EMBEDDER);
    counter *c = calloc(1, sizeof *c);
    llm_opts o = {.n_threads = 1};
    doc_err e = {0};
    if (!c || llm_model_open(path, &o, &c->m, &e)) {
        fprintf(stderr, "%s\n", e.msg);
        free(c);
        return -1;
    }
    *state = c;
    return 0;
}

static int teardown(void **state)
{
    counter *c = *state;
    llm_model_close(&c->m);
    free(c);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty),
        cmocka_unit_test(test_heading_paths),
        cmocka_unit_test(test_pages),
        cmocka_unit_test(test_gpl_budgets),
        cmocka_unit_test(test_multilingual),
        cmocka_unit_test(test_long_words),
        cmocka_unit_test(test_sentences),
        cmocka_unit_test(test_overlap_words),
        cmocka_unit_test(test_deterministic),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_not_additive),
        cmocka_unit_test(test_count_cost),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
