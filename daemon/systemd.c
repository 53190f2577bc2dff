/*
 * systemd.c - socket activation and readiness notification for docentd,
 * written from the protocol descriptions in sd_listen_fds(3) and sd_notify(3)
 * (no libsystemd).
 *
 * Socket activation: systemd starts the service with the sockets of its
 * .socket unit as fds 3, 4, ... and sets LISTEN_PID (the pid they are meant
 * for: a forked child must not take its parent's), LISTEN_FDS (how many) and
 * LISTEN_FDNAMES (their names, unused here).  docentd listens on exactly one
 * AF_UNIX stream socket, so anything else passed is a configuration error.
 *
 * Notification: NOTIFY_SOCKET names an AF_UNIX datagram socket, either a
 * path or, with a leading '@', an abstract name (the '@' becomes a NUL byte
 * and the address length counts the name exactly, no trailing NUL).  Each
 * state change is one datagram of "KEY=VALUE" lines.  The kernel attaches the
 * sender's credentials on request of the receiver (SO_PASSCRED), which is how
 * systemd knows the message comes from the main pid (NotifyAccess=main).
 * Sends never block: a lost notification is better than a stuck daemon.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "daemon/systemd.h"

enum { LISTEN_FDS_START = 3 }; /* SD_LISTEN_FDS_START */

/* parse_int: a whole decimal string in [0, INT_MAX] into *out; -1 if not */
static int parse_int(const char *s, int *out)
{
    if (!s || *s < '0' || *s > '9') return -1;
    errno = 0;
    char *end;
    long v = strtol(s, &end, 10);
    if (errno || *end || v > INT_MAX) return -1;
    *out = (int)v;
    return 0;
}

static void unset_listen_env(void)
{
    unsetenv("LISTEN_PID");
    unsetenv("LISTEN_FDS");
    unsetenv("LISTEN_FDNAMES");
}

/* check_listener: fd is an AF_UNIX SOCK_STREAM socket in the listening state */
static int check_listener(int fd, doc_err *err)
{
    struct stat st;
    if (fstat(fd, &st) != 0)
        return doc_errf(err, DOC_EINVAL, "socket activation: fd %d: %s", fd, strerror(errno));
    if (!S_ISSOCK(st.st_mode))
        return doc_errf(err, DOC_EINVAL, "socket activation: fd %d is not a socket (mode %06o)",
                        fd, (unsigned)st.st_mode);
    int v = 0;
    socklen_t len = sizeof v;
    if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &v, &len) != 0)
        return doc_errf(err, DOC_EINVAL, "socket activation: fd %d: SO_DOMAIN: %s", fd,
                        strerror(errno));
    if (v != AF_UNIX)
        return doc_errf(err, DOC_EINVAL,
                        "socket activation: fd %d is not a unix socket (address family %d); "
                        "use ListenStream=/path in docentd.socket",
                        fd, v);
    len = sizeof v;
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &v, &len) != 0)
        return doc_errf(err, DOC_EINVAL, "socket activation: fd %d: SO_TYPE: %s", fd,
                        strerror(errno));
    if (v != SOCK_STREAM)
        return doc_errf(err, DOC_EINVAL,
                        "socket activation: fd %d is not a stream socket (type %d); use "
                        "ListenStream= in docentd.socket",
                        fd, v);
    len = sizeof v;
    if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &v, &len) != 0)
        return doc_errf(err, DOC_EINVAL, "socket activation: fd %d: SO_ACCEPTCONN: %s", fd,
                        strerror(errno));
    if (!v)
        return doc_errf(err, DOC_EINVAL,
                        "socket activation: fd %d is not listening (Accept=yes in the "
                        "socket unit passes connections; docentd wants Accept=no)",
                        fd);
    return DOC_OK;
}

int dd_listen_fd(int *fd, doc_err *err)
{
    const char *spid = getenv("LISTEN_PID");
    if (!spid) return 0;
    int pid;
    if (parse_int(spid, &pid) || pid == 0)
        return doc_errf(err, DOC_EINVAL, "socket activation: LISTEN_PID='%.32s' is not a pid",
                        spid);
    if ((pid_t)pid != getpid()) return 0; /* meant for another process */

    int rc, n;
    const char *sfds = getenv("LISTEN_FDS");
    if (parse_int(sfds, &n)) {
        rc = doc_errf(err, DOC_EINVAL, "socket activation: LISTEN_FDS='%.32s' is not a count",
                      sfds ? sfds : "(unset)");
        goto done;
    }
    if (n == 0) {
        rc = 0;
        goto done;
    }
    if (n > 1) {
        rc = doc_errf(err, DOC_EINVAL,
                      "socket activation: %d sockets passed (LISTEN_FDS=%d); docentd listens on "
                      "one: give docentd.socket a single ListenStream=",
                      n, n);
        goto done;
    }
    if ((rc = check_listener(LISTEN_FDS_START, err))) goto done;
    int fl = fcntl(LISTEN_FDS_START, F_GETFD);
    if (fl < 0 || fcntl(LISTEN_FDS_START, F_SETFD, fl | FD_CLOEXEC) != 0) {
        rc = doc_errf(err, DOC_EIO, "socket activation: fd %d: FD_CLOEXEC: %s", LISTEN_FDS_START,
                      strerror(errno));
        goto done;
    }
    *fd = LISTEN_FDS_START;
    rc = 1;
done:
    unset_listen_env();
    return rc;
}

int dd_notify(const char *state)
{
    const char *addr = getenv("NOTIFY_SOCKET");
    if (!addr || !*addr) return 0;
    if (!state || !*state) return DOC_EINVAL;
    if (addr[0] != '/' && addr[0] != '@') return DOC_EUNSUPPORTED;

    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    size_t n = strlen(addr);
    socklen_t salen;
    if (addr[0] == '@') {
        /* abstract: sun_path[0] = NUL, then the name; no terminating NUL */
        if (n > sizeof sa.sun_path) return DOC_ELIMIT;
        memcpy(sa.sun_path + 1, addr + 1, n - 1);
        salen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
    } else {
        if (n >= sizeof sa.sun_path) return DOC_ELIMIT;
        memcpy(sa.sun_path, addr, n);
        salen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
    }

    int s = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s < 0) return DOC_EIO;
    size_t len = strlen(state);
    /* MSG_DONTWAIT: a manager that stopped reading (its queue full) makes
     * this fail with EAGAIN instead of hanging the daemon */
    ssize_t w = sendto(s, state, len, MSG_NOSIGNAL | MSG_DONTWAIT, (struct sockaddr *)&sa, salen);
    int saved = errno;
    close(s);
    errno = saved;
    return w == (ssize_t)len ? 1 : DOC_EIO;
}
