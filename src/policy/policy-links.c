/*
 * Link rules in force: the versions of every scope's policy document (table
 * policy_docs in state.db), the compiled lookup tables, and the check every
 * link runs (docs/policy.md, "Policy documents").
 *
 * Scopes: the node's document (applied by the node admin; any tenant, cross-
 * tenant rules) and one per tenant (applied by its admin; rules inside the
 * tenant only). Every apply is the scope's next version, kept forever; the
 * latest version of each scope is in force.
 *
 * The check is on the path of every invocation, svc call and resource
 * operation, so the rules in force are compiled into a table: rules whose
 * target (tenant and name) is exact go into a hash map keyed by link kind,
 * tenant and name; rules whose target name is a glob into a list per kind
 * and tenant; rules whose target tenant is a glob into one list per kind.
 * A check looks up one hash entry and two short lists, then matches the
 * caller side of each candidate. On apply, a new table is built from every
 * scope's document and swapped in whole; everything runs on the loop thread,
 * so no check ever sees half a table.
 */
#include "policy-internal.h"

#include <errno.h>
#include <fnmatch.h>
#include <stdio.h>
#include <string.h>

typedef struct pol_scope {
    char *tenant; /* hash key; "" = the node's document */
    mxu_poldoc *doc;
    uint32_t version; /* of doc; 0 = none applied yet */
    UT_hash_handle hh;
} pol_scope;

/* A rule as the table holds it: where it came from, for the message, and
 * its place in the evaluation order (the node's document first, then the
 * tenants' by name; within one, rule order). */
typedef struct pol_ref {
    const pol_rule *r;
    const pol_scope *scope;
    uint32_t order;
} pol_ref;

typedef struct pol_bucket {
    char *hkey;
    pol_ref *refs;
    size_t n, cap;
    UT_hash_handle hh;
} pol_bucket;

struct pol_compiled {
    pol_bucket *exact;               /* "K|tenant|name": exact target */
    pol_bucket *globs;               /* "K|tenant": a glob target name */
    pol_bucket wild[MXU_LINK_KINDS]; /* a glob target tenant */
    size_t nrules[MXU_LINK_KINDS];
};

static const char *const link_label[MXU_LINK_KINDS] = {"client->function", "unit->unit",
                                                       "unit->resource"};

/* ---- the compiled table ---------------------------------------------------------- */

static void bucket_add(pol_bucket *b, const pol_ref *ref)
{
    if (b->n == b->cap) {
        b->cap = b->cap ? b->cap * 2 : 4;
        b->refs = mxu_realloc(b->refs, b->cap * sizeof(*b->refs));
    }
    b->refs[b->n++] = *ref;
}

static pol_bucket *bucket_get(pol_bucket **head, const char *key)
{
    pol_bucket *b;
    HASH_FIND_STR(*head, key, b);
    if (b == NULL) {
        b = mxu_calloc(1, sizeof(*b));
        b->hkey = mxu_strdup(key);
        HASH_ADD_KEYPTR(hh, *head, b->hkey, strlen(b->hkey), b);
    }
    return b;
}

static void buckets_free(pol_bucket **head)
{
    pol_bucket *b, *tmp;
    HASH_ITER(hh, *head, b, tmp)
    {
        HASH_DEL(*head, b);
        free(b->hkey);
        free(b->refs);
        free(b);
    }
}

static void compiled_free(pol_compiled *c)
{
    if (c == NULL)
        return;
    buckets_free(&c->exact);
    buckets_free(&c->globs);
    for (int k = 0; k < MXU_LINK_KINDS; k++)
        free(c->wild[k].refs);
    free(c);
}

/* The target's name as the table keys it: a resource's with its kind. */
static void target_key(char *out, size_t outlen, enum mxu_link_kind kind, const char *tenant,
                       const char *res_kind, const char *name)
{
    if (kind == MXU_LINK_RESOURCE)
        snprintf(out, outlen, "%d|%s|%s:%s", (int)kind, tenant, res_kind, name);
    else
        snprintf(out, outlen, "%d|%s|%s", (int)kind, tenant, name);
}

static int cmp_scope(const void *a, const void *b)
{
    return strcmp((*(pol_scope *const *)a)->tenant, (*(pol_scope *const *)b)->tenant);
}

