/*
 * test_fetch.c - ingest/fetch.c through the real libcurl against a real
 * HTTP/1.1 server started by the test.
 *
 * The server is a forked child listening on 127.0.0.1 (port chosen by the
 * kernel); it forks once per connection and answers canned responses by path:
 * a page with Last-Modified, 404, a 503 without reason phrase, a redirect
 * chain, a redirect loop, a redirect to ftp://, bodies over the cap (announced
 * and chunked), a slow answer, a chunked answer, a trickle for cancellation.
 * The whole process group is killed at teardown.  Timeouts are 1-2 s.
 */
#include "testutil.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ingest/internal.h"

static pid_t server_pid;
static int server_port;
static char base[64]; /* "http://127.0.0.1:PORT" */

/* ---- the server ----------------------------------------------------------- */

static void put(int fd, const char *s, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, s, n);
        if (w <= 0) _exit(0);
        s += w;
        n -= (size_t)w;
    }
}
static void puts_fd(int fd, const char *s) { put(fd, s, strlen(s)); }

static void serve(int fd)
{
    char req[8192];
    size_t n = 0;
    while (n + 1 < sizeof req) {
        ssize_t r = read(fd, req + n, sizeof req - 1 - n);
        if (r <= 0) _exit(0);
        n += (size_t)r;
        req[n] = 0;
        if (req[0] < 'A' || req[0] > 'Z') { /* not HTTP (a TLS hello): answer as servers do */
            puts_fd(fd, "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            _exit(0);
        }
        if (strstr(req, "\r\n\r\n")) break;
    }
    char path[256] = "";
    sscanf(req, "GET %255s", path);
    char hdr[1024];
    if (strcmp(path, "/page") == 0) {
        const char *body = "<html><body><p>hello docent</p></body></html>";
        snprintf(hdr, sizeof hdr,
                 "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\n"
                 "Last-Modified: Wed, 21 Oct 2015 07:28:00 GMT\r\n"
                 "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
                 strlen(body), body);
        puts_fd(fd, hdr);
    } else if (strcmp(path, "/ua") == 0) {
        const char *ua = strstr(req, "User-Agent: ");
        char v[128] = "";
        if (ua) sscanf(ua + 12, "%127[^\r]", v);
        snprintf(hdr, sizeof hdr,
                 "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\n"
                 "Connection: close\r\n\r\n%s", strlen(v), v);
        puts_fd(fd, hdr);
    } else if (strcmp(path, "/empty") == 0) {
        puts_fd(fd, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    } else if (strcmp(path, "/unavailable") == 0) {
        puts_fd(fd, "HTTP/1.1 503 \r\nContent-Length: 4\r\nConnection: close\r\n\r\nbusy");
    } else if (strcmp(path, "/r1") == 0) {
        puts_fd(fd, "HTTP/1.1 302 Found\r\nLocation: /r2\r\nContent-Length: 5\r\n"
                    "Connection: close\r\n\r\nmoved");
    } else if (strcmp(path, "/r2") == 0) {
        puts_fd(fd, "HTTP/1.1 301 Moved Permanently\r\nLocation: /page\r\nContent-Length: 0\r\n"
                    "Connection: close\r\n\r\n");
    } else if (strcmp(path, "/loop") == 0) {
        puts_fd(fd, "HTTP/1.1 302 Found\r\nLocation: /loop\r\nContent-Length: 4\r\n"
                    "Connection: close\r\n\r\nloop");
    } else if (strcmp(path, "/toftp") == 0) {
        puts_fd(fd, "HTTP/1.1 302 Found\r\nLocation: ftp://127.0.0.1/x\r\nContent-Length: 0\r\n"
                    "Connection: close\r\n\r\n");
    } else if (strcmp(path, "/big") == 0 || strcmp(path, "/bigchunked") == 0) {
        int chunked = strcmp(path, "/bigchunked") == 0;
        static char blk[10000];
        memset(blk, 'x', sizeof blk);
        if (chunked)
            puts_fd(fd, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                        "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n");
        else
            puts_fd(fd, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                        "Content-Length: 200000\r\nConnection: close\r\n\r\n");
        for (int i = 0; i < 20; i++) {
            if (chunked) puts_fd(fd, "2710\r\n"); /* 10000 */
            put(fd, blk, sizeof blk);
            if (chunked) puts_fd(fd, "\r\n");
        }
        if (chunked) puts_fd(fd, "0\r\n\r\n");
    } else if (strcmp(path, "/slow") == 0) {
        sleep(4);
        puts_fd(fd, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
    } else if (strcmp(path, "/chunked") == 0) {
        puts_fd(fd, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                    "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                    "6\r\nhello \r\n8\r\nchunked \r\n5\r\nworld\r\n0\r\n\r\n");
    } else if (strcmp(path, "/trickle") == 0) {
        puts_fd(fd, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\nConnection: close\r\n\r\n");
        for (int i = 0; i < 100; i++) {
            put(fd, "x", 1);
            usleep(100 * 1000);
        }
    } else {
        puts_fd(fd, "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 4\r\n"
                    "Connection: close\r\n\r\nnope");
    }
    shutdown(fd, SHUT_WR);
    char sink[256];
    while (read(fd, sink, sizeof sink) > 0) {} /* let the client close first */
    _exit(0);
}

static int server_start(void **state)
{
    (void)state;
    int ls = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(ls >= 0);
    int one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(ls, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(ls, 64), 0);
    socklen_t al = sizeof a;
    assert_int_equal(getsockname(ls, (struct sockaddr *)&a, &al), 0);
    server_port = ntohs(a.sin_port);
    snprintf(base, sizeof base, "http://127.0.0.1:%d", server_port);
    server_pid = fork();
    assert_true(server_pid >= 0);
    if (server_pid == 0) {
        setpgid(0, 0);
        signal(SIGCHLD, SIG_IGN); /* no zombies */
        for (;;) {
            int fd = accept(ls, NULL, NULL);
            if (fd < 0) continue;
            if (fork() == 0) {
                close(ls);
                serve(fd);
            }
            close(fd);
        }
    }
    setpgid(server_pid, server_pid); /* whichever runs first */
    close(ls);
    return 0;
}

static int server_stop(void **state)
{
    (void)state;
    kill(-server_pid, SIGKILL);
    kill(server_pid, SIGKILL);
    waitpid(server_pid, NULL, 0);
    return 0;
}

/* ---- helpers ---------------------------------------------------------------- */

static ing_fetch_opts quick(void)
{
    return (ing_fetch_opts){.timeout_s = 2, .connect_timeout_s = 2};
}

static int fetch_path(const char *path, const ing_fetch_opts *o, ing_fetched *f, doc_err *err,
                      char *url, size_t cap)
{
    snprintf(url, cap, "%s%s", base, path);
    return ing_fetch(url, o, f, err);
}

/* ---- tests ----------------------------------------------------------------- */

static void test_is_url(void **state)
{
    (void)state;
    assert_true(ing_is_url("http://example.org/"));
    assert_true(ing_is_url("HTTPS://example.org/a"));
    assert_false(ing_is_url("ftp://example.org/"));
    assert_false(ing_is_url("/tmp/http://x"));
    assert_false(ing_is_url("httpx://x"));
    assert_false(ing_is_url(NULL));
}

static void test_page(void **state)
{
    (void)state;
    ing_fetch_opts o = quick();
    ing_fetched f;
    doc_err err = {0};
    char url[256];
    assert_int_equal(fetch_path("/page", &o, &f, &err, url, sizeof url), DOC_OK);
    assert_int_equal(f.status, 200);
    assert_string_equal(f.data, "<html><body><p>hello docent</p></body></html>");
    assert_int_equal(f.len, strlen(f.data));
    assert_string_equal(f.content_type, "text/html; charset=utf-8");
    assert_string_equal(f.final_url, url);
    assert_int_equal(f.mtime, 1445412480); /* Wed, 21 Oct 2015 07:28:00 GMT */
    ing_fetched_free(&f);
    assert_null(f.data);
    ing_fetched_free(&f); /* twice is harmless */
}

static void test_user_agent_and_empty(void **state)
{
    (void)state;
    ing_fetch_opts o = quick();
    ing_fetched f;
    doc_err err = {0};
    char url[256];
    assert_int_equal(fetch_path("/ua", &o, &f, &err, url, sizeof url), DOC_OK);
    assert_string_equal(f.data, "docent/0.1");
    assert_int_equal(f.mtime, 0); /* no Last-Modified */
    ing_fetched_free(&f);
    assert_int_equal(fetch_path("/empty", &o, &f, &err, url, sizeof url), DOC_OK);
    assert_non_null(f.data);
    assert_int_equal(f.len, 0);
    assert_string_equal(f.data, "");
    assert_null(f.content_type);
    ing_fetched_free(&f);
}

static void test_http_errors(void **state)
{
    (void)state;
    ing_fetch_opts o = quick();
    ing_fetched f;
    doc_err err = {0};
    char url[256], want[512];
    assert_int_equal(fetch_path("/missing", &o, &f, &err, url, sizeof url), DOC_ENOTFOUND);
    snprintf(want, sizeof want, "%s: http 404 not found", url);
    assert_string_equal(err.msg, want);
    assert_null(f.data);
    /* no reason phrase from the server: the standard one */
    assert_int_equal(fetch_path("/unavailable", &o, &f, &err, url, sizeof url), DOC_EIO);
    snprintf(want, sizeof want, "%s: http 503 service unavailable", url);
    assert_string_equal(err.msg, want);
}

static void test_redirects(void **state)
{
    (void)state;
    ing_fetch_opts o = quick();
    ing_fetched f;
    doc_err err = {0};
    char url[256], want[512];
    assert_int_equal(fetch_path("/r1", &o, &f, &err, url, sizeof url), DOC_OK);
    snprintf(want, sizeof want, "%s/page", base);
    assert_string_equal(f.final_url, want);
    assert_int_equal(f.status, 200);
    assert_string_equal(f.data, "<html><body><p>hello docent</p></body></html>");
    ing_fetched_free(&f);

    /* the chain is two hops: one allowed redirect is too few */
    o.max_redirects = 1;
    assert_int_equal(fetch_path("/r1", &o, &f, &err, url, sizeof url), DOC_ELIMIT);
    snprintf(want, sizeof want, "%s: too many redirects (max 1)", url);
    assert_string_equal(err.msg, want);

    o.max_redirects = 3;
    assert_int_equal(fetch_path("/loop", &o, &f, &err, url, sizeof url), DOC_ELIMIT);
    snprintf(want, sizeof want, "%s: too many redirects (max 3)", url);
    assert_string_equal(err.msg, want);

    /* a redirect may not leave http(s) */
    assert_int_equal(fetch_path("/toftp", &o, &f, &err, url, sizeof url), DOC_EUNSUPPORTED);
    assert_non_null(strstr(err.msg, "only http and https"));
}

static void test_body_cap(void **state)
{
    (void)state;
    ing_fetch_opts o = quick();
    o.max_bytes = 100000;
    ing_fetched f;
    doc_err err = {0};
    char url[256], want[512];
    /* announced by Content-Length */
    assert_int_equal(fetch_path("/big", &o, &f, &err, url, sizeof url), DOC_ELIMIT);
    snprintf(want, sizeof want, "%s: body larger than 100000 bytes", url);
    assert_string_equal(err.msg, want);
    /* found while receiving */
    assert_int_equal(fetch_path("/bigchunked", &o, &f, &err, url, sizeof url), DOC_ELIMIT);
    snprintf(want, sizeof want, "%s: body larger than 100000 bytes", url);
    assert_string_equal(err.msg, want);
    /* exactly at a larger cap it passes */
    o.max_bytes = 200000;
    assert_int_equal(fetch_path("/bigchunked", &o, &f, &err, url, sizeof url), DOC_OK);
    assert_int_equal(f.len, 200000);
    ing_fetched_free(&f);
    o.max_bytes = 199999;
    assert_int_equal(fetch_path("/big", &o, &f, &err, url, sizeof url), DOC_ELIMIT);
}

static void test_chunked(void **state)
{
    (void)state;
    ing_fetch_opts o = quick();
    ing_fetched f;
    doc_err err = {0};
    char url[256];
    assert_int_equal(fetch_path("/chunked", &o, &f, &err, url, sizeof url), DOC_OK);
    assert_string_equal(f.data, "hello chunked world");
    assert_int_equal(f.len, 19);
    assert_string_equal(f.content_type, "text/plain");
    ing_fetched_free(&f);
}

static void test_timeout(void **state)
{
    (void)state;
    ing_fetch_opts o = {.timeout_s = 1, .connect_timeout_s = 1};
    ing_fetched f;
    doc_err err = {0};
    char url[256], want[512];
    double t0 = time_now();
    assert_int_equal(fetch_path("/slow", &o, &f, &err, url, sizeof url), DOC_EIO);
    double dt = time_now() - t0;
    snprintf(want, sizeof want, "%s: timed out after 1 s", url);
    assert_string_equal(err.msg, want);
    assert_true(dt >= 0.9 && dt < 2.5);
}

static volatile int cancel_flag;
static void *set_cancel(void *arg)
{
    (void)arg;
    usleep(300 * 1000);
    cancel_flag = 1;
    return NULL;
}

static void test_cancel(void **state)
{
    (void)state;
    ing_fetch_opts o = {.timeout_s = 20, .cancel = &cancel_flag};
    ing_fetched f;
    doc_err err = {0};
    char url[256];
    cancel_flag = 0;
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, set_cancel, NULL), 0);
    double t0 = time_now();
    assert_int_equal(fetch_path("/trickle", &o, &f, &err, url, sizeof url), DOC_ECANCELLED);
    double dt = time_now() - t0;
    pthread_join(th, NULL);
    assert_non_null(strstr(err.msg, "cancelled"));
    assert_true(dt < 2.0); /* the trickle alone lasts 10 s */
}

static void test_tls_to_plain(void **state)
{
    (void)state;
    ing_fetch_opts o = quick();
    ing_fetched f;
    doc_err err = {0};
    char url[256], want[300];
    snprintf(url, sizeof url, "https://127.0.0.1:%d/page", server_port);
    assert_int_equal(ing_fetch(url, &o, &f, &err), DOC_EIO);
    print_message("%s\n", err.msg);
    snprintf(want, sizeof want, "%s: tls: ", url);
    assert_memory_equal(err.msg, want, strlen(want));
    assert_true(strlen(err.msg) > strlen(want)); /* curl's detail follows */
}

static void test_refused_and_unresolvable(void **state)
{
    (void)state;
    ing_fetch_opts o = quick();
    ing_fetched f;
    doc_err err = {0};
    char url[256], want[300];
    /* a port that was just free: bind, read it, close */
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(s, (struct sockaddr *)&a, sizeof a), 0);
    socklen_t al = sizeof a;
    getsockname(s, (struct sockaddr *)&a, &al);
    close(s);
    snprintf(url, sizeof url, "http://127.0.0.1:%d/", ntohs(a.sin_port));
    assert_int_equal(ing_fetch(url, &o, &f, &err), DOC_EIO);
    snprintf(want, sizeof want, "%s: connection refused", url);
    assert_string_equal(err.msg, want);

    int rc = ing_fetch("http://nonexistent.invalid/", &o, &f, &err);
    if (rc == DOC_OK) {
        ing_fetched_free(&f);
        print_message("skipped: nonexistent.invalid resolved here\n");
        return;
    }
    assert_int_equal(rc, DOC_EIO);
    assert_memory_equal(err.msg, "http://nonexistent.invalid/: could not resolve host nonexistent.invalid",
                        strlen("http://nonexistent.invalid/: could not resolve host nonexistent.invalid"));
}

static void test_not_http(void **state)
{
    (void)state;
    ing_fetched f;
    doc_err err = {0};
    assert_int_equal(ing_fetch("ftp://x", NULL, &f, &err), DOC_EUNSUPPORTED);
    assert_string_equal(err.msg, "ftp://x: only http and https urls are fetched");
    assert_int_equal(ing_fetch("file:///etc/passwd", NULL, &f, &err), DOC_EUNSUPPORTED);
    assert_null(f.data);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_is_url),
        cmocka_unit_test(test_page),
        cmocka_unit_test(test_user_agent_and_empty),
        cmocka_unit_test(test_http_errors),
        cmocka_unit_test(test_redirects),
        cmocka_unit_test(test_body_cap),
        cmocka_unit_test(test_chunked),
        cmocka_unit_test(test_timeout),
        cmocka_unit_test(test_cancel),
        cmocka_unit_test(test_tls_to_plain),
        cmocka_unit_test(test_refused_and_unresolvable),
        cmocka_unit_test(test_not_http),
    };
    signal(SIGPIPE, SIG_IGN);
    return cmocka_run_group_tests(tests, server_start, server_stop);
}
