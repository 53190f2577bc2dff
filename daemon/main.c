/*
 * main.c - docentd: the daemon (shared/DESIGN.md §7).
 *
 *   docentd [--config FILE] [--socket PATH] [--data DIR] [-o SECTION.KEY=VALUE]... [--check-config]
 *
 * Opens the store and both models once, then serves HTTP/1.1 with JSON
 * bodies on a Unix socket (server.c, routes.c).  The socket's directory must
 * not be writable by others (it is created 0750 when missing); the socket is
 * 0660, owned by [daemon] socket_group when set.  A socket file left by a dead
 * daemon is replaced; a live one makes this start fail.
 * Under systemd (etc/docentd.socket, .service) the listening socket may be
 * passed in (socket activation) and readiness is reported with sd_notify's
 * protocol (daemon/systemd.c).
 * SIGTERM / SIGINT: stop accepting, stop in-flight generation, close the
 * store, exit 0.  SIGHUP: reload the prompt templates.
 */
#include <errno.h>
#include <getopt.h>
#include <grp.h>
#include <libgen.h>
#include <malloc.h>
#include <netdb.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "daemon/internal.h"
#include "daemon/systemd.h"
#include "ingest/ingest.h"

/* set by signal handlers (the program's only mutable globals) */
static volatile sig_atomic_t g_stop, g_hup;

static void on_stop(int sig)
{
    (void)sig;
    g_stop = 1;
}

static void on_hup(int sig)
{
    (void)sig;
    g_hup = 1;
}

static const char usage[] =
    "usage: docentd [--config FILE] [--socket PATH] [--data DIR] [--http ADDR:PORT]\n"
    "               [--embedder PATH|URL] [--generator PATH|URL] [--backend auto|cpu|cuda]\n"
    "               [-o SECTION.KEY=VALUE]... [--check-config]\n"
    "  serve docent's HTTP API on a Unix socket ([daemon] socket in the config) and,\n"
    "  with --http or [daemon] http, on TCP for chatbots (API keys: [daemon] api_keys;\n"
    "  needed for any address but loopback).\n"
    "  --check-config   read and check the config, the models' files and the prompt\n"
    "                   templates, then exit (0: fine)\n";

/* socket_dir_ok: the socket's directory exists (created 0750 if missing) and
 * is not writable by others */
static int socket_dir_ok(const char *path, doc_err *err)
{
    char dir[1024];
    snprintf(dir, sizeof dir, "%s", path);
    char *d = dirname(dir);
    struct stat st;
    if (stat(d, &st) != 0) {
        if (errno != ENOENT || mkdir(d, 0750) != 0)
            return doc_errf(err, DOC_EIO, "socket directory %s: %s", d, strerror(errno));
        if (stat(d, &st) != 0) return doc_errf(err, DOC_EIO, "socket directory %s: %s", d, strerror(errno));
    }
    if (!S_ISDIR(st.st_mode)) return doc_errf(err, DOC_EINVAL, "socket directory %s: not a directory", d);
    if (st.st_mode & S_IWOTH)
        return doc_errf(err, DOC_EINVAL,
                        "socket directory %s is writable by others (mode %03o): anyone could "
                        "replace the socket; use a directory of mode 0750",
                        d, (unsigned)(st.st_mode & 0777));
    return DOC_OK;
}

/* open_socket: bind and listen on path, replacing a stale socket file */
static int open_socket(const dd_server *srv, int *out, doc_err *err)
{
    const char *path = srv->cfg.socket_path;
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof sa.sun_path)
        return doc_errf(err, DOC_ELIMIT, "[daemon] socket: %s is over %zu bytes", path,
                        sizeof sa.sun_path - 1);
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
    int rc = socket_dir_ok(path, err);
    if (rc) return rc;
    struct stat st;
    if (lstat(path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode))
            return doc_errf(err, DOC_EINVAL, "%s exists and is not a socket", path);
        int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        int live = probe >= 0 && connect(probe, (struct sockaddr *)&sa, sizeof sa) == 0;
        if (probe >= 0) close(probe);
        if (live) return doc_errf(err, DOC_ESTATE, "%s: another docentd is serving it", path);
        unlink(path);
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return doc_errf(err, DOC_EIO, "socket: %s", strerror(errno));
    mode_t old = umask(0117); /* the socket is created 0660 */
    int b = bind(fd, (struct sockaddr *)&sa, sizeof sa);
    umask(old);
    if (b != 0 || listen(fd, 128) != 0) {
        rc = doc_errf(err, DOC_EIO, "%s: %s", path, strerror(errno));
        close(fd);
        return rc;
    }
    if (*srv->cfg.socket_group) {
        char gbuf[4096];
        struct group gr, *g = NULL;
        if (getgrnam_r(srv->cfg.socket_group, &gr, gbuf, sizeof gbuf, &g) || !g) {
            close(fd);
            unlink(path);
            return doc_errf(err, DOC_EINVAL, "[daemon] socket_group: no group named %s",
                            srv->cfg.socket_group);
        }
        if (chown(path, (uid_t)-1, g->gr_gid) != 0) {
            rc = doc_errf(err, DOC_EIO, "%s: chown to group %s: %s", path, srv->cfg.socket_group,
                          strerror(errno));
            close(fd);
            unlink(path);
            return rc;
        }
    }
    chmod(path, 0660);
    *out = fd;
    return DOC_OK;
}

