/*
 * The meter: price parsing, money formatting, bill arithmetic (against an
 * independent bignum computation over random records), the packed record
 * form, the journal (framing, a torn tail cut at replay, replay after a
 * kill -9 between write and ingest, idempotent replay, rotation), and the
 * store (records written before their callback, queries after a sync,
 * bills from what was stored, prices kept across a reopen), and its batch
 * rows and month sums (sums equal to the records', a query across many rows
 * and tenants, paging, replay after a crash, the old row-per-record format).
 */
#include "meter/meter-internal.h"
#include "test.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <xxhash.h>
#include <zlib.h>

typedef unsigned __int128 u128;

/* ---- prices ---- */

static uint64_t parse_ok(const char *s)
{
    uint64_t v = 0;
    mxu_err err;
    if (mxu_money_parse(s, "f", &v, &err) < 0)
        MXU_TEST_FAIL_("'%s' refused: %s", s, err.msg);
    return v;
}

static void test_parse(void)
{
    CHECK_EQ_U64(parse_ok("0"), 0);
    CHECK_EQ_U64(parse_ok("1"), 1000000000000ull);
    CHECK_EQ_U64(parse_ok("0.09"), 90000000000ull);
    CHECK_EQ_U64(parse_ok("0.0000166667"), 16666700ull);
    CHECK_EQ_U64(parse_ok("0.000000000001"), 1);
    CHECK_EQ_U64(parse_ok("12.5"), 12500000000000ull);
    CHECK_EQ_U64(parse_ok("1000000"), 1000000ull * 1000000000000ull);
    CHECK_EQ_U64(parse_ok("007.10"), 7100000000000ull);
}

static void test_parse_refused(void)
{
    const char *bad[] = {"",
                         "-1",
                         "+1",
                         "1e3",
                         "1.",
                         "1.2.3",
                         "abc",
                         " 1",
                         "1 ",
                         "0x10",
                         "1,5",
                         ".5",
                         "1000000.000000000001",
                         "1000001",
                         "99999999999999999999",
                         "0.0000000000001"};
    for (size_t i = 0; i < MXU_ARRAY_LEN(bad); i++) {
        uint64_t v;
        mxu_err err;
        if (mxu_money_parse(bad[i], "per_gb_out", &v, &err) == 0)
            MXU_TEST_FAIL_("'%s' accepted as %llu", bad[i], (unsigned long long)v);
        CHECK_CONTAINS(err.msg, "per_gb_out");
    }
    mxu_err err;
    uint64_t v;
    CHECK(mxu_money_parse("0.0000000000001", "tenants.acme.per_request", &v, &err) < 0);
    CHECK_CONTAINS(err.msg, "tenants.acme.per_request");
    CHECK_CONTAINS(err.msg, "more than 12 decimal places");
}

static void test_format(void)
{
    char s[64];
    mxu_money_format(0, s, sizeof(s));
    CHECK_STR(s, "0.00");
    mxu_money_format(1, s, sizeof(s));
    CHECK_STR(s, "0.000000000001");
    mxu_money_format(90000000000ull, s, sizeof(s));
    CHECK_STR(s, "0.09");
    mxu_money_format(1500000000000ull, s, sizeof(s));
    CHECK_STR(s, "1.50");
    mxu_money_format(~(u128)0, s, sizeof(s));
    /* 2^128 - 1 = 340282366920938463463374607431768211455 */
    CHECK_STR(s, "340282366920938463463374607.431768211455");
    /* Every parsed price formats back to a string that parses to the same. */
    const char *round[] = {"0.0000002", "0.0000166667", "12.345678901234", "1000000"};
    for (size_t i = 0; i < MXU_ARRAY_LEN(round); i++) {
        uint64_t v = parse_ok(round[i]);
        mxu_money_format(v, s, sizeof(s));
        CHECK_EQ_U64(parse_ok(s), v);
    }
}

static void test_price_table(void)
{
    json_error_t jerr;
    json_t *j = json_loads("{\"currency\":\"EUR\",\"per_request\":\"0.000001\","
                           "\"tenants\":{\"acme\":{\"per_gb_out\":\"0.01\"}}}",
                           0, &jerr);
    mxu_err err;
    mxu_prices *p = mxu_prices_from_json(j, &err);
    json_decref(j);
    CHECK(p != NULL);
    CHECK_STR(mxu_prices_currency(p), "EUR");
    mxu_price d = mxu_prices_for(p, "default"), a = mxu_prices_for(p, "acme");
    CHECK_EQ_U64(d.per_request, 1000000);
    CHECK_EQ_U64(d.per_gb_second, 16666700); /* built-in default kept */
    CHECK_EQ_U64(d.per_gb_out, 90000000000ull);
    CHECK_EQ_U64(a.per_request, 1000000); /* override only where given */
    CHECK_EQ_U64(a.per_gb_out, 10000000000ull);
    json_t *back = mxu_prices_to_json(p);
    mxu_prices *p2 = mxu_prices_from_json(back, &err);
    CHECK(p2 != NULL);
    CHECK_EQ_U64(mxu_prices_for(p2, "acme").per_gb_out, 10000000000ull);
    json_decref(back);
    mxu_prices_free(p);
    mxu_prices_free(p2);

    /* Numbers, unknown keys and bad tenants are refused, naming the field. */
    const char *bad[][2] = {
        {"{\"per_request\": 0.1}", "per_request"},
        {"{\"per_requests\": \"0.1\"}", "per_requests"},
        {"{\"tenants\": {\"acme\": {\"per_gb_out\": \"1e-3\"}}}", "tenants.acme.per_gb_out"},
        {"{\"tenants\": {\"Bad Name\": {}}}", "tenants"},
        {"{\"currency\": \"U$D\"}", "currency"},
    };
    for (size_t i = 0; i < MXU_ARRAY_LEN(bad); i++) {
        j = json_loads(bad[i][0], 0, &jerr);
        CHECK(j != NULL);
        CHECK(mxu_prices_from_json(j, &err) == NULL);
        CHECK_CONTAINS(err.msg, bad[i][1]);
        json_decref(j);
    }
}

/* ---- bills ---- */

/* An independent exact computation: little-endian base-2^32 bignums. */
typedef struct big {
    uint32_t w[12];
} big;

static void big_set(big *b, u128 v)
{
    memset(b, 0, sizeof(*b));
    for (int i = 0; i < 4; i++)
        b->w[i] = (uint32_t)(v >> (32 * i));
}
static void big_add(big *a, const big *b)
{
    uint64_t c = 0;
    for (int i = 0; i < 12; i++) {
        c += (uint64_t)a->w[i] + b->w[i];
        a->w[i] = (uint32_t)c;
        c >>= 32;
    }
}
static void big_mul_small(big *a, uint32_t m)
{
    uint64_t c = 0;
    for (int i = 0; i < 12; i++) {
        c += (uint64_t)a->w[i] * m;
        a->w[i] = (uint32_t)c;
        c >>= 32;
    }
}
static void big_mul64(big *a, uint64_t m)
{
    big lo = *a, hi = *a;
    big_mul_small(&lo, (uint32_t)m);
    big_mul_small(&hi, (uint32_t)(m >> 32));
    /* hi << 32 */
    for (int i = 11; i > 0; i--)
        hi.w[i] = hi.w[i - 1];
    hi.w[0] = 0;
    big_add(&lo, &hi);
    *a = lo;
}
static void big_shr(big *a, int n) /* n < 32 */
{
    for (int i = 0; i < 12; i++)
        a->w[i] = (a->w[i] >> n) | (i + 1 < 12 ? a->w[i + 1] << (32 - n) : 0);
}
static void big_div_small(big *a, uint32_t d)
{
    uint64_t r = 0;
    for (int i = 11; i >= 0; i--) {
        uint64_t cur = (r << 32) | a->w[i];
        a->w[i] = (uint32_t)(cur / d);
        r = cur % d;
    }
}
static u128 big_get(const big *b)
{
    for (int i = 4; i < 12; i++)
        CHECK(b->w[i] == 0);
    u128 v = 0;
    for (int i = 3; i >= 0; i--)
        v = (v << 32) | b->w[i];
    return v;
}
/* round_half_up(q * p / (2^shift * div)) = floor((2qp + D) / 2D). */
static u128 ref_line(const big *q, uint64_t p, int shift, uint32_t div)
{
    big x = *q;
    big_mul64(&x, p);
    big_mul_small(&x, 2);
    big d;
    big_set(&d, ((u128)1 << shift) * div);
    big_add(&x, &d);
    big_shr(&x, 30); /* 2D = 2^(shift+1) * div, shift = 30 */
    if (shift + 1 > 30)
        big_shr(&x, shift + 1 - 30);
    big_div_small(&x, div);
    return big_get(&x);
}

