/*
 * fn-runtime — the instance side of the channel protocol (docs/protocol.md),
 * independent of how bytes travel.
 *
 * The transport feeds it frames whose header it has checked, one at a time in
 * arrival order; the runtime answers by appending frames to one output buffer
 * that the transport flushes when it sees fit (batched, for throughput). The
 * states are few:
 *
 *   AWAIT_INIT  HELLO is queued; only INIT is acceptable. INIT stores the
 *               identity and configuration, runs mxu_init() → READY.
 *   READY       INVOKE → mxu_handle() → RESULT, strictly one at a time;
 *               BYE → DONE (the transport flushes and exits 0). While the
 *               handler runs it may make descriptor operations: each is a
 *               RES_OP sent at once and a wait for its RES_REPLY, during
 *               which INVOKEs and BYE are left for after the handler.
 *   DONE        after BYE or a fatal error; nothing more is sent but what is
 *               already queued.
 *
 * Any frame that does not fit the state, or does not decode, is a protocol
 * error: the runtime queues a FATAL frame and tells the transport to exit 1.
 * An instance never tries to resynchronise with a host that sent garbage.
 */
#include "fn-internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

mxu_fn_rt mxu_fn_rt_g;

/* The default for functions that need no initialisation. Weak, so that a
 * function's own mxu_init() replaces it at link time. */
__attribute__((weak)) int mxu_init(void)
{
    return 0;
}

mxu_fn_buf *mxu_fn_rt_out(void)
{
    return &mxu_fn_rt_g.out;
}

void mxu_fn_rt_fatal(const char *fmt, ...)
{
    mxu_fn_rt *rt = &mxu_fn_rt_g;
    va_list ap;
    va_start(ap, fmt);
    mxu_fn_queue_text(MXU_FRAME_FATAL, 0, MXU_ERROR, fmt, ap);
    va_end(ap);
    rt->state = MXU_FN_DONE;
}

/* Append a 16-byte header for a payload of `len` bytes that the caller
 * encodes right after it; returns where the payload goes, or NULL when out of
 * memory. */
static uint8_t *queue_frame(uint8_t type, uint64_t id, size_t len)
{
    mxu_fn_buf *out = &mxu_fn_rt_g.out;
    if (len > MXU_FRAME_MAX_PAYLOAD || mxu_fn_buf_reserve(out, MXU_FRAME_HEADER_SIZE + len) < 0)
        return NULL;
    mxu_frame_hdr h = {.len = (uint32_t)len, .type = type, .id = id};
    mxu_frame_hdr_encode(&h, out->data + out->len);
    uint8_t *payload = out->data + out->len + MXU_FRAME_HEADER_SIZE;
    out->len += MXU_FRAME_HEADER_SIZE + len;
    return payload;
}

void mxu_fn_rt_start(const mxu_fn_transport *tp, void *ctx)
{
    mxu_fn_rt *rt = &mxu_fn_rt_g;
    rt->tp = tp;
    rt->tp_ctx = ctx;
    rt->state = MXU_FN_AWAIT_INIT;

    char sdk[64];
    snprintf(sdk, sizeof(sdk), "mxu-c/%s %s", MXU_FN_SDK_VERSION, tp->name);
    size_t len = mxu_hello_encode(NULL, 0, sdk);
    uint8_t *p = queue_frame(MXU_FRAME_HELLO, 0, len);
    if (p)
        mxu_hello_encode(p, len, sdk);
}

/* ---- INIT -------------------------------------------------------------------- */

static char *copy_slice(char **at, mxu_slice s)
{
    char *p = *at;
    memcpy(p, s.ptr, s.len);
    p[s.len] = '\0';
    *at += s.len + 1;
    return p;
}

static enum mxu_fn_step on_init(const mxu_frame_hdr *h, const uint8_t *payload)
{
    mxu_fn_rt *rt = &mxu_fn_rt_g;
    mxu_init_msg m;
    if (h->id != 0 || mxu_init_decode(payload, h->len, &m) < 0) {
        mxu_fn_rt_fatal("malformed INIT frame");
        return MXU_FN_EXIT_FAIL;
    }
    if (m.proto_version != MXU_PROTO_VERSION) {
        mxu_fn_rt_fatal("host chose protocol version %u, this SDK speaks %u", m.proto_version,
                        MXU_PROTO_VERSION);
        return MXU_FN_EXIT_FAIL;
    }

