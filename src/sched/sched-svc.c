/*
 * svc: descriptors — a function calling another unit through the node's own
 * dispatcher. The call is an ordinary invocation of the callee (same pools,
 * queues, limits), with two things carried over from the caller: its
 * remaining deadline (the callee never runs past it) and its call depth (a
 * chain deeper than max_call_depth fails, which stops cycles).
 *
 * The caller's instance is blocked in the SDK while the callee runs. If the
 * caller dies meanwhile, the callee's invocation is cancelled: its result
 * would have nobody to go to.
 *
 * Names resolve in the calling function's tenant: `svc:resize@prod` of a
 * function of tenant acme is acme's `resize`. `svc:TENANT/NAME@REF` names
 * another tenant's function. Every call passes the policy's unit -> unit
 * rules (docs/policy.md "Policy documents"): a deny refuses it
 * (MXU_RES_DENIED, naming the rule); a cross-tenant call with no rule that
 * allows it is refused too, unless the callee is public: a public callee is
 * what anyone may invoke over HTTP without a key, so calling it from another
 * tenant gives nobody more than they had.
 *
 * A svc call is metered like a client's invocation, marked with its caller.
 * Its record is handed to the meter before the reply goes to the caller, so
 * it is queued before the caller's own record can be; the meter commits in
 * order, so the client's answer (held until the caller's record is durable)
 * never goes out before the callee's record is durable either.
 */
#include "sched-internal.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

typedef struct svc_call {
    mxu_instance *caller;
    uint64_t inv_id;
    uint32_t call_id;
    mxu_invocation *callee; /* NULL once answered */
    void *callee_run;       /* a service's run instead (s->services), NULL once answered */
    bool to_service;
    /* The request's strings, copied: the RES_OP frame they came in is gone
     * once this returns, and the callee may start much later. */
    mxu_buf strings;
    mxu_slice method, path, query;
    mxu_slice *names, *values;
    uint32_t nhdr;
    uint64_t caller_deadline;
    uint64_t bytes_in;
    /* The link's concurrency slot, and the callee tenant's quota reservation
     * (docs/policy.md), given back in svc_release. */
    mxu_shape_ticket ticket;
    bool quota_reserved;
    char callee_tenant[40];
    mxu_policy *pol;
    char tp[56]; /* the traceparent passed on to the callee (svc_trace_context) */
} svc_call;

static bool is_traceparent(mxu_slice name)
{
    return name.len == 11 && strncasecmp(name.ptr, "traceparent", 11) == 0;
}

/* W3C trace context goes on through svc: calls: a caller invoked with a
 * `traceparent` (a client's, or a service step's) that sets none of its own
 * passes its trace to the callee, under a parent id of the call's own, as a
 * service's steps do (docs/services.md). c->names has room for one more. */
static void svc_trace_context(svc_call *c, const mxu_invocation *inv)
{
    for (uint32_t i = 0; i < c->nhdr; i++) {
        if (is_traceparent(c->names[i]))
            return;
    }
    for (uint32_t i = 0; i < inv->req.nhdr; i++) {
        mxu_traceparent tp;
        if (!is_traceparent(inv->req.hdr_names[i]))
            continue;
        if (mxu_traceparent_parse(inv->req.hdr_values[i].ptr, inv->req.hdr_values[i].len, &tp) < 0)
            return;
        /* A span id needs to be unique, not secret: the call's identity and
         * the time, mixed (splitmix64). */
        uint64_t x = mxu_now_ns() ^ (c->inv_id * 0x9E3779B97F4A7C15ull) ^ c->call_id;
        x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
        x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
        mxu_traceparent_child(&tp, x ^ (x >> 31));
        mxu_traceparent_format(&tp, c->tp, sizeof(c->tp));
        c->names[c->nhdr] = (mxu_slice){"traceparent", 11};
        c->values[c->nhdr] = (mxu_slice){c->tp, 55};
        c->nhdr++;
        return;
    }
}

static void svc_free(svc_call *c)
{
    mxu_buf_free(&c->strings);
    free(c->names);
    free(c->values);
    free(c);
}

