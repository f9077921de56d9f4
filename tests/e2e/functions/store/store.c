/*
 * store — a test function that uses its resources as the request says, so
 * end-to-end tests can drive kv, blob, queue and svc descriptors over HTTP.
 * Errors come back with a status per SDK error code and "code: message".
 */
#include <mxu/fn.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int fail(mxu_req *req, mxu_res *res, int code)
{
    int status = 500;
    switch (code) {
    case MXU_E_DENIED:
        status = 403;
        break;
    case MXU_E_NOT_FOUND:
        status = 404;
        break;
    case MXU_E_CONFLICT:
        status = 409;
        break;
    case MXU_E_TOO_LARGE:
        status = 413;
        break;
    case MXU_E_RATE_LIMITED:
        status = 429;
        break;
    case MXU_E_UNAVAILABLE:
        status = 503;
        break;
    case MXU_E_DEADLINE:
        status = 504;
        break;
    case MXU_E_CALL_FAILED:
        status = 502;
        break;
    case MXU_E_INVALID:
        status = 400;
        break;
    default:
        break;
    }
    mxu_res_status(res, status);
    mxu_res_printf(res, "%s: %s\n", mxu_strerror(code), mxu_last_error(req));
    return 0;
}

static const char *q(mxu_req *req, const char *name, const char *dflt)
{
    const char *v = mxu_req_query_param(req, name);
    return v ? v : dflt;
}

