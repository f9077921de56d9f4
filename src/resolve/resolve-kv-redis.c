/*
 * kv, scheme "redis" (redis://HOST:PORT[/DB]): keys and values in a Redis
 * server, over the shared connection of resolve-redis.c.
 *
 * Layout, for resource R (e.g. default/kv/orders), all keys under the hash
 * tag {R} so that a Redis Cluster would keep a resource in one slot and the
 * scripts below may touch all of its keys:
 *   mxu:{R}:k:KEY   a hash {v: value, r: revision}, so that a value and its
 *                   revision are written and read together
 *   mxu:{R}:keys    a sorted set of every KEY, all with score 0: members of
 *                   equal score sort by their bytes, so ZRANGEBYLEX lists a
 *                   prefix in byte order, page by page (SCAN has no order)
 *
 * Writes are Lua scripts (atomic in Redis) that keep the hash and the index
 * in step: put (r + 1), compare-and-set, delete, import. A get is HMGET.
 *
 * When Redis is down, or stops answering, or the connection drops while an
 * operation is out, the operation fails with MXU_RES_UNAVAILABLE; a write
 * that was out when the connection dropped may or may not have happened.
 */
#include "resolve-internal.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

typedef struct kv_redis {
    mxu_backend base;
    mxu_redis *redis;
    char *prefix; /* "mxu:{default/kv/orders}:" */
    size_t prefix_len;
    char display[96];
} kv_redis;

/* ---- scripts ---------------------------------------------------------------------------------
 * KEYS[1] = the key's hash, KEYS[2] = the index; ARGV[1] = value, ARGV[2] =
 * the key itself (the index member). */

static mxu_redis_script put_script = {.src = "local r = redis.call('HINCRBY', KEYS[1], 'r', 1)\n"
                                             "redis.call('HSET', KEYS[1], 'v', ARGV[1])\n"
                                             "redis.call('ZADD', KEYS[2], 0, ARGV[2])\n"
                                             "return r\n"};

/* ARGV[3] = the expected revision (0: must not exist). {1, new} or {0, current}. */
static mxu_redis_script cas_script = {
    .src = "local cur = tonumber(redis.call('HGET', KEYS[1], 'r') or '0')\n"
           "if cur ~= tonumber(ARGV[3]) then return {0, cur} end\n"
           "redis.call('HSET', KEYS[1], 'v', ARGV[1], 'r', cur + 1)\n"
           "redis.call('ZADD', KEYS[2], 0, ARGV[2])\n"
           "return {1, cur + 1}\n"};

/* ARGV[1] = the key. Returns how many were deleted (0 or 1). */
static mxu_redis_script delete_script = {.src = "local n = redis.call('DEL', KEYS[1])\n"
                                                "redis.call('ZREM', KEYS[2], ARGV[1])\n"
                                                "return n\n"};

/* ARGV[3] = the revision to store. */
static mxu_redis_script import_script = {
    .src = "redis.call('HSET', KEYS[1], 'v', ARGV[1], 'r', ARGV[3])\n"
           "redis.call('ZADD', KEYS[2], 0, ARGV[2])\n"
           "return tonumber(ARGV[3])\n"};

/* ---- open / close --------------------------------------------------------------------------- */

static int kvr_open(const mxu_backend_config *cfg, mxu_backend **out, mxu_err *err)
{
    if (cfg->resource == NULL || cfg->resource[0] == '\0')
        return mxu_err_set(err, EINVAL, "a kv backend needs a resource name");
    if (cfg->loop == NULL)
        return mxu_err_set(err, EINVAL, "a Redis backend needs the node's loop");
    mxu_redis *r = mxu_redis_get(cfg->loop, cfg->location, err);
    if (r == NULL)
        return -1;
    kv_redis *k = mxu_calloc(1, sizeof(*k));
    k->base.driver = &mxu_driver_kv_redis;
    k->redis = r;
    k->prefix = mxu_asprintf("mxu:{%s}:", cfg->resource);
    k->prefix_len = strlen(k->prefix);
    mxu_res_display(cfg->resource, k->display, sizeof(k->display));
    *out = &k->base;
    return 0;
}

static void kvr_close(mxu_backend *b)
{
    kv_redis *k = (kv_redis *)b;
    mxu_redis_put(k->redis);
    free(k->prefix);
    free(k);
}

