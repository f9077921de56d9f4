/*
 * kv-counter — a catalogue block (docs/catalog.md): counters by name in the
 * kv store behind the `counters` descriptor (kv:counters unless deployed
 * with --bind counters=kv:OTHER).
 *
 *   POST|GET /fn/kv-counter?name=visits          add 1, answer the new value
 *   ...?name=visits&by=-5                        add -5
 *   ...?name=visits&op=get                       read (0 when absent)
 *   ...?name=visits&op=reset                     delete (answers 0)
 *   /fn/kv-counter/visits                        the name may be the path instead
 *   (no name)                                    the NAME setting's counter, if set
 *
 * Answers {"name": "visits", "value": 42}. Increments are compare-and-set on
 * the revision that was read, retried on conflict, so concurrent callers on
 * any number of instances never lose one (as in examples/counter). Values
 * are signed 64-bit decimal text in the store; overflow is a 422, and a key
 * holding something else is a 409 rather than being overwritten.
 *
 * Only the SDK is used: no system library, so the block suits every executor.
 */
#include <mxu/fn.h>

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_ATTEMPTS 50
#define NAME_CHARS   "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._:-"

/* A failed store call: the status that tells the caller what to do. */
static int store_failed(mxu_req *req, mxu_res *res, int rc)
{
    int status = rc == MXU_E_UNAVAILABLE    ? 503
                 : rc == MXU_E_RATE_LIMITED ? 429
                 : rc == MXU_E_DEADLINE     ? 504
                 : rc == MXU_E_DENIED       ? 403
                                            : 500;
    mxu_log(MXU_ERROR, "counter store: %s", mxu_last_error(req));
    return mxu_res_error(res, status, "store_error", "%s", mxu_last_error(req));
}

static int parse_ll(const char *s, size_t len, long long *out)
{
    char buf[32];
    if (len == 0 || len >= sizeof(buf))
        return -1;
    memcpy(buf, s, len);
    buf[len] = '\0';
    char *end;
    errno = 0;
    long long v = strtoll(buf, &end, 10);
    if (errno || *end || end == buf)
        return -1;
    *out = v;
    return 0;
}

static int answer(mxu_res *res, const char *name, long long v)
{
    mxu_res_header(res, "Content-Type", "application/json");
    mxu_res_printf(res, "{\"name\":\"%s\",\"value\":%lld}\n", name, v);
    return 0;
}

int mxu_handle(mxu_req *req, mxu_res *res)
{
    const char *name = mxu_req_query_param(req, "name");
    const char *path = mxu_req_path(req);
    if ((!name || !*name) && path[0] == '/' && path[1])
        name = path + 1;
    /* NAME: the counter of a request that names none, e.g. a step of a
     * service, whose request is the step before's answer. */
    if (!name || !*name)
        name = mxu_config("NAME");
    if (!name || !*name)
        return mxu_res_error(
            res, 400, "missing_name",
            "name the counter: ?name=visits, /fn/NAME/visits, or the NAME setting");
    size_t nlen = strlen(name);
    if (nlen > 128 || strspn(name, NAME_CHARS) != nlen)
        return mxu_res_error(res, 400, "invalid_name",
                             "a counter name is 1 to 128 of letters, digits and . _ : -");
    const char *op = mxu_req_query_param(req, "op");
    if (!op || !*op)
        op = "incr";
    long long by = 1;
    const char *by_s = mxu_req_query_param(req, "by");
    if (by_s && *by_s && parse_ll(by_s, strlen(by_s), &by) < 0)
        return mxu_res_error(res, 400, "invalid_setting", "by must be a whole number");
    const char *prefix = mxu_config("PREFIX");
    char key[513]; /* a kv key is 1 to 512 bytes: cutting it would merge counters */
    if ((size_t)snprintf(key, sizeof(key), "%s%s", prefix ? prefix : "", name) >= sizeof(key))
        return mxu_res_error(res, 500, "not_configured",
                             "PREFIX is too long: with the counter's name, a key is at most 512 "
                             "bytes");

    if (strcmp(op, "reset") == 0) {
        int rc = mxu_kv_delete(req, "counters", key);
        if (rc < 0 && rc != MXU_E_NOT_FOUND)
            return store_failed(req, res, rc);
        return answer(res, name, 0);
    }
    int get = strcmp(op, "get") == 0;
    if (!get && strcmp(op, "incr") != 0)
        return mxu_res_error(res, 400, "invalid_setting", "op must be incr, get or reset");
    for (int attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
        const void *val;
        size_t len = 0;
        uint64_t rev = 0; /* absent: 0 at revision 0, and CAS 0 means create */
        long long n = 0;
        int rc = mxu_kv_get(req, "counters", key, &val, &len, &rev);
        if (rc == 0) {
            if (parse_ll(val, len, &n) < 0)
                return mxu_res_error(
                    res, 409, "not_a_counter",
                    "the value of '%s' is not a whole number; reset it with op=reset", name);
        } else if (rc != MXU_E_NOT_FOUND) {
            return store_failed(req, res, rc);
        }
        if (get)
            return answer(res, name, n);
        long long next;
        if (__builtin_add_overflow(n, by, &next))
            return mxu_res_error(res, 422, "overflow", "'%s' would pass the 64-bit range", name);
        char text[32];
        int tlen = snprintf(text, sizeof(text), "%lld", next);
        rc = mxu_kv_cas(req, "counters", key, rev, text, (size_t)tlen, NULL);
        if (rc == 0)
            return answer(res, name, next);
        if (rc != MXU_E_CONFLICT)
            return store_failed(req, res, rc);
        /* someone else wrote in between: read again */
    }
    return mxu_res_error(res, 503, "contention", "'%s' is contended; retry later", name);
}
