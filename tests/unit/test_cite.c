/* test_cite.c - rag/cite.c: marker cleaning and normalisation, sentence
 * splitting, lexical support against real SQLite documentation paragraphs
 * (/usr/share/doc/sqlite3: wal.html, autoinc.html, foreignkeys.html), the
 * grounded verdict, errors and caps. */
#include "testutil.h"

#include <time.h>

#include "rag/rag.h"

/* source 1: wal.html, "The WAL approach inverts this." */
static const char src_wal[] =
    "The WAL approach inverts this. The original content is preserved in the database file and "
    "the changes are appended into a separate WAL file. A COMMIT occurs when a special record "
    "indicating a commit is appended to the WAL. Thus a COMMIT can happen without ever writing to "
    "the original database, which allows readers to continue operating from the original "
    "unaltered database while changes are simultaneously being committed into the WAL. Multiple "
    "transactions can be appended to the end of a single WAL file.";
/* source 2: autoinc.html */
static const char src_autoinc[] =
    "The AUTOINCREMENT keyword imposes extra CPU, memory, disk space, and disk I/O overhead and "
    "should be avoided if not strictly needed. It is usually not needed. If the AUTOINCREMENT "
    "keyword appears after INTEGER PRIMARY KEY, that changes the automatic ROWID assignment "
    "algorithm to prevent the reuse of ROWIDs over the lifetime of the database. In other words, "
    "the purpose of AUTOINCREMENT is to prevent the reuse of ROWIDs from previously deleted rows.";
/* source 3: foreignkeys.html */
static const char src_fk[] =
    "SQL foreign key constraints are used to enforce \"exists\" relationships between tables. "
    "One solution is to add an SQL foreign key constraint to the database schema to enforce the "
    "relationship between the artist and track table. To do so, a foreign key definition may be "
    "added by modifying the declaration of the track table to the following:";

static const rag_source srcs[3] = {{src_wal}, {src_autoinc}, {src_fk}};

/* cite: run rag_cite over answer with the three sources; returns the cleaned
 * answer (caller frees) and fills c */
static char *cite(const char *answer, rag_citations *c)
{
    buf b;
    buf_init(&b, 0);
    doc_err e = {0};
    int rc = rag_cite(answer, strlen(answer), srcs, 3, 0.5, &b, c, &e);
    if (rc) print_error("rag_cite: %s\n", e.msg);
    assert_int_equal(rc, DOC_OK);
    char *s = buf_steal(&b, NULL);
    if (!s) s = strdup("");
    return s;
}

/* sentence i's text in out, compared with want */
static void sentence_is(const char *out, const rag_citations *c, int i, const char *want)
{
    assert_true(i < c->n_sentences);
    const rag_sentence *r = &c->sentences[i];
    if (strlen(want) != r->len || memcmp(out + r->off, want, r->len))
        print_error("sentence %d: '%.*s'\n", i, (int)r->len, out + r->off);
    assert_int_equal(r->len, strlen(want));
    assert_memory_equal(out + r->off, want, r->len);
}

static void test_all_cited(void **state)
{
    (void)state;
    const char *a = "In WAL mode a COMMIT occurs when a special record is appended to the WAL [1]. "
                    "AUTOINCREMENT prevents the reuse of ROWIDs from previously deleted rows [2]. "
                    "A foreign key constraint enforces the relationship between the artist and "
                    "track table [3].";
    rag_citations c;
    char *out = cite(a, &c);
    assert_string_equal(out, a);
    assert_int_equal(c.n_sentences, 3);
    assert_int_equal(c.sentences[0].cited, 1);
    assert_int_equal(c.sentences[1].cited, 2);
    assert_int_equal(c.sentences[2].cited, 4);
    for (int i = 0; i < 3; i++) {
        assert_true(c.sentences[i].support >= 0.8);
        assert_int_equal(c.sentences[i].matched, 0);
    }
    sentence_is(out, &c, 1, "AUTOINCREMENT prevents the reuse of ROWIDs from previously deleted "
                            "rows [2].");
    assert_int_equal(c.used, 7);
    assert_int_equal(c.n_invalid, 0);
    assert_int_equal(c.n_unsupported, 0);
    assert_int_equal(c.grounded, 1);
    /* a citation of the wrong source gets low support */
    rag_citations_free(&c);
    free(out);
    out = cite("AUTOINCREMENT prevents the reuse of ROWIDs from previously deleted rows [3].", &c);
    assert_int_equal(c.sentences[0].cited, 4);
    assert_true(c.sentences[0].support < 0.5);
    rag_citations_free(&c);
    free(out);
}

