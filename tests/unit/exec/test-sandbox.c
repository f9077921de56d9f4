/*
 * Unit tests for the sandbox executor (src/exec/exec-sandbox*.c), reached
 * the way the scheduler reaches it: mxu_executor_find("sandbox") and its ops
 * table, on a real libuv loop. The program it starts is sandbox-probe,
 * copied into a bundle folder (the sandbox sees nothing else of the host),
 * which reports from the inside: ids, capabilities, no_new_privs, seccomp,
 * namespaces, mounts, network, descriptors, environment, what it can write
 * and see; the host side checks the cgroup limits and cleanup.
 *
 * Divisions: fixture; what the instance is and sees; limits (cgroups, OOM,
 * pids); what it may not do (system calls); how it ends (kill, cleanup);
 * failures at prepare; a crashed node's leftovers; an unprivileged node
 * (user namespace).
 *
 * These tests need what the sandbox needs (root or user namespaces, cgroup
 * controllers); where it is unavailable they say so and pass.
 */
#include "exec/exec-sandbox.h"
#include "exec/exec.h"
#include "test.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <uv.h>

#ifndef SANDBOX_PROBE
#error "build with -DSANDBOX_PROBE=path (tests/unit/exec/meson.build)"
#endif

/* ---- fixture ------------------------------------------------------------------ */

typedef struct xt {
    uv_loop_t loop;
    mxu_exec *ex;
    const mxu_executor_ops *ops;
    char dir[64];   /* the bundle */
    char probe[96]; /* the probe inside it (host path) */
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
    MXU_UNUSED(t);
}

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

static void copy_file(const char *from, const char *to)
{
    mxu_buf b = {0};
    CHECK_EQ_INT(mxu_read_file(from, 64u << 20, &b, NULL), 0);
    int fd = open(to, O_WRONLY | O_CREAT | O_TRUNC, 0755);
    CHECK(fd >= 0);
    CHECK_EQ_INT(mxu_write_all(fd, b.data, b.len), 0);
    close(fd);
    mxu_buf_free(&b);
}

/* Returns false (and the case should pass) if the sandbox cannot run here. */
static bool xt_init_id(xt *t, const char *node_id)
{
    memset(t, 0, sizeof(*t));
    CHECK_EQ_INT(uv_loop_init(&t->loop), 0);
    snprintf(t->dir, sizeof(t->dir), "/tmp/mxu-test-sandbox-XXXXXX");
    CHECK(mkdtemp(t->dir) != NULL);
    CHECK_EQ_INT(chmod(t->dir, 0755), 0); /* the sandbox user must get in */
    snprintf(g_dir, sizeof(g_dir), "%s", t->dir);
    atexit(remove_dir);
    snprintf(t->probe, sizeof(t->probe), "%s/probe", t->dir);
    copy_file(SANDBOX_PROBE, t->probe);
    if (node_id)
        snprintf(t->node_id, sizeof(t->node_id), "%s", node_id);
    else
        snprintf(t->node_id, sizeof(t->node_id), "test-sbx-%d-%llu", (int)getpid(),
                 (unsigned long long)mxu_now_ns());
    snprintf(t->node_env, sizeof(t->node_env), "MXU_NODE=%s", t->node_id);
    uv_timer_init(&t->loop, &t->guard);
    t->guard.data = t;
    uv_timer_init(&t->loop, &t->tick);
    mxu_err err = {0};
    if (mxu_exec_create(&t->loop, t->node_id, &t->ex, &err) < 0)
        MXU_TEST_FAIL_("mxu_exec_create: %s", err.msg);
    t->ops = mxu_executor_find("sandbox");
    CHECK(t->ops != NULL);
    CHECK_STR(t->ops->name, "sandbox");
    const char *why = mxu_executor_unavailable("sandbox");
    if (why && getenv("MXU_TEST_REQUIRE_SANDBOX"))
        MXU_TEST_FAIL_("sandbox unavailable (%s), and MXU_TEST_REQUIRE_SANDBOX is set", why);
    if (why) {
        fprintf(stderr, "  sandbox unavailable here (%s): skipped\n", why);
        return false;
    }
    return true;
}