/* ---- operations ------------------------------------------------------------------------------ */

enum kvr_op { OP_GET, OP_PUT, OP_CAS, OP_DELETE, OP_IMPORT, OP_LIST };

/* One operation out: what the answer needs. */
typedef struct kvr_call {
    kv_redis *k;
    enum kvr_op op;
    mxu_res_cb cb;
    void *ud;
    uint64_t expected;
    size_t limit;
    char key[]; /* for messages */
} kvr_call;

static kvr_call *call_new(kv_redis *k, enum kvr_op op, const char *key, mxu_res_cb cb, void *ud)
{
    size_t n = strlen(key);
    kvr_call *c = mxu_malloc(sizeof(*c) + n + 1);
    c->k = k;
    c->op = op;
    c->cb = cb;
    c->ud = ud;
    c->expected = 0;
    c->limit = 0;
    memcpy(c->key, key, n + 1);
    return c;
}

static uint64_t reply_u64(const redisReply *r)
{
    if (r == NULL)
        return 0;
    if (r->type == REDIS_REPLY_INTEGER)
        return r->integer > 0 ? (uint64_t)r->integer : 0;
    if (r->type == REDIS_REPLY_STRING) {
        uint64_t v = 0;
        return mxu_parse_u64(r->str, &v) == 0 ? v : 0;
    }
    return 0;
}

/* Answer for a reply that is not what a well-behaved Redis sends. */
static void answer_odd(kvr_call *c, const redisReply *reply)
{
    if (reply->type == REDIS_REPLY_ERROR)
        mxu_res_fail(c->cb, c->ud, MXU_RES_UNAVAILABLE, "%s: %s answered: %s", c->k->display,
                     mxu_redis_name(c->k->redis), reply->str);
    else
        mxu_res_fail(c->cb, c->ud, MXU_RES_UNAVAILABLE, "%s: unexpected answer from %s",
                     c->k->display, mxu_redis_name(c->k->redis));
}

static void list_answer(kvr_call *c, redisReply *reply)
{
    if (reply->type != REDIS_REPLY_ARRAY) {
        answer_odd(c, reply);
        return;
    }
    size_t n = MXU_MIN(reply->elements, c->limit);
    const char **keys = mxu_calloc(n + 1, sizeof(char *));
    for (size_t i = 0; i < n; i++) {
        const redisReply *e = reply->element[i];
        keys[i] = e->type == REDIS_REPLY_STRING ? e->str : "";
    }
    mxu_res_result r = {.status = MXU_RES_OK,
                        .keys = keys,
                        .nkeys = n,
                        .n1 = n,
                        .cursor = reply->elements > c->limit && n > 0 ? keys[n - 1] : ""};
    c->cb(c->ud, &r);
    free(keys);
}

static void answered(void *ud, redisReply *reply, const char *unavailable)
{
    kvr_call *c = ud;
    kv_redis *k = c->k;
    char q[128];
    mxu_res_quote(c->key, q, sizeof(q));
    if (reply == NULL) {
        mxu_res_fail(c->cb, c->ud, MXU_RES_UNAVAILABLE, "%s: %s", k->display, unavailable);
    } else if (reply->type == REDIS_REPLY_ERROR) {
        answer_odd(c, reply);
    } else if (c->op == OP_GET) {
        if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2) {
            answer_odd(c, reply);
        } else if (reply->element[0]->type != REDIS_REPLY_STRING) {
            mxu_res_fail(c->cb, c->ud, MXU_RES_NOT_FOUND, "no key '%s' in %s", q, k->display);
        } else {
            mxu_res_result r = {.status = MXU_RES_OK,
                                .data = reply->element[0]->str,
                                .len = reply->element[0]->len,
                                .n1 = reply_u64(reply->element[1])};
            c->cb(c->ud, &r);
        }
    } else if (c->op == OP_PUT || c->op == OP_IMPORT) {
        mxu_res_result r = {.status = MXU_RES_OK, .n1 = reply_u64(reply)};
        c->cb(c->ud, &r);
    } else if (c->op == OP_CAS) {
        if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2) {
            answer_odd(c, reply);
        } else if (reply_u64(reply->element[0]) == 1) {
            mxu_res_result r = {.status = MXU_RES_OK, .n1 = reply_u64(reply->element[1])};
            c->cb(c->ud, &r);
        } else {
            unsigned long long cur = reply_u64(reply->element[1]);
            if (c->expected == 0)
                mxu_res_fail(c->cb, c->ud, MXU_RES_CONFLICT,
                             "key '%s' already exists in %s (revision %llu)", q, k->display, cur);
            else if (cur == 0)
                mxu_res_fail(c->cb, c->ud, MXU_RES_CONFLICT,
                             "no key '%s' in %s (expected revision %llu)", q, k->display,
                             (unsigned long long)c->expected);
            else
                mxu_res_fail(c->cb, c->ud, MXU_RES_CONFLICT,
                             "key '%s' in %s is at revision %llu, not %llu", q, k->display, cur,
                             (unsigned long long)c->expected);
        }
    } else if (c->op == OP_DELETE) {
        if (reply_u64(reply) == 0) {
            mxu_res_fail(c->cb, c->ud, MXU_RES_NOT_FOUND, "no key '%s' in %s", q, k->display);
        } else {
            mxu_res_result r = {.status = MXU_RES_OK};
            c->cb(c->ud, &r);
        }
    } else {
        list_answer(c, reply);
    }
    free(c);
}

