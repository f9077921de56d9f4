/*
 * Runs: one service invocation driven step by step through the scheduler.
 *
 * A run is a tree of tasks (a sequence, a call, a parallel, a switch, a
 * service body with its on_error handler), each reporting its outcome to
 * its parent: OK (go on with this payload), END (a 4xx answer that ends the
 * run) or FAIL (the step failed for good: after its retries and fallback).
 * Every task of a run is allocated for the run and freed with it, all at
 * once (a pool per request), so a task never points at a freed one, and a
 * cancelled subtree (the other branches of a failed parallel, a client that
 * went away) only needs a flag: its outcomes are dropped, its calls in
 * flight cancelled.
 *
 * The scheduler may answer inside mxu_sched_invoke() (queue full, ...), so
 * any task may finish while its parent is still starting it. Every entry
 * into a run (invoke, a scheduler callback, a timer) pins it; the run is
 * freed only once it has answered, nothing pins it and no cancelled call is
 * still running.
 *
 * Payloads move: a step's answer body is stolen from the scheduler's result
 * and becomes the next step's request body, which the scheduler takes. A
 * body is copied only where the input is needed again: for a call with
 * retries or a fallback (each attempt but the last gets a copy) and for
 * each branch of a parallel but the last.
 *
 * Divisions: payloads and headers; tasks and runs; calls (routes, policy,
 * breaker, attempts, retries, fallback, nested services); sequences,
 * parallels, switches and service bodies; answers and traces.
 */
#include "compose-internal.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

/* ---- payloads ---- */

typedef struct payload {
    int status;
    mxu_buf body;
    mxu_buf hdrs; /* the answer's headers, as pairs encoded as the channel does */
    uint32_t nhdrs;
    bool orig; /* the service's request itself: the first call gets it whole */
} payload;

static void payload_free(payload *p)
{
    mxu_buf_free(&p->body);
    mxu_buf_free(&p->hdrs);
    p->nhdrs = 0;
}

static void payload_move(payload *dst, payload *src)
{
    *dst = *src;
    *src = (payload){0};
}

static void payload_copy(payload *dst, const payload *src)
{
    *dst = (payload){.status = src->status, .nhdrs = src->nhdrs, .orig = src->orig};
    if (src->body.len)
        mxu_buf_append(&dst->body, src->body.data, src->body.len);
    if (src->hdrs.len)
        mxu_buf_append(&dst->hdrs, src->hdrs.data, src->hdrs.len);
}

static void hdr_add(payload *p, mxu_slice n, mxu_slice v)
{
    size_t need = 8 + (size_t)n.len + v.len;
    mxu_buf_reserve(&p->hdrs, need);
    mxu_wire_w w;
    mxu_wire_w_init(&w, p->hdrs.data + p->hdrs.len, need);
    mxu_wire_put_bytes(&w, n.ptr, n.len);
    mxu_wire_put_bytes(&w, v.ptr, v.len);
    p->hdrs.len += need;
    p->hdrs.data[p->hdrs.len] = '\0';
    p->nhdrs++;
}

static void hdr_add_str(payload *p, const char *n, const char *v)
{
    hdr_add(p, (mxu_slice){n, (uint32_t)strlen(n)}, (mxu_slice){v, (uint32_t)strlen(v)});
}

static mxu_header_list hdr_list(const payload *p)
{
    mxu_header_list l = {.count = p->nhdrs};
    mxu_wire_r_init(&l.pairs, p->hdrs.data ? p->hdrs.data : "", p->hdrs.len);
    return l;
}

static bool slice_is(mxu_slice s, const char *lit)
{
    size_t n = strlen(lit);
    return s.len == n && strncasecmp(s.ptr, lit, n) == 0;
}

static bool payload_ctype(const payload *p, mxu_slice *out)
{
    mxu_header_list it = hdr_list(p);
    mxu_slice n, v;
    while (mxu_wire_next_header(&it, &n, &v)) {
        if (slice_is(n, "content-type")) {
            *out = v;
            return true;
        }
    }
    return false;
}

/* ---- tasks and runs ---- */

enum out_kind { OUT_OK, OUT_END, OUT_FAIL };

/* What a task ends with. The receiver owns what is in it. */
typedef struct outcome {
    enum out_kind kind;
    payload p;        /* OK, END: the answer */
    int status;       /* FAIL: the run's answer status (502, 503, 504, 403) */
    const char *code; /* FAIL: step_failed, circuit_open, deadline_exceeded, forbidden */
    char *step;       /* FAIL: the step's id */
    char *message;    /* FAIL */
    int step_status;  /* FAIL: what the step's last call got (500, 504, ...); 0 = none */
} outcome;

static void outcome_free(outcome *o)
{
    payload_free(&o->p);
    free(o->step);
    free(o->message);
    o->step = o->message = NULL;
}

typedef struct task task;
struct task {
    task *all_next; /* the run's list of every task */
    task *parent;   /* NULL: the run's root */
    mxu_compose_run *r;
    void (*child_done)(task *self, task *child, outcome *o);
    void (*cleanup)(task *self);
    int slot; /* a parallel's branch index */
    bool cancelled, finished;
};

typedef struct call_task call_task;

/* A service's context: the service whose steps run, nested ones included. */
typedef struct scope {
    task t; /* for cleanup only */
    mxu_fn_version *svc;
    char *prefix; /* "" or "price/" before the ids of a nested service's steps */
    uint64_t deadline;
    uint32_t depth;
} scope;

struct mxu_compose_run {
    mxu_compose *c;
    mxu_compose_run *prev, *next;
    mxu_fn_version *v;
    uint64_t id;
    mxu_invoke_cb cb;
    void *ud;
    /* the request (borrowed from the caller until it is answered or gone) */
    mxu_slice method, path, query;
    const mxu_slice *hn, *hv;
    uint32_t nhdr;
    enum mxu_priority prio;
    uint64_t start_wall_ms, start_ns, deadline;
    mxu_traceparent tp; /* the trace, and this run's own span */
    char trace_hex[33];
    task *tasks;
    trace_row **rows;
    size_t nrows, caprows;
    call_task *active; /* calls waiting on the scheduler, a backoff timer or a nested service */
    int pins;
    bool done;        /* answered or cancelled: nothing more is reported */
    bool cancelled;   /* by the caller */
    uint32_t pending; /* cancelled invocations still running */
    void (*gone)(void *ud);
    void *gone_ud;
};

static void *task_new(mxu_compose_run *r, size_t size, task *parent,
                      void (*child_done)(task *, task *, outcome *), void (*cleanup)(task *))
{
    task *t = mxu_calloc(1, size);
    t->r = r;
    t->parent = parent;
    t->child_done = child_done;
    t->cleanup = cleanup;
    t->all_next = r->tasks;
    r->tasks = t;
    return t;
}

/* Is this task's outcome still wanted? */
static bool task_dead(const task *t)
{
    for (; t; t = t->parent) {
        if (t->cancelled)
            return true;
    }
    return false;
}

static void run_done(mxu_compose_run *r, outcome *o);
static void reap(mxu_compose_run *r);

static void task_finish(task *t, outcome *o)
{
    if (t->finished || task_dead(t)) {
        outcome_free(o);
        return;
    }
    t->finished = true;
    if (t->parent)
        t->parent->child_done(t->parent, t, o);
    else
        run_done(t->r, o);
}

static void fail_outcome(outcome *o, int status, const char *code, const char *step,
                         int step_status, const char *fmt, ...) MXU_PRINTF(6, 7);
static void fail_outcome(outcome *o, int status, const char *code, const char *step,
                         int step_status, const char *fmt, ...)
{
    *o = (outcome){.kind = OUT_FAIL, .status = status, .code = code, .step_status = step_status};
    o->step = mxu_strdup(step ? step : "");
    va_list ap;
    va_start(ap, fmt);
    mxu_buf b = {0};
    mxu_buf_vprintf(&b, fmt, ap);
    va_end(ap);
    o->message = b.data ? b.data : mxu_strdup("");
}

