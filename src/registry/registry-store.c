/*
 * The registry's state: an SQLite database (the truth, durable) mirrored by an
 * in-memory model (uthash tables keyed by "tenant/name") that serves every
 * read, so that resolving `name@ref` on the invocation path is a hash lookup
 * and a binary search, never a query and never an allocation.
 *
 * Every write is one transaction, and the model changes only after COMMIT
 * succeeded: if the database refuses a change, memory still matches disk and
 * the caller is told it failed. With WAL and synchronous=FULL, a COMMIT that
 * returned is on disk, so what a client was told survives kill -9.
 *
 * Schema (user_version 2):
 *   functions(tenant, name, created_ms, next_version, deleted_ms)
 *     (tenant, name) is the key: names are scoped per tenant.
 *     next_version only ever grows, and a deleted function keeps its row (a
 *     tombstone with deleted_ms set): a function deleted and deployed again
 *     goes on counting, so `name@3` never names two different bundles.
 *   versions(tenant, function, number, manifest JSON, digest, created_ms)
 *   aliases(tenant, function, alias, version) — user aliases; `latest` is
 *     not stored: it is by definition the newest remaining version.
 * Version 1 had no tenant column (every function was tenant default's);
 * opening such a database migrates it in one transaction (db_migrate).
 *
 * Divisions: versions (refcounting, JSON) · SQL helpers · schema and loading ·
 * open/close · resolve · writes (commit of a deploy, aliases, deletion) ·
 * reading for the API.
 */
#include "registry-internal.h"

#include "mxu-config.h"
#include "policy/policy.h"

#include <errno.h>
#include <stdarg.h>
#include <limits.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#define SCHEMA_VERSION 2

/* ---- versions -------------------------------------------------------------- */

mxu_fn_version *mxu_fn_version_ref(mxu_fn_version *v)
{
    v->refs++;
    return v;
}

void mxu_fn_version_unref(mxu_fn_version *v)
{
    if (v == NULL || --v->refs > 0)
        return;
    free(v->tenant);
    free(v->function);
    mxu_manifest_free(v->manifest);
    free(v->digest);
    free(v->bundle_dir);
    free(v->exe_path);
    free(v);
}

static void format_time(uint64_t ms, char *out, size_t outlen)
{
    mxu_format_time_ms(ms, out, outlen);
}

json_t *mxu_fn_version_to_json(const mxu_fn_version *v)
{
    char created[40];
    format_time(v->created_ms, created, sizeof(created));
    return json_pack("{s:s, s:s, s:I, s:s, s:s, s:o}", "function", v->function, "tenant", v->tenant,
                     "version", (json_int_t)v->version, "digest", v->digest, "created", created,
                     "manifest", mxu_manifest_to_json(v->manifest));
}

/* Takes ownership of `m`. */
static mxu_fn_version *version_new(mxu_registry *reg, const char *tenant, const char *function,
                                   uint32_t number, mxu_manifest *m, const char *digest,
                                   uint64_t created_ms)
{
    mxu_fn_version *v = mxu_calloc(1, sizeof(*v));
    v->tenant = mxu_strdup(tenant);
    v->function = mxu_strdup(function);
    v->version = number;
    v->manifest = m;
    v->digest = mxu_strdup(digest);
    v->bundle_dir = mxu_path_join(reg->bundles_dir, digest);
    v->exe_path = reg_exe_path(m, v->bundle_dir);
    v->created_ms = created_ms;
    v->refs = 1;
    return v;
}

/* ---- the in-memory model ----------------------------------------------------- */

/* "tenant/name" into `key` (REG_KEY_MAX); false if it does not fit, which
 * no valid pair does (tenant <= 32, name <= 63). On the stack: resolving
 * stays allocation-free. */
static bool function_key(const char *tenant, const char *name, char *key)
{
    int n = snprintf(key, REG_KEY_MAX, "%s/%s", tenant, name);
    return n > 0 && n < REG_KEY_MAX;
}

reg_function *reg_function_find(mxu_registry *reg, const char *tenant, const char *name)
{
    char key[REG_KEY_MAX];
    if (tenant == NULL || name == NULL || !function_key(tenant, name, key))
        return NULL;
    reg_function *fn = NULL;
    HASH_FIND_STR(reg->functions, key, fn);
    return fn;
}

mxu_fn_version *reg_function_latest(const reg_function *fn)
{
    return fn->nversions ? fn->versions[fn->nversions - 1] : NULL;
}

static reg_function *function_add(mxu_registry *reg, const char *tenant, const char *name,
                                  uint64_t created_ms)
{
    reg_function *fn = mxu_calloc(1, sizeof(*fn));
    /* The hash key "tenant/name", and a second copy split at the '/' that
     * tenant and name point into. */
    fn->key = mxu_asprintf("%s/%s", tenant, name);
    fn->tenant = mxu_asprintf("%s/%s", tenant, name);
    fn->tenant[strlen(tenant)] = '\0';
    fn->name = fn->tenant + strlen(tenant) + 1;
    fn->created_ms = created_ms;
    HASH_ADD_KEYPTR(hh, reg->functions, fn->key, strlen(fn->key), fn);
    return fn;
}

