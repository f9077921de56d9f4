/*
 * Metering at the API edge (docs/metering.md): answers held until their
 * usage record is in the journal (the same loop turn), rejections recorded
 * before they are answered, and the management paths /v1/usage, /v1/bills
 * (which first wait for the journal to be in usage.db) and /v1/prices.
 *
 * What a record counts as the bytes of a request and a response is decided
 * here, because only here is HTTP known: the body's length plus, for each
 * header, len(name) + len(value) + 4 (": " and CRLF). For a request that is
 * every header the client sent (hop-by-hop ones included); for a response,
 * the function's headers and the node's own (X-Mxu-*, Content-Type of an
 * error), not the status line or the framing headers the HTTP server adds
 * (Content-Length, Date, Connection).
 */
#include "api-internal.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

uint64_t api_request_bytes(mxu_http_req *req)
{
    size_t body_len = 0;
    mxu_http_req_body(req, &body_len);
    uint64_t n = body_len;
    size_t nh = mxu_http_req_header_count(req);
    for (size_t i = 0; i < nh; i++) {
        const char *hn, *hv;
        size_t hnl, hvl;
        mxu_http_req_header_at_len(req, i, &hn, &hnl, &hv, &hvl);
        n += hnl + hvl + 4;
    }
    return n;
}

/* ---- held answers ---- */

typedef struct held {
    mxu_http_req *req;
    int status;
    size_t nhdrs;
    mxu_buf body;
    void (*done)(void *ud);
    void *done_ud;
    mxu_http_header *hdrs; /* points into the same allocation, then the strings */
} held;

static void on_recorded(void *ud, bool written)
{
    held *h = ud;
    if (written) {
        mxu_http_respond(h->req, h->status, h->hdrs, h->nhdrs, &h->body);
    } else {
        /* The node is stopping and its journal cannot be written: the
         * function's answer must not go out without its record. */
        static const mxu_http_header err[] = {{"Content-Type", "application/json"},
                                              {"X-Mxu-Error", "usage_unrecorded"}};
        static const char body[] =
            "{\"error\":{\"code\":\"usage_unrecorded\",\"message\":\"the node is stopping "
            "and could not write this invocation's usage record (see its log); its answer is "
            "withheld\"}}\n";
        mxu_buf_reset(&h->body);
        mxu_buf_append(&h->body, body, sizeof(body) - 1);
        mxu_http_respond(h->req, 503, err, MXU_ARRAY_LEN(err), &h->body);
    }
    mxu_buf_free(&h->body);
    if (h->done)
        h->done(h->done_ud);
    free(h);
}

void api_respond_metered(mxu_api *api, mxu_http_req *req, mxu_usage_record *rec, int status,
                         const mxu_http_header *hdrs, size_t nhdrs, mxu_buf *body,
                         void (*done)(void *ud), void *ud)
{
    if (api->cfg.meter == NULL) { /* rec is not read */
        mxu_http_respond(req, status, hdrs, nhdrs, body);
        if (done)
            done(ud);
        return;
    }
    rec->http_status = status;
    rec->bytes_out = body ? body->len : 0;
    for (size_t i = 0; i < nhdrs; i++)
        rec->bytes_out += strlen(hdrs[i].name) + strlen(hdrs[i].value) + 4;
    /* Almost always the record is in the journal as soon as it is recorded
     * (stored into the mapped ring): the answer leaves now. */
    if (mxu_meter_record(api->cfg.meter, rec, NULL, NULL)) {
        mxu_http_respond(req, status, hdrs, nhdrs, body);
        if (done)
            done(ud);
        return;
    }
    /* Else it waits until the record is written (when the writer has made
     * room in a full ring): copy the headers (the caller's go when this
     * returns), all in one allocation. */
    size_t bytes = 0;
    for (size_t i = 0; i < nhdrs; i++)
        bytes += strlen(hdrs[i].name) + strlen(hdrs[i].value) + 2;
    held *h = mxu_malloc(sizeof(*h) + nhdrs * sizeof(mxu_http_header) + bytes);
    h->req = req;
    h->status = status;
    h->hdrs = (mxu_http_header *)(h + 1);
    char *w = (char *)(h->hdrs + nhdrs);
    for (size_t i = 0; i < nhdrs; i++) {
        size_t nl = strlen(hdrs[i].name) + 1, vl = strlen(hdrs[i].value) + 1;
        memcpy(w, hdrs[i].name, nl);
        h->hdrs[i].name = w;
        w += nl;
        memcpy(w, hdrs[i].value, vl);
        h->hdrs[i].value = w;
        w += vl;
    }
    h->nhdrs = nhdrs;
    h->body = (mxu_buf){0};
    if (body) {
        h->body = *body;
        *body = (mxu_buf){0};
    }
    h->done = done;
    h->done_ud = ud;
    mxu_meter_when_written(api->cfg.meter, on_recorded, h);
}