static void run_free(mxu_compose_run *r)
{
    mxu_compose *c = r->c;
    if (r->prev)
        r->prev->next = r->next;
    else
        c->runs = r->next;
    if (r->next)
        r->next->prev = r->prev;
    task *t = r->tasks;
    while (t) {
        task *next = t->all_next;
        if (t->cleanup)
            t->cleanup(t);
        free(t);
        t = next;
    }
    for (size_t i = 0; i < r->nrows; i++) {
        trace_row *row = r->rows[i];
        free(row->id);
        free(row->route);
        free(row->why);
        free(row->error);
        for (size_t j = 0; j < row->ncalls; j++)
            free(row->calls[j].error);
        free(row->calls);
        free(row);
    }
    free(r->rows);
    mxu_fn_version_unref(r->v);
    free(r);
    /* No step will follow: a shutdown need not wait for this run any more
     * (every run holds it from mxu_compose_invoke on). Last, once unlinked. */
    mxu_sched_release(c->cfg.sched);
}

static void run_pin(mxu_compose_run *r)
{
    r->pins++;
}

/* Leaving an entry point: free the run if it is over. */
static void run_unpin(mxu_compose_run *r)
{
    if (--r->pins > 0 || !r->done || r->pending > 0)
        return;
    run_free(r);
}

static uint64_t run_now(const mxu_compose_run *r)
{
    return uv_now(r->c->loop);
}

static uint64_t run_us(const mxu_compose_run *r)
{
    uint64_t now = mxu_now_ns();
    return now > r->start_ns ? (now - r->start_ns) / 1000 : 0;
}

/* A request header of the service's caller (case-insensitive name). */
static bool req_header(const mxu_compose_run *r, const char *name, mxu_slice *out)
{
    for (uint32_t i = 0; i < r->nhdr; i++) {
        if (slice_is(r->hn[i], name)) {
            *out = r->hv[i];
            return true;
        }
    }
    return false;
}

/* ---- trace rows ---- */

static trace_row *row_new(mxu_compose_run *r, const scope *sc, const char *id, const char *kind)
{
    trace_row *row = mxu_calloc(1, sizeof(*row));
    row->id = mxu_asprintf("%s%s", sc->prefix, id ? id : "");
    row->kind = kind;
    row->start_us = run_us(r);
    row->open = true;
    if (r->nrows == r->caprows) {
        r->caprows = r->caprows ? r->caprows * 2 : 8;
        r->rows = mxu_realloc(r->rows, r->caprows * sizeof(*r->rows));
    }
    r->rows[r->nrows++] = row;
    return row;
}

static void row_set(char **field, const char *fmt, ...) MXU_PRINTF(2, 3);
static void row_set(char **field, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    mxu_buf b = {0};
    mxu_buf_vprintf(&b, fmt, ap);
    va_end(ap);
    free(*field);
    *field = b.data ? b.data : mxu_strdup("");
}

static void row_end(mxu_compose_run *r, trace_row *row, const outcome *o)
{
    if (row == NULL || !row->open)
        return;
    row->open = false;
    uint64_t now = run_us(r);
    row->dur_us = now > row->start_us ? now - row->start_us : 0;
    if (o->kind == OUT_FAIL) {
        row->status = o->status;
        row_set(&row->error, "%s: %s", o->code, o->message);
    } else {
        row->status = o->p.status;
    }
}

/* ---- calls ---- */

typedef struct backoff_timer {
    uv_timer_t t;
    call_task *owner; /* NULL once the call stopped waiting */
} backoff_timer;

struct call_task {
    task t;
    scope *sc;
    const mxu_step *st;
    const mxu_edge *e;
    const char *kind; /* "call" or "on_error" */
    payload in;       /* the step's input, kept while an attempt may need it again */
    trace_row *row;
    uint32_t attempts; /* calls of the chosen route made so far */
    uint32_t failures; /* of them, failed */
    bool in_fallback;
    mxu_fn_version *target; /* what the current attempt calls (a reference) */
    char target_text[136];  /* "pricing@2" */
    mxu_breaker *br;
    bool trial;
    /* the attempt in flight */
    mxu_invocation *inv;
    bool answered;    /* its callback ran (maybe inside mxu_sched_invoke) */
    uint32_t attempt; /* attempts started (fallback included): which one inv is */
    backoff_timer *timer;
    scope *sub; /* a nested service's run */
    uint64_t bytes_in;
    mxu_shape_ticket ticket;
    bool quota;
    mxu_slice *hn, *hv;
    char tp[56];
    size_t call_ix; /* its entry in row->calls */
    call_task *act_prev, *act_next;
    bool active;
    /* the last failure, for the step's error */
    int fail_status;
    char *fail_msg;
};

static void call_cleanup(task *t)
{
    call_task *k = (call_task *)t;
    payload_free(&k->in);
    mxu_shape_release(&k->ticket);
    if (k->quota)
        mxu_quota_release(t->r->c->cfg.policy, mxu_fn_version_tenant(k->sc->svc));
    if (k->target)
        mxu_fn_version_unref(k->target);
    free(k->hn);
    free(k->hv);
    free(k->fail_msg);
}

static void active_add(call_task *k)
{
    if (k->active)
        return;
    mxu_compose_run *r = k->t.r;
    k->active = true;
    k->act_prev = NULL;
    k->act_next = r->active;
    if (r->active)
        r->active->act_prev = k;
    r->active = k;
}

static void active_remove(call_task *k)
{
    if (!k->active)
        return;
    mxu_compose_run *r = k->t.r;
    if (k->act_prev)
        k->act_prev->act_next = k->act_next;
    else
        r->active = k->act_next;
    if (k->act_next)
        k->act_next->act_prev = k->act_prev;
    k->active = false;
}

static void timer_closed(uv_handle_t *h)
{
    free(h);
}

static void stop_timer(call_task *k)
{
    if (k->timer == NULL)
        return;
    k->timer->owner = NULL;
    uv_timer_stop(&k->timer->t);
    uv_close((uv_handle_t *)&k->timer->t, timer_closed);
    k->timer = NULL;
}

/* The shaping slot and quota reservation of an attempt, given back once its
 * invocation is over (its record, if any, was counted). */
static void attempt_release(call_task *k)
{
    mxu_shape_release(&k->ticket);
    if (k->quota) {
        k->quota = false;
        mxu_quota_release(k->t.r->c->cfg.policy, mxu_fn_version_tenant(k->sc->svc));
    }
}

static void maybe_gone(mxu_compose_run *r)
{
    if (r->pending == 0 && r->gone) {
        void (*gone)(void *) = r->gone;
        r->gone = NULL;
        gone(r->gone_ud);
    }
}

static void on_inv_gone(void *ud)
{
    call_task *k = ud;
    mxu_compose_run *r = k->t.r;
    run_pin(r);
    attempt_release(k);
    r->pending--;
    maybe_gone(r);
    run_unpin(r);
}

/* Stop every call whose outcome nobody wants any more. */
static void reap(mxu_compose_run *r)
{
    call_task *k = r->active;
    while (k) {
        call_task *next = k->act_next;
        if (task_dead(&k->t)) {
            active_remove(k);
            stop_timer(k);
            if (k->br)
                mxu_breaker_abandon(k->br, k->trial);
            k->trial = false;
            if (k->inv) {
                mxu_invocation *inv = k->inv;
                k->inv = NULL;
                r->pending++;
                mxu_sched_cancel_then(inv, on_inv_gone, k);
            }
        }
        k = next;
    }
}

static void call_attempt(call_task *k);
static void call_failed(call_task *k, int status, unsigned cls, const char *code, const char *fmt,
                        ...) MXU_PRINTF(5, 6);

static int inv_status(enum mxu_inv_error e)
{
    switch (e) {
    case MXU_INV_OK:
        return 200;
    case MXU_INV_TIMEOUT:
        return 504;
    case MXU_INV_QUEUE_FULL:
        return 429;
    case MXU_INV_NO_CAPACITY:
    case MXU_INV_QUEUE_TIMEOUT:
    case MXU_INV_SHUTTING_DOWN:
        return 503;
    default:
        return 502;
    }
}

static void call_finish_fail(call_task *k, int status, const char *code, const char *fmt, ...)
    MXU_PRINTF(4, 5);
