/*
 * Tenants and keys: their tables in the node's state database, mirrored in
 * memory (uthash), and authentication against the mirror.
 *
 * The policy has its own connection to state.db (WAL lets it share the file
 * with the registry's) and its own tables, created if missing, so neither
 * subsystem has to know the other's schema:
 *
 *   tenants(name PRIMARY KEY, created_ms)
 *   api_keys(id PRIMARY KEY, tenant, role, scope, hash BLOB, note,
 *            created_ms, expires_ms, revoked_ms)
 *
 * Like the registry, every change is committed (synchronous=FULL) before the
 * mirror changes and before the caller hears it succeeded: a revocation a
 * client was told about survives kill -9.
 *
 * Divisions: SQL helpers · open and load · tenants · keys · authentication.
 */
#include "policy-internal.h"

#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>

/* ---- SQL helpers ------------------------------------------------------------ */

static void stmt_finalizep(sqlite3_stmt **s)
{
    if (*s)
        sqlite3_finalize(*s);
}
#define _cleanup_stmt_ __attribute__((cleanup(stmt_finalizep)))

static int db_error(mxu_policy *p, mxu_err *err, const char *what)
{
    return mxu_err_set(err, EIO, "state database (policy): %s: %s", what, sqlite3_errmsg(p->db));
}

static int db_exec(mxu_policy *p, const char *sql, mxu_err *err)
{
    char *msg = NULL;
    if (sqlite3_exec(p->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        mxu_err_set(err, EIO, "state database (policy): %s", msg ? msg : "error");
        sqlite3_free(msg);
        return -1;
    }
    return 0;
}

static int db_prepare(mxu_policy *p, const char *sql, sqlite3_stmt **st, mxu_err *err)
{
    if (sqlite3_prepare_v2(p->db, sql, -1, st, NULL) != SQLITE_OK)
        return db_error(p, err, "prepare");
    return 0;
}

static int db_step_done(mxu_policy *p, sqlite3_stmt *st, mxu_err *err)
{
    if (sqlite3_step(st) != SQLITE_DONE)
        return db_error(p, err, "write");
    return 0;
}

/* ---- the mirror ---------------------------------------------------------------- */

mxu_principal *pol_key_find(const mxu_policy *p, const char *id)
{
    mxu_principal *k = NULL;
    HASH_FIND_STR(p->keys, id, k);
    return k;
}

bool pol_key_live(const mxu_principal *k, uint64_t now_ms)
{
    return k->revoked_ms == 0 && (k->expires_ms == 0 || now_ms < k->expires_ms);
}

static pol_tenant *tenant_find(const mxu_policy *p, const char *name)
{
    pol_tenant *t = NULL;
    HASH_FIND_STR(p->tenants, name, t);
    return t;
}

static pol_tenant *tenant_add(mxu_policy *p, const char *name, uint64_t created_ms)
{
    pol_tenant *t = mxu_calloc(1, sizeof(*t));
    t->name = mxu_strdup(name);
    t->created_ms = created_ms;
    HASH_ADD_KEYPTR(hh, p->tenants, t->name, strlen(t->name), t);
    return t;
}

static mxu_principal *key_add(mxu_policy *p, const char *id, const char *tenant, enum mxu_role role,
                              const char *scope, const char *note)
{
    mxu_principal *k = mxu_calloc(1, sizeof(*k));
    snprintf(k->id, sizeof(k->id), "%s", id);
    k->tenant = mxu_strdup(tenant);
    k->role = role;
    k->scope = mxu_strdup(scope);
    k->note = mxu_strdup(note ? note : "");
    k->seq = p->next_seq++;
    HASH_ADD_STR(p->keys, id, k);
    return k;
}

/* ---- open and load --------------------------------------------------------------- */

static const char schema[] = "CREATE TABLE IF NOT EXISTS tenants ("
                             "  name TEXT PRIMARY KEY,"
                             "  created_ms INTEGER NOT NULL"
                             ");"
                             "CREATE TABLE IF NOT EXISTS api_keys ("
                             "  id TEXT PRIMARY KEY,"
                             "  tenant TEXT NOT NULL,"
                             "  role TEXT NOT NULL,"
                             "  scope TEXT NOT NULL,"
                             "  hash BLOB NOT NULL,"
                             "  note TEXT NOT NULL DEFAULT '',"
                             "  created_ms INTEGER NOT NULL,"
                             "  expires_ms INTEGER,"
                             "  revoked_ms INTEGER"
                             ");";

static int load(mxu_policy *p, mxu_err *err)
{
    {
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        if (db_prepare(p, "SELECT name, created_ms FROM tenants", &st, err) < 0)
            return -1;
        int rc;
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
            const char *name = (const char *)sqlite3_column_text(st, 0);
            if (!mxu_tenant_name_valid(name))
                return mxu_err_set(err, EIO, "state database: bad tenant name '%.40s'",
                                   name ? name : "");
            tenant_add(p, name, (uint64_t)sqlite3_column_int64(st, 1));
        }
        if (rc != SQLITE_DONE)
            return db_error(p, err, "load tenants");
    }
    _cleanup_stmt_ sqlite3_stmt *st = NULL;
    if (db_prepare(p,
                   "SELECT id, tenant, role, scope, hash, note, created_ms, expires_ms, "
                   "revoked_ms FROM api_keys ORDER BY created_ms, rowid",
                   &st, err) < 0)
        return -1;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *id = (const char *)sqlite3_column_text(st, 0);
        const char *tenant = (const char *)sqlite3_column_text(st, 1);
        const char *role = (const char *)sqlite3_column_text(st, 2);
        const char *scope = (const char *)sqlite3_column_text(st, 3);
        const char *note = (const char *)sqlite3_column_text(st, 5);
        enum mxu_role r;
        if (id == NULL || strlen(id) != MXU_KEY_ID_HEX || !mxu_tenant_name_valid(tenant) ||
            mxu_role_parse(role, &r, NULL) < 0 || !mxu_scope_valid(scope) ||
            sqlite3_column_bytes(st, 4) != 32 || pol_key_find(p, id))
            return mxu_err_set(err, EIO, "state database: API key '%.40s' is inconsistent",
                               id ? id : "");
        mxu_principal *k = key_add(p, id, tenant, r, scope, note);
        memcpy(k->hash, sqlite3_column_blob(st, 4), 32);
        k->created_ms = (uint64_t)sqlite3_column_int64(st, 6);
        k->expires_ms = (uint64_t)sqlite3_column_int64(st, 7);
        k->revoked_ms = (uint64_t)sqlite3_column_int64(st, 8);
    }
    if (rc != SQLITE_DONE)
        return db_error(p, err, "load keys");
    return 0;
}

