/*
 * Quotas: per tenant per calendar month (UTC), invocations, GB-seconds and
 * bytes out (docs/policy.md, "Quotas").
 *
 * The counters are the meter's records, nothing else: at start each
 * tenant's month is summed from usage.db (the query a bill runs), and from
 * then on every record handed to the meter is counted as it goes by (the
 * meter's observer), so a check is a hash lookup and three comparisons.
 * Rejected invocations never ran and count for nothing, as on the bill.
 *
 * "Exactly at the limit" for invocations: an admitted invocation reserves
 * one before it runs, and a check counts reservations with what is used, so
 * N concurrent requests against a quota of N run exactly N. The reservation
 * is given back right after the invocation's record was counted (or when it
 * will have none). GB-seconds and bytes out cannot be known before a run:
 * they refuse new invocations once what has completed reaches the quota, so
 * invocations already running when it is crossed finish (and count).
 *
 *   tenant_quotas(tenant PRIMARY KEY, invocations, gb_seconds, bytes_out)
 *   (0 = unlimited; created with shape_limits in policy-shape.c)
 */
#include "policy-internal.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

/* GB-seconds as the bill counts them: bytes of configured memory × ms. */
#define MEM_MS_PER_GB_S (((uint64_t)1 << 30) * 1000)

static uint32_t month_compute(uint64_t wall_ms, uint64_t *start_ms, uint64_t *end_ms)
{
    time_t t = (time_t)(wall_ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    uint32_t m = (uint32_t)(tm.tm_year + 1900) * 12 + (uint32_t)tm.tm_mon;
    if (start_ms) {
        struct tm a = {.tm_year = tm.tm_year, .tm_mon = tm.tm_mon, .tm_mday = 1};
        struct tm b = {.tm_year = tm.tm_year + (tm.tm_mon == 11),
                       .tm_mon = (tm.tm_mon + 1) % 12,
                       .tm_mday = 1};
        *start_ms = (uint64_t)timegm(&a) * 1000;
        *end_ms = (uint64_t)timegm(&b) * 1000;
    }
    return m;
}

/* The month of a time, with the current month's bounds remembered: the
 * check runs per request, gmtime_r() need not (loop thread only). */
static uint32_t month_of(uint64_t wall_ms, uint64_t *start_ms, uint64_t *end_ms)
{
    static uint64_t cur_start, cur_end;
    static uint32_t cur;
    if (wall_ms < cur_start || wall_ms >= cur_end)
        cur = month_compute(wall_ms, &cur_start, &cur_end);
    if (start_ms) {
        *start_ms = cur_start;
        *end_ms = cur_end;
    }
    return cur;
}

/* Counters of the month `now` is in (a new month starts from zero: its
 * records are all counted live). */
static void roll(pol_tstate *ts, uint32_t month)
{
    if (ts->month != month) {
        ts->month = month;
        ts->used_inv = ts->used_mem_ms = ts->used_out = 0;
    }
}

static void on_record(void *ud, const mxu_usage_record *r)
{
    mxu_policy *p = ud;
    if (r->status == MXU_USAGE_REJECTED || r->tenant == NULL)
        return;
    pol_tstate *ts = pol_tstate_get(p, r->tenant);
    uint32_t month = month_of(r->start_ms, NULL, NULL);
    /* Started in the counters' month: counted, with no clock read (if that
     * month is over, the next reservation's roll discards it with them). */
    if (month != ts->month) {
        uint32_t now = month_of(mxu_wall_ms(), NULL, NULL);
        roll(ts, now);
        if (month != now)
            return; /* started last month: that month's bill, not this one's quota */
    }
    ts->used_inv++;
    ts->used_mem_ms += r->memory_bytes * r->billed_ms;
    ts->used_out += r->bytes_out;
}

int pol_quota_load(mxu_policy *p, mxu_err *err)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(p->db,
                           "SELECT tenant, invocations, gb_seconds, bytes_out FROM "
                           "tenant_quotas",
                           -1, &st, NULL) != SQLITE_OK)
        return mxu_err_set(err, EIO, "state database (policy): %s", sqlite3_errmsg(p->db));
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *t = (const char *)sqlite3_column_text(st, 0);
        if (t == NULL)
            continue;
        pol_tstate *ts = pol_tstate_get(p, t);
        ts->quota.invocations = (uint64_t)sqlite3_column_int64(st, 1);
        ts->quota.gb_seconds = (uint64_t)sqlite3_column_int64(st, 2);
        ts->quota.bytes_out = (uint64_t)sqlite3_column_int64(st, 3);
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE)
        return mxu_err_set(err, EIO, "state database (policy): load quotas: %s",
                           sqlite3_errmsg(p->db));
    return 0;
}

int mxu_policy_quota_attach(mxu_policy *p, mxu_meter *m, mxu_err *err)
{
    uint64_t a, b;
    uint32_t month = month_of(mxu_wall_ms(), &a, &b);
    for (pol_tenant *t = p->tenants; t != NULL; t = t->hh.next) {
        mxu_bill_usage u;
        if (mxu_meter_bill_usage(m, t->name, a, b, &u, err) < 0)
            return -1;
        pol_tstate *ts = pol_tstate_get(p, t->name);
        ts->month = month;
        ts->used_inv = u.requests;
        ts->used_mem_ms = u.mem_byte_ms > UINT64_MAX ? UINT64_MAX : (uint64_t)u.mem_byte_ms;
        ts->used_out = u.bytes_out > UINT64_MAX ? UINT64_MAX : (uint64_t)u.bytes_out;
    }
    p->meter = m;
    mxu_meter_set_observer(m, on_record, p);
    return 0;
}

