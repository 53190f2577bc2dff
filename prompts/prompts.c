/*
 * prompts.c - load, validate and render docent's prompt templates.
 *
 * Each template is compiled once at load into a list of parts: a literal run
 * (an offset/length into the template's cooked text, escapes already
 * resolved) or a placeholder (an index into its spec's allowed list).  Render
 * then only walks the parts.  What each template may and must contain is the
 * spec table below, checked in one place (parse).  The neutralisation of
 * values is the marker table below, applied in put_value.
 */
#include "prompts/prompts.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the template table ------------------------------------------------- */

enum { MAX_PH = 8, NTEMPLATES = 6, NAME_MAX_LEN = 32 };

typedef struct tmpl_spec {
    const char *name, *file;
    const char *allowed[MAX_PH]; /* NULL-terminated */
    unsigned required;           /* bit i: allowed[i] must appear */
    unsigned raw;                /* bit i: allowed[i] is inserted without neutralising */
} tmpl_spec;

static const tmpl_spec specs[NTEMPLATES] = {
    {"system", "system.txt", {"date", NULL}, 0, 0},
    {"source", "source.txt", {"n", "title", "heading", "uri", "page", "text", NULL},
     1u << 0 | 1u << 5, 0},
    /* sources is a list of source blocks rendered (and neutralised) by us */
    {"user", "user.txt", {"sources", "question", NULL}, 1u << 0 | 1u << 1, 1u << 0},
    {"not_found", "not_found.txt", {"question", "closest", NULL}, 1u << 0, 0},
    {"refusal", "refusal.txt", {"category", "question", NULL}, 0, 0},
    /* history holds earlier turns; the question is the follow-up to rewrite */
    {"rewrite", "rewrite.txt", {"history", "question", NULL}, 1u << 0 | 1u << 1, 0},
};

typedef struct part {
    int ph;          /* -1: literal; else index into spec->allowed */
    size_t off, len; /* literal: span of tmpl.text */
} part;

typedef struct tmpl {
    char *text; /* cooked literal bytes */
    part *parts;
    int nparts;
} tmpl;

struct prompt_set {
    tmpl t[NTEMPLATES];
};

/* ---- neutralisation ----------------------------------------------------- */

/* Sequences a value may not carry into the prompt: each is broken by
 * replacing its first byte ('<' or '[') with a look-alike. */
static const char *const markers[] = {
    "<|", "<<sys>>", "<</sys>>", "<s>", "</s>", "<start_of_turn>", "<end_of_turn>",
    "[inst]", "[/inst]",
};
#define LT_SUBST "\xE2\x80\xB9"   /* U+2039 single left-pointing angle quotation mark */
#define LSQ_SUBST "\xEF\xBC\xBB"  /* U+FF3B fullwidth left square bracket */

static int lower(int c) { return c >= 'A' && c <= 'Z' ? c + 32 : c; }

static int starts_ci(const char *s, size_t n, const char *pat)
{
    size_t i = 0;
    for (; pat[i]; i++)
        if (i >= n || lower((unsigned char)s[i]) != pat[i]) return 0;
    return 1;
}

/* source_tag: s[0] == '<' opens "<source" or "</source" (blanks allowed). */
static int source_tag(const char *s, size_t n)
{
    size_t i = 1;
    while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r')) i++;
    if (i < n && s[i] == '/') i++;
    while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r')) i++;
    return starts_ci(s + i, n - i, "source");
}

static int must_break(const char *s, size_t n)
{
    if (s[0] == '<' && source_tag(s, n)) return 1;
    for (size_t k = 0; k < sizeof markers / sizeof markers[0]; k++)
        if (starts_ci(s, n, markers[k])) return 1;
    return 0;
}

/* put_value: append v to out, breaking every marker (see prompts.h). */
static int put_value(buf *out, const char *v, size_t n)
{
    size_t run = 0; /* start of the pending verbatim run */
    for (size_t i = 0; i < n; i++) {
        if ((v[i] != '<' && v[i] != '[') || !must_break(v + i, n - i)) continue;
        int rc = buf_append(out, v + run, i - run);
        if (!rc) rc = buf_puts(out, v[i] == '<' ? LT_SUBST : LSQ_SUBST);
        if (rc) return rc;
        run = i + 1;
    }
    return buf_append(out, v + run, n - run);
}

/* ---- loading ------------------------------------------------------------ */

static int is_name_char(int c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
}

