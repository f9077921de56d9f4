/*
 * The usage store: the journal on the loop thread, the database and its
 * writer thread, and the queries.
 *
 * Durability is the point of this file (docs/metering.md, "Durability").
 * kill -9 ends the process, not the machine: what the process has put in
 * the kernel's page cache survives it. The journal is a ring file mapped
 * shared (meter-journal.c), so a record stored into the mapping is in the
 * page cache at once, with no system call, and that is what an answer waits
 * for:
 *
 *  1. Loop thread, per record: mxu_meter_record() frames the record into an
 *     in-memory batch (meter-journal.c) and, when every record before it is
 *     in, stores the frame into the ring: the caller may answer at once.
 *     Otherwise (the ring is full: the writer is behind) the record waits,
 *     with the callbacks that release answers.
 *  2. Loop thread, once per loop turn: a prepare handle (it runs just before
 *     the loop would block again) stores what waits, hands the turn's frames
 *     to the writer thread and runs the callbacks, so held answers leave in
 *     the same turn, after their records are in the kernel.
 *  3. Writer thread, every ingest interval (50 ms; MXU_METER_INGEST_MS) or at
 *     once when a flush waits or the ring is full: inserts the handed-over
 *     records into usage.db in one transaction that also stores how far the
 *     ring is ingested (table `journal`: lap and offset), so ingestion is
 *     idempotent, then publishes that position: the ring's space up to it
 *     can be used again. synchronous=FULL: after the commit the records
 *     survive a power loss too, so a machine crash loses at most the records
 *     answered in the last interval and commit.
 *  4. Open: the segment files of older nodes, then the ring from the stored
 *     position on, are replayed (records a killed node stored but never
 *     ingested), up to the first torn or stale frame; the loop goes on
 *     writing there. Crash-safe at every step: replaying twice adds nothing.
 *
 * Reads (queries, bills) go through mxu_meter_sync(): ingestion up to the
 * journal's end, then the query, on the loop's own connection (WAL lets it
 * read while the writer writes).
 */
#include "meter-internal.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* The ring's size (MXU_METER_RING_BYTES makes it small for the wrap
 * tests): ~250,000 records of a warm no-op, seconds of the fastest load,
 * far more than the writer lags behind (one ingest interval). */
#define DEFAULT_RING_BYTES (16u << 20)
/* Ingest at once, whatever the interval, when this much is waiting. */
#define URGENT_BYTES      (1u << 20)
#define DEFAULT_INGEST_MS 50

/* What the loop hands the writer, in journal order: a chunk of written
 * frames, or a sync waiting for everything before it to be ingested. */
typedef struct item {
    struct item *next; /* writer queue, then the done list */
    bool sync;
    /* chunk */
    uint64_t gen, end; /* ring lap and offset just past the chunk */
    size_t len;
    /* sync (loop thread only, except `next`) */
    mxu_meter_sync_cb cb;
    mxu_meter_cb flush_cb;
    void *ud;
    uint64_t deadline_ns; /* 0 = none */
    bool fired;
    struct item *tnext, **tprev; /* the loop's list of syncs with a deadline */
    char data[];
} item;

typedef struct release {
    mxu_meter_record_cb cb;
    void *ud;
    size_t upto; /* it runs once batch[0, upto) is in the journal */
} release;

typedef struct ilist {
    item *head, **tail;
} ilist;

/* A batch row holds at most this many records: a page of /v1/usage decodes
 * whole rows, and a replayed 16 MiB ring is not one row. */
#define BATCH_RECORDS 2048
/* A row lists up to this many tenants and functions (for skipping it). */
#define NAMES_MAX 32

typedef struct names {
    char *v[NAMES_MAX];
    size_t n, last;
    bool overflow;
} names;

/* A bill's quantities for one (tenant, month, memory), summed over a writer
 * transaction's billable records. */
typedef struct month_sum {
    char *tenant; /* NULL: a free slot */
    uint64_t month, memory;
    uint64_t requests, billed_ms, bytes_out;
} month_sum;

/* The writer's state inside one ingest transaction (kept across them to
 * reuse its memory). */
typedef struct ingest_ctx {
    struct mxu_meter *m;
    uint64_t seq;  /* the next record's seq */
    uint64_t n;    /* records in rows written by this transaction */
    uint64_t rows; /* rows written by this transaction */
    /* the open batch row */
    mxu_buf blob; /* its records' frames */
    uint32_t bn;
    uint64_t min_start, max_start;
    names tenants, functions;
    /* the sums, an open hash table */
    month_sum *sums, *last;
    size_t nsums, capsums;
    uint64_t month_lo, month_hi; /* the month last looked up */
    char why[256];               /* set when a statement failed */
} ingest_ctx;

struct mxu_meter {
    uv_loop_t *loop;
    char *dir;    /* where usage.db and the journal live */
    sqlite3 *wdb; /* writer thread (and replay, before it starts) */
    sqlite3 *db;  /* loop thread */
    sqlite3_stmt *ins, *upsert, *setpos;
    uint64_t ingest_ns, ring_bytes;
    /* usage.frames: the batch rows' frames, appended by the writer (and
     * replay), read by queries with pread. frames_end: where the next row's
     * go; frames_committed: the end that usage.db's rows know of. */
    int frames_fd;
    uint64_t frames_end, frames_committed;

    /* ---- loop thread ---- */
    mxu_ring ring;     /* the journal (written by the loop, read by replay) */
    uint64_t gen, end; /* the ring's lap, and where the next frame goes */
    uint64_t limit;    /* the loop may write up to this position (below) */
    mxu_buf batch;     /* framed records not yet handed over */
    size_t written;    /* how much of batch is in the ring already */
    bool ring_full;    /* a store waits for the writer to free space */
    release *rel;      /* callbacks of the records in batch */
    size_t nrel, caprel;
    ilist syncs;  /* syncs to hand over after batch */
    item *timed;  /* syncs with a deadline, not yet fired */
    bool failing; /* a write failed; the retry timer is on */
    unsigned tries;
    uv_prepare_t prep;
    uv_timer_t retry, expire;
    int open_handles;
    uint64_t recorded, writes, write_bytes, write_failures;

    /* ---- shared, under mu ---- */
    uv_mutex_t mu;
    uv_cond_t cv;
    ilist queue;
    size_t queue_bytes;
    uint64_t queue_since_ns;
    bool urgent, stop;
    ilist done;
    /* How far usage.db holds the ring, as a position lap * size + offset
     * (only the writer stores it, after each commit): the loop may write
     * up to one ring's size past it without overwriting a record that is
     * not in usage.db yet. */
    _Atomic uint64_t committed;
    bool ring_waiting; /* the loop waits for committed to move */
    uint64_t ingested, batches, rows, max_batch, commit_ns, commit_cpu_ns, failures, replayed, cut;
    uint64_t writer_cpu_ns; /* all of the writer thread's CPU so far */
    uv_async_t async;
    uv_thread_t thread;

    /* ---- writer thread (and replay, before it starts) ---- */
    uint64_t next_seq; /* of the next record ingested */
    ingest_ctx ic;

    mxu_prices *prices;
    mxu_meter_observer observer; /* loop thread */
    void *observer_ud;
};

static void ilist_init(ilist *l)
{
    l->head = NULL;
    l->tail = &l->head;
}

static void ilist_push(ilist *l, item *it)
{
    it->next = NULL;
    *l->tail = it;
    l->tail = &it->next;
}

static void ilist_splice(ilist *l, ilist *from)
{
    if (from->head == NULL)
        return;
    *l->tail = from->head;
    l->tail = from->tail;
    ilist_init(from);
}

/* usage.db holds the records in batch rows, one per writer cycle (at most
 * BATCH_RECORDS records each): the records' journal frames as one blob, with
 * the range of their start_ms and the tenants and functions they name, so a
 * query skips the rows that cannot match and decodes the others. Inserting
 * a row per record (a B-tree entry, an index entry and their WAL pages each)
 * cost ~1.5-2 us of CPU per record, on the CPU that also runs the
 * invocations; a row per batch costs a memcpy of the frame and a few
 * compares (docs/metering.md, "Cost, measured").
 *
 * Bills do not read the rows: usage_month keeps, per tenant, UTC month and
 * configured memory, the exact sums a bill needs (billable records, billed
 * ms, bytes out). The writer sums a cycle's records in memory and upserts
 * each sum once, in the transaction that inserts their batch row and moves
 * the journal position, so the sums and the rows never disagree, and a
 * replay after a crash adds nothing twice. */
