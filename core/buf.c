/* buf.c - capped growable byte buffers and the arena. */
#include "core.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void buf_init(buf *b, size_t max)
{
    b->data = NULL;
    b->len = b->cap = 0;
    b->max = max ? max : SIZE_MAX / 2;
}

int buf_reserve(buf *b, size_t extra)
{
    if (extra > b->max || b->len > b->max - extra) return DOC_ELIMIT;
    size_t need = b->len + extra + 1; /* room for the NUL */
    if (need <= b->cap) return DOC_OK;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need) cap *= 2;
    if (cap > b->max + 1) cap = b->max + 1;
    char *p = realloc(b->data, cap);
    if (!p) return DOC_ENOMEM;
    p[b->len] = 0; /* a fresh allocation is a valid (empty) C string too */
    b->data = p;
    b->cap = cap;
    return DOC_OK;
}

int buf_append(buf *b, const void *p, size_t n)
{
    int rc = buf_reserve(b, n);
    if (rc) return rc;
    if (n) memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = 0;
    return DOC_OK;
}

int buf_puts(buf *b, const char *s) { return buf_append(b, s, strlen(s)); }

int buf_putc(buf *b, int c)
{
    char ch = (char)c;
    return buf_append(b, &ch, 1);
}

int buf_vprintf(buf *b, const char *fmt, va_list ap)
{
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (n < 0) return DOC_EINVAL;
    int rc = buf_reserve(b, (size_t)n);
    if (rc) return rc;
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    b->len += (size_t)n;
    return DOC_OK;
}

int buf_printf(buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = buf_vprintf(b, fmt, ap);
    va_end(ap);
    return rc;
}

void buf_reset(buf *b)
{
    b->len = 0;
    if (b->data) b->data[0] = 0;
}

void buf_free(buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

char *buf_steal(buf *b, size_t *len)
{
    if (!b->data && buf_reserve(b, 0)) return NULL;
    char *p = b->data;
    if (len) *len = b->len;
    b->data = NULL;
    b->len = b->cap = 0;
    return p;
}

/* ---- arena ------------------------------------------------------------- */

struct arena_block {
    arena_block *next;
    size_t size, used;
    _Alignas(64) unsigned char mem[];
};

void arena_init(arena *a, size_t block_size, size_t max)
{
    a->head = NULL;
    a->block_size = block_size ? block_size : 64 * 1024;
    a->used = 0;
    a->max = max ? max : SIZE_MAX / 2;
}

void *arena_alloc(arena *a, size_t size, size_t align)
{
    if (align == 0) align = 16;
    arena_block *b = a->head;
    if (b) {
        size_t off = (b->used + align - 1) & ~(align - 1);
        if (off <= b->size && size <= b->size - off) {
            b->used = off + size;
            return b->mem + off;
        }
    }
    if (size > a->max || a->used > a->max - size) return NULL;
    size_t bs = a->block_size;
    if (bs < size + align) bs = size + align;
    b = malloc(sizeof *b + bs);
    if (!b) return NULL;
    b->size = bs;
    b->used = size;
    b->next = a->head;
    a->head = b;
    a->used += bs;
    return b->mem;
}

void *arena_zalloc(arena *a, size_t size, size_t align)
{
    void *p = arena_alloc(a, size, align);
    if (p) memset(p, 0, size);
    return p;
}

char *arena_strndup(arena *a, const char *s, size_t n)
{
    char *p = arena_alloc(a, n + 1, 1);
    if (!p) return NULL;
    memcpy(p, s, n);
    p[n] = 0;
    return p;
}

void arena_reset(arena *a)
{
    arena_block *b = a->head;
    if (!b) return;
    while (b->next) {
        arena_block *n = b->next;
        a->used -= n->size;
        b->next = n->next;
        free(n);
    }
    b->used = 0;
}

void arena_free(arena *a)
{
    arena_block *b = a->head;
    while (b) {
        arena_block *n = b->next;
        free(b);
        b = n;
    }
    a->head = NULL;
    a->used = 0;
}