static bool xt_init(xt *t)
{
    return xt_init_id(t, NULL);
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

/* ---- one probe ------------------------------------------------------------------ */

typedef struct run {
    mxu_proc *p;
    int pid;
    int exit_calls;
    mxu_proc_exit ex;
    uv_poll_t poll;
    bool poll_open;
    int out_fd;
    mxu_buf out;
    bool out_eof;
} run;

static void on_exit_cb(mxu_proc *p, const mxu_proc_exit *ex, void *ud)
{
    run *r = ud;
    CHECK(p == r->p);
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
        }
        return;
    }
}

static const char *const default_env[] = {"PATH=/usr/bin:/bin", "A=1", NULL};

static mxu_exec_spec probe_spec(xt *t, const char *const *argv)
{
    return (mxu_exec_spec){
        .label = "probe@1",
        .argv = argv,
        .envp = default_env,
        .cwd = t->dir,
        .memory_bytes = 64u << 20,
        .stdio = true,
    };
}

static void spawn(xt *t, run *r, const mxu_exec_spec *spec)
{
    memset(r, 0, sizeof(*r));
    mxu_err err = {0};
    if (t->ops->prepare(t->ex, spec, &err) < 0)
        MXU_TEST_FAIL_("prepare: %s", err.msg);
    if (t->ops->spawn(t->ex, spec, on_exit_cb, r, &r->p, &err) < 0)
        MXU_TEST_FAIL_("spawn: %s", err.msg);
    r->pid = mxu_proc_pid(r->p);
    CHECK(r->pid > 0);
    const mxu_proc_fds *fds = mxu_proc_get_fds(r->p);
    r->out_fd = spec->stdio ? fds->stdout_r : fds->stderr_r;
    CHECK(r->out_fd >= 0);
    if (spec->stdio) {
        mxu_proc_fds *f = (mxu_proc_fds *)fds;
        close(mxu_proc_steal_fd(r->p, &f->stdin_w));
    }
    uv_poll_init(&t->loop, &r->poll, r->out_fd);
    r->poll.data = r;
    r->poll_open = true;
    uv_poll_start(&r->poll, UV_READABLE, on_out);
}

static void on_out_closed(uv_handle_t *h)
{
    ((run *)h->data)->poll_open = false;
}

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

static void run_to_end(xt *t, run *r, const mxu_exec_spec *spec)
{
    spawn(t, r, spec);
    WAIT_FOR(t, r->exit_calls == 1 && r->out_eof, 5000);
}

/* Is the host's only hierarchy cgroup v2, mounted at /sys/fs/cgroup? */
static bool cgroup_v2(void)
{
    struct stat st;
    return stat("/sys/fs/cgroup/cgroup.controllers", &st) == 0;
}

/* The instance's cgroup directory in hierarchy `ctl` (v1) as the host sees
 * it; on a v2 host, its one cgroup whatever `ctl`. */
static bool host_cgroup_dir(int pid, const char *ctl, char *out, size_t outlen)
{
    bool v2 = cgroup_v2();
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/cgroup", pid);
    mxu_buf b = {0};
    if (mxu_read_file(path, 65536, &b, NULL) < 0 || b.len == 0)
        return false;
    bool found = false;
    for (char *line = b.data, *next; line && *line; line = next) {
        next = strchr(line, '\n');
        if (next)
            *next++ = '\0';
        char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        if (c2 == NULL)
            continue;
        *c2 = '\0';
        if (v2) {
            if (c1 == line + 1 && line[0] == '0' && c1[1] == '\0') {
                snprintf(out, outlen, "/sys/fs/cgroup%s", strcmp(c2 + 1, "/") == 0 ? "" : c2 + 1);
                found = true;
            }
            continue;
        }
        char want[32];
        snprintf(want, sizeof(want), ",%s,", ctl);
        char have[128];
        snprintf(have, sizeof(have), ",%s,", c1 + 1);
        if (strstr(have, want)) {
            snprintf(out, outlen, "/sys/fs/cgroup/%s%s", ctl, c2 + 1);
            found = true;
        }
    }
    mxu_buf_free(&b);
    return found;
}