static uint64_t rnd64(void)
{
    return ((uint64_t)(uint32_t)random() << 33) ^ ((uint64_t)(uint32_t)random() << 11) ^
           (uint64_t)(uint32_t)random();
}

static void test_bill_property(void)
{
    srandom(12345);
    for (int round = 0; round < 2000; round++) {
        mxu_price price = {
            .per_request = rnd64() % (MXU_PRICE_MAX_UNITS * MXU_PICO_PER_UNIT + 1),
            .per_gb_second = rnd64() % (round % 3 ? 100000000ull : MXU_PICO_PER_UNIT * 1000),
            .per_gb_out = rnd64() % (round % 2 ? 1000000000000ull : 1000),
        };
        int n = (int)(random() % 50);
        mxu_bill_usage u = {0};
        big q_mem, q_out, tmp;
        big_set(&q_mem, 0);
        big_set(&q_out, 0);
        uint64_t requests = 0;
        for (int i = 0; i < n; i++) {
            /* memory up to 1 TiB, billed up to ~12 days, responses up to 1 TiB:
             * far past what a record holds, to stress the 128-bit paths. */
            uint64_t mem = rnd64() % (1ull << 40), ms = rnd64() % (1ull << 30);
            uint64_t out = rnd64() % (1ull << 40);
            if (random() % 5 == 0)
                ms = 0;
            requests++;
            u.mem_byte_ms += (u128)mem * ms;
            u.bytes_out += out;
            big_set(&tmp, mem);
            big_mul64(&tmp, ms);
            big_add(&q_mem, &tmp);
            big_set(&tmp, out);
            big_add(&q_out, &tmp);
        }
        u.requests = requests;
        mxu_bill b;
        mxu_err err;
        CHECK(mxu_bill_compute(&u, &price, &b, &err) == 0);
        CHECK(b.requests_pico == (u128)requests * price.per_request);
        u128 c = ref_line(&q_mem, price.per_gb_second, 30, 1000);
        u128 o = ref_line(&q_out, price.per_gb_out, 30, 1);
        if (b.compute_pico != c || b.data_out_pico != o)
            MXU_TEST_FAIL_("round %d: bill differs from the reference", round);
        CHECK(b.total_pico == b.requests_pico + c + o);
    }
}

static void test_bill_edges(void)
{
    mxu_price price = {
        .per_request = 200000, .per_gb_second = 16666700, .per_gb_out = 90000000000ull};
    mxu_bill b;
    mxu_err err;
    /* Nothing: zero everywhere. */
    mxu_bill_usage u = {0};
    CHECK(mxu_bill_compute(&u, &price, &b, &err) == 0);
    CHECK(b.total_pico == 0);
    /* Exactly 1 GB-s: 2^30 bytes for 1000 ms costs the unit price. */
    u.mem_byte_ms = (u128)(1ull << 30) * 1000;
    CHECK(mxu_bill_compute(&u, &price, &b, &err) == 0);
    CHECK(b.compute_pico == 16666700);
    /* Half a pico rounds up, just under half rounds down. */
    mxu_price one = {.per_gb_out = 1};
    u = (mxu_bill_usage){.bytes_out = 1ull << 29}; /* half a GB at 1 pico/GB = 0.5 pico */
    CHECK(mxu_bill_compute(&u, &one, &b, &err) == 0);
    CHECK(b.data_out_pico == 1);
    u.bytes_out = (1ull << 29) - 1;
    CHECK(mxu_bill_compute(&u, &one, &b, &err) == 0);
    CHECK(b.data_out_pico == 0);
    /* Huge counts: 2^64-1 requests at the largest price still fit. */
    mxu_price max = {.per_request = MXU_PRICE_MAX_UNITS * MXU_PICO_PER_UNIT,
                     .per_gb_second = MXU_PRICE_MAX_UNITS * MXU_PICO_PER_UNIT,
                     .per_gb_out = MXU_PRICE_MAX_UNITS * MXU_PICO_PER_UNIT};
    u = (mxu_bill_usage){.requests = UINT64_MAX, .mem_byte_ms = (u128)UINT64_MAX * 1000};
    CHECK(mxu_bill_compute(&u, &max, &b, &err) == 0);
    CHECK(b.requests_pico == (u128)UINT64_MAX * max.per_request);
    /* UINT64_MAX GB-s... of 2^30-byte ms: exactly UINT64_MAX / 2^30 GB-s, rounded. */
    CHECK(b.compute_pico == ((u128)UINT64_MAX * max.per_gb_second + (1u << 29)) / (1u << 30));
    /* Past 128 bits: an error, not a wrapped amount. */
    u = (mxu_bill_usage){.bytes_out = ~(u128)0};
    CHECK(mxu_bill_compute(&u, &max, &b, &err) < 0);
    CHECK_EQ_INT(err.code, ERANGE);
}

static void test_month(void)
{
    uint64_t a, b;
    mxu_err err;
    CHECK(mxu_month_range("2026-11", &a, &b, &err) == 0);
    CHECK_EQ_U64(a, 1793491200000ull); /* 2026-11-01T00:00:00Z */
    CHECK_EQ_U64(b, 1796083200000ull); /* 2026-12-01T00:00:00Z */
    CHECK(mxu_month_range("2026-12", &a, &b, &err) == 0);
    CHECK_EQ_U64(b, 1798761600000ull); /* 2027-01-01 */
    const char *bad[] = {"2026-13", "2026-1", "26-11", "2026-11x", "2026/11", ""};
    for (size_t i = 0; i < MXU_ARRAY_LEN(bad); i++)
        CHECK(mxu_month_range(bad[i], &a, &b, &err) < 0);
}

/* ---- records ---- */

static mxu_usage_record sample(uint64_t id)
{
    return (mxu_usage_record){.invocation = id,
                              .tenant = "default",
                              .function = "hello",
                              .version = 3,
                              .executor = "process",
                              .start_ms = 1796029010811ull,
                              .wall_us = 892,
                              .billed_ms = 1,
                              .memory_bytes = 64u << 20,
                              .cpu_us = 120,
                              .peak_bytes = 1458176,
                              .bytes_in = 61,
                              .bytes_out = 122,
                              .cold = true,
                              .status = MXU_USAGE_OK,
                              .http_status = 200,
                              .code = "",
                              .caller = 0,
                              .caller_function = ""};
}

