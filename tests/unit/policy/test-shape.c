/* Unit tests for traffic shaping and quotas (src/policy/policy-shape.c,
 * policy-quota.c): the token bucket with time given, rates as written,
 * limits' JSON, admission across several gates (all or nothing), concurrency
 * slots, links, priority classes, and quota reservations that never let
 * concurrent requests run more than the quota. */
#include "policy/policy-internal.h"
#include "test.h"

#include <errno.h>

#define MS 1000000ull
#define S  1000000000ull

static void test_rates(void)
{
    mxu_err err;
    uint64_t n, p;
    CHECK_EQ_INT(mxu_parse_rate("100/s", &n, &p, &err), 0);
    CHECK_EQ_U64(n, 100);
    CHECK_EQ_U64(p, 1000);
    CHECK_EQ_INT(mxu_parse_rate("6000/m", &n, &p, &err), 0);
    CHECK_EQ_U64(p, 60000);
    CHECK_EQ_INT(mxu_parse_rate("5/hour", &n, &p, &err), 0);
    CHECK_EQ_U64(p, 3600000);
    static const char *const bad[] = {"100",  "/s",    "0/s", "10/d",
                                      "-1/s", "1.5/s", "",    "9999999999/s"};
    for (size_t i = 0; i < MXU_ARRAY_LEN(bad); i++)
        CHECK_EQ_INT(mxu_parse_rate(bad[i], &n, &p, &err), -1);
    CHECK_CONTAINS(err.msg, "e.g. 100/s");
    char out[32];
    mxu_format_rate(50, 60000, out, sizeof(out));
    CHECK_STR(out, "50/m");
}

/* GCRA: burst requests at once, then one per interval; Retry-After is the
 * time to the next token. */
static void test_bucket(void)
{
    mxu_limits l = {.rate = 100, .period_ms = 1000, .burst = 20};
    mxu_bucket b = {0}, next;
    uint64_t now = 1000 * S, retry = 0;
    for (int i = 0; i < 20; i++) {
        CHECK(mxu_bucket_check(&b, &l, now, &next, &retry));
        b = next;
    }
    CHECK(!mxu_bucket_check(&b, &l, now, &next, &retry));
    CHECK_EQ_U64(retry, 10 * MS);
    /* not yet, then exactly when the token is back */
    CHECK(!mxu_bucket_check(&b, &l, now + 10 * MS - 1, &next, &retry));
    CHECK_EQ_U64(retry, 1);
    CHECK(mxu_bucket_check(&b, &l, now + 10 * MS, &next, &retry));
    b = next;
    /* a refusal takes nothing: state is only changed by storing next */
    /* over time T at a steady offered load above the rate: rate*T + burst */
    mxu_bucket c = {0};
    int ok = 0;
    for (uint64_t t = 0; t < 3 * S; t += MS) { /* 1000 req/s for 3 s */
        if (mxu_bucket_check(&c, &l, now + t, &next, &retry)) {
            c = next;
            ok++;
        }
    }
    CHECK(ok >= 319 && ok <= 320);
    /* default burst: one second's worth */
    mxu_limits d = {.rate = 6, .period_ms = 60000};
    CHECK_EQ_INT(mxu_limits_burst(&d), 1);
    d = (mxu_limits){.rate = 250, .period_ms = 1000};
    CHECK_EQ_INT(mxu_limits_burst(&d), 250);
    /* no rate: always */
    mxu_limits none = {.concurrency = 3};
    CHECK(mxu_bucket_check(&b, &none, 0, &next, &retry));
    /* an idle bucket does not save up more than its burst */
    mxu_limits one = {.rate = 1, .period_ms = 1000, .burst = 2};
    mxu_bucket e = {0};
    int n = 0;
    for (int i = 0; i < 5; i++) {
        if (mxu_bucket_check(&e, &one, 3600 * S, &next, &retry)) {
            e = next;
            n++;
        }
    }
    CHECK_EQ_INT(n, 2);
    CHECK_EQ_U64(retry, 1 * S);
}