    /* Everything INIT carries lives as long as the instance: copy it into one
     * block. The decoder bounded count by the payload size, and the payload
     * by MXU_FRAME_MAX_PAYLOAD, so these sums cannot overflow. */
    size_t size = m.config.count * sizeof(mxu_fn_config_entry) + m.function.len + 1;
    mxu_header_list it = m.config;
    mxu_slice name, value;
    while (mxu_wire_next_header(&it, &name, &value))
        size += (size_t)name.len + value.len + 2;
    void *block = malloc(size);
    if (!block) {
        mxu_fn_rt_fatal("out of memory storing the configuration (%zu bytes)", size);
        return MXU_FN_EXIT_FAIL;
    }
    mxu_fn_config_entry *config = block;
    char *strings = (char *)(config + m.config.count);
    size_t n = 0;
    it = m.config;
    while (mxu_wire_next_header(&it, &name, &value)) {
        config[n].name = copy_slice(&strings, name);
        config[n].value = copy_slice(&strings, value);
        n++;
    }
    rt->init_block = block;
    rt->config = config;
    rt->nconfig = n;
    rt->function = copy_slice(&strings, m.function);
    rt->version = m.version;
    rt->concurrency = m.concurrency;
    rt->state = MXU_FN_READY;

    rt->cur_id = 0;
    int rc = mxu_init();
    if (rc != 0) {
        mxu_fn_rt_fatal("mxu_init() failed (returned %d)", rc);
        return MXU_FN_EXIT_FAIL;
    }
    return MXU_FN_CONTINUE;
}

/* ---- INVOKE ------------------------------------------------------------------ */

/* Put a NUL right after a field inside the payload. Safe once the whole
 * payload is decoded: the byte after a field is the next field's length
 * prefix, already read, or (after the body) the spare byte the transport
 * provides. */
static const char *terminate(uint8_t *payload, mxu_slice s)
{
    size_t off = (size_t)((const uint8_t *)s.ptr - payload);
    payload[off + s.len] = '\0';
    return (const char *)payload + off;
}

/* Queue a 500 with no headers and no body, for when building the real
 * response failed. 0, or -1 when even that cannot be queued. */
static int queue_bare_500(uint64_t id)
{
    mxu_fn_rt *rt = &mxu_fn_rt_g;
    size_t len = mxu_result_encode(NULL, 0, 500, NULL, NULL, 0, (mxu_slice){"", 0});
    uint8_t *p = queue_frame(MXU_FRAME_RESULT, id, len);
    if (!p && rt->tp->flush(rt->tp_ctx) == 0)
        p = queue_frame(MXU_FRAME_RESULT, id, len); /* the buffer is empty now */
    if (!p)
        return -1;
    mxu_result_encode(p, len, 500, NULL, NULL, 0, (mxu_slice){"", 0});
    return 0;
}

static void log_for(uint64_t id, const char *fmt, ...) MXU_FN_PRINTF(2, 3);
static void log_for(uint64_t id, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    mxu_fn_queue_text(MXU_FRAME_LOG, id, MXU_ERROR, fmt, ap);
    va_end(ap);
}

static int queue_result(uint64_t id, int rc)
{
    mxu_fn_rt *rt = &mxu_fn_rt_g;
    mxu_res *res = &rt->res;
    if (res->failed) {
        log_for(id, "out of memory while building the response: answering 500");
        return queue_bare_500(id);
    }
    uint32_t status = res->status ? res->status : rc != 0 ? 500 : 200;

    if (res->nhdrs > rt->enc_cap) {
        size_t cap = res->nhdrs;
        mxu_slice *names = realloc(rt->enc_names, cap * sizeof(*names));
        if (names)
            rt->enc_names = names;
        mxu_slice *values = names ? realloc(rt->enc_values, cap * sizeof(*values)) : NULL;
        if (values)
            rt->enc_values = values;
        if (!names || !values) {
            log_for(id, "out of memory encoding the response: answering 500");
            return queue_bare_500(id);
        }
        rt->enc_cap = cap;
    }
    const char *hb = (const char *)res->hdr_bytes.data;
    for (size_t i = 0; i < res->nhdrs; i++) {
        rt->enc_names[i] = (mxu_slice){hb + res->hdrs[i].name_off, res->hdrs[i].name_len};
        rt->enc_values[i] = (mxu_slice){hb + res->hdrs[i].value_off, res->hdrs[i].value_len};
    }
    /* mxu_res_write() caps the body at MXU_FN_BODY_MAX, far below 4 GiB. */
    mxu_slice body = {res->body.len ? (const char *)res->body.data : "", (uint32_t)res->body.len};
    uint32_t nhdrs = (uint32_t)res->nhdrs;
    size_t len = mxu_result_encode(NULL, 0, status, rt->enc_names, rt->enc_values, nhdrs, body);
    uint8_t *p = queue_frame(MXU_FRAME_RESULT, id, len);
    if (!p) {
        log_for(id, "out of memory queueing a %zu-byte response: answering 500", len);
        return queue_bare_500(id);
    }
    mxu_result_encode(p, len, status, rt->enc_names, rt->enc_values, nhdrs, body);
    return 0;
}

