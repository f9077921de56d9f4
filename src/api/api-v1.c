/*
 * /v1/ — the management API (docs/api.md): health, functions, versions,
 * aliases, logs, instances, and deploys. Paths are split into segments
 * once; each handler checks its method and answers 405 with Allow otherwise.
 */
#include "api-internal.h"
#include "exec/exec.h"

#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#define MAX_SEGMENTS 6

static void method_not_allowed(mxu_http_req *req, const char *allow)
{
    json_t *body = json_pack("{s:{s:s, s:s}}", "error", "code", "method_not_allowed", "message",
                             "this path does not accept that method");
    char *s = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    mxu_buf out = {0};
    mxu_buf_puts(&out, s);
    mxu_buf_puts(&out, "\n");
    free(s);
    mxu_http_header h[] = {{"Content-Type", "application/json"},
                           {"Allow", allow},
                           {"X-Mxu-Error", "method_not_allowed"}};
    mxu_http_respond(req, 405, h, 3, &out);
    mxu_buf_free(&out);
}

void api_method_not_allowed(mxu_http_req *req, const char *allow)
{
    method_not_allowed(req, allow);
}

bool api_is_method(mxu_http_req *req, const char *m)
{
    return strcmp(mxu_http_req_method(req), m) == 0;
}

/* Parse the request body as a JSON object, or answer 400 and return NULL. */
json_t *api_body_json(mxu_http_req *req)
{
    size_t len;
    const char *body = mxu_http_req_body(req, &len);
    json_error_t jerr;
    json_t *j = json_loadb(body ? body : "", len, 0, &jerr);
    if (j == NULL || !json_is_object(j)) {
        json_decref(j);
        api_error(req, 400, "bad_request", NULL, "the body must be a JSON object%s%s",
                  j ? "" : ": ", j ? "" : jerr.text);
        return NULL;
    }
    return j;
}

/* A body that is a JSON object with the string `field` (in *body, the caller
 * frees it), or NULL after answering 400 with `usage`. */
static const char *body_string(mxu_http_req *req, const char *field, const char *usage,
                               json_t **body)
{
    const char *v = NULL;
    *body = api_body_json(req);
    if (*body == NULL)
        return NULL;
    if (json_unpack(*body, "{s:s}", field, &v) < 0) {
        json_decref(*body);
        *body = NULL;
        api_error(req, 400, "bad_request", NULL, "%s", usage);
        return NULL;
    }
    return v;
}

static bool query_u64(mxu_http_req *req, const char *key, uint64_t *out)
{
    const char *q = mxu_http_req_query(req);
    size_t klen = strlen(key);
    while (q && *q) {
        const char *amp = strchr(q, '&');
        size_t len = amp ? (size_t)(amp - q) : strlen(q);
        if (len > klen && strncmp(q, key, klen) == 0 && q[klen] == '=') {
            char num[32];
            size_t n = len - klen - 1;
            if (n == 0 || n >= sizeof(num))
                return false;
            memcpy(num, q + klen + 1, n);
            num[n] = '\0';
            return mxu_parse_u64(num, out) == 0;
        }
        q = amp ? amp + 1 : NULL;
    }
    return false;
}

/* The value of `key` in the query string (not decoded; names need none), or
 * false if absent or longer than the buffer. */
bool api_query_str(mxu_http_req *req, const char *key, char *out, size_t outlen)
{
    const char *q = mxu_http_req_query(req);
    size_t klen = strlen(key);
    while (q && *q) {
        const char *amp = strchr(q, '&');
        size_t len = amp ? (size_t)(amp - q) : strlen(q);
        if (len > klen && strncmp(q, key, klen) == 0 && q[klen] == '=') {
            size_t n = len - klen - 1;
            if (n >= outlen)
                return false;
            memcpy(out, q + klen + 1, n);
            out[n] = '\0';
            return true;
        }
        q = amp ? amp + 1 : NULL;
    }
    return false;
}

/* Keep the elements of a JSON array whose `field` is a function name `who`
 * may read (its scope); the node admin sees everything. Steals `arr`. */
static json_t *filter_scope(const mxu_principal *who, json_t *arr, const char *field)
{
    if (mxu_principal_is_node_admin(who))
        return arr;
    json_t *out = json_array();
    size_t i;
    json_t *o;
    json_array_foreach(arr, i, o)
    {
        const char *name = json_string_value(json_object_get(o, field));
        if (name && mxu_scope_match(mxu_principal_scope(who), name))
            json_array_append(out, o);
    }
    json_decref(arr);
    return out;
}

/* ---- health, instances ---- */

static void get_health(mxu_api *api, mxu_http_req *req)
{
    /* Executors that can run units on this node (the sandbox needs cgroups, ...). */
    json_t *executors = json_array();
    for (size_t i = 0; mxu_executor_at(i); i++)
        if (!mxu_executor_unavailable(mxu_executor_at(i)->name))
            json_array_append_new(executors, json_string(mxu_executor_at(i)->name));
    json_t *j = json_pack("{s:s, s:s, s:I, s:s, s:s, s:o, s:o}", "status", "ok", "version",
                          MXU_VERSION_STRING, "uptime_s",
                          (json_int_t)((mxu_wall_ms() - api->started_ms) / 1000), "data_dir",
                          api->data_dir, "listen", api->listen, "executors", executors, "capacity",
                          mxu_sched_capacity_json(api->cfg.sched));
    json_object_set_new(j, "metering",
                        api->cfg.meter ? mxu_meter_stats_json(api->cfg.meter) : json_false());
    api_json(req, 200, j);
}

