/*
 * extract_pdf.c - PDF to structured text through poppler-glib, page by page.
 *
 * Each page's text comes from poppler_page_get_text (reading order, one line
 * per text line) and poppler_page_get_text_layout (one box per character of
 * that text), which gives each line its vertical position.  A page is split
 * into paragraphs at blank lines and where the gap between two lines is
 * clearly larger than the page's usual line spacing (or the text jumps back
 * up, as at a new column).  A word hyphenated across a line end ("exam-" /
 * "ple") is joined when a lower-case letter precedes the hyphen and starts
 * the next line.
 *
 * Running headers and footers: the first two and last two lines of every page
 * are compared across pages with their digits ignored; a line seen in that
 * place on at least two pages, and any such
 * line that is only a page number, is dropped.  A page number the reading
 * order put elsewhere is found from the numbering seen at the edges of the
 * other pages (page index minus printed number is mostly constant).
 *
 * poppler reports damaged files through glib's log ("Poppler" domain); those
 * messages are routed to docent's debug log by a handler installed once per
 * process (glib's handler table is process-wide; nothing else is global).
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include <poppler.h>

#include "ingest/internal.h"

#define PDF_MAX_INPUT ((size_t)512 << 20)
#define PDF_MAX_PAGES 100000
#define EDGE_LINES 2

typedef struct pdf_line {
    const char *s;       /* into the page text, not NUL-terminated */
    size_t n;
    double top, bottom;  /* from the character boxes; 0, 0 when unknown */
    int drop;
} pdf_line;

typedef struct pdf_page {
    char *text;          /* g_free */
    pdf_line *lines;
    int n_lines;
} pdf_page;

static void poppler_log(const gchar *domain, GLogLevelFlags level, const gchar *msg, gpointer ud)
{
    (void)domain;
    (void)level;
    (void)ud;
    log_debug("poppler: %s", msg);
}

static void quiet_poppler_once(void)
{
    static gsize done = 0; /* g_once state: the one piece of process state here */
    if (g_once_init_enter(&done)) {
        g_log_set_handler("Poppler", G_LOG_LEVEL_MASK | G_LOG_FLAG_FATAL | G_LOG_FLAG_RECURSION,
                          poppler_log, NULL);
        g_once_init_leave(&done, 1);
    }
}

/* split_lines: the page text into lines, with each line's vertical extent
 * from the character boxes when their count matches the text. */
static int split_lines(PopplerPage *page, pdf_page *pg)
{
    PopplerRectangle *rects = NULL;
    guint n_rects = 0;
    const char *s = pg->text;
    size_t len = strlen(s);
    glong n_chars = g_utf8_validate(s, (gssize)len, NULL) ? g_utf8_strlen(s, (gssize)len) : -1;
    if (!poppler_page_get_text_layout(page, &rects, &n_rects) || n_chars < 0 ||
        (glong)n_rects != n_chars) {
        g_free(rects);
        rects = NULL;
        n_rects = 0;
    }
    int cap = 1;
    for (size_t i = 0; i < len; i++)
        if (s[i] == '\n') cap++;
    pg->lines = calloc((size_t)cap, sizeof *pg->lines);
    if (!pg->lines) {
        g_free(rects);
        return DOC_ENOMEM;
    }
    size_t i = 0;
    guint ci = 0; /* character index for the boxes */
    while (i <= len) {
        const char *nl = memchr(s + i, '\n', len - i);
        size_t e = nl ? (size_t)(nl - s) : len;
        pdf_line *l = &pg->lines[pg->n_lines++];
        l->s = s + i;
        l->n = e - i;
        double top = 0, bottom = 0;
        int have = 0;
        for (size_t j = i; j < e; j = (size_t)(g_utf8_next_char(s + j) - s), ci++) {
            if (!rects || ci >= n_rects || s[j] == ' ') continue;
            const PopplerRectangle *r = &rects[ci];
            double y1 = r->y1 < r->y2 ? r->y1 : r->y2, y2 = r->y1 < r->y2 ? r->y2 : r->y1;
            if (!have || y1 < top) top = y1;
            if (!have || y2 > bottom) bottom = y2;
            have = 1;
        }
        l->top = top;
        l->bottom = bottom;
        ci++; /* the '\n' has a box too */
        if (!nl) break;
        i = e + 1;
    }
    g_free(rects);
    return DOC_OK;
}

static int is_blank(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!isspace((unsigned char)s[i])) return 0;
    return 1;
}

/* edge_key: a line with digits removed and spaces collapsed, for comparing
 * running headers across pages ("Chapter 2 ... 14" ~ "Chapter 2 ... 15" is
 * not wanted: only the digits go).  Writes at most cap-1 bytes. */
