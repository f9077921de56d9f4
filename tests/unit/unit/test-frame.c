/*
 * Unit tests for src/unit/frame.c, the channel protocol codec: byte layout of
 * the header, round trips of every message, the sizing pass, and the
 * decoders' refusal of everything malformed (every truncation, lengths past
 * the end, huge counts, bad fields, trailing bytes). Payloads under test are
 * copied into exactly-sized heap blocks so that ASan sees any over-read.
 */
#include "test.h"
#include "unit/frame.h"

#include <stdint.h>

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* ---- helpers ------------------------------------------------------------------- */

static mxu_slice S(const char *s)
{
    return (mxu_slice){s, (uint32_t)strlen(s)};
}

static int slice_is(mxu_slice s, const char *want)
{
    return s.len == strlen(want) && memcmp(s.ptr, want, s.len) == 0;
}

typedef int (*decode_fn)(const void *payload, size_t len);

static int dec_hello(const void *p, size_t n)
{
    mxu_hello_msg m;
    return mxu_hello_decode(p, n, &m);
}
static int dec_init(const void *p, size_t n)
{
    mxu_init_msg m;
    return mxu_init_decode(p, n, &m);
}
static int dec_invoke(const void *p, size_t n)
{
    mxu_invoke_msg m;
    return mxu_invoke_decode(p, n, &m);
}
static int dec_result(const void *p, size_t n)
{
    mxu_result_msg m;
    return mxu_result_decode(p, n, &m);
}
static int dec_log(const void *p, size_t n)
{
    mxu_log_msg m;
    return mxu_log_decode(p, n, &m);
}
static int dec_res_op(const void *p, size_t n)
{
    mxu_res_op_msg m;
    return mxu_res_op_decode(p, n, &m);
}
static int dec_res_reply(const void *p, size_t n)
{
    mxu_res_reply_msg m;
    return mxu_res_reply_decode(p, n, &m);
}

/* Decode a copy of buf[0..n) in a block of exactly n bytes. */
static int decode_exact(decode_fn dec, const uint8_t *buf, size_t n)
{
    uint8_t *copy = malloc(n ? n : 1);
    memcpy(copy, buf, n);
    int rc = dec(copy, n);
    free(copy);
    return rc;
}

/* The message decodes as is; every strict prefix and one extra byte do not. */
static void check_strict(decode_fn dec, const uint8_t *buf, size_t n)
{
    CHECK_EQ_INT(decode_exact(dec, buf, n), 0);
    for (size_t cut = 0; cut < n; cut++)
        if (decode_exact(dec, buf, cut) != -1)
            MXU_TEST_FAIL_("a payload cut to %zu of %zu bytes decoded", cut, n);
    uint8_t *longer = malloc(n + 1);
    memcpy(longer, buf, n);
    longer[n] = 0;
    CHECK_EQ_INT(decode_exact(dec, longer, n + 1), -1);
    free(longer);
}

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Encode an INVOKE into a malloc'd buffer; sets *n. */
static uint8_t *make_invoke(size_t *n, const char *method, const char *path, const char *query,
                            const char *const *names, const char *const *values, uint32_t nhdr,
                            const char *body)
{
    mxu_slice hn[8] = {{0}}, hv[8] = {{0}};
    for (uint32_t i = 0; i < nhdr; i++) {
        hn[i] = S(names[i]);
        hv[i] = S(values[i]);
    }
    size_t len =
        mxu_invoke_encode(NULL, 0, 1500, S(method), S(path), S(query), hn, hv, nhdr, S(body));
    uint8_t *buf = malloc(len);
    CHECK_EQ_U64(
        mxu_invoke_encode(buf, len, 1500, S(method), S(path), S(query), hn, hv, nhdr, S(body)),
        len);
    *n = len;
    return buf;
}

static uint8_t *make_result(size_t *n, uint32_t status, const char *name, const char *value)
{
    mxu_slice hn[1] = {S(name ? name : "")}, hv[1] = {S(value ? value : "")};
    uint32_t nh = name ? 1 : 0;
    size_t len = mxu_result_encode(NULL, 0, status, hn, hv, nh, S("body"));
    uint8_t *buf = malloc(len);
    mxu_result_encode(buf, len, status, hn, hv, nh, S("body"));
    *n = len;
    return buf;
}

static uint8_t *make_init(size_t *n, const char *fn, uint32_t conc, const char *cname,
                          const char *cval)
{
    const char *names[1] = {cname}, *values[1] = {cval};
    uint32_t nc = cname ? 1 : 0;
    size_t len = mxu_init_encode(NULL, 0, fn, 3, conc, names, values, nc);
    uint8_t *buf = malloc(len);
    mxu_init_encode(buf, len, fn, 3, conc, names, values, nc);
    *n = len;
    return buf;
}

/* ---- header ---------------------------------------------------------------------- */

static void test_header_layout(void)
{
    mxu_frame_hdr h = {.len = 0x01020304, .type = MXU_FRAME_RESULT, .id = 0x1122334455667788ull};
    uint8_t b[MXU_FRAME_HEADER_SIZE];
    mxu_frame_hdr_encode(&h, b);
    static const uint8_t want[16] = {0x04, 0x03, 0x02, 0x01, 4,    0,    0,    0,
                                     0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11};
    CHECK(memcmp(b, want, 16) == 0);
    mxu_frame_hdr d;
    CHECK_EQ_INT(mxu_frame_hdr_decode(b, &d), 0);
    CHECK_EQ_U64(d.len, h.len);
    CHECK_EQ_INT(d.type, h.type);
    CHECK_EQ_U64(d.id, h.id);
}

