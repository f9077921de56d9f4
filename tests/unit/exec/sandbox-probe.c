/*
 * sandbox-probe — a helper for test-sandbox.c (and the hostile suite's
 * prober) that reports, from inside the sandbox, what it is and what it may
 * do, in the manner of bubblewrap's tests/try-syscall.c.
 * Usage: sandbox-probe MODE
 *
 *   report     print one "key value" line per fact: ids, capability sets,
 *              no_new_privs, seccomp mode, pid, host name, namespaces (inode
 *              numbers), mount points, network interfaces, open descriptors,
 *              environment, what can be written, cgroup; then "end"
 *   syscalls   try each dangerous system call once and print
 *              "syscall NAME blocked|allowed errno" (see try[] below)
 *   oom        allocate and touch memory until something stops it
 *   forkbomb   fork sleeping children until fork fails; print "forks N"
 *   sleep      fork a sleeping child, print "child PID", sleep
 *
 * Every sleep is bounded (30 s). Plain C, no sanitizers (meson.build).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static void nap(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

/* The value of "Key:" in /proc/self/status. */
static void status_line(const char *key)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    size_t kl = strlen(key);
    while (f && fgets(line, sizeof(line), f)) {
        if (strncmp(line, key, kl) == 0 && line[kl] == ':') {
            char *v = line + kl + 1;
            while (*v == ' ' || *v == '\t')
                v++;
            v[strcspn(v, "\n")] = '\0';
            printf("status %s %s\n", key, v);
        }
    }
    if (f)
        fclose(f);
}

static void can_write(const char *path)
{
    char file[256];
    snprintf(file, sizeof(file), "%s/.probe-%d", path, (int)getpid());
    int fd = open(file, O_WRONLY | O_CREAT | O_EXCL, 0600);
    printf("write %s %s\n", path, fd >= 0 ? "yes" : "no");
    if (fd >= 0) {
        close(fd);
        unlink(file);
    }
}

static void report(void)
{
    printf("uid %d %d\n", (int)getuid(), (int)geteuid());
    printf("gid %d %d\n", (int)getgid(), (int)getegid());
    gid_t groups[32];
    int ng = getgroups(32, groups);
    printf("groups %d\n", ng);
    static const char *const keys[] = {"CapInh", "CapPrm",     "CapEff", "CapBnd",
                                       "CapAmb", "NoNewPrivs", "Seccomp"};
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
        status_line(keys[i]);
    printf("pid %d\n", (int)getpid());
    char host[64] = "";
    gethostname(host, sizeof(host));
    printf("hostname %s\n", host);
    static const char *const ns[] = {"pid", "mnt", "net", "ipc", "uts", "cgroup", "user"};
    for (size_t i = 0; i < sizeof(ns) / sizeof(ns[0]); i++) {
        char path[64];
        struct stat st;
        snprintf(path, sizeof(path), "/proc/self/ns/%s", ns[i]);
        if (stat(path, &st) == 0)
            printf("ns %s %llu\n", ns[i], (unsigned long long)st.st_ino);
    }
    FILE *f = fopen("/proc/self/mountinfo", "r");
    char line[1024];
    while (f && fgets(line, sizeof(line), f)) {
        char mp[512];
        if (sscanf(line, "%*s %*s %*s %*s %511s", mp) == 1)
            printf("mount %s\n", mp);
    }
    if (f)
        fclose(f);
    f = fopen("/proc/net/dev", "r");
    while (f && fgets(line, sizeof(line), f)) {
        char *colon = strchr(line, ':');
        if (colon == NULL)
            continue;
        *colon = '\0';
        char *name = line;
        while (*name == ' ')
            name++;
        printf("netif %s\n", name);
    }
    if (f)
        fclose(f);
    DIR *d = opendir("/proc/self/fd");
    struct dirent *de;
    while (d && (de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.' || atoi(de->d_name) == dirfd(d))
            continue;
        printf("fd %s\n", de->d_name);
    }
    if (d)
        closedir(d);
    for (char **e = environ; *e; e++)
        printf("env %s\n", *e);
    char cwd[256] = "";
    if (getcwd(cwd, sizeof(cwd)))
        printf("cwd %s\n", cwd);
    static const char *const paths[] = {"/", "/tmp", "/fn", "/etc", "/usr", "/dev", "/proc/sys"};
    for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++)
        can_write(paths[i]);
    static const char *const exists[] = {"/home",       "/root",     "/var",     "/etc/shadow",
                                         "/etc/passwd", "/dev/null", "/dev/sda", "/sys"};
    for (size_t i = 0; i < sizeof(exists) / sizeof(exists[0]); i++) {
        struct stat st;
        printf("exists %s %s\n", exists[i], stat(exists[i], &st) == 0 ? "yes" : "no");
    }
    f = fopen("/proc/self/cgroup", "r");
    while (f && fgets(line, sizeof(line), f)) {
        line[strcspn(line, "\n")] = '\0';
        printf("cgroup %s\n", line);
    }
    if (f)
        fclose(f);
    /* The channel's way to the host: MXU_CHANNEL_OUT_FD (fd 4, a pipe). */
    const char *out = getenv("MXU_CHANNEL_OUT_FD");
    int ch = out && *out ? atoi(out) : 3;
    if (fcntl(ch, F_GETFD) >= 0 && write(ch, "channel-ok", 10) == 10)
        printf("channel yes\n");
    printf("end\n");
}

