/*
 * http-conn.c — one HTTP/1.1 connection: parsing, limits, timeouts, keep-alive,
 * pipelining and the lifetimes of requests.
 *
 * A connection alternates between reading a request and waiting for its
 * answer. http-parser is paused in on_message_complete, so one parse run
 * stops at the end of each request; the request is handed to the handler and
 * nothing more is parsed until it is answered. Bytes that arrive meanwhile are
 * parked in `in` (reading stops when too many are parked). If the answer comes
 * inside the handler call, parsing simply goes on in the same run; if it comes
 * later, the parked bytes are parsed on the next loop turn (never from inside
 * mxu_http_respond, so a handler is never re-entered from a caller's answer).
 *
 * Limits: the head is fed to the parser in slices that never cross the header
 * budget, so an oversized head is caught at the limit itself (431). A declared
 * Content-Length over the body limit is refused before any body byte is read,
 * a chunked body as soon as it grows past the limit (413). Every failure
 * answers and then closes gracefully (see http_conn_finish).
 *
 * Timers: one per connection, armed lazily. `deadline` is the truth; the uv
 * timer only has to fire no later than it, so moving a deadline later (every
 * keep-alive request does) costs no timer-heap operation.
 *
 * Lifetimes: a connection is freed only from a libuv close callback, once both
 * its timer and its transport are closed, so no call made from inside a parse
 * run can free it under our feet; every step re-checks `state` instead.
 * A request out with the handler when the connection closes is detached
 * (req->conn = NULL) and lives on until answered.
 */
#include "http-internal.h"

#include <string.h>

/* ---- timers ------------------------------------------------------------------- */

static uint64_t now_ms(http_conn *c)
{
    return uv_now(c->srv->loop);
}

static void on_timer(uv_timer_t *t);

static void conn_arm(http_conn *c, uint64_t timeout_ms)
{
    if (timeout_ms == 0) {
        c->deadline = 0;
        return;
    }
    uint64_t now = now_ms(c);
    c->deadline = now + timeout_ms;
    if (!c->timer_armed || c->timer_due > c->deadline) {
        uv_timer_start(&c->timer, on_timer, timeout_ms, 0);
        c->timer_armed = true;
        c->timer_due = c->deadline;
    }
}

static void on_timer(uv_timer_t *t)
{
    http_conn *c = t->data;
    c->timer_armed = false;
    if (c->deadline == 0 || c->state == HTTP_CONN_CLOSED)
        return;
    uint64_t now = now_ms(c);
    if (now < c->deadline) {
        uv_timer_start(&c->timer, on_timer, c->deadline - now, 0);
        c->timer_armed = true;
        c->timer_due = c->deadline;
        return;
    }
    c->deadline = 0;
    switch (c->state) {
    case HTTP_CONN_READING:
        http_conn_fail(c, 408);
        break;
    case HTTP_CONN_IDLE:
    case HTTP_CONN_LINGER:
        http_conn_close(c);
        break;
    case HTTP_CONN_WAITING:
    case HTTP_CONN_CLOSED:
        break;
    }
}

/* ---- parser callbacks ------------------------------------------------------------ */

static int on_message_begin(http_parser *p)
{
    http_conn *c = p->data;
    if (c->state != HTTP_CONN_IDLE)
        return -1;
    if (c->spare) {
        c->req = c->spare;
        c->spare = NULL;
    } else {
        c->req = http_req_new(c);
    }
    c->state = HTTP_CONN_READING;
    c->headers_done = false;
    c->fold_state = HTTP_FOLD_PRE;
    conn_arm(c, c->srv->limits.read_timeout_ms);
    return 0;
}

static int on_url(http_parser *p, const char *at, size_t len)
{
    http_conn *c = p->data;
    mxu_http_req *req = c->req;
    if (c->state != HTTP_CONN_READING)
        return -1;
    req->piece = HTTP_PIECE_URL;
    mxu_buf_append(&req->strs, at, len);
    return 0;
}

