/*
 * Traffic shaping: token-bucket rates and concurrency caps per tenant, per
 * key, per function and per link, and priority classes (docs/policy.md,
 * "Traffic shaping").
 *
 * A bucket is kept in its GCRA form (the "generic cell rate algorithm" of
 * ATM networks, the same thing as a token bucket seen from the other side):
 * one number, the theoretical arrival time (TAT) of the next request. Each
 * request moves it one emission interval T = period / rate later; a request
 * passes if that leaves the TAT at most burst × T ahead of now. So a bucket
 * costs 8 bytes and two comparisons, never a timer, and "when will a token be
 * there" (Retry-After) is a subtraction.
 *
 * Where the state lives, so that the per-request check is a handful of
 * pointer reads: a key's gate hangs off its principal (found by
 * authentication already), a tenant's off its pol_tstate (one hash lookup),
 * a function's and a link's in one hash by "F/tenant/function" and
 * "L/tenant/caller/descriptor". Gates are never freed before the policy
 * closes, so a ticket held by a running invocation cannot dangle.
 *
 * Limits of tenants and keys, and keys' priority classes, are kept in
 * state.db:
 *
 *   shape_limits(kind 'tenant'|'key', name, rate, period_ms, burst,
 *                concurrency, priority, PRIMARY KEY(kind, name))
 *
 * Functions' and links' limits come from their manifests.
 *
 * Divisions: classes and limits · the bucket · gates and state · the table ·
 * admission.
 */
#include "policy-internal.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

/* ---- classes and limits ---------------------------------------------------- */

const char *mxu_priority_name(enum mxu_priority p)
{
    return p == MXU_PRIO_CRITICAL ? "critical" : p == MXU_PRIO_BATCH ? "batch" : "default";
}

int mxu_priority_parse(const char *s, enum mxu_priority *out, mxu_err *err)
{
    static const enum mxu_priority all[] = {MXU_PRIO_CRITICAL, MXU_PRIO_DEFAULT, MXU_PRIO_BATCH};
    for (size_t i = 0; s && i < MXU_ARRAY_LEN(all); i++) {
        if (strcmp(s, mxu_priority_name(all[i])) == 0) {
            *out = all[i];
            return 0;
        }
    }
    return mxu_err_set(err, EINVAL, "'%.40s' is not a priority class (critical, default, batch)",
                       s ? s : "");
}

uint32_t mxu_limits_burst(const mxu_limits *l)
{
    if (l->burst)
        return l->burst;
    if (l->rate == 0 || l->period_ms == 0)
        return 1;
    uint64_t per_s = (l->rate * 1000 + l->period_ms - 1) / l->period_ms;
    return per_s > UINT32_MAX ? UINT32_MAX : (uint32_t)MXU_MAX(per_s, 1u);
}

void mxu_limits_describe(const mxu_limits *l, char *out, size_t outlen)
{
    char rate[32] = "";
    size_t n = 0;
    out[0] = '\0';
    if (l->rate) {
        mxu_format_rate(l->rate, l->period_ms, rate, sizeof(rate));
        n += (size_t)snprintf(out, outlen, "%s, burst %u", rate, mxu_limits_burst(l));
    }
    if (l->concurrency && n < outlen)
        snprintf(out + n, outlen - n, "%sconcurrency %u", n ? ", " : "", l->concurrency);
}

json_t *mxu_limits_json(const mxu_limits *l)
{
    char rate[32];
    json_t *j = json_object();
    /* "burst" as set (null: the default), "burst_in_force" what applies. */
    if (l->rate) {
        mxu_format_rate(l->rate, l->period_ms, rate, sizeof(rate));
        json_object_set_new(j, "rate", json_string(rate));
        json_object_set_new(j, "burst_in_force", json_integer(mxu_limits_burst(l)));
    } else {
        json_object_set_new(j, "rate", json_null());
    }
    json_object_set_new(j, "burst", l->burst ? json_integer(l->burst) : json_null());
    json_object_set_new(j, "concurrency",
                        l->concurrency ? json_integer(l->concurrency) : json_null());
    return j;
}

static int json_u32(json_t *v, const char *field, uint32_t max, uint32_t *out, mxu_err *err)
{
    if (v == NULL || json_is_null(v)) {
        *out = 0;
        return 0;
    }
    if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > max)
        return mxu_err_set(err, EINVAL, "%s: expected an integer from 1 to %u", field, max);
    *out = (uint32_t)json_integer_value(v);
    return 0;
}