/* open_tcp: bind and listen on [daemon] http ("ADDR:PORT", "[V6]:PORT"); an
 * address other than loopback is refused without api_keys */
static int open_tcp(const dd_server *srv, int *out, doc_err *err)
{
    char host[128];
    const char *a = srv->cfg.http_addr, *port;
    if (*a == '[') {
        const char *e = strchr(a, ']');
        if (!e || e[1] != ':') return doc_errf(err, DOC_EINVAL, "[daemon] http: '%s' (use [V6]:PORT)", a);
        snprintf(host, sizeof host, "%.*s", (int)(e - a - 1), a + 1);
        port = e + 2;
    } else {
        const char *c = strrchr(a, ':');
        if (!c) return doc_errf(err, DOC_EINVAL, "[daemon] http: '%s' (use ADDR:PORT)", a);
        snprintf(host, sizeof host, "%.*s", (int)(c - a), a);
        port = c + 1;
    }
    char *end;
    long pn = strtol(port, &end, 10);
    if (!*port || *end || pn < 1 || pn > 65535)
        return doc_errf(err, DOC_EINVAL, "[daemon] http: port '%s' (1..65535)", port);
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV}, *ai = NULL;
    int g = getaddrinfo(host, port, &hints, &ai);
    if (g) return doc_errf(err, DOC_EINVAL, "[daemon] http: %s: %s", host, gai_strerror(g));
    int loopback = 1;
    for (struct addrinfo *p = ai; p; p = p->ai_next) {
        if (p->ai_family == AF_INET) {
            uint32_t ip = ntohl(((struct sockaddr_in *)p->ai_addr)->sin_addr.s_addr);
            loopback &= (ip >> 24) == 127;
        } else if (p->ai_family == AF_INET6) {
            loopback &= IN6_IS_ADDR_LOOPBACK(&((struct sockaddr_in6 *)p->ai_addr)->sin6_addr);
        } else {
            loopback = 0;
        }
    }
    if (!loopback && !*srv->cfg.api_keys) {
        freeaddrinfo(ai);
        return doc_errf(err, DOC_EINVAL,
                        "[daemon] http: %s is not a loopback address: serving it needs "
                        "[daemon] api_keys (every TCP request then carries one)",
                        host);
    }
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;
    if (fd < 0) {
        freeaddrinfo(ai);
        return doc_errf(err, DOC_EIO, "socket: %s", strerror(errno));
    }
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, 128) != 0) {
        int rc = doc_errf(err, DOC_EIO, "[daemon] http: %s: %s", srv->cfg.http_addr, strerror(errno));
        close(fd);
        freeaddrinfo(ai);
        return rc;
    }
    freeaddrinfo(ai);
    *out = fd;
    return DOC_OK;
}

