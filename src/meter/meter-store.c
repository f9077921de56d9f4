/*
 * The usage database and its writer thread.
 *
 * Durability is the point of this file. The loop thread packs each record
 * and appends it to a queue; the writer thread takes whatever the queue
 * holds, inserts it in one transaction and commits. With journal_mode=WAL
 * and synchronous=FULL the commit returns only after the WAL is fsynced, so
 * when the writer moves the batch to the done list and wakes the loop
 * (uv_async), every record in it survives kill -9 and power loss. The loop
 * then runs the batch's callbacks, which release the answers held for them.
 *
 * While one batch is being fsynced, the next one fills: under load a batch
 * holds every record that arrived during the previous fsync, so the cost of
 * an fsync (~0.1-0.3 ms here, docs/metering.md) is shared by all of them and
 * the loop thread never waits for the disk.
 *
 * Two connections: the writer's, used only on its thread, and the loop's,
 * for queries and the price table (WAL lets them run side by side).
 */
#include "meter-internal.h"

#include <errno.h>
#include <sqlite3.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

typedef struct pending {
    struct pending *next;
    mxu_meter_cb cb;
    void *ud;
    size_t len; /* 0: a flush marker, no record */
    char data[];
} pending;

typedef struct plist {
    pending *head, **tail;
} plist;

struct mxu_meter {
    uv_loop_t *loop;
    sqlite3 *wdb; /* writer thread */
    sqlite3 *db;  /* loop thread */
    sqlite3_stmt *ins;
    uv_thread_t thread;
    bool thread_started;
    uv_mutex_t mu;
    uv_cond_t cv;
    plist queue; /* to write */
    plist done;  /* durable; callbacks to run */
    bool stop;
    uv_async_t async;
    mxu_prices *prices;
    /* stats (under mu) */
    uint64_t queued, committed, batches, max_batch, commit_ns, commit_cpu_ns, failures;
};

static void plist_init(plist *l)
{
    l->head = NULL;
    l->tail = &l->head;
}

static void plist_append(plist *l, pending *first, pending **last_next)
{
    if (first == NULL)
        return;
    *l->tail = first;
    l->tail = last_next;
}

static const char *const schema =
    "CREATE TABLE IF NOT EXISTS usage ("
    " seq INTEGER PRIMARY KEY,"
    " invocation INTEGER NOT NULL, tenant TEXT NOT NULL, function TEXT NOT NULL,"
    " version INTEGER NOT NULL, executor TEXT NOT NULL, start_ms INTEGER NOT NULL,"
    " wall_us INTEGER NOT NULL, billed_ms INTEGER NOT NULL, memory INTEGER NOT NULL,"
    " cpu_us INTEGER NOT NULL, peak_memory INTEGER NOT NULL, bytes_in INTEGER NOT NULL,"
    " bytes_out INTEGER NOT NULL, cold INTEGER NOT NULL, status INTEGER NOT NULL,"
    " http_status INTEGER NOT NULL, code TEXT NOT NULL, caller INTEGER NOT NULL,"
    " caller_function TEXT NOT NULL);"
    "CREATE INDEX IF NOT EXISTS usage_tenant_start ON usage(tenant, start_ms);"
    "CREATE TABLE IF NOT EXISTS prices (id INTEGER PRIMARY KEY CHECK (id = 1), json TEXT NOT "
    "NULL);";

static const char *const insert_sql =
    "INSERT INTO usage (invocation, tenant, function, version, executor, start_ms, wall_us,"
    " billed_ms, memory, cpu_us, peak_memory, bytes_in, bytes_out, cold, status, http_status,"
    " code, caller, caller_function) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)";

static int db_open(const char *path, sqlite3 **out, mxu_err *err)
{
    sqlite3 *db = NULL;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) != SQLITE_OK) {
        mxu_err_set(err, EIO, "cannot open %s: %s", path, db ? sqlite3_errmsg(db) : "no memory");
        sqlite3_close(db);
        return -1;
    }
    sqlite3_busy_timeout(db, 5000);
    char *emsg = NULL;
    /* synchronous=FULL: a commit returns after the WAL is fsynced. */
    if (sqlite3_exec(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;", NULL, NULL, &emsg) !=
        SQLITE_OK) {
        mxu_err_set(err, EIO, "%s: %s", path, emsg ? emsg : "cannot set WAL mode");
        sqlite3_free(emsg);
        sqlite3_close(db);
        return -1;
    }
    *out = db;
    return 0;
}