static void test_header_rejects(void)
{
    mxu_frame_hdr h = {.len = MXU_FRAME_MAX_PAYLOAD, .type = MXU_FRAME_INVOKE, .id = 7};
    uint8_t b[MXU_FRAME_HEADER_SIZE];
    mxu_frame_hdr d;
    mxu_frame_hdr_encode(&h, b);
    CHECK_EQ_INT(mxu_frame_hdr_decode(b, &d), 0);

    h.len = MXU_FRAME_MAX_PAYLOAD + 1;
    mxu_frame_hdr_encode(&h, b);
    CHECK_EQ_INT(mxu_frame_hdr_decode(b, &d), -1);
    h.len = UINT32_MAX;
    mxu_frame_hdr_encode(&h, b);
    CHECK_EQ_INT(mxu_frame_hdr_decode(b, &d), -1);

    h.len = 0;
    for (int t = 0; t < 256; t++) {
        h.type = (uint8_t)t;
        mxu_frame_hdr_encode(&h, b);
        CHECK_EQ_INT(mxu_frame_hdr_decode(b, &d), (t >= 1 && t <= 31) ? 0 : -1);
    }
    h.type = MXU_FRAME_BYE;
    h.flags = 1;
    mxu_frame_hdr_encode(&h, b);
    CHECK_EQ_INT(mxu_frame_hdr_decode(b, &d), -1);
    h.flags = 0;
    h.reserved = 0x100;
    mxu_frame_hdr_encode(&h, b);
    CHECK_EQ_INT(mxu_frame_hdr_decode(b, &d), -1);
}

/* ---- writer and reader ---------------------------------------------------------- */

static void test_writer_sizing(void)
{
    mxu_wire_w w;
    mxu_wire_w_init(&w, NULL, 0);
    mxu_wire_put_u32(&w, 1);
    mxu_wire_put_u64(&w, 2);
    mxu_wire_put_str(&w, "abc");
    mxu_wire_put_str(&w, NULL);
    mxu_wire_put_bytes(&w, "xy", 2);
    CHECK_EQ_U64(w.len, 4 + 8 + 7 + 4 + 6);
    CHECK(w.overflow);

    uint8_t buf[29];
    mxu_wire_w_init(&w, buf, sizeof(buf));
    mxu_wire_put_u32(&w, 1);
    mxu_wire_put_u64(&w, 2);
    mxu_wire_put_str(&w, "abc");
    mxu_wire_put_str(&w, NULL);
    mxu_wire_put_bytes(&w, "xy", 2);
    CHECK_EQ_U64(w.len, 29);
    CHECK(!w.overflow);

    /* One byte short: overflow, nothing written past cap, length still counted. */
    uint8_t small[29];
    memset(small, 0xEE, sizeof(small));
    mxu_wire_w_init(&w, small, 28);
    mxu_wire_put_u32(&w, 1);
    mxu_wire_put_u64(&w, 2);
    mxu_wire_put_str(&w, "abc");
    mxu_wire_put_str(&w, NULL);
    mxu_wire_put_bytes(&w, "xy", 2);
    CHECK(w.overflow);
    CHECK_EQ_U64(w.len, 29);
    CHECK_EQ_INT(small[28], 0xEE);

    mxu_wire_r r;
    mxu_wire_r_init(&r, buf, sizeof(buf));
    CHECK_EQ_U64(mxu_wire_get_u32(&r), 1);
    CHECK_EQ_U64(mxu_wire_get_u64(&r), 2);
    CHECK(slice_is(mxu_wire_get_bytes(&r), "abc"));
    CHECK(slice_is(mxu_wire_get_bytes(&r), ""));
    CHECK(slice_is(mxu_wire_get_bytes(&r), "xy"));
    CHECK(mxu_wire_r_done(&r));
    CHECK_EQ_U64(mxu_wire_get_u32(&r), 0); /* past the end */
    CHECK(r.bad);
    CHECK(!mxu_wire_r_done(&r));
}

static void test_reader_bounds(void)
{
    uint8_t b[8];
    put32(b, 5); /* says 5 bytes, only 4 follow */
    memcpy(b + 4, "abcd", 4);
    mxu_wire_r r;
    mxu_wire_r_init(&r, b, sizeof(b));
    mxu_slice s = mxu_wire_get_bytes(&r);
    CHECK(r.bad);
    CHECK_EQ_INT(s.len, 0);
    put32(b, UINT32_MAX);
    mxu_wire_r_init(&r, b, sizeof(b));
    mxu_wire_get_bytes(&r);
    CHECK(r.bad);
    mxu_wire_r_init(&r, b, 7);
    mxu_wire_get_u64(&r);
    CHECK(r.bad);
    /* Bad is sticky: later reads that would fit still fail. */
    mxu_wire_r_init(&r, b, 3);
    mxu_wire_get_u32(&r);
    r.end = b + 8;
    CHECK_EQ_U64(mxu_wire_get_u32(&r), 0);
    CHECK(!mxu_wire_r_done(&r));
}

/* ---- round trips ------------------------------------------------------------------ */

static void test_hello_roundtrip(void)
{
    size_t len = mxu_hello_encode(NULL, 0, "mxu-c/0.1.0 process");
    uint8_t *buf = malloc(len);
    CHECK_EQ_U64(mxu_hello_encode(buf, len, "mxu-c/0.1.0 process"), len);
    CHECK_EQ_U64(len, 4 + 4 + 19);
    mxu_hello_msg m;
    CHECK_EQ_INT(mxu_hello_decode(buf, len, &m), 0);
    CHECK_EQ_U64(m.proto_version, MXU_PROTO_VERSION);
    CHECK(slice_is(m.sdk, "mxu-c/0.1.0 process"));
    check_strict(dec_hello, buf, len);
    free(buf);
}

