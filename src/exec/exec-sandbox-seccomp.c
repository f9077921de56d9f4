/*
 * The sandbox's seccomp filter: an allowlist, built once per node with
 * libseccomp and exported as a BPF program that every sandbox child loads as
 * the last step before execve (loading a ready program is one prctl; building
 * it per instance would cost a millisecond).
 *
 * What is allowed is what ordinary programs in any language use: file and
 * socket I/O, memory, threads, signals to its own processes, timers, polling.
 * Everything else fails with EPERM (ENOSYS for clone3 and io_uring, so that
 * libc and runtimes fall back to what they know). In particular: mount and
 * the new mount API, pivot_root, chroot, unshare, setns, namespace flags to
 * clone, kernel modules, kexec, keyctl and friends, clock and time changes,
 * reboot, swap, ptrace, process_vm_*, bpf, perf_event_open, userfaultfd,
 * open_by_handle_at, quotactl, acct, syslog, iopl/ioperm, and sockets other
 * than AF_UNIX / AF_INET / AF_INET6 (no netlink, no packet sockets).
 * Foreign ABIs (i386, x32) kill the process.
 *
 * Loading a filter makes the kernel convert and JIT-compile it, once per
 * sandbox, on the cold path: libseccomp's program for this list (359
 * instructions, one test per allowed call even as a tree) cost ~0.1 ms there.
 * Neighbouring syscall numbers mostly share a decision, so the same rules as
 * *ranges* of numbers make a tree of about a hundred instructions. That
 * compact program is built from the same lists, and it is used only if it
 * decides exactly as libseccomp's does (checked at node start, with a small
 * BPF interpreter, for every syscall number of the architecture and beyond,
 * other ABIs, and the argument values the conditional rules look at);
 * otherwise libseccomp's program is loaded as it is.
 */
#include "exec-sandbox.h"

#include <errno.h>
#include <linux/audit.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <stddef.h>
#include <seccomp.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

/* Allowed without conditions. Names the running libseccomp does not know for
 * this architecture are skipped. */