static const char *const schema =
    "CREATE TABLE IF NOT EXISTS usage_batch ("
    /* Records are numbered in journal order (their `seq`, the paging cursor
     * of /v1/usage): this row holds first_seq .. first_seq + n - 1. */
    " first_seq INTEGER PRIMARY KEY, n INTEGER NOT NULL,"
    " min_start INTEGER NOT NULL, max_start INTEGER NOT NULL,"
    /* "\nname\n...\n", or NULL when a batch names more than NAMES_MAX. */
    " tenants TEXT, functions TEXT,"
    /* Last: a query that skips the row never reads its overflow pages.
     * Rows written before usage.frames hold their frames here; newer ones
     * an empty blob, and foff/flen (added by open_frames) instead. */
    " data BLOB NOT NULL);"
    "CREATE INDEX IF NOT EXISTS usage_batch_end ON usage_batch(max_start);"
    "CREATE TABLE IF NOT EXISTS usage_month ("
    " tenant TEXT NOT NULL, month INTEGER NOT NULL, memory INTEGER NOT NULL,"
    " requests INTEGER NOT NULL, billed_ms INTEGER NOT NULL, bytes_out INTEGER NOT NULL,"
    " PRIMARY KEY (tenant, month, memory)) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS prices (id INTEGER PRIMARY KEY CHECK (id = 1), json TEXT NOT "
    "NULL);"
    /* How far the journal is in this database: ring lap `gen` (a legacy
     * segment's number before the ring), up to byte `off`. Written in the
     * same transaction as the records. */
    "CREATE TABLE IF NOT EXISTS journal (id INTEGER PRIMARY KEY CHECK (id = 1),"
    " gen INTEGER NOT NULL, off INTEGER NOT NULL);";

static const char *const insert_sql =
    "INSERT INTO usage_batch (first_seq, n, min_start, max_start, tenants, functions, data, foff,"
    " flen) VALUES (?,?,?,?,?,?,zeroblob(0),?,?)";

static const char *const upsert_sql =
    "INSERT INTO usage_month (tenant, month, memory, requests, billed_ms, bytes_out)"
    " VALUES (?,?,?,?,?,?) ON CONFLICT (tenant, month, memory) DO UPDATE SET"
    " requests = requests + excluded.requests, billed_ms = billed_ms + excluded.billed_ms,"
    " bytes_out = bytes_out + excluded.bytes_out";

static const char *const setpos_sql =
    "INSERT OR REPLACE INTO journal (id, gen, off) VALUES (1,?,?)";

static int db_open(const char *path, sqlite3 **out, mxu_err *err)
{
    sqlite3 *db = NULL;
    /* NOMUTEX: each connection is used by one thread only (the writer's by
     * the writer, the other by the loop), so SQLite's per-call locking is
     * pure cost on the ingest path. */
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                        NULL) != SQLITE_OK) {
        mxu_err_set(err, EIO, "cannot open %s: %s", path, db ? sqlite3_errmsg(db) : "no memory");
        sqlite3_close(db);
        return -1;
    }
    sqlite3_busy_timeout(db, 5000);
    char *emsg = NULL;
    /* synchronous=FULL: a commit returns after the WAL is fsynced; the
     * journal's position moves with it, so nothing is dropped from the
     * journal that is not durable here. 4 KiB pages: the rows are small
     * (their frames are in usage.frames), and every page a commit touches
     * is written whole to the WAL, so a node under light load (a commit
     * per record or two) writes ~15 KB per record, not ~43 KB as with
     * 16 KiB pages. A usage.db made before keeps its page size. */
    if (sqlite3_exec(db, "PRAGMA page_size=4096; PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;",
                     NULL, NULL, &emsg) != SQLITE_OK) {
        mxu_err_set(err, EIO, "%s: %s", path, emsg ? emsg : "cannot set WAL mode");
        sqlite3_free(emsg);
        sqlite3_close(db);
        return -1;
    }
    *out = db;
    return 0;
}

/* ---- ingesting: journal frames into usage.db (writer thread; replay) ---- */

static const char *col_text(sqlite3_stmt *st, int i)
{
    const char *s = (const char *)sqlite3_column_text(st, i);
    return s ? s : "";
}

static uint64_t thread_cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void names_clear(names *s)
{
    for (size_t i = 0; i < s->n; i++)
        free(s->v[i]);
    s->n = s->last = 0;
    s->overflow = false;
}

static void names_add(names *s, const char *x)
{
    /* A batch mostly names one tenant and a few functions: the last hit
     * first. */
    if (s->overflow || (s->n && strcmp(s->v[s->last], x) == 0))
        return;
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->v[i], x) == 0) {
            s->last = i;
            return;
        }
    if (s->n == NAMES_MAX) {
        s->overflow = true; /* the row then matches every name */
        return;
    }
    s->v[s->n] = mxu_strdup(x);
    s->last = s->n++;
}

/* "\na\nb\n": a name matches if "\nname\n" occurs in it. A name holding a
 * newline may match a row that lacks it; the records are filtered exactly
 * after decoding, so that only costs a decode. */
static void names_text(const names *s, mxu_buf *out)
{
    mxu_buf_reset(out);
    mxu_buf_puts(out, "\n");
    for (size_t i = 0; i < s->n; i++) {
        mxu_buf_puts(out, s->v[i]);
        mxu_buf_puts(out, "\n");
    }
}

static uint64_t sum_hash(const char *tenant, uint64_t month, uint64_t memory)
{
    uint64_t h = 1469598103934665603ull;
    for (const unsigned char *p = (const unsigned char *)tenant; *p; p++)
        h = (h ^ *p) * 1099511628211ull;
    h ^= month * 0x9e3779b97f4a7c15ull;
    h ^= memory * 0xc2b2ae3d27d4eb4full;
    return h ^ (h >> 29);
}

/* The sum a record of `tenant` in `month` with `memory` adds to: an open
 * hash table of the transaction's sums, doubled at half load. */
static month_sum *sum_slot(ingest_ctx *c, const char *tenant, uint64_t month, uint64_t memory)
{
    if (c->last && c->last->month == month && c->last->memory == memory &&
        strcmp(c->last->tenant, tenant) == 0)
        return c->last;
    if (2 * (c->nsums + 1) > c->capsums) {
        size_t cap = c->capsums ? 2 * c->capsums : 64;
        month_sum *old = c->sums;
        size_t oldcap = c->capsums;
        c->sums = mxu_calloc(cap, sizeof(*c->sums));
        c->capsums = cap;
        for (size_t i = 0; i < oldcap; i++) {
            if (old[i].tenant == NULL)
                continue;
            size_t j = sum_hash(old[i].tenant, old[i].month, old[i].memory) & (cap - 1);
            while (c->sums[j].tenant)
                j = (j + 1) & (cap - 1);
            c->sums[j] = old[i];
        }
        free(old);
    }
    size_t j = sum_hash(tenant, month, memory) & (c->capsums - 1);
    while (c->sums[j].tenant) {
        month_sum *s = &c->sums[j];
        if (s->month == month && s->memory == memory && strcmp(s->tenant, tenant) == 0)
            return c->last = s;
        j = (j + 1) & (c->capsums - 1);
    }
    month_sum *s = &c->sums[j];
    *s = (month_sum){.tenant = mxu_strdup(tenant), .month = month, .memory = memory};
    c->nsums++;
    return c->last = s;
}

static void sums_clear(ingest_ctx *c)
{
    for (size_t i = 0; i < c->capsums; i++) {
        free(c->sums[i].tenant);
        c->sums[i] = (month_sum){0};
    }
    c->nsums = 0;
    c->last = NULL;
}

/* The month a record's start falls in, as usage_month keys it (its first
 * ms). The writer's records are mostly of the current month: cached. */
static uint64_t month_key(ingest_ctx *c, uint64_t start_ms)
{
    if (!(c->month_hi && start_ms >= c->month_lo && start_ms < c->month_hi) &&
        mxu_month_of(start_ms, &c->month_lo, &c->month_hi) < 0) {
        /* Past the year 9999: a bucket of its own ms, so that a bill over
         * any range still finds it exactly (mxu_meter_bill_usage). */
        c->month_lo = start_ms;
        c->month_hi = start_ms + 1;
    }
    return c->month_lo;
}

/* mxu_journal_scan's callback: one record into the batch row and the sums.
 * A full row stops the scan before the record; ingest_frames writes the row
 * out and scans on from there. */
static int add_record(void *ud, const mxu_usage_record *r)
{
    ingest_ctx *c = ud;
    if (c->bn == BATCH_RECORDS)
        return -1;
    if (c->bn == 0 || r->start_ms < c->min_start)
        c->min_start = r->start_ms;
    if (c->bn == 0 || r->start_ms > c->max_start)
        c->max_start = r->start_ms;
    names_add(&c->tenants, r->tenant);
    names_add(&c->functions, r->function);
    /* Rejected invocations never ran and are not billed (docs/metering.md). */
    if (r->status != MXU_USAGE_REJECTED) {
        month_sum *s = sum_slot(c, r->tenant, month_key(c, r->start_ms), r->memory_bytes);
        s->requests++;
        s->billed_ms += r->billed_ms;
        s->bytes_out += r->bytes_out;
    }
    c->bn++;
    return 0;
}

static int step_done(ingest_ctx *c, sqlite3_stmt *st)
{
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    if (rc != SQLITE_DONE) {
        snprintf(c->why, sizeof(c->why), "%s", sqlite3_errmsg(c->m->wdb));
        return -1;
    }
    return 0;
}

static void bind_names(sqlite3_stmt *st, int i, const names *s, mxu_buf *text)
{
    if (s->overflow) {
        sqlite3_bind_null(st, i);
        return;
    }
    names_text(s, text);
    sqlite3_bind_text(st, i, text->data, (int)text->len, SQLITE_STATIC);
}

