/*
 * access.c - who the caller is allowed to be: readers lists of collections
 * and the admins list, matched against the caller's uid, its user name, its
 * primary group and its supplementary groups (looked up per request, so a
 * group change takes effect without a restart).
 */
#include <grp.h>
#include <stdio.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon/internal.h"

enum { MAX_GROUPS = 256 };

/* in_group: is the caller in group `name` (primary or supplementary)? */
static int in_group(const char *name, const dd_caller *c)
{
    char gbuf[4096], pbuf[4096];
    struct group gr, *g = NULL;
    if (getgrnam_r(name, &gr, gbuf, sizeof gbuf, &g) || !g) return 0;
    if (g->gr_gid == c->gid) return 1;
    struct passwd pw, *p = NULL;
    if (getpwuid_r(c->uid, &pw, pbuf, sizeof pbuf, &p) || !p) return 0;
    gid_t groups[MAX_GROUPS];
    int n = MAX_GROUPS;
    if (getgrouplist(p->pw_name, p->pw_gid, groups, &n) < 0) n = MAX_GROUPS;
    for (int i = 0; i < n; i++)
        if (groups[i] == g->gr_gid) return 1;
    return 0;
}

static int entry_matches(const char *e, size_t n, const dd_caller *c)
{
    char v[256];
    if (n == 1 && e[0] == '*') return 1;
    if (n > 4 && !memcmp(e, "key:", 4))
        return c->tcp && c->key[0] && strlen(c->key) == n - 4 && !memcmp(c->key, e + 4, n - 4);
    if (c->tcp) return 0; /* uids mean nothing on TCP */
    if (n > 4 && !memcmp(e, "uid:", 4)) {
        snprintf(v, sizeof v, "%.*s", (int)(n - 4), e + 4);
        char *end;
        long u = strtol(v, &end, 10);
        return *v && !*end && u >= 0 && (uid_t)u == c->uid;
    }
    if (n > 5 && !memcmp(e, "user:", 5)) {
        snprintf(v, sizeof v, "%.*s", (int)(n - 5), e + 5);
        char pbuf[4096];
        struct passwd pw, *p = NULL;
        return !getpwnam_r(v, &pw, pbuf, sizeof pbuf, &p) && p && p->pw_uid == c->uid;
    }
    if (n > 6 && !memcmp(e, "group:", 6)) {
        snprintf(v, sizeof v, "%.*s", (int)(n - 6), e + 6);
        return in_group(v, c);
    }
    return 0; /* unknown entries grant nothing */
}

int dd_list_matches(const char *list, const dd_caller *c)
{
    if (!list || !c->known) return 0;
    const char *s = list;
    while (*s) {
        while (*s == ' ' || *s == ',') s++;
        const char *e = s;
        while (*e && *e != ',') e++;
        size_t n = (size_t)(e - s);
        while (n && s[n - 1] == ' ') n--;
        if (n && entry_matches(s, n, c)) return 1;
        s = e;
    }
    return 0;
}

int dd_key_lookup(const char *keys, const char *secret, char *name, size_t cap)
{
    size_t sl = strlen(secret);
    int found = 0;
    const char *s = keys;
    while (*s) {
        while (*s == ' ' || *s == ',') s++;
        const char *e = s;
        while (*e && *e != ',') e++;
        const char *colon = memchr(s, ':', (size_t)(e - s));
        if (colon) {
            const char *k = colon + 1;
            size_t kl = (size_t)(e - k);
            while (kl && k[kl - 1] == ' ') kl--;
            /* every byte of the longer one is looked at: no early exit */
            unsigned char diff = (unsigned char)(kl != sl);
            size_t m = kl > sl ? kl : sl;
            for (size_t i = 0; i < m; i++)
                diff |= (unsigned char)((i < kl ? k[i] : 0) ^ (i < sl ? secret[i] : 0));
            if (!diff && kl && !found) {
                snprintf(name, cap, "%.*s", (int)(colon - s), s);
                found = 1;
            }
        }
        s = e;
    }
    return found;
}

int dd_is_admin(dd_server *srv, const dd_caller *c)
{
    if (!c->known) return 0;
    if (!c->tcp && (c->uid == 0 || c->uid == srv->self_uid)) return 1;
    if (c->tcp && !c->key[0]) return 0;
    pthread_rwlock_rdlock(&srv->reload_rw); /* SIGHUP may change the list */
    int yes = dd_list_matches(srv->cfg.admins, c);
    pthread_rwlock_unlock(&srv->reload_rw);
    return yes;
}

int dd_readable(dd_server *srv, const dd_caller *c, const char *name, int64_t **ids, int *n)
{
    idx_collection *cols = NULL;
    int nc = 0, rc = idx_collection_list(srv->store, &cols, &nc);
    *ids = NULL;
    *n = 0;
    if (rc) return rc;
    *ids = malloc((size_t)(nc ? nc : 1) * sizeof **ids);
    if (!*ids) {
        free(cols);
        return DOC_ENOMEM;
    }
    int found = 0;
    for (int i = 0; i < nc; i++) {
        if (name && strcmp(cols[i].name, name)) continue;
        found = 1;
        if (dd_list_matches(cols[i].readers, c)) (*ids)[(*n)++] = cols[i].id;
    }
    free(cols);
    if (name && !found) {
        free(*ids);
        *ids = NULL;
        return DOC_ENOTFOUND;
    }
    return DOC_OK;
}
