/*
 * probe — a test function that does what its query asks, so end-to-end tests
 * can make an instance sleep, crash, exit, spin, log, allocate or answer with
 * odd statuses, headers and sizes. With no query it reports who it is.
 */
#include <mxu/fn.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static unsigned long served;

static long qnum(mxu_req *req, const char *name, long dflt)
{
    const char *v = mxu_req_query_param(req, name);
    return v && *v ? strtol(v, NULL, 10) : dflt;
}

int mxu_handle(mxu_req *req, mxu_res *res)
{
    served++;
    const char *text = mxu_req_query_param(req, "stderr");
    if (text) {
        fprintf(stderr, "%s\n", text);
        fflush(stderr);
        mxu_log(MXU_INFO, "logged %s", text);
    }
    long ms = qnum(req, "sleep", 0);
    if (ms > 0) {
        struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
        nanosleep(&ts, NULL);
    }
    if (qnum(req, "crash", 0))
        raise(SIGSEGV);
    if (mxu_req_query_param(req, "exit"))
        _exit((int)qnum(req, "exit", 0));
    if (qnum(req, "spin", 0))
        for (volatile unsigned long i = 0;; i++)
            ;
    long mb = qnum(req, "alloc", 0);
    if (mb > 0) {
        char *p = malloc((size_t)mb << 20);
        if (p == NULL) {
            mxu_res_status(res, 500);
            mxu_res_printf(res, "alloc of %ld MiB failed\n", mb);
            return 0;
        }
        memset(p, 1, (size_t)mb << 20);
        free(p);
    }
    long status = qnum(req, "status", 200);
    mxu_res_status(res, (int)status);
    const char *hdr = mxu_req_query_param(req, "header");
    if (hdr) {
        const char *colon = strchr(hdr, ':');
        if (colon) {
            char name[128];
            size_t n =
                (size_t)(colon - hdr) < sizeof(name) - 1 ? (size_t)(colon - hdr) : sizeof(name) - 1;
            memcpy(name, hdr, n);
            name[n] = '\0';
            mxu_res_header(res, name, colon + 1);
        }
        mxu_res_header(res, "X-Probe", "yes");
    }
    long big = qnum(req, "big", -1);
    if (big >= 0) {
        char chunk[4096];
        memset(chunk, 'x', sizeof(chunk));
        for (long left = big; left > 0; left -= (long)sizeof(chunk))
            mxu_res_write(res, chunk, left < (long)sizeof(chunk) ? (size_t)left : sizeof(chunk));
        return 0;
    }
    if (qnum(req, "echo", 0)) {
        size_t len;
        const void *body = mxu_req_body(req, &len);
        mxu_res_set_body(res, body, len);
        return 0;
    }
    size_t body_len;
    mxu_req_body(req, &body_len);
    const char *cfg = mxu_config("PROBE_NAME");
    const char *ua = mxu_req_header(req, "X-Test");
    mxu_res_header(res, "Content-Type", "application/json");
    mxu_res_printf(res,
                   "{\"pid\":%d,\"served\":%lu,\"method\":\"%s\",\"path\":\"%s\",\"query\":\"%s\","
                   "\"body_len\":%zu,\"config\":\"%s\",\"x_test\":\"%s\",\"deadline_ms\":%lld,"
                   "\"version\":%u}",
                   (int)getpid(), served, mxu_req_method(req), mxu_req_path(req),
                   mxu_req_query(req), body_len, cfg ? cfg : "", ua ? ua : "",
                   (long long)mxu_deadline_ms(req), mxu_function_version());
    return 0;
}
