/*
 * queue, scheme "redis": a Redis stream with one consumer group per resource,
 * over the shared connection of resolve-redis.c.
 *
 * Keys, for resource R (one hash tag, so the scripts may touch them all):
 *   mxu:{R}:q      the stream; group "mxu", one consumer "mxu" (leases, not
 *                  consumer names, say who holds a message)
 *   mxu:{R}:seq    the last message id given out
 *   mxu:{R}:lease  a sorted set: entry id → end of its lease (ms, Redis' clock)
 *
 * Ids. publish XADDs with the explicit entry id "0-N", N from INCR of seq,
 * so message ids are the plain growing integers the protocol carries (a
 * stream's own "ms-seq" ids do not fit one number).
 *
 * Leases. The lease is the consumer's: each consumed message gets its own
 * deadline (now + lease_ms) in the lease set. consume first takes back a
 * message whose deadline passed (the lowest id among them; XCLAIM, which
 * counts the delivery), and only if there is none reads a new one
 * (XREADGROUP ">"). So a message is hidden for exactly the lease its consumer
 * asked for, whatever leases other consumers ask for — unlike using a
 * consume's lease as XAUTOCLAIM's min-idle, which would let a consumer with a
 * short lease take messages from one with a long lease.
 *
 * Receipts are "<entry id>:<deliveries>" ("0-17:2"). ack XACKs and XDELs
 * only while that delivery's lease runs: a late ack (the lease ran out, the
 * message may be with someone else) or a second ack is NOT_FOUND. attempts
 * is the delivery count of the group's pending list (XPENDING).
 *
 * The group is created (XGROUP CREATE ... MKSTREAM) when a backend opens and,
 * since a Redis restarted without persistence has lost it, again by consume
 * whenever Redis says NOGROUP.
 */
#include "resolve-internal.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

typedef struct queue_redis {
    mxu_backend base;
    mxu_redis *redis;
    char *stream, *seq, *lease;
    char display[96];
} queue_redis;

/* ---- scripts -------------------------------------------------------------------------------- */

/* KEYS: stream, seq. ARGV[1]: the message. Returns the id. */
static mxu_redis_script publish_script = {
    .src = "local n = redis.call('INCR', KEYS[2])\n"
           "redis.call('XADD', KEYS[1], '0-' .. n, 'm', ARGV[1])\n"
           "return n\n"};

/* KEYS: stream, lease. ARGV[1]: lease ms. Returns {entry id, payload,
 * deliveries} or false when nothing is visible. */
static mxu_redis_script consume_script = {
    .src = "local t = redis.call('TIME')\n"
           "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
           "local until_ms = now + tonumber(ARGV[1])\n"
           "local function seq(id) return tonumber(string.sub(id, 3)) end\n"
           "while true do\n"
           "  local exp = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, 64)\n"
           "  if #exp == 0 then break end\n"
           "  local best = exp[1]\n"
           "  for i = 2, #exp do if seq(exp[i]) < seq(best) then best = exp[i] end end\n"
           "  local c = redis.pcall('XCLAIM', KEYS[1], 'mxu', 'mxu', 0, best)\n"
           "  if type(c) == 'table' and not c.err and #c > 0 and c[1] then\n"
           "    redis.call('ZADD', KEYS[2], until_ms, best)\n"
           "    local p = redis.call('XPENDING', KEYS[1], 'mxu', best, best, 1)\n"
           "    return {best, c[1][2][2], p[1][4]}\n"
           "  end\n"
           "  redis.call('ZREM', KEYS[2], best)\n"
           "end\n"
           "local function read()\n"
           "  return redis.pcall('XREADGROUP', 'GROUP', 'mxu', 'mxu', 'COUNT', 1, 'STREAMS',\n"
           "                     KEYS[1], '>')\n"
           "end\n"
           "local r = read()\n"
           "if type(r) == 'table' and r.err then\n"
           "  if not string.find(r.err, 'NOGROUP') then return r end\n"
           "  redis.call('XGROUP', 'CREATE', KEYS[1], 'mxu', '0', 'MKSTREAM')\n"
           "  r = read()\n"
           "  if type(r) == 'table' and r.err then return r end\n"
           "end\n"
           "if not r or #r == 0 or #r[1][2] == 0 then return false end\n"
           "local e = r[1][2][1]\n"
           "redis.call('ZADD', KEYS[2], until_ms, e[1])\n"
           "return {e[1], e[2][2], 1}\n"};

