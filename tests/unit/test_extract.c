/*
 * test_extract.c - the document extractors on real documents.
 *
 * HTML: SQLite's lang_createtable.html (sqlite3-doc) and PostgreSQL's
 * DocBook pages (postgresql-doc-15); PDF: R's "An Introduction to R"
 * (r-doc-pdf), whose page of a known sentence was checked independently with
 * pypdf (page 10 of 113); DOCX: tests/fixtures/docs/sample.docx made by pandoc
 * from sample.md (tests/reference/make_docx.sh); Markdown: sample.md itself.
 * Small inline inputs cover hidden HTML, Latin-1 text, hand-built PDFs (no
 * text; a hyphenated line end) and broken files.  A case whose Debian doc
 * file is missing is skipped with a message.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/unit/testutil.h"
#include "ingest/internal.h"

#define SQLITE_PAGE_A "/usr/share/doc/sqlite3/lang_createtable.html"
#define SQLITE_PAGE_B "/usr/share/doc/sqlite3-doc/lang_createtable.html"
#define PG_PAGE "/usr/share/doc/postgresql-doc-15/html/ddl-constraints.html"
#define R_INTRO "/usr/share/R/doc/manual/R-intro.pdf"
#define FIX_DOCX "tests/fixtures/docs/sample.docx"
#define FIX_MD "tests/fixtures/docs/sample.md"

/* ---- helpers ------------------------------------------------------------ */

static char *slurp(const char *path, size_t *len)
{
    char *d = NULL;
    doc_err e = {0};
    if (file_read_all(path, (size_t)1 << 30, &d, len, &e) != 0) return NULL;
    return d;
}

/* load: the file or a clean skip. */
#define LOAD_OR_SKIP(var, len, path)                                      \
    size_t len = 0;                                                       \
    char *var = slurp(path, &len);                                        \
    if (!var) {                                                           \
        printf("skipped: %s is missing (install its doc package)\n", path); \
        skip();                                                           \
    }

static int run(ing_extract_fn fn, const char *data, size_t len, const char *name, ing_text *t,
               doc_err *e)
{
    ing_text_init(t, 0);
    memset(e, 0, sizeof *e);
    return fn(data, len, name, t, e);
}

static const char *blk(const ing_text *t, int i, size_t *n)
{
    *n = t->blocks[i].len;
    return t->text.data + t->blocks[i].off;
}

/* find: index of the first block containing s, -1 if none. */
static int find(const ing_text *t, const char *s)
{
    for (int i = 0; i < t->n_blocks; i++) {
        size_t n;
        const char *b = blk(t, i, &n);
        if (memmem(b, n, s, strlen(s))) return i;
    }
    return -1;
}

/* find_exact: index of the block whose whole text is s, -1 if none. */
static int find_exact(const ing_text *t, const char *s)
{
    for (int i = 0; i < t->n_blocks; i++) {
        size_t n;
        const char *b = blk(t, i, &n);
        if (n == strlen(s) && memcmp(b, s, n) == 0) return i;
    }
    return -1;
}

/* every block is clean UTF-8, inside the text, "\n\n"-separated */
static void check_invariants(const ing_text *t)
{
    assert_true(utf8_valid(t->text.data, t->text.len));
    assert_null(memchr(t->text.data, 0, t->text.len));
    size_t end = 0;
    for (int i = 0; i < t->n_blocks; i++) {
        const ing_block *b = &t->blocks[i];
        assert_true(b->len > 0);
        assert_true(b->off + b->len <= t->text.len);
        if (i) {
            assert_int_equal(b->off, end + 2);
            assert_memory_equal(t->text.data + end, "\n\n", 2);
        }
        end = b->off + b->len;
        assert_true(b->line_end >= b->line_start);
        if (b->kind == ING_BLK_HEADING) assert_true(b->level >= 1 && b->level <= 6);
    }
}

/* line_text: line number ln (1-based) of data, into out. */
static void line_text(const char *data, size_t len, int ln, char *out, size_t cap)
{
    const char *p = data, *end = data + len;
    for (int i = 1; i < ln && p < end; i++) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        p = nl ? nl + 1 : end;
    }
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    size_t n = (size_t)((nl ? nl : end) - p);
    if (n >= cap) n = cap - 1;
    memcpy(out, p, n);
    out[n] = 0;
}

/* ---- HTML ---------------------------------------------------------------- */

