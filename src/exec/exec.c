/*
 * The executor table, and what every executor shares: process handles that
 * report their end through a pidfd (no SIGCHLD handler, so nothing else in the
 * node — the registry's compiler runs, libuv — can have its children reaped
 * from under it), and cleanup of processes a crashed node left behind.
 */
#include "exec-internal.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>

static const mxu_executor_ops *const executors[] = {
    &mxu_exec_process_ops,
    &mxu_exec_sandbox_ops,
    &mxu_exec_vm_ops,
};

const mxu_executor_ops *mxu_executor_find(const char *name)
{
    for (size_t i = 0; i < MXU_ARRAY_LEN(executors); i++) {
        if (strcmp(executors[i]->name, name) == 0)
            return executors[i];
    }
    return NULL;
}

void mxu_child_default_signals(void)
{
    struct sigaction dfl;
    memset(&dfl, 0, sizeof(dfl));
    dfl.sa_handler = SIG_DFL;
    for (int s = 1; s < NSIG; s++)
        sigaction(s, &dfl, NULL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
}

int mxu_child_place_fds(const int *src, int n, int report_fd)
{
    /* Move every source above 10 first, so that a source that already sits
     * on a target number cannot be clobbered; then dup2 onto 0..n-1 (dup2
     * clears close-on-exec). */
    int moved[MXU_CHILD_FDS_MAX];
    int keep_from = 3;
    for (int i = 0; i < n; i++) {
        moved[i] = -1;
        if (src[i] >= 0 && (moved[i] = fcntl(src[i], F_DUPFD_CLOEXEC, 10)) < 0)
            return MXU_CHILD_FDS_DUP;
    }
    for (int i = 0; i < n; i++) {
        int fd = moved[i];
        if (fd < 0 && i < 3 && (fd = open("/dev/null", O_RDWR | O_CLOEXEC)) < 0)
            return MXU_CHILD_FDS_DEVNULL;
        if (fd >= 0 && dup2(fd, i) < 0)
            return MXU_CHILD_FDS_DUP;
        if (fd < 0)
            close(i); /* a gap below a later descriptor: not the node's */
        if (src[i] >= 0 && i + 1 > keep_from)
            keep_from = i + 1;
    }
    /* Close everything else but the report pipe, which must survive until
     * execve (it is close-on-exec). */
    if (report_fd > keep_from)
        syscall(SYS_close_range, (unsigned)keep_from, (unsigned)report_fd - 1, 0u);
    syscall(SYS_close_range, (unsigned)report_fd + 1, ~0u, 0u);
    return 0;
}

void mxu_exec_clamp_limit(int resource, rlim_t want, struct rlimit *out)
{
    struct rlimit cur;
    if (getrlimit(resource, &cur) == 0 && cur.rlim_max != RLIM_INFINITY && want > cur.rlim_max)
        want = cur.rlim_max;
    out->rlim_cur = out->rlim_max = want;
}

int mxu_fd_nonblock_cloexec(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
        return -1;
    return fcntl(fd, F_SETFD, FD_CLOEXEC);
}

/* ---- the channel as two pipes ------------------------------------------------------------------
 * Why pipes and not a socketpair: every descriptor operation and svc hop is
 * a round trip through the node, and a pipe round trip between two
 * processes costs about half of a unix stream socket's in the kernel (no
 * sk_buff per write, one wait queue): 4.8 against 8.6-9.3 us on the
 * benchmark VM; see docs/protocol.md. */

#define CHANNEL_PIPE_BYTES (256u << 10)

int mxu_exec_channel_pipes(int host[2], int child[2], const char *label, mxu_err *err)
{
    int up[2], down[2]; /* instance -> host, host -> instance; [0] = read end */
    if (pipe2(up, O_CLOEXEC) < 0)
        return mxu_err_sys(err, errno, "%s: pipe", label);
    if (pipe2(down, O_CLOEXEC) < 0) {
        int e = errno;
        close(up[0]);
        close(up[1]);
        return mxu_err_sys(err, e, "%s: pipe", label);
    }
    /* Room for a blob chunk's worth in flight each way (the default is
     * 64 KiB). Best effort: over the per-user pipe quota the kernel refuses,
     * and the default works, only slower for big chunks. */
    fcntl(up[0], F_SETPIPE_SZ, CHANNEL_PIPE_BYTES);
    fcntl(down[0], F_SETPIPE_SZ, CHANNEL_PIPE_BYTES);
    host[0] = up[0];
    host[1] = down[1];
    child[0] = down[0];
    child[1] = up[1];
    return 0;
}

const char **mxu_exec_channel_env(const char *const *envp)
{
    size_t n = 0;
    while (envp && envp[n])
        n++;
    const char **out = mxu_calloc(n + 2, sizeof(*out));
    for (size_t i = 0; i < n; i++)
        out[i] = envp[i];
    out[n] = "MXU_CHANNEL_OUT_FD=4";
    return out;
}

/*
 * fork() would mark every page of the node copy-on-write, and the node would
 * pay for it in page faults long after the child has exec'd — on every
 * invocation of an exec function and every cold start. A CLONE_VM |
 * CLONE_VFORK child borrows the node's memory instead, on a stack of its own,
 * and the node is suspended until the child has exec'd or failed (this is how
 * posix_spawn works, but posix_spawn cannot set rlimits, the parent-death
 * signal or namespaces).
 *
 * The child must then not run anything that takes locks or allocates, and no
 * signal handler of the node may run in it: all signals are blocked around
 * clone(), and the child resets every handler before it unblocks them
 * (mxu_child_default_signals). Sanitizer runtimes cannot follow code into such
 * a child, so sanitizer builds start children with fork semantics.
 */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SPAWN_WITH_FORK 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) || \
    __has_feature(memory_sanitizer)
