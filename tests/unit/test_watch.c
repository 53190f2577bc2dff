/*
 * test_watch.c - ingest/watch.c on a real temp tree with the real inotify:
 * create / modify / move / delete of files, a new subfolder (made in place and
 * moved in with files already inside), folders removed and moved away, a file
 * written in several steps (one event), filtered files (excluded, hidden, not
 * included: no event), a queue overflow (one rescan event), cancellation, and
 * the open errors.
 */
#include "testutil.h"

#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ingest/internal.h"

#define SETTLE_MS 150
#define MAX_EV 64

static char tmp[64];  /* the mkdtemp dir */
static char root[96]; /* tmp/root, the watched tree */
static const char *const incl[] = {"*.txt", "*.md"};
static const char *const excl[] = {"skip", "*.bak.txt"};

/* ---- helpers ---------------------------------------------------------------- */

static void pathf(char *out, const char *rel) { snprintf(out, 512, "%s/%s", root, rel); }

static void write_file(const char *rel, const char *text)
{
    char p[512];
    pathf(p, rel);
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
}

static void make_dir(const char *rel)
{
    char p[512];
    pathf(p, rel);
    assert_int_equal(mkdir(p, 0755), 0);
}

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *f)
{
    (void)st, (void)flag, (void)f;
    return remove(p);
}
static void rm_tree(const char *p) { nftw(p, rm_one, 16, FTW_DEPTH | FTW_PHYS); }

static int setup(void **state)
{
    (void)state;
    snprintf(tmp, sizeof tmp, "/tmp/docent-watch-XXXXXX");
    assert_non_null(mkdtemp(tmp));
    snprintf(root, sizeof root, "%s/root", tmp);
    assert_int_equal(mkdir(root, 0755), 0);
    make_dir("skip");
    make_dir(".hidden");
    make_dir("old");
    write_file("old/keep.txt", "kept");
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    rm_tree(tmp);
    return 0;
}

static ing_watch *open_watch(void)
{
    ing_walk_opts o = {.include = incl, .n_include = 2, .exclude = excl, .n_exclude = 2};
    ing_watch *w = NULL;
    doc_err err = {0};
    int rc = ing_watch_open(root, &o, &w, &err);
    if (rc) print_message("%s\n", err.msg);
    assert_int_equal(rc, DOC_OK);
    return w;
}

/* next: one ing_watch_next with a 2 s timeout; the events in ev, count returned */
static int next(ing_watch *w, ing_event *ev, int timeout_ms)
{
    int n = -1;
    doc_err err = {0};
    int rc = ing_watch_next(w, timeout_ms, SETTLE_MS, NULL, ev, MAX_EV, &n, &err);
    if (rc) print_message("%s\n", err.msg);
    assert_int_equal(rc, DOC_OK);
    for (int i = 0; i < n && i < 10; i++)
        print_message("  %s %s\n", ev[i].kind == ING_EV_CHANGED ? "changed" : "removed",
                      ev[i].path + strlen(root));
    return n;
}

static int has(const ing_event *ev, int n, int kind, const char *rel)
{
    char p[512];
    pathf(p, rel);
    for (int i = 0; i < n; i++)
        if (ev[i].kind == kind && strcmp(ev[i].path, p) == 0) return 1;
    return 0;
}

/* ---- tests ------------------------------------------------------------------ */

static void test_files(void **state)
{
    (void)state;
    ing_event ev[MAX_EV];
    ing_watch *w = open_watch();

    write_file("a.txt", "alpha");
    int n = next(w, ev, 2000);
    assert_int_equal(n, 1);
    assert_true(has(ev, n, ING_EV_CHANGED, "a.txt"));

    /* rename: the old name removed, the new one changed */
    char a[512], b[512];
    pathf(a, "a.txt");
    pathf(b, "b.md");
    assert_int_equal(rename(a, b), 0);
    n = next(w, ev, 2000);
    assert_int_equal(n, 2);
    assert_true(has(ev, n, ING_EV_REMOVED, "a.txt"));
    assert_true(has(ev, n, ING_EV_CHANGED, "b.md"));

    /* rewritten in place */
    write_file("b.md", "beta beta");
    n = next(w, ev, 2000);
    assert_int_equal(n, 1);
    assert_true(has(ev, n, ING_EV_CHANGED, "b.md"));

    assert_int_equal(unlink(b), 0);
    n = next(w, ev, 2000);
    assert_int_equal(n, 1);
    assert_true(has(ev, n, ING_EV_REMOVED, "b.md"));

    /* written then deleted within one settle period: only the removal */
    write_file("c.txt", "short-lived");
    pathf(a, "c.txt");
    assert_int_equal(unlink(a), 0);
    n = next(w, ev, 2000);
    assert_int_equal(n, 1);
    assert_true(has(ev, n, ING_EV_REMOVED, "c.txt"));

    /* filtered: excluded folder, excluded pattern, hidden, not included */
    write_file("skip/x.txt", "x");
    write_file("y.bak.txt", "y");
    write_file(".hidden/z.txt", "z");
    write_file(".h.txt", "h");
    write_file("image.png", "png");
    double t0 = time_now();
    n = next(w, ev, 600);
    assert_int_equal(n, 0);
    assert_true(time_now() - t0 >= 0.55); /* waited the whole timeout */

    ing_watch_close(&w);
    assert_null(w);
    ing_watch_close(&w);
}