static void test_html_sqlite(void **state)
{
    (void)state;
    const char *path = file_exists(SQLITE_PAGE_A) ? SQLITE_PAGE_A : SQLITE_PAGE_B;
    LOAD_OR_SKIP(d, n, path);
    ing_text t;
    doc_err e;
    assert_int_equal(run(ing_extract_html, d, n, path, &t, &e), 0);
    check_invariants(&t);
    assert_non_null(t.title);
    assert_string_equal(t.title, "CREATE TABLE");
    /* the text in order, with its headings */
    int h = find_exact(&t, "2. The CREATE TABLE command");
    assert_true(h >= 0);
    assert_int_equal(t.blocks[h].kind, ING_BLK_HEADING);
    assert_int_equal(t.blocks[h].level, 1);
    int h21 = find_exact(&t, "2.1. CREATE TABLE ... AS SELECT Statements");
    assert_true(h21 > h);
    assert_int_equal(t.blocks[h21].level, 2);
    int p = find(&t, "Every CREATE TABLE statement must specify a name for the new table.");
    assert_true(p > h && p < h21);
    assert_int_equal(t.blocks[p].kind, ING_BLK_PARA);
    /* the block's first source line holds its first words */
    char line[512];
    line_text(d, n, t.blocks[p].line_start, line, sizeof line);
    assert_non_null(strstr(line, "Every CREATE TABLE statement"));
    assert_true(t.blocks[p].line_end > t.blocks[p].line_start);
    line_text(d, n, t.blocks[h].line_start, line, sizeof line);
    assert_non_null(strstr(line, "The CREATE TABLE command"));
    /* lines never go backwards */
    for (int i = 1; i < t.n_blocks; i++)
        assert_true(t.blocks[i].line_start >= t.blocks[i - 1].line_start);
    /* a data table as rows */
    int tb = find(&t, "Expression Affinity | Column Declared Type");
    assert_true(tb >= 0);
    assert_int_equal(t.blocks[tb].kind, ING_BLK_TABLE);
    assert_true(find(&t, "\nINTEGER | \"INT\"\n") == tb);
    /* menus, tagline, table of contents, scripts, hidden diagrams: gone */
    assert_int_equal(find(&t, "Small. Fast. Reliable."), -1);
    assert_int_equal(find(&t, "Table Of Contents"), -1);
    assert_int_equal(find(&t, "Search Documentation"), -1);
    assert_int_equal(find(&t, "toggle_search"), -1);
    assert_int_equal(find(&t, "Purchase"), -1);
    assert_int_equal(find_exact(&t, "hide"), -1);
    ing_text_free(&t);
    free(d);
}

static void test_html_postgres(void **state)
{
    (void)state;
    LOAD_OR_SKIP(d, n, PG_PAGE);
    ing_text t;
    doc_err e;
    assert_int_equal(run(ing_extract_html, d, n, PG_PAGE, &t, &e), 0);
    check_invariants(&t);
    assert_string_equal(t.title, "5.4. Constraints");
    /* navheader / navfooter: no Prev / Up / Home / Next links */
    assert_int_equal(find(&t, "Prev"), -1);
    assert_int_equal(find(&t, "Home"), -1);
    assert_int_equal(find_exact(&t, "Up"), -1);
    assert_int_equal(find(&t, "Next"), -1);
    assert_int_equal(find(&t, "5.3. Default Values"), -1); /* the "Prev" page's name */
    /* the first block is the sect1 title; sect2 titles are one level down */
    assert_int_equal(t.blocks[0].kind, ING_BLK_HEADING);
    assert_int_equal(t.blocks[0].level, 2);
    int a = find_exact(&t, "5.4.1. Check Constraints");
    int b = find_exact(&t, "5.4.5. Foreign Keys");
    assert_true(a > 0 && b > a);
    assert_int_equal(t.blocks[a].kind, ING_BLK_HEADING);
    assert_int_equal(t.blocks[a].level, 3);
    assert_int_equal(t.blocks[b].level, 3);
    int c = find(&t, "A check constraint is the most generic constraint type.");
    assert_true(c == a + 1);
    int code = find(&t, "CREATE TABLE products (");
    assert_true(code > a);
    assert_int_equal(t.blocks[code].kind, ING_BLK_CODE);
    assert_non_null(memchr(t.text.data + t.blocks[code].off, '\n', t.blocks[code].len));
    ing_text_free(&t);
    free(d);
}