static int open_everything(dd_server *srv, doc_err *err)
{
    llm_opts lo, go;
    llm_remote_opts lro, gro;
    llm_opts_from_config(&srv->cfg, LLM_ENCODER, &lo, &lro);
    llm_opts_from_config(&srv->cfg, LLM_DECODER, &go, &gro);
    int rc;
    if ((rc = llm_model_open(srv->cfg.embedder, &lo, &srv->embedder, err)))
        return doc_errprefix(err, "embedder"), rc;
    if (llm_model_kind(srv->embedder) != LLM_ENCODER)
        return doc_errf(err, DOC_EINVAL, "embedder %s: not an encoder model", srv->cfg.embedder);
    /* [daemon] generators instances, the CPU threads shared out between them
     * (each answer runs on its own instance, and they run at once) */
    int n = srv->cfg.generators > 0 ? srv->cfg.generators : 1;
    long cpus = srv->cfg.threads > 0 ? srv->cfg.threads : sysconf(_SC_NPROCESSORS_ONLN);
    go.n_threads = cpus / n > 1 ? (int)(cpus / n) : 1;
    for (int i = 0; i < n; i++) {
        if ((rc = llm_model_open(srv->cfg.generator, &go, &srv->generators[i], err)))
            return doc_errprefix(err, "generator"), rc;
        srv->n_generators++;
        if (llm_model_kind(srv->generators[i]) != LLM_DECODER)
            return doc_errf(err, DOC_EINVAL, "generator %s: not a decoder model", srv->cfg.generator);
        /* [daemon] parallel answers share the instance, their steps batched */
        if ((rc = llm_model_set_parallel(srv->generators[i], srv->cfg.parallel, err)))
            return doc_errprefix(err, "generator"), rc;
    }
    srv->generator = srv->generators[0];
    if ((rc = prompt_set_load(srv->cfg.prompts_dir, &srv->prompts, err))) return rc;
    char name[256], sha[65];
    if ((rc = ing_embedder_identity(llm_model_source(srv->embedder), name, sha, err))) return rc;
    idx_opts io = {.data_dir = srv->cfg.data_dir, .embedder_name = name, .embedder_sha256 = sha,
                   .dim = llm_embed_dim(srv->embedder), .hnsw_threshold = srv->cfg.hnsw_threshold,
                   .hnsw_factory = srv->cfg.hnsw_factory, .hnsw_ef_search = srv->cfg.hnsw_ef_search};
    if ((rc = idx_open(&io, &srv->store, err))) return rc;
    /* a fresh store gets its default collection, readable by everyone who can
     * reach the socket (the socket's mode and group are the gate) */
    int64_t id;
    if (idx_collection_ensure(srv->store, "default", "*", &id))
        return doc_errf(err, DOC_EIO, "store: %s", idx_errmsg(srv->store));
    return DOC_OK;
}

