/*
 * step — a test function for services (tests/e2e/test_services.py). One
 * program, deployed under many names, each told by its env what to do:
 *
 *   MODE=tag      answer JSON {"tag": TAG, "n": calls so far, "in": the body as text}
 *   MODE=append   answer the body with TAG appended (text/plain): a chain's order
 *   MODE=headers  answer JSON of the request: method, path, query, headers
 *   MODE=json     answer BODY as application/json
 *   MODE=fail     answer 500, always
 *   MODE=status   answer STATUS with TAG as the body
 *   MODE=echo     answer the body with its Content-Type
 *   MODE=svc      call its `next` descriptor (an svc: resource) with the body,
 *                 answer what it answered (a 599 saying why if the call failed)
 *
 * and before that, FAIL_FIRST=N answers 500 to its first N calls (the count
 * is the instance's: deploy with max_instances 1), SLEEP_MS=N sleeps.
 */
#include <mxu/fn.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static long served;

static const char *env(const char *name, const char *dflt)
{
    const char *v = mxu_config(name);
    return v && *v ? v : dflt;
}

/* A JSON string of n bytes (control bytes and non-ASCII as \u00XX). */
static void json_str(mxu_res *res, const char *s, size_t n)
{
    mxu_res_write(res, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\')
            mxu_res_printf(res, "\\%c", c);
        else if (c < 0x20 || c >= 0x7f)
            mxu_res_printf(res, "\\u%04x", c);
        else
            mxu_res_write(res, s + i, 1);
    }
    mxu_res_write(res, "\"", 1);
}

int mxu_handle(mxu_req *req, mxu_res *res)
{
    served++;
    const char *mode = env("MODE", "tag");
    const char *tag = env("TAG", "");
    long sleep_ms = strtol(env("SLEEP_MS", "0"), NULL, 10);
    if (sleep_ms > 0) {
        struct timespec ts = {sleep_ms / 1000, (sleep_ms % 1000) * 1000000L};
        nanosleep(&ts, NULL);
    }
    size_t len;
    const char *body = mxu_req_body(req, &len);
    if (served <= strtol(env("FAIL_FIRST", "0"), NULL, 10) || strcmp(mode, "fail") == 0) {
        mxu_res_status(res, 500);
        mxu_res_printf(res, "%s failed (call %ld)\n", tag, served);
        return 0;
    }
    if (strcmp(mode, "append") == 0) {
        mxu_res_header(res, "Content-Type", "text/plain");
        mxu_res_write(res, body, len);
        mxu_res_printf(res, "%s", tag);
        return 0;
    }
    if (strcmp(mode, "headers") == 0) {
        mxu_res_header(res, "Content-Type", "application/json");
        mxu_res_printf(res, "{\"tag\":");
        json_str(res, tag, strlen(tag));
        mxu_res_printf(res, ",\"method\":");
        json_str(res, mxu_req_method(req), strlen(mxu_req_method(req)));
        mxu_res_printf(res, ",\"path\":");
        json_str(res, mxu_req_path(req), strlen(mxu_req_path(req)));
        mxu_res_printf(res, ",\"query\":");
        json_str(res, mxu_req_query(req), strlen(mxu_req_query(req)));
        mxu_res_printf(res, ",\"headers\":{");
        for (size_t i = 0; i < mxu_req_header_count(req); i++) {
            const char *n, *v;
            if (mxu_req_header_at(req, i, &n, &v) != 0)
                continue;
            char lower[128];
            size_t k = 0;
            for (; n[k] && k + 1 < sizeof(lower); k++)
                lower[k] = (char)(n[k] >= 'A' && n[k] <= 'Z' ? n[k] + 32 : n[k]);
            lower[k] = '\0';
            mxu_res_printf(res, "%s", i ? "," : "");
            json_str(res, lower, k);
            mxu_res_write(res, ":", 1);
            json_str(res, v, strlen(v));
        }
        mxu_res_printf(res, "}}");
        return 0;
    }
    if (strcmp(mode, "json") == 0) {
        mxu_res_header(res, "Content-Type", "application/json");
        mxu_res_printf(res, "%s", env("BODY", "{}"));
        return 0;
    }
    if (strcmp(mode, "status") == 0) {
        mxu_res_status(res, (int)strtol(env("STATUS", "200"), NULL, 10));
        mxu_res_printf(res, "%s", tag);
        return 0;
    }
    if (strcmp(mode, "svc") == 0) {
        mxu_svc_reply r;
        int rc = mxu_svc_call(req, "next", "POST", "/", body, len, &r);
        if (rc != 0) {
            mxu_res_status(res, 599);
            mxu_res_printf(res, "svc call failed: %d %s", rc, mxu_last_error(req));
            return 0;
        }
        mxu_res_status(res, r.status);
        mxu_res_write(res, r.body, r.len);
        return 0;
    }
    if (strcmp(mode, "echo") == 0) {
        const char *ct = mxu_req_header(req, "Content-Type");
        if (ct)
            mxu_res_header(res, "Content-Type", ct);
        mxu_res_write(res, body, len);
        return 0;
    }
    mxu_res_header(res, "Content-Type", "application/json");
    mxu_res_printf(res, "{\"tag\":");
    json_str(res, tag, strlen(tag));
    mxu_res_printf(res, ",\"n\":%ld,\"in\":", served);
    json_str(res, body ? body : "", body ? len : 0);
    mxu_res_printf(res, "}");
    return 0;
}
