/* Shared inside src/sched: pools, instances, invocations. */
#ifndef MXU_SCHED_INTERNAL_H
#define MXU_SCHED_INTERNAL_H

#include "exec/exec.h"
#include "sched/sched.h"
#include "unit/unit.h"

#include <uthash.h>

typedef struct mxu_pool mxu_pool;
typedef struct mxu_instance mxu_instance;
typedef struct mxu_logstore mxu_logstore;

/* Intrusive doubly linked list (one node per list an object can be on). */
typedef struct mxu_link {
    struct mxu_link *prev, *next;
} mxu_link;
typedef struct mxu_list {
    mxu_link head; /* head.next = first, head.prev = last */
    size_t len;
} mxu_list;

static inline void mxu_list_init(mxu_list *l)
{
    l->head.prev = l->head.next = &l->head;
    l->len = 0;
}
static inline bool mxu_list_empty(const mxu_list *l)
{
    return l->len == 0;
}
static inline void mxu_list_insert_after(mxu_list *l, mxu_link *at, mxu_link *n)
{
    n->prev = at;
    n->next = at->next;
    at->next->prev = n;
    at->next = n;
    l->len++;
}
static inline void mxu_list_push_back(mxu_list *l, mxu_link *n)
{
    mxu_list_insert_after(l, l->head.prev, n);
}
static inline void mxu_list_push_front(mxu_list *l, mxu_link *n)
{
    mxu_list_insert_after(l, &l->head, n);
}
static inline void mxu_list_remove(mxu_list *l, mxu_link *n)
{
    n->prev->next = n->next;
    n->next->prev = n->prev;
    n->prev = n->next = NULL;
    l->len--;
}
static inline mxu_link *mxu_list_first(const mxu_list *l)
{
    return l->len ? l->head.next : NULL;
}
#define mxu_container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))
#define mxu_list_foreach(l, it)             for (mxu_link *it = (l)->head.next; it != &(l)->head; it = it->next)
#define mxu_list_foreach_safe(l, it, tmp) \
    for (mxu_link *it = (l)->head.next, *tmp = it->next; it != &(l)->head; it = tmp, tmp = it->next)

enum inv_state {
    INV_QUEUED,  /* on pool->queue */
    INV_RUNNING, /* on inst->inflight and pool->running */
    INV_DONE,
};

struct mxu_invocation {
    uint64_t id;
    mxu_sched *sched;
    mxu_pool *pool;
    mxu_instance *inst;
    enum inv_state state;
    mxu_invoke_req req;
    mxu_invoke_cb cb;
    void *ud;
    void (*gone)(void *ud); /* after a cancel: when it is over (mxu_sched_cancel_then) */
    void *gone_ud;
    bool cancelled;
    bool cold;
    bool pinned, freed_while_pinned;
    uint64_t enqueued_ms; /* loop time */
    uint64_t queue_deadline_ms;
    uint64_t deadline_ms; /* set when it starts running (see start_clock) */
    bool timed;           /* on pool->running: its timeout is counting */
    uint64_t enqueued_ns, dispatched_ns;
    uint64_t start_ms; /* wall clock, for the usage record */
    mxu_link qlink;    /* pool->queue or inst->inflight */
    mxu_link rlink;    /* pool->running, by deadline, while timed */
    mxu_buf log;       /* stderr + LOG frames while it ran */
    bool log_truncated;
};

enum inst_state {
    INST_STARTING, /* spawned, no HELLO yet */
    INST_READY,
    INST_STOPPING, /* BYE sent or killed; no new work */
    INST_DEAD,     /* process ended; being torn down */
};

struct mxu_instance {
    uint64_t id;
    mxu_pool *pool;
    enum inst_state state;
    mxu_proc *proc;
    mxu_channel *chan; /* runtime c */
    int stderr_fd;
    uv_poll_t stderr_poll;
    bool stderr_polling;
    bool stderr_unread; /* a channel batch came since stderr was last read (on_batch) */
    /* runtime exec: one invocation, stdio pipes */
    mxu_invocation *exec_inv;
    int stdin_fd, stdout_fd;
    uv_poll_t stdin_poll, stdout_poll;
    bool stdin_polling, stdout_polling;
    size_t stdin_off;
    mxu_buf out;
    bool out_too_large;
    mxu_buf start_log; /* stderr before the first invocation, for start errors */
    mxu_list inflight; /* invocations sent, in order */
    mxu_link plink;    /* pool->instances */
    uv_timer_t timer;  /* idle (keep_alive), start timeout, or stop grace */
    uint64_t started_ms, ready_ms, last_used_ms;
    uint64_t served;
    uint64_t reserved_bytes;
    uint64_t cpu_mark;     /* its CPU time at its previous result (metering) */
    uint64_t cpu_now;      /* its CPU time as read in this channel batch, */
    bool cpu_fresh;        /* if one was read (on_batch clears) */
    bool cpu_batch;        /* in a channel batch (on_batch) */
    uint64_t peak_bytes;   /* its peak memory when last read (metering) */
    uint64_t peak_read_ms; /* loop time of that reading */
    bool blame_head;       /* its end is the head invocation's fault */
    bool became_ready;     /* it completed the handshake */
    bool answered;         /* it sent at least one RESULT */
    bool init_failed;      /* FATAL before any answer: mxu_init() failed */
    bool stopped;          /* the node stopped it (idle, eviction, shutdown) */
    bool condemned;        /* killed: its frames are ignored */
    bool stdin_poll_closed;
    bool stdin_polling_ever; /* stdin_poll was initialised */
    char crash_reason[160];
    int pending_closes;
    int ops_inflight; /* descriptor operations out (at most one) */
    void *svc_call;   /* the svc call in flight (sched-svc.c), or NULL */
};

