/*
 * walk.c - the folder source: every regular file under a root, in an order
 * that does not depend on the filesystem, filtered by the walk options.
 *
 * Design: one path buffer of PATH_MAX bytes is extended and cut back as the
 * walk descends, so a path that would not fit is an error naming it, never a
 * silent truncation.  Each folder is read whole, closed, and its names sorted
 * bytewise before any of them is visited: the order is deterministic and the
 * walk holds one directory descriptor at a time however deep the tree.
 *
 * Every folder entered is recorded by (device, inode) in a hash set, with a
 * flag saying whether it is on the current path.  A folder met again through a
 * followed symlink is either on the path (a loop: warned "symlink loop") or was
 * reached through another link (warned, not walked twice).  Without
 * follow_symlinks, links are skipped silently: a link is not a regular file.
 *
 * Filtering: names starting with '.' are skipped unless include_hidden; a
 * folder or file whose basename or root-relative path matches an exclude glob
 * is skipped (an excluded folder is not entered); a file must match one of the
 * include globs when there are any.  A root that is itself a file is passed to
 * the callback as named, without filtering: the caller asked for it.
 */
#include "ingest/internal.h"

#include <dirent.h>
#include <errno.h>
#include <fnmatch.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define WALK_MAX_DIR_ENTRIES (1 << 22) /* names in one folder */
#define WALK_MAX_DIRS (1 << 24)        /* folders in one walk */

typedef struct dir_id {
    dev_t dev;
    ino_t ino;
    int used, on_path;
} dir_id;

typedef struct walker {
    const ing_walk_opts *o;
    ing_walk_fn fn;
    ing_warn_fn warn;
    void *ctx;
    doc_err *err;
    char path[PATH_MAX]; /* the root, then the entry being visited; "" for "/" */
    size_t root_len;
    dir_id *seen;        /* open addressing; cap a power of two */
    size_t n_seen, cap_seen;
} walker;

/* ---- globs and filters --------------------------------------------------- */

int ing_glob_match(const char *const *globs, int n, const char *relpath)
{
    if (!globs || !relpath) return 0;
    const char *base = strrchr(relpath, '/');
    base = base ? base + 1 : relpath;
    for (int i = 0; i < n; i++) {
        if (!globs[i]) continue;
        /* '*' does not cross '/' in the relative path, as in .gitignore */
        if (fnmatch(globs[i], base, 0) == 0) return 1;
        if (base != relpath && fnmatch(globs[i], relpath, FNM_PATHNAME) == 0) return 1;
    }
    return 0;
}

int ing_walk_wants(const ing_walk_opts *o, const char *relpath, int is_dir)
{
    const char *base = strrchr(relpath, '/');
    base = base ? base + 1 : relpath;
    if (!o) return base[0] != '.';
    if (base[0] == '.' && !o->include_hidden) return 0;
    if (ing_glob_match(o->exclude, o->n_exclude, relpath)) return 0;
    if (!is_dir && o->n_include > 0 && !ing_glob_match(o->include, o->n_include, relpath))
        return 0;
    return 1;
}

/* ---- paths --------------------------------------------------------------- */

int ing_path_abs(const char *path, char *out, size_t cap, doc_err *err)
{
    char tmp[PATH_MAX];
    if (!path || !*path) return doc_errf(err, DOC_EINVAL, "empty path");
    if (path[0] == '/') {
        if (strlen(path) >= sizeof tmp)
            return doc_errf(err, DOC_ELIMIT, "%.200s...: path longer than %d bytes", path,
                            PATH_MAX - 1);
        strcpy(tmp, path);
    } else {
        if (!getcwd(tmp, sizeof tmp))
            return doc_errf(err, DOC_EIO, "working directory: %s", strerror(errno));
        size_t l = strlen(tmp);
        if (l + 1 + strlen(path) >= sizeof tmp)
            return doc_errf(err, DOC_ELIMIT, "%.200s...: path longer than %d bytes", path,
                            PATH_MAX - 1);
        tmp[l] = '/';
        strcpy(tmp + l + 1, path);
    }
    /* lexical normalisation: components appended to out one at a time */
    size_t o = 0;
    const char *p = tmp;
    if (cap < 2) return doc_errf(err, DOC_ELIMIT, "%.200s: path buffer too small", path);
    while (*p) {
        while (*p == '/') p++;
        const char *q = p;
        while (*q && *q != '/') q++;
        size_t n = (size_t)(q - p);
        if (n == 0 || (n == 1 && p[0] == '.')) {
            /* nothing */
        } else if (n == 2 && p[0] == '.' && p[1] == '.') {
            while (o > 0 && out[o - 1] != '/') o--;
            if (o > 0) o--; /* drop the '/' too; ".." of "/" is "/" */
        } else {
            if (o + 1 + n >= cap)
                return doc_errf(err, DOC_ELIMIT, "%.200s...: path longer than %zu bytes", path,
                                cap - 1);
            out[o++] = '/';
            memcpy(out + o, p, n);
            o += n;
        }
        p = q;
    }
    if (o == 0) out[o++] = '/';
    out[o] = 0;
    return DOC_OK;
}