/* The step failed for good. Past the run's (or nested service's) deadline
 * that is a deadline_exceeded whatever the last attempt said. */
static void call_finish_fail(call_task *k, int status, const char *code, const char *fmt, ...)
{
    mxu_compose_run *r = k->t.r;
    active_remove(k);
    outcome o;
    va_list ap;
    va_start(ap, fmt);
    mxu_buf b = {0};
    mxu_buf_vprintf(&b, fmt, ap);
    va_end(ap);
    if (k->br && k->trial) /* a trial that ended without an answer failed */
        mxu_breaker_report(k->br, false, true, run_now(r), k->e->breaker_failures,
                           k->e->breaker_open_ms);
    k->trial = false;
    char *stepid = mxu_asprintf("%s%s", k->sc->prefix, k->st->id ? k->st->id : "");
    if (run_now(r) >= k->sc->deadline && strcmp(code, "forbidden") != 0)
        fail_outcome(&o, 504, "deadline_exceeded", stepid, k->fail_status,
                     "the service's deadline passed in step %s (%s)", stepid, b.data ? b.data : "");
    else
        fail_outcome(&o, status, code, stepid, k->fail_status, "step %s: %s", stepid,
                     b.data ? b.data : "");
    free(stepid);
    mxu_buf_free(&b);
    row_end(r, k->row, &o);
    payload_free(&k->in);
    task_finish(&k->t, &o);
}

static void call_finish_ok(call_task *k, outcome *o)
{
    active_remove(k);
    snprintf(k->row->fn, sizeof(k->row->fn), "%s", k->target_text);
    row_end(k->t.r, k->row, o);
    payload_free(&k->in);
    task_finish(&k->t, o);
}

/* Resolve a reference in the scope's tenant and check the link with the
 * policy. -1 after finishing the step (not found: fails like an error;
 * denied: 403, no retry, no fallback). */
static int call_target(call_task *k, const mxu_fnref *ref)
{
    mxu_compose_run *r = k->t.r;
    mxu_compose *c = r->c;
    const mxu_fn_version *svc = k->sc->svc;
    const char *tenant = mxu_fn_version_tenant(svc);
    if (k->target) {
        mxu_fn_version_unref(k->target);
        k->target = NULL;
    }
    mxu_err err;
    mxu_fn_version *v = mxu_registry_resolve(c->cfg.reg, tenant, ref->name, ref->ref, &err);
    if (v == NULL) {
        k->fail_status = 404;
        call_finish_fail(k, 502, "step_failed", "%s: %s", ref->text, err.msg);
        return -1;
    }
    k->target = mxu_fn_version_ref(v);
    snprintf(k->target_text, sizeof(k->target_text), "%s@%u", v->function, v->version);
    mxu_policy *pol = c->cfg.policy;
    if (pol && mxu_policy_has_link_rules(pol, MXU_LINK_UNIT)) {
        /* A step is a unit -> unit link from the service to its callee,
         * checked like an svc: call (same tenant: open unless a rule says
         * otherwise). */
        mxu_policy_link l = {.kind = MXU_LINK_UNIT,
                             .from_tenant = tenant,
                             .from_fn = svc->function,
                             .to_tenant = tenant,
                             .to_name = v->function};
        mxu_err perr;
        if (mxu_policy_link_check(pol, &l, true, NULL, &perr) < 0) {
            _cleanup_free_ char *why =
                mxu_asprintf("step %s -> %s: %s", k->st->id, ref->text, perr.msg);
            mxu_sched_log_denial(c->cfg.sched, tenant, svc->function, svc->version, r->id, why);
            mxu_sched_record_call_rejected(c->cfg.sched, v, 403, "forbidden", r->id, svc);
            k->fail_status = 403;
            call_finish_fail(k, 403, "forbidden", "%s: %s", ref->text, perr.msg);
            return -1;
        }
    }
    return 0;
}

/* The step's call failed (after its retries, or at once when its breaker
 * is open); try its fallback, or fail it. A call that failed counts once for
 * the breaker, whatever its attempts. */
static void call_give_up(call_task *k, const char *why, int status, const char *code, bool counts)
{
    if (counts && k->br && !k->in_fallback)
        mxu_breaker_report(k->br, false, k->trial, run_now(k->t.r), k->e->breaker_failures,
                           k->e->breaker_open_ms);
    k->trial = false;
    if (!k->in_fallback && k->e->fallback) {
        k->in_fallback = true;
        row_set(&k->row->why, "fallback: %s", why);
        row_set(&k->row->route, "%s", k->e->fallback->text);
        if (call_target(k, k->e->fallback) < 0)
            return;
        call_attempt(k);
        return;
    }
    call_finish_fail(k, status, code, "%s", k->fail_msg ? k->fail_msg : why);
}

static void on_backoff(uv_timer_t *t)
{
    backoff_timer *bt = (backoff_timer *)t;
    call_task *k = bt->owner;
    uv_close((uv_handle_t *)t, timer_closed);
    if (k == NULL)
        return;
    k->timer = NULL;
    mxu_compose_run *r = k->t.r;
    run_pin(r);
    if (!task_dead(&k->t))
        call_attempt(k);
    run_unpin(r);
}

/* An attempt failed (cls: which MXU_RETRY_* kind; 0 = never retried).
 * Retried while retry_on, retries and the deadline allow; then the
 * fallback, or the step fails. */
static void call_failed(call_task *k, int status, unsigned cls, const char *code, const char *fmt,
                        ...)
{
    mxu_compose_run *r = k->t.r;
    const mxu_edge *e = k->e;
    uint64_t now = run_now(r);
    va_list ap;
    va_start(ap, fmt);
    mxu_buf b = {0};
    mxu_buf_vprintf(&b, fmt, ap);
    va_end(ap);
    free(k->fail_msg);
    k->fail_msg = b.data ? b.data : mxu_strdup("");
    k->fail_status = status;
    if (k->row->ncalls > k->call_ix && k->row->calls[k->call_ix].error == NULL) {
        trace_call *tc = &k->row->calls[k->call_ix];
        uint64_t at = run_us(r);
        tc->dur_us = at > tc->start_us ? at - tc->start_us : 0;
        tc->status = status;
        tc->error = mxu_asprintf("%s: %s", code, k->fail_msg);
    }
    k->failures++;
    if (k->in_fallback) {
        call_finish_fail(k, 502, "step_failed", "fallback %s failed: %s", k->target_text,
                         k->fail_msg);
        return;
    }
    if (cls && (cls & e->retry_on) && k->attempts <= e->retries && now < k->sc->deadline) {
        /* Backoff: doubling, capped, plus up to a quarter more at random so
         * that runs failing together do not retry together. Never past
         * the deadline: then it is not worth a try. */
        uint64_t base = e->backoff_ms;
        for (uint32_t i = 1; i < k->attempts && base < e->backoff_max_ms; i++)
            base *= 2;
        if (e->backoff_max_ms && base > e->backoff_max_ms)
            base = e->backoff_max_ms;
        uint64_t wait = base + (base >= 4 ? compose_rand(r->c) % (base / 4 + 1) : 0);
        if (now + wait < k->sc->deadline) {
            backoff_timer *bt = mxu_calloc(1, sizeof(*bt));
            uv_timer_init(r->c->loop, &bt->t);
            bt->owner = k;
            k->timer = bt;
            active_add(k);
            uv_timer_start(&bt->t, on_backoff, wait, 0);
            return;
        }
    }
    char why[96];
    snprintf(why, sizeof(why), "after %u failure%s", k->failures, k->failures == 1 ? "" : "s");
    call_give_up(k, why, 502, "step_failed", true);
}

static void call_succeeded(call_task *k, payload *p, enum out_kind kind)
{
    mxu_compose_run *r = k->t.r;
    if (k->row->ncalls > k->call_ix) {
        trace_call *tc = &k->row->calls[k->call_ix];
        uint64_t at = run_us(r);
        tc->dur_us = at > tc->start_us ? at - tc->start_us : 0;
        tc->status = p->status;
    }
    if (k->br && !k->in_fallback)
        mxu_breaker_report(k->br, true, k->trial, run_now(r), k->e->breaker_failures,
                           k->e->breaker_open_ms);
    k->trial = false;
    outcome o = {.kind = kind};
    payload_move(&o.p, p);
    call_finish_ok(k, &o);
}