#define SPAWN_WITH_FORK 1
#endif
#endif

typedef struct child_start {
    void (*run)(void *arg);
    void *arg;
} child_start;

#ifndef SPAWN_WITH_FORK
#define CHILD_STACK_SIZE (256u * 1024u)

static int child_entry(void *p)
{
    child_start *cs = p;
    cs->run(cs->arg);
    _exit(127); /* run() does not return */
}

pid_t mxu_exec_start_child(void (*run)(void *arg), void *arg, int ns_flags)
{
    /* Spawns happen on the loop thread only, one at a time: one stack does. */
    static char *stack;
    if (stack == NULL)
        stack = mxu_malloc(CHILD_STACK_SIZE);
    child_start cs = {run, arg}; /* the node is suspended while it is used */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    pid_t pid = clone(child_entry, stack + CHILD_STACK_SIZE,
                      CLONE_VM | CLONE_VFORK | ns_flags | SIGCHLD, &cs);
    int saved = errno;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    errno = saved;
    return pid;
}
#else
pid_t mxu_exec_start_child(void (*run)(void *arg), void *arg, int ns_flags)
{
    /* Fork semantics (own copy of memory, same stack), with namespaces. */
    pid_t pid = ns_flags ? (pid_t)syscall(SYS_clone, (unsigned long)(ns_flags | SIGCHLD), NULL,
                                          NULL, NULL, 0)
                         : fork();
    if (pid == 0)
        run(arg);
    return pid;
}
#endif

const char *mxu_executor_names(void)
{
    static const char *const names[] = {"process", "process, sandbox", "process, vm",
                                        "process, sandbox, vm"};
    return names[(mxu_sandbox_unavailable() ? 0 : 1) + (mxu_vm_unavailable() ? 0 : 2)];
}

const mxu_executor_ops *mxu_executor_at(size_t i)
{
    return i < MXU_ARRAY_LEN(executors) ? executors[i] : NULL;
}

const char *mxu_executor_unavailable(const char *name)
{
    if (strcmp(name, "sandbox") == 0)
        return mxu_sandbox_unavailable();
    if (strcmp(name, "vm") == 0)
        return mxu_vm_unavailable();
    return mxu_executor_find(name) ? NULL : "no such executor";
}

int mxu_exec_create(uv_loop_t *loop, const char *node_id, mxu_exec **out, mxu_err *err)
{
    MXU_UNUSED(err);
    mxu_exec *ex = mxu_calloc(1, sizeof(*ex));
    ex->loop = loop;
    ex->node_id = mxu_strdup(node_id);
    ex->node_env = mxu_asprintf("MXU_NODE=%s", node_id);
    mxu_sandbox_init(ex);
    *out = ex;
    return 0;
}

void mxu_exec_set_standby_budget(mxu_exec *ex, mxu_exec_standby_fits_fn fits, void *ud)
{
    ex->standby_fits = fits;
    ex->standby_ud = ud;
}

bool mxu_exec_standby_fits(mxu_exec *ex, uint64_t bytes)
{
    return ex->standby_fits == NULL || ex->standby_fits(ex->standby_ud, bytes);
}