int mxu_limits_from_json(json_t *j, mxu_limits *out, mxu_err *err)
{
    memset(out, 0, sizeof(*out));
    if (!json_is_object(j))
        return mxu_err_set(err, EINVAL,
                           "limits are {\"rate\": \"100/s\", \"burst\": 20, \"concurrency\": 50}");
    const char *k;
    json_t *v;
    json_object_foreach(j, k, v)
    {
        if (strcmp(k, "rate") && strcmp(k, "burst") && strcmp(k, "concurrency") &&
            strcmp(k, "burst_in_force"))
            return mxu_err_set(
                err, EINVAL, "unknown field '%.40s' (limits have rate, burst and concurrency)", k);
    }
    json_t *rate = json_object_get(j, "rate");
    if (rate && !json_is_null(rate)) {
        mxu_err perr;
        if (!json_is_string(rate) ||
            mxu_parse_rate(json_string_value(rate), &out->rate, &out->period_ms, &perr) < 0)
            return mxu_err_set(err, EINVAL, "rate: %s",
                               json_is_string(rate) ? perr.msg
                                                    : "expected a string like \"100/s\"");
    }
    if (json_u32(json_object_get(j, "burst"), "burst", 1000000000, &out->burst, err) < 0 ||
        json_u32(json_object_get(j, "concurrency"), "concurrency", 1000000, &out->concurrency,
                 err) < 0)
        return -1;
    if (out->burst && !out->rate)
        return mxu_err_set(err, EINVAL, "burst: a burst needs a rate");
    return 0;
}

/* ---- the bucket -------------------------------------------------------------- */

bool mxu_bucket_check(const mxu_bucket *b, const mxu_limits *l, uint64_t now_ns, mxu_bucket *next,
                      uint64_t *retry_ns)
{
    if (l->rate == 0) {
        *next = *b;
        return true;
    }
    /* T in ns; rates up to 1e9/s keep it >= 1. */
    uint64_t t = l->period_ms * 1000000 / l->rate;
    if (t == 0)
        t = 1;
    uint64_t tau = (uint64_t)mxu_limits_burst(l) * t;
    uint64_t tat = MXU_MAX(b->tat_ns, now_ns) + t;
    if (tat - now_ns > tau) {
        *retry_ns = tat - now_ns - tau;
        return false;
    }
    next->tat_ns = tat;
    return true;
}

/* ---- gates and state ------------------------------------------------------------ */

pol_gate *pol_gate_new(mxu_policy *p, const char *what)
{
    pol_gate *g = mxu_calloc(1, sizeof(*g));
    snprintf(g->what, sizeof(g->what), "%s", what);
    g->next_all = p->all_gates;
    p->all_gates = g;
    return g;
}

pol_tstate *pol_tstate_find(const mxu_policy *p, const char *tenant)
{
    /* A request looks its tenant up four times (limits, quota, its record,
     * the release), and most of a node's requests are few tenants': one
     * entry checked before hashing the name. */
    pol_tstate *ts = p->tstate_last;
    if (ts && strcmp(ts->name, tenant) == 0)
        return ts;
    ts = NULL;
    HASH_FIND_STR(p->tstates, tenant, ts);
    return ts;
}

pol_tstate *pol_tstate_get(mxu_policy *p, const char *tenant)
{
    pol_tstate *ts = pol_tstate_find(p, tenant);
    if (ts == NULL) {
        ts = mxu_calloc(1, sizeof(*ts));
        ts->name = mxu_strdup(tenant);
        HASH_ADD_KEYPTR(hh, p->tstates, ts->name, strlen(ts->name), ts);
    }
    p->tstate_last = ts;
    return ts;
}

/* The gate of a function or link (made on first use; limits follow the
 * manifest of the version invoked, so a new version's limits apply at once). */
