/*
 * watch.c - following a folder tree with inotify.
 *
 * Design: one inotify instance per watch; one watch descriptor per folder of
 * the tree, root included, filtered as ing_walk filters (hidden and excluded
 * folders are not watched).  The descriptor-to-folder map is an array sorted
 * by descriptor: the kernel hands out descriptors in increasing order, so an
 * add is an append and a lookup a binary search.
 *
 * Events become pending (path, kind) pairs, deduplicated through a hash of the
 * path (the last kind wins: written then deleted is REMOVED, deleted then
 * written again is CHANGED), and are handed out in the order they first
 * appeared once the tree has been quiet for settle_ms.
 *
 *   IN_CLOSE_WRITE, IN_MOVED_TO of a file      -> CHANGED file
 *   IN_DELETE, IN_MOVED_FROM of a file         -> REMOVED file
 *   IN_CREATE, IN_MOVED_TO of a folder         -> watched, and CHANGED for every
 *       file already inside it (files created between the mkdir and the new
 *       watch raise no event of their own: the classic race)
 *   IN_DELETE, IN_MOVED_FROM of a folder       -> its watches removed, REMOVED
 *       for the folder itself (pending events under it dropped: the pipeline
 *       removes every document under a removed folder)
 *   the root deleted or moved                  -> REMOVED for the root, then
 *       nothing more
 *   IN_Q_OVERFLOW (the kernel dropped events)  -> one CHANGED for the root,
 *       meaning "rescan it": files under it may have been added, changed or
 *       removed; folders created meanwhile are watched again first
 *
 * Limits: a symlink to a folder is not followed (its contents are not
 * watched even with follow_symlinks); a file symlink is reported only when
 * found inside a new folder with follow_symlinks set, and changes to a link's
 * target outside the tree raise no event.  A file written through mmap
 * without close raises none either (no IN_CLOSE_WRITE).  The kernel's own cap
 * (fs.inotify.max_user_watches) is reported as DOC_ELIMIT at open and as a
 * warning for folders created later.
 */
#include "ingest/internal.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <unistd.h>

#define WATCH_MAX_DIRS (1 << 20)     /* watched folders */
#define WATCH_MAX_PENDING (1 << 20)  /* distinct paths waiting; past it: rescan */
#define WATCH_SLICE_MS 100           /* longest wait between checks of *cancel */
#define WATCH_MASK (IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_CREATE | IN_DELETE | \
                    IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR | IN_DONT_FOLLOW | IN_EXCL_UNLINK)

typedef struct wd_ent {
    int wd;
    char *path; /* absolute folder path, malloc'd */
} wd_ent;

typedef struct pend_ent {
    char *path;
    int kind;   /* ING_EV_*, 0: dropped */
} pend_ent;

struct ing_watch {
    int fd;
    char root[PATH_MAX];
    size_t rel_off;          /* a path's root-relative part starts here */
    ing_walk_opts o;         /* globs copied into globs[] */
    char **globs;            /* n_globs strings, malloc'd */
    int n_globs;
    wd_ent *wds;             /* sorted by wd */
    size_t n_wds, cap_wds;
    pend_ent *pend;          /* in order of first appearance */
    size_t n_pend, cap_pend;
    uint32_t *phash;         /* index + 1 into pend, 0 empty; cap a power of two */
    size_t cap_phash;
    int overflow;            /* events were lost: report a rescan of the root */
    int root_gone;
    _Alignas(struct inotify_event) char rbuf[64 * 1024]; /* read() target */
};

/* ---- descriptor map ---------------------------------------------------------- */

static long wd_find(const ing_watch *w, int wd)
{
    size_t lo = 0, hi = w->n_wds;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (w->wds[mid].wd < wd) lo = mid + 1;
        else hi = mid;
    }
    return lo < w->n_wds && w->wds[lo].wd == wd ? (long)lo : -1;
}

