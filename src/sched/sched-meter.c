/*
 * What the scheduler contributes to usage records (docs/metering.md): the
 * executor, configured memory, and the instance's CPU time and peak memory
 * at each result, read through the executor's usage() op; and the records
 * of invocations whose caller went away, which nobody else would write.
 *
 * CPU per invocation is the difference between two readings of the
 * instance's CPU time: one at its previous result (or when it became ready),
 * one at this result. With one invocation in flight that is exactly its CPU
 * (plus whatever the idle SDK spent, which is ~0); with several in flight the
 * CPU between two results is given to the later one, so the records of an
 * instance add up to its CPU time and none is counted twice. The reading is a
 * system call (~0.3 µs, a third of what metering costs a warm no-op), so it
 * is taken once per batch of frames read from the instance's channel: the
 * batch's first result gets the CPU since the previous reading, the others
 * in the same batch none (they were done by the time of that reading).
 *
 * Peak memory is a high-water mark, so an older reading is still a true
 * lower bound: it is read through usage() (a /proc or cgroup file, ~10 µs
 * of the loop's time) at most every PEAK_EVERY_MS per instance, and at its
 * end, while CPU time comes from the executor's cheap cpu() on every result.
 */
#include "sched-internal.h"

#include <string.h>

#define PEAK_EVERY_MS 100

enum mxu_usage_status mxu_inv_usage_status(enum mxu_inv_error e)
{
    switch (e) {
    case MXU_INV_OK:
        return MXU_USAGE_OK;
    case MXU_INV_TIMEOUT:
        return MXU_USAGE_TIMEOUT;
    case MXU_INV_CRASHED:
        return MXU_USAGE_CRASHED;
    case MXU_INV_FAILED:
    case MXU_INV_START_FAILED:
    case MXU_INV_BAD_RESPONSE:
        return MXU_USAGE_ERROR;
    case MXU_INV_QUEUE_FULL:
    case MXU_INV_NO_CAPACITY:
    case MXU_INV_QUEUE_TIMEOUT:
    case MXU_INV_SHUTTING_DOWN:
        return MXU_USAGE_REJECTED;
    }
    return MXU_USAGE_ERROR;
}

void mxu_inv_usage_record(const mxu_invoke_res *res, mxu_usage_record *r)
{
    enum mxu_usage_status status = mxu_inv_usage_status(res->error);
    /* One assignment, not a memset and then each field: this runs for every
     * metered invocation. Unnamed fields are zero. */
    *r = (mxu_usage_record){
        .invocation = res->id,
        .tenant = res->fn ? mxu_fn_version_tenant(res->fn) : "default",
        .function = res->fn ? res->fn->function : "",
        .version = res->fn ? res->fn->version : 0,
        .executor = res->executor ? res->executor : "",
        .start_ms = res->start_ms,
        .wall_us = res->queued_us + res->run_us,
        .status = status,
        /* What never ran is not billed; what ran is, rounded up to 1 ms. */
        .billed_ms = status == MXU_USAGE_REJECTED ? 0 : mxu_usage_billed_ms(res->run_us),
        .memory_bytes = res->memory_bytes,
        .cpu_us = res->cpu_us,
        .peak_bytes = res->peak_bytes,
        .cold = res->cold,
        .code = res->error == MXU_INV_OK ? "" : mxu_inv_error_code(res->error),
    };
}

/* CPU time now, and the peak memory (re-read if the last reading is old or
 * the process has ended). */
static void read_usage(mxu_instance *inst, mxu_usage *u)
{
    memset(u, 0, sizeof(*u));
    if (inst->proc == NULL)
        return;
    const mxu_executor_ops *ops = mxu_unit_executor(inst->pool->unit);
    uint64_t now = sched_now(inst->pool->sched);
    if (ops->cpu == NULL || inst->peak_read_ms == 0 || now - inst->peak_read_ms >= PEAK_EVERY_MS ||
        mxu_proc_exited(inst->proc)) {
        ops->usage(inst->proc, u);
        inst->peak_bytes = MXU_MAX(inst->peak_bytes, u->peak_bytes);
        inst->peak_read_ms = now ? now : 1;
    } else if (inst->cpu_fresh) {
        u->cpu_us = inst->cpu_now;
    } else {
        ops->cpu(inst->proc, &u->cpu_us);
    }
    /* Fresh until the end of this channel batch (on_batch). */
    inst->cpu_now = u->cpu_us;
    inst->cpu_fresh = inst->cpu_batch;
    u->peak_bytes = inst->peak_bytes;
}

void mxu_sched_usage_mark(mxu_instance *inst)
{
    mxu_usage u;
    read_usage(inst, &u);
    inst->cpu_mark = u.cpu_us;
}

void mxu_sched_usage_fill(mxu_sched *s, mxu_invocation *inv, mxu_invoke_res *res)
{
    MXU_UNUSED(s);
    mxu_pool *pool = inv->pool;
    mxu_instance *inst = inv->inst;
    res->start_ms = inv->start_ms;
    res->fn = pool->version;
    res->memory_bytes = pool->m->memory_bytes;
    res->executor = "";
    if (inst == NULL || inv->dispatched_ns == 0)
        return;
    res->executor = mxu_unit_executor(pool->unit)->name;
    mxu_usage u;
    read_usage(inst, &u);
    /* A reading can go backwards only if it failed (process gone): then
     * the exit usage is final and the mark is from before. */
    res->cpu_us = u.cpu_us > inst->cpu_mark ? u.cpu_us - inst->cpu_mark : 0;
    if (u.cpu_us > inst->cpu_mark)
        inst->cpu_mark = u.cpu_us;
    res->peak_bytes = u.peak_bytes;
}

void mxu_sched_usage_orphan(mxu_sched *s, mxu_invocation *inv, const mxu_invoke_res *res)
{
    mxu_usage_record r;
    mxu_inv_usage_record(res, &r);
    r.bytes_in = inv->req.bytes_in;
    /* Nobody got an answer: no HTTP status, and the code says why. */
    r.http_status = 0;
    if (inv->dispatched_ns == 0)
        r.code = "client_gone";
    mxu_meter_record(s->cfg.meter, &r, NULL, NULL);
}
