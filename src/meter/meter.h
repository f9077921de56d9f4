/*
 * meter — usage records, the price table and bills (docs/metering.md).
 *
 * Every invocation, whatever its outcome (ok, error, timeout, crash, or
 * rejected before it ran), becomes one usage record. mxu_meter_record()
 * stores the record into an append-only journal in the node's data
 * directory, a file mapped shared (or, when that cannot take it, writes it
 * at the end of the loop turn and then calls back): a caller answers only
 * once the record is in, so no answered invocation is ever without its
 * record, even after kill -9 (the record is in the kernel's page cache
 * before the answer leaves). A writer thread moves
 * the journal into a SQLite database (usage.db) every few milliseconds;
 * queries wait for it (mxu_meter_sync). Records reach the journal in the
 * order they were recorded, so a record is written no later than any record
 * handed over after it (svc calls rely on that: see sched-svc.c).
 * docs/metering.md says what a machine crash (not a process kill) can lose.
 *
 * Money is exact: prices are decimal strings parsed into integer pico-units
 * (1e-12 of the currency), bills are computed from summed integer quantities
 * with 128-bit intermediates and one half-up rounding per line. No floating
 * point touches money anywhere.
 *
 * The meter knows nothing of HTTP: the HTTP status in a record is a number
 * the caller gives.
 */
#ifndef MXU_METER_H
#define MXU_METER_H

#include "core/core.h"

#include <jansson.h>
#include <uv.h>

typedef struct mxu_meter mxu_meter;

/* ---- usage records ---- */

enum mxu_usage_status {
    MXU_USAGE_OK,      /* the function answered (any status it chose) */
    MXU_USAGE_ERROR,   /* failed as a platform matter: exec exit != 0, bad response, start failed */
    MXU_USAGE_TIMEOUT, /* ran past its timeout and was killed */
    MXU_USAGE_CRASHED, /* the instance died while running it */
    MXU_USAGE_REJECTED, /* never ran: queue full, no capacity, not found, 401/403/quota, ... */
};

/* "ok", "error", "timeout", "crashed", "rejected". */
const char *mxu_usage_status_name(enum mxu_usage_status s);
/* The reverse; -1 if unknown. */
int mxu_usage_status_parse(const char *name);

/* One record. Strings are borrowed by mxu_meter_record() (copied at once). */
typedef struct mxu_usage_record {
    uint64_t invocation; /* the id returned in X-Mxu-Invocation-Id */
    const char *tenant;  /* owner of the function (today "default") */
    const char *function;
    uint32_t version;      /* 0 if it never resolved to a version */
    const char *executor;  /* "process", "sandbox", ... ("" if it never ran) */
    uint64_t start_ms;     /* wall clock (unix ms) when the invocation arrived */
    uint64_t wall_us;      /* arrival to result */
    uint64_t billed_ms;    /* run time rounded up to 1 ms; 0 if it never ran */
    uint64_t memory_bytes; /* configured memory of the function */
    uint64_t cpu_us;       /* instance CPU time used (approximate under concurrency) */
    uint64_t peak_bytes;   /* the instance's peak resident memory; 0 if unknown */
    uint64_t bytes_in;     /* request as received (docs/metering.md says what counts) */
    uint64_t bytes_out;    /* response as sent */
    bool cold;             /* waited for an instance to start */
    enum mxu_usage_status status;
    int http_status;             /* what the caller got (a svc call: the callee's status) */
    const char *code;            /* error code ("queue_full", ...), "" when ok */
    uint64_t caller;             /* svc call: the calling invocation's id; 0 = a client */
    const char *caller_function; /* svc call: "orders@3"; "" = a client */
} mxu_usage_record;

/* Billed duration: microseconds of run time rounded up to whole ms. */
static inline uint64_t mxu_usage_billed_ms(uint64_t run_us)
{
    return (run_us + 999) / 1000;
}

/* The record as a JSON object (the form of GET /v1/usage). */
json_t *mxu_usage_record_json(const mxu_usage_record *r);
/* The CSV header line and one record as a CSV line (RFC 4180 quoting), each
 * with a trailing "\n". */
void mxu_usage_csv_header(mxu_buf *out);
void mxu_usage_record_csv(const mxu_usage_record *r, mxu_buf *out);

/* The packed form, as a journal frame holds it (meter-journal.c): the
 * numbers (varints) and the strings of a record in one run of bytes, and
 * back. Decoding checks every length; -1 if malformed. Decoded strings point
 * into `data`. */
void mxu_usage_record_encode(const mxu_usage_record *r, mxu_buf *out);
int mxu_usage_record_decode(const void *data, size_t len, mxu_usage_record *out);
/* Either form: compact (the one encoded now) or the fixed layout that
 * nodes before the compact form wrote (still read from old journals and
 * batch rows). */