/* The batch row built so far into usage_batch. */
static int flush_batch(ingest_ctx *c)
{
    if (c->bn == 0)
        return 0;
    sqlite3_stmt *st = c->m->ins;
    _cleanup_buf_ mxu_buf tenants = {0}, functions = {0};
    sqlite3_bind_int64(st, 1, (sqlite3_int64)c->seq);
    sqlite3_bind_int64(st, 2, c->bn);
    sqlite3_bind_int64(st, 3, (sqlite3_int64)c->min_start);
    sqlite3_bind_int64(st, 4, (sqlite3_int64)c->max_start);
    bind_names(st, 5, &c->tenants, &tenants);
    bind_names(st, 6, &c->functions, &functions);
    /* The frames go to usage.frames, not into the row: SQLite would write
     * them twice (its WAL, then the database), ~0.1 us per record. */
    mxu_meter *m = c->m;
    if (mxu_pwrite_all(m->frames_fd, c->blob.data, c->blob.len, m->frames_end) < 0) {
        snprintf(c->why, sizeof(c->why), "usage.frames: %s", strerror(errno));
        return -1;
    }
    sqlite3_bind_int64(st, 7, (sqlite3_int64)m->frames_end);
    sqlite3_bind_int64(st, 8, (sqlite3_int64)c->blob.len);
    if (step_done(c, st) < 0)
        return -1;
    m->frames_end += c->blob.len;
    c->seq += c->bn;
    c->n += c->bn;
    c->bn = 0;
    mxu_buf_reset(&c->blob);
    names_clear(&c->tenants);
    names_clear(&c->functions);
    c->rows++;
    return 0;
}

/* The frames of data[0, len) into batch rows (a row is written each time
 * one fills; the last stays open until ingest_commit). *scanned: how much of
 * data was valid. */
static int ingest_frames(ingest_ctx *c, const char *data, size_t len, uint64_t lap, bool verify,
                         size_t *scanned)
{
    size_t off = 0;
    for (;;) {
        size_t k = mxu_journal_scan(data + off, len - off, lap, verify, add_record, c);
        mxu_buf_append(&c->blob, data + off, k);
        off += k;
        if (c->bn < BATCH_RECORDS)
            break; /* the end, or a torn frame */
        if (flush_batch(c) < 0)
            return -1;
    }
    *scanned = off;
    return 0;
}

static int set_position(ingest_ctx *c, uint64_t gen, uint64_t off)
{
    sqlite3_stmt *st = c->m->setpos;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)gen);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)off);
    return step_done(c, st);
}

static int tx(ingest_ctx *c, const char *sql)
{
    if (sqlite3_exec(c->m->wdb, sql, NULL, NULL, NULL) != SQLITE_OK) {
        snprintf(c->why, sizeof(c->why), "%s", sqlite3_errmsg(c->m->wdb));
        return -1;
    }
    return 0;
}

static void ingest_free(ingest_ctx *c)
{
    names_clear(&c->tenants);
    names_clear(&c->functions);
    sums_clear(c);
    free(c->sums);
    mxu_buf_free(&c->blob);
}

/* Forget what the open transaction built (after a commit or a rollback). */
static void ingest_reset(ingest_ctx *c)
{
    c->bn = 0;
    c->n = 0;
    c->rows = 0;
    mxu_buf_reset(&c->blob);
    names_clear(&c->tenants);
    names_clear(&c->functions);
    sums_clear(c);
    c->seq = c->m->next_seq;
    /* Frames of a transaction that did not commit are overwritten. */
    c->m->frames_end = c->m->frames_committed;
}

static int ingest_begin(ingest_ctx *c)
{
    c->why[0] = '\0';
    ingest_reset(c);
    return tx(c, "BEGIN");
}

/* The open row, the sums and the journal position (gen 0: none), then the
 * commit. On failure everything is rolled back and nothing is counted. */
static int ingest_commit(ingest_ctx *c, uint64_t gen, uint64_t off)
{
    if (flush_batch(c) < 0)
        goto rollback;
    sqlite3_stmt *st = c->m->upsert;
    for (size_t i = 0; i < c->capsums; i++) {
        const month_sum *s = &c->sums[i];
        if (s->tenant == NULL)
            continue;
        sqlite3_bind_text(st, 1, s->tenant, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, (sqlite3_int64)s->month);
        sqlite3_bind_int64(st, 3, (sqlite3_int64)s->memory);
        sqlite3_bind_int64(st, 4, (sqlite3_int64)s->requests);
        sqlite3_bind_int64(st, 5, (sqlite3_int64)s->billed_ms);
        sqlite3_bind_int64(st, 6, (sqlite3_int64)s->bytes_out);
        if (step_done(c, st) < 0)
            goto rollback;
    }
    /* The rows' frames are on disk before the rows are. */
    mxu_meter *m = c->m;
    if (m->frames_end != m->frames_committed && fdatasync(m->frames_fd) < 0) {
        snprintf(c->why, sizeof(c->why), "usage.frames: %s", strerror(errno));
        goto rollback;
    }
    if ((gen && set_position(c, gen, off) < 0) || tx(c, "COMMIT") < 0)
        goto rollback;
    m->frames_committed = m->frames_end;
    c->m->next_seq = c->seq;
    sums_clear(c);
    return 0;
rollback:
    sqlite3_exec(c->m->wdb, "ROLLBACK", NULL, NULL, NULL);
    return -1;
}

/* One writer cycle: every chunk in `list` (one batch row, or more if they
 * hold more than BATCH_RECORDS) and the position after the last, in one
 * transaction. */
static int ingest_list(mxu_meter *m, item *list, uint64_t *n, uint64_t *rows, char *why,
                       size_t whylen)
{
    ingest_ctx *c = &m->ic;
    uint64_t gen = 0, end = 0;
    for (item *it = list; it; it = it->next)
        if (!it->sync) {
            gen = it->gen;
            end = it->end;
        }
    *n = *rows = 0;
    if (gen == 0)
        return 0; /* syncs only: everything before them is in already */
    if (ingest_begin(c) < 0)
        goto fail;
    for (item *it = list; it; it = it->next) {
        if (it->sync)
            continue;
        size_t scanned;
        if (ingest_frames(c, it->data, it->len, 0, false, &scanned) < 0) {
            sqlite3_exec(m->wdb, "ROLLBACK", NULL, NULL, NULL);
            goto fail;
        }
        if (scanned != it->len) /* cannot happen: the loop framed them */
            mxu_error("usage journal: a chunk of lap %llu does not scan (%zu of %zu bytes)",
                      (unsigned long long)it->gen, scanned, it->len);
    }
    uint64_t count = c->n + c->bn, nrows = c->rows + (c->bn > 0);
    if (ingest_commit(c, gen, end) < 0)
        goto fail;
    *n = count;
    *rows = nrows;
    /* The ring's space up to here can be used again. */
    atomic_store_explicit(&m->committed, gen * m->ring.size + end, memory_order_release);
    return 0;
fail:
    snprintf(why, whylen, "%s", c->why);
    ingest_reset(c);
    return -1;
}

static void writer_main(void *arg)
{
    mxu_meter *m = arg;
    /* Named, so top -H and perf tell its CPU from the loop's. */
    pthread_setname_np(pthread_self(), "usage-writer");
    /* The ring's pages, mapped writable before the loop stores into them
     * (once per start; they stay mapped). */
    mxu_ring_prefault(&m->ring);
    uv_mutex_lock(&m->mu);
    for (;;) {
        /* Wait for the interval to pass over the oldest waiting chunk, or
         * for a sync, a large backlog, or the stop. */
        while (!m->stop && !m->urgent) {
            if (m->queue.head == NULL) {
                uv_cond_wait(&m->cv, &m->mu);
                continue;
            }
            uint64_t now = mxu_now_ns(), due = m->queue_since_ns + m->ingest_ns;
            if (now >= due)
                break;
            uv_cond_timedwait(&m->cv, &m->mu, due - now);
        }
        m->urgent = false;
        if (m->queue.head == NULL) {
            if (m->stop)
                break;
            continue;
        }
        item *list = m->queue.head;
        ilist_init(&m->queue);
        m->queue_bytes = 0;
        uv_mutex_unlock(&m->mu);

        uint64_t t0 = mxu_now_ns(), c0 = thread_cpu_ns(), n = 0, rows = 0;
        char why[256];
        unsigned tries = 0;
        while (ingest_list(m, list, &n, &rows, why, sizeof(why)) < 0) {
            /* Disk full, I/O error: the records are safe in the journal and
             * queries wait; retry, and say why. */
            tries++;
            mxu_error("usage records: cannot ingest into usage.db: %s (try %u; the records are "
                      "in the journal, queries wait)",
                      why, tries);
            uv_mutex_lock(&m->mu);
            m->failures++;
            bool stopping = m->stop;
            uv_mutex_unlock(&m->mu);
            if (stopping && tries >= 3)
                break; /* replayed from the journal at the next start */
            uv_sleep(MXU_MIN(100u * tries, 2000u));
        }
        uint64_t dt = mxu_now_ns() - t0, dc = thread_cpu_ns() - c0;
        ilist done;
        ilist_init(&done);
        while (list) {
            item *next = list->next;
            if (list->sync)
                ilist_push(&done, list);
            else
                free(list);
            list = next;
        }
        uv_mutex_lock(&m->mu);
        m->ingested += n;
        m->writer_cpu_ns = thread_cpu_ns();
        if (n) {
            m->batches++;
            m->rows += rows;
            m->commit_ns += dt;
            m->commit_cpu_ns += dc;
            if (n > m->max_batch)
                m->max_batch = n;
        }
        /* The loop waits for ring space, or syncs for their records. */
        if (done.head || (n && m->ring_waiting)) {
            ilist_splice(&m->done, &done);
            uv_async_send(&m->async);
        }
    }
    uv_mutex_unlock(&m->mu);
}

