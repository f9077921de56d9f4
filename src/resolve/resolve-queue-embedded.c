/*
 * queue, scheme "embedded": a durable FIFO with leases in the same SQLite
 * database as the embedded kv (resolve-kv-embedded.c owns the connection and
 * says why its durability is what it is).
 *
 * Tables:
 *   queue(resource, id, payload, visible_at, attempts, receipt)
 *     id grows per resource (from queue_seq, so an id is never reused even
 *     after the queue drained); visible_at is wall-clock ms: 0 for a message
 *     never consumed, else the end of its current lease. Wall-clock because
 *     leases must survive a restart of the node; a clock step moves them.
 *   queue_seq(resource, last_id)
 *
 * consume takes the lowest id whose lease is over (so a message whose
 * consumer died comes back first: it is the oldest), hides it until
 * now + lease, counts the attempt and gives it a new receipt,
 * "<id>.<32 hex digits>" of randomness. ack deletes the message only while
 * that receipt's lease runs: after it ran out, someone else may hold the
 * message now, so a late ack is NOT_FOUND and the message is delivered again.
 */
#include "resolve-internal.h"

#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>

typedef struct queue_embedded {
    mxu_backend base;
    mxu_edb *db;
    char *resource;
    char display[96];
} queue_embedded;

static int qe_open(const mxu_backend_config *cfg, mxu_backend **out, mxu_err *err)
{
    if (cfg->resource == NULL || cfg->resource[0] == '\0')
        return mxu_err_set(err, EINVAL, "a queue backend needs a resource name");
    if (cfg->location != NULL && strcmp(cfg->location, "embedded") != 0)
        return mxu_err_set(err, EINVAL, "'%s' is not an embedded queue location (write embedded)",
                           cfg->location);
    if (sodium_init() < 0)
        return mxu_err_set(err, EIO, "libsodium failed to initialise (receipts need it)");
    mxu_edb *db = mxu_edb_open(cfg->data_dir, err);
    if (db == NULL)
        return -1;
    queue_embedded *q = mxu_calloc(1, sizeof(*q));
    q->base.driver = &mxu_driver_queue_embedded;
    q->db = db;
    q->resource = mxu_strdup(cfg->resource);
    mxu_res_display(cfg->resource, q->display, sizeof(q->display));
    *out = &q->base;
    return 0;
}

static void qe_close(mxu_backend *b)
{
    queue_embedded *q = (queue_embedded *)b;
    mxu_edb_close(q->db);
    free(q->resource);
    free(q);
}

/* A statement with ?1 = resource bound, or NULL after answering. */
static sqlite3_stmt *qe_stmt(queue_embedded *q, enum mxu_edb_stmt which, const char *sql,
                             mxu_res_cb cb, void *ud)
{
    const char *why = NULL;
    sqlite3_stmt *st = mxu_edb_stmt(q->db, which, sql, &why);
    if (st == NULL) {
        mxu_res_fail(cb, ud, MXU_RES_UNAVAILABLE, "%s: database error: %s", q->display, why);
        return NULL;
    }
    sqlite3_bind_text(st, 1, q->resource, -1, SQLITE_STATIC);
    return st;
}

/* Roll back the open transaction and answer UNAVAILABLE with the error. */
static void qe_abort(queue_embedded *q, mxu_res_cb cb, void *ud)
{
    char msg[256];
    snprintf(msg, sizeof(msg), "%s", sqlite3_errmsg(mxu_edb_handle(q->db)));
    if (!sqlite3_get_autocommit(mxu_edb_handle(q->db)))
        mxu_edb_tx(q->db, MXU_EDB_ROLLBACK);
    mxu_res_fail(cb, ud, MXU_RES_UNAVAILABLE, "%s: database error: %s", q->display, msg);
}