static int wd_set(ing_watch *w, int wd, const char *path, doc_err *err)
{
    long i = wd_find(w, wd);
    char *p = strdup(path);
    if (!p) return doc_errf(err, DOC_ENOMEM, "out of memory watching %.400s", path);
    if (i >= 0) { /* the same folder reached again (or renamed): the newest name */
        free(w->wds[i].path);
        w->wds[i].path = p;
        return DOC_OK;
    }
    if (w->n_wds >= WATCH_MAX_DIRS) {
        free(p);
        return doc_errf(err, DOC_ELIMIT, "%.400s: more than %d folders watched", path,
                        WATCH_MAX_DIRS);
    }
    if (w->n_wds == w->cap_wds) {
        size_t ncap = w->cap_wds ? 2 * w->cap_wds : 64;
        wd_ent *t = realloc(w->wds, ncap * sizeof *t);
        if (!t) {
            free(p);
            return doc_errf(err, DOC_ENOMEM, "out of memory watching %.400s", path);
        }
        w->wds = t;
        w->cap_wds = ncap;
    }
    size_t at = w->n_wds;
    while (at > 0 && w->wds[at - 1].wd > wd) at--; /* almost always the end */
    memmove(w->wds + at + 1, w->wds + at, (w->n_wds - at) * sizeof *w->wds);
    w->wds[at] = (wd_ent){wd, p};
    w->n_wds++;
    return DOC_OK;
}

static void wd_remove(ing_watch *w, size_t i)
{
    free(w->wds[i].path);
    memmove(w->wds + i, w->wds + i + 1, (w->n_wds - i - 1) * sizeof *w->wds);
    w->n_wds--;
}

/* under: 1 when path is dir or inside it */
static int under(const char *path, const char *dir)
{
    size_t n = strlen(dir);
    return strncmp(path, dir, n) == 0 && (path[n] == 0 || path[n] == '/');
}

/* unwatch_under: stop watching dir and every folder inside it */
static void unwatch_under(ing_watch *w, const char *dir)
{
    for (size_t i = w->n_wds; i-- > 0;) {
        if (!under(w->wds[i].path, dir)) continue;
        inotify_rm_watch(w->fd, w->wds[i].wd); /* EINVAL when the kernel already did */
        wd_remove(w, i);
    }
}

/* ---- pending events ------------------------------------------------------------ */

static int phash_rebuild(ing_watch *w, size_t cap)
{
    uint32_t *t = calloc(cap, sizeof *t);
    if (!t) return DOC_ENOMEM;
    for (size_t i = 0; i < w->n_pend; i++) {
        size_t j = (size_t)hash64(w->pend[i].path, strlen(w->pend[i].path)) & (cap - 1);
        while (t[j]) j = (j + 1) & (cap - 1);
        t[j] = (uint32_t)(i + 1);
    }
    free(w->phash);
    w->phash = t;
    w->cap_phash = cap;
    return DOC_OK;
}

static int pend_add(ing_watch *w, const char *path, int kind)
{
    size_t len = strlen(path);
    size_t h = (size_t)hash64(path, len);
    if (w->cap_phash) {
        for (size_t j = h & (w->cap_phash - 1); w->phash[j]; j = (j + 1) & (w->cap_phash - 1)) {
            pend_ent *e = &w->pend[w->phash[j] - 1];
            if (strcmp(e->path, path) == 0) {
                e->kind = kind;
                return DOC_OK;
            }
        }
    }
    if (w->n_pend >= WATCH_MAX_PENDING) {
        w->overflow = 1; /* too much at once: the caller rescans */
        return DOC_OK;
    }
    if (w->n_pend == w->cap_pend) {
        size_t ncap = w->cap_pend ? 2 * w->cap_pend : 64;
        pend_ent *t = realloc(w->pend, ncap * sizeof *t);
        if (!t) return DOC_ENOMEM;
        w->pend = t;
        w->cap_pend = ncap;
    }
    char *p = strdup(path);
    if (!p) return DOC_ENOMEM;
    w->pend[w->n_pend++] = (pend_ent){p, kind};
    if (2 * w->n_pend > w->cap_phash)
        return phash_rebuild(w, w->cap_phash ? 2 * w->cap_phash : 128);
    size_t j = h & (w->cap_phash - 1);
    while (w->phash[j]) j = (j + 1) & (w->cap_phash - 1);
    w->phash[j] = (uint32_t)w->n_pend;
    return DOC_OK;
}