void api_reject(mxu_api *api, mxu_http_req *req, const api_rejection *rj)
{
    char id[24], retry[16];
    uint64_t inv = mxu_sched_new_invocation_id(api->cfg.sched);
    snprintf(id, sizeof(id), "%016llx", (unsigned long long)inv);
    snprintf(retry, sizeof(retry), "%u", rj->retry_after_s);
    json_t *e =
        json_pack("{s:s, s:s, s:s}", "code", rj->code, "message", rj->message, "invocation", id);
    if (e == NULL) /* the message quotes client input that is not UTF-8 */
        e = json_pack("{s:s, s:s, s:s}", "code", rj->code, "message", "request rejected",
                      "invocation", id);
    if (rj->retry_after_s)
        json_object_set_new(e, "retry_after", json_integer(rj->retry_after_s));
    json_t *j = json_pack("{s:o}", "error", e);
    char *s = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    mxu_buf out = {0};
    mxu_buf_puts(&out, s ? s : "{}");
    mxu_buf_puts(&out, "\n");
    free(s);
    mxu_http_header h[4] = {{"Content-Type", "application/json"},
                            {"X-Mxu-Invocation-Id", id},
                            {"X-Mxu-Error", rj->code},
                            {"Retry-After", retry}};
    uint64_t now_ns = mxu_now_ns();
    uint64_t start_ns = mxu_http_req_start_ns(req);
    mxu_usage_record r = {
        .invocation = inv,
        .tenant = rj->tenant,
        .function = rj->function,
        .version = rj->version,
        .executor = "",
        .start_ms = mxu_wall_ms() - (now_ns > start_ns ? (now_ns - start_ns) / 1000000 : 0),
        .wall_us = now_ns > start_ns ? (now_ns - start_ns) / 1000 : 0,
        .memory_bytes = rj->memory_bytes,
        .status = MXU_USAGE_REJECTED,
        .code = rj->code,
        .bytes_in = api->cfg.meter ? api_request_bytes(req) : 0,
    };
    api_respond_metered(api, req, &r, rj->status, h, rj->retry_after_s ? 4 : 3, &out, NULL, NULL);
    mxu_buf_free(&out);
}

void api_reject_metered(mxu_api *api, mxu_http_req *req, const char *tenant, const char *function,
                        uint32_t version, int status, const char *code, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    api_reject(api, req,
               &(api_rejection){.tenant = tenant,
                                .function = function,
                                .version = version,
                                .status = status,
                                .code = code,
                                .message = msg});
}

/* ---- query parameters ---- */

/* The percent-decoded value of `key` in the query into out; false if absent,
 * empty, too long or badly encoded. */
static bool query_get(mxu_http_req *req, const char *key, char *out, size_t outlen)
{
    const char *q = mxu_http_req_query(req);
    size_t klen = strlen(key);
    while (q && *q) {
        const char *amp = strchr(q, '&');
        size_t len = amp ? (size_t)(amp - q) : strlen(q);
        if (len > klen && strncmp(q, key, klen) == 0 && q[klen] == '=') {
            size_t o = 0;
            for (size_t i = klen + 1; i < len; i++) {
                char c = q[i];
                if (c == '%') {
                    int hi = i + 2 < len ? api_hexval(q[i + 1]) : -1;
                    int lo = i + 2 < len ? api_hexval(q[i + 2]) : -1;
                    if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
                        return false;
                    c = (char)(hi * 16 + lo);
                    i += 2;
                } else if (c == '+') {
                    c = ' ';
                }
                if (o + 1 >= outlen)
                    return false;
                out[o++] = c;
            }
            out[o] = '\0';
            return o > 0;
        }
        q = amp ? amp + 1 : NULL;
    }
    return false;
}

static bool query_has(mxu_http_req *req, const char *key)
{
    const char *q = mxu_http_req_query(req);
    size_t klen = strlen(key);
    while (q && *q) {
        if (strncmp(q, key, klen) == 0 && (q[klen] == '=' || q[klen] == '&' || q[klen] == '\0'))
            return true;
        q = strchr(q, '&');
        q = q ? q + 1 : NULL;
    }
    return false;
}

