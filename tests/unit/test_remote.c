/*
 * test_remote.c - remote models (llm/remote.c) against real peers on
 * loopback: tests/remote_faults.py, a small OpenAI-compatible server started
 * here as a child process, produces each fault on demand (429 then 200,
 * always 500, malformed JSON and SSE, a stream cut or killed mid-answer, a
 * slow first byte, 401, 404 model, embeddings of the wrong count or
 * dimension), HTTPS with a self-signed certificate.  Also: a port nobody
 * listens on, and an unresolvable host
 * (.invalid is reserved, RFC 2606).  Each check names the error code and the
 * words of its message; request counts come from the server's own /stats.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <math.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <curl/curl.h>

#include "core/json.h"
#include "ingest/ingest.h"
#include "llm/llm.h"
#include "testutil.h"

typedef struct server {
    pid_t pid;
    int port;
} server;

static int server_start_args(server *s, const char *cert, const char *key);

static int server_start(server *s)
{
    return server_start_args(s, NULL, NULL);
}

/* server_start_args: with cert and key, the server speaks HTTPS */
static int server_start_args(server *s, const char *cert, const char *key)
{
    int fd[2];
    if (pipe(fd)) return -1;
    s->pid = fork();
    if (s->pid < 0) return -1;
    if (s->pid == 0) {
        dup2(fd[1], 1);
        close(fd[0]);
        close(fd[1]);
        if (cert) execlp("python3", "python3", "tests/remote_faults.py", "--tls", cert, key, (char *)NULL);
        else execlp("python3", "python3", "tests/remote_faults.py", (char *)NULL);
        _exit(127);
    }
    close(fd[1]);
    char line[32] = "";
    FILE *f = fdopen(fd[0], "r");
    if (!f || !fgets(line, sizeof line, f)) return -1;
    fclose(f);
    s->port = atoi(line);
    return s->port > 0 ? 0 : -1;
}

static void server_stop(server *s)
{
    if (s->pid > 0) {
        kill(s->pid, SIGKILL);
        waitpid(s->pid, NULL, 0);
        s->pid = 0;
    }
}

static server srv; /* the shared fault server (started in the group setup) */

static void url(char *out, size_t cap, const char *mode, const char *model)
{
    snprintf(out, cap, "http://127.0.0.1:%d/%s/v1%s%s", srv.port, mode, model ? "#" : "",
             model ? model : "");
}

/* the server's own count for a mode, through libcurl */
static size_t grab(char *p, size_t sz, size_t n, void *ud)
{
    buf *b = ud;
    buf_append(b, p, sz * n);
    return sz * n;
}

static long long stats(const char *mode, const char *key)
{
    char u[256];
    snprintf(u, sizeof u, "http://127.0.0.1:%d/stats/%s", srv.port, mode);
    buf b;
    buf_init(&b, 0);
    CURL *h = curl_easy_init();
    curl_easy_setopt(h, CURLOPT_URL, u);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, grab);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &b);
    long long v = -1;
    if (curl_easy_perform(h) == CURLE_OK) {
        json_error_t je;
        json_t *o = json_loadb(b.data, b.len, 0, &je);
        v = json_int_or(o, key, -1);
        json_decref(o);
    }
    curl_easy_cleanup(h);
    buf_free(&b);
    return v;
}

static llm_remote_opts fast(void)
{
    llm_remote_opts r = {.timeout_s = 10, .connect_timeout_s = 5, .retries = 2, .backoff_ms = 10};
    return r;
}

static int open_remote(const char *u, int kind, const llm_remote_opts *ro, llm_model **m, doc_err *e)
{
    llm_opts o = {.want_kind = kind, .remote = ro, .batch = 3};
    return llm_model_open(u, &o, m, e);
}

typedef struct sink {
    buf text;
    int calls, cancel_after;
    pid_t kill_pid;
} sink;