static void pend_drop_under(ing_watch *w, const char *dir)
{
    for (size_t i = 0; i < w->n_pend; i++)
        if (under(w->pend[i].path, dir)) w->pend[i].kind = 0;
}

static int pend_any(const ing_watch *w)
{
    if (w->overflow) return 1;
    for (size_t i = 0; i < w->n_pend; i++)
        if (w->pend[i].kind) return 1;
    return 0;
}

static void pend_clear(ing_watch *w)
{
    for (size_t i = 0; i < w->n_pend; i++) free(w->pend[i].path);
    w->n_pend = 0;
    if (w->phash) memset(w->phash, 0, w->cap_phash * sizeof *w->phash);
}

/* deliver: up to max pending events into ev, oldest first; the rest stay. */
static int deliver(ing_watch *w, ing_event *ev, int max, int *n)
{
    *n = 0;
    if (w->overflow) {
        ev[0].kind = ING_EV_CHANGED;
        strcpy(ev[0].path, w->root);
        *n = 1;
        w->overflow = 0;
        pend_clear(w);
        return DOC_OK;
    }
    size_t keep = 0;
    for (size_t i = 0; i < w->n_pend; i++) {
        pend_ent e = w->pend[i];
        if (e.kind && *n < max) {
            ev[*n].kind = e.kind;
            strcpy(ev[*n].path, e.path); /* shorter than PATH_MAX, as ev->path */
            (*n)++;
            e.kind = 0;
        }
        if (e.kind) w->pend[keep++] = e;
        else free(e.path);
    }
    w->n_pend = keep;
    return w->cap_phash ? phash_rebuild(w, w->cap_phash) : DOC_OK;
}

/* ---- adding folders ------------------------------------------------------------ */

static const char *rel_of(const ing_watch *w, const char *path) { return path + w->rel_off; }

static int cmp_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* is_file: 1 when path is a regular file (or, with follow_symlinks, a link to one) */
static int is_file(const ing_watch *w, const char *path, int missing_ok)
{
    struct stat st;
    if (lstat(path, &st) != 0) return missing_ok && errno == ENOENT;
    if (S_ISLNK(st.st_mode) && w->o.follow_symlinks && stat(path, &st) != 0) return 0;
    return S_ISREG(st.st_mode);
}

/* add_tree: watch the folder path (PATH_MAX buffer, len bytes) and the folders
 * under it; with report, every wanted file found becomes CHANGED.  A folder
 * that vanished meanwhile is skipped; one that cannot be read is warned. */