static const char *const allowed[] = {
    /* files and descriptors */
    "read", "write", "readv", "writev", "pread64", "pwrite64", "preadv", "pwritev", "preadv2",
    "pwritev2", "open", "openat", "openat2", "close", "close_range", "creat", "lseek", "stat",
    "fstat", "lstat", "newfstatat", "statx", "statfs", "fstatfs", "access", "faccessat",
    "faccessat2", "readlink", "readlinkat", "getdents", "getdents64", "dup", "dup2", "dup3",
    "fcntl", "flock", "fsync", "fdatasync", "sync_file_range", "ftruncate", "truncate", "fallocate",
    "fadvise64", "readahead", "sendfile", "copy_file_range", "splice", "tee", "vmsplice", "pipe",
    "pipe2", "mkdir", "mkdirat", "rmdir", "unlink", "unlinkat", "rename", "renameat", "renameat2",
    "link", "linkat", "symlink", "symlinkat", "chmod", "fchmod", "fchmodat", "chown", "fchown",
    "lchown", "fchownat", "umask", "utime", "utimes", "utimensat", "futimesat", "mknod", "mknodat",
    "chdir", "fchdir", "getcwd", "ioctl", "getxattr", "lgetxattr", "fgetxattr", "listxattr",
    "llistxattr", "flistxattr", "setxattr", "lsetxattr", "fsetxattr", "removexattr", "lremovexattr",
    "fremovexattr", "inotify_init", "inotify_init1", "inotify_add_watch", "inotify_rm_watch",
    "memfd_create", "sync", "syncfs",
    /* polling and events */
    "select", "pselect6", "poll", "ppoll", "epoll_create", "epoll_create1", "epoll_ctl",
    "epoll_wait", "epoll_pwait", "epoll_pwait2", "eventfd", "eventfd2", "signalfd", "signalfd4",
    "timerfd_create", "timerfd_settime", "timerfd_gettime",
    /* memory */
    "brk", "mmap", "munmap", "mremap", "mprotect", "madvise", "msync", "mincore", "mlock", "mlock2",
    "munlock", "mlockall", "munlockall", "membarrier", "get_mempolicy",
    /* processes and threads (clone is below, with a condition) */
    "fork", "vfork", "execve", "execveat", "exit", "exit_group", "wait4", "waitid", "getpid",
    "getppid", "gettid", "getpgid", "setpgid", "getpgrp", "getsid", "setsid", "set_tid_address",
    "set_robust_list", "get_robust_list", "futex", "futex_waitv", "rseq", "arch_prctl", "prctl",
    "sched_yield", "sched_getaffinity", "sched_setaffinity", "sched_getparam", "sched_getscheduler",
    "sched_get_priority_max", "sched_get_priority_min", "sched_rr_get_interval", "getpriority",
    "setpriority", "getrlimit", "setrlimit", "prlimit64", "getrusage", "times", "capget", "seccomp",
    "personality", "uname", "sysinfo", "getrandom", "pidfd_open", "pidfd_send_signal",
    "pidfd_getfd",
    /* credentials: reading them, and changes that need no privilege */
    "getuid", "geteuid", "getgid", "getegid", "getresuid", "getresgid", "getgroups", "setuid",
    "setgid", "setreuid", "setregid", "setresuid", "setresgid", "setgroups", "setfsuid", "setfsgid",
    /* signals: its own pid namespace is all it can see */
    "rt_sigaction", "rt_sigprocmask", "rt_sigreturn", "rt_sigsuspend", "rt_sigpending",
    "rt_sigtimedwait", "rt_sigqueueinfo", "rt_tgsigqueueinfo", "sigaltstack", "kill", "tkill",
    "tgkill", "pause", "alarm",
    /* time: reading clocks and sleeping */
    "clock_gettime", "clock_getres", "clock_nanosleep", "gettimeofday", "time", "nanosleep",
    "getitimer", "setitimer", "timer_create", "timer_settime", "timer_gettime", "timer_getoverrun",
    "timer_delete",
    /* sockets (socket itself is below, with a condition) */
    "socketpair", "bind", "listen", "accept", "accept4", "connect", "getsockname", "getpeername",
    "sendto", "recvfrom", "sendmsg", "recvmsg", "sendmmsg", "recvmmsg", "shutdown", "setsockopt",
    "getsockopt",
    /* System V IPC and POSIX message queues: private to its IPC namespace */
    "shmget", "shmat", "shmdt", "shmctl", "semget", "semop", "semtimedop", "semctl", "msgget",
    "msgsnd", "msgrcv", "msgctl", "mq_open", "mq_unlink", "mq_timedsend", "mq_timedreceive",
    "mq_notify", "mq_getsetattr",
    /* misc */
    "restart_syscall", "ioprio_get", "getcpu"};

/* Fail with ENOSYS instead of EPERM: callers then fall back to older calls. */
static const char *const nosys[] = {"clone3", "io_uring_setup", "io_uring_enter",
                                    "io_uring_register"};

#define NS_FLAGS                                                                               \
    (CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET | \
     CLONE_NEWCGROUP | 0x00000080 /* CLONE_NEWTIME */)

/* ---- the compact program ---------------------------------------------------------- */

/* Syscall numbers below this are decided one by one; above, by range. */
#define NR_SPAN  1024u
#define CP_MAX   512u        /* instructions, at most */
#define ACT_COND 0xffffffffu /* a leaf with an argument condition (socket, clone) */

/* A jump to a return, resolved once the returns are placed at the end. */
typedef struct cfix {
    unsigned at;
    bool jt;
    uint32_t action;
} cfix;

typedef struct cprog {
    struct sock_filter insn[CP_MAX];
    unsigned n;
    bool bad;
    cfix fix[CP_MAX];
    unsigned nfix;
    uint32_t rets[8];
    unsigned nrets;
} cprog;

typedef struct range {
    uint32_t lo; /* up to the next range's lo */
    uint32_t action;
    int nr; /* for ACT_COND: which call */
} range;

