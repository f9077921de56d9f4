/*
 * exec-probe — a helper for test-exec.c that reports, from the inside, what
 * the process executor gave it (in the manner of bubblewrap's
 * tests/try-syscall.c). Usage: exec-probe MODE [ARG]
 *
 *   report       print one "key value" line per fact on stdout: every
 *                environment entry, every open descriptor (and where 0 leads),
 *                the limits, process group, parent, parent-death signal,
 *                signal dispositions and mask, working directory; then read
 *                stdin to its end and print it; with fd 3 open, write
 *                "channel-ok" on it
 *   exit CODE    exit with CODE
 *   signal SIG   kill itself with SIG
 *   fork         fork a child that sleeps; print "child <pid>"; sleep
 *   escape       fork a child that leaves the process group (setsid) and
 *                sleeps; print "child <pid>"; sleep
 *   burn         use 150 ms of CPU and touch 32 MiB; print "ready"; wait for
 *                the end of stdin; exit 0
 *   sleep        sleep
 *
 * Every sleep is bounded (30 s), so nothing it starts can linger for long
 * even if a test fails before cleaning up. Plain C, no sanitizers (see
 * meson.build): it runs under the RLIMIT_DATA the test asks for.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>

extern char **environ;

static void nap(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

static void print_limit(const char *name, int resource)
{
    struct rlimit rl;
    if (getrlimit(resource, &rl) < 0) {
        printf("rlimit %s error\n", name);
        return;
    }
    char cur[32], max[32];
    if (rl.rlim_cur == RLIM_INFINITY)
        snprintf(cur, sizeof(cur), "inf");
    else
        snprintf(cur, sizeof(cur), "%llu", (unsigned long long)rl.rlim_cur);
    if (rl.rlim_max == RLIM_INFINITY)
        snprintf(max, sizeof(max), "inf");
    else
        snprintf(max, sizeof(max), "%llu", (unsigned long long)rl.rlim_max);
    printf("rlimit %s %s %s\n", name, cur, max);
}

static void report(void)
{
    for (char **e = environ; *e; e++)
        printf("env %s\n", *e);

    DIR *d = opendir("/proc/self/fd");
    if (d) {
        struct dirent *de;
        while ((de = readdir(d)) != NULL) {
            if (de->d_name[0] == '.' || atoi(de->d_name) == dirfd(d))
                continue;
            printf("fd %s\n", de->d_name);
        }
        closedir(d);
    }
    char target[PATH_MAX];
    ssize_t n = readlink("/proc/self/fd/0", target, sizeof(target) - 1);
    if (n >= 0) {
        target[n] = '\0';
        printf("fd0 %s\n", target);
    }
    for (int fd = 3; fd <= 4; fd++) {
        int type = 0;
        socklen_t tlen = sizeof(type);
        struct stat st;
        if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tlen) == 0)
            printf("fd%d socket %s\n", fd, type == SOCK_STREAM ? "stream" : "other");
        else if (fstat(fd, &st) == 0 && S_ISFIFO(st.st_mode))
            printf("fd%d pipe %s\n", fd, (fcntl(fd, F_GETFL) & O_ACCMODE) == O_RDONLY ? "r" : "w");
    }

    print_limit("data", RLIMIT_DATA);
    print_limit("nofile", RLIMIT_NOFILE);
    print_limit("core", RLIMIT_CORE);
    print_limit("cpu", RLIMIT_CPU);

    printf("pid %d\n", (int)getpid());
    printf("pgid %d\n", (int)getpgid(0));
    printf("ppid %d\n", (int)getppid());
    int sig = -1;
    if (prctl(PR_GET_PDEATHSIG, &sig) == 0)
        printf("pdeathsig %d\n", sig);

    sigset_t mask;
    sigprocmask(SIG_BLOCK, NULL, &mask);
    for (int s = 1; s < NSIG; s++) {
        struct sigaction sa;
        if (sigaction(s, NULL, &sa) < 0)
            continue; /* reserved by the C library */
        if (sa.sa_handler != SIG_DFL)
            printf("nondefault %d\n", s);
        if (sigismember(&mask, s) == 1)
            printf("blocked %d\n", s);
    }

    char cwd[PATH_MAX];
    if (getcwd(cwd, sizeof(cwd)))
        printf("cwd %s\n", cwd);

    char in[4096];
    size_t got = 0;
    for (;;) {
        ssize_t r = read(0, in + got, sizeof(in) - 1 - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0 || got + (size_t)r >= sizeof(in) - 1) {
            if (r > 0)
                got += (size_t)r;
            break;
        }
        got += (size_t)r;
    }
    in[got] = '\0';
    printf("stdin %s\n", in);
    printf("end\n");
    fflush(stdout);

    /* The channel's way to the host: fd 3 for a socket, MXU_CHANNEL_OUT_FD
     * for a pipe pair. */
    const char *out = getenv("MXU_CHANNEL_OUT_FD");
    int ch = out && *out ? atoi(out) : 3;
    if (fcntl(ch, F_GETFD) >= 0) {
        static const char ok[] = "channel-ok";
        if (write(ch, ok, sizeof(ok) - 1) < 0)
            perror("write to the channel");
    }
}

/* The child is announced only once it is where it should be: with
 * `leave_group`, after its setsid() (a pipe says so). */
static void child_sleeper(int leave_group)
{
    fflush(stdout);
    int ready[2];
    if (pipe(ready) < 0) {
        perror("pipe");
        exit(2);
    }
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        exit(2);
    }
    if (pid == 0) {
        close(ready[0]);
        if (leave_group && setsid() < 0)
            _exit(3);
        close(ready[1]);
        nap(30000);
        _exit(0);
    }
    close(ready[1]);
    char c;
    while (read(ready[0], &c, 1) < 0 && errno == EINTR)
        ;
    close(ready[0]);
    printf("child %d\n", (int)pid);
    fflush(stdout);
    nap(30000);
}

static void burn(void)
{
    struct timespec ts;
    do {
        for (volatile int i = 0; i < 100000; i++)
            ;
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    } while (ts.tv_sec == 0 && ts.tv_nsec < 150 * 1000000L);
    size_t n = 32u << 20;
    char *p = malloc(n);
    if (p == NULL) {
        perror("malloc");
        exit(2);
    }
    /* Touch every page through a volatile pointer: a plain memset of memory
     * that is never read is dropped by the compiler. */
    volatile char *vp = p;
    for (size_t i = 0; i < n; i += 4096)
        vp[i] = 1;
    printf("ready\n");
    fflush(stdout);
    char b[256];
    while (read(0, b, sizeof(b)) > 0)
        ;
    free(p);
}

int main(int argc, char **argv)
{
    const char *mode = argc > 1 ? argv[1] : "report";
    if (strcmp(mode, "report") == 0)
        report();
    else if (strcmp(mode, "exit") == 0)
        return argc > 2 ? atoi(argv[2]) : 0;
    else if (strcmp(mode, "signal") == 0)
        kill(getpid(), argc > 2 ? atoi(argv[2]) : SIGTERM);
    else if (strcmp(mode, "fork") == 0)
        child_sleeper(0);
    else if (strcmp(mode, "escape") == 0)
        child_sleeper(1);
    else if (strcmp(mode, "burn") == 0)
        burn();
    else if (strcmp(mode, "sleep") == 0)
        nap(30000);
    else
        return 64;
    return 0;
}