static void test_invalid_removed(void **state)
{
    (void)state;
    rag_citations c;
    char *out = cite("Changes are appended to a separate WAL file [7]. Readers continue operating "
                     "from the original database [1].", &c);
    assert_string_equal(out, "Changes are appended to a separate WAL file. Readers continue "
                             "operating from the original database [1].");
    assert_int_equal(c.n_invalid, 1);
    assert_int_equal(c.n_sentences, 2);
    assert_int_equal(c.sentences[0].cited, 0);
    assert_int_equal(c.sentences[0].matched, 1); /* uncited now, but supported by source 1 */
    assert_int_equal(c.sentences[1].cited, 1);
    assert_int_equal(c.grounded, 1);
    rag_citations_free(&c);
    free(out);

    out = cite("[0] The WAL file holds appended changes []. Yes [4].", &c);
    assert_string_equal(out, "The WAL file holds appended changes. Yes.");
    assert_int_equal(c.n_invalid, 3);
    assert_int_equal(c.sentences[0].matched, 1); /* five content words, all in source 1 */
    assert_int_equal(c.sentences[1].matched, 0); /* "Yes." needs no support */
    assert_int_equal(c.used, 1);
    assert_int_equal(c.grounded, 1);
    assert_int_equal(c.n_unsupported, 0);
    rag_citations_free(&c);
    free(out);

    /* only short sentences: nothing unsupported, but nothing grounds it either */
    out = cite("Yes [5]. No.", &c);
    assert_string_equal(out, "Yes. No.");
    assert_int_equal(c.n_sentences, 2);
    assert_int_equal(c.n_unsupported, 0);
    assert_int_equal(c.grounded, 0);
    rag_citations_free(&c);
    free(out);

    out = cite("The year [2023] and [1-5] and [3-1] and [1,,2] go [ ].", &c);
    assert_string_equal(out, "The year and and and [1][2] go."); /* empty item dropped */
    assert_int_equal(c.n_invalid, 5);
    rag_citations_free(&c);
    free(out);
}

static void test_normalise(void **state)
{
    (void)state;
    rag_citations c;
    char *out = cite("Readers continue while changes are committed into the WAL [1, 3]. ROWIDs "
                     "are never reused [1,2]. The track table gets a foreign key [1-2][3].",
                     &c);
    assert_string_equal(out, "Readers continue while changes are committed into the WAL [1][3]. "
                             "ROWIDs are never reused [1][2]. The track table gets a foreign key "
                             "[1][2][3].");
    assert_int_equal(c.n_sentences, 3);
    assert_int_equal(c.sentences[0].cited, 5);
    assert_int_equal(c.sentences[1].cited, 3);
    assert_int_equal(c.sentences[2].cited, 7);
    assert_int_equal(c.n_invalid, 0);
    rag_citations_free(&c);
    free(out);

    out = cite("Mixed [1, 7] list [ 2 - 3 ].", &c);
    assert_string_equal(out, "Mixed [1] list [2][3].");
    assert_int_equal(c.n_invalid, 1);
    assert_int_equal(c.sentences[0].cited, 7);
    rag_citations_free(&c);
    free(out);
}

static void test_matched_and_unsupported(void **state)
{
    (void)state;
    rag_citations c;
    char *out = cite("The AUTOINCREMENT keyword prevents reuse of deleted ROWIDs over the "
                     "lifetime of the database.", &c);
    assert_int_equal(c.n_sentences, 1);
    assert_int_equal(c.sentences[0].cited, 0);
    assert_int_equal(c.sentences[0].matched, 2);
    assert_true(c.sentences[0].support >= 0.8);
    assert_int_equal(c.used, 2);
    assert_int_equal(c.grounded, 1);
    rag_citations_free(&c);
    free(out);

    out = cite("WAL readers continue from the original database [1]. Quantum entanglement "
               "accelerates blockchain mining on volcanic islands.", &c);
    assert_int_equal(c.n_sentences, 2);
    assert_int_equal(c.sentences[1].matched, 0);
    assert_true(c.sentences[1].support < 0.2);
    assert_int_equal(c.n_unsupported, 1);
    assert_int_equal(c.grounded, 0);
    assert_int_equal(c.used, 1);
    rag_citations_free(&c);
    free(out);
}

static void test_splitting(void **state)
{
    (void)state;
    rag_citations c;
    const char *a = "Some settings, e.g. the page size, are fixed [1]. Pi is about 3.14 in "
                    "version 3.7.0 builds, i.e. always [2]! Really? Yes.";
    char *out = cite(a, &c);
    assert_string_equal(out, a);
    assert_int_equal(c.n_sentences, 4);
    sentence_is(out, &c, 0, "Some settings, e.g. the page size, are fixed [1].");
    sentence_is(out, &c, 1, "Pi is about 3.14 in version 3.7.0 builds, i.e. always [2]!");
    sentence_is(out, &c, 3, "Yes.");
    rag_citations_free(&c);
    free(out);

    /* markers after the sentence end belong to the sentence before */
    out = cite("The COMMIT is a record appended to the WAL. [1] AUTOINCREMENT prevents "
               "ROWID reuse.[2] Done.", &c);
    assert_int_equal(c.n_sentences, 3);
    sentence_is(out, &c, 0, "The COMMIT is a record appended to the WAL. [1]");
    sentence_is(out, &c, 1, "AUTOINCREMENT prevents ROWID reuse.[2]");
    assert_int_equal(c.sentences[0].cited, 1);
    assert_int_equal(c.sentences[1].cited, 2);
    assert_int_equal(c.sentences[2].cited, 0);
    rag_citations_free(&c);
    free(out);

    /* paragraphs and list items split; a wrapped line does not */
    out = cite("Steps to take:\n- Enable the WAL [1]\n- Avoid AUTOINCREMENT [2]\n\nThe track "
               "table\nneeds a foreign key [3]", &c);
    assert_int_equal(c.n_sentences, 4);
    sentence_is(out, &c, 1, "- Enable the WAL [1]");
    sentence_is(out, &c, 3, "The track table\nneeds a foreign key [3]");
    assert_int_equal(c.used, 7);
    rag_citations_free(&c);
    free(out);
}