/* ---- the loop side ---- */

static void sync_unlink_timed(item *s)
{
    if (s->tprev == NULL)
        return;
    *s->tprev = s->tnext;
    if (s->tnext)
        s->tnext->tprev = s->tprev;
    s->tprev = NULL;
    s->tnext = NULL;
}

static void sync_fire(item *s, bool ok)
{
    if (s->fired)
        return;
    s->fired = true;
    sync_unlink_timed(s);
    if (s->cb)
        s->cb(s->ud, ok);
    else if (s->flush_cb)
        s->flush_cb(s->ud);
}

static void run_done(mxu_meter *m)
{
    uv_mutex_lock(&m->mu);
    item *s = m->done.head;
    ilist_init(&m->done);
    uv_mutex_unlock(&m->mu);
    while (s) {
        item *next = s->next;
        sync_fire(s, true);
        free(s);
        s = next;
    }
}

static void write_out(mxu_meter *m);

static void on_async(uv_async_t *a)
{
    mxu_meter *m = a->data;
    run_done(m);
    if (m->failing && m->ring_full) { /* the writer has freed ring space */
        uv_timer_stop(&m->retry);
        m->failing = false;
        write_out(m);
    }
}

/* Move what of the batch is in the ring to the writer, and the syncs
 * behind it once all of it is; what is not in yet stays. */
static void hand_over(mxu_meter *m)
{
    size_t n = m->written;
    item *chunk = NULL;
    if (n) {
        chunk = mxu_malloc(sizeof(*chunk) + n);
        memset(chunk, 0, sizeof(*chunk));
        chunk->gen = m->gen;
        chunk->end = m->end;
        chunk->len = n;
        memcpy(chunk->data, m->batch.data, n);
        memmove(m->batch.data, m->batch.data + n, m->batch.len - n);
        m->batch.len -= n;
        m->written = 0;
        /* Callbacks still waiting: those of records a callback recorded
         * since, already in (0: released next), or still pending. */
        for (size_t i = 0; i < m->nrel; i++)
            m->rel[i].upto = m->rel[i].upto > n ? m->rel[i].upto - n : 0;
    }
    bool all = m->batch.len == 0;
    bool syncs = all && m->syncs.head != NULL;
    uv_mutex_lock(&m->mu);
    bool was_empty = m->queue.head == NULL;
    if (chunk) {
        ilist_push(&m->queue, chunk);
        m->queue_bytes += chunk->len;
    }
    if (syncs)
        ilist_splice(&m->queue, &m->syncs);
    if (was_empty)
        m->queue_since_ns = mxu_now_ns();
    /* A full ring waits for the writer: it ingests at once. */
    bool urgent = syncs || m->ring_full || m->queue_bytes >= URGENT_BYTES;
    if (urgent)
        m->urgent = true;
    m->ring_waiting = m->ring_full;
    /* The writer sleeps without a deadline only on an empty queue. */
    if (was_empty || urgent)
        uv_cond_signal(&m->cv);
    uv_mutex_unlock(&m->mu);
}

static void on_prepare(uv_prepare_t *h);
static void on_retry(uv_timer_t *t);
static void write_out(mxu_meter *m);

/* Whether n bytes fit at the ring's write position without overwriting a
 * record of the last lap that usage.db does not hold yet. */
static bool ring_room(mxu_meter *m, size_t n)
{
    uint64_t need = m->gen * m->ring.size + m->end + n;
    if (need <= m->limit)
        return true;
    m->limit = atomic_load_explicit(&m->committed, memory_order_acquire) + m->ring.size;
    return need <= m->limit;
}

/* Copy n bytes into the ring at the write position. */
static int ring_put(mxu_meter *m, const char *data, size_t n)
{
    if (m->ring.map) {
        memcpy(m->ring.map + m->end, data, n);
    } else {
        if (mxu_pwrite_all(m->ring.fd, data, n, m->end) < 0)
            return -1;
        m->writes++;
    }
    m->end += n;
    m->write_bytes += n;
    return 0;
}

/* Put the frames of batch[written, len) into the ring, in order: wrapping
 * to its start (a marker, the next lap) where one does not fit before its
 * end. `sealed` says the pending frames were packed for the current lap
 * (else each is sealed again: it may have been packed before a wrap).
 * -1 with errno if the ring is full (ENOSPC: the writer is behind) or
 * cannot be written; what went in stays in. */
static int store_pending(mxu_meter *m, bool sealed)
{
    while (m->written < m->batch.len) {
        char *f = m->batch.data + m->written;
        size_t n = mxu_journal_frame_size(f);
        if (m->end + n > m->ring.size) {
            /* The next frame goes at the start, on the next lap. */
            if (m->ring.size - m->end >= 8) {
                char marker[8];
                if (!ring_room(m, 8)) {
                    m->ring_full = true;
                    errno = ENOSPC;
                    return -1;
                }
                mxu_journal_wrap_marker(marker, m->gen);
                if (ring_put(m, marker, sizeof(marker)) < 0)
                    return -1;
            }
            m->gen++;
            m->end = MXU_RING_HDR;
            sealed = false;
        }
        if (!ring_room(m, n)) {
            m->ring_full = true;
            errno = ENOSPC;
            return -1;
        }
        if (!sealed)
            mxu_journal_reseal(f, m->gen);
        if (ring_put(m, f, n) < 0)
            return -1;
        m->written += n;
    }
    m->ring_full = false;
    return 0;
}

/* Run the callbacks of the records in batch[0, upto), in order. They are
 * taken out first: they may record more. */
static void release_upto(mxu_meter *m, size_t upto)
{
    size_t k = 0;
    while (k < m->nrel && m->rel[k].upto <= upto)
        k++;
    if (k == 0)
        return;
    release *run = m->rel;
    size_t n = m->nrel, cap = m->caprel;
    m->rel = NULL;
    m->nrel = m->caprel = 0;
    if (k < n) { /* the rest wait on */
        m->caprel = n - k + 64;
        m->rel = mxu_malloc(m->caprel * sizeof(*m->rel));
        memcpy(m->rel, run + k, (n - k) * sizeof(*run));
        m->nrel = n - k;
    }
    for (size_t i = 0; i < k; i++)
        run[i].cb(run[i].ud, true);
    if (m->rel == NULL) { /* keep the array for the next turn */
        m->rel = run;
        m->caprel = cap;
    } else {
        free(run);
    }
}

/* Store what is pending, release the answers of what is in, hand it over;
 * again if releasing them recorded more. If the ring cannot take the rest
 * (full: the writer is behind; or not writable), those answers stay held:
 * the writer wakes the loop when it has freed space, and a timer retries
 * as well. */
static void write_out(mxu_meter *m)
{
    while (m->batch.len || m->nrel || m->syncs.head) {
        int rc = m->written < m->batch.len ? store_pending(m, false) : 0;
        int e = errno;
        release_upto(m, m->written);
        hand_over(m);
        if (rc < 0) {
            m->write_failures += e != ENOSPC;
            m->tries++;
            if (m->tries == 1 || m->tries % 50 == 0) {
                if (e == ENOSPC)
                    mxu_warn("usage records: the journal is full: usage.db is behind (answers "
                             "are held until the writer has caught up; try %u)",
                             m->tries);
                else
                    mxu_error("usage records: cannot write to the journal: %s (answers are "
                              "held until it works; try %u)",
                              strerror(e), m->tries);
            }
            m->failing = true;
            uv_prepare_stop(&m->prep);
            uv_timer_start(&m->retry, on_retry, MXU_MIN(100u * m->tries, 2000u), 0);
            return;
        }
        if (m->tries) {
            mxu_info("usage records: the journal takes records again");
            m->tries = 0;
        }
    }
    uv_prepare_stop(&m->prep);
}

static void on_prepare(uv_prepare_t *h)
{
    write_out(h->data);
}

static void on_retry(uv_timer_t *t)
{
    mxu_meter *m = t->data;
    m->failing = false;
    write_out(m);
}

static void want_write(mxu_meter *m)
{
    /* Idempotent; stopped again once the batch is out, so an idle node has
     * no per-turn cost. */
    if (!m->failing)
        uv_prepare_start(&m->prep, on_prepare);
}

void mxu_meter_set_observer(mxu_meter *m, mxu_meter_observer fn, void *ud)
{
    m->observer = fn;
    m->observer_ud = ud;
}

