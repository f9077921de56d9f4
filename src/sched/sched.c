/*
 * The scheduler: pools, dispatch, scaling, admission and deadlines. See
 * sched.h for the model; sched-instance.c owns what happens on one instance
 * (channel frames, stdio for exec, process ends).
 *
 * Deadlines cost one timer per pool, not per invocation: every invocation of
 * a version has the same timeout, so their deadlines are ordered like their
 * start times, and queue deadlines like their arrival. The pool timer is
 * armed for the earlier of the two list heads. An invocation's timeout runs
 * from when it starts running — when it reaches the head of its instance's
 * in-flight list, since instances serve in order — not from when it was
 * handed over behind others (pool->running holds only those heads).
 */
#include "sched-internal.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

static const char *const error_codes[] = {
    [MXU_INV_OK] = "ok",
    [MXU_INV_TIMEOUT] = "function_timeout",
    [MXU_INV_CRASHED] = "function_crashed",
    [MXU_INV_FAILED] = "function_failed",
    [MXU_INV_START_FAILED] = "start_failed",
    [MXU_INV_BAD_RESPONSE] = "bad_response",
    [MXU_INV_QUEUE_FULL] = "queue_full",
    [MXU_INV_NO_CAPACITY] = "no_capacity",
    [MXU_INV_QUEUE_TIMEOUT] = "queue_timeout",
    [MXU_INV_SHUTTING_DOWN] = "shutting_down",
};

const char *mxu_inv_error_code(enum mxu_inv_error e)
{
    return (size_t)e < MXU_ARRAY_LEN(error_codes) ? error_codes[e] : "unknown";
}

static void pool_arm(mxu_pool *pool);
static void pool_maybe_free(mxu_pool *pool);
static void sched_kick_all(mxu_sched *s);
static void shutdown_check(mxu_sched *s);

/* ---- invocations ----------------------------------------------------------- */

static void inv_free(mxu_invocation *inv)
{
    if (inv->pinned) {
        /* mxu_sched_invoke() is still using it; it frees it on return. */
        inv->freed_while_pinned = true;
        return;
    }
    mxu_buf_free(&inv->req.body);
    mxu_buf_free(&inv->log);
    free(inv);
}

/* Take the invocation off whatever list it is on. */
static void inv_detach(mxu_invocation *inv)
{
    mxu_pool *pool = inv->pool;
    if (inv->state == INV_QUEUED) {
        mxu_list_remove(&pool->queue, &inv->qlink);
    } else if (inv->state == INV_RUNNING) {
        if (inv->timed)
            mxu_list_remove(&pool->running, &inv->rlink);
        inv->timed = false;
        if (inv->inst)
            mxu_list_remove(&inv->inst->inflight, &inv->qlink);
        pool->ninflight--;
    }
    inv->state = INV_DONE;
}

static void running_insert(mxu_pool *pool, mxu_invocation *inv);

/* The head of an instance's in-flight list is the one it is running: its
 * timeout starts now. */
static void start_clock(mxu_instance *inst)
{
    mxu_link *l = mxu_list_first(&inst->inflight);
    if (l == NULL)
        return;
    mxu_invocation *head = mxu_container_of(l, mxu_invocation, qlink);
    if (head->timed)
        return;
    mxu_pool *pool = inst->pool;
    head->deadline_ms = sched_now(pool->sched) + pool->m->timeout_ms;
    /* Called by another function: never past the caller's own deadline. */
    if (head->req.deadline_ms && head->req.deadline_ms < head->deadline_ms)
        head->deadline_ms = head->req.deadline_ms;
    head->timed = true;
    running_insert(pool, head);
}