/* KEYS: stream, lease. ARGV: entry id, deliveries. 1 if acked, else 0. */
static mxu_redis_script ack_script = {
    .src = "local dl = redis.call('ZSCORE', KEYS[2], ARGV[1])\n"
           "if not dl then return 0 end\n"
           "local t = redis.call('TIME')\n"
           "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
           "if tonumber(dl) <= now then return 0 end\n"
           "local p = redis.pcall('XPENDING', KEYS[1], 'mxu', ARGV[1], ARGV[1], 1)\n"
           "if type(p) ~= 'table' or p.err or #p == 0 then return 0 end\n"
           "if tostring(p[1][4]) ~= ARGV[2] then return 0 end\n"
           "redis.call('XACK', KEYS[1], 'mxu', ARGV[1])\n"
           "redis.call('XDEL', KEYS[1], ARGV[1])\n"
           "redis.call('ZREM', KEYS[2], ARGV[1])\n"
           "return 1\n"};

/* ---- open / close --------------------------------------------------------------------------- */

static void group_created(void *ud, redisReply *reply, const char *unavailable)
{
    /* BUSYGROUP (it exists) is the usual answer; a Redis that is down now
     * gets the group from the first consume after it is back. Nothing to
     * tell anyone, and `ud` is NULL: the backend may be closed by now. */
    MXU_UNUSED(ud);
    MXU_UNUSED(reply);
    MXU_UNUSED(unavailable);
}

static int qr_open(const mxu_backend_config *cfg, mxu_backend **out, mxu_err *err)
{
    if (cfg->resource == NULL || cfg->resource[0] == '\0')
        return mxu_err_set(err, EINVAL, "a queue backend needs a resource name");
    if (cfg->loop == NULL)
        return mxu_err_set(err, EINVAL, "a Redis backend needs the node's loop");
    mxu_redis *r = mxu_redis_get(cfg->loop, cfg->location, err);
    if (r == NULL)
        return -1;
    queue_redis *q = mxu_calloc(1, sizeof(*q));
    q->base.driver = &mxu_driver_queue_redis;
    q->redis = r;
    q->stream = mxu_asprintf("mxu:{%s}:q", cfg->resource);
    q->seq = mxu_asprintf("mxu:{%s}:seq", cfg->resource);
    q->lease = mxu_asprintf("mxu:{%s}:lease", cfg->resource);
    mxu_res_display(cfg->resource, q->display, sizeof(q->display));
    const char *av[] = {"XGROUP", "CREATE", q->stream, "mxu", "0", "MKSTREAM"};
    size_t al[] = {6, 6, strlen(q->stream), 3, 1, 8};
    mxu_redis_command(r, 6, av, al, group_created, NULL);
    *out = &q->base;
    return 0;
}

static void qr_close(mxu_backend *b)
{
    queue_redis *q = (queue_redis *)b;
    mxu_redis_put(q->redis);
    free(q->stream);
    free(q->seq);
    free(q->lease);
    free(q);
}

/* ---- operations ------------------------------------------------------------------------------ */

enum qr_op { OP_PUBLISH, OP_CONSUME, OP_ACK };

typedef struct qr_call {
    queue_redis *q;
    enum qr_op op;
    mxu_res_cb cb;
    void *ud;
    char receipt[64];
} qr_call;

static qr_call *call_new(queue_redis *q, enum qr_op op, mxu_res_cb cb, void *ud)
{
    qr_call *c = mxu_calloc(1, sizeof(*c));
    c->q = q;
    c->op = op;
    c->cb = cb;
    c->ud = ud;
    return c;
}

/* "0-N" → N, or 0 if it is not of that shape. */
static uint64_t entry_seq(const char *id, size_t len)
{
    if (len < 3 || len > 22 || id[0] != '0' || id[1] != '-')
        return 0;
    uint64_t v = 0;
    for (size_t i = 2; i < len; i++) {
        if (id[i] < '0' || id[i] > '9')
            return 0;
        v = v * 10 + (uint64_t)(id[i] - '0');
    }
    return v;
}

static void odd(qr_call *c, const redisReply *reply)
{
    if (reply->type == REDIS_REPLY_ERROR)
        mxu_res_fail(c->cb, c->ud, MXU_RES_UNAVAILABLE, "%s: %s answered: %s", c->q->display,
                     mxu_redis_name(c->q->redis), reply->str);
    else
        mxu_res_fail(c->cb, c->ud, MXU_RES_UNAVAILABLE, "%s: unexpected answer from %s",
                     c->q->display, mxu_redis_name(c->q->redis));
}

static void consumed(qr_call *c, const redisReply *reply)
{
    if (reply->type == REDIS_REPLY_NIL) {
        mxu_res_fail(c->cb, c->ud, MXU_RES_NOT_FOUND, "%s has no message to consume",
                     c->q->display);
        return;
    }
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 3 ||
        reply->element[0]->type != REDIS_REPLY_STRING ||
        reply->element[1]->type != REDIS_REPLY_STRING ||
        reply->element[2]->type != REDIS_REPLY_INTEGER) {
        odd(c, reply);
        return;
    }
    const redisReply *id = reply->element[0];
    uint64_t n = entry_seq(id->str, id->len);
    long long deliveries = reply->element[2]->integer;
    if (n == 0 || deliveries < 1) {
        odd(c, reply);
        return;
    }
    snprintf(c->receipt, sizeof(c->receipt), "%s:%lld", id->str, deliveries);
    mxu_res_result r = {.status = MXU_RES_OK,
                        .data = reply->element[1]->str,
                        .len = reply->element[1]->len,
                        .receipt = c->receipt,
                        .n1 = (uint64_t)deliveries,
                        .n2 = n};
    c->cb(c->ud, &r);
}