static void push_release(mxu_meter *m, mxu_meter_record_cb cb, void *ud)
{
    if (m->nrel == m->caprel) {
        m->caprel = m->caprel ? m->caprel * 2 : 64;
        m->rel = mxu_realloc(m->rel, m->caprel * sizeof(*m->rel));
    }
    m->rel[m->nrel++] = (release){cb, ud, m->batch.len};
}

bool mxu_meter_record(mxu_meter *m, const mxu_usage_record *r, mxu_meter_record_cb cb, void *ud)
{
    if (m->observer)
        m->observer(m->observer_ud, r);
    /* Records go into the journal in the order they are recorded: this one
     * goes in at once only if every one before it is in. */
    bool caught_up = m->written == m->batch.len && !m->failing;
    mxu_journal_append(&m->batch, r, m->gen);
    m->recorded++;
    bool stored = caught_up && m->ring.map && store_pending(m, true) == 0;
    if (cb)
        push_release(m, cb, ud);
    want_write(m); /* the hand-over to the writer, at the end of this turn */
    return stored;
}

void mxu_meter_when_written(mxu_meter *m, mxu_meter_record_cb cb, void *ud)
{
    push_release(m, cb, ud);
    want_write(m);
}

static void on_expire(uv_timer_t *t);

static void arm_expire(mxu_meter *m)
{
    uint64_t first = 0;
    for (item *s = m->timed; s; s = s->tnext)
        if (first == 0 || s->deadline_ns < first)
            first = s->deadline_ns;
    if (first == 0) {
        uv_timer_stop(&m->expire);
        return;
    }
    uint64_t now = mxu_now_ns();
    uv_timer_start(&m->expire, on_expire, first > now ? (first - now + 999999) / 1000000 : 0, 0);
}

static void on_expire(uv_timer_t *t)
{
    mxu_meter *m = t->data;
    uint64_t now = mxu_now_ns();
    item *s = m->timed;
    while (s) {
        item *next = s->tnext;
        if (s->deadline_ns <= now)
            sync_fire(s, false); /* the item stays with the writer until it is done */
        s = next;
    }
    arm_expire(m);
}

static item *sync_new(mxu_meter *m)
{
    item *s = mxu_calloc(1, sizeof(*s));
    s->sync = true;
    ilist_push(&m->syncs, s);
    want_write(m);
    return s;
}

void mxu_meter_flush(mxu_meter *m, mxu_meter_cb cb, void *ud)
{
    item *s = sync_new(m);
    s->flush_cb = cb;
    s->ud = ud;
}

void mxu_meter_sync(mxu_meter *m, uint64_t timeout_ms, mxu_meter_sync_cb cb, void *ud)
{
    item *s = sync_new(m);
    s->cb = cb;
    s->ud = ud;
    if (timeout_ms) {
        s->deadline_ns = mxu_now_ns() + timeout_ms * 1000000u;
        s->tnext = m->timed;
        if (m->timed)
            m->timed->tprev = &s->tnext;
        s->tprev = &m->timed;
        m->timed = s;
        arm_expire(m);
    }
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

/* ---- open: replay ---- */

static int read_position(mxu_meter *m, uint64_t *gen, uint64_t *off)
{
    sqlite3_stmt *st = NULL;
    *gen = *off = 0;
    if (sqlite3_prepare_v2(m->wdb, "SELECT gen, off FROM journal WHERE id = 1", -1, &st, NULL) !=
        SQLITE_OK)
        return -1;
    if (sqlite3_step(st) == SQLITE_ROW) {
        *gen = (uint64_t)sqlite3_column_int64(st, 0);
        *off = (uint64_t)sqlite3_column_int64(st, 1);
    }
    sqlite3_finalize(st);
    return 0;
}

/* The seq the next record gets: one past the last stored. */
static int read_next_seq(mxu_meter *m, mxu_err *err)
{
    sqlite3_stmt *st = NULL;
    m->next_seq = 1;
    if (sqlite3_prepare_v2(m->wdb,
                           "SELECT first_seq + n FROM usage_batch ORDER BY first_seq DESC"
                           " LIMIT 1",
                           -1, &st, NULL) != SQLITE_OK)
        return mxu_err_set(err, EIO, "usage.db: %s", sqlite3_errmsg(m->wdb));
    if (sqlite3_step(st) == SQLITE_ROW)
        m->next_seq = (uint64_t)sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return 0;
}

/* A usage.db of the format before batch rows (a `usage` table, a row per
 * record): its records go into batch rows and sums, in seq order, and the
 * table is dropped, in one transaction (a crash in between leaves the old
 * table whole, and this runs again). */
static int migrate_rows(mxu_meter *m, mxu_err *err)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(m->wdb,
                           "SELECT invocation, tenant, function, version, executor, start_ms,"
                           " wall_us, billed_ms, memory, cpu_us, peak_memory, bytes_in, bytes_out,"
                           " cold, status, http_status, code, caller, caller_function"
                           " FROM usage ORDER BY seq",
                           -1, &st, NULL) != SQLITE_OK)
        return 0; /* no such table: nothing to do */
    ingest_ctx *c = &m->ic;
    _cleanup_buf_ mxu_buf frame = {0};
    uint64_t count = 0;
    int rc;
    if (ingest_begin(c) < 0)
        goto fail;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        int i = 0;
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
        mxu_buf_reset(&frame);
        mxu_journal_append(&frame, &r, 0);
        size_t scanned;
        if (ingest_frames(c, frame.data, frame.len, 0, false, &scanned) < 0)
            goto rollback;
        count++;
    }
    if (rc != SQLITE_DONE) {
        snprintf(c->why, sizeof(c->why), "%s", sqlite3_errmsg(m->wdb));
        goto rollback;
    }
    sqlite3_finalize(st);
    st = NULL;
    if (tx(c, "DROP TABLE usage") < 0)
        goto rollback;
    if (ingest_commit(c, 0, 0) < 0)
        goto fail;
    mxu_info("usage.db: %llu record(s) moved into batch rows", (unsigned long long)count);
    return 0;
rollback:
    sqlite3_exec(m->wdb, "ROLLBACK", NULL, NULL, NULL);
fail:
    sqlite3_finalize(st);
    mxu_err_set(err, EIO, "usage.db: cannot move the old usage table into batch rows: %s", c->why);
    ingest_reset(c);
    return -1;
}

/* Ingest what segment `gen` holds past `from`, and move the position to its
 * valid end (one transaction). */
static int replay_segment(mxu_meter *m, uint64_t gen, uint64_t from, mxu_err *err)
{
    _cleanup_buf_ mxu_buf data = {0};
    mxu_err rerr;
    if (mxu_journal_read(m->dir, gen, &data, &rerr) < 0) {
        /* A segment no longer than its header (power loss while it was
         * made) can hold no record that was answered: skip it. Anything
         * else unreadable may hold answered records, and replay() drops the
         * segments it has been through: refuse to start instead. */
        struct stat st;
        _cleanup_free_ char *path = mxu_journal_path(m->dir, gen);
        if (stat(path, &st) == 0 && st.st_size <= MXU_JOURNAL_HDR) {
            mxu_warn("usage journal: skipping segment %llu: %s", (unsigned long long)gen, rerr.msg);
            return 0;
        }
        return mxu_err_set(err, EIO,
                           "usage journal segment %s cannot be read (%s); it may hold "
                           "answered usage records, so the node will not start without it",
                           path, rerr.msg);
    }
    if (from < MXU_JOURNAL_HDR)
        from = MXU_JOURNAL_HDR;
    if (from >= data.len)
        return 0;
    ingest_ctx *c = &m->ic;
    size_t scanned = 0;
    if (ingest_begin(c) < 0)
        goto fail;
    if (ingest_frames(c, data.data + from, data.len - from, 0, true, &scanned) < 0) {
        sqlite3_exec(m->wdb, "ROLLBACK", NULL, NULL, NULL);
        goto fail;
    }
    uint64_t count = c->n + c->bn;
    if (ingest_commit(c, gen, from + scanned) < 0)
        goto fail;
    m->replayed += count;
    /* The zeros after the data are the segment's preallocated room. */
    size_t dend = mxu_journal_data_end(data.data, data.len);
    if (from + scanned < dend) {
        m->cut += dend - from - scanned;
        mxu_warn("usage journal: segment %llu: cut %zu byte(s) of torn or corrupt tail at offset "
                 "%llu (records never answered)",
                 (unsigned long long)gen, dend - from - scanned,
                 (unsigned long long)(from + scanned));
    }
    if (count)
        mxu_info("usage journal: replayed %llu record(s) from segment %llu",
                 (unsigned long long)count, (unsigned long long)gen);
    return 0;
fail:
    mxu_err_set(err, EIO, "usage journal: cannot replay segment %llu into usage.db: %s",
                (unsigned long long)gen, c->why);
    ingest_reset(c);
    return -1;
}

/* The ring's records from (lap, off) on, through its wraps, go into
 * usage.db (a node killed with -9 leaves records it stored but never
 * ingested), up to the first frame that is torn, stale or corrupt; the
 * loop goes on writing there. */