static void qe_publish(mxu_backend *b, const void *msg, size_t len, mxu_res_cb cb, void *ud)
{
    queue_embedded *q = (queue_embedded *)b;
    if (msg == NULL && len > 0) {
        mxu_res_fail(cb, ud, MXU_RES_INVALID, "%s: message of %zu bytes without data", q->display,
                     len);
        return;
    }
    if (mxu_edb_tx(q->db, MXU_EDB_BEGIN) < 0) {
        qe_abort(q, cb, ud);
        return;
    }
    sqlite3_stmt *st = qe_stmt(q, MXU_EDB_Q_SEQ,
                               "INSERT INTO queue_seq(resource, last_id) VALUES(?1, 1) "
                               "ON CONFLICT(resource) DO UPDATE SET last_id=last_id+1 "
                               "RETURNING last_id",
                               cb, ud);
    if (st == NULL) {
        mxu_edb_tx(q->db, MXU_EDB_ROLLBACK);
        return;
    }
    int rc = sqlite3_step(st);
    int64_t id = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
    while (rc == SQLITE_ROW)
        rc = sqlite3_step(st);
    mxu_edb_stmt_done(q->db, MXU_EDB_Q_SEQ, st);
    if (rc != SQLITE_DONE || id <= 0) {
        qe_abort(q, cb, ud);
        return;
    }
    st = qe_stmt(q, MXU_EDB_Q_INSERT,
                 "INSERT INTO queue(resource, id, payload, visible_at, attempts, receipt) "
                 "VALUES(?1, ?2, ?3, 0, 0, NULL)",
                 cb, ud);
    if (st == NULL) {
        mxu_edb_tx(q->db, MXU_EDB_ROLLBACK);
        return;
    }
    sqlite3_bind_int64(st, 2, id);
    sqlite3_bind_blob64(st, 3, len ? msg : "", (sqlite3_uint64)len, SQLITE_STATIC);
    rc = sqlite3_step(st);
    mxu_edb_stmt_done(q->db, MXU_EDB_Q_INSERT, st);
    if (rc != SQLITE_DONE || mxu_edb_tx(q->db, MXU_EDB_COMMIT) < 0) {
        qe_abort(q, cb, ud);
        return;
    }
    mxu_res_result r = {.status = MXU_RES_OK, .n1 = (uint64_t)id};
    cb(ud, &r);
}

