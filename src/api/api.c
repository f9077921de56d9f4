/*
 * Routing and the error vocabulary. Everything a client can get wrong is
 * answered here with a 4xx and a message that says what to fix; statuses are
 * chosen from errno-style codes only at this edge.
 */
#include "api-internal.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

mxu_api *mxu_api_create(const mxu_api_config *cfg)
{
    mxu_api *api = mxu_calloc(1, sizeof(*api));
    api->cfg = *cfg;
    api->data_dir = mxu_strdup(cfg->data_dir ? cfg->data_dir : "");
    api->listen = mxu_strdup(cfg->listen ? cfg->listen : "");
    api->cfg.data_dir = api->data_dir;
    api->cfg.listen = api->listen;
    if (!api->cfg.max_invoke_body)
        api->cfg.max_invoke_body = 6u << 20;
    api->started_ms = mxu_wall_ms();
    return api;
}

void mxu_api_destroy(mxu_api *api)
{
    if (api == NULL)
        return;
    free(api->data_dir);
    free(api->listen);
    free(api);
}

void api_json_with(mxu_http_req *req, int status, json_t *body, const mxu_http_header *extra,
                   size_t nextra)
{
    mxu_buf out = {0};
    char *s = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    if (s) {
        mxu_buf_puts(&out, s);
        free(s);
    }
    mxu_buf_puts(&out, "\n");
    mxu_http_header h[4] = {{"Content-Type", "application/json"}};
    size_t n = 1;
    for (size_t i = 0; i < nextra && n < MXU_ARRAY_LEN(h); i++)
        h[n++] = extra[i];
    mxu_http_respond(req, status, h, n, &out);
    mxu_buf_free(&out);
}

void api_json(mxu_http_req *req, int status, json_t *body)
{
    api_json_with(req, status, body, NULL, 0);
}

void api_error(mxu_http_req *req, int status, const char *code, json_t *extra, const char *fmt, ...)
{
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    json_t *err = json_pack("{s:s, s:s}", "code", code, "message", msg);
    if (err == NULL) /* message not UTF-8 (it quotes client input): say less */
        err = json_pack("{s:s, s:s}", "code", code, "message", "request rejected");
    if (extra) {
        json_object_update(err, extra);
        json_decref(extra);
    }
    /* The header tells a node's own error from a function's JSON answer. */
    mxu_http_header h = {"X-Mxu-Error", code};
    api_json_with(req, status, json_pack("{s:o}", "error", err), &h, 1);
}

void api_error_from(mxu_http_req *req, const mxu_err *err, const char *name, const char *ref)
{
    MXU_UNUSED(name);
    switch (err->code) {
    case ENOENT: {
        /* The registry's message says what is missing; pick the code to match. */
        const char *code = "function_not_found";
        if (strstr(err->msg, "alias"))
            code = "alias_not_found";
        else if (strstr(err->msg, "version") && ref && *ref)
            code = "version_not_found";
        api_error(req, 404, code, NULL, "%s", err->msg);
        return;
    }
    case EBUSY:
    case EEXIST:
        api_error(req, 409, "conflict", NULL, "%s", err->msg);
        return;
    case E2BIG:
    case EFBIG:
        api_error(req, 413, "body_too_large", NULL, "%s", err->msg);
        return;
    case EINVAL:
        api_error(req, 400, "bad_request", NULL, "%s", err->msg);
        return;
    default:
        api_error(req, 500, "internal", NULL, "%s", err->msg);
        return;
    }
}

/* ---- authentication and authorization ---------------------------------------- */

/* A denial says who was refused and why in the node's log: the 401s and 403s
 * a client got are what an operator looks for after "it says forbidden". */
static void log_denial(mxu_http_req *req, int status, const char *msg)
{
    mxu_warn("denied %d: %s %.200s from %s: %s", status, mxu_http_req_method(req),
             mxu_http_req_path(req), mxu_http_req_peer(req), msg);
}

