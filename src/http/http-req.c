/*
 * http-req.c — the request object the handler receives, and its accessors.
 *
 * A request's strings (URL, header names and values) live in one buffer per
 * request, NUL-separated, with an array of offsets for the headers. A
 * connection keeps its last answered request as a spare, so on a keep-alive
 * connection the next request reuses both arrays: steady-state parsing
 * allocates nothing. The request may outlive its connection (client gone) and
 * even the server (closed) while the handler still holds it; `conn` and `srv`
 * are cleared then, and only the request's own memory is used.
 */
#include "http-internal.h"

#include <string.h>

bool http_ieq(const char *a, const char *b, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char x = (unsigned char)a[i], y = (unsigned char)b[i];
        if (x != y) {
            if (x >= 'A' && x <= 'Z')
                x = (unsigned char)(x + 32);
            if (y >= 'A' && y <= 'Z')
                y = (unsigned char)(y + 32);
            if (x != y)
                return false;
        }
    }
    return true;
}

mxu_http_req *http_req_new(http_conn *c)
{
    mxu_http_req *req = mxu_calloc(1, sizeof(*req));
    req->conn = c;
    req->srv = c->srv;
    http_list_init(&req->dlink);
    memcpy(req->peer, c->peer, sizeof(req->peer));
    http_req_reset(req);
    return req;
}

void http_req_reset(mxu_http_req *req)
{
    if (req->strs.cap > HTTP_KEEP_BUF_CAP)
        mxu_buf_free(&req->strs);
    mxu_buf_reset(&req->strs);
    if (req->hdrs_cap > 64) {
        free(req->hdrs);
        req->hdrs = NULL;
        req->hdrs_cap = 0;
    }
    req->nhdrs = 0;
    req->piece = HTTP_PIECE_NONE;
    req->url_len = 0;
    req->path_off = HTTP_NO_OFFSET;
    req->query_off = HTTP_NO_OFFSET;
    req->method = "GET";
    if (req->body.cap > HTTP_KEEP_BUF_CAP)
        mxu_buf_free(&req->body);
    mxu_buf_reset(&req->body);
    req->start_ns = 0;
    req->abort_cb = NULL;
    req->abort_ud = NULL;
    req->out = false;
    req->head = false;
    req->keep_alive = false;
    req->http10 = false;
}

void http_req_free(mxu_http_req *req)
{
    if (req == NULL)
        return;
    mxu_buf_free(&req->strs);
    mxu_buf_free(&req->body);
    free(req->hdrs);
    free(req);
}

/* Under AddressSanitizer requests are not reused, so that a caller touching
 * a request after answering it is reported instead of reading the next one. */
#if defined(__SANITIZE_ADDRESS__)
#define HTTP_REUSE_REQUESTS 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define HTTP_REUSE_REQUESTS 0
#endif
#endif
#ifndef HTTP_REUSE_REQUESTS
#define HTTP_REUSE_REQUESTS 1
#endif

void http_req_recycle(http_conn *c, mxu_http_req *req)
{
    if (HTTP_REUSE_REQUESTS && c->spare == NULL) {
        http_req_reset(req);
        c->spare = req;
    } else {
        http_req_free(req);
    }
}

void http_req_end_piece(mxu_http_req *req)
{
    mxu_buf *s = &req->strs;
    switch (req->piece) {
    case HTTP_PIECE_NONE:
        return;
    case HTTP_PIECE_URL:
        req->url_len = (uint32_t)s->len;
        break;
    case HTTP_PIECE_NAME: {
        http_hdr *h = &req->hdrs[req->nhdrs - 1];
        h->name_len = (uint32_t)(s->len - h->name);
        /* An empty value gets no value callback: point it at the name's NUL. */
        h->value = (uint32_t)s->len;
        h->value_len = 0;
        break;
    }
    case HTTP_PIECE_VALUE: {
        http_hdr *h = &req->hdrs[req->nhdrs - 1];
        /* http-parser drops leading whitespace; the field value excludes the
         * trailing OWS too (RFC 9110 5.5). */
        while (s->len > h->value && (s->data[s->len - 1] == ' ' || s->data[s->len - 1] == '\t'))
            s->len--;
        h->value_len = (uint32_t)(s->len - h->value);
        break;
    }
    }
    mxu_buf_append(s, "", 1); /* the NUL, counted in len so offsets stay apart */
    req->piece = HTTP_PIECE_NONE;
}

/* ---- accessors ---------------------------------------------------------------- */

const char *mxu_http_req_method(const mxu_http_req *req)
{
    return req->method;
}

const char *mxu_http_req_path(const mxu_http_req *req)
{
    return req->path_off == HTTP_NO_OFFSET ? "/" : req->strs.data + req->path_off;
}

const char *mxu_http_req_query(const mxu_http_req *req)
{
    return req->query_off == HTTP_NO_OFFSET ? "" : req->strs.data + req->query_off;
}

const char *mxu_http_req_header(const mxu_http_req *req, const char *name)
{
    size_t n = strlen(name);
    for (size_t i = 0; i < req->nhdrs; i++) {
        const http_hdr *h = &req->hdrs[i];
        if (h->name_len == n && http_ieq(req->strs.data + h->name, name, n))
            return req->strs.data + h->value;
    }
    return NULL;
}

size_t mxu_http_req_header_count(const mxu_http_req *req)
{
    return req->nhdrs;
}

void mxu_http_req_header_at(const mxu_http_req *req, size_t i, const char **name,
                            const char **value)
{
    size_t nl, vl;
    mxu_http_req_header_at_len(req, i, name, &nl, value, &vl);
}

void mxu_http_req_header_at_len(const mxu_http_req *req, size_t i, const char **name,
                                size_t *name_len, const char **value, size_t *value_len)
{
    if (i >= req->nhdrs) {
        *name = *value = NULL;
        *name_len = *value_len = 0;
        return;
    }
    const http_hdr *h = &req->hdrs[i];
    *name = req->strs.data + h->name;
    *name_len = h->name_len;
    *value = req->strs.data + h->value;
    *value_len = h->value_len;
}

const char *mxu_http_req_body(const mxu_http_req *req, size_t *len)
{
    if (len)
        *len = req->body.len;
    return req->body.data ? req->body.data : "";
}

void mxu_http_req_steal_body(mxu_http_req *req, mxu_buf *out)
{
    *out = req->body;
    req->body = (mxu_buf){0};
}

const char *mxu_http_req_peer(const mxu_http_req *req)
{
    return req->peer;
}

void *mxu_http_req_conn_data(const mxu_http_req *req)
{
    return req->conn ? req->conn->user : NULL;
}

void mxu_http_req_set_conn_data(mxu_http_req *req, void *data, void (*free_fn)(void *data))
{
    http_conn *c = req->conn;
    if (c == NULL) {
        if (free_fn)
            free_fn(data);
        return;
    }
    c->user = data;
    c->user_free = free_fn;
}

uint64_t mxu_http_req_start_ns(const mxu_http_req *req)
{
    return req->start_ns;
}

bool mxu_http_req_aborted(const mxu_http_req *req)
{
    return req->conn == NULL;
}

void mxu_http_req_on_abort(mxu_http_req *req, void (*cb)(mxu_http_req *req, void *ud), void *ud)
{
    req->abort_cb = cb;
    req->abort_ud = ud;
}