static int replay_ring(mxu_meter *m, uint64_t lap, uint64_t off, mxu_err *err)
{
    const uint64_t size = m->ring.size;
    _cleanup_buf_ mxu_buf copy = {0};
    const char *base = m->ring.map;
    if (base == NULL) {
        mxu_buf_reserve(&copy, size);
        if (mxu_pread_all(m->ring.fd, copy.data, size, 0) < 0)
            return mxu_err_set(err, EIO, "usage journal: cannot read the ring: %s",
                               strerror(errno));
        base = copy.data;
    }
    if (off < MXU_RING_HDR || off > size)
        return mxu_err_set(err, EINVAL,
                           "usage journal: usage.db's position %llu:%llu is not in the ring "
                           "(%llu bytes)",
                           (unsigned long long)lap, (unsigned long long)off,
                           (unsigned long long)size);
    ingest_ctx *c = &m->ic;
    if (ingest_begin(c) < 0)
        goto fail;
    /* At most a lap's worth: the loop never writes more ahead of usage.db. */
    for (uint64_t total = 0; total <= size;) {
        if (size - off < 8) { /* no room for a marker: the next lap, implicitly */
            lap++;
            off = MXU_RING_HDR;
            continue;
        }
        size_t scanned;
        if (ingest_frames(c, base + off, size - off, lap, true, &scanned) < 0) {
            sqlite3_exec(m->wdb, "ROLLBACK", NULL, NULL, NULL);
            goto fail;
        }
        off += scanned;
        total += scanned + 8;
        if (!mxu_journal_is_wrap(base + off, size - off, lap))
            break;
        lap++;
        off = MXU_RING_HDR;
    }
    uint64_t count = c->n + c->bn;
    if (ingest_commit(c, lap, off) < 0)
        goto fail;
    m->replayed += count;
    if (count)
        mxu_info("usage journal: replayed %llu record(s)", (unsigned long long)count);
    m->gen = lap;
    m->end = off;
    atomic_store(&m->committed, lap * size + off);
    m->limit = lap * size + off + size;
    return 0;
fail:
    mxu_err_set(err, EIO, "usage journal: cannot replay the ring into usage.db: %s", c->why);
    ingest_reset(c);
    return -1;
}

/* The records a killed node wrote but never ingested go in: first those of
 * segment files older nodes wrote (then the files go), then the ring's
 * (made, the first time, with its first lap above every segment's). Every
 * step is safe to repeat if the node dies in the middle. */
static int replay(mxu_meter *m, mxu_err *err)
{
    uint64_t pos_gen, pos_off;
    if (read_position(m, &pos_gen, &pos_off) < 0)
        return mxu_err_set(err, EIO, "usage.db: %s", sqlite3_errmsg(m->wdb));
    _cleanup_free_ uint64_t *gens = NULL;
    size_t n = 0;
    if (mxu_journal_list(m->dir, &gens, &n, err) < 0)
        return -1;
    uint64_t top = pos_gen;
    for (size_t i = 0; i < n; i++) {
        top = MXU_MAX(top, gens[i]);
        if (gens[i] < pos_gen)
            continue; /* ingested; removed below */
        if (replay_segment(m, gens[i], gens[i] == pos_gen ? pos_off : 0, err) < 0)
            return -1;
    }
    bool created;
    if (mxu_ring_open(m->dir, m->ring_bytes, top + 1, &m->ring, &created, err) < 0)
        return -1;
    uint64_t lap = m->ring.first_lap, off = MXU_RING_HDR;
    if (!created && pos_gen >= m->ring.first_lap) {
        lap = pos_gen;
        off = pos_off;
    }
    if (replay_ring(m, lap, off, err) < 0)
        return -1;
    /* usage.db's position is in the ring now: every segment is in. */
    for (size_t i = 0; i < n; i++) {
        _cleanup_free_ char *path = mxu_journal_path(m->dir, gens[i]);
        if (unlink(path) < 0 && errno != ENOENT)
            mxu_warn("usage journal: cannot remove %s: %s", path, strerror(errno));
    }
    return 0;
}

static uint64_t env_u64(const char *name, uint64_t min, uint64_t max, uint64_t dflt)
{
    const char *env = getenv(name);
    uint64_t v;
    if (env == NULL || mxu_parse_u64(env, &v) < 0 || v < min || v > max)
        return dflt;
    return v;
}

/* usage.frames next to usage.db, and the columns that point into it (a
 * usage.db made before it gets them). What a writer appended but never
 * committed (a node killed in between) is cut: the rows say where the
 * frames end. */
static int open_frames(mxu_meter *m, mxu_err *err)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(m->db, "SELECT foff, flen FROM usage_batch LIMIT 0", -1, &st, NULL) !=
        SQLITE_OK) {
        char *emsg = NULL;
        if (sqlite3_exec(m->db,
                         "ALTER TABLE usage_batch ADD COLUMN foff INTEGER;"
                         "ALTER TABLE usage_batch ADD COLUMN flen INTEGER;",
                         NULL, NULL, &emsg) != SQLITE_OK) {
            mxu_err_set(err, EIO, "usage.db: %s", emsg ? emsg : "cannot add columns");
            sqlite3_free(emsg);
            return -1;
        }
    }
    sqlite3_finalize(st);
    st = NULL;
    if (sqlite3_prepare_v2(m->db, "SELECT max(foff + flen) FROM usage_batch", -1, &st, NULL) !=
        SQLITE_OK)
        return mxu_err_set(err, EIO, "usage.db: %s", sqlite3_errmsg(m->db));
    if (sqlite3_step(st) == SQLITE_ROW)
        m->frames_end = (uint64_t)sqlite3_column_int64(st, 0); /* NULL: 0 */
    sqlite3_finalize(st);
    m->frames_committed = m->frames_end;
    _cleanup_free_ char *path = mxu_path_join(m->dir, "usage.frames");
    m->frames_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (m->frames_fd < 0)
        return mxu_err_set(err, errno, "cannot open %s: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(m->frames_fd, &sb) < 0)
        return mxu_err_set(err, errno, "%s: %s", path, strerror(errno));
    if ((uint64_t)sb.st_size < m->frames_end)
        return mxu_err_set(err, EIO,
                           "%s holds %llu bytes but usage.db's rows need %llu: usage.db and "
                           "usage.frames belong together (restore both)",
                           path, (unsigned long long)sb.st_size, (unsigned long long)m->frames_end);
    if ((uint64_t)sb.st_size > m->frames_end &&
        (ftruncate(m->frames_fd, (off_t)m->frames_end) < 0 || fsync(m->frames_fd) < 0))
        return mxu_err_set(err, errno, "%s: %s", path, strerror(errno));
    return 0;
}

int mxu_meter_open(uv_loop_t *loop, const char *path, mxu_prices *prices, mxu_meter **out,
                   mxu_err *err)
{
    mxu_meter *m = mxu_calloc(1, sizeof(*m));
    m->loop = loop;
    m->ring = (mxu_ring){.fd = -1};
    m->frames_fd = -1;
    ilist_init(&m->queue);
    ilist_init(&m->done);
    ilist_init(&m->syncs);
    /* Tests stretch the interval to kill a node between a record's write
     * and its ingestion; otherwise the default bounds what a machine crash
     * loses. */
    m->ingest_ns = env_u64("MXU_METER_INGEST_MS", 1, 3600000, DEFAULT_INGEST_MS) * 1000000u;
    m->ring_bytes = env_u64("MXU_METER_RING_BYTES", MXU_RING_MIN, UINT32_MAX, DEFAULT_RING_BYTES);
    const char *slash = strrchr(path, '/');
    m->dir = slash ? mxu_strndup(path, (size_t)(slash - path) + (slash == path)) : mxu_strdup(".");
    if (db_open(path, &m->db, err) < 0)
        goto fail;
    char *emsg = NULL;
    if (sqlite3_exec(m->db, schema, NULL, NULL, &emsg) != SQLITE_OK) {
        mxu_err_set(err, EIO, "%s: %s", path, emsg ? emsg : "cannot create tables");
        sqlite3_free(emsg);
        goto fail;
    }
    if (open_frames(m, err) < 0 || db_open(path, &m->wdb, err) < 0)
        goto fail;
    if (sqlite3_prepare_v3(m->wdb, insert_sql, -1, SQLITE_PREPARE_PERSISTENT, &m->ins, NULL) !=
            SQLITE_OK ||
        sqlite3_prepare_v3(m->wdb, upsert_sql, -1, SQLITE_PREPARE_PERSISTENT, &m->upsert, NULL) !=
            SQLITE_OK ||
        sqlite3_prepare_v3(m->wdb, setpos_sql, -1, SQLITE_PREPARE_PERSISTENT, &m->setpos, NULL) !=
            SQLITE_OK) {
        mxu_err_set(err, EIO, "%s: %s", path, sqlite3_errmsg(m->wdb));
        goto fail;
    }
    m->ic.m = m;
    if (read_next_seq(m, err) < 0 || migrate_rows(m, err) < 0 || replay(m, err) < 0)
        goto fail;
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
    uv_prepare_init(loop, &m->prep);
    uv_timer_init(loop, &m->retry);
    uv_timer_init(loop, &m->expire);
    m->async.data = m->prep.data = m->retry.data = m->expire.data = m;
    m->open_handles = 4;
    /* Neither keeps the loop alive: a held answer's connection does. */
    uv_unref((uv_handle_t *)&m->prep);
    uv_unref((uv_handle_t *)&m->expire);
    if (uv_thread_create(&m->thread, writer_main, m) != 0) {
        mxu_err_set(err, EAGAIN, "cannot start the usage writer thread");
        /* m is leaked on purpose: the handles' memory must outlive the close. */
        uv_close((uv_handle_t *)&m->async, NULL);
        uv_close((uv_handle_t *)&m->prep, NULL);
        uv_close((uv_handle_t *)&m->retry, NULL);
        uv_close((uv_handle_t *)&m->expire, NULL);
        return -1;
    }
    *out = m;
    return 0;
fail:
    mxu_prices_free(prices);
    mxu_ring_close(&m->ring);
    if (m->frames_fd >= 0)
        close(m->frames_fd);
    sqlite3_finalize(m->ins);
    sqlite3_finalize(m->upsert);
    sqlite3_finalize(m->setpos);
    ingest_free(&m->ic);
    sqlite3_close(m->wdb);
    sqlite3_close(m->db);
    free(m->dir);
    free(m);
    return -1;
}

