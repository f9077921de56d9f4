/*
 * sched — turns invocations into work on instances.
 *
 * Per unit (function version) a pool of instances: warm instances for runtime
 * c, reused across invocations with up to `concurrency` in flight each; one
 * process per invocation for runtime exec. Pools scale up on demand to
 * max_instances, queue beyond that (bounded), keep min_instances warm for
 * versions an alias points at, and scale down after keep_alive idle.
 *
 * Admission: the node has a memory budget; an instance starts only if its
 * manifest memory fits next to what is already reserved and what the
 * executors' spares hold (standby, exec.h). If it does not, spares are shed
 * first, then idle instances of other functions are stopped to make room,
 * and the invocation waits in the queue until memory is free or its wait
 * runs out. Executors make spares only where the budget has room for them.
 *
 * Deadlines: the manifest's timeout runs from dispatch to the instance; when
 * it passes, the caller gets an error and the instance is killed and
 * replaced. Queue waits are bounded separately.
 *
 * Instances are single-threaded and serve pipelined invocations in order, so
 * when one dies, the first unanswered invocation is the one that killed it and
 * those behind it never started: they go back to the head of the queue.
 */
#ifndef MXU_SCHED_H
#define MXU_SCHED_H

#include "core/core.h"
#include "meter/meter.h"
#include "policy/policy.h"
#include "registry/registry.h"
#include "resolve/resolve.h"
#include "unit/frame.h"

#include <jansson.h>
#include <uv.h>

typedef struct mxu_sched mxu_sched;
typedef struct mxu_invocation mxu_invocation;

typedef struct mxu_sched_config {
    uint64_t memory_budget;    /* bytes; 0 = 80 % of the machine's (or cgroup's) memory */
    uint32_t queue_max;        /* queued invocations per version; 0 = 1000 */
    uint64_t queue_timeout_ms; /* longest wait for an instance; 0 = 30 s */
    uint64_t start_timeout_ms; /* instance start to handshake; 0 = 10 s */
    size_t max_response_bytes; /* 0 = 6 MiB */
    size_t max_log_bytes;      /* log kept per invocation; 0 = 64 KiB */
    const char *node_env;      /* "MXU_NODE=<id>", given to every instance */
    mxu_resolver *resolver;    /* binds units' resource descriptors; NULL = none */
    uint32_t max_call_depth;   /* svc calls nested deeper fail; 0 = 8 */
    const char *log_dir;       /* function logs are kept here */
    /* The executor of manifests that name none; NULL = "process". */
    const char *default_executor;
    /* Usage records (docs/metering.md); NULL = metering off: no record is
     * written and no per-invocation CPU or memory is read. The scheduler
     * records what no caller can: svc calls, and invocations whose caller
     * went away before the result. */
    mxu_meter *meter;
    /* Link limits of svc descriptors and the callee tenant's quota for svc
     * calls (docs/policy.md); NULL = none. */
    mxu_policy *policy;
} mxu_sched_config;

int mxu_sched_create(uv_loop_t *loop, mxu_registry *reg, const mxu_sched_config *cfg,
                     mxu_sched **out, mxu_err *err);
/* Frees everything; call after mxu_sched_shutdown() completed. */
void mxu_sched_destroy(mxu_sched *s);

/* Stop taking invocations; let in-flight and queued ones finish for at most
 * `drain_ms`, fail the rest, stop every instance (BYE, then SIGKILL after a
 * grace period), and call done(ud) once no instance process is left. While
 * it drains, continuations (mxu_invoke_req.continuation) are still taken. */
void mxu_sched_shutdown(mxu_sched *s, uint64_t drain_ms, void (*done)(void *ud), void *ud);

/* Work outside the scheduler that will invoke again — a service run between
 * its steps — holds a shutdown's drain open until it is released (or the
 * drain time is up). */
void mxu_sched_hold(mxu_sched *s);
void mxu_sched_release(mxu_sched *s);
/* Whether a shutdown has begun: new work is refused from then on. */
bool mxu_sched_shutting_down(const mxu_sched *s);

/* Start min_instances for every aliased version (call once at start). */
void mxu_sched_warm_all(mxu_sched *s);

/* ---- invoking ---- */