/* ---- the writer thread ---- */

static uint64_t thread_cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int write_batch(mxu_meter *m, pending *batch, const char **why)
{
    sqlite3 *db = m->wdb;
    if (sqlite3_exec(db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK) {
        *why = sqlite3_errmsg(db);
        return -1;
    }
    for (pending *p = batch; p; p = p->next) {
        if (p->len == 0)
            continue;
        mxu_usage_record r;
        if (mxu_usage_record_decode(p->data, p->len, &r) < 0)
            continue; /* cannot happen: we packed it */
        sqlite3_stmt *st = m->ins;
        int i = 1;
        sqlite3_bind_int64(st, i++, (sqlite3_int64)r.invocation);
        sqlite3_bind_text(st, i++, r.tenant, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, i++, r.function, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, i++, r.version);
        sqlite3_bind_text(st, i++, r.executor, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, i++, (sqlite3_int64)r.start_ms);
        sqlite3_bind_int64(st, i++, (sqlite3_int64)r.wall_us);
        sqlite3_bind_int64(st, i++, (sqlite3_int64)r.billed_ms);
        sqlite3_bind_int64(st, i++, (sqlite3_int64)r.memory_bytes);
        sqlite3_bind_int64(st, i++, (sqlite3_int64)r.cpu_us);
        sqlite3_bind_int64(st, i++, (sqlite3_int64)r.peak_bytes);
        sqlite3_bind_int64(st, i++, (sqlite3_int64)r.bytes_in);
        sqlite3_bind_int64(st, i++, (sqlite3_int64)r.bytes_out);
        sqlite3_bind_int(st, i++, r.cold);
        sqlite3_bind_int(st, i++, (int)r.status);
        sqlite3_bind_int(st, i++, r.http_status);
        sqlite3_bind_text(st, i++, r.code, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, i++, (sqlite3_int64)r.caller);
        sqlite3_bind_text(st, i++, r.caller_function, -1, SQLITE_STATIC);
        int rc = sqlite3_step(st);
        sqlite3_reset(st);
        if (rc != SQLITE_DONE) {
            *why = sqlite3_errmsg(db);
            sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
            return -1;
        }
    }
    if (sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
        *why = sqlite3_errmsg(db);
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
        return -1;
    }
    return 0;
}

static void writer_main(void *arg)
{
    mxu_meter *m = arg;
    uv_mutex_lock(&m->mu);
    for (;;) {
        while (m->queue.head == NULL && !m->stop)
            uv_cond_wait(&m->cv, &m->mu);
        if (m->queue.head == NULL)
            break; /* stopping, nothing left */
        pending *batch = m->queue.head;
        pending **batch_tail = m->queue.tail;
        plist_init(&m->queue);
        uv_mutex_unlock(&m->mu);

        uint64_t n = 0;
        for (pending *p = batch; p; p = p->next)
            n += p->len != 0;
        uint64_t t0 = mxu_now_ns(), c0 = thread_cpu_ns();
        const char *why = NULL;
        unsigned tries = 0;
        while (write_batch(m, batch, &why) < 0) {
            /* Disk full, I/O error: the answers stay held and the node says
             * why; retry rather than answer without a record. */
            tries++;
            mxu_error("usage records: cannot write %llu record(s) to usage.db: %s (try %u; "
                      "answers are held until it works)",
                      (unsigned long long)n, why ? why : "?", tries);
            uv_mutex_lock(&m->mu);
            m->failures++;
            uv_mutex_unlock(&m->mu);
            uv_sleep(MXU_MIN(100u * tries, 2000u));
        }
        uint64_t dt = mxu_now_ns() - t0, dc = thread_cpu_ns() - c0;

        uv_mutex_lock(&m->mu);
        m->committed += n;
        m->batches++;
        m->commit_ns += dt;
        m->commit_cpu_ns += dc;
        if (n > m->max_batch)
            m->max_batch = n;
        plist_append(&m->done, batch, batch_tail);
        uv_async_send(&m->async);
    }
    uv_mutex_unlock(&m->mu);
}

/* ---- the loop side ---- */

static void run_done(mxu_meter *m)
{
    uv_mutex_lock(&m->mu);
    pending *p = m->done.head;
    plist_init(&m->done);
    uv_mutex_unlock(&m->mu);
    while (p) {
        pending *next = p->next;
        if (p->cb)
            p->cb(p->ud);
        free(p);
        p = next;
    }
}

static void on_async(uv_async_t *a)
{
    run_done(a->data);
}

static void enqueue(mxu_meter *m, pending *p)
{
    p->next = NULL;
    uv_mutex_lock(&m->mu);
    bool was_empty = m->queue.head == NULL;
    *m->queue.tail = p;
    m->queue.tail = &p->next;
    if (p->len)
        m->queued++;
    /* The writer only sleeps when the queue is empty. */
    if (was_empty)
        uv_cond_signal(&m->cv);
    uv_mutex_unlock(&m->mu);
}

void mxu_meter_record(mxu_meter *m, const mxu_usage_record *r, mxu_meter_cb cb, void *ud)
{
    mxu_buf b = {0};
    mxu_buf_reserve(&b, 256);
    mxu_usage_record_encode(r, &b);
    pending *p = mxu_malloc(sizeof(*p) + b.len);
    p->cb = cb;
    p->ud = ud;
    p->len = b.len;
    memcpy(p->data, b.data, b.len);
    mxu_buf_free(&b);
    enqueue(m, p);
}

void mxu_meter_flush(mxu_meter *m, mxu_meter_cb cb, void *ud)
{
    pending *p = mxu_calloc(1, sizeof(*p));
    p->cb = cb;
    p->ud = ud;
    enqueue(m, p);
}

/* ---- prices ---- */

static int store_prices(mxu_meter *m, const mxu_prices *p, mxu_err *err)
{
    json_t *j = mxu_prices_to_json(p);
    char *text = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(j);
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(m->db, "INSERT OR REPLACE INTO prices (id, json) VALUES (1, ?)", -1,
                                &st, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_text(st, 1, text, -1, SQLITE_STATIC);
        rc = sqlite3_step(st) == SQLITE_DONE ? SQLITE_OK : SQLITE_ERROR;
    }
    sqlite3_finalize(st);
    free(text);
    if (rc != SQLITE_OK)
        return mxu_err_set(err, EIO, "cannot store the price table: %s", sqlite3_errmsg(m->db));
    return 0;
}

static mxu_prices *load_prices(mxu_meter *m)
{
    sqlite3_stmt *st = NULL;
    mxu_prices *p = NULL;
    if (sqlite3_prepare_v2(m->db, "SELECT json FROM prices WHERE id = 1", -1, &st, NULL) ==
            SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW) {
        json_t *j = json_loads((const char *)sqlite3_column_text(st, 0), 0, NULL);
        mxu_err err;
        p = j ? mxu_prices_from_json(j, &err) : NULL;
        if (p == NULL)
            mxu_warn("usage.db: the stored price table is unreadable; using the built-in one");
        json_decref(j);
    }
    sqlite3_finalize(st);
    return p;
}

const mxu_prices *mxu_meter_prices(const mxu_meter *m)
{
    return m->prices;
}

int mxu_meter_set_prices(mxu_meter *m, mxu_prices *p, mxu_err *err)
{
    if (store_prices(m, p, err) < 0)
        return -1;
    mxu_prices_free(m->prices);
    m->prices = p;
    return 0;
}

/* ---- open and close ---- */

int mxu_meter_open(uv_loop_t *loop, const char *path, mxu_prices *prices, mxu_meter **out,
                   mxu_err *err)
{
    mxu_meter *m = mxu_calloc(1, sizeof(*m));
    m->loop = loop;
    plist_init(&m->queue);
    plist_init(&m->done);
    if (db_open(path, &m->db, err) < 0)
        goto fail;
    char *emsg = NULL;
    if (sqlite3_exec(m->db, schema, NULL, NULL, &emsg) != SQLITE_OK) {
        mxu_err_set(err, EIO, "%s: %s", path, emsg ? emsg : "cannot create tables");
        sqlite3_free(emsg);
        goto fail;
    }
    if (db_open(path, &m->wdb, err) < 0)
        goto fail;
    if (sqlite3_prepare_v2(m->wdb, insert_sql, -1, &m->ins, NULL) != SQLITE_OK) {
        mxu_err_set(err, EIO, "%s: %s", path, sqlite3_errmsg(m->wdb));
        goto fail;
    }
    if (prices) {
        if (store_prices(m, prices, err) < 0)
            goto fail;
        m->prices = steal_pointer(&prices);
    } else {
        m->prices = load_prices(m);
        if (m->prices == NULL)
            m->prices = mxu_prices_new();
    }
    uv_mutex_init(&m->mu);
    uv_cond_init(&m->cv);
    uv_async_init(loop, &m->async, on_async);
    m->async.data = m;
    if (uv_thread_create(&m->thread, writer_main, m) != 0) {
        mxu_err_set(err, EAGAIN, "cannot start the usage writer thread");
        uv_close((uv_handle_t *)&m->async, NULL);
        /* m is leaked on purpose: the async handle's memory must outlive the close. */
        return -1;
    }
    m->thread_started = true;
    *out = m;
    return 0;
fail:
    mxu_prices_free(prices);
    sqlite3_finalize(m->ins);
    sqlite3_close(m->wdb);
    sqlite3_close(m->db);
    free(m);
    return -1;
}

static void on_async_closed(uv_handle_t *h)
{
    free(h->data);
}

void mxu_meter_close(mxu_meter *m)
{
    if (m == NULL)
        return;
    uv_mutex_lock(&m->mu);
    m->stop = true;
    uv_cond_signal(&m->cv);
    uv_mutex_unlock(&m->mu);
    uv_thread_join(&m->thread);
    run_done(m); /* everything written: release what still waits */
    sqlite3_finalize(m->ins);
    sqlite3_close(m->wdb);
    sqlite3_close(m->db);
    mxu_prices_free(m->prices);
    uv_mutex_destroy(&m->mu);
    uv_cond_destroy(&m->cv);
    uv_close((uv_handle_t *)&m->async, on_async_closed);
}

json_t *mxu_meter_stats_json(const mxu_meter *m)
{
    mxu_meter *mm = (mxu_meter *)m;
    uv_mutex_lock(&mm->mu);
    json_t *j = json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "queued", (json_int_t)m->queued,
                          "committed", (json_int_t)m->committed, "batches", (json_int_t)m->batches,
                          "max_batch", (json_int_t)m->max_batch, "commit_us_avg",
                          (json_int_t)(m->batches ? m->commit_ns / m->batches / 1000 : 0),
                          "commit_cpu_us_avg",
                          (json_int_t)(m->batches ? m->commit_cpu_ns / m->batches / 1000 : 0),
                          "write_failures", (json_int_t)m->failures);
    uv_mutex_unlock(&mm->mu);
    return j;
}