static uint64_t read_u64(const char *dir, const char *file)
{
    char path[512];
    if (snprintf(path, sizeof(path), "%s/%s", dir, file) >= (int)sizeof(path))
        return 0;
    mxu_buf b = {0};
    uint64_t v = 0;
    if (mxu_read_file(path, 4096, &b, NULL) == 0 && b.len)
        v = strtoull(b.data, NULL, 10);
    mxu_buf_free(&b);
    return v;
}

/* ---- what the instance is and sees ---------------------------------------------------- */

static void test_inside(void)
{
    xt t;
    if (!xt_init(&t))
        return;
    const char *argv[] = {t.probe, "report", NULL};
    mxu_exec_spec spec = probe_spec(&t, argv);
    spec.channel = true;
    run r;
    run_to_end(&t, &r, &spec);
    if (!report_has(&r, "end"))
        MXU_TEST_FAIL_("incomplete report: %s", r.out.data ? r.out.data : "");
    CHECK_EQ_INT(r.ex.exit_code, 0);
    char v[512];
    /* An unprivileged user with nothing to gain. */
    CHECK_STR(report_get(&r, "uid", v, sizeof(v)), "65534 65534");
    CHECK_STR(report_get(&r, "gid", v, sizeof(v)), "65534 65534");
    static const char *const caps[] = {"CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"};
    for (size_t i = 0; i < MXU_ARRAY_LEN(caps); i++) {
        char key[32], want[64];
        snprintf(key, sizeof(key), "status %s", caps[i]);
        snprintf(want, sizeof(want), "status %s 0000000000000000", caps[i]);
        if (!report_has(&r, want))
            MXU_TEST_FAIL_("%s is not empty: %s", caps[i], r.out.data);
    }
    CHECK(report_has(&r, "status NoNewPrivs 1"));
    CHECK(report_has(&r, "status Seccomp 2"));
    /* Its own namespaces: pid 1, its own host name, every ns inode differs. */
    CHECK_STR(report_get(&r, "pid", v, sizeof(v)), "1");
    CHECK_STR(report_get(&r, "hostname", v, sizeof(v)), "mxu");
    static const char *const ns[] = {"pid", "mnt", "net", "ipc", "uts", "cgroup"};
    for (size_t i = 0; i < MXU_ARRAY_LEN(ns); i++) {
        char path[64], key[32];
        struct stat st;
        snprintf(path, sizeof(path), "/proc/self/ns/%s", ns[i]);
        CHECK_EQ_INT(stat(path, &st), 0);
        snprintf(key, sizeof(key), "ns %s", ns[i]);
        CHECK(report_get(&r, key, v, sizeof(v)) != NULL);
        if (strtoull(v, NULL, 10) == (unsigned long long)st.st_ino)
            MXU_TEST_FAIL_("shares the %s namespace with the host", ns[i]);
    }
    /* Exactly the minimal root. */
    char mounts[2048];
    report_all(&r, "mount ", mounts, sizeof(mounts));
    static const char *const must[] = {";/usr;", ";/fn;",   ";/tmp;",
                                       ";/dev;", ";/proc;", ";/dev/null;"};
    char wrapped[2100];
    snprintf(wrapped, sizeof(wrapped), ";%s;", mounts);
    for (size_t i = 0; i < MXU_ARRAY_LEN(must); i++)
        if (!strstr(wrapped, must[i]))
            MXU_TEST_FAIL_("no mount %s in %s", must[i], mounts);
    static const char *const never[] = {";/home", ";/root", ";/var", ";/sys", ";/mnt", ";/work"};
    for (size_t i = 0; i < MXU_ARRAY_LEN(never); i++)
        if (strstr(wrapped, never[i]))
            MXU_TEST_FAIL_("host mount %s visible: %s", never[i], mounts);
    if (strstr(wrapped, t.dir))
        MXU_TEST_FAIL_("the bundle's host path is visible: %s", mounts);
    /* Network: loopback only. */
    report_all(&r, "netif ", v, sizeof(v));
    CHECK_STR(v, "lo");
    /* Descriptors 0..4 only (3 and 4: the channel's pipes); the environment
     * exactly as given plus the channel's write side; cwd the bundle. */
    report_all(&r, "fd ", v, sizeof(v));
    CHECK_STR(v, "0;1;2;3;4");
    report_all(&r, "env ", v, sizeof(v));
    CHECK_STR(v, "PATH=/usr/bin:/bin;A=1;MXU_CHANNEL_OUT_FD=4");
    CHECK_STR(report_get(&r, "cwd", v, sizeof(v)), "/fn");
    CHECK(report_has(&r, "channel yes"));
    char chan[16] = "";
    CHECK_EQ_INT(read(mxu_proc_get_fds(r.p)->channel, chan, sizeof(chan)), 10);
    /* Only /tmp is writable. */
    CHECK(report_has(&r, "write /tmp yes"));
    static const char *const ro[] = {"/", "/fn", "/etc", "/usr", "/dev", "/proc/sys"};
    for (size_t i = 0; i < MXU_ARRAY_LEN(ro); i++) {
        char line[64];
        snprintf(line, sizeof(line), "write %s no", ro[i]);
        if (!report_has(&r, line))
            MXU_TEST_FAIL_("%s is writable", ro[i]);
    }
    static const char *const absent[] = {"/home",       "/root",    "/var",
                                         "/etc/shadow", "/dev/sda", "/sys"};
    for (size_t i = 0; i < MXU_ARRAY_LEN(absent); i++) {
        char line[64];
        snprintf(line, sizeof(line), "exists %s no", absent[i]);
        if (!report_has(&r, line))
            MXU_TEST_FAIL_("%s exists inside", absent[i]);
    }
    CHECK(report_has(&r, "exists /etc/passwd yes"));
    CHECK(report_has(&r, "exists /dev/null yes"));
    release(&t, &r);
    xt_finish(&t);
}

