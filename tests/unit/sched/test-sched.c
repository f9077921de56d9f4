/*
 * Unit tests for src/sched: the scheduler's pool logic driven directly on a
 * real libuv loop, with real instance processes — sched-test-fn (a function
 * built on the SDK), sched-test-raw (frames written by hand: broken starts,
 * hostile answers) and /bin/sh for runtime exec. Versions are made by hand
 * from manifest text, the scheduler runs without a registry, and each case
 * checks what a caller sees (error code, message, ids, which pid answered)
 * and what the scheduler shows of itself (instances, capacity, counters).
 *
 * Divisions: fixture and helpers; warm pools (reuse, scale-up, concurrency);
 * admission (queue bound, queue timeout, memory); deadlines and crashes;
 * broken starts; keep-alive and cancellation; shutdown; runtime exec;
 * hostile instances.
 *
 * Waiting is always for an event, bounded by a uv timer: WAIT_FOR runs the
 * loop until a condition holds and fails the case when the bound passes.
 * run_for() runs it for a fixed time, only to show that something does NOT
 * happen, or to space dispatch times apart.
 */
#include "sched/sched.h"
#include "test.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <sys/stat.h>
#include <uv.h>

#if !defined(SCHED_TEST_FN) || !defined(SCHED_TEST_RAW)
#error "build with -DSCHED_TEST_FN=... -DSCHED_TEST_RAW=... (tests/unit/sched/meson.build)"
#endif

#define MiB (1024ull * 1024ull)

/* ---- fixture ----------------------------------------------------------------- */

typedef struct fx {
    uv_loop_t loop;
    mxu_sched *s;
    mxu_sched_config cfg;
    char dir[64];
    mxu_fn_version *versions[8];
    size_t nversions;
    uv_timer_t guard, tick;
    bool guard_fired;
    /* What the scheduler showed at the end of each loop iteration. */
    uv_check_t sampler;
    json_int_t max_instances_seen, max_queued_seen, max_inflight_seen;
    bool shutdown_called, shut_down;
    /* Set by the shutdown callback: were the recorded pids all gone then? */
    int watch_pids[16];
    size_t nwatch;
    bool pids_gone_at_done;
} fx;

static char g_dir[64]; /* removed at exit even when a check fails midway */

static void remove_dir(void)
{
    if (g_dir[0]) {
        mxu_err err;
        mxu_rm_rf(g_dir, &err);
        g_dir[0] = '\0';
    }
}

static bool pid_gone(int pid)
{
    return pid > 0 && kill(pid, 0) < 0 && errno == ESRCH;
}

static void on_guard(uv_timer_t *t)
{
    ((fx *)t->data)->guard_fired = true;
}

static void on_tick(uv_timer_t *t)
{
    MXU_UNUSED(t); /* wakes the loop so that WAIT_FOR looks again */
}

/* Run the loop until `cond` holds; fail the case after `ms`. The condition
 * is looked at after every loop iteration, and at least every 10 ms (for
 * conditions no loop event signals, like a file appearing). */
