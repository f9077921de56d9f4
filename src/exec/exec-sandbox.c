/*
 * The sandbox executor: an instance runs in its own namespaces, cgroups and
 * minimal root, as an unprivileged user, without capabilities, under a
 * seccomp allowlist. It runs the same program with the same descriptors,
 * environment and exit reporting as the process executor (the scheduler
 * cannot tell them apart); only the containment differs. What it does and
 * does not isolate is written down in docs/isolation.md.
 *
 * Setup is one linear sequence, in the manner of bubblewrap's main(). The
 * node (the parent):
 *   P1. validates the spawn request and finds the program inside the sandbox;
 *   P2. makes the instance's cgroups (memory, pids, cpu) and opens them;
 *   P3. clones the child with new pid, mount, network, ipc, uts and cgroup
 *       namespaces in one call (plus a user namespace when the node has no
 *       privileges of its own), and waits until it has exec'd or failed.
 * The child, between clone and execve (async-signal-safe calls only, every
 * failure reported on a close-on-exec pipe):
 *   C1.  resets signals, takes its own process group, dies with the node;
 *   C2.  (user namespace) maps its one uid and gid;
 *   C3.  joins its cgroups — before it allocates anything the limits should
 *        count;
 *   C4.  makes every mount private, so nothing below reaches the host, and
 *        builds the new root on a small tmpfs: /usr (and /bin, /lib*, /sbin,
 *        as links or read-only binds like the host has them), the bundle
 *        read-only at /fn, a generated /etc, a size-limited private /tmp, a
 *        minimal /dev, its own /proc with /proc/sys read-only;
 *   C5.  pivot_root into it and detaches the host's tree; remounts / read-only;
 *   C6.  sets its host name and brings up loopback, the only network it has;
 *   C7.  sets rlimits and moves the descriptors it was given onto 0..3,
 *        closing every other one;
 *   C8.  drops privileges: bounding set, securebits, groups, gid, uid (to the
 *        sandbox user), every capability set;
 *   C9.  re-arms the parent-death signal (a uid change clears it) and checks
 *        the node is still there;
 *   C10. no_new_privs, then the seccomp filter — last, so that everything
 *        above may use what the filter forbids;
 *   C11. execve.
 * Every mount lives in the child's mount namespace: when its last process
 * dies the kernel drops them all, so a node that is killed leaves no mount
 * behind. The child is pid 1 of its pid namespace: when it dies, the kernel
 * kills everything it started. Its cgroups are removed when it has been
 * reaped, and by the next node with the same id if this one was killed.
 */
#include "exec-sandbox.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <linux/seccomp.h>
#include <linux/capability.h>
#include <net/if.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef SECBIT_NOROOT
#include <linux/securebits.h>
#endif

/* Where things are inside the sandbox. */
#define SBX_BUNDLE   "/fn"
#define SBX_UID      65534u /* nobody: the host's own "owns nothing" user */
#define SBX_GID      65534u
#define SBX_HOSTNAME "mxu"
/* Defaults, overridable per node with MXU_SANDBOX_PIDS / MXU_SANDBOX_CPUS. */
#define SBX_PIDS_DEFAULT  256u
#define SBX_CPU_PERIOD_US 100000u

/* The system directories a program needs, mirrored from the host: a symlink
 * on the host (merged /usr) is the same symlink inside; a directory is bound
 * read-only. */
static const char *const sys_dirs[] = {"bin", "sbin", "lib", "lib32", "lib64", "libx32"};
_Static_assert(MXU_ARRAY_LEN(sys_dirs) == SBX_NSYS, "SBX_NSYS");

/* Why the sandbox cannot run units on this machine (NULL once it can). */
static char unavailable_buf[512] = "not probed yet";
static const char *unavailable = unavailable_buf;

const char *mxu_sandbox_unavailable(void)
{
    return unavailable;
}

/* The generated /etc: the sandbox user and localhost, nothing of the host's. */
static const char etc_passwd[] = "root:x:0:0:root:/:/bin/false\n"
                                 "nobody:x:65534:65534:mxu sandbox:/tmp:/bin/false\n";
static const char etc_group[] = "root:x:0:\nnogroup:x:65534:\n";
static const char etc_hosts[] = "127.0.0.1\tlocalhost " SBX_HOSTNAME "\n::1\tlocalhost\n";
static const char etc_nsswitch[] = "passwd: files\ngroup: files\nhosts: files\n";

/* ---- the child ------------------------------------------------------------------- */

/* clang-format off */
#define STEPS(X)                                                              \
    X(SIGNALS, "signals")                                                     \
    X(PGID, "setpgid")                                                        \
    X(PDEATH, "prctl(PR_SET_PDEATHSIG)")                                      \
    X(NODE_GONE, "the node went away")                                        \
    X(IDMAP, "writing the user namespace's id maps")                          \
    X(CGROUP, "joining its cgroup")                                           \
    X(PRIVATE, "making mounts private")                                       \
    X(OPEN_BUNDLE, "opening the bundle")                                      \
    X(ROOT, "mounting the new root")                                          \
    X(MKDIR, "creating mount points")                                         \
    X(BIND_SYS, "binding /usr and /lib*")                                     \
    X(BIND_BUNDLE, "binding the bundle at " SBX_BUNDLE)                       \
    X(TMP, "mounting /tmp")                                                   \
    X(DEV, "setting up /dev")                                                 \
    X(PROC, "mounting /proc")                                                 \
    X(ETC, "writing /etc")                                                    \
    X(PIVOT, "pivot_root")                                                    \
    X(RDONLY_ROOT, "remounting / read-only")                                  \
    X(HOSTNAME, "sethostname")                                                \
    X(LOOPBACK, "bringing up loopback")                                       \
    X(RLIMIT, "setrlimit")                                                    \
    X(DUP, "dup2")                                                            \
    X(DEVNULL, "open /dev/null")                                              \
    X(CHDIR, "chdir " SBX_BUNDLE)                                             \
    X(CAPS, "dropping capabilities")                                          \
    X(SETID, "setting uid/gid")                                               \
    X(NNP, "no_new_privs")                                                    \
    X(SECCOMP, "seccomp")                                                     \
    X(EXEC, "execve")