static int add_tree(ing_watch *w, char *path, size_t len, int report, doc_err *err)
{
    int rc = 0;
    int wd = inotify_add_watch(w->fd, path, WATCH_MASK);
    if (wd < 0) {
        if (errno == ENOENT || errno == ENOTDIR) return 0;
        if (errno == ENOSPC)
            return doc_errf(err, DOC_ELIMIT,
                            "%.400s: inotify watch limit reached (fs.inotify.max_user_watches)",
                            path);
        if (errno == ENOMEM) return doc_errf(err, DOC_ENOMEM, "%.400s: inotify: out of memory", path);
        log_warn("watch: %s: %s", path, strerror(errno));
        return 0;
    }
    if ((rc = wd_set(w, wd, path, err))) return rc;

    char **names = NULL;
    size_t n = 0, cap = 0;
    DIR *d = opendir(path);
    if (!d) {
        if (errno != ENOENT) log_warn("watch: %s: %s", path, strerror(errno));
        return 0;
    }
    struct dirent *de;
    while ((de = readdir(d))) {
        const char *nm = de->d_name;
        if (nm[0] == '.' && (nm[1] == 0 || (nm[1] == '.' && nm[2] == 0))) continue;
        if (nm[0] == '.' && !w->o.include_hidden) continue;
        if (n == cap) {
            size_t ncap = cap ? 2 * cap : 64;
            char **t = realloc(names, ncap * sizeof *t);
            if (!t) goto nomem;
            names = t;
            cap = ncap;
        }
        if (!(names[n] = strdup(nm))) goto nomem;
        n++;
    }
    closedir(d);
    d = NULL;
    if (n > 1) qsort(names, n, sizeof *names, cmp_name);
    size_t base = len == 1 && path[0] == '/' ? 0 : len; /* the root "/" */
    for (size_t i = 0; i < n && rc == 0; i++) {
        size_t nl = strlen(names[i]);
        if (base + 1 + nl >= PATH_MAX) {
            log_warn("watch: %s/%s: path longer than %d bytes, skipped", path, names[i],
                     PATH_MAX - 1);
            continue;
        }
        path[base] = '/';
        memcpy(path + base + 1, names[i], nl + 1);
        struct stat st;
        if (lstat(path, &st) == 0) {
            const char *rel = rel_of(w, path);
            if (S_ISDIR(st.st_mode)) {
                if (ing_walk_wants(&w->o, rel, 1)) rc = add_tree(w, path, base + 1 + nl, report, err);
            } else if (report && ing_walk_wants(&w->o, rel, 0) && is_file(w, path, 0)) {
                if (pend_add(w, path, ING_EV_CHANGED)) goto nomem;
            }
        }
        path[len] = 0;
    }
    goto done;
nomem:
    rc = doc_errf(err, DOC_ENOMEM, "out of memory watching %.400s", path);
done:
    path[len] = 0;
    if (d) closedir(d);
    for (size_t i = 0; i < n; i++) free(names[i]);
    free(names);
    return rc;
}

/* ---- reading events -------------------------------------------------------------- */

/* on_event: one inotify event into the pending set.  Errors worth stopping for
 * (memory) are returned; a folder that cannot be watched is only warned. */
static int on_event(ing_watch *w, const struct inotify_event *e, doc_err *err)
{
    char path[PATH_MAX];
    int rc = 0;
    if (e->mask & IN_Q_OVERFLOW) {
        w->overflow = 1;
        if (w->root_gone) return 0;
        strcpy(path, w->root);
        rc = add_tree(w, path, strlen(path), 0, err); /* folders made meanwhile */
        if (rc == DOC_ELIMIT) log_warn("watch: %s", err ? err->msg : "too many folders");
        return rc == DOC_ELIMIT ? 0 : rc;
    }
    long i = wd_find(w, e->wd);
    if (i < 0) return 0; /* a folder already forgotten */
    if (e->mask & IN_IGNORED) {
        wd_remove(w, (size_t)i);
        return 0;
    }
    const char *dir = w->wds[i].path;
    if (e->mask & (IN_DELETE_SELF | IN_MOVE_SELF)) {
        /* a subfolder's removal is seen from its parent; only the root's here */
        if (strcmp(dir, w->root) != 0) return 0;
        for (size_t k = 0; k < w->n_wds; k++) inotify_rm_watch(w->fd, w->wds[k].wd);
        while (w->n_wds) wd_remove(w, w->n_wds - 1);
        w->root_gone = 1;
        pend_drop_under(w, w->root);
        return pend_add(w, w->root, ING_EV_REMOVED) ? doc_errf(err, DOC_ENOMEM, "watch: out of memory") : 0;
    }
    if (e->len == 0 || !e->name[0]) return 0;
    if (path_join(path, sizeof path, dir, e->name) != DOC_OK) {
        log_warn("watch: %s/%s: path longer than %d bytes, skipped", dir, e->name, PATH_MAX - 1);
        return 0;
    }
    const char *rel = rel_of(w, path);
    int kind = 0;
    if (e->mask & IN_ISDIR) {
        if (!ing_walk_wants(&w->o, rel, 1)) return 0;
        if (e->mask & (IN_CREATE | IN_MOVED_TO)) {
            rc = add_tree(w, path, strlen(path), 1, err);
            if (rc == DOC_ELIMIT) log_warn("watch: %s", err ? err->msg : "too many folders");
            return rc == DOC_ELIMIT ? 0 : rc;
        }
        if (!(e->mask & (IN_DELETE | IN_MOVED_FROM))) return 0;
        unwatch_under(w, path);
        pend_drop_under(w, path);
        kind = ING_EV_REMOVED;
    } else {
        if (!ing_walk_wants(&w->o, rel, 0)) return 0;
        if (e->mask & (IN_CLOSE_WRITE | IN_MOVED_TO)) {
            /* gone already: keep CHANGED, the IN_DELETE that follows turns it */
            if (!is_file(w, path, 1)) return 0;
            kind = ING_EV_CHANGED;
        } else if (e->mask & (IN_DELETE | IN_MOVED_FROM)) {
            kind = ING_EV_REMOVED;
        } else {
            return 0; /* IN_CREATE of a file: its IN_CLOSE_WRITE follows */
        }
    }
    if (pend_add(w, path, kind)) return doc_errf(err, DOC_ENOMEM, "watch: out of memory");
    return 0;
}