static void test_html_hidden(void **state)
{
    (void)state;
    static const char html[] =
        "<!doctype html><html><head><meta charset=\"iso-8859-1\"><title>Caf\xe9 page</title>"
        "<style>p { color: red }</style><script>var secret = 'SCRIPT';</script></head>\n"
        "<body><nav><a href=\"/\">NAVLINK</a></nav>\n"
        "<div role=\"navigation\">ROLENAV</div>\n"
        "<div class=\"breadcrumb\">CRUMB</div>\n"
        "<h1>Main heading</h1>\n"
        "<p>Visible <b>bold</b> text with caf\xe9.</p>\n"
        "<p hidden>HIDDENATTR</p>\n"
        "<div aria-hidden=\"true\">ARIAHIDDEN</div>\n"
        "<div style=\"color:red; display : none\">DISPLAYNONE</div>\n"
        "<span style=\"visibility:hidden\">VISHIDDEN</span>\n"
        "<noscript>NOSCRIPT</noscript><template>TEMPLATE</template>\n"
        "<svg><text>SVGTEXT</text></svg>\n"
        "<ul><li>item one<li>item two</ul>\n"
        "<p>Unclosed <i>markup <b>here\n"
        "<footer>FOOTERTEXT</footer></body></html>";
    ing_text t;
    doc_err e;
    assert_int_equal(run(ing_extract_html, html, sizeof html - 1, "inline.html", &t, &e), 0);
    check_invariants(&t);
    assert_string_equal(t.title, "Caf\xc3\xa9 page"); /* the meta charset was honoured */
    const char *gone[] = {"SCRIPT", "color: red", "NAVLINK", "ROLENAV", "CRUMB", "HIDDENATTR",
                          "ARIAHIDDEN", "DISPLAYNONE", "VISHIDDEN", "NOSCRIPT", "TEMPLATE",
                          "SVGTEXT", "FOOTERTEXT"};
    for (size_t i = 0; i < sizeof gone / sizeof gone[0]; i++) {
        if (find(&t, gone[i]) != -1) fail_msg("'%s' was not dropped", gone[i]);
    }
    int h = find_exact(&t, "Main heading");
    assert_true(h >= 0);
    assert_int_equal(t.blocks[h].level, 1);
    assert_int_equal(t.blocks[h].line_start, 5);
    int p = find_exact(&t, "Visible bold text with caf\xc3\xa9.");
    assert_int_equal(p, h + 1);
    assert_int_equal(t.blocks[p].line_start, 6);
    int li = find_exact(&t, "item two");
    assert_true(li > p);
    assert_int_equal(t.blocks[li].kind, ING_BLK_LIST);
    assert_true(find(&t, "Unclosed markup here") > li); /* recovered */
    ing_text_free(&t);
}

/* ---- PDF ------------------------------------------------------------------ */

static void test_pdf_r_intro(void **state)
{
    (void)state;
    LOAD_OR_SKIP(d, n, R_INTRO);
    ing_text t;
    doc_err e;
    assert_int_equal(run(ing_extract_pdf, d, n, R_INTRO, &t, &e), 0);
    check_invariants(&t);
    assert_int_equal(t.n_pages, 113); /* pypdf: 113 pages */
    /* pypdf finds this sentence on page 10 only */
    int i = find(&t, "R has an inbuilt help facility similar to the man facility of UNIX.");
    assert_true(i >= 0);
    assert_int_equal(t.blocks[i].page, 10);
    int h = find_exact(&t, "1.7 Getting help with functions and features");
    assert_true(h >= 0 && h < i);
    assert_int_equal(t.blocks[h].page, 10);
    /* pages ascend; no block without a page */
    for (int k = 0; k < t.n_blocks; k++) {
        assert_true(t.blocks[k].page >= 1 && t.blocks[k].page <= 113);
        if (k) assert_true(t.blocks[k].page >= t.blocks[k - 1].page);
    }
    /* the running header of chapter 1 and the page numbers are gone */
    assert_int_equal(find_exact(&t, "Chapter 1: Introduction and preliminaries"), -1);
    for (int k = 0; k < t.n_blocks; k++) { /* page 7 is printed "1" */
        size_t m;
        const char *b = blk(&t, k, &m);
        char num[16];
        snprintf(num, sizeof num, "%d", t.blocks[k].page - 6);
        if (t.blocks[k].page >= 7 && m == strlen(num) && memcmp(b, num, m) == 0)
            fail_msg("page number block '%.*s' on page %d", (int)m, b, t.blocks[k].page);
    }
    ing_text_free(&t);
    free(d);
}

