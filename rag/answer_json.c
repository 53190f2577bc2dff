/*
 * answer_json.c - an answer as the JSON object docent prints (`docent ask
 * --json`) and docentd sends (/v1/ask, the SSE "done" event): one shape for
 * both, so the same question gives the same fields in-process and through
 * the daemon.
 */
#include "core/json.h"
#include "rag/rag.h"

static json_t *lines_json(int a, int b)
{
    return a > 0 ? json_pack("[ii]", a, b) : json_null();
}

json_t *rag_passages_json(const rag_passage *p, int n, int cited_only)
{
    json_t *arr = json_array();
    for (int i = 0; i < n; i++) {
        if (cited_only && !p[i].cited) continue;
        if (!cited_only && !p[i].n && !p[i].dropped) continue;
        json_t *c = json_pack("{s:i,s:I,s:s,s:s,s:s,s:s,s:o,s:o,s:f}", "n", p[i].n, "document_id",
                              (json_int_t)p[i].doc_id, "uri", p[i].uri, "title", p[i].title,
                              "heading", p[i].heading, "collection", p[i].collection, "page",
                              p[i].page > 0 ? json_integer(p[i].page) : json_null(), "lines",
                              lines_json(p[i].line_start, p[i].line_end), "score", p[i].score);
        if (cited_only) json_object_set_new(c, "snippet", json_string(p[i].snippet ? p[i].snippet : ""));
        else {
            json_object_set_new(c, "dropped", json_boolean(p[i].dropped));
            json_object_set_new(c, "flagged", json_boolean(p[i].injection != 0));
        }
        json_array_append_new(arr, c);
    }
    return arr;
}

static const char *not_found_name(int n)
{
    return n == RAG_NOT_FOUND_WEAK ? "weak evidence" : n == RAG_NOT_FOUND_MODEL ? "model" : NULL;
}

json_t *rag_answer_json(const rag_answer *r)
{
    json_t *dropped = json_array(), *flagged = json_array();
    for (int i = 0; i < r->n_passages; i++) {
        const rag_passage *p = &r->passages[i];
        if (p->dropped)
            json_array_append_new(dropped, json_pack("{s:s,s:s,s:i,s:s}", "uri", p->uri, "heading",
                                                     p->heading, "tokens", p->n_tokens, "reason",
                                                     "token budget"));
        if (p->injection)
            json_array_append_new(flagged, json_pack("{s:s,s:i,s:b}", "uri", p->uri, "kinds",
                                                     (int)p->injection, "withheld", p->n_masked > 0));
    }
    json_t *o = json_object();
    json_object_set_new(o, "answer", json_string(r->text ? r->text : ""));
    json_object_set_new(o, "query", json_string(r->query ? r->query : ""));
    json_object_set_new(o, "citations", rag_passages_json(r->passages, r->n_passages, 1));
    json_object_set_new(o, "grounded", json_boolean(r->grounded));
    json_object_set_new(o, "refused", json_boolean(r->refused));
    json_object_set_new(o, "refusal_category",
                        r->refused ? json_string(r->refusal_category) : json_null());
    json_object_set_new(o, "not_found", json_boolean(r->not_found != RAG_FOUND));
    json_object_set_new(o, "not_found_reason",
                        r->not_found ? json_string(not_found_name(r->not_found)) : json_null());
    json_object_set_new(o, "unsupported_sentences", json_integer(r->n_unsupported));
    json_object_set_new(o, "invalid_markers_removed", json_integer(r->n_invalid_markers));
    json_object_set_new(o, "redacted", json_integer(r->n_redacted));
    json_object_set_new(o, "links_stripped", json_integer(r->n_stripped));
    json_object_set_new(o, "dropped_sources", dropped);
    json_object_set_new(o, "flagged_sources", flagged);
    json_object_set_new(o, "sources_given", json_integer(r->n_given));
    json_object_set_new(o, "stop", json_string(rag_stop_name(r->stop_reason)));
    const rag_timings *t = &r->t;
    json_object_set_new(o, "timings",
                        json_pack("{s:f,s:f,s:f,s:f,s:f,s:f,s:f,s:f,s:f,s:f,s:f}", "guard", t->guard,
                                  "rewrite", t->rewrite, "embed", t->embed, "retrieve", t->retrieve,
                                  "prompt", t->prompt, "prefill", t->prefill, "decode", t->decode,
                                  "cite", t->cite, "filter", t->filter, "first_text", t->first_text,
                                  "total", t->total));
    json_object_set_new(o, "usage", json_pack("{s:i,s:i}", "prompt_tokens", r->prompt_tokens,
                                              "completion_tokens", r->answer_tokens));
    return o;
}