/* clang-format on */
#define STEP_ENUM(name, text) STEP_##name,
#define STEP_TEXT(name, text) text,
enum { STEPS(STEP_ENUM) STEP_N_ };
static const char *const step_names[] = {STEPS(STEP_TEXT)};

const char *sbx_step_name(int step)
{
    return step >= 0 && step < STEP_N_ ? step_names[step] : "?";
}

int sbx_clone_flags(const mxu_sandbox *sb)
{
    return CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS |
           CLONE_NEWCGROUP | (sb->userns ? CLONE_NEWUSER : 0);
}

void __attribute__((noreturn)) sbx_child_fail(const sbx_plan *pl, int step)
{
    sbx_failure f = {step, errno};
    ssize_t n = write(pl->report_fd, &f, sizeof(f));
    MXU_UNUSED(n);
    _exit(127);
}

#define TRY(step, call)                      \
    do {                                     \
        if ((call) < 0)                      \
            sbx_child_fail(pl, STEP_##step); \
    } while (0)

/* The node holds the read end of the report pipe: if it has died, the pipe
 * is broken. (getppid() cannot tell: in a new pid namespace it is 0.) */
bool sbx_node_alive(const sbx_plan *pl)
{
    struct pollfd pfd = {pl->report_fd, 0, 0};
    return poll(&pfd, 1, 0) == 0 || !(pfd.revents & (POLLERR | POLLHUP));
}

static int write_file_at(int dirfd, const char *path, const char *data, mode_t mode)
{
    int fd = openat(dirfd, path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    if (fd < 0)
        return -1;
    size_t len = strlen(data);
    ssize_t n = write(fd, data, len);
    close(fd);
    return n == (ssize_t)len ? 0 : -1;
}

/* Bind `src` at `dst` (created as a directory or an empty file like `src`)
 * and make it, and everything below it, read-only, nosuid and nodev. */
static int bind_ro(const char *src, const char *dst, bool is_dir, bool allow_dev)
{
    if (is_dir) {
        if (mkdir(dst, 0755) < 0 && errno != EEXIST)
            return -1;
    } else {
        int fd = open(dst, O_WRONLY | O_CREAT | O_CLOEXEC, 0444);
        if (fd < 0)
            return -1;
        close(fd);
    }
    if (mount(src, dst, NULL, MS_BIND | MS_REC, NULL) < 0)
        return -1;
    struct mount_attr attr = {.attr_set = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID |
                                          (allow_dev ? 0 : MOUNT_ATTR_NODEV)};
    if (mount_setattr(AT_FDCWD, dst, AT_RECURSIVE, &attr, sizeof(attr)) < 0) {
        /* Kernels before 5.12: the top mount at least. */
        unsigned long fl =
            MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | (allow_dev ? 0 : MS_NODEV);
        return mount(NULL, dst, NULL, fl, NULL);
    }
    return 0;
}

void sbx_child_setup(sbx_plan *pl)
{
    const mxu_sandbox *sb = pl->sb;

    /* C1. Lift the report pipe above the fds we will fill; default signals
     *     (the node ignores SIGPIPE and may block some); our own process
     *     group (the node kills -pgid); die with the node. */
    int report = fcntl(pl->report_fd, F_DUPFD_CLOEXEC, 10);
    if (report < 0)
        _exit(127);
    pl->report_fd = report;
    mxu_child_default_signals();
    TRY(PGID, setpgid(0, 0));
    TRY(PDEATH, prctl(PR_SET_PDEATHSIG, SIGKILL));
    if (!sbx_node_alive(pl))
        _exit(127);

    /* C2. In a user namespace we are nobody until our one id is mapped; a
     *     process may map its own uid without privileges. setgroups must be
     *     denied before an unprivileged gid_map. */
    if (sb->userns) {
        TRY(IDMAP, write_file_at(AT_FDCWD, "/proc/self/setgroups", "deny", 0));
        TRY(IDMAP, write_file_at(AT_FDCWD, "/proc/self/uid_map", sb->uid_map, 0));
        TRY(IDMAP, write_file_at(AT_FDCWD, "/proc/self/gid_map", sb->gid_map, 0));
    }

    /* C3. Cgroups. The node opened cgroup.procs; "0" means the writer. */
    for (int i = 0; i < SBX_CG_N; i++)
        if (pl->cg_fd[i] >= 0)
            TRY(CGROUP, write(pl->cg_fd[i], "0", 1));

    /* C4. The new root. First: no mount event of ours may propagate to the
     *     host's namespace (and none of the host's into ours). */
    TRY(PRIVATE, mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL));
    /* The bundle may live under /tmp, which the new root is about to cover:
     * hold it by descriptor and bind it through /proc/self/fd. */
    int bundle = open(pl->bundle, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (bundle < 0)
        sbx_child_fail(pl, STEP_OPEN_BUNDLE);
    char bundle_src[64];
    snprintf(bundle_src, sizeof(bundle_src), "/proc/self/fd/%d", bundle);
    /* The root is a tiny tmpfs mounted over /tmp in our namespace only. */
    TRY(ROOT,
        mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "size=256k,nr_inodes=512,mode=0755"));
    TRY(ROOT, chdir("/tmp"));
    static const char *const dirs[] = {"usr", "fn", "tmp", "dev", "proc", "etc"};
    for (size_t i = 0; i < MXU_ARRAY_LEN(dirs); i++)
        TRY(MKDIR, mkdir(dirs[i], 0755));
    TRY(BIND_SYS, bind_ro("/usr", "usr", true, false));
    for (size_t i = 0; i < MXU_ARRAY_LEN(sys_dirs); i++) {
        char host[32];
        snprintf(host, sizeof(host), "/%s", sys_dirs[i]);
        if (sb->sys_kind[i] == SYS_LINK)
            TRY(MKDIR, symlink(sb->sys_link[i], sys_dirs[i]));
        else if (sb->sys_kind[i] == SYS_DIR)
            TRY(BIND_SYS, bind_ro(host, sys_dirs[i], true, false));
    }
    TRY(BIND_BUNDLE, bind_ro(bundle_src, "fn", true, false));
    close(bundle);
    /* /tmp: private, size-limited (its pages count against the memory cgroup too). */
    TRY(TMP, mount("tmpfs", "tmp", "tmpfs", MS_NOSUID | MS_NODEV, pl->tmp_opts));
    /* /dev: a read-only tmpfs with the harmless devices bound from the host. */
    TRY(DEV,
        mount("tmpfs", "dev", "tmpfs", MS_NOSUID | MS_NOEXEC, "size=16k,nr_inodes=64,mode=0755"));
    static const char *const devs[] = {"null", "zero", "full", "random", "urandom"};
    for (size_t i = 0; i < MXU_ARRAY_LEN(devs); i++) {
        char src[32], dst[32];
        snprintf(src, sizeof(src), "/dev/%s", devs[i]);
        snprintf(dst, sizeof(dst), "dev/%s", devs[i]);
        int fd = open(dst, O_WRONLY | O_CREAT | O_CLOEXEC, 0666);
        if (fd < 0)
            sbx_child_fail(pl, STEP_DEV);
        close(fd);
        TRY(DEV, mount(src, dst, NULL, MS_BIND, NULL));
        TRY(DEV, mount(NULL, dst, NULL, MS_REMOUNT | MS_BIND | MS_NOSUID | MS_NOEXEC, NULL));
    }
    TRY(DEV, symlink("/proc/self/fd", "dev/fd"));
    TRY(DEV, symlink("/proc/self/fd/0", "dev/stdin"));
    TRY(DEV, symlink("/proc/self/fd/1", "dev/stdout"));
    TRY(DEV, symlink("/proc/self/fd/2", "dev/stderr"));
    TRY(DEV,
        mount(NULL, "dev", NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NOEXEC, NULL));
    /* /proc of its own pid namespace; what it could change system-wide is
     * read-only on top (it has no capability to write it anyway). */
    TRY(PROC, mount("proc", "proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL));
    static const char *const proc_ro[] = {"proc/sys", "proc/sysrq-trigger", "proc/irq", "proc/bus"};
    for (size_t i = 0; i < MXU_ARRAY_LEN(proc_ro); i++) {
        struct stat st;
        if (lstat(proc_ro[i], &st) < 0)
            continue;
        TRY(PROC, mount(proc_ro[i], proc_ro[i], NULL, MS_BIND | MS_REC, NULL));
        TRY(PROC, mount(NULL, proc_ro[i], NULL,
                        MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL));
    }
    /* /etc: generated, plus two harmless host pieces that programs need to
     * start quickly and find their tools (library cache, alternatives links). */
    TRY(ETC, write_file_at(AT_FDCWD, "etc/passwd", etc_passwd, 0644));
    TRY(ETC, write_file_at(AT_FDCWD, "etc/group", etc_group, 0644));
    TRY(ETC, write_file_at(AT_FDCWD, "etc/hosts", etc_hosts, 0644));
    TRY(ETC, write_file_at(AT_FDCWD, "etc/nsswitch.conf", etc_nsswitch, 0644));
    TRY(ETC, write_file_at(AT_FDCWD, "etc/hostname", SBX_HOSTNAME "\n", 0644));
    TRY(ETC, write_file_at(AT_FDCWD, "etc/resolv.conf", "", 0644));
    if (sb->have_ldcache)
        TRY(ETC, bind_ro("/etc/ld.so.cache", "etc/ld.so.cache", false, false));
    if (sb->have_alternatives)
        TRY(ETC, bind_ro("/etc/alternatives", "etc/alternatives", true, false));

    /* C5. Enter the new root; the old one is stacked under it by
     *     pivot_root(".", ".") and detached at once. Then / itself goes
     *     read-only: only /tmp is writable. */
    TRY(PIVOT, syscall(SYS_pivot_root, ".", "."));
    TRY(PIVOT, umount2(".", MNT_DETACH));
    TRY(PIVOT, chdir("/"));
    TRY(RDONLY_ROOT,
        mount(NULL, "/", NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV, NULL));

    /* C6. Its own host name, and loopback up: the only interface in its
     *     network namespace, so it can talk to itself and nothing else. */
    TRY(HOSTNAME, sethostname(SBX_HOSTNAME, strlen(SBX_HOSTNAME)));
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s < 0)
        sbx_child_fail(pl, STEP_LOOPBACK);
    struct ifreq ifr;
    memset(&ifr, 0, sizeof(ifr));
    memcpy(ifr.ifr_name, "lo", 3);
    ifr.ifr_flags = IFF_UP | IFF_RUNNING | IFF_LOOPBACK;
    TRY(LOOPBACK, ioctl(s, SIOCSIFFLAGS, &ifr));
    close(s);
}

/* The part of the sequence that depends on what is run: C7 to C11. */
void __attribute__((noreturn)) sbx_child_finish(sbx_plan *pl)
{
    const mxu_sandbox *sb = pl->sb;

    /* C7. Limits (memory and processes are the cgroup's job), then the
     *     descriptors: sources above 10 first so none is clobbered, dup2 onto
     *     0..4 (dup2 clears close-on-exec), close everything else but the
     *     report pipe, which goes at execve. */
    struct rlimit zero = {0, 0};
    TRY(RLIMIT, setrlimit(RLIMIT_CORE, &zero));
    TRY(RLIMIT, setrlimit(RLIMIT_NOFILE, &pl->nofile));
    if (pl->set_cpu)
        TRY(RLIMIT, setrlimit(RLIMIT_CPU, &pl->cpu));
    int fstep = mxu_child_place_fds(pl->src, SBX_FDS, pl->report_fd);
    if (fstep)
        sbx_child_fail(pl, fstep == MXU_CHILD_FDS_DEVNULL ? STEP_DEVNULL : STEP_DUP);
    TRY(CHDIR, chdir(SBX_BUNDLE));

    /* C8. Privileges. The bounding set and securebits need CAP_SETPCAP, so
     *     they go first; then groups, gid, uid (setuid away from root clears
     *     the permitted and effective sets); then every set explicitly,
     *     ambient included, so nothing is left to regain at execve. A spare
     *     of a root node finds the bounding set already empty (the zygote
     *     emptied its own): reading is cheap, each drop is not (it commits
     *     new credentials). */
    for (int cap = 0; cap <= sb->last_cap; cap++) {
        int in_set = prctl(PR_CAPBSET_READ, cap, 0, 0, 0);
        if (in_set < 0 && errno != EINVAL)
            sbx_child_fail(pl, STEP_CAPS);
        if (in_set > 0 && prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0)
            sbx_child_fail(pl, STEP_CAPS);
    }
    TRY(CAPS, prctl(PR_SET_SECUREBITS,
                    SECBIT_NOROOT | SECBIT_NOROOT_LOCKED | SECBIT_NO_SETUID_FIXUP |
                        SECBIT_NO_SETUID_FIXUP_LOCKED | SECBIT_KEEP_CAPS_LOCKED |
                        SECBIT_NO_CAP_AMBIENT_RAISE | SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED,
                    0, 0, 0));
    if (!sb->userns) {
        gid_t g = SBX_GID;
        TRY(SETID, setgroups(1, &g));
    }
    TRY(SETID, setresgid(SBX_GID, SBX_GID, SBX_GID));
    TRY(SETID, setresuid(SBX_UID, SBX_UID, SBX_UID));
    struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct data[2];
    memset(data, 0, sizeof(data));
    TRY(CAPS, syscall(SYS_capset, &hdr, data));
    TRY(CAPS, prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0));

    /* C9. Changing credentials cleared the parent-death signal. */
    TRY(PDEATH, prctl(PR_SET_PDEATHSIG, SIGKILL));
    if (!sbx_node_alive(pl))
        _exit(127);

    /* C10. No privileges through execve ever again (setuid binaries, file
     *      capabilities), which also lets an unprivileged process install
     *      the filter; the filter is the last thing before execve, which it
     *      allows. */
    TRY(NNP, prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0));
    TRY(SECCOMP, prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &sb->prog));

    /* C11. */
    execve(pl->exe, (char *const *)pl->argv, (char *const *)pl->envp);
    sbx_child_fail(pl, STEP_EXEC);
}

