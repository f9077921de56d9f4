/*
 * sdk-test-instance — a function built against libmxufn.a exactly like a
 * deployed one, for test-sdk.c to drive over a socketpair. Each sub-path
 * exercises one part of <mxu/fn.h> and reports what it saw in the response,
 * so the test checks the SDK from the outside, through the protocol.
 *
 * Compiled both by meson and, in test-sdk's deploy-time case, by the system
 * compiler with the node's command line; so only <mxu/fn.h> and libc.
 */
#include <mxu/fn.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int init_calls;

int mxu_init(void)
{
    init_calls++;
    /* Resource calls need a request: from here they must fail, and send nothing. */
    const void *v;
    int call = mxu_kv_get(NULL, "orders", "k", &v, NULL, NULL);
    mxu_log(MXU_INFO, "init %s v%u call=%d", mxu_function_name(), (unsigned)mxu_function_version(),
            call);
    const char *fail = mxu_config("FAIL_INIT");
    if (fail && strcmp(fail, "1") == 0)
        return 7;
    return 0;
}

static void echo(mxu_req *req, mxu_res *res)
{
    mxu_res_status(res, 201);
    mxu_res_header(res, "X-Method", mxu_req_method(req));
    mxu_res_header(res, "X-Query", mxu_req_query(req));
    const char *name = mxu_req_query_param(req, "name");
    mxu_res_header(res, "X-Name", name ? name : "(none)");
    const char *ua = mxu_req_header(req, "user-agent");
    mxu_res_header(res, "X-UA", ua ? ua : "(none)");
    char n[32];
    snprintf(n, sizeof(n), "%zu", mxu_req_header_count(req));
    mxu_res_header(res, "X-Header-Count", n);
    size_t len;
    const void *body = mxu_req_body(req, &len);
    mxu_res_write(res, body, len);
}

static void list_headers(mxu_req *req, mxu_res *res)
{
    const char *name, *value;
    for (size_t i = 0; mxu_req_header_at(req, i, &name, &value) == 0; i++)
        mxu_res_printf(res, "%s: %s\n", name, value);
    if (mxu_req_header_at(req, mxu_req_header_count(req), &name, &value) != -1)
        mxu_res_printf(res, "header_at past the end did not fail\n");
}

static void params(mxu_req *req, mxu_res *res)
{
    static const char *const keys[] = {"a", "b", "flag", "sp ace", "bad", "missing", "é"};
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        const char *v = mxu_req_query_param(req, keys[i]);
        mxu_res_printf(res, "%s=%s%s%s;", keys[i], v ? "[" : "", v ? v : "NULL", v ? "]" : "");
    }
}

static void big(mxu_req *req, mxu_res *res)
{
    const char *ns = mxu_req_query_param(req, "n");
    size_t n = ns ? (size_t)strtoull(ns, NULL, 10) : 0;
    static char chunk[65536];
    for (size_t i = 0; i < sizeof(chunk); i++)
        chunk[i] = (char)('a' + i % 26);
    size_t done = 0;
    while (done < n) {
        size_t k = n - done < sizeof(chunk) ? n - done : sizeof(chunk);
        if (mxu_res_write(res, chunk, k) < 0)
            return; /* out of memory: the SDK answers 500 */
        done += k;
    }
}

static int check_alloc(mxu_req *req, mxu_res *res)
{
    /* Many small blocks, aligned, distinct, surviving each other's writes. */
    unsigned char *blocks[2000];
    for (int i = 0; i < 2000; i++) {
        size_t n = (size_t)(i % 97) + 1;
        blocks[i] = mxu_alloc(req, n);
        if (!blocks[i] || (uintptr_t)blocks[i] % _Alignof(max_align_t) != 0)
            return mxu_res_printf(res, "bad block %d", i), 1;
        memset(blocks[i], i & 0xff, n);
    }
    for (int i = 0; i < 2000; i++)
        for (size_t k = 0; k < (size_t)(i % 97) + 1; k++)
            if (blocks[i][k] != (i & 0xff))
                return mxu_res_printf(res, "block %d overwritten", i), 1;
    /* A block bigger than a chunk, and the zero-size case. */
    unsigned char *large = mxu_alloc(req, 3u << 20);
    if (!large)
        return mxu_res_printf(res, "large alloc failed"), 1;
    memset(large, 0x5a, 3u << 20);
    void *z1 = mxu_alloc(req, 0), *z2 = mxu_alloc(req, 0);
    if (!z1 || !z2 || z1 == z2)
        return mxu_res_printf(res, "zero-size allocs"), 1;
    if (mxu_alloc(req, SIZE_MAX) != NULL || mxu_alloc(req, SIZE_MAX - 8) != NULL)
        return mxu_res_printf(res, "absurd alloc succeeded"), 1;
    mxu_res_printf(res, "ok");
    return 0;
}

