/* Shared between the sandbox executor's files (exec-sandbox*.c). */
#ifndef MXU_EXEC_SANDBOX_H
#define MXU_EXEC_SANDBOX_H

#include "exec-internal.h"

#include <linux/filter.h>
#include <sys/resource.h>

typedef struct mxu_sandbox mxu_sandbox;

/* mxu_read_file, but an empty file reads as "" (the buffer is always a
 * NUL-terminated string). */
static inline int sbx_read_file(const char *path, size_t max, mxu_buf *b)
{
    if (mxu_read_file(path, max, b, NULL) < 0)
        return -1;
    if (b->len == 0) {
        mxu_buf_reserve(b, 1);
        b->data[0] = '\0';
    }
    return 0;
}

/* ---- cgroups (exec-sandbox-cgroup.c) ---- */

enum { SBX_CG_MEMORY, SBX_CG_PIDS, SBX_CG_CPU, SBX_CG_N };

typedef struct sbx_cgroups {
    int version;         /* 1 or 2 */
    bool cpu_ok;         /* a cpu controller is there */
    char *dir[SBX_CG_N]; /* v1: the node's parent per hierarchy (cpu may be NULL);
                            v2: dir[SBX_CG_MEMORY] is the one parent */
} sbx_cgroups;

typedef struct sbx_limits {
    uint64_t memory_bytes;
    uint64_t pids_max;
    uint64_t cpu_quota_us; /* 0 = no quota */
    uint64_t cpu_period_us;
} sbx_limits;

/* Find usable controllers, remove what a crashed node with this id left,
 * and make this node's parent cgroup(s). On failure, `why` says why. */
int sbx_cg_init(sbx_cgroups *cg, const char *node_id, char *why, size_t whylen);
/* Remove every cgroup of this node (killing what is left inside). */
void sbx_cg_fini(sbx_cgroups *cg);
/* Remove every leftover cgroup of node `node_id`; returns processes killed. */
int sbx_cg_sweep(const char *node_id);
/* Make instance `id`'s cgroup(s) with `lim`, and open their cgroup.procs for
 * the child to join (fds are close-on-exec; -1 where unused). */
int sbx_cg_create(const sbx_cgroups *cg, uint64_t id, const sbx_limits *lim, int procs_fd[SBX_CG_N],
                  mxu_err *err);
/* After the instance ended: did the OOM killer act, and its peak memory. */
void sbx_cg_exit_info(const sbx_cgroups *cg, uint64_t id, bool *oom, uint64_t *peak);
int sbx_cg_peak(const sbx_cgroups *cg, uint64_t id, uint64_t *peak);
/* Kill what is left and rmdir; -1 if a directory is still busy. */
int sbx_cg_remove(const sbx_cgroups *cg, uint64_t id);

/* ---- the executor's state and the child (exec-sandbox.c) ---- */

enum { SYS_ABSENT, SYS_LINK, SYS_DIR };
#define SBX_NSYS 6

typedef struct sbx_unit sbx_unit;

struct mxu_sandbox {
    bool ok;
    bool userns; /* no privileges of our own: a user namespace does the mounts */
    uid_t host_uid;
    gid_t host_gid;
    char uid_map[64], gid_map[64];
    sbx_cgroups cg;
    sbx_limits defaults;
    struct sock_fprog prog;
    int last_cap;
    int sys_kind[SBX_NSYS];
    char sys_link[SBX_NSYS][64];
    bool have_alternatives, have_ldcache;
    uint64_t next_id;
    /* Instance cgroups that were still busy when their process was reaped. */
    uint64_t *pending;
    size_t npending, cap_pending;
    uv_timer_t retry;
    bool retry_init;
    uv_timer_t refill; /* makes spares for units whose spare was used */
    int closing;       /* timers still closing; sb is freed after the last */
    /* The zygote (exec-sandbox-zygote.c) and the units it keeps a spare for. */
    pid_t zygote_pid;
    int zygote_fd; /* -1: none, sandboxes are cloned by the node directly */
    bool zygote_tried;
    unsigned spares; /* per unit (at most SBX_SPARES_MAX); 0 = none */
    sbx_unit *units;
    mxu_exec *ex; /* whose budget spares are charged to (mxu_exec_standby_fits) */
};

/* Everything a child needs, prepared before clone (or sent to a spare) so
 * that the child allocates nothing and calls nothing that takes a lock. */
/* The descriptors an instance gets: 0, 1, 2, and the channel's 3 and 4. */
#define SBX_FDS 5

