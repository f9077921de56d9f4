/*
 * The Redis connection that resolve-kv-redis.c and resolve-queue-redis.c
 * share: hiredis' async API on the node's libuv loop, made safe to depend on.
 *
 * What hiredis 0.14 leaves to its user, and this file does:
 *   - timeouts. Its async connect has none, and commands have none: a Redis
 *     that stopped answering (SIGSTOP, a dead host, a full network) would
 *     hold every operation forever. A timer per connection (running only
 *     while something is out) drops the connection when a connect takes
 *     longer than connect_ms or the oldest command has waited command_ms;
 *     dropping it answers every command out with "unavailable".
 *   - reconnecting. A connection that failed, dropped or timed out is tried
 *     again after a backoff (50 ms doubling to 1 s), for as long as a backend
 *     holds it. While it is down, commands fail at once instead of queueing:
 *     a function should learn "backend unavailable" within its deadline, not
 *     wait for an outage to end.
 *   - exactly one callback per command. hiredis calls a command's callback
 *     with the reply, or with NULL when the context goes away (error, or our
 *     own redisAsyncFree); commands it refuses (context disconnecting) never
 *     reach it, and we answer those ourselves, before returning.
 *   - a libuv adapter that sees socket errors. hiredis 0.14's own
 *     (adapters/libuv.h) ignores a poll callback with an error status, which
 *     is how libuv reports POLLERR (a connection reset, as when Redis is
 *     killed with requests in flight): the connection then hangs until a
 *     timeout instead of failing at once. Ours hands the error to hiredis.
 *   - scripts: EVALSHA with the SHA1 that SCRIPT LOAD gave, EVAL until then
 *     and again on NOSCRIPT (Redis restarted without its script cache).
 *   - latency. hiredis asks its adapter to watch for "writable" when a
 *     command is queued and to stop when it is written, so the stock adapter
 *     sends every command one loop iteration late (after an epoll round that
 *     reports the socket writable) and re-arms the poll handle three times
 *     per command: in libuv each uv_poll_start is one or two epoll_ctl calls,
 *     15 syscalls per get where 6 do. Ours writes queued commands from a
 *     prepare handle (just before the loop next waits: commands queued in
 *     one turn go out in one write) and applies the net change of interest
 *     there, once, which is usually none.
 *
 * Lifetimes. A connection is shared by every backend naming the same
 * HOST:PORT/DB on the same loop and counted by them. The hiredis context is
 * only ever freed through hiredis (by us from the timer or a release, or by
 * hiredis itself after an error), and every path that lets go of it clears
 * `ac` first, so nothing frees it twice. Every command callback runs before
 * the free returns, or, when the free was deferred because it was asked for
 * inside a hiredis callback, before that callback's caller returns to the
 * loop; the connection struct itself is freed from its timer's close
 * callback, later, so a command's callback always finds it.
 *
 * Messages name the server: "redis 127.0.0.1:6379/0 is unavailable:
 * Connection refused".
 */
#include "resolve-internal.h"

#include <hiredis/async.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

#define TICK_MS            50
#define BACKOFF_MIN_MS     50
#define BACKOFF_MAX_MS     1000
#define CONNECT_TIMEOUT_MS 1000
#define COMMAND_TIMEOUT_MS 1500

enum conn_state { CONN_DOWN, CONN_CONNECTING, CONN_UP };

typedef struct redis_req redis_req;

struct mxu_redis {
    mxu_redis *next; /* in `conns` */
    uv_loop_t *loop;
    char host[256];
    int port, db;
    char name[300]; /* "redis 127.0.0.1:6379/0" */
    int refs;

    enum conn_state state;
    redisAsyncContext *ac; /* NULL while down */
    uv_timer_t timer;
    uint64_t connect_deadline_ns;
    uint64_t retry_at_ns;
    uint64_t backoff_ms;
    uint64_t connect_ms, command_ms;
    char why[200]; /* why it is down (for messages) */