static pol_gate *gate_lookup(mxu_policy *p, char kind, const char *a, const char *b, const char *c,
                             const mxu_limits *lim)
{
    /* "K/a/b/c", built with plain copies: this runs for every request (an
     * snprintf here was a visible share of a warm invocation). */
    char key[256];
    const char *parts[3] = {a, b, c ? c : ""};
    size_t n = 0;
    key[n++] = kind;
    for (int i = 0; i < 3; i++) {
        size_t len = strlen(parts[i]);
        if (n + 1 + len >= sizeof(key))
            return NULL; /* names are bounded far below this */
        key[n++] = '/';
        memcpy(key + n, parts[i], len);
        n += len;
    }
    key[n] = '\0';
    pol_gate *g = NULL;
    HASH_FIND(hh, p->gates, key, n, g);
    if (g == NULL) {
        char what[96];
        if (kind == 'F')
            snprintf(what, sizeof(what), "function %s", b);
        else
            snprintf(what, sizeof(what), "link %s -> %s", b, c);
        g = pol_gate_new(p, what);
        g->hkey = mxu_strdup(key);
        HASH_ADD_KEYPTR(hh, p->gates, g->hkey, n, g);
    }
    g->lim = *lim;
    return g;
}

void pol_shape_close(mxu_policy *p)
{
    HASH_CLEAR(hh, p->gates);
    for (pol_gate *g = p->all_gates, *next; g; g = next) {
        next = g->next_all;
        free(g->hkey);
        free(g);
    }
    p->all_gates = NULL;
    pol_tstate *ts, *tmp;
    p->tstate_last = NULL;
    HASH_ITER(hh, p->tstates, ts, tmp)
    {
        HASH_DEL(p->tstates, ts);
        free(ts->name);
        free(ts);
    }
}

/* ---- the table ------------------------------------------------------------------ */

static void apply_tenant(mxu_policy *p, const char *tenant, const mxu_limits *lim)
{
    pol_tstate *ts = pol_tstate_get(p, tenant);
    if (ts->gate == NULL) {
        char what[64];
        snprintf(what, sizeof(what), "tenant %s", tenant);
        ts->gate = pol_gate_new(p, what);
    }
    ts->gate->lim = *lim;
}

static void apply_key(mxu_policy *p, mxu_principal *k, const mxu_limits *lim)
{
    if (k->gate == NULL) {
        char what[64];
        snprintf(what, sizeof(what), "key %s", k->id);
        k->gate = pol_gate_new(p, what);
    }
    k->gate->lim = *lim;
}

int pol_shape_open(mxu_policy *p, mxu_err *err)
{
    char *msg = NULL;
    if (sqlite3_exec(
            p->db,
            "CREATE TABLE IF NOT EXISTS shape_limits ("
            "  kind TEXT NOT NULL, name TEXT NOT NULL,"
            "  rate INTEGER NOT NULL DEFAULT 0, period_ms INTEGER NOT NULL DEFAULT 1000,"
            "  burst INTEGER NOT NULL DEFAULT 0, concurrency INTEGER NOT NULL DEFAULT 0,"
            "  priority TEXT NOT NULL DEFAULT 'default',"
            "  PRIMARY KEY (kind, name));"
            "CREATE TABLE IF NOT EXISTS tenant_quotas ("
            "  tenant TEXT PRIMARY KEY, invocations INTEGER NOT NULL DEFAULT 0,"
            "  gb_seconds INTEGER NOT NULL DEFAULT 0, bytes_out INTEGER NOT NULL DEFAULT 0);",
            NULL, NULL, &msg) != SQLITE_OK) {
        mxu_err_set(err, EIO, "state database (policy): %s", msg ? msg : "error");
        sqlite3_free(msg);
        return -1;
    }
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(p->db,
                           "SELECT kind, name, rate, period_ms, burst, concurrency, priority "
                           "FROM shape_limits",
                           -1, &st, NULL) != SQLITE_OK)
        return mxu_err_set(err, EIO, "state database (policy): %s", sqlite3_errmsg(p->db));
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *kind = (const char *)sqlite3_column_text(st, 0);
        const char *name = (const char *)sqlite3_column_text(st, 1);
        mxu_limits lim = {
            .rate = (uint64_t)sqlite3_column_int64(st, 2),
            .period_ms = (uint64_t)sqlite3_column_int64(st, 3),
            .burst = (uint32_t)sqlite3_column_int64(st, 4),
            .concurrency = (uint32_t)sqlite3_column_int64(st, 5),
        };
        enum mxu_priority prio = MXU_PRIO_DEFAULT;
        mxu_priority_parse((const char *)sqlite3_column_text(st, 6), &prio, NULL);
        if (kind == NULL || name == NULL)
            continue;
        if (strcmp(kind, "tenant") == 0) {
            apply_tenant(p, name, &lim);
        } else if (strcmp(kind, "key") == 0) {
            mxu_principal *k = pol_key_find(p, name);
            if (k == NULL)
                continue;
            if (mxu_limits_any(&lim))
                apply_key(p, k, &lim);
            k->priority = prio;
        }
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE)
        return mxu_err_set(err, EIO, "state database (policy): load limits: %s",
                           sqlite3_errmsg(p->db));
    return pol_quota_load(p, err);
}