/* ---- limits -------------------------------------------------------------------------------- */

/* The host sees the instance in its own cgroups, with the spec's memory, the
 * pids limit and a CPU quota; they are gone once it has ended. */
static void test_cgroup_limits(void)
{
    xt t;
    if (!xt_init(&t))
        return;
    const char *argv[] = {t.probe, "sleep", NULL};
    mxu_exec_spec spec = probe_spec(&t, argv);
    spec.memory_bytes = 48u << 20;
    run r;
    spawn(&t, &r, &spec);
    char v[64];
    WAIT_FOR(&t, report_get(&r, "child", v, sizeof(v)) != NULL, 3000);
    char mem[512], pids[512];
    CHECK(host_cgroup_dir(r.pid, "memory", mem, sizeof(mem)));
    CHECK(host_cgroup_dir(r.pid, "pids", pids, sizeof(pids)));
    char want[128];
    snprintf(want, sizeof(want), "/mxu-%s/i", t.node_id);
    CHECK_CONTAINS(mem, want);
    CHECK_EQ_U64(read_u64(pids, "pids.max"), 256);
    CHECK_EQ_U64(read_u64(pids, "pids.current"), 2);
    if (cgroup_v2()) {
        CHECK_EQ_U64(read_u64(mem, "memory.max"), 48u << 20);
        CHECK_EQ_U64(read_u64(mem, "memory.swap.max"), 0);
        /* "quota period"; the quota is there wherever the host offers cpu. */
        mxu_buf ctls = {0};
        CHECK_EQ_INT(mxu_read_file("/sys/fs/cgroup/cgroup.controllers", 4096, &ctls, NULL), 0);
        mxu_buf_append(&ctls, "", 1);
        if (strstr(ctls.data, "cpu"))
            CHECK_EQ_U64(read_u64(mem, "cpu.max"), 100000);
        mxu_buf_free(&ctls);
    } else {
        CHECK_EQ_U64(read_u64(mem, "memory.limit_in_bytes"), 48u << 20);
        char cpu[512];
        if (host_cgroup_dir(r.pid, "cpu", cpu, sizeof(cpu)) && strstr(cpu, want))
            CHECK_EQ_U64(read_u64(cpu, "cpu.cfs_quota_us"), 100000);
    }
    mxu_usage u;
    CHECK_EQ_INT(t.ops->usage(r.p, &u), 0);
    CHECK(u.peak_bytes > 0);
    /* Killing it kills its child too (pid 1 of the namespace), and the
     * cgroups go. */
    t.ops->kill(r.p);
    WAIT_FOR(&t, r.exit_calls == 1, 3000);
    CHECK(r.ex.signaled);
    CHECK_EQ_INT(r.ex.signal, SIGKILL);
    CHECK(!r.ex.oom);
    struct stat st;
    WAIT_FOR(&t, stat(mem, &st) < 0 && stat(pids, &st) < 0, 3000);
    release(&t, &r);
    xt_finish(&t);
    /* And the node's parent goes with the node. */
    *strrchr(mem, '/') = '\0';
    CHECK_CONTAINS(mem, "/mxu-");
    CHECK(stat(mem, &st) < 0);
}