void mxu_sched_inv_complete(mxu_invocation *inv, mxu_invoke_res *res)
{
    mxu_pool *pool = inv->pool;
    mxu_sched *s = pool->sched;
    mxu_instance *inst = inv->inst;
    inv_detach(inv);
    if (inst && inst->exec_inv == inv)
        inst->exec_inv = NULL;
    /* However it ended, uploads it left open are dropped now, not later. */
    if (inst)
        mxu_desc_release(pool->desc, inv->id);

    uint64_t now_ns = mxu_now_ns();
    res->id = inv->id;
    res->done_ns = now_ns;
    res->cold = inv->cold;
    res->queued_us = ((inv->dispatched_ns ? inv->dispatched_ns : now_ns) - inv->enqueued_ns) / 1000;
    res->run_us = inv->dispatched_ns ? (now_ns - inv->dispatched_ns) / 1000 : 0;
    if (s->cfg.meter)
        mxu_sched_usage_fill(s, inv, res);

    pool->stats.invocations++;
    pool->stats.last_invoked_ms = mxu_wall_ms();
    if (res->error != MXU_INV_OK)
        pool->stats.errors++;
    if (res->error == MXU_INV_TIMEOUT)
        pool->stats.timeouts++;
    if (res->error == MXU_INV_CRASHED)
        pool->stats.crashes++;
    if (res->error == MXU_INV_QUEUE_FULL || res->error == MXU_INV_NO_CAPACITY)
        pool->stats.rejected++;
    if (inv->cold)
        pool->stats.cold_starts++;

    if (inv->log.len > 0 || inv->log_truncated) {
        if (inv->log_truncated)
            mxu_buf_puts(&inv->log, "\n[mxu: log truncated]");
        mxu_logstore_append(s->logs, pool->version->tenant, pool->version->function,
                            pool->version->version, inv->id, "stderr", inv->log.data, inv->log.len);
    }
    if (res->error != MXU_INV_OK && res->message) {
        _cleanup_free_ char *line =
            mxu_asprintf("%s: %s", mxu_inv_error_code(res->error), res->message);
        mxu_logstore_append(s->logs, pool->version->tenant, pool->version->function,
                            pool->version->version, inv->id, "mxu", line, strlen(line));
    }

    void (*gone)(void *) = NULL;
    void *gone_ud = NULL;
    if (!inv->cancelled && inv->cb) {
        inv->cb(inv->ud, res);
    } else {
        if (s->cfg.meter)
            mxu_sched_usage_orphan(s, inv, res); /* ran, but its caller went away */
        gone = inv->gone;
        gone_ud = inv->gone_ud;
    }
    inv_free(inv);
    if (gone)
        gone(gone_ud);

    if (inst) {
        inst->served++;
        inst->last_used_ms = sched_now(s);
        if (mxu_list_empty(&inst->inflight))
            mxu_sched_instance_idle(inst);
        else if (inst->state == INST_READY || inst->state == INST_STOPPING)
            start_clock(inst);
    }
    mxu_sched_pool_kick(pool);
    if (s->shutting_down)
        shutdown_check(s);
}

void mxu_sched_inv_fail(mxu_invocation *inv, enum mxu_inv_error e, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    mxu_invoke_res res = {.error = e, .message = msg};
    if (e == MXU_INV_QUEUE_FULL || e == MXU_INV_NO_CAPACITY || e == MXU_INV_QUEUE_TIMEOUT)
        res.retry_after_s = 1;
    mxu_sched_inv_complete(inv, &res);
    mxu_buf_free(&res.body);
}

void mxu_sched_cancel(mxu_invocation *inv)
{
    mxu_sched_cancel_then(inv, NULL, NULL);
}

void mxu_sched_cancel_then(mxu_invocation *inv, void (*gone)(void *ud), void *ud)
{
    if (inv == NULL) {
        if (gone)
            gone(ud);
        return;
    }
    inv->cancelled = true;
    inv->gone = gone;
    inv->gone_ud = ud;
    if (inv->state == INV_QUEUED) {
        mxu_pool *pool = inv->pool;
        inv_detach(inv);
        if (pool->sched->cfg.meter) {
            /* It never ran; it is an invocation all the same. */
            mxu_invoke_res res = {.error = MXU_INV_SHUTTING_DOWN, .id = inv->id};
            res.queued_us = (mxu_now_ns() - inv->enqueued_ns) / 1000;
            mxu_sched_usage_fill(pool->sched, inv, &res);
            mxu_sched_usage_orphan(pool->sched, inv, &res);
        }
        inv_free(inv);
        pool_arm(pool);
        if (gone)
            gone(ud);
        if (pool->sched->shutting_down)
            shutdown_check(pool->sched);
    }
}

static int inv_rank(const mxu_invocation *inv)
{
    return mxu_priority_rank(inv->req.priority);
}

static mxu_invocation *queue_inv(mxu_link *l)
{
    return mxu_container_of(l, mxu_invocation, qlink);
}

/* The queue is ordered by class (critical, default, batch), first come first
 * served within a class. An arrival goes after the last waiter of its class
 * or a higher one: a walk from the tail, which is one step unless classes
 * are mixed. */
static void queue_insert(mxu_pool *pool, mxu_invocation *inv)
{
    mxu_link *at = pool->queue.head.prev;
    while (at != &pool->queue.head && inv_rank(queue_inv(at)) < inv_rank(inv))
        at = at->prev;
    mxu_list_insert_after(&pool->queue, at, &inv->qlink);
}

/* Classes are mixed in the queue: deadlines are no longer in queue order. */
static bool queue_mixed(const mxu_pool *pool)
{
    return pool->queue.len > 1 &&
           inv_rank(queue_inv(pool->queue.head.next)) != inv_rank(queue_inv(pool->queue.head.prev));
}

/* The waiter whose queue deadline comes first: the head, unless classes
 * are mixed (then a walk; the queue is bounded by queue_max). */
static mxu_invocation *queue_first_due(const mxu_pool *pool)
{
    mxu_link *l = mxu_list_first(&pool->queue);
    if (l == NULL)
        return NULL;
    mxu_invocation *best = queue_inv(l);
    if (!queue_mixed(pool))
        return best;
    mxu_list_foreach(&pool->queue, it)
    {
        if (queue_inv(it)->queue_deadline_ms < best->queue_deadline_ms)
            best = queue_inv(it);
    }
    return best;
}

