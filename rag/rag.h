/*
 * rag.h - docent's query path, public API.
 *
 * The answer path of shared/DESIGN.md §6 (rag_answer_question) and its
 * parts, which the daemon and the logs also use on their own:
 *   - redaction of PII and secrets in text (answers, snippets, log lines);
 *   - the request guard: unsafe-request categories (refused before retrieval)
 *     and prompt-injection patterns in retrieved passages (flagged);
 *   - stripping of Markdown images and links to remote hosts from answers.
 *   - the citation checker and snippet finder;
 *   - the query path itself: retrieve, budget, prompt, generate, cite, filter.
 *
 * The filters are table-driven (one row per recogniser or category) and run
 * in time linear in the input: no backtracking regular expressions.  Every
 * function is free of global state and thread-safe.
 */
#ifndef DOCENT_RAG_H
#define DOCENT_RAG_H

#include <stddef.h>
#include <stdint.h>

#include "core/config.h"
#include "core/core.h"
#include "core/json.h"
#include "index/index.h"
#include "llm/llm.h"
#include "prompts/prompts.h"

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

/* rag_log_filter: a log_filter_fn (core.h) redacting the categories in
 * *(const unsigned *)ctx (NULL: all); lines longer than cap are cut at a
 * character boundary.  Install with log_set_filter(rag_log_filter, &bits). */
int rag_log_filter(void *ctx, const char *in, size_t n, char *out, size_t cap);

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
    int unsupported;           /* 1: counted in n_unsupported (no marker, no match) */
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

/* rag_snippet: the part of source[0..n) that best supports claim: the
 * sentence (or line) holding most of the claim's content words, grown to
 * about max_len / 2 bytes with what follows when short, cut at a word boundary
 * to at most max_len.  *off, *len: the span in source (0, 0 for an empty
 * source).  DOC_ENOMEM only. */
int rag_snippet(const char *source, size_t n, const char *claim, size_t claim_len,
                size_t max_len, size_t *off, size_t *len);

/* ---- the answer path (rag/answer.c) --------------------------------------- */

/*
 * One question, end to end (shared/DESIGN.md §6): guard -> embed -> hybrid
 * retrieval restricted to the caller's collections -> not-found check ->
 * passages fitted into the prompt's token budget (what does not fit is
 * reported) -> prompt from the templates, in the generator's chat template ->
 * streamed generation -> citations checked and mapped -> output filters.
 *
 * Everything is in native types so the daemon serves it unchanged; the
 * models, store and prompts are borrowed.  One rag_answer_question call uses
 * the generator and the embedder exclusively (llm models are single-threaded);
 * callers serialise or give each worker its own models.
 */

typedef struct rag_opts {
    /* retrieval */
    int k;                      /* passages retrieved; 0: 5 */
    int n_dense, n_bm25, rrf_k; /* candidate counts and RRF constant; 0: the store's defaults */
    double min_similarity;      /* not found when no passage's cosine similarity to the
                                   question reaches this (0.38) */
    /* the prompt */
    int prompt_tokens;          /* cap on the rendered prompt in generator tokens (1024);
                                   also capped at the context minus answer_tokens */
    /* generation */
    int answer_tokens;          /* cap on generated tokens (256) */
    float temperature;          /* 0: greedy */
    float repeat_penalty;       /* 1.1 */
    uint64_t seed;
    /* citations */
    double min_support;         /* lexical support that matches an uncited sentence (0.5) */
    double min_match_similarity;/* or cosine between its embedding and the source's (0.6) */
    /* safety */
    unsigned redact;            /* RAG_PII_* / RAG_SECRET_* bits (RAG_REDACT_ALL) */
    unsigned refuse;            /* RAG_UNSAFE_* bits (RAG_UNSAFE_ALL) */
    int mask_injections;        /* 1: instruction-like sentences of a passage are withheld
                                   from the model (replaced by a notice); 0: only flagged */
} rag_opts;

/* rag_opts_default: the values in parentheses above. */
void rag_opts_default(rag_opts *o);
/* rag_opts_from_config: the [search], [answer] and [safety] settings of a
 * loaded docent.conf; DOC_EINVAL naming the key for a bad category list or
 * injections mode. */
int rag_opts_from_config(const doc_config *c, rag_opts *o, doc_err *err);

typedef struct rag_env {
    idx_store *store;
    llm_model *embedder;        /* the store's embedder (queries, sentence matching) */
    llm_model *generator;       /* a decoder; NULL: retrieval only (rag_request.retrieve_only) */
    const prompt_set *prompts;
    rag_opts opts;
    /* lock: when not NULL, called with on=1 before and on=0 after each use of
     * a shared object (RAG_USE_*), so that one store and one embedder can
     * serve several answers at once (docentd).  The generator is taken once,
     * from budgeting to the end of the answer, and may be held while the
     * store or the embedder is taken; those two are never held together. */
    void (*lock)(void *ud, int what, int on);
    void *lock_ud;
} rag_env;

enum { RAG_USE_EMBEDDER = 1, RAG_USE_STORE, RAG_USE_GENERATOR };

/* One earlier turn of a conversation. */
typedef struct rag_turn {
    const char *question;
    const char *answer;
} rag_turn;

struct rag_passage;