/* ---- deploy ---- */

typedef struct deploy_ctx {
    mxu_http_req *req;
    mxu_deploy_file *files;
    size_t nfiles;
    char **datas;
    char **paths;
    char *manifest;
    uint64_t started_ns;
} deploy_ctx;

static void deploy_ctx_free(deploy_ctx *c)
{
    for (size_t i = 0; i < c->nfiles; i++) {
        free(c->datas[i]);
        free(c->paths[i]);
    }
    free(c->datas);
    free(c->paths);
    free(c->manifest);
    free(c->files);
    free(c);
}

static void on_deployed(void *ud, const mxu_deploy_result *res)
{
    deploy_ctx *c = ud;
    if (res->rc < 0) {
        json_t *extra = json_pack("{s:s}", "build_log", res->build_log ? res->build_log : "");
        if (res->err.code == ENOEXEC)
            api_error(c->req, 422, "build_failed", extra, "%s", res->err.msg);
        else if (res->err.code == EINVAL)
            api_error(c->req, 400, "invalid_manifest", extra, "%s", res->err.msg);
        else
            api_error(c->req, 500, "internal", extra, "deploy failed: %s", res->err.msg);
        deploy_ctx_free(c);
        return;
    }
    double secs = (double)(mxu_now_ns() - c->started_ns) / 1e9;
    json_t *j =
        json_pack("{s:s, s:s, s:i, s:b, s:s, s:s, s:f}", "function", res->version->function,
                  "tenant", res->version->tenant, "version", (json_int_t)res->version->version,
                  "unchanged", res->unchanged, "digest", res->version->digest, "build_log",
                  res->build_log ? res->build_log : "", "seconds", secs);
    api_json(c->req, res->unchanged ? 200 : 201, j);
    deploy_ctx_free(c);
}

/* Deploy into `tenant`: the key's own, or for the node admin the one named
 * with ?tenant=. A deployer of another tenant can't deploy over this
 * tenant's functions: its deploys land in its own tenant. */
static void post_function(mxu_api *api, mxu_http_req *req, const mxu_principal *who,
                          const char *tenant)
{
    json_t *j = api_body_json(req);
    if (j == NULL)
        return;
    /* The key's scope is over function names, and the name is in the
     * manifest: parse it once here to check (a manifest that does not parse
     * is reported by the registry below, as before). */
    const char *mtext = json_string_value(json_object_get(j, "manifest"));
    mxu_manifest *pm = NULL;
    if (mtext && mxu_manifest_parse(mtext, strlen(mtext), "mxu.yaml", &pm, NULL) == 0) {
        bool ok = api_allow(req, who, MXU_ACT_FN_WRITE, tenant, pm->name);
        mxu_manifest_free(pm);
        if (!ok) {
            json_decref(j);
            return;
        }
    }
    const char *manifest = NULL, *mpath = "mxu.yaml";
    json_t *files = NULL;
    json_error_t jerr;
    if (json_unpack_ex(j, &jerr, 0, "{s:s, s?s, s?o}", "manifest", &manifest, "manifest_path",
                       &mpath, "files", &files) < 0 ||
        (files && !json_is_array(files))) {
        api_error(req, 400, "bad_request", NULL,
                  "a deploy is {\"manifest\": TEXT, \"manifest_path\": PATH, \"files\": "
                  "[{\"path\", \"mode\", \"data\" (base64)}]}: %s",
                  files && !json_is_array(files) ? "files must be an array" : jerr.text);
        json_decref(j);
        return;
    }
    deploy_ctx *c = mxu_calloc(1, sizeof(*c));
    c->req = req;
    c->started_ns = mxu_now_ns();
    size_t n = files ? json_array_size(files) : 0;
    c->files = mxu_calloc(n ? n : 1, sizeof(*c->files));
    c->datas = mxu_calloc(n ? n : 1, sizeof(char *));
    c->paths = mxu_calloc(n ? n : 1, sizeof(char *));
    for (size_t i = 0; i < n; i++) {
        const char *path = NULL, *b64 = NULL;
        json_int_t mode = 0644;
        if (json_unpack_ex(json_array_get(files, i), &jerr, 0, "{s:s, s?I, s:s}", "path", &path,
                           "mode", &mode, "data", &b64) < 0 ||
            mode < 0 || mode > 07777) {
            api_error(req, 400, "invalid_bundle", NULL, "files[%zu]: %s", i,
                      mode < 0 || mode > 07777 ? "mode must be permission bits" : jerr.text);
            deploy_ctx_free(c);
            json_decref(j);
            return;
        }
        size_t b64len = strlen(b64);
        char *bin = mxu_malloc(b64len / 4 * 3 + 3);
        size_t binlen = 0;
        if (sodium_base642bin((unsigned char *)bin, b64len / 4 * 3 + 3, b64, b64len, "\n\r ",
                              &binlen, NULL, sodium_base64_VARIANT_ORIGINAL) != 0) {
            free(bin);
            api_error(req, 400, "invalid_bundle", NULL, "files[%zu] (%s): data is not base64", i,
                      path);
            deploy_ctx_free(c);
            json_decref(j);
            return;
        }
        c->datas[i] = bin;
        c->paths[i] = mxu_strdup(path);
        c->files[i] = (mxu_deploy_file){
            .path = c->paths[i], .mode = (uint32_t)mode, .data = bin, .len = binlen};
        c->nfiles = i + 1;
    }
    /* Everything the registry gets stays alive in `c` until the callback. */
    mxu_err err;
    _cleanup_free_ char *mpath_copy = mxu_strdup(mpath);
    c->manifest = mxu_strdup(manifest);
    int rc = mxu_registry_deploy(api->cfg.reg, tenant, mpath, c->manifest, strlen(c->manifest),
                                 c->files, c->nfiles, on_deployed, c, &err);
    json_decref(j);
    mpath = mpath_copy;
    if (rc < 0) {
        const char *code =
            strncmp(err.msg, mpath, strlen(mpath)) == 0 ? "invalid_manifest" : "invalid_bundle";
        if (err.code == EINVAL)
            api_error(req, 400, code, NULL, "%s", err.msg);
        else
            api_error_from(req, &err, NULL, NULL);
        deploy_ctx_free(c);
    }
}

