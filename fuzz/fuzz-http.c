/*
 * fuzz-http — libFuzzer target for the HTTP/1.1 server's request handling.
 *
 * Arbitrary bytes are fed, split at up to three fuzzer-chosen points, into a
 * real connection (http-conn.c) whose transport is memory: the same parser
 * callbacks, limits, pipelining, corking and request lifetimes as over TCP.
 * The handler reads everything a request exposes and then answers it at once,
 * later (between feeds), from its abort callback, or only after the server is
 * closed and freed — the cases where lifetimes go wrong. ASan, UBSan and LSan
 * (leaks at exit of each run) do the checking; the one assertion of our own
 * is that whatever the server sends begins with a status line.
 *
 * Input layout: [flags][split1][split2][split3][seed][bytes...]
 *   flags bit 0: small limits (64-byte head, 16-byte body)
 *   flags bit 1: the peer sends EOF at the end
 *   flags bit 2: a second connection gets the same bytes in one piece
 */
#include "http/http-internal.h"

#include <stdint.h>
#include <string.h>

#define MAX_HELD 64

typedef struct fuzz {
    uint32_t rng;
    mxu_http_req *held[MAX_HELD];
    size_t nheld;
    size_t answered;
} fuzz;

typedef struct mem {
    mxu_buf out;
    bool closed;
} mem;

static uint32_t next(fuzz *f)
{
    f->rng ^= f->rng << 13;
    f->rng ^= f->rng >> 17;
    f->rng ^= f->rng << 5;
    return f->rng;
}

/* ---- the memory transport ---------------------------------------------------------- */

static int mem_send(http_conn *c, const char *head, size_t hlen, mxu_buf *body)
{
    mem *m = c->tp_data;
    /* Keep only the start: enough to check framing, bounded memory. */
    if (m->out.len < 4096)
        mxu_buf_append(&m->out, head, MXU_MIN(hlen, (size_t)4096));
    if (body)
        mxu_buf_free(body);
    return 0;
}
static size_t mem_queued(const http_conn *c)
{
    MXU_UNUSED(c);
    return 0;
}
static void mem_nop(http_conn *c)
{
    MXU_UNUSED(c);
}
static void mem_close(http_conn *c)
{
    ((mem *)c->tp_data)->closed = true;
    http_conn_on_transport_closed(c);
}
static const http_transport mem_transport = {
    .send = mem_send,
    .queued = mem_queued,
    .read_start = mem_nop,
    .read_stop = mem_nop,
    .shutdown = mem_nop,
    .close = mem_close,
};

/* ---- the handler ----------------------------------------------------------------------- */

static void answer(fuzz *f, mxu_http_req *req)
{
    static const int statuses[] = {200, 201, 204, 304, 404, 500, 100, 999};
    uint32_t r = next(f);
    int status = statuses[r % MXU_ARRAY_LEN(statuses)];
    f->answered++;
    switch ((r >> 4) % 4) {
    case 0:
        mxu_http_respond_bytes(req, status, "text/plain", "hello", 5);
        break;
    case 1: {
        /* a body too large to be corked */
        mxu_buf b = {0};
        mxu_buf_reserve(&b, 20000);
        memset(b.data, 'x', 20000);
        b.len = 20000;
        mxu_http_respond(req, status, NULL, 0, &b);
        break;
    }
    case 2: {
        mxu_http_header h[] = {
            {"X-Ok", "1"}, {"X-Bad", "a\r\nb"}, {"Content-Length", "3"}, {"Date", "now"}};
        mxu_buf b = {0};
        mxu_http_req_steal_body(req, &b); /* echo */
        mxu_http_respond(req, status, h, MXU_ARRAY_LEN(h), &b);
        break;
    }
    default:
        mxu_http_respond(req, status, NULL, 0, NULL);
        break;
    }
}

static void on_abort(mxu_http_req *req, void *ud)
{
    fuzz *f = ud;
    if (next(f) % 2) {
        for (size_t i = 0; i < f->nheld; i++) {
            if (f->held[i] == req) {
                f->held[i] = f->held[--f->nheld];
                answer(f, req);
                return;
            }
        }
    }
}