static void function_free(mxu_registry *reg, reg_function *fn)
{
    reg_alias *a, *tmp;
    HASH_ITER(hh, fn->aliases, a, tmp)
    {
        HASH_DEL(fn->aliases, a);
        free(a->name);
        free(a);
    }
    for (size_t i = 0; i < fn->nversions; i++)
        mxu_fn_version_unref(fn->versions[i]);
    free(fn->versions);
    HASH_DEL(reg->functions, fn);
    free(fn->key);
    free(fn->tenant); /* fn->name points into it */
    free(fn);
}

/* Versions are appended in increasing order (deploys) or loaded sorted. */
static void function_append(reg_function *fn, mxu_fn_version *v)
{
    if (fn->nversions == fn->cap) {
        fn->cap = fn->cap ? fn->cap * 2 : 8;
        fn->versions = mxu_realloc(fn->versions, fn->cap * sizeof(*fn->versions));
    }
    fn->versions[fn->nversions++] = v;
}

/* Index of version `number`, or -1. Binary search: no allocation, O(log n). */
static ssize_t function_version_index(const reg_function *fn, uint32_t number)
{
    size_t lo = 0, hi = fn->nversions;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        uint32_t n = fn->versions[mid]->version;
        if (n == number)
            return (ssize_t)mid;
        if (n < number)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -1;
}

static reg_alias *alias_find(reg_function *fn, const char *alias)
{
    reg_alias *a = NULL;
    HASH_FIND_STR(fn->aliases, alias, a);
    return a;
}

/* The first user alias pointing at v, or NULL. */
static reg_alias *alias_pointing_at(reg_function *fn, const mxu_fn_version *v)
{
    reg_alias *a, *tmp;
    HASH_ITER(hh, fn->aliases, a, tmp)
    {
        if (a->version == v)
            return a;
    }
    return NULL;
}

bool reg_digest_in_use(mxu_registry *reg, const char *digest)
{
    reg_function *fn, *tmp;
    HASH_ITER(hh, reg->functions, fn, tmp)
    {
        for (size_t i = 0; i < fn->nversions; i++) {
            if (strcmp(fn->versions[i]->digest, digest) == 0)
                return true;
        }
    }
    return false;
}

void reg_notify(mxu_registry *reg, enum mxu_registry_event ev, mxu_fn_version *v)
{
    if (reg->listener)
        reg->listener(reg->listener_ud, ev, v);
}

void mxu_registry_set_listener(mxu_registry *reg,
                               void (*cb)(void *ud, enum mxu_registry_event ev, mxu_fn_version *v),
                               void *ud)
{
    reg->listener = cb;
    reg->listener_ud = ud;
}

/* ---- SQL helpers -------------------------------------------------------------- */

static void stmt_finalizep(sqlite3_stmt **s)
{
    if (*s)
        sqlite3_finalize(*s);
}
#define _cleanup_stmt_ __attribute__((cleanup(stmt_finalizep)))

static int db_error(mxu_registry *reg, mxu_err *err, const char *what)
{
    return mxu_err_set(err, EIO, "state database: %s: %s", what, sqlite3_errmsg(reg->db));
}