/* Unix ms, or an ISO-8601 UTC date/time: 2026-11-30, 2026-11-30T05:18:01Z. */
int api_parse_time_ms(const char *s, uint64_t *out)
{
    if (mxu_parse_u64(s, out) == 0)
        return 0;
    struct tm tm = {0};
    const char *end = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
    if (end == NULL) {
        memset(&tm, 0, sizeof(tm));
        end = strptime(s, "%Y-%m-%d", &tm);
    }
    if (end == NULL || (*end != '\0' && strcmp(end, "Z") != 0))
        return -1;
    time_t t = timegm(&tm);
    if (t < 0)
        return -1;
    *out = (uint64_t)t * 1000;
    return 0;
}

/* ---- /v1/usage, /v1/bills, /v1/prices ---- */

static bool metering_on(mxu_api *api, mxu_http_req *req)
{
    if (api->cfg.meter)
        return true;
    api_error(req, 409, "metering_off", NULL,
              "metering is off on this node (mxu serve --metering off); no usage is kept");
    return false;
}

static int usage_filter(mxu_http_req *req, mxu_usage_filter *f, char *tenant, char *function,
                        size_t len)
{
    memset(f, 0, sizeof(*f));
    char v[64];
    if (query_get(req, "tenant", tenant, len))
        f->tenant = tenant;
    if (query_get(req, "function", function, len))
        f->function = function;
    if (query_get(req, "since", v, sizeof(v)) && api_parse_time_ms(v, &f->since_ms) < 0) {
        api_error(req, 400, "bad_request", NULL,
                  "since: '%s' is not unix milliseconds or an ISO-8601 UTC time", v);
        return -1;
    }
    if (query_get(req, "until", v, sizeof(v)) && api_parse_time_ms(v, &f->until_ms) < 0) {
        api_error(req, 400, "bad_request", NULL,
                  "until: '%s' is not unix milliseconds or an ISO-8601 UTC time", v);
        return -1;
    }
    uint64_t n;
    if (query_get(req, "limit", v, sizeof(v))) {
        if (mxu_parse_u64(v, &n) < 0 || n == 0 || n > 10000) {
            api_error(req, 400, "bad_request", NULL, "limit: a number from 1 to 10000");
            return -1;
        }
        f->limit = n;
    }
    if (query_get(req, "before", v, sizeof(v))) {
        if (mxu_parse_u64(v, &n) < 0) {
            api_error(req, 400, "bad_request", NULL, "before: the 'next' of a previous page");
            return -1;
        }
        f->before = n;
    }
    return 0;
}

static void get_usage(mxu_api *api, mxu_http_req *req, const char *only_tenant)
{
    char tenant[128], function[128];
    mxu_usage_filter f;
    if (usage_filter(req, &f, tenant, function, sizeof(tenant)) < 0)
        return;
    if (only_tenant)
        f.tenant = only_tenant; /* whatever the query said: see api_meter_route */
    mxu_err err;
    uint64_t next = 0;
    json_t *j = mxu_meter_query(api->cfg.meter, &f, &next, &err);
    if (j == NULL) {
        api_error(req, 500, "internal", NULL, "%s", err.msg);
        return;
    }
    json_object_set_new(j, "next", next ? json_integer((json_int_t)next) : json_null());
    if (query_has(req, "aggregate")) {
        json_t *agg = mxu_meter_aggregate(api->cfg.meter, &f, &err);
        if (agg == NULL) {
            json_decref(j);
            api_error(req, 500, "internal", NULL, "%s", err.msg);
            return;
        }
        json_object_set_new(j, "aggregates", agg);
    }
    api_json(req, 200, j);
}

static void get_bill(mxu_api *api, mxu_http_req *req, const char *only_tenant)
{
    char tenant[128], month[16];
    bool named = query_get(req, "tenant", tenant, sizeof(tenant));
    if (only_tenant)
        named = snprintf(tenant, sizeof(tenant), "%s", only_tenant) > 0;
    if (!named || !query_get(req, "month", month, sizeof(month))) {
        api_error(req, 400, "bad_request", NULL,
                  "a bill is GET /v1/bills?tenant=TENANT&month=YYYY-MM");
        return;
    }
    mxu_err err;
    json_t *j = mxu_meter_bill(api->cfg.meter, tenant, month, &err);
    if (j == NULL) {
        api_error(req, err.code == EINVAL ? 400 : 500,
                  err.code == EINVAL ? "bad_request" : "internal", NULL, "%s", err.msg);
        return;
    }
    api_json(req, 200, j);
}