/* ---- queries ---- */

/* WHERE clause and its binds for a filter. */
typedef struct where {
    mxu_buf sql;
    const char *texts[2];
    int ntexts;
    int64_t ints[3];
    int nints;
    char order[8]; /* 't' text or 'i' int, in bind order */
    int n;
} where;

static void where_build(where *w, const mxu_usage_filter *f, bool paging)
{
    memset(w, 0, sizeof(*w));
    mxu_buf_puts(&w->sql, " WHERE 1");
    if (f->tenant && *f->tenant) {
        mxu_buf_puts(&w->sql, " AND tenant = ?");
        w->texts[w->ntexts++] = f->tenant;
        w->order[w->n++] = 't';
    }
    if (f->function && *f->function) {
        mxu_buf_puts(&w->sql, " AND function = ?");
        w->texts[w->ntexts++] = f->function;
        w->order[w->n++] = 't';
    }
    if (f->since_ms) {
        mxu_buf_puts(&w->sql, " AND start_ms >= ?");
        w->ints[w->nints++] = (int64_t)f->since_ms;
        w->order[w->n++] = 'i';
    }
    if (f->until_ms) {
        mxu_buf_puts(&w->sql, " AND start_ms < ?");
        w->ints[w->nints++] = (int64_t)f->until_ms;
        w->order[w->n++] = 'i';
    }
    if (paging && f->before) {
        mxu_buf_puts(&w->sql, " AND seq < ?");
        w->ints[w->nints++] = (int64_t)f->before;
        w->order[w->n++] = 'i';
    }
}

