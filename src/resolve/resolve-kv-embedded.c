/*
 * kv, scheme "embedded": keys and values in SQLite, in the node's data
 * directory. This is the default kv backend, and the one a function's kv get
 * goes to on the hot path, so an operation is one cached prepared statement,
 * no allocation, and an answer before the call returns.
 *
 * Divisions: the shared database (also used by resolve-queue-embedded.c) ·
 * the backend · operations · the driver table.
 *
 * The database. One file, <data_dir>/resources/embedded.db, for every
 * embedded kv and queue resource of the node (a column says which resource a
 * row belongs to), one connection for the whole process, opened with the
 * first backend and closed with the last. WAL with synchronous=NORMAL: a
 * write is in the WAL file (in the kernel) when the call returns, so it
 * survives kill -9 of the node, which is the durability the tests check and
 * the one a crash of mxu needs; a power cut may lose the last few
 * transactions (synchronous=FULL would fsync every write, ~100x slower, and
 * state.db keeps that for the registry, whose writes are rare). The
 * connection holds the database's lock exclusively (see mxu_edb_open).
 *
 * Schema:
 *   kv(resource, key, value BLOB, revision) WITHOUT ROWID, primary key
 *     (resource, key): rows are stored in key order, so a get is one b-tree
 *     descent and a prefix list is a range scan. TEXT compares with memcmp
 *     (BINARY), which is the byte order lists promise.
 *   queue(...), queue_seq(...): see resolve-queue-embedded.c.
 *
 * Revisions are per key: 1 when a key is created, +1 on every write; a
 * deleted key starts again at 1 (like etcd's per-key version).
 */
#include "resolve-internal.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

/* ---- the shared database ---------------------------------------------------------------- */

struct mxu_edb {
    mxu_edb *next;
    char *path;
    int refs;
    sqlite3 *db;
    sqlite3_stmt *stmt[MXU_EDB_NSTMT];
    bool busy[MXU_EDB_NSTMT];
};

/* Every database open in this process, by path (normally one: the node's). */
static mxu_edb *edb_list;

static const char edb_schema[] =
    "CREATE TABLE IF NOT EXISTS kv("
    "  resource TEXT NOT NULL, key TEXT NOT NULL, value BLOB NOT NULL,"
    "  revision INTEGER NOT NULL, PRIMARY KEY(resource, key)) WITHOUT ROWID;"
    /* Queue messages can be large, so a rowid table (WITHOUT ROWID suits
     * small rows); the primary key index gives FIFO order per resource. */
    "CREATE TABLE IF NOT EXISTS queue("
    "  resource TEXT NOT NULL, id INTEGER NOT NULL, payload BLOB NOT NULL,"
    "  visible_at INTEGER NOT NULL, attempts INTEGER NOT NULL, receipt TEXT,"
    "  PRIMARY KEY(resource, id));"
    "CREATE TABLE IF NOT EXISTS queue_seq("
    "  resource TEXT PRIMARY KEY, last_id INTEGER NOT NULL) WITHOUT ROWID;";

static int edb_exec(sqlite3 *db, const char *sql, mxu_err *err)
{
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        mxu_err_set(err, EIO, "embedded resources database: %s", msg ? msg : sqlite3_errmsg(db));
        sqlite3_free(msg);
        return -1;
    }
    return 0;
}

