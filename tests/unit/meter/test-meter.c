/*
 * The meter: price parsing, money formatting, bill arithmetic (against an
 * independent bignum computation over random records), the packed record
 * form, and the store (records durable before their callback, queries,
 * bills from what was stored, prices kept across a reopen).
 */
#include "meter/meter-internal.h"
#include "test.h"

#include <errno.h>
#include <stdint.h>

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

static int durable_count;
static void on_durable(void *ud)
{
    MXU_UNUSED(ud);
    durable_count++;
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
        mxu_meter_record(m, &r, on_durable, NULL);
    }
    CHECK_EQ_INT(durable_count, 0); /* never before returning */
    while (durable_count < N)
        uv_run(&loop, UV_RUN_ONCE);
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

MXU_TESTS(TEST(test_parse), TEST(test_parse_refused), TEST(test_format), TEST(test_price_table),
          TEST(test_bill_property), TEST(test_bill_edges), TEST(test_month),
          TEST(test_record_encoding), TEST(test_store))