int main(int argc, char **argv)
{
    log_init();
    log_set_filter(rag_log_filter, NULL);
    enum { O_CONFIG = 1000, O_SOCKET, O_DATA, O_CHECK, O_HTTP, O_EMBEDDER, O_GENERATOR, O_BACKEND };
    static const struct option lo[] = {
        {"config", required_argument, 0, O_CONFIG}, {"socket", required_argument, 0, O_SOCKET},
        {"data", required_argument, 0, O_DATA},     {"check-config", no_argument, 0, O_CHECK},
        {"http", required_argument, 0, O_HTTP},
        {"embedder", required_argument, 0, O_EMBEDDER},
        {"generator", required_argument, 0, O_GENERATOR},
        {"backend", required_argument, 0, O_BACKEND},
        {"help", no_argument, 0, 'h'},              {0, 0, 0, 0}};
    const char *config = NULL, *sock = NULL, *data = NULL, *http = NULL, *over[32];
    const char *embedder = NULL, *generator = NULL, *backend = NULL;
    int n_over = 0, check = 0, c;
    while ((c = getopt_long(argc, argv, "o:h", lo, NULL)) != -1) {
        switch (c) {
        case O_CONFIG: config = optarg; break;
        case O_SOCKET: sock = optarg; break;
        case O_DATA: data = optarg; break;
        case O_CHECK: check = 1; break;
        case O_HTTP: http = optarg; break;
        case O_EMBEDDER: embedder = optarg; break;
        case O_GENERATOR: generator = optarg; break;
        case O_BACKEND: backend = optarg; break;
        case 'o':
            if (n_over == 32) return fputs("docentd: at most 32 -o options\n", stderr), 2;
            over[n_over++] = optarg;
            break;
        case 'h': return fputs(usage, stdout), 0;
        default: return fputs(usage, stderr), 2;
        }
    }
    if (optind != argc) return fputs(usage, stderr), 2;

    /* every streamed answer runs on a thread of its own, and glibc gives new
     * threads malloc arenas that keep their freed memory: bench/daemon.sh saw
     * RSS climb 379 -> 629 MiB over three rounds of 8 concurrent answers, flat
     * at ~385 MiB with one arena.  With two: 379 MiB after the same three
     * rounds (VmHWM 487 MiB, was 720). */
    mallopt(M_ARENA_MAX, 2);
    dd_server *srv = calloc(1, sizeof *srv);
    doc_err e = {0};
    int fd = -1, tcp_fd = -1, rc = 1, activated = 0;
    if (!srv) return 1;
    srv->args = (dd_args){.config = config, .n_over = n_over, .sock = sock, .data = data,
                          .http = http, .embedder = embedder, .generator = generator,
                          .backend = backend};
    memcpy(srv->args.over, over, (size_t)n_over * sizeof *over);
    if (dd_load_config(&srv->args, &srv->cfg, &e)) goto fail_early;
    /* the config checked generators x parallel <= 64 */
    dd_server_init(srv, srv->cfg.generators * srv->cfg.parallel);
    if (rag_opts_from_config(&srv->cfg, &srv->opts, &e)) goto fail;
    if (check) {
        prompt_set *p = NULL;
        if (prompt_set_load(srv->cfg.prompts_dir, &p, &e)) goto fail;
        prompt_set_free(&p);
        const char *files[] = {srv->cfg.embedder, srv->cfg.generator};
        for (int i = 0; i < 2; i++)
            if (strncmp(files[i], "http://", 7) && strncmp(files[i], "https://", 8) &&
                !file_exists(files[i])) {
                doc_errf(&e, DOC_ENOTFOUND, "[models] %s: %s does not exist",
                         i ? "generator" : "embedder", files[i]);
                goto fail;
            }
        if (dd_watch_check(srv, &e)) goto fail;
        printf("docentd: %s: fine\n", *srv->cfg.path ? srv->cfg.path : "built-in defaults");
        rc = 0;
        goto done;
    }
    srv->self_uid = getuid();
    struct sigaction sa = {0};
    sa.sa_handler = on_stop;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sa.sa_handler = on_hup;
    sigaction(SIGHUP, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    /* socket activation first: systemd's socket, else our own */
    if ((activated = dd_listen_fd(&fd, &e)) < 0) goto fail;
    if (open_everything(srv, &e)) goto fail;
    if (!activated && open_socket(srv, &fd, &e)) goto fail;
    if (*srv->cfg.http_addr && open_tcp(srv, &tcp_fd, &e)) goto fail;
    srv->started = time_now();
    fprintf(stderr, "docentd: serving %s on %s (pid %d)\n", srv->cfg.data_dir,
            activated ? "the socket systemd passed" : srv->cfg.socket_path, (int)getpid());
    dd_notify("READY=1"); /* failures are the manager's business, not fatal */
    if (tcp_fd >= 0) fprintf(stderr, "docentd: and on http://%s\n", srv->cfg.http_addr);
    if (dd_watch_start(srv, &e)) goto fail;
    if (dd_serve(srv, fd, tcp_fd, &g_stop, &g_hup, &e)) goto fail;
    dd_notify("STOPPING=1");
    fprintf(stderr, "docentd: stopped\n");
    rc = 0;
    goto done;
fail:
    fprintf(stderr, "docentd: %s\n", e.msg[0] ? e.msg : doc_strerror(e.rc));
    rc = 1;
done:
    if (tcp_fd >= 0) close(tcp_fd);
    if (fd >= 0) {
        close(fd);
        if (!activated) unlink(srv->cfg.socket_path); /* systemd owns an activated one */
    }
    /* streamed answers still running see srv->stopping and end within a
     * token; wait for the last one before closing what they use */
    srv->stopping = 1;
    pthread_mutex_lock(&srv->stats);
    while (srv->producers > 0) pthread_cond_wait(&srv->producers_done, &srv->stats);
    pthread_mutex_unlock(&srv->stats);
    idx_close(&srv->store);
    llm_model_close(&srv->embedder);
    prompt_set_free(&srv->prompts);
    for (int i = 0; i < srv->n_generators; i++) llm_model_close(&srv->generators[i]);
    srv->generator = NULL;
    dd_server_destroy(srv);
    for (int i = 0; i < DD_JOBS; i++) json_decref(srv->jobs[i].notes);
    free(srv);
    return rc;
fail_early: /* before dd_server_init: nothing to undo */
    fprintf(stderr, "docentd: %s\n", e.msg[0] ? e.msg : doc_strerror(e.rc));
    free(srv);
    return 1;
}