static void edge_key(const char *s, size_t n, char *out, size_t cap)
{
    size_t k = 0;
    int sp = 0;
    for (size_t i = 0; i < n && k + 1 < cap; i++) {
        unsigned char c = (unsigned char)s[i];
        if (isdigit(c)) continue;
        if (isspace(c)) {
            sp = k > 0;
            continue;
        }
        if (sp && k + 2 < cap) out[k++] = ' ';
        sp = 0;
        out[k++] = (char)c;
    }
    out[k] = 0;
}

static int is_page_number(const char *s, size_t n)
{
    size_t a = 0, b = n;
    while (a < b && isspace((unsigned char)s[a])) a++;
    while (b > a && isspace((unsigned char)s[b - 1])) b--;
    if (a == b || b - a > 12) return 0;
    int digits = 1, roman = 1;
    for (size_t i = a; i < b; i++) {
        char c = (char)tolower((unsigned char)s[i]);
        if (!isdigit((unsigned char)c)) digits = 0;
        if (!strchr("ivxlc", c)) roman = 0;
    }
    if (digits || roman) return 1;
    /* "Page 3", "- 3 -", "3 of 10" */
    char k[64];
    edge_key(s + a, b - a, k, sizeof k);
    return strcmp(k, "Page") == 0 || strcmp(k, "page") == 0 || strcmp(k, "- -") == 0 ||
           strcmp(k, "of") == 0 || strcmp(k, "Page of") == 0 || strcmp(k, "--") == 0;
}

/* edge lines: indices of the first / last EDGE_LINES non-blank lines */
static int edge_lines(const pdf_page *pg, int *idx)
{
    int k = 0;
    for (int i = 0, c = 0; i < pg->n_lines && c < EDGE_LINES; i++)
        if (!is_blank(pg->lines[i].s, pg->lines[i].n)) {
            idx[k++] = i;
            c++;
        }
    for (int i = pg->n_lines - 1, c = 0; i >= 0 && c < EDGE_LINES; i--)
        if (!is_blank(pg->lines[i].s, pg->lines[i].n)) {
            int dup = 0;
            for (int j = 0; j < k; j++) dup |= idx[j] == i;
            if (!dup) idx[k++] = i;
            c++;
        }
    return k;
}

typedef struct key_page {
    uint64_t h;
    int page;
} key_page;

static int cmp_key_page(const void *x, const void *y)
{
    const key_page *a = x, *b = y;
    if (a->h != b->h) return a->h < b->h ? -1 : 1;
    return (a->page > b->page) - (a->page < b->page);
}

/* pages_with: on how many distinct pages key h sits at an edge (kp sorted). */
static int pages_with(const key_page *kp, int n, uint64_t h)
{
    int lo = 0, hi = n;
    while (lo < hi) {
        int mid = lo + (hi - lo) / 2;
        if (kp[mid].h < h) lo = mid + 1;
        else hi = mid;
    }
    int count = 0, last = -1;
    for (int i = lo; i < n && kp[i].h == h; i++)
        if (kp[i].page != last) {
            count++;
            last = kp[i].page;
        }
    return count;
}

static uint64_t line_key(const pdf_line *l)
{
    char key[512];
    edge_key(l->s, l->n, key, sizeof key);
    return key[0] ? hash64(key, strlen(key)) : 0;
}

static int cmp_int(const void *x, const void *y)
{
    int a = *(const int *)x, b = *(const int *)y;
    return (a > b) - (a < b);
}

static long line_number_value(const pdf_line *l)
{
    size_t a = 0, b = l->n;
    while (a < b && isspace((unsigned char)l->s[a])) a++;
    while (b > a && isspace((unsigned char)l->s[b - 1])) b--;
    if (a == b || b - a > 6) return -1;
    long v = 0;
    for (size_t i = a; i < b; i++) {
        if (!isdigit((unsigned char)l->s[i])) return -1;
        v = v * 10 + (l->s[i] - '0');
    }
    return v;
}

/* drop_page_numbers: printed page numbers that the reading order put away
 * from the page edges (next to a figure, say).  The usual difference between
 * a page's index and the number printed at its edges is learnt first; then a
 * line holding exactly the expected number is dropped wherever it sits. */