/* The call is over for shaping: give back its link slot and the callee
 * tenant's quota reservation (after its record was counted), and free it. */
static void svc_release(void *ud)
{
    svc_call *c = ud;
    mxu_shape_release(&c->ticket);
    if (c->quota_reserved)
        mxu_quota_release(c->pol, c->callee_tenant);
    svc_free(c);
}

/* The caller is done with the call. */
static void svc_detach(svc_call *c)
{
    mxu_instance *inst = c->caller;
    inst->svc_call = NULL;
    inst->ops_inflight--;
    c->caller = NULL;
    mxu_instance_maybe_free(inst);
}

static void svc_finish(svc_call *c)
{
    svc_detach(c);
    svc_release(c);
}

/* The name a record gives its caller: "fn@3", or "tenant/fn@3" when the
 * record is another tenant's (the callee's), or it would read as one of
 * that tenant's functions. */
static void caller_name(const mxu_fn_version *caller, const mxu_fn_version *callee, char *out,
                        size_t outlen)
{
    if (callee && strcmp(mxu_fn_version_tenant(caller), mxu_fn_version_tenant(callee)) != 0)
        snprintf(out, outlen, "%s/%s@%u", mxu_fn_version_tenant(caller), caller->function,
                 caller->version);
    else
        snprintf(out, outlen, "%s@%u", caller->function, caller->version);
}

void mxu_sched_record_call(mxu_sched *s, const mxu_invoke_res *res, uint64_t bytes_in,
                           uint64_t caller_inv, const mxu_fn_version *caller)
{
    if (s->cfg.meter == NULL)
        return;
    mxu_usage_record r;
    mxu_inv_usage_record(res, &r);
    r.bytes_in = bytes_in;
    if (res->error == MXU_INV_OK) {
        /* the reply's body and headers, as the HTTP path counts a response's */
        r.http_status = res->status;
        r.bytes_out = res->body.len;
        mxu_header_list it = res->headers;
        mxu_slice name, value;
        while (mxu_wire_next_header(&it, &name, &value))
            r.bytes_out += (uint64_t)name.len + value.len + 4;
    }
    r.caller = caller_inv;
    char cname[160];
    caller_name(caller, res->fn, cname, sizeof(cname));
    r.caller_function = cname;
    mxu_meter_record(s->cfg.meter, &r, NULL, NULL);
}

void mxu_sched_record_call_rejected(mxu_sched *s, const mxu_fn_version *callee, int http_status,
                                    const char *code, uint64_t caller_inv,
                                    const mxu_fn_version *caller)
{
    if (s->cfg.meter == NULL)
        return;
    char cname[160];
    caller_name(caller, callee, cname, sizeof(cname));
    mxu_usage_record r = {
        .invocation = mxu_sched_new_invocation_id(s),
        .tenant = mxu_fn_version_tenant(callee),
        .function = callee->function,
        .version = callee->version,
        .executor = "",
        .start_ms = mxu_wall_ms(),
        .memory_bytes = callee->manifest->memory_bytes,
        .status = MXU_USAGE_REJECTED,
        .http_status = http_status,
        .code = code,
        .caller = caller_inv,
        .caller_function = cname,
    };
    mxu_meter_record(s->cfg.meter, &r, NULL, NULL);
}

/* The callee's usage record. */
static void svc_record(svc_call *c, const mxu_invoke_res *res)
{
    mxu_sched_record_call(c->caller->pool->sched, res, c->bytes_in, c->inv_id,
                          c->caller->pool->version);
}