mxu_edb *mxu_edb_open(const char *data_dir, mxu_err *err)
{
    if (data_dir == NULL || data_dir[0] == '\0') {
        mxu_err_set(err, EINVAL, "embedded resources need the node's data directory");
        return NULL;
    }
    _cleanup_free_ char *dir = mxu_path_join(data_dir, "resources");
    if (mxu_mkdir_p(dir, 0700, err) < 0)
        return NULL;
    /* By its real path: two spellings of one directory must share the one
     * connection (a second one could not get the exclusive lock). */
    _cleanup_free_ char *real = realpath(dir, NULL);
    if (real == NULL) {
        mxu_err_sys(err, errno, "cannot resolve %s", dir);
        return NULL;
    }
    _cleanup_free_ char *path = mxu_path_join(real, "embedded.db");
    for (mxu_edb *e = edb_list; e != NULL; e = e->next) {
        if (strcmp(e->path, path) == 0) {
            e->refs++;
            return e;
        }
    }
    sqlite3 *db = NULL;
    /* NOMUTEX: the connection is used from the loop thread only, and the
     * mutexes would cost on every kv get. */
    int rc = sqlite3_open_v2(
        path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        mxu_err_set(err, EIO, "cannot open %s: %s", path,
                    db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
        sqlite3_close(db);
        return NULL;
    }
    sqlite3_busy_timeout(db, 5000);
    /* locking_mode=EXCLUSIVE: the node is the only process that uses this
     * file, so it takes the lock once and keeps it, and SQLite keeps the WAL
     * index in its own memory instead of a shared mapping it must lock for
     * every transaction: a kv get is ~0.9 us instead of ~2.6 us. The price:
     * nothing else (the sqlite3 shell, a second node on the same data
     * directory) can open the database while the node runs. */
    if (edb_exec(db,
                 "PRAGMA locking_mode=EXCLUSIVE; PRAGMA journal_mode=WAL; "
                 "PRAGMA synchronous=NORMAL;",
                 err) < 0 ||
        edb_exec(db, edb_schema, err) < 0) {
        sqlite3_close(db);
        return NULL;
    }
    mxu_edb *e = mxu_calloc(1, sizeof(*e));
    e->path = steal_pointer(&path);
    e->db = db;
    e->refs = 1;
    e->next = edb_list;
    edb_list = e;
    return e;
}

void mxu_edb_close(mxu_edb *e)
{
    if (e == NULL || --e->refs > 0)
        return;
    for (mxu_edb **pp = &edb_list; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == e) {
            *pp = e->next;
            break;
        }
    }
    for (size_t i = 0; i < MXU_EDB_NSTMT; i++)
        sqlite3_finalize(e->stmt[i]);
    sqlite3_close(e->db);
    free(e->path);
    free(e);
}

sqlite3 *mxu_edb_handle(mxu_edb *e)
{
    return e->db;
}

sqlite3_stmt *mxu_edb_stmt(mxu_edb *e, enum mxu_edb_stmt which, const char *sql, const char **why)
{
    /* A statement is lent out until mxu_edb_stmt_done. A callback that runs
     * another operation of the same kind while the first one's row is still
     * in use (a kv get inside a kv get's callback) gets a statement of its
     * own, so the first row stays valid. */
    if (!e->busy[which] && e->stmt[which] != NULL) {
        e->busy[which] = true;
        return e->stmt[which];
    }
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v3(e->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &st, NULL) != SQLITE_OK) {
        *why = sqlite3_errmsg(e->db);
        return NULL;
    }
    if (!e->busy[which]) {
        e->stmt[which] = st;
        e->busy[which] = true;
    }
    return st;
}

void mxu_edb_stmt_done(mxu_edb *e, enum mxu_edb_stmt which, sqlite3_stmt *st)
{
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    if (st == e->stmt[which])
        e->busy[which] = false;
    else
        sqlite3_finalize(st);
}

int mxu_edb_tx(mxu_edb *e, enum mxu_edb_stmt which)
{
    static const char *const sql[] = {
        [MXU_EDB_BEGIN] = "BEGIN IMMEDIATE",
        [MXU_EDB_COMMIT] = "COMMIT",
        [MXU_EDB_ROLLBACK] = "ROLLBACK",
    };
    const char *why = NULL;
    sqlite3_stmt *st = mxu_edb_stmt(e, which, sql[which], &why);
    if (st == NULL)
        return -1;
    int rc = sqlite3_step(st);
    mxu_edb_stmt_done(e, which, st);
    return rc == SQLITE_DONE ? 0 : -1;
}