static void __attribute__((noreturn)) child_run(void *arg)
{
    sbx_plan *pl = arg;
    sbx_child_setup(pl);
    sbx_child_finish(pl);
}

/* ---- the node's side ---------------------------------------------------------------- */

/* Per process: which cgroup is its. */
typedef struct sbx_proc {
    mxu_sandbox *sb;
    uint64_t id;
    uint64_t memory;
} sbx_proc;

static void retry_pending(uv_timer_t *t)
{
    mxu_sandbox *sb = t->data;
    size_t keep = 0;
    for (size_t i = 0; i < sb->npending; i++)
        if (sbx_cg_remove(&sb->cg, sb->pending[i]) < 0)
            sb->pending[keep++] = sb->pending[i];
    sb->npending = keep;
    if (keep == 0)
        uv_timer_stop(t);
}

static void sbx_on_reaped(mxu_proc *p)
{
    sbx_proc *sp = p->xdata;
    mxu_sandbox *sb = sp->sb;
    uint64_t peak = 0;
    bool oom = false;
    sbx_cg_exit_info(&sb->cg, sp->id, &oom, &peak);
    p->exit.oom = oom && p->exit.signaled && p->exit.signal == SIGKILL;
    p->exit.memory_limit = sp->memory;
    if (peak > p->exit.usage.peak_bytes)
        p->exit.usage.peak_bytes = peak;
    sbx_cg_release(sb, sp->id);
    sp->id = 0;
}