/* Write one row (durable before the caller changes memory). */
static int store(mxu_policy *p, const char *kind, const char *name, const mxu_limits *lim,
                 const char *prio_sql, mxu_err *err)
{
    /* The priority column is kept when only limits change, and the other way
     * round: each setter updates its own columns. */
    _cleanup_free_ char *sql = mxu_asprintf(
        "INSERT INTO shape_limits(kind, name, rate, period_ms, burst, concurrency%s) "
        "VALUES(?1, ?2, ?3, ?4, ?5, ?6%s) ON CONFLICT(kind, name) DO UPDATE SET %s",
        prio_sql ? ", priority" : "", prio_sql ? ", ?7" : "",
        prio_sql ? "priority = ?7" : "rate = ?3, period_ms = ?4, burst = ?5, concurrency = ?6");
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(p->db, sql, -1, &st, NULL) != SQLITE_OK)
        return mxu_err_set(err, EIO, "state database (policy): %s", sqlite3_errmsg(p->db));
    sqlite3_bind_text(st, 1, kind, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, name, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, (sqlite3_int64)lim->rate);
    sqlite3_bind_int64(st, 4, (sqlite3_int64)(lim->period_ms ? lim->period_ms : 1000));
    sqlite3_bind_int64(st, 5, lim->burst);
    sqlite3_bind_int64(st, 6, lim->concurrency);
    if (prio_sql)
        sqlite3_bind_text(st, 7, prio_sql, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE)
        return mxu_err_set(err, EIO, "state database (policy): %s", sqlite3_errmsg(p->db));
    return 0;
}

int mxu_policy_tenant_limits_set(mxu_policy *p, const char *tenant, const mxu_limits *lim,
                                 mxu_err *err)
{
    mxu_limits none = {0};
    if (lim == NULL)
        lim = &none;
    if (!mxu_policy_tenant_exists(p, tenant))
        return mxu_err_set(err, ENOENT, "no tenant '%.40s'", tenant ? tenant : "");
    if (store(p, "tenant", tenant, lim, NULL, err) < 0)
        return -1;
    apply_tenant(p, tenant, lim);
    return 0;
}

int mxu_policy_key_limits_set(mxu_policy *p, const char *id, const mxu_limits *lim, mxu_err *err)
{
    mxu_limits none = {0};
    if (lim == NULL)
        lim = &none;
    mxu_principal *k = id ? pol_key_find(p, id) : NULL;
    if (k == NULL)
        return mxu_err_set(err, ENOENT, "no key '%.40s'", id ? id : "");
    if (store(p, "key", id, lim, NULL, err) < 0)
        return -1;
    if (mxu_limits_any(lim) || k->gate)
        apply_key(p, k, lim);
    return 0;
}

int mxu_policy_key_priority_set(mxu_policy *p, const char *id, enum mxu_priority prio, mxu_err *err)
{
    mxu_principal *k = id ? pol_key_find(p, id) : NULL;
    if (k == NULL)
        return mxu_err_set(err, ENOENT, "no key '%.40s'", id ? id : "");
    mxu_limits keep = k->gate ? k->gate->lim : (mxu_limits){0};
    if (store(p, "key", id, &keep, mxu_priority_name(prio), err) < 0)
        return -1;
    k->priority = prio;
    return 0;
}

enum mxu_priority mxu_principal_priority(const mxu_principal *who)
{
    return who ? who->priority : MXU_PRIO_DEFAULT;
}

json_t *mxu_policy_tenant_limits_json(mxu_policy *p, const char *tenant)
{
    pol_tstate *ts = pol_tstate_find(p, tenant);
    mxu_limits none = {0};
    json_t *j = json_pack("{s:s, s:o}", "tenant", tenant, "limits",
                          mxu_limits_json(ts && ts->gate ? &ts->gate->lim : &none));
    if (ts && ts->gate)
        json_object_set_new(j, "running", json_integer(ts->gate->inflight));
    json_object_update_new(j, pol_quota_json(p, ts, mxu_wall_ms()));
    return j;
}

