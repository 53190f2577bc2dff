/*
 * chat.c - chat templates: recognised from the model's Jinja template text (or
 * named explicitly) and rendered by a table of per-family formats, not by a
 * Jinja interpreter.  Each family says how a turn opens and closes per role,
 * and how a system message is treated where the family has no system role.
 */
#include "llm/internal.h"

#include <stdlib.h>
#include <string.h>

typedef struct chat_format {
    const char *name;
    const char *marker;    /* substring of the Jinja template that identifies it */
    const char *open_fmt;  /* turn opening, "%s" = role name (after role mapping) */
    const char *close;     /* turn closing */
    const char *assistant; /* role name used for the assistant */
    int fold_system;       /* 1: no system role; prepend it to the first user turn */
} chat_format;

static const chat_format formats[CHAT_COUNT] = {
    [CHAT_NONE] = {"none", NULL, NULL, NULL, NULL, 0},
    [CHAT_CHATML] = {"chatml", "<|im_start|>", "<|im_start|>%s\n", "<|im_end|>\n", "assistant", 0},
    [CHAT_LLAMA3] = {"llama3", "<|start_header_id|>", "<|start_header_id|>%s<|end_header_id|>\n\n",
                     "<|eot_id|>", "assistant", 0},
    [CHAT_LLAMA2] = {"llama2", "[INST]", NULL, NULL, NULL, 1}, /* special-cased below */
    [CHAT_GEMMA] = {"gemma", "<start_of_turn>", "<start_of_turn>%s\n", "<end_of_turn>\n", "model", 1},
};

int chat_detect(const char *jinja, const char *arch)
{
    if (jinja)
        for (int f = 1; f < CHAT_COUNT; f++)
            if (strstr(jinja, formats[f].marker)) return f;
    (void)arch;
    return CHAT_NONE;
}

int chat_from_name(const char *name)
{
    for (int f = 1; f < CHAT_COUNT; f++)
        if (!strcmp(name, formats[f].name)) return f;
    if (!strcmp(name, "mistral")) return CHAT_LLAMA2;
    return -1;
}

const char *chat_name(int family)
{
    return family >= 0 && family < CHAT_COUNT ? formats[family].name : "unknown";
}

static int role_ok(const char *r)
{
    return r && (!strcmp(r, "system") || !strcmp(r, "user") || !strcmp(r, "assistant"));
}

/* Llama 2 / Mistral: BOS is added by the tokenizer; turns are
 * "[INST] {user} [/INST]{assistant}</s>", the system prompt inside the first
 * [INST] wrapped in <<SYS>> markers (llama.cpp's "llama2-sys" rendering). */
static int render_llama2(const llm_chat_msg *msgs, int n, buf *out)
{
    const char *sys = NULL;
    int rc = 0;
    for (int i = 0; i < n && !rc; i++) {
        const char *r = msgs[i].role, *c = msgs[i].content;
        if (!strcmp(r, "system")) {
            sys = c;
        } else if (!strcmp(r, "user")) {
            rc = buf_puts(out, "[INST] ");
            if (!rc && sys) rc = buf_printf(out, "<<SYS>>\n%s\n<</SYS>>\n\n", sys);
            sys = NULL;
            if (!rc) rc = buf_printf(out, "%s [/INST]", c);
        } else {
            rc = buf_printf(out, "%s</s>", c);
        }
    }
    return rc;
}

int chat_render(int family, const llm_chat_msg *msgs, int n, int add_assistant, buf *out,
                doc_err *err)
{
    if (family <= CHAT_NONE || family >= CHAT_COUNT)
        return doc_errf(err, DOC_EINVAL, "no chat template");
    for (int i = 0; i < n; i++) {
        if (!role_ok(msgs[i].role))
            return doc_errf(err, DOC_EINVAL, "message %d: role \"%s\" (system, user or assistant)", i,
                            msgs[i].role ? msgs[i].role : "(null)");
        if (!msgs[i].content) return doc_errf(err, DOC_EINVAL, "message %d: no content", i);
    }
    const chat_format *f = &formats[family];
    int rc = 0;
    if (family == CHAT_LLAMA2) {
        rc = render_llama2(msgs, n, out);
    } else {
        const char *pending_sys = NULL;
        for (int i = 0; i < n && !rc; i++) {
            const char *r = msgs[i].role;
            if (f->fold_system && !strcmp(r, "system")) {
                pending_sys = msgs[i].content;
                continue;
            }
            const char *name = !strcmp(r, "assistant") ? f->assistant : r;
            rc = buf_printf(out, f->open_fmt, name);
            if (!rc && pending_sys && !strcmp(r, "user")) {
                rc = buf_printf(out, "%s\n\n", pending_sys);
                pending_sys = NULL;
            }
            if (!rc) rc = buf_puts(out, msgs[i].content);
            if (!rc) rc = buf_puts(out, f->close);
        }
        if (!rc && add_assistant) rc = buf_printf(out, f->open_fmt, f->assistant);
    }
    if (rc) return doc_errf(err, rc, "rendered chat is over the size limit");
    return DOC_OK;
}

/*
 * chat_default_system: templates such as SmolLM2's insert a fixed system turn
 * when the conversation has none:  ...'<|im_start|>system\nYou are ...<|im_end|>\n'...
 * Find that literal and return its text (Jinja "\n" escapes undone).
 */
char *chat_default_system(const char *jinja)
{
    static const char open[] = "<|im_start|>system";
    if (!jinja || !strstr(jinja, "!= 'system'")) return NULL;
    const char *p = strstr(jinja, open);
    if (!p) return NULL;
    p += sizeof open - 1;
    if (p[0] == '\\' && p[1] == 'n') p += 2; /* the newline, escaped or real */
    else if (p[0] == '\n') p += 1;
    else return NULL;
    const char *q = strstr(p, "<|im_end|>");
    if (!q || q - p > 4096) return NULL;
    char *s = malloc((size_t)(q - p) + 1), *o = s;
    if (!s) return NULL;
    for (; p < q; p++) {
        if (p[0] == '\\' && p + 1 < q && p[1] == 'n') {
            *o++ = '\n';
            p++;
        } else {
            *o++ = *p;
        }
    }
    *o = 0;
    return s;
}