/* make_pdf: a one-page PDF whose content stream is content (NULL: a page
 * without content), with a correct xref table. */
static char *make_pdf(const char *content, size_t *len)
{
    buf b;
    buf_init(&b, 0);
    long off[6];
    buf_puts(&b, "%PDF-1.4\n");
    off[1] = (long)b.len;
    buf_puts(&b, "1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n");
    off[2] = (long)b.len;
    buf_puts(&b, "2 0 obj << /Type /Pages /Kids [3 0 R] /Count 1 >> endobj\n");
    off[3] = (long)b.len;
    buf_printf(&b, "3 0 obj << /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] %s>> endobj\n",
               content ? "/Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> " : "");
    off[4] = (long)b.len;
    const char *c = content ? content : "";
    buf_printf(&b, "4 0 obj << /Length %zu >> stream\n%s\nendstream endobj\n", strlen(c), c);
    off[5] = (long)b.len;
    buf_puts(&b, "5 0 obj << /Type /Font /Subtype /Type1 /BaseFont /Helvetica >> endobj\n");
    long xref = (long)b.len;
    buf_puts(&b, "xref\n0 6\n0000000000 65535 f \n");
    for (int i = 1; i <= 5; i++) buf_printf(&b, "%010ld 00000 n \n", off[i]);
    buf_printf(&b, "trailer << /Size 6 /Root 1 0 R >>\nstartxref\n%ld\n%%%%EOF\n", xref);
    return buf_steal(&b, len);
}

static void test_pdf_small(void **state)
{
    (void)state;
    ing_text t;
    doc_err e;
    size_t n;
    /* no text (a scanned page): success, no blocks */
    char *pdf = make_pdf(NULL, &n);
    assert_int_equal(run(ing_extract_pdf, pdf, n, "scan.pdf", &t, &e), 0);
    assert_int_equal(t.n_pages, 1);
    assert_int_equal(t.n_blocks, 0);
    ing_text_free(&t);
    free(pdf);
    /* a word hyphenated across lines is joined; a wide gap starts a paragraph */
    pdf = make_pdf("BT /F1 12 Tf 72 700 Td (The first exam-) Tj 0 -14 Td (ple is joined here.) Tj "
                   "0 -40 Td (A second paragraph.) Tj ET",
                   &n);
    assert_int_equal(run(ing_extract_pdf, pdf, n, "hyphen.pdf", &t, &e), 0);
    check_invariants(&t);
    assert_int_equal(t.n_blocks, 2);
    assert_int_equal(find_exact(&t, "The first example is joined here."), 0);
    assert_int_equal(find_exact(&t, "A second paragraph."), 1);
    assert_int_equal(t.blocks[1].page, 1);
    ing_text_free(&t);
    /* truncated: a clear error naming the file */
    char *half = malloc(200);
    memcpy(half, pdf, 200);
    int rc = run(ing_extract_pdf, half, 120, "cut.pdf", &t, &e);
    assert_true(rc < 0);
    assert_non_null(strstr(e.msg, "cut.pdf"));
    ing_text_free(&t);
    free(half);
    free(pdf);
}

static void test_pdf_truncated_real(void **state)
{
    (void)state;
    LOAD_OR_SKIP(d, n, R_INTRO);
    ing_text t;
    doc_err e;
    int rc = run(ing_extract_pdf, d, 30000, "R-intro-cut.pdf", &t, &e);
    assert_int_equal(rc, DOC_EFORMAT);
    assert_non_null(strstr(e.msg, "R-intro-cut.pdf"));
    assert_non_null(strstr(e.msg, "pdf"));
    ing_text_free(&t);
    free(d);
}

/* ---- DOCX ----------------------------------------------------------------- */