static int on_text(void *ud, const char *t, size_t n)
{
    sink *k = ud;
    buf_append(&k->text, t, n);
    k->calls++;
    if (k->kill_pid > 0) {
        kill(k->kill_pid, SIGKILL);
        k->kill_pid = 0;
    }
    return k->cancel_after && k->calls >= k->cancel_after;
}

static const llm_chat_msg msgs[] = {{"system", "Answer from the sources."}, {"user", "What is up?"}};

static int chat(llm_model *m, sink *k, llm_gen_stats *st, doc_err *e)
{
    llm_sampling s;
    llm_sampling_default(&s);
    buf_init(&k->text, 0);
    return llm_generate_chat(m, msgs, 2, &s, on_text, k, st, e);
}

/* ---- the good path ------------------------------------------------------------ */

static void test_chat_stream(void **state)
{
    (void)state;
    char u[256];
    url(u, sizeof u, "ok", NULL); /* no #MODEL: the first of GET /models */
    llm_remote_opts ro = fast();
    llm_model *m = NULL;
    doc_err e = {0};
    assert_int_equal(open_remote(u, LLM_DECODER, &ro, &m, &e), 0);
    assert_true(llm_model_is_remote(m));
    assert_int_equal(llm_model_kind(m), LLM_DECODER);
    assert_non_null(strstr(llm_model_desc(m), "model fake-chat"));
    assert_int_equal(llm_n_ctx(m), 4096);
    sink k = {0};
    llm_gen_stats st;
    assert_int_equal(chat(m, &k, &st, &e), 0);
    buf_putc(&k.text, 0);
    assert_string_equal(k.text.data, "Hello world. [1]");
    assert_int_equal(k.calls, 3); /* streamed: one callback per piece */
    assert_int_equal(st.stop_reason, LLM_STOP_EOS);
    assert_int_equal(st.n_prompt, 17); /* the server's usage */
    assert_int_equal(st.n_gen, 5);
    buf_free(&k.text);

    /* token-level calls are refused, never crash */
    int32_t *ids = NULL;
    int n = 0;
    assert_int_equal(llm_tokenize(m, "abc", 3, 0, 0, &ids, &n, &e), DOC_EUNSUPPORTED);
    llm_session *sess = NULL;
    assert_int_equal(llm_session_new(m, &sess, &e), DOC_EUNSUPPORTED);
    assert_int_equal(llm_generate(m, "hi", NULL, NULL, NULL, NULL, &e), DOC_EUNSUPPORTED);
    float v[8];
    const char *in[] = {"x"};
    assert_int_equal(llm_embed(m, in, 1, v, NULL, &e), DOC_ESTATE);
    /* counting: the estimate ceil(bytes / 3) */
    assert_int_equal(llm_count_tokens(m, "abcdefg", 7, &n, &e), 0);
    assert_int_equal(n, 3);
    llm_model_close(&m);

    /* the same through a server that ignores stream: true */
    url(u, sizeof u, "plain", "fake-chat");
    assert_int_equal(open_remote(u, LLM_DECODER, &ro, &m, &e), 0);
    assert_int_equal(chat(m, &k, &st, &e), 0);
    buf_putc(&k.text, 0);
    assert_string_equal(k.text.data, "Plain answer. [1]");
    assert_int_equal(st.n_prompt, 11);
    buf_free(&k.text);
    llm_model_close(&m);
}