/* The pid namespace died with its init; tasks still dying keep a cgroup busy
 * for a moment: retry from a timer. */
void sbx_cg_release(mxu_sandbox *sb, uint64_t id)
{
    if (sbx_cg_remove(&sb->cg, id) == 0)
        return;
    if (sb->npending == sb->cap_pending) {
        sb->cap_pending = sb->cap_pending ? sb->cap_pending * 2 : 16;
        sb->pending = mxu_realloc(sb->pending, sb->cap_pending * sizeof(uint64_t));
    }
    sb->pending[sb->npending++] = id;
    if (sb->retry_init && !uv_is_active((uv_handle_t *)&sb->retry))
        uv_timer_start(&sb->retry, retry_pending, 20, 50);
}

static void sbx_on_free(mxu_proc *p)
{
    free(p->xdata);
    p->xdata = NULL;
}

/* The program's path inside the sandbox: the bundle is at /fn; system
 * directories are where they are on the host. */
static int inside_path(const mxu_exec_spec *spec, char *out, size_t outlen)
{
    const char *exe = spec->argv[0];
    size_t bl = spec->cwd ? strlen(spec->cwd) : 0;
    if (bl && strncmp(exe, spec->cwd, bl) == 0 && exe[bl] == '/') {
        snprintf(out, outlen, "%s%s", SBX_BUNDLE, exe + bl);
        return 0;
    }
    static const char *const visible[] = {"/usr/", "/bin/", "/sbin/", "/lib/", "/lib64/"};
    for (size_t i = 0; i < MXU_ARRAY_LEN(visible); i++) {
        if (strncmp(exe, visible[i], strlen(visible[i])) == 0) {
            snprintf(out, outlen, "%s", exe);
            return 0;
        }
    }
    return -1;
}