/* drain: read and handle every event queued now; *got = 1 when there were any. */
static int drain(ing_watch *w, int *got, doc_err *err)
{
    char *b = w->rbuf;
    *got = 0;
    for (;;) {
        ssize_t r = read(w->fd, b, sizeof w->rbuf);
        if (r < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN) return 0;
            return doc_errf(err, DOC_EIO, "%.400s: reading inotify events: %s", w->root,
                            strerror(errno));
        }
        if (r == 0) return 0;
        *got = 1;
        for (char *p = b; p < b + r;) {
            const struct inotify_event *e = (const struct inotify_event *)p;
            int rc = on_event(w, e, err);
            if (rc) return rc;
            p += sizeof *e + e->len;
        }
    }
}

/* wait_readable: poll for at most ms; 1 readable, 0 not, negative on error */
static int wait_readable(ing_watch *w, int ms, doc_err *err)
{
    struct pollfd p = {.fd = w->fd, .events = POLLIN};
    int r = poll(&p, 1, ms < 0 ? 0 : ms);
    if (r < 0) {
        if (errno == EINTR) return 0;
        return doc_errf(err, DOC_EIO, "%.400s: poll: %s", w->root, strerror(errno));
    }
    return r > 0;
}

/* ---- public ---------------------------------------------------------------------- */

static int copy_globs(ing_watch *w, const ing_walk_opts *o)
{
    int ni = o->n_include > 0 && o->include ? o->n_include : 0;
    int ne = o->n_exclude > 0 && o->exclude ? o->n_exclude : 0;
    w->o = *o;
    w->o.include = NULL, w->o.n_include = 0;
    w->o.exclude = NULL, w->o.n_exclude = 0;
    if (ni + ne == 0) return DOC_OK;
    if (!(w->globs = calloc((size_t)(ni + ne), sizeof *w->globs))) return DOC_ENOMEM;
    w->n_globs = ni + ne;
    for (int i = 0; i < ni + ne; i++) {
        const char *g = i < ni ? o->include[i] : o->exclude[i - ni];
        if (!(w->globs[i] = strdup(g ? g : ""))) return DOC_ENOMEM;
    }
    w->o.include = (const char *const *)w->globs, w->o.n_include = ni;
    w->o.exclude = (const char *const *)w->globs + ni, w->o.n_exclude = ne;
    return DOC_OK;
}

