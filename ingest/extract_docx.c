/*
 * extract_docx.c - DOCX (Office Open XML) to structured text through libzip
 * and libxml2.
 *
 * The archive is opened from memory; word/document.xml (and, when present,
 * word/styles.xml and docProps/core.xml) are read with a cap on their
 * uncompressed size, checked against the directory and again while reading,
 * so a zip bomb stops at the cap.  XML is parsed with XML_PARSE_NONET and
 * without XML_PARSE_NOENT: no entity is substituted and nothing is fetched,
 * so external entities and entity expansion bombs have nothing to act on;
 * entity reference nodes are never walked.
 *
 * Blocks: each w:p is a paragraph (w:t text, w:tab -> tab, w:br / w:cr ->
 * line break; deleted text, field codes and the fallback copy of alternate
 * content are skipped).  Its style decides the kind: a heading level from the
 * style's name in styles.xml ("heading 1".."heading 6", "Title"), from its
 * outline level, or, without styles.xml, from the style id ("Heading1",
 * "Title"); a numbered paragraph (w:numPr) is a list item; a style named like
 * "Source Code" is code.  A w:tbl is one TABLE block, one line per w:tr,
 * cells joined by " | " (nested tables flattened into their cell).  The title
 * is docProps/core.xml's dc:title, else the first Title-styled paragraph.
 * Lines are unknown (0).
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <libxml/parser.h>
#include <libxml/tree.h>
#include <zip.h>

#include "ingest/internal.h"

#define DOCX_MAX_INPUT ((size_t)256 << 20)
#define DOCX_MAX_PART ((size_t)64 << 20)
#define MAX_STYLES 4096
#define MAX_PARA_DEPTH 32

typedef struct style_info {
    char *id;
    char *based_on;
    int level;   /* 1..6 heading, 0 none, -1 not known yet */
    int title;
    int code;
} style_info;

typedef struct docx_state {
    ing_text *t;
    const char *name;
    style_info *styles;
    int n_styles;
    buf cur;
    int kind, level, is_title;
    int para_depth;
    xmlNode *table;       /* outermost table being gathered */
    int row_cells;
    int want_title;
    int rc;
} docx_state;

/* ==== zip ================================================================ */

/* read_part: the entry named part, at most DOCX_MAX_PART bytes, into a
 * malloc'd buffer.  DOC_ENOTFOUND (without a message) when absent. */
static int read_part(zip_t *za, const char *part, const char *name, char **out, size_t *out_len,
                     doc_err *err)
{
    *out = NULL;
    *out_len = 0;
    zip_int64_t idx = zip_name_locate(za, part, 0);
    if (idx < 0) return DOC_ENOTFOUND;
    zip_stat_t st;
    zip_stat_init(&st);
    if (zip_stat_index(za, (zip_uint64_t)idx, 0, &st) != 0)
        return doc_errf(err, DOC_EFORMAT, "%s: %s: %s", name, part, zip_strerror(za));
    if ((st.valid & ZIP_STAT_SIZE) && st.size > DOCX_MAX_PART)
        return doc_errf(err, DOC_ELIMIT, "%s: %s: uncompressed size %llu larger than %zu MiB",
                        name, part, (unsigned long long)st.size, DOCX_MAX_PART >> 20);
    zip_file_t *zf = zip_fopen_index(za, (zip_uint64_t)idx, 0);
    if (!zf) {
        zip_error_t *ze = zip_get_error(za);
        int zerr = zip_error_code_zip(ze);
        if (zerr == ZIP_ER_NOPASSWD || zerr == ZIP_ER_WRONGPASSWD || zerr == ZIP_ER_ENCRNOTSUPP)
            return doc_errf(err, DOC_EUNSUPPORTED, "%s: %s: encrypted entry", name, part);
        return doc_errf(err, DOC_EFORMAT, "%s: %s: %s", name, part, zip_strerror(za));
    }
    int rc = 0;
    buf b;
    buf_init(&b, DOCX_MAX_PART);
    for (;;) {
        rc = buf_reserve(&b, 65536);
        if (rc == DOC_ELIMIT && b.len < DOCX_MAX_PART) rc = buf_reserve(&b, DOCX_MAX_PART - b.len);
        if (rc == DOC_ELIMIT) {
            char probe;
            if (zip_fread(zf, &probe, 1) == 0) { /* exactly at the cap */
                rc = 0;
                break;
            }
            rc = doc_errf(err, DOC_ELIMIT, "%s: %s: larger than %zu MiB uncompressed", name, part,
                          DOCX_MAX_PART >> 20);
            goto done;
        }
        if (rc) {
            doc_errf(err, rc, "%s: %s: out of memory", name, part);
            goto done;
        }
        size_t room = b.cap - 1 - b.len;
        zip_int64_t got = zip_fread(zf, b.data + b.len, room);
        if (got < 0) {
            rc = doc_errf(err, DOC_EFORMAT, "%s: %s: %s", name, part, zip_file_strerror(zf));
            goto done;
        }
        if (got == 0) break;
        b.len += (size_t)got;
        b.data[b.len] = 0;
    }
    *out = buf_steal(&b, out_len);
    if (!*out) { /* empty entry */
        *out = calloc(1, 1);
        if (!*out) rc = doc_errf(err, DOC_ENOMEM, "%s: %s: out of memory", name, part);
    }
done:
    buf_free(&b);
    zip_fclose(zf);
    return rc;
}