int mxu_policy_open(const mxu_policy_config *cfg, mxu_policy **out, mxu_err *err)
{
    if (sodium_init() < 0)
        return mxu_err_set(err, EIO, "policy: cannot initialise libsodium");
    mxu_policy *p = mxu_calloc(1, sizeof(*p));
    p->data_dir = mxu_strdup(cfg->data_dir);
    p->auth = cfg->auth;
    p->node_admin.tenant = mxu_strdup(MXU_TENANT_DEFAULT);
    p->node_admin.role = MXU_ROLE_ADMIN;
    p->node_admin.scope = mxu_strdup("*");
    p->node_admin.note = mxu_strdup("authentication is off");
    _cleanup_free_ char *path = mxu_path_join(cfg->data_dir, "state.db");
    if (sqlite3_open_v2(path, &p->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) !=
        SQLITE_OK) {
        mxu_err_set(err, EIO, "cannot open state database %s: %s", path,
                    p->db ? sqlite3_errmsg(p->db) : "out of memory");
        mxu_policy_close(p);
        return -1;
    }
    sqlite3_busy_timeout(p->db, 5000);
    /* The registry switched the file to WAL; say FULL here too, because
     * synchronous is per connection. */
    if (db_exec(p, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;", err) < 0 ||
        db_exec(p, "BEGIN IMMEDIATE", err) < 0) {
        mxu_policy_close(p);
        return -1;
    }
    /* Tenant default owns everything made before tenants existed. */
    _cleanup_free_ char *seed =
        mxu_asprintf("%sINSERT OR IGNORE INTO tenants(name, created_ms) VALUES('%s', %llu);",
                     schema, MXU_TENANT_DEFAULT, (unsigned long long)mxu_wall_ms());
    if (db_exec(p, seed, err) < 0 || db_exec(p, "COMMIT", err) < 0 || load(p, err) < 0 ||
        pol_shape_open(p, err) < 0 || pol_links_open(p, err) < 0) {
        sqlite3_exec(p->db, "ROLLBACK", NULL, NULL, NULL);
        mxu_policy_close(p);
        return -1;
    }
    *out = p;
    return 0;
}

void mxu_policy_close(mxu_policy *p)
{
    if (p == NULL)
        return;
    pol_tenant *t, *ttmp;
    HASH_ITER(hh, p->tenants, t, ttmp)
    {
        HASH_DEL(p->tenants, t);
        free(t->name);
        free(t);
    }
    mxu_principal *k, *ktmp;
    HASH_ITER(hh, p->keys, k, ktmp)
    {
        HASH_DEL(p->keys, k);
        free(k->tenant);
        free(k->scope);
        free(k->note);
        free(k);
    }
    pol_shape_close(p);
    pol_links_close(p);
    free(p->node_admin.tenant);
    free(p->node_admin.scope);
    free(p->node_admin.note);
    if (p->db)
        sqlite3_close(p->db);
    free(p->data_dir);
    free(p);
}

bool mxu_policy_auth_enabled(const mxu_policy *p)
{
    return p->auth;
}

/* ---- tenants --------------------------------------------------------------------- */

bool mxu_policy_tenant_exists(const mxu_policy *p, const char *name)
{
    return name && tenant_find(p, name) != NULL;
}

int mxu_policy_tenant_create(mxu_policy *p, const char *name, mxu_err *err)
{
    if (!mxu_tenant_name_valid(name))
        return mxu_err_set(err, EINVAL,
                           "'%.40s' is not a tenant name (lowercase letters, digits and '-', "
                           "starting with a letter, at most 32 characters)",
                           name ? name : "");
    if (tenant_find(p, name))
        return mxu_err_set(err, EEXIST, "tenant '%s' exists already", name);
    uint64_t now = mxu_wall_ms();
    _cleanup_stmt_ sqlite3_stmt *st = NULL;
    if (db_prepare(p, "INSERT INTO tenants(name, created_ms) VALUES(?, ?)", &st, err) < 0)
        return -1;
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)now);
    if (db_step_done(p, st, err) < 0)
        return -1;
    tenant_add(p, name, now);
    return 0;
}