    /* Commands sent and not answered, oldest first: Redis answers in order,
     * so the head is the one that has waited longest. */
    redis_req *head, *tail;
};

struct redis_req {
    redis_req *prev, *next;
    mxu_redis *conn;
    uint64_t deadline_ns;
    mxu_redis_cb cb;
    void *ud;
    /* Scripts keep their command to resend it as EVAL after NOSCRIPT. */
    mxu_redis_script *script;
    int argc;
    const char **argv;
    size_t *lens;
    char *store; /* the bytes argv points into, for scripts */
    bool resent;
};

/* Every connection of the process. */
static mxu_redis *conns;

static void conn_connect(mxu_redis *c);
static void tick(uv_timer_t *t);
static void uvr_want_flush(redisAsyncContext *ac);

/* ---- parsing ------------------------------------------------------------------------------- */

int mxu_redis_parse(const char *location, char *host, size_t hostlen, int *port, int *db,
                    mxu_err *err)
{
    static const char pfx[] = "redis://";
    if (location == NULL || strncmp(location, pfx, sizeof(pfx) - 1) != 0)
        return mxu_err_set(err, EINVAL, "'%s' is not a Redis location (write redis://HOST:PORT/DB)",
                           location ? location : "");
    const char *h = location + sizeof(pfx) - 1;
    const char *hend = h + strcspn(h, ":/");
    if (hend == h || (size_t)(hend - h) >= hostlen)
        return mxu_err_set(err, EINVAL, "'%s': no host (write redis://HOST:PORT/DB)", location);
    memcpy(host, h, (size_t)(hend - h));
    host[hend - h] = '\0';
    *port = 6379;
    *db = 0;
    const char *p = hend;
    if (*p == ':') {
        p++;
        long v = 0;
        const char *s = p;
        while (*p >= '0' && *p <= '9' && v <= 65535)
            v = v * 10 + (*p++ - '0');
        if (p == s || v < 1 || v > 65535)
            return mxu_err_set(err, EINVAL, "'%s': the port must be 1..65535", location);
        *port = (int)v;
    }
    if (*p == '/' && p[1] != '\0') {
        p++;
        long v = 0;
        const char *s = p;
        while (*p >= '0' && *p <= '9' && v <= 1000000)
            v = v * 10 + (*p++ - '0');
        if (p == s || v > 1000000)
            return mxu_err_set(err, EINVAL, "'%s': the database must be a number", location);
        *db = (int)v;
    } else if (*p == '/') {
        p++;
    }
    if (*p != '\0')
        return mxu_err_set(err, EINVAL, "'%s' is not a Redis location (write redis://HOST:PORT/DB)",
                           location);
    return 0;
}

/* ---- state ---------------------------------------------------------------------------------- */

static void timer_kick(mxu_redis *c)
{
    if (!uv_is_active((uv_handle_t *)&c->timer))
        uv_timer_start(&c->timer, tick, TICK_MS, TICK_MS);
}

/* The connection is gone (ac already cleared): remember why and when to try
 * again. */
static void mark_down(mxu_redis *c, const char *why)
{
    c->state = CONN_DOWN;
    snprintf(c->why, sizeof(c->why), "%s", why && why[0] ? why : "connection lost");
    c->retry_at_ns = mxu_now_ns() + c->backoff_ms * 1000000ull;
    c->backoff_ms = MXU_MIN(c->backoff_ms * 2, BACKOFF_MAX_MS);
    timer_kick(c);
}

/* Drop the connection now: every command out is answered "unavailable". */
static void conn_drop(mxu_redis *c, const char *why)
{
    redisAsyncContext *ac = c->ac;
    c->ac = NULL;
    mark_down(c, why);
    if (ac != NULL)
        redisAsyncFree(ac);
}

static void req_unlink(redis_req *q)
{
    mxu_redis *c = q->conn;
    if (q->prev)
        q->prev->next = q->next;
    else if (c->head == q)
        c->head = q->next;
    if (q->next)
        q->next->prev = q->prev;
    else if (c->tail == q)
        c->tail = q->prev;
    q->prev = q->next = NULL;
}