static void on_call_result(void *ud, mxu_invoke_res *res)
{
    call_task *k = ud;
    mxu_compose_run *r = k->t.r;
    mxu_compose *c = r->c;
    run_pin(r);
    k->inv = NULL;
    k->answered = true;
    mxu_sched_record_call(c->cfg.sched, res, k->bytes_in, r->id, k->sc->svc);
    attempt_release(k);
    if (task_dead(&k->t)) {
        run_unpin(r);
        return;
    }
    active_remove(k);
    if (res->error != MXU_INV_OK) {
        unsigned cls = res->error == MXU_INV_QUEUE_FULL ? MXU_RETRY_429 : MXU_RETRY_ERROR;
        call_failed(k, inv_status(res->error), cls, mxu_inv_error_code(res->error), "%s: %s",
                    k->target_text, res->message ? res->message : "");
        run_unpin(r);
        return;
    }
    int st = res->status;
    if (st >= 500 || (st == 429 && (k->e->retry_on & MXU_RETRY_429))) {
        call_failed(k, st, st == 429 ? MXU_RETRY_429 : MXU_RETRY_5XX, "step_failed",
                    "%s answered %d", k->target_text, st);
        run_unpin(r);
        return;
    }
    payload p = {.status = st};
    p.body = res->body;
    res->body = (mxu_buf){0};
    mxu_header_list it = res->headers;
    mxu_slice n, v;
    while (mxu_wire_next_header(&it, &n, &v))
        hdr_add(&p, n, v);
    call_succeeded(k, &p, st >= 400 ? OUT_END : OUT_OK);
    run_unpin(r);
}

static void body_start(task *parent, scope *sc, const mxu_service *svc, payload *in);

/* A nested service's body answered: its outcome is the attempt's. */
static void call_child_done(task *self, task *child, outcome *o)
{
    MXU_UNUSED(child);
    call_task *k = (call_task *)self;
    k->sub = NULL;
    active_remove(k);
    if (o->kind != OUT_FAIL) {
        enum out_kind kind = o->kind;
        payload p;
        payload_move(&p, &o->p);
        outcome_free(o);
        call_succeeded(k, &p, kind);
        return;
    }
    unsigned cls = o->status == 403 ? 0 : o->status >= 500 ? MXU_RETRY_5XX : MXU_RETRY_ERROR;
    call_failed(k, o->status, cls, o->code, "%s: %s", k->target_text, o->message);
    outcome_free(o);
}

/* One call of the current target (a route, or the fallback). */
static void call_attempt(call_task *k)
{
    mxu_compose_run *r = k->t.r;
    mxu_compose *c = r->c;
    const mxu_edge *e = k->e;
    const mxu_fn_version *svc = k->sc->svc;
    const char *tenant = mxu_fn_version_tenant(svc);
    uint64_t now = run_now(r);
    if (now >= k->sc->deadline) {
        call_finish_fail(k, 504, "deadline_exceeded", "%s", k->fail_msg ? k->fail_msg : "");
        return;
    }
    k->attempts += !k->in_fallback;
    trace_row *row = k->row;
    if (row->ncalls == row->cap) {
        row->cap = row->cap ? row->cap * 2 : 4;
        row->calls = mxu_realloc(row->calls, row->cap * sizeof(*row->calls));
    }
    k->call_ix = row->ncalls++;
    row->calls[k->call_ix] = (trace_call){.start_us = run_us(r), .fallback = k->in_fallback};
    snprintf(row->calls[k->call_ix].fn, sizeof(row->calls[k->call_ix].fn), "%s", k->target_text);

    /* The link's shaping (per service and step, across runs) and the
     * tenant's quota: a refusal is a 429 of the link, retried as such. */
    mxu_policy *pol = c->cfg.policy;
    mxu_limits lim = {.rate = e->rate,
                      .period_ms = e->rate_period_ms,
                      .burst = e->burst,
                      .concurrency = e->max_concurrency};
    mxu_shape_denial d;
    if (pol && mxu_limits_any(&lim) &&
        mxu_shape_admit_link(pol, tenant, svc->function, k->st->id, &lim, mxu_now_ns(), &k->ticket,
                             &d) < 0) {
        mxu_sched_record_call_rejected(c->cfg.sched, k->target, 429, d.code, r->id, svc);
        call_failed(k, 429, MXU_RETRY_429, d.code, "%s", d.message);
        return;
    }
    if (pol && c->cfg.meter && !k->target->manifest->service) {
        if (mxu_quota_reserve(pol, mxu_fn_version_tenant(k->target), mxu_wall_ms(), &d) < 0) {
            mxu_shape_release(&k->ticket);
            mxu_sched_record_call_rejected(c->cfg.sched, k->target, 429, d.code, r->id, svc);
            call_failed(k, 429, MXU_RETRY_429, d.code, "%s", d.message);
            return;
        }
        k->quota = true;
    }

    /* The input's body: moved into the last attempt that may need it,
     * copied before. Its headers (its Content-Type) stay here. */
    bool last = k->in_fallback || (k->attempts > e->retries && e->fallback == NULL);
    mxu_buf body = {0};
    if (last) {
        body = k->in.body;
        k->in.body = (mxu_buf){0};
    } else if (k->in.body.len) {
        mxu_buf_append(&body, k->in.body.data, k->in.body.len);
    }
    bool orig = k->in.orig;
    uint64_t deadline = k->sc->deadline;
    if (e->timeout_ms && now + e->timeout_ms < deadline)
        deadline = now + e->timeout_ms;

    if (k->target->manifest->service) {
        /* Another service: its steps run in this run, in a scope of their
         * own (its tenant is the same; its deadline never past ours). */
        if (k->sc->depth + 1 > c->cfg.max_depth) {
            mxu_buf_free(&body);
            call_failed(k, 502, 0, "step_failed",
                        "call depth limit of %u reached calling service %s (a cycle through "
                        "an alias?)",
                        c->cfg.max_depth, k->target_text);
            return;
        }
        scope *sub = task_new(r, sizeof(*sub), NULL, NULL, NULL);
        sub->svc = mxu_fn_version_ref(k->target);
        sub->prefix = mxu_asprintf("%s%s/", k->sc->prefix, k->st->id);
        uint64_t own = now + k->target->manifest->timeout_ms;
        sub->deadline = MXU_MIN(deadline, own);
        sub->depth = k->sc->depth + 1;
        k->sub = sub;
        /* Active while it runs: when the run is cancelled, reap() gives
         * back this call's breaker trial (its own calls are reaped apart). */
        active_add(k);
        /* a nested service's first step gets what this step got */
        payload in = {.status = k->in.status, .orig = orig, .body = body};
        if (k->in.hdrs.len)
            mxu_buf_append(&in.hdrs, k->in.hdrs.data, k->in.hdrs.len);
        in.nhdrs = k->in.nhdrs;
        body_start(&k->t, sub, k->target->manifest->service, &in);
        return;
    }

    /* Headers: the service's request headers, but its Content-Type when
     * the body is a step's answer (that answer's instead), and a
     * traceparent of the call's own. */
    uint32_t n = 0;
    free(k->hn);
    free(k->hv);
    k->hn = mxu_calloc(r->nhdr + 2, sizeof(mxu_slice));
    k->hv = mxu_calloc(r->nhdr + 2, sizeof(mxu_slice));
    for (uint32_t i = 0; i < r->nhdr; i++) {
        if (slice_is(r->hn[i], "traceparent") || (!orig && slice_is(r->hn[i], "content-type")))
            continue;
        k->hn[n] = r->hn[i];
        k->hv[n] = r->hv[i];
        n++;
    }
    mxu_slice ct;
    if (!orig && payload_ctype(&k->in, &ct)) {
        k->hn[n] = (mxu_slice){"Content-Type", 12};
        k->hv[n] = ct;
        n++;
    }
    mxu_traceparent tp = r->tp;
    mxu_traceparent_child(&tp, compose_rand(c));
    mxu_traceparent_format(&tp, k->tp, sizeof(k->tp));
    k->hn[n] = (mxu_slice){"traceparent", 11};
    k->hv[n] = (mxu_slice){k->tp, 55};
    n++;

    mxu_invoke_req req = {
        .method = orig ? r->method : (mxu_slice){"POST", 4},
        .path = orig ? r->path : (mxu_slice){"/", 1},
        .query = orig ? r->query : (mxu_slice){"", 0},
        .hdr_names = k->hn,
        .hdr_values = k->hv,
        .nhdr = n,
        .deadline_ms = deadline,
        .depth = k->sc->depth + 1,
        .priority = r->prio,
        .continuation = true, /* the run was taken in: its steps drain with it */
    };
    req.bytes_in = body.len;
    for (uint32_t i = 0; i < n; i++)
        req.bytes_in += (uint64_t)k->hn[i].len + k->hv[i].len + 4;
    k->bytes_in = req.bytes_in;
    req.body = body;
    k->answered = false;
    uint32_t attempt = ++k->attempt;
    active_add(k);
    mxu_invocation *inv = mxu_sched_invoke(c->cfg.sched, k->target, &req, on_call_result, k);
    mxu_buf_free(&req.body);
    /* Answered inside the call, its callback may have started the next
     * attempt (a fallback) whose invocation is k->inv now: keep that one. */
    if (!k->answered && k->attempt == attempt) {
        k->inv = inv;
        /* Something answered inside the call (another branch, shed from
         * the queue for this one) may have cancelled this step already. */
        if (task_dead(&k->t))
            reap(r);
    }
}

