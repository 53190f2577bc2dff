/*
 * test_walk.c - ingest/walk.c on a real temp tree: sorted order, include and
 * exclude globs (basename and relative path; an excluded folder is not
 * entered), hidden entries, file symlinks, a broken link, a symlink loop with
 * follow_symlinks, an unreadable folder, a single-file root, a missing root,
 * a path longer than PATH_MAX, stopping from the callback, and the path
 * normaliser.
 */
#include "testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ingest/internal.h"

static char tmp[64];   /* the mkdtemp dir */
static char root[96];  /* tmp/root */

typedef struct seen {
    char files[64][512];
    int n;
    char warns[16][600];
    int n_warn;
    int stop_after; /* 0: never */
} seen;

static int on_file(void *ctx, const char *path, const struct stat *st)
{
    seen *s = ctx;
    assert_true(S_ISREG(st->st_mode));
    assert_true(path[0] == '/');
    if (s->n < 64) {
        /* relative to root when under it, else the whole path */
        size_t rl = strlen(root);
        const char *p = strncmp(path, root, rl) == 0 && path[rl] == '/' ? path + rl + 1 : path;
        snprintf(s->files[s->n], sizeof s->files[0], "%s", p);
    }
    s->n++;
    return s->stop_after && s->n >= s->stop_after ? 42 : 0;
}

static void on_warn(void *ctx, const char *path, const char *why)
{
    seen *s = ctx;
    if (s->n_warn < 16) snprintf(s->warns[s->n_warn], sizeof s->warns[0], "%s: %s", path, why);
    s->n_warn++;
}