static void test_record_encoding(void)
{
    mxu_usage_record r = sample(42);
    r.code = "queue,\"full\"";
    r.caller = 7;
    r.caller_function = "orders@2";
    mxu_buf b = {0};
    mxu_usage_record_encode(&r, &b);
    mxu_usage_record d;
    CHECK(mxu_usage_record_decode(b.data, b.len, &d) == 0);
    CHECK_EQ_U64(d.invocation, 42);
    CHECK_STR(d.tenant, "default");
    CHECK_STR(d.function, "hello");
    CHECK_STR(d.executor, "process");
    CHECK_STR(d.code, "queue,\"full\"");
    CHECK_STR(d.caller_function, "orders@2");
    CHECK_EQ_U64(d.caller, 7);
    CHECK_EQ_U64(d.memory_bytes, 64u << 20);
    CHECK_EQ_INT(d.http_status, 200);
    CHECK(d.cold);
    /* Every truncation and a corrupted length are refused. */
    for (size_t n = 0; n < b.len; n++)
        CHECK(mxu_usage_record_decode(b.data, n, &d) < 0);
    b.data[b.len - 2] = 'x'; /* the last string's NUL */
    mxu_buf_append(&b, "", 1);
    CHECK(mxu_usage_record_decode(b.data, b.len, &d) < 0);
    mxu_buf_free(&b);

    /* The compact form: extremes come back exactly; a small record is
     * small; a varint longer than 64 bits is refused. */
    mxu_usage_record x = sample(UINT64_MAX);
    x.start_ms = 0;
    x.bytes_out = 1ull << 63;
    x.cpu_us = UINT64_MAX - 1;
    x.version = UINT32_MAX;
    x.http_status = -1;
    x.status = MXU_USAGE_REJECTED;
    x.cold = false;
    mxu_usage_record_encode(&x, &b);
    CHECK(mxu_usage_record_decode(b.data, b.len, &d) == 0);
    CHECK_EQ_U64(d.invocation, UINT64_MAX);
    CHECK_EQ_U64(d.start_ms, 0);
    CHECK_EQ_U64(d.bytes_out, 1ull << 63);
    CHECK_EQ_U64(d.cpu_us, UINT64_MAX - 1);
    CHECK_EQ_U64(d.version, UINT32_MAX);
    CHECK_EQ_INT(d.http_status, -1);
    CHECK_EQ_INT(d.status, MXU_USAGE_REJECTED);
    CHECK(!d.cold);
    mxu_buf_reset(&b);
    mxu_usage_record w = sample(1);
    mxu_usage_record_encode(&w, &b);
    CHECK(b.len < 80); /* was 129 in the fixed layout */
    mxu_buf_reset(&b);
    mxu_buf_append(&b, "\xff\xff\xff\xff\xff\xff\xff\xff\xff\x7f", 10); /* 70 bits */
    for (int i = 1; i < 12; i++)
        mxu_buf_append(&b, "\x01", 1);
    mxu_buf_append(&b, "\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00", 11);
    CHECK(mxu_usage_record_decode(b.data, b.len, &d) < 0);
    b.data[9] = 0x01; /* 64 bits exactly: accepted */
    CHECK(mxu_usage_record_decode(b.data, b.len, &d) == 0);
    CHECK_EQ_U64(d.invocation, UINT64_MAX);
    mxu_buf_free(&b);

    /* CSV: quoted where needed, same columns as the header. */
    mxu_buf csv = {0}, hdr = {0};
    mxu_usage_record_csv(&r, &csv);
    mxu_usage_csv_header(&hdr);
    CHECK_CONTAINS(csv.data, ",\"queue,\"\"full\"\"\",");
    CHECK_CONTAINS(csv.data, "000000000000002a,default,hello,3,process,");
    mxu_buf_free(&csv);
    mxu_buf_free(&hdr);
    json_t *j = mxu_usage_record_json(&r);
    CHECK_STR(json_string_value(json_object_get(j, "status")), "ok");
    CHECK_STR(json_string_value(json_object_get(j, "caller")), "0000000000000007");
    json_decref(j);
    CHECK_EQ_U64(mxu_usage_billed_ms(0), 0);
    CHECK_EQ_U64(mxu_usage_billed_ms(1), 1);
    CHECK_EQ_U64(mxu_usage_billed_ms(1000), 1);
    CHECK_EQ_U64(mxu_usage_billed_ms(1001), 2);
}

/* ---- the store ---- */

/* ---- the journal ---- */

static int count_record(void *ud, const mxu_usage_record *r)
{
    CHECK_STR(r->tenant, "default");
    (*(uint64_t *)ud)++;
    return 0;
}

static void test_journal_framing(void)
{
    mxu_buf b = {0};
    size_t ends[20];
    for (int i = 0; i < 20; i++) {
        mxu_usage_record r = sample((uint64_t)i + 1);
        r.function = i % 3 ? "hello" : "a-longer-function-name";
        mxu_journal_append(&b, &r, 0);
        ends[i] = b.len;
    }
    uint64_t seen = 0;
    CHECK_EQ_U64(mxu_journal_scan(b.data, b.len, 0, true, count_record, &seen), b.len);
    CHECK_EQ_U64(seen, 20);
    /* Every cut is scanned up to the last whole frame before it. */
    for (size_t n = 0; n <= b.len; n++) {
        size_t want = 0;
        for (int i = 0; i < 20 && ends[i] <= n; i++)
            want = ends[i];
        CHECK_EQ_U64(mxu_journal_scan(b.data, n, 0, true, NULL, NULL), want);
    }
    /* Any byte of the last frame flipped: that frame is cut, the rest kept. */
    for (size_t at = ends[18]; at < ends[19]; at++) {
        b.data[at] ^= 0x40;
        CHECK_EQ_U64(mxu_journal_scan(b.data, b.len, 0, true, NULL, NULL), ends[18]);
        b.data[at] ^= 0x40;
    }
    /* Zeros (a file extended but never written) are not a frame. */
    size_t len = b.len;
    mxu_buf_append(&b, "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0", 16);
    CHECK_EQ_U64(mxu_journal_scan(b.data, b.len, 0, true, NULL, NULL), len);
    mxu_buf_free(&b);
}

static int durable_count;
static int lost_count;
static void on_durable(void *ud, bool written)
{
    MXU_UNUSED(ud);
    if (written)
        durable_count++;
    else
        lost_count++;
}

static void on_synced(void *ud, bool ok)
{
    *(int *)ud = ok ? 1 : -1;
}

/* Run the loop until everything recorded so far is in usage.db. */
static int sync_wait(uv_loop_t *loop, mxu_meter *m)
{
    int done = 0;
    mxu_meter_sync(m, 20000, on_synced, &done);
    CHECK_EQ_INT(done, 0); /* never before returning */
    while (done == 0)
        uv_run(loop, UV_RUN_ONCE);
    return done;
}

static uint64_t stored_count(uv_loop_t *loop, mxu_meter *m)
{
    CHECK_EQ_INT(sync_wait(loop, m), 1);
    mxu_usage_filter f = {.limit = 10000};
    uint64_t next;
    mxu_err err;
    json_t *j = mxu_meter_query(m, &f, &next, &err);
    CHECK(j != NULL);
    json_t *recs = json_object_get(j, "records"), *r;
    size_t i;
    /* Every id once: a replay never inserts twice. */
    uint64_t n = json_array_size(recs);
    char *seen = calloc(n + 1, 1);
    json_array_foreach(recs, i, r)
    {
        uint64_t id = strtoull(json_string_value(json_object_get(r, "invocation")), NULL, 16);
        CHECK(id >= 1 && id <= n);
        CHECK(!seen[id]);
        seen[id] = 1;
    }
    free(seen);
    json_decref(j);
    return n;
}

static char *journal_dir(void)
{
    char tmpl[] = "/tmp/mxu-test-journal-XXXXXX";
    CHECK(mkdtemp(tmpl) != NULL);
    return strdup(tmpl);
}

/* In a child: open the meter, record `ingested` records (ids from first + 1)
 * and sync them into usage.db, record the rest of `total` and let one loop
 * turn write them (their
 * callbacks ran: their answers would have gone out), then die by SIGKILL
 * before the writer (interval: an hour) ingests them. */
static void killed_node(const char *dir, int first, int ingested, int total)
{
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        setenv("MXU_METER_INGEST_MS", "3600000", 1);
        char *path = mxu_path_join(dir, "usage.db");
        uv_loop_t loop;
        uv_loop_init(&loop);
        mxu_meter *m;
        mxu_err err;
        if (mxu_meter_open(&loop, path, NULL, &m, &err) < 0)
            _exit(2);
        for (int i = 1; i <= total; i++) {
            mxu_usage_record r = sample((uint64_t)(first + i));
            mxu_meter_record(m, &r, on_durable, NULL);
            if (i == ingested && sync_wait(&loop, m) != 1)
                _exit(3);
        }
        /* A record the ring had no room for waits for the writer. */
        for (int turns = 0; durable_count < total && turns < 100000; turns++)
            uv_run(&loop, turns ? UV_RUN_ONCE : UV_RUN_NOWAIT);
        if (durable_count != total)
            _exit(4);
        kill(getpid(), SIGKILL);
        _exit(5);
    }
    int st;
    CHECK(waitpid(pid, &st, 0) == pid);
    CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
}

