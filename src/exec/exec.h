/*
 * exec — where instances run. An executor turns a spawn request (program,
 * environment, limits, how to talk to it) into a running, contained process
 * and tells its owner when it ends. Executors know nothing of functions,
 * frames, pools or policy: the scheduler decides what to run and when, the
 * executor only decides how it is contained.
 *
 * Executors are an ops table (crun's cgroup managers, Redis' ConnectionType):
 * adding one is one file with a `static const mxu_executor_ops` at its bottom
 * and one entry in exec.c. Today there are `process` and `sandbox`
 * (exec-sandbox*.c: namespaces, cgroups, seccomp); `vm` follows.
 */
#ifndef MXU_EXEC_H
#define MXU_EXEC_H

#include "core/core.h"

#include <uv.h>

typedef struct mxu_exec mxu_exec; /* the executors' shared context */
typedef struct mxu_proc mxu_proc; /* one running instance process */

/* What to run. All strings are borrowed for the duration of the spawn call. */
typedef struct mxu_exec_spec {
    const char *label;       /* "hello@3", for messages */
    const char *const *argv; /* argv[0]: absolute path of the program */
    const char *const *envp; /* the whole environment, NULL-terminated */
    const char *cwd;         /* working directory (the bundle) */
    uint64_t memory_bytes;   /* RLIMIT_DATA (heap + private mappings) */
    uint64_t cpu_limit_s;    /* RLIMIT_CPU in seconds; 0 = none */
    uint32_t max_open_files; /* RLIMIT_NOFILE; 0 = 1024 */
    bool channel;            /* give the channel to the host: fd 3 (see mxu_proc_fds) */
    bool stdio;              /* give stdin/stdout as pipes to the host */
    /* Give `fd5` to the process as its fd 5 (the vm executor's control
     * socket to its helper, exec-vm.c); the caller keeps its own copy. */
    bool has_fd5;
    int fd5;
} mxu_exec_spec;

/* Host ends of what the process was given; -1 where not asked for. All are
 * non-blocking and close-on-exec, owned by the mxu_proc (closed when it is
 * freed) unless taken with the steal calls below. */
typedef struct mxu_proc_fds {
    /* If spec.channel: the host reads the instance's frames from `channel`.
     * Executors give either one stream socket, on the instance's fd 3, or
     * (channel_split) two pipes: the instance reads fd 3 and writes fd 4,
     * named by MXU_CHANNEL_OUT_FD in its environment, and the host writes to
     * `channel_w`, which is meaningful only when channel_split is set. */
    int channel;
    int channel_w;
    bool channel_split;
    int stdin_w; /* write end of the process' stdin, if spec.stdio */
    int stdout_r;
    int stderr_r; /* always: the process' stderr */
} mxu_proc_fds;

/* Resource use of an instance. */
typedef struct mxu_usage {
    uint64_t cpu_us;     /* user + system CPU time */
    uint64_t peak_bytes; /* peak resident memory (VmHWM); 0 if unknown */
} mxu_usage;

/* How a process ended, for messages ("killed by signal 11 (SIGSEGV)"). */
typedef struct mxu_proc_exit {
    int exit_code; /* if !signaled */
    int signal;    /* if signaled */
    bool signaled;
    mxu_usage usage;
    /* Set by executors that enforce memory with a cgroup (sandbox) when the
     * kernel's OOM killer ended the instance; memory_limit is that limit. */
    bool oom;
    uint64_t memory_limit;
} mxu_proc_exit;

/* Called once from the loop when the process has ended and been reaped. The
 * mxu_proc stays valid until mxu_proc_free(). */
typedef void (*mxu_proc_exit_cb)(mxu_proc *p, const mxu_proc_exit *ex, void *ud);