static unsigned cp_emit(cprog *c, uint16_t code, uint8_t jt, uint8_t jf, uint32_t k)
{
    if (c->n == CP_MAX) {
        c->bad = true;
        return CP_MAX - 1;
    }
    c->insn[c->n] = (struct sock_filter){code, jt, jf, k};
    return c->n++;
}

/* Make the jt (or jf) of instruction `at` go to the return of `action`. */
static void cp_jump_ret(cprog *c, unsigned at, bool jt, uint32_t action)
{
    if (c->nfix == CP_MAX) {
        c->bad = true;
        return;
    }
    c->fix[c->nfix++] = (cfix){at, jt, action};
    unsigned i = 0;
    while (i < c->nrets && c->rets[i] != action)
        i++;
    if (i == c->nrets && c->nrets < MXU_ARRAY_LEN(c->rets))
        c->rets[c->nrets++] = action;
}

#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define ARG0_LO offsetof(struct seccomp_data, args[0])
#define ARG0_HI (offsetof(struct seccomp_data, args[0]) + 4)
#else
#define ARG0_LO (offsetof(struct seccomp_data, args[0]) + 4)
#define ARG0_HI offsetof(struct seccomp_data, args[0])
#endif
#define LD_ABS (BPF_LD | BPF_W | BPF_ABS)

static const int families[] = {AF_UNIX, AF_INET, AF_INET6};

/* A leaf: one action, or the argument checks of clone or socket (the same
 * rules as added to libseccomp below). */
static void cp_leaf(cprog *c, const range *r, int nr_clone, int nr_socket)
{
    if (r->action != ACT_COND) {
        cp_jump_ret(c, cp_emit(c, BPF_JMP | BPF_JA, 0, 0, 0), false, r->action);
        return;
    }
    if (r->nr == nr_clone) {
        cp_emit(c, LD_ABS, 0, 0, ARG0_LO);
        unsigned j = cp_emit(c, BPF_JMP | BPF_JSET | BPF_K, 0, 0, NS_FLAGS);
        cp_jump_ret(c, j, true, SCMP_ACT_ERRNO(EPERM));
        cp_jump_ret(c, j, false, SCMP_ACT_ALLOW);
    } else if (r->nr == nr_socket) {
        /* A 64-bit comparison: the high half must be 0 too. */
        cp_emit(c, LD_ABS, 0, 0, ARG0_HI);
        cp_jump_ret(c, cp_emit(c, BPF_JMP | BPF_JEQ | BPF_K, 0, 0, 0), false,
                    SCMP_ACT_ERRNO(EPERM));
        cp_emit(c, LD_ABS, 0, 0, ARG0_LO);
        for (size_t i = 0; i < MXU_ARRAY_LEN(families); i++) {
            unsigned j = cp_emit(c, BPF_JMP | BPF_JEQ | BPF_K, 0, 0, (uint32_t)families[i]);
            cp_jump_ret(c, j, true, SCMP_ACT_ALLOW);
            if (i + 1 == MXU_ARRAY_LEN(families))
                cp_jump_ret(c, j, false, SCMP_ACT_ERRNO(EPERM));
        }
    } else {
        c->bad = true;
    }
}

/* A balanced tree of "nr >= lo" tests over ranges [l, r]. A plain leaf is
 * the jump target itself; others follow in line. */
static void cp_tree(cprog *c, const range *rg, size_t l, size_t r, int nr_clone, int nr_socket)
{
    if (l == r) {
        cp_leaf(c, &rg[l], nr_clone, nr_socket);
        return;
    }
    size_t mid = (l + r + 1) / 2;
    unsigned at = cp_emit(c, BPF_JMP | BPF_JGE | BPF_K, 0, 0, rg[mid].lo);
    /* nr < lo: the left half, right below (jf = 0). */
    if (mid - 1 == l && rg[l].action != ACT_COND)
        cp_jump_ret(c, at, false, rg[l].action);
    else
        cp_tree(c, rg, l, mid - 1, nr_clone, nr_socket);
    if (mid == r && rg[r].action != ACT_COND) {
        cp_jump_ret(c, at, true, rg[r].action);
    } else {
        unsigned off = c->n - at - 1;
        if (off > 255)
            c->bad = true;
        c->insn[at].jt = (uint8_t)off;
        cp_tree(c, rg, mid, r, nr_clone, nr_socket);
    }
}