static void test_docx_pandoc(void **state)
{
    (void)state;
    LOAD_OR_SKIP(d, n, FIX_DOCX);
    ing_text t;
    doc_err e;
    assert_int_equal(run(ing_extract_docx, d, n, FIX_DOCX, &t, &e), 0);
    check_invariants(&t);
    assert_string_equal(t.title, "Docent Sample Handbook"); /* docProps/core.xml */
    struct {
        const char *text;
        int kind, level;
    } want[] = {
        {"Getting started", ING_BLK_HEADING, 1},
        {"This handbook explains how the VPN certificate is rotated every ninety days.",
         ING_BLK_PARA, 0},
        {"Rotating the certificate", ING_BLK_HEADING, 2},
        {"Open the admin console and choose Certificates, then press Rotate.", ING_BLK_PARA, 0},
        {"First list item about tokens", ING_BLK_LIST, 0},
        {"Second list item about keys", ING_BLK_LIST, 0},
        {"Service | Port\nvpn | 1194\nssh | 22", ING_BLK_TABLE, 0},
        {"openssl req -new -key vpn.key", ING_BLK_CODE, 0},
        {"Troubleshooting", ING_BLK_HEADING, 3},
        {"If the rotation fails, check the clock of the server.", ING_BLK_PARA, 0},
    };
    int prev = -1;
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        int k = find_exact(&t, want[i].text);
        if (k < 0) fail_msg("docx: no block '%s'", want[i].text);
        assert_true(k > prev);
        assert_int_equal(t.blocks[k].kind, want[i].kind);
        assert_int_equal(t.blocks[k].level, want[i].level);
        assert_int_equal(t.blocks[k].line_start, 0);
        prev = k;
    }
    ing_text_free(&t);
    /* truncated archive: a clear error naming the file */
    int rc = run(ing_extract_docx, d, n / 2, "cut.docx", &t, &e);
    assert_true(rc < 0);
    assert_non_null(strstr(e.msg, "cut.docx"));
    ing_text_free(&t);
    free(d);
}

/* a stored (uncompressed) one-entry zip */
static size_t make_zip(unsigned char *out, const char *name, const char *body)
{
    size_t nl = strlen(name), bl = strlen(body), o = 0;
    uint32_t crc = 0xFFFFFFFFu;
    for (size_t i = 0; i < bl; i++) {
        crc ^= (unsigned char)body[i];
        for (int k = 0; k < 8; k++) crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1)));
    }
    crc ^= 0xFFFFFFFFu;
#define PUT16(v) (out[o++] = (unsigned char)(v), out[o++] = (unsigned char)((v) >> 8))
#define PUT32(v) (PUT16((v) & 0xFFFF), PUT16(((uint32_t)(v) >> 16) & 0xFFFF))
    PUT32(0x04034b50u); PUT16(20); PUT16(0); PUT16(0); PUT16(0); PUT16(0);
    PUT32(crc); PUT32(bl); PUT32(bl); PUT16(nl); PUT16(0);
    memcpy(out + o, name, nl); o += nl;
    memcpy(out + o, body, bl); o += bl;
    size_t cd = o;
    PUT32(0x02014b50u); PUT16(20); PUT16(20); PUT16(0); PUT16(0); PUT16(0); PUT16(0);
    PUT32(crc); PUT32(bl); PUT32(bl); PUT16(nl); PUT16(0); PUT16(0); PUT16(0); PUT16(0);
    PUT32(0); PUT32(0);
    memcpy(out + o, name, nl); o += nl;
    size_t cdl = o - cd;
    PUT32(0x06054b50u); PUT16(0); PUT16(0); PUT16(1); PUT16(1); PUT32(cdl); PUT32(cd); PUT16(0);
#undef PUT16
#undef PUT32
    return o;
}