void mxu_sched_requeue_front(mxu_pool *pool, mxu_invocation *inv)
{
    if (inv->state == INV_RUNNING) {
        if (inv->timed)
            mxu_list_remove(&pool->running, &inv->rlink);
        if (inv->inst)
            mxu_list_remove(&inv->inst->inflight, &inv->qlink);
        pool->ninflight--;
    }
    /* It never started: it gets its whole timeout on the next instance. */
    inv->timed = false;
    inv->deadline_ms = 0;
    inv->inst = NULL;
    inv->state = INV_QUEUED;
    /* First of its class: it was served before those still waiting. */
    mxu_link *at = &pool->queue.head;
    while (at->next != &pool->queue.head && inv_rank(queue_inv(at->next)) > inv_rank(inv))
        at = at->next;
    mxu_list_insert_after(&pool->queue, at, &inv->qlink);
}

void mxu_sched_pool_fail_queue(mxu_pool *pool, enum mxu_inv_error e, const char *msg)
{
    mxu_link *l;
    while ((l = mxu_list_first(&pool->queue)) != NULL)
        mxu_sched_inv_fail(mxu_container_of(l, mxu_invocation, qlink), e, "%s", msg);
}

/* ---- admission ----------------------------------------------------------- */

/* Stop idle instances of other pools, least recently used first, until
 * `need` bytes will be free once they have exited. */
static void evict_for(mxu_sched *s, mxu_pool *except, uint64_t need)
{
    /* Instances already stopping will give their memory back: count it, or
     * every failed admission would stop one more. */
    uint64_t freeing = 0;
    for (mxu_pool *p = s->pools; p != NULL; p = p->hh.next) {
        mxu_list_foreach(&p->instances, it)
        {
            mxu_instance *in = mxu_container_of(it, mxu_instance, plink);
            if (in->state == INST_STOPPING)
                freeing += in->reserved_bytes;
        }
    }
    while (freeing < need) {
        mxu_instance *victim = NULL;
        for (mxu_pool *p = s->pools; p != NULL; p = p->hh.next) {
            if (p == except || p->alive <= p->min)
                continue;
            mxu_list_foreach(&p->instances, it)
            {
                mxu_instance *in = mxu_container_of(it, mxu_instance, plink);
                if (in->state == INST_READY && mxu_list_empty(&in->inflight) &&
                    (victim == NULL || in->last_used_ms < victim->last_used_ms))
                    victim = in;
            }
        }
        if (victim == NULL)
            return;
        freeing += victim->reserved_bytes;
        mxu_instance_stop(victim, true);
    }
}

/* Reserve memory for one more instance of `pool`, or start freeing some.
 * What is in use is what instances reserved plus what executors' spares
 * hold (standby), but for the spare this instance will take over: its
 * memory becomes the instance's. When that leaves no room, spares go first
 * (losing one costs some later cold start a few milliseconds; stopping an
 * idle instance costs its warm state and its next caller a cold start),
 * then idle instances of other functions. */
static bool admit(mxu_pool *pool)
{
    mxu_sched *s = pool->sched;
    uint64_t need = pool->m->memory_bytes;
    const mxu_exec_spec *spec = mxu_unit_warm_spec(pool->unit);
    uint64_t used = s->reserved + mxu_exec_standby_bytes(s->exec, spec);
    if (used + need <= s->cfg.memory_budget) {
        s->reserved += need;
        return true;
    }
    uint64_t over = used + need - s->cfg.memory_budget;
    uint64_t shed = mxu_exec_shed_standby(s->exec, over, spec);
    if (shed >= over) {
        s->reserved += need;
        return true;
    }
    evict_for(s, pool, over - shed);
    return false;
}

/* The executors' question before they start a spare (exec.h): does it fit
 * next to what instances reserved and spares already hold? */
static bool standby_fits(void *ud, uint64_t bytes)
{
    mxu_sched *s = ud;
    return s->reserved + mxu_exec_standby_bytes(s->exec, NULL) + bytes <= s->cfg.memory_budget;
}

/* ---- dispatch and scaling --------------------------------------------------- */

static mxu_instance *pick_instance(mxu_pool *pool)
{
    mxu_instance *best = NULL;
    mxu_list_foreach(&pool->instances, it)
    {
        mxu_instance *in = mxu_container_of(it, mxu_instance, plink);
        /* Exec instances never take queued work: each was started for one. */
        if (in->state != INST_READY || in->chan == NULL || !mxu_instance_has_capacity(in))
            continue;
        if (best == NULL || in->inflight.len < best->inflight.len) {
            best = in;
            if (in->inflight.len == 0)
                break;
        }
    }
    return best;
}

