/*
 * json.h - core's one doorway to jansson.  Modules that read JSON files
 * (config.json, tokenizer.json) include this header, never <jansson.h>.
 */
#ifndef DOCENT_CORE_JSON_H
#define DOCENT_CORE_JSON_H

#include <jansson.h>

#include "core.h"

/* json_load_capped: parse a JSON file of at most max bytes.  On failure *out
 * is NULL and err names the file, line and column.  Caller frees with
 * json_decref. */
int json_load_capped(const char *path, size_t max, json_t **out, doc_err *err);

/* json_int_or / json_str_or / json_num_or: typed member lookups with a
 * default when the key is absent or has another type. */
long long json_int_or(const json_t *obj, const char *key, long long def);
double json_num_or(const json_t *obj, const char *key, double def);
const char *json_str_or(const json_t *obj, const char *key, const char *def);

#endif