/* The route a call step takes: the first header route whose header has
 * its value, else a weighted draw among the weighted routes. */
static const mxu_route *pick_route(call_task *k)
{
    mxu_compose_run *r = k->t.r;
    const mxu_edge *e = k->e;
    uint32_t total = 0, nw = 0;
    for (size_t i = 0; i < e->nroutes; i++) {
        const mxu_route *rt = &e->routes[i];
        if (rt->header) {
            mxu_slice v;
            if (req_header(r, rt->header, &v) && rt->equals && strlen(rt->equals) == v.len &&
                memcmp(rt->equals, v.ptr, v.len) == 0) {
                row_set(&k->row->why, "header %s=%s", rt->header, rt->equals);
                return rt;
            }
            continue;
        }
        total += rt->weight;
        nw++;
    }
    if (nw == 0)
        return NULL;
    if (nw == 1) {
        row_set(&k->row->why, e->nroutes == 1 ? "only route" : "only weighted route");
        for (size_t i = 0; i < e->nroutes; i++) {
            if (e->routes[i].header == NULL)
                return &e->routes[i];
        }
    }
    uint32_t weights[64];
    const mxu_route *which[64];
    size_t m = 0;
    for (size_t i = 0; i < e->nroutes && m < MXU_ARRAY_LEN(weights); i++) {
        if (e->routes[i].header == NULL) {
            weights[m] = e->routes[i].weight;
            which[m++] = &e->routes[i];
        }
    }
    if (total == 0) {
        row_set(&k->row->why, "first weighted route (all weights 0)");
        return which[0];
    }
    uint64_t draw = compose_rand(r->c) % total;
    size_t ix = mxu_weighted_pick(weights, m, draw);
    row_set(&k->row->why, "weight %u/%u (draw %llu)", weights[ix], total, (unsigned long long)draw);
    return which[ix];
}

static task *call_start(task *parent, scope *sc, const mxu_step *st, payload *in, int slot,
                        const char *kind)
{
    mxu_compose_run *r = parent ? parent->r : sc->t.r;
    call_task *k = task_new(r, sizeof(*k), parent, call_child_done, call_cleanup);
    k->t.slot = slot;
    k->sc = sc;
    k->st = st;
    k->e = &st->call;
    k->kind = kind;
    payload_move(&k->in, in);
    k->row = row_new(r, sc, st->id, kind);
    if (run_now(r) >= sc->deadline) {
        call_finish_fail(k, 504, "deadline_exceeded", "not started");
        return &k->t;
    }
    const mxu_route *rt = pick_route(k);
    if (rt == NULL) {
        row_set(&k->row->why, "no header route matched and there is no weighted route");
        call_finish_fail(k, 502, "step_failed", "no route matches the request");
        return &k->t;
    }
    row_set(&k->row->route, "%s", rt->to.text);
    if (call_target(k, &rt->to) < 0)
        return &k->t;
    if (k->e->breaker_failures > 0) {
        const mxu_fn_version *svc = sc->svc;
        k->br = compose_breaker(r->c, mxu_fn_version_tenant(svc), svc->function, st->id);
        if (!mxu_breaker_allow(k->br, run_now(r), &k->trial)) {
            k->fail_msg = mxu_asprintf("circuit open after %u consecutive failed calls: %s "
                                       "not called",
                                       k->e->breaker_failures, k->target_text);
            k->fail_status = 503;
            row_set(&k->row->why, "breaker open");
            call_give_up(k, "breaker open", 503, "circuit_open", false);
            return &k->t;
        }
        if (k->trial)
            row_set(&k->row->why, "%s; breaker half-open: trial call",
                    k->row->why ? k->row->why : "");
    }
    call_attempt(k);
    return &k->t;
}

/* ---- sequences, parallels, switches, bodies ---- */

static task *step_start(task *parent, scope *sc, const mxu_step *st, payload *in, int slot);

typedef struct seq_task {
    task t;
    scope *sc;
    const mxu_steps *steps;
    size_t i;
    trace_row *row; /* a group's; NULL for other sequences */
} seq_task;

static void seq_next(seq_task *s, payload *in)
{
    if (s->i >= s->steps->n) {
        outcome o = {.kind = OUT_OK};
        payload_move(&o.p, in);
        row_end(s->t.r, s->row, &o);
        task_finish(&s->t, &o);
        return;
    }
    const mxu_step *st = &s->steps->v[s->i++];
    step_start(&s->t, s->sc, st, in, 0);
}

static void seq_child_done(task *self, task *child, outcome *o)
{
    MXU_UNUSED(child);
    seq_task *s = (seq_task *)self;
    /* A 4xx ends the run, unless the next step is a switch on status. */
    if (o->kind == OUT_END && s->i < s->steps->n && s->steps->v[s->i].kind == MXU_STEP_SWITCH &&
        s->steps->v[s->i].on == MXU_SWITCH_STATUS)
        o->kind = OUT_OK;
    if (o->kind != OUT_OK) {
        row_end(s->t.r, s->row, o);
        task_finish(&s->t, o);
        return;
    }
    payload p;
    payload_move(&p, &o->p);
    outcome_free(o);
    seq_next(s, &p);
}

static task *seq_start(task *parent, scope *sc, const mxu_steps *steps, payload *in, int slot,
                       trace_row *row)
{
    seq_task *s = task_new(parent->r, sizeof(*s), parent, seq_child_done, NULL);
    s->t.slot = slot;
    s->sc = sc;
    s->steps = steps;
    s->row = row;
    payload p;
    payload_move(&p, in);
    seq_next(s, &p);
    return &s->t;
}

typedef struct par_task {
    task t;
    scope *sc;
    const mxu_step *st;
    trace_row *row;
    payload *outs;
    task **kids;
    size_t nkids, ngot;
    size_t bytes; /* of the branches' answers so far */
    bool starting;
    bool failed;
    outcome fail;
} par_task;

static void par_cleanup(task *t)
{
    par_task *p = (par_task *)t;
    for (size_t i = 0; p->outs && i < p->st->branches.n; i++)
        payload_free(&p->outs[i]);
    free(p->outs);
    free(p->kids);
    outcome_free(&p->fail);
}

/* A branch's answer inside the join: as JSON when it is JSON, else as a
 * JSON string (bytes that are not UTF-8 read as Latin-1). */