static int sandbox_check(mxu_exec *ex, const mxu_exec_spec *spec, mxu_err *err)
{
    mxu_sandbox *sb = ex->sandbox;
    if (sb == NULL || !sb->ok)
        return mxu_err_set(err, ENOTSUP,
                           "%s: the sandbox executor is not available on this node: %s",
                           spec->label, unavailable ? unavailable : "?");
    if (spec->argv == NULL || spec->argv[0] == NULL || spec->argv[0][0] != '/')
        return mxu_err_set(err, EINVAL, "%s: program path must be absolute", spec->label);
    if (spec->cwd == NULL || spec->cwd[0] != '/')
        return mxu_err_set(err, EINVAL, "%s: the sandbox needs the bundle folder", spec->label);
    char inside[PATH_MAX];
    if (inside_path(spec, inside, sizeof(inside)) < 0)
        return mxu_err_set(err, EACCES,
                           "%s: %s is neither in the function's bundle nor in /usr, /bin or "
                           "/lib: the sandbox cannot see it",
                           spec->label, spec->argv[0]);
    struct stat st;
    if (stat(spec->argv[0], &st) < 0)
        return mxu_err_sys(err, errno, "%s: cannot run %s", spec->label, spec->argv[0]);
    if (!S_ISREG(st.st_mode) || !(st.st_mode & 0001))
        return mxu_err_set(err, EACCES,
                           "%s: %s is not a file everyone may execute (the sandbox runs it as "
                           "an unprivileged user)",
                           spec->label, spec->argv[0]);
    return 0;
}

static sbx_unit *unit_find(mxu_sandbox *sb, const char *label);
static uint64_t spec_memory(const mxu_exec_spec *spec);
static void unit_refill(mxu_sandbox *sb, sbx_unit *u);

/* Check the unit can run here, and start keeping a spare sandbox ready for
 * it, so that even its first cold start finds one. */
static int sandbox_prepare(mxu_exec *ex, const mxu_exec_spec *spec, mxu_err *err)
{
    if (sandbox_check(ex, spec, err) < 0)
        return -1;
    mxu_sandbox *sb = ex->sandbox;
    /* The zygote is forked when the first sandbox unit appears, so a node
     * that never uses the sandbox has none. */
    if (sb->spares > 0 && !sb->zygote_tried) {
        sb->zygote_tried = true;
        if (sbx_zygote_start(sb) < 0)
            mxu_warn("sandbox: no zygote (%s): sandboxes start without spares", strerror(errno));
    }
    sbx_unit *u = unit_find(sb, spec->label);
    if (u == NULL) {
        u = mxu_calloc(1, sizeof(*u));
        u->label = mxu_strdup(spec->label);
        u->bundle = mxu_strdup(spec->cwd);
        u->memory = spec_memory(spec);
        u->next = sb->units;
        sb->units = u;
    }
    u->refs++;
    u->used_ms = uv_now(ex->loop);
    unit_refill(sb, u);
    return 0;
}

static sbx_unit *unit_find(mxu_sandbox *sb, const char *label)
{
    for (sbx_unit *u = sb->units; u; u = u->next)
        if (strcmp(u->label, label) == 0)
            return u;
    return NULL;
}

static uint64_t spec_memory(const mxu_exec_spec *spec)
{
    return spec->memory_bytes ? spec->memory_bytes : (128u << 20);
}

/* Keep the unit's spares ready (when the node has a zygote), as far as the
 * node's memory budget has room for them; a unit it leaves short is
 * refilled after its next spawn. */
static void unit_refill(mxu_sandbox *sb, sbx_unit *u)
{
    while (sb->zygote_fd >= 0 && u->nspare < sb->spares) {
        if (!mxu_exec_standby_fits(sb->ex, SBX_SPARE_CHARGE))
            return;
        mxu_err err = {0};
        if (sbx_spare_make(sb, u->bundle, u->memory, &u->spare[u->nspare], &err) < 0) {
            mxu_warn("sandbox: %s: cannot prepare a spare sandbox: %s", u->label, err.msg);
            memset(&u->spare[u->nspare], 0, sizeof(u->spare[0]));
            return;
        }
        u->nspare++;
    }
}

/* Kill every spare of the unit. */
static void unit_discard_spares(mxu_sandbox *sb, sbx_unit *u)
{
    for (unsigned i = 0; i < u->nspare; i++)
        sbx_spare_discard(sb, &u->spare[i]);
    u->nspare = 0;
}

/* Refill every unit whose spares were used. */
static void refill_all(uv_timer_t *t)
{
    mxu_sandbox *sb = t->data;
    for (sbx_unit *u = sb->units; u; u = u->next)
        unit_refill(sb, u);
}

/* The same descriptors the process executor gives: two pipes for the channel
 * (the host reads ch_host[0] and writes ch_host[1]; the instance reads
 * ch_child[0], its fd 3, and writes ch_child[1], fd 4), pipes for stdio and
 * stderr, where [0] stays with the host. */
typedef struct host_fds {
    int ch_host[2], ch_child[2], in[2], outp[2], errp[2];
    const char **envp; /* the spec's plus MXU_CHANNEL_OUT_FD, with a channel */
} host_fds;

static void host_fds_close(host_fds *h)
{
    free(h->envp);
    h->envp = NULL;
    for (int i = 0; i < 2; i++) {
        mxu_closep(&h->ch_host[i]);
        mxu_closep(&h->ch_child[i]);
        mxu_closep(&h->in[i]);
        mxu_closep(&h->outp[i]);
        mxu_closep(&h->errp[i]);
    }
}

static int host_fds_make(const mxu_exec_spec *spec, host_fds *h, mxu_err *err)
{
    *h = (host_fds){{-1, -1}, {-1, -1}, {-1, -1}, {-1, -1}, {-1, -1}, NULL};
    if (spec->channel) {
        if (mxu_exec_channel_pipes(h->ch_host, h->ch_child, spec->label, err) < 0)
            return -1;
        h->envp = mxu_exec_channel_env(spec->envp);
    }
    if (spec->stdio) {
        if (pipe2(h->in, O_CLOEXEC) < 0 || pipe2(h->outp, O_CLOEXEC) < 0)
            return mxu_err_sys(err, errno, "%s: pipe", spec->label);
        int t = h->in[0];
        h->in[0] = h->in[1];
        h->in[1] = t;
    }
    if (pipe2(h->errp, O_CLOEXEC) < 0)
        return mxu_err_sys(err, errno, "%s: pipe", spec->label);
    return 0;
}