static void on_handle_closed(uv_handle_t *h)
{
    mxu_meter *m = h->data;
    if (--m->open_handles == 0)
        free(m);
}

void mxu_meter_close(mxu_meter *m)
{
    if (m == NULL)
        return;
    /* What was recorded since the last loop turn (the scheduler's last
     * records): written, and its answers released, before the writer stops. */
    m->failing = false;
    write_out(m);
    /* A full ring waits for the writer, which is still running: give it a
     * second to make room (it fails on only if usage.db cannot be written). */
    for (int i = 0; i < 100 && m->ring_full && m->written < m->batch.len; i++) {
        uv_sleep(10);
        m->failing = false;
        write_out(m);
    }
    if (m->batch.len > m->written)
        mxu_error("usage records: %zu byte(s) of records could not be written to the journal",
                  m->batch.len - m->written);
    /* Only after a failed write: the records are lost, and the answers
     * held for them must not leave as if they were recorded. */
    for (size_t i = 0; i < m->nrel; i++)
        m->rel[i].cb(m->rel[i].ud, false);
    while (m->syncs.head) {
        item *s = m->syncs.head;
        m->syncs.head = s->next;
        sync_fire(s, false);
        free(s);
    }
    uv_mutex_lock(&m->mu);
    m->stop = true;
    uv_cond_signal(&m->cv);
    uv_mutex_unlock(&m->mu);
    uv_thread_join(&m->thread);
    run_done(m); /* everything ingested: the syncs still waiting fire */
    sqlite3_finalize(m->ins);
    sqlite3_finalize(m->upsert);
    sqlite3_finalize(m->setpos);
    ingest_free(&m->ic);
    sqlite3_close(m->wdb);
    sqlite3_close(m->db);
    mxu_prices_free(m->prices);
    uv_mutex_destroy(&m->mu);
    uv_cond_destroy(&m->cv);
    mxu_ring_close(&m->ring);
    if (m->frames_fd >= 0)
        close(m->frames_fd);
    mxu_buf_free(&m->batch);
    free(m->rel);
    free(m->dir);
    uv_close((uv_handle_t *)&m->async, on_handle_closed);
    uv_close((uv_handle_t *)&m->prep, on_handle_closed);
    uv_close((uv_handle_t *)&m->retry, on_handle_closed);
    uv_close((uv_handle_t *)&m->expire, on_handle_closed);
}

json_t *mxu_meter_stats_json(const mxu_meter *m)
{
    mxu_meter *mm = (mxu_meter *)m;
    uv_mutex_lock(&mm->mu);
    json_t *j = json_pack(
        "{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "queued",
        (json_int_t)m->recorded, "committed", (json_int_t)m->ingested, "batches",
        (json_int_t)m->batches, "max_batch", (json_int_t)m->max_batch, "commit_us_avg",
        (json_int_t)(m->batches ? m->commit_ns / m->batches / 1000 : 0), "commit_cpu_us_avg",
        (json_int_t)(m->batches ? m->commit_cpu_ns / m->batches / 1000 : 0), "write_failures",
        (json_int_t)(m->failures + m->write_failures), "journal_writes", (json_int_t)m->writes,
        "journal_bytes", (json_int_t)m->write_bytes, "journal_lap", (json_int_t)m->gen, "replayed",
        (json_int_t)m->replayed, "cut_bytes", (json_int_t)m->cut, "ingest_interval_ms",
        (json_int_t)(m->ingest_ns / 1000000));
    /* The figure docs/metering.md budgets: the writer's CPU per record. */
    json_object_set_new(j, "rows", json_integer((json_int_t)m->rows));
    json_object_set_new(
        j, "ingest_cpu_ns_per_record",
        json_integer((json_int_t)(m->ingested ? m->commit_cpu_ns / m->ingested : 0)));
    /* And all of it, the ring's faulting-in at start included. */
    json_object_set_new(
        j, "writer_cpu_ns_per_record",
        json_integer((json_int_t)(m->ingested ? m->writer_cpu_ns / m->ingested : 0)));
    uv_mutex_unlock(&mm->mu);
    return j;
}

/* ---- queries ---- */

/* Called for each record of the rows a filter may match, newest first, with
 * its seq; returning 1 stops the walk. The record's strings live until it
 * returns. */
typedef int (*record_fn)(void *ud, uint64_t seq, const mxu_usage_record *r);

typedef struct decoded {
    mxu_usage_record *v;
    size_t n, cap;
} decoded;

static int collect(void *ud, const mxu_usage_record *r)
{
    decoded *d = ud;
    if (d->n == d->cap) {
        d->cap = d->cap ? 2 * d->cap : 256;
        d->v = mxu_realloc(d->v, d->cap * sizeof(*d->v));
    }
    d->v[d->n++] = *r;
    return 0;
}

/* Does r pass the filter's tenant, function and time range? */
static bool record_matches(const mxu_usage_filter *f, const mxu_usage_record *r)
{
    return (f->tenant == NULL || *f->tenant == '\0' || strcmp(r->tenant, f->tenant) == 0) &&
           (f->function == NULL || *f->function == '\0' || strcmp(r->function, f->function) == 0) &&
           r->start_ms >= f->since_ms && (f->until_ms == 0 || r->start_ms < f->until_ms);
}

static void bind_name(sqlite3_stmt *st, int i, const char *name, mxu_buf *text)
{
    if (name == NULL || *name == '\0')
        return; /* NULL: any */
    mxu_buf_printf(text, "\n%s\n", name);
    sqlite3_bind_text(st, i, text->data, (int)text->len, SQLITE_STATIC);
}

/* Walk the records with seq < before (0: any) of the batch rows whose time
 * range and names may match `f`, newest first. The rows' columns rule out
 * most rows without reading their blob; the caller filters each record
 * exactly (record_matches). */
static int each_record(mxu_meter *m, const mxu_usage_filter *f, uint64_t before, record_fn fn,
                       void *ud, mxu_err *err)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(m->db,
                           "SELECT first_seq, n, data, foff, flen FROM usage_batch WHERE "
                           "first_seq < ?1"
                           " AND max_start >= ?2 AND min_start < ?3"
                           " AND (?4 IS NULL OR tenants IS NULL OR instr(tenants, ?4) > 0)"
                           " AND (?5 IS NULL OR functions IS NULL OR instr(functions, ?5) > 0)"
                           " ORDER BY first_seq DESC",
                           -1, &st, NULL) != SQLITE_OK)
        return mxu_err_set(err, EIO, "usage.db: %s", sqlite3_errmsg(m->db));
    _cleanup_buf_ mxu_buf tenant = {0}, function = {0}, frames = {0};
    sqlite3_bind_int64(st, 1, before ? (sqlite3_int64)before : INT64_MAX);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)f->since_ms);
    sqlite3_bind_int64(st, 3, f->until_ms ? (sqlite3_int64)f->until_ms : INT64_MAX);
    bind_name(st, 4, f->tenant, &tenant);
    bind_name(st, 5, f->function, &function);
    decoded d = {0};
    int rc, stop = 0;
    while (!stop && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        uint64_t first = (uint64_t)sqlite3_column_int64(st, 0);
        uint64_t n = (uint64_t)sqlite3_column_int64(st, 1);
        const void *blob = sqlite3_column_blob(st, 2);
        size_t len = (size_t)sqlite3_column_bytes(st, 2);
        if (sqlite3_column_type(st, 4) != SQLITE_NULL) { /* in usage.frames */
            len = (size_t)sqlite3_column_int64(st, 4);
            mxu_buf_reset(&frames);
            mxu_buf_reserve(&frames, len);
            if (mxu_pread_all(m->frames_fd, frames.data, len,
                              (uint64_t)sqlite3_column_int64(st, 3)) < 0) {
                mxu_err_set(err, EIO, "usage.frames: records %llu..: %s", (unsigned long long)first,
                            strerror(errno));
                stop = -1;
                break;
            }
            blob = frames.data;
        }
        d.n = 0;
        /* The writer framed them; decoding checks every length again (the
         * checksums guard the journal's torn tails: SQLite's transactions,
         * and the fsync of usage.frames before them, keep these whole). */
        if (mxu_journal_scan(blob, len, 0, false, collect, &d) != len || d.n != n) {
            mxu_err_set(err, EIO, "usage.db: the batch row of records %llu.. is corrupt",
                        (unsigned long long)first);
            stop = -1;
            break;
        }
        for (size_t i = d.n; i-- > 0 && !stop;) {
            uint64_t seq = first + i;
            if (before && seq >= before)
                continue;
            stop = fn(ud, seq, &d.v[i]);
        }
    }
    free(d.v);
    if (stop < 0) {
        sqlite3_finalize(st);
        return -1;
    }
    if (!stop && rc != SQLITE_DONE) {
        mxu_err_set(err, EIO, "usage.db: %s", sqlite3_errmsg(m->db));
        sqlite3_finalize(st);
        return -1;
    }
    sqlite3_finalize(st);
    return 0;
}

