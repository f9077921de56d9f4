/*
 * One instance: starting it through its unit's executor, talking to it, and
 * tearing it down when its process ends.
 *
 * Warm instances (runtime c) speak the channel protocol: HELLO → INIT, then
 * INVOKE → RESULT, LOG frames in between, BYE to stop. Their stderr (and
 * stdout) is read as it comes and kept as the log of the invocation at the
 * head of the instance's in-flight list — the one it is running, since an
 * instance serves its invocations in order. Before a RESULT is handed on,
 * stderr is drained once more, so everything the function wrote before
 * answering lands in that invocation's log.
 *
 * Exec instances (runtime exec) are one process per invocation: the body goes
 * to stdin, stdout is the response body, stderr the log, the exit status the
 * verdict.
 *
 * How an instance ends decides what happens to its in-flight invocations:
 * when the node ended it (idle, timeout of the head, shutdown) the ones still
 * listed never started and go back to the queue; when it died by itself, the
 * head is the one that killed it and gets the error.
 */
#include "sched-internal.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

static void inst_end(mxu_instance *inst);

static void inst_set_state(mxu_instance *inst, enum inst_state st)
{
    mxu_pool *pool = inst->pool;
    bool was_alive = inst->state == INST_STARTING || inst->state == INST_READY;
    bool is_alive = st == INST_STARTING || st == INST_READY;
    if (inst->state == INST_STARTING && st != INST_STARTING)
        pool->starting--;
    if (was_alive && !is_alive)
        pool->alive--;
    inst->state = st;
}

bool mxu_instance_has_capacity(const mxu_instance *inst)
{
    return inst->inflight.len < inst->pool->m->concurrency;
}

static mxu_invocation *inst_head(const mxu_instance *inst)
{
    mxu_link *l = mxu_list_first(&inst->inflight);
    return l ? mxu_container_of(l, mxu_invocation, qlink) : NULL;
}

/* ---- logs -------------------------------------------------------------------- */

static void log_append(mxu_instance *inst, const char *data, size_t n)
{
    mxu_sched *s = inst->pool->sched;
    mxu_invocation *inv = inst->exec_inv ? inst->exec_inv : inst_head(inst);
    if (inv && inv->state == INV_RUNNING) {
        size_t room = s->cfg.max_log_bytes > inv->log.len ? s->cfg.max_log_bytes - inv->log.len : 0;
        if (n > room) {
            n = room;
            inv->log_truncated = true;
        }
        mxu_buf_append(&inv->log, data, n);
        return;
    }
    if (inst->served == 0 && inst->start_log.len < 16384)
        mxu_buf_append(&inst->start_log, data, MXU_MIN(n, 16384 - inst->start_log.len));
    /* Output outside any invocation still belongs to the function's log. */
    mxu_fn_version *v = inst->pool->version;
    mxu_logstore_append(s->logs, v->tenant, v->function, v->version, 0, "stderr", data, n);
}

