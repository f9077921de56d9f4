/*
 * http-response.c — turning an answer into bytes on the wire.
 *
 * Every response is framed with Content-Length (no chunked responses), carries
 * a cached Date line and, when the connection ends after it, "Connection:
 * close". Caller headers are copied after checking that they cannot split the
 * response (a name must be a token, a value must hold no CR, LF or other
 * control byte): the API layer passes on headers chosen by functions, which
 * are untrusted.
 *
 * Writes are batched: while a connection is inside a parse run (`busy`), the
 * head and small bodies of answers given synchronously are appended to the
 * connection's output buffer and leave in one write when the run ends, so a
 * pipelined burst costs one syscall. Outside of a run (the usual asynchronous
 * answer) head and body are handed to the transport together.
 */
#include "http-internal.h"

#include <string.h>

static void put(mxu_buf *b, const char *s, size_t n)
{
    mxu_buf_append(b, s, n);
}
#define PUT_LIT(b, s) put((b), s, sizeof(s) - 1)

static void put_u64(mxu_buf *b, uint64_t v)
{
    char tmp[24];
    char *p = tmp + sizeof(tmp);
    do {
        *--p = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    put(b, p, (size_t)(tmp + sizeof(tmp) - p));
}

/* tchar of RFC 9110 5.6.2. */
static bool is_token(const char *s)
{
    if (*s == '\0')
        return false;
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9'))
            continue;
        if (ch == '\0' || strchr("!#$%&'*+-.^_`|~", ch) == NULL)
            return false;
    }
    return true;
}

static bool is_field_value(const char *s)
{
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if ((ch < 0x20 && ch != '\t') || ch == 0x7f)
            return false;
    }
    return true;
}

static bool status_has_body(int status)
{
    return status != 204 && status != 304 && status >= 200;
}

void http_build_head(mxu_http_server *srv, mxu_buf *out, int status, const mxu_http_header *headers,
                     size_t nheaders, size_t length, bool keep_alive, bool http10)
{
    const char *text = mxu_http_status_text(status);
    bool has_date = false;

    mxu_buf_reserve(out, 160);
    PUT_LIT(out, "HTTP/1.1 ");
    put_u64(out, (uint64_t)status);
    PUT_LIT(out, " ");
    put(out, text, strlen(text));
    PUT_LIT(out, "\r\n");
    for (size_t i = 0; i < nheaders; i++) {
        const char *name = headers[i].name, *value = headers[i].value;
        if (name == NULL || value == NULL)
            continue;
        size_t nlen = strlen(name);
        /* Framing is ours alone. */
        if ((nlen == 14 && http_ieq(name, "content-length", 14)) ||
            (nlen == 17 && http_ieq(name, "transfer-encoding", 17)) ||
            (nlen == 10 && http_ieq(name, "connection", 10)))
            continue;
        if (!is_token(name) || !is_field_value(value)) {
            mxu_warn("http: dropping invalid response header '%.64s'", name);
            continue;
        }
        if (nlen == 4 && http_ieq(name, "date", 4))
            has_date = true;
        put(out, name, nlen);
        PUT_LIT(out, ": ");
        put(out, value, strlen(value));
        PUT_LIT(out, "\r\n");
    }
    if (!has_date) {
        size_t dlen;
        const char *date = http_server_date(srv, &dlen);
        put(out, date, dlen);
    }
    if (status_has_body(status)) {
        PUT_LIT(out, "Content-Length: ");
        put_u64(out, length);
        PUT_LIT(out, "\r\n");
    }
    if (!keep_alive)
        PUT_LIT(out, "Connection: close\r\n");
    else if (http10)
        PUT_LIT(out, "Connection: keep-alive\r\n");
    PUT_LIT(out, "\r\n");
}

/* The one path for both respond variants. Exactly one of `owned` (taken over)
 * and `data` (borrowed) carries the body, or neither. */
static void respond(mxu_http_req *req, int status, const mxu_http_header *headers, size_t nheaders,
                    mxu_buf *owned, const char *data, size_t len)
{
    if (!req->out) {
        /* Answering twice, or answering a request never handed out, would
         * corrupt the connection's order; fail loudly. */
        mxu_error("http: mxu_http_respond on a request that is not pending");
        abort();
    }
    req->out = false;
    if (owned) {
        data = owned->data;
        len = owned->len;
    }

    http_conn *c = req->conn;
    if (c == NULL) {
        /* The connection is gone: drop the answer, free the request. */
        if (req->srv) {
            req->srv->pending--;
            http_list_remove(&req->dlink);
        }
        if (owned)
            mxu_buf_free(owned);
        http_req_free(req);
        return;
    }

    mxu_http_server *srv = c->srv;
    srv->pending--;
    if (status < 200 || status > 599) {
        /* Interim (1xx) answers cannot end a request; a status out of range is
         * a bug upstream. Either way the client must still get an answer. */
        mxu_warn("http: handler answered with status %d; sending 500", status);
        status = 500;
        nheaders = 0;
        len = 0;
    }
    bool keep_alive = req->keep_alive && srv->accepting;
    bool send_body = status_has_body(status) && !req->head && len > 0;
    http_build_head(srv, &c->out, status, headers, nheaders, len, keep_alive, req->http10);

    c->req = NULL;
    http_req_recycle(c, req);

    if (!send_body) {
        if (owned)
            mxu_buf_free(owned);
        if (!c->busy)
            http_conn_flush(c, NULL);
    } else if (c->busy && len <= HTTP_CORK_COPY_MAX) {
        put(&c->out, data, len);
        if (owned)
            mxu_buf_free(owned);
    } else if (owned) {
        http_conn_flush(c, owned);
    } else if (len <= HTTP_CORK_COPY_MAX) {
        put(&c->out, data, len);
        http_conn_flush(c, NULL);
    } else {
        mxu_buf copy = {0};
        mxu_buf_append(&copy, data, len);
        http_conn_flush(c, &copy);
    }
    http_conn_answered(c, keep_alive);
}

void mxu_http_respond(mxu_http_req *req, int status, const mxu_http_header *headers,
                      size_t nheaders, mxu_buf *body)
{
    respond(req, status, headers, nheaders, body, NULL, 0);
}

void mxu_http_respond_bytes(mxu_http_req *req, int status, const char *content_type,
                            const void *data, size_t len)
{
    mxu_http_header h = {"Content-Type", content_type};
    respond(req, status, &h, content_type ? 1 : 0, NULL, data, len);
}

void http_conn_fail(http_conn *c, int status)
{
    static const mxu_http_header ctype = {"Content-Type", "text/plain; charset=utf-8"};
    const char *text = mxu_http_status_text(status);

    if (c->state >= HTTP_CONN_LINGER)
        return;
    if (c->req) {
        /* Only a request still being parsed can fail: one out with the
         * handler has stopped the parser. */
        http_req_recycle(c, c->req);
        c->req = NULL;
    }
    size_t tlen = strlen(text);
    http_build_head(c->srv, &c->out, status, &ctype, 1, tlen + 1, false, false);
    put(&c->out, text, tlen);
    PUT_LIT(&c->out, "\n");
    http_conn_finish(c);
}
