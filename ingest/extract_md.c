/*
 * extract_md.c - Markdown to structured text through md4c (GitHub dialect).
 *
 * md4c calls back on entering/leaving blocks and for each run of text.  Text
 * is gathered into one pending block; entering or leaving a block flushes it,
 * so a list item's text before a nested list and the nested items come out as
 * separate LIST blocks.  Tables are gathered whole: one line per row, cells
 * joined by " | ".
 *
 * Source lines: md4c reports no positions, but the text it hands over points
 * into the input (except synthetic strings such as the "\n" of a soft break),
 * so each block's line range is that of the first and last byte of its text
 * found inside the input.  For a fenced code block that is the code lines,
 * without the fences.  YAML front matter ("---" ... "---" or "...") at the
 * very start is skipped; line numbers still count it.  Raw HTML blocks keep
 * their text with the tags removed; inline raw HTML (tags) is dropped.
 */
#include <stdlib.h>
#include <string.h>

#include <md4c.h>

#include "ingest/internal.h"

#define MD_MAX_INPUT ((size_t)64 << 20)

typedef struct md_state {
    const char *base;   /* the parsed text; offsets are relative to it */
    size_t len;
    size_t *lines;      /* offset of the start of each line */
    int n_lines;
    ing_text *t;
    buf cur;            /* pending block text */
    int kind, level;
    size_t lo, hi;      /* smallest / largest input offset seen in cur (hi exclusive) */
    int have_pos;
    int li_depth;       /* open list items */
    int in_table, row_cells;
    int in_html_block, in_tag;
    int got_title;
    int rc;             /* first error, stops the parse */
} md_state;

static int line_of(const md_state *s, size_t off)
{
    int lo = 0, hi = s->n_lines - 1;
    while (lo < hi) { /* last line whose start <= off */
        int mid = lo + (hi - lo + 1) / 2;
        if (s->lines[mid] <= off) lo = mid;
        else hi = mid - 1;
    }
    return lo + 1;
}

static void note_pos(md_state *s, const char *p, size_t n)
{
    if (n == 0 || p < s->base || p >= s->base + s->len) return;
    size_t a = (size_t)(p - s->base), b = a + n;
    if (b > s->len) b = s->len;
    if (!s->have_pos || a < s->lo) s->lo = a;
    if (!s->have_pos || b > s->hi) s->hi = b;
    s->have_pos = 1;
}

static int flush(md_state *s)
{
    if (s->rc) return s->rc;
    if (s->cur.len) {
        int ls = 0, le = 0;
        if (s->have_pos) {
            ls = line_of(s, s->lo);
            le = line_of(s, s->hi - 1);
        }
        int rc = ing_text_add(s->t, s->kind, s->level, 0, ls, le, s->cur.data, s->cur.len);
        if (rc == 0 && s->kind == ING_BLK_HEADING && s->level == 1 && !s->got_title) {
            rc = ing_text_set_title(s->t, s->cur.data, s->cur.len);
            s->got_title = 1;
        }
        if (rc) s->rc = rc;
    }
    buf_reset(&s->cur);
    s->have_pos = 0;
    return s->rc;
}

static int put(md_state *s, const char *p, size_t n)
{
    if (s->rc) return s->rc;
    int rc = buf_append(&s->cur, p, n);
    if (rc) s->rc = rc;
    return rc;
}

static void start(md_state *s, int kind, int level)
{
    flush(s);
    s->kind = kind;
    s->level = level;
}

static int enter_block(MD_BLOCKTYPE type, void *detail, void *ud)
{
    md_state *s = ud;
    if (s->in_table) {
        if (type == MD_BLOCK_TR) {
            if (s->cur.len) put(s, "\n", 1);
            s->row_cells = 0;
        } else if (type == MD_BLOCK_TH || type == MD_BLOCK_TD) {
            if (s->row_cells++) put(s, " | ", 3);
        }
        return s->rc;
    }
    switch (type) {
    case MD_BLOCK_H: start(s, ING_BLK_HEADING, (int)((MD_BLOCK_H_DETAIL *)detail)->level); break;
    case MD_BLOCK_P: start(s, s->li_depth ? ING_BLK_LIST : ING_BLK_PARA, 0); break;
    case MD_BLOCK_LI:
        s->li_depth++;
        start(s, ING_BLK_LIST, 0);
        break;
    case MD_BLOCK_CODE: start(s, ING_BLK_CODE, 0); break;
    case MD_BLOCK_TABLE:
        start(s, ING_BLK_TABLE, 0);
        s->in_table = 1;
        break;
    case MD_BLOCK_HTML:
        start(s, ING_BLK_PARA, 0);
        s->in_html_block = 1;
        s->in_tag = 0;
        break;
    default: /* document, quote, lists, hr */
        start(s, s->li_depth ? ING_BLK_LIST : ING_BLK_PARA, 0);
        break;
    }
    return s->rc;
}