static int on_header_field(http_parser *p, const char *at, size_t len)
{
    http_conn *c = p->data;
    mxu_http_req *req = c->req;
    if (c->state != HTTP_CONN_READING)
        return -1;
    if (c->headers_done)
        return 0; /* trailers are not exposed: they could add headers late */
    if (req->piece != HTTP_PIECE_NAME) {
        http_req_end_piece(req);
        if (req->nhdrs == req->hdrs_cap) {
            req->hdrs_cap = req->hdrs_cap ? req->hdrs_cap * 2 : 16;
            req->hdrs = mxu_realloc(req->hdrs, req->hdrs_cap * sizeof(*req->hdrs));
        }
        http_hdr *h = &req->hdrs[req->nhdrs++];
        h->name = (uint32_t)req->strs.len;
        h->name_len = 0;
        h->value = h->value_len = 0;
        req->piece = HTTP_PIECE_NAME;
    }
    mxu_buf_append(&req->strs, at, len);
    return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t len)
{
    http_conn *c = p->data;
    mxu_http_req *req = c->req;
    if (c->state != HTTP_CONN_READING)
        return -1;
    if (c->headers_done)
        return 0;
    if (req->piece != HTTP_PIECE_VALUE) {
        http_req_end_piece(req);
        req->hdrs[req->nhdrs - 1].value = (uint32_t)req->strs.len;
        req->piece = HTTP_PIECE_VALUE;
    }
    mxu_buf_append(&req->strs, at, len);
    return 0;
}

static int fail_with(http_conn *c, int status)
{
    c->fail_status = status;
    return -1;
}

/* Split the URL into path and query in place (the URL itself is not part of
 * the API, so its '?' and '#' can become NULs). */
static int split_url(http_conn *c, mxu_http_req *req)
{
    char *u = req->strs.data;
    size_t ulen = req->url_len;
    size_t path = 0, path_end;

    if (ulen == 0)
        return -1;
    if (u[0] != '/') {
        /* absolute-form (RFC 9112 3.2.2): keep only the path and query.
         * CONNECT's authority-form and OPTIONS' "*" have no path to give. */
        struct http_parser_url pu;
        http_parser_url_init(&pu);
        if (c->parser.method == HTTP_CONNECT || http_parser_parse_url(u, ulen, 0, &pu) != 0 ||
            !(pu.field_set & (1 << UF_HOST)))
            return -1;
        if (pu.field_set & (1 << UF_PATH))
            path = pu.field_data[UF_PATH].off;
        else if (pu.field_set & (1 << UF_QUERY))
            path = (size_t)pu.field_data[UF_QUERY].off - 1; /* at the '?' */
        else
            path = ulen;
    }
    for (path_end = path; path_end < ulen && u[path_end] != '?' && u[path_end] != '#'; path_end++)
        ;
    if (path_end > path)
        req->path_off = (uint32_t)path; /* else "/" */
    if (path_end < ulen && u[path_end] == '?') {
        size_t q = path_end + 1, q_end = q;
        while (q_end < ulen && u[q_end] != '#')
            q_end++;
        u[q_end] = '\0'; /* u[ulen] is the URL's own NUL */
        req->query_off = (uint32_t)q;
    }
    u[path_end] = '\0';
    return 0;
}