static void allowed_list(const tmpl_spec *sp, char *out, size_t cap)
{
    size_t o = 0;
    out[0] = 0;
    for (int k = 0; sp->allowed[k] && o < cap; k++)
        o += (size_t)snprintf(out + o, cap - o, "%s%s", k ? ", " : "", sp->allowed[k]);
    if (!sp->allowed[0]) snprintf(out, cap, "none");
}

static int add_part(tmpl *t, int *cap, int ph, size_t off, size_t len)
{
    if (ph < 0 && len == 0) return DOC_OK;
    if (ph < 0 && t->nparts && t->parts[t->nparts - 1].ph < 0) { /* extend the literal */
        t->parts[t->nparts - 1].len += len;
        return DOC_OK;
    }
    if (t->nparts == *cap) {
        int nc = *cap ? *cap * 2 : 16;
        part *np = realloc(t->parts, (size_t)nc * sizeof *np);
        if (!np) return DOC_ENOMEM;
        t->parts = np;
        *cap = nc;
    }
    t->parts[t->nparts++] = (part){ph, off, len};
    return DOC_OK;
}

/* check_utf8: valid UTF-8 without NUL; err names the byte offset. */
static int check_utf8(const char *path, const char *s, size_t n, doc_err *err)
{
    int line = 1;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        int l = utf8_decode(s + i, n - i, &cp);
        if (l == 0)
            return doc_errf(err, DOC_EFORMAT, "%s:%d: invalid utf-8 at byte offset %zu", path,
                            line, i);
        if (cp == 0)
            return doc_errf(err, DOC_EFORMAT, "%s:%d: nul byte at byte offset %zu", path, line, i);
        if (cp == '\n') line++;
        i += (size_t)l;
    }
    return DOC_OK;
}

/* parse: compile s[0..n) (file path, for messages) against sp into t. */
static int parse(const char *path, const char *s, size_t n, const tmpl_spec *sp, tmpl *t,
                 doc_err *err)
{
    int rc = check_utf8(path, s, n, err);
    if (rc) return rc;
    if (n && s[n - 1] == '\n') n--;
    if (n && s[n - 1] == '\r') n--;
    t->text = malloc(n + 1);
    if (!t->text) return doc_errf(err, DOC_ENOMEM, "%s: out of memory", path);
    size_t tl = 0; /* cooked length */
    int cap = 0, line = 1;
    unsigned seen = 0;
    char allowed[256];
    for (size_t i = 0; i < n;) {
        if (!(s[i] == '{' && i + 1 < n && s[i + 1] == '{')) {
            if (s[i] == '\n') line++;
            t->text[tl] = s[i];
            if ((rc = add_part(t, &cap, -1, tl, 1))) goto oom;
            tl++, i++;
            continue;
        }
        if (i + 3 < n && s[i + 2] == '{' && s[i + 3] == '{') { /* {{{{ -> {{ */
            memcpy(t->text + tl, "{{", 2);
            if ((rc = add_part(t, &cap, -1, tl, 2))) goto oom;
            tl += 2, i += 4;
            continue;
        }
        size_t a = i + 2, e = a; /* name is s[a..e) */
        while (e + 1 < n && !(s[e] == '}' && s[e + 1] == '}') && s[e] != '\n') e++;
        if (e + 1 >= n || s[e] == '\n')
            return doc_errf(err, DOC_EFORMAT, "%s:%d: unterminated \"{{\" (write {{{{ for a literal {{)",
                            path, line);
        size_t k = a;
        while (k < e && is_name_char((unsigned char)s[k])) k++;
        if (k != e || e == a || e - a > NAME_MAX_LEN)
            return doc_errf(err, DOC_EFORMAT,
                            "%s:%d: bad placeholder {{%.*s}} (names are a-z, 0-9, _; write {{{{ "
                            "for a literal {{)",
                            path, line, (int)(e - a > 40 ? 40 : e - a), s + a);
        int ph = -1;
        for (int j = 0; sp->allowed[j]; j++)
            if (strlen(sp->allowed[j]) == e - a && !memcmp(sp->allowed[j], s + a, e - a)) ph = j;
        if (ph < 0) {
            allowed_list(sp, allowed, sizeof allowed);
            return doc_errf(err, DOC_EFORMAT, "%s:%d: unknown placeholder {{%.*s}} (allowed: %s)",
                            path, line, (int)(e - a), s + a, allowed);
        }
        if ((rc = add_part(t, &cap, ph, 0, 0))) goto oom;
        seen |= 1u << ph;
        i = e + 2;
    }
    t->text[tl] = 0;
    for (int j = 0; sp->allowed[j]; j++)
        if ((sp->required >> j & 1) && !(seen >> j & 1))
            return doc_errf(err, DOC_EFORMAT, "%s: must contain {{%s}}", path, sp->allowed[j]);
    return DOC_OK;
oom:
    return doc_errf(err, DOC_ENOMEM, "%s: out of memory", path);
}