static void test_limits_json(void)
{
    mxu_err err;
    mxu_limits l;
    json_t *j = json_pack("{s:s, s:i, s:i}", "rate", "100/s", "burst", 20, "concurrency", 50);
    CHECK_EQ_INT(mxu_limits_from_json(j, &l, &err), 0);
    json_decref(j);
    CHECK_EQ_U64(l.rate, 100);
    CHECK_EQ_INT(l.burst, 20);
    CHECK_EQ_INT(l.concurrency, 50);
    char d[96];
    mxu_limits_describe(&l, d, sizeof(d));
    CHECK_STR(d, "100/s, burst 20, concurrency 50");
    j = mxu_limits_json(&l);
    CHECK_STR(json_string_value(json_object_get(j, "rate")), "100/s");
    json_decref(j);
    static const char *const bad[] = {"{\"rate\": 100}", "{\"burst\": 5}", "{\"concurrency\": 0}",
                                      "{\"speed\": 1}", "{\"rate\": \"1/s\", \"burst\": -1}"};
    for (size_t i = 0; i < MXU_ARRAY_LEN(bad); i++) {
        j = json_loads(bad[i], 0, NULL);
        CHECK_EQ_INT(mxu_limits_from_json(j, &l, &err), -1);
        CHECK_EQ_INT(err.code, EINVAL);
        json_decref(j);
    }
    enum mxu_priority p;
    CHECK_EQ_INT(mxu_priority_parse("batch", &p, &err), 0);
    CHECK(mxu_priority_rank(p) < mxu_priority_rank(MXU_PRIO_DEFAULT));
    CHECK(mxu_priority_rank(MXU_PRIO_DEFAULT) < mxu_priority_rank(MXU_PRIO_CRITICAL));
    CHECK_EQ_INT(mxu_priority_parse("urgent", &p, &err), -1);
}

typedef struct penv {
    char dir[64];
    mxu_policy *p;
} penv;

static void penv_init(penv *e)
{
    mxu_err err = {0};
    snprintf(e->dir, sizeof(e->dir), "/tmp/mxu-test-shape-XXXXXX");
    CHECK(mkdtemp(e->dir) != NULL);
    mxu_policy_config cfg = {.data_dir = e->dir, .auth = true};
    if (mxu_policy_open(&cfg, &e->p, &err) < 0)
        MXU_TEST_FAIL_("open: %s", err.msg);
}

static void penv_fini(penv *e)
{
    mxu_policy_close(e->p);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", e->dir);
    CHECK_EQ_INT(system(cmd), 0);
}

static const mxu_principal *make_key(penv *e, const char *tenant)
{
    mxu_err err;
    char *text = NULL;
    mxu_key_spec spec = {.tenant = tenant, .role = MXU_ROLE_INVOKER};
    CHECK_EQ_INT(mxu_policy_key_create(e->p, &spec, &text, NULL, &err), 0);
    char hdr[200];
    snprintf(hdr, sizeof(hdr), "Bearer %s", text);
    free(text);
    const mxu_principal *who;
    CHECK_EQ_INT(mxu_policy_authenticate(e->p, hdr, &who, &err), 0);
    return who;
}

/* Key, tenant and function together: a refusal by one takes nothing from
 * the others, and names the limit that waits longest. */