enum mxu_inv_error {
    MXU_INV_OK = 0,        /* the function answered (whatever its status) */
    MXU_INV_TIMEOUT,       /* ran past its timeout; instance killed */
    MXU_INV_CRASHED,       /* the instance died while running it */
    MXU_INV_FAILED,        /* exec runtime: non-zero exit */
    MXU_INV_START_FAILED,  /* no instance could be started */
    MXU_INV_BAD_RESPONSE,  /* response too large or malformed */
    MXU_INV_QUEUE_FULL,    /* every instance busy and the queue full */
    MXU_INV_NO_CAPACITY,   /* no memory to start an instance */
    MXU_INV_QUEUE_TIMEOUT, /* waited too long for an instance */
    MXU_INV_SHUTTING_DOWN, /* node is stopping */
};

/* A stable machine-readable name: "function_timeout", "queue_full", ... */
const char *mxu_inv_error_code(enum mxu_inv_error e);

/* What to invoke. Everything is borrowed and must stay valid until the
 * callback ran or mxu_sched_cancel() returned — except `body`, which is taken. */
typedef struct mxu_invoke_req {
    mxu_slice method;
    mxu_slice path;  /* sub-path, "/" if none */
    mxu_slice query; /* raw, without '?' */
    const mxu_slice *hdr_names;
    const mxu_slice *hdr_values;
    uint32_t nhdr;
    mxu_buf body;
    uint64_t deadline_ms; /* a caller's deadline (loop time, uv_now); 0 = none:
                             the invocation gets the lesser of it and its timeout */
    uint32_t depth;       /* svc nesting: 0 for a client's invocation */
    uint64_t bytes_in;    /* the request's size as the meter counts it (docs/metering.md) */
    uint64_t start_ms;    /* wall clock when the caller took it in, if it read the clock
                             just before (it saves a reading); 0 = when it is invoked */
    /* Its class in the queue: when the version is saturated, critical waits
     * before default before batch, and a full queue sheds the newest waiter
     * of the lowest class for an arrival of a higher one (docs/policy.md). */
    enum mxu_priority priority;
    /* Work the node took in before a shutdown began — a service run's next
     * step, an svc call made by an invocation in flight — rather than a new
     * request: admitted while the node drains (docs/services.md). */
    bool continuation;
} mxu_invoke_req;

typedef struct mxu_invoke_res {
    uint64_t id;
    enum mxu_inv_error error;
    const char *message;     /* for errors: one sentence for people */
    uint32_t retry_after_s;  /* for QUEUE_FULL / NO_CAPACITY */
    int status;              /* MXU_INV_OK: the function's status */
    mxu_header_list headers; /* MXU_INV_OK: the function's headers (valid during cb) */
    mxu_buf body;            /* MXU_INV_OK: the body; the callback may steal it */
    bool cold;               /* this invocation waited for an instance to start */
    uint64_t queued_us;      /* time waiting for an instance */
    uint64_t run_us;         /* dispatch to result; 0 if it never reached an instance */
    uint64_t done_ns;        /* mxu_now_ns() when it ended (the callback runs at once):
                                for a caller timing its own answer; 0 if not read */
    /* For the usage record (filled only with metering on, cfg.meter): */
    const char *executor;     /* the instance's executor; "" if none ran it */
    uint64_t memory_bytes;    /* the version's configured memory */
    uint64_t cpu_us;          /* the instance's CPU time since its previous result, or since it
                                 became ready: exact with one invocation at a time, approximate
                                 when several ran at once (the CPU between two results goes to
                                 the later one; summed, nothing is counted twice) */
    uint64_t peak_bytes;      /* the instance's peak resident memory (VmHWM); 0 if unknown */
    uint64_t start_ms;        /* wall clock when the invocation was handed to the scheduler */
    const mxu_fn_version *fn; /* what was invoked (valid during the callback) */
} mxu_invoke_res;

typedef void (*mxu_invoke_cb)(void *ud, mxu_invoke_res *res);

/* Invoke version `v`. Returns a handle for cancellation. The callback runs
 * exactly once — possibly before this returns (e.g. queue full) — unless the
 * invocation is cancelled first. */
mxu_invocation *mxu_sched_invoke(mxu_sched *s, mxu_fn_version *v, mxu_invoke_req *req,
                                 mxu_invoke_cb cb, void *ud);
/* A fresh invocation id, for what is answered without reaching the scheduler
 * (404, 413, and later 401/403): every answer to /fn/ carries an id. */
