/*
 * What the backend drivers of src/resolve share and nobody else sees:
 *
 *   resolve-drivers.c         the table of drivers (mxu_driver_find), key checks,
 *                             answering a callback with a message
 *   resolve-kv-embedded.c     kv in SQLite, and the one SQLite connection that
 *                             every embedded backend of the process shares
 *   resolve-queue-embedded.c  queue in the same SQLite database
 *   resolve-redis.c           one shared, self-healing hiredis connection per
 *                             Redis database: timeouts, reconnects, scripts
 *   resolve-kv-redis.c        kv in Redis hashes + a sorted set of keys
 *   resolve-queue-redis.c     queue in a Redis stream with a consumer group
 *   resolve-blob-fs.c         blob as files in a directory
 *
 * Everything here runs on the loop thread only.
 */
#ifndef MXU_RESOLVE_INTERNAL_H
#define MXU_RESOLVE_INTERNAL_H

#include "resolve/resolve.h"

#include <hiredis/hiredis.h>
#include <sqlite3.h>

/* ---- limits ---------------------------------------------------------------------------
 * Keys as resolve.h states them. Blob keys are paths and may be longer. */
#define MXU_RES_KEY_MAX      512u
#define MXU_RES_BLOB_KEY_MAX 1024u
/* A list page when the caller asks for 0 keys, and the most one page holds:
 * a page is built in memory, so it must stay small whatever a caller asks. */
#define MXU_RES_LIST_DEFAULT 100u
#define MXU_RES_LIST_MAX     1000u
/* A consume with lease 0 gets this one; longer than a week is refused (it
 * would also overflow nothing, but it is surely a unit mistake). */
#define MXU_RES_LEASE_DEFAULT_MS 30000u
#define MXU_RES_LEASE_MAX_MS     (7ull * 24 * 3600 * 1000)

/* ---- helpers (resolve-drivers.c) -------------------------------------------------------- */

/* "default/kv/orders" → "kv:orders" (the name people wrote), into out. */
void mxu_res_display(const char *resource, char *out, size_t outlen);
/* A key (or prefix, or cursor) quoted for a message: printable ASCII as is,
 * anything else as \xNN, cut after 80 bytes with "...". */
void mxu_res_quote(const char *s, char *out, size_t outlen);
/* NULL if `key` is a valid kv key (blob = 0) or blob key (blob = 1), else
 * why not, as a phrase ("is empty", "is longer than 512 bytes", ...).
 * `allow_empty` accepts "" (list prefixes and cursors). */
const char *mxu_res_key_problem(const char *key, int blob, int allow_empty);
/* Answer an operation with a status and a formatted message. */
void mxu_res_fail(mxu_res_cb cb, void *ud, enum mxu_res_status st, const char *fmt, ...)
    MXU_PRINTF(4, 5);
/* Check a key; on a bad one answer INVALID ("bad key '...' for kv:orders:
 * is empty") and return -1. `what` is "key", "prefix" or "cursor". */
int mxu_res_check_key(const char *key, int blob, int allow_empty, const char *what,
                      const char *display, mxu_res_cb cb, void *ud);
/* The first key after every key that starts with `prefix` in byte order
 * (prefix with its last byte incremented, trailing 0xff bytes dropped), or ""
 * when there is none (prefix empty or all 0xff). out has strlen(prefix) + 1. */
void mxu_res_prefix_end(const char *prefix, char *out);
/* Clamp a list limit: 0 → default, above the maximum → the maximum. */
size_t mxu_res_list_limit(size_t limit);

/* ---- the embedded database (resolve-kv-embedded.c) ------------------------------------------
 * One SQLite database, <data_dir>/resources/embedded.db, for every embedded
 * kv and queue backend of the process: one connection, opened with the first
 * backend and closed with the last, with its prepared statements cached. */