static void test_admit(void)
{
    penv e;
    penv_init(&e);
    mxu_err err;
    const mxu_principal *who = make_key(&e, "default");
    mxu_limits klim = {.rate = 10, .period_ms = 1000, .burst = 3};
    CHECK_EQ_INT(mxu_policy_key_limits_set(e.p, mxu_principal_key_id(who), &klim, &err), 0);
    mxu_limits tlim = {.rate = 1, .period_ms = 1000, .burst = 2, .concurrency = 5};
    CHECK_EQ_INT(mxu_policy_tenant_limits_set(e.p, "default", &tlim, &err), 0);
    mxu_limits flim = {.concurrency = 1};
    mxu_shape_ticket t1 = {0}, t2 = {0}, t3 = {0};
    mxu_shape_denial d;
    uint64_t now = 5000 * S;
    CHECK_EQ_INT(mxu_shape_admit(e.p, who, "default", "hello", &flim, now, &t1, &d), 0);
    /* the function's one slot is taken */
    CHECK_EQ_INT(mxu_shape_admit(e.p, who, "default", "hello", &flim, now, &t2, &d), -1);
    CHECK_STR(d.code, "concurrency_limited");
    CHECK_STR(d.message, "concurrency limit of function hello: concurrency 1");
    CHECK_EQ_INT(d.retry_after_s, 1);
    mxu_shape_release(&t1);
    mxu_shape_release(&t1); /* idempotent */
    CHECK_EQ_INT(mxu_shape_admit(e.p, who, "default", "hello", &flim, now, &t2, &d), 0);
    mxu_shape_release(&t2);
    /* the tenant's burst of 2 is spent now; the key (burst 3) still has one,
     * and the refusal must not have taken it */
    CHECK_EQ_INT(mxu_shape_admit(e.p, who, "default", "hello", &flim, now, &t3, &d), -1);
    CHECK_STR(d.code, "rate_limited");
    CHECK_STR(d.message, "rate limit of tenant default: 1/s, burst 2");
    CHECK_EQ_INT(d.retry_after_s, 1);
    CHECK_EQ_INT(mxu_shape_admit(e.p, who, "default", "other", NULL, now + S, &t3, &d), 0);
    /* key: 3 tokens at t=now, one back at +100 ms each; used 3 → refused */
    CHECK_EQ_INT(mxu_shape_admit(e.p, who, "default", "other", NULL, now + S, &t3, &d), -1);
    CHECK_CONTAINS(d.message, "tenant default");
    /* a public request (no key) meets the tenant's limits only */
    CHECK_EQ_INT(mxu_shape_admit(e.p, NULL, "default", "x", NULL, now + 3 * S, &t3, &d), 0);
    /* links: per caller function and descriptor */
    mxu_limits link = {.rate = 2, .period_ms = 1000, .burst = 2};
    CHECK_EQ_INT(mxu_shape_admit_link(e.p, "default", "a", "resize", &link, now, &t3, &d), 0);
    CHECK_EQ_INT(mxu_shape_admit_link(e.p, "default", "a", "resize", &link, now, &t3, &d), 0);
    CHECK_EQ_INT(mxu_shape_admit_link(e.p, "default", "a", "resize", &link, now, &t3, &d), -1);
    CHECK_STR(d.message, "rate limit of link a -> resize: 2/s, burst 2");
    CHECK_EQ_INT(mxu_shape_admit_link(e.p, "default", "b", "resize", &link, now, &t3, &d), 0);
    /* limits and priority survive a reopen */
    CHECK_EQ_INT(mxu_policy_key_priority_set(e.p, mxu_principal_key_id(who), MXU_PRIO_BATCH, &err),
                 0);
    char id[MXU_KEY_ID_HEX + 1];
    snprintf(id, sizeof(id), "%s", mxu_principal_key_id(who));
    mxu_policy_close(e.p);
    mxu_policy_config cfg = {.data_dir = e.dir, .auth = true};
    CHECK_EQ_INT(mxu_policy_open(&cfg, &e.p, &err), 0);
    json_t *j = mxu_policy_key_limits_json(e.p, id);
    CHECK_STR(json_string_value(json_object_get(j, "priority")), "batch");
    CHECK_STR(json_string_value(json_object_get(json_object_get(j, "limits"), "rate")), "10/s");
    json_decref(j);
    j = mxu_policy_tenant_limits_json(e.p, "default");
    CHECK_EQ_INT(json_integer_value(json_object_get(json_object_get(j, "limits"), "concurrency")),
                 5);
    json_decref(j);
    CHECK_EQ_INT(mxu_policy_tenant_limits_set(e.p, "nobody", &tlim, &err), -1);
    CHECK_EQ_INT(err.code, ENOENT);
    penv_fini(&e);
}

/* Quotas: reservations count with usage, so N concurrent admissions against
 * a quota of N leave none over; records settle them. */