/* The hash key of `key` into a buffer the caller frees. */
static char *hash_key(kv_redis *k, const char *key, size_t *len)
{
    size_t n = strlen(key);
    char *h = mxu_malloc(k->prefix_len + 2 + n + 1);
    memcpy(h, k->prefix, k->prefix_len);
    memcpy(h + k->prefix_len, "k:", 2);
    memcpy(h + k->prefix_len + 2, key, n + 1);
    *len = k->prefix_len + 2 + n;
    return h;
}

static char *index_key(kv_redis *k, size_t *len)
{
    char *ix = mxu_asprintf("%skeys", k->prefix);
    *len = strlen(ix);
    return ix;
}

static int check_value(kv_redis *k, const void *val, size_t len, mxu_res_cb cb, void *ud)
{
    if (val == NULL && len > 0) {
        mxu_res_fail(cb, ud, MXU_RES_INVALID, "%s: value of %zu bytes without data", k->display,
                     len);
        return -1;
    }
    return 0;
}

static void kvr_get(mxu_backend *b, const char *key, mxu_res_cb cb, void *ud)
{
    kv_redis *k = (kv_redis *)b;
    if (mxu_res_check_key(key, 0, 0, "key", k->display, cb, ud) < 0)
        return;
    size_t hl;
    _cleanup_free_ char *h = hash_key(k, key, &hl);
    const char *av[] = {"HMGET", h, "v", "r"};
    size_t al[] = {5, hl, 1, 1};
    mxu_redis_command(k->redis, 4, av, al, answered, call_new(k, OP_GET, key, cb, ud));
}

/* Run a write script with KEYS = {hash, index}, ARGV = {value, key, extra}. */
static void run_write(kv_redis *k, mxu_redis_script *s, kvr_call *c, const void *val, size_t len,
                      const char *extra)
{
    size_t hl, il;
    _cleanup_free_ char *h = hash_key(k, c->key, &hl);
    _cleanup_free_ char *ix = index_key(k, &il);
    const char *av[] = {h, ix, len ? val : "", c->key, extra ? extra : ""};
    size_t al[] = {hl, il, len, strlen(c->key), extra ? strlen(extra) : 0};
    mxu_redis_eval(k->redis, s, 2, extra ? 5 : 4, av, al, answered, c);
}

static void kvr_put(mxu_backend *b, const char *key, const void *val, size_t len, mxu_res_cb cb,
                    void *ud)
{
    kv_redis *k = (kv_redis *)b;
    if (mxu_res_check_key(key, 0, 0, "key", k->display, cb, ud) < 0 ||
        check_value(k, val, len, cb, ud) < 0)
        return;
    run_write(k, &put_script, call_new(k, OP_PUT, key, cb, ud), val, len, NULL);
}

/* Lua numbers are doubles: revisions beyond 2^53 would lose their exact value. */
#define REVISION_MAX (1ull << 53)

