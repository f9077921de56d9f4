/* Shared between the executor files: the process handle and the context. */
#ifndef MXU_EXEC_INTERNAL_H
#define MXU_EXEC_INTERNAL_H

#include "exec/exec.h"

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
    struct mxu_proc *prev, *next;
};

struct mxu_exec {
    uv_loop_t *loop;
    char *node_id;
    char *node_env;  /* "MXU_NODE=<id>" */
    mxu_proc *procs; /* every proc not yet closed, for destroy */
};

extern const mxu_executor_ops mxu_exec_process_ops;

#endif