int mxu_policy_tenant_delete(mxu_policy *p, const char *name, mxu_err *err)
{
    if (name && strcmp(name, MXU_TENANT_DEFAULT) == 0)
        return mxu_err_set(err, EPERM, "tenant 'default' cannot be deleted: it owns the node");
    pol_tenant *t = name ? tenant_find(p, name) : NULL;
    if (t == NULL)
        return mxu_err_set(err, ENOENT, "no tenant '%.40s'", name ? name : "");
    uint64_t now = mxu_wall_ms();
    if (db_exec(p, "BEGIN IMMEDIATE", err) < 0)
        return -1;
    static const char *const sqls[] = {
        "UPDATE api_keys SET revoked_ms = ?2 WHERE tenant = ?1 AND revoked_ms IS NULL",
        "DELETE FROM tenants WHERE name = ?1",
        /* A tenant made later with the same name starts without limits. */
        "DELETE FROM shape_limits WHERE kind = 'tenant' AND name = ?1",
        "DELETE FROM tenant_quotas WHERE tenant = ?1",
        /* ...and without the old one's policy documents. */
        "DELETE FROM policy_docs WHERE scope = ?1",
    };
    for (size_t i = 0; i < MXU_ARRAY_LEN(sqls); i++) {
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        if (db_prepare(p, sqls[i], &st, err) < 0)
            goto fail;
        sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
        if (i == 0)
            sqlite3_bind_int64(st, 2, (sqlite3_int64)now);
        if (db_step_done(p, st, err) < 0)
            goto fail;
    }
    if (db_exec(p, "COMMIT", err) < 0)
        goto fail;
    mxu_principal *k, *tmp;
    HASH_ITER(hh, p->keys, k, tmp)
    {
        if (strcmp(k->tenant, name) == 0 && k->revoked_ms == 0)
            k->revoked_ms = now;
    }
    HASH_DEL(p->tenants, t);
    free(t->name);
    free(t);
    pol_links_tenant_deleted(p, name);
    pol_tstate *ts = pol_tstate_find(p, name);
    if (ts) {
        if (ts->gate)
            ts->gate->lim = (mxu_limits){0};
        ts->quota = (mxu_quota){0};
    }
    return 0;
fail:
    sqlite3_exec(p->db, "ROLLBACK", NULL, NULL, NULL);
    return -1;
}

static int cmp_tenant(const void *a, const void *b)
{
    return strcmp((*(pol_tenant *const *)a)->name, (*(pol_tenant *const *)b)->name);
}