/* ---- the backend -------------------------------------------------------------------------- */

typedef struct kv_embedded {
    mxu_backend base;
    mxu_edb *db;
    char *resource;
    char display[96]; /* "kv:orders" for messages */
} kv_embedded;

static int kve_open(const mxu_backend_config *cfg, mxu_backend **out, mxu_err *err)
{
    if (cfg->resource == NULL || cfg->resource[0] == '\0')
        return mxu_err_set(err, EINVAL, "a kv backend needs a resource name");
    if (cfg->location != NULL && strcmp(cfg->location, "embedded") != 0)
        return mxu_err_set(err, EINVAL, "'%s' is not an embedded kv location (write embedded)",
                           cfg->location);
    mxu_edb *db = mxu_edb_open(cfg->data_dir, err);
    if (db == NULL)
        return -1;
    kv_embedded *k = mxu_calloc(1, sizeof(*k));
    k->base.driver = &mxu_driver_kv_embedded;
    k->db = db;
    k->resource = mxu_strdup(cfg->resource);
    mxu_res_display(cfg->resource, k->display, sizeof(k->display));
    *out = &k->base;
    return 0;
}

static void kve_close(mxu_backend *b)
{
    kv_embedded *k = (kv_embedded *)b;
    mxu_edb_close(k->db);
    free(k->resource);
    free(k);
}

/* ---- operations ------------------------------------------------------------------------------ */

/* A statement with ?1 = resource, ?2 = key bound; NULL after answering. */
static sqlite3_stmt *kve_stmt(kv_embedded *k, enum mxu_edb_stmt which, const char *sql,
                              const char *key, mxu_res_cb cb, void *ud)
{
    const char *why = NULL;
    sqlite3_stmt *st = mxu_edb_stmt(k->db, which, sql, &why);
    if (st == NULL) {
        mxu_res_fail(cb, ud, MXU_RES_UNAVAILABLE, "%s: database error: %s", k->display, why);
        return NULL;
    }
    sqlite3_bind_text(st, 1, k->resource, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, key, -1, SQLITE_STATIC);
    return st;
}

/* Answer a failed step; the database is the node's disk, so a failure is
 * the backend being unavailable (full, read-only, I/O error). */
static void kve_db_fail(kv_embedded *k, mxu_res_cb cb, void *ud)
{
    mxu_res_fail(cb, ud, MXU_RES_UNAVAILABLE, "%s: database error: %s", k->display,
                 sqlite3_errmsg(mxu_edb_handle(k->db)));
}

static int kve_check_value(kv_embedded *k, const void *val, size_t len, mxu_res_cb cb, void *ud)
{
    if (val == NULL && len > 0) {
        mxu_res_fail(cb, ud, MXU_RES_INVALID, "%s: value of %zu bytes without data", k->display,
                     len);
        return -1;
    }
    return 0;
}

/* Bind a value; "" for an empty one, since a NULL pointer would bind SQL NULL. */
static void bind_value(sqlite3_stmt *st, int i, const void *val, size_t len)
{
    sqlite3_bind_blob64(st, i, len ? val : "", (sqlite3_uint64)len, SQLITE_STATIC);
}

static void answer_not_found(kv_embedded *k, const char *key, mxu_res_cb cb, void *ud)
{
    char q[128];
    mxu_res_quote(key, q, sizeof(q));
    mxu_res_fail(cb, ud, MXU_RES_NOT_FOUND, "no key '%s' in %s", q, k->display);
}

