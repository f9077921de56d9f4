/*
 * Unit tests for src/exec: the process executor, reached the way the
 * scheduler reaches it (mxu_executor_find("process") and its ops table), on
 * a real libuv loop. The program it starts is exec-probe, which reports from
 * the inside what it was given — environment, descriptors, limits, process
 * group, parent-death signal, signal state — so each case checks the
 * containment promised in exec-process.c from where it matters.
 *
 * Divisions: fixture and helpers; what the process is given (environment,
 * descriptors, limits, group, signals); how it ends (exit status, kill, usage,
 * free, destroy); failures to start; leftovers of a crashed node.
 *
 * Waiting is for loop events (the exit callback, a readable pipe or pidfd),
 * bounded by a uv timer.
 */
#include "exec/exec.h"
#include "test.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <uv.h>

#ifndef EXEC_PROBE
#error "build with -DEXEC_PROBE=path (tests/unit/exec/meson.build)"
#endif

/* ---- fixture ------------------------------------------------------------------ */

typedef struct xt {
    uv_loop_t loop;
    mxu_exec *ex;
    const mxu_executor_ops *ops;
    char dir[64];
    char node_id[64];
    char node_env[96];
    uv_timer_t guard, tick;
    bool guard_fired;
} xt;

static char g_dir[64];

static void remove_dir(void)
{
    if (g_dir[0]) {
        mxu_err err;
        mxu_rm_rf(g_dir, &err);
        g_dir[0] = '\0';
    }
}

static void on_guard(uv_timer_t *t)
{
    ((xt *)t->data)->guard_fired = true;
}

static void on_tick(uv_timer_t *t)
{
    MXU_UNUSED(t); /* wakes the loop so that WAIT_FOR looks again */
}