static int leave_block(MD_BLOCKTYPE type, void *detail, void *ud)
{
    (void)detail;
    md_state *s = ud;
    if (s->in_table && type != MD_BLOCK_TABLE) return s->rc;
    flush(s);
    if (type == MD_BLOCK_TABLE) s->in_table = 0;
    if (type == MD_BLOCK_LI && s->li_depth > 0) s->li_depth--;
    if (type == MD_BLOCK_HTML) s->in_html_block = 0;
    s->kind = s->li_depth ? ING_BLK_LIST : ING_BLK_PARA;
    s->level = 0;
    return s->rc;
}

static int span(MD_SPANTYPE type, void *detail, void *ud)
{
    (void)type;
    (void)detail;
    return ((md_state *)ud)->rc;
}

/* entity: the UTF-8 of "&name;" / "&#123;" / "&#x1F;" into out (5 bytes);
 * 0 when unknown (the raw text is kept then). */
static int entity(const char *p, size_t n, char *out)
{
    static const struct {
        const char *name;
        uint32_t cp;
    } named[] = {
        {"amp", '&'},     {"lt", '<'},       {"gt", '>'},       {"quot", '"'},
        {"apos", '\''},   {"nbsp", 0xA0},    {"copy", 0xA9},    {"reg", 0xAE},
        {"trade", 0x2122}, {"mdash", 0x2014}, {"ndash", 0x2013}, {"hellip", 0x2026},
        {"laquo", 0xAB},  {"raquo", 0xBB},   {"lsquo", 0x2018}, {"rsquo", 0x2019},
        {"ldquo", 0x201C}, {"rdquo", 0x201D}, {"times", 0xD7},   {"deg", 0xB0},
        {"euro", 0x20AC}, {"middot", 0xB7},  {"bull", 0x2022},  {"rarr", 0x2192},
        {"larr", 0x2190}, {"para", 0xB6},    {"sect", 0xA7},    {"shy", 0xAD},
    };
    if (n < 3 || p[0] != '&' || p[n - 1] != ';') return 0;
    uint32_t cp = 0;
    if (p[1] == '#') {
        int hex = n > 3 && (p[2] == 'x' || p[2] == 'X');
        size_t i = hex ? 3 : 2;
        if (i >= n - 1 || n - 1 - i > 8) return 0;
        for (; i < n - 1; i++) {
            char c = p[i];
            int d = c >= '0' && c <= '9' ? c - '0'
                  : hex && c >= 'a' && c <= 'f' ? c - 'a' + 10
                  : hex && c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
            if (d < 0) return 0;
            cp = cp * (hex ? 16u : 10u) + (uint32_t)d;
            if (cp > 0x10FFFF) return 0;
        }
        if (cp == 0) cp = 0xFFFD;
    } else {
        size_t k = n - 2;
        for (size_t i = 0; i < sizeof named / sizeof named[0] && !cp; i++)
            if (strlen(named[i].name) == k && memcmp(named[i].name, p + 1, k) == 0)
                cp = named[i].cp;
        if (!cp) return 0;
    }
    int m = utf8_encode(cp, out);
    if (!m) m = utf8_encode(0xFFFD, out);
    return m;
}

/* put_html_text: raw HTML with its tags removed (state kept across calls). */
static void put_html_text(md_state *s, const char *p, size_t n)
{
    size_t i = 0;
    while (i < n && !s->rc) {
        if (s->in_tag) {
            const char *e = memchr(p + i, '>', n - i);
            if (!e) return;
            i = (size_t)(e - p) + 1;
            s->in_tag = 0;
            put(s, " ", 1);
            continue;
        }
        const char *lt = memchr(p + i, '<', n - i);
        size_t e = lt ? (size_t)(lt - p) : n;
        if (e > i) {
            note_pos(s, p + i, e - i);
            put(s, p + i, e - i);
        }
        if (!lt) return;
        s->in_tag = 1;
        i = e + 1;
    }
}

