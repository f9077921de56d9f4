/*
 * counter — increments the counter named by ?name= and answers its new value:
 *
 *     $ curl 'localhost:8080/fn/counter?name=visits'
 *     {"name":"visits","value":42}
 *
 * The counters live in the kv store the manifest calls `counter`
 * (kv:counters). Many instances may increment the same counter at once, so a
 * plain get-then-put would lose updates; instead each increment is a
 * compare-and-set on the revision that was read, retried when another writer
 * got there first. Every way a call can fail maps to an HTTP status the
 * caller can act on.
 */
#include <mxu/fn.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Under heavy contention a few rounds are normal; this many means something
 * else is wrong, and the caller is better served by a 503 than a long wait. */
#define MAX_ATTEMPTS 20

/* A counter name: 1..64 of [A-Za-z0-9._-]. Keeps keys tidy and the JSON
 * below valid without an encoder. */
static int valid_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 64)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-", s[i]))
            return 0;
    return 1;
}

/* Answer a failed resource call with the status that tells the caller what
 * to do about it, and log the node's own explanation. */
static int fail(mxu_req *req, mxu_res *res, int rc)
{
    int status = rc == MXU_E_UNAVAILABLE    ? 503 /* try again later */
                 : rc == MXU_E_RATE_LIMITED ? 429
                 : rc == MXU_E_DEADLINE     ? 504
                                            : 500; /* DENIED etc.: misconfigured */
    mxu_log(MXU_ERROR, "counter store: %s", mxu_last_error(req));
    mxu_res_status(res, status);
    mxu_res_header(res, "Content-Type", "application/json");
    mxu_res_printf(res, "{\"error\":\"%s\"}\n", mxu_strerror(rc));
    return 0;
}

int mxu_handle(mxu_req *req, mxu_res *res)
{
    const char *name = mxu_req_query_param(req, "name");
    if (!name || !valid_name(name)) {
        mxu_res_status(res, 400);
        mxu_res_printf(res, "{\"error\":\"?name= must be 1 to 64 of A-Z a-z 0-9 . _ -\"}\n");
        return 0;
    }

    for (int attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
        /* Read the current value and its revision; a missing counter is 0
         * at revision 0, which kv_cas reads as "create it". */
        const void *val;
        uint64_t rev = 0;
        unsigned long long n = 0;
        int rc = mxu_kv_get(req, "counter", name, &val, NULL, &rev);
        if (rc == 0)
            n = strtoull(val, NULL, 10); /* values are NUL-terminated for us */
        else if (rc != MXU_E_NOT_FOUND)
            return fail(req, res, rc);

        char next[24];
        int len = snprintf(next, sizeof(next), "%llu", n + 1);
        rc = mxu_kv_cas(req, "counter", name, rev, next, (size_t)len, NULL);
        if (rc == 0) {
            mxu_res_header(res, "Content-Type", "application/json");
            mxu_res_printf(res, "{\"name\":\"%s\",\"value\":%s}\n", name, next);
            return 0;
        }
        if (rc != MXU_E_CONFLICT)
            return fail(req, res, rc);
        /* Someone else wrote in between: read again and retry. */
    }
    mxu_res_status(res, 503);
    mxu_res_printf(res, "{\"error\":\"too much contention on %s\"}\n", name);
    return 0;
}
