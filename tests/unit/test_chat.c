/* test_chat.c - chat templates against llama.cpp's renderings (chatml, llama3,
 * llama2, gemma) and the default model's own Jinja template rendered by jinja2
 * (tests/reference/gen_chat.py writes the fixtures). */
#include "testutil.h"

#include "core/json.h"
#include "llm/internal.h"

typedef struct {
    llm_chat_msg msgs[8];
    int n, add;
    const char *want;
} record;

/* parse the fixture into records; strings point into data / root (kept alive) */
static int load(const char *name, char **data, json_t **roots, record *recs, int cap)
{
    char path[256];
    snprintf(path, sizeof path, "tests/fixtures/chat/%s.txt", name);
    doc_err err = {0};
    size_t len;
    assert_int_equal(file_read_all(path, 1 << 20, data, &len, &err), DOC_OK);
    int n = 0;
    char *p = *data;
    while (p && n < cap) {
        char *next = strstr(p, "\n=====\n");
        if (next) *next = 0;
        char *nl = strchr(p, '\n');
        assert_non_null(nl);
        *nl = 0;
        json_error_t je;
        json_t *j = json_loads(p, 0, &je);
        assert_non_null(j);
        roots[n] = j;
        record *r = &recs[n];
        json_t *ms = json_object_get(j, "msgs");
        r->n = (int)json_array_size(ms);
        for (int i = 0; i < r->n; i++) {
            r->msgs[i].role = json_string_value(json_object_get(json_array_get(ms, i), "role"));
            r->msgs[i].content = json_string_value(json_object_get(json_array_get(ms, i), "content"));
        }
        r->add = json_is_true(json_object_get(j, "add_assistant"));
        r->want = nl + 1;
        n++;
        p = next ? next + 7 : NULL;
    }
    return n;
}

static void check_family(const char *name)
{
    char *data;
    json_t *roots[16];
    record recs[16];
    int n = load(name, &data, roots, recs, 16);
    assert_true(n >= 4);
    int fam = chat_from_name(name);
    assert_true(fam > 0);
    for (int i = 0; i < n; i++) {
        buf out;
        buf_init(&out, 0);
        doc_err err = {0};
        assert_int_equal(chat_render(fam, recs[i].msgs, recs[i].n, recs[i].add, &out, &err), DOC_OK);
        if (strcmp(out.data, recs[i].want))
            printf("%s record %d:\n--- docent\n%s\n--- llama.cpp\n%s\n", name, i, out.data, recs[i].want);
        assert_string_equal(out.data, recs[i].want);
        buf_free(&out);
        json_decref(roots[i]);
    }
    free(data);
}

static void test_chatml(void **s) { (void)s; check_family("chatml"); }
static void test_llama3(void **s) { (void)s; check_family("llama3"); }
static void test_llama2(void **s) { (void)s; check_family("llama2"); }
static void test_gemma(void **s) { (void)s; check_family("gemma"); }

static void test_detect(void **state)
{
    (void)state;
    assert_int_equal(chat_detect("{{'<|im_start|>' + message['role']}}", "llama"), CHAT_CHATML);
    assert_int_equal(chat_detect("<|start_header_id|>{{ message['role'] }}", "llama"), CHAT_LLAMA3);
    assert_int_equal(chat_detect("{{ '[INST] ' + content }}", "llama"), CHAT_LLAMA2);
    assert_int_equal(chat_detect("<start_of_turn>user", "gemma"), CHAT_GEMMA);
    assert_int_equal(chat_detect(NULL, "llama"), CHAT_NONE);
    assert_int_equal(chat_from_name("nope"), -1);
    llm_chat_msg bad = {"robot", "x"};
    buf out;
    buf_init(&out, 0);
    doc_err err = {0};
    assert_int_equal(chat_render(CHAT_CHATML, &bad, 1, 1, &out, &err), DOC_EINVAL);
    assert_non_null(strstr(err.msg, "robot"));
    buf_free(&out);
}

/* the real model: its template is recognised and its default system prompt inserted */
static void test_default_model(void **state)
{
    (void)state;
    char path[512];
    test_model_path(path, sizeof path, TEST_GGUF);
    llm_model *m;
    doc_err err = {0};
    llm_opts o = {.n_threads = 1};
    assert_int_equal(llm_model_open(path, &o, &m, &err), DOC_OK);
    char *data;
    json_t *roots[16];
    record recs[16];
    int n = load("smollm2", &data, roots, recs, 16);
    for (int i = 0; i < n; i++) {
        buf out;
        buf_init(&out, 0);
        assert_int_equal(llm_chat_render(m, recs[i].msgs, recs[i].n, recs[i].add, &out, &err), DOC_OK);
        if (strcmp(out.data, recs[i].want))
            printf("record %d:\n--- docent\n%s\n--- jinja2\n%s\n", i, out.data, recs[i].want);
        assert_string_equal(out.data, recs[i].want);
        buf_free(&out);
        json_decref(roots[i]);
    }
    free(data);
    llm_model_close(&m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_chatml), cmocka_unit_test(test_llama3), cmocka_unit_test(test_llama2),
        cmocka_unit_test(test_gemma),  cmocka_unit_test(test_detect), cmocka_unit_test(test_default_model),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
