/*
 * The role matrix (docs/policy.md has it as a table) and the bootstrap of the
 * first admin key.
 *
 * A decision reads only the principal: its tenant, role and scope. The rule
 * that denies is named in the message, because a 403 that does not say why
 * sends people to read source code.
 */
#include "policy-internal.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>

static const char *action_what(enum mxu_action act)
{
    switch (act) {
    case MXU_ACT_INVOKE:
        return "invoke functions";
    case MXU_ACT_FN_READ:
        return "read functions (versions, aliases, logs, instances)";
    case MXU_ACT_FN_WRITE:
        return "deploy functions (or delete them, or set their aliases)";
    case MXU_ACT_KEYS:
        return "manage API keys";
    case MXU_ACT_NODE_READ:
        return "see node-wide views (every instance, the resource map)";
    case MXU_ACT_NODE_ADMIN:
        return "manage tenants or prices";
    case MXU_ACT_RESOURCES:
        return "manage the tenant's resource map";
    case MXU_ACT_USAGE:
        return "read the tenant's usage and bills";
    case MXU_ACT_POLICY:
        return "apply or read the tenant's policy documents";
    }
    return "do that";
}

/* Which roles may do what within their own tenant (scope aside). */
static bool role_allows(enum mxu_role r, enum mxu_action act)
{
    switch (act) {
    case MXU_ACT_INVOKE:
        return r == MXU_ROLE_ADMIN || r == MXU_ROLE_DEPLOYER || r == MXU_ROLE_INVOKER;
    case MXU_ACT_FN_READ:
        return r == MXU_ROLE_ADMIN || r == MXU_ROLE_DEPLOYER || r == MXU_ROLE_VIEWER;
    case MXU_ACT_FN_WRITE:
        return r == MXU_ROLE_ADMIN || r == MXU_ROLE_DEPLOYER;
    case MXU_ACT_KEYS:
    case MXU_ACT_RESOURCES:
    case MXU_ACT_POLICY:
        return r == MXU_ROLE_ADMIN;
    case MXU_ACT_USAGE:
        return r == MXU_ROLE_ADMIN || r == MXU_ROLE_VIEWER;
    case MXU_ACT_NODE_READ:
    case MXU_ACT_NODE_ADMIN:
        return false; /* tenant default only, below */
    }
    return false;
}

int mxu_policy_check(const mxu_principal *who, enum mxu_action act, const char *tenant,
                     const char *function, mxu_err *err)
{
    if (who == NULL)
        return mxu_err_set(err, EACCES, "a request without a key may only invoke public functions");
    const char *role = mxu_role_name(who->role);
    /* The node's operator: everything, everywhere. */
    if (mxu_principal_is_node_admin(who))
        return 0;
    bool in_default = strcmp(who->tenant, MXU_TENANT_DEFAULT) == 0;
    if (act == MXU_ACT_NODE_ADMIN)
        return mxu_err_set(err, EACCES,
                           "role %s of tenant %s may not %s: only an admin of tenant default "
                           "(the node's operator) may",
                           role, who->tenant, action_what(act));
    if (act == MXU_ACT_NODE_READ) {
        if (in_default && who->role == MXU_ROLE_VIEWER)
            return 0;
        return mxu_err_set(err, EACCES,
                           "role %s of tenant %s may not %s: only an admin or viewer of tenant "
                           "default may",
                           role, who->tenant, action_what(act));
    }
    if (tenant && strcmp(tenant, who->tenant) != 0)
        return mxu_err_set(err, EACCES,
                           "key %s (role %s of tenant %s) may not act on tenant %s: only the "
                           "node's admin crosses tenants (and, for invocations, keys a "
                           "cross-tenant rule of the node's policy allows)",
                           who->id, role, who->tenant, tenant);
    if (!role_allows(who->role, act))
        return mxu_err_set(err, EACCES, "role %s of tenant %s may not %s", role, who->tenant,
                           action_what(act));
    if (function && !mxu_scope_match(who->scope, function))
        return mxu_err_set(err, EACCES,
                           "function '%s' is outside the scope '%s' of key %s (role %s of "
                           "tenant %s)",
                           function, who->scope, who->id, role, who->tenant);
    return 0;
}

/* ---- bootstrap ------------------------------------------------------------------ */

static bool live_default_admin(const mxu_policy *p)
{
    uint64_t now = mxu_wall_ms();
    const mxu_principal *k, *tmp;
    HASH_ITER(hh, p->keys, k, tmp)
    {
        if (k->role == MXU_ROLE_ADMIN && strcmp(k->tenant, MXU_TENANT_DEFAULT) == 0 &&
            pol_key_live(k, now))
            return true;
    }
    return false;
}

int mxu_policy_bootstrap(mxu_policy *p, const char *url, mxu_err *err)
{
    if (!p->auth)
        return 0;
    _cleanup_free_ char *path = mxu_path_join(p->data_dir, "admin.key");
    _cleanup_free_ char *key = NULL;
    if (!live_default_admin(p)) {
        mxu_key_spec spec = {.tenant = MXU_TENANT_DEFAULT,
                             .role = MXU_ROLE_ADMIN,
                             .scope = "*",
                             .note = "bootstrap: made by the node at start"};
        if (mxu_policy_key_create(p, &spec, &key, NULL, err) < 0)
            return mxu_err_prefix(err, "cannot make the first admin key");
        _cleanup_free_ char *line = mxu_asprintf("%s\n", key);
        if (mxu_write_file_atomic(path, line, strlen(line), 0600, err) < 0)
            return mxu_err_prefix(err, "cannot write the admin key");
        mxu_info("made an admin key for tenant default (the node's operator): %s (mode 0600)",
                 path);
    } else {
        _cleanup_buf_ mxu_buf b = {0};
        if (mxu_read_file(path, 4096, &b, NULL) == 0 && b.len > 0) {
            key = mxu_strndup(b.data, strcspn(b.data, "\r\n"));
        } else {
            mxu_info("no %s: use an admin key you made earlier (a new one is made only when "
                     "tenant default has no live admin key)",
                     path);
            return 0;
        }
        _cleanup_free_ char *hdr = mxu_asprintf("Bearer %s", key);
        const mxu_principal *who;
        mxu_err aerr = {0};
        if (mxu_policy_authenticate(p, hdr, &who, &aerr) < 0 || !mxu_principal_is_node_admin(who)) {
            mxu_warn("%s holds no live admin key of tenant default (%s); not writing CLI "
                     "credentials",
                     path, aerr.code ? aerr.msg : "wrong role or tenant");
            return 0;
        }
    }
    if (url == NULL)
        return 0;
    _cleanup_free_ char *creds = mxu_credentials_path();
    if (creds == NULL) {
        mxu_warn("neither XDG_CONFIG_HOME nor HOME is set: the CLI will need --key or MXU_KEY "
                 "(the admin key is in %s)",
                 path);
        return 0;
    }
    _cleanup_free_ char *have = mxu_credentials_lookup(creds, url);
    if (have && strcmp(have, key) == 0)
        return 0;
    mxu_err cerr;
    if (mxu_credentials_store(creds, url, key, &cerr) < 0)
        mxu_warn("cannot write CLI credentials (%s); the CLI will need --key or MXU_KEY (the "
                 "admin key is in %s)",
                 cerr.msg, path);
    else
        mxu_info("CLI credentials for %s written to %s (mode 0600)", url, creds);
    return 0;
}
