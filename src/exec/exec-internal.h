/* Shared between the executor files: the process handle and the context. */
#ifndef MXU_EXEC_INTERNAL_H
#define MXU_EXEC_INTERNAL_H

#include "exec/exec.h"

#include <sys/resource.h>

struct mxu_proc {
    mxu_exec *ex; /* NULL once the context is gone */
    const mxu_executor_ops *ops;
    pid_t pid;
    int pidfd;
    uv_poll_t poll; /* readable pidfd = the process ended */
    mxu_proc_fds fds;
    mxu_proc_exit_cb exit_cb;
    void *ud;
    mxu_proc_exit exit;
    bool exited;
    bool freed; /* owner let go; free once reaped and closed */
    /* Executor hooks: on_reaped runs once the process is reaped, before the
     * exit callback (the sandbox reads its cgroup's OOM count and removes the
     * cgroup); on_free runs when the handle is freed. xdata is theirs. */
    void (*on_reaped)(mxu_proc *p);
    void (*on_free)(mxu_proc *p);
    void *xdata;
    struct mxu_proc *prev, *next;
};

struct mxu_exec {
    uv_loop_t *loop;
    char *node_id;
    char *node_env;              /* "MXU_NODE=<id>" */
    mxu_proc *procs;             /* every proc not yet closed, for destroy */
    struct mxu_sandbox *sandbox; /* exec-sandbox.c's per-node state */
    struct mxu_vm_spares *vm;    /* exec-vm.c's spare helpers; NULL until a vm unit */
    /* The scheduler's budget for spares (mxu_exec_set_standby_budget); NULL: unbounded. */
    mxu_exec_standby_fits_fn standby_fits;
    void *standby_ud;
};

/* May an executor start a spare charged `bytes`? (The scheduler's answer, or
 * yes without a budget.) */
bool mxu_exec_standby_fits(mxu_exec *ex, uint64_t bytes);

extern const mxu_executor_ops mxu_exec_process_ops;

/* In a freshly cloned child, before exec: every signal back to its default
 * disposition and none blocked. The node ignores SIGPIPE and may block
 * signals; a function starts from the defaults like any program.
 * Async-signal-safe. */
void mxu_child_default_signals(void);

/* In a freshly cloned child: put src[i] on descriptor i for i < n (n at
 * most MXU_CHILD_FDS_MAX; -1 gives /dev/null for 0..2 and nothing above),
 * then close every other descriptor but report_fd (close-on-exec, kept for
 * reporting a failure until execve). Async-signal-safe. Returns 0, or which
 * step failed: MXU_CHILD_FDS_DUP or MXU_CHILD_FDS_DEVNULL (errno set). */
#define MXU_CHILD_FDS_MAX 8
enum { MXU_CHILD_FDS_DUP = 1, MXU_CHILD_FDS_DEVNULL = 2 };
int mxu_child_place_fds(const int *src, int n, int report_fd);

/* *out = {want, want}, lowered to the node's own hard limit: limits can only
 * be lowered without privileges. */
void mxu_exec_clamp_limit(int resource, rlim_t want, struct rlimit *out);

/* O_NONBLOCK and FD_CLOEXEC on a host end; 0 or -1 with errno. */
int mxu_fd_nonblock_cloexec(int fd);

/* Start a child that runs `run(arg)` (which must exec or _exit) in new
 * namespaces `ns_flags` (0 for none). Outside sanitizer builds the child
 * borrows the node's memory (CLONE_VM | CLONE_VFORK) and the node is
 * suspended until it has exec'd or failed; see exec.c. Returns its pid or -1
 * with errno. Loop thread only. */
pid_t mxu_exec_start_child(void (*run)(void *arg), void *arg, int ns_flags);
extern const mxu_executor_ops mxu_exec_sandbox_ops;
/* src/exec/vm/exec-vm.c: KVM guests run by an mxu-vmm helper process. */
extern const mxu_executor_ops mxu_exec_vm_ops;
/* Why KVM guests cannot run here, or NULL (probed once, cached). */
const char *mxu_vm_unavailable(void);
/* Drop the vm executor's spare helpers (their processes are killed and
 * reaped with every other by mxu_exec_destroy). */
void mxu_vm_fini(mxu_exec *ex);

/* The channel as two pipes (see mxu_proc_fds). On success host[0] reads the
 * instance's frames and host[1] writes to it; child[0] is to become the
 * instance's fd 3 (it reads) and child[1] its fd 4 (it writes). All four are
 * close-on-exec; the caller closes what it does not hand over. */
int mxu_exec_channel_pipes(int host[2], int child[2], const char *label, mxu_err *err);

/* `envp` plus MXU_CHANNEL_OUT_FD=4, for an instance given channel pipes. The
 * strings are borrowed; free() the array. */
const char **mxu_exec_channel_env(const char *const *envp);

/* The instance `p` has ended but its process lives on (a vm helper that
 * reset its guest to become a spare again, exec-vm.c): report the end to
 * the owner as an exit with `exit_code`, and stop watching the process
 * through this handle. The process is neither killed nor reaped. */
void mxu_proc_end_detached(mxu_proc *p, int exit_code);

/* Called by executors after a successful start: watch the pid. */
int mxu_proc_watch(mxu_exec *ex, mxu_proc *p, mxu_err *err);
/* CPU time (user + system) of a running process, in µs, from its CPU clock:
 * one syscall and nanosecond resolution, where /proc/PID/stat costs an open
 * and a read and counts in clock ticks (10 ms), too coarse to meter one
 * invocation (docs/metering.md). -1 if the process is gone. */
int mxu_exec_cpu_us(pid_t pid, uint64_t *cpu_us);

/* exec-sandbox.c: probe and set up the per-node sandbox state (never fails:
 * an unusable sandbox records why), and tear it down. */
void mxu_sandbox_init(mxu_exec *ex);
void mxu_sandbox_fini(mxu_exec *ex);
const char *mxu_sandbox_unavailable(void);

#endif