static void drop_page_numbers(pdf_page *pages, int n_pages)
{
    int *off = malloc(((size_t)n_pages * 2 * EDGE_LINES + 1) * sizeof *off);
    if (!off) return; /* only a refinement */
    int n = 0;
    for (int p = 0; p < n_pages; p++) {
        int idx[2 * EDGE_LINES];
        int k = edge_lines(&pages[p], idx);
        for (int j = 0; j < k; j++) {
            long v = line_number_value(&pages[p].lines[idx[j]]);
            if (v >= 0) off[n++] = p + 1 - (int)v;
        }
    }
    qsort(off, (size_t)n, sizeof *off, cmp_int);
    int best = 0, best_count = 0;
    for (int i = 0; i < n;) {
        int j = i;
        while (j < n && off[j] == off[i]) j++;
        if (j - i > best_count) {
            best_count = j - i;
            best = off[i];
        }
        i = j;
    }
    free(off);
    if (best_count < 3) return;
    for (int p = 0; p < n_pages; p++)
        for (int i = 0; i < pages[p].n_lines; i++)
            if (line_number_value(&pages[p].lines[i]) == (long)(p + 1 - best))
                pages[p].lines[i].drop = 1;
}

/* mark_running: drop page numbers and lines repeated at page edges. */
static int mark_running(pdf_page *pages, int n_pages)
{
    key_page *kp = malloc(((size_t)n_pages * 2 * EDGE_LINES + 1) * sizeof *kp);
    if (!kp) return DOC_ENOMEM;
    int n = 0;
    for (int p = 0; p < n_pages; p++) {
        int idx[2 * EDGE_LINES];
        int k = edge_lines(&pages[p], idx);
        for (int j = 0; j < k; j++) {
            uint64_t h = line_key(&pages[p].lines[idx[j]]);
            if (h) kp[n++] = (key_page){h, p};
        }
    }
    qsort(kp, (size_t)n, sizeof *kp, cmp_key_page);
    int need = 2;
    for (int p = 0; p < n_pages; p++) {
        int idx[2 * EDGE_LINES];
        int k = edge_lines(&pages[p], idx);
        for (int j = 0; j < k; j++) {
            pdf_line *l = &pages[p].lines[idx[j]];
            uint64_t h;
            if (is_page_number(l->s, l->n)) l->drop = 1;
            else if (n_pages >= 2 && (h = line_key(l)) && pages_with(kp, n, h) >= need) l->drop = 1;
        }
    }
    free(kp);
    drop_page_numbers(pages, n_pages);
    return DOC_OK;
}

/* spacing: the median line height and the lower-quartile gap between
 * consecutive lines of a page (0 when unknown) */
static void spacing(const pdf_page *pg, double *height, double *gap)
{
    int n = 0;
    double *hs = malloc((size_t)(pg->n_lines + 1) * 2 * sizeof *hs);
    *height = *gap = 0;
    if (!hs) return;
    double *gs = hs + pg->n_lines + 1;
    int ng = 0;
    const pdf_line *prev = NULL;
    for (int i = 0; i < pg->n_lines; i++) {
        const pdf_line *l = &pg->lines[i];
        if (l->bottom <= l->top) continue;
        hs[n++] = l->bottom - l->top;
        if (prev && l->top >= prev->bottom - 0.5 * (prev->bottom - prev->top))
            gs[ng++] = l->top - prev->bottom;
        prev = l;
    }
    /* insertion sort: pages have few lines */
    for (int a = 1; a < n; a++)
        for (int b = a; b > 0 && hs[b - 1] > hs[b]; b--) {
            double t = hs[b];
            hs[b] = hs[b - 1];
            hs[b - 1] = t;
        }
    for (int a = 1; a < ng; a++)
        for (int b = a; b > 0 && gs[b - 1] > gs[b]; b--) {
            double t = gs[b];
            gs[b] = gs[b - 1];
            gs[b - 1] = t;
        }
    if (n) *height = hs[n / 2];
    if (ng) *gap = gs[ng / 4]; /* the tight spacing of running text */
    free(hs);
}

/* emit_page: the kept lines of one page as paragraphs. */
static int emit_page(ing_text *t, const pdf_page *pg, int page_no, buf *para)
{
    double h, g;
    spacing(pg, &h, &g);
    buf_reset(para);
    const pdf_line *prev = NULL;
    int rc = 0;
    for (int i = 0; i <= pg->n_lines && !rc; i++) {
        const pdf_line *l = i < pg->n_lines ? &pg->lines[i] : NULL;
        int brk = !l;
        if (l && (l->drop || is_blank(l->s, l->n))) {
            if (l->drop) continue;
            brk = 1; /* blank line */
        }
        if (l && !brk && prev && h > 0 && l->bottom > l->top && prev->bottom > prev->top) {
            double gap = l->top - prev->bottom;
            if (gap > g + 0.5 * h) brk = 1;   /* clearly more than the usual spacing */
            if (l->bottom < prev->top) brk = 1; /* jumped up: a new column or box */
        }
        if (brk) {
            if (para->len) rc = ing_text_add(t, ING_BLK_PARA, 0, page_no, 0, 0, para->data, para->len);
            buf_reset(para);
            prev = NULL;
            if (!l || is_blank(l->s, l->n)) continue;
        }
        /* join: a hyphen at the end of the previous line between lower-case letters */
        size_t n = l->n;
        while (n > 0 && isspace((unsigned char)l->s[n - 1])) n--;
        size_t a = 0;
        while (a < n && isspace((unsigned char)l->s[a])) a++;
        if (para->len) {
            char last = para->data[para->len - 1];
            char before = para->len >= 2 ? para->data[para->len - 2] : 0;
            if (last == '-' && islower((unsigned char)before) && a < n &&
                islower((unsigned char)l->s[a])) {
                para->len--; /* drop the hyphen, no space */
                para->data[para->len] = 0;
            } else {
                rc = buf_putc(para, ' ');
            }
        }
        if (!rc) rc = buf_append(para, l->s + a, n - a);
        prev = l;
    }
    return rc;
}

