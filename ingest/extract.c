/*
 * extract.c - structured text (ing_text), format detection and the plain-text
 * extractor.
 *
 * ing_text is the one shape every extractor produces: cleaned UTF-8 blocks in
 * document order inside one capped buffer, "\n\n" between blocks, each block
 * remembering its kind, heading level, page and source lines.  Cleaning is done
 * here, once, so the extractors only have to find the text and its structure.
 *
 * ing_detect is a table lookup: content type first, then the name's extension,
 * then magic bytes (PDF, zip, HTML).  Text formats are refused when the first
 * 8 KiB hold NUL bytes (binary content) unless a UTF-16 byte-order mark says
 * otherwise.
 *
 * Encoding repair (ing_repair_utf8): valid UTF-8 passes through (a BOM is
 * dropped); text with a UTF-16 BOM is transcoded; text that is not valid UTF-8
 * and holds no valid multi-byte UTF-8 sequence at all is taken to be Windows-1252
 * (a superset of Latin-1 in its printable range) and transcoded; anything else
 * (mostly UTF-8 with some bad bytes) keeps its bytes and ing_text_add replaces
 * each bad byte by U+FFFD.
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "ingest/internal.h"

#define TEXT_DEFAULT_MAX ((size_t)256 << 20)
#define TITLE_MAX 1024                     /* bytes; longer titles are cut at a character */
#define PLAIN_MAX_INPUT ((size_t)256 << 20) /* plain text input cap */
#define SNIFF_BYTES 8192                   /* bytes looked at for NULs / UTF-8 */

/* ==== structured text ===================================================== */

void ing_text_init(ing_text *t, size_t max_bytes)
{
    memset(t, 0, sizeof *t);
    buf_init(&t->text, max_bytes ? max_bytes : TEXT_DEFAULT_MAX);
}

void ing_text_free(ing_text *t)
{
    if (!t) return;
    buf_free(&t->text);
    free(t->blocks);
    free(t->title);
    t->blocks = NULL;
    t->title = NULL;
    t->n_blocks = t->cap_blocks = 0;
    t->n_pages = 0;
}

enum { CLEAN_COLLAPSE, CLEAN_LINES, CLEAN_CODE };

static int is_hspace(uint32_t c)
{
    return c == ' ' || c == '\t' || c == 0xA0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200A) ||
           c == 0x202F || c == 0x205F || c == 0x3000;
}

static int is_vspace(uint32_t c)
{
    return c == '\n' || c == '\r' || c == '\v' || c == '\f' || c == 0x85 || c == 0x2028 ||
           c == 0x2029;
}

/* dropped outright: C0/C1 controls (other than whitespace), DEL, BOM/ZWNBSP,
 * and the non-characters U+FFFE/U+FFFF */
static int is_dropped(uint32_t c)
{
    return (c < 0x20 && !is_hspace(c) && !is_vspace(c)) || c == 0x7F ||
           (c >= 0x80 && c < 0xA0 && c != 0x85) || c == 0xFEFF || c == 0xFFFE || c == 0xFFFF;
}

/*
 * clean: s[0..n) into out (room for 3*n + 1 bytes), per mode.  COLLAPSE: all
 * whitespace runs become one space, trimmed.  LINES: horizontal runs become one
 * space, every line trimmed, empty lines dropped.  CODE: lines kept as they
 * are (tabs too) but trailing blanks trimmed and leading/trailing empty lines
 * dropped.  Returns the output length.
 */
