/*
 * res-bench — times resource calls from inside one invocation, as the
 * function sees them (bench/resources.sh).
 *
 *   /setup?d=DESC&k=KEY&size=BYTES  put a value of BYTES bytes under KEY
 *   /kv?d=DESC&k=KEY&n=N&warm=W     mxu_kv_get of KEY: W untimed, then N timed
 *   /bare?d=DESC&n=N&warm=W         mxu_blob_stat on the kv descriptor DESC:
 *                                   the node refuses it (INVALID: wrong kind)
 *                                   before any backend, so this is the bare
 *                                   RES_OP -> RES_REPLY round trip through
 *                                   the SDK, the channel and the node
 *   /svc?d=DESC&n=N&warm=W[&p=PATH] mxu_svc_call of the function behind DESC,
 *                                   GET PATH ("/" by default; the svc chain
 *                                   takes /?hops=K)
 *
 * Each timed call is bracketed by clock_gettime(CLOCK_MONOTONIC) (vDSO); the
 * answer is one JSON object: the count, percentiles of the per-call times in
 * ns (nearest rank), the mean over the whole timed loop, the median cost of
 * one clock_gettime pair (included in every sample), the errors, and the
 * first error's message. The value written by /setup is the same byte
 * pattern bench/src/redis-get.c uses: 'a' + i % 26.
 */
#include <mxu/fn.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static long qnum(mxu_req *req, const char *name, long dflt, long max)
{
    const char *v = mxu_req_query_param(req, name);
    long n = v && *v ? strtol(v, NULL, 10) : dflt;
    return n < 0 ? 0 : n > max ? max : n;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

/* Nearest rank: the smallest sample with at least p % of them at or below. */
static uint32_t pct(const uint32_t *s, size_t n, double p)
{
    size_t rank = (size_t)(p / 100.0 * (double)n + 0.999999);
    if (rank < 1)
        rank = 1;
    return s[(rank > n ? n : rank) - 1];
}

/* Median cost of two back-to-back clock reads. */
static uint32_t clock_cost(void)
{
    uint32_t s[1001];
    for (int i = 0; i < 1001; i++) {
        uint64_t a = now_ns();
        s[i] = (uint32_t)(now_ns() - a);
    }
    qsort(s, 1001, sizeof(s[0]), cmp_u32);
    return s[500];
}

enum mode { KV, BARE, SVC };

/* One call of the mode; 0 when it did what it should. */
static int one(mxu_req *req, enum mode m, const char *desc, const char *key, size_t want,
               const char *path)
{
    if (m == KV) {
        const void *val;
        size_t len;
        int rc = mxu_kv_get(req, desc, key, &val, &len, NULL);
        return rc < 0 ? rc : len == want ? 0 : MXU_E_INVALID;
    }
    if (m == BARE) {
        uint64_t size, mtime;
        int rc = mxu_blob_stat(req, desc, key, &size, &mtime);
        return rc == MXU_E_INVALID ? 0 : rc < 0 ? rc : MXU_E_CONFLICT;
    }
    mxu_svc_reply out;
    int rc = mxu_svc_call(req, desc, "GET", path, NULL, 0, &out);
    return rc < 0 ? rc : out.status == 200 && out.len == 2 ? 0 : MXU_E_CALL_FAILED;
}

static int run(mxu_req *req, mxu_res *res, enum mode m, const char *what)
{
    const char *desc = mxu_req_query_param(req, "d");
    const char *key = mxu_req_query_param(req, "k");
    long n = qnum(req, "n", 10000, 5000000);
    long warm = qnum(req, "warm", 1000, 1000000);
    size_t want = (size_t)qnum(req, "size", 0, 1 << 20);
    const char *path = mxu_req_query_param(req, "p");
    if (!desc || !*desc || n < 1) {
        mxu_res_status(res, 400);
        mxu_res_printf(res, "need d=DESC and n >= 1\n");
        return 0;
    }
    if (!key || !*key)
        key = "bench";
    if (!path || !*path)
        path = "/";
    uint32_t *s = malloc((size_t)n * sizeof(*s));
    if (!s) {
        mxu_res_status(res, 500);
        return 0;
    }
    long errors = 0;
    int first = 0;
    char why[200] = "";
    for (long i = 0; i < warm; i++)
        if (one(req, m, desc, key, want, path) != 0 && errors++ == 0)
            snprintf(why, sizeof(why), "warm-up: %s", mxu_last_error(req));
    uint32_t clk = clock_cost();
    uint64_t t0 = now_ns();
    for (long i = 0; i < n; i++) {
        uint64_t a = now_ns();
        int rc = one(req, m, desc, key, want, path);
        uint64_t b = now_ns();
        s[i] = (uint32_t)(b - a > UINT32_MAX ? UINT32_MAX : b - a);
        if (rc != 0 && errors++ == 0) {
            first = rc;
            snprintf(why, sizeof(why), "%s", mxu_last_error(req));
        }
    }
    uint64_t total = now_ns() - t0;
    qsort(s, (size_t)n, sizeof(s[0]), cmp_u32);
    size_t cnt = (size_t)n;
    for (char *p = why; *p; p++)
        if (*p == '"' || *p == '\\' || (unsigned char)*p < 0x20)
            *p = ' ';
    mxu_res_header(res, "Content-Type", "application/json");
    mxu_res_printf(res,
                   "{\"what\":\"%s\",\"desc\":\"%s\",\"n\":%ld,\"warm\":%ld,\"size\":%zu,"
                   "\"p50_ns\":%u,\"p90_ns\":%u,\"p99_ns\":%u,\"min_ns\":%u,\"max_ns\":%u,"
                   "\"mean_ns\":%.0f,\"clock_pair_ns\":%u,\"errors\":%ld,\"first_error\":%d,"
                   "\"why\":\"%s\"}\n",
                   what, desc, n, warm, want, pct(s, cnt, 50), pct(s, cnt, 90), pct(s, cnt, 99),
                   s[0], s[cnt - 1], (double)total / (double)n, clk, errors, first, why);
    free(s);
    return 0;
}

static int setup(mxu_req *req, mxu_res *res)
{
    const char *desc = mxu_req_query_param(req, "d");
    const char *key = mxu_req_query_param(req, "k");
    size_t size = (size_t)qnum(req, "size", 128, 1 << 20);
    if (!desc || !*desc) {
        mxu_res_status(res, 400);
        return 0;
    }
    char *v = mxu_alloc(req, size + 1);
    if (!v) {
        mxu_res_status(res, 500);
        return 0;
    }
    for (size_t i = 0; i < size; i++)
        v[i] = (char)('a' + i % 26);
    uint64_t rev;
    int rc = mxu_kv_put(req, desc, key && *key ? key : "bench", v, size, &rev);
    if (rc < 0) {
        mxu_res_status(res, 500);
        mxu_res_printf(res, "put: %s\n", mxu_last_error(req));
        return 0;
    }
    mxu_res_printf(res, "revision %llu, %zu bytes\n", (unsigned long long)rev, size);
    return 0;
}

int mxu_handle(mxu_req *req, mxu_res *res)
{
    const char *path = mxu_req_path(req);
    if (strcmp(path, "/setup") == 0)
        return setup(req, res);
    if (strcmp(path, "/kv") == 0)
        return run(req, res, KV, "kv_get");
    if (strcmp(path, "/bare") == 0)
        return run(req, res, BARE, "bare_res_op");
    if (strcmp(path, "/svc") == 0)
        return run(req, res, SVC, "svc_call");
    mxu_res_status(res, 404);
    mxu_res_printf(res, "paths: /setup /kv /bare /svc\n");
    return 0;
}
