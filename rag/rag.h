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

/* ---- citations (rag/cite.c) ----------------------------------------------- */

/* One source given to the model, numbered 1..n in the prompt. */
typedef struct rag_source {
    const char *text;          /* the passage as given in the prompt */
} rag_source;

/* One sentence of the answer and how it is supported. */
typedef struct rag_sentence {
    size_t off, len;           /* in the cleaned answer (rag_cite's out) */
    unsigned cited;            /* bit n-1 set for each valid [n] the sentence carries (n <= 32) */
    int matched;               /* uncited sentence: best supporting source (1-based), 0 if none */
    double support;            /* lexical support of the sentence by its best source, 0..1 */
} rag_sentence;

typedef struct rag_citations {
    rag_sentence *sentences;   /* malloc'd */
    int n_sentences;
    unsigned used;             /* bit n-1: source n is cited (or matched) somewhere */
    int n_invalid;             /* [n] markers removed: n out of range, malformed */
    int n_unsupported;         /* sentences with no valid marker and no source match */
    int grounded;              /* every factual sentence is cited or matched */
} rag_citations;

/*
 * rag_cite: check the [n] markers of answer against the n_sources sources
 * actually given.  out receives the answer with invalid markers removed
 * (markers for n outside 1..n_sources, "[0]", "[]", "[1-3]" expanded to
 * "[1][2][3]" when valid); the answer is split into sentences, each
 * sentence's valid markers recorded, and a sentence without a valid marker
 * is matched to the source that best supports it lexically (word overlap of
 * content words, stop words ignored; support >= min_support, e.g. 0.5) or
 * counted unsupported.  Very short sentences (under 4 content words, such as
 * "Yes." or a heading) need no support.  Linear in the answer plus sources.
 * Free c with rag_citations_free.
 */
int rag_cite(const char *answer, size_t len, const rag_source *sources, int n_sources,
             double min_support, buf *out, rag_citations *c, doc_err *err);
void rag_citations_free(rag_citations *c);

#endif