int ing_extract_pdf(const char *data, size_t len, const char *name, ing_text *t, doc_err *err)
{
    if (len > PDF_MAX_INPUT)
        return doc_errf(err, DOC_ELIMIT, "%s: pdf larger than %zu MiB", name, PDF_MAX_INPUT >> 20);
    quiet_poppler_once();
    int rc = 0, n_pages = 0, p = 0;
    GError *gerr = NULL;
    pdf_page *pages = NULL;
    buf para;
    buf_init(&para, t->text.max);
    GBytes *bytes = g_bytes_new_static(data, len);
    PopplerDocument *doc = poppler_document_new_from_bytes(bytes, NULL, &gerr);
    if (!doc) {
        if (gerr && gerr->domain == POPPLER_ERROR && gerr->code == POPPLER_ERROR_ENCRYPTED)
            rc = doc_errf(err, DOC_EUNSUPPORTED, "%s: encrypted pdf", name);
        else
            rc = doc_errf(err, DOC_EFORMAT, "%s: not a readable pdf (%s)", name,
                          gerr && gerr->message ? gerr->message : "unknown error");
        goto done;
    }
    n_pages = poppler_document_get_n_pages(doc);
    if (n_pages < 0) n_pages = 0;
    if (n_pages > PDF_MAX_PAGES) {
        rc = doc_errf(err, DOC_ELIMIT, "%s: %d pages, more than %d", name, n_pages, PDF_MAX_PAGES);
        goto done;
    }
    t->n_pages = n_pages;
    pages = calloc((size_t)n_pages + 1, sizeof *pages);
    if (!pages) {
        rc = doc_errf(err, DOC_ENOMEM, "%s: out of memory", name);
        goto done;
    }
    /* text of every page first: running headers need them all */
    size_t total = 0;
    for (p = 0; p < n_pages; p++) {
        PopplerPage *page = poppler_document_get_page(doc, p);
        if (!page) continue; /* a broken page object: no text */
        pages[p].text = poppler_page_get_text(page);
        if (!pages[p].text) pages[p].text = g_strdup("");
        total += strlen(pages[p].text);
        if (total > t->text.max) {
            g_object_unref(page);
            rc = doc_errf(err, DOC_ELIMIT, "%s: page %d: text larger than the %zu-byte cap", name,
                          p + 1, t->text.max);
            goto done;
        }
        rc = split_lines(page, &pages[p]);
        g_object_unref(page);
        if (rc) {
            doc_errf(err, rc, "%s: page %d: out of memory", name, p + 1);
            goto done;
        }
    }
    rc = mark_running(pages, n_pages);
    if (rc) {
        doc_errf(err, rc, "%s: out of memory", name);
        goto done;
    }
    gchar *title = poppler_document_get_title(doc);
    if (title) {
        rc = ing_text_set_title(t, title, strlen(title));
        g_free(title);
        if (rc) {
            doc_errf(err, rc, "%s: out of memory", name);
            goto done;
        }
    }
    for (p = 0; p < n_pages; p++) {
        if (!pages[p].lines) continue;
        rc = emit_page(t, &pages[p], p + 1, &para);
        if (rc) {
            if (rc == DOC_ELIMIT)
                doc_errf(err, rc, "%s: page %d: text larger than the %zu-byte cap", name, p + 1,
                         t->text.max);
            else
                doc_errf(err, rc, "%s: page %d: out of memory", name, p + 1);
            goto done;
        }
    }
done:
    if (pages)
        for (int i = 0; i < n_pages; i++) {
            g_free(pages[i].text);
            free(pages[i].lines);
        }
    free(pages);
    buf_free(&para);
    if (doc) g_object_unref(doc);
    g_bytes_unref(bytes);
    if (gerr) g_error_free(gerr);
    return rc;
}