/* The finish half of a plan (C7..C11) from a spawn request. */
static void plan_finish(sbx_plan *plan, const mxu_exec_spec *spec, const char *exe,
                        const host_fds *h)
{
    plan->exe = exe;
    plan->argv = spec->argv;
    plan->envp = h->envp ? h->envp : spec->envp;
    plan->set_cpu = spec->cpu_limit_s > 0;
    /* A warm instance's stdout is not its response: it joins stderr (the log). */
    plan->src[0] = h->in[1];
    plan->src[1] = spec->stdio ? h->outp[1] : h->errp[1];
    plan->src[2] = h->errp[1];
    plan->src[3] = h->ch_child[0];
    plan->src[4] = h->ch_child[1];
    mxu_exec_clamp_limit(RLIMIT_NOFILE, spec->max_open_files ? spec->max_open_files : 1024,
                         &plan->nofile);
    /* CPU: SIGXCPU at the soft limit, SIGKILL a second later. */
    mxu_exec_clamp_limit(RLIMIT_CPU, spec->cpu_limit_s + 1, &plan->cpu);
    if (plan->cpu.rlim_cur > spec->cpu_limit_s && spec->cpu_limit_s > 0)
        plan->cpu.rlim_cur = spec->cpu_limit_s;
}

/* Start a sandbox the slow way: the node clones it and waits through the
 * whole setup (namespaces, cgroup join, mounts). Returns its pid. */
static pid_t spawn_direct(mxu_sandbox *sb, const mxu_exec_spec *spec, sbx_plan *plan,
                          uint64_t *cg_id, mxu_err *err)
{
    int report[2] = {-1, -1};
    int cg_fd[SBX_CG_N] = {-1, -1, -1};
    pid_t pid = -1;
    sbx_limits lim = sb->defaults;
    lim.memory_bytes = spec_memory(spec);
    uint64_t id = ++sb->next_id;
    if (sbx_cg_create(&sb->cg, id, &lim, cg_fd, err) < 0) {
        mxu_err_prefix(err, "%s: sandbox", spec->label);
        return -1;
    }
    if (pipe2(report, O_CLOEXEC) < 0) {
        mxu_err_sys(err, errno, "%s: pipe", spec->label);
        goto out;
    }
    memcpy(plan->cg_fd, cg_fd, sizeof(cg_fd));
    plan->report_fd = report[1];
    pid = mxu_exec_start_child(child_run, plan, sbx_clone_flags(sb));
    if (pid < 0) {
        mxu_err_sys(err, errno, "%s: cannot create a sandboxed process", spec->label);
        goto out;
    }
    close(report[1]);
    report[1] = -1;
    sbx_failure f;
    ssize_t n;
    do {
        n = read(report[0], &f, sizeof(f));
    } while (n < 0 && errno == EINTR);
    if (n == (ssize_t)sizeof(f)) {
        int st;
        while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
            ;
        mxu_err_sys(err, f.err, "%s: starting %s in the sandbox failed at %s", spec->label,
                    plan->exe, sbx_step_name(f.step));
        pid = -1;
    }
out:
    mxu_closep(&report[0]);
    mxu_closep(&report[1]);
    for (int i = 0; i < SBX_CG_N; i++)
        mxu_closep(&cg_fd[i]);
    if (pid < 0)
        sbx_cg_release(sb, id);
    else
        *cg_id = id;
    return pid;
}

/* Start it from a spare: the unit's oldest one if there is, else a fresh
 * one (which the node then waits for). A ready spare that fails (it may
 * have been killed while it waited) is replaced once. */
static pid_t spawn_spare(mxu_sandbox *sb, const mxu_exec_spec *spec, sbx_plan *plan,
                         uint64_t *cg_id, mxu_err *err)
{
    sbx_unit *u = unit_find(sb, spec->label);
    if (u)
        u->used_ms = uv_now(sb->ex->loop);
    for (int attempt = 0; attempt < 2; attempt++) {
        sbx_spare sp = {0};
        bool pooled = false;
        if (u && u->nspare > 0 && strcmp(u->bundle, spec->cwd) == 0 &&
            u->memory == spec_memory(spec)) {
            sp = u->spare[0];
            u->nspare--;
            memmove(&u->spare[0], &u->spare[1], u->nspare * sizeof(u->spare[0]));
            memset(&u->spare[u->nspare], 0, sizeof(u->spare[0]));
            pooled = true;
        } else if (sbx_spare_make(sb, spec->cwd, spec_memory(spec), &sp, err) < 0) {
            return -1;
        }
        if (sbx_spare_go(sb, &sp, plan, err) == 0) {
            *cg_id = sp.cg_id;
            return sp.pid;
        }
        mxu_err_prefix(err, "%s: starting %s in the sandbox", spec->label, plan->exe);
        if (!pooled)
            return -1;
    }
    return -1;
}

static int sandbox_spawn(mxu_exec *ex, const mxu_exec_spec *spec, mxu_proc_exit_cb exit_cb,
                         void *ud, mxu_proc **out, mxu_err *err)
{
    mxu_sandbox *sb = ex->sandbox;
    host_fds h;
    int rc = -1;
    uint64_t id = 0;
    mxu_proc *p = NULL;

    /* P1. Validate; find the program inside. */
    if (sandbox_check(ex, spec, err) < 0)
        return -1;
    char exe[PATH_MAX];
    inside_path(spec, exe, sizeof(exe));
    if (host_fds_make(spec, &h, err) < 0)
        goto out;

    /* P2, P3. Cgroups, then the child: from a spare the zygote has set up
     * ahead (its cgroup, namespaces and root are ready: only C7..C11 are
     * left), else cloned here. */
    sbx_plan plan = {.sb = sb, .bundle = spec->cwd, .report_fd = -1};
    uint64_t tmp = MXU_MIN(spec_memory(spec) / 2, 256ull << 20);
    snprintf(plan.tmp_opts, sizeof(plan.tmp_opts), "size=%llu,nr_inodes=4096,mode=1777",
             (unsigned long long)tmp);
    plan_finish(&plan, spec, exe, &h);
    pid_t pid = sb->zygote_fd >= 0 ? spawn_spare(sb, spec, &plan, &id, err)
                                   : spawn_direct(sb, spec, &plan, &id, err);
    if (pid < 0)
        goto out;

    p = mxu_calloc(1, sizeof(*p));
    p->ops = &mxu_exec_sandbox_ops;
    p->pid = pid;
    p->pidfd = -1;
    p->exit_cb = exit_cb;
    p->ud = ud;
    p->on_reaped = sbx_on_reaped;
    p->on_free = sbx_on_free;
    sbx_proc *sp = mxu_calloc(1, sizeof(*sp));
    *sp = (sbx_proc){.sb = sb, .id = id, .memory = spec_memory(spec)};
    p->xdata = sp;
    id = 0; /* the proc owns the cgroup now */
    p->fds.channel = mxu_steal_fd(&h.ch_host[0]);
    p->fds.channel_w = mxu_steal_fd(&h.ch_host[1]);
    p->fds.channel_split = true;
    p->fds.stdin_w = mxu_steal_fd(&h.in[0]);
    p->fds.stdout_r = mxu_steal_fd(&h.outp[0]);
    p->fds.stderr_r = mxu_steal_fd(&h.errp[0]);
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
    /* The next cold start of this unit finds a spare ready: made a moment
     * later, so that this one's start does not wait for it. */
    if (sb->zygote_fd >= 0 && sb->spares && !uv_is_active((uv_handle_t *)&sb->refill))
        uv_timer_start(&sb->refill, refill_all, 5, 0);
    goto out;

out_kill:
    kill(pid, SIGKILL);
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
        id = sp->id;
        free(sp);
        free(p);
    }