/* ---- the set of folders seen ----------------------------------------------- */

static size_t id_hash(dev_t dev, ino_t ino)
{
    uint64_t h = ((uint64_t)dev * 0x9E3779B97F4A7C15ull) ^ (uint64_t)ino;
    h ^= h >> 31;
    h *= 0xBF58476D1CE4E5B9ull;
    h ^= h >> 29;
    return (size_t)h;
}

static dir_id *seen_find(walker *w, dev_t dev, ino_t ino)
{
    if (!w->cap_seen) return NULL;
    for (size_t i = id_hash(dev, ino) & (w->cap_seen - 1);; i = (i + 1) & (w->cap_seen - 1)) {
        dir_id *e = &w->seen[i];
        if (!e->used) return NULL;
        if (e->dev == dev && e->ino == ino) return e;
    }
}

/* seen_add: record a folder not yet in the set; the entry is returned in *out
 * (valid until the next seen_add). */
static int seen_add(walker *w, dev_t dev, ino_t ino, dir_id **out)
{
    if (w->n_seen >= WALK_MAX_DIRS)
        return doc_errf(w->err, DOC_ELIMIT, "%.300s: more than %d folders under the root",
                        w->path, WALK_MAX_DIRS);
    if (2 * (w->n_seen + 1) > w->cap_seen) {
        size_t ncap = w->cap_seen ? 2 * w->cap_seen : 64;
        dir_id *t = calloc(ncap, sizeof *t);
        if (!t) return doc_errf(w->err, DOC_ENOMEM, "out of memory walking %.300s", w->path);
        for (size_t i = 0; i < w->cap_seen; i++) {
            if (!w->seen[i].used) continue;
            size_t j = id_hash(w->seen[i].dev, w->seen[i].ino) & (ncap - 1);
            while (t[j].used) j = (j + 1) & (ncap - 1);
            t[j] = w->seen[i];
        }
        free(w->seen);
        w->seen = t;
        w->cap_seen = ncap;
    }
    size_t j = id_hash(dev, ino) & (w->cap_seen - 1);
    while (w->seen[j].used) j = (j + 1) & (w->cap_seen - 1);
    w->seen[j] = (dir_id){.dev = dev, .ino = ino, .used = 1};
    w->n_seen++;
    *out = &w->seen[j];
    return DOC_OK;
}

/* ---- the walk -------------------------------------------------------------- */

static const char *cur_path(const walker *w) { return w->path[0] ? w->path : "/"; }

static void warn_at(walker *w, const char *why)
{
    if (w->warn) w->warn(w->ctx, cur_path(w), why);
}

static int cmp_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int enter_dir(walker *w, size_t len, const struct stat *st);

/* visit: the entry name inside the folder path[0..len). */
static int visit(walker *w, size_t len, const char *name)
{
    int rc = 0;
    size_t nl = strlen(name);
    if (len + 1 + nl >= sizeof w->path)
        return doc_errf(w->err, DOC_ELIMIT, "%.200s/%.100s...: path longer than %d bytes",
                        cur_path(w), name, PATH_MAX - 1);
    w->path[len] = '/';
    memcpy(w->path + len + 1, name, nl + 1);
    const char *rel = w->path + w->root_len + 1;
    struct stat st;
    if (lstat(w->path, &st) != 0) {
        if (errno != ENOENT) warn_at(w, strerror(errno)); /* ENOENT: removed meanwhile */
        goto done;
    }
    if (S_ISLNK(st.st_mode)) {
        if (!w->o->follow_symlinks) goto done;
        if (stat(w->path, &st) != 0) {
            warn_at(w, errno == ENOENT ? "broken symlink" : strerror(errno));
            goto done;
        }
    }
    if (S_ISDIR(st.st_mode)) {
        if (ing_walk_wants(w->o, rel, 1)) rc = enter_dir(w, len + 1 + nl, &st);
    } else if (S_ISREG(st.st_mode)) {
        if (ing_walk_wants(w->o, rel, 0)) rc = w->fn(w->ctx, w->path, &st);
    }
done:
    w->path[len] = 0;
    return rc;
}