static mxu_meter *open_at(uv_loop_t *loop, const char *dir)
{
    char *path = mxu_path_join(dir, "usage.db");
    mxu_meter *m;
    mxu_err err;
    if (mxu_meter_open(loop, path, NULL, &m, &err) < 0)
        MXU_TEST_FAIL_("open: %s", err.msg);
    free(path);
    return m;
}

static void close_at(uv_loop_t *loop, mxu_meter *m)
{
    mxu_meter_close(m);
    uv_run(loop, UV_RUN_DEFAULT);
}

/* A frame as nodes before the compact form wrote it: the record in the
 * fixed layout (the numbers as this struct, then five strings with u16
 * lengths and NULs), checked with crc32 (no flag: "mxujrnl1" segments) or
 * XXH3 (flag 0x80000000, seeded with the length word). */
typedef struct old_fixed {
    uint64_t invocation, start_ms, wall_us, billed_ms, memory_bytes, cpu_us, peak_bytes, bytes_in,
        bytes_out, caller;
    uint32_t version;
    int32_t http_status;
    uint8_t status, cold;
} old_fixed;

static void old_frame(mxu_buf *b, const mxu_usage_record *r, bool xxh)
{
    mxu_buf p = {0};
    old_fixed f;
    memset(&f, 0, sizeof(f));
    f = (old_fixed){r->invocation,      r->start_ms, r->wall_us,    r->billed_ms,
                    r->memory_bytes,    r->cpu_us,   r->peak_bytes, r->bytes_in,
                    r->bytes_out,       r->caller,   r->version,    r->http_status,
                    (uint8_t)r->status, r->cold};
    mxu_buf_append(&p, &f, sizeof(f));
    const char *strs[5] = {r->tenant, r->function, r->executor, r->code, r->caller_function};
    for (int i = 0; i < 5; i++) {
        uint16_t n = (uint16_t)strlen(strs[i]);
        mxu_buf_append(&p, &n, sizeof(n));
        mxu_buf_append(&p, strs[i], n + 1u);
    }
    uint32_t hdr[2] = {(uint32_t)p.len | (xxh ? 0x80000000u : 0), 0};
    if (xxh) {
        hdr[1] = (uint32_t)XXH3_64bits_withSeed(p.data, p.len, hdr[0]);
    } else {
        uLong c = crc32(0L, Z_NULL, 0);
        c = crc32(c, (const Bytef *)&hdr[0], sizeof(hdr[0]));
        hdr[1] = (uint32_t)crc32(c, (const Bytef *)p.data, (uInt)p.len);
    }
    mxu_buf_append(b, hdr, sizeof(hdr));
    mxu_buf_append(b, p.data, p.len);
    mxu_buf_free(&p);
}

/* Journals and batch rows written before frames had XXH3 checks (crc32
 * frames, "mxujrnl1" segments), and before the compact form (fixed-layout
 * frames) are still read, checked and replayed. */
static void test_journal_crc32_frames_still_read(void)
{
    mxu_buf b = {0};
    for (int i = 0; i < 5; i++) {
        mxu_usage_record r = sample((uint64_t)i + 1);
        old_frame(&b, &r, false);
    }
    size_t len = b.len;
    uint64_t seen = 0;
    CHECK_EQ_U64(mxu_journal_scan(b.data, len, 0, true, count_record, &seen), len);
    CHECK_EQ_U64(seen, 5);
    b.data[len - 1] ^= 0x40; /* the crc32 is checked: the last frame is cut */
    CHECK(mxu_journal_scan(b.data, len, 0, true, NULL, NULL) < len);
    b.data[len - 1] ^= 0x40;
    /* Fixed-layout frames with XXH3 checks, then compact ones, in one run. */
    mxu_buf x = {0};
    for (int i = 0; i < 4; i++) {
        mxu_usage_record r = sample((uint64_t)i + 1);
        r.function = "a-function";
        old_frame(&x, &r, true);
    }
    size_t old_len = x.len;
    for (int i = 0; i < 4; i++) {
        mxu_usage_record r = sample((uint64_t)i + 1);
        mxu_journal_append(&x, &r, 0);
    }
    seen = 0;
    CHECK_EQ_U64(mxu_journal_scan(x.data, x.len, 0, true, count_record, &seen), x.len);
    CHECK_EQ_U64(seen, 8);
    CHECK(x.len - old_len < old_len * 3 / 4); /* the compact form is smaller */
    x.data[old_len - 1] ^= 0x40;
    CHECK(mxu_journal_scan(x.data, x.len, 0, true, NULL, NULL) < old_len);
    mxu_buf_free(&x);

    /* An old node's segment, killed before ingestion, replays. */
    char *dir = journal_dir();
    char *seg = mxu_journal_path(dir, 7);
    mxu_buf file = {0};
    uint64_t gen = 7;
    mxu_buf_append(&file, "mxujrnl1", 8);
    mxu_buf_append(&file, &gen, sizeof(gen));
    mxu_buf_append(&file, b.data, b.len);
    mxu_err err;
    CHECK(mxu_write_file_atomic(seg, file.data, file.len, 0600, &err) == 0);
    uv_loop_t loop;
    uv_loop_init(&loop);
    mxu_meter *m = open_at(&loop, dir);
    CHECK_EQ_U64(stored_count(&loop, m), 5);
    close_at(&loop, m);
    CHECK(uv_loop_close(&loop) == 0);
    mxu_rm_rf(dir, NULL);
    free(seg);
    free(dir);
    mxu_buf_free(&file);
    mxu_buf_free(&b);
}

/* A journal that cannot take more holds the answers of the records past
 * what it took, and releases those it took; closing the meter then must not
 * release the held ones as recorded: their callbacks run with written
 * false. Reopened, the journal gives back exactly the records whose
 * callbacks said written. Here the ring (64 KiB) fills because usage.frames
 * cannot grow (RLIMIT_FSIZE, as a full disk), so the writer frees no space.
 * In a child, for the limit. */
static void test_unwritable_journal_at_close(void)
{
    char *dir = journal_dir();
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        signal(SIGXFSZ, SIG_IGN);
        setenv("MXU_METER_RING_BYTES", "65536", 1);
        uv_loop_t loop;
        uv_loop_init(&loop);
        mxu_meter *m = open_at(&loop, dir);
        struct stat st;
        char *db = mxu_path_join(dir, "usage.db");
        if (stat(db, &st) < 0)
            _exit(2);
        free(db);
        struct rlimit rl = {(rlim_t)st.st_size + 4096, RLIM_INFINITY};
        if (setrlimit(RLIMIT_FSIZE, &rl) < 0)
            _exit(2);
        const int N = 2500; /* ~150 KiB of records */
        int at_once = 0;
        for (int i = 1; i <= N; i++) {
            mxu_usage_record r = sample((uint64_t)i);
            at_once += mxu_meter_record(m, &r, on_durable, NULL);
        }
        uv_run(&loop, UV_RUN_NOWAIT); /* the ring is full: answers held */
        if (durable_count != at_once || at_once == 0 || lost_count != 0 || durable_count >= N)
            _exit(3);
        int durable = durable_count;
        mxu_meter_close(m);
        uv_run(&loop, UV_RUN_DEFAULT);
        if (durable_count != durable || lost_count != N - durable)
            _exit(4);
        rl.rlim_cur = RLIM_INFINITY;
        if (setrlimit(RLIMIT_FSIZE, &rl) < 0)
            _exit(5);
        m = open_at(&loop, dir);
        uint64_t stored = stored_count(&loop, m);
        close_at(&loop, m);
        _exit(stored == (uint64_t)durable ? 0 : 6);
    }
    int st;
    CHECK(waitpid(pid, &st, 0) == pid);
    CHECK(WIFEXITED(st));
    CHECK_EQ_INT(WEXITSTATUS(st), 0);
    mxu_rm_rf(dir, NULL);
    free(dir);
}

