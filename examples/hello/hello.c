/*
 * hello — the smallest useful mxu function: answers "hello, world", or
 * "hello, NAME" for /fn/hello?name=NAME. The greeting word comes from the
 * manifest's env (GREETING), to show configuration without getenv().
 */
#include <mxu/fn.h>

int mxu_handle(mxu_req *req, mxu_res *res)
{
    const char *greeting = mxu_config("GREETING");
    const char *name = mxu_req_query_param(req, "name");
    if (!name || !*name)
        name = "world";
    mxu_res_header(res, "Content-Type", "text/plain; charset=utf-8");
    mxu_res_printf(res, "%s, %s\n", greeting ? greeting : "hello", name);
    return 0;
}