/* tchar (RFC 9110 5.6.2): 1; field-value bytes (VCHAR, SP, HTAB, obs-text): 2. */
static const unsigned char char_class[256] = {
    ['\t'] = 2, [' '] = 2,  ['!'] = 3, ['"'] = 2, ['#'] = 3, ['$'] = 3,           ['%'] = 3,
    ['&'] = 3,  ['\''] = 3, ['('] = 2, [')'] = 2, ['*'] = 3, ['+'] = 3,           [','] = 2,
    ['-'] = 3,  ['.'] = 3,  ['/'] = 2, ['0'] = 3, ['1'] = 3, ['2'] = 3,           ['3'] = 3,
    ['4'] = 3,  ['5'] = 3,  ['6'] = 3, ['7'] = 3, ['8'] = 3, ['9'] = 3,           [':'] = 2,
    [';'] = 2,  ['<'] = 2,  ['='] = 2, ['>'] = 2, ['?'] = 2, ['@'] = 2,           ['A'] = 3,
    ['B'] = 3,  ['C'] = 3,  ['D'] = 3, ['E'] = 3, ['F'] = 3, ['G'] = 3,           ['H'] = 3,
    ['I'] = 3,  ['J'] = 3,  ['K'] = 3, ['L'] = 3, ['M'] = 3, ['N'] = 3,           ['O'] = 3,
    ['P'] = 3,  ['Q'] = 3,  ['R'] = 3, ['S'] = 3, ['T'] = 3, ['U'] = 3,           ['V'] = 3,
    ['W'] = 3,  ['X'] = 3,  ['Y'] = 3, ['Z'] = 3, ['['] = 2, ['\\'] = 2,          [']'] = 2,
    ['^'] = 3,  ['_'] = 3,  ['`'] = 3, ['a'] = 3, ['b'] = 3, ['c'] = 3,           ['d'] = 3,
    ['e'] = 3,  ['f'] = 3,  ['g'] = 3, ['h'] = 3, ['i'] = 3, ['j'] = 3,           ['k'] = 3,
    ['l'] = 3,  ['m'] = 3,  ['n'] = 3, ['o'] = 3, ['p'] = 3, ['q'] = 3,           ['r'] = 3,
    ['s'] = 3,  ['t'] = 3,  ['u'] = 3, ['v'] = 3, ['w'] = 3, ['x'] = 3,           ['y'] = 3,
    ['z'] = 3,  ['{'] = 2,  ['|'] = 3, ['}'] = 2, ['~'] = 3, [0x80 ... 0xff] = 2,
};

static bool all_of_class(const char *s, size_t n, unsigned char cls)
{
    for (size_t i = 0; i < n; i++)
        if (!(char_class[(unsigned char)s[i]] & cls))
            return false;
    return true;
}

/* all_of_class(s, n, 2), eight bytes at a time: a field value is checked on
 * every request, and a bearer key makes it ~100 bytes, which the byte loop
 * takes ~80 ns over. A word with no byte below 0x20 and none equal to 0x7f
 * is all field-value bytes; any other word (a tab, or a bad byte) goes
 * through the table. */
static bool is_field_value(const char *s, size_t n)
{
    const uint64_t ones = 0x0101010101010101u, highs = 0x8080808080808080u;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w, d;
        memcpy(&w, s + i, 8);
        d = w ^ (ones * 0x7f);
        /* (x - k) & ~x & highs is non-zero iff some byte x < k (k <= 0x80). */
        if (((w - ones * 0x20) & ~w & highs) == 0 && ((d - ones) & ~d & highs) == 0)
            continue;
        if (!all_of_class(s + i, 8, 2))
            return false;
    }
    return all_of_class(s + i, n - i, 2);
}

