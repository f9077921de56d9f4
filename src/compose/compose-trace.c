/*
 * Trace store: the last runs of each tenant's services, as compact JSON
 * text (one run is typically a few hundred bytes; a JSON tree of it would
 * be several times that), in a ring per tenant bounded by a number of runs
 * and a number of bytes, so one tenant's traffic never evicts another's
 * traces. Looking a trace up scans the rings (10,000 runs compare 16 bytes
 * each: tens of microseconds), which suits a management call and keeps the
 * invocation path to one append.
 */
#include "compose-internal.h"

#include <string.h>

typedef struct trace_entry {
    uint8_t trace_id[16];
    char service[64];
    trace_summary sum;
    char *json;
    size_t len;
} trace_entry;

typedef struct tenant_ring {
    struct tenant_ring *next;
    char tenant[40];
    trace_entry *v; /* circular: head is the oldest */
    size_t head, n, cap;
    size_t bytes;
} tenant_ring;

struct trace_store {
    size_t max_runs, max_bytes;
    tenant_ring *rings;
};

trace_store *trace_store_new(size_t max_runs, size_t max_bytes)
{
    trace_store *ts = mxu_calloc(1, sizeof(*ts));
    ts->max_runs = max_runs;
    ts->max_bytes = max_bytes;
    return ts;
}

void trace_store_free(trace_store *ts)
{
    if (ts == NULL)
        return;
    tenant_ring *r = ts->rings;
    while (r) {
        tenant_ring *next = r->next;
        for (size_t i = 0; i < r->n; i++)
            free(r->v[(r->head + i) % r->cap].json);
        free(r->v);
        free(r);
        r = next;
    }
    free(ts);
}

static void evict_oldest(tenant_ring *r)
{
    trace_entry *e = &r->v[r->head];
    r->bytes -= e->len;
    free(e->json);
    e->json = NULL;
    r->head = (r->head + 1) % r->cap;
    r->n--;
}

void trace_store_add(trace_store *ts, const char *tenant, const char *service,
                     const uint8_t trace_id[16], const trace_summary *sum, char *json, size_t len)
{
    tenant_ring *r = ts->rings;
    while (r && strcmp(r->tenant, tenant) != 0)
        r = r->next;
    if (r == NULL) {
        r = mxu_calloc(1, sizeof(*r));
        snprintf(r->tenant, sizeof(r->tenant), "%s", tenant);
        r->next = ts->rings;
        ts->rings = r;
    }
    if (len > ts->max_bytes) { /* one run larger than the whole bound: not kept */
        free(json);
        return;
    }
    while (r->n > 0 && (r->n >= ts->max_runs || r->bytes + len > ts->max_bytes))
        evict_oldest(r);
    if (r->n == r->cap) { /* grow (up to max_runs), unrolling the ring */
        size_t cap = MXU_MIN(MXU_MAX(r->cap * 2, (size_t)64), ts->max_runs);
        trace_entry *v = mxu_calloc(cap, sizeof(*v));
        for (size_t i = 0; i < r->n; i++)
            v[i] = r->v[(r->head + i) % r->cap];
        free(r->v);
        r->v = v;
        r->head = 0;
        r->cap = cap;
    }
    trace_entry *e = &r->v[(r->head + r->n) % r->cap];
    memcpy(e->trace_id, trace_id, 16);
    snprintf(e->service, sizeof(e->service), "%s", service);
    e->sum = *sum;
    e->json = json;
    e->len = len;
    r->n++;
    r->bytes += len;
}

json_t *trace_store_get(trace_store *ts, const char *tenant, const uint8_t trace_id[16])
{
    json_t *runs = json_array();
    for (tenant_ring *r = ts->rings; r; r = r->next) {
        if (tenant && strcmp(r->tenant, tenant) != 0)
            continue;
        for (size_t i = 0; i < r->n; i++) {
            trace_entry *e = &r->v[(r->head + i) % r->cap];
            if (memcmp(e->trace_id, trace_id, 16) != 0)
                continue;
            json_t *run = json_loadb(e->json, e->len, 0, NULL);
            if (run)
                json_array_append_new(runs, run);
        }
    }
    if (json_array_size(runs) == 0) {
        json_decref(runs);
        return NULL;
    }
    char hex[33];
    mxu_trace_id_hex(trace_id, hex, sizeof(hex));
    return json_pack("{s:s, s:o}", "trace", hex, "runs", runs);
}

bool trace_store_owner(trace_store *ts, const uint8_t trace_id[16], char *tenant, size_t tlen,
                       char *service, size_t slen)
{
    for (tenant_ring *r = ts->rings; r; r = r->next) {
        for (size_t i = r->n; i-- > 0;) {
            trace_entry *e = &r->v[(r->head + i) % r->cap];
            if (memcmp(e->trace_id, trace_id, 16) == 0) {
                snprintf(tenant, tlen, "%s", r->tenant);
                snprintf(service, slen, "%s", e->service);
                return true;
            }
        }
    }
    return false;
}

static int by_start_desc(const void *a, const void *b)
{
    json_int_t x = json_integer_value(json_object_get(*(json_t *const *)a, "start_ms"));
    json_int_t y = json_integer_value(json_object_get(*(json_t *const *)b, "start_ms"));
    return x < y ? 1 : x > y ? -1 : 0;
}

json_t *trace_store_list(trace_store *ts, const char *tenant, const char *service, size_t limit,
                         bool (*allow)(void *ud, const char *tenant, const char *service), void *ud)
{
    json_t **got = NULL;
    size_t n = 0, cap = 0;
    for (tenant_ring *r = ts->rings; r; r = r->next) {
        if (tenant && strcmp(r->tenant, tenant) != 0)
            continue;
        size_t mine = 0;
        for (size_t i = r->n; i-- > 0 && mine < limit;) {
            trace_entry *e = &r->v[(r->head + i) % r->cap];
            if ((service && strcmp(e->service, service) != 0) ||
                (allow && !allow(ud, r->tenant, e->service)))
                continue;
            char hex[33], run[24], start[40];
            mxu_trace_id_hex(e->trace_id, hex, sizeof(hex));
            snprintf(run, sizeof(run), "%016llx", (unsigned long long)e->sum.run);
            mxu_format_time_ms(e->sum.start_ms, start, sizeof(start));
            json_t *j = json_pack("{s:s, s:s, s:s, s:s, s:i, s:s, s:I, s:I, s:i}", "trace", hex,
                                  "run", run, "tenant", r->tenant, "service", e->service, "version",
                                  (int)e->sum.version, "start", start, "start_ms",
                                  (json_int_t)e->sum.start_ms, "duration_us",
                                  (json_int_t)e->sum.duration_us, "status", e->sum.status);
            if (j == NULL)
                continue;
            if (n == cap) {
                cap = cap ? cap * 2 : 32;
                got = mxu_realloc(got, cap * sizeof(*got));
            }
            got[n++] = j;
            mine++;
        }
    }
    if (n > 1)
        qsort(got, n, sizeof(*got), by_start_desc);
    json_t *out = json_array();
    for (size_t i = 0; i < n; i++) {
        if (i < limit) {
            json_object_del(got[i], "start_ms");
            json_array_append_new(out, got[i]);
        } else {
            json_decref(got[i]);
        }
    }
    free(got);
    return out;
}