static void req_free(redis_req *q)
{
    free(q->argv);
    free(q->lens);
    free(q->store);
    free(q);
}

static void req_answer(redis_req *q, redisReply *reply, const char *why)
{
    char msg[600];
    if (reply == NULL) {
        snprintf(msg, sizeof(msg), "%s is unavailable: %s", q->conn->name, why);
        why = msg;
    }
    q->cb(q->ud, reply, why);
    req_free(q);
}

static void tick(uv_timer_t *t)
{
    mxu_redis *c = t->data;
    uint64_t now = mxu_now_ns();
    char why[128];
    switch (c->state) {
    case CONN_DOWN:
        if (c->refs > 0 && now >= c->retry_at_ns)
            conn_connect(c);
        break;
    case CONN_CONNECTING:
        if (now >= c->connect_deadline_ns) {
            snprintf(why, sizeof(why), "no connection within %llu ms",
                     (unsigned long long)c->connect_ms);
            conn_drop(c, why);
        }
        break;
    case CONN_UP:
        if (c->head != NULL && now >= c->head->deadline_ns) {
            snprintf(why, sizeof(why), "no answer within %llu ms",
                     (unsigned long long)c->command_ms);
            conn_drop(c, why);
        }
        break;
    }
    if (c->state == CONN_UP && c->head == NULL)
        uv_timer_stop(&c->timer);
}

/* ---- hiredis callbacks ---------------------------------------------------------------------- */

static void on_connect(const redisAsyncContext *ac, int status)
{
    mxu_redis *c = ac->data;
    if (c == NULL || c->ac != ac)
        return;
    if (status != REDIS_OK) {
        /* hiredis frees the context right after this returns and answers
         * the commands queued on it with NULL. */
        c->ac = NULL;
        mark_down(c, ac->errstr);
        return;
    }
    c->state = CONN_UP;
    c->backoff_ms = BACKOFF_MIN_MS;
    /* Commands queued while connecting had the connect time added to their
     * deadline; from now on only the answer time counts. */
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    MXU_UNUSED(status);
    mxu_redis *c = ac->data;
    if (c == NULL || c->ac != ac)
        return;
    c->ac = NULL;
    mark_down(c, ac->errstr);
}

static void on_reply(redisAsyncContext *ac, void *r, void *privdata)
{
    redis_req *q = privdata;
    mxu_redis *c = q->conn;
    redisReply *reply = r;
    req_unlink(q);
    if (reply == NULL) {
        /* The context is going away (an error, or a free of ours). If it is
         * still the current one, say so now: this callback may send more. */
        if (c->ac == ac) {
            c->ac = NULL;
            mark_down(c, ac->errstr);
        }
        req_answer(q, NULL, c->why);
        return;
    }
    if (q->script != NULL && !q->resent && reply->type == REDIS_REPLY_ERROR &&
        strncmp(reply->str, "NOSCRIPT", 8) == 0) {
        q->resent = true;
        q->argv[0] = "EVAL";
        q->lens[0] = 4;
        q->argv[1] = q->script->src;
        q->lens[1] = strlen(q->script->src);
        if (c->ac == NULL ||
            redisAsyncCommandArgv(c->ac, on_reply, q, q->argc, q->argv, q->lens) != REDIS_OK) {
            req_answer(q, NULL, c->ac ? "cannot send a command" : c->why);
            return;
        }
        q->deadline_ns = mxu_now_ns() + c->command_ms * 1000000ull;
        q->prev = c->tail;
        if (c->tail)
            c->tail->next = q;
        else
            c->head = q;
        c->tail = q;
        return;
    }
    req_answer(q, reply, NULL);
}

/* ---- sending --------------------------------------------------------------------------------- */

