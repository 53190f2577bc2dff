/*
 * extract_html.c - HTML to structured text through libxml2's HTML parser.
 *
 * The parser recovers from any markup (tag soup, unclosed elements) and
 * honours <meta charset> / http-equiv; its DOM is walked without recursion
 * (parent pointers), so a deeply nested page cannot exhaust the stack.
 *
 * What is kept: headings h1..h6 (with levels), the text of block elements
 * (p, div, li, pre, dd, blockquote, td ...) as blocks, data tables as TABLE
 * blocks (one line per row, cells joined by " | ").  A table whose cells hold
 * headings, lists, preformatted text or other tables is a layout table and is
 * walked like any container.
 *
 * What is dropped: script, style, noscript, template, svg, canvas, iframe,
 * form controls, <nav>, elements with role navigation/search/menu/menubar,
 * page-level <footer> (one not inside article/main/section), hidden elements
 * (hidden attribute, aria-hidden="true", style display:none or
 * visibility:hidden) and navigation boilerplate recognised by a class or id
 * word (words split at space, '-' and '_'): navheader, navfooter (DocBook),
 * toc, breadcrumb(s), nav, navbar, navigation, menu, mainmenu, submenu,
 * searchmenu, nosearch (SQLite's marker for page chrome), skiplink.
 *
 * Lines: libxml2 records the line of each element's start tag and, for a
 * text node, the line where the parser delivered its first characters; a
 * block's range spans the lines recorded for its elements and text nodes
 * (xmlGetLineNo; XML_PARSE_BIG_LINES so lines past 65535 stay right).
 */
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <libxml/HTMLparser.h>
#include <libxml/tree.h>

#include "ingest/internal.h"

#define HTML_MAX_INPUT ((size_t)64 << 20)

enum { R_INLINE = 0, R_SKIP, R_BLOCK, R_HEADING, R_LI, R_PRE, R_TABLE, R_TR, R_CELL, R_BR };

static const struct {
    const char *tag;
    int role;
} roles[] = {
    {"script", R_SKIP},     {"style", R_SKIP},      {"noscript", R_SKIP},   {"template", R_SKIP},
    {"svg", R_SKIP},        {"canvas", R_SKIP},     {"iframe", R_SKIP},     {"object", R_SKIP},
    {"embed", R_SKIP},      {"head", R_SKIP},       {"nav", R_SKIP},        {"button", R_SKIP},
    {"select", R_SKIP},     {"textarea", R_SKIP},   {"input", R_SKIP},      {"map", R_SKIP},
    {"h1", R_HEADING},      {"h2", R_HEADING},      {"h3", R_HEADING},      {"h4", R_HEADING},
    {"h5", R_HEADING},      {"h6", R_HEADING},      {"li", R_LI},           {"pre", R_PRE},
    {"listing", R_PRE},     {"xmp", R_PRE},         {"plaintext", R_PRE},   {"table", R_TABLE},
    {"tr", R_TR},           {"td", R_CELL},         {"th", R_CELL},         {"br", R_BR},
    {"p", R_BLOCK},         {"div", R_BLOCK},       {"section", R_BLOCK},   {"article", R_BLOCK},
    {"main", R_BLOCK},      {"aside", R_BLOCK},     {"header", R_BLOCK},    {"footer", R_BLOCK},
    {"blockquote", R_BLOCK}, {"ul", R_BLOCK},       {"ol", R_BLOCK},        {"dl", R_BLOCK},
    {"dt", R_BLOCK},        {"dd", R_BLOCK},        {"figure", R_BLOCK},    {"figcaption", R_BLOCK},
    {"address", R_BLOCK},   {"hr", R_BLOCK},        {"caption", R_BLOCK},   {"center", R_BLOCK},
    {"details", R_BLOCK},   {"summary", R_BLOCK},   {"form", R_BLOCK},      {"fieldset", R_BLOCK},
    {"legend", R_BLOCK},    {"body", R_BLOCK},      {"html", R_BLOCK},      {"menu", R_BLOCK},
    {"dir", R_BLOCK},       {"tbody", R_BLOCK},     {"thead", R_BLOCK},     {"tfoot", R_BLOCK},
    {"option", R_SKIP},     {"math", R_INLINE},
};

/* class / id words that mark navigation and page chrome */
static const char *const chrome_words[] = {
    "navheader", "navfooter", "toc",     "breadcrumb", "breadcrumbs", "nav",      "navbar",
    "navigation", "menu",     "mainmenu", "submenu",   "searchmenu",  "nosearch", "skiplink",
};

