/*
 * /fn/NAME[@REF][/sub/path] — the invocation path, the one that has to be
 * fast. Per request: one allocation for the context (header views included),
 * an allocation-free registry lookup, and the scheduler call; the response
 * copies the function's headers once into a single block.
 *
 * The function is not trusted with the response framing: header names must
 * be tokens and values may not contain CR, LF or NUL (that would let it
 * inject headers or split the response); such headers are dropped, and a
 * 1xx status is a bad response.
 */
#include "api-internal.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#define MAX_FORWARDED_HEADERS 100

typedef struct inv_ctx {
    mxu_api *api;
    mxu_http_req *req;
    mxu_invocation *inv;
    mxu_compose_run *run; /* a service's run instead of inv */
    bool service;
    uint32_t version;
    uint32_t nhdr;
    bool in_invoke; /* inside mxu_sched_invoke(): the callback must not free */
    bool done;
    bool held;         /* answered, waiting for its usage record to be written */
    uint64_t bytes_in; /* for the usage record */
    /* Traffic shaping and quota (docs/policy.md): the concurrency slots it
     * holds, and whether it reserved one invocation of its tenant's quota. */
    mxu_shape_ticket ticket;
    bool quota_reserved;
    char tenant[40];
    /* The forwarded headers' names, then their values: sized to the
     * request (a fixed 100 of each made every context 3.2 KiB, big enough
     * for malloc to consolidate its free lists on many of them). */
    mxu_slice *names, *values;
    mxu_slice hdrs[];
} inv_ctx;

/* Hop-by-hop headers belong to the connection with the node, not the function.
 * Every header of every invocation is checked: names are compared only where
 * the lengths match, which for most headers is nowhere. */
static bool hop_by_hop(const char *name, size_t len)
{
    /* clang-format off */
#define HOP(s) {s, sizeof(s) - 1}
    /* clang-format on */
    static const struct {
        const char *name;
        size_t len;
    } hop[] = {HOP("connection"),
               HOP("keep-alive"),
               HOP("transfer-encoding"),
               HOP("te"),
               HOP("upgrade"),
               HOP("proxy-connection"),
               HOP("proxy-authorization"),
               HOP("trailer"),
               HOP("content-length"),
               HOP("expect")};
#undef HOP
    for (size_t i = 0; i < MXU_ARRAY_LEN(hop); i++) {
        if (hop[i].len == len && strncasecmp(name, hop[i].name, len) == 0)
            return true;
    }
    return false;
}

static bool token_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static bool header_ok(mxu_slice name, mxu_slice value)
{
    if (name.len == 0)
        return false;
    for (uint32_t i = 0; i < name.len; i++) {
        if (!token_char(name.ptr[i]))
            return false;
    }
    for (uint32_t i = 0; i < value.len; i++) {
        char c = value.ptr[i];
        if (c == '\r' || c == '\n' || c == '\0')
            return false;
    }
    return true;
}

static bool slice_ieq(mxu_slice s, const char *lit)
{
    size_t n = strlen(lit);
    return s.len == n && strncasecmp(s.ptr, lit, n) == 0;
}

static int inv_status(enum mxu_inv_error e)
{
    switch (e) {
    case MXU_INV_OK:
        return 200;
    case MXU_INV_TIMEOUT:
        return 504;
    case MXU_INV_CRASHED:
    case MXU_INV_FAILED:
    case MXU_INV_START_FAILED:
    case MXU_INV_BAD_RESPONSE:
        return 502;
    case MXU_INV_QUEUE_FULL:
        return 429;
    case MXU_INV_NO_CAPACITY:
    case MXU_INV_QUEUE_TIMEOUT:
    case MXU_INV_SHUTTING_DOWN:
        return 503;
    }
    return 500;
}

static void ctx_release(inv_ctx *c);

/* The invocation is over for shaping: give back its concurrency slots, and
 * its quota reservation (its record, if any, was counted just before). */
static void shape_done(inv_ctx *c)
{
    mxu_shape_release(&c->ticket);
    if (c->quota_reserved) {
        c->quota_reserved = false;
        mxu_quota_release(c->api->cfg.policy, c->tenant);
    }
}

/* The answer is out (or withheld): the invocation's slots and quota
 * reservation go back (its record was counted when it was recorded), and
 * the context goes. Runs inside api_respond_metered() when the record was
 * stored at once, which may be inside mxu_sched_invoke(). */
