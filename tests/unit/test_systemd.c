/*
 * test_systemd.c - daemon/systemd.c on real sockets: readiness datagrams to a
 * path and to an abstract name (read back with the sender's credentials), and
 * socket activation with listening / non-listening sockets, a datagram socket
 * and a regular file put on fd 3 the way systemd passes them.
 *
 * fd 3 is saved before each activation test and put back after it, so the
 * test harness's own descriptors survive.
 */
#include "testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "daemon/systemd.h"

/* ---- fixtures ------------------------------------------------------------ */

typedef struct fix {
    char dir[64];     /* mkdtemp directory */
    int saved3;       /* a duplicate of what fd 3 was, or -1 when it was closed */
} fix;

static int setup(void **state)
{
    fix *f = calloc(1, sizeof *f);
    if (!f) return -1;
    snprintf(f->dir, sizeof f->dir, "/tmp/docent-sd-XXXXXX");
    if (!mkdtemp(f->dir)) return free(f), -1;
    f->saved3 = fcntl(3, F_GETFD) == -1 ? -1 : fcntl(3, F_DUPFD_CLOEXEC, 10);
    unsetenv("LISTEN_PID");
    unsetenv("LISTEN_FDS");
    unsetenv("LISTEN_FDNAMES");
    unsetenv("NOTIFY_SOCKET");
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fix *f = *state;
    if (f->saved3 >= 0) {
        dup2(f->saved3, 3);
        close(f->saved3);
    } else {
        close(3);
    }
    unsetenv("NOTIFY_SOCKET");
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", f->dir);
    free(f);
    return 0;
}

/* put fd on fd 3 (and close fd), as systemd's exec does */
static void onto3(int fd)
{
    assert_true(fd >= 0);
    if (fd != 3) {
        assert_int_equal(dup2(fd, 3), 3);
        close(fd);
    }
}

static void set_activation(pid_t pid, const char *n)
{
    char s[32];
    snprintf(s, sizeof s, "%d", (int)pid);
    setenv("LISTEN_PID", s, 1);
    setenv("LISTEN_FDS", n, 1);
    setenv("LISTEN_FDNAMES", "docentd.socket", 1);
}

static void assert_env_cleared(void)
{
    assert_null(getenv("LISTEN_PID"));
    assert_null(getenv("LISTEN_FDS"));
    assert_null(getenv("LISTEN_FDNAMES"));
}

static socklen_t unix_addr(struct sockaddr_un *sa, const char *path)
{
    memset(sa, 0, sizeof *sa);
    sa->sun_family = AF_UNIX;
    size_t n = strlen(path);
    assert_true(n < sizeof sa->sun_path);
    memcpy(sa->sun_path, path, n + 1);
    return sizeof *sa;
}

/* a bound AF_UNIX socket of the given type at dir/name; listening if asked */
static int bound_socket(const fix *f, int type, const char *name, int listening, char *path,
                        size_t cap)
{
    snprintf(path, cap, "%s/%s", f->dir, name);
    int s = socket(AF_UNIX, type, 0);
    assert_true(s >= 0);
    struct sockaddr_un sa;
    assert_int_equal(bind(s, (struct sockaddr *)&sa, unix_addr(&sa, path)), 0);
    if (listening) assert_int_equal(listen(s, 4), 0);
    return s;
}

/* read one datagram from s (it was sent before this call) with the sender's
 * credentials; returns its length */
static ssize_t recv_with_creds(int s, char *out, size_t cap, struct ucred *cred)
{
    char cbuf[CMSG_SPACE(sizeof(struct ucred))];
    struct iovec iov = {.iov_base = out, .iov_len = cap - 1};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf,
                        .msg_controllen = sizeof cbuf};
    ssize_t n = recvmsg(s, &mh, MSG_DONTWAIT);
    assert_true(n >= 0);
    out[n] = 0;
    memset(cred, 0, sizeof *cred);
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c))
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_CREDENTIALS)
            memcpy(cred, CMSG_DATA(c), sizeof *cred);
    return n;
}