json_t *mxu_policy_tenants_json(const mxu_policy *p)
{
    size_t n = HASH_COUNT(p->tenants), i = 0;
    _cleanup_free_ pol_tenant **ts = mxu_calloc(n ? n : 1, sizeof(*ts));
    pol_tenant *t, *tmp;
    HASH_ITER(hh, p->tenants, t, tmp)
    ts[i++] = t;
    qsort(ts, n, sizeof(*ts), cmp_tenant);
    uint64_t now = mxu_wall_ms();
    json_t *a = json_array();
    for (i = 0; i < n; i++) {
        char created[40];
        mxu_format_time_ms(ts[i]->created_ms, created, sizeof(created));
        json_int_t live = 0;
        mxu_principal *k, *ktmp;
        HASH_ITER(hh, p->keys, k, ktmp)
        {
            if (strcmp(k->tenant, ts[i]->name) == 0 && pol_key_live(k, now))
                live++;
        }
        json_array_append_new(
            a, json_pack("{s:s, s:s, s:I}", "name", ts[i]->name, "created", created, "keys", live));
    }
    return a;
}

/* ---- keys -------------------------------------------------------------------------- */

static json_t *key_json(const mxu_principal *k, uint64_t now)
{
    char created[40], expires[40] = "", revoked[40] = "";
    mxu_format_time_ms(k->created_ms, created, sizeof(created));
    if (k->expires_ms)
        mxu_format_time_ms(k->expires_ms, expires, sizeof(expires));
    if (k->revoked_ms)
        mxu_format_time_ms(k->revoked_ms, revoked, sizeof(revoked));
    const char *state = k->revoked_ms ? "revoked" : pol_key_live(k, now) ? "active" : "expired";
    json_t *j = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s}", "id", k->id, "tenant", k->tenant,
                          "role", mxu_role_name(k->role), "scope", k->scope, "created", created,
                          "state", state, "note", k->note);
    json_object_set_new(j, "expires", k->expires_ms ? json_string(expires) : json_null());
    json_object_set_new(j, "revoked", k->revoked_ms ? json_string(revoked) : json_null());
    return j;
}

int mxu_policy_key_create(mxu_policy *p, const mxu_key_spec *spec, char **text_out,
                          json_t **info_out, mxu_err *err)
{
    const char *scope = spec->scope ? spec->scope : "*";
    if (!mxu_policy_tenant_exists(p, spec->tenant))
        return mxu_err_set(err, ENOENT, "no tenant '%.40s'", spec->tenant ? spec->tenant : "");
    if (!mxu_scope_valid(scope))
        return mxu_err_set(err, EINVAL,
                           "'%.64s' is not a scope (a glob over function names: lowercase "
                           "letters, digits, '-', '_' and * ? [ ] !, at most 64 characters)",
                           scope);
    if ((size_t)spec->role > MXU_ROLE_VIEWER)
        return mxu_err_set(err, EINVAL, "unknown role");
    if (spec->note && (strlen(spec->note) > 200 || !mxu_utf8_valid(spec->note, strlen(spec->note))))
        return mxu_err_set(err, EINVAL, "a key's note is at most 200 bytes of UTF-8");
    unsigned char idbin[MXU_KEY_ID_HEX / 2], secret[32], hash[32];
    char id[MXU_KEY_ID_HEX + 1], secret_hex[MXU_KEY_SECRET_HEX + 1];
    do {
        randombytes_buf(idbin, sizeof(idbin));
        pol_hex(idbin, sizeof(idbin), id);
    } while (pol_key_find(p, id));
    randombytes_buf(secret, sizeof(secret));
    mxu_key_hash(id, secret, hash);
    uint64_t now = mxu_wall_ms();
    _cleanup_stmt_ sqlite3_stmt *st = NULL;
    if (db_prepare(p,
                   "INSERT INTO api_keys(id, tenant, role, scope, hash, note, created_ms, "
                   "expires_ms) VALUES(?, ?, ?, ?, ?, ?, ?, ?)",
                   &st, err) < 0)
        goto fail;
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, spec->tenant, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, mxu_role_name(spec->role), -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, scope, -1, SQLITE_STATIC);
    sqlite3_bind_blob(st, 5, hash, sizeof(hash), SQLITE_STATIC);
    sqlite3_bind_text(st, 6, spec->note ? spec->note : "", -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 7, (sqlite3_int64)now);
    if (spec->expires_ms)
        sqlite3_bind_int64(st, 8, (sqlite3_int64)spec->expires_ms);
    else
        sqlite3_bind_null(st, 8);
    if (db_step_done(p, st, err) < 0)
        goto fail;
    mxu_principal *k = key_add(p, id, spec->tenant, spec->role, scope, spec->note);
    memcpy(k->hash, hash, sizeof(hash));
    k->created_ms = now;
    k->expires_ms = spec->expires_ms;
    pol_hex(secret, sizeof(secret), secret_hex);
    *text_out = mxu_asprintf("mxu_%s_%s", id, secret_hex);
    if (info_out)
        *info_out = key_json(k, now);
    sodium_memzero(secret, sizeof(secret));
    sodium_memzero(secret_hex, sizeof(secret_hex));
    return 0;