static void req_send(mxu_redis *c, redis_req *q)
{
    if (c->ac == NULL || c->state == CONN_DOWN) {
        req_answer(q, NULL, c->why);
        return;
    }
    if (redisAsyncCommandArgv(c->ac, on_reply, q, q->argc, q->argv, q->lens) != REDIS_OK) {
        req_answer(q, NULL, "the connection is closing");
        return;
    }
    uint64_t wait_ms = c->command_ms + (c->state == CONN_CONNECTING ? c->connect_ms : 0);
    q->deadline_ns = mxu_now_ns() + wait_ms * 1000000ull;
    q->prev = c->tail;
    if (c->tail)
        c->tail->next = q;
    else
        c->head = q;
    c->tail = q;
    timer_kick(c);
    uvr_want_flush(c->ac);
}

static redis_req *req_new(mxu_redis *c, int argc, mxu_redis_cb cb, void *ud)
{
    redis_req *q = mxu_calloc(1, sizeof(*q));
    q->conn = c;
    q->cb = cb;
    q->ud = ud;
    q->argc = argc;
    q->argv = mxu_calloc((size_t)argc, sizeof(char *));
    q->lens = mxu_calloc((size_t)argc, sizeof(size_t));
    return q;
}

void mxu_redis_command(mxu_redis *c, int argc, const char **argv, const size_t *lens,
                       mxu_redis_cb cb, void *ud)
{
    /* hiredis formats the command into its output buffer at once, so the
     * arguments need not outlive this call. */
    redis_req *q = req_new(c, argc, cb, ud);
    memcpy(q->argv, argv, (size_t)argc * sizeof(char *));
    memcpy(q->lens, lens, (size_t)argc * sizeof(size_t));
    req_send(c, q);
}

static void script_loaded(void *ud, redisReply *reply, const char *unavailable)
{
    MXU_UNUSED(unavailable);
    mxu_redis_script *s = ud;
    s->loading = 0;
    if (reply && reply->type == REDIS_REPLY_STRING && reply->len == 40)
        memcpy(s->sha, reply->str, 41);
}

void mxu_redis_eval(mxu_redis *c, mxu_redis_script *s, int nkeys, int argc, const char **argv,
                    const size_t *lens, mxu_redis_cb cb, void *ud)
{
    if (s->sha[0] == '\0' && !s->loading && c->ac != NULL) {
        /* Learn the SHA1 once per process; Redis computes it for us. */
        const char *la[] = {"SCRIPT", "LOAD", s->src};
        size_t ll[] = {6, 4, strlen(s->src)};
        s->loading = 1;
        mxu_redis_command(c, 3, la, ll, script_loaded, s);
    }
    /* The arguments are copied: after NOSCRIPT the command goes out again,
     * long after the caller's buffers are gone. */
    char nk[16];
    int nklen = snprintf(nk, sizeof(nk), "%d", nkeys);
    size_t total = (size_t)nklen + 1;
    for (int i = 0; i < argc; i++)
        total += lens[i] + 1;
    redis_req *q = req_new(c, argc + 3, cb, ud);
    q->script = s;
    char *store = q->store = mxu_malloc(total);
    const char **av = q->argv;
    memcpy(store, nk, (size_t)nklen + 1);
    bool have_sha = s->sha[0] != '\0';
    av[0] = have_sha ? "EVALSHA" : "EVAL";
    q->lens[0] = have_sha ? 7 : 4;
    av[1] = have_sha ? s->sha : s->src;
    q->lens[1] = strlen(av[1]);
    av[2] = store;
    q->lens[2] = (size_t)nklen;
    char *p = store + nklen + 1;
    for (int i = 0; i < argc; i++) {
        if (lens[i] > 0)
            memcpy(p, argv[i], lens[i]);
        p[lens[i]] = '\0';
        av[3 + i] = p;
        q->lens[3 + i] = lens[i];
        p += lens[i] + 1;
    }
    req_send(c, q);
}

/* ---- the libuv adapter -------------------------------------------------------------------------
 * The same shape as hiredis' adapters/libuv.h (one uv_poll_t per context,
 * hiredis asks to add/remove read and write interest), plus error handling:
 * see the top of this file. */