void api_unauthorized(mxu_http_req *req, const mxu_err *err)
{
    const char *code = "unknown_key";
    switch (err->code) {
    case ENOKEY:
        code = "missing_key";
        break;
    case EINVAL:
        code = "malformed_key";
        break;
    case EKEYREVOKED:
        code = "revoked_key";
        break;
    case EKEYEXPIRED:
        code = "expired_key";
        break;
    }
    log_denial(req, 401, err->msg);
    json_t *body = json_pack("{s:{s:s, s:s}}", "error", "code", code, "message", err->msg);
    mxu_http_header h[] = {{"WWW-Authenticate", "Bearer realm=\"mxu\""}, {"X-Mxu-Error", code}};
    api_json_with(req, 401, body, h, MXU_ARRAY_LEN(h));
}

const mxu_principal *api_authenticate(mxu_api *api, mxu_http_req *req)
{
    return api_authenticate_header(api, req, mxu_http_req_header(req, "Authorization"));
}

const mxu_principal *api_authenticate_header(mxu_api *api, mxu_http_req *req, const char *auth)
{
    const mxu_principal *who;
    mxu_err err;
    /* The connection remembers the key its last request proved. */
    mxu_auth_memo *memo = mxu_http_req_conn_data(req), *was = memo;
    int rc = mxu_policy_authenticate_memo(api->cfg.policy, auth, &memo, &who, &err);
    if (memo != was)
        mxu_http_req_set_conn_data(req, memo, mxu_auth_memo_free);
    if (rc < 0) {
        api_unauthorized(req, &err);
        return NULL;
    }
    return who;
}

bool api_allow(mxu_http_req *req, const mxu_principal *who, enum mxu_action act, const char *tenant,
               const char *function)
{
    mxu_err err;
    if (mxu_policy_check(who, act, tenant, function, &err) == 0)
        return true;
    log_denial(req, 403, err.msg);
    api_error(req, 403, "forbidden", NULL, "%s", err.msg);
    return false;
}

mxu_fn_version *api_resolve(mxu_api *api, const char *tenant, const char *name, const char *ref,
                            mxu_err *err)
{
    return mxu_registry_resolve(api->cfg.reg, tenant, name, ref, err);
}

void mxu_api_handle(mxu_http_req *req, void *ud)
{
    mxu_api *api = ud;
    const char *path = mxu_http_req_path(req);
    if (strncmp(path, "/fn/", 4) == 0) {
        api_invoke(api, req, NULL, path + 4);
        return;
    }
    /* /t/TENANT/fn/NAME: another tenant's function, named explicitly. */
    if (strncmp(path, "/t/", 3) == 0) {
        const char *t = path + 3, *slash = strchr(t, '/');
        char tenant[40];
        size_t tl = slash ? (size_t)(slash - t) : 0;
        if (slash && tl < sizeof(tenant) && strncmp(slash, "/fn/", 4) == 0) {
            memcpy(tenant, t, tl);
            tenant[tl] = '\0';
            if (mxu_tenant_name_valid(tenant)) {
                api_invoke(api, req, tenant, slash + 4);
                return;
            }
        }
        api_error(req, 400, "invalid_name", NULL,
                  "invoke another tenant's function as /t/TENANT/fn/NAME (tenant names are "
                  "lowercase letters, digits and '-', starting with a letter)");
        return;
    }
    /* Management calls carry small JSON; only deploys are big. */
    if (strcmp(path, "/v1") == 0 || strncmp(path, "/v1/", 4) == 0) {
        api_v1(api, req, path + 3);
        return;
    }
    if (strcmp(path, "/") == 0) {
        api_json(req, 200,
                 json_pack("{s:s, s:s, s:s}", "name", "mxu", "version", MXU_VERSION_STRING, "docs",
                           "invoke functions at /fn/NAME; manage them under /v1/ "
                           "(see docs/api.md)"));
        return;
    }
    api_error(req, 404, "not_found", NULL,
              "nothing at this path; functions are invoked at /fn/NAME and managed under /v1/");
}

int api_hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}