static void kve_get(mxu_backend *b, const char *key, mxu_res_cb cb, void *ud)
{
    kv_embedded *k = (kv_embedded *)b;
    if (mxu_res_check_key(key, 0, 0, "key", k->display, cb, ud) < 0)
        return;
    sqlite3_stmt *st =
        kve_stmt(k, MXU_EDB_KV_GET, "SELECT value, revision FROM kv WHERE resource=?1 AND key=?2",
                 key, cb, ud);
    if (st == NULL)
        return;
    /* The row must stay valid during cb, so the statement goes back after
     * it; cb may close this backend (and with it the last reference to the
     * database), so hold one of our own until then. */
    mxu_edb *db = k->db;
    db->refs++;
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        const void *v = sqlite3_column_blob(st, 0);
        mxu_res_result r = {.status = MXU_RES_OK,
                            .data = v ? v : "",
                            .len = (size_t)sqlite3_column_bytes(st, 0),
                            .n1 = (uint64_t)sqlite3_column_int64(st, 1)};
        cb(ud, &r);
    } else if (rc == SQLITE_DONE) {
        answer_not_found(k, key, cb, ud);
    } else {
        kve_db_fail(k, cb, ud);
    }
    mxu_edb_stmt_done(db, MXU_EDB_KV_GET, st);
    mxu_edb_close(db);
}

/* Step a write whose RETURNING gives the new revision; answer it. */
static void kve_answer_revision(kv_embedded *k, enum mxu_edb_stmt which, sqlite3_stmt *st,
                                const char *key, uint64_t expected, mxu_res_cb cb, void *ud)
{
    int rc = sqlite3_step(st);
    uint64_t rev = rc == SQLITE_ROW ? (uint64_t)sqlite3_column_int64(st, 0) : 0;
    /* Finish the statement before answering: that commits the write (the
     * connection is in autocommit mode), and only a committed write may be
     * reported as done. */
    while (rc == SQLITE_ROW)
        rc = sqlite3_step(st);
    mxu_edb_stmt_done(k->db, which, st);
    if (rc != SQLITE_DONE) {
        kve_db_fail(k, cb, ud);
        return;
    }
    if (rev > 0) {
        mxu_res_result r = {.status = MXU_RES_OK, .n1 = rev};
        cb(ud, &r);
        return;
    }
    /* Only a compare-and-set writes nothing without failing: tell why. */
    char q[128];
    mxu_res_quote(key, q, sizeof(q));
    uint64_t cur = 0;
    sqlite3_stmt *rs =
        kve_stmt(k, MXU_EDB_KV_REVISION, "SELECT revision FROM kv WHERE resource=?1 AND key=?2",
                 key, cb, ud);
    if (rs == NULL)
        return;
    if (sqlite3_step(rs) == SQLITE_ROW)
        cur = (uint64_t)sqlite3_column_int64(rs, 0);
    mxu_edb_stmt_done(k->db, MXU_EDB_KV_REVISION, rs);
    if (expected == 0)
        mxu_res_fail(cb, ud, MXU_RES_CONFLICT, "key '%s' already exists in %s (revision %llu)", q,
                     k->display, (unsigned long long)cur);
    else if (cur == 0)
        mxu_res_fail(cb, ud, MXU_RES_CONFLICT, "no key '%s' in %s (expected revision %llu)", q,
                     k->display, (unsigned long long)expected);
    else
        mxu_res_fail(cb, ud, MXU_RES_CONFLICT, "key '%s' in %s is at revision %llu, not %llu", q,
                     k->display, (unsigned long long)cur, (unsigned long long)expected);
}

static void kve_put(mxu_backend *b, const char *key, const void *val, size_t len, mxu_res_cb cb,
                    void *ud)
{
    kv_embedded *k = (kv_embedded *)b;
    if (mxu_res_check_key(key, 0, 0, "key", k->display, cb, ud) < 0 ||
        kve_check_value(k, val, len, cb, ud) < 0)
        return;
    sqlite3_stmt *st = kve_stmt(k, MXU_EDB_KV_PUT,
                                "INSERT INTO kv(resource, key, value, revision) "
                                "VALUES(?1, ?2, ?3, 1) ON CONFLICT(resource, key) DO UPDATE "
                                "SET value=excluded.value, revision=kv.revision+1 "
                                "RETURNING revision",
                                key, cb, ud);
    if (st == NULL)
        return;
    bind_value(st, 3, val, len);
    kve_answer_revision(k, MXU_EDB_KV_PUT, st, key, 1, cb, ud);
}

