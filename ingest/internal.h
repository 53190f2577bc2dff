/*
 * ingest/internal.h - declarations shared by the files of ingest/ only.
 *
 * The pipeline (ingest.c) is: walk.c / fetch.c (sources) -> extract_*.c (bytes
 * to structured text, ing_text) -> chunk.c (ing_text to token-budgeted chunks)
 * -> the embedder (llm/) -> the store (index/).  watch.c follows folders with
 * inotify.  Each third-party library is included by its one file here: md4c
 * by extract_md.c, libxml2 by extract_html.c and extract_docx.c, poppler-glib
 * by extract_pdf.c, libzip by extract_docx.c, libcurl by fetch.c.
 */
#ifndef DOCENT_INGEST_INTERNAL_H
#define DOCENT_INGEST_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

#include "core/core.h"

/* ==== structured text (extract.c) ======================================== */

enum {
    ING_BLK_PARA = 0,   /* paragraph or other running text */
    ING_BLK_HEADING,    /* a heading; level 1..6 */
    ING_BLK_LIST,       /* one list item */
    ING_BLK_TABLE,      /* a whole table as text: one row per line, cells separated by " | " */
    ING_BLK_CODE,       /* preformatted text (line breaks kept) */
};

/*
 * ing_block: one structural unit of a document.  Its text is t->text.data[off,
 * off+len): UTF-8, no NUL, whitespace collapsed to single spaces except in
 * CODE and TABLE blocks where '\n' separates lines.  Blocks are stored in
 * document order; consecutive blocks are separated in t->text by "\n\n" (so a
 * range covering several blocks reads naturally).
 */
typedef struct ing_block {
    int kind;
    int level;                /* heading level 1..6 for ING_BLK_HEADING, else 0 */
    int page;                 /* 1-based page (PDF), 0 when the format has none */
    int line_start, line_end; /* 1-based source lines, 0 when unknown */
    size_t off, len;
} ing_block;

typedef struct ing_text {
    buf text;                 /* every block's text, "\n\n" between blocks */
    ing_block *blocks;
    int n_blocks, cap_blocks;
    char *title;              /* malloc'd; NULL when the document has none */
    int n_pages;              /* PDF page count, 0 otherwise */
} ing_text;

/* ing_text_init: an empty text whose buffer is capped at max_bytes (0: 256 MiB). */
void ing_text_init(ing_text *t, size_t max_bytes);
void ing_text_free(ing_text *t);
/* ing_text_add: append a block.  s[0..n) is cleaned first: invalid UTF-8 is
 * replaced by U+FFFD, control characters dropped, and (for PARA, HEADING, LIST)
 * runs of whitespace collapsed to one space and trimmed; an empty result adds
 * nothing and returns 0.  DOC_ELIMIT when the cap is reached. */
int ing_text_add(ing_text *t, int kind, int level, int page, int line_start, int line_end,
                 const char *s, size_t n);
/* ing_text_set_title: replace the title (cleaned as a heading). */
int ing_text_set_title(ing_text *t, const char *s, size_t n);
/* ing_repair_utf8: a malloc'd, NUL-terminated UTF-8 copy of data[0..len) for
 * the text formats: a UTF-8 BOM is dropped, UTF-16 with a BOM is transcoded,
 * input that is not UTF-8 and holds no valid multi-byte UTF-8 sequence is read
 * as Windows-1252 (Latin-1), anything else is copied as is (ing_text_add later
 * turns its bad bytes into U+FFFD).  Line breaks are kept, so line numbers of
 * the copy are those of the input.  Caller frees *out; DOC_ENOMEM. */
int ing_repair_utf8(const char *data, size_t len, char **out, size_t *out_len);

/* ==== formats and extractors (extract.c, extract_*.c) ===================== */

/* An extractor turns a document's bytes into structured text.  name is the
 * file name or URL (for messages).  A document with no text is not an error
 * here: the caller sees t->n_blocks == 0 and reports it.  Errors name the file
 * and, where it helps, the part (page, entry, line). */
typedef int (*ing_extract_fn)(const char *data, size_t len, const char *name, ing_text *t,
                              doc_err *err);