static xmlDoc *parse_xml(const char *data, size_t len, const char *part)
{
    if (len > (size_t)0x7fffffff) return NULL;
    return xmlReadMemory(data, (int)len, part, NULL,
                         XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING |
                             XML_PARSE_COMPACT);
}

/* ==== XML helpers ======================================================== */

static int is_el(const xmlNode *n, const char *local)
{
    return n && n->type == XML_ELEMENT_NODE && strcmp((const char *)n->name, local) == 0;
}

/* wattr: an attribute by local name (w:val, w:styleId ...); borrowed. */
static const char *wattr(const xmlNode *n, const char *local)
{
    for (const xmlAttr *a = n->properties; a; a = a->next)
        if (a->name && strcmp((const char *)a->name, local) == 0) {
            const xmlNode *c = a->children;
            return c && c->type == XML_TEXT_NODE && c->content ? (const char *)c->content : "";
        }
    return NULL;
}

static const xmlNode *child(const xmlNode *n, const char *local)
{
    for (const xmlNode *c = n ? n->children : NULL; c; c = c->next)
        if (is_el(c, local)) return c;
    return NULL;
}

/* text_of: the text children of n (entity references are not followed, so
 * no entity is ever expanded), malloc'd. */
static char *text_of(const xmlNode *n, size_t *len)
{
    size_t total = 0;
    for (const xmlNode *c = n->children; c; c = c->next)
        if ((c->type == XML_TEXT_NODE || c->type == XML_CDATA_SECTION_NODE) && c->content)
            total += strlen((const char *)c->content);
    char *out = malloc(total + 1);
    if (!out) return NULL;
    size_t k = 0;
    for (const xmlNode *c = n->children; c; c = c->next)
        if ((c->type == XML_TEXT_NODE || c->type == XML_CDATA_SECTION_NODE) && c->content) {
            size_t m = strlen((const char *)c->content);
            memcpy(out + k, c->content, m);
            k += m;
        }
    out[k] = 0;
    *len = k;
    return out;
}

/* next_node: depth-first successor of n under root, skipping n's children
 * when skip is set; NULL at the end.  No recursion. */
static xmlNode *next_node(xmlNode *n, xmlNode *root, int skip)
{
    if (!skip && n->children && n->type != XML_ENTITY_REF_NODE) return n->children;
    while (n && n != root && !n->next) n = n->parent;
    if (!n || n == root) return NULL;
    return n->next;
}

/* ==== styles ============================================================= */

static void styles_free(docx_state *s)
{
    for (int i = 0; i < s->n_styles; i++) {
        free(s->styles[i].id);
        free(s->styles[i].based_on);
    }
    free(s->styles);
    s->styles = NULL;
    s->n_styles = 0;
}

static int heading_from_name(const char *nm, int *title, int *code)
{
    if (!nm) return 0;
    if (strncasecmp(nm, "heading", 7) == 0) {
        const char *p = nm + 7;
        while (*p == ' ') p++;
        if (*p >= '1' && *p <= '6' && p[1] == 0) return *p - '0';
    }
    if (strcasecmp(nm, "title") == 0) {
        *title = 1;
        return 1;
    }
    if (strcasecmp(nm, "source code") == 0 || strcasecmp(nm, "sourcecode") == 0 ||
        strcasecmp(nm, "html preformatted") == 0 || strcasecmp(nm, "code") == 0 ||
        strcasecmp(nm, "plain text") == 0)
        *code = 1;
    return 0;
}