static int db_exec(mxu_registry *reg, const char *sql, mxu_err *err)
{
    char *msg = NULL;
    if (sqlite3_exec(reg->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        mxu_err_set(err, EIO, "state database: %s: %s", sql, msg ? msg : "error");
        sqlite3_free(msg);
        return -1;
    }
    return 0;
}

static int db_prepare(mxu_registry *reg, const char *sql, sqlite3_stmt **st, mxu_err *err)
{
    if (sqlite3_prepare_v2(reg->db, sql, -1, st, NULL) != SQLITE_OK)
        return db_error(reg, err, "prepare");
    return 0;
}

/* Run a statement that returns no rows. */
static int db_step_done(mxu_registry *reg, sqlite3_stmt *st, mxu_err *err)
{
    if (sqlite3_step(st) != SQLITE_DONE)
        return db_error(reg, err, "write");
    return 0;
}

static int tx_begin(mxu_registry *reg, mxu_err *err)
{
    /* IMMEDIATE: take the write lock now rather than fail half-way. */
    return db_exec(reg, "BEGIN IMMEDIATE", err);
}

static void tx_rollback(mxu_registry *reg)
{
    if (!sqlite3_get_autocommit(reg->db))
        sqlite3_exec(reg->db, "ROLLBACK", NULL, NULL, NULL);
}

static int tx_commit(mxu_registry *reg, mxu_err *err)
{
    if (db_exec(reg, "COMMIT", err) < 0) {
        tx_rollback(reg);
        return -1;
    }
    return 0;
}

/* ---- schema and loading --------------------------------------------------------- */

static const char schema_v2[] =
    "CREATE TABLE functions ("
    "  tenant TEXT NOT NULL,"
    "  name TEXT NOT NULL,"
    "  created_ms INTEGER NOT NULL,"
    "  next_version INTEGER NOT NULL,"
    "  deleted_ms INTEGER,"
    "  PRIMARY KEY (tenant, name)"
    ");"
    "CREATE TABLE versions ("
    "  tenant TEXT NOT NULL,"
    "  function TEXT NOT NULL,"
    "  number INTEGER NOT NULL,"
    "  manifest TEXT NOT NULL,"
    "  digest TEXT NOT NULL,"
    "  created_ms INTEGER NOT NULL,"
    "  PRIMARY KEY (tenant, function, number),"
    "  FOREIGN KEY (tenant, function) REFERENCES functions(tenant, name)"
    ");"
    "CREATE TABLE aliases ("
    "  tenant TEXT NOT NULL,"
    "  function TEXT NOT NULL,"
    "  alias TEXT NOT NULL,"
    "  version INTEGER NOT NULL,"
    "  PRIMARY KEY (tenant, function, alias),"
    "  FOREIGN KEY (tenant, function, version) REFERENCES versions(tenant, function, number)"
    ");"
    "PRAGMA user_version = 2;";

/* Version 1 → 2: every function so far is tenant default's. SQLite can't
 * change a primary key in place, so the old tables are renamed aside, the
 * new ones made as a fresh database has them, the rows copied with tenant
 * 'default', and the old tables dropped; all in the caller's transaction,
 * with foreign keys off (they would see the tables half-moved). */
static const char migrate_v1_v2_rename[] = "ALTER TABLE aliases RENAME TO aliases_v1;"
                                           "ALTER TABLE versions RENAME TO versions_v1;"
                                           "ALTER TABLE functions RENAME TO functions_v1;";
static const char migrate_v1_v2_copy[] =
    "INSERT INTO functions(tenant, name, created_ms, next_version, deleted_ms) "
    "  SELECT 'default', name, created_ms, next_version, deleted_ms FROM functions_v1;"
    "INSERT INTO versions(tenant, function, number, manifest, digest, created_ms) "
    "  SELECT 'default', function, number, manifest, digest, created_ms FROM versions_v1;"
    "INSERT INTO aliases(tenant, function, alias, version) "
    "  SELECT 'default', function, alias, version FROM aliases_v1;"
    "DROP TABLE aliases_v1;"
    "DROP TABLE versions_v1;"
    "DROP TABLE functions_v1;";

/* Bring the schema to SCHEMA_VERSION, one step per version, each step in a
 * transaction (SQLite's DDL and user_version are transactional). */
static int db_schema_version(mxu_registry *reg, int *version, mxu_err *err)
{
    _cleanup_stmt_ sqlite3_stmt *st = NULL;
    if (db_prepare(reg, "PRAGMA user_version", &st, err) < 0)
        return -1;
    if (sqlite3_step(st) != SQLITE_ROW)
        return db_error(reg, err, "read schema version");
    *version = sqlite3_column_int(st, 0);
    return 0;
}

static int db_migrate(mxu_registry *reg, mxu_err *err)
{
    int version = 0;
    if (db_schema_version(reg, &version, err) < 0)
        return -1;
    if (version > SCHEMA_VERSION)
        return mxu_err_set(err, EPROTO,
                           "state database has schema %d, but this mxu knows only up to %d "
                           "(was it written by a newer mxu?)",
                           version, SCHEMA_VERSION);
    if (version == SCHEMA_VERSION)
        return 0;
    if (tx_begin(reg, err) < 0)
        return -1;
    if ((version == 1 && db_exec(reg, migrate_v1_v2_rename, err) < 0) ||
        db_exec(reg, schema_v2, err) < 0 ||
        (version == 1 && db_exec(reg, migrate_v1_v2_copy, err) < 0)) {
        tx_rollback(reg);
        return mxu_err_prefix(err, "cannot bring the state database from schema %d to %d", version,
                              SCHEMA_VERSION);
    }
    if (tx_commit(reg, err) < 0)
        return -1;
    if (version == 1)
        mxu_info("state database: schema 1 -> 2 (function names scoped per tenant; every "
                 "existing function is tenant default's)");
    return 0;
}

static int load_functions(mxu_registry *reg, mxu_err *err)
{
    _cleanup_stmt_ sqlite3_stmt *st = NULL;
    if (db_prepare(reg, "SELECT tenant, name, created_ms FROM functions WHERE deleted_ms IS NULL",
                   &st, err) < 0)
        return -1;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *tenant = (const char *)sqlite3_column_text(st, 0);
        const char *name = (const char *)sqlite3_column_text(st, 1);
        if (tenant == NULL || !mxu_tenant_name_valid(tenant))
            return mxu_err_set(err, EIO, "state database: bad tenant name '%s'",
                               tenant ? tenant : "");
        if (name == NULL || !mxu_name_valid(name))
            return mxu_err_set(err, EIO, "state database: bad function name '%s'",
                               name ? name : "");
        function_add(reg, tenant, name, (uint64_t)sqlite3_column_int64(st, 2));
    }
    if (rc != SQLITE_DONE)
        return db_error(reg, err, "load functions");
    return 0;
}

