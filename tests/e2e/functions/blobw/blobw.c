/*
 * blobw — uploads of one key from several instances at once.
 *
 *   POST /put?k=KEY&pace=MS   stream the body into KEY through a writer, in
 *                             256 KiB pieces with MS ms between them, so that
 *                             two instances' chunks interleave on the node;
 *                             answers "PID START_MS END_MS"
 *   POST /leave?k=KEY[&crash=1] send the body through a writer but never
 *                             close it: return (or crash) with the upload open
 *   GET  /get?k=KEY           the whole object (409 if replaced while read)
 *   GET  /twice?k=KEY         a second writer of a key whose writer is open in
 *                             the same invocation is refused; says what
 *                             happened, one line per step
 *
 * Errors come back as "code: message" with a status per SDK error code.
 */
#include <mxu/fn.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static int fail(mxu_req *req, mxu_res *res, int code)
{
    mxu_res_status(res, code == MXU_E_CONFLICT ? 409 : code == MXU_E_NOT_FOUND ? 404 : 500);
    mxu_res_printf(res, "%s: %s\n", mxu_strerror(code), mxu_last_error(req));
    return 0;
}

static const char *q(mxu_req *req, const char *name, const char *dflt)
{
    const char *v = mxu_req_query_param(req, name);
    return v ? v : dflt;
}

static long long wall_ms(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (long long)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

static void pause_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static int put(mxu_req *req, mxu_res *res, const char *key)
{
    size_t len;
    const unsigned char *body = mxu_req_body(req, &len);
    long pace = strtol(q(req, "pace", "0"), NULL, 10);
    long long start = wall_ms();
    mxu_blob_writer *w = mxu_blob_writer_open(req, "shared", key);
    if (w == NULL)
        return fail(req, res, MXU_E_INVALID);
    const size_t piece = 256 * 1024;
    for (size_t off = 0; off < len; off += piece) {
        size_t n = len - off < piece ? len - off : piece;
        int rc = mxu_blob_writer_write(w, body + off, n);
        if (rc < 0) {
            mxu_blob_writer_abort(w);
            return fail(req, res, rc);
        }
        if (pace > 0)
            pause_ms(pace);
    }
    int rc = mxu_blob_writer_close(w);
    if (rc < 0)
        return fail(req, res, rc);
    mxu_res_printf(res, "%d %lld %lld", (int)getpid(), start, wall_ms());
    return 0;
}

static int leave(mxu_req *req, mxu_res *res, const char *key)
{
    size_t len;
    const void *body = mxu_req_body(req, &len);
    mxu_blob_writer *w = mxu_blob_writer_open(req, "shared", key);
    int rc = w ? mxu_blob_writer_write(w, body, len) : MXU_E_INVALID;
    if (rc < 0)
        return fail(req, res, rc);
    if (strcmp(q(req, "crash", "0"), "1") == 0)
        abort();
    mxu_res_printf(res, "left open");
    return 0;
}

/* One line per step: "NAME RC" (and the message when it failed). */
static void step(mxu_req *req, mxu_res *res, const char *name, int rc)
{
    mxu_res_printf(res, "%s %d%s%s\n", name, rc, rc < 0 ? " " : "",
                   rc < 0 ? mxu_last_error(req) : "");
}

static int twice(mxu_req *req, mxu_res *res, const char *key)
{
    mxu_blob_writer *w = mxu_blob_writer_open(req, "shared", key);
    step(req, res, "open", w ? 0 : -1);
    if (w == NULL)
        return 0;
    step(req, res, "write", mxu_blob_writer_write(w, "first-", 6));
    mxu_blob_writer *w2 = mxu_blob_writer_open(req, "shared", key);
    step(req, res, "open-again", w2 ? 0 : MXU_E_CONFLICT);
    if (w2 == NULL)
        mxu_res_printf(res, "message %s\n", mxu_last_error(req));
    step(req, res, "write-whole", mxu_blob_write(req, "shared", key, "x", 1));
    /* Another key, or the same key through another descriptor name, is fine. */
    char other[300];
    snprintf(other, sizeof(other), "%s.other", key);
    mxu_blob_writer *w3 = mxu_blob_writer_open(req, "shared", other);
    step(req, res, "open-other-key", w3 ? 0 : -1);
    if (w3)
        step(req, res, "close-other-key", mxu_blob_writer_close(w3));
    step(req, res, "write", mxu_blob_writer_write(w, "writer", 6));
    step(req, res, "close", mxu_blob_writer_close(w));
    /* Closed: the key is free again. */
    step(req, res, "write-whole-after", mxu_blob_write(req, "shared", key, "after", 5));
    mxu_blob_writer *w4 = mxu_blob_writer_open(req, "shared", key);
    step(req, res, "open-after", w4 ? 0 : -1);
    if (w4)
        mxu_blob_writer_abort(w4);
    return 0;
}

int mxu_handle(mxu_req *req, mxu_res *res)
{
    const char *path = mxu_req_path(req);
    const char *key = q(req, "k", "key");
    if (strcmp(path, "/put") == 0)
        return put(req, res, key);
    if (strcmp(path, "/leave") == 0)
        return leave(req, res, key);
    if (strcmp(path, "/twice") == 0)
        return twice(req, res, key);
    if (strcmp(path, "/get") == 0) {
        const void *data;
        size_t got;
        int rc = mxu_blob_read(req, "shared", key, 0, SIZE_MAX, &data, &got, NULL);
        if (rc < 0)
            return fail(req, res, rc);
        mxu_res_set_body(res, data, got);
        return 0;
    }
    mxu_res_status(res, 404);
    mxu_res_printf(res, "no route %s\n", path);
    return 0;
}