int ing_watch_open(const char *root, const ing_walk_opts *o, ing_watch **out, doc_err *err)
{
    static const ing_walk_opts defaults;
    int rc = 0;
    if (!out || !root) return doc_errf(err, DOC_EINVAL, "ing_watch_open: no root or result");
    *out = NULL;
    ing_watch *w = calloc(1, sizeof *w);
    if (!w) return doc_errf(err, DOC_ENOMEM, "out of memory watching %.400s", root);
    w->fd = -1;
    if ((rc = copy_globs(w, o ? o : &defaults))) {
        rc = doc_errf(err, rc, "out of memory watching %.400s", root);
        goto done;
    }
    if ((rc = ing_path_abs(root, w->root, sizeof w->root, err))) goto done;
    w->rel_off = strcmp(w->root, "/") == 0 ? 1 : strlen(w->root) + 1;
    struct stat st;
    if (stat(w->root, &st) != 0) {
        rc = errno == ENOENT || errno == ENOTDIR
                 ? doc_errf(err, DOC_ENOTFOUND, "%.400s: no such folder", root)
                 : doc_errf(err, DOC_EIO, "%.400s: %s", root, strerror(errno));
        goto done;
    }
    if (!S_ISDIR(st.st_mode)) {
        rc = doc_errf(err, DOC_EINVAL, "%.400s: not a folder (only folders are watched)", root);
        goto done;
    }
    if ((w->fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC)) < 0) {
        rc = errno == EMFILE
                 ? doc_errf(err, DOC_ELIMIT, "inotify instance limit reached (fs.inotify.max_user_instances)")
                 : doc_errf(err, DOC_EIO, "inotify: %s", strerror(errno));
        goto done;
    }
    char path[PATH_MAX];
    strcpy(path, w->root);
    if ((rc = add_tree(w, path, strlen(path), 0, err))) goto done;
    if (w->n_wds == 0) { /* the root itself could not be watched (warned) */
        rc = doc_errf(err, DOC_EIO, "%.400s: cannot be watched", root);
        goto done;
    }
done:
    if (rc) ing_watch_close(&w);
    *out = w;
    return rc;
}

int ing_watch_next(ing_watch *w, int timeout_ms, int settle_ms, const volatile int *cancel,
                   ing_event *ev, int max, int *n, doc_err *err)
{
    int rc, got;
    if (n) *n = 0;
    if (!w || !ev || !n || max <= 0) return doc_errf(err, DOC_EINVAL, "ing_watch_next: bad arguments");
    if (pend_any(w)) return deliver(w, ev, max, n); /* left over from the last call */
    double deadline = timeout_ms < 0 ? -1 : time_now() + timeout_ms / 1000.0;
    for (;;) {
        if (cancel && *cancel) return doc_errf(err, DOC_ECANCELLED, "%.400s: watch cancelled", w->root);
        double left_ms = deadline < 0 ? WATCH_SLICE_MS : (deadline - time_now()) * 1000.0;
        if (left_ms <= 0) return DOC_OK; /* timeout: *n = 0 */
        if ((rc = wait_readable(w, left_ms < WATCH_SLICE_MS ? (int)left_ms + 1 : WATCH_SLICE_MS, err)) < 0)
            return rc;
        if (rc == 0) continue;
        if ((rc = drain(w, &got, err))) return rc;

        /* settle: keep reading until quiet for settle_ms, but a tree that never
         * goes quiet (a log written every few ms) is still reported, after at
         * most 10 settle periods + 1 s */
        double quiet_since = time_now(), give_up = quiet_since + (10.0 * settle_ms + 1000) / 1000.0;
        for (;;) {
            if (cancel && *cancel) return doc_errf(err, DOC_ECANCELLED, "%.400s: watch cancelled", w->root);
            double now = time_now(), quiet_left = settle_ms - (now - quiet_since) * 1000.0;
            if (quiet_left <= 0 || now >= give_up) break;
            int ms = quiet_left < WATCH_SLICE_MS ? (int)quiet_left + 1 : WATCH_SLICE_MS;
            if ((rc = wait_readable(w, ms, err)) < 0) return rc;
            if (rc == 0) continue;
            if ((rc = drain(w, &got, err))) return rc;
            if (got) quiet_since = time_now();
        }
        if (pend_any(w)) return deliver(w, ev, max, n);
        /* everything seen was filtered out: wait on until the deadline */
    }
}

void ing_watch_close(ing_watch **pw)
{
    if (!pw || !*pw) return;
    ing_watch *w = *pw;
    if (w->fd >= 0) close(w->fd); /* drops every watch */
    for (size_t i = 0; i < w->n_wds; i++) free(w->wds[i].path);
    free(w->wds);
    for (size_t i = 0; i < w->n_pend; i++) free(w->pend[i].path);
    free(w->pend);
    free(w->phash);
    for (int i = 0; i < w->n_globs; i++) free(w->globs[i]);
    free(w->globs);
    free(w);
    *pw = NULL;
}
