/* Unit tests for the pieces of the compose engine that stand alone
 * (src/compose/compose-util.c, compose-trace.c): W3C traceparent parsing and
 * formatting, the circuit breaker's state machine with time given, the
 * weighted draw (exact over every draw, and a 90/10 split of a random
 * source), JSON pointers and the text a switch compares, and the trace
 * store's bounds. */
#include "compose/compose-internal.h"
#include "test.h"

#include <sodium.h>

static void test_traceparent_parse(void)
{
    mxu_traceparent tp;
    const char *ok = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    CHECK_EQ_INT(mxu_traceparent_parse(ok, strlen(ok), &tp), 0);
    CHECK_EQ_INT(tp.trace_id[0], 0x4b);
    CHECK_EQ_INT(tp.trace_id[15], 0x36);
    CHECK_EQ_INT(tp.parent_id[7], 0xb7);
    CHECK_EQ_INT(tp.flags, 1);
    char out[64];
    mxu_traceparent_format(&tp, out, sizeof(out));
    CHECK_STR(out, ok);
    char hex[33];
    mxu_trace_id_hex(tp.trace_id, hex, sizeof(hex));
    CHECK_STR(hex, "4bf92f3577b34da6a3ce929d0e0e4736");
    /* a later version may carry more fields after a '-' */
    const char *v1 = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-extra";
    CHECK_EQ_INT(mxu_traceparent_parse(v1, strlen(v1), &tp), 0);
    CHECK_EQ_INT(tp.flags, 0);
    static const char *const bad[] = {
        "",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0",    /* short */
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x", /* 00 with more */
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",   /* version ff */
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",   /* zero trace id */
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",   /* zero parent */
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",   /* uppercase */
        "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",   /* separator */
        "0g-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",   /* not hex */
        "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",  /* no '-' after */
    };
    for (size_t i = 0; i < MXU_ARRAY_LEN(bad); i++) {
        if (mxu_traceparent_parse(bad[i], strlen(bad[i]), &tp) == 0)
            MXU_TEST_FAIL_("accepted '%s'", bad[i]);
    }
    CHECK_EQ_INT(mxu_traceparent_parse(NULL, 0, &tp), -1);
}

/* closed -> open after N consecutive failures -> half-open after open_ms
 * with exactly one trial -> closed on success, open again on failure. */
static void test_breaker(void)
{
    mxu_breaker b = {0};
    bool trial;
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < 2; i++) {
            CHECK(mxu_breaker_allow(&b, 100, &trial));
            CHECK(!trial);
            mxu_breaker_report(&b, false, trial, 100, 3, 1000);
        }
        /* a success in between starts the count again */
        CHECK(mxu_breaker_allow(&b, 100, &trial));
        mxu_breaker_report(&b, true, trial, 100, 3, 1000);
        CHECK_EQ_INT(b.state, MXU_BREAKER_CLOSED);
    }
    for (int i = 0; i < 3; i++) {
        CHECK(mxu_breaker_allow(&b, 200, &trial));
        mxu_breaker_report(&b, false, trial, 200, 3, 1000);
    }
    CHECK_EQ_INT(b.state, MXU_BREAKER_OPEN);
    CHECK(!mxu_breaker_allow(&b, 201, &trial));
    CHECK(!mxu_breaker_allow(&b, 1199, &trial));
    /* a call from before it opened changes nothing */
    mxu_breaker_report(&b, true, false, 300, 3, 1000);
    CHECK_EQ_INT(b.state, MXU_BREAKER_OPEN);
    /* half-open: exactly one trial */
    CHECK(mxu_breaker_allow(&b, 1200, &trial));
    CHECK(trial);
    CHECK_EQ_INT(b.state, MXU_BREAKER_HALF_OPEN);
    bool t2;
    CHECK(!mxu_breaker_allow(&b, 1201, &t2));
    /* the trial fails: open again for open_ms from now */
    mxu_breaker_report(&b, false, true, 1300, 3, 1000);
    CHECK_EQ_INT(b.state, MXU_BREAKER_OPEN);
    CHECK(!mxu_breaker_allow(&b, 2299, &trial));
    CHECK(mxu_breaker_allow(&b, 2300, &trial));
    CHECK(trial);
    /* an abandoned trial lets another one through */
    mxu_breaker_abandon(&b, true);
    CHECK(mxu_breaker_allow(&b, 2301, &trial));
    CHECK(trial);
    /* the trial succeeds: closed, and calls flow */
    mxu_breaker_report(&b, true, true, 2400, 3, 1000);
    CHECK_EQ_INT(b.state, MXU_BREAKER_CLOSED);
    for (int i = 0; i < 10; i++) {
        CHECK(mxu_breaker_allow(&b, 2500, &trial));
        CHECK(!trial);
    }
    /* two failures are not three */
    mxu_breaker_report(&b, false, false, 2500, 3, 1000);
    mxu_breaker_report(&b, false, false, 2500, 3, 1000);
    CHECK_EQ_INT(b.state, MXU_BREAKER_CLOSED);
}