static void on_callee_result(void *ud, mxu_invoke_res *res)
{
    svc_call *c = ud;
    mxu_instance *inst = c->caller;
    c->callee = NULL;
    c->callee_run = NULL;
    mxu_sched *s = inst->pool->sched;
    svc_record(c, res);
    if (res->error != MXU_INV_OK) {
        /* The callee failed as a platform matter: say which way. */
        bool past = c->caller_deadline && sched_now(s) >= c->caller_deadline;
        uint32_t st = past ? MXU_RES_DEADLINE : MXU_RES_CALL_FAILED;
        _cleanup_free_ char *msg = mxu_asprintf("%s: %s", mxu_inv_error_code(res->error),
                                                res->message ? res->message : "");
        mxu_instance_res_reply(inst, c->inv_id, c->call_id, st, msg, 0, 0, NULL, 0);
        svc_finish(c);
        return;
    }
    /* body, then header pairs, as many as fit one reply */
    mxu_slice vals[MXU_RES_MAX_ARGS];
    uint32_t nvals = 0;
    vals[nvals++] = (mxu_slice){res->body.data ? res->body.data : "", (uint32_t)res->body.len};
    mxu_header_list it = res->headers;
    mxu_slice name, value;
    while (nvals + 2 <= MXU_RES_MAX_ARGS && mxu_wire_next_header(&it, &name, &value)) {
        vals[nvals++] = name;
        vals[nvals++] = value;
    }
    mxu_instance_res_reply(inst, c->inv_id, c->call_id, MXU_RES_OK, NULL, (uint64_t)res->status, 0,
                           vals, nvals);
    svc_finish(c);
}

/* A call refused before it ran (a limit, a quota, a policy rule): a
 * rejected invocation of the callee `v`, with its caller. */
static void svc_record_rejected(svc_call *c, mxu_pool *pool, const mxu_fn_version *v,
                                int http_status, const char *code)
{
    mxu_sched_record_call_rejected(pool->sched, v, http_status, code, c->inv_id, pool->version);
}

/* The link's limits (the caller's svc descriptor) and the callee tenant's
 * quota. A refusal is answered RATE_LIMITED with the limit in the message,
 * and recorded as a rejected invocation of the callee (http 429), like a
 * client's; -1 then, and the call is finished. */
static int svc_shape(svc_call *c, mxu_pool *pool, const mxu_fn_version *v,
                     const mxu_resource_decl *decl)
{
    mxu_sched *s = pool->sched;
    const char *caller_tenant = mxu_fn_version_tenant(pool->version);
    mxu_limits lim = {.rate = decl->rate,
                      .period_ms = decl->rate_period_ms,
                      .burst = decl->burst,
                      .concurrency = decl->max_concurrency};
    mxu_shape_denial d;
    snprintf(c->callee_tenant, sizeof(c->callee_tenant), "%s", mxu_fn_version_tenant(v));
    int rc = mxu_shape_admit_link(s->cfg.policy, caller_tenant, pool->version->function, decl->name,
                                  &lim, mxu_now_ns(), &c->ticket, &d);
    if (rc == 0 && s->cfg.meter) {
        rc = mxu_quota_reserve(s->cfg.policy, c->callee_tenant, mxu_wall_ms(), &d);
        c->quota_reserved = rc == 0;
    }
    if (rc == 0)
        return 0;
    svc_record_rejected(c, pool, v, 429, d.code);
    _cleanup_free_ char *why = mxu_asprintf("%s (retry after %u s)", d.message, d.retry_after_s);
    mxu_instance_res_reply(c->caller, c->inv_id, c->call_id, MXU_RES_RATE_LIMITED, why, 0, 0, NULL,
                           0);
    svc_finish(c);
    return -1;
}

/* A link the policy denies: MXU_E_DENIED in the caller with the rule, the
 * denial in the caller's log and the node's, and (when the callee exists) a
 * rejected invocation of the callee (http 403) with its caller. */
static void svc_deny(svc_call *c, mxu_pool *pool, const mxu_fn_version *v,
                     const mxu_resource_decl *decl, const char *why)
{
    mxu_sched *s = pool->sched;
    const mxu_fn_version *cv = pool->version;
    _cleanup_free_ char *msg = mxu_asprintf("%s: %s", decl->uri, why);
    mxu_sched_log_denial(s, mxu_fn_version_tenant(cv), cv->function, cv->version, c->inv_id, msg);
    if (v)
        svc_record_rejected(c, pool, v, 403, "forbidden");
    mxu_instance_res_reply(c->caller, c->inv_id, c->call_id, MXU_RES_DENIED, msg, 0, 0, NULL, 0);
    svc_finish(c);
}