int mxu_policy_quota_set(mxu_policy *p, const char *tenant, const mxu_quota *q, mxu_err *err)
{
    if (!mxu_policy_tenant_exists(p, tenant))
        return mxu_err_set(err, ENOENT, "no tenant '%.40s'", tenant ? tenant : "");
    if (q->gb_seconds > UINT64_MAX / MEM_MS_PER_GB_S)
        return mxu_err_set(err, EINVAL, "gb_seconds: at most %llu",
                           (unsigned long long)(UINT64_MAX / MEM_MS_PER_GB_S));
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(p->db,
                           "INSERT OR REPLACE INTO tenant_quotas(tenant, invocations, gb_seconds, "
                           "bytes_out) VALUES(?, ?, ?, ?)",
                           -1, &st, NULL) != SQLITE_OK)
        return mxu_err_set(err, EIO, "state database (policy): %s", sqlite3_errmsg(p->db));
    sqlite3_bind_text(st, 1, tenant, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)q->invocations);
    sqlite3_bind_int64(st, 3, (sqlite3_int64)q->gb_seconds);
    sqlite3_bind_int64(st, 4, (sqlite3_int64)q->bytes_out);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE)
        return mxu_err_set(err, EIO, "state database (policy): %s", sqlite3_errmsg(p->db));
    pol_tstate_get(p, tenant)->quota = *q;
    return 0;
}

static uint32_t seconds_to_next_month(uint64_t now_ms)
{
    uint64_t a, b;
    month_of(now_ms, &a, &b);
    return (uint32_t)((b - now_ms + 999) / 1000);
}

int mxu_quota_reserve(mxu_policy *p, const char *tenant, uint64_t now_ms, mxu_shape_denial *d)
{
    if (p->meter == NULL)
        return 0;
    /* Made on first use: a tenant with no quota and no usage yet reserves too,
     * so that every 0 returned here is a reservation its caller gives back
     * (mxu_quota_release), never another request's. */
    pol_tstate *ts = pol_tstate_get(p, tenant);
    roll(ts, month_of(now_ms, NULL, NULL));
    const mxu_quota *q = &ts->quota;
    const char *which = NULL;
    char lim[48];
    if (q->invocations && ts->used_inv + ts->reserved >= q->invocations) {
        which = "invocations";
        snprintf(lim, sizeof(lim), "%llu invocations", (unsigned long long)q->invocations);
    } else if (q->gb_seconds && ts->used_mem_ms >= q->gb_seconds * MEM_MS_PER_GB_S) {
        which = "GB-seconds";
        snprintf(lim, sizeof(lim), "%llu GB-seconds", (unsigned long long)q->gb_seconds);
    } else if (q->bytes_out && ts->used_out >= q->bytes_out) {
        which = "bytes out";
        mxu_format_size(q->bytes_out, lim, sizeof(lim));
        size_t n = strlen(lim);
        snprintf(lim + n, sizeof(lim) - n, " out");
    }
    if (which) {
        d->code = "quota_exceeded";
        d->retry_after_s = seconds_to_next_month(now_ms);
        snprintf(d->message, sizeof(d->message),
                 "monthly quota of tenant %s reached: %s (%s); nothing was run. It resets at "
                 "the start of next month (UTC) or when the quota is raised",
                 tenant, lim, which);
        return -1;
    }
    ts->reserved++;
    return 0;
}

void mxu_quota_release(mxu_policy *p, const char *tenant)
{
    if (p->meter == NULL)
        return;
    pol_tstate *ts = pol_tstate_find(p, tenant);
    if (ts && ts->reserved)
        ts->reserved--;
}

json_t *pol_quota_json(mxu_policy *p, pol_tstate *ts, uint64_t now_ms)
{
    uint64_t a, b;
    uint32_t month = month_of(now_ms, &a, &b);
    char mon[16];
    snprintf(mon, sizeof(mon), "%04u-%02u", month / 12, month % 12 + 1);
    mxu_quota none = {0};
    const mxu_quota *q = ts ? &ts->quota : &none;
    if (ts)
        roll(ts, month);
#define OR_NULL(v) ((v) ? json_integer((json_int_t)(v)) : json_null())
    json_t *quotas =
        json_pack("{s:o, s:o, s:o}", "invocations", OR_NULL(q->invocations), "gb_seconds",
                  OR_NULL(q->gb_seconds), "bytes_out", OR_NULL(q->bytes_out));
#undef OR_NULL
    /* GB-seconds to 3 decimals: exact integer arithmetic, printed as text. */
    uint64_t mem = ts ? ts->used_mem_ms : 0;
    uint64_t milli = (uint64_t)((unsigned __int128)mem * 1000 / MEM_MS_PER_GB_S);
    char gbs[48];
    snprintf(gbs, sizeof(gbs), "%llu.%03llu", (unsigned long long)(milli / 1000),
             (unsigned long long)(milli % 1000));
    json_t *usage = json_pack("{s:s, s:I, s:s, s:I, s:I, s:b}", "month", mon, "invocations",
                              (json_int_t)(ts ? ts->used_inv : 0), "gb_seconds", gbs, "bytes_out",
                              (json_int_t)(ts ? ts->used_out : 0), "reserved",
                              (json_int_t)(ts ? ts->reserved : 0), "enforced", p->meter != NULL);
    return json_pack("{s:o, s:o}", "quotas", quotas, "usage", usage);
}