static pol_compiled *compile(const mxu_policy *p)
{
    pol_compiled *c = mxu_calloc(1, sizeof(*c));
    size_t ns = HASH_COUNT(p->scopes), i = 0;
    pol_scope **sorted = mxu_calloc(ns ? ns : 1, sizeof(*sorted));
    pol_scope *s, *tmp;
    HASH_ITER(hh, p->scopes, s, tmp)
    sorted[i++] = s;
    /* "" (the node) sorts first */
    qsort(sorted, ns, sizeof(*sorted), cmp_scope);
    uint32_t order = 0;
    char key[256];
    for (i = 0; i < ns; i++) {
        const mxu_poldoc *d = sorted[i]->doc;
        for (size_t j = 0; d && j < d->n; j++) {
            const pol_rule *r = &d->rules[j];
            pol_ref ref = {.r = r, .scope = sorted[i], .order = order++};
            c->nrules[r->kind]++;
            if (pol_is_glob(r->to_tenant)) {
                bucket_add(&c->wild[r->kind], &ref);
            } else if (pol_is_glob(r->to_name)) {
                snprintf(key, sizeof(key), "%d|%s", (int)r->kind, r->to_tenant);
                bucket_add(bucket_get(&c->globs, key), &ref);
            } else {
                target_key(key, sizeof(key), r->kind, r->to_tenant, r->res_kind, r->to_name);
                bucket_add(bucket_get(&c->exact, key), &ref);
            }
        }
    }
    free(sorted);
    return c;
}

/* ---- matching ------------------------------------------------------------------------ */

static bool gmatch(const char *glob, const char *s)
{
    return fnmatch(glob, s, 0) == 0;
}

static const char *link_from_tenant(const mxu_policy_link *l)
{
    if (l->kind != MXU_LINK_CLIENT)
        return l->from_tenant;
    return l->who ? mxu_principal_tenant(l->who) : NULL;
}

static bool rule_matches(const pol_ref *ref, const mxu_policy_link *l, uint32_t opbit)
{
    const pol_rule *r = ref->r;
    /* The target: exact buckets matched it already, but a bucket keyed by
     * tenant alone or a wildcard list did not. */
    if (!gmatch(r->to_tenant, l->to_tenant) || !gmatch(r->to_name, l->to_name))
        return false;
    if (l->kind == MXU_LINK_RESOURCE &&
        (strcmp(r->res_kind, l->res_kind) != 0 || (r->ops & opbit) == 0))
        return false;
    /* An allow in a tenant's document speaks only for its own tenant's
     * callers: it can never open a link from another tenant. */
    const char *from_tenant = link_from_tenant(l);
    if (!r->deny && ref->scope->tenant[0] &&
        (from_tenant == NULL || strcmp(from_tenant, ref->scope->tenant) != 0))
        return false;
    if (l->kind != MXU_LINK_CLIENT)
        return gmatch(r->from_tenant, l->from_tenant) && gmatch(r->from_name, l->from_fn);
    if (l->who == NULL) /* no key: only a rule about anyone */
        return !r->c_tenant && !r->c_role && !r->c_key;
    if (r->c_tenant && !gmatch(r->c_tenant, mxu_principal_tenant(l->who)))
        return false;
    if (r->c_role && strcmp(r->c_role, mxu_role_name(mxu_principal_role(l->who))) != 0)
        return false;
    return !r->c_key || gmatch(r->c_key, mxu_principal_key_id(l->who));
}

static void scan(const pol_bucket *b, const mxu_policy_link *l, uint32_t opbit,
                 const pol_ref **deny, const pol_ref **allow)
{
    if (b == NULL)
        return;
    for (size_t i = 0; i < b->n; i++) {
        const pol_ref *ref = &b->refs[i];
        if (ref->r->deny ? (*deny && (*deny)->order < ref->order) : (*allow != NULL || *deny))
            continue;
        if (!rule_matches(ref, l, opbit))
            continue;
        if (ref->r->deny)
            *deny = ref;
        else
            *allow = ref;
    }
}

static uint32_t op_bit(const mxu_policy_link *l)
{
    if (l->kind != MXU_LINK_RESOURCE)
        return 0;
    const char *const *ops = pol_ops(l->res_kind);
    for (uint32_t i = 0; ops && ops[i]; i++)
        if (strcmp(ops[i], l->op) == 0)
            return 1u << i;
    return 0;
}

bool mxu_policy_has_link_rules(const mxu_policy *p, enum mxu_link_kind kind)
{
    return p->links && p->links->nrules[kind] > 0;
}

