/* Allocation and growable buffers. Out-of-memory aborts: see core.h. */
#include "core.h"

#include <stdio.h>
#include <string.h>

static void oom(size_t n)
{
    fprintf(stderr, "mxu: out of memory allocating %zu bytes\n", n);
    abort();
}

void *mxu_malloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (p == NULL)
        oom(n);
    return p;
}

void *mxu_calloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (p == NULL)
        oom(n * size);
    return p;
}

void *mxu_realloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (q == NULL)
        oom(n);
    return q;
}

char *mxu_strdup(const char *s)
{
    return mxu_strndup(s, strlen(s));
}

char *mxu_strndup(const char *s, size_t n)
{
    char *p = mxu_malloc(n + 1);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

char *mxu_asprintf(const char *fmt, ...)
{
    mxu_buf b = {0};
    va_list ap;
    va_start(ap, fmt);
    mxu_buf_vprintf(&b, fmt, ap);
    va_end(ap);
    return mxu_buf_steal(&b, NULL);
}

void mxu_buf_reserve(mxu_buf *b, size_t extra)
{
    if (b->len + extra + 1 <= b->cap)
        return;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < b->len + extra + 1) {
        if (cap > SIZE_MAX / 2)
            oom(b->len + extra + 1);
        cap *= 2;
    }
    b->data = mxu_realloc(b->data, cap);
    b->cap = cap;
}

void mxu_buf_append(mxu_buf *b, const void *data, size_t n)
{
    mxu_buf_reserve(b, n);
    if (n)
        memcpy(b->data + b->len, data, n);
    b->len += n;
    b->data[b->len] = '\0';
}

void mxu_buf_puts(mxu_buf *b, const char *s)
{
    mxu_buf_append(b, s, strlen(s));
}

void mxu_buf_vprintf(mxu_buf *b, const char *fmt, va_list ap)
{
    va_list ap2;
    va_copy(ap2, ap);
    char tmp[256];
    int n = vsnprintf(tmp, sizeof(tmp), fmt, ap2);
    va_end(ap2);
    if (n < 0)
        return;
    if ((size_t)n < sizeof(tmp)) {
        mxu_buf_append(b, tmp, (size_t)n);
        return;
    }
    mxu_buf_reserve(b, (size_t)n);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    b->len += (size_t)n;
}

void mxu_buf_printf(mxu_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    mxu_buf_vprintf(b, fmt, ap);
    va_end(ap);
}

void mxu_buf_consume(mxu_buf *b, size_t n)
{
    if (n >= b->len) {
        mxu_buf_reset(b);
        return;
    }
    memmove(b->data, b->data + n, b->len - n);
    b->len -= n;
    b->data[b->len] = '\0';
}

void mxu_buf_reset(mxu_buf *b)
{
    b->len = 0;
    if (b->data)
        b->data[0] = '\0';
}

void mxu_buf_free(mxu_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

char *mxu_buf_steal(mxu_buf *b, size_t *len)
{
    if (b->data == NULL)
        mxu_buf_reserve(b, 0), b->data[0] = '\0';
    char *p = b->data;
    if (len)
        *len = b->len;
    b->data = NULL;
    b->len = b->cap = 0;
    return p;
}
