/*
 * Limits, priority classes and quotas over the API (docs/policy.md, "Traffic
 * shaping", "Quotas"; docs/api.md):
 *
 *   GET|PUT /v1/tenants/T/limits   {"rate": "100/s", "burst": 20, "concurrency": 50}
 *   GET|PUT /v1/tenants/T/quotas   {"invocations": N, "gb_seconds": N, "bytes_out": N|"10GiB"}
 *   GET|PUT /v1/keys/ID/limits     the limits above, plus "priority"
 *
 * A PUT changes the fields it names and keeps the others; null removes one.
 * Changes are durable before the answer and apply to the very next request.
 * Tenants' limits and quotas are the node admin's; a tenant's admin may read
 * them, and set its own keys' limits and classes.
 */
#include "api-internal.h"

#include <errno.h>
#include <string.h>

int api_limits_merge(const mxu_limits *cur, json_t *body, mxu_limits *out, mxu_err *err)
{
    json_t *all = mxu_limits_json(cur);
    json_object_del(all, "burst_in_force");
    const char *k;
    json_t *v;
    json_object_foreach(body, k, v)
    {
        if (strcmp(k, "priority") != 0)
            json_object_set(all, k, v);
    }
    int rc = mxu_limits_from_json(all, out, err);
    json_decref(all);
    return rc;
}

static void reply_error(mxu_http_req *req, const mxu_err *err)
{
    if (err->code == EINVAL)
        api_error(req, 400, "bad_request", NULL, "%s", err->msg);
    else if (err->code == ENOENT)
        api_error(req, 404, "not_found", NULL, "%s", err->msg);
    else
        api_error_from(req, err, NULL, NULL);
}

/* A quota field: a whole number, a size for bytes_out ("10GiB"), or null. */
static int quota_field(json_t *body, const char *name, uint64_t *v, mxu_err *err)
{
    json_t *f = json_object_get(body, name);
    if (f == NULL)
        return 0;
    if (json_is_null(f)) {
        *v = 0;
        return 0;
    }
    if (json_is_integer(f) && json_integer_value(f) >= 1) {
        *v = (uint64_t)json_integer_value(f);
        return 0;
    }
    if (json_is_string(f) && strcmp(name, "bytes_out") == 0)
        return mxu_parse_size(json_string_value(f), v, err) < 0 ? mxu_err_prefix(err, "bytes_out")
                                                                : 0;
    return mxu_err_set(err, EINVAL, "%s: expected a whole number of at least 1, or null%s", name,
                       strcmp(name, "bytes_out") == 0 ? " (or a size like \"10GiB\")" : "");
}

static void tenant_route(mxu_api *api, mxu_http_req *req, const mxu_principal *who,
                         const char *tenant, const char *what)
{
    mxu_policy *pol = api->cfg.policy;
    mxu_err err;
    bool get = api_is_method(req, "GET");
    if (!get && !api_is_method(req, "PUT")) {
        api_method_not_allowed(req, "GET, PUT");
        return;
    }
    if (!api_allow(req, who, get ? MXU_ACT_KEYS : MXU_ACT_NODE_ADMIN, tenant, NULL))
        return;
    if (!mxu_policy_tenant_exists(pol, tenant)) {
        api_error(req, 404, "tenant_not_found", NULL, "no tenant '%.40s'", tenant);
        return;
    }
    if (!get) {
        json_t *body = api_body_json(req);
        if (body == NULL)
            return;
        json_t *cur = mxu_policy_tenant_limits_json(pol, tenant);
        int rc;
        if (strcmp(what, "limits") == 0) {
            mxu_limits have, lim;
            mxu_limits_from_json(json_object_get(cur, "limits"), &have, &err);
            rc = api_limits_merge(&have, body, &lim, &err);
            if (rc == 0)
                rc = mxu_policy_tenant_limits_set(pol, tenant, &lim, &err);
        } else {
            json_t *q = json_object_get(cur, "quotas");
            mxu_quota quota = {
                .invocations = (uint64_t)json_integer_value(json_object_get(q, "invocations")),
                .gb_seconds = (uint64_t)json_integer_value(json_object_get(q, "gb_seconds")),
                .bytes_out = (uint64_t)json_integer_value(json_object_get(q, "bytes_out")),
            };
            const char *k;
            json_t *v;
            rc = 0;
            json_object_foreach(body, k, v)
            {
                if (strcmp(k, "invocations") && strcmp(k, "gb_seconds") && strcmp(k, "bytes_out"))
                    rc = mxu_err_set(&err, EINVAL,
                                     "unknown field '%.40s' (quotas have invocations, "
                                     "gb_seconds and bytes_out)",
                                     k);
            }
            if (rc == 0 && (quota_field(body, "invocations", &quota.invocations, &err) < 0 ||
                            quota_field(body, "gb_seconds", &quota.gb_seconds, &err) < 0 ||
                            quota_field(body, "bytes_out", &quota.bytes_out, &err) < 0))
                rc = -1;
            if (rc == 0)
                rc = mxu_policy_quota_set(pol, tenant, &quota, &err);
        }
        json_decref(cur);
        json_decref(body);
        if (rc < 0) {
            reply_error(req, &err);
            return;
        }
        mxu_info("%s of tenant %s set by key %s", what, tenant, mxu_principal_key_id(who));
    }
    api_json(req, 200, mxu_policy_tenant_limits_json(pol, tenant));
}