static size_t clean(const char *s, size_t n, int mode, char *out)
{
    size_t o = 0, line0 = 0; /* line0: start of the current output line */
    int pend_space = 0, pend_nl = 0;
    size_t i = 0;
    while (i < n) {
        uint32_t c;
        int k = utf8_decode(s + i, n - i, &c);
        if (k == 0) {
            c = 0xFFFD;
            k = 1;
        }
        if (c == '\r' && i + 1 < n && s[i + 1] == '\n') { /* CRLF is one break */
            i++;
            continue;
        }
        i += (size_t)k;
        if (is_dropped(c)) continue;
        int vs = is_vspace(c), hs = is_hspace(c);
        if (mode == CLEAN_COLLAPSE) {
            if (vs || hs) {
                pend_space = o > 0;
                continue;
            }
        } else if (mode == CLEAN_LINES) {
            if (vs) {
                if (o > line0) pend_nl = 1;
                pend_space = 0;
                continue;
            }
            if (hs) {
                pend_space = o > line0;
                continue;
            }
        } else { /* CODE */
            if (vs) {
                while (o > line0 && (out[o - 1] == ' ' || out[o - 1] == '\t')) o--;
                if (o > 0) pend_nl++;
                line0 = o;
                continue;
            }
            if (hs && c != '\t') c = ' ';
        }
        if (pend_nl) {
            for (int j = 0; j < pend_nl; j++) out[o++] = '\n';
            pend_nl = 0;
            line0 = o;
            pend_space = 0;
        }
        if (pend_space) {
            out[o++] = ' ';
            pend_space = 0;
        }
        o += (size_t)utf8_encode(c, out + o);
    }
    if (mode == CLEAN_CODE)
        while (o > line0 && (out[o - 1] == ' ' || out[o - 1] == '\t')) o--;
    while (o > 0 && out[o - 1] == '\n') o--;
    out[o] = 0;
    return o;
}

static int clean_mode(int kind)
{
    if (kind == ING_BLK_CODE) return CLEAN_CODE;
    if (kind == ING_BLK_TABLE) return CLEAN_LINES;
    return CLEAN_COLLAPSE;
}

int ing_text_add(ing_text *t, int kind, int level, int page, int line_start, int line_end,
                 const char *s, size_t n)
{
    if (n > t->text.max) return DOC_ELIMIT; /* cleaning never shrinks below n/4 */
    if (n > (SIZE_MAX - 8) / 3) return DOC_ELIMIT;
    char *tmp = malloc(3 * n + 1);
    if (!tmp) return DOC_ENOMEM;
    int rc = DOC_OK;
    size_t m = clean(s, n, clean_mode(kind), tmp);
    if (m == 0) goto done;
    if (t->n_blocks == t->cap_blocks) {
        int cap = t->cap_blocks ? t->cap_blocks * 2 : 64;
        ing_block *nb = realloc(t->blocks, (size_t)cap * sizeof *nb);
        if (!nb) {
            rc = DOC_ENOMEM;
            goto done;
        }
        t->blocks = nb;
        t->cap_blocks = cap;
    }
    size_t sep = t->n_blocks ? 2 : 0;
    rc = buf_reserve(&t->text, sep + m);
    if (rc) goto done;
    if (sep) buf_append(&t->text, "\n\n", 2);
    ing_block *b = &t->blocks[t->n_blocks++];
    b->kind = kind;
    b->level = kind == ING_BLK_HEADING ? (level < 1 ? 1 : level > 6 ? 6 : level) : 0;
    b->page = page > 0 ? page : 0;
    b->line_start = line_start > 0 ? line_start : 0;
    b->line_end = line_end >= b->line_start ? line_end : b->line_start;
    b->off = t->text.len;
    b->len = m;
    buf_append(&t->text, tmp, m);
done:
    free(tmp);
    return rc;
}

int ing_text_set_title(ing_text *t, const char *s, size_t n)
{
    if (n > 4 * TITLE_MAX) n = 4 * TITLE_MAX; /* enough input for TITLE_MAX output */
    char *tmp = malloc(3 * n + 1);
    if (!tmp) return DOC_ENOMEM;
    size_t m = clean(s, n, CLEAN_COLLAPSE, tmp);
    if (m > TITLE_MAX) { /* cut at a character boundary */
        m = TITLE_MAX;
        while (m > 0 && ((unsigned char)tmp[m] & 0xC0) == 0x80) m--;
        while (m > 0 && tmp[m - 1] == ' ') m--;
        tmp[m] = 0;
    }
    free(t->title);
    t->title = NULL;
    if (m == 0) {
        free(tmp);
        return DOC_OK;
    }
    t->title = tmp;
    return DOC_OK;
}

