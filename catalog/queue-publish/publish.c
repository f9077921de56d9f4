/*
 * queue-publish — a catalogue block (docs/catalog.md): publishes the request
 * body, as it is, as one message on the queue behind the `queue` descriptor
 * (queue:events unless deployed with --bind queue=queue:OTHER). The message
 * is durable when the answer comes: 202 {"id": 17, "bytes": 42}. With OUTPUT=passthrough it answers
 * the body itself (with its Content-Type) and the id in X-Message-Id, so that it can sit in the
 * middle of a pipeline as a tee.
 *
 * Only the SDK is used: no system library, so the block suits every executor.
 */
#include <mxu/fn.h>

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

int mxu_handle(mxu_req *req, mxu_res *res)
{
    size_t len;
    const void *body = mxu_req_body(req, &len);
    const char *allow = mxu_config("ALLOW_EMPTY");
    if (len == 0 && !(allow && strcmp(allow, "true") == 0))
        return mxu_res_error(res, 400, "empty_body", "nothing to publish: the body is empty");
    uint64_t id = 0;
    int rc = mxu_queue_publish(req, "queue", body, len, &id);
    if (rc < 0) {
        mxu_log(MXU_ERROR, "publish: %s", mxu_last_error(req));
        int status = rc == MXU_E_TOO_LARGE      ? 413
                     : rc == MXU_E_UNAVAILABLE  ? 503
                     : rc == MXU_E_RATE_LIMITED ? 429
                     : rc == MXU_E_DEADLINE     ? 504
                     : rc == MXU_E_DENIED       ? 403
                                                : 500;
        return mxu_res_error(res, status,
                             rc == MXU_E_TOO_LARGE ? "message_too_large" : "queue_error", "%s",
                             mxu_last_error(req));
    }
    const char *out = mxu_config("OUTPUT");
    if (out && strcmp(out, "passthrough") == 0) {
        char idtext[24];
        snprintf(idtext, sizeof(idtext), "%" PRIu64, id);
        mxu_res_header(res, "X-Message-Id", idtext);
        const char *ctype = mxu_req_header(req, "content-type");
        if (ctype)
            mxu_res_header(res, "Content-Type", ctype);
        mxu_res_set_body(res, body, len);
        return 0;
    }
    mxu_res_status(res, 202);
    mxu_res_header(res, "Content-Type", "application/json");
    mxu_res_printf(res, "{\"id\":%" PRIu64 ",\"bytes\":%zu}\n", id, len);
    return 0;
}
