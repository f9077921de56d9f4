/*
 * The meter: price parsing, money formatting, bill arithmetic (against an
 * independent bignum computation over random records), the packed record
 * form, the journal (framing, a torn tail cut at replay, replay after a
 * kill -9 between write and ingest, idempotent replay, rotation), and the
 * store (records written before their callback, queries after a sync,
 * bills from what was stored, prices kept across a reopen).
 */
#include "meter/meter-internal.h"
#include "test.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

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
        mxu_journal_append(&b, &r);
        ends[i] = b.len;
    }
    uint64_t seen = 0;
    CHECK_EQ_U64(mxu_journal_scan(b.data, b.len, true, count_record, &seen), b.len);
    CHECK_EQ_U64(seen, 20);
    /* Every cut is scanned up to the last whole frame before it. */
    for (size_t n = 0; n <= b.len; n++) {
        size_t want = 0;
        for (int i = 0; i < 20 && ends[i] <= n; i++)
            want = ends[i];
        CHECK_EQ_U64(mxu_journal_scan(b.data, n, true, NULL, NULL), want);
    }
    /* Any byte of the last frame flipped: that frame is cut, the rest kept. */
    for (size_t at = ends[18]; at < ends[19]; at++) {
        b.data[at] ^= 0x40;
        CHECK_EQ_U64(mxu_journal_scan(b.data, b.len, true, NULL, NULL), ends[18]);
        b.data[at] ^= 0x40;
    }
    /* Zeros (a file extended but never written) are not a frame. */
    size_t len = b.len;
    mxu_buf_append(&b, "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0", 16);
    CHECK_EQ_U64(mxu_journal_scan(b.data, b.len, true, NULL, NULL), len);
    mxu_buf_free(&b);
}

