/*
 * svc-chain — one link of the svc chain benchmark (bench/resources.sh).
 * GET ?hops=K: K > 0 calls the next link (this function again, through the
 * `next` descriptor) with hops=K-1 and answers what it answered; K = 0
 * answers "ok". So /fn/svc-chain?hops=K is K svc hops plus the HTTP request.
 */
#include <mxu/fn.h>

#include <stdio.h>
#include <stdlib.h>

int mxu_handle(mxu_req *req, mxu_res *res)
{
    const char *h = mxu_req_query_param(req, "hops");
    long hops = h ? strtol(h, NULL, 10) : 0;
    if (hops <= 0) {
        mxu_res_set_body(res, "ok", 2);
        return 0;
    }
    char pq[32];
    snprintf(pq, sizeof(pq), "/?hops=%ld", hops - 1);
    mxu_svc_reply out;
    int rc = mxu_svc_call(req, "next", "GET", pq, NULL, 0, &out);
    if (rc < 0) {
        mxu_res_status(res, 502);
        mxu_res_printf(res, "hop %ld: %s\n", hops, mxu_last_error(req));
        return 0;
    }
    mxu_res_status(res, out.status);
    mxu_res_set_body(res, out.body, out.len);
    return 0;
}