static void test_stop_string_and_cancel(void **state)
{
    (void)state;
    char u[256];
    url(u, sizeof u, "long", "fake-chat");
    llm_remote_opts ro = fast();
    llm_model *m = NULL;
    doc_err e = {0};
    assert_int_equal(open_remote(u, LLM_DECODER, &ro, &m, &e), 0);
    sink k = {.cancel_after = 3};
    llm_gen_stats st;
    assert_int_equal(chat(m, &k, &st, &e), 0);
    assert_int_equal(st.stop_reason, LLM_STOP_CANCELLED);
    assert_int_equal(k.calls, 3);
    buf_free(&k.text);
    /* a stop string is applied here too: "word word " then the stop "word w" */
    llm_sampling s;
    llm_sampling_default(&s);
    const char *stop[] = {"d word w"};
    s.stop = stop;
    s.n_stop = 1;
    sink k2 = {0};
    buf_init(&k2.text, 0);
    assert_int_equal(llm_generate_chat(m, msgs, 2, &s, on_text, &k2, &st, &e), 0);
    buf_putc(&k2.text, 0);
    assert_string_equal(k2.text.data, "wor");
    assert_int_equal(st.stop_reason, LLM_STOP_STRING);
    buf_free(&k2.text);
    llm_model_close(&m);
}

static void test_embeddings(void **state)
{
    (void)state;
    char u[256];
    url(u, sizeof u, "ok", NULL); /* fake-chat will not embed: fake-embed is taken */
    llm_remote_opts ro = fast();
    llm_model *m = NULL;
    doc_err e = {0};
    assert_int_equal(open_remote(u, LLM_ENCODER, &ro, &m, &e), 0);
    assert_int_equal(llm_model_kind(m), LLM_ENCODER);
    assert_int_equal(llm_embed_dim(m), 8);
    assert_non_null(strstr(llm_model_desc(m), "fake-embed"));
    long long before = stats("ok", "requests");
    const char *in[] = {"a", "bb", "ccc", "dddd", "eeeee", "ffffff", "a"};
    float v[7 * 8];
    assert_int_equal(llm_embed(m, in, 7, v, NULL, &e), 0);
    assert_int_equal(stats("ok", "requests") - before, 3); /* batches of 3 */
    for (int i = 0; i < 7; i++) {
        double ss = 0;
        for (int j = 0; j < 8; j++) ss += v[i * 8 + j] * v[i * 8 + j];
        assert_true(fabs(ss - 1) < 1e-5);
    }
    assert_true(fabs(v[0] - v[6 * 8]) < 1e-6); /* the same text, the same vector */
    assert_true(fabs(v[8 + 1] - v[2 * 8 + 1]) > 1e-4); /* "bb" and "ccc" are not */
    /* the identity the store records */
    char name[256], sha[65];
    assert_int_equal(ing_embedder_identity(llm_model_source(m), name, sha, &e), 0);
    assert_string_equal(name, "remote:fake-embed");
    char want_src[300];
    url(want_src, sizeof want_src, "ok", "fake-embed");
    assert_string_equal(llm_model_source(m), want_src);
    sha256_ctx c;
    unsigned char d[32];
    char hex[65];
    sha256_init(&c);
    sha256_update(&c, want_src, strlen(want_src));
    sha256_final(&c, d);
    for (int i = 0; i < 32; i++) snprintf(hex + 2 * i, 3, "%02x", d[i]);
    assert_string_equal(sha, hex);
    volatile int cancel = 1;
    assert_int_equal(llm_embed(m, in, 7, v, &cancel, &e), DOC_ECANCELLED);
    llm_model_close(&m);
}

/* ---- faults ----------------------------------------------------------------------- */

static void test_retry_429_then_ok(void **state)
{
    (void)state;
    char u[256];
    url(u, sizeof u, "r429", "fake-chat");
    llm_remote_opts ro = fast();
    llm_model *m = NULL;
    doc_err e = {0};
    assert_int_equal(open_remote(u, LLM_DECODER, &ro, &m, &e), 0);
    sink k = {0};
    llm_gen_stats st;
    assert_int_equal(chat(m, &k, &st, &e), 0);
    assert_int_equal(stats("r429", "requests"), 3); /* 429, 429, 200 */
    buf_putc(&k.text, 0);
    assert_string_equal(k.text.data, "Hello world. [1]");
    buf_free(&k.text);
    llm_model_close(&m);
}