static int load_versions(mxu_registry *reg, mxu_err *err)
{
    _cleanup_stmt_ sqlite3_stmt *st = NULL;
    if (db_prepare(reg,
                   "SELECT tenant, function, number, manifest, digest, created_ms FROM versions "
                   "ORDER BY tenant, function, number",
                   &st, err) < 0)
        return -1;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *tenant = (const char *)sqlite3_column_text(st, 0);
        const char *name = (const char *)sqlite3_column_text(st, 1);
        sqlite3_int64 number = sqlite3_column_int64(st, 2);
        const char *manifest = (const char *)sqlite3_column_text(st, 3);
        const char *digest = (const char *)sqlite3_column_text(st, 4);
        reg_function *fn = reg_function_find(reg, tenant, name);
        if (fn == NULL || number < 1 || number > UINT32_MAX || manifest == NULL || digest == NULL ||
            !reg_digest_valid(digest))
            return mxu_err_set(err, EIO,
                               "state database: version %lld of '%s' is inconsistent (its "
                               "function is missing or deleted, or its fields are invalid)",
                               (long long)number, name ? name : "");
        json_error_t jerr;
        json_t *j = json_loads(manifest, 0, &jerr);
        mxu_manifest *m = NULL;
        int prc = j ? mxu_manifest_from_json(j, &m, err) : -1;
        json_decref(j);
        if (prc < 0) {
            if (j == NULL)
                mxu_err_set(err, EIO, "%s", jerr.text);
            return mxu_err_prefix(err, "state database: manifest of %s@%lld", name,
                                  (long long)number);
        }
        if (strcmp(m->name, name) != 0) {
            mxu_manifest_free(m);
            return mxu_err_set(err, EIO, "state database: version %lld of '%s' names '%s'",
                               (long long)number, name, m->name);
        }
        function_append(fn, version_new(reg, fn->tenant, name, (uint32_t)number, m, digest,
                                        (uint64_t)sqlite3_column_int64(st, 5)));
    }
    if (rc != SQLITE_DONE)
        return db_error(reg, err, "load versions");
    return 0;
}

static int load_aliases(mxu_registry *reg, mxu_err *err)
{
    _cleanup_stmt_ sqlite3_stmt *st = NULL;
    if (db_prepare(reg, "SELECT tenant, function, alias, version FROM aliases", &st, err) < 0)
        return -1;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *tenant = (const char *)sqlite3_column_text(st, 0);
        const char *name = (const char *)sqlite3_column_text(st, 1);
        const char *alias = (const char *)sqlite3_column_text(st, 2);
        sqlite3_int64 number = sqlite3_column_int64(st, 3);
        reg_function *fn = reg_function_find(reg, tenant, name);
        ssize_t idx = fn && number >= 1 && number <= UINT32_MAX
                          ? function_version_index(fn, (uint32_t)number)
                          : -1;
        if (idx < 0 || alias == NULL || !mxu_name_valid(alias) || strcmp(alias, "latest") == 0 ||
            alias_find(fn, alias))
            return mxu_err_set(err, EIO,
                               "state database: alias '%s' of '%s' is inconsistent (it points "
                               "at a missing version %lld)",
                               alias ? alias : "", name ? name : "", (long long)number);
        reg_alias *a = mxu_calloc(1, sizeof(*a));
        a->name = mxu_strdup(alias);
        a->version = fn->versions[idx];
        HASH_ADD_KEYPTR(hh, fn->aliases, a->name, strlen(a->name), a);
    }
    if (rc != SQLITE_DONE)
        return db_error(reg, err, "load aliases");
    /* A live function without versions can't be resolved; it only arises from
     * a database edited by hand. Keep it out of the model. */
    reg_function *fn, *tmp;
    HASH_ITER(hh, reg->functions, fn, tmp)
    {
        if (fn->nversions == 0) {
            mxu_warn("registry: function '%s' of tenant %s has no versions; ignoring it", fn->name,
                     fn->tenant);
            function_free(reg, fn);
        }
    }
    return 0;
}

/* ---- open and close -------------------------------------------------------------- */

static int db_open(mxu_registry *reg, mxu_err *err)
{
    _cleanup_free_ char *path = mxu_path_join(reg->data_dir, "state.db");
    if (sqlite3_open_v2(path, &reg->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) !=
        SQLITE_OK) {
        mxu_err_set(err, EIO, "cannot open state database %s: %s", path,
                    reg->db ? sqlite3_errmsg(reg->db) : "out of memory");
        return -1;
    }
    sqlite3_busy_timeout(reg->db, 5000);
    /* WAL: readers never block the writer; synchronous=FULL: a COMMIT that
     * returned has reached the disk, which is what we promise clients. */
    sqlite3_stmt *st = NULL;
    if (db_prepare(reg, "PRAGMA journal_mode=WAL", &st, err) < 0)
        return -1;
    bool wal = sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0) &&
               strcmp((const char *)sqlite3_column_text(st, 0), "wal") == 0;
    sqlite3_finalize(st);
    if (!wal)
        return mxu_err_set(err, EIO, "state database %s: cannot switch to WAL mode", path);
    /* Foreign keys go on after the migration: it moves tables whose keys
     * would otherwise be checked half-way (the pragma is a no-op inside a
     * transaction, so it can't be switched around the migration's). */
    if (db_exec(reg, "PRAGMA synchronous=FULL; PRAGMA foreign_keys=OFF;", err) < 0 ||
        db_migrate(reg, err) < 0)
        return -1;
    return db_exec(reg, "PRAGMA foreign_keys=ON;", err);
}