int mxu_api_deploy_local(mxu_api *api, const char *manifest_path, const char *manifest,
                         size_t manifest_len, const mxu_deploy_file *files, size_t nfiles,
                         mxu_deploy_cb cb, void *ud, mxu_err *err)
{
    return mxu_registry_deploy(api->cfg.reg, MXU_TENANT_DEFAULT, manifest_path, manifest,
                               manifest_len, files, nfiles, cb, ud, err);
}

/* ---- functions ---- */

static void get_function(mxu_api *api, mxu_http_req *req, const char *tenant, const char *name)
{
    mxu_err err;
    json_t *fn = mxu_registry_function_json(api->cfg.reg, tenant, name, &err);
    if (fn == NULL) {
        api_error_from(req, &err, name, NULL);
        return;
    }
    json_object_set_new(fn, "instances", mxu_sched_instances_json(api->cfg.sched, tenant, name));
    json_object_set_new(fn, "stats", mxu_sched_stats_json(api->cfg.sched, tenant, name));
    json_object_set_new(fn, "capacity", mxu_sched_capacity_json(api->cfg.sched));
    api_json(req, 200, fn);
}

static bool parse_version(const char *s, uint32_t *out)
{
    uint64_t v;
    if (mxu_parse_u64(s, &v) < 0 || v == 0 || v > UINT32_MAX)
        return false;
    *out = (uint32_t)v;
    return true;
}

/* GET of one part of a function's JSON, e.g. {"aliases": {...}}. */
static void get_function_field(mxu_api *api, mxu_http_req *req, const char *tenant,
                               const char *name, const char *field)
{
    mxu_err err;
    if (!api_is_method(req, "GET")) {
        method_not_allowed(req, "GET");
        return;
    }
    json_t *fn = mxu_registry_function_json(api->cfg.reg, tenant, name, &err);
    if (fn == NULL) {
        api_error_from(req, &err, name, NULL);
        return;
    }
    api_json(req, 200, json_pack("{s:O}", field, json_object_get(fn, field)));
    json_decref(fn);
}

static void versions(mxu_api *api, mxu_http_req *req, const char *tenant, const char *name,
                     const char *ver)
{
    mxu_err err;
    if (ver == NULL) {
        get_function_field(api, req, tenant, name, "versions");
        return;
    }
    uint32_t v;
    if (!parse_version(ver, &v)) {
        api_error(req, 400, "bad_request", NULL, "a version is a positive number");
        return;
    }
    if (api_is_method(req, "GET")) {
        mxu_fn_version *fv = mxu_registry_resolve(api->cfg.reg, tenant, name, ver, &err);
        if (fv == NULL) {
            api_error_from(req, &err, name, ver);
            return;
        }
        api_json(req, 200, mxu_fn_version_to_json(fv));
    } else if (api_is_method(req, "DELETE")) {
        if (mxu_registry_delete_version(api->cfg.reg, tenant, name, v, &err) < 0) {
            api_error_from(req, &err, name, ver);
            return;
        }
        char what[160];
        snprintf(what, sizeof(what), "%s@%u", name, v);
        api_json(req, 200, json_pack("{s:s}", "deleted", what));
    } else {
        method_not_allowed(req, "GET, DELETE");
    }
}

static void aliases(mxu_api *api, mxu_http_req *req, const char *tenant, const char *name,
                    const char *alias)
{
    mxu_err err;
    if (alias == NULL) {
        get_function_field(api, req, tenant, name, "aliases");
        return;
    }
    if (!mxu_name_valid(alias)) {
        api_error(req, 400, "invalid_name", NULL,
                  "alias names are lowercase letters, digits, '-' and '_', starting with a "
                  "letter");
        return;
    }
    if (api_is_method(req, "PUT")) {
        json_t *j = api_body_json(req);
        if (j == NULL)
            return;
        json_int_t v = 0;
        if (json_unpack(j, "{s:I}", "version", &v) < 0 || v <= 0 || v > UINT32_MAX) {
            json_decref(j);
            api_error(req, 400, "bad_request", NULL, "set an alias with {\"version\": N}");
            return;
        }
        json_decref(j);
        if (mxu_registry_set_alias(api->cfg.reg, tenant, name, alias, (uint32_t)v, &err) < 0) {
            char ref[16];
            snprintf(ref, sizeof(ref), "%u", (unsigned)v);
            api_error_from(req, &err, name, ref);
            return;
        }
        api_json(req, 200,
                 json_pack("{s:s, s:s, s:I}", "function", name, "alias", alias, "version", v));
    } else if (api_is_method(req, "DELETE")) {
        if (mxu_registry_delete_alias(api->cfg.reg, tenant, name, alias, &err) < 0) {
            api_error_from(req, &err, name, alias);
            return;
        }
        api_json(req, 200, json_pack("{s:s}", "deleted", alias));
    } else {
        method_not_allowed(req, "PUT, DELETE");
    }
}