uint64_t mxu_exec_standby_bytes(mxu_exec *ex, const mxu_exec_spec *taker)
{
    uint64_t sum = 0;
    for (size_t i = 0; i < MXU_ARRAY_LEN(executors); i++)
        if (executors[i]->standby)
            sum += executors[i]->standby(ex, taker);
    return sum;
}

uint64_t mxu_exec_shed_standby(mxu_exec *ex, uint64_t want, const mxu_exec_spec *keep)
{
    uint64_t got = 0;
    for (size_t i = 0; i < MXU_ARRAY_LEN(executors) && got < want; i++)
        if (executors[i]->shed)
            got += executors[i]->shed(ex, want - got, keep);
    return got;
}

static void proc_unlink(mxu_proc *p)
{
    if (p->ex == NULL)
        return;
    if (p->prev)
        p->prev->next = p->next;
    else
        p->ex->procs = p->next;
    if (p->next)
        p->next->prev = p->prev;
    p->prev = p->next = NULL;
}

static void close_fd(int *fd)
{
    if (*fd >= 0) {
        close(*fd);
        *fd = -1;
    }
}

static void proc_on_close(uv_handle_t *h)
{
    mxu_proc *p = h->data;
    close_fd(&p->pidfd);
    close_fd(&p->fds.channel);
    if (p->fds.channel_split)
        close_fd(&p->fds.channel_w);
    close_fd(&p->fds.stdin_w);
    close_fd(&p->fds.stdout_r);
    close_fd(&p->fds.stderr_r);
    if (p->on_free)
        p->on_free(p);
    free(p);
}

static void proc_close(mxu_proc *p)
{
    proc_unlink(p);
    p->ex = NULL;
    uv_close((uv_handle_t *)&p->poll, proc_on_close);
}

/* Reap the process (it has ended: its pidfd is readable) and report. */
static void proc_reap(mxu_proc *p)
{
    int st = 0;
    struct rusage ru;
    memset(&ru, 0, sizeof(ru));
    pid_t r;
    do {
        r = wait4(p->pid, &st, WNOHANG, &ru);
    } while (r < 0 && errno == EINTR);
    if (r == 0)
        return; /* spurious: not yet */
    uv_poll_stop(&p->poll);
    p->exited = true;
    if (r > 0) {
        p->exit.signaled = WIFSIGNALED(st);
        p->exit.signal = WIFSIGNALED(st) ? WTERMSIG(st) : 0;
        p->exit.exit_code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
        p->exit.usage.cpu_us =
            (uint64_t)ru.ru_utime.tv_sec * 1000000u + (uint64_t)ru.ru_utime.tv_usec +
            (uint64_t)ru.ru_stime.tv_sec * 1000000u + (uint64_t)ru.ru_stime.tv_usec;
        p->exit.usage.peak_bytes = (uint64_t)ru.ru_maxrss * 1024u;
    } else {
        p->exit.exit_code = -1; /* reaped elsewhere; should not happen */
    }
    /* The group may still hold grandchildren: an instance's end ends them. */
    kill(-p->pid, SIGKILL);
    if (p->on_reaped)
        p->on_reaped(p);
    if (p->freed) {
        proc_close(p);
        return;
    }
    if (p->exit_cb)
        p->exit_cb(p, &p->exit, p->ud);
}

static void proc_on_poll(uv_poll_t *h, int status, int events)
{
    MXU_UNUSED(status);
    MXU_UNUSED(events);
    proc_reap(h->data);
}

void mxu_proc_end_detached(mxu_proc *p, int exit_code)
{
    if (p->exited)
        return;
    uv_poll_stop(&p->poll);
    mxu_exec_cpu_us(p->pid, &p->exit.usage.cpu_us);
    p->exited = true;
    p->exit.exit_code = exit_code;
    if (p->freed) {
        proc_close(p);
        return;
    }
    if (p->exit_cb)
        p->exit_cb(p, &p->exit, p->ud);
}

int mxu_proc_watch(mxu_exec *ex, mxu_proc *p, mxu_err *err)
{
    p->ex = ex;
    p->pidfd = (int)syscall(SYS_pidfd_open, p->pid, 0);
    if (p->pidfd < 0)
        return mxu_err_sys(err, errno, "pidfd_open(%d)", (int)p->pid);
    int rc = uv_poll_init(ex->loop, &p->poll, p->pidfd);
    if (rc < 0)
        return mxu_err_set(err, EIO, "cannot watch process %d: %s", (int)p->pid, uv_strerror(rc));
    p->poll.data = p;
    uv_poll_start(&p->poll, UV_READABLE, proc_on_poll);
    p->next = ex->procs;
    if (ex->procs)
        ex->procs->prev = p;
    ex->procs = p;
    return 0;
}