/* Insert into pool->running keeping deadline order (usually at the tail). */
static void running_insert(mxu_pool *pool, mxu_invocation *inv)
{
    mxu_link *at = pool->running.head.prev;
    while (at != &pool->running.head &&
           mxu_container_of(at, mxu_invocation, rlink)->deadline_ms > inv->deadline_ms)
        at = at->prev;
    mxu_list_insert_after(&pool->running, at, &inv->rlink);
}

static void dispatch(mxu_pool *pool, mxu_instance *inst, mxu_invocation *inv)
{
    mxu_list_remove(&pool->queue, &inv->qlink);
    inv->state = INV_RUNNING;
    inv->inst = inst;
    pool->ninflight++;
    if (inv->dispatched_ns == 0) {
        inv->dispatched_ns = mxu_now_ns();
        /* Cold: this invocation waited for the instance it runs on to start. */
        inv->cold = inst->served == 0 && inst->inflight.len == 0 &&
                    inst->ready_ms >= inv->enqueued_ms && inst->started_ms >= inv->enqueued_ms;
    }
    mxu_list_push_back(&inst->inflight, &inv->qlink);
    start_clock(inst);
    uv_timer_stop(&inst->timer); /* not idle any more */
    mxu_instance_send(inst, inv);
}

/* Returns false if no instance could be started (the caller stops trying). */
static bool start_instance(mxu_pool *pool, mxu_invocation *exec_inv)
{
    mxu_err err;
    mxu_instance *inst;
    if (mxu_instance_start(pool, exec_inv, &inst, &err) < 0) {
        pool->sched->reserved -= pool->m->memory_bytes;
        mxu_warn("%s: cannot start an instance: %s", mxu_unit_label(pool->unit), err.msg);
        if (exec_inv) {
            mxu_list_push_front(&pool->queue, &exec_inv->qlink); /* fail from the queue */
            exec_inv->state = INV_QUEUED;
            mxu_sched_inv_fail(exec_inv, MXU_INV_START_FAILED, "%s", err.msg);
        }
        /* Nothing runs that could take the queue later: answer it now. */
        if (pool->alive == 0)
            mxu_sched_pool_fail_queue(pool, MXU_INV_START_FAILED, err.msg);
        return false;
    }
    if (exec_inv) {
        /* The process was started for exactly this invocation. */
        mxu_list_push_front(&pool->queue, &exec_inv->qlink);
        exec_inv->state = INV_QUEUED;
        dispatch(pool, inst, exec_inv);
    }
    return true;
}

static void pool_kick_once(mxu_pool *pool)
{
    mxu_sched *s = pool->sched;
    mxu_link *l;

    /* 1. Hand queued invocations to instances with room. */
    while ((l = mxu_list_first(&pool->queue)) != NULL) {
        mxu_instance *inst = pick_instance(pool);
        if (inst == NULL)
            break;
        dispatch(pool, inst, mxu_container_of(l, mxu_invocation, qlink));
    }

    /* 2. Scale up for what still waits, as far as max_instances and memory
     *    allow: enough starting instances to take every waiting invocation. */
    if (!s->stopping_instances) {
        while (!mxu_list_empty(&pool->queue) && pool->alive < pool->m->max_instances) {
            if (!pool->exec_runtime && pool->starting * pool->m->concurrency >= pool->queue.len)
                break;
            if (!admit(pool))
                break;
            mxu_invocation *exec_inv = NULL;
            if (pool->exec_runtime) {
                exec_inv = mxu_container_of(mxu_list_first(&pool->queue), mxu_invocation, qlink);
                mxu_list_remove(&pool->queue, &exec_inv->qlink);
            }
            if (!start_instance(pool, exec_inv))
                break;
        }
        /* 3. Keep min_instances warm (warm runtimes only). */
        while (!pool->exec_runtime && pool->alive < pool->min && !s->shutting_down) {
            /* A version whose instances keep failing to start is retried
             * with a growing pause, not in a loop. */
            if (pool->start_failures && sched_now(s) < pool->retry_at_ms)
                break;
            if (!admit(pool) || !start_instance(pool, NULL))
                break;
        }
    }
}

/* Completing an invocation kicks its pool, and kicking can complete
 * invocations (a failed start answers the queue): a kick that arrives while
 * one runs is folded into it instead of recursing once per queued item. */
void mxu_sched_pool_kick(mxu_pool *pool)
{
    if (pool->kicking) {
        pool->kick_again = true;
        return;
    }
    pool->kicking = true;
    do {
        pool->kick_again = false;
        pool_kick_once(pool);
    } while (pool->kick_again);
    pool->kicking = false;
    pool_arm(pool);
}

static void sched_kick_all(mxu_sched *s)
{
    for (mxu_pool *p = s->pools, *next; p != NULL; p = next) {
        next = p->hh.next;
        if (!mxu_list_empty(&p->queue) || p->alive < p->min)
            mxu_sched_pool_kick(p);
    }
}