enum mxu_edb_stmt {
    MXU_EDB_KV_GET,
    MXU_EDB_KV_PUT,
    MXU_EDB_KV_DELETE,
    MXU_EDB_KV_CAS_CREATE,
    MXU_EDB_KV_CAS_UPDATE,
    MXU_EDB_KV_REVISION,
    MXU_EDB_KV_LIST,
    MXU_EDB_KV_LIST_FROM,
    MXU_EDB_KV_IMPORT,
    MXU_EDB_Q_SEQ,
    MXU_EDB_Q_INSERT,
    MXU_EDB_Q_NEXT,
    MXU_EDB_Q_LEASE,
    MXU_EDB_Q_ACK,
    MXU_EDB_BEGIN,
    MXU_EDB_COMMIT,
    MXU_EDB_ROLLBACK,
    MXU_EDB_NSTMT
};

typedef struct mxu_edb mxu_edb;

mxu_edb *mxu_edb_open(const char *data_dir, mxu_err *err);
void mxu_edb_close(mxu_edb *db);
/* The cached statement for `which`, prepared from `sql` the first time; reset
 * and with its bindings cleared. NULL (and a message in *why) if it cannot be
 * prepared. */
sqlite3_stmt *mxu_edb_stmt(mxu_edb *db, enum mxu_edb_stmt which, const char *sql, const char **why);
/* Hand a statement back (reset, bindings cleared); rows read from it are
 * invalid from now on. */
void mxu_edb_stmt_done(mxu_edb *db, enum mxu_edb_stmt which, sqlite3_stmt *st);
sqlite3 *mxu_edb_handle(mxu_edb *db);
/* Run a cached BEGIN / COMMIT / ROLLBACK; 0 or -1. */
int mxu_edb_tx(mxu_edb *db, enum mxu_edb_stmt which);

/* ---- Redis (resolve-redis.c) ------------------------------------------------------------------
 * A connection to one Redis database, shared by every backend of the process
 * that names the same HOST:PORT/DB on the same loop, reference-counted.
 *
 * Commands are pipelined on it. A command's callback runs exactly once: with
 * the reply (which may be an error reply), or with reply NULL and a message
 * saying why Redis is unavailable (down, refused, no answer in time, the
 * connection dropped while the command was out). When Redis is down, the
 * callback runs before mxu_redis_command returns. The connection reconnects
 * by itself, with backoff, for as long as someone holds it. */
typedef struct mxu_redis mxu_redis;

typedef void (*mxu_redis_cb)(void *ud, redisReply *reply, const char *unavailable);

/* A Lua script: EVALSHA once its SHA1 is known (from SCRIPT LOAD), EVAL
 * before that and whenever Redis answers NOSCRIPT (restarted, flushed). A
 * driver keeps its scripts as static, mutable structs. */
typedef struct mxu_redis_script {
    const char *src;
    char sha[41];
    int loading; /* a SCRIPT LOAD is out */
} mxu_redis_script;

/* Parse redis://HOST:PORT[/DB] (PORT defaults to 6379, DB to 0). */
int mxu_redis_parse(const char *location, char *host, size_t hostlen, int *port, int *db,
                    mxu_err *err);
mxu_redis *mxu_redis_get(uv_loop_t *loop, const char *location, mxu_err *err);
void mxu_redis_put(mxu_redis *r);
/* "redis 127.0.0.1:6379/0", for messages. */
const char *mxu_redis_name(const mxu_redis *r);
void mxu_redis_command(mxu_redis *r, int argc, const char **argv, const size_t *lens,
                       mxu_redis_cb cb, void *ud);
/* EVALSHA/EVAL `s` with nkeys keys followed by the other arguments. */
void mxu_redis_eval(mxu_redis *r, mxu_redis_script *s, int nkeys, int argc, const char **argv,
                    const size_t *lens, mxu_redis_cb cb, void *ud);
/* For tests: how long to wait for a connect and for an answer. */
void mxu_redis_set_timeouts(mxu_redis *r, uint64_t connect_ms, uint64_t command_ms);

/* The drivers (the table in resolve-drivers.c lists them). */
extern const mxu_driver mxu_driver_kv_embedded;
extern const mxu_driver mxu_driver_kv_redis;
extern const mxu_driver mxu_driver_blob_fs;
extern const mxu_driver mxu_driver_queue_embedded;
extern const mxu_driver mxu_driver_queue_redis;

#endif
