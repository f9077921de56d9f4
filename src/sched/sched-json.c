/* What the scheduler shows of itself: capacity, instances, counters, logs. */
#include "sched-internal.h"

#include <string.h>

json_t *mxu_sched_capacity_json(mxu_sched *s)
{
    size_t queued = 0;
    for (mxu_pool *p = s->pools; p != NULL; p = p->hh.next)
        queued += p->queue.len;
    /* Standby: what executors' spares hold, charged to the budget like
     * reservations (admission sheds them when an instance needs the room). */
    uint64_t standby = mxu_exec_standby_bytes(s->exec, NULL);
    uint64_t used = MXU_MIN(s->reserved + standby, s->cfg.memory_budget);
    return json_pack("{s:I, s:I, s:I, s:I, s:I, s:I}", "memory_budget",
                     (json_int_t)s->cfg.memory_budget, "memory_reserved", (json_int_t)s->reserved,
                     "memory_standby", (json_int_t)standby, "memory_free",
                     (json_int_t)(s->cfg.memory_budget - used), "instances",
                     (json_int_t)s->ninstances, "queued", (json_int_t)queued);
}

/* Is pool p's version tenant's (any tenant: NULL) function (any: NULL)? */
static bool pool_is(const mxu_pool *p, const char *tenant, const char *function)
{
    return (tenant == NULL || strcmp(p->version->tenant, tenant) == 0) &&
           (function == NULL || strcmp(p->version->function, function) == 0);
}

json_t *mxu_sched_instances_json(mxu_sched *s, const char *tenant, const char *function)
{
    json_t *arr = json_array();
    for (mxu_pool *p = s->pools; p != NULL; p = p->hh.next) {
        if (!pool_is(p, tenant, function))
            continue;
        mxu_list_foreach(&p->instances, it)
        {
            json_array_append_new(arr,
                                  mxu_instance_json(mxu_container_of(it, mxu_instance, plink)));
        }
    }
    return arr;
}

json_t *mxu_sched_stats_json(mxu_sched *s, const char *tenant, const char *function)
{
    json_t *obj = json_object();
    for (mxu_pool *p = s->pools; p != NULL; p = p->hh.next) {
        if (!pool_is(p, tenant, function))
            continue;
        char key[16], last[40] = "";
        snprintf(key, sizeof(key), "%u", p->version->version);
        if (p->stats.last_invoked_ms)
            mxu_format_time_ms(p->stats.last_invoked_ms, last, sizeof(last));
        json_object_set_new(
            obj, key,
            json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:s?}", "invocations",
                      (json_int_t)p->stats.invocations, "errors", (json_int_t)p->stats.errors,
                      "timeouts", (json_int_t)p->stats.timeouts, "crashes",
                      (json_int_t)p->stats.crashes, "cold_starts", (json_int_t)p->stats.cold_starts,
                      "rejected", (json_int_t)p->stats.rejected, "instances", (json_int_t)p->alive,
                      "queued", (json_int_t)p->queue.len, "last_invoked", last[0] ? last : NULL));
    }
    return obj;
}

json_t *mxu_sched_logs_json(mxu_sched *s, const char *tenant, const char *function, uint64_t after,
                            size_t limit, uint64_t *next)
{
    return mxu_logstore_read(s->logs, tenant, function, after, limit, next);
}
