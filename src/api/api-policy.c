/*
 * Policy documents over the API (docs/policy.md "Policy documents";
 * docs/api.md):
 *
 *   PUT  /v1/policy, POST /v1/policies   apply a document (a new version)
 *   GET  /v1/policy                      the version in force
 *   GET  /v1/policies                    every version of the scope
 *   GET  /v1/policies/N                  one version (canonical form, text)
 *   GET  /v1/policies/N/diff/M           unified diff of N's and M's canonical forms
 *
 * The scope is the node's document for the node admin, the caller's
 * tenant's for a tenant's admin; ?tenant=T names a tenant's (the node admin
 * any, a tenant's admin its own). Tenant default's rules are the node's
 * document, so ?tenant=default is the node's scope.
 */
#include "api-internal.h"

#include <errno.h>
#include <string.h>

/* The scope the request acts on: *tenant NULL for the node's document.
 * False after answering (400/403). */
static bool policy_scope(mxu_http_req *req, const mxu_principal *who, bool writing, char *buf,
                         size_t buflen, const char **tenant)
{
    bool named = api_query_str(req, "tenant", buf, buflen);
    if (named && !mxu_tenant_name_valid(buf)) {
        api_error(req, 400, "invalid_name", NULL, "?tenant= must be a tenant name");
        return false;
    }
    const char *t = named ? buf : mxu_principal_tenant(who);
    if (strcmp(t, MXU_TENANT_DEFAULT) == 0) {
        /* The node's document: its admin writes, its readers read. */
        mxu_err err;
        if (!writing && mxu_policy_check(who, MXU_ACT_NODE_READ, NULL, NULL, &err) == 0) {
            *tenant = NULL;
            return true;
        }
        if (!api_allow(req, who, MXU_ACT_NODE_ADMIN, NULL, NULL))
            return false;
        *tenant = NULL;
        return true;
    }
    if (!api_allow(req, who, MXU_ACT_POLICY, t, NULL))
        return false;
    *tenant = t;
    return true;
}

static void reply_err(mxu_http_req *req, const mxu_err *err)
{
    if (err->code == EINVAL)
        api_error(req, 400, "invalid_policy", NULL, "%s", err->msg);
    else if (err->code == ENOENT)
        api_error(req, 404, "not_found", NULL, "%s", err->msg);
    else
        api_error_from(req, err, NULL, NULL);
}

/* The body: {"document": TEXT, "file": NAME} (what the CLI sends), or the
 * YAML itself (curl --data-binary @policy.yaml). */
static void apply(mxu_api *api, mxu_http_req *req, const mxu_principal *who, const char *tenant)
{
    size_t len;
    const char *body = mxu_http_req_body(req, &len);
    json_t *j = NULL;
    const char *text = body, *file = "policy.yaml";
    if (len > 0 && body[0] == '{')
        j = json_loadb(body, len, 0, NULL); /* else a YAML flow mapping */
    if (j) {
        json_t *doc = json_object_get(j, "document");
        if (!json_is_string(doc)) {
            json_decref(j);
            api_error(req, 400, "bad_request", NULL,
                      "send {\"document\": YAML text, \"file\": name for messages}, or the YAML "
                      "document itself");
            return;
        }
        text = json_string_value(doc);
        len = json_string_length(doc);
        if (json_is_string(json_object_get(j, "file")))
            file = json_string_value(json_object_get(j, "file"));
    }
    json_t *info;
    mxu_err err;
    if (mxu_policy_doc_apply(api->cfg.policy, tenant, text ? text : "", text ? len : 0, file,
                             mxu_principal_key_id(who), &info, &err) < 0) {
        json_decref(j);
        reply_err(req, &err);
        return;
    }
    json_decref(j);
    api_json(req, 201, info);
}

static bool parse_version(const char *s, uint32_t *out)
{
    uint64_t n;
    if (mxu_parse_u64(s, &n) < 0 || n == 0 || n > UINT32_MAX)
        return false;
    *out = (uint32_t)n;
    return true;
}

bool api_policy_route(mxu_api *api, mxu_http_req *req, const mxu_principal *who,
                      const char *const *seg, size_t nseg)
{
    bool one = nseg == 1 && strcmp(seg[0], "policy") == 0;
    bool many = nseg >= 1 && nseg <= 4 && strcmp(seg[0], "policies") == 0;
    if (!one && !many)
        return false;
    bool get = api_is_method(req, "GET");
    bool post = api_is_method(req, "POST"), put = api_is_method(req, "PUT");
    bool writing = (one && put) || (many && nseg == 1 && post);
    if (!get && !writing) {
        api_method_not_allowed(req, one ? "GET, PUT" : nseg == 1 ? "GET, POST" : "GET");
        return true;
    }
    char tbuf[40];
    const char *tenant;
    if (!policy_scope(req, who, writing, tbuf, sizeof(tbuf), &tenant))
        return true;
    mxu_policy *pol = api->cfg.policy;
    mxu_err err;
    if (writing) {
        apply(api, req, who, tenant);
        return true;
    }
    if (one || nseg == 1) {
        if (one) {
            json_t *j = mxu_policy_doc_json(pol, tenant, 0, &err);
            if (j == NULL)
                reply_err(req, &err);
            else
                api_json(req, 200, j);
        } else {
            api_json(req, 200,
                     json_pack("{s:o}", "versions", mxu_policy_docs_json(pol, tenant, false)));
        }
        return true;
    }
    uint32_t a = 0, b = 0;
    if (!parse_version(seg[1], &a) || (nseg >= 3 && (nseg != 4 || strcmp(seg[2], "diff") != 0)) ||
        (nseg == 4 && !parse_version(seg[3], &b))) {
        api_error(req, 404, "not_found", NULL,
                  "no such API path: /v1/policies/N or /v1/policies/N/diff/M (versions are "
                  "numbers from 1)");
        return true;
    }
    if (nseg == 2) {
        json_t *j = mxu_policy_doc_json(pol, tenant, a, &err);
        if (j == NULL)
            reply_err(req, &err);
        else
            api_json(req, 200, j);
        return true;
    }
    char *diff;
    if (mxu_policy_doc_diff(pol, tenant, a, b, &diff, &err) < 0) {
        reply_err(req, &err);
        return true;
    }
    api_json(req, 200,
             json_pack("{s:i, s:i, s:o, s:s}", "from", (int)a, "to", (int)b, "tenant",
                       tenant ? json_string(tenant) : json_null(), "diff", diff));
    free(diff);
    return true;
}
