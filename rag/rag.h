/*
 * rag.h - docent's query path, public API.
 *
 * So far: the safety filters of shared/DESIGN.md §6 (issue 4), which the
 * answer path, the daemon and the logs all use:
 *   - redaction of PII and secrets in text (answers, snippets, log lines);
 *   - the request guard: unsafe-request categories (refused before retrieval)
 *     and prompt-injection patterns in retrieved passages (flagged);
 *   - stripping of Markdown images and links to remote hosts from answers.
 * Retrieval, budgeting, prompts, generation and citations come next.
 *
 * Everything here is table-driven (one row per recogniser or category) and
 * runs in time linear in the input: no backtracking regular expressions.
 * The functions are pure (no global state) and thread-safe.
 */
#ifndef DOCENT_RAG_H
#define DOCENT_RAG_H

#include <stddef.h>
#include <stdint.h>

#include "core/core.h"

/* ---- redaction (rag/redact.c) ------------------------------------------- */

/* categories, one bit each (a config turns each on or off) */
enum {
    RAG_PII_EMAIL = 1u << 0,
    RAG_PII_PHONE = 1u << 1,
    RAG_PII_CARD = 1u << 2,      /* payment card numbers, Luhn-valid only */
    RAG_PII_IBAN = 1u << 3,      /* IBAN, mod-97-valid only */
    RAG_PII_SSN = 1u << 4,       /* US SSN, valid ranges only */
    RAG_PII_IP = 1u << 5,        /* IPv4 and IPv6 addresses */
    RAG_SECRET_TOKEN = 1u << 6,  /* AWS, GitHub, GitLab, Slack keys/tokens, JWTs */
    RAG_SECRET_PRIVKEY = 1u << 7,/* -----BEGIN ... PRIVATE KEY----- blocks */
    RAG_SECRET_GENERIC = 1u << 8,/* high-entropy strings after key/secret/token/password= */
    RAG_REDACT_ALL = (1u << 9) - 1,
};

/* rag_redact_name: "email", "phone", ... for a single category bit (borrowed). */
const char *rag_redact_name(unsigned category);
/* rag_redact_parse: a comma-separated list of names ("email,card,all") to
 * bits; DOC_EINVAL naming the unknown word. */
int rag_redact_parse(const char *list, unsigned *out, doc_err *err);

typedef struct rag_redaction {
    unsigned category;         /* one RAG_* bit */
    size_t off, len;           /* span in the input that was replaced */
} rag_redaction;

/*
 * rag_redact: copy text[0..len) into out, replacing each match of an enabled
 * category by "[REDACTED:<name>]".  spans (may be NULL) receives up to
 * max_spans matches in input order; *n_spans (may be NULL) the total count.
 * Time and memory are linear in len.  DOC_ELIMIT when out's cap is reached.
 */
int rag_redact(const char *text, size_t len, unsigned categories, buf *out, rag_redaction *spans,
               int max_spans, int *n_spans);

/* ---- the guard (rag/guard.c) --------------------------------------------- */

/* Unsafe-request categories: a question in an enabled category is refused
 * before retrieval (answered from prompts/refusal.txt).  Lexicons are tables
 * of phrases matched on word boundaries after case folding, with context rules
 * so ordinary technical questions are not refused ("kill a process", "execute
 * a query", "attack surface of the API", "shoot a photo"). */
enum {
    RAG_UNSAFE_WEAPONS = 1u << 0,    /* making weapons or explosives */
    RAG_UNSAFE_SELF_HARM = 1u << 1,
    RAG_UNSAFE_VIOLENCE = 1u << 2,   /* harming people */
    RAG_UNSAFE_MALWARE = 1u << 3,    /* writing malware, breaking into systems one does not own */
    RAG_UNSAFE_ALL = (1u << 4) - 1,
};
const char *rag_unsafe_name(unsigned category);
int rag_unsafe_parse(const char *list, unsigned *out, doc_err *err);

/* rag_guard_request: the first enabled category question falls in, or 0.
 * *why (may be NULL) points at a constant description of what matched. */
unsigned rag_guard_request(const char *question, unsigned categories, const char **why);

/* Prompt-injection patterns in a retrieved passage (it is still used, as data,
 * but flagged and reported): instructions to ignore or replace the system
 * prompt, role-play / persona switches, requests to reveal the system prompt,
 * exfiltration (links or images with query strings to remote hosts, "send ...
 * to"), fake chat-template markers. */
enum {
    RAG_INJ_OVERRIDE = 1u << 0,   /* "ignore (all) previous instructions", "disregard the above" */
    RAG_INJ_ROLEPLAY = 1u << 1,   /* "you are now", "act as", "pretend to be" */
    RAG_INJ_PROMPT_LEAK = 1u << 2,/* "reveal/print your system prompt" */
    RAG_INJ_EXFIL = 1u << 3,      /* remote links/images carrying data, "send ... to http" */
    RAG_INJ_MARKERS = 1u << 4,    /* "<|im_start|>", "[INST]", "### system:" in passage text */
};
/* rag_guard_passage: the RAG_INJ_* bits found in text[0..len) (0: clean).
 * *why (may be NULL) describes the first match.  Linear time. */
unsigned rag_guard_passage(const char *text, size_t len, const char **why);

/* rag_strip_remote: copy an answer into out without Markdown images at all
 * and with links to remote hosts (http, https, ftp, protocol-relative, data:)
 * reduced to their text: "![x](http://h/p)" -> "", "[x](https://h/p)" -> "x",
 * bare "https://h/p?q=..." URLs -> "[link removed]".  *n_stripped (may be
 * NULL) counts the removals. */
int rag_strip_remote(const char *text, size_t len, buf *out, int *n_stripped);

#endif