/* walk_dir: read the folder path[0..len), sort its names, visit each. */
static int walk_dir(walker *w, size_t len)
{
    int rc = 0;
    char **names = NULL;
    size_t n = 0, cap = 0;
    DIR *d = opendir(cur_path(w));
    if (!d) {
        if (len == w->root_len)
            return doc_errf(w->err, DOC_EIO, "%.400s: %s", cur_path(w), strerror(errno));
        warn_at(w, strerror(errno));
        return 0;
    }
    struct dirent *de;
    for (errno = 0; (de = readdir(d)); errno = 0) {
        const char *nm = de->d_name;
        if (nm[0] == '.' && (nm[1] == 0 || (nm[1] == '.' && nm[2] == 0))) continue;
        if (nm[0] == '.' && !w->o->include_hidden) continue;
        if (n == WALK_MAX_DIR_ENTRIES) {
            rc = doc_errf(w->err, DOC_ELIMIT, "%.400s: more than %d entries in one folder",
                          cur_path(w), WALK_MAX_DIR_ENTRIES);
            goto done;
        }
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
    if (errno) warn_at(w, strerror(errno)); /* walk what was read */
    closedir(d);
    d = NULL;
    if (n > 1) qsort(names, n, sizeof *names, cmp_name);
    for (size_t i = 0; i < n && rc == 0; i++) rc = visit(w, len, names[i]);
    goto done;
nomem:
    rc = doc_errf(w->err, DOC_ENOMEM, "out of memory reading %.400s", cur_path(w));
done:
    if (d) closedir(d);
    for (size_t i = 0; i < n; i++) free(names[i]);
    free(names);
    return rc;
}

static int enter_dir(walker *w, size_t len, const struct stat *st)
{
    dir_id *e = seen_find(w, st->st_dev, st->st_ino);
    if (e) {
        warn_at(w, e->on_path ? "symlink loop" : "already walked through another link");
        return 0;
    }
    int rc = seen_add(w, st->st_dev, st->st_ino, &e);
    if (rc) return rc;
    e->on_path = 1;
    rc = walk_dir(w, len);
    w->path[len] = 0;
    if ((e = seen_find(w, st->st_dev, st->st_ino))) e->on_path = 0; /* the set may have moved */
    return rc;
}

int ing_walk(const char *root, const ing_walk_opts *o, ing_walk_fn fn, ing_warn_fn warn_fn,
             void *ctx, doc_err *err)
{
    static const ing_walk_opts defaults;
    if (!root || !fn) return doc_errf(err, DOC_EINVAL, "ing_walk: no root or callback");
    walker *w = calloc(1, sizeof *w);
    if (!w) return doc_errf(err, DOC_ENOMEM, "out of memory walking %.400s", root);
    w->o = o ? o : &defaults;
    w->fn = fn;
    w->warn = warn_fn;
    w->ctx = ctx;
    w->err = err;
    int rc = ing_path_abs(root, w->path, sizeof w->path, err);
    if (rc) goto done;
    struct stat st;
    if (stat(w->path, &st) != 0) {
        if (errno == ENOENT || errno == ENOTDIR)
            rc = doc_errf(err, DOC_ENOTFOUND, "%.400s: no such file or folder", root);
        else
            rc = doc_errf(err, DOC_EIO, "%.400s: %s", root, strerror(errno));
        goto done;
    }
    if (S_ISREG(st.st_mode)) {
        rc = fn(ctx, w->path, &st);
    } else if (S_ISDIR(st.st_mode)) {
        if (strcmp(w->path, "/") == 0) w->path[0] = 0; /* children are "/name" */
        w->root_len = strlen(w->path);
        rc = enter_dir(w, w->root_len, &st);
    } else {
        rc = doc_errf(err, DOC_EUNSUPPORTED, "%.400s: not a regular file or folder", root);
    }
done:
    free(w->seen);
    free(w);
    return rc;
}