/* ---- dd_notify ----------------------------------------------------------- */

static void test_notify_unset(void **state)
{
    (void)state;
    assert_int_equal(dd_notify("READY=1"), 0);
    setenv("NOTIFY_SOCKET", "", 1);
    assert_int_equal(dd_notify("READY=1"), 0);
}

static void test_notify_path(void **state)
{
    fix *f = *state;
    char path[128];
    int s = bound_socket(f, SOCK_DGRAM, "notify", 0, path, sizeof path);
    int one = 1;
    assert_int_equal(setsockopt(s, SOL_SOCKET, SO_PASSCRED, &one, sizeof one), 0);
    setenv("NOTIFY_SOCKET", path, 1);

    assert_int_equal(dd_notify("READY=1"), 1);
    assert_int_equal(dd_notify("STATUS=serving /var/lib/docent\nMAINPID=1"), 1);
    char got[256];
    struct ucred cr;
    assert_int_equal(recv_with_creds(s, got, sizeof got, &cr), 7);
    assert_string_equal(got, "READY=1");
    assert_int_equal(cr.pid, getpid()); /* what NotifyAccess=main checks */
    assert_int_equal(cr.uid, getuid());
    recv_with_creds(s, got, sizeof got, &cr);
    assert_string_equal(got, "STATUS=serving /var/lib/docent\nMAINPID=1");
    /* nothing else was sent */
    assert_int_equal(recv(s, got, sizeof got, MSG_DONTWAIT), -1);
    assert_int_equal(errno, EAGAIN);

    assert_int_equal(dd_notify(""), DOC_EINVAL);
    assert_int_equal(dd_notify(NULL), DOC_EINVAL);
    close(s);

    /* the manager is gone: the socket file remains but nobody reads it */
    assert_true(dd_notify("STOPPING=1") < 0);
    unlink(path);
    assert_int_equal(dd_notify("STOPPING=1"), DOC_EIO);
}