static void logs(mxu_api *api, mxu_http_req *req, const char *tenant, const char *name)
{
    mxu_err err;
    if (!api_is_method(req, "GET")) {
        method_not_allowed(req, "GET");
        return;
    }
    /* Only to say "no such function" (a follower asks twice a second). */
    if (api_resolve(api, tenant, name, NULL, &err) == NULL) {
        api_error_from(req, &err, name, NULL);
        return;
    }
    uint64_t after = 0, limit = 1000, next = 0;
    query_u64(req, "after", &after);
    if (query_u64(req, "limit", &limit) && (limit == 0 || limit > 10000))
        limit = 10000;
    json_t *recs = mxu_sched_logs_json(api->cfg.sched, tenant, name, after, (size_t)limit, &next);
    api_json(req, 200, json_pack("{s:o, s:I}", "records", recs, "next", (json_int_t)next));
}

static void function_root(mxu_api *api, mxu_http_req *req, const char *tenant, const char *name)
{
    mxu_err err;
    if (api_is_method(req, "GET")) {
        get_function(api, req, tenant, name);
    } else if (api_is_method(req, "DELETE")) {
        if (mxu_registry_delete_function(api->cfg.reg, tenant, name, &err) < 0) {
            api_error_from(req, &err, name, NULL);
            return;
        }
        api_json(req, 200, json_pack("{s:s}", "deleted", name));
    } else {
        method_not_allowed(req, "GET, DELETE");
    }
}

/* ---- resources ---- */

typedef struct move_ctx {
    mxu_http_req *req;
    char *uri;
    uint64_t started_ns;
} move_ctx;

static void on_moved(void *ud, const mxu_err *err)
{
    move_ctx *c = ud;
    if (err)
        api_error(c->req, 502, "move_failed", NULL, "%s", err->msg);
    else
        api_json(c->req, 200,
                 json_pack("{s:s, s:f}", "moved", c->uri, "seconds",
                           (double)(mxu_now_ns() - c->started_ns) / 1e9));
    free(c->uri);
    free(c);
}

/* Keep the entries of a resource list that are `tenant`'s. Steals `arr`. */
static json_t *filter_tenant(json_t *arr, const char *tenant)
{
    json_t *out = json_array();
    size_t i;
    json_t *o;
    json_array_foreach(arr, i, o)
    {
        const char *t = json_string_value(json_object_get(o, "tenant"));
        if (t && strcmp(t, tenant) == 0)
            json_array_append(out, o);
    }
    json_decref(arr);
    return out;
}

/* The resource map is per tenant: kv:orders of tenant acme is another store
 * than default's. `tenant` is whose entries are read or changed; `all`: the
 * whole map (a node-wide reader listing without ?tenant=). */
/* A location other than `embedded` is a path or a server as the node sees
 * them (fs:///any/dir, redis://any-host): only the node admin may choose one,
 * or a tenant's admin could have the node write anywhere it may write, or
 * connect anywhere it can reach. */
static bool location_allowed(mxu_http_req *req, bool node_admin, const char *location)
{
    if (node_admin || strcmp(location, "embedded") == 0)
        return true;
    api_error(req, 403, "forbidden", NULL,
              "only the node admin may bind a resource to '%s': a tenant's admin may choose "
              "'embedded' (or reset to it)",
              location);
    return false;
}

static void resources(mxu_api *api, mxu_http_req *req, const char *tenant, bool all,
                      bool node_admin, const char *uri, const char *action)
{
    mxu_err err;
    if (api->cfg.resolver == NULL) {
        api_error(req, 404, "not_found", NULL, "this node has no resource map");
        return;
    }
    if (uri == NULL) {
        if (!api_is_method(req, "GET")) {
            method_not_allowed(req, "GET");
            return;
        }
        json_t *list = mxu_resolver_list_json(api->cfg.resolver);
        api_json(req, 200,
                 json_pack("{s:o}", "resources", all ? list : filter_tenant(list, tenant)));
        return;
    }
    if (action && strcmp(action, "move") == 0) {
        if (!api_is_method(req, "POST")) {
            method_not_allowed(req, "POST");
            return;
        }
        json_t *j;
        const char *to = body_string(req, "to", "move with {\"to\": LOCATION}", &j);
        if (to == NULL)
            return;
        if (!location_allowed(req, node_admin, to)) {
            json_decref(j);
            return;
        }
        move_ctx *c = mxu_calloc(1, sizeof(*c));
        c->req = req;
        c->uri = mxu_strdup(uri);
        c->started_ns = mxu_now_ns();
        int rc = mxu_resolver_move(api->cfg.resolver, tenant, uri, to, on_moved, c, &err);
        json_decref(j);
        if (rc < 0) {
            free(c->uri);
            free(c);
            api_error_from(req, &err, NULL, NULL);
        }
        return;
    }
    if (action) {
        api_error(req, 404, "not_found", NULL, "no such API path; see docs/api.md");
        return;
    }
    if (api_is_method(req, "PUT")) {
        json_t *j;
        const char *backend =
            body_string(req, "backend", "set a resource with {\"backend\": LOCATION}", &j);
        if (backend == NULL)
            return;
        if (!location_allowed(req, node_admin, backend)) {
            json_decref(j);
            return;
        }
        int rc = mxu_resolver_set(api->cfg.resolver, tenant, uri, backend, &err);
        json_t *out = rc == 0 ? json_pack("{s:s, s:s, s:s}", "resource", uri, "tenant", tenant,
                                          "backend", backend)
                              : NULL;
        json_decref(j);
        if (rc < 0)
            api_error_from(req, &err, NULL, NULL);
        else
            api_json(req, 200, out);
    } else if (api_is_method(req, "DELETE")) {
        if (mxu_resolver_set(api->cfg.resolver, tenant, uri, NULL, &err) < 0)
            api_error_from(req, &err, NULL, NULL);
        else
            api_json(req, 200,
                     json_pack("{s:s, s:s, s:s}", "resource", uri, "tenant", tenant, "backend",
                               "embedded"));
    } else {
        method_not_allowed(req, "PUT, DELETE");
    }
}