typedef struct redis_uv {
    redisAsyncContext *ac; /* NULL once hiredis let go of it */
    uv_poll_t poll;
    uv_prepare_t apply; /* runs before the loop waits: flush, then apply `events` */
    int events;         /* what hiredis wants watched */
    int applied;        /* what `poll` watches */
    bool flush;         /* commands were queued this turn */
    int closes;         /* handles still closing, in cleanup */
} redis_uv;

static void uvr_poll(uv_poll_t *h, int status, int events)
{
    redis_uv *p = h->data;
    if (p->ac == NULL)
        return;
    if (status < 0) {
        /* libuv stopped the handle; the read or write that hiredis now
         * tries fails with the socket's error and disconnects. */
        events = p->events ? p->events : UV_READABLE;
        p->applied = 0;
    }
    if (events & UV_READABLE)
        redisAsyncHandleRead(p->ac);
    if (p->ac != NULL && (events & UV_WRITABLE))
        redisAsyncHandleWrite(p->ac);
}

static void uvr_apply(uv_prepare_t *h)
{
    redis_uv *p = h->data;
    uv_prepare_stop(&p->apply);
    if (p->flush && p->ac != NULL && (p->ac->c.flags & REDIS_CONNECTED)) {
        /* Send what was queued this turn now, in one write, rather than
         * after the next epoll round says the socket is writable. A write
         * error disconnects, and then cleanup has run: p->ac is NULL. */
        p->flush = false;
        redisAsyncHandleWrite(p->ac);
    }
    if (p->ac == NULL || p->events == p->applied)
        return;
    p->applied = p->events;
    if (p->events)
        uv_poll_start(&p->poll, p->events, uvr_poll);
    else
        uv_poll_stop(&p->poll);
}

static void uvr_update(redis_uv *p, int add, int del)
{
    p->events = (p->events | add) & ~del;
    if (p->events != p->applied)
        uv_prepare_start(&p->apply, uvr_apply);
}

static void uvr_want_flush(redisAsyncContext *ac)
{
    redis_uv *p = ac ? ac->ev.data : NULL;
    if (p == NULL)
        return;
    p->flush = true;
    uv_prepare_start(&p->apply, uvr_apply);
}

static void uvr_add_read(void *d)
{
    uvr_update(d, UV_READABLE, 0);
}

static void uvr_del_read(void *d)
{
    uvr_update(d, 0, UV_READABLE);
}

static void uvr_add_write(void *d)
{
    uvr_update(d, UV_WRITABLE, 0);
}

static void uvr_del_write(void *d)
{
    uvr_update(d, 0, UV_WRITABLE);
}

static void uvr_closed(uv_handle_t *h)
{
    redis_uv *p = h->data;
    if (--p->closes == 0)
        free(p);
}

static void uvr_cleanup(void *d)
{
    redis_uv *p = d;
    p->ac = NULL;
    p->closes = 2;
    uv_close((uv_handle_t *)&p->poll, uvr_closed);
    uv_close((uv_handle_t *)&p->apply, uvr_closed);
}

static int uvr_attach(redisAsyncContext *ac, uv_loop_t *loop)
{
    if (ac->ev.data != NULL)
        return REDIS_ERR;
    redis_uv *p = mxu_calloc(1, sizeof(*p));
    if (uv_poll_init(loop, &p->poll, ac->c.fd) != 0) {
        free(p);
        return REDIS_ERR;
    }
    uv_prepare_init(loop, &p->apply);
    p->apply.data = p;
    p->ac = ac;
    p->poll.data = p;
    ac->ev.data = p;
    ac->ev.addRead = uvr_add_read;
    ac->ev.delRead = uvr_del_read;
    ac->ev.addWrite = uvr_add_write;
    ac->ev.delWrite = uvr_del_write;
    ac->ev.cleanup = uvr_cleanup;
    return REDIS_OK;
}