static void test_500_after_retries_masks_key(void **state)
{
    (void)state;
    char u[256];
    url(u, sizeof u, "r500", "fake-chat");
    llm_remote_opts ro = fast();
    ro.api_key = "topsecret-key-123";
    llm_model *m = NULL;
    doc_err e = {0};
    assert_int_equal(open_remote(u, LLM_DECODER, &ro, &m, &e), 0);
    sink k = {0};
    llm_gen_stats st;
    assert_int_equal(chat(m, &k, &st, &e), DOC_EIO);
    assert_int_equal(stats("r500", "requests"), 3); /* 1 + 2 retries */
    assert_non_null(strstr(e.msg, "HTTP 500 after 3 attempts"));
    assert_non_null(strstr(e.msg, "boom"));      /* the server's words are quoted... */
    assert_null(strstr(e.msg, "topsecret"));     /* ...with the key masked */
    assert_non_null(strstr(e.msg, "127.0.0.1")); /* and the URL named */
    assert_int_equal(k.calls, 0);
    buf_free(&k.text);
    llm_model_close(&m);
}

static void test_malformed(void **state)
{
    (void)state;
    char u[256];
    url(u, sizeof u, "badjson", "fake-chat");
    llm_remote_opts ro = fast();
    llm_model *m = NULL;
    doc_err e = {0};
    assert_int_equal(open_remote(u, LLM_DECODER, &ro, &m, &e), 0);
    sink k = {0};
    llm_gen_stats st;
    assert_int_equal(chat(m, &k, &st, &e), DOC_EFORMAT);
    assert_non_null(strstr(e.msg, "malformed event"));
    assert_non_null(strstr(e.msg, "{this is not json"));
    buf_free(&k.text);
    llm_model_close(&m);
    /* embeddings: the probe at open */
    url(u, sizeof u, "badjson", "fake-embed");
    assert_int_equal(open_remote(u, LLM_ENCODER, &ro, &m, &e), DOC_EFORMAT);
    assert_null(m);
    assert_non_null(strstr(e.msg, "malformed JSON reply"));
    assert_non_null(strstr(e.msg, "{oops"));
}

static void test_cut_mid_stream(void **state)
{
    (void)state;
    char u[256];
    url(u, sizeof u, "cut", "fake-chat");
    llm_remote_opts ro = fast();
    llm_model *m = NULL;
    doc_err e = {0};
    assert_int_equal(open_remote(u, LLM_DECODER, &ro, &m, &e), 0);
    long long before = stats("cut", "requests");
    sink k = {0};
    llm_gen_stats st;
    assert_int_equal(chat(m, &k, &st, &e), DOC_EIO);
    assert_int_equal(st.stop_reason, LLM_STOP_INCOMPLETE);
    assert_non_null(strstr(e.msg, "incomplete"));
    buf_putc(&k.text, 0);
    assert_string_equal(k.text.data, "Hello wor"); /* what came, forwarded */
    assert_int_equal(stats("cut", "requests") - before, 1); /* never retried after text */
    buf_free(&k.text);
    llm_model_close(&m);
}

static void test_server_killed_mid_stream(void **state)
{
    (void)state;
    server own;
    assert_int_equal(server_start(&own), 0);
    char u[256];
    snprintf(u, sizeof u, "http://127.0.0.1:%d/hang/v1#fake-chat", own.port);
    llm_remote_opts ro = fast();
    llm_model *m = NULL;
    doc_err e = {0};
    assert_int_equal(open_remote(u, LLM_DECODER, &ro, &m, &e), 0);
    sink k = {.kill_pid = own.pid}; /* the first text kills the server process */
    llm_gen_stats st;
    assert_int_equal(chat(m, &k, &st, &e), DOC_EIO);
    assert_int_equal(st.stop_reason, LLM_STOP_INCOMPLETE);
    assert_non_null(strstr(e.msg, "incomplete"));
    buf_putc(&k.text, 0);
    assert_string_equal(k.text.data, "Hello ");
    buf_free(&k.text);
    llm_model_close(&m);
    waitpid(own.pid, NULL, 0);
}