static int resolve(const char *name)
{
    int nr = seccomp_syscall_resolve_name(name);
    return nr >= 0 && (unsigned)nr < NR_SPAN ? nr : -1;
}

/* Build the compact program from the lists; false if this architecture has
 * something it does not model (libseccomp's program is used then). */
static bool compact_build(cprog *c)
{
    static uint32_t act[NR_SPAN];
    int nr_clone = resolve("clone"), nr_socket = resolve("socket");
    if (nr_clone < 0 || nr_socket < 0)
        return false;
    for (unsigned i = 0; i < NR_SPAN; i++)
        act[i] = SCMP_ACT_ERRNO(EPERM);
    for (size_t i = 0; i < MXU_ARRAY_LEN(allowed); i++) {
        int nr = seccomp_syscall_resolve_name(allowed[i]);
        if (nr >= (int)NR_SPAN)
            return false;
        if (nr >= 0)
            act[nr] = SCMP_ACT_ALLOW;
    }
    for (size_t i = 0; i < MXU_ARRAY_LEN(nosys); i++) {
        int nr = seccomp_syscall_resolve_name(nosys[i]);
        if (nr >= (int)NR_SPAN)
            return false;
        if (nr >= 0)
            act[nr] = SCMP_ACT_ERRNO(ENOSYS);
    }
    act[nr_clone] = act[nr_socket] = ACT_COND;

    static range rg[NR_SPAN + 4];
    size_t n = 0;
    for (unsigned i = 0; i < NR_SPAN; i++)
        if (n == 0 || act[i] != rg[n - 1].action || act[i] == ACT_COND)
            rg[n++] = (range){i, act[i], (int)i};
    if (rg[n - 1].action != SCMP_ACT_ERRNO(EPERM))
        rg[n++] = (range){NR_SPAN, SCMP_ACT_ERRNO(EPERM), -1};
    /* x86-64: x32 calls are numbers with bit 30 set; the filter kills them
     * (but not -1, which a tracer may set). */
    uint32_t native = seccomp_arch_native();
    if (native == SCMP_ARCH_X86_64) {
        rg[n++] = (range){0x40000000u, SCMP_ACT_KILL_PROCESS, -1};
        rg[n++] = (range){0xffffffffu, SCMP_ACT_ERRNO(EPERM), -1};
    }

    /* Another ABI than the native one: killed, as libseccomp's program does. */
    cp_emit(c, LD_ABS, 0, 0, offsetof(struct seccomp_data, arch));
    unsigned j = cp_emit(c, BPF_JMP | BPF_JEQ | BPF_K, 0, 0, native);
    cp_jump_ret(c, j, false, SCMP_ACT_KILL_PROCESS);
    cp_emit(c, LD_ABS, 0, 0, offsetof(struct seccomp_data, nr));
    cp_tree(c, rg, 0, n - 1, nr_clone, nr_socket);
    /* The returns, then every jump to them. */
    unsigned ret_at[MXU_ARRAY_LEN(c->rets)];
    for (unsigned i = 0; i < c->nrets; i++)
        ret_at[i] = cp_emit(c, BPF_RET | BPF_K, 0, 0, c->rets[i]);
    for (unsigned f = 0; f < c->nfix; f++) {
        unsigned i = 0;
        while (i < c->nrets && c->rets[i] != c->fix[f].action)
            i++;
        if (i == c->nrets)
            return false;
        struct sock_filter *in = &c->insn[c->fix[f].at];
        unsigned off = ret_at[i] - c->fix[f].at - 1;
        if (in->code == (BPF_JMP | BPF_JA))
            in->k = off;
        else if (off > 255)
            c->bad = true;
        else if (c->fix[f].jt)
            in->jt = (uint8_t)off;
        else
            in->jf = (uint8_t)off;
    }
    return !c->bad;
}