static void embed(mxu_buf *out, const mxu_buf *body)
{
    const char *data = body->data ? body->data : "";
    json_t *j = body->len ? json_loadb(data, body->len, JSON_DECODE_ANY, NULL) : NULL;
    if (j) {
        json_decref(j);
        mxu_buf_append(out, data, body->len);
        return;
    }
    if (mxu_utf8_valid(data, body->len)) {
        json_t *s = json_stringn(data, body->len);
        char *t = s ? json_dumps(s, JSON_ENCODE_ANY) : NULL;
        json_decref(s);
        if (t) {
            mxu_buf_puts(out, t);
            free(t);
            return;
        }
    }
    mxu_buf_puts(out, "\"");
    for (size_t i = 0; i < body->len; i++) {
        unsigned char ch = (unsigned char)data[i];
        if (ch == '"' || ch == '\\')
            mxu_buf_printf(out, "\\%c", ch);
        else if (ch < 0x20 || ch >= 0x7f)
            mxu_buf_printf(out, "\\u%04x", ch);
        else
            mxu_buf_append(out, &data[i], 1);
    }
    mxu_buf_puts(out, "\"");
}

/* The parallel step fails with `o` (a branch's failure, or its own): the
 * other branches are cancelled. */
static void par_fail(par_task *p, outcome *o)
{
    p->failed = true;
    p->fail = *o;
    *o = (outcome){0};
    for (size_t i = 0; i < p->nkids; i++) {
        if (p->kids[i] && !p->kids[i]->finished)
            p->kids[i]->cancelled = true;
    }
    reap(p->t.r);
}

/* A join is an answer like a function's: bounded by the same limit. */
static bool par_too_big(par_task *p, size_t len)
{
    size_t max = p->t.r->c->cfg.max_response_bytes;
    if (len <= max)
        return false;
    char got[32], lim[32];
    mxu_format_size(len, got, sizeof(got));
    mxu_format_size(max, lim, sizeof(lim));
    char *stepid = mxu_asprintf("%s%s", p->sc->prefix, p->st->id ? p->st->id : "");
    outcome o;
    fail_outcome(&o, 502, "step_failed", stepid, 0,
                 "step %s: the join of its branches' answers is %s%s, more than the %s "
                 "response limit",
                 stepid, p->ngot < p->st->branches.n ? "over " : "", got, lim);
    free(stepid);
    par_fail(p, &o);
    return true;
}

static void par_check(par_task *p)
{
    if (p->t.finished)
        return;
    if (p->failed) {
        outcome o = p->fail;
        p->fail = (outcome){0};
        row_end(p->t.r, p->row, &o);
        task_finish(&p->t, &o);
        return;
    }
    size_t n = p->st->branches.n;
    if (p->ngot < n)
        return;
    outcome o = {.kind = OUT_OK};
    o.p.status = 200;
    mxu_buf *b = &o.p.body;
    bool obj = p->st->join == MXU_JOIN_OBJECT;
    mxu_buf_puts(b, obj ? "{" : "[");
    for (size_t i = 0; i < n; i++) {
        if (i)
            mxu_buf_puts(b, ",");
        if (obj) {
            json_t *k = json_string(p->st->branches.v[i].id ? p->st->branches.v[i].id : "");
            char *ks = json_dumps(k, JSON_ENCODE_ANY);
            json_decref(k);
            mxu_buf_puts(b, ks ? ks : "\"\"");
            mxu_buf_puts(b, ":");
            free(ks);
        }
        embed(b, &p->outs[i].body);
        payload_free(&p->outs[i]);
        if (b->len > p->t.r->c->cfg.max_response_bytes) {
            size_t len = b->len;
            outcome_free(&o);
            par_too_big(p, len);
            par_check(p);
            return;
        }
    }
    mxu_buf_puts(b, obj ? "}" : "]");
    hdr_add_str(&o.p, "Content-Type", "application/json");
    row_end(p->t.r, p->row, &o);
    task_finish(&p->t, &o);
}

static void par_child_done(task *self, task *child, outcome *o)
{
    par_task *p = (par_task *)self;
    if (p->failed || p->t.finished) {
        outcome_free(o);
        return;
    }
    if (o->kind == OUT_OK) {
        p->bytes += o->p.body.len;
        payload_move(&p->outs[child->slot], &o->p);
        outcome_free(o);
        p->ngot++;
        par_too_big(p, p->bytes);
    } else {
        /* A failed branch (or one that ended the run with a 4xx) decides:
         * the others are cancelled. */
        par_fail(p, o);
    }
    if (!p->starting)
        par_check(p);
}

static task *par_start(task *parent, scope *sc, const mxu_step *st, payload *in, int slot)
{
    mxu_compose_run *r = parent->r;
    par_task *p = task_new(r, sizeof(*p), parent, par_child_done, par_cleanup);
    p->t.slot = slot;
    p->sc = sc;
    p->st = st;
    p->row = row_new(r, sc, st->id, "parallel");
    size_t n = st->branches.n;
    p->outs = mxu_calloc(n + 1, sizeof(*p->outs));
    p->kids = mxu_calloc(n + 1, sizeof(*p->kids));
    row_set(&p->row->why, "%zu branches, join %s", n,
            st->join == MXU_JOIN_OBJECT ? "object" : "array");
    p->starting = true;
    for (size_t i = 0; i < n && !p->failed; i++) {
        payload b;
        if (i + 1 == n)
            payload_move(&b, in);
        else
            payload_copy(&b, in);
        p->nkids = i + 1;
        p->kids[i] = step_start(&p->t, sc, &st->branches.v[i], &b, (int)i);
    }
    payload_free(in);
    p->starting = false;
    par_check(p);
    return &p->t;
}

typedef struct switch_task {
    task t;
    trace_row *row;
} switch_task;

static void switch_child_done(task *self, task *child, outcome *o)
{
    MXU_UNUSED(child);
    switch_task *s = (switch_task *)self;
    row_end(s->t.r, s->row, o);
    task_finish(&s->t, o);
}

static bool case_matches(const mxu_case *cs, enum mxu_switch_on on, const char *text, int status)
{
    if (on == MXU_SWITCH_STATUS) {
        for (size_t i = 0; i < cs->nstatus; i++) {
            if (status >= cs->status[i][0] && status <= cs->status[i][1])
                return true;
        }
        return false;
    }
    if (text == NULL)
        return false;
    for (size_t i = 0; i < cs->nequals; i++) {
        if (strcmp(cs->equals[i], text) == 0)
            return true;
    }
    return false;
}

static task *switch_start(task *parent, scope *sc, const mxu_step *st, payload *in, int slot)
{
    mxu_compose_run *r = parent->r;
    switch_task *s = task_new(r, sizeof(*s), parent, switch_child_done, NULL);
    s->t.slot = slot;
    s->row = row_new(r, sc, st->id, "switch");
    /* The selector, as text. */
    _cleanup_free_ char *text = NULL;
    const char *what = "status";
    if (st->on == MXU_SWITCH_JSON) {
        what = "json";
        json_t *doc =
            in->body.len ? json_loadb(in->body.data, in->body.len, JSON_DECODE_ANY, NULL) : NULL;
        text = mxu_json_case_text(mxu_json_pointer(doc, st->on_arg ? st->on_arg : ""));
        json_decref(doc);
    } else if (st->on == MXU_SWITCH_HEADER) {
        what = "header";
        mxu_slice v;
        if (req_header(r, st->on_arg ? st->on_arg : "", &v))
            text = mxu_strndup(v.ptr, v.len);
    }
    char sel[160];
    if (st->on == MXU_SWITCH_STATUS)
        snprintf(sel, sizeof(sel), "status %d", in->status);
    else
        snprintf(sel, sizeof(sel), "%s %s %s%.80s", what, st->on_arg ? st->on_arg : "",
                 text ? "= " : "", text ? text : "is absent");
    const mxu_steps *pick = NULL;
    for (size_t i = 0; i < st->ncases && pick == NULL; i++) {
        if (case_matches(&st->cases[i], st->on, text, in->status)) {
            pick = &st->cases[i].steps;
            row_set(&s->row->route, "case %zu", i + 1);
            if (st->on != MXU_SWITCH_STATUS && text)
                row_set(&s->row->route, "case %.80s", text);
        }
    }
    if (pick == NULL && st->has_default) {
        pick = &st->otherwise;
        row_set(&s->row->route, "default");
    }
    if (pick == NULL)
        row_set(&s->row->route, "pass-through");
    row_set(&s->row->why, "%s", sel);
    if (pick == NULL || pick->n == 0) {
        outcome o = {.kind = OUT_OK};
        payload_move(&o.p, in);
        row_end(r, s->row, &o);
        task_finish(&s->t, &o);
        return &s->t;
    }
    seq_start(&s->t, sc, pick, in, 0, NULL);
    return &s->t;
}