int mxu_usage_record_decode_form(const void *data, size_t len, bool compact, mxu_usage_record *out);

/* ---- money ---- */

/* Pico-units: 1e-12 of the currency. */
#define MXU_PICO_PER_UNIT 1000000000000ull
/* Prices above this many currency units are refused (they keep the bill's
 * 128-bit products far from overflow). */
#define MXU_PRICE_MAX_UNITS 1000000ull

/* Parse a non-negative decimal string ("0.0000166667", "12", "0.09") exactly
 * into pico-units. Refused with a message naming `field`: signs, exponents,
 * more than 12 decimal places, values above MXU_PRICE_MAX_UNITS, anything
 * that is not digits with at most one '.'. */
int mxu_money_parse(const char *s, const char *field, uint64_t *pico, mxu_err *err);
/* An amount in pico-units as an exact decimal string: at least 2 and at most
 * 12 decimal places, trailing zeros beyond the second dropped ("0.09",
 * "1.000000000001", "123456789012345678.50"). out >= 48 bytes. */
void mxu_money_format(unsigned __int128 pico, char *out, size_t outlen);

/* A price table: defaults plus per-tenant overrides. */
typedef struct mxu_prices mxu_prices;
typedef struct mxu_price {
    uint64_t per_request;   /* pico per invocation */
    uint64_t per_gb_second; /* pico per GB-s (GB = 2^30 bytes of configured memory) */
    uint64_t per_gb_out;    /* pico per GB (2^30 bytes) of response */
} mxu_price;

/* The built-in table (docs/metering.md): USD, 0.0000002 per request,
 * 0.0000166667 per GB-s, 0.09 per GB out. */
mxu_prices *mxu_prices_new(void);
void mxu_prices_free(mxu_prices *p);
/* Parse {"currency": "USD", "per_request": "…", "per_gb_second": "…",
 * "per_gb_out": "…", "tenants": {"acme": {"per_request": "…"}, …}}. Every
 * price must be a JSON string (a JSON number could already have been
 * rounded); a field left out keeps the built-in default (for a tenant: the
 * table's default). Errors name the field: "tenants.acme.per_gb_out: …". */
mxu_prices *mxu_prices_from_json(json_t *j, mxu_err *err);
/* The same form, prices as exact decimal strings. */
json_t *mxu_prices_to_json(const mxu_prices *p);
/* The price for `tenant` (its override, field by field over the default). */
mxu_price mxu_prices_for(const mxu_prices *p, const char *tenant);
const char *mxu_prices_currency(const mxu_prices *p);

/* ---- bills ---- */

/* The summed quantities of a tenant's records over a month. */
typedef struct mxu_bill_usage {
    uint64_t requests;             /* records (all statuses) */
    unsigned __int128 mem_byte_ms; /* sum of memory_bytes * billed_ms */
    unsigned __int128 bytes_out;   /* sum of bytes_out */
} mxu_bill_usage;

typedef struct mxu_bill {
    mxu_bill_usage usage;
    mxu_price price;
    unsigned __int128 requests_pico; /* requests * per_request (exact) */
    unsigned __int128 compute_pico;  /* mem_byte_ms * per_gb_second / (2^30 * 1000), half-up */
    unsigned __int128 data_out_pico; /* bytes_out * per_gb_out / 2^30, half-up */
    unsigned __int128 total_pico;    /* the sum of the three lines */
} mxu_bill;

/* Price the quantities. -1 (ERANGE) only if a line would not fit 128 bits. */
int mxu_bill_compute(const mxu_bill_usage *u, const mxu_price *price, mxu_bill *out, mxu_err *err);
/* {"tenant","month","currency","lines":[{"item","quantity","unit","unit_price",
 * "amount"}…],"total"} with exact decimal strings. */
json_t *mxu_bill_json(const mxu_bill *b, const char *tenant, const char *month,
                      const char *currency);
/* "2026-11" → [start, end) in unix ms (UTC). */
int mxu_month_range(const char *month, uint64_t *start_ms, uint64_t *end_ms, mxu_err *err);

/* ---- the meter ---- */

/* Open (creating) the usage database at `path`, replay into it what the
 * journal next to it (same directory) holds beyond what was ingested (a node
 * killed with -9 leaves such records), and start the writer thread.
 * `prices` is taken over; it replaces the stored table if not NULL (the
 * config file wins), else the stored table (or the built-in one) is used.
 * Environment, for tests: MXU_METER_INGEST_MS, how often the writer ingests
 * (default 50); MXU_METER_RING_BYTES, the size of a new journal ring
 * (default 16 MiB, at least 64 KiB). */
int mxu_meter_open(uv_loop_t *loop, const char *path, mxu_prices *prices, mxu_meter **out,
                   mxu_err *err);
