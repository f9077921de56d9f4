/*
 * bench/src/policy-check.c — the cost of the per-request policy check
 * (bench/policy.sh; issue 5: p50 <= 2 us with 10,000 rules).
 *
 * It builds realistic lookup structures first: N keys (default 10,000) each
 * with its own rate and concurrency limits, N/10 tenants with limits and
 * quotas, N functions whose manifests carry limits (one gate each) and N
 * links, all in a real policy store (state.db in a tmpfs folder) with a real
 * meter attached for the quota. Then it times, one call at a time, what the
 * invoke path runs per request after authentication: mxu_shape_admit() over
 * a random key, its tenant and a random function, mxu_quota_reserve(), and
 * giving both back (mxu_shape_release, mxu_quota_release). Authentication
 * (a BLAKE2b of the key) is timed separately, since it is not a lookup.
 *
 * Then it applies a policy document of N link rules (the node's document:
 * exact unit -> resource and unit -> unit rules, client -> function rules,
 * some with globbed names and a few with globbed tenants, every one stored
 * and compiled as `mxu policy apply` does) and times mxu_policy_link_check()
 * on random links of each kind, half of which hit a rule.
 *
 * Usage: policy-check DIR [N] [CALLS]; prints p50/p99/mean in ns.
 */
#include "meter/meter.h"
#include "policy/policy.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void report(const char *what, uint64_t *v, size_t n)
{
    qsort(v, n, sizeof(*v), cmp_u64);
    double sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += (double)v[i];
    printf("%s: p50 %llu ns, p99 %llu ns, mean %.0f ns (%zu calls)\n", what,
           (unsigned long long)v[n / 2], (unsigned long long)v[n * 99 / 100], sum / (double)n, n);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: policy-check DIR [N] [CALLS]\n");
        return 2;
    }
    const char *dir = argv[1];
    size_t n = argc > 2 ? strtoul(argv[2], NULL, 10) : 10000;
    size_t calls = argc > 3 ? strtoul(argv[3], NULL, 10) : 1000000;
    mxu_err err;
    mxu_policy *p;
    mxu_policy_config cfg = {.data_dir = dir, .auth = true};
    if (mxu_policy_open(&cfg, &p, &err) < 0) {
        fprintf(stderr, "open: %s\n", err.msg);
        return 1;
    }
    uv_loop_t loop;
    uv_loop_init(&loop);
    char path[512];
    snprintf(path, sizeof(path), "%s/usage.db", dir);
    mxu_meter *m;
    if (mxu_meter_open(&loop, path, NULL, &m, &err) < 0 ||
        mxu_policy_quota_attach(p, m, &err) < 0) {
        fprintf(stderr, "meter: %s\n", err.msg);
        return 1;
    }
    /* Limits high enough never to refuse: the check runs in full every time. */
    mxu_limits big = {
        .rate = 1000000000, .period_ms = 1000, .burst = 1000000000, .concurrency = 1000000};
    mxu_quota q = {.invocations = 1ull << 50};
    size_t ntenants = n / 10 ? n / 10 : 1;
    char name[64];
    uint64_t t0 = now_ns();
    for (size_t i = 0; i < ntenants; i++) {
        snprintf(name, sizeof(name), "t%zu", i);
        if (mxu_policy_tenant_create(p, name, &err) < 0 ||
            mxu_policy_tenant_limits_set(p, name, &big, &err) < 0 ||
            mxu_policy_quota_set(p, name, &q, &err) < 0) {
            fprintf(stderr, "tenant: %s\n", err.msg);
            return 1;
        }
    }
    const mxu_principal **who = calloc(n, sizeof(*who));
    char **tenant_of = calloc(n, sizeof(*tenant_of));
    char *text = NULL;
    for (size_t i = 0; i < n; i++) {
        snprintf(name, sizeof(name), "t%zu", i % ntenants);
        tenant_of[i] = strdup(name);
        mxu_key_spec spec = {.tenant = name, .role = MXU_ROLE_INVOKER};
        json_t *info = NULL;
        if (mxu_policy_key_create(p, &spec, &text, &info, &err) < 0) {
            fprintf(stderr, "key: %s\n", err.msg);
            return 1;
        }
        char hdr[256];
        snprintf(hdr, sizeof(hdr), "Bearer %s", text);
        free(text);
        if (mxu_policy_authenticate(p, hdr, &who[i], &err) < 0 ||
            mxu_policy_key_limits_set(p, json_string_value(json_object_get(info, "id")), &big,
                                      &err) < 0) {
            fprintf(stderr, "key limits: %s\n", err.msg);
            return 1;
        }
        json_decref(info);
    }
    /* Function and link gates: made on first use, as on a node. */
    char **fn = calloc(n, sizeof(*fn));
    mxu_shape_ticket t;
    mxu_shape_denial d;
    for (size_t i = 0; i < n; i++) {
        snprintf(name, sizeof(name), "function-%zu", i);
        fn[i] = strdup(name);
        mxu_shape_admit(p, NULL, tenant_of[i], fn[i], &big, now_ns(), &t, &d);
        mxu_shape_release(&t);
        mxu_shape_admit_link(p, tenant_of[i], fn[i], "resize", &big, now_ns(), &t, &d);
        mxu_shape_release(&t);
    }
    fprintf(stderr, "built %zu keys, %zu tenants, %zu functions, %zu links in %.1f s\n", n,
            ntenants, n, n, (double)(now_ns() - t0) / 1e9);

    uint64_t *lat = calloc(calls, sizeof(*lat));
    uint64_t rng = 88172645463325252ull, refused = 0, wall = mxu_wall_ms();
    for (size_t i = 0; i < calls; i++) {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        size_t k = rng % n, f = (rng >> 20) % n;
        const char *tenant = tenant_of[k];
        uint64_t a = now_ns();
        int rc = mxu_shape_admit(p, who[k], tenant, fn[f], &big, a, &t, &d);
        if (rc == 0 && mxu_quota_reserve(p, tenant, wall, &d) == 0)
            mxu_quota_release(p, tenant);
        mxu_shape_release(&t);
        uint64_t b = now_ns();
        refused += rc != 0;
        lat[i] = b - a;
    }
    report("policy check (key + tenant + function limits, quota)", lat, calls);
    for (size_t i = 0; i < calls / 10; i++) {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        size_t f = rng % n;
        uint64_t a = now_ns();
        mxu_shape_admit_link(p, tenant_of[f], fn[f], "resize", &big, a, &t, &d);
        mxu_shape_release(&t);
        lat[i] = now_ns() - a;
    }
    report("link check (svc descriptor limits)", lat, calls / 10);
    if (refused)
        fprintf(stderr, "unexpected: %llu refusals\n", (unsigned long long)refused);

    /* Link rules: N of them in one document. */
    mxu_buf doc = {0};
    mxu_buf_puts(&doc, "rules:\n");
    size_t nrules = 0;
    for (size_t i = 0; nrules < n; i++) {
        const char *tn = tenant_of[i % n];
        switch (i % 10) {
        case 0: /* a name glob */
            mxu_buf_printf(&doc, "- {deny: unit->unit, from: \"%s/*\", to: \"%s/api-%zu-*\"}\n", tn,
                           tn, i);
            break;
        case 1:
            mxu_buf_printf(&doc,
                           "- {deny: client->function, from: {tenant: \"%s\", role: invoker}, "
                           "to: \"%s/function-%zu\"}\n",
                           tn, tn, i % n);
            break;
        case 2:
        case 3:
            mxu_buf_printf(&doc,
                           "- {allow: unit->unit, from: \"%s/function-%zu\", to: "
                           "\"t0/function-%zu\"}\n",
                           tn, i % n, (i + 1) % n);
            break;
        default:
            mxu_buf_printf(&doc,
                           "- {deny: unit->resource, from: \"%s/function-%zu\", to: "
                           "\"kv:%s/store-%zu\", ops: [put, delete]}\n",
                           tn, i % n, tn, i % n);
        }
        nrules++;
    }
    /* a few rules whose target tenant is a glob: checked on every link */
    for (int i = 0; i < 8; i++)
        mxu_buf_printf(&doc, "- {deny: unit->resource, from: \"*/evil-%d\", to: \"kv:*/x\"}\n", i);
    uint64_t c0 = now_ns();
    if (mxu_policy_doc_apply(p, NULL, doc.data, doc.len, "bench.yaml", "bench", NULL, &err) < 0) {
        fprintf(stderr, "apply: %s\n", err.msg);
        return 1;
    }
    fprintf(stderr, "applied %zu link rules (parse, store, compile) in %.1f ms\n", nrules + 8,
            (double)(now_ns() - c0) / 1e6);
    mxu_buf_free(&doc);
    uint64_t denied = 0;
    char res[64], callee[64];
    for (size_t i = 0; i < calls; i++) {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        size_t k = rng % n, hit = (rng >> 32) & 1;
        mxu_policy_link l = {
            .from_tenant = tenant_of[k], .from_fn = fn[k], .to_tenant = tenant_of[k]};
        switch ((rng >> 40) % 3) {
        case 0:
            l.kind = MXU_LINK_RESOURCE;
            snprintf(res, sizeof(res), "store-%zu", hit ? k : k + 1);
            l.to_name = res;
            l.res_kind = "kv";
            l.op = "put";
            break;
        case 1:
            l.kind = MXU_LINK_UNIT;
            l.to_tenant = "t0";
            snprintf(callee, sizeof(callee), "function-%zu", hit ? (k + 1) % n : (k + 2) % n);
            l.to_name = callee;
            break;
        default:
            l.kind = MXU_LINK_CLIENT;
            l.who = who[k];
            l.to_name = fn[hit ? k : (k + 1) % n];
        }
        uint64_t a = now_ns();
        int rc = mxu_policy_link_check(
            p, &l, l.kind != MXU_LINK_UNIT || strcmp(l.to_tenant, l.from_tenant) == 0, NULL, &err);
        lat[i] = now_ns() - a;
        denied += rc != 0;
    }
    char what[128];
    snprintf(what, sizeof(what), "link rules check (%zu rules; unit->resource, unit->unit, client)",
             nrules + 8);
    report(what, lat, calls);
    fprintf(stderr, "%llu of %zu links denied\n", (unsigned long long)denied, calls);
    mxu_meter_close(m);
    uv_run(&loop, UV_RUN_NOWAIT);
    mxu_policy_close(p);
    return 0;
}