static task *step_start(task *parent, scope *sc, const mxu_step *st, payload *in, int slot)
{
    mxu_compose_run *r = parent->r;
    if (r->nrows >= r->c->cfg.max_run_steps) {
        /* Services calling services multiply their steps (1,000 calling
         * 1,000 ...): a run, its tasks and its trace are bounded. */
        task *t = task_new(r, sizeof(*t), parent, NULL, NULL);
        t->slot = slot;
        payload_free(in);
        char *stepid = mxu_asprintf("%s%s", sc->prefix, st->id ? st->id : "");
        outcome o;
        fail_outcome(&o, 502, "step_failed", stepid, 0,
                     "step %s: not started: the run started %zu steps, the most one run may "
                     "(services it calls count)",
                     stepid, r->nrows);
        free(stepid);
        task_finish(t, &o);
        return t;
    }
    switch (st->kind) {
    case MXU_STEP_CALL:
        return call_start(parent, sc, st, in, slot, "call");
    case MXU_STEP_PARALLEL:
        return par_start(parent, sc, st, in, slot);
    case MXU_STEP_SWITCH:
        return switch_start(parent, sc, st, in, slot);
    case MXU_STEP_GROUP:
        break;
    }
    trace_row *row = row_new(r, sc, st->id, "group");
    return seq_start(parent, sc, &st->steps, in, slot, row);
}

/* A service's steps, then its on_error handler if they failed. */
typedef struct body_task {
    task t;
    scope *sc;
    const mxu_service *svc;
    bool in_handler;
    outcome fail;
    mxu_step hstep; /* the handler as a call step of its own */
    mxu_route hroute;
} body_task;

static void body_cleanup(task *t)
{
    outcome_free(&((body_task *)t)->fail);
}

static void body_child_done(task *self, task *child, outcome *o)
{
    MXU_UNUSED(child);
    body_task *b = (body_task *)self;
    mxu_compose_run *r = self->r;
    if (b->in_handler) {
        if (o->kind != OUT_FAIL) { /* the handler's answer is the service's */
            task_finish(self, o);
            return;
        }
        /* The handler failed too: the original failure, saying so. */
        outcome f = b->fail;
        b->fail = (outcome){0};
        char *m = mxu_asprintf("%s (and on_error handler %s failed: %s)", f.message,
                               b->svc->on_error->text, o->message);
        free(f.message);
        f.message = m;
        outcome_free(o);
        task_finish(self, &f);
        return;
    }
    if (o->kind != OUT_FAIL || b->svc->on_error == NULL) {
        task_finish(self, o);
        return;
    }
    b->fail = *o;
    *o = (outcome){0};
    b->in_handler = true;
    json_t *j =
        json_pack("{s:s, s:i, s:s, s:s, s:s}", "step", b->fail.step, "status", b->fail.status,
                  "error", b->fail.code, "message", b->fail.message, "trace_id", r->trace_hex);
    char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    payload in = {.status = b->fail.status};
    mxu_buf_puts(&in.body, text ? text : "{}");
    free(text);
    hdr_add_str(&in, "Content-Type", "application/json");
    b->hroute = (mxu_route){.to = *b->svc->on_error, .weight = 1};
    b->hstep = (mxu_step){.kind = MXU_STEP_CALL, .id = "on_error", .line = b->svc->on_error->line};
    b->hstep.call.routes = &b->hroute;
    b->hstep.call.nroutes = 1;
    call_start(self, b->sc, &b->hstep, &in, 0, "on_error");
}

static void scope_cleanup(task *t)
{
    scope *sc = (scope *)t;
    if (sc->svc)
        mxu_fn_version_unref(sc->svc);
    free(sc->prefix);
}

static void body_start(task *parent, scope *sc, const mxu_service *svc, payload *in)
{
    sc->t.cleanup = scope_cleanup;
    body_task *b = task_new(sc->t.r, sizeof(*b), parent, body_child_done, body_cleanup);
    b->sc = sc;
    b->svc = svc;
    seq_start(&b->t, sc, &svc->steps, in, 0, NULL);
}

/* ---- answers and traces ---- */

/* A JSON string of `s`: quotes, backslashes and control bytes escaped;
 * text that is not UTF-8 (a header's value, say) has its bytes >= 0x80
 * escaped as \u00XX, so the trace is always valid JSON. */
static void json_str(mxu_buf *b, const char *s)
{
    if (s == NULL)
        s = "";
    size_t n = strlen(s);
    bool utf8 = mxu_utf8_valid(s, n);
    mxu_buf_reserve(b, n + 2);
    mxu_buf_append(b, "\"", 1);
    size_t run = 0; /* start of the bytes not yet copied, copied in one append */
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch >= 0x20 && ch != '"' && ch != '\\' && ch != 0x7f && (utf8 || ch < 0x80))
            continue;
        mxu_buf_append(b, s + run, i - run);
        run = i + 1;
        if (ch == '"' || ch == '\\')
            mxu_buf_printf(b, "\\%c", ch);
        else
            mxu_buf_printf(b, "\\u%04x", ch);
    }
    mxu_buf_append(b, s + run, n - run);
    mxu_buf_append(b, "\"", 1);
}

static void json_field(mxu_buf *b, const char *name, const char *value)
{
    mxu_buf_printf(b, ",\"%s\":", name);
    json_str(b, value);
}

/* The run's trace, written as JSON text: it is done for every run, and a
 * tree built and then dumped costs several times the text. */
static void record_trace(mxu_compose_run *r, const outcome *o, int status, uint64_t dur_us)
{
    mxu_compose *c = r->c;
    char start[40];
    mxu_format_time_ms(r->start_wall_ms, start, sizeof(start));
    mxu_buf b = {0};
    mxu_buf_reserve(&b, 256 + r->nrows * 256);
    mxu_buf_printf(&b, "{\"run\":\"%016llx\",\"trace\":\"%s\"", (unsigned long long)r->id,
                   r->trace_hex);
    json_field(&b, "tenant", mxu_fn_version_tenant(r->v));
    json_field(&b, "service", r->v->function);
    mxu_buf_printf(&b,
                   ",\"version\":%u,\"start\":\"%s\",\"duration_us\":%llu,\"status\":%d,"
                   "\"steps\":[",
                   r->v->version, start, (unsigned long long)dur_us, status);
    for (size_t i = 0; i < r->nrows; i++) {
        trace_row *row = r->rows[i];
        mxu_buf_puts(&b, i ? ",{\"id\":" : "{\"id\":");
        json_str(&b, row->id);
        mxu_buf_printf(&b, ",\"kind\":\"%s\",\"start_us\":%llu,\"duration_us\":%llu,\"status\":%d",
                       row->kind, (unsigned long long)row->start_us,
                       (unsigned long long)row->dur_us, row->status);
        if (row->route)
            json_field(&b, "route", row->route);
        if (row->why)
            json_field(&b, "why", row->why);
        if (row->fn[0])
            json_field(&b, "function", row->fn);
        if (row->error)
            json_field(&b, "error", row->error);
        if (row->open)
            mxu_buf_puts(&b, ",\"cancelled\":true");
        if (strcmp(row->kind, "call") == 0 || strcmp(row->kind, "on_error") == 0) {
            uint32_t attempts = 0;
            for (size_t j = 0; j < row->ncalls; j++)
                attempts += !row->calls[j].fallback;
            mxu_buf_printf(&b, ",\"attempts\":%u,\"retries\":%u,\"calls\":[", attempts,
                           attempts ? attempts - 1 : 0);
            for (size_t j = 0; j < row->ncalls; j++) {
                trace_call *tc = &row->calls[j];
                mxu_buf_puts(&b, j ? ",{\"function\":" : "{\"function\":");
                json_str(&b, tc->fn);
                mxu_buf_printf(&b, ",\"start_us\":%llu,\"duration_us\":%llu,\"status\":%d",
                               (unsigned long long)tc->start_us, (unsigned long long)tc->dur_us,
                               tc->status);
                if (tc->error)
                    json_field(&b, "error", tc->error);
                if (tc->fallback)
                    mxu_buf_puts(&b, ",\"fallback\":true");
                mxu_buf_puts(&b, "}");
            }
            mxu_buf_puts(&b, "]");
        }
        mxu_buf_puts(&b, "}");
    }
    mxu_buf_puts(&b, "]");
    if (o && o->kind == OUT_FAIL) {
        mxu_buf_puts(&b, ",\"error\":{\"code\":");
        json_str(&b, o->code);
        json_field(&b, "message", o->message);
        json_field(&b, "step", o->step);
        mxu_buf_puts(&b, "}");
    }
    mxu_buf_puts(&b, "}");
    trace_summary sum = {.run = r->id,
                         .version = r->v->version,
                         .status = status,
                         .start_ms = r->start_wall_ms,
                         .duration_us = dur_us};
    size_t len;
    char *text = mxu_buf_steal(&b, &len);
    trace_store_add(c->traces, mxu_fn_version_tenant(r->v), r->v->function, r->tp.trace_id, &sum,
                    text, len);
}