/* ---- deadlines -------------------------------------------------------------- */

static void on_pool_timer(uv_timer_t *t)
{
    mxu_pool *pool = t->data;
    mxu_sched *s = pool->sched;
    uint64_t now = sched_now(s);
    pool->timer_due = 0;
    mxu_link *l;
    char limit[32];

    while ((l = mxu_list_first(&pool->running)) != NULL) {
        mxu_invocation *inv = mxu_container_of(l, mxu_invocation, rlink);
        if (inv->deadline_ms > now)
            break;
        /* Kill first, so that answering this one cannot hand the dying
         * instance new work. */
        if (inv->inst)
            mxu_instance_kill(inv->inst, "timeout");
        mxu_format_duration_ms(pool->m->timeout_ms, limit, sizeof(limit));
        mxu_sched_inv_fail(inv, MXU_INV_TIMEOUT,
                           "%s did not answer within its timeout of %s; the instance was "
                           "killed and will be replaced",
                           mxu_unit_label(pool->unit), limit);
    }
    mxu_invocation *inv;
    while ((inv = queue_first_due(pool)) != NULL) {
        if (inv->queue_deadline_ms > now)
            break;
        mxu_format_duration_ms(now - inv->enqueued_ms, limit, sizeof(limit));
        if (pool->alive == 0 && s->reserved + pool->m->memory_bytes > s->cfg.memory_budget) {
            char need[32], free_[32], budget[32];
            mxu_format_size(pool->m->memory_bytes, need, sizeof(need));
            mxu_format_size(s->cfg.memory_budget - MXU_MIN(s->reserved, s->cfg.memory_budget),
                            free_, sizeof(free_));
            mxu_format_size(s->cfg.memory_budget, budget, sizeof(budget));
            mxu_sched_inv_fail(inv, MXU_INV_NO_CAPACITY,
                               "not enough memory to start %s: it needs %s, %s of the node's "
                               "%s budget is free (waited %s)",
                               mxu_unit_label(pool->unit), need, free_, budget, limit);
        } else {
            mxu_sched_inv_fail(inv, MXU_INV_QUEUE_TIMEOUT,
                               "%s: no instance became free within %s (max_instances %u)",
                               mxu_unit_label(pool->unit), limit, pool->m->max_instances);
        }
    }
    if (pool->alive < pool->min)
        mxu_sched_pool_kick(pool); /* a warm-up retry may be due */
    else
        pool_arm(pool);
}

static void pool_arm(mxu_pool *pool)
{
    uint64_t due = 0;
    mxu_link *l;
    if ((l = mxu_list_first(&pool->running)) != NULL)
        due = mxu_container_of(l, mxu_invocation, rlink)->deadline_ms;
    mxu_invocation *first = queue_first_due(pool);
    if (first) {
        uint64_t q = first->queue_deadline_ms;
        if (due == 0 || q < due)
            due = q;
    }
    if (pool->alive < pool->min && pool->start_failures && (due == 0 || pool->retry_at_ms < due))
        due = pool->retry_at_ms;
    if (due == pool->timer_due)
        return;
    pool->timer_due = due;
    if (due == 0) {
        uv_timer_stop(&pool->timer);
        return;
    }
    uint64_t now = sched_now(pool->sched);
    uv_timer_start(&pool->timer, on_pool_timer, due > now ? due - now : 0, 0);
}

/* ---- pools ------------------------------------------------------------------ */

static mxu_pool *pool_find(mxu_sched *s, mxu_fn_version *v)
{
    mxu_pool *pool = NULL;
    HASH_FIND_PTR(s->pools, &v, pool);
    return pool;
}

static mxu_pool *pool_get(mxu_sched *s, mxu_fn_version *v, mxu_err *err)
{
    mxu_pool *pool = pool_find(s, v);
    if (pool)
        return pool;
    mxu_unit *unit;
    if (mxu_unit_create(v, s->node_env, s->default_executor, &unit, err) < 0)
        return NULL;
    if (mxu_unit_executor(unit)->prepare(s->exec, mxu_unit_warm_spec(unit), err) < 0) {
        mxu_unit_free(unit);
        return NULL;
    }
    /* Resource descriptors are bound once per unit; bindings follow the map. */
    mxu_desc_table *desc = NULL;
    if (mxu_desc_table_create(v->manifest, s->cfg.resolver, mxu_fn_version_tenant(v), &desc, err) <
        0) {
        mxu_unit_free(unit);
        return NULL;
    }
    pool = mxu_calloc(1, sizeof(*pool));
    pool->sched = s;
    pool->version = mxu_fn_version_ref(v);
    pool->unit = unit;
    pool->desc = desc;
    pool->m = v->manifest;
    pool->exec_runtime = v->manifest->runtime == MXU_RUNTIME_EXEC;
    mxu_list_init(&pool->instances);
    mxu_list_init(&pool->queue);
    mxu_list_init(&pool->running);
    uv_timer_init(s->loop, &pool->timer);
    pool->timer.data = pool;
    HASH_ADD_PTR(s->pools, version, pool);
    return pool;
}