/* load_styles: paragraph styles of styles.xml (id, name, basedOn, outline). */
static int load_styles(docx_state *s, xmlDoc *doc)
{
    xmlNode *root = xmlDocGetRootElement(doc);
    if (!root) return 0;
    s->styles = calloc(MAX_STYLES, sizeof *s->styles);
    if (!s->styles) return DOC_ENOMEM;
    for (xmlNode *n = root->children; n; n = n->next) {
        if (!is_el(n, "style") || s->n_styles >= MAX_STYLES) continue;
        const char *type = wattr(n, "type");
        const char *id = wattr(n, "styleId");
        if (!id || (type && strcmp(type, "paragraph") != 0)) continue;
        style_info *si = &s->styles[s->n_styles];
        si->id = strdup(id);
        const xmlNode *nm = child(n, "name"), *bo = child(n, "basedOn");
        const char *bv = bo ? wattr(bo, "val") : NULL;
        si->based_on = bv ? strdup(bv) : NULL;
        if (!si->id || (bv && !si->based_on)) {
            free(si->id);
            free(si->based_on);
            return DOC_ENOMEM;
        }
        s->n_styles++;
        si->level = heading_from_name(nm ? wattr(nm, "val") : NULL, &si->title, &si->code);
        const xmlNode *ppr = child(n, "pPr"), *ol = child(ppr, "outlineLvl");
        const char *ov = ol ? wattr(ol, "val") : NULL;
        if (!si->level && ov && ov[0] >= '0' && ov[0] <= '5' && ov[1] == 0)
            si->level = ov[0] - '0' + 1;
        if (!si->level && !si->code) si->level = -1; /* may inherit */
    }
    return 0;
}

static const style_info *find_style(const docx_state *s, const char *id)
{
    for (int i = 0; id && i < s->n_styles; i++)
        if (strcmp(s->styles[i].id, id) == 0) return &s->styles[i];
    return NULL;
}

/* style_kind: kind / level of a paragraph style id. */
static void style_kind(const docx_state *s, const char *id, int *kind, int *level, int *title)
{
    *kind = ING_BLK_PARA;
    *level = 0;
    *title = 0;
    if (!id) return;
    const style_info *si = find_style(s, id);
    for (int hop = 0; si && hop < 8; hop++) { /* follow basedOn a few steps */
        if (si->code) {
            *kind = ING_BLK_CODE;
            return;
        }
        if (si->level > 0) {
            *kind = ING_BLK_HEADING;
            *level = si->level;
            *title = si->title;
            return;
        }
        si = find_style(s, si->based_on);
    }
    if (s->n_styles) return;
    /* no styles.xml: go by the id pandoc and Word use */
    int t = 0, c = 0;
    int lv = heading_from_name(id, &t, &c);
    if (lv) {
        *kind = ING_BLK_HEADING;
        *level = lv;
        *title = t;
    } else if (c) {
        *kind = ING_BLK_CODE;
    }
}

/* ==== document walk ====================================================== */

static void put(docx_state *s, const char *p, size_t n)
{
    if (s->rc) return;
    int rc = buf_append(&s->cur, p, n);
    if (rc) s->rc = rc;
}

static void flush(docx_state *s)
{
    if (s->rc) return;
    if (s->cur.len) {
        int rc = ing_text_add(s->t, s->kind, s->level, 0, 0, 0, s->cur.data, s->cur.len);
        if (!rc && s->is_title && s->want_title) {
            rc = ing_text_set_title(s->t, s->cur.data, s->cur.len);
            if (s->t->title) s->want_title = 0;
        }
        if (rc) s->rc = rc;
    }
    buf_reset(&s->cur);
}