int mxu_registry_open(uv_loop_t *loop, const mxu_registry_config *cfg, mxu_registry **out,
                      mxu_err *err)
{
    char abs[PATH_MAX];
    if (cfg == NULL || cfg->data_dir == NULL)
        return mxu_err_set(err, EINVAL, "registry: no data directory given");
    /* libsodium must be initialised before its first use (bundle digests);
     * repeated calls are cheap and thread-safe. */
    if (sodium_init() < 0)
        return mxu_err_set(err, EIO, "registry: cannot initialise libsodium");
    if (realpath(cfg->data_dir, abs) == NULL)
        return mxu_err_sys(err, errno, "registry: data directory %s", cfg->data_dir);
    mxu_registry *reg = mxu_calloc(1, sizeof(*reg));
    reg->loop = loop;
    reg->data_dir = mxu_strdup(abs);
    reg->bundles_dir = mxu_path_join(abs, "bundles");
    reg->sdk_include_dir =
        mxu_strdup(cfg->sdk_include_dir ? cfg->sdk_include_dir : MXU_SDK_INCLUDE_DIR);
    reg->sdk_lib_dir = mxu_strdup(cfg->sdk_lib_dir ? cfg->sdk_lib_dir : MXU_SDK_LIB_DIR);
    reg->cc = mxu_strdup(cfg->cc ? cfg->cc : MXU_C_COMPILER);
    reg->build_timeout_ms = cfg->build_timeout_ms ? cfg->build_timeout_ms : MXU_BUILD_TIMEOUT_MS;
    reg->default_executor = mxu_strdup(cfg->default_executor ? cfg->default_executor : "process");
    reg->vm_unavailable = cfg->vm_unavailable ? mxu_strdup(cfg->vm_unavailable) : NULL;

    if (mxu_mkdir_p(reg->bundles_dir, 0755, err) < 0 || db_open(reg, err) < 0 ||
        load_functions(reg, err) < 0 || load_versions(reg, err) < 0 || load_aliases(reg, err) < 0 ||
        reg_bundle_sweep(reg, err) < 0) {
        mxu_registry_close(reg);
        return -1;
    }
    *out = reg;
    return 0;
}

void mxu_registry_close(mxu_registry *reg)
{
    if (reg == NULL)
        return;
    reg_deploy_shutdown(reg);
    reg_function *fn, *tmp;
    HASH_ITER(hh, reg->functions, fn, tmp)
    function_free(reg, fn);
    if (reg->db && sqlite3_close(reg->db) != SQLITE_OK)
        mxu_error("registry: closing the state database: %s", sqlite3_errmsg(reg->db));
    free(reg->data_dir);
    free(reg->bundles_dir);
    free(reg->sdk_include_dir);
    free(reg->sdk_lib_dir);
    free(reg->default_executor);
    free(reg->vm_unavailable);
    free(reg->cc);
    free(reg);
}

/* Errors that quote what a client sent (names, refs from a URL). */
static int client_err(mxu_err *err, int code, const char *fmt, ...) MXU_PRINTF(3, 4);
static int client_err(mxu_err *err, int code, const char *fmt, ...)
{
    if (err == NULL)
        return -1;
    va_list ap;
    va_start(ap, fmt);
    char msg[sizeof(err->msg)];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    mxu_err_set(err, code, "%s", msg);
    reg_text_clean(err->msg);
    return -1;
}

/* " in tenant acme" for messages about another tenant's functions; "" for
 * tenant default, whose messages read as they did before tenants. */
#define IN_TENANT_MAX 48
static const char *in_tenant(const char *tenant, char *buf)
{
    if (tenant == NULL || strcmp(tenant, MXU_TENANT_DEFAULT) == 0)
        return "";
    snprintf(buf, IN_TENANT_MAX, " in tenant %.32s", tenant);
    return buf;
}

static reg_function *function_or_err(mxu_registry *reg, const char *tenant, const char *name,
                                     mxu_err *err)
{
    reg_function *fn = reg_function_find(reg, tenant, name);
    char tb[IN_TENANT_MAX];
    if (fn == NULL)
        client_err(err, ENOENT, "no function '%.64s'%s", name ? name : "", in_tenant(tenant, tb));
    return fn;
}

/* ---- resolve ------------------------------------------------------------------------ */

mxu_fn_version *mxu_registry_resolve(mxu_registry *reg, const char *tenant, const char *name,
                                     const char *ref, mxu_err *err)
{
    reg_function *fn = function_or_err(reg, tenant, name, err);
    if (fn == NULL)
        return NULL;
    if (ref == NULL || ref[0] == '\0' || strcmp(ref, "latest") == 0)
        return reg_function_latest(fn);
    if (ref[0] >= '0' && ref[0] <= '9') {
        uint64_t n;
        ssize_t idx = -1;
        if (mxu_parse_u64(ref, &n) == 0 && n <= UINT32_MAX)
            idx = function_version_index(fn, (uint32_t)n);
        if (idx < 0) {
            client_err(err, ENOENT, "function '%s' has no version %.40s", name, ref);
            return NULL;
        }
        return fn->versions[idx];
    }
    reg_alias *a = alias_find(fn, ref);
    if (a == NULL) {
        client_err(err, ENOENT, "function '%s' has no alias '%.64s'", name, ref);
        return NULL;
    }
    return a->version;
}

/* ---- writes --------------------------------------------------------------------------- */

/* Remove a deleted version's bundle folder if nothing else needs it: no other
 * version has the same digest, and nobody but the registry holds the version
 * (a running instance may still read its files; the next open sweeps it). */