static int on_headers_complete(http_parser *p)
{
    http_conn *c = p->data;
    mxu_http_req *req = c->req;
    const mxu_http_limits *lim = &c->srv->limits;
    if (c->state != HTTP_CONN_READING)
        return -1;

    http_req_end_piece(req);
    c->in_headers = false;
    c->headers_done = true;

    if (p->http_major != 1)
        return fail_with(c, 505);
    if (split_url(c, req) != 0)
        return fail_with(c, 400);
    req->method = http_method_str((enum http_method)p->method);
    req->head = p->method == HTTP_HEAD;
    req->http10 = p->http_minor == 0;

    const char *expect = NULL;
    bool has_host = false;
    for (size_t i = 0; i < req->nhdrs; i++) {
        const http_hdr *h = &req->hdrs[i];
        const char *name = req->strs.data + h->name;
        /* Debian's libhttp_parser is built non-strict: it lets spaces into
         * names and control bytes into values. Check the grammar here, so
         * nothing above us sees a header another server would split
         * differently (obs-fold: see scan_fold). */
        if (h->name_len == 0 || !all_of_class(name, h->name_len, 1) ||
            !is_field_value(req->strs.data + h->value, h->value_len))
            return fail_with(c, 400);
        if (h->name_len == 4 && http_ieq(name, "host", 4))
            has_host = true;
        else if (h->name_len == 6 && http_ieq(name, "expect", 6))
            expect = req->strs.data + h->value;
    }
    /* RFC 9112 3.2: a server MUST answer 400 to an HTTP/1.1 request without Host. */
    if (!req->http10 && !has_host)
        return fail_with(c, 400);

    bool chunked = (p->flags & F_CHUNKED) != 0;
    bool has_length = (p->flags & F_CONTENTLENGTH) != 0;
    req->body_limit = lim->max_body_bytes;
    if (lim->large_body_prefix && strncmp(mxu_http_req_path(req), lim->large_body_prefix,
                                          strlen(lim->large_body_prefix)) == 0)
        req->body_limit = lim->max_large_body_bytes;
    if (has_length && p->content_length > req->body_limit)
        return fail_with(c, 413);
    if (chunked || (has_length && p->content_length > 0)) {
        /* Reserve for what was announced, but not more than a little: the
         * client may never send it. */
        size_t want = has_length ? (size_t)p->content_length : 0;
        mxu_buf_reserve(&req->body, MXU_MIN(want, (size_t)HTTP_KEEP_BUF_CAP));
        if (expect && !req->http10 && http_ieq(expect, "100-continue", 13)) {
            /* Answers to earlier requests are still in `out` (corked): they
             * must leave first. */
            mxu_buf_append(&c->out, "HTTP/1.1 100 Continue\r\n\r\n", 25);
            http_conn_flush(c, NULL);
            if (c->state != HTTP_CONN_READING)
                return -1;
        }
    }
    return 0;
}

static int on_body(http_parser *p, const char *at, size_t len)
{
    http_conn *c = p->data;
    mxu_http_req *req = c->req;
    if (c->state != HTTP_CONN_READING)
        return -1;
    if (req->body.len + len > req->body_limit)
        return fail_with(c, 413);
    mxu_buf_append(&req->body, at, len);
    return 0;
}

static int on_message_complete(http_parser *p)
{
    http_conn *c = p->data;
    mxu_http_req *req = c->req;
    if (c->state != HTTP_CONN_READING)
        return -1;
    /* After an Upgrade or CONNECT the bytes that follow are not HTTP; we do
     * not switch protocols, so answer this one and close. */
    req->keep_alive = http_should_keep_alive(p) && !p->upgrade;
    c->in_headers = true;
    c->header_bytes = 0;
    http_parser_pause(p, 1);
    return 0;
}

static const http_parser_settings parser_settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

/* Does a line of the head start with SP or HTAB (obs-fold, RFC 9112 5.2)?
 * http-parser joins such a line to the previous value without telling us,
 * so the raw head bytes are checked as they are consumed. Stops at the
 * blank line; the body is not looked at. */
static bool scan_fold(http_conn *c, const char *p, size_t n)
{
    enum http_fold st = c->fold_state;
    const char *end = p + n;
    while (p < end && st != HTTP_FOLD_DONE) {
        char ch = *p;
        switch (st) {
        case HTTP_FOLD_PRE: /* CRLFs before a request line are skipped */
            if (ch != '\r' && ch != '\n')
                st = HTTP_FOLD_TEXT;
            p++;
            break;
        case HTTP_FOLD_TEXT: {
            const char *lf = memchr(p, '\n', (size_t)(end - p));
            if (lf == NULL) {
                p = end;
                break;
            }
            st = HTTP_FOLD_LF;
            p = lf + 1;
            break;
        }
        case HTTP_FOLD_LF:
            if (ch == ' ' || ch == '\t')
                return true;
            st = ch == '\n' ? HTTP_FOLD_DONE : ch == '\r' ? HTTP_FOLD_LFCR : HTTP_FOLD_TEXT;
            p++;
            break;
        case HTTP_FOLD_LFCR:
            st = ch == '\n' ? HTTP_FOLD_DONE : HTTP_FOLD_TEXT;
            p++;
            break;
        case HTTP_FOLD_DONE:
            break;
        }
    }
    c->fold_state = st;
    return false;
}