static void test_docx_bad(void **state)
{
    (void)state;
    unsigned char z[2048];
    ing_text t;
    doc_err e;
    /* a zip without word/document.xml */
    size_t n = make_zip(z, "hello.txt", "just a zip");
    int rc = run(ing_extract_docx, (const char *)z, n, "plain.zip", &t, &e);
    assert_int_equal(rc, DOC_EFORMAT);
    assert_non_null(strstr(e.msg, "plain.zip"));
    assert_non_null(strstr(e.msg, "word/document.xml"));
    ing_text_free(&t);
    /* malformed XML in the part */
    n = make_zip(z, "word/document.xml", "<w:document><w:body><w:p>");
    rc = run(ing_extract_docx, (const char *)z, n, "broken.docx", &t, &e);
    assert_int_equal(rc, DOC_EFORMAT);
    assert_non_null(strstr(e.msg, "broken.docx: word/document.xml"));
    ing_text_free(&t);
    /* entities are not expanded: no XXE, no billion laughs */
    n = make_zip(z, "word/document.xml",
                 "<?xml version=\"1.0\"?><!DOCTYPE d [<!ENTITY x SYSTEM \"file:///etc/passwd\">"
                 "<!ENTITY a \"AAAAAAAAAA\"><!ENTITY b \"&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;\">]>"
                 "<w:document xmlns:w=\"http://schemas.openxmlformats.org/wordprocessingml/2006/"
                 "main\"><w:body><w:p><w:r><w:t>safe &x; &b;</w:t></w:r></w:p></w:body>"
                 "</w:document>");
    rc = run(ing_extract_docx, (const char *)z, n, "xxe.docx", &t, &e);
    assert_int_equal(rc, 0);
    assert_int_equal(t.n_blocks, 1);
    assert_int_equal(find(&t, "root:"), -1);
    assert_int_equal(find(&t, "AAAA"), -1);
    assert_true(find(&t, "safe") == 0);
    ing_text_free(&t);
}

/* ---- Markdown / plain text ------------------------------------------------ */

static void test_markdown(void **state)
{
    (void)state;
    LOAD_OR_SKIP(d, n, FIX_MD);
    ing_text t;
    doc_err e;
    assert_int_equal(run(ing_extract_markdown, d, n, FIX_MD, &t, &e), 0);
    check_invariants(&t);
    assert_string_equal(t.title, "Getting started");
    assert_int_equal(find(&t, "author"), -1); /* front matter skipped */
    struct {
        const char *text;
        int kind, level, ls, le;
    } want[] = {
        {"Getting started", ING_BLK_HEADING, 1, 6, 6},
        {"Rotating the certificate", ING_BLK_HEADING, 2, 10, 10},
        {"Open the admin console and choose Certificates, then press Rotate.", ING_BLK_PARA, 0,
         12, 12},
        {"Second list item about keys", ING_BLK_LIST, 0, 15, 15},
        {"Service | Port\nvpn | 1194\nssh | 22", ING_BLK_TABLE, 0, 17, 20},
        {"openssl req -new -key vpn.key", ING_BLK_CODE, 0, 23, 23},
        {"Troubleshooting", ING_BLK_HEADING, 3, 26, 26},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        int k = find_exact(&t, want[i].text);
        if (k < 0) fail_msg("markdown: no block '%s'", want[i].text);
        assert_int_equal(t.blocks[k].kind, want[i].kind);
        assert_int_equal(t.blocks[k].level, want[i].level);
        assert_int_equal(t.blocks[k].line_start, want[i].ls);
        assert_int_equal(t.blocks[k].line_end, want[i].le);
    }
    ing_text_free(&t);
    free(d);

    /* multi-line blocks, entities, nested lists, code kept verbatim */
    static const char md[] = "Intro line one\nline two &amp; three\n\n"
                             "* outer\n  * inner\n\n"
                             "```c\nint main(void)\n{\n    return 0;\n}\n```\n";
    assert_int_equal(run(ing_extract_markdown, md, sizeof md - 1, "inline.md", &t, &e), 0);
    check_invariants(&t);
    assert_null(t.title);
    int p = find_exact(&t, "Intro line one line two & three");
    assert_int_equal(p, 0);
    assert_int_equal(t.blocks[p].line_start, 1);
    assert_int_equal(t.blocks[p].line_end, 2);
    assert_true(find_exact(&t, "outer") > 0 && find_exact(&t, "inner") > find_exact(&t, "outer"));
    int c = find_exact(&t, "int main(void)\n{\n    return 0;\n}");
    assert_true(c > 0);
    assert_int_equal(t.blocks[c].kind, ING_BLK_CODE);
    assert_int_equal(t.blocks[c].line_start, 8);
    assert_int_equal(t.blocks[c].line_end, 11);
    ing_text_free(&t);
}