/* A memory bomb is killed by the cgroup's OOM killer, and the exit says so. */
static void test_oom(void)
{
    xt t;
    if (!xt_init(&t))
        return;
    const char *argv[] = {t.probe, "oom", NULL};
    mxu_exec_spec spec = probe_spec(&t, argv);
    spec.memory_bytes = 32u << 20;
    run r;
    run_to_end(&t, &r, &spec);
    CHECK(r.ex.signaled);
    CHECK(r.ex.oom);
    CHECK_EQ_U64(r.ex.memory_limit, 32u << 20);
    char how[128];
    mxu_proc_exit_describe(&r.ex, how, sizeof(how));
    CHECK_STR(how, "killed: out of memory (limit 32 MiB)");
    release(&t, &r);
    xt_finish(&t);
}

/* A fork bomb stops at the pids limit. */
static void test_fork_bomb(void)
{
    xt t;
    if (!xt_init(&t))
        return;
    const char *argv[] = {t.probe, "forkbomb", NULL};
    mxu_exec_spec spec = probe_spec(&t, argv);
    run r;
    run_to_end(&t, &r, &spec);
    char v[32];
    CHECK(report_get(&r, "forks", v, sizeof(v)) != NULL);
    CHECK(atoi(v) < 256);
    CHECK(atoi(v) > 10);
    release(&t, &r);
    xt_finish(&t);
}

/* ---- what it may not do ---------------------------------------------------------------- */

static void test_syscalls_blocked(void)
{
    xt t;
    if (!xt_init(&t))
        return;
    const char *argv[] = {t.probe, "syscalls", NULL};
    mxu_exec_spec spec = probe_spec(&t, argv);
    run r;
    run_to_end(&t, &r, &spec);
    CHECK(report_has(&r, "end"));
    if (strstr(r.out.data, " allowed\n"))
        MXU_TEST_FAIL_("a dangerous call is allowed:\n%s", r.out.data);
    CHECK(report_has(&r, "control open-tmp ok"));
    CHECK(report_has(&r, "control fork ok"));
    CHECK(report_has(&r, "control socket-inet ok"));
    release(&t, &r);
    xt_finish(&t);
}

/* The filter each sandbox loads is the compact one (ranges of syscall
 * numbers), which the node uses only if it decides as libseccomp's program
 * does: loading it costs the cold start a third of libseccomp's (the kernel
 * JIT-compiles it). What it blocks is checked from the inside above and by
 * the hostile suite. */
static void test_seccomp_compact(void)
{
    struct sock_fprog prog = {0};
    char why[256] = "";
    if (sbx_seccomp_build(&prog, why, sizeof(why)) < 0)
        MXU_TEST_FAIL_("seccomp: %s", why);
#if defined(__x86_64__)
    if (prog.len > 128)
        MXU_TEST_FAIL_("the compact filter was not used: %u instructions", prog.len);
#endif
    free(prog.filter);
}

/* ---- failures at prepare --------------------------------------------------------------- */

static void test_prepare_outside_bundle(void)
{
    xt t;
    if (!xt_init(&t))
        return;
    const char *argv[] = {"/opt/elsewhere/prog", NULL};
    mxu_exec_spec spec = probe_spec(&t, argv);
    mxu_err err = {0};
    CHECK_EQ_INT(t.ops->prepare(t.ex, &spec, &err), -1);
    CHECK_EQ_INT(err.code, EACCES);
    CHECK_CONTAINS(err.msg, "the sandbox cannot see it");
    xt_finish(&t);
}

/* ---- a crashed node's leftovers --------------------------------------------------------- */