static void drop_bundle_if_unused(mxu_registry *reg, mxu_fn_version *v)
{
    if (v->refs == 1 && !reg_digest_in_use(reg, v->digest))
        reg_bundle_remove(reg->bundles_dir, v->digest);
}

mxu_fn_version *reg_commit_version(mxu_registry *reg, const char *tenant, mxu_manifest *manifest,
                                   const char *digest, mxu_err *err)
{
    /* a copy: `manifest` is freed on failure, and the message names it */
    _cleanup_free_ char *name = mxu_strdup(manifest->name);
    uint64_t now = mxu_wall_ms();
    _cleanup_free_ char *json = NULL;
    json_t *j = mxu_manifest_to_json(manifest);
    json = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    if (json == NULL) {
        mxu_manifest_free(manifest);
        mxu_err_set(err, EIO, "cannot encode the manifest of '%s' as JSON", name);
        return NULL;
    }

    if (tx_begin(reg, err) < 0)
        goto fail_no_tx;
    sqlite3_int64 number = 1;
    {
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        if (db_prepare(reg, "SELECT next_version FROM functions WHERE tenant=? AND name=?", &st,
                       err) < 0)
            goto fail;
        sqlite3_bind_text(st, 1, tenant, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, name, -1, SQLITE_STATIC);
        int rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
            number = sqlite3_column_int64(st, 0);
        } else if (rc != SQLITE_DONE) {
            db_error(reg, err, "read function");
            goto fail;
        }
    }
    if (number < 1 || number > UINT32_MAX) {
        mxu_err_set(err, EOVERFLOW, "function '%s' has used up its version numbers", name);
        goto fail;
    }
    {
        /* Insert the function, or revive its tombstone (created anew), and
         * advance the counter in the same statement. */
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        if (db_prepare(reg,
                       "INSERT INTO functions(tenant, name, created_ms, next_version, "
                       "deleted_ms) VALUES(?4, ?1, ?2, ?3 + 1, NULL) ON CONFLICT(tenant, name) "
                       "DO UPDATE SET next_version = ?3 + 1, deleted_ms = NULL, created_ms = "
                       "CASE WHEN deleted_ms IS NULL THEN created_ms ELSE ?2 END",
                       &st, err) < 0)
            goto fail;
        sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 4, tenant, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, (sqlite3_int64)now);
        sqlite3_bind_int64(st, 3, number);
        if (db_step_done(reg, st, err) < 0)
            goto fail;
    }
    {
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        if (db_prepare(reg,
                       "INSERT INTO versions(function, number, manifest, digest, created_ms, "
                       "tenant) VALUES(?, ?, ?, ?, ?, ?)",
                       &st, err) < 0)
            goto fail;
        sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, number);
        sqlite3_bind_text(st, 3, json, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 4, digest, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 5, (sqlite3_int64)now);
        sqlite3_bind_text(st, 6, tenant, -1, SQLITE_STATIC);
        if (db_step_done(reg, st, err) < 0)
            goto fail;
    }
    if (tx_commit(reg, err) < 0) /* rolled back already */
        goto fail_no_tx;

    /* Committed: now, and only now, the model changes. */
    reg_function *fn = reg_function_find(reg, tenant, name);
    if (fn == NULL)
        fn = function_add(reg, tenant, name, now);
    mxu_fn_version *v = version_new(reg, tenant, name, (uint32_t)number, manifest, digest, now);
    function_append(fn, v);
    reg_notify(reg, MXU_REG_VERSION_ADDED, v);
    return v;

fail:
    tx_rollback(reg);
fail_no_tx:
    mxu_manifest_free(manifest);
    mxu_err_prefix(err, "cannot store the new version of '%s'", name);
    return NULL;
}

static int alias_name_check(const char *alias, mxu_err *err)
{
    if (alias == NULL || strcmp(alias, "latest") == 0)
        return mxu_err_set(err, EINVAL,
                           "alias 'latest' always points at the newest version and can't be "
                           "set or deleted by hand");
    if (!mxu_name_valid(alias))
        return client_err(err, EINVAL,
                          "'%.64s' is not a valid alias (lowercase letters, digits, '-' and "
                          "'_', starting with a letter)",
                          alias);
    return 0;
}

int mxu_registry_set_alias(mxu_registry *reg, const char *tenant, const char *name,
                           const char *alias, uint32_t version, mxu_err *err)
{
    if (alias_name_check(alias, err) < 0)
        return -1;
    reg_function *fn = function_or_err(reg, tenant, name, err);
    if (fn == NULL)
        return -1;
    ssize_t idx = function_version_index(fn, version);
    if (idx < 0)
        return mxu_err_set(err, ENOENT, "function '%s' has no version %u", name, version);
    mxu_fn_version *v = fn->versions[idx];
    reg_alias *a = alias_find(fn, alias);
    if (a && a->version == v)
        return 0; /* already there: nothing to write, nothing to tell */

    if (tx_begin(reg, err) < 0)
        return -1;
    {
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        if (db_prepare(reg,
                       "INSERT INTO aliases(function, alias, version, tenant) VALUES(?, ?, ?, ?) "
                       "ON CONFLICT(tenant, function, alias) DO UPDATE SET version = "
                       "excluded.version",
                       &st, err) < 0)
            goto fail;
        sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, alias, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 3, version);
        sqlite3_bind_text(st, 4, tenant, -1, SQLITE_STATIC);
        if (db_step_done(reg, st, err) < 0)
            goto fail;
    }
    if (tx_commit(reg, err) < 0)
        return -1;
    if (a == NULL) {
        a = mxu_calloc(1, sizeof(*a));
        a->name = mxu_strdup(alias);
        HASH_ADD_KEYPTR(hh, fn->aliases, a->name, strlen(a->name), a);
    }
    a->version = v;
    reg_notify(reg, MXU_REG_ALIASES_CHANGED, v);
    return 0;