static const char *const chrome_roles[] = {"navigation", "search", "menu", "menubar"};

typedef struct html_state {
    ing_text *t;
    const char *name;
    buf cur;
    int kind, level;
    long lmin, lmax;       /* line range of cur, 0 when unknown */
    long floor_line;       /* line of the element that opened the block */
    int li_depth, pre_depth, content_depth;
    xmlNode *table;        /* the data table being gathered, or NULL */
    int row_cells;
    int want_title;        /* no <title>: the first h1 becomes it */
    int rc;
} html_state;

static int role_of(const xmlNode *n)
{
    for (size_t i = 0; i < sizeof roles / sizeof roles[0]; i++)
        if (strcasecmp((const char *)n->name, roles[i].tag) == 0) return roles[i].role;
    return R_INLINE;
}

/* has_word: one of the words (split at space, '-', '_') of v is in list. */
static int has_word(const char *v, const char *const *list, size_t n)
{
    const char *p = v;
    while (*p) {
        while (*p && strchr(" \t\r\n-_", *p)) p++;
        const char *e = p;
        while (*e && !strchr(" \t\r\n-_", *e)) e++;
        for (size_t i = 0; i < n && e > p; i++)
            if (strlen(list[i]) == (size_t)(e - p) && strncasecmp(list[i], p, (size_t)(e - p)) == 0)
                return 1;
        p = e;
    }
    return 0;
}

/* style_hides: "display:none" or "visibility:hidden" in a style attribute. */
static int style_hides(const char *v)
{
    char tmp[512];
    size_t k = 0;
    for (const char *p = v; *p && k + 1 < sizeof tmp; p++)
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r')
            tmp[k++] = (char)((*p >= 'A' && *p <= 'Z') ? *p + 32 : *p);
    tmp[k] = 0;
    return strstr(tmp, "display:none") || strstr(tmp, "visibility:hidden");
}

/* attr: the value of attribute name (NULL when absent); borrowed from the node. */
static const char *attr(const xmlNode *n, const char *name)
{
    for (const xmlAttr *a = n->properties; a; a = a->next)
        if (a->name && strcasecmp((const char *)a->name, name) == 0) {
            const xmlNode *c = a->children;
            return c && c->type == XML_TEXT_NODE && c->content ? (const char *)c->content : "";
        }
    return NULL;
}

static int is_dropped(const html_state *s, const xmlNode *n, int role)
{
    if (role == R_SKIP) return 1;
    const char *v;
    if (attr(n, "hidden")) return 1;
    if ((v = attr(n, "aria-hidden")) && strcasecmp(v, "true") == 0) return 1;
    if ((v = attr(n, "style")) && style_hides(v)) return 1;
    if ((v = attr(n, "role")) &&
        has_word(v, chrome_roles, sizeof chrome_roles / sizeof chrome_roles[0]))
        return 1;
    if ((v = attr(n, "class")) &&
        has_word(v, chrome_words, sizeof chrome_words / sizeof chrome_words[0]))
        return 1;
    if ((v = attr(n, "id")) && has_word(v, chrome_words, sizeof chrome_words / sizeof chrome_words[0]))
        return 1;
    if (strcasecmp((const char *)n->name, "footer") == 0 && s->content_depth == 0) return 1;
    return 0;
}

static int is_content_root(const xmlNode *n)
{
    const char *nm = (const char *)n->name;
    return strcasecmp(nm, "article") == 0 || strcasecmp(nm, "main") == 0 ||
           strcasecmp(nm, "section") == 0;
}

/* is_layout_table: a cell holds structure a data table would not (headings,
 * lists, preformatted text, nested tables). */
static int is_layout_table(const xmlNode *table)
{
    const xmlNode *n = table->children;
    int budget = 100000; /* bounded scan */
    while (n && n != table && budget-- > 0) {
        if (n->type == XML_ELEMENT_NODE) {
            int r = role_of(n);
            const char *nm = (const char *)n->name;
            if (r == R_HEADING || r == R_TABLE || r == R_PRE || strcasecmp(nm, "ul") == 0 ||
                strcasecmp(nm, "ol") == 0 || strcasecmp(nm, "dl") == 0 ||
                strcasecmp(nm, "blockquote") == 0)
                return 1;
            if (n->children) {
                n = n->children;
                continue;
            }
        }
        while (n != table && !n->next) n = n->parent;
        if (n == table) break;
        n = n->next;
    }
    return budget <= 0;
}