/* ---- the parse run ---------------------------------------------------------------- */

static bool can_parse(const http_conn *c)
{
    return (c->state == HTTP_CONN_IDLE || c->state == HTTP_CONN_READING) && !c->out_blocked;
}

static void dispatch(http_conn *c)
{
    mxu_http_server *srv = c->srv;
    mxu_http_req *req = c->req;
    c->state = HTTP_CONN_WAITING;
    c->deadline = 0;
    req->out = true;
    req->start_ns = mxu_now_ns();
    srv->pending++;
    srv->handler(req, srv->ud);
}

/* Parse from data as far as the state allows: through every request that is
 * answered while we are here. Returns the bytes consumed. */
static size_t parse_run(http_conn *c, const char *data, size_t len)
{
    size_t max_head = c->srv->limits.max_header_bytes;
    size_t off = 0;

    while (off < len && can_parse(c)) {
        size_t chunk = len - off;
        bool was_in_headers = c->in_headers;
        if (was_in_headers)
            chunk = MXU_MIN(chunk, max_head - c->header_bytes);
        size_t n = http_parser_execute(&c->parser, &parser_settings, data + off, chunk);
        if (c->state == HTTP_CONN_CLOSED || c->state == HTTP_CONN_LINGER)
            break;
        if (c->fold_state != HTTP_FOLD_DONE && scan_fold(c, data + off, n)) {
            http_conn_fail(c, 400);
            break;
        }
        off += n;
        enum http_errno e = HTTP_PARSER_ERRNO(&c->parser);
        if (e == HPE_PAUSED) {
            http_parser_pause(&c->parser, 0);
            if (c->parser.upgrade) {
                /* http-parser will not parse past an upgrade; nothing after
                 * it is ours to read. */
                off = len;
            }
            dispatch(c);
            continue;
        }
        if (e != HPE_OK) {
            int status = c->fail_status ? c->fail_status : 400;
            if (e == HPE_HEADER_OVERFLOW)
                status = 431;
            mxu_debug("http: %s: %s", c->peer, http_errno_description(e));
            http_conn_fail(c, status);
            break;
        }
        if (was_in_headers && c->in_headers) {
            c->header_bytes += n;
            if (c->header_bytes >= max_head) {
                http_conn_fail(c, 431);
                break;
            }
        }
        if (n < chunk) {
            /* No error and no pause, yet input left over: the parser stopped
             * after an upgrade. Not ours to continue. */
            http_conn_fail(c, 400);
            break;
        }
    }
    return off;
}

static void maybe_stop_reading(http_conn *c)
{
    if (!c->read_stopped && !can_parse(c) && c->state != HTTP_CONN_LINGER &&
        c->state != HTTP_CONN_CLOSED && c->in.len >= HTTP_IN_HIGH_WATER) {
        c->read_stopped = true;
        c->tp->read_stop(c);
    }
}

static void maybe_start_reading(http_conn *c)
{
    if (c->read_stopped && (can_parse(c) || c->state == HTTP_CONN_LINGER) && !c->eof) {
        c->read_stopped = false;
        c->tp->read_start(c);
    }
}

void http_conn_feed(http_conn *c, const char *data, size_t len)
{
    if (c->state == HTTP_CONN_LINGER || c->state == HTTP_CONN_CLOSED)
        return; /* draining before close */
    if (c->in.len == 0 && can_parse(c)) {
        /* The fast path: parse straight from the read buffer, park the rest. */
        c->busy = true;
        size_t n = parse_run(c, data, len);
        c->busy = false;
        if (n < len && c->state != HTTP_CONN_LINGER && c->state != HTTP_CONN_CLOSED)
            mxu_buf_append(&c->in, data + n, len - n);
        if (c->state != HTTP_CONN_CLOSED && c->out.len)
            http_conn_flush(c, NULL);
    } else {
        mxu_buf_append(&c->in, data, len);
        http_conn_resume(c);
    }
    maybe_stop_reading(c);
}

