/*
 * systemd.h - docentd's side of two systemd protocols, without libsystemd.
 *
 *   socket activation  systemd binds /run/docent/docentd.sock (docentd.socket)
 *                      and passes it as fd 3 with LISTEN_PID / LISTEN_FDS
 *                      (sd_listen_fds(3)); docentd then neither binds nor
 *                      unlinks the socket file: systemd owns it.
 *   readiness          with Type=notify, systemd waits for "READY=1" on the
 *                      datagram socket named by NOTIFY_SOCKET (sd_notify(3)).
 *
 * Both read the environment, so call them from the main thread: dd_listen_fd
 * once at start, before any thread exists (it unsets variables); dd_notify
 * whenever the state changes (it only reads NOTIFY_SOCKET).
 */
#ifndef DOCENT_DAEMON_SYSTEMD_H
#define DOCENT_DAEMON_SYSTEMD_H

#include "core/core.h"

/*
 * dd_listen_fd: take the listening socket systemd passed, if any.
 *
 * Returns 1 with *fd = 3 when LISTEN_PID is this process's pid and
 * LISTEN_FDS is 1 and fd 3 is a listening AF_UNIX stream socket; fd 3 is then
 * marked close-on-exec and the caller owns it (closes it at exit, but must not
 * unlink the socket's path).  Returns 0, *fd untouched, when not socket
 * activated: LISTEN_PID unset or another process's pid (the variables are
 * then left as they are), or LISTEN_FDS=0.  Returns DOC_EINVAL with a message
 * in err when the variables are malformed, more than one fd is passed, or
 * fd 3 is not a listening AF_UNIX stream socket (a datagram socket, a
 * non-listening one, a regular file, a closed fd); *fd is untouched and the
 * passed fds are left open.
 * Whenever LISTEN_PID names this process, LISTEN_PID, LISTEN_FDS and
 * LISTEN_FDNAMES are unset before returning (success or error), so that no
 * child inherits them.  Not thread-safe (unsetenv): call before threads start.
 */
int dd_listen_fd(int *fd, doc_err *err);

/*
 * dd_notify: send state ("READY=1", "STOPPING=1", "STATUS=serving ...",
 * several assignments separated by '\n') to the service manager as one
 * datagram on $NOTIFY_SOCKET: an absolute path, or an abstract name written
 * with a leading '@'.
 *
 * Returns 1 when the datagram was sent, 0 (nothing done) when NOTIFY_SOCKET
 * is unset or empty, and a negative DOC_E* code on failure: DOC_EINVAL (state
 * NULL or empty), DOC_EUNSUPPORTED (an address that is neither '/' nor '@',
 * e.g. "vsock:"), DOC_ELIMIT (address longer than sun_path), DOC_EIO (socket
 * or send failed, e.g. the manager's queue is full: the send never blocks;
 * errno is left set).  A failure is for the caller to log,
 * never to stop on.  Reads the environment only; safe to call from any thread
 * as long as nothing changes NOTIFY_SOCKET meanwhile.
 *
 * Reloads: systemd >= 253 with Type=notify-reload expects
 * "RELOADING=1\nMONOTONIC_USEC=<CLOCK_MONOTONIC in us>" before and "READY=1"
 * after; with Type=notify (what docentd.service uses) both are optional.
 */
int dd_notify(const char *state);

#endif
