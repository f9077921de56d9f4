/*
 * Building runtime c bundles: one compiler run per deploy, in the bundle's
 * temporary folder, producing .mxu/instance linked against the SDK.
 *
 * This runs on a libuv threadpool thread (the deploy's work item), so it may
 * block; it uses posix_spawn and waits for its own child by pid, never
 * reaping anyone else's (the executors watch theirs through pidfds). The
 * compiler is put in its own process group so that a timeout or a closing
 * registry can kill it together with cc1, as and ld, and it gets a small fixed
 * environment (C locale, PATH) so that builds and their messages don't depend
 * on how the node was started.
 */
#include "registry-internal.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>

typedef struct argv_buf {
    char **v;
    size_t n, cap;
} argv_buf;

static void argv_add(argv_buf *a, char *s)
{
    if (a->n + 2 > a->cap) {
        a->cap = a->cap ? a->cap * 2 : 32;
        a->v = mxu_realloc(a->v, a->cap * sizeof(char *));
    }
    a->v[a->n++] = s;
    a->v[a->n] = NULL;
}

static void argv_free(argv_buf *a)
{
    for (size_t i = 0; i < a->n; i++)
        free(a->v[i]);
    free(a->v);
}

/* Append compiler output, keeping at most MXU_BUILD_LOG_MAX bytes: a build
 * that prints megabytes of errors is reported by its first ones. */
static void log_append(mxu_buf *log, const char *data, size_t n, bool *truncated)
{
    size_t room = log->len < MXU_BUILD_LOG_MAX ? MXU_BUILD_LOG_MAX - log->len : 0;
    if (n > room) {
        *truncated = true;
        n = room;
    }
    mxu_buf_append(log, data, n);
}

/* The log goes into JSON and messages: replace bytes that are not UTF-8
 * (a source file in Latin-1, a cut at the size limit) with '?'. */
static void log_sanitize(mxu_buf *log)
{
    size_t i = 0;
    while (i < log->len) {
        unsigned char c = (unsigned char)log->data[i];
        size_t n = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : 4;
        if (c == 0) {
            log->data[i++] = '?';
            continue;
        }
        if (i + n > log->len || !mxu_utf8_valid(log->data + i, n)) {
            log->data[i++] = '?';
            continue;
        }
        i += n;
    }
}

/* The first line of the log that reports an error, for the one-line message. */
static void first_error_line(const mxu_buf *log, char *out, size_t outlen)
{
    out[0] = '\0';
    const char *p = log->data ? log->data : "";
    /* compiler errors say "error"; the linker's first complaint is usually
     * "undefined reference" and its "error" comes last */
    const char *hit = strstr(p, "error");
    const char *undef = strstr(p, "undefined reference");
    if (hit == NULL || (undef && undef < hit))
        hit = undef;
    if (hit == NULL)
        return;
    const char *start = hit;
    while (start > p && start[-1] != '\n')
        start--;
    const char *end = strchr(hit, '\n');
    size_t n = end ? (size_t)(end - start) : strlen(start);
    n = MXU_MIN(n, outlen - 1);
    memcpy(out, start, n);
    out[n] = '\0';
    /* don't end inside a UTF-8 sequence */
    while (n > 0 && ((unsigned char)out[n - 1] & 0x80) && !mxu_utf8_valid(out, n))
        out[--n] = '\0';
}

/* PATH, C locale, TMPDIR and HOME if set: nothing else of the node's
 * environment (secrets, LD_PRELOAD) reaches the compiler. */
static void build_env(argv_buf *env)
{
    const char *p = getenv("PATH");
    argv_add(env, mxu_asprintf("PATH=%s", p ? p : "/usr/local/bin:/usr/bin:/bin"));
    argv_add(env, mxu_strdup("LC_ALL=C"));
    if (getenv("TMPDIR"))
        argv_add(env, mxu_asprintf("TMPDIR=%s", getenv("TMPDIR")));
    if (getenv("HOME"))
        argv_add(env, mxu_asprintf("HOME=%s", getenv("HOME")));
}

static uint64_t now_ms(void)
{
    return mxu_now_ns() / 1000000u;
}

/* Run argv in dir; collect output; wait with a deadline. Returns the wait
 * status, or -1 with err set if the compiler could not be run at all. */