/* Run the loop until `cond` holds; fail the case after `ms`. */
#define WAIT_FOR(t, cond, ms)                                                \
    do {                                                                     \
        (t)->guard_fired = false;                                            \
        uv_timer_start(&(t)->guard, on_guard, (ms), 0);                      \
        uv_timer_start(&(t)->tick, on_tick, 10, 10);                         \
        while (!(cond) && !(t)->guard_fired)                                 \
            uv_run(&(t)->loop, UV_RUN_ONCE);                                 \
        uv_timer_stop(&(t)->guard);                                          \
        uv_timer_stop(&(t)->tick);                                           \
        if (!(cond))                                                         \
            MXU_TEST_FAIL_("waited %d ms in vain for %s", (int)(ms), #cond); \
    } while (0)

static void xt_init(xt *t)
{
    memset(t, 0, sizeof(*t));
    CHECK_EQ_INT(uv_loop_init(&t->loop), 0);
    snprintf(t->dir, sizeof(t->dir), "/tmp/mxu-test-exec-XXXXXX");
    CHECK(mkdtemp(t->dir) != NULL);
    snprintf(g_dir, sizeof(g_dir), "%s", t->dir);
    atexit(remove_dir);
    /* Unique per case, so reap_leftovers can only ever find our own. */
    snprintf(t->node_id, sizeof(t->node_id), "test-exec-%d-%llu", (int)getpid(),
             (unsigned long long)mxu_now_ns());
    snprintf(t->node_env, sizeof(t->node_env), "MXU_NODE=%s", t->node_id);
    uv_timer_init(&t->loop, &t->guard);
    t->guard.data = t;
    uv_timer_init(&t->loop, &t->tick);
    mxu_err err = {0};
    if (mxu_exec_create(&t->loop, t->node_id, &t->ex, &err) < 0)
        MXU_TEST_FAIL_("mxu_exec_create: %s", err.msg);
    t->ops = mxu_executor_find("process");
    CHECK(t->ops != NULL);
    CHECK_STR(t->ops->name, "process");
    CHECK(mxu_executor_find("no-such-executor") == NULL);
}

static void xt_finish(xt *t)
{
    mxu_exec_destroy(t->ex);
    t->ex = NULL;
    uv_close((uv_handle_t *)&t->guard, NULL);
    uv_close((uv_handle_t *)&t->tick, NULL);
    for (int i = 0; i < 50 && uv_run(&t->loop, UV_RUN_NOWAIT) != 0; i++)
        ;
    CHECK_EQ_INT(uv_loop_close(&t->loop), 0);
    remove_dir();
}

/* ---- one probe -------------------------------------------------------------------- */

typedef struct run {
    mxu_proc *p;
    int pid;
    int exit_calls;
    mxu_proc_exit ex;
    /* What it writes on stdout (or, without stdio, on its stderr pipe). */
    uv_poll_t poll;
    bool polling, poll_open;
    int out_fd;
    mxu_buf out;
    bool out_eof;
} run;

static void on_exit_cb(mxu_proc *p, const mxu_proc_exit *ex, void *ud)
{
    run *r = ud;
    CHECK(p == r->p);
    CHECK(mxu_proc_exited(p));
    r->exit_calls++;
    r->ex = *ex;
}

static void on_out(uv_poll_t *h, int status, int events)
{
    MXU_UNUSED(events);
    run *r = h->data;
    char buf[4096];
    for (;;) {
        ssize_t n = read(r->out_fd, buf, sizeof(buf));
        if (n > 0) {
            mxu_buf_append(&r->out, buf, (size_t)n);
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (status < 0 || n == 0 || errno != EAGAIN) {
            r->out_eof = true;
            uv_poll_stop(h);
            r->polling = false;
        }
        return;
    }
}

static const char *const default_env[] = {"PATH=/usr/bin:/bin", NULL};

static mxu_exec_spec probe_spec(xt *t, const char *const *argv)
{
    return (mxu_exec_spec){
        .label = "probe@1",
        .argv = argv,
        .envp = default_env,
        .cwd = t->dir,
        .stdio = true,
    };
}

static void spawn(xt *t, run *r, const mxu_exec_spec *spec)
{
    memset(r, 0, sizeof(*r));
    mxu_err err = {0};
    CHECK_EQ_INT(t->ops->prepare(t->ex, spec, &err), 0);
    if (t->ops->spawn(t->ex, spec, on_exit_cb, r, &r->p, &err) < 0)
        MXU_TEST_FAIL_("spawn: %s", err.msg);
    r->pid = mxu_proc_pid(r->p);
    CHECK(r->pid > 0);
    const mxu_proc_fds *fds = mxu_proc_get_fds(r->p);
    r->out_fd = spec->stdio ? fds->stdout_r : fds->stderr_r;
    CHECK(r->out_fd >= 0);
    uv_poll_init(&t->loop, &r->poll, r->out_fd);
    r->poll.data = r;
    r->polling = r->poll_open = true;
    uv_poll_start(&r->poll, UV_READABLE, on_out);
}

/* Give it `data` on stdin and close it. */
static void feed_stdin(run *r, const char *data)
{
    mxu_proc_fds *fds = (mxu_proc_fds *)mxu_proc_get_fds(r->p);
    int fd = mxu_proc_steal_fd(r->p, &fds->stdin_w);
    CHECK(fd >= 0);
    CHECK(fds->stdin_w == -1);
    size_t n = strlen(data);
    if (n)
        CHECK_EQ_INT(write(fd, data, n), (long long)n);
    close(fd);
}

static void on_out_closed(uv_handle_t *h)
{
    ((run *)h->data)->poll_open = false;
}

/* Stop watching its output and free the handle (its fds go with it); the
 * run can be used again afterwards. */
static void release(xt *t, run *r)
{
    if (r->poll_open) {
        uv_close((uv_handle_t *)&r->poll, on_out_closed);
        WAIT_FOR(t, !r->poll_open, 1000);
    }
    mxu_proc_free(r->p);
    r->p = NULL;
    mxu_buf_free(&r->out);
}

/* The value of the report line "key value" (the first one), or NULL. */
static const char *report_get(const run *r, const char *key, char *out, size_t outlen)
{
    size_t klen = strlen(key);
    const char *s = r->out.data ? r->out.data : "";
    while (*s) {
        const char *nl = strchr(s, '\n');
        size_t len = nl ? (size_t)(nl - s) : strlen(s);
        if (len > klen && strncmp(s, key, klen) == 0 && s[klen] == ' ') {
            snprintf(out, outlen, "%.*s", (int)(len - klen - 1), s + klen + 1);
            return out;
        }
        s += len + (nl ? 1 : 0);
    }
    return NULL;
}

static bool report_has(const run *r, const char *line)
{
    size_t n = strlen(line);
    const char *s = r->out.data ? r->out.data : "";
    for (const char *p = strstr(s, line); p; p = strstr(p + 1, line))
        if ((p == s || p[-1] == '\n') && p[n] == '\n')
            return true;
    return false;
}

/* Lines starting with `prefix`, joined with ';'. */
static void report_all(const run *r, const char *prefix, char *out, size_t outlen)
{
    out[0] = '\0';
    size_t plen = strlen(prefix), used = 0;
    const char *s = r->out.data ? r->out.data : "";
    while (*s) {
        const char *nl = strchr(s, '\n');
        size_t len = nl ? (size_t)(nl - s) : strlen(s);
        if (strncmp(s, prefix, plen) == 0 && used < outlen) {
            int k = snprintf(out + used, outlen - used, "%s%.*s", used ? ";" : "",
                             (int)(len - plen), s + plen);
            used += k > 0 ? (size_t)k : 0;
        }
        s += len + (nl ? 1 : 0);
    }
}

/* Spawn the probe in report mode, give it `input`, wait for its report and
 * its end. */
static void run_report(xt *t, run *r, const mxu_exec_spec *spec, const char *input)
{
    spawn(t, r, spec);
    if (spec->stdio)
        feed_stdin(r, input);
    WAIT_FOR(t, r->exit_calls == 1 && r->out_eof, 3000);
    if (!report_has(r, "end"))
        MXU_TEST_FAIL_("incomplete report: %s", r->out.data ? r->out.data : "");
    CHECK(!r->ex.signaled);
    CHECK_EQ_INT(r->ex.exit_code, 0);
}

static int count_open_fds(void)
{
    int n = 0;
    DIR *d = opendir("/proc/self/fd");
    CHECK(d != NULL);
    struct dirent *de;
    while ((de = readdir(d)) != NULL)
        n += de->d_name[0] != '.';
    closedir(d);
    return n - 1; /* the directory itself */
}

/* A pidfd for a process that is not our child (a probe's own child), to be
 * told when it ends. */
typedef struct watch {
    int fd;
    uv_poll_t poll;
    bool ended;
} watch;

static void on_watch(uv_poll_t *h, int status, int events)
{
    MXU_UNUSED(status);
    MXU_UNUSED(events);
    watch *w = h->data;
    w->ended = true;
    uv_poll_stop(h);
}

static void watch_start(xt *t, watch *w, int pid)
{
    memset(w, 0, sizeof(*w));
    w->fd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (w->fd < 0)
        MXU_TEST_FAIL_("pidfd_open(%d): %s", pid, strerror(errno));
    uv_poll_init(&t->loop, &w->poll, w->fd);
    w->poll.data = w;
    uv_poll_start(&w->poll, UV_READABLE, on_watch);
}

static void on_watch_closed(uv_handle_t *h)
{
    watch *w = h->data;
    close(w->fd);
    w->fd = -1;
}

static void watch_end(xt *t, watch *w)
{
    uv_close((uv_handle_t *)&w->poll, on_watch_closed);
    WAIT_FOR(t, w->fd == -1, 1000);
}

/* The pid of the probe's child, from its "child <pid>" line. */
static int wait_child_pid(xt *t, run *r)
{
    char v[32];
    WAIT_FOR(t, report_get(r, "child", v, sizeof(v)) != NULL, 3000);
    int pid = atoi(v);
    CHECK(pid > 0);
    return pid;
}

/* ---- what the process is given ---------------------------------------------------------- */

/* Exactly the environment in the spec, in order; nothing of the node's. */
static void test_env_exact(void)
{
    xt t;
    xt_init(&t);
    setenv("MXU_TEST_LEAK", "node-only", 1);
    const char *argv[] = {EXEC_PROBE, "report", NULL};
    const char *env[] = {"A=1", "B=two words", "EMPTY=", t.node_env, NULL};
    mxu_exec_spec spec = probe_spec(&t, argv);
    spec.envp = env;
    run r;
    run_report(&t, &r, &spec, "");
    char all[512], want[512];
    report_all(&r, "env ", all, sizeof(all));
    snprintf(want, sizeof(want), "A=1;B=two words;EMPTY=;%s", t.node_env);
    CHECK_STR(all, want);
    char cwd[128];
    CHECK_STR(report_get(&r, "cwd", cwd, sizeof(cwd)), t.dir);
    release(&t, &r);
    xt_finish(&t);
}

/* Only 0, 1, 2 are open in the process (stdio pipes), whatever the node has
 * open; the host ends are non-blocking and close-on-exec. */
static void test_fds_stdio(void)
{
    xt t;
    xt_init(&t);
    /* Descriptors a careless node might leak: not close-on-exec. */
    int leak1 = open("/dev/null", O_RDONLY);
    CHECK(leak1 >= 0);
    CHECK_EQ_INT(dup2(leak1, 20), 20);
    CHECK_EQ_INT(dup2(leak1, 63), 63);
    const char *argv[] = {EXEC_PROBE, "report", NULL};
    mxu_exec_spec spec = probe_spec(&t, argv);
    run r;
    spawn(&t, &r, &spec);
    const mxu_proc_fds *fds = mxu_proc_get_fds(r.p);
    CHECK_EQ_INT(fds->channel, -1);
    int host[] = {fds->stdin_w, fds->stdout_r, fds->stderr_r};
    for (size_t i = 0; i < MXU_ARRAY_LEN(host); i++) {
        CHECK(host[i] >= 0);
        CHECK(fcntl(host[i], F_GETFL) & O_NONBLOCK);
        CHECK(fcntl(host[i], F_GETFD) & FD_CLOEXEC);
    }
    feed_stdin(&r, "input-bytes");
    WAIT_FOR(&t, r.exit_calls == 1 && r.out_eof, 3000);
    char all[128], v[128];
    report_all(&r, "fd ", all, sizeof(all));
    CHECK_STR(all, "0;1;2");
    CHECK(report_get(&r, "fd3", v, sizeof(v)) == NULL);
    CHECK_STR(report_get(&r, "stdin", v, sizeof(v)), "input-bytes");
    release(&t, &r);
    close(leak1);
    close(20);
    close(63);
    xt_finish(&t);
}

/* A warm instance: stdin is /dev/null, stdout joins stderr (the log), fd 3
 * is a pipe from the host and fd 4 a pipe to it, named in the environment.
 * Nothing else is open. */
static void test_fds_channel(void)
{
    xt t;
    xt_init(&t);
    int leak = open("/dev/null", O_RDONLY);
    CHECK(leak >= 0);
    CHECK_EQ_INT(dup2(leak, 4), 4); /* right where the channel's neighbour would be */
    CHECK_EQ_INT(dup2(leak, 40), 40);
    const char *argv[] = {EXEC_PROBE, "report", NULL};
    mxu_exec_spec spec = probe_spec(&t, argv);
    spec.stdio = false;
    spec.channel = true;
    run r;
    run_report(&t, &r, &spec, "");
    const mxu_proc_fds *fds = mxu_proc_get_fds(r.p);
    CHECK_EQ_INT(fds->stdin_w, -1);
    CHECK_EQ_INT(fds->stdout_r, -1);
    CHECK(fds->channel >= 0);
    CHECK(fds->channel_split);
    CHECK(fds->channel_w >= 0 && fds->channel_w != fds->channel);
    int host_fds[] = {fds->channel, fds->channel_w};
    for (size_t i = 0; i < MXU_ARRAY_LEN(host_fds); i++) {
        CHECK(fcntl(host_fds[i], F_GETFL) & O_NONBLOCK);
        CHECK(fcntl(host_fds[i], F_GETFD) & FD_CLOEXEC);
    }
    char all[128], v[128];
    report_all(&r, "fd ", all, sizeof(all));
    CHECK_STR(all, "0;1;2;3;4");
    CHECK_STR(report_get(&r, "fd0", v, sizeof(v)), "/dev/null");
    CHECK_STR(report_get(&r, "fd3", v, sizeof(v)), "pipe r");
    CHECK_STR(report_get(&r, "fd4", v, sizeof(v)), "pipe w");
    char envs[4096];
    report_all(&r, "env ", envs, sizeof(envs));
    CHECK(strstr(envs, "MXU_CHANNEL_OUT_FD=4") != NULL);
    CHECK_STR(report_get(&r, "stdin", v, sizeof(v)), "");
    char got[32] = "";
    CHECK_EQ_INT(read(fds->channel, got, sizeof(got) - 1), 10);
    CHECK_STR(got, "channel-ok");
    release(&t, &r);
    close(leak);
    close(4);
    close(40);
    xt_finish(&t);
}

static void limit_line(const char *name, rlim_t cur, rlim_t max, char *out, size_t outlen)
{
    char c[32], m[32];
    if (cur == RLIM_INFINITY)
        snprintf(c, sizeof(c), "inf");
    else
        snprintf(c, sizeof(c), "%llu", (unsigned long long)cur);
    if (max == RLIM_INFINITY)
        snprintf(m, sizeof(m), "inf");
    else
        snprintf(m, sizeof(m), "%llu", (unsigned long long)max);
    snprintf(out, outlen, "rlimit %s %s %s", name, c, m);
}

static void expect_limit(const run *r, const char *name, rlim_t cur, rlim_t max)
{
    char want[96];
    limit_line(name, cur, max, want, sizeof(want));
    if (!report_has(r, want)) {
        char got[96], key[32];
        snprintf(key, sizeof(key), "rlimit %s", name);
        MXU_TEST_FAIL_("want \"%s\", the process has \"%s %s\"", want, key,
                       report_get(r, key, got, sizeof(got)) ? got : "(nothing)");
    }
}

/* Limits as asked: RLIMIT_DATA from memory, NOFILE, no core dumps, CPU
 * seconds (soft) with one more second before SIGKILL (hard). */
static void test_rlimits(void)
{
    xt t;
    xt_init(&t);
    struct rlimit data, nofile;
    CHECK_EQ_INT(getrlimit(RLIMIT_DATA, &data), 0);
    CHECK_EQ_INT(getrlimit(RLIMIT_NOFILE, &nofile), 0);
    const char *argv[] = {EXEC_PROBE, "report", NULL};
    mxu_exec_spec spec = probe_spec(&t, argv);
    spec.memory_bytes = 64u << 20;
    spec.max_open_files = 77;
    spec.cpu_limit_s = 5;
    run r;
    run_report(&t, &r, &spec, "");
    rlim_t want_data = data.rlim_max != RLIM_INFINITY && data.rlim_max < (64u << 20)
                           ? data.rlim_max
                           : (rlim_t)(64u << 20);
    expect_limit(&r, "data", want_data, want_data);
    expect_limit(&r, "nofile", 77, 77);
    expect_limit(&r, "core", 0, 0);
    expect_limit(&r, "cpu", 5, 6);
    release(&t, &r);

    /* Defaults: no memory limit (as far as the node's own goes), 1024 files,
     * the node's CPU limit untouched. */
    struct rlimit cpu;
    CHECK_EQ_INT(getrlimit(RLIMIT_CPU, &cpu), 0);
    mxu_exec_spec dflt = probe_spec(&t, argv);
    run_report(&t, &r, &dflt, "");
    expect_limit(&r, "data", data.rlim_max, data.rlim_max);
    rlim_t want_nofile =
        nofile.rlim_max != RLIM_INFINITY && nofile.rlim_max < 1024 ? nofile.rlim_max : 1024;
    expect_limit(&r, "nofile", want_nofile, want_nofile);
    expect_limit(&r, "core", 0, 0);
    expect_limit(&r, "cpu", cpu.rlim_cur, cpu.rlim_max);
    release(&t, &r);
    xt_finish(&t);
}

/* Without CAP_SYS_RESOURCE, like a node run as a plain user: whatever the
 * capabilities of whoever runs the tests. */
static void drop_cap_sys_resource(void)
{
    struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct data[2];
    memset(data, 0, sizeof(data));
    CHECK_EQ_INT(syscall(SYS_capget, &hdr, data), 0);
    uint32_t bit = 1u << (CAP_SYS_RESOURCE % 32);
    data[CAP_SYS_RESOURCE / 32].effective &= ~bit;
    data[CAP_SYS_RESOURCE / 32].permitted &= ~bit;
    data[CAP_SYS_RESOURCE / 32].inheritable &= ~bit;
    CHECK_EQ_INT(syscall(SYS_capset, &hdr, data), 0);
}

/* Asking for more than the node's own hard limits gets the node's limits,
 * not a failed start (limits can only be lowered without privileges). The
 * data limit is set far above what a sanitizer's shadow memory takes, so
 * this test runs the same under ASan. */
static void test_rlimits_clamped(void)
{
    xt t;
    xt_init(&t);
    drop_cap_sys_resource();
    struct rlimit data = {1ull << 46, 1ull << 46}, nofile = {300, 300};
    CHECK_EQ_INT(setrlimit(RLIMIT_DATA, &data), 0);
    CHECK_EQ_INT(setrlimit(RLIMIT_NOFILE, &nofile), 0);
    const char *argv[] = {EXEC_PROBE, "report", NULL};
    mxu_exec_spec spec = probe_spec(&t, argv);
    spec.memory_bytes = 1ull << 47;
    spec.max_open_files = 500;
    run r;
    run_report(&t, &r, &spec, "");
    expect_limit(&r, "data", 1ull << 46, 1ull << 46);
    expect_limit(&r, "nofile", 300, 300);
    release(&t, &r);
    xt_finish(&t);
}

/* The same for the CPU limit of one-shot processes (the exec runtime asks
 * for its timeout in seconds, plus one). */
static void test_rlimit_cpu_clamped(void)
{
    xt t;
    xt_init(&t);
    drop_cap_sys_resource();
    struct rlimit cpu = {100, 100};
    CHECK_EQ_INT(setrlimit(RLIMIT_CPU, &cpu), 0);
    const char *argv[] = {EXEC_PROBE, "report", NULL};
    mxu_exec_spec spec = probe_spec(&t, argv);
    spec.cpu_limit_s = 300;
    run r;
    run_report(&t, &r, &spec, ""); /* fails the case if the start fails */
    char v[64];
    CHECK(report_get(&r, "rlimit cpu", v, sizeof(v)) != NULL);
    unsigned long long cur = 0, max = 0;
    CHECK_EQ_INT(sscanf(v, "%llu %llu", &cur, &max), 2);
    CHECK(cur <= 100 && max <= 100 && cur > 0);
    release(&t, &r);
    xt_finish(&t);
}

/* Its own process group (so kill reaches all it starts), SIGKILL when the
 * node dies, the node as its parent. */
static void test_group_and_pdeathsig(void)
{
    xt t;
    xt_init(&t);
    const char *argv[] = {EXEC_PROBE, "report", NULL};
    mxu_exec_spec spec = probe_spec(&t, argv);
    run r;
    run_report(&t, &r, &spec, "");
    char v[32];
    CHECK_EQ_INT(atoi(report_get(&r, "pid", v, sizeof(v))), r.pid);
    CHECK_EQ_INT(atoi(report_get(&r, "pgid", v, sizeof(v))), r.pid);
    CHECK_EQ_INT(atoi(report_get(&r, "ppid", v, sizeof(v))), getpid());
    CHECK_EQ_INT(atoi(report_get(&r, "pdeathsig", v, sizeof(v))), SIGKILL);
    release(&t, &r);
    xt_finish(&t);
}

static void on_usr1(int sig)
{
    MXU_UNUSED(sig);
}

/* Default dispositions and an empty mask, whatever the node ignores,
 * handles or blocks. */
static void test_signals_default(void)
{
    xt t;
    xt_init(&t);
    signal(SIGPIPE, SIG_IGN);
    signal(SIGTERM, SIG_IGN);
    signal(SIGHUP, SIG_IGN);
    signal(SIGUSR1, on_usr1);
    sigset_t block;
    sigemptyset(&block);
    sigaddset(&block, SIGUSR2);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGCHLD);
    CHECK_EQ_INT(sigprocmask(SIG_BLOCK, &block, NULL), 0);
    const char *argv[] = {EXEC_PROBE, "report", NULL};
    mxu_exec_spec spec = probe_spec(&t, argv);
    run r;
    run_report(&t, &r, &spec, "");
    char nondefault[256], blocked[256];
    report_all(&r, "nondefault ", nondefault, sizeof(nondefault));
    report_all(&r, "blocked ", blocked, sizeof(blocked));
    CHECK_STR(nondefault, "");
    CHECK_STR(blocked, "");
    release(&t, &r);
    xt_finish(&t);
}

/* ---- how it ends -------------------------------------------------------------------------- */

/* The exit callback reports the exit code or the signal, once. */
static void test_exit_status(void)
{
    xt t;
    xt_init(&t);
    const char *a7[] = {EXEC_PROBE, "exit", "7", NULL};
    mxu_exec_spec spec = probe_spec(&t, a7);
    run r;
    spawn(&t, &r, &spec);
    WAIT_FOR(&t, r.exit_calls == 1, 3000);
    CHECK(!r.ex.signaled);
    CHECK_EQ_INT(r.ex.exit_code, 7);
    char how[128];
    mxu_proc_exit_describe(&r.ex, how, sizeof(how));
    CHECK_STR(how, "exited with status 7");
    release(&t, &r);

    const char *s15[] = {EXEC_PROBE, "signal", "15", NULL};
    spec = probe_spec(&t, s15);
    spawn(&t, &r, &spec);
    WAIT_FOR(&t, r.exit_calls == 1, 3000);
    CHECK(r.ex.signaled);
    CHECK_EQ_INT(r.ex.signal, SIGTERM);
    mxu_proc_exit_describe(&r.ex, how, sizeof(how));
    CHECK_STR(how, "killed by signal 15 (SIGTERM)");
    release(&t, &r);
    xt_finish(&t);
    CHECK_EQ_INT(r.exit_calls, 1);
}

/* kill() ends the process and everything it started; it is idempotent. */
static void test_kill_takes_children(void)
{
    xt t;
    xt_init(&t);
    const char *argv[] = {EXEC_PROBE, "fork", NULL};
    mxu_exec_spec spec = probe_spec(&t, argv);
    run r;
    spawn(&t, &r, &spec);
    int child = wait_child_pid(&t, &r);
    watch w;
    watch_start(&t, &w, child);
    CHECK(!w.ended);
    mxu_exec_kill(t.ops, r.p);
    mxu_exec_kill(t.ops, r.p);
    WAIT_FOR(&t, r.exit_calls == 1 && w.ended, 3000);
    CHECK(r.ex.signaled);
    CHECK_EQ_INT(r.ex.signal, SIGKILL);
    char how[128];
    mxu_proc_exit_describe(&r.ex, how, sizeof(how));
    CHECK_CONTAINS(how, "killed by signal 9 (SIGKILL)");
    t.ops->kill(r.p); /* after the end: nothing happens */
    watch_end(&t, &w);
    release(&t, &r);
    xt_finish(&t);
    CHECK_EQ_INT(r.exit_calls, 1);
}

/* usage() while it runs and at its end: CPU time and peak memory. */
static void test_usage(void)
{
    xt t;
    xt_init(&t);
    const char *argv[] = {EXEC_PROBE, "burn", NULL};
    mxu_exec_spec spec = probe_spec(&t, argv);
    spec.memory_bytes = 256u << 20;
    run r;
    spawn(&t, &r, &spec);
    WAIT_FOR(&t, r.out.data && strstr(r.out.data, "ready\n"), 3000);
    mxu_usage u = {0};
    CHECK_EQ_INT(t.ops->usage(r.p, &u), 0);
    if (u.cpu_us < 100000 || u.peak_bytes < (32u << 20))
        MXU_TEST_FAIL_("running: cpu %llu us, peak %llu bytes", (unsigned long long)u.cpu_us,
                       (unsigned long long)u.peak_bytes);
    feed_stdin(&r, "");
    WAIT_FOR(&t, r.exit_calls == 1, 3000);
    CHECK_EQ_INT(r.ex.exit_code, 0);
    if (r.ex.usage.cpu_us < 100000 || r.ex.usage.peak_bytes < (32u << 20))
        MXU_TEST_FAIL_("at exit: cpu %llu us, peak %llu bytes",
                       (unsigned long long)r.ex.usage.cpu_us,
                       (unsigned long long)r.ex.usage.peak_bytes);
    CHECK(r.ex.usage.cpu_us >= u.cpu_us);
    mxu_usage after = {0};
    CHECK_EQ_INT(t.ops->usage(r.p, &after), 0);
    CHECK_EQ_U64(after.cpu_us, r.ex.usage.cpu_us);
    CHECK_EQ_U64(after.peak_bytes, r.ex.usage.peak_bytes);
    release(&t, &r);
    xt_finish(&t);
}

/* Freeing a running process kills it and reaps it in the background; its
 * exit callback does not run. */
static void test_free_running(void)
{
    xt t;
    xt_init(&t);
    const char *argv[] = {EXEC_PROBE, "sleep", NULL};
    mxu_exec_spec spec = probe_spec(&t, argv);
    run r;
    spawn(&t, &r, &spec);
    int pid = r.pid;
    watch w;
    watch_start(&t, &w, pid);
    release(&t, &r);
    WAIT_FOR(&t, w.ended, 3000);
    /* Reaped by the executor (no zombie left behind). */
    WAIT_FOR(&t, kill(pid, 0) < 0 && errno == ESRCH, 2000);
    watch_end(&t, &w);
    CHECK_EQ_INT(r.exit_calls, 0);
    xt_finish(&t);
    CHECK_EQ_INT(r.exit_calls, 0);
}

/* Destroying the executor kills and reaps everything still running before
 * it returns. */
static void test_destroy_kills_all(void)
{
    xt t;
    xt_init(&t);
    const char *argv[] = {EXEC_PROBE, "fork", NULL};
    mxu_exec_spec spec = probe_spec(&t, argv);
    run r1, r2;
    spawn(&t, &r1, &spec);
    spawn(&t, &r2, &spec);
    int child = wait_child_pid(&t, &r1);
    wait_child_pid(&t, &r2);
    int p1 = r1.pid, p2 = r2.pid;
    watch w;
    watch_start(&t, &w, child);
    uv_close((uv_handle_t *)&r1.poll, NULL);
    uv_close((uv_handle_t *)&r2.poll, NULL);
    mxu_exec_destroy(t.ex);
    t.ex = NULL;
    CHECK(kill(p1, 0) < 0 && errno == ESRCH);
    CHECK(kill(p2, 0) < 0 && errno == ESRCH);
    WAIT_FOR(&t, w.ended, 2000); /* the grandchild too */
    watch_end(&t, &w);
    CHECK_EQ_INT(r1.exit_calls + r2.exit_calls, 0);
    mxu_buf_free(&r1.out);
    mxu_buf_free(&r2.out);
    uv_close((uv_handle_t *)&t.guard, NULL);
    uv_close((uv_handle_t *)&t.tick, NULL);
    for (int i = 0; i < 50 && uv_run(&t.loop, UV_RUN_NOWAIT) != 0; i++)
        ;
    CHECK_EQ_INT(uv_loop_close(&t.loop), 0);
    remove_dir();
}

/* ---- failures to start ---------------------------------------------------------------------- */

/* A program that is not there: prepare and spawn fail with a message naming
 * it; spawn leaves nothing behind (no descriptor, no zombie) and its exit
 * callback never runs. */
static void test_spawn_missing(void)
{
    xt t;
    xt_init(&t);
    _cleanup_free_ char *prog = mxu_asprintf("%s/no-such-program", t.dir);
    const char *argv[] = {prog, NULL};
    mxu_exec_spec spec = probe_spec(&t, argv);
    mxu_err err = {0};
    CHECK_EQ_INT(t.ops->prepare(t.ex, &spec, &err), -1);
    CHECK_EQ_INT(err.code, ENOENT);
    CHECK_CONTAINS(err.msg, prog);
    CHECK_CONTAINS(err.msg, "probe@1");

    int fds_before = count_open_fds();
    run r;
    memset(&r, 0, sizeof(r));
    mxu_err err2 = {0};
    CHECK_EQ_INT(t.ops->spawn(t.ex, &spec, on_exit_cb, &r, &r.p, &err2), -1);
    CHECK(r.p == NULL);
    CHECK_EQ_INT(err2.code, ENOENT);
    CHECK_CONTAINS(err2.msg, prog);
    CHECK_CONTAINS(err2.msg, "execve");
    CHECK_EQ_INT(count_open_fds(), fds_before);
    CHECK(waitpid(-1, NULL, WNOHANG) < 0 && errno == ECHILD);
    for (int i = 0; i < 5; i++)
        uv_run(&t.loop, UV_RUN_NOWAIT);
    CHECK_EQ_INT(r.exit_calls, 0);

    /* A relative path is refused before anything runs. */
    const char *rel[] = {"bin/probe", NULL};
    spec = probe_spec(&t, rel);
    CHECK_EQ_INT(t.ops->prepare(t.ex, &spec, &err), -1);
    CHECK_EQ_INT(err.code, EINVAL);
    CHECK_CONTAINS(err.msg, "absolute");
    xt_finish(&t);
    CHECK_EQ_INT(r.exit_calls, 0);
}

/* A file that is not executable, and a working directory that is not there. */
static void test_spawn_not_executable(void)
{
    xt t;
    xt_init(&t);
    _cleanup_free_ char *prog = mxu_asprintf("%s/script", t.dir);
    mxu_err err = {0};
    CHECK_EQ_INT(mxu_write_file_atomic(prog, "#!/bin/sh\n", 10, 0644, &err), 0);
    const char *argv[] = {prog, NULL};
    mxu_exec_spec spec = probe_spec(&t, argv);
    CHECK_EQ_INT(t.ops->prepare(t.ex, &spec, &err), -1);
    CHECK_EQ_INT(err.code, EACCES);
    CHECK_CONTAINS(err.msg, "is not an executable file");
    CHECK_CONTAINS(err.msg, prog);
    run r;
    memset(&r, 0, sizeof(r));
    CHECK_EQ_INT(t.ops->spawn(t.ex, &spec, on_exit_cb, &r, &r.p, &err), -1);
    CHECK_EQ_INT(err.code, EACCES);
    CHECK_CONTAINS(err.msg, prog);

    const char *probe[] = {EXEC_PROBE, "report", NULL};
    spec = probe_spec(&t, probe);
    _cleanup_free_ char *nodir = mxu_asprintf("%s/gone", t.dir);
    spec.cwd = nodir;
    CHECK_EQ_INT(t.ops->spawn(t.ex, &spec, on_exit_cb, &r, &r.p, &err), -1);
    CHECK_EQ_INT(err.code, ENOENT);
    CHECK_CONTAINS(err.msg, "chdir");
    for (int i = 0; i < 5; i++)
        uv_run(&t.loop, UV_RUN_NOWAIT);
    CHECK_EQ_INT(r.exit_calls, 0);
    xt_finish(&t);
}

/* ---- leftovers of a crashed node ----------------------------------------------------------------
 */

/* A process that escaped its group (setsid) survives kill(); the next node
 * with the same id finds it by its MXU_NODE marker and kills it — and
 * nothing whose marker only looks similar. */
static void test_reap_leftovers(void)
{
    xt t;
    xt_init(&t);
    const char *env[] = {"PATH=/usr/bin:/bin", t.node_env, NULL};
    const char *escape[] = {EXEC_PROBE, "escape", NULL};
    mxu_exec_spec spec = probe_spec(&t, escape);
    spec.envp = env;
    run r;
    spawn(&t, &r, &spec);
    int child = wait_child_pid(&t, &r);
    watch w;
    watch_start(&t, &w, child);

    /* Decoys: other nodes' processes. */
    char similar[128], prefix[128];
    snprintf(similar, sizeof(similar), "%sx", t.node_env);
    snprintf(prefix, sizeof(prefix), "MXU_NODE=%.*s", (int)strlen(t.node_id) - 1, t.node_id);
    const char *env_similar[] = {similar, NULL};
    const char *env_prefix[] = {prefix, NULL};
    const char *sleep_argv[] = {EXEC_PROBE, "sleep", NULL};
    mxu_exec_spec d1 = probe_spec(&t, sleep_argv), d2 = probe_spec(&t, sleep_argv);
    d1.envp = env_similar;
    d2.envp = env_prefix;
    run decoy1, decoy2;
    spawn(&t, &decoy1, &d1);
    spawn(&t, &decoy2, &d2);

    mxu_exec_kill(t.ops, r.p);
    WAIT_FOR(&t, r.exit_calls == 1, 3000);
    CHECK_EQ_INT(getsid(child), child); /* escaped, and still there */
    CHECK(!w.ended);

    CHECK_EQ_INT(mxu_exec_reap_leftovers(t.node_id), 1);
    WAIT_FOR(&t, w.ended, 3000);
    watch_end(&t, &w);
    CHECK_EQ_INT(decoy1.exit_calls + decoy2.exit_calls, 0);
    CHECK_EQ_INT(kill(decoy1.pid, 0), 0);
    CHECK_EQ_INT(kill(decoy2.pid, 0), 0);
    CHECK_EQ_INT(mxu_exec_reap_leftovers(t.node_id), 0);
    mxu_exec_kill(t.ops, decoy1.p);
    mxu_exec_kill(t.ops, decoy2.p);
    WAIT_FOR(&t, decoy1.exit_calls == 1 && decoy2.exit_calls == 1, 3000);
    release(&t, &r);
    release(&t, &decoy1);
    release(&t, &decoy2);
    xt_finish(&t);
}

MXU_TESTS(TEST(test_env_exact), TEST(test_fds_stdio), TEST(test_fds_channel), TEST(test_rlimits),
          TEST(test_rlimits_clamped), TEST(test_rlimit_cpu_clamped), TEST(test_group_and_pdeathsig),
          TEST(test_signals_default), TEST(test_exit_status), TEST(test_kill_takes_children),
          TEST(test_usage), TEST(test_free_running), TEST(test_destroy_kills_all),
          TEST(test_spawn_missing), TEST(test_spawn_not_executable), TEST(test_reap_leftovers))