/* ---- tenants and keys ---- */

static void tenants(mxu_api *api, mxu_http_req *req, const mxu_principal *who, const char *name)
{
    mxu_err err;
    mxu_policy *pol = api->cfg.policy;
    if (!api_allow(req, who, MXU_ACT_NODE_ADMIN, NULL, NULL))
        return;
    if (name == NULL && api_is_method(req, "GET")) {
        api_json(req, 200, json_pack("{s:o}", "tenants", mxu_policy_tenants_json(pol)));
    } else if (name == NULL && api_is_method(req, "POST")) {
        json_t *j;
        const char *tname = body_string(req, "name", "create a tenant with {\"name\": NAME}", &j);
        if (tname == NULL)
            return;
        if (mxu_policy_tenant_create(pol, tname, &err) < 0) {
            json_decref(j);
            if (err.code == EINVAL)
                api_error(req, 400, "invalid_name", NULL, "%s", err.msg);
            else
                api_error_from(req, &err, NULL, NULL);
            return;
        }
        api_json(req, 201, json_pack("{s:s}", "tenant", tname));
        json_decref(j);
    } else if (name && api_is_method(req, "DELETE")) {
        /* A tenant that still owns functions keeps them reachable by nobody
         * but the node admin: make the owner delete them first. */
        if (strcmp(name, MXU_TENANT_DEFAULT) == 0) {
            api_error(req, 409, "conflict", NULL,
                      "tenant 'default' cannot be deleted: it owns the node");
            return;
        }
        size_t owned = mxu_tenant_name_valid(name) ? mxu_registry_count(api->cfg.reg, name) : 0;
        if (owned > 0) {
            /* Name a few: the operator has to delete them (or ask the
             * tenant to) before trying again. */
            json_t *fns = mxu_registry_list_json(api->cfg.reg, name);
            _cleanup_buf_ mxu_buf names = {0};
            size_t i;
            json_t *o;
            json_array_foreach(fns, i, o)
            {
                if (i == 5) {
                    mxu_buf_printf(&names, ", ... (%zu in all)", owned);
                    break;
                }
                mxu_buf_printf(&names, "%s%s", i ? ", " : "",
                               json_string_value(json_object_get(o, "name")));
            }
            json_decref(fns);
            api_error(req, 409, "conflict", json_pack("{s:I}", "functions", (json_int_t)owned),
                      "tenant %s still owns %zu function%s (%s); delete them first (DELETE "
                      "/v1/functions/NAME?tenant=%s)",
                      name, owned, owned == 1 ? "" : "s", names.data ? names.data : "", name);
            return;
        }
        if (mxu_policy_tenant_delete(pol, name, &err) < 0) {
            if (err.code == ENOENT)
                api_error(req, 404, "tenant_not_found", NULL, "%s", err.msg);
            else
                api_error_from(req, &err, NULL, NULL);
            return;
        }
        api_json(req, 200, json_pack("{s:s}", "deleted", name));
    } else {
        method_not_allowed(req, name ? "DELETE" : "GET, POST");
    }
}