static void test_folders(void **state)
{
    (void)state;
    ing_event ev[MAX_EV];
    ing_watch *w = open_watch();

    /* a folder made in place, files written at once (some before the watch) */
    make_dir("sub");
    write_file("sub/d.txt", "d");
    make_dir("sub/deeper");
    write_file("sub/deeper/e.md", "e");
    write_file("sub/deeper/skip.png", "no");
    int n = next(w, ev, 2000);
    assert_int_equal(n, 2);
    assert_true(has(ev, n, ING_EV_CHANGED, "sub/d.txt"));
    assert_true(has(ev, n, ING_EV_CHANGED, "sub/deeper/e.md"));

    /* the new folders are watched */
    write_file("sub/deeper/f.txt", "f");
    n = next(w, ev, 2000);
    assert_int_equal(n, 1);
    assert_true(has(ev, n, ING_EV_CHANGED, "sub/deeper/f.txt"));

    /* a folder built outside and moved in: its files were never seen */
    char out[512], in[512];
    snprintf(out, sizeof out, "%s/outside", tmp);
    assert_int_equal(mkdir(out, 0755), 0);
    snprintf(in, sizeof in, "%s/outside/g.txt", tmp);
    int fd = open(in, O_WRONLY | O_CREAT, 0644);
    assert_true(fd >= 0);
    close(fd);
    snprintf(in, sizeof in, "%s/outside/inner", tmp);
    assert_int_equal(mkdir(in, 0755), 0);
    snprintf(in, sizeof in, "%s/outside/inner/h.txt", tmp);
    fd = open(in, O_WRONLY | O_CREAT, 0644);
    close(fd);
    pathf(in, "moved");
    assert_int_equal(rename(out, in), 0);
    n = next(w, ev, 2000);
    assert_int_equal(n, 2);
    assert_true(has(ev, n, ING_EV_CHANGED, "moved/g.txt"));
    assert_true(has(ev, n, ING_EV_CHANGED, "moved/inner/h.txt"));

    /* removed folder: one REMOVED for the folder, nothing for what was inside */
    pathf(in, "sub");
    rm_tree(in);
    n = next(w, ev, 2000);
    assert_int_equal(n, 1);
    assert_true(has(ev, n, ING_EV_REMOVED, "sub"));

    /* moved away: REMOVED, and what happens to it afterwards is not reported */
    pathf(in, "moved");
    snprintf(out, sizeof out, "%s/away", tmp);
    assert_int_equal(rename(in, out), 0);
    n = next(w, ev, 2000);
    assert_int_equal(n, 1);
    assert_true(has(ev, n, ING_EV_REMOVED, "moved"));
    snprintf(out, sizeof out, "%s/away/inner/late.txt", tmp);
    fd = open(out, O_WRONLY | O_CREAT, 0644);
    close(fd);
    assert_int_equal(next(w, ev, 500), 0);

    /* renamed within the tree: old folder removed, files under the new name */
    pathf(in, "old");
    pathf(out, "renamed");
    assert_int_equal(rename(in, out), 0);
    n = next(w, ev, 2000);
    assert_int_equal(n, 2);
    assert_true(has(ev, n, ING_EV_REMOVED, "old"));
    assert_true(has(ev, n, ING_EV_CHANGED, "renamed/keep.txt"));
    write_file("renamed/new.txt", "n");
    n = next(w, ev, 2000);
    assert_int_equal(n, 1);
    assert_true(has(ev, n, ING_EV_CHANGED, "renamed/new.txt"));
    assert_int_equal(rename(out, in), 0); /* back, for other tests */
    next(w, ev, 2000);

    ing_watch_close(&w);
}

static void *slow_writer(void *arg)
{
    (void)arg;
    char p[512];
    pathf(p, "log.txt");
    for (int i = 0; i < 5; i++) { /* five writes, each closed, 40 ms apart */
        int fd = open(p, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd < 0) return NULL;
        if (write(fd, "line\n", 5) != 5) {}
        close(fd);
        usleep(40 * 1000);
    }
    return NULL;
}