static void test_init_roundtrip(void)
{
    const char *names[] = {"GREETING", "EMPTY", "URL"};
    const char *values[] = {"hello", "", "http://x/?a=b"};
    size_t len = mxu_init_encode(NULL, 0, "hello", 7, 4, names, values, 3);
    uint8_t *buf = malloc(len);
    CHECK_EQ_U64(mxu_init_encode(buf, len, "hello", 7, 4, names, values, 3), len);
    mxu_init_msg m;
    CHECK_EQ_INT(mxu_init_decode(buf, len, &m), 0);
    CHECK_EQ_U64(m.proto_version, MXU_PROTO_VERSION);
    CHECK(slice_is(m.function, "hello"));
    CHECK_EQ_U64(m.version, 7);
    CHECK_EQ_U64(m.concurrency, 4);
    CHECK_EQ_U64(m.config.count, 3);
    mxu_slice n, v;
    for (int i = 0; i < 3; i++) {
        CHECK(mxu_wire_next_header(&m.config, &n, &v));
        CHECK(slice_is(n, names[i]));
        CHECK(slice_is(v, values[i]));
    }
    CHECK(!mxu_wire_next_header(&m.config, &n, &v));
    check_strict(dec_init, buf, len);
    free(buf);

    len = mxu_init_encode(NULL, 0, "f", 1, 1, NULL, NULL, 0);
    buf = malloc(len);
    mxu_init_encode(buf, len, "f", 1, 1, NULL, NULL, 0);
    CHECK_EQ_INT(mxu_init_decode(buf, len, &m), 0);
    CHECK_EQ_U64(m.config.count, 0);
    free(buf);
}

static void test_invoke_roundtrip(void)
{
    const char *names[] = {"Host", "X-Empty", "Accept"};
    const char *values[] = {"example.com", "", "text/plain\t; q=1"};
    size_t len;
    uint8_t *buf =
        make_invoke(&len, "POST", "/a/b", "name=world&x=%20", names, values, 3, "the body");
    mxu_invoke_msg m;
    CHECK_EQ_INT(mxu_invoke_decode(buf, len, &m), 0);
    CHECK_EQ_U64(m.deadline_ms, 1500);
    CHECK(slice_is(m.method, "POST"));
    CHECK(slice_is(m.path, "/a/b"));
    CHECK(slice_is(m.query, "name=world&x=%20"));
    CHECK(slice_is(m.body, "the body"));
    CHECK_EQ_U64(m.headers.count, 3);
    mxu_slice n, v;
    for (int i = 0; i < 3; i++) {
        CHECK(mxu_wire_next_header(&m.headers, &n, &v));
        CHECK(slice_is(n, names[i]));
        CHECK(slice_is(v, values[i]));
    }
    CHECK(!mxu_wire_next_header(&m.headers, &n, &v));
    /* Re-encoding the decoded view gives the same bytes. */
    mxu_invoke_decode(buf, len, &m);
    mxu_slice hn[3], hv[3];
    for (int i = 0; i < 3; i++)
        mxu_wire_next_header(&m.headers, &hn[i], &hv[i]);
    uint8_t *again = malloc(len);
    CHECK_EQ_U64(
        mxu_invoke_encode(again, len, m.deadline_ms, m.method, m.path, m.query, hn, hv, 3, m.body),
        len);
    CHECK(memcmp(again, buf, len) == 0);
    free(again);
    check_strict(dec_invoke, buf, len);
    free(buf);

    /* Minimal: no query, no headers, no body. */
    buf = make_invoke(&len, "GET", "/", "", NULL, NULL, 0, "");
    CHECK_EQ_INT(mxu_invoke_decode(buf, len, &m), 0);
    CHECK_EQ_U64(len, 8 + 7 + 5 + 4 + 4 + 4);
    check_strict(dec_invoke, buf, len);
    free(buf);
}

static void test_result_roundtrip(void)
{
    mxu_slice hn[2] = {S("Content-Type"), S("X-A")}, hv[2] = {S("text/plain"), S("1")};
    size_t len = mxu_result_encode(NULL, 0, 201, hn, hv, 2, S("created"));
    uint8_t *buf = malloc(len);
    CHECK_EQ_U64(mxu_result_encode(buf, len, 201, hn, hv, 2, S("created")), len);
    mxu_result_msg m;
    CHECK_EQ_INT(mxu_result_decode(buf, len, &m), 0);
    CHECK_EQ_U64(m.status, 201);
    CHECK(slice_is(m.body, "created"));
    mxu_slice n, v;
    CHECK(mxu_wire_next_header(&m.headers, &n, &v) && slice_is(n, "Content-Type") &&
          slice_is(v, "text/plain"));
    CHECK(mxu_wire_next_header(&m.headers, &n, &v) && slice_is(n, "X-A") && slice_is(v, "1"));
    CHECK(!mxu_wire_next_header(&m.headers, &n, &v));
    check_strict(dec_result, buf, len);
    free(buf);

    /* A body with every byte value, NULs included, survives. */
    char bin[256];
    for (int i = 0; i < 256; i++)
        bin[i] = (char)i;
    mxu_slice body = {bin, 256};
    len = mxu_result_encode(NULL, 0, 200, NULL, NULL, 0, body);
    buf = malloc(len);
    mxu_result_encode(buf, len, 200, NULL, NULL, 0, body);
    CHECK_EQ_INT(mxu_result_decode(buf, len, &m), 0);
    CHECK(m.body.len == 256 && memcmp(m.body.ptr, bin, 256) == 0);
    free(buf);
}