json_t *mxu_policy_key_limits_json(mxu_policy *p, const char *id)
{
    mxu_principal *k = pol_key_find(p, id);
    mxu_limits none = {0};
    if (k == NULL)
        return NULL;
    return json_pack("{s:s, s:o, s:s}", "id", id, "limits",
                     mxu_limits_json(k->gate ? &k->gate->lim : &none), "priority",
                     mxu_priority_name(k->priority));
}

/* ---- admission ------------------------------------------------------------------- */

/* Check every gate first, then take from all of them: a refusal by one must
 * not spend another's token. */
static int admit_gates(pol_gate **gates, size_t n, uint64_t now_ns, mxu_shape_ticket *t,
                       mxu_shape_denial *d)
{
    mxu_bucket next[4];
    pol_gate *worst = NULL;
    uint64_t worst_ns = 0;
    bool conc = false;
    for (size_t i = 0; i < n; i++) {
        pol_gate *g = gates[i];
        uint64_t retry = 0;
        if (g->lim.concurrency && g->inflight >= g->lim.concurrency) {
            /* A slot frees when something running ends: no time to compute,
             * one second is the honest hint. Rate refusals win if longer. */
            if (worst == NULL || worst_ns < 1000000000ull) {
                worst = g;
                worst_ns = 1000000000ull;
                conc = true;
            }
        }
        if (!mxu_bucket_check(&g->bucket, &g->lim, now_ns, &next[i], &retry) &&
            (worst == NULL || retry > worst_ns)) {
            worst = g;
            worst_ns = retry;
            conc = false;
        }
    }
    if (worst) {
        char lim[96];
        mxu_limits only = worst->lim;
        if (conc)
            only.rate = 0;
        else
            only.concurrency = 0;
        mxu_limits_describe(&only, lim, sizeof(lim));
        d->code = conc ? "concurrency_limited" : "rate_limited";
        /* Whole seconds, rounded up, and at least 1 (0 would say "now"). */
        uint64_t s = (worst_ns + 999999999ull) / 1000000000ull;
        d->retry_after_s = (uint32_t)MXU_MAX(s, 1u);
        snprintf(d->message, sizeof(d->message), "%s limit of %s: %s",
                 conc ? "concurrency" : "rate", worst->what, lim);
        return -1;
    }
    t->n = 0;
    for (size_t i = 0; i < n; i++) {
        gates[i]->bucket = next[i];
        if (gates[i]->lim.concurrency) {
            gates[i]->inflight++;
            t->held[t->n++] = gates[i];
        }
    }
    return 0;
}

int mxu_shape_admit(mxu_policy *p, const mxu_principal *who, const char *tenant,
                    const char *function, const mxu_limits *fn, uint64_t now_ns,
                    mxu_shape_ticket *t, mxu_shape_denial *d)
{
    pol_gate *gates[3];
    size_t n = 0;
    t->n = 0;
    if (who && who->gate && mxu_limits_any(&who->gate->lim))
        gates[n++] = who->gate;
    pol_tstate *ts = p->tstates ? pol_tstate_find(p, tenant) : NULL;
    if (ts && ts->gate && mxu_limits_any(&ts->gate->lim))
        gates[n++] = ts->gate;
    if (fn && mxu_limits_any(fn)) {
        pol_gate *g = gate_lookup(p, 'F', tenant, function, NULL, fn);
        if (g)
            gates[n++] = g;
    }
    return n ? admit_gates(gates, n, now_ns, t, d) : 0;
}

int mxu_shape_admit_link(mxu_policy *p, const char *tenant, const char *caller, const char *desc,
                         const mxu_limits *lim, uint64_t now_ns, mxu_shape_ticket *t,
                         mxu_shape_denial *d)
{
    t->n = 0;
    if (lim == NULL || !mxu_limits_any(lim))
        return 0;
    pol_gate *g = gate_lookup(p, 'L', tenant, caller, desc, lim);
    return g ? admit_gates(&g, 1, now_ns, t, d) : 0;
}

void mxu_shape_release(mxu_shape_ticket *t)
{
    for (uint32_t i = 0; i < t->n; i++) {
        pol_gate *g = t->held[i];
        if (g->inflight)
            g->inflight--;
    }
    t->n = 0;
}