static void describe_link(const mxu_policy_link *l, char *out, size_t outlen)
{
    if (l->kind == MXU_LINK_CLIENT) {
        if (l->who)
            snprintf(out, outlen, "%s key %s (role %s of tenant %s) -> %s/%s", link_label[l->kind],
                     mxu_principal_key_id(l->who), mxu_role_name(mxu_principal_role(l->who)),
                     mxu_principal_tenant(l->who), l->to_tenant, l->to_name);
        else
            snprintf(out, outlen, "%s (no key) -> %s/%s", link_label[l->kind], l->to_tenant,
                     l->to_name);
    } else if (l->kind == MXU_LINK_UNIT) {
        snprintf(out, outlen, "%s %s/%s -> %s/%s", link_label[l->kind], l->from_tenant, l->from_fn,
                 l->to_tenant, l->to_name);
    } else {
        snprintf(out, outlen, "%s %s/%s -> %s:%s/%s %s", link_label[l->kind], l->from_tenant,
                 l->from_fn, l->res_kind, l->to_tenant, l->to_name, l->op);
    }
}

int mxu_policy_link_check(const mxu_policy *p, const mxu_policy_link *l, bool open, bool *by_rule,
                          mxu_err *err)
{
    if (by_rule)
        *by_rule = false;
    const pol_compiled *c = p->links;
    const pol_ref *deny = NULL, *allow = NULL;
    if (c && c->nrules[l->kind]) {
        uint32_t opbit = op_bit(l);
        char key[256];
        target_key(key, sizeof(key), l->kind, l->to_tenant, l->res_kind, l->to_name);
        pol_bucket *b;
        HASH_FIND_STR(c->exact, key, b);
        scan(b, l, opbit, &deny, &allow);
        snprintf(key, sizeof(key), "%d|%s", (int)l->kind, l->to_tenant);
        HASH_FIND_STR(c->globs, key, b);
        scan(b, l, opbit, &deny, &allow);
        scan(&c->wild[l->kind], l, opbit, &deny, &allow);
    }
    if (deny) {
        const pol_scope *s = deny->scope;
        if (s->tenant[0])
            return mxu_err_set(err, EACCES, "policy v%u (tenant %s) rule %u (%s)", s->version,
                               s->tenant, deny->r->index, deny->r->text);
        return mxu_err_set(err, EACCES, "policy v%u rule %u (%s)", s->version, deny->r->index,
                           deny->r->text);
    }
    if (allow) {
        if (by_rule)
            *by_rule = true;
        return 0;
    }
    if (open)
        return 0;
    char what[300];
    describe_link(l, what, sizeof(what));
    return mxu_err_set(err, EACCES,
                       "no policy rule allows %s (cross-tenant links are denied unless a rule of "
                       "the node's policy allows them)",
                       what);
}

/* ---- versions in state.db ------------------------------------------------------------ */

static int db_fail(mxu_policy *p, mxu_err *err, const char *what)
{
    return mxu_err_set(err, EIO, "state database (policy documents): %s: %s", what,
                       sqlite3_errmsg(p->db));
}

static pol_scope *scope_get(mxu_policy *p, const char *tenant)
{
    const char *key = tenant ? tenant : "";
    pol_scope *s;
    HASH_FIND_STR(p->scopes, key, s);
    if (s == NULL) {
        s = mxu_calloc(1, sizeof(*s));
        s->tenant = mxu_strdup(key);
        HASH_ADD_KEYPTR(hh, p->scopes, s->tenant, strlen(s->tenant), s);
    }
    return s;
}

static char *doc_name(const char *tenant, uint32_t version)
{
    if (tenant)
        return mxu_asprintf("policy v%u (tenant %s)", version, tenant);
    return mxu_asprintf("policy v%u", version);
}