static void test_timeout_auth_404(void **state)
{
    (void)state;
    char u[256];
    llm_remote_opts ro = fast();
    ro.timeout_s = 1;
    llm_model *m = NULL;
    doc_err e = {0};
    sink k = {0};
    llm_gen_stats st;
    url(u, sizeof u, "slow", "fake-chat");
    assert_int_equal(open_remote(u, LLM_DECODER, &ro, &m, &e), 0);
    double t0 = time_now();
    assert_int_equal(chat(m, &k, &st, &e), DOC_EIO);
    assert_true(time_now() - t0 < 2.5); /* not retried */
    assert_non_null(strstr(e.msg, "timed out"));
    buf_free(&k.text);
    llm_model_close(&m);

    ro = fast();
    url(u, sizeof u, "auth", "fake-chat");
    assert_int_equal(open_remote(u, LLM_DECODER, &ro, &m, &e), 0);
    assert_int_equal(chat(m, &k, &st, &e), DOC_EIO);
    assert_non_null(strstr(e.msg, "refused the API key (HTTP 401"));
    buf_free(&k.text);
    llm_model_close(&m);
    /* the key from the environment variable the config names */
    setenv("TEST_REMOTE_KEY", "sekrit", 1);
    ro.api_key_env = "TEST_REMOTE_KEY";
    assert_int_equal(open_remote(u, LLM_DECODER, &ro, &m, &e), 0);
    assert_int_equal(chat(m, &k, &st, &e), 0);
    buf_free(&k.text);
    llm_model_close(&m);
    ro.api_key_env = "TEST_REMOTE_KEY_UNSET";
    assert_int_equal(open_remote(u, LLM_DECODER, &ro, &m, &e), DOC_EINVAL);
    assert_non_null(strstr(e.msg, "TEST_REMOTE_KEY_UNSET"));

    ro = fast();
    url(u, sizeof u, "nomodel", "gpt-nope");
    assert_int_equal(open_remote(u, LLM_DECODER, &ro, &m, &e), 0);
    assert_int_equal(chat(m, &k, &st, &e), DOC_ENOTFOUND);
    assert_non_null(strstr(e.msg, "model gpt-nope not found"));
    buf_free(&k.text);
    llm_model_close(&m);
}

static void test_embedding_caps(void **state)
{
    (void)state;
    char u[256];
    llm_remote_opts ro = fast();
    llm_model *m = NULL;
    doc_err e = {0};
    const char *in[] = {"a", "b"};
    float v[16];
    url(u, sizeof u, "count", "fake-embed");
    assert_int_equal(open_remote(u, LLM_ENCODER, &ro, &m, &e), DOC_EFORMAT);
    assert_non_null(strstr(e.msg, "2 vectors for 1 inputs"));
    url(u, sizeof u, "bigdim", "fake-embed");
    assert_int_equal(open_remote(u, LLM_ENCODER, &ro, &m, &e), DOC_EFORMAT);
    assert_non_null(strstr(e.msg, "dimension 70000"));
    url(u, sizeof u, "dim", "fake-embed");
    assert_int_equal(open_remote(u, LLM_ENCODER, &ro, &m, &e), 0);
    assert_int_equal(llm_embed(m, in, 2, v, NULL, &e), DOC_EFORMAT);
    assert_non_null(strstr(e.msg, "vector 1 has dimension 7, expected 8"));
    llm_model_close(&m);
    url(u, sizeof u, "nomodel", "nope-embed");
    assert_int_equal(open_remote(u, LLM_ENCODER, &ro, &m, &e), DOC_ENOTFOUND);
    assert_non_null(strstr(e.msg, "model nope-embed not found"));
}