static int check_validation(mxu_res *res)
{
    int bad = 0;
    bad |= mxu_res_status(res, 99) != -1;
    bad |= mxu_res_status(res, 600) != -1;
    bad |= mxu_res_header(res, "", "x") != -1;
    bad |= mxu_res_header(res, "Bad Name", "x") != -1;
    bad |= mxu_res_header(res, "X:Y", "x") != -1;
    bad |= mxu_res_header(res, "X-Evil", "a\r\nSet-Cookie: x") != -1;
    bad |= mxu_res_header(res, "X-Nl", "a\nb") != -1;
    bad |= mxu_res_header(res, "Content-Length", "5") != -1;
    bad |= mxu_res_header(res, "transfer-encoding", "chunked") != -1;
    bad |= mxu_res_header(res, NULL, "x") != -1;
    bad |= mxu_res_header(res, "X-Ok", "tab\tand spaces") != 0;
    bad |= mxu_res_write(res, NULL, 3) != -1;
    bad |= mxu_res_write(res, "x", (size_t)MXU_FN_BODY_MAX + 1) != -1;
    bad |= mxu_res_set_body(res, NULL, 0) != 0;
    bad |= mxu_res_status(res, 202) != 0;
    mxu_res_set_body(res, "replaced", 8);
    mxu_res_set_body(res, bad ? "validation failed" : "ok", bad ? 17 : 2);
    return 0;
}

/* ---- resources -------------------------------------------------------------------
 * Each route makes one kind of resource call with arguments from the query
 * string and prints what came back, so test-sdk.c can check both the frames
 * it received and how its replies were read. */

static const char *qp(mxu_req *req, const char *name, const char *def)
{
    const char *v = mxu_req_query_param(req, name);
    return v ? v : def;
}

static uint64_t qn(mxu_req *req, const char *name, uint64_t def)
{
    const char *v = mxu_req_query_param(req, name);
    return v ? strtoull(v, NULL, 10) : def;
}

/* The byte at offset i of the test's blob pattern (test-sdk.c has the same). */
static unsigned char pattern(uint64_t i)
{
    return (unsigned char)(i * 31 + (i >> 16));
}

static void rc_line(mxu_req *req, mxu_res *res, int rc)
{
    mxu_res_printf(res, "rc=%d", rc);
    if (rc < 0)
        mxu_res_printf(res, " err=[%s] str=[%s]", mxu_last_error(req), mxu_strerror(rc));
}

static void print_page(mxu_res *res, const mxu_page *pg)
{
    mxu_res_printf(res, " count=%zu keys=[", pg->count);
    for (size_t i = 0; i < pg->count; i++)
        mxu_res_printf(res, "%s%s", i ? "," : "", pg->keys[i]);
    mxu_res_printf(res, "] next=[%s] term=%d", pg->next, pg->keys[pg->count] == NULL);
}