static int run_compiler(char **argv, const char *dir, const reg_build_opts *opts, mxu_buf *log,
                        bool *timed_out, bool *cancelled, mxu_err *err)
{
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) < 0)
        return mxu_err_sys(err, errno, "cannot create a pipe for the compiler");
    _cleanup_close_ int rfd = fds[0];
    _cleanup_close_ int wfd = fds[1];

    argv_buf env = {0};
    build_env(&env);
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    posix_spawn_file_actions_init(&fa);
    posix_spawnattr_init(&attr);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, wfd, 1);
    posix_spawn_file_actions_adddup2(&fa, wfd, 2);
    posix_spawn_file_actions_addchdir_np(&fa, dir);
    /* The loop thread may block or ignore signals (SIGPIPE): the compiler
     * starts with none blocked and the usual ones at their defaults. */
    static const int defaults[] = {SIGPIPE, SIGINT,  SIGTERM, SIGHUP, SIGQUIT,
                                   SIGCHLD, SIGALRM, SIGUSR1, SIGUSR2};
    sigset_t none, def;
    sigemptyset(&none);
    sigemptyset(&def);
    for (size_t i = 0; i < MXU_ARRAY_LEN(defaults); i++)
        sigaddset(&def, defaults[i]);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setsigdefault(&attr, &def);
    posix_spawnattr_setpgroup(&attr, 0);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF |
                                        POSIX_SPAWN_SETPGROUP);
    pid_t pid;
    int rc = posix_spawnp(&pid, argv[0], &fa, &attr, argv, env.v);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    argv_free(&env);
    if (rc != 0)
        return mxu_err_sys(err, rc, "cannot run the C compiler '%s'", argv[0]);
    close(mxu_steal_fd(&wfd));

    uint64_t deadline = now_ms() + opts->timeout_ms;
    bool eof = false, reaped = false, killed = false, truncated = false;
    int status = 0;
    char buf[8192];
    while (!(eof && reaped)) {
        if (!reaped) {
            pid_t r = waitpid(pid, &status, WNOHANG);
            if (r == pid) {
                reaped = true;
            } else if (r < 0 && errno == ECHILD) {
                /* Someone set SIGCHLD to SIG_IGN: the child was reaped for
                 * us and its status is lost. Call it a failure. */
                reaped = true;
                status = 127 << 8;
            }
        }
        bool cancel = opts->cancel && __atomic_load_n(opts->cancel, __ATOMIC_RELAXED);
        if (!killed && (cancel || now_ms() >= deadline)) {
            kill(-pid, SIGKILL);
            killed = true;
            *timed_out = !cancel;
            *cancelled = cancel;
        }
        if (reaped && !eof && !killed) {
            /* The compiler is gone but something it started still holds the
             * pipe: nothing useful can come from it. */
            kill(-pid, SIGKILL);
            killed = true;
        }
        if (eof) {
            if (!reaped)
                usleep(10000);
            continue;
        }
        struct pollfd pfd = {.fd = rfd, .events = POLLIN};
        int pr = poll(&pfd, 1, 50);
        if (pr < 0 && errno != EINTR)
            break;
        if (pr <= 0)
            continue;
        ssize_t n = read(rfd, buf, sizeof(buf));
        if (n < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (n <= 0)
            eof = true;
        else
            log_append(log, buf, (size_t)n, &truncated);
    }
    if (!reaped) { /* only after a poll failure */
        kill(-pid, SIGKILL);
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
            ;
    }
    if (truncated)
        mxu_buf_puts(log, "\n[... compiler output cut at 64 KiB]\n");
    return status;
}

static int sync_output(const char *dir, mxu_err *err)
{
    _cleanup_free_ char *exe = mxu_path_join(dir, MXU_BUNDLE_INSTANCE_PATH);
    _cleanup_free_ char *outdir = mxu_path_join(dir, MXU_BUNDLE_RESERVED_DIR);
    struct stat st;
    if (stat(exe, &st) < 0 || !S_ISREG(st.st_mode) || (st.st_mode & 0111) == 0)
        return mxu_err_set(err, ENOEXEC,
                           "build failed: the compiler succeeded but made no executable %s",
                           MXU_BUNDLE_INSTANCE_PATH);
    _cleanup_close_ int fd = open(exe, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fsync(fd) < 0)
        return mxu_err_sys(err, errno, "cannot sync %s", exe);
    return mxu_fsync_dir(outdir, err);
}

/* Libraries a guest links from the system's static archives (lib<name>.a
 * found by `-static -l<name>`): their undefined symbols beyond themselves
 * are what sdk/guest/ implements or stubs (docs/vm.md lists them). */
static const char *const vm_archive_libs[] = {"jansson", "z", "sodium"};
/* Libraries whose functions the guest C library itself has: not linked. */
static const char *const vm_builtin_libs[] = {"m"};

static bool in_list(const char *const *list, size_t n, const char *lib)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(list[i], lib) == 0)
            return true;
    return false;
}

size_t reg_vm_libs_refused(const mxu_manifest *m, char *buf, size_t cap)
{
    size_t n = 0, used = 0;
    if (cap)
        buf[0] = '\0';
    for (size_t i = 0; i < m->nlibs; i++) {
        if (in_list(vm_archive_libs, MXU_ARRAY_LEN(vm_archive_libs), m->libs[i]) ||
            in_list(vm_builtin_libs, MXU_ARRAY_LEN(vm_builtin_libs), m->libs[i]))
            continue;
        if (used < cap) {
            int k = snprintf(buf + used, cap - used, "%s%s", n ? ", " : "", m->libs[i]);
            used += k > 0 ? (size_t)k : 0;
        }
        n++;
    }
    return n;
}