static void note_line(html_state *s, long l)
{
    if (l <= 0) return;
    if (!s->lmin || l < s->lmin) s->lmin = l;
    if (l > s->lmax) s->lmax = l;
}

/* text_lines: the lines of a text node's first and last visible characters.
 * libxml2 records the line where the parser stood when it created the node,
 * which is the end of the node's first delivery of characters (the whole node
 * when it is short); counting the line breaks after a character gives its
 * line.  Long nodes arrive in several deliveries, so for them only the
 * recorded line is trusted.  Never earlier than the block's element. */
static void text_lines(html_state *s, const xmlNode *n, const char *c, size_t len)
{
    long l = xmlGetLineNo(n);
    if (l <= 0) return;
    long first = l, last = l;
    if (len < 1000) {
        size_t a = 0, b = len;
        while (a < len && strchr(" \t\r\n\f", c[a])) a++;
        while (b > a && strchr(" \t\r\n\f", c[b - 1])) b--;
        long after_a = 0, after_b = 0;
        for (size_t i = a; i < len; i++)
            if (c[i] == '\n') {
                after_a++;
                if (i >= b) after_b++;
            }
        first = l - after_a;
        last = l - after_b;
    }
    if (first < s->floor_line) first = s->floor_line;
    if (last < first) last = first;
    note_line(s, first);
    note_line(s, last);
}

static int ctx_kind(const html_state *s)
{
    return s->pre_depth ? ING_BLK_CODE : s->li_depth ? ING_BLK_LIST : ING_BLK_PARA;
}

static void flush(html_state *s)
{
    if (s->rc) return;
    if (s->cur.len) {
        int ls = s->lmin > INT_MAX ? INT_MAX : (int)s->lmin;
        int le = s->lmax > INT_MAX ? INT_MAX : (int)s->lmax;
        int rc = ing_text_add(s->t, s->kind, s->level, 0, ls, le, s->cur.data, s->cur.len);
        if (!rc && s->kind == ING_BLK_HEADING && s->level == 1 && s->want_title) {
            rc = ing_text_set_title(s->t, s->cur.data, s->cur.len);
            if (s->t->title) s->want_title = 0;
        }
        if (rc) s->rc = rc;
    }
    buf_reset(&s->cur);
    s->lmin = s->lmax = 0;
    s->kind = ctx_kind(s);
    s->level = 0;
}

static void put(html_state *s, const char *p, size_t n)
{
    if (s->rc) return;
    int rc = buf_append(&s->cur, p, n);
    if (rc) s->rc = rc;
}

/* text: a text node; inside a table cell line breaks become spaces so the
 * row stays one line. */
static void text(html_state *s, const xmlNode *n)
{
    const char *c = (const char *)n->content;
    if (!c || !*c) return;
    size_t len = strlen(c);
    int blank = 1;
    for (size_t i = 0; i < len && blank; i++)
        if (!strchr(" \t\r\n\f", c[i])) blank = 0;
    if (!blank) text_lines(s, n, c, len);
    if (!s->table) {
        put(s, c, len);
        return;
    }
    size_t i = 0;
    while (i < len && !s->rc) {
        size_t e = i + strcspn(c + i, "\r\n\t");
        put(s, c + i, e - i);
        if (e < len) put(s, " ", 1);
        i = e + 1;
    }
}

/* enter: an element; returns 1 to walk its children. */
static int enter(html_state *s, xmlNode *n)
{
    int role = role_of(n);
    if (is_dropped(s, n, role)) return 0;
    if (is_content_root(n)) s->content_depth++;
    if (s->table) { /* inside a data table everything is cell text */
        if (role == R_TR) {
            if (s->cur.len) put(s, "\n", 1);
            s->row_cells = 0;
        } else if (role == R_CELL) {
            if (s->row_cells++) put(s, " | ", 3);
        } else if (role != R_INLINE) {
            put(s, " ", 1);
        }
        note_line(s, xmlGetLineNo(n));
        return 1;
    }
    if (role != R_INLINE && role != R_BR) s->floor_line = xmlGetLineNo(n);
    switch (role) {
    case R_HEADING:
        flush(s);
        s->kind = ING_BLK_HEADING;
        s->level = n->name[1] - '0';
        break;
    case R_LI:
        flush(s);
        s->li_depth++;
        s->kind = ctx_kind(s);
        break;
    case R_PRE:
        flush(s);
        s->pre_depth++;
        s->kind = ING_BLK_CODE;
        break;
    case R_TABLE:
        flush(s);
        if (!is_layout_table(n)) {
            s->table = n;
            s->kind = ING_BLK_TABLE;
            s->row_cells = 0;
        }
        break;
    case R_BR: put(s, "\n", 1); break;
    case R_BLOCK:
    case R_TR:
    case R_CELL: flush(s); break;
    default: break;
    }
    return 1;
}