/* The ring of dir: its bytes, its first lap, where its records end (from
 * its start, the first lap: the tests' rings never wrapped). */
static void read_ring(const char *dir, mxu_buf *out, uint64_t *first_lap, size_t *data_end)
{
    char *path = mxu_ring_path(dir);
    mxu_err err;
    mxu_buf_reset(out);
    CHECK(mxu_read_file(path, SIZE_MAX / 2, out, &err) == 0);
    CHECK(out->len > MXU_RING_HDR);
    memcpy(first_lap, out->data + 16, 8);
    *data_end = MXU_RING_HDR + mxu_journal_scan(out->data + MXU_RING_HDR, out->len - MXU_RING_HDR,
                                                *first_lap, true, NULL, NULL);
    free(path);
}

static void ring_pwrite(const char *dir, const void *data, size_t len, size_t off)
{
    char *path = mxu_ring_path(dir);
    int fd = open(path, O_WRONLY);
    CHECK(fd >= 0);
    CHECK(pwrite(fd, data, len, (off_t)off) == (ssize_t)len);
    close(fd);
    free(path);
}

static void test_journal_replay_after_kill(void)
{
    char *dir = journal_dir();
    killed_node(dir, 0, 300, 700);
    /* After the killed node's records: a half-written frame, as a power
     * loss would leave it; then, behind it, a whole frame of the ring's
     * previous lap at the place where the next frame would go, as a stale
     * one of a lap before can sit there (records of one size line up). */
    mxu_buf ring = {0};
    uint64_t lap;
    size_t end;
    read_ring(dir, &ring, &lap, &end);
    CHECK(end > MXU_RING_HDR + 400 * 40); /* the 400 unread records are there */
    mxu_buf frame = {0};
    mxu_usage_record r = sample(9999);
    mxu_journal_append(&frame, &r, lap);
    ring_pwrite(dir, frame.data, frame.len / 2, end);
    uv_loop_t loop;
    uv_loop_init(&loop);
    mxu_meter *m = open_at(&loop, dir);
    CHECK_EQ_U64(stored_count(&loop, m), 700);
    json_t *stats = mxu_meter_stats_json(m);
    CHECK_EQ_U64(json_integer_value(json_object_get(stats, "replayed")), 400);
    json_decref(stats);
    close_at(&loop, m);

    mxu_buf_reset(&frame);
    r = sample(701);
    mxu_journal_append(&frame, &r, lap - 1);
    ring_pwrite(dir, frame.data, frame.len, end);
    m = open_at(&loop, dir);
    CHECK_EQ_U64(stored_count(&loop, m), 700); /* the stale one is not a record */
    close_at(&loop, m);
    /* The same frame sealed for this lap is one (the check above is what
     * tells them apart), and records go on after it. */
    mxu_journal_reseal(frame.data, lap);
    ring_pwrite(dir, frame.data, frame.len, end);
    m = open_at(&loop, dir);
    CHECK_EQ_U64(stored_count(&loop, m), 701);
    close_at(&loop, m);
    killed_node(dir, 701, 10, 30);
    m = open_at(&loop, dir);
    CHECK_EQ_U64(stored_count(&loop, m), 731);
    close_at(&loop, m);
    CHECK(uv_loop_close(&loop) == 0);
    mxu_buf_free(&frame);
    mxu_buf_free(&ring);
    mxu_rm_rf(dir, NULL);
    free(dir);
}

/* Replay is idempotent: a node that dies after replaying into usage.db
 * replays again from the stored position and adds nothing; the ring put
 * back as the killed node left it adds nothing either. */
static void test_journal_replay_idempotent(void)
{
    char *dir = journal_dir();
    killed_node(dir, 0, 50, 250);
    mxu_err err;
    mxu_buf saved = {0};
    uint64_t lap;
    size_t end;
    read_ring(dir, &saved, &lap, &end);
    uv_loop_t loop;
    uv_loop_init(&loop);
    mxu_meter *m = open_at(&loop, dir);
    CHECK_EQ_U64(stored_count(&loop, m), 250);
    close_at(&loop, m);
    char *path = mxu_ring_path(dir);
    CHECK(mxu_write_file_atomic(path, saved.data, saved.len, 0600, &err) == 0);
    m = open_at(&loop, dir);
    CHECK_EQ_U64(stored_count(&loop, m), 250);
    json_t *stats = mxu_meter_stats_json(m);
    CHECK_EQ_U64(json_integer_value(json_object_get(stats, "replayed")), 0);
    json_decref(stats);
    close_at(&loop, m);
    /* A second kill on top: each record once. */
    killed_node(dir, 250, 10, 20);
    m = open_at(&loop, dir);
    CHECK_EQ_U64(stored_count(&loop, m), 270);
    close_at(&loop, m);
    CHECK(uv_loop_close(&loop) == 0);
    free(path);
    mxu_buf_free(&saved);
    mxu_rm_rf(dir, NULL);
    free(dir);
}

/* A small ring (64 KiB) goes round many laps; every record is stored once,
 * across wraps and a reopen. Then a node killed with the writer held back
 * (it ingests only when the ring is full) leaves records across a wrap:
 * all replayed, each once. */
static void test_journal_wrap(void)
{
    setenv("MXU_METER_RING_BYTES", "65536", 1);
    setenv("MXU_METER_INGEST_MS", "1", 1);
    char *dir = journal_dir();
    uv_loop_t loop;
    uv_loop_init(&loop);
    mxu_meter *m = open_at(&loop, dir);
    json_t *stats = mxu_meter_stats_json(m);
    uint64_t lap0 = (uint64_t)json_integer_value(json_object_get(stats, "journal_lap"));
    json_decref(stats);
    uint64_t id = 0;
    for (int round = 0; round < 100; round++) {
        for (int i = 0; i < 40; i++) {
            mxu_usage_record r = sample(++id);
            r.function = i % 3 ? "hello" : "a-function-with-a-longer-name";
            mxu_meter_record(m, &r, NULL, NULL);
        }
        uv_run(&loop, UV_RUN_NOWAIT);
        if (round % 3 == 0)
            CHECK_EQ_INT(sync_wait(&loop, m), 1);
    }
    CHECK_EQ_U64(stored_count(&loop, m), id);
    stats = mxu_meter_stats_json(m);
    uint64_t lap = (uint64_t)json_integer_value(json_object_get(stats, "journal_lap"));
    uint64_t bytes = (uint64_t)json_integer_value(json_object_get(stats, "journal_bytes"));
    CHECK(bytes > 4000 * 40);
    CHECK(lap >= lap0 + bytes / 65536); /* a lap every 64 KiB */
    json_decref(stats);
    close_at(&loop, m);
    m = open_at(&loop, dir);
    CHECK_EQ_U64(stored_count(&loop, m), id);
    close_at(&loop, m);
    killed_node(dir, (int)id, 0, 3000); /* ~180 KiB: wraps, and fills the ring */
    m = open_at(&loop, dir);
    CHECK_EQ_U64(stored_count(&loop, m), id + 3000);
    stats = mxu_meter_stats_json(m);
    CHECK(json_integer_value(json_object_get(stats, "replayed")) > 0);
    json_decref(stats);
    close_at(&loop, m);
    CHECK(uv_loop_close(&loop) == 0);
    mxu_rm_rf(dir, NULL);
    free(dir);
    unsetenv("MXU_METER_RING_BYTES");
    unsetenv("MXU_METER_INGEST_MS");
}