static void test_log_roundtrip(void)
{
    size_t len = mxu_log_encode(NULL, 0, 2, S("line one\nline two"));
    uint8_t *buf = malloc(len);
    CHECK_EQ_U64(mxu_log_encode(buf, len, 2, S("line one\nline two")), len);
    mxu_log_msg m;
    CHECK_EQ_INT(mxu_log_decode(buf, len, &m), 0);
    CHECK_EQ_U64(m.level, 2);
    CHECK(slice_is(m.text, "line one\nline two"));
    check_strict(dec_log, buf, len);
    free(buf);
}

/* The sizing pass (cap 0) and a short buffer both report the exact length. */
static void test_sizing_pass(void)
{
    const char *names[] = {"A", "B"};
    const char *values[] = {"1", "22"};
    size_t len;
    uint8_t *buf = make_invoke(&len, "PUT", "/x", "q", names, values, 2, "body!");
    for (size_t cap = 0; cap < len; cap++) {
        uint8_t *b = malloc(cap ? cap : 1);
        mxu_slice hn[2] = {S("A"), S("B")}, hv[2] = {S("1"), S("22")};
        CHECK_EQ_U64(
            mxu_invoke_encode(b, cap, 1500, S("PUT"), S("/x"), S("q"), hn, hv, 2, S("body!")), len);
        free(b);
    }
    free(buf);
    CHECK_EQ_U64(mxu_hello_encode(NULL, 0, NULL), 8);
    CHECK_EQ_U64(mxu_log_encode(NULL, 0, 0, S("")), 8);
    CHECK_EQ_U64(mxu_result_encode(NULL, 0, 200, NULL, NULL, 0, S("")), 12);
}

/* ---- what decoders refuse ------------------------------------------------------------- */

static void test_lengths_past_end(void)
{
    size_t len;
    uint8_t *buf = make_invoke(&len, "GET", "/p", "q=1", NULL, NULL, 0, "body");
    /* Method length is at offset 8. */
    uint32_t orig = get32(buf + 8);
    for (uint32_t bad = orig + 1; bad < orig + 64; bad++) {
        put32(buf + 8, bad);
        if (decode_exact(dec_invoke, buf, len) == 0) {
            /* A longer method can only decode if the rest still lines up,
             * which these bytes never do. */
            MXU_TEST_FAIL_("method length %u decoded", bad);
        }
    }
    put32(buf + 8, UINT32_MAX);
    CHECK_EQ_INT(decode_exact(dec_invoke, buf, len), -1);
    put32(buf + 8, orig);
    /* Body length is the last u32 before the 4 body bytes. */
    put32(buf + len - 8, 5);
    CHECK_EQ_INT(decode_exact(dec_invoke, buf, len), -1);
    put32(buf + len - 8, 0x80000000u);
    CHECK_EQ_INT(decode_exact(dec_invoke, buf, len), -1);
    put32(buf + len - 8, 3); /* shorter: the leftover byte is trailing */
    CHECK_EQ_INT(decode_exact(dec_invoke, buf, len), -1);
    put32(buf + len - 8, 4);
    CHECK_EQ_INT(decode_exact(dec_invoke, buf, len), 0);
    free(buf);

    uint8_t log[12];
    put32(log, 1);
    put32(log + 4, 4);
    memcpy(log + 8, "abc", 3);
    CHECK_EQ_INT(decode_exact(dec_log, log, 11), -1);
}

static void test_huge_counts(void)
{
    const char *names[] = {"A"};
    const char *values[] = {"b"};
    size_t len;
    uint8_t *buf = make_invoke(&len, "GET", "/", "", names, values, 1, "");
    /* Header count is after deadline(8) + "GET"(7) + "/"(5) + ""(4). */
    size_t at = 8 + 7 + 5 + 4;
    CHECK_EQ_U64(get32(buf + at), 1);
    uint32_t counts[] = {0, 2, 3, 1000, 0x10000000u, UINT32_MAX};
    for (size_t i = 0; i < ARRAY_LEN(counts); i++) {
        put32(buf + at, counts[i]);
        if (decode_exact(dec_invoke, buf, len) != -1)
            MXU_TEST_FAIL_("header count %u decoded", counts[i]);
    }
    put32(buf + at, 1);
    CHECK_EQ_INT(decode_exact(dec_invoke, buf, len), 0);
    free(buf);

    size_t rlen;
    uint8_t *res = make_result(&rlen, 200, NULL, NULL);
    put32(res + 4, UINT32_MAX);
    CHECK_EQ_INT(decode_exact(dec_result, res, rlen), -1);
    free(res);

    size_t ilen;
    uint8_t *init = make_init(&ilen, "f", 1, NULL, NULL);
    put32(init + ilen - 4, 0x7fffffff); /* config count is the last field */
    CHECK_EQ_INT(decode_exact(dec_init, init, ilen), -1);
    free(init);
}