static int durable_count;
static void on_durable(void *ud)
{
    MXU_UNUSED(ud);
    durable_count++;
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

static size_t count_segments(const char *dir)
{
    uint64_t *gens;
    size_t n;
    mxu_err err;
    CHECK(mxu_journal_list(dir, &gens, &n, &err) == 0);
    free(gens);
    return n;
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
        uv_run(&loop, UV_RUN_NOWAIT);
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

static void test_journal_replay_after_kill(void)
{
    char *dir = journal_dir();
    killed_node(dir, 0, 300, 700);
    /* A half-written frame at the end of the killed node's segment, as a
     * power loss would leave it. */
    uint64_t *gens;
    size_t n;
    mxu_err err;
    CHECK(mxu_journal_list(dir, &gens, &n, &err) == 0);
    CHECK(n >= 1);
    char *seg = mxu_journal_path(dir, gens[0]);
    struct stat st;
    CHECK(stat(seg, &st) == 0);
    CHECK(st.st_size > 16 + 400 * 100); /* the 400 unread records are there */
    mxu_buf torn = {0};
    mxu_usage_record r = sample(9999);
    mxu_journal_append(&torn, &r);
    size_t torn_len = torn.len / 2;
    int fd = open(seg, O_WRONLY | O_APPEND);
    CHECK(fd >= 0);
    CHECK(write(fd, torn.data, torn.len / 2) == (ssize_t)(torn.len / 2));
    close(fd);
    mxu_buf_free(&torn);

    /* Reopened: the 400 written-but-not-ingested records are replayed, the
     * torn one is cut, nothing is counted twice. */
    uv_loop_t loop;
    uv_loop_init(&loop);
    mxu_meter *m = open_at(&loop, dir);
    CHECK_EQ_U64(stored_count(&loop, m), 700);
    json_t *stats = mxu_meter_stats_json(m);
    CHECK_EQ_U64(json_integer_value(json_object_get(stats, "replayed")), 400);
    CHECK_EQ_U64(json_integer_value(json_object_get(stats, "cut_bytes")), torn_len);
    json_decref(stats);
    close_at(&loop, m);
    /* The old segment is gone once its records are in. */
    CHECK(access(seg, F_OK) < 0);
    free(seg);
    free(gens);
    m = open_at(&loop, dir);
    CHECK_EQ_U64(stored_count(&loop, m), 700);
    close_at(&loop, m);
    CHECK(uv_loop_close(&loop) == 0);
    mxu_rm_rf(dir, NULL);
    free(dir);
}

/* Replay is idempotent: a node that dies after replaying into usage.db but
 * before removing the segments replays them again from the stored position,
 * and a segment put back whole adds nothing. */
static void test_journal_replay_idempotent(void)
{
    char *dir = journal_dir();
    killed_node(dir, 0, 50, 250);
    uint64_t *gens;
    size_t n;
    mxu_err err;
    CHECK(mxu_journal_list(dir, &gens, &n, &err) == 0);
    CHECK(n >= 1);
    mxu_buf saved = {0};
    CHECK(mxu_journal_read(dir, gens[0], &saved, &err) == 0);
    uv_loop_t loop;
    uv_loop_init(&loop);
    mxu_meter *m = open_at(&loop, dir);
    CHECK_EQ_U64(stored_count(&loop, m), 250);
    close_at(&loop, m);
    /* The replayed segment comes back, as if the node had died before
     * unlinking it. */
    char *seg = mxu_journal_path(dir, gens[0]);
    CHECK(mxu_write_file_atomic(seg, saved.data, saved.len, 0600, &err) == 0);
    m = open_at(&loop, dir);
    CHECK_EQ_U64(stored_count(&loop, m), 250);
    json_t *stats = mxu_meter_stats_json(m);
    CHECK_EQ_U64(json_integer_value(json_object_get(stats, "replayed")), 0);
    json_decref(stats);
    close_at(&loop, m);
    CHECK(access(seg, F_OK) < 0);
    /* A second kill on top: each record once. */
    killed_node(dir, 250, 10, 20);
    m = open_at(&loop, dir);
    CHECK_EQ_U64(stored_count(&loop, m), 270);
    close_at(&loop, m);
    CHECK(uv_loop_close(&loop) == 0);
    free(seg);
    free(gens);
    mxu_buf_free(&saved);
    mxu_rm_rf(dir, NULL);
    free(dir);
}

/* Segments rotate at MXU_METER_SEGMENT_BYTES; the ingested ones go; every
 * record is stored once, across rotations and a reopen. */
static void test_journal_rotation(void)
{
    setenv("MXU_METER_SEGMENT_BYTES", "8192", 1);
    setenv("MXU_METER_INGEST_MS", "1", 1);
    char *dir = journal_dir();
    uv_loop_t loop;
    uv_loop_init(&loop);
    mxu_meter *m = open_at(&loop, dir);
    uint64_t id = 0;
    for (int round = 0; round < 60; round++) {
        for (int i = 0; i < 40; i++) {
            mxu_usage_record r = sample(++id);
            mxu_meter_record(m, &r, NULL, NULL);
        }
        uv_run(&loop, UV_RUN_NOWAIT);
        if (round % 3 == 0)
            CHECK_EQ_INT(sync_wait(&loop, m), 1);
        CHECK(count_segments(dir) <= 4);
    }
    CHECK_EQ_U64(stored_count(&loop, m), id);
    json_t *stats = mxu_meter_stats_json(m);
    uint64_t gen = (uint64_t)json_integer_value(json_object_get(stats, "journal_segment"));
    CHECK(gen >= 20); /* 2400 records of ~150 bytes in 8 KiB segments */
    json_decref(stats);
    close_at(&loop, m);
    m = open_at(&loop, dir);
    CHECK_EQ_U64(stored_count(&loop, m), id);
    close_at(&loop, m);
    CHECK(count_segments(dir) <= 2);
    CHECK(uv_loop_close(&loop) == 0);
    mxu_rm_rf(dir, NULL);
    free(dir);
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

MXU_TESTS(TEST(test_parse), TEST(test_parse_refused), TEST(test_format), TEST(test_price_table),
          TEST(test_bill_property), TEST(test_bill_edges), TEST(test_month),
          TEST(test_record_encoding), TEST(test_journal_framing),
          TEST(test_journal_replay_after_kill), TEST(test_journal_replay_idempotent),
          TEST(test_journal_rotation), TEST(test_store))