static void test_links_untouched(void **state)
{
    (void)state;
    rag_citations c;
    const char *a = "See [the docs](https://x) and [see above] for the WAL [1]. An image "
                    "![2](a.png), a footnote [1]: and `arr[0]` stay.";
    char *out = cite(a, &c);
    assert_string_equal(out, a);
    assert_int_equal(c.n_invalid, 0);
    assert_int_equal(c.sentences[0].cited, 1);
    assert_int_equal(c.sentences[1].cited, 0);
    rag_citations_free(&c);
    free(out);
}

static void test_empty_and_utf8(void **state)
{
    (void)state;
    rag_citations c;
    char *out = cite("", &c);
    assert_string_equal(out, "");
    assert_int_equal(c.n_sentences, 0);
    assert_int_equal(c.grounded, 0);
    assert_int_equal(c.used, 0);
    rag_citations_free(&c);
    free(out);

    const char *a = "Le fichier WAL — écriture anticipée — garde les données [1]。数据库使用"
                    "预写日志[2]！Ça marche? Oui.";
    out = cite(a, &c);
    assert_string_equal(out, a);
    assert_int_equal(c.n_sentences, 4);
    sentence_is(out, &c, 0, "Le fichier WAL — écriture anticipée — garde les données [1]。");
    sentence_is(out, &c, 1, "数据库使用预写日志[2]！");
    assert_int_equal(c.used, 3);
    rag_citations_free(&c);
    free(out);
}

static void test_errors_and_cap(void **state)
{
    (void)state;
    rag_citations c;
    buf b;
    buf_init(&b, 0);
    doc_err e = {0};
    assert_int_equal(rag_cite("x", 1, srcs, 33, 0.5, &b, &c, &e), DOC_EINVAL);
    assert_int_equal(rag_cite("x", 1, srcs, -1, 0.5, &b, &c, &e), DOC_EINVAL);
    assert_int_equal(rag_cite(NULL, 5, srcs, 3, 0.5, &b, &c, &e), DOC_EINVAL);
    assert_int_equal(rag_cite(NULL, 0, srcs, 3, 0.5, &b, &c, &e), DOC_OK);
    assert_int_equal(c.n_sentences, 0);
    rag_citations_free(&c);
    /* no sources: every marker is invalid, long sentences unsupported */
    assert_int_equal(rag_cite("WAL appends the changes to a separate file [1].", 47, NULL, 0, 0.5,
                              &b, &c, &e), DOC_OK);
    assert_string_equal(b.data, "WAL appends the changes to a separate file.");
    assert_int_equal(c.n_invalid, 1);
    assert_int_equal(c.n_unsupported, 1);
    rag_citations_free(&c);
    buf_free(&b);

    /* expansion past the cap: DOC_ELIMIT, out and c left empty */
    buf_init(&b, 12);
    const char *a = "Text [1-3].";
    assert_int_equal(rag_cite(a, strlen(a), srcs, 3, 0.5, &b, &c, &e), DOC_ELIMIT);
    assert_int_equal(b.len, 0);
    assert_null(c.sentences);
    assert_int_equal(c.n_sentences, 0);
    buf_free(&b);
}

/* linear time: a 2 MB answer of cited and uncited sentences */
static void test_linear(void **state)
{
    (void)state;
    buf in;
    buf_init(&in, 0);
    for (int i = 0; i < 20000; i++)
        assert_int_equal(buf_puts(&in, "The WAL file gets appended changes [1, 2]. Readers "
                                       "continue from the original database. e.g. x. [9] "),
                         DOC_OK);
    rag_citations c;
    buf b;
    buf_init(&b, 0);
    clock_t t0 = clock();
    assert_int_equal(rag_cite(in.data, in.len, srcs, 3, 0.5, &b, &c, NULL), DOC_OK);
    double dt = (double)(clock() - t0) / CLOCKS_PER_SEC;
    assert_true(c.n_sentences >= 40000);
    assert_int_equal(c.n_invalid, 20000);
    assert_true(dt < 0.5);
    rag_citations_free(&c);
    buf_free(&b);
    buf_free(&in);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_all_cited),       cmocka_unit_test(test_invalid_removed),
        cmocka_unit_test(test_normalise),       cmocka_unit_test(test_matched_and_unsupported),
        cmocka_unit_test(test_splitting),       cmocka_unit_test(test_links_untouched),
        cmocka_unit_test(test_empty_and_utf8),  cmocka_unit_test(test_errors_and_cap),
        cmocka_unit_test(test_linear),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