static void test_debounce(void **state)
{
    (void)state;
    ing_event ev[MAX_EV];
    ing_watch *w = open_watch();
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, slow_writer, NULL), 0);
    /* a settle period well above the writer's gaps, so a loaded machine passes */
    int n = -1;
    doc_err err = {0};
    assert_int_equal(ing_watch_next(w, 2000, 400, NULL, ev, MAX_EV, &n, &err), DOC_OK);
    pthread_join(th, NULL);
    assert_int_equal(n, 1);
    assert_true(has(ev, n, ING_EV_CHANGED, "log.txt"));
    assert_int_equal(next(w, ev, 400), 0); /* nothing left behind */

    /* more events than the caller's array: the rest come with the next call */
    for (int i = 0; i < 5; i++) {
        char rel[32];
        snprintf(rel, sizeof rel, "many%d.txt", i);
        write_file(rel, "m");
    }
    int got = 0;
    n = 0;
    assert_int_equal(ing_watch_next(w, 2000, SETTLE_MS, NULL, ev, 3, &n, &err), DOC_OK);
    assert_int_equal(n, 3);
    got += n;
    assert_int_equal(ing_watch_next(w, 0, SETTLE_MS, NULL, ev + 3, 3, &n, &err), DOC_OK);
    assert_int_equal(n, 2);
    got += n;
    for (int i = 0; i < 5; i++) {
        char rel[32];
        snprintf(rel, sizeof rel, "many%d.txt", i);
        assert_true(has(ev, got, ING_EV_CHANGED, rel));
    }
    ing_watch_close(&w);
}

static void test_overflow(void **state)
{
    (void)state;
    ing_event ev[MAX_EV];
    make_dir("flood"); /* watched from the start, so its events queue up */
    ing_watch *w = open_watch();
    /* more events than fs.inotify.max_queued_events (16384 by default) without
     * reading any: the kernel drops some and says so */
    FILE *f = fopen("/proc/sys/fs/inotify/max_queued_events", "r");
    int qmax = 16384;
    if (f) {
        if (fscanf(f, "%d", &qmax) != 1) qmax = 16384;
        fclose(f);
    }
    if (qmax > 100000) {
        ing_watch_close(&w);
        skip();
    }
    for (int i = 0; i < qmax / 2 + 500; i++) { /* IN_CREATE + IN_CLOSE_WRITE each */
        char rel[64];
        snprintf(rel, sizeof rel, "flood/f%05d.txt", i);
        write_file(rel, "");
    }
    int n = next(w, ev, 2000);
    assert_int_equal(n, 1);
    assert_int_equal(ev[0].kind, ING_EV_CHANGED);
    assert_string_equal(ev[0].path, root); /* rescan the root */
    /* and the watch still works */
    write_file("flood/after.txt", "a");
    n = next(w, ev, 2000);
    assert_int_equal(n, 1);
    assert_true(has(ev, n, ING_EV_CHANGED, "flood/after.txt"));
    ing_watch_close(&w);
    char p[512];
    pathf(p, "flood");
    rm_tree(p);
}

static volatile int cancel_flag;
static void *set_cancel(void *arg)
{
    (void)arg;
    usleep(200 * 1000);
    cancel_flag = 1;
    return NULL;
}

static void test_cancel(void **state)
{
    (void)state;
    ing_event ev[4];
    ing_watch *w = open_watch();
    int n = -1;
    doc_err err = {0};
    cancel_flag = 1;
    assert_int_equal(ing_watch_next(w, 5000, SETTLE_MS, &cancel_flag, ev, 4, &n, &err),
                     DOC_ECANCELLED);
    assert_int_equal(n, 0);
    cancel_flag = 0;
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, set_cancel, NULL), 0);
    double t0 = time_now();
    assert_int_equal(ing_watch_next(w, -1, SETTLE_MS, &cancel_flag, ev, 4, &n, &err),
                     DOC_ECANCELLED); /* no timeout: only the flag ends it */
    double dt = time_now() - t0;
    pthread_join(th, NULL);
    assert_true(dt >= 0.15 && dt < 1.0); /* checked every 100 ms: well under 1 s */
    assert_non_null(strstr(err.msg, "cancelled"));
    ing_watch_close(&w);
}

static void test_open_errors(void **state)
{
    (void)state;
    ing_watch *w = (ing_watch *)1;
    doc_err err = {0};
    char p[512];
    snprintf(p, sizeof p, "%s/nope", tmp);
    assert_int_equal(ing_watch_open(p, NULL, &w, &err), DOC_ENOTFOUND);
    assert_null(w);
    assert_non_null(strstr(err.msg, "nope"));
    write_file("plain.txt", "p");
    pathf(p, "plain.txt");
    assert_int_equal(ing_watch_open(p, NULL, &w, &err), DOC_EINVAL);
    assert_non_null(strstr(err.msg, "not a folder"));
    unlink(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_files),
        cmocka_unit_test(test_folders),
        cmocka_unit_test(test_debounce),
        cmocka_unit_test(test_overflow),
        cmocka_unit_test(test_cancel),
        cmocka_unit_test(test_open_errors),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