static void post_key(mxu_api *api, mxu_http_req *req, const mxu_principal *who)
{
    mxu_err err;
    json_t *j = api_body_json(req);
    if (j == NULL)
        return;
    const char *tenant = mxu_principal_tenant(who), *role = NULL, *scope = NULL;
    const char *expires = NULL, *note = NULL;
    json_error_t jerr;
    if (json_unpack_ex(j, &jerr, 0, "{s?s, s:s, s?s, s?s, s?s}", "tenant", &tenant, "role", &role,
                       "scope", &scope, "expires_in", &expires, "note", &note) < 0) {
        api_error(req, 400, "bad_request", NULL,
                  "create a key with {\"role\": admin|deployer|invoker|viewer, \"tenant\": T, "
                  "\"scope\": GLOB, \"expires_in\": \"30d\", \"note\": TEXT}: %s",
                  jerr.text);
        json_decref(j);
        return;
    }
    mxu_key_spec spec = {.tenant = tenant, .scope = scope, .note = note};
    uint64_t ttl = 0;
    if (mxu_role_parse(role, &spec.role, &err) < 0 ||
        (expires && mxu_expiry_parse(expires, &ttl, &err) < 0)) {
        api_error(req, 400, "bad_request", NULL, "%s", err.msg);
        json_decref(j);
        return;
    }
    if (!mxu_tenant_name_valid(tenant)) {
        api_error(req, 400, "invalid_name", NULL, "'%.40s' is not a tenant name", tenant);
        json_decref(j);
        return;
    }
    if (!api_allow(req, who, MXU_ACT_KEYS, tenant, NULL)) {
        json_decref(j);
        return;
    }
    /* Limits and a priority class may come with the key (docs/policy.md). */
    if (api_key_shape_check(j, &err) < 0) {
        api_error(req, 400, "bad_request", NULL, "%s", err.msg);
        json_decref(j);
        return;
    }
    spec.expires_ms = ttl ? mxu_wall_ms() + ttl : 0;
    char *text = NULL;
    json_t *info = NULL;
    if (mxu_policy_key_create(api->cfg.policy, &spec, &text, &info, &err) < 0) {
        json_decref(j);
        if (err.code == ENOENT)
            api_error(req, 404, "tenant_not_found", NULL, "%s", err.msg);
        else
            api_error_from(req, &err, NULL, NULL);
        return;
    }
    const char *kid = json_string_value(json_object_get(info, "id"));
    if (json_object_get(j, "limits") || json_object_get(j, "priority")) {
        if (api_key_shape_apply(api->cfg.policy, kid, json_object_get(j, "limits"),
                                json_object_get(j, "priority"), &err) < 0)
            mxu_warn("key %s: its limits were not stored: %s", kid, err.msg);
        else
            json_object_update_new(info, mxu_policy_key_limits_json(api->cfg.policy, kid));
    }
    json_decref(j);
    mxu_info("key %s made for tenant %s (role %s) by key %s",
             json_string_value(json_object_get(info, "id")),
             json_string_value(json_object_get(info, "tenant")),
             json_string_value(json_object_get(info, "role")), mxu_principal_key_id(who));
    /* The only time the secret leaves the node. */
    json_object_set_new(info, "key", json_string(text));
    sodium_memzero(text, strlen(text));
    free(text);
    api_json(req, 201, info);
}

static void keys(mxu_api *api, mxu_http_req *req, const mxu_principal *who, const char *id)
{
    mxu_err err;
    mxu_policy *pol = api->cfg.policy;
    if (id == NULL && api_is_method(req, "GET")) {
        char tbuf[40];
        const char *tenant = mxu_principal_tenant(who);
        bool all = mxu_principal_is_node_admin(who);
        if (api_query_str(req, "tenant", tbuf, sizeof(tbuf))) {
            tenant = tbuf;
            all = false;
        }
        if (!api_allow(req, who, MXU_ACT_KEYS, tenant, NULL))
            return;
        api_json(req, 200,
                 json_pack("{s:o}", "keys", mxu_policy_keys_json(pol, all ? NULL : tenant)));
    } else if (id == NULL && api_is_method(req, "POST")) {
        post_key(api, req, who);
    } else if (id && api_is_method(req, "DELETE")) {
        const char *tenant = mxu_policy_key_tenant(pol, id);
        if (tenant == NULL) {
            api_error(req, 404, "key_not_found", NULL, "no key '%.40s'", id);
            return;
        }
        if (!api_allow(req, who, MXU_ACT_KEYS, tenant, NULL))
            return;
        if (mxu_policy_key_revoke(pol, id, &err) < 0) {
            api_error_from(req, &err, NULL, NULL);
            return;
        }
        mxu_info("key %s revoked by key %s", id, mxu_principal_key_id(who));
        api_json(req, 200, json_pack("{s:s}", "revoked", id));
    } else {
        method_not_allowed(req, id ? "DELETE" : "GET, POST");
    }
}

/* Decode %XX in place. A segment may not decode to '/' or NUL: that would
 * change how the path splits, or cut a name short. */
static int percent_decode(char *s)
{
    char *w = s;
    for (const char *r = s; *r; r++) {
        if (*r != '%') {
            *w++ = *r;
            continue;
        }
        int hi = api_hexval(r[1]);
        int lo = hi >= 0 ? api_hexval(r[2]) : -1;
        if (hi < 0 || lo < 0)
            return -1;
        char c = (char)(hi * 16 + lo);
        if (c == '/' || c == '\0')
            return -1;
        *w++ = c;
        r += 2;
    }
    *w = '\0';
    return 0;
}

/* GET /v1/traces/ID: the runs of a service trace (docs/api.md). Read as
 * logs are: the node's readers see every tenant's, anyone else their own
 * tenant's runs of services their key may read (FN_READ in scope). Another
 * tenant's trace is a 404, as if it were not there. */
static bool trace_readable(void *ud, const char *tenant, const char *service)
{
    mxu_err err;
    return mxu_policy_check(ud, MXU_ACT_FN_READ, tenant, service, &err) == 0;
}

/* The start of both trace routes: GET only; *node: the caller reads every
 * tenant's traces (NODE_READ), else only its own tenant's. */
static bool trace_reader(mxu_http_req *req, const mxu_principal *who, bool *node)
{
    if (!api_is_method(req, "GET")) {
        method_not_allowed(req, "GET");
        return false;
    }
    mxu_err err;
    *node = mxu_policy_check(who, MXU_ACT_NODE_READ, NULL, NULL, &err) == 0;
    return true;
}