static void test_bad_fields(void)
{
    size_t len;
    uint8_t *b;
#define INVOKE_REJECTS(...)                                     \
    do {                                                        \
        b = make_invoke(&len, __VA_ARGS__);                     \
        if (decode_exact(dec_invoke, b, len) != -1)             \
            MXU_TEST_FAIL_("INVOKE decoded: %s", #__VA_ARGS__); \
        free(b);                                                \
    } while (0)
    static const char *const ok_names[] = {"X"};
    static const char *const ok_values[] = {"v"};
    INVOKE_REJECTS("", "/", "", NULL, NULL, 0, "");        /* empty method */
    INVOKE_REJECTS("G T", "/", "", NULL, NULL, 0, "");     /* space in method */
    INVOKE_REJECTS("GET\r\n", "/", "", NULL, NULL, 0, ""); /* CRLF in method */
    INVOKE_REJECTS("GET", "", "", NULL, NULL, 0, "");      /* empty path */
    INVOKE_REJECTS("GET", "a", "", NULL, NULL, 0, "");     /* relative path */
    INVOKE_REJECTS("GET", "/a\nb", "", NULL, NULL, 0, ""); /* LF in path */
    INVOKE_REJECTS("GET", "/", "a\rb", NULL, NULL, 0, ""); /* CR in query */
    static const char *const bad_names[] = {"", "A B", "A:", "A\n", "\x80", "A\x01"};
    for (size_t i = 0; i < ARRAY_LEN(bad_names); i++) {
        const char *n[1] = {bad_names[i]};
        INVOKE_REJECTS("GET", "/", "", n, ok_values, 1, "");
    }
    static const char *const bad_values[] = {"a\rb", "a\nb", "\r\n", "a\x7f", "\x01"};
    for (size_t i = 0; i < ARRAY_LEN(bad_values); i++) {
        const char *v[1] = {bad_values[i]};
        INVOKE_REJECTS("GET", "/", "", ok_names, v, 1, "");
    }
    /* Tabs, spaces and bytes >= 0x80 are fine in values; NUL in a value or a
     * path is not (built by hand since C strings cannot carry it). */
    {
        const char *v[1] = {"a\tb c\xc3\xa9"};
        b = make_invoke(&len, "GET", "/", "", ok_names, v, 1, "");
        CHECK_EQ_INT(decode_exact(dec_invoke, b, len), 0);
        free(b);
        b = make_invoke(&len, "GET", "/ab", "", NULL, NULL, 0, "");
        b[8 + 7 + 4 + 1] = '\0'; /* "/\0b" */
        CHECK_EQ_INT(decode_exact(dec_invoke, b, len), -1);
        free(b);
    }
#undef INVOKE_REJECTS

    /* RESULT: status bounds and the same header rules. */
    uint32_t statuses[] = {0, 99, 600, 1000, UINT32_MAX};
    for (size_t i = 0; i < ARRAY_LEN(statuses); i++) {
        b = make_result(&len, statuses[i], NULL, NULL);
        CHECK_EQ_INT(decode_exact(dec_result, b, len), -1);
        free(b);
    }
    uint32_t good[] = {100, 200, 599};
    for (size_t i = 0; i < ARRAY_LEN(good); i++) {
        b = make_result(&len, good[i], "X-Ok", "yes");
        CHECK_EQ_INT(decode_exact(dec_result, b, len), 0);
        free(b);
    }
    b = make_result(&len, 200, "Set-Cookie", "a=b\r\nX-Evil: 1");
    CHECK_EQ_INT(decode_exact(dec_result, b, len), -1);
    free(b);
    b = make_result(&len, 200, "Bad Name", "x");
    CHECK_EQ_INT(decode_exact(dec_result, b, len), -1);
    free(b);

    /* LOG level. */
    uint8_t log[8];
    put32(log, 4);
    put32(log + 4, 0);
    CHECK_EQ_INT(decode_exact(dec_log, log, 8), -1);
    put32(log, 3);
    CHECK_EQ_INT(decode_exact(dec_log, log, 8), 0);

    /* HELLO: version 0, and a CR in the SDK string. */
    uint8_t hello[9];
    put32(hello, 0);
    put32(hello + 4, 0);
    CHECK_EQ_INT(decode_exact(dec_hello, hello, 8), -1);
    put32(hello, 1);
    put32(hello + 4, 1);
    hello[8] = '\r';
    CHECK_EQ_INT(decode_exact(dec_hello, hello, 9), -1);

    /* INIT: concurrency 0, empty function, bad config names and values. */
    b = make_init(&len, "f", 0, NULL, NULL);
    CHECK_EQ_INT(decode_exact(dec_init, b, len), -1);
    free(b);
    b = make_init(&len, "", 1, NULL, NULL);
    CHECK_EQ_INT(decode_exact(dec_init, b, len), -1);
    free(b);
    b = make_init(&len, "f", 1, "", "v");
    CHECK_EQ_INT(decode_exact(dec_init, b, len), -1);
    free(b);
    b = make_init(&len, "f", 1, "A=B", "v");
    CHECK_EQ_INT(decode_exact(dec_init, b, len), -1);
    free(b);
    b = make_init(&len, "f", 1, "A", "multi\nline ok");
    CHECK_EQ_INT(decode_exact(dec_init, b, len), 0);
    b[len - 1] = '\0'; /* NUL in a config value */
    CHECK_EQ_INT(decode_exact(dec_init, b, len), -1);
    free(b);
    b = make_init(&len, "f", 1, NULL, NULL);
    put32(b, 0); /* protocol version 0 */
    CHECK_EQ_INT(decode_exact(dec_init, b, len), -1);
    free(b);
}

/* Flip each byte of a valid INVOKE in turn: the decoder may accept or refuse,
 * but must never read out of bounds (ASan) and an accepted result must
 * re-encode to the mutated bytes. */
static void test_mutations(void)
{
    const char *names[] = {"Host", "X"};
    const char *values[] = {"h", "v"};
    size_t len;
    uint8_t *buf = make_invoke(&len, "GET", "/p", "a=b", names, values, 2, "xyz");
    static const uint8_t repl[] = {0x00, 0x01, 0x7f, 0x80, 0xff, '/', '\r'};
    for (size_t i = 0; i < len; i++) {
        for (size_t k = 0; k < sizeof(repl); k++) {
            uint8_t *m = malloc(len);
            memcpy(m, buf, len);
            m[i] = repl[k];
            mxu_invoke_msg msg;
            if (mxu_invoke_decode(m, len, &msg) == 0) {
                mxu_slice hn[8], hv[8];
                uint32_t n = 0;
                CHECK(msg.headers.count <= 8);
                while (mxu_wire_next_header(&msg.headers, &hn[n], &hv[n]))
                    n++;
                uint8_t *again = malloc(len);
                CHECK_EQ_U64(mxu_invoke_encode(again, len, msg.deadline_ms, msg.method, msg.path,
                                               msg.query, hn, hv, n, msg.body),
                             len);
                CHECK(memcmp(again, m, len) == 0);
                free(again);
            }
            free(m);
        }
    }
    free(buf);
}

/* ---- descriptor operations ------------------------------------------------------------ */

static uint8_t *make_res_op(size_t *n, uint32_t call_id, mxu_slice name, uint32_t op, uint64_t n1,
                            uint64_t n2, const mxu_slice *args, uint32_t nargs)
{
    size_t len = mxu_res_op_encode(NULL, 0, call_id, name, op, n1, n2, args, nargs);
    uint8_t *buf = malloc(len ? len : 1);
    CHECK_EQ_U64(mxu_res_op_encode(buf, len, call_id, name, op, n1, n2, args, nargs), len);
    *n = len;
    return buf;
}

static uint8_t *make_res_reply(size_t *n, uint32_t call_id, uint32_t status, mxu_slice message,
                               uint64_t n1, uint64_t n2, const mxu_slice *vals, uint32_t nvals)
{
    size_t len = mxu_res_reply_encode(NULL, 0, call_id, status, message, n1, n2, vals, nvals);
    uint8_t *buf = malloc(len ? len : 1);
    CHECK_EQ_U64(mxu_res_reply_encode(buf, len, call_id, status, message, n1, n2, vals, nvals),
                 len);
    *n = len;
    return buf;
}

static void test_res_op_layout(void)
{
    /* The byte layout docs/protocol.md promises, field by field. */
    mxu_slice args[2] = {S("k1"), S("val")};
    size_t len;
    uint8_t *buf = make_res_op(&len, 0x01020304, S("orders"), MXU_RES_KV_CAS, 0x1122334455667788ull,
                               9, args, 2);
    /* clang-format off */
    static const uint8_t want[] = {
        0x04, 0x03, 0x02, 0x01,                         /* call id */
        6, 0, 0, 0, 'o', 'r', 'd', 'e', 'r', 's',       /* name */
        4, 0, 0, 0,                                     /* op */
        0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11, /* n1 */
        9, 0, 0, 0, 0, 0, 0, 0,                         /* n2 */
        2, 0, 0, 0,                                     /* nargs */
        2, 0, 0, 0, 'k', '1',                           /* args[0] */
        3, 0, 0, 0, 'v', 'a', 'l',                      /* args[1] */
    };
    /* clang-format on */
    CHECK_EQ_U64(len, sizeof(want));
    CHECK(memcmp(buf, want, len) == 0);
    free(buf);

    mxu_slice vals[1] = {S("x")};
    buf = make_res_reply(&len, 7, MXU_RES_CONFLICT, S("lost"), 1, 2, vals, 1);
    /* clang-format off */
    static const uint8_t rwant[] = {
        7, 0, 0, 0,                      /* call id */
        3, 0, 0, 0,                      /* status */
        4, 0, 0, 0, 'l', 'o', 's', 't',  /* message */
        1, 0, 0, 0, 0, 0, 0, 0,          /* n1 */
        2, 0, 0, 0, 0, 0, 0, 0,          /* n2 */
        1, 0, 0, 0,                      /* nvals */
        1, 0, 0, 0, 'x',                 /* vals[0] */
    };
    /* clang-format on */
    CHECK_EQ_U64(len, sizeof(rwant));
    CHECK(memcmp(buf, rwant, len) == 0);
    free(buf);
}

static void test_res_op_roundtrip(void)
{
    /* Args with every byte value, empty ones, and the full 64. */
    char bin[256];
    for (int i = 0; i < 256; i++)
        bin[i] = (char)i;
    mxu_slice args[MXU_RES_MAX_ARGS];
    for (uint32_t i = 0; i < MXU_RES_MAX_ARGS; i++)
        args[i] = (mxu_slice){bin, i * 4 % 257};
    args[3] = (mxu_slice){"", 0};
    uint32_t counts[] = {0, 1, 2, 5, MXU_RES_MAX_ARGS};
    for (size_t c = 0; c < ARRAY_LEN(counts); c++) {
        size_t len;
        uint8_t *buf =
            make_res_op(&len, 42, S("orders"), MXU_RES_SVC_CALL, UINT64_MAX, 0, args, counts[c]);
        mxu_res_op_msg m;
        CHECK_EQ_INT(mxu_res_op_decode(buf, len, &m), 0);
        CHECK_EQ_U64(m.call_id, 42);
        CHECK(slice_is(m.name, "orders"));
        CHECK_EQ_U64(m.op, MXU_RES_SVC_CALL);
        CHECK_EQ_U64(m.n1, UINT64_MAX);
        CHECK_EQ_U64(m.n2, 0);
        CHECK_EQ_U64(m.nargs, counts[c]);
        for (uint32_t i = 0; i < m.nargs; i++)
            CHECK(m.args[i].len == args[i].len &&
                  (args[i].len == 0 || memcmp(m.args[i].ptr, args[i].ptr, args[i].len) == 0));
        uint8_t *again = malloc(len);
        CHECK_EQ_U64(
            mxu_res_op_encode(again, len, m.call_id, m.name, m.op, m.n1, m.n2, m.args, m.nargs),
            len);
        CHECK(memcmp(again, buf, len) == 0);
        free(again);
        if (counts[c] <= 5) /* every truncation; the 64-arg one is long */
            check_strict(dec_res_op, buf, len);
        free(buf);
    }

    /* An op code the codec does not know still decodes: refusing it is the
     * host's business, with an error the function sees (INVALID). */
    size_t len;
    uint8_t *buf = make_res_op(&len, 1, S("q"), 999, 0, 0, NULL, 0);
    mxu_res_op_msg m;
    CHECK_EQ_INT(mxu_res_op_decode(buf, len, &m), 0);
    CHECK_EQ_U64(m.op, 999);
    check_strict(dec_res_op, buf, len);
    free(buf);
}

static void test_res_reply_roundtrip(void)
{
    mxu_slice vals[4] = {S("k1"), S(""), S("k3"), S("cursor")};
    uint32_t counts[] = {0, 1, 4};
    for (size_t c = 0; c < ARRAY_LEN(counts); c++) {
        size_t len;
        uint8_t *buf =
            make_res_reply(&len, 9, MXU_RES_OK, S(""), 3, 1700000000000ull, vals, counts[c]);
        mxu_res_reply_msg m;
        CHECK_EQ_INT(mxu_res_reply_decode(buf, len, &m), 0);
        CHECK_EQ_U64(m.call_id, 9);
        CHECK_EQ_U64(m.status, MXU_RES_OK);
        CHECK_EQ_U64(m.message.len, 0);
        CHECK_EQ_U64(m.n1, 3);
        CHECK_EQ_U64(m.n2, 1700000000000ull);
        CHECK_EQ_U64(m.nvals, counts[c]);
        for (uint32_t i = 0; i < m.nvals; i++)
            CHECK(m.vals[i].len == vals[i].len &&
                  memcmp(m.vals[i].ptr, vals[i].ptr, vals[i].len) == 0);
        uint8_t *again = malloc(len);
        CHECK_EQ_U64(mxu_res_reply_encode(again, len, m.call_id, m.status, m.message, m.n1, m.n2,
                                          m.vals, m.nvals),
                     len);
        CHECK(memcmp(again, buf, len) == 0);
        free(again);
        check_strict(dec_res_reply, buf, len);
        free(buf);
    }

    /* Every status, known or not, decodes (a newer host may add some); the
     * message is any bytes. */
    uint32_t statuses[] = {MXU_RES_OK, MXU_RES_DENIED, MXU_RES_CALL_FAILED, 10, UINT32_MAX};
    for (size_t i = 0; i < ARRAY_LEN(statuses); i++) {
        size_t len;
        uint8_t *buf = make_res_reply(&len, 1, statuses[i], S("backend down\r\n"), 0, 0, NULL, 0);
        mxu_res_reply_msg m;
        CHECK_EQ_INT(mxu_res_reply_decode(buf, len, &m), 0);
        CHECK_EQ_U64(m.status, statuses[i]);
        CHECK(slice_is(m.message, "backend down\r\n"));
        check_strict(dec_res_reply, buf, len);
        free(buf);
    }
}

static void test_res_sizing_pass(void)
{
    mxu_slice args[3] = {S("key"), S("a value"), S("")};
    size_t len = mxu_res_op_encode(NULL, 0, 5, S("kv"), MXU_RES_KV_PUT, 1, 2, args, 3);
    CHECK_EQ_U64(len, 4 + 6 + 4 + 8 + 8 + 4 + 7 + 11 + 4);
    for (size_t cap = 0; cap <= len; cap++) {
        uint8_t *b = malloc(cap ? cap : 1);
        CHECK_EQ_U64(mxu_res_op_encode(b, cap, 5, S("kv"), MXU_RES_KV_PUT, 1, 2, args, 3), len);
        if (cap == len)
            CHECK_EQ_INT(mxu_res_op_decode(b, len, &(mxu_res_op_msg){0}), 0);
        free(b);
    }
    size_t rlen = mxu_res_reply_encode(NULL, 0, 5, 0, S("m"), 0, 0, args, 3);
    CHECK_EQ_U64(rlen, 4 + 4 + 5 + 8 + 8 + 4 + 7 + 11 + 4);
    for (size_t cap = 0; cap < rlen; cap++) {
        uint8_t *b = malloc(cap ? cap : 1);
        CHECK_EQ_U64(mxu_res_reply_encode(b, cap, 5, 0, S("m"), 0, 0, args, 3), rlen);
        free(b);
    }
    CHECK_EQ_U64(mxu_res_reply_encode(NULL, 0, 0, 0, S(""), 0, 0, NULL, 0), 32);

    /* More runs than a decoder accepts cannot be encoded at all. */
    mxu_slice many[MXU_RES_MAX_ARGS + 1];
    for (size_t i = 0; i < ARRAY_LEN(many); i++)
        many[i] = S("x");
    CHECK_EQ_U64(mxu_res_op_encode(NULL, 0, 1, S("kv"), 1, 0, 0, many, MXU_RES_MAX_ARGS + 1),
                 SIZE_MAX);
    CHECK_EQ_U64(mxu_res_reply_encode(NULL, 0, 1, 0, S(""), 0, 0, many, MXU_RES_MAX_ARGS + 1),
                 SIZE_MAX);
}

static void test_res_bad_counts(void)
{
    mxu_slice args[2] = {S("ab"), S("c")};
    size_t len;
    uint8_t *buf = make_res_op(&len, 1, S("kv"), MXU_RES_KV_PUT, 0, 0, args, 2);
    /* nargs is after call id(4) + name(6) + op(4) + n1(8) + n2(8). */
    size_t at = 4 + 6 + 4 + 8 + 8;
    CHECK_EQ_U64(get32(buf + at), 2);
    uint32_t counts[] = {0, 1, 3, MXU_RES_MAX_ARGS, MXU_RES_MAX_ARGS + 1, 1000, UINT32_MAX};
    for (size_t i = 0; i < ARRAY_LEN(counts); i++) {
        put32(buf + at, counts[i]);
        mxu_res_op_msg m;
        m.nargs = 12345;
        if (mxu_res_op_decode(buf, len, &m) != -1)
            MXU_TEST_FAIL_("nargs %u decoded", counts[i]);
        CHECK_EQ_U64(m.nargs, 0); /* never a count past the array */
    }
    put32(buf + at, 2);
    CHECK_EQ_INT(decode_exact(dec_res_op, buf, len), 0);
    /* An arg length past the end, or short of it (trailing bytes). */
    size_t arg0 = at + 4;
    uint32_t lens[] = {3, 4, 100, UINT32_MAX, 1};
    for (size_t i = 0; i < ARRAY_LEN(lens); i++) {
        put32(buf + arg0, lens[i]);
        if (decode_exact(dec_res_op, buf, len) != -1)
            MXU_TEST_FAIL_("arg length %u decoded", lens[i]);
    }
    free(buf);

    /* A reply with 65 runs, built by hand (the encoder refuses). */
    uint8_t reply[4 + 4 + 4 + 8 + 8 + 4 + 65 * 4];
    memset(reply, 0, sizeof(reply));
    put32(reply + 28, MXU_RES_MAX_ARGS + 1);
    CHECK_EQ_INT(decode_exact(dec_res_reply, reply, sizeof(reply)), -1);
    put32(reply + 28, MXU_RES_MAX_ARGS);
    CHECK_EQ_INT(decode_exact(dec_res_reply, reply, sizeof(reply) - 4), 0);
    CHECK_EQ_INT(decode_exact(dec_res_reply, reply, sizeof(reply)), -1); /* 4 trailing bytes */
    put32(reply + 28, UINT32_MAX);
    mxu_res_reply_msg rm;
    CHECK_EQ_INT(mxu_res_reply_decode(reply, sizeof(reply), &rm), -1);
    CHECK_EQ_U64(rm.nvals, 0);
    /* Message length past the end. */
    put32(reply + 28, 0);
    put32(reply + 8, 1000);
    CHECK_EQ_INT(decode_exact(dec_res_reply, reply, 32), -1);
}

static void test_res_op_names(void)
{
    char name[70];
    memset(name, 'a', sizeof(name));
    for (uint32_t n = 0; n <= 66; n++) {
        size_t len;
        uint8_t *buf = make_res_op(&len, 1, (mxu_slice){name, n}, MXU_RES_KV_GET, 0, 0, NULL, 0);
        int want = n >= 1 && n <= 63 ? 0 : -1;
        if (decode_exact(dec_res_op, buf, len) != want)
            MXU_TEST_FAIL_("a %u-byte name: decode did not return %d", n, want);
        free(buf);
    }
}

/* Flip each byte of a valid op and reply: the decoders may accept or refuse,
 * but never read out of bounds, and what they accept re-encodes exactly. */
static void test_res_mutations(void)
{
    mxu_slice args[3] = {S("key"), S("value"), S("")};
    size_t olen, rlen;
    uint8_t *op = make_res_op(&olen, 3, S("orders"), MXU_RES_KV_PUT, 1, 2, args, 3);
    uint8_t *rep = make_res_reply(&rlen, 3, MXU_RES_OK, S("ok"), 1, 2, args, 3);
    static const uint8_t repl[] = {0x00, 0x01, 0x03, 0x40, 0x41, 0x7f, 0xff};
    for (size_t i = 0; i < olen; i++) {
        for (size_t k = 0; k < sizeof(repl); k++) {
            uint8_t *mb = malloc(olen);
            memcpy(mb, op, olen);
            mb[i] = repl[k];
            mxu_res_op_msg m;
            if (mxu_res_op_decode(mb, olen, &m) == 0) {
                uint8_t *again = malloc(olen);
                CHECK_EQ_U64(mxu_res_op_encode(again, olen, m.call_id, m.name, m.op, m.n1, m.n2,
                                               m.args, m.nargs),
                             olen);
                CHECK(memcmp(again, mb, olen) == 0);
                free(again);
            }
            free(mb);
        }
    }
    for (size_t i = 0; i < rlen; i++) {
        for (size_t k = 0; k < sizeof(repl); k++) {
            uint8_t *mb = malloc(rlen);
            memcpy(mb, rep, rlen);
            mb[i] = repl[k];
            mxu_res_reply_msg m;
            if (mxu_res_reply_decode(mb, rlen, &m) == 0) {
                uint8_t *again = malloc(rlen);
                CHECK_EQ_U64(mxu_res_reply_encode(again, rlen, m.call_id, m.status, m.message, m.n1,
                                                  m.n2, m.vals, m.nvals),
                             rlen);
                CHECK(memcmp(again, mb, rlen) == 0);
                free(again);
            }
            free(mb);
        }
    }
    free(op);
    free(rep);
}

MXU_TESTS(TEST(test_header_layout), TEST(test_header_rejects), TEST(test_writer_sizing),
          TEST(test_reader_bounds), TEST(test_hello_roundtrip), TEST(test_init_roundtrip),
          TEST(test_invoke_roundtrip), TEST(test_result_roundtrip), TEST(test_log_roundtrip),
          TEST(test_sizing_pass), TEST(test_lengths_past_end), TEST(test_huge_counts),
          TEST(test_bad_fields), TEST(test_mutations), TEST(test_res_op_layout),
          TEST(test_res_op_roundtrip), TEST(test_res_reply_roundtrip), TEST(test_res_sizing_pass),
          TEST(test_res_bad_counts), TEST(test_res_op_names), TEST(test_res_mutations))