static void qe_consume(mxu_backend *b, uint64_t lease_ms, mxu_res_cb cb, void *ud)
{
    queue_embedded *q = (queue_embedded *)b;
    if (lease_ms == 0)
        lease_ms = MXU_RES_LEASE_DEFAULT_MS;
    if (lease_ms > MXU_RES_LEASE_MAX_MS) {
        mxu_res_fail(cb, ud, MXU_RES_INVALID, "%s: a lease of %llu ms is longer than a week",
                     q->display, (unsigned long long)lease_ms);
        return;
    }
    uint64_t now = mxu_wall_ms();
    if (mxu_edb_tx(q->db, MXU_EDB_BEGIN) < 0) {
        qe_abort(q, cb, ud);
        return;
    }
    sqlite3_stmt *st = qe_stmt(q, MXU_EDB_Q_NEXT,
                               "SELECT id, payload, attempts FROM queue "
                               "WHERE resource=?1 AND visible_at<=?2 ORDER BY id LIMIT 1",
                               cb, ud);
    if (st == NULL) {
        mxu_edb_tx(q->db, MXU_EDB_ROLLBACK);
        return;
    }
    sqlite3_bind_int64(st, 2, (sqlite3_int64)now);
    int rc = sqlite3_step(st);
    if (rc != SQLITE_ROW) {
        mxu_edb_stmt_done(q->db, MXU_EDB_Q_NEXT, st);
        if (rc != SQLITE_DONE) {
            qe_abort(q, cb, ud);
            return;
        }
        mxu_edb_tx(q->db, MXU_EDB_ROLLBACK);
        mxu_res_fail(cb, ud, MXU_RES_NOT_FOUND, "%s has no message to consume", q->display);
        return;
    }
    int64_t id = sqlite3_column_int64(st, 0);
    size_t len = (size_t)sqlite3_column_bytes(st, 1);
    /* Copied: the statement must be finished before COMMIT, and the answer
     * only goes out after COMMIT. */
    _cleanup_free_ char *payload = mxu_malloc(len + 1);
    if (len > 0)
        memcpy(payload, sqlite3_column_blob(st, 1), len);
    uint64_t attempts = (uint64_t)sqlite3_column_int64(st, 2) + 1;
    mxu_edb_stmt_done(q->db, MXU_EDB_Q_NEXT, st);

    unsigned char rnd[16];
    char hex[33];
    randombytes_buf(rnd, sizeof(rnd));
    sodium_bin2hex(hex, sizeof(hex), rnd, sizeof(rnd));
    char receipt[64];
    snprintf(receipt, sizeof(receipt), "%lld.%s", (long long)id, hex);

    st = qe_stmt(q, MXU_EDB_Q_LEASE,
                 "UPDATE queue SET visible_at=?3, attempts=attempts+1, receipt=?4 "
                 "WHERE resource=?1 AND id=?2",
                 cb, ud);
    if (st == NULL) {
        mxu_edb_tx(q->db, MXU_EDB_ROLLBACK);
        return;
    }
    sqlite3_bind_int64(st, 2, id);
    sqlite3_bind_int64(st, 3, (sqlite3_int64)(now + lease_ms));
    sqlite3_bind_text(st, 4, receipt, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    mxu_edb_stmt_done(q->db, MXU_EDB_Q_LEASE, st);
    if (rc != SQLITE_DONE || mxu_edb_tx(q->db, MXU_EDB_COMMIT) < 0) {
        qe_abort(q, cb, ud);
        return;
    }
    mxu_res_result r = {.status = MXU_RES_OK,
                        .data = payload,
                        .len = len,
                        .receipt = receipt,
                        .n1 = attempts,
                        .n2 = (uint64_t)id};
    cb(ud, &r);
}

/* "<id>.<32 hex>" → id; -1 if the receipt is not of that shape. */
static int64_t receipt_id(const char *receipt)
{
    const char *dot = receipt ? strchr(receipt, '.') : NULL;
    if (dot == NULL || dot == receipt || dot - receipt > 18 || strlen(dot + 1) != 32)
        return -1;
    int64_t id = 0;
    for (const char *p = receipt; p < dot; p++) {
        if (*p < '0' || *p > '9')
            return -1;
        id = id * 10 + (*p - '0');
    }
    for (const char *p = dot + 1; *p; p++)
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
            return -1;
    return id > 0 ? id : -1;
}

static void qe_ack(mxu_backend *b, const char *receipt, mxu_res_cb cb, void *ud)
{
    queue_embedded *q = (queue_embedded *)b;
    int64_t id = receipt_id(receipt);
    if (id < 0) {
        char qr[128];
        mxu_res_quote(receipt, qr, sizeof(qr));
        mxu_res_fail(cb, ud, MXU_RES_INVALID, "'%s' is not a receipt of %s", qr, q->display);
        return;
    }
    sqlite3_stmt *st = qe_stmt(q, MXU_EDB_Q_ACK,
                               "DELETE FROM queue WHERE resource=?1 AND id=?2 AND receipt=?3 "
                               "AND visible_at>?4",
                               cb, ud);
    if (st == NULL)
        return;
    sqlite3_bind_int64(st, 2, id);
    sqlite3_bind_text(st, 3, receipt, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 4, (sqlite3_int64)mxu_wall_ms());
    int rc = sqlite3_step(st);
    int changed = sqlite3_changes(mxu_edb_handle(q->db));
    mxu_edb_stmt_done(q->db, MXU_EDB_Q_ACK, st);
    if (rc != SQLITE_DONE) {
        qe_abort(q, cb, ud);
    } else if (changed == 0) {
        mxu_res_fail(cb, ud, MXU_RES_NOT_FOUND,
                     "%s: message %lld is not held with that receipt (acked already, or its "
                     "lease ran out and it may be delivered again)",
                     q->display, (long long)id);
    } else {
        mxu_res_result r = {.status = MXU_RES_OK};
        cb(ud, &r);
    }
}

const mxu_driver mxu_driver_queue_embedded = {
    .kind = "queue",
    .scheme = "embedded",
    .open = qe_open,
    .close = qe_close,
    .queue_publish = qe_publish,
    .queue_consume = qe_consume,
    .queue_ack = qe_ack,
};