typedef struct mxu_executor_ops {
    const char *name;
    /* Check once per unit that it can run here (program exists, ...). */
    int (*prepare)(mxu_exec *ex, const mxu_exec_spec *spec, mxu_err *err);
    /* Start a process. On failure returns -1 and exit_cb never runs. */
    int (*spawn)(mxu_exec *ex, const mxu_exec_spec *spec, mxu_proc_exit_cb exit_cb, void *ud,
                 mxu_proc **out, mxu_err *err);
    /* Kill the process and everything it started (SIGKILL). Idempotent. */
    void (*kill)(mxu_proc *p);
    /* Resource use so far (or at exit, once exited). */
    int (*usage)(mxu_proc *p, mxu_usage *out);
    /* CPU time only, as usage() counts it, but cheap enough to call on
     * every invocation (metering); peak memory costs a /proc read. */
    int (*cpu)(mxu_proc *p, uint64_t *cpu_us);
    /* Forget what prepare() set up for a unit. */
    void (*release)(mxu_exec *ex, const mxu_exec_spec *spec);
    /* Standby memory: the bytes held right now by processes the executor
     * keeps on its own, ahead of any spawn (spares), as the executor
     * charges them (each executor says how it estimates). When `taker` is
     * a unit's warm spec, the one spare a spawn of it would take over is
     * left out: its memory becomes the instance's, which its reservation
     * covers. NULL: the executor keeps none. */
    uint64_t (*standby)(mxu_exec *ex, const mxu_exec_spec *taker);
    /* Release standby processes, those of the least recently used units
     * first and `keep`'s (may be NULL) last, but never the one a spawn of
     * `keep` would take over (standby() does not count it), until at least
     * `want` bytes are released or none is left. Returns the bytes released (their
     * charge; the processes are killed and reaped in the background). NULL:
     * nothing to shed. */
    uint64_t (*shed)(mxu_exec *ex, uint64_t want, const mxu_exec_spec *keep);
} mxu_executor_ops;

/* `node_id` marks every process this node starts (env MXU_NODE=<id>), so a
 * restarted node can find and kill what a crashed predecessor left. */
int mxu_exec_create(uv_loop_t *loop, const char *node_id, mxu_exec **out, mxu_err *err);
/* Kill every process still running (SIGKILL to their groups) and free. */
void mxu_exec_destroy(mxu_exec *ex);
/* Kill processes left over by an earlier node with the same node id. Returns
 * how many were killed. */
int mxu_exec_reap_leftovers(const char *node_id);

/* Standby memory and the node's budget. The scheduler owns the memory
 * budget; executors keep spares outside any instance. `fits(ud, bytes)`
 * answers whether `bytes` more of standby memory fit in the budget next to
 * what instances have reserved and spares already hold; executors ask it
 * before they start a spare (a refill, a recycled vm helper), so that spares
 * never take memory admission has not got. Without it (NULL), spares are not
 * bounded by any budget. */
typedef bool (*mxu_exec_standby_fits_fn)(void *ud, uint64_t bytes);
void mxu_exec_set_standby_budget(mxu_exec *ex, mxu_exec_standby_fits_fn fits, void *ud);
/* Every executor's standby bytes (their `standby` op, with `taker`). */
uint64_t mxu_exec_standby_bytes(mxu_exec *ex, const mxu_exec_spec *taker);
/* Shed standby processes across executors (their `shed` op, in table
 * order) until `want` bytes are released; returns the bytes released. */
uint64_t mxu_exec_shed_standby(mxu_exec *ex, uint64_t want, const mxu_exec_spec *keep);

/* The executor called `name`, or NULL. */
const mxu_executor_ops *mxu_executor_find(const char *name);
/* Comma-separated names of the executors available, for messages. */
const char *mxu_executor_names(void);
/* Every executor in the table, by index (NULL past the end), and why one
 * cannot run units on this machine (NULL if it can). The sandbox's answer is
 * known once an mxu_exec has been created (it probes cgroups, namespaces and
 * seccomp then); before that it is "not probed yet". */
const mxu_executor_ops *mxu_executor_at(size_t i);
const char *mxu_executor_unavailable(const char *name);

/* Process handle accessors (any executor). */
const mxu_proc_fds *mxu_proc_get_fds(const mxu_proc *p);
/* Take ownership of one host-side fd out of the proc (it will not close it). */
int mxu_proc_steal_fd(mxu_proc *p, int *which);
int mxu_proc_pid(const mxu_proc *p);
bool mxu_proc_exited(const mxu_proc *p);
/* Free the handle. If the process is still running, it is killed first and
 * reaped in the background (the exit callback will not run). */
void mxu_proc_free(mxu_proc *p);

/* Small wrappers so callers read like prose (curl's Curl_cf_* style). */
static inline void mxu_exec_kill(const mxu_executor_ops *ops, mxu_proc *p)
{
    ops->kill(p);
}

/* Describe an exit for people: "exited with status 3", "killed by signal 9 (SIGKILL)",
 * "killed: out of memory (limit 64 MiB)". */
void mxu_proc_exit_describe(const mxu_proc_exit *ex, char *out, size_t outlen);

#endif