/* A node that is gone without cleaning up (here: its executor context is
 * simply not destroyed) leaves a sandbox running in its cgroups; the next
 * node with the same id kills it and removes them at start. */
static void test_leftovers_swept(void)
{
    xt a;
    if (!xt_init(&a))
        return;
    const char *argv[] = {a.probe, "sleep", NULL};
    mxu_exec_spec spec = probe_spec(&a, argv);
    run r;
    spawn(&a, &r, &spec);
    char v[32], mem[512];
    WAIT_FOR(&a, report_get(&r, "child", v, sizeof(v)) != NULL, 3000);
    CHECK(host_cgroup_dir(r.pid, "memory", mem, sizeof(mem)));
    mxu_exec *second = NULL;
    mxu_err err = {0};
    CHECK_EQ_INT(mxu_exec_create(&a.loop, a.node_id, &second, &err), 0);
    WAIT_FOR(&a, r.exit_calls == 1, 3000);
    CHECK(r.ex.signaled);
    struct stat st;
    WAIT_FOR(&a, stat(mem, &st) < 0, 3000);
    mxu_exec_destroy(second);
    release(&a, &r);
    xt_finish(&a);
}

/* ---- an unprivileged node ----------------------------------------------------------------- */

/* Remove a cgroup and every cgroup below it, deepest first, waiting up to a
 * second for tasks that are still dying (what a failed run leaves inside). */
static void rmdir_cgroup_tree(const char *dir)
{
    DIR *d = opendir(dir);
    if (d) {
        struct dirent *de;
        while ((de = readdir(d)) != NULL) {
            if (de->d_type != DT_DIR || de->d_name[0] == '.')
                continue;
            char sub[512];
            snprintf(sub, sizeof(sub), "%s/%s", dir, de->d_name);
            rmdir_cgroup_tree(sub);
        }
        closedir(d);
    }
    for (int i = 0; i < 200 && rmdir(dir) < 0 && errno == EBUSY; i++)
        usleep(5000);
}

/* The same sandbox from a node that is not root: it uses a user namespace
 * (mapping its own uid) for what root would do, and cgroups delegated to it.
 * As root, the test makes the delegation (a cgroup per v1 hierarchy, or one
 * on v2, owned by 65534, with this process in it) and then becomes 65534. On
 * v2 the node then shares its cgroup with nothing else, like a delegated
 * service: it moves itself into a leaf to enable controllers below. */
