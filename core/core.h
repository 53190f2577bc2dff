/*
 * core.h - docent's bottom layer: status codes, error text, logging, capped
 * growable buffers, an arena, whole-file read / mmap / atomic write, and a
 * persistent thread pool.
 *
 * Everything above core uses these instead of raw libc where it matters:
 * errors are values (0 ok, negative DOC_E* codes), never exits; memory fed by
 * untrusted input is capped; handles live in contexts, not globals.  The only
 * process-wide state here is the log threshold, set once by main().
 */
#ifndef DOCENT_CORE_H
#define DOCENT_CORE_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

/* ---- status codes ------------------------------------------------------ */

enum {
    DOC_OK = 0,
    DOC_EINVAL = -1,       /* bad argument or bad input value */
    DOC_ENOMEM = -2,       /* allocation failed */
    DOC_EIO = -3,          /* read/write/open failed (errno in the message) */
    DOC_EFORMAT = -4,      /* malformed file or data */
    DOC_ELIMIT = -5,       /* a configured or structural cap was reached */
    DOC_ENOTFOUND = -6,    /* a named thing does not exist */
    DOC_EUNSUPPORTED = -7, /* well-formed, but a feature docent lacks */
    DOC_ECANCELLED = -8,   /* the caller asked to stop */
    DOC_ESTATE = -9,       /* call not valid in the object's state */
    DOC_EDEVICE = -10,     /* accelerator missing or failed */
};

/* doc_strerror: a short constant name for a status code ("invalid argument"). */
const char *doc_strerror(int rc);

/*
 * doc_err: where a fallible call that has no long-lived object yet (an open,
 * a load) leaves its message.  Messages are lower-case, name the offending
 * value (file, tensor, offset, field) and carry no trailing newline.
 */
typedef struct doc_err {
    int rc;
    char msg[512];
} doc_err;

/* doc_errf: record rc and a formatted message in e (e may be NULL); returns rc
 * so callers can write `return doc_errf(err, DOC_EFORMAT, "...", ...);`. */