/* ---- connecting ------------------------------------------------------------------------------ */

static void selected(void *ud, redisReply *reply, const char *unavailable)
{
    mxu_redis *c = ud;
    if (unavailable != NULL || reply == NULL)
        return;
    if (reply->type == REDIS_REPLY_ERROR) {
        char why[200];
        snprintf(why, sizeof(why), "SELECT %d: %s", c->db, reply->str);
        /* Inside a hiredis callback: the free is deferred until it returns. */
        conn_drop(c, why);
    }
}

static void conn_connect(mxu_redis *c)
{
    /* Resolving HOST blocks for a name that is not an address (hiredis 0.14
     * calls getaddrinfo); maps name Redis servers by address in practice. */
    redisAsyncContext *ac = redisAsyncConnect(c->host, c->port);
    if (ac == NULL) {
        mark_down(c, "out of memory");
        return;
    }
    if (ac->err) {
        char why[200];
        snprintf(why, sizeof(why), "%s", ac->errstr);
        redisAsyncFree(ac);
        mark_down(c, why);
        return;
    }
    if (uvr_attach(ac, c->loop) != REDIS_OK) {
        redisAsyncFree(ac);
        mark_down(c, "cannot watch the socket");
        return;
    }
    ac->data = c;
    c->ac = ac;
    c->state = CONN_CONNECTING;
    c->connect_deadline_ns = mxu_now_ns() + c->connect_ms * 1000000ull;
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    if (c->db != 0) {
        char db[16];
        int n = snprintf(db, sizeof(db), "%d", c->db);
        const char *av[] = {"SELECT", db};
        size_t al[] = {6, (size_t)n};
        mxu_redis_command(c, 2, av, al, selected, c);
    }
    timer_kick(c);
}

mxu_redis *mxu_redis_get(uv_loop_t *loop, const char *location, mxu_err *err)
{
    char host[256];
    int port, db;
    if (mxu_redis_parse(location, host, sizeof(host), &port, &db, err) < 0)
        return NULL;
    for (mxu_redis *c = conns; c != NULL; c = c->next) {
        if (c->loop == loop && c->port == port && c->db == db && strcmp(c->host, host) == 0) {
            c->refs++;
            return c;
        }
    }
    mxu_redis *c = mxu_calloc(1, sizeof(*c));
    c->loop = loop;
    snprintf(c->host, sizeof(c->host), "%s", host);
    c->port = port;
    c->db = db;
    snprintf(c->name, sizeof(c->name), "redis %s:%d/%d", host, port, db);
    c->refs = 1;
    c->backoff_ms = BACKOFF_MIN_MS;
    c->connect_ms = CONNECT_TIMEOUT_MS;
    c->command_ms = COMMAND_TIMEOUT_MS;
    snprintf(c->why, sizeof(c->why), "not connected yet");
    uv_timer_init(loop, &c->timer);
    c->timer.data = c;
    c->next = conns;
    conns = c;
    conn_connect(c);
    return c;
}

static void conn_freed(uv_handle_t *h)
{
    free(h->data);
}

void mxu_redis_put(mxu_redis *c)
{
    if (c == NULL || --c->refs > 0)
        return;
    for (mxu_redis **pp = &conns; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == c) {
            *pp = c->next;
            break;
        }
    }
    redisAsyncContext *ac = c->ac;
    c->ac = NULL;
    c->state = CONN_DOWN;
    snprintf(c->why, sizeof(c->why), "the backend was closed");
    if (ac != NULL)
        redisAsyncFree(ac);
    uv_timer_stop(&c->timer);
    uv_close((uv_handle_t *)&c->timer, conn_freed);
}

const char *mxu_redis_name(const mxu_redis *c)
{
    return c->name;
}

void mxu_redis_set_timeouts(mxu_redis *c, uint64_t connect_ms, uint64_t command_ms)
{
    c->connect_ms = connect_ms;
    c->command_ms = command_ms;
}