static void test_weighted_pick(void)
{
    uint32_t w[] = {90, 10};
    size_t n[2] = {0, 0};
    for (uint64_t d = 0; d < 100; d++)
        n[mxu_weighted_pick(w, 2, d)]++;
    CHECK_EQ_U64(n[0], 90);
    CHECK_EQ_U64(n[1], 10);
    CHECK_EQ_U64(mxu_weighted_pick(w, 2, 89), 0);
    CHECK_EQ_U64(mxu_weighted_pick(w, 2, 90), 1);
    uint32_t z[] = {0, 5, 0, 5};
    CHECK_EQ_U64(mxu_weighted_pick(z, 4, 0), 1);
    CHECK_EQ_U64(mxu_weighted_pick(z, 4, 5), 3);
    /* the engine's random source: 90/10 within half a percent over 100,000 */
    mxu_compose_config cfg = {.reg = (mxu_registry *)1, .sched = (mxu_sched *)1};
    mxu_compose *c;
    mxu_err err;
    CHECK_EQ_INT(mxu_compose_create(uv_default_loop(), &cfg, &c, &err), 0);
    n[0] = n[1] = 0;
    for (int i = 0; i < 100000; i++)
        n[mxu_weighted_pick(w, 2, compose_rand(c) % 100)]++;
    CHECK(n[1] > 9500 && n[1] < 10500);
    mxu_compose_destroy(c);
}

static void test_json_pointer(void)
{
    json_t *doc = json_loads("{\"customer\": {\"tier\": \"gold\", \"n\": 3, \"ok\": true, "
                             "\"list\": [10, {\"x\": null}]}, \"a/b\": 1, \"m~n\": 2, \"\": 7}",
                             0, NULL);
    CHECK(doc != NULL);
    struct {
        const char *ptr, *text;
    } cases[] = {
        {"/customer/tier", "gold"},
        {"/customer/n", "3"},
        {"/customer/ok", "true"},
        {"/customer/list/0", "10"},
        {"/customer/list/1/x", "null"},
        {"/a~1b", "1"},
        {"/m~0n", "2"},
        {"/", "7"},
    };
    for (size_t i = 0; i < MXU_ARRAY_LEN(cases); i++) {
        char *t = mxu_json_case_text(mxu_json_pointer(doc, cases[i].ptr));
        if (t == NULL || strcmp(t, cases[i].text) != 0)
            MXU_TEST_FAIL_("%s: got %s, wanted %s", cases[i].ptr, t ? t : "(null)", cases[i].text);
        free(t);
    }
    CHECK(mxu_json_pointer(doc, "") == doc);
    static const char *const none[] = {"/nope",
                                       "customer",
                                       "/customer/list/2",
                                       "/customer/list/01",
                                       "/customer/list/-",
                                       "/customer/tier/x",
                                       "/a~2b",
                                       "/customer/list/x"};
    for (size_t i = 0; i < MXU_ARRAY_LEN(none); i++) {
        if (mxu_json_pointer(doc, none[i]) != NULL)
            MXU_TEST_FAIL_("%s names something", none[i]);
    }
    /* objects and arrays match no case */
    CHECK(mxu_json_case_text(mxu_json_pointer(doc, "/customer")) == NULL);
    CHECK(mxu_json_case_text(NULL) == NULL);
    CHECK(mxu_json_pointer(NULL, "/x") == NULL);
    json_decref(doc);
}

static void test_trace_store_bounds(void)
{
    trace_store *ts = trace_store_new(3, 1000);
    uint8_t id[16] = {1};
    for (int i = 0; i < 5; i++) {
        id[15] = (uint8_t)i;
        char *j = mxu_asprintf("{\"n\": %d}", i);
        trace_store_add(ts, "t1", "svc", id,
                        &(trace_summary){.run = (uint64_t)i, .start_ms = (uint64_t)i}, j,
                        strlen(j));
    }
    id[15] = 1;
    CHECK(trace_store_get(ts, NULL, id) == NULL); /* evicted: 3 runs kept */
    id[15] = 4;
    json_t *got = trace_store_get(ts, NULL, id);
    CHECK(got != NULL);
    CHECK_EQ_INT(
        json_integer_value(json_object_get(json_array_get(json_object_get(got, "runs"), 0), "n")),
        4);
    json_decref(got);
    /* another tenant's ring: not evicted by t1, not visible to t1 */
    char *j = mxu_strdup("{\"n\": 9}");
    id[15] = 9;
    trace_store_add(ts, "t2", "svc", id, &(trace_summary){.run = 9, .start_ms = 9}, j, strlen(j));
    /* listed newest first, across tenants */
    json_t *l = trace_store_list(ts, NULL, NULL, 10, NULL, NULL);
    CHECK_EQ_INT(json_array_size(l), 4);
    CHECK_STR(json_string_value(json_object_get(json_array_get(l, 0), "run")), "0000000000000009");
    CHECK_STR(json_string_value(json_object_get(json_array_get(l, 3), "run")), "0000000000000002");
    json_decref(l);
    l = trace_store_list(ts, "t1", NULL, 2, NULL, NULL);
    CHECK_EQ_INT(json_array_size(l), 2);
    json_decref(l);
    CHECK(trace_store_get(ts, "t1", id) == NULL);
    got = trace_store_get(ts, "t2", id);
    CHECK(got != NULL);
    json_decref(got);
    char tenant[40], svc[64];
    CHECK(trace_store_owner(ts, id, tenant, sizeof(tenant), svc, sizeof(svc)));
    CHECK_STR(tenant, "t2");
    /* the byte bound: a big run evicts older ones */
    char *big = mxu_malloc(996);
    memset(big, ' ', 995);
    big[0] = '1';
    big[995] = 0;
    id[15] = 10;
    trace_store_add(ts, "t2", "svc", id, &(trace_summary){0}, big, 995);
    id[15] = 9;
    CHECK(trace_store_get(ts, "t2", id) == NULL);
    trace_store_free(ts);
}

MXU_TESTS(TEST(test_traceparent_parse), TEST(test_breaker), TEST(test_weighted_pick),
          TEST(test_json_pointer), TEST(test_trace_store_bounds))