static int text(MD_TEXTTYPE type, const MD_CHAR *p, MD_SIZE n, void *ud)
{
    md_state *s = ud;
    if (s->rc) return s->rc;
    char ent[8];
    int k;
    switch (type) {
    case MD_TEXT_NULLCHAR: put(s, "\xEF\xBF\xBD", 3); break;
    case MD_TEXT_BR:
    case MD_TEXT_SOFTBR: put(s, s->in_table ? " " : "\n", 1); break;
    case MD_TEXT_ENTITY:
        note_pos(s, p, n);
        if ((k = entity(p, n, ent)) > 0) put(s, ent, (size_t)k);
        else put(s, p, n);
        break;
    case MD_TEXT_HTML:
        if (s->in_html_block) put_html_text(s, p, n);
        break; /* inline tags are dropped */
    default:
        note_pos(s, p, n);
        if (s->in_table && type == MD_TEXT_CODE && n == 1 && *p == '\n') put(s, " ", 1);
        else put(s, p, n);
        break;
    }
    return s->rc;
}

/* front_matter: bytes of a leading "---" YAML block (0 when none). */
static size_t front_matter(const char *d, size_t n)
{
    if (n < 4 || memcmp(d, "---", 3) != 0) return 0;
    size_t i = 3;
    while (i < n && (d[i] == ' ' || d[i] == '\t')) i++;
    if (i < n && d[i] == '\r') i++;
    if (i >= n || d[i] != '\n') return 0;
    i++;
    while (i < n) {
        const char *nl = memchr(d + i, '\n', n - i);
        size_t e = nl ? (size_t)(nl - d) : n;
        size_t le = e;
        while (le > i && (d[le - 1] == '\r' || d[le - 1] == ' ' || d[le - 1] == '\t')) le--;
        if ((le - i == 3 && (memcmp(d + i, "---", 3) == 0 || memcmp(d + i, "...", 3) == 0)))
            return nl ? e + 1 : n;
        if (!nl) break;
        i = e + 1;
    }
    return 0; /* unterminated: not front matter */
}

int ing_extract_markdown(const char *data, size_t len, const char *name, ing_text *t,
                         doc_err *err)
{
    if (len > MD_MAX_INPUT)
        return doc_errf(err, DOC_ELIMIT, "%s: markdown larger than %zu MiB", name,
                        MD_MAX_INPUT >> 20);
    md_state s;
    memset(&s, 0, sizeof s);
    buf_init(&s.cur, t->text.max);
    s.t = t;
    s.kind = ING_BLK_PARA;
    char *text_utf8 = NULL;
    size_t n = 0;
    int rc = ing_repair_utf8(data, len, &text_utf8, &n);
    if (rc) {
        doc_errf(err, rc, "%s: out of memory", name);
        goto done;
    }
    s.base = text_utf8;
    s.len = n;
    size_t nl = 1;
    for (const char *p = text_utf8; (p = memchr(p, '\n', n - (size_t)(p - text_utf8))); p++) nl++;
    if (nl > INT32_MAX) {
        rc = doc_errf(err, DOC_ELIMIT, "%s: too many lines", name);
        goto done;
    }
    s.lines = malloc(nl * sizeof *s.lines);
    if (!s.lines) {
        rc = doc_errf(err, DOC_ENOMEM, "%s: out of memory", name);
        goto done;
    }
    s.lines[s.n_lines++] = 0;
    for (size_t i = 0; i < n; i++)
        if (text_utf8[i] == '\n') s.lines[s.n_lines++] = i + 1;

    MD_PARSER parser;
    memset(&parser, 0, sizeof parser);
    parser.abi_version = 0;
    parser.flags = MD_DIALECT_GITHUB;
    parser.enter_block = enter_block;
    parser.leave_block = leave_block;
    parser.enter_span = span;
    parser.leave_span = span;
    parser.text = text;
    size_t skip = front_matter(text_utf8, n);
    if (n - skip > (size_t)(MD_SIZE)-1) {
        rc = doc_errf(err, DOC_ELIMIT, "%s: markdown too large for the parser", name);
        goto done;
    }
    int prc = md_parse(text_utf8 + skip, (MD_SIZE)(n - skip), &parser, &s);
    if (!s.rc) flush(&s);
    if (s.rc) {
        rc = s.rc;
        if (rc == DOC_ELIMIT)
            doc_errf(err, rc, "%s: text larger than the %zu-byte cap", name, t->text.max);
        else
            doc_errf(err, rc, "%s: out of memory", name);
        goto done;
    }
    if (prc != 0) {
        rc = doc_errf(err, DOC_EFORMAT, "%s: markdown parser failed (%d)", name, prc);
        goto done;
    }
done:
    buf_free(&s.cur);
    free(s.lines);
    free(text_utf8);
    return rc;
}
