/*
 * fn-api — the calls a function author makes (<mxu/fn.h>), on top of the
 * runtime's state for the invocation being handled.
 *
 * Divisions, in file order: buffers and the per-invocation arena; request
 * accessors; query-string decoding; response building; logging and
 * configuration.
 *
 * Platform-independent on purpose: only malloc/realloc/free, vsnprintf and
 * memcpy, so that the micro-VM guest runtime can link this file unchanged.
 * Nothing here sends bytes: frames are appended to the runtime's output
 * buffer and the transport flushes it.
 *
 * Nothing here allocates in the steady state of a small invocation: the
 * request is a view into the INVOKE frame, the response and arena buffers are
 * reused from one invocation to the next.
 */
#include "fn-internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- buffers ---------------------------------------------------------------- */

int mxu_fn_buf_reserve(mxu_fn_buf *b, size_t extra)
{
    if (extra <= b->cap - b->len)
        return 0;
    if (extra > SIZE_MAX / 2 - b->len)
        return -1;
    size_t need = b->len + extra;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need)
        cap *= 2;
    uint8_t *p = realloc(b->data, cap);
    if (!p)
        return -1;
    b->data = p;
    b->cap = cap;
    return 0;
}

int mxu_fn_buf_append(mxu_fn_buf *b, const void *p, size_t n)
{
    if (mxu_fn_buf_reserve(b, n) < 0)
        return -1;
    if (n > 0)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

void mxu_fn_buf_reset(mxu_fn_buf *b, size_t keep)
{
    b->len = 0;
    if (b->cap > keep) {
        free(b->data);
        b->data = NULL;
        b->cap = 0;
    }
}

/* ---- arena -------------------------------------------------------------------- */

void *mxu_fn_arena_alloc(mxu_fn_arena *a, size_t n)
{
    const size_t align = _Alignof(max_align_t);
    if (n == 0)
        n = 1; /* a unique pointer, as documented */
    if (n > SIZE_MAX - align - sizeof(mxu_fn_chunk))
        return NULL;
    n = (n + align - 1) & ~(align - 1);

    /* Chunks after `cur` are empty leftovers from earlier invocations. */
    mxu_fn_chunk *last = NULL;
    for (mxu_fn_chunk *c = a->cur; c; c = c->next) {
        if (c->cap - c->used >= n) {
            void *p = (char *)c->data + c->used;
            c->used += n;
            a->cur = c;
            return p;
        }
        last = c;
    }
    size_t cap = n > MXU_FN_ARENA_CHUNK ? n : MXU_FN_ARENA_CHUNK;
    mxu_fn_chunk *c = malloc(sizeof(*c) + cap);
    if (!c)
        return NULL;
    c->next = NULL;
    c->cap = cap;
    c->used = n;
    if (last)
        last->next = c;
    else
        a->head = c;
    a->cur = c;
    return c->data;
}

void mxu_fn_arena_reset(mxu_fn_arena *a)
{
    if (!a->head || (a->cur == a->head && a->head->used == 0))
        return; /* untouched: the common case of a handler that never allocates */
    size_t kept = 0;
    mxu_fn_chunk **link = &a->head;
    while (*link) {
        mxu_fn_chunk *c = *link;
        if (kept + c->cap <= MXU_FN_ARENA_KEEP) {
            kept += c->cap;
            c->used = 0;
            link = &c->next;
        } else {
            *link = c->next;
            free(c);
        }
    }
    a->cur = a->head;
}

void *mxu_alloc(mxu_req *req, size_t n)
{
    (void)req; /* one invocation at a time: the arena is the runtime's */
    return mxu_fn_arena_alloc(&mxu_fn_rt_g.arena, n);
}

/* ---- request -------------------------------------------------------------------- */

const char *mxu_req_method(const mxu_req *req)
{
    return req->method;
}

const char *mxu_req_path(const mxu_req *req)
{
    return req->path;
}

const char *mxu_req_query(const mxu_req *req)
{
    return req->query;
}

static int ascii_lower(int c)
{
    return c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c;
}

static int ascii_casecmp(const char *a, const char *b)
{
    for (;; a++, b++) {
        int ca = ascii_lower((unsigned char)*a), cb = ascii_lower((unsigned char)*b);
        if (ca != cb || ca == 0)
            return ca - cb;
    }
}

const char *mxu_req_header(const mxu_req *req, const char *name)
{
    if (!name)
        return NULL;
    for (size_t i = 0; i < req->nheaders; i++)
        if (ascii_casecmp(req->headers[i].name, name) == 0)
            return req->headers[i].value;
    return NULL;
}

size_t mxu_req_header_count(const mxu_req *req)
{
    return req->nheaders;
}

int mxu_req_header_at(const mxu_req *req, size_t i, const char **name, const char **value)
{
    if (i >= req->nheaders)
        return -1;
    *name = req->headers[i].name;
    *value = req->headers[i].value;
    return 0;
}

const void *mxu_req_body(const mxu_req *req, size_t *len)
{
    if (len)
        *len = req->body_len;
    return req->body;
}

int64_t mxu_deadline_ms(const mxu_req *req)
{
    const mxu_fn_rt *rt = &mxu_fn_rt_g;
    uint64_t now = rt->tp->now_ms(rt->tp_ctx);
    return now >= req->deadline_at_ms ? 0 : (int64_t)(req->deadline_at_ms - now);
}

/* ---- query strings ----------------------------------------------------------------
 * application/x-www-form-urlencoded as browsers write it: '&'-separated
 * pairs, '+' for space, %XX escapes. A malformed escape is kept literally
 * rather than rejected: a handler asking for one parameter should not fail
 * because another one is sloppy. */

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = ascii_lower(c);
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* Decode the next byte of s[0..n) at *i (< n), advancing *i. */
static int pct_next(const char *s, size_t n, size_t *i)
{
    unsigned char c = (unsigned char)s[*i];
    if (c == '+') {
        (*i)++;
        return ' ';
    }
    if (c == '%' && n - *i >= 3) {
        int hi = hexval((unsigned char)s[*i + 1]);
        int lo = hexval((unsigned char)s[*i + 2]);
        if (hi >= 0 && lo >= 0) {
            *i += 3;
            return hi << 4 | lo;
        }
    }
    (*i)++;
    return c;
}

/* Does the encoded key s[0..n) decode to exactly `name`? */
static int pct_key_eq(const char *s, size_t n, const char *name)
{
    size_t i = 0, j = 0;
    while (i < n) {
        int c = pct_next(s, n, &i);
        if (name[j] == '\0' || (unsigned char)name[j] != c)
            return 0;
        j++;
    }
    return name[j] == '\0';
}

const char *mxu_req_query_param(mxu_req *req, const char *name)
{
    if (!name)
        return NULL;
    const char *q = req->query;
    while (*q) {
        size_t plen = strcspn(q, "&");
        size_t klen = strcspn(q, "=&");
        if (pct_key_eq(q, klen, name)) {
            const char *v = klen < plen ? q + klen + 1 : q + plen;
            size_t vlen = (size_t)(q + plen - v);
            char *out = mxu_alloc(req, vlen + 1);
            if (!out)
                return NULL;
            size_t i = 0, o = 0;
            while (i < vlen)
                out[o++] = (char)pct_next(v, vlen, &i);
            out[o] = '\0';
            return out;
        }
        q += plen;
        if (*q == '&')
            q++;
    }
    return NULL;
}

/* ---- response ---------------------------------------------------------------------- */

int mxu_res_status(mxu_res *res, int status)
{
    if (status < 100 || status > 599)
        return -1;
    res->status = (uint32_t)status;
    return 0;
}

/* These rules match what the node's frame decoder accepts (src/unit/frame.c);
 * checking here turns a bad header into an error the author sees, instead of
 * a malformed RESULT that gets the instance killed. */
static int is_tchar(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return 1;
    return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

int mxu_fn_is_token(const char *s, size_t n)
{
    if (n == 0)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!is_tchar((unsigned char)s[i]))
            return 0;
    return 1;
}

int mxu_fn_header_ok(const char *name, size_t nlen, const char *value, size_t vlen)
{
    if (!mxu_fn_is_token(name, nlen))
        return 0;
    for (size_t i = 0; i < vlen; i++) {
        unsigned char c = (unsigned char)value[i];
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            return 0;
    }
    /* The node frames the HTTP response itself. */
    static const char *const framing[] = {"content-length", "transfer-encoding", "connection"};
    for (size_t i = 0; i < sizeof(framing) / sizeof(framing[0]); i++)
        if (ascii_casecmp(name, framing[i]) == 0)
            return 0;
    return 1;
}

int mxu_res_header(mxu_res *res, const char *name, const char *value)
{
    if (!name || !value)
        return -1;
    size_t nlen = strlen(name), vlen = strlen(value);
    if (!mxu_fn_header_ok(name, nlen, value, vlen))
        return -1;
    if (nlen + vlen > MXU_FN_HEADER_MAX || res->hdr_bytes.len > MXU_FN_HEADER_MAX - nlen - vlen)
        return -1;
    if (res->nhdrs == res->hdrs_cap) {
        size_t cap = res->hdrs_cap ? res->hdrs_cap * 2 : 16;
        mxu_fn_res_hdr *h = realloc(res->hdrs, cap * sizeof(*h));
        if (!h) {
            res->failed = 1; /* a header silently missing could change the meaning */
            return -1;
        }
        res->hdrs = h;
        res->hdrs_cap = cap;
    }
    size_t at = res->hdr_bytes.len;
    if (mxu_fn_buf_reserve(&res->hdr_bytes, nlen + vlen) < 0) {
        res->failed = 1;
        return -1;
    }
    mxu_fn_buf_append(&res->hdr_bytes, name, nlen);
    mxu_fn_buf_append(&res->hdr_bytes, value, vlen);
    res->hdrs[res->nhdrs++] = (mxu_fn_res_hdr){at, (uint32_t)nlen, at + nlen, (uint32_t)vlen};
    return 0;
}

int mxu_res_write(mxu_res *res, const void *data, size_t len)
{
    if (len == 0)
        return 0;
    if (!data || len > MXU_FN_BODY_MAX || res->body.len > MXU_FN_BODY_MAX - len)
        return -1;
    if (mxu_fn_buf_append(&res->body, data, len) < 0) {
        res->failed = 1;
        return -1;
    }
    return 0;
}

int mxu_res_set_body(mxu_res *res, const void *data, size_t len)
{
    if (len > MXU_FN_BODY_MAX || (len > 0 && !data))
        return -1;
    res->body.len = 0;
    return mxu_res_write(res, data, len);
}

int mxu_res_vprintf(mxu_res *res, const char *fmt, va_list ap)
{
    mxu_fn_buf *b = &res->body;
    va_list ap2;
    va_copy(ap2, ap);
    /* Format straight into the body's spare room; retry once with the exact
     * size when it did not fit. */
    size_t room = b->cap - b->len;
    int n = vsnprintf(room ? (char *)b->data + b->len : NULL, room, fmt, ap);
    if (n < 0) {
        va_end(ap2);
        return -1;
    }
    if ((size_t)n > MXU_FN_BODY_MAX || b->len > MXU_FN_BODY_MAX - (size_t)n) {
        va_end(ap2);
        return -1;
    }
    if ((size_t)n >= room) {
        if (mxu_fn_buf_reserve(b, (size_t)n + 1) < 0) {
            va_end(ap2);
            res->failed = 1;
            return -1;
        }
        vsnprintf((char *)b->data + b->len, (size_t)n + 1, fmt, ap2);
    }
    va_end(ap2);
    b->len += (size_t)n;
    return n;
}

int mxu_res_printf(mxu_res *res, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = mxu_res_vprintf(res, fmt, ap);
    va_end(ap);
    return n;
}

/* Length of the valid UTF-8 sequence at s (at most n bytes), or 0 if it is
 * not one: no overlongs, no surrogates, nothing past U+10FFFF. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    size_t len = c < 0x80             ? 1
                 : (c & 0xE0) == 0xC0 ? 2
                 : (c & 0xF0) == 0xE0 ? 3
                 : (c & 0xF8) == 0xF0 ? 4
                                      : 0;
    if (len == 0 || len > n)
        return 0;
    unsigned cp = len == 1 ? c : len == 2 ? c & 0x1F : len == 3 ? c & 0x0F : c & 0x07;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        cp = cp << 6 | (s[i] & 0x3F);
    }
    static const unsigned min[] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < min[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return len;
}

/* `s` as the inside of a JSON string, appended to the body. */
static void res_json_string(mxu_res *res, const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t n = strlen(s);
    for (size_t i = 0; i < n;) {
        unsigned char c = p[i];
        size_t len = utf8_seq(p + i, n - i);
        if (c == '"' || c == '\\') {
            char e[2] = {'\\', (char)c};
            mxu_res_write(res, e, 2);
        } else if (c < 0x20 || c == 0x7f) {
            mxu_res_printf(res, "\\u%04x", c);
        } else if (len == 0) {
            mxu_res_write(res, "\\ufffd", 6);
            i++;
            continue;
        } else {
            mxu_res_write(res, p + i, len);
            i += len;
            continue;
        }
        i++;
    }
}

int mxu_res_error(mxu_res *res, int status, const char *code, const char *fmt, ...)
{
    if (status < 400 || status > 599 || code == NULL || fmt == NULL)
        return -1;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (n < 0)
        msg[0] = '\0';
    /* A Content-Type set before is replaced (an error is JSON whatever the
     * handler meant to send); other headers stay. */
    size_t keep = 0;
    for (size_t i = 0; i < res->nhdrs; i++) {
        const mxu_fn_res_hdr *h = &res->hdrs[i];
        if (!(h->name_len == 12 && strncasecmp((const char *)res->hdr_bytes.data + h->name_off,
                                               "content-type", 12) == 0))
            res->hdrs[keep++] = *h;
    }
    res->nhdrs = keep;
    mxu_res_status(res, status);
    mxu_res_header(res, "Content-Type", "application/json");
    mxu_res_set_body(res, "{\"error\":{\"code\":\"", 18);
    res_json_string(res, code);
    mxu_res_write(res, "\",\"message\":\"", 13);
    res_json_string(res, msg);
    mxu_res_write(res, "\"}}\n", 4);
    return 0;
}

void mxu_fn_api_begin(void)
{
    mxu_res *res = &mxu_fn_rt_g.res;
    res->status = 0;
    res->failed = 0;
    res->body.len = 0;
    res->hdr_bytes.len = 0;
    res->nhdrs = 0;
    mxu_fn_res_begin();
}

void mxu_fn_api_end(void)
{
    mxu_fn_res_end(); /* before the arena goes: open writers live in it */
    mxu_fn_arena_reset(&mxu_fn_rt_g.arena);
}

/* ---- logging -------------------------------------------------------------------- */

int mxu_fn_queue_text(uint8_t type, uint64_t id, int level, const char *fmt, va_list ap)
{
    mxu_fn_rt *rt = &mxu_fn_rt_g;
    mxu_fn_buf *out = &rt->out;
    const size_t pre = MXU_FRAME_HEADER_SIZE + 8; /* header, level, text length */
    if (rt->host_gone || mxu_fn_buf_reserve(out, pre + 256) < 0)
        return -1;

    /* Format in place after room for the header and the two u32 fields, so
     * the text is written once. */
    va_list ap2;
    va_copy(ap2, ap);
    size_t at = out->len;
    size_t room = out->cap - at - pre;
    int n = vsnprintf((char *)out->data + at + pre, room, fmt, ap);
    if (n < 0) {
        va_end(ap2);
        return -1;
    }
    size_t len = (size_t)n < MXU_FN_LOG_MAX ? (size_t)n : MXU_FN_LOG_MAX;
    if (len >= room) {
        if (mxu_fn_buf_reserve(out, pre + len + 1) < 0) {
            va_end(ap2);
            return -1;
        }
        vsnprintf((char *)out->data + at + pre, len + 1, fmt, ap2);
    }
    va_end(ap2);
    /* The node adds line structure; a trailing newline would show as a blank. */
    while (len > 0 && out->data[at + pre + len - 1] == '\n')
        len--;

    if (level < MXU_DEBUG || level > MXU_ERROR)
        level = MXU_ERROR;
    mxu_wire_w w;
    mxu_wire_w_init(&w, out->data + at + MXU_FRAME_HEADER_SIZE, 8);
    mxu_wire_put_u32(&w, (uint32_t)level);
    mxu_wire_put_u32(&w, (uint32_t)len);
    mxu_frame_hdr h = {.len = (uint32_t)(8 + len), .type = type, .id = id};
    mxu_frame_hdr_encode(&h, out->data + at);
    out->len = at + pre + len;
    return 0;
}

void mxu_vlog(int level, const char *fmt, va_list ap)
{
    mxu_fn_rt *rt = &mxu_fn_rt_g;
    if (!rt->tp || rt->state == MXU_FN_DONE || !fmt)
        return;
    if (mxu_fn_queue_text(MXU_FRAME_LOG, rt->cur_id, level, fmt, ap) < 0)
        return;
    /* Sent at once, not batched: the lines before a crash or a hang are the
     * ones worth having. */
    if (rt->tp->flush(rt->tp_ctx) < 0)
        rt->host_gone = 1;
}

void mxu_log(int level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    mxu_vlog(level, fmt, ap);
    va_end(ap);
}

/* ---- configuration ---------------------------------------------------------------- */

const char *mxu_config(const char *name)
{
    const mxu_fn_rt *rt = &mxu_fn_rt_g;
    if (!name)
        return NULL;
    for (size_t i = 0; i < rt->nconfig; i++)
        if (strcmp(rt->config[i].name, name) == 0)
            return rt->config[i].value;
    return NULL;
}

const char *mxu_function_name(void)
{
    return mxu_fn_rt_g.function ? mxu_fn_rt_g.function : "";
}

uint32_t mxu_function_version(void)
{
    return mxu_fn_rt_g.version;
}
