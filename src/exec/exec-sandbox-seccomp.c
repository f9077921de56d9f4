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
 */
#include "exec-sandbox.h"

#include <errno.h>
#include <sched.h>
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
    static const int families[] = {AF_UNIX, AF_INET, AF_INET6};
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
out:
    if (rc < 0 && why[0] == '\0')
        snprintf(why, whylen, "seccomp: cannot build the filter");
    if (fd >= 0)
        close(fd);
    seccomp_release(ctx);
    return rc;
}
