/*
 * http-tcp.c — the libuv TCP transport of a connection.
 *
 * Reads land in the server's shared buffer (see HTTP_READ_BUF_SIZE) and are
 * parsed from there. Writes try uv_try_write first, which finishes almost
 * every small answer in one writev with no allocation; only what the kernel
 * did not take goes through uv_write, in a request that owns a copy of the
 * unwritten head and the body buffer itself (no copy). libuv keeps uv_write
 * order and refuses uv_try_write while writes are queued, so bytes leave in
 * the order they were sent.
 */
#include "http-internal.h"

#include <string.h>

typedef struct tcp_write {
    uv_write_t req;
    http_conn *conn;
    mxu_buf head;
    mxu_buf body;
    size_t len;
} tcp_write;

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    http_conn *c = h->data;
    MXU_UNUSED(hint);
    buf->base = c->srv->rbuf;
    buf->len = HTTP_READ_BUF_SIZE;
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    http_conn *c = s->data;
    if (n > 0)
        http_conn_feed(c, buf->base, (size_t)n);
    else if (n < 0)
        http_conn_read_end(c, (int)n);
}

static void tcp_read_start(http_conn *c)
{
    int r = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    if (r != 0 && r != UV_EALREADY) {
        mxu_debug("http: %s: read: %s", c->peer, uv_strerror(r));
        http_conn_close(c);
    }
}

static void tcp_read_stop(http_conn *c)
{
    uv_read_stop((uv_stream_t *)&c->tcp);
}

void http_tcp_start(http_conn *c)
{
    tcp_read_start(c);
}

static void on_write(uv_write_t *req, int status)
{
    tcp_write *w = http_container_of(req, tcp_write, req);
    http_conn *c = w->conn;
    c->queued_bytes -= w->len;
    mxu_buf_free(&w->head);
    mxu_buf_free(&w->body);
    free(w);
    http_conn_on_write_progress(c, status);
}

static int tcp_send(http_conn *c, const char *head, size_t head_len, mxu_buf *body)
{
    uv_stream_t *s = (uv_stream_t *)&c->tcp;
    size_t body_len = body ? body->len : 0;
    size_t total = head_len + body_len, done = 0;
    uv_buf_t bufs[2];
    unsigned n = 0;
    int r = 0;

    if (total == 0)
        goto out;
    if (head_len)
        bufs[n++] = uv_buf_init((char *)head, (unsigned)head_len);
    if (body_len)
        bufs[n++] = uv_buf_init(body->data, (unsigned)body_len);
    if (c->queued_bytes == 0) {
        r = uv_try_write(s, bufs, n);
        if (r >= 0) {
            done = (size_t)r;
            r = 0;
        } else if (r == UV_EAGAIN || r == UV_ENOSYS) {
            r = 0;
        } else {
            goto out;
        }
    }
    if (done < total) {
        tcp_write *w = mxu_calloc(1, sizeof(*w));
        w->conn = c;
        w->len = total - done;
        n = 0;
        if (done < head_len) {
            mxu_buf_append(&w->head, head + done, head_len - done);
            bufs[n++] = uv_buf_init(w->head.data, (unsigned)w->head.len);
        }
        size_t boff = done > head_len ? done - head_len : 0;
        if (body_len > boff) {
            w->body = *body;
            *body = (mxu_buf){0};
            bufs[n++] = uv_buf_init(w->body.data + boff, (unsigned)(body_len - boff));
        }
        r = uv_write(&w->req, s, bufs, n, on_write);
        if (r != 0) {
            mxu_buf_free(&w->head);
            mxu_buf_free(&w->body);
            free(w);
            goto out;
        }
        c->queued_bytes += w->len;
    }
out:
    if (body)
        mxu_buf_free(body);
    return r;
}

static size_t tcp_queued(const http_conn *c)
{
    return c->queued_bytes;
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    http_conn_on_shutdown(req->handle->data, status);
}

static void tcp_shutdown(http_conn *c)
{
    int r = uv_shutdown(&c->shutdown_req, (uv_stream_t *)&c->tcp, on_shutdown);
    if (r != 0)
        http_conn_close(c);
}

static void on_close(uv_handle_t *h)
{
    http_conn_on_transport_closed(h->data);
}

static void tcp_close(http_conn *c)
{
    uv_close((uv_handle_t *)&c->tcp, on_close);
}

const http_transport http_tcp_transport = {
    .send = tcp_send,
    .queued = tcp_queued,
    .read_start = tcp_read_start,
    .read_stop = tcp_read_stop,
    .shutdown = tcp_shutdown,
    .close = tcp_close,
};