static void where_bind(const where *w, sqlite3_stmt *st)
{
    int ti = 0, ii = 0;
    for (int k = 0; k < w->n; k++) {
        if (w->order[k] == 't')
            sqlite3_bind_text(st, k + 1, w->texts[ti++], -1, SQLITE_STATIC);
        else
            sqlite3_bind_int64(st, k + 1, w->ints[ii++]);
    }
}

static const char *col_text(sqlite3_stmt *st, int i)
{
    const char *s = (const char *)sqlite3_column_text(st, i);
    return s ? s : "";
}

json_t *mxu_meter_query(mxu_meter *m, const mxu_usage_filter *f, uint64_t *next, mxu_err *err)
{
    size_t limit = f->limit ? f->limit : 100;
    where w;
    where_build(&w, f, true);
    _cleanup_buf_ mxu_buf sql = {0};
    mxu_buf_printf(&sql,
                   "SELECT seq, invocation, tenant, function, version, executor, start_ms, "
                   "wall_us, billed_ms, memory, cpu_us, peak_memory, bytes_in, bytes_out, cold, "
                   "status, http_status, code, caller, caller_function FROM usage%s ORDER BY seq "
                   "DESC LIMIT %zu",
                   w.sql.data, limit);
    mxu_buf_free(&w.sql);
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(m->db, sql.data, -1, &st, NULL) != SQLITE_OK) {
        mxu_err_set(err, EIO, "usage.db: %s", sqlite3_errmsg(m->db));
        return NULL;
    }
    where_bind(&w, st);
    json_t *arr = json_array();
    uint64_t last = 0;
    size_t n = 0;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        int i = 0;
        uint64_t seq = (uint64_t)sqlite3_column_int64(st, i++);
        mxu_usage_record r = {0};
        r.invocation = (uint64_t)sqlite3_column_int64(st, i++);
        r.tenant = col_text(st, i++);
        r.function = col_text(st, i++);
        r.version = (uint32_t)sqlite3_column_int64(st, i++);
        r.executor = col_text(st, i++);
        r.start_ms = (uint64_t)sqlite3_column_int64(st, i++);
        r.wall_us = (uint64_t)sqlite3_column_int64(st, i++);
        r.billed_ms = (uint64_t)sqlite3_column_int64(st, i++);
        r.memory_bytes = (uint64_t)sqlite3_column_int64(st, i++);
        r.cpu_us = (uint64_t)sqlite3_column_int64(st, i++);
        r.peak_bytes = (uint64_t)sqlite3_column_int64(st, i++);
        r.bytes_in = (uint64_t)sqlite3_column_int64(st, i++);
        r.bytes_out = (uint64_t)sqlite3_column_int64(st, i++);
        r.cold = sqlite3_column_int(st, i++) != 0;
        r.status = (enum mxu_usage_status)sqlite3_column_int(st, i++);
        r.http_status = sqlite3_column_int(st, i++);
        r.code = col_text(st, i++);
        r.caller = (uint64_t)sqlite3_column_int64(st, i++);
        r.caller_function = col_text(st, i++);
        json_t *j = mxu_usage_record_json(&r);
        json_object_set_new(j, "seq", json_integer((json_int_t)seq));
        json_array_append_new(arr, j);
        last = seq;
        n++;
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) {
        json_decref(arr);
        mxu_err_set(err, EIO, "usage.db: %s", sqlite3_errmsg(m->db));
        return NULL;
    }
    *next = n == limit ? last : 0;
    return json_pack("{s:o}", "records", arr);
}