/* ==== encoding repair ===================================================== */

/* Windows-1252's 0x80..0x9F; 0 where undefined (becomes U+FFFD). */
static const uint16_t cp1252_hi[32] = {
    0x20AC, 0,      0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021,
    0x02C6, 0x2030, 0x0160, 0x2039, 0x0152, 0,      0x017D, 0,
    0,      0x2018, 0x2019, 0x201C, 0x201D, 0x2022, 0x2013, 0x2014,
    0x02DC, 0x2122, 0x0161, 0x203A, 0x0153, 0,      0x017E, 0,
};

/* has_utf8_multibyte: 1 when s holds at least one valid multi-byte sequence. */
static int has_utf8_multibyte(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (!((unsigned char)s[i] & 0x80)) continue;
        uint32_t c;
        int k = utf8_decode(s + i, n - i, &c);
        if (k > 1) return 1;
    }
    return 0;
}

static int utf16_to_utf8(const unsigned char *s, size_t n, int be, char **out, size_t *out_len)
{
    size_t units = n / 2;
    char *o = malloc(units * 3 + 1);
    if (!o) return DOC_ENOMEM;
    size_t m = 0;
    for (size_t i = 0; i < units; i++) {
        uint32_t u = be ? (uint32_t)(s[2 * i] << 8 | s[2 * i + 1])
                        : (uint32_t)(s[2 * i + 1] << 8 | s[2 * i]);
        if (u >= 0xD800 && u < 0xDC00 && i + 1 < units) {
            uint32_t v = be ? (uint32_t)(s[2 * i + 2] << 8 | s[2 * i + 3])
                            : (uint32_t)(s[2 * i + 3] << 8 | s[2 * i + 2]);
            if (v >= 0xDC00 && v < 0xE000) {
                u = 0x10000 + ((u - 0xD800) << 10) + (v - 0xDC00);
                i++;
            } else {
                u = 0xFFFD;
            }
        } else if (u >= 0xD800 && u < 0xE000) {
            u = 0xFFFD;
        }
        m += (size_t)utf8_encode(u, o + m);
    }
    o[m] = 0;
    *out = o;
    *out_len = m;
    return DOC_OK;
}

int ing_repair_utf8(const char *data, size_t len, char **out, size_t *out_len)
{
    const unsigned char *u = (const unsigned char *)data;
    *out = NULL;
    *out_len = 0;
    if (len >= 2 && ((u[0] == 0xFF && u[1] == 0xFE) || (u[0] == 0xFE && u[1] == 0xFF)))
        return utf16_to_utf8(u + 2, len - 2, u[0] == 0xFE, out, out_len);
    if (len >= 3 && u[0] == 0xEF && u[1] == 0xBB && u[2] == 0xBF) {
        data += 3;
        len -= 3;
    }
    char *o;
    if (utf8_valid(data, len) || has_utf8_multibyte(data, len)) {
        if (len > SIZE_MAX - 1 || !(o = malloc(len + 1))) return DOC_ENOMEM;
        memcpy(o, data, len);
        o[len] = 0;
        *out = o;
        *out_len = len;
        return DOC_OK;
    }
    if (len > (SIZE_MAX - 1) / 3 || !(o = malloc(3 * len + 1))) return DOC_ENOMEM;
    size_t m = 0;
    for (size_t i = 0; i < len; i++) {
        uint32_t c = (unsigned char)data[i];
        if (c >= 0x80 && c < 0xA0) c = cp1252_hi[c - 0x80] ? cp1252_hi[c - 0x80] : 0xFFFD;
        m += (size_t)utf8_encode(c, o + m);
    }
    o[m] = 0;
    *out = o;
    *out_len = m;
    return DOC_OK;
}