static enum mxu_fn_step on_invoke(const mxu_frame_hdr *h, uint8_t *payload, uint64_t recv_ms)
{
    mxu_fn_rt *rt = &mxu_fn_rt_g;
    mxu_req *req = &rt->req;
    mxu_invoke_msg m;
    if (h->id == 0 || mxu_invoke_decode(payload, h->len, &m) < 0) {
        mxu_fn_rt_fatal("malformed INVOKE frame (id %llu)", (unsigned long long)h->id);
        return MXU_FN_EXIT_FAIL;
    }

    if (m.headers.count > rt->req_hdrs_cap) {
        mxu_fn_hdr *hdrs = realloc(req->headers, m.headers.count * sizeof(*hdrs));
        if (!hdrs) {
            log_for(h->id, "out of memory reading %u request headers: answering 500",
                    m.headers.count);
            return queue_bare_500(h->id) == 0 ? MXU_FN_CONTINUE : MXU_FN_EXIT_FAIL;
        }
        req->headers = hdrs;
        rt->req_hdrs_cap = m.headers.count;
    }
    /* Collect every field first, then NUL-terminate them in place: a NUL
     * written earlier would clobber a length prefix not yet read. */
    size_t n = 0;
    mxu_slice name, value;
    while (mxu_wire_next_header(&m.headers, &name, &value)) {
        req->headers[n] = (mxu_fn_hdr){name.ptr, value.ptr, name.len, value.len};
        n++;
    }
    req->nheaders = n;
    for (size_t i = 0; i < n; i++) {
        mxu_fn_hdr *hd = &req->headers[i];
        hd->name = terminate(payload, (mxu_slice){hd->name, hd->name_len});
        hd->value = terminate(payload, (mxu_slice){hd->value, hd->value_len});
    }
    req->id = h->id;
    req->method = terminate(payload, m.method);
    req->path = terminate(payload, m.path);
    req->query = terminate(payload, m.query);
    /* The body is the payload's last field: the byte after it belongs to the
     * next frame or is spare, so it is restored after the handler. */
    uint8_t saved = payload[h->len];
    req->body = terminate(payload, m.body);
    req->body_len = m.body.len;
    req->deadline_at_ms =
        m.deadline_ms > UINT64_MAX - recv_ms ? UINT64_MAX : recv_ms + m.deadline_ms;

    rt->cur_id = h->id;
    mxu_fn_api_begin();
    int rc = mxu_handle(req, &rt->res);
    rt->cur_id = 0;
    payload[h->len] = saved;

    int q = queue_result(h->id, rc);
    mxu_fn_api_end();
    if (q < 0) {
        mxu_fn_rt_fatal("cannot queue the result of invocation %llu", (unsigned long long)h->id);
        return MXU_FN_EXIT_FAIL;
    }
    return MXU_FN_CONTINUE;
}

/* ---- dispatch ------------------------------------------------------------------- */

static const char *type_name(uint8_t type)
{
    static const char *const names[] = {"?",      "HELLO", "INIT", "INVOKE",
                                        "RESULT", "LOG",   "BYE",  "FATAL"};
    if (type == MXU_FRAME_RES_OP)
        return "RES_OP";
    if (type == MXU_FRAME_RES_REPLY)
        return "RES_REPLY";
    return type < sizeof(names) / sizeof(names[0]) ? names[type] : "reserved";
}

/* ---- descriptor operations ---------------------------------------------------------
 * The one place where the instance waits for the host in the middle of a
 * handler. The transport does the waiting (and keeps whatever else arrives);
 * this side decides what each arriving frame means. */

static __attribute__((noreturn)) void rt_exit(int code)
{
    mxu_fn_rt *rt = &mxu_fn_rt_g;
    rt->tp->exit(rt->tp_ctx, code);
}

void mxu_fn_rt_bad_reply(const char *fmt, ...)
{
    mxu_fn_rt *rt = &mxu_fn_rt_g;
    va_list ap;
    va_start(ap, fmt);
    mxu_fn_queue_text(MXU_FRAME_FATAL, 0, MXU_ERROR, fmt, ap);
    va_end(ap);
    rt->state = MXU_FN_DONE;
    rt_exit(1);
}