static void kve_cas(mxu_backend *b, const char *key, uint64_t expected, const void *val, size_t len,
                    mxu_res_cb cb, void *ud)
{
    kv_embedded *k = (kv_embedded *)b;
    if (mxu_res_check_key(key, 0, 0, "key", k->display, cb, ud) < 0 ||
        kve_check_value(k, val, len, cb, ud) < 0)
        return;
    if (expected > INT64_MAX) {
        mxu_res_fail(cb, ud, MXU_RES_INVALID, "%s: revision %llu is out of range", k->display,
                     (unsigned long long)expected);
        return;
    }
    enum mxu_edb_stmt which = expected == 0 ? MXU_EDB_KV_CAS_CREATE : MXU_EDB_KV_CAS_UPDATE;
    sqlite3_stmt *st =
        expected == 0
            ? kve_stmt(k, which,
                       "INSERT INTO kv(resource, key, value, revision) VALUES(?1, ?2, ?3, 1) "
                       "ON CONFLICT(resource, key) DO NOTHING RETURNING revision",
                       key, cb, ud)
            : kve_stmt(k, which,
                       "UPDATE kv SET value=?3, revision=revision+1 "
                       "WHERE resource=?1 AND key=?2 AND revision=?4 RETURNING revision",
                       key, cb, ud);
    if (st == NULL)
        return;
    bind_value(st, 3, val, len);
    if (expected > 0)
        sqlite3_bind_int64(st, 4, (sqlite3_int64)expected);
    kve_answer_revision(k, which, st, key, expected, cb, ud);
}

static void kve_delete(mxu_backend *b, const char *key, mxu_res_cb cb, void *ud)
{
    kv_embedded *k = (kv_embedded *)b;
    if (mxu_res_check_key(key, 0, 0, "key", k->display, cb, ud) < 0)
        return;
    sqlite3_stmt *st =
        kve_stmt(k, MXU_EDB_KV_DELETE, "DELETE FROM kv WHERE resource=?1 AND key=?2", key, cb, ud);
    if (st == NULL)
        return;
    int rc = sqlite3_step(st);
    int changed = sqlite3_changes(mxu_edb_handle(k->db));
    mxu_edb_stmt_done(k->db, MXU_EDB_KV_DELETE, st);
    if (rc != SQLITE_DONE) {
        kve_db_fail(k, cb, ud);
    } else if (changed == 0) {
        answer_not_found(k, key, cb, ud);
    } else {
        mxu_res_result r = {.status = MXU_RES_OK};
        cb(ud, &r);
    }
}

static void kve_import(mxu_backend *b, const char *key, const void *val, size_t len,
                       uint64_t revision, mxu_res_cb cb, void *ud)
{
    kv_embedded *k = (kv_embedded *)b;
    if (mxu_res_check_key(key, 0, 0, "key", k->display, cb, ud) < 0 ||
        kve_check_value(k, val, len, cb, ud) < 0)
        return;
    if (revision == 0 || revision > INT64_MAX) {
        mxu_res_fail(cb, ud, MXU_RES_INVALID, "%s: cannot import revision %llu", k->display,
                     (unsigned long long)revision);
        return;
    }
    sqlite3_stmt *st = kve_stmt(k, MXU_EDB_KV_IMPORT,
                                "INSERT INTO kv(resource, key, value, revision) "
                                "VALUES(?1, ?2, ?3, ?4) ON CONFLICT(resource, key) DO UPDATE "
                                "SET value=excluded.value, revision=excluded.revision "
                                "RETURNING revision",
                                key, cb, ud);
    if (st == NULL)
        return;
    bind_value(st, 3, val, len);
    sqlite3_bind_int64(st, 4, (sqlite3_int64)revision);
    kve_answer_revision(k, MXU_EDB_KV_IMPORT, st, key, 1, cb, ud);
}