static void test_plain(void **state)
{
    (void)state;
    ing_text t;
    doc_err e;
    /* Latin-1: read as Windows-1252, never rejected */
    static const char latin1[] = "Caf\xe9 cr\xe8me\r\n\r\n  second para\nline two \x93quoted\x94\n\n\n";
    assert_int_equal(run(ing_extract_plain, latin1, sizeof latin1 - 1, "latin1.txt", &t, &e), 0);
    check_invariants(&t);
    assert_int_equal(t.n_blocks, 2);
    assert_int_equal(find_exact(&t, "Caf\xc3\xa9 cr\xc3\xa8me"), 0);
    assert_int_equal(find_exact(&t, "second para line two \xe2\x80\x9cquoted\xe2\x80\x9d"), 1);
    assert_int_equal(t.blocks[0].line_start, 1);
    assert_int_equal(t.blocks[0].line_end, 1);
    assert_int_equal(t.blocks[1].line_start, 3);
    assert_int_equal(t.blocks[1].line_end, 4);
    ing_text_free(&t);
    /* UTF-8 with one stray byte: U+FFFD for that byte only; controls dropped */
    static const char mixed[] = "na\xc3\xafve \xff text\x01\n";
    assert_int_equal(run(ing_extract_plain, mixed, sizeof mixed - 1, "mixed.txt", &t, &e), 0);
    assert_int_equal(find_exact(&t, "na\xc3\xafve \xef\xbf\xbd text"), 0);
    ing_text_free(&t);
    /* the cap on the output */
    ing_text_init(&t, 10);
    static const char big[] = "0123456789 0123456789\n";
    assert_int_equal(ing_extract_plain(big, sizeof big - 1, "big.txt", &t, &e), DOC_ELIMIT);
    assert_non_null(strstr(e.msg, "big.txt"));
    ing_text_free(&t);
}

/* ---- detection ------------------------------------------------------------ */