void http_conn_resume(http_conn *c)
{
    if (c->in.len && can_parse(c)) {
        c->busy = true;
        size_t n = parse_run(c, c->in.data, c->in.len);
        c->busy = false;
        mxu_buf_consume(&c->in, n);
        if (c->in.len == 0)
            mxu_buf_free(&c->in); /* reads go through the shared buffer again */
        if (c->state != HTTP_CONN_CLOSED && c->out.len)
            http_conn_flush(c, NULL);
    }
    maybe_start_reading(c);
}

/* ---- answers and output ------------------------------------------------------------ */

void http_conn_flush(http_conn *c, mxu_buf *body)
{
    if (c->state == HTTP_CONN_CLOSED) {
        mxu_buf_reset(&c->out);
        if (body)
            mxu_buf_free(body);
        return;
    }
    int r = c->tp->send(c, c->out.data, c->out.len, body);
    mxu_buf_reset(&c->out);
    if (c->out.cap > HTTP_READ_BUF_SIZE)
        mxu_buf_free(&c->out); /* a burst is over; don't keep it */
    if (r < 0) {
        mxu_debug("http: %s: write: %s", c->peer, uv_strerror(r));
        http_conn_close(c);
    }
}

void http_conn_answered(http_conn *c, bool keep_alive)
{
    if (c->state == HTTP_CONN_CLOSED)
        return;
    c->state = HTTP_CONN_IDLE; /* nothing is out with the handler any more */
    if (!keep_alive) {
        http_conn_finish(c);
        return;
    }
    conn_arm(c, c->srv->limits.idle_timeout_ms);
    if (c->tp->queued(c) > HTTP_OUT_HIGH_WATER)
        c->out_blocked = true;
    if (c->busy)
        return; /* the parse run we are inside goes on */
    if (c->in.len && can_parse(c))
        http_server_schedule_resume(c->srv, c);
    else
        maybe_start_reading(c);
}

void http_conn_on_write_progress(http_conn *c, int status)
{
    if (c->state == HTTP_CONN_CLOSED || status == UV_ECANCELED)
        return;
    if (status < 0) {
        mxu_debug("http: %s: write: %s", c->peer, uv_strerror(status));
        http_conn_close(c);
        return;
    }
    /* A client reading a large answer slowly is not idle. */
    if (c->state == HTTP_CONN_IDLE)
        conn_arm(c, c->srv->limits.idle_timeout_ms);
    else if (c->state == HTTP_CONN_LINGER && c->deadline)
        conn_arm(c, c->srv->limits.idle_timeout_ms);
    if (c->out_blocked && c->tp->queued(c) <= HTTP_OUT_LOW_WATER) {
        c->out_blocked = false;
        if (c->in.len && can_parse(c))
            http_server_schedule_resume(c->srv, c);
        else
            maybe_start_reading(c);
    }
}

/* ---- endings ----------------------------------------------------------------------- */

void http_conn_finish(http_conn *c)
{
    if (c->state == HTTP_CONN_LINGER || c->state == HTTP_CONN_CLOSED)
        return;
    if (c->state == HTTP_CONN_WAITING) {
        /* A request out with the handler must be detached, never recycled
         * under it (callers answer first, so this is only a safety net). */
        http_conn_close(c);
        return;
    }
    if (c->req) { /* a request being parsed: it will not be */
        http_req_recycle(c, c->req);
        c->req = NULL;
    }
    c->state = HTTP_CONN_LINGER;
    c->out_blocked = false;
    mxu_buf_reset(&c->in); /* not free: a parse run may still point into it */
    http_list_remove(&c->rlink);
    if (c->out.len)
        http_conn_flush(c, NULL);
    if (c->state == HTTP_CONN_CLOSED)
        return;
    /* Until the answer is flushed, allow what an idle client gets; the
     * linger period proper starts once FIN is out. */
    conn_arm(c, c->srv->limits.idle_timeout_ms);
    maybe_start_reading(c);
    c->tp->shutdown(c);
}