static void answered(void *ud, redisReply *reply, const char *unavailable)
{
    qr_call *c = ud;
    if (reply == NULL) {
        mxu_res_fail(c->cb, c->ud, MXU_RES_UNAVAILABLE, "%s: %s", c->q->display, unavailable);
    } else if (reply->type == REDIS_REPLY_ERROR) {
        odd(c, reply);
    } else if (c->op == OP_PUBLISH) {
        if (reply->type != REDIS_REPLY_INTEGER || reply->integer < 1) {
            odd(c, reply);
        } else {
            mxu_res_result r = {.status = MXU_RES_OK, .n1 = (uint64_t)reply->integer};
            c->cb(c->ud, &r);
        }
    } else if (c->op == OP_CONSUME) {
        consumed(c, reply);
    } else if (reply->type != REDIS_REPLY_INTEGER) {
        odd(c, reply);
    } else if (reply->integer != 1) {
        mxu_res_fail(c->cb, c->ud, MXU_RES_NOT_FOUND,
                     "%s: message %s is not held with that receipt (acked already, or its lease "
                     "ran out and it may be delivered again)",
                     c->q->display, c->receipt);
    } else {
        mxu_res_result r = {.status = MXU_RES_OK};
        c->cb(c->ud, &r);
    }
    free(c);
}

static void qr_publish(mxu_backend *b, const void *msg, size_t len, mxu_res_cb cb, void *ud)
{
    queue_redis *q = (queue_redis *)b;
    if (msg == NULL && len > 0) {
        mxu_res_fail(cb, ud, MXU_RES_INVALID, "%s: message of %zu bytes without data", q->display,
                     len);
        return;
    }
    const char *av[] = {q->stream, q->seq, len ? msg : ""};
    size_t al[] = {strlen(q->stream), strlen(q->seq), len};
    mxu_redis_eval(q->redis, &publish_script, 2, 3, av, al, answered,
                   call_new(q, OP_PUBLISH, cb, ud));
}

static void qr_consume(mxu_backend *b, uint64_t lease_ms, mxu_res_cb cb, void *ud)
{
    queue_redis *q = (queue_redis *)b;
    if (lease_ms == 0)
        lease_ms = MXU_RES_LEASE_DEFAULT_MS;
    if (lease_ms > MXU_RES_LEASE_MAX_MS) {
        mxu_res_fail(cb, ud, MXU_RES_INVALID, "%s: a lease of %llu ms is longer than a week",
                     q->display, (unsigned long long)lease_ms);
        return;
    }
    char lease[24];
    snprintf(lease, sizeof(lease), "%llu", (unsigned long long)lease_ms);
    const char *av[] = {q->stream, q->lease, lease};
    size_t al[] = {strlen(q->stream), strlen(q->lease), strlen(lease)};
    mxu_redis_eval(q->redis, &consume_script, 2, 3, av, al, answered,
                   call_new(q, OP_CONSUME, cb, ud));
}

static void qr_ack(mxu_backend *b, const char *receipt, mxu_res_cb cb, void *ud)
{
    queue_redis *q = (queue_redis *)b;
    /* "0-N:D" with N and D decimal. */
    const char *colon = receipt ? strchr(receipt, ':') : NULL;
    const char *d = colon ? colon + 1 : NULL;
    bool ok = colon != NULL && entry_seq(receipt, (size_t)(colon - receipt)) > 0 && *d != '\0' &&
              strlen(d) <= 10 && strspn(d, "0123456789") == strlen(d) && d[0] != '0';
    if (!ok) {
        char qr[128];
        mxu_res_quote(receipt, qr, sizeof(qr));
        mxu_res_fail(cb, ud, MXU_RES_INVALID, "'%s' is not a receipt of %s", qr, q->display);
        return;
    }
    qr_call *c = call_new(q, OP_ACK, cb, ud);
    snprintf(c->receipt, sizeof(c->receipt), "%.*s", (int)(colon - receipt), receipt);
    const char *av[] = {q->stream, q->lease, c->receipt, d};
    size_t al[] = {strlen(q->stream), strlen(q->lease), strlen(c->receipt), strlen(d)};
    mxu_redis_eval(q->redis, &ack_script, 2, 4, av, al, answered, c);
}

const mxu_driver mxu_driver_queue_redis = {
    .kind = "queue",
    .scheme = "redis",
    .open = qr_open,
    .close = qr_close,
    .queue_publish = qr_publish,
    .queue_consume = qr_consume,
    .queue_ack = qr_ack,
};