fail:
    tx_rollback(reg);
    return -1;
}

int mxu_registry_delete_alias(mxu_registry *reg, const char *tenant, const char *name,
                              const char *alias, mxu_err *err)
{
    if (alias_name_check(alias, err) < 0)
        return -1;
    reg_function *fn = function_or_err(reg, tenant, name, err);
    if (fn == NULL)
        return -1;
    reg_alias *a = alias_find(fn, alias);
    if (a == NULL)
        return mxu_err_set(err, ENOENT, "function '%s' has no alias '%s'", name, alias);
    if (tx_begin(reg, err) < 0)
        return -1;
    {
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        if (db_prepare(reg, "DELETE FROM aliases WHERE function=? AND alias=? AND tenant=?", &st,
                       err) < 0)
            goto fail;
        sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, alias, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 3, tenant, -1, SQLITE_STATIC);
        if (db_step_done(reg, st, err) < 0)
            goto fail;
    }
    if (tx_commit(reg, err) < 0)
        return -1;
    mxu_fn_version *v = a->version;
    HASH_DEL(fn->aliases, a);
    free(a->name);
    free(a);
    reg_notify(reg, MXU_REG_ALIASES_CHANGED, v);
    return 0;
fail:
    tx_rollback(reg);
    return -1;
}

/* In the open transaction: remove every alias and version of `name` (or only
 * version `number` if non-zero) and, if the function is left empty, turn its
 * row into a tombstone. */
static int db_delete(mxu_registry *reg, const char *tenant, const char *name, uint32_t number,
                     bool tombstone, mxu_err *err)
{
    static const char *const all[] = {
        "DELETE FROM aliases WHERE function=?1 AND tenant=?4",
        "DELETE FROM versions WHERE function=?1 AND tenant=?4",
    };
    static const char *const one[] = {
        "DELETE FROM versions WHERE function=?1 AND number=?2 AND tenant=?4",
    };
    const char *const *sqls = number ? one : all;
    size_t n = number ? MXU_ARRAY_LEN(one) : MXU_ARRAY_LEN(all);
    for (size_t i = 0; i < n + (tombstone ? 1 : 0); i++) {
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        const char *sql =
            i < n ? sqls[i] : "UPDATE functions SET deleted_ms=?3 WHERE name=?1 AND tenant=?4";
        if (db_prepare(reg, sql, &st, err) < 0)
            return -1;
        sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 4, tenant, -1, SQLITE_STATIC);
        if (i < n && number)
            sqlite3_bind_int64(st, 2, number);
        if (i == n)
            sqlite3_bind_int64(st, 3, (sqlite3_int64)mxu_wall_ms());
        if (db_step_done(reg, st, err) < 0)
            return -1;
    }
    return 0;
}

/* After the deletion of a whole function committed: tell the listener about
 * each version, drop bundles nobody uses, free the function. */
static void function_forget(mxu_registry *reg, reg_function *fn)
{
    /* Take the versions out of the model first, so that a bundle shared by
     * two versions of this function is seen as unused after both are gone. */
    size_t n = fn->nversions;
    mxu_fn_version **vs = fn->versions;
    fn->versions = NULL;
    fn->nversions = fn->cap = 0;
    function_free(reg, fn);
    for (size_t i = 0; i < n; i++)
        reg_notify(reg, MXU_REG_VERSION_REMOVED, vs[i]);
    for (size_t i = 0; i < n; i++) {
        drop_bundle_if_unused(reg, vs[i]);
        mxu_fn_version_unref(vs[i]);
    }
    free(vs);
}

int mxu_registry_delete_function(mxu_registry *reg, const char *tenant, const char *name,
                                 mxu_err *err)
{
    reg_function *fn = function_or_err(reg, tenant, name, err);
    if (fn == NULL)
        return -1;
    if (tx_begin(reg, err) < 0)
        return -1;
    if (db_delete(reg, tenant, name, 0, true, err) < 0) {
        tx_rollback(reg);
        return -1;
    }
    if (tx_commit(reg, err) < 0)
        return -1;
    function_forget(reg, fn);
    return 0;
}