static void test_store(void)
{
    char dir[] = "/tmp/mxu-test-meter-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char *path = mxu_path_join(dir, "usage.db");
    uv_loop_t loop;
    uv_loop_init(&loop);
    mxu_meter *m;
    mxu_err err;
    CHECK(mxu_meter_open(&loop, path, NULL, &m, &err) == 0);
    const int N = 500;
    for (int i = 1; i <= N; i++) {
        mxu_usage_record r = sample((uint64_t)i);
        r.function = i % 2 ? "hello" : "echo";
        r.status = i % 10 == 0 ? MXU_USAGE_REJECTED : MXU_USAGE_OK;
        r.billed_ms = r.status == MXU_USAGE_REJECTED ? 0 : (uint64_t)i;
        r.bytes_out = (uint64_t)i * 3;
        /* In the journal at once (the mapped segment has room)... */
        CHECK(mxu_meter_record(m, &r, on_durable, NULL));
    }
    /* ...but callbacks never run before returning. */
    CHECK_EQ_INT(durable_count, 0);
    /* One loop turn writes them all and releases every callback. */
    uv_run(&loop, UV_RUN_NOWAIT);
    CHECK_EQ_INT(durable_count, N);
    CHECK_EQ_INT(sync_wait(&loop, m), 1);
    /* Paging: newest first, every record once. */
    mxu_usage_filter f = {.limit = 64};
    int seen = 0;
    uint64_t next = 0, prev_id = UINT64_MAX;
    do {
        json_t *j = mxu_meter_query(m, &f, &next, &err);
        CHECK(j != NULL);
        json_t *recs = json_object_get(j, "records"), *r;
        size_t i;
        json_array_foreach(recs, i, r)
        {
            uint64_t id = strtoull(json_string_value(json_object_get(r, "invocation")), NULL, 16);
            CHECK(id < prev_id);
            prev_id = id;
            seen++;
        }
        json_decref(j);
        f.before = next;
    } while (next);
    CHECK_EQ_INT(seen, N);
    f = (mxu_usage_filter){.function = "echo", .limit = 1000};
    json_t *j = mxu_meter_query(m, &f, &next, &err);
    CHECK_EQ_INT(json_array_size(json_object_get(j, "records")), N / 2);
    json_decref(j);
    /* The bill's quantities are the billable records' sums. */
    mxu_bill_usage u;
    CHECK(mxu_meter_bill_usage(m, "default", 0, UINT64_MAX >> 1, &u, &err) == 0);
    uint64_t req = 0, ms = 0, out = 0;
    for (int i = 1; i <= N; i++) {
        if (i % 10 == 0)
            continue;
        req++;
        ms += (uint64_t)i;
        out += (uint64_t)i * 3;
    }
    CHECK_EQ_U64(u.requests, req);
    CHECK(u.mem_byte_ms == (u128)ms * (64u << 20));
    CHECK(u.bytes_out == out);
    /* Prices are stored and survive a reopen. */
    json_t *pj = json_loads("{\"per_request\":\"0.5\"}", 0, NULL);
    mxu_prices *p = mxu_prices_from_json(pj, &err);
    json_decref(pj);
    CHECK(mxu_meter_set_prices(m, p, &err) == 0);
    mxu_meter_close(m);
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK(mxu_meter_open(&loop, path, NULL, &m, &err) == 0);
    CHECK_EQ_U64(mxu_prices_for(mxu_meter_prices(m), "x").per_request, 500000000000ull);
    json_t *bill = mxu_meter_bill(m, "default", "2026-11", &err);
    CHECK(bill != NULL);
    CHECK_STR(json_string_value(json_object_get(bill, "month")), "2026-11");
    json_decref(bill);
    mxu_meter_close(m);
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK(uv_loop_close(&loop) == 0);
    mxu_rm_rf(dir, NULL);
    free(path);
}

/* ---- batch rows and month sums ---- */

/* Records spread over tenants, functions, three months, statuses and memory
 * sizes; the test's own sums are the reference. */
#define NT 5
static const char *const tenants[NT] = {"default", "acme", "globex", "initech", "umbrella"};
static const char *const functions[] = {"hello", "echo", "resize", "a-longer-function-name"};

static mxu_usage_record varied(uint64_t id)
{
    mxu_usage_record r = sample(id);
    r.tenant = tenants[id % NT];
    r.function = functions[(id / 7) % MXU_ARRAY_LEN(functions)];
    /* 2026-10-20 .. 2026-12-09: three months, in steps of ~17 minutes. */
    r.start_ms = 1792454400000ull + id * 1000003ull;
    r.status = id % 11 == 0 ? MXU_USAGE_REJECTED : id % 13 == 0 ? MXU_USAGE_TIMEOUT : MXU_USAGE_OK;
    r.billed_ms = r.status == MXU_USAGE_REJECTED ? 0 : id % 97;
    r.memory_bytes = (uint64_t)(64 + 64 * (id % 3)) << 20;
    r.bytes_out = id * 7 % 5000;
    return r;
}

/* The reference: the billable records of `tenant` with start in [a, b). */
static mxu_bill_usage ref_usage(uint64_t n, const char *tenant, uint64_t a, uint64_t b)
{
    mxu_bill_usage u = {0};
    for (uint64_t id = 1; id <= n; id++) {
        mxu_usage_record r = varied(id);
        if (r.status == MXU_USAGE_REJECTED || strcmp(r.tenant, tenant) != 0 || r.start_ms < a ||
            r.start_ms >= b)
            continue;
        u.requests++;
        u.mem_byte_ms += (u128)r.memory_bytes * r.billed_ms;
        u.bytes_out += r.bytes_out;
    }
    return u;
}

static void check_usage(mxu_meter *m, uint64_t n, const char *tenant, uint64_t a, uint64_t b)
{
    mxu_bill_usage got, want = ref_usage(n, tenant, a, b);
    mxu_err err;
    CHECK(mxu_meter_bill_usage(m, tenant, a, b, &got, &err) == 0);
    if (got.requests != want.requests || got.mem_byte_ms != want.mem_byte_ms ||
        got.bytes_out != want.bytes_out)
        MXU_TEST_FAIL_("%s [%llu, %llu): %llu requests stored, %llu in the records", tenant,
                       (unsigned long long)a, (unsigned long long)b,
                       (unsigned long long)got.requests, (unsigned long long)want.requests);
}

/* Every tenant's month sums, whole months (usage_month) and ranges that cut
 * months (decoded rows at the ends), equal the records' sums. */
static void check_all_usage(mxu_meter *m, uint64_t n)
{
    static const char *const months[] = {"2026-10", "2026-11", "2026-12", "2027-01"};
    for (int t = 0; t < NT; t++) {
        for (size_t i = 0; i < MXU_ARRAY_LEN(months); i++) {
            uint64_t a, b;
            mxu_err err;
            CHECK(mxu_month_range(months[i], &a, &b, &err) == 0);
            check_usage(m, n, tenants[t], a, b);
            check_usage(m, n, tenants[t], a + 123456789, b + 987654); /* cuts two months */
        }
        check_usage(m, n, tenants[t], 0, UINT64_MAX >> 1);
        check_usage(m, n, tenants[t], 1793491200000ull + 1, 1793491200000ull + 86400000);
    }
}

/* Record ids [from, to] in loop turns of `per_turn`, a sync every `sync_every`
 * turns (0: only at the end). */
static void record_varied(uv_loop_t *loop, mxu_meter *m, uint64_t from, uint64_t to, int per_turn,
                          int sync_every)
{
    int turn = 0;
    for (uint64_t id = from; id <= to;) {
        for (int i = 0; i < per_turn && id <= to; i++, id++) {
            mxu_usage_record r = varied(id);
            mxu_meter_record(m, &r, NULL, NULL);
        }
        uv_run(loop, UV_RUN_NOWAIT);
        if (sync_every && ++turn % sync_every == 0)
            CHECK_EQ_INT(sync_wait(loop, m), 1);
    }
    CHECK_EQ_INT(sync_wait(loop, m), 1);
}