fail:
    sodium_memzero(secret, sizeof(secret));
    return -1;
}

int mxu_policy_key_revoke(mxu_policy *p, const char *id, mxu_err *err)
{
    mxu_principal *k = id ? pol_key_find(p, id) : NULL;
    if (k == NULL)
        return mxu_err_set(err, ENOENT, "no key '%.40s'", id ? id : "");
    if (k->revoked_ms)
        return 0;
    uint64_t now = mxu_wall_ms();
    _cleanup_stmt_ sqlite3_stmt *st = NULL;
    if (db_prepare(p, "UPDATE api_keys SET revoked_ms = ? WHERE id = ?", &st, err) < 0)
        return -1;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)now);
    sqlite3_bind_text(st, 2, id, -1, SQLITE_STATIC);
    if (db_step_done(p, st, err) < 0)
        return -1;
    k->revoked_ms = now; /* from this instant on, the key authenticates nothing */
    return 0;
}

const char *mxu_policy_key_tenant(const mxu_policy *p, const char *id)
{
    mxu_principal *k = id ? pol_key_find(p, id) : NULL;
    return k ? k->tenant : NULL;
}

static int cmp_key(const void *a, const void *b)
{
    uint64_t x = (*(mxu_principal *const *)a)->seq, y = (*(mxu_principal *const *)b)->seq;
    return x < y ? -1 : x > y;
}

json_t *mxu_policy_keys_json(const mxu_policy *p, const char *tenant)
{
    size_t n = HASH_COUNT(p->keys), i = 0;
    _cleanup_free_ mxu_principal **ks = mxu_calloc(n ? n : 1, sizeof(*ks));
    mxu_principal *k, *tmp;
    HASH_ITER(hh, p->keys, k, tmp)
    {
        if (tenant == NULL || strcmp(k->tenant, tenant) == 0)
            ks[i++] = k;
    }
    qsort(ks, i, sizeof(*ks), cmp_key);
    uint64_t now = mxu_wall_ms();
    json_t *a = json_array();
    for (size_t j = 0; j < i; j++)
        json_array_append_new(a, key_json(ks[j], now));
    return a;
}

/* ---- authentication ------------------------------------------------------------------ */

/* The value after "Bearer " (scheme case-insensitive, blanks around), or NULL. */
static const char *bearer_value(const char *h, size_t *len)
{
    while (*h == ' ' || *h == '\t')
        h++;
    if (strncasecmp(h, "bearer", 6) != 0 || (h[6] != ' ' && h[6] != '\t'))
        return NULL;
    h += 6;
    while (*h == ' ' || *h == '\t')
        h++;
    size_t n = strlen(h);
    while (n > 0 && (h[n - 1] == ' ' || h[n - 1] == '\t'))
        n--;
    *len = n;
    return h;
}

bool mxu_policy_is_key_header(const char *authorization)
{
    size_t n;
    const char *v = authorization ? bearer_value(authorization, &n) : NULL;
    return v && n >= 4 && strncmp(v, "mxu_", 4) == 0;
}