static void pool_on_timer_closed(uv_handle_t *h)
{
    free(h->data);
}

/* Everything but the timer goes now: the close callback must not reach the
 * scheduler, which may be freed before it runs. */
static void pool_free(mxu_pool *pool)
{
    mxu_sched *s = pool->sched;
    HASH_DEL(s->pools, pool);
    mxu_unit_executor(pool->unit)->release(s->exec, mxu_unit_warm_spec(pool->unit));
    mxu_unit_free(pool->unit);
    mxu_desc_table_free(pool->desc);
    mxu_fn_version_unref(pool->version);
    pool->unit = NULL;
    pool->desc = NULL;
    pool->version = NULL;
    uv_close((uv_handle_t *)&pool->timer, pool_on_timer_closed);
}

/* A deleted version's pool goes once nothing of it is left. */
static void pool_maybe_free(mxu_pool *pool)
{
    if (pool->removed && mxu_list_empty(&pool->instances) && mxu_list_empty(&pool->queue) &&
        pool->ninflight == 0)
        pool_free(pool);
}

/* ---- instances come and go ---------------------------------------------------- */

void mxu_sched_instance_idle(mxu_instance *inst)
{
    mxu_pool *pool = inst->pool;
    if (pool->removed || pool->sched->shutting_down) {
        mxu_instance_stop(inst, true);
        return;
    }
    /* Idle instances above min_instances stop after keep_alive. */
    mxu_instance_arm_idle(inst, pool->m->keep_alive_ms);
}

void mxu_sched_instance_gone(mxu_instance *inst)
{
    mxu_pool *pool = inst->pool;
    mxu_sched *s = pool->sched;
    s->reserved -= inst->reserved_bytes;
    s->ninstances--;
    mxu_list_remove(&pool->instances, &inst->plink);
    /* Memory was freed: whoever waited for it may start now. */
    sched_kick_all(s);
    mxu_sched_pool_kick(pool);
    pool_maybe_free(pool);
    if (s->shutting_down)
        shutdown_check(s);
}

/* ---- invoke ----------------------------------------------------------------- */

mxu_invocation *mxu_sched_invoke(mxu_sched *s, mxu_fn_version *v, mxu_invoke_req *req,
                                 mxu_invoke_cb cb, void *ud)
{
    mxu_invocation *inv = mxu_calloc(1, sizeof(*inv));
    inv->id = ++s->next_inv_id;
    inv->sched = s;
    inv->req = *req;
    req->body = (mxu_buf){0};
    inv->cb = cb;
    inv->ud = ud;
    inv->enqueued_ms = sched_now(s);
    inv->enqueued_ns = mxu_now_ns();
    inv->start_ms = req->start_ms ? req->start_ms : mxu_wall_ms();
    inv->state = INV_DONE;

    mxu_err err;
    mxu_pool *pool = pool_get(s, v, &err);
    if (pool == NULL) {
        /* No pool to account it to: answer directly. */
        mxu_invoke_res res = {.id = inv->id,
                              .error = MXU_INV_START_FAILED,
                              .message = err.msg,
                              .executor = "",
                              .memory_bytes = v->manifest->memory_bytes,
                              .start_ms = inv->start_ms,
                              .fn = v};
        cb(ud, &res);
        inv_free(inv);
        return NULL;
    }
    inv->pool = pool;
    inv->queue_deadline_ms = inv->enqueued_ms + s->cfg.queue_timeout_ms;
    if (req->deadline_ms && req->deadline_ms < inv->queue_deadline_ms)
        inv->queue_deadline_ms = req->deadline_ms;
    queue_insert(pool, inv);
    inv->state = INV_QUEUED;

    /* Draining: what was taken in before may go on (a run's next step, a
     * call of an invocation in flight), until the drain time is up. */
    if (s->shutting_down && (!req->continuation || s->stopping_instances)) {
        mxu_sched_inv_fail(inv, MXU_INV_SHUTTING_DOWN, "the node is shutting down");
        return NULL;
    }
    if (pool->m->memory_bytes > s->cfg.memory_budget) {
        char need[32], budget[32];
        mxu_format_size(pool->m->memory_bytes, need, sizeof(need));
        mxu_format_size(s->cfg.memory_budget, budget, sizeof(budget));
        mxu_sched_inv_fail(inv, MXU_INV_NO_CAPACITY,
                           "%s needs %s of memory, more than this node's whole budget of %s",
                           mxu_unit_label(pool->unit), need, budget);
        return NULL;
    }
    if (pool->queue.len > s->cfg.queue_max) {
        /* Full. The tail is the newest waiter of the lowest class: if that is
         * a lower class than the arrival, it is shed for it; otherwise the
         * arrival is refused (it is the tail itself, or no better). */
        mxu_invocation *tail = queue_inv(pool->queue.head.prev);
        if (tail != inv && inv_rank(tail) < inv_rank(inv)) {
            /* Failing the tail kicks the pool, which may dispatch (or even
             * answer) the arrival: pin it, as below. */
            inv->pinned = true;
            mxu_sched_inv_fail(tail, MXU_INV_QUEUE_FULL,
                               "%s is at capacity (%u instances busy, %u invocations queued): "
                               "shed from the queue for an invocation of a higher priority "
                               "class (this one is %s)",
                               mxu_unit_label(pool->unit), (unsigned)pool->alive,
                               (unsigned)s->cfg.queue_max, mxu_priority_name(tail->req.priority));
            inv->pinned = false;
            if (inv->freed_while_pinned) {
                inv_free(inv);
                return NULL;
            }
        } else {
            mxu_sched_inv_fail(inv, MXU_INV_QUEUE_FULL,
                               "%s is at capacity (%u instances busy, %u invocations queued, "
                               "none of a lower class than this %s one)",
                               mxu_unit_label(pool->unit), (unsigned)pool->alive,
                               (unsigned)s->cfg.queue_max, mxu_priority_name(inv->req.priority));
            return NULL;
        }
    }
    /* The kick may complete it at once (a failed start): pin it so that it
     * can be told apart from a live handle afterwards. */
    inv->pinned = true;
    mxu_sched_pool_kick(pool);
    inv->pinned = false;
    if (inv->freed_while_pinned) {
        inv_free(inv);
        return NULL;
    }
    return inv;
}