static void test_notify_abstract(void **state)
{
    (void)state;
    char name[64];
    uint64_t seed = (uint64_t)getpid() * 0x9e3779b97f4a7c15ull + 1;
    snprintf(name, sizeof name, "docent-test-%d-%llx", (int)getpid(),
             (unsigned long long)(test_rand(&seed) & 0xffffffff));
    int s = socket(AF_UNIX, SOCK_DGRAM, 0);
    assert_true(s >= 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    size_t n = strlen(name);
    memcpy(sa.sun_path + 1, name, n); /* sun_path[0] = 0: abstract */
    assert_int_equal(
        bind(s, (struct sockaddr *)&sa, (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + n)),
        0);
    char env[80];
    snprintf(env, sizeof env, "@%s", name);
    setenv("NOTIFY_SOCKET", env, 1);
    assert_int_equal(dd_notify("STOPPING=1"), 1);
    char got[64];
    ssize_t r = recv(s, got, sizeof got - 1, MSG_DONTWAIT);
    assert_int_equal(r, 10);
    got[r] = 0;
    assert_string_equal(got, "STOPPING=1");
    close(s);

    /* the receiver is gone (abstract names vanish with their socket) */
    assert_int_equal(dd_notify("STOPPING=1"), DOC_EIO);
}

/* a manager that stops reading must not hang the daemon: once the receive
 * queue is full dd_notify fails at once (alarm: a blocking send kills the
 * test instead of hanging it) */
static void test_notify_full_queue(void **state)
{
    fix *f = *state;
    char path[128];
    int s = bound_socket(f, SOCK_DGRAM, "notify", 0, path, sizeof path);
    setenv("NOTIFY_SOCKET", path, 1);
    alarm(10);
    int sent = 0, rc = 0;
    for (int i = 0; i < 100000 && (rc = dd_notify("STATUS=busy")) == 1; i++) sent++;
    alarm(0);
    assert_int_equal(rc, DOC_EIO);
    assert_true(sent >= 1);
    /* reading one makes room again */
    char got[32];
    assert_true(recv(s, got, sizeof got, MSG_DONTWAIT) > 0);
    assert_int_equal(dd_notify("READY=1"), 1);
    close(s);
}

static void test_notify_bad_address(void **state)
{
    (void)state;
    setenv("NOTIFY_SOCKET", "vsock:2:1234", 1);
    assert_int_equal(dd_notify("READY=1"), DOC_EUNSUPPORTED);
    setenv("NOTIFY_SOCKET", "run/notify", 1); /* relative */
    assert_int_equal(dd_notify("READY=1"), DOC_EUNSUPPORTED);
    char lng[200];
    memset(lng, 'a', sizeof lng - 1);
    lng[0] = '/';
    lng[sizeof lng - 1] = 0;
    setenv("NOTIFY_SOCKET", lng, 1);
    assert_int_equal(dd_notify("READY=1"), DOC_ELIMIT);
    lng[0] = '@';
    setenv("NOTIFY_SOCKET", lng, 1);
    assert_int_equal(dd_notify("READY=1"), DOC_ELIMIT);
}

/* ---- dd_listen_fd -------------------------------------------------------- */

static void test_listen_ok(void **state)
{
    fix *f = *state;
    char path[128];
    int s = bound_socket(f, SOCK_STREAM, "docentd.sock", 1, path, sizeof path);
    onto3(s);
    /* systemd passes it without close-on-exec; dd_listen_fd must set it */
    assert_int_equal(fcntl(3, F_SETFD, 0), 0);
    set_activation(getpid(), "1");

    int fd = -1;
    doc_err e = {0};
    assert_int_equal(dd_listen_fd(&fd, &e), 1);
    assert_int_equal(fd, 3);
    assert_true(fcntl(3, F_GETFD) & FD_CLOEXEC);
    assert_env_cleared();

    /* it is the real listener: a client connects and is accepted on it */
    int c = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sa;
    assert_int_equal(connect(c, (struct sockaddr *)&sa, unix_addr(&sa, path)), 0);
    int a = accept(fd, NULL, NULL);
    assert_true(a >= 0);
    assert_int_equal(write(c, "x", 1), 1);
    char ch = 0;
    assert_int_equal(read(a, &ch, 1), 1);
    assert_int_equal(ch, 'x');
    close(a);
    close(c);

    /* the variables are gone: a second call finds no activation */
    fd = -1;
    assert_int_equal(dd_listen_fd(&fd, &e), 0);
    assert_int_equal(fd, -1);
}

static void test_listen_not_activated(void **state)
{
    fix *f = *state;
    char path[128];
    onto3(bound_socket(f, SOCK_STREAM, "s", 1, path, sizeof path));
    int fd = -1;
    doc_err e = {0};

    /* nothing set */
    assert_int_equal(dd_listen_fd(&fd, &e), 0);
    assert_int_equal(fd, -1);

    /* meant for another process (a parent that forked us without clearing
     * them, say): not ours, left alone */
    set_activation(getpid() + 1, "1");
    assert_int_equal(dd_listen_fd(&fd, &e), 0);
    assert_int_equal(fd, -1);
    assert_non_null(getenv("LISTEN_PID"));
    assert_string_equal(getenv("LISTEN_FDS"), "1");

    /* ours but no sockets */
    set_activation(getpid(), "0");
    assert_int_equal(dd_listen_fd(&fd, &e), 0);
    assert_int_equal(fd, -1);
    assert_env_cleared();
    assert_int_equal(e.rc, 0);
}

/* expect an error whose message contains want, the variables cleared */
static void expect_error(const char *want)
{
    int fd = -1;
    doc_err e = {0};
    int rc = dd_listen_fd(&fd, &e);
    if (rc != DOC_EINVAL || !strstr(e.msg, want))
        fail_msg("rc %d, message '%s'; wanted DOC_EINVAL with '%s'", rc, e.msg, want);
    assert_int_equal(fd, -1);
    assert_env_cleared();
}

static void test_listen_not_listening(void **state)
{
    fix *f = *state;
    char path[128];
    onto3(bound_socket(f, SOCK_STREAM, "s", 0, path, sizeof path));
    set_activation(getpid(), "1");
    expect_error("fd 3 is not listening");
    assert_true(fcntl(3, F_GETFD) != -1); /* left open */
}

static void test_listen_datagram(void **state)
{
    fix *f = *state;
    char path[128];
    onto3(bound_socket(f, SOCK_DGRAM, "d", 0, path, sizeof path));
    set_activation(getpid(), "1");
    expect_error("not a stream socket");
}

static void test_listen_inet(void **state)
{
    (void)state;
    int s = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(s >= 0);
    struct sockaddr_in in = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(s, (struct sockaddr *)&in, sizeof in), 0); /* an ephemeral port */
    assert_int_equal(listen(s, 1), 0);
    onto3(s);
    set_activation(getpid(), "1");
    expect_error("not a unix socket");
}