/* ==== plain text ========================================================== */

static int is_blank_line(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\f' && s[i] != '\v')
            return 0;
    return 1;
}

int ing_extract_plain(const char *data, size_t len, const char *name, ing_text *t, doc_err *err)
{
    if (len > PLAIN_MAX_INPUT)
        return doc_errf(err, DOC_ELIMIT, "%s: text larger than %zu MiB", name,
                        PLAIN_MAX_INPUT >> 20);
    char *s = NULL;
    size_t n = 0;
    int rc = ing_repair_utf8(data, len, &s, &n);
    if (rc) {
        doc_errf(err, rc, "%s: out of memory", name);
        goto done;
    }
    size_t para = 0;   /* offset where the current paragraph starts */
    int para_line = 0; /* its first line, 0 when none is open */
    int line = 1, last_line = 0;
    size_t i = 0;
    while (i <= n) {
        const char *nl = i < n ? memchr(s + i, '\n', n - i) : NULL;
        size_t e = nl ? (size_t)(nl - s) : n;
        if (is_blank_line(s + i, e - i)) {
            if (para_line) {
                rc = ing_text_add(t, ING_BLK_PARA, 0, 0, para_line, last_line, s + para, i - para);
                if (rc) goto fail_add;
                para_line = 0;
            }
        } else {
            if (!para_line) {
                para = i;
                para_line = line;
            }
            last_line = line;
        }
        if (!nl) break;
        i = e + 1;
        if (line < INT32_MAX) line++;
    }
    if (para_line) {
        rc = ing_text_add(t, ING_BLK_PARA, 0, 0, para_line, last_line, s + para, n - para);
        if (rc) goto fail_add;
    }
    goto done;
fail_add:
    if (rc == DOC_ELIMIT)
        doc_errf(err, rc, "%s: text larger than the %zu-byte cap (line %d)", name, t->text.max,
                 line);
    else
        doc_errf(err, rc, "%s: out of memory", name);
done:
    free(s);
    return rc;
}

/* ==== detection =========================================================== */

typedef struct format_entry {
    ing_format fmt;
    const char *exts;   /* space-separated, with the dot */
    const char *ctypes; /* space-separated MIME types */
    int textual;        /* refuse binary-looking content */
} format_entry;

static const format_entry formats[] = {
    {{"text", "text/plain", ing_extract_plain},
     ".txt .text .rst .log .csv .tsv", "text/plain", 1},
    {{"markdown", "text/markdown", ing_extract_markdown},
     ".md .markdown .mdown .mkd .mkdn", "text/markdown text/x-markdown", 1},
    {{"html", "text/html", ing_extract_html},
     ".html .htm .xhtml", "text/html application/xhtml+xml", 1},
    {{"pdf", "application/pdf", ing_extract_pdf}, ".pdf", "application/pdf application/x-pdf", 0},
    {{"docx", "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
      ing_extract_docx},
     ".docx", "application/vnd.openxmlformats-officedocument.wordprocessingml.document", 0},
};
enum { F_TEXT, F_MARKDOWN, F_HTML, F_PDF, F_DOCX, F_COUNT };

/* magic numbers of common binary files nobody should feed as text */
static const struct {
    const char *magic;
    size_t len;
    const char *what;
} binary_magic[] = {
    {"\x89PNG\r\n\x1a\n", 8, "image/png"},
    {"\xff\xd8\xff", 3, "image/jpeg"},
    {"GIF87a", 6, "image/gif"},
    {"GIF89a", 6, "image/gif"},
    {"II*\0", 4, "image/tiff"},
    {"MM\0*", 4, "image/tiff"},
    {"BM", 2, "image/bmp"},
    {"\x1f\x8b", 2, "application/gzip"},
    {"\x7f" "ELF", 4, "application/x-executable"},
    {"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", 8, "application/x-ole-storage (.doc/.xls)"},
    {"7z\xbc\xaf\x27\x1c", 6, "application/x-7z-compressed"},
    {"Rar!", 4, "application/x-rar"},
};