#define WAIT_FOR(f, cond, ms)                                                \
    do {                                                                     \
        (f)->guard_fired = false;                                            \
        uv_timer_start(&(f)->guard, on_guard, (ms), 0);                      \
        uv_timer_start(&(f)->tick, on_tick, 10, 10);                         \
        while (!(cond) && !(f)->guard_fired)                                 \
            uv_run(&(f)->loop, UV_RUN_ONCE);                                 \
        uv_timer_stop(&(f)->guard);                                          \
        uv_timer_stop(&(f)->tick);                                           \
        if (!(cond))                                                         \
            MXU_TEST_FAIL_("waited %d ms in vain for %s", (int)(ms), #cond); \
    } while (0)

/* Run the loop for `ms`, whatever happens. */
static void run_for(fx *f, uint64_t ms)
{
    f->guard_fired = false;
    uv_timer_start(&f->guard, on_guard, ms, 0);
    while (!f->guard_fired)
        uv_run(&f->loop, UV_RUN_ONCE);
}

static json_int_t obj_int(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    if (!json_is_integer(v))
        MXU_TEST_FAIL_("no integer \"%s\" in the scheduler's JSON", key);
    return json_integer_value(v);
}

static json_int_t cap_field(fx *f, const char *key)
{
    json_t *c = mxu_sched_capacity_json(f->s);
    json_int_t v = obj_int(c, key);
    json_decref(c);
    return v;
}

static size_t ninst(fx *f, const char *function)
{
    json_t *a = mxu_sched_instances_json(f->s, NULL, function);
    size_t n = json_array_size(a);
    json_decref(a);
    return n;
}

/* Field `key` of instance `i` of `function`; fails when there is no such one. */
static json_int_t inst_field(fx *f, const char *function, size_t i, const char *key)
{
    json_t *a = mxu_sched_instances_json(f->s, NULL, function);
    json_t *o = json_array_get(a, i);
    if (o == NULL)
        MXU_TEST_FAIL_("%s has no instance %zu", function ? function : "(any)", i);
    json_int_t v = obj_int(o, key);
    json_decref(a);
    return v;
}

static void on_sample(uv_check_t *h)
{
    fx *f = h->data;
    if (f->s == NULL || f->shut_down)
        return;
    f->max_instances_seen = MXU_MAX(f->max_instances_seen, cap_field(f, "instances"));
    f->max_queued_seen = MXU_MAX(f->max_queued_seen, cap_field(f, "queued"));
    json_t *a = mxu_sched_instances_json(f->s, NULL, NULL);
    size_t i;
    json_t *o;
    json_array_foreach(a, i, o)
    {
        f->max_inflight_seen = MXU_MAX(f->max_inflight_seen, obj_int(o, "in_flight"));
    }
    json_decref(a);
}

static void fx_init(fx *f)
{
    memset(f, 0, sizeof(*f));
    if (getenv("MXU_TEST_VERBOSE") == NULL)
        mxu_log_set_level(MXU_LOG_ERROR);
    signal(SIGPIPE, SIG_IGN); /* as the node does */
    CHECK_EQ_INT(uv_loop_init(&f->loop), 0);
    snprintf(f->dir, sizeof(f->dir), "/tmp/mxu-test-sched-XXXXXX");
    CHECK(mkdtemp(f->dir) != NULL);
    snprintf(g_dir, sizeof(g_dir), "%s", f->dir);
    atexit(remove_dir);
    uv_timer_init(&f->loop, &f->guard);
    f->guard.data = f;
    uv_timer_init(&f->loop, &f->tick);
    uv_check_init(&f->loop, &f->sampler);
    f->sampler.data = f;
    uv_check_start(&f->sampler, on_sample);
    f->cfg.memory_budget = 1024 * MiB;
}

static void fx_start(fx *f)
{
    mxu_err err = {0};
    if (mxu_sched_create(&f->loop, NULL, &f->cfg, &f->s, &err) < 0)
        MXU_TEST_FAIL_("mxu_sched_create: %s", err.msg);
}

/* A version of `name` made from manifest text, running `exe`, with its own
 * bundle folder under the fixture's directory. */
static mxu_fn_version *fx_version(fx *f, const char *name, const char *exe, const char *yaml)
{
    mxu_err err = {0};
    mxu_manifest *m = NULL;
    if (mxu_manifest_parse(yaml, strlen(yaml), "test.yaml", &m, &err) < 0)
        MXU_TEST_FAIL_("manifest for %s: %s", name, err.msg);
    CHECK(f->nversions < MXU_ARRAY_LEN(f->versions));
    mxu_fn_version *v = mxu_calloc(1, sizeof(*v));
    v->tenant = mxu_strdup("default");
    v->function = mxu_strdup(name);
    v->version = 1;
    v->manifest = m;
    v->digest = mxu_strdup("0000");
    v->bundle_dir = mxu_asprintf("%s/%s", f->dir, name);
    v->exe_path = mxu_strdup(exe);
    v->refs = 1;
    CHECK_EQ_INT(mkdir(v->bundle_dir, 0700), 0);
    f->versions[f->nversions++] = v;
    return v;
}

/* runtime c, served by sched-test-fn; `extra` adds manifest lines. */
static mxu_fn_version *fn_version(fx *f, const char *name, const char *extra)
{
    _cleanup_free_ char *yaml =
        mxu_asprintf("name: %s\nruntime: c\nsources: [main.c]\n%s", name, extra);
    return fx_version(f, name, SCHED_TEST_FN, yaml);
}

/* runtime c, served by sched-test-raw in `mode`. */
static mxu_fn_version *raw_version(fx *f, const char *name, const char *mode, const char *extra)
{
    _cleanup_free_ char *yaml = mxu_asprintf(
        "name: %s\nruntime: c\nsources: [main.c]\nenv:\n  MODE: %s\n%s", name, mode, extra);
    return fx_version(f, name, SCHED_TEST_RAW, yaml);
}

/* How many processes of `v` ever started (each appends its pid to starts.log). */
static int starts(const mxu_fn_version *v)
{
    _cleanup_free_ char *path = mxu_asprintf("%s/starts.log", v->bundle_dir);
    _cleanup_buf_ mxu_buf b = {0};
    if (mxu_read_file(path, 1 << 20, &b, NULL) < 0)
        return 0;
    int n = 0;
    for (size_t i = 0; i < b.len; i++)
        n += b.data[i] == '\n';
    return n;
}

static bool bundle_has(const mxu_fn_version *v, const char *file)
{
    _cleanup_free_ char *path = mxu_asprintf("%s/%s", v->bundle_dir, file);
    return access(path, F_OK) == 0;
}

static void on_shutdown_done(void *ud)
{
    fx *f = ud;
    CHECK(!f->shut_down); /* once */
    f->shut_down = true;
    f->pids_gone_at_done = true;
    for (size_t i = 0; i < f->nwatch; i++)
        if (!pid_gone(f->watch_pids[i]))
            f->pids_gone_at_done = false;
}

static void fx_shutdown(fx *f, uint64_t drain_ms)
{
    f->shutdown_called = true;
    mxu_sched_shutdown(f->s, drain_ms, on_shutdown_done, f);
}

static void fx_watch_pid(fx *f, int pid)
{
    CHECK(f->nwatch < MXU_ARRAY_LEN(f->watch_pids));
    f->watch_pids[f->nwatch++] = pid;
}

static void print_handle(uv_handle_t *h, void *arg)
{
    MXU_UNUSED(arg);
    fprintf(stderr, "  handle left open: %s (active %d)\n", uv_handle_type_name(h->type),
            uv_is_active(h));
}

/* Shut down (if the case did not), destroy, and check that nothing is left:
 * no process of the scheduler's, no open handle, no temp dir. */
static void fx_finish(fx *f)
{
    for (size_t i = 0; i < f->nversions; i++) {
        /* Every instance process this case saw must be gone after shutdown. */
        json_t *a = mxu_sched_instances_json(f->s, NULL, f->versions[i]->function);
        size_t k;
        json_t *o;
        json_array_foreach(a, k, o)
        {
            if (f->nwatch < MXU_ARRAY_LEN(f->watch_pids))
                f->watch_pids[f->nwatch++] = (int)obj_int(o, "pid");
        }
        json_decref(a);
    }
    if (!f->shutdown_called)
        fx_shutdown(f, 0);
    WAIT_FOR(f, f->shut_down, 4000);
    CHECK(f->pids_gone_at_done);
    CHECK_EQ_INT(cap_field(f, "instances"), 0);
    mxu_sched_destroy(f->s);
    f->s = NULL;
    uv_close((uv_handle_t *)&f->guard, NULL);
    uv_close((uv_handle_t *)&f->tick, NULL);
    uv_close((uv_handle_t *)&f->sampler, NULL);
    for (int i = 0; i < 50 && uv_run(&f->loop, UV_RUN_NOWAIT) != 0; i++)
        ;
    if (uv_loop_close(&f->loop) != 0) {
        uv_walk(&f->loop, print_handle, NULL);
        MXU_TEST_FAIL_("the loop still has handles after mxu_sched_destroy()");
    }
    for (size_t i = 0; i < f->nversions; i++)
        mxu_fn_version_unref(f->versions[i]);
    remove_dir();
}

/* ---- invocations ----------------------------------------------------------------- */

typedef struct call {
    char query[96];
    mxu_invocation *h;
    bool returned; /* mxu_sched_invoke() has returned */
    bool done;
    bool sync;                    /* the callback ran before mxu_sched_invoke() returned */
    int seq;                      /* order of completion, from 1 */
    uint64_t invoked_ms, done_ms; /* loop time */
    uint64_t id;
    enum mxu_inv_error error;
    char message[600];
    uint32_t retry_after_s;
    int status;
    bool cold;
    char body[256];
    size_t body_len;
    int pid; /* from "pid=N" in the body */
} call;

static int g_seq;
static uv_loop_t *g_loop;

static void on_result(void *ud, mxu_invoke_res *res)
{
    call *c = ud;
    if (c->done)
        MXU_TEST_FAIL_("callback of '%s' ran twice", c->query);
    c->done = true;
    c->sync = !c->returned;
    c->seq = ++g_seq;
    c->done_ms = uv_now(g_loop);
    c->id = res->id;
    c->error = res->error;
    snprintf(c->message, sizeof(c->message), "%s", res->message ? res->message : "");
    c->retry_after_s = res->retry_after_s;
    c->status = res->status;
    c->cold = res->cold;
    /* The callback may steal the body. */
    size_t len = 0;
    char *body = mxu_buf_steal(&res->body, &len);
    c->body_len = len;
    snprintf(c->body, sizeof(c->body), "%.*s", (int)MXU_MIN(len, sizeof(c->body) - 1),
             body ? body : "");
    free(body);
    const char *p = strstr(c->body, "pid=");
    c->pid = p ? atoi(p + 4) : 0;
}

static void invoke_body(fx *f, mxu_fn_version *v, call *c, const char *query, const char *method,
                        const char *body)
{
    memset(c, 0, sizeof(*c));
    g_loop = &f->loop;
    snprintf(c->query, sizeof(c->query), "%s", query);
    mxu_invoke_req req = {
        .method = {method, (uint32_t)strlen(method)},
        .path = {"/", 1},
        .query = {c->query, (uint32_t)strlen(c->query)},
    };
    if (body)
        mxu_buf_puts(&req.body, body);
    c->invoked_ms = uv_now(&f->loop);
    c->h = mxu_sched_invoke(f->s, v, &req, on_result, c);
    c->returned = true;
    CHECK(req.body.data == NULL); /* taken */
    if (c->done)
        CHECK(c->h == NULL); /* answered at once: no handle to cancel */
}

static void invoke(fx *f, mxu_fn_version *v, call *c, const char *query)
{
    invoke_body(f, v, c, query, "GET", NULL);
}

/* The same, in a priority class. */
static void invoke_prio(fx *f, mxu_fn_version *v, call *c, const char *query,
                        enum mxu_priority prio)
{
    memset(c, 0, sizeof(*c));
    g_loop = &f->loop;
    snprintf(c->query, sizeof(c->query), "%s", query);
    mxu_invoke_req req = {
        .method = {"GET", 3},
        .path = {"/", 1},
        .query = {c->query, (uint32_t)strlen(c->query)},
        .priority = prio,
    };
    c->invoked_ms = uv_now(&f->loop);
    c->h = mxu_sched_invoke(f->s, v, &req, on_result, c);
    c->returned = true;
}

#define EXPECT_OK(c)                                                                          \
    do {                                                                                      \
        CHECK((c)->done);                                                                     \
        if ((c)->error != MXU_INV_OK)                                                         \
            MXU_TEST_FAIL_("'%s' failed: %s: %s", (c)->query, mxu_inv_error_code((c)->error), \
                           (c)->message);                                                     \
        CHECK_EQ_INT((c)->status, 200);                                                       \
    } while (0)

#define EXPECT_ERR(c, e, text)                                                                  \
    do {                                                                                        \
        CHECK((c)->done);                                                                       \
        if ((c)->error != (e))                                                                  \
            MXU_TEST_FAIL_("'%s': expected %s, got %s: \"%s\" (body \"%s\")", (c)->query,       \
                           mxu_inv_error_code(e), mxu_inv_error_code((c)->error), (c)->message, \
                           (c)->body);                                                          \
        CHECK_CONTAINS((c)->message, (text));                                                   \
    } while (0)

/* Invoke and wait for the answer. */
static void call_sync(fx *f, mxu_fn_version *v, call *c, const char *query)
{
    invoke(f, v, c, query);
    WAIT_FOR(f, c->done, 3000);
}

/* ---- warm pools --------------------------------------------------------------------- */

/* Sequential invocations reuse one warm instance; only the first is cold. */
static void test_warm_reuse(void)
{
    fx f;
    fx_init(&f);
    fx_start(&f);
    mxu_fn_version *v = fn_version(&f, "warm", "memory: 32Mi\n");
    call c[3];
    for (int i = 0; i < 3; i++) {
        call_sync(&f, v, &c[i], "pid");
        EXPECT_OK(&c[i]);
    }
    CHECK(c[0].pid > 0);
    CHECK_EQ_INT(c[1].pid, c[0].pid);
    CHECK_EQ_INT(c[2].pid, c[0].pid);
    char want[64];
    snprintf(want, sizeof(want), "pid=%d n=3", c[0].pid);
    CHECK_STR(c[2].body, want);
    CHECK(c[0].cold);
    CHECK(!c[1].cold);
    CHECK(!c[2].cold);
    CHECK(c[0].id != 0);
    CHECK(c[1].id > c[0].id);
    CHECK(c[2].id > c[1].id);
    CHECK(!c[0].sync);

    /* What the scheduler shows: one ready instance, that pid, three served. */
    json_t *a = mxu_sched_instances_json(f.s, NULL, "warm");
    CHECK_EQ_INT(json_array_size(a), 1);
    json_t *o = json_array_get(a, 0);
    CHECK_EQ_INT(obj_int(o, "pid"), c[0].pid);
    CHECK_STR(json_string_value(json_object_get(o, "state")), "ready");
    CHECK_STR(json_string_value(json_object_get(o, "function")), "warm");
    CHECK_STR(json_string_value(json_object_get(o, "executor")), "process");
    CHECK_EQ_INT(obj_int(o, "version"), 1);
    CHECK_EQ_INT(obj_int(o, "invocations"), 3);
    CHECK_EQ_INT(obj_int(o, "in_flight"), 0);
    CHECK_EQ_U64(obj_int(o, "memory_reserved"), 32 * MiB);
    json_decref(a);
    CHECK_EQ_INT(ninst(&f, "other"), 0);
    CHECK_EQ_INT(ninst(&f, NULL), 1);
    CHECK_EQ_INT(cap_field(&f, "instances"), 1);
    CHECK_EQ_INT(cap_field(&f, "queued"), 0);
    CHECK_EQ_U64(cap_field(&f, "memory_budget"), 1024 * MiB);
    CHECK_EQ_U64(cap_field(&f, "memory_reserved"), 32 * MiB);
    CHECK_EQ_U64(cap_field(&f, "memory_free"), 992 * MiB);
    json_t *st = mxu_sched_stats_json(f.s, NULL, "warm");
    json_t *s1 = json_object_get(st, "1");
    CHECK(s1 != NULL);
    CHECK_EQ_INT(obj_int(s1, "invocations"), 3);
    CHECK_EQ_INT(obj_int(s1, "cold_starts"), 1);
    CHECK_EQ_INT(obj_int(s1, "errors"), 0);
    json_decref(st);
    CHECK_EQ_INT(starts(v), 1);

    int pid = c[0].pid;
    fx_finish(&f);
    CHECK(pid_gone(pid));
}

/* Concurrent load scales a pool up to max_instances and never beyond; the
 * rest waits in the queue and runs as instances free up. */
static void test_scale_up_to_max(void)
{
    fx f;
    fx_init(&f);
    fx_start(&f);
    mxu_fn_version *v = fn_version(&f, "scale", "memory: 16Mi\nmax_instances: 3\n");
    call c[8];
    for (int i = 0; i < 8; i++)
        invoke(&f, v, &c[i], "sleep=150");
    WAIT_FOR(&f,
             c[0].done && c[1].done && c[2].done && c[3].done && c[4].done && c[5].done &&
                 c[6].done && c[7].done,
             4000);
    int pids[8], npids = 0, ncold = 0;
    for (int i = 0; i < 8; i++) {
        EXPECT_OK(&c[i]);
        ncold += c[i].cold;
        bool seen = false;
        for (int k = 0; k < npids; k++)
            seen |= pids[k] == c[i].pid;
        if (!seen)
            pids[npids++] = c[i].pid;
    }
    CHECK_EQ_INT(npids, 3);
    CHECK_EQ_INT(ncold, 3); /* one per instance start */
    CHECK_EQ_INT(starts(v), 3);
    CHECK_EQ_INT(f.max_instances_seen, 3);
    CHECK(f.max_queued_seen >= 5);
    CHECK_EQ_INT(f.max_inflight_seen, 1); /* concurrency 1 */
    CHECK_EQ_INT(ninst(&f, "scale"), 3);
    fx_finish(&f);
}

/* concurrency > 1: several invocations in flight on one instance, answered
 * in order (the SDK serves them one at a time). */
static void test_concurrency_pipelines(void)
{
    fx f;
    fx_init(&f);
    fx_start(&f);
    mxu_fn_version *v = fn_version(&f, "conc", "memory: 16Mi\nconcurrency: 4\nmax_instances: 1\n");
    call w, c[5];
    call_sync(&f, v, &w, "pid");
    EXPECT_OK(&w);
    for (int i = 0; i < 5; i++)
        invoke(&f, v, &c[i], "sleep=80");
    /* Four in flight on the one instance, the fifth waits for room. */
    CHECK_EQ_INT(inst_field(&f, "conc", 0, "in_flight"), 4);
    CHECK_EQ_INT(cap_field(&f, "queued"), 1);
    WAIT_FOR(&f, c[0].done && c[1].done && c[2].done && c[3].done && c[4].done, 3000);
    for (int i = 0; i < 5; i++) {
        EXPECT_OK(&c[i]);
        CHECK_EQ_INT(c[i].pid, w.pid);
        CHECK(!c[i].cold);
        if (i > 0)
            CHECK(c[i].seq > c[i - 1].seq);
    }
    CHECK_EQ_INT(f.max_inflight_seen, 4);
    CHECK_EQ_INT(starts(v), 1);
    fx_finish(&f);
}

/* ---- admission ------------------------------------------------------------------------ */

/* A full queue answers at once with QUEUE_FULL; what was queued runs when the
 * instance frees up. */
static void test_queue_full(void)
{
    fx f;
    fx_init(&f);
    f.cfg.queue_max = 2;
    fx_start(&f);
    mxu_fn_version *v = fn_version(&f, "qfull", "memory: 16Mi\nmax_instances: 1\n");
    call w, a, b, c, d;
    call_sync(&f, v, &w, "pid");
    EXPECT_OK(&w);
    invoke(&f, v, &a, "sleep=200"); /* dispatched */
    invoke(&f, v, &b, "pid");       /* queued */
    invoke(&f, v, &c, "pid");       /* queued */
    CHECK(a.h && b.h && c.h);
    CHECK(!a.done && !b.done && !c.done);
    CHECK_EQ_INT(cap_field(&f, "queued"), 2);
    invoke(&f, v, &d, "pid"); /* one too many */
    CHECK(d.sync);
    CHECK(d.h == NULL);
    EXPECT_ERR(&d, MXU_INV_QUEUE_FULL, "at capacity");
    CHECK(d.retry_after_s >= 1);
    CHECK(d.id != 0);
    CHECK_EQ_INT(cap_field(&f, "queued"), 2);
    WAIT_FOR(&f, a.done && b.done && c.done, 3000);
    EXPECT_OK(&a);
    EXPECT_OK(&b);
    EXPECT_OK(&c);
    CHECK(a.seq < b.seq && b.seq < c.seq);
    CHECK_EQ_INT(b.pid, w.pid);
    CHECK_EQ_INT(c.pid, w.pid);
    json_t *st = mxu_sched_stats_json(f.s, NULL, "qfull");
    CHECK_EQ_INT(obj_int(json_object_get(st, "1"), "rejected"), 1);
    json_decref(st);
    fx_finish(&f);
}

/* Priority classes: the queue serves critical, then default, then batch
 * (first come first served within one); a full queue sheds its newest
 * lowest-class waiter for a higher-class arrival, and refuses an arrival of
 * no higher class than its lowest waiter. */
static void test_queue_priority(void)
{
    fx f;
    fx_init(&f);
    f.cfg.queue_max = 3;
    fx_start(&f);
    mxu_fn_version *v = fn_version(&f, "prio", "memory: 16Mi\nmax_instances: 1\n");
    call w, hold, b0, b1, d0, c0, d1, b2, d2;
    call_sync(&f, v, &w, "pid");
    EXPECT_OK(&w);
    invoke_prio(&f, v, &hold, "sleep=200", MXU_PRIO_DEFAULT); /* dispatched */
    invoke_prio(&f, v, &b0, "b0", MXU_PRIO_BATCH);
    invoke_prio(&f, v, &b1, "b1", MXU_PRIO_BATCH);
    invoke_prio(&f, v, &d0, "d0", MXU_PRIO_DEFAULT); /* queue: d0 b0 b1 (full) */
    CHECK(!b0.done && !b1.done && !d0.done);
    invoke_prio(&f, v, &c0, "c0", MXU_PRIO_CRITICAL); /* sheds b1: c0 d0 b0 */
    CHECK(b1.done && !c0.done);
    EXPECT_ERR(&b1, MXU_INV_QUEUE_FULL, "shed from the queue");
    CHECK(b1.retry_after_s >= 1);
    invoke_prio(&f, v, &b2, "b2", MXU_PRIO_BATCH); /* refused: nothing lower */
    CHECK(b2.done && b2.h == NULL);
    EXPECT_ERR(&b2, MXU_INV_QUEUE_FULL, "none of a lower class");
    invoke_prio(&f, v, &d1, "d1", MXU_PRIO_DEFAULT); /* sheds b0: c0 d0 d1 */
    EXPECT_ERR(&b0, MXU_INV_QUEUE_FULL, "shed from the queue");
    invoke_prio(&f, v, &d2, "d2", MXU_PRIO_DEFAULT); /* refused */
    EXPECT_ERR(&d2, MXU_INV_QUEUE_FULL, "none of a lower class");
    CHECK_EQ_INT(cap_field(&f, "queued"), 3);
    WAIT_FOR(&f, hold.done && c0.done && d0.done && d1.done, 3000);
    EXPECT_OK(&c0);
    EXPECT_OK(&d0);
    EXPECT_OK(&d1);
    CHECK(hold.seq < c0.seq && c0.seq < d0.seq && d0.seq < d1.seq);
    fx_finish(&f);
}

/* A queued invocation that waits longer than queue_timeout gets
 * QUEUE_TIMEOUT; the busy one is not disturbed. */
static void test_queue_timeout(void)
{
    fx f;
    fx_init(&f);
    f.cfg.queue_timeout_ms = 200;
    fx_start(&f);
    mxu_fn_version *v = fn_version(&f, "qtime", "memory: 16Mi\nmax_instances: 1\n");
    call w, a, b, c;
    call_sync(&f, v, &w, "pid");
    invoke(&f, v, &a, "sleep=600");
    invoke(&f, v, &b, "pid");
    WAIT_FOR(&f, b.done, 2000);
    EXPECT_ERR(&b, MXU_INV_QUEUE_TIMEOUT, "no instance became free within");
    CHECK(b.done_ms - b.invoked_ms >= 195);
    CHECK(b.retry_after_s >= 1);
    CHECK(!a.done);
    WAIT_FOR(&f, a.done, 2000);
    EXPECT_OK(&a);
    CHECK_EQ_INT(a.pid, w.pid);
    call_sync(&f, v, &c, "pid");
    EXPECT_OK(&c);
    CHECK_EQ_INT(c.pid, w.pid);
    fx_finish(&f);
}

/* A version that needs more memory than the whole budget is refused at once. */
static void test_memory_over_budget(void)
{
    fx f;
    fx_init(&f);
    f.cfg.memory_budget = 64 * MiB;
    fx_start(&f);
    mxu_fn_version *v = fn_version(&f, "fat", "memory: 128Mi\n");
    call c;
    invoke(&f, v, &c, "pid");
    CHECK(c.sync);
    EXPECT_ERR(&c, MXU_INV_NO_CAPACITY, "more than this node's whole budget");
    CHECK_CONTAINS(c.message, "fat@1");
    CHECK_EQ_INT(cap_field(&f, "instances"), 0);
    CHECK_EQ_INT(cap_field(&f, "memory_reserved"), 0);
    CHECK_EQ_INT(starts(v), 0);
    fx_finish(&f);
}

/* Two versions that do not fit together: the idle one is stopped to make
 * room, and the other starts. */
static void test_memory_evicts_idle(void)
{
    fx f;
    fx_init(&f);
    f.cfg.memory_budget = 100 * MiB;
    fx_start(&f);
    mxu_fn_version *va = fn_version(&f, "mema", "memory: 64Mi\n");
    mxu_fn_version *vb = fn_version(&f, "memb", "memory: 64Mi\n");
    call a1, b1, a2;
    call_sync(&f, va, &a1, "pid");
    EXPECT_OK(&a1);
    CHECK_EQ_U64(cap_field(&f, "memory_reserved"), 64 * MiB);
    call_sync(&f, vb, &b1, "pid");
    EXPECT_OK(&b1);
    CHECK(b1.cold);
    CHECK(pid_gone(a1.pid)); /* stopped (and reaped) before b's instance could start */
    CHECK_EQ_INT(ninst(&f, "mema"), 0);
    CHECK_EQ_INT(ninst(&f, "memb"), 1);
    CHECK_EQ_U64(cap_field(&f, "memory_reserved"), 64 * MiB);
    /* And back. */
    call_sync(&f, va, &a2, "pid");
    EXPECT_OK(&a2);
    CHECK(a2.pid != a1.pid);
    CHECK(pid_gone(b1.pid));
    CHECK_EQ_INT(starts(va), 2);
    CHECK_EQ_INT(starts(vb), 1);
    fx_finish(&f);
}

/* A busy instance is never evicted: the other version waits, then gets
 * NO_CAPACITY; the busy invocation finishes on its instance. */
static void test_memory_busy_not_evicted(void)
{
    fx f;
    fx_init(&f);
    f.cfg.memory_budget = 100 * MiB;
    f.cfg.queue_timeout_ms = 300;
    fx_start(&f);
    mxu_fn_version *va = fn_version(&f, "busya", "memory: 64Mi\n");
    mxu_fn_version *vb = fn_version(&f, "busyb", "memory: 64Mi\n");
    call a1, b1;
    invoke(&f, va, &a1, "sleep=900");
    WAIT_FOR(&f, ninst(&f, "busya") == 1 && inst_field(&f, "busya", 0, "in_flight") == 1, 2000);
    int pa = (int)inst_field(&f, "busya", 0, "pid");
    invoke(&f, vb, &b1, "pid");
    CHECK(!b1.done);
    WAIT_FOR(&f, b1.done, 2000);
    EXPECT_ERR(&b1, MXU_INV_NO_CAPACITY, "not enough memory to start busyb@1");
    CHECK(b1.done_ms - b1.invoked_ms >= 295);
    CHECK(!a1.done);
    WAIT_FOR(&f, a1.done, 2000);
    EXPECT_OK(&a1);
    CHECK_EQ_INT(a1.pid, pa);
    CHECK_EQ_INT(starts(va), 1);
    CHECK_EQ_INT(starts(vb), 0);
    fx_finish(&f);
}

/* Eviction stops only as much as the one instance being admitted needs,
 * counting what instances already stopping will free: a second invocation
 * arriving while the first eviction is under way must not stop more. */
static void test_memory_evicts_only_what_is_needed(void)
{
    fx f;
    fx_init(&f);
    f.cfg.memory_budget = 64 * MiB;
    fx_start(&f);
    mxu_fn_version *va = fn_version(&f, "eva", "memory: 16Mi\n");
    mxu_fn_version *vc = fn_version(&f, "evc", "memory: 16Mi\n");
    mxu_fn_version *vd = fn_version(&f, "evd", "memory: 16Mi\n");
    mxu_fn_version *vb = fn_version(&f, "evb", "memory: 32Mi\nconcurrency: 4\n");
    call a, c, d, b1, b2;
    call_sync(&f, va, &a, "pid"); /* the least recently used */
    call_sync(&f, vc, &c, "pid");
    call_sync(&f, vd, &d, "pid");
    CHECK_EQ_U64(cap_field(&f, "memory_reserved"), 48 * MiB);
    /* One instance of evb (32 MiB, concurrency 4) serves both; 16 MiB must go. */
    invoke(&f, vb, &b1, "pid");
    invoke(&f, vb, &b2, "pid");
    WAIT_FOR(&f, b1.done && b2.done, 3000);
    EXPECT_OK(&b1);
    EXPECT_OK(&b2);
    CHECK_EQ_INT(b2.pid, b1.pid);
    CHECK_EQ_INT(starts(vb), 1);
    CHECK(pid_gone(a.pid));
    if (ninst(&f, "evc") != 1 || ninst(&f, "evd") != 1)
        MXU_TEST_FAIL_("more was evicted than needed: evc has %zu instances, evd %zu "
                       "(16 MiB had to go, eva's instance freed it)",
                       ninst(&f, "evc"), ninst(&f, "evd"));
    fx_finish(&f);
}

/* ---- deadlines and crashes ------------------------------------------------------------- */

/* The head times out: TIMEOUT, the instance is killed; invocations pipelined
 * behind it (dispatched later, deadlines not yet passed) run again on a new
 * instance. */
static void test_timeout_reruns_followers(void)
{
    fx f;
    fx_init(&f);
    fx_start(&f);
    mxu_fn_version *v =
        fn_version(&f, "tmo", "memory: 16Mi\ntimeout: 400ms\nconcurrency: 3\nmax_instances: 1\n");
    call w, x, y, z;
    call_sync(&f, v, &w, "pid");
    EXPECT_OK(&w);
    invoke(&f, v, &x, "sleep=3000");
    run_for(&f, 150);
    invoke(&f, v, &y, "pid");
    run_for(&f, 100);
    invoke(&f, v, &z, "pid");
    CHECK_EQ_INT(inst_field(&f, "tmo", 0, "in_flight"), 3);
    WAIT_FOR(&f, x.done && y.done && z.done, 3000);
    EXPECT_ERR(&x, MXU_INV_TIMEOUT, "did not answer within its timeout of");
    CHECK_CONTAINS(x.message, "tmo@1");
    CHECK(x.done_ms - x.invoked_ms >= 395);
    EXPECT_OK(&y);
    EXPECT_OK(&z);
    CHECK(x.seq < y.seq);
    CHECK(y.pid != w.pid);
    CHECK_EQ_INT(z.pid, y.pid);
    CHECK(pid_gone(w.pid));
    CHECK_EQ_INT(ninst(&f, "tmo"), 1);
    CHECK_EQ_INT(inst_field(&f, "tmo", 0, "pid"), y.pid);
    CHECK_EQ_INT(starts(v), 2);
    json_t *st = mxu_sched_stats_json(f.s, NULL, "tmo");
    CHECK_EQ_INT(obj_int(json_object_get(st, "1"), "timeouts"), 1);
    json_decref(st);
    fx_finish(&f);
}

/* Invocations sent to the instance in the same turn as the one that hangs
 * never started: they are re-run, not failed with its timeout. */
static void test_timeout_reruns_burst_followers(void)
{
    fx f;
    fx_init(&f);
    fx_start(&f);
    mxu_fn_version *v =
        fn_version(&f, "tmob", "memory: 16Mi\ntimeout: 300ms\nconcurrency: 3\nmax_instances: 1\n");
    call w, x, y, z;
    call_sync(&f, v, &w, "pid");
    invoke(&f, v, &x, "sleep=3000");
    invoke(&f, v, &y, "pid");
    invoke(&f, v, &z, "pid");
    CHECK_EQ_INT(inst_field(&f, "tmob", 0, "in_flight"), 3);
    WAIT_FOR(&f, x.done && y.done && z.done, 3000);
    EXPECT_ERR(&x, MXU_INV_TIMEOUT, "did not answer within its timeout");
    EXPECT_OK(&y);
    EXPECT_OK(&z);
    CHECK(y.pid != w.pid);
    fx_finish(&f);
}

/* A follower re-run after a timeout must not carry the deadline of its first
 * dispatch onto the replacement instance: when the replacement takes a while
 * to start, the follower still gets its run, and the fresh instance is not
 * killed for a deadline that passed before it was even ready. */
static void test_timeout_rerun_after_slow_restart(void)
{
    fx f;
    fx_init(&f);
    fx_start(&f);
    /* RESTART_DELAY_MS: sched-test-fn waits that long before its handshake
     * when it is not the first instance of the version. */
    mxu_fn_version *v = fn_version(&f, "tmos",
                                   "memory: 16Mi\ntimeout: 400ms\nconcurrency: 2\n"
                                   "max_instances: 1\nenv:\n  RESTART_DELAY_MS: \"300\"\n");
    call w, x, y, after;
    call_sync(&f, v, &w, "pid");
    EXPECT_OK(&w);
    invoke(&f, v, &x, "sleep=3000");
    run_for(&f, 100);
    invoke(&f, v, &y, "pid"); /* deadline: 500 ms from now, if it counts from here */
    WAIT_FOR(&f, x.done && y.done, 3000);
    EXPECT_ERR(&x, MXU_INV_TIMEOUT, "did not answer within its timeout");
    /* The replacement instance lives on and serves the next call. */
    call_sync(&f, v, &after, "pid");
    EXPECT_OK(&after);
    if (y.error != MXU_INV_OK || starts(v) != 2)
        MXU_TEST_FAIL_("the re-run follower got %s (\"%s\") after %llu ms; %d instances "
                       "started (want 2: the replacement must survive)",
                       mxu_inv_error_code(y.error), y.message,
                       (unsigned long long)(y.done_ms - y.invoked_ms), starts(v));
    CHECK_EQ_INT(after.pid, y.pid);
    fx_finish(&f);
}

/* The instance dies by a signal while handling the head: CRASHED naming the
 * signal; the followers it never started run on a replacement. */
static void test_crash_reruns_followers(void)
{
    fx f;
    fx_init(&f);
    fx_start(&f);
    mxu_fn_version *v = fn_version(&f, "crash", "memory: 16Mi\nconcurrency: 3\nmax_instances: 1\n");
    call w, x, y, z;
    call_sync(&f, v, &w, "pid");
    EXPECT_OK(&w);
    invoke(&f, v, &x, "crash=11");
    invoke(&f, v, &y, "pid");
    invoke(&f, v, &z, "pid");
    WAIT_FOR(&f, x.done && y.done && z.done, 3000);
    EXPECT_ERR(&x, MXU_INV_CRASHED, "SIGSEGV");
    CHECK_CONTAINS(x.message, "signal 11");
    CHECK_CONTAINS(x.message, "crash@1");
    EXPECT_OK(&y);
    EXPECT_OK(&z);
    CHECK(x.seq < y.seq && y.seq < z.seq);
    CHECK(y.pid != w.pid);
    CHECK_EQ_INT(z.pid, y.pid);
    CHECK(pid_gone(w.pid));
    /* Replaced: one instance, the new one. */
    CHECK_EQ_INT(ninst(&f, "crash"), 1);
    CHECK_EQ_INT(inst_field(&f, "crash", 0, "pid"), y.pid);
    CHECK_EQ_INT(starts(v), 2);
    json_t *st = mxu_sched_stats_json(f.s, NULL, "crash");
    CHECK_EQ_INT(obj_int(json_object_get(st, "1"), "crashes"), 1);
    json_decref(st);
    fx_finish(&f);
}

/* An instance that exits by itself in the middle of an invocation. */
static void test_exit_while_handling(void)
{
    fx f;
    fx_init(&f);
    fx_start(&f);
    mxu_fn_version *v = fn_version(&f, "exiter", "memory: 16Mi\nconcurrency: 2\n");
    call w, x, y;
    call_sync(&f, v, &w, "pid");
    invoke(&f, v, &x, "exit=5");
    invoke(&f, v, &y, "pid");
    WAIT_FOR(&f, x.done && y.done, 3000);
    EXPECT_ERR(&x, MXU_INV_CRASHED, "exited with status 5");
    EXPECT_OK(&y);
    CHECK(y.pid != w.pid);
    fx_finish(&f);
}

/* A response larger than max_response_bytes: BAD_RESPONSE for that one, the
 * instance stays. */
static void test_response_too_large(void)
{
    fx f;
    fx_init(&f);
    f.cfg.max_response_bytes = 4096;
    fx_start(&f);
    mxu_fn_version *v = fn_version(&f, "big", "memory: 16Mi\n");
    call ok, big, after;
    call_sync(&f, v, &ok, "big=4096");
    EXPECT_OK(&ok);
    CHECK_EQ_INT(ok.body_len, 4096);
    call_sync(&f, v, &big, "big=5000");
    EXPECT_ERR(&big, MXU_INV_BAD_RESPONSE, "response limit");
    call_sync(&f, v, &after, "pid");
    EXPECT_OK(&after);
    CHECK_EQ_INT(starts(v), 1);
    fx_finish(&f);
}

/* ---- broken starts ---------------------------------------------------------------------- */

/* The program exits before HELLO: START_FAILED with its output. */
static void test_start_fails_exit_early(void)
{
    fx f;
    fx_init(&f);
    fx_start(&f);
    mxu_fn_version *v = raw_version(&f, "early", "exit-early", "memory: 16Mi\n");
    call c;
    call_sync(&f, v, &c, "ok");
    EXPECT_ERR(&c, MXU_INV_START_FAILED, "failed to start");
    CHECK_CONTAINS(c.message, "early@1");
    CHECK_CONTAINS(c.message, "exited with status 3");
    CHECK_CONTAINS(c.message, "cannot open config.yaml");
    CHECK_EQ_INT(starts(v), 1);
    CHECK_EQ_INT(cap_field(&f, "instances"), 0);
    CHECK_EQ_INT(cap_field(&f, "memory_reserved"), 0);
    fx_finish(&f);
}

/* A start that ends in a protocol error or a start timeout is a failed start
 * like any other: START_FAILED for the waiting invocation, with the reason
 * and the output, and no endless restarts. Bounded by a short queue timeout
 * so that a wrong outcome shows as such, quickly. */
static void start_failure_case(const char *mode, uint64_t start_timeout_ms, const char *reason,
                               const char *output)
{
    fx f;
    fx_init(&f);
    f.cfg.queue_timeout_ms = 1500;
    f.cfg.start_timeout_ms = start_timeout_ms;
    fx_start(&f);
    mxu_fn_version *v = raw_version(&f, "broken", mode, "memory: 16Mi\n");
    call c;
    invoke(&f, v, &c, "ok");
    WAIT_FOR(&f, c.done, 2500);
    int n = starts(v);
    if (c.error != MXU_INV_START_FAILED)
        MXU_TEST_FAIL_("expected start_failed, got %s after %d instance starts: \"%s\"",
                       mxu_inv_error_code(c.error), n, c.message);
    CHECK_CONTAINS(c.message, reason);
    if (output)
        CHECK_CONTAINS(c.message, output);
    CHECK_EQ_INT(n, 1);
    fx_finish(&f);
}

static void test_start_fails_garbage(void)
{
    start_failure_case("garbage", 0, "broke the channel protocol", "about to misbehave");
}

static void test_start_fails_bad_version(void)
{
    start_failure_case("bad-version", 0, "protocol version 99", NULL);
}

static void test_start_timeout(void)
{
    start_failure_case("silent", 150, "did not complete its handshake within 150 ms", NULL);
}

/* fn.h: "a non-zero return [from mxu_init()] reports a fatal error to the node
 * and the instance exits (the node reports the cold start as failed)". */
static void test_start_fails_init(void)
{
    fx f;
    fx_init(&f);
    f.cfg.queue_timeout_ms = 1500;
    fx_start(&f);
    mxu_fn_version *v = fn_version(&f, "badinit", "memory: 16Mi\nenv:\n  FAIL_INIT: \"1\"\n");
    call c;
    invoke(&f, v, &c, "pid");
    WAIT_FOR(&f, c.done, 2500);
    EXPECT_ERR(&c, MXU_INV_START_FAILED, "mxu_init() failed");
    CHECK_EQ_INT(starts(v), 1);
    fx_finish(&f);
}

/* ---- keep-alive and cancellation -------------------------------------------------------- */

/* An idle instance stops after keep_alive; the next invocation is cold again. */
static void test_keep_alive(void)
{
    fx f;
    fx_init(&f);
    fx_start(&f);
    mxu_fn_version *v = fn_version(&f, "idle", "memory: 16Mi\nkeep_alive: 200ms\n");
    call a, b;
    call_sync(&f, v, &a, "pid");
    EXPECT_OK(&a);
    CHECK(a.cold);
    CHECK_EQ_INT(ninst(&f, "idle"), 1);
    WAIT_FOR(&f, ninst(&f, "idle") == 0, 2000);
    uv_update_time(&f.loop);
    CHECK(uv_now(&f.loop) - a.done_ms >= 195);
    CHECK(pid_gone(a.pid));
    CHECK_EQ_INT(cap_field(&f, "memory_reserved"), 0);
    call_sync(&f, v, &b, "pid");
    EXPECT_OK(&b);
    CHECK(b.cold);
    CHECK(b.pid != a.pid);
    fx_finish(&f);
}

/* Cancelling a queued invocation drops it: its callback never runs. */
static void test_cancel_queued(void)
{
    fx f;
    fx_init(&f);
    fx_start(&f);
    mxu_fn_version *v = fn_version(&f, "cancq", "memory: 16Mi\nmax_instances: 1\n");
    call w, a, b, c;
    call_sync(&f, v, &w, "pid");
    invoke(&f, v, &a, "sleep=200");
    invoke(&f, v, &b, "pid");
    CHECK(b.h != NULL);
    CHECK_EQ_INT(cap_field(&f, "queued"), 1);
    mxu_sched_cancel(b.h);
    CHECK_EQ_INT(cap_field(&f, "queued"), 0);
    WAIT_FOR(&f, a.done, 2000);
    EXPECT_OK(&a);
    call_sync(&f, v, &c, "pid");
    EXPECT_OK(&c);
    CHECK_EQ_INT(c.pid, w.pid);
    run_for(&f, 50);
    CHECK(!b.done);
    CHECK_EQ_INT(inst_field(&f, "cancq", 0, "invocations"), 3); /* b never ran */
    fx_finish(&f);
    CHECK(!b.done);
}

/* Cancelling a running invocation: it finishes on the instance, the result
 * is dropped, the instance keeps serving. */
static void test_cancel_running(void)
{
    fx f;
    fx_init(&f);
    fx_start(&f);
    mxu_fn_version *v = fn_version(&f, "cancr", "memory: 16Mi\nmax_instances: 1\n");
    call w, a, b;
    call_sync(&f, v, &w, "pid");
    invoke(&f, v, &a, "sleep=150");
    CHECK_EQ_INT(inst_field(&f, "cancr", 0, "in_flight"), 1);
    mxu_sched_cancel(a.h);
    WAIT_FOR(&f,
             inst_field(&f, "cancr", 0, "invocations") == 2 &&
                 inst_field(&f, "cancr", 0, "in_flight") == 0,
             2000);
    CHECK(!a.done);
    call_sync(&f, v, &b, "pid");
    EXPECT_OK(&b);
    CHECK_EQ_INT(b.pid, w.pid);
    fx_finish(&f);
    CHECK(!a.done);
}

/* ---- shutdown ------------------------------------------------------------------------------ */

/* Shutdown drains: in-flight and queued invocations finish, new ones are
 * refused, and done runs once no instance process is left. */
static void test_shutdown_drains(void)
{
    fx f;
    fx_init(&f);
    fx_start(&f);
    mxu_fn_version *v = fn_version(&f, "drain", "memory: 16Mi\nmax_instances: 2\n");
    call a, b, c, d;
    invoke(&f, v, &a, "sleep=250");
    invoke(&f, v, &b, "sleep=250");
    invoke(&f, v, &c, "sleep=50");
    WAIT_FOR(&f,
             ninst(&f, "drain") == 2 && inst_field(&f, "drain", 0, "in_flight") == 1 &&
                 inst_field(&f, "drain", 1, "in_flight") == 1,
             2000);
    CHECK_EQ_INT(cap_field(&f, "queued"), 1);
    fx_watch_pid(&f, (int)inst_field(&f, "drain", 0, "pid"));
    fx_watch_pid(&f, (int)inst_field(&f, "drain", 1, "pid"));
    fx_shutdown(&f, 3000);
    CHECK(!f.shut_down);
    invoke(&f, v, &d, "pid");
    CHECK(d.sync);
    EXPECT_ERR(&d, MXU_INV_SHUTTING_DOWN, "shutting down");
    /* Done comes only after the last of them, never while one is open. */
    WAIT_FOR(&f, (a.done && b.done && c.done) || f.shut_down, 3000);
    CHECK(a.done && b.done && c.done);
    EXPECT_OK(&a);
    EXPECT_OK(&b);
    EXPECT_OK(&c);
    fx_watch_pid(&f, c.pid);
    WAIT_FOR(&f, f.shut_down, 3000);
    CHECK(f.pids_gone_at_done);
    fx_finish(&f);
}

/* Past the drain bound, what is still queued or running fails with
 * SHUTTING_DOWN; done still waits for the instance process to be gone. */
static void test_shutdown_past_bound(void)
{
    fx f;
    fx_init(&f);
    fx_start(&f);
    mxu_fn_version *v = fn_version(&f, "bound", "memory: 16Mi\nmax_instances: 1\n");
    call a, b;
    invoke(&f, v, &a, "sleep=1200");
    WAIT_FOR(&f, ninst(&f, "bound") == 1 && inst_field(&f, "bound", 0, "in_flight") == 1, 2000);
    invoke(&f, v, &b, "pid");
    int pid = (int)inst_field(&f, "bound", 0, "pid");
    fx_watch_pid(&f, pid);
    uv_update_time(&f.loop);
    uint64_t t0 = uv_now(&f.loop);
    fx_shutdown(&f, 200);
    WAIT_FOR(&f, a.done && b.done, 1500);
    EXPECT_ERR(&a, MXU_INV_SHUTTING_DOWN, "stopped before this invocation finished");
    EXPECT_ERR(&b, MXU_INV_SHUTTING_DOWN, "stopped before this invocation finished");
    CHECK(a.done_ms - t0 >= 195);
    CHECK(!f.shut_down); /* its process is still busy */
    CHECK(!pid_gone(pid));
    WAIT_FOR(&f, f.shut_down, 3500);
    CHECK(f.pids_gone_at_done);
    fx_finish(&f);
}

/* ---- runtime exec --------------------------------------------------------------------------- */

static const char exec_yaml[] = "name: sh\n"
                                "runtime: exec\n"
                                "memory: 64Mi\n"
                                "timeout: 500ms\n"
                                "command:\n"
                                "  - /bin/sh\n"
                                "  - -c\n"
                                "  - |\n"
                                "    case \"$QUERY_STRING\" in\n"
                                "    fail) echo 'sh: failing on purpose' >&2; exit 3 ;;\n"
                                "    big) head -c 100000 /dev/zero ;;\n"
                                "    hang) sleep 5 ;;\n"
                                "    *) printf 'pid=%s method=%s len=%s body=' \"$$\" "
                                "\"$REQUEST_METHOD\" \"$CONTENT_LENGTH\"; cat ;;\n"
                                "    esac\n";

/* One process per invocation; stdout is the body; the exit status decides. */
static void test_exec_runtime(void)
{
    fx f;
    fx_init(&f);
    f.cfg.max_response_bytes = 4096;
    fx_start(&f);
    mxu_fn_version *v = fx_version(&f, "sh", "/bin/sh", exec_yaml);
    call a, b, fail, big, hang, con[3];
    invoke_body(&f, v, &a, "pid", "POST", "hello");
    WAIT_FOR(&f, a.done, 3000);
    EXPECT_OK(&a);
    char want[128];
    snprintf(want, sizeof(want), "pid=%d method=POST len=5 body=hello", a.pid);
    CHECK_STR(a.body, want);
    WAIT_FOR(&f, ninst(&f, "sh") == 0, 2000); /* its process is gone with it */
    CHECK(pid_gone(a.pid));
    call_sync(&f, v, &b, "pid");
    EXPECT_OK(&b);
    CHECK(b.pid > 0 && b.pid != a.pid);

    call_sync(&f, v, &fail, "fail");
    EXPECT_ERR(&fail, MXU_INV_FAILED, "exited with status 3");
    CHECK_CONTAINS(fail.message, "sh@1");
    call_sync(&f, v, &big, "big");
    EXPECT_ERR(&big, MXU_INV_BAD_RESPONSE, "response limit");
    call_sync(&f, v, &hang, "hang");
    EXPECT_ERR(&hang, MXU_INV_TIMEOUT, "did not answer within its timeout");

    /* Concurrent invocations: a process each. */
    for (int i = 0; i < 3; i++)
        invoke(&f, v, &con[i], "pid");
    WAIT_FOR(&f, con[0].done && con[1].done && con[2].done, 3000);
    for (int i = 0; i < 3; i++)
        EXPECT_OK(&con[i]);
    CHECK(con[0].pid != con[1].pid && con[1].pid != con[2].pid && con[0].pid != con[2].pid);
    WAIT_FOR(&f, ninst(&f, "sh") == 0, 2000);
    fx_finish(&f);
}

static const char exec_body_yaml[] =
    "name: shbody\n"
    "runtime: exec\n"
    "memory: 64Mi\n"
    "timeout: 3s\n"
    "command:\n"
    "  - /bin/sh\n"
    "  - -c\n"
    "  - |\n"
    "    case \"$QUERY_STRING\" in\n"
    "    echo) cat ;;\n"
    "    ignore) echo ignored ;;\n"
    "    *) cat > /dev/null; : > stdin-done; sleep 0.4; echo done ;;\n"
    "    esac\n";

static char *big_text(size_t n)
{
    char *b = mxu_malloc(n + 1);
    for (size_t i = 0; i < n; i++)
        b[i] = (char)('a' + i % 26);
    b[n] = '\0';
    return b;
}

/* Bodies larger than a pipe go to stdin as the process reads them; a process
 * that does not read its input is not an error. */
static void test_exec_large_body(void)
{
    fx f;
    fx_init(&f);
    fx_start(&f);
    mxu_fn_version *v = fx_version(&f, "shbody", "/bin/sh", exec_body_yaml);
    _cleanup_free_ char *body = big_text(1u << 20);
    call echo, ignore;
    invoke_body(&f, v, &echo, "echo", "POST", body);
    WAIT_FOR(&f, echo.done, 3000);
    EXPECT_OK(&echo);
    CHECK_EQ_INT(echo.body_len, 1u << 20);
    CHECK(strncmp(echo.body, "abcdefghijklmnopqrstuvwxyzabc", 29) == 0);
    invoke_body(&f, v, &ignore, "ignore", "POST", body);
    WAIT_FOR(&f, ignore.done, 3000);
    EXPECT_OK(&ignore);
    CHECK_STR(ignore.body, "ignored\n");
    fx_finish(&f);
}

/* An exec invocation whose body needed polling closes its stdin when the body
 * is written, long before its process ends. The descriptor number is free
 * from then on, and the next instances started get it. When the exec
 * process ends, nothing of its old stdin may reach those instances: they
 * must keep being heard (their answers, their exits). */
static void test_exec_stdin_fd_reuse(void)
{
    fx f;
    fx_init(&f);
    fx_start(&f);
    mxu_fn_version *sh = fx_version(&f, "shbody", "/bin/sh", exec_body_yaml);
    mxu_fn_version *w = fn_version(&f, "wrm", "memory: 16Mi\ntimeout: 1s\nmax_instances: 4\n");
    _cleanup_free_ char *body = big_text(512u << 10);
    call a, first[4], second[4];
    invoke_body(&f, sh, &a, "drain", "POST", body);
    /* stdin-done exists once the script saw EOF, i.e. the node closed stdin. */
    WAIT_FOR(&f, bundle_has(sh, "stdin-done"), 2000);
    CHECK(!a.done);
    for (int i = 0; i < 4; i++)
        invoke(&f, w, &first[i], "sleep=20");
    WAIT_FOR(&f, first[0].done && first[1].done && first[2].done && first[3].done, 3000);
    for (int i = 0; i < 4; i++)
        EXPECT_OK(&first[i]);
    CHECK_EQ_INT(ninst(&f, "wrm"), 4);
    WAIT_FOR(&f, a.done, 3000); /* the exec process ends */
    EXPECT_OK(&a);
    CHECK_STR(a.body, "done\n");
    for (int i = 0; i < 4; i++)
        invoke(&f, w, &second[i], "sleep=20");
    WAIT_FOR(&f, second[0].done && second[1].done && second[2].done && second[3].done, 3000);
    for (int i = 0; i < 4; i++)
        EXPECT_OK(&second[i]);
    CHECK_EQ_INT(starts(w), 4);
    fx_finish(&f); /* every instance's exit must be seen, too */
}

/* ---- hostile instances ------------------------------------------------------------------------
 */

/* The instance answers the head with `what`; the head gets a clean
 * BAD_RESPONSE naming `reason`, the follower runs on a new instance, and
 * another function on the node is not disturbed. */
static void hostile_case(const char *what, const char *reason)
{
    fx f;
    fx_init(&f);
    fx_start(&f);
    mxu_fn_version *v =
        raw_version(&f, "hostile", "hostile", "memory: 16Mi\nconcurrency: 2\nmax_instances: 1\n");
    mxu_fn_version *good = fn_version(&f, "good", "memory: 16Mi\n");
    call w, x, y, g, z;
    call_sync(&f, v, &w, "ok");
    EXPECT_OK(&w);
    CHECK(w.pid > 0);
    invoke(&f, v, &x, what);
    invoke(&f, v, &y, "ok");
    invoke(&f, good, &g, "sleep=50");
    WAIT_FOR(&f, x.done && y.done && g.done, 3000);
    EXPECT_ERR(&x, MXU_INV_BAD_RESPONSE, reason);
    CHECK_CONTAINS(x.message, "hostile@1");
    /* The follower is answered: by the old instance if its RESULT was already
     * on the way, else re-run on the new one. */
    EXPECT_OK(&y);
    CHECK(y.pid > 0);
    EXPECT_OK(&g);
    CHECK(pid_gone(w.pid));
    call_sync(&f, v, &z, "ok");
    EXPECT_OK(&z);
    CHECK(z.pid > 0 && z.pid != w.pid);
    CHECK_EQ_INT(starts(v), 2);
    CHECK_EQ_INT(ninst(&f, "hostile"), 1);
    fx_finish(&f);
}

static void test_hostile_malformed_result(void)
{
    hostile_case("malformed", "malformed RESULT frame");
}

static void test_hostile_unknown_id(void)
{
    hostile_case("unknown-id", "RESULT for an invocation it was not given");
}

static void test_hostile_4gib_header(void)
{
    hostile_case("huge", "malformed frame header");
}

static void test_hostile_oversize_frame(void)
{
    hostile_case("oversize", "malformed frame header");
}

static void test_hostile_bad_type(void)
{
    hostile_case("badtype", "unexpected frame type");
}

MXU_TESTS(TEST(test_warm_reuse), TEST(test_scale_up_to_max), TEST(test_concurrency_pipelines),
          TEST(test_queue_full), TEST(test_queue_priority), TEST(test_queue_timeout),
          TEST(test_memory_over_budget), TEST(test_memory_evicts_idle),
          TEST(test_memory_busy_not_evicted), TEST(test_memory_evicts_only_what_is_needed),
          TEST(test_timeout_reruns_followers), TEST(test_timeout_reruns_burst_followers),
          TEST(test_timeout_rerun_after_slow_restart), TEST(test_crash_reruns_followers),
          TEST(test_exit_while_handling), TEST(test_response_too_large),
          TEST(test_start_fails_exit_early), TEST(test_start_fails_garbage),
          TEST(test_start_fails_bad_version), TEST(test_start_timeout), TEST(test_start_fails_init),
          TEST(test_keep_alive), TEST(test_cancel_queued), TEST(test_cancel_running),
          TEST(test_shutdown_drains), TEST(test_shutdown_past_bound), TEST(test_exec_runtime),
          TEST(test_exec_large_body), TEST(test_exec_stdin_fd_reuse),
          TEST(test_hostile_malformed_result), TEST(test_hostile_unknown_id),
          TEST(test_hostile_4gib_header), TEST(test_hostile_oversize_frame),
          TEST(test_hostile_bad_type))