/* ---- syscalls ---- */

static long try_socket(int domain, int type, int proto)
{
    int fd = socket(domain, type, proto);
    if (fd >= 0)
        close(fd);
    return fd;
}

static void syscalls(void)
{
    struct {
        const char *name;
        long rc;
    } r[] = {
        {"mount", mount("none", "/tmp", "tmpfs", 0, NULL)},
        {"umount2", umount2("/proc", MNT_DETACH)},
        {"pivot_root", syscall(SYS_pivot_root, "/tmp", "/tmp")},
        {"chroot", chroot("/tmp")},
        {"unshare", unshare(CLONE_NEWUSER)},
        {"unshare-net", unshare(CLONE_NEWNET)},
        {"setns", setns(0, 0)},
        {"init_module", syscall(SYS_init_module, NULL, 0, "")},
        {"finit_module", syscall(SYS_finit_module, 0, "", 0)},
        {"delete_module", syscall(SYS_delete_module, "x", 0)},
        {"kexec_load", syscall(SYS_kexec_load, 0, 0, NULL, 0)},
        {"keyctl", syscall(SYS_keyctl, 0, 0, 0, 0, 0)},
        {"add_key", syscall(SYS_add_key, "user", "x", "y", 1, -2)},
        {"request_key", syscall(SYS_request_key, "user", "x", NULL, 0)},
        {"clock_settime", syscall(SYS_clock_settime, CLOCK_REALTIME, NULL)},
        {"settimeofday", syscall(SYS_settimeofday, NULL, NULL)},
        {"adjtimex", syscall(SYS_adjtimex, NULL)},
        {"reboot", syscall(SYS_reboot, 0, 0, 0, NULL)},
        {"swapon", syscall(SYS_swapon, "/tmp/x", 0)},
        {"ptrace", syscall(SYS_ptrace, 16 /* PTRACE_ATTACH */, 1, NULL, NULL)},
        {"process_vm_readv", syscall(SYS_process_vm_readv, 1, NULL, 0, NULL, 0, 0)},
        {"bpf", syscall(SYS_bpf, 0, NULL, 0)},
        {"perf_event_open", syscall(SYS_perf_event_open, NULL, 0, -1, -1, 0)},
        {"userfaultfd", syscall(SYS_userfaultfd, 0)},
        {"open_by_handle_at", syscall(SYS_open_by_handle_at, 0, NULL, 0)},
        {"iopl", syscall(SYS_iopl, 3)},
        {"ioperm", syscall(SYS_ioperm, 0, 1, 1)},
        {"syslog", syscall(SYS_syslog, 3, NULL, 0)},
        {"acct", syscall(SYS_acct, NULL)},
        {"sethostname", sethostname("x", 1)},
        {"fsopen", syscall(SYS_fsopen, "tmpfs", 0)},
        {"open_tree", syscall(SYS_open_tree, -100, "/", 0)},
        {"socket-netlink", try_socket(AF_NETLINK, SOCK_RAW, 0)},
        {"socket-packet", try_socket(AF_PACKET, SOCK_RAW, 0)},
        {"socket-raw", try_socket(AF_INET, SOCK_RAW, 1)},
        {"io_uring_setup", syscall(SYS_io_uring_setup, 1, NULL)},
    };
    for (size_t i = 0; i < sizeof(r) / sizeof(r[0]); i++)
        printf("syscall %s %s\n", r[i].name, r[i].rc < 0 ? "blocked" : "allowed");
    /* Control: what must keep working. */
    int fd = open("/tmp/ok", O_WRONLY | O_CREAT, 0600);
    printf("control open-tmp %s\n", fd >= 0 ? "ok" : "failed");
    if (fd >= 0)
        close(fd);
    pid_t pid = fork();
    if (pid == 0)
        _exit(0);
    printf("control fork %s\n", pid > 0 && waitpid(pid, NULL, 0) == pid ? "ok" : "failed");
    printf("control socket-inet %s\n", try_socket(AF_INET, SOCK_STREAM, 0) >= 0 ? "ok" : "failed");
    printf("end\n");
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    const char *mode = argc > 1 ? argv[1] : "report";
    if (strcmp(mode, "report") == 0) {
        report();
        return 0;
    }
    if (strcmp(mode, "syscalls") == 0) {
        syscalls();
        return 0;
    }
    if (strcmp(mode, "oom") == 0) {
        for (size_t total = 0;; total += 1 << 20) {
            char *p =
                mmap(NULL, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
            if (p == MAP_FAILED) {
                printf("mmap failed after %zu MiB\n", total >> 20);
                return 3;
            }
            memset(p, 1, 1 << 20);
        }
    }
    if (strcmp(mode, "forkbomb") == 0) {
        int n = 0;
        for (; n < 100000; n++) {
            pid_t pid = fork();
            if (pid < 0)
                break;
            if (pid == 0) {
                nap(30000);
                _exit(0);
            }
        }
        printf("forks %d\n", n);
        return 0;
    }
    if (strcmp(mode, "sleep") == 0) {
        pid_t pid = fork();
        if (pid == 0) {
            nap(30000);
            _exit(0);
        }
        printf("child %d\n", (int)pid);
        nap(30000);
        return 0;
    }
    fprintf(stderr, "sandbox-probe: unknown mode %s\n", mode);
    return 2;
}