static void kve_list(mxu_backend *b, const char *prefix, const char *cursor, size_t limit,
                     mxu_res_cb cb, void *ud)
{
    kv_embedded *k = (kv_embedded *)b;
    if (cursor == NULL)
        cursor = "";
    if (mxu_res_check_key(prefix, 0, 1, "prefix", k->display, cb, ud) < 0 ||
        mxu_res_check_key(cursor, 0, 1, "cursor", k->display, cb, ud) < 0)
        return;
    limit = mxu_res_list_limit(limit);

    /* The range is [lo, end): lo is the prefix, or just past the cursor when
     * that is further. Keys hold no NUL, so the first key after `cursor` is
     * cursor + "\x01": one inclusive lower bound serves both cases, and the
     * scan starts where the page starts instead of filtering from the prefix
     * on (which would make paging quadratic). */
    size_t plen = strlen(prefix), clen = strlen(cursor);
    _cleanup_free_ char *lo = NULL;
    if (clen > 0 && strcmp(cursor, prefix) >= 0) {
        lo = mxu_malloc(clen + 2);
        memcpy(lo, cursor, clen);
        lo[clen] = '\x01';
        lo[clen + 1] = '\0';
    } else {
        lo = mxu_strdup(prefix);
    }
    _cleanup_free_ char *end = mxu_malloc(plen + 1);
    mxu_res_prefix_end(prefix, end);

    enum mxu_edb_stmt which = end[0] ? MXU_EDB_KV_LIST : MXU_EDB_KV_LIST_FROM;
    sqlite3_stmt *st = end[0]
                           ? kve_stmt(k, which,
                                      "SELECT key FROM kv WHERE resource=?1 AND key>=?2 AND key<?3 "
                                      "ORDER BY key LIMIT ?4",
                                      lo, cb, ud)
                           : kve_stmt(k, which,
                                      "SELECT key FROM kv WHERE resource=?1 AND key>=?2 "
                                      "ORDER BY key LIMIT ?4",
                                      lo, cb, ud);
    if (st == NULL)
        return;
    if (end[0])
        sqlite3_bind_text(st, 3, end, -1, SQLITE_STATIC);
    /* One more than asked: whether it exists says if there is a next page. */
    sqlite3_bind_int64(st, 4, (sqlite3_int64)limit + 1);
    char **keys = mxu_calloc(limit + 1, sizeof(char *));
    size_t n = 0;
    bool more = false;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (n == limit) {
            more = true;
            continue;
        }
        keys[n++] = mxu_strdup((const char *)sqlite3_column_text(st, 0));
    }
    mxu_edb_stmt_done(k->db, which, st);
    if (rc != SQLITE_DONE) {
        kve_db_fail(k, cb, ud);
    } else {
        mxu_res_result r = {.status = MXU_RES_OK,
                            .keys = (const char *const *)keys,
                            .nkeys = n,
                            .n1 = n,
                            .cursor = more ? keys[n - 1] : ""};
        cb(ud, &r);
    }
    for (size_t i = 0; i < n; i++)
        free(keys[i]);
    free(keys);
}

/* ---- the driver ------------------------------------------------------------------------------ */

const mxu_driver mxu_driver_kv_embedded = {
    .kind = "kv",
    .scheme = "embedded",
    .open = kve_open,
    .close = kve_close,
    .kv_get = kve_get,
    .kv_put = kve_put,
    .kv_delete = kve_delete,
    .kv_cas = kve_cas,
    .kv_list = kve_list,
    .kv_import = kve_import,
};