static void put(const char *rel, const char *text)
{
    char p[512];
    snprintf(p, sizeof p, "%s/%s", root, rel);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void dir(const char *rel)
{
    char p[512];
    snprintf(p, sizeof p, "%s/%s", root, rel);
    assert_int_equal(mkdir(p, 0755), 0);
}

static void link_to(const char *target, const char *rel)
{
    char p[512];
    snprintf(p, sizeof p, "%s/%s", root, rel);
    assert_int_equal(symlink(target, p), 0);
}

/*
 * root/
 *   C.txt a.md b.txt notes.png .hidden.txt .git/config.txt
 *   build/out.txt                    (excluded by basename)
 *   docs/z.txt docs/sub/y.md docs/sub/y.bak docs/old/x.txt (docs/old excluded by path)
 *   deep/old/w.txt deep/empty/       (deep/old not excluded: "docs/old" is a path pattern)
 *   link.txt -> docs/z.txt, dangling.txt -> missing
 *   loop/f.txt loop/up -> ..         (a loop when links are followed)
 *   locked/secret.txt                (mode 000)
 */
static int setup(void **state)
{
    (void)state;
    snprintf(tmp, sizeof tmp, "/tmp/docent-walk-XXXXXX");
    assert_non_null(mkdtemp(tmp));
    snprintf(root, sizeof root, "%s/root", tmp);
    assert_int_equal(mkdir(root, 0755), 0);
    put("C.txt", "c");
    put("a.md", "# a");
    put("b.txt", "b");
    put("notes.png", "png");
    put(".hidden.txt", "h");
    dir(".git");
    put(".git/config.txt", "g");
    dir("build");
    put("build/out.txt", "o");
    dir("docs");
    put("docs/z.txt", "z");
    dir("docs/sub");
    put("docs/sub/y.md", "y");
    put("docs/sub/y.bak", "y");
    dir("docs/old");
    put("docs/old/x.txt", "x");
    dir("deep");
    dir("deep/empty");
    dir("deep/old");
    put("deep/old/w.txt", "w");
    link_to("docs/z.txt", "link.txt");
    link_to("missing", "dangling.txt");
    dir("loop");
    put("loop/f.txt", "f");
    link_to("..", "loop/up");
    dir("locked");
    put("locked/secret.txt", "s");
    char p[512];
    snprintf(p, sizeof p, "%s/locked", root);
    assert_int_equal(chmod(p, 0), 0);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[256];
    snprintf(cmd, sizeof cmd, "chmod -R u+rwx %s && rm -rf %s", tmp, tmp); /* deep paths too */
    assert_int_equal(system(cmd), 0);
    return 0;
}

static const char *const incl[] = {"*.txt", "*.md"};
static const char *const excl[] = {"build", "docs/old", "*.bak"};

static void expect_files(const seen *s, const char *const *want, int n)
{
    for (int i = 0; i < s->n && i < 64; i++) print_message("  %s\n", s->files[i]);
    assert_int_equal(s->n, n);
    for (int i = 0; i < n; i++) assert_string_equal(s->files[i], want[i]);
}

static int has_warn(const seen *s, const char *rel, const char *why)
{
    char w[600];
    snprintf(w, sizeof w, "%s/%s: %s", root, rel, why);
    for (int i = 0; i < s->n_warn && i < 16; i++)
        if (strcmp(s->warns[i], w) == 0) return 1;
    return 0;
}

/* ---- tests ------------------------------------------------------------------ */

static void test_default_walk(void **state)
{
    (void)state;
    ing_walk_opts o = {.include = incl, .n_include = 2, .exclude = excl, .n_exclude = 3};
    seen s = {0};
    doc_err err = {0};
    assert_int_equal(ing_walk(root, &o, on_file, on_warn, &s, &err), DOC_OK);
    for (int i = 0; i < s.n_warn; i++) print_message("  warn: %s\n", s.warns[i]);
    int is_root = geteuid() == 0; /* root reads a mode-000 folder anyway */
    /* bytewise order per folder; links skipped; hidden skipped; build and
     * docs/old not entered; notes.png and y.bak not included */
    const char *want_user[] = {"C.txt", "a.md", "b.txt", "deep/old/w.txt", "docs/sub/y.md",
                               "docs/z.txt", "loop/f.txt"};
    const char *want_root[] = {"C.txt", "a.md", "b.txt", "deep/old/w.txt", "docs/sub/y.md",
                               "docs/z.txt", "locked/secret.txt", "loop/f.txt"};
    if (is_root) {
        expect_files(&s, want_root, 8);
        assert_int_equal(s.n_warn, 0);
    } else {
        expect_files(&s, want_user, 7);
        assert_int_equal(s.n_warn, 1);
        assert_true(has_warn(&s, "locked", strerror(EACCES)));
    }
}

static void test_follow_and_hidden(void **state)
{
    (void)state;
    ing_walk_opts o = {.include = incl, .n_include = 2, .exclude = excl, .n_exclude = 3,
                       .follow_symlinks = 1, .include_hidden = 1};
    seen s = {0};
    doc_err err = {0};
    char p[512];
    snprintf(p, sizeof p, "%s/locked", root);
    assert_int_equal(chmod(p, 0755), 0); /* readable for this test */
    int rc = ing_walk(root, &o, on_file, on_warn, &s, &err);
    assert_int_equal(chmod(p, 0), 0);
    assert_int_equal(rc, DOC_OK);
    for (int i = 0; i < s.n_warn; i++) print_message("  warn: %s\n", s.warns[i]);
    /* loop/up -> .. is the root, on the current path: warned, not walked */
    const char *want[] = {".git/config.txt", ".hidden.txt", "C.txt", "a.md", "b.txt",
                          "deep/old/w.txt", "docs/sub/y.md", "docs/z.txt", "link.txt",
                          "locked/secret.txt", "loop/f.txt"};
    expect_files(&s, want, 11);
    assert_int_equal(s.n_warn, 2);
    assert_true(has_warn(&s, "dangling.txt", "broken symlink"));
    assert_true(has_warn(&s, "loop/up", "symlink loop"));
}

static void test_no_filters(void **state)
{
    (void)state;
    seen s = {0};
    doc_err err = {0};
    char p[512];
    snprintf(p, sizeof p, "%s/docs/", root); /* trailing '/' is fine */
    assert_int_equal(ing_walk(p, NULL, on_file, NULL, &s, &err), DOC_OK);
    const char *want[] = {"docs/old/x.txt", "docs/sub/y.bak", "docs/sub/y.md", "docs/z.txt"};
    expect_files(&s, want, 4);
}

static void test_single_file_and_missing(void **state)
{
    (void)state;
    seen s = {0};
    doc_err err = {0};
    char p[512];
    /* a file root is passed as named, even when the include globs would not take it */
    ing_walk_opts o = {.include = incl, .n_include = 2};
    snprintf(p, sizeof p, "%s/notes.png", root);
    assert_int_equal(ing_walk(p, &o, on_file, NULL, &s, &err), DOC_OK);
    assert_int_equal(s.n, 1);
    assert_string_equal(s.files[0], "notes.png");

    /* relative roots become absolute */
    s.n = 0;
    int cwd = open(".", O_RDONLY | O_DIRECTORY);
    assert_true(cwd >= 0);
    assert_int_equal(chdir(tmp), 0);
    int rc = ing_walk("root/./docs/../b.txt", NULL, on_file, NULL, &s, &err);
    assert_int_equal(fchdir(cwd), 0);
    close(cwd);
    assert_int_equal(rc, DOC_OK);
    assert_int_equal(s.n, 1);
    assert_string_equal(s.files[0], "b.txt");

    snprintf(p, sizeof p, "%s/no-such-dir", root);
    assert_int_equal(ing_walk(p, NULL, on_file, NULL, &s, &err), DOC_ENOTFOUND);
    char want[600];
    snprintf(want, sizeof want, "%s: no such file or folder", p);
    assert_string_equal(err.msg, want);
}

static void test_stop(void **state)
{
    (void)state;
    seen s = {.stop_after = 2};
    doc_err err = {0};
    assert_int_equal(ing_walk(root, NULL, on_file, NULL, &s, &err), 42);
    assert_int_equal(s.n, 2);
}

static void test_path_too_long(void **state)
{
    (void)state;
    /* 17 nested folders of 250 bytes: more than PATH_MAX, made one level at a time */
    char name[251];
    memset(name, 'd', 250);
    name[250] = 0;
    int cwd = open(".", O_RDONLY | O_DIRECTORY);
    assert_true(cwd >= 0);
    char p[512];
    snprintf(p, sizeof p, "%s/long", tmp);
    assert_int_equal(mkdir(p, 0755), 0);
    assert_int_equal(chdir(p), 0);
    for (int i = 0; i < 17; i++) {
        assert_int_equal(mkdir(name, 0755), 0);
        assert_int_equal(chdir(name), 0);
    }
    FILE *f = fopen("deep.txt", "w");
    assert_non_null(f);
    fclose(f);
    assert_int_equal(fchdir(cwd), 0);
    close(cwd);
    seen s = {0};
    doc_err err = {0};
    assert_int_equal(ing_walk(p, NULL, on_file, NULL, &s, &err), DOC_ELIMIT);
    print_message("  %s\n", err.msg);
    assert_memory_equal(err.msg, p, strlen(p)); /* names the path */
    assert_non_null(strstr(err.msg, "path longer than 4095 bytes"));
    assert_int_equal(s.n, 0);
}

static void test_globs(void **state)
{
    (void)state;
    const char *const g1[] = {"*.md"};
    assert_true(ing_glob_match(g1, 1, "a/b/c.md"));
    assert_false(ing_glob_match(g1, 1, "a/b/c.mdx"));
    const char *const g2[] = {"docs/*"};
    assert_true(ing_glob_match(g2, 1, "docs/a"));
    assert_false(ing_glob_match(g2, 1, "docs/sub/a")); /* '*' does not cross '/' */
    const char *const g3[] = {"nope", "build"};
    assert_true(ing_glob_match(g3, 2, "x/y/build"));
    assert_true(ing_glob_match(g3, 2, "build"));
    assert_false(ing_glob_match(g3, 2, "builder"));
    assert_false(ing_glob_match(NULL, 0, "a"));

    ing_walk_opts o = {.include = incl, .n_include = 2, .exclude = excl, .n_exclude = 3};
    assert_true(ing_walk_wants(&o, "docs/a.txt", 0));
    assert_false(ing_walk_wants(&o, "docs/a.png", 0));
    assert_true(ing_walk_wants(&o, "docs/pics", 1)); /* include globs are for files */
    assert_false(ing_walk_wants(&o, "docs/old", 1));
    assert_false(ing_walk_wants(&o, "docs/.cache", 1));
    o.include_hidden = 1;
    assert_true(ing_walk_wants(&o, "docs/.cache", 1));
}

static void test_path_abs(void **state)
{
    (void)state;
    char out[PATH_MAX];
    doc_err err = {0};
    assert_int_equal(ing_path_abs("/a//b/./c/../d/", out, sizeof out, &err), DOC_OK);
    assert_string_equal(out, "/a/b/d");
    assert_int_equal(ing_path_abs("/../..", out, sizeof out, &err), DOC_OK);
    assert_string_equal(out, "/");
    assert_int_equal(ing_path_abs("/", out, sizeof out, &err), DOC_OK);
    assert_string_equal(out, "/");
    char cwd[PATH_MAX], want[PATH_MAX + 8];
    assert_non_null(getcwd(cwd, sizeof cwd));
    assert_int_equal(ing_path_abs("x/y", out, sizeof out, &err), DOC_OK);
    snprintf(want, sizeof want, "%s/x/y", strcmp(cwd, "/") ? cwd : "");
    assert_string_equal(out, want);
    char small[8];
    assert_int_equal(ing_path_abs("/abcdefgh", small, sizeof small, &err), DOC_ELIMIT);
    assert_int_equal(ing_path_abs("", out, sizeof out, &err), DOC_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_default_walk),
        cmocka_unit_test(test_follow_and_hidden),
        cmocka_unit_test(test_no_filters),
        cmocka_unit_test(test_single_file_and_missing),
        cmocka_unit_test(test_stop),
        cmocka_unit_test(test_path_too_long),
        cmocka_unit_test(test_globs),
        cmocka_unit_test(test_path_abs),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