uint64_t mxu_sched_new_invocation_id(mxu_sched *s)
{
    return ++s->next_inv_id;
}

/* ---- registry changes --------------------------------------------------------- */

static void set_min(void *ud, mxu_fn_version *v)
{
    mxu_sched *s = ud;
    mxu_err err;
    if (v->manifest->min_instances == 0)
        return;
    mxu_pool *pool = pool_get(s, v, &err);
    if (pool == NULL) {
        mxu_warn("%s/%s@%u: cannot keep instances warm: %s", v->tenant, v->function, v->version,
                 err.msg);
        return;
    }
    pool->min = v->manifest->min_instances;
}

static void recompute_min(mxu_sched *s)
{
    for (mxu_pool *p = s->pools; p != NULL; p = p->hh.next)
        p->min = 0;
    mxu_registry_foreach_aliased(s->reg, set_min, s);
    sched_kick_all(s);
}

static void on_registry(void *ud, enum mxu_registry_event ev, mxu_fn_version *v)
{
    mxu_sched *s = ud;
    if (ev == MXU_REG_VERSION_REMOVED) {
        mxu_pool *pool = pool_find(s, v);
        if (pool) {
            pool->removed = true;
            pool->min = 0;
            mxu_list_foreach_safe(&pool->instances, it, tmp)
            {
                mxu_instance *in = mxu_container_of(it, mxu_instance, plink);
                if (mxu_list_empty(&in->inflight))
                    mxu_instance_stop(in, true);
            }
            pool_maybe_free(pool);
        }
    }
    if (!s->shutting_down)
        recompute_min(s);
}

void mxu_sched_warm_all(mxu_sched *s)
{
    recompute_min(s);
}

/* ---- lifecycle --------------------------------------------------------------- */

static uint64_t default_budget(void)
{
    uint64_t total = uv_get_total_memory();
    uint64_t limit = uv_get_constrained_memory();
    if (limit > 0 && limit < total)
        total = limit;
    return total / 10 * 8;
}

int mxu_sched_create(uv_loop_t *loop, mxu_registry *reg, const mxu_sched_config *cfg,
                     mxu_sched **out, mxu_err *err)
{
    mxu_sched *s = mxu_calloc(1, sizeof(*s));
    s->loop = loop;
    s->reg = reg;
    s->cfg = *cfg;
    if (!s->cfg.memory_budget)
        s->cfg.memory_budget = default_budget();
    if (!s->cfg.queue_max)
        s->cfg.queue_max = 1000;
    if (!s->cfg.queue_timeout_ms)
        s->cfg.queue_timeout_ms = 30000;
    if (!s->cfg.start_timeout_ms)
        s->cfg.start_timeout_ms = 10000;
    if (!s->cfg.max_response_bytes)
        s->cfg.max_response_bytes = 6u << 20;
    if (!s->cfg.max_log_bytes)
        s->cfg.max_log_bytes = 64u << 10;
    if (!s->cfg.max_call_depth)
        s->cfg.max_call_depth = 8;
    s->node_env = mxu_strdup(cfg->node_env ? cfg->node_env : "MXU_NODE=none");
    s->default_executor = mxu_strdup(cfg->default_executor ? cfg->default_executor : "process");
    s->cfg.default_executor = s->default_executor;
    s->cfg.node_env = s->node_env;
    const char *id = strchr(s->node_env, '=') + 1;
    if (mxu_exec_create(loop, id, &s->exec, err) < 0) {
        free(s->node_env);
        free(s->default_executor);
        free(s);
        return -1;
    }
    mxu_exec_set_standby_budget(s->exec, standby_fits, s);
    s->logs = mxu_logstore_open(cfg->log_dir);
    /* Invocation ids are unique across restarts: the clock seeds the counter. */
    s->next_inv_id = mxu_wall_ms() << 16;
    uv_timer_init(loop, &s->shutdown_timer);
    s->shutdown_timer.data = s;
    if (reg)
        mxu_registry_set_listener(reg, on_registry, s);
    *out = s;
    return 0;
}