int pol_links_open(mxu_policy *p, mxu_err *err)
{
    static const char schema[] =
        "CREATE TABLE IF NOT EXISTS policy_docs ("
        " scope TEXT NOT NULL, version INTEGER NOT NULL, created_ms INTEGER NOT NULL,"
        " by_key TEXT NOT NULL, file TEXT NOT NULL, nrules INTEGER NOT NULL,"
        " document TEXT NOT NULL, canonical TEXT NOT NULL, PRIMARY KEY (scope, version))";
    if (sqlite3_exec(p->db, schema, NULL, NULL, NULL) != SQLITE_OK)
        return db_fail(p, err, "create table");
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(p->db,
                           "SELECT d.scope, d.version, d.document, d.file FROM policy_docs d "
                           "WHERE d.version = (SELECT MAX(version) FROM policy_docs e WHERE "
                           "e.scope = d.scope)",
                           -1, &st, NULL) != SQLITE_OK)
        return db_fail(p, err, "load");
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *scope = (const char *)sqlite3_column_text(st, 0);
        const char *text = (const char *)sqlite3_column_text(st, 2);
        const char *file = (const char *)sqlite3_column_text(st, 3);
        const char *tenant = scope && scope[0] ? scope : NULL;
        mxu_poldoc *d;
        /* It validated when applied; failing now means the rules changed
         * meaning under it, and running without them would open links. */
        if (mxu_poldoc_parse(text, text ? strlen(text) : 0, file, tenant, &d, err) < 0) {
            sqlite3_finalize(st);
            return mxu_err_prefix(err, "the policy in force does not validate any more");
        }
        pol_scope *s = scope_get(p, tenant);
        s->doc = d;
        s->version = (uint32_t)sqlite3_column_int64(st, 1);
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE)
        return db_fail(p, err, "load");
    p->links = compile(p);
    return 0;
}

void pol_links_close(mxu_policy *p)
{
    compiled_free(p->links);
    p->links = NULL;
    pol_scope *s, *tmp;
    HASH_ITER(hh, p->scopes, s, tmp)
    {
        HASH_DEL(p->scopes, s);
        mxu_poldoc_free(s->doc);
        free(s->tenant);
        free(s);
    }
}

static void recompile(mxu_policy *p)
{
    pol_compiled *next = compile(p), *old = p->links;
    p->links = next; /* the swap: from here on every check sees the new rules */
    compiled_free(old);
}

void pol_links_tenant_deleted(mxu_policy *p, const char *tenant)
{
    pol_scope *s;
    HASH_FIND_STR(p->scopes, tenant, s);
    if (s == NULL)
        return;
    HASH_DEL(p->scopes, s);
    recompile(p);
    mxu_poldoc_free(s->doc);
    free(s->tenant);
    free(s);
}

int mxu_policy_doc_apply(mxu_policy *p, const char *tenant, const char *text, size_t len,
                         const char *file, const char *by, json_t **info, mxu_err *err)
{
    if (tenant && !mxu_policy_tenant_exists(p, tenant))
        return mxu_err_set(err, ENOENT, "no tenant '%.40s'", tenant);
    mxu_poldoc *d;
    if (mxu_poldoc_parse(text, len, file, tenant, &d, err) < 0)
        return -1;
    pol_scope *s = scope_get(p, tenant);
    uint32_t version = s->version + 1;
    _cleanup_free_ char *canon = mxu_poldoc_canonical(d);
    _cleanup_free_ char *prev = s->doc ? mxu_poldoc_canonical(s->doc) : mxu_strdup("");
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(p->db,
                           "INSERT INTO policy_docs(scope, version, created_ms, by_key, file, "
                           "nrules, document, canonical) VALUES(?,?,?,?,?,?,?,?)",
                           -1, &st, NULL) != SQLITE_OK) {
        mxu_poldoc_free(d);
        return db_fail(p, err, "apply");
    }
    sqlite3_bind_text(st, 1, tenant ? tenant : "", -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, version);
    sqlite3_bind_int64(st, 3, (sqlite3_int64)mxu_wall_ms());
    sqlite3_bind_text(st, 4, by ? by : "", -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 5, file ? file : "policy.yaml", -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 6, (sqlite3_int64)d->n);
    sqlite3_bind_text(st, 7, text ? text : "", (int)len, SQLITE_STATIC);
    sqlite3_bind_text(st, 8, canon, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) {
        mxu_poldoc_free(d);
        return db_fail(p, err, "apply");
    }
    mxu_poldoc *old = s->doc;
    s->doc = d;
    s->version = version;
    recompile(p);
    mxu_poldoc_free(old);
    mxu_info("policy v%u%s%s%s applied: %zu rules (by key %s)", version, tenant ? " (tenant " : "",
             tenant ? tenant : "", tenant ? ")" : "", d->n, by && by[0] ? by : "-");
    if (info) {
        _cleanup_free_ char *na = doc_name(tenant, version - 1);
        _cleanup_free_ char *nb = doc_name(tenant, version);
        _cleanup_free_ char *diff = mxu_text_diff(prev, canon, na, nb);
        *info = json_pack("{s:i, s:o, s:I, s:s}", "version", (int)version, "tenant",
                          tenant ? json_string(tenant) : json_null(), "rules", (json_int_t)d->n,
                          "diff", diff);
    }
    return 0;
}