/* The key `authorization` proves, live or not; NULL with err set. */
static mxu_principal *auth_prove(mxu_policy *p, const char *authorization, mxu_err *err)
{
    if (authorization == NULL) {
        mxu_err_set(err, ENOKEY,
                    "this node requires an API key: send 'Authorization: Bearer KEY' "
                    "(the node's first admin key is in its data directory, admin.key)");
        return NULL;
    }
    size_t n;
    const char *v = bearer_value(authorization, &n);
    if (v == NULL) {
        mxu_err_set(err, EINVAL,
                    "the Authorization header must be 'Bearer KEY' (with an mxu key, "
                    "mxu_<id>_<secret>)");
        return NULL;
    }
    char text[MXU_KEY_TEXT_LEN + 2];
    if (n > MXU_KEY_TEXT_LEN) {
        mxu_err_set(err, EINVAL, "malformed API key: %zu characters, not %d", n, MXU_KEY_TEXT_LEN);
        return NULL;
    }
    memcpy(text, v, n);
    text[n] = '\0';
    char id[MXU_KEY_ID_HEX + 1];
    unsigned char secret[32], hash[32];
    mxu_err perr;
    if (mxu_key_parse(text, id, secret, &perr) < 0) {
        sodium_memzero(text, sizeof(text));
        mxu_err_set(err, EINVAL, "malformed API key: %s", perr.msg);
        return NULL;
    }
    sodium_memzero(text, sizeof(text));
    mxu_principal *k = pol_key_find(p, id);
    /* Hash even when the id is unknown, so the answer takes the same time. */
    mxu_key_hash(id, secret, hash);
    sodium_memzero(secret, sizeof(secret));
    if (k == NULL || sodium_memcmp(hash, k->hash, sizeof(hash)) != 0) {
        mxu_err_set(err, ENOENT, "unknown API key (no key %s with that secret)", id);
        return NULL;
    }
    return k;
}

/* Whether a proven key may still be used. */
static int auth_live(const mxu_principal *k, mxu_err *err)
{
    if (k->revoked_ms) {
        char when[40];
        mxu_format_time_ms(k->revoked_ms, when, sizeof(when));
        return mxu_err_set(err, EKEYREVOKED, "API key %s was revoked at %s", k->id, when);
    }
    if (k->expires_ms && mxu_wall_ms() >= k->expires_ms) {
        char when[40];
        mxu_format_time_ms(k->expires_ms, when, sizeof(when));
        return mxu_err_set(err, EKEYEXPIRED, "API key %s expired at %s", k->id, when);
    }
    return 0;
}

int mxu_policy_authenticate(mxu_policy *p, const char *authorization, const mxu_principal **out,
                            mxu_err *err)
{
    return mxu_policy_authenticate_memo(p, authorization, NULL, out, err);
}

struct mxu_auth_memo {
    const mxu_principal *who; /* keys are never freed while the policy lives */
    size_t len, cap;
    char value[]; /* the Authorization value that proved it */
};

void mxu_auth_memo_free(void *memo)
{
    mxu_auth_memo *m = memo;
    if (m == NULL)
        return;
    sodium_memzero(m->value, m->cap);
    free(m);
}

int mxu_policy_authenticate_memo(mxu_policy *p, const char *authorization, mxu_auth_memo **memo,
                                 const mxu_principal **out, mxu_err *err)
{
    if (!p->auth) {
        *out = &p->node_admin;
        return 0;
    }
    size_t len = authorization ? strlen(authorization) : 0;
    mxu_auth_memo *m = memo ? *memo : NULL;
    /* A plain memcmp: the memo holds what this same connection sent before,
     * so its timing tells the sender nothing it did not know. */
    const mxu_principal *k;
    if (m && authorization && m->len == len && memcmp(m->value, authorization, len) == 0) {
        k = m->who;
    } else {
        k = auth_prove(p, authorization, err);
        if (k == NULL)
            return -1;
        if (memo && len <= MXU_KEY_TEXT_LEN + 64) {
            if (m == NULL || m->cap < len + 1) {
                mxu_auth_memo_free(m);
                m = mxu_malloc(sizeof(*m) + len + 1);
                m->cap = len + 1;
                *memo = m;
            }
            memcpy(m->value, authorization, len + 1);
            m->len = len;
            m->who = k;
        }
    }
    if (auth_live(k, err) < 0)
        return -1;
    *out = k;
    return 0;
}

const char *mxu_principal_tenant(const mxu_principal *who)
{
    return who->tenant;
}

enum mxu_role mxu_principal_role(const mxu_principal *who)
{
    return who->role;
}

const char *mxu_principal_key_id(const mxu_principal *who)
{
    return who->id;
}

const char *mxu_principal_scope(const mxu_principal *who)
{
    return who->scope;
}

bool mxu_principal_is_node_admin(const mxu_principal *who)
{
    return who && who->role == MXU_ROLE_ADMIN && strcmp(who->tenant, MXU_TENANT_DEFAULT) == 0;
}