static void on_sent(void *ud)
{
    inv_ctx *c = ud;
    shape_done(c);
    ctx_release(c);
}

/* 429 from traffic shaping or a quota: Retry-After from the limit, the
 * limit named in the message, recorded as rejected. */
static void reject_shaped(mxu_api *api, mxu_http_req *req, const mxu_fn_version *v,
                          const mxu_shape_denial *d)
{
    api_reject(api, req,
               &(api_rejection){.tenant = mxu_fn_version_tenant(v),
                                .function = v->function,
                                .version = v->version,
                                .memory_bytes = v->manifest->memory_bytes,
                                .status = 429,
                                .code = d->code,
                                .message = d->message,
                                .retry_after_s = MXU_MAX(d->retry_after_s, 1u)});
}

/* 403 from a link rule: named in the answer, the node's log and the
 * function's, and recorded as a rejected invocation. */
static void api_deny_invocation(mxu_api *api, mxu_http_req *req, const char *tenant,
                                const char *function, uint32_t version, const char *why)
{
    if (version) /* the node's log too */
        mxu_sched_log_denial(api->cfg.sched, tenant, function, version, 0, why);
    else
        mxu_warn("denied 403: %s %.200s from %s: %s", mxu_http_req_method(req),
                 mxu_http_req_path(req), mxu_http_req_peer(req), why);
    api_reject_metered(api, req, tenant, function, version, 403, "forbidden", "%s", why);
}

/* Answer, once the usage record is in the journal when metering is on. */
static void finish(inv_ctx *c, mxu_invoke_res *res, int status, const mxu_http_header *hdrs,
                   size_t nh, mxu_buf *body)
{
    mxu_api *api = c->api;
    mxu_usage_record r; /* read only when metering is on */
    if (api->cfg.meter) {
        mxu_inv_usage_record(res, &r);
        r.bytes_in = c->bytes_in;
        /* From the moment the whole request had arrived, which is earlier
         * than the scheduler saw it, to now: the scheduler read the clock as
         * it completed the invocation, in this same call, so its reading is
         * used instead of another (a result without it reads the clock). */
        uint64_t now = res->done_ns ? res->done_ns : mxu_now_ns();
        uint64_t start = mxu_http_req_start_ns(c->req);
        r.wall_us = now > start ? (now - start) / 1000 : r.wall_us;
    }
    /* From here the context belongs to on_sent, which may already have run
     * when this returns; a client that hangs up meanwhile changes nothing. */
    c->held = true;
    api_respond_metered(api, c->req, &r, status, hdrs, nh, body, on_sent, c);
}

static void respond_error(inv_ctx *c, mxu_invoke_res *res)
{
    char id[24], retry[16];
    snprintf(id, sizeof(id), "%016llx", (unsigned long long)res->id);
    snprintf(retry, sizeof(retry), "%u", res->retry_after_s);
    json_t *body = json_pack("{s:{s:s, s:s, s:s}}", "error", "code", mxu_inv_error_code(res->error),
                             "message", res->message ? res->message : "", "invocation", id);
    if (body == NULL)
        body = json_pack("{s:{s:s, s:s}}", "error", "code", mxu_inv_error_code(res->error),
                         "invocation", id);
    char *s = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    mxu_buf out = {0};
    mxu_buf_puts(&out, s ? s : "{}");
    mxu_buf_puts(&out, "\n");
    free(s);
    mxu_http_header h[4] = {{"Content-Type", "application/json"},
                            {"X-Mxu-Invocation-Id", id},
                            {"X-Mxu-Error", mxu_inv_error_code(res->error)}};
    size_t nh = 3;
    if (res->retry_after_s)
        h[nh++] = (mxu_http_header){"Retry-After", retry};
    finish(c, res, inv_status(res->error), h, nh, &out);
    mxu_buf_free(&out);
}

static void ctx_release(inv_ctx *c)
{
    if (c->in_invoke)
        c->done = true; /* freed by api_invoke when the scheduler returns */
    else
        free(c);
}