static void test_unprivileged_userns(void)
{
    if (geteuid() != 0) {
        fprintf(stderr, "  not root: cannot set up the delegation; skipped\n");
        return;
    }
    char deleg[3][400];
    static const char *const ctl[] = {"memory", "pids", "cpu"};
    int n = cgroup_v2() ? 1 : 3;
    for (int i = 0; i < n; i++) {
        char own[300];
        if (!host_cgroup_dir(getpid(), ctl[i], own, sizeof(own))) {
            fprintf(stderr, "  no v1 %s hierarchy: skipped\n", ctl[i]);
            return;
        }
        snprintf(deleg[i], sizeof(deleg[i]), "%s/mxu-test-deleg-%d", own, (int)getpid());
        CHECK(mkdir(deleg[i], 0755) == 0 || errno == EEXIST);
    }
    if (n == 1) {
        /* v2: controllers reach the delegated cgroup only if our own
         * cgroup passes them down (it cannot while it holds processes). */
        char path[512];
        snprintf(path, sizeof(path), "%s/cgroup.controllers", deleg[0]);
        mxu_buf b = {0};
        CHECK_EQ_INT(mxu_read_file(path, 4096, &b, NULL), 0);
        mxu_buf_append(&b, "", 1);
        bool ok = strstr(b.data, "memory") && strstr(b.data, "pids");
        mxu_buf_free(&b);
        if (!ok) {
            rmdir(deleg[0]);
            if (getenv("MXU_TEST_REQUIRE_SANDBOX"))
                MXU_TEST_FAIL_("no memory and pids controllers in %s", deleg[0]);
            fprintf(stderr, "  no memory and pids controllers to delegate: skipped\n");
            return;
        }
    }
    pid_t child = fork();
    CHECK(child >= 0);
    if (child == 0) {
        for (int i = 0; i < n; i++) {
            char procs[1300], pid[32];
            snprintf(procs, sizeof(procs), "%s/cgroup.procs", deleg[i]);
            snprintf(pid, sizeof(pid), "%d", (int)getpid());
            int fd = open(procs, O_WRONLY);
            CHECK(fd >= 0);
            CHECK_EQ_INT(mxu_write_all(fd, pid, strlen(pid)), 0);
            close(fd);
            /* Delegate: the directory and the files a child cgroup is made
             * with (v2 adds those of cgroup-v2.rst, "Delegation"). */
            CHECK_EQ_INT(chown(deleg[i], 65534, 65534), 0);
            static const char *const files[] = {"cgroup.procs", "cgroup.subtree_control",
                                                "cgroup.threads"};
            for (int f = 0; f < (n == 1 ? 3 : 1); f++) {
                snprintf(procs, sizeof(procs), "%s/%s", deleg[i], files[f]);
                CHECK_EQ_INT(chown(procs, 65534, 65534), 0);
            }
        }
        xt t;
        memset(&t, 0, sizeof(t));
        gid_t g = 65534;
        CHECK_EQ_INT(setgroups(1, &g), 0);
        CHECK_EQ_INT(setresgid(65534, 65534, 65534), 0);
        CHECK_EQ_INT(setresuid(65534, 65534, 65534), 0);
        /* Changing uid made us non-dumpable (our /proc files root's), which
         * a node started as 65534 would not be. */
        CHECK_EQ_INT(prctl(PR_SET_DUMPABLE, 1, 0, 0, 0), 0);
        if (!xt_init(&t))
            _exit(3);
        const char *argv[] = {t.probe, "report", NULL};
        mxu_exec_spec spec = probe_spec(&t, argv);
        run r;
        run_to_end(&t, &r, &spec);
        if (!report_has(&r, "end"))
            MXU_TEST_FAIL_("incomplete report: %s", r.out.data ? r.out.data : "");
        char v[64];
        CHECK_STR(report_get(&r, "uid", v, sizeof(v)), "65534 65534");
        CHECK(report_has(&r, "status CapEff 0000000000000000"));
        CHECK(report_has(&r, "status CapBnd 0000000000000000"));
        CHECK(report_has(&r, "status Seccomp 2"));
        CHECK(report_has(&r, "status NoNewPrivs 1"));
        CHECK_STR(report_get(&r, "pid", v, sizeof(v)), "1");
        CHECK(report_has(&r, "write / no"));
        CHECK(report_has(&r, "write /tmp yes"));
        CHECK(report_has(&r, "exists /dev/null yes"));
        report_all(&r, "netif ", v, sizeof(v));
        CHECK_STR(v, "lo");
        struct stat st;
        CHECK_EQ_INT(stat("/proc/self/ns/user", &st), 0);
        CHECK(report_get(&r, "ns user", v, sizeof(v)) != NULL);
        CHECK(strtoull(v, NULL, 10) != (unsigned long long)st.st_ino);
        release(&t, &r);
        xt_finish(&t);
        _exit(0);
    }
    int st = 0;
    CHECK_EQ_INT(waitpid(child, &st, 0), child);
    /* Whatever the node left (a failed run: its parent, a v2 leaf), then
     * the delegation itself: nothing may stay behind. */
    for (int i = 0; i < n; i++) {
        rmdir_cgroup_tree(deleg[i]);
        struct stat sb;
        if (stat(deleg[i], &sb) == 0)
            MXU_TEST_FAIL_("cannot remove %s: %s", deleg[i], strerror(errno));
    }
    if (WIFEXITED(st) && WEXITSTATUS(st) == 3)
        MXU_TEST_FAIL_("the sandbox was unavailable to an unprivileged node with delegated "
                       "cgroups");
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

MXU_TESTS(TEST(test_inside), TEST(test_cgroup_limits), TEST(test_oom), TEST(test_fork_bomb),
          TEST(test_syscalls_blocked), TEST(test_seccomp_compact),
          TEST(test_prepare_outside_bundle), TEST(test_leftovers_swept),
          TEST(test_unprivileged_userns))