static int resources(mxu_req *req, mxu_res *res, const char *path)
{
    const char *d = qp(req, "d", "orders"), *k = qp(req, "k", "key");
    int rc;
    if (strcmp(path, "/kv-get") == 0) {
        const void *v = NULL;
        size_t len = 0;
        uint64_t rev = 0;
        rc = qn(req, "bare", 0) ? mxu_kv_get(req, d, k, &v, NULL, NULL)
                                : mxu_kv_get(req, d, k, &v, &len, &rev);
        rc_line(req, res, rc);
        if (rc == 0) {
            mxu_res_printf(res, " len=%zu rev=%llu val=[", len, (unsigned long long)rev);
            mxu_res_write(res, v, len);
            mxu_res_printf(res, "] nul=%d", ((const char *)v)[len] == '\0');
        }
    } else if (strcmp(path, "/kv-put") == 0 || strcmp(path, "/kv-cas") == 0) {
        const char *v = qp(req, "v", "");
        uint64_t rev = 0;
        rc = path[4] == 'p' ? mxu_kv_put(req, d, k, v, strlen(v), &rev)
                            : mxu_kv_cas(req, d, k, qn(req, "exp", 0), v, strlen(v), &rev);
        rc_line(req, res, rc);
        mxu_res_printf(res, " rev=%llu", (unsigned long long)rev);
    } else if (strcmp(path, "/kv-delete") == 0) {
        rc_line(req, res, mxu_kv_delete(req, d, k));
    } else if (strcmp(path, "/kv-list") == 0 || strcmp(path, "/blob-list") == 0) {
        mxu_page pg = {0};
        const char *pre = mxu_req_query_param(req, "prefix"),
                   *cur = mxu_req_query_param(req, "cur");
        size_t limit = (size_t)qn(req, "limit", 0);
        rc = path[1] == 'k' ? mxu_kv_list(req, d, pre, cur, limit, &pg)
                            : mxu_blob_list(req, d, pre, cur, limit, &pg);
        rc_line(req, res, rc);
        if (rc == 0)
            print_page(res, &pg);
    } else if (strcmp(path, "/blob-read") == 0) {
        const void *data = NULL;
        size_t got = 0;
        uint64_t size = 0, off = qn(req, "off", 0);
        rc = mxu_blob_read(req, d, k, off, (size_t)qn(req, "len", SIZE_MAX), &data, &got, &size);
        rc_line(req, res, rc);
        if (rc == 0) {
            size_t bad = 0;
            for (size_t i = 0; i < got; i++)
                bad += ((const unsigned char *)data)[i] != pattern(off + i);
            mxu_res_printf(res, " got=%zu size=%llu bad=%zu nul=%d", got, (unsigned long long)size,
                           bad, ((const char *)data)[got] == '\0');
        }
    } else if (strcmp(path, "/blob-write") == 0) {
        size_t n = (size_t)qn(req, "n", 0);
        unsigned char *data = n ? malloc(n) : NULL;
        for (size_t i = 0; i < n; i++)
            data[i] = pattern(i);
        rc_line(req, res, mxu_blob_write(req, d, k, data, n));
        free(data);
    } else if (strcmp(path, "/blob-writer") == 0) {
        /* n bytes in pieces of `piece`; then close, abort or leave it open. */
        size_t n = (size_t)qn(req, "n", 0), piece = (size_t)qn(req, "piece", 1000);
        const char *end = qp(req, "end", "close");
        mxu_blob_writer *w = mxu_blob_writer_open(req, d, k);
        if (!w) {
            mxu_res_printf(res, "open=NULL err=[%s]", mxu_last_error(req));
            return 0;
        }
        unsigned char *buf = malloc(piece ? piece : 1);
        int wrc = 0, writes = 0;
        for (size_t at = 0; at < n && wrc == 0; at += piece, writes++) {
            size_t m = n - at < piece ? n - at : piece;
            for (size_t i = 0; i < m; i++)
                buf[i] = pattern(at + i);
            wrc = mxu_blob_writer_write(w, buf, m);
        }
        free(buf);
        mxu_res_printf(res, "write=%d after=%d", wrc, writes);
        if (wrc < 0) /* dead: the same code again */
            mxu_res_printf(res, " again=%d", mxu_blob_writer_write(w, "x", 1));
        if (strcmp(end, "close") == 0) {
            mxu_res_printf(res, " close=%d", mxu_blob_writer_close(w));
            mxu_res_printf(res, " reuse=%d", mxu_blob_writer_write(w, "x", 1));
        } else if (strcmp(end, "abort") == 0) {
            mxu_blob_writer_abort(w);
            mxu_res_printf(res, " aborted reuse=%d", mxu_blob_writer_close(w));
        }
    } else if (strcmp(path, "/blob-stat") == 0) {
        uint64_t size = 0, mtime = 0;
        rc = mxu_blob_stat(req, d, k, &size, &mtime);
        rc_line(req, res, rc);
        mxu_res_printf(res, " size=%llu mtime=%llu", (unsigned long long)size,
                       (unsigned long long)mtime);
    } else if (strcmp(path, "/blob-delete") == 0) {
        rc_line(req, res, mxu_blob_delete(req, d, k));
    } else if (strcmp(path, "/q-publish") == 0) {
        size_t len;
        const void *body = mxu_req_body(req, &len);
        uint64_t id = 0;
        rc_line(req, res, mxu_queue_publish(req, d, body, len, &id));
        mxu_res_printf(res, " id=%llu", (unsigned long long)id);
    } else if (strcmp(path, "/q-consume") == 0) {
        mxu_queue_msg m = {0};
        rc = mxu_queue_consume(req, d, qn(req, "lease", 30000), &m);
        rc_line(req, res, rc);
        if (rc == 0) {
            mxu_res_printf(res, " len=%zu data=[", m.len);
            mxu_res_write(res, m.data, m.len);
            mxu_res_printf(res, "] receipt=[%s] attempts=%llu id=%llu", m.receipt,
                           (unsigned long long)m.attempts, (unsigned long long)m.id);
        }
    } else if (strcmp(path, "/q-ack") == 0) {
        rc_line(req, res, mxu_queue_ack(req, d, qp(req, "r", "")));
    } else if (strcmp(path, "/svc") == 0) {
        /* Forward the request's X-Fwd-* headers and body. */
        const char *names[40], *values[40], *n, *v;
        size_t nh = 0;
        for (size_t i = 0; mxu_req_header_at(req, i, &n, &v) == 0 && nh < 40; i++)
            if (strncmp(n, "X-Fwd-", 6) == 0) {
                names[nh] = n;
                values[nh++] = v;
            }
        size_t len;
        const void *body = mxu_req_body(req, &len);
        mxu_svc_reply out = {0};
        rc = mxu_svc_call_ex(req, d, qp(req, "m", "GET"), mxu_req_query_param(req, "p"), names,
                             values, nh, body, len, &out);
        rc_line(req, res, rc);
        if (rc == 0) {
            mxu_res_printf(res, " status=%d len=%zu body=[", out.status, out.len);
            mxu_res_write(res, out.body, out.len);
            mxu_res_printf(res, "] hdrs=[");
            for (size_t i = 0; i < out.headers.count; i++)
                mxu_res_printf(res, "%s: %s;", out.headers.names[i], out.headers.values[i]);
            mxu_res_printf(res, "]");
        }
    } else if (strcmp(path, "/calls") == 0) {
        /* n gets in a row; the body says how many failed. */
        uint64_t n = qn(req, "n", 1), failed = 0;
        for (uint64_t i = 0; i < n; i++) {
            const void *v;
            failed += mxu_kv_get(req, d, k, &v, NULL, NULL) != 0;
        }
        mxu_res_printf(res, "failed=%llu", (unsigned long long)failed);
    } else if (strcmp(path, "/fail-then-ok") == 0) {
        const void *v;
        int a = mxu_kv_get(req, d, "missing", &v, NULL, NULL);
        int b = mxu_kv_put(req, d, "k", "v", 1, NULL);
        mxu_res_printf(res, "a=%d b=%d last=[%s]", a, b, mxu_last_error(req));
    } else {
        return -1;
    }
    return 0;
}