static void on_result(void *ud, mxu_invoke_res *res)
{
    inv_ctx *c = ud;
    c->inv = NULL;
    c->run = NULL;
    if (res->error != MXU_INV_OK) {
        respond_error(c, res);
        return;
    }
    if (res->status < 200) {
        mxu_invoke_res bad = *res;
        bad.error = MXU_INV_BAD_RESPONSE;
        bad.message = "the function answered with a 1xx status, which cannot end a response";
        respond_error(c, &bad);
        return;
    }
    /* Copy the function's headers into one block of NUL-terminated strings,
     * keeping only well-formed ones. */
    mxu_header_list it = res->headers;
    size_t n = 0, bytes = 0;
    mxu_slice name, value;
    while (mxu_wire_next_header(&it, &name, &value)) {
        n++;
        bytes += (size_t)name.len + value.len + 2;
    }
    mxu_http_header *hdrs = mxu_malloc((n + 3) * sizeof(*hdrs));
    char *block = mxu_malloc(bytes + 64);
    char *w = block;
    size_t nh = 0;
    it = res->headers;
    while (mxu_wire_next_header(&it, &name, &value)) {
        if (!header_ok(name, value) || slice_ieq(name, "content-length") ||
            slice_ieq(name, "transfer-encoding") || slice_ieq(name, "connection"))
            continue;
        hdrs[nh].name = w;
        memcpy(w, name.ptr, name.len);
        w += name.len;
        *w++ = '\0';
        hdrs[nh].value = w;
        memcpy(w, value.ptr, value.len);
        w += value.len;
        *w++ = '\0';
        nh++;
    }
    char id[24], ver[16];
    snprintf(id, sizeof(id), "%016llx", (unsigned long long)res->id);
    snprintf(ver, sizeof(ver), "%u", c->version);
    hdrs[nh++] = (mxu_http_header){"X-Mxu-Invocation-Id", id};
    hdrs[nh++] = (mxu_http_header){"X-Mxu-Version", ver};
    if (res->cold)
        hdrs[nh++] = (mxu_http_header){"X-Mxu-Cold", "1"};
    if (res->status == 204 || res->status == 304)
        mxu_buf_reset(&res->body);
    finish(c, res, res->status, hdrs, nh, &res->body);
    free(hdrs);
    free(block);
}

/* A cancelled invocation is over: only now are its slots free again. */
static void on_gone(void *ud)
{
    inv_ctx *c = ud;
    shape_done(c);
    free(c);
}

static void on_abort(mxu_http_req *req, void *ud)
{
    inv_ctx *c = ud;
    if (c->held)
        return; /* answered already; the answer is dropped when released */
    /* The client is gone: drop the request, and the invocation (or its
     * result). A running one goes on until its instance is done with it, and
     * keeps its concurrency slots and quota reservation until then, or
     * clients that hang up could run any number at once. */
    mxu_invocation *inv = c->inv;
    mxu_compose_run *run = c->run;
    c->inv = NULL;
    c->run = NULL;
    c->req = NULL;
    mxu_http_respond(req, 499, NULL, 0, NULL);
    if (c->service)
        mxu_compose_cancel_then(run, on_gone, c);
    else
        mxu_sched_cancel_then(inv, on_gone, c);
}

/* A reference is a version number or an alias name. */
static bool ref_valid(const char *ref)
{
    uint64_t n;
    if (ref[0] >= '0' && ref[0] <= '9')
        return strlen(ref) <= 9 && mxu_parse_u64(ref, &n) == 0 && n > 0;
    return mxu_name_valid(ref);
}

/* Split "name@ref/sub/path" into its parts. */
static int parse_target(const char *target, char *name, size_t namelen, char *ref, size_t reflen,
                        const char **sub)
{
    size_t i = 0;
    while (target[i] && target[i] != '/' && target[i] != '@')
        i++;
    if (i == 0 || i >= namelen)
        return -1;
    memcpy(name, target, i);
    name[i] = '\0';
    ref[0] = '\0';
    if (target[i] == '@') {
        size_t j = i + 1, k = 0;
        while (target[j] && target[j] != '/') {
            if (k + 1 >= reflen)
                return -1;
            ref[k++] = target[j++];
        }
        ref[k] = '\0';
        if (k == 0)
            return -1;
        i = j;
    }
    *sub = target[i] ? target + i : "/";
    return 0;
}