/* start_para: a w:p outside tables; its kind from w:pPr. */
static void start_para(docx_state *s, const xmlNode *p)
{
    flush(s);
    const xmlNode *ppr = child(p, "pPr");
    const xmlNode *ps = child(ppr, "pStyle");
    style_kind(s, ps ? wattr(ps, "val") : NULL, &s->kind, &s->level, &s->is_title);
    const xmlNode *ol = child(ppr, "outlineLvl");
    const char *ov = ol ? wattr(ol, "val") : NULL;
    if (s->kind == ING_BLK_PARA && ov && ov[0] >= '0' && ov[0] <= '5' && ov[1] == 0) {
        s->kind = ING_BLK_HEADING;
        s->level = ov[0] - '0' + 1;
    }
    if (s->kind == ING_BLK_PARA && child(ppr, "numPr")) s->kind = ING_BLK_LIST;
}

/* skipped subtrees: deleted runs, field instructions, properties, the
 * fallback half of alternate content, footnote references */
static int skip_el(const xmlNode *n)
{
    static const char *const names[] = {"del", "delText", "instrText", "pPr", "rPr", "Fallback",
                                        "sectPr", "tblPr", "tcPr", "trPr", "tblGrid", "drawing"};
    if (n->type == XML_ENTITY_REF_NODE) return 1;
    if (n->type != XML_ELEMENT_NODE) return 0;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strcmp((const char *)n->name, names[i]) == 0) return 1;
    return 0;
}

static void enter(docx_state *s, xmlNode *n)
{
    const char *nm = (const char *)n->name;
    if (s->table) {
        if (strcmp(nm, "tr") == 0) {
            if (s->cur.len) put(s, "\n", 1);
            s->row_cells = 0;
        } else if (strcmp(nm, "tc") == 0) {
            if (s->row_cells++) put(s, " | ", 3);
        } else if (strcmp(nm, "p") == 0) {
            put(s, " ", 1);
        }
    } else if (strcmp(nm, "tbl") == 0) {
        flush(s);
        s->table = n;
        s->kind = ING_BLK_TABLE;
        s->level = 0;
        s->is_title = 0;
        s->row_cells = 0;
    } else if (strcmp(nm, "p") == 0) {
        start_para(s, n); /* a nested one (text box) ends the outer part */
        s->para_depth++;
    }
    if (strcmp(nm, "t") == 0) {
        size_t m = 0;
        char *p = text_of(n, &m);
        if (!p) {
            s->rc = DOC_ENOMEM;
            return;
        }
        if (s->table) /* keep the row on one line */
            for (size_t i = 0; i < m; i++)
                if (p[i] == '\n') p[i] = ' ';
        put(s, p, m);
        free(p);
    } else if (strcmp(nm, "tab") == 0 && n->parent && is_el(n->parent, "r")) {
        put(s, "\t", 1);
    } else if (strcmp(nm, "br") == 0 || strcmp(nm, "cr") == 0) {
        put(s, s->table ? " " : "\n", 1);
    } else if (strcmp(nm, "noBreakHyphen") == 0) {
        put(s, "-", 1);
    }
}

static void leave(docx_state *s, xmlNode *n)
{
    const char *nm = (const char *)n->name;
    if (s->table) {
        if (n == s->table) {
            flush(s);
            s->table = NULL;
            s->kind = ING_BLK_PARA;
        }
        return;
    }
    if (strcmp(nm, "p") == 0) {
        flush(s);
        if (s->para_depth > 0) s->para_depth--;
        s->kind = ING_BLK_PARA;
        s->level = 0;
        s->is_title = 0;
    }
}

static void walk_body(docx_state *s, xmlNode *root)
{
    xmlNode *n = root->children;
    while (n && !s->rc) {
        int skip = skip_el(n);
        if (!skip && n->type == XML_ELEMENT_NODE) {
            enter(s, n);
            if (strcmp((const char *)n->name, "t") == 0) skip = 1; /* text taken whole */
        }
        if (!skip && n->children) {
            n = n->children;
            continue;
        }
        if (!skip && n->type == XML_ELEMENT_NODE) leave(s, n);
        while (n != root && !n->next) {
            n = n->parent;
            if (n != root && n->type == XML_ELEMENT_NODE) leave(s, n);
        }
        if (n == root) break;
        n = n->next;
    }
    flush(s);
}