int prompt_set_load(const char *dir, prompt_set **out, doc_err *err)
{
    *out = NULL;
    prompt_set *p = calloc(1, sizeof *p);
    char *data = NULL;
    int rc = DOC_OK;
    if (!p) return doc_errf(err, DOC_ENOMEM, "prompts: out of memory");
    for (int i = 0; i < NTEMPLATES; i++) {
        char path[4096];
        size_t len;
        if ((rc = path_join(path, sizeof path, dir, specs[i].file))) {
            doc_errf(err, rc, "%s: path too long", dir);
            goto done;
        }
        /* one byte of slack: core's file_read_all refuses a file of exactly max bytes */
        rc = file_read_all(path, PROMPT_FILE_MAX + 1, &data, &len, err);
        if (rc == DOC_ELIMIT || (!rc && len > PROMPT_FILE_MAX)) {
            rc = doc_errf(err, DOC_ELIMIT, "%s: over the limit of %d bytes", path,
                          (int)PROMPT_FILE_MAX);
            goto done;
        }
        if (rc) goto done;
        if ((rc = parse(path, data, len, &specs[i], &p->t[i], err))) goto done;
        free(data);
        data = NULL;
    }
    *out = p;
    p = NULL;
done:
    free(data);
    prompt_set_free(&p);
    return rc;
}

void prompt_set_free(prompt_set **pp)
{
    if (!pp || !*pp) return;
    for (int i = 0; i < NTEMPLATES; i++) {
        free((*pp)->t[i].text);
        free((*pp)->t[i].parts);
    }
    free(*pp);
    *pp = NULL;
}

/* ---- rendering ---------------------------------------------------------- */

int prompt_render(const prompt_set *p, const char *template_name, const prompt_var *vars, int n,
                  buf *out, doc_err *err)
{
    int ti = -1;
    for (int i = 0; i < NTEMPLATES && template_name; i++)
        if (!strcmp(specs[i].name, template_name)) ti = i;
    if (ti < 0)
        return doc_errf(err, DOC_ENOTFOUND, "prompt: no template named '%s'",
                        template_name ? template_name : "(null)");
    const tmpl_spec *sp = &specs[ti];
    const tmpl *t = &p->t[ti];

    const char *val[MAX_PH] = {0};
    size_t vlen[MAX_PH] = {0};
    for (int j = 0; sp->allowed[j]; j++) {
        for (int v = 0; v < n && !val[j]; v++)
            if (vars[v].name && !strcmp(vars[v].name, sp->allowed[j])) val[j] = vars[v].value;
        if (!val[j] && (sp->required >> j & 1))
            return doc_errf(err, DOC_EINVAL, "prompt %s: no value for {{%s}}", sp->name,
                            sp->allowed[j]);
        if (!val[j]) continue;
        vlen[j] = strlen(val[j]);
        if (!utf8_valid(val[j], vlen[j]))
            return doc_errf(err, DOC_EINVAL, "prompt %s: value of {{%s}} is not valid utf-8",
                            sp->name, sp->allowed[j]);
    }

    size_t start = out->len;
    int rc = DOC_OK;
    for (int k = 0; k < t->nparts && !rc; k++) {
        const part *pt = &t->parts[k];
        if (pt->ph < 0) rc = buf_append(out, t->text + pt->off, pt->len);
        else if (!val[pt->ph]) continue;
        else if (sp->raw >> pt->ph & 1) rc = buf_append(out, val[pt->ph], vlen[pt->ph]);
        else rc = put_value(out, val[pt->ph], vlen[pt->ph]);
    }
    if (rc) {
        out->len = start;
        if (out->data) out->data[start] = 0;
        if (rc == DOC_ELIMIT)
            return doc_errf(err, rc, "prompt %s: rendered text is over the buffer cap of %zu bytes",
                            sp->name, out->max);
        return doc_errf(err, rc, "prompt %s: %s", sp->name, doc_strerror(rc));
    }
    return DOC_OK;
}
