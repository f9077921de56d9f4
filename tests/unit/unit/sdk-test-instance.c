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
    mxu_log(MXU_INFO, "init %s v%u", mxu_function_name(), (unsigned)mxu_function_version());
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

int mxu_handle(mxu_req *req, mxu_res *res)
{
    const char *path = mxu_req_path(req);
    if (strcmp(path, "/echo") == 0) {
        echo(req, res);
    } else if (strcmp(path, "/headers") == 0) {
        list_headers(req, res);
    } else if (strcmp(path, "/params") == 0) {
        params(req, res);
    } else if (strcmp(path, "/fail") == 0) {
        mxu_res_printf(res, "oops");
        return 1;
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