/* Write what is batched (running its callbacks), ingest everything, stop
 * the writer, run the syncs still waiting, close the database. */
void mxu_meter_close(mxu_meter *m);

typedef void (*mxu_meter_cb)(void *ud);
typedef void (*mxu_meter_record_cb)(void *ud, bool written);
/* Record one. Returns true if the record is in the journal when this
 * returns (stored into the ring's shared mapping: it survives the process
 * being killed), as it is unless an earlier record is still waiting or the
 * ring is full: an answer can then leave at once. Either way `cb` (may be
 * NULL) runs once, on the loop thread, when the record is in the journal, at
 * the latest just before the loop next waits for events, with written true;
 * never before this returns. If the ring cannot take it (usage.db is a whole
 * ring behind: disk full), it waits until the writer has made room: held
 * answers wait, and the node says why in its log. Only if the meter is closed while the write still
 * fails does cb run with written false: the record is lost, and whatever waited for it (an answer)
 * must not go out as if it were recorded. */
bool mxu_meter_record(mxu_meter *m, const mxu_usage_record *r, mxu_meter_record_cb cb, void *ud);
/* cb(ud, written) as mxu_meter_record's, for everything recorded so far:
 * what waits for a record that mxu_meter_record() did not store at once. */
void mxu_meter_when_written(mxu_meter *m, mxu_meter_record_cb cb, void *ud);

/* cb(ud) runs on the loop once every record recorded before this call is
 * written and ingested into usage.db (shutdown: answers held for records go
 * out before connections close). Asks the writer to ingest at once. */
void mxu_meter_flush(mxu_meter *m, mxu_meter_cb cb, void *ud);

/* The same with a bound, for reads: cb(ud, true) once every record recorded
 * before this call is in usage.db, so a query then sees every record whose
 * answer went out; cb(ud, false) if that takes more than `timeout_ms`
 * (0 = no bound) because usage.db cannot be written. Runs exactly once,
 * never before returning. */
typedef void (*mxu_meter_sync_cb)(void *ud, bool ingested);
void mxu_meter_sync(mxu_meter *m, uint64_t timeout_ms, mxu_meter_sync_cb cb, void *ud);

/* Queries read usage.db as it is: call them from mxu_meter_sync()'s callback
 * to see every record answered so far. */

/* Records, newest first, matching the filters (NULL / 0 = any): at most
 * `limit`, strictly older than cursor `before` (a record's seq; 0 = from the
 * newest). *next is the cursor for the next page (0 = no more).
 * {"records":[…]} */
typedef struct mxu_usage_filter {
    const char *tenant;
    const char *function;
    uint64_t since_ms, until_ms; /* start_ms in [since, until) */
    uint64_t before;             /* paging cursor */
    size_t limit;                /* 0 = 100 */
} mxu_usage_filter;
json_t *mxu_meter_query(mxu_meter *m, const mxu_usage_filter *f, uint64_t *next, mxu_err *err);
/* Aggregates per tenant and function over the same filters (paging fields
 * ignored): [{"tenant","function","requests","errors","rejected","cold",
 * "billed_ms","gb_ms"...}] (integers only). */
json_t *mxu_meter_aggregate(mxu_meter *m, const mxu_usage_filter *f, mxu_err *err);
/* The bill of `tenant` for `month` ("YYYY-MM", UTC). */
json_t *mxu_meter_bill(mxu_meter *m, const char *tenant, const char *month, mxu_err *err);

/* The price table in force (borrowed), and replacing it (stored durably
 * first; `p` is taken over on success). */
const mxu_prices *mxu_meter_prices(const mxu_meter *m);
int mxu_meter_set_prices(mxu_meter *m, mxu_prices *p, mxu_err *err);

/* The summed quantities of `tenant`'s billable records (every status but
 * rejected) with start_ms in [start_ms, end_ms): what a bill prices, and
 * what the policy's monthly quotas count at start. */
int mxu_meter_bill_usage(mxu_meter *m, const char *tenant, uint64_t start_ms, uint64_t end_ms,
                         mxu_bill_usage *u, mxu_err *err);

/* fn(ud, r) sees every record handed to mxu_meter_record(), on the loop
 * thread, before it is queued: the policy's quota counters follow the
 * records this way, so they never disagree with the bill. One observer;
 * NULL removes it. */
typedef void (*mxu_meter_observer)(void *ud, const mxu_usage_record *r);
void mxu_meter_set_observer(mxu_meter *m, mxu_meter_observer fn, void *ud);

/* Counters: records recorded ("queued") and ingested ("committed"), writer
 * batches and the time spent in their commits, journal writes and bytes,
 * records replayed at open (for the benchmark and `mxu health`). */
json_t *mxu_meter_stats_json(const mxu_meter *m);

#endif