/* word_in: 1 when w[0..n) is one of the space-separated words of list (ASCII
 * case-insensitive). */
static int word_in(const char *list, const char *w, size_t n)
{
    const char *p = list;
    while (*p) {
        while (*p == ' ') p++;
        const char *e = p;
        while (*e && *e != ' ') e++;
        if ((size_t)(e - p) == n && n && strncasecmp(p, w, n) == 0) return 1;
        p = e;
    }
    return 0;
}

/* extension: the ".ext" of the last path component of name (a path or a URL,
 * query and fragment ignored); n = 0 when none. */
static const char *extension(const char *name, size_t *n)
{
    *n = 0;
    if (!name) return NULL;
    int url = strncasecmp(name, "http://", 7) == 0 || strncasecmp(name, "https://", 8) == 0;
    size_t end = url ? strcspn(name, "?#") : strlen(name);
    const char *base = name;
    for (size_t i = 0; i < end; i++)
        if (name[i] == '/') base = name + i + 1;
    const char *dot = NULL;
    for (const char *p = base; p < name + end; p++)
        if (*p == '.') dot = p;
    if (!dot || dot == base) return NULL; /* ".bashrc" has no extension */
    *n = (size_t)(name + end - dot);
    return dot;
}

static int starts_with_ci(const char *s, size_t n, const char *pre)
{
    size_t k = strlen(pre);
    return n >= k && strncasecmp(s, pre, k) == 0;
}

static int looks_html(const char *d, size_t n)
{
    if (n > SNIFF_BYTES) n = SNIFF_BYTES;
    size_t i = 0;
    if (n >= 3 && memcmp(d, "\xEF\xBB\xBF", 3) == 0) i = 3;
    for (;;) {
        while (i < n && isspace((unsigned char)d[i])) i++;
        if (starts_with_ci(d + i, n - i, "<!--")) { /* leading comments */
            const char *e = memmem(d + i, n - i, "-->", 3);
            if (!e) return 0;
            i = (size_t)(e - d) + 3;
            continue;
        }
        if (starts_with_ci(d + i, n - i, "<?xml")) { /* XHTML prolog */
            const char *e = memchr(d + i, '>', n - i);
            if (!e) return 0;
            i = (size_t)(e - d) + 1;
            continue;
        }
        break;
    }
    return starts_with_ci(d + i, n - i, "<!doctype html") || starts_with_ci(d + i, n - i, "<html");
}

static int looks_pdf(const char *d, size_t n)
{
    if (n > 1024) n = 1024; /* the header may follow some junk */
    return n >= 5 && memmem(d, n, "%PDF-", 5) != NULL;
}

static int is_zip(const char *d, size_t n) { return n >= 4 && memcmp(d, "PK\x03\x04", 4) == 0; }

/* zip_has_docx_part: the main part's name appears in the archive (local or
 * central headers store names uncompressed). */
static int zip_has_docx_part(const char *d, size_t n)
{
    return memmem(d, n, "word/document.xml", 17) != NULL;
}

static int has_utf16_bom(const char *d, size_t n)
{
    const unsigned char *u = (const unsigned char *)d;
    return n >= 2 && ((u[0] == 0xFF && u[1] == 0xFE) || (u[0] == 0xFE && u[1] == 0xFF));
}

/* binary_why: non-NULL when the first bytes look binary. */
static const char *binary_why(const char *d, size_t n)
{
    for (size_t i = 0; i < sizeof binary_magic / sizeof binary_magic[0]; i++)
        if (n >= binary_magic[i].len && memcmp(d, binary_magic[i].magic, binary_magic[i].len) == 0)
            return binary_magic[i].what;
    if (n >= 12 && memcmp(d, "RIFF", 4) == 0 && memcmp(d + 8, "WEBP", 4) == 0)
        return "image/webp";
    if (has_utf16_bom(d, n)) return NULL;
    size_t k = n < SNIFF_BYTES ? n : SNIFF_BYTES;
    if (memchr(d, 0, k)) return "binary content";
    return NULL;
}