out:
    host_fds_close(&h);
    if (id)
        sbx_cg_release(sb, id);
    return rc;
}

static void sandbox_kill(mxu_proc *p)
{
    /* Killing pid 1 of its namespace kills everything in it. */
    if (!p->exited)
        kill(p->pid, SIGKILL);
}

static int sandbox_usage(mxu_proc *p, mxu_usage *u)
{
    if (p->exited) {
        *u = p->exit.usage;
        return 0;
    }
    memset(u, 0, sizeof(*u));
    sbx_proc *sp = p->xdata;
    if (mxu_exec_cpu_us(p->pid, &u->cpu_us) == 0) {
        if (sp && sp->id)
            sbx_cg_peak(&sp->sb->cg, sp->id, &u->peak_bytes);
        return 0;
    }
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)p->pid);
    _cleanup_buf_ mxu_buf b = {0};
    if (sbx_read_file(path, 4096, &b) < 0)
        return -1;
    char *s = strrchr(b.data, ')');
    unsigned long long ut = 0, stt = 0;
    if (s == NULL ||
        sscanf(s + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &stt) != 2)
        return -1;
    long hz = sysconf(_SC_CLK_TCK);
    u->cpu_us = (ut + stt) * 1000000ull / (uint64_t)(hz > 0 ? hz : 100);
    if (sp && sp->id)
        sbx_cg_peak(&sp->sb->cg, sp->id, &u->peak_bytes);
    return 0;
}

static int sandbox_cpu(mxu_proc *p, uint64_t *cpu_us)
{
    if (p->exited) {
        *cpu_us = p->exit.usage.cpu_us;
        return 0;
    }
    return mxu_exec_cpu_us(p->pid, cpu_us);
}

static void sandbox_release(mxu_exec *ex, const mxu_exec_spec *spec)
{
    mxu_sandbox *sb = ex->sandbox;
    if (sb == NULL)
        return;
    for (sbx_unit **pp = &sb->units; *pp; pp = &(*pp)->next) {
        sbx_unit *u = *pp;
        if (strcmp(u->label, spec->label) != 0 || --u->refs > 0)
            continue;
        *pp = u->next;
        unit_discard_spares(sb, u);
        free(u->label);
        free(u->bundle);
        free(u);
        return;
    }
}

/* Every ready spare's charge, but the one a spawn of `taker` would use. */
static uint64_t sandbox_standby(mxu_exec *ex, const mxu_exec_spec *taker)
{
    mxu_sandbox *sb = ex->sandbox;
    if (sb == NULL)
        return 0;
    sbx_unit *t = taker ? unit_find(sb, taker->label) : NULL;
    uint64_t n = 0;
    for (sbx_unit *u = sb->units; u; u = u->next)
        n += u->nspare - (u == t && u->nspare > 0 ? 1 : 0);
    return n * SBX_SPARE_CHARGE;
}

/* Discard spares, one at a time, from the unit used least recently
 * (`keep`'s last), its newest first. Never `keep`'s last one: that is the
 * spare a spawn of it takes over, which sandbox_standby() does not count,
 * so discarding it frees nothing admission is short of. */
static uint64_t sandbox_shed(mxu_exec *ex, uint64_t want, const mxu_exec_spec *keep)
{
    mxu_sandbox *sb = ex->sandbox;
    if (sb == NULL)
        return 0;
    sbx_unit *k = keep ? unit_find(sb, keep->label) : NULL;
    uint64_t got = 0;
    while (got < want) {
        sbx_unit *victim = NULL;
        for (sbx_unit *u = sb->units; u; u = u->next)
            if (u->nspare > 0 && u != k && (victim == NULL || u->used_ms < victim->used_ms))
                victim = u;
        if (victim == NULL && k && k->nspare > 1)
            victim = k;
        if (victim == NULL)
            break;
        sbx_spare_discard(sb, &victim->spare[--victim->nspare]);
        got += SBX_SPARE_CHARGE;
        mxu_debug("sandbox: %s: a spare shed for memory", victim->label);
    }
    return got;
}

/* ---- probing at node start ------------------------------------------------------------ */

static bool have_cap(int cap)
{
    struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct data[2];
    if (syscall(SYS_capget, &hdr, data) < 0)
        return false;
    return (data[cap / 32].effective >> (cap % 32)) & 1u;
}