/* Counters per version, for `mxu show`. */
typedef struct mxu_pool_stats {
    uint64_t invocations, errors, timeouts, crashes, cold_starts, rejected;
    uint64_t last_invoked_ms; /* wall clock */
} mxu_pool_stats;

struct mxu_pool {
    mxu_sched *sched;
    mxu_fn_version *version; /* key */
    mxu_unit *unit;
    mxu_desc_table *desc; /* its resource descriptors, bound */
    const mxu_manifest *m;
    bool exec_runtime;
    mxu_list instances;
    size_t starting;          /* instances in INST_STARTING */
    size_t alive;             /* instances not DEAD/STOPPING */
    uint32_t min;             /* min_instances if an alias points here, else 0 */
    mxu_list queue;           /* waiting invocations */
    mxu_list running;         /* running now (instances' heads), by deadline */
    size_t ninflight;         /* dispatched to an instance, not answered */
    uv_timer_t timer;         /* next deadline of running or queue */
    uint64_t timer_due;       /* 0 = not armed */
    bool removed;             /* version deleted: drain and free */
    bool kicking, kick_again; /* see mxu_sched_pool_kick */
    uint32_t start_failures;  /* in a row; reset by an answer */
    uint64_t retry_at_ms;     /* no warm-up start before this after failures */
    mxu_pool_stats stats;
    UT_hash_handle hh;
};

struct mxu_sched {
    uv_loop_t *loop;
    mxu_registry *reg;
    mxu_exec *exec;
    mxu_sched_config cfg;
    char *node_env;
    char *default_executor; /* for manifests that name none */
    mxu_logstore *logs;
    mxu_pool *pools; /* uthash by version pointer */
    uint64_t reserved;
    uint64_t next_inv_id, next_inst_id;
    size_t ninstances;
    bool shutting_down;
    uv_timer_t shutdown_timer;
    uint64_t drain_deadline_ms;
    bool stopping_instances;
    uint32_t holds; /* mxu_sched_hold: work that will invoke again */
    void (*shutdown_done)(void *);
    void *shutdown_ud;
    mxu_sched_services services; /* runs svc: calls to services; zero: none */
};

/* sched.c */
void mxu_sched_inv_complete(mxu_invocation *inv, mxu_invoke_res *res);
void mxu_sched_inv_fail(mxu_invocation *inv, enum mxu_inv_error e, const char *fmt, ...)
    MXU_PRINTF(3, 4);
void mxu_sched_pool_kick(mxu_pool *pool);
void mxu_sched_instance_gone(mxu_instance *inst);
void mxu_sched_instance_idle(mxu_instance *inst);
void mxu_sched_requeue_front(mxu_pool *pool, mxu_invocation *inv);
void mxu_sched_pool_fail_queue(mxu_pool *pool, enum mxu_inv_error e, const char *msg);

/* sched-instance.c */
int mxu_instance_start(mxu_pool *pool, mxu_invocation *exec_inv, mxu_instance **out, mxu_err *err);
void mxu_instance_send(mxu_instance *inst, mxu_invocation *inv);
void mxu_instance_stop(mxu_instance *inst, bool graceful);
void mxu_instance_kill(mxu_instance *inst, const char *reason);
bool mxu_instance_has_capacity(const mxu_instance *inst);
void mxu_instance_arm_idle(mxu_instance *inst, uint64_t ms);
void mxu_instance_maybe_free(mxu_instance *inst);
void mxu_instance_res_reply(mxu_instance *inst, uint64_t inv_id, uint32_t call_id, uint32_t status,
                            const char *message, uint64_t n1, uint64_t n2, const mxu_slice *vals,
                            uint32_t nvals);

/* sched-svc.c: a function calling another through an svc: descriptor. */
void mxu_sched_svc_call(mxu_instance *caller, mxu_invocation *inv, const mxu_res_op_msg *msg,
                        const mxu_resource_decl *decl);
void mxu_sched_svc_abandon(mxu_instance *caller);
json_t *mxu_instance_json(mxu_instance *inst);

/* sched-meter.c: usage facts of an instance at a result, and records the
 * scheduler writes itself (results nobody waits for any more). */
void mxu_sched_usage_fill(mxu_sched *s, mxu_invocation *inv, mxu_invoke_res *res);
void mxu_sched_usage_orphan(mxu_sched *s, mxu_invocation *inv, const mxu_invoke_res *res);
void mxu_sched_usage_mark(mxu_instance *inst);

/* sched-log.c */
mxu_logstore *mxu_logstore_open(const char *dir);
void mxu_logstore_close(mxu_logstore *ls);
/* Append `text` (split into lines) for tenant's function/version/invocation
 * (0 = none). */
void mxu_logstore_append(mxu_logstore *ls, const char *tenant, const char *function,
                         uint32_t version, uint64_t invocation, const char *stream,
                         const char *text, size_t len);
json_t *mxu_logstore_read(mxu_logstore *ls, const char *tenant, const char *function,
                          uint64_t after, size_t limit, uint64_t *next);

static inline uint64_t sched_now(const mxu_sched *s)
{
    return uv_now(s->loop);
}

#endif