/* Arguments the SDK must refuse itself, without sending anything. */
static void local_checks(mxu_req *req, mxu_res *res)
{
    const void *v;
    size_t got;
    uint64_t rev;
    mxu_page pg;
    mxu_queue_msg m;
    mxu_svc_reply out;
    char long_name[80];
    memset(long_name, 'a', sizeof(long_name) - 1);
    long_name[64] = '\0'; /* one byte over the limit */
    static const char *const bad_hn[] = {"Bad Name"}, *const ok_hv[] = {"v"};
    static const char *const ok_hn[] = {"X-Ok"}, *const bad_hv[] = {"a\r\nX-Evil: 1"};
    static const char *const cl_hn[] = {"Content-Length"};
    const char *many[31];
    for (int i = 0; i < 31; i++)
        many[i] = "X-A";
    struct {
        const char *what;
        int got, want;
    } c[] = {
        {"NULL desc", mxu_kv_get(req, NULL, "k", &v, NULL, NULL), MXU_E_INVALID},
        {"empty desc", mxu_kv_get(req, "", "k", &v, NULL, NULL), MXU_E_INVALID},
        {"64-byte desc", mxu_kv_get(req, long_name, "k", &v, NULL, NULL), MXU_E_INVALID},
        {"NULL key", mxu_kv_get(req, "orders", NULL, &v, NULL, NULL), MXU_E_INVALID},
        {"empty key", mxu_kv_delete(req, "orders", ""), MXU_E_INVALID},
        {"NULL val out", mxu_kv_get(req, "orders", "k", NULL, NULL, NULL), MXU_E_INVALID},
        {"NULL value", mxu_kv_put(req, "orders", "k", NULL, 3, &rev), MXU_E_INVALID},
        {"huge value", mxu_kv_put(req, "orders", "k", "x", (size_t)1 << 40, &rev), MXU_E_TOO_LARGE},
        {"NULL page", mxu_kv_list(req, "orders", "", "", 0, NULL), MXU_E_INVALID},
        {"NULL got", mxu_blob_read(req, "b", "k", 0, 1, &v, NULL, NULL), MXU_E_INVALID},
        {"NULL data", mxu_blob_write(req, "b", "k", NULL, 1), MXU_E_INVALID},
        {"NULL page blob", mxu_blob_list(req, "b", NULL, NULL, 0, NULL), MXU_E_INVALID},
        {"NULL writer", mxu_blob_writer_write(NULL, "x", 1), MXU_E_INVALID},
        {"NULL writer close", mxu_blob_writer_close(NULL), MXU_E_INVALID},
        {"writer bad key", mxu_blob_writer_open(req, "b", "") == NULL ? MXU_E_INVALID : 0,
         MXU_E_INVALID},
        {"lease 0", mxu_queue_consume(req, "q", 0, &m), MXU_E_INVALID},
        {"NULL msg out", mxu_queue_consume(req, "q", 10, NULL), MXU_E_INVALID},
        {"NULL receipt", mxu_queue_ack(req, "q", NULL), MXU_E_INVALID},
        {"NULL message", mxu_queue_publish(req, "q", NULL, 2, NULL), MXU_E_INVALID},
        {"bad method", mxu_svc_call(req, "s", "GE T", "/", NULL, 0, &out), MXU_E_INVALID},
        {"NULL method", mxu_svc_call(req, "s", NULL, "/", NULL, 0, &out), MXU_E_INVALID},
        {"relative path", mxu_svc_call(req, "s", "GET", "x", NULL, 0, &out), MXU_E_INVALID},
        {"CRLF path", mxu_svc_call(req, "s", "GET", "/a\r\nb", NULL, 0, &out), MXU_E_INVALID},
        {"NULL svc out", mxu_svc_call(req, "s", "GET", "/", NULL, 0, NULL), MXU_E_INVALID},
        {"bad header name", mxu_svc_call_ex(req, "s", "GET", "/", bad_hn, ok_hv, 1, NULL, 0, &out),
         MXU_E_INVALID},
        {"header injection", mxu_svc_call_ex(req, "s", "GET", "/", ok_hn, bad_hv, 1, NULL, 0, &out),
         MXU_E_INVALID},
        {"framing header", mxu_svc_call_ex(req, "s", "GET", "/", cl_hn, ok_hv, 1, NULL, 0, &out),
         MXU_E_INVALID},
        {"NULL header arrays", mxu_svc_call_ex(req, "s", "GET", "/", NULL, NULL, 1, NULL, 0, &out),
         MXU_E_INVALID},
        {"31 headers", mxu_svc_call_ex(req, "s", "GET", "/", many, many, 31, NULL, 0, &out),
         MXU_E_TOO_LARGE},
    };
    (void)got;
    (void)pg;
    int bad = 0;
    for (size_t i = 0; i < sizeof(c) / sizeof(c[0]); i++)
        if (c[i].got != c[i].want) {
            mxu_res_printf(res, "%s: %d, not %d; ", c[i].what, c[i].got, c[i].want);
            bad = 1;
        }
    if (!*mxu_last_error(req))
        mxu_res_printf(res, "no last error; ");
    if (strcmp(mxu_strerror(0), "ok") != 0 || strcmp(mxu_strerror(-999), "unknown error") != 0)
        mxu_res_printf(res, "strerror; ");
    if (!bad)
        mxu_res_printf(res, "ok");
}

