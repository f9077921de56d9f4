/* svc-noop — the svc benchmark's callee: answers 200 "ok" and does nothing else. */
#include <mxu/fn.h>

int mxu_handle(mxu_req *req, mxu_res *res)
{
    (void)req;
    mxu_res_set_body(res, "ok", 2);
    return 0;
}