static void key_route(mxu_api *api, mxu_http_req *req, const mxu_principal *who, const char *id)
{
    mxu_policy *pol = api->cfg.policy;
    mxu_err err;
    bool get = api_is_method(req, "GET");
    if (!get && !api_is_method(req, "PUT")) {
        api_method_not_allowed(req, "GET, PUT");
        return;
    }
    const char *tenant = mxu_policy_key_tenant(pol, id);
    if (tenant == NULL) {
        api_error(req, 404, "key_not_found", NULL, "no key '%.40s'", id);
        return;
    }
    if (!api_allow(req, who, MXU_ACT_KEYS, tenant, NULL))
        return;
    if (!get) {
        json_t *body = api_body_json(req);
        if (body == NULL)
            return;
        /* The limits' fields at the top level, beside "priority". */
        json_t *limits = json_deep_copy(body);
        json_object_del(limits, "priority");
        int rc = api_key_shape_apply(pol, id, json_object_size(limits) ? limits : NULL,
                                     json_object_get(body, "priority"), &err);
        json_decref(limits);
        if (rc < 0) {
            json_decref(body);
            reply_error(req, &err);
            return;
        }
        json_decref(body);
        mxu_info("limits of key %s set by key %s", id, mxu_principal_key_id(who));
    }
    api_json(req, 200, mxu_policy_key_limits_json(pol, id));
}

int api_key_shape_check(json_t *body, mxu_err *err)
{
    mxu_limits lim;
    enum mxu_priority prio;
    json_t *l = json_object_get(body, "limits"), *p = json_object_get(body, "priority");
    if (l && !json_is_null(l) && mxu_limits_from_json(l, &lim, err) < 0)
        return -1;
    if (p && (!json_is_string(p) || mxu_priority_parse(json_string_value(p), &prio, err) < 0))
        return mxu_err_set(err, EINVAL, "priority: one of critical, default, batch");
    return 0;
}

int api_key_shape_apply(mxu_policy *pol, const char *id, json_t *limits, json_t *priority,
                        mxu_err *err)
{
    enum mxu_priority prio = MXU_PRIO_DEFAULT;
    if (priority && (!json_is_string(priority) ||
                     mxu_priority_parse(json_string_value(priority), &prio, err) < 0))
        return mxu_err_set(err, EINVAL, "priority: one of critical, default, batch");
    if (limits) {
        mxu_limits have = {0}, lim = {0};
        json_t *cur = mxu_policy_key_limits_json(pol, id);
        mxu_limits_from_json(json_object_get(cur, "limits"), &have, err);
        json_decref(cur);
        if (!json_is_null(limits) && api_limits_merge(&have, limits, &lim, err) < 0)
            return -1;
        if (mxu_policy_key_limits_set(pol, id, &lim, err) < 0)
            return -1;
    }
    if (priority && mxu_policy_key_priority_set(pol, id, prio, err) < 0)
        return -1;
    return 0;
}

bool api_shape_route(mxu_api *api, mxu_http_req *req, const mxu_principal *who,
                     const char *const *seg, size_t nseg)
{
    if (nseg != 3)
        return false;
    if (strcmp(seg[0], "tenants") == 0 &&
        (strcmp(seg[2], "limits") == 0 || strcmp(seg[2], "quotas") == 0)) {
        tenant_route(api, req, who, seg[1], seg[2]);
        return true;
    }
    if (strcmp(seg[0], "keys") == 0 && strcmp(seg[2], "limits") == 0) {
        key_route(api, req, who, seg[1]);
        return true;
    }
    return false;
}
