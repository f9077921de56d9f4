/*
 * The process executor: an instance is a plain child process of the node.
 *
 * Containment it gives (and its limits are stated in docs/isolation.md):
 *   - its own process group, killed as a whole, so helpers it starts die too;
 *   - PR_SET_PDEATHSIG(SIGKILL), so it dies with the node even on kill -9
 *     (anything it started that escaped the group is found by its MXU_NODE
 *     marker when the node starts again);
 *   - rlimits: data segment from the manifest's memory, open files, no core
 *     dumps, CPU seconds for one-shot processes;
 *   - exactly the environment and file descriptors the scheduler gives it
 *     (0/1/2 and, for warm instances, the channel: a pipe from the node on
 *     fd 3, a pipe to it on fd 4); every other descriptor of the node is
 *     closed before exec.
 *
 * The child is set up between clone() and execve() with async-signal-safe
 * calls only, in one linear sequence; if a step fails, the errno travels back
 * on a close-on-exec pipe so spawn() fails with a real message and no exit
 * callback.
 */
#include "exec-internal.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <pthread.h>
#include <sched.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>

int mxu_proc_watch(mxu_exec *ex, mxu_proc *p, mxu_err *err);

/* What the child reports when a setup step fails. */
struct child_failure {
    int step; /* index into step_names */
    int err;
};

static const char *const step_names[] = {
    "setpgid", "prctl(PR_SET_PDEATHSIG)", "setrlimit", "dup2", "open /dev/null", "chdir", "execve",
};
enum { STEP_PGID, STEP_PDEATH, STEP_RLIMIT, STEP_DUP, STEP_DEVNULL, STEP_CHDIR, STEP_EXEC };

/* Everything the child needs, prepared before fork so the child allocates nothing. */
struct child_plan {
    const mxu_exec_spec *spec;
    struct rlimit data, nofile, cpu; /* clamped to what the node may set */
    pid_t parent;
    int src[6]; /* what becomes fd 0..5 (-1 = /dev/null for 0..2, none for 3..5) */
    int report_fd;
    const char *const *envp; /* spec's, plus MXU_CHANNEL_OUT_FD for the channel */
};

static void __attribute__((noreturn)) child_fail(const struct child_plan *pl, int step)
{
    struct child_failure f = {step, errno};
    ssize_t n = write(pl->report_fd, &f, sizeof(f));
    MXU_UNUSED(n);
    _exit(127);
}

static void __attribute__((noreturn)) child_run(void *arg)
{
    struct child_plan *pl = arg;
    const mxu_exec_spec *spec = pl->spec;

    /* 0. Lift the report pipe above the fds we are about to fill, so that
     *    dup2 onto 0..3 can never overwrite it. */
    int report = fcntl(pl->report_fd, F_DUPFD_CLOEXEC, 10);
    if (report < 0)
        _exit(127);
    pl->report_fd = report;

    /* 1. Signals: the node ignores SIGPIPE and may block signals; a function
     *    starts from the defaults like any program. */
    mxu_child_default_signals();

    /* 2. Own process group: the node kills the instance and all it started
     *    with one kill(-pgid). */
    if (setpgid(0, 0) < 0)
        child_fail(pl, STEP_PGID);

    /* 3. Die with the node. Check the parent afterwards: if the node died
     *    before prctl, the signal would never come. */
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0)
        child_fail(pl, STEP_PDEATH);
    if (getppid() != pl->parent)
        _exit(127);

    /* 4. Limits. RLIMIT_DATA (not RLIMIT_AS) caps what a program can
     *    allocate without breaking runtimes that reserve large address
     *    ranges they never touch. */
    struct rlimit rl;
    if (setrlimit(RLIMIT_DATA, &pl->data) < 0)
        child_fail(pl, STEP_RLIMIT);
    rl.rlim_cur = rl.rlim_max = 0;
    if (setrlimit(RLIMIT_CORE, &rl) < 0)
        child_fail(pl, STEP_RLIMIT);
    if (setrlimit(RLIMIT_NOFILE, &pl->nofile) < 0)
        child_fail(pl, STEP_RLIMIT);
    if (spec->cpu_limit_s && setrlimit(RLIMIT_CPU, &pl->cpu) < 0)
        child_fail(pl, STEP_RLIMIT);

    /* 5. File descriptors: exactly 0..5 as planned, nothing else. */
    int fstep = mxu_child_place_fds(pl->src, MXU_ARRAY_LEN(pl->src), pl->report_fd);
    if (fstep)
        child_fail(pl, fstep == MXU_CHILD_FDS_DEVNULL ? STEP_DEVNULL : STEP_DUP);

    /* 6. The bundle is the working directory. */
    if (spec->cwd && chdir(spec->cwd) < 0)
        child_fail(pl, STEP_CHDIR);

    execve(spec->argv[0], (char *const *)spec->argv, (char *const *)pl->envp);
    child_fail(pl, STEP_EXEC);
}