/* Run a classic BPF program on `d`, as the kernel would (only what both
 * programs here use; anything else is a mismatch). */
static uint32_t bpf_run(const struct sock_filter *p, unsigned len, const struct seccomp_data *d)
{
    uint32_t a = 0, x = 0, mem[BPF_MEMWORDS] = {0};
    for (unsigned pc = 0; pc < len; pc++) {
        const struct sock_filter *f = &p[pc];
        switch (f->code) {
        case BPF_LD | BPF_W | BPF_ABS:
            if (f->k > sizeof(*d) - 4 || f->k % 4)
                return 0xdeadu;
            memcpy(&a, (const char *)d + f->k, 4);
            break;
        case BPF_LD | BPF_IMM:
            a = f->k;
            break;
        case BPF_LDX | BPF_IMM:
            x = f->k;
            break;
        case BPF_ST:
            if (f->k >= BPF_MEMWORDS)
                return 0xdeadu;
            mem[f->k] = a;
            break;
        case BPF_LD | BPF_MEM:
            if (f->k >= BPF_MEMWORDS)
                return 0xdeadu;
            a = mem[f->k];
            break;
        case BPF_MISC | BPF_TAX:
            x = a;
            break;
        case BPF_MISC | BPF_TXA:
            a = x;
            break;
        case BPF_ALU | BPF_AND | BPF_K:
            a &= f->k;
            break;
        case BPF_JMP | BPF_JA:
            pc += f->k;
            break;
        case BPF_JMP | BPF_JEQ | BPF_K:
            pc += a == f->k ? f->jt : f->jf;
            break;
        case BPF_JMP | BPF_JGT | BPF_K:
            pc += a > f->k ? f->jt : f->jf;
            break;
        case BPF_JMP | BPF_JGE | BPF_K:
            pc += a >= f->k ? f->jt : f->jf;
            break;
        case BPF_JMP | BPF_JSET | BPF_K:
            pc += (a & f->k) ? f->jt : f->jf;
            break;
        case BPF_RET | BPF_K:
            return f->k;
        default:
            return 0xdeadu;
        }
    }
    return 0xdeadu;
}

/* Does `c` decide as `ref` everywhere the rules could tell calls apart? */
static bool same_decisions(const struct sock_fprog *ref, const struct sock_filter *c, unsigned n)
{
    uint32_t native = seccomp_arch_native();
    const uint32_t arches[] = {native, 0, AUDIT_ARCH_I386, AUDIT_ARCH_X86_64, AUDIT_ARCH_AARCH64};
    static const uint32_t far[] = {0x3fffffffu, 0x40000000u, 0x7fffffffu, 0x80000000u,
                                   0xbfffffffu, 0xfffffffeu, 0xffffffffu};
    uint32_t arg_lo[32 + 8] = {0, 2, 3, 10, 16, 17, 0xffffffffu, 0x7fffffffu};
    for (unsigned b = 0; b < 32; b++)
        arg_lo[8 + b] = 1u << b;
    struct seccomp_data d;
    for (size_t ai = 0; ai < MXU_ARRAY_LEN(arches); ai++) {
        if (ai > 0 && arches[ai] == native)
            continue;
        memset(&d, 0, sizeof(d));
        d.arch = arches[ai];
        bool full = ai == 0; /* arguments matter only to native calls */
        /* Every number up to twice the modelled span, the same above the
         * x32 bit, and far ones. */
        for (uint32_t i = 0; i < 3 * NR_SPAN + MXU_ARRAY_LEN(far); i++) {
            d.nr = (int)(i < 2 * NR_SPAN   ? i
                         : i < 3 * NR_SPAN ? 0x40000000u + (i - 2 * NR_SPAN)
                                           : far[i - 3 * NR_SPAN]);
            for (size_t k = 0; k < (full ? MXU_ARRAY_LEN(arg_lo) * 2 : 1); k++) {
                uint64_t lo = arg_lo[k / 2], hi = k % 2;
                d.args[0] = hi << 32 | lo;
                uint32_t want = bpf_run(ref->filter, ref->len, &d);
                if (want == 0xdeadu || bpf_run(c, n, &d) != want)
                    return false;
            }
        }
    }
    return true;
}