static void run_done(mxu_compose_run *r, outcome *o)
{
    if (r->done) {
        outcome_free(o);
        return;
    }
    r->done = true;
    reap(r); /* branches nobody waits for any more */
    payload ans = {0};
    int status;
    if (o->kind == OUT_FAIL) {
        status = o->status;
        json_t *j = json_pack("{s:{s:s, s:s, s:s, s:s}}", "error", "code", o->code, "message",
                              o->message, "step", o->step, "trace", r->trace_hex);
        if (j && o->step_status)
            json_object_set_new(json_object_get(j, "error"), "status",
                                json_integer(o->step_status));
        char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
        json_decref(j);
        mxu_buf_puts(&ans.body, text ? text : "{\"error\":{\"code\":\"step_failed\"}}");
        mxu_buf_puts(&ans.body, "\n");
        free(text);
        hdr_add_str(&ans, "Content-Type", "application/json");
        hdr_add_str(&ans, "X-Mxu-Error", o->code);
    } else {
        status = o->p.status;
        mxu_header_list it = hdr_list(&o->p);
        mxu_slice n, v;
        while (mxu_wire_next_header(&it, &n, &v)) {
            if (!slice_is(n, "traceparent") && !slice_is(n, "x-mxu-trace"))
                hdr_add(&ans, n, v);
        }
        ans.body = o->p.body;
        o->p.body = (mxu_buf){0};
    }
    char tp[56];
    mxu_traceparent_format(&r->tp, tp, sizeof(tp));
    hdr_add_str(&ans, "traceparent", tp);
    hdr_add_str(&ans, "X-Mxu-Trace", r->trace_hex);
    uint64_t us = run_us(r);
    mxu_invoke_res res = {
        .id = r->id,
        .error = MXU_INV_OK,
        .status = status,
        .headers = hdr_list(&ans),
        .body = ans.body,
        .run_us = us,
        .executor = "",
        .memory_bytes = 0, /* a service runs no code of its own: its steps are billed */
        .start_ms = r->start_wall_ms,
        .fn = r->v,
    };
    ans.body = (mxu_buf){0};
    mxu_invoke_cb cb = r->cb;
    r->cb = NULL;
    cb(r->ud, &res);
    mxu_buf_free(&res.body);
    payload_free(&ans);
    /* The trace after the answer: it is for later readers, not this client
     * (and it is kept in this same loop turn, before any request that could
     * ask for it is read). */
    record_trace(r, o, status, us);
    outcome_free(o);
}

mxu_compose_run *mxu_compose_invoke(mxu_compose *c, mxu_fn_version *v, mxu_invoke_req *req,
                                    mxu_invoke_cb cb, void *ud)
{
    /* A shutdown takes no new runs, but lets a run it already took finish
     * its steps (they are continuations), and a service called by a step or
     * by an invocation in flight is one too. */
    if (mxu_sched_shutting_down(c->cfg.sched) && !req->continuation) {
        mxu_invoke_res res = {.id = mxu_sched_new_invocation_id(c->cfg.sched),
                              .error = MXU_INV_SHUTTING_DOWN,
                              .message = "the node is shutting down",
                              .executor = "",
                              .start_ms = req->start_ms ? req->start_ms : mxu_wall_ms(),
                              .fn = v};
        cb(ud, &res);
        return NULL;
    }
    mxu_compose_run *r = mxu_calloc(1, sizeof(*r));
    mxu_sched_hold(c->cfg.sched);
    r->c = c;
    r->next = c->runs;
    if (c->runs)
        c->runs->prev = r;
    c->runs = r;
    r->v = mxu_fn_version_ref(v);
    r->id = mxu_sched_new_invocation_id(c->cfg.sched);
    r->cb = cb;
    r->ud = ud;
    r->method = req->method;
    r->path = req->path;
    r->query = req->query;
    r->hn = req->hdr_names;
    r->hv = req->hdr_values;
    r->nhdr = req->nhdr;
    r->prio = req->priority;
    r->start_wall_ms = req->start_ms ? req->start_ms : mxu_wall_ms();
    r->start_ns = mxu_now_ns();
    uint64_t now = uv_now(c->loop);
    r->deadline = now + v->manifest->timeout_ms;
    if (req->deadline_ms && req->deadline_ms < r->deadline)
        r->deadline = req->deadline_ms;
    /* W3C trace context: continue the caller's trace, or start one; this
     * run is a span of its own either way. */
    mxu_slice tph;
    if (!(req_header(r, "traceparent", &tph) &&
          mxu_traceparent_parse(tph.ptr, tph.len, &r->tp) == 0)) {
        uint64_t a = compose_rand(c), b = compose_rand(c);
        memcpy(r->tp.trace_id, &a, 8);
        memcpy(r->tp.trace_id + 8, &b, 8);
        r->tp.flags = 1; /* sampled: every run is traced */
    }
    mxu_traceparent_child(&r->tp, compose_rand(c));
    mxu_trace_id_hex(r->tp.trace_id, r->trace_hex, sizeof(r->trace_hex));

    run_pin(r);
    scope *sc = task_new(r, sizeof(*sc), NULL, NULL, NULL);
    sc->svc = mxu_fn_version_ref(v);
    sc->prefix = mxu_strdup("");
    sc->deadline = r->deadline;
    sc->depth = req->depth;
    payload in = {.status = 200, .orig = true};
    in.body = req->body;
    req->body = (mxu_buf){0};
    body_start(NULL, sc, v->manifest->service, &in);
    bool answered = r->done;
    run_unpin(r);
    return answered ? NULL : r;
}

void mxu_compose_cancel_then(mxu_compose_run *r, void (*gone)(void *ud), void *ud)
{
    if (r == NULL) {
        if (gone)
            gone(ud);
        return;
    }
    run_pin(r);
    if (!r->done) {
        r->done = true;
        r->cancelled = true;
        /* the trace of a run whose caller left */
        outcome o;
        fail_outcome(&o, 499, "client_gone", "", 0, "the caller went away");
        record_trace(r, &o, 499, run_us(r));
        outcome_free(&o);
    }
    for (task *t = r->tasks; t; t = t->all_next) {
        if (t->parent == NULL)
            t->cancelled = true;
    }
    reap(r);
    r->gone = gone;
    r->gone_ud = ud;
    maybe_gone(r);
    run_unpin(r);
}

void compose_cancel_all(mxu_compose *c)
{
    while (c->runs) {
        mxu_compose_run *r = c->runs;
        if (!r->done) {
            mxu_compose_cancel_then(r, NULL, NULL);
            continue; /* freed unless calls are still pending */
        }
        /* Calls still pending at destroy (the scheduler is gone or going):
         * their "gone" will not come; free regardless. */
        for (call_task *k = r->active; k; k = k->act_next)
            stop_timer(k);
        run_free(r);
    }
}