/* Copy a slice into the strings buffer; returns its offset. Slices are made
 * from offsets once the buffer stops growing. */
static size_t keep(svc_call *c, mxu_slice s)
{
    size_t off = c->strings.len;
    mxu_buf_append(&c->strings, s.ptr, s.len);
    return off;
}

void mxu_sched_svc_call(mxu_instance *caller, mxu_invocation *inv, const mxu_res_op_msg *msg,
                        const mxu_resource_decl *decl)
{
    mxu_pool *pool = caller->pool;
    mxu_sched *s = pool->sched;
    svc_call *c = mxu_calloc(1, sizeof(*c));
    c->caller = caller;
    c->pol = s->cfg.policy;
    c->inv_id = inv->id;
    c->call_id = msg->call_id;
    caller->svc_call = c;

    /* svc:NAME, svc:NAME@REF, svc:TENANT/NAME[@REF] (the manifest was
     * validated, so the parts fit) */
    const char *own = mxu_fn_version_tenant(pool->version);
    char tenant[40], name[64], ref[64] = "";
    const char *target = decl->target;
    const char *slash = strchr(target, '/');
    if (slash) {
        snprintf(tenant, sizeof(tenant), "%.*s",
                 (int)MXU_MIN((size_t)(slash - target), sizeof(tenant) - 1), target);
        target = slash + 1;
    } else {
        snprintf(tenant, sizeof(tenant), "%s", own);
    }
    const char *at = strchr(target, '@');
    size_t nlen = at ? (size_t)(at - target) : strlen(target);
    snprintf(name, sizeof(name), "%.*s", (int)MXU_MIN(nlen, sizeof(name) - 1), target);
    if (at)
        snprintf(ref, sizeof(ref), "%s", at + 1);
    mxu_err err;
    mxu_fn_version *v = s->reg ? mxu_registry_resolve(s->reg, tenant, name, ref, &err) : NULL;
    bool cross = strcmp(tenant, own) != 0;
    if (s->cfg.policy && (cross || mxu_policy_has_link_rules(s->cfg.policy, MXU_LINK_UNIT))) {
        /* unit -> unit: the policy's rules; with none that matches, a link
         * within the tenant is open and one to another tenant only to a
         * public callee (what anyone may invoke over HTTP without a key).
         * The same answer whether or not a cross-tenant callee is there: a
         * refusal must not list another tenant's functions. */
        mxu_policy_link l = {.kind = MXU_LINK_UNIT,
                             .from_tenant = own,
                             .from_fn = pool->version->function,
                             .to_tenant = tenant,
                             .to_name = name};
        bool open = !cross || (v && v->manifest->is_public);
        mxu_err perr;
        if (mxu_policy_link_check(s->cfg.policy, &l, open, NULL, &perr) < 0) {
            svc_deny(c, pool, v, decl, perr.msg);
            return;
        }
    } else if (cross && (v == NULL || !v->manifest->is_public)) {
        /* no policy (unit tests): cross-tenant calls only to public callees */
        svc_deny(c, pool, v, decl, "cross-tenant svc calls need a policy");
        return;
    }
    if (v == NULL) {
        mxu_instance_res_reply(caller, c->inv_id, c->call_id, MXU_RES_NOT_FOUND,
                               s->reg ? err.msg : "no registry", 0, 0, NULL, 0);
        svc_finish(c);
        return;
    }
    if (inv->req.depth + 1 > s->cfg.max_call_depth) {
        char why[160];
        snprintf(why, sizeof(why), "call depth limit of %u reached calling %s (a cycle of calls?)",
                 s->cfg.max_call_depth, decl->target);
        mxu_instance_res_reply(caller, c->inv_id, c->call_id, MXU_RES_CALL_FAILED, why, 0, 0, NULL,
                               0);
        svc_finish(c);
        return;
    }

    if (v->manifest->service && s->services.invoke == NULL) {
        mxu_instance_res_reply(caller, c->inv_id, c->call_id, MXU_RES_CALL_FAILED,
                               "this node cannot run services", 0, 0, NULL, 0);
        svc_finish(c);
        return;
    }
    if (s->cfg.policy && svc_shape(c, pool, v, decl) < 0)
        return;

    c->nhdr = (msg->nargs - 4) / 2;
    size_t off_m = keep(c, msg->args[0]), off_p = keep(c, msg->args[1]);
    size_t off_q = keep(c, msg->args[2]);
    size_t *hoff = mxu_calloc(c->nhdr * 2 + 1, sizeof(size_t));
    for (uint32_t i = 0; i < c->nhdr * 2; i++)
        hoff[i] = keep(c, msg->args[4 + i]);
    const char *base = c->strings.data ? c->strings.data : "";
    c->method = (mxu_slice){base + off_m, msg->args[0].len};
    c->path = (mxu_slice){base + off_p, msg->args[1].len};
    c->query = (mxu_slice){base + off_q, msg->args[2].len};
    c->names = mxu_calloc(c->nhdr + 1, sizeof(mxu_slice));
    c->values = mxu_calloc(c->nhdr + 1, sizeof(mxu_slice));
    for (uint32_t i = 0; i < c->nhdr; i++) {
        c->names[i] = (mxu_slice){base + hoff[2 * i], msg->args[4 + 2 * i].len};
        c->values[i] = (mxu_slice){base + hoff[2 * i + 1], msg->args[5 + 2 * i].len};
    }
    free(hoff);
    if (c->method.len == 0)
        c->method = (mxu_slice){"POST", 4};
    if (c->path.len == 0)
        c->path = (mxu_slice){"/", 1};
    svc_trace_context(c, inv);

    c->caller_deadline = inv->timed ? inv->deadline_ms : 0;
    mxu_invoke_req req = {
        .method = c->method,
        .path = c->path,
        .query = c->query,
        .hdr_names = c->names,
        .hdr_values = c->values,
        .nhdr = c->nhdr,
        .deadline_ms = c->caller_deadline,
        .depth = inv->req.depth + 1,
        .priority = inv->req.priority, /* a call works for its caller's class */
        .continuation = true,          /* its caller is in flight: it drains with it */
    };
    mxu_buf_append(&req.body, msg->args[3].ptr, msg->args[3].len);
    /* As for HTTP: the body, and each header as "name: value\r\n". */
    req.bytes_in = msg->args[3].len;
    for (uint32_t i = 0; i < c->nhdr; i++)
        req.bytes_in += (uint64_t)c->names[i].len + c->values[i].len + 4;
    c->bytes_in = req.bytes_in;
    /* The callback may run before invoke returns (queue full, ...). */
    if (v->manifest->service) {
        /* A service: run by the compose engine (mxu_sched_set_services). */
        c->to_service = true;
        void *run = s->services.invoke(s->services.ud, v, &req, on_callee_result, c);
        mxu_buf_free(&req.body);
        if (run && caller->svc_call == c)
            c->callee_run = run;
        return;
    }
    mxu_invocation *callee = mxu_sched_invoke(s, v, &req, on_callee_result, c);
    mxu_buf_free(&req.body);
    if (callee && caller->svc_call == c)
        c->callee = callee;
}

void mxu_sched_set_services(mxu_sched *s, const mxu_sched_services *ops)
{
    s->services = ops ? *ops : (mxu_sched_services){0};
}

void mxu_sched_svc_abandon(mxu_instance *caller)
{
    svc_call *c = caller->svc_call;
    mxu_invocation *callee = c->callee;
    void *run = c->callee_run;
    c->callee = NULL;
    c->callee_run = NULL;
    svc_detach(c);
    /* A callee still running keeps the link's slot until it is over. */
    mxu_sched *s = caller->pool->sched;
    if (c->to_service)
        s->services.cancel_then(s->services.ud, run, svc_release, c);
    else
        mxu_sched_cancel_then(callee, svc_release, c);
}