static void test_unreachable(void **state)
{
    (void)state;
    /* a port nobody listens on: bind one, note it, close it */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof a;
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    getsockname(fd, (struct sockaddr *)&a, &al);
    close(fd);
    char u[256];
    snprintf(u, sizeof u, "http://127.0.0.1:%d/v1", ntohs(a.sin_port));
    llm_remote_opts ro = fast();
    ro.retries = 1;
    llm_model *m = NULL;
    doc_err e = {0};
    assert_int_equal(open_remote(u, LLM_DECODER, &ro, &m, &e), DOC_EIO); /* GET /models at open */
    assert_non_null(strstr(e.msg, "cannot connect"));
    assert_non_null(strstr(e.msg, "after 2 attempts"));
    assert_non_null(strstr(e.msg, u));
    snprintf(u, sizeof u, "http://docent-test.invalid:8000/v1#m");
    ro.retries = 0;
    assert_int_equal(open_remote(u, LLM_ENCODER, &ro, &m, &e), DOC_EIO);
    assert_non_null(strstr(e.msg, "cannot resolve"));
    assert_non_null(strstr(e.msg, "docent-test.invalid"));
    /* a bad URL is refused before any request */
    assert_int_equal(open_remote("http://127.0.0.1:1/v1#", LLM_DECODER, &ro, &m, &e), DOC_EINVAL);
}

/* ---- concurrency ------------------------------------------------------------------- */

typedef struct worker {
    llm_model *m;
    int rc;
    char text[64];
} worker;

static void *work(void *p)
{
    worker *w = p;
    sink k = {0};
    llm_gen_stats st;
    doc_err e = {0};
    w->rc = chat(w->m, &k, &st, &e);
    buf_putc(&k.text, 0);
    snprintf(w->text, sizeof w->text, "%s", k.text.data ? k.text.data : "");
    buf_free(&k.text);
    return NULL;
}

static void test_concurrency_cap(void **state)
{
    (void)state;
    char u[256];
    url(u, sizeof u, "busy", "fake-chat");
    llm_remote_opts ro = fast();
    ro.max_concurrency = 2;
    llm_model *m = NULL;
    doc_err e = {0};
    assert_int_equal(open_remote(u, LLM_DECODER, &ro, &m, &e), 0);
    enum { N = 6 };
    worker w[N];
    pthread_t th[N];
    double t0 = time_now();
    for (int i = 0; i < N; i++) {
        w[i] = (worker){.m = m};
        pthread_create(&th[i], NULL, work, &w[i]);
    }
    for (int i = 0; i < N; i++) pthread_join(th[i], NULL);
    double dt = time_now() - t0;
    for (int i = 0; i < N; i++) {
        assert_int_equal(w[i].rc, 0);
        assert_string_equal(w[i].text, "Hello world. [1]");
    }
    assert_int_equal(stats("busy", "requests"), N);
    assert_int_equal(stats("busy", "max_inflight"), 2); /* the cap held, and was used */
    assert_true(dt >= 0.3 * N / 2 - 0.05);
    llm_model_close(&m);
}

/* ---- counting with a local tokenizer --------------------------------------------------- */

static void test_count_with_tokenizer(void **state)
{
    (void)state;
    char gen[512];
    snprintf(gen, sizeof gen, "%s/smollm2-135m-instruct-q4_1.gguf", test_models_dir());
    if (!file_exists(gen)) {
        printf("%s is missing: counting with a local tokenizer not checked\n", gen);
        skip();
    }
    char u[256];
    url(u, sizeof u, "ok", "fake-chat");
    llm_remote_opts ro = fast();
    ro.tokenizer = gen;
    llm_model *m = NULL, *local = NULL;
    doc_err e = {0};
    assert_int_equal(open_remote(u, LLM_DECODER, &ro, &m, &e), 0);
    llm_opts lo = {.backend = "cpu", .n_threads = 1};
    assert_int_equal(llm_model_open(gen, &lo, &local, &e), 0);
    const char *t = "<|im_start|>user\nHow do I create an index in SQLite?<|im_end|>\n";
    int a = 0, b = 0;
    assert_int_equal(llm_count_tokens(m, t, strlen(t), &a, &e), 0);
    assert_int_equal(llm_count_tokens(local, t, strlen(t), &b, &e), 0);
    assert_int_equal(a, b);
    assert_true(a > 5 && a < (int)strlen(t) / 2);
    llm_model_close(&m);
    llm_model_close(&local);
}