static json_t *row_json(sqlite3_stmt *st, uint32_t active)
{
    const char *scope = (const char *)sqlite3_column_text(st, 0);
    uint32_t version = (uint32_t)sqlite3_column_int64(st, 1);
    char created[40];
    mxu_format_time_ms((uint64_t)sqlite3_column_int64(st, 2), created, sizeof(created));
    return json_pack("{s:i, s:o, s:s, s:s, s:s, s:I, s:b}", "version", (int)version, "tenant",
                     scope && scope[0] ? json_string(scope) : json_null(), "created", created, "by",
                     (const char *)sqlite3_column_text(st, 3), "file",
                     (const char *)sqlite3_column_text(st, 4), "rules",
                     (json_int_t)sqlite3_column_int64(st, 5), "active", version == active);
}

static uint32_t active_version(const mxu_policy *p, const char *scope)
{
    pol_scope *s;
    HASH_FIND_STR(p->scopes, scope, s);
    return s ? s->version : 0;
}

json_t *mxu_policy_docs_json(mxu_policy *p, const char *tenant, bool all)
{
    json_t *a = json_array();
    sqlite3_stmt *st;
    const char *sql = all ? "SELECT scope, version, created_ms, by_key, file, nrules FROM "
                            "policy_docs ORDER BY scope, version"
                          : "SELECT scope, version, created_ms, by_key, file, nrules FROM "
                            "policy_docs WHERE scope = ? ORDER BY version";
    if (sqlite3_prepare_v2(p->db, sql, -1, &st, NULL) != SQLITE_OK)
        return a;
    if (!all)
        sqlite3_bind_text(st, 1, tenant ? tenant : "", -1, SQLITE_STATIC);
    while (sqlite3_step(st) == SQLITE_ROW) {
        const char *scope = (const char *)sqlite3_column_text(st, 0);
        json_array_append_new(a, row_json(st, active_version(p, scope ? scope : "")));
    }
    sqlite3_finalize(st);
    return a;
}

/* One version's row; *canonical and *document are new strings. */
static json_t *load_version(mxu_policy *p, const char *tenant, uint32_t version, mxu_err *err)
{
    const char *scope = tenant ? tenant : "";
    if (version == 0)
        version = active_version(p, scope);
    if (version == 0) {
        _cleanup_free_ char *empty = mxu_strdup("");
        mxu_poldoc d = {.tenant = (char *)tenant};
        _cleanup_free_ char *canon = mxu_poldoc_canonical(&d);
        return json_pack("{s:i, s:o, s:i, s:b, s:s, s:s}", "version", 0, "tenant",
                         tenant ? json_string(tenant) : json_null(), "rules", 0, "active", true,
                         "canonical", canon, "document", empty);
    }
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(p->db,
                           "SELECT scope, version, created_ms, by_key, file, nrules, canonical, "
                           "document FROM policy_docs WHERE scope = ? AND version = ?",
                           -1, &st, NULL) != SQLITE_OK) {
        db_fail(p, err, "read");
        return NULL;
    }
    sqlite3_bind_text(st, 1, scope, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, version);
    json_t *j = NULL;
    if (sqlite3_step(st) == SQLITE_ROW) {
        j = row_json(st, active_version(p, scope));
        json_object_set_new(j, "canonical", json_string((const char *)sqlite3_column_text(st, 6)));
        json_object_set_new(j, "document", json_string((const char *)sqlite3_column_text(st, 7)));
    } else {
        _cleanup_free_ char *name = doc_name(tenant, version);
        mxu_err_set(err, ENOENT, "there is no %s", name);
    }
    sqlite3_finalize(st);
    return j;
}

json_t *mxu_policy_doc_json(mxu_policy *p, const char *tenant, uint32_t version, mxu_err *err)
{
    return load_version(p, tenant, version, err);
}

int mxu_policy_doc_diff(mxu_policy *p, const char *tenant, uint32_t a, uint32_t b, char **out,
                        mxu_err *err)
{
    json_t *ja = load_version(p, tenant, a, err);
    if (ja == NULL)
        return -1;
    json_t *jb = load_version(p, tenant, b, err);
    if (jb == NULL) {
        json_decref(ja);
        return -1;
    }
    _cleanup_free_ char *na = doc_name(tenant, a), *nb = doc_name(tenant, b);
    *out = mxu_text_diff(json_string_value(json_object_get(ja, "canonical")),
                         json_string_value(json_object_get(jb, "canonical")), na, nb);
    json_decref(ja);
    json_decref(jb);
    return 0;
}