int doc_errf(doc_err *e, int rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* doc_errprefix: prepend "prefix: " to an existing message (for context). */
void doc_errprefix(doc_err *e, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* ---- logging ----------------------------------------------------------- */

enum { LOG_ERROR = 0, LOG_WARN = 1, LOG_INFO = 2, LOG_DEBUG = 3 };

/* log_level / log_set_level: the threshold; messages above it cost one
 * comparison.  Default LOG_WARN; DOCENT_LOG=debug|info|warn|error overrides
 * at the first call of log_init(). */
int log_level(void);
void log_set_level(int level);
void log_init(void);
void log_write(int level, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* log_filter_fn: rewrite one formatted log message in[0..n) into out (cap
 * bytes, NUL-terminated); 0 on success, else the line is withheld.  Programs
 * install the PII/secret redactor (rag_log_filter) so logs never carry what
 * answers may not. */
typedef int (*log_filter_fn)(void *ctx, const char *in, size_t n, char *out, size_t cap);
/* log_set_filter: set once at start, before threads; NULL removes it. */
void log_set_filter(log_filter_fn fn, void *ctx);

#define LOG(lvl, ...)                                                    \
    do {                                                                 \
        if ((lvl) <= log_level()) log_write((lvl), __FILE__, __LINE__, __VA_ARGS__); \
    } while (0)
#define log_error(...) LOG(LOG_ERROR, __VA_ARGS__)
#define log_warn(...) LOG(LOG_WARN, __VA_ARGS__)
#define log_info(...) LOG(LOG_INFO, __VA_ARGS__)
#define log_debug(...) LOG(LOG_DEBUG, __VA_ARGS__)

/* ---- capped growable buffer ------------------------------------------- */

/*
 * buf: bytes with a hard cap.  data is always NUL-terminated (the NUL is not
 * counted in len), so a buf can be used as a C string.  Appends that would
 * pass max return DOC_ELIMIT and leave the buffer unchanged.
 */
typedef struct buf {
    char *data;
    size_t len, cap, max;
} buf;

void buf_init(buf *b, size_t max); /* max 0 means SIZE_MAX/2 */
int buf_reserve(buf *b, size_t extra);
int buf_append(buf *b, const void *p, size_t n);
int buf_puts(buf *b, const char *s);
int buf_putc(buf *b, int c);
int buf_printf(buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int buf_vprintf(buf *b, const char *fmt, va_list ap);
void buf_reset(buf *b); /* len = 0, memory kept */
void buf_free(buf *b);  /* releases memory; the buf may be reused after buf_init */
/* buf_steal: hand data to the caller (free with free()); the buf is emptied. */
char *buf_steal(buf *b, size_t *len);

/* ---- arena ------------------------------------------------------------- */

/*
 * arena: bump allocator over a chain of blocks, freed all at once.  For
 * per-request scratch and for long-lived tables built once (vocabularies).
 * A cap on total bytes makes allocations fail with NULL past it.
 */
typedef struct arena_block arena_block;
typedef struct arena {
    arena_block *head;
    size_t block_size, used, max;
} arena;

void arena_init(arena *a, size_t block_size, size_t max);
void *arena_alloc(arena *a, size_t size, size_t align);   /* NULL on failure */
void *arena_zalloc(arena *a, size_t size, size_t align);  /* zeroed */
char *arena_strndup(arena *a, const char *s, size_t n);
void arena_reset(arena *a); /* keeps one block for reuse */
void arena_free(arena *a);

/* ---- files ------------------------------------------------------------- */

/* file_read_all: read a whole file (at most max bytes, else DOC_ELIMIT) into a
 * malloc'd NUL-terminated buffer.  Caller frees *data with free(). */
int file_read_all(const char *path, size_t max, char **data, size_t *len, doc_err *err);

/* file_map: map a file read-only.  The mapping lives until file_unmap. */
typedef struct file_map {
    const uint8_t *data;
    size_t size;
} file_map;
int file_map_open(const char *path, file_map *m, doc_err *err);
void file_map_close(file_map *m); /* accepts a zeroed map */

/* file_write_atomic: write to path.tmp.<pid>, fsync, rename over path,
 * fsync the directory.  Readers see the old or the new file, never a mix. */
int file_write_atomic(const char *path, const void *data, size_t len, doc_err *err);
/* file_each_block: read path sequentially and hand each block (up to 1 MiB,
 * borrowed for the call) to fn: hashing a file without holding it. */
int file_each_block(const char *path, void (*fn)(void *ctx, const void *p, size_t n), void *ctx,
                    doc_err *err);

/* file_exists / file_is_dir: 1 or 0. */
int file_exists(const char *path);
int file_is_dir(const char *path);

/* path_join: dir + "/" + name into out (cap bytes); DOC_ELIMIT if too long. */
int path_join(char *out, size_t cap, const char *dir, const char *name);

/* ---- time -------------------------------------------------------------- */

double time_now(void); /* monotonic seconds */

/* ---- thread pool ------------------------------------------------------- */

/*
 * pool: n persistent threads (the caller counts as thread 0).  pool_run runs
 * fn(ctx, ith, nth) once for each share ith < nth (nth = n), each on whichever
 * thread claims it first (the caller runs the shares no worker has started, so
 * a descheduled worker costs no wait), and returns when all have finished;
 * shares running at the same time have distinct ith.  Workers
 * spin briefly between jobs, then sleep, so back-to-back small jobs (one
 * matmul per layer per token) do not pay a wake-up each.  One pool_run at a
 * time per pool (not re-entrant); the pool itself is owned by one model/user.
 */
typedef struct pool pool;
typedef void (*pool_fn)(void *ctx, int ith, int nth);

int pool_new(int nthreads, pool **out); /* nthreads <= 0: online CPUs */
int pool_size(const pool *p);
void pool_run(pool *p, pool_fn fn, void *ctx);
void pool_free(pool **p);

/* cpu_count: online CPUs (at least 1). */
int cpu_count(void);

/* ---- UTF-8 ------------------------------------------------------------- */

/* utf8_valid: 1 if s[0..n) is well-formed UTF-8 (no overlongs, surrogates). */
int utf8_valid(const char *s, size_t n);
/* utf8_decode: decode one code point at s (n bytes left); returns its length
 * (1..4) and stores it in *cp, or returns 0 on an invalid sequence. */
int utf8_decode(const char *s, size_t n, uint32_t *cp);
/* utf8_encode: write cp to out (4 bytes room); returns length, 0 if invalid. */
int utf8_encode(uint32_t cp, char *out);

/* ---- half floats ------------------------------------------------------- */

float f16_to_f32(uint16_t h);
uint16_t f32_to_f16(float f);
float bf16_to_f32(uint16_t h);
uint16_t f32_to_bf16(float f);

/* ---- hashes (hash.c wraps xxHash; sha256.c is FIPS 180-4) --------------- */

/* hash64: xxh64 of p[0..n) with seed 0 (content fingerprints, file checksums). */
uint64_t hash64(const void *p, size_t n);
/* hash64_file: xxh64 of a whole file, streamed; DOC_EIO names the file. */
int hash64_file(const char *path, uint64_t *out, doc_err *err);

typedef struct sha256_ctx {
    uint32_t h[8];
    uint64_t n;          /* bytes so far */
    unsigned char blk[64];
} sha256_ctx;
void sha256_init(sha256_ctx *c);
void sha256_update(sha256_ctx *c, const void *p, size_t n);
void sha256_final(sha256_ctx *c, unsigned char out[32]);
/* sha256_file_hex: lower-case hex digest (65 bytes with NUL) of a file. */
int sha256_file_hex(const char *path, char out[65], doc_err *err);

#endif