static void test_batch_sums_equal_records(void)
{
    setenv("MXU_METER_INGEST_MS", "1", 1);
    char *dir = journal_dir();
    uv_loop_t loop;
    uv_loop_init(&loop);
    mxu_meter *m = open_at(&loop, dir);
    /* Small writer cycles, then one of 5000 records (more than a row holds). */
    record_varied(&loop, m, 1, 3000, 17, 5);
    record_varied(&loop, m, 3001, 8000, 5000, 0);
    json_t *stats = mxu_meter_stats_json(m);
    uint64_t rows = (uint64_t)json_integer_value(json_object_get(stats, "rows"));
    CHECK(rows >= 10 && rows < 8000); /* batched, and more than one row */
    json_decref(stats);
    check_all_usage(m, 8000);
    /* A bill reads the month sums and equals its records. */
    mxu_err err;
    json_t *bill = mxu_meter_bill(m, "acme", "2026-11", &err);
    CHECK(bill != NULL);
    mxu_bill_usage want = ref_usage(8000, "acme", 1793491200000ull, 1796083200000ull);
    mxu_bill b;
    mxu_price price = mxu_prices_for(mxu_meter_prices(m), "acme");
    CHECK(mxu_bill_compute(&want, &price, &b, &err) == 0);
    char total[64];
    mxu_money_format(b.total_pico, total, sizeof(total));
    CHECK_STR(json_string_value(json_object_get(bill, "total")), total);
    json_decref(bill);
    close_at(&loop, m);
    /* Reopened: the same. */
    m = open_at(&loop, dir);
    check_all_usage(m, 8000);
    close_at(&loop, m);
    CHECK(uv_loop_close(&loop) == 0);
    mxu_rm_rf(dir, NULL);
    free(dir);
    unsetenv("MXU_METER_INGEST_MS");
}

/* All records matching f, paged `limit` at a time; their ids in order. */
static size_t page_all(mxu_meter *m, mxu_usage_filter f, uint64_t *ids, size_t max)
{
    size_t n = 0;
    uint64_t next, last_seq = UINT64_MAX;
    do {
        mxu_err err;
        json_t *j = mxu_meter_query(m, &f, &next, &err);
        CHECK(j != NULL);
        json_t *recs = json_object_get(j, "records"), *r;
        size_t i;
        CHECK(json_array_size(recs) <= f.limit);
        json_array_foreach(recs, i, r)
        {
            uint64_t seq = (uint64_t)json_integer_value(json_object_get(r, "seq"));
            CHECK(seq < last_seq); /* newest first, each once */
            last_seq = seq;
            CHECK(n < max);
            ids[n++] = strtoull(json_string_value(json_object_get(r, "invocation")), NULL, 16);
        }
        json_decref(j);
        f.before = next;
    } while (next);
    return n;
}

/* A query spanning many batch rows and tenants: exactly the matching records,
 * newest first, across pages; a page boundary stays put while records keep
 * coming. */
static void test_batch_query_paging(void)
{
    setenv("MXU_METER_INGEST_MS", "1", 1);
    char *dir = journal_dir();
    uv_loop_t loop;
    uv_loop_init(&loop);
    mxu_meter *m = open_at(&loop, dir);
    const uint64_t N = 6000;
    record_varied(&loop, m, 1, N, 23, 3);
    uint64_t *ids = calloc(N + 1000, sizeof(*ids));
    /* Tenant and a time range that cuts rows: [2026-11-03, 2026-11-20). */
    uint64_t a = 1793664000000ull, b = 1795132800000ull;
    mxu_usage_filter f = {.tenant = "globex", .since_ms = a, .until_ms = b, .limit = 37};
    size_t n = page_all(m, f, ids, N);
    size_t k = 0;
    for (uint64_t id = N; id >= 1; id--) {
        mxu_usage_record r = varied(id);
        if (strcmp(r.tenant, "globex") || r.start_ms < a || r.start_ms >= b)
            continue;
        CHECK(k < n);
        CHECK_EQ_U64(ids[k], id);
        k++;
    }
    CHECK_EQ_U64(k, n);
    CHECK(n > 100);
    /* Function and tenant together; and everything. */
    f = (mxu_usage_filter){.tenant = "acme", .function = "echo", .limit = 100};
    n = page_all(m, f, ids, N);
    k = 0;
    for (uint64_t id = N; id >= 1; id--) {
        mxu_usage_record r = varied(id);
        if (strcmp(r.tenant, "acme") || strcmp(r.function, "echo"))
            continue;
        CHECK_EQ_U64(ids[k], id);
        k++;
    }
    CHECK_EQ_U64(k, n);
    f = (mxu_usage_filter){.limit = 1000};
    CHECK_EQ_U64(page_all(m, f, ids, N), N);
    /* Stability: the first page taken, 500 more records come, the pages after
     * the cursor are still exactly the older records. */
    f = (mxu_usage_filter){.limit = 250};
    uint64_t next;
    mxu_err err;
    json_t *j = mxu_meter_query(m, &f, &next, &err);
    CHECK(j != NULL && next != 0);
    json_decref(j);
    record_varied(&loop, m, N + 1, N + 500, 50, 1);
    f.before = next;
    n = page_all(m, f, ids, N + 500);
    CHECK_EQ_U64(n, N - 250);
    for (size_t i = 0; i < n; i++)
        CHECK_EQ_U64(ids[i], N - 250 - i);
    close_at(&loop, m);
    /* The same cursor means the same records after a reopen. */
    m = open_at(&loop, dir);
    CHECK_EQ_U64(page_all(m, f, ids, N + 500), N - 250);
    close_at(&loop, m);
    free(ids);
    CHECK(uv_loop_close(&loop) == 0);
    mxu_rm_rf(dir, NULL);
    free(dir);
    unsetenv("MXU_METER_INGEST_MS");
}

/* A crash between the journal write and the ingest, twice, and a replayed
 * segment put back: the month sums count each record once. */
static void test_batch_replay_idempotent(void)
{
    char *dir = journal_dir();
    killed_node(dir, 0, 120, 900);
    mxu_err err;
    mxu_buf saved = {0};
    uint64_t lap;
    size_t end;
    read_ring(dir, &saved, &lap, &end);
    char *seg = mxu_ring_path(dir);
    uv_loop_t loop;
    uv_loop_init(&loop);
    mxu_meter *m = open_at(&loop, dir);
    CHECK_EQ_U64(stored_count(&loop, m), 900);
    mxu_bill_usage u;
    uint64_t a = 1793491200000ull, b = 1796083200000ull; /* 2026-11: sample()'s month */
    CHECK(mxu_meter_bill_usage(m, "default", a, b, &u, &err) == 0);
    CHECK_EQ_U64(u.requests, 900);
    CHECK(u.mem_byte_ms == (u128)900 * (64u << 20));
    CHECK(u.bytes_out == 900 * 122);
    close_at(&loop, m);
    CHECK(mxu_write_file_atomic(seg, saved.data, saved.len, 0600, &err) == 0);
    killed_node(dir, 900, 30, 100);
    m = open_at(&loop, dir);
    CHECK_EQ_U64(stored_count(&loop, m), 1000);
    CHECK(mxu_meter_bill_usage(m, "default", a, b, &u, &err) == 0);
    CHECK_EQ_U64(u.requests, 1000);
    CHECK(u.bytes_out == 1000 * 122);
    /* The decoded path (a range that is not whole months) agrees. */
    CHECK(mxu_meter_bill_usage(m, "default", a + 1, b, &u, &err) == 0);
    CHECK_EQ_U64(u.requests, 1000);
    close_at(&loop, m);
    CHECK(uv_loop_close(&loop) == 0);
    free(seg);
    mxu_buf_free(&saved);
    mxu_rm_rf(dir, NULL);
    free(dir);
}

/* A callback that records more, with callbacks of their own: they are
 * stored at once (the ring has room), and every callback runs once, with
 * written true, in the same loop turn. */
static mxu_meter *nested_meter;
static int nested_done;
static void on_nested(void *ud, bool written)
{
    CHECK(written);
    nested_done++;
    if (ud == NULL) /* the first: record two more, each with a callback */
        for (uint64_t i = 2; i <= 3; i++) {
            mxu_usage_record r = sample(i);
            CHECK(mxu_meter_record(nested_meter, &r, on_nested, (void *)1));
        }
}