static void test_detect(void **state)
{
    (void)state;
    const char *why;
    const ing_format *f;
    static const char txt[] = "hello\nworld\n";
    struct {
        const char *name, *ctype, *want;
    } cases[] = {
        {"notes.txt", NULL, "text"},
        {"README.rst", NULL, "text"},
        {"server.log", NULL, "text"},
        {"README", NULL, "text"},
        {"doc.md", NULL, "markdown"},
        {"doc.markdown", NULL, "markdown"},
        {"a.HTML", NULL, "html"},
        {"a.htm", NULL, "html"},
        {"a.xhtml", NULL, "html"},
        {"https://x.org/wiki/page", "text/html; charset=utf-8", "html"},
        {"https://x.org/raw/README.md", "text/plain", "markdown"},
        {"https://x.org/notes", "text/markdown", "markdown"},
        {"https://x.org/notes", "text/plain;charset=latin1", "text"},
        {"https://x.org/a.txt?x=1.png#frag", NULL, "text"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        f = ing_detect(cases[i].name, cases[i].ctype, txt, sizeof txt - 1, &why);
        if (!f || strcmp(f->name, cases[i].want) != 0)
            fail_msg("%s: got %s (%s)", cases[i].name, f ? f->name : "NULL", why ? why : "");
    }
    static const char html[] = "\xef\xbb\xbf  <!-- c --><!DOCTYPE html><html><p>x</p>";
    f = ing_detect("page", NULL, html, sizeof html - 1, &why);
    assert_non_null(f);
    assert_string_equal(f->name, "html");
    f = ing_detect("doc.pdf", NULL, "%PDF-1.7\n", 9, &why);
    assert_string_equal(f->name, "pdf");
    f = ing_detect("download", "application/octet-stream", "%PDF-1.4\n", 9, &why);
    assert_string_equal(f->name, "pdf");
    assert_string_equal(f->mime, "application/pdf");
    f = ing_detect("x.pdf", NULL, "not a pdf at all", 16, &why);
    assert_null(f);
    assert_non_null(why);
    /* docx: by name and by content; a zip that is not one */
    unsigned char z[1024];
    size_t zn = make_zip(z, "word/document.xml", "<w:document/>");
    f = ing_detect("report.docx", NULL, (const char *)z, zn, &why);
    assert_string_equal(f->name, "docx");
    f = ing_detect("blob", NULL, (const char *)z, zn, &why);
    assert_string_equal(f->name, "docx");
    f = ing_detect("https://x.org/get?id=3",
                   "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
                   (const char *)z, zn, &why);
    assert_string_equal(f->name, "docx");
    zn = make_zip(z, "hello.txt", "hi");
    f = ing_detect("archive.zip", NULL, (const char *)z, zn, &why);
    assert_null(f);
    assert_string_equal(why, "zip archive that is not a docx");
    f = ing_detect("fake.docx", NULL, (const char *)z, zn, &why);
    assert_null(f);
    assert_non_null(strstr(why, "word/document.xml"));
    /* images, binary, unknown */
    static const char png[] = "\x89PNG\r\n\x1a\n\0\0\0\rIHDR";
    f = ing_detect("logo.png", NULL, png, sizeof png - 1, &why);
    assert_null(f);
    assert_string_equal(why, "image/png");
    f = ing_detect("logo", NULL, png, sizeof png - 1, &why);
    assert_null(f);
    assert_string_equal(why, "image/png");
    f = ing_detect("notes.txt", NULL, png, sizeof png - 1, &why);
    assert_null(f);
    static const char bin[] = "abc\0def\x01\x02";
    f = ing_detect("data", NULL, bin, sizeof bin - 1, &why);
    assert_null(f);
    assert_string_equal(why, "binary content");
    f = ing_detect("notes.txt", NULL, bin, sizeof bin - 1, &why);
    assert_null(f);
    assert_string_equal(why, "binary content");
    f = ing_detect("model.xyz", NULL, txt, sizeof txt - 1, &why);
    assert_null(f);
    assert_string_equal(why, "unsupported file type");
    static const char latin1[] = "caf\xe9\n";
    f = ing_detect("noext", NULL, latin1, sizeof latin1 - 1, &why);
    assert_null(f); /* no extension and not UTF-8: not taken for text */
    f = ing_detect("noext.txt", NULL, latin1, sizeof latin1 - 1, &why);
    assert_string_equal(f->name, "text"); /* named text: repaired, not rejected */
    /* the real documents */
    f = ing_detect(R_INTRO, NULL, "%PDF-1.5", 8, &why);
    assert_string_equal(f->name, "pdf");
    size_t n;
    char *d = slurp(FIX_DOCX, &n);
    if (d) {
        f = ing_detect(FIX_DOCX, NULL, d, n, &why);
        assert_string_equal(f->name, "docx");
        free(d);
    }
}

/* ---- structured text ------------------------------------------------------ */

static void test_text_add(void **state)
{
    (void)state;
    ing_text t;
    ing_text_init(&t, 0);
    assert_int_equal(ing_text_add(&t, ING_BLK_PARA, 0, 0, 1, 1, " \t\n ", 4), 0);
    assert_int_equal(t.n_blocks, 0); /* empty after cleaning: nothing added */
    assert_int_equal(ing_text_add(&t, ING_BLK_PARA, 0, 0, 1, 2, "  a \t b\n\nc \x07", 12), 0);
    assert_int_equal(ing_text_add(&t, ING_BLK_CODE, 0, 0, 3, 5, "\n  x\t= 1;  \r\n\n  y\n\n", 19), 0);
    assert_int_equal(ing_text_add(&t, ING_BLK_TABLE, 0, 0, 6, 7, " a  |  b \n\n c | d ", 19), 0);
    assert_int_equal(ing_text_add(&t, ING_BLK_HEADING, 9, 0, 0, 0, "H", 1), 0);
    assert_string_equal(t.text.data, "a b c\n\n  x\t= 1;\n\n  y\n\na | b\nc | d\n\nH");
    assert_int_equal(t.blocks[3].level, 6);
    assert_int_equal(ing_text_set_title(&t, "  My \n title ", 13), 0);
    assert_string_equal(t.title, "My title");
    assert_int_equal(ing_text_set_title(&t, "   ", 3), 0);
    assert_null(t.title);
    ing_text_free(&t);
    ing_text_init(&t, 8);
    assert_int_equal(ing_text_add(&t, ING_BLK_PARA, 0, 0, 0, 0, "12345", 5), 0);
    assert_int_equal(ing_text_add(&t, ING_BLK_PARA, 0, 0, 0, 0, "12", 2), DOC_ELIMIT);
    assert_int_equal(t.n_blocks, 1);
    assert_int_equal(t.text.len, 5);
    ing_text_free(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_text_add),     cmocka_unit_test(test_detect),
        cmocka_unit_test(test_plain),        cmocka_unit_test(test_markdown),
        cmocka_unit_test(test_html_hidden),  cmocka_unit_test(test_html_sqlite),
        cmocka_unit_test(test_html_postgres), cmocka_unit_test(test_pdf_small),
        cmocka_unit_test(test_pdf_r_intro),  cmocka_unit_test(test_pdf_truncated_real),
        cmocka_unit_test(test_docx_pandoc),  cmocka_unit_test(test_docx_bad),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