void mxu_proc_free(mxu_proc *p)
{
    if (p == NULL)
        return;
    if (!p->exited) {
        p->freed = true;
        kill(-p->pid, SIGKILL);
        return; /* closed when the pidfd reports the end */
    }
    proc_close(p);
}

void mxu_exec_destroy(mxu_exec *ex)
{
    if (ex == NULL)
        return;
    mxu_vm_fini(ex);
    /* Shutdown: everything still running dies now, and is reaped here so no
     * zombie or orphan outlives the node. */
    while (ex->procs) {
        mxu_proc *p = ex->procs;
        if (!p->exited) {
            kill(-p->pid, SIGKILL);
            int st;
            while (waitpid(p->pid, &st, 0) < 0 && errno == EINTR)
                ;
            p->exited = true;
            if (p->on_reaped)
                p->on_reaped(p);
        }
        proc_close(p);
    }
    mxu_sandbox_fini(ex);
    free(ex->node_id);
    free(ex->node_env);
    free(ex);
}

const mxu_proc_fds *mxu_proc_get_fds(const mxu_proc *p)
{
    return &p->fds;
}

int mxu_proc_steal_fd(mxu_proc *p, int *which)
{
    MXU_UNUSED(p);
    int fd = *which;
    *which = -1;
    return fd;
}

int mxu_proc_pid(const mxu_proc *p)
{
    return (int)p->pid;
}
bool mxu_proc_exited(const mxu_proc *p)
{
    return p->exited;
}

void mxu_proc_exit_describe(const mxu_proc_exit *ex, char *out, size_t outlen)
{
    if (ex->oom) {
        char lim[32];
        mxu_format_size(ex->memory_limit, lim, sizeof(lim));
        snprintf(out, outlen, "killed: out of memory (limit %s)", lim);
    } else if (ex->signaled) {
        const char *abbrev = sigabbrev_np(ex->signal);
        snprintf(out, outlen, "killed by signal %d (SIG%s)%s", ex->signal, abbrev ? abbrev : "?",
                 ex->signal == SIGKILL ? ", e.g. out of memory or by the node" : "");
    } else {
        snprintf(out, outlen, "exited with status %d", ex->exit_code);
    }
}

/* Does /proc/<pid>/environ contain exactly `marker` as one entry? */
static bool proc_has_marker(const char *pid, const char *marker)
{
    char path[300];
    snprintf(path, sizeof(path), "/proc/%s/environ", pid);
    mxu_buf env = {0};
    bool found = false;
    if (mxu_read_file(path, 1 << 20, &env, NULL) == 0) {
        size_t mlen = strlen(marker);
        for (size_t off = 0; off < env.len;) {
            size_t n = strnlen(env.data + off, env.len - off);
            if (n == mlen && memcmp(env.data + off, marker, mlen) == 0) {
                found = true;
                break;
            }
            off += n + 1;
        }
    }
    mxu_buf_free(&env);
    return found;
}

int mxu_exec_reap_leftovers(const char *node_id)
{
    _cleanup_free_ char *marker = mxu_asprintf("MXU_NODE=%s", node_id);
    DIR *d = opendir("/proc");
    if (d == NULL)
        return 0;
    int killed = 0;
    pid_t self = getpid();
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (!isdigit((unsigned char)de->d_name[0]))
            continue;
        pid_t pid = (pid_t)atoi(de->d_name);
        if (pid == self || !proc_has_marker(de->d_name, marker))
            continue;
        if (kill(pid, SIGKILL) == 0)
            killed++;
    }
    closedir(d);
    return killed;
}

/* The kernel's per-process CPU clock id, as glibc's clock_getcpuclockid()
 * makes it (CPUCLOCK_SCHED of the whole thread group), without the extra
 * clock_getres() call glibc makes to check the process exists. */
#define PROCESS_CPUCLOCK(pid) ((clockid_t)((~(unsigned)(pid) << 3) | 2u)) /* unsigned: no UB */

int mxu_exec_cpu_us(pid_t pid, uint64_t *cpu_us)
{
    struct timespec ts;
    if (clock_gettime(PROCESS_CPUCLOCK(pid), &ts) < 0)
        return -1;
    *cpu_us = (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
    return 0;
}
