/* file.c - whole-file read, read-only mmap, atomic write. */
#include "core.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

int file_read_all(const char *path, size_t max, char **data, size_t *len, doc_err *err)
{
    *data = NULL;
    if (len) *len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return doc_errf(err, errno == ENOENT ? DOC_ENOTFOUND : DOC_EIO, "%s: %s", path, strerror(errno));
    struct stat st;
    int rc = DOC_OK;
    char *p = NULL;
    if (fstat(fd, &st) < 0) {
        rc = doc_errf(err, DOC_EIO, "%s: %s", path, strerror(errno));
        goto done;
    }
    if (S_ISDIR(st.st_mode)) {
        rc = doc_errf(err, DOC_EINVAL, "%s: is a directory", path);
        goto done;
    }
    if (max && (size_t)st.st_size > max) {
        rc = doc_errf(err, DOC_ELIMIT, "%s: %lld bytes is over the limit of %zu", path,
                      (long long)st.st_size, max);
        goto done;
    }
    size_t cap = (size_t)st.st_size + 1, n = 0;
    p = malloc(cap);
    if (!p) {
        rc = doc_errf(err, DOC_ENOMEM, "%s: cannot allocate %zu bytes", path, cap);
        goto done;
    }
    for (;;) {
        if (n + 1 == cap) { /* file grew while reading, or a pipe */
            if (max && n >= max) {
                /* exactly max bytes is fine: over only if one more byte comes */
                char probe;
                ssize_t r1;
                while ((r1 = read(fd, &probe, 1)) < 0 && errno == EINTR) {
                }
                if (r1 == 0) break;
                rc = r1 < 0 ? doc_errf(err, DOC_EIO, "%s: read: %s", path, strerror(errno))
                            : doc_errf(err, DOC_ELIMIT, "%s: over the limit of %zu bytes", path, max);
                goto done;
            }
            char *q = realloc(p, cap * 2);
            if (!q) {
                rc = doc_errf(err, DOC_ENOMEM, "%s: out of memory", path);
                goto done;
            }
            p = q;
            cap *= 2;
        }
        ssize_t r = read(fd, p + n, cap - 1 - n);
        if (r < 0) {
            if (errno == EINTR) continue;
            rc = doc_errf(err, DOC_EIO, "%s: read: %s", path, strerror(errno));
            goto done;
        }
        if (r == 0) break;
        n += (size_t)r;
    }
    p[n] = 0;
    *data = p;
    p = NULL;
    if (len) *len = n;
done:
    free(p);
    close(fd);
    return rc;
}

int file_map_open(const char *path, file_map *m, doc_err *err)
{
    m->data = NULL;
    m->size = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return doc_errf(err, errno == ENOENT ? DOC_ENOTFOUND : DOC_EIO, "%s: %s", path, strerror(errno));
    struct stat st;
    int rc = DOC_OK;
    if (fstat(fd, &st) < 0) {
        rc = doc_errf(err, DOC_EIO, "%s: %s", path, strerror(errno));
        goto done;
    }
    if (!S_ISREG(st.st_mode)) {
        rc = doc_errf(err, DOC_EINVAL, "%s: not a regular file", path);
        goto done;
    }
    if (st.st_size == 0) {
        rc = doc_errf(err, DOC_EFORMAT, "%s: file is empty", path);
        goto done;
    }
    void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
        rc = doc_errf(err, DOC_EIO, "%s: mmap: %s", path, strerror(errno));
        goto done;
    }
    m->data = p;
    m->size = (size_t)st.st_size;
done:
    close(fd);
    return rc;
}

void file_map_close(file_map *m)
{
    if (m && m->data) munmap((void *)m->data, m->size);
    if (m) {
        m->data = NULL;
        m->size = 0;
    }
}

int file_write_atomic(const char *path, const void *data, size_t len, doc_err *err)
{
    char tmp[4096];
    /* pid and thread id: two threads saving the same path never share a temp file */
    if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp.%d.%d", path, (int)getpid(), (int)gettid()) >=
        sizeof tmp)
        return doc_errf(err, DOC_ELIMIT, "%s: path too long", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return doc_errf(err, DOC_EIO, "%s: %s", tmp, strerror(errno));
    const char *p = data;
    size_t left = len;
    while (left) {
        ssize_t w = write(fd, p, left);
        if (w < 0) {
            if (errno == EINTR) continue;
            int e = errno;
            close(fd);
            unlink(tmp);
            return doc_errf(err, DOC_EIO, "%s: write: %s", tmp, strerror(e));
        }
        p += w;
        left -= (size_t)w;
    }
    int synced = fsync(fd), e = errno;
    if (close(fd) < 0 && synced == 0) synced = -1, e = errno;
    if (synced < 0) {
        unlink(tmp);
        return doc_errf(err, DOC_EIO, "%s: fsync: %s", tmp, strerror(e));
    }
    if (rename(tmp, path) < 0) {
        int e = errno;
        unlink(tmp);
        return doc_errf(err, DOC_EIO, "rename %s -> %s: %s", tmp, path, strerror(e));
    }
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", path);
    /* the rename is durable only once the folder is synced */
    int dfd = open(dirname(dir), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) return doc_errf(err, DOC_EIO, "%s: open folder to fsync: %s", dir, strerror(errno));
    int dsync = fsync(dfd), de = errno;
    close(dfd);
    if (dsync < 0) return doc_errf(err, DOC_EIO, "%s: fsync of the folder: %s", dir, strerror(de));
    return DOC_OK;
}

int file_each_block(const char *path, void (*fn)(void *ctx, const void *p, size_t n), void *ctx,
                    doc_err *err)
{
    int rc = 0, fd;
    char *blk = NULL;
    if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
        return doc_errf(err, DOC_EIO, "%s: %s", path, strerror(errno));
    if (!(blk = malloc(1 << 20))) {
        rc = doc_errf(err, DOC_ENOMEM, "%s: out of memory", path);
        goto done;
    }
    for (;;) {
        ssize_t r = read(fd, blk, 1 << 20);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            rc = doc_errf(err, DOC_EIO, "%s: read: %s", path, strerror(errno));
            goto done;
        }
        if (r == 0) break;
        fn(ctx, blk, (size_t)r);
    }
done:
    free(blk);
    close(fd);
    return rc;
}

int file_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

int file_is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

int path_join(char *out, size_t cap, const char *dir, const char *name)
{
    size_t dl = strlen(dir);
    int n = snprintf(out, cap, "%s%s%s", dir, (dl && dir[dl - 1] == '/') ? "" : "/", name);
    return (n < 0 || (size_t)n >= cap) ? DOC_ELIMIT : DOC_OK;
}