/* text_ok: the sniffed prefix is UTF-8 (a sequence cut at the edge allowed). */
static int text_ok(const char *d, size_t n)
{
    size_t k = n < SNIFF_BYTES ? n : SNIFF_BYTES;
    if (utf8_valid(d, k)) return 1;
    if (k < n) /* the cut may split a character: allow up to 3 bytes short */
        for (size_t cut = 1; cut <= 3 && cut < k; cut++)
            if (utf8_valid(d, k - cut)) return 1;
    return 0;
}

const ing_format *ing_format_find(const char *name)
{
    for (int i = 0; i < F_COUNT; i++)
        if (!strcmp(formats[i].fmt.name, name)) return &formats[i].fmt;
    return NULL;
}

const ing_format *ing_detect(const char *name, const char *content_type, const char *data,
                             size_t len, const char **why)
{
    const char *dummy;
    if (!why) why = &dummy;
    *why = NULL;
    if (!data) len = 0;
    size_t el = 0;
    const char *ext = extension(name, &el);
    int f = -1;

    /* 1. content type, parameters ignored */
    if (content_type && *content_type) {
        size_t cl = strcspn(content_type, ";");
        while (cl > 0 && isspace((unsigned char)content_type[cl - 1])) cl--;
        while (cl > 0 && isspace((unsigned char)*content_type)) {
            content_type++;
            cl--;
        }
        for (int i = 0; i < F_COUNT && f < 0; i++)
            if (word_in(formats[i].ctypes, content_type, cl)) f = i;
        /* servers often label Markdown text/plain */
        if (f == F_TEXT && ext && word_in(formats[F_MARKDOWN].exts, ext, el)) f = F_MARKDOWN;
    }
    /* 2. magic of the binary formats wins over a wrong or missing label */
    if (f < 0 || f == F_TEXT) {
        if (looks_pdf(data, len)) f = F_PDF;
        else if (is_zip(data, len) && (zip_has_docx_part(data, len) ||
                                        (ext && word_in(formats[F_DOCX].exts, ext, el))))
            f = F_DOCX;
    }
    /* 3. extension */
    if (f < 0 && ext)
        for (int i = 0; i < F_COUNT && f < 0; i++)
            if (word_in(formats[i].exts, ext, el)) f = i;
    /* 4. sniffing when nothing named the format */
    if (f < 0) {
        if (looks_html(data, len)) f = F_HTML;
        else if (ext) {
            *why = "unsupported file type";
            goto unknown;
        } else {
            const char *b = binary_why(data, len);
            if (b || !text_ok(data, len)) {
                *why = b ? b : "binary content";
                goto unknown;
            }
            f = F_TEXT;
        }
    }
    if (f == F_DOCX && is_zip(data, len) == 0 && len > 0) {
        *why = "not a zip archive";
        return NULL;
    }
    if (f == F_DOCX && len > 0 && !zip_has_docx_part(data, len)) {
        *why = "zip archive without word/document.xml";
        return NULL;
    }
    if (f == F_PDF && len > 0 && !looks_pdf(data, len)) {
        *why = "no %PDF- header";
        return NULL;
    }
    if (formats[f].textual) {
        const char *b = binary_why(data, len);
        if (b) {
            *why = b;
            return NULL;
        }
    }
    return &formats[f].fmt;
unknown:
    if (strcmp(*why, "unsupported file type") == 0) {
        /* a binary magic says more than the extension */
        const char *b = binary_why(data, len);
        if (b && strcmp(b, "binary content") != 0) *why = b;
        else if (is_zip(data, len)) *why = "zip archive that is not a docx";
    }
    return NULL;
}