int mxu_handle(mxu_req *req, mxu_res *res)
{
    const char *path = mxu_req_path(req);
    if (strncmp(path, "/kv-", 4) == 0 || strncmp(path, "/blob-", 6) == 0 ||
        strncmp(path, "/q-", 3) == 0 || strcmp(path, "/svc") == 0 || strcmp(path, "/calls") == 0 ||
        strcmp(path, "/fail-then-ok") == 0) {
        if (resources(req, res, path) == 0)
            return 0;
    }
    if (strcmp(path, "/local-checks") == 0) {
        if (*mxu_last_error(req))
            mxu_res_printf(res, "last error not reset; ");
        local_checks(req, res);
        return 0;
    }
    if (strcmp(path, "/echo") == 0) {
        echo(req, res);
    } else if (strcmp(path, "/headers") == 0) {
        list_headers(req, res);
    } else if (strcmp(path, "/params") == 0) {
        params(req, res);
    } else if (strcmp(path, "/fail") == 0) {
        mxu_res_printf(res, "oops");
        return 1;
    } else if (strcmp(path, "/error") == 0) {
        /* what came before is replaced: the body, and a Content-Type */
        mxu_res_header(res, "Content-Type", "text/plain");
        mxu_res_header(res, "X-Kept", "1");
        mxu_res_printf(res, "partial");
        if (mxu_res_error(res, 200, "x", "not an error status") != -1 ||
            mxu_res_error(res, 422, NULL, "no code") != -1)
            return mxu_res_printf(res, "bad arguments taken"), 1;
        return mxu_res_error(res, 422, "bad \"input\"", "got %s at %d",
                             (const char *)mxu_req_body(req, NULL), 7);
    } else if (strcmp(path, "/fail-status") == 0) {
        mxu_res_status(res, 418);
        return -1;
    } else if (strcmp(path, "/log") == 0) {
        mxu_log(MXU_WARN, "handling %s\n", mxu_req_query(req));
        mxu_res_printf(res, "logged");
    } else if (strcmp(path, "/slow-log") == 0) {
        mxu_log(MXU_INFO, "before the wait");
        struct timespec ts = {0, 300 * 1000 * 1000};
        nanosleep(&ts, NULL);
    } else if (strcmp(path, "/config") == 0) {
        const char *g = mxu_config("GREETING"), *m = mxu_config("MISSING");
        mxu_res_printf(res, "GREETING=%s MISSING=%s fn=%s v=%u init=%d", g ? g : "(null)",
                       m ? m : "(null)", mxu_function_name(), (unsigned)mxu_function_version(),
                       init_calls);
    } else if (strcmp(path, "/big") == 0) {
        big(req, res);
    } else if (strcmp(path, "/deadline") == 0) {
        mxu_res_printf(res, "%lld", (long long)mxu_deadline_ms(req));
    } else if (strcmp(path, "/alloc") == 0) {
        return check_alloc(req, res);
    } else if (strcmp(path, "/validation") == 0) {
        return check_validation(res);
    } else if (strcmp(path, "/nul") == 0) {
        size_t len;
        const char *body = mxu_req_body(req, &len);
        mxu_res_printf(res, "%s", strlen(body) == len ? "terminated" : "not terminated");
    } else {
        mxu_res_status(res, 404);
        mxu_res_printf(res, "no route %s", path);
    }
    return 0;
}