int mxu_fn_rt_call(mxu_slice desc, uint32_t op, uint64_t n1, uint64_t n2, const mxu_slice *args,
                   uint32_t nargs, mxu_res_reply_msg *rep)
{
    mxu_fn_rt *rt = &mxu_fn_rt_g;
    if (rt->host_gone)
        rt_exit(0); /* nobody would answer: as at EOF */

    /* Call ids only have to tell this call from a stale reply; they wrap
     * after 2^32 calls, skipping 0 so that 0 never names a call. */
    uint32_t call_id = rt->call_id == UINT32_MAX ? 1 : rt->call_id + 1;
    size_t len = mxu_res_op_encode(NULL, 0, call_id, desc, op, n1, n2, args, nargs);
    if (len > MXU_FRAME_MAX_PAYLOAD)
        return MXU_E_TOO_LARGE;
    uint8_t *p = queue_frame(MXU_FRAME_RES_OP, rt->cur_id, len);
    if (!p) {
        if (rt->tp->flush(rt->tp_ctx) < 0)
            rt_exit(0);                                     /* the host is gone: as at EOF */
        p = queue_frame(MXU_FRAME_RES_OP, rt->cur_id, len); /* the buffer is empty now */
    }
    if (!p)
        return MXU_E_NOMEM;
    mxu_res_op_encode(p, len, call_id, desc, op, n1, n2, args, nargs);
    rt->call_id = call_id;

    for (;;) {
        mxu_frame_hdr h;
        uint8_t *payload;
        int r = rt->tp->wait_frame(rt->tp_ctx, &h, &payload);
        if (r == 0)
            rt_exit(0); /* the host closed the channel: nobody is left to answer */
        if (r < 0)
            rt_exit(1); /* the transport queued FATAL */
        switch (h.type) {
        case MXU_FRAME_INVOKE:
        case MXU_FRAME_BYE:
            /* Pipelined work, or the end of it: handled in order once this
             * handler returns (and judged then, like any other frame). */
            continue;
        case MXU_FRAME_RES_REPLY:
            if (h.id != rt->cur_id || mxu_res_reply_decode(payload, h.len, rep) < 0)
                mxu_fn_rt_bad_reply("malformed RES_REPLY frame (id %llu, %u bytes)",
                                    (unsigned long long)h.id, h.len);
            if (rep->call_id != call_id)
                mxu_fn_rt_bad_reply("RES_REPLY for call %u, but call %u is the one waiting",
                                    rep->call_id, call_id);
            return 0;
        default:
            mxu_fn_rt_bad_reply("unexpected %s frame (type %u) while waiting for RES_REPLY",
                                type_name(h.type), h.type);
        }
    }
}

void mxu_fn_rt_call_done(void)
{
    mxu_fn_rt *rt = &mxu_fn_rt_g;
    rt->tp->drop_frame(rt->tp_ctx);
}

enum mxu_fn_step mxu_fn_rt_frame(const mxu_frame_hdr *h, uint8_t *payload, uint64_t recv_ms)
{
    mxu_fn_rt *rt = &mxu_fn_rt_g;
    switch (rt->state) {
    case MXU_FN_AWAIT_INIT:
        if (h->type == MXU_FRAME_INIT)
            return on_init(h, payload);
        mxu_fn_rt_fatal("expected INIT, got a %s frame (type %u)", type_name(h->type), h->type);
        return MXU_FN_EXIT_FAIL;
    case MXU_FN_READY:
        if (h->type == MXU_FRAME_INVOKE)
            return on_invoke(h, payload, recv_ms);
        if (h->type == MXU_FRAME_BYE && h->len == 0 && h->id == 0) {
            rt->state = MXU_FN_DONE;
            return MXU_FN_EXIT_OK;
        }
        mxu_fn_rt_fatal("unexpected %s frame (type %u, %u bytes)", type_name(h->type), h->type,
                        h->len);
        return MXU_FN_EXIT_FAIL;
    case MXU_FN_DONE:
        break;
    }
    return MXU_FN_EXIT_OK;
}

void mxu_fn_rt_idle(void)
{
    mxu_fn_rt *rt = &mxu_fn_rt_g;
    if (rt->out.len == 0)
        mxu_fn_buf_reset(&rt->out, MXU_FN_KEEP_BUF);
    mxu_fn_buf_reset(&rt->res.body, MXU_FN_KEEP_BUF);
    mxu_fn_buf_reset(&rt->res.hdr_bytes, MXU_FN_KEEP_BUF);
}