json_t *mxu_meter_aggregate(mxu_meter *m, const mxu_usage_filter *f, mxu_err *err)
{
    where w;
    where_build(&w, f, false);
    _cleanup_buf_ mxu_buf sql = {0};
    /* Sums of per-record integers bounded far below 2^63 for any real month
     * (SQLite raises an error rather than wrap if one ever overflows). */
    mxu_buf_printf(&sql,
                   "SELECT tenant, function, count(*), sum(status = %d), sum(status IN (%d,%d,%d)),"
                   " sum(status = %d), sum(cold), sum(billed_ms), sum(cpu_us), sum(bytes_in),"
                   " sum(bytes_out), max(peak_memory), min(start_ms), max(start_ms) FROM usage%s"
                   " GROUP BY tenant, function ORDER BY tenant, function",
                   MXU_USAGE_OK, MXU_USAGE_ERROR, MXU_USAGE_TIMEOUT, MXU_USAGE_CRASHED,
                   MXU_USAGE_REJECTED, w.sql.data);
    mxu_buf_free(&w.sql);
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(m->db, sql.data, -1, &st, NULL) != SQLITE_OK) {
        mxu_err_set(err, EIO, "usage.db: %s", sqlite3_errmsg(m->db));
        return NULL;
    }
    where_bind(&w, st);
    json_t *arr = json_array();
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        static const char *const names[] = {"requests",  "ok",          "errors",   "rejected",
                                            "cold",      "billed_ms",   "cpu_us",   "bytes_in",
                                            "bytes_out", "peak_memory", "first_ms", "last_ms"};
        json_t *j = json_pack("{s:s, s:s}", "tenant", col_text(st, 0), "function", col_text(st, 1));
        for (int i = 0; i < (int)MXU_ARRAY_LEN(names); i++)
            json_object_set_new(j, names[i], json_integer(sqlite3_column_int64(st, i + 2)));
        json_array_append_new(arr, j);
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) {
        json_decref(arr);
        mxu_err_set(err, EIO, "usage.db: %s", sqlite3_errmsg(m->db));
        return NULL;
    }
    return arr;
}