int reg_build_c(const mxu_manifest *m, const char *dir, const reg_build_opts *opts, mxu_buf *log,
                mxu_err *err)
{
    _cleanup_free_ char *outdir = mxu_path_join(dir, MXU_BUNDLE_RESERVED_DIR);
    if (mkdir(outdir, 0755) < 0 && errno != EEXIST)
        return mxu_err_sys(err, errno, "cannot create %s", outdir);

    /* cc -std=gnu11 -O2 -I<sdk> -o .mxu/instance <sources> <cflags>
     *    <sdk>/libmxufn.a -lpthread -l<libs>
     * or, for the vm executor, a static guest image with no C library but
     * the guest SDK's own (docs/vm.md; the flags match sdk/meson.build's
     * guest_cflags, and guest.ld lays the image out as the VMM expects):
     * cc -std=gnu11 -O2 -I<sdk> <guest flags> -o .mxu/instance <sources>
     *    <cflags> <sdk>/libmxufn-guest.a -l<libs> <sdk>/libmxufn-guest.a -lgcc
     * where <libs> are the allowed archives (the manifest check and the
     * deploy refused the rest); the guest SDK comes again after them, for
     * the C library functions only they need. */
    static const char *const guest_flags[] = {
        "-static",
        "-nostdlib",
        "-no-pie",
        "-fno-pic",
        "-mno-red-zone",
        "-fno-stack-protector",
        "-fcf-protection=none",
        "-fno-asynchronous-unwind-tables",
        "-U_FORTIFY_SOURCE",
        "-Wl,-z,max-page-size=4096",
        "-Wl,-z,noexecstack",
        "-Wl,--build-id=none",
    };
    argv_buf a = {0};
    argv_add(&a, mxu_strdup(opts->cc));
    argv_add(&a, mxu_strdup("-std=gnu11"));
    argv_add(&a, mxu_strdup("-O2"));
    argv_add(&a, mxu_asprintf("-I%s", opts->sdk_include_dir));
    if (opts->vm) {
        for (size_t i = 0; i < MXU_ARRAY_LEN(guest_flags); i++)
            argv_add(&a, mxu_strdup(guest_flags[i]));
        _cleanup_free_ char *ld = mxu_path_join(opts->sdk_lib_dir, "guest.ld");
        argv_add(&a, mxu_asprintf("-Wl,-T,%s", ld));
    }
    argv_add(&a, mxu_strdup("-o"));
    argv_add(&a, mxu_strdup(MXU_BUNDLE_INSTANCE_PATH));
    for (size_t i = 0; i < m->nsources; i++)
        argv_add(&a, mxu_strdup(m->sources[i]));
    for (size_t i = 0; i < m->ncflags; i++)
        argv_add(&a, mxu_strdup(m->cflags[i]));
    if (opts->vm) {
        argv_add(&a, mxu_path_join(opts->sdk_lib_dir, "libmxufn-guest.a"));
        bool any = false;
        for (size_t i = 0; i < m->nlibs; i++) {
            if (in_list(vm_builtin_libs, MXU_ARRAY_LEN(vm_builtin_libs), m->libs[i]))
                continue;
            argv_add(&a, mxu_asprintf("-l%s", m->libs[i]));
            any = true;
        }
        if (any)
            argv_add(&a, mxu_path_join(opts->sdk_lib_dir, "libmxufn-guest.a"));
        argv_add(&a, mxu_strdup("-lgcc"));
    } else {
        argv_add(&a, mxu_path_join(opts->sdk_lib_dir, "libmxufn.a"));
        argv_add(&a, mxu_strdup("-lpthread"));
        for (size_t i = 0; i < m->nlibs; i++)
            argv_add(&a, mxu_asprintf("-l%s", m->libs[i]));
    }

    bool timed_out = false, cancelled = false;
    mxu_err spawn_err = {0};
    int status = run_compiler(a.v, dir, opts, log, &timed_out, &cancelled, &spawn_err);
    argv_free(&a);
    log_sanitize(log);
    if (status < 0 && !timed_out && !cancelled)
        return mxu_err_set(err, ENOEXEC, "build failed: %s", spawn_err.msg);
    char sec[32];
    mxu_format_duration_ms(opts->timeout_ms, sec, sizeof(sec));
    if (cancelled)
        return mxu_err_set(err, ECANCELED, "build cancelled: the registry is closing");
    if (timed_out)
        return mxu_err_set(err, ENOEXEC,
                           "build failed: the compiler took longer than %s and "
                           "was killed",
                           sec);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        char line[400], how[64];
        if (WIFEXITED(status))
            snprintf(how, sizeof(how), "exited with status %d", WEXITSTATUS(status));
        else
            snprintf(how, sizeof(how), "was killed by signal %d",
                     WIFSIGNALED(status) ? WTERMSIG(status) : 0);
        first_error_line(log, line, sizeof(line));
        if (line[0])
            return mxu_err_set(err, ENOEXEC, "build failed (%s %s): %s", opts->cc, how, line);
        return mxu_err_set(err, ENOEXEC, "build failed (%s %s); see the build log", opts->cc, how);
    }
    return sync_output(dir, err);
}