static void kvr_cas(mxu_backend *b, const char *key, uint64_t expected, const void *val, size_t len,
                    mxu_res_cb cb, void *ud)
{
    kv_redis *k = (kv_redis *)b;
    if (mxu_res_check_key(key, 0, 0, "key", k->display, cb, ud) < 0 ||
        check_value(k, val, len, cb, ud) < 0)
        return;
    if (expected >= REVISION_MAX) {
        mxu_res_fail(cb, ud, MXU_RES_INVALID, "%s: revision %llu is out of range", k->display,
                     (unsigned long long)expected);
        return;
    }
    char ex[24];
    snprintf(ex, sizeof(ex), "%llu", (unsigned long long)expected);
    kvr_call *c = call_new(k, OP_CAS, key, cb, ud);
    c->expected = expected;
    run_write(k, &cas_script, c, val, len, ex);
}

static void kvr_delete(mxu_backend *b, const char *key, mxu_res_cb cb, void *ud)
{
    kv_redis *k = (kv_redis *)b;
    if (mxu_res_check_key(key, 0, 0, "key", k->display, cb, ud) < 0)
        return;
    size_t hl, il;
    _cleanup_free_ char *h = hash_key(k, key, &hl);
    _cleanup_free_ char *ix = index_key(k, &il);
    const char *av[] = {h, ix, key};
    size_t al[] = {hl, il, strlen(key)};
    mxu_redis_eval(k->redis, &delete_script, 2, 3, av, al, answered,
                   call_new(k, OP_DELETE, key, cb, ud));
}

static void kvr_import(mxu_backend *b, const char *key, const void *val, size_t len,
                       uint64_t revision, mxu_res_cb cb, void *ud)
{
    kv_redis *k = (kv_redis *)b;
    if (mxu_res_check_key(key, 0, 0, "key", k->display, cb, ud) < 0 ||
        check_value(k, val, len, cb, ud) < 0)
        return;
    if (revision == 0 || revision >= REVISION_MAX) {
        mxu_res_fail(cb, ud, MXU_RES_INVALID, "%s: cannot import revision %llu", k->display,
                     (unsigned long long)revision);
        return;
    }
    char rev[24];
    snprintf(rev, sizeof(rev), "%llu", (unsigned long long)revision);
    run_write(k, &import_script, call_new(k, OP_IMPORT, key, cb, ud), val, len, rev);
}

static void kvr_list(mxu_backend *b, const char *prefix, const char *cursor, size_t limit,
                     mxu_res_cb cb, void *ud)
{
    kv_redis *k = (kv_redis *)b;
    if (cursor == NULL)
        cursor = "";
    if (mxu_res_check_key(prefix, 0, 1, "prefix", k->display, cb, ud) < 0 ||
        mxu_res_check_key(cursor, 0, 1, "cursor", k->display, cb, ud) < 0)
        return;
    limit = mxu_res_list_limit(limit);
    /* ZRANGEBYLEX bounds: "[x" inclusive, "(x" exclusive, "-" / "+" open. */
    size_t plen = strlen(prefix), clen = strlen(cursor);
    _cleanup_free_ char *lo = NULL;
    if (clen > 0 && strcmp(cursor, prefix) >= 0)
        lo = mxu_asprintf("(%s", cursor);
    else if (plen > 0)
        lo = mxu_asprintf("[%s", prefix);
    else
        lo = mxu_strdup("-");
    _cleanup_free_ char *end = mxu_malloc(plen + 1);
    mxu_res_prefix_end(prefix, end);
    _cleanup_free_ char *hi = end[0] ? mxu_asprintf("(%s", end) : mxu_strdup("+");
    size_t il;
    _cleanup_free_ char *ix = index_key(k, &il);
    char count[24];
    /* One more than asked: whether it exists says if there is a next page. */
    snprintf(count, sizeof(count), "%zu", limit + 1);
    const char *av[] = {"ZRANGEBYLEX", ix, lo, hi, "LIMIT", "0", count};
    size_t al[] = {11, il, strlen(lo), strlen(hi), 5, 1, strlen(count)};
    kvr_call *c = call_new(k, OP_LIST, prefix, cb, ud);
    c->limit = limit;
    mxu_redis_command(k->redis, 7, av, al, answered, c);
}

/* ---- the driver ------------------------------------------------------------------------------ */

const mxu_driver mxu_driver_kv_redis = {
    .kind = "kv",
    .scheme = "redis",
    .open = kvr_open,
    .close = kvr_close,
    .kv_get = kvr_get,
    .kv_put = kvr_put,
    .kv_delete = kvr_delete,
    .kv_cas = kvr_cas,
    .kv_list = kvr_list,
    .kv_import = kvr_import,
};