int mxu_meter_bill_usage(mxu_meter *m, const char *tenant, uint64_t start_ms, uint64_t end_ms,
                         mxu_bill_usage *u, mxu_err *err)
{
    memset(u, 0, sizeof(*u));
    /* Grouped by memory size, each group's sum of billed_ms stays small;
     * the products and the total are formed in 128 bits here. Rejected
     * invocations never ran and are not billed (docs/metering.md). */
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(m->db,
                           "SELECT memory, count(*), sum(billed_ms), sum(bytes_out) FROM usage"
                           " WHERE tenant = ? AND start_ms >= ? AND start_ms < ? AND status != ?"
                           " GROUP BY memory",
                           -1, &st, NULL) != SQLITE_OK)
        return mxu_err_set(err, EIO, "usage.db: %s", sqlite3_errmsg(m->db));
    sqlite3_bind_text(st, 1, tenant, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)start_ms);
    sqlite3_bind_int64(st, 3, (sqlite3_int64)end_ms);
    sqlite3_bind_int(st, 4, MXU_USAGE_REJECTED);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        uint64_t mem = (uint64_t)sqlite3_column_int64(st, 0);
        u->requests += (uint64_t)sqlite3_column_int64(st, 1);
        u->mem_byte_ms += (unsigned __int128)mem * (uint64_t)sqlite3_column_int64(st, 2);
        u->bytes_out += (uint64_t)sqlite3_column_int64(st, 3);
    }
    if (rc != SQLITE_DONE) {
        mxu_err_set(err, EIO, "usage.db: %s", sqlite3_errmsg(m->db));
        sqlite3_finalize(st);
        return -1;
    }
    sqlite3_finalize(st);
    return 0;
}

json_t *mxu_meter_bill(mxu_meter *m, const char *tenant, const char *month, mxu_err *err)
{
    uint64_t a, b;
    if (mxu_month_range(month, &a, &b, err) < 0)
        return NULL;
    mxu_bill_usage u;
    if (mxu_meter_bill_usage(m, tenant, a, b, &u, err) < 0)
        return NULL;
    mxu_price price = mxu_prices_for(m->prices, tenant);
    mxu_bill bill;
    if (mxu_bill_compute(&u, &price, &bill, err) < 0)
        return NULL;
    return mxu_bill_json(&bill, tenant, month, mxu_prices_currency(m->prices));
}
