/*
 * prompts.h - docent's prompt templates (shared/DESIGN.md §6 step 5), public API.
 *
 * The texts the model and the user see are files an operator can edit, in one
 * directory (default "prompts/"):
 *
 *   name       file            placeholders
 *   system     system.txt      date                                  (none required)
 *   source     source.txt      n, title, heading, uri, page, text    (n and text required)
 *   user       user.txt        sources, question                     (both required)
 *   not_found  not_found.txt   question, closest                     (question required)
 *   refusal    refusal.txt     category, question                    (none required)
 *   rewrite    rewrite.txt     history, question                     (both required)
 *
 * Syntax: {{name}} inserts a value (name: a-z, 0-9, _; on one line).  {{{{
 * writes a literal "{{"; any other text, "}}" included, is literal.  Each
 * file's final newline (one "\n", or "\r\n") is not part of the template, so
 * an editor's trailing newline does not leak into the prompt.
 *
 * Load-time checks (prompt_set_load): every file exists, is at most
 * PROMPT_FILE_MAX bytes, is valid UTF-8 without NUL bytes, every placeholder
 * is allowed for its template and every required one is present.  Errors name
 * "dir/file:line" and the placeholder, e.g.
 *   prompts/user.txt:4: unknown placeholder {{sourcse}} (allowed: sources, question)
 *   prompts/user.txt: must contain {{question}}
 *
 * Source text is data.  Values are inserted verbatim except that sequences
 * that could close or forge the source wrapper or a chat-template turn are
 * broken, so a passage cannot end its <source> block or start a new turn:
 *   - a '<' that opens a source tag ("<source", "</source", any case, with
 *     blanks allowed after '<' and '/') becomes U+2039 '‹';
 *   - a '<' that starts "<|" (ChatML / Llama 3 markers such as <|im_start|>,
 *     <|im_end|>, <|start_header_id|>, <|eot_id|>), "<<SYS>>", "<</SYS>>",
 *     "<s>", "</s>", "<start_of_turn>", "<end_of_turn>" becomes '‹';
 *   - a '[' that starts "[INST]" or "[/INST]" becomes U+FF3B '［'.
 * Matching is ASCII case-insensitive.  The one exception is user's
 * {{sources}}, which is inserted raw: it holds source blocks already rendered
 * (and neutralised) by prompt_render(p, "source", ...).
 *
 * The rendered system and user texts are plain message contents; the caller
 * wraps them in the model's chat template (llm_chat_render).
 *
 * Ownership and threads: a prompt_set is immutable after load, so any number
 * of threads may render from one set at once.  There is no global set; to
 * reload, load a new set from the directory and, if that succeeds, swap the
 * owner's pointer (under the owner's lock) and free the old set once no
 * render uses it.  A failed reload leaves the old set in service.
 */
#ifndef DOCENT_PROMPTS_H
#define DOCENT_PROMPTS_H

#include "core/core.h"

enum { PROMPT_FILE_MAX = 64 * 1024 }; /* bytes per template file */

typedef struct prompt_set prompt_set;

/* prompt_var: one value for a placeholder; both strings borrowed for the call.
 * value must be valid UTF-8; NULL counts as absent. */
typedef struct prompt_var {
    const char *name;
    const char *value;
} prompt_var;

/*
 * prompt_set_load: read and validate the six templates from dir.
 * Returns 0 and a new set in *out (free with prompt_set_free), or
 * DOC_ENOTFOUND (a file is missing), DOC_ELIMIT (a file over
 * PROMPT_FILE_MAX), DOC_EFORMAT (bad UTF-8, NUL byte, unknown or malformed
 * placeholder, unterminated "{{", missing required placeholder), DOC_EIO,
 * DOC_ENOMEM; then *out is NULL and err names the file, line and placeholder.
 */
int prompt_set_load(const char *dir, prompt_set **out, doc_err *err);

/* prompt_set_free: release a set and NULL *p; accepts NULL and *p == NULL. */
void prompt_set_free(prompt_set **p);

/*
 * prompt_render: append template_name ("system", "source", "user",
 * "not_found", "refusal", "rewrite") rendered with vars[0..n) to out.  The first var of
 * a name is used; vars the template does not use are ignored; an optional
 * placeholder without a var renders as "".  Values are neutralised as the
 * file comment says.  Returns 0, or DOC_ENOTFOUND (unknown template name),
 * DOC_EINVAL (a required placeholder has no var, or a value is not valid
 * UTF-8; the message names it), DOC_ELIMIT (out's cap reached); on failure
 * out is left as it was.  Thread-safe for a shared set.
 */
int prompt_render(const prompt_set *p, const char *template_name, const prompt_var *vars, int n,
                  buf *out, doc_err *err);

#endif
