/* Shared by the api files. */
#ifndef MXU_API_INTERNAL_H
#define MXU_API_INTERNAL_H

#include "api/api.h"

#include <jansson.h>

struct mxu_api {
    mxu_api_config cfg;
    char *data_dir;
    char *listen;
    uint64_t started_ms;
};

/* Answer with JSON (the reference is stolen). */
void api_json(mxu_http_req *req, int status, json_t *body);
/* The same with extra headers (at most 3). */
void api_json_with(mxu_http_req *req, int status, json_t *body, const mxu_http_header *extra,
                   size_t nextra);
/* Answer with {"error":{"code","message"}} plus optional extra fields
 * (stolen, may be NULL). */
void api_error(mxu_http_req *req, int status, const char *code, json_t *extra, const char *fmt, ...)
    MXU_PRINTF(5, 6);
/* Map a registry/core error to status + code and answer. */
void api_error_from(mxu_http_req *req, const mxu_err *err, const char *name, const char *ref);

void api_method_not_allowed(mxu_http_req *req, const char *allow);
bool api_is_method(mxu_http_req *req, const char *m);
/* The request body as a JSON object; NULL after answering 400 if it is not one. */
json_t *api_body_json(mxu_http_req *req);

/* api-meter.c. The request's size as usage records count it. */
uint64_t api_request_bytes(mxu_http_req *req);
/* Answer once `rec` is durable (at once with metering off), filling its
 * http_status and bytes_out first. Headers are copied, the body taken;
 * done(ud), if given, runs right after the answer went out. */
void api_respond_metered(mxu_api *api, mxu_http_req *req, mxu_usage_record *rec, int status,
                         const mxu_http_header *hdrs, size_t nhdrs, mxu_buf *body,
                         void (*done)(void *ud), void *ud);
/* A refused invocation: whose function, the answer, and for 429s when to
 * come back. */
typedef struct api_rejection {
    const char *tenant, *function;
    uint32_t version;      /* 0: none resolved */
    uint64_t memory_bytes; /* the version's configured memory, for the record */
    int status;
    const char *code, *message;
    uint32_t retry_after_s; /* > 0: a Retry-After header and "retry_after" */
} api_rejection;
/* Refuse an invocation with a JSON error (as api_error, plus an
 * X-Mxu-Invocation-Id), recording it as rejected first. */
void api_reject(mxu_api *api, mxu_http_req *req, const api_rejection *rj);
/* The same for `tenant`'s function, the message formatted: for 404, 413,
 * and the policy layer's 401/403 once the tenant is known. */
void api_reject_metered(mxu_api *api, mxu_http_req *req, const char *tenant, const char *function,
                        uint32_t version, int status, const char *code, const char *fmt, ...)
    MXU_PRINTF(8, 9);
/* /v1/usage, /v1/bills, /v1/prices; false if the path is none of them.
 * `only_tenant`: the caller may read only this tenant's usage and bills
 * (their ?tenant= is this one or absent, checked by the caller); NULL: any. */
bool api_meter_route(mxu_api *api, mxu_http_req *req, const char *const *seg, size_t nseg,
                     const char *only_tenant);
/* Unix ms or ISO-8601 UTC ("2026-11-30", "2026-11-30T05:18:01Z"). */
int api_parse_time_ms(const char *s, uint64_t *out);
/* `tenant`: from /t/TENANT/fn/..., or NULL for /fn/ (the caller's tenant). */
void api_invoke(mxu_api *api, mxu_http_req *req, const char *tenant, const char *target);
void api_v1(mxu_api *api, mxu_http_req *req, const char *path);

/* api-shape.c: /v1/tenants/T/limits, /v1/tenants/T/quotas, /v1/keys/ID/limits;
 * false if the path is none of them. */
bool api_shape_route(mxu_api *api, mxu_http_req *req, const mxu_principal *who,
                     const char *const *seg, size_t nseg);
/* `cur` with the fields of `body` that are limits' (null removes one). */
int api_limits_merge(const mxu_limits *cur, json_t *body, mxu_limits *out, mxu_err *err);
/* A key's "limits" and "priority" from a body: checked (before the key is
 * made) and applied (after). */
int api_key_shape_check(json_t *body, mxu_err *err);
int api_key_shape_apply(mxu_policy *pol, const char *id, json_t *limits, json_t *priority,
                        mxu_err *err);

/* api-policy.c: /v1/policy, /v1/policies[/N[/diff/M]]; false if the path is
 * none of them. */
bool api_policy_route(mxu_api *api, mxu_http_req *req, const mxu_principal *who,
                      const char *const *seg, size_t nseg);
/* The value of `key` in the query string (not decoded), or false if absent
 * or longer than the buffer (api-v1.c). */
bool api_query_str(mxu_http_req *req, const char *key, char *out, size_t outlen);

/* ---- authentication and authorization (api.c) ---- */

/* Authenticate the request (its Authorization header). On failure answer
 * 401 with WWW-Authenticate, log the denial and return NULL. */
const mxu_principal *api_authenticate(mxu_api *api, mxu_http_req *req);
/* The same with its Authorization header (NULL: none) already looked up. */
const mxu_principal *api_authenticate_header(mxu_api *api, mxu_http_req *req, const char *auth);
/* mxu_policy_check; on denial answer 403 naming the rule, log it, return false. */
bool api_allow(mxu_http_req *req, const mxu_principal *who, enum mxu_action act, const char *tenant,
               const char *function);
/* Resolve NAME@REF among the functions of `tenant`. */
mxu_fn_version *api_resolve(mxu_api *api, const char *tenant, const char *name, const char *ref,
                            mxu_err *err);
/* Answer 401 for a failed mxu_policy_authenticate. */
void api_unauthorized(mxu_http_req *req, const mxu_err *err);

/* The value of a hexadecimal digit, or -1 (percent-decoding). */
int api_hexval(char c);

#endif