int ing_extract_plain(const char *data, size_t len, const char *name, ing_text *t, doc_err *err);
int ing_extract_markdown(const char *data, size_t len, const char *name, ing_text *t,
                         doc_err *err);
int ing_extract_html(const char *data, size_t len, const char *name, ing_text *t, doc_err *err);
int ing_extract_pdf(const char *data, size_t len, const char *name, ing_text *t, doc_err *err);
int ing_extract_docx(const char *data, size_t len, const char *name, ing_text *t, doc_err *err);

typedef struct ing_format {
    const char *name;         /* "text", "markdown", "html", "pdf", "docx" */
    const char *mime;         /* canonical MIME type */
    ing_extract_fn extract;
} ing_format;

/* ing_format_find: the format named "text", "markdown", "html", "pdf" or
 * "docx"; NULL for another name. */
const ing_format *ing_format_find(const char *name);

/* ing_detect: the format of a document from its content type (may be NULL;
 * parameters such as "; charset=" ignored), its name's extension and its first
 * bytes (magic: "%PDF-", a zip holding word/document.xml, "<!doctype html" /
 * "<html").  NULL when unknown or binary; *why then says what was seen
 * ("unsupported type .png", "binary content"). */
const ing_format *ing_detect(const char *name, const char *content_type, const char *data,
                             size_t len, const char **why);

/* ==== chunking (chunk.c) ================================================== */

/* ing_count_fn: number of tokens the embedder makes of s[0..n) without special
 * tokens; negative DOC_E* on failure. */
typedef int (*ing_count_fn)(void *ctx, const char *s, size_t n);

typedef struct ing_chunk_opts {
    int max_tokens;           /* budget per chunk, counted on the chunk text */
    int overlap_tokens;       /* tokens of the previous chunk repeated at the start
                                 of the next one within a section (0: none) */
} ing_chunk_opts;

typedef struct ing_chunk {
    size_t off, len;          /* the chunk's text is t->text.data[off, off+len) */
    char *heading;            /* malloc'd heading path "H1 > H2 > H3", "" when none */
    int page;                 /* page of the chunk's first block (0: none) */
    int line_start, line_end; /* 1-based source lines covered, 0 when unknown */
    int n_tokens;             /* tokens of the chunk text (count fn) */
} ing_chunk;

/*
 * ing_chunk_text: split t into chunks, structure first.  A chunk never spans
 * two sections (a heading starts a new section; the heading's text is not part
 * of the chunk text but of the heading path of the chunks under it) nor two
 * pages; within a section, whole blocks are packed up to max_tokens; a block
 * larger than the budget is split at sentence ends, a sentence larger than the
 * budget at word boundaries (or, for text without spaces such as CJK, at
 * character boundaries).  Consecutive chunks of one section overlap by about
 * overlap_tokens (whole sentences or words).  *out malloc'd; free with
 * ing_chunks_free.
 * n_tokens is count() of the exact chunk text and never exceeds max_tokens
 * (1..1<<20; overlap held to max_tokens / 2).  DOC_EINVAL for bad options or
 * a block outside the text, DOC_ELIMIT when one character alone counts more
 * than max_tokens, count's own negative code when it fails; on failure *out
 * is NULL and *n 0.  Same input, same chunks.
 */
int ing_chunk_text(const ing_text *t, const ing_chunk_opts *o, ing_count_fn count, void *ctx,
                   ing_chunk **out, int *n, doc_err *err);
void ing_chunks_free(ing_chunk **c, int n);

/* ==== sources: folders (walk.c) ============================================ */

typedef struct ing_walk_opts {
    const char *const *include;   /* fnmatch globs on the file name (basename); */
    int n_include;                /* none: every file */
    const char *const *exclude;   /* globs on the basename or the path relative to */
    int n_exclude;                /* the root; matching directories are not entered */
    int follow_symlinks;          /* follow links (loops detected by dev/inode) */
    int include_hidden;           /* dot files and dot directories (default: skipped) */
} ing_walk_opts;

/* ing_walk_fn: one regular file; path is absolute.  Return non-zero to stop
 * the walk (that value is returned by ing_walk). */
typedef int (*ing_walk_fn)(void *ctx, const char *path, const struct stat *st);

/* ing_walk: every regular file under root (a file or a folder), in sorted order
 * within each folder.  Unreadable folders are reported through warn (may be
 * NULL) and skipped; a symlink loop is skipped with a warning, never followed
 * twice. */
