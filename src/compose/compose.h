/*
 * compose — runs services (`kind: service` manifests, src/registry/registry.h
 * "services"): a graph of steps, each a call to a function or another service
 * of the same tenant, linked under rules (routes, retries with backoff, per
 * link timeouts, circuit breakers, fallbacks, the policy's link checks and
 * shaping). A run is invoked exactly like a function version
 * (mxu_sched_invoke's request, callback and result), so the API's /fn/ path
 * calls one or the other and everything after it is the same.
 *
 * Every step call is an ordinary invocation through the scheduler, carrying
 * the run's deadline and a W3C `traceparent` of its own (same trace id, new
 * parent id). Every run leaves a trace (which route was taken and why, the
 * version that ran, timings, attempts, statuses), kept in memory, bounded,
 * per tenant (mxu_compose_trace_json).
 *
 * Circuit breakers are per (tenant, service name, step id): shared by every
 * run and every version of the service, because what they protect is the
 * callee, whose health does not change when the service is redeployed.
 *
 * Loop thread only.
 */
#ifndef MXU_COMPOSE_H
#define MXU_COMPOSE_H

#include "core/core.h"
#include "meter/meter.h"
#include "policy/policy.h"
#include "registry/registry.h"
#include "sched/sched.h"

#include <jansson.h>
#include <uv.h>

typedef struct mxu_compose mxu_compose;
typedef struct mxu_compose_run mxu_compose_run;

typedef struct mxu_compose_config {
    mxu_registry *reg;
    mxu_sched *sched;
    mxu_policy *policy;        /* link rules, link shaping, quotas; NULL = none */
    mxu_meter *meter;          /* a usage record per step call; NULL = metering off */
    uint32_t max_depth;        /* services calling services nested deeper fail; 0 = 8 */
    uint32_t max_run_steps;    /* steps one run may start, nested ones included; 0 = 10,000 */
    size_t trace_max_runs;     /* traces kept per tenant; 0 = 10,000 */
    size_t trace_max_bytes;    /* and at most this many bytes of them per tenant; 0 = 64 MiB */
    size_t max_response_bytes; /* the largest answer a parallel's join may make, as a
                                * function's (mxu_sched_config's); 0 = 6 MiB */
} mxu_compose_config;

int mxu_compose_create(uv_loop_t *loop, const mxu_compose_config *cfg, mxu_compose **out,
                       mxu_err *err);
/* Frees everything. Runs still going are cancelled first (their callbacks
 * never run): call it after the scheduler stopped taking invocations. */
void mxu_compose_destroy(mxu_compose *c);

/* Run service version `v` (v->manifest->service != NULL) for a request, as
 * mxu_sched_invoke does a function: same ownership rules (everything in
 * `req` borrowed until the callback ran or the run was cancelled, except the
 * body, which is taken), and the callback runs exactly once, possibly before
 * this returns, unless the run is cancelled first. The result is the
 * service's answer: the last step's status, headers and body (or the
 * on_error handler's, or a JSON error of the node's), with `traceparent` and
 * `X-Mxu-Trace` headers added. A `traceparent` among the request's headers
 * is continued (its trace id kept); else a new trace starts.
 *
 * Returns the run, or NULL when it answered already. */
mxu_compose_run *mxu_compose_invoke(mxu_compose *c, mxu_fn_version *v, mxu_invoke_req *req,
                                    mxu_invoke_cb cb, void *ud);
/* The caller is gone: the callback will not run; every step call in flight
 * is cancelled, and gone(ud) runs once all of them are really over (their
 * link slots are held until then; at once when none is running). */
void mxu_compose_cancel_then(mxu_compose_run *run, void (*gone)(void *ud), void *ud);

/* Let the scheduler hand svc: calls whose callee is a service to this
 * engine (mxu_sched_set_services); undone by mxu_compose_destroy. */
void mxu_compose_attach(mxu_compose *c);

/* ---- traces ---- */

/* The runs of trace `id` (32 hex digits, as in X-Mxu-Trace) among the
 * traces of `tenant` (NULL: every tenant's), oldest first:
 * {"trace": ID, "runs": [{"run", "tenant", "service", "version", "start",
 *   "duration_us", "status", "error"?, "steps": [{"id", "kind", "route",
 *   "why", "function", "start_us", "duration_us", "attempts", "retries",
 *   "status", "error"?, "calls": [...]}]}]}.
 * NULL with ENOENT if none is kept (never recorded, or evicted). */
json_t *mxu_compose_trace_json(mxu_compose *c, const char *tenant, const char *id, mxu_err *err);
/* The most recent runs, newest first, at most `limit`, of `tenant`'s (NULL:
 * every tenant's) services, of `service` only unless NULL, that `allow`
 * (NULL: all) lets through: [{"trace", "run", "tenant", "service",
 * "version", "start", "duration_us", "status"}]. */
json_t *mxu_compose_traces_json(mxu_compose *c, const char *tenant, const char *service,
                                size_t limit,
                                bool (*allow)(void *ud, const char *tenant, const char *service),
                                void *ud);

/* ---- pieces that stand alone (unit-tested and fuzzed) ---- */

/* A circuit breaker: closed → open after `failures` consecutive failed
 * calls → half-open after `open_ms` (exactly one trial call goes through) →
 * closed if it succeeds, open again if it fails. Pure: time is given. */
enum mxu_breaker_state { MXU_BREAKER_CLOSED, MXU_BREAKER_OPEN, MXU_BREAKER_HALF_OPEN };
typedef struct mxu_breaker {
    enum mxu_breaker_state state;
    uint32_t fails;      /* consecutive failures while closed */
    uint64_t open_until; /* ms: when an open breaker lets a trial through */
    bool trial_out;      /* half-open: the trial call is in flight */
} mxu_breaker;
/* May a call go through at `now`? *trial is set when it is the half-open
 * trial (report its outcome with trial = true). */
bool mxu_breaker_allow(mxu_breaker *b, uint64_t now, bool *trial);
/* The outcome of a call that was allowed. A call that started before the
 * breaker opened changes nothing once it is open. */
void mxu_breaker_report(mxu_breaker *b, bool ok, bool trial, uint64_t now, uint32_t failures,
                        uint64_t open_ms);
/* A trial call that never finished (its run was cancelled): let another try. */
void mxu_breaker_abandon(mxu_breaker *b, bool trial);

/* Weighted draw: `draw` in [0, total of weights) picks the route whose
 * cumulative weight passes it; returns its index among `weights`. */
size_t mxu_weighted_pick(const uint32_t *weights, size_t n, uint64_t draw);

/* RFC 6901 JSON pointer ("" is the whole document; "/a/0/b~1c"); NULL if
 * it names nothing. Borrowed from `root`. */
json_t *mxu_json_pointer(json_t *root, const char *ptr);
/* A JSON value as a switch compares it: a string without quotes; numbers,
 * true, false, null as JSON writes them; NULL for arrays and objects (they
 * match no case). Caller frees. */
char *mxu_json_case_text(const json_t *v);

#endif