static void test_callbacks_that_record(void)
{
    char *dir = journal_dir();
    uv_loop_t loop;
    uv_loop_init(&loop);
    nested_meter = open_at(&loop, dir);
    mxu_usage_record r = sample(1);
    CHECK(mxu_meter_record(nested_meter, &r, on_nested, NULL));
    uv_run(&loop, UV_RUN_NOWAIT);
    CHECK_EQ_INT(nested_done, 3);
    CHECK_EQ_U64(stored_count(&loop, nested_meter), 3);
    close_at(&loop, nested_meter);
    CHECK(uv_loop_close(&loop) == 0);
    mxu_rm_rf(dir, NULL);
    free(dir);
}

/* Batch rows keep their frames in usage.frames. Bytes a writer appended
 * there but never committed (a node killed between the two) are cut at
 * open; rows of the format before usage.frames (frames in the row) are
 * still read beside new ones; a usage.frames shorter than its rows say is
 * refused with a message naming both files. */
static void test_frames_file(void)
{
    char *dir = journal_dir();
    uv_loop_t loop;
    uv_loop_init(&loop);
    mxu_meter *m = open_at(&loop, dir);
    for (int i = 1; i <= 300; i++) {
        mxu_usage_record r = sample((uint64_t)i);
        mxu_meter_record(m, &r, NULL, NULL);
    }
    CHECK_EQ_U64(stored_count(&loop, m), 300);
    close_at(&loop, m);
    char *frames = mxu_path_join(dir, "usage.frames");
    struct stat st;
    CHECK(stat(frames, &st) == 0);
    off_t size = st.st_size;
    CHECK(size > 300 * 40); /* the frames are here, not in usage.db */
    /* An uncommitted round's bytes at the end: cut, and new rows go after
     * the committed ones. */
    int fd = open(frames, O_WRONLY | O_APPEND);
    CHECK(fd >= 0);
    CHECK(write(fd, "garbage of a round that never committed", 39) == 39);
    close(fd);
    m = open_at(&loop, dir);
    CHECK(stat(frames, &st) == 0);
    CHECK_EQ_U64((uint64_t)st.st_size, (uint64_t)size);
    /* A row of the older format, its frames in the row itself. */
    mxu_buf b = {0};
    for (int i = 301; i <= 303; i++) {
        mxu_usage_record r = sample((uint64_t)i);
        mxu_journal_append(&b, &r, 0);
    }
    char *dbpath = mxu_path_join(dir, "usage.db");
    sqlite3 *db;
    CHECK(sqlite3_open(dbpath, &db) == SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    sqlite3_stmt *ins;
    CHECK(sqlite3_prepare_v2(db,
                             "INSERT INTO usage_batch (first_seq, n, min_start, max_start, "
                             "tenants, functions, data) VALUES (301, 3, 0, 9e15, NULL, NULL, ?)",
                             -1, &ins, NULL) == SQLITE_OK);
    sqlite3_bind_blob(ins, 1, b.data, (int)b.len, SQLITE_STATIC);
    CHECK(sqlite3_step(ins) == SQLITE_DONE);
    sqlite3_finalize(ins);
    sqlite3_close(db);
    close_at(&loop, m);
    m = open_at(&loop, dir);
    for (int i = 304; i <= 310; i++) {
        mxu_usage_record r = sample((uint64_t)i);
        mxu_meter_record(m, &r, NULL, NULL);
    }
    CHECK_EQ_U64(stored_count(&loop, m), 310);
    close_at(&loop, m);
    /* usage.frames cut short (restored without it): refused, clearly. */
    CHECK(truncate(frames, size / 2) == 0);
    char *path = mxu_path_join(dir, "usage.db");
    mxu_err err;
    CHECK(mxu_meter_open(&loop, path, NULL, &m, &err) < 0);
    CHECK_CONTAINS(err.msg, "usage.db and usage.frames belong together");
    CHECK(uv_loop_close(&loop) == 0);
    free(path);
    free(dbpath);
    free(frames);
    mxu_buf_free(&b);
    mxu_rm_rf(dir, NULL);
    free(dir);
}

/* A usage.db of the row-per-record format is moved into batch rows at open,
 * keeping every record and its order. */
static void test_old_rows_migrated(void)
{
    char *dir = journal_dir();
    char *path = mxu_path_join(dir, "usage.db");
    sqlite3 *db;
    CHECK(sqlite3_open(path, &db) == SQLITE_OK);
    CHECK(sqlite3_exec(db,
                       "CREATE TABLE usage (seq INTEGER PRIMARY KEY, invocation INTEGER NOT NULL,"
                       " tenant TEXT NOT NULL, function TEXT NOT NULL, version INTEGER NOT NULL,"
                       " executor TEXT NOT NULL, start_ms INTEGER NOT NULL, wall_us INTEGER NOT"
                       " NULL, billed_ms INTEGER NOT NULL, memory INTEGER NOT NULL, cpu_us INTEGER"
                       " NOT NULL, peak_memory INTEGER NOT NULL, bytes_in INTEGER NOT NULL,"
                       " bytes_out INTEGER NOT NULL, cold INTEGER NOT NULL, status INTEGER NOT"
                       " NULL, http_status INTEGER NOT NULL, code TEXT NOT NULL, caller INTEGER"
                       " NOT NULL, caller_function TEXT NOT NULL);"
                       "CREATE INDEX usage_start ON usage(start_ms);",
                       NULL, NULL, NULL) == SQLITE_OK);
    sqlite3_stmt *st;
    CHECK(
        sqlite3_prepare_v2(db,
                           "INSERT INTO usage (invocation, tenant, function, version, executor,"
                           " start_ms, wall_us, billed_ms, memory, cpu_us, peak_memory, bytes_in,"
                           " bytes_out, cold, status, http_status, code, caller, caller_function)"
                           " VALUES (?, ?, ?, 1, 'process', ?, 5, ?, ?, 1, 2, 3, ?, 0, ?, 200, '',"
                           " 0, '')",
                           -1, &st, NULL) == SQLITE_OK);
    const uint64_t N = 3000;
    for (uint64_t id = 1; id <= N; id++) {
        mxu_usage_record r = varied(id);
        sqlite3_bind_int64(st, 1, (sqlite3_int64)id);
        sqlite3_bind_text(st, 2, r.tenant, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 3, r.function, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 4, (sqlite3_int64)r.start_ms);
        sqlite3_bind_int64(st, 5, (sqlite3_int64)r.billed_ms);
        sqlite3_bind_int64(st, 6, (sqlite3_int64)r.memory_bytes);
        sqlite3_bind_int64(st, 7, (sqlite3_int64)r.bytes_out);
        sqlite3_bind_int(st, 8, (int)r.status);
        CHECK(sqlite3_step(st) == SQLITE_DONE);
        sqlite3_reset(st);
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
    uv_loop_t loop;
    uv_loop_init(&loop);
    mxu_meter *m = open_at(&loop, dir);
    uint64_t *ids = calloc(N, sizeof(*ids));
    mxu_usage_filter f = {.limit = 500};
    CHECK_EQ_U64(page_all(m, f, ids, N), N);
    for (uint64_t i = 0; i < N; i++)
        CHECK_EQ_U64(ids[i], N - i);
    check_all_usage(m, N);
    close_at(&loop, m);
    m = open_at(&loop, dir); /* nothing moved twice */
    CHECK_EQ_U64(page_all(m, f, ids, N), N);
    check_all_usage(m, N);
    close_at(&loop, m);
    free(ids);
    free(path);
    CHECK(uv_loop_close(&loop) == 0);
    mxu_rm_rf(dir, NULL);
    free(dir);
}

MXU_TESTS(TEST(test_parse), TEST(test_parse_refused), TEST(test_format), TEST(test_price_table),
          TEST(test_bill_property), TEST(test_bill_edges), TEST(test_month),
          TEST(test_record_encoding), TEST(test_journal_framing),
          TEST(test_journal_crc32_frames_still_read), TEST(test_unwritable_journal_at_close),
          TEST(test_journal_replay_after_kill), TEST(test_journal_replay_idempotent),
          TEST(test_journal_wrap), TEST(test_store), TEST(test_batch_sums_equal_records),
          TEST(test_batch_query_paging), TEST(test_batch_replay_idempotent),
          TEST(test_old_rows_migrated), TEST(test_frames_file), TEST(test_callbacks_that_record))