typedef void (*ing_warn_fn)(void *ctx, const char *path, const char *why);
int ing_walk(const char *root, const ing_walk_opts *o, ing_walk_fn fn, ing_warn_fn warn,
             void *ctx, doc_err *err);
/* ing_glob_match: 1 when path (relative) or its basename matches any glob. */
int ing_glob_match(const char *const *globs, int n, const char *relpath);
/* ing_walk_wants: 1 when the walk would take the entry at relpath (relative to
 * the root; the folders above it already taken): for a folder, whether it is
 * entered (not hidden, not excluded); for a file, also whether it matches the
 * include globs.  Shared by walk.c and watch.c so both filter alike. */
int ing_walk_wants(const ing_walk_opts *o, const char *relpath, int is_dir);
/* ing_path_abs: path made absolute (relative to the working directory) and
 * normalised lexically ("//", "." and ".." resolved, no trailing '/') into
 * out[cap]; symlinks are kept as named.  DOC_ELIMIT when it does not fit,
 * DOC_EIO when the working directory cannot be read. */
int ing_path_abs(const char *path, char *out, size_t cap, doc_err *err);

/* ==== sources: URLs (fetch.c) ============================================= */

typedef struct ing_fetch_opts {
    long timeout_s;           /* whole transfer; 0: 60 */
    long connect_timeout_s;   /* 0: 10 */
    size_t max_bytes;         /* body cap; 0: 64 MiB */
    long max_redirects;       /* 0: 5 */
    const volatile int *cancel;
} ing_fetch_opts;

typedef struct ing_fetched {
    char *data;               /* body (malloc'd, NUL-terminated beyond len) */
    size_t len;
    char *content_type;       /* malloc'd or NULL */
    char *final_url;          /* after redirects (malloc'd) */
    long status;              /* HTTP status */
    int64_t mtime;            /* Last-Modified, or 0 */
} ing_fetched;

/* ing_is_url: 1 for "http://..." and "https://...". */
int ing_is_url(const char *s);
/* ing_fetch: GET url.  Errors are clear and name the URL: "http 404 not found",
 * "could not resolve host", "tls: certificate verify failed", "timed out after
 * 60 s", "body larger than 64 MiB", "too many redirects".  On failure *out is
 * zeroed (nothing to free).  Thread-safe: each call has its own curl handle;
 * libcurl's global init runs once per process (pthread_once). */
int ing_fetch(const char *url, const ing_fetch_opts *o, ing_fetched *out, doc_err *err);
void ing_fetched_free(ing_fetched *f);

/* ==== watching folders (watch.c) =========================================== */

typedef struct ing_watch ing_watch;

enum { ING_EV_CHANGED = 1, ING_EV_REMOVED = 2 };
typedef struct ing_event {
    int kind;
    char path[4096];          /* absolute path of the file */
} ing_event;

/* ing_watch_open: watch root (a folder) recursively with inotify; folders
 * created later are added; the walk options filter files as ing_walk does
 * (they are copied; symlinked folders are not followed).  Close with
 * ing_watch_close. */
int ing_watch_open(const char *root, const ing_walk_opts *o, ing_watch **out, doc_err *err);
/* ing_watch_next: wait up to timeout_ms for events, then collect them until the
 * tree is quiet for settle_ms (a file written in several steps is one event);
 * fills up to max events (deduplicated; a move is REMOVED for the old path and
 * CHANGED for the new one; a removed folder yields REMOVED for itself).  *n = 0
 * on timeout.  Returns DOC_ECANCELLED when *cancel (may be NULL) is set.
 * timeout_ms < 0 waits until an event or *cancel (checked every 100 ms).
 * Events beyond max are kept for the next call, which returns them at once.
 * A folder moved in yields CHANGED for each file inside it.  When the kernel
 * dropped events (queue overflow) the one event is CHANGED for the root: rescan
 * it (files may have been added, changed or removed). */
int ing_watch_next(ing_watch *w, int timeout_ms, int settle_ms, const volatile int *cancel,
                   ing_event *ev, int max, int *n, doc_err *err);
void ing_watch_close(ing_watch **w);

#endif