int sbx_seccomp_build(struct sock_fprog *out, char *why, size_t whylen)
{
    int rc = -1, fd = -1;
    scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ERRNO(EPERM));
    if (ctx == NULL) {
        snprintf(why, whylen, "seccomp_init failed");
        return -1;
    }
    /* A syscall of another ABI (int 0x80, x32) cannot be matched by name. */
    if (seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS) < 0)
        goto out;
    /* A binary tree over syscall numbers instead of a linear chain: the
     * kernel runs the filter once per syscall number when it is installed
     * (to cache what is always allowed), so its depth is paid at every
     * sandbox start, not only per call. */
    seccomp_attr_set(ctx, SCMP_FLTATR_CTL_OPTIMIZE, 2);
    for (size_t i = 0; i < MXU_ARRAY_LEN(allowed); i++) {
        int nr = seccomp_syscall_resolve_name(allowed[i]);
        if (nr != __NR_SCMP_ERROR && seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 0) < 0) {
            snprintf(why, whylen, "seccomp: cannot allow %s", allowed[i]);
            goto out;
        }
    }
    for (size_t i = 0; i < MXU_ARRAY_LEN(nosys); i++) {
        int nr = seccomp_syscall_resolve_name(nosys[i]);
        if (nr != __NR_SCMP_ERROR)
            seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), nr, 0);
    }
    /* clone: threads and processes, never new namespaces. */
    if (seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(clone), 1,
                         SCMP_A0(SCMP_CMP_MASKED_EQ, NS_FLAGS, 0)) < 0)
        goto out;
    /* socket: only local and IP families (no netlink, packet, ...). Raw IP
     * sockets still need CAP_NET_RAW, which it does not have. */
    for (size_t i = 0; i < MXU_ARRAY_LEN(families); i++)
        if (seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(socket), 1,
                             SCMP_A0(SCMP_CMP_EQ, (scmp_datum_t)families[i])) < 0)
            goto out;

    /* Export the BPF program once; children load it with one prctl. */
    fd = memfd_create("mxu-seccomp", MFD_CLOEXEC);
    if (fd < 0 || seccomp_export_bpf(ctx, fd) < 0) {
        snprintf(why, whylen, "seccomp: cannot export the filter");
        goto out;
    }
    off_t len = lseek(fd, 0, SEEK_END);
    if (len <= 0 || len % (off_t)sizeof(struct sock_filter) != 0 ||
        len / (off_t)sizeof(struct sock_filter) > 0xffff) {
        snprintf(why, whylen, "seccomp: odd filter size %lld", (long long)len);
        goto out;
    }
    struct sock_filter *prog = mxu_malloc((size_t)len);
    if (pread(fd, prog, (size_t)len, 0) != len) {
        free(prog);
        snprintf(why, whylen, "seccomp: cannot read the filter back");
        goto out;
    }
    out->len = (unsigned short)(len / (off_t)sizeof(struct sock_filter));
    out->filter = prog;
    rc = 0;
    /* The compact equivalent, if it is one. */
    static cprog c;
    memset(&c, 0, sizeof(c));
    if (compact_build(&c) && same_decisions(out, c.insn, c.n)) {
        free(out->filter);
        out->filter = mxu_malloc(c.n * sizeof(struct sock_filter));
        memcpy(out->filter, c.insn, c.n * sizeof(struct sock_filter));
        out->len = (unsigned short)c.n;
    } else {
        mxu_info("sandbox: seccomp: using libseccomp's program as it is (%u instructions)",
                 out->len);
    }
out:
    if (rc < 0 && why[0] == '\0')
        snprintf(why, whylen, "seccomp: cannot build the filter");
    if (fd >= 0)
        close(fd);
    seccomp_release(ctx);
    return rc;
}