typedef struct rag_request {
    const char *question;
    const int64_t *collections; /* collections the caller may read; NULL: all */
    int n_collections;
    int k;                      /* 0: opts.k */
    const rag_turn *history;    /* earlier turns, oldest first: the question is rewritten into
                                   a standalone one before retrieval */
    int n_history;
    /* the answer as it is generated, already filtered (markers checked, remote
     * links stripped, PII redacted): the concatenation of every call is a
     * prefix of rag_answer.text unless rag_answer.stream_revised is set.
     * Return non-zero to cancel.  May be NULL. */
    llm_text_cb on_text;
    /* the passages as they go into the prompt (after the budget; n_given of
     * them numbered, the rest dropped), before generation starts; may be NULL */
    void (*on_sources)(void *ud, const struct rag_passage *p, int n);
    void *ud;
    const volatile int *cancel; /* non-zero: stop promptly (DOC_ECANCELLED); may be NULL */
    int retrieve_only;          /* 1: stop after retrieval (evaluation of the retriever) */
    /* deadline: time_now() past which generation stops at the next token; the
     * answer so far is kept, cited and filtered, with stop_reason
     * RAG_STOP_TIMEOUT (0: none) */
    double deadline;
} rag_request;

/* One retrieved passage. */
typedef struct rag_passage {
    int n;                      /* its number in the prompt ([n]); 0: not given to the model */
    int dropped;                /* 1: retrieved but did not fit the token budget */
    int cited;                  /* 1: the answer cites it (or a sentence was matched to it) */
    int64_t doc_id, chunk_id, chunk_last;
    char *uri, *title, *heading, *collection;
    int page, line_start, line_end;
    double score;               /* fused retrieval score */
    double dense_score;         /* cosine similarity to the question, NAN if not a dense hit */
    double bm25_score;
    int n_tokens;               /* its rendered source block in generator tokens */
    unsigned injection;         /* RAG_INJ_* bits found in it (0: clean) */
    int n_masked;               /* sentences withheld from the model (mask_injections) */
    char *text;                 /* the text as given to the model */
    char *snippet;              /* cited: the part supporting the answer (redacted), else NULL */
} rag_passage;

/* generation was stopped because a sentence repeated an earlier one (a small
 * model's loop); the repeated sentence stays, nothing after it is generated */
enum { RAG_STOP_REPETITION = 100, /* a sentence repeated an earlier one */
       RAG_STOP_TIMEOUT = 101 };   /* the caller's time limit (docentd's answer_timeout_s) */
/* rag_stop_name: "end", "length", "repetition", "timeout", ... for a stop_reason */
const char *rag_stop_name(int stop_reason);

enum { RAG_FOUND = 0, RAG_NOT_FOUND_WEAK = 1, RAG_NOT_FOUND_MODEL = 2 };

typedef struct rag_timings {    /* seconds */
    double guard, rewrite, embed, retrieve, prompt, prefill, decode, cite, filter;
    double first_text;          /* from the call to the first on_text (or the answer) */
    double total;
} rag_timings;

typedef struct rag_answer {
    char *text;                 /* the final answer, filtered */
    char *query;                /* the question retrieval used (the standalone rewrite) */
    rag_passage *passages;      /* in retrieval order */
    int n_passages;
    int n_given;                /* passages in the prompt */
    int refused;                /* 1: unsafe request, answered from refusal.txt */
    char refusal_category[32];
    int not_found;              /* RAG_FOUND, RAG_NOT_FOUND_WEAK (no generation) or
                                   RAG_NOT_FOUND_MODEL (the model said the sources don't say) */
    int grounded;               /* every claim is cited or matched to a given source */
    int n_unsupported;          /* sentences with no valid marker and no supporting source */
    int n_invalid_markers;      /* [n] markers removed */
    int n_redacted;             /* PII/secret spans replaced in the answer */
    int n_stripped;             /* remote links/images removed from the answer */
    int n_flagged;              /* passages with injection patterns */
    int stream_revised;         /* 1: the filters changed text already streamed */
    int stop_reason;            /* LLM_STOP_* or RAG_STOP_REPETITION (0: nothing generated) */
    int prompt_tokens, answer_tokens;
    rag_timings t;
} rag_answer;

/*
 * rag_answer_question: answer rq->question from the store.  Returns 0 with
 * *a filled (free with rag_answer_free) whether the answer is a real answer, a
 * refusal or "not found"; DOC_ECANCELLED when cancelled (a holds what was
 * produced so far); DOC_EINVAL for an empty or non-UTF-8 question or one over
 * RAG_QUESTION_MAX bytes; store, model and template errors as they come.
 */
enum { RAG_QUESTION_MAX = 4096 };
int rag_answer_question(const rag_env *env, const rag_request *rq, rag_answer *a, doc_err *err);
void rag_answer_free(rag_answer *a);

/* rag_answer_json: the answer as docent prints it (ask --json) and docentd
 * sends it: answer, query, citations, grounded, refused (+category),
 * not_found (+reason), unsupported_sentences, invalid_markers_removed,
 * redacted, links_stripped, dropped_sources, flagged_sources, sources_given,
 * stop, timings, usage (answer_json.c; caller decrefs) */
json_t *rag_answer_json(const rag_answer *a);
/* rag_passages_json: the cited passages with their snippets (cited_only 1), or
 * the passages given or dropped with those flags (cited_only 0) */
json_t *rag_passages_json(const rag_passage *p, int n, int cited_only);

/* rag_strip_echo: append raw[0..n) to out without what a small model echoes
 * from the prompt's format or invents around it: <source ...> / </source>
 * tags (quoted attributes may hold '>'), script and style elements with their
 * content, iframe/img/object/embed/link/meta/form/input/video/audio tags, and
 * the literal placeholder "[n]".  Other '<' text ("a < b", "<table>") stays.
 * DOC_ELIMIT / DOC_ENOMEM from out. */
int rag_strip_echo(const char *raw, size_t n, buf *out);

/* rag_said_not_found: does a generated answer say the sources do not contain
 * the answer ("The documents do not say", "the sources don't mention" ...)? */
int rag_said_not_found(const char *text, size_t len);

#endif