/* core_title: dc:title of docProps/core.xml into t (when present). */
static int core_title(zip_t *za, docx_state *s, doc_err *err)
{
    char *data = NULL;
    size_t len = 0;
    int rc = read_part(za, "docProps/core.xml", s->name, &data, &len, err);
    if (rc == DOC_ENOTFOUND) return 0;
    if (rc) return rc;
    xmlDoc *doc = parse_xml(data, len, "docProps/core.xml");
    free(data);
    if (!doc) return 0; /* a broken property part does not spoil the document */
    xmlNode *root = xmlDocGetRootElement(doc);
    for (xmlNode *n = root; n; n = next_node(n, root, 0)) {
        if (is_el(n, "title")) {
            size_t m = 0;
            char *c = text_of(n, &m);
            rc = c ? ing_text_set_title(s->t, c, m) : DOC_ENOMEM;
            free(c);
            break;
        }
    }
    xmlFreeDoc(doc);
    if (rc) return doc_errf(err, rc, "%s: out of memory", s->name);
    if (s->t->title) s->want_title = 0;
    return 0;
}

int ing_extract_docx(const char *data, size_t len, const char *name, ing_text *t, doc_err *err)
{
    if (len > DOCX_MAX_INPUT)
        return doc_errf(err, DOC_ELIMIT, "%s: docx larger than %zu MiB", name, DOCX_MAX_INPUT >> 20);
    docx_state s;
    memset(&s, 0, sizeof s);
    s.t = t;
    s.name = name;
    s.want_title = 1;
    buf_init(&s.cur, t->text.max);
    int rc = 0;
    zip_t *za = NULL;
    xmlDoc *doc = NULL;
    char *part = NULL;
    size_t part_len = 0;
    zip_error_t ze;
    zip_error_init(&ze);
    zip_source_t *src = zip_source_buffer_create(data, len, 0, &ze);
    if (!src) {
        rc = doc_errf(err, DOC_ENOMEM, "%s: %s", name, zip_error_strerror(&ze));
        goto done;
    }
    za = zip_open_from_source(src, ZIP_RDONLY, &ze);
    if (!za) {
        zip_source_free(src);
        rc = doc_errf(err, DOC_EFORMAT, "%s: not a zip archive (%s)", name, zip_error_strerror(&ze));
        goto done;
    }
    rc = read_part(za, "word/styles.xml", name, &part, &part_len, err);
    if (rc == 0) {
        xmlDoc *sd = parse_xml(part, part_len, "word/styles.xml");
        if (sd) { /* broken styles: fall back on style ids */
            rc = load_styles(&s, sd);
            xmlFreeDoc(sd);
            if (rc) {
                doc_errf(err, rc, "%s: word/styles.xml: out of memory", name);
                goto done;
            }
        }
    } else if (rc != DOC_ENOTFOUND) {
        goto done;
    }
    free(part);
    part = NULL;
    rc = core_title(za, &s, err);
    if (rc) goto done;
    rc = read_part(za, "word/document.xml", name, &part, &part_len, err);
    if (rc == DOC_ENOTFOUND) {
        rc = doc_errf(err, DOC_EFORMAT, "%s: no word/document.xml (not a docx)", name);
        goto done;
    }
    if (rc) goto done;
    doc = parse_xml(part, part_len, "word/document.xml");
    if (!doc) {
        const xmlError *xe = xmlGetLastError();
        if (xe && xe->message)
            rc = doc_errf(err, DOC_EFORMAT, "%s: word/document.xml: malformed xml at line %d: %.*s",
                          name, xe->line, (int)strcspn(xe->message, "\n"), xe->message);
        else
            rc = doc_errf(err, DOC_EFORMAT, "%s: word/document.xml: malformed xml", name);
        goto done;
    }
    xmlNode *root = xmlDocGetRootElement(doc);
    const xmlNode *body = child(root, "body");
    if (!body) {
        rc = doc_errf(err, DOC_EFORMAT, "%s: word/document.xml: no w:body", name);
        goto done;
    }
    walk_body(&s, (xmlNode *)body);
    rc = s.rc;
    if (rc == DOC_ELIMIT)
        doc_errf(err, rc, "%s: text larger than the %zu-byte cap", name, t->text.max);
    else if (rc)
        doc_errf(err, rc, "%s: out of memory", name);
done:
    if (doc) xmlFreeDoc(doc);
    free(part);
    if (za) zip_discard(za);
    zip_error_fini(&ze);
    styles_free(&s);
    buf_free(&s.cur);
    return rc;
}