static void leave(html_state *s, xmlNode *n)
{
    if (is_content_root(n) && s->content_depth > 0) s->content_depth--;
    if (s->table) {
        if (n != s->table) return;
        flush(s);
        s->table = NULL;
        s->kind = ctx_kind(s);
        return;
    }
    switch (role_of(n)) {
    case R_HEADING: flush(s); break;
    case R_LI:
        flush(s);
        if (s->li_depth > 0) s->li_depth--;
        s->kind = ctx_kind(s);
        break;
    case R_PRE:
        flush(s);
        if (s->pre_depth > 0) s->pre_depth--;
        s->kind = ctx_kind(s);
        break;
    case R_BLOCK:
    case R_TABLE:
    case R_TR:
    case R_CELL: flush(s); break;
    default: break;
    }
}

/* walk: depth-first over the tree under root without recursion. */
static void walk(html_state *s, xmlNode *root)
{
    xmlNode *n = root;
    while (n && !s->rc) {
        int down = 0;
        if (n->type == XML_ELEMENT_NODE) down = enter(s, n);
        else if (n->type == XML_TEXT_NODE || n->type == XML_CDATA_SECTION_NODE) text(s, n);
        if (down && n->children) {
            n = n->children;
            continue;
        }
        if (n->type == XML_ELEMENT_NODE && down) leave(s, n);
        while (n != root && !n->next) {
            n = n->parent;
            if (n->type == XML_ELEMENT_NODE) leave(s, n);
        }
        if (n == root) break;
        n = n->next;
    }
    flush(s);
}

/* find_title: the text of the first <title> element of the document head. */
static xmlNode *find_title(xmlNode *root)
{
    xmlNode *n = root;
    int budget = 1000000;
    while (n && budget-- > 0) {
        if (n->type == XML_ELEMENT_NODE) {
            if (strcasecmp((const char *)n->name, "title") == 0) return n;
            if (strcasecmp((const char *)n->name, "body") != 0 && n->children) {
                n = n->children;
                continue;
            }
        }
        while (n != root && !n->next) n = n->parent;
        if (n == root) break;
        n = n->next;
    }
    return NULL;
}

int ing_extract_html(const char *data, size_t len, const char *name, ing_text *t, doc_err *err)
{
    if (len > HTML_MAX_INPUT)
        return doc_errf(err, DOC_ELIMIT, "%s: html larger than %zu MiB", name,
                        HTML_MAX_INPUT >> 20);
    html_state s;
    memset(&s, 0, sizeof s);
    s.t = t;
    s.name = name;
    s.kind = ING_BLK_PARA;
    s.want_title = 1;
    buf_init(&s.cur, t->text.max);
    int rc = 0;
    int opts = HTML_PARSE_RECOVER | HTML_PARSE_NOERROR | HTML_PARSE_NOWARNING | HTML_PARSE_NONET |
               HTML_PARSE_COMPACT | XML_PARSE_BIG_LINES;
    htmlDocPtr doc = htmlReadMemory(data, (int)len, NULL, NULL, opts);
    if (!doc) {
        if (len == 0) goto done; /* nothing to say */
        rc = doc_errf(err, DOC_EFORMAT, "%s: html parser could not read the document", name);
        goto done;
    }
    xmlNode *root = xmlDocGetRootElement(doc);
    if (!root) goto done;
    xmlNode *tn = find_title(root);
    if (tn) { /* the title's text nodes; entity references are not followed */
        buf tb;
        buf_init(&tb, 65536);
        for (const xmlNode *c = tn->children; c; c = c->next)
            if (c->type == XML_TEXT_NODE && c->content) buf_puts(&tb, (const char *)c->content);
        rc = tb.len ? ing_text_set_title(t, tb.data, tb.len) : 0;
        buf_free(&tb);
        if (rc) goto fail;
        if (t->title) s.want_title = 0;
    }
    walk(&s, root);
    rc = s.rc;
    if (rc) goto fail;
    goto done;
fail:
    if (rc == DOC_ELIMIT)
        doc_errf(err, rc, "%s: text larger than the %zu-byte cap", name, t->text.max);
    else
        doc_errf(err, rc, "%s: out of memory", name);
done:
    if (doc) xmlFreeDoc(doc);
    buf_free(&s.cur);
    return rc;
}