/* Read everything available now; returns false at end of file. */
static bool drain_fd(int fd, void (*sink)(mxu_instance *, const char *, size_t), mxu_instance *inst)
{
    char buf[65536];
    for (;;) {
        ssize_t n = read(fd, buf, sizeof(buf));
        if (n > 0) {
            sink(inst, buf, (size_t)n);
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        return n < 0 && errno == EAGAIN;
    }
}

static void on_stderr(uv_poll_t *h, int status, int events)
{
    MXU_UNUSED(events);
    mxu_instance *inst = h->data;
    if (status < 0 || !drain_fd(inst->stderr_fd, log_append, inst)) {
        uv_poll_stop(h);
        inst->stderr_polling = false;
    }
}

static void drain_stderr(mxu_instance *inst)
{
    if (inst->stderr_polling)
        drain_fd(inst->stderr_fd, log_append, inst);
}

/* ---- stopping ------------------------------------------------------------------ */

static void on_stop_grace(uv_timer_t *t)
{
    mxu_instance *inst = t->data;
    mxu_instance_kill(inst, "did not exit after BYE");
}

void mxu_instance_kill(mxu_instance *inst, const char *reason)
{
    if (inst->state == INST_DEAD)
        return;
    mxu_debug("%s: killing instance %llu: %s", mxu_unit_label(inst->pool->unit),
              (unsigned long long)inst->id, reason);
    inst->condemned = true; /* whatever it still sends is not listened to */
    inst_set_state(inst, INST_STOPPING);
    uv_timer_stop(&inst->timer);
    mxu_unit_executor(inst->pool->unit)->kill(inst->proc);
}

void mxu_instance_stop(mxu_instance *inst, bool graceful)
{
    if (inst->state == INST_DEAD || inst->state == INST_STOPPING)
        return;
    inst->stopped = true; /* the node's decision, not a failure of the instance */
    if (!graceful || inst->state == INST_STARTING || inst->chan == NULL) {
        mxu_instance_kill(inst, "stopped");
        return;
    }
    /* BYE: finish what was sent, then exit; killed if it takes too long. */
    inst_set_state(inst, INST_STOPPING);
    mxu_channel_frame(inst->chan, MXU_FRAME_BYE, 0, 0);
    uv_timer_start(&inst->timer, on_stop_grace, 2000, 0);
}

static void on_idle(uv_timer_t *t)
{
    mxu_instance *inst = t->data;
    mxu_pool *pool = inst->pool;
    if (inst->state == INST_READY && mxu_list_empty(&inst->inflight) && pool->alive > pool->min)
        mxu_instance_stop(inst, true);
}

void mxu_instance_arm_idle(mxu_instance *inst, uint64_t ms)
{
    if (inst->state != INST_READY || inst->exec_inv != NULL || inst->chan == NULL)
        return;
    uv_timer_start(&inst->timer, on_idle, ms, 0);
}

static void on_start_timeout(uv_timer_t *t)
{
    mxu_instance *inst = t->data;
    snprintf(inst->crash_reason, sizeof(inst->crash_reason),
             "did not complete its handshake within %llu ms",
             (unsigned long long)inst->pool->sched->cfg.start_timeout_ms);
    mxu_instance_kill(inst, inst->crash_reason);
}

/* ---- warm instances: frames ------------------------------------------------------ */

static mxu_invocation *inst_find(mxu_instance *inst, uint64_t id)
{
    mxu_list_foreach(&inst->inflight, it)
    {
        mxu_invocation *inv = mxu_container_of(it, mxu_invocation, qlink);
        if (inv->id == id)
            return inv;
    }
    return NULL;
}

/* The instance broke the protocol: it is killed and the head gets the blame. */
static void inst_protocol_error(mxu_instance *inst, const char *what)
{
    snprintf(inst->crash_reason, sizeof(inst->crash_reason), "broke the channel protocol: %s",
             what);
    mxu_warn("%s: instance %llu %s", mxu_unit_label(inst->pool->unit), (unsigned long long)inst->id,
             inst->crash_reason);
    mxu_instance_kill(inst, inst->crash_reason);
    inst->blame_head = true;
}

static void send_init(mxu_instance *inst)
{
    const mxu_manifest *m = inst->pool->m;
    mxu_fn_version *v = inst->pool->version;
    const char *const *names = (const char *const *)m->env_names;
    const char *const *values = (const char *const *)m->env_values;
    size_t len = mxu_init_encode(NULL, 0, v->function, v->version, m->concurrency, names, values,
                                 (uint32_t)m->nenv);
    uint8_t *p = mxu_channel_frame(inst->chan, MXU_FRAME_INIT, 0, (uint32_t)len);
    mxu_init_encode(p, len, v->function, v->version, m->concurrency, names, values,
                    (uint32_t)m->nenv);
}

static void handle_result(mxu_instance *inst, const mxu_frame_hdr *h, const uint8_t *payload)
{
    mxu_sched *s = inst->pool->sched;
    mxu_invocation *inv = inst_find(inst, h->id);
    if (inv == NULL && inst->state == INST_STOPPING)
        return; /* the node gave up on it (shutdown past the drain time) */
    if (inv == NULL) {
        inst_protocol_error(inst, "RESULT for an invocation it was not given");
        return;
    }
    mxu_result_msg msg;
    if (mxu_result_decode(payload, h->len, &msg) < 0) {
        inst_protocol_error(inst, "malformed RESULT frame");
        return;
    }
    if (msg.body.len > s->cfg.max_response_bytes) {
        char got[32], lim[32];
        mxu_format_size(msg.body.len, got, sizeof(got));
        mxu_format_size(s->cfg.max_response_bytes, lim, sizeof(lim));
        mxu_sched_inv_fail(inv, MXU_INV_BAD_RESPONSE,
                           "%s answered with %s, more than the %s response limit",
                           mxu_unit_label(inst->pool->unit), got, lim);
        return;
    }
    mxu_invoke_res res = {.error = MXU_INV_OK, .status = (int)msg.status, .headers = msg.headers};
    mxu_buf_append(&res.body, msg.body.ptr, msg.body.len);
    inst->answered = true;
    inst->pool->start_failures = 0;
    mxu_sched_inv_complete(inv, &res);
    mxu_buf_free(&res.body);
}

static void handle_log(mxu_instance *inst, const mxu_frame_hdr *h, const uint8_t *payload)
{
    static const char *const levels[] = {"debug", "info", "warn", "error"};
    mxu_log_msg msg;
    if (mxu_log_decode(payload, h->len, &msg) < 0) {
        inst_protocol_error(inst, "malformed LOG frame");
        return;
    }
    char prefix[16];
    snprintf(prefix, sizeof(prefix), "[%s] ", levels[msg.level < 4 ? msg.level : 1]);
    mxu_invocation *inv = h->id ? inst_find(inst, h->id) : NULL;
    mxu_sched *s = inst->pool->sched;
    if (inv) {
        size_t need = strlen(prefix) + msg.text.len + 1;
        if (inv->log.len + need > s->cfg.max_log_bytes) {
            inv->log_truncated = true;
            return;
        }
        mxu_buf_puts(&inv->log, prefix);
        mxu_buf_append(&inv->log, msg.text.ptr, msg.text.len);
        mxu_buf_puts(&inv->log, "\n");
        return;
    }
    _cleanup_buf_ mxu_buf line = {0};
    mxu_buf_puts(&line, prefix);
    mxu_buf_append(&line, msg.text.ptr, msg.text.len);
    mxu_fn_version *v = inst->pool->version;
    mxu_logstore_append(s->logs, v->tenant, v->function, v->version, 0, "log", line.data, line.len);
}

/* ---- descriptor operations ------------------------------------------------------ */

void mxu_instance_res_reply(mxu_instance *inst, uint64_t inv_id, uint32_t call_id, uint32_t status,
                            const char *message, uint64_t n1, uint64_t n2, const mxu_slice *vals,
                            uint32_t nvals)
{
    if (inst->state == INST_DEAD || inst->chan == NULL || inst->condemned)
        return; /* it is gone: nobody waits for this answer */
    mxu_slice msg = {message ? message : "", message ? (uint32_t)strlen(message) : 0};
    size_t len = mxu_res_reply_encode(NULL, 0, call_id, status, msg, n1, n2, vals, nvals);
    uint8_t *p = mxu_channel_frame(inst->chan, MXU_FRAME_RES_REPLY, inv_id, (uint32_t)len);
    mxu_res_reply_encode(p, len, call_id, status, msg, n1, n2, vals, nvals);
}

typedef struct res_ctx {
    mxu_instance *inst;
    uint64_t inv_id;
    uint32_t call_id;
    uint32_t op;
} res_ctx;

static void res_done(void *ud, const mxu_res_result *r)
{
    res_ctx *c = ud;
    mxu_instance *inst = c->inst;
    mxu_slice vals[MXU_RES_MAX_ARGS];
    uint32_t nvals = 0;
    if (r->status == MXU_RES_OK) {
        switch (c->op) {
        case MXU_RES_KV_GET:
        case MXU_RES_BLOB_READ:
            vals[nvals++] = (mxu_slice){r->data, (uint32_t)r->len};
            break;
        case MXU_RES_QUEUE_CONSUME:
            vals[nvals++] = (mxu_slice){r->data, (uint32_t)r->len};
            vals[nvals++] = (mxu_slice){r->receipt ? r->receipt : "",
                                        r->receipt ? (uint32_t)strlen(r->receipt) : 0};
            break;
        case MXU_RES_KV_LIST:
        case MXU_RES_BLOB_LIST:
            for (size_t i = 0; i < r->nkeys && nvals < MXU_RES_MAX_ARGS - 1; i++)
                vals[nvals++] = (mxu_slice){r->keys[i], (uint32_t)strlen(r->keys[i])};
            vals[nvals++] = (mxu_slice){r->cursor ? r->cursor : "",
                                        r->cursor ? (uint32_t)strlen(r->cursor) : 0};
            break;
        default:
            break;
        }
    }
    uint64_t n1 = (c->op == MXU_RES_KV_LIST || c->op == MXU_RES_BLOB_LIST) ? r->nkeys : r->n1;
    mxu_instance_res_reply(inst, c->inv_id, c->call_id, r->status,
                           r->status == MXU_RES_OK ? NULL : r->message, n1, r->n2, vals, nvals);
    free(c);
    inst->ops_inflight--;
    mxu_instance_maybe_free(inst);
}

void mxu_sched_log_denial(mxu_sched *s, const char *tenant, const char *function, uint32_t version,
                          uint64_t invocation, const char *why)
{
    _cleanup_free_ char *line = mxu_asprintf("policy denial: %s", why);
    if (s->logs)
        mxu_logstore_append(s->logs, tenant, function, version, invocation, "mxu", line,
                            strlen(line));
    mxu_warn("%s/%s@%u: %s", tenant, function, version, line);
}

/* A policy denial goes to the function's log and the node's. */
static void log_denial(mxu_instance *inst, mxu_invocation *inv, const char *why)
{
    mxu_fn_version *v = inst->pool->version;
    mxu_sched_log_denial(inst->pool->sched, v->tenant, v->function, v->version, inv->id, why);
}

/* unit -> resource: the policy's rules on this operation of this resource
 * (a descriptor's declared access is the ceiling; rules can only narrow it
 * within a tenant, and open a resource of another tenant). */
static enum mxu_res_status policy_resource(mxu_instance *inst, const mxu_res_op_msg *msg, char *why,
                                           size_t whylen)
{
    mxu_sched *s = inst->pool->sched;
    const mxu_resource_decl *d = mxu_desc_find(inst->pool->desc, msg->name);
    const mxu_fn_version *v = inst->pool->version;
    const char *own = mxu_fn_version_tenant(v);
    /* kv:orders, or kv:acme/orders: another tenant's */
    char tenant[40];
    const char *name = d->target, *slash = strchr(d->target, '/');
    if (slash) {
        snprintf(tenant, sizeof(tenant), "%.*s",
                 (int)MXU_MIN((size_t)(slash - d->target), sizeof(tenant) - 1), d->target);
        name = slash + 1;
    }
    bool cross = slash && strcmp(tenant, own) != 0;
    if (!cross && !mxu_policy_has_link_rules(s->cfg.policy, MXU_LINK_RESOURCE))
        return MXU_RES_OK;
    mxu_policy_link l = {.kind = MXU_LINK_RESOURCE,
                         .from_tenant = own,
                         .from_fn = v->function,
                         .to_tenant = slash ? tenant : own,
                         .to_name = name,
                         .res_kind = d->kind,
                         .op = mxu_desc_op_name(msg->op)};
    mxu_err err;
    if (mxu_policy_link_check(s->cfg.policy, &l, !cross, NULL, &err) == 0)
        return MXU_RES_OK;
    snprintf(why, whylen, "%s: %.500s", d->name, err.msg);
    return MXU_RES_DENIED;
}

static void handle_res_op(mxu_instance *inst, const mxu_frame_hdr *h, const uint8_t *payload)
{
    mxu_res_op_msg msg;
    if (mxu_res_op_decode(payload, h->len, &msg) < 0) {
        inst_protocol_error(inst, "malformed RES_OP frame");
        return;
    }
    /* Only the invocation it is running may use resources, one call at a time. */
    mxu_invocation *head = inst_head(inst);
    if (head == NULL || head->id != h->id) {
        inst_protocol_error(inst, "RES_OP for an invocation it is not running");
        return;
    }
    if (inst->ops_inflight > 0) {
        inst_protocol_error(inst, "a second RES_OP before the first was answered");
        return;
    }
    mxu_sched *s = inst->pool->sched;
    char why[600];
    enum mxu_res_status st = mxu_desc_check(inst->pool->desc, &msg, why, sizeof(why));
    if (st == MXU_RES_OK && msg.op != MXU_RES_SVC_CALL && s->cfg.policy)
        st = policy_resource(inst, &msg, why, sizeof(why));
    if (st == MXU_RES_OK && head->timed && sched_now(s) >= head->deadline_ms) {
        st = MXU_RES_DEADLINE;
        snprintf(why, sizeof(why), "the invocation's deadline has passed");
    }
    if (st != MXU_RES_OK) {
        if (st == MXU_RES_DENIED)
            log_denial(inst, head, why);
        mxu_instance_res_reply(inst, h->id, msg.call_id, st, why, 0, 0, NULL, 0);
        return;
    }
    inst->ops_inflight++;
    if (msg.op == MXU_RES_SVC_CALL) {
        mxu_sched_svc_call(inst, head, &msg, mxu_desc_find(inst->pool->desc, msg.name));
        return;
    }
    res_ctx *c = mxu_malloc(sizeof(*c));
    c->inst = inst;
    c->inv_id = h->id;
    c->call_id = msg.call_id;
    c->op = msg.op;
    mxu_desc_run(inst->pool->desc, &msg, h->id, res_done, c); /* the invocation owns it */
}

static void on_frame(mxu_channel *ch, const mxu_frame_hdr *h, const uint8_t *payload, void *ud)
{
    MXU_UNUSED(ch);
    mxu_instance *inst = ud;
    if (inst->state == INST_DEAD || inst->condemned)
        return;
    /* Whatever the instance wrote to stderr before this batch belongs to the
     * invocation at the head: read it before a frame that ends or logs to
     * that invocation (not before RES_OPs, the common frame of a busy
     * function: that read would be one more syscall per resource call). */
    if (inst->stderr_unread && h->type != MXU_FRAME_RES_OP) {
        inst->stderr_unread = false;
        drain_stderr(inst);
    }
    switch (h->type) {
    case MXU_FRAME_RESULT:
        handle_result(inst, h, payload);
        return;
    case MXU_FRAME_LOG:
        handle_log(inst, h, payload);
        return;
    case MXU_FRAME_RES_OP:
        handle_res_op(inst, h, payload);
        return;
    case MXU_FRAME_HELLO: {
        mxu_hello_msg msg;
        if (inst->state != INST_STARTING || mxu_hello_decode(payload, h->len, &msg) < 0) {
            inst_protocol_error(inst, "unexpected or malformed HELLO");
            return;
        }
        if (msg.proto_version != MXU_PROTO_VERSION) {
            char why[96];
            snprintf(why, sizeof(why), "speaks protocol version %u, the node speaks %u",
                     msg.proto_version, MXU_PROTO_VERSION);
            inst_protocol_error(inst, why);
            return;
        }
        send_init(inst);
        inst->became_ready = true;
        if (inst->pool->sched->cfg.meter)
            mxu_sched_usage_mark(inst); /* its start-up CPU is nobody's invocation */
        inst_set_state(inst, INST_READY);
        inst->ready_ms = sched_now(inst->pool->sched);
        uv_timer_stop(&inst->timer);
        mxu_sched_pool_kick(inst->pool);
        if (inst->state == INST_READY && mxu_list_empty(&inst->inflight))
            mxu_sched_instance_idle(inst);
        return;
    }
    case MXU_FRAME_FATAL: {
        mxu_log_msg msg;
        if (mxu_log_decode(payload, h->len, &msg) == 0) {
            int n = (int)MXU_MIN(msg.text.len, 120u);
            snprintf(inst->crash_reason, sizeof(inst->crash_reason), "reported: %.*s", n,
                     msg.text.ptr);
        }
        /* Before any answer, FATAL is mxu_init() failing: the start failed. */
        if (!inst->answered && h->id == 0)
            inst->init_failed = true;
        else
            inst->blame_head = true;
        return; /* its exit follows */
    }
    default:
        inst_protocol_error(inst, "unexpected frame type");
        return;
    }
}

/* Before the frames of one read are handled: whatever the instance wrote to
 * stderr before sending them is in the pipe by now, and belongs to the
 * invocation at the head, the one that was running. It is read once per
 * batch, not once per RESULT (with pipelined invocations a batch holds many),
 * and only when a frame of the batch needs it (see on_frame). */
static void on_batch(mxu_channel *ch, bool begin, void *ud)
{
    MXU_UNUSED(ch);
    mxu_instance *inst = ud;
    if (begin)
        inst->stderr_unread = true; /* read by on_frame, when a frame needs it */
    /* The CPU time is read at most once per batch (sched-meter.c): at the
     * first result in it; anything else (a timeout, a crash) reads afresh. */
    inst->cpu_batch = begin;
    inst->cpu_fresh = false;
}

static void on_channel_end(mxu_channel *ch, int code, const char *why, void *ud)
{
    MXU_UNUSED(ch);
    mxu_instance *inst = ud;
    if (code == EPROTO) {
        inst_protocol_error(inst, why);
        return;
    }
    /* EOF: the process is exiting; its exit status tells the rest. */
}

/* ---- exec instances: stdio ----------------------------------------------------- */

static void on_inst_handle_closed(uv_handle_t *h);

static void close_stdin(mxu_instance *inst)
{
    inst->stdin_polling = false;
    /* uv_close, not just a stop: closing a poll handle later takes its fd
     * number out of epoll, and by then the number may belong to another
     * instance's channel. The handle goes first, then the fd. */
    if (inst->stdin_polling_ever && !inst->stdin_poll_closed) {
        inst->stdin_poll_closed = true;
        uv_close((uv_handle_t *)&inst->stdin_poll, on_inst_handle_closed);
    }
    if (inst->stdin_fd >= 0) {
        close(inst->stdin_fd);
        inst->stdin_fd = -1;
    }
}

static void write_stdin(mxu_instance *inst)
{
    mxu_invocation *inv = inst->exec_inv;
    while (inv && inst->stdin_off < inv->req.body.len) {
        ssize_t n = write(inst->stdin_fd, inv->req.body.data + inst->stdin_off,
                          inv->req.body.len - inst->stdin_off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return; /* poll for writable */
        if (n < 0)
            break; /* EPIPE: it does not read its input; not an error */
        inst->stdin_off += (size_t)n;
    }
    close_stdin(inst);
}

static void on_stdin(uv_poll_t *h, int status, int events)
{
    MXU_UNUSED(events);
    mxu_instance *inst = h->data;
    if (status < 0) {
        close_stdin(inst);
        return;
    }
    write_stdin(inst);
}

static void stdout_append(mxu_instance *inst, const char *data, size_t n)
{
    size_t max = inst->pool->sched->cfg.max_response_bytes;
    if (inst->out_too_large)
        return;
    if (inst->out.len + n > max) {
        inst->out_too_large = true;
        mxu_instance_kill(inst, "response too large");
        return;
    }
    mxu_buf_append(&inst->out, data, n);
}

static void on_stdout(uv_poll_t *h, int status, int events)
{
    MXU_UNUSED(events);
    mxu_instance *inst = h->data;
    if (status < 0 || !drain_fd(inst->stdout_fd, stdout_append, inst)) {
        uv_poll_stop(h);
        inst->stdout_polling = false;
    }
}

/* CGI-style variables, so existing CGI programs find what they expect. */
static char **exec_env(const mxu_invocation *inv, uint64_t deadline_left)
{
    const mxu_invoke_req *r = &inv->req;
    char **env = mxu_calloc(r->nhdr + 10, sizeof(char *));
    size_t n = 0;
    env[n++] = mxu_asprintf("REQUEST_METHOD=%.*s", (int)r->method.len, r->method.ptr);
    env[n++] = mxu_asprintf("PATH_INFO=%.*s", (int)r->path.len, r->path.ptr);
    env[n++] = mxu_asprintf("QUERY_STRING=%.*s", (int)r->query.len, r->query.ptr);
    env[n++] = mxu_asprintf("CONTENT_LENGTH=%zu", r->body.len);
    env[n++] = mxu_asprintf("MXU_INVOCATION_ID=%016llx", (unsigned long long)inv->id);
    env[n++] = mxu_asprintf("MXU_DEADLINE_MS=%llu", (unsigned long long)deadline_left);
    for (uint32_t i = 0; i < r->nhdr; i++) {
        mxu_buf b = {0};
        bool ctype =
            r->hdr_names[i].len == 12 && strncasecmp(r->hdr_names[i].ptr, "content-type", 12) == 0;
        if (ctype) {
            mxu_buf_puts(&b, "CONTENT_TYPE=");
        } else {
            mxu_buf_puts(&b, "HTTP_");
            for (uint32_t k = 0; k < r->hdr_names[i].len; k++) {
                char c = r->hdr_names[i].ptr[k];
                char up = (char)toupper((unsigned char)c);
                mxu_buf_append(&b, c == '-' ? "_" : &up, 1);
            }
            mxu_buf_puts(&b, "=");
        }
        mxu_buf_append(&b, r->hdr_values[i].ptr,
                       strnlen(r->hdr_values[i].ptr, r->hdr_values[i].len));
        env[n++] = mxu_buf_steal(&b, NULL);
    }
    return env;
}

static void free_env(char **env)
{
    for (size_t i = 0; env[i]; i++)
        free(env[i]);
    free(env);
}

static void exec_finish(mxu_instance *inst, const mxu_proc_exit *ex)
{
    mxu_invocation *inv = inst->exec_inv;
    inst->exec_inv = NULL;
    if (inv == NULL || inv->state != INV_RUNNING)
        return;           /* already answered (timeout) */
    inst->exec_inv = inv; /* so late output still lands in its log */
    if (inst->stdout_polling)
        drain_fd(inst->stdout_fd, stdout_append, inst);
    drain_stderr(inst);
    inst->exec_inv = NULL;
    const char *label = mxu_unit_label(inst->pool->unit);
    char how[128];
    mxu_proc_exit_describe(ex, how, sizeof(how));
    if (inst->out_too_large) {
        char lim[32];
        mxu_format_size(inst->pool->sched->cfg.max_response_bytes, lim, sizeof(lim));
        mxu_sched_inv_fail(inv, MXU_INV_BAD_RESPONSE,
                           "%s wrote more than the %s response limit to stdout; it was killed",
                           label, lim);
    } else if (ex->signaled) {
        mxu_sched_inv_fail(inv, MXU_INV_CRASHED, "%s %s", label, how);
    } else if (ex->exit_code != 0) {
        mxu_sched_inv_fail(inv, MXU_INV_FAILED, "%s %s (its stderr is in the function's log)",
                           label, how);
    } else {
        mxu_invoke_res res = {.error = MXU_INV_OK, .status = 200};
        res.body = inst->out;
        inst->out = (mxu_buf){0};
        mxu_sched_inv_complete(inv, &res);
        mxu_buf_free(&res.body);
    }
}

/* ---- sending work ---------------------------------------------------------------- */

void mxu_instance_send(mxu_instance *inst, mxu_invocation *inv)
{
    mxu_sched *s = inst->pool->sched;
    uint64_t now = sched_now(s);
    /* Queued behind others on this instance, its clock has not started. */
    uint64_t left = !inv->timed              ? inst->pool->m->timeout_ms
                    : inv->deadline_ms > now ? inv->deadline_ms - now
                                             : 0;
    if (inst->chan == NULL) {
        /* Exec: the process was started for this invocation; feed it. */
        inst->exec_inv = inv;
        if (inst->stdin_fd >= 0) {
            write_stdin(inst);
            if (inst->stdin_fd >= 0) {
                uv_poll_init(s->loop, &inst->stdin_poll, inst->stdin_fd);
                inst->stdin_poll.data = inst;
                inst->stdin_polling = true;
                inst->stdin_polling_ever = true;
                inst->pending_closes++;
                uv_poll_start(&inst->stdin_poll, UV_WRITABLE, on_stdin);
            }
        }
        return;
    }
    const mxu_invoke_req *r = &inv->req;
    mxu_slice body = {inv->req.body.data, (uint32_t)inv->req.body.len};
    size_t len = mxu_invoke_encode(NULL, 0, left, r->method, r->path, r->query, r->hdr_names,
                                   r->hdr_values, r->nhdr, body);
    uint8_t *p = mxu_channel_frame(inst->chan, MXU_FRAME_INVOKE, inv->id, (uint32_t)len);
    mxu_invoke_encode(p, len, left, r->method, r->path, r->query, r->hdr_names, r->hdr_values,
                      r->nhdr, body);
    /* The instance has its copy now. */
    mxu_buf_free(&inv->req.body);
}

/* ---- start and end ------------------------------------------------------------------ */

/* The struct goes when its handles have closed and no descriptor operation
 * it started is still out (one may complete after the process died). */
void mxu_instance_maybe_free(mxu_instance *inst)
{
    if (inst->pending_closes == 0 && inst->ops_inflight == 0 && inst->state == INST_DEAD) {
        mxu_buf_free(&inst->out);
        mxu_buf_free(&inst->start_log);
        free(inst);
    }
}

static void on_inst_handle_closed(uv_handle_t *h)
{
    mxu_instance *inst = h->data;
    inst->pending_closes--;
    mxu_instance_maybe_free(inst);
}

static void on_proc_exit(mxu_proc *p, const mxu_proc_exit *ex, void *ud)
{
    MXU_UNUSED(p);
    mxu_instance *inst = ud;
    mxu_pool *pool = inst->pool;
    drain_stderr(inst);

    if (inst->chan == NULL) {
        inst_set_state(inst, INST_DEAD);
        exec_finish(inst, ex);
        inst_end(inst);
        return;
    }
    /* A start failed if the instance never became ready, or its mxu_init()
     * failed, unless the node itself stopped it (idle, eviction, shutdown). */
    bool start_failed = (!inst->became_ready || inst->init_failed) && !inst->stopped;
    bool node_ended_it = inst->state == INST_STOPPING && !inst->blame_head;
    inst_set_state(inst, INST_DEAD);
    char how[128];
    mxu_proc_exit_describe(ex, how, sizeof(how));
    const char *label = mxu_unit_label(pool->unit);
    mxu_link *l;

    if (start_failed) {
        /* Say why, with what it printed; what was sent to it never ran. */
        _cleanup_buf_ mxu_buf msg = {0};
        mxu_buf_printf(&msg, "an instance of %s failed to start: %s", label,
                       inst->crash_reason[0] ? inst->crash_reason : how);
        if (inst->start_log.len) {
            size_t n = MXU_MIN(inst->start_log.len, 400u);
            mxu_buf_puts(&msg, "; its output: ");
            mxu_buf_append(&msg, inst->start_log.data + inst->start_log.len - n, n);
        }
        mxu_warn("%s", msg.data);
        pool->start_failures++;
        pool->retry_at_ms = sched_now(pool->sched) +
                            MXU_MIN(100ull << MXU_MIN(pool->start_failures - 1, 9u), 30000ull);
        while ((l = mxu_list_first(&inst->inflight)) != NULL)
            mxu_sched_inv_fail(mxu_container_of(l, mxu_invocation, qlink), MXU_INV_START_FAILED,
                               "%s", msg.data);
        if (pool->alive == 0)
            mxu_sched_pool_fail_queue(pool, MXU_INV_START_FAILED, msg.data);
        inst_end(inst);
        return;
    }

    /* In-flight invocations: the head takes the blame unless the node ended
     * the instance; the others never started and are queued again. */
    mxu_invocation *head = inst_head(inst);
    if (head && !node_ended_it) {
        if (inst->crash_reason[0] && inst->blame_head)
            mxu_sched_inv_fail(head, MXU_INV_BAD_RESPONSE, "%s %s", label, inst->crash_reason);
        else
            mxu_sched_inv_fail(head, MXU_INV_CRASHED,
                               "%s crashed while handling this invocation: %s%s%s", label, how,
                               inst->crash_reason[0] ? "; " : "", inst->crash_reason);
    }
    while ((l = inst->inflight.head.prev) != &inst->inflight.head)
        mxu_sched_requeue_front(pool, mxu_container_of(l, mxu_invocation, qlink));
    inst_end(inst);
}

/* Release everything; the struct goes when its handles have closed. */
static void inst_end(mxu_instance *inst)
{
    if (inst->chan) {
        mxu_channel_close(inst->chan);
        inst->chan = NULL;
    }
    close_stdin(inst);
    if (inst->stdout_polling)
        uv_poll_stop(&inst->stdout_poll);
    if (inst->stderr_polling)
        uv_poll_stop(&inst->stderr_poll);
    uv_timer_stop(&inst->timer);
    uv_close((uv_handle_t *)&inst->timer, on_inst_handle_closed);
    if (inst->stderr_fd >= 0)
        uv_close((uv_handle_t *)&inst->stderr_poll, on_inst_handle_closed);
    if (inst->stdout_fd >= 0)
        uv_close((uv_handle_t *)&inst->stdout_poll, on_inst_handle_closed);
    /* close_stdin() above closed the stdin poll handle, if there was one. */
    /* The polls are closed: now their fds may go, with the process handle. */
    mxu_proc_free(inst->proc);
    inst->proc = NULL;
    /* A function it called has nobody to answer to any more. */
    if (inst->svc_call)
        mxu_sched_svc_abandon(inst);
    mxu_sched_instance_gone(inst);
}

int mxu_instance_start(mxu_pool *pool, mxu_invocation *exec_inv, mxu_instance **out, mxu_err *err)
{
    mxu_sched *s = pool->sched;
    const mxu_executor_ops *ops = mxu_unit_executor(pool->unit);
    mxu_instance *inst = mxu_calloc(1, sizeof(*inst));
    inst->id = ++s->next_inst_id;
    inst->pool = pool;
    inst->stderr_fd = inst->stdin_fd = inst->stdout_fd = -1;
    inst->reserved_bytes = pool->m->memory_bytes;
    mxu_list_init(&inst->inflight);

    int rc;
    if (exec_inv) {
        char **env = exec_env(exec_inv, pool->m->timeout_ms);
        mxu_unit_spec_scratch scratch;
        mxu_unit_exec_spec(pool->unit, (const char *const *)env, &scratch);
        rc = ops->spawn(s->exec, &scratch.spec, on_proc_exit, inst, &inst->proc, err);
        mxu_unit_spec_scratch_free(&scratch);
        free_env(env);
    } else {
        rc = ops->spawn(s->exec, mxu_unit_warm_spec(pool->unit), on_proc_exit, inst, &inst->proc,
                        err);
    }
    if (rc < 0) {
        free(inst);
        return -1;
    }

    /* From here on the instance exists; failures end it through its exit. */
    mxu_proc_fds *fds = (mxu_proc_fds *)mxu_proc_get_fds(inst->proc);
    uv_timer_init(s->loop, &inst->timer);
    inst->timer.data = inst;
    inst->pending_closes = 1;
    inst->stderr_fd = fds->stderr_r;
    uv_poll_init(s->loop, &inst->stderr_poll, inst->stderr_fd);
    inst->stderr_poll.data = inst;
    inst->pending_closes++;
    inst->stderr_polling = true;
    uv_poll_start(&inst->stderr_poll, UV_READABLE, on_stderr);
    inst->started_ms = sched_now(s);
    inst->last_used_ms = inst->started_ms;
    inst->state = INST_STARTING;
    pool->alive++;
    pool->starting++;
    s->ninstances++;
    mxu_list_push_back(&pool->instances, &inst->plink);

    if (exec_inv) {
        inst->stdin_fd = mxu_proc_steal_fd(inst->proc, &fds->stdin_w);
        inst->stdout_fd = fds->stdout_r;
        uv_poll_init(s->loop, &inst->stdout_poll, inst->stdout_fd);
        inst->stdout_poll.data = inst;
        inst->pending_closes++;
        inst->stdout_polling = true;
        uv_poll_start(&inst->stdout_poll, UV_READABLE, on_stdout);
        inst_set_state(inst, INST_READY);
        inst->ready_ms = inst->started_ms;
    } else {
        static const mxu_channel_cbs cbs = {on_frame, on_channel_end, on_batch};
        int fd = mxu_proc_steal_fd(inst->proc, &fds->channel);
        int wfd = fds->channel_split ? mxu_proc_steal_fd(inst->proc, &fds->channel_w) : -1;
        if (mxu_channel_open(s->loop, fd, wfd, s->cfg.max_response_bytes + (1u << 20), &cbs, inst,
                             &inst->chan, err) < 0) {
            close(fd);
            if (wfd >= 0)
                close(wfd);
            mxu_instance_kill(inst, "no channel");
        } else {
            uv_timer_start(&inst->timer, on_start_timeout, s->cfg.start_timeout_ms, 0);
        }
    }
    *out = inst;
    return 0;
}

json_t *mxu_instance_json(mxu_instance *inst)
{
    static const char *const states[] = {"starting", "ready", "stopping", "dead"};
    mxu_pool *pool = inst->pool;
    mxu_sched *s = pool->sched;
    uint64_t now = sched_now(s);
    mxu_usage u = {0};
    if (inst->proc)
        mxu_unit_executor(pool->unit)->usage(inst->proc, &u);
    json_t *j = json_object();
    json_object_set_new(j, "id", json_integer((json_int_t)inst->id));
    json_object_set_new(j, "tenant", json_string(pool->version->tenant));
    json_object_set_new(j, "function", json_string(pool->version->function));
    json_object_set_new(j, "version", json_integer(pool->version->version));
    json_object_set_new(j, "executor", json_string(mxu_unit_executor(pool->unit)->name));
    json_object_set_new(j, "pid", json_integer(inst->proc ? mxu_proc_pid(inst->proc) : 0));
    json_object_set_new(j, "state", json_string(states[inst->state]));
    json_object_set_new(j, "in_flight", json_integer((json_int_t)inst->inflight.len));
    json_object_set_new(j, "invocations", json_integer((json_int_t)inst->served));
    json_object_set_new(j, "age_ms", json_integer((json_int_t)(now - inst->started_ms)));
    json_object_set_new(
        j, "idle_ms",
        json_integer(inst->inflight.len ? 0 : (json_int_t)(now - inst->last_used_ms)));
    json_object_set_new(j, "memory_reserved", json_integer((json_int_t)inst->reserved_bytes));
    json_object_set_new(j, "cpu_ms", json_integer((json_int_t)(u.cpu_us / 1000)));
    json_object_set_new(j, "peak_memory", json_integer((json_int_t)u.peak_bytes));
    return j;
}
