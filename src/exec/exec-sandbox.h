/* Shared between the sandbox executor's files (exec-sandbox*.c). */
#ifndef MXU_EXEC_SANDBOX_H
#define MXU_EXEC_SANDBOX_H

#include "exec-internal.h"

#include <linux/filter.h>

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

/* ---- seccomp (exec-sandbox-seccomp.c) ---- */

/* Build the allowlist filter as a BPF program (filter is malloc'd). */
int sbx_seccomp_build(struct sock_fprog *out, char *why, size_t whylen);

#endif
