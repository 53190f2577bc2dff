/* json.c - small helpers over jansson (see json.h). */
#include "json.h"

#include <stdlib.h>

int json_load_capped(const char *path, size_t max, json_t **out, doc_err *err)
{
    char *data = NULL;
    size_t len = 0;
    *out = NULL;
    int rc = file_read_all(path, max, &data, &len, err);
    if (rc) return rc;
    json_error_t je;
    json_t *root = json_loadb(data, len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &je);
    free(data);
    if (!root)
        return doc_errf(err, DOC_EFORMAT, "%s: line %d column %d: %s", path, je.line,
                        je.column, je.text);
    *out = root;
    return DOC_OK;
}

long long json_int_or(const json_t *obj, const char *key, long long def)
{
    json_t *v = json_object_get(obj, key);
    if (json_is_integer(v)) return json_integer_value(v);
    if (json_is_real(v)) return (long long)json_real_value(v);
    return def;
}

double json_num_or(const json_t *obj, const char *key, double def)
{
    json_t *v = json_object_get(obj, key);
    return json_is_number(v) ? json_number_value(v) : def;
}

const char *json_str_or(const json_t *obj, const char *key, const char *def)
{
    json_t *v = json_object_get(obj, key);
    return json_is_string(v) ? json_string_value(v) : def;
}