typedef struct page {
    const mxu_usage_filter *f;
    json_t *arr;
    size_t n, limit;
    uint64_t last;
} page;

static int page_add(void *ud, uint64_t seq, const mxu_usage_record *r)
{
    page *p = ud;
    if (!record_matches(p->f, r))
        return 0;
    json_t *j = mxu_usage_record_json(r);
    json_object_set_new(j, "seq", json_integer((json_int_t)seq));
    json_array_append_new(p->arr, j);
    p->last = seq;
    return ++p->n == p->limit;
}

json_t *mxu_meter_query(mxu_meter *m, const mxu_usage_filter *f, uint64_t *next, mxu_err *err)
{
    page p = {.f = f, .arr = json_array(), .limit = f->limit ? f->limit : 100};
    if (each_record(m, f, f->before, page_add, &p, err) < 0) {
        json_decref(p.arr);
        return NULL;
    }
    *next = p.n == p.limit ? p.last : 0;
    return json_pack("{s:o}", "records", p.arr);
}

/* Per (tenant, function) totals of mxu_meter_aggregate. */
typedef struct agg {
    char *tenant, *function;
    uint64_t requests, ok, errors, rejected, cold, billed_ms, cpu_us, bytes_in, bytes_out,
        peak_memory, first_ms, last_ms;
} agg;

typedef struct aggs {
    const mxu_usage_filter *f;
    json_t *index; /* "tenant\nfunction" -> position in v */
    agg *v;
    size_t n, cap;
} aggs;

static int agg_add(void *ud, uint64_t seq, const mxu_usage_record *r)
{
    MXU_UNUSED(seq);
    aggs *a = ud;
    if (!record_matches(a->f, r))
        return 0;
    _cleanup_buf_ mxu_buf key = {0};
    mxu_buf_printf(&key, "%s\n%s", r->tenant, r->function);
    json_t *at = json_object_get(a->index, key.data);
    agg *g;
    if (at) {
        g = &a->v[json_integer_value(at)];
    } else {
        if (a->n == a->cap) {
            a->cap = a->cap ? 2 * a->cap : 16;
            a->v = mxu_realloc(a->v, a->cap * sizeof(*a->v));
        }
        json_object_set_new(a->index, key.data, json_integer((json_int_t)a->n));
        g = &a->v[a->n++];
        *g = (agg){.tenant = mxu_strdup(r->tenant),
                   .function = mxu_strdup(r->function),
                   .first_ms = r->start_ms,
                   .last_ms = r->start_ms};
    }
    g->requests++;
    g->ok += r->status == MXU_USAGE_OK;
    g->errors += r->status == MXU_USAGE_ERROR || r->status == MXU_USAGE_TIMEOUT ||
                 r->status == MXU_USAGE_CRASHED;
    g->rejected += r->status == MXU_USAGE_REJECTED;
    g->cold += r->cold;
    g->billed_ms += r->billed_ms;
    g->cpu_us += r->cpu_us;
    g->bytes_in += r->bytes_in;
    g->bytes_out += r->bytes_out;
    g->peak_memory = MXU_MAX(g->peak_memory, r->peak_bytes);
    g->first_ms = MXU_MIN(g->first_ms, r->start_ms);
    g->last_ms = MXU_MAX(g->last_ms, r->start_ms);
    return 0;
}

static int agg_cmp(const void *x, const void *y)
{
    const agg *a = x, *b = y;
    int c = strcmp(a->tenant, b->tenant);
    return c ? c : strcmp(a->function, b->function);
}

json_t *mxu_meter_aggregate(mxu_meter *m, const mxu_usage_filter *f, mxu_err *err)
{
    /* Decoded from the batch rows in the filter's range: a read pays for
     * what it reads, the ingest path pays nothing for it. */
    aggs a = {.f = f, .index = json_object()};
    int rc = each_record(m, f, 0, agg_add, &a, err);
    json_decref(a.index);
    json_t *arr = rc < 0 ? NULL : json_array();
    if (arr && a.n)
        qsort(a.v, a.n, sizeof(*a.v), agg_cmp);
    for (size_t i = 0; i < a.n; i++) {
        const agg *g = &a.v[i];
        if (arr) {
            const uint64_t vals[] = {g->requests,  g->ok,          g->errors,   g->rejected,
                                     g->cold,      g->billed_ms,   g->cpu_us,   g->bytes_in,
                                     g->bytes_out, g->peak_memory, g->first_ms, g->last_ms};
            static const char *const fields[] = {"requests",  "ok",          "errors",   "rejected",
                                                 "cold",      "billed_ms",   "cpu_us",   "bytes_in",
                                                 "bytes_out", "peak_memory", "first_ms", "last_ms"};
            json_t *j = json_pack("{s:s, s:s}", "tenant", g->tenant, "function", g->function);
            for (size_t k = 0; k < MXU_ARRAY_LEN(fields); k++)
                json_object_set_new(j, fields[k], json_integer((json_int_t)vals[k]));
            json_array_append_new(arr, j);
        }
        free(g->tenant);
        free(g->function);
    }
    free(a.v);
    return arr;
}

typedef struct bill_scan {
    const char *tenant;
    uint64_t from, to;
    mxu_bill_usage *u;
} bill_scan;

static int bill_add(void *ud, uint64_t seq, const mxu_usage_record *r)
{
    MXU_UNUSED(seq);
    bill_scan *b = ud;
    if (r->status == MXU_USAGE_REJECTED || r->start_ms < b->from || r->start_ms >= b->to ||
        strcmp(r->tenant, b->tenant) != 0)
        return 0;
    b->u->requests++;
    b->u->mem_byte_ms += (unsigned __int128)r->memory_bytes * r->billed_ms;
    b->u->bytes_out += r->bytes_out;
    return 0;
}

/* Add the billable records of `tenant` with start_ms in [from, to), decoded
 * from the rows (a range that is not whole months). */
static int bill_decode(mxu_meter *m, const char *tenant, uint64_t from, uint64_t to,
                       mxu_bill_usage *u, mxu_err *err)
{
    if (from >= to)
        return 0;
    mxu_usage_filter f = {.tenant = tenant, .since_ms = from, .until_ms = to};
    bill_scan b = {.tenant = tenant, .from = from, .to = to, .u = u};
    return each_record(m, &f, 0, bill_add, &b, err);
}

int mxu_meter_bill_usage(mxu_meter *m, const char *tenant, uint64_t start_ms, uint64_t end_ms,
                         mxu_bill_usage *u, mxu_err *err)
{
    memset(u, 0, sizeof(*u));
    /* Whole months from usage_month's exact sums; the part of a month at
     * either end of the range (none for a bill) from the records. */
    uint64_t lo, hi, whole_from = end_ms, whole_to = end_ms;
    if (mxu_month_of(start_ms, &lo, &hi) == 0) {
        whole_from = lo == start_ms ? lo : hi;
        if (mxu_month_of(end_ms, &lo, &hi) == 0)
            whole_to = lo;
    }
    if (whole_from >= whole_to || whole_to > end_ms)
        return bill_decode(m, tenant, start_ms, end_ms, u, err);
    if (bill_decode(m, tenant, start_ms, whole_from, u, err) < 0 ||
        bill_decode(m, tenant, whole_to, end_ms, u, err) < 0)
        return -1;
    /* Grouped by memory size, each group's sum of billed_ms stays small;
     * the products and the total are formed in 128 bits here. */
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(m->db,
                           "SELECT memory, sum(requests), sum(billed_ms), sum(bytes_out)"
                           " FROM usage_month WHERE tenant = ? AND month >= ? AND month < ?"
                           " GROUP BY memory",
                           -1, &st, NULL) != SQLITE_OK)
        return mxu_err_set(err, EIO, "usage.db: %s", sqlite3_errmsg(m->db));
    sqlite3_bind_text(st, 1, tenant, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)whole_from);
    sqlite3_bind_int64(st, 3, (sqlite3_int64)whole_to);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        /* SQLite turns an integer sum that overflows into a float: refused
         * rather than billed approximately. */
        for (int i = 1; i < 4; i++)
            if (sqlite3_column_type(st, i) != SQLITE_INTEGER) {
                sqlite3_finalize(st);
                return mxu_err_set(err, ERANGE,
                                   "usage.db: a month's usage sum of %s is out "
                                   "of the exact integer range",
                                   tenant);
            }
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