static int process_prepare(mxu_exec *ex, const mxu_exec_spec *spec, mxu_err *err)
{
    MXU_UNUSED(ex);
    struct stat st;
    if (spec->argv == NULL || spec->argv[0] == NULL || spec->argv[0][0] != '/')
        return mxu_err_set(err, EINVAL, "%s: program path must be absolute", spec->label);
    if (stat(spec->argv[0], &st) < 0)
        return mxu_err_sys(err, errno, "%s: cannot run %s", spec->label, spec->argv[0]);
    if (!S_ISREG(st.st_mode) || !(st.st_mode & 0111))
        return mxu_err_set(err, EACCES, "%s: %s is not an executable file", spec->label,
                           spec->argv[0]);
    return 0;
}

static int process_spawn(mxu_exec *ex, const mxu_exec_spec *spec, mxu_proc_exit_cb exit_cb,
                         void *ud, mxu_proc **out, mxu_err *err)
{
    /* Pairs: [0] stays with the host, [1] goes to the child. The channel's
     * are two pairs: the host reads ch_host[0] and writes ch_host[1]; the
     * child reads ch_child[0] (its fd 3) and writes ch_child[1] (fd 4). */
    int ch_host[2] = {-1, -1}, ch_child[2] = {-1, -1}, in[2] = {-1, -1}, outp[2] = {-1, -1};
    int errp[2] = {-1, -1}, report[2] = {-1, -1};
    int rc = -1;
    mxu_proc *p = NULL;
    _cleanup_free_ const char **envp = NULL;

    if (spec->channel) {
        if (mxu_exec_channel_pipes(ch_host, ch_child, spec->label, err) < 0)
            goto out;
        envp = mxu_exec_channel_env(spec->envp);
    }
    if (spec->stdio) {
        if (pipe2(in, O_CLOEXEC) < 0 || pipe2(outp, O_CLOEXEC) < 0) {
            mxu_err_sys(err, errno, "%s: pipe", spec->label);
            goto out;
        }
        /* For stdin the host holds the write end: swap so [0] is the host's. */
        int t = in[0];
        in[0] = in[1];
        in[1] = t;
    }
    if (pipe2(errp, O_CLOEXEC) < 0 || pipe2(report, O_CLOEXEC) < 0) {
        mxu_err_sys(err, errno, "%s: pipe", spec->label);
        goto out;
    }

    struct child_plan plan = {
        .spec = spec,
        .parent = getpid(),
        /* A warm instance's stdout is not its response: send it to the log. */
        .src = {in[1], spec->stdio ? outp[1] : errp[1], errp[1], ch_child[0], ch_child[1],
                spec->has_fd5 ? spec->fd5 : -1},
        .report_fd = report[1],
        .envp = envp ? envp : spec->envp,
    };
    /* Limits can only be lowered without privileges: never ask for more
     * than the node itself has. */
    mxu_exec_clamp_limit(RLIMIT_DATA, spec->memory_bytes ? spec->memory_bytes : RLIM_INFINITY,
                         &plan.data);
    mxu_exec_clamp_limit(RLIMIT_NOFILE, spec->max_open_files ? spec->max_open_files : 1024,
                         &plan.nofile);
    /* CPU: SIGXCPU at the soft limit, SIGKILL a second later. */
    mxu_exec_clamp_limit(RLIMIT_CPU, spec->cpu_limit_s + 1, &plan.cpu);
    if (plan.cpu.rlim_cur > spec->cpu_limit_s && spec->cpu_limit_s > 0)
        plan.cpu.rlim_cur = spec->cpu_limit_s;
    pid_t pid = mxu_exec_start_child(child_run, &plan, 0);
    if (pid < 0) {
        mxu_err_sys(err, errno, "%s: cannot create a process", spec->label);
        goto out;
    }

    /* Parent: the child's ends are the child's now. */
    close(report[1]);
    report[1] = -1;
    struct child_failure f;
    ssize_t n;
    do {
        n = read(report[0], &f, sizeof(f));
    } while (n < 0 && errno == EINTR);
    if (n == (ssize_t)sizeof(f)) {
        int st;
        while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
            ;
        mxu_err_sys(err, f.err, "%s: starting %s failed at %s", spec->label, spec->argv[0],
                    f.step >= 0 && (size_t)f.step < MXU_ARRAY_LEN(step_names) ? step_names[f.step]
                                                                              : "?");
        goto out;
    }

    p = mxu_calloc(1, sizeof(*p));
    p->ops = &mxu_exec_process_ops;
    p->pid = pid;
    p->pidfd = -1;
    p->exit_cb = exit_cb;
    p->ud = ud;
    p->fds.channel = mxu_steal_fd(&ch_host[0]);
    p->fds.channel_w = mxu_steal_fd(&ch_host[1]);
    p->fds.channel_split = true;
    p->fds.stdin_w = mxu_steal_fd(&in[0]);
    p->fds.stdout_r = mxu_steal_fd(&outp[0]);
    p->fds.stderr_r = mxu_steal_fd(&errp[0]);
    int *fds[] = {&p->fds.channel, &p->fds.channel_w, &p->fds.stdin_w, &p->fds.stdout_r,
                  &p->fds.stderr_r};
    for (size_t i = 0; i < MXU_ARRAY_LEN(fds); i++) {
        if (*fds[i] >= 0 && mxu_fd_nonblock_cloexec(*fds[i]) < 0) {
            mxu_err_sys(err, errno, "%s: fcntl", spec->label);
            goto out_kill;
        }
    }
    if (mxu_proc_watch(ex, p, err) < 0)
        goto out_kill;
    *out = p;
    p = NULL;
    rc = 0;
    goto out;

out_kill:
    kill(-pid, SIGKILL);
    {
        int st;
        while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
            ;
    }
    if (p) {
        int *all[] = {&p->fds.channel,  &p->fds.channel_w, &p->fds.stdin_w,
                      &p->fds.stdout_r, &p->fds.stderr_r,  &p->pidfd};
        for (size_t i = 0; i < MXU_ARRAY_LEN(all); i++)
            mxu_closep(all[i]);
        free(p);
    }
out:
    for (int i = 0; i < 2; i++) {
        mxu_closep(&ch_host[i]);
        mxu_closep(&ch_child[i]);
        mxu_closep(&in[i]);
        mxu_closep(&outp[i]);
        mxu_closep(&errp[i]);
        mxu_closep(&report[i]);
    }
    return rc;
}