static int probe(mxu_sandbox *sb, const char *node_id, char *why, size_t whylen)
{
    /* Privileges: a root node mounts as root in its children's namespaces
     * and then drops to the sandbox user; any other node uses a user
     * namespace, where a process may map its own uid. */
    bool privileged = geteuid() == 0 && have_cap(CAP_SYS_ADMIN) && have_cap(CAP_SETUID) &&
                      have_cap(CAP_SETGID) && have_cap(CAP_SETPCAP);
    sb->userns = !privileged;
    sb->host_uid = geteuid();
    sb->host_gid = getegid();
    if (sb->userns) {
        _cleanup_buf_ mxu_buf b = {0};
        if (sbx_read_file("/proc/sys/user/max_user_namespaces", 64, &b) == 0 && atoi(b.data) == 0) {
            snprintf(why, whylen, "not root, and user namespaces are disabled");
            return -1;
        }
        snprintf(sb->uid_map, sizeof(sb->uid_map), "%u %u 1", SBX_UID, (unsigned)sb->host_uid);
        snprintf(sb->gid_map, sizeof(sb->gid_map), "%u %u 1", SBX_GID, (unsigned)sb->host_gid);
    }
    /* Limits; without memory and pids cgroups the sandbox refuses to run
     * (see docs/isolation.md: a sandbox that a fork bomb can take down is
     * not one). */
    if (sbx_cg_init(&sb->cg, node_id, why, whylen) < 0)
        return -1;
    if (sbx_seccomp_build(&sb->prog, why, whylen) < 0)
        return -1;
    sb->defaults.pids_max = SBX_PIDS_DEFAULT;
    sb->defaults.cpu_period_us = SBX_CPU_PERIOD_US;
    sb->defaults.cpu_quota_us = SBX_CPU_PERIOD_US; /* one CPU per instance */
    const char *env = getenv("MXU_SANDBOX_PIDS");
    if (env && atoi(env) > 0)
        sb->defaults.pids_max = (uint64_t)atoi(env);
    env = getenv("MXU_SANDBOX_CPUS");
    if (env && atof(env) >= 0)
        sb->defaults.cpu_quota_us = (uint64_t)(atof(env) * SBX_CPU_PERIOD_US);
    if (!sb->cg.cpu_ok)
        mxu_info("sandbox: no cpu cgroup controller: instances get no CPU quota");
    /* What the host's root looks like. */
    for (size_t i = 0; i < MXU_ARRAY_LEN(sys_dirs); i++) {
        char path[32];
        struct stat st;
        snprintf(path, sizeof(path), "/%s", sys_dirs[i]);
        if (lstat(path, &st) < 0) {
            sb->sys_kind[i] = SYS_ABSENT;
        } else if (S_ISLNK(st.st_mode)) {
            ssize_t n = readlink(path, sb->sys_link[i], sizeof(sb->sys_link[i]) - 1);
            sb->sys_kind[i] = n > 0 ? SYS_LINK : SYS_ABSENT;
            sb->sys_link[i][n > 0 ? n : 0] = '\0';
        } else {
            sb->sys_kind[i] = S_ISDIR(st.st_mode) ? SYS_DIR : SYS_ABSENT;
        }
    }
    struct stat st;
    sb->have_ldcache = stat("/etc/ld.so.cache", &st) == 0 && S_ISREG(st.st_mode);
    sb->have_alternatives = stat("/etc/alternatives", &st) == 0 && S_ISDIR(st.st_mode);
    _cleanup_buf_ mxu_buf lc = {0};
    sb->last_cap = CAP_LAST_CAP;
    if (sbx_read_file("/proc/sys/kernel/cap_last_cap", 64, &lc) == 0 && atoi(lc.data) > 0)
        sb->last_cap = atoi(lc.data);
    return 0;
}

void mxu_sandbox_init(mxu_exec *ex)
{
    mxu_sandbox *sb = mxu_calloc(1, sizeof(*sb));
    ex->sandbox = sb;
    sb->ex = ex;
    uv_timer_init(ex->loop, &sb->retry);
    sb->retry.data = sb;
    uv_timer_init(ex->loop, &sb->refill);
    sb->refill.data = sb;
    sb->retry_init = true;
    sb->zygote_fd = -1;
    /* Cgroup names never repeat across restarts of a node. */
    sb->next_id = mxu_wall_ms() * 1000;
    if (probe(sb, ex->node_id, unavailable_buf, sizeof(unavailable_buf)) == 0) {
        sb->ok = true;
        unavailable = NULL;
        /* Spare sandboxes take the slow parts of setup (the cgroup join costs
         * an RCU grace period on cgroup v1; namespaces and mounts about a
         * millisecond) off the cold start. Two per unit, so that a cold start
         * right after another finds one that has finished its setup, not the
         * one made for it a moment ago. MXU_SANDBOX_SPARES=0 turns them off:
         * every sandbox is then cloned by the node itself. */
        const char *env = getenv("MXU_SANDBOX_SPARES");
        int n = env ? atoi(env) : 2;
        sb->spares = (unsigned)MXU_MIN(MXU_MAX(n, 0), SBX_SPARES_MAX);
    } else {
        unavailable = unavailable_buf;
    }
}

static void on_timer_closed(uv_handle_t *h)
{
    mxu_sandbox *sb = h->data;
    if (--sb->closing == 0)
        free(sb);
}

void mxu_sandbox_fini(mxu_exec *ex)
{
    mxu_sandbox *sb = ex->sandbox;
    if (sb == NULL)
        return;
    ex->sandbox = NULL;
    while (sb->units) {
        sbx_unit *u = sb->units;
        sb->units = u->next;
        unit_discard_spares(sb, u);
        free(u->label);
        free(u->bundle);
        free(u);
    }
    sbx_zygote_stop(sb);
    sbx_cg_fini(&sb->cg);
    free(sb->prog.filter);
    free(sb->pending);
    uv_timer_stop(&sb->retry);
    /* The timers' memory is sb: freed when the loop has closed both. */
    sb->closing = 2;
    uv_close((uv_handle_t *)&sb->refill, on_timer_closed);
    uv_close((uv_handle_t *)&sb->retry, on_timer_closed);
}

const mxu_executor_ops mxu_exec_sandbox_ops = {
    .name = "sandbox",
    .prepare = sandbox_prepare,
    .spawn = sandbox_spawn,
    .kill = sandbox_kill,
    .usage = sandbox_usage,
    .cpu = sandbox_cpu,
    .release = sandbox_release,
    .standby = sandbox_standby,
    .shed = sandbox_shed,
};