int mxu_registry_delete_version(mxu_registry *reg, const char *tenant, const char *name,
                                uint32_t version, mxu_err *err)
{
    reg_function *fn = function_or_err(reg, tenant, name, err);
    if (fn == NULL)
        return -1;
    ssize_t idx = function_version_index(fn, version);
    if (idx < 0)
        return mxu_err_set(err, ENOENT, "function '%s' has no version %u", name, version);
    mxu_fn_version *v = fn->versions[idx];
    reg_alias *a = alias_pointing_at(fn, v);
    if (a)
        return mxu_err_set(err, EBUSY,
                           "version %u of '%s' is what alias '%s' points at; move or delete "
                           "the alias first",
                           version, name, a->name);
    if (fn->nversions == 1)
        return mxu_registry_delete_function(reg, tenant, name, err);

    if (tx_begin(reg, err) < 0)
        return -1;
    if (db_delete(reg, tenant, name, version, false, err) < 0) {
        tx_rollback(reg);
        return -1;
    }
    if (tx_commit(reg, err) < 0)
        return -1;
    bool was_latest = (size_t)idx == fn->nversions - 1;
    memmove(&fn->versions[idx], &fn->versions[idx + 1],
            (fn->nversions - (size_t)idx - 1) * sizeof(*fn->versions));
    fn->nversions--;
    reg_notify(reg, MXU_REG_VERSION_REMOVED, v);
    if (was_latest)
        reg_notify(reg, MXU_REG_ALIASES_CHANGED, reg_function_latest(fn));
    drop_bundle_if_unused(reg, v);
    mxu_fn_version_unref(v);
    return 0;
}

/* ---- reading for the API ------------------------------------------------------------------ */

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* {"latest": N, "<alias>": N, ...}, user aliases sorted by name. */
static json_t *aliases_json(reg_function *fn)
{
    json_t *o = json_object();
    json_object_set_new(o, "latest", json_integer(reg_function_latest(fn)->version));
    size_t n = HASH_COUNT(fn->aliases), i = 0;
    _cleanup_free_ const char **names = mxu_calloc(n ? n : 1, sizeof(char *));
    reg_alias *a, *tmp;
    HASH_ITER(hh, fn->aliases, a, tmp)
    names[i++] = a->name;
    qsort(names, n, sizeof(*names), cmp_str);
    for (i = 0; i < n; i++)
        json_object_set_new(o, names[i], json_integer(alias_find(fn, names[i])->version->version));
    return o;
}

static json_t *function_json(reg_function *fn, bool full)
{
    char created[40];
    format_time(fn->created_ms, created, sizeof(created));
    json_t *versions;
    if (full) {
        versions = json_array();
        for (size_t i = 0; i < fn->nversions; i++)
            json_array_append_new(versions, mxu_fn_version_to_json(fn->versions[i]));
    } else {
        versions = json_integer((json_int_t)fn->nversions);
    }
    const mxu_fn_version *latest = reg_function_latest(fn);
    return json_pack("{s:s, s:s, s:s, s:s, s:I, s:o, s:o}", "name", fn->name, "tenant", fn->tenant,
                     "kind", latest->manifest->service ? "service" : "function", "created", created,
                     "latest", (json_int_t)latest->version, "versions", versions, "aliases",
                     aliases_json(fn));
}

json_t *mxu_registry_function_json(mxu_registry *reg, const char *tenant, const char *name,
                                   mxu_err *err)
{
    reg_function *fn = function_or_err(reg, tenant, name, err);
    return fn ? function_json(fn, true) : NULL;
}

static int cmp_function(const void *a, const void *b)
{
    const reg_function *fa = *(const reg_function *const *)a;
    const reg_function *fb = *(const reg_function *const *)b;
    int c = strcmp(fa->tenant, fb->tenant);
    return c ? c : strcmp(fa->name, fb->name);
}

/* `tenant`'s functions (all if NULL) sorted by tenant, then name; caller
 * frees the array. */
static reg_function **sorted_functions(mxu_registry *reg, const char *tenant, size_t *n)
{
    reg_function **fns = mxu_calloc(HASH_COUNT(reg->functions) + 1, sizeof(*fns));
    size_t i = 0;
    reg_function *fn, *tmp;
    HASH_ITER(hh, reg->functions, fn, tmp)
    {
        if (tenant == NULL || strcmp(fn->tenant, tenant) == 0)
            fns[i++] = fn;
    }
    *n = i;
    qsort(fns, *n, sizeof(*fns), cmp_function);
    return fns;
}

size_t mxu_registry_count(mxu_registry *reg, const char *tenant)
{
    size_t n = 0;
    reg_function *fn, *tmp;
    HASH_ITER(hh, reg->functions, fn, tmp)
    {
        if (tenant == NULL || strcmp(fn->tenant, tenant) == 0)
            n++;
    }
    return n;
}

json_t *mxu_registry_list_json(mxu_registry *reg, const char *tenant)
{
    size_t n;
    _cleanup_free_ reg_function **fns = sorted_functions(reg, tenant, &n);
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(a, function_json(fns[i], false));
    return a;
}

void mxu_registry_foreach_aliased(mxu_registry *reg, void (*cb)(void *ud, mxu_fn_version *v),
                                  void *ud)
{
    size_t n;
    _cleanup_free_ reg_function **fns = sorted_functions(reg, NULL, &n);
    for (size_t i = 0; i < n; i++) {
        reg_function *fn = fns[i];
        mxu_fn_version *latest = reg_function_latest(fn);
        for (size_t k = 0; k < fn->nversions; k++) {
            mxu_fn_version *v = fn->versions[k];
            if (v == latest || alias_pointing_at(fn, v))
                cb(ud, v);
        }
    }
}