/* ---- reads wait for ingestion ----
 * A record is in the journal when its answer leaves, and in usage.db a few
 * milliseconds later. A read first waits (without blocking the loop) until
 * everything recorded so far is in usage.db, so it sees every record whose
 * answer went out, the caller's own invocations included. */

#define READ_WAIT_MS 10000

typedef void (*read_fn)(mxu_api *api, mxu_http_req *req, const char *only_tenant);

typedef struct read_wait {
    mxu_api *api;
    mxu_http_req *req;
    read_fn run;
    char *only_tenant; /* a copy: the caller's may not outlive the wait */
    bool gone;
} read_wait;

static void on_read_abort(mxu_http_req *req, void *ud)
{
    read_wait *w = ud;
    w->gone = true; /* the sync still runs: it frees w */
    mxu_http_respond(req, 499, NULL, 0, NULL);
}

static void on_read_ready(void *ud, bool ingested)
{
    read_wait *w = ud;
    if (!w->gone) {
        mxu_http_req_on_abort(w->req, NULL, NULL);
        if (ingested)
            w->run(w->api, w->req, w->only_tenant);
        else
            api_error(w->req, 503, "usage_behind", NULL,
                      "usage records are not all in usage.db yet after %d s (the disk is slow or "
                      "failing: see the node's log); retry",
                      READ_WAIT_MS / 1000);
    }
    free(w->only_tenant);
    free(w);
}

static void after_ingest(mxu_api *api, mxu_http_req *req, read_fn run, const char *only_tenant)
{
    read_wait *w = mxu_calloc(1, sizeof(*w));
    w->api = api;
    w->req = req;
    w->run = run;
    w->only_tenant = only_tenant ? mxu_strdup(only_tenant) : NULL;
    mxu_http_req_on_abort(req, on_read_abort, w);
    mxu_meter_sync(api->cfg.meter, READ_WAIT_MS, on_read_ready, w);
}

static void prices(mxu_api *api, mxu_http_req *req)
{
    if (strcmp(mxu_http_req_method(req), "GET") == 0) {
        api_json(req, 200, mxu_prices_to_json(mxu_meter_prices(api->cfg.meter)));
        return;
    }
    size_t len;
    const char *body = mxu_http_req_body(req, &len);
    json_error_t jerr;
    /* JSON_DECODE_INT_AS_REAL is not used: numbers are refused anyway. */
    json_t *j = json_loadb(body ? body : "", len, 0, &jerr);
    if (j == NULL || !json_is_object(j)) {
        json_decref(j);
        api_error(req, 400, "bad_request", NULL, "the body must be a JSON object of prices%s%s",
                  j ? "" : ": ", j ? "" : jerr.text);
        return;
    }
    mxu_err err;
    mxu_prices *p = mxu_prices_from_json(j, &err);
    json_decref(j);
    if (p == NULL) {
        api_error(req, 400, "invalid_price", NULL, "%s", err.msg);
        return;
    }
    if (mxu_meter_set_prices(api->cfg.meter, p, &err) < 0) {
        mxu_prices_free(p);
        api_error(req, 500, "internal", NULL, "%s", err.msg);
        return;
    }
    api_json(req, 200, mxu_prices_to_json(mxu_meter_prices(api->cfg.meter)));
}

bool api_meter_route(mxu_api *api, mxu_http_req *req, const char *const *seg, size_t nseg,
                     const char *only_tenant)
{
    if (nseg != 1)
        return false;
    const char *method = mxu_http_req_method(req);
    bool get = strcmp(method, "GET") == 0;
    if (strcmp(seg[0], "usage") == 0) {
        if (!get)
            api_method_not_allowed(req, "GET");
        else if (metering_on(api, req))
            after_ingest(api, req, get_usage, only_tenant);
        return true;
    }
    if (strcmp(seg[0], "bills") == 0) {
        if (!get)
            api_method_not_allowed(req, "GET");
        else if (metering_on(api, req))
            after_ingest(api, req, get_bill, only_tenant);
        return true;
    }
    if (strcmp(seg[0], "prices") == 0) {
        if (!get && strcmp(method, "PUT") != 0)
            api_method_not_allowed(req, "GET, PUT");
        else if (metering_on(api, req))
            prices(api, req);
        return true;
    }
    return false;
}