void http_conn_on_shutdown(http_conn *c, int status)
{
    if (c->state != HTTP_CONN_LINGER || status == UV_ECANCELED)
        return;
    if (status < 0 || c->eof) {
        http_conn_close(c);
        return;
    }
    conn_arm(c, MXU_MIN((uint64_t)HTTP_LINGER_MS, c->srv->limits.read_timeout_ms));
}

void http_conn_read_end(http_conn *c, int status)
{
    c->eof = true;
    c->read_stopped = true; /* libuv stops reading at EOF */
    switch (c->state) {
    case HTTP_CONN_IDLE:
        if (status == UV_EOF && c->tp->queued(c) > 0) {
            /* Answers still on their way to a half-closed client. */
            http_conn_finish(c);
            break;
        }
        http_conn_close(c);
        break;
    case HTTP_CONN_LINGER:
        /* FIN both ways once our side is flushed; before that, only if the
         * peer is really gone. */
        if (status != UV_EOF || c->tp->queued(c) == 0)
            http_conn_close(c);
        break;
    case HTTP_CONN_READING:
    case HTTP_CONN_WAITING:
        /* Gone mid-request, or while its answer is being computed: tell the
         * handler (abort callback) by closing. */
        http_conn_close(c);
        break;
    case HTTP_CONN_CLOSED:
        break;
    }
}

static void on_handle_closed(uv_handle_t *h)
{
    http_conn *c = h->data;
    if (--c->nhandles > 0)
        return;
    mxu_http_server *srv = c->srv;
    mxu_buf_free(&c->in);
    mxu_buf_free(&c->out);
    http_req_free(c->spare);
    http_req_free(c->req); /* not out with the handler: close() detached that */
    if (c->user_free)
        c->user_free(c->user);
    free(c);
    http_server_unref(srv);
}

void http_conn_on_transport_closed(http_conn *c)
{
    on_handle_closed((uv_handle_t *)&c->timer);
}

void http_conn_close(http_conn *c)
{
    mxu_http_server *srv = c->srv;
    if (c->state == HTTP_CONN_CLOSED)
        return;
    c->state = HTTP_CONN_CLOSED;
    c->deadline = 0;
    http_list_remove(&c->link);
    http_list_remove(&c->rlink);
    srv->nconns--;
    uv_close((uv_handle_t *)&c->timer, on_handle_closed);
    c->tp->close(c);

    mxu_http_req *req = c->req;
    if (req && req->out) {
        c->req = NULL;
        req->conn = NULL;
        http_list_push(&srv->detached, &req->dlink);
        void (*cb)(mxu_http_req *, void *) = req->abort_cb;
        req->abort_cb = NULL;
        if (cb)
            cb(req, req->abort_ud); /* last: it may answer and free req */
    }
}

http_conn *http_conn_new(mxu_http_server *srv, const http_transport *tp, void *tp_data,
                         const char *peer)
{
    http_conn *c = mxu_calloc(1, sizeof(*c));
    c->srv = srv;
    c->tp = tp;
    c->tp_data = tp_data;
    http_list_init(&c->rlink);
    http_list_push(&srv->conns, &c->link);
    srv->nconns++;
    srv->live++;
    c->state = HTTP_CONN_IDLE;
    http_parser_init(&c->parser, HTTP_REQUEST);
    c->parser.data = c;
    c->in_headers = true;
    snprintf(c->peer, sizeof(c->peer), "%s", peer ? peer : "");
    uv_timer_init(srv->loop, &c->timer);
    c->timer.data = c;
    c->tcp.data = c;
    c->nhandles = 2;
    conn_arm(c, srv->limits.idle_timeout_ms);
    return c;
}