static void test_quota(void)
{
    penv e;
    penv_init(&e);
    mxu_err err;
    /* no meter attached: not enforced */
    mxu_shape_denial d;
    mxu_quota q = {.invocations = 3};
    CHECK_EQ_INT(mxu_policy_quota_set(e.p, "default", &q, &err), 0);
    uint64_t now = mxu_wall_ms();
    for (int i = 0; i < 5; i++)
        CHECK_EQ_INT(mxu_quota_reserve(e.p, "default", now, &d), 0);
    /* attach a real meter (its usage.db in the same folder) */
    uv_loop_t loop;
    uv_loop_init(&loop);
    char path[128];
    snprintf(path, sizeof(path), "%s/usage.db", e.dir);
    mxu_meter *m;
    CHECK_EQ_INT(mxu_meter_open(&loop, path, NULL, &m, &err), 0);
    CHECK_EQ_INT(mxu_policy_quota_attach(e.p, m, &err), 0);
    pol_tstate *ts = pol_tstate_find(e.p, "default");
    ts->reserved = 0;
    for (int i = 0; i < 3; i++)
        CHECK_EQ_INT(mxu_quota_reserve(e.p, "default", now, &d), 0);
    CHECK_EQ_INT(mxu_quota_reserve(e.p, "default", now, &d), -1);
    CHECK_STR(d.code, "quota_exceeded");
    CHECK_CONTAINS(d.message, "3 invocations");
    CHECK(d.retry_after_s >= 1 && d.retry_after_s <= 31 * 24 * 3600);
    /* one finished with a record (counted), one was rejected (not counted) */
    mxu_usage_record r = {.tenant = "default",
                          .function = "f",
                          .executor = "process",
                          .start_ms = now,
                          .billed_ms = 1000,
                          .memory_bytes = 1u << 30,
                          .bytes_out = 10,
                          .status = MXU_USAGE_OK,
                          .code = ""};
    mxu_meter_record(m, &r, NULL, NULL);
    mxu_quota_release(e.p, "default");
    CHECK_EQ_U64(ts->used_inv, 1);
    CHECK_EQ_U64(ts->used_mem_ms, (1ull << 30) * 1000);
    r.status = MXU_USAGE_REJECTED;
    mxu_meter_record(m, &r, NULL, NULL);
    mxu_quota_release(e.p, "default");
    CHECK_EQ_U64(ts->used_inv, 1);
    /* 1 used + 1 reserved < 3: one more */
    CHECK_EQ_INT(mxu_quota_reserve(e.p, "default", now, &d), 0);
    CHECK_EQ_INT(mxu_quota_reserve(e.p, "default", now, &d), -1);
    /* raised live */
    q.invocations = 4;
    CHECK_EQ_INT(mxu_policy_quota_set(e.p, "default", &q, &err), 0);
    CHECK_EQ_INT(mxu_quota_reserve(e.p, "default", now, &d), 0);
    /* GB-seconds: refused once what completed reaches it */
    q = (mxu_quota){.gb_seconds = 1};
    CHECK_EQ_INT(mxu_policy_quota_set(e.p, "default", &q, &err), 0);
    CHECK_EQ_INT(mxu_quota_reserve(e.p, "default", now, &d), -1);
    CHECK_CONTAINS(d.message, "GB-seconds");
    /* counted from usage.db when attached again (after a restart) */
    mxu_meter_close(m);
    CHECK_EQ_INT(mxu_meter_open(&loop, path, NULL, &m, &err), 0);
    ts->used_inv = 0;
    CHECK_EQ_INT(mxu_policy_quota_attach(e.p, m, &err), 0);
    CHECK_EQ_U64(ts->used_inv, 1);
    mxu_meter_close(m);
    uv_run(&loop, UV_RUN_NOWAIT);
    uv_loop_close(&loop);
    penv_fini(&e);
}

MXU_TESTS(TEST(test_rates), TEST(test_bucket), TEST(test_limits_json), TEST(test_admit),
          TEST(test_quota))