static void trace_route(mxu_api *api, mxu_http_req *req, const mxu_principal *who, const char *id)
{
    bool node;
    if (!trace_reader(req, who, &node))
        return;
    mxu_err err;
    const char *own = mxu_principal_tenant(who);
    json_t *t = api->cfg.compose
                    ? mxu_compose_trace_json(api->cfg.compose, node ? NULL : own, id, &err)
                    : NULL;
    if (t == NULL) {
        api_error(req, 404, "trace_not_found", NULL, "no trace '%.40s' is kept on this node", id);
        return;
    }
    if (!node) {
        json_t *runs = json_object_get(t, "runs");
        char first[64] = "";
        for (size_t i = json_array_size(runs); i-- > 0;) {
            json_t *run = json_array_get(runs, i);
            const char *svc = json_string_value(json_object_get(run, "service"));
            snprintf(first, sizeof(first), "%s", svc ? svc : "");
            if (!trace_readable((void *)who, own, svc))
                json_array_remove(runs, i);
        }
        if (json_array_size(runs) == 0) {
            json_decref(t);
            api_allow(req, who, MXU_ACT_FN_READ, own, first); /* answers 403 */
            return;
        }
    }
    api_json(req, 200, t);
}

/* GET /v1/traces?service=NAME&limit=N: the most recent runs whose traces
 * are kept, newest first, as readable as GET /v1/traces/ID's. */
static void trace_list_route(mxu_api *api, mxu_http_req *req, const mxu_principal *who)
{
    bool node;
    if (!trace_reader(req, who, &node))
        return;
    const char *own = mxu_principal_tenant(who);
    if (!node && !api_allow(req, who, MXU_ACT_FN_READ, own, NULL))
        return;
    char service[128];
    bool one = api_query_str(req, "service", service, sizeof(service));
    uint64_t limit = 20;
    if (query_u64(req, "limit", &limit) && (limit == 0 || limit > 1000))
        limit = 1000;
    json_t *runs =
        api->cfg.compose
            ? mxu_compose_traces_json(api->cfg.compose, node ? NULL : own, one ? service : NULL,
                                      (size_t)limit, node ? NULL : trace_readable, (void *)who)
            : json_array();
    api_json(req, 200, json_pack("{s:o}", "runs", runs));
}