void api_invoke(mxu_api *api, mxu_http_req *req, const char *explicit_tenant, const char *target)
{
    char name[128], ref[128];
    const char *sub;
    if (parse_target(target, name, sizeof(name), ref, sizeof(ref), &sub) < 0 ||
        !mxu_name_valid(name) || (ref[0] && !ref_valid(ref))) {
        api_error(req, 400, "invalid_name", NULL,
                  "invoke a function as /fn/NAME, /fn/NAME@VERSION or /fn/NAME@ALIAS; names "
                  "are lowercase letters, digits, '-' and '_', starting with a letter");
        return;
    }
    /* Who is calling: a request with an mxu key is authenticated (and refused
     * if the key is bad, even for a public function: a client that sends a
     * key wants to know it does not work). A request without one may only
     * reach public functions. With authentication off, everyone is the node
     * admin. */
    mxu_policy *pol = api->cfg.policy;
    const char *auth = mxu_http_req_header(req, "Authorization");
    bool auth_is_key = mxu_policy_is_key_header(auth);
    const mxu_principal *who = NULL;
    if (!mxu_policy_auth_enabled(pol) || auth_is_key) {
        who = api_authenticate_header(api, req, auth);
        if (who == NULL)
            return;
    }
    const char *tenant = explicit_tenant ? explicit_tenant
                         : who           ? mxu_principal_tenant(who)
                                         : MXU_TENANT_DEFAULT;
    mxu_err err;
    mxu_fn_version *v = api_resolve(api, tenant, name, ref, &err);
    bool is_public = v && v->manifest->is_public;
    if (!is_public && who == NULL) {
        /* Not public (or not there: without a key, the answer must not tell
         * which, or it would list a tenant's functions to anyone). */
        const mxu_principal *unused;
        mxu_err aerr;
        mxu_policy_authenticate(pol, auth, &unused, &aerr);
        api_unauthorized(req, &aerr);
        return;
    }
    /* client -> function rules (docs/policy.md "Policy documents"): a deny
     * beats the role matrix and public functions alike; an allow of the
     * node's policy opens another tenant's function to the keys it names. */
    bool by_rule = false;
    if (mxu_policy_has_link_rules(pol, MXU_LINK_CLIENT)) {
        mxu_policy_link l = {
            .kind = MXU_LINK_CLIENT, .who = who, .to_tenant = tenant, .to_name = name};
        mxu_err lerr;
        if (mxu_policy_link_check(pol, &l, true, &by_rule, &lerr) < 0) {
            api_deny_invocation(api, req, tenant, name, v ? v->version : 0, lerr.msg);
            return;
        }
    }
    if (!is_public) {
        bool cross = strcmp(tenant, mxu_principal_tenant(who)) != 0;
        /* Opened by a rule: the key's own role and scope still apply, as in
         * its own tenant. */
        const char *as = cross && by_rule ? mxu_principal_tenant(who) : tenant;
        mxu_err perr;
        if (v != NULL && mxu_policy_check(who, MXU_ACT_INVOKE, as, name, &perr) < 0) {
            /* A refused invocation of a function that exists: recorded as
             * rejected, like every other refusal (docs/metering.md). */
            api_deny_invocation(api, req, tenant, name, v->version, perr.msg);
            return;
        }
        if (v == NULL && !api_allow(req, who, MXU_ACT_INVOKE, as, name))
            return;
    }
    if (v == NULL) {
        if (api->cfg.meter && err.code == ENOENT) {
            /* The refusal is the resolving tenant's invocation. */
            const char *code = strstr(err.msg, "alias")               ? "alias_not_found"
                               : strstr(err.msg, "version") && ref[0] ? "version_not_found"
                                                                      : "function_not_found";
            api_reject_metered(api, req, tenant, name, 0, 404, code, "%s", err.msg);
            return;
        }
        api_error_from(req, &err, name, ref);
        return;
    }
    size_t body_len;
    mxu_http_req_body(req, &body_len);
    if (body_len > api->cfg.max_invoke_body) {
        char lim[32];
        mxu_format_size(api->cfg.max_invoke_body, lim, sizeof(lim));
        if (api->cfg.meter)
            api_reject_metered(api, req, mxu_fn_version_tenant(v), v->function, v->version, 413,
                               "body_too_large", "invocation bodies are limited to %s", lim);
        else
            api_error(req, 413, "body_too_large", NULL, "invocation bodies are limited to %s", lim);
        return;
    }

    if (v->manifest->service && api->cfg.compose == NULL) {
        api_error(req, 501, "not_implemented", NULL, "this node does not run services");
        return;
    }
    /* The class it queues in: the key's, or lower if the request asks
     * (X-Mxu-Priority may only lower it; a higher one is not granted). */
    enum mxu_priority prio = mxu_principal_priority(who);
    const char *ph = mxu_http_req_header(req, "X-Mxu-Priority");
    if (ph) {
        enum mxu_priority asked;
        mxu_err perr;
        if (mxu_priority_parse(ph, &asked, &perr) < 0) {
            api_error(req, 400, "bad_priority", NULL, "X-Mxu-Priority: %s", perr.msg);
            return;
        }
        if (mxu_priority_rank(asked) < mxu_priority_rank(prio))
            prio = asked;
    }
    /* Traffic shaping, then the quota: both refuse before anything runs. */
    const char *owner = mxu_fn_version_tenant(v);
    const mxu_manifest *m = v->manifest;
    mxu_limits fnl = {.rate = m->rate,
                      .period_ms = m->rate_period_ms,
                      .burst = m->burst,
                      .concurrency = m->max_concurrency};
    mxu_shape_ticket ticket = {0};
    mxu_shape_denial denial;
    /* The request was complete a moment ago, in this same loop turn: its
     * arrival is the time of the admission, with no clock read of its own. */
    uint64_t now_ns = mxu_http_req_start_ns(req);
    if (mxu_shape_admit(pol, who, owner, v->function, &fnl, now_ns ? now_ns : mxu_now_ns(), &ticket,
                        &denial) < 0) {
        reject_shaped(api, req, v, &denial);
        return;
    }
    /* One wall clock reading for the quota's month and the record's start. */
    uint64_t wall_ms = api->cfg.meter ? mxu_wall_ms() : 0;
    if (api->cfg.meter && mxu_quota_reserve(pol, owner, wall_ms, &denial) < 0) {
        mxu_shape_release(&ticket);
        reject_shaped(api, req, v, &denial);
        return;
    }

    size_t nh = mxu_http_req_header_count(req);
    size_t nfwd = MXU_MIN(nh, (size_t)MAX_FORWARDED_HEADERS);
    inv_ctx *c = mxu_calloc(1, sizeof(*c) + 2 * nfwd * sizeof(mxu_slice));
    c->names = c->hdrs;
    c->values = c->hdrs + nfwd;
    c->api = api;
    c->ticket = ticket;
    c->quota_reserved = api->cfg.meter != NULL;
    snprintf(c->tenant, sizeof(c->tenant), "%s", owner);
    c->req = req;
    c->inv = NULL;
    c->version = v->version;
    c->nhdr = 0;
    if (api->cfg.meter)
        c->bytes_in = api_request_bytes(req);
    for (size_t i = 0; i < nh && c->nhdr < nfwd; i++) {
        const char *hn, *hv;
        size_t hnl, hvl;
        mxu_http_req_header_at_len(req, i, &hn, &hnl, &hv, &hvl);
        if (hop_by_hop(hn, hnl))
            continue;
        /* The caller's mxu key is for the node: the function never sees it.
         * The first Authorization header was looked at above already. */
        if (hnl == 13 && strncasecmp(hn, "authorization", 13) == 0 &&
            (hv == auth ? auth_is_key : mxu_policy_is_key_header(hv)))
            continue;
        c->names[c->nhdr] = (mxu_slice){hn, (uint32_t)hnl};
        c->values[c->nhdr] = (mxu_slice){hv, (uint32_t)hvl};
        c->nhdr++;
    }
    const char *method = mxu_http_req_method(req);
    const char *query = mxu_http_req_query(req);
    mxu_invoke_req ir = {
        .method = {method, (uint32_t)strlen(method)},
        .path = {sub, (uint32_t)strlen(sub)},
        .query = {query, (uint32_t)strlen(query)},
        .hdr_names = c->names,
        .hdr_values = c->values,
        .nhdr = c->nhdr,
        .bytes_in = c->bytes_in,
        .start_ms = wall_ms,
        .priority = prio,
    };
    mxu_http_req_steal_body(req, &ir.body);
    /* on_abort must be registered before invoking: the callback may run at once. */
    mxu_http_req_on_abort(req, on_abort, c);
    c->in_invoke = true;
    /* A service runs in the compose engine, a function in the scheduler:
     * the same request, callback and result either way. */
    mxu_invocation *inv = NULL;
    mxu_compose_run *run = NULL;
    c->service = m->service != NULL;
    if (c->service)
        run = mxu_compose_invoke(api->cfg.compose, v, &ir, on_result, c);
    else
        inv = mxu_sched_invoke(api->cfg.sched, v, &ir, on_result, c);
    mxu_buf_free(&ir.body);
    if (c->done) {
        free(c);
        return;
    }
    c->in_invoke = false;
    if (c->held)
        return; /* answered inside the call; on_sent frees the context */
    c->inv = inv;
    c->run = run;
}