static void process_kill(mxu_proc *p)
{
    if (!p->exited)
        kill(-p->pid, SIGKILL);
}

/* /proc/<pid>/stat fields 14 and 15 (utime, stime, in clock ticks). */
static int read_cpu_us(pid_t pid, uint64_t *cpu_us)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    _cleanup_buf_ mxu_buf b = {0};
    if (mxu_read_file(path, 4096, &b, NULL) < 0)
        return -1;
    /* The command name may contain spaces and parentheses: skip past the last ')'. */
    char *s = strrchr(b.data, ')');
    if (s == NULL)
        return -1;
    unsigned long long ut = 0, stt = 0;
    if (sscanf(s + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &stt) != 2)
        return -1;
    long hz = sysconf(_SC_CLK_TCK);
    *cpu_us = (ut + stt) * 1000000ull / (uint64_t)(hz > 0 ? hz : 100);
    return 0;
}

static int process_usage(mxu_proc *p, mxu_usage *u)
{
    if (p->exited) {
        *u = p->exit.usage;
        return 0;
    }
    memset(u, 0, sizeof(*u));
    if (mxu_exec_cpu_us(p->pid, &u->cpu_us) < 0 && read_cpu_us(p->pid, &u->cpu_us) < 0)
        return -1;
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/status", (int)p->pid);
    _cleanup_buf_ mxu_buf b = {0};
    if (mxu_read_file(path, 65536, &b, NULL) == 0) {
        char *hwm = strstr(b.data, "VmHWM:");
        unsigned long long kb;
        if (hwm && sscanf(hwm + 6, "%llu", &kb) == 1)
            u->peak_bytes = kb * 1024;
    }
    return 0;
}

static int process_cpu(mxu_proc *p, uint64_t *cpu_us)
{
    if (p->exited) {
        *cpu_us = p->exit.usage.cpu_us;
        return 0;
    }
    return mxu_exec_cpu_us(p->pid, cpu_us);
}

static void process_release(mxu_exec *ex, const mxu_exec_spec *spec)
{
    MXU_UNUSED(ex);
    MXU_UNUSED(spec);
}

const mxu_executor_ops mxu_exec_process_ops = {
    .name = "process",
    .prepare = process_prepare,
    .spawn = process_spawn,
    .kill = process_kill,
    .usage = process_usage,
    .cpu = process_cpu,
    .release = process_release,
};