static void handler(mxu_http_req *req, void *ud)
{
    fuzz *f = ud;
    /* Touch everything the request exposes, so ASan checks its bounds. */
    size_t n = strlen(mxu_http_req_method(req)) + strlen(mxu_http_req_path(req)) +
               strlen(mxu_http_req_query(req)) + strlen(mxu_http_req_peer(req));
    for (size_t i = 0; i < mxu_http_req_header_count(req); i++) {
        const char *name, *value;
        mxu_http_req_header_at(req, i, &name, &value);
        n += strlen(name) + strlen(value);
    }
    const char *host = mxu_http_req_header(req, "host");
    size_t blen;
    const char *body = mxu_http_req_body(req, &blen);
    if (blen)
        n += (unsigned char)body[blen - 1];
    if (host)
        n += strlen(host);
    if (mxu_http_req_path(req)[0] != '/')
        abort();
    f->rng += (uint32_t)n;

    uint32_t r = next(f) % 4;
    if (r == 0 || f->nheld == MAX_HELD) {
        answer(f, req);
        return;
    }
    if (r == 1)
        mxu_http_req_on_abort(req, on_abort, f);
    f->held[f->nheld++] = req;
}

static void answer_some(fuzz *f)
{
    while (f->nheld && next(f) % 3) {
        size_t i = next(f) % f->nheld;
        mxu_http_req *req = f->held[i];
        f->held[i] = f->held[--f->nheld];
        answer(f, req);
    }
}

static void check_output(const mem *m)
{
    if (m->out.len && strncmp(m->out.data, "HTTP/1.1 ", MXU_MIN(m->out.len, (size_t)9)) != 0)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 5)
        return 0;
    uint8_t flags = data[0];
    size_t len = size - 5;
    const char *in = (const char *)data + 5;
    size_t cut[4] = {len * data[1] / 255, len * data[2] / 255, len * data[3] / 255, len};
    for (int i = 1; i < 3; i++) /* sorted, so the pieces cover the input once */
        for (int j = i; j > 0 && cut[j] < cut[j - 1]; j--) {
            size_t t = cut[j];
            cut[j] = cut[j - 1];
            cut[j - 1] = t;
        }

    fuzz f = {.rng = 0x9e3779b9u ^ data[4]};
    mem m1 = {0}, m2 = {0};
    mxu_http_limits small = {.max_header_bytes = 64, .max_body_bytes = 16};
    uv_loop_t loop;
    if (uv_loop_init(&loop) != 0)
        abort();
    mxu_http_server *srv = http_server_new(&loop, (flags & 1) ? &small : NULL, handler, &f);
    http_conn *c = http_conn_new(srv, &mem_transport, &m1, "fuzz:1");

    size_t at = 0;
    for (int i = 0; i < 4; i++) {
        if (cut[i] > at && !m1.closed)
            http_conn_feed(c, in + at, cut[i] - at);
        at = MXU_MAX(at, cut[i]);
        answer_some(&f);
        uv_run(&loop, UV_RUN_NOWAIT); /* parked pipelined input is parsed here */
    }
    if ((flags & 2) && !m1.closed)
        http_conn_read_end(c, UV_EOF);
    if (flags & 4) {
        http_conn *c2 = http_conn_new(srv, &mem_transport, &m2, "fuzz:2");
        if (len)
            http_conn_feed(c2, in, len);
        uv_run(&loop, UV_RUN_NOWAIT);
    }
    answer_some(&f);
    uv_run(&loop, UV_RUN_NOWAIT);

    mxu_http_server_close(srv, NULL, NULL);
    answer_some(&f); /* detached, server not yet freed */
    uv_run(&loop, UV_RUN_DEFAULT);
    while (f.nheld) /* detached, server freed */
        answer(&f, f.held[--f.nheld]);
    if (uv_loop_close(&loop) != 0)
        abort();

    check_output(&m1);
    check_output(&m2);
    mxu_buf_free(&m1.out);
    mxu_buf_free(&m2.out);
    return 0;
}