int mxu_handle(mxu_req *req, mxu_res *res)
{
    const char *path = mxu_req_path(req);
    const char *desc = q(req, "d", NULL);
    const char *key = q(req, "k", "key");
    size_t blen;
    const void *body = mxu_req_body(req, &blen);
    int rc;

    if (strcmp(path, "/kv/get") == 0) {
        const void *val;
        size_t len;
        uint64_t rev;
        if ((rc = mxu_kv_get(req, desc ? desc : "db", key, &val, &len, &rev)) < 0)
            return fail(req, res, rc);
        char r[32];
        snprintf(r, sizeof(r), "%" PRIu64, rev);
        mxu_res_header(res, "X-Revision", r);
        mxu_res_set_body(res, val, len);
    } else if (strcmp(path, "/kv/put") == 0) {
        uint64_t rev;
        if ((rc = mxu_kv_put(req, desc ? desc : "db", key, body, blen, &rev)) < 0)
            return fail(req, res, rc);
        mxu_res_printf(res, "%" PRIu64, rev);
    } else if (strcmp(path, "/kv/del") == 0) {
        if ((rc = mxu_kv_delete(req, desc ? desc : "db", key)) < 0)
            return fail(req, res, rc);
    } else if (strcmp(path, "/kv/cas") == 0) {
        uint64_t rev;
        uint64_t expected = strtoull(q(req, "rev", "0"), NULL, 10);
        if ((rc = mxu_kv_cas(req, desc ? desc : "db", key, expected, body, blen, &rev)) < 0)
            return fail(req, res, rc);
        mxu_res_printf(res, "%" PRIu64, rev);
    } else if (strcmp(path, "/kv/incr") == 0) {
        /* A counter by compare-and-set: no increment may be lost. */
        for (int attempt = 0; attempt < 1000; attempt++) {
            const void *val;
            size_t len;
            uint64_t rev = 0, nrev;
            rc = mxu_kv_get(req, "db", key, &val, &len, &rev);
            if (rc < 0 && rc != MXU_E_NOT_FOUND)
                return fail(req, res, rc);
            long n = rc == 0 ? strtol(val, NULL, 10) : 0;
            char next[32];
            int nl = snprintf(next, sizeof(next), "%ld", n + 1);
            rc = mxu_kv_cas(req, "db", key, rc == 0 ? rev : 0, next, (size_t)nl, &nrev);
            if (rc == 0) {
                mxu_res_printf(res, "%ld", n + 1);
                return 0;
            }
            if (rc != MXU_E_CONFLICT)
                return fail(req, res, rc);
        }
        return fail(req, res, MXU_E_CONFLICT);
    } else if (strcmp(path, "/kv/list") == 0) {
        mxu_kv_page page;
        if ((rc = mxu_kv_list(req, "db", q(req, "prefix", ""), q(req, "cursor", ""),
                              (size_t)atoi(q(req, "limit", "0")), &page)) < 0)
            return fail(req, res, rc);
        for (size_t i = 0; i < page.count; i++)
            mxu_res_printf(res, "%s\n", page.keys[i]);
        mxu_res_header(res, "X-Next", page.next);
    } else if (strcmp(path, "/blob/put") == 0) {
        if ((rc = mxu_blob_write(req, "files", key, body, blen)) < 0)
            return fail(req, res, rc);
    } else if (strcmp(path, "/blob/get") == 0) {
        const void *data;
        size_t got;
        uint64_t size;
        if ((rc = mxu_blob_read(req, "files", key, 0, SIZE_MAX, &data, &got, &size)) < 0)
            return fail(req, res, rc);
        mxu_res_set_body(res, data, got);
    } else if (strcmp(path, "/blob/big") == 0) {
        /* Stream N MiB through the writer (never whole in memory), then
         * check its size and a range at the end. */
        long mb = strtol(q(req, "mb", "1"), NULL, 10);
        static char piece[256 * 1024];
        mxu_blob_writer *w = mxu_blob_writer_open(req, "files", key);
        if (w == NULL)
            return fail(req, res, MXU_E_INVALID);
        for (long i = 0; i < mb * 4; i++) {
            memset(piece, 'a' + (int)(i % 26), sizeof(piece));
            if ((rc = mxu_blob_writer_write(w, piece, sizeof(piece))) < 0) {
                mxu_blob_writer_abort(w);
                return fail(req, res, rc);
            }
        }
        if ((rc = mxu_blob_writer_close(w)) < 0)
            return fail(req, res, rc);
        uint64_t size, mtime;
        const void *tail;
        size_t got;
        if ((rc = mxu_blob_stat(req, "files", key, &size, &mtime)) < 0 ||
            (rc = mxu_blob_read(req, "files", key, size - 4, 4, &tail, &got, &size)) < 0)
            return fail(req, res, rc);
        mxu_res_printf(res, "%" PRIu64 " %.*s", size, (int)got, (const char *)tail);
    } else if (strcmp(path, "/blob/stat") == 0) {
        uint64_t size, mtime;
        if ((rc = mxu_blob_stat(req, "files", key, &size, &mtime)) < 0)
            return fail(req, res, rc);
        mxu_res_printf(res, "%" PRIu64, size);
    } else if (strcmp(path, "/blob/del") == 0) {
        if ((rc = mxu_blob_delete(req, "files", key)) < 0)
            return fail(req, res, rc);
    } else if (strcmp(path, "/q/pub") == 0) {
        uint64_t id;
        if ((rc = mxu_queue_publish(req, "jobs", body, blen, &id)) < 0)
            return fail(req, res, rc);
        mxu_res_printf(res, "%" PRIu64, id);
    } else if (strcmp(path, "/q/take") == 0) {
        mxu_queue_msg m;
        if ((rc = mxu_queue_consume(req, "jobs", strtoull(q(req, "lease", "30000"), NULL, 10),
                                    &m)) < 0)
            return fail(req, res, rc);
        char att[32];
        snprintf(att, sizeof(att), "%" PRIu64, m.attempts);
        mxu_res_header(res, "X-Receipt", m.receipt);
        mxu_res_header(res, "X-Attempts", att);
        mxu_res_set_body(res, m.data, m.len);
    } else if (strcmp(path, "/q/ack") == 0) {
        if ((rc = mxu_queue_ack(req, "jobs", q(req, "r", ""))) < 0)
            return fail(req, res, rc);
    } else if (strcmp(path, "/svc") == 0) {
        mxu_svc_reply out;
        const char *target = q(req, "to", "callee");
        if ((rc = mxu_svc_call(req, target, "GET", q(req, "path", "/"), body, blen, &out)) < 0)
            return fail(req, res, rc);
        mxu_res_status(res, out.status);
        mxu_res_header(res, "X-Called", "1");
        mxu_res_set_body(res, out.body, out.len);
    } else if (strcmp(path, "/recurse") == 0) {
        /* Calls itself until the node's call depth limit stops it. */
        mxu_svc_reply out;
        if ((rc = mxu_svc_call(req, "self", "GET", "/recurse", NULL, 0, &out)) < 0)
            return fail(req, res, rc);
        mxu_res_status(res, out.status);
        mxu_res_set_body(res, out.body, out.len);
    } else if (strcmp(path, "/deadline") == 0) {
        mxu_res_printf(res, "%lld", (long long)mxu_deadline_ms(req));
    } else {
        mxu_res_status(res, 404);
        mxu_res_printf(res, "no route %s\n", path);
    }
    return 0;
}