uint64_t mxu_sched_new_invocation_id(mxu_sched *s);

/* How an invocation ended, in the meter's words. */
enum mxu_usage_status mxu_inv_usage_status(enum mxu_inv_error e);
/* The usage record of a result, as far as the scheduler knows it: everything
 * but bytes_in, bytes_out, http_status and the caller, which the one who
 * answers fills in (wall_us is set to queue + run time; a caller that saw
 * the request arrive earlier may set it from then). Strings point into
 * `res` and its version. */
void mxu_inv_usage_record(const mxu_invoke_res *res, mxu_usage_record *out);

/* The usage record of an invocation made on behalf of another one (an svc
 * call, a service's step): `res` as the callee ended, the request's size as
 * the meter counts it, and the caller (its invocation id, and its version,
 * named with its tenant when the record is another tenant's). Nothing with
 * metering off. */
void mxu_sched_record_call(mxu_sched *s, const mxu_invoke_res *res, uint64_t bytes_in,
                           uint64_t caller_inv, const mxu_fn_version *caller);
/* The same for a call refused before it ran (a limit, a quota, a policy
 * rule): a rejected invocation of `callee`. */
void mxu_sched_record_call_rejected(mxu_sched *s, const mxu_fn_version *callee, int http_status,
                                    const char *code, uint64_t caller_inv,
                                    const mxu_fn_version *caller);

/* The caller is gone: the callback will not run. A queued invocation is
 * dropped; a running one finishes, but its result is discarded. */
void mxu_sched_cancel(mxu_invocation *inv);
/* The same, and `gone(ud)` runs once the invocation is really over: at once
 * for a queued one, when its instance is done with it for a running one (the
 * caller's concurrency slots are held until then). */
void mxu_sched_cancel_then(mxu_invocation *inv, void (*gone)(void *ud), void *ud);

/* ---- services ---- */

/* How an svc: call whose callee is a service (kind: service) is run: the
 * scheduler does not run services, the compose engine does, and it sits
 * above the scheduler; the node hands it down with this (src/compose's
 * mxu_compose_attach). `invoke` and `cancel_then` have the shape and
 * contract of mxu_sched_invoke and mxu_sched_cancel_then. Without it such a
 * call fails, saying why. */
typedef struct mxu_sched_services {
    void *(*invoke)(void *ud, mxu_fn_version *v, mxu_invoke_req *req, mxu_invoke_cb cb,
                    void *cb_ud);
    void (*cancel_then)(void *ud, void *run, void (*gone)(void *gone_ud), void *gone_ud);
    void *ud;
} mxu_sched_services;
void mxu_sched_set_services(mxu_sched *s, const mxu_sched_services *ops); /* NULL: none */

/* ---- observing ---- */

/* {"memory_budget":..,"memory_reserved":..,"memory_standby":..,"memory_free":..,
 *  "instances":..,"queued":..}: standby is what spares hold; free is the budget
 * less reserved and standby. */
json_t *mxu_sched_capacity_json(mxu_sched *s);
/* Array of instances ({"tenant", "function", "version", ...}) of one
 * tenant's (NULL: every tenant's) function `function` (NULL: all of them). */
json_t *mxu_sched_instances_json(mxu_sched *s, const char *tenant, const char *function);
/* Per version counters of one tenant's function:
 * {"3": {"invocations":..,"errors":..,..}} */
json_t *mxu_sched_stats_json(mxu_sched *s, const char *tenant, const char *function);

/* A policy denial on a link of `tenant`'s `function` (its caller for svc
 * and resource links, its callee for a client's invocation): one line
 * "policy denial: WHY" in the function's log (stream "mxu", invocation
 * `invocation`, 0 = none) and a warning in the node's log. */
void mxu_sched_log_denial(mxu_sched *s, const char *tenant, const char *function, uint32_t version,
                          uint64_t invocation, const char *why);

/* Log records of a tenant's function, oldest first, after cursor `after` (0 =
 * from the start of what is kept), at most `limit`; sets *next to the cursor
 * to pass next time. Records: {"time","version","invocation","stream","text"}. */
json_t *mxu_sched_logs_json(mxu_sched *s, const char *tenant, const char *function, uint64_t after,
                            size_t limit, uint64_t *next);

#endif