/* TLS: a server whose certificate no CA signed is refused by default, and
 * accepted with that certificate as [remote] ca_file or with verification off */
static void test_tls(void **state)
{
    (void)state;
    char dir[] = "/tmp/docent-tls-XXXXXX", cmd[1024], cert[256], key[256], u[256];
    assert_non_null(mkdtemp(dir));
    snprintf(cert, sizeof cert, "%s/cert.pem", dir);
    snprintf(key, sizeof key, "%s/key.pem", dir);
    snprintf(cmd, sizeof cmd,
             "openssl req -x509 -newkey rsa:2048 -nodes -keyout %s -out %s -days 1 "
             "-subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 >/dev/null 2>&1", key, cert);
    if (system(cmd) != 0) {
        printf("note: openssl could not make a certificate: the TLS checks are skipped\n");
        snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
        assert_int_equal(system(cmd), 0);
        return;
    }
    server tls = {0};
    assert_int_equal(server_start_args(&tls, cert, key), 0);
    snprintf(u, sizeof u, "https://127.0.0.1:%d/ok/v1#fake-chat", tls.port);
    llm_remote_opts ro = fast();
    ro.retries = 0;
    llm_model *m = NULL;
    doc_err e = {0};
    sink k = {0};
    llm_gen_stats st;
    assert_int_equal(open_remote(u, LLM_DECODER, &ro, &m, &e), 0);
    int rc = chat(m, &k, &st, &e);
    buf_free(&k.text);
    assert_int_equal(rc, DOC_EIO);
    assert_non_null(strstr(e.msg, "TLS verification failed"));
    assert_non_null(strstr(e.msg, "ca_file"));
    llm_model_close(&m);
    /* the certificate as the CA: verified */
    ro.ca_file = cert;
    assert_int_equal(open_remote(u, LLM_DECODER, &ro, &m, &e), 0);
    assert_int_equal(chat(m, &k, &st, &e), 0);
    buf_putc(&k.text, 0);
    assert_string_equal(k.text.data, "Hello world. [1]");
    buf_free(&k.text);
    llm_model_close(&m);
    /* verification off (tls_verify = 0): accepted */
    ro.ca_file = NULL;
    ro.tls_insecure = 1;
    assert_int_equal(open_remote(u, LLM_DECODER, &ro, &m, &e), 0);
    assert_int_equal(chat(m, &k, &st, &e), 0);
    buf_free(&k.text);
    llm_model_close(&m);
    server_stop(&tls);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

static int setup(void **state)
{
    (void)state;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    if (system("python3 -c 'import http.server' 2>/dev/null") != 0) {
        printf("skipped: python3 is missing\n");
        exit(77);
    }
    return server_start(&srv);
}

static int teardown(void **state)
{
    (void)state;
    server_stop(&srv);
    return 0;
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_chat_stream),
        cmocka_unit_test(test_stop_string_and_cancel),
        cmocka_unit_test(test_embeddings),
        cmocka_unit_test(test_retry_429_then_ok),
        cmocka_unit_test(test_500_after_retries_masks_key),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_cut_mid_stream),
        cmocka_unit_test(test_server_killed_mid_stream),
        cmocka_unit_test(test_timeout_auth_404),
        cmocka_unit_test(test_embedding_caps),
        cmocka_unit_test(test_unreachable),
        cmocka_unit_test(test_concurrency_cap),
        cmocka_unit_test(test_count_with_tokenizer),
        cmocka_unit_test(test_tls),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