typedef struct sbx_plan {
    const mxu_sandbox *sb;
    /* setup (C1..C6) */
    const char *bundle; /* host path, bound at /fn */
    int cg_fd[SBX_CG_N];
    char tmp_opts[64];
    int report_fd; /* failures go here as struct sbx_failure; close-on-exec */
    /* finish (C7..C11) */
    const char *exe; /* argv[0] as seen inside */
    const char *const *argv;
    const char *const *envp;
    struct rlimit nofile, cpu;
    bool set_cpu;
    int src[SBX_FDS]; /* what becomes fd 0..4 (-1 = /dev/null for 0..2, none for 3, 4) */
} sbx_plan;

typedef struct sbx_failure {
    int step;
    int err;
} sbx_failure;

/* C1..C6: namespaces are there (clone made them); ids, cgroups, the root,
 * host name, loopback. Fails through sbx_child_fail. */
void sbx_child_setup(sbx_plan *pl);
/* C7..C11: limits, descriptors, privileges, seccomp, execve. */
void __attribute__((noreturn)) sbx_child_finish(sbx_plan *pl);
void __attribute__((noreturn)) sbx_child_fail(const sbx_plan *pl, int step);
bool sbx_node_alive(const sbx_plan *pl);
const char *sbx_step_name(int step);
/* The namespaces every sandbox gets. */
int sbx_clone_flags(const mxu_sandbox *sb);

/* ---- zygote and spares (exec-sandbox-zygote.c) ---- */

/* Sanitizer runtimes cannot follow code into a child that shares their
 * process's memory (see exec.c): in those builds spares are copies of the
 * zygote instead. */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SBX_SPARE_FORK 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) || \
    __has_feature(memory_sanitizer)
#define SBX_SPARE_FORK 1
#endif
#endif

/* Spares kept per unit at most (MXU_SANDBOX_SPARES, default 2). */
#define SBX_SPARES_MAX 4
/* The standby bytes charged per spare sandbox (the budget, exec.h). A spare
 * runs in the zygote's address space (CLONE_VM), so no smaps of its own
 * tells what it costs; measured instead on this machine's /proc/meminfo
 * while 20 spares were made: 0.25 MiB of unreclaimable kernel memory each
 * (slab: its namespaces, mounts, cgroup), plus at most its 256 KiB stack
 * and the pages of its receiving block it touched, in the zygote's memory. */
#define SBX_SPARE_CHARGE (512u << 10)

/* A sandbox set up to C6 and waiting for what to run. It is a child of the
 * node (CLONE_PARENT), in its own cgroup (cg_id). */
typedef struct sbx_spare {
    pid_t pid;
    int sock; /* the node's end; the spare's end closes at execve */
    uint64_t cg_id;
    uint64_t memory;
} sbx_spare;

struct sbx_unit {
    char *label;
    char *bundle;
    uint64_t memory;
    int refs;
    /* Ready spares, oldest first: the oldest has had the longest to finish
     * its setup (a cgroup v1 join alone waits 10-20 ms). */
    sbx_spare spare[SBX_SPARES_MAX];
    unsigned nspare;
    uint64_t used_ms; /* loop time of its last spawn or prepare: shedding goes by it */
    sbx_unit *next;
};

/* Fork the zygote (a copy of the node, made when the first sandbox unit is
 * prepared, that clones sandboxes on request). Returns -1 if it cannot. */
int sbx_zygote_start(mxu_sandbox *sb);
void sbx_zygote_stop(mxu_sandbox *sb);
/* Have the zygote clone a spare for `bundle` with `memory`: cgroup made
 * here, the rest of setup runs in the spare while the node goes on. */
int sbx_spare_make(mxu_sandbox *sb, const char *bundle, uint64_t memory, sbx_spare *out,
                   mxu_err *err);
/* Give a spare what to run; returns once it has exec'd (0) or failed (-1,
 * err says at which step; the spare is then reaped and its cgroup gone). */
int sbx_spare_go(mxu_sandbox *sb, sbx_spare *sp, const sbx_plan *pl, mxu_err *err);
/* Kill, reap, remove its cgroup. */
void sbx_spare_discard(mxu_sandbox *sb, sbx_spare *sp);
/* Remove an instance cgroup now, or later from a timer if it is busy. */
void sbx_cg_release(mxu_sandbox *sb, uint64_t id);

/* ---- seccomp (exec-sandbox-seccomp.c) ---- */

/* Build the allowlist filter as a BPF program (filter is malloc'd). */
int sbx_seccomp_build(struct sock_fprog *out, char *why, size_t whylen);

#endif