void api_v1(mxu_api *api, mxu_http_req *req, const char *path)
{
    /* Split "/functions/hello/aliases/prod" into segments. */
    char buf[512];
    const char *seg[MAX_SEGMENTS];
    size_t nseg = 0;
    size_t plen = strlen(path);
    if (plen >= sizeof(buf)) {
        api_error(req, 404, "not_found", NULL, "no such API path");
        return;
    }
    memcpy(buf, path, plen + 1);
    for (char *s = buf, *tok; (tok = strsep(&s, "/")) != NULL;) {
        if (*tok == '\0')
            continue;
        if (nseg == MAX_SEGMENTS) {
            api_error(req, 404, "not_found", NULL, "no such API path");
            return;
        }
        if (percent_decode(tok) < 0) {
            api_error(req, 400, "bad_request", NULL,
                      "bad percent-encoding in the path (or an encoded '/' or NUL)");
            return;
        }
        seg[nseg++] = tok;
    }
    if (nseg == 1 && strcmp(seg[0], "health") == 0) {
        /* Open without a key: load balancers and `mxu health` probe it, and
         * it tells nothing about any tenant. */
        if (!api_is_method(req, "GET"))
            method_not_allowed(req, "GET");
        else
            get_health(api, req);
        return;
    }
    const mxu_principal *who = api_authenticate(api, req);
    if (who == NULL)
        return;
    if (api_shape_route(api, req, who, seg, nseg))
        return;
    if (api_policy_route(api, req, who, seg, nseg))
        return;
    if (nseg >= 1 && nseg <= 2 && strcmp(seg[0], "tenants") == 0) {
        tenants(api, req, who, nseg == 2 ? seg[1] : NULL);
        return;
    }
    if (nseg >= 1 && nseg <= 2 && strcmp(seg[0], "keys") == 0) {
        keys(api, req, who, nseg == 2 ? seg[1] : NULL);
        return;
    }
    if (nseg == 1 && strcmp(seg[0], "traces") == 0) {
        trace_list_route(api, req, who);
        return;
    }
    if (nseg == 2 && strcmp(seg[0], "traces") == 0) {
        trace_route(api, req, who, seg[1]);
        return;
    }
    if (nseg == 1 && strcmp(seg[0], "instances") == 0) {
        if (!api_is_method(req, "GET")) {
            method_not_allowed(req, "GET");
            return;
        }
        /* Node-wide for the operator; otherwise the caller's own tenant's
         * functions, in its scope. */
        mxu_err err;
        json_t *all;
        if (mxu_policy_check(who, MXU_ACT_NODE_READ, NULL, NULL, &err) == 0) {
            all = mxu_sched_instances_json(api->cfg.sched, NULL, NULL);
        } else {
            const char *own = mxu_principal_tenant(who);
            if (!api_allow(req, who, MXU_ACT_FN_READ, own, NULL))
                return;
            all =
                filter_scope(who, mxu_sched_instances_json(api->cfg.sched, own, NULL), "function");
        }
        api_json(req, 200, json_pack("{s:o}", "instances", all));
        return;
    }
    /* Usage, bills and prices are the node's books: the operator's (a viewer
     * of tenant default may read them all). A tenant's admin and viewer read
     * their own tenant's usage and bills: ?tenant= is theirs, or forced to
     * it when absent. Prices stay the node's (they hold every tenant's
     * overrides). */
    const char *only_tenant = NULL;
    if (nseg >= 1 && (strcmp(seg[0], "usage") == 0 || strcmp(seg[0], "bills") == 0) &&
        api_is_method(req, "GET")) {
        mxu_err err;
        if (mxu_policy_check(who, MXU_ACT_NODE_READ, NULL, NULL, &err) < 0) {
            char tbuf[40];
            only_tenant = mxu_principal_tenant(who);
            bool named = api_query_str(req, "tenant", tbuf, sizeof(tbuf));
            if (!api_allow(req, who, MXU_ACT_USAGE, named ? tbuf : only_tenant, NULL))
                return;
        }
    } else if (nseg >= 1 &&
               (strcmp(seg[0], "usage") == 0 || strcmp(seg[0], "bills") == 0 ||
                strcmp(seg[0], "prices") == 0) &&
               !api_allow(req, who,
                          api_is_method(req, "GET") ? MXU_ACT_NODE_READ : MXU_ACT_NODE_ADMIN, NULL,
                          NULL)) {
        return;
    }
    if (api_meter_route(api, req, seg, nseg, only_tenant))
        return;
    if (nseg >= 1 && nseg <= 3 && strcmp(seg[0], "resources") == 0) {
        /* A tenant's admin manages its own entries; the node admin any
         * tenant's (?tenant=T, default: its own); a node-wide reader lists
         * the whole map. */
        char tbuf[40];
        bool named = api_query_str(req, "tenant", tbuf, sizeof(tbuf));
        if (named && !mxu_tenant_name_valid(tbuf)) {
            api_error(req, 400, "invalid_name", NULL, "?tenant= must be a tenant name");
            return;
        }
        const char *tenant = named ? tbuf : mxu_principal_tenant(who);
        mxu_err err;
        bool node_reader = mxu_policy_check(who, MXU_ACT_NODE_READ, NULL, NULL, &err) == 0;
        bool listing = nseg == 1 && api_is_method(req, "GET");
        if (!(listing && node_reader) && !api_allow(req, who, MXU_ACT_RESOURCES, tenant, NULL))
            return;
        if (!listing && !mxu_policy_tenant_exists(api->cfg.policy, tenant)) {
            api_error(req, 404, "tenant_not_found", NULL, "no tenant '%s'", tenant);
            return;
        }
        bool node_admin = mxu_policy_check(who, MXU_ACT_NODE_ADMIN, NULL, NULL, &err) == 0;
        resources(api, req, tenant, listing && node_reader && !named, node_admin,
                  nseg >= 2 ? seg[1] : NULL, nseg == 3 ? seg[2] : NULL);
        return;
    }
    if (nseg == 0 || strcmp(seg[0], "functions") != 0) {
        api_error(req, 404, "not_found", NULL,
                  "no such API path; see docs/api.md (/v1/health, /v1/functions, /v1/instances, "
                  "/v1/keys, /v1/tenants, /v1/policies)");
        return;
    }
    /* Functions are the caller's tenant's; the node admin may name another
     * with ?tenant=T. */
    char tenant_buf[40];
    const char *tenant = mxu_principal_tenant(who);
    if (api_query_str(req, "tenant", tenant_buf, sizeof(tenant_buf))) {
        if (!mxu_tenant_name_valid(tenant_buf)) {
            api_error(req, 400, "invalid_name", NULL, "?tenant= must be a tenant name");
            return;
        }
        tenant = tenant_buf;
    }
    bool reading = api_is_method(req, "GET") || api_is_method(req, "HEAD");
    if (nseg == 1) {
        if (api_is_method(req, "GET")) {
            if (!api_allow(req, who, MXU_ACT_FN_READ, tenant, NULL))
                return;
            json_t *fns = mxu_registry_list_json(api->cfg.reg, tenant);
            api_json(req, 200, json_pack("{s:o}", "functions", filter_scope(who, fns, "name")));
        } else if (api_is_method(req, "POST")) {
            if (!api_allow(req, who, MXU_ACT_FN_WRITE, tenant, NULL))
                return;
            /* Deploying for a tenant that does not exist would make
             * functions nobody but the node admin can reach. */
            if (!mxu_policy_tenant_exists(api->cfg.policy, tenant)) {
                api_error(req, 404, "tenant_not_found", NULL, "no tenant '%s'", tenant);
                return;
            }
            post_function(api, req, who, tenant);
        } else {
            method_not_allowed(req, "GET, POST");
        }
        return;
    }
    const char *name = seg[1];
    if (!mxu_utf8_valid(name, strlen(name)) || !mxu_name_valid(name)) {
        api_error(req, 400, "invalid_name", NULL,
                  "function names are lowercase letters, digits, '-' and '_', starting with a "
                  "letter, at most 63 characters");
        return;
    }
    if (!api_allow(req, who, reading ? MXU_ACT_FN_READ : MXU_ACT_FN_WRITE, tenant, name))
        return;
    if (nseg == 2) {
        function_root(api, req, tenant, name);
    } else if (strcmp(seg[2], "versions") == 0 && nseg <= 4) {
        versions(api, req, tenant, name, nseg == 4 ? seg[3] : NULL);
    } else if (strcmp(seg[2], "aliases") == 0 && nseg <= 4) {
        aliases(api, req, tenant, name, nseg == 4 ? seg[3] : NULL);
    } else if (strcmp(seg[2], "logs") == 0 && nseg == 3) {
        logs(api, req, tenant, name);
    } else if (strcmp(seg[2], "instances") == 0 && nseg == 3) {
        if (!api_is_method(req, "GET"))
            method_not_allowed(req, "GET");
        else
            api_json(req, 200,
                     json_pack("{s:o}", "instances",
                               mxu_sched_instances_json(api->cfg.sched, tenant, name)));
    } else {
        api_error(req, 404, "not_found", NULL, "no such API path; see docs/api.md");
    }
}