static void test_listen_regular_file(void **state)
{
    fix *f = *state;
    char path[128];
    snprintf(path, sizeof path, "%s/plain", f->dir);
    onto3(open(path, O_RDWR | O_CREAT, 0600));
    set_activation(getpid(), "1");
    expect_error("fd 3 is not a socket");

    close(3); /* nothing at all on fd 3 */
    set_activation(getpid(), "1");
    expect_error("fd 3: Bad file descriptor");
}

static void test_listen_bad_env(void **state)
{
    fix *f = *state;
    char path[128];
    onto3(bound_socket(f, SOCK_STREAM, "s", 1, path, sizeof path));

    set_activation(getpid(), "2");
    expect_error("2 sockets passed");

    set_activation(getpid(), "1x");
    expect_error("LISTEN_FDS='1x'");
    set_activation(getpid(), "-1");
    expect_error("LISTEN_FDS='-1'");

    char s[32];
    snprintf(s, sizeof s, "%d", (int)getpid());
    setenv("LISTEN_PID", s, 1);
    unsetenv("LISTEN_FDS");
    expect_error("LISTEN_FDS='(unset)'");

    /* a LISTEN_PID that is no pid at all cannot be told to be ours: error,
     * variables untouched */
    setenv("LISTEN_PID", "12abc", 1);
    setenv("LISTEN_FDS", "1", 1);
    int fd = -1;
    doc_err e = {0};
    assert_int_equal(dd_listen_fd(&fd, &e), DOC_EINVAL);
    assert_non_null(strstr(e.msg, "LISTEN_PID='12abc'"));
    assert_int_equal(fd, -1);
    unsetenv("LISTEN_PID");
    unsetenv("LISTEN_FDS");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_notify_unset, setup, teardown),
        cmocka_unit_test_setup_teardown(test_notify_path, setup, teardown),
        cmocka_unit_test_setup_teardown(test_notify_abstract, setup, teardown),
        cmocka_unit_test_setup_teardown(test_notify_full_queue, setup, teardown),
        cmocka_unit_test_setup_teardown(test_notify_bad_address, setup, teardown),
        cmocka_unit_test_setup_teardown(test_listen_ok, setup, teardown),
        cmocka_unit_test_setup_teardown(test_listen_not_activated, setup, teardown),
        cmocka_unit_test_setup_teardown(test_listen_not_listening, setup, teardown),
        cmocka_unit_test_setup_teardown(test_listen_datagram, setup, teardown),
        cmocka_unit_test_setup_teardown(test_listen_inet, setup, teardown),
        cmocka_unit_test_setup_teardown(test_listen_regular_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_listen_bad_env, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