static void stop_all_instances(mxu_sched *s)
{
    s->stopping_instances = true;
    for (mxu_pool *p = s->pools; p != NULL; p = p->hh.next) {
        mxu_list_foreach_safe(&p->instances, it, tmp)
        {
            mxu_instance_stop(mxu_container_of(it, mxu_instance, plink), true);
        }
    }
}

static void fail_everything(mxu_sched *s, const char *msg)
{
    for (mxu_pool *p = s->pools, *next; p != NULL; p = next) {
        next = p->hh.next;
        mxu_sched_pool_fail_queue(p, MXU_INV_SHUTTING_DOWN, msg);
        mxu_list_foreach(&p->instances, it)
        {
            mxu_instance *in = mxu_container_of(it, mxu_instance, plink);
            mxu_link *l;
            while ((l = mxu_list_first(&in->inflight)) != NULL)
                mxu_sched_inv_fail(mxu_container_of(l, mxu_invocation, qlink),
                                   MXU_INV_SHUTTING_DOWN, "%s", msg);
        }
    }
}

static void on_shutdown_timer(uv_timer_t *t)
{
    mxu_sched *s = t->data;
    if (!s->stopping_instances) {
        /* Drain time is up. */
        fail_everything(s, "the node stopped before this invocation finished");
        stop_all_instances(s);
        uv_timer_start(&s->shutdown_timer, on_shutdown_timer, 2000, 0);
        shutdown_check(s);
        return;
    }
    /* Grace for BYE is up: kill what is left. */
    for (mxu_pool *p = s->pools; p != NULL; p = p->hh.next) {
        mxu_list_foreach_safe(&p->instances, it, tmp)
        {
            mxu_instance_kill(mxu_container_of(it, mxu_instance, plink), "node shutdown");
        }
    }
}

static void shutdown_check(mxu_sched *s)
{
    if (!s->stopping_instances) {
        if (s->holds > 0)
            return; /* a service run will invoke its next step */
        for (mxu_pool *p = s->pools; p != NULL; p = p->hh.next) {
            if (!mxu_list_empty(&p->queue) || p->ninflight > 0)
                return; /* still draining */
        }
        stop_all_instances(s);
        uv_timer_start(&s->shutdown_timer, on_shutdown_timer, 2000, 0);
    }
    if (s->ninstances == 0 && s->shutdown_done) {
        void (*done)(void *) = s->shutdown_done;
        s->shutdown_done = NULL;
        uv_timer_stop(&s->shutdown_timer);
        done(s->shutdown_ud);
    }
}

void mxu_sched_shutdown(mxu_sched *s, uint64_t drain_ms, void (*done)(void *ud), void *ud)
{
    s->shutting_down = true;
    s->shutdown_done = done;
    s->shutdown_ud = ud;
    for (mxu_pool *p = s->pools; p != NULL; p = p->hh.next)
        p->min = 0;
    uv_timer_start(&s->shutdown_timer, on_shutdown_timer, drain_ms, 0);
    shutdown_check(s);
}

void mxu_sched_hold(mxu_sched *s)
{
    s->holds++;
}

void mxu_sched_release(mxu_sched *s)
{
    if (s->holds > 0)
        s->holds--;
    if (s->shutting_down)
        shutdown_check(s);
}

bool mxu_sched_shutting_down(const mxu_sched *s)
{
    return s->shutting_down;
}

static void on_sched_timer_closed(uv_handle_t *h)
{
    mxu_sched *s = h->data;
    free(s->node_env);
    free(s->default_executor);
    free(s);
}

void mxu_sched_destroy(mxu_sched *s)
{
    if (s == NULL)
        return;
    if (s->reg)
        mxu_registry_set_listener(s->reg, NULL, NULL);
    mxu_exec_set_standby_budget(s->exec, NULL, NULL); /* releases below must not ask s */
    for (mxu_pool *p = s->pools, *next; p != NULL; p = next) {
        next = p->hh.next;
        p->removed = true;
        if (mxu_list_empty(&p->instances))
            pool_free(p);
    }
    mxu_exec_destroy(s->exec);
    mxu_logstore_close(s->logs);
    uv_close((uv_handle_t *)&s->shutdown_timer, on_sched_timer_closed);
}
